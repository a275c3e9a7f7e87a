/*
 * dns.c - DNS resolution that never blocks a shard.
 *
 * Each shard owns one c-ares channel: c-ares tells us (sock_state_cb) which sockets it
 * wants watched, we poll them through the shard's ring and hand readiness
 * back with ares_process_fd(); c-ares never reads a file or waits here after
 * init, since lookups are DNS-only ("b") and our hosts table answers first.
 */
#include "dns.h"
#include "hosts.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "shard.h"

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
            hosts_set_port(&addrs[n], q->port);
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
