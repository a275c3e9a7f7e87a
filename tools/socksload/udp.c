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
 * Must never send anywhere but the relay address (checked against loopback by udp_start).
 */
#include "socksload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UDP_HDR_MAX 300
#define UDP_RBUF    65536

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
    memcpy(s->buf, u->hdr, u->hlen);
    put64(s->buf + u->hlen, s->seq);
    memcpy(s->buf + u->hlen + 8, pattern_at(u->seed, s->seq * u->size), u->size - 8);
    s->pending = true;
    s->sending = true;
    s->want_next = false;
    s->sent_ns = stats_now_ns();
    stats_add(&client_stats(u->w)->sent, 1);
    if (s->sent_ns < u->oldest_ns)
        u->oldest_ns = s->sent_ns;
    struct io_uring_sqe *sqe = client_sqe(u->w, 1);
    io_uring_prep_send(sqe, u->fd, s->buf, u->hlen + u->size, 0);
    client_track_obj(u->t, s, sqe, CLIENT_OP_USEND);
    u->uops++;
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
    u->w = w;
    u->t = t;
    u->seed = seed;
    u->size = o->size;
    u->window = o->window;
    u->timeout_ns = (uint64_t)((o->loss_s > 0 ? o->loss_s : o->timeout_s) * 1e9);
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
    udp_grow_rcvbuf(u->fd, (size_t)u->window * (u->hlen + u->size + 1024) * 2);
    for (unsigned i = 0; i < u->window; i++) {
        u->slots[i].t = t;
        u->slots[i].buf = malloc(u->hlen + u->size);
        if (!u->slots[i].buf)
            goto fail;
    }
    *out = u;
    u_recv(u);
    for (unsigned i = 0; i < u->window; i++)
        u_send(u, &u->slots[i]);
    return 0;
fail:;
    int e = errno ? -errno : -ENOMEM;
    u->uops = 0;
    *out = NULL;
    udp_free(u);
    return e;
}

static void
on_reply(struct udpa *u, size_t n)
{
    struct stats *st = client_stats(u->w);
    ssize_t h = socks_parse_udp_header(u->rbuf, n);

    if (h < 0 || n - (size_t)h < 8) {
        stats_error(st, STATS_E_PROTOCOL);
        return;
    }
    const uint8_t *p = u->rbuf + h;
    size_t plen = n - (size_t)h;
    uint64_t seq = get64(p);
    struct uslot *s = &u->slots[seq % u->window];
    if (!s->pending || s->seq != seq)
        return; /* already counted as lost, or a duplicate */
    s->pending = false;
    if (plen != u->size || !pattern_check(u->seed, seq * u->size, p + 8, plen - 8)) {
        stats_error(st, STATS_E_MISMATCH);
    } else {
        stats_record_ns(st, stats_now_ns() - s->sent_ns);
        stats_add(&st->units, 1);
        stats_add(&st->bytes_up, plen);
        stats_add(&st->bytes_down, plen);
    }
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
        if (res < 0) {
            if (s->pending && !u->aborted)
                stats_error(st, STATS_E_OTHER);
            s->pending = false;
        }
        if (s->want_next || res < 0)
            u_send(u, s); /* nothing when stopped */
    } else if (u->shut) {
        /* Our shutdown() ended the receive; what is still in flight is only sends. */
    } else {
        if (res > 0)
            on_reply(u, (size_t)res);
        else if (res == 0)
            stats_error(st, STATS_E_PROTOCOL); /* an empty datagram */
        else if (res != -ECANCELED) /* -ECANCELED: no reply for --loss-timeout, see u_expire */
            stats_error(st, res == -ECONNREFUSED ? STATS_E_RESET : STATS_E_OTHER);
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
    free(u->rbuf);
    free(u);
}
