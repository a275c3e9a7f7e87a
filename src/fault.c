/*
 * fault.c - which faults a connection commits, and the relay's (fault.h).
 */
#include "fault.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "acl.h"
#include "egress.h"
#include "limit.h"
#include "outbound.h"
#include "policy.h"
#include "shard_types.h"
#include "socks4.h"
#include "socks5.h"

_Static_assert(STAT_FAULT_KINDS == FAULT__COUNT, "a counter per fault kind");

/* rst_down waits for the client to have every byte before the reset, checking its send
 * queue this often, at most this many times (then resets anyway). */
#define RST_POLL_MS  2u
#define RST_POLL_MAX 2500u

/* Faults that act on the request's replies and after, decided once the rule is known. */
#define FAULT_KINDS_REQUEST (~(FAULT_KINDS_GREETING | FAULT_KINDS_AUTH))

static struct conn_fault *
fault_get(struct conn *c)
{
    if (c->fault)
        return c->fault;
    c->fault = calloc(1, sizeof(*c->fault));
    return c->fault;
}

/* Adds the faults of src whose bits are in mask to dst. */
static void
merge(struct fault_set *dst, const struct fault_set *src, uint32_t mask)
{
    for (unsigned k = 0; k < FAULT__COUNT; k++) {
        if (!(src->kinds & mask & (1u << k)))
            continue;
        dst->kinds |= 1u << k;
        dst->arg[k] = src->arg[k];
    }
}

void
fault_ask(struct conn *c, const struct fault_set *asked)
{
    if (!asked->kinds)
        return;
    struct conn_fault *f = fault_get(c);
    if (f)
        f->asked = *asked;
}

/*
 * The rule's faults (mask) and, where it allows them, the asked ones into c's; a refused
 * ask is counted when count says so. The asks stay: another rule may decide again
 * (fault_request()). NULL: nothing for this phase (or out of memory: no fault, the
 * connection is served as it asked).
 */
static struct conn_fault *
take(struct shard *sh, struct conn *c, int rule, uint32_t mask, bool count)
{
    const struct egress_rule *er = rule >= 0 ? acl_rule_data(sh->pol->acl, rule) : NULL;
    bool asked = c->fault && (c->fault->asked.kinds & mask);
    bool allowed = er && er->fault_allow;
    if (asked && !allowed) {
        if (count)
            STAT_INC(sh->st.fault_asks_refused);
        asked = false;
    }
    if (!asked && !(er && (er->fault.kinds & mask)))
        return c->fault && (c->fault->f.kinds & mask) ? c->fault : NULL;
    struct conn_fault *f = fault_get(c);
    if (!f)
        return NULL;
    if (er)
        merge(&f->f, &er->fault, mask);
    if (asked)
        merge(&f->f, &f->asked, mask);
    return (f->f.kinds & mask) ? f : NULL;
}

struct conn_fault *
fault_before_request(struct shard *sh, struct conn *c, const char *user)
{
    if (!sh->pol->rules_fault || c->version != SOCKS5_VERSION)
        return NULL;
    struct acl_query q = {.client = &c->client, .cmd = ACL_CMD_CONNECT, .user = user};
    int rule = -1;
    if (acl_match(sh->pol->acl, &q, &rule) != ACL_ALLOW)
        rule = -1;
    return take(sh, c, rule, user ? FAULT_KINDS_AUTH : FAULT_KINDS_GREETING, true);
}

int
fault_request(struct shard *sh, struct conn *c, int rule)
{
    if (!sh->pol->rules_fault || (c->version != SOCKS5_VERSION && c->version != SOCKS4_VERSION))
        return -1;
    bool again = c->fault && c->fault->decided;
    if (again) {
        if (c->fault->rule == rule)
            return -1;
        /*
         * Another address of the request, admitted by another rule (request.c tries them
         * in turn, and c->rule follows): its rule decides, not the one of an address that
         * failed. Nothing of the request's faults has acted yet (a refusal ends the
         * request; the others act on the reply and after).
         */
        c->fault->f.kinds &= ~FAULT_KINDS_REQUEST;
    }
    struct conn_fault *f = take(sh, c, rule, FAULT_KINDS_REQUEST, !again);
    if (c->fault) {
        c->fault->decided = true;
        c->fault->rule = rule;
    }
    if (!f)
        return -1;
    if (c->version == SOCKS4_VERSION && fault_has(&f->f, FAULT_REPLY4)) {
        /* The reply carries its code (handshake.c reads it here); the log and the metrics
         * count a SOCKS4 refusal as SOCKS5's general failure, as they count every other. */
        fault_acted(sh, c, FAULT_REPLY4);
        return SOCKS5_REP_GENERAL;
    }
    if (fault_has(&f->f, FAULT_REPLY)) {
        fault_acted(sh, c, FAULT_REPLY);
        return (int)f->f.arg[FAULT_REPLY]; /* a SOCKS4 client gets 0x5b for it */
    }
    if (fault_has(&f->f, FAULT_REPLY4)) {
        fault_acted(sh, c, FAULT_REPLY4);
        return SOCKS5_REP_GENERAL; /* a SOCKS4 code to a SOCKS5 client: its general failure */
    }
    return -1;
}

void
fault_acted(struct shard *sh, struct conn *c, enum fault_kind k)
{
    if (!c->fault || (c->fault->acted & (1u << k)))
        return;
    c->fault->acted |= 1u << k;
    STAT_INC(sh->st.faults[k]);
}

void
fault_sleep(struct shard *sh, struct conn *c, unsigned arg, uint32_t ms)
{
    struct conn_fault *f = c->fault;
    f->ts[arg].tv_sec = ms / 1000;
    f->ts[arg].tv_nsec = (long long)(ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_FAULT, arg);
    io_uring_prep_timeout(sqe, &f->ts[arg], 0, 0);
    f->timers |= FAULT_TIMER(arg);
}

void
fault_timer_done(struct conn *c, unsigned arg)
{
    if (c->fault)
        c->fault->timers &= (uint8_t)~FAULT_TIMER(arg);
}

void
fault_relay_start(struct shard *sh, struct conn *c)
{
    if (fault_has(&c->fault->f, FAULT_THROTTLE) &&
        limit_tunnel_rate(c, c->fault->f.arg[FAULT_THROTTLE]) == 0)
        fault_acted(sh, c, FAULT_THROTTLE);
}

/* The cut of direction d: its fault kind (a reset before a close), or -1 for none. */
static int
cut_of(const struct conn *c, unsigned d)
{
    const struct fault_set *f = &c->fault->f;
    enum fault_kind rst = d == DIR_T2C ? FAULT_RST_DOWN : FAULT_RST_UP;
    enum fault_kind fin = d == DIR_T2C ? FAULT_FIN_DOWN : FAULT_FIN_UP;
    return fault_has(f, rst) ? (int)rst : fault_has(f, fin) ? (int)fin : -1;
}

uint32_t
fault_relay_budget(const struct conn *c, unsigned d, uint32_t budget)
{
    int k = cut_of(c, d);
    if (k < 0)
        return budget;
    uint64_t n = c->fault->f.arg[k], done = c->dir[d].bytes;
    uint64_t left = n > done ? n - done : 0;
    return left < budget ? (uint32_t)left : budget;
}

bool
fault_relay_cut(struct shard *sh, struct conn *c, unsigned d)
{
    int k = cut_of(c, d);
    if (k < 0 || c->dir[d].bytes < c->fault->f.arg[k])
        return false;
    struct conn_fault *f = c->fault;
    bool rst = k == FAULT_RST_DOWN || k == FAULT_RST_UP;
    if (rst && d == DIR_T2C) {
        /* The client must have the bytes before the reset, which discards what its socket
         * still holds: wait until our send queue towards it is empty (acknowledged). */
        int queued = 0;
        if (ioctl(c->cfd, SIOCOUTQ, &queued) == 0 && queued > 0 && f->rst_polls < RST_POLL_MAX) {
            f->rst_polls++;
            fault_sleep(sh, c, d, RST_POLL_MS);
            c->dir[d].ops++;
            return true;
        }
    }
    fault_acted(sh, c, (enum fault_kind)k);
    if (rst)
        conn_abort_fd(c->cfd);
    conn_close(sh, c, END_FAULT);
    return true;
}

unsigned
fault_dice(struct shard *sh)
{
    return (unsigned)(((outbound_rand(sh) >> 32) * 100u) >> 32);
}
