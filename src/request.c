/*
 * request.c - the request phase: from a complete request to a connected
 * target (CONNECT), a listening socket (BIND, bind.c) or an association
 * (UDP ASSOCIATE, udp.c).
 *
 * Shard thread only. The resolve ladder: an address in the request (the
 * parsers turn IP literals into addresses), then the hosts table and the
 * RFC 6761 localhost names, then DNS (dns.c, answered through
 * conn_resolved()). Every address is checked against the rules before it is
 * tried, so a name cannot lead into a denied range, and tried in turn until
 * one connects; connect_timeout bounds all of it. The outcome is answered
 * through the handshake (handshake_fail(), handshake_succeed()).
 */
#include "request.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "bind.h"
#include "dns.h"
#include "handshake.h"
#include "egress.h"
#include "hosts.h"
#include "outbound.h"
#include "relay.h"
#include "policy.h"
#include "shard_types.h"
#include "udp.h"

static void
deny(struct shard *sh, struct conn *c)
{
    handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_DENIED);
}

static void
fail(struct shard *sh, struct conn *c, uint8_t rep)
{
    handshake_fail(sh, c, rep, END_REPLY_ERR);
}

/* Does the admitting rule's family (egress.h) let a target of family be tried? */
static bool
family_allowed(const struct shard *sh, int rule, int family)
{
    const struct egress_rule *er = acl_rule_data(sh->pol->acl, rule);
    if (!er)
        return true;
    if (er->family == EGRESS_FAMILY_V4)
        return family == AF_INET;
    if (er->family == EGRESS_FAMILY_V6)
        return family == AF_INET6;
    return true;
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
        int rule;
        if (!conn_allowed(sh, c, &plain, c->host, c->port, &rule)) {
            denied = true;
            continue;
        }
        c->dest = plain;
        if (!family_allowed(sh, rule, a->sa.sa_family)) {
            h->last_err = -EAFNOSUPPORT;
            continue;
        }
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
        /* Its source address and the admitting rule's socket settings (outbound.h). */
        int ret = outbound_prepare(sh, c, fd, a->sa.sa_family, rule, OUTBOUND_CONNECT, NULL);
        if (ret < 0) {
            close(fd);
            h->last_err = ret;
            continue;
        }
        c->tfd = fd;
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CONNECT, 0);
        io_uring_prep_connect(sqe, fd, &a->sa, addr_len(&a->sa));
        return;
    }
    if (denied && !h->last_err) {
        deny(sh, c);
        return;
    }
    if (h->last_err == -EAFNOSUPPORT) {
        /* No source address of the target's family: no route from here to there. */
        fail(sh, c, c->host ? SOCKS5_REP_HOST_UNREACH : SOCKS5_REP_NET_UNREACH);
        return;
    }
    fail(sh, c, socks5_rep_from_errno(h->last_err ? h->last_err : -EHOSTUNREACH));
}

/* The addresses of the request are known: go on with its command. */
static void
addrs_ready(struct shard *sh, struct conn *c)
{
    if (c->cmd == SOCKS5_CMD_BIND)
        bind_start(sh, c);
    else
        connect_next(sh, c);
}

void
request_start(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    const struct socks_dest *d = handshake_dest(c);

    conn_enter(c, &request_phase);
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
    if (c->cmd == SOCKS5_CMD_UDP) {
        udp_associate(sh, c);
        return;
    }

    conn_timer_set(sh, c, TL_CONNECT);
    h->n_addrs = h->next_addr = 0;
    if (d->atyp == SOCKS5_ATYP_IPV4 || d->atyp == SOCKS5_ATYP_IPV6) {
        h->addrs[0] = c->dest;
        h->n_addrs = 1;
    } else {
        /* A name, never an address in disguise: the parsers turned IP literals into
         * addresses and refused names with ports, brackets or zones. */
        h->n_addrs = (uint8_t)hosts_lookup(sh->hosts, d->u.name, d->port, h->addrs, HS_MAX_ADDRS);
        if (h->n_addrs == 0) {
            c->state = CONN_RESOLVE;
            c->hs_flags |= HSF_DNS;
            dns_resolve(sh, d->u.name, d->port, conn_ref(c, 0));
            return;
        }
    }
    addrs_ready(sh, c);
}

static void
on_resolved(struct shard *sh, struct conn *c, unsigned tag, int err,
            const union sockaddr_inx *addrs, unsigned n)
{
    (void)tag;
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

/* connect_timeout: give up the name, or cancel the connect (answered when it completes). */
static void
on_timeout(struct shard *sh, struct conn *c, enum tlist_id tl)
{
    (void)tl;
    if (c->state == CONN_RESOLVE) {
        c->hs_flags &= (uint8_t)~HSF_DNS;
        fail(sh, c, SOCKS5_REP_HOST_UNREACH);
    } else if (c->state == CONN_CONNECT) {
        c->hs_flags |= HSF_TIMED_OUT;
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL, 0);
        io_uring_prep_cancel64(sqe, conn_ud(c, OP_CONNECT, 0), 0);
    } else {
        conn_close(sh, c, END_HS_TIMEOUT);
    }
}

static void
on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    if (ud_op(cqe->user_data) != OP_CONNECT) {
        /* A reply of the handshake still being written (a pipelining client's). */
        handshake_on_cqe(sh, c, cqe);
        return;
    }
    if (c->state == CONN_CLOSING)
        return;
    if (res == 0) {
        union sockaddr_inx bnd;
        socklen_t len = sizeof(bnd);
        if (getsockname(c->tfd, &bnd.sa, &len) == -1)
            bnd.sa.sa_family = AF_UNSPEC;
        c->src = bnd; /* where the tunnel left from, for the access log */
        addr_unmap(&c->src);
        handshake_succeed(sh, c, &bnd, relay_start, HS_FORWARD_UNREAD);
        return;
    }
    close(c->tfd);
    c->tfd = -1;
    if (c->hs_flags & HSF_TIMED_OUT) {
        fail(sh, c, SOCKS5_REP_TTL_EXPIRED);
        return;
    }
    c->hs->last_err = res;
    connect_next(sh, c);
}

void
request_tick(struct shard *sh)
{
    /* Resolves and connects are watched once they have lasted a second: most finish
     * sooner, and a watch costs an SQE and a CQE. */
    for (struct conn *c = conn_timer_first(sh, TL_CONNECT); c; c = conn_timer_next(sh, c)) {
        if (sh->now_ds - c->stamp_ds < 10)
            break;
        if (c->state == CONN_RESOLVE || c->state == CONN_CONNECT)
            conn_watch_hangup(sh, c);
    }
}

const struct conn_phase request_phase = {
    .name = "request",
    .on_cqe = on_cqe,
    .on_timeout = on_timeout,
    .on_resolved = on_resolved,
    .on_hangup = handshake_on_hangup,
    .release = handshake_release,
};
