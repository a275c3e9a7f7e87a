/*
 * test_authcache.c - src/authcache.c: the per-shard cache of checked
 * credentials (digests, hits, the negative TTL, eviction within a probe).
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
test_full_probe_evicts_the_oldest(void **state)
{
    uint8_t d[AUTHCACHE_PROBE + 1][AUTHCACHE_DIGEST];

    (void)state;
    authcache_init(&cache);
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++) {
        colliding(d[i], (uint8_t)(i + 1));
        authcache_put(&cache, d[i], true, 50 - i); /* d[PROBE-1] is the oldest */
    }
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++)
        assert_non_null(authcache_find(&cache, d[i], 60));
    colliding(d[AUTHCACHE_PROBE], 0xff);
    authcache_put(&cache, d[AUTHCACHE_PROBE], true, 60);
    assert_non_null(authcache_find(&cache, d[AUTHCACHE_PROBE], 60));
    assert_null(authcache_find(&cache, d[AUTHCACHE_PROBE - 1], 60));
    for (unsigned i = 0; i + 1 < AUTHCACHE_PROBE; i++)
        assert_non_null(authcache_find(&cache, d[i], 60));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_digest_covers_every_field, setup),
        cmocka_unit_test_setup(test_hit_miss_and_negative_ttl, setup),
        cmocka_unit_test_setup(test_full_probe_evicts_the_oldest, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
