/*
 * test_socksload_udp.c - tools/socksload/udp.c: the datagram window of one UDP association,
 * driven through a fake ring and a fake clock. The client.c hooks and the stats functions are
 * stubbed here: every op udp.c submits is recorded (a send with a copy of its datagram), and
 * the test completes them in the order it chooses by calling udp_complete() like the worker.
 * Checks loss detection (a lost datagram is found while other echoes keep coming; a slot lost
 * while its send is in flight sends again; --loss-timeout, not --timeout, bounds it), that
 * every datagram sent ends echoed or lost, and that --count ends the association. The open
 * loop (--rate): nothing is sent but what the schedule asks for (udp_send_due), the send
 * buffers bound the sends in flight, a late echo still counts, a duplicate does not, what is
 * out when the drain ends is lost (sent = echoed + lost), and the ring's size.
 * Built and run by `make socksload-test` (mk/socksload.mk), linked with udp.o, socks.o and
 * pattern.o.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <poll.h>

#include "socksload.h"

#define NS     1000000000ull
#define MAXOPS 256
#define SIZE   64

struct op {
    unsigned kind; /* CLIENT_OP_USEND or CLIENT_OP_URECV */
    void *obj;
    int fd;
    void *addr; /* the receive buffer */
    size_t len;
    bool done;
    uint8_t data[512]; /* a send: the datagram as it was sent */
};

static struct io_uring_sqe sqes[MAXOPS];
static unsigned nsqe;
static struct op ops[MAXOPS];
static unsigned nops;
static struct stats st;
static struct opts o;
static uint64_t now_ns;
static uint64_t count_left; /* UINT64_MAX: unbounded */
static char worker_dummy[64] __attribute__((aligned(16)));
static char tun_dummy[64] __attribute__((aligned(16)));
#define W ((struct worker *)worker_dummy)
#define T ((struct tun *)tun_dummy)

/* ---- stubs: client.c ---- */
struct io_uring_sqe *
client_sqe(struct worker *w, unsigned need)
{
    (void)w;
    (void)need;
    assert_true(nsqe < MAXOPS);
    memset(&sqes[nsqe], 0, sizeof(sqes[nsqe]));
    return &sqes[nsqe++];
}

void
client_prep_timeout(struct worker *w, struct io_uring_sqe *sqe)
{
    (void)w;
    (void)sqe;
    fail_msg("the receive must be bounded by --loss-timeout, not --timeout");
}

static struct __kernel_timespec recv_ts; /* the bound of the last receive */

void
client_prep_timeout_ts(struct worker *w, struct io_uring_sqe *sqe, struct __kernel_timespec *ts)
{
    (void)w;
    (void)sqe;
    recv_ts = *ts;
}

static void
record(struct io_uring_sqe *sqe, void *obj, unsigned kind)
{
    assert_true(nops < MAXOPS);
    struct op *p = &ops[nops++];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->obj = obj;
    p->fd = sqe->fd;
    p->addr = (void *)(uintptr_t)sqe->addr;
    p->len = sqe->len;
    if (kind == CLIENT_OP_USEND) {
        assert_true(p->len <= sizeof(p->data));
        memcpy(p->data, p->addr, p->len);
    }
}

void
client_track(struct tun *t, struct io_uring_sqe *sqe, unsigned op)
{
    assert_ptr_equal(t, T);
    record(sqe, NULL, op);
}

void
client_track_obj(struct tun *t, void *obj, struct io_uring_sqe *sqe, unsigned op)
{
    assert_ptr_equal(t, T);
    record(sqe, obj, op);
}

struct stats *
client_stats(struct worker *w)
{
    (void)w;
    return &st;
}

bool
client_count_take(struct worker *w)
{
    (void)w;
    if (count_left == UINT64_MAX)
        return true;
    if (count_left == 0)
        return false;
    count_left--;
    return true;
}

const struct opts *
client_opts(struct worker *w)
{
    (void)w;
    return &o;
}

/* ---- stubs: stats.c, with the clock under the test's control ---- */
void
stats_add(uint64_t *field, uint64_t v)
{
    *field += v;
}

void
stats_record_ns(struct stats *s, uint64_t ns)
{
    (void)s;
    (void)ns;
}

void
stats_error(struct stats *s, enum stats_err e)
{
    s->err[e]++;
}

uint64_t
stats_now_ns(void)
{
    return now_ns;
}

/* ---- helpers ---- */
static size_t hlen; /* the SOCKS UDP header udp.c puts before the sequence number */

static uint64_t
op_seq(const struct op *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p->data[hlen + (size_t)i] << (8 * i);
    return v;
}

/* The last send of datagram seq, or NULL. */
static struct op *
find_send(uint64_t seq)
{
    for (unsigned i = nops; i-- > 0;)
        if (ops[i].kind == CLIENT_OP_USEND && op_seq(&ops[i]) == seq)
            return &ops[i];
    return NULL;
}

static unsigned
open_ops(unsigned kind)
{
    unsigned n = 0;
    for (unsigned i = 0; i < nops; i++)
        n += ops[i].kind == kind && !ops[i].done;
    return n;
}

static struct op *
open_recv(void)
{
    for (unsigned i = 0; i < nops; i++)
        if (ops[i].kind == CLIENT_OP_URECV && !ops[i].done)
            return &ops[i];
    return NULL;
}

static bool
complete_send(struct udpa *u, uint64_t seq)
{
    struct op *p = find_send(seq);
    assert_non_null(p);
    assert_false(p->done);
    p->done = true;
    return udp_complete(W, u, p->obj, CLIENT_OP_USEND, (int)p->len);
}

/* The echo of datagram seq arrives (the relay answers with the same header format). */
static bool
echo(struct udpa *u, uint64_t seq)
{
    struct op *s = find_send(seq), *r = open_recv();
    assert_non_null(s);
    assert_non_null(r);
    assert_true(s->len <= r->len);
    memcpy(r->addr, s->data, s->len);
    r->done = true;
    return udp_complete(W, u, NULL, CLIENT_OP_URECV, (int)s->len);
}

/* The receive's linked --timeout fired. */
static bool
recv_timeout(struct udpa *u)
{
    struct op *r = open_recv();
    assert_non_null(r);
    r->done = true;
    return udp_complete(W, u, NULL, CLIENT_OP_URECV, -ECANCELED);
}

/* An association of window slots, --count count, --timeout 1 s and --loss-timeout loss_s. */
static struct udpa *
start_loss(unsigned window, uint64_t count, double loss_s)
{
    struct sockaddr_storage bnd;
    struct sockaddr_in *a = (struct sockaddr_in *)&bnd;
    struct udpa *u = NULL;
    uint8_t hdr[600];

    memset(&o, 0, sizeof(o));
    o.mode = MODE_UDP;
    o.size = SIZE;
    o.window = window;
    o.timeout_s = 1;
    o.loss_s = loss_s;
    o.dest.type = URL_HOST_IPV4;
    inet_pton(AF_INET, "127.0.0.1", o.dest.addr);
    o.dest.port = 9;
    hlen = socks_udp_header(hdr, &o.dest);
    memset(&st, 0, sizeof(st));
    nsqe = nops = 0;
    now_ns = 1000 * NS;
    count_left = count;
    memset(&bnd, 0, sizeof(bnd));
    a->sin_family = AF_INET;
    a->sin_port = htons(9); /* connect() only: nothing is sent for real */
    inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
    assert_int_equal(udp_start(W, T, &u, &bnd, 12345), 0);
    assert_non_null(u);
    return u;
}

static struct udpa *
start(unsigned window, uint64_t count)
{
    return start_loss(window, count, 1);
}

/* Replies keep coming for one slot while the other's datagram was lost: the loss must be
 * counted once it is --timeout old, even though the receive never times out. */
static void
test_loss_found_while_echoes_flow(void **state)
{
    (void)state;
    struct udpa *u = start(2, UINT64_MAX);

    assert_true(complete_send(u, 0));
    assert_true(complete_send(u, 1)); /* datagram 1 is lost on the way */
    for (uint64_t seq = 0; seq < 14; seq += 2) {
        now_ns += NS / 5; /* 0.2 s per round trip: the receive never waits --timeout */
        assert_true(echo(u, seq));
        assert_true(complete_send(u, seq + 2));
        /* Found lost at the first completion --timeout (1 s) after it went out. */
        assert_int_equal(st.err[STATS_E_LOST], seq < 8 ? 0 : 1);
    }
    assert_int_equal(st.units, 7);
    /* Its slot went on with datagram 3: the window is whole again. */
    assert_true(complete_send(u, 3));
    now_ns += NS / 5;
    assert_true(echo(u, 3));
    assert_int_equal(st.units, 8);
    assert_int_equal(st.err[STATS_E_LOST], 1);
    udp_stop(u, true);
    udp_free(u);
}

/* A datagram lost while its send op is still in flight: the slot must send again when that
 * send completes, or the window shrinks for good. */
static void
test_lost_while_sending_sends_again(void **state)
{
    (void)state;
    struct udpa *u = start(1, UINT64_MAX);

    now_ns += 3 * NS / 2;
    assert_true(recv_timeout(u));
    assert_int_equal(st.err[STATS_E_LOST], 1);
    assert_null(find_send(1));
    assert_true(complete_send(u, 0));
    assert_non_null(find_send(1));
    assert_int_equal(open_ops(CLIENT_OP_URECV), 1);
    udp_stop(u, true);
    udp_free(u);
}

/* A datagram younger than --timeout is not lost when the receive times out. */
static void
test_young_datagram_not_lost(void **state)
{
    (void)state;
    struct udpa *u = start(2, UINT64_MAX);

    assert_true(complete_send(u, 0));
    assert_true(complete_send(u, 1));
    now_ns += NS / 2;
    assert_true(echo(u, 0)); /* slot 0 sends datagram 2 now */
    assert_true(complete_send(u, 2));
    now_ns += 3 * NS / 4; /* 1.25 s after datagram 1, 0.75 s after datagram 2 */
    assert_true(recv_timeout(u));
    assert_int_equal(st.err[STATS_E_LOST], 1);
    assert_non_null(find_send(3)); /* slot 1 went on */
    assert_null(find_send(4));     /* slot 0 still waits for datagram 2 */
    assert_true(echo(u, 2));
    assert_int_equal(st.err[STATS_E_LOST], 1);
    assert_int_equal(st.units, 2);
    udp_stop(u, true);
    udp_free(u);
}

/* --count 3 with a window of 2: three datagrams, then the association ends by itself once
 * the last echo is in (udp_complete returns false), with no receive left pending. */
static void
test_count_ends_association(void **state)
{
    (void)state;
    struct udpa *u = start(2, 3);

    assert_true(complete_send(u, 0));
    assert_true(complete_send(u, 1));
    assert_true(echo(u, 0));
    assert_true(complete_send(u, 2));
    assert_true(echo(u, 1)); /* the count is used up; datagram 2 is still out */
    assert_null(find_send(3));
    assert_int_equal(open_ops(CLIENT_OP_URECV), 1);
    assert_false(echo(u, 2));
    assert_int_equal(open_ops(CLIENT_OP_URECV), 0);
    assert_int_equal(open_ops(CLIENT_OP_USEND), 0);
    assert_int_equal(st.units, 3);
    for (int e = 0; e < STATS_E_N; e++)
        assert_int_equal(st.err[e], 0);
    udp_free(u);
}

/* The count runs out only when the last send op completes (its echo overtook it): the
 * receive pending then is woken (shutdown), and its completion ends the association. */
static void
test_count_ends_after_last_send(void **state)
{
    (void)state;
    struct udpa *u = start(1, 1);

    assert_true(echo(u, 0));
    assert_true(complete_send(u, 0)); /* wants datagram 1: the count is used up */
    assert_null(find_send(1));
    struct op *r = open_recv();
    assert_non_null(r);
    /* Shut down, so that the ring completes the pending receive now instead of after
     * --timeout. */
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN | POLLRDHUP};
    assert_int_equal(poll(&pfd, 1, 0), 1);
    assert_true(pfd.revents & POLLRDHUP);
    r->done = true;
    assert_false(udp_complete(W, u, NULL, CLIENT_OP_URECV, 0)); /* woken by the shutdown */
    assert_int_equal(open_ops(CLIENT_OP_URECV), 0);
    assert_int_equal(st.units, 1);
    udp_free(u);
}

/* --loss-timeout 0.3 with --timeout 1: a datagram is lost at 0.3 s, the receive is bounded by
 * 0.3 s, and at the end of a --count run sent = echoed + lost. */
static void
test_loss_timeout_and_sent(void **state)
{
    (void)state;
    struct udpa *u = start_loss(2, 10, 0.3);

    assert_int_equal(recv_ts.tv_sec, 0);
    assert_int_equal(recv_ts.tv_nsec, 300 * 1000 * 1000);

    assert_true(complete_send(u, 0));
    assert_true(complete_send(u, 1)); /* datagram 1 is lost on the way */
    now_ns += NS / 10;
    assert_true(echo(u, 0));
    assert_true(complete_send(u, 2));
    assert_int_equal(st.err[STATS_E_LOST], 0);
    now_ns += NS / 4; /* 0.35 s after datagram 1 went out: past --loss-timeout */
    assert_true(recv_timeout(u));
    assert_int_equal(st.err[STATS_E_LOST], 1);
    /* The rest are echoed until --count (10) is used up. */
    uint64_t seqs[] = {2, 3, 4, 5, 6, 7, 8, 9};
    bool live = true;
    for (unsigned i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        uint64_t q = seqs[i];
        struct op *p = find_send(q);
        assert_non_null(p);
        if (!p->done)
            live = complete_send(u, q);
        now_ns += NS / 100;
        live = echo(u, q);
    }
    assert_false(live); /* the count is used up and nothing is outstanding: the end */
    assert_int_equal(st.sent, 10);
    assert_int_equal(st.units, 9);
    assert_int_equal(st.sent, st.units + st.err[STATS_E_LOST]);
    udp_free(u);
}

/* --rate: an open-loop association (rate datagrams/s over tunnels associations, window 2
 * asked: the open loop raises it to its minimum of send buffers). */
static struct udpa *
start_open(double rate, unsigned tunnels, double loss_s)
{
    struct udpa *u = start_loss(2, UINT64_MAX, loss_s);

    /* Again with the open-loop fields (start_loss clears o). */
    udp_stop(u, true);
    udp_free(u);
    o.rate = rate;
    o.tunnels = tunnels;
    o.timeout_s = 5;
    nsqe = nops = 0;
    u = NULL;
    struct sockaddr_storage bnd;
    struct sockaddr_in *a = (struct sockaddr_in *)&bnd;
    memset(&bnd, 0, sizeof(bnd));
    a->sin_family = AF_INET;
    a->sin_port = htons(9);
    inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
    memset(&st, 0, sizeof(st));
    assert_int_equal(udp_start(W, T, &u, &bnd, 12345), 0);
    assert_non_null(u);
    return u;
}

/* The open loop sends only when the schedule says so; echoes in any order, late or twice,
 * count once; what is still out --loss-timeout after the last send is lost at the end. */
static void
test_open_loop_counts(void **state)
{
    (void)state;
    struct udpa *u = start_open(1000, 1, 1);

    assert_int_equal(open_ops(CLIENT_OP_USEND), 0); /* no window sent at the start */
    assert_int_equal(open_ops(CLIENT_OP_URECV), 1);
    for (uint64_t i = 0; i < 10; i++) {
        assert_int_equal(udp_send_due(u), 1);
        now_ns += NS / 1000;
    }
    assert_int_equal(st.sent, 10);
    for (uint64_t q = 0; q < 10; q++)
        assert_true(complete_send(u, q));
    /* Echoes do not send anything by themselves. */
    uint64_t back[] = {5, 0, 1, 2, 4, 9};
    for (unsigned i = 0; i < sizeof(back) / sizeof(back[0]); i++)
        assert_true(echo(u, back[i]));
    assert_true(echo(u, 0)); /* a duplicate */
    assert_int_equal(st.units, 6);
    assert_int_equal(st.sent, 10);
    udp_stop(u, false);
    assert_int_equal(udp_send_due(u), -1);
    /* Half a --loss-timeout into the drain: nothing is lost yet, and a late echo counts. */
    now_ns += NS / 2;
    assert_true(recv_timeout(u));
    assert_int_equal(st.err[STATS_E_LOST], 0);
    assert_true(echo(u, 7));
    assert_int_equal(st.units, 7);
    /* Past it: 3, 6 and 8 are lost and the association ends (no receive left). */
    now_ns += NS * 6 / 10;
    assert_false(recv_timeout(u));
    assert_int_equal(open_ops(CLIENT_OP_URECV), 0);
    assert_int_equal(st.err[STATS_E_LOST], 3);
    assert_int_equal(st.sent, st.units + st.err[STATS_E_LOST]);
    for (int e = 0; e < STATS_E_N; e++)
        if (e != STATS_E_LOST)
            assert_int_equal(st.err[e], 0);
    udp_free(u);
}

/* The send buffers bound the sends in flight: with all of them in send ops a due datagram
 * waits (0), and goes once one completes. */
static void
test_open_loop_buffers(void **state)
{
    (void)state;
    struct udpa *u = start_open(100000, 4, 1);
    unsigned n = 0;

    while (udp_send_due(u) == 1)
        n++;
    assert_int_equal(n, 64); /* --window 2 asked, the open loop's minimum given */
    assert_int_equal(udp_send_due(u), 0);
    assert_int_equal(st.sent, 64);
    assert_true(complete_send(u, 17));
    assert_int_equal(udp_send_due(u), 1);
    assert_int_equal(op_seq(&ops[nops - 1]), 64);
    udp_stop(u, true);
    udp_free(u);
}

/* The ring holds UDP_RING_SECS (2) loss timeouts of the association's share of the rate, a
 * power of two from 1024 up to 4M entries. */
static void
test_ring_size(void **state)
{
    (void)state;
    assert_int_equal(udp_ring_size(100, 1, NS), 1024);
    assert_int_equal(udp_ring_size(1000, 1, NS), 2048);        /* 2,000 */
    assert_int_equal(udp_ring_size(320000, 64, NS), 16384);    /* 10,000 */
    assert_int_equal(udp_ring_size(320000, 64, NS / 2), 8192); /* 5,000 */
    assert_int_equal(udp_ring_size(1e7, 1, 10 * NS), 1u << 22);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_found_while_echoes_flow),
        cmocka_unit_test(test_lost_while_sending_sends_again),
        cmocka_unit_test(test_young_datagram_not_lost),
        cmocka_unit_test(test_count_ends_association),
        cmocka_unit_test(test_count_ends_after_last_send),
        cmocka_unit_test(test_loss_timeout_and_sent),
        cmocka_unit_test(test_open_loop_counts),
        cmocka_unit_test(test_open_loop_buffers),
        cmocka_unit_test(test_ring_size),
    };

    pattern_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
