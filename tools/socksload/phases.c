/*
 * phases.c - latency by phase of a tunnel: one histogram per phase per worker (stats.c's
 * layout, 3 significant digits), merged by adding the buckets, printed as the report's
 * "phases" block and JSON object.
 *
 * A worker records into its own struct phases; main reads them only after the join, so the
 * stores need no ordering. Each phase counts from its own actual start: under connrate
 * --rate only the whole-tunnel latency is corrected for coordinated omission.
 */
#include "socksload.h"

#include <inttypes.h>

void
phases_record(struct phases *ph, enum phase p, uint64_t ns)
{
    stats_hist_add(ph->p[p].hist, &ph->p[p].max_ns, ns);
}

void
phases_sum(struct phases *dst, const struct phases *src)
{
    for (unsigned p = 0; p < PHASE_N; p++) {
        struct phase_hist *d = &dst->p[p];
        const struct phase_hist *s = &src->p[p];
        for (unsigned i = 0; i < STATS_HIST_N; i++)
            d->hist[i] += s->hist[i];
        if (s->max_ns > d->max_ns)
            d->max_ns = s->max_ns;
    }
}

const char *
phases_name(enum phase p)
{
    static const char *const names[PHASE_N] = {
        [PHASE_CONNECT] = "connect", [PHASE_GREETING] = "greeting",     [PHASE_AUTH] = "auth",
        [PHASE_REPLY] = "reply",     [PHASE_FIRST_BYTE] = "first_byte", [PHASE_CLOSE] = "close",
    };
    return names[p];
}

void
phases_print_table(FILE *f, const struct phases *ph)
{
    static const char *const what[PHASE_N] = {
        [PHASE_CONNECT] = "TCP connect to the proxy",
        [PHASE_GREETING] = "method request to reply",
        [PHASE_AUTH] = "RFC 1929 request to reply",
        [PHASE_REPLY] = "SOCKS request to reply",
        [PHASE_FIRST_BYTE] = "reply to the target's first byte",
        [PHASE_CLOSE] = "shutdown, or the response's end, to the peer's EOF",
    };
    char line[200];

    fprintf(f, "phases      (each from its own start)\n");
    for (unsigned p = 0; p < PHASE_N; p++) {
        stats_hist_line(line, sizeof(line), ph->p[p].hist, ph->p[p].max_ns);
        fprintf(f, "  %-10s %s (%s)\n", phases_name(p), line, what[p]);
    }
}

/* A percentile in microseconds, never above the exact max. */
static double
phase_us(const struct phase_hist *h, double q)
{
    uint64_t ns = q < 1 ? stats_percentile(h->hist, q) : h->max_ns;

    return (double)(ns < h->max_ns ? ns : h->max_ns) / 1e3;
}

void
phases_print_json(FILE *f, const struct phases *ph)
{
    fprintf(f, "\"phases\":{");
    for (unsigned p = 0; p < PHASE_N; p++) {
        const struct phase_hist *h = &ph->p[p];
        uint64_t n = stats_samples(h->hist);
        fprintf(f, "%s\"%s\":{\"samples\":%" PRIu64, p ? "," : "", phases_name(p), n);
        if (n)
            fprintf(f, ",\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}",
                    phase_us(h, 0.50), phase_us(h, 0.90), phase_us(h, 0.99), phase_us(h, 0.999),
                    phase_us(h, 1));
        else
            fprintf(f, ",\"p50\":null,\"p90\":null,\"p99\":null,\"p999\":null,\"max\":null}");
    }
    fputc('}', f);
}
