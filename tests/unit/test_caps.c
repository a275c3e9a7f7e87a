/*
 * test_caps.c - cmocka unit tests for the choice of the capabilities kept after
 * start-up (src/caps.c): what each configured need keeps of what is held, and
 * nothing else; the names printed at start; this process's sets as read.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <linux/capability.h>
#include <string.h>

#include "caps.h"

#define ALL   (~(uint64_t)0 >> (64 - CAP_LAST_CAP - 1))
#define RAW   CAPS_BIT(CAP_NET_RAW)
#define ADMIN CAPS_BIT(CAP_NET_ADMIN)
#define BINDS CAPS_BIT(CAP_NET_BIND_SERVICE)

/* Nothing needed: nothing kept, whatever is held (root holds everything). */
static void
test_choose_none(void **state)
{
    (void)state;
    assert_int_equal(caps_choose(ALL, false, true, false), 0);
    assert_int_equal(caps_choose(ALL, false, false, false), 0);
    assert_int_equal(caps_choose(0, true, true, true), 0);
}

/* Marks: CAP_NET_RAW where the kernel takes it, else CAP_NET_ADMIN; never both. */
static void
test_choose_mark(void **state)
{
    (void)state;
    assert_int_equal(caps_choose(ALL, true, true, false), RAW);
    assert_int_equal(caps_choose(ALL, true, false, false), ADMIN);
    assert_int_equal(caps_choose(ADMIN | BINDS, true, true, false), ADMIN);
    assert_int_equal(caps_choose(RAW | BINDS, true, false, false), 0);
    assert_int_equal(caps_choose(RAW | BINDS, true, true, false), RAW);
}

/* Low BIND/UDP ports: CAP_NET_BIND_SERVICE if held, next to a mark's. */
static void
test_choose_low_ports(void **state)
{
    (void)state;
    assert_int_equal(caps_choose(ALL, false, true, true), BINDS);
    assert_int_equal(caps_choose(ALL, true, true, true), BINDS | RAW);
    assert_int_equal(caps_choose(RAW, false, true, true), 0);
}

static void
test_names(void **state)
{
    (void)state;
    char buf[128];
    caps_names(0, buf, sizeof(buf));
    assert_string_equal(buf, "none");
    caps_names(RAW | BINDS, buf, sizeof(buf));
    assert_string_equal(buf, "cap_net_bind_service,cap_net_raw");
    caps_names(CAPS_BIT(40), buf, sizeof(buf));
    assert_string_equal(buf, "cap_40");
    caps_names(RAW | BINDS, buf, 8); /* cut, still a string */
    assert_int_equal(strlen(buf), 7);
}

/* This process's sets: effective within permitted, ambient within permitted. */
static void
test_read(void **state)
{
    (void)state;
    struct caps c;
    assert_int_equal(caps_read(&c), 0);
    assert_int_equal(c.eff & ~c.prm, 0);
    assert_int_equal(c.amb & ~c.prm, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_none),
        cmocka_unit_test(test_choose_mark),
        cmocka_unit_test(test_choose_low_ports),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
