/*
 * authcache.h - the cache of checked credentials that spares a shard the
 * slow crypt(3) run for a returning user: keyed BLAKE2b digests of
 * (user NUL pass NUL stored hash), looked up in a small open-addressed
 * table and compared in constant time. Good answers stay until the stored
 * hash changes (it is in the digest) or newer good answers need their
 * place; bad ones for AUTHCACHE_NEG_TTL_S, so a client retrying a wrong
 * password does not cost a hash each time. A bad answer never takes the
 * place of a good one: an attacker's stream of wrong passwords must not push
 * known-good clients out of the cache and back into the crypt queue with it.
 *
 * Pure and single-threaded: each shard owns one (inside its authq); the
 * micro-benchmark drives the same functions.
 */
#ifndef RINGSOCKS_AUTHCACHE_H
#define RINGSOCKS_AUTHCACHE_H

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"

#define AUTHCACHE_DIGEST    crypto_verify_32_BYTES /* compared with crypto_verify_32 */
#define AUTHCACHE_SLOTS     4096                   /* power of two */
#define AUTHCACHE_PROBE     8
#define AUTHCACHE_NEG_TTL_S 30

enum authcache_state { AUTHCACHE_EMPTY, AUTHCACHE_GOOD, AUTHCACHE_BAD };

struct authcache_entry {
    uint8_t digest[AUTHCACHE_DIGEST];
    uint8_t state; /* enum authcache_state */
    uint32_t stamp_s;
};

struct authcache {
    uint8_t key[crypto_generichash_KEYBYTES]; /* random, never leaves the process */
    struct authcache_entry e[AUTHCACHE_SLOTS];
};

/* An empty cache with a fresh random key (sodium_init() must have run). */
void authcache_init(struct authcache *c);
/* digest = BLAKE2b_key(user NUL pass NUL hash). */
void authcache_digest(const struct authcache *c, const struct auth_cred *cred, const char *hash,
                      uint8_t digest[AUTHCACHE_DIGEST]);
/* The entry for digest: good, or bad and younger than the TTL at now; else NULL.
 * A good entry found is stamped now (the least recently used good one goes first). */
const struct authcache_entry *authcache_find(struct authcache *c, const uint8_t *digest,
                                             uint32_t now);
/*
 * Remember a result, in the entry of the same digest or else, in this order,
 * in an empty slot of its probe, an expired bad one, the oldest bad one, and
 * (a good result only) the least recently used good one. A bad result for a
 * probe full of good entries is not kept.
 */
void authcache_put(struct authcache *c, const uint8_t *digest, bool ok, uint32_t now);

#endif
