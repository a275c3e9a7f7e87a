/*
 * udp.c - the datagram side of udp mode: a UDP socket connected to the relay address of a
 * UDP ASSOCIATE, --window datagrams in flight, each echoed by the target and verified.
 *
 * Owned by one tunnel of one worker (client.c) and driven by that worker's ring; its ops
 * count in the tunnel's in-flight total. Datagram payload: u64 sequence number (little
 * endian), then the pattern stream seeded by the association at offset seq * size. Slot i
 * sends sequence numbers i, i + W, i + 2W... (W = --window), so a reply finds its slot as
 * seq % W whatever order the replies and send completions come in.
 * Loss: every completion of the association, and the receive's own timeout (--loss-timeout,
 * by default --timeout), look at each slot's send time; a datagram not back within
 * --loss-timeout counts as lost there and its slot sends the next one (so a loss is counted
 * between --loss-timeout and twice that after the send, and never shrinks the window). Every
 * datagram sent is counted (stats.sent) and ends as exactly one of: echoed (units), lost,
 * mismatch, or a failed send. When the run stops (--duration, --count) the association sends
 * no more and ends once the outstanding echoes are in or lost: that drain is what makes
 * sent = echoed + lost honest at the end of a run.
 * Open loop (--rate): the worker's schedule (client.c) sends each due datagram on the next
 * association (udp_send_due), whatever the echoes do; sequence numbers count up per
 * association and a ring of UDP_RING_SECS (at least 2) times --loss-timeout's worth of this
 * association's share of the rate remembers each one's send time until its echo. A datagram
 * whose ring entry is needed again, or that is still out when the drain ends (--loss-timeout
 * after the association's last send), is lost: sent = echoed + lost + failed at the end, as
 * in the closed loop. The window slots are then only send buffers (at least UDP_OPEN_BUFS).
 * Must never send anywhere but the relay address (checked against loopback by udp_start).
 */
#include "socksload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UDP_HDR_MAX   300
#define UDP_RBUF      65536
#define UDP_OPEN_BUFS 64 /* --rate: send buffers per association, at least */
#define UDP_RING_SECS 2  /* --rate: the ring holds this many --loss-timeouts of sends */
#define UDP_RING_MAX  (1u << 22)
#define UDP_DRAIN     32 /* --rate: datagrams per recvmmsg when the receive completes */
#define UDP_DRAIN_MAX 8  /* and at most this many recvmmsg calls per completion */

struct uslot {
    struct tun *t; /* first: client.c finds the tunnel of a send completion through it */
    uint64_t seq;
    uint64_t sent_ns;
    bool pending;   /* waiting for its echo */
    bool sending;   /* its buffer is in a send op */
    bool want_next; /* echo came back while the send op was still in flight */
    bool used;      /* has sent before: the next seq is seq + window */
    uint8_t *buf;
} __attribute__((aligned(16)));

struct udpa {
    struct worker *w;
    struct tun *t;
    int fd;
    int uops;
    bool stopped; /* no more sends */
    bool aborted; /* the datagrams in flight are dropped too */
    bool shut;    /* shutdown() done: the pending receive ends */
    uint32_t seed;
    uint32_t size;
    unsigned window;
    uint64_t timeout_ns; /* --loss-timeout */
    struct __kernel_timespec loss_ts;
    uint64_t oldest_ns; /* at most the earliest sent_ns of a pending slot; UINT64_MAX: none */
    size_t hlen;
    uint8_t hdr[UDP_HDR_MAX];
    struct uslot *slots;
    uint8_t *rbuf;
    /* --rate (open loop) only: */
    bool open;
    unsigned next_buf;     /* where the search for a free send buffer starts */
    uint64_t next_seq;     /* the next datagram's sequence number */
    uint64_t outstanding;  /* sent, neither echoed, lost nor failed */
    uint64_t last_sent_ns; /* the drain ends --loss-timeout after it */
    uint64_t ring_mask;
    uint64_t *ring; /* per seq & ring_mask: seq + 1 while out (0: free), then its send time */
    uint8_t *dbuf;  /* UDP_DRAIN buffers of dlen bytes for the drain after a receive */
    size_t dlen;
};

static void
put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void
u_recv(struct udpa *u)
{
    struct io_uring_sqe *sqe = client_sqe(u->w, 2);

    io_uring_prep_recv(sqe, u->fd, u->rbuf, UDP_RBUF, 0);
    client_track(u->t, sqe, CLIENT_OP_URECV);
    client_prep_timeout_ts(u->w, sqe, &u->loss_ts);
    u->uops++;
}

static void u_send_seq(struct udpa *u, struct uslot *s, uint64_t seq);

static void
u_send(struct udpa *u, struct uslot *s)
{
    if (u->stopped)
        return;
    if (!client_count_take(u->w)) {
        udp_stop(u, false); /* --count is used up: end once the echoes are in */
        return;
    }
    /* Not a shared counter: slots re-send in any order, and seq % window must stay their index. */
    s->seq = s->used ? s->seq + u->window : (uint64_t)(s - u->slots);
    s->used = true;
    s->pending = true;
    s->want_next = false;
    s->sent_ns = stats_now_ns();
    if (s->sent_ns < u->oldest_ns)
        u->oldest_ns = s->sent_ns;
    u_send_seq(u, s, s->seq);
}

void
udp_grow_rcvbuf(int fd, size_t bytes)
{
    int v = bytes > (64u << 20) ? (64 << 20) : (int)bytes;

    /* FORCE passes net.core.rmem_max (needs CAP_NET_ADMIN); otherwise we get what it allows. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

static bool
any_pending(const struct udpa *u)
{
    if (u->open)
        return u->outstanding > 0;
    for (unsigned i = 0; i < u->window; i++)
        if (u->slots[i].pending)
            return true;
    return false;
}

/* Stopped with nothing outstanding: wake the pending receive so that the association ends
 * now instead of after --timeout. */
static void
u_maybe_shut(struct udpa *u)
{
    if (u->stopped && !u->shut && (u->aborted || !any_pending(u))) {
        u->shut = true;
        shutdown(u->fd, SHUT_RDWR);
    }
}

/* Counts the datagrams outstanding for --timeout or longer as lost; their slots send on (at
 * once, or when a send still in flight in the slot completes). */
static void
u_expire(struct udpa *u, uint64_t now)
{
    if (u->open) {
        /* Open loop: the drain is over --loss-timeout after the last send; what is still out
         * is lost (the ring counted older ones as their entries were reused). */
        if (u->stopped && u->outstanding && now - u->last_sent_ns >= u->timeout_ns) {
            for (uint64_t i = 0; i <= u->ring_mask; i++)
                u->ring[2 * i] = 0;
            for (; u->outstanding; u->outstanding--)
                stats_error(client_stats(u->w), STATS_E_LOST);
        }
        return;
    }
    if (u->oldest_ns == UINT64_MAX || now - u->oldest_ns < u->timeout_ns)
        return;
    uint64_t oldest = UINT64_MAX;
    for (unsigned i = 0; i < u->window; i++) {
        struct uslot *s = &u->slots[i];
        if (s->pending && now - s->sent_ns >= u->timeout_ns) {
            s->pending = false;
            stats_error(client_stats(u->w), STATS_E_LOST);
            if (s->sending)
                s->want_next = true;
            else
                u_send(u, s);
        }
        if (s->pending && s->sent_ns < oldest)
            oldest = s->sent_ns;
    }
    u->oldest_ns = oldest;
}

int
udp_start(struct worker *w, struct tun *t, struct udpa **out, const struct sockaddr_storage *bnd,
          uint32_t seed)
{
    const struct opts *o = client_opts(w);
    struct sockaddr_storage relay = *bnd;
    socklen_t len;
    struct udpa *u;

    /* An unspecified relay address means "where you reached me" (RFC 1928 section 6). */
    if (relay.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&relay;
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) {
            uint16_t port = a->sin6_port;
            relay = o->proxy_sa;
            ((struct sockaddr_in6 *)&relay)->sin6_port = port;
        }
        len = sizeof(struct sockaddr_in6);
    } else if (relay.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&relay;
        if (a->sin_addr.s_addr == 0) {
            uint16_t port = a->sin_port;
            relay = o->proxy_sa;
            if (relay.ss_family == AF_INET)
                ((struct sockaddr_in *)&relay)->sin_port = port;
            else
                ((struct sockaddr_in6 *)&relay)->sin6_port = port;
        }
        len = relay.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    } else {
        return -EPROTO; /* a name as relay address: we resolve nothing */
    }
    if (!o->allow_nonlocal && !url_is_loopback((struct sockaddr *)&relay))
        return -EPERM;
    u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->fd = -1;
    u->w = w;
    u->t = t;
    u->seed = seed;
    u->size = o->size;
    u->window = o->window;
    u->timeout_ns = (uint64_t)((o->loss_s > 0 ? o->loss_s : o->timeout_s) * 1e9);
    u->open = o->rate > 0;
    if (u->open) {
        if (u->window < UDP_OPEN_BUFS)
            u->window = UDP_OPEN_BUFS;
        u->ring_mask = udp_ring_size(o->rate, o->tunnels ? o->tunnels : 1, u->timeout_ns) - 1;
        u->ring = calloc(2 * (u->ring_mask + 1), sizeof(*u->ring));
        /* One byte more than an echo: a longer datagram is truncated and mismatches. */
        u->dlen = UDP_HDR_MAX + u->size + 1;
        u->dbuf = malloc(UDP_DRAIN * u->dlen);
        if (!u->ring || !u->dbuf)
            goto fail;
    }
    u->loss_ts.tv_sec = (long long)(u->timeout_ns / 1000000000u);
    u->loss_ts.tv_nsec = (long long)(u->timeout_ns % 1000000000u);
    u->oldest_ns = UINT64_MAX;
    u->hlen = socks_udp_header(u->hdr, &o->dest);
    u->slots = aligned_alloc(16, u->window * sizeof(*u->slots));
    if (u->slots)
        memset(u->slots, 0, u->window * sizeof(*u->slots));
    u->rbuf = malloc(UDP_RBUF);
    u->fd = socket(relay.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (!u->slots || !u->rbuf || u->fd == -1)
        goto fail;
    if (connect(u->fd, (struct sockaddr *)&relay, len) == -1)
        goto fail;
    /* Room for a whole window of echoes (plus skb overhead), so that the measuring side is
     * not where datagrams are lost. */
    size_t want = (size_t)u->window * (u->hlen + u->size + 1024) * 2;
    if (u->open) {
        /* And open loop: 50 ms of this association's echoes. */
        double per =
            o->rate / (o->tunnels ? o->tunnels : 1) / 20 * (double)(u->hlen + u->size + 1024);
        if (per > (double)want)
            want = per > (double)(64u << 20) ? (64u << 20) : (size_t)per;
    }
    udp_grow_rcvbuf(u->fd, want);
    for (unsigned i = 0; i < u->window; i++) {
        u->slots[i].t = t;
        u->slots[i].buf = malloc(u->hlen + u->size);
        if (!u->slots[i].buf)
            goto fail;
    }
    *out = u;
    u_recv(u);
    for (unsigned i = 0; i < u->window && !u->open; i++)
        u_send(u, &u->slots[i]);
    return 0;
fail:;
    int e = errno ? -errno : -ENOMEM;
    u->uops = 0;
    *out = NULL;
    udp_free(u);
    return e;
}

/* The echo of datagram seq (payload p of plen bytes, sent at sent_ns): echoed or mismatch. */
static void
udp_check(struct udpa *u, uint64_t seq, const uint8_t *p, size_t plen, uint64_t sent_ns)
{
    struct stats *st = client_stats(u->w);

    if (plen != u->size || !pattern_check(u->seed, seq * u->size, p + 8, plen - 8)) {
        stats_error(st, STATS_E_MISMATCH);
    } else {
        stats_record_ns(st, stats_now_ns() - sent_ns);
        stats_add(&st->units, 1);
        stats_add(&st->bytes_up, plen);
        stats_add(&st->bytes_down, plen);
    }
}

uint64_t
udp_ring_size(double rate, unsigned tunnels, uint64_t loss_ns)
{
    double need = rate / tunnels * ((double)loss_ns / 1e9) * UDP_RING_SECS;
    uint64_t n = 1024;

    while (n < UDP_RING_MAX && (double)n < need)
        n <<= 1;
    return n;
}

/* Builds datagram seq of the association in s's buffer and sends it. */
static void
u_send_seq(struct udpa *u, struct uslot *s, uint64_t seq)
{
    memcpy(s->buf, u->hdr, u->hlen);
    put64(s->buf + u->hlen, seq);
    memcpy(s->buf + u->hlen + 8, pattern_at(u->seed, seq * u->size), u->size - 8);
    s->sending = true;
    stats_add(&client_stats(u->w)->sent, 1);
    struct io_uring_sqe *sqe = client_sqe(u->w, 1);
    io_uring_prep_send(sqe, u->fd, s->buf, u->hlen + u->size, 0);
    client_track_obj(u->t, s, sqe, CLIENT_OP_USEND);
    u->uops++;
}

int
udp_send_due(struct udpa *u)
{
    if (u->stopped)
        return -1;
    struct uslot *s = NULL;
    for (unsigned i = 0; i < u->window && !s; i++) {
        struct uslot *c = &u->slots[(u->next_buf + i) % u->window];
        if (!c->sending)
            s = c;
    }
    if (!s)
        return 0;
    u->next_buf = (unsigned)(s - u->slots + 1) % u->window;
    if (!client_count_take(u->w)) {
        udp_stop(u, false);
        return -1;
    }
    uint64_t seq = u->next_seq++, *e = &u->ring[2 * (seq & u->ring_mask)];
    if (e[0]) {
        /* Out for UDP_RING_SECS --loss-timeouts: lost, its entry is needed. */
        stats_error(client_stats(u->w), STATS_E_LOST);
        u->outstanding--;
    }
    u->last_sent_ns = stats_now_ns();
    e[0] = seq + 1;
    e[1] = u->last_sent_ns;
    u->outstanding++;
    s->seq = seq;
    u_send_seq(u, s, seq);
    return 1;
}

static void on_reply(struct udpa *u, const uint8_t *buf, size_t n);

/* --rate: one receive op per association takes one datagram per turn of the loop, fewer than
 * a fast schedule sends; after each, what else is queued is read here without waiting. */
static void
u_drain(struct udpa *u)
{
    struct mmsghdr m[UDP_DRAIN];
    struct iovec iov[UDP_DRAIN];

    for (int round = 0; round < UDP_DRAIN_MAX; round++) {
        memset(m, 0, sizeof(m));
        for (unsigned i = 0; i < UDP_DRAIN; i++) {
            iov[i].iov_base = u->dbuf + i * u->dlen;
            iov[i].iov_len = u->dlen;
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(u->fd, m, UDP_DRAIN, MSG_DONTWAIT, NULL);
        for (int i = 0; i < n; i++) {
            if (m[i].msg_len == 0)
                stats_error(client_stats(u->w), STATS_E_PROTOCOL);
            else
                on_reply(u, u->dbuf + (size_t)i * u->dlen, m[i].msg_len);
        }
        if (n < UDP_DRAIN)
            return;
    }
}

static void
on_reply(struct udpa *u, const uint8_t *buf, size_t n)
{
    struct stats *st = client_stats(u->w);
    ssize_t h = socks_parse_udp_header(buf, n);

    if (h < 0 || n - (size_t)h < 8) {
        stats_error(st, STATS_E_PROTOCOL);
        return;
    }
    const uint8_t *p = buf + h;
    size_t plen = n - (size_t)h;
    uint64_t seq = get64(p);
    if (u->open) {
        uint64_t *e = &u->ring[2 * (seq & u->ring_mask)];
        if (e[0] != seq + 1)
            return; /* already counted as lost, a duplicate, or never sent */
        e[0] = 0;
        u->outstanding--;
        udp_check(u, seq, p, plen, e[1]);
        return;
    }
    struct uslot *s = &u->slots[seq % u->window];
    if (!s->pending || s->seq != seq)
        return; /* already counted as lost, or a duplicate */
    s->pending = false;
    udp_check(u, seq, p, plen, s->sent_ns);
    if (s->sending)
        s->want_next = true;
    else
        u_send(u, s);
}

bool
udp_complete(struct worker *w, struct udpa *u, void *obj, unsigned op, int res)
{
    struct stats *st = client_stats(w);

    u->uops--;
    if (op == CLIENT_OP_USEND) {
        struct uslot *s = obj;
        s->sending = false;
        if (u->open) {
            uint64_t *e = &u->ring[2 * (s->seq & u->ring_mask)];
            if (res < 0 && e[0] == s->seq + 1) {
                e[0] = 0;
                u->outstanding--;
                if (!u->aborted)
                    stats_error(st, STATS_E_OTHER);
            }
        } else if (res < 0) {
            if (s->pending && !u->aborted)
                stats_error(st, STATS_E_OTHER);
            s->pending = false;
        }
        if (!u->open && (s->want_next || res < 0))
            u_send(u, s); /* nothing when stopped */
    } else if (u->shut) {
        /* Our shutdown() ended the receive; what is still in flight is only sends. */
    } else {
        if (res > 0) {
            on_reply(u, u->rbuf, (size_t)res);
            if (u->open)
                u_drain(u);
        } else if (res == 0) {
            stats_error(st, STATS_E_PROTOCOL); /* an empty datagram */
        } else if (res != -ECANCELED) { /* -ECANCELED: no reply for --loss-timeout, u_expire */
            stats_error(st, res == -ECONNREFUSED ? STATS_E_RESET : STATS_E_OTHER);
        }
    }
    u_expire(u, stats_now_ns());
    u_maybe_shut(u);
    if (op == CLIENT_OP_URECV && !u->shut)
        u_recv(u);
    return !(u->shut && u->uops == 0);
}

void
udp_stop(struct udpa *u, bool abort)
{
    u->stopped = true;
    u->aborted |= abort;
    u_maybe_shut(u);
}

void
udp_free(struct udpa *u)
{
    if (u->fd >= 0)
        close(u->fd);
    if (u->slots)
        for (unsigned i = 0; i < u->window; i++)
            free(u->slots[i].buf);
    free(u->slots);
    free(u->ring);
    free(u->dbuf);
    free(u->rbuf);
    free(u);
}
