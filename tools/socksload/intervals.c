/*
 * intervals.c - the per-interval figures of --intervals FILE: one JSON object per line, the
 * difference of two cumulative snapshots of the workers' summed stats (counts subtract, and
 * so do the histograms' buckets), then a last line for the whole run marked "final":true.
 *
 * Pure: main's thread takes the snapshots and writes the lines; no worker ever does.
 */
#include "socksload.h"

#include <inttypes.h>
#include <math.h>

/* now - prev for a cumulative counter; prev NULL is zero. */
#define DIFF(field) (now->field - (prev ? prev->field : 0))

void
intervals_diff(struct interval *iv, const struct stats *now, const struct stats *prev,
               uint64_t *scratch)
{
    for (unsigned i = 0; i < STATS_HIST_N; i++)
        scratch[i] = now->hist[i] - (prev ? prev->hist[i] : 0);
    iv->units = DIFF(units);
    iv->bytes = DIFF(bytes_up) + DIFF(bytes_down);
    iv->failures = stats_errors(now) - (prev ? stats_errors(prev) : 0);
    iv->open = now->open;
    iv->started = DIFF(started);
    iv->samples = stats_samples(scratch);
    iv->max_ns = stats_hist_top(scratch);
    iv->p50_ns = stats_percentile(scratch, 0.50);
    iv->p90_ns = stats_percentile(scratch, 0.90);
    iv->p99_ns = stats_percentile(scratch, 0.99);
}

uint64_t
intervals_due(double rate, double elapsed, uint64_t count)
{
    if (!(elapsed > 0) || !(rate > 0))
        return 0;
    /* j / rate < elapsed for j = 0 .. ceil(elapsed * rate) - 1. */
    double n = ceil(elapsed * rate);
    uint64_t due = n >= 1.8e19 ? UINT64_MAX : (uint64_t)n;
    return count && due > count ? count : due;
}

/* A latency in microseconds, or null. */
static const char *
us(char *buf, size_t len, const struct interval *iv, uint64_t ns)
{
    if (iv->samples == 0)
        return "null";
    snprintf(buf, len, "%.1f", (double)(ns < iv->max_ns ? ns : iv->max_ns) / 1e3);
    return buf;
}

int
intervals_format(char *buf, size_t len, const struct interval *iv, bool final)
{
    char a[32], b[32], c[32], d[32], sched[80] = "";
    double secs = iv->secs > 0 ? iv->secs : 1e-9;

    if (iv->sched)
        snprintf(sched, sizeof(sched), ",\"due\":%" PRIu64 ",\"started\":%" PRIu64, iv->due,
                 iv->started);
    return snprintf(buf, len,
                    "{%s\"t\":%.3f,\"secs\":%.3f,\"units\":%" PRIu64 ",\"bytes\":%" PRIu64
                    ",\"rate\":%.1f,\"throughput\":%.1f,\"failures\":%" PRIu64 ",\"open\":%" PRIu64
                    ",\"samples\":%" PRIu64
                    ",\"p50_us\":%s,\"p90_us\":%s,\"p99_us\":%s,\"max_us\":%s%s}\n",
                    final ? "\"final\":true," : "", iv->t, iv->secs, iv->units, iv->bytes,
                    (double)iv->units / secs, (double)iv->bytes / secs, iv->failures, iv->open,
                    iv->samples, us(a, sizeof(a), iv, iv->p50_ns), us(b, sizeof(b), iv, iv->p90_ns),
                    us(c, sizeof(c), iv, iv->p99_ns), us(d, sizeof(d), iv, iv->max_ns), sched);
}
