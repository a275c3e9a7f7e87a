/*
 * outbound.c - a tunnel's outgoing socket as the policy says (outbound.h).
 *
 * Shard thread only. The pool in force is the first of: the user's
 * (users file), the admitting rule's, the listener's, the global one. The
 * address is drawn from the shard's generator, or, for a session named in
 * the user name, from a keyed hash of (user, session, TTL, TTL bucket), so
 * every shard and every node with the same configuration picks the same
 * address with nothing shared between them.
 */
#include "outbound.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "conn.h"
#include "egress.h"
#include "policy.h"
#include "shard_types.h"
#include "transparent.h"
#include "users.h"

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: fast, good enough to spread tunnels over a prefix; not a secret. */
static uint64_t
rng_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

uint64_t
outbound_rand(struct shard *sh)
{
    return rng_next(sh->rng);
}

void
outbound_seed(struct shard *sh)
{
    do
        randombytes_buf(sh->rng, sizeof(sh->rng));
    while (!(sh->rng[0] | sh->rng[1] | sh->rng[2] | sh->rng[3]));
}

char *
outbound_user_dup(struct conn *c, const char *base, const struct egress_session *s)
{
    if (!s || !s->id_len)
        return strdup(base);
    size_t bl = strlen(base);
    char ttl[16];
    int tl = snprintf(ttl, sizeof(ttl), "%u", s->ttl_s);
    char *u = malloc(bl + 1 + s->id_len + 1 + (size_t)tl + 1);
    if (!u)
        return NULL;
    memcpy(u, base, bl + 1);
    memcpy(u + bl + 1, s->id, s->id_len);
    u[bl + 1 + s->id_len] = '\0';
    memcpy(u + bl + 1 + s->id_len + 1, ttl, (size_t)tl + 1);
    c->flags |= CONN_F_SESSION;
    return u;
}

/*
 * Where c's traffic of family leaves from, as the policy says for rule er: *pick (port
 * 0), or family 0 for the kernel's choice. 0, or -EAFNOSUPPORT: the pool in force has no
 * address of family and no fallback lets the kernel choose.
 */
static int
choose(struct shard *sh, struct conn *c, const struct egress_rule *er, int family,
       union sockaddr_inx *pick)
{
    const struct policy *p = sh->pol;
    const struct egress_pool *pool = NULL;
    union sockaddr_inx local;
    bool same = false;

    memset(pick, 0, sizeof(*pick));
    if (c->user)
        pool = users_egress(p->users, c->user);
    if (!pool && er)
        pool = er->pool;
    /* Not for a transparent client: it has no listener egress (config.c), and under tproxy
     * its socket's address is its target's, which could pass for another listener's. */
    if (!pool && c->version != TRANSPARENT_VERSION) {
        const struct policy_listener *l = p->n_listeners && conn_local(c, &local) == 0
                                              ? policy_listener_at(p, sh->o, &local)
                                              : NULL;
        if (l && l->same)
            same = true;
        else if (l)
            pool = l->pool;
    }
    if (!pool && !same)
        pool = p->egress;
    if (!pool && !same)
        return 0; /* the kernel chooses, as without egress settings */

    if (same && local.sa.sa_family == family) {
        *pick = local;
    } else if (!same && egress_pool_has(pool, family)) {
        uint64_t bits[2];
        struct egress_session s;
        if (conn_session(c, &s)) {
            unsigned ttl = s.ttl_s ? s.ttl_s : p->session_ttl_s;
            if (ttl > p->session_ttl_max_s)
                ttl = p->session_ttl_max_s;
            egress_session_bits(p->session_key, c->user, strlen(c->user), &s, ttl,
                                c->start_ms / 1000, family, bits);
        } else {
            bits[0] = rng_next(sh->rng);
            bits[1] = rng_next(sh->rng);
        }
        egress_pick(pool, family, bits, pick);
    } else {
        bool fallback = er && er->fallback >= 0 ? er->fallback : p->egress_fallback;
        return fallback ? 0 : -EAFNOSUPPORT;
    }
    if (family == AF_INET)
        pick->v4.sin_port = 0;
    else
        pick->v6.sin6_port = 0;
    return 0;
}

int
outbound_prepare(struct shard *sh, struct conn *c, int fd, int family, int rule,
                 enum outbound_use use, union sockaddr_inx *src)
{
    const struct egress_rule *er = rule >= 0 ? acl_rule_data(sh->pol->acl, rule) : NULL;
    union sockaddr_inx pick;

    if (src)
        memset(src, 0, sizeof(*src));
    int ret = use == OUTBOUND_LISTEN ? egress_mark(fd, er)
                                     : egress_sockopts(fd, er, sh->o, use == OUTBOUND_CONNECT_DATA);
    if (ret < 0 || (ret = choose(sh, c, er, family, &pick)) < 0)
        return ret;
    if (!pick.sa.sa_family)
        return 0;
    if (use == OUTBOUND_LISTEN)
        egress_freebind(fd, family); /* the caller binds it, with a port of its range */
    else if ((ret = egress_bind(fd, &pick)) < 0)
        return ret;
    if (src)
        *src = pick;
    return 0;
}

int
outbound_socket(struct shard *sh, struct conn *c, int family, int rule, enum outbound_use use)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int one = 1;
    /* A relay must not add Nagle delay of its own to small messages. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Its source address and the admitting rule's socket settings. */
    int ret = outbound_prepare(sh, c, fd, family, rule, use, NULL);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    return fd;
}

int
outbound_dgram(struct shard *sh, struct conn *c, int fd, int rule, struct outbound_dgram *d)
{
    const struct egress_rule *er = rule >= 0 ? acl_rule_data(sh->pol->acl, rule) : NULL;
    static const int fams[2] = {AF_INET, AF_INET6};
    memset(d, 0, sizeof(*d));
    int ret = egress_mark(fd, er);
    if (ret < 0)
        return ret;
    bool any = false;
    for (int i = 0; i < 2; i++) {
        d->refuse[i] = choose(sh, c, er, fams[i], &d->src[i]) < 0;
        any = any || d->src[i].sa.sa_family;
    }
    if (any) {
        /* A source the host has by a local route rather than an address: FREEBIND lets
         * IPV6_PKTINFO name it (IPv4 checks the local routes itself). */
        egress_freebind(fd, AF_INET6);
        egress_freebind(fd, AF_INET);
    }
    return 0;
}
