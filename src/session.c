/*
 * session.c - drives a connection from accept to the relay:
 * first byte (SOCKS4 or 5) -> greeting -> (RFC 1929 auth) -> request ->
 * (resolve) -> connect, or BIND's listen/accept with its two replies, or
 * UDP ASSOCIATE -> reply -> relay.
 *
 * Shard thread only. The client's bytes are read into the connection's
 * handshake context, which lives in the shard's registered buffer, and fed
 * to the pure parsers (socks4.c, socks5.c, auth.c). Nothing here blocks:
 * names go to dns.c, password hashes to the auth worker (users.c), connects
 * and all I/O go through the ring. The reply is sent only once the
 * outcome is known; bytes the client pipelined after its request stay in the
 * context and are written to the target before the relay starts.
 */
#include "session.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "authq.h"
#include "conn.h"
#include "dns.h"
#include "hosts.h"
#include "relay.h"
#include "policy.h"
#include "shard.h"
#include "sock.h"
#include "udp.h"

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
    udq_free(&sh->hs_wait);
}

/* The oldest queued connection still waiting (others closed meanwhile, e.g.
 * on the handshake timeout, are skipped), or NULL. */
static struct conn *
hs_wait_pop(struct shard *sh)
{
    uint64_t e;
    while (udq_pop(&sh->hs_wait, &e)) {
        struct conn *c = &sh->conns[ud_slot(e)];
        if (c->gen == ud_gen(e) && c->state == CONN_HANDSHAKE && !c->hs)
            return c;
    }
    return NULL;
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
    h->version = 0;
    h->cmd = 0;
    return h;
}

static void hs_read(struct shard *sh, struct conn *c);

void
session_release(struct shard *sh, struct conn *c)
{
    if (!c->hs)
        return;
    /* Gone before its password check was answered: it leaves the queue with it. */
    if (c->hs_flags & HSF_AUTH_WAIT)
        authq_cancel(sh, (uint32_t)(c->hs - sh->hs_slab));
    sodium_memzero(&c->hs->cred, sizeof(c->hs->cred));
    c->hs->next_free = sh->hs_free;
    sh->hs_free = (uint32_t)(c->hs - sh->hs_slab);
    c->hs = NULL;
    c->hs_flags = 0;
    struct conn *w = hs_wait_pop(sh);
    if (w) {
        w->hs = hs_get(sh);
        hs_read(sh, w);
    }
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

static const struct socks_dest *
hs_dest(const struct hs *h)
{
    return h->version == 4 ? &h->p.s4.dest : &h->p.s5.dest;
}

/* Queue a reply in the client's protocol: SOCKS4 knows only granted/rejected. */
static void
queue_reply(struct shard *sh, struct conn *c, uint8_t rep, const struct sockaddr *bnd)
{
    uint8_t r[SOCKS5_REPLY_MAX];
    size_t n;
    c->rep = (int8_t)rep;
    if (c->hs->version == 4)
        n = socks4_reply(r, rep == SOCKS5_REP_SUCCEEDED ? SOCKS4_REP_GRANTED : SOCKS4_REP_REJECTED,
                         bnd);
    else
        n = socks5_reply(r, rep, bnd);
    hs_queue(sh, c, r, n);
}

/* Answer with an error reply and close once it is written. */
static void
fail_why(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    c->hs_flags |= HSF_CLOSE_AFTER | HSF_REPLIED;
    c->end = (uint8_t)why;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    queue_reply(sh, c, rep, NULL);
}

static void
fail(struct shard *sh, struct conn *c, uint8_t rep)
{
    fail_why(sh, c, rep, END_REPLY_ERR);
}

void
session_start(struct shard *sh, int fd)
{
    struct conn *c = conn_alloc(sh);
    if (!c) {
        STAT_INC(sh->st.accept_dropped);
        close(fd);
        return;
    }
    c->cfd = fd;
    STAT_INC(sh->st.accepted);
    socklen_t len = sizeof(c->client);
    if (getpeername(fd, &c->client.sa, &len) == -1)
        c->client.sa.sa_family = AF_UNSPEC;
    addr_unmap(&c->client);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    c->start_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    c->hs = hs_get(sh);
    if (c->hs) {
        hs_read(sh, c);
        return;
    }
    /*
     * More handshakes at once than the slab holds (a burst of thousands of
     * new clients): the connection waits, unread, for the next context to
     * free up; its handshake timeout runs meanwhile. Shedding it instead
     * refused hundreds of 9,000 tunnels opened at once.
     */
    if (udq_push(&sh->hs_wait, ud_make(0, conn_slot(sh, c), c->gen)) < 0) {
        STAT_INC(sh->st.accept_dropped);
        conn_close(sh, c, END_RESOURCE);
        return;
    }
    STAT_INC(sh->st.hs_waits);
}

static void connect_next(struct shard *sh, struct conn *c);
static void bind_listen(struct shard *sh, struct conn *c);
static void on_connected(struct shard *sh, struct conn *c, const union sockaddr_inx *bnd);

static uint8_t
acl_cmd(uint8_t cmd)
{
    switch (cmd) {
    case SOCKS5_CMD_BIND:
        return ACL_CMD_BIND;
    case SOCKS5_CMD_UDP:
        return ACL_CMD_UDP;
    default:
        return ACL_CMD_CONNECT;
    }
}

bool
session_allowed(struct shard *sh, const struct conn *c, const union sockaddr_inx *dest,
                const char *host, uint16_t port)
{
    /*
     * An unspecified address (0.0.0.0, ::, ::ffff:0.0.0.0) is never a
     * destination, whatever the rules say: Linux sends it to the local host,
     * past rules that deny loopback. Checked here, so CONNECT, BIND and every
     * UDP datagram get it.
     */
    if (dest && addr_is_any(dest)) {
        STAT_INC(sh->st.acl_denied);
        return false;
    }
    const struct acl *acl = sh->pol->acl;
    if (!acl)
        return true;
    struct acl_query q = {
        .client = &c->client,
        .cmd = acl_cmd(c->cmd),
        .user = c->user,
        .host = host,
        .dest = dest,
        .port = port,
    };
    int rule;
    if (acl_match(acl, &q, &rule) == ACL_ALLOW)
        return true;
    STAT_INC(sh->st.acl_denied);
    return false;
}

static void
deny(struct shard *sh, struct conn *c)
{
    fail_why(sh, c, SOCKS5_REP_NOT_ALLOWED, END_DENIED);
}

/* UDP ASSOCIATE: the request names the client's own address, nothing to resolve. */
static void
start_udp(struct shard *sh, struct conn *c)
{
    union sockaddr_inx bnd;
    /* The association as such: its datagrams are checked one by one later. */
    if (!session_allowed(sh, c, NULL, NULL, 0)) {
        deny(sh, c);
        return;
    }
    int ret = udp_open(sh, c, hs_dest(c->hs), &bnd);
    if (ret < 0) {
        fail(sh, c, socks5_rep_from_errno(ret));
        return;
    }
    on_connected(sh, c, &bnd);
}

/* The addresses of the request are known: go on with its command. */
static void
addrs_ready(struct shard *sh, struct conn *c)
{
    if (c->hs->cmd == SOCKS5_CMD_BIND)
        bind_listen(sh, c);
    else
        connect_next(sh, c);
}

static void
start_request(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    const struct socks_dest *d = hs_dest(h);

    c->cmd = h->cmd;
    c->port = d->port;
    if (d->atyp == SOCKS5_ATYP_DOMAIN && !c->host)
        c->host = strdup(d->u.name); /* NULL when out of memory: only the log loses it */
    /* What was asked for, even if it is never reached (the log shows it). */
    memset(&c->dest, 0, sizeof(c->dest));
    if (d->atyp == SOCKS5_ATYP_IPV4) {
        c->dest.v4.sin_family = AF_INET;
        c->dest.v4.sin_addr = d->u.v4;
        c->dest.v4.sin_port = htons(d->port);
    } else if (d->atyp == SOCKS5_ATYP_IPV6) {
        c->dest.v6.sin6_family = AF_INET6;
        c->dest.v6.sin6_addr = d->u.v6;
        c->dest.v6.sin6_port = htons(d->port);
        addr_unmap(&c->dest);
    }
    if (h->cmd == SOCKS5_CMD_UDP) {
        start_udp(sh, c);
        return;
    }

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
    addrs_ready(sh, c);
}

void
session_on_resolved(struct shard *sh, uint64_t cookie, int err, const union sockaddr_inx *addrs,
                    unsigned n)
{
    uint32_t slot = ud_slot(cookie);
    if (slot >= sh->high)
        return;
    struct conn *c = &sh->conns[slot];
    if (c->gen != ud_gen(cookie))
        return;
    if (c->state == CONN_UDP) {
        udp_on_resolved(sh, c, ud_op(cookie), err, addrs, n);
        return;
    }
    if (c->state != CONN_RESOLVE || !(c->hs_flags & HSF_DNS))
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
    addrs_ready(sh, c);
}

static void
connect_next(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    bool denied = false;
    c->state = CONN_CONNECT;
    while (h->next_addr < h->n_addrs) {
        const union sockaddr_inx *a = &h->addrs[h->next_addr++];
        /* Checked on the address itself, so a name cannot lead into a denied range. */
        union sockaddr_inx plain = *a;
        addr_unmap(&plain);
        if (!session_allowed(sh, c, &plain, c->host, c->port)) {
            denied = true;
            continue;
        }
        c->dest = plain;
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
    if (denied && !h->last_err) {
        deny(sh, c);
        return;
    }
    fail(sh, c, socks5_rep_from_errno(h->last_err ? h->last_err : -EHOSTUNREACH));
}

void
session_connect_timeout(struct shard *sh, struct conn *c)
{
    if (c->state == CONN_UDP) {
        udp_resolve_timeout(sh, c);
        return;
    }
    if (c->state == CONN_RESOLVE) {
        c->hs_flags &= (uint8_t)~HSF_DNS;
        fail(sh, c, SOCKS5_REP_HOST_UNREACH);
    } else if (c->state == CONN_CONNECT) {
        /* The connect completes with -ECANCELED and is answered there. */
        c->hs_flags |= HSF_TIMED_OUT;
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL);
        io_uring_prep_cancel64(sqe, ud_make(OP_CONNECT, conn_slot(sh, c), c->gen), 0);
    } else if (c->state == CONN_BIND_WAIT) {
        /* The accept completes with -ECANCELED and is answered there. */
        c->hs_flags |= HSF_TIMED_OUT;
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL);
        io_uring_prep_cancel64(sqe, ud_make(OP_BIND_ACCEPT, conn_slot(sh, c), c->gen), 0);
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
    if (c->ua)
        udp_start(sh, c);
    else
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

/*
 * Success: queue the (last) reply with bnd, and write what the client
 * pipelined to the target. UDP ASSOCIATE has no target stream: such bytes
 * are dropped.
 */
static void
on_connected(struct shard *sh, struct conn *c, const union sockaddr_inx *bnd)
{
    struct hs *h = c->hs;
    c->state = CONN_REPLY;
    c->hs_flags |= HSF_REPLIED;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    queue_reply(sh, c, SOCKS5_REP_SUCCEEDED, &bnd->sa);
    if (h->in_off < h->in_len && !c->ua)
        hs_write_leftover(sh, c);
}

/*
 * BIND (RFC 1928 section 4, SOCKS4 BIND): listen on the local address that
 * faces the destination, in the destination's family, and tell the client
 * where. DST.ADDR names the peer expected to connect; it never decides
 * where to listen.
 */
static void
bind_listen(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    const union sockaddr_inx *want = &h->addrs[0];
    union sockaddr_inx local;
    socklen_t len = sizeof(local);
    int fam = want->sa.sa_family;

    if (!session_allowed(sh, c, addr_is_any(want) ? NULL : want, c->host, c->port)) {
        deny(sh, c);
        return;
    }
    memset(&local, 0, sizeof(local));
    if (!addr_is_any(want)) {
        /* A connected UDP socket makes the kernel pick the route's source address; no packet. */
        int u = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (u == -1 || connect(u, &want->sa, addr_len(&want->sa)) == -1 ||
            getsockname(u, &local.sa, &len) == -1) {
            int err = -errno;
            if (u >= 0)
                close(u);
            fail(sh, c, socks5_rep_from_errno(err));
            return;
        }
        close(u);
    } else if (getsockname(c->cfd, &local.sa, &len) == -1 || local.sa.sa_family != fam) {
        /* Any peer, and the client came in over the other family: listen on the wildcard. */
        memset(&local, 0, sizeof(local));
        local.sa.sa_family = (sa_family_t)fam;
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        fail(sh, c, socks5_rep_from_errno(-errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (fam == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int ret = sock_bind_range(fd, &local, sh->o->bind_port_lo, sh->o->bind_port_hi);
    len = sizeof(local);
    if (ret == 0 && (listen(fd, 1) == -1 || getsockname(fd, &local.sa, &len) == -1))
        ret = -errno;
    if (ret < 0) {
        close(fd);
        fail(sh, c, socks5_rep_from_errno(ret));
        return;
    }
    c->tfd = fd;
    c->state = CONN_BIND_WAIT;
    conn_timer_set(sh, c, TL_BIND);
    queue_reply(sh, c, SOCKS5_REP_SUCCEEDED, &local.sa);
    h->peer_len = sizeof(h->peer);
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_BIND_ACCEPT);
    io_uring_prep_accept(sqe, fd, &h->peer.sa, &h->peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static void
on_bind_accept(struct shard *sh, struct conn *c, int res)
{
    struct hs *h = c->hs;
    if (res < 0) {
        bool timed_out = c->hs_flags & HSF_TIMED_OUT;
        fail_why(sh, c, timed_out ? SOCKS5_REP_TTL_EXPIRED : socks5_rep_from_errno(res),
                 timed_out ? END_BIND_TIMEOUT : END_REPLY_ERR);
        return;
    }
    /* The listener has done its one job. */
    close(c->tfd);
    c->tfd = res;
    c->dest = h->peer;
    addr_unmap(&c->dest);
    if (!addr_is_any(&h->addrs[0]) && !addr_same_ip(&h->addrs[0], &h->peer)) {
        fail(sh, c, SOCKS5_REP_NOT_ALLOWED);
        return;
    }
    on_connected(sh, c, &h->peer);
}

static bool
socks4_allowed(const struct shard *sh)
{
    switch (sh->pol->socks4) {
    case SOCKS4_ON:
        return true;
    case SOCKS4_OFF:
        return false;
    default:
        /* SOCKS4 has no password: with passwords required it would be a way around them. */
        return sh->pol->auth == AUTH_NONE;
    }
}

/*
 * Close for a protocol error, but after the replies already queued (a
 * method selection sent with the greeting that preceded the bad message).
 */
static void
close_after_replies(struct shard *sh, struct conn *c, enum conn_end why)
{
    struct hs *h = c->hs;
    if ((c->hs_flags & HSF_WRITING) || h->out_off < h->out_len) {
        c->hs_flags |= HSF_CLOSE_AFTER;
        c->end = (uint8_t)why;
        return;
    }
    conn_close(sh, c, why);
}

/* Compact the input and read more. */
static void
hs_need_more(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    if (h->in_off) {
        memmove(h->in, h->in + h->in_off, (size_t)(h->in_len - h->in_off));
        h->in_len = (uint16_t)(h->in_len - h->in_off);
        h->in_off = 0;
    }
    hs_read(sh, c);
}

static void
auth_answer(struct shard *sh, struct conn *c, bool ok)
{
    uint8_t r[2];
    if (!ok) {
        STAT_INC(sh->st.auth_failures);
        /* RFC 1929 section 2: a failure status, then the server closes. */
        c->hs_flags |= HSF_CLOSE_AFTER | HSF_REPLIED;
        c->end = END_AUTH_FAILED;
        hs_queue(sh, c, r, auth_reply(r, AUTH_STATUS_FAIL));
        return;
    }
    hs_queue(sh, c, r, auth_reply(r, AUTH_STATUS_OK));
    c->hs->p.s5.phase = SOCKS5_PHASE_REQUEST;
    if (!c->user)
        c->user = strdup(c->hs->cred.user); /* NULL when out of memory: rules see no user */
}

/* SOCKS4/4a: one message. Returns false when the connection is done with. */
static bool
parse_v4(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    ssize_t r = socks4_feed(&h->p.s4, h->in + h->in_off, (size_t)(h->in_len - h->in_off));
    if (r == 0) {
        hs_need_more(sh, c);
        return false;
    }
    if (r == SOCKS4_ERR_CLOSE) {
        conn_close(sh, c, END_PROTOCOL);
        return false;
    }
    if (r < 0 || !socks4_allowed(sh)) {
        fail(sh, c, SOCKS5_REP_NOT_ALLOWED);
        return false;
    }
    h->in_off = (uint16_t)(h->in_off + r);
    h->cmd = h->p.s4.cmd == SOCKS4_CMD_BIND ? SOCKS5_CMD_BIND : SOCKS5_CMD_CONNECT;
    start_request(sh, c);
    return false;
}

/* SOCKS5: one message of the current phase. Returns true to parse on. */
static bool
parse_v5(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    struct socks5 *s5 = &h->p.s5;
    const uint8_t *p = h->in + h->in_off;
    size_t len = (size_t)(h->in_len - h->in_off);
    ssize_t r;

    if (s5->phase == SOCKS5_PHASE_AUTH) {
        r = auth_feed(&h->cred, p, len);
        if (r == 0) {
            hs_need_more(sh, c);
            return false;
        }
        if (r == AUTH_ERR_CLOSE) {
            close_after_replies(sh, c, END_PROTOCOL);
            return false;
        }
        if (r < 0) {
            auth_answer(sh, c, false);
            return false;
        }
        h->in_off = (uint16_t)(h->in_off + r);
        enum authq_result res = authq_check(sh, (uint32_t)(h - sh->hs_slab),
                                            ud_make(0, conn_slot(sh, c), c->gen), &c->client,
                                            &h->cred);
        sodium_memzero(h->cred.pass, sizeof(h->cred.pass));
        if (res == AUTHQ_PENDING) {
            /*
             * Nothing more is read until the worker answers (session_on_auth).
             * A poll watches for the client hanging up meanwhile, so that its
             * check leaves the queue at once instead of at the handshake timeout.
             */
            c->hs_flags |= HSF_AUTH_WAIT;
            struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_HS_HUP);
            io_uring_prep_poll_add(sqe, c->cfd, POLLRDHUP);
            return false;
        }
        if (res == AUTHQ_CLOSE) {
            /* No verdict to give: a close, never a wrong answer. */
            close_after_replies(sh, c, END_RESOURCE);
            return false;
        }
        auth_answer(sh, c, res == AUTHQ_OK);
        return res == AUTHQ_OK;
    }

    enum socks5_phase before = s5->phase;
    r = socks5_feed(s5, p, len);
    if (r == 0) {
        hs_need_more(sh, c);
        return false;
    }
    if (r == SOCKS5_ERR_CLOSE) {
        conn_close(sh, c, END_PROTOCOL);
        return false;
    }
    if (r == SOCKS5_ERR_NO_METHOD) {
        uint8_t m[2];
        c->hs_flags |= HSF_CLOSE_AFTER | HSF_REPLIED;
        c->end = s5->password_required ? END_AUTH_FAILED : END_REPLY_ERR;
        if (s5->password_required)
            STAT_INC(sh->st.auth_failures);
        hs_queue(sh, c, m, socks5_method_reply(m, SOCKS5_METHOD_REJECT));
        return false;
    }
    if (r < 0) {
        fail(sh, c, (uint8_t)-r);
        return false;
    }
    h->in_off = (uint16_t)(h->in_off + r);
    if (before == SOCKS5_PHASE_GREETING) {
        uint8_t m[2];
        hs_queue(sh, c, m, socks5_method_reply(m, s5->method));
        return true;
    }
    /* The request is complete: stop reading until the relay starts. */
    h->cmd = s5->cmd;
    start_request(sh, c);
    return false;
}

/* Parse what has arrived; act on each complete message. */
static void
hs_parse(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    if (h->version == 0) {
        /* One port, every version: the first byte says which. */
        h->version = h->in[h->in_off];
        c->version = h->version;
        if (h->version == SOCKS5_VERSION) {
            socks5_init(&h->p.s5);
            socks5_set_password_required(&h->p.s5, sh->pol->auth == AUTH_PASSWORD);
        } else if (h->version != SOCKS4_VERSION) {
            conn_close(sh, c, END_PROTOCOL);
            return;
        }
    }
    if (h->version == SOCKS4_VERSION) {
        parse_v4(sh, c);
        return;
    }
    while (parse_v5(sh, c))
        ;
}

void
session_on_auth(struct shard *sh, uint64_t cookie, bool ok)
{
    uint32_t slot = ud_slot(cookie);
    if (slot >= sh->high)
        return;
    struct conn *c = &sh->conns[slot];
    if (c->gen != ud_gen(cookie) || c->state != CONN_HANDSHAKE || !(c->hs_flags & HSF_AUTH_WAIT))
        return;
    c->hs_flags &= (uint8_t)~HSF_AUTH_WAIT;
    /* The hang-up poll has nothing left to watch (-ENOENT if it fired already). */
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL);
    io_uring_prep_poll_remove(sqe, ud_make(OP_HS_HUP, conn_slot(sh, c), c->gen));
    auth_answer(sh, c, ok);
    if (ok)
        hs_parse(sh, c);
}

/*
 * The client hung up (or reset) while its password check waited. A client
 * that shut its sending side with nothing sent after its credentials can
 * never send a request: end it now, which drops its check unrun. One that
 * pipelined bytes (its request) and then half-closed still waits for them to
 * be served.
 */
static void
on_auth_hangup(struct shard *sh, struct conn *c, int res)
{
    struct hs *h = c->hs;
    int unread = 0;
    if (!(c->hs_flags & HSF_AUTH_WAIT) || res < 0)
        return;
    if (res & (POLLERR | POLLHUP)) {
        conn_close(sh, c, END_CLIENT_ERR);
        return;
    }
    if (h->in_off < h->in_len || (ioctl(c->cfd, FIONREAD, &unread) == 0 && unread > 0))
        return;
    conn_close(sh, c, END_CLIENT_EOF);
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
    case OP_BIND_ACCEPT:
        on_bind_accept(sh, c, res);
        return;
    case OP_HS_HUP:
        on_auth_hangup(sh, c, res);
        return;
    case OP_CONNECT:
        if (res == 0) {
            union sockaddr_inx bnd;
            socklen_t len = sizeof(bnd);
            if (getsockname(c->tfd, &bnd.sa, &len) == -1)
                bnd.sa.sa_family = AF_UNSPEC;
            on_connected(sh, c, &bnd);
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
