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
#include <sys/ioctl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "authq.h"
#include "clients.h"
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
    udq_free(&sh->hs_wait_heavy);
}

/* The oldest connection still waiting in q (others closed meanwhile, e.g. on the
 * handshake timeout or a hang-up, are skipped), or NULL. */
static struct conn *
wait_pop(struct shard *sh, struct udq *q)
{
    uint64_t e;
    while (udq_pop(q, &e)) {
        struct conn *c = &sh->conns[ud_slot(e)];
        if (c->gen == ud_gen(e) && c->state == CONN_HANDSHAKE && !c->hs)
            return c;
    }
    return NULL;
}

/* Who gets the next free handshake context: clients of addresses holding few
 * handshakes first, then those of the heavy ones (issue #9: a burst of slow
 * handshakes from one address made everyone else wait behind it). */
static struct conn *
hs_wait_pop(struct shard *sh)
{
    struct conn *c = wait_pop(sh, &sh->hs_wait);
    return c ? c : wait_pop(sh, &sh->hs_wait_heavy);
}

/* Give back a per-client count the connection holds (flag says it does). */
static void
client_put(struct shard *sh, struct conn *c, uint8_t flag, enum client_count what)
{
    if (!(c->flags & flag))
        return;
    clients_dec(&sh->clients, &c->client, what, sh->now_s);
    c->flags &= (uint8_t)~flag;
}

/* Take one: false when the address is at limit (0: none). Uncountable (table full)
 * is taken as room: a limit that cannot count does not refuse. */
static bool
client_take(struct shard *sh, struct conn *c, uint8_t flag, enum client_count what,
            unsigned limit)
{
    if (limit && clients_get(&sh->clients, &c->client, what) >= limit)
        return false;
    if (clients_inc(&sh->clients, &c->client, what, sh->now_s) > 0)
        c->flags |= flag;
    return true;
}

/* The handshake is over (relay, UDP association or BIND wait next). */
static void
hs_done(struct shard *sh, struct conn *c)
{
    client_put(sh, c, CONN_F_CL_HS, CLIENT_HS);
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

/* Give the handshake context back to the slab, and to the next connection waiting. */
static void
hs_release(struct shard *sh, struct conn *c)
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

void
session_release(struct shard *sh, struct conn *c)
{
    client_put(sh, c, CONN_F_CL_HS, CLIENT_HS);
    client_put(sh, c, CONN_F_CL_BIND, CLIENT_BIND);
    client_put(sh, c, CONN_F_CL_UDP, CLIENT_UDP);
    hs_release(sh, c);
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

/* A reply in the client's protocol into r: SOCKS4 knows only granted/rejected. */
static size_t
encode_reply(const struct conn *c, uint8_t rep, const struct sockaddr *bnd,
             uint8_t r[SOCKS5_REPLY_MAX])
{
    if (c->version == 4)
        return socks4_reply(r, rep == SOCKS5_REP_SUCCEEDED ? SOCKS4_REP_GRANTED
                                                           : SOCKS4_REP_REJECTED,
                            bnd);
    return socks5_reply(r, rep, bnd);
}

/* Queue a reply through the handshake context. */
static void
queue_reply(struct shard *sh, struct conn *c, uint8_t rep, const struct sockaddr *bnd)
{
    uint8_t r[SOCKS5_REPLY_MAX];
    c->rep = (int8_t)rep;
    hs_queue(sh, c, r, encode_reply(c, rep, bnd, r));
}

/*
 * BIND's second reply once its context is gone (given back after the first reply, so
 * that a BIND waiting two minutes holds no handshake memory): written at once. Nothing
 * else of ours is in the socket, so 8-22 bytes go without blocking (MSG_DONTWAIT); a
 * client that cannot take them is broken. Returns false when not all were written.
 */
static bool
reply_now(struct conn *c, uint8_t rep, const struct sockaddr *bnd)
{
    uint8_t r[SOCKS5_REPLY_MAX];
    size_t n = encode_reply(c, rep, bnd, r);
    c->rep = (int8_t)rep;
    return send(c->cfd, r, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
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

/*
 * Watch the client for a hang-up while the server waits on something else (a
 * context, the auth worker, DNS, a connect, BIND's peer): a client that left
 * must not keep its slot, fds, context or BIND port until a timeout (issue #9).
 * POLLRDHUP alone, so pipelined bytes do not fire it. One watch per connection,
 * left in flight when the wait ends: it completes on the client's FIN or at close.
 */
static void
watch_hangup(struct shard *sh, struct conn *c)
{
    if (c->flags & CONN_F_HUP_ARMED)
        return;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_HUP);
    io_uring_prep_poll_add(sqe, c->cfd, POLLRDHUP);
    c->flags |= CONN_F_HUP_ARMED;
}

/* Is c waiting on something other than its client? */
static bool
waits_elsewhere(const struct conn *c)
{
    switch (c->state) {
    case CONN_HANDSHAKE:
        return !c->hs || (c->hs_flags & HSF_AUTH_WAIT);
    case CONN_RESOLVE:
    case CONN_CONNECT:
    case CONN_BIND_WAIT:
        return true;
    default:
        return false;
    }
}

/*
 * The client shut its side. Gone, unless it left bytes for us first (read into the
 * context or still in the socket): a client that pipelines its data and then
 * half-closes is served like any other.
 */
static bool
client_gone(const struct conn *c, int events)
{
    if (events & (POLLERR | POLLHUP))
        return true;
    if (c->hs && c->hs->in_off < c->hs->in_len)
        return false;
    int unread = 0;
    return ioctl(c->cfd, FIONREAD, &unread) == 0 && unread == 0;
}

void
session_on_hup(struct shard *sh, struct conn *c, int res)
{
    c->flags &= (uint8_t)~CONN_F_HUP_ARMED;
    if (res < 0 || !waits_elsewhere(c) || !client_gone(c, res))
        return;
    conn_close(sh, c, END_CLIENT_EOF);
}

void
session_tick(struct shard *sh)
{
    /* Resolves and connects are watched once they have lasted a second: most finish
     * sooner, and a watch costs an SQE and a CQE. */
    for (uint32_t i = sh->head[TL_CONNECT]; i != CONN_NIL; i = sh->conns[i].tnext) {
        struct conn *c = &sh->conns[i];
        if (sh->now_ds - c->stamp_ds < 10)
            break;
        if (c->state == CONN_RESOLVE || c->state == CONN_CONNECT)
            watch_hangup(sh, c);
    }
}

/*
 * Every context is taken and a client of a light address waits: close the oldest
 * unfinished handshake of an address holding more than client_max_handshakes, one
 * still waiting for its client's bytes or for its password check (which is then
 * withdrawn unrun: such a client gets a close, never a wrong verdict). Its context
 * comes back when the close completes, and goes to the light waiter first
 * (hs_wait_pop). A burst from one address alone (a benchmark, a NAT) never has a
 * light waiter: nothing is closed.
 */
static void
evict_heavy(struct shard *sh, unsigned limit)
{
    for (uint32_t i = sh->head[TL_HANDSHAKE]; i != CONN_NIL; i = sh->conns[i].tnext) {
        struct conn *v = &sh->conns[i];
        if (v->state != CONN_HANDSHAKE || !v->hs ||
            (v->hs_flags & (HSF_WRITING | HSF_CLOSE_AFTER)))
            continue;
        if (clients_get(&sh->clients, &v->client, CLIENT_HS) > limit) {
            STAT_INC(sh->st.client_evictions);
            conn_close(sh, v, END_CLIENT_LIMIT);
            return;
        }
    }
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
    int held = clients_inc(&sh->clients, &c->client, CLIENT_HS, sh->now_s);
    if (held > 0)
        c->flags |= CONN_F_CL_HS;
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
    unsigned limit = sh->pol->client_max_handshakes;
    bool heavy = limit && held > (int)limit;
    if (udq_push(heavy ? &sh->hs_wait_heavy : &sh->hs_wait, ud_make(0, conn_slot(sh, c), c->gen)) <
        0) {
        STAT_INC(sh->st.accept_dropped);
        conn_close(sh, c, END_RESOURCE);
        return;
    }
    STAT_INC(sh->st.hs_waits);
    watch_hangup(sh, c);
    if (limit && !heavy)
        evict_heavy(sh, limit);
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

/*
 * Does dest reach this proxy itself: one of its listeners or its admin endpoint? A
 * wildcard listener is reached on every address of its family this host has.
 */
static bool
reaches_self(const struct shard *sh, const union sockaddr_inx *dest)
{
    const struct opts *o = sh->o;
    uint16_t port = addr_port(dest);
    for (unsigned i = 0; i < o->n_self; i++) {
        const union sockaddr_inx *me = (const union sockaddr_inx *)&o->self[i];
        if (addr_port(me) != port || me->sa.sa_family != dest->sa.sa_family)
            continue;
        if (addr_same_ip(me, dest) || (addr_is_any(me) && sock_addr_is_local(dest)))
            return true;
    }
    return false;
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
    /*
     * The proxy's own listeners and admin endpoint are never a CONNECT's target unless
     * the allowing rule names them in "to": one client socket built 4,000 nested
     * tunnels (8,000 fds) through the proxy, and the admin endpoint trusts loopback.
     */
    bool self = dest && c->cmd == SOCKS5_CMD_CONNECT && reaches_self(sh, dest);
    if (!acl) {
        if (!self)
            return true;
        STAT_INC(sh->st.acl_denied);
        return false;
    }
    struct acl_query q = {
        .client = &c->client,
        .cmd = acl_cmd(c->cmd),
        .user = c->user,
        .host = host,
        .dest = dest,
        .port = port,
    };
    int rule;
    if (acl_match(acl, &q, &rule) == ACL_ALLOW && (!self || (acl_rule_flags(acl, rule) & ACL_RF_TO)))
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
    if (!client_take(sh, c, CONN_F_CL_UDP, CLIENT_UDP, sh->pol->client_max_udp)) {
        STAT_INC(sh->st.client_limited);
        fail_why(sh, c, SOCKS5_REP_NOT_ALLOWED, END_CLIENT_LIMIT);
        return;
    }
    int ret = udp_open(sh, c, hs_dest(c->hs), &bnd);
    if (ret < 0)
        client_put(sh, c, CONN_F_CL_UDP, CLIENT_UDP);
    if (ret == -EPERM) {
        /* The datagram source it declared is not one the rules admit. */
        deny(sh, c);
        return;
    }
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
        /* A name, never an address in disguise: the parsers turned IP literals into
         * addresses and refused names with ports, brackets or zones. */
        h->n_addrs = (uint8_t)hosts_lookup(sh->hosts, d->u.name, d->port, h->addrs, HS_MAX_ADDRS);
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
        sock_set_liveness(fd, sh->o);
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
    hs_done(sh, c);
    hs_release(sh, c);
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
    /* Each waiting BIND holds a port (of a bind_ports range, perhaps) and two fds. */
    if (!client_take(sh, c, CONN_F_CL_BIND, CLIENT_BIND, sh->pol->client_max_binds)) {
        STAT_INC(sh->st.client_limited);
        fail_why(sh, c, SOCKS5_REP_NOT_ALLOWED, END_CLIENT_LIMIT);
        return;
    }
    /* The peer expected (the log shows it until the real one connects). */
    c->dest = *want;
    addr_unmap(&c->dest);
    memset(&local, 0, sizeof(local));
    if (!addr_is_any(want)) {
        /* A connected UDP socket makes the kernel pick the route's source address; no packet. */
        int u = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (u == -1 || connect(u, &want->sa, addr_len(&want->sa)) == -1 ||
            getsockname(u, &local.sa, &len) == -1) {
            int err = -errno;
            if (u >= 0)
                close(u);
            client_put(sh, c, CONN_F_CL_BIND, CLIENT_BIND);
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
        client_put(sh, c, CONN_F_CL_BIND, CLIENT_BIND);
        fail(sh, c, socks5_rep_from_errno(-errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* The inbound connection inherits them from its listener. */
    sock_set_liveness(fd, sh->o);
    if (fam == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int ret = sock_bind_range(fd, &local, sh->o->bind_port_lo, sh->o->bind_port_hi);
    len = sizeof(local);
    if (ret == 0 && (listen(fd, 1) == -1 || getsockname(fd, &local.sa, &len) == -1))
        ret = -errno;
    if (ret < 0) {
        close(fd);
        client_put(sh, c, CONN_F_CL_BIND, CLIENT_BIND);
        fail(sh, c, socks5_rep_from_errno(ret));
        return;
    }
    c->tfd = fd;
    c->state = CONN_BIND_WAIT;
    hs_done(sh, c);
    conn_timer_set(sh, c, TL_BIND);
    queue_reply(sh, c, SOCKS5_REP_SUCCEEDED, &local.sa);
    /* No address buffer: the context may be given back before the peer comes. */
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_BIND_ACCEPT);
    io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    watch_hangup(sh, c);
}

/* BIND answered with an error: through the context, or at once when it is gone. */
static void
bind_fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    if (c->hs) {
        fail_why(sh, c, rep, why);
        return;
    }
    reply_now(c, rep, NULL);
    conn_close(sh, c, why);
}

static void
on_bind_accept(struct shard *sh, struct conn *c, int res)
{
    client_put(sh, c, CONN_F_CL_BIND, CLIENT_BIND);
    if (res < 0) {
        bool timed_out = c->hs_flags & HSF_TIMED_OUT;
        bind_fail(sh, c, timed_out ? SOCKS5_REP_TTL_EXPIRED : socks5_rep_from_errno(res),
                  timed_out ? END_BIND_TIMEOUT : END_REPLY_ERR);
        return;
    }
    /* The listener has done its one job. */
    close(c->tfd);
    c->tfd = res;
    union sockaddr_inx peer, want = c->dest;
    socklen_t len = sizeof(peer);
    if (getpeername(res, &peer.sa, &len) == -1) {
        bind_fail(sh, c, socks5_rep_from_errno(-errno), END_TARGET_ERR);
        return;
    }
    addr_unmap(&peer);
    c->dest = peer;
    if (!addr_is_any(&want) && !addr_same_ip(&want, &peer)) {
        bind_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_REPLY_ERR);
        return;
    }
    if (c->hs) {
        on_connected(sh, c, &peer);
        return;
    }
    if (!reply_now(c, SOCKS5_REP_SUCCEEDED, &peer.sa)) {
        conn_close(sh, c, END_CLIENT_ERR);
        return;
    }
    relay_start(sh, c);
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

/*
 * A request named a host no host name can be: reply 0x04 (SOCKS4: 91), and keep what
 * it asked for, as sent, for the access log (abuse handling wants the attempt).
 */
static void
bad_name(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    char name[256];
    uint8_t cmd;
    if (socks_bad_name(h->in + h->in_off, (size_t)(h->in_len - h->in_off), name, &c->port, &cmd) ==
        0) {
        c->cmd = cmd;
        if (!c->host)
            c->host = strdup(name); /* NULL when out of memory: only the log loses it */
    }
    fail_why(sh, c, SOCKS5_REP_HOST_UNREACH, END_BAD_NAME);
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
        if (r == SOCKS4_ERR_BAD_NAME && socks4_allowed(sh))
            bad_name(sh, c);
        else
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
             * The hang-up watch ends a client that leaves meanwhile, and with it
             * its check, at once instead of at the handshake timeout.
             */
            c->hs_flags |= HSF_AUTH_WAIT;
            watch_hangup(sh, c);
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
    if (r == SOCKS5_ERR_BAD_NAME) {
        bad_name(sh, c);
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
    auth_answer(sh, c, ok);
    if (ok)
        hs_parse(sh, c);
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
        /* BIND's first reply is out: the wait for the peer needs no context, unless the
         * client pipelined bytes that must reach the peer once it comes. */
        if (c->state == CONN_BIND_WAIT && h->in_off == h->in_len) {
            hs_release(sh, c);
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
