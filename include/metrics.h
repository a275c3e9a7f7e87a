/*
 * metrics.h - Prometheus text exposition (format 0.0.4) of every shard's
 * counters, summed or per shard. Control thread only: it reads the shards'
 * counters with relaxed atomic loads (STAT_GET) and never writes them.
 */
#ifndef RINGSOCKS_METRICS_H
#define RINGSOCKS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct shard_stats;

/* What the metrics read of one shard: its counters and its open-connection count. */
struct metrics_shard {
    unsigned id;
    const struct shard_stats *st;
    const uint32_t *n_open;
};

/* Counters that belong to the control thread. */
struct ctl_stats {
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    double last_reload_ok_time; /* Unix time of the last good reload (or start) */
    int draining;               /* 1 while draining */
    uint64_t log_written, log_dropped;
    double start_time; /* Unix time the process started */
};

/*
 * Render every series into buf (cap bytes), like snprintf: returns the length
 * of the whole text, not counting the NUL. When that is < cap, buf holds all
 * of it, NUL-terminated; otherwise buf holds a truncated prefix and the caller
 * grows buf to at least the return value + 1 and calls again (counters move
 * in between, so loop). buf may be NULL with cap 0 to ask for the length.
 * shards is the array of n_shards shards; cs the control thread's counters.
 */
size_t metrics_render(char *buf, size_t cap, const struct metrics_shard *shards, unsigned n_shards,
                      const struct ctl_stats *cs);

#endif
