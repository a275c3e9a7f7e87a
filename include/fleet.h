/*
 * fleet.h - state shared by every node of a fleet, in Redis (hiredis), kept
 * by the control thread alone: shards never wait on Redis.
 *
 *  - Tunnels at once (max_conns): each node holds a lease, a number of a
 *    user's tunnels it may have open, in one Redis hash per user (a field
 *    per node and process, with an expiry). The leases of all nodes never
 *    add up to more than max_conns, so the fleet never exceeds it. A shard
 *    admits within its lease with the same atomic add as ever; when the
 *    lease is spent, the request waits (parked, never blocking the shard)
 *    for one round trip of the control thread to Redis (acct.h, limit.h).
 *  - New-tunnel rates: the user's bucket (GCRA) is in Redis; a node takes
 *    a few tokens at a time (a quarter interval's worth of the rate, at
 *    least one) and admits one tunnel per token; an empty bucket says how
 *    long until its next token, and requests are refused until then.
 *  - Quotas: each node writes what it counted in the period (an absolute
 *    figure, so a lost write or a restarted Redis loses nothing) and reads
 *    the sum of the others'; over the quota is decided on the sum.
 *  - Users (redis_users): the table may live in a Redis hash; a change of
 *    its generation key reloads every node within an interval.
 *
 * When Redis cannot be reached, the node keeps the leases it holds, answers
 * new asks by redis_fallback (open: the local max_conns alone; closed:
 * refused), says so in the log and in ringsocks_redis_up, and reconnects
 * (backing off up to 5 s); its figures reach Redis again at the next round.
 * docs/operations.md, "Running a fleet", has the keys and their use.
 */
#ifndef RINGSOCKS_FLEET_H
#define RINGSOCKS_FLEET_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acct_reg;
struct lease_board;
struct policy;
struct uacct;

#include "fleet_conf.h"

struct fleet_conf {
    struct fleet_addr addr;
    char password[256]; /* "" : no AUTH */
    char prefix[64];    /* of every key: "ringsocks:" */
    char node[128];     /* this node's name in the hashes */
    unsigned interval_ms;
    bool fail_open;
    bool users;
};

struct fleet_stats {
    int up;                   /* 1: connected and answering */
    uint64_t errors;          /* connections lost, failed or timed out, and error replies */
    uint64_t lease_rounds;    /* lease requests answered */
    uint64_t lease_fallbacks; /* asks answered by redis_fallback while Redis was away */
    uint64_t quota_syncs;     /* quota figures exchanged */
    uint64_t users_loads;     /* user tables fetched from Redis */
};

struct fleet;

/*
 * Control thread (main() before the shards start). wake(arg) rings every
 * shard (they retry their parked requests). Connects later, from the loop.
 * NULL with err on failure (out of memory).
 */
struct fleet *fleet_new(const struct fleet_conf *conf, struct acct_reg *reg,
                        void (*wake)(void *arg), void *wake_arg, char *err, size_t errlen);
void fleet_free(struct fleet *f);
/* The board the shards ask on (their sh->leases). */
struct lease_board *fleet_board(struct fleet *f);

/*
 * The control loop: the pollfds (at most FLEET_POLL_MAX: the shards' asks, and the Redis
 * socket when hiredis waits on it) and the timeout the fleet needs. Returns how many.
 */
#define FLEET_POLL_MAX 2
unsigned fleet_poll_prepare(struct fleet *f, struct pollfd *pfd, int *timeout_ms);
/* After poll(): read and write, answer asks, run the rounds due under pol. */
void fleet_poll_done(struct fleet *f, const struct pollfd *pfd, unsigned n,
                     const struct policy *pol);
/*
 * A users table fetched from Redis and not yet loaded: true once per
 * change (the control thread reloads then). fleet_users_text(): the table
 * as users-file lines, or NULL before Redis first answered.
 */
bool fleet_users_changed(struct fleet *f);
const char *fleet_users_text(const struct fleet *f);
void fleet_stats(const struct fleet *f, struct fleet_stats *out);
/*
 * A binary upgrade handed over (ctl.h, the upgrade): the quota figure of this node
 * (one field per node, absolute) is the new process's to write from now on;
 * this one writes it no more (what it counts meanwhile reaches the new one at
 * its exit). Its leases are its own (a field per process) and stay, but
 * shrink at once to its open tunnels (no spare place: it admits none again),
 * so the new process can take the rest of max_conns.
 */
void fleet_hand_over(struct fleet *f);

#endif
