/*
 * test_happy.c - src/happy.c, Happy Eyeballs address ordering (RFC 8305
 * section 4).
 *
 * Rules: the preferred family's first address comes first, then the families
 * alternate one by one (First Address Family Count 1) until one runs out, and
 * the rest of the other follows; the order within a family is the input's;
 * "any" and "prefer-ipv6" put IPv6 first, "prefer-ipv4" IPv4; "ipv4" and
 * "ipv6" keep only that family (none left: 0); an IPv4-mapped IPv6 address
 * counts as IPv4; the names parse to the policies and back, anything else
 * is -EINVAL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "happy.h"

/* Addresses from text: "6:N" is 2001:db8::N, "4:N" 192.0.2.N, "m:N" ::ffff:192.0.2.N. */
static union sockaddr_inx
mk(const char *s)
{
    union sockaddr_inx a;
    char ip[64];
    memset(&a, 0, sizeof(a));
    if (s[0] == '4') {
        snprintf(ip, sizeof(ip), "192.0.2.%s", s + 2);
        a.v4.sin_family = AF_INET;
        a.v4.sin_port = htons(80);
        assert_int_equal(inet_pton(AF_INET, ip, &a.v4.sin_addr), 1);
    } else {
        snprintf(ip, sizeof(ip), s[0] == 'm' ? "::ffff:192.0.2.%s" : "2001:db8::%s", s + 2);
        a.v6.sin6_family = AF_INET6;
        a.v6.sin6_port = htons(80);
        assert_int_equal(inet_pton(AF_INET6, ip, &a.v6.sin6_addr), 1);
    }
    return a;
}

/* Order the space-separated addresses of in under fam; compare with want (same notation). */
static void
order_is(const char *in, enum happy_family fam, const char *want)
{
    union sockaddr_inx a[16], out[16], w[16];
    unsigned n = 0, nw = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", in);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
        a[n++] = mk(t);
    snprintf(buf, sizeof(buf), "%s", want);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
        w[nw++] = mk(t);
    memset(out, 0xAA, sizeof(out));
    unsigned k = happy_order(a, n, fam, out);
    if (k != nw)
        fail_msg("%s under %s: %u addresses, expected %u (%s)", in, happy_family_str(fam), k, nw,
                 want);
    for (unsigned i = 0; i < k; i++) {
        if (memcmp(&out[i], &w[i], sizeof(out[i])) != 0) {
            char got[ADDR_STRLEN], exp[ADDR_STRLEN];
            addr_format(&out[i].sa, got, sizeof(got));
            addr_format(&w[i].sa, exp, sizeof(exp));
            fail_msg("%s under %s: [%u] is %s, expected %s (%s)", in, happy_family_str(fam), i, got,
                     exp, want);
        }
    }
}

/* Not linked with addr.o: a small formatter for failure messages. */
char *
addr_format(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    snprintf(out, n, "%s", ip);
    return out;
}

static void
test_interleave_ipv6_first(void **state)
{
    (void)state;
    /* The resolver's order, A records first: IPv6 still leads, then they alternate. */
    order_is("4:1 4:2 4:3 6:1 6:2", HAPPY_ANY, "6:1 4:1 6:2 4:2 4:3");
    order_is("6:1 6:2 6:3 4:1", HAPPY_ANY, "6:1 4:1 6:2 6:3");
    order_is("4:1 6:1 4:2 6:2", HAPPY_PREFER_IPV6, "6:1 4:1 6:2 4:2");
    /* One family only: its order, untouched. */
    order_is("4:3 4:1 4:2", HAPPY_ANY, "4:3 4:1 4:2");
    order_is("6:3 6:1", HAPPY_ANY, "6:3 6:1");
}

static void
test_prefer_ipv4(void **state)
{
    (void)state;
    order_is("6:1 6:2 4:1 4:2 4:3", HAPPY_PREFER_IPV4, "4:1 6:1 4:2 6:2 4:3");
    order_is("6:1 6:2 6:3 4:9", HAPPY_PREFER_IPV4, "4:9 6:1 6:2 6:3");
}

static void
test_one_family_only(void **state)
{
    (void)state;
    order_is("6:1 4:1 6:2 4:2", HAPPY_IPV4, "4:1 4:2");
    order_is("6:1 4:1 6:2 4:2", HAPPY_IPV6, "6:1 6:2");
    order_is("6:1 6:2", HAPPY_IPV4, "");
    order_is("4:1", HAPPY_IPV6, "");
    order_is("", HAPPY_ANY, "");
}

/* DNS may answer AAAA ::ffff:a.b.c.d: the connect reaches IPv4, so it is IPv4 here too. */
static void
test_mapped_counts_as_ipv4(void **state)
{
    (void)state;
    order_is("m:1 m:2 6:1", HAPPY_ANY, "6:1 m:1 m:2");
    order_is("m:1 6:1 4:2", HAPPY_IPV4, "m:1 4:2");
    order_is("m:1 6:1", HAPPY_IPV6, "6:1");
}

/* At most as many out as in, every input kept once under the two-family policies. */
static void
test_permutation(void **state)
{
    (void)state;
    union sockaddr_inx a[8], out[8];
    for (unsigned mask = 0; mask < 256; mask++) {
        for (unsigned i = 0; i < 8; i++) {
            char t[8];
            snprintf(t, sizeof(t), "%c:%u", (mask >> i) & 1 ? '6' : '4', i + 1);
            a[i] = mk(t);
        }
        for (int fam = HAPPY_ANY; fam <= HAPPY_PREFER_IPV6; fam++) {
            unsigned k = happy_order(a, 8, (enum happy_family)fam, out);
            unsigned v6 = (unsigned)__builtin_popcount(mask);
            unsigned want = fam == HAPPY_IPV4 ? 8 - v6 : fam == HAPPY_IPV6 ? v6 : 8;
            assert_int_equal(k, want);
            for (unsigned i = 0; i < k; i++) {
                unsigned seen = 0;
                for (unsigned j = 0; j < 8; j++)
                    seen += memcmp(&out[i], &a[j], sizeof(a[j])) == 0;
                assert_int_equal(seen, 1);
                for (unsigned j = 0; j < i; j++)
                    assert_true(memcmp(&out[i], &out[j], sizeof(a[j])) != 0);
            }
            /* Two in a row of one family only once the other has run out. */
            for (unsigned i = 1; i + 1 < k; i++)
                if (out[i].sa.sa_family == out[i + 1].sa.sa_family)
                    for (unsigned j = i + 1; j < k; j++)
                        assert_int_equal(out[j].sa.sa_family, out[i].sa.sa_family);
        }
    }
}

static void
test_names(void **state)
{
    (void)state;
    const char *names[] = {"any", "ipv4", "ipv6", "prefer-ipv4", "prefer-ipv6"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(happy_family_parse(names[i]), i);
        assert_string_equal(happy_family_str((enum happy_family)i), names[i]);
    }
    assert_int_equal(happy_family_parse("IPv4"), -EINVAL);
    assert_int_equal(happy_family_parse(""), -EINVAL);
    assert_int_equal(happy_family_parse("prefer-ipv"), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interleave_ipv6_first), cmocka_unit_test(test_prefer_ipv4),
        cmocka_unit_test(test_one_family_only),       cmocka_unit_test(test_mapped_counts_as_ipv4),
        cmocka_unit_test(test_permutation),           cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
