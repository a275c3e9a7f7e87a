/*
 * udp.c - UDP ASSOCIATE: relays datagrams between the client and the
 * remotes it names, on one socket per association.
 *
 * Shard thread only. The socket is AF_INET6 and dual-stack where the host
 * has IPv6 (so IPv4 and IPv6 clients and remotes all go through it), bound
 * to the wildcard address; the reply advertises the address the client's
 * TCP connection came in on (or --udp-advertise, for servers behind NAT).
 *
 * Who is the client (RFC 1928 section 7: datagrams from any other source IP
 * than the one recorded for the association are dropped): the control
 * connection's address, unless the rule that admits the association says
 * `udp_source = "any"`; then the address the request declares, or else the
 * source of the first datagram, if that address passes the rules as a
 * client itself. Datagrams from the client carry the RFC 1928 header,
 * parsed by the pure socks5_udp_parse(); datagrams from a remote the client
 * has sent to are given a header and passed back; anything else is dropped.
 *
 * An association holds no data buffer: a poll on its socket goes through
 * the shard's ring, and when it fires the datagrams are taken with
 * non-blocking recvmmsg() into the shard's scratch slots and sent on with
 * non-blocking sendmmsg() right there, up to a budget, before the poll is
 * re-armed. Nothing in that can wait: the socket is O_NONBLOCK and every
 * call has MSG_DONTWAIT; a send that would block loses its datagram, as UDP
 * allows. Only a datagram waiting for its name to resolve is copied out,
 * into an allocation of its own size. No datagram either way for
 * idle_timeout ends the association and its control connection; so does
 * the end of the control connection.
 *
 * Under GSS-API protection (RFC 1961 section 5, levels 1 and 2) every datagram
 * either way is an mtyp-3 frame (ver, mtyp, length, gss_wrap token of the RFC
 * 1928 header and data) in the UDP payload. The shard frames and moves them;
 * the wrapping is a job for the shard's GSS-API worker (gssw.h), whose answer
 * comes back through on_gss() and goes on as a clear datagram would. At most
 * UDP_GSS_JOBS are out per association: a client that floods gets the excess
 * dropped (udp_drop gss) rather than the worker's queue grown without end.
 *
 * Fault mode (docs/faults.md, "UDP faults"): an association whose rule (or allowed user name)
 * gives it udp_drop, udp_dup or udp_reorder has them applied where a datagram either
 * way is queued for sendmmsg() (emit()); udp_frag sets FRAG in the header built for
 * the client (on_datagram()), before any GSS-API wrapping.
 */
#include "udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "acct.h"
#include "conn.h"
#include "limit.h"
#include "dns.h"
#include "fault.h"
#include "gssframe.h"
#include "gssw.h"
#include "handshake.h"
#include "handshake_types.h"
#include "hosts.h"
#include "log.h"
#include "outbound.h"
#include "policy.h"
#include "shard_types.h"
#include "sock.h"

/* Remotes the client sent to, whose answers are let through. */
#define UDP_PEERS         16
#define UDP_PAYLOAD_MAX   65535
/* Datagrams per recvmmsg()/sendmmsg(): the shard's scratch slots. */
#define UDP_BATCH         16
/* Per readiness, so one busy association cannot hold its shard: then the poll is re-armed. */
#define UDP_BUDGET_DGRAMS 64
#define UDP_BUDGET_BYTES  (1u << 20)
/*
 * Datagrams waiting for DNS per association, and their bytes: a client that
 * names names which never resolve must not grow the queue without end. One
 * datagram is always let in, whatever its size.
 */
#define UDP_PEND_MAX      16
#define UDP_PEND_BYTES    65536u
/* GSS-API protection: datagrams at the worker per association, either way. */
#define UDP_GSS_JOBS      32
/* The largest UDP payload IPv4 can carry: a framed token must fit it. */
#define UDP_DGRAM_MAX     65507
/* A slot: room for the reply header in front of the largest payload, whole pages. */
#define UDP_SLOT          (((SOCKS5_UDP_HDR_MAX + UDP_PAYLOAD_MAX) + 4095) & ~4095)

/* A datagram waiting for its name: payload, then the NUL-terminated name. */
struct udp_pend {
    struct udp_pend *next;
    uint32_t len;
    uint16_t port;
    uint8_t data[];
};

struct udp_assoc {
    union sockaddr_inx client; /* AF_INET for IPv4 clients, even on a v6 socket */
    bool ip_known;             /* client's address fixed: declared, or the control connection's */
    bool port_known;           /* client port given in the request or learned */
    bool any_source;           /* the admitting rule has udp_source = "any" */
    bool v6sock;
    bool querying;       /* a name is being resolved: pend_head's, or the probe's */
    bool probing;        /* ... for the datagram in a scratch slot (see from_client) */
    bool in_resolve;     /* inside dns_resolve(): an answer now is synchronous */
    uint8_t resolve_seq; /* which query is awaited: 1..127, in the DNS cookie */
    unsigned n_peers, next_peer;
    unsigned n_pend;
    uint32_t pend_bytes;
    struct udp_pend *pend_head, *pend_tail;
    const uint8_t *probe_data; /* probing: the datagram, still in its scratch slot */
    size_t probe_len;
    const char *probe_name;
    union sockaddr_inx peers[UDP_PEERS];
    uint8_t ctrl[16];         /* the client should send nothing on the control connection */
    struct outbound_dgram eg; /* where datagrams to remotes leave from (outbound.h) */
    struct log_udp cnt;       /* relayed and dropped, for the access log */
    /* GSS-API levels 1 and 2: the session (a reference of the association's), NULL: clear */
    struct gssw_sess *gss;
    unsigned gss_jobs; /* datagrams at the worker */
};

/*
 * The shard's datagram buffers and message arrays, mapped at the first
 * association (pages are touched only as datagrams fill them). The send
 * batch belongs to one connection at a time and is flushed before anything
 * it points to (a slot of this recv batch, a udp_pend) is reused or freed.
 */
struct udp_scratch {
    struct mmsghdr rmsg[UDP_BATCH];
    struct iovec riov[UDP_BATCH];
    struct sockaddr_in6 from[UDP_BATCH];
    struct mmsghdr smsg[UDP_BATCH];
    struct iovec siov[UDP_BATCH];
    struct sockaddr_in6 to[UDP_BATCH];
    /* The egress source of a datagram to a remote: IP_PKTINFO or IPV6_PKTINFO. */
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(struct in6_pktinfo))];
    } sctl[UDP_BATCH];
    uint32_t out_len[UDP_BATCH]; /* payload bytes, for the byte counts */
    uint8_t out_dir[UDP_BATCH];
    unsigned n_out;
    struct conn *out_c;
    uint8_t *slots; /* UDP_BATCH x UDP_SLOT */
};

#define UDP_SCRATCH_HEAD ((sizeof(struct udp_scratch) + 4095) & ~(size_t)4095)
#define UDP_SCRATCH_SIZE (UDP_SCRATCH_HEAD + (size_t)UDP_BATCH * UDP_SLOT)

static int
scratch_get(struct shard *sh)
{
    if (sh->udp)
        return 0;
    void *p =
        mmap(NULL, UDP_SCRATCH_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    struct udp_scratch *us = p;
    us->slots = (uint8_t *)p + UDP_SCRATCH_HEAD;
    sh->udp = us;
    return 0;
}

void
udp_fini(struct shard *sh)
{
    if (sh->udp)
        munmap(sh->udp, UDP_SCRATCH_SIZE);
    sh->udp = NULL;
}

static bool
same_addr(const union sockaddr_inx *a, const union sockaddr_inx *b)
{
    return addr_same_ip(a, b) && addr_port(a) == addr_port(b);
}

/*
 * The rules' verdict on src as the client of c's association: the query a
 * UDP ASSOCIATE from src by the same user would make. *flags gets the
 * admitting rule's ACL_RF_* flags. Counts a denial.
 */
static bool
source_allowed(struct shard *sh, const struct conn *c, const union sockaddr_inx *src,
               uint8_t *flags)
{
    struct policy_req r = {.client = src, .cmd = SOCKS5_CMD_UDP, .user = c->user, .gss = c->gss};
    if (policy_allows(sh->pol, sh->o, &r, flags))
        return true;
    STAT_INC(sh->st.acl_denied);
    return false;
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
    /* udp_buffer: room for the datagrams of both ways that arrive while the shard is busy
     * elsewhere (the kernel caps it at net.core.rmem_max / wmem_max; a failure leaves the
     * kernel's default, which is no reason to refuse the association). */
    int bytes = (int)sh->o->udp_buffer;
    if (bytes > 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    }
    return fd;
}

/*
 * Who may send as the client. hint is the request's DST: the address the
 * client will send from, all zero when it does not know. -EPERM when the
 * rules do not admit that source.
 */
static int
set_client(struct shard *sh, struct conn *c, struct udp_assoc *ua, const struct socks_dest *hint)
{
    union sockaddr_inx decl;
    uint8_t flags;
    memset(&decl, 0, sizeof(decl));
    if (hint->atyp == SOCKS5_ATYP_IPV4) {
        decl.v4.sin_family = AF_INET;
        decl.v4.sin_addr = hint->u.v4;
    } else if (hint->atyp == SOCKS5_ATYP_IPV6) {
        decl.v6.sin6_family = AF_INET6;
        decl.v6.sin6_addr = hint->u.v6;
        addr_unmap(&decl);
    }
    if (c->client.sa.sa_family != AF_INET && c->client.sa.sa_family != AF_INET6)
        return -ENOTCONN;
    /* The association as such passed conn_allowed(); this only reads its rule's flags. */
    source_allowed(sh, c, &c->client, &flags);
    ua->any_source = flags & ACL_RF_UDP_ANY_SOURCE;

    bool declared = decl.sa.sa_family && !addr_is_any(&decl);
    if (declared && !addr_same_ip(&decl, &c->client)) {
        /*
         * RFC 1928 section 7 ties the association to the client's address, and
         * a host the rules refuse as a client must not get a relay by being
         * named in someone else's request. Behind carrier-grade NAT a client's
         * UDP may leave from another address than its TCP: a rule opts in.
         */
        if (!ua->any_source || !source_allowed(sh, c, &decl, &flags)) {
            if (!ua->any_source)
                STAT_INC(sh->st.acl_denied);
            return -EPERM;
        }
    }
    if (declared) {
        ua->client = decl;
        ua->ip_known = true;
    } else {
        /* The control connection's address, or (udp_source "any") the first datagram's. */
        ua->client = c->client;
        ua->ip_known = !ua->any_source;
    }
    hosts_set_port(&ua->client, hint->port);
    ua->port_known = hint->port != 0;
    return 0;
}

/*
 * Open the association's socket for c. hint is the request's DST: the
 * address the client will send from (all zero: the TCP peer's address, port
 * learned from the first datagram; under a rule with udp_source "any", the
 * first datagram's source). Writes the address for the reply into bnd.
 * Returns 0, -EPERM when the rules do not admit the declared source, or
 * another -errno.
 */
static int
udp_open(struct shard *sh, struct conn *c, const struct socks_dest *hint, int rule,
         union sockaddr_inx *bnd)
{
    struct udp_assoc *ua = calloc(1, sizeof(*ua));
    union sockaddr_inx tmp;
    socklen_t len;
    int err = ua ? scratch_get(sh) : -ENOMEM;
    if (err == 0)
        err = set_client(sh, c, ua, hint);
    if (err < 0) {
        free(ua);
        return err;
    }

    int fd = open_socket(sh, ua);
    if (fd < 0) {
        free(ua);
        return fd;
    }
    /* The egress choice of the rule that admitted the association, once for all of it. */
    err = outbound_dgram(sh, c, fd, rule, &ua->eg);
    if (err < 0) {
        close(fd);
        free(ua);
        return err;
    }
    len = sizeof(tmp);
    getsockname(fd, &tmp.sa, &len);
    uint16_t port = addr_port(&tmp);

    /* Where the client must send: the advertised address, or where it reached us. */
    if (sh->o->udp_advertise.ss_family != AF_UNSPEC) {
        memcpy(bnd, &sh->o->udp_advertise,
               addr_len((const struct sockaddr *)&sh->o->udp_advertise));
    } else {
        conn_local(c, bnd);
    }
    hosts_set_port(bnd, port);
    if (!ua->v6sock && bnd->sa.sa_family == AF_INET6) {
        close(fd);
        free(ua);
        return -EAFNOSUPPORT;
    }
    c->tfd = fd;
    c->ua = ua;
    /* A protected connection's datagrams are protected too (RFC 1961 section 5). */
    if (c->hs && c->hs->gss_sess) {
        ua->gss = c->hs->gss_sess;
        c->hs->gss_sess = NULL;
    }
    return 0;
}

static void
arm_poll(struct shard *sh, struct conn *c)
{
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_UDP_POLL, 0);
    io_uring_prep_poll_add(sqe, c->tfd, POLLIN);
}

static void
arm_ctrl(struct shard *sh, struct conn *c)
{
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_UDP_CTRL, 0);
    io_uring_prep_recv(sqe, c->cfd, c->ua->ctrl, sizeof(c->ua->ctrl), 0);
}

/* The reply is written: relay datagrams until the control connection ends. */
static void
udp_start(struct shard *sh, struct conn *c)
{
    conn_enter(c, &udp_phase);
    c->state = CONN_UDP;
    /* Datagrams either way are the activity; the control connection is silent by design. */
    conn_timer_set(sh, c, TL_IDLE);
    STAT_INC(sh->st.tunnels);
    STAT_INC(sh->st.open_by_cmd[SOCKS5_CMD_UDP]);
    c->flags |= CONN_F_OPEN_COUNTED;
    arm_poll(sh, c);
    arm_ctrl(sh, c);
}

/* A datagram of c's association is dropped for why: counted for the metrics and its log line. */
static void
drop(struct shard *sh, struct conn *c, enum log_udp_drop why)
{
    STAT_INC(sh->st.udp_dropped);
    if (c->ua)
        c->ua->cnt.drop[why]++;
}

/* Send what the batch holds; a datagram the socket will not take now is lost. */
static void
flush(struct shard *sh)
{
    struct udp_scratch *us = sh->udp;
    struct conn *c = us->out_c;
    unsigned i = 0;
    while (i < us->n_out) {
        int r = sendmmsg(c->tfd, us->smsg + i, us->n_out - i, MSG_DONTWAIT);
        if (r > 0) {
            for (unsigned k = i; k < i + (unsigned)r; k++) {
                c->dir[us->out_dir[k]].bytes += us->out_len[k];
                if (c->acct) /* the user's accounting counts datagrams as they go */
                    lim_bytes(&c->acct->n, us->out_dir[k], us->out_len[k]);
                if (us->out_dir[k] == DIR_C2T)
                    c->ua->cnt.out++;
                else
                    c->ua->cnt.in++;
            }
            i += (unsigned)r;
        } else if (r == -1 && errno == EINTR) {
            continue;
        } else {
            /* EAGAIN (socket buffer full), an ICMP error, EPERM from a firewall: this one only. */
            drop(sh, c, LOG_UDP_DROP_SEND);
            i++;
        }
    }
    us->n_out = 0;
    us->out_c = NULL;
}

/*
 * A datagram to a remote of family leaves from the association's egress address, if it
 * has one: an IPV6_PKTINFO message on a dual-stack socket (a v4-mapped address for an
 * IPv4 remote), IP_PKTINFO on an IPv4 one.
 */
static void
set_source(const struct udp_assoc *ua, int family, struct cmsghdr *h, struct msghdr *m)
{
    const union sockaddr_inx *src = &ua->eg.src[family == AF_INET6];
    if (!src->sa.sa_family)
        return;
    m->msg_control = h;
    if (ua->v6sock) {
        struct in6_pktinfo pi = {0};
        if (family == AF_INET6) {
            pi.ipi6_addr = src->v6.sin6_addr;
        } else {
            pi.ipi6_addr.s6_addr[10] = pi.ipi6_addr.s6_addr[11] = 0xff;
            memcpy(&pi.ipi6_addr.s6_addr[12], &src->v4.sin_addr, 4);
        }
        m->msg_controllen = CMSG_SPACE(sizeof(pi));
        h->cmsg_level = IPPROTO_IPV6;
        h->cmsg_type = IPV6_PKTINFO;
        h->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(h), &pi, sizeof(pi));
    } else {
        struct in_pktinfo pi = {0};
        pi.ipi_spec_dst = src->v4.sin_addr;
        m->msg_controllen = CMSG_SPACE(sizeof(pi));
        h->cmsg_level = IPPROTO_IP;
        h->cmsg_type = IP_PKTINFO;
        h->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(h), &pi, sizeof(pi));
    }
}

/* Queue p[0..n) (payload bytes: payload) for dst in the shard's send batch. */
static void
queue(struct shard *sh, struct conn *c, const union sockaddr_inx *dst, const uint8_t *p, size_t n,
      size_t payload, unsigned dir)
{
    struct udp_scratch *us = sh->udp;
    struct udp_assoc *ua = c->ua;
    if (dir == DIR_C2T && ua->eg.refuse[dst->sa.sa_family == AF_INET6]) {
        drop(sh, c, LOG_UDP_DROP_FAMILY); /* the pool has no address of the remote's family */
        return;
    }
    if (us->n_out == UDP_BATCH || (us->out_c && us->out_c != c))
        flush(sh);
    unsigned i = us->n_out;
    struct sockaddr_in6 *to = &us->to[i];
    memset(to, 0, sizeof(*to));
    if (dst->sa.sa_family == AF_INET && ua->v6sock) {
        to->sin6_family = AF_INET6;
        to->sin6_port = dst->v4.sin_port;
        to->sin6_addr.s6_addr[10] = 0xff;
        to->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&to->sin6_addr.s6_addr[12], &dst->v4.sin_addr, 4);
    } else if (dst->sa.sa_family == AF_INET6 && !ua->v6sock) {
        drop(sh, c, LOG_UDP_DROP_FAMILY); /* no IPv6 on this host */
        return;
    } else {
        memcpy(to, dst, addr_len(&dst->sa));
    }
    us->siov[i].iov_base = (void *)p;
    us->siov[i].iov_len = n;
    struct msghdr *m = &us->smsg[i].msg_hdr;
    memset(m, 0, sizeof(*m));
    m->msg_name = to;
    m->msg_namelen = ua->v6sock ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    m->msg_iov = &us->siov[i];
    m->msg_iovlen = 1;
    if (dir == DIR_C2T)
        set_source(ua, dst->sa.sa_family, &us->sctl[i].h, m);
    us->out_len[i] = (uint32_t)payload;
    us->out_dir[i] = (uint8_t)dir;
    us->out_c = c;
    us->n_out++;
    c->active_ds = sh->now_ds;
}

/* The faults emit() applies; udp_frag acts where the client's header is made. */
#define UDP_FAULT_KINDS ((1u << FAULT_UDP_DROP) | (1u << FAULT_UDP_DUP) | (1u << FAULT_UDP_REORDER))

/* A datagram udp_reorder holds back (c->fault->held[dir]): where it goes, then its bytes. */
struct udp_held {
    union sockaddr_inx dst;
    uint32_t payload;
    uint8_t data[];
};

/* Does fault k (a probability in percent) act on this datagram? */
static bool
fault_roll(struct shard *sh, const struct conn_fault *f, enum fault_kind k)
{
    return fault_has(&f->f, k) && fault_dice(sh) < f->f.arg[k];
}

/*
 * Keep a copy of the datagram as direction dir's held one; the buffer grows to the largest
 * datagram held so far (a slot's size at most). false: out of memory, send it now.
 */
static bool
hold(struct conn_fault *f, const union sockaddr_inx *dst, const uint8_t *p, size_t n,
     size_t payload, unsigned dir)
{
    size_t need = sizeof(struct udp_held) + n;
    if (need > f->held_cap[dir]) {
        uint8_t *b = realloc(f->held[dir], need);
        if (!b)
            return false;
        f->held[dir] = b;
        f->held_cap[dir] = (uint32_t)need;
    }
    struct udp_held *h = (struct udp_held *)f->held[dir];
    h->dst = *dst;
    h->payload = (uint32_t)payload;
    memcpy(h->data, p, n);
    f->held_len[dir] = (uint32_t)n;
    return true;
}

/*
 * Queue a datagram with c's UDP faults: dropped, held back behind the next one of its
 * direction, or sent twice. The one place either direction's datagrams pass.
 */
static void
emit(struct shard *sh, struct conn *c, const union sockaddr_inx *dst, const uint8_t *p, size_t n,
     size_t payload, unsigned dir)
{
    struct conn_fault *f = c->fault;
    if (!f || !(f->f.kinds & UDP_FAULT_KINDS)) {
        queue(sh, c, dst, p, n, payload, dir);
        return;
    }
    if (fault_roll(sh, f, FAULT_UDP_DROP)) {
        fault_acted(sh, c, FAULT_UDP_DROP);
        drop(sh, c, LOG_UDP_DROP_FAULT);
        return;
    }
    if (!f->held_len[dir] && fault_roll(sh, f, FAULT_UDP_REORDER) &&
        hold(f, dst, p, n, payload, dir)) {
        fault_acted(sh, c, FAULT_UDP_REORDER);
        return;
    }
    queue(sh, c, dst, p, n, payload, dir);
    if (fault_roll(sh, f, FAULT_UDP_DUP)) {
        fault_acted(sh, c, FAULT_UDP_DUP);
        queue(sh, c, dst, p, n, payload, dir);
    }
    if (f->held_len[dir]) {
        const struct udp_held *h = (const struct udp_held *)f->held[dir];
        queue(sh, c, &h->dst, h->data, f->held_len[dir], h->payload, dir);
        f->held_len[dir] = 0;
        /* The batch points into the held copy, which the next hold overwrites. */
        flush(sh);
    }
}

/*
 * Send the client's payload to a resolved remote, and remember the remote.
 * Every datagram's destination goes through the rules (host: the name it
 * was sent to, or NULL).
 */
static void
to_remote(struct shard *sh, struct conn *c, const union sockaddr_inx *dst, const char *host,
          const uint8_t *p, size_t n)
{
    struct udp_assoc *ua = c->ua;
    union sockaddr_inx peer = *dst;
    addr_unmap(&peer);
    if (!conn_allowed(sh, c, &peer, host, addr_port(&peer), NULL)) {
        drop(sh, c, LOG_UDP_DROP_RULE);
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
    emit(sh, c, &peer, p, n, n, DIR_C2T);
}

static const char *
pend_name(const struct udp_pend *e)
{
    return (const char *)e->data + e->len;
}

static struct udp_pend *
pend_pop(struct udp_assoc *ua)
{
    struct udp_pend *e = ua->pend_head;
    ua->pend_head = e->next;
    if (!ua->pend_head)
        ua->pend_tail = NULL;
    ua->n_pend--;
    ua->pend_bytes -= e->len;
    return e;
}

/* Ask for name; the answer may come before this returns (hosts, cache). */
static void
query(struct shard *sh, struct conn *c, const char *name, uint16_t port)
{
    struct udp_assoc *ua = c->ua;
    ua->querying = true;
    ua->resolve_seq = (uint8_t)(ua->resolve_seq % 127 + 1);
    ua->in_resolve = true;
    dns_resolve(sh, name, port, conn_ref(c, ua->resolve_seq));
    ua->in_resolve = false;
}

/*
 * Resolve the queued datagrams' names in order, until one has to wait. The
 * wait is bounded like a CONNECT's: a dead name must not stall the queue.
 */
static void
pend_next(struct shard *sh, struct conn *c)
{
    struct udp_assoc *ua = c->ua;
    while (ua->pend_head && !ua->querying)
        query(sh, c, pend_name(ua->pend_head), ua->pend_head->port);
    conn_timer_set(sh, c, ua->querying ? TL_CONNECT : TL_IDLE);
}

/* Keep a copy of a datagram to a name; false when it had to be dropped. */
static bool
pend_add(struct udp_assoc *ua, const struct socks_dest *d, const uint8_t *p, size_t n)
{
    if (ua->pend_head && (ua->n_pend >= UDP_PEND_MAX || ua->pend_bytes + n > UDP_PEND_BYTES))
        return false;
    struct udp_pend *e = malloc(sizeof(*e) + n + (size_t)d->name_len + 1);
    if (!e)
        return false;
    e->next = NULL;
    e->len = (uint32_t)n;
    e->port = d->port;
    memcpy(e->data, p, n);
    memcpy(e->data + n, d->u.name, (size_t)d->name_len + 1);
    if (ua->pend_tail)
        ua->pend_tail->next = e;
    else
        ua->pend_head = e;
    ua->pend_tail = e;
    ua->n_pend++;
    ua->pend_bytes += (uint32_t)n;
    return true;
}

/* A datagram to a name that neither hosts nor addr_parse() knew. */
static void
to_name(struct shard *sh, struct conn *c, const struct socks_dest *d, const uint8_t *p, size_t n)
{
    struct udp_assoc *ua = c->ua;
    if (ua->querying) {
        /* Behind the one being resolved, in order. */
        if (!pend_add(ua, d, p, n))
            drop(sh, c, LOG_UDP_DROP_QUEUE);
        return;
    }
    /*
     * Most names are answered from the cache at once: try with the datagram
     * where it is, and copy it out only if the answer has to be waited for.
     */
    ua->probing = true;
    ua->probe_data = p;
    ua->probe_len = n;
    ua->probe_name = d->u.name;
    query(sh, c, d->u.name, d->port);
    ua->probing = false;
    if (!ua->querying)
        return;
    if (!pend_add(ua, d, p, n)) {
        ua->querying = false; /* the answer, when it comes, finds nothing waiting */
        drop(sh, c, LOG_UDP_DROP_QUEUE);
        return;
    }
    conn_timer_set(sh, c, TL_CONNECT);
}

static void
from_client_clear(struct shard *sh, struct conn *c, const uint8_t *p, size_t len)
{
    struct socks_dest d;
    uint8_t frag;
    ssize_t hl = socks5_udp_parse(p, len, &d, &frag);
    /* We do not reassemble (RFC 1928 section 7 allows dropping): FRAG != 0 is dropped. */
    if (hl < 0 || frag != 0) {
        drop(sh, c, hl < 0 ? LOG_UDP_DROP_MALFORMED : LOG_UDP_DROP_FRAG);
        return;
    }
    p += hl;
    len -= (size_t)hl;
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
            to_name(sh, c, &d, p, len);
            return;
        }
    }
    hosts_set_port(&dst, d.port);
    to_remote(sh, c, &dst, d.atyp == SOCKS5_ATYP_DOMAIN ? d.u.name : NULL, p, len);
}

/* Hand a datagram to the GSS-API worker (kind: unwrap or wrap); false: dropped. */
static bool
gss_job(struct shard *sh, struct conn *c, uint8_t kind, const uint8_t *p, size_t len,
        uint32_t payload)
{
    struct udp_assoc *ua = c->ua;
    struct gssw_job *j = NULL;
    if (ua->gss_jobs < UDP_GSS_JOBS && len <= GSSACC_TOKEN_MAX)
        j = gssw_job_new_dgram(ua->gss, kind, conn_ref(c, 0), len);
    if (!j) {
        drop(sh, c, len > GSSACC_TOKEN_MAX ? LOG_UDP_DROP_TOO_BIG : LOG_UDP_DROP_GSS);
        return false;
    }
    memcpy(j->in, p, len);
    j->in_len = (uint32_t)len;
    j->user = payload;
    ua->gss_jobs++;
    gssw_submit(sh, j);
    return true;
}

/* A datagram from the client: under protection a frame to unwrap first (on_gss). */
static void
from_client(struct shard *sh, struct conn *c, const uint8_t *p, size_t len)
{
    if (!c->ua->gss) {
        from_client_clear(sh, c, p, len);
        return;
    }
    struct gssframe f;
    ssize_t r = gssframe_feed(&f, p, len, GSSFRAME_EXPECT_DATA, GSSFRAME_DATA_TOKEN_MAX);
    if (r != (ssize_t)len) { /* not one whole frame, or more than one */
        drop(sh, c, LOG_UDP_DROP_GSS);
        return;
    }
    gss_job(sh, c, GSSW_UNWRAP_DGRAM, p + GSSFRAME_HDR_LEN, f.len, 0);
}

/* The worker's answer for a datagram: on as a clear one would go, or dropped. */
static void
on_gss(struct shard *sh, struct conn *c, struct gssw_job *j)
{
    struct udp_assoc *ua = c->ua;
    if (c->state == CONN_UDP && ua) {
        ua->gss_jobs--;
        if (j->res < 0) {
            drop(sh, c, LOG_UDP_DROP_GSS);
        } else if (j->kind == GSSW_UNWRAP_DGRAM) {
            from_client_clear(sh, c, j->out, j->out_len);
        } else if (j->out_len + GSSFRAME_HDR_LEN > UDP_DGRAM_MAX) {
            drop(sh, c, LOG_UDP_DROP_TOO_BIG);
        } else {
            /* The frame's header goes in the 4 bytes before the token (gssw.h). */
            uint8_t *frame = j->out - GSSFRAME_HDR_LEN;
            gssframe_header(frame, GSSFRAME_MTYP_DATA, j->out_len);
            emit(sh, c, &ua->client, frame, GSSFRAME_HDR_LEN + j->out_len, j->user, DIR_T2C);
        }
        /* The batch may point into the job. */
        if (sh->udp->n_out)
            flush(sh);
    }
    gssw_job_free(j);
}

/* The name took longer than connect_timeout: drop its datagram, go on with the next. */
static void
resolve_timeout(struct shard *sh, struct conn *c)
{
    struct udp_assoc *ua = c->ua;
    if (!ua)
        return;
    if (ua->querying && ua->pend_head) {
        ua->querying = false;
        free(pend_pop(ua));
        drop(sh, c, LOG_UDP_DROP_RESOLVE);
    }
    /* Also puts the association back on a timer list: this one has just expired. */
    pend_next(sh, c);
}

/* A datagram's destination name resolved; seq is the query's number (the ref's tag). */
static void
on_resolved(struct shard *sh, struct conn *c, unsigned seq, int err,
            const union sockaddr_inx *addrs, unsigned n)
{
    struct udp_assoc *ua = c->ua;
    /* An answer for a datagram already given up on is not for the one waiting now. */
    if (!ua || !ua->querying || seq != ua->resolve_seq)
        return;
    ua->querying = false;
    struct udp_pend *e = ua->probing ? NULL : pend_pop(ua);
    const uint8_t *p = e ? e->data : ua->probe_data;
    size_t len = e ? e->len : ua->probe_len;
    const char *name = e ? pend_name(e) : ua->probe_name;
    if (err < 0 || n == 0) {
        drop(sh, c, LOG_UDP_DROP_RESOLVE);
    } else {
        /* Prefer the family the socket can reach. */
        unsigned pick = 0;
        for (unsigned i = 0; i < n; i++) {
            if (ua->v6sock || addrs[i].sa.sa_family == AF_INET) {
                pick = i;
                break;
            }
        }
        to_remote(sh, c, &addrs[pick], name, p, len);
    }
    if (!e)
        return;
    /* The batch may point into e. */
    if (sh->udp->n_out)
        flush(sh);
    free(e);
    /* Synchronous: the loop in pend_next() that asked goes on by itself. */
    if (!ua->in_resolve)
        pend_next(sh, c);
}

/* A datagram from the association's source, by rule, when it was not fixed at the request. */
static bool
learn_client(struct shard *sh, struct conn *c, const union sockaddr_inx *from)
{
    struct udp_assoc *ua = c->ua;
    uint8_t flags;
    if (ua->port_known && addr_port(from) != addr_port(&ua->client))
        return false;
    /* Checked once, here: after that only this address and port are the client. */
    if (!addr_same_ip(from, &c->client) && !source_allowed(sh, c, from, &flags))
        return false;
    ua->client = *from;
    ua->ip_known = ua->port_known = true;
    return true;
}

static void
on_datagram(struct shard *sh, struct conn *c, unsigned i, size_t len)
{
    struct udp_scratch *us = sh->udp;
    struct udp_assoc *ua = c->ua;
    uint8_t *p = us->slots + (size_t)i * UDP_SLOT + SOCKS5_UDP_HDR_MAX;
    union sockaddr_inx from;
    socklen_t fl = us->rmsg[i].msg_hdr.msg_namelen;
    memset(&from, 0, sizeof(from));
    memcpy(&from, &us->from[i], fl < sizeof(from) ? fl : sizeof(from));
    addr_unmap(&from);

    if (us->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) {
        drop(sh, c, LOG_UDP_DROP_TOO_BIG);
        return;
    }
    if (!ua->ip_known) {
        /* Nothing was sent yet, so there is no remote to answer either. */
        if (learn_client(sh, c, &from))
            from_client(sh, c, p, len);
        else
            drop(sh, c, LOG_UDP_DROP_SOURCE);
        return;
    }
    if (addr_same_ip(&from, &ua->client)) {
        if (!ua->port_known) {
            /* RFC 1928: the client's port comes with its first datagram. */
            hosts_set_port(&ua->client, addr_port(&from));
            ua->port_known = true;
        }
        if (addr_port(&from) == addr_port(&ua->client)) {
            from_client(sh, c, p, len);
            return;
        }
    }
    bool peer = false;
    for (unsigned k = 0; k < ua->n_peers && !peer; k++)
        peer = same_addr(&ua->peers[k], &from);
    if (!peer || !ua->port_known) {
        drop(sh, c, LOG_UDP_DROP_SOURCE);
        return;
    }
    uint8_t hdr[SOCKS5_UDP_HDR_MAX];
    size_t hl = socks5_udp_header(hdr, &from.sa);
    if (c->fault && fault_has(&c->fault->f, FAULT_UDP_FRAG)) {
        hdr[2] = (uint8_t)c->fault->f.arg[FAULT_UDP_FRAG]; /* RFC 1928: FRAG */
        fault_acted(sh, c, FAULT_UDP_FRAG);
    }
    memcpy(p - hl, hdr, hl);
    if (ua->gss)
        gss_job(sh, c, GSSW_WRAP_DGRAM, p - hl, hl + len, (uint32_t)len);
    else
        emit(sh, c, &ua->client, p - hl, hl + len, len, DIR_T2C);
}

/* recvmmsg() errors that say something about an earlier datagram, not the socket. */
static bool
transient(int err)
{
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EINTR ||
           err == ENOBUFS || err == ENOMEM;
}

/* The socket is readable: relay what it holds, up to the budget, then poll again. */
static void
pump(struct shard *sh, struct conn *c)
{
    struct udp_scratch *us = sh->udp;
    unsigned dgrams = 0, bytes = 0;
    while (dgrams < UDP_BUDGET_DGRAMS && bytes < UDP_BUDGET_BYTES) {
        unsigned want =
            UDP_BUDGET_DGRAMS - dgrams < UDP_BATCH ? UDP_BUDGET_DGRAMS - dgrams : UDP_BATCH;
        for (unsigned i = 0; i < want; i++) {
            struct msghdr *m = &us->rmsg[i].msg_hdr;
            us->riov[i].iov_base = us->slots + (size_t)i * UDP_SLOT + SOCKS5_UDP_HDR_MAX;
            us->riov[i].iov_len = UDP_PAYLOAD_MAX;
            memset(m, 0, sizeof(*m));
            m->msg_name = &us->from[i];
            m->msg_namelen = sizeof(us->from[i]);
            m->msg_iov = &us->riov[i];
            m->msg_iovlen = 1;
        }
        int n = recvmmsg(c->tfd, us->rmsg, want, MSG_DONTWAIT, NULL);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            /* ICMP errors from earlier sends surface here; they end nothing. */
            if (transient(errno)) {
                dgrams++;
                continue;
            }
            conn_close(sh, c, END_TARGET_ERR);
            return;
        }
        for (int i = 0; i < n && c->state == CONN_UDP; i++) {
            on_datagram(sh, c, (unsigned)i, us->rmsg[i].msg_len);
            bytes += us->rmsg[i].msg_len;
        }
        /* The next recvmmsg() reuses the slots the batch points into. */
        if (us->n_out)
            flush(sh);
        dgrams += (unsigned)n;
        if ((unsigned)n < want || c->state != CONN_UDP)
            break;
    }
    if (c->state == CONN_UDP)
        arm_poll(sh, c);
}

static void
on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    if (c->state != CONN_UDP)
        return;
    switch (ud_op(cqe->user_data)) {
    case OP_UDP_CTRL:
        /* The client should send nothing here; EOF or an error ends the association. */
        if (res > 0) {
            arm_ctrl(sh, c);
            return;
        }
        conn_close(sh, c, res == 0 ? END_DONE : END_CLIENT_ERR);
        return;
    case OP_UDP_POLL:
        if (res < 0) {
            conn_close(sh, c, END_TARGET_ERR);
            return;
        }
        /* POLLERR too: recvmmsg() reports the error, and the datagrams behind it are taken. */
        pump(sh, c);
        return;
    default:
        return;
    }
}

static void
on_timeout(struct shard *sh, struct conn *c, enum tlist_id tl)
{
    if (tl == TL_CONNECT)
        resolve_timeout(sh, c);
    else
        conn_close(sh, c, END_IDLE_TIMEOUT); /* no datagram either way for idle_timeout */
}

/* Datagrams udp_reorder still holds: the association ends, they are dropped. */
static unsigned
held_count(const struct conn *c)
{
    return c->fault ? (c->fault->held_len[0] > 0) + (c->fault->held_len[1] > 0) : 0;
}

static void
udp_release(struct shard *sh, struct conn *c)
{
    struct udp_assoc *ua = c->ua;
    if (!ua)
        return;
    /* udp_reorder's held datagrams never had a successor: dropped (udp_log_fill counted them). */
    STAT_ADD(sh->st.udp_dropped, held_count(c));
    while (ua->pend_head)
        free(pend_pop(ua));
    /* Queued behind any datagram still at the worker: the session outlives them. */
    if (ua->gss)
        gssw_sess_put(sh, ua->gss);
    free(ua);
    c->ua = NULL;
}

static void
udp_log_fill(const struct conn *c, struct log_rec *r)
{
    if (!c->ua)
        return;
    r->udp = c->ua->cnt;
    r->udp.drop[LOG_UDP_DROP_FAULT] += held_count(c);
}

/* The control connection's hang-up is read by OP_UDP_CTRL. */
const struct conn_phase udp_phase = {
    .name = "udp",
    .on_cqe = on_cqe,
    .on_timeout = on_timeout,
    .on_resolved = on_resolved,
    .on_gss = on_gss,
    .release = udp_release,
    .log_fill = udp_log_fill,
};

void
udp_associate(struct shard *sh, struct conn *c)
{
    union sockaddr_inx bnd;
    int rule;
    /* The association as such: its datagrams are checked one by one later. */
    if (!conn_allowed(sh, c, NULL, NULL, 0, &rule)) {
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
    if (!conn_client_take(sh, c, CLIENT_UDP, sh->pol->client_max_udp)) {
        STAT_INC(sh->st.client_limited);
        handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_CLIENT_LIMIT);
        return;
    }
    int ret = udp_open(sh, c, handshake_dest(c), rule, &bnd);
    if (ret < 0)
        conn_client_put(sh, c, CLIENT_UDP);
    if (ret == -EPERM) {
        /* The datagram source it declared is not one the rules admit. */
        handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_DENIED);
        return;
    }
    if (ret < 0) {
        handshake_fail(sh, c, socks5_rep_from_errno(ret), END_REPLY_ERR);
        return;
    }
    /* UDP ASSOCIATE has no target stream: bytes pipelined after the request are dropped. */
    handshake_succeed(sh, c, &bnd, udp_start, 0);
}
