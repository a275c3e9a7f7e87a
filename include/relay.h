/*
 * relay.h - the two relay engines (splice chains through pooled pipes, and
 * copies through a provided buffer ring): half-close, back-pressure, byte
 * counts. Shard thread only.
 */
#ifndef RINGSOCKS_RELAY_H
#define RINGSOCKS_RELAY_H

#include "shard_types.h"

int relay_init(struct shard *sh);
void relay_fini(struct shard *sh);

/* c->cfd and c->tfd are connected: start both directions. */
void relay_start(struct shard *sh, struct conn *c);
/* A completion of a relay op (also while c is closing: results are accounted). */
void relay_on_cqe(struct shard *sh, struct conn *c, unsigned op, unsigned dir, int res,
                  unsigned cqe_flags);
/* After each batch of completions: copy buffers free in the ring wake as
 * many of the directions queued for one, oldest first. */
void relay_batch_end(struct shard *sh);
/* The slot is being freed: give back pipes and buffers. */
void relay_release(struct shard *sh, struct conn *c);

#endif
