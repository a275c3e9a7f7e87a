/*
 * metrics.c - Prometheus text exposition (format 0.0.4) of the shards'
 * counters and the control thread's own.
 *
 * Control thread only. It reads shard counters through STAT_GET (relaxed
 * atomic loads of single-writer fields) and must never write them, take a
 * lock a shard could wait on, or call shard functions. Series are summed
 * over shards unless the name says "shard". Values of one scrape are not a
 * consistent snapshot across fields (each load is independent), which
 * Prometheus tolerates; the histogram's +Inf bucket and _count are computed
 * from the same loads so they always agree.
 */
#include "metrics.h"
#include "version.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "conn_end.h"
#include "faultspec.h"
#include "lim.h"
#include "stats.h"

/* Index of struct shard_stats.replies' first dimension. */
static const char *const cmd_names[STAT_CMDS] = {"none", "connect", "bind", "udp"};

/* SOCKS5 reply codes, RFC 1928 section 6; the last: ended with no reply. */
static const char *const rep_names[STAT_REPS] = {
    "succeeded",
    "general_failure",
    "not_allowed",
    "network_unreachable",
    "host_unreachable",
    "connection_refused",
    "ttl_expired",
    "command_not_supported",
    "address_type_not_supported",
    "none",
};

/*
 * A writer that formats into buf while it fits and keeps counting past the
 * end, so one pass yields both the text and the length it needs.
 */
struct mwriter {
    char *buf;
    size_t cap;
    size_t len;
};

static void mw_printf(struct mwriter *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mw_printf(struct mwriter *w, const char *fmt, ...)
{
    size_t room = w->len < w->cap ? w->cap - w->len : 0;
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(room ? w->buf + w->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        w->len += (size_t)n;
}

static void
mw_family(struct mwriter *w, const char *name, const char *type, const char *help)
{
    mw_printf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family with one unlabelled sample. */
static void
mw_u64(struct mwriter *w, const char *name, const char *type, const char *help, uint64_t v)
{
    mw_family(w, name, type, help);
    mw_printf(w, "%s %" PRIu64 "\n", name, v);
}

/* Microseconds as seconds, exactly (no binary floating point on the way). */
static void
mw_us_as_s(struct mwriter *w, uint64_t us)
{
    mw_printf(w, "%" PRIu64 ".%06" PRIu64, us / 1000000u, us % 1000000u);
}

/* Sum one uint64_t counter, named by its path inside struct shard_stats, over every shard. */
#define SUM_STAT(shards, n, field)                    \
    ({                                                \
        uint64_t sum_ = 0;                            \
        for (unsigned i_ = 0; i_ < (n); i_++)         \
            sum_ += STAT_GET((shards)[i_].st->field); \
        sum_;                                         \
    })

static void
render_connections(struct mwriter *w, const struct metrics_shard *sh, unsigned n,
                   uint64_t max_conns)
{
    mw_u64(w, "ringsocks_connections_accepted_total", "counter", "Client connections accepted.",
           SUM_STAT(sh, n, accepted));
    mw_u64(w, "ringsocks_connections_dropped_total", "counter",
           "Client connections closed at once on accept: no free slot.",
           SUM_STAT(sh, n, accept_dropped));
    mw_u64(w, "ringsocks_accept_pauses_total", "counter",
           "Times accepting paused on EMFILE, ENFILE or ENOMEM.", SUM_STAT(sh, n, accept_pauses));

    uint64_t open = 0;
    for (unsigned i = 0; i < n; i++)
        open += STAT_GET(*sh[i].n_open);
    mw_u64(w, "ringsocks_connections_open", "gauge",
           "Client connections holding a slot now, in any state.", open);
    mw_family(w, "ringsocks_max_conns_headroom", "gauge",
              "Connections that may still be accepted: max_conns minus those open now.");
    mw_printf(w, "ringsocks_max_conns_headroom %" PRId64 "\n", (int64_t)max_conns - (int64_t)open);

    mw_family(w, "ringsocks_connections_ended_total", "counter",
              "Client connections ended, by the reason they ended.");
    for (int r = 0; r < END__COUNT; r++)
        mw_printf(w, "ringsocks_connections_ended_total{reason=\"%s\"} %" PRIu64 "\n",
                  conn_end_str((enum conn_end)r), SUM_STAT(sh, n, ended[r]));
}

/* Faults committed on purpose (fault.h), by fault; asks by user name a rule did not allow. */
_Static_assert(STAT_FAULT_KINDS == FAULT__COUNT, "one counter per fault");

static void
render_faults(struct mwriter *w, const struct metrics_shard *sh, unsigned n)
{
    mw_family(w, "ringsocks_faults_total", "counter",
              "Faults committed on purpose (rule keys fault, fault_allow), by fault.");
    for (int k = 0; k < FAULT__COUNT; k++)
        mw_printf(w, "ringsocks_faults_total{fault=\"%s\"} %" PRIu64 "\n",
                  fault_name((enum fault_kind)k), SUM_STAT(sh, n, faults[k]));
    mw_u64(w, "ringsocks_fault_asks_refused_total", "counter",
           "Faults a user name asked for (-fault-) that the admitting rule did not allow.",
           SUM_STAT(sh, n, fault_asks_refused));
}

/* Requests refused by the limits of lim.h, by which limit; reads that waited for bandwidth. */
_Static_assert(sizeof(((struct shard_stats *)0)->limit_refused) / sizeof(uint64_t) == LIMH__COUNT,
               "one refusal counter per limit");

static void
render_limits(struct mwriter *w, const struct metrics_shard *sh, unsigned n)
{
    mw_family(w, "ringsocks_limit_refusals_total", "counter",
              "Requests refused (0x02) by a user's or client address's limit, by limit.");
    for (int h = 0; h < LIMH_BW; h++)
        mw_printf(w, "ringsocks_limit_refusals_total{limit=\"%s\"} %" PRIu64 "\n",
                  lim_hit_str((enum lim_hit)h), SUM_STAT(sh, n, limit_refused[h]));
    mw_u64(w, "ringsocks_limit_refusals_client_total", "counter",
           "Of those, refused by a client address's limit (client_limits).",
           SUM_STAT(sh, n, limit_refused_client));
    mw_u64(w, "ringsocks_bandwidth_waits_total", "counter",
           "Relay reads that waited for a bandwidth limit (bw_*, tunnel_bw_*).",
           SUM_STAT(sh, n, bw_waits));
    mw_u64(w, "ringsocks_lease_waits_total", "counter",
           "Requests that waited for a fleet lease from Redis (their user's lease was spent).",
           SUM_STAT(sh, n, lease_waits));
}

static void
render_tunnels(struct mwriter *w, const struct metrics_shard *sh, unsigned n)
{
    mw_u64(w, "ringsocks_tunnels_started_total", "counter", "Tunnels that reached the relay phase.",
           SUM_STAT(sh, n, tunnels));

    mw_family(w, "ringsocks_tunnels_open", "gauge", "Tunnels relaying now, by SOCKS command.");
    for (int c = 0; c < STAT_CMDS; c++) {
        int64_t v = 0;
        for (unsigned i = 0; i < n; i++)
            v += STAT_GET(sh[i].st->open_by_cmd[c]);
        mw_printf(w, "ringsocks_tunnels_open{command=\"%s\"} %" PRId64 "\n", cmd_names[c], v);
    }

    mw_family(w, "ringsocks_tunnels_total", "counter",
              "Connections ended, by SOCKS command (none: no request) and the reply sent "
              "(SOCKS5 code name; SOCKS4 replies are counted by their SOCKS5 equivalent; "
              "none: no reply).");
    for (int c = 0; c < STAT_CMDS; c++) {
        for (int r = 0; r < STAT_REPS; r++) {
            uint64_t v = 0;
            for (unsigned i = 0; i < n; i++)
                v += STAT_GET(sh[i].st->replies[c][r]);
            mw_printf(w, "ringsocks_tunnels_total{command=\"%s\",reply=\"%s\"} %" PRIu64 "\n",
                      cmd_names[c], rep_names[r], v);
        }
    }

    mw_family(w, "ringsocks_relay_bytes_total", "counter",
              "Bytes relayed: up is client to target, down is target to client.");
    mw_printf(w, "ringsocks_relay_bytes_total{direction=\"up\"} %" PRIu64 "\n",
              SUM_STAT(sh, n, bytes[STAT_UP]));
    mw_printf(w, "ringsocks_relay_bytes_total{direction=\"down\"} %" PRIu64 "\n",
              SUM_STAT(sh, n, bytes[STAT_DOWN]));
}

static void
render_dns(struct mwriter *w, const struct metrics_shard *sh, unsigned n)
{
    static const uint64_t bounds_us[DNS_LAT_BUCKETS - 1] = DNS_LAT_BOUNDS_US;
    uint64_t bucket[DNS_LAT_BUCKETS] = {0};

    mw_u64(w, "ringsocks_dns_queries_total", "counter", "Names sent to DNS servers.",
           SUM_STAT(sh, n, dns_queries));
    mw_u64(w, "ringsocks_dns_cache_hits_total", "counter",
           "Names answered from the shard's DNS cache.", SUM_STAT(sh, n, dns_cache_hits));

    /* The shards keep one count per bucket; Prometheus buckets are cumulative. */
    for (unsigned i = 0; i < n; i++)
        for (int b = 0; b < DNS_LAT_BUCKETS; b++)
            bucket[b] += STAT_GET(sh[i].st->dns_lat[b]);
    mw_family(w, "ringsocks_dns_lookup_duration_seconds", "histogram",
              "Time from sending a DNS query to its answer.");
    uint64_t cum = 0;
    for (int b = 0; b < DNS_LAT_BUCKETS - 1; b++) {
        cum += bucket[b];
        mw_printf(w, "ringsocks_dns_lookup_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                  (double)bounds_us[b] / 1e6, cum);
    }
    cum += bucket[DNS_LAT_BUCKETS - 1];
    mw_printf(w, "ringsocks_dns_lookup_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    mw_printf(w, "ringsocks_dns_lookup_duration_seconds_sum ");
    mw_us_as_s(w, SUM_STAT(sh, n, dns_lat_sum_us));
    mw_printf(w, "\nringsocks_dns_lookup_duration_seconds_count %" PRIu64 "\n", cum);
}

/* Plain counters: one uint64_t in struct shard_stats, summed over the shards. */
struct counter {
    const char *name, *help;
    size_t off; /* offsetof(struct shard_stats, field) */
};

#define COUNTER(name, field, help)                      \
    {                                                   \
        name, help, offsetof(struct shard_stats, field) \
    }

static const struct counter engine_counters[] = {
    COUNTER("ringsocks_udp_datagrams_dropped_total", udp_dropped,
            "UDP ASSOCIATE datagrams dropped: denied by the rules, malformed, fragmented, from a "
            "foreign source, unresolved, too big or refused by the socket."),
    COUNTER("ringsocks_pipe_fallbacks_total", pipe_fallbacks,
            "Splice relay chunks copied instead because no pipe could be had."),
    COUNTER("ringsocks_pipes_small_total", pipe_small,
            "Pipes the kernel would not enlarge to pipe_size (fs.pipe-max-size, "
            "fs.pipe-user-pages-soft); they work, with less per splice."),
    COUNTER("ringsocks_pipes_large_total", pipe_large,
            "Splice relay: readinesses of bulk directions served with a large pipe "
            "(pipe_size_max)."),
    COUNTER("ringsocks_pipes_large_denied_total", pipe_large_denied,
            "Splice relay: bulk directions that got a pipe of pipe_size because every large "
            "pipe of pipe_bulk_budget was in use (or the kernel refused pipe_size_max)."),
    COUNTER("ringsocks_relay_splice_switches_total", splice_switches,
            "Relay auto: tunnel directions that filled a buffer and moved on to splice."),
    COUNTER("ringsocks_relay_spills_total", spills,
            "Copy relay: sends the destination could not take at once, whose bytes moved from a "
            "shared buffer into memory of their tunnel's own."),
    COUNTER("ringsocks_auth_coalesced_total", auth_coalesced,
            "Password checks answered by an identical check already in flight (no crypt(3) run)."),
    COUNTER("ringsocks_handshake_waits_total", hs_waits,
            "Connections that waited for a free handshake context (bursts of new clients)."),
    COUNTER("ringsocks_client_evictions_total", client_evictions,
            "Unfinished handshakes of an address over client_max_handshakes closed to let "
            "another address's client in."),
    COUNTER("ringsocks_client_limited_total", client_limited,
            "BINDs and UDP associations refused by client_max_binds or client_max_udp."),
    COUNTER("ringsocks_close_cancels_total", close_cancels,
            "Connection closes that needed an explicit cancel of in-flight operations."),
    COUNTER("ringsocks_stale_completions_total", stale_cqes,
            "Ring completions dropped because their connection slot had been reused."),
};

static void
render_counters(struct mwriter *w, const struct metrics_shard *sh, unsigned n,
                const struct counter *c, size_t count)
{
    for (size_t k = 0; k < count; k++) {
        uint64_t sum = 0;
        for (unsigned i = 0; i < n; i++)
            sum += __atomic_load_n((const uint64_t *)((const char *)sh[i].st + c[k].off),
                                   __ATOMIC_RELAXED);
        mw_u64(w, c[k].name, "counter", c[k].help, sum);
    }
}

static const struct counter auth_counters[] = {
    COUNTER("ringsocks_auth_cache_hits_total", auth_cache_hits,
            "Credential checks answered by the fast digest cache."),
    COUNTER("ringsocks_auth_slow_checks_total", auth_slow_checks,
            "Credential checks that ran crypt(3) on the auth worker."),
    COUNTER("ringsocks_auth_failures_total", auth_failures, "Credentials refused (RFC 1929)."),
    COUNTER("ringsocks_auth_overload_total", auth_overload,
            "Credential checks closed without a verdict because no memory could be had for them."),
    COUNTER("ringsocks_auth_deferred_total", auth_deferred,
            "Credential checks queued behind the others': their client address was over its "
            "failure budget (auth_fail_budget)."),
    COUNTER("ringsocks_auth_abandoned_total", auth_abandoned,
            "Connections that ended while their credential check waited (client left, handshake "
            "timeout): closed without a verdict."),
    COUNTER("ringsocks_auth_cancelled_total", auth_cancelled,
            "Credential checks dropped before crypt(3) ran because every connection waiting for "
            "them had ended."),
    COUNTER("ringsocks_acl_denied_total", acl_denied, "Requests refused by the access rules."),
    COUNTER("ringsocks_via_tunnels_total", via_tunnels,
            "Tunnels connected through a parent proxy (rule key via)."),
    COUNTER("ringsocks_via_parent_failures_total", via_parent_failures,
            "Parent proxies that failed a tunnel: no connection, a malformed answer, our "
            "credentials refused, or connect_timeout."),
    COUNTER("ringsocks_via_skipped_total", via_skipped,
            "Parent proxies passed over because they failed within via_retry."),
};

/* Index of shard_stats.auth_lockouts and auth_locked_refusals: enum lockout_scope. */
static const char *const lockout_scopes[STAT_LOCKOUT_SCOPES] = {"pair", "address"};

/* A counter family labelled by lockout scope: the uint64_t[STAT_LOCKOUT_SCOPES] at off. */
static void
render_by_scope(struct mwriter *w, const struct metrics_shard *sh, unsigned n, const char *name,
                const char *help, size_t off)
{
    mw_family(w, name, "counter", help);
    for (int s = 0; s < STAT_LOCKOUT_SCOPES; s++) {
        uint64_t sum = 0;
        for (unsigned i = 0; i < n; i++)
            sum += __atomic_load_n((const uint64_t *)((const char *)sh[i].st + off) + s,
                                   __ATOMIC_RELAXED);
        mw_printf(w, "%s{scope=\"%s\"} %" PRIu64 "\n", name, lockout_scopes[s], sum);
    }
}

static void
render_auth(struct mwriter *w, const struct metrics_shard *sh, unsigned n)
{
    render_limits(w, sh, n);
    render_faults(w, sh, n);
    render_counters(w, sh, n, auth_counters, sizeof(auth_counters) / sizeof(auth_counters[0]));
    render_by_scope(w, sh, n, "ringsocks_auth_lockouts_total",
                    "Keys locked out by failed logins: a (client address, user) pair reaching "
                    "auth_lockout_failures, an address reaching auth_lockout_address_failures.",
                    offsetof(struct shard_stats, auth_lockouts));
    render_by_scope(w, sh, n, "ringsocks_auth_locked_refusals_total",
                    "Logins refused without a password check because their pair or address was "
                    "locked out.",
                    offsetof(struct shard_stats, auth_locked_refusals));
}

/* The GSS-API workers' counters (gssw.h), summed over the shards. */
static void
render_gss(struct mwriter *w, const struct metrics_shard *sh, unsigned n)
{
    struct gssw_stats s = {0};
    for (unsigned i = 0; i < n; i++) {
        const struct gssw_stats *g = &sh[i].gss;
        s.contexts += g->contexts;
        s.refused += g->refused;
        for (int l = 0; l < 3; l++)
            s.levels[l] += g->levels[l];
        s.level_refused += g->level_refused;
        s.tunnels += g->tunnels;
        s.open += g->open;
        s.wrapped += g->wrapped;
        s.unwrapped += g->unwrapped;
        s.frame_errors += g->frame_errors;
        s.dgram_errors += g->dgram_errors;
    }
    mw_u64(w, "ringsocks_gss_contexts_total", "counter",
           "GSS-API (method 0x01) security contexts established.", s.contexts);
    mw_u64(w, "ringsocks_gss_refused_total", "counter",
           "GSS-API context establishments refused (bad, expired or replayed ticket, wrong "
           "service).",
           s.refused);
    mw_family(w, "ringsocks_gss_levels_total", "counter",
              "GSS-API protection levels granted (0 none, 1 integrity, 2 confidentiality).");
    for (int l = 0; l < 3; l++)
        mw_printf(w, "ringsocks_gss_levels_total{level=\"%d\"} %" PRIu64 "\n", l, s.levels[l]);
    mw_u64(w, "ringsocks_gss_level_refused_total", "counter",
           "GSS-API protection-level messages refused (malformed, or no allowed level possible).",
           s.level_refused);
    mw_u64(w, "ringsocks_gss_protected_tunnels_total", "counter",
           "Connections whose traffic the GSS-API worker protected (levels 1 and 2).", s.tunnels);
    mw_u64(w, "ringsocks_gss_protected_open", "gauge",
           "Protected connections the GSS-API workers pump now.", s.open);
    mw_family(w, "ringsocks_gss_messages_total", "counter",
              "Protected messages: wrapped to clients, unwrapped from them.");
    mw_printf(w, "ringsocks_gss_messages_total{direction=\"wrap\"} %" PRIu64 "\n", s.wrapped);
    mw_printf(w, "ringsocks_gss_messages_total{direction=\"unwrap\"} %" PRIu64 "\n", s.unwrapped);
    mw_u64(w, "ringsocks_gss_frame_errors_total", "counter",
           "Protected connections ended by a malformed, oversized, forged or replayed frame.",
           s.frame_errors);
    mw_u64(w, "ringsocks_gss_datagram_errors_total", "counter",
           "Protected UDP datagrams dropped: forged, replayed, or not encrypted under level 2.",
           s.dgram_errors);
}

/* A counter family with one sample per shard: the uint64_t at offset off of struct shard_stats. */
static void
render_per_shard(struct mwriter *w, const char *name, const char *help,
                 const struct metrics_shard *sh, unsigned n, size_t off)
{
    mw_family(w, name, "counter", help);
    for (unsigned i = 0; i < n; i++)
        mw_printf(w, "%s{shard=\"%u\"} %" PRIu64 "\n", name, sh[i].id,
                  STAT_GET(*(const uint64_t *)((const char *)sh[i].st + off)));
}

static void
render_engine(struct mwriter *w, const struct metrics_shard *sh, unsigned n)
{
    render_counters(w, sh, n, engine_counters,
                    sizeof(engine_counters) / sizeof(engine_counters[0]));
    mw_u64(w, "ringsocks_relay_spilled_bytes", "gauge",
           "Copy relay: bytes waiting for a full destination in their tunnel's own memory now.",
           SUM_STAT(sh, n, spilled_bytes));
    mw_u64(w, "ringsocks_pipes_idle", "gauge",
           "Splice relay: empty pipes the shards keep for reuse now, two fds each.",
           SUM_STAT(sh, n, pipes_idle));

    render_per_shard(w, "ringsocks_shard_loop_iterations_total",
                     "Event loop iterations, per shard.", sh, n,
                     offsetof(struct shard_stats, loops));
    mw_family(w, "ringsocks_shard_stalls_total", "counter",
              "Event loop iterations whose work took over 100 ms (or that the control thread saw "
              "still running after 100 ms), per shard.");
    for (unsigned i = 0; i < n; i++)
        mw_printf(w, "ringsocks_shard_stalls_total{shard=\"%u\"} %" PRIu64 "\n", sh[i].id,
                  STAT_GET(sh[i].st->loop_stalls) + sh[i].watchdog_stalls);
    mw_family(w, "ringsocks_shard_loop_max_seconds", "gauge",
              "The longest event loop iteration's work since start, per shard (coarse clock: "
              "a few ms).");
    for (unsigned i = 0; i < n; i++)
        mw_printf(w, "ringsocks_shard_loop_max_seconds{shard=\"%u\"} %.3f\n", sh[i].id,
                  (double)STAT_GET(sh[i].st->loop_max_ms) / 1000.0);
    mw_family(w, "ringsocks_shard_cpu_wait_seconds_total", "counter",
              "Time the shard's thread was ready to run but waited for a CPU (the kernel's "
              "schedstat run delay), per shard: a stall with this growing is the host's.");
    for (unsigned i = 0; i < n; i++)
        if (sh[i].cpu_wait_s >= 0)
            mw_printf(w, "ringsocks_shard_cpu_wait_seconds_total{shard=\"%u\"} %.3f\n", sh[i].id,
                      sh[i].cpu_wait_s);
    mw_family(w, "ringsocks_relay_buffers_resident_bytes", "gauge",
              "Bytes of the shard's copy buffers (bufs x buf_size, mapped at start) in memory: "
              "touched at least once, and kept; part of the process's RSS, per shard.");
    for (unsigned i = 0; i < n; i++)
        if (sh[i].bufs_resident >= 0)
            mw_printf(w, "ringsocks_relay_buffers_resident_bytes{shard=\"%u\"} %" PRId64 "\n",
                      sh[i].id, sh[i].bufs_resident);
    mw_family(w, "ringsocks_shard_inflight_ops", "gauge",
              "Ring operations submitted whose completion has not arrived, per shard.");
    for (unsigned i = 0; i < n; i++)
        mw_printf(w, "ringsocks_shard_inflight_ops{shard=\"%u\"} %" PRId64 "\n", sh[i].id,
                  STAT_GET(sh[i].st->inflight));
    render_per_shard(w, "ringsocks_shard_sq_full_total",
                     "Operations queued with the ring's submission queue full (ring_entries), "
                     "which submitted the queue first, per shard.",
                     sh, n, offsetof(struct shard_stats, sq_full));
    render_per_shard(w, "ringsocks_shard_sq_retries_total",
                     "Submits of a full submission queue that the kernel refused (no memory for a "
                     "request), each followed by a 1 ms wait of the shard, per shard.",
                     sh, n, offsetof(struct shard_stats, sq_retries));
}

static void
render_ctl(struct mwriter *w, const struct ctl_stats *cs)
{
    mw_family(w, "ringsocks_reloads_total", "counter", "Configuration reloads, by result.");
    mw_printf(w, "ringsocks_reloads_total{result=\"ok\"} %" PRIu64 "\n", cs->reloads_ok);
    mw_printf(w, "ringsocks_reloads_total{result=\"failed\"} %" PRIu64 "\n", cs->reloads_failed);
    mw_u64(w, "ringsocks_last_reload_success", "gauge",
           "1 when the last reload (or the start) succeeded, 0 when it failed.",
           cs->last_reload_ok ? 1 : 0);
    mw_family(w, "ringsocks_last_reload_timestamp_seconds", "gauge",
              "Unix time of the last reload attempt, good or failed (or of the start).");
    mw_printf(w, "ringsocks_last_reload_timestamp_seconds %.3f\n", cs->last_reload_time);
    mw_family(w, "ringsocks_last_reload_success_timestamp_seconds", "gauge",
              "Unix time of the last successful configuration load.");
    mw_printf(w, "ringsocks_last_reload_success_timestamp_seconds %.3f\n", cs->last_reload_ok_time);
    mw_family(w, "ringsocks_upgrades_total", "counter",
              "Binary upgrades (SIGUSR2, POST /upgrade) this process started, by result.");
    mw_printf(w, "ringsocks_upgrades_total{result=\"ok\"} %" PRIu64 "\n", cs->upgrades_ok);
    mw_printf(w, "ringsocks_upgrades_total{result=\"failed\"} %" PRIu64 "\n", cs->upgrades_failed);
    if (cs->proc.pid)
        mw_u64(w, "ringsocks_process_pid", "gauge", "The process ID of the process answering.",
               cs->proc.pid);
    mw_u64(w, "ringsocks_draining", "gauge", "1 while the server drains, else 0.",
           cs->draining ? 1 : 0);
    mw_u64(w, "ringsocks_access_log_lines_total", "counter", "Access log lines written.",
           cs->log_written);
    mw_u64(w, "ringsocks_access_log_dropped_total", "counter",
           "Access log lines dropped because the writer could not keep up.", cs->log_dropped);
    if (cs->has_redis) {
        mw_u64(w, "ringsocks_redis_up", "gauge", "1 while the fleet's Redis answers, else 0.",
               (uint64_t)cs->redis_up);
        mw_u64(w, "ringsocks_redis_errors_total", "counter",
               "Redis connections lost, failed or timed out, and error replies.", cs->redis_errors);
        mw_u64(w, "ringsocks_redis_lease_rounds_total", "counter", "Lease requests Redis answered.",
               cs->redis_lease_rounds);
        mw_u64(w, "ringsocks_redis_lease_fallbacks_total", "counter",
               "Lease asks answered by redis_fallback while Redis was away.",
               cs->redis_lease_fallbacks);
        mw_u64(w, "ringsocks_redis_quota_syncs_total", "counter",
               "Quota figures exchanged with Redis.", cs->redis_quota_syncs);
        mw_u64(w, "ringsocks_redis_users_loads_total", "counter",
               "Users tables fetched from Redis (redis_users).", cs->redis_users_loads);
    }
    mw_family(w, "ringsocks_start_time_seconds", "gauge", "Unix time the process started.");
    mw_printf(w, "ringsocks_start_time_seconds %.3f\n", cs->start_time);
    mw_family(w, "ringsocks_build_info", "gauge", "Always 1; the labels name the build.");
    mw_printf(w, "ringsocks_build_info{version=\"%s\"} 1\n", RINGSOCKS_VERSION);
}

/* The names and meanings of Prometheus' client libraries' process collector. */
static void
render_process(struct mwriter *w, const struct metrics_process *p)
{
    if (!p->ok)
        return;
    mw_family(w, "process_cpu_seconds_total", "counter",
              "Total user and system CPU time spent in seconds.");
    mw_printf(w, "process_cpu_seconds_total %.2f\n", p->cpu_s);
    mw_u64(w, "process_open_fds", "gauge", "Number of open file descriptors.", p->open_fds);
    mw_u64(w, "process_max_fds", "gauge", "Maximum number of open file descriptors.", p->max_fds);
    mw_u64(w, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
           p->vsize_bytes);
    mw_u64(w, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           p->rss_bytes);
    mw_family(w, "process_start_time_seconds", "gauge",
              "Start time of the process since unix epoch in seconds.");
    mw_printf(w, "process_start_time_seconds %.2f\n", p->start_time_s);
}

/* Boot time from /proc/stat's btime line, or 0. */
static uint64_t
boot_time_s(void)
{
    char line[256];
    unsigned long long bt = 0;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %llu", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

int
metrics_process_read(struct metrics_process *p)
{
    char buf[1024];
    memset(p, 0, sizeof(*p));
    p->pid = (uint64_t)getpid();
    FILE *f = fopen("/proc/self/stat", "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm (field 2) may hold spaces and parentheses: the fields start after the last ')'. */
    const char *q = strrchr(buf, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;
    if (!q || sscanf(q + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                     "%*d %llu %llu %lld",
                     &utime, &stime, &start, &vsize, &rss) != 5)
        return -EINVAL;
    double hz = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    p->cpu_s = (double)(utime + stime) / hz;
    p->start_time_s = (double)boot_time_s() + (double)start / hz;
    p->vsize_bytes = vsize;
    p->rss_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            p->open_fds += e->d_name[0] != '.';
        closedir(d);
        p->open_fds--; /* the directory's own descriptor */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
    p->ok = true;
    return 0;
}

size_t
metrics_render(char *buf, size_t cap, const struct metrics_shard *shards, unsigned n_shards,
               const struct ctl_stats *cs)
{
    struct mwriter w = {.buf = buf, .cap = buf ? cap : 0, .len = 0};

    render_connections(&w, shards, n_shards, cs->max_conns);
    render_tunnels(&w, shards, n_shards);
    render_auth(&w, shards, n_shards);
    render_gss(&w, shards, n_shards);
    render_dns(&w, shards, n_shards);
    render_engine(&w, shards, n_shards);
    render_ctl(&w, cs);
    render_process(&w, &cs->proc);
    return w.len;
}

/* ---- per-user series */

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong form, no surrogate), or 0. */
static size_t
utf8_len(const unsigned char *s)
{
    if (s[0] < 0xc2 || s[0] > 0xf4)
        return 0;
    size_t n = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

/* A user label's value, quoted: one-to-one, printable, valid UTF-8 (metrics.h). */
static void
mw_user(struct mwriter *w, const char *name)
{
    if (!name) {
        mw_printf(w, "\"other\"");
        return;
    }
    /* A user named "other" must not be taken for the sum: its 'o' escaped, which no name's
     * own text can produce ('\\' is always escaped). */
    if (strcmp(name, "other") == 0) {
        mw_printf(w, "\"\\\\x6fther\"");
        return;
    }
    mw_printf(w, "\"");
    for (const unsigned char *s = (const unsigned char *)name; *s;) {
        size_t n = *s >= 0x80 ? utf8_len(s) : 0;
        if (n) {
            mw_printf(w, "%.*s", (int)n, (const char *)s);
            s += n;
        } else if (*s == '"') {
            mw_printf(w, "\\\"");
            s++;
        } else if (*s < 0x20 || *s >= 0x7f || *s == '\\') {
            mw_printf(w, "\\\\x%02x", *s++);
        } else {
            mw_printf(w, "%c", *s++);
        }
    }
    mw_printf(w, "\"");
}

/* One sample: family{user="..."[,label="lv"]} v */
static void
mw_user_sample(struct mwriter *w, const char *family, const char *user, const char *label,
               const char *lv, uint64_t v)
{
    mw_printf(w, "%s{user=", family);
    mw_user(w, user);
    if (label)
        mw_printf(w, ",%s=\"%s\"", label, lv);
    mw_printf(w, "} %" PRIu64 "\n", v);
}

size_t
metrics_render_users(char *buf, size_t cap, const struct metrics_user *u, size_t n)
{
    struct mwriter w = {.buf = buf, .cap = buf ? cap : 0, .len = 0};
    static const char *const dirs[2] = {"up", "down"};
    static const char *const fam[] = {
        "ringsocks_user_bytes_total", "ringsocks_user_tunnels_opened_total",
        "ringsocks_user_tunnels_open", "ringsocks_user_limit_hits_total",
        "ringsocks_user_quota_used_bytes"};
    if (!n)
        return 0;
    mw_family(&w, fam[0], "counter",
              "Bytes relayed for a user (up: client to target); the users past metrics_users "
              "are summed as user=\"other\".");
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < 2; d++)
            mw_user_sample(&w, fam[0], u[i].name, "direction", dirs[d], u[i].bytes[d]);
    mw_family(&w, fam[1], "counter", "Tunnels a user opened.");
    for (size_t i = 0; i < n; i++)
        mw_user_sample(&w, fam[1], u[i].name, NULL, NULL, u[i].opened);
    mw_family(&w, fam[2], "gauge", "Tunnels of a user open now.");
    for (size_t i = 0; i < n; i++)
        mw_user_sample(&w, fam[2], u[i].name, NULL, NULL, u[i].open);
    mw_family(&w, fam[3], "counter", "Times a user's limit refused or slowed something, by limit.");
    for (size_t i = 0; i < n; i++)
        for (int h = 0; h < LIMH__COUNT; h++)
            mw_user_sample(&w, fam[3], u[i].name, "limit", lim_hit_str((enum lim_hit)h),
                           u[i].hits[h]);
    mw_family(&w, fam[4], "gauge",
              "Bytes a user counted against its quota in the current period (0: no quota).");
    for (size_t i = 0; i < n; i++)
        mw_user_sample(&w, fam[4], u[i].name, NULL, NULL, u[i].quota_used);
    return w.len;
}
