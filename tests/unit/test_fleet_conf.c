/*
 * test_fleet_conf.c - a fleet's pure parts: the Redis address as written,
 * the tunnels a node asks to hold (fleet_conf.h), and the lease board's
 * stack of users asking, under two threads (acct.h): no sockets, no Redis.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "acct.h"
#include "fleet_conf.h"

static void
test_addr(void **state)
{
    (void)state;
    struct fleet_addr a;
    char err[256];
    assert_int_equal(fleet_parse_addr("127.0.0.1:6380", &a, err, sizeof(err)), 0);
    assert_false(a.unix_path);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6380);
    assert_int_equal(fleet_parse_addr("10.1.2.3", &a, err, sizeof(err)), 0);
    assert_int_equal(a.port, 6379);
    assert_int_equal(fleet_parse_addr("[::1]:7000", &a, err, sizeof(err)), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7000);
    assert_int_equal(fleet_parse_addr("[2001:db8::1]", &a, err, sizeof(err)), 0);
    assert_int_equal(a.port, 6379);
    assert_int_equal(fleet_parse_addr("unix:/run/redis/redis.sock", &a, err, sizeof(err)), 0);
    assert_true(a.unix_path);
    assert_string_equal(a.host, "/run/redis/redis.sock");
    /* Names need DNS (not on the control thread), bare IPv6 is ambiguous, ports are 1..65535. */
    const char *bad[] = {"redis.example:6379",
                         "localhost",
                         "::1",
                         "::1:6379",
                         "127.0.0.1:",
                         "127.0.0.1:0",
                         "127.0.0.1:65536",
                         "127.0.0.1:63x",
                         "[::1]x",
                         "[::1",
                         "unix:",
                         "unix:relative.sock",
                         "",
                         "1.2.3.4:6379:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (fleet_parse_addr(bad[i], &a, err, sizeof(err)) != -1)
            fail_msg("'%s' accepted as a Redis address", bad[i]);
        assert_non_null(strstr(err, bad[i]));
    }
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:/", 6);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(fleet_parse_addr(longpath, &a, err, sizeof(err)), -1);
}

static void
test_want(void **state)
{
    (void)state;
    uint64_t need, spare;
    /* Idle here: everything goes back to the fleet. */
    fleet_want(0, false, 10, &need, &spare);
    assert_int_equal(need, 0);
    assert_int_equal(spare, 0);
    /* A first request: one, and one spare. */
    fleet_want(0, true, 10, &need, &spare);
    assert_int_equal(need, 1);
    assert_int_equal(spare, 1);
    /* A quarter of what is open as spare. */
    fleet_want(40, false, 100, &need, &spare);
    assert_int_equal(need, 40);
    assert_int_equal(spare, 10);
    fleet_want(40, true, 100, &need, &spare);
    assert_int_equal(need, 41);
    assert_int_equal(spare, 10);
    /* Never beyond max, together. */
    fleet_want(9, true, 10, &need, &spare);
    assert_int_equal(need, 10);
    assert_int_equal(spare, 0);
    fleet_want(10, true, 10, &need, &spare);
    assert_int_equal(need, 10);
    assert_int_equal(spare, 0);
    fleet_want(8, false, 10, &need, &spare);
    assert_int_equal(need + spare, 10);
}

/* ---- the board: every user that asks is taken exactly once per ask. */

#define N_USERS  64
#define N_ROUNDS 20000

static struct uacct users[N_USERS];
static struct lease_board board;

static void *
asker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < N_ROUNDS; i++) {
        seed = seed * 1103515245u + 12345u;
        lease_ask(&board, &users[(seed >> 8) % N_USERS], LEASE_ASK_CONNS);
    }
    return NULL;
}

struct seen {
    unsigned n[N_USERS];
};

static void
take_one(void *arg, struct uacct *a)
{
    struct seen *s = arg;
    s->n[a - users]++;
}

static void
take_count(void *arg, struct uacct *a)
{
    unsigned *marks = arg;
    if (marks[a - users]++)
        marks[N_USERS] = 1; /* twice in one take */
}

static void
test_board(void **state)
{
    (void)state;
    board.wake_fd = -1;
    /* One thread: asking twice before a take puts a user on the stack once. */
    struct seen s = {{0}};
    lease_ask(&board, &users[3], LEASE_ASK_CONNS);
    lease_ask(&board, &users[3], LEASE_ASK_CONNS);
    lease_ask(&board, &users[5], LEASE_ASK_RATE);
    assert_int_equal(lease_asks_take(&board, take_one, &s), 2);
    assert_int_equal(s.n[3], 1);
    assert_int_equal(s.n[5], 1);
    assert_int_equal(lease_asks_take(&board, take_one, &s), 0);
    /* Taken: it may ask again. */
    lease_ask(&board, &users[3], LEASE_ASK_CONNS);
    assert_int_equal(lease_asks_take(&board, take_one, &s), 1);
    assert_int_equal(s.n[3], 2);

    /* Two shards asking while the control thread takes: no user lost, none twice per take. */
    pthread_t t[2];
    pthread_create(&t[0], NULL, asker, (void *)1);
    pthread_create(&t[1], NULL, asker, (void *)2);
    size_t taken = 0;
    for (int i = 0; i < 100000; i++) {
        unsigned marks[N_USERS + 1] = {0};
        taken += lease_asks_take(&board, take_count, marks);
        assert_int_equal(marks[N_USERS], 0);
    }
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    unsigned marks[N_USERS + 1] = {0};
    taken += lease_asks_take(&board, take_count, marks);
    assert_int_equal(marks[N_USERS], 0);
    assert_true(taken >= 1);
    /* Every flag is down once all is taken: nothing is stuck "asking" off the stack. */
    for (int i = 0; i < N_USERS; i++)
        assert_false(atomic_load(&users[i].lease_ask));
    assert_null(atomic_load(&board.asks));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_want),
        cmocka_unit_test(test_board),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
