/*
 * test_socksload_srcaddr.c - tools/socksload/srcaddr.c: --source ranges, prefixes and lists,
 * the round robin over them, and what is refused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "socksload.h"

static struct srcaddr src;

/* Address i of src as text. */
static const char *
at(uint64_t i)
{
    static char buf[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss;
    socklen_t len = 0;

    srcaddr_at(&src, i, &ss, &len);
    if (ss.ss_family == AF_INET) {
        assert_int_equal(len, sizeof(struct sockaddr_in));
        assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, 0);
        return inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof(buf));
    }
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    return inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, sizeof(buf));
}

static void
parse_ok(const char *s, uint64_t total)
{
    char err[200] = "";

    if (srcaddr_parse(&src, s, err, sizeof(err)) != 0)
        fail_msg("%s: %s", s, err);
    assert_int_equal(src.total, total);
}

static void
test_range(void **state)
{
    (void)state;
    parse_ok("127.0.0.2-127.0.0.200", 199);
    assert_string_equal(at(0), "127.0.0.2");
    assert_string_equal(at(1), "127.0.0.3");
    assert_string_equal(at(198), "127.0.0.200");
    assert_string_equal(at(199), "127.0.0.2"); /* round robin */
    /* Across an octet. */
    parse_ok("127.0.0.255-127.0.1.1", 3);
    assert_string_equal(at(1), "127.0.1.0");
    /* One address. */
    parse_ok("127.0.0.9", 1);
    assert_string_equal(at(5), "127.0.0.9");
    /* IPv6 within one /64. */
    parse_ok("fd00::1-fd00::3", 3);
    assert_string_equal(at(2), "fd00::3");
    parse_ok("::1", 1);
    assert_string_equal(at(0), "::1");
}

static void
test_prefix(void **state)
{
    (void)state;
    /* Shorter than /31: no network and no broadcast address. */
    parse_ok("127.0.0.0/24", 254);
    assert_string_equal(at(0), "127.0.0.1");
    assert_string_equal(at(253), "127.0.0.254");
    assert_string_equal(at(254), "127.0.0.1");
    /* Host bits are cleared. */
    parse_ok("127.0.0.77/30", 2);
    assert_string_equal(at(0), "127.0.0.77");
    assert_string_equal(at(1), "127.0.0.78");
    /* /31 and /32: every address (RFC 3021). */
    parse_ok("127.0.0.4/31", 2);
    assert_string_equal(at(0), "127.0.0.4");
    assert_string_equal(at(1), "127.0.0.5");
    parse_ok("127.0.0.4/32", 1);
    parse_ok("127.0.0.0/8", (1u << 24) - 2);
    assert_string_equal(at((1u << 24) - 3), "127.255.255.254");
    /* IPv6: every address. */
    parse_ok("fd00::/126", 4);
    assert_string_equal(at(0), "fd00::");
    assert_string_equal(at(3), "fd00::3");
    parse_ok("fd00::/96", 1ull << 32);
    assert_string_equal(at((1ull << 32) - 1), "fd00::ffff:ffff");
}

static void
test_list(void **state)
{
    struct sockaddr_storage a, b;

    (void)state;
    parse_ok("127.0.0.2,127.0.0.10-127.0.0.11,127.0.1.0/30", 5);
    assert_string_equal(at(0), "127.0.0.2");
    assert_string_equal(at(1), "127.0.0.10");
    assert_string_equal(at(2), "127.0.0.11");
    assert_string_equal(at(3), "127.0.1.1");
    assert_string_equal(at(4), "127.0.1.2");
    assert_string_equal(at(5), "127.0.0.2");
    assert_int_equal(src.n, 3);
    srcaddr_ends(&src, 1, &a, &b);
    assert_int_equal(((struct sockaddr_in *)&a)->sin_addr.s_addr, inet_addr("127.0.0.10"));
    assert_int_equal(((struct sockaddr_in *)&b)->sin_addr.s_addr, inet_addr("127.0.0.11"));
}

static void
test_errors(void **state)
{
    static const char *const bad[] = {
        "",
        ",",
        "127.0.0.1,",
        "127.0.0.300",
        "localhost",
        "127.0.0.5-127.0.0.4",
        "127.0.0.1-::1",
        "127.0.0.1,::1",
        "fd00::1-fd00:0:0:1::1",
        "127.0.0.0/33",
        "127.0.0.0/",
        "127.0.0.0/-1",
        "127.0.0.0/8x",
        "127.0.0.1-127.0.0.2/24",
        "fd00::/95",
        "fd00::/64",
        "fe80::1%lo",
        "0.0.0.0/0,127.0.0.1-127.0.0.3",
    };
    char err[200], many[2000] = "";

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (srcaddr_parse(&src, bad[i], err, sizeof(err)) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err[0] != '\0');
    }
    /* 0.0.0.0/0 alone is 2^32 - 2: within the bound. */
    parse_ok("0.0.0.0/0", (1ull << 32) - 2);
    /* At most SRCADDR_RANGES elements. */
    for (int i = 0; i < SRCADDR_RANGES; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s127.0.0.%d", i ? "," : "",
                 i + 1);
    parse_ok(many, SRCADDR_RANGES);
    strcat(many, ",127.0.1.1");
    assert_int_equal(srcaddr_parse(&src, many, err, sizeof(err)), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
