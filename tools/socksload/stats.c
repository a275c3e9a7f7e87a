/*
 * stats.c - per-worker counters and a log-linear latency histogram.
 *
 * A struct stats is written only by its worker thread (relaxed atomic stores of a value it
 * alone changes) and read by the main thread with relaxed loads, so the progress line never
 * takes a lock and never stalls a worker. Percentiles are read from the histogram.
 */
#include "socksload.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
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
stats_hist_add(uint64_t *hist, uint64_t *max, uint64_t ns)
{
    stats_add(&hist[bucket(ns)], 1);
    if (ns > *max)
        __atomic_store_n(max, ns, __ATOMIC_RELAXED);
}

void
stats_record_ns(struct stats *s, uint64_t ns)
{
    stats_hist_add(s->hist, &s->max_ns, ns);
}

uint64_t
stats_hist_top(const uint64_t *hist)
{
    for (unsigned i = STATS_HIST_N; i-- > 0;)
        if (hist[i])
            return bucket_value(i);
    return 0;
}

void
stats_error(struct stats *s, enum stats_err e)
{
    stats_fail(s, e, 0);
}

/* Adds n failures of (kind, detail) to dst's table, or to fail_more when it is full. */
static void
fail_add(struct stats *dst, uint64_t kind, uint64_t detail, uint64_t n)
{
    for (unsigned i = 0; i < STATS_FAIL_N; i++) {
        struct stats_fail *f = &dst->fail[i];
        uint64_t c = __atomic_load_n(&f->count, __ATOMIC_RELAXED);
        if (c == 0) {
            f->kind = kind;
            f->detail = detail;
            __atomic_store_n(&f->count, n, __ATOMIC_RELEASE);
            return;
        }
        if (f->kind == kind && f->detail == detail) {
            __atomic_store_n(&f->count, c + n, __ATOMIC_RELAXED);
            return;
        }
    }
    stats_add(&dst->fail_more, n);
}

void
stats_fail(struct stats *s, enum stats_err e, uint64_t detail)
{
    stats_add(&s->err[e], 1);
    fail_add(s, (uint64_t)e, detail, 1);
}

void
stats_sum(struct stats *dst, const struct stats *src)
{
    const uint64_t *a = (const uint64_t *)src;
    uint64_t *b = (uint64_t *)dst;
    uint64_t max = dst->max_ns, src_max = __atomic_load_n(&src->max_ns, __ATOMIC_RELAXED);

    for (size_t i = 0; i < offsetof(struct stats, fail) / sizeof(uint64_t); i++)
        b[i] += __atomic_load_n(&a[i], __ATOMIC_RELAXED);
    dst->max_ns = src_max > max ? src_max : max;
    for (unsigned i = 0; i < STATS_FAIL_N; i++) {
        uint64_t n = __atomic_load_n(&src->fail[i].count, __ATOMIC_ACQUIRE);
        if (n == 0)
            break; /* slots fill in order */
        fail_add(dst, src->fail[i].kind, src->fail[i].detail, n);
    }
}

unsigned
stats_fail_pairs(const struct stats *s, const struct stats_fail **only)
{
    unsigned n = 0;

    while (n < STATS_FAIL_N && s->fail[n].count)
        n++;
    *only = n == 1 && s->fail_more == 0 && s->fail[0].count == stats_errors(s) ? &s->fail[0] : NULL;
    return n;
}

/* RFC 1928 section 6. */
static const char *
reply5_str(unsigned code)
{
    static const char *const names[] = {
        "succeeded",
        "general SOCKS server failure",
        "not allowed by ruleset",
        "network unreachable",
        "host unreachable",
        "connection refused",
        "TTL expired",
        "command not supported",
        "address type not supported",
    };
    return code < sizeof(names) / sizeof(names[0]) ? names[code] : "unassigned";
}

/* SOCKS4 (and 4a): 90 granted, 91..93 refusals. */
static const char *
reply4_str(unsigned code)
{
    switch (code) {
    case 0x5a:
        return "granted";
    case 0x5b:
        return "rejected or failed";
    case 0x5c:
        return "rejected: cannot connect to identd on the client";
    case 0x5d:
        return "rejected: identd reports a different user-id";
    default:
        return "unassigned";
    }
}

/* A size of STATS_E_HTTP_SIZE's detail: "+" when it was larger than the field holds. */
static void
size_str(char *buf, size_t len, uint64_t v)
{
    snprintf(buf, len, "%" PRIu64 "%s", v, v == STATS_D_SIZE_MAX ? "+" : "");
}

void
stats_fail_str(char *buf, size_t len, enum stats_err e, uint64_t detail, bool socks4)
{
    const char *kind = stats_err_str(e);
    unsigned d = (unsigned)detail;
    char got[32], exp[32];

    switch (e) {
    case STATS_E_REPLY:
        if (socks4)
            snprintf(buf, len, "SOCKS4 reply 0x%02x %s", d & 0xff, reply4_str(d & 0xff));
        else
            snprintf(buf, len, "SOCKS reply 0x%02x %s", d & 0xff, reply5_str(d & 0xff));
        return;
    case STATS_E_AUTH:
        if (d == STATS_D_METHOD + 0xff)
            snprintf(buf, len, "no acceptable method (05 ff)");
        else if (d >= STATS_D_METHOD)
            snprintf(buf, len, "method 0x%02x chosen, not offered (05 %02x)", d - STATS_D_METHOD,
                     d - STATS_D_METHOD);
        else
            snprintf(buf, len, "RFC 1929 auth failed (status 0x%02x)", d & 0xff);
        return;
    case STATS_E_HTTP_STATUS:
        snprintf(buf, len, "HTTP status %u", d);
        return;
    case STATS_E_HTTP_SIZE:
        size_str(got, sizeof(got), detail >> 32);
        size_str(exp, sizeof(exp), detail & STATS_D_SIZE_MAX);
        snprintf(buf, len, "HTTP body %s bytes, expected %s", got, exp);
        return;
    case STATS_E_HTTP_MALFORMED:
        snprintf(buf, len, "HTTP malformed response: %s", http_err_str((enum http_err)d));
        return;
    case STATS_E_NO_EOF:
        snprintf(buf, len, "no EOF from the target through the proxy");
        return;
    case STATS_E_MISMATCH:
    case STATS_E_PROTOCOL:
    case STATS_E_LOST:
        snprintf(buf, len, "%s", kind);
        return;
    default:
        break;
    }
    if (d == 0) {
        snprintf(buf, len, "%s", e == STATS_E_CLOSED ? "closed: EOF" : kind);
        return;
    }
    const char *name = strerrorname_np((int)detail);
    char text[128];
    /* GNU strerror_r: thread-safe, returns the text (maybe not in text). */
    const char *t = strerror_r((int)detail, text, sizeof(text));
    snprintf(buf, len, "%s: %s (%s)", kind, name ? name : "E?", t);
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
    stats_hist_line(buf, len, s->hist, s->max_ns);
}

void
stats_hist_line(char *buf, size_t len, const uint64_t *hist, uint64_t max)
{
    static const double qs[] = {0.50, 0.90, 0.99, 0.999};
    static const char *const names[] = {"p50", "p90", "p99", "p99.9"};
    char v[32];
    size_t off = 0;

    if (stats_samples(hist) == 0) {
        snprintf(buf, len, "no samples");
        return;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t ns = stats_percentile(hist, qs[i]);
        stats_fmt_ns(v, sizeof(v), ns < max ? ns : max);
        off += (size_t)snprintf(buf + off, len - off, "%s %s, ", names[i], v);
        if (off >= len)
            return; /* truncated, as snprintf does */
    }
    stats_fmt_ns(v, sizeof(v), max);
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
        [STATS_E_CONNECT] = "connect",
        [STATS_E_REPLY] = "socks_reply",
        [STATS_E_AUTH] = "auth",
        [STATS_E_RESET] = "reset",
        [STATS_E_TIMEOUT] = "timeout",
        [STATS_E_MISMATCH] = "data_mismatch",
        [STATS_E_CLOSED] = "closed",
        [STATS_E_PROTOCOL] = "protocol",
        [STATS_E_LOST] = "udp_lost",
        [STATS_E_OTHER] = "other",
        [STATS_E_HTTP_STATUS] = "http_status",
        [STATS_E_HTTP_SIZE] = "http_size",
        [STATS_E_HTTP_MALFORMED] = "http_malformed",
        [STATS_E_NO_EOF] = "no_eof",
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
