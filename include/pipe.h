/*
 * pipe.h - a shard's pool of pipes for the splice engine. A pipe is taken
 * when data arrives and given back once drained; a pipe that may still hold
 * data is closed, never reused. Shard thread only.
 */
#ifndef RINGSOCKS_PIPE_H
#define RINGSOCKS_PIPE_H

#include <stdbool.h>

struct pipe_pool {
    int (*fds)[2];
    unsigned n, cap;
    unsigned size; /* bytes per pipe */
};

int pipe_pool_init(struct pipe_pool *pp, unsigned cap, unsigned size);
void pipe_pool_fini(struct pipe_pool *pp);
/* fds[0] read end, fds[1] write end. Returns 0, 1 when the kernel refused the
 * pool's pipe size (the pipe works, smaller), or -errno (-EMFILE...). */
int pipe_get(struct pipe_pool *pp, int fds[2]);
/* Give a pipe back: kept when empty and there is room, closed otherwise. */
void pipe_put(struct pipe_pool *pp, int fds[2], bool empty);

#endif
