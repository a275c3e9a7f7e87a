/*
 * stats.c - per-worker counters and a log-linear latency histogram.
 *
 * A struct stats is written only by its worker thread (relaxed atomic stores of a value it
 * alone changes) and read by the main thread with relaxed loads, so the progress line never
 * takes a lock and never stalls a worker. Percentiles are read from the histogram.
 */
#include "socksload.h"

#include <stdio.h>
#include <time.h>

void
stats_add(uint64_t *field, uint64_t v)
{
    /* Single writer: a load and a store are enough, and cheaper than an atomic add. */
    __atomic_store_n(field, __atomic_load_n(field, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/* The bucket of v: below STATS_HIST_SUB its own; above, the octave of its top bit m and the
 * next 10 bits. */
static unsigned
bucket(uint64_t v)
{
    if (v < STATS_HIST_SUB)
        return (unsigned)v;
    unsigned m = 63u - (unsigned)__builtin_clzll(v);
    if (m > STATS_HIST_TOP)
        return STATS_HIST_N - 1;
    return STATS_HIST_SUB + (m - 11) * STATS_HIST_HALF +
           (unsigned)((v >> (m - 10)) - STATS_HIST_HALF);
}

/* The middle of bucket i. */
static uint64_t
bucket_value(unsigned i)
{
    if (i < STATS_HIST_SUB)
        return i;
    unsigned j = i - STATS_HIST_SUB, shift = j / STATS_HIST_HALF + 1;
    uint64_t lo = (uint64_t)(STATS_HIST_HALF + j % STATS_HIST_HALF) << shift;
    return lo + (((uint64_t)1 << shift) - 1) / 2;
}

void
stats_record_ns(struct stats *s, uint64_t ns)
{
    stats_add(&s->hist[bucket(ns)], 1);
    if (ns > s->max_ns)
        __atomic_store_n(&s->max_ns, ns, __ATOMIC_RELAXED);
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
    uint64_t max = dst->max_ns, src_max = __atomic_load_n(&src->max_ns, __ATOMIC_RELAXED);

    for (size_t i = 0; i < sizeof(*src) / sizeof(uint64_t); i++)
        b[i] += __atomic_load_n(&a[i], __ATOMIC_RELAXED);
    dst->max_ns = src_max > max ? src_max : max;
}

uint64_t
stats_samples(const uint64_t *hist)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < STATS_HIST_N; i++)
        n += hist[i];
    return n;
}

uint64_t
stats_percentile(const uint64_t *hist, double q)
{
    uint64_t total = stats_samples(hist), seen = 0;

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
stats_max(const struct stats *s)
{
    return s->max_ns;
}

void
stats_fmt_ns(char *buf, size_t len, uint64_t ns)
{
    if (ns < 10000)
        snprintf(buf, len, "%.1fus", (double)ns / 1e3);
    else if (ns < 10000000)
        snprintf(buf, len, "%.0fus", (double)ns / 1e3);
    else if (ns < 1000000000u)
        snprintf(buf, len, "%.1fms", (double)ns / 1e6);
    else
        snprintf(buf, len, "%.2fs", (double)ns / 1e9);
}

void
stats_latency_line(char *buf, size_t len, const struct stats *s)
{
    static const double qs[] = {0.50, 0.90, 0.99, 0.999};
    static const char *const names[] = {"p50", "p90", "p99", "p99.9"};
    char v[32];
    size_t off = 0;

    if (stats_samples(s->hist) == 0) {
        snprintf(buf, len, "no samples");
        return;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t ns = stats_percentile(s->hist, qs[i]);
        stats_fmt_ns(v, sizeof(v), ns < s->max_ns ? ns : s->max_ns);
        off += (size_t)snprintf(buf + off, len - off, "%s %s, ", names[i], v);
        if (off >= len)
            return; /* truncated, as snprintf does */
    }
    stats_fmt_ns(v, sizeof(v), s->max_ns);
    snprintf(buf + off, len - off, "max %s", v);
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
