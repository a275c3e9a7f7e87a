/*
 * chain.c - the chain phase (chain.h): a tunnel through a parent proxy.
 *
 * One op is in flight at a time (the parent's connect, a send, a peek), so a
 * failure or the deadline only has to cancel that one and finish when its
 * completion comes back. A peek is followed by a plain recv() of exactly the
 * bytes the handshake used: they are in the socket, so it never waits.
 */
#include "chain.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handshake.h"
#include "outbound.h"
#include "policy.h"
#include "relay.h"
#include "shard_types.h"
#include "socks5.h"
#include "via.h"

struct chain {
    struct via_list *vl; /* a reference of ours */
    struct via_target t;
    struct via_hs vh;
    int rule;
    uint64_t gen;     /* the policy generation rule indexes */
    int last_err;     /* -errno of the last parent's failure, 0: none or a bad answer */
    uint8_t next;     /* the next parent to consider */
    uint8_t pass;     /* 0: parents not known down; 1: all were, so they are tried anyway */
    uint8_t busy;     /* the op in flight (OP_CONNECT, OP_UP_SEND, OP_UP_PEEK), 0: none */
    uint8_t fail_rep; /* decided: reply with this once busy is 0 (0xff: not decided) */
    uint8_t fail_end; /* and end with this */
    bool tried;       /* some parent was tried */
    uint16_t out_len, out_off;
    uint16_t in_len; /* bytes of the parent's reply taken from the socket so far */
    uint8_t out[VIA_MSG_MAX];
    uint8_t in[VIA_REPLY_MAX];
};

#define NOT_DECIDED 0xffu

/* -- the shard's memory of parents that failed: by address and ident (via_ident()) */

static struct via_dead *
dead_find(struct shard *sh, const struct via_list *vl, unsigned i)
{
    const union sockaddr_inx *a = via_addr(vl, i);
    uint32_t ident = via_ident(vl, i);
    for (unsigned k = 0; k < SHARD_VIA_DEAD; k++) {
        const struct via_dead *d = &sh->via_dead[k];
        if (d->addr.sa.sa_family == a->sa.sa_family && d->ident == ident &&
            addr_same_ip(&d->addr, a) && addr_port(&d->addr) == addr_port(a))
            return &sh->via_dead[k];
    }
    return NULL;
}

static bool
parent_down(struct shard *sh, const struct via_list *vl, unsigned i)
{
    const struct via_dead *d = dead_find(sh, vl, i);
    return d && (int32_t)(d->until_ds - sh->now_ds) > 0;
}

static void
parent_failed(struct shard *sh, const struct via_list *vl, unsigned i)
{
    unsigned retry_ds = sh->pol->via_retry_s * 10;
    STAT_INC(sh->st.via_parent_failures);
    if (!retry_ds)
        return;
    struct via_dead *d = dead_find(sh, vl, i);
    if (!d) {
        /* A free entry, else the one that expires first. */
        d = &sh->via_dead[0];
        for (unsigned k = 0; k < SHARD_VIA_DEAD && d->addr.sa.sa_family; k++)
            if (!sh->via_dead[k].addr.sa.sa_family ||
                (int32_t)(sh->via_dead[k].until_ds - d->until_ds) < 0)
                d = &sh->via_dead[k];
        d->addr = *via_addr(vl, i);
        d->ident = via_ident(vl, i);
    }
    d->until_ds = sh->now_ds + retry_ds;
}

static void
parent_up(struct shard *sh, const struct via_list *vl, unsigned i)
{
    struct via_dead *d = dead_find(sh, vl, i);
    if (d)
        d->addr.sa.sa_family = 0;
}

/* -- the phase */

static void
chain_free(struct conn *c)
{
    struct chain *ch = c->hs->chain;
    if (!ch)
        return;
    via_list_put(ch->vl);
    free(ch);
    c->hs->chain = NULL;
}

/* The client's answer; the chain is over. */
static void
finish_fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    chain_free(c);
    handshake_fail(sh, c, rep, why);
}

/* Decide the failure; it is answered once the op in flight has come back. */
static void
decide_fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    struct chain *ch = c->hs->chain;
    ch->fail_rep = rep;
    ch->fail_end = (uint8_t)why;
    if (!ch->busy) {
        finish_fail(sh, c, rep, why);
        return;
    }
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL, 0);
    io_uring_prep_cancel64(sqe, conn_ud(c, ch->busy, 0), 0);
}

static void
op_start(struct conn *c, unsigned op)
{
    c->hs->chain->busy = (uint8_t)op;
}

static void
send_out(struct shard *sh, struct conn *c)
{
    struct chain *ch = c->hs->chain;
    op_start(c, OP_UP_SEND);
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_UP_SEND, 0);
    io_uring_prep_send(sqe, c->tfd, ch->out + ch->out_off, (unsigned)(ch->out_len - ch->out_off),
                       MSG_NOSIGNAL);
}

static void
peek_in(struct shard *sh, struct conn *c)
{
    struct chain *ch = c->hs->chain;
    op_start(c, OP_UP_PEEK);
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_UP_PEEK, 0);
    io_uring_prep_recv(sqe, c->tfd, ch->in + ch->in_len, (unsigned)(VIA_REPLY_MAX - ch->in_len),
                       MSG_PEEK);
}

static void next_parent(struct shard *sh, struct conn *c);

/* The parent in progress failed: remembered, its socket closed, the next one. */
static void
parent_broken(struct shard *sh, struct conn *c, int err)
{
    struct chain *ch = c->hs->chain;
    parent_failed(sh, ch->vl, ch->vh.parent);
    ch->last_err = err; /* 0: it answered, but wrongly */
    close(c->tfd);
    c->tfd = -1;
    next_parent(sh, c);
}

/*
 * A reload came while parents were being tried: the request is decided again under
 * the new rules (its rule index, its outbound settings and its parents are those of
 * the new snapshot), and the parents tried from the first. false: answered (denied,
 * or its rule now has no parents: a tunnel decided for a parent does not go direct).
 */
static bool
redecide(struct shard *sh, struct conn *c)
{
    struct chain *ch = c->hs->chain;
    int rule;
    ch->gen = sh->pol->gen;
    if (!conn_allowed(sh, c, c->dest.sa.sa_family ? &c->dest : NULL, c->host, c->port, &rule)) {
        finish_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_DENIED);
        return false;
    }
    struct via_list *via = policy_rule_via(sh->pol, rule);
    if (!via) {
        finish_fail(sh, c, SOCKS5_REP_GENERAL, END_PARENT);
        return false;
    }
    via_list_get(via);
    via_list_put(ch->vl);
    ch->vl = via;
    ch->rule = rule;
    ch->next = 0;
    ch->pass = 0;
    ch->tried = false;
    return true;
}

/*
 * The next parent to try from ch->next: in order, those not known down first;
 * when every one is down, all of them again in order (a parent that has come
 * back is found, and a client is not refused on old news alone).
 */
static void
next_parent(struct shard *sh, struct conn *c)
{
    struct chain *ch = c->hs->chain;
    if (ch->gen != sh->pol->gen && !redecide(sh, c))
        return;
    unsigned n = via_count(ch->vl);
    for (;;) {
        if (ch->next >= n) {
            if (ch->pass == 0 && !ch->tried) {
                ch->pass = 1;
                ch->next = 0;
                continue;
            }
            break;
        }
        unsigned i = ch->next++;
        const union sockaddr_inx *pa = via_addr(ch->vl, i);
        if (ch->pass == 0 && parent_down(sh, ch->vl, i)) {
            STAT_INC(sh->st.via_skipped);
            continue;
        }
        if (policy_reaches_self(sh->o, pa)) {
            /* Our own listener as a parent: every tunnel would chain into another. */
            ch->last_err = -ELOOP;
            continue;
        }
        ch->out_off = 0;
        ch->in_len = 0;
        ch->out_len = (uint16_t)via_hs_start(&ch->vh, ch->vl, i, &ch->t, ch->out);
        if (ch->out_len == 0)
            continue; /* it cannot carry this target (SOCKS4 and a name) */
        int fd = outbound_socket(sh, c, pa->sa.sa_family, ch->rule, OUTBOUND_CONNECT);
        if (fd < 0) {
            ch->last_err = fd;
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM)
                break;
            continue;
        }
        ch->tried = true;
        c->tfd = fd;
        op_start(c, OP_CONNECT);
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CONNECT, 0);
        io_uring_prep_connect(sqe, fd, &pa->sa, addr_len(&pa->sa));
        return;
    }
    /* None left: the last one's error; none able to carry the target: its address type. */
    uint8_t rep = ch->last_err ? socks5_rep_from_errno(ch->last_err)
                  : ch->tried  ? SOCKS5_REP_GENERAL
                               : SOCKS5_REP_ATYP_UNSUPP;
    finish_fail(sh, c, rep, END_PARENT);
}

/* The parent connected the target: reply to the client and relay. */
static void
succeed(struct shard *sh, struct conn *c)
{
    struct chain *ch = c->hs->chain;
    STAT_INC(sh->st.via_tunnels);
    parent_up(sh, ch->vl, ch->vh.parent);
    union sockaddr_inx local;
    socklen_t len = sizeof(local);
    if (getsockname(c->tfd, &local.sa, &len) == -1)
        local.sa.sa_family = AF_UNSPEC;
    c->src = local; /* where the tunnel left from towards the parent, for the access log */
    addr_unmap(&c->src);
    /* Our reference on the parents passes to the connection, for its log line. */
    c->parent = via_parent_of(ch->vl, ch->vh.parent);
    ch->vl = NULL;
    /* The address the target sees, when the parent said it; else ours. */
    union sockaddr_inx bnd = ch->vh.bnd.sa.sa_family ? ch->vh.bnd : local;
    chain_free(c);
    handshake_succeed(sh, c, &bnd, relay_start, HS_FORWARD_UNREAD);
}

/* The parent's reply bytes: ch->in_len kept, n more peeked behind them. */
static void
on_peek(struct shard *sh, struct conn *c, int n)
{
    struct chain *ch = c->hs->chain;
    if (n <= 0) {
        parent_broken(sh, c, n == 0 ? -ECONNRESET : n);
        return;
    }
    size_t used, out_len;
    size_t have = (size_t)ch->in_len + (size_t)n;
    enum via_res r = via_hs_feed(&ch->vh, ch->in, have, &used, ch->out, &out_len);
    if (r == VIA_BROKEN) {
        parent_broken(sh, c, 0); /* its socket is dropped unread */
        return;
    }
    if (r == VIA_REFUSED) {
        /* The parent is fine: its answer about the target is the client's. */
        parent_up(sh, ch->vl, ch->vh.parent);
        finish_fail(sh, c, ch->vh.rep, END_REPLY_ERR);
        return;
    }
    /*
     * Take from the socket what the handshake used: all of it while incomplete, else the
     * message's bytes past those kept (a message is longer than the part of it that was
     * incomplete, so used > in_len; anything else is a parser bug, not a read past in[]).
     */
    if (r != VIA_MORE && used <= ch->in_len) {
        parent_broken(sh, c, -EPROTO);
        return;
    }
    size_t take = r == VIA_MORE ? (size_t)n : used - ch->in_len;
    if (recv(c->tfd, ch->in + ch->in_len, take, MSG_DONTWAIT) != (ssize_t)take) {
        parent_broken(sh, c, -EIO);
        return;
    }
    ch->in_len = r == VIA_MORE ? (uint16_t)have : 0;
    switch (r) {
    case VIA_MORE:
        if (ch->in_len >= VIA_REPLY_MAX) {
            parent_broken(sh, c, 0);
            return;
        }
        peek_in(sh, c);
        return;
    case VIA_SEND:
        ch->out_len = (uint16_t)out_len;
        ch->out_off = 0;
        send_out(sh, c);
        return;
    case VIA_AGAIN:
        peek_in(sh, c); /* an interim response: the final one follows */
        return;
    case VIA_OK:
        succeed(sh, c);
        return;
    default: /* VIA_REFUSED, VIA_BROKEN: answered above */
        return;
    }
}

static void
on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    unsigned op = ud_op(cqe->user_data);
    if (op != OP_CONNECT && op != OP_UP_SEND && op != OP_UP_PEEK) {
        /* A reply of the handshake still being written (a pipelining client's). */
        handshake_on_cqe(sh, c, cqe);
        return;
    }
    if (c->state == CONN_CLOSING)
        return; /* c->tfd is closed when the slot is freed */
    struct chain *ch = c->hs->chain;
    int res = cqe->res;
    ch->busy = 0;
    if (ch->fail_rep != NOT_DECIDED) {
        finish_fail(sh, c, ch->fail_rep, (enum conn_end)ch->fail_end);
        return;
    }
    switch (op) {
    case OP_CONNECT:
        if (res < 0) {
            parent_broken(sh, c, res);
            return;
        }
        send_out(sh, c);
        return;
    case OP_UP_SEND:
        if (res <= 0) {
            parent_broken(sh, c, res < 0 ? res : -EPIPE);
            return;
        }
        ch->out_off = (uint16_t)(ch->out_off + res);
        if (ch->out_off < ch->out_len)
            send_out(sh, c);
        else
            peek_in(sh, c);
        return;
    default:
        on_peek(sh, c, res);
        return;
    }
}

/*
 * connect_timeout: the parent in progress took too long, which counts against
 * it; answered TTL expired once its op is back. Any other list (the
 * handshake's, while a reply is written): close.
 */
static void
on_timeout(struct shard *sh, struct conn *c, enum tlist_id tl)
{
    struct chain *ch = c->hs ? c->hs->chain : NULL;
    if (tl != TL_CONNECT || !ch) {
        conn_close(sh, c, END_HS_TIMEOUT);
        return;
    }
    if (ch->fail_rep != NOT_DECIDED)
        return;
    /* Too slow counts against the parent, unless it only waits for the target. */
    if (ch->busy && !(ch->busy == OP_UP_PEEK && via_hs_asked_target(&ch->vh)))
        parent_failed(sh, ch->vl, ch->vh.parent);
    decide_fail(sh, c, SOCKS5_REP_TTL_EXPIRED, END_PARENT);
}

static void
release(struct shard *sh, struct conn *c)
{
    if (c->hs)
        chain_free(c);
    handshake_release(sh, c);
}

void
chain_start(struct shard *sh, struct conn *c, struct via_list *vl, int rule,
            const union sockaddr_inx *dest)
{
    struct chain *ch = malloc(sizeof(*ch));
    if (!ch) {
        handshake_fail(sh, c, SOCKS5_REP_GENERAL, END_RESOURCE);
        return;
    }
    memset(ch, 0, offsetof(struct chain, out));
    via_list_get(vl);
    ch->vl = vl;
    ch->rule = rule;
    ch->gen = sh->pol->gen;
    ch->fail_rep = NOT_DECIDED;
    ch->t.port = c->port;
    if (!dest) {
        ch->t.kind = VIA_T_NAME;
        ch->t.name = c->host;
    } else if (dest->sa.sa_family == AF_INET) {
        ch->t.kind = VIA_T_IPV4;
        memcpy(ch->t.addr, &dest->v4.sin_addr, 4);
    } else {
        ch->t.kind = VIA_T_IPV6;
        memcpy(ch->t.addr, &dest->v6.sin6_addr, 16);
    }
    c->hs->chain = ch;
    c->state = CONN_CONNECT;
    conn_enter(c, &chain_phase);
    next_parent(sh, c);
}

const struct conn_phase chain_phase = {
    .name = "chain",
    .on_cqe = on_cqe,
    .on_timeout = on_timeout,
    .on_hangup = handshake_on_hangup,
    .release = release,
};
