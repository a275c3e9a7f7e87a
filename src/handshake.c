/*
 * handshake.c - the handshake phase: from accept to a complete request, and
 * every reply written through a connection's handshake context.
 *
 * Shard thread only. The client's bytes are read into the connection's
 * context, which lives in the shard's registered buffer, and fed to the pure
 * parsers (socks4.c, socks5.c, auth.c, httpconnect.c); password hashes go to the auth worker
 * (authq.c). A complete request goes to the phase the shard named at init
 * (the request phase: request_start()); replies come back here
 * (handshake_fail(), handshake_succeed()). Bytes the client pipelined after
 * its request stay in the context and are written to the target before the
 * relay starts, never dropped.
 *
 * It owns the contexts: a slab, a free list, and the queues of accepted
 * connections waiting for one, those of addresses holding few handshakes
 * first (clients.h). On a proxy_protocol listener the balancer's PROXY header
 * (proxyproto.c) comes first, and the client it names replaces the peer
 * before anything (rules, limits, lockout, the log, UDP) looks at c->client.
 * On a transparent listener nothing is read: the destination the kernel
 * redirected the connection from (transparent.c) is the request, the success
 * reply is no bytes at all and a failure resets the client.
 * It never blocks and never reaches into a later phase but through the
 * continuation a phase hands to handshake_succeed().
 */
#include "handshake.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "authq.h"
#include "gsshs.h"
#include "gssw.h"
#include "clients.h"
#include "egress.h"
#include "fault.h"
#include "httpconnect.h"
#include "lockout.h"
#include "outbound.h"
#include "policy.h"
#include "proxyproto.h"
#include "shard_types.h"
#include "socks4.h"
#include "transparent.h"

int
handshake_init(struct shard *sh, void (*on_request)(struct shard *sh, struct conn *c))
{
    struct hs_pool *hp = &sh->hsp;
    hp->on_request = on_request;
    size_t bytes = (size_t)sh->o->hs_slots * sizeof(struct hs);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    hp->slab = p;
    hp->count = sh->o->hs_slots;
    for (uint32_t i = 0; i < hp->count; i++)
        hp->slab[i].next_free = i + 1 < hp->count ? i + 1 : CONN_NIL;
    hp->free = 0;

    /*
     * One registered buffer covers the whole slab: handshake reads and
     * writes use READ_FIXED/WRITE_FIXED with buf_index 0. Registration pins
     * the pages; where the memlock limit refuses it, plain recv/send do.
     */
    struct iovec iov = {.iov_base = p, .iov_len = bytes};
    hp->fixed_bufs = io_uring_register_buffers(&sh->ring, &iov, 1) == 0;
    return 0;
}

void
handshake_fini(struct shard *sh)
{
    struct hs_pool *hp = &sh->hsp;
    if (hp->slab)
        munmap(hp->slab, (size_t)hp->count * sizeof(struct hs));
    hp->slab = NULL;
    udq_free(&hp->wait);
    udq_free(&hp->wait_heavy);
}

/* The oldest connection still waiting in q (others closed meanwhile, e.g. on the
 * handshake timeout or a hang-up, are skipped), or NULL. */
static struct conn *
wait_pop(struct shard *sh, struct udq *q)
{
    uint64_t e;
    while (udq_pop(q, &e)) {
        struct conn *c = conn_from_ref(sh, e);
        if (c && c->state == CONN_HANDSHAKE && !c->hs)
            return c;
    }
    return NULL;
}

/* Who gets the next free context: clients of addresses holding few handshakes first,
 * then those of the heavy ones, so that a burst of slow handshakes from one address
 * does not make everyone else wait behind it (docs/design.md, "One address, many
 * handshakes"). */
static struct conn *
hs_wait_pop(struct shard *sh)
{
    struct conn *c = wait_pop(sh, &sh->hsp.wait);
    return c ? c : wait_pop(sh, &sh->hsp.wait_heavy);
}

static struct hs *
hs_get(struct shard *sh)
{
    struct hs_pool *hp = &sh->hsp;
    if (hp->free == CONN_NIL)
        return NULL;
    struct hs *h = &hp->slab[hp->free];
    hp->free = h->next_free;
    h->in_len = h->in_off = 0;
    h->out_len = h->out_off = 0;
    h->n_addrs = h->next_addr = 0;
    h->sess_id[0] = '\0';
    h->sess_ttl_s = 0;
    h->last_err = 0;
    h->next = NULL;
    h->next_flags = 0;
    h->chain = NULL;
    h->gss = NULL;
    h->gss_sess = NULL;
    return h;
}

static void hs_begin(struct shard *sh, struct conn *c);
static void maybe_done(struct shard *sh, struct conn *c);

void
handshake_release(struct shard *sh, struct conn *c)
{
    struct hs_pool *hp = &sh->hsp;
    if (!c->hs)
        return;
    /* Gone before its password check was answered: it leaves the queue with it. */
    if (c->hs_flags & HSF_AUTH_WAIT)
        authq_cancel(sh, (uint32_t)(c->hs - hp->slab));
    gsshs_release(sh, c);
    if (c->hs->gss_sess) {
        gssw_sess_put(sh, c->hs->gss_sess);
        c->hs->gss_sess = NULL;
    }
    sodium_memzero(&c->hs->cred, sizeof(c->hs->cred));
    c->hs->next_free = hp->free;
    hp->free = (uint32_t)(c->hs - hp->slab);
    c->hs = NULL;
    c->hs_flags &= (uint8_t) ~(HSF_WRITING | HSF_CLOSE_AFTER | HSF_LEFTOVER | HSF_AUTH_WAIT);
    /*
     * The freed context goes to a waiter, but not from here: this often runs inside the
     * free of the slot that held it, before that slot's limits and client counts are given
     * back (a waiter of the same address would meet its limit one too early), and a waiter
     * that ends at once (a transparent loop, reset and freed) would release again, one
     * stack frame per waiter (a flood of them overflowed the shard's stack). The shard
     * hands contexts out once per loop iteration (handshake_handoff()), when some wait.
     */
    if (hp->wait.len || hp->wait_heavy.len)
        hp->handoff = true;
}

void
handshake_handoff(struct shard *sh)
{
    struct hs_pool *hp = &sh->hsp;
    hp->handoff = false;
    struct conn *w;
    while (hp->free != CONN_NIL && (w = hs_wait_pop(sh))) {
        w->hs = hs_get(sh);
        hs_begin(sh, w);
    }
}

bool
handshake_has_unread(const struct conn *c)
{
    return c->hs && c->hs->in_off < c->hs->in_len;
}

static void
hs_read(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_HS_READ, 0);
    unsigned room = HS_IN_SIZE - h->in_len;
    if (sh->hsp.fixed_bufs)
        io_uring_prep_read_fixed(sqe, c->cfd, h->in + h->in_len, room, 0, 0);
    else
        io_uring_prep_recv(sqe, c->cfd, h->in + h->in_len, room, 0);
}

/* Sleep c->fault->wait_ms before writing on (OP_FAULT, fault.h); HSF_WRITING holds every
 * other write, and the phase's end, back meanwhile. */
static void
hs_sleep(struct shard *sh, struct conn *c)
{
    fault_sleep(sh, c, 0, c->fault->wait_ms);
    c->fault->wait_ms = 0;
    c->hs_flags |= HSF_WRITING;
}

/* Fault k, a delay of the next write (delay_method, delay_auth, delay_reply), acts. */
static void
fault_delay(struct shard *sh, struct conn *c, enum fault_kind k)
{
    fault_acted(sh, c, k);
    c->fault->wait_ms = c->fault->f.arg[k];
}

static void
hs_flush(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    if ((c->hs_flags & HSF_WRITING) || h->out_off == h->out_len)
        return;
    unsigned n = (unsigned)(h->out_len - h->out_off);
    if (c->fault) {
        /* A fault's delay or pause first (OP_FAULT); HSF_WRITING holds the rest back. */
        if (c->fault->wait_ms) {
            hs_sleep(sh, c);
            return;
        }
        if (c->fault->split_on)
            n = 1;
    }
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_HS_WRITE, 0);
    if (sh->hsp.fixed_bufs)
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

const struct socks_dest *
handshake_dest(const struct conn *c)
{
    const struct hs *h = c->hs;
    if (c->version == HTTPCONNECT_VERSION)
        return &h->p.hc.dest;
    /* A transparent connection's request is kept where a SOCKS5 one is (hs_transparent()). */
    return c->version == 4 ? &h->p.s4.dest : &h->p.s5.dest;
}

/* A reply in the client's protocol into r: SOCKS4 knows only granted/rejected, HTTP a
 * status (httpconnect_status()), a transparent client none (0 bytes). */
static size_t
encode_reply(const struct conn *c, uint8_t rep, const struct sockaddr *bnd, uint8_t r[HS_OUT_SIZE])
{
    if (c->version == TRANSPARENT_VERSION)
        return 0;
    if (c->version == HTTPCONNECT_VERSION)
        return httpconnect_response(r, httpconnect_status(rep));
    if (c->version == 4) {
        uint8_t r4 = rep == SOCKS5_REP_SUCCEEDED ? SOCKS4_REP_GRANTED : SOCKS4_REP_REJECTED;
        /* A SOCKS4 refusal a fault forces (fault.h): its own code. */
        if (rep != SOCKS5_REP_SUCCEEDED && c->fault && (c->fault->acted & (1u << FAULT_REPLY4)))
            r4 = (uint8_t)c->fault->f.arg[FAULT_REPLY4];
        return socks4_reply(r, r4, bnd);
    }
    return socks5_reply(r, rep, bnd);
}

/* The address a wrong_bnd or bind_peer fault names instead of bnd's (documentation
 * prefixes, RFC 5737 and RFC 3849), of bnd's family, port 9 (wrong_bnd) or bnd's. */
static const struct sockaddr *
fault_addr(union sockaddr_inx *a, const struct sockaddr *bnd, bool peer)
{
    uint16_t port = htons(peer && bnd ? addr_port((const union sockaddr_inx *)bnd) : 9);
    memset(a, 0, sizeof(*a));
    if (bnd && bnd->sa_family == AF_INET6 &&
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)bnd)->sin6_addr)) {
        static const uint8_t net[16] = {0x20, 0x01, 0x0d, 0xb8};
        a->v6.sin6_family = AF_INET6;
        memcpy(&a->v6.sin6_addr, net, sizeof(net));
        a->v6.sin6_addr.s6_addr[15] = peer ? 2 : 1;
        a->v6.sin6_port = port;
    } else {
        a->v4.sin_family = AF_INET;
        a->v4.sin_addr.s_addr = htonl(peer ? 0xCB007101u : 0xC0000201u);
        a->v4.sin_port = port;
    }
    return &a->sa;
}

/*
 * The request's first reply with c's faults (fault.h): delayed, a byte at a time,
 * truncated (then closed), or naming a wrong address; BIND's second naming a wrong peer.
 * Returns the bytes of r to queue.
 */
static size_t
fault_reply(struct shard *sh, struct conn *c, uint8_t rep, const struct sockaddr *bnd,
            uint8_t r[HS_OUT_SIZE])
{
    struct conn_fault *f = c->fault;
    const struct fault_set *s = &f->f;
    union sockaddr_inx wrong;
    unsigned nth = f->replies++;
    if (nth == 1 && rep == SOCKS5_REP_SUCCEEDED && fault_has(s, FAULT_BIND_PEER)) {
        fault_acted(sh, c, FAULT_BIND_PEER);
        return encode_reply(c, rep, fault_addr(&wrong, bnd, true), r);
    }
    if (nth != 0)
        return encode_reply(c, rep, bnd, r);
    if (rep == SOCKS5_REP_SUCCEEDED && fault_has(s, FAULT_WRONG_BND)) {
        fault_acted(sh, c, FAULT_WRONG_BND);
        bnd = fault_addr(&wrong, bnd, false);
    }
    size_t n = encode_reply(c, rep, bnd, r);
    if (fault_has(s, FAULT_DELAY_REPLY))
        fault_delay(sh, c, FAULT_DELAY_REPLY);
    if (fault_has(s, FAULT_SPLIT) && n > 1) {
        fault_acted(sh, c, FAULT_SPLIT);
        f->split_on = true;
    }
    if (fault_has(s, FAULT_TRUNCATE) && s->arg[FAULT_TRUNCATE] < n) {
        fault_acted(sh, c, FAULT_TRUNCATE);
        n = s->arg[FAULT_TRUNCATE];
        c->hs_flags |= HSF_CLOSE_AFTER;
        c->end = END_FAULT;
    }
    return n;
}

/* Queue a reply through the context; the handshake phase writes it. */
static void
queue_reply(struct shard *sh, struct conn *c, uint8_t rep, const struct sockaddr *bnd)
{
    uint8_t r[HS_OUT_SIZE];
    conn_enter(c, &handshake_phase);
    c->rep = (int8_t)rep;
    if (!c->fault) {
        hs_queue(sh, c, r, encode_reply(c, rep, bnd, r));
        return;
    }
    hs_queue(sh, c, r, fault_reply(sh, c, rep, bnd, r));
    /* truncate_0 with nothing else to write: no write completes to close it, so a timer
     * does (after the reply's delay, if any). Never a close here: every caller goes on
     * with c (connect_next() cancels its attempts), and c may have nothing in flight. */
    if ((c->hs_flags & HSF_CLOSE_AFTER) && !(c->hs_flags & HSF_WRITING) &&
        c->hs->out_off == c->hs->out_len)
        hs_sleep(sh, c);
}

bool
handshake_reply_now(struct shard *sh, struct conn *c, uint8_t rep, const struct sockaddr *bnd)
{
    uint8_t r[HS_OUT_SIZE];
    /* A later reply (BIND's second): of the faults only bind_peer acts on it. */
    size_t n = c->fault ? fault_reply(sh, c, rep, bnd, r) : encode_reply(c, rep, bnd, r);
    c->rep = (int8_t)rep;
    return send(c->cfd, r, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
}

/*
 * A transparent client has no protocol to be told a failure in: its connect() succeeded
 * when the kernel handed it to us, so it is reset (ECONNRESET at its next read or write),
 * which a program takes for a refused or broken connection, never for a clean EOF. The
 * reset is conn_close()'s, as for every unclean end of a transparent tunnel.
 */
static void
reset_client(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    c->rep = (int8_t)rep;
    conn_close(sh, c, why);
}

void
handshake_fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    if (c->version == TRANSPARENT_VERSION) {
        reset_client(sh, c, rep, why);
        return;
    }
    c->hs_flags |= HSF_CLOSE_AFTER;
    c->end = (uint8_t)why;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    queue_reply(sh, c, rep, NULL);
}

bool
handshake_fault(struct shard *sh, struct conn *c, int rule)
{
    int rep = sh->pol->rules_fault ? fault_request(sh, c, rule) : -1;
    if (rep < 0)
        return false;
    handshake_fail(sh, c, (uint8_t)rep, END_FAULT);
    return true;
}

static void
fail(struct shard *sh, struct conn *c, uint8_t rep)
{
    handshake_fail(sh, c, rep, END_REPLY_ERR);
}

/* Write the bytes the client pipelined after its request to the target. */
static void
hs_write_leftover(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_LEFTOVER, 0);
    unsigned n = (unsigned)(h->in_len - h->in_off);
    if (sh->hsp.fixed_bufs)
        io_uring_prep_write_fixed(sqe, c->tfd, h->in + h->in_off, n, 0, 0);
    else
        io_uring_prep_send(sqe, c->tfd, h->in + h->in_off, n, MSG_NOSIGNAL);
    c->hs_flags |= HSF_LEFTOVER;
}

void
handshake_succeed(struct shard *sh, struct conn *c, const union sockaddr_inx *bnd,
                  void (*next)(struct shard *sh, struct conn *c), unsigned flags)
{
    struct hs *h = c->hs;
    c->state = CONN_REPLY;
    h->next = next;
    h->next_flags = flags;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    queue_reply(sh, c, SOCKS5_REP_SUCCEEDED, bnd ? &bnd->sa : NULL);
    if (c->fault && (c->fault->acted & (1u << FAULT_TRUNCATE)))
        return; /* a fault truncated the reply: c closes once that is out */
    if ((flags & HS_FORWARD_UNREAD) && h->in_off < h->in_len)
        hs_write_leftover(sh, c);
    /* Nothing to write (a transparent client's reply is none): no completion will call. */
    maybe_done(sh, c);
}

/* The success reply (and the pipelined bytes) are out: the handshake is over. */
static void
maybe_done(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    if (c->state != CONN_REPLY || (c->hs_flags & (HSF_WRITING | HSF_LEFTOVER)))
        return;
    void (*next)(struct shard *, struct conn *) = h->next;
    conn_client_put(sh, c, CLIENT_HS);
    if (!((h->next_flags & HS_KEEP_UNREAD) && h->in_off < h->in_len))
        handshake_release(sh, c);
    next(sh, c);
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
    for (struct conn *v = conn_timer_first(sh, TL_HANDSHAKE); v; v = conn_timer_next(sh, v)) {
        if (v->state != CONN_HANDSHAKE || !v->hs || (v->hs_flags & (HSF_WRITING | HSF_CLOSE_AFTER)))
            continue;
        if (clients_get(&sh->clients, &v->client, CLIENT_HS) > limit) {
            STAT_INC(sh->st.client_evictions);
            conn_close(sh, v, END_CLIENT_LIMIT);
            return;
        }
    }
}

/*
 * A listener marked proxy_protocol: its peer must be one of the balancers of its from
 * (anyone else could claim any client address), and its first bytes the PROXY header.
 * false: c was closed.
 */
static bool
proxy_accept(struct shard *sh, struct conn *c)
{
    union sockaddr_inx local;
    const struct policy_listener *l = sh->pol->n_listeners && conn_local(c, &local) == 0
                                          ? policy_listener_at(sh->pol, sh->o, &local)
                                          : NULL;
    if (!l || !l->proxy)
        return true;
    /* Reset before it was asked who it is (getpeername: ENOTCONN), as HAProxy's health
     * checks often are: gone, not refused. */
    if (c->client.sa.sa_family == AF_UNSPEC) {
        conn_close(sh, c, END_CLIENT_ERR);
        return false;
    }
    if (!policy_proxy_from(l, &c->client)) {
        conn_close(sh, c, END_PROXY_REFUSED);
        return false;
    }
    c->hs_flags |= HSF_PROXY;
    return true;
}

/*
 * A transparent connection has its context: the destination the kernel redirected it
 * from is its request, a CONNECT to that address with no user, which goes to the request
 * phase as a parsed one would (rules, limits, egress, Happy Eyeballs, the log). One that
 * would reach the proxy itself (a client that connected to the listener directly, or a
 * ruleset that redirects our own listening port) is a loop: never relayed to itself.
 */
static void
hs_transparent(struct shard *sh, struct conn *c)
{
    union sockaddr_inx dst;
    c->cmd = SOCKS5_CMD_CONNECT;
    /* Reset before it was asked who it is (getpeername: ENOTCONN): gone, no tunnel for it. */
    if (c->client.sa.sa_family == AF_UNSPEC) {
        reset_client(sh, c, SOCKS5_REP_GENERAL, END_CLIENT_ERR);
        return;
    }
    if (transparent_orig_dest(c->cfd, &dst, NULL) < 0 ||
        transparent_request(&c->hs->p.s5.dest, &dst) < 0) {
        reset_client(sh, c, SOCKS5_REP_GENERAL, END_CLIENT_ERR);
        return;
    }
    if (policy_reaches_self(sh->o, &dst)) {
        c->dest = dst; /* for the log and the metrics: end=loop names it */
        c->port = addr_port(&dst);
        reset_client(sh, c, SOCKS5_REP_NOT_ALLOWED, END_LOOP);
        return;
    }
    sh->hsp.on_request(sh, c);
}

/* c has a context: read its first bytes, or (transparent) go straight to its request. */
static void
hs_begin(struct shard *sh, struct conn *c)
{
    if (c->version == TRANSPARENT_VERSION)
        hs_transparent(sh, c);
    else
        hs_read(sh, c);
}

void
handshake_start(struct shard *sh, int fd, bool transparent)
{
    struct conn *c = conn_alloc(sh, &handshake_phase);
    if (!c) {
        STAT_INC(sh->st.accept_dropped);
        close(fd);
        return;
    }
    c->cfd = fd;
    if (transparent)
        c->version = TRANSPARENT_VERSION;
    STAT_INC(sh->st.accepted);
    socklen_t len = sizeof(c->client);
    if (getpeername(fd, &c->client.sa, &len) == -1)
        c->client.sa.sa_family = AF_UNSPEC;
    addr_unmap(&c->client);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    c->start_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    conn_timer_set(sh, c, TL_HANDSHAKE);
    /* A transparent client is the peer itself: it never sends a PROXY header (and under
     * tproxy its local address is its target's, which may look like any listener's). */
    if (sh->pol->proxy_listeners && !transparent && !proxy_accept(sh, c))
        return;
    conn_client_take(sh, c, CLIENT_HS, 0);
    /* First come, first served: a context freed in this batch is the waiters' (handed out
     * before the next wait, handshake_handoff()), not a newcomer's. */
    c->hs = sh->hsp.wait.len || sh->hsp.wait_heavy.len ? NULL : hs_get(sh);
    if (c->hs) {
        hs_begin(sh, c);
        return;
    }
    /*
     * More handshakes at once than the slab holds (a burst of thousands of
     * new clients): the connection waits, unread, for the next context to
     * free up; its handshake timeout runs meanwhile. Shedding it instead
     * refused hundreds of 9,000 tunnels opened at once.
     */
    unsigned limit = sh->pol->client_max_handshakes;
    bool heavy = limit && clients_get(&sh->clients, &c->client, CLIENT_HS) > limit;
    if (udq_push(heavy ? &sh->hsp.wait_heavy : &sh->hsp.wait, conn_ref(c, 0)) < 0) {
        STAT_INC(sh->st.accept_dropped);
        conn_close(sh, c, END_RESOURCE);
        return;
    }
    STAT_INC(sh->st.hs_waits);
    /* Queued behind waiters while a context is free (one given back in this batch, or the
     * queue held only connections gone since): the hand-off before the next wait serves it. */
    if (sh->hsp.free != CONN_NIL)
        sh->hsp.handoff = true;
    conn_watch_hangup(sh, c);
    if (limit && !heavy)
        evict_heavy(sh, limit);
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
        return sh->pol->n_auth == 0;
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

/* The user name the client sent (its base name, the session kept aside) becomes c->user;
 * false when out of memory (c->user stays NULL). */
static bool
take_user(struct conn *c)
{
    if (c->user)
        return true;
    struct egress_session s = {c->hs->sess_id, strlen(c->hs->sess_id), c->hs->sess_ttl_s};
    c->user = outbound_user_dup(c, c->hs->cred.user, &s);
    return c->user != NULL;
}

/* An HTTP client's request refused with status (its response says why), then closed. */
static void
http_refuse(struct shard *sh, struct conn *c, unsigned status, enum conn_end why)
{
    uint8_t r[HS_OUT_SIZE];
    c->hs_flags |= HSF_CLOSE_AFTER;
    c->end = (uint8_t)why;
    hs_queue(sh, c, r, httpconnect_response(r, status));
}

/* RFC 1929 section 2: a failure status, then the server closes. HTTP (RFC 9110 section
 * 15.5.8): 407 with the challenge, then the server closes. */
static void
auth_refuse(struct shard *sh, struct conn *c, enum conn_end why)
{
    uint8_t r[2];
    if (c->version == HTTPCONNECT_VERSION) {
        http_refuse(sh, c, 407, why);
        return;
    }
    c->hs_flags |= HSF_CLOSE_AFTER;
    c->end = (uint8_t)why;
    hs_queue(sh, c, r, auth_reply(r, AUTH_STATUS_FAIL));
}

/*
 * The verdict on the credentials in the context (the password already wiped).
 * A refusal names the user tried in c->user, for the access log alone: the
 * connection closes after the status and is never served as that user.
 * true: good, and the handshake goes on; false: refused or closed.
 */
static bool
auth_answer(struct shard *sh, struct conn *c, bool ok)
{
    uint8_t r[2];
    const char *user = c->hs->cred.user;
    struct conn_fault *f = sh->pol->rules_fault && c->version == SOCKS5_VERSION
                               ? fault_before_request(sh, c, user)
                               : NULL;
    if (f && fault_has(&f->f, FAULT_DELAY_AUTH))
        fault_delay(sh, c, FAULT_DELAY_AUTH);
    if (ok && f && fault_has(&f->f, FAULT_AUTH_FAIL)) {
        /* A refusal of a right password: no failure counted, no lockout. */
        fault_acted(sh, c, FAULT_AUTH_FAIL);
        take_user(c);
        auth_refuse(sh, c, END_FAULT);
        return false;
    }
    if (!ok) {
        STAT_INC(sh->st.auth_failures);
        if (sh->lockout) {
            unsigned locked =
                lockout_fail(sh->lockout, &sh->pol->lockout, &c->client, user, sh->now_s);
            for (int s = 0; s < LOCKOUT__SCOPES; s++)
                if (locked & (1u << s))
                    STAT_INC(sh->st.auth_lockouts[s]);
        }
        take_user(c);
        auth_refuse(sh, c, END_AUTH_FAILED);
        return false;
    }
    if (sh->lockout)
        lockout_success(sh->lockout, &sh->pol->lockout, &c->client, user, sh->now_s);
    if (!take_user(c)) {
        /*
         * Out of memory: served without its name, the user would pass the rules, limits,
         * blocks and quota that name it (a rule sees no user). Closed, as a check that
         * cannot be answered is (AUTHQ_CLOSE): never a wrong answer.
         */
        close_after_replies(sh, c, END_RESOURCE);
        return false;
    }
    /* HTTP has no status of its own for good credentials: the request goes on. */
    if (c->version == HTTPCONNECT_VERSION)
        return true;
    hs_queue(sh, c, r, auth_reply(r, AUTH_STATUS_OK));
    c->hs->p.s5.phase = SOCKS5_PHASE_REQUEST;
    return true;
}

/*
 * A locked pair or address is refused at once, before the cache and crypt(3): a
 * guesser gets no verdict on its password and costs no hash. true: refused.
 */
static bool
auth_locked(struct shard *sh, struct conn *c)
{
    enum lockout_scope scope;
    if (!sh->lockout || !lockout_locked(sh->lockout, &sh->pol->lockout, &c->client,
                                        c->hs->cred.user, sh->now_s, &scope))
        return false;
    STAT_INC(sh->st.auth_locked_refusals[scope]);
    take_user(c);
    auth_refuse(sh, c, END_AUTH_LOCKED);
    return true;
}

/*
 * username_params: "alice-session-ab12[-ttl-600][-fault-refused]" is checked, cached and
 * ruled on as "alice"; the session waits in the context for the egress choice, the faults
 * in c->fault for a rule that allows them. false: a name with a keyword but not the
 * syntax, refused like a wrong password.
 */
static bool
take_session(struct conn *c)
{
    struct hs *h = c->hs;
    size_t base;
    struct egress_session s;
    struct fault_set asked;
    char why[400];
    h->sess_id[0] = '\0';
    h->sess_ttl_s = 0;
    /* "-fault-NAME" comes last: cut it off first (kept until a rule allows it, fault.h). */
    if (fault_user_params(h->cred.user, &base, &asked, why, sizeof(why)) < 0)
        return false;
    fault_ask(c, &asked);
    h->cred.user[base] = '\0';
    h->cred.ulen = (uint8_t)base;
    if (egress_user_params(h->cred.user, &base, &s) < 0)
        return false;
    if (!s.id_len)
        return true;
    memcpy(h->sess_id, s.id, s.id_len);
    h->sess_id[s.id_len] = '\0';
    h->sess_ttl_s = s.ttl_s;
    h->cred.user[base] = '\0';
    h->cred.ulen = (uint8_t)base;
    return true;
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
    handshake_fail(sh, c, SOCKS5_REP_HOST_UNREACH, END_BAD_NAME);
}

/*
 * The credentials in the context (RFC 1929's or HTTP Basic's), the same users, cache,
 * worker and lockout for both; the password is wiped here. true: good, go on now;
 * false: refused, closed, or sent to the auth worker (on_auth() gives the verdict).
 */
static bool
auth_start(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    /* A name with the session keyword but not its syntax counts, as sent, like a
     * wrong password. */
    if (sh->pol->username_params && !take_session(c)) {
        sodium_memzero(h->cred.pass, sizeof(h->cred.pass));
        auth_answer(sh, c, false);
        return false;
    }
    if (auth_locked(sh, c)) {
        sodium_memzero(h->cred.pass, sizeof(h->cred.pass));
        return false;
    }
    enum authq_result res =
        authq_check(sh, (uint32_t)(h - sh->hsp.slab), conn_ref(c, 0), &c->client, &h->cred);
    sodium_memzero(h->cred.pass, sizeof(h->cred.pass));
    if (res == AUTHQ_PENDING) {
        /*
         * Nothing more is read until the worker answers (on_auth). The
         * hang-up watch ends a client that leaves meanwhile, and with it its
         * check, at once instead of at the handshake timeout.
         */
        c->hs_flags |= HSF_AUTH_WAIT;
        conn_watch_hangup(sh, c);
        return false;
    }
    if (res == AUTHQ_CLOSE) {
        /* No verdict to give: a close, never a wrong answer. */
        close_after_replies(sh, c, END_RESOURCE);
        return false;
    }
    return auth_answer(sh, c, res == AUTHQ_OK);
}

/*
 * HTTP CONNECT (http_connect): one header. With auth = password it must carry Basic
 * credentials of a user, checked as RFC 1929's are; then the request phase, as for a
 * SOCKS CONNECT. Bytes after the header stay for the target.
 */
static void
parse_http(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    ssize_t r =
        httpconnect_feed(&h->p.hc, &h->cred, h->in + h->in_off, (size_t)(h->in_len - h->in_off));
    if (r == 0) {
        hs_need_more(sh, c);
        return;
    }
    if (r < 0) {
        http_refuse(sh, c, (unsigned)-r, END_PROTOCOL);
        return;
    }
    /* The header carried the password in base64: it goes with it. */
    sodium_memzero(h->in + h->in_off, (size_t)r);
    h->in_off = (uint16_t)(h->in_off + r);
    c->cmd = SOCKS5_CMD_CONNECT;
    if (sh->pol->n_auth) {
        /* Only Basic: a GSS-API-only server has no way in for HTTP clients. */
        if (h->p.hc.auth != HTTPCONNECT_AUTH_BASIC || !sh->pol->auth_password) {
            /* None (the usual first try of a browser) or not a user's: the challenge. */
            sodium_memzero(&h->cred, sizeof(h->cred));
            STAT_INC(sh->st.auth_failures);
            auth_refuse(sh, c, END_AUTH_FAILED);
            return;
        }
        if (!auth_start(sh, c))
            return;
    } else {
        sodium_memzero(&h->cred, sizeof(h->cred));
    }
    sh->hsp.on_request(sh, c);
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
    c->cmd = h->p.s4.cmd == SOCKS4_CMD_BIND ? SOCKS5_CMD_BIND : SOCKS5_CMD_CONNECT;
    sh->hsp.on_request(sh, c);
    return false;
}

static void hs_parse(struct shard *sh, struct conn *c);

/* Method 0x01 is done (gsshs.h): the request follows, left[0..n) its first bytes. */
static void
gss_done(struct shard *sh, struct conn *c, const uint8_t *left, size_t n)
{
    struct hs *h = c->hs;
    if (n > HS_IN_SIZE) {
        conn_close(sh, c, END_PROTOCOL);
        return;
    }
    memcpy(h->in, left, n);
    h->in_len = (uint16_t)n;
    h->in_off = 0;
    h->p.s5.phase = SOCKS5_PHASE_REQUEST;
    if (n)
        hs_parse(sh, c);
    else
        hs_read(sh, c);
}

/*
 * The greeting's faults (fault.h): the method selection delayed, no acceptable method
 * (05 ff, then close), or both (a slow refusal). true: refused.
 */
static bool
greeting_fault(struct shard *sh, struct conn *c)
{
    struct conn_fault *f = fault_before_request(sh, c, NULL);
    if (!f)
        return false;
    if (fault_has(&f->f, FAULT_DELAY_METHOD))
        fault_delay(sh, c, FAULT_DELAY_METHOD);
    if (fault_has(&f->f, FAULT_NO_METHOD)) {
        uint8_t m[2];
        fault_acted(sh, c, FAULT_NO_METHOD);
        c->hs_flags |= HSF_CLOSE_AFTER;
        c->end = END_FAULT;
        hs_queue(sh, c, m, socks5_method_reply(m, SOCKS5_METHOD_REJECT));
        return true;
    }
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
            /* No name to count or log: ULEN or PLEN 0, or a NUL in one. */
            STAT_INC(sh->st.auth_failures);
            auth_refuse(sh, c, END_AUTH_FAILED);
            return false;
        }
        h->in_off = (uint16_t)(h->in_off + r);
        return auth_start(sh, c);
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
        c->hs_flags |= HSF_CLOSE_AFTER;
        c->end = s5->auth_required ? END_AUTH_FAILED : END_REPLY_ERR;
        if (s5->auth_required)
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
    if (before == SOCKS5_PHASE_GREETING && s5->method == SOCKS5_METHOD_GSSAPI) {
        /* RFC 1961 runs on its own buffers (gsshs.c): what followed the greeting goes along. */
        const uint8_t *rest = h->in + h->in_off;
        size_t n = (size_t)(h->in_len - h->in_off);
        h->in_len = h->in_off = 0;
        gsshs_start(sh, c, rest, n, gss_done);
        return false;
    }
    if (before == SOCKS5_PHASE_GREETING) {
        /* (The GSS-API method, above, writes its own selection: no greeting fault.) */
        if (sh->pol->rules_fault && greeting_fault(sh, c))
            return false;
        uint8_t m[2];
        hs_queue(sh, c, m, socks5_method_reply(m, s5->method));
        return true;
    }
    /* The request is complete: stop reading until the relay starts. */
    c->cmd = s5->cmd;
    sh->hsp.on_request(sh, c);
    return false;
}

/*
 * The PROXY header (HSF_PROXY), read like the SOCKS messages and within the same
 * handshake timeout. Its client replaces the balancer in c->client (kept in c->via),
 * and the handshake count moves with it. true: SOCKS bytes follow it, parse on.
 */
static bool
proxy_header(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    struct proxyproto pp;
    ssize_t r = proxyproto_feed(&pp, h->in + h->in_off, (size_t)(h->in_len - h->in_off));
    if (r == 0) {
        hs_need_more(sh, c);
        return false;
    }
    if (r < 0) {
        conn_close(sh, c, END_PROXY_BAD);
        return false;
    }
    h->in_off = (uint16_t)(h->in_off + r);
    /* A health check: the balancer is the client and wants nothing served. */
    if (pp.local) {
        conn_close(sh, c, END_PROXY_LOCAL);
        return false;
    }
    c->hs_flags &= (uint8_t)~HSF_PROXY;
    conn_client_put(sh, c, CLIENT_HS);
    c->via = c->client;
    c->client = pp.src;
    addr_unmap(&c->client);
    conn_client_take(sh, c, CLIENT_HS, 0);
    if (h->in_off == h->in_len) {
        hs_need_more(sh, c);
        return false;
    }
    return true;
}

/* Parse what has arrived; act on each complete message. */
static void
hs_parse(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    if ((c->hs_flags & HSF_PROXY) && !proxy_header(sh, c))
        return;
    if (c->version == 0) {
        /* One port, every version: the first byte says which (an HTTP method starts
         * with an upper-case letter). */
        uint8_t b = h->in[h->in_off];
        c->version = b;
        if (c->version == SOCKS5_VERSION) {
            socks5_init(&h->p.s5);
            socks5_set_methods(&h->p.s5, sh->pol->auth_methods, sh->pol->n_auth);
        } else if (b >= 'A' && b <= 'Z' && sh->pol->http_connect) {
            c->version = HTTPCONNECT_VERSION;
        } else if (c->version != SOCKS4_VERSION) {
            /* 'H' would log as an HTTP client: with http_connect off it is none. */
            if (c->version == HTTPCONNECT_VERSION)
                c->version = 0;
            conn_close(sh, c, END_PROTOCOL);
            return;
        }
    }
    if (c->version == HTTPCONNECT_VERSION) {
        parse_http(sh, c);
        return;
    }
    if (c->version == SOCKS4_VERSION) {
        parse_v4(sh, c);
        return;
    }
    while (parse_v5(sh, c))
        ;
}

static void
on_auth(struct shard *sh, struct conn *c, unsigned tag, bool ok)
{
    (void)tag;
    if (c->state != CONN_HANDSHAKE || !(c->hs_flags & HSF_AUTH_WAIT))
        return;
    c->hs_flags &= (uint8_t)~HSF_AUTH_WAIT;
    if (!auth_answer(sh, c, ok))
        return;
    if (c->version == HTTPCONNECT_VERSION)
        sh->hsp.on_request(sh, c);
    else
        hs_parse(sh, c);
}

void
handshake_on_hangup(struct shard *sh, struct conn *c, int events)
{
    bool waits = c->state == CONN_RESOLVE || c->state == CONN_CONNECT ||
                 c->state == CONN_BIND_WAIT ||
                 (c->state == CONN_HANDSHAKE && (!c->hs || (c->hs_flags & HSF_AUTH_WAIT)));
    /* Gone, unless it left bytes for us first: a client that pipelines its data and
     * then half-closes is served like any other. */
    if (waits && !handshake_has_unread(c) && conn_client_left(c, events))
        conn_close(sh, c, END_CLIENT_EOF);
}

void
handshake_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    struct hs *h = c->hs;
    int res = cqe->res;
    if (c->state == CONN_CLOSING)
        return;
    switch (ud_op(cqe->user_data)) {
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
            /* A reply going out a byte at a time (fault split): the pause, then the next;
             * a delay not yet served (a reply queued behind a pipelining client's earlier
             * ones, still being written) comes first, not replaced by the pause. */
            if (c->fault && c->fault->split_on && !c->fault->wait_ms)
                c->fault->wait_ms = c->fault->f.arg[FAULT_SPLIT];
            hs_flush(sh, c);
            return;
        }
        if (c->fault)
            c->fault->split_on = false;
        if (c->hs_flags & HSF_CLOSE_AFTER) {
            conn_close(sh, c, (enum conn_end)c->end);
            return;
        }
        maybe_done(sh, c);
        return;
    case OP_GSS_READ:
    case OP_GSS_WRITE:
        gsshs_on_cqe(sh, c, cqe);
        return;
    case OP_FAULT:
        /* A fault's delay or pause is over (or cancelled by the close): write on. */
        fault_timer_done(c, 0);
        c->hs_flags &= (uint8_t)~HSF_WRITING;
        if ((c->hs_flags & HSF_CLOSE_AFTER) && h->out_off == h->out_len) {
            conn_close(sh, c, (enum conn_end)c->end); /* truncate_0: nothing was to go out */
            return;
        }
        hs_flush(sh, c);
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
        maybe_done(sh, c);
        return;
    default:
        return;
    }
}

/* Handshake timeout: the slot layer's default (close). */
const struct conn_phase handshake_phase = {
    .name = "handshake",
    .on_cqe = handshake_on_cqe,
    .on_auth = on_auth,
    .on_gss = gsshs_on_answer,
    .on_hangup = handshake_on_hangup,
    .release = handshake_release,
};
