/*
 * preload.c - libringsocks-preload.so: routes an unmodified program's connections (TCP, and UDP
 * for SOCKS5) through a SOCKS4/4a/5 proxy (RINGSOCKS_PROXY, else SOCKS_PROXY, else ALL_PROXY /
 * all_proxy, in curl's URL syntax), with remote DNS through placeholder addresses for socks5h
 * and socks4a.
 *
 * Owns: the interposed connect, close, getsockopt, getaddrinfo, gethostbyname*, poll, ppoll,
 * select, pselect, epoll_ctl, epoll_wait, epoll_pwait, and for UDP sendto, recvfrom, sendmsg,
 * recvmsg, send, recv, read and write (a lookup only while an association exists); the table of
 * non-blocking connects whose SOCKS handshake is still running (driven from those calls, never
 * from a thread of ours); the UDP associations; the placeholder names. Called from any thread
 * of the host program: shared state is under one lock, the real calls come from
 * dlsym(RTLD_NEXT). Never blocks a non-blocking connect (a UDP association's opening exchange
 * does block, once per socket), never prints unless RINGSOCKS_DEBUG is set, never depends on
 * more than libc and libdl.
 * Design and limits: docs/routing.md.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "plcore.h"

#define EXPORT __attribute__((visibility("default")))

/* glibc's fortified entry points (bits/poll2.h), declared only under _FORTIFY_SOURCE. */
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask,
                size_t fdslen);
#define MAX_BYPASS 64
#define NAME_SLOTS 4096
/* epoll data of a registration the library made for a handshake: tag in the high half. */
#define EP_TAG     0x52534b5300000000ULL

static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_close)(int);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_getaddrinfo)(const char *, const char *, const struct addrinfo *,
                               struct addrinfo **);
static struct hostent *(*real_ghbn2)(const char *, int);
static int (*real_ghbn_r)(const char *, int, struct hostent *, char *, size_t, struct hostent **,
                          int *);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
                           const sigset_t *);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);

/* A UDP socket's association (SOCKS5 UDP ASSOCIATE): its TCP control connection to the proxy
 * and the relay address datagrams go to. Lives until the socket is closed. */
struct uassoc {
    struct uassoc *next;
    int fd;
    int ctl;
    struct sockaddr_storage relay;
    socklen_t relay_len;
    bool connected; /* connect() named peer: send, write and sendmsg go to it */
    struct plcore_dest peer;
};

/* A non-blocking connect whose handshake runs, or that failed (until close). */
struct pending {
    struct pending *next;
    int fd;
    int err; /* failed: the errno SO_ERROR reports once */
    bool failed;
    short need; /* POLLIN or POLLOUT: what the handshake waits for */
    int epfd;   /* -1, or the epoll set the program registered fd in */
    struct epoll_event user_ev;
    struct plcore_hs hs;
};

static struct {
    pthread_once_t once;
    pthread_mutex_t lock;
    bool on;
    bool debug;
    bool bypass_loopback;
    struct plcore_proxy px;
    bool px_resolved;
    struct sockaddr_storage px_addr;
    socklen_t px_len;
    struct plcore_net bypass[MAX_BYPASS];
    int nbypass;
    struct plcore_names names;
    int timeout_ms;
    struct pending *pend;
    atomic_int npend;
    struct uassoc *uas;
    atomic_int nuas;
} G = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

/* Set while the library itself calls libc (resolving the proxy's name): interposers pass
 * through. */
static __thread int in_lib;

static void
dbg(const char *fmt, ...)
{
    va_list ap;
    char buf[512];
    int n;

    if (!G.debug)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    if (real_write(2, buf, (size_t)n) < 0)
        return;
}

static void
resolve_reals(void)
{
    real_connect = dlsym(RTLD_NEXT, "connect");
    real_close = dlsym(RTLD_NEXT, "close");
    real_getsockopt = dlsym(RTLD_NEXT, "getsockopt");
    real_getaddrinfo = dlsym(RTLD_NEXT, "getaddrinfo");
    real_ghbn_r = dlsym(RTLD_NEXT, "gethostbyname2_r");
    real_ghbn2 = dlsym(RTLD_NEXT, "gethostbyname2");
    real_ppoll = dlsym(RTLD_NEXT, "ppoll");
    real_select = dlsym(RTLD_NEXT, "select");
    real_pselect = dlsym(RTLD_NEXT, "pselect");
    real_epoll_ctl = dlsym(RTLD_NEXT, "epoll_ctl");
    real_epoll_pwait = dlsym(RTLD_NEXT, "epoll_pwait");
    real_sendto = dlsym(RTLD_NEXT, "sendto");
    real_recvfrom = dlsym(RTLD_NEXT, "recvfrom");
    real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
    real_recvmsg = dlsym(RTLD_NEXT, "recvmsg");
    real_read = dlsym(RTLD_NEXT, "read");
    real_write = dlsym(RTLD_NEXT, "write");
}

static void
add_bypass(const char *list, const char *var)
{
    char item[80];
    const char *p = list;

    while (*p != '\0') {
        size_t n = strcspn(p, ", \t");
        if (n > 0 && n < sizeof(item) && G.nbypass < MAX_BYPASS) {
            memcpy(item, p, n);
            item[n] = '\0';
            if (plcore_net_parse(&G.bypass[G.nbypass], item) == 0)
                G.nbypass++;
            else
                fprintf(stderr, "ringsocks-preload: %s: '%s' is not a network, ignored\n", var,
                        item);
        }
        p += n;
        p += strspn(p, ", \t");
    }
}

static void
init(void)
{
    const char *url, *var = "RINGSOCKS_PROXY", *s;
    struct plcore_net fake;
    char err[160];

    resolve_reals();
    G.debug = getenv("RINGSOCKS_DEBUG") != NULL && strcmp(getenv("RINGSOCKS_DEBUG"), "0") != 0;
    url = getenv(var);
    if (url == NULL || *url == '\0')
        url = getenv(var = "SOCKS_PROXY");
    if (url == NULL || *url == '\0')
        url = getenv(var = "ALL_PROXY");
    if (url == NULL || *url == '\0')
        url = getenv(var = "all_proxy");
    if (url == NULL || *url == '\0')
        return;
    if (plcore_proxy_parse(&G.px, url, err, sizeof(err)) < 0) {
        fprintf(stderr, "ringsocks-preload: %s: %s: connections go direct\n", var, err);
        return;
    }
    s = getenv("RINGSOCKS_BYPASS_LOOPBACK");
    G.bypass_loopback = s == NULL || strcmp(s, "0") != 0;
    if (G.bypass_loopback)
        add_bypass("127.0.0.0/8,::1/128", "loopback");
    s = getenv("RINGSOCKS_BYPASS");
    if (s != NULL)
        add_bypass(s, "RINGSOCKS_BYPASS");
    s = getenv("RINGSOCKS_TIMEOUT_MS");
    G.timeout_ms = s != NULL && atoi(s) > 0 ? atoi(s) : 30000;
    if (plcore_remote_dns(G.px.scheme)) {
        s = getenv("RINGSOCKS_FAKE_NET");
        if (plcore_net_parse(&fake, s != NULL ? s : "240.0.0.0/4") < 0 || fake.family != AF_INET ||
            fake.prefix > 30) {
            fprintf(stderr, "ringsocks-preload: RINGSOCKS_FAKE_NET: not an IPv4 network of at "
                            "least 4 addresses: remote DNS off\n");
        } else {
            uint32_t base, size = fake.prefix == 0 ? 0xffffffffu : (1u << (32 - fake.prefix));
            memcpy(&base, fake.addr, 4);
            G.names.base = ntohl(base) & ~(size - 1);
            G.names.cap = size - 2 < NAME_SLOTS ? size - 2 : NAME_SLOTS;
            G.names.name = calloc(G.names.cap, sizeof(*G.names.name));
            if (G.names.name == NULL)
                G.names.cap = 0;
        }
    }
    G.on = true;
    dbg("ringsocks-preload: proxy %s:%u from %s", G.px.host, G.px.port, var);
}

static bool
active(void)
{
    pthread_once(&G.once, init);
    return G.on && !in_lib;
}

/* The proxy's address, resolved once (a name with the real resolver). */
static int
proxy_addr(struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = 0;

    pthread_mutex_lock(&G.lock);
    if (!G.px_resolved) {
        in_lib++;
        rc = real_getaddrinfo(G.px.host, NULL, &hints, &res);
        in_lib--;
        if (rc != 0 || res == NULL) {
            dbg("ringsocks-preload: cannot resolve the proxy %s: %s", G.px.host, gai_strerror(rc));
            rc = -EHOSTUNREACH;
            goto out;
        }
        memcpy(&G.px_addr, res->ai_addr, res->ai_addrlen);
        G.px_len = res->ai_addrlen;
        ((struct sockaddr_in *)&G.px_addr)->sin_port = htons(G.px.port);
        freeaddrinfo(res);
        G.px_resolved = true;
    }
    memcpy(ss, &G.px_addr, G.px_len);
    *len = G.px_len;
out:
    pthread_mutex_unlock(&G.lock);
    return rc;
}

static bool
same_endpoint(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    uint32_t ia, ib;

    if (plcore_sa_ipv4(a, &ia) && plcore_sa_ipv4((const struct sockaddr *)b, &ib))
        return ia == ib && ((const struct sockaddr_in *)a)->sin_port ==
                               ((const struct sockaddr_in *)b)->sin_port;
    if (a->sa_family == AF_INET6 && b->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 && x->sin6_port == y->sin6_port;
    }
    return false;
}

static bool
bypassed(const struct sockaddr *sa)
{
    int i;

    for (i = 0; i < G.nbypass; i++)
        if (plcore_net_match(&G.bypass[i], sa))
            return true;
    return G.px_resolved && same_endpoint(sa, &G.px_addr);
}

/* ---- the handshake of a non-blocking connect */

static struct pending *
pending_find(int fd)
{
    struct pending *p;

    for (p = G.pend; p != NULL; p = p->next)
        if (p->fd == fd)
            return p;
    return NULL;
}

static void
pending_unlink(struct pending *p)
{
    struct pending **pp;

    for (pp = &G.pend; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            atomic_fetch_sub(&G.npend, 1);
            return;
        }
}

/* The outcome of one send or recv that moves *count on: 1 go on, 0 wait for ev, -errno. */
static int
io_step(ssize_t n, short ev, short *need, size_t *count)
{
    if (n >= 0) {
        *count += (size_t)n;
        return 1;
    }
    if (errno == EINTR)
        return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *need = ev;
        return 0;
    }
    return -errno;
}

/* One step of I/O on fd, never waiting. 1 done, 0 waits for *need, -errno failed. */
static int
hs_io(int fd, struct plcore_hs *hs, short *need)
{
    for (;;) {
        ssize_t n;
        int r;
        if (hs->out_off < hs->out_len) {
            n = real_sendto(fd, hs->out + hs->out_off, hs->out_len - hs->out_off,
                            MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
            r = io_step(n, POLLOUT, need, &hs->out_off);
        } else if (hs->in_len < hs->in_want) {
            /* Exactly what the stage needs: the program's first bytes stay in the socket. */
            n = real_recvfrom(fd, hs->in + hs->in_len, hs->in_want - hs->in_len, MSG_DONTWAIT, NULL,
                              NULL);
            if (n == 0)
                return -ECONNREFUSED;
            r = io_step(n, POLLIN, need, &hs->in_len);
        } else {
            r = plcore_hs_next(hs);
            if (r != 0)
                return r;
            continue;
        }
        if (r <= 0)
            return r;
    }
}

static void
ep_register(int fd, struct pending *p, int op)
{
    struct epoll_event ev;

    if (p->epfd < 0)
        return;
    if (!p->failed && p->need != 0) {
        ev.events = (p->need == POLLIN ? EPOLLIN : EPOLLOUT) | EPOLLONESHOT;
        ev.data.u64 = EP_TAG | (uint32_t)fd;
    } else {
        ev = p->user_ev;
    }
    if (real_epoll_ctl(p->epfd, op, fd, &ev) < 0)
        dbg("ringsocks-preload: epoll_ctl(%d, fd %d): %s", p->epfd, fd, strerror(errno));
}

/* Drives fd's handshake if one runs; under G.lock. Returns 1 when fd has none running (any
 * more), 0 while it runs (p->need says what it waits for). */
static int
pending_drive(int fd, struct pending **pp)
{
    struct pending *p = pending_find(fd);
    int r;

    *pp = p;
    if (p == NULL || p->failed)
        return 1;
    r = hs_io(fd, &p->hs, &p->need);
    if (r == 0) {
        ep_register(fd, p, EPOLL_CTL_MOD);
        return 0;
    }
    if (r > 0) {
        dbg("ringsocks-preload: fd %d: tunnel open", fd);
        p->need = 0;
        ep_register(fd, p, EPOLL_CTL_MOD);
        pending_unlink(p);
        free(p);
        *pp = NULL;
        return 1;
    }
    dbg("ringsocks-preload: fd %d: proxy refused: %s", fd, strerror(-r));
    /* The kernel then reports the socket as hung up to every poller; SO_ERROR says why. */
    shutdown(fd, SHUT_RDWR);
    p->failed = true;
    p->err = -r;
    ep_register(fd, p, EPOLL_CTL_MOD);
    return 1;
}

/* ---- connect */

static int
fail(int e)
{
    errno = e;
    return -1;
}

static int
wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    int r;

    do
        r = real_ppoll(&pfd, 1, &ts, NULL);
    while (r < 0 && errno == EINTR);
    return r;
}

/* An IPv6 socket reaches an IPv4 address at its IPv4-mapped form: ss becomes that. */
static void
to_v4_mapped(struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in6 m = {.sin6_family = AF_INET6};
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;

    m.sin6_port = v4->sin_port;
    m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&m.sin6_addr.s6_addr[12], &v4->sin_addr, 4);
    memcpy(ss, &m, sizeof(m));
    *len = sizeof(m);
}

static int udp_connect(int fd, const struct sockaddr *sa, socklen_t salen);

EXPORT int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    struct plcore_dest dest;
    struct plcore_hs hs;
    struct sockaddr_storage px;
    socklen_t pxlen, olen = sizeof(int);
    struct pending *p;
    uint32_t ip;
    int type = 0, r, flags;
    short need = 0;

    if (!active() || sa == NULL || len < sizeof(struct sockaddr_in) ||
        (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return real_connect(fd, sa, len);
    pthread_mutex_lock(&G.lock);
    if (pending_drive(fd, &p) == 0) {
        pthread_mutex_unlock(&G.lock);
        return fail(EALREADY);
    }
    if (p != NULL) {
        r = p->err ? p->err : ECONNREFUSED;
        pthread_mutex_unlock(&G.lock);
        return fail(r);
    }
    memset(&dest, 0, sizeof(dest));
    dest.port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (G.names.cap > 0 && plcore_sa_ipv4(sa, &ip) && plcore_names_lookup(&G.names, ip) != NULL)
        strcpy(dest.name, plcore_names_lookup(&G.names, ip));
    pthread_mutex_unlock(&G.lock);

    if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0 || type != SOCK_STREAM) {
        if (type == SOCK_DGRAM)
            return udp_connect(fd, sa, len);
        if (dest.name[0] != '\0')
            return fail(ENETUNREACH);
        return real_connect(fd, sa, len);
    }
    if (proxy_addr(&px, &pxlen) < 0)
        return fail(EHOSTUNREACH);
    if (dest.name[0] == '\0') {
        if (bypassed(sa))
            return real_connect(fd, sa, len);
        memcpy(&dest.addr, sa, len < sizeof(dest.addr) ? len : sizeof(dest.addr));
    }
    if (sa->sa_family == AF_INET6 && px.ss_family == AF_INET) {
        to_v4_mapped(&px, &pxlen);
    } else if (sa->sa_family == AF_INET && px.ss_family == AF_INET6) {
        return fail(EAFNOSUPPORT);
    }
    r = plcore_hs_start(&hs, &G.px, &dest);
    if (r < 0)
        return fail(r == -EAFNOSUPPORT ? ENETUNREACH : -r);
    dbg("ringsocks-preload: fd %d: connect %s:%u through the proxy", fd,
        dest.name[0] ? dest.name : "(address)", dest.port);
    flags = fcntl(fd, F_GETFL);
    r = real_connect(fd, (struct sockaddr *)&px, pxlen);
    if (flags >= 0 && !(flags & O_NONBLOCK)) {
        if (r < 0)
            return -1;
        while ((r = hs_io(fd, &hs, &need)) == 0)
            if (wait_fd(fd, need, G.timeout_ms) <= 0) {
                r = -ETIMEDOUT;
                break;
            }
        if (r < 0) {
            shutdown(fd, SHUT_RDWR);
            return fail(-r);
        }
        return 0;
    }
    if (r < 0 && errno != EINPROGRESS)
        return -1;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        shutdown(fd, SHUT_RDWR);
        return fail(ENOMEM);
    }
    p->fd = fd;
    p->epfd = -1;
    p->hs = hs;
    p->hs.px = &G.px;
    pthread_mutex_lock(&G.lock);
    p->next = G.pend;
    G.pend = p;
    atomic_fetch_add(&G.npend, 1);
    r = pending_drive(fd, &p);
    pthread_mutex_unlock(&G.lock);
    if (r == 0)
        return fail(EINPROGRESS);
    if (p != NULL)
        return fail(EINPROGRESS); /* failed already: pollers see the hang-up, SO_ERROR why */
    return 0;
}

EXPORT int
close(int fd)
{
    struct pending *p;

    pthread_once(&G.once, init);
    if (atomic_load(&G.npend) > 0) {
        pthread_mutex_lock(&G.lock);
        p = pending_find(fd);
        if (p != NULL) {
            pending_unlink(p);
            free(p);
        }
        pthread_mutex_unlock(&G.lock);
    }
    if (atomic_load(&G.nuas) > 0) {
        struct uassoc **pp, *a = NULL;
        pthread_mutex_lock(&G.lock);
        for (pp = &G.uas; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->fd == fd) {
                a = *pp;
                *pp = a->next;
                atomic_fetch_sub(&G.nuas, 1);
                break;
            }
        pthread_mutex_unlock(&G.lock);
        if (a != NULL) {
            real_close(a->ctl);
            free(a);
        }
    }
    return real_close(fd);
}

EXPORT int
getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    struct pending *p;

    pthread_once(&G.once, init);
    if (level == SOL_SOCKET && name == SO_ERROR && atomic_load(&G.npend) > 0 && val != NULL &&
        len != NULL && *len >= sizeof(int)) {
        pthread_mutex_lock(&G.lock);
        if (pending_drive(fd, &p) == 0 || (p != NULL && p->failed)) {
            /* A running handshake is a connect in progress: no error yet (like the kernel's). */
            *(int *)val = p->failed ? p->err : 0;
            if (p->failed)
                p->err = 0;
            *len = sizeof(int);
            pthread_mutex_unlock(&G.lock);
            return 0;
        }
        pthread_mutex_unlock(&G.lock);
    }
    return real_getsockopt(fd, level, name, val, len);
}

/* ---- poll, ppoll, select, pselect: a running handshake is waited for on the program's time and
 * hidden from it; its descriptor turns writable for the program only once the tunnel is open. */

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
poll_common(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask)
{
    struct pollfd small[32], *local = small;
    bool mine_small[32], *mine = mine_small;
    int64_t deadline = tmo ? now_ns() + tmo->tv_sec * 1000000000LL + tmo->tv_nsec : 0;
    int r;
    nfds_t i;

    if (atomic_load(&G.npend) == 0 || in_lib)
        return real_ppoll(fds, n, tmo, mask);
    if (n > 32) {
        local = malloc(n * sizeof(*local));
        mine = malloc(n * sizeof(*mine));
        if (local == NULL || mine == NULL) {
            free(local);
            free(mine);
            return fail(ENOMEM);
        }
    }
    for (;;) {
        struct timespec left, *lp = NULL;
        struct pending *p;
        bool again = false;
        int count = 0;

        pthread_mutex_lock(&G.lock);
        for (i = 0; i < n; i++) {
            local[i] = fds[i];
            local[i].revents = 0;
            mine[i] = fds[i].fd >= 0 && pending_drive(fds[i].fd, &p) == 0;
            if (mine[i])
                local[i].events = p->need;
        }
        pthread_mutex_unlock(&G.lock);
        if (tmo != NULL) {
            int64_t d = deadline - now_ns();
            if (d < 0)
                d = 0;
            left.tv_sec = d / 1000000000;
            left.tv_nsec = d % 1000000000;
            lp = &left;
        }
        r = real_ppoll(local, n, lp, mask);
        if (r < 0)
            break;
        pthread_mutex_lock(&G.lock);
        for (i = 0; i < n; i++) {
            if (!mine[i]) {
                fds[i].revents = local[i].revents;
                count += fds[i].revents != 0;
            } else {
                fds[i].revents = 0;
                if (local[i].revents != 0 && pending_drive(fds[i].fd, &p) == 1)
                    again = true; /* ended: the next round polls the socket itself */
            }
        }
        pthread_mutex_unlock(&G.lock);
        r = count;
        if (count > 0 || (!again && tmo != NULL && now_ns() >= deadline))
            break;
    }
    if (local != small) {
        free(local);
        free(mine);
    }
    return r;
}

EXPORT int
poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};

    pthread_once(&G.once, init);
    return poll_common(fds, n, timeout_ms < 0 ? NULL : &ts, NULL);
}

EXPORT int
__poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen)
{
    (void)fdslen;
    return poll(fds, n, timeout_ms);
}

EXPORT int
ppoll(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask)
{
    pthread_once(&G.once, init);
    return poll_common(fds, n, tmo, mask);
}

EXPORT int
__ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask,
            size_t fdslen)
{
    (void)fdslen;
    return ppoll(fds, n, tmo, mask);
}

static bool
sets_have_pending(int nfds, fd_set *r, fd_set *w, fd_set *e)
{
    struct pending *p;
    bool yes = false;

    pthread_mutex_lock(&G.lock);
    for (p = G.pend; p != NULL && !yes; p = p->next)
        yes = p->fd < nfds && p->fd < FD_SETSIZE &&
              ((r && FD_ISSET(p->fd, r)) || (w && FD_ISSET(p->fd, w)) || (e && FD_ISSET(p->fd, e)));
    pthread_mutex_unlock(&G.lock);
    return yes;
}

/* select over poll_common, used only while a descriptor of the sets has a handshake running. */
static int
select_common(int nfds, fd_set *rs, fd_set *ws, fd_set *es, const struct timespec *tmo,
              const sigset_t *mask)
{
    struct pollfd pf[FD_SETSIZE];
    nfds_t n = 0, i;
    int fd, r, count = 0;

    for (fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
        short ev =
            (short)((rs && FD_ISSET(fd, rs) ? POLLIN : 0) | (ws && FD_ISSET(fd, ws) ? POLLOUT : 0) |
                    (es && FD_ISSET(fd, es) ? POLLPRI : 0));
        if (ev != 0)
            pf[n++] = (struct pollfd){.fd = fd, .events = ev};
    }
    r = poll_common(pf, n, tmo, mask);
    if (r < 0)
        return r;
    if (rs)
        FD_ZERO(rs);
    if (ws)
        FD_ZERO(ws);
    if (es)
        FD_ZERO(es);
    for (i = 0; i < n; i++) {
        short re = pf[i].revents;
        if (re & POLLNVAL)
            return fail(EBADF);
        if (rs && (pf[i].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR)))
            FD_SET(pf[i].fd, rs), count++;
        if (ws && (pf[i].events & POLLOUT) && (re & (POLLOUT | POLLHUP | POLLERR)))
            FD_SET(pf[i].fd, ws), count++;
        if (es && (pf[i].events & POLLPRI) && (re & POLLPRI))
            FD_SET(pf[i].fd, es), count++;
    }
    return count;
}

EXPORT int
select(int nfds, fd_set *rs, fd_set *ws, fd_set *es, struct timeval *tv)
{
    struct timespec ts;

    pthread_once(&G.once, init);
    if (atomic_load(&G.npend) == 0 || in_lib || !sets_have_pending(nfds, rs, ws, es))
        return real_select(nfds, rs, ws, es, tv);
    if (tv != NULL) {
        ts.tv_sec = tv->tv_sec;
        ts.tv_nsec = tv->tv_usec * 1000L;
    }
    return select_common(nfds, rs, ws, es, tv ? &ts : NULL, NULL);
}

EXPORT int
pselect(int nfds, fd_set *rs, fd_set *ws, fd_set *es, const struct timespec *tmo,
        const sigset_t *mask)
{
    pthread_once(&G.once, init);
    if (atomic_load(&G.npend) == 0 || in_lib || !sets_have_pending(nfds, rs, ws, es))
        return real_pselect(nfds, rs, ws, es, tmo, mask);
    return select_common(nfds, rs, ws, es, tmo, mask);
}

/* ---- epoll: while the handshake runs, the program's registration of the descriptor is kept
 * aside and the set holds the library's own (one-shot, tagged); the program's goes back once the
 * tunnel is open, and the kernel then reports the socket's real state, edge-triggered or not. */

EXPORT int
epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    struct pending *p;
    int r;

    pthread_once(&G.once, init);
    if (atomic_load(&G.npend) == 0 || in_lib)
        return real_epoll_ctl(epfd, op, fd, ev);
    pthread_mutex_lock(&G.lock);
    if (pending_drive(fd, &p) != 0 || p == NULL) {
        pthread_mutex_unlock(&G.lock);
        return real_epoll_ctl(epfd, op, fd, ev);
    }
    if (op == EPOLL_CTL_DEL) {
        p->epfd = -1;
        r = real_epoll_ctl(epfd, op, fd, ev);
    } else {
        struct epoll_event mine = {
            .events = (p->need == POLLIN ? EPOLLIN : EPOLLOUT) | EPOLLONESHOT,
            .data.u64 = EP_TAG | (uint32_t)fd,
        };
        r = real_epoll_ctl(epfd, op, fd, &mine);
        if (r == 0) {
            p->epfd = epfd;
            p->user_ev = *ev;
        }
    }
    pthread_mutex_unlock(&G.lock);
    return r;
}

EXPORT int
epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout_ms, const sigset_t *mask)
{
    int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
    int r;

    pthread_once(&G.once, init);
    for (;;) {
        int left = timeout_ms, i, j = 0;
        struct pending *p;
        if (timeout_ms > 0) {
            int64_t d = deadline - now_ns();
            left = d > 0 ? (int)((d + 999999) / 1000000) : 0;
        }
        r = real_epoll_pwait(epfd, evs, max, left, mask);
        if (r <= 0 || in_lib)
            return r;
        for (i = 0; i < r; i++) {
            if ((evs[i].data.u64 & 0xffffffff00000000ULL) != EP_TAG) {
                evs[j++] = evs[i];
                continue;
            }
            pthread_mutex_lock(&G.lock);
            pending_drive((int)(uint32_t)evs[i].data.u64, &p);
            pthread_mutex_unlock(&G.lock);
        }
        if (j > 0 || timeout_ms == 0 || (timeout_ms > 0 && now_ns() >= deadline))
            return j;
    }
}

EXPORT int
epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms)
{
    return epoll_pwait(epfd, evs, max, timeout_ms, NULL);
}

/* ---- name resolution: remote DNS through placeholder addresses */

static bool
resolve_locally(const char *name)
{
    enum { HOSTS_MAX = 1 << 18 };
    struct in6_addr a;
    char *buf;
    size_t len = 0;
    ssize_t n;
    int fd;
    bool yes;

    if (name == NULL || G.names.cap == 0 || in_lib || inet_pton(AF_INET, name, &a) == 1 ||
        inet_pton(AF_INET6, name, &a) == 1 || strcasecmp(name, "localhost") == 0 ||
        strchr(name, '%') != NULL)
        return true;
    if (strlen(name) > 12 && strcasecmp(name + strlen(name) - 10, ".localhost") == 0)
        return true;
    /* hosts(5) names stay the program's; the file is small and read whole. */
    fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    buf = malloc(HOSTS_MAX);
    if (buf == NULL) {
        real_close(fd);
        return false;
    }
    while (len < HOSTS_MAX && (n = real_read(fd, buf + len, HOSTS_MAX - len)) > 0)
        len += (size_t)n;
    real_close(fd);
    yes = plcore_hosts_has(buf, len, name);
    free(buf);
    return yes;
}

static uint32_t
placeholder(const char *name)
{
    uint32_t ip;

    pthread_mutex_lock(&G.lock);
    ip = plcore_names_get(&G.names, name);
    pthread_mutex_unlock(&G.lock);
    if (ip != 0)
        dbg("ringsocks-preload: %s -> placeholder %u.%u.%u.%u", name, ip >> 24, (ip >> 16) & 255,
            (ip >> 8) & 255, ip & 255);
    return ip;
}

EXPORT int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
            struct addrinfo **res)
{
    struct addrinfo h = {0};
    char lit[64];
    uint32_t ip;
    int r;

    if (!active() || (hints && (hints->ai_flags & AI_NUMERICHOST)) || resolve_locally(node) ||
        (hints && hints->ai_family != AF_UNSPEC && hints->ai_family != AF_INET &&
         hints->ai_family != AF_INET6))
        return real_getaddrinfo(node, service, hints, res);
    ip = placeholder(node);
    if (ip == 0)
        return EAI_NONAME;
    if (hints != NULL)
        h = *hints;
    /* glibc builds the list (ports, socket types, allocation freeaddrinfo expects) from the
     * placeholder as a literal; an IPv6-only caller gets it IPv4-mapped. */
    h.ai_flags = (h.ai_flags & ~(AI_ADDRCONFIG | AI_CANONNAME)) | AI_NUMERICHOST;
    snprintf(lit, sizeof(lit), "%s%u.%u.%u.%u", h.ai_family == AF_INET6 ? "::ffff:" : "", ip >> 24,
             (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
    r = real_getaddrinfo(lit, service, &h, res);
    /* freeaddrinfo() frees ai_canonname with free(). */
    if (r == 0 && hints != NULL && (hints->ai_flags & AI_CANONNAME))
        (*res)->ai_canonname = strdup(node);
    return r;
}

EXPORT int
gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                 struct hostent **result, int *h_errnop)
{
    struct {
        char *aliases[1];
        char *addrs[2];
        uint8_t addr[16];
    } * b;
    size_t nlen;
    uint32_t ip;

    if (!active() || resolve_locally(name) || (af != AF_INET && af != AF_INET6))
        return real_ghbn_r(name, af, ret, buf, buflen, result, h_errnop);
    nlen = strlen(name) + 1;
    *result = NULL;
    if (buflen < sizeof(*b) + nlen + 8) {
        *h_errnop = NETDB_INTERNAL;
        return ERANGE;
    }
    ip = placeholder(name);
    if (ip == 0) {
        *h_errnop = HOST_NOT_FOUND;
        return ENOENT;
    }
    b = (void *)(((uintptr_t)buf + 7) & ~(uintptr_t)7);
    memset(b, 0, sizeof(*b));
    ip = htonl(ip);
    if (af == AF_INET) {
        memcpy(b->addr, &ip, 4);
    } else {
        b->addr[10] = b->addr[11] = 0xff;
        memcpy(b->addr + 12, &ip, 4);
    }
    b->addrs[0] = (char *)b->addr;
    ret->h_name = (char *)(b + 1);
    memcpy(ret->h_name, name, nlen);
    ret->h_aliases = b->aliases;
    ret->h_addrtype = af;
    ret->h_length = af == AF_INET ? 4 : 16;
    ret->h_addr_list = b->addrs;
    *result = ret;
    return 0;
}

EXPORT int
gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                struct hostent **result, int *h_errnop)
{
    return gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

static __thread struct hostent ghbn_ent;
static __thread char ghbn_buf[1024];

EXPORT struct hostent *
gethostbyname2(const char *name, int af)
{
    struct hostent *res = NULL;
    int herr = 0;

    if (!active() || resolve_locally(name) || (af != AF_INET && af != AF_INET6))
        return real_ghbn2(name, af);
    if (gethostbyname2_r(name, af, &ghbn_ent, ghbn_buf, sizeof(ghbn_buf), &res, &herr) != 0 ||
        res == NULL)
        h_errno = herr ? herr : HOST_NOT_FOUND;
    return res;
}

EXPORT struct hostent *
gethostbyname(const char *name)
{
    return gethostbyname2(name, AF_INET);
}

/* ---- UDP through SOCKS5 UDP ASSOCIATE. Inside the library only real_* calls are made: the
 * interposed ones take G.lock. */

static struct uassoc *
uassoc_find(int fd)
{
    struct uassoc *a;

    for (a = G.uas; a != NULL; a = a->next)
        if (a->fd == fd)
            return a;
    return NULL;
}

/* fd's association, made on first use: a blocking handshake on a TCP connection of the
 * library's (bounded by RINGSOCKS_TIMEOUT_MS). NULL with errno set on failure. */
static struct uassoc *
uassoc_get(int fd, int family)
{
    struct plcore_dest any = {0};
    struct sockaddr_storage px, local;
    socklen_t pxlen, llen = sizeof(local);
    struct plcore_hs hs;
    struct uassoc *a;
    short need = 0;
    int ctl, r;

    pthread_mutex_lock(&G.lock);
    a = uassoc_find(fd);
    pthread_mutex_unlock(&G.lock);
    if (a != NULL)
        return a;
    if (proxy_addr(&px, &pxlen) < 0) {
        errno = EHOSTUNREACH;
        return NULL;
    }
    /* DST.ADDR: the address datagrams will come from, unknown before the first send. */
    any.addr.ss_family = AF_INET;
    ctl = socket(px.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ctl < 0)
        return NULL;
    if (plcore_hs_start(&hs, &G.px, &any) < 0 || real_connect(ctl, (void *)&px, pxlen) < 0)
        goto fail;
    hs.cmd = 3;
    while ((r = hs_io(ctl, &hs, &need)) == 0)
        if (wait_fd(ctl, need, G.timeout_ms) <= 0) {
            r = -ETIMEDOUT;
            break;
        }
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL || plcore_hs_bound(&hs, &a->relay, &a->relay_len) < 0)
        goto fail;
    /* A relay at the unspecified address is at the proxy's (RFC 1928 leaves it open). */
    if (a->relay.ss_family == AF_INET &&
        ((struct sockaddr_in *)&a->relay)->sin_addr.s_addr == htonl(INADDR_ANY) &&
        getpeername(ctl, (struct sockaddr *)&local, &llen) == 0 && local.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->relay)->sin_addr = ((struct sockaddr_in *)&local)->sin_addr;
    if (family == AF_INET6 && a->relay.ss_family == AF_INET)
        to_v4_mapped(&a->relay, &a->relay_len);
    a->fd = fd;
    a->ctl = ctl;
    pthread_mutex_lock(&G.lock);
    a->next = G.uas;
    G.uas = a;
    atomic_fetch_add(&G.nuas, 1);
    pthread_mutex_unlock(&G.lock);
    dbg("ringsocks-preload: fd %d: UDP association open", fd);
    return a;
fail:
    r = errno;
    free(a);
    real_close(ctl);
    errno = r ? r : ECONNREFUSED;
    return NULL;
}

/* Whether a datagram from fd to sa goes through the proxy: dest filled when it does. */
static bool
udp_proxied(int fd, const struct sockaddr *sa, socklen_t salen, struct plcore_dest *dest)
{
    struct sockaddr_storage px;
    socklen_t pxlen, olen = sizeof(int);
    int type = 0;
    uint32_t ip;

    if (!active() || sa == NULL || salen < sizeof(struct sockaddr_in) ||
        (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        (G.px.scheme != PLCORE_SOCKS5 && G.px.scheme != PLCORE_SOCKS5H) ||
        real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0 || type != SOCK_DGRAM)
        return false;
    memset(dest, 0, sizeof(*dest));
    dest->port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    pthread_mutex_lock(&G.lock);
    if (G.names.cap > 0 && plcore_sa_ipv4(sa, &ip) && plcore_names_lookup(&G.names, ip) != NULL)
        strcpy(dest->name, plcore_names_lookup(&G.names, ip));
    pthread_mutex_unlock(&G.lock);
    if (dest->name[0] != '\0')
        return true;
    if (proxy_addr(&px, &pxlen) < 0 || bypassed(sa))
        return false;
    memcpy(&dest->addr, sa, salen < sizeof(dest->addr) ? salen : sizeof(dest->addr));
    return true;
}

/* One datagram to dest through a's relay. */
static ssize_t
udp_send(struct uassoc *a, const struct plcore_dest *dest, const void *buf, size_t len, int flags)
{
    uint8_t *pkt = malloc(len + 262);
    ssize_t n;
    int hl;

    if (pkt == NULL)
        return fail(ENOMEM);
    hl = plcore_udp_header(pkt, dest);
    memcpy(pkt + hl, buf, len);
    n = real_sendto(a->fd, pkt, (size_t)hl + len, flags, (struct sockaddr *)&a->relay,
                    a->relay_len);
    free(pkt);
    return n < 0 ? n : (ssize_t)len;
}

/* fd's association if it has one (connected: only if connect() named a proxied peer). */
static struct uassoc *
uassoc_of(int fd, bool connected)
{
    struct uassoc *a;

    pthread_once(&G.once, init);
    if (atomic_load(&G.nuas) == 0 || in_lib)
        return NULL;
    pthread_mutex_lock(&G.lock);
    a = uassoc_find(fd);
    if (a != NULL && connected && !a->connected)
        a = NULL;
    pthread_mutex_unlock(&G.lock);
    return a;
}

/* connect() on a UDP socket to a proxied peer: the socket is connected to the relay (so only
 * the relay's datagrams arrive, as only the peer's would), the peer kept for send/write. */
static int
udp_connect(int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct plcore_dest dest;
    struct uassoc *a;

    if (!udp_proxied(fd, sa, salen, &dest)) {
        struct uassoc *old = uassoc_of(fd, false);
        if (old != NULL)
            old->connected = false;
        return real_connect(fd, sa, salen);
    }
    a = uassoc_get(fd, sa->sa_family);
    if (a == NULL)
        return -1;
    if (real_connect(fd, (struct sockaddr *)&a->relay, a->relay_len) < 0)
        return -1;
    pthread_mutex_lock(&G.lock);
    a->peer = dest;
    a->connected = true;
    pthread_mutex_unlock(&G.lock);
    return 0;
}

EXPORT ssize_t
sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *sa, socklen_t salen)
{
    struct plcore_dest dest;
    struct uassoc *a;

    if (sa == NULL && (a = uassoc_of(fd, true)) != NULL)
        return udp_send(a, &a->peer, buf, len, flags);
    if (!udp_proxied(fd, sa, salen, &dest))
        return real_sendto(fd, buf, len, flags, sa, salen);
    a = uassoc_get(fd, sa->sa_family);
    if (a == NULL)
        return -1;
    return udp_send(a, &dest, buf, len, flags);
}

EXPORT ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
    return sendto(fd, buf, len, flags, NULL, 0);
}

EXPORT ssize_t
write(int fd, const void *buf, size_t len)
{
    struct uassoc *a = uassoc_of(fd, true);

    if (a != NULL)
        return udp_send(a, &a->peer, buf, len, 0);
    return real_write(fd, buf, len);
}

/* The data of msg's iovecs in one heap block (NULL with errno on failure). */
static uint8_t *
iov_flatten(const struct msghdr *msg, size_t *len)
{
    uint8_t *b;
    size_t i, n = 0;

    for (i = 0; i < msg->msg_iovlen; i++)
        n += msg->msg_iov[i].iov_len;
    b = malloc(n ? n : 1);
    if (b == NULL)
        return NULL;
    for (n = 0, i = 0; i < msg->msg_iovlen; i++) {
        memcpy(b + n, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
        n += msg->msg_iov[i].iov_len;
    }
    *len = n;
    return b;
}

EXPORT ssize_t
sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct plcore_dest dest;
    struct uassoc *a = NULL;
    uint8_t *b;
    size_t len;
    ssize_t n;

    if (msg->msg_name == NULL)
        a = uassoc_of(fd, true);
    else if (udp_proxied(fd, msg->msg_name, msg->msg_namelen, &dest))
        a = uassoc_get(fd, ((struct sockaddr *)msg->msg_name)->sa_family);
    else
        return real_sendmsg(fd, msg, flags);
    if (a == NULL)
        return msg->msg_name == NULL ? real_sendmsg(fd, msg, flags) : -1;
    /* Ancillary data (msg_control) is not carried through the relay. */
    b = iov_flatten(msg, &len);
    if (b == NULL)
        return fail(ENOMEM);
    n = udp_send(a, msg->msg_name == NULL ? &a->peer : &dest, b, len, flags);
    free(b);
    return n;
}

static void
fill_addr(const struct sockaddr_storage *ss, struct sockaddr *sa, socklen_t *salen)
{
    socklen_t n =
        ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

    if (sa != NULL && salen != NULL) {
        memcpy(sa, ss, *salen < n ? *salen : n);
        *salen = n;
    }
}

/* One datagram from a's socket: the relay's header stripped, its source reported. */
static ssize_t
udp_recv(struct uassoc *a, void *buf, size_t len, int flags, struct sockaddr *sa, socklen_t *salen)
{
    struct sockaddr_storage from;
    struct plcore_dest src;
    uint8_t *pkt;
    ssize_t n;
    int off;

    pkt = malloc(len + 262);
    if (pkt == NULL)
        return fail(ENOMEM);
    for (;;) {
        socklen_t flen = sizeof(from);
        n = real_recvfrom(a->fd, pkt, len + 262, flags, (struct sockaddr *)&from, &flen);
        if (n < 0)
            break;
        if (!same_endpoint((struct sockaddr *)&from, &a->relay)) {
            /* From elsewhere (a bypassed peer): as it came. */
            memcpy(buf, pkt, (size_t)n < len ? (size_t)n : len);
            fill_addr(&from, sa, salen);
            n = (size_t)n < len ? n : (ssize_t)len;
            break;
        }
        off = plcore_udp_parse(pkt, (size_t)n, &src);
        if (off < 0)
            continue; /* a malformed or fragmented datagram is dropped */
        if (src.name[0] != '\0') {
            struct sockaddr_in *v4 = (struct sockaddr_in *)&src.addr;
            v4->sin_family = AF_INET;
            v4->sin_port = htons(src.port);
            v4->sin_addr.s_addr = htonl(placeholder(src.name));
        }
        n -= off;
        memcpy(buf, pkt + off, (size_t)n < len ? (size_t)n : len);
        n = (size_t)n < len ? n : (ssize_t)len;
        fill_addr(&src.addr, sa, salen);
        break;
    }
    free(pkt);
    return n;
}

EXPORT ssize_t
recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa, socklen_t *salen)
{
    struct uassoc *a = uassoc_of(fd, false);

    if (a == NULL)
        return real_recvfrom(fd, buf, len, flags, sa, salen);
    return udp_recv(a, buf, len, flags, sa, salen);
}

EXPORT ssize_t
recv(int fd, void *buf, size_t len, int flags)
{
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}

EXPORT ssize_t
read(int fd, void *buf, size_t len)
{
    struct uassoc *a = uassoc_of(fd, false);

    if (a == NULL)
        return real_read(fd, buf, len);
    return udp_recv(a, buf, len, 0, NULL, NULL);
}

EXPORT ssize_t
recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct uassoc *a = uassoc_of(fd, false);
    uint8_t *b;
    size_t i, len = 0, off = 0;
    ssize_t n;

    if (a == NULL)
        return real_recvmsg(fd, msg, flags);
    for (i = 0; i < msg->msg_iovlen; i++)
        len += msg->msg_iov[i].iov_len;
    b = malloc(len ? len : 1);
    if (b == NULL)
        return fail(ENOMEM);
    n = udp_recv(a, b, len, flags, msg->msg_name, &msg->msg_namelen);
    for (i = 0; n > 0 && i < msg->msg_iovlen && off < (size_t)n; i++) {
        size_t k =
            msg->msg_iov[i].iov_len < (size_t)n - off ? msg->msg_iov[i].iov_len : (size_t)n - off;
        memcpy(msg->msg_iov[i].iov_base, b + off, k);
        off += k;
    }
    free(b);
    msg->msg_controllen = 0;
    msg->msg_flags = 0;
    return n;
}
