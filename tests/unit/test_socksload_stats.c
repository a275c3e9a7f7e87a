/*
 * test_socksload_stats.c - tools/socksload/stats.c: the log-linear latency histogram (3
 * significant digits) against known distributions, merging as stats_sum does it across
 * worker threads, the exact max, and the reader's "no samples"; failures counted by (kind,
 * detail), merged across workers, and named for a person (reply codes, errno). Built and run by `make
 * socksload-test` (mk/socksload.mk), linked with stats.o alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hist_near.h"
#include "socksload.h"

/* struct stats is 264 KiB: on the heap, zeroed. */
static struct stats *
fresh(void)
{
    struct stats *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    return s;
}

static void
test_uniform(void **state)
{
    struct stats *s = fresh();

    (void)state;
    for (uint64_t v = 1; v <= 1000000; v++)
        stats_record_ns(s, v);
    assert_int_equal(stats_samples(s->hist), 1000000);
    near(stats_percentile(s->hist, 0.50), 500000);
    near(stats_percentile(s->hist, 0.90), 900000);
    near(stats_percentile(s->hist, 0.99), 990000);
    near(stats_percentile(s->hist, 0.999), 999000);
    assert_int_equal(stats_max(s), 1000000);
    free(s);
}

/* Every value of every size, alone: the percentile is within 0.1 % of it (the buckets are
 * at most 1/1024 of their value wide and read in their middle), up to an hour. */
static void
test_constant(void **state)
{
    static const uint64_t vals[] = {
        1,
        7,
        2047,
        2048,
        2049,
        4095,
        4096,
        123456,
        999999,
        1000000,
        123456789,
        1000000007ull,
        59999999999ull,
        3600000000000ull,
        4398046511103ull,
    };

    (void)state;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        struct stats *s = fresh();
        for (int k = 0; k < 1000; k++)
            stats_record_ns(s, vals[i]);
        near(stats_percentile(s->hist, 0.50), (double)vals[i]);
        near(stats_percentile(s->hist, 0.999), (double)vals[i]);
        assert_int_equal(stats_max(s), vals[i]);
        free(s);
    }
    /* Every value from 1 to 2^22, and powers around 2^30: each read back within 0.1 %. */
    for (uint64_t v = 1; v < (1u << 22); v += 1 + v / 4096) {
        struct stats *s = fresh();
        stats_record_ns(s, v);
        near(stats_percentile(s->hist, 0.5), (double)v);
        free(s);
    }
}

/* Two spikes: 90 % at 100 us, 10 % at 50 ms. */
static void
test_two_spikes(void **state)
{
    struct stats *s = fresh();

    (void)state;
    for (int i = 0; i < 9000; i++)
        stats_record_ns(s, 100000);
    for (int i = 0; i < 1000; i++)
        stats_record_ns(s, 50000000);
    near(stats_percentile(s->hist, 0.50), 100000);
    near(stats_percentile(s->hist, 0.89), 100000);
    near(stats_percentile(s->hist, 0.90), 50000000);
    near(stats_percentile(s->hist, 0.99), 50000000);
    assert_int_equal(stats_max(s), 50000000);
    free(s);
}

/* Merging as main does it (stats_sum of every worker's stats into a zeroed one) gives what
 * one histogram fed everything gives: the same buckets, counters, and the exact max. */
static void
test_merge(void **state)
{
    struct stats *a = fresh(), *b = fresh(), *all = fresh(), *sum = fresh();

    (void)state;
    srand(16);
    for (int i = 0; i < 200000; i++) {
        uint64_t v = (uint64_t)rand() * 37 % 5000000000ull;
        stats_record_ns(i % 3 ? a : b, v);
        stats_record_ns(all, v);
    }
    stats_record_ns(b, 7777777777ull); /* the max is in the second one */
    stats_record_ns(all, 7777777777ull);
    stats_add(&a->units, 5);
    stats_add(&b->units, 6);
    stats_add(&all->units, 11);
    stats_error(a, STATS_E_TIMEOUT);
    stats_error(all, STATS_E_TIMEOUT);
    stats_sum(sum, a);
    stats_sum(sum, b);
    assert_memory_equal(sum->hist, all->hist, sizeof(all->hist));
    assert_int_equal(sum->units, 11);
    assert_int_equal(sum->err[STATS_E_TIMEOUT], 1);
    assert_int_equal(stats_max(sum), 7777777777ull);
    /* The max is the larger, in either order, never a sum. */
    memset(sum, 0, sizeof(*sum));
    stats_sum(sum, b);
    stats_sum(sum, a);
    assert_int_equal(stats_max(sum), 7777777777ull);
    for (double q = 0.05; q < 1; q += 0.05)
        assert_int_equal(stats_percentile(sum->hist, q), stats_percentile(all->hist, q));
    free(a);
    free(b);
    free(all);
    free(sum);
}

/* Past 2^42 ns the value lands in the last bucket; the max stays exact. */
static void
test_overflow(void **state)
{
    struct stats *s = fresh();

    (void)state;
    stats_record_ns(s, UINT64_MAX / 2);
    assert_int_equal(s->hist[STATS_HIST_N - 1], 1);
    assert_int_equal(stats_max(s), UINT64_MAX / 2);
    free(s);
}

static void
test_reader(void **state)
{
    struct stats *s = fresh();
    char buf[200];

    (void)state;
    /* Nothing recorded: no figure at all. */
    assert_int_equal(stats_samples(s->hist), 0);
    assert_int_equal(stats_percentile(s->hist, 0.5), 0);
    stats_latency_line(buf, sizeof(buf), s);
    assert_string_equal(buf, "no samples");
    assert_null(strstr(buf, "0.0us"));
    /* One sample: every percentile is it (never above the exact max). */
    stats_record_ns(s, 1500000);
    stats_latency_line(buf, sizeof(buf), s);
    assert_string_equal(buf, "p50 1500us, p90 1500us, p99 1500us, p99.9 1500us, max 1500us");
    stats_record_ns(s, 12345678901ull);
    stats_latency_line(buf, sizeof(buf), s);
    assert_non_null(strstr(buf, "max 12.35s"));
    /* A short buffer truncates, terminated. */
    stats_latency_line(buf, 10, s);
    assert_int_equal(strlen(buf), 9);
    free(s);
}

static void
test_fmt(void **state)
{
    char buf[32];

    (void)state;
    stats_fmt_ns(buf, sizeof(buf), 1234);
    assert_string_equal(buf, "1.2us");
    stats_fmt_ns(buf, sizeof(buf), 456000);
    assert_string_equal(buf, "456us");
    stats_fmt_ns(buf, sizeof(buf), 7800000000ull);
    assert_string_equal(buf, "7.80s");
    stats_fmt_ns(buf, sizeof(buf), 300100000);
    assert_string_equal(buf, "300.1ms");
    stats_fmt_ns(buf, sizeof(buf), 12300000000ull);
    assert_string_equal(buf, "12.30s");
}

static void
expect_fail_str(enum stats_err e, uint64_t detail, bool socks4, const char *want)
{
    char buf[200];

    stats_fail_str(buf, sizeof(buf), e, detail, socks4);
    assert_string_equal(buf, want);
}

/* Every reply code of RFC 1928 section 6 and SOCKS4 spelled out; the errno by name and text. */
static void
test_fail_str(void **state)
{
    (void)state;
    expect_fail_str(STATS_E_REPLY, 0x01, false, "SOCKS reply 0x01 general SOCKS server failure");
    expect_fail_str(STATS_E_REPLY, 0x02, false, "SOCKS reply 0x02 not allowed by ruleset");
    expect_fail_str(STATS_E_REPLY, 0x03, false, "SOCKS reply 0x03 network unreachable");
    expect_fail_str(STATS_E_REPLY, 0x04, false, "SOCKS reply 0x04 host unreachable");
    expect_fail_str(STATS_E_REPLY, 0x05, false, "SOCKS reply 0x05 connection refused");
    expect_fail_str(STATS_E_REPLY, 0x06, false, "SOCKS reply 0x06 TTL expired");
    expect_fail_str(STATS_E_REPLY, 0x07, false, "SOCKS reply 0x07 command not supported");
    expect_fail_str(STATS_E_REPLY, 0x08, false, "SOCKS reply 0x08 address type not supported");
    expect_fail_str(STATS_E_REPLY, 0x09, false, "SOCKS reply 0x09 unassigned");
    expect_fail_str(STATS_E_REPLY, 0xff, false, "SOCKS reply 0xff unassigned");
    expect_fail_str(STATS_E_REPLY, 0x5b, true, "SOCKS4 reply 0x5b rejected or failed");
    expect_fail_str(STATS_E_REPLY, 0x5c, true,
                    "SOCKS4 reply 0x5c rejected: cannot connect to identd on the client");
    expect_fail_str(STATS_E_REPLY, 0x5d, true,
                    "SOCKS4 reply 0x5d rejected: identd reports a different user-id");
    expect_fail_str(STATS_E_REPLY, 0x02, true, "SOCKS4 reply 0x02 unassigned");
    expect_fail_str(STATS_E_AUTH, STATS_D_METHOD + 0xff, false, "no acceptable method (05 ff)");
    expect_fail_str(STATS_E_AUTH, STATS_D_METHOD + 0x01, false,
                    "method 0x01 chosen, not offered (05 01)");
    expect_fail_str(STATS_E_AUTH, 0x01, false, "RFC 1929 auth failed (status 0x01)");
    expect_fail_str(STATS_E_CONNECT, ECONNREFUSED, false,
                    "connect: ECONNREFUSED (Connection refused)");
    expect_fail_str(STATS_E_CONNECT, EMFILE, false, "connect: EMFILE (Too many open files)");
    expect_fail_str(STATS_E_RESET, ECONNRESET, false,
                    "reset: ECONNRESET (Connection reset by peer)");
    expect_fail_str(STATS_E_CLOSED, 0, false, "closed: EOF");
    expect_fail_str(STATS_E_TIMEOUT, 0, false, "timeout");
    expect_fail_str(STATS_E_PROTOCOL, 0, false, "protocol");
    expect_fail_str(STATS_E_MISMATCH, 0, false, "data_mismatch");
    /* connrate --close target: a proxy that never passed the target's FIN on. */
    expect_fail_str(STATS_E_NO_EOF, 0, false, "no EOF from the target through the proxy");
    assert_string_equal(stats_err_str(STATS_E_NO_EOF), "no_eof");
}

/* Pairs count apart, merge by (kind, detail) across workers, overflow into fail_more, and
 * stats_fail_pairs names the one pair only when it is every failure. */
/* http mode's failures: the status, the two sizes (kept apart: the detail is 64 bits), the
 * parser's error by name. */
static void
test_fail_http(void **state)
{
    static struct stats s;
    const struct stats_fail *only;

    (void)state;
    expect_fail_str(STATS_E_HTTP_STATUS, 404, false, "HTTP status 404");
    expect_fail_str(STATS_E_HTTP_SIZE, STATS_D_SIZE(10, 20), false,
                    "HTTP body 10 bytes, expected 20");
    expect_fail_str(STATS_E_HTTP_SIZE, STATS_D_SIZE(5ull << 33, 0), false,
                    "HTTP body 4294967295+ bytes, expected 0");
    expect_fail_str(STATS_E_HTTP_MALFORMED, HTTP_E_STATUS_LINE, false,
                    "HTTP malformed response: bad status line");
    expect_fail_str(STATS_E_HTTP_MALFORMED, HTTP_E_BOTH, false,
                    "HTTP malformed response: both Content-Length and Transfer-Encoding");
    assert_string_equal(stats_err_str(STATS_E_HTTP_SIZE), "http_size");

    memset(&s, 0, sizeof(s));
    stats_fail(&s, STATS_E_HTTP_SIZE, STATS_D_SIZE(1, 2));
    stats_fail(&s, STATS_E_HTTP_SIZE, STATS_D_SIZE(1, 3));
    stats_fail(&s, STATS_E_HTTP_SIZE, STATS_D_SIZE(1, 3));
    assert_int_equal(stats_fail_pairs(&s, &only), 2);
    assert_int_equal(s.fail[1].count, 2);
    assert_int_equal(s.err[STATS_E_HTTP_SIZE], 3);
}

static void
test_fail_pairs(void **state)
{
    struct stats *a = fresh(), *b = fresh(), *sum = fresh();
    const struct stats_fail *only;

    (void)state;
    assert_int_equal(stats_fail_pairs(a, &only), 0);
    assert_null(only);
    for (int i = 0; i < 5; i++)
        stats_fail(a, STATS_E_CONNECT, ECONNREFUSED);
    assert_int_equal(stats_fail_pairs(a, &only), 1);
    assert_non_null(only);
    assert_int_equal(only->count, 5);
    stats_fail(b, STATS_E_CONNECT, ECONNREFUSED);
    stats_fail(b, STATS_E_REPLY, 2);
    stats_fail(b, STATS_E_REPLY, 2);
    stats_fail(b, STATS_E_REPLY, 5);
    assert_int_equal(stats_fail_pairs(b, &only), 3);
    assert_null(only);
    stats_sum(sum, a);
    stats_sum(sum, b);
    assert_int_equal(stats_fail_pairs(sum, &only), 3);
    assert_int_equal(sum->fail[0].kind, STATS_E_CONNECT);
    assert_int_equal(sum->fail[0].detail, ECONNREFUSED);
    assert_int_equal(sum->fail[0].count, 6);
    assert_int_equal(sum->fail[1].count, 2);
    assert_int_equal(sum->fail[2].detail, 5);
    assert_int_equal(sum->err[STATS_E_REPLY], 3);
    assert_int_equal(sum->err[STATS_E_CONNECT], 6);
    /* An error counted without its pair (the target's mismatches): no single pair. */
    stats_add(&a->err[STATS_E_MISMATCH], 1);
    stats_fail_pairs(a, &only);
    assert_null(only);
    /* Past STATS_FAIL_N distinct pairs: counted in fail_more, also after a merge. */
    for (int d = 0; d < STATS_FAIL_N + 3; d++)
        stats_fail(b, STATS_E_OTHER, 1000 + d);
    assert_int_equal(stats_fail_pairs(b, &only), STATS_FAIL_N);
    assert_int_equal(b->fail_more, 6);
    memset(sum, 0, sizeof(*sum));
    stats_sum(sum, b);
    assert_int_equal(sum->fail_more, 6);
    assert_int_equal(stats_errors(sum), 4 + STATS_FAIL_N + 3);
    free(a);
    free(b);
    free(sum);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform),    cmocka_unit_test(test_constant),
        cmocka_unit_test(test_two_spikes), cmocka_unit_test(test_merge),
        cmocka_unit_test(test_overflow),   cmocka_unit_test(test_reader),
        cmocka_unit_test(test_fmt),        cmocka_unit_test(test_fail_str),
        cmocka_unit_test(test_fail_http),  cmocka_unit_test(test_fail_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
