/*
 * direct-target.c - the "direct" cell of the macro benchmark: socksload's target servers
 * (source, sink, both, echo, request/response; tools/socksload/target.c) behind a SOCKS5
 * handshake that the target answers itself.
 *
 * socksload always speaks SOCKS to a proxy; it has no mode without one. To measure what the
 * machine gives without a proxy with the same client, this program plays proxy and target at
 * once: it answers the greeting (no-auth, or RFC 1929 accepting any credentials) and the
 * CONNECT request on the connection the client opened, and then serves the target protocol on
 * that same connection. One TCP connection per tunnel instead of two, no relay: a proxy that
 * costs nothing. The destination in the request is ignored (nothing is ever connected to).
 *
 * Threads: --threads N, each with its own SO_REUSEPORT listener and epoll loop; nothing shared
 * but the stop flag. Listens on loopback only. Never blocks: every socket is non-blocking.
 *
 * Usage: direct-target --port P [--host 127.0.0.1] [--threads 2]
 */
#include "socksload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define BUF_LEN    (64 * 1024)
#define HS_LEN     600
#define MAX_EVENTS 256

enum dstate { D_GREET, D_AUTH, D_REQ, D_HDR, D_RUN, D_DRAIN };

struct dconn {
    int fd;
    enum dstate st;
    struct pattern_hdr h;
    uint8_t in[HS_LEN]; /* handshake bytes and the target header */
    size_t in_len;
    uint64_t rx, tx;
    uint32_t out_len, out_off; /* echo or report bytes still to send, in out[] */
    uint8_t *out;
    uint8_t rep[PATTERN_REPORT_LEN];
    bool sink_eof; /* 'K' or 'B': the client half-closed */
};

struct dthread {
    pthread_t tid;
    int lfd, ep;
};

static volatile sig_atomic_t stop_flag;
static uint8_t listen_tag; /* epoll data of the listeners */

static void
on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void
set_events(struct dthread *th, struct dconn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};

    epoll_ctl(th->ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void
conn_close(struct dthread *th, struct dconn *c, bool rst)
{
    if (rst) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    epoll_ctl(th->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Sends a small handshake reply; an empty socket buffer always takes it whole. */
static bool
send_small(struct dconn *c, const void *p, size_t n)
{
    return send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)n;
}

static void
consume(struct dconn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Queues out[] (echo data or a report); EPOLLOUT drains what send() did not take. */
static bool
flush_out(struct dthread *th, struct dconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN)
                return set_events(th, c, EPOLLOUT), true;
            return false;
        }
        c->out_off += (uint32_t)n;
    }
    c->out_off = c->out_len = 0;
    return true;
}

static bool
want_source(const struct dconn *c)
{
    return c->st == D_RUN && (c->h.mode == 'S' || c->h.mode == 'B' ||
                              (c->h.mode == 'Q' && c->rx >= c->h.a && c->tx < c->h.b));
}

static uint32_t
run_events(const struct dconn *c)
{
    if (c->out_len > c->out_off)
        return EPOLLOUT;
    uint32_t ev = want_source(c) ? EPOLLOUT : 0;
    return c->sink_eof ? ev : ev | EPOLLIN;
}

static bool
report(struct dthread *th, struct dconn *c, char status)
{
    c->rep[0] = (uint8_t)status;
    for (int i = 0; i < 8; i++)
        c->rep[1 + i] = (uint8_t)(c->rx >> (8 * i));
    memcpy(c->out, c->rep, sizeof(c->rep));
    c->out_len = sizeof(c->rep);
    c->out_off = 0;
    return flush_out(th, c);
}

/* Handshake bytes in c->in: advance as far as they allow. false: close the connection. */
static bool
handshake(struct dthread *th, struct dconn *c)
{
    for (;;) {
        switch (c->st) {
        case D_GREET: {
            if (c->in_len < 2 || c->in_len < 2u + c->in[1])
                return true;
            if (c->in[0] != 5)
                return false;
            uint8_t method = 0xff;
            for (unsigned i = 0; i < c->in[1]; i++)
                if (c->in[2 + i] == 0x00 || (c->in[2 + i] == 0x02 && method == 0xff))
                    method = c->in[2 + i];
            consume(c, 2u + c->in[1]);
            uint8_t rep[2] = {5, method};
            if (!send_small(c, rep, 2) || method == 0xff)
                return false;
            c->st = method == 0x02 ? D_AUTH : D_REQ;
            break;
        }
        case D_AUTH: {
            /* RFC 1929: any user and password are accepted; the figure is the round trip. */
            if (c->in_len < 2 || c->in_len < 3u + c->in[1] ||
                c->in_len < 3u + c->in[1] + c->in[2 + c->in[1]])
                return true;
            consume(c, 3u + c->in[1] + c->in[2 + c->in[1]]);
            uint8_t rep[2] = {1, 0};
            if (!send_small(c, rep, 2))
                return false;
            c->st = D_REQ;
            break;
        }
        case D_REQ: {
            size_t need;
            if (c->in_len < 5)
                return true;
            switch (c->in[3]) {
            case 1:
                need = 10;
                break;
            case 4:
                need = 22;
                break;
            case 3:
                need = 7u + c->in[4];
                break;
            default:
                return false;
            }
            if (c->in_len < need)
                return true;
            bool connect = c->in[0] == 5 && c->in[1] == 1;
            consume(c, need);
            uint8_t rep[10] = {5, connect ? 0 : 7, 0, 1};
            if (!send_small(c, rep, sizeof(rep)) || !connect)
                return false;
            c->st = D_HDR;
            break;
        }
        case D_HDR:
            if (c->in_len < PATTERN_HDR_LEN)
                return true;
            if (pattern_hdr_decode(&c->h, c->in) < 0)
                return false;
            consume(c, PATTERN_HDR_LEN);
            c->out = malloc(BUF_LEN);
            if (!c->out)
                return false;
            c->st = D_RUN;
            if (c->h.mode == 'Q' && c->h.a == 0 && c->h.b == 0)
                return true;
            set_events(th, c, run_events(c));
            return true;
        default:
            return true;
        }
    }
}

/* n bytes of target-protocol data at p (p may be c->in for bytes that came with the header). */
static bool
on_data(struct dthread *th, struct dconn *c, const uint8_t *p, size_t n)
{
    if (c->st == D_DRAIN)
        return true;
    switch (c->h.mode) {
    case 'E':
        if (p != c->out)
            memcpy(c->out, p, n);
        c->out_len = (uint32_t)n;
        c->out_off = 0;
        if (!flush_out(th, c))
            return false;
        set_events(th, c, run_events(c));
        return true;
    case 'Q':
        if (c->rx >= c->h.a)
            return true; /* past the request: wait for EOF */
        break;
    case 'S':
        return true; /* nothing is due from the client: ignore */
    default:
        break;
    }
    if (!pattern_check(c->h.seed, c->rx, p, n)) {
        if (c->h.mode == 'K') {
            c->st = D_DRAIN; /* 'X' at once, then read until the client closes */
            return report(th, c, 'X');
        }
        return false;
    }
    c->rx += (uint64_t)n;
    if (c->h.mode == 'Q' && c->rx >= c->h.a)
        set_events(th, c, run_events(c));
    return true;
}

static bool
on_readable(struct dthread *th, struct dconn *c)
{
    static __thread uint8_t buf[BUF_LEN];

    if (c->st < D_RUN) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
        if (n <= 0)
            return n < 0 && errno == EAGAIN;
        c->in_len += (size_t)n;
        if (!handshake(th, c))
            return false;
        if (c->st == D_RUN && c->in_len > 0) {
            /* Data that came in the same read as the header. */
            size_t k = c->in_len;
            c->in_len = 0;
            return on_data(th, c, c->in, k);
        }
        return true;
    }
    if (c->h.mode == 'E' && c->out_len > c->out_off)
        return true; /* an echo is still going out: read on once it is sent */
    uint8_t *p = c->h.mode == 'E' ? c->out : buf;
    ssize_t n = recv(c->fd, p, BUF_LEN, MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN;
    if (n == 0) {
        /* The client's EOF: a sink reports what it verified, the others are done. */
        if (c->h.mode == 'K' && c->st == D_RUN) {
            c->sink_eof = true;
            c->st = D_DRAIN; /* closes once the report is out */
            if (!report(th, c, 'O'))
                return false;
            return c->out_len > 0;
        }
        return false;
    }
    return on_data(th, c, p, (size_t)n);
}

static bool
on_writable(struct dthread *th, struct dconn *c)
{
    if (c->out_len > c->out_off) {
        if (!flush_out(th, c))
            return false;
        if (c->out_len > 0)
            return true;
        if (c->st == D_DRAIN && c->sink_eof)
            return false; /* the 'O' report is out: done */
        set_events(th, c, run_events(c));
        return true;
    }
    while (want_source(c)) {
        uint64_t limit = c->h.mode == 'Q' ? c->h.b : UINT64_MAX;
        uint64_t left = limit - c->tx;
        size_t len = left < PATTERN_CHUNK ? (size_t)left : PATTERN_CHUNK;
        ssize_t n = send(c->fd, pattern_at(c->h.seed, c->tx), len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN;
        c->tx += (uint64_t)n;
    }
    set_events(th, c, run_events(c));
    return true;
}

static void
accept_all(struct dthread *th)
{
    for (;;) {
        int fd = accept4(th->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct dconn *c = calloc(1, sizeof(*c));
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        if (!c || epoll_ctl(th->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
    }
}

static void *
thread_main(void *arg)
{
    struct dthread *th = arg;
    struct epoll_event ev[MAX_EVENTS];

    while (!stop_flag) {
        int n = epoll_wait(th->ep, ev, MAX_EVENTS, 200);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &listen_tag) {
                accept_all(th);
                continue;
            }
            struct dconn *c = ev[i].data.ptr;
            bool ok = true;
            if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                ok = on_readable(th, c);
            if (ok && (ev[i].events & EPOLLOUT))
                ok = on_writable(th, c);
            if (!ok)
                conn_close(th, c, c->st < D_RUN);
        }
    }
    return NULL;
}

static int
listen_on(const char *host, uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd, one = 1;

    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || !url_is_loopback((struct sockaddr *)&sa))
        return -EINVAL;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int
main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = -1, threads = 2;

    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--port"))
            port = strtol(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--host"))
            host = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--threads"))
            threads = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: direct-target --port P [--host 127.0.0.1] [--threads 2]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || threads < 1 || threads > 64) {
        fprintf(stderr, "direct-target: need --port 1..65535 and --threads 1..64\n");
        return 2;
    }
    pattern_init();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct dthread *th = calloc((size_t)threads, sizeof(*th));
    if (!th)
        return 1;
    for (long i = 0; i < threads; i++) {
        th[i].lfd = listen_on(host, (uint16_t)port);
        if (th[i].lfd < 0) {
            fprintf(stderr, "direct-target: listen on %s:%ld: %s\n", host, port,
                    strerror(-th[i].lfd));
            return 1;
        }
        th[i].ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &listen_tag};
        if (th[i].ep < 0 || epoll_ctl(th[i].ep, EPOLL_CTL_ADD, th[i].lfd, &e) < 0) {
            perror("direct-target: epoll");
            return 1;
        }
    }
    for (long i = 0; i < threads; i++)
        if (pthread_create(&th[i].tid, NULL, thread_main, &th[i]) != 0) {
            fprintf(stderr, "direct-target: cannot start a thread\n");
            return 1;
        }
    fprintf(stderr, "direct-target: serving SOCKS5 + target protocol on %s:%ld, %ld threads\n",
            host, port, threads);
    for (long i = 0; i < threads; i++)
        pthread_join(th[i].tid, NULL);
    /* Connections still open are closed by exit. */
    return 0;
}
