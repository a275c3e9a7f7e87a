/*
 * dns.c - name resolution that never blocks a shard.
 *
 * The hosts table is read once by main() before any shard starts and is
 * read-only afterwards, so any thread may look names up in it. Each shard
 * owns one c-ares channel: c-ares tells us (sock_state_cb) which sockets it
 * wants watched, we poll them through the shard's ring and hand readiness
 * back with ares_process_fd(); c-ares never reads a file or waits here after
 * init, since lookups are DNS-only ("b") and our hosts table answers first.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "session.h"
#include "shard.h"

struct host_entry {
    char *name; /* lower case */
    union sockaddr_inx addr;
};

struct hosts {
    struct host_entry *e;
    size_t n;
};

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct host_entry *)a)->name, ((const struct host_entry *)b)->name);
}

static int
hosts_add(struct hosts *h, size_t *cap, const char *name, const union sockaddr_inx *a)
{
    if (h->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct host_entry *n = realloc(h->e, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        h->e = n;
        *cap = ncap;
    }
    char *s = strdup(name);
    if (!s)
        return -ENOMEM;
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    h->e[h->n].name = s;
    h->e[h->n].addr = *a;
    h->n++;
    return 0;
}

struct hosts *
hosts_load(const char *path)
{
    struct hosts *h = calloc(1, sizeof(*h));
    size_t cap = 0;
    if (!h)
        return NULL;
    FILE *f = fopen(path, "re");
    if (!f)
        return h;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save;
        char *ip = strtok_r(line, " \t\r\n", &save);
        if (!ip)
            continue;
        union sockaddr_inx a;
        memset(&a, 0, sizeof(a));
        if (inet_pton(AF_INET, ip, &a.v4.sin_addr) == 1)
            a.sa.sa_family = AF_INET;
        else if (inet_pton(AF_INET6, ip, &a.v6.sin6_addr) == 1)
            a.sa.sa_family = AF_INET6;
        else
            continue;
        for (char *name = strtok_r(NULL, " \t\r\n", &save); name;
             name = strtok_r(NULL, " \t\r\n", &save)) {
            if (hosts_add(h, &cap, name, &a) < 0) {
                fclose(f);
                hosts_free(h);
                return NULL;
            }
        }
    }
    fclose(f);
    /* Stable order within a name is lost by qsort; hosts(5) order matters little. */
    qsort(h->e, h->n, sizeof(*h->e), entry_cmp);
    return h;
}

void
hosts_free(struct hosts *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        free(h->e[i].name);
    free(h->e);
    free(h);
}

static void
set_port(union sockaddr_inx *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET)
        a->v4.sin_port = htons(port);
    else
        a->v6.sin6_port = htons(port);
}

static bool
is_localhost(const char *name, size_t len)
{
    static const char lh[] = "localhost";
    const size_t n = sizeof(lh) - 1;
    if (len && name[len - 1] == '.')
        len--;
    if (len < n || strncasecmp(name + len - n, lh, n) != 0)
        return false;
    return len == n || name[len - n - 1] == '.';
}

unsigned
hosts_lookup(const struct hosts *h, const char *name, uint16_t port, union sockaddr_inx *out,
             unsigned max)
{
    char key[256];
    size_t len = strlen(name);
    unsigned n = 0;

    if (max == 0 || len == 0 || len >= sizeof(key))
        return 0;
    for (size_t i = 0; i <= len; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    if (len > 1 && key[len - 1] == '.')
        key[len - 1] = '\0';

    /* RFC 6761 6.3: localhost names are loopback, whatever DNS or the file say. */
    if (is_localhost(key, strlen(key))) {
        memset(&out[0], 0, sizeof(out[0]));
        out[0].v4.sin_family = AF_INET;
        out[0].v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        set_port(&out[0], port);
        n = 1;
        if (max > 1) {
            memset(&out[1], 0, sizeof(out[1]));
            out[1].v6.sin6_family = AF_INET6;
            out[1].v6.sin6_addr = in6addr_loopback;
            set_port(&out[1], port);
            n = 2;
        }
        return n;
    }
    if (!h || h->n == 0)
        return 0;
    struct host_entry k = {.name = key};
    struct host_entry *hit = bsearch(&k, h->e, h->n, sizeof(*h->e), entry_cmp);
    if (!hit)
        return 0;
    while (hit > h->e && strcmp(hit[-1].name, key) == 0)
        hit--;
    for (; hit < h->e + h->n && n < max && strcmp(hit->name, key) == 0; hit++) {
        out[n] = hit->addr;
        set_port(&out[n], port);
        n++;
    }
    return n;
}

/* --- c-ares on the ring ------------------------------------------------ */

struct dns_query {
    struct shard *sh;
    uint64_t cookie;
    uint16_t port;
};

static struct dns_sock *
dns_sock_find(struct shard *sh, int fd)
{
    for (unsigned i = 0; i < DNS_MAX_SOCKS; i++) {
        struct dns_sock *s = &sh->dns_socks[i];
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
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_poll_add(sqe, s->fd, mask);
    io_uring_sqe_set_data64(sqe, ud_make(OP_DNS_POLL, (uint32_t)(s - sh->dns_socks), s->gen));
    s->armed = true;
    s->armed_mask = mask;
}

static void
dns_disarm(struct shard *sh, struct dns_sock *s)
{
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_poll_remove(sqe, ud_make(OP_DNS_POLL, (uint32_t)(s - sh->dns_socks), s->gen));
    io_uring_sqe_set_data64(sqe, ud_make(OP_DNS_REMOVE, (uint32_t)(s - sh->dns_socks), s->gen));
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
            if (sh->dns_socks[i].fd < 0)
                s = &sh->dns_socks[i];
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
    struct dns_sock *s = &sh->dns_socks[idx];
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
        ares_process_fd(sh->dns, r, w);
    }
    /* c-ares may have closed or changed it meanwhile. */
    if (s->gen == gen && s->fd >= 0 && !s->removing)
        dns_arm(sh, s);
}

int
dns_init(struct shard *sh)
{
    struct ares_options ao;
    memset(&ao, 0, sizeof(ao));
    for (unsigned i = 0; i < DNS_MAX_SOCKS; i++)
        sh->dns_socks[i].fd = -1;
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = sh;
    ao.timeout = 2000;
    ao.tries = 2;
    ao.lookups = (char *)"b";
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    int ret = ares_init_options(&sh->dns, &ao, mask);
    if (ret != ARES_SUCCESS)
        return -EINVAL;
    if (sh->o->resolvers[0] && ares_set_servers_ports_csv(sh->dns, sh->o->resolvers) != ARES_SUCCESS) {
        ares_destroy(sh->dns);
        sh->dns = NULL;
        return -EINVAL;
    }
    return 0;
}

void
dns_fini(struct shard *sh)
{
    if (sh->dns) {
        ares_destroy(sh->dns);
        sh->dns = NULL;
    }
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

static void
resolved_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct dns_query *q = arg;
    union sockaddr_inx addrs[HS_MAX_ADDRS];
    unsigned n = 0;
    (void)timeouts;

    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_node *nd = res->nodes; nd && n < HS_MAX_ADDRS; nd = nd->ai_next) {
            if (nd->ai_family != AF_INET && nd->ai_family != AF_INET6)
                continue;
            memset(&addrs[n], 0, sizeof(addrs[n]));
            memcpy(&addrs[n], nd->ai_addr, addr_len(nd->ai_addr));
            set_port(&addrs[n], q->port);
            n++;
        }
    }
    if (res)
        ares_freeaddrinfo(res);
    int err = ares_to_errno(status);
    if (err == 0 && n == 0)
        err = -ENODATA;
    if (!q->sh->stopping)
        session_on_resolved(q->sh, q->cookie, err, addrs, n);
    free(q);
}

void
dns_resolve(struct shard *sh, const char *name, uint16_t port, uint64_t cookie)
{
    struct dns_query *q = malloc(sizeof(*q));
    if (!q) {
        session_on_resolved(sh, cookie, -ENOMEM, NULL, 0);
        return;
    }
    q->sh = sh;
    q->cookie = cookie;
    q->port = port;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* Sorting (RFC 6724) would connect() probe sockets per answer: not on a shard. */
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(sh->dns, name, NULL, &hints, resolved_cb, q);
}

void
dns_tick(struct shard *sh)
{
    ares_process_fd(sh->dns, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}
