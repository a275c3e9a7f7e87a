/*
 * test_socksload_intervals.c - tools/socksload/intervals.c and phases.c: an interval is the
 * difference of two cumulative snapshots (counts and histogram buckets), its percentiles
 * and max those of the samples added in between alone, checked against known distributions;
 * the starts due on the --rate schedule; the JSON line; the phase histograms merged across
 * workers and printed ("no samples" where none). Built and run by `make socksload-test`
 * (mk/socksload.mk), linked with intervals.o, phases.o and stats.o.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hist_near.h"
#include "socksload.h"

static void *
fresh(size_t n)
{
    void *p = calloc(1, n);

    assert_non_null(p);
    return p;
}

/* A first second of 1..1000 us uniform and a slow max, then a second of 2..3 ms uniform:
 * the second interval's figures are the second distribution's alone. */
static void
test_diff(void **state)
{
    struct stats *a = fresh(sizeof(*a)), *b = fresh(sizeof(*b));
    uint64_t *scratch = fresh(STATS_HIST_N * sizeof(*scratch));
    struct interval iv;

    (void)state;
    for (uint64_t v = 1; v <= 100000; v++)
        stats_record_ns(a, v * 10);
    stats_record_ns(a, 900000000);
    a->units = 100001;
    a->bytes_up = 1000;
    a->bytes_down = 500;
    a->open = 7;
    stats_error(a, STATS_E_RESET);
    memcpy(b, a, sizeof(*a));
    for (uint64_t v = 0; v < 100000; v++)
        stats_record_ns(b, 2000000 + v * 10);
    b->units += 100000;
    b->bytes_down += 4096;
    b->open = 3;
    stats_error(b, STATS_E_TIMEOUT);
    stats_error(b, STATS_E_TIMEOUT);

    intervals_diff(&iv, b, a, scratch);
    assert_int_equal(iv.units, 100000);
    assert_int_equal(iv.bytes, 4096);
    assert_int_equal(iv.failures, 2);
    assert_int_equal(iv.open, 3);
    assert_int_equal(iv.samples, 100000);
    near(iv.p50_ns, 2500000);
    near(iv.p90_ns, 2900000);
    near(iv.p99_ns, 2990000);
    near(iv.max_ns, 2999990); /* not the first second's 900 ms */

    /* From the start (prev NULL): everything, the slow one included. */
    intervals_diff(&iv, a, NULL, scratch);
    assert_int_equal(iv.units, 100001);
    assert_int_equal(iv.bytes, 1500);
    assert_int_equal(iv.failures, 1);
    assert_int_equal(iv.samples, 100001);
    near(iv.p50_ns, 500000);
    near(iv.max_ns, 900000000);

    /* No new sample: no latency. */
    intervals_diff(&iv, a, a, scratch);
    assert_int_equal(iv.samples, 0);
    assert_int_equal(iv.units, 0);
    assert_int_equal(iv.max_ns, 0);
    free(a);
    free(b);
    free(scratch);
}

static void
test_due(void **state)
{
    (void)state;
    assert_int_equal(intervals_due(100, 0, 0), 0);
    assert_int_equal(intervals_due(100, 0.001, 0), 1);   /* tunnel 0 is due at the start */
    assert_int_equal(intervals_due(100, 1.0, 0), 100);   /* 0 .. 99 before 1 s */
    assert_int_equal(intervals_due(100, 1.005, 0), 101); /* and 100 at 1 s */
    assert_int_equal(intervals_due(2.5, 2, 0), 5);
    assert_int_equal(intervals_due(100, 10, 300), 300); /* --count bounds it */
}

static void
test_format(void **state)
{
    struct interval iv = {.t = 2.0,
                          .secs = 0.5,
                          .units = 50,
                          .bytes = 1000,
                          .failures = 1,
                          .open = 4,
                          .samples = 50,
                          .p50_ns = 1500,
                          .p90_ns = 2000,
                          .p99_ns = 9000,
                          .max_ns = 8000,
                          .sched = true,
                          .due = 60,
                          .started = 55};
    char line[600];

    (void)state;
    int n = intervals_format(line, sizeof(line), &iv, false);
    assert_true(n > 0 && (size_t)n < sizeof(line) && line[n - 1] == '\n');
    assert_string_equal(line, "{\"t\":2.000,\"secs\":0.500,\"units\":50,\"bytes\":1000,"
                              "\"rate\":100.0,\"throughput\":2000.0,\"failures\":1,\"open\":4,"
                              "\"samples\":50,\"p50_us\":1.5,\"p90_us\":2.0,\"p99_us\":8.0,"
                              "\"max_us\":8.0,\"due\":60,\"started\":55}\n");
    iv.samples = 0;
    iv.sched = false;
    intervals_format(line, sizeof(line), &iv, true);
    assert_non_null(strstr(line, "{\"final\":true,\"t\":2.000,"));
    assert_non_null(strstr(line, "\"p50_us\":null"));
    assert_null(strstr(line, "\"due\""));
}

static void
test_phases(void **state)
{
    struct phases *a = fresh(sizeof(*a)), *b = fresh(sizeof(*b)), *sum = fresh(sizeof(*sum));
    char *buf = NULL;
    size_t len = 0;

    (void)state;
    for (uint64_t v = 1; v <= 1000; v++)
        phases_record(a, PHASE_CONNECT, v * 1000);
    for (uint64_t v = 1001; v <= 2000; v++)
        phases_record(b, PHASE_CONNECT, v * 1000);
    phases_record(b, PHASE_REPLY, 200000000);
    phases_sum(sum, a);
    phases_sum(sum, b);
    assert_int_equal(stats_samples(sum->p[PHASE_CONNECT].hist), 2000);
    near(stats_percentile(sum->p[PHASE_CONNECT].hist, 0.5), 1001000); /* rank 1000 of 0..1999 */
    near(stats_percentile(sum->p[PHASE_CONNECT].hist, 0.99), 1981000);
    assert_int_equal(sum->p[PHASE_CONNECT].max_ns, 2000000);
    assert_int_equal(sum->p[PHASE_REPLY].max_ns, 200000000);
    assert_int_equal(stats_samples(sum->p[PHASE_GREETING].hist), 0);

    FILE *f = open_memstream(&buf, &len);
    phases_print_table(f, sum);
    fclose(f);
    assert_non_null(strstr(buf, "  connect    p50 1001us, p90 1801us, p99 1981us"));
    assert_non_null(strstr(buf, "  greeting   no samples"));
    assert_non_null(strstr(buf, "  reply      p50 200.0ms"));
    free(buf);

    f = open_memstream(&buf, &len);
    fputc('{', f);
    phases_print_json(f, sum);
    fputc('}', f);
    fclose(f);
    assert_non_null(strstr(buf, "{\"phases\":{\"connect\":{\"samples\":2000,\"p50\":1001.2,"));
    assert_non_null(strstr(buf, ",\"max\":2000.0},\"greeting\":{\"samples\":0,\"p50\":null,"));
    for (unsigned i = 0; i < PHASE_N; i++) {
        char key[40];
        snprintf(key, sizeof(key), "\"%s\":{\"samples\":", phases_name(i));
        assert_non_null(strstr(buf, key));
    }
    assert_string_equal(buf + len - 3, "}}}");
    free(buf);
    free(a);
    free(b);
    free(sum);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_due),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_phases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
