/*
 * request.c - the request phase: from a complete request to a connected
 * target (CONNECT), a listening socket (BIND, bind.c) or an association
 * (UDP ASSOCIATE, udp.c).
 *
 * Shard thread only. The resolve ladder: an address in the request (the
 * parsers turn IP literals into addresses), then the hosts table and the
 * RFC 6761 localhost names, then DNS (dns.c, answered through
 * conn_resolved()). Every address is checked against the rules before it is
 * tried, so a name cannot lead into a denied range. The addresses are tried
 * as RFC 8305 (Happy Eyeballs) says: families interleaved (happy.c), the next
 * address started when the previous failed or has not connected within
 * happy_eyeballs_delay, at most two attempts at once, the first to connect
 * wins and the other is cancelled; connect_timeout bounds all of it. The
 * outcome is answered through the handshake (handshake_fail(),
 * handshake_succeed()), and the success only once no attempt and no delay of
 * this phase is in flight any more: the relay phase never sees them.
 */
#include "request.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acct.h"
#include "acl.h"
#include "bind.h"
#include "chain.h"
#include "dns.h"
#include "happy.h"
#include "handshake.h"
#include "egress.h"
#include "hosts.h"
#include "limit.h"
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
    if (er->family == HAPPY_IPV4)
        return family == AF_INET;
    if (er->family == HAPPY_IPV6)
        return family == AF_INET6;
    return true;
}

/* hs->he_flags */
#define HE_DELAY  0x01u /* OP_CONNECT_DELAY is in flight */
#define HE_WON    0x02u /* an attempt connected (now c->tfd): the others are being cancelled */
#define HE_FAILED 0x04u /* the error reply is decided: completions only clean up */
#define HE_LEASE  0x08u /* parked on sh->lease_wait for the user's fleet lease (limit.h) */
#define HE_VIA    0x10u /* an address for a parent waits for the delay's cancellation */

/* A socket for a connect to a with the admitting rule's settings (outbound_socket()). */
static int
open_target(struct shard *sh, struct conn *c, const union sockaddr_inx *a, int rule)
{
    /* Bytes the client sent after its request can ride in the SYN (rule key fastopen). */
    enum outbound_use use =
        c->hs->in_off < c->hs->in_len ? OUTBOUND_CONNECT_DATA : OUTBOUND_CONNECT;
    return outbound_socket(sh, c, a->sa.sa_family, rule, use);
}

/* Attempt a's socket: the first on c->tfd, the second on c->xfd. */
static int *
att_fd(struct conn *c, unsigned a)
{
    return a ? &c->xfd : &c->tfd;
}

static void
cancel_op(struct shard *sh, struct conn *c, unsigned op, unsigned arg)
{
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL, 0);
    io_uring_prep_cancel64(sqe, conn_ud(c, op, arg), 0);
}

/* Cancel the attempts in flight and the delay; their completions still come to on_cqe(). */
static void
cancel_attempts(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    for (unsigned a = 0; a < 2; a++)
        if (h->att_live & (1u << a))
            cancel_op(sh, c, OP_CONNECT, a);
    if (h->he_flags & HE_DELAY)
        cancel_op(sh, c, OP_CONNECT_DELAY, 0);
}

/* Nothing left to try, nothing in flight: the error reply. */
static void
give_up(struct shard *sh, struct conn *c, uint8_t rep, bool denied)
{
    struct hs *h = c->hs;
    h->he_flags |= HE_FAILED;
    cancel_attempts(sh, c); /* the delay, if it runs: the close would wait for it */
    if (denied)
        deny(sh, c);
    else
        fail(sh, c, rep);
}

/*
 * RFC 8305 section 5: while one attempt is in flight and addresses are left,
 * the next joins it after happy_eyeballs_delay. At most two attempts run at
 * once (the op's argument bit and c->tfd/c->xfd tell them apart): the first
 * two addresses are one of each family when both exist (happy_order()), which
 * is what the delay is for; a third starts when one of the two fails.
 */
static void
arm_delay(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    unsigned ms = sh->pol->happy_eyeballs_delay_ms;
    if (ms == 0 || h->att_live == 3 || (h->he_flags & HE_DELAY) || h->next_addr >= h->n_addrs)
        return;
    h->he_ts.tv_sec = ms / 1000;
    h->he_ts.tv_nsec = (long long)(ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CONNECT_DELAY, 0);
    io_uring_prep_timeout(sqe, &h->he_ts, 0, 0);
    h->he_flags |= HE_DELAY;
}

static void resolve(struct shard *sh, struct conn *c);

/*
 * Start the next address the rules allow in a free attempt; with none left and
 * nothing in flight, the error reply (the last errno; 0x02 when every address
 * was denied and none tried).
 */
static void
connect_next(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    bool denied = false;
    c->state = CONN_CONNECT;
    unsigned a = h->att_live & 1u;
    while (h->att_live != 3 && h->next_addr < h->n_addrs) {
        unsigned i = h->next_addr++;
        const union sockaddr_inx *ad = &h->addrs[i];
        /* Checked on the address itself, so a name cannot lead into a denied range. */
        union sockaddr_inx plain = *ad;
        addr_unmap(&plain);
        /* Family 0: the name itself, for a parent to resolve (chain_by_name()). */
        bool by_name = !ad->sa.sa_family;
        int rule;
        if (!conn_allowed(sh, c, by_name ? NULL : &plain, c->host, c->port, &rule)) {
            denied = true;
            continue;
        }
        if (handshake_fault(sh, c, rule)) {
            /* A refusal the rule's fault forces: nothing is tried. */
            h->he_flags |= HE_FAILED;
            cancel_attempts(sh, c);
            return;
        }
        struct via_list *via = policy_rule_via(sh->pol, rule);
        if (by_name && !via) {
            /* A reload while it waited for a lease took the parents away: resolve it here. */
            resolve(sh, c);
            return;
        }
        if (via && (h->att_live || (h->he_flags & HE_DELAY))) {
            /*
             * A parent takes the tunnel alone, and the chain phase must never see this
             * phase's ops: after the attempt in flight, if it fails, and after the delay,
             * which is cancelled (its completion then comes back here).
             */
            h->next_addr--;
            if (!h->att_live && !(h->he_flags & HE_VIA)) {
                h->he_flags |= HE_VIA;
                cancel_op(sh, c, OP_CONNECT_DELAY, 0);
            }
            return;
        }
        if (!via && !family_allowed(sh, rule, ad->sa.sa_family)) {
            h->last_err = -EAFNOSUPPORT;
            continue;
        }
        /* The first address that may go out takes the tunnel's places (limit.h). */
        enum conn_end over = limit_admit(sh, c, rule, true);
        if (over == LIMIT_LEASE_WAIT) {
            /* Nothing in flight (admission comes before the first attempt): park until the
             * control thread has asked Redis, then this address again (request_leases()). */
            h->next_addr--;
            if (udq_push(&sh->lease_wait, conn_ref(c, 0)) == 0) {
                h->he_flags |= HE_LEASE;
                STAT_INC(sh->st.lease_waits);
                return;
            }
            over = END_LIMIT_CONNS;
        }
        if (over != END_NONE) {
            h->he_flags |= HE_FAILED;
            cancel_attempts(sh, c);
            handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, over);
            return;
        }
        if (via) {
            if (!by_name)
                c->dest = plain;
            chain_start(sh, c, via, rule, by_name ? NULL : &plain);
            return;
        }
        int fd = open_target(sh, c, ad, rule);
        if (fd < 0) {
            h->last_err = fd;
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM)
                break;
            continue;
        }
        c->dest = plain; /* the address tried last, until one connects */
        *att_fd(c, a) = fd;
        h->att_addr[a] = (uint8_t)i;
        h->att_live |= (uint8_t)(1u << a);
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CONNECT, a);
        io_uring_prep_connect(sqe, fd, &ad->sa, addr_len(&ad->sa));
        arm_delay(sh, c);
        return;
    }
    if (h->att_live)
        return; /* the attempt in flight decides */
    uint8_t rep = socks5_rep_from_errno(h->last_err ? h->last_err : -EHOSTUNREACH);
    if (h->last_err == -EAFNOSUPPORT) /* no source address of the target's family */
        rep = c->host ? SOCKS5_REP_HOST_UNREACH : SOCKS5_REP_NET_UNREACH;
    give_up(sh, c, rep, denied && !h->last_err);
}

/*
 * The family policy (rule key family) for ordering a request's addresses: that of the
 * rule admitting it before its address is known (a rule with "to" needs the address, so
 * it is not asked). Each address is still filtered by the family of the rule that admits
 * that address (family_allowed()).
 */
/* The request as the rules see it before its name is resolved (what a rule's via or
 * family decides on). */
static struct policy_req
name_req(const struct conn *c)
{
    return (struct policy_req){.client = &c->client,
                               .cmd = c->cmd,
                               .user = c->user,
                               .host = c->host,
                               .port = c->port,
                               .gss = c->gss};
}

static enum happy_family
request_family(struct shard *sh, struct conn *c)
{
    /* Most rule sets have no family: then no second rule match per CONNECT. */
    if (!sh->pol->rules_family)
        return HAPPY_ANY;
    struct policy_req r = name_req(c);
    int rule;
    if (!policy_allows_rule(sh->pol, sh->o, &r, &rule))
        return HAPPY_ANY;
    const struct egress_rule *er = acl_rule_data(sh->pol->acl, rule);
    return er ? (enum happy_family)er->family : HAPPY_ANY;
}

/* The addresses are known: order them for fam (RFC 8305 section 4) and start. */
static void
connect_start(struct shard *sh, struct conn *c, enum happy_family fam)
{
    struct hs *h = c->hs;
    union sockaddr_inx ordered[HS_MAX_ADDRS];
    h->n_addrs = (uint8_t)happy_order(h->addrs, h->n_addrs, fam, ordered);
    memcpy(h->addrs, ordered, h->n_addrs * sizeof(ordered[0]));
    h->next_addr = 0;
    h->att_live = 0;
    h->he_flags = 0;
    h->last_err = 0;
    if (h->n_addrs == 0) {
        /* None of the family asked for: as if no route (an address) or no address (a name). */
        fail(sh, c,
             handshake_dest(c)->atyp == SOCKS5_ATYP_DOMAIN ? SOCKS5_REP_HOST_UNREACH
                                                           : SOCKS5_REP_NET_UNREACH);
        return;
    }
    connect_next(sh, c);
}

/* The addresses of the request are known: go on with its command. */
static void
addrs_ready(struct shard *sh, struct conn *c)
{
    if (c->cmd == SOCKS5_CMD_BIND)
        bind_start(sh, c);
    else
        connect_start(sh, c, request_family(sh, c));
}

/*
 * A name, never an address in disguise (the parsers turned IP literals into
 * addresses and refused names with ports, brackets or zones): the hosts table,
 * else DNS.
 */
static void
resolve(struct shard *sh, struct conn *c)
{
    struct hs *h = c->hs;
    const struct socks_dest *d = handshake_dest(c);
    h->n_addrs = (uint8_t)hosts_lookup(sh->hosts, d->u.name, d->port, h->addrs, HS_MAX_ADDRS);
    if (h->n_addrs == 0) {
        c->state = CONN_RESOLVE;
        c->hs_flags |= HSF_DNS;
        dns_resolve(sh, d->u.name, d->port, conn_ref(c, 0));
        return;
    }
    addrs_ready(sh, c);
}

/*
 * A CONNECT to a name that a rule with parents admits on the name alone (its
 * host, port, user, client; a rule with "to" needs an address and matches no
 * name) goes to the parent as the name, unresolved here: socks5h's meaning, and
 * no local DNS for names only the parent can resolve. false: resolve it.
 */
static bool
chain_by_name(struct shard *sh, struct conn *c)
{
    if (!sh->pol->rules_via || c->cmd != SOCKS5_CMD_CONNECT || !c->host)
        return false;
    struct policy_req r = name_req(c);
    int rule;
    if (!policy_allows_rule(sh->pol, sh->o, &r, &rule) || !policy_rule_via(sh->pol, rule))
        return false;
    struct hs *h = c->hs;
    memset(&h->addrs[0], 0, sizeof(h->addrs[0]));
    h->n_addrs = 1;
    h->next_addr = 0;
    h->att_live = 0;
    h->he_flags = 0;
    h->last_err = 0;
    connect_next(sh, c);
    return true;
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
        addrs_ready(sh, c);
    } else if (!chain_by_name(sh, c)) {
        resolve(sh, c);
    }
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
    if (err == -ENOMEM || err == -EMFILE) {
        /* The resolver had no memory for the question, or no socket to ask it on (out of
         * fds, dns.c): no verdict on the name (0x04 would say it has no address), a resource
         * failure, as chain_start()'s. */
        handshake_fail(sh, c, SOCKS5_REP_GENERAL, END_RESOURCE);
        return;
    }
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

/*
 * connect_timeout: give up the name, or cancel every attempt and the delay
 * (answered 0x06 when the last attempt has come back). Any other list (the
 * handshake's, while a reply is written): close.
 */
static void
on_timeout(struct shard *sh, struct conn *c, enum tlist_id tl)
{
    if (tl == TL_CONNECT && c->state == CONN_RESOLVE) {
        c->hs_flags &= (uint8_t)~HSF_DNS;
        fail(sh, c, SOCKS5_REP_HOST_UNREACH);
    } else if (tl == TL_CONNECT && c->state == CONN_CONNECT) {
        struct hs *h = c->hs;
        if (h->he_flags & (HE_WON | HE_FAILED))
            return; /* the reply is decided and only waits for cancellations */
        c->hs_flags |= HSF_TIMED_OUT;
        if (h->he_flags & HE_LEASE) {
            /* No lease came in connect_timeout (Redis slow, fleet full): refused, as over. */
            h->he_flags = (uint8_t)((h->he_flags & ~HE_LEASE) | HE_FAILED);
            handshake_fail(sh, c, SOCKS5_REP_NOT_ALLOWED, END_LIMIT_CONNS);
        } else if (h->att_live)
            cancel_attempts(sh, c);
        else
            give_up(sh, c, SOCKS5_REP_TTL_EXPIRED, false);
    } else {
        conn_close(sh, c, END_HS_TIMEOUT);
    }
}

/* Attempt a's connect completed with res. */
static void
on_connect(struct shard *sh, struct conn *c, unsigned a, int res)
{
    struct hs *h = c->hs;
    h->att_live &= (uint8_t) ~(1u << a);
    if (h->he_flags & HE_WON) {
        /* The loser, cancelled or connected too late: the winner is c->tfd, this is c->xfd. */
        close(c->xfd);
        c->xfd = -1;
        return;
    }
    if (res == 0) {
        if (a == 1) {
            int fd = c->tfd;
            c->tfd = c->xfd;
            c->xfd = fd;
        }
        c->dest = h->addrs[h->att_addr[a]];
        addr_unmap(&c->dest);
        h->he_flags |= HE_WON;
        cancel_attempts(sh, c);
        return;
    }
    int *fd = att_fd(c, a);
    close(*fd);
    *fd = -1;
    if (h->he_flags & HE_FAILED)
        return;
    if (c->hs_flags & HSF_TIMED_OUT) {
        if (!h->att_live)
            give_up(sh, c, SOCKS5_REP_TTL_EXPIRED, false);
        return;
    }
    /* RFC 8305 section 5: a failed attempt starts the next at once. */
    h->last_err = res;
    connect_next(sh, c);
}

static void
on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    unsigned op = ud_op(cqe->user_data);
    if (op != OP_CONNECT && op != OP_CONNECT_DELAY) {
        /* A reply of the handshake still being written (a pipelining client's). */
        handshake_on_cqe(sh, c, cqe);
        return;
    }
    if (c->state == CONN_CLOSING)
        return; /* c->tfd and c->xfd are closed when the slot is freed */
    struct hs *h = c->hs;
    if (op == OP_CONNECT) {
        on_connect(sh, c, ud_arg(cqe->user_data), cqe->res);
    } else {
        h->he_flags &= (uint8_t)~HE_DELAY;
        /* -ETIME: the delay passed with an attempt still out (-ECANCELED: we stopped it,
         * for an address that goes to a parent: HE_VIA). */
        bool via = h->he_flags & HE_VIA;
        h->he_flags &= (uint8_t)~HE_VIA;
        if (!(h->he_flags & (HE_WON | HE_FAILED)) && !(c->hs_flags & HSF_TIMED_OUT) &&
            (cqe->res == -ETIME || via))
            connect_next(sh, c);
    }
    /*
     * The success reply goes out once no attempt and no delay is in flight: after
     * it the connection moves to the relay phase, which must never see them.
     */
    if ((h->he_flags & HE_WON) && !h->att_live && !(h->he_flags & HE_DELAY) &&
        c->state == CONN_CONNECT) {
        union sockaddr_inx bnd;
        socklen_t len = sizeof(bnd);
        if (getsockname(c->tfd, &bnd.sa, &len) == -1)
            bnd.sa.sa_family = AF_UNSPEC;
        c->src = bnd; /* where the tunnel left from, for the access log */
        addr_unmap(&c->src);
        handshake_succeed(sh, c, &bnd, relay_start, HS_FORWARD_UNREAD);
    }
}

void
request_tick(struct shard *sh)
{
    request_leases(sh);
    /* Resolves and connects are watched once they have lasted a second: most finish
     * sooner, and a watch costs an SQE and a CQE. */
    for (struct conn *c = conn_timer_first(sh, TL_CONNECT); c; c = conn_timer_next(sh, c)) {
        if (sh->now_ds - c->stamp_ds < 10)
            break;
        if (c->state == CONN_RESOLVE || c->state == CONN_CONNECT)
            conn_watch_hangup(sh, c);
    }
}

void
request_leases(struct shard *sh)
{
    if (!sh->leases || !sh->lease_wait.len)
        return;
    uint64_t gen = atomic_load_explicit(&sh->leases->gen, memory_order_acquire);
    if (gen == sh->lease_gen)
        return;
    sh->lease_gen = gen;
    /* Those parked now, once each: one that parks again waits for the next answer. */
    uint64_t ref;
    for (uint32_t n = sh->lease_wait.len; n && udq_pop(&sh->lease_wait, &ref); n--) {
        struct conn *c = conn_from_ref(sh, ref);
        if (!c || c->state != CONN_CONNECT || !(c->hs->he_flags & HE_LEASE))
            continue; /* closed or timed out while it waited */
        c->hs->he_flags &= (uint8_t)~HE_LEASE;
        connect_next(sh, c);
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
