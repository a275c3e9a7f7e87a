/*
 * climap.c - client addresses' shared limit counters (climap.h) on
 * liburcu's lock-free RCU hash table.
 */
#include "climap.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

struct cnode {
    struct lim_node n; /* first: the pointer shards keep is this */
    uint64_t key[2];
    struct cds_lfht_node node;
    struct cnode *next_free; /* sweep: unlinked, freed after the grace period */
};

struct climap {
    struct cds_lfht *ht;
    uint8_t hkey[crypto_shorthash_KEYBYTES]; /* keyed: addresses cannot aim at one bucket */
};

/* A take that keeps meeting a dead node (being unlinked) gives up after this many looks. */
#define CLIMAP_RETRIES 64
/*
 * Buckets, fixed: an automatic resize runs on a worker thread liburcu starts, which leaves
 * SIGUSR1 unblocked, and the signal (the access log reopen, read through a signalfd) then
 * killed the process. 65,536 buckets keep chains short for tens of thousands of addresses.
 */
#define CLIMAP_BUCKETS (1ul << 16)

struct climap *
climap_new(void)
{
    struct climap *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    randombytes_buf(m->hkey, sizeof(m->hkey));
    m->ht = cds_lfht_new(CLIMAP_BUCKETS, CLIMAP_BUCKETS, CLIMAP_BUCKETS, 0, NULL);
    if (!m->ht) {
        free(m);
        return NULL;
    }
    return m;
}

/*
 * Walks of the table. Not cds_lfht_for_each_entry(): at the end it takes the
 * container of a NULL node, pointer arithmetic on NULL that UBSan stops on.
 */
static struct cnode *
entry(struct cds_lfht_iter *it)
{
    struct cds_lfht_node *nd = cds_lfht_iter_get_node(it);
    return nd ? caa_container_of(nd, struct cnode, node) : NULL;
}

static struct cnode *
first(struct climap *m, struct cds_lfht_iter *it)
{
    cds_lfht_first(m->ht, it);
    return entry(it);
}

static struct cnode *
next(struct climap *m, struct cds_lfht_iter *it)
{
    cds_lfht_next(m->ht, it);
    return entry(it);
}

void
climap_free(struct climap *m)
{
    if (!m)
        return;
    struct cds_lfht_iter it;
    rcu_register_thread();
    for (struct cnode *n = first(m, &it); n; n = next(m, &it)) {
        cds_lfht_del(m->ht, &n->node);
        free(n);
    }
    rcu_unregister_thread();
    cds_lfht_destroy(m->ht, NULL);
    free(m);
}

static unsigned long
hash_key(const struct climap *m, const uint64_t key[2])
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, (const uint8_t *)key, 2 * sizeof(uint64_t), m->hkey);
    unsigned long h;
    memcpy(&h, out, sizeof(h));
    return h;
}

static int
match(struct cds_lfht_node *node, const void *key)
{
    const struct cnode *n = caa_container_of(node, struct cnode, node);
    return memcmp(n->key, key, sizeof(n->key)) == 0;
}

struct lim_node *
climap_take(struct climap *m, const union sockaddr_inx *client, uint64_t max, bool *over)
{
    uint64_t key[2];
    addr_client_key(client, key);
    unsigned long h = hash_key(m, key);
    struct cnode *fresh = NULL;
    *over = false;
    for (unsigned i = 0; i < CLIMAP_RETRIES; i++) {
        struct cds_lfht_iter it;
        cds_lfht_lookup(m->ht, h, match, key, &it);
        struct cds_lfht_node *found = cds_lfht_iter_get_node(&it);
        if (!found) {
            if (!fresh) {
                fresh = aligned_alloc(64, (sizeof(*fresh) + 63) / 64 * 64);
                if (!fresh)
                    return NULL;
                memset(fresh, 0, sizeof(*fresh));
                memcpy(fresh->key, key, sizeof(key));
                cds_lfht_node_init(&fresh->node);
            }
            atomic_store_explicit(&fresh->n.open, 1, memory_order_relaxed);
            found = cds_lfht_add_unique(m->ht, h, match, key, &fresh->node);
            if (found == &fresh->node)
                return &fresh->n;
        }
        struct cnode *n = caa_container_of(found, struct cnode, node);
        if (lim_open_take(&n->n, max)) {
            free(fresh);
            return &n->n;
        }
        if (!(atomic_load_explicit(&n->n.open, memory_order_acquire) & LIM_DEAD)) {
            free(fresh);
            *over = true;
            lim_hit(&n->n, LIMH_CONNS);
            return NULL;
        }
        /* Dead: the sweep is unlinking it; look again. */
        caa_cpu_relax();
    }
    free(fresh);
    return NULL;
}

/* Nothing held, nothing remembered: the buckets are all in the past. */
static bool
idle(const struct lim_node *n, uint64_t now_ns)
{
    return atomic_load_explicit(&n->rate_tat, memory_order_relaxed) <= now_ns &&
           atomic_load_explicit(&n->bw_tat[0], memory_order_relaxed) <= now_ns &&
           atomic_load_explicit(&n->bw_tat[1], memory_order_relaxed) <= now_ns;
}

unsigned
climap_sweep(struct climap *m, uint64_t now_ns)
{
    struct cds_lfht_iter it;
    struct cnode *n, *dead = NULL;
    unsigned freed = 0;
    rcu_thread_online();
    for (n = first(m, &it); n; n = next(m, &it)) {
        uint64_t zero = 0;
        if (!idle(&n->n, now_ns) ||
            !atomic_compare_exchange_strong_explicit(&n->n.open, &zero, LIM_DEAD,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        if (cds_lfht_del(m->ht, &n->node) == 0) {
            n->next_free = dead;
            dead = n;
        }
    }
    rcu_thread_offline();
    if (!dead)
        return 0;
    synchronize_rcu();
    while (dead) {
        n = dead;
        dead = n->next_free;
        free(n);
        freed++;
    }
    return freed;
}
