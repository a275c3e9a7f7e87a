/*
 * fake_ring.h - a ring for the unit tests of the shard core (test_conn.c,
 * test_relay.c, test_request.c): ring_sqe() hands out SQEs from a table the
 * test reads, and the test plays the kernel. Include after cmocka.h (or after
 * macros of the same names: tests/fuzz/fuzz_conn.c), in one test file per
 * binary: it defines ring_sqe() (ring.h), which replaces src/ring.c; with
 * FAKE_RING_REGISTRATIONS defined, also io_uring_register_buf_ring() (the
 * buffer ring stays in plain memory, as the kernel here sees it) and
 * io_uring_register_buffers() (refused: the handshake reads and writes with
 * plain recv and send).
 *
 * An SQE is "submitted" as soon as the code that asked for it returns (conn_sqe()
 * writes user_data after ring_sqe() returns, the prep helper after that). The test
 * completes ops two ways:
 *  - by hand: fr_complete() posts a CQE of its choice for one op and delivers it;
 *  - as the kernel would: fr_exec() runs the op's syscall on its real fd (poll,
 *    recv into a provided buffer of the ring given to fr_use_buf_ring(), send,
 *    connect, cancel) and queues its CQE if it completed; fr_reap() delivers the
 *    queued CQEs in order to conn_dispatch() and then calls fr_batch_end, as the
 *    shard loop does after each batch; fr_pass() executes every op once (but those
 *    fr_hold says to leave waiting, a slow kernel) and reaps; fr_run() passes until
 *    nothing completes.
 * The kernel model: a poll completes when poll(2) reports one of its events (or
 * POLLERR/POLLHUP); a recv with IOSQE_BUFFER_SELECT takes the ring's next buffer
 * when it is issued and when data comes, and fails -ENOBUFS when none is there,
 * data or not; a send with MSG_DONTWAIT is one non-blocking send(2) (-EAGAIN when
 * the socket is full), without MSG_DONTWAIT it waits for room; a connect is
 * connect(2) then POLLOUT and SO_ERROR; a cancel by user_data or by fd (ALL)
 * completes its targets -ECANCELED first. Other ops complete only by hand.
 */
#ifndef RINGSOCKS_TEST_FAKE_RING_H
#define RINGSOCKS_TEST_FAKE_RING_H

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "ring.h"
#include "ud.h"

#define FR_MAX 512

struct fr_op {
    struct io_uring_sqe sqe;
    unsigned long seq; /* issue order, unique */
    bool tried;        /* the kernel has looked at it once (a recv or connect then waits) */
};

static struct fr_op fr_ops[FR_MAX]; /* in flight, in issue order */
static unsigned fr_n;
static struct io_uring_cqe fr_cq[FR_MAX]; /* completed; [fr_cq_head, fr_cq_n) not yet delivered */
static unsigned fr_cq_head, fr_cq_n;
static unsigned long fr_issued;                /* SQEs handed out since fr_reset() */
static unsigned long fr_recvs, fr_nobufs;      /* buffer-select recvs completed, -ENOBUFS */
static void (*fr_batch_end)(struct shard *sh); /* after each reap: relay_batch_end */
static void (*fr_after_cqe)(struct shard *sh); /* after each delivered CQE: invariants */
static bool (*fr_hold)(const struct io_uring_sqe *sqe); /* fr_pass() leaves these waiting */
/* The provided buffer ring of the copy engine, as the kernel sees it. */
static struct io_uring_buf_ring *fr_br;
static unsigned fr_br_mask;
static uint16_t fr_br_head;

struct io_uring_sqe *
ring_sqe(struct io_uring *ring, struct shard_stats *st)
{
    (void)ring;
    (void)st;
    assert_true(fr_n < FR_MAX);
    struct fr_op *op = &fr_ops[fr_n++];
    memset(op, 0, sizeof(*op));
    op->seq = ++fr_issued;
    return &op->sqe;
}

#ifdef FAKE_RING_REGISTRATIONS
int
io_uring_register_buf_ring(struct io_uring *ring, struct io_uring_buf_reg *reg, unsigned int flags)
{
    (void)ring;
    (void)reg;
    (void)flags;
    return 0;
}

int
io_uring_register_buffers(struct io_uring *ring, const struct iovec *iovecs, unsigned nr_iovecs)
{
    (void)ring;
    (void)iovecs;
    (void)nr_iovecs;
    return -ENOMEM;
}
#endif

static inline void
fr_reset(void)
{
    fr_n = fr_cq_head = fr_cq_n = 0;
    fr_issued = fr_recvs = fr_nobufs = 0;
    fr_batch_end = NULL;
    fr_after_cqe = NULL;
    fr_hold = NULL;
    fr_br = NULL;
    fr_br_mask = 0;
    fr_br_head = 0;
}

static inline void
fr_use_buf_ring(struct io_uring_buf_ring *br, unsigned entries)
{
    fr_br = br;
    fr_br_mask = entries - 1;
    fr_br_head = 0;
}

/* Buffers in the ring that the kernel could hand to a recv now. */
static inline unsigned
fr_bufs_free(void)
{
    if (!fr_br)
        return 0;
    uint16_t tail = __atomic_load_n(&fr_br->tail, __ATOMIC_ACQUIRE);
    return (uint16_t)(tail - fr_br_head);
}

static inline uint64_t
fr_ud(unsigned i)
{
    return fr_ops[i].sqe.user_data;
}

/* Does op i match (op, slot, arg)? slot CONN_NIL and arg -1 match any. */
static inline bool
fr_match(unsigned i, unsigned op, uint32_t slot, int arg)
{
    uint64_t ud = fr_ud(i);
    return ud_op(ud) == op && (slot == CONN_NIL || ud_slot(ud) == slot) &&
           (arg < 0 || ud_arg(ud) == (unsigned)arg);
}

/* Index of the oldest op in flight matching, or -1. */
static inline int
fr_find(unsigned op, uint32_t slot, int arg)
{
    for (unsigned i = 0; i < fr_n; i++)
        if (fr_match(i, op, slot, arg))
            return (int)i;
    return -1;
}

static inline unsigned
fr_count(unsigned op, uint32_t slot, int arg)
{
    unsigned n = 0;
    for (unsigned i = 0; i < fr_n; i++)
        n += fr_match(i, op, slot, arg);
    return n;
}

/* CQEs of ops matching that are posted and not yet delivered. */
static inline unsigned
fr_cq_count(unsigned op, uint32_t slot, int arg)
{
    unsigned n = 0;
    for (unsigned i = fr_cq_head; i < fr_cq_n; i++) {
        uint64_t ud = fr_cq[i].user_data;
        n += ud_op(ud) == op && (slot == CONN_NIL || ud_slot(ud) == slot) &&
             (arg < 0 || ud_arg(ud) == (unsigned)arg);
    }
    return n;
}

/* Ops in flight of one connection slot (any op), or of one direction (arg >= 0). */
static inline unsigned
fr_count_slot(uint32_t slot, int arg)
{
    unsigned n = 0;
    for (unsigned i = 0; i < fr_n; i++)
        n += ud_slot(fr_ud(i)) == slot && (arg < 0 || ud_arg(fr_ud(i)) == (unsigned)arg);
    return n;
}

static inline void
fr_remove(unsigned i)
{
    memmove(&fr_ops[i], &fr_ops[i + 1], (fr_n - i - 1) * sizeof(fr_ops[0]));
    fr_n--;
}

static inline void
fr_post(uint64_t ud, int res, unsigned flags)
{
    assert_true(fr_cq_n < FR_MAX);
    struct io_uring_cqe *cqe = &fr_cq[fr_cq_n++];
    memset(cqe, 0, sizeof(*cqe));
    cqe->user_data = ud;
    cqe->res = res;
    cqe->flags = flags;
}

/* Deliver one CQE as the shard loop does (the core's ops all go to conn_dispatch). */
static inline void
fr_deliver(struct shard *sh, const struct io_uring_cqe *cqe)
{
    assert_true(ud_op(cqe->user_data) >= OP_CONN_FIRST);
    conn_dispatch(sh, cqe);
    if (fr_after_cqe)
        fr_after_cqe(sh);
}

/* Deliver every queued CQE in order, then the batch's end. Returns how many. */
static inline unsigned
fr_reap(struct shard *sh)
{
    unsigned n = 0;
    while (fr_cq_head < fr_cq_n) {
        struct io_uring_cqe cqe = fr_cq[fr_cq_head++];
        n++;
        fr_deliver(sh, &cqe);
    }
    fr_cq_head = fr_cq_n = 0;
    if (fr_batch_end)
        fr_batch_end(sh);
    return n;
}

/* Complete op i by hand with res and flags, and deliver it (one batch). */
static inline void
fr_complete(struct shard *sh, unsigned i, int res, unsigned flags)
{
    assert_true(i < fr_n);
    uint64_t ud = fr_ud(i);
    fr_remove(i);
    fr_post(ud, res, flags);
    fr_reap(sh);
}

/* Complete the oldest op matching by hand; it must exist. */
static inline void
fr_complete_op(struct shard *sh, unsigned op, uint32_t slot, int arg, int res)
{
    int i = fr_find(op, slot, arg);
    assert_true(i >= 0);
    fr_complete(sh, (unsigned)i, res, 0);
}

static inline short
fr_revents(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    if (poll(&p, 1, 0) < 0)
        return POLLERR;
    return p.revents;
}

/* Cancel ops matching by user_data (fd < 0) or by fd; their CQEs queued. Count. */
static inline int
fr_cancel(uint64_t ud, int fd, bool all)
{
    int n = 0;
    for (unsigned i = 0; i < fr_n;) {
        const struct io_uring_sqe *s = &fr_ops[i].sqe;
        bool hit =
            s->opcode != IORING_OP_ASYNC_CANCEL && (fd >= 0 ? s->fd == fd : s->user_data == ud);
        if (!hit) {
            i++;
            continue;
        }
        fr_post(s->user_data, -ECANCELED, 0);
        fr_remove(i);
        n++;
        if (!all)
            break;
    }
    return n;
}

/*
 * The kernel looks at op i: true when it completed (its CQE queued, the op
 * gone from the table), false when it still waits.
 */
static inline bool
fr_exec(unsigned i)
{
    struct fr_op *op = &fr_ops[i];
    struct io_uring_sqe *s = &op->sqe;
    bool tried = op->tried;
    int res = 0;
    unsigned flags = 0;
    op->tried = true;

    switch (s->opcode) {
    case IORING_OP_POLL_ADD: {
        short want = (short)(s->poll32_events | POLLERR | POLLHUP | POLLNVAL);
        short got = fr_revents(s->fd, want) & want;
        if (!got)
            return false;
        res = got;
        break;
    }
    case IORING_OP_RECV: {
        if (!(s->flags & IOSQE_BUFFER_SELECT))
            return false; /* only by hand */
        if (tried &&
            !(fr_revents(s->fd, POLLIN | POLLRDHUP) & (POLLIN | POLLRDHUP | POLLERR | POLLHUP)))
            return false;
        assert_non_null(fr_br);
        fr_recvs++;
        if (fr_bufs_free() == 0) {
            fr_nobufs++;
            res = -ENOBUFS;
            break;
        }
        const struct io_uring_buf *b = &fr_br->bufs[fr_br_head & fr_br_mask];
        size_t len = s->len && s->len < b->len ? s->len : b->len;
        ssize_t n = recv(s->fd, (void *)(uintptr_t)b->addr, len, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            fr_recvs--; /* not completed: it waits */
            return false;
        }
        if (n < 0) {
            res = -errno;
            break;
        }
        /* The buffer is the CQE's, EOF included. */
        fr_br_head++;
        res = (int)n;
        flags = IORING_CQE_F_BUFFER | (unsigned)b->bid << IORING_CQE_BUFFER_SHIFT;
        break;
    }
    case IORING_OP_SEND: {
        ssize_t n =
            send(s->fd, (const void *)(uintptr_t)s->addr, s->len, (int)s->msg_flags | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN && !(s->msg_flags & MSG_DONTWAIT))
            return false; /* the kernel would poll for room */
        res = n < 0 ? -errno : (int)n;
        break;
    }
    case IORING_OP_CONNECT:
        if (!tried) {
            if (connect(s->fd, (const struct sockaddr *)(uintptr_t)s->addr, (socklen_t)s->off) ==
                0) {
                res = 0;
                break;
            }
            if (errno != EINPROGRESS) {
                res = -errno;
                break;
            }
        }
        if (!(fr_revents(s->fd, POLLOUT) & (POLLOUT | POLLERR | POLLHUP)))
            return false;
        {
            int err = 0;
            socklen_t el = sizeof(err);
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            res = -err;
        }
        break;
    case IORING_OP_ASYNC_CANCEL: {
        uint64_t ud = s->user_data;
        bool by_fd = s->cancel_flags & IORING_ASYNC_CANCEL_FD;
        bool all = s->cancel_flags & IORING_ASYNC_CANCEL_ALL;
        int fd = by_fd ? s->fd : -1;
        uint64_t target = s->addr;
        fr_remove(i); /* before the targets, so that indexes stay right */
        int n = fr_cancel(target, fd, all);
        fr_post(ud, n > 0 ? (all ? n : 0) : -ENOENT, 0);
        return true;
    }
    default:
        return false;
    }
    uint64_t ud = s->user_data;
    fr_remove(i);
    fr_post(ud, res, flags);
    return true;
}

/* Execute the oldest op matching as the kernel would; true when it completed. */
static inline bool
fr_exec_op(unsigned op, uint32_t slot, int arg)
{
    int i = fr_find(op, slot, arg);
    assert_true(i >= 0);
    return fr_exec((unsigned)i);
}

/* One batch: the kernel looks at every op in flight once, then the CQEs are delivered. */
static inline unsigned
fr_pass(struct shard *sh)
{
    unsigned n = fr_n;
    unsigned long seen[FR_MAX];
    for (unsigned i = 0; i < n; i++)
        seen[i] = fr_ops[i].seq;
    /* Ops may leave the table as others complete (a cancel): look each up by its seq. */
    for (unsigned k = 0; k < n; k++) {
        for (unsigned i = 0; i < fr_n; i++) {
            if (fr_ops[i].seq == seen[k]) {
                if (!fr_hold || !fr_hold(&fr_ops[i].sqe))
                    fr_exec(i);
                break;
            }
        }
    }
    return fr_reap(sh);
}

/* Batches until one completes nothing (at most max). Returns the CQEs delivered. */
static inline unsigned
fr_run(struct shard *sh, unsigned max)
{
    unsigned total = 0;
    for (unsigned b = 0; b < max; b++) {
        unsigned n = fr_pass(sh);
        total += n;
        if (n == 0)
            break;
    }
    return total;
}

#endif
