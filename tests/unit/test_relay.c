/*
 * test_relay.c - src/relay.c, the relay phase, on real sockets with the fake
 * ring of fake_ring.h playing the kernel: client and target are AF_UNIX
 * stream socket pairs (splice works on them both ways), the splice engine's
 * pipes come from the real pipe pool, and the copy engine's provided buffer
 * ring lives in plain memory (relay_init() registers it with a faked
 * io_uring_register_buf_ring()) from which the fake kernel picks buffers for
 * RECV, -ENOBUFS when none is there.
 *
 * Rules, for the splice and the copy engine (and auto's switch between them):
 * at most one chunk in flight per direction, checked after every CQE of every
 * test (back-pressure: nothing is read until the previous chunk was written);
 * EOF becomes shutdown(SHUT_WR) on the other side and the tunnel lives until
 * both directions are done, then ends END_DONE; a full destination puts the
 * direction on the write-stall list, and relay_tick() closes the tunnel
 * END_WRITE_TIMEOUT only after write_timeout without a byte written. Copy
 * engine: a blocked send spills and gives its buffer back at once; with every
 * buffer out, a direction with data waiting is queued and woken by the next
 * buffer that comes back (the oldest first, before the direction that gave it
 * back reads again), one recv per buffer, while a quiet one polls first;
 * relay_batch_end() wakes queued directions for buffers already back, and only
 * for those no direction was woken for in the batch. Nothing leaks: at every
 * test's end each op has completed, each slot is free, each buffer is back.
 *
 * Links relay.o with pipe.o and the real slot layer (conn.o, clients.o,
 * addr.o). Fakes: ring_sqe() (fake_ring.h), io_uring_register_buf_ring(),
 * log_push(), policy_decide() and users_hash() (fake_shard.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "conn.h"
#include "relay.h"
#include "shard_types.h"
#include "fault.h"
#include "socks5.h"

#include "fake_shard.h"

/* --- fakes of the neighbours --------------------------------------------- */

static unsigned n_registered;

int
io_uring_register_buf_ring(struct io_uring *ring, struct io_uring_buf_reg *reg, unsigned int flags)
{
    (void)ring;
    (void)flags;
    assert_int_equal(reg->bgid, 0);
    n_registered++;
    return 0;
}

/* No tunnel here commits a fault (c->fault stays NULL): the relay never calls these. */
void
fault_relay_start(struct shard *sh, struct conn *c)
{
    (void)sh;
    (void)c;
    fail();
}

uint32_t
fault_relay_budget(const struct conn *c, unsigned d, uint32_t budget)
{
    (void)c;
    (void)d;
    fail();
    return budget;
}

bool
fault_relay_cut(struct shard *sh, struct conn *c, unsigned d)
{
    (void)sh;
    (void)c;
    (void)d;
    fail();
    return false;
}

void
fault_timer_done(struct conn *c, unsigned arg)
{
    (void)c;
    (void)arg;
    fail();
}

/* --- the fake shard ------------------------------------------------------ */

static struct shard sh;
static struct opts o;
static struct policy pol;
static uint32_t hold_slot; /* hold_sends(): whose sends the kernel leaves waiting (CONN_NIL: all) */

struct engine {
    enum relay_engine relay;
    unsigned buf_count, buf_size, pipe_size;
    unsigned pipe_size_max, pipe_bulk_budget; /* adaptive pipes; 0: none */
};
static const struct engine e_splice = {RELAY_SPLICE, 8, 4096, 65536, 0, 0};
static const struct engine e_copy = {RELAY_COPY, 8, 4096, 65536, 0, 0};
static const struct engine e_auto = {RELAY_AUTO, 8, 4096, 65536, 0, 0};
static const struct engine e_copy2 = {RELAY_COPY, 2, 4096, 65536, 0, 0}; /* starvation is easy */
/*
 * Chunks larger than what an AF_UNIX socket with an 8 KiB send buffer takes after
 * its reader drained it: writes come out short, and a direction writes part of a
 * chunk and waits again.
 */
static const struct engine e_splice_big = {RELAY_SPLICE, 8, 4096, 1 << 20, 0, 0};
static const struct engine e_copy_big = {RELAY_COPY, 8, 65536, 65536, 0, 0};
/* Adaptive pipes: 64 KiB pipes that grow to 1 MiB for bulk directions, two large ones at most
 * (budget1: one). */
static const struct engine e_adapt = {RELAY_SPLICE, 8, 4096, 65536, 1 << 20, 2 << 20};
static const struct engine e_adapt1 = {RELAY_SPLICE, 8, 4096, 65536, 1 << 20, 1 << 20};

/* Ops of slot's direction d in flight or with a CQE not yet delivered. */
static unsigned
dir_ops(uint32_t slot, unsigned d)
{
    unsigned n = 0;
    for (unsigned op = OP_POLL_IN; op <= OP_SEND; op++)
        n += fr_count(op, slot, (int)d) + fr_cq_count(op, slot, (int)d);
    return n;
}

/*
 * After every CQE: each direction of a relaying tunnel has at most one op out,
 * its own count agrees with the ring, and a direction holding bytes it has not
 * written reads nothing (one chunk at a time).
 */
static void
check_dirs(struct shard *s)
{
    for (uint32_t i = 0; i < s->high; i++) {
        const struct conn *c = &s->conns[i];
        if (c->state != CONN_RELAY)
            continue;
        for (unsigned d = 0; d < 2; d++) {
            const struct relay_dir *rd = &c->dir[d];
            assert_true(rd->ops <= 1);
            assert_int_equal(dir_ops(i, d), rd->ops);
            if (rd->pending) {
                assert_int_equal(fr_count(OP_POLL_IN, i, (int)d), 0);
                assert_int_equal(fr_count(OP_RECV, i, (int)d), 0);
            }
            if (rd->flags & RD_STARVED)
                assert_int_equal(rd->ops, 0);
            /* A large pipe holds no more than its size, a small one no more than pipe_size. */
            assert_true(rd->pending <= (rd->flags & RD_BIG_PIPE ? s->relay.pipes.big_size
                                                                : s->relay.pipes.size) ||
                        !(rd->flags & RD_SPLICE));
        }
    }
    /* Large pipes never exceed the budget, and the idle ones are among those that exist. */
    assert_true(s->relay.pipes.big_live <= s->relay.pipes.big_max);
    assert_true(s->relay.pipes.nbig <= s->relay.pipes.big_live);
    /* ringsocks_pipes_idle: the pipes the pool holds for no tunnel. */
    assert_int_equal(s->st.pipes_idle, s->relay.pipes.n + s->relay.pipes.nbig);
}

static void
start(const struct engine *e)
{
    memset(&o, 0, sizeof(o));
    memset(&pol, 0, sizeof(pol));
    o.relay = e->relay;
    o.buf_count = e->buf_count;
    o.buf_size = e->buf_size;
    o.pipe_size = e->pipe_size;
    o.pipe_size_max = e->pipe_size_max;
    o.pipe_bulk_budget = e->pipe_bulk_budget;
    fs_start(&sh, &o, &pol, 16);
    n_registered = 0;
    assert_int_equal(relay_init(&sh), 0);
    assert_int_equal(n_registered, 1);
    fr_use_buf_ring(sh.relay.br, o.buf_count);
    assert_int_equal(fr_bufs_free(), o.buf_count);
    fr_batch_end = relay_batch_end;
    fr_after_cqe = check_dirs;
    hold_slot = CONN_NIL;
}

static int
setup(void **state)
{
    start(*state);
    return 0;
}

struct tun {
    struct conn *c;
    uint32_t slot, gen;
    int client, target; /* the programs' ends */
};

#define MAX_TUN 12
static struct tun tuns[MAX_TUN];
static unsigned n_tuns;

/* Buffers: those in the ring plus those the relay holds are all there are. */
static void
check_buffers(void)
{
    unsigned holding = 0;
    for (uint32_t i = 0; i < sh.high; i++)
        for (unsigned d = 0; d < 2; d++)
            holding += sh.conns[i].state != CONN_FREE && (sh.conns[i].dir[d].flags & RD_HOLD_BUF);
    assert_int_equal(sh.relay.bufs_held, holding);
    assert_int_equal(fr_bufs_free() + sh.relay.bufs_held, o.buf_count);
}

static int
teardown(void **state)
{
    (void)state;
    fs_close_all(&sh, true);
    assert_int_equal(sh.st.spilled_bytes, 0);
    check_buffers();
    relay_fini(&sh);
    fs_fini(&sh);
    for (unsigned i = 0; i < n_tuns; i++) {
        close(tuns[i].client);
        close(tuns[i].target);
    }
    n_tuns = 0;
    return 0;
}

/* A connected client and target (sndbuf: the proxy's send buffers, 0 default), relaying. */
static struct tun *
tunnel(int sndbuf)
{
    assert_true(n_tuns < MAX_TUN);
    struct tun *t = &tuns[n_tuns++];
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    if (sndbuf) {
        assert_int_equal(setsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
        assert_int_equal(setsockopt(b[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
    }
    struct conn *c = conn_alloc(&sh, &fs_before_phase);
    assert_non_null(c);
    c->cfd = a[0];
    c->tfd = b[0];
    c->cmd = SOCKS5_CMD_CONNECT;
    t->c = c;
    t->slot = c->slot;
    t->gen = c->gen;
    t->client = a[1];
    t->target = b[1];
    relay_start(&sh, c);
    assert_int_equal(c->state, CONN_RELAY);
    return t;
}

static bool
alive(const struct tun *t)
{
    return t->c->gen == t->gen && t->c->state == CONN_RELAY;
}

static bool
freed(const struct tun *t)
{
    return t->c->gen != t->gen;
}

/* --- byte streams with a pattern, checked where they arrive -------------- */

struct stream {
    uint64_t sent, got;
    unsigned seed;
};

static uint8_t
pat(const struct stream *s, uint64_t pos)
{
    return (uint8_t)(s->seed + pos * 131 + (pos >> 11));
}

/* Write up to n bytes of s to fd, without blocking: how many went. */
static size_t
put(int fd, struct stream *s, size_t n)
{
    uint8_t buf[16384];
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
        for (size_t i = 0; i < k; i++)
            buf[i] = pat(s, s->sent + i);
        ssize_t w = send(fd, buf, k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w <= 0)
            break;
        s->sent += (size_t)w;
        done += (size_t)w;
    }
    return done;
}

/* Read what fd has (at most max), checking each byte against s: how many came. */
static size_t
get(int fd, struct stream *s, size_t max)
{
    uint8_t buf[16384];
    size_t done = 0;
    while (done < max) {
        size_t k = max - done < sizeof(buf) ? max - done : sizeof(buf);
        ssize_t r = recv(fd, buf, k, MSG_DONTWAIT);
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(s, s->got + (uint64_t)i))
                fail_msg("byte %llu differs", (unsigned long long)(s->got + (uint64_t)i));
        s->got += (uint64_t)r;
        done += (size_t)r;
    }
    return done;
}

static bool
at_eof(int fd)
{
    char b;
    return recv(fd, &b, 1, MSG_DONTWAIT) == 0;
}

static int
unread(int fd)
{
    int n = -1;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

/* Move total bytes each way through t, reading as they come. */
static void
pump_both(struct tun *t, struct stream *up, struct stream *down, size_t total)
{
    for (unsigned round = 0; round < 100000; round++) {
        if (up->got == total && down->got == total)
            return;
        put(t->client, up, total - up->sent);
        put(t->target, down, total - down->sent);
        fr_run(&sh, 1000);
        get(t->target, up, SIZE_MAX);
        get(t->client, down, SIZE_MAX);
        assert_true(alive(t));
    }
    fail_msg("stuck: up %llu of %zu, down %llu of %zu", (unsigned long long)up->got, total,
             (unsigned long long)down->got, total);
}

/* --- the tests ------------------------------------------------------------- */

/* Bytes go both ways, whole and in order, and are counted per direction. */
static void
test_both_ways(void **state)
{
    (void)state;
    struct tun *t = tunnel(0);
    struct stream up = {.seed = 1}, down = {.seed = 2};
    const size_t total = 1 << 20;
    pump_both(t, &up, &down, total);
    assert_int_equal(t->c->dir[DIR_C2T].bytes, total);
    assert_int_equal(t->c->dir[DIR_T2C].bytes, total);
    check_buffers();
    /* The engine asked for did the work: splice never copied through a buffer. */
    if (o.relay == RELAY_SPLICE) {
        assert_int_equal(fr_recvs, 0);
        assert_int_equal(sh.st.pipe_fallbacks, 0);
    } else {
        assert_true(fr_recvs > 0);
    }
    /* Idle now: each direction waits on its source, holding no pipe and no buffer. */
    for (unsigned d = 0; d < 2; d++) {
        assert_int_equal(t->c->dir[d].pending, 0);
        assert_int_equal(t->c->dir[d].pipe_r, -1);
        assert_false(t->c->dir[d].flags & (RD_HOLD_BUF | RD_SPILLED | RD_STALLED));
        assert_int_equal(t->c->dir[d].ops, 1);
    }
}

/*
 * The target reads nothing: the proxy holds at most one chunk of what the client
 * sent, waits for POLLOUT, and reads no more however long it waits; the other
 * direction goes on. When the target reads, everything arrives.
 */
static void
test_backpressure(void **state)
{
    (void)state;
    struct tun *t = tunnel(8192);
    struct conn *c = t->c;
    struct stream up = {.seed = 3}, down = {.seed = 4};
    size_t chunk = o.relay == RELAY_COPY ? o.buf_size : o.pipe_size;

    for (int i = 0; i < 50; i++) {
        put(t->client, &up, SIZE_MAX);
        fr_run(&sh, 1000);
    }
    struct relay_dir *rd = &c->dir[DIR_C2T];
    assert_true(alive(t));
    assert_true(rd->flags & RD_POLLOUT);
    assert_int_equal(fr_count(OP_POLL_OUT, t->slot, DIR_C2T), 1);
    assert_true(rd->pending > 0);
    assert_true(rd->pending <= chunk);
    /* Every byte the client sent is in its socket, held by the proxy, or at the target. */
    assert_int_equal(up.sent, (uint64_t)unread(c->cfd) + rd->bytes + rd->pending);
    assert_int_equal((uint64_t)unread(t->target), rd->bytes);
    assert_true(unread(c->cfd) > 0);

    /* However often the kernel looks, nothing more is read. */
    uint64_t bytes = rd->bytes;
    int left = unread(c->cfd);
    unsigned long issued = fr_issued;
    assert_int_equal(fr_run(&sh, 1000), 0);
    assert_int_equal(fr_issued, issued);
    assert_int_equal(unread(c->cfd), left);
    assert_int_equal(rd->bytes, bytes);

    /* The other direction is not held up. */
    put(t->target, &down, 20000);
    for (int i = 0; i < 20 && down.got < 20000; i++) {
        fr_run(&sh, 1000);
        get(t->client, &down, SIZE_MAX);
    }
    assert_int_equal(down.got, 20000);

    /* The target reads: the rest flows, in order. */
    uint64_t total = up.sent;
    for (int i = 0; i < 10000 && up.got < total; i++) {
        get(t->target, &up, SIZE_MAX);
        fr_run(&sh, 1000);
    }
    assert_int_equal(up.got, total);
    assert_int_equal(rd->bytes, total);
    assert_false(rd->flags & (RD_POLLOUT | RD_STALLED));
    check_buffers();
}

/*
 * EOF from the client becomes shutdown(SHUT_WR) towards the target, after the
 * bytes before it; the tunnel lives on for the other direction until the target's
 * EOF, then ends END_DONE and the slot is freed.
 */
static void
test_half_close(void **state)
{
    (void)state;
    struct tun *t = tunnel(0);
    struct stream up = {.seed = 5}, down = {.seed = 6};
    assert_int_equal(put(t->client, &up, 3000), 3000);
    shutdown(t->client, SHUT_WR);
    fr_run(&sh, 1000);
    assert_int_equal(get(t->target, &up, SIZE_MAX), 3000);
    assert_true(at_eof(t->target));
    assert_true(alive(t));
    assert_true(t->c->dir[DIR_C2T].flags & RD_DONE);
    assert_false(t->c->dir[DIR_T2C].flags & RD_DONE);
    assert_int_equal(dir_ops(t->slot, DIR_C2T), 0);

    /* The target still answers, and the client gets it all. */
    for (int i = 0; i < 3; i++) {
        put(t->target, &down, 70000);
        for (int k = 0; k < 100 && down.got < down.sent; k++) {
            fr_run(&sh, 1000);
            get(t->client, &down, SIZE_MAX);
        }
        assert_int_equal(down.got, down.sent);
        assert_true(alive(t));
    }
    assert_false(at_eof(t->client));

    shutdown(t->target, SHUT_WR);
    fr_run(&sh, 1000);
    assert_true(at_eof(t->client));
    assert_true(freed(t));
    assert_int_equal(sh.st.ended[END_DONE], 1);
    assert_int_equal(sh.st.bytes[STAT_UP], 3000);
    assert_int_equal(sh.st.bytes[STAT_DOWN], 210000);
}

/* The same from the target's side first, with nothing sent at all. */
static void
test_half_close_target_first(void **state)
{
    (void)state;
    struct tun *t = tunnel(0);
    struct stream up = {.seed = 7};
    shutdown(t->target, SHUT_WR);
    fr_run(&sh, 1000);
    assert_true(at_eof(t->client));
    assert_true(alive(t));
    put(t->client, &up, 5000);
    fr_run(&sh, 1000);
    assert_int_equal(get(t->target, &up, SIZE_MAX), 5000);
    assert_true(alive(t));
    shutdown(t->client, SHUT_WR);
    fr_run(&sh, 1000);
    assert_true(at_eof(t->target));
    assert_true(freed(t));
    assert_int_equal(sh.st.ended[END_DONE], 1);
}

/* Fill t's target until the proxy waits for POLLOUT on it. */
static void
stall_up(struct tun *t, struct stream *up)
{
    for (int i = 0; i < 50 && !(t->c->dir[DIR_C2T].flags & RD_POLLOUT); i++) {
        put(t->client, up, SIZE_MAX);
        fr_run(&sh, 1000);
    }
    assert_true(t->c->dir[DIR_C2T].flags & RD_POLLOUT);
}

/*
 * A full destination: the direction is on the write-stall list from the moment
 * it waits; relay_tick() closes the tunnel END_WRITE_TIMEOUT once write_timeout
 * has passed with no byte written, not a tick sooner, and each byte written
 * starts the clock again. A quiet tunnel is never closed by it.
 */
static void
test_write_timeout(void **state)
{
    (void)state;
    pol.write_timeout_s = 5;
    uint32_t t0 = sh.now_ds;
    struct tun *quiet = tunnel(8192);
    struct tun *t = tunnel(8192);
    struct stream up = {.seed = 8};
    stall_up(t, &up);
    struct relay_dir *rd = &t->c->dir[DIR_C2T];
    assert_true(rd->flags & RD_STALLED);
    assert_int_equal(sh.relay.stall_head, t->slot << 1 | DIR_C2T);
    assert_int_equal(sh.relay.stall_tail, t->slot << 1 | DIR_C2T);
    assert_false(t->c->dir[DIR_T2C].flags & RD_STALLED);
    assert_false(quiet->c->dir[0].flags & RD_STALLED);
    assert_false(quiet->c->dir[1].flags & RD_STALLED);

    sh.now_ds = t0 + 50;
    relay_tick(&sh);
    assert_true(alive(t));

    /* At 3 s the target reads what it has: the proxy writes part of the chunk it
     * holds (and reads nothing new), and waits again, its clock started again. */
    sh.now_ds = t0 + 30;
    assert_true(get(t->target, &up, SIZE_MAX) > 0);
    uint64_t before = rd->bytes;
    uint32_t held = rd->pending;
    fr_run(&sh, 1000);
    assert_true(rd->bytes > before);
    assert_true(rd->pending > 0);
    assert_int_equal(rd->bytes - before, held - rd->pending);
    assert_true(rd->flags & RD_STALLED);
    assert_int_equal(rd->stall_ds, t0 + 30);

    sh.now_ds = t0 + 51;
    relay_tick(&sh);
    assert_true(alive(t));
    sh.now_ds = t0 + 80;
    relay_tick(&sh);
    assert_true(alive(t));
    sh.now_ds = t0 + 81;
    relay_tick(&sh);
    assert_false(alive(t));
    assert_int_equal(t->c->end, END_WRITE_TIMEOUT);
    assert_int_equal(sh.relay.stall_head, CONN_NIL);
    fr_run(&sh, 1000);
    assert_true(freed(t));
    assert_int_equal(sh.st.ended[END_WRITE_TIMEOUT], 1);

    /* The quiet tunnel outlives any write_timeout. */
    sh.now_ds = t0 + 100000;
    relay_tick(&sh);
    assert_true(alive(quiet));
}

/* A stalled direction that drains leaves the list: no timeout for a tunnel that caught up. */
static void
test_drained_leaves_stall_list(void **state)
{
    (void)state;
    pol.write_timeout_s = 5;
    uint32_t t0 = sh.now_ds;
    struct tun *t = tunnel(8192);
    struct stream up = {.seed = 9};
    stall_up(t, &up);
    for (int i = 0; i < 10000 && up.got < up.sent; i++) {
        get(t->target, &up, SIZE_MAX);
        fr_run(&sh, 1000);
    }
    assert_int_equal(up.got, up.sent);
    assert_false(t->c->dir[DIR_C2T].flags & RD_STALLED);
    assert_int_equal(sh.relay.stall_head, CONN_NIL);
    sh.now_ds = t0 + 10000;
    relay_tick(&sh);
    assert_true(alive(t));
}

/* Copy engine: a send the destination cannot take spills its bytes and gives the buffer back. */
static void
test_copy_spill_gives_buffer_back(void **state)
{
    (void)state;
    struct tun *t = tunnel(8192);
    struct tun *other = tunnel(0);
    struct stream up = {.seed = 10}, o_up = {.seed = 11}, o_down = {.seed = 12};
    stall_up(t, &up);
    struct relay_dir *rd = &t->c->dir[DIR_C2T];
    assert_true(rd->flags & RD_SPILLED);
    assert_false(rd->flags & RD_HOLD_BUF);
    assert_non_null(rd->spill);
    assert_true(sh.st.spills >= 1);
    assert_int_equal(sh.st.spilled_bytes, rd->pending);
    assert_int_equal(sh.relay.bufs_held, 0);
    assert_int_equal(fr_bufs_free(), o.buf_count);
    check_buffers();

    /* Every buffer serves the other tunnel meanwhile. */
    pump_both(other, &o_up, &o_down, 300000);

    /* The target reads: the spilled bytes go first, in order, then the rest. */
    for (int i = 0; i < 10000 && up.got < up.sent; i++) {
        get(t->target, &up, SIZE_MAX);
        fr_run(&sh, 1000);
    }
    assert_int_equal(up.got, up.sent);
    assert_false(rd->flags & RD_SPILLED);
    assert_null(rd->spill);
    assert_int_equal(sh.st.spilled_bytes, 0);
    check_buffers();
}

/* Hold the sends (of hold_slot, or all): buffers stay with the directions that read into them. */
static bool
hold_sends(const struct io_uring_sqe *sqe)
{
    return sqe->opcode == IORING_OP_SEND &&
           (hold_slot == CONN_NIL || ud_slot(sqe->user_data) == hold_slot);
}

static bool
queued(const struct tun *t, unsigned d)
{
    for (uint32_t i = 0; i < sh.relay.starved.len; i++) {
        uint64_t e = sh.relay.starved.e[(sh.relay.starved.head + i) % sh.relay.starved.cap];
        if (e == conn_ref(t->c, d))
            return true;
    }
    return false;
}

/*
 * Copy engine, two buffers, both taken by sends that do not complete: a direction
 * with data waiting is queued (no op out); a quiet one whose recv found no buffer
 * polls and is not queued. Each buffer that comes back wakes the oldest queued
 * direction and only it (one recv per buffer), and goes to it rather than back to
 * the direction that gave it back; everything arrives in the end.
 */
static void
test_copy_starvation_queue(void **state)
{
    (void)state;
    struct tun *a = tunnel(0), *b = tunnel(0), *c = tunnel(0), *d = tunnel(0);
    struct stream sa = {.seed = 13}, sb = {.seed = 14}, sc = {.seed = 15}, sd = {.seed = 16};
    fr_hold = hold_sends;
    put(a->client, &sa, 1000);
    put(b->client, &sb, 1000);
    fr_run(&sh, 1000);
    assert_int_equal(fr_count(OP_SEND, CONN_NIL, -1), 2);
    assert_int_equal(fr_bufs_free(), 0);
    assert_int_equal(sh.relay.bufs_held, 2);

    /* c then d get data, and find no buffer. */
    put(c->client, &sc, 1000);
    fr_run(&sh, 1000);
    put(d->client, &sd, 1000);
    fr_run(&sh, 1000);
    assert_int_equal(sh.relay.starved.len, 2);
    assert_true(queued(c, DIR_C2T) && queued(d, DIR_C2T));
    assert_true(c->c->dir[DIR_C2T].flags & RD_STARVED);
    assert_true(d->c->dir[DIR_C2T].flags & RD_STARVED);
    assert_int_equal(dir_ops(c->slot, DIR_C2T), 0);
    assert_int_equal(dir_ops(d->slot, DIR_C2T), 0);

    /* A new tunnel's first recvs find no buffer and no data: they poll, they do not queue. */
    struct tun *e = tunnel(0);
    fr_run(&sh, 1000);
    for (unsigned k = 0; k < 2; k++) {
        assert_int_equal(fr_count(OP_POLL_IN, e->slot, (int)k), 1);
        assert_false(e->c->dir[k].flags & RD_STARVED);
        assert_false(queued(e, k));
    }
    assert_int_equal(sh.relay.starved.len, 2);
    /* The quiet directions of the others wait on their recv with no place in the queue. */
    assert_false(queued(a, DIR_T2C) || queued(c, DIR_T2C));

    /* a has more to send, yet the buffer its send gives back is c's, the oldest
     * waiter's: c's recv goes out before a's own next one. And only c is woken. */
    put(a->client, &sa, 1000);
    assert_true(fr_exec_op(OP_SEND, a->slot, DIR_C2T));
    fr_reap(&sh);
    assert_int_equal(fr_count(OP_RECV, c->slot, DIR_C2T), 1);
    assert_false(c->c->dir[DIR_C2T].flags & RD_STARVED);
    assert_true(d->c->dir[DIR_C2T].flags & RD_STARVED);
    assert_int_equal(dir_ops(d->slot, DIR_C2T), 0);
    assert_int_equal(sh.relay.starved.len, 1);
    fr_pass(&sh);
    assert_true(c->c->dir[DIR_C2T].flags & RD_HOLD_BUF);
    assert_false(a->c->dir[DIR_C2T].flags & RD_HOLD_BUF);

    /* a, with data and no buffer, queues behind d; b's send brings the next buffer: d's. */
    fr_run(&sh, 1000);
    assert_true(queued(a, DIR_C2T));
    assert_int_equal(sh.relay.starved.len, 2);
    assert_true(fr_exec_op(OP_SEND, b->slot, DIR_C2T));
    fr_reap(&sh);
    assert_int_equal(fr_count(OP_RECV, d->slot, DIR_C2T), 1);
    assert_true(a->c->dir[DIR_C2T].flags & RD_STARVED);
    assert_int_equal(dir_ops(a->slot, DIR_C2T), 0);
    assert_int_equal(sh.relay.starved.len, 1);

    /* Let every send go: all four arrive whole. */
    fr_hold = NULL;
    for (int i = 0; i < 100; i++) {
        fr_run(&sh, 1000);
        get(a->target, &sa, SIZE_MAX);
        get(b->target, &sb, SIZE_MAX);
        get(c->target, &sc, SIZE_MAX);
        get(d->target, &sd, SIZE_MAX);
    }
    assert_int_equal(sa.got + sb.got + sc.got + sd.got, 5000);
    check_buffers();
}

/*
 * A buffer that came back in the batch before a direction's -ENOBUFS was seen
 * (the kernel failed the recv, then the send that returns the buffer completed)
 * wakes nobody at the time; relay_batch_end() wakes the direction for it.
 */
static void
test_copy_batch_end_wakes_for_returned_buffers(void **state)
{
    (void)state;
    struct tun *a = tunnel(0), *b = tunnel(0);
    struct stream sa = {.seed = 30}, sa2 = {.seed = 31}, sb = {.seed = 32};
    fr_hold = hold_sends;
    hold_slot = a->slot;
    /* a takes both buffers, one each way, and its sends do not complete yet. */
    put(a->client, &sa, 1000);
    put(a->target, &sa2, 1000);
    fr_run(&sh, 1000);
    assert_int_equal(fr_bufs_free(), 0);
    assert_int_equal(fr_count(OP_SEND, a->slot, -1), 2);

    /* b's client sends: b's recv finds no buffer and polls; the poll fires and b's
     * recv goes out again, behind a's send in the ring. */
    put(b->client, &sb, 1000);
    for (int i = 0; i < 10; i++) {
        int ri = fr_find(OP_RECV, b->slot, DIR_C2T);
        if (ri >= 0 && !fr_ops[ri].tried && (b->c->dir[DIR_C2T].flags & RD_FULL))
            break;
        fr_pass(&sh);
    }
    int si = fr_find(OP_SEND, a->slot, DIR_C2T), ri = fr_find(OP_RECV, b->slot, DIR_C2T);
    assert_true(si >= 0 && ri >= 0 && si < ri);
    assert_false(fr_ops[ri].tried);
    assert_true(b->c->dir[DIR_C2T].flags & RD_FULL);
    assert_int_equal(sh.relay.starved.len, 0);

    /* One batch: a's send completes (its buffer is the app's to give back), then b's
     * recv fails -ENOBUFS, the ring still empty. The app sees them in that order: the
     * buffer is back before b is queued, and nothing else will come back. */
    assert_true(fr_exec((unsigned)si));
    ri = fr_find(OP_RECV, b->slot, DIR_C2T);
    assert_true(fr_exec((unsigned)ri));
    assert_int_equal(fr_cq[1].res, -ENOBUFS);
    fr_reap(&sh);
    /* relay_batch_end() woke b for the buffer in the ring. */
    assert_false(b->c->dir[DIR_C2T].flags & RD_STARVED);
    assert_int_equal(fr_count(OP_RECV, b->slot, DIR_C2T), 1);
    assert_int_equal(sh.relay.starved.len, 0);

    /* b gets its bytes through before a's other send is let go. */
    for (int i = 0; i < 10 && sb.got < 1000; i++) {
        fr_run(&sh, 1000);
        get(b->target, &sb, SIZE_MAX);
    }
    assert_int_equal(sb.got, 1000);
    fr_hold = NULL;
    hold_slot = CONN_NIL;
    fr_run(&sh, 1000);
    assert_int_equal(get(a->target, &sa, SIZE_MAX), 1000);
    assert_int_equal(get(a->client, &sa2, SIZE_MAX), 1000);
}

/* Auto: a direction whose recv fills a buffer moves on to splice; a trickle stays on copy. */
static void
test_auto_switches_bulk_to_splice(void **state)
{
    (void)state;
    struct tun *t = tunnel(0);
    struct stream up = {.seed = 40}, down = {.seed = 41};
    put(t->target, &down, 100);
    fr_run(&sh, 1000);
    assert_int_equal(get(t->client, &down, SIZE_MAX), 100);
    assert_false(t->c->dir[DIR_T2C].flags & RD_SPLICE);

    put(t->client, &up, 300000);
    for (int i = 0; i < 1000 && up.got < up.sent; i++) {
        fr_run(&sh, 1000);
        get(t->target, &up, SIZE_MAX);
        put(t->client, &up, 300000 - up.sent);
        /* Once switched, the direction reads with splice: no recv of it goes out again. */
        if (t->c->dir[DIR_C2T].flags & RD_SPLICE)
            assert_int_equal(fr_count(OP_RECV, t->slot, DIR_C2T), 0);
    }
    assert_int_equal(up.got, 300000);
    assert_true(t->c->dir[DIR_C2T].flags & RD_SPLICE);
    assert_false(t->c->dir[DIR_T2C].flags & RD_SPLICE);
    assert_int_equal(sh.st.splice_switches, 1);
    /* It went through a pipe: the pool has it back. */
    assert_true(sh.relay.pipes.n >= 1);

    put(t->target, &down, 100);
    fr_run(&sh, 1000);
    assert_int_equal(get(t->client, &down, SIZE_MAX), 100);
    assert_false(t->c->dir[DIR_T2C].flags & RD_SPLICE);
    check_buffers();
}

/* An error on one side closes the tunnel with that side's reason, and every op comes back. */
static void
test_peer_reset_closes(void **state)
{
    (void)state;
    struct tun *t = tunnel(0);
    struct stream up = {.seed = 50};
    put(t->client, &up, 1000);
    /* The target goes away before reading: the write fails (EPIPE). */
    close(t->target);
    t->target = socket(AF_UNIX, SOCK_STREAM, 0); /* teardown closes something */
    fr_run(&sh, 1000);
    assert_true(freed(t));
    assert_int_equal(sh.st.ended[END_TARGET_ERR], 1);
}

/*
 * Adaptive pipes: a direction that finds a small pipe's worth or more waiting takes a
 * large pipe from its next readiness on; small messages never do; once drained, the
 * large pipe goes back to the shard and the direction holds none.
 */
static void
test_bulk_takes_large_pipe(void **state)
{
    (void)state;
    struct tun *t = tunnel(0);
    struct stream up = {.seed = 50}, down = {.seed = 51};
    /* Small messages both ways: ordinary pipes only. */
    for (int i = 0; i < 20; i++) {
        put(t->client, &up, 100);
        put(t->target, &down, 100);
        fr_run(&sh, 1000);
        get(t->target, &up, SIZE_MAX);
        get(t->client, &down, SIZE_MAX);
    }
    assert_int_equal(up.got, 2000);
    assert_int_equal(down.got, 2000);
    assert_int_equal(sh.st.pipe_large, 0);
    assert_int_equal(sh.relay.pipes.big_live, 0);
    assert_false(t->c->dir[DIR_T2C].flags & RD_BULK);

    /* A download: the target writes as fast as the client reads. */
    const size_t total = 8 << 20;
    for (int i = 0; i < 100000 && down.got < total; i++) {
        put(t->target, &down, total - down.sent);
        fr_run(&sh, 1000);
        get(t->client, &down, SIZE_MAX);
    }
    assert_int_equal(down.got, total);
    assert_true(sh.st.pipe_large > 0);
    assert_int_equal(sh.st.pipe_large_denied, 0);
    assert_int_equal(sh.relay.pipes.big_live, 1);
    /* The upload stayed small. */
    assert_false(t->c->dir[DIR_C2T].flags & (RD_BULK | RD_BIG_PIPE));

    /* Drained and idle: the large pipe is back with the shard, kept for the next bulk. */
    fr_run(&sh, 1000);
    assert_int_equal(t->c->dir[DIR_T2C].pipe_r, -1);
    assert_false(t->c->dir[DIR_T2C].flags & RD_BIG_PIPE);
    assert_int_equal(sh.relay.pipes.nbig, 1);

    /* Small again: the next readiness that finds little makes the direction ordinary. */
    put(t->target, &down, 100);
    fr_run(&sh, 1000);
    assert_int_equal(get(t->client, &down, SIZE_MAX), 100);
    assert_false(t->c->dir[DIR_T2C].flags & RD_BULK);
    check_buffers();
}

/*
 * The budget is a hard cap: with room for one large pipe, two bulk directions at once
 * get one large pipe and one ordinary, both streams arrive whole, and the denial is
 * counted. A bulk direction whose client stops reading holds at most its large pipe.
 */
static void
test_large_pipe_budget(void **state)
{
    (void)state;
    struct tun *a = tunnel(0), *b = tunnel(0);
    struct stream da = {.seed = 60}, db = {.seed = 61};
    const size_t total = 4 << 20;
    for (int i = 0; i < 100000 && (da.got < total || db.got < total); i++) {
        put(a->target, &da, total - da.sent);
        put(b->target, &db, total - db.sent);
        fr_run(&sh, 1000);
        /* b's client reads only every other round: its direction often holds its pipe. */
        get(a->client, &da, SIZE_MAX);
        if (i % 2)
            get(b->client, &db, SIZE_MAX);
        assert_true(sh.relay.pipes.big_live <= 1);
    }
    assert_int_equal(da.got, total);
    assert_int_equal(db.got, total);
    assert_int_equal(sh.relay.pipes.big_max, 1);
    assert_true(sh.st.pipe_large > 0);
    assert_true(sh.st.pipe_large_denied > 0);

    /* a's client stops reading: what the proxy holds for it is bounded by the large pipe. */
    for (int i = 0; i < 50; i++) {
        put(a->target, &da, SIZE_MAX);
        fr_run(&sh, 1000);
    }
    struct relay_dir *rd = &a->c->dir[DIR_T2C];
    assert_true(alive(a));
    assert_true(rd->flags & RD_POLLOUT);
    assert_true(rd->pending > 0);
    assert_true(rd->pending <= sh.relay.pipes.big_size);
    check_buffers();
}

/* The budget's share per shard: 16 MiB of 1 MiB pipes is 8 each for 2 shards, and one each
 * (not none) for 32 shards, which would otherwise get 16/32 = 0. */
static void
test_large_pipe_share(void **state)
{
    (void)state;
    static const unsigned shards[] = {2, 32};
    static const unsigned want[] = {8, 1};
    for (unsigned i = 0; i < 2; i++) {
        memset(&o, 0, sizeof(o));
        memset(&pol, 0, sizeof(pol));
        o.relay = RELAY_AUTO;
        o.buf_count = 8;
        o.buf_size = 4096;
        o.pipe_size = 65536;
        o.pipe_size_max = 1 << 20;
        o.pipe_bulk_budget = 16 << 20;
        o.shards = shards[i];
        fs_start(&sh, &o, &pol, 4);
        assert_int_equal(relay_init(&sh), 0);
        assert_int_equal(sh.relay.pipes.big_max, want[i]);
        relay_fini(&sh);
        fs_fini(&sh);
    }
}

/* A size the kernel refuses (twice fs.pipe-max-size, without CAP_SYS_RESOURCE): the ask
 * fails, the next PIPE_BIG_BACKOFF asks fail without a pipe2(), then it is tried again;
 * large pipes are never turned off for good. */
static void
test_large_pipe_backoff(void **state)
{
    (void)state;
    FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
    unsigned max = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%u", &max), 1);
    fclose(f);
    struct pipe_pool pp;
    assert_int_equal(pipe_pool_init(&pp, 4, 65536, 2, max * 2), 0);
    int fds[2];
    int before = fs_open_fds();
    assert_int_equal(pipe_get_big(&pp, fds), -1);
    assert_int_equal(pp.big_backoff, PIPE_BIG_BACKOFF);
    assert_int_equal(pp.big_max, 2);
    for (unsigned i = 0; i < PIPE_BIG_BACKOFF; i++)
        assert_int_equal(pipe_get_big(&pp, fds), -1);
    assert_int_equal(pp.big_backoff, 0);
    assert_int_equal(fs_open_fds(), before);
    /* Tried again, refused again: the back-off starts over. */
    assert_int_equal(pipe_get_big(&pp, fds), -1);
    assert_int_equal(pp.big_backoff, PIPE_BIG_BACKOFF);
    assert_int_equal(pp.big_live, 0);
    pipe_pool_fini(&pp);
}

/*
 * An fd storm (issue #18): no pipe can be had (pipe2() fails EMFILE for real, the pool is
 * empty), so each readiness of a splice tunnel is copied through the buffer ring instead
 * (ringsocks_pipe_fallbacks_total counts it): the tunnel lives, its bytes arrive whole
 * both ways, and it holds no pipe. Once fds free up, its next readiness splices again, a
 * new tunnel splices from the start, and no fd is left behind.
 */
static void
test_no_pipe_falls_back_to_copy(void **state)
{
    (void)state;
    struct tun *t = tunnel(0);
    struct stream up = {.seed = 70}, down = {.seed = 71};
    assert_int_equal(sh.relay.pipes.n + sh.relay.pipes.nbig, 0);
    unsigned fds = fs_open_fds();

    fs_fd_fill();
    const size_t storm = 2 << 20; /* past the adaptive pipes' bulk mark */
    pump_both(t, &up, &down, storm);
    fs_fd_unfill();
    assert_true(sh.st.pipe_fallbacks > 0);
    assert_true(fr_recvs > 0); /* the copy engine's recvs did the work */
    assert_int_equal(t->c->dir[DIR_C2T].bytes, storm);
    assert_int_equal(t->c->dir[DIR_T2C].bytes, storm);
    for (unsigned d = 0; d < 2; d++)
        assert_int_equal(t->c->dir[d].pipe_r, -1);
    assert_int_equal(sh.relay.pipes.n + sh.relay.pipes.nbig + sh.relay.pipes.big_live, 0);
    assert_int_equal(fs_open_fds(), fds);
    check_buffers();

    /* fds again: the same tunnel splices, without a fallback or a recv. */
    uint64_t fallbacks = sh.st.pipe_fallbacks;
    unsigned long recvs = fr_recvs;
    pump_both(t, &up, &down, 2 * storm);
    assert_int_equal(sh.st.pipe_fallbacks, fallbacks);
    assert_int_equal(fr_recvs, recvs);
    assert_true(sh.relay.pipes.n + sh.relay.pipes.nbig > 0); /* its pipes are back in the pool */

    /* And a new tunnel. */
    struct tun *u = tunnel(0);
    struct stream up2 = {.seed = 72}, down2 = {.seed = 73};
    pump_both(u, &up2, &down2, 256 << 10);
    assert_int_equal(sh.st.pipe_fallbacks, fallbacks);
    if (o.relay == RELAY_AUTO) {
        /* Auto starts on copy and moves bulk directions to splice, as without a storm. */
        for (unsigned d = 0; d < 2; d++)
            assert_true(u->c->dir[d].flags & RD_SPLICE);
    } else {
        assert_int_equal(fr_recvs, recvs);
    }
    check_buffers();
}

int
main(void)
{
    /* As the server does (main.c): a splice into a socket whose peer left would raise it. */
    signal(SIGPIPE, SIG_IGN);
    /* Each test under the engines it holds for, named test/engine. */
#define T(f, e)                                       \
    {                                                 \
#f "/" #e, f, setup, teardown, (void *)&e_##e \
    }
    const struct CMUnitTest tests[] = {
        T(test_both_ways, splice),
        T(test_both_ways, copy),
        T(test_both_ways, auto),
        T(test_backpressure, splice),
        T(test_backpressure, copy),
        T(test_backpressure, splice_big),
        T(test_backpressure, copy_big),
        T(test_half_close, splice),
        T(test_half_close, copy),
        T(test_half_close, auto),
        T(test_half_close_target_first, splice),
        T(test_half_close_target_first, copy),
        T(test_write_timeout, splice_big),
        T(test_write_timeout, copy_big),
        T(test_drained_leaves_stall_list, splice),
        T(test_drained_leaves_stall_list, copy),
        T(test_copy_spill_gives_buffer_back, copy),
        T(test_copy_spill_gives_buffer_back, copy_big),
        T(test_copy_starvation_queue, copy2),
        T(test_copy_batch_end_wakes_for_returned_buffers, copy2),
        T(test_auto_switches_bulk_to_splice, auto),
        T(test_peer_reset_closes, splice),
        T(test_peer_reset_closes, copy),
        T(test_both_ways, adapt),
        T(test_backpressure, adapt),
        T(test_half_close, adapt),
        T(test_bulk_takes_large_pipe, adapt),
        T(test_large_pipe_budget, adapt1),
        T(test_no_pipe_falls_back_to_copy, splice),
        T(test_no_pipe_falls_back_to_copy, adapt),
        T(test_no_pipe_falls_back_to_copy, auto),
        cmocka_unit_test(test_large_pipe_share),
        cmocka_unit_test(test_large_pipe_backoff),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
