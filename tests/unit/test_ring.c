/*
 * test_ring.c - ring_sqe() (ring.h) on a real 8-entry io_uring: a full submission queue is
 * submitted and counted; a submit the kernel refuses for want of memory (-EAGAIN, faked by
 * wrapping io_uring_submit) is retried after a 1 ms wait each time, not in a spin; an error
 * no wait cures aborts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

#define ENTRIES 8

/* The next io_uring_submit() calls fail with fail_err, fail_n of them; then the real one. */
static int fail_err;
static unsigned fail_n, submits;

int __real_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit(struct io_uring *ring);

int
__wrap_io_uring_submit(struct io_uring *ring)
{
    submits++;
    if (fail_n) {
        fail_n--;
        return fail_err;
    }
    return __real_io_uring_submit(ring);
}

static struct io_uring ring;

static int
setup(void **state)
{
    (void)state;
    fail_n = submits = 0;
    /* Room for every completion the tests make. */
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE, .cq_entries = 4 * ENTRIES};
    return io_uring_queue_init_params(ENTRIES, &ring, &p) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    io_uring_queue_exit(&ring);
    return 0;
}

/* Queues n NOPs through ring_sqe(). */
static void
queue_nops(struct shard_stats *st, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = ring_sqe(&ring, st);
        assert_non_null(sqe);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, i + 1);
    }
}

/* Every NOP queued so far completes, once. */
static void
reap(unsigned n)
{
    assert_true(io_uring_submit_and_wait(&ring, n) >= 0);
    assert_int_equal(io_uring_cq_ready(&ring), n);
    io_uring_cq_advance(&ring, n);
}

static void
test_full_queue_submitted_and_counted(void **state)
{
    (void)state;
    struct shard_stats st = {0};
    queue_nops(&st, ENTRIES);
    assert_int_equal(st.sq_full, 0);
    assert_int_equal(submits, 0);
    queue_nops(&st, 1);
    assert_int_equal(st.sq_full, 1);
    assert_int_equal(st.sq_retries, 0);
    assert_int_equal(submits, 1);
    queue_nops(&st, ENTRIES - 1);
    assert_int_equal(st.sq_full, 1);
    queue_nops(&st, 1);
    assert_int_equal(st.sq_full, 2);
    reap(2 * ENTRIES + 1);
}

static void
test_refused_submit_waits_and_retries(void **state)
{
    (void)state;
    struct shard_stats st = {0};
    queue_nops(&st, ENTRIES);
    fail_err = -EAGAIN;
    fail_n = 3;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    queue_nops(&st, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took_ms =
        (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_int_equal(st.sq_full, 1);
    assert_int_equal(st.sq_retries, 3);
    /* Three refusals, three waits, then the real submit: no spin. */
    assert_int_equal(submits, 4);
    assert_true(took_ms >= 3.0);
    reap(ENTRIES + 1);
}

/* ring_sqe() in a child whose submits all fail with err: how the child ends. */
static int
child_status(int err)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct shard_stats st = {0};
        fail_err = err;
        fail_n = ~0u;
        freopen("/dev/null", "w", stderr); /* the abort's message, expected */
        queue_nops(&st, ENTRIES + 1);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void
test_incurable_error_aborts(void **state)
{
    (void)state;
    int status = child_status(-EEXIST);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    status = child_status(-EBADFD);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_queue_submitted_and_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_submit_waits_and_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incurable_error_aborts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
