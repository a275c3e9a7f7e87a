/*
 * shard.c - a shard thread: its io_uring, listeners, completion loop and
 * periodic tick.
 *
 * The ring is created on the shard's own thread (IORING_SETUP_SINGLE_ISSUER
 * binds it to its creator, and DEFER_TASKRUN runs completions only for that
 * task). main() only prepares the shard, starts the thread and waits for
 * its verdict, then later sets sh->stop and rings the eventfd. Nothing on
 * this thread blocks but the ring wait itself.
 */
#include "shard.h"

#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <urcu-qsbr.h>
#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "authq.h"
#include "gssw.h"
#include "conn.h"
#include "dns.h"
#include "handshake.h"
#include "outbound.h"
#include "policy.h"
#include "relay.h"
#include "request.h"
#include "ring.h"
#include "ring_allow.h"
#include "shardcmd.h"
#include "udp.h"
#include "watchdog.h"

/* The completion queue is this many times the submission queue (ring_entries): a batch's
 * completions fit it without overflowing into kernel memory. */
#define RING_CQ_FACTOR       4
#define TICK_MS              250
/* How long a stopping shard waits for cancelled operations to come back. */
#define STOP_GRACE_S         5
/* Password failures of a client address are counted over this window. */
#define CLIENT_FAIL_WINDOW_S 60
/* A held client's queue entry: its fd, and this bit when a transparent listener took it. */
#define HELD_TRANSPARENT     (1ull << 32)

struct start_ctx {
    struct shard *sh;
    sem_t done;
    int err;
};

static struct io_uring_sqe *
shard_sqe(struct shard *sh)
{
    return ring_sqe(&sh->ring, &sh->st);
}

static void
arm_accept(struct shard *sh, unsigned i)
{
    struct listener *l = &sh->ls[i];
    if (l->armed || l->fd < 0)
        return;
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, 0, i, 0));
    l->armed = true;
}

/*
 * No room for one more connection: all shards together hold max_conns.
 * One relaxed load per shard per accepted connection (each counter is
 * written only by its own shard): a few nanoseconds against the tens of
 * microseconds a tunnel costs.
 */
static bool
shard_full(const struct shard *sh)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < sh->n_peers; i++)
        total += STAT_GET(sh->peers[i].n_open);
    return total >= sh->o->max_conns;
}

void
shard_set_peers(struct shard *shards, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        shards[i].peers = shards;
        shards[i].n_peers = n;
    }
}

static void
pause_accept(struct shard *sh)
{
    if (sh->accept_paused)
        return;
    sh->accept_paused = true;
    STAT_INC(sh->st.accept_pauses);
    for (unsigned i = 0; i < sh->n_ls; i++) {
        if (!sh->ls[i].armed)
            continue;
        struct io_uring_sqe *sqe = shard_sqe(sh);
        io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, 0, i, 0), 0);
        io_uring_sqe_set_data64(sqe, ud_make(OP_NONE, 0, 0, 0));
    }
}

/*
 * Start held connections, oldest first, while there is room. Each is taken
 * off the queue before its session starts: a session that fails at once
 * closes, and a close may come back here.
 */
static void
start_held(struct shard *sh)
{
    uint64_t e;
    while (sh->held.len && !shard_full(sh) && udq_pop(&sh->held, &e))
        handshake_start(sh, (int)(uint32_t)e, e & HELD_TRANSPARENT);
}

/*
 * Paused by the total limit: ask the other shards to wake us when one of
 * their connections closes. The flag is set after our look at the counters,
 * so a close in between is missed; the tick (250 ms) is the fallback.
 */
static void
want_room(struct shard *sh)
{
    atomic_store_explicit(&sh->want_room, true, memory_order_relaxed);
}

/* A connection closed: wake the other shards paused by max_conns. */
static void
shard_room_freed(struct shard *sh)
{
    for (unsigned i = 0; i < sh->n_peers; i++) {
        struct shard *p = &sh->peers[i];
        if (p != sh && atomic_load_explicit(&p->want_room, memory_order_relaxed) &&
            atomic_exchange_explicit(&p->want_room, false, memory_order_relaxed))
            shard_wake(p);
    }
}

/* A connection closed, or the tick: accepting may resume. */
static void
shard_accept_resume(struct shard *sh)
{
    if (!sh->accept_paused || sh->stopping || sh->draining)
        return;
    start_held(sh);
    if (sh->held.len || shard_full(sh)) {
        want_room(sh);
        return;
    }
    sh->accept_paused = false;
    for (unsigned i = 0; i < sh->n_ls; i++)
        arm_accept(sh, i);
}

/* An accepted client by listener i: its session starts, or it waits while all shards are
 * full. */
static void
take_client(struct shard *sh, int fd, unsigned i)
{
    bool transparent = sh->ls[i].transparent;
    /*
     * The check comes before the session: with several shards the limit
     * can be reached by another one while this accept was in flight. Such
     * a client waits here, unread, like those in the kernel's backlog.
     */
    if (shard_full(sh) || sh->held.len) {
        if (udq_push(&sh->held, (uint32_t)fd | (transparent ? HELD_TRANSPARENT : 0)) < 0) {
            STAT_INC(sh->st.accept_dropped);
            close(fd);
        }
        pause_accept(sh);
        want_room(sh);
        return;
    }
    handshake_start(sh, fd, transparent);
    /* Full: stop taking connections; the kernel's backlog holds the rest. */
    if (shard_full(sh)) {
        pause_accept(sh);
        want_room(sh);
    }
}

/* Clients one listener's last look may take: its backlog's size (main.c). */
#define HANDOVER_ACCEPT_MAX 4096

/*
 * After a hand-over, once our accept has left the listener's wait queue (its
 * cancellation came back): a listener wakes one exclusive waiter per new
 * client, so a client whose wake-up went to our cancelled accept waits in the
 * backlog while the new process's accept sleeps on. Those are ours: take
 * them (non-blocking), then close our fd; the socket stays the new one's.
 */
static void
handover_listener(struct shard *sh, unsigned i)
{
    struct listener *l = &sh->ls[i];
    for (unsigned n = 0; n < HANDOVER_ACCEPT_MAX; n++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            break;
        take_client(sh, fd, i);
    }
    close(l->fd);
    l->fd = -1;
}

static void
on_accept(struct shard *sh, const struct io_uring_cqe *cqe)
{
    uint32_t i = ud_slot(cqe->user_data);
    if (i >= sh->n_ls)
        return;
    int res = cqe->res;
    bool keep = atomic_load_explicit(&sh->keep_listeners, memory_order_relaxed);
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        sh->ls[i].armed = false;
        if (sh->draining && keep && sh->ls[i].fd >= 0) {
            if (res >= 0)
                take_client(sh, res, i);
            handover_listener(sh, i);
            return;
        }
    }
    if (res >= 0) {
        /* After a hand-over, a client accepted while the accept was being cancelled is
         * ours to serve: the new process will never see it. */
        if (sh->stopping || (sh->draining && !keep)) {
            close(res);
            return;
        }
        take_client(sh, res, i);
    } else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
        /* Out of fds or memory: retry on a tick or when a connection closes, never spin. */
        pause_accept(sh);
    }
    if (!sh->ls[i].armed && !sh->accept_paused && !sh->stopping && !sh->draining)
        arm_accept(sh, i);
}

static void
now_update(struct shard *sh)
{
    sh->now_ms = watchdog_now_ms();
    sh->now_s = (uint32_t)(sh->now_ms / 1000);
    sh->now_ds = (uint32_t)(sh->now_ms / 100);
}

static void
arm_tick(struct shard *sh)
{
    struct io_uring_sqe *sqe = shard_sqe(sh);
    sh->tick.tv_sec = 0;
    sh->tick.tv_nsec = TICK_MS * 1000000L;
    io_uring_prep_timeout(sqe, &sh->tick, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_TICK, 0, 0, 0));
}

static void
arm_wake(struct shard *sh)
{
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_read(sqe, sh->wake_fd, &sh->wake_val, sizeof(sh->wake_val), 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_WAKE, 0, 0, 0));
}

static void
on_tick(struct shard *sh)
{
    conn_timers_run(sh);
    request_tick(sh);
    relay_tick(sh);
    dns_tick(sh);
    /* An EMFILE pause, or the total limit, may have cleared without a close of ours. */
    shard_accept_resume(sh);
    arm_tick(sh);
}

/*
 * Stop accepting for good: cancel the accepts and close the listeners, so
 * new clients are refused (a load balancer sees the node go) rather than
 * left in a backlog nobody reads. The listener fds close once their accept
 * is gone (the cancelled op holds the file until then).
 */
static void
stop_accepting(struct shard *sh)
{
    for (unsigned i = 0; i < sh->n_ls; i++) {
        if (sh->ls[i].armed) {
            struct io_uring_sqe *sqe = shard_sqe(sh);
            io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, 0, i, 0), 0);
            io_uring_sqe_set_data64(sqe, ud_make(OP_NONE, 0, 0, 0));
        }
        if (sh->ls[i].fd >= 0) {
            if (atomic_load_explicit(&sh->keep_listeners, memory_order_acquire)) {
                /* Shared with the new process: no shutdown(); an armed accept's end
                 * closes it (handover_listener()). */
                if (sh->ls[i].armed)
                    continue;
            } else {
                shutdown(sh->ls[i].fd, SHUT_RDWR);
            }
            close(sh->ls[i].fd);
            sh->ls[i].fd = -1;
        }
    }
}

/* Clients accepted over the limit but never started: they go with the listeners. */
static void
close_held(struct shard *sh)
{
    uint64_t e;
    while (udq_pop(&sh->held, &e))
        close((int)(uint32_t)e);
}

/* A drain after a hand-over still waits for an accept's cancellation (handover_listener()). */
static bool
listener_held(const struct shard *sh)
{
    if (sh->stopping)
        return false;
    for (unsigned i = 0; i < sh->n_ls; i++)
        if (sh->ls[i].fd >= 0)
            return true;
    return false;
}

static void
begin_stop(struct shard *sh)
{
    sh->stopping = true;
    if (!sh->draining)
        stop_accepting(sh);
    close_held(sh);
    conn_close_all(sh, END_SHUTDOWN);
}

static void
begin_drain(struct shard *sh)
{
    sh->draining = true;
    stop_accepting(sh);
    close_held(sh);
}

static void
dispatch(struct shard *sh, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    unsigned op = ud_op(ud);
    if (op >= OP_CONN_FIRST) {
        conn_dispatch(sh, cqe);
        return;
    }
    switch (op) {
    case OP_ACCEPT:
        on_accept(sh, cqe);
        break;
    case OP_TICK:
        on_tick(sh);
        break;
    case OP_WAKE:
        /* Stop, drain, a new policy or a command: the loop looks at each; keep
         * listening. Or room under max_conns, freed by another shard. */
        if (!atomic_load_explicit(&sh->stop, memory_order_acquire))
            arm_wake(sh);
        shard_accept_resume(sh);
        request_leases(sh);
        break;
    case OP_AUTH:
        authq_on_cqe(sh);
        break;
    case OP_GSS:
        gssw_on_cqe(sh);
        break;
    case OP_DNS_POLL:
    case OP_DNS_REMOVE:
        dns_on_cqe(sh, op, ud_slot(ud), ud_gen(ud), cqe->res);
        break;
    default: /* OP_NONE: a cancellation's own completion */
        break;
    }
}

static int
ring_setup(struct shard *sh)
{
    struct io_uring_params p;
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    /* Fall back flag by flag where the kernel is older than 6.1. */
    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        memset(&p, 0, sizeof(p));
        p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
        /* Disabled until its opcode allowlist and buffers are in (ring_allow.h). */
        if (sh->o->seccomp)
            p.flags |= IORING_SETUP_R_DISABLED;
        p.cq_entries = sh->o->ring_entries * RING_CQ_FACTOR;
        ret = io_uring_queue_init_params(sh->o->ring_entries, &sh->ring, &p);
        if (ret != -EINVAL)
            break;
    }
    return ret;
}

static int
shard_setup(struct shard *sh)
{
#ifdef HAVE_JEMALLOC
    /* Each shard allocates from its own arena: no allocator lock is shared. */
    unsigned arena;
    size_t sz = sizeof(arena);
    if (mallctl("arenas.create", &arena, &sz, NULL, 0) == 0)
        mallctl("thread.arena", NULL, NULL, &arena, sizeof(arena));
#endif
    int ret = ring_setup(sh);
    if (ret < 0)
        return ret;
    if (sh->o->seccomp && (ret = ring_allow_register(&sh->ring)) < 0) {
        fprintf(stderr, "ringsocks: shard %u: the ring's opcode allowlist: %s\n", sh->id,
                strerror(-ret));
        return ret;
    }
    outbound_seed(sh);
    ret = handshake_init(sh, request_start);
    if (ret < 0)
        return ret;
    ret = relay_init(sh);
    if (ret < 0)
        return ret;
    if (sh->o->seccomp && (ret = ring_allow_enable(&sh->ring)) < 0) {
        fprintf(stderr, "ringsocks: shard %u: enabling the ring: %s\n", sh->id, strerror(-ret));
        return ret;
    }
    now_update(sh);
    watchdog_begin(&sh->busy_since, sh->now_ms);
    arm_tick(sh);
    arm_wake(sh);
    if (sh->authq)
        authq_arm(sh);
    if (sh->gssw)
        gssw_arm(sh);
    for (unsigned i = 0; i < sh->n_ls; i++)
        arm_accept(sh, i);
    return 0;
}

/*
 * busy_poll: after a loop that had work, look for the next completions for up
 * to busy_poll_us before sleeping. A sleeping shard is woken by the CPU that
 * completed its I/O, an inter-processor interrupt (a VM exit on a VM) per
 * wake-up; a shard that is still looking needs none. With DEFER_TASKRUN the
 * completions are only produced inside io_uring_enter, so the spin is a loop
 * of non-blocking io_uring_enter(GETEVENTS) calls. Returns true when a
 * completion is ready.
 */
static bool
spin_for_events(struct shard *sh)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int ret = io_uring_submit_and_get_events(&sh->ring);
        if (io_uring_cq_ready(&sh->ring))
            return true;
        if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN)
            return false;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long us = (t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000;
        if (us >= (long)sh->o->busy_poll_us)
            return false;
    }
}

static void *
shard_main(void *arg)
{
    struct start_ctx *ctx = arg;
    struct shard *sh = ctx->sh;
    uint32_t stop_deadline = 0;
    bool busy = false; /* the last loop had work: busy_poll may spin */

    /* A QSBR reader from here on: quiescent once per iteration, offline while waiting. */
    atomic_store_explicit(&sh->tid, (int)gettid(), memory_order_relaxed);
    rcu_register_thread();
    sh->pol = rcu_dereference(*sh->ppol);
    sh->pol_gen = sh->pol->gen;
    atomic_store_explicit(&sh->pol_seen, sh->pol_gen, memory_order_release);
    ctx->err = shard_setup(sh);
    int err = ctx->err;
    sem_post(&ctx->done); /* ctx is gone after this */
    if (err < 0) {
        rcu_unregister_thread();
        atomic_store_explicit(&sh->exited, true, memory_order_release);
        return NULL;
    }

    for (;;) {
        sh->pol = rcu_dereference(*sh->ppol);
        if (sh->pol->gen != sh->pol_gen) {
            sh->pol_gen = sh->pol->gen;
            unsigned revoked = conn_policy_changed(sh);
            /* The control thread waits for pol_seen, then reads pol_revoked: the count
             * is stored first, so it is complete when the generation shows. */
            atomic_fetch_add_explicit(&sh->pol_revoked, revoked, memory_order_relaxed);
            atomic_store_explicit(&sh->pol_seen, sh->pol_gen, memory_order_release);
        }
        /* A command of the control thread (the wake that brought it re-arms below). */
        shardcmd_run(sh);
        if (!sh->draining && atomic_load_explicit(&sh->drain, memory_order_acquire))
            begin_drain(sh);
        if (sh->draining && !sh->stopping &&
            sh->now_ms >= atomic_load_explicit(&sh->drain_deadline_ms, memory_order_relaxed))
            atomic_store_explicit(&sh->stop, true, memory_order_release);
        if (!sh->stopping && atomic_load_explicit(&sh->stop, memory_order_acquire)) {
            begin_stop(sh);
            stop_deadline = sh->now_s + STOP_GRACE_S;
        }
        if ((sh->stopping || sh->draining) && sh->n_open == 0 && !listener_held(sh))
            break;
        if (sh->stopping && sh->now_s >= stop_deadline)
            break;
        /* Contexts freed since the last wait go to waiting connections now, outside any
         * slot's free (handshake.h). */
        if (sh->hsp.handoff)
            handshake_handoff(sh);
        /* The work since the wake-up (now_ms) ends: a stall when it took too long. */
        if (watchdog_end(&sh->busy_since, sh->now_ms, watchdog_now_ms(), &sh->st.loop_max_ms))
            STAT_INC(sh->st.loop_stalls);
        rcu_quiescent_state();
        rcu_thread_offline();
        int ret = 0;
        if (!(busy && spin_for_events(sh)))
            ret = io_uring_submit_and_wait(&sh->ring, 1);
        rcu_thread_online();
        if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN) {
            fprintf(stderr, "ringsocks: shard %u: io_uring_enter: %s\n", sh->id, strerror(-ret));
            break;
        }
        now_update(sh);
        watchdog_begin(&sh->busy_since, sh->now_ms);
        sh->pol = rcu_dereference(*sh->ppol);
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&sh->ring, head, cqe)
        {
            dispatch(sh, cqe);
            n++;
        }
        io_uring_cq_advance(&sh->ring, n);
        relay_batch_end(sh);
        /* Slots freed in this batch: once for all of them, not once per close. */
        if (sh->room_freed) {
            sh->room_freed = false;
            shard_accept_resume(sh);
            shard_room_freed(sh);
        }
        STAT_INC(sh->st.loops);
        busy = n > 0 && sh->o->busy_poll_us > 0;
    }
    /* Ended, not stalled: the control thread's watchdog must not count the exit. */
    atomic_store_explicit(&sh->busy_since, 0, memory_order_relaxed);
    rcu_unregister_thread();
    atomic_store_explicit(&sh->exited, true, memory_order_release);
    return NULL;
}

int
shard_init(struct shard *sh, unsigned id, const struct opts *o, const struct hosts *hosts,
           struct policy **ppol, struct logger *lg, const int *listen_fds, unsigned n_listen)
{
    memset(sh, 0, sizeof(*sh));
    sh->id = id;
    sh->o = o;
    sh->hosts = hosts;
    sh->ppol = ppol;
    sh->lg = lg;
    sh->wake_fd = -1;
    atomic_init(&sh->stop, false);
    atomic_init(&sh->drain, false);
    atomic_init(&sh->drain_deadline_ms, 0);
    atomic_init(&sh->exited, false);
    atomic_init(&sh->keep_listeners, false);
    atomic_init(&sh->cmd, NULL);
    atomic_init(&sh->pol_seen, 0);
    atomic_init(&sh->pol_revoked, 0);
    sh->ls = calloc(n_listen, sizeof(*sh->ls));
    if (!sh->ls)
        return -ENOMEM;
    sh->n_ls = n_listen;
    for (unsigned i = 0; i < n_listen; i++) {
        sh->ls[i].fd = listen_fds[i];
        sh->ls[i].transparent = i < OPTS_MAX_LISTEN && o->listen_transparent[i];
    }
    /*
     * max_conns is a limit on all shards together. SO_REUSEPORT spreads
     * connections by hash, not evenly, so a table of max_conns / shards
     * would fill on one shard while the others have room (it refused
     * tunnels at 8,300 of 9,000). Each table can hold max_conns (reserved,
     * not touched); shard_full() enforces the total.
     */
    sh->peers = sh;
    sh->n_peers = 1;
    clients_init(&sh->clients, CLIENT_FAIL_WINDOW_S);
    int ret = conn_table_init(sh, o->max_conns ? o->max_conns : 1);
    if (ret < 0)
        return ret;
    sh->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (sh->wake_fd == -1)
        return -errno;
    /* Always: a reload may turn password authentication on. The worker sleeps until used. */
    ret = authq_init(sh);
    if (ret < 0)
        return ret;
    /* Likewise for GSS-API (gssw.h): a reload may turn it on. */
    ret = gssw_init(sh);
    if (ret < 0)
        return ret;
    return dns_init(sh);
}

int
shard_start(struct shard *sh)
{
    struct start_ctx ctx = {.sh = sh, .err = 0};
    sem_init(&ctx.done, 0, 0);
    int ret = pthread_create(&sh->thread, NULL, shard_main, &ctx);
    if (ret != 0) {
        sem_destroy(&ctx.done);
        return -ret;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)(sh->id % (unsigned)ncpu), &set);
        pthread_setaffinity_np(sh->thread, sizeof(set), &set);
    }
    char name[16];
    snprintf(name, sizeof(name), "shard-%u", sh->id);
    pthread_setname_np(sh->thread, name);
    while (sem_wait(&ctx.done) == -1 && errno == EINTR)
        ;
    sem_destroy(&ctx.done);
    if (ctx.err < 0) {
        pthread_join(sh->thread, NULL);
        sh->thread = 0;
    }
    return ctx.err;
}

void
shard_wake(struct shard *sh)
{
    uint64_t one = 1;
    if (sh->wake_fd >= 0 && write(sh->wake_fd, &one, sizeof(one)) < 0)
        perror("ringsocks: eventfd");
}

void
shard_stop(struct shard *sh)
{
    atomic_store_explicit(&sh->stop, true, memory_order_release);
    shard_wake(sh);
}

void
shard_drain(struct shard *sh, uint64_t deadline_ms)
{
    atomic_store_explicit(&sh->drain_deadline_ms, deadline_ms, memory_order_relaxed);
    atomic_store_explicit(&sh->drain, true, memory_order_release);
    shard_wake(sh);
}

void
shard_keep_listeners(struct shard *sh)
{
    atomic_store_explicit(&sh->keep_listeners, true, memory_order_release);
}

void
shard_join(struct shard *sh)
{
    if (sh->thread) {
        pthread_join(sh->thread, NULL);
        sh->thread = 0;
    }
    sh->stopping = true; /* c-ares callbacks during destroy must not touch the ring */
    if (sh->ring.ring_fd > 0)
        io_uring_queue_exit(&sh->ring);
    dns_fini(sh);
    authq_fini(sh);
    gssw_fini(sh);
    relay_fini(sh);
    udp_fini(sh);
    handshake_fini(sh);
    /* Connections still open after the grace period: their fds go now. */
    for (uint32_t i = 0; sh->conns && i < sh->high; i++) {
        struct conn *c = &sh->conns[i];
        if (c->cfd >= 0 && c->state != CONN_FREE)
            close(c->cfd);
        if (c->tfd >= 0 && c->state != CONN_FREE)
            close(c->tfd);
    }
    conn_table_fini(sh);
    clients_fini(&sh->clients);
    close_held(sh);
    udq_free(&sh->held);
    udq_free(&sh->lease_wait);
    for (unsigned i = 0; i < sh->n_ls; i++)
        if (sh->ls[i].fd >= 0)
            close(sh->ls[i].fd);
    free(sh->ls);
    sh->ls = NULL;
    if (sh->wake_fd >= 0)
        close(sh->wake_fd);
    sh->wake_fd = -1;
}
