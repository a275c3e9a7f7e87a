/*
 * test_lim.c - limits as written (the key=value words of every level), the
 * GCRA buckets (tunnel rate, bandwidth reservations) on a driven clock, and
 * the exact tunnel count under two threads (lim.h): no sockets.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lim.h"

#define MS 1000000ull
#define S  1000000000ull

static void
test_sizes(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(lim_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(lim_parse_size("10M", &v), 0);
    assert_int_equal(v, 10000000);
    assert_int_equal(lim_parse_size("10MB", &v), 0);
    assert_int_equal(v, 10000000);
    assert_int_equal(lim_parse_size("512Ki", &v), 0);
    assert_int_equal(v, 512 * 1024);
    assert_int_equal(lim_parse_size("2GiB", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(lim_parse_size("7k", &v), 0);
    assert_int_equal(v, 7000);
    /* Not sizes: fractions, signs, unknown or doubled units, overflow, nothing. */
    const char *bad[] = {"",
                         "1.5G",
                         "-1",
                         "+1",
                         "10X",
                         "10MM",
                         "10 M",
                         "M",
                         "99999999999999T",
                         "18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (lim_parse_size(bad[i], &v) == 0)
            fail_msg("'%s' parsed as %llu", bad[i], (unsigned long long)v);
}

static void
test_words(void **state)
{
    (void)state;
    struct lim_conf l;
    char err[200], text[300];
    lim_conf_unset(&l);
    assert_true(lim_conf_none(&l));
    assert_int_equal(lim_conf_parse(&l, LIM_KEYS_ALL,
                                    "  max_conns=10 rate=5\tburst=20 bw_up=1M bw_down=2Mi "
                                    "tunnel_bw_down=64Ki quota=100G/month quota_close=yes ",
                                    err, sizeof(err)),
                     0);
    assert_int_equal(l.max_conns, 10);
    assert_int_equal(l.rate, 5);
    assert_int_equal(l.burst, 20);
    assert_int_equal(l.bw[0], 1000000);
    assert_int_equal(l.bw[1], 2 << 20);
    assert_int_equal(l.tunnel_bw[0], LIM_UNSET);
    assert_int_equal(l.tunnel_bw[1], 64 << 10);
    assert_int_equal(l.quota, 100000000000ull);
    assert_int_equal(l.quota_period, LIM_PERIOD_MONTH);
    assert_int_equal(l.quota_close, 1);
    assert_true(lim_conf_has_bw(&l));
    assert_false(lim_conf_none(&l));
    /* The canonical text parses back to the same settings. */
    lim_conf_format(&l, text, sizeof(text));
    struct lim_conf back;
    lim_conf_unset(&back);
    assert_int_equal(lim_conf_parse(&back, LIM_KEYS_ALL, text, err, sizeof(err)), 0);
    assert_memory_equal(&l, &back, sizeof(l));

    /* Errors say which word and why. */
    struct {
        unsigned keys;
        const char *text, *want;
    } bad[] = {
        {LIM_KEYS_ALL, "max_conns=lots", "max_conns: 'lots' is not a count"},
        {LIM_KEYS_ALL, "burst=0", "burst: '0' is not a count of at least 1"},
        {LIM_KEYS_ALL, "colour=red", "unknown limit 'colour'"},
        {LIM_KEYS_ALL, "bw_sideways=1M", "unknown limit 'bw_sideways'"},
        {LIM_KEYS_ALL, "max_conns", "'max_conns' is not key=value"},
        {LIM_KEYS_ALL, "=3", "'=3' is not key=value"},
        {LIM_KEYS_ALL, "quota=10G/week", "quota: '10G/week' is not SIZE/day"},
        {LIM_KEYS_ALL, "quota=10G", "quota: '10G' is not SIZE/day"},
        {LIM_KEYS_ALL, "quota_close=maybe", "quota_close: 'maybe' is not yes or no"},
        {LIM_KEYS_NO_QUOTA, "quota=1G/day", "'quota' is a per-user setting"},
        {LIM_KEYS_ALL, "rate=4294967296", "rate: '4294967296' is not a count"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lim_conf_unset(&l);
        err[0] = '\0';
        if (lim_conf_parse(&l, bad[i].keys, bad[i].text, err, sizeof(err)) == 0)
            fail_msg("'%s' accepted", bad[i].text);
        if (!strstr(err, bad[i].want))
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, err, bad[i].want);
    }
    /* quota=0: no quota, explicitly (a user exempt from the default). */
    lim_conf_unset(&l);
    assert_int_equal(lim_conf_parse(&l, LIM_KEYS_ALL, "quota=0", err, sizeof(err)), 0);
    assert_int_equal(l.quota, 0);
}

static void
test_merge(void **state)
{
    (void)state;
    struct lim_conf rule, line, dflt, out;
    char err[200];
    lim_conf_unset(&rule);
    lim_conf_unset(&line);
    lim_conf_unset(&dflt);
    assert_int_equal(lim_conf_parse(&rule, LIM_KEYS_NO_QUOTA, "max_conns=1", err, 200), 0);
    assert_int_equal(lim_conf_parse(&line, LIM_KEYS_ALL, "max_conns=5 rate=0", err, 200), 0);
    assert_int_equal(lim_conf_parse(&dflt, LIM_KEYS_ALL, "max_conns=9 rate=3 bw_down=1M", err, 200),
                     0);
    lim_conf_unset(&out);
    lim_conf_merge(&out, &rule);
    lim_conf_merge(&out, &line);
    lim_conf_merge(&out, &dflt);
    assert_int_equal(out.max_conns, 1); /* the rule wins */
    assert_int_equal(out.rate, 0);      /* the line's 0 exempts from the default's 3 */
    assert_int_equal(out.bw[1], 1000000);
    assert_int_equal(lim_val(out.bw[0]), 0);
}

/* New-tunnel rate 2/s, burst 3: three at once, then one per 500 ms. */
static void
test_gcra_take(void **state)
{
    (void)state;
    _Atomic uint64_t tat = 0;
    uint64_t now = 1000 * S, cost = S / 2, tau = 2 * cost, wait = 0;
    for (int i = 0; i < 3; i++)
        assert_true(gcra_take(&tat, now, cost, tau, &wait));
    assert_false(gcra_take(&tat, now, cost, tau, &wait));
    assert_int_equal(wait, cost);
    assert_false(gcra_take(&tat, now + cost - 1, cost, tau, NULL));
    assert_true(gcra_take(&tat, now + cost, cost, tau, NULL));
    assert_false(gcra_take(&tat, now + cost, cost, tau, NULL));
    /* Idle for long: the bucket is full again, but no fuller than the burst. */
    now += 100 * S;
    for (int i = 0; i < 3; i++)
        assert_true(gcra_take(&tat, now, cost, tau, NULL));
    assert_false(gcra_take(&tat, now, cost, tau, NULL));
}

/*
 * Bandwidth 1 MB/s, tau 100 ms: 100 KB go at once; then each reservation is
 * ready when its bytes' time has come, in the order they were made, and
 * returned bytes give their time back.
 */
static void
test_gcra_reserve(void **state)
{
    (void)state;
    _Atomic uint64_t tat = 0;
    uint64_t now = 1000 * S, rate = 1000000, tau = 100 * MS;
    uint64_t r = gcra_reserve(&tat, now, rate, tau, 50000);
    assert_int_equal(r, now);
    r = gcra_reserve(&tat, now, rate, tau, 50000);
    assert_int_equal(r, now); /* 100 KB: exactly the burst */
    /* The next 10 KB: ready when the first 10 ms of the second past tau have gone. */
    uint64_t a = gcra_reserve(&tat, now, rate, tau, 10000);
    uint64_t b = gcra_reserve(&tat, now, rate, tau, 10000);
    assert_int_equal(a, now + 10 * MS);
    assert_int_equal(b, now + 20 * MS); /* behind a: FIFO */
    /* b's bytes were not read: their time goes back, and the next comes earlier. */
    gcra_return(&tat, rate, 10000);
    uint64_t c = gcra_reserve(&tat, now, rate, tau, 10000);
    assert_int_equal(c, now + 20 * MS);
    /* Over any window the bytes ready add up to the rate (plus tau). */
    _Atomic uint64_t t2 = 0;
    uint64_t total = 0, start = 5000 * S;
    for (;;) {
        uint64_t when = gcra_reserve(&t2, start, rate, tau, 4096);
        if (when > start + 10 * S)
            break;
        total += 4096;
    }
    assert_in_range(total, 10 * rate + rate / 10 - 4096, 10 * rate + rate / 10);
}

/* Two threads take and give back one user's places: never more than max at once. */
struct race {
    struct lim_node *n;
    uint64_t max, over, taken;
    _Atomic uint64_t *inside;
};

static void *
racer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 200000; i++) {
        if (!lim_open_take(r->n, r->max))
            continue;
        r->taken++;
        uint64_t in = atomic_fetch_add(r->inside, 1) + 1;
        if (in > r->max)
            r->over++;
        atomic_fetch_sub(r->inside, 1);
        lim_open_put(r->n);
    }
    return NULL;
}

static void
test_open_exact(void **state)
{
    (void)state;
    static struct lim_node n;
    _Atomic uint64_t inside = 0;
    struct race a = {&n, 3, 0, 0, &inside}, b = a;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, racer, &a);
    pthread_create(&tb, NULL, racer, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.over + b.over, 0);
    assert_true(a.taken > 0 && b.taken > 0);
    assert_int_equal(atomic_load(&n.open), 0);
    /* At the limit: refused; dead: refused whatever the limit. */
    for (int i = 0; i < 3; i++)
        assert_true(lim_open_take(&n, 3));
    assert_false(lim_open_take(&n, 3));
    assert_true(lim_open_take(&n, 0)); /* 0: no limit, still counted */
    assert_int_equal(atomic_load(&n.open), 4);
    atomic_store(&n.open, LIM_DEAD);
    assert_false(lim_open_take(&n, 0));
    assert_int_equal(atomic_load(&n.open), LIM_DEAD);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),        cmocka_unit_test(test_words),
        cmocka_unit_test(test_merge),        cmocka_unit_test(test_gcra_take),
        cmocka_unit_test(test_gcra_reserve), cmocka_unit_test(test_open_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
