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
    /* Large pipes (big_size bytes) for bulk directions: at most big_max exist at once, in use
     * or idle in big[0..nbig); big_max 0: none (the size was refused, or growth is off). */
    int (*big)[2];
    unsigned nbig, big_live, big_max;
    unsigned big_size;
    unsigned big_backoff; /* asks left before the next try, after the kernel refused the size */
};

/* cap idle pipes of size bytes; big_max large ones of big_size bytes (0: none). */
int pipe_pool_init(struct pipe_pool *pp, unsigned cap, unsigned size, unsigned big_max,
                   unsigned big_size);
void pipe_pool_fini(struct pipe_pool *pp);
/* fds[0] read end, fds[1] write end. Returns 0, 1 when the kernel refused the
 * pool's pipe size (the pipe works, smaller), or -errno (-EMFILE...). */
int pipe_get(struct pipe_pool *pp, int fds[2]);
/* Give a pipe back: kept when empty and there is room, closed otherwise. */
void pipe_put(struct pipe_pool *pp, int fds[2], bool empty);
/* A large pipe: 0, or -1 when none may be had (all big_max exist, or the kernel refused
 * the size: then the next PIPE_BIG_BACKOFF asks get -1 without trying; the caller takes
 * pipe_get()'s). */
#define PIPE_BIG_BACKOFF 1024
int pipe_get_big(struct pipe_pool *pp, int fds[2]);
/* Give a large pipe back: kept for the next bulk direction when empty, closed otherwise. */
void pipe_put_big(struct pipe_pool *pp, int fds[2], bool empty);

#endif
