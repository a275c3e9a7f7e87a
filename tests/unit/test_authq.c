/*
 * test_authq.c - src/authq.c, the per-shard password checker, with its real
 * crypt(3) worker thread and a fake shard around it: verdicts (unknown
 * names always refused, after the same work), the cache in front, identical
 * checks sharing one run, no limit in count, cancelled checks costing no
 * crypt(3), and the failure budget that puts a failing address behind the
 * others.
 *
 * Fakes: ring_sqe() hands out one static SQE (authq_arm() writes the
 * worker's eventfd into it, which is how the test finds it), and
 * conn_authed() records the answers in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authq.h"
#include "conn.h"
#include "policy.h"
#include "ring.h"
#include "shard_types.h"
#include "users.h"
#include "users_file.h"

/* --- fakes of the neighbours --------------------------------------------- */

static struct io_uring_sqe fake_sqe;

struct io_uring_sqe *
ring_sqe(struct io_uring *ring, struct shard_stats *st)
{
    (void)ring;
    (void)st;
    memset(&fake_sqe, 0, sizeof(fake_sqe));
    return &fake_sqe;
}

#define MAX_ANSWERS 2048
static struct {
    uint64_t cookie;
    bool ok;
} answers[MAX_ANSWERS];
static unsigned n_answers;

void
conn_authed(struct shard *sh, uint64_t cookie, bool ok)
{
    (void)sh;
    assert_true(n_answers < MAX_ANSWERS);
    answers[n_answers].cookie = cookie;
    answers[n_answers].ok = ok;
    n_answers++;
}

/* --- the fake shard ---------------------------------------------------------- */

static struct shard sh;
static struct opts o;
static struct policy pol;
static struct users *users;

/* alice and bob with sha512-crypt of `rounds` rounds, and u0..u{n-1} with password "pw-<i>". */
static struct users *
make_users(unsigned long rounds, unsigned n)
{
    size_t cap = (size_t)(n + 2) * 160 + 1, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    char *h = hash_of("alice-pw", "$6$", rounds);
    len += (size_t)snprintf(text + len, cap - len, "alice:%s\n", h);
    free(h);
    h = hash_of("bob-pw", "$6$", rounds);
    len += (size_t)snprintf(text + len, cap - len, "bob:%s\n", h);
    free(h);
    for (unsigned i = 0; i < n; i++) {
        char pw[32];
        snprintf(pw, sizeof(pw), "pw-%u", i);
        h = hash_of(pw, "$6$", rounds);
        len += (size_t)snprintf(text + len, cap - len, "u%u:%s\n", i, h);
        free(h);
    }
    assert_true(len < cap);
    struct users *u = users_from(text);
    free(text);
    return u;
}

static void
start(unsigned long rounds, unsigned n_users, unsigned budget)
{
    memset(&sh, 0, sizeof(sh));
    memset(&o, 0, sizeof(o));
    memset(&pol, 0, sizeof(pol));
    o.hs_slots = 1024;
    users = make_users(rounds, n_users);
    pol.users = users;
    pol.auth_fail_budget = budget;
    sh.o = &o;
    sh.pol = &pol;
    sh.now_s = 1000;
    clients_init(&sh.clients, 60);
    assert_int_equal(authq_init(&sh), 0);
    authq_arm(&sh);
    n_answers = 0;
}

static void
stop(void)
{
    authq_fini(&sh);
    clients_fini(&sh.clients);
    users_free(users);
}

static struct auth_cred
cred(const char *user, const char *pass)
{
    struct auth_cred c;
    memset(&c, 0, sizeof(c));
    snprintf(c.user, sizeof(c.user), "%s", user);
    snprintf(c.pass, sizeof(c.pass), "%s", pass);
    c.ulen = (uint8_t)strlen(c.user);
    c.plen = (uint8_t)strlen(c.pass);
    return c;
}

static union sockaddr_inx
ip(const char *text)
{
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    a.v4.sin_family = AF_INET;
    inet_pton(AF_INET, text, &a.v4.sin_addr);
    return a;
}

static enum authq_result
check(uint32_t waiter, const char *from, const char *user, const char *pass)
{
    struct auth_cred c = cred(user, pass);
    union sockaddr_inx a = ip(from);
    return authq_check(&sh, waiter, 1000 + waiter, &a, &c);
}

/* Deliver worker results until `want` answers in all (10 s at most). */
static void
pump(unsigned want)
{
    while (n_answers < want) {
        struct pollfd p = {.fd = fake_sqe.fd, .events = POLLIN};
        int r = poll(&p, 1, 10000);
        if (r <= 0)
            fail_msg("no answer from the worker within 10 s (%u of %u)", n_answers, want);
        uint64_t v;
        assert_int_equal(read(fake_sqe.fd, &v, sizeof(v)), (ssize_t)sizeof(v));
        authq_on_cqe(&sh);
    }
}

static int
answer_of(uint32_t waiter)
{
    for (unsigned i = 0; i < n_answers; i++)
        if (answers[i].cookie == 1000 + waiter)
            return answers[i].ok;
    return -1;
}

static int
setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

/* --- the tests ------------------------------------------------------------- */

static void
test_verdicts_and_unknown_names(void **state)
{
    (void)state;
    start(1000, 0, 16);
    assert_int_equal(check(0, "10.0.0.1", "alice", "alice-pw"), AUTHQ_PENDING);
    assert_int_equal(check(1, "10.0.0.1", "alice", "bob-pw"), AUTHQ_PENDING);
    /* Unknown names go to the worker too (the dummy's crypt(3)), and are refused. */
    assert_int_equal(check(2, "10.0.0.1", "mallory", "alice-pw"), AUTHQ_PENDING);
    assert_int_equal(check(3, "10.0.0.1", "Alice", "alice-pw"), AUTHQ_PENDING);
    pump(4);
    assert_int_equal(answer_of(0), 1);
    assert_int_equal(answer_of(1), 0);
    assert_int_equal(answer_of(2), 0);
    assert_int_equal(answer_of(3), 0);
    assert_int_equal(sh.st.auth_slow_checks, 4);
    /* Now from the cache, without the worker: known and unknown alike. */
    assert_int_equal(check(4, "10.0.0.2", "alice", "alice-pw"), AUTHQ_OK);
    assert_int_equal(check(5, "10.0.0.2", "alice", "bob-pw"), AUTHQ_FAIL);
    assert_int_equal(check(6, "10.0.0.2", "mallory", "alice-pw"), AUTHQ_FAIL);
    assert_int_equal(sh.st.auth_cache_hits, 3);
    /* Each crypt(3) failure counts against the address that asked. */
    union sockaddr_inx a = ip("10.0.0.1");
    assert_int_equal(clients_fails(&sh.clients, &a, sh.now_s), 3);
    assert_int_equal(clients_get(&sh.clients, &a, CLIENT_AUTH), 0);
    stop();
}

static void
test_identical_checks_share_one_run(void **state)
{
    (void)state;
    start(5000, 0, 16);
    for (uint32_t w = 0; w < 50; w++)
        assert_int_equal(check(w, "10.0.0.1", "bob", w % 2 ? "bob-pw" : "nope"), AUTHQ_PENDING);
    pump(50);
    for (uint32_t w = 0; w < 50; w++)
        assert_int_equal(answer_of(w), w % 2 ? 1 : 0);
    assert_int_equal(sh.st.auth_slow_checks, 2);
    assert_int_equal(sh.st.auth_coalesced, 48);
    stop();
}

/* The old queue held 256 checks and answered "wrong password" beyond: 700 right ones here. */
static void
test_no_limit_in_count(void **state)
{
    (void)state;
    start(1000, 700, 0);
    for (uint32_t w = 0; w < 700; w++) {
        char user[16], pw[16];
        snprintf(user, sizeof(user), "u%u", w);
        snprintf(pw, sizeof(pw), "pw-%u", w);
        assert_int_equal(check(w, "10.0.0.1", user, pw), AUTHQ_PENDING);
    }
    pump(700);
    for (uint32_t w = 0; w < 700; w++)
        if (answer_of(w) != 1)
            fail_msg("u%u with its right password: answer %d", w, answer_of(w));
    assert_int_equal(sh.st.auth_slow_checks, 700);
    stop();
}

/* A waiter that leaves takes its check with it: no crypt(3), no answer. */
static void
test_cancelled_checks_cost_nothing(void **state)
{
    (void)state;
    start(20000, 0, 0);
    const unsigned n = AUTHQ_WINDOW + 6;
    char pw[32];
    for (uint32_t w = 0; w < n; w++) {
        snprintf(pw, sizeof(pw), "wrong-%u", w);
        assert_int_equal(check(w, "10.0.0.1", "alice", pw), AUTHQ_PENDING);
    }
    /* Two waiters of one job: the job stays while one is left. */
    assert_int_equal(check(n, "10.0.0.1", "alice", "wrong-0"), AUTHQ_PENDING);
    authq_cancel(&sh, 0);
    /* The last six are still on the shard: cancelled, they never reach the worker. */
    for (uint32_t w = AUTHQ_WINDOW; w < n; w++)
        authq_cancel(&sh, w);
    assert_int_equal(sh.st.auth_cancelled, 6);
    assert_int_equal(sh.st.auth_abandoned, 7);
    /* Cancelling twice, or a waiter that waits for nothing, changes nothing. */
    authq_cancel(&sh, AUTHQ_WINDOW);
    authq_cancel(&sh, 900);
    assert_int_equal(sh.st.auth_abandoned, 7);
    pump(AUTHQ_WINDOW);
    assert_int_equal(n_answers, AUTHQ_WINDOW);
    assert_int_equal(answer_of(0), -1);
    assert_int_equal(answer_of(n), 0);
    for (uint32_t w = 1; w < AUTHQ_WINDOW; w++)
        assert_int_equal(answer_of(w), 0);
    assert_int_equal(sh.st.auth_slow_checks, AUTHQ_WINDOW);
    /* The queued count of the address went back to zero with them. */
    union sockaddr_inx a = ip("10.0.0.1");
    assert_int_equal(clients_get(&sh.clients, &a, CLIENT_AUTH), 0);
    stop();
}

/* Order of answers: how many of A's came before B's first. */
static unsigned
a_before_b(uint32_t first_b)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n_answers && answers[i].cookie < 1000 + first_b; i++)
        k++;
    return k;
}

/*
 * Address A is over its failure budget; B, in good standing, asks after A's
 * 12 checks and is served once the worker's window is through, not last.
 */
static void
test_failing_address_waits_behind(void **state)
{
    (void)state;
    const uint32_t n_a = 12;
    char pw[32];
    for (int budget = 4; budget >= 0; budget -= 4) {
        start(5000, 0, (unsigned)budget);
        union sockaddr_inx a = ip("10.0.0.1");
        for (int i = 0; i < 4; i++)
            clients_fail(&sh.clients, &a, sh.now_s);
        for (uint32_t w = 0; w < n_a; w++) {
            snprintf(pw, sizeof(pw), "guess-%u", w);
            assert_int_equal(check(w, "10.0.0.1", "alice", pw), AUTHQ_PENDING);
        }
        assert_int_equal(check(n_a, "10.0.0.2", "bob", "bob-pw"), AUTHQ_PENDING);
        pump(n_a + 1);
        assert_int_equal(answer_of(n_a), 1);
        if (budget) {
            assert_int_equal(a_before_b(n_a), AUTHQ_WINDOW);
            assert_int_equal(sh.st.auth_deferred, n_a);
        } else {
            /* No budget: first come, first served. */
            assert_int_equal(a_before_b(n_a), n_a);
            assert_int_equal(sh.st.auth_deferred, 0);
        }
        stop();
    }
}

/* Checks queued count too: a burst from one address puts the excess behind. */
static void
test_queued_checks_count_against_the_budget(void **state)
{
    (void)state;
    char pw[32];
    start(5000, 0, 3);
    for (uint32_t w = 0; w < 10; w++) {
        snprintf(pw, sizeof(pw), "guess-%u", w);
        assert_int_equal(check(w, "10.0.0.1", "alice", pw), AUTHQ_PENDING);
    }
    assert_int_equal(sh.st.auth_deferred, 7);
    /* B's check joins an identical one that waits behind: it is moved to the front. */
    assert_int_equal(check(10, "10.0.0.2", "alice", "guess-9"), AUTHQ_PENDING);
    assert_int_equal(check(11, "10.0.0.3", "bob", "bob-pw"), AUTHQ_PENDING);
    pump(12);
    /* 3 in budget (in the worker's window, as is a 4th), then guess-9 (moved), then bob. */
    unsigned pos9 = 0, pos_bob = 0;
    for (unsigned i = 0; i < n_answers; i++) {
        if (answers[i].cookie == 1000 + 9)
            pos9 = i;
        if (answers[i].cookie == 1000 + 11)
            pos_bob = i;
    }
    assert_true(pos9 <= AUTHQ_WINDOW + 1);
    assert_true(pos_bob <= AUTHQ_WINDOW + 2);
    assert_int_equal(answer_of(9), 0);
    assert_int_equal(answer_of(10), 0);
    assert_int_equal(answer_of(11), 1);
    stop();
}

static void
test_budget_rule(void **state)
{
    (void)state;
    assert_true(authq_in_budget(0, 0, 16));
    assert_true(authq_in_budget(10, 5, 16));
    assert_false(authq_in_budget(10, 6, 16));
    assert_false(authq_in_budget(16, 0, 16));
    assert_true(authq_in_budget(UINT32_MAX, UINT32_MAX, 0));
    assert_false(authq_in_budget(UINT32_MAX, UINT32_MAX, UINT32_MAX));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_budget_rule, setup),
        cmocka_unit_test_setup(test_verdicts_and_unknown_names, setup),
        cmocka_unit_test_setup(test_identical_checks_share_one_run, setup),
        cmocka_unit_test_setup(test_no_limit_in_count, setup),
        cmocka_unit_test_setup(test_cancelled_checks_cost_nothing, setup),
        cmocka_unit_test_setup(test_failing_address_waits_behind, setup),
        cmocka_unit_test_setup(test_queued_checks_count_against_the_budget, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
