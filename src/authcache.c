/*
 * authcache.c - the per-shard cache of checked credentials (authcache.h).
 */
#include "authcache.h"

#include <string.h>

void
authcache_init(struct authcache *c)
{
    memset(c->e, 0, sizeof(c->e));
    randombytes_buf(c->key, sizeof(c->key));
}

void
authcache_digest(const struct authcache *c, const struct auth_cred *cred, const char *hash,
                 uint8_t digest[AUTHCACHE_DIGEST])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, c->key, sizeof(c->key), AUTHCACHE_DIGEST);
    crypto_generichash_update(&st, (const uint8_t *)cred->user, (size_t)cred->ulen + 1);
    crypto_generichash_update(&st, (const uint8_t *)cred->pass, (size_t)cred->plen + 1);
    crypto_generichash_update(&st, (const uint8_t *)hash, strlen(hash));
    crypto_generichash_final(&st, digest, AUTHCACHE_DIGEST);
    sodium_memzero(&st, sizeof(st));
}

static uint64_t
home(const uint8_t *digest)
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    return h;
}

const struct authcache_entry *
authcache_find(struct authcache *c, const uint8_t *digest, uint32_t now)
{
    uint64_t h = home(digest);
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++) {
        struct authcache_entry *e = &c->e[(h + i) & (AUTHCACHE_SLOTS - 1)];
        if (e->state != AUTHCACHE_EMPTY && crypto_verify_32(e->digest, digest) == 0) {
            if (e->state == AUTHCACHE_BAD) {
                if (now - e->stamp_s >= AUTHCACHE_NEG_TTL_S)
                    return NULL;
            } else {
                e->stamp_s = now;
            }
            return e;
        }
    }
    return NULL;
}

/* How much a slot is worth keeping: the lowest is replaced first. */
static unsigned
keep_rank(const struct authcache_entry *e, uint32_t now)
{
    if (e->state == AUTHCACHE_EMPTY)
        return 0;
    if (e->state == AUTHCACHE_BAD)
        return now - e->stamp_s >= AUTHCACHE_NEG_TTL_S ? 1 : 2;
    return 3;
}

void
authcache_put(struct authcache *c, const uint8_t *digest, bool ok, uint32_t now)
{
    uint64_t h = home(digest);
    struct authcache_entry *victim = NULL;
    unsigned vrank = 0;
    for (unsigned i = 0; i < AUTHCACHE_PROBE; i++) {
        struct authcache_entry *e = &c->e[(h + i) & (AUTHCACHE_SLOTS - 1)];
        if (e->state != AUTHCACHE_EMPTY && crypto_verify_32(e->digest, digest) == 0) {
            victim = e;
            break;
        }
        unsigned r = keep_rank(e, now);
        if (!victim || r < vrank || (r == vrank && e->stamp_s < victim->stamp_s)) {
            victim = e;
            vrank = r;
        }
    }
    /* Wrong passwords never displace a verified credential. */
    if (!ok && victim->state == AUTHCACHE_GOOD && crypto_verify_32(victim->digest, digest) != 0)
        return;
    memcpy(victim->digest, digest, AUTHCACHE_DIGEST);
    victim->state = ok ? AUTHCACHE_GOOD : AUTHCACHE_BAD;
    victim->stamp_s = now;
}
