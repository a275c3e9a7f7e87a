/*
 * sources.c - the source addresses the target saw: a set of distinct (address, session key)
 * pairs, and the summary the report prints (distinct addresses; per session key, how many
 * addresses).
 *
 * Pure and single-threaded: the target serialises its calls (target.c, under its mutex).
 * Bounded: at most SOURCES_MAX pairs; later new pairs are only counted (dropped), and the
 * summary's figures then are lower bounds. Must never allocate past that bound.
 */
#include "socksload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SOURCES_CAP0 1024 /* first table size; doubles at half load */

struct sources_entry {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    uint32_t key;
    uint8_t used;
    uint8_t has_key;
};

static uint64_t
mix(const uint8_t *addr, uint32_t key, bool has_key)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ key ^ ((uint64_t)has_key << 32);

    for (int i = 0; i < 16; i += 8) {
        uint64_t v;
        memcpy(&v, addr + i, 8);
        h ^= v;
        h *= 0xbf58476d1ce4e5b9ull; /* splitmix64's finaliser constants */
        h ^= h >> 31;
    }
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

/* The slot of (addr, key), or the empty slot where it belongs. */
static struct sources_entry *
find(struct sources_entry *tab, size_t cap, const uint8_t *addr, uint32_t key, bool has_key)
{
    size_t i = (size_t)mix(addr, key, has_key) & (cap - 1);

    for (;;) {
        struct sources_entry *e = &tab[i];
        if (!e->used || (e->key == key && e->has_key == has_key && !memcmp(e->addr, addr, 16)))
            return e;
        i = (i + 1) & (cap - 1);
    }
}

static int
grow(struct sources *s)
{
    size_t cap = s->cap ? s->cap * 2 : SOURCES_CAP0;
    struct sources_entry *tab = calloc(cap, sizeof(*tab));

    if (!tab)
        return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->tab[i].used)
            *find(tab, cap, s->tab[i].addr, s->tab[i].key, s->tab[i].has_key) = s->tab[i];
    free(s->tab);
    s->tab = tab;
    s->cap = cap;
    return 0;
}

int
sources_add(struct sources *s, const struct sockaddr *sa, bool has_key, uint32_t key)
{
    uint8_t addr[16] = {0};

    if (sa->sa_family == AF_INET) {
        addr[10] = addr[11] = 0xff;
        memcpy(addr + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return -EAFNOSUPPORT;
    }
    if (!has_key)
        key = 0;
    s->seen++;
    if (s->cap) {
        struct sources_entry *e = find(s->tab, s->cap, addr, key, has_key);
        if (e->used)
            return 0;
    }
    if (s->n >= SOURCES_MAX) {
        s->dropped++;
        return -ENOSPC;
    }
    if ((s->n + 1) * 2 > s->cap && grow(s) < 0) {
        s->dropped++;
        return -ENOMEM;
    }
    struct sources_entry *e = find(s->tab, s->cap, addr, key, has_key);
    memcpy(e->addr, addr, 16);
    e->key = key;
    e->has_key = has_key;
    e->used = 1;
    s->n++;
    return 1;
}

static int
by_addr(const void *a, const void *b)
{
    return memcmp(((const struct sources_entry *)a)->addr, ((const struct sources_entry *)b)->addr,
                  16);
}

static int
by_key(const void *a, const void *b)
{
    const struct sources_entry *x = a, *y = b;

    if (x->has_key != y->has_key)
        return x->has_key < y->has_key ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

int
sources_summarize(const struct sources *s, struct sources_summary *out)
{
    struct sources_entry *v = NULL;
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    out->seen = s->seen;
    out->pairs = s->n;
    out->dropped = s->dropped;
    if (s->n == 0)
        return 0;
    v = malloc(s->n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->tab[i].used)
            v[n++] = s->tab[i];
    qsort(v, n, sizeof(*v), by_addr);
    for (size_t i = 0; i < n; i++)
        out->addresses += i == 0 || memcmp(v[i].addr, v[i - 1].addr, 16) != 0;
    /* Per session key: its pairs are adjacent; each is one distinct address of the key. */
    qsort(v, n, sizeof(*v), by_key);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && by_key(&v[i], &v[j]) == 0; j++)
            ;
        if (!v[i].has_key)
            continue;
        uint64_t k = j - i;
        out->sessions++;
        out->sessions_one += k == 1;
        if (k > out->max_per_session)
            out->max_per_session = k;
    }
    free(v);
    return 0;
}

void
sources_free(struct sources *s)
{
    free(s->tab);
    memset(s, 0, sizeof(*s));
}
