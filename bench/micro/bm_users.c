/*
 * bm_users.c - the credential fast path of src/users.c: after one slow
 * crypt(3) check, a shard answers from a cache of keyed BLAKE2b digests of
 * (user NUL pass NUL stored hash), compared in constant time.
 *
 * users.c keeps its key and cache static inside struct authq (built with a
 * shard), so the same libsodium calls are made here directly, in the same
 * order and with the same sizes (32-byte key, 32-byte digest, a probe of
 * the open-addressed cache). The user table lookup (users_hash(), a binary
 * search) is not included.
 */
#include <sodium.h>
#include <string.h>

#include "auth.h"
#include "bench.h"

#define DIGEST_LEN  32   /* users.c DIGEST_LEN */
#define CACHE_SLOTS 4096 /* users.c CACHE_SLOTS */

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

/* As authq_check(): digest = BLAKE2b_key(user NUL pass NUL hash). */
static void
digest_of(uint8_t *digest, const uint8_t *key, const struct auth_cred *cred, const char *hash)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, crypto_generichash_KEYBYTES, DIGEST_LEN);
    crypto_generichash_update(&st, (const uint8_t *)cred->user, (size_t)cred->ulen + 1);
    crypto_generichash_update(&st, (const uint8_t *)cred->pass, (size_t)cred->plen + 1);
    crypto_generichash_update(&st, (const uint8_t *)hash, strlen(hash));
    crypto_generichash_final(&st, digest, DIGEST_LEN);
    sodium_memzero(&st, sizeof(st));
}

static bool
setup(struct bench *b, uint8_t *key)
{
    if (sodium_init() < 0) {
        bench_error(b, "sodium_init failed");
        return false;
    }
    randombytes_buf(key, crypto_generichash_KEYBYTES);
    return true;
}

void
bm_users_digest(struct bench *b)
{
    uint8_t key[crypto_generichash_KEYBYTES], digest[DIGEST_LEN];
    struct auth_cred cred = cred_sample();
    if (!setup(b, key))
        return;
    bench_set_bytes(b, (int64_t)(cred.ulen + 1 + cred.plen + 1 + strlen(stored_hash)));
    while (bench_next(b)) {
        digest_of(digest, key, &cred, stored_hash);
        bench_do_not_optimize(digest);
    }
}

/* Two equal random digests, the case of a cache hit; false (and the bench failed) without sodium. */
static bool
equal_digests(struct bench *b, uint8_t *x, uint8_t *y)
{
    if (sodium_init() < 0) {
        bench_error(b, "sodium_init failed");
        return false;
    }
    randombytes_buf(x, DIGEST_LEN);
    memcpy(y, x, DIGEST_LEN);
    bench_set_bytes(b, DIGEST_LEN);
    return true;
}

void
bm_users_memcmp(struct bench *b)
{
    uint8_t x[DIGEST_LEN], y[DIGEST_LEN];
    if (!equal_digests(b, x, y))
        return;
    while (bench_next(b)) {
        /* Constant time: the same for any input. */
        int r = sodium_memcmp(x, y, DIGEST_LEN);
        bench_do_not_optimize(&r);
        bench_do_not_optimize(x);
    }
}

/*
 * Not what users.c calls: libsodium's fixed-size constant-time compare, for
 * comparison with sodium_memcmp() (a byte loop with a volatile accumulator).
 */
void
bm_users_verify_32(struct bench *b)
{
    uint8_t x[DIGEST_LEN], y[DIGEST_LEN];
    if (!equal_digests(b, x, y))
        return;
    while (bench_next(b)) {
        int r = crypto_verify_32(x, y);
        bench_do_not_optimize(&r);
        bench_do_not_optimize(x);
    }
}

struct cache_entry {
    uint8_t digest[DIGEST_LEN];
    uint8_t state;
    uint32_t stamp_s;
};

/*
 * What a shard does for a returning user after auth_feed(): the digest,
 * then cache_find()'s probe, which hits at the first slot (sodium_memcmp
 * on each occupied slot until the match).
 */
void
bm_users_fast_path(struct bench *b)
{
    static struct cache_entry cache[CACHE_SLOTS];
    uint8_t key[crypto_generichash_KEYBYTES], digest[DIGEST_LEN];
    uint8_t msg[AUTH_REQUEST_MAX];
    struct auth_cred sample = cred_sample(), cred;
    if (!setup(b, key))
        return;

    size_t len = 0;
    msg[len++] = AUTH_VERSION;
    msg[len++] = sample.ulen;
    memcpy(msg + len, sample.user, sample.ulen);
    len += sample.ulen;
    msg[len++] = sample.plen;
    memcpy(msg + len, sample.pass, sample.plen);
    len += sample.plen;

    /* Fill the cache so probes look at occupied slots, then put our credential in. */
    for (unsigned i = 0; i < CACHE_SLOTS; i++) {
        randombytes_buf(cache[i].digest, DIGEST_LEN);
        cache[i].state = 1;
    }
    digest_of(digest, key, &sample, stored_hash);
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    memcpy(cache[h & (CACHE_SLOTS - 1)].digest, digest, DIGEST_LEN);

    while (bench_next(b)) {
        ssize_t n = auth_feed(&cred, msg, len);
        digest_of(digest, key, &cred, stored_hash);
        memcpy(&h, digest, sizeof(h));
        int ok = 0;
        for (unsigned i = 0; i < 8 && n > 0; i++) {
            struct cache_entry *e = &cache[(h + i) & (CACHE_SLOTS - 1)];
            if (e->state && sodium_memcmp(e->digest, digest, DIGEST_LEN) == 0) {
                ok = e->state == 1;
                break;
            }
        }
        sodium_memzero(cred.pass, cred.plen);
        bench_do_not_optimize(&ok);
    }
}
