/*
 * test_addr.c - address parsing and formatting.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"

static void
parse_ok(const char *s, int dport, int fam, const char *want_text)
{
    struct sockaddr_storage ss;
    char out[ADDR_STRLEN];
    assert_int_equal(addr_parse(s, dport, &ss), 0);
    assert_int_equal(ss.ss_family, fam);
    assert_string_equal(addr_format((struct sockaddr *)&ss, out, sizeof(out)), want_text);
}

static void
parse_bad(const char *s, int dport)
{
    struct sockaddr_storage ss;
    assert_int_equal(addr_parse(s, dport, &ss), -EINVAL);
}

static void
test_ipv4(void **state)
{
    (void)state;
    parse_ok("127.0.0.1:1080", -1, AF_INET, "127.0.0.1:1080");
    parse_ok("0.0.0.0:0", -1, AF_INET, "0.0.0.0:0");
    parse_ok("10.1.2.3:65535", -1, AF_INET, "10.1.2.3:65535");
    parse_ok("192.0.2.1", 53, AF_INET, "192.0.2.1:53");
}

static void
test_ipv6(void **state)
{
    (void)state;
    parse_ok("[::1]:1080", -1, AF_INET6, "[::1]:1080");
    parse_ok("[2001:db8::1]:53", -1, AF_INET6, "[2001:db8::1]:53");
    parse_ok("::1", 53, AF_INET6, "[::1]:53");
    parse_ok("[::1]", 53, AF_INET6, "[::1]:53");
    parse_ok("[::ffff:127.0.0.1]:80", -1, AF_INET6, "[::ffff:127.0.0.1]:80");
}

static void
test_bad(void **state)
{
    (void)state;
    parse_bad("127.0.0.1", -1); /* port required */
    parse_bad("127.0.0.1:", -1);
    parse_bad("127.0.0.1:65536", -1);
    parse_bad("127.0.0.1:-1", -1);
    parse_bad("127.0.0.1:80x", -1);
    parse_bad("127.0.0.1: 80", -1);
    parse_bad("localhost:80", -1); /* names are not resolved here */
    parse_bad("[::1]:", -1);
    parse_bad("[::1]80", -1);
    parse_bad("[::1", -1);
    parse_bad("::1", -1);
    parse_bad("[127.0.0.1]:80x", -1);
    parse_bad(":80", -1);
    parse_bad("", -1);
    parse_bad("[]:80", -1);
    parse_bad("1.2.3.4.5:80", -1);
}

static void
test_len_and_format(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char out[ADDR_STRLEN];
    assert_int_equal(addr_parse("1.2.3.4:5", -1, &ss), 0);
    assert_int_equal(addr_len((struct sockaddr *)&ss), sizeof(struct sockaddr_in));
    assert_int_equal(addr_parse("[::]:5", -1, &ss), 0);
    assert_int_equal(addr_len((struct sockaddr *)&ss), sizeof(struct sockaddr_in6));
    ss.ss_family = AF_UNIX;
    assert_int_equal(addr_len((struct sockaddr *)&ss), 0);
    assert_string_equal(addr_format((struct sockaddr *)&ss, out, sizeof(out)), "(family 1)");
    /* A short buffer truncates, never overflows. */
    char tiny[6];
    assert_int_equal(addr_parse("[2001:db8::1]:53", -1, &ss), 0);
    addr_format((struct sockaddr *)&ss, tiny, sizeof(tiny));
    assert_int_equal(strlen(tiny), 5);
}

static void
test_compare_and_unmap(void **state)
{
    (void)state;
    union sockaddr_inx a, b;
    struct sockaddr_storage ss;

    assert_int_equal(addr_parse("[::ffff:10.1.2.3]:53", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    assert_int_equal(addr_parse("10.1.2.3:80", -1, &ss), 0);
    memcpy(&b, &ss, sizeof(b));
    assert_false(addr_same_ip(&a, &b)); /* families differ until unmapped */
    addr_unmap(&a);
    assert_int_equal(a.sa.sa_family, AF_INET);
    assert_int_equal(addr_port(&a), 53);
    assert_true(addr_same_ip(&a, &b)); /* ports are not compared */
    assert_int_equal(addr_parse("10.1.2.4:80", -1, &ss), 0);
    memcpy(&b, &ss, sizeof(b));
    assert_false(addr_same_ip(&a, &b));

    /* A plain IPv6 address is left alone. */
    assert_int_equal(addr_parse("[2001:db8::1]:7", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    addr_unmap(&a);
    assert_int_equal(a.sa.sa_family, AF_INET6);
    assert_int_equal(addr_port(&a), 7);
    memcpy(&b, &ss, sizeof(b));
    assert_true(addr_same_ip(&a, &b));

    assert_int_equal(addr_parse("0.0.0.0:9", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    assert_true(addr_is_any(&a));
    assert_int_equal(addr_parse("[::]:9", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    assert_true(addr_is_any(&a));
    assert_int_equal(addr_parse("[::ffff:0.0.0.0]:9", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    assert_true(addr_is_any(&a)); /* a dual-stack socket's view of 0.0.0.0 */
    assert_int_equal(addr_parse("[::ffff:0.0.0.1]:9", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    assert_false(addr_is_any(&a));
    assert_int_equal(addr_parse("[::1]:9", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    assert_false(addr_is_any(&a));
    assert_int_equal(addr_parse("127.0.0.1:9", -1, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    assert_false(addr_is_any(&a));
    a.sa.sa_family = AF_UNIX;
    assert_false(addr_is_any(&a));
    assert_int_equal(addr_port(&a), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_len_and_format),
        cmocka_unit_test(test_compare_and_unmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
