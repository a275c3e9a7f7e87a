/*
 * lim.h - per-user and per-client-address limits: what is configured
 * (struct lim_conf, from the users file, a config group or a rule), the
 * shared counters every shard updates with atomics (struct lim_node), and
 * the rate buckets (GCRA) that new tunnels and relayed bytes draw from.
 *
 * No locks anywhere: a tunnel count is an atomic add checked against the
 * limit (undone when over, so the limit is never exceeded); a rate is a
 * GCRA "theoretical arrival time" in one atomic word (one CAS per take),
 * which is exact across shards and needs no refill timer. Pure apart from
 * the atomics: the time is always passed in.
 */
#ifndef RINGSOCKS_LIM_H
#define RINGSOCKS_LIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A value not given at this level: the level below decides (rule > user > default). */
#define LIM_UNSET UINT64_MAX

enum lim_period {
    LIM_PERIOD_NONE = 0,
    LIM_PERIOD_DAY,   /* UTC calendar day */
    LIM_PERIOD_MONTH, /* UTC calendar month */
    LIM_PERIOD_TOTAL, /* never resets */
};

/*
 * Limits as written at one level. Every field LIM_UNSET (not given) or a
 * value, where 0 means "no limit" (so a user can be exempted from a
 * default). Directions: [0] up (client to target), [1] down.
 */
struct lim_conf {
    uint64_t max_conns;    /* tunnels open at once */
    uint64_t rate;         /* new tunnels per second */
    uint64_t burst;        /* new tunnels let through at once (default: rate, at least 1) */
    uint64_t bw[2];        /* bytes per second, all the tunnels together */
    uint64_t tunnel_bw[2]; /* bytes per second, each tunnel */
    uint64_t quota;        /* bytes, up plus down, per quota_period */
    uint64_t quota_period; /* enum lim_period */
    uint64_t quota_close;  /* 1: going over the quota closes the open tunnels too */
};

/* Every field LIM_UNSET. */
void lim_conf_unset(struct lim_conf *l);
/* Fill the fields l leaves unset from under. */
void lim_conf_merge(struct lim_conf *l, const struct lim_conf *under);
/* No field sets a limit (all unset or 0). */
bool lim_conf_none(const struct lim_conf *l);
/* Some bandwidth (bw or tunnel_bw) is limited. */
bool lim_conf_has_bw(const struct lim_conf *l);

/*
 * The keys, one list for the users file ("key=value"), the config's
 * user_limits / client_limits groups and a rule's limits group:
 *   max_conns=N  rate=N  burst=N  bw_up=SIZE  bw_down=SIZE
 *   tunnel_bw_up=SIZE  tunnel_bw_down=SIZE  quota=SIZE/day|month|total
 *   quota_close=yes|no
 * SIZE: bytes, with an optional k, M, G, T (x1000) or Ki, Mi, Gi, Ti
 * (x1024) and an optional "B": "10M", "1.5GiB" is not (integers only).
 * Returns 0, or -1 with the reason in err (the caller adds FILE:LINE);
 * -2 when key is not one of the keys.
 */
int lim_conf_set(struct lim_conf *l, const char *key, const char *value, char *err, size_t errlen);
/* "max_conns, rate, ...": the keys, for messages. */
extern const char lim_conf_keys[];
/* Which keys a level accepts (quota makes no sense per rule or per client address). */
#define LIM_KEYS_ALL      0u
#define LIM_KEYS_NO_QUOTA 1u
/* lim_conf_set() for a level: -1 also for a key the level does not accept. */
int lim_conf_set_at(struct lim_conf *l, unsigned keys, const char *key, const char *value,
                    char *err, size_t errlen);
/* A value a LIM_UNSET field stands for when nothing sets it: 0 (no limit). */
static inline uint64_t
lim_val(uint64_t v)
{
    return v == LIM_UNSET ? 0 : v;
}

/*
 * A whole level written as words "key=value key=value" separated by blanks
 * (the users file's attributes, the user_limits and client_limits
 * settings, a rule's limits): each word through lim_conf_set_at(). 0, or -1
 * with the first bad word's reason in err.
 */
int lim_conf_parse(struct lim_conf *l, unsigned keys, const char *text, char *err, size_t errlen);
/* Write l's set fields back as such words ("" when none): its canonical text. */
void lim_conf_format(const struct lim_conf *l, char *buf, size_t cap);

/* "10M" etc. as above: 0 or -1. */
int lim_parse_size(const char *s, uint64_t *out);

/* ---- GCRA rate buckets: one atomic word, the time (ns) the bucket is empty until. */

/*
 * Take one unit of cost ns if the bucket allows it (tat <= now + tau):
 * true and tat moved on; false and *wait_ns (may be NULL) how long until
 * it would. A new-tunnel rate r with burst b: cost 1e9/r, tau (b-1)*cost.
 */
bool gcra_take(_Atomic uint64_t *tat, uint64_t now_ns, uint64_t cost_ns, uint64_t tau_ns,
               uint64_t *wait_ns);
/*
 * Reserve want bytes at rate in the bucket's timeline, whatever it holds:
 * returns when they may be read, in ns of the same clock (now_ns or later:
 * the reservation's end less tau). Every caller gets a place behind those
 * who reserved before it, so directions that ask in turn are served in
 * turn (FIFO), on one shard or many; the bucket is never overdrawn by more
 * than tau plus one reservation.
 */
uint64_t gcra_reserve(_Atomic uint64_t *tat, uint64_t now_ns, uint64_t rate, uint64_t tau_ns,
                      uint64_t want);
/* Give back the time of unused bytes of a grant or reservation. */
void gcra_return(_Atomic uint64_t *tat, uint64_t rate, uint64_t unused);
/*
 * A bandwidth bucket's tolerance: the time of one chunk (lim_chunk(): 10 ms of the rate, or
 * 4 KiB). No more: a direction that comes back from a write while the queue of reservations is
 * shorter than the tolerance reads at once, ahead of those asleep, and with 100 ms one of ten
 * tunnels took 1.3x its share.
 */
uint64_t lim_bw_tau(uint64_t rate);
/* The most one grant of a bucket at rate may be: 10 ms of traffic, at least 4 KiB. */
uint64_t lim_chunk(uint64_t rate);

/* ---- shared counters */

/* What refused or slowed something (per user and per client, and the metrics). */
enum lim_hit {
    LIMH_CONNS = 0, /* max_conns */
    LIMH_RATE,      /* rate */
    LIMH_QUOTA,     /* over the quota */
    LIMH_BLOCKED,   /* blocked by the admin */
    LIMH_BW,        /* a direction waited for bandwidth */
    LIMH__COUNT,
};
const char *lim_hit_str(enum lim_hit h);

/*
 * The counters and buckets of one user or one client address, shared by
 * every shard. open is exact; the rest are statistics (relaxed).
 */
struct lim_node {
    _Alignas(64) _Atomic uint64_t open; /* tunnels open now; LIM_DEAD bit: being freed */
    _Atomic uint64_t rate_tat;          /* new-tunnel bucket */
    _Atomic uint64_t bw_tat[2];         /* bandwidth buckets, per direction */
    _Atomic uint64_t opened;            /* tunnels admitted, since start */
    _Atomic uint64_t bytes[2];          /* relayed, since start: [0] up, [1] down */
    _Atomic uint64_t hits[LIMH__COUNT];
};
#define LIM_DEAD (1ull << 63)

/*
 * Take a place for a tunnel if open < max (0: no limit): exact across
 * threads, never over. false also when the node is dead (LIM_DEAD).
 */
bool lim_open_take(struct lim_node *n, uint64_t max);
void lim_open_put(struct lim_node *n);
static inline void
lim_hit(struct lim_node *n, enum lim_hit h)
{
    atomic_fetch_add_explicit(&n->hits[h], 1, memory_order_relaxed);
}
static inline void
lim_bytes(struct lim_node *n, unsigned dir, uint64_t b)
{
    atomic_fetch_add_explicit(&n->bytes[dir], b, memory_order_relaxed);
}

/* CLOCK_MONOTONIC in ns (the buckets' clock). */
uint64_t lim_now_ns(void);

#endif
