/*
 * limit_bw.c - the bandwidth grants the relay asks for a tunnel under a
 * bandwidth limit (limit.h), apart from the admission so that the relay
 * needs nothing but the buckets.
 */
#include "limit.h"

#include "acct.h"
#include "shard_types.h"

/* The shared bucket of rate index i (1: the user's, 2: the client's) of direction d. */
static _Atomic uint64_t *
bucket(struct conn *c, unsigned d, unsigned i)
{
    if (i == 0)
        return &c->lim->bw[d].tunnel_tat;
    return i == 1 ? &c->acct->n.bw_tat[d] : &c->lim->client->bw_tat[d];
}

uint32_t
limit_grant(struct shard *sh, struct conn *c, unsigned d, uint32_t want, uint64_t *wait_ns)
{
    struct conn_lim_bw *b = &c->lim->bw[d];
    uint64_t now = lim_now_ns(), ready = now, g = want;
    if (!b->reserved) {
        for (unsigned i = 0; i < 3; i++)
            if (b->rate[i] && lim_chunk(b->rate[i]) < g)
                g = lim_chunk(b->rate[i]);
        for (unsigned i = 0; i < 3; i++) {
            if (!b->rate[i] || (i == 1 && !c->acct) || (i == 2 && !c->lim->client))
                continue;
            uint64_t r = gcra_reserve(bucket(c, d, i), now, b->rate[i], lim_bw_tau(b->rate[i]), g);
            if (r > ready)
                ready = r;
        }
        if (ready <= now)
            return (uint32_t)g;
        b->reserved = (uint32_t)g;
        b->ready_ns = ready;
        STAT_INC(sh->st.bw_waits);
        if (c->acct && b->rate[1])
            lim_hit(&c->acct->n, LIMH_BW);
    } else if (b->ready_ns <= now) {
        g = b->reserved < want ? b->reserved : want;
        if (b->reserved > g)
            limit_unused(c, d, b->reserved - (uint32_t)g);
        b->reserved = 0;
        return (uint32_t)g;
    }
    uint64_t w = b->ready_ns - now;
    *wait_ns = w < LIMIT_WAIT_MAX_NS ? w : LIMIT_WAIT_MAX_NS;
    return 0;
}

void
limit_unused(struct conn *c, unsigned d, uint32_t unused)
{
    struct conn_lim_bw *b = &c->lim->bw[d];
    for (unsigned i = 0; i < 3 && unused; i++) {
        if (!b->rate[i] || (i == 1 && !c->acct) || (i == 2 && !c->lim->client))
            continue;
        gcra_return(bucket(c, d, i), b->rate[i], unused);
    }
}

struct __kernel_timespec *
limit_timer(struct conn *c, unsigned d, uint64_t wait_ns)
{
    struct __kernel_timespec *ts = &c->lim->ts[d];
    ts->tv_sec = (long long)(wait_ns / 1000000000ull);
    ts->tv_nsec = (long long)(wait_ns % 1000000000ull);
    return ts;
}
