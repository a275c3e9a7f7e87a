/*
 * test_udq.c - include/udq.h, the growable FIFO of 64-bit values: order, the
 * empty queue, growth while the live entries wrap around the end of the
 * array (head != 0), reuse after udq_free, and a long mixed run checked
 * against a plain array.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "udq.h"

/* Pop n values; each must be the next of first, first + 1, ... */
static void
pop_run(struct udq *q, uint64_t first, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = ~(uint64_t)0;
        assert_true(udq_pop(q, &v));
        assert_int_equal(v, first + i);
    }
}

static void
test_empty_pop(void **state)
{
    (void)state;
    struct udq q = {0};
    uint64_t v = 12345;
    assert_false(udq_pop(&q, &v));
    assert_int_equal(v, 12345); /* untouched */
    assert_int_equal(q.len, 0);

    /* Emptied after use: still false, still untouched. */
    assert_int_equal(udq_push(&q, 7), 0);
    pop_run(&q, 7, 1);
    v = 99;
    assert_false(udq_pop(&q, &v));
    assert_int_equal(v, 99);
    assert_int_equal(q.len, 0);
    udq_free(&q);
}

static void
test_fifo_order(void **state)
{
    (void)state;
    struct udq q = {0};
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(udq_push(&q, 1000 + i), 0);
    assert_int_equal(q.len, 10);
    pop_run(&q, 1000, 4);
    for (uint64_t i = 10; i < 20; i++)
        assert_int_equal(udq_push(&q, 1000 + i), 0);
    pop_run(&q, 1004, 16);
    uint64_t v;
    assert_false(udq_pop(&q, &v));
    /* The full 64-bit range goes through unchanged. */
    assert_int_equal(udq_push(&q, UINT64_MAX), 0);
    assert_int_equal(udq_push(&q, (uint64_t)1 << 63), 0);
    assert_true(udq_pop(&q, &v));
    assert_true(v == UINT64_MAX);
    assert_true(udq_pop(&q, &v));
    assert_true(v == (uint64_t)1 << 63);
    udq_free(&q);
}

/* Push 64 (the first capacity, full), pop 10 (head 10), push 100 more: the queue
 * grows while its entries wrap (e[10..63] then e[0..9]), and again at 128; the
 * copy must start at head. */
static void
test_grow_with_head_offset(void **state)
{
    (void)state;
    struct udq q = {0};
    for (uint64_t i = 0; i < 64; i++)
        assert_int_equal(udq_push(&q, i), 0);
    assert_int_equal(q.cap, 64);
    pop_run(&q, 0, 10);
    assert_int_equal(q.head, 10);
    for (uint64_t i = 64; i < 164; i++)
        assert_int_equal(udq_push(&q, i), 0);
    assert_int_equal(q.len, 154);
    assert_true(q.cap >= 154);
    pop_run(&q, 10, 154);
    uint64_t v;
    assert_false(udq_pop(&q, &v));
    udq_free(&q);
}

static void
test_free_resets(void **state)
{
    (void)state;
    struct udq q = {0};
    for (uint64_t i = 0; i < 100; i++)
        assert_int_equal(udq_push(&q, i), 0);
    pop_run(&q, 0, 3);
    udq_free(&q);
    assert_null(q.e);
    assert_int_equal(q.head, 0);
    assert_int_equal(q.len, 0);
    assert_int_equal(q.cap, 0);
    uint64_t v = 5;
    assert_false(udq_pop(&q, &v));
    assert_int_equal(v, 5);
    /* Usable again from scratch; a second free is harmless. */
    for (uint64_t i = 0; i < 70; i++)
        assert_int_equal(udq_push(&q, 500 + i), 0);
    assert_int_equal(q.cap, 128);
    pop_run(&q, 500, 70);
    udq_free(&q);
    udq_free(&q);
    assert_null(q.e);
}

/* Pushes and pops in an irregular mix, compared with an array: head sits
 * everywhere when the queue grows (64 -> 128 -> ... -> 4096). */
static void
test_mixed_against_model(void **state)
{
    (void)state;
    enum { OPS = 20000 };
    static uint64_t model[OPS];
    uint32_t mhead = 0, mtail = 0;
    struct udq q = {0};
    uint32_t rnd = 12345;
    for (int op = 0; op < OPS; op++) {
        rnd = rnd * 1103515245u + 12345u;
        /* pushes win 5 to 3, so the queue keeps growing through every wrap */
        if ((rnd >> 16) % 8 < 5) {
            uint64_t v = ((uint64_t)rnd << 32) | (uint32_t)op;
            assert_int_equal(udq_push(&q, v), 0);
            model[mtail++] = v;
        } else {
            uint64_t v = 0;
            bool got = udq_pop(&q, &v);
            assert_int_equal(got, mhead < mtail);
            if (got)
                assert_true(v == model[mhead++]);
        }
        assert_int_equal(q.len, mtail - mhead);
    }
    while (mhead < mtail) {
        uint64_t v = 0;
        assert_true(udq_pop(&q, &v));
        assert_true(v == model[mhead++]);
    }
    uint64_t v;
    assert_false(udq_pop(&q, &v));
    udq_free(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_pop),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_grow_with_head_offset),
        cmocka_unit_test(test_free_resets),
        cmocka_unit_test(test_mixed_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
