/*
 * acct.h - each user's running state, kept across reloads: the shared
 * counters and buckets of its limits (lim.h), the admin's block, the quota
 * period, and what the accounting export has written so far.
 *
 * The registry (struct acct_reg) is the control thread's: it creates an
 * entry the first time a users file names a user and keeps it for the
 * life of the process (a user removed and added again keeps its counts; the
 * memory is bounded by the names ever loaded). Shards never search it: the
 * policy's users table points each of its users at the entry
 * (users_link()), and a tunnel keeps the pointer; entries are never freed
 * while shards run, so the pointer stays good.
 */
#ifndef RINGSOCKS_ACCT_H
#define RINGSOCKS_ACCT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lim.h"

struct uacct {
    struct lim_node n;      /* written by shards (atomics) */
    atomic_bool blocked;    /* by the admin (POST /users/NAME/block), kept in the state file */
    atomic_bool over_quota; /* set by the control thread: new tunnels get 0x02 */
    /*
     * A fleet (redis, fleet.h): the tunnels this node may hold for the user under its
     * max_conns, leased from Redis by the control thread (LEASE_NONE: no lease applies,
     * the local max_conns does). A shard that finds the lease spent asks for more
     * (lease_ask, then the user goes on the board's stack); lease_full says Redis
     * answered that the fleet has no more, so the request is refused, not parked.
     */
    _Atomic uint64_t lease;
    atomic_bool lease_full;
    atomic_bool lease_ask;
    /*
     * The fleet's new-tunnel rate: tokens this node took from the user's bucket in Redis
     * (each admits one tunnel), and until when (lim_now_ns()) Redis said it is empty, so
     * requests are refused without asking again. want_conns / want_rate: what the ask is for.
     */
    _Atomic uint64_t rate_tokens;
    _Atomic uint64_t rate_dry_until;
    atomic_bool want_conns, want_rate;
    struct uacct *_Atomic ask_next; /* the board's stack of users asking */
    char *name;
    /* Control thread only. */
    struct acct_ctl {
        uint64_t bytes[2], opened, hits[LIMH__COUNT]; /* as of the last accounting line */
        uint64_t quota_used;   /* bytes of the current period counted before quota_mark */
        uint64_t quota_mark;   /* n.bytes[0] + n.bytes[1] when quota_used was taken */
        uint32_t quota_period; /* the period's number (days or months since 1970) */
        uint8_t quota_kind;    /* enum lim_period quota_period counts in (NONE: no quota) */
        bool closed_for_quota; /* its tunnels were closed for this period already */
        bool in_users;         /* the current users table names it */
        /* Its effective quota (the users-file line, else user_limits), as of policy q_gen. */
        uint64_t q_bytes; /* 0: none */
        uint8_t q_kind;   /* enum lim_period */
        bool q_close;
        uint64_t q_gen;
        uint32_t metrics_rank; /* its place among the users with a label of their own; 0: none */
        /* A fleet (fleet.h): the other nodes' use of the current quota period, as Redis
         * last said (0: none, or no fleet), and this node's exchanges with Redis. */
        uint64_t fleet_others;
        uint64_t fleet_pushed, fleet_pushed_ms; /* the quota figure last written, and when */
        bool lease_pending, quota_pending, rate_pending; /* a request is out */
    } ctl;
};

#define LEASE_NONE UINT64_MAX

/*
 * The lease board, one per process when a fleet is configured: the users
 * whose lease a shard found spent (a lock-free stack the control thread
 * empties at once), and a generation the control thread bumps after
 * leases changed, so shards retry the requests they parked.
 */
struct lease_board {
    struct uacct *_Atomic asks;
    _Atomic uint64_t gen;
    atomic_bool local_rate; /* Redis away, redis_fallback = open: the local buckets decide */
    int wake_fd;            /* eventfd the control thread polls, rung by a first ask; -1: none */
};

/*
 * Shard: a's lease of places (LEASE_ASK_CONNS) or of new-tunnel tokens (LEASE_ASK_RATE) is
 * spent: ask once for more (a goes on the stack unless it is there already).
 */
#define LEASE_ASK_CONNS 1u
#define LEASE_ASK_RATE  2u
void lease_ask(struct lease_board *b, struct uacct *a, unsigned what);
/* Control thread: each user asking, once, to fn (its ask is cleared first). How many. */
size_t lease_asks_take(struct lease_board *b, void (*fn)(void *arg, struct uacct *a), void *arg);

struct acct_reg;

struct acct_reg *acct_reg_new(void);
void acct_reg_free(struct acct_reg *r);
/* The user's entry, made (zeroed) if there is none: NULL only when out of memory. */
struct uacct *acct_get(struct acct_reg *r, const char *name);
/* The user's entry, or NULL. */
struct uacct *acct_find(const struct acct_reg *r, const char *name);
/* Entries in order of creation, for walks: i < acct_count(). */
size_t acct_count(const struct acct_reg *r);
struct uacct *acct_at(const struct acct_reg *r, size_t i);

#endif
