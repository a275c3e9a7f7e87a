/*
 * watchdog.c - the shard loop's stall bookkeeping (watchdog.h).
 */
#include "watchdog.h"

#include <stdatomic.h>
#include <time.h>

uint64_t
watchdog_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
watchdog_begin(_Atomic uint64_t *busy_since, uint64_t now_ms)
{
    atomic_store_explicit(busy_since, now_ms, memory_order_relaxed);
}

bool
watchdog_end(_Atomic uint64_t *busy_since, uint64_t start_ms, uint64_t now_ms, uint64_t *max_ms)
{
    uint64_t took = now_ms > start_ms ? now_ms - start_ms : 0;
    if (took > *max_ms)
        __atomic_store_n(max_ms, took, __ATOMIC_RELAXED);
    if (took <= WATCHDOG_STALL_MS) {
        /* The common case: a plain store. The control thread may have claimed an
         * episode the shard's clock calls short (two coarse readings): it counted it. */
        atomic_store_explicit(busy_since, 0, memory_order_relaxed);
        return false;
    }
    /* Long: whoever tags or clears the value first counts it. */
    uint64_t was = atomic_exchange_explicit(busy_since, 0, memory_order_relaxed);
    return !(was & WATCHDOG_CLAIMED);
}

bool
watchdog_check(_Atomic uint64_t *busy_since, uint64_t now_ms)
{
    uint64_t since = atomic_load_explicit(busy_since, memory_order_relaxed);
    if (since == 0 || (since & WATCHDOG_CLAIMED) || now_ms <= since ||
        now_ms - since <= WATCHDOG_STALL_MS)
        return false;
    return atomic_compare_exchange_strong_explicit(busy_since, &since, since | WATCHDOG_CLAIMED,
                                                   memory_order_relaxed, memory_order_relaxed);
}
