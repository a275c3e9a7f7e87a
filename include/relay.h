/*
 * relay.h - the relay phase: moves bytes between a connected client and
 * target with the splice or the copy engine (relay.c): half-close,
 * back-pressure, byte counts, write_timeout. Shard thread only.
 */
#ifndef RINGSOCKS_RELAY_H
#define RINGSOCKS_RELAY_H

#include "conn.h"

struct shard;

/* The shard's own thread, once its ring exists: the provided-buffer ring and the
 * pipe pool. relay_fini(): main thread, after the shard thread ended. */
int relay_init(struct shard *sh);
void relay_fini(struct shard *sh);
/* The control thread, between relay_init() and relay_fini(): bytes of the shard's copy
 * buffers resident in memory (mincore()), i.e. touched since start; they stay so, up to
 * bufs x buf_size. -1 when unknown. */
int64_t relay_bufs_resident(const struct shard *sh);

extern const struct conn_phase relay_phase;

/* c->cfd and c->tfd are connected and the reply is out: relay both directions. */
void relay_start(struct shard *sh, struct conn *c);
/* After each batch of completions: copy buffers free in the ring wake as
 * many of the directions queued for one, oldest first. */
void relay_batch_end(struct shard *sh);
/* Every tick: write_timeout. */
void relay_tick(struct shard *sh);

#endif
