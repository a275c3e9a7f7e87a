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
pipe_pool_init(struct pipe_pool *pp, unsigned cap, unsigned size, unsigned big_max,
               unsigned big_size)
{
    pp->fds = calloc(cap ? cap : 1, sizeof(*pp->fds));
    pp->big = calloc(big_max ? big_max : 1, sizeof(*pp->big));
    if (!pp->fds || !pp->big) {
        free(pp->fds);
        free(pp->big);
        pp->fds = pp->big = NULL;
        return -ENOMEM;
    }
    pp->n = 0;
    pp->cap = cap;
    pp->size = size;
    pp->nbig = pp->big_live = pp->big_backoff = 0;
    pp->big_max = big_size > size ? big_max : 0;
    pp->big_size = big_size;
    return 0;
}

void
pipe_pool_fini(struct pipe_pool *pp)
{
    for (unsigned i = 0; i < pp->n; i++) {
        close(pp->fds[i][0]);
        close(pp->fds[i][1]);
    }
    for (unsigned i = 0; i < pp->nbig; i++) {
        close(pp->big[i][0]);
        close(pp->big[i][1]);
    }
    free(pp->fds);
    free(pp->big);
    pp->fds = pp->big = NULL;
    pp->n = pp->nbig = pp->big_live = 0;
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

/*
 * Large pipes are a budget, not a pool size: every one that exists, busy or
 * idle, counts against big_max, so the pipe pages they hold stay within what
 * the operator gave (pipe_bulk_budget). Idle ones are kept (an empty pipe
 * holds no pages, only its slot array) so that a bulk stream, which takes and
 * gives back its pipe on every readiness, does not resize one each time.
 */
int
pipe_get_big(struct pipe_pool *pp, int fds[2])
{
    if (pp->nbig) {
        pp->nbig--;
        fds[0] = pp->big[pp->nbig][0];
        fds[1] = pp->big[pp->nbig][1];
        return 0;
    }
    if (pp->big_live >= pp->big_max)
        return -1;
    if (pp->big_backoff) {
        pp->big_backoff--;
        return -1;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
        return -1;
    if (fcntl(fds[1], F_SETPIPE_SZ, (int)pp->big_size) < (int)pp->big_size) {
        /* fs.pipe-max-size says no, and will again; fs.pipe-user-pages-hard or memory
         * pressure may not: ask again after a while rather than every readiness or never. */
        close(fds[0]);
        close(fds[1]);
        fds[0] = fds[1] = -1;
        pp->big_backoff = PIPE_BIG_BACKOFF;
        return -1;
    }
    pp->big_live++;
    return 0;
}

void
pipe_put_big(struct pipe_pool *pp, int fds[2], bool empty)
{
    if (fds[0] < 0)
        return;
    if (empty && pp->nbig < pp->big_max) {
        pp->big[pp->nbig][0] = fds[0];
        pp->big[pp->nbig][1] = fds[1];
        pp->nbig++;
    } else {
        close(fds[0]);
        close(fds[1]);
        pp->big_live--;
    }
    fds[0] = fds[1] = -1;
}
