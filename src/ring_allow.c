/*
 * ring_allow.c - the opcode allowlist of the shards' rings (ring_allow.h).
 *
 * One line per opcode, with the part of the server that submits it. A new
 * io_uring_prep_*() in src/ needs its opcode here: tests/check_ring_ops.py
 * fails the build's checks otherwise, and the SQE would complete -EACCES.
 */
#include "ring_allow.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

const unsigned char ring_allowed_ops[] = {
    IORING_OP_ACCEPT,       /* listeners (multishot, shard.c); BIND's second connection (bind.c) */
    IORING_OP_ASYNC_CANCEL, /* cancels by user_data or fd (conn, shard, request, chain, bind, gsshs) */
    IORING_OP_CONNECT,      /* outbound connects (request.c, chain.c) */
    IORING_OP_POLL_ADD,     /* readiness: splice relay, UDP, c-ares sockets, client hang-up */
    IORING_OP_POLL_REMOVE, /* a c-ares socket's poll re-aimed (dns.c) */
    IORING_OP_READ,       /* eventfds: wake (shard.c), auth queue (authq.c), GSS workers (gssw.c) */
    IORING_OP_READ_FIXED, /* handshake bytes into the registered buffer (handshake.c) */
    IORING_OP_RECV,    /* handshakes, copy engine, UDP, chain, GSS-API (buffer select in relay.c) */
    IORING_OP_SEND,    /* copy engine, replies, chain, GSS-API */
    IORING_OP_TIMEOUT, /* the tick, connect and relay timers, injected faults */
    IORING_OP_WRITE_FIXED, /* replies from the registered buffer (handshake.c) */
};
const unsigned ring_allowed_n = sizeof(ring_allowed_ops) / sizeof(ring_allowed_ops[0]);

/* io_uring_register(2) itself: Debian 12's liburing.so (2.3) declares
 * io_uring_enable_rings() but does not export it. 0 or -errno. */
static int
ring_register(struct io_uring *ring, unsigned op, void *arg, unsigned n)
{
    long ret = syscall(__NR_io_uring_register, ring->ring_fd, op, arg, n);
    return ret < 0 ? -errno : 0;
}

int
ring_allow_register(struct io_uring *ring)
{
    /* The ops, one SQE flag (buffer select: the copy engine's recvs) and no
     * register operation: buffers are registered before the ring is enabled. */
    struct io_uring_restriction res[sizeof(ring_allowed_ops) + 1];
    memset(res, 0, sizeof(res));
    unsigned n = 0;
    for (unsigned i = 0; i < ring_allowed_n; i++) {
        res[n].opcode = IORING_RESTRICTION_SQE_OP;
        res[n++].sqe_op = ring_allowed_ops[i];
    }
    res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
    res[n++].sqe_flags = IOSQE_BUFFER_SELECT;
    return ring_register(ring, IORING_REGISTER_RESTRICTIONS, res, n);
}

int
ring_allow_enable(struct io_uring *ring)
{
    return ring_register(ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
}
