/*
 * relay.c - moves bytes between a connected client and target.
 *
 * Shard thread only. Two engines, chosen per process:
 *  - splice: per direction, a poll on the source through the ring; when it
 *    says readable, splice(source -> pipe) and splice(pipe -> destination)
 *    are called right here on the shard, pipe-full after pipe-full, until the
 *    source is drained, the destination is full (then a poll for POLLOUT) or
 *    SPLICE_BUDGET bytes have moved. Sockets are O_NONBLOCK and the splices
 *    carry SPLICE_F_NONBLOCK, so no call ever waits. Not IORING_OP_SPLICE:
 *    io_uring runs every splice on an io-wq worker (REQ_F_FORCE_ASYNC), a
 *    thread hand-off per chunk that cost 1.6-2x the proxy CPU per GB of
 *    these direct calls (docs/design.md, "Relay").
 *  - copy: recv into a buffer picked by the kernel from the shard's provided
 *    buffer ring, then send it with MSG_DONTWAIT. A send the destination
 *    cannot take at once (short, or -EAGAIN) moves what is left into memory
 *    of the direction's own (a spill) and gives the buffer back before it
 *    waits for POLLOUT: a shared buffer is held only while a recv or send is
 *    in flight, never while a peer decides when to read (docs/design.md, "Slow receivers").
 *    The splice engine falls back to this for a chunk when no pipe can be
 *    had (fds exhausted), so a live tunnel is never dropped for want of a
 *    pipe.
 * Both: at most one chunk in flight per direction (back-pressure: nothing is
 * read until the previous chunk was written), EOF becomes shutdown(SHUT_WR)
 * on the other socket and the tunnel lives until both directions are done.
 * A direction decides its next step only when none of its ops is in flight.
 * A direction that waits for POLLOUT is on the shard's write-stall list:
 * write_timeout closes a tunnel whose destination takes nothing.
 *
 * The relay phase (relay_phase) gets the completions of the relay ops; it
 * never calls a phase before it (handshake, request, BIND) and they reach it
 * only through relay_start().
 */
#include "relay.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acct.h"
#include "conn.h"
#include "fault.h"
#include "limit.h"
#include "pipe.h"
#include "policy.h"
#include "shard_types.h"

#define RELAY_BGID    0
/* Idle pipes a shard keeps for reuse. */
#define PIPE_POOL_CAP 32
/* Bytes one direction moves per readiness before the others get their turn. */
#define SPLICE_BUDGET (1u << 20)

static inline int
src_fd(const struct conn *c, unsigned d)
{
    return d == DIR_C2T ? c->cfd : c->tfd;
}

static inline int
dst_fd(const struct conn *c, unsigned d)
{
    return d == DIR_C2T ? c->tfd : c->cfd;
}

/* Which side failed when an op on the source (or destination) of d failed. */
static inline enum conn_end
side_err(unsigned d, bool source)
{
    bool client = (d == DIR_C2T) == source;
    return client ? END_CLIENT_ERR : END_TARGET_ERR;
}

int
relay_init(struct shard *sh)
{
    const struct opts *o = sh->o;
    sh->relay.stall_head = sh->relay.stall_tail = CONN_NIL;
    /* The budget is split between the shards: each counts its own large pipes, no atomics. */
    unsigned big = 0;
    if (o->relay != RELAY_COPY && o->pipe_size_max > o->pipe_size &&
        o->pipe_bulk_budget >= o->pipe_size_max) {
        big = o->pipe_bulk_budget / o->pipe_size_max / (o->shards ? o->shards : 1);
        if (big == 0)
            big = 1; /* more shards than large pipes in the budget: one each, not none */
    }
    int ret = pipe_pool_init(&sh->relay.pipes, o->relay != RELAY_COPY ? PIPE_POOL_CAP : 0,
                             o->pipe_size, big, o->pipe_size_max);
    if (ret < 0)
        return ret;

    /*
     * Both engines get the buffer ring: the splice engine copies a chunk
     * through it when no pipe can be had (fds exhausted), rather than
     * dropping a live tunnel. Buffers are reserved, not touched, until used.
     */
    size_t ring_bytes = (size_t)o->buf_count * sizeof(struct io_uring_buf);
    void *r = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return -errno;
    void *b = mmap(NULL, (size_t)o->buf_count * o->buf_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (b == MAP_FAILED) {
        ret = -errno;
        munmap(r, ring_bytes);
        return ret;
    }
    sh->relay.br = r;
    sh->relay.bufs = b;
    io_uring_buf_ring_init(sh->relay.br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)r,
        .ring_entries = o->buf_count,
        .bgid = RELAY_BGID,
    };
    ret = io_uring_register_buf_ring(&sh->ring, &reg, 0);
    if (ret < 0)
        return ret;
    sh->relay.br_mask = io_uring_buf_ring_mask(o->buf_count);
    for (unsigned i = 0; i < o->buf_count; i++)
        io_uring_buf_ring_add(sh->relay.br, sh->relay.bufs + (size_t)i * o->buf_size, o->buf_size,
                              (unsigned short)i, sh->relay.br_mask, (int)i);
    io_uring_buf_ring_advance(sh->relay.br, (int)o->buf_count);
    return 0;
}

void
relay_fini(struct shard *sh)
{
    pipe_pool_fini(&sh->relay.pipes);
    if (sh->relay.br) {
        munmap(sh->relay.br, (size_t)sh->o->buf_count * sizeof(struct io_uring_buf));
        munmap(sh->relay.bufs, (size_t)sh->o->buf_count * sh->o->buf_size);
        sh->relay.br = NULL;
        sh->relay.bufs = NULL;
    }
    udq_free(&sh->relay.starved);
}

int64_t
relay_bufs_resident(const struct shard *sh)
{
    if (!sh->relay.bufs)
        return -1;
    size_t len = (size_t)sh->o->buf_count * sh->o->buf_size;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page;
    unsigned char *vec = malloc(pages);
    if (!vec)
        return -1;
    int64_t n = -1;
    if (mincore(sh->relay.bufs, len, vec) == 0) {
        n = 0;
        for (size_t i = 0; i < pages; i++)
            n += vec[i] & 1;
        n *= (int64_t)page;
    }
    free(vec);
    return n;
}

static void dir_step(struct shard *sh, struct conn *c, unsigned d);

/*
 * Copy engine: a buffer goes back to the ring, and the oldest starved
 * direction reads again. Only directions with data waiting are queued (see
 * starve()), so the one woken takes the buffer: one recv per returned
 * buffer, however many wait. Queueing quiet directions too would break
 * this: a recv picks its buffer when it is issued, so a quiet one would
 * wait on a poll and leave the buffer in the ring while a direction with
 * data stayed queued behind it (docs/design.md, "copy").
 */
static void
wake_starved(struct shard *sh)
{
    uint64_t e;
    while (udq_pop(&sh->relay.starved, &e)) {
        unsigned d = conn_ref_tag(e);
        struct conn *c = conn_from_ref(sh, e);
        if (!c || c->state != CONN_RELAY || !(c->dir[d].flags & RD_STARVED))
            continue; /* closed while it waited */
        c->dir[d].flags &= (uint16_t)~RD_STARVED;
        sh->relay.bufs_promised++;
        dir_step(sh, c, d);
        return;
    }
}

static void
buf_recycle(struct shard *sh, uint16_t bid)
{
    io_uring_buf_ring_add(sh->relay.br, sh->relay.bufs + (size_t)bid * sh->o->buf_size,
                          sh->o->buf_size, bid, sh->relay.br_mask, 0);
    io_uring_buf_ring_advance(sh->relay.br, 1);
    sh->relay.bufs_held--;
    wake_starved(sh);
}

void
relay_batch_end(struct shard *sh)
{
    /* A buffer that already woke a direction in this batch is still in the ring (its recv
     * is not submitted yet): it is that direction's, not one more to wake for. */
    uint32_t back = sh->o->buf_count - sh->relay.bufs_held;
    uint32_t free = back > sh->relay.bufs_promised ? back - sh->relay.bufs_promised : 0;
    for (; free && sh->relay.starved.len; free--)
        wake_starved(sh);
    sh->relay.bufs_promised = 0;
}

/*
 * A recv found no buffer (-ENOBUFS). A recv picks its buffer when it is
 * issued, data or not, so this says nothing of the socket: unless a poll
 * has just said it is readable, the direction polls first (RD_WAIT_DATA)
 * and holds no place in the queue. One with data waiting is queued: the
 * next buffer that comes back wakes it. A buffer may also be back in the
 * ring already, returned after the kernel failed this recv but before its
 * completion was seen here (a return nobody will make again: found by
 * one_copy_buffer_serves_all, --bufs 1 and eight echo tunnels stalled);
 * relay_batch_end() wakes the queue for it once the batch of completions
 * is seen. Reading again at once instead cost a recv per failed recv:
 * about 240 SQEs per 16 KiB echo with 256 tunnels on 4 buffers.
 */
static void
starve(struct shard *sh, struct conn *c, unsigned d)
{
    if (!(c->dir[d].flags & RD_FULL)) {
        c->dir[d].flags |= RD_WAIT_DATA;
        return;
    }
    if (udq_push(&sh->relay.starved, conn_ref(c, d)) < 0) {
        conn_close(sh, c, END_RESOURCE);
        return;
    }
    c->dir[d].flags |= RD_STARVED;
}

/*
 * splice(2) called on the shard. Both sockets are O_NONBLOCK and
 * SPLICE_F_NONBLOCK covers the pipe, so it never waits: -EAGAIN instead.
 */
static ssize_t
splice_now(int in, int out, size_t len)
{
    ssize_t n;
    do
        n = splice(in, NULL, out, NULL, len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/*
 * The write-stall list: directions whose pending bytes wait for their
 * destination, a node per direction (slot << 1 | dir) so that each has its
 * own stamp. Every append is stamped now and the clock never goes back, so
 * the list stays ordered and expiry looks only at the head: exact to the
 * 100 ms of the stamps, O(1) per event, whatever write_timeout a reload sets.
 * (The idle list's lazy requeue by last activity would not keep it ordered.)
 */
static struct relay_dir *
stall_dir(struct shard *sh, uint32_t node)
{
    return &sh->conns[node >> 1].dir[node & 1];
}

static void
stall_unlink(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    if (!(rd->flags & RD_STALLED))
        return;
    if (rd->sprev != CONN_NIL)
        stall_dir(sh, rd->sprev)->snext = rd->snext;
    else
        sh->relay.stall_head = rd->snext;
    if (rd->snext != CONN_NIL)
        stall_dir(sh, rd->snext)->sprev = rd->sprev;
    else
        sh->relay.stall_tail = rd->sprev;
    rd->sprev = rd->snext = CONN_NIL;
    rd->flags &= (uint16_t)~RD_STALLED;
}

static void
stall_append(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    uint32_t node = c->slot << 1 | d;
    rd->flags |= RD_STALLED;
    rd->stall_ds = sh->now_ds;
    rd->snext = CONN_NIL;
    rd->sprev = sh->relay.stall_tail;
    if (sh->relay.stall_tail != CONN_NIL)
        stall_dir(sh, sh->relay.stall_tail)->snext = node;
    else
        sh->relay.stall_head = node;
    sh->relay.stall_tail = node;
}

/* d waits for its destination: on the list, unless it is already. */
static void
stall_wait(struct shard *sh, struct conn *c, unsigned d)
{
    if (!(c->dir[d].flags & RD_STALLED) && c->state == CONN_RELAY)
        stall_append(sh, c, d);
}

/* d wrote something: its clock starts again (or it leaves the list, drained). */
static void
stall_wrote(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    if (!(rd->flags & RD_STALLED))
        return;
    stall_unlink(sh, c, d);
    if (rd->pending)
        stall_append(sh, c, d);
}

void
relay_tick(struct shard *sh)
{
    /* Close the tunnels whose oldest waiting direction wrote nothing for write_timeout. */
    uint32_t to = (uint32_t)sh->pol->write_timeout_s * 10;
    if (to == 0)
        return;
    while (sh->relay.stall_head != CONN_NIL) {
        struct conn *c = &sh->conns[sh->relay.stall_head >> 1];
        /* "<=": both stamps are floored to 100 ms, so this never fires early. */
        if (c->state == CONN_RELAY &&
            sh->now_ds - stall_dir(sh, sh->relay.stall_head)->stall_ds <= to)
            break;
        stall_unlink(sh, c, DIR_C2T);
        stall_unlink(sh, c, DIR_T2C);
        conn_close(sh, c, END_WRITE_TIMEOUT); /* no-op for one already closing */
    }
}

/* n pending bytes reached the destination, by either engine: counted, and a
 * direction waiting on its destination restarts its write_timeout clock. */
static void
wrote(struct shard *sh, struct conn *c, unsigned d, uint32_t n)
{
    struct relay_dir *rd = &c->dir[d];
    rd->pending -= n;
    rd->bytes += n;
    if (c->acct)
        lim_bytes(&c->acct->n, d, n); /* counted as it goes: accounting */
    c->active_ds = sh->now_ds;
    stall_wrote(sh, c, d);
}

/* Empty the pipe into the destination: 1 emptied, 0 the destination is full
 * (RD_POLLOUT set, the rest stays in the pipe), -1 the tunnel was closed. */
static int
pipe_flush(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    while (rd->pending) {
        ssize_t m = splice_now(rd->pipe_r, dst_fd(c, d), rd->pending);
        if (m > 0) {
            wrote(sh, c, d, (uint32_t)m);
            continue;
        }
        if (m == -EAGAIN) {
            rd->flags |= RD_POLLOUT;
            return 0;
        }
        conn_close(sh, c, side_err(d, false));
        return -1;
    }
    return 1;
}

static void copy_recv(struct shard *sh, struct conn *c, unsigned d, uint32_t len);

/* The pool took or kept a pipe: ringsocks_pipes_idle, the fds it holds for no tunnel. */
static void
pool_gauge(struct shard *sh)
{
    __atomic_store_n(&sh->st.pipes_idle, sh->relay.pipes.n + sh->relay.pipes.nbig,
                     __ATOMIC_RELAXED);
}

/*
 * The source is readable: move pipe-fulls until it is drained, the
 * destination is full, or SPLICE_BUDGET bytes have moved; then the re-armed
 * poll fires at once and the shard's other tunnels get their turn first.
 * Returns 1 to go on (arm the poll or forward EOF), 0 to wait for POLLOUT,
 * -1 when the tunnel was closed or a copy-engine recv went out instead
 * (no pipe could be had).
 */
static int
splice_pump(struct shard *sh, struct conn *c, unsigned d, size_t budget, size_t *read)
{
    struct relay_dir *rd = &c->dir[d];
    *read = 0;
    rd->flags &= (uint16_t)~RD_FULL;
    if (rd->pipe_r < 0) {
        int fds[2];
        int got = -1;
        if (rd->flags & RD_BULK) {
            if (pipe_get_big(&sh->relay.pipes, fds) == 0) {
                STAT_INC(sh->st.pipe_large);
                rd->flags |= RD_BIG_PIPE;
                got = 0;
            } else
                STAT_INC(sh->st.pipe_large_denied);
        }
        if (got < 0)
            got = pipe_get(&sh->relay.pipes, fds);
        pool_gauge(sh);
        if (got < 0) {
            STAT_INC(sh->st.pipe_fallbacks);
            if (limit_bw(c, d))
                c->lim->bw[d].granted = (uint32_t)budget;
            copy_recv(sh, c, d, budget < sh->o->buf_size ? (uint32_t)budget : sh->o->buf_size);
            return -1;
        }
        if (got > 0) {
            STAT_INC(sh->st.pipe_small);
            rd->flags |= RD_SMALL_PIPE;
        }
        rd->pipe_r = fds[0];
        rd->pipe_w = fds[1];
    }
    /* A short read means a drained socket only when the pipe had room for
     * len: a pipe of unknown, smaller size reads on until -EAGAIN. */
    size_t len = rd->flags & RD_BIG_PIPE ? sh->relay.pipes.big_size : sh->relay.pipes.size;
    size_t moved = 0;
    bool sized = !(rd->flags & RD_SMALL_PIPE);
    for (;;) {
        size_t want = budget - moved < len ? budget - moved : len;
        ssize_t n = splice_now(src_fd(c, d), rd->pipe_w, want);
        if (n == 0)
            rd->flags |= RD_EOF;
        if (n == 0 || n == -EAGAIN)
            return 1;
        if (n < 0) {
            conn_close(sh, c, side_err(d, true));
            return -1;
        }
        rd->pending = (uint32_t)n;
        *read += (size_t)n;
        int f = pipe_flush(sh, c, d);
        if (f <= 0) {
            /* A full pipe: once the destination drains, read on without a poll. */
            if (f == 0 && ((size_t)n == len || !sized))
                rd->flags |= RD_FULL;
            return f;
        }
        moved += (size_t)n;
        /* A short read drained the socket: the next splice would say -EAGAIN. */
        if (((size_t)n < want && sized) || moved >= budget)
            return 1;
    }
}

static void
copy_recv(struct shard *sh, struct conn *c, unsigned d, uint32_t len)
{
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_RECV, d);
    io_uring_prep_recv(sqe, src_fd(c, d), NULL, len, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RELAY_BGID;
    c->dir[d].ops++;
}

static void dir_read(struct shard *sh, struct conn *c, unsigned d);

static uint8_t *
pending_data(struct shard *sh, const struct relay_dir *rd)
{
    if (rd->flags & RD_SPILLED)
        return rd->spill + rd->off;
    return sh->relay.bufs + (size_t)rd->bid * sh->o->buf_size + rd->off;
}

/*
 * Copy engine, the destination is full: move the pending bytes out of the
 * shared buffer into memory of the direction's own and give the buffer back
 * (which may wake a starved direction, and through it close c). Nothing in
 * flight points into the buffer: the send came back and only a poll waits.
 * Out of memory: the direction keeps the buffer, as before spills existed,
 * and write_timeout still bounds the wait.
 */
static void
spill(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    uint8_t *m = malloc(rd->pending);
    if (!m)
        return;
    memcpy(m, pending_data(sh, rd), rd->pending);
    rd->spill = m;
    rd->off = 0;
    rd->flags = (uint16_t)((rd->flags & ~RD_HOLD_BUF) | RD_SPILLED);
    STAT_INC(sh->st.spills);
    STAT_ADD(sh->st.spilled_bytes, rd->pending);
    buf_recycle(sh, rd->bid);
}

/* Copy engine: everything was written; the buffer or spill goes back. */
static void
copy_drained(struct shard *sh, struct relay_dir *rd)
{
    if (rd->flags & RD_HOLD_BUF) {
        rd->flags &= (uint16_t)~RD_HOLD_BUF;
        buf_recycle(sh, rd->bid);
    } else if (rd->flags & RD_SPILLED) {
        STAT_ADD(sh->st.spilled_bytes, -(int64_t)(rd->off + rd->pending));
        free(rd->spill);
        rd->spill = NULL;
        rd->flags &= (uint16_t)~RD_SPILLED;
    }
}

/*
 * Write what was read: a send from the provided buffer or spill, or out of
 * the pipe at once; when the destination is full (RD_POLLOUT), a poll for
 * room, and the direction counts towards write_timeout until it writes.
 * MSG_DONTWAIT: without it io_uring parks a send the socket cannot take on an
 * internal poll, holding the buffer for as long as the peer does not read.
 */
static void
dir_write(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    struct io_uring_sqe *sqe;
    bool copy = rd->flags & (RD_HOLD_BUF | RD_SPILLED);
    if (!(rd->flags & RD_POLLOUT)) {
        if (copy) {
            sqe = conn_sqe(sh, c, OP_SEND, d);
            io_uring_prep_send(sqe, dst_fd(c, d), pending_data(sh, rd), rd->pending,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
            rd->ops++;
            return;
        }
        int f = pipe_flush(sh, c, d);
        if (f < 0)
            return;
        if (f > 0) {
            dir_read(sh, c, d);
            return;
        }
    }
    sqe = conn_sqe(sh, c, OP_POLL_OUT, d);
    io_uring_prep_poll_add(sqe, dst_fd(c, d), POLLOUT);
    rd->ops++;
    stall_wait(sh, c, d);
    if (rd->flags & RD_HOLD_BUF)
        spill(sh, c, d); /* last: it may close c */
}

/*
 * Give the direction's pipe back: to the pool when it is empty and has the
 * configured size, else closed (a small one, so that the next new pipe asks
 * for the size again instead of the pool keeping the small one for good).
 */
static void
release_pipe(struct shard *sh, struct relay_dir *rd)
{
    if (rd->pipe_r < 0)
        return;
    int fds[2] = {rd->pipe_r, rd->pipe_w};
    if (rd->flags & RD_BIG_PIPE)
        pipe_put_big(&sh->relay.pipes, fds, rd->pending == 0);
    else
        pipe_put(&sh->relay.pipes, fds, rd->pending == 0 && !(rd->flags & RD_SMALL_PIPE));
    rd->pipe_r = rd->pipe_w = -1;
    rd->flags &= (uint16_t) ~(RD_SMALL_PIPE | RD_BIG_PIPE);
    pool_gauge(sh);
}

/*
 * A direction under a bandwidth limit (limit.h) that may not read now sleeps
 * on a timer (OP_THROTTLE) instead of polling: nothing is read, so TCP's own
 * back-pressure slows the sender, and no poll fires for bytes it may not take.
 */
static void
throttle(struct shard *sh, struct conn *c, unsigned d, uint64_t wait_ns)
{
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_THROTTLE, d);
    io_uring_prep_timeout(sqe, limit_timer(c, d, wait_ns), 0, 0);
    c->dir[d].ops++;
}

/* Nothing is pending: forward EOF, or read the next chunk. */
static void
dir_read(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    /* Drained: the pipe goes back, so an idle tunnel holds none. */
    release_pipe(sh, rd);
    /* A fault's cut (rst_/fin_ after N bytes): its bytes are out, the tunnel ends. */
    if (c->fault && fault_relay_cut(sh, c, d))
        return;
    if (rd->flags & RD_EOF) {
        shutdown(dst_fd(c, d), SHUT_WR);
        rd->flags |= RD_DONE;
        return;
    }
    if (rd->flags & RD_STARVED)
        return;
    /* A limited direction takes its bandwidth when there is something to read, never for a
     * recv that may wait: it polls first with either engine. */
    bool limited = limit_bw(c, d);
    bool poll_first =
        rd->flags & RD_SPLICE || limited ? !(rd->flags & RD_FULL) : (rd->flags & RD_WAIT_DATA);
    if (poll_first) {
        rd->flags &= (uint16_t)~RD_WAIT_DATA;
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_POLL_IN, d);
        io_uring_prep_poll_add(sqe, src_fd(c, d), POLLIN | POLLRDHUP);
        rd->ops++;
        return;
    }
    uint32_t budget = rd->flags & RD_SPLICE ? SPLICE_BUDGET : sh->o->buf_size;
    if (c->fault)
        budget = fault_relay_budget(c, d, budget);
    if (limited) {
        /* Reserve what can be read, no more: a reservation larger than the bytes there would
         * hold time in the shared bucket that nobody uses (100 tunnels of one user moved 8 %
         * under the rate that way). The bytes stay: nothing else reads this socket. */
        int avail = 0;
        if (!c->lim->bw[d].reserved && ioctl(src_fd(c, d), FIONREAD, &avail) == 0)
            budget = avail <= 0 ? 1 : ((uint32_t)avail < budget ? (uint32_t)avail : budget);
        uint64_t wait_ns;
        budget = limit_grant(sh, c, d, budget, &wait_ns);
        if (budget == 0) {
            throttle(sh, c, d, wait_ns);
            return;
        }
    }
    if (!(rd->flags & RD_SPLICE)) {
        if (limited)
            c->lim->bw[d].granted = budget;
        copy_recv(sh, c, d, budget);
        return;
    }
    size_t read;
    int f = splice_pump(sh, c, d, budget, &read);
    if (limited && f != -1 && read < budget)
        limit_unused(c, d, (uint32_t)(budget - read));
    /* Adaptive pipes: a readiness that found a small pipe's worth or more waiting makes the
     * direction bulk (its next readiness gets a large pipe, within the budget); one that
     * found less makes it ordinary again. An idle direction holds no pipe of either size. */
    if (f == -1)
        return;
    if (read >= sh->relay.pipes.size)
        rd->flags |= RD_BULK;
    else
        rd->flags &= (uint16_t)~RD_BULK;
    if (f == 0)
        dir_write(sh, c, d); /* RD_POLLOUT is set: waits for room */
    else
        dir_read(sh, c, d); /* RD_FULL is clear: hands back the pipe, then EOF or the poll */
}

static void
dir_step(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    if (c->state != CONN_RELAY || rd->ops || (rd->flags & RD_DONE))
        return;
    if (rd->pending)
        dir_write(sh, c, d);
    else
        dir_read(sh, c, d);
    if (c->state == CONN_RELAY && (c->dir[0].flags & RD_DONE) && (c->dir[1].flags & RD_DONE))
        conn_close(sh, c, END_DONE);
}

void
relay_start(struct shard *sh, struct conn *c)
{
    conn_enter(c, &relay_phase);
    c->state = CONN_RELAY;
    STAT_INC(sh->st.tunnels);
    STAT_INC(sh->st.open_by_cmd[c->cmd < STAT_CMDS ? c->cmd : 0]);
    c->flags |= CONN_F_OPEN_COUNTED;
    if (sh->o->relay == RELAY_SPLICE) {
        c->dir[DIR_C2T].flags |= RD_SPLICE;
        c->dir[DIR_T2C].flags |= RD_SPLICE;
    }
    conn_timer_set(sh, c, TL_IDLE);
    if (c->fault)
        fault_relay_start(sh, c);
    dir_step(sh, c, DIR_C2T);
    dir_step(sh, c, DIR_T2C);
}

/* Account for one poll result of the splice engine. Returns false when the
 * tunnel must close. */
static bool
poll_done(struct conn *c, unsigned d, unsigned op, int res)
{
    struct relay_dir *rd = &c->dir[d];
    switch (op) {
    case OP_POLL_IN:
        if (res >= 0)
            rd->flags |= RD_FULL; /* readable: read at once */
        return res >= 0 || res == -ECANCELED;
    case OP_POLL_OUT:
        if (res >= 0)
            rd->flags &= (uint16_t)~RD_POLLOUT;
        return res >= 0 || res == -ECANCELED;
    default:
        return false;
    }
}

static bool
copy_done(struct shard *sh, struct conn *c, unsigned d, unsigned op, int res, unsigned cqe_flags)
{
    struct relay_dir *rd = &c->dir[d];
    if (op == OP_RECV) {
        if (cqe_flags & IORING_CQE_F_BUFFER)
            sh->relay.bufs_held++;
        if (limit_bw(c, d) && c->lim->bw[d].granted) {
            uint32_t got = res > 0 ? (uint32_t)res : 0, g = c->lim->bw[d].granted;
            if (got < g)
                limit_unused(c, d, g - got);
            c->lim->bw[d].granted = 0;
        }
        if (res > 0 && (cqe_flags & IORING_CQE_F_BUFFER)) {
            rd->bid = (uint16_t)(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
            rd->off = 0;
            rd->pending = (uint32_t)res;
            rd->flags |= RD_HOLD_BUF;
            rd->flags &= (uint16_t)~RD_FULL; /* read: whether more waits is unknown again */
            if ((unsigned)res == sh->o->buf_size && sh->o->relay == RELAY_AUTO &&
                !(rd->flags & RD_SPLICE)) {
                rd->flags |= RD_SPLICE | RD_FULL; /* bulk: splice from the next read on */
                STAT_INC(sh->st.splice_switches);
            }
            return true;
        }
        if (cqe_flags & IORING_CQE_F_BUFFER)
            buf_recycle(sh, (uint16_t)(cqe_flags >> IORING_CQE_BUFFER_SHIFT));
        if (res == 0)
            rd->flags |= RD_EOF;
        if (res == -ENOBUFS && c->state == CONN_RELAY) {
            starve(sh, c, d);
            return true;
        }
        return res == 0 || res == -ECANCELED || res == -ENOBUFS;
    }
    if (op == OP_SEND) {
        if (res > 0) {
            rd->off += (uint32_t)res;
            wrote(sh, c, d, (uint32_t)res);
            if (rd->pending == 0)
                copy_drained(sh, rd);
            else
                rd->flags |= RD_POLLOUT; /* short: the socket took what it had room for */
            return true;
        }
        if (res == -EAGAIN) {
            rd->flags |= RD_POLLOUT;
            return true;
        }
        return res == -ECANCELED;
    }
    return false;
}

static void
relay_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    unsigned op = ud_op(cqe->user_data), d = ud_arg(cqe->user_data);
    int res = cqe->res;
    struct relay_dir *rd = &c->dir[d];
    bool ok;
    rd->ops--;
    /* Also while closing: a buffer the recv took goes back. */
    if (op == OP_RECV || op == OP_SEND)
        ok = copy_done(sh, c, d, op, res, cqe->flags);
    else if (op == OP_THROTTLE)
        ok = true; /* -ETIME: the wait is over; the next read asks again */
    else if (op == OP_FAULT) {
        fault_timer_done(c, d); /* a reset waiting for the client to have every byte */
        ok = true;
    } else
        ok = poll_done(c, d, op, res);
    if (c->state != CONN_RELAY)
        return;
    if (!ok) {
        bool source = op == OP_POLL_IN || op == OP_RECV;
        conn_close(sh, c, side_err(d, source));
        return;
    }
    dir_step(sh, c, d);
}

static void
relay_release(struct shard *sh, struct conn *c)
{
    for (unsigned d = 0; d < 2; d++) {
        struct relay_dir *rd = &c->dir[d];
        /* A reservation the tunnel did not live to read goes back to the bucket. */
        if (limit_bw(c, d) && c->lim->bw[d].reserved) {
            limit_unused(c, d, c->lim->bw[d].reserved);
            c->lim->bw[d].reserved = 0;
        }
        stall_unlink(sh, c, d);
        release_pipe(sh, rd);
        copy_drained(sh, rd);
        rd->flags &= (uint16_t)~RD_STARVED;
    }
}

/* Idle timeout: the slot layer's default (close, idle_timeout). A hang-up is the
 * relay's own EOF to read. */
const struct conn_phase relay_phase = {
    .name = "relay",
    .on_cqe = relay_on_cqe,
    .release = relay_release,
};
