/*
 * fuzz_conn.c - a stateful libFuzzer harness of the whole connection (issue #18): one shard's
 * real handshake, request and relay phases and slot layer on the fake ring of
 * tests/unit/fake_ring.h, the harness playing clients, targets, the kernel, the clock, the
 * resolver, the password worker and the control thread's reloads.
 *
 * The input is a program: a config byte, then steps (struct step_fn), each an opcode byte
 * and its operands. A step accepts a client (a socketpair; the shard gets one end, a real
 * fd), lets a client or a target write the next K bytes of the input (SOCKS4/4a/5 greetings,
 * passwords and requests, HTTP CONNECT, relay bytes or garbage) or shut or close its end,
 * completes the i-th op in flight by hand with a result chosen from the input (a success,
 * a short count, 0/EOF, -ECONNRESET, -EAGAIN, -ENOBUFS, -ECANCELED, -ETIME, -EPIPE,
 * -ECONNREFUSED, poll events), lets the kernel look at one op or at all of them (recv,
 * send, poll, cancel for real on the fds; a connect to any address goes to the harness's
 * own listener on 127.0.0.1 or ::1 instead: nothing leaves loopback), delivers a CQE of an
 * old generation, advances the clock (the cancels issued are done, the timeout ops no longer
 * than the step expire) and runs the tick (timer lists, request_tick(), relay_tick()),
 * publishes another policy as the control thread does (sh->pol, then
 * conn_policy_changed()), answers a DNS query (dns_resolve() is faked) or a password check
 * (authq_check() is faked, its answer now or later chosen by the input).
 *
 * After every delivered CQE and every step the invariants are checked (inv_check()), and a
 * violation aborts with "invariant failed: ...": a slot is live exactly when the harness saw
 * it allocated (conn_alloc() is wrapped) and not yet freed (conn_free()'s one access-log line
 * per slot, log_push()), with the generation it had; each connection's in-flight count is
 * the ops of its generation in the fake ring's table plus its CQEs not yet delivered, and no
 * op in flight belongs to a freed slot or an old generation; no closing connection is left
 * with nothing in flight; the free list, n_open and the timer lists agree with the slots;
 * a live connection's fds are open. close() is wrapped (-Wl,--wrap=close): the server closing
 * an fd that is not open, or one of the harness's own ends, is a finding. At the end of each
 * input every connection is closed (conn_close_all(), then the kernel and -ECANCELED by hand
 * until nothing is in flight): every slot free, every buffer back in the ring, the shard's
 * fds all closed (the /proc/self/fd count as at the start); the shard is torn down, so
 * LeakSanitizer sees any allocation left behind.
 *
 * Not covered: the real ring and shard loop (shard.c, ring.c), the accept op, DNS (dns.c),
 * the password worker (authq.c), GSS-API, fixed handshake buffers, the splice engine,
 * upstream chaining, client-address limits (no climap), proxy_protocol listeners.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "acl.h"
#include "authq.h"
#include "conn.h"
#include "dns.h"
#include "handshake.h"
#include "hosts.h"
#include "options.h"
#include "policy.h"
#include "relay.h"
#include "request.h"
#include "shard_types.h"
#include "socks5.h"

#include "fuzz.h"

/* The cmocka asserts of the unit tests' fakes, without cmocka: a failure aborts (FUZZ_CHECK),
 * and libFuzzer records the input. */
#define assert_true(cond)      FUZZ_CHECK(cond)
#define assert_non_null(p)     FUZZ_CHECK((p) != NULL)
#define assert_int_equal(a, b) FUZZ_CHECK((long long)(a) == (long long)(b))
#define fail_msg(...)                                      \
    do {                                                   \
        fprintf(stderr, "invariant failed: " __VA_ARGS__); \
        fputc('\n', stderr);                               \
        abort();                                           \
    } while (0)

#define FAKE_RING_REGISTRATIONS
#define FAKE_SHARD_REAL_POLICY
#define FAKE_SHARD_REAL_LOG
#include "../unit/fake_shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SLOTS     8   /* connection slots: a few inputs fill them */
#define MAX_CL    16  /* clients per input */
#define MAX_TG    16  /* accepted targets per input */
#define MAX_STEPS 512 /* steps per input */
#define MAX_FDS   4096

/* --- the input ------------------------------------------------------------------ */

static const uint8_t *in_p;
static size_t in_n, in_at;

static bool
more(void)
{
    return in_at < in_n;
}

static uint8_t
byte(void)
{
    return in_at < in_n ? in_p[in_at++] : 0;
}

/* Up to n bytes of the input, as a pointer into it; *got how many. */
static const uint8_t *
bytes(size_t n, size_t *got)
{
    const uint8_t *p = in_p + in_at;
    *got = in_n - in_at < n ? in_n - in_at : n;
    in_at += *got;
    return p;
}

/* --- the fds: whose each is, and close() watched --------------------------------- */

static bool mine[MAX_FDS]; /* the harness's own ends (clients, targets, listeners) */
static bool watching;      /* inside an input: the server's closes are checked */

int __real_close(int fd);
int __wrap_close(int fd);

static bool
fd_open(int fd)
{
    return fd >= 0 && fcntl(fd, F_GETFD) != -1;
}

int
__wrap_close(int fd)
{
    if (watching) {
        if (!fd_open(fd))
            fail_msg("close(%d): the fd is not open (closed twice?)", fd);
        if (fd < MAX_FDS && mine[fd])
            fail_msg("close(%d): the server closed one of the harness's own ends", fd);
    }
    return __real_close(fd);
}

static void
own(int fd)
{
    FUZZ_CHECK(fd >= 0 && fd < MAX_FDS);
    mine[fd] = true;
}

static void
drop(int *fd)
{
    if (*fd < 0)
        return;
    mine[*fd] = false;
    __real_close(*fd);
    *fd = -1;
}

/* --- slots: allocation and free tracked -------------------------------------------- */

static struct shard sh;
static struct {
    bool live;
    uint32_t gen;
} shadow[SLOTS];

struct conn *__real_conn_alloc(struct shard *s, const struct conn_phase *phase);
struct conn *__wrap_conn_alloc(struct shard *s, const struct conn_phase *phase);

struct conn *
__wrap_conn_alloc(struct shard *s, const struct conn_phase *phase)
{
    struct conn *c = __real_conn_alloc(s, phase);
    if (!c)
        return NULL;
    if (c->slot >= SLOTS)
        fail_msg("conn_alloc() gave slot %u of a table of %u", c->slot, SLOTS);
    if (shadow[c->slot].live)
        fail_msg("conn_alloc() gave slot %u, live since gen %u", c->slot, shadow[c->slot].gen);
    shadow[c->slot].live = true;
    shadow[c->slot].gen = c->gen;
    return c;
}

/* FUZZ_CONN_TRACE set: each step and each connection's end on stderr (to read a seed). */
static bool trace;

/* conn_free() writes one access-log line per slot it frees: the free, tracked. */
bool
log_push(struct logger *lg, unsigned shard, const struct log_rec *rec)
{
    (void)lg;
    (void)shard;
    fs_log_n++;
    if (trace)
        fprintf(stderr, "  end: slot %u gen %u version %u cmd %u rep %d end %u up %llu down %llu\n",
                rec->slot, rec->gen, rec->version, rec->cmd, rec->rep, rec->end,
                (unsigned long long)rec->bytes_up, (unsigned long long)rec->bytes_down);
    if (rec->slot >= SLOTS || !shadow[rec->slot].live || shadow[rec->slot].gen != rec->gen)
        fail_msg("slot %u gen %u freed, but it is not live (freed twice?)", rec->slot, rec->gen);
    shadow[rec->slot].live = false;
    return true;
}

/* --- the neighbours faked: password worker, resolver ------------------------------ */

static int auth_next; /* enum authq_result of the next check (input-chosen) */
#define MAX_Q 16
static uint64_t auth_q[MAX_Q], dns_q[MAX_Q];
static uint16_t dns_port[MAX_Q];
static unsigned n_auth_q, n_dns_q;

enum authq_result
authq_check(struct shard *s, uint32_t waiter, uint64_t cookie, const union sockaddr_inx *client,
            const struct auth_cred *cred)
{
    (void)s;
    (void)waiter;
    (void)client;
    (void)cred;
    if (auth_next == AUTHQ_PENDING) {
        if (n_auth_q == MAX_Q)
            return AUTHQ_FAIL;
        auth_q[n_auth_q++] = cookie;
    }
    return (enum authq_result)auth_next;
}

void
authq_cancel(struct shard *s, uint32_t waiter)
{
    (void)s;
    (void)waiter;
}

void
dns_resolve(struct shard *s, const char *name, uint16_t port, uint64_t ref)
{
    (void)name;
    if (n_dns_q == MAX_Q) {
        conn_resolved(s, ref, -ENOMEM, NULL, 0);
        return;
    }
    dns_port[n_dns_q] = port;
    dns_q[n_dns_q++] = ref;
}

/* --- the world, made once ------------------------------------------------------------ */

static struct opts o;
#define N_POL 3
static struct policy *pols[N_POL];
static struct hosts *hosts;
static int lsn4 = -1, lsn6 = -1; /* the targets' listeners: every connect goes to one */
static struct sockaddr_in lsn4_addr;
static struct sockaddr_in6 lsn6_addr;

static void
listener(int fam, int *fd, void *addr, socklen_t len)
{
    *fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (*fd < 0)
        return;
    if (bind(*fd, addr, len) != 0 || listen(*fd, 64) != 0 || getsockname(*fd, addr, &len) != 0) {
        __real_close(*fd);
        *fd = -1;
        return;
    }
    own(*fd);
}

static struct policy *
make_policy(bool deny_all, bool password, uint64_t gen)
{
    struct acl *acl = acl_new();
    FUZZ_CHECK(acl);
    FUZZ_CHECK(acl_add(acl, deny_all ? ACL_DENY : ACL_ALLOW, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0,
                       NULL, 0) >= 0);
    struct policy *p = policy_new(&o, acl, NULL, gen);
    FUZZ_CHECK(p);
    p->n_auth = password ? 1 : 0;
    p->auth_password = password;
    p->auth_methods[0] = password ? SOCKS5_METHOD_PASSWORD : SOCKS5_METHOD_NONE;
    p->socks4 = password ? SOCKS4_OFF : SOCKS4_ON;
    p->http_connect = true;
    p->close_denied = true;
    p->close_removed_users = true;
    return p;
}

static void
world_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    trace = getenv("FUZZ_CONN_TRACE") != NULL;
    options_defaults(&o);
    o.connect_timeout_s = 5;
    o.handshake_timeout_s = 10;
    o.idle_timeout_s = 30;
    o.write_timeout_s = 5;
    o.bind_timeout_s = 5;
    o.happy_eyeballs_delay_ms = 250;
    o.hs_slots = 2; /* a third client at once waits for a context */
    o.relay = RELAY_COPY;
    o.buf_count = 8;
    o.buf_size = 512;
    o.pipe_size = 65536;
    pols[0] = make_policy(false, false, 1);
    pols[1] = make_policy(false, true, 2);
    pols[2] = make_policy(true, false, 3);
    char path[64];
    hosts = fs_hosts(path, "127.0.0.1 target.test\n::1 target6.test\n");
    unlink(path);
    lsn4_addr.sin_family = AF_INET;
    lsn4_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener(AF_INET, &lsn4, &lsn4_addr, sizeof(lsn4_addr));
    FUZZ_CHECK(lsn4 >= 0);
    lsn6_addr.sin6_family = AF_INET6;
    lsn6_addr.sin6_addr = in6addr_loopback;
    listener(AF_INET6, &lsn6, &lsn6_addr, sizeof(lsn6_addr)); /* may fail: no ::1 */
    rcu_register_thread();
}

/* --- clients and targets ---------------------------------------------------------------- */

static int cl[MAX_CL], tg[MAX_TG];
static unsigned n_cl, n_tg;

/* Targets the listeners accepted (a connect reached one): the harness's now. */
static void
accept_targets(void)
{
    int ls[2] = {lsn4, lsn6};
    for (int k = 0; k < 2; k++) {
        while (ls[k] >= 0 && n_tg < MAX_TG) {
            int fd = accept4(ls[k], NULL, NULL, SOCK_NONBLOCK);
            if (fd < 0)
                break;
            own(fd);
            tg[n_tg++] = fd;
        }
    }
    /* Beyond MAX_TG they wait in the backlog, and go with it at the end. */
}

static void
peer_write(int fd, unsigned k)
{
    size_t n;
    const uint8_t *p = bytes(k, &n);
    if (fd >= 0 && n)
        (void)send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void
peer_shut(int *fd, uint8_t how)
{
    if (*fd < 0)
        return;
    switch (how % 4) {
    case 0:
        shutdown(*fd, SHUT_WR);
        break;
    case 1:
        drop(fd);
        break;
    case 2: {
        /* A reset (TCP) or a plain close (AF_UNIX). */
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(*fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        drop(fd);
        break;
    }
    default:
        shutdown(*fd, SHUT_RD);
        break;
    }
}

static void
peer_drain(int fd)
{
    uint8_t buf[4096];
    for (int i = 0; fd >= 0 && i < 64 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++)
        ;
}

/* --- the kernel -------------------------------------------------------------------------- */

/*
 * A connect, as the kernel would do it, but to the harness's listener of the socket's
 * family, whatever the address asked: the result (0 or -errno), or 1 when it still waits.
 */
static int
kernel_connect(struct fr_op *op)
{
    struct io_uring_sqe *s = &op->sqe;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(s->fd, (struct sockaddr *)&ss, &len) != 0)
        return -errno;
    if (!op->tried) {
        op->tried = true;
        int r;
        if (ss.ss_family == AF_INET)
            r = connect(s->fd, (struct sockaddr *)&lsn4_addr, sizeof(lsn4_addr));
        else if (ss.ss_family == AF_INET6 && lsn6 >= 0)
            r = connect(s->fd, (struct sockaddr *)&lsn6_addr, sizeof(lsn6_addr));
        else
            return -ENETUNREACH;
        if (r == 0)
            return 0;
        if (errno != EINPROGRESS)
            return -errno;
    }
    if (!(fr_revents(s->fd, POLLOUT) & (POLLOUT | POLLERR | POLLHUP)))
        return 1;
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    return -err;
}

/* The kernel looks at op i once (fr_exec(), with plain recvs and connects of its own). */
static bool
kernel_exec(unsigned i)
{
    struct fr_op *op = &fr_ops[i];
    struct io_uring_sqe *s = &op->sqe;
    int res;
    if (s->opcode == IORING_OP_RECV && !(s->flags & IOSQE_BUFFER_SELECT)) {
        ssize_t n = recv(s->fd, (void *)(uintptr_t)s->addr, s->len, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            return false;
        res = n < 0 ? -errno : (int)n;
    } else if (s->opcode == IORING_OP_CONNECT) {
        res = kernel_connect(op);
        if (res == 1)
            return false;
    } else {
        return fr_exec(i);
    }
    uint64_t ud = s->user_data;
    fr_remove(i);
    fr_post(ud, res, 0);
    return true;
}

/* One batch: the kernel looks at every op once, then the CQEs are delivered. */
static unsigned
kernel_pass(void)
{
    unsigned n = fr_n;
    unsigned long seen[FR_MAX];
    for (unsigned i = 0; i < n; i++)
        seen[i] = fr_ops[i].seq;
    for (unsigned k = 0; k < n; k++)
        for (unsigned i = 0; i < fr_n; i++)
            if (fr_ops[i].seq == seen[k]) {
                kernel_exec(i);
                break;
            }
    return fr_reap(&sh);
}

/* Time passed: the cancels issued before it are done (the kernel does them at once). */
static void
kernel_cancels(void)
{
    for (unsigned i = 0; i < fr_n;) {
        if (fr_ops[i].sqe.opcode == IORING_OP_ASYNC_CANCEL)
            fr_exec(i);
        else
            i++;
    }
    fr_reap(&sh);
}

/* The result of op i completed by hand: sel chooses; arg a length or an event set. */
static int
hand_result(unsigned i, uint8_t sel, uint8_t arg, unsigned *flags)
{
    struct fr_op *op = &fr_ops[i];
    struct io_uring_sqe *s = &op->sqe;
    static const int errs[] = {-ECONNRESET, -EAGAIN, -ENOBUFS,      -ECANCELED,
                               -ETIME,      -EPIPE,  -ECONNREFUSED, -ETIMEDOUT};
    *flags = 0;
    if (sel % 4 != 0) /* an error, 3 times in 4 */
        return errs[(sel >> 2) % 8];
    bool whole = sel & 0x10;
    switch (s->opcode) {
    case IORING_OP_SEND: {
        if (s->len == 0 || whole)
            return (int)s->len;
        return (int)(1 + arg % s->len); /* short (or whole) */
    }
    case IORING_OP_RECV: {
        size_t len = s->len;
        uint8_t *to = (uint8_t *)(uintptr_t)s->addr;
        if (s->flags & IOSQE_BUFFER_SELECT) {
            /* The kernel takes a buffer, EOF included; none left: -ENOBUFS. */
            if (fr_bufs_free() == 0)
                return -ENOBUFS;
            const struct io_uring_buf *b = &fr_br->bufs[fr_br_head & fr_br_mask];
            len = len && len < b->len ? len : b->len;
            to = (uint8_t *)(uintptr_t)b->addr;
            fr_br_head++;
            *flags = IORING_CQE_F_BUFFER | (unsigned)b->bid << IORING_CQE_BUFFER_SHIFT;
        }
        if (whole || len == 0)
            return 0; /* EOF */
        size_t got;
        const uint8_t *p = bytes(1 + arg % len, &got);
        memcpy(to, p, got);
        return (int)got;
    }
    case IORING_OP_POLL_ADD: {
        static const short ev[] = {POLLIN, POLLOUT, POLLHUP, POLLERR, POLLRDHUP};
        short want = (short)(s->poll32_events | POLLERR | POLLHUP);
        short got = (short)(whole ? s->poll32_events : ev[arg % 5] & want);
        return got ? got : POLLHUP;
    }
    case IORING_OP_CONNECT: {
        int r = kernel_connect(op);
        return r == 1 ? 0 : r; /* on loopback it finishes soon: say it did */
    }
    case IORING_OP_TIMEOUT:
        return whole ? 0 : -ETIME;
    case IORING_OP_ASYNC_CANCEL:
        return whole ? 0 : -ENOENT; /* it found nothing (the target raced it) */
    default:
        return -ECANCELED; /* an op whose success would be an fd, or unknown here */
    }
}

/* --- the invariants ------------------------------------------------------------------------- */

static void
inv_check(struct shard *s)
{
    unsigned live = 0;
    unsigned ops[SLOTS] = {0};
    for (unsigned i = 0; i < fr_n; i++) {
        uint64_t ud = fr_ud(i);
        uint32_t slot = ud_slot(ud);
        if (ud_op(ud) < OP_CONN_FIRST)
            fail_msg("op %u in flight is no connection's", ud_op(ud));
        if (slot >= s->high || s->conns[slot].state == CONN_FREE ||
            s->conns[slot].gen != ud_gen(ud))
            fail_msg("op %u in flight for slot %u gen %u, freed or reused (slot gen %u)", ud_op(ud),
                     slot, ud_gen(ud), slot < s->high ? s->conns[slot].gen : 0);
        ops[slot]++;
    }
    for (unsigned i = fr_cq_head; i < fr_cq_n; i++) {
        uint64_t ud = fr_cq[i].user_data;
        uint32_t slot = ud_slot(ud);
        if (slot < s->high && s->conns[slot].state != CONN_FREE && s->conns[slot].gen == ud_gen(ud))
            ops[slot]++;
    }
    unsigned n_timed = 0;
    for (uint32_t i = 0; i < s->high; i++) {
        const struct conn *c = &s->conns[i];
        bool is_live = c->state != CONN_FREE;
        if (is_live != shadow[i].live || (is_live && c->gen != shadow[i].gen))
            fail_msg("slot %u: state %u gen %u, but the harness saw it %s at gen %u", i, c->state,
                     c->gen, shadow[i].live ? "live" : "free", shadow[i].gen);
        if (!is_live)
            continue;
        live++;
        n_timed += c->tlist != TL_NONE;
        if (c->inflight != ops[i])
            fail_msg("slot %u (state %u): inflight %u, but %u of its ops are out", i, c->state,
                     c->inflight, ops[i]);
        if (c->state == CONN_CLOSING && c->inflight == 0)
            fail_msg("slot %u closing with nothing in flight: never freed", i);
        const int fds[3] = {c->cfd, c->tfd, c->xfd};
        for (int k = 0; k < 3; k++)
            if (fds[k] >= 0 && !fd_open(fds[k]))
                fail_msg("slot %u holds fd %d, which is closed", i, fds[k]);
    }
    if (live != s->n_open || live + s->n_free != s->high)
        fail_msg("%u slots live, n_open %u, %u free of %u", live, (unsigned)s->n_open, s->n_free,
                 s->high);
    bool on_free[SLOTS] = {false};
    for (uint32_t k = 0; k < s->n_free; k++) {
        uint32_t f = s->free_slots[k];
        if (f >= s->high || on_free[f] || s->conns[f].state != CONN_FREE)
            fail_msg("free list: slot %u twice, out of range or live", f);
        on_free[f] = true;
    }
    unsigned n_listed = 0;
    for (int tl = TL_HANDSHAKE; tl < TL__COUNT; tl++) {
        uint32_t prev = CONN_NIL;
        for (uint32_t at = s->head[tl]; at != CONN_NIL; at = s->conns[at].tnext) {
            if (at >= s->high || s->conns[at].tlist != tl || s->conns[at].tprev != prev ||
                s->conns[at].state == CONN_FREE || ++n_listed > s->high)
                fail_msg("timer list %d broken at slot %u", tl, at);
            prev = at;
        }
        if (s->tail[tl] != prev)
            fail_msg("timer list %d: tail %u, last %u", tl, s->tail[tl], prev);
    }
    if (n_listed != n_timed)
        fail_msg("%u connections say they are on a timer list, %u are", n_timed, n_listed);
}

static void
batch_end(struct shard *s)
{
    relay_batch_end(s);
    if (s->hsp.handoff)
        handshake_handoff(s);
}

/* --- the steps -------------------------------------------------------------------------- */

static void
st_accept(void)
{
    uint8_t b = byte();
    int sp[2];
    if (n_cl == MAX_CL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) != 0)
        return;
    own(sp[1]);
    cl[n_cl++] = sp[1];
    handshake_start(&sh, sp[0], (b & 0x0F) == 0x0F); /* now and then a "transparent" one */
}

static int *
pick(int *set, unsigned n)
{
    uint8_t b = byte();
    return n ? &set[b % n] : NULL;
}

static void
st_write(bool target)
{
    int *fd = target ? pick(tg, n_tg) : pick(cl, n_cl);
    unsigned k = 1 + byte() % 64;
    peer_write(fd ? *fd : -1, k);
}

static void
st_shut(bool target)
{
    int *fd = target ? pick(tg, n_tg) : pick(cl, n_cl);
    uint8_t how = byte();
    if (fd)
        peer_shut(fd, how);
}

static void
st_hand(void)
{
    uint8_t i = byte(), sel = byte(), arg = byte();
    if (!fr_n)
        return;
    unsigned flags;
    unsigned at = i % fr_n;
    int res = hand_result(at, sel, arg, &flags);
    if (fr_ops[at].sqe.opcode == IORING_OP_ASYNC_CANCEL && (sel & 0x13) == 0x10) {
        /* A cancel that succeeds does what it says: the kernel's. */
        fr_exec(at);
        fr_reap(&sh);
        return;
    }
    fr_complete(&sh, at, res, flags);
}

static void
st_exec(void)
{
    uint8_t i = byte();
    if (!fr_n)
        return;
    kernel_exec(i % fr_n);
    fr_reap(&sh);
}

static void
st_stale(void)
{
    uint8_t a = byte(), b = byte();
    uint32_t slot = a % (sh.high + 1);
    uint32_t gen = b;
    if (slot < sh.high && sh.conns[slot].state != CONN_FREE)
        gen = sh.conns[slot].gen - 1 - b % 3; /* an earlier life of the slot */
    unsigned op = OP_CONN_FIRST + (a >> 4) % (OP_FAULT - OP_CONN_FIRST + 1);
    fr_post(ud_make(op, b & 1, slot, gen), b & 0x80 ? -ECANCELED : (int)(b & 0x3F), 0);
    fr_reap(&sh);
}

/* Time passed (ds deciseconds): the timeouts no longer than that expire. */
static void
kernel_timeouts(uint32_t ds)
{
    for (unsigned i = 0; i < fr_n;) {
        const struct io_uring_sqe *s = &fr_ops[i].sqe;
        const struct __kernel_timespec *ts = (const void *)(uintptr_t)s->addr;
        if (s->opcode == IORING_OP_TIMEOUT &&
            (uint64_t)ts->tv_sec * 10 + (uint64_t)ts->tv_nsec / 100000000 <= ds) {
            uint64_t ud = s->user_data;
            fr_remove(i);
            fr_post(ud, -ETIME, 0);
        } else {
            i++;
        }
    }
    fr_reap(&sh);
}

static void
st_tick(void)
{
    uint8_t b = byte();
    uint32_t ds = b & 0x80 ? (uint32_t)(b & 0x7F) * 10 : b; /* up to 12.7 s, or 127 s */
    kernel_cancels();
    kernel_timeouts(ds);
    sh.now_ds += ds;
    sh.now_s = sh.now_ds / 10;
    sh.now_ms = (uint64_t)sh.now_ds * 100;
    conn_timers_run(&sh);
    request_tick(&sh);
    relay_tick(&sh);
    fr_reap(&sh); /* the batch's end */
}

static void
st_reload(void)
{
    sh.pol = pols[byte() % N_POL];
    sh.pol_gen = sh.pol->gen;
    conn_policy_changed(&sh);
    fr_reap(&sh);
}

static void
st_dns(void)
{
    uint8_t i = byte(), how = byte();
    if (!n_dns_q)
        return;
    i %= n_dns_q;
    uint64_t ref = dns_q[i];
    uint16_t port = dns_port[i];
    dns_q[i] = dns_q[--n_dns_q];
    dns_port[i] = dns_port[n_dns_q];
    union sockaddr_inx a[3];
    memset(a, 0, sizeof(a));
    a[0].v6.sin6_family = AF_INET6;
    a[0].v6.sin6_addr = in6addr_loopback;
    a[0].v6.sin6_port = htons(port);
    a[1].v4.sin_family = AF_INET;
    a[1].v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a[1].v4.sin_port = htons(port);
    a[2].v4.sin_family = AF_INET;
    a[2].v4.sin_addr.s_addr = htonl(0x7f000002);
    a[2].v4.sin_port = htons(port);
    switch (how % 4) {
    case 0:
        conn_resolved(&sh, ref, 0, &a[1], 1);
        break;
    case 1:
        conn_resolved(&sh, ref, 0, a, 3);
        break;
    case 2:
        conn_resolved(&sh, ref, -ENOENT, NULL, 0);
        break;
    default:
        conn_resolved(&sh, ref, -ETIMEDOUT, NULL, 0);
        break;
    }
    fr_reap(&sh);
}

static void
st_auth(void)
{
    uint8_t i = byte(), how = byte();
    static const int next[] = {AUTHQ_OK, AUTHQ_FAIL, AUTHQ_PENDING, AUTHQ_CLOSE};
    auth_next = next[(how >> 1) % 4];
    if (!n_auth_q)
        return;
    i %= n_auth_q;
    uint64_t ref = auth_q[i];
    auth_q[i] = auth_q[--n_auth_q];
    conn_authed(&sh, ref, how & 1);
    fr_reap(&sh);
}

static void
st_drain(void)
{
    for (unsigned k = 0; k < n_cl; k++)
        peer_drain(cl[k]);
    for (unsigned k = 0; k < n_tg; k++)
        peer_drain(tg[k]);
}

static void
st_run(void)
{
    unsigned n = 1 + byte() % 8;
    for (unsigned k = 0; k < n && kernel_pass(); k++)
        accept_targets();
}

/* --- one input --------------------------------------------------------------------------- */

static void
shard_up(uint8_t cfg)
{
    fs_start(&sh, &o, pols[(cfg & 3) % N_POL], SLOTS);
    sh.pol_gen = sh.pol->gen;
    sh.hosts = hosts;
    sh.lg = (struct logger *)&sh; /* not a logger: log_push() above tracks the frees */
    FUZZ_CHECK(handshake_init(&sh, request_start) == 0);
    FUZZ_CHECK(relay_init(&sh) == 0);
    fr_use_buf_ring(sh.relay.br, o.buf_count);
    fr_batch_end = batch_end;
    fr_after_cqe = inv_check;
    memset(shadow, 0, sizeof(shadow));
    n_cl = n_tg = n_auth_q = n_dns_q = 0;
    auth_next = (cfg >> 2) & 1 ? AUTHQ_PENDING : AUTHQ_OK;
}

/* Close everything, let what is in flight end, and check that nothing is left. */
static void
shard_down(void)
{
    conn_close_all(&sh, END_SHUTDOWN);
    fr_reap(&sh);
    for (int k = 0; k < 16 && kernel_pass(); k++)
        ;
    for (unsigned k = 0; fr_n; k++) {
        if (k > 4 * FR_MAX)
            fail_msg("close-all: %u ops still in flight after %u cancellations", fr_n, k);
        fr_complete(&sh, 0, -ECANCELED, 0);
    }
    inv_check(&sh);
    for (uint32_t i = 0; i < sh.high; i++)
        if (sh.conns[i].state != CONN_FREE || shadow[i].live)
            fail_msg("close-all: slot %u still live (state %u)", i, sh.conns[i].state);
    if (sh.n_open != 0 || clients_count(&sh.clients) != 0)
        fail_msg("close-all: n_open %u, %u client addresses counted", (unsigned)sh.n_open,
                 clients_count(&sh.clients));
    if (fr_bufs_free() != o.buf_count)
        fail_msg("close-all: %u of %u relay buffers back", fr_bufs_free(), o.buf_count);
    if (sh.hsp.wait.len || sh.hsp.wait_heavy.len)
        fail_msg("close-all: connections still wait for a handshake context");
    relay_fini(&sh);
    handshake_fini(&sh);
    fs_fini(&sh);
    for (unsigned k = 0; k < n_cl; k++)
        drop(&cl[k]);
    for (unsigned k = 0; k < n_tg; k++)
        drop(&tg[k]);
    /* Connects that reached a listener after the last look: accepted and closed. */
    accept_targets();
    for (unsigned k = 0; k < n_tg; k++)
        drop(&tg[k]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    world_init();
    in_p = data;
    in_n = size;
    in_at = 0;
    unsigned fds = fs_open_fds();
    watching = true;
    shard_up(byte());
    for (unsigned k = 0; k < MAX_STEPS && more(); k++) {
        uint8_t op = byte() % 16;
        if (trace)
            fprintf(stderr, "step %u: op %u, %u in flight, %u open\n", k, op, fr_n,
                    (unsigned)sh.n_open);
        switch (op) {
        case 0:
            st_accept();
            break;
        case 1:
            st_write(false);
            break;
        case 2:
            st_shut(false);
            break;
        case 3:
            st_hand();
            break;
        case 4:
            st_exec();
            break;
        case 5:
            kernel_pass();
            break;
        case 6:
            st_stale();
            break;
        case 7:
            st_tick();
            break;
        case 8:
            st_reload();
            break;
        case 9:
            st_dns();
            break;
        case 10:
            st_auth();
            break;
        case 11:
            st_write(true);
            break;
        case 12:
            st_shut(true);
            break;
        case 13:
            st_drain();
            break;
        case 14:
            st_run();
            break;
        default:
            fr_reap(&sh); /* a batch with nothing: its end (contexts handed off) */
            break;
        }
        accept_targets();
        inv_check(&sh);
    }
    shard_down();
    watching = false;
    if (fs_open_fds() != fds)
        fail_msg("%d fds leaked by the input", (int)fs_open_fds() - (int)fds);
    return 0;
}
