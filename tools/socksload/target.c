/*
 * target.c - the servers the load goes to: TCP source, sink, both, echo, request/response
 * (selected by the header in pattern.h) and a UDP echo, on one port number. With the SOCKS5
 * front (`serve --socks5`) every TCP connection first gets a SOCKS5 handshake answered here
 * (no authentication, CONNECT or UDP ASSOCIATE, the destination ignored), so that the client's
 * connection to its "proxy" is the target connection: the macro benchmark's no-proxy
 * baseline. A UDP ASSOCIATE is answered with this port (the UDP echo's) and address 0.0.0.0
 * ("where you reached me"): the client's datagrams, SOCKS5 UDP header and all, go straight to
 * the echo, which sends each back as it came, header included, so the client reads them as
 * if relayed; the TCP connection is then only held (anything read is dropped) until EOF.
 *
 * Owns its listening sockets, its threads (one io_uring loop each, all accepting from the
 * same listening socket) and their connections. Runs embedded (started by main.c) or as
 * `socksload serve`. Must never connect anywhere: it only answers.
 * The only state shared between its threads is the mismatch counter (atomic), the stop
 * flag, the record of connections reset for a mismatch (under claim_mu; the client's
 * workers read it through target_claim) and the source addresses seen (under src_mu: one
 * uncontended lock and a hash probe per connection and per datagram).
 */
#include "socksload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_OP_ACCEPT 1
#define T_OP_RECV   2
#define T_OP_SEND   3
#define T_OP_URECV  4
#define T_OP_USEND  5
#define T_OP_MASK   7

#define T_BUF      (64 * 1024)
#define T_UDP_SLOT 8
#define T_RING     1024

/* The SOCKS5 front's states (tconn.front); 0: over, or no front. */
#define T_FRONT_GREET 1
#define T_FRONT_REQ   2
#define T_FRONT_UDP   3        /* UDP ASSOCIATE answered: hold the connection until EOF */
#define T_FRONT_REP   (2 + 10) /* the greeting's reply and the CONNECT's, at most */

struct target;

struct tconn {
    struct tthread *th;
    struct tconn *prev, *next; /* the thread's open connections, freed at stop */
    int fd;
    int inflight;
    bool closing;
    bool rst;
    bool hdr_done;
    bool report_sent;
    uint8_t front;             /* T_FRONT_*: the SOCKS5 front, before the header */
    uint8_t frep[T_FRONT_REP]; /* its replies still to send */
    uint8_t frep_len, frep_off;
    uint32_t flen;               /* front: bytes of SOCKS messages in buf */
    uint32_t pend_off, pend_len; /* bytes the front read past the request, in buf */
    uint8_t hb[PATTERN_HDR_LEN];
    unsigned hlen;
    struct pattern_hdr h;
    uint64_t rx, tx;
    uint32_t echo_len, echo_off;
    uint8_t rep[PATTERN_REPORT_LEN];
    uint8_t buf[T_BUF];
} __attribute__((aligned(16)));

struct uslot {
    struct msghdr mh;
    struct iovec iov;
    struct sockaddr_storage from;
    uint8_t buf[65536];
} __attribute__((aligned(16)));

struct tthread {
    struct target *tg;
    pthread_t tid;
    struct io_uring ring;
    struct uslot *slots[T_UDP_SLOT];
    struct tconn *head;
    uint64_t conns, bytes; /* accepted, and bytes read or written (TCP and UDP); main reads */
    uint8_t accept_tag __attribute__((aligned(16)));
};

struct target {
    int lfd;
    int ufd;
    unsigned n;
    bool socks5;         /* every TCP connection starts with the SOCKS5 front */
    int stop;            /* atomic */
    uint64_t mismatches; /* atomic */
    struct tthread *th;
    pthread_mutex_t claim_mu;
    uint64_t claims[TARGET_CLAIMS]; /* seed | CLAIM_VALID, a ring of the latest */
    unsigned claim_next;
    pthread_mutex_t src_mu;
    struct sources src;
};

#define CLAIM_VALID (1ull << 32)

static struct io_uring_sqe *
t_sqe(struct tthread *th)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&th->ring);

    if (!sqe) {
        io_uring_submit(&th->ring);
        sqe = io_uring_get_sqe(&th->ring);
    }
    return sqe;
}

static void
t_arm_accept(struct tthread *th)
{
    struct io_uring_sqe *sqe = t_sqe(th);

    io_uring_prep_multishot_accept(sqe, th->tg->lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&th->accept_tag | T_OP_ACCEPT);
}

static void t_on_recv(struct tconn *c, int res);

/*
 * Bytes the SOCKS5 front read past the CONNECT request (a client that did not wait for the
 * reply) go to the target before the socket is read again: here, as if a recv had returned
 * them, without any op in flight. Each call consumes at least one byte or ends in a real recv.
 */
static void
t_recv_pending(struct tconn *c, size_t max)
{
    uint8_t *dst = c->hdr_done ? c->buf : c->hb + c->hlen;
    size_t room = c->hdr_done ? (max < T_BUF ? max : T_BUF) : PATTERN_HDR_LEN - c->hlen;
    size_t n = c->pend_len < room ? c->pend_len : room;

    memmove(dst, c->buf + c->pend_off, n);
    c->pend_off += (uint32_t)n;
    c->pend_len -= (uint32_t)n;
    t_on_recv(c, (int)n);
}

static void
t_recv(struct tconn *c, size_t max)
{
    struct io_uring_sqe *sqe;
    size_t len = max < T_BUF ? max : T_BUF;

    if (c->pend_len > 0)
        return t_recv_pending(c, max);
    sqe = t_sqe(c->th);
    if (c->front)
        io_uring_prep_recv(sqe, c->fd, c->buf + c->flen, T_BUF - c->flen, 0);
    else if (!c->hdr_done)
        io_uring_prep_recv(sqe, c->fd, c->hb + c->hlen, PATTERN_HDR_LEN - c->hlen, 0);
    else
        io_uring_prep_recv(sqe, c->fd, c->buf, len, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | T_OP_RECV);
    c->inflight++;
}

static void
t_send(struct tconn *c, const void *p, size_t n)
{
    struct io_uring_sqe *sqe = t_sqe(c->th);

    io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | T_OP_SEND);
    c->inflight++;
}

/* Next piece of the pattern stream up to limit bytes in total. */
static void
t_send_pattern(struct tconn *c, uint64_t limit)
{
    uint64_t left = limit - c->tx;
    size_t n = left < PATTERN_CHUNK ? (size_t)left : PATTERN_CHUNK;

    t_send(c, pattern_at(c->h.seed, c->tx), n);
}

static void
t_close(struct tconn *c, bool rst)
{
    if (!c->closing) {
        c->closing = true;
        c->rst = rst;
        if (c->inflight > 0)
            shutdown(c->fd, SHUT_RDWR); /* completes whatever is still pending */
    }
    if (c->inflight == 0) {
        if (c->rst) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        }
        close(c->fd);
        if (c->prev)
            c->prev->next = c->next;
        else
            c->th->head = c->next;
        if (c->next)
            c->next->prev = c->prev;
        free(c);
    }
}

static void
t_report(struct tconn *c, char status)
{
    c->rep[0] = (uint8_t)status;
    for (int i = 0; i < 8; i++)
        c->rep[1 + i] = (uint8_t)(c->rx >> (8 * i));
    c->report_sent = true;
    t_send(c, c->rep, sizeof(c->rep));
}

/*
 * 'Q': the response is out (or there is none). With PATTERN_F_CLOSE the target closes first,
 * a FIN as an HTTP/1.0 server's (it has read the whole request, so nothing unread turns the
 * close into a RST), and holds TIME_WAIT on its port pair; else it waits for the client's EOF.
 */
static void
t_q_done(struct tconn *c)
{
    if (c->h.flags & PATTERN_F_CLOSE)
        return t_close(c, false);
    t_recv(c, T_BUF);
}

static void
t_start(struct tconn *c)
{
    switch (c->h.mode) {
    case 'S':
        t_send_pattern(c, UINT64_MAX);
        break;
    case 'B':
        t_send_pattern(c, UINT64_MAX);
        t_recv(c, T_BUF);
        break;
    case 'Q':
        if (c->h.a == 0) {
            if (c->h.b > 0)
                t_send_pattern(c, c->h.b);
            else
                t_q_done(c);
            break;
        }
        t_recv(c, c->h.a);
        break;
    default: /* 'K', 'E' */
        t_recv(c, T_BUF);
        break;
    }
}

/* A mismatch only a reset can answer: count it, and remember the stream for target_claim. */
static void
t_mismatch(struct target *tg, uint32_t seed)
{
    pthread_mutex_lock(&tg->claim_mu);
    tg->claims[tg->claim_next] = seed | CLAIM_VALID;
    tg->claim_next = (tg->claim_next + 1) % TARGET_CLAIMS;
    pthread_mutex_unlock(&tg->claim_mu);
    __atomic_add_fetch(&tg->mismatches, 1, __ATOMIC_RELAXED);
}

static void
t_record(struct target *tg, const struct sockaddr *sa, bool has_key, uint32_t key)
{
    pthread_mutex_lock(&tg->src_mu);
    sources_add(&tg->src, sa, has_key, key);
    pthread_mutex_unlock(&tg->src_mu);
}

/* The connection's source address, under the header's session key, once the header is in. */
static void
t_record_conn(struct tconn *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0)
        t_record(c->th->tg, (struct sockaddr *)&ss, c->h.flags & PATTERN_F_KEY, c->h.key);
}

static void
t_front_reply(struct tconn *c, const uint8_t *p, size_t n)
{
    memcpy(c->frep + c->frep_len, p, n);
    c->frep_len += (uint8_t)n;
}

/*
 * The SOCKS5 front, on the c->flen bytes in buf: answers what is complete (the greeting and
 * the request may come together), then sends the replies, reads on, or (once the CONNECT is
 * answered) hands over to the target, with any bytes past the request as pending input.
 */
static void
t_front(struct tconn *c)
{
    static const uint8_t method_ok[2] = {5, 0};
    static const uint8_t connect_ok[10] = {5, 0, 0, 1}; /* bound to 0.0.0.0:0 */
    size_t off = 0;
    ssize_t n;

    if (c->front == T_FRONT_UDP) {
        c->flen = 0;
        return t_recv(c, T_BUF);
    }
    if (c->front == T_FRONT_GREET) {
        bool noauth = false;
        n = socks_parse_greeting(c->buf, c->flen, &noauth);
        if (n < 0 || (n > 0 && !noauth))
            return t_close(c, true);
        if (n == 0)
            return t_recv(c, T_BUF);
        off = (size_t)n;
        t_front_reply(c, method_ok, sizeof(method_ok));
        c->front = T_FRONT_REQ;
    }
    int cmd = 0;
    n = socks_parse_request(c->buf + off, c->flen - off, &cmd);
    if (n < 0 || (n > 0 && cmd != SOCKS_CMD_CONNECT && cmd != SOCKS_CMD_UDP))
        return t_close(c, true);
    if (n > 0 && cmd == SOCKS_CMD_UDP) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        uint8_t udp_ok[10] = {5, 0, 0, 1}; /* 0.0.0.0 and, below, the UDP echo's port */
        if (getsockname(c->fd, (struct sockaddr *)&ss, &len) == -1)
            return t_close(c, true);
        uint16_t port = ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port;
        memcpy(udp_ok + 8, &port, 2); /* network order already */
        t_front_reply(c, udp_ok, sizeof(udp_ok));
        c->front = T_FRONT_UDP;
        c->flen = 0;
    } else if (n > 0) {
        off += (size_t)n;
        t_front_reply(c, connect_ok, sizeof(connect_ok));
        c->front = 0;
        c->pend_off = (uint32_t)off;
        c->pend_len = c->flen - (uint32_t)off;
    } else if (off > 0) {
        memmove(c->buf, c->buf + off, c->flen - off);
        c->flen -= (uint32_t)off;
    }
    if (c->frep_len > 0)
        return t_send(c, c->frep, c->frep_len); /* t_on_send reads on when it is out */
    t_recv(c, T_BUF);
}

static void
t_on_recv(struct tconn *c, int res)
{
    if (c->closing)
        return t_close(c, c->rst);
    if (res < 0)
        return t_close(c, false);
    if (res == 0) {
        /* The client's EOF: the sink reports what it verified, the others are done. */
        if (c->hdr_done && c->h.mode == 'K' && !c->report_sent)
            return t_report(c, 'O');
        return t_close(c, false);
    }
    if (c->front) {
        c->flen += (uint32_t)res;
        return t_front(c);
    }
    /* After an 'X' verdict the sink discards until the client closes (see t_on_send). */
    if (c->report_sent)
        return t_recv(c, T_BUF);
    if (!c->hdr_done) {
        c->hlen += (unsigned)res;
        if (c->hlen < PATTERN_HDR_LEN)
            return t_recv(c, T_BUF);
        if (pattern_hdr_decode(&c->h, c->hb) < 0)
            return t_close(c, true);
        c->hdr_done = true;
        t_record_conn(c);
        return t_start(c);
    }
    switch (c->h.mode) {
    case 'E':
        c->echo_len = (uint32_t)res;
        c->echo_off = 0;
        return t_send(c, c->buf, (size_t)res);
    case 'Q':
        if (c->rx >= c->h.a)
            return t_recv(c, T_BUF); /* past the request: wait for EOF */
        break;
    default:
        break;
    }
    if (!pattern_check(c->h.seed, c->rx, c->buf, (size_t)res)) {
        if (c->h.mode == 'K')
            return t_report(c, 'X');
        t_mismatch(c->th->tg, c->h.seed);
        return t_close(c, true);
    }
    c->rx += (uint64_t)res;
    if (c->h.mode == 'Q') {
        if (c->rx < c->h.a)
            return t_recv(c, c->h.a - c->rx);
        if (c->h.b > 0)
            return t_send_pattern(c, c->h.b);
        return t_q_done(c);
    }
    t_recv(c, T_BUF);
}

static void
t_on_send(struct tconn *c, int res)
{
    if (c->closing)
        return t_close(c, c->rst);
    if (res < 0)
        return t_close(c, false);
    if (c->frep_len > 0) {
        /* The front's replies: when they are out, more SOCKS bytes or the target header. */
        c->frep_off += (uint8_t)res;
        if (c->frep_off < c->frep_len)
            return t_send(c, c->frep + c->frep_off, c->frep_len - c->frep_off);
        c->frep_len = c->frep_off = 0;
        return t_recv(c, T_BUF);
    }
    /*
     * An 'O' report ends the stream (the client had half-closed). After an 'X'
     * the client is still sending: closing now, with its data unread, would be
     * a RST that can overtake the verdict, so read on until it closes.
     */
    if (c->report_sent)
        return c->rep[0] == 'X' ? t_recv(c, T_BUF) : t_close(c, false);
    switch (c->h.mode) {
    case 'S':
    case 'B':
        c->tx += (uint64_t)res;
        return t_send_pattern(c, UINT64_MAX);
    case 'Q':
        c->tx += (uint64_t)res;
        if (c->tx < c->h.b)
            return t_send_pattern(c, c->h.b);
        return t_q_done(c);
    case 'E':
        c->echo_off += (uint32_t)res;
        if (c->echo_off < c->echo_len)
            return t_send(c, c->buf + c->echo_off, c->echo_len - c->echo_off);
        return t_recv(c, T_BUF);
    }
}

static void
t_udp_recv(struct tthread *th, struct uslot *s)
{
    struct io_uring_sqe *sqe = t_sqe(th);

    s->iov.iov_base = s->buf;
    s->iov.iov_len = sizeof(s->buf);
    s->mh.msg_name = &s->from;
    s->mh.msg_namelen = sizeof(s->from);
    s->mh.msg_iov = &s->iov;
    s->mh.msg_iovlen = 1;
    io_uring_prep_recvmsg(sqe, th->tg->ufd, &s->mh, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | T_OP_URECV);
}

static void *
t_thread(void *arg)
{
    struct tthread *th = arg;
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

    t_arm_accept(th);
    for (int i = 0; i < T_UDP_SLOT; i++)
        t_udp_recv(th, th->slots[i]);
    while (!__atomic_load_n(&th->tg->stop, __ATOMIC_RELAXED)) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;

        io_uring_submit_and_wait_timeout(&th->ring, &cqe, 1, &ts, NULL);
        io_uring_for_each_cqe(&th->ring, head, cqe)
        {
            uint64_t ud = cqe->user_data;
            unsigned op = ud & T_OP_MASK;
            void *p = (void *)(uintptr_t)(ud & ~(uint64_t)T_OP_MASK);
            int res = cqe->res;

            seen++;
            if (op == T_OP_ACCEPT) {
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    t_arm_accept(th);
                if (res < 0)
                    continue;
                stats_add(&th->conns, 1);
                struct tconn *c = aligned_alloc(16, sizeof(*c));
                if (!c) {
                    close(res);
                    continue;
                }
                memset(c, 0, offsetof(struct tconn, buf));
                c->th = th;
                c->fd = res;
                c->front = th->tg->socks5 ? T_FRONT_GREET : 0;
                c->next = th->head;
                if (th->head)
                    th->head->prev = c;
                th->head = c;
                t_recv(c, T_BUF);
            } else if (op == T_OP_RECV || op == T_OP_SEND) {
                struct tconn *c = p;
                c->inflight--;
                if (res > 0)
                    stats_add(&th->bytes, (uint64_t)res);
                if (op == T_OP_RECV)
                    t_on_recv(c, res);
                else
                    t_on_send(c, res);
            } else if (op == T_OP_URECV) {
                struct uslot *s = p;
                if (res < 0) {
                    t_udp_recv(th, s);
                    continue;
                }
                stats_add(&th->bytes, (uint64_t)res);
                t_record(th->tg, (struct sockaddr *)&s->from, false, 0);
                struct io_uring_sqe *sqe = t_sqe(th);
                s->iov.iov_len = (size_t)res;
                io_uring_prep_sendmsg(sqe, th->tg->ufd, &s->mh, 0);
                io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | T_OP_USEND);
            } else if (op == T_OP_USEND) {
                t_udp_recv(th, p);
            }
        }
        io_uring_cq_advance(&th->ring, seen);
    }
    /* The ring goes first, so that no op still points into what is freed next. */
    io_uring_queue_exit(&th->ring);
    while (th->head) {
        struct tconn *c = th->head;
        th->head = c->next;
        close(c->fd);
        free(c);
    }
    for (int i = 0; i < T_UDP_SLOT; i++)
        free(th->slots[i]);
    return NULL;
}

static int
t_bind(int type, const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, type | SOCK_CLOEXEC, 0), one = 1;

    if (fd == -1)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) == -1 ||
        (type == SOCK_STREAM && listen(fd, 4096) == -1)) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int
target_start(struct target **out, const char *host, uint16_t port, unsigned threads, bool socks5,
             uint16_t *port_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    enum url_host type = strchr(host, ':') ? URL_HOST_IPV6 : URL_HOST_IPV4;
    struct target *tg;
    int rc, tries;

    if (url_to_sockaddr(host, type, port, false, &ss, &len) < 0)
        return -EINVAL;
    tg = calloc(1, sizeof(*tg));
    if (!tg)
        return -ENOMEM;
    tg->lfd = tg->ufd = -1;
    tg->socks5 = socks5;
    pthread_mutex_init(&tg->claim_mu, NULL);
    pthread_mutex_init(&tg->src_mu, NULL);
    /* Port 0: take the TCP port the kernel picks and the same UDP port; retry on a clash. */
    for (tries = 0; tries < 20; tries++) {
        rc = t_bind(SOCK_STREAM, &ss, len);
        if (rc < 0)
            goto fail;
        tg->lfd = rc;
        struct sockaddr_storage got;
        socklen_t gl = sizeof(got);
        getsockname(tg->lfd, (struct sockaddr *)&got, &gl);
        uint16_t p = ntohs(((struct sockaddr_in *)&got)->sin_port); /* same offset in v6 */
        url_to_sockaddr(host, type, p, false, &ss, &len);
        rc = t_bind(SOCK_DGRAM, &ss, len);
        if (rc >= 0) {
            tg->ufd = rc;
            /* One socket echoes for every association of the run: give it room for bursts. */
            udp_grow_rcvbuf(rc, 16u << 20);
            *port_out = p;
            break;
        }
        close(tg->lfd);
        tg->lfd = -1;
        if (port != 0)
            goto fail;
        url_to_sockaddr(host, type, 0, false, &ss, &len);
    }
    if (tg->ufd < 0) {
        rc = -EADDRINUSE;
        goto fail;
    }
    tg->n = threads ? threads : 1;
    tg->th = calloc(tg->n, sizeof(*tg->th));
    if (!tg->th) {
        rc = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < tg->n; i++) {
        struct tthread *th = &tg->th[i];
        th->tg = tg;
        for (int k = 0; k < T_UDP_SLOT; k++) {
            th->slots[k] = aligned_alloc(16, sizeof(struct uslot));
            if (!th->slots[k]) {
                rc = -ENOMEM;
                goto fail;
            }
        }
        rc = io_uring_queue_init(T_RING, &th->ring, 0);
        if (rc < 0)
            goto fail;
        rc = -pthread_create(&th->tid, NULL, t_thread, th);
        if (rc < 0)
            goto fail;
    }
    *out = tg;
    return 0;
fail:
    /* Only main() exits, and it exits on this error: threads already started die with it. */
    return rc;
}

uint64_t
target_mismatches(const struct target *t)
{
    return __atomic_load_n(&t->mismatches, __ATOMIC_RELAXED);
}

void
target_counts(const struct target *t, uint64_t *conns, uint64_t *bytes)
{
    *conns = *bytes = 0;
    for (unsigned i = 0; i < t->n; i++) {
        *conns += __atomic_load_n(&t->th[i].conns, __ATOMIC_RELAXED);
        *bytes += __atomic_load_n(&t->th[i].bytes, __ATOMIC_RELAXED);
    }
}

bool
target_claim(struct target *t, uint32_t seed)
{
    bool found = false;

    pthread_mutex_lock(&t->claim_mu);
    for (unsigned i = 0; i < TARGET_CLAIMS; i++) {
        if (t->claims[i] == (seed | CLAIM_VALID)) {
            t->claims[i] = 0;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&t->claim_mu);
    return found;
}

void
target_stop(struct target *t)
{
    __atomic_store_n(&t->stop, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < t->n; i++)
        pthread_join(t->th[i].tid, NULL);
    close(t->lfd);
    close(t->ufd);
}

int
target_sources(const struct target *t, struct sources_summary *out)
{
    return sources_summarize(&t->src, out);
}

void
target_free(struct target *t)
{
    pthread_mutex_destroy(&t->claim_mu);
    pthread_mutex_destroy(&t->src_mu);
    sources_free(&t->src);
    free(t->th);
    free(t);
}
