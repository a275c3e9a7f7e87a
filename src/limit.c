/*
 * limit.c - the limits applied to one tunnel on its shard (limit.h).
 */
#include "limit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "acct.h"
#include "acl.h"
#include "climap.h"
#include "egress.h"
#include "policy.h"
#include "shard_types.h"
#include "users.h"

/* Effective limits: rule over line over default, unset fields "no limit". */
static void
effective(struct lim_conf *out, const struct lim_conf *rule, const struct lim_conf *line,
          const struct lim_conf *dflt)
{
    lim_conf_unset(out);
    if (rule)
        lim_conf_merge(out, rule);
    if (line)
        lim_conf_merge(out, line);
    lim_conf_merge(out, dflt);
}

/* The new-tunnel bucket of n at rate per second, burst b (0: as many as the rate). */
static bool
rate_take(struct lim_node *n, uint64_t rate, uint64_t burst)
{
    if (!rate)
        return true; /* no clock read for a tunnel without a rate */
    uint64_t cost = 1000000000ull / rate;
    if (cost == 0)
        cost = 1;
    if (!burst)
        burst = rate;
    return gcra_take(&n->rate_tat, lim_now_ns(), cost, (burst - 1) * cost, NULL);
}

/* c's bandwidth settings, or nothing when no rate applies. */
static void
bw_init(struct conn_lim *l, const struct lim_conf *u, bool user, const struct lim_conf *cl,
        bool client)
{
    for (unsigned d = 0; d < 2; d++) {
        struct conn_lim_bw *b = &l->bw[d];
        uint64_t t_user = lim_val(u->tunnel_bw[d]), t_cl = lim_val(cl->tunnel_bw[d]);
        /* The tunnel's own rate: the smaller of the user's and the client's per-tunnel rates. */
        b->rate[0] = t_user && t_cl ? (t_user < t_cl ? t_user : t_cl) : (t_user ? t_user : t_cl);
        b->rate[1] = user ? lim_val(u->bw[d]) : 0;
        b->rate[2] = client ? lim_val(cl->bw[d]) : 0;
        b->on = b->rate[0] || b->rate[1] || b->rate[2];
        atomic_init(&b->tunnel_tat, 0);
    }
}

/*
 * Take a place for a tunnel of a under max (0: no limit), or under a
 * fleet's lease when it is smaller (acct.h). Without a fleet, or with no
 * lease in force (LEASE_NONE: redis_fallback = open while Redis is away),
 * max alone decides.
 */
static bool
conns_take(const struct shard *sh, struct uacct *a, uint64_t max)
{
    uint64_t lease =
        max && sh->leases ? atomic_load_explicit(&a->lease, memory_order_acquire) : LEASE_NONE;
    if (lease == LEASE_NONE || lease >= max)
        return lim_open_take(&a->n, max);
    return lease && lim_open_take(&a->n, lease);
}

/*
 * One of the new-tunnel tokens this node holds for a (a fleet's rate): 1 taken; 0 none and
 * Redis said the bucket is dry (refused); -1 none, ask Redis for more.
 */
static int
fleet_token_take(struct uacct *a)
{
    uint64_t t = atomic_load_explicit(&a->rate_tokens, memory_order_acquire);
    while (t)
        if (atomic_compare_exchange_weak_explicit(&a->rate_tokens, &t, t - 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return 1;
    uint64_t dry = atomic_load_explicit(&a->rate_dry_until, memory_order_acquire);
    return dry && lim_now_ns() < dry ? 0 : -1;
}

/*
 * The user's own new-tunnel rate (its users-file line's, else user_limits'; not a rule's)
 * is the fleet's: a fleet, Redis reachable or redis_fallback closed, and such a rate.
 */
static bool
fleet_rate_on(const struct shard *sh, const struct lim_conf *line, const struct lim_conf *dflt)
{
    if (!sh->leases || atomic_load_explicit(&sh->leases->local_rate, memory_order_acquire))
        return false;
    uint64_t r = line && line->rate != LIM_UNSET ? line->rate : dflt->rate;
    return lim_val(r) != 0;
}

/* Refused under max only for want of a lease, and Redis has not said the fleet is full. */
static bool
lease_spent(const struct shard *sh, struct uacct *a, uint64_t max)
{
    if (!max || !sh->leases)
        return false;
    uint64_t lease = atomic_load_explicit(&a->lease, memory_order_acquire);
    return lease != LEASE_NONE && lease < max &&
           !atomic_load_explicit(&a->lease_full, memory_order_acquire);
}

enum conn_end
limit_admit(struct shard *sh, struct conn *c, int rule, bool can_wait)
{
    const struct policy *p = sh->pol;
    if (c->flags & CONN_F_ADMITTED)
        return END_NONE;
    const struct egress_rule *er = rule >= 0 && p->rules_lim ? acl_rule_data(p->acl, rule) : NULL;
    if (er && !er->has_lim)
        er = NULL;
    struct users_info ui;
    bool user = c->user && users_info(p->users, c->user, &ui) && ui.acct;
    /* The common case of no user and no client limit: nothing to hold. */
    struct lim_conf cl;
    effective(&cl, er ? &er->client_lim : NULL, NULL, &p->client_lim);
    bool client = sh->climap && !lim_conf_none(&cl);
    if (!user && !client) {
        c->flags |= CONN_F_ADMITTED;
        return END_NONE;
    }
    struct lim_conf ul;
    effective(&ul, er ? &er->lim : NULL, user ? ui.lim : NULL, &p->user_lim);
    struct uacct *a = user ? ui.acct : NULL;
    enum conn_end why = END_NONE;
    enum lim_hit hit = LIMH_CONNS;
    if (a && atomic_load_explicit(&a->blocked, memory_order_relaxed)) {
        why = END_BLOCKED;
        hit = LIMH_BLOCKED;
    } else if (a && lim_val(ul.quota) &&
               atomic_load_explicit(&a->over_quota, memory_order_relaxed)) {
        why = END_QUOTA;
        hit = LIMH_QUOTA;
    } else if (a && !conns_take(sh, a, lim_val(ul.max_conns))) {
        why = END_LIMIT_CONNS;
        if (lease_spent(sh, a, lim_val(ul.max_conns))) {
            lease_ask(sh->leases, a, LEASE_ASK_CONNS);
            if (can_wait)
                return LIMIT_LEASE_WAIT; /* nothing held, nothing counted yet */
        }
    } else if (a && fleet_rate_on(sh, ui.lim, &p->user_lim)) {
        /* A fleet: the user's own rate (its line's, or user_limits') is Redis's bucket, and
         * this node spends the tokens it took; a rule's rate stays this node's, checked
         * first so that a refusal by it spends no token. */
        int got = er && lim_val(er->lim.rate) &&
                          !rate_take(&a->n, lim_val(er->lim.rate), lim_val(er->lim.burst))
                      ? 0
                      : fleet_token_take(a);
        if (got <= 0) {
            lim_open_put(&a->n);
            why = END_LIMIT_RATE;
            hit = LIMH_RATE;
            if (got < 0) {
                lease_ask(sh->leases, a, LEASE_ASK_RATE);
                if (can_wait)
                    return LIMIT_LEASE_WAIT;
            }
        }
    } else if (a && !rate_take(&a->n, lim_val(ul.rate), lim_val(ul.burst))) {
        lim_open_put(&a->n);
        why = END_LIMIT_RATE;
        hit = LIMH_RATE;
    }
    if (why != END_NONE) {
        lim_hit(&a->n, hit);
        STAT_INC(sh->st.limit_refused[hit]);
        return why;
    }
    struct lim_node *cn = NULL;
    if (client) {
        bool over;
        cn = climap_take(sh->climap, &c->client, lim_val(cl.max_conns), &over);
        if (!cn && over)
            why = END_LIMIT_CONNS;
        else if (cn && !rate_take(cn, lim_val(cl.rate), lim_val(cl.burst))) {
            lim_hit(cn, LIMH_RATE);
            lim_open_put(cn);
            cn = NULL;
            why = END_LIMIT_RATE;
            hit = LIMH_RATE;
        }
        if (why != END_NONE) {
            if (a)
                lim_open_put(&a->n);
            STAT_INC(sh->st.limit_refused[hit]);
            STAT_INC(sh->st.limit_refused_client);
            return why;
        }
    }
    struct conn_lim tmp = {.client = cn};
    bw_init(&tmp, &ul, a != NULL, &cl, cn != NULL);
    if (cn || tmp.bw[0].on || tmp.bw[1].on) {
        c->lim = malloc(sizeof(*c->lim));
        if (!c->lim) {
            /* Out of memory: the tunnel goes on unthrottled rather than not at all. */
            if (cn)
                lim_open_put(cn);
        } else {
            memcpy(c->lim, &tmp, sizeof(tmp));
        }
    }
    if (a) {
        atomic_fetch_add_explicit(&a->n.opened, 1, memory_order_relaxed);
        c->acct = a;
    }
    c->flags |= CONN_F_ADMITTED;
    return END_NONE;
}

int
limit_tunnel_rate(struct conn *c, uint64_t rate)
{
    if (!c->lim) {
        c->lim = calloc(1, sizeof(*c->lim));
        if (!c->lim)
            return -ENOMEM;
        for (unsigned d = 0; d < 2; d++)
            atomic_init(&c->lim->bw[d].tunnel_tat, 0);
    }
    for (unsigned d = 0; d < 2; d++) {
        struct conn_lim_bw *b = &c->lim->bw[d];
        if (!b->rate[0] || rate < b->rate[0])
            b->rate[0] = rate;
        b->on = true;
    }
    return 0;
}
