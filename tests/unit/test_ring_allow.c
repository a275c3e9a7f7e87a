/*
 * test_ring_allow.c - the shards' opcode allowlist (ring_allow.h) on a real
 * ring: set up disabled, restricted, enabled as shard_setup() does. Every
 * opcode on the list is accepted by the kernel (its CQE is not -EACCES; what
 * the op then does with the arguments given here does not matter), one off
 * it (NOP, OPENAT, SOCKET, SPLICE) completes -EACCES, an SQE flag other than
 * buffer select is refused, and no register operation is allowed once the
 * ring runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "ring_allow.h"

struct rig {
    struct io_uring ring;
    int efd; /* an fd for the ops to name */
};

static int
setup(void **state)
{
    static struct rig r;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_R_DISABLED;
    assert_int_equal(io_uring_queue_init_params(8, &r.ring, &p), 0);
    assert_int_equal(ring_allow_register(&r.ring), 0);
    assert_int_equal(ring_allow_enable(&r.ring), 0);
    r.efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(r.efd >= 0);
    *state = &r;
    return 0;
}

static int
teardown(void **state)
{
    struct rig *r = *state;
    close(r->efd);
    io_uring_queue_exit(&r->ring);
    return 0;
}

/* Submit an SQE of opcode op on r's eventfd with flags; its CQE's result. */
static int
submit(struct rig *r, unsigned op, uint8_t flags)
{
    static uint64_t buf;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    assert_non_null(sqe);
    /* A harmless shape for every op: the eventfd, 8 bytes, offset 0. An op the
     * list allows may still fail on it (EINVAL, ENOTSOCK, ...), but never EACCES. */
    io_uring_prep_rw((int)op, sqe, r->efd, &buf, sizeof(buf), 0);
    if (op == IORING_OP_POLL_ADD)
        sqe->poll32_events = POLLIN;
    if (op == IORING_OP_TIMEOUT) {
        static struct __kernel_timespec ts = {.tv_nsec = 1000};
        io_uring_prep_timeout(sqe, &ts, 0, 0);
    }
    if (op == IORING_OP_ASYNC_CANCEL)
        io_uring_prep_cancel64(sqe, 12345, 0);
    if (op == IORING_OP_POLL_REMOVE)
        io_uring_prep_poll_remove(sqe, 12345);
    sqe->flags |= flags;
    sqe->user_data = 7;
    assert_int_equal(io_uring_submit(&r->ring), 1);
    struct io_uring_cqe *cqe;
    assert_int_equal(io_uring_wait_cqe(&r->ring, &cqe), 0);
    int res = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return res;
}

static void
listed_ops_pass(void **state)
{
    struct rig *r = *state;
    for (unsigned i = 0; i < ring_allowed_n; i++) {
        int res = submit(r, ring_allowed_ops[i], 0);
        if (res == -EACCES)
            fail_msg("opcode %u is on the list but the ring refused it", ring_allowed_ops[i]);
    }
}

static void
other_ops_refused(void **state)
{
    struct rig *r = *state;
    static const unsigned off[] = {IORING_OP_NOP,    IORING_OP_OPENAT, IORING_OP_SOCKET,
                                   IORING_OP_SPLICE, IORING_OP_WRITE,  IORING_OP_SENDMSG};
    for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        int res = submit(r, off[i], 0);
        if (res != -EACCES)
            fail_msg("opcode %u is off the list but completed %d, not -EACCES", off[i], res);
    }
}

static void
flags_limited(void **state)
{
    struct rig *r = *state;
    /* IOSQE_ASYNC would move any op to an io-wq worker; only buffer select is listed. */
    assert_int_equal(submit(r, IORING_OP_READ, IOSQE_ASYNC), -EACCES);
    assert_int_equal(submit(r, IORING_OP_READ, IOSQE_IO_LINK), -EACCES);
    assert_int_not_equal(submit(r, IORING_OP_POLL_ADD, 0), -EACCES);
}

static void
no_register_once_enabled(void **state)
{
    struct rig *r = *state;
    static char page[4096];
    struct iovec iov = {.iov_base = page, .iov_len = sizeof(page)};
    assert_int_equal(io_uring_register_buffers(&r->ring, &iov, 1), -EACCES);
    int fd = r->efd;
    assert_int_equal(io_uring_register_files(&r->ring, &fd, 1), -EACCES);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(listed_ops_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(other_ops_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(flags_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(no_register_once_enabled, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
