/*
 * ring.c - SQEs from a shard's ring (ring.h). Shard thread only.
 */
#include "ring.h"

struct io_uring_sqe *
ring_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    /* A full queue is submitted, not waited on: io_uring_submit() never blocks here
     * (no IORING_ENTER_GETEVENTS). */
    while (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}
