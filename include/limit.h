/*
 * limit.h - the limits of lim.h applied to one tunnel, on its shard: the
 * admission (blocked, quota, max_conns, rate; the user's and the client
 * address's), the places it holds until it ends, the bytes counted for its
 * user as they go, and the bandwidth grants the relay asks before each read.
 *
 * Which limits apply: for each key, the admitting rule's (limits,
 * client_limits), else the user's line in the users file, else the
 * configuration's user_limits / client_limits. A tunnel with no user and no
 * client limit costs one test; one with a user and no limit, the counters.
 *
 * Shard thread only (the shared counters are atomics: lim.h).
 */
#ifndef RINGSOCKS_LIMIT_H
#define RINGSOCKS_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "conn_end.h"
#include "lim.h"
#include "limit_types.h"

struct shard;

/*
 * The request is about to go out under rule (its index, -1: none): take
 * its places and tokens. END_NONE: admitted (c->acct and c->lim set as
 * needed); else why not (END_BLOCKED, END_QUOTA, END_LIMIT_CONNS,
 * END_LIMIT_RATE), nothing held. Once per connection: a second call
 * admits at once.
 *
 * In a fleet (fleet.h), a user whose lease of tunnels on this node is
 * spent while its max_conns is not reached has asked the control thread
 * for more: with can_wait the answer is LIMIT_LEASE_WAIT (nothing held):
 * the caller parks the request and calls again once the board's
 * generation moves (request_leases()). Without can_wait, END_LIMIT_CONNS.
 */
enum conn_end limit_admit(struct shard *sh, struct conn *c, int rule, bool can_wait);
/* Not a reason a connection ends: limit_admit()'s "wait for the lease". */
#define LIMIT_LEASE_WAIT ((enum conn_end)END__COUNT)

/* Does direction d (DIR_*) of c read under a bandwidth limit? */
static inline bool
limit_bw(const struct conn *c, unsigned d)
{
    return c->lim && c->lim->bw[d].on;
}

/*
 * Bytes direction d may read now, at most want (> 0): 0 when it must wait,
 * and then *wait_ns says how long (at most LIMIT_WAIT_MAX_NS: it asks
 * again then). A direction that must wait keeps its reservation (FIFO
 * among all the directions sharing a bucket: gcra_reserve()) and gets it
 * when it asks again in time.
 */
uint32_t limit_grant(struct shard *sh, struct conn *c, unsigned d, uint32_t want,
                     uint64_t *wait_ns);
/* Of a grant, unused bytes were not read: give their time back. */
void limit_unused(struct conn *c, unsigned d, uint32_t unused);
/* A throttled direction's timer: the timespec for its OP_THROTTLE (lives in c->lim). */
struct __kernel_timespec *limit_timer(struct conn *c, unsigned d, uint64_t wait_ns);

/*
 * Each direction of c's tunnel at most rate bytes per second (a fault's throttle, fault.h),
 * on top of any limit it has (the smaller per-tunnel rate wins). 0 or -ENOMEM (unthrottled).
 */
int limit_tunnel_rate(struct conn *c, uint64_t rate);

/* The longest a throttled direction sleeps before it asks again. */
#define LIMIT_WAIT_MAX_NS 100000000ull

#endif
