/*
 * socksbench.c - small benchmark driver: a target server and two clients
 * (bulk throughput, tunnel rate) that reach it directly or through a SOCKS5
 * proxy (no authentication, CONNECT to an IPv4 address).
 *
 * Owns its sockets and threads only; libc, libm and pthreads, no other
 * dependency. Must never connect or bind anywhere but the IPv4 loopback
 * addresses given on the command line (127.0.0.0/8 is enforced).
 *
 * Subcommands:
 *   socksbench serve --port P [--host 127.0.0.1] [--threads T]
 *   socksbench throughput --target HOST:PORT [--proxy HOST:PORT] [--tunnels N]
 *                         [--seconds S] [--verify]
 *   socksbench connrate --target HOST:PORT [--proxy HOST:PORT] [--workers C]
 *                       [--seconds S]
 *
 * Target protocol (one port, one byte selects the mode):
 *   The client's first byte after the TCP (or SOCKS5) connection is set up:
 *   'S' source: the server ignores anything else the client sends and streams
 *       a fixed pattern (byte at stream offset o is o % 251) until the client
 *       closes or resets.
 *   'E' echo:   the server sends back every later byte it receives, in order,
 *       until the client closes; a full client stops the server reading.
 *   Any other byte closes the connection.
 *
 * throughput: N tunnels are set up first; when all are ready they read 'S'
 * data for S seconds, each counting what it received (--verify also compares
 * it with the pattern, which costs client CPU). Prints the total Gbit/s.
 *
 * connrate: C workers each loop: connect -> SOCKS5 greeting, read the 2-byte
 * method reply -> CONNECT request, read the reply (10 bytes for an IPv4 bound
 * address) -> send 'E' and 64 bytes -> read the 64 bytes back and compare ->
 * close. The latency of one tunnel runs from socket() to close(). Client
 * sockets close with SO_LINGER 0 (an RST), so the client leaves no TIME_WAIT;
 * the proxy's own connections to the target still do, which is why
 * bench/macro-quick.sh runs every server in a fresh network namespace.
 *
 * Every run ends by itself: socket timeouts bound each blocking call, and a
 * watchdog exits with status 3 if a run overstays S + 20 seconds.
 * Output: human-readable lines, then one JSON line last on stdout:
 *   {"mode":"throughput","tunnels":N,"seconds":...,"bytes":...,"gbps":...,"errors":...}
 *   {"mode":"connrate","workers":C,"seconds":...,"tunnels":...,"rate":...,
 *    "p50_us":...,"p99_us":...,"errors":...}
 * Exit status: 0 when the run did some work, 1 when nothing succeeded,
 * 2 on bad usage, 3 on watchdog expiry.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SB_MODE_SOURCE 'S'
#define SB_MODE_ECHO   'E'

#define SB_PATTERN_MOD   251
#define SB_CHUNK         (256 * 1024)
#define SB_ECHO_BUF      (16 * 1024)
#define SB_ECHO_LEN      64
#define SB_IO_TIMEOUT_MS 2000
#define SB_WATCHDOG_S    20

/* The stream pattern, built once before any thread starts, read-only after. */
struct pattern {
    uint8_t *bytes; /* SB_CHUNK + SB_PATTERN_MOD bytes, bytes[i] = i % 251 */
};

static void
usage(void)
{
    fputs("usage:\n"
          "  socksbench serve --port P [--host 127.0.0.1] [--threads 2]\n"
          "  socksbench throughput --target HOST:PORT [--proxy HOST:PORT] [--tunnels 1]\n"
          "                        [--seconds 5] [--verify]\n"
          "  socksbench connrate --target HOST:PORT [--proxy HOST:PORT] [--workers 64]\n"
          "                      [--seconds 5]\n"
          "With --proxy, both modes also take --user U --pass P (RFC 1929) and\n"
          "--target-name NAME (CONNECT by name, e.g. localhost, with the target's port).\n"
          "HOST must be an IPv4 loopback address (127.0.0.0/8).\n",
          stderr);
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
pattern_init(struct pattern *pat)
{
    pat->bytes = malloc(SB_CHUNK + SB_PATTERN_MOD);
    if (!pat->bytes)
        return -ENOMEM;
    for (size_t i = 0; i < SB_CHUNK + SB_PATTERN_MOD; i++)
        pat->bytes[i] = (uint8_t)(i % SB_PATTERN_MOD);
    return 0;
}

/* Accepts only dotted IPv4 in 127.0.0.0/8: this tool never leaves the host. */
static int
parse_loopback(const char *host, struct in_addr *out)
{
    if (inet_pton(AF_INET, host, out) != 1)
        return -EINVAL;
    if ((ntohl(out->s_addr) >> 24) != 127)
        return -EPERM;
    return 0;
}

static int
parse_port(const char *s, uint16_t *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

/* "127.0.0.1:1080" -> sockaddr_in. */
static int
parse_hostport(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    size_t hlen;
    uint16_t port;
    int rc;

    if (!colon)
        return -EINVAL;
    hlen = (size_t)(colon - s);
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    rc = parse_loopback(host, &sa->sin_addr);
    if (rc < 0)
        return rc;
    rc = parse_port(colon + 1, &port);
    if (rc < 0 || port == 0)
        return -EINVAL;
    sa->sin_port = htons(port);
    return 0;
}

static int
parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 3600)
        return -EINVAL;
    *out = v;
    return 0;
}

static int
parse_count(const char *s, int max, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* ---------------------------------------------------------------- serve */

enum sconn_mode {
    SCONN_WAIT_MODE,
    SCONN_SOURCE,
    SCONN_ECHO,
};

struct sconn {
    int fd;
    enum sconn_mode mode;
    uint32_t events;      /* what epoll currently watches */
    uint64_t sent;        /* source: stream offset, selects the pattern phase */
    size_t pend_off;      /* echo: bytes of buf already sent back */
    size_t pend_len;      /* echo: bytes of buf to send back */
    uint8_t buf[SB_ECHO_BUF];
};

struct server {
    int lfd;
    const struct pattern *pat;
};

static void
sconn_close(int ep, struct sconn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Returns 0 to keep the connection, < 0 to close it. */
static int
sconn_watch(int ep, struct sconn *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };

    if (c->events == events)
        return 0;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == -1)
        return -errno;
    c->events = events;
    return 0;
}

/* Sends buf[pend_off, pend_len); returns 1 when all is sent, 0 on EAGAIN, < 0 on error. */
static int
sconn_echo_flush(struct sconn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t n = send(c->fd, c->buf + c->pend_off, c->pend_len - c->pend_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c->pend_off += (size_t)n;
    }
    c->pend_off = 0;
    c->pend_len = 0;
    return 1;
}

static int
sconn_echo(int ep, struct sconn *c)
{
    for (int round = 0; round < 16; round++) {
        int rc;
        ssize_t n;

        if (c->pend_len) {
            rc = sconn_echo_flush(c);
            if (rc < 0)
                return rc;
            /* Back-pressure: stop reading until the client takes what we hold. */
            if (rc == 0)
                return sconn_watch(ep, c, EPOLLOUT);
        }
        n = recv(c->fd, c->buf, sizeof(c->buf), MSG_DONTWAIT);
        if (n == 0)
            return -ECONNRESET;
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return sconn_watch(ep, c, EPOLLIN);
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c->pend_off = 0;
        c->pend_len = (size_t)n;
    }
    /* Fairness: yield to other connections; level-triggered epoll comes back. */
    return sconn_watch(ep, c, c->pend_len ? EPOLLOUT : EPOLLIN);
}

static int
sconn_source(const struct server *srv, struct sconn *c, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        uint8_t junk[4096];
        ssize_t n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);

        if (n == 0)
            return -ECONNRESET;
        if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
    }
    if (!(events & EPOLLOUT))
        return 0;
    for (int round = 0; round < 4; round++) {
        const uint8_t *p = srv->pat->bytes + (c->sent % SB_PATTERN_MOD);
        ssize_t n = send(c->fd, p, SB_CHUNK, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            return -errno;
        }
        c->sent += (uint64_t)n;
    }
    return 0;
}

static int
sconn_first(int ep, const struct server *srv, struct sconn *c)
{
    ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), MSG_DONTWAIT);

    if (n == 0)
        return -ECONNRESET;
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return -errno;
    }
    switch (c->buf[0]) {
    case SB_MODE_SOURCE:
        c->mode = SCONN_SOURCE;
        if (sconn_watch(ep, c, EPOLLIN | EPOLLOUT) < 0)
            return -EIO;
        return sconn_source(srv, c, EPOLLOUT);
    case SB_MODE_ECHO:
        c->mode = SCONN_ECHO;
        /* Bytes that came with the mode byte are echoed first. */
        c->pend_off = 1;
        c->pend_len = (size_t)n;
        return sconn_echo(ep, c);
    default:
        return -EPROTO;
    }
}

static void
server_accept(int ep, const struct server *srv)
{
    for (;;) {
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct epoll_event ev;
        struct sconn *c;
        int one = 1;

        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* EAGAIN: drained; EMFILE and the like: try again on the next wakeup. */
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = malloc(sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->mode = SCONN_WAIT_MODE;
        c->events = EPOLLIN;
        c->sent = 0;
        c->pend_off = 0;
        c->pend_len = 0;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
            close(fd);
            free(c);
        }
    }
}

static void *
server_thread(void *arg)
{
    const struct server *srv = arg;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL };
    struct epoll_event evs[64];
    int ep = epoll_create1(EPOLL_CLOEXEC);

    if (ep == -1 || epoll_ctl(ep, EPOLL_CTL_ADD, srv->lfd, &ev) == -1) {
        perror("socksbench serve: epoll");
        exit(1);
    }
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);

        for (int i = 0; i < n; i++) {
            struct sconn *c = evs[i].data.ptr;
            int rc;

            if (!c) {
                server_accept(ep, srv);
                continue;
            }
            switch (c->mode) {
            case SCONN_WAIT_MODE:
                rc = sconn_first(ep, srv, c);
                break;
            case SCONN_SOURCE:
                rc = sconn_source(srv, c, evs[i].events);
                break;
            default:
                rc = sconn_echo(ep, c);
                break;
            }
            if (rc < 0)
                sconn_close(ep, c);
        }
    }
    return NULL;
}

static int
cmd_serve(int argc, char **argv, const struct pattern *pat)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    const char *host = "127.0.0.1";
    struct server srv = { .lfd = -1, .pat = pat };
    uint16_t port = 0;
    int nthreads = 2;
    int one = 1;
    sigset_t set;
    int sig;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        int rc = -EINVAL;

        if (!val)
            rc = -EINVAL;
        else if (!strcmp(argv[i], "--port"))
            rc = parse_port(val, &port);
        else if (!strcmp(argv[i], "--host"))
            rc = parse_loopback(val, &sa.sin_addr);
        else if (!strcmp(argv[i], "--threads"))
            rc = parse_count(val, 64, &nthreads);
        if (rc == -EPERM) {
            fprintf(stderr, "socksbench: --host must be an IPv4 loopback address\n");
            return 2;
        }
        if (rc < 0) {
            usage();
            return 2;
        }
        if (!strcmp(argv[i], "--host"))
            host = val;
        i++;
    }
    sa.sin_port = htons(port);
    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (srv.lfd == -1 ||
        setsockopt(srv.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        bind(srv.lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(srv.lfd, 4096) == -1) {
        perror("socksbench serve: listen");
        return 1;
    }
    {
        socklen_t len = sizeof(sa);

        getsockname(srv.lfd, (struct sockaddr *)&sa, &len);
        fprintf(stderr, "socksbench: serving on %s:%u (%d threads)\n", host,
                ntohs(sa.sin_port), nthreads);
    }
    /* Workers never see SIGTERM/SIGINT; the main thread waits for them and exits 0. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (int i = 0; i < nthreads; i++) {
        pthread_t t;

        if (pthread_create(&t, NULL, server_thread, &srv) != 0) {
            fprintf(stderr, "socksbench serve: pthread_create failed\n");
            return 1;
        }
        pthread_detach(t);
    }
    sigwait(&set, &sig);
    return 0;
}

/* --------------------------------------------------------------- clients */

struct client_opts {
    struct sockaddr_in target;
    struct sockaddr_in proxy;
    const char *user, *pass; /* RFC 1929 credentials, or NULL */
    const char *target_name; /* CONNECT to this name (ATYP 3) and the target's port */
    bool use_proxy;
    bool verify;
    double seconds;
    int count; /* tunnels or workers */
};

static int
write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* EOF before len bytes is -ECONNABORTED; an expired SO_RCVTIMEO is -ETIMEDOUT. */
static int
read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = recv(fd, p, len, 0);

        if (n == 0)
            return -ECONNABORTED;
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * RFC 1928 sections 3, 4 and 6: greeting (no-auth, or username/password per
 * RFC 1929 when o->user is set), then CONNECT to the target's IPv4 address
 * or to o->target_name. Returns 0, -errno, or -EPROTO for a malformed or
 * refusing reply (the reply code goes to *rep when the proxy sent one).
 */
static int
socks5_client(int fd, const struct client_opts *o, int *rep)
{
    const struct sockaddr_in *dst = &o->target;
    uint8_t greet[3] = { 5, 1, o->user ? 2 : 0 };
    uint8_t req[4 + 1 + 255 + 2] = { 5, 1, 0, 1 };
    size_t req_len;
    uint8_t r[22];
    size_t rest;
    int rc;

    *rep = -1;
    rc = write_full(fd, greet, sizeof(greet));
    if (rc < 0)
        return rc;
    rc = read_full(fd, r, 2);
    if (rc < 0)
        return rc;
    if (r[0] != 5 || r[1] != greet[2])
        return -EPROTO;
    if (o->user) {
        uint8_t auth[1 + 1 + 255 + 1 + 255];
        size_t ul = strlen(o->user), pl = strlen(o->pass);
        auth[0] = 1;
        auth[1] = (uint8_t)ul;
        memcpy(auth + 2, o->user, ul);
        auth[2 + ul] = (uint8_t)pl;
        memcpy(auth + 3 + ul, o->pass, pl);
        rc = write_full(fd, auth, 3 + ul + pl);
        if (rc < 0)
            return rc;
        rc = read_full(fd, r, 2);
        if (rc < 0)
            return rc;
        if (r[0] != 1 || r[1] != 0)
            return -EACCES;
    }
    if (o->target_name) {
        size_t nl = strlen(o->target_name);
        req[3] = 3;
        req[4] = (uint8_t)nl;
        memcpy(req + 5, o->target_name, nl);
        memcpy(req + 5 + nl, &dst->sin_port, 2);
        req_len = 5 + nl + 2;
    } else {
        memcpy(req + 4, &dst->sin_addr, 4);
        memcpy(req + 8, &dst->sin_port, 2);
        req_len = 10;
    }
    rc = write_full(fd, req, req_len);
    if (rc < 0)
        return rc;
    rc = read_full(fd, r, 4);
    if (rc < 0)
        return rc;
    *rep = r[1];
    if (r[0] != 5 || r[1] != 0)
        return -EPROTO;
    /* BND.ADDR is whatever family the proxy bound: read it whole. */
    switch (r[3]) {
    case 1:
        rest = 4 + 2;
        break;
    case 4:
        rest = 16 + 2;
        break;
    default:
        return -EPROTO;
    }
    return read_full(fd, r + 4, rest);
}

/* Connected socket (through the proxy when asked) with bounded blocking calls, or -errno. */
static int
client_open(const struct client_opts *o, bool linger0, int *rep)
{
    const struct sockaddr_in *sa = o->use_proxy ? &o->proxy : &o->target;
    struct timeval tv = { .tv_sec = SB_IO_TIMEOUT_MS / 1000,
                          .tv_usec = (SB_IO_TIMEOUT_MS % 1000) * 1000 };
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    int one = 1;
    int fd;
    int rc;

    *rep = -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    /* On Linux SO_SNDTIMEO also bounds connect(). */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1 ||
        (linger0 && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == -1)) {
        rc = -errno;
        goto fail;
    }
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == -1) {
        rc = errno == EINPROGRESS || errno == EAGAIN ? -ETIMEDOUT : -errno;
        goto fail;
    }
    if (o->use_proxy) {
        rc = socks5_client(fd, o, rep);
        if (rc < 0)
            goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

static int
parse_client_opts(int argc, char **argv, const char *count_flag, int count_default,
                  struct client_opts *o)
{
    bool have_target = false;

    memset(o, 0, sizeof(*o));
    o->seconds = 5;
    o->count = count_default;
    for (int i = 0; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = -EINVAL;

        if (!strcmp(argv[i], "--verify") && !strcmp(count_flag, "--tunnels")) {
            o->verify = true;
            continue;
        }
        if (!val)
            goto bad;
        if (!strcmp(argv[i], "--target")) {
            rc = parse_hostport(val, &o->target);
            have_target = rc == 0;
        } else if (!strcmp(argv[i], "--proxy")) {
            rc = parse_hostport(val, &o->proxy);
            o->use_proxy = rc == 0;
        } else if (!strcmp(argv[i], "--seconds")) {
            rc = parse_seconds(val, &o->seconds);
        } else if (!strcmp(argv[i], "--user") && strlen(val) >= 1 && strlen(val) <= 255) {
            o->user = val;
            rc = 0;
        } else if (!strcmp(argv[i], "--pass") && strlen(val) >= 1 && strlen(val) <= 255) {
            o->pass = val;
            rc = 0;
        } else if (!strcmp(argv[i], "--target-name") && strlen(val) >= 1 && strlen(val) <= 255) {
            /* The proxy resolves it: give a name that means loopback (localhost). */
            o->target_name = val;
            rc = 0;
        } else if (!strcmp(argv[i], count_flag)) {
            rc = parse_count(val, 4096, &o->count);
        }
        if (rc == -EPERM) {
            fprintf(stderr, "socksbench: %s %s: only 127.0.0.0/8 addresses allowed\n", argv[i],
                    val);
            return -EINVAL;
        }
        if (rc < 0)
            goto bad;
        i++;
    }
    if (have_target && !o->user == !o->pass)
        return 0;
bad:
    usage();
    return -EINVAL;
}

static void *
watchdog_thread(void *arg)
{
    const double *limit_s = arg;
    struct timespec ts = { .tv_sec = (time_t)*limit_s, .tv_nsec = 0 };

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    fprintf(stderr, "socksbench: watchdog: run exceeded %.0f s, exiting\n", *limit_s);
    _exit(3);
    return NULL;
}

static void
watchdog_start(double *limit_s)
{
    pthread_t t;

    if (pthread_create(&t, NULL, watchdog_thread, limit_s) == 0)
        pthread_detach(t);
}

static const char *
err_str(int rc, int rep)
{
    static const char *const rep_str[] = { "succeeded", "general failure", "not allowed",
                                           "network unreachable", "host unreachable",
                                           "connection refused", "TTL expired",
                                           "command not supported",
                                           "address type not supported" };

    if (rc == -EPROTO && rep > 0 && rep < 9)
        return rep_str[rep];
    if (rc == -EPROTO)
        return "malformed SOCKS5 reply";
    if (rc == -EILSEQ)
        return "data mismatch";
    return strerror(-rc);
}

/* ---------------------------------------------------------- throughput */

struct tp_shared {
    const struct client_opts *o;
    const struct pattern *pat;
    pthread_barrier_t ready;
    pthread_barrier_t go;
    uint64_t start_ns; /* written by main between the two barriers */
};

struct tp_worker {
    struct tp_shared *sh;
    pthread_t tid;
    uint64_t bytes;
    uint64_t end_ns;
    int err;
    int rep;
    int stalls; /* receive timeouts: the tunnel stayed silent for SB_IO_TIMEOUT_MS */
};

static void *
tp_thread(void *arg)
{
    struct tp_worker *w = arg;
    struct tp_shared *sh = w->sh;
    uint8_t *buf = malloc(SB_CHUNK);
    uint8_t mode = SB_MODE_SOURCE;
    uint64_t deadline;
    int fd;

    fd = buf ? client_open(sh->o, false, &w->rep) : -ENOMEM;
    if (fd >= 0) {
        int rc = write_full(fd, &mode, 1);

        if (rc < 0) {
            close(fd);
            fd = rc;
        }
    }
    if (fd < 0)
        w->err = fd;
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->go);
    deadline = sh->start_ns + (uint64_t)(sh->o->seconds * 1e9);
    w->end_ns = sh->start_ns;
    while (fd >= 0) {
        ssize_t n = recv(fd, buf, SB_CHUNK, 0);
        uint64_t t = now_ns();

        if (n > 0) {
            if (sh->o->verify &&
                memcmp(buf, sh->pat->bytes + (w->bytes % SB_PATTERN_MOD), (size_t)n) != 0) {
                w->err = -EILSEQ;
                break;
            }
            w->bytes += (uint64_t)n;
        } else if (n == 0) {
            w->err = -ECONNABORTED;
            break;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            w->stalls++;
        } else if (errno != EINTR) {
            w->err = -errno;
            break;
        }
        w->end_ns = t;
        if (t >= deadline)
            break;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

static int
cmd_throughput(int argc, char **argv, const struct pattern *pat)
{
    struct client_opts o;
    struct tp_shared sh = { .o = &o, .pat = pat };
    struct tp_worker *ws;
    uint64_t bytes = 0, end_ns;
    double limit_s, secs, gbps;
    int errors = 0, stalls = 0, first_err = 0, first_rep = -1;

    if (parse_client_opts(argc, argv, "--tunnels", 1, &o) < 0)
        return 2;
    limit_s = o.seconds + SB_WATCHDOG_S;
    watchdog_start(&limit_s);
    ws = calloc((size_t)o.count, sizeof(*ws));
    if (!ws)
        return 1;
    pthread_barrier_init(&sh.ready, NULL, (unsigned)o.count + 1);
    pthread_barrier_init(&sh.go, NULL, (unsigned)o.count + 1);
    for (int i = 0; i < o.count; i++) {
        ws[i].sh = &sh;
        if (pthread_create(&ws[i].tid, NULL, tp_thread, &ws[i]) != 0) {
            fprintf(stderr, "socksbench: pthread_create failed\n");
            return 1;
        }
    }
    pthread_barrier_wait(&sh.ready);
    sh.start_ns = now_ns();
    pthread_barrier_wait(&sh.go);
    end_ns = sh.start_ns;
    for (int i = 0; i < o.count; i++) {
        pthread_join(ws[i].tid, NULL);
        bytes += ws[i].bytes;
        stalls += ws[i].stalls;
        if (ws[i].end_ns > end_ns)
            end_ns = ws[i].end_ns;
        if (ws[i].err) {
            errors++;
            if (!first_err) {
                first_err = ws[i].err;
                first_rep = ws[i].rep;
            }
        }
    }
    secs = (double)(end_ns - sh.start_ns) / 1e9;
    gbps = secs > 0 ? (double)bytes * 8 / secs / 1e9 : 0;
    printf("throughput: %d tunnel(s)%s, %.3f Gbit/s (%" PRIu64 " bytes in %.3f s)%s, "
           "errors %d, stalls %d\n",
           o.count, o.use_proxy ? " via proxy" : " direct", gbps, bytes, secs,
           o.verify ? ", verified" : "", errors, stalls);
    if (first_err)
        printf("first error: %s\n", err_str(first_err, first_rep));
    printf("{\"mode\":\"throughput\",\"tunnels\":%d,\"seconds\":%.3f,\"bytes\":%" PRIu64
           ",\"gbps\":%.3f,\"errors\":%d,\"stalls\":%d,\"verified\":%s}\n",
           o.count, secs, bytes, gbps, errors, stalls, o.verify ? "true" : "false");
    fflush(stdout);
    free(ws);
    return bytes > 0 ? 0 : 1;
}

/* ------------------------------------------------------------ connrate */

struct cr_shared {
    const struct client_opts *o;
    pthread_barrier_t go;
    uint64_t start_ns; /* written by main before the barrier */
};

struct cr_worker {
    struct cr_shared *sh;
    pthread_t tid;
    int id;
    uint64_t *lat_ns; /* one entry per successful tunnel */
    size_t n_lat;
    size_t cap_lat;
    uint64_t end_ns;
    int errors;
    int first_err;
    int first_rep;
};

/* One full tunnel; 0 when the echo came back intact. */
static int
cr_tunnel(const struct client_opts *o, int id, uint64_t seq, int *rep)
{
    uint8_t out[1 + SB_ECHO_LEN];
    uint8_t in[SB_ECHO_LEN];
    int fd, rc;

    /* Every tunnel sends different bytes, so a crossed or stale echo shows. */
    out[0] = SB_MODE_ECHO;
    for (size_t i = 0; i < SB_ECHO_LEN; i++)
        out[1 + i] = (uint8_t)((seq * 131 + (uint64_t)id * 17 + i * 7) & 0xff);
    fd = client_open(o, true, rep);
    if (fd < 0)
        return fd;
    rc = write_full(fd, out, sizeof(out));
    if (rc == 0)
        rc = read_full(fd, in, sizeof(in));
    if (rc == 0 && memcmp(in, out + 1, SB_ECHO_LEN) != 0)
        rc = -EILSEQ;
    close(fd);
    return rc;
}

static void *
cr_thread(void *arg)
{
    struct cr_worker *w = arg;
    const struct client_opts *o = w->sh->o;
    uint64_t deadline, seq = 0;

    pthread_barrier_wait(&w->sh->go);
    deadline = w->sh->start_ns + (uint64_t)(o->seconds * 1e9);
    for (;;) {
        uint64_t t0 = now_ns(), t1;
        int rep = -1;
        int rc;

        if (t0 >= deadline)
            break;
        rc = cr_tunnel(o, w->id, seq++, &rep);
        t1 = now_ns();
        w->end_ns = t1;
        if (rc < 0) {
            w->errors++;
            if (!w->first_err) {
                w->first_err = rc;
                w->first_rep = rep;
            }
            continue;
        }
        if (w->n_lat == w->cap_lat) {
            size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
            uint64_t *p = realloc(w->lat_ns, cap * sizeof(*p));

            if (!p) {
                w->errors++;
                w->first_err = w->first_err ? w->first_err : -ENOMEM;
                break;
            }
            w->lat_ns = p;
            w->cap_lat = cap;
        }
        w->lat_ns[w->n_lat++] = t1 - t0;
    }
    return NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
static double
percentile_us(const uint64_t *v, size_t n, double p)
{
    size_t rank;

    if (!n)
        return 0;
    rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return (double)v[rank - 1] / 1e3;
}

static int
cmd_connrate(int argc, char **argv)
{
    struct client_opts o;
    struct cr_shared sh = { .o = &o };
    struct cr_worker *ws;
    uint64_t *all = NULL, end_ns;
    size_t n = 0, k = 0;
    double limit_s, secs, rate, p50, p99;
    int errors = 0, first_err = 0, first_rep = -1;

    if (parse_client_opts(argc, argv, "--workers", 64, &o) < 0)
        return 2;
    limit_s = o.seconds + SB_WATCHDOG_S;
    watchdog_start(&limit_s);
    ws = calloc((size_t)o.count, sizeof(*ws));
    if (!ws)
        return 1;
    pthread_barrier_init(&sh.go, NULL, (unsigned)o.count + 1);
    for (int i = 0; i < o.count; i++) {
        ws[i].sh = &sh;
        ws[i].id = i;
        if (pthread_create(&ws[i].tid, NULL, cr_thread, &ws[i]) != 0) {
            fprintf(stderr, "socksbench: pthread_create failed\n");
            return 1;
        }
    }
    sh.start_ns = now_ns();
    pthread_barrier_wait(&sh.go);
    end_ns = sh.start_ns;
    for (int i = 0; i < o.count; i++) {
        pthread_join(ws[i].tid, NULL);
        n += ws[i].n_lat;
        errors += ws[i].errors;
        if (ws[i].end_ns > end_ns)
            end_ns = ws[i].end_ns;
        if (ws[i].first_err && !first_err) {
            first_err = ws[i].first_err;
            first_rep = ws[i].first_rep;
        }
    }
    all = malloc((n ? n : 1) * sizeof(*all));
    if (!all)
        return 1;
    for (int i = 0; i < o.count; i++) {
        if (ws[i].n_lat)
            memcpy(all + k, ws[i].lat_ns, ws[i].n_lat * sizeof(*all));
        k += ws[i].n_lat;
        free(ws[i].lat_ns);
    }
    qsort(all, n, sizeof(*all), cmp_u64);
    secs = (double)(end_ns - sh.start_ns) / 1e9;
    rate = secs > 0 ? (double)n / secs : 0;
    p50 = percentile_us(all, n, 50);
    p99 = percentile_us(all, n, 99);
    printf("connrate: %d worker(s)%s, %.0f tunnels/s (%zu in %.3f s), p50 %.1f us, "
           "p99 %.1f us, errors %d\n",
           o.count, o.use_proxy ? " via proxy" : " direct", rate, n, secs, p50, p99, errors);
    if (first_err)
        printf("first error: %s\n", err_str(first_err, first_rep));
    printf("{\"mode\":\"connrate\",\"workers\":%d,\"seconds\":%.3f,\"tunnels\":%zu,"
           "\"rate\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"errors\":%d}\n",
           o.count, secs, n, rate, p50, p99, errors);
    fflush(stdout);
    free(all);
    free(ws);
    return n > 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
    struct pattern pat;

    if (argc < 2) {
        usage();
        return 2;
    }
    /* Writes to a peer that reset must fail with EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(argv[1], "connrate"))
        return cmd_connrate(argc - 2, argv + 2);
    if (pattern_init(&pat) < 0) {
        fprintf(stderr, "socksbench: out of memory\n");
        return 1;
    }
    if (!strcmp(argv[1], "serve"))
        return cmd_serve(argc - 2, argv + 2, &pat);
    if (!strcmp(argv[1], "throughput"))
        return cmd_throughput(argc - 2, argv + 2, &pat);
    usage();
    return 2;
}
