/*
 * stats.h - a shard's counters: written by the shard alone (STAT_INC/STAT_ADD:
 * a plain relaxed store, no locked instruction), read by the control thread
 * with relaxed atomic loads and summed (metrics.c). Types only.
 */
#ifndef RINGSOCKS_STATS_H
#define RINGSOCKS_STATS_H

#include <stdint.h>

#include "conn_end.h"

#define STAT_ADD(x, n) __atomic_store_n(&(x), (x) + (n), __ATOMIC_RELAXED)
#define STAT_INC(x)    STAT_ADD(x, 1)
#define STAT_DEC(x)    STAT_ADD(x, -1)
#define STAT_GET(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* DNS lookup latency histogram bounds, microseconds (then +Inf). */
#define DNS_LAT_BOUNDS_US                                                                        \
    {                                                                                            \
        1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000 \
    }
#define DNS_LAT_BUCKETS 13

/* Replies by command (0: no request, 1 CONNECT, 2 BIND, 3 UDP) and code (SOCKS5
 * numbering 0..8; 9: the connection ended with no reply). */
/* Indexes of bytes[]: the relay's directions (DIR_C2T, DIR_T2C) in the same order. */
#define STAT_UP   0
#define STAT_DOWN 1

#define STAT_CMDS           4
/* enum lockout_scope's values (lockout.h): pair, address. */
#define STAT_LOCKOUT_SCOPES 2
#define STAT_REPS           10
/* enum fault_kind's values (faultspec.h). */
#define STAT_FAULT_KINDS    20

struct shard_stats {
    uint64_t accepted;
    uint64_t accept_dropped; /* closed at once: no slot */
    uint64_t accept_pauses;  /* EMFILE/ENFILE/ENOMEM on accept */
    uint64_t tunnels;        /* relays started */
    uint64_t ended[END__COUNT];
    uint64_t bytes[2]; /* [STAT_UP] client to target, [STAT_DOWN] target to client */
    uint64_t stale_cqes;
    uint64_t pipe_fallbacks;    /* splice chunks copied: no pipe could be had */
    uint64_t pipe_small;        /* pipes the kernel would not enlarge to pipe_size */
    uint64_t pipe_large;        /* bulk directions' readinesses served with a large pipe */
    uint64_t pipe_large_denied; /* ... that wanted one but the budget was used up */
    uint64_t splice_switches;   /* relay auto: directions that moved on to splice */
    uint64_t spills;            /* copy: blocked sends whose bytes moved out of a shared buffer */
    int64_t spilled_bytes;      /* gauge: bytes held in spills now */
    uint64_t pipes_idle;        /* gauge: empty pipes the pool keeps now (either size) */
    uint64_t hs_waits;          /* connections that waited for a free handshake context */
    uint64_t client_evictions;  /* slow handshakes of a heavy address closed for another's */
    uint64_t client_limited;    /* BINDs and UDP associations refused by a per-client limit */
    uint64_t auth_coalesced;    /* password checks answered by an identical one in flight */
    uint64_t close_cancels;     /* closes that needed an explicit cancel */
    uint64_t limit_refused[5];  /* requests refused by a limit, by enum lim_hit (lim.h) */
    uint64_t limit_refused_client; /* of those, by a client address's limit */
    uint64_t bw_waits;             /* reads that waited for bandwidth (limit.h) */
    uint64_t lease_waits;          /* requests parked for a fleet lease (fleet.h) */
    uint64_t auth_cache_hits;
    uint64_t auth_slow_checks;
    uint64_t auth_failures;
    uint64_t auth_overload;  /* checks closed without a verdict: no memory for a job */
    uint64_t auth_deferred;  /* checks queued behind the others: address over its failure budget */
    uint64_t auth_abandoned; /* connections that ended while their check waited */
    uint64_t auth_cancelled; /* checks dropped before crypt(3): nobody waited any more */
    /* By enum lockout_scope (pair, address): keys this shard's failures locked, and logins
     * refused unchecked because their key was locked. */
    uint64_t auth_lockouts[STAT_LOCKOUT_SCOPES];
    uint64_t auth_locked_refusals[STAT_LOCKOUT_SCOPES];
    uint64_t udp_dropped; /* datagrams dropped: malformed, FRAG, foreign source */
    uint64_t dns_queries; /* sent to DNS */
    uint64_t dns_cache_hits;
    uint64_t dns_lat[DNS_LAT_BUCKETS]; /* not cumulative: one bucket per answer */
    uint64_t dns_lat_sum_us;
    uint64_t replies[STAT_CMDS][STAT_REPS]; /* tunnels ended, by command and reply */
    int64_t open_by_cmd[STAT_CMDS];         /* gauge: relaying now, by command */
    int64_t inflight;                       /* gauge: SQEs whose CQE has not come */
    uint64_t sq_full;    /* SQEs asked for with the submission queue full: submitted first */
    uint64_t sq_retries; /* ... submits that made no room (the kernel short of memory), 1 ms each */
    uint64_t acl_denied; /* requests refused by the rules */
    uint64_t via_tunnels;         /* tunnels connected through a parent proxy (chain.h) */
    uint64_t via_parent_failures; /* parents that failed a tunnel (down, bad answer, timeout) */
    uint64_t via_skipped;         /* parents passed over because they failed lately */
    uint64_t loops;
    uint64_t loop_stalls; /* iterations whose work took over WATCHDOG_STALL_MS (watchdog.h) */
    uint64_t loop_max_ms; /* gauge: the longest iteration's work, ms */
    /* Faults committed on purpose (fault.h), by enum fault_kind (faultspec.h); and faults a
     * user name asked for that the admitting rule did not allow (ignored). */
    uint64_t faults[STAT_FAULT_KINDS];
    uint64_t fault_asks_refused;
};

#endif
