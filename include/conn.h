/*
 * conn.h - connection slots of a shard: allocation, generations, in-flight
 * counts, timer lists, completion dispatch and the one close path.
 * Shard thread only.
 */
#ifndef RINGSOCKS_CONN_H
#define RINGSOCKS_CONN_H

#include "shard_types.h"

int conn_table_init(struct shard *sh, uint32_t n_slots);
void conn_table_fini(struct shard *sh);

/* A fresh slot in CONN_HANDSHAKE with no fds, or NULL when all are taken. */
struct conn *conn_alloc(struct shard *sh);

static inline uint32_t
conn_slot(const struct shard *sh, const struct conn *c)
{
    return (uint32_t)(c - sh->conns);
}

/* An SQE for c tagged with op (and dir): counted in c->inflight. */
struct io_uring_sqe *conn_sqe(struct shard *sh, struct conn *c, unsigned op);

/*
 * End the connection: shut its sockets down, cancel what is in flight, and
 * free the slot (closing each fd once) when the last completion arrives.
 * Idempotent: the first reason wins.
 */
void conn_close(struct shard *sh, struct conn *c, enum conn_end why);

/* Route one CQE carrying a connection op. */
void conn_dispatch(struct shard *sh, const struct io_uring_cqe *cqe);

/* Put c on timer list tl (removing it from any other), stamped now. */
void conn_timer_set(struct shard *sh, struct conn *c, enum tlist_id tl);
/* Expire what is due on every list. */
void conn_timers_run(struct shard *sh);

/*
 * Relay direction d of c (CONN_RELAY) has pending bytes and waits for its
 * destination to take them: from now on (or from its last write, if it was
 * waiting already) it counts towards write_timeout. No-op when already listed.
 */
void conn_stall_wait(struct shard *sh, struct conn *c, unsigned d);
/* Direction d wrote bytes: a waiting direction's clock restarts, and one with
 * nothing left pending leaves the list. Call after updating pending. */
void conn_stall_wrote(struct shard *sh, struct conn *c, unsigned d);

const char *conn_end_str(enum conn_end why);

/*
 * A new policy snapshot is in sh->pol: close the tunnels of users it no
 * longer has and, when configured, those its rules now deny.
 */
void conn_policy_changed(struct shard *sh);

/* Close every connection (server stopping). */
void conn_close_all(struct shard *sh, enum conn_end why);

#endif
