/*
 * acct.c - the registry of users' running state (acct.h). Control thread
 * only: an array of entries in creation order and an open-addressing index
 * by name over it.
 */
#include "acct.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct acct_reg {
    struct uacct **e;
    size_t n, cap;
    uint32_t *idx; /* entry number + 1, 0: empty; size a power of two, at most half full */
    size_t slots;
};

/* FNV-1a: names come from the operator's users file, not from clients. */
static uint64_t
name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

struct acct_reg *
acct_reg_new(void)
{
    return calloc(1, sizeof(struct acct_reg));
}

void
acct_reg_free(struct acct_reg *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i]->name);
        free(r->e[i]);
    }
    free(r->e);
    free(r->idx);
    free(r);
}

static size_t
slot_of(const struct acct_reg *r, const char *name)
{
    size_t mask = r->slots - 1, i = (size_t)name_hash(name) & mask;
    while (r->idx[i] && strcmp(r->e[r->idx[i] - 1]->name, name) != 0)
        i = (i + 1) & mask;
    return i;
}

struct uacct *
acct_find(const struct acct_reg *r, const char *name)
{
    if (!r->slots)
        return NULL;
    uint32_t k = r->idx[slot_of(r, name)];
    return k ? r->e[k - 1] : NULL;
}

static int
grow_index(struct acct_reg *r)
{
    size_t slots = r->slots ? r->slots * 2 : 64;
    uint32_t *idx = calloc(slots, sizeof(*idx));
    if (!idx)
        return -1;
    free(r->idx);
    r->idx = idx;
    r->slots = slots;
    for (size_t i = 0; i < r->n; i++)
        r->idx[slot_of(r, r->e[i]->name)] = (uint32_t)(i + 1);
    return 0;
}

struct uacct *
acct_get(struct acct_reg *r, const char *name)
{
    struct uacct *a = acct_find(r, name);
    if (a)
        return a;
    if ((r->n + 1) * 2 > r->slots && grow_index(r) < 0)
        return NULL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct uacct **e = realloc(r->e, cap * sizeof(*e));
        if (!e)
            return NULL;
        r->e = e;
        r->cap = cap;
    }
    a = aligned_alloc(64, (sizeof(*a) + 63) / 64 * 64);
    if (!a)
        return NULL;
    memset(a, 0, sizeof(*a));
    a->name = strdup(name);
    if (!a->name) {
        free(a);
        return NULL;
    }
    r->e[r->n++] = a;
    r->idx[slot_of(r, name)] = (uint32_t)r->n;
    return a;
}

size_t
acct_count(const struct acct_reg *r)
{
    return r->n;
}

struct uacct *
acct_at(const struct acct_reg *r, size_t i)
{
    return i < r->n ? r->e[i] : NULL;
}

void
lease_ask(struct lease_board *b, struct uacct *a, unsigned what)
{
    /* What is wanted first: the control thread reads it after taking a off the stack. */
    if (what & LEASE_ASK_CONNS)
        atomic_store_explicit(&a->want_conns, true, memory_order_release);
    if (what & LEASE_ASK_RATE)
        atomic_store_explicit(&a->want_rate, true, memory_order_release);
    if (atomic_exchange_explicit(&a->lease_ask, true, memory_order_acq_rel))
        return; /* on the stack already, and not yet taken */
    struct uacct *head = atomic_load_explicit(&b->asks, memory_order_relaxed);
    do
        atomic_store_explicit(&a->ask_next, head, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&b->asks, &head, a, memory_order_release,
                                                  memory_order_relaxed));
    /* The first ask on an empty stack wakes the control thread; the others find it awake. */
    if (!head && b->wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(b->wake_fd, &one, sizeof(one));
        (void)n; /* EAGAIN: the counter is full, so the control thread is being woken anyway */
    }
}

size_t
lease_asks_take(struct lease_board *b, void (*fn)(void *arg, struct uacct *a), void *arg)
{
    size_t n = 0;
    struct uacct *a = atomic_exchange_explicit(&b->asks, NULL, memory_order_acquire);
    while (a) {
        /* Read the link before the flag lets a shard push a (and rewrite it) again. */
        struct uacct *next = atomic_load_explicit(&a->ask_next, memory_order_relaxed);
        atomic_store_explicit(&a->lease_ask, false, memory_order_release);
        fn(arg, a);
        n++;
        a = next;
    }
    return n;
}
