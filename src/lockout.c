/*
 * lockout.c - failed-login counts and locks shared by every shard (lockout.h).
 *
 * Owns two tables of 64-bit words, one per scope, allocated once. Any thread
 * reads and updates them, with relaxed atomic loads and compare-and-swap on
 * one word at a time: a word is the whole record of its key, so no other
 * memory is published through it. Never allocates, blocks or locks after
 * lockout_new(); time comes from the caller, so tests drive it.
 *
 * A word: tag (16 bits) | count (16 bits; LOCKED: locked) | time (32 bits, s).
 * Counting, the time is that of the first failure of the window; locked, that
 * of the failure that locked the key. 0 is a free word (a live count is >= 1).
 */
#include "lockout.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define LOCKED 0xffffu

struct lockout {
    uint64_t *t[LOCKOUT__SCOPES];
    uint32_t mask;
    lockout_hash_fn hash;
    const void *hash_arg;
    uint8_t key[crypto_shorthash_KEYBYTES];
};

static uint64_t
siphash(const uint8_t *p, size_t len, const void *arg)
{
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, p, len, arg);
    memcpy(&h, out, sizeof(h));
    return h;
}

struct lockout *
lockout_new(uint32_t slots)
{
    if (slots < 2 || (slots & (slots - 1)))
        return NULL;
    struct lockout *lk = calloc(1, sizeof(*lk));
    if (!lk)
        return NULL;
    lk->mask = slots - 1;
    for (int s = 0; s < LOCKOUT__SCOPES; s++) {
        lk->t[s] = calloc(slots, sizeof(uint64_t));
        if (!lk->t[s]) {
            lockout_free(lk);
            return NULL;
        }
    }
    randombytes_buf(lk->key, sizeof(lk->key));
    lk->hash = siphash;
    lk->hash_arg = lk->key;
    return lk;
}

void
lockout_free(struct lockout *lk)
{
    if (!lk)
        return;
    for (int s = 0; s < LOCKOUT__SCOPES; s++)
        free(lk->t[s]);
    free(lk);
}

void
lockout_set_hash(struct lockout *lk, lockout_hash_fn fn, const void *arg)
{
    lk->hash = fn;
    lk->hash_arg = arg;
}

/* ---- words */

static uint16_t
w_tag(uint64_t w)
{
    return (uint16_t)(w >> 48);
}

static uint16_t
w_count(uint64_t w)
{
    return (uint16_t)(w >> 32);
}

static uint32_t
w_time(uint64_t w)
{
    return (uint32_t)w;
}

static uint64_t
w_make(uint16_t tag, uint16_t count, uint32_t t)
{
    return (uint64_t)tag << 48 | (uint64_t)count << 32 | t;
}

/* Seconds since t; 0 when another thread's clock read was a little later than ours. */
static uint32_t
age(uint32_t now_s, uint32_t t)
{
    int32_t d = (int32_t)(now_s - t);
    return d > 0 ? (uint32_t)d : 0;
}

static bool
w_locked(uint64_t w)
{
    return w_count(w) == LOCKED;
}

/* Does w still mean something at now_s: a lock not yet over, or a count in its window? */
static bool
w_live(uint64_t w, const struct lockout_params *p, uint32_t now_s)
{
    if (!w)
        return false;
    if (w_locked(w))
        return age(now_s, w_time(w)) < p->duration_s;
    return w_count(w) > 0 && age(now_s, w_time(w)) < p->window_s;
}

/* ---- keys */

/* Where a key may live in its table: two words, and its tag. */
struct where {
    uint32_t slot[2];
    uint16_t tag;
};

static struct where
locate(const struct lockout *lk, enum lockout_scope scope, const union sockaddr_inx *client,
       const char *user)
{
    uint8_t buf[16 + 256];
    uint64_t a[2];
    size_t len = sizeof(a);
    addr_client_key(client, a);
    memcpy(buf, a, sizeof(a));
    if (scope == LOCKOUT_PAIR) {
        size_t ul = strnlen(user, 255);
        memcpy(buf + len, user, ul);
        len += ul;
    }
    uint64_t h = lk->hash(buf, len, lk->hash_arg);
    struct where w;
    w.slot[0] = (uint32_t)h & lk->mask;
    w.slot[1] = (uint32_t)(h >> 24) & lk->mask;
    if (w.slot[1] == w.slot[0])
        w.slot[1] ^= 1;
    w.tag = (uint16_t)(h >> 48);
    return w;
}

static uint32_t
threshold(const struct lockout_params *p, enum lockout_scope scope)
{
    uint32_t n = scope == LOCKOUT_PAIR ? p->failures : p->address_failures;
    return n < LOCKOUT_MAX_FAILURES ? n : LOCKOUT_MAX_FAILURES;
}

/* The less loaded of two live words of other keys: 0 or 1 (see lockout.h). */
static int
less_loaded(const uint64_t w[2])
{
    if (w_locked(w[0]) != w_locked(w[1]))
        return w_locked(w[0]) ? 1 : 0;
    return w_count(w[1]) < w_count(w[0]) ? 1 : 0;
}

/*
 * Which of the key's two words is its record now (w holds both, as loaded):
 * *mine is true when it holds the key, false when the word is free or expired
 * (take it) or, both being live for other keys, the one the key shares.
 */
static int
pick(const struct where *k, const uint64_t w[2], const struct lockout_params *p, uint32_t now_s,
     bool *mine)
{
    bool live[2] = {w_live(w[0], p, now_s), w_live(w[1], p, now_s)};
    for (int i = 0; i < 2; i++) {
        if (live[i] && w_tag(w[i]) == k->tag) {
            *mine = true;
            return i;
        }
    }
    *mine = false;
    if (!live[0] || !live[1])
        return live[0] ? 1 : 0;
    return less_loaded(w);
}

static void
load2(const uint64_t *t, const struct where *k, uint64_t w[2])
{
    w[0] = __atomic_load_n(&t[k->slot[0]], __ATOMIC_RELAXED);
    w[1] = __atomic_load_n(&t[k->slot[1]], __ATOMIC_RELAXED);
}

/* The key's record (its own or the shared one) at now_s: 0 when it has none. */
static uint64_t
record(const struct lockout *lk, const struct lockout_params *p, enum lockout_scope scope,
       const union sockaddr_inx *client, const char *user, uint32_t now_s)
{
    struct where k = locate(lk, scope, client, user);
    uint64_t w[2];
    bool mine;
    load2(lk->t[scope], &k, w);
    int i = pick(&k, w, p, now_s, &mine);
    return w_live(w[i], p, now_s) ? w[i] : 0;
}

/* Count one failure of a key; true when it locked the key (or the word it shares). */
static bool
fail_one(struct lockout *lk, const struct lockout_params *p, enum lockout_scope scope,
         const union sockaddr_inx *client, const char *user, uint32_t now_s)
{
    uint32_t n = threshold(p, scope);
    if (!n)
        return false;
    struct where k = locate(lk, scope, client, user);
    uint64_t *t = lk->t[scope];
    for (;;) {
        uint64_t w[2], nw;
        bool mine, locks = false;
        load2(t, &k, w);
        int i = pick(&k, w, p, now_s, &mine);
        bool live = w_live(w[i], p, now_s);
        if (live && w_locked(w[i]))
            return false; /* a check that was in flight when the lock came: nothing to add */
        uint32_t count = live ? (uint32_t)w_count(w[i]) + 1 : 1;
        if (count >= n) {
            nw = w_make(live ? w_tag(w[i]) : k.tag, LOCKED, now_s);
            locks = true;
        } else if (live) {
            nw = w_make(w_tag(w[i]), (uint16_t)count, w_time(w[i]));
        } else {
            nw = w_make(k.tag, 1, now_s);
        }
        if (__atomic_compare_exchange_n(&t[k.slot[i]], &w[i], nw, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return locks;
    }
}

/* ---- the interface */

bool
lockout_locked(const struct lockout *lk, const struct lockout_params *p,
               const union sockaddr_inx *client, const char *user, uint32_t now_s,
               enum lockout_scope *scope)
{
    for (int s = 0; s < LOCKOUT__SCOPES; s++) {
        if (!threshold(p, (enum lockout_scope)s))
            continue;
        if (w_locked(record(lk, p, (enum lockout_scope)s, client, user, now_s))) {
            if (scope)
                *scope = (enum lockout_scope)s;
            return true;
        }
    }
    return false;
}

unsigned
lockout_fail(struct lockout *lk, const struct lockout_params *p, const union sockaddr_inx *client,
             const char *user, uint32_t now_s)
{
    unsigned locked = 0;
    for (int s = 0; s < LOCKOUT__SCOPES; s++)
        if (fail_one(lk, p, (enum lockout_scope)s, client, user, now_s))
            locked |= 1u << s;
    return locked;
}

void
lockout_success(struct lockout *lk, const struct lockout_params *p,
                const union sockaddr_inx *client, const char *user, uint32_t now_s)
{
    if (!threshold(p, LOCKOUT_PAIR))
        return;
    struct where k = locate(lk, LOCKOUT_PAIR, client, user);
    uint64_t *t = lk->t[LOCKOUT_PAIR];
    for (;;) {
        uint64_t w[2];
        bool mine;
        load2(t, &k, w);
        int i = pick(&k, w, p, now_s, &mine);
        /* Only the pair's own count: a shared word is another pair's, a lock ends by time. */
        if (!mine || w_locked(w[i]))
            return;
        if (__atomic_compare_exchange_n(&t[k.slot[i]], &w[i], 0, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return;
    }
}

uint32_t
lockout_count(const struct lockout *lk, const struct lockout_params *p, enum lockout_scope scope,
              const union sockaddr_inx *client, const char *user, uint32_t now_s)
{
    uint32_t n = threshold(p, scope);
    if (!n)
        return 0;
    uint64_t w = record(lk, p, scope, client, user, now_s);
    return w_locked(w) ? n : w_count(w);
}
