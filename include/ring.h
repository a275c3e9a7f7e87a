/*
 * ring.h - the one way an SQE is had from a shard's ring. Shard thread only
 * (the ring is single-issuer).
 */
#ifndef RINGSOCKS_RING_H
#define RINGSOCKS_RING_H

#include <liburing.h>

/* A free SQE, submitting what is queued first when the submission queue is full. */
struct io_uring_sqe *ring_sqe(struct io_uring *ring);

#endif
