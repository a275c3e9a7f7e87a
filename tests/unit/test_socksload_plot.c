/*
 * test_socksload_plot.c - tools/socksload/plot.c and limits.c, their pure parts: an
 * --intervals line as a data row (units converted, null latency missing, the final line
 * skipped, a bad line refused with the reason), the output format from its name, the gnuplot
 * script (terminal fallback, quoting, three panels); socksload's own limits (open files,
 * local ports, a CPU-bound worker). Built and run by `make socksload-test` (mk/socksload.mk).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "socksload.h"

static void
test_row(void **state)
{
    char row[256], err[200];

    (void)state;
    assert_int_equal(plot_row("{\"t\":1.002,\"secs\":1.002,\"units\":10,\"bytes\":125000,\"rate\":"
                              "10.0,\"throughput\":125000.0,\"failures\":0,\"open\":2,\"samples\":"
                              "10,\"p50_us\":1500.0,\"p90_us\":2.0,\"p99_us\":2500.5,\"max_us\":"
                              "3000.0}\n",
                              row, sizeof(row), err, sizeof(err)),
                     1);
    assert_string_equal(row, "1.002\t1.000000\t10.000\t1.5000\t2.5005\t3.0000\n");
    /* No samples: the latency is missing, not 0. */
    assert_int_equal(plot_row("{\"t\":2,\"throughput\":0,\"rate\":0,\"p50_us\":null,\"p99_us\":"
                              "null,\"max_us\":null}",
                              row, sizeof(row), err, sizeof(err)),
                     1);
    assert_string_equal(row, "2.000\t0.000000\t0.000\t?\t?\t?\n");
    /* Not intervals: blank lines and the final line. */
    assert_int_equal(plot_row("\n", row, sizeof(row), err, sizeof(err)), 0);
    assert_int_equal(plot_row("{\"final\":true,\"t\":3,\"throughput\":1,\"rate\":1,\"p50_us\":1,"
                              "\"p99_us\":1,\"max_us\":1}\n",
                              row, sizeof(row), err, sizeof(err)),
                     0);
    /* Bad lines, with the reason. */
    assert_int_equal(plot_row("t=1 rate=2\n", row, sizeof(row), err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "not a JSON object");
    assert_int_equal(plot_row("{\"t\":1,\"throughput\":5,\"rate\":oops,\"p50_us\":1,\"p99_us\":1,"
                              "\"max_us\":1}",
                              row, sizeof(row), err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "\"rate\""));
    assert_int_equal(plot_row("{\"t\":null,\"throughput\":5,\"rate\":1,\"p50_us\":1,\"p99_us\":1,"
                              "\"max_us\":1}",
                              row, sizeof(row), err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(
        plot_row("{\"t\":1,\"throughput\":5,\"rate\":1}", row, sizeof(row), err, sizeof(err)),
        -EINVAL);
    assert_non_null(strstr(err, "\"p50_us\""));
}

static void
test_format(void **state)
{
    enum plot_fmt f = PLOT_PNG;

    (void)state;
    assert_int_equal(plot_format("a/run.svg", &f), 0);
    assert_int_equal(f, PLOT_SVG);
    assert_int_equal(plot_format("RUN.PNG", &f), 0);
    assert_int_equal(f, PLOT_PNG);
    assert_int_equal(plot_format("run.gif", &f), -EINVAL);
    assert_int_equal(plot_format(".svg", &f), -EINVAL);
    assert_int_equal(plot_format("svg", &f), -EINVAL);
}

static void
test_script(void **state)
{
    char s[16384];

    (void)state;
    int n = plot_script(s, sizeof(s), "/tmp/d.tsv", "it's.svg", PLOT_SVG, "a 'b'");
    assert_true(n > 0 && (size_t)n < sizeof(s));
    assert_non_null(strstr(s, "set terminal svg "));
    assert_null(strstr(s, "png"));
    assert_non_null(strstr(s, "exit status 3"));
    assert_non_null(strstr(s, "set output 'it''s.svg'\n"));
    assert_non_null(strstr(s, "set multiplot layout 3,1 title 'a ''b'''\n"));
    assert_non_null(strstr(s, "plot '/tmp/d.tsv' using 1:2 "));
    assert_non_null(strstr(s, "plot '/tmp/d.tsv' using 1:3 "));
    assert_non_null(strstr(s, "plot '/tmp/d.tsv' using 1:4 "));
    assert_non_null(strstr(s, "'' using 1:6 "));
    assert_non_null(strstr(s, "set datafile missing '?'"));

    plot_script(s, sizeof(s), "d", "o.png", PLOT_PNG, "t\nset output '/etc/x'");
    assert_non_null(strstr(s, "set terminal pngcairo "));
    assert_non_null(strstr(s, "set terminal png size"));
    assert_null(strstr(s, "set terminal svg"));
    /* A newline in the title never starts a command of its own. */
    assert_null(strstr(s, "\nset output '/etc/x'"));
}

static void
test_limits(void **state)
{
    struct limits l = {0};

    (void)state;
    assert_int_equal(limits_fds_needed(MODE_HOLD, 100, true), 264);
    assert_int_equal(limits_fds_needed(MODE_HOLD, 100, false), 164);
    assert_int_equal(limits_fds_needed(MODE_UDP, 10, true), 94);
    limits_nofile(&l, 1024, 1024);
    assert_int_equal(l.n, 0);
    limits_nofile(&l, 1023, 1024);
    assert_int_equal(l.n, 1);
    assert_non_null(strstr(l.msg[0], "the limit is 1023 and the run needs about 1024"));
    limits_ports(&l, 0);
    assert_int_equal(l.n, 1);
    limits_ports(&l, 5);
    assert_non_null(strstr(l.msg[1], "5 connects failed with EADDRNOTAVAIL"));
    assert_non_null(strstr(l.msg[1], "--source"));
    /* 90 % busy is not CPU-bound; over it is. */
    assert_false(limits_cpu(&l, 0, 900, 1000));
    assert_false(limits_cpu(&l, 0, 1, 0));
    assert_true(limits_cpu(&l, 3, 970, 1000));
    assert_string_equal(l.msg[2], "socksload's worker 3 was CPU-bound (97 %): the figure may be "
                                  "socksload's limit, try --threads");
    for (int i = 0; i < 20; i++)
        limits_cpu(&l, 1, 2000, 1000);
    assert_int_equal(l.n, LIMITS_MAX);
    assert_non_null(strstr(l.msg[3], "(100 %)"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_script),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
