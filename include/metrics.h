/*
 * metrics.h - Prometheus text exposition (format 0.0.4) of every shard's
 * counters, summed or per shard. Control thread only: it reads the shards'
 * counters with relaxed atomic loads (STAT_GET) and never writes them.
 */
#ifndef RINGSOCKS_METRICS_H
#define RINGSOCKS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gssw.h"
#include "lim.h"

struct shard_stats;

/* What the metrics read of one shard: its counters, its open-connection count and its
 * GSS-API worker's counters (gssw_stats_read(), taken by the caller). */
struct metrics_shard {
    unsigned id;
    const struct shard_stats *st;
    const uint32_t *n_open;
    struct gssw_stats gss;    /* a copy: zero when the caller leaves it out */
    uint64_t watchdog_stalls; /* stalls the control thread counted (watchdog.h) */
    double cpu_wait_s;        /* the thread's time runnable but not running; < 0: unknown */
    int64_t bufs_resident;    /* relay_bufs_resident(); < 0: unknown */
};

/* Prometheus' standard process collector (process_*), read from /proc/self. */
struct metrics_process {
    bool ok; /* read: else the process_* series are left out */
    uint64_t open_fds, max_fds;
    uint64_t rss_bytes, vsize_bytes;
    double cpu_s;        /* user + system */
    double start_time_s; /* Unix time */
    uint64_t pid;        /* after a binary upgrade: which process answers */
};

/*
 * Control thread (file I/O: never a shard): fill p from /proc/self/stat,
 * /proc/stat (boot time), /proc/self/fd and RLIMIT_NOFILE. 0, or -errno
 * with p->ok false.
 */
int metrics_process_read(struct metrics_process *p);

/* Counters that belong to the control thread. */
struct ctl_stats {
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    double last_reload_ok_time; /* Unix time of the last good reload (or start) */
    double last_reload_time;    /* Unix time of the last reload attempt (or start) */
    int last_reload_ok;         /* 1: the last reload (or the start) succeeded, 0: it failed */
    uint64_t max_conns;         /* the connection limit in force, all shards together */
    struct metrics_process proc;
    int draining; /* 1 while draining */
    uint64_t log_written, log_dropped;
    double start_time; /* Unix time the process started */
    /* A fleet's Redis (fleet.h): has_redis 0 renders none of its series. */
    int has_redis, redis_up;
    uint64_t redis_errors, redis_lease_rounds, redis_lease_fallbacks, redis_quota_syncs,
        redis_users_loads;
    uint64_t upgrades_ok, upgrades_failed; /* binary upgrades started here (ctl.h, the upgrade) */
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

/*
 * One user's series (acctctl.h chooses who gets a label of their own): its
 * counters since start, or the sum of every user without a label (name
 * NULL, rendered as user="other").
 */
struct metrics_user {
    const char *name;
    uint64_t bytes[2]; /* [0] up, [1] down */
    uint64_t opened, open, hits[LIMH__COUNT];
    uint64_t quota_used; /* bytes of the current quota period */
};

/*
 * Render the per-user families into buf like metrics_render(): returns the
 * whole length; n 0 renders nothing. Label values are escaped as the text
 * format requires ('"' and newline backslash-escaped) and kept to printable
 * text one-to-one: '\', bytes < 0x20, 0x7f and bytes of invalid UTF-8 are
 * written as the four characters \xNN of the label's value.
 */
size_t metrics_render_users(char *buf, size_t cap, const struct metrics_user *u, size_t n);

#endif
