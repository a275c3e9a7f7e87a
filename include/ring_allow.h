/*
 * ring_allow.h - the opcodes a shard's ring accepts (IORING_REGISTER_RESTRICTIONS).
 * seccomp sees system calls, not what a ring does inside io_uring_enter(): a ring
 * made with IORING_SETUP_R_DISABLED gets, before it is enabled, an allowlist of the
 * opcodes and SQE flags the shards submit (src/ring_allow.c, the one list) and of
 * no io_uring_register() operation after enabling. Any other SQE then completes
 * with -EACCES, whoever wrote it. Option `seccomp` turns this off with the filter.
 */
#ifndef RINGSOCKS_RING_ALLOW_H
#define RINGSOCKS_RING_ALLOW_H

#include <liburing.h>

/*
 * Register the allowlist on ring, which must have been set up with
 * IORING_SETUP_R_DISABLED and not yet enabled. The caller registers its
 * buffers and then calls ring_allow_enable(). 0 or -errno.
 */
int ring_allow_register(struct io_uring *ring);

/* Enable a ring set up with IORING_SETUP_R_DISABLED. 0 or -errno. */
int ring_allow_enable(struct io_uring *ring);

/* The allowed opcodes (IORING_OP_*), for tests and the docs' check. */
extern const unsigned char ring_allowed_ops[];
extern const unsigned ring_allowed_n;

#endif
