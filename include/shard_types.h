/*
 * shard_types.h - struct shard, composed of the state each module keeps per
 * shard (their own headers say what is in them). Every field is read and
 * written by the owning shard thread alone, except the blocks marked
 * otherwise. No functions: shard.h has the shard's, each module its own.
 */
#ifndef RINGSOCKS_SHARD_TYPES_H
#define RINGSOCKS_SHARD_TYPES_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "clients.h"
#include "conn.h"
#include "handshake_types.h"
#include "opts.h"
#include "relay_types.h"

struct lease_board;
#include "stats.h"
#include "udq.h"

struct listener {
    int fd;
    bool armed;
    bool transparent; /* mode = "transparent" (opts.listen_transparent) */
};

struct hosts;       /* read-only hosts table shared by every shard */
struct dns_shard;   /* dns.c */
struct users;       /* read-only user table shared by every shard */
struct gssw;        /* gssw.c: the GSS-API worker */
struct authq;       /* authq.c: the shard's credential cache, queues and crypt worker */
struct policy;      /* policy.h: rules, users, limits; RCU-published by the control thread */
struct logger;      /* log.c: the access-log writer */
struct udp_scratch; /* udp.c: the shard's datagram buffers */
struct shardcmd;    /* shardcmd.h: a command of the control thread */
struct lockout;     /* lockout.h: failed-login counts, shared by every shard (atomics) */

/* Parents whose failure a shard remembers at once (chain.c); the oldest is forgotten first. */
#define SHARD_VIA_DEAD 32

struct shard {
    unsigned id;
    struct io_uring ring;
    const struct opts *o;
    const struct hosts *hosts;
    struct policy **ppol;     /* the control thread's published pointer */
    const struct policy *pol; /* this loop iteration's snapshot: never keep it longer */
    uint64_t pol_gen;         /* generation the connections were last checked against */
    struct logger *lg;
    struct authq *authq;
    struct gssw *gssw;       /* gssw.c: the shard's GSS-API worker and its protected tunnels */
    struct lockout *lockout; /* shared by all shards; NULL: no lockout (unit tests) */
    pthread_t thread;

    struct listener *ls;
    unsigned n_ls;
    bool accept_paused;

    struct conn *conns;
    uint32_t n_slots, high;
    struct shard *peers; /* every shard (this one too), for n_open and want_room only */
    unsigned n_peers;
    /* fds accepted while all shards held max_conns (the accept was in flight
     * when another shard took the last place): served first when room frees. */
    struct udq held;
    uint32_t *free_slots;
    uint32_t n_free;

    /* What each client address holds on this shard (per-client caps, auth fairness). */
    struct clients clients;

    struct hs_pool hsp;       /* handshake.c: contexts and the queues waiting for one */
    struct relay_shard relay; /* relay.c: copy buffers, pipes, waiting directions */

    struct udp_scratch *udp;    /* mapped at the first UDP association, else NULL */
    struct dns_shard *dns;      /* dns.c: the c-ares channel, its sockets, the cache */
    uint64_t rng[4];            /* outbound.c: random egress picks (xoshiro256**) */
    struct climap *climap;      /* client addresses' shared limit counters (climap.h), shared */
    struct lease_board *leases; /* a fleet's leases (acct.h), shared; NULL: no fleet */
    struct udq lease_wait;      /* requests parked for a lease: conn_ref(c, 0) (request.c) */
    uint64_t lease_gen;         /* the board's generation they last retried at */
    /* chain.c: parents that failed lately, skipped until until_ds (via_retry). */
    struct via_dead {
        union sockaddr_inx addr; /* family 0: a free entry */
        uint32_t ident;          /* via_ident(): the scheme and credentials */
        uint32_t until_ds;
    } via_dead[SHARD_VIA_DEAD];

    uint32_t head[TL__COUNT], tail[TL__COUNT];
    uint32_t now_s;
    uint32_t
        now_ds; /* CLOCK_MONOTONIC_COARSE, deciseconds: connection timers (13 years wrap-free) */
    uint64_t now_ms; /* CLOCK_MONOTONIC_COARSE, ms */
    struct __kernel_timespec tick;

    int wake_fd;
    uint64_t wake_val;
    bool stopping;
    bool draining;
    bool room_freed; /* a slot was freed in this batch: resume accepting, wake peers */

    struct shard_stats st;

    /* Shared with the other shards on each accept and close: a cache line
     * of their own, away from the fields only this shard uses. n_open is
     * written by this shard alone and read by the others. want_room is set
     * by this shard when max_conns pauses its accepts and cleared (exchange)
     * by whichever shard frees a place first, which then wakes this one. */
    _Alignas(64) uint32_t n_open;
    atomic_bool want_room;

    /* written by other threads */
    _Alignas(64) atomic_bool stop;      /* close everything now */
    atomic_bool drain;                  /* stop accepting, let tunnels finish */
    _Atomic uint64_t drain_deadline_ms; /* CLOCK_MONOTONIC ms: then close the rest */
    _Atomic(struct shardcmd *) cmd;     /* posted by the control thread, taken by the shard */
    /* The listeners were handed to a new binary (ctl.h, the upgrade): a drain closes our fds
     * without shutdown() (that would stop the new process's accepts too), and serves a
     * client whose accept completes while it is cancelled. */
    atomic_bool keep_listeners;
    /* Shard loop iterations the control thread saw stalled before they ended (watchdog.h);
     * the control thread's alone. */
    uint64_t watchdog_stalls;
    /* written by the shard, read by the control thread */
    atomic_bool exited;           /* the loop has ended */
    _Atomic uint64_t pol_seen;    /* the policy generation its tunnels were checked against */
    _Atomic uint64_t pol_revoked; /* tunnels closed by reloads, counted before pol_seen moves */
    _Atomic int tid; /* the shard thread's id (/proc/self/task/TID), 0 before it runs */
    /* and by the control thread (watchdog.h): when the current work began, 0 asleep */
    _Atomic uint64_t busy_since;
};

#endif
