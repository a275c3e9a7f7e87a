/*
 * udq.h - a growable FIFO of 64-bit values: connection references
 * (ud_make(tag, slot, gen)) waiting for a shard resource (a provided buffer,
 * a handshake context), or accepted fds waiting for room under max_conns.
 * References go stale when their connection closes; the consumer checks slot
 * and generation as it pops. Shard thread only.
 */
#ifndef RINGSOCKS_UDQ_H
#define RINGSOCKS_UDQ_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct udq {
    uint64_t *e;
    uint32_t head, len, cap;
};

/* Append v; -ENOMEM when the queue cannot grow (it is left as it was). */
static inline int
udq_push(struct udq *q, uint64_t v)
{
    if (q->len == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 64;
        uint64_t *n = malloc((size_t)cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        for (uint32_t i = 0; i < q->len; i++)
            n[i] = q->e[(q->head + i) % q->cap];
        free(q->e);
        q->e = n;
        q->cap = cap;
        q->head = 0;
    }
    q->e[(q->head + q->len) % q->cap] = v;
    q->len++;
    return 0;
}

/* Take the oldest entry into *v; false when empty. */
static inline bool
udq_pop(struct udq *q, uint64_t *v)
{
    if (!q->len)
        return false;
    *v = q->e[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return true;
}

static inline void
udq_free(struct udq *q)
{
    free(q->e);
    q->e = NULL;
    q->head = q->len = q->cap = 0;
}

#endif
