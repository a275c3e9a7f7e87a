/*
 * client.c - a worker thread: one io_uring loop that opens tunnels through the proxy, runs
 * the SOCKS handshake and then the mode's traffic (throughput, connrate, hold, latency; the
 * datagrams of udp mode are udp.c's).
 *
 * Owns its ring, its tunnels and its struct stats (in worker_ctl, written only here). Every
 * socket op carries a linked timeout of --timeout, or a watchdog timer where an op must stay
 * pending longer (the hold idle time, the sink's final report). A tunnel is freed only when
 * none of its ops is in flight; user_data is the tunnel pointer with the op in the low bits,
 * and the linked timeouts carry 0. Must never block: the only syscalls outside the ring are
 * socket(), setsockopt(), bind() (--source), shutdown() and close().
 */
#include "socksload.h"

#include <errno.h>
#include <math.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define HS_MAX       600
#define RBUF_BULK    (128 * 1024)
#define RBUF_SMALL   (16 * 1024)

enum tun_state {
    ST_CONNECT,
    ST_METHOD,
    ST_AUTH,
    ST_REPLY,
    ST_RUN,
    ST_HOLD,  /* hold: idle until the timer, a recv pending to catch an early close */
    ST_HOLD2, /* hold: second round trip under a watchdog timer */
    ST_UDP,
    ST_FIN, /* connrate --close fin: shut down for writing, waiting for the peer's EOF */
    ST_EOF, /* connrate --close target: the response is in, waiting for the target's EOF */
};

struct tun {
    struct worker *w;
    struct tun *prev, *next;
    int fd;
    int inflight;
    enum tun_state state;
    bool closing;
    bool rst;
    bool sending;
    bool ending;   /* throughput up: stop sending, then shutdown(SHUT_WR) and read the report */
    bool timer_on; /* a CLIENT_OP_TIMER is pending */
    uint32_t seed;
    uint64_t num;   /* the tunnel's number n for the --user template */
    uint64_t t0;    /* socket() time */
    uint64_t t_msg; /* send time of the current round */
    uint64_t t_ph;  /* actual start of the current phase (phases.c) */
    uint8_t hs[HS_MAX];
    size_t hs_len, hs_off;
    uint8_t in[HS_MAX];
    size_t in_len;
    uint8_t hdr[PATTERN_HDR_LEN];
    size_t hdr_off;
    uint64_t tx, tx_end; /* pattern bytes sent after the header, and the limit */
    uint64_t rx, rx_end; /* pattern bytes received and verified, and the limit */
    uint8_t rep[PATTERN_REPORT_LEN];
    size_t rep_len;
    uint8_t *rbuf;
    size_t rcap;
    struct udpa *udp;
    struct http_resp *http;    /* http mode: the response being read */
    unsigned reqs;             /* http: requests sent on this tunnel */
    unsigned req_budget;       /* http: requests this tunnel may send (of --count, taken at once) */
    size_t req_off;            /* http: bytes of the current request sent */
    bool req_close;            /* http: the current request is the tunnel's last */
    bool req_next;             /* http: the next request waits for the last send's completion */
    bool held;                 /* hold --rate: set up and verified once, then held */
    struct tun *iprev, *inext; /* hold --rate: in the worker's queue of idle held tunnels */
    bool queued;
    uint64_t rt_sent;               /* hold --rate: when the current round trip was sent */
    struct __kernel_timespec wd_ts; /* hold --rate: the watchdog's rest, re-armed */
} __attribute__((aligned(16)));

struct worker {
    struct worker_ctl *ctl;
    const struct opts *o;
    struct io_uring ring;
    struct __kernel_timespec io_ts;
    struct __kernel_timespec hold_ts;
    struct tun *head;
    unsigned live;
    bool stopping;
    bool forced;
    uint64_t count_left;
    uint64_t byte_budget; /* throughput --count: bytes per tunnel */
    uint32_t seed_next;
    uint64_t num_next;   /* index, index + threads, ...: unique over the run's workers */
    uint64_t sched_k;    /* --rate: this worker's next start on the schedule */
    uint64_t next_due;   /* and its intended time */
    uint64_t sched0;     /* the schedule's origin: the start (hold: once all are held) */
    uint64_t sched_end;  /* no start is due at or after it */
    uint64_t timeout_ns; /* --timeout */
    /* hold --rate: the held tunnels not in a round trip, longest idle first; and the tunnels
     * that are held or ended before they were (the schedule starts when all are). */
    struct tun *idle_head, *idle_tail;
    unsigned settled;
};

static void tun_close(struct tun *t, bool rst);

/* hold --rate and udp --rate: the tunnels are opened at once and the schedule starts once
 * all are up (held, or the association running); its starts are round trips, datagrams. */
static bool
sched_on_tunnels(const struct opts *o)
{
    return o->rate > 0 && (o->mode == MODE_HOLD || o->mode == MODE_UDP);
}

static void tun_send(struct tun *t);
static void tun_recv(struct tun *t, bool timed);
static void http_request_next(struct tun *t);
static bool tun_spawn(struct worker *w, uint64_t t0);

struct io_uring_sqe *
client_sqe(struct worker *w, unsigned need)
{
    if (io_uring_sq_space_left(&w->ring) < need)
        io_uring_submit(&w->ring);
    return io_uring_get_sqe(&w->ring);
}

void
client_prep_timeout(struct worker *w, struct io_uring_sqe *sqe)
{
    client_prep_timeout_ts(w, sqe, &w->io_ts);
}

void
client_prep_timeout_ts(struct worker *w, struct io_uring_sqe *sqe, struct __kernel_timespec *ts)
{
    sqe->flags |= IOSQE_IO_LINK;
    struct io_uring_sqe *lt = io_uring_get_sqe(&w->ring);
    io_uring_prep_link_timeout(lt, ts, 0);
    io_uring_sqe_set_data64(lt, 0);
}

void
client_track(struct tun *t, struct io_uring_sqe *sqe, unsigned op)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)t | op);
    t->inflight++;
}

void
client_track_obj(struct tun *t, void *obj, struct io_uring_sqe *sqe, unsigned op)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)obj | op);
    t->inflight++;
}

struct stats *
client_stats(struct worker *w)
{
    return &w->ctl->st;
}

bool
client_count_take(struct worker *w)
{
    if (w->ctl->count == 0 || w->o->mode == MODE_THROUGHPUT)
        return true;
    if (w->count_left == 0)
        return false;
    w->count_left--;
    return true;
}

const struct opts *
client_opts(struct worker *w)
{
    return w->o;
}

/* Phase p of t ended now: its time counts from t->t_ph, the next phase starts now. */
static void
phase_end(struct tun *t, enum phase p)
{
    uint64_t now = stats_now_ns();

    phases_record(&t->w->ctl->ph, p, now - t->t_ph);
    t->t_ph = now;
}

/* A failed op's result as a (kind, detail) pair: the errno is the detail. */
#define FAIL_RES(res) err_kind(res), (res) < 0 ? -(res) : 0

static enum stats_err
err_kind(int res)
{
    switch (res) {
    case -ECANCELED:
    case -ETIME:
    case -ETIMEDOUT:
        return STATS_E_TIMEOUT;
    case -ECONNRESET:
    case -EPIPE:
        return STATS_E_RESET;
    case 0:
        return STATS_E_CLOSED;
    default:
        return STATS_E_OTHER;
    }
}

/*
 * Counts the error and closes the tunnel. Errors count whenever they happen, also after the
 * stop time (a unit still finishing then is measured like any other); only a tunnel we are
 * closing on purpose (closing set) counts nothing more. Not counted either: the error a
 * tunnel gets because the embedded target found its upload corrupted and reset it; the
 * target counts that mismatch (see target_claim), so one corruption is one error.
 */
static void
tun_fail(struct tun *t, enum stats_err e, uint64_t detail)
{
    struct target *tg = t->w->o->target;

    if (!t->closing &&
        !(e != STATS_E_MISMATCH && t->state >= ST_RUN && tg && target_claim(tg, t->seed)))
        stats_fail(&t->w->ctl->st, e, e == STATS_E_TIMEOUT ? 0 : detail);
    tun_close(t, false);
}

static void
tun_timer(struct tun *t, const struct __kernel_timespec *ts)
{
    struct io_uring_sqe *sqe = client_sqe(t->w, 1);

    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)ts, 0, 0);
    client_track(t, sqe, CLIENT_OP_TIMER);
    t->timer_on = true;
}

static void
tun_timer_cancel(struct tun *t)
{
    if (!t->timer_on)
        return;
    struct io_uring_sqe *sqe = client_sqe(t->w, 1);
    io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)t | CLIENT_OP_TIMER, 0);
    io_uring_sqe_set_data64(sqe, 0);
}

/* hold --rate: t is idle, last in the queue. */
static void
idle_push(struct worker *w, struct tun *t)
{
    t->iprev = w->idle_tail;
    t->inext = NULL;
    if (w->idle_tail)
        w->idle_tail->inext = t;
    else
        w->idle_head = t;
    w->idle_tail = t;
    t->queued = true;
}

static void
idle_remove(struct worker *w, struct tun *t)
{
    if (!t->queued)
        return;
    if (t->iprev)
        t->iprev->inext = t->inext;
    else
        w->idle_head = t->inext;
    if (t->inext)
        t->inext->iprev = t->iprev;
    else
        w->idle_tail = t->iprev;
    t->queued = false;
}

static void
tun_free(struct tun *t)
{
    struct worker *w = t->w;

    idle_remove(w, t);
    if (sched_on_tunnels(w->o) && !t->held)
        w->settled++; /* it will never be held: the schedule does not wait for it */
    if (t->rst) {
        /* An RST leaves no TIME_WAIT on the client side: connrate would run out of ports
         * (the default; --close fin keeps the plain close, TIME_WAIT and all). */
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    close(t->fd);
    if (t->udp)
        udp_free(t->udp);
    if (t->prev)
        t->prev->next = t->next;
    else
        w->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    w->live--;
    stats_add(&w->ctl->st.open, UINT64_MAX); /* - 1 */
    free(t->rbuf);
    free(t->http);
    free(t);
    /* connrate and http keep --workers tunnels going until the run stops; with --rate the
     * schedule starts them (sched_run), a freed slot only lets a due start go. */
    if ((w->o->mode == MODE_CONNRATE || w->o->mode == MODE_HTTP) && w->o->rate == 0 &&
        !w->stopping && client_count_take(w))
        tun_spawn(w, 0);
}

static void
tun_close(struct tun *t, bool rst)
{
    if (!t->closing) {
        t->closing = true;
        t->rst = rst;
        if (t->udp)
            udp_stop(t->udp, true);
        tun_timer_cancel(t);
        if (t->inflight > 0)
            shutdown(t->fd, SHUT_RDWR); /* completes the pending recv and send */
    }
    if (t->inflight == 0)
        tun_free(t);
}

/* --source: binds fd to the run's next source address. The port is left to connect()
 * (IP_BIND_ADDRESS_NO_PORT), which picks it against the whole 4-tuple: one address does not
 * run out of ports at the ephemeral range's size. -1 with errno. */
static int
src_bind(struct worker *w, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1;

    srcaddr_at(&w->o->src, __atomic_fetch_add(w->ctl->src_next, 1, __ATOMIC_RELAXED), &ss, &len);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    return bind(fd, (struct sockaddr *)&ss, len);
}

/* t0: the tunnel's start as its latency counts it (the intended start under --rate), 0 for
 * now. */
static bool
tun_spawn(struct worker *w, uint64_t t0)
{
    const struct opts *o = w->o;
    struct tun *t = aligned_alloc(16, sizeof(*t));
    int one = 1;

    if (!t)
        return false;
    memset(t, 0, sizeof(*t));
    t->w = w;
    t->t_ph = stats_now_ns();
    t->t0 = t0 ? t0 : t->t_ph;
    t->seed = w->seed_next;
    w->seed_next += 7919;
    t->num = w->num_next;
    w->num_next += o->threads;
    t->rcap = o->mode == MODE_THROUGHPUT ? RBUF_BULK : RBUF_SMALL;
    t->rbuf = malloc(t->rcap);
    if (o->mode == MODE_HTTP)
        t->http = malloc(sizeof(*t->http));
    bool mem = t->rbuf && (o->mode != MODE_HTTP || t->http);
    if (o->mode == MODE_HTTP) {
        /* The tunnel's requests come out of --count together (the caller took the first), so
         * that --count N with K per tunnel is N / K tunnels of K, rounded up. */
        uint64_t more = o->requests_per_tunnel - 1;
        if (w->ctl->count && more > w->count_left)
            more = w->count_left;
        if (w->ctl->count)
            w->count_left -= more;
        t->req_budget = 1 + (unsigned)more;
    }
    t->fd = mem ? socket(o->proxy_sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
    if (t->fd != -1 && o->src.n && src_bind(w, t->fd) == -1) {
        int e = errno;
        close(t->fd);
        t->fd = -1;
        errno = e;
    }
    if (t->fd == -1) {
        stats_fail(&w->ctl->st, STATS_E_CONNECT, mem ? (uint64_t)errno : ENOMEM);
        free(t->rbuf);
        free(t->http);
        free(t);
        return false;
    }
    if (o->mode != MODE_THROUGHPUT)
        setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    t->next = w->head;
    if (w->head)
        w->head->prev = t;
    w->head = t;
    w->live++;
    stats_add(&w->ctl->st.open, 1);
    struct io_uring_sqe *sqe = client_sqe(w, 2);
    io_uring_prep_connect(sqe, t->fd, (const struct sockaddr *)&o->proxy_sa, o->proxy_len);
    client_track(t, sqe, CLIENT_OP_CONNECT);
    client_prep_timeout(w, sqe);
    t->state = ST_CONNECT;
    return true;
}

/* Sends the rest of the handshake message in t->hs. */
static void
hs_send(struct tun *t)
{
    struct io_uring_sqe *sqe = client_sqe(t->w, 2);

    io_uring_prep_send(sqe, t->fd, t->hs + t->hs_off, t->hs_len - t->hs_off, MSG_NOSIGNAL);
    client_track(t, sqe, CLIENT_OP_SEND);
    client_prep_timeout(t->w, sqe);
}

static void
hs_message(struct tun *t, size_t n, enum tun_state next)
{
    t->hs_len = n;
    t->hs_off = 0;
    t->state = next;
    hs_send(t);
}

static void
hs_request(struct tun *t)
{
    const struct opts *o = t->w->o;
    uint8_t cmd = o->mode == MODE_UDP ? SOCKS_CMD_UDP : SOCKS_CMD_CONNECT;
    struct socks_dest any = {.type = URL_HOST_IPV4};

    /* UDP ASSOCIATE names the address the datagrams will come from; zeros mean "any"
     * (RFC 1928 section 7), which every proxy accepts. */
    hs_message(t, socks_request(t->hs, &o->proxy, cmd, cmd == SOCKS_CMD_UDP ? &any : &o->dest),
               ST_REPLY);
}

/* Starts the mode's traffic on a tunnel whose SOCKS reply said success. */
static void
run_start(struct tun *t, const struct sockaddr_storage *bnd)
{
    struct worker *w = t->w;
    const struct opts *o = w->o;
    struct pattern_hdr h = {.seed = t->seed};

    if (o->has_tpl && o->tpl.has_key) {
        h.flags = PATTERN_F_KEY;
        h.key = usertpl_key(&o->tpl, t->num);
    }

    stats_add(&w->ctl->st.tunnels, 1);
    if (o->mode == MODE_HOLD && w->ctl->st.tunnels == w->ctl->conns)
        w->ctl->opened_ns = stats_now_ns(); /* read by main after the join */
    t->state = ST_RUN;
    if (o->mode == MODE_UDP) {
        int rc = udp_start(w, t, &t->udp, bnd, t->seed);
        if (rc < 0)
            return tun_fail(t, rc == -EPERM ? STATS_E_PROTOCOL : STATS_E_OTHER, -rc);
        t->state = ST_UDP;
        if (o->rate > 0) {
            /* Open loop: the schedule sends on the associations in the idle queue, in turn. */
            t->held = true;
            w->settled++;
            idle_push(w, t);
        }
        /* The association lives as long as this connection (RFC 1928 section 7). */
        return tun_recv(t, false);
    }
    if (o->mode == MODE_THROUGHPUT)
        stats_record_ns(&w->ctl->st, stats_now_ns() - t->t0);
    if (o->mode == MODE_HTTP)
        return http_request_next(t);
    t->tx = t->rx = 0;
    switch (o->mode) {
    case MODE_THROUGHPUT: {
        uint64_t budget = w->byte_budget ? w->byte_budget : UINT64_MAX;
        h.mode = o->dir == DIR_DOWN ? 'S' : o->dir == DIR_UP ? 'K' : 'B';
        t->tx_end = o->dir == DIR_DOWN ? 0 : budget;
        t->rx_end = o->dir == DIR_UP ? 0 : budget;
        break;
    }
    case MODE_CONNRATE:
        h.mode = 'Q';
        h.a = o->request;
        h.b = o->response;
        if (o->close == CLOSE_TARGET)
            h.flags |= PATTERN_F_CLOSE; /* the target closes once its response is out */
        t->tx_end = o->request;
        t->rx_end = o->response;
        break;
    default: /* latency, hold: one round trip of --size bytes now */
        h.mode = 'E';
        t->tx_end = o->size;
        t->rx_end = o->size;
        break;
    }
    pattern_hdr_encode(t->hdr, &h);
    t->hdr_off = 0;
    t->t_msg = stats_now_ns();
    tun_send(t);
    if (o->mode == MODE_THROUGHPUT && o->dir == DIR_UP)
        tun_recv(t, false); /* the sink's report: pending all run long, no timeout */
    else if (t->rx_end > 0)
        tun_recv(t, true);
}

static void
tun_send(struct tun *t)
{
    struct io_uring_sqe *sqe;
    const void *p;
    size_t n;

    if (t->http) {
        p = t->w->o->http_req[t->req_close] + t->req_off;
        n = t->w->o->http_req_len[t->req_close] - t->req_off;
    } else if (t->hdr_off < PATTERN_HDR_LEN) {
        p = t->hdr + t->hdr_off;
        n = PATTERN_HDR_LEN - t->hdr_off;
    } else {
        uint64_t left = t->tx_end - t->tx;
        if (left == 0)
            return;
        n = left < PATTERN_CHUNK ? (size_t)left : PATTERN_CHUNK;
        p = pattern_at(t->seed, t->tx);
    }
    sqe = client_sqe(t->w, 2);
    io_uring_prep_send(sqe, t->fd, p, n, MSG_NOSIGNAL);
    client_track(t, sqe, CLIENT_OP_SEND);
    client_prep_timeout(t->w, sqe);
    t->sending = true;
}

static void
tun_recv(struct tun *t, bool timed)
{
    struct io_uring_sqe *sqe = client_sqe(t->w, 2);

    if (t->state < ST_RUN) {
        io_uring_prep_recv(sqe, t->fd, t->in + t->in_len, sizeof(t->in) - t->in_len, 0);
    } else if (t->w->o->mode == MODE_THROUGHPUT && t->w->o->dir == DIR_UP) {
        io_uring_prep_recv(sqe, t->fd, t->rep + t->rep_len, sizeof(t->rep) - t->rep_len, 0);
    } else {
        uint64_t want = t->rx_end > t->rx ? t->rx_end - t->rx : t->rcap;
        io_uring_prep_recv(sqe, t->fd, t->rbuf, want < t->rcap ? (size_t)want : t->rcap, 0);
    }
    client_track(t, sqe, CLIENT_OP_RECV);
    if (timed)
        client_prep_timeout(t->w, sqe);
}

/*
 * http: sends the tunnel's next GET, Connection: close on its last (--requests-per-tunnel), and
 * reads the response. Its latency counts from the send; under --rate the first request's
 * counts from the tunnel's intended start instead, so that a proxy that stalls the handshake
 * shows (corrected for coordinated omission, as connrate's tunnels).
 */
static void
http_request_next(struct tun *t)
{
    const struct opts *o = t->w->o;

    t->req_close = t->reqs + 1 >= t->req_budget;
    t->req_off = 0;
    t->t_msg = t->reqs == 0 && o->rate > 0 ? t->t0 : stats_now_ns();
    t->reqs++;
    http_resp_init(t->http);
    tun_send(t);
    tun_recv(t, true);
}

/* http: a whole response is in (open: the connection can carry another). Checks the status
 * and the size; then the next request, or the end of the tunnel. */
static void
http_response(struct tun *t, bool open)
{
    struct worker *w = t->w;
    const struct opts *o = w->o;
    const struct http_resp *r = t->http;
    struct stats *st = &w->ctl->st;
    uint64_t now = stats_now_ns();

    stats_add(&st->http_status[r->status], 1);
    if (o->expect_status ? r->status != (int)o->expect_status : r->status / 100 != 2)
        return tun_fail(t, STATS_E_HTTP_STATUS, (uint64_t)r->status);
    if (o->has_expect_size && r->body != o->expect_size)
        return tun_fail(t, STATS_E_HTTP_SIZE, STATS_D_SIZE(r->body, o->expect_size));
    stats_record_ns(st, now - t->t_msg);
    stats_add(&st->units, 1);
    if (!open || !r->keep_alive || t->req_close || w->stopping)
        return tun_close(t, o->close == CLOSE_RST);
    if (t->sending)
        t->req_next = true; /* the response came before the send's completion did */
    else
        http_request_next(t);
}

/* http: res bytes of the response in rbuf (0: the server closed). */
static void
http_recv(struct tun *t, int res)
{
    struct http_resp *r = t->http;

    if (res < 0)
        return tun_fail(t, FAIL_RES(res));
    if (res == 0) {
        if (r->phase == HTTP_P_STATUS && r->head == 0 && r->line_len == 0)
            return tun_fail(t, STATS_E_CLOSED, 0); /* not a byte of a response */
        if (r->phase == HTTP_P_BODY_LEN)           /* Content-Length said more */
            return tun_fail(t, STATS_E_HTTP_SIZE, STATS_D_SIZE(r->body, r->length));
        if (http_resp_eof(r) < 0)
            return tun_fail(t, STATS_E_HTTP_MALFORMED, r->err);
        return http_response(t, false);
    }
    if (t->reqs == 1 && r->phase == HTTP_P_STATUS && r->head == 0 && r->line_len == 0)
        phase_end(t, PHASE_FIRST_BYTE); /* from the SOCKS reply to the response's first byte */
    stats_add(&t->w->ctl->st.bytes_down, (uint64_t)res);
    ssize_t n = http_resp_feed(r, t->rbuf, (size_t)res);
    if (n < 0)
        return tun_fail(t, STATS_E_HTTP_MALFORMED, r->err);
    if (r->phase != HTTP_P_DONE)
        return tun_recv(t, true);
    if (n < res) /* nothing was asked for after this response */
        return tun_fail(t, STATS_E_HTTP_MALFORMED, HTTP_E_EXTRA);
    http_response(t, true);
}

/* throughput up: no more data; half-close so the sink answers with its report. */
static void
up_finish(struct tun *t)
{
    t->ending = true;
    if (t->sending)
        return; /* up_finish runs again when the send completes */
    shutdown(t->fd, SHUT_WR);
    tun_timer(t, &t->w->io_ts);
}

static void
on_connect(struct tun *t, int res)
{
    const struct url *u = &t->w->o->proxy;

    if (res < 0)
        return tun_fail(t, res == -ECANCELED ? STATS_E_TIMEOUT : STATS_E_CONNECT, -res);
    phase_end(t, PHASE_CONNECT);
    if (u->scheme == URL_SOCKS5 || u->scheme == URL_SOCKS5H)
        hs_message(t, socks_greeting(t->hs, u), ST_METHOD);
    else
        hs_request(t);
}

static void
on_handshake_data(struct tun *t)
{
    const struct opts *o = t->w->o;
    struct sockaddr_storage bnd;
    ssize_t n;
    int code = 0;

    switch (t->state) {
    case ST_METHOD:
        n = socks_parse_method(t->in, t->in_len, &code);
        break;
    case ST_AUTH:
        n = socks_parse_auth(t->in, t->in_len, &code);
        break;
    default:
        n = socks_parse_reply(&o->proxy, t->in, t->in_len, &code, &bnd);
        break;
    }
    if (n < 0)
        return tun_fail(t, STATS_E_PROTOCOL, 0);
    if (n == 0) {
        if (t->in_len == sizeof(t->in))
            return tun_fail(t, STATS_E_PROTOCOL, 0);
        return tun_recv(t, true);
    }
    memmove(t->in, t->in + n, t->in_len - (size_t)n);
    t->in_len -= (size_t)n;
    phase_end(t, t->state == ST_METHOD ? PHASE_GREETING
                 : t->state == ST_AUTH ? PHASE_AUTH
                                       : PHASE_REPLY);
    switch (t->state) {
    case ST_METHOD:
        if (code == 0x00)
            return hs_request(t);
        if (code == 0x02 && o->proxy.has_user) {
            char name[URL_FIELD_MAX + 1];
            if (o->has_tpl)
                usertpl_expand(&o->tpl, t->num, t->w->ctl->index, name);
            return hs_message(t, socks_auth_request(t->hs, &o->proxy, o->has_tpl ? name : NULL),
                              ST_AUTH);
        }
        return tun_fail(t, STATS_E_AUTH, STATS_D_METHOD + (code & 0xff));
    case ST_AUTH:
        if (code != 0)
            return tun_fail(t, STATS_E_AUTH, code & 0xff);
        return hs_request(t);
    default:
        if (!socks_reply_ok(&o->proxy, code)) {
            stats_add(&t->w->ctl->st.rep[code & 0xff], 1);
            return tun_fail(t, STATS_E_REPLY, code & 0xff);
        }
        if (t->in_len > 0)
            return tun_fail(t, STATS_E_PROTOCOL, 0); /* the target never speaks first */
        return run_start(t, &bnd);
    }
}

/* One unit of a request/response mode finished on this tunnel. */
static void
round_done(struct tun *t)
{
    struct worker *w = t->w;
    const struct opts *o = w->o;
    uint64_t now = stats_now_ns();

    switch (o->mode) {
    case MODE_CONNRATE:
        if (o->close == CLOSE_TARGET) {
            /* The target closes first: the tunnel ends when its EOF comes through the proxy
             * (on_recv counts it then); the close phase lasts until it does. */
            t->state = ST_EOF;
            t->t_ph = now;
            return tun_recv(t, true);
        }
        stats_record_ns(&w->ctl->st, now - t->t0);
        stats_add(&w->ctl->st.units, 1);
        if (o->close == CLOSE_RST)
            return tun_close(t, true);
        /* fin: the client closes first; the close phase lasts until the peer's EOF. */
        t->state = ST_FIN;
        t->t_ph = now;
        shutdown(t->fd, SHUT_WR);
        return tun_recv(t, true);
    case MODE_LATENCY:
        stats_record_ns(&w->ctl->st, now - t->t_msg);
        stats_add(&w->ctl->st.units, 1);
        if (w->stopping || !client_count_take(w))
            return tun_close(t, false);
        t->tx_end += o->size;
        t->rx_end += o->size;
        t->t_msg = now;
        tun_send(t);
        return tun_recv(t, true);
    case MODE_HOLD:
        if (t->state == ST_RUN) {
            /* Verified once: stay idle for the hold time, watching for an early close. With
             * --rate, idle until the schedule sends a round trip on it. */
            t->state = ST_HOLD;
            if (o->rate > 0) {
                t->held = true;
                w->settled++;
                idle_push(w, t);
            } else {
                tun_timer(t, &w->hold_ts);
            }
            return tun_recv(t, false);
        }
        stats_record_ns(&w->ctl->st, now - t->t_msg);
        stats_add(&w->ctl->st.units, 1);
        if (o->rate > 0 && !w->stopping) {
            /* Back to idle; its watchdog runs out on its own (see on_timer). */
            t->state = ST_HOLD;
            idle_push(w, t);
            return tun_recv(t, false);
        }
        return tun_close(t, false); /* cancels the watchdog */
    default:
        return tun_close(t, false);
    }
}

static void
on_send(struct tun *t, int res)
{
    t->sending = false;
    if (t->closing)
        return tun_close(t, t->rst);
    if (res <= 0)
        return tun_fail(t, FAIL_RES(res < 0 ? res : -EPIPE));
    if (t->state < ST_RUN) {
        t->hs_off += (size_t)res;
        if (t->hs_off < t->hs_len)
            return hs_send(t);
        return tun_recv(t, true);
    }
    if (t->http) {
        /* The response's recv is pending since the request went out. */
        t->req_off += (size_t)res;
        stats_add(&t->w->ctl->st.bytes_up, (uint64_t)res);
        if (t->req_off < t->w->o->http_req_len[t->req_close])
            return tun_send(t);
        if (t->req_next) {
            t->req_next = false;
            http_request_next(t);
        }
        return;
    }
    if (t->hdr_off < PATTERN_HDR_LEN) {
        t->hdr_off += (size_t)res;
    } else {
        t->tx += (uint64_t)res;
        stats_add(&t->w->ctl->st.bytes_up, (uint64_t)res);
    }
    if (t->ending) /* throughput up after worker_stop, which sets it on every running tunnel */
        return up_finish(t);
    if (t->hdr_off < PATTERN_HDR_LEN || t->tx < t->tx_end)
        return tun_send(t);
    /* Everything sent. */
    const struct opts *o = t->w->o;
    if (o->mode == MODE_THROUGHPUT && o->dir == DIR_UP)
        return up_finish(t);
    if (o->mode == MODE_THROUGHPUT && t->rx >= t->rx_end) {
        stats_add(&t->w->ctl->st.units, 1);
        return tun_close(t, false);
    }
    if (o->mode == MODE_CONNRATE && t->rx_end == 0)
        return round_done(t);
}

static void
on_report(struct tun *t, int res)
{
    if (res <= 0)
        return tun_fail(t, FAIL_RES(res)); /* EOF or an error where the report was due */
    t->rep_len += (size_t)res;
    if (t->rep_len < sizeof(t->rep))
        return tun_recv(t, false);
    uint64_t count = 0;
    for (int i = 0; i < 8; i++)
        count |= (uint64_t)t->rep[1 + i] << (8 * i);
    /* Every byte we sent must have reached the sink, and all of it must have matched. */
    if (t->rep[0] != 'O' || !t->ending || count != t->tx)
        stats_error(&t->w->ctl->st, STATS_E_MISMATCH);
    else
        stats_add(&t->w->ctl->st.units, 1);
    tun_close(t, false); /* cancels the watchdog */
}

static void
on_recv(struct tun *t, int res)
{
    const struct opts *o = t->w->o;

    if (t->closing)
        return tun_close(t, t->rst);
    if (t->state < ST_RUN) {
        if (res <= 0)
            return tun_fail(t, FAIL_RES(res));
        t->in_len += (size_t)res;
        return on_handshake_data(t);
    }
    if (t->state == ST_UDP)
        return tun_fail(t, FAIL_RES(res));
    if (t->state == ST_FIN || t->state == ST_EOF) {
        /* A proxy that keeps the target's FIN to itself leaves the client waiting: --timeout. */
        if (t->state == ST_EOF && res < 0 && err_kind(res) == STATS_E_TIMEOUT)
            return tun_fail(t, STATS_E_NO_EOF, 0);
        if (res != 0) /* data after the response, or an error before the EOF */
            return tun_fail(t, res > 0 ? STATS_E_MISMATCH : err_kind(res), res > 0 ? 0 : -res);
        phase_end(t, PHASE_CLOSE);
        if (t->state == ST_EOF) {
            /* --close target: the tunnel's latency runs up to the target's EOF. */
            stats_record_ns(&t->w->ctl->st, stats_now_ns() - t->t0);
            stats_add(&t->w->ctl->st.units, 1);
        }
        return tun_close(t, false); /* a FIN after the peer's: no TIME_WAIT here */
    }
    if (t->http)
        return http_recv(t, res);
    if (o->mode == MODE_THROUGHPUT && o->dir == DIR_UP)
        return on_report(t, res);
    if (res <= 0)
        return tun_fail(t, FAIL_RES(res));
    if (t->state == ST_HOLD) {
        /* Data while idle: the proxy or target sent what nobody asked for. */
        return tun_fail(t, STATS_E_MISMATCH, 0);
    }
    if (!pattern_check(t->seed, t->rx, t->rbuf, (size_t)res))
        return tun_fail(t, STATS_E_MISMATCH, 0);
    if (t->rx == 0 && t->state == ST_RUN)
        phase_end(t, PHASE_FIRST_BYTE); /* its start: the SOCKS reply, see run_start */
    t->rx += (uint64_t)res;
    stats_add(&t->w->ctl->st.bytes_down, (uint64_t)res);
    if (o->mode == MODE_THROUGHPUT) {
        if (t->rx >= t->rx_end && (o->dir == DIR_DOWN || t->tx >= t->tx_end)) {
            stats_add(&t->w->ctl->st.units, 1); /* the --count budget, all verified */
            return tun_close(t, false);
        }
        if (t->rx >= t->rx_end)
            return; /* both: the budget is in, the sender finishes */
        return tun_recv(t, true);
    }
    if (t->rx < t->rx_end)
        return tun_recv(t, t->state != ST_HOLD2);
    round_done(t);
}

static void
on_timer(struct tun *t, int res)
{
    struct worker *w = t->w;

    t->timer_on = false;
    if (t->closing || res == -ECANCELED)
        return tun_close(t, t->rst);
    if (w->o->mode == MODE_HOLD && w->o->rate > 0) {
        /* One watchdog per tunnel, never cancelled: it may have been armed for a round trip
         * that is over. Only the current one, if any, counts, for the time it has left. */
        if (t->state == ST_HOLD)
            return;
        uint64_t spent = stats_now_ns() - t->rt_sent;
        if (spent < w->timeout_ns) {
            t->wd_ts.tv_sec = (long long)((w->timeout_ns - spent) / 1000000000u);
            t->wd_ts.tv_nsec = (long long)((w->timeout_ns - spent) % 1000000000u);
            return tun_timer(t, &t->wd_ts);
        }
    } else if (t->state == ST_HOLD) {
        /* The hold time is over: the second round trip, the recv is already pending. */
        t->state = ST_HOLD2;
        t->tx_end += w->o->size;
        t->rx_end += w->o->size;
        t->t_msg = stats_now_ns();
        tun_timer(t, &w->io_ts);
        return tun_send(t);
    }
    /* A watchdog: the hold round trip or the sink's report did not come in time. */
    stats_error(&w->ctl->st, STATS_E_TIMEOUT);
    tun_close(t, false);
}

static void
dispatch(struct worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    unsigned op = ud & CLIENT_OP_MASK;
    void *obj = (void *)(uintptr_t)(ud & ~(uint64_t)CLIENT_OP_MASK);
    struct tun *t = obj;

    if (!obj)
        return;
    if (op == CLIENT_OP_USEND)
        t = *(struct tun **)obj;
    t->inflight--;
    switch (op) {
    case CLIENT_OP_CONNECT:
        if (t->closing)
            return tun_close(t, t->rst);
        return on_connect(t, cqe->res);
    case CLIENT_OP_SEND:
        return on_send(t, cqe->res);
    case CLIENT_OP_RECV:
        return on_recv(t, cqe->res);
    case CLIENT_OP_TIMER:
        return on_timer(t, cqe->res);
    case CLIENT_OP_USEND:
    case CLIENT_OP_URECV:
        if (!udp_complete(w, t->udp, op == CLIENT_OP_USEND ? obj : NULL, op, cqe->res) ||
            t->closing)
            return tun_close(t, false);
        return;
    }
}

/*
 * connrate --rate, the open model: start k of this worker is due at start + (k * threads +
 * index) / rate, so the workers together keep one schedule of --rate starts per second
 * whatever the proxy does. A tunnel's latency counts from its intended start, so a start that
 * waited (for the bound of --workers tunnels in flight, or for a busy loop) carries its wait:
 * corrected for coordinated omission.
 */
static uint64_t
sched_due(const struct worker *w, uint64_t k)
{
    double j = (double)k * w->o->threads + w->ctl->index;
    return w->sched0 + (uint64_t)(j * 1e9 / w->o->rate);
}

/* True when no start is left: the next is due after the stop, or --count is used up. */
static bool
sched_over(const struct worker *w)
{
    return w->next_due >= w->sched_end || (w->ctl->count && w->count_left == 0);
}

/* A due start can go: a tunnel slot under the bound of --workers in flight; hold: an idle
 * held tunnel, once the schedule started. */
static bool
sched_room(const struct worker *w)
{
    if (sched_on_tunnels(w->o))
        return w->sched0 && w->idle_head;
    return w->live < w->ctl->conns;
}

/* hold --rate: a round trip of --size bytes on the idle tunnel t, due at due (its latency
 * counts from then). The recv is pending since it went idle; a watchdog bounds the wait. */
static void
hold_round(struct worker *w, struct tun *t, uint64_t due, uint64_t now)
{
    idle_remove(w, t);
    t->state = ST_HOLD2;
    t->tx_end += w->o->size;
    t->rx_end += w->o->size;
    t->t_msg = due;
    t->rt_sent = now;
    if (!t->timer_on)
        tun_timer(t, &w->io_ts);
    tun_send(t);
}

/* hold --rate: every tunnel of this worker is held (or ended): the schedule starts now and
 * runs for the hold time. */
static void
sched_hold_start(struct worker *w, uint64_t now)
{
    w->sched0 = now;
    w->ctl->sched0_ns = now;
    /* udp: the datagrams are sent until the end of --duration. */
    w->sched_end = w->o->mode == MODE_UDP ? w->ctl->stop_ns : now + (uint64_t)(w->o->hold_s * 1e9);
    w->next_due = sched_due(w, 0);
}

/* Makes every start that is due, as far as the bound on tunnels in flight allows. */
static void
sched_run(struct worker *w, uint64_t now)
{
    struct stats *st = &w->ctl->st;

    if (sched_on_tunnels(w->o) && !w->sched0 && w->settled == w->ctl->conns && !w->stopping)
        sched_hold_start(w, now);
    while (!w->stopping && !sched_over(w) && now >= w->next_due && sched_room(w)) {
        if (w->o->mode == MODE_UDP) {
            /* The next association in turn; udp_send_due takes the count. */
            struct tun *t = w->idle_head;
            idle_remove(w, t);
            int rc = udp_send_due(t->udp);
            if (rc < 0)
                continue; /* it sends no more: out of the queue */
            idle_push(w, t);
            if (rc == 0)
                break; /* its send buffers are all in flight: after the completions */
        } else {
            client_count_take(w);
        }
        stats_add(&st->started, 1);
        if (now - w->next_due > 1000000)
            stats_add(&st->late, 1);
        w->ctl->last_start_ns = now;
        if (w->o->mode == MODE_HOLD)
            hold_round(w, w->idle_head, w->next_due, now);
        else if (w->o->mode != MODE_UDP)
            tun_spawn(w, w->next_due);
        w->next_due = sched_due(w, ++w->sched_k);
    }
}

/* The run stopped (at its stop time, or early on a signal): the starts that were due by then
 * and never began (the bound held them) are missed. */
static void
sched_stop(struct worker *w)
{
    uint64_t now = stats_now_ns(), stop = now < w->sched_end ? now : w->sched_end;
    uint64_t dur = stop > w->sched0 ? stop - w->sched0 : 0, k;
    double kf = ((double)dur * w->o->rate / 1e9 - w->ctl->index) / w->o->threads;

    k = kf > 0 ? (uint64_t)ceil(kf) : 0;
    while (k > 0 && sched_due(w, k - 1) >= stop)
        k--;
    while (sched_due(w, k) < stop)
        k++;
    if (k <= w->sched_k || !w->sched0)
        return;
    uint64_t missed = k - w->sched_k;
    if (w->ctl->count && missed > w->count_left)
        missed = w->count_left;
    stats_add(&w->ctl->st.missed, missed);
}

/* The run is over for this worker: no new units; tunnels finish what they are doing. */
static void
worker_stop(struct worker *w)
{
    const struct opts *o = w->o;

    w->stopping = true;
    for (struct tun *t = w->head, *next; t; t = next) {
        next = t->next;
        if (t->closing)
            continue;
        if (o->mode == MODE_HOLD && o->rate > 0 && t->state == ST_HOLD2) {
            /* hold --rate: the round trip in progress finishes (round_done closes). */
        } else if ((t->state < ST_RUN && (o->rate == 0 || o->mode == MODE_UDP)) ||
                   o->mode == MODE_HOLD) {
            tun_close(t, false);
        } else if (o->mode == MODE_THROUGHPUT) {
            if (o->dir == DIR_UP) {
                up_finish(t);
            } else {
                stats_add(&w->ctl->st.units, 1); /* alive and verified to the end */
                tun_close(t, false);
            }
        } else if (o->mode == MODE_UDP && t->udp) {
            udp_stop(t->udp, false); /* udp_complete() ends it when the last reply is in */
        }
        /* connrate, http and latency: the unit in progress finishes under its timeouts, and its
         * errors count (tun_fail). connrate --rate: also a tunnel still in its handshake,
         * which may be the slow one the run is there to see. */
    }
    if (o->rate > 0)
        sched_stop(w);
}

void *
client_worker(void *arg)
{
    struct worker_ctl *ctl = arg;
    const struct opts *o = ctl->o;
    struct worker w = {.ctl = ctl, .o = o};
    struct __kernel_timespec tick = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    uint64_t timeout_ns = (uint64_t)(o->timeout_s * 1e9), hold_ns = (uint64_t)(o->hold_s * 1e9);
    int rc;

    w.io_ts.tv_sec = (long long)(timeout_ns / 1000000000u);
    w.io_ts.tv_nsec = (long long)(timeout_ns % 1000000000u);
    w.hold_ts.tv_sec = (long long)(hold_ns / 1000000000u);
    w.hold_ts.tv_nsec = (long long)(hold_ns % 1000000000u);
    w.count_left = ctl->count;
    w.seed_next = ctl->index * 1000003u + 17;
    w.num_next = ctl->index;
    if (o->mode == MODE_THROUGHPUT && ctl->count && ctl->conns)
        w.byte_budget = ctl->count / ctl->conns + 1;
    p.cq_entries = RING_ENTRIES * 4;
    p.flags |= IORING_SETUP_CQSIZE;
    rc = io_uring_queue_init_params(RING_ENTRIES, &w.ring, &p);
    if (rc < 0) {
        p.flags = IORING_SETUP_CQSIZE; /* kernels before 6.1 lack DEFER_TASKRUN */
        rc = io_uring_queue_init_params(RING_ENTRIES, &w.ring, &p);
    }
    if (rc < 0) {
        ctl->rc = rc;
        __atomic_store_n(&ctl->done, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    w.timeout_ns = timeout_ns;
    if (o->mode != MODE_HOLD && !sched_on_tunnels(o)) {
        w.sched0 = ctl->start_ns;
        w.sched_end = ctl->stop_ns;
        w.next_due = ctl->start_ns + (uint64_t)(ctl->index * 1e9 / (o->rate > 0 ? o->rate : 1));
    }
    /* hold opens all its tunnels at once, also under --rate (whose starts are round trips). */
    for (unsigned i = 0; i < ctl->conns && (o->rate == 0 || sched_on_tunnels(o)); i++) {
        /* connrate: a tunnel is a unit; latency: the tunnel's first message is. */
        if ((o->mode == MODE_CONNRATE || o->mode == MODE_LATENCY || o->mode == MODE_HTTP) &&
            !client_count_take(&w))
            break;
        tun_spawn(&w, 0);
    }
    uint64_t force_ns = 0;
    if (o->rate > 0)
        sched_run(&w, stats_now_ns());
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;

        struct __kernel_timespec wait = tick;
        if (o->rate > 0 && !w.stopping && !sched_over(&w) && sched_room(&w)) {
            /* Wake for the next start, not a tick later. */
            uint64_t now = stats_now_ns(), due = w.next_due > now ? w.next_due - now : 0;
            if (due < 50 * 1000 * 1000u)
                wait.tv_nsec = (long long)due;
        }
        io_uring_submit_and_wait_timeout(&w.ring, &cqe, 1, &wait, NULL);
        io_uring_for_each_cqe(&w.ring, head, cqe)
        {
            dispatch(&w, cqe);
            seen++;
        }
        io_uring_cq_advance(&w.ring, seen);

        uint64_t now = stats_now_ns();
        bool stop_now = __atomic_load_n(&ctl->stop_flag, __ATOMIC_RELAXED) ||
                        (o->mode != MODE_HOLD && now >= ctl->stop_ns) ||
                        (o->mode == MODE_HOLD && w.sched0 && now >= w.sched_end);
        if (o->rate > 0)
            sched_run(&w, now); /* the starts due before the stop time, even now */
        /* Nothing left to do; under --rate also between two starts: only once none is left. */
        bool idle = w.live == 0 && (o->rate == 0 || sched_over(&w));
        if (!w.stopping && (stop_now || idle)) {
            worker_stop(&w);
            /* udp: the datagrams in flight are echoed or lost by --loss-timeout. */
            uint64_t drain_ns = timeout_ns;
            if (o->mode == MODE_UDP && o->loss_s * 1e9 > (double)drain_ns)
                drain_ns = (uint64_t)(o->loss_s * 1e9);
            force_ns = now + drain_ns + 1000000000u;
        }
        if (w.stopping && w.live == 0)
            break;
        if (w.stopping && now >= force_ns) {
            if (w.forced)
                break; /* ops that never completed: leave them to process exit */
            /* Past every timeout: close whatever is left, counted as timeouts. */
            w.forced = true;
            force_ns = now + 1000000000u;
            for (struct tun *t = w.head, *next; t; t = next) {
                next = t->next;
                if (!t->closing)
                    stats_error(&ctl->st, STATS_E_TIMEOUT);
                t->closing = false;
                tun_close(t, false);
            }
        }
    }
    ctl->end_ns = stats_now_ns();
    struct timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
        ctl->cpu_ns = (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec;
    if (!w.forced)
        io_uring_queue_exit(&w.ring);
    __atomic_store_n(&ctl->done, 1, __ATOMIC_RELEASE);
    return NULL;
}
