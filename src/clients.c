/*
 * clients.c - per-shard counts by client address (see clients.h).
 *
 * Shard thread only. Open addressing with linear probing, at most 3/4 full;
 * an entry whose counts are all zero and whose failures have expired is
 * removed at once by shifting its successors back (no tombstones), except
 * that entries holding only failures expire without a call naming them:
 * they are dropped when the table next grows.
 */
#include "clients.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define FREE_KEY UINT64_MAX

/* splitmix64's finaliser over both halves. */
static uint32_t
key_hash(const uint64_t key[2])
{
    uint64_t x = key[0] ^ (key[1] * UINT64_C(0x9e3779b97f4a7c15));
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return (uint32_t)(x ^ (x >> 31));
}

static bool
is_free(const struct client_ent *e)
{
    return e->key[0] == FREE_KEY && e->key[1] == FREE_KEY;
}

static bool
fails_live(const struct clients *cl, const struct client_ent *e, uint32_t now_s)
{
    return e->fails && now_s - e->fail_since_s < cl->fail_window_s;
}

static bool
is_empty(const struct clients *cl, const struct client_ent *e, uint32_t now_s)
{
    for (int i = 0; i < CLIENT__COUNT; i++)
        if (e->n[i])
            return false;
    return !fails_live(cl, e, now_s);
}

void
clients_init(struct clients *cl, uint32_t fail_window_s)
{
    memset(cl, 0, sizeof(*cl));
    cl->fail_window_s = fail_window_s ? fail_window_s : 1;
}

void
clients_fini(struct clients *cl)
{
    free(cl->t);
    cl->t = NULL;
    cl->cap = cl->used = 0;
}

/* The slot holding key, or NULL. */
static struct client_ent *
find(const struct clients *cl, const uint64_t key[2])
{
    if (!cl->cap)
        return NULL;
    uint32_t mask = cl->cap - 1;
    for (uint32_t i = key_hash(key) & mask;; i = (i + 1) & mask) {
        struct client_ent *e = &cl->t[i];
        if (is_free(e))
            return NULL;
        if (e->key[0] == key[0] && e->key[1] == key[1])
            return e;
    }
}

static void
place(struct client_ent *t, uint32_t cap, const struct client_ent *e)
{
    uint32_t mask = cap - 1;
    uint32_t i = key_hash(e->key) & mask;
    while (!is_free(&t[i]))
        i = (i + 1) & mask;
    t[i] = *e;
}

/* Room for one more entry: grow (dropping entries that hold nothing now) when 3/4 full. */
static int
reserve(struct clients *cl, uint32_t now_s)
{
    if (cl->cap && (uint64_t)(cl->used + 1) * 4 <= (uint64_t)cl->cap * 3)
        return 0;
    uint32_t live = 0;
    for (uint32_t i = 0; i < cl->cap; i++)
        if (!is_free(&cl->t[i]) && !is_empty(cl, &cl->t[i], now_s))
            live++;
    uint32_t cap = cl->cap ? cl->cap : 64;
    while ((uint64_t)(live + 1) * 4 > (uint64_t)cap * 3)
        cap *= 2;
    if (live + 1 > CLIENTS_MAX)
        return -ENOMEM;
    struct client_ent *t = malloc((size_t)cap * sizeof(*t));
    if (!t)
        return -ENOMEM;
    memset(t, 0xff, (size_t)cap * sizeof(*t)); /* every key FREE_KEY */
    for (uint32_t i = 0; i < cl->cap; i++)
        if (!is_free(&cl->t[i]) && !is_empty(cl, &cl->t[i], now_s))
            place(t, cap, &cl->t[i]);
    free(cl->t);
    cl->t = t;
    cl->cap = cap;
    cl->used = live;
    return 0;
}

static struct client_ent *
find_or_add(struct clients *cl, const uint64_t key[2], uint32_t now_s)
{
    struct client_ent *e = find(cl, key);
    if (e)
        return e;
    if (reserve(cl, now_s) < 0)
        return NULL;
    struct client_ent fresh;
    memset(&fresh, 0, sizeof(fresh));
    fresh.key[0] = key[0];
    fresh.key[1] = key[1];
    place(cl->t, cl->cap, &fresh);
    cl->used++;
    return find(cl, key);
}

/* Remove e, shifting back the entries of its probe run that belong before the hole. */
static void
erase(struct clients *cl, struct client_ent *e)
{
    uint32_t mask = cl->cap - 1;
    uint32_t hole = (uint32_t)(e - cl->t);
    uint32_t i = hole;
    for (;;) {
        i = (i + 1) & mask;
        struct client_ent *n = &cl->t[i];
        if (is_free(n))
            break;
        uint32_t home = key_hash(n->key) & mask;
        /* n may move to the hole when its home is not within (hole, i]. */
        bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (stays)
            continue;
        cl->t[hole] = *n;
        hole = i;
    }
    memset(&cl->t[hole], 0xff, sizeof(cl->t[hole]));
    cl->used--;
}

uint32_t
clients_get(const struct clients *cl, const union sockaddr_inx *a, enum client_count what)
{
    uint64_t key[2];
    addr_client_key(a, key);
    const struct client_ent *e = find(cl, key);
    return e ? e->n[what] : 0;
}

int
clients_inc(struct clients *cl, const union sockaddr_inx *a, enum client_count what, uint32_t now_s)
{
    uint64_t key[2];
    addr_client_key(a, key);
    struct client_ent *e = find_or_add(cl, key, now_s);
    if (!e || e->n[what] == UINT32_MAX)
        return -ENOMEM;
    return (int)++e->n[what];
}

void
clients_dec(struct clients *cl, const union sockaddr_inx *a, enum client_count what, uint32_t now_s)
{
    uint64_t key[2];
    addr_client_key(a, key);
    struct client_ent *e = find(cl, key);
    if (!e || e->n[what] == 0)
        return;
    e->n[what]--;
    if (is_empty(cl, e, now_s))
        erase(cl, e);
}

void
clients_fail(struct clients *cl, const union sockaddr_inx *a, uint32_t now_s)
{
    uint64_t key[2];
    addr_client_key(a, key);
    struct client_ent *e = find_or_add(cl, key, now_s);
    if (!e)
        return;
    if (!fails_live(cl, e, now_s)) {
        e->fails = 0;
        e->fail_since_s = now_s;
    }
    if (e->fails < UINT32_MAX)
        e->fails++;
}

uint32_t
clients_fails(const struct clients *cl, const union sockaddr_inx *a, uint32_t now_s)
{
    uint64_t key[2];
    addr_client_key(a, key);
    const struct client_ent *e = find(cl, key);
    return e && fails_live(cl, e, now_s) ? e->fails : 0;
}
