/*
 * test_lockout.c - the failed-login lockout (lockout.h): a pair locks at
 * exactly its threshold within the window and not before, counts restart
 * when the window passes, locks end by time, a success clears its pair only,
 * the address threshold stands on its own (IPv6 by /64), keys sharing a word
 * are kept apart (an injected hash places them), a key whose two words are
 * both taken shares the less loaded one, and two threads failing one key at
 * once lose no failure and see the lock reported once.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sa_text.h"

#include "lockout.h"

static const unsigned PAIR = 1u << LOCKOUT_PAIR, ADDR = 1u << LOCKOUT_ADDRESS;

static bool
locked(const struct lockout *lk, const struct lockout_params *p, const union sockaddr_inx *a,
       const char *user, uint32_t now, enum lockout_scope want)
{
    enum lockout_scope got = LOCKOUT__SCOPES;
    bool is = lockout_locked(lk, p, a, user, now, &got);
    if (is)
        assert_int_equal(got, want);
    return is;
}

static void
test_pair_locks_at_threshold(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(LOCKOUT_SLOTS);
    struct lockout_params p = {
        .failures = 3, .address_failures = 0, .window_s = 60, .duration_s = 300};
    union sockaddr_inx a = sa("192.0.2.1"), b = sa("192.0.2.2");
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1000), 0);
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1001), 0);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "alice", 1001), 2);
    assert_false(locked(lk, &p, &a, "alice", 1001, LOCKOUT_PAIR));
    /* the third, the last second of the window */
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1059), PAIR);
    assert_true(locked(lk, &p, &a, "alice", 1059, LOCKOUT_PAIR));
    /* another user of the address, the same user from another address: free */
    assert_false(locked(lk, &p, &a, "bob", 1059, LOCKOUT_PAIR));
    assert_false(locked(lk, &p, &b, "alice", 1059, LOCKOUT_PAIR));
    assert_false(locked(lk, &p, &a, "alic", 1059, LOCKOUT_PAIR));
    /* a failure while locked (a check that was in flight) neither extends nor reports it */
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1100), 0);
    assert_true(locked(lk, &p, &a, "alice", 1358, LOCKOUT_PAIR));
    /* pairs off: nothing counts, nothing locks */
    p.failures = 0;
    assert_false(locked(lk, &p, &a, "alice", 1100, LOCKOUT_PAIR));
    assert_int_equal(lockout_fail(lk, &p, &a, "carol", 1100), 0);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "carol", 1100), 0);
    lockout_free(lk);
}

static void
test_window_passes(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(LOCKOUT_SLOTS);
    struct lockout_params p = {
        .failures = 3, .address_failures = 0, .window_s = 60, .duration_s = 300};
    union sockaddr_inx a = sa("192.0.2.1");
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1000), 0);
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1030), 0);
    /* 60 s after the first: the window is over, this one starts a new count */
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1060), 0);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "alice", 1060), 1);
    assert_false(locked(lk, &p, &a, "alice", 1060, LOCKOUT_PAIR));
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1061), 0);
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1119), PAIR);
    /* a shard whose clock read is a second behind another's does not restart the count */
    assert_int_equal(lockout_fail(lk, &p, &a, "bob", 2000), 0);
    assert_int_equal(lockout_fail(lk, &p, &a, "bob", 1999), 0);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "bob", 1999), 2);
    lockout_free(lk);
}

static void
test_lock_expires(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(LOCKOUT_SLOTS);
    struct lockout_params p = {
        .failures = 2, .address_failures = 0, .window_s = 60, .duration_s = 300};
    union sockaddr_inx a = sa("198.51.100.7");
    lockout_fail(lk, &p, &a, "alice", 1000);
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1010), PAIR);
    /* locked for 300 s from the failure that locked it */
    assert_true(locked(lk, &p, &a, "alice", 1309, LOCKOUT_PAIR));
    assert_false(locked(lk, &p, &a, "alice", 1310, LOCKOUT_PAIR));
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "alice", 1310), 0);
    /* forgotten: a new failure counts from 1 */
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1310), 0);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "alice", 1310), 1);
    /* a reload that shortens the duration ends a lock sooner */
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1311), PAIR);
    p.duration_s = 10;
    assert_false(locked(lk, &p, &a, "alice", 1321, LOCKOUT_PAIR));
    lockout_free(lk);
}

static void
test_success_clears_pair(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(LOCKOUT_SLOTS);
    struct lockout_params p = {
        .failures = 3, .address_failures = 100, .window_s = 60, .duration_s = 300};
    union sockaddr_inx a = sa("192.0.2.1");
    lockout_fail(lk, &p, &a, "alice", 1000);
    lockout_fail(lk, &p, &a, "alice", 1001);
    lockout_success(lk, &p, &a, "alice", 1002);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "alice", 1002), 0);
    /* the address keeps its count */
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_ADDRESS, &a, NULL, 1002), 2);
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1003), 0);
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1004), 0);
    assert_false(locked(lk, &p, &a, "alice", 1004, LOCKOUT_PAIR));
    assert_int_equal(lockout_fail(lk, &p, &a, "alice", 1005), PAIR);
    /* a success does not end a lock (a check in flight when it came) */
    lockout_success(lk, &p, &a, "alice", 1006);
    assert_true(locked(lk, &p, &a, "alice", 1006, LOCKOUT_PAIR));
    /* another pair's success clears nothing of alice's */
    lockout_fail(lk, &p, &a, "carol", 1007);
    lockout_success(lk, &p, &a, "dave", 1007);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "carol", 1007), 1);
    lockout_free(lk);
}

static void
test_address_threshold(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(LOCKOUT_SLOTS);
    struct lockout_params p = {
        .failures = 3, .address_failures = 5, .window_s = 60, .duration_s = 300};
    union sockaddr_inx a = sa("2001:db8:1:2::1"), same64 = sa("2001:db8:1:2::99"),
                       other = sa("2001:db8:1:3::1");
    const char *users[] = {"u1", "u2", "u3", "u4"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(lockout_fail(lk, &p, &a, users[i], 1000), 0);
    assert_false(locked(lk, &p, &a, "u5", 1000, LOCKOUT_ADDRESS));
    /* the fifth failure of the /64, each user failing once: the address locks */
    assert_int_equal(lockout_fail(lk, &p, &same64, "u5", 1001), ADDR);
    assert_true(locked(lk, &p, &a, "anyone", 1001, LOCKOUT_ADDRESS));
    assert_true(locked(lk, &p, &same64, "alice", 1001, LOCKOUT_ADDRESS));
    assert_false(locked(lk, &p, &other, "u1", 1001, LOCKOUT_ADDRESS));
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "u1", 1001), 1);
    /* a pair locked on the same failure as its address: both reported, the pair named */
    struct lockout_params q = {
        .failures = 2, .address_failures = 2, .window_s = 60, .duration_s = 300};
    union sockaddr_inx b = sa("203.0.113.9");
    assert_int_equal(lockout_fail(lk, &q, &b, "x", 1000), 0);
    assert_int_equal(lockout_fail(lk, &q, &b, "x", 1000), PAIR | ADDR);
    assert_true(locked(lk, &q, &b, "x", 1000, LOCKOUT_PAIR));
    assert_true(locked(lk, &q, &b, "y", 1000, LOCKOUT_ADDRESS));
    /* addresses off: only pairs */
    q.address_failures = 0;
    assert_false(locked(lk, &q, &b, "y", 1000, LOCKOUT_ADDRESS));
    lockout_free(lk);
}

/*
 * An injected hash that places keys by user name in a 4-word table: "A" and "C"
 * both in words 0 and 1, "B" in 0 and 2, with tags of their own; addresses in 3.
 */
static uint64_t
place(unsigned slot0, unsigned slot1, uint16_t tag)
{
    return (uint64_t)tag << 48 | (uint64_t)slot1 << 24 | slot0;
}

static uint64_t
test_hash(const uint8_t *p, size_t len, const void *arg)
{
    (void)arg;
    if (len == 16)
        return place(3, 2, 0xaaaa);
    switch (p[16]) {
    case 'A':
        return place(0, 1, 0x1111);
    case 'B':
        return place(0, 2, 0x2222);
    case 'C':
        return place(0, 1, 0x3333);
    default:
        return place(0, 1, 0x4444);
    }
}

static void
test_collision_not_merged(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(4);
    lockout_set_hash(lk, test_hash, NULL);
    struct lockout_params p = {
        .failures = 3, .address_failures = 0, .window_s = 60, .duration_s = 300};
    union sockaddr_inx a = sa("192.0.2.1");
    /* A takes word 0; B, whose first word is A's, takes its second */
    lockout_fail(lk, &p, &a, "A", 1000);
    lockout_fail(lk, &p, &a, "B", 1000);
    lockout_fail(lk, &p, &a, "A", 1001);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "A", 1001), 2);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "B", 1001), 1);
    assert_int_equal(lockout_fail(lk, &p, &a, "A", 1002), PAIR);
    assert_true(locked(lk, &p, &a, "A", 1002, LOCKOUT_PAIR));
    assert_false(locked(lk, &p, &a, "B", 1002, LOCKOUT_PAIR));
    /* B's success clears B, not A */
    lockout_success(lk, &p, &a, "B", 1003);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "B", 1003), 0);
    assert_true(locked(lk, &p, &a, "A", 1003, LOCKOUT_PAIR));
    /* A's word expires: B, failing again, still finds its free second word or A's */
    assert_int_equal(lockout_fail(lk, &p, &a, "B", 1400), 0);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "B", 1400), 1);
    lockout_free(lk);
}

static void
test_both_taken_shares_less_loaded(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(4);
    lockout_set_hash(lk, test_hash, NULL);
    struct lockout_params p = {
        .failures = 4, .address_failures = 0, .window_s = 60, .duration_s = 300};
    union sockaddr_inx a = sa("192.0.2.1");
    /* A holds word 0 with 2 failures, C word 1 with 1 */
    lockout_fail(lk, &p, &a, "A", 1000);
    lockout_fail(lk, &p, &a, "A", 1000);
    lockout_fail(lk, &p, &a, "C", 1000);
    /* D's words are both live for others: its failure is not dropped, nor does it evict
     * anyone; it counts on C's word, the less loaded */
    assert_int_equal(lockout_fail(lk, &p, &a, "D", 1001), 0);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "D", 1001), 2);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "C", 1001), 2);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &a, "A", 1001), 2);
    /* D goes on guessing: each failure lands on a less loaded word until both are locked */
    unsigned tries = 1;
    while (!lockout_locked(lk, &p, &a, "D", 1002, NULL) && tries < 100) {
        lockout_fail(lk, &p, &a, "D", 1002);
        tries++;
    }
    assert_true(tries <= 2 * p.failures);
    assert_true(locked(lk, &p, &a, "A", 1002, LOCKOUT_PAIR));
    assert_true(locked(lk, &p, &a, "C", 1002, LOCKOUT_PAIR));
    /* D's success clears nobody's count: the words are not its own */
    lockout_success(lk, &p, &a, "D", 1003);
    assert_true(locked(lk, &p, &a, "C", 1003, LOCKOUT_PAIR));
    lockout_free(lk);
}

#define HAMMER 30000

struct hammer {
    struct lockout *lk;
    const struct lockout_params *p;
    union sockaddr_inx a;
    unsigned locks;
};

static void *
hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < HAMMER; i++)
        if (lockout_fail(h->lk, h->p, &h->a, "alice", 1000) & PAIR)
            h->locks++;
    return NULL;
}

static void
test_two_threads_lose_nothing(void **state)
{
    (void)state;
    struct lockout *lk = lockout_new(LOCKOUT_SLOTS);
    /* counted exactly: the highest threshold, never reached */
    struct lockout_params p = {
        .failures = LOCKOUT_MAX_FAILURES, .address_failures = 0, .window_s = 60, .duration_s = 300};
    struct hammer h[2] = {{lk, &p, sa("192.0.2.1"), 0}, {lk, &p, sa("192.0.2.1"), 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(lockout_count(lk, &p, LOCKOUT_PAIR, &h[0].a, "alice", 1000), 2 * HAMMER);
    /* locked by the very last failure of the two threads, reported once */
    struct lockout_params q = {
        .failures = 2 * HAMMER, .address_failures = 0, .window_s = 60, .duration_s = 300};
    union sockaddr_inx b = sa("192.0.2.2");
    for (int i = 0; i < 2; i++) {
        h[i].p = &q;
        h[i].a = b;
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(h[0].locks + h[1].locks, 1);
    assert_true(locked(lk, &q, &b, "alice", 1000, LOCKOUT_PAIR));
    lockout_free(lk);
}

static void
test_new_checks_size(void **state)
{
    (void)state;
    assert_null(lockout_new(0));
    assert_null(lockout_new(1));
    assert_null(lockout_new(6));
    lockout_free(NULL);
}

int
main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_locks_at_threshold),
        cmocka_unit_test(test_window_passes),
        cmocka_unit_test(test_lock_expires),
        cmocka_unit_test(test_success_clears_pair),
        cmocka_unit_test(test_address_threshold),
        cmocka_unit_test(test_collision_not_merged),
        cmocka_unit_test(test_both_taken_shares_less_loaded),
        cmocka_unit_test(test_two_threads_lose_nothing),
        cmocka_unit_test(test_new_checks_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
