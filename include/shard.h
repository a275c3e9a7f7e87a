/*
 * shard.h - a shard thread: one io_uring, its listeners, connections, pipes,
 * DNS channel and timers. main() creates and stops shards; everything else
 * here runs on the shard's own thread.
 */
#ifndef RINGSOCKS_SHARD_H
#define RINGSOCKS_SHARD_H

#include "shard_types.h"

/* Main thread, before start: build the shard around already-bound listeners. */
int shard_init(struct shard *sh, unsigned id, const struct opts *o, const struct hosts *hosts,
               struct policy **ppol, struct logger *lg, const int *listen_fds, unsigned n_listen);
/* Main thread: run the shard on its own pinned thread. */
int shard_start(struct shard *sh);
/* Any thread: ask the shard to close everything and leave its loop. */
void shard_stop(struct shard *sh);
/*
 * Any thread: stop accepting, let tunnels finish, and at deadline_ms
 * (CLOCK_MONOTONIC_COARSE, ms) close the rest; the loop ends when no
 * connection is left.
 */
void shard_drain(struct shard *sh, uint64_t deadline_ms);
/*
 * Control thread, before shard_drain(), once a new binary serves on the same
 * listening sockets: the drain must close them without shutdown().
 */
void shard_keep_listeners(struct shard *sh);
/* Any thread: wake the shard's loop (a new policy was published). */
void shard_wake(struct shard *sh);
/* Main thread: wait for the thread, then free what the shard owned. */
void shard_join(struct shard *sh);

/* Before the shards start: let each see the others' open-connection counts,
 * so max_conns limits all of them together. */
void shard_set_peers(struct shard *shards, unsigned n);

#endif
