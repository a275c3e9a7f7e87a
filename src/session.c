/*
 * session.c - drives a connection from accept to the relay:
 * greeting -> request -> (resolve) -> connect -> reply -> relay.
 *
 * Shard thread only. The client's bytes are read into the connection's
 * handshake context, which lives in the shard's registered buffer, and fed
 * to the pure parser in socks5.c. Nothing here blocks: names go to dns.c,
 * connects and all I/O go through the ring. The reply is sent only once the
 * outcome is known; bytes the client pipelined after its request stay in the
 * context and are written to the target before the relay starts.
 */
#include "session.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "dns.h"
#include "hosts.h"
#include "relay.h"
#include "shard.h"

int
session_slab_init(struct shard *sh)
{
    size_t bytes = (size_t)sh->o->hs_slots * sizeof(struct hs);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    sh->hs_slab = p;
    sh->hs_count = sh->o->hs_slots;
    for (uint32_t i = 0; i < sh->hs_count; i++)
        sh->hs_slab[i].next_free = i + 1 < sh->hs_count ? i + 1 : CONN_NIL;
    sh->hs_free = 0;

    /*
     * One registered buffer covers the whole slab: handshake reads and
     * writes use READ_FIXED/WRITE_FIXED with buf_index 0. Registration pins
     * the pages; where the memlock limit refuses it, plain recv/send do.
     */
    struct iovec iov = {.iov_base = p, .iov_len = bytes};
    sh->fixed_bufs = io_uring_register_buffers(&sh->ring, &iov, 1) == 0;
    return 0;
}

void
session_slab_fini(struct shard *sh)
{
    if (sh->hs_slab)
        munmap(sh->hs_slab, (size_t)sh->hs_count * sizeof(struct hs));
    sh->hs_slab = NULL;
}

static struct hs *
hs_get(struct shard *sh)
{
    if (sh->hs_free == CONN_NIL)
        return NULL;
    struct hs *h = &sh->hs_slab[sh->hs_free];
    sh->hs_free = h->next_free;
    h->in_len = h->in_off = 0;
    h->out_len = h->out_off = 0;
    h->n_addrs = h->next_addr = 0;
    h->last_err = 0;
    socks5_init(&h->s5);
    return h;
}

void
session_release(struct shard *sh, struct conn *c)
{
    if (!c->hs)
        return;
    c->hs->next_free = sh->hs_free;
    sh->hs_free = (uint32_t)(c->hs - sh->hs_slab);
    c->hs = NULL;
    c->hs_flags = 0;
}

static void
hs_read(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_HS_READ);
    unsigned room = HS_IN_SIZE - h->in_len;
    if (sh->fixed_bufs)
        io_uring_prep_read_fixed(sqe, c->cfd, h->in + h->in_len, room, 0, 0);
    else
        io_uring_prep_recv(sqe, c->cfd, h->in + h->in_len, room, 0);
}

static void
hs_flush(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    if ((c->hs_flags & HSF_WRITING) || h->out_off == h->out_len)
        return;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_HS_WRITE);
    unsigned n = (unsigned)(h->out_len - h->out_off);
    if (sh->fixed_bufs)
        io_uring_prep_write_fixed(sqe, c->cfd, h->out + h->out_off, n, 0, 0);
    else
        io_uring_prep_send(sqe, c->cfd, h->out + h->out_off, n, MSG_NOSIGNAL);
    c->hs_flags |= HSF_WRITING;
}

static void
hs_queue(struct shard *sh, struct conn *c, const uint8_t *p, size_t n)
{
    struct hs *h = c->hs;
    if (h->out_off == h->out_len)
        h->out_off = h->out_len = 0;
    memcpy(h->out + h->out_len, p, n);
    h->out_len = (uint8_t)(h->out_len + n);
    hs_flush(sh, c);
}

/* Answer with an error reply and close once it is written. */
static void
fail(struct shard *sh, struct conn *c, uint8_t rep)
{
    uint8_t r[SOCKS5_REPLY_MAX];
    size_t n = socks5_reply(r, rep, NULL);
    c->hs_flags |= HSF_CLOSE_AFTER | HSF_REPLIED;
    c->end = END_REPLY_ERR;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    hs_queue(sh, c, r, n);
}

void
session_start(struct shard *sh, int fd)
{
    struct conn *c = conn_alloc(sh);
    if (!c) {
        sh->st.accept_dropped++;
        close(fd);
        return;
    }
    c->cfd = fd;
    c->hs = hs_get(sh);
    if (!c->hs) {
        /* More handshakes at once than the slab holds: shed this one. */
        sh->st.accept_dropped++;
        conn_close(sh, c, END_RESOURCE);
        return;
    }
    sh->st.accepted++;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    hs_read(sh, c);
}

static void connect_next(struct shard *sh, struct conn *c);

static void
start_request(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    const struct socks_dest *d = &h->s5.dest;

    conn_timer_set(sh, c, TL_CONNECT);
    h->n_addrs = h->next_addr = 0;
    if (d->atyp == SOCKS5_ATYP_IPV4) {
        struct sockaddr_in *v4 = &h->addrs[0].v4;
        memset(v4, 0, sizeof(*v4));
        v4->sin_family = AF_INET;
        v4->sin_addr = d->u.v4;
        v4->sin_port = htons(d->port);
        h->n_addrs = 1;
    } else if (d->atyp == SOCKS5_ATYP_IPV6) {
        struct sockaddr_in6 *v6 = &h->addrs[0].v6;
        memset(v6, 0, sizeof(*v6));
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = d->u.v6;
        v6->sin6_port = htons(d->port);
        h->n_addrs = 1;
    } else {
        struct sockaddr_storage ss;
        if (addr_parse(d->u.name, d->port, &ss) == 0) {
            memcpy(&h->addrs[0], &ss, addr_len((struct sockaddr *)&ss));
            h->n_addrs = 1;
        } else {
            h->n_addrs = (uint8_t)hosts_lookup(sh->hosts, d->u.name, d->port, h->addrs,
                                               HS_MAX_ADDRS);
        }
        if (h->n_addrs == 0) {
            c->state = CONN_RESOLVE;
            c->hs_flags |= HSF_DNS;
            dns_resolve(sh, d->u.name, d->port, ud_make(0, conn_slot(sh, c), c->gen));
            return;
        }
    }
    connect_next(sh, c);
}

void
session_on_resolved(struct shard *sh, uint64_t cookie, int err, const union sockaddr_inx *addrs,
                    unsigned n)
{
    uint32_t slot = ud_slot(cookie);
    if (slot >= sh->high)
        return;
    struct conn *c = &sh->conns[slot];
    if (c->gen != ud_gen(cookie) || c->state != CONN_RESOLVE || !(c->hs_flags & HSF_DNS))
        return;
    c->hs_flags &= (uint8_t)~HSF_DNS;
    struct hs *h = c->hs;
    if (err < 0 || n == 0) {
        fail(sh, c, SOCKS5_REP_HOST_UNREACH);
        return;
    }
    if (n > HS_MAX_ADDRS)
        n = HS_MAX_ADDRS;
    memcpy(h->addrs, addrs, n * sizeof(*addrs));
    h->n_addrs = (uint8_t)n;
    h->next_addr = 0;
    connect_next(sh, c);
}

static void
connect_next(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    c->state = CONN_CONNECT;
    while (h->next_addr < h->n_addrs) {
        const union sockaddr_inx *a = &h->addrs[h->next_addr++];
        int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd == -1) {
            h->last_err = -errno;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                break;
            continue;
        }
        int one = 1;
        /* A relay must not add Nagle delay of its own to small messages. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->tfd = fd;
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CONNECT);
        io_uring_prep_connect(sqe, fd, &a->sa, addr_len(&a->sa));
        return;
    }
    fail(sh, c, socks5_rep_from_errno(h->last_err ? h->last_err : -EHOSTUNREACH));
}

void
session_connect_timeout(struct shard *sh, struct conn *c)
{
    if (c->state == CONN_RESOLVE) {
        c->hs_flags &= (uint8_t)~HSF_DNS;
        fail(sh, c, SOCKS5_REP_HOST_UNREACH);
    } else if (c->state == CONN_CONNECT) {
        /* The connect completes with -ECANCELED and is answered there. */
        c->hs_flags |= HSF_TIMED_OUT;
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL);
        io_uring_prep_cancel64(sqe, ud_make(OP_CONNECT, conn_slot(sh, c), c->gen), 0);
    } else {
        conn_close(sh, c, END_HS_TIMEOUT);
    }
}

static void
maybe_relay(struct shard *sh, struct conn *c)
{
    if (c->state != CONN_REPLY || (c->hs_flags & (HSF_WRITING | HSF_LEFTOVER)))
        return;
    session_release(sh, c);
    relay_start(sh, c);
}

/* Write the bytes the client pipelined after its request to the target. */
static void
hs_write_leftover(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_LEFTOVER);
    unsigned n = (unsigned)(h->in_len - h->in_off);
    if (sh->fixed_bufs)
        io_uring_prep_write_fixed(sqe, c->tfd, h->in + h->in_off, n, 0, 0);
    else
        io_uring_prep_send(sqe, c->tfd, h->in + h->in_off, n, MSG_NOSIGNAL);
    c->hs_flags |= HSF_LEFTOVER;
}

static void
on_connected(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    union sockaddr_inx bnd;
    socklen_t len = sizeof(bnd);
    uint8_t r[SOCKS5_REPLY_MAX];

    if (getsockname(c->tfd, &bnd.sa, &len) == -1)
        bnd.sa.sa_family = AF_UNSPEC;
    c->state = CONN_REPLY;
    c->hs_flags |= HSF_REPLIED;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    hs_queue(sh, c, r, socks5_reply(r, SOCKS5_REP_SUCCEEDED, &bnd.sa));
    if (h->in_off < h->in_len)
        hs_write_leftover(sh, c);
}

/* Parse what has arrived; act on each complete message. */
static void
hs_parse(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    for (;;) {
        ssize_t r = socks5_feed(&h->s5, h->in + h->in_off, (size_t)(h->in_len - h->in_off));
        if (r == 0) {
            if (h->in_off) {
                memmove(h->in, h->in + h->in_off, (size_t)(h->in_len - h->in_off));
                h->in_len = (uint16_t)(h->in_len - h->in_off);
                h->in_off = 0;
            }
            hs_read(sh, c);
            return;
        }
        if (r == SOCKS5_ERR_CLOSE) {
            conn_close(sh, c, END_PROTOCOL);
            return;
        }
        if (r == SOCKS5_ERR_NO_METHOD) {
            uint8_t m[2];
            c->hs_flags |= HSF_CLOSE_AFTER | HSF_REPLIED;
            c->end = END_REPLY_ERR;
            hs_queue(sh, c, m, socks5_method_reply(m, SOCKS5_METHOD_REJECT));
            return;
        }
        if (r < 0) {
            fail(sh, c, (uint8_t)-r);
            return;
        }
        h->in_off = (uint16_t)(h->in_off + r);
        if (h->s5.phase == SOCKS5_PHASE_REQUEST) {
            uint8_t m[2];
            hs_queue(sh, c, m, socks5_method_reply(m, h->s5.method));
            continue;
        }
        /* The request is complete: stop reading until the relay starts. */
        start_request(sh, c);
        return;
    }
}

void
session_on_cqe(struct shard *sh, struct conn *c, unsigned op, int res)
{
    struct hs *h = c->hs;
    switch (op) {
    case OP_HS_READ:
        if (res <= 0) {
            conn_close(sh, c, res == 0 ? END_CLIENT_EOF : END_CLIENT_ERR);
            return;
        }
        h->in_len = (uint16_t)(h->in_len + res);
        hs_parse(sh, c);
        return;
    case OP_HS_WRITE:
        c->hs_flags &= (uint8_t)~HSF_WRITING;
        if (res <= 0) {
            conn_close(sh, c, END_CLIENT_ERR);
            return;
        }
        h->out_off = (uint8_t)(h->out_off + res);
        if (h->out_off < h->out_len) {
            hs_flush(sh, c);
            return;
        }
        if (c->hs_flags & HSF_CLOSE_AFTER) {
            conn_close(sh, c, (enum conn_end)c->end);
            return;
        }
        maybe_relay(sh, c);
        return;
    case OP_LEFTOVER:
        if (res <= 0) {
            conn_close(sh, c, END_TARGET_ERR);
            return;
        }
        h->in_off = (uint16_t)(h->in_off + res);
        if (h->in_off < h->in_len) {
            hs_write_leftover(sh, c);
            return;
        }
        c->hs_flags &= (uint8_t)~HSF_LEFTOVER;
        maybe_relay(sh, c);
        return;
    case OP_CONNECT:
        if (res == 0) {
            on_connected(sh, c);
            return;
        }
        close(c->tfd);
        c->tfd = -1;
        if (c->hs_flags & HSF_TIMED_OUT) {
            fail(sh, c, SOCKS5_REP_TTL_EXPIRED);
            return;
        }
        h->last_err = res;
        connect_next(sh, c);
        return;
    default:
        return;
    }
}
