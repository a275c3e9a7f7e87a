/*
 * test_authcache.c - src/authcache.c: the per-shard cache of checked
 * credentials (digests, hits, the negative TTL, eviction within a probe:
 * least recently used, and never a good entry for a bad one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

#include "authcache.h"

static struct authcache cache;

static struct auth_cred
cred(const char *user, const char *pass)
{
    struct auth_cred c;
    memset(&c, 0, sizeof(c));
    strcpy(c.user, user);
    strcpy(c.pass, pass);
    c.ulen = (uint8_t)strlen(user);
    c.plen = (uint8_t)strlen(pass);
    return c;
}

static int
setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    authcache_init(&cache);
    return 0;
}

static void
test_digest_covers_every_field(void **state)
{
    uint8_t a[AUTHCACHE_DIGEST], b[AUTHCACHE_DIGEST];
    struct auth_cred alice = cred("alice", "pw"), other;

    (void)state;
    authcache_digest(&cache, &alice, "$6$h", a);
    authcache_digest(&cache, &alice, "$6$h", b);
    assert_memory_equal(a, b, sizeof(a));
    /* A changed stored hash (the user's password was reset) is another credential. */
    authcache_digest(&cache, &alice, "$6$H", b);
    assert_memory_not_equal(a, b, sizeof(a));
    other = cred("alice", "pW");
    authcache_digest(&cache, &other, "$6$h", b);
    assert_memory_not_equal(a, b, sizeof(a));
    /* The separators keep "ab"+"c" apart from "a"+"bc". */
    struct auth_cred x = cred("ab", "c"), y = cred("a", "bc");
    authcache_digest(&cache, &x, "", a);
    authcache_digest(&cache, &y, "", b);
    assert_memory_not_equal(a, b, sizeof(a));
    /* Another shard's key gives another digest for the same credential. */
    static struct authcache other_shard;
    authcache_init(&other_shard);
    authcache_digest(&cache, &alice, "$6$h", a);
    authcache_digest(&other_shard, &alice, "$6$h", b);
    assert_memory_not_equal(a, b, sizeof(a));
}

static void
test_hit_miss_and_negative_ttl(void **state)
{
    uint8_t good[AUTHCACHE_DIGEST], bad[AUTHCACHE_DIGEST];
    struct auth_cred g = cred("bob", "right"), w = cred("bob", "wrong");

    (void)state;
    authcache_digest(&cache, &g, "$6$b", good);
    authcache_digest(&cache, &w, "$6$b", bad);
    assert_null(authcache_find(&cache, good, 100));
    authcache_put(&cache, good, true, 100);
    authcache_put(&cache, bad, false, 100);
    const struct authcache_entry *e = authcache_find(&cache, good, 100);
    assert_non_null(e);
    assert_int_equal(e->state, AUTHCACHE_GOOD);
    /* A good answer does not age; a bad one is forgotten after the TTL. */
    assert_non_null(authcache_find(&cache, good, 100 + 1000000));
    e = authcache_find(&cache, bad, 100 + AUTHCACHE_NEG_TTL_S - 1);
    assert_non_null(e);
    assert_int_equal(e->state, AUTHCACHE_BAD);
    assert_null(authcache_find(&cache, bad, 100 + AUTHCACHE_NEG_TTL_S));
    /* Putting the same digest again updates its entry in place. */
    authcache_put(&cache, bad, true, 200);
    e = authcache_find(&cache, bad, 10000);
    assert_non_null(e);
    assert_int_equal(e->state, AUTHCACHE_GOOD);
}

/* Digests that share a home slot (the first 8 bytes pick it). */
static void
colliding(uint8_t d[AUTHCACHE_DIGEST], uint8_t tag)
{
    memset(d, 0, AUTHCACHE_DIGEST);
    d[0] = 7;
    d[31] = tag;
}

static void
test_full_probe_evicts_the_least_recently_used(void **state)
{
    uint8_t d[AUTHCACHE_PROBE + 1][AUTHCACHE_DIGEST];

    (void)state;
    authcache_init(&cache);
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++) {
        colliding(d[i], (uint8_t)(i + 1));
        authcache_put(&cache, d[i], true, 50 - i); /* d[PROBE-1] is the oldest */
    }
    /* Every entry but d[1] logs in again: d[1] is now the least recently used. */
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++)
        if (i != 1)
            assert_non_null(authcache_find(&cache, d[i], 60));
    colliding(d[AUTHCACHE_PROBE], 0xff);
    authcache_put(&cache, d[AUTHCACHE_PROBE], true, 61);
    assert_non_null(authcache_find(&cache, d[AUTHCACHE_PROBE], 62));
    assert_null(authcache_find(&cache, d[1], 62));
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++)
        if (i != 1)
            assert_non_null(authcache_find(&cache, d[i], 62));
}

/* An attacker's stream of wrong passwords cannot push verified credentials out. */
static void
test_bad_never_displaces_good(void **state)
{
    uint8_t good[AUTHCACHE_PROBE][AUTHCACHE_DIGEST], bad[AUTHCACHE_DIGEST];

    (void)state;
    authcache_init(&cache);
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++) {
        colliding(good[i], (uint8_t)(i + 1));
        authcache_put(&cache, good[i], true, 10);
    }
    for (unsigned k = 0; k < 1000; k++) {
        colliding(bad, 0x80);
        bad[30] = (uint8_t)k;
        bad[29] = (uint8_t)(k >> 8);
        authcache_put(&cache, bad, false, 20 + k);
        assert_null(authcache_find(&cache, bad, 20 + k));
    }
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++) {
        const struct authcache_entry *e = authcache_find(&cache, good[i], 5000);
        assert_non_null(e);
        assert_int_equal(e->state, AUTHCACHE_GOOD);
    }
}

/* Empty first, then expired bad, then the oldest bad, before any good one. */
static void
test_victim_order(void **state)
{
    uint8_t g[AUTHCACHE_PROBE][AUTHCACHE_DIGEST], n[3][AUTHCACHE_DIGEST];
    const uint32_t t = 1000;

    (void)state;
    authcache_init(&cache);
    /* Slots: 4 good (old), 2 live bad (t-5, t-3), 1 expired bad, 1 empty. */
    for (unsigned i = 0; i < 4; i++) {
        colliding(g[i], (uint8_t)(i + 1));
        authcache_put(&cache, g[i], true, 1);
    }
    colliding(g[4], 5);
    authcache_put(&cache, g[4], false, t - 5);
    colliding(g[5], 6);
    authcache_put(&cache, g[5], false, t - 3);
    colliding(g[6], 7);
    authcache_put(&cache, g[6], false, t - AUTHCACHE_NEG_TTL_S - 1);

    colliding(n[0], 0xa0);
    authcache_put(&cache, n[0], true, t); /* takes the empty slot */
    assert_non_null(authcache_find(&cache, g[4], t));
    assert_non_null(authcache_find(&cache, g[5], t));
    colliding(n[1], 0xa1);
    authcache_put(&cache, n[1], true, t); /* takes the expired bad one */
    assert_non_null(authcache_find(&cache, g[4], t));
    assert_non_null(authcache_find(&cache, g[5], t));
    colliding(n[2], 0xa2);
    authcache_put(&cache, n[2], false, t); /* the oldest live bad one: g[4] */
    assert_null(authcache_find(&cache, g[4], t));
    assert_non_null(authcache_find(&cache, g[5], t));
    assert_non_null(authcache_find(&cache, n[2], t));
    for (unsigned i = 0; i < 4; i++)
        assert_non_null(authcache_find(&cache, g[i], t));
    assert_non_null(authcache_find(&cache, n[0], t));
    assert_non_null(authcache_find(&cache, n[1], t));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_digest_covers_every_field, setup),
        cmocka_unit_test_setup(test_hit_miss_and_negative_ttl, setup),
        cmocka_unit_test_setup(test_full_probe_evicts_the_least_recently_used, setup),
        cmocka_unit_test_setup(test_bad_never_displaces_good, setup),
        cmocka_unit_test_setup(test_victim_order, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
