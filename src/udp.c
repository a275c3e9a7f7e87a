/*
 * udp.c - UDP ASSOCIATE: relays datagrams between the client and the
 * remotes it names, on one socket per association.
 *
 * Shard thread only. The socket is AF_INET6 and dual-stack where the host
 * has IPv6 (so IPv4 and IPv6 clients and remotes all go through it), bound
 * to the wildcard address; the reply advertises the address the client's
 * TCP connection came in on (or --udp-advertise, for servers behind NAT).
 * Datagrams from the client's address carry the RFC 1928 header, parsed by
 * the pure socks5_udp_parse(); datagrams from a remote the client has sent
 * to are given a header and passed back; anything else is dropped. One
 * datagram is in flight at a time (receive, then send it on, then receive),
 * which is the back-pressure. The association ends when the control
 * connection does, however long the UDP side is quiet.
 */
#include "udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "dns.h"
#include "hosts.h"
#include "session.h"
#include "shard.h"
#include "sock.h"

/* Remotes the client sent to, whose answers are let through. */
#define UDP_PEERS 16
#define UDP_PAYLOAD_MAX 65535

struct udp_assoc {
    union sockaddr_inx client; /* AF_INET for IPv4 clients, even on a v6 socket */
    bool port_known;           /* client port given in the request or learned */
    bool v6sock;
    bool resolving;            /* a datagram waits in buf for its name */
    uint8_t resolve_seq;       /* which query it waits for: 1..127, in the DNS cookie */
    unsigned n_peers, next_peer;
    union sockaddr_inx peers[UDP_PEERS];
    struct sockaddr_in6 from, to;
    struct msghdr rmsg, smsg;
    struct iovec riov, siov;
    size_t pending_off, pending_len; /* the datagram waiting for DNS */
    char pending_name[256];          /* and the name it was sent to */
    uint8_t ctrl[64];
    uint8_t buf[SOCKS5_UDP_HDR_MAX + UDP_PAYLOAD_MAX];
};

static bool
same_addr(const union sockaddr_inx *a, const union sockaddr_inx *b)
{
    return addr_same_ip(a, b) && addr_port(a) == addr_port(b);
}

static int
open_socket(struct shard *sh, struct udp_assoc *ua)
{
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int zero = 0;
    union sockaddr_inx local;
    memset(&local, 0, sizeof(local));
    if (fd >= 0 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) == 0) {
        ua->v6sock = true;
        local.v6.sin6_family = AF_INET6;
    } else {
        if (fd >= 0)
            close(fd);
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        local.v4.sin_family = AF_INET;
    }
    int err = sock_bind_range(fd, &local, sh->o->udp_port_lo, sh->o->udp_port_hi);
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

int
udp_open(struct shard *sh, struct conn *c, const struct socks_dest *hint, union sockaddr_inx *bnd)
{
    struct udp_assoc *ua = calloc(1, sizeof(*ua));
    union sockaddr_inx tmp;
    socklen_t len;
    if (!ua)
        return -ENOMEM;

    /* Who may send: the request's address if it names one, else the TCP peer. */
    memset(&ua->client, 0, sizeof(ua->client));
    if (hint->atyp == SOCKS5_ATYP_IPV4 && hint->u.v4.s_addr != INADDR_ANY) {
        ua->client.v4.sin_family = AF_INET;
        ua->client.v4.sin_addr = hint->u.v4;
    } else if (hint->atyp == SOCKS5_ATYP_IPV6 && !IN6_IS_ADDR_UNSPECIFIED(&hint->u.v6)) {
        ua->client.v6.sin6_family = AF_INET6;
        ua->client.v6.sin6_addr = hint->u.v6;
        addr_unmap(&ua->client);
    } else {
        len = sizeof(ua->client);
        if (getpeername(c->cfd, &ua->client.sa, &len) == -1) {
            int err = -errno;
            free(ua);
            return err;
        }
        addr_unmap(&ua->client);
    }
    hosts_set_port(&ua->client, hint->port);
    ua->port_known = hint->port != 0;

    int fd = open_socket(sh, ua);
    if (fd < 0) {
        free(ua);
        return fd;
    }
    len = sizeof(tmp);
    getsockname(fd, &tmp.sa, &len);
    uint16_t port = addr_port(&tmp);

    /* Where the client must send: the advertised address, or where it reached us. */
    if (sh->o->udp_advertise.ss_family != AF_UNSPEC) {
        memcpy(bnd, &sh->o->udp_advertise, addr_len((const struct sockaddr *)&sh->o->udp_advertise));
    } else {
        len = sizeof(*bnd);
        getsockname(c->cfd, &bnd->sa, &len);
        addr_unmap(bnd);
    }
    hosts_set_port(bnd, port);
    if (!ua->v6sock && bnd->sa.sa_family == AF_INET6) {
        close(fd);
        free(ua);
        return -EAFNOSUPPORT;
    }
    c->tfd = fd;
    c->ua = ua;
    return 0;
}

static void
arm_recv(struct shard *sh, struct conn *c)
{
    struct udp_assoc *ua = c->ua;
    ua->riov.iov_base = ua->buf + SOCKS5_UDP_HDR_MAX;
    ua->riov.iov_len = UDP_PAYLOAD_MAX;
    memset(&ua->rmsg, 0, sizeof(ua->rmsg));
    ua->rmsg.msg_name = &ua->from;
    ua->rmsg.msg_namelen = sizeof(ua->from);
    ua->rmsg.msg_iov = &ua->riov;
    ua->rmsg.msg_iovlen = 1;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_UDP_RECV);
    io_uring_prep_recvmsg(sqe, c->tfd, &ua->rmsg, 0);
}

static void
arm_ctrl(struct shard *sh, struct conn *c)
{
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_UDP_CTRL);
    io_uring_prep_recv(sqe, c->cfd, c->ua->ctrl, sizeof(c->ua->ctrl), 0);
}

void
udp_start(struct shard *sh, struct conn *c)
{
    c->state = CONN_UDP;
    /* No idle timeout: the association lives as long as its TCP connection. */
    conn_timer_set(sh, c, TL_NONE);
    STAT_INC(sh->st.tunnels);
    STAT_INC(sh->st.open_by_cmd[SOCKS5_CMD_UDP]);
    c->flags |= CONN_F_OPEN_COUNTED;
    arm_recv(sh, c);
    arm_ctrl(sh, c);
}

static void
drop(struct shard *sh, struct conn *c)
{
    STAT_INC(sh->st.udp_dropped);
    arm_recv(sh, c);
}

static void
send_to(struct shard *sh, struct conn *c, const union sockaddr_inx *dst, const uint8_t *p,
        size_t n)
{
    struct udp_assoc *ua = c->ua;
    memset(&ua->to, 0, sizeof(ua->to));
    if (dst->sa.sa_family == AF_INET && ua->v6sock) {
        ua->to.sin6_family = AF_INET6;
        ua->to.sin6_port = dst->v4.sin_port;
        ua->to.sin6_addr.s6_addr[10] = 0xff;
        ua->to.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&ua->to.sin6_addr.s6_addr[12], &dst->v4.sin_addr, 4);
    } else if (dst->sa.sa_family == AF_INET6 && !ua->v6sock) {
        drop(sh, c); /* no IPv6 on this host */
        return;
    } else {
        memcpy(&ua->to, dst, addr_len(&dst->sa));
    }
    ua->siov.iov_base = (void *)p;
    ua->siov.iov_len = n;
    memset(&ua->smsg, 0, sizeof(ua->smsg));
    ua->smsg.msg_name = &ua->to;
    ua->smsg.msg_namelen = ua->v6sock ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    ua->smsg.msg_iov = &ua->siov;
    ua->smsg.msg_iovlen = 1;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_UDP_SEND);
    io_uring_prep_sendmsg(sqe, c->tfd, &ua->smsg, 0);
}

/*
 * Send the client's payload to a resolved remote, and remember the remote.
 * Every datagram's destination goes through the rules (host: the name it
 * was sent to, or NULL).
 */
static void
to_remote(struct shard *sh, struct conn *c, const union sockaddr_inx *dst, const char *host,
          size_t off, size_t n)
{
    struct udp_assoc *ua = c->ua;
    union sockaddr_inx peer = *dst;
    addr_unmap(&peer);
    if (!session_allowed(sh, c, &peer, host, addr_port(&peer))) {
        drop(sh, c);
        return;
    }
    bool known = false;
    for (unsigned i = 0; i < ua->n_peers && !known; i++)
        known = same_addr(&ua->peers[i], &peer);
    if (!known) {
        ua->peers[ua->next_peer] = peer;
        ua->next_peer = (ua->next_peer + 1) % UDP_PEERS;
        if (ua->n_peers < UDP_PEERS)
            ua->n_peers++;
    }
    c->dir[DIR_C2T].bytes += n;
    send_to(sh, c, &peer, ua->buf + off, n);
}

static void
from_client(struct shard *sh, struct conn *c, size_t len)
{
    struct udp_assoc *ua = c->ua;
    struct socks_dest d;
    uint8_t frag;
    const uint8_t *p = ua->buf + SOCKS5_UDP_HDR_MAX;
    ssize_t hl = socks5_udp_parse(p, len, &d, &frag);
    /* We do not reassemble (RFC 1928 section 7 allows dropping): FRAG != 0 is dropped. */
    if (hl < 0 || frag != 0) {
        drop(sh, c);
        return;
    }
    size_t off = SOCKS5_UDP_HDR_MAX + (size_t)hl, n = len - (size_t)hl;
    union sockaddr_inx dst;
    memset(&dst, 0, sizeof(dst));
    if (d.atyp == SOCKS5_ATYP_IPV4) {
        dst.v4.sin_family = AF_INET;
        dst.v4.sin_addr = d.u.v4;
    } else if (d.atyp == SOCKS5_ATYP_IPV6) {
        dst.v6.sin6_family = AF_INET6;
        dst.v6.sin6_addr = d.u.v6;
    } else {
        /* A name in normal form (socks5_udp_parse): IP literals came back as addresses. */
        if (hosts_lookup(sh->hosts, d.u.name, d.port, &dst, 1) == 0) {
            /* The datagram waits in buf; nothing is received until it is sent or dropped. */
            ua->resolving = true;
            ua->pending_off = off;
            ua->pending_len = n;
            memcpy(ua->pending_name, d.u.name, (size_t)d.name_len + 1);
            ua->resolve_seq = (uint8_t)(ua->resolve_seq % 127 + 1);
            /* The wait is bounded like a CONNECT's: a dead name must not stall the association. */
            conn_timer_set(sh, c, TL_CONNECT);
            dns_resolve(sh, d.u.name, d.port, ud_make(ua->resolve_seq, conn_slot(sh, c), c->gen));
            return;
        }
    }
    hosts_set_port(&dst, d.port);
    to_remote(sh, c, &dst, d.atyp == SOCKS5_ATYP_DOMAIN ? d.u.name : NULL, off, n);
}

void
udp_resolve_timeout(struct shard *sh, struct conn *c)
{
    struct udp_assoc *ua = c->ua;
    if (!ua || !ua->resolving)
        return;
    ua->resolving = false;
    drop(sh, c);
}

void
udp_on_resolved(struct shard *sh, struct conn *c, unsigned seq, int err,
                const union sockaddr_inx *addrs, unsigned n)
{
    struct udp_assoc *ua = c->ua;
    /* An answer for a datagram already given up on is not for the one waiting now. */
    if (!ua || !ua->resolving || seq != ua->resolve_seq)
        return;
    ua->resolving = false;
    conn_timer_set(sh, c, TL_NONE);
    if (err < 0 || n == 0) {
        drop(sh, c);
        return;
    }
    /* Prefer the family the socket can reach. */
    unsigned pick = 0;
    for (unsigned i = 0; i < n; i++) {
        if (ua->v6sock || addrs[i].sa.sa_family == AF_INET) {
            pick = i;
            break;
        }
    }
    to_remote(sh, c, &addrs[pick], ua->pending_name, ua->pending_off, ua->pending_len);
}

static void
on_datagram(struct shard *sh, struct conn *c, size_t len)
{
    struct udp_assoc *ua = c->ua;
    union sockaddr_inx from;
    memset(&from, 0, sizeof(from));
    memcpy(&from, &ua->from, ua->rmsg.msg_namelen < sizeof(from) ? ua->rmsg.msg_namelen : sizeof(from));
    addr_unmap(&from);

    if (addr_same_ip(&from, &ua->client)) {
        if (!ua->port_known) {
            /* RFC 1928: the client's port comes with its first datagram. */
            hosts_set_port(&ua->client, addr_port(&from));
            ua->port_known = true;
        }
        if (addr_port(&from) == addr_port(&ua->client)) {
            from_client(sh, c, len);
            return;
        }
    }
    bool peer = false;
    for (unsigned i = 0; i < ua->n_peers && !peer; i++)
        peer = same_addr(&ua->peers[i], &from);
    if (!peer || !ua->port_known) {
        drop(sh, c);
        return;
    }
    uint8_t hdr[SOCKS5_UDP_HDR_MAX];
    size_t hl = socks5_udp_header(hdr, &from.sa);
    uint8_t *start = ua->buf + SOCKS5_UDP_HDR_MAX - hl;
    memcpy(start, hdr, hl);
    c->dir[DIR_T2C].bytes += len;
    send_to(sh, c, &ua->client, start, hl + len);
}

void
udp_on_cqe(struct shard *sh, struct conn *c, unsigned op, int res)
{
    if (c->state != CONN_UDP)
        return;
    switch (op) {
    case OP_UDP_CTRL:
        /* The client should send nothing here; EOF or an error ends the association. */
        if (res > 0) {
            arm_ctrl(sh, c);
            return;
        }
        conn_close(sh, c, res == 0 ? END_DONE : END_CLIENT_ERR);
        return;
    case OP_UDP_RECV:
        if (res < 0) {
            /* ICMP errors from earlier sends surface here; they end nothing. */
            if (res == -ECONNREFUSED || res == -EHOSTUNREACH || res == -ENETUNREACH ||
                res == -EINTR || res == -ENOBUFS || res == -ENOMEM) {
                arm_recv(sh, c);
                return;
            }
            conn_close(sh, c, END_TARGET_ERR);
            return;
        }
        if (c->ua->rmsg.msg_flags & MSG_TRUNC) {
            drop(sh, c);
            return;
        }
        on_datagram(sh, c, (size_t)res);
        return;
    case OP_UDP_SEND:
        /* A datagram that could not be sent is lost, as UDP allows; the association goes on. */
        if (res < 0)
            STAT_INC(sh->st.udp_dropped);
        arm_recv(sh, c);
        return;
    default:
        return;
    }
}

void
udp_release(struct shard *sh, struct conn *c)
{
    (void)sh;
    free(c->ua);
    c->ua = NULL;
}
