/*
 * test_conn.c - src/conn.c, the slot layer of a shard, under a fake ring
 * (fake_ring.h) and a recording phase: CQEs of a slot freed and reused are
 * dropped as stale; a slot is freed only when its last op completed (release
 * once, each fd closed once, generation bumped); conn_close() is idempotent;
 * conn_from_ref(), conn_resolved() and conn_authed() reach only the same live
 * connection; timer expiry goes to the phase or closes with the list's reason,
 * the idle list requeues by last activity, the closing list cancels by fd; the
 * hang-up watch reaches the phase only while the connection lives; per-client
 * counts go back at free.
 *
 * Links conn.o with its real neighbours clients.o and addr.o. Fakes:
 * ring_sqe() (fake_ring.h), log_push() (counts the access-log lines),
 * policy_decide() and users_hash() (fake_shard.h). close() and shutdown() are
 * wrapped (-Wl,--wrap=) to count the calls per fd; they still close and shut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "shard_types.h"

#include "fake_shard.h"

/* --- wrapped syscalls: counted per fd, then done ------------------------- */

#define MAX_FD 4096
static unsigned closes[MAX_FD], shutdowns[MAX_FD];

int __real_close(int fd);
int __wrap_close(int fd);
int __real_shutdown(int fd, int how);
int __wrap_shutdown(int fd, int how);

int
__wrap_close(int fd)
{
    if (fd >= 0 && fd < MAX_FD)
        closes[fd]++;
    return __real_close(fd);
}

int
__wrap_shutdown(int fd, int how)
{
    if (fd >= 0 && fd < MAX_FD)
        shutdowns[fd]++;
    return __real_shutdown(fd, how);
}

/* --- a phase that records what reaches it ------------------------------- */

enum ev_kind { EV_CQE, EV_TIMEOUT, EV_RESOLVED, EV_AUTH, EV_HANGUP, EV_RELEASE };

struct ev {
    enum ev_kind kind;
    uint32_t slot, gen;
    uint8_t state; /* the connection's state when it was called */
    unsigned op;
    int res; /* CQE res, resolve err, hang-up events, auth ok */
    unsigned tag, n;
    enum tlist_id tl;
};

#define MAX_EV 256
static struct ev evs[MAX_EV];
static unsigned n_evs;

static void
record(enum ev_kind kind, const struct conn *c, unsigned op, int res, unsigned tag, unsigned n,
       enum tlist_id tl)
{
    assert_true(n_evs < MAX_EV);
    evs[n_evs++] = (struct ev){.kind = kind,
                               .slot = c->slot,
                               .gen = c->gen,
                               .state = c->state,
                               .op = op,
                               .res = res,
                               .tag = tag,
                               .n = n,
                               .tl = tl};
}

static unsigned
count_ev(enum ev_kind kind)
{
    unsigned n = 0;
    for (unsigned i = 0; i < n_evs; i++)
        n += evs[i].kind == kind;
    return n;
}

static const struct ev *
last_ev(enum ev_kind kind)
{
    for (unsigned i = n_evs; i-- > 0;)
        if (evs[i].kind == kind)
            return &evs[i];
    return NULL;
}

static void
rec_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    (void)sh;
    record(EV_CQE, c, ud_op(cqe->user_data), cqe->res, 0, 0, TL_NONE);
}

static void
rec_on_timeout(struct shard *sh, struct conn *c, enum tlist_id tl)
{
    (void)sh;
    record(EV_TIMEOUT, c, 0, 0, 0, 0, tl);
}

static union sockaddr_inx last_addrs[4];

static void
rec_on_resolved(struct shard *sh, struct conn *c, unsigned tag, int err,
                const union sockaddr_inx *addrs, unsigned n)
{
    (void)sh;
    record(EV_RESOLVED, c, 0, err, tag, n, TL_NONE);
    if (n)
        memcpy(last_addrs, addrs, (n < 4 ? n : 4) * sizeof(*addrs));
}

static void
rec_on_auth(struct shard *sh, struct conn *c, unsigned tag, bool ok)
{
    (void)sh;
    record(EV_AUTH, c, 0, ok, tag, 0, TL_NONE);
}

static void
rec_on_hangup(struct shard *sh, struct conn *c, int events)
{
    (void)sh;
    record(EV_HANGUP, c, 0, events, 0, 0, TL_NONE);
}

static void
rec_release(struct shard *sh, struct conn *c)
{
    (void)sh;
    record(EV_RELEASE, c, 0, 0, 0, 0, TL_NONE);
}

/* Every handler. */
static const struct conn_phase full_phase = {
    .name = "full",
    .on_cqe = rec_on_cqe,
    .on_timeout = rec_on_timeout,
    .on_resolved = rec_on_resolved,
    .on_auth = rec_on_auth,
    .on_hangup = rec_on_hangup,
    .release = rec_release,
};

/* Only what is required, and release: the slot layer's defaults answer the rest. */
static const struct conn_phase bare_phase = {
    .name = "bare",
    .on_cqe = rec_on_cqe,
    .release = rec_release,
};

/* --- the fake shard ------------------------------------------------------ */

static struct shard sh;
static struct opts o;
static struct policy pol;
static char logger_dummy; /* sh.lg, not NULL: the slot layer logs (to log_push()) */

static int
setup(void **state)
{
    (void)state;
    memset(&o, 0, sizeof(o));
    memset(&pol, 0, sizeof(pol));
    memset(closes, 0, sizeof(closes));
    memset(shutdowns, 0, sizeof(shutdowns));
    n_evs = 0;
    pol.handshake_timeout_s = 10;
    pol.connect_timeout_s = 5;
    pol.idle_timeout_s = 30;
    pol.bind_timeout_s = 20;
    fs_start(&sh, &o, &pol, 8);
    sh.lg = (struct logger *)&logger_dummy;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    fs_close_all(&sh, false);
    fs_fini(&sh);
    return 0;
}

/* A connection of phase with a client and a target socket (real fds, so closes count). */
static struct conn *
open_conn(const struct conn_phase *phase)
{
    struct conn *c = conn_alloc(&sh, phase);
    assert_non_null(c);
    c->cfd = fs_pair();
    c->tfd = fs_pair();
    c->client.v4.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &c->client.v4.sin_addr);
    return c;
}

/*
 * An op of c in flight on fd, as a phase would issue it: a plain recv, which the
 * fake kernel completes only by hand or by a cancel.
 */
static char sink[64];

static void
issue_on(struct conn *c, int fd, unsigned op, unsigned arg)
{
    struct io_uring_sqe *sqe = conn_sqe(&sh, c, op, arg);
    io_uring_prep_recv(sqe, fd, sink, sizeof(sink), 0);
}

static void
issue(struct conn *c, unsigned op, unsigned arg)
{
    issue_on(c, c->cfd, op, arg);
}

static bool
fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* --- the tests ------------------------------------------------------------- */

/* A CQE whose generation no longer matches (slot freed and reused) is dropped, counted stale. */
static void
test_stale_cqe_dropped(void **state)
{
    (void)state;
    struct conn *c = open_conn(&full_phase);
    uint32_t slot = c->slot, gen = c->gen;
    issue(c, OP_HS_READ, 0);
    uint64_t old_ud = fr_ud(0);
    assert_int_equal(c->inflight, 1);

    conn_close(&sh, c, END_CLIENT_EOF);
    fr_complete(&sh, 0, -ECANCELED, 0);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(c->gen, gen + 1);

    /* The slot is reused, most recently freed first, under the new generation. */
    struct conn *d = open_conn(&full_phase);
    assert_ptr_equal(d, c);
    assert_int_equal(d->slot, slot);
    issue(d, OP_HS_READ, 0);
    unsigned before = n_evs;

    /* A late completion of the old connection's op (its CQE was already out). */
    fr_post(old_ud, 42, 0);
    fr_reap(&sh);
    assert_int_equal(n_evs, before); /* nothing delivered to the new connection */
    assert_int_equal(sh.st.stale_cqes, 1);
    assert_int_equal(d->inflight, 1); /* its own op is still counted */
    assert_int_equal(d->state, CONN_HANDSHAKE);

    /* A slot never allocated is stale too. */
    fr_post(ud_make(OP_HS_READ, 0, 7, 0), 0, 0);
    fr_reap(&sh);
    assert_int_equal(sh.st.stale_cqes, 2);
    assert_int_equal(n_evs, before);

    /* The new connection's own CQE is delivered, with its generation. */
    fr_complete(&sh, 0, 5, 0);
    const struct ev *e = last_ev(EV_CQE);
    assert_non_null(e);
    assert_int_equal(e->gen, gen + 1);
    assert_int_equal(e->res, 5);
    assert_int_equal(d->inflight, 0);
}

/* Close with ops in flight: CLOSING until the last CQE; then release once, fds closed once. */
static void
test_free_only_when_drained(void **state)
{
    (void)state;
    struct conn *c = open_conn(&full_phase);
    uint32_t gen = c->gen;
    int cfd = c->cfd, tfd = c->tfd;
    uint32_t open_before = sh.n_open;
    issue(c, OP_HS_READ, 0);
    issue(c, OP_POLL_IN, 0);
    issue(c, OP_POLL_IN, 1);
    assert_int_equal(c->inflight, 3);
    assert_int_equal(sh.st.inflight, 3);

    conn_close(&sh, c, END_TARGET_ERR);
    assert_int_equal(c->state, CONN_CLOSING);
    assert_int_equal(c->end, END_TARGET_ERR);
    assert_int_equal(count_ev(EV_RELEASE), 0);
    assert_int_equal(closes[cfd] + closes[tfd], 0);
    assert_true(fd_open(cfd) && fd_open(tfd));
    /* shutdown() wakes what waits on the sockets; the closing list is the fallback. */
    assert_int_equal(shutdowns[cfd], 1);
    assert_int_equal(shutdowns[tfd], 1);
    assert_int_equal(c->tlist, TL_CLOSING);
    assert_int_equal(sh.n_open, open_before);

    /* The ops complete one by one; each still reaches the phase (it may hold a buffer). */
    fr_complete(&sh, 0, -ECANCELED, 0);
    fr_complete(&sh, 0, 0, 0);
    assert_int_equal(c->state, CONN_CLOSING);
    assert_int_equal(c->gen, gen);
    assert_int_equal(count_ev(EV_RELEASE), 0);
    assert_int_equal(count_ev(EV_CQE), 2);
    assert_int_equal(last_ev(EV_CQE)->state, CONN_CLOSING);
    assert_int_equal(closes[cfd] + closes[tfd], 0);
    assert_int_equal(fs_log_n, 0);

    fr_complete(&sh, 0, -ECANCELED, 0);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(c->gen, gen + 1);
    assert_int_equal(count_ev(EV_RELEASE), 1);
    assert_int_equal(last_ev(EV_RELEASE)->gen, gen); /* released before the bump */
    assert_int_equal(closes[cfd], 1);
    assert_int_equal(closes[tfd], 1);
    assert_false(fd_open(cfd));
    assert_false(fd_open(tfd));
    assert_int_equal(c->cfd, -1);
    assert_int_equal(c->tfd, -1);
    assert_int_equal(c->tlist, TL_NONE);
    assert_int_equal(sh.head[TL_CLOSING], CONN_NIL);
    assert_int_equal(sh.n_open, open_before - 1);
    assert_int_equal(sh.st.inflight, 0);
    assert_int_equal(sh.st.ended[END_TARGET_ERR], 1);
    assert_true(sh.room_freed);
    /* One access-log line, at free, with the reason. */
    assert_int_equal(fs_log_n, 1);
    assert_int_equal(fs_log_last.end, END_TARGET_ERR);
    /* Its id is the one the admin API showed: the slot and the generation before the bump. */
    assert_int_equal(fs_log_last.slot, c->slot);
    assert_int_equal(fs_log_last.gen, gen);

    /* Nothing more happens to a freed slot: a close is ignored, nothing is closed again. */
    conn_close(&sh, c, END_DONE);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(count_ev(EV_RELEASE), 1);
    assert_int_equal(closes[cfd], 1);
    assert_int_equal(sh.n_open, open_before - 1);

    /* With nothing in flight, close frees at once. */
    struct conn *d = open_conn(&bare_phase);
    int dc = d->cfd; /* likely c's old number: count from here */
    unsigned dc_closes = closes[dc], dc_shutdowns = shutdowns[dc];
    conn_close(&sh, d, END_CLIENT_EOF);
    assert_int_equal(d->state, CONN_FREE);
    assert_int_equal(count_ev(EV_RELEASE), 2);
    assert_int_equal(closes[dc], dc_closes + 1);
    assert_int_equal(shutdowns[dc], dc_shutdowns);
}

/* conn_close() twice: the first reason stays, nothing is done twice. */
static void
test_close_idempotent(void **state)
{
    (void)state;
    struct conn *c = open_conn(&full_phase);
    int cfd = c->cfd;
    issue(c, OP_HS_READ, 0);
    conn_close(&sh, c, END_HS_TIMEOUT);
    conn_close(&sh, c, END_CLIENT_ERR);
    conn_close(&sh, c, END_DONE);
    assert_int_equal(c->end, END_HS_TIMEOUT);
    assert_int_equal(shutdowns[cfd], 1);
    fr_complete(&sh, 0, -ECANCELED, 0);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(sh.st.ended[END_HS_TIMEOUT], 1);
    assert_int_equal(sh.st.ended[END_CLIENT_ERR], 0);
    assert_int_equal(sh.st.ended[END_DONE], 0);
    assert_int_equal(count_ev(EV_RELEASE), 1);
    assert_int_equal(closes[cfd], 1);
}

/* References reach only the same live connection, with their tag. */
static void
test_refs_reach_only_the_same_live_conn(void **state)
{
    (void)state;
    struct conn *c = open_conn(&full_phase);
    uint64_t r7 = conn_ref(c, 7), r3 = conn_ref(c, 3);
    assert_int_equal(conn_ref_tag(r7), 7);
    assert_ptr_equal(conn_from_ref(&sh, r7), c);

    union sockaddr_inx a[2];
    memset(a, 0, sizeof(a));
    a[0].v4.sin_family = AF_INET;
    a[0].v4.sin_port = htons(80);
    inet_pton(AF_INET, "198.51.100.7", &a[0].v4.sin_addr);
    a[1] = a[0];
    inet_pton(AF_INET, "198.51.100.8", &a[1].v4.sin_addr);
    conn_resolved(&sh, r7, 0, a, 2);
    const struct ev *e = last_ev(EV_RESOLVED);
    assert_non_null(e);
    assert_int_equal(e->tag, 7);
    assert_int_equal(e->res, 0);
    assert_int_equal(e->n, 2);
    assert_memory_equal(last_addrs, a, sizeof(a));
    conn_resolved(&sh, r7, -ETIMEDOUT, NULL, 0);
    assert_int_equal(last_ev(EV_RESOLVED)->res, -ETIMEDOUT);
    conn_authed(&sh, r3, true);
    e = last_ev(EV_AUTH);
    assert_non_null(e);
    assert_int_equal(e->tag, 3);
    assert_int_equal(e->res, 1);
    assert_int_equal(count_ev(EV_RESOLVED), 2);

    /* Closing, an op still out: no answer reaches it. */
    issue(c, OP_HS_READ, 0);
    conn_close(&sh, c, END_CLIENT_EOF);
    assert_null(conn_from_ref(&sh, r7));
    conn_resolved(&sh, r7, 0, a, 1);
    conn_authed(&sh, r3, false);
    assert_int_equal(count_ev(EV_RESOLVED), 2);
    assert_int_equal(count_ev(EV_AUTH), 1);

    /* Freed and reused by another connection: still nothing, for either. */
    fr_complete(&sh, 0, -ECANCELED, 0);
    struct conn *d = open_conn(&full_phase);
    assert_ptr_equal(d, c);
    assert_null(conn_from_ref(&sh, r7));
    conn_resolved(&sh, r7, 0, a, 1);
    conn_authed(&sh, r3, true);
    assert_int_equal(count_ev(EV_RESOLVED), 2);
    assert_int_equal(count_ev(EV_AUTH), 1);
    /* The new connection's own reference works. */
    conn_authed(&sh, conn_ref(d, 1), false);
    assert_int_equal(count_ev(EV_AUTH), 2);
    assert_int_equal(last_ev(EV_AUTH)->gen, d->gen);
    /* A slot beyond those ever used. */
    assert_null(conn_from_ref(&sh, (uint64_t)d->gen << 32 | (uint64_t)6 << 8));
}

/* Expiry: the phase's on_timeout, or a close with the list's reason; never early. */
static void
test_timer_expiry(void **state)
{
    (void)state;
    uint32_t t0 = sh.now_ds;
    struct conn *h = open_conn(&full_phase);
    struct conn *hb = open_conn(&bare_phase);
    struct conn *b = open_conn(&bare_phase);
    struct conn *i = open_conn(&bare_phase);
    struct conn *k = open_conn(&bare_phase);
    conn_timer_set(&sh, h, TL_HANDSHAKE);
    conn_timer_set(&sh, hb, TL_HANDSHAKE);
    conn_timer_set(&sh, b, TL_BIND);
    conn_timer_set(&sh, i, TL_IDLE);
    conn_timer_set(&sh, k, TL_CONNECT);
    assert_ptr_equal(conn_timer_first(&sh, TL_HANDSHAKE), h);
    assert_ptr_equal(conn_timer_next(&sh, h), hb);
    assert_null(conn_timer_next(&sh, hb));

    /* connect_timeout is 5 s: at exactly 5 s nothing fires, 100 ms later it does; the
     * bare phase has no on_timeout, so the list's own reason closes it. */
    sh.now_ds = t0 + 50;
    conn_timers_run(&sh);
    assert_int_equal(k->state, CONN_HANDSHAKE);
    sh.now_ds = t0 + 51;
    conn_timers_run(&sh);
    assert_int_equal(k->state, CONN_FREE);
    assert_int_equal(sh.st.ended[END_HS_TIMEOUT], 1);

    /* handshake_timeout is 10 s. */
    sh.now_ds = t0 + 100;
    conn_timers_run(&sh);
    assert_int_equal(count_ev(EV_TIMEOUT), 0);
    assert_int_equal(hb->state, CONN_HANDSHAKE);

    sh.now_ds = t0 + 101;
    conn_timers_run(&sh);
    const struct ev *e = last_ev(EV_TIMEOUT);
    assert_non_null(e);
    assert_int_equal(count_ev(EV_TIMEOUT), 1);
    assert_int_equal(e->slot, h->slot);
    assert_int_equal(e->tl, TL_HANDSHAKE);
    assert_int_equal(h->state, CONN_HANDSHAKE); /* the phase decides; this one did nothing */
    assert_int_equal(h->tlist, TL_NONE);        /* and it is off the list */
    assert_int_equal(hb->state, CONN_FREE);     /* no on_timeout: the list's reason */
    assert_int_equal(sh.st.ended[END_HS_TIMEOUT], 2);
    assert_int_equal(b->state, CONN_HANDSHAKE);
    assert_int_equal(i->state, CONN_HANDSHAKE);

    sh.now_ds = t0 + 201;
    conn_timers_run(&sh);
    assert_int_equal(b->state, CONN_FREE);
    assert_int_equal(sh.st.ended[END_BIND_TIMEOUT], 1);
    assert_int_equal(i->state, CONN_HANDSHAKE);
    sh.now_ds = t0 + 301;
    conn_timers_run(&sh);
    assert_int_equal(i->state, CONN_FREE);
    assert_int_equal(sh.st.ended[END_IDLE_TIMEOUT], 1);
    assert_int_equal(count_ev(EV_TIMEOUT), 1);

    /* A list with a zero timeout never expires. */
    pol.handshake_timeout_s = 0;
    conn_timer_set(&sh, h, TL_HANDSHAKE);
    sh.now_ds += 100000;
    conn_timers_run(&sh);
    assert_int_equal(count_ev(EV_TIMEOUT), 1);
    assert_int_equal(h->tlist, TL_HANDSHAKE);
}

/* The idle list requeues a connection by its last activity instead of closing it. */
static void
test_idle_requeues_by_activity(void **state)
{
    (void)state;
    uint32_t t0 = sh.now_ds;
    struct conn *a = open_conn(&bare_phase);
    struct conn *q = open_conn(&bare_phase);
    conn_timer_set(&sh, a, TL_IDLE);
    conn_timer_set(&sh, q, TL_IDLE);
    /* a moved bytes 15 s later (the relay stamps active_ds); q stayed quiet. */
    a->active_ds = t0 + 150;

    sh.now_ds = t0 + 301;
    conn_timers_run(&sh);
    assert_int_equal(q->state, CONN_FREE);
    assert_int_equal(a->state, CONN_HANDSHAKE);
    assert_int_equal(a->tlist, TL_IDLE);
    assert_int_equal(a->stamp_ds, t0 + 150);
    assert_ptr_equal(conn_timer_first(&sh, TL_IDLE), a);

    sh.now_ds = t0 + 450;
    conn_timers_run(&sh);
    assert_int_equal(a->state, CONN_HANDSHAKE);
    sh.now_ds = t0 + 451;
    conn_timers_run(&sh);
    assert_int_equal(a->state, CONN_FREE);
    assert_int_equal(sh.st.ended[END_IDLE_TIMEOUT], 2);
}

/* Closing with ops out: after CLOSE_CANCEL_S (2 s) a cancel by fd, on each socket, again later. */
static void
test_closing_cancels_by_fd(void **state)
{
    (void)state;
    uint32_t t0 = sh.now_ds;
    struct conn *c = open_conn(&full_phase);
    int cfd = c->cfd, tfd = c->tfd;
    issue_on(c, cfd, OP_RECV, 0);
    issue_on(c, tfd, OP_RECV, 1);
    conn_close(&sh, c, END_IDLE_TIMEOUT);
    assert_int_equal(fr_count(OP_CANCEL, CONN_NIL, -1), 0);

    sh.now_ds = t0 + 20;
    conn_timers_run(&sh);
    assert_int_equal(fr_count(OP_CANCEL, CONN_NIL, -1), 0);
    assert_int_equal(sh.st.close_cancels, 0);

    sh.now_ds = t0 + 21;
    conn_timers_run(&sh);
    assert_int_equal(sh.st.close_cancels, 1);
    assert_int_equal(fr_count(OP_CANCEL, c->slot, -1), 2);
    int fds_seen = 0;
    for (unsigned i = 0; i < fr_n; i++) {
        const struct io_uring_sqe *s = &fr_ops[i].sqe;
        if (ud_op(s->user_data) != OP_CANCEL)
            continue;
        assert_int_equal(s->opcode, IORING_OP_ASYNC_CANCEL);
        assert_true(s->cancel_flags & IORING_ASYNC_CANCEL_FD);
        assert_true(s->cancel_flags & IORING_ASYNC_CANCEL_ALL);
        assert_int_equal(ud_gen(s->user_data), c->gen);
        fds_seen |= (s->fd == cfd) << 0 | (s->fd == tfd) << 1;
    }
    assert_int_equal(fds_seen, 3);
    assert_int_equal(c->inflight, 4);
    /* Still on the closing list: another 2 s, another round. */
    assert_int_equal(c->tlist, TL_CLOSING);
    sh.now_ds = t0 + 41;
    conn_timers_run(&sh);
    assert_int_equal(fr_count(OP_CANCEL, c->slot, -1), 2);
    sh.now_ds = t0 + 42;
    conn_timers_run(&sh);
    assert_int_equal(fr_count(OP_CANCEL, c->slot, -1), 4);
    assert_int_equal(sh.st.close_cancels, 2);

    /* The kernel runs the cancels: the polls end -ECANCELED and reach the phase; the
     * cancels' own CQEs are the slot layer's. Then the slot is freed. */
    fr_run(&sh, 10);
    assert_int_equal(count_ev(EV_CQE), 2);
    for (unsigned i = 0; i < n_evs; i++)
        if (evs[i].kind == EV_CQE) {
            assert_int_equal(evs[i].op, OP_RECV);
            assert_int_equal(evs[i].res, -ECANCELED);
        }
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(fr_n, 0);
    assert_int_equal(count_ev(EV_RELEASE), 1);
    assert_int_equal(closes[cfd], 1);
}

/* The hang-up watch: one poll, to on_hangup only while the connection lives. */
static void
test_hangup_watch(void **state)
{
    (void)state;
    struct conn *c = open_conn(&full_phase);
    conn_watch_hangup(&sh, c);
    conn_watch_hangup(&sh, c); /* armed already: no second poll */
    assert_int_equal(fr_count(OP_HUP, c->slot, -1), 1);
    int i = fr_find(OP_HUP, c->slot, -1);
    assert_int_equal(fr_ops[i].sqe.opcode, IORING_OP_POLL_ADD);
    assert_int_equal(fr_ops[i].sqe.fd, c->cfd);
    assert_true(fr_ops[i].sqe.poll32_events & POLLRDHUP);
    assert_true(c->flags & CONN_F_HUP_ARMED);

    /* Nothing yet: the kernel leaves it waiting. */
    assert_int_equal(fr_run(&sh, 5), 0);
    /* The client half-closes: POLLRDHUP. */
    shutdown(fs_peers[0], SHUT_WR);
    assert_int_equal(fr_run(&sh, 5), 1);
    const struct ev *e = last_ev(EV_HANGUP);
    assert_non_null(e);
    assert_true(e->res & POLLRDHUP);
    assert_false(c->flags & CONN_F_HUP_ARMED);
    assert_int_equal(count_ev(EV_CQE), 0); /* the slot layer's op, not the phase's */
    assert_true(conn_client_left(c, e->res));

    /* A cancelled watch (res < 0) is not a hang-up. */
    conn_watch_hangup(&sh, c);
    fr_complete_op(&sh, OP_HUP, c->slot, -1, -ECANCELED);
    assert_int_equal(count_ev(EV_HANGUP), 1);

    /* While closing, the watch's completion only counts down. */
    conn_watch_hangup(&sh, c);
    conn_close(&sh, c, END_CLIENT_EOF);
    fr_complete_op(&sh, OP_HUP, c->slot, -1, POLLHUP);
    assert_int_equal(count_ev(EV_HANGUP), 1);
    assert_int_equal(c->state, CONN_FREE);

    /* A phase without on_hangup: nothing is called, nothing breaks. */
    struct conn *d = open_conn(&bare_phase);
    conn_watch_hangup(&sh, d);
    fr_complete_op(&sh, OP_HUP, d->slot, -1, POLLRDHUP);
    assert_int_equal(count_ev(EV_HANGUP), 1);
    assert_int_equal(d->inflight, 0);
    assert_int_equal(d->state, CONN_HANDSHAKE);
}

/* A client that half-closed after pipelining bytes has not left. */
static void
test_client_left_needs_empty_socket(void **state)
{
    (void)state;
    struct conn *c = open_conn(&bare_phase);
    assert_int_equal(send(fs_peers[0], "data", 4, 0), 4);
    shutdown(fs_peers[0], SHUT_WR);
    assert_false(conn_client_left(c, POLLRDHUP));
    assert_true(conn_client_left(c, POLLHUP));
    char buf[8];
    assert_int_equal(recv(c->cfd, buf, sizeof(buf), 0), 4);
    assert_true(conn_client_left(c, POLLRDHUP));
}

/* Per-client counts: the limit refuses, put gives one back once, free gives the rest back. */
static void
test_client_counts_given_back_at_free(void **state)
{
    (void)state;
    struct conn *a = open_conn(&bare_phase);
    struct conn *b = open_conn(&bare_phase);
    struct conn *x = open_conn(&bare_phase);
    assert_true(conn_client_take(&sh, a, CLIENT_BIND, 2));
    assert_true(conn_client_take(&sh, a, CLIENT_UDP, 0));
    assert_true(conn_client_take(&sh, b, CLIENT_BIND, 2));
    assert_false(conn_client_take(&sh, x, CLIENT_BIND, 2)); /* the address holds 2 */
    assert_true(conn_client_take(&sh, x, CLIENT_BIND, 0));  /* no limit */
    assert_int_equal(clients_get(&sh.clients, &a->client, CLIENT_BIND), 3);

    conn_client_put(&sh, x, CLIENT_BIND);
    conn_client_put(&sh, x, CLIENT_BIND); /* it held one: given back once */
    assert_int_equal(clients_get(&sh.clients, &a->client, CLIENT_BIND), 2);

    issue(a, OP_HS_READ, 0);
    conn_close(&sh, a, END_DONE);
    /* Closing, not freed: it still holds its counts. */
    assert_int_equal(clients_get(&sh.clients, &a->client, CLIENT_BIND), 2);
    assert_int_equal(clients_get(&sh.clients, &a->client, CLIENT_UDP), 1);
    fr_complete(&sh, 0, -ECANCELED, 0);
    assert_int_equal(clients_get(&sh.clients, &b->client, CLIENT_BIND), 1);
    assert_int_equal(clients_get(&sh.clients, &b->client, CLIENT_UDP), 0);
    assert_true(conn_client_take(&sh, x, CLIENT_BIND, 2)); /* room again */
    conn_close(&sh, b, END_DONE);
    conn_close(&sh, x, END_DONE);
    assert_int_equal(clients_count(&sh.clients), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stale_cqe_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_only_when_drained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs_reach_only_the_same_live_conn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_requeues_by_activity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closing_cancels_by_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_left_needs_empty_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_counts_given_back_at_free, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
