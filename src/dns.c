/*
 * dns.c - DNS resolution that never blocks a shard.
 *
 * Each shard owns one c-ares channel: c-ares tells us (sock_state_cb) which sockets it
 * wants watched, we poll them through the shard's ring and hand readiness
 * back with ares_process_fd(); c-ares never reads a file or waits here after
 * init, since lookups are DNS-only ("b") and our hosts table answers first.
 */
#include "dns.h"
#include "hostname.h"
#include "hosts.h"

#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "handshake_types.h"
#include "ring.h"
#include "shard_types.h"

/* --- the cache ---------------------------------------------------------- */

/*
 * Per shard, direct-mapped by a hash of the lower-cased name: a hit answers
 * without a query, a collision simply replaces the older name. Answers are
 * kept for their DNS TTL clamped to [DNS_TTL_MIN, DNS_TTL_MAX]; names that
 * do not exist (or have no address) for DNS_NEG_TTL seconds.
 */
#define DNS_CACHE_SLOTS 1024 /* power of two */
#define DNS_CACHE_ADDRS 4
#define DNS_TTL_MIN     5
#define DNS_TTL_MAX     3600
#define DNS_NEG_TTL     5

struct dns_cache_entry {
    char name[256];
    uint32_t expires_s;
    int err; /* 0, or -ENOENT/-ENODATA for a negative entry */
    uint8_t n;
    union sockaddr_inx addrs[DNS_CACHE_ADDRS]; /* port 0 */
};

struct dns_cache {
    struct dns_cache_entry e[DNS_CACHE_SLOTS];
};

#define DNS_MAX_SOCKS 32

struct dns_sock {
    int fd; /* -1: free */
    uint32_t gen;
    bool want_r, want_w;
    bool armed;    /* a poll is in flight */
    bool removing; /* c-ares closed it; waiting for the poll to go */
    unsigned armed_mask;
};

/* A shard's resolver: sh->dns, touched by its thread alone. */
struct dns_shard {
    ares_channel channel;
    struct dns_sock socks[DNS_MAX_SOCKS];
    struct dns_cache cache; /* reserved, faulted in as names arrive */
    uint64_t fd_fails;      /* sockets c-ares could not have: fds (or socket memory) out */
};

static uint32_t
name_hash(const char *lower)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *lower; lower++)
        h = (h ^ (uint8_t)*lower) * 16777619u;
    return h;
}

/* The cache key is the name's normal form (hostname.h); false for a name that has none. */
static bool
cache_key(const char *name, char key[256])
{
    return hostname_norm(name, strnlen(name, HOSTNAME_MAX + 2), key) > 0;
}

static struct dns_cache_entry *
cache_slot(struct shard *sh, const char *key)
{
    return &sh->dns->cache.e[name_hash(key) & (DNS_CACHE_SLOTS - 1)];
}

static void
cache_store(struct shard *sh, const char *key, int err, const union sockaddr_inx *addrs, unsigned n,
            unsigned ttl)
{
    struct dns_cache_entry *e = cache_slot(sh, key);
    snprintf(e->name, sizeof(e->name), "%s", key);
    if (err == 0) {
        ttl = ttl < DNS_TTL_MIN ? DNS_TTL_MIN : ttl > DNS_TTL_MAX ? DNS_TTL_MAX : ttl;
        e->n = (uint8_t)(n < DNS_CACHE_ADDRS ? n : DNS_CACHE_ADDRS);
        memcpy(e->addrs, addrs, e->n * sizeof(*addrs));
    } else {
        ttl = DNS_NEG_TTL;
        e->n = 0;
    }
    e->err = err;
    e->expires_s = sh->now_s + ttl;
}

/* --- c-ares on the ring ------------------------------------------------ */

struct dns_query {
    struct shard *sh;
    uint64_t ref;      /* conn_ref() of who asked */
    uint64_t t0_us;    /* CLOCK_MONOTONIC when sent */
    uint64_t fd_fails; /* the shard's dns_shard.fd_fails when sent */
    uint16_t port;
    char key[256];
};

static struct dns_sock *
dns_sock_find(struct shard *sh, int fd)
{
    for (unsigned i = 0; i < DNS_MAX_SOCKS; i++) {
        struct dns_sock *s = &sh->dns->socks[i];
        if (s->fd == fd && !s->removing)
            return s;
    }
    return NULL;
}

static void
dns_arm(struct shard *sh, struct dns_sock *s)
{
    unsigned mask = (s->want_r ? POLLIN : 0) | (s->want_w ? POLLOUT : 0);
    if (!mask || s->armed)
        return;
    struct io_uring_sqe *sqe = ring_sqe(&sh->ring, &sh->st);
    io_uring_prep_poll_add(sqe, s->fd, mask);
    io_uring_sqe_set_data64(sqe, ud_make(OP_DNS_POLL, 0, (uint32_t)(s - sh->dns->socks), s->gen));
    s->armed = true;
    s->armed_mask = mask;
}

static void
dns_disarm(struct shard *sh, struct dns_sock *s)
{
    struct io_uring_sqe *sqe = ring_sqe(&sh->ring, &sh->st);
    io_uring_prep_poll_remove(sqe, ud_make(OP_DNS_POLL, 0, (uint32_t)(s - sh->dns->socks), s->gen));
    io_uring_sqe_set_data64(sqe, ud_make(OP_DNS_REMOVE, 0, (uint32_t)(s - sh->dns->socks), s->gen));
}

/* c-ares: start, change or stop watching fd. */
static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct shard *sh = data;
    if (sh->stopping)
        return;
    struct dns_sock *s = dns_sock_find(sh, fd);
    if (!readable && !writable) {
        if (!s)
            return;
        if (s->armed) {
            /* The poll still holds the old file; it goes once removed. */
            s->removing = true;
            dns_disarm(sh, s);
        } else {
            s->fd = -1;
            s->gen++;
        }
        return;
    }
    if (!s) {
        for (unsigned i = 0; i < DNS_MAX_SOCKS && !s; i++)
            if (sh->dns->socks[i].fd < 0)
                s = &sh->dns->socks[i];
        if (!s)
            return; /* c-ares times the query out: more sockets than servers*2 is not expected */
        s->fd = fd;
        s->armed = false;
        s->removing = false;
    }
    s->want_r = readable;
    s->want_w = writable;
    unsigned mask = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
    if (s->armed && s->armed_mask != mask)
        dns_disarm(sh, s); /* re-armed with the new mask when the removal completes */
    else
        dns_arm(sh, s);
}

void
dns_on_cqe(struct shard *sh, unsigned op, uint32_t idx, uint32_t gen, int res)
{
    if (idx >= DNS_MAX_SOCKS)
        return;
    struct dns_sock *s = &sh->dns->socks[idx];
    if (s->gen != gen)
        return;
    if (op == OP_DNS_REMOVE) {
        /* The poll's own CQE (-ECANCELED) marks it gone. */
        return;
    }
    s->armed = false;
    if (s->removing) {
        s->fd = -1;
        s->removing = false;
        s->gen++;
        return;
    }
    if (res > 0 && !sh->stopping) {
        int r = (res & (POLLIN | POLLERR | POLLHUP)) ? s->fd : ARES_SOCKET_BAD;
        int w = (res & (POLLOUT | POLLERR | POLLHUP)) ? s->fd : ARES_SOCKET_BAD;
        ares_process_fd(sh->dns->channel, r, w);
    }
    /* c-ares may have closed or changed it meanwhile. */
    if (s->gen == gen && s->fd >= 0 && !s->removing)
        dns_arm(sh, s);
}

/*
 * c-ares's socket calls, ours only to see why a socket could not be made: out of fds,
 * c-ares gives up on each server and ends the lookup as if the servers had failed, which
 * would answer the client 0x04 (host unreachable) for a fault of the proxy's own. c-ares
 * 1.18 leaves such sockets as they were made (configure_socket(): "do not set options for
 * user-managed sockets"), so what it would set is set here: non-blocking (it reads a UDP
 * socket until EAGAIN: a blocking one hangs the shard on a garbage answer), close-on-exec,
 * and TCP_NODELAY.
 */
static ares_socket_t
dns_socket(int af, int type, int protocol, void *data)
{
    int fd = socket(af, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd == -1) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            ((struct dns_shard *)data)->fd_fails++;
        return ARES_SOCKET_BAD;
    }
    if (type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

static int
dns_close(ares_socket_t fd, void *data)
{
    (void)data;
    return close(fd);
}

static int
dns_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len, void *data)
{
    (void)data;
    return connect(fd, sa, len);
}

static ares_ssize_t
dns_recvfrom(ares_socket_t fd, void *buf, size_t len, int flags, struct sockaddr *from,
             ares_socklen_t *from_len, void *data)
{
    (void)data;
    return recvfrom(fd, buf, len, flags, from, from_len);
}

static ares_ssize_t
dns_sendv(ares_socket_t fd, const struct iovec *iov, int n, void *data)
{
    (void)data;
    return writev(fd, iov, n);
}

static const struct ares_socket_functions dns_sock_funcs = {
    .asocket = dns_socket,
    .aclose = dns_close,
    .aconnect = dns_connect,
    .arecvfrom = dns_recvfrom,
    .asendv = dns_sendv,
};

int
dns_init(struct shard *sh)
{
    struct ares_options ao;
    /* The cache is 1,024 names of 400 bytes: reserved by calloc's mmap, faulted in as
     * names arrive. */
    struct dns_shard *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    memset(&ao, 0, sizeof(ao));
    for (unsigned i = 0; i < DNS_MAX_SOCKS; i++)
        d->socks[i].fd = -1;
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = sh;
    ao.timeout = 2000;
    ao.tries = 2;
    ao.lookups = (char *)"b";
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    if (ares_init_options(&d->channel, &ao, mask) != ARES_SUCCESS) {
        free(d);
        return -EINVAL;
    }
    if (sh->o->resolvers[0] &&
        ares_set_servers_ports_csv(d->channel, sh->o->resolvers) != ARES_SUCCESS) {
        ares_destroy(d->channel);
        free(d);
        return -EINVAL;
    }
    ares_set_socket_functions(d->channel, &dns_sock_funcs, d);
    sh->dns = d;
    return 0;
}

void
dns_fini(struct shard *sh)
{
    if (!sh->dns)
        return;
    /* c-ares may call sock_state_cb while it is destroyed: sh->dns stays valid until then. */
    ares_destroy(sh->dns->channel);
    free(sh->dns);
    sh->dns = NULL;
}

static int
ares_to_errno(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
        return -ENOENT;
    case ARES_ENODATA:
        return -ENODATA;
    case ARES_ETIMEOUT:
        return -ETIMEDOUT;
    case ARES_ENOMEM:
        return -ENOMEM;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return -ECANCELED;
    default:
        return -EHOSTUNREACH;
    }
}

static uint64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
record_latency(struct shard *sh, uint64_t us)
{
    static const uint64_t bounds[] = DNS_LAT_BOUNDS_US;
    unsigned i = 0;
    while (i < sizeof(bounds) / sizeof(bounds[0]) && us > bounds[i])
        i++;
    STAT_INC(sh->st.dns_lat[i]);
    STAT_ADD(sh->st.dns_lat_sum_us, us);
}

static void
resolved_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct dns_query *q = arg;
    union sockaddr_inx addrs[HS_MAX_ADDRS];
    unsigned n = 0;
    unsigned ttl = DNS_TTL_MAX;
    (void)timeouts;

    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_node *nd = res->nodes; nd && n < HS_MAX_ADDRS; nd = nd->ai_next) {
            if (nd->ai_family != AF_INET && nd->ai_family != AF_INET6)
                continue;
            memset(&addrs[n], 0, sizeof(addrs[n]));
            memcpy(&addrs[n], nd->ai_addr, addr_len(nd->ai_addr));
            if (nd->ai_ttl >= 0 && (unsigned)nd->ai_ttl < ttl)
                ttl = (unsigned)nd->ai_ttl;
            n++;
        }
    }
    if (res)
        ares_freeaddrinfo(res);
    int err = ares_to_errno(status);
    if (err == 0 && n == 0)
        err = -ENODATA;
    /* The servers "failed" because no socket could be made for them: 0x01, the proxy's fault. */
    if (err == -EHOSTUNREACH && !q->sh->stopping && q->sh->dns->fd_fails != q->fd_fails)
        err = -EMFILE;
    if (!q->sh->stopping) {
        record_latency(q->sh, mono_us() - q->t0_us);
        /* Timeouts and server failures are not cached: the next query may do better. */
        if (err == 0 || err == -ENOENT || err == -ENODATA)
            cache_store(q->sh, q->key, err, addrs, n, ttl);
        for (unsigned i = 0; i < n; i++)
            hosts_set_port(&addrs[i], q->port);
        conn_resolved(q->sh, q->ref, err, addrs, n);
    }
    free(q);
}

void
dns_resolve(struct shard *sh, const char *name, uint16_t port, uint64_t ref)
{
    char key[256];
    if (!cache_key(name, key)) {
        conn_resolved(sh, ref, -ENOENT, NULL, 0);
        return;
    }
    struct dns_cache_entry *e = cache_slot(sh, key);
    if (e->expires_s && (int32_t)(e->expires_s - sh->now_s) > 0 && strcmp(e->name, key) == 0) {
        union sockaddr_inx addrs[DNS_CACHE_ADDRS];
        memcpy(addrs, e->addrs, e->n * sizeof(*addrs));
        for (unsigned i = 0; i < e->n; i++)
            hosts_set_port(&addrs[i], port);
        STAT_INC(sh->st.dns_cache_hits);
        conn_resolved(sh, ref, e->err, addrs, e->n);
        return;
    }
    struct dns_query *q = malloc(sizeof(*q));
    if (!q) {
        conn_resolved(sh, ref, -ENOMEM, NULL, 0);
        return;
    }
    STAT_INC(sh->st.dns_queries);
    q->sh = sh;
    q->ref = ref;
    q->port = port;
    q->t0_us = mono_us();
    q->fd_fails = sh->dns->fd_fails;
    memcpy(q->key, key, sizeof(q->key));
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* Sorting (RFC 6724) would connect() probe sockets per answer: not on a shard. */
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(sh->dns->channel, name, NULL, &hints, resolved_cb, q);
}

void
dns_tick(struct shard *sh)
{
    ares_process_fd(sh->dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}
