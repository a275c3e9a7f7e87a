/*
 * test_watchdog.c - the shard loop's stall bookkeeping (watchdog.h) with a fake
 * clock: short work is no stall; long work is one stall counted by the shard;
 * work that has not ended is counted by the control thread once, however often
 * it looks, and then not again by the shard when it ends; the longest work is
 * kept; a sleeping shard is never stalled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "watchdog.h"

static void
test_short_work(void **state)
{
    (void)state;
    _Atomic uint64_t since = 0;
    uint64_t max = 0;
    watchdog_begin(&since, 5000);
    assert_false(watchdog_check(&since, 5000 + WATCHDOG_STALL_MS));
    assert_false(watchdog_end(&since, 5000, 5000 + WATCHDOG_STALL_MS, &max));
    assert_int_equal(max, WATCHDOG_STALL_MS);
    assert_int_equal(since, 0);
    /* Asleep: never stalled, however long. */
    assert_false(watchdog_check(&since, 999999));
}

static void
test_long_work_counted_by_shard(void **state)
{
    (void)state;
    _Atomic uint64_t since = 0;
    uint64_t max = 7;
    watchdog_begin(&since, 1000);
    assert_true(watchdog_end(&since, 1000, 1000 + WATCHDOG_STALL_MS + 1, &max));
    assert_int_equal(max, WATCHDOG_STALL_MS + 1);
    /* A shorter one later leaves the maximum. */
    watchdog_begin(&since, 2000);
    assert_false(watchdog_end(&since, 2000, 2010, &max));
    assert_int_equal(max, WATCHDOG_STALL_MS + 1);
}

static void
test_unended_work_counted_once(void **state)
{
    (void)state;
    _Atomic uint64_t since = 0;
    uint64_t max = 0;
    unsigned stalls = 0;
    watchdog_begin(&since, 1000);
    /* The control thread looks every 200 ms while the shard stays stuck. */
    for (uint64_t t = 1000; t <= 3000; t += 200)
        stalls += watchdog_check(&since, t);
    assert_int_equal(stalls, 1);
    /* The shard comes back: not counted again, but its length is kept. */
    assert_false(watchdog_end(&since, 1000, 3100, &max));
    assert_int_equal(max, 2100);
    /* The next stuck episode is a new one. */
    watchdog_begin(&since, 4000);
    assert_true(watchdog_check(&since, 4200));
    assert_false(watchdog_check(&since, 4400));
}

static void
test_clock_now(void **state)
{
    (void)state;
    uint64_t a = watchdog_now_ms();
    uint64_t b = watchdog_now_ms();
    assert_true(a > 0);
    assert_true(b >= a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_work),
        cmocka_unit_test(test_long_work_counted_by_shard),
        cmocka_unit_test(test_unended_work_counted_once),
        cmocka_unit_test(test_clock_now),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
