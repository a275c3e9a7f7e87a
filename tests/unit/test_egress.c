/*
 * test_egress.c - egress pools, the pick inside them, session names and the
 * sticky hash (egress.h): pure code, no sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "egress.h"

static struct egress_pool *
pool_of(const char *csv)
{
    char why[160];
    struct egress_pool *p = egress_pool_parse_csv(csv, why, sizeof(why));
    if (!p)
        fail_msg("'%s': %s", csv, why);
    return p;
}

static uint64_t
splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void
test_entries(void **state)
{
    (void)state;
    char why[160];
    assert_int_equal(egress_entry_check("203.0.113.7", why, sizeof(why)), 0);
    assert_int_equal(egress_entry_check("2001:db8:1::/64", why, sizeof(why)), 0);
    /* Host bits set: a typo for the address or for the network. */
    assert_int_equal(egress_entry_check("2001:db8::1/64", why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "host bits zero"));
    assert_int_equal(egress_entry_check("203.0.113.0/33", why, sizeof(why)), -EINVAL);
    assert_int_equal(egress_entry_check("example.com", why, sizeof(why)), -EINVAL);
    assert_int_equal(egress_entry_check("", why, sizeof(why)), -EINVAL);
    assert_null(egress_pool_parse_csv("203.0.113.7,,2001:db8::1", why, sizeof(why)));
    assert_null(egress_pool_parse_csv("", why, sizeof(why)));
}

static void
test_families(void **state)
{
    (void)state;
    struct egress_pool *p = pool_of("2001:db8:1::/64,203.0.113.7");
    assert_true(egress_pool_has(p, AF_INET));
    assert_true(egress_pool_has(p, AF_INET6));
    /* The IPv4 part is the one address, whatever the bits. */
    union sockaddr_inx v4;
    uint64_t bits[2] = {~0ULL, 12345};
    assert_int_equal(egress_pick(p, AF_INET, bits, &v4), 0);
    assert_int_equal(v4.v4.sin_addr.s_addr, inet_addr("203.0.113.7"));
    egress_pool_free(p);

    p = pool_of("2001:db8:1::/64");
    assert_false(egress_pool_has(p, AF_INET));
    union sockaddr_inx a;
    uint64_t r[2] = {1, 2};
    assert_int_equal(egress_pick(p, AF_INET, r, &a), -EAFNOSUPPORT);
    /* An IPv4-mapped address is IPv4. */
    egress_pool_free(p);
    p = pool_of("::ffff:203.0.113.9");
    assert_true(egress_pool_has(p, AF_INET));
    assert_false(egress_pool_has(p, AF_INET6));
    egress_pool_free(p);
}

/* A /64 is drawn from, not enumerated: 1,000 picks are 1,000 distinct addresses inside it. */
static void
test_pick_v6_prefix(void **state)
{
    (void)state;
    struct egress_pool *p = pool_of("2001:db8:1::/64");
    static struct in6_addr seen[1000];
    uint64_t x = 42;
    for (int i = 0; i < 1000; i++) {
        uint64_t r[2] = {splitmix(&x), splitmix(&x)};
        union sockaddr_inx a;
        assert_int_equal(egress_pick(p, AF_INET6, r, &a), 0);
        assert_int_equal(a.sa.sa_family, AF_INET6);
        assert_int_equal(a.v6.sin6_port, 0);
        static const uint8_t net[8] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0};
        assert_memory_equal(a.v6.sin6_addr.s6_addr, net, 8);
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(&seen[j], &a.v6.sin6_addr, 16);
        seen[i] = a.v6.sin6_addr;
    }
    egress_pool_free(p);
}

/* Never the network or broadcast address of an IPv4 prefix; every other one is reached. */
static void
test_pick_v4_edges(void **state)
{
    (void)state;
    struct egress_pool *p = pool_of("203.0.113.0/29");
    int hits[8] = {0};
    uint64_t x = 7;
    for (int i = 0; i < 4000; i++) {
        uint64_t r[2] = {splitmix(&x), splitmix(&x)};
        union sockaddr_inx a;
        assert_int_equal(egress_pick(p, AF_INET, r, &a), 0);
        uint32_t h = ntohl(a.v4.sin_addr.s_addr);
        assert_int_equal(h >> 3, 0xcb007100u >> 3);
        hits[h & 7]++;
    }
    assert_int_equal(hits[7], 0);
    for (int k = 1; k < 7; k++)
        assert_true(hits[k] > 300);
    /* hits[0] is 0 too: host 0 became host 1. */
    assert_int_equal(hits[0], 0);
    egress_pool_free(p);
}

/* Ranges count by size: one address next to a /25 gets about 1 pick in 129. */
static void
test_pick_weighted(void **state)
{
    (void)state;
    struct egress_pool *p = pool_of("198.51.100.7,203.0.113.128/25");
    int single = 0;
    uint64_t x = 99;
    for (int i = 0; i < 129000; i++) {
        uint64_t r[2] = {splitmix(&x), splitmix(&x)};
        union sockaddr_inx a;
        egress_pick(p, AF_INET, r, &a);
        single += a.v4.sin_addr.s_addr == inet_addr("198.51.100.7");
    }
    assert_in_range(single, 800, 1200);
    egress_pool_free(p);
}

static void
test_pick_deterministic(void **state)
{
    (void)state;
    struct egress_pool *p = pool_of("2001:db8:1::/64,2001:db8:2::/64");
    uint64_t r[2] = {0x1234, 0xabcdef};
    union sockaddr_inx a, b;
    egress_pick(p, AF_INET6, r, &a);
    egress_pick(p, AF_INET6, r, &b);
    assert_memory_equal(&a, &b, sizeof(a));
    egress_pool_free(p);
}

static void
test_user_params(void **state)
{
    (void)state;
    size_t base;
    struct egress_session s;
    assert_int_equal(egress_user_params("alice", &base, &s), 0);
    assert_int_equal(base, 5);
    assert_int_equal(s.id_len, 0);
    assert_int_equal(egress_user_params("alice-session-ab12", &base, &s), 0);
    assert_int_equal(base, 5);
    assert_int_equal(s.id_len, 4);
    assert_memory_equal(s.id, "ab12", 4);
    assert_int_equal(s.ttl_s, 0);
    assert_int_equal(egress_user_params("a-b-session-X_9-ttl-600", &base, &s), 0);
    assert_int_equal(base, 3);
    assert_int_equal(s.id_len, 3);
    assert_int_equal(s.ttl_s, 600);
    /* The keyword without the syntax is refused, never taken as a plain name. */
    const char *bad[] = {"-session-ab",
                         "alice-session-",
                         "alice-session-a.b",
                         "alice-session-ab-",
                         "alice-session-ab-ttl-",
                         "alice-session-ab-ttl-0",
                         "alice-session-ab-ttl-12x",
                         "alice-session-ab-ttl-1234567890",
                         "alice-session-ab-zone-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (egress_user_params(bad[i], &base, &s) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
    char longid[128] = "u-session-";
    memset(longid + strlen(longid), 'a', 65);
    assert_int_equal(egress_user_params(longid, &base, &s), -EINVAL);
    assert_true(egress_name_has_keyword("x-session-y"));
    assert_true(egress_name_has_keyword("x-ttl-3"));
    assert_false(egress_name_has_keyword("session-ttl"));
}

/* Same inputs, same bits; any input changed, other bits. */
static void
test_session_bits(void **state)
{
    (void)state;
    uint8_t k1[16], k2[16];
    egress_session_key("", k1);
    egress_session_key("fleet secret", k2);
    struct egress_session s = {"ab12", 4, 0}, s2 = {"ab13", 4, 0};
    uint64_t a[2], b[2];
    egress_session_bits(k1, "alice", 5, &s, 600, 1000000, AF_INET6, a);
    egress_session_bits(k1, "alice", 5, &s, 600, 1000000 + 199, AF_INET6, b);
    assert_memory_equal(a, b, sizeof(a)); /* same bucket: 1000000 / 600 == 1000199 / 600 */
    egress_session_bits(k1, "alice", 5, &s, 600, 1000200, AF_INET6, b);
    assert_memory_not_equal(a, b, sizeof(a)); /* the next bucket */
    egress_session_bits(k1, "alice", 5, &s2, 600, 1000000, AF_INET6, b);
    assert_memory_not_equal(a, b, sizeof(a));
    egress_session_bits(k1, "alicf", 5, &s, 600, 1000000, AF_INET6, b);
    assert_memory_not_equal(a, b, sizeof(a));
    egress_session_bits(k1, "alice", 5, &s, 300, 1000000, AF_INET6, b);
    assert_memory_not_equal(a, b, sizeof(a));
    egress_session_bits(k1, "alice", 5, &s, 600, 1000000, AF_INET, b);
    assert_memory_not_equal(a, b, sizeof(a));
    egress_session_bits(k2, "alice", 5, &s, 600, 1000000, AF_INET6, b);
    assert_memory_not_equal(a, b, sizeof(a));
    /* "alice" + "b12" must not collide with "aliceb" + "12"-like splits. */
    struct egress_session s3 = {"b12", 3, 0};
    egress_session_bits(k1, "alicea", 6, &s3, 600, 1000000, AF_INET6, b);
    assert_memory_not_equal(a, b, sizeof(a));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries),        cmocka_unit_test(test_families),
        cmocka_unit_test(test_pick_v6_prefix), cmocka_unit_test(test_pick_v4_edges),
        cmocka_unit_test(test_pick_weighted),  cmocka_unit_test(test_pick_deterministic),
        cmocka_unit_test(test_user_params),    cmocka_unit_test(test_session_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
