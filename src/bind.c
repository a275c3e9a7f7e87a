/*
 * bind.c - the BIND phase: listen on the local address that faces the
 * expected peer, tell the client where (first reply), accept exactly one
 * connection from that peer, tell the client who (second reply), relay.
 *
 * Shard thread only. DST.ADDR names the peer expected to connect; it never
 * decides where to listen. The wait holds no handshake context: the accept
 * is posted once the first reply is out, without an address buffer (the
 * peer comes from getpeername()), and the second reply is written at once
 * (handshake_reply_now()), unless the client pipelined bytes after its
 * request, which keep the context until they can reach the peer. A client
 * that hangs up while it waits is closed at once (its port comes back).
 */
#include "bind.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handshake.h"
#include "limit.h"
#include "outbound.h"
#include "relay.h"
#include "policy.h"
#include "shard_types.h"
#include "sock.h"

static void
fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    conn_client_put(sh, c, CLIENT_BIND);
    handshake_fail(sh, c, rep, why);
}

/* The first reply is out: wait for the peer, and for the client's hang-up. */
static void
bind_wait(struct shard *sh, struct conn *c)
{
    conn_enter(c, &bind_phase);
    c->state = CONN_BIND_WAIT;
    conn_timer_set(sh, c, TL_BIND);
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_BIND_ACCEPT, 0);
    io_uring_prep_accept(sqe, c->tfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    conn_watch_hangup(sh, c);
}

void
bind_start(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    const union sockaddr_inx *want = &h->addrs[0];
    union sockaddr_inx local;
    socklen_t len = sizeof(local);
    int fam = want->sa.sa_family;

    int rule;
    if (!conn_allowed(sh, c, addr_is_any(want) ? NULL : want, c->host, c->port, &rule)) {
        handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_DENIED);
        return;
    }
    if (handshake_fault(sh, c, rule))
        return;
    enum conn_end over = limit_admit(sh, c, rule, false);
    if (over != END_NONE) {
        handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, over);
        return;
    }
    /* Each waiting BIND holds a port (of a bind_ports range, perhaps) and two fds. */
    if (!conn_client_take(sh, c, CLIENT_BIND, sh->pol->client_max_binds)) {
        STAT_INC(sh->st.client_limited);
        handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_CLIENT_LIMIT);
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
            fail(sh, c, socks5_rep_from_errno(err), END_REPLY_ERR);
            return;
        }
        close(u);
    } else if (conn_local(c, &local) < 0 || local.sa.sa_family != fam) {
        /* Any peer, and the client came in over the other family: listen on the wildcard. */
        memset(&local, 0, sizeof(local));
        local.sa.sa_family = (sa_family_t)fam;
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        fail(sh, c, socks5_rep_from_errno(-errno), END_REPLY_ERR);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* The inbound connection inherits them from its listener. */
    sock_set_liveness(fd, sh->o);
    if (fam == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* An egress pool in force: the peer is to connect to the tunnel's source address. */
    union sockaddr_inx src;
    int ret = outbound_prepare(sh, c, fd, fam, rule, OUTBOUND_LISTEN, &src);
    if (ret == -EAFNOSUPPORT) {
        close(fd);
        fail(sh, c, SOCKS5_REP_NET_UNREACH, END_REPLY_ERR);
        return;
    }
    if (ret == 0 && src.sa.sa_family)
        local = src;
    if (ret == 0)
        ret = sock_bind_range(fd, &local, sh->o->bind_port_lo, sh->o->bind_port_hi);
    len = sizeof(local);
    /* Listening now: a peer that comes before the first reply is out waits in the backlog. */
    if (ret == 0 && (listen(fd, 1) == -1 || getsockname(fd, &local.sa, &len) == -1))
        ret = -errno;
    if (ret < 0) {
        close(fd);
        fail(sh, c, socks5_rep_from_errno(ret), END_REPLY_ERR);
        return;
    }
    c->tfd = fd;
    c->src = local;
    handshake_succeed(sh, c, &local, bind_wait, HS_KEEP_UNREAD);
}

/* BIND answered with an error: through the context, or at once when it is gone. */
static void
bind_fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    if (c->hs) {
        handshake_fail(sh, c, rep, why);
        return;
    }
    handshake_reply_now(sh, c, rep, NULL);
    conn_close(sh, c, why);
}

static void
on_accept(struct shard *sh, struct conn *c, int res)
{
    conn_client_put(sh, c, CLIENT_BIND);
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
        /* Bytes the client pipelined go to the peer after the second reply. */
        handshake_succeed(sh, c, &peer, relay_start, HS_FORWARD_UNREAD);
        return;
    }
    if (!handshake_reply_now(sh, c, SOCKS5_REP_SUCCEEDED, &peer.sa)) {
        conn_close(sh, c, END_CLIENT_ERR);
        return;
    }
    relay_start(sh, c);
}

static void
on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    if (ud_op(cqe->user_data) != OP_BIND_ACCEPT)
        return;
    if (c->state == CONN_CLOSING) {
        if (cqe->res >= 0)
            close(cqe->res); /* accepted while closing: nobody will use it */
        return;
    }
    on_accept(sh, c, cqe->res);
}

/* bind_timeout: cancel the accept; it completes with -ECANCELED and is answered there. */
static void
on_timeout(struct shard *sh, struct conn *c, enum tlist_id tl)
{
    (void)tl;
    c->hs_flags |= HSF_TIMED_OUT;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL, 0);
    io_uring_prep_cancel64(sqe, conn_ud(c, OP_BIND_ACCEPT, 0), 0);
}

const struct conn_phase bind_phase = {
    .name = "bind",
    .on_cqe = on_cqe,
    .on_timeout = on_timeout,
    .on_hangup = handshake_on_hangup,
    .release = handshake_release,
};
