/*
 * test_socksload_opts.c - tools/socksload/opts.c: the option values that name a choice
 * (--close rst|fin|target, --direction down|up|both), parsed and named back. Built and run by `make
 * socksload-test` (mk/socksload.mk), linked with opts.o alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>

#include "socksload.h"

static void
test_close(void **state)
{
    enum close_how c = CLOSE_FIN;

    (void)state;
    /* The default of a zeroed struct opts is what connrate always did: RST. */
    assert_int_equal(CLOSE_RST, 0);
    assert_int_equal(opts_close_parse("rst", &c), 0);
    assert_int_equal(c, CLOSE_RST);
    assert_int_equal(opts_close_parse("fin", &c), 0);
    assert_int_equal(c, CLOSE_FIN);
    assert_string_equal(opts_close_str(CLOSE_FIN), "fin");
    assert_string_equal(opts_close_str(CLOSE_RST), "rst");
    assert_int_equal(opts_close_parse("target", &c), 0);
    assert_int_equal(c, CLOSE_TARGET);
    assert_string_equal(opts_close_str(CLOSE_TARGET), "target");
    assert_int_equal(opts_close_parse("fin", &c), 0);
    /* Exact, lower-case words only; a refusal leaves the value alone. */
    const char *bad[] = {"",     "FIN",    "Rst",    "fin ",    " fin",   "reset", "f",
                         "finx", "linger", "Target", "target ", "server", "t",     "targ"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(opts_close_parse(bad[i], &c), -EINVAL);
        assert_int_equal(c, CLOSE_FIN);
    }
}

static void
test_dir(void **state)
{
    enum dir d = DIR_BOTH;

    (void)state;
    assert_int_equal(opts_dir_parse("down", &d), 0);
    assert_int_equal(d, DIR_DOWN);
    assert_int_equal(opts_dir_parse("up", &d), 0);
    assert_int_equal(d, DIR_UP);
    assert_int_equal(opts_dir_parse("both", &d), 0);
    assert_int_equal(d, DIR_BOTH);
    assert_int_equal(opts_dir_parse("Down", &d), -EINVAL);
    assert_int_equal(opts_dir_parse("", &d), -EINVAL);
    assert_int_equal(d, DIR_BOTH);
    /* Named back as parsed: the JSON's "direction". */
    const char *names[] = {"down", "up", "both"};
    for (int i = DIR_DOWN; i <= DIR_BOTH; i++) {
        assert_int_equal(opts_dir_parse(names[i], &d), 0);
        assert_string_equal(opts_dir_str(d), names[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
