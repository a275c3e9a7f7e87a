/*
 * pipe.c - a shard's pool of pipes for the splice engine.
 *
 * Shard thread only. Pipes cost two fds each and, once privileges are
 * dropped, pipe-user-pages budget, so a tunnel holds one only while data
 * sits in it; an idle tunnel holds none. A pipe that may still hold data is
 * closed rather than reused (its bytes belong to a dead connection).
 */
#include "pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int
pipe_pool_init(struct pipe_pool *pp, unsigned cap, unsigned size)
{
    pp->fds = calloc(cap ? cap : 1, sizeof(*pp->fds));
    if (!pp->fds)
        return -ENOMEM;
    pp->n = 0;
    pp->cap = cap;
    pp->size = size;
    return 0;
}

void
pipe_pool_fini(struct pipe_pool *pp)
{
    for (unsigned i = 0; i < pp->n; i++) {
        close(pp->fds[i][0]);
        close(pp->fds[i][1]);
    }
    free(pp->fds);
    pp->fds = NULL;
    pp->n = 0;
}

int
pipe_get(struct pipe_pool *pp, int fds[2])
{
    if (pp->n) {
        pp->n--;
        fds[0] = pp->fds[pp->n][0];
        fds[1] = pp->fds[pp->n][1];
        return 0;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
        return -errno;
    /*
     * The default is 64 KiB (16 pages), but a user over pipe-user-pages-soft
     * gets 2 pages, so the size is asked for even when it is the default
     * (one fcntl per new pipe; pooled pipes skip it). If the kernel refuses
     * (pipe-max-size, or pipe-user-pages-soft, which an unprivileged user
     * reaches with size/4096 pages per pipe), this pipe keeps what it has
     * and the caller learns so (1): the relay then reads until -EAGAIN
     * instead of taking a short splice for a drained socket, and closes the
     * pipe rather than pooling it, so the next new pipe asks again.
     */
    if (fcntl(fds[1], F_SETPIPE_SZ, (int)pp->size) < 0)
        return 1;
    return 0;
}

void
pipe_put(struct pipe_pool *pp, int fds[2], bool empty)
{
    if (fds[0] < 0)
        return;
    if (empty && pp->n < pp->cap) {
        pp->fds[pp->n][0] = fds[0];
        pp->fds[pp->n][1] = fds[1];
        pp->n++;
    } else {
        close(fds[0]);
        close(fds[1]);
    }
    fds[0] = fds[1] = -1;
}
