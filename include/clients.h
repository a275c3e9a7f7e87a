/*
 * clients.h - what each client address holds on one shard: handshakes in
 * progress (with or without a context), BINDs waiting, UDP associations,
 * password checks queued, and its recent password failures.
 *
 * One table per shard, touched by that shard's thread alone: no atomics, no
 * lock. An address is its IPv4 address, or the /64 an IPv6 address is in
 * (one subscriber, one host or one attacker usually has a whole /64). An
 * IPv4-mapped IPv6 address must be unmapped by the caller first.
 *
 * An entry lives while any count is non-zero or its failures are recent;
 * counts are decremented exactly as often as they were incremented (the
 * caller records which it holds). The table grows as needed up to
 * CLIENTS_MAX entries; past that an increment fails with -ENOMEM and the
 * caller treats the address as holding nothing (fail open: a limit that
 * cannot count does not refuse).
 */
#ifndef RINGSOCKS_CLIENTS_H
#define RINGSOCKS_CLIENTS_H

#include <stdint.h>

#include "addr.h"

enum client_count {
    CLIENT_HS = 0, /* handshakes in progress: holding a context or waiting for one */
    CLIENT_BIND,   /* BINDs waiting for their inbound connection */
    CLIENT_UDP,    /* UDP associations */
    CLIENT_AUTH,   /* password checks queued for the crypt worker */
    CLIENT__COUNT,
};

/* Entries at most, per shard (about 48 MiB): beyond it, addresses go uncounted. */
#define CLIENTS_MAX (1u << 20)

struct client_ent {
    uint64_t key[2]; /* key[0] == key[1] == UINT64_MAX: a free slot */
    uint32_t n[CLIENT__COUNT];
    uint32_t fails;        /* password failures since fail_since_s */
    uint32_t fail_since_s; /* start of the failure window */
};

struct clients {
    struct client_ent *t;
    uint32_t cap; /* slots: 0 or a power of two, at most 3/4 used */
    uint32_t used;
    uint32_t fail_window_s; /* failures older than this are forgotten */
};

/* Shard thread: an empty table (allocates nothing until the first address). */
void clients_init(struct clients *cl, uint32_t fail_window_s);
void clients_fini(struct clients *cl);

/* How many of what the address holds (0 when unknown). */
uint32_t clients_get(const struct clients *cl, const union sockaddr_inx *a, enum client_count what);
/* One more: the new count, or -ENOMEM (not counted: do not decrement it later). */
int clients_inc(struct clients *cl, const union sockaddr_inx *a, enum client_count what,
                uint32_t now_s);
/* One fewer of a count clients_inc() gave; the entry goes once nothing is left. */
void clients_dec(struct clients *cl, const union sockaddr_inx *a, enum client_count what,
                 uint32_t now_s);

/* A password check of the address failed: count it (best effort). */
void clients_fail(struct clients *cl, const union sockaddr_inx *a, uint32_t now_s);
/* Failures of the address within the last fail_window_s seconds. */
uint32_t clients_fails(const struct clients *cl, const union sockaddr_inx *a, uint32_t now_s);

/* Addresses known (for tests and metrics). */
static inline uint32_t
clients_count(const struct clients *cl)
{
    return cl->used;
}

#endif
