/*
 * ring.c - SQEs from a shard's ring (ring.h). Shard thread only. It never
 * returns without an SQE: no caller has a way to go on without one.
 */
#include "ring.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING_RETRY_MS 1u

/*
 * Errors of a submit that a wait can cure. On Linux 6.x io_submit_sqes() fails only with
 * -EAGAIN, when it could allocate no request at all and submitted nothing; it frees requests
 * as their completions are posted, which on a DEFER_TASKRUN ring happens only inside
 * io_uring_enter(GETEVENTS). Older 5.x kernels also answered -EBUSY while completions
 * overflowed the CQ and could not be flushed. The rest (-EEXIST: another thread submitted
 * on a single-issuer ring; -EBADFD, -EFAULT, -EINVAL, -EOWNERDEAD) no wait cures.
 */
static bool
ring_err_transient(int err)
{
    return err == 0 || err == -EAGAIN || err == -ENOMEM || err == -EBUSY || err == -EINTR;
}

struct io_uring_sqe *
ring_sqe(struct io_uring *ring, struct shard_stats *st)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe)
        return sqe;
    STAT_INC(st->sq_full);
    for (unsigned waited_ms = 0;;) {
        int ret = io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
        if (sqe)
            return sqe;
        if (!ring_err_transient(ret) || waited_ms >= RING_STUCK_MAX_MS) {
            fprintf(stderr,
                    "ringsocks: io_uring_submit with a full submission queue: %s after %u ms\n",
                    ret < 0 ? strerror(-ret) : "no room made", waited_ms);
            abort();
        }
        STAT_INC(st->sq_retries);
        /* Deferred completions run here (no wait: none may be due), freeing their requests. */
        io_uring_get_events(ring);
        const struct timespec ts = {.tv_nsec = RING_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
        waited_ms += RING_RETRY_MS;
    }
}
