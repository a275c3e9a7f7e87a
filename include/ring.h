/*
 * ring.h - the one way an SQE is had from a shard's ring. Shard thread only
 * (the ring is single-issuer).
 */
#ifndef RINGSOCKS_RING_H
#define RINGSOCKS_RING_H

#include <liburing.h>

#include "stats.h"

/* A submission queue that could not be emptied for this long (the kernel refusing every
 * submit as short of memory) ends the process: the shard can do nothing more. */
#define RING_STUCK_MAX_MS 10000u

/*
 * A free SQE; never NULL. When the submission queue is full, what is queued is submitted
 * first (counted in st->sq_full; without IORING_ENTER_GETEVENTS, so it does not wait). A
 * submit that makes no room (-EAGAIN: the kernel could allocate no request; -ENOMEM, -EBUSY,
 * -EINTR, or 0) is retried after the shard's deferred completions have run (which frees
 * requests) and a 1 ms sleep, counted in st->sq_retries: the shard waits, it does not spin.
 * After RING_STUCK_MAX_MS of that, or at once on any other error (the ring used from another
 * thread, a ring not set up: broken invariants), it prints the error and aborts.
 */
struct io_uring_sqe *ring_sqe(struct io_uring *ring, struct shard_stats *st);

#endif
