/*
 * bm_users.c - the credential fast path of src/users.c: after one slow
 * crypt(3) check, a shard answers from its authcache (src/authcache.c):
 * a keyed BLAKE2b digest of (user NUL pass NUL stored hash), then a probe
 * of the table compared in constant time. These call the same functions.
 * The user table lookup (users_hash(), a binary search) is not included.
 */
#include <sodium.h>
#include <string.h>

#include "auth.h"
#include "authcache.h"
#include "bench.h"

/* An sha512-crypt hash as users.c would pass it (the digest covers its text). */
static const char stored_hash[] =
    "$6$Zq3vN8uX1bY2kTfH$0a6s8Xl2yq8WzWbQm9S2fV0n3pT4rD7eL1cK5hJ6gF8dS9aQ2wE3rT4yU5iO6pA7s"
    "D8fG9hJ0kL1zX2cV3bN4mQ5w";

static struct auth_cred
cred_sample(void)
{
    struct auth_cred c;
    memset(&c, 0, sizeof(c));
    strcpy(c.user, "scraper-0042");
    strcpy(c.pass, "correct horse battery");
    c.ulen = (uint8_t)strlen(c.user);
    c.plen = (uint8_t)strlen(c.pass);
    return c;
}

static bool
sodium_ready(struct bench *b)
{
    if (sodium_init() < 0) {
        bench_error(b, "sodium_init failed");
        return false;
    }
    return true;
}

/* About 160 KB: static, not on the stack. */
static struct authcache cache;

void
bm_users_digest(struct bench *b)
{
    uint8_t digest[AUTHCACHE_DIGEST];
    struct auth_cred cred = cred_sample();
    if (!sodium_ready(b))
        return;
    authcache_init(&cache);
    bench_set_bytes(b, (int64_t)(cred.ulen + 1 + cred.plen + 1 + strlen(stored_hash)));
    while (bench_next(b)) {
        authcache_digest(&cache, &cred, stored_hash, digest);
        bench_do_not_optimize(digest);
    }
}

/* Two equal random digests, the case of a cache hit; false (and the bench failed) without
 * sodium. */
static bool
equal_digests(struct bench *b, uint8_t *x, uint8_t *y)
{
    if (!sodium_ready(b))
        return false;
    randombytes_buf(x, AUTHCACHE_DIGEST);
    memcpy(y, x, AUTHCACHE_DIGEST);
    bench_set_bytes(b, AUTHCACHE_DIGEST);
    return true;
}

/*
 * Not what authcache.c calls: libsodium's variable-length compare (a byte
 * loop with a volatile accumulator), beside crypto_verify_32, which it uses.
 */
void
bm_users_memcmp(struct bench *b)
{
    uint8_t x[AUTHCACHE_DIGEST], y[AUTHCACHE_DIGEST];
    if (!equal_digests(b, x, y))
        return;
    while (bench_next(b)) {
        /* Constant time: the same for any input. */
        int r = sodium_memcmp(x, y, AUTHCACHE_DIGEST);
        bench_do_not_optimize(&r);
        bench_do_not_optimize(x);
    }
}

void
bm_users_verify_32(struct bench *b)
{
    uint8_t x[AUTHCACHE_DIGEST], y[AUTHCACHE_DIGEST];
    if (!equal_digests(b, x, y))
        return;
    while (bench_next(b)) {
        int r = crypto_verify_32(x, y);
        bench_do_not_optimize(&r);
        bench_do_not_optimize(x);
    }
}

/*
 * What a shard does for a returning user: auth_feed() parses the message,
 * authcache_digest(), then authcache_find() over a full table, hitting.
 */
void
bm_users_fast_path(struct bench *b)
{
    uint8_t digest[AUTHCACHE_DIGEST], other[AUTHCACHE_DIGEST];
    uint8_t msg[AUTH_REQUEST_MAX];
    struct auth_cred sample = cred_sample(), cred;
    if (!sodium_ready(b))
        return;

    size_t len = 0;
    msg[len++] = AUTH_VERSION;
    msg[len++] = sample.ulen;
    memcpy(msg + len, sample.user, sample.ulen);
    len += sample.ulen;
    msg[len++] = sample.plen;
    memcpy(msg + len, sample.pass, sample.plen);
    len += sample.plen;

    /* Fill the table so probes look at occupied slots, then put our credential in. */
    authcache_init(&cache);
    for (unsigned i = 0; i < AUTHCACHE_SLOTS; i++) {
        randombytes_buf(other, sizeof(other));
        authcache_put(&cache, other, true, 1);
    }
    authcache_digest(&cache, &sample, stored_hash, digest);
    authcache_put(&cache, digest, true, 1);
    if (!authcache_find(&cache, digest, 2)) {
        bench_error(b, "the credential just put in the cache is not found");
        return;
    }

    while (bench_next(b)) {
        ssize_t n = auth_feed(&cred, msg, len);
        authcache_digest(&cache, &cred, stored_hash, digest);
        const struct authcache_entry *e = n > 0 ? authcache_find(&cache, digest, 2) : NULL;
        int ok = e && e->state == AUTHCACHE_GOOD;
        sodium_memzero(cred.pass, cred.plen);
        bench_do_not_optimize(&ok);
    }
}
