/*
 * stats.c - per-worker counters and a log-linear latency histogram.
 *
 * A struct stats is written only by its worker thread (relaxed atomic stores of a value it
 * alone changes) and read by the main thread with relaxed loads, so the progress line never
 * takes a lock and never stalls a worker. Percentiles are read from the histogram.
 */
#include "socksload.h"

#include <time.h>

void
stats_add(uint64_t *field, uint64_t v)
{
    /* Single writer: a load and a store are enough, and cheaper than an atomic add. */
    __atomic_store_n(field, __atomic_load_n(field, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/* 32 sub-buckets per power of two: about 3 % resolution. */
static unsigned
bucket(uint64_t v)
{
    if (v < STATS_HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    return (msb - 4) * STATS_HIST_SUB + (unsigned)((v >> (msb - 5)) & (STATS_HIST_SUB - 1));
}

/* The middle of bucket i. */
static uint64_t
bucket_value(unsigned i)
{
    if (i < STATS_HIST_SUB)
        return i;
    unsigned msb = i / STATS_HIST_SUB + 4, sub = i % STATS_HIST_SUB;
    uint64_t lo = ((uint64_t)(STATS_HIST_SUB + sub)) << (msb - 5);
    return lo + ((uint64_t)1 << (msb - 5)) / 2;
}

void
stats_record_ns(struct stats *s, uint64_t ns)
{
    stats_add(&s->hist[bucket(ns)], 1);
}

void
stats_error(struct stats *s, enum stats_err e)
{
    stats_add(&s->err[e], 1);
}

void
stats_sum(struct stats *dst, const struct stats *src)
{
    const uint64_t *a = (const uint64_t *)src;
    uint64_t *b = (uint64_t *)dst;

    for (size_t i = 0; i < sizeof(*src) / sizeof(uint64_t); i++)
        b[i] += __atomic_load_n(&a[i], __ATOMIC_RELAXED);
}

uint64_t
stats_percentile(const uint64_t *hist, double q)
{
    uint64_t total = 0, seen = 0;

    for (unsigned i = 0; i < STATS_HIST_N; i++)
        total += hist[i];
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total)
        rank = total - 1;
    for (unsigned i = 0; i < STATS_HIST_N; i++) {
        seen += hist[i];
        if (seen > rank)
            return bucket_value(i);
    }
    return 0;
}

uint64_t
stats_max(const uint64_t *hist)
{
    for (unsigned i = STATS_HIST_N; i-- > 0;)
        if (hist[i])
            return bucket_value(i);
    return 0;
}

uint64_t
stats_errors(const struct stats *s)
{
    uint64_t n = 0;

    for (int i = 0; i < STATS_E_N; i++)
        n += s->err[i];
    return n;
}

const char *
stats_err_str(enum stats_err e)
{
    static const char *const names[STATS_E_N] = {
        [STATS_E_CONNECT] = "connect", [STATS_E_REPLY] = "socks_reply",
        [STATS_E_AUTH] = "auth",       [STATS_E_RESET] = "reset",
        [STATS_E_TIMEOUT] = "timeout", [STATS_E_MISMATCH] = "data_mismatch",
        [STATS_E_CLOSED] = "closed",   [STATS_E_PROTOCOL] = "protocol",
        [STATS_E_LOST] = "udp_lost",   [STATS_E_OTHER] = "other",
    };
    return names[e];
}

uint64_t
stats_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
