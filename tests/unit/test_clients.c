/*
 * test_clients.c - the per-shard table of what each client address holds:
 * counts per address, IPv6 grouped by /64, entries removed when empty (the
 * probe runs stay intact), failure windows, and a randomised comparison
 * with a plain reference.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sa_text.h"

#include "clients.h"

static union sockaddr_inx
v4n(uint32_t n)
{
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    a.v4.sin_family = AF_INET;
    a.v4.sin_addr.s_addr = htonl(n);
    return a;
}

static void
test_counts(void **state)
{
    (void)state;
    struct clients cl;
    clients_init(&cl, 60);
    union sockaddr_inx a = sa("192.0.2.1"), b = sa("192.0.2.2");
    assert_int_equal(clients_get(&cl, &a, CLIENT_HS), 0);
    assert_int_equal(clients_inc(&cl, &a, CLIENT_HS, 100), 1);
    assert_int_equal(clients_inc(&cl, &a, CLIENT_HS, 100), 2);
    assert_int_equal(clients_inc(&cl, &a, CLIENT_BIND, 100), 1);
    assert_int_equal(clients_inc(&cl, &b, CLIENT_UDP, 100), 1);
    assert_int_equal(clients_get(&cl, &a, CLIENT_HS), 2);
    assert_int_equal(clients_get(&cl, &a, CLIENT_BIND), 1);
    assert_int_equal(clients_get(&cl, &a, CLIENT_UDP), 0);
    assert_int_equal(clients_get(&cl, &b, CLIENT_HS), 0);
    assert_int_equal(clients_count(&cl), 2);
    clients_dec(&cl, &a, CLIENT_HS, 100);
    clients_dec(&cl, &a, CLIENT_HS, 100);
    assert_int_equal(clients_count(&cl), 2); /* still holds a BIND */
    /* Decrementing what is not held changes nothing. */
    clients_dec(&cl, &a, CLIENT_HS, 100);
    clients_dec(&cl, &a, CLIENT_UDP, 100);
    assert_int_equal(clients_get(&cl, &a, CLIENT_BIND), 1);
    clients_dec(&cl, &a, CLIENT_BIND, 100);
    assert_int_equal(clients_count(&cl), 1);
    clients_dec(&cl, &b, CLIENT_UDP, 100);
    assert_int_equal(clients_count(&cl), 0);
    clients_fini(&cl);
}

static void
test_keys(void **state)
{
    (void)state;
    struct clients cl;
    clients_init(&cl, 60);
    union sockaddr_inx x1 = sa("2001:db8:1:2::1"), x2 = sa("2001:db8:1:2:ffff::9");
    union sockaddr_inx y = sa("2001:db8:1:3::1"), lo6 = sa("::1"), lo4 = sa("127.0.0.1");
    union sockaddr_inx zero4 = sa("0.0.0.0");
    clients_inc(&cl, &x1, CLIENT_HS, 1);
    /* The same /64 is one client. */
    assert_int_equal(clients_get(&cl, &x2, CLIENT_HS), 1);
    assert_int_equal(clients_get(&cl, &y, CLIENT_HS), 0);
    /* IPv4 never shares a key with an IPv6 /64, not even ::/64 or 0.0.0.0. */
    clients_inc(&cl, &lo6, CLIENT_HS, 1);
    assert_int_equal(clients_get(&cl, &lo4, CLIENT_HS), 0);
    assert_int_equal(clients_get(&cl, &zero4, CLIENT_HS), 0);
    clients_inc(&cl, &lo4, CLIENT_HS, 1);
    clients_inc(&cl, &lo4, CLIENT_HS, 1);
    assert_int_equal(clients_get(&cl, &lo6, CLIENT_HS), 1);
    assert_int_equal(clients_get(&cl, &lo4, CLIENT_HS), 2);
    clients_fini(&cl);
}

static void
test_failures(void **state)
{
    (void)state;
    struct clients cl;
    clients_init(&cl, 60);
    union sockaddr_inx a = sa("198.51.100.7");
    clients_fail(&cl, &a, 1000);
    clients_fail(&cl, &a, 1010);
    assert_int_equal(clients_fails(&cl, &a, 1020), 2);
    /* An entry with failures stays, and its counts work as usual. */
    assert_int_equal(clients_inc(&cl, &a, CLIENT_AUTH, 1020), 1);
    clients_dec(&cl, &a, CLIENT_AUTH, 1020);
    assert_int_equal(clients_count(&cl), 1);
    assert_int_equal(clients_fails(&cl, &a, 1020), 2);
    /* The window starts at the first failure: 60 s later they are forgotten. */
    assert_int_equal(clients_fails(&cl, &a, 1059), 2);
    assert_int_equal(clients_fails(&cl, &a, 1060), 0);
    clients_fail(&cl, &a, 1061);
    assert_int_equal(clients_fails(&cl, &a, 1061), 1);
    /* A count that ends after the window removes the entry. */
    clients_inc(&cl, &a, CLIENT_HS, 1061);
    clients_dec(&cl, &a, CLIENT_HS, 1200);
    assert_int_equal(clients_count(&cl), 0);
    clients_fini(&cl);
}

static void
test_expired_dropped_on_growth(void **state)
{
    (void)state;
    struct clients cl;
    clients_init(&cl, 10);
    for (uint32_t i = 0; i < 40; i++)
        clients_fail(&cl, &(union sockaddr_inx){0}, 0); /* family 0: one key */
    for (uint32_t i = 0; i < 40; i++) {
        union sockaddr_inx a = v4n(0x0a000000 + i);
        clients_fail(&cl, &a, 5);
    }
    assert_int_equal(clients_count(&cl), 41);
    /* Long after, growing past 48 (3/4 of 64) drops the expired failure-only entries. */
    for (uint32_t i = 0; i < 40; i++) {
        union sockaddr_inx a = v4n(0x0b000000 + i);
        assert_int_equal(clients_inc(&cl, &a, CLIENT_HS, 100), 1);
    }
    assert_int_equal(clients_count(&cl), 40);
    for (uint32_t i = 0; i < 40; i++) {
        union sockaddr_inx a = v4n(0x0b000000 + i);
        assert_int_equal(clients_get(&cl, &a, CLIENT_HS), 1);
    }
    clients_fini(&cl);
}

/* Random increments and decrements over few addresses (long probe runs), checked
 * against plain arrays after every step. */
static void
test_random(void **state)
{
    (void)state;
    enum { ADDRS = 300, STEPS = 200000 };
    static uint32_t ref[ADDRS][CLIENT__COUNT];
    struct clients cl;
    clients_init(&cl, 60);
    srand(12345);
    uint32_t live = 0;
    for (int s = 0; s < STEPS; s++) {
        uint32_t i = (uint32_t)rand() % ADDRS;
        enum client_count w = (enum client_count)(rand() % CLIENT__COUNT);
        union sockaddr_inx a = v4n(0xc0000200u + i * 7919u);
        bool any_before = false, any_after = false;
        for (int k = 0; k < CLIENT__COUNT; k++)
            any_before |= ref[i][k] != 0;
        if (rand() % 2) {
            assert_int_equal(clients_inc(&cl, &a, w, 1), (int)++ref[i][w]);
        } else {
            clients_dec(&cl, &a, w, 1);
            if (ref[i][w])
                ref[i][w]--;
        }
        for (int k = 0; k < CLIENT__COUNT; k++)
            any_after |= ref[i][k] != 0;
        live += (uint32_t)any_after - (uint32_t)any_before;
        assert_int_equal(clients_count(&cl), live);
        if (s % 997 == 0) {
            for (uint32_t j = 0; j < ADDRS; j++) {
                union sockaddr_inx b = v4n(0xc0000200u + j * 7919u);
                for (int k = 0; k < CLIENT__COUNT; k++)
                    assert_int_equal(clients_get(&cl, &b, (enum client_count)k), ref[j][k]);
            }
        }
    }
    clients_fini(&cl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),   cmocka_unit_test(test_keys),
        cmocka_unit_test(test_failures), cmocka_unit_test(test_expired_dropped_on_growth),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
