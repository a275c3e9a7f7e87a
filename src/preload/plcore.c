/*
 * plcore.c - the pure parts of the socksifier: proxy URL, bypass networks, placeholder names,
 * hosts(5) lookup and the SOCKS client handshake as a byte machine (plcore.h).
 *
 * Called by the preloaded library from any thread of the host program, under the library's
 * lock where it shares state; never makes a system call or allocates.
 */
#include "plcore.h"
#include "socksload.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
plcore_proxy_parse(struct plcore_proxy *px, const char *s, char *err, size_t errlen)
{
    static const enum plcore_scheme schemes[] = {
        [URL_SOCKS4] = PLCORE_SOCKS4,
        [URL_SOCKS4A] = PLCORE_SOCKS4A,
        [URL_SOCKS5] = PLCORE_SOCKS5,
        [URL_SOCKS5H] = PLCORE_SOCKS5H,
    };
    struct url u;
    int rc;

    memset(px, 0, sizeof(*px));
    /* socksload's parser: the same curl syntax, one implementation. */
    rc = url_parse(&u, s, err, errlen);
    if (rc < 0)
        return rc;
    if (u.scheme == URL_HTTP) {
        snprintf(err, errlen,
                 "the socksifier speaks SOCKS only (socks4, socks4a, socks5, socks5h): %s", s);
        return -EINVAL;
    }
    px->scheme = schemes[u.scheme];
    memcpy(px->host, u.host, sizeof(px->host));
    px->port = u.port;
    px->has_auth = u.has_user;
    memcpy(px->user, u.user, sizeof(px->user));
    memcpy(px->pass, u.pass, sizeof(px->pass));
    return 0;
}

bool
plcore_remote_dns(enum plcore_scheme scheme)
{
    return scheme == PLCORE_SOCKS4A || scheme == PLCORE_SOCKS5H;
}

int
plcore_net_parse(struct plcore_net *net, const char *s)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    unsigned long prefix;
    char *pe;

    memset(net, 0, sizeof(*net));
    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, net->addr) == 1) {
        net->family = AF_INET;
        net->prefix = 32;
    } else if (inet_pton(AF_INET6, buf, net->addr) == 1) {
        net->family = AF_INET6;
        net->prefix = 128;
    } else {
        return -EINVAL;
    }
    if (slash) {
        if (!isdigit((unsigned char)slash[1]))
            return -EINVAL;
        prefix = strtoul(slash + 1, &pe, 10);
        if (*pe != '\0' || prefix > net->prefix)
            return -EINVAL;
        net->prefix = (unsigned)prefix;
    }
    return 0;
}

static bool
prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;

    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool
plcore_sa_ipv4(const struct sockaddr *sa, uint32_t *ip)
{
    if (sa->sa_family == AF_INET) {
        *ip = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            uint32_t v;
            memcpy(&v, &a->s6_addr[12], 4);
            *ip = ntohl(v);
            return true;
        }
    }
    return false;
}

bool
plcore_net_match(const struct plcore_net *net, const struct sockaddr *sa)
{
    uint32_t ip;

    if (plcore_sa_ipv4(sa, &ip)) {
        uint8_t b[4];
        if (net->family != AF_INET)
            return false;
        ip = htonl(ip);
        memcpy(b, &ip, 4);
        return prefix_eq(b, net->addr, net->prefix);
    }
    if (sa->sa_family == AF_INET6 && net->family == AF_INET6)
        return prefix_eq(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, net->addr,
                         net->prefix);
    return false;
}

uint32_t
plcore_names_get(struct plcore_names *t, const char *name)
{
    uint32_t i, slot;

    if (t->cap == 0 || strlen(name) > PLCORE_NAME_MAX || name[0] == '\0')
        return 0;
    for (i = 0; i < t->cap && t->name[i][0] != '\0'; i++)
        if (strcasecmp(t->name[i], name) == 0)
            return t->base + 1 + i;
    slot = t->next % t->cap;
    t->next = slot + 1;
    strcpy(t->name[slot], name);
    return t->base + 1 + slot;
}

const char *
plcore_names_lookup(const struct plcore_names *t, uint32_t ip)
{
    uint32_t slot = ip - t->base - 1;

    if (ip <= t->base || slot >= t->cap || t->name[slot][0] == '\0')
        return NULL;
    return t->name[slot];
}

bool
plcore_hosts_has(const char *text, size_t len, const char *name)
{
    const char *p = text, *end = text + len;
    size_t nlen = strlen(name);

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *hash, *q;
        bool first = true;
        if (eol == NULL)
            eol = end;
        hash = memchr(p, '#', (size_t)(eol - p));
        if (hash != NULL)
            eol = hash;
        q = p;
        while (q < eol) {
            const char *w;
            while (q < eol && isspace((unsigned char)*q))
                q++;
            w = q;
            while (q < eol && !isspace((unsigned char)*q))
                q++;
            if (q == w)
                break;
            /* The first word is the address. */
            if (!first && (size_t)(q - w) == nlen && strncasecmp(w, name, nlen) == 0)
                return true;
            first = false;
        }
        p = hash != NULL ? memchr(hash, '\n', (size_t)(end - hash)) : eol;
        if (p == NULL || p == end)
            break;
        p++;
    }
    return false;
}

enum {
    HS_V5_METHOD,
    HS_V5_AUTH,
    HS_V5_REPLY_HEAD,
    HS_V5_REPLY_REST,
    HS_V4_REPLY,
};

static void
out_add(struct plcore_hs *hs, const void *p, size_t n)
{
    memcpy(hs->out + hs->out_len, p, n);
    hs->out_len += n;
}

static void
want(struct plcore_hs *hs, size_t n)
{
    hs->in_len = 0;
    hs->in_want = n;
}

/* ATYP, address and port of d at out (at most 1 + 1 + 255 + 2 bytes): their length. */
static size_t
v5_address(uint8_t *out, const struct plcore_dest *d)
{
    uint16_t port = htons(d->port);
    size_t n;
    uint32_t ip;

    if (d->name[0] != '\0') {
        n = strlen(d->name);
        out[0] = 3;
        out[1] = (uint8_t)n;
        memcpy(out + 2, d->name, n);
        n += 2;
    } else if (plcore_sa_ipv4((const struct sockaddr *)&d->addr, &ip)) {
        out[0] = 1;
        ip = htonl(ip);
        memcpy(out + 1, &ip, 4);
        n = 5;
    } else {
        out[0] = 4;
        memcpy(out + 1, ((const struct sockaddr_in6 *)&d->addr)->sin6_addr.s6_addr, 16);
        n = 17;
    }
    memcpy(out + n, &port, 2);
    return n + 2;
}

static void
v5_request(struct plcore_hs *hs)
{
    uint8_t head[3] = {5, hs->cmd, 0};

    hs->out_len = hs->out_off = 0;
    out_add(hs, head, 3);
    hs->out_len += v5_address(hs->out + hs->out_len, &hs->dest);
    hs->stage = HS_V5_REPLY_HEAD;
    want(hs, 5); /* VER REP RSV ATYP + the first byte of BND.ADDR (the length of a name) */
}

int
plcore_hs_start(struct plcore_hs *hs, const struct plcore_proxy *px, const struct plcore_dest *dest)
{
    uint32_t ip;

    memset(hs, 0, sizeof(*hs));
    hs->px = px;
    hs->dest = *dest;
    hs->cmd = 1;
    if (dest->name[0] != '\0' && !plcore_remote_dns(px->scheme))
        return -EINVAL;
    if (px->scheme == PLCORE_SOCKS4 || px->scheme == PLCORE_SOCKS4A) {
        uint8_t head[2] = {4, 1};
        uint16_t port = htons(dest->port);
        const char *user = px->user;
        if (dest->name[0] != '\0') {
            /* SOCKS4a: DSTIP 0.0.0.x, x != 0, then the name after USERID. */
            ip = htonl(1);
        } else if (plcore_sa_ipv4((const struct sockaddr *)&dest->addr, &ip)) {
            ip = htonl(ip);
        } else {
            return -EAFNOSUPPORT;
        }
        out_add(hs, head, 2);
        out_add(hs, &port, 2);
        out_add(hs, &ip, 4);
        out_add(hs, user, strlen(user) + 1);
        if (dest->name[0] != '\0')
            out_add(hs, dest->name, strlen(dest->name) + 1);
        hs->stage = HS_V4_REPLY;
        want(hs, 8);
        return 0;
    }
    {
        uint8_t greet[4] = {5, 1, 0, 2};
        if (px->has_auth)
            greet[1] = 2; /* no auth or username/password: RFC 1928 section 3 */
        out_add(hs, greet, px->has_auth ? 4 : 3);
    }
    hs->stage = HS_V5_METHOD;
    want(hs, 2);
    return 0;
}

static int
v5_errno(uint8_t rep)
{
    switch (rep) {
    case 2:
        return -EACCES;
    case 3:
        return -ENETUNREACH;
    case 4:
        return -EHOSTUNREACH;
    case 6:
        return -ETIMEDOUT;
    case 7:
        return -EOPNOTSUPP;
    case 8:
        return -EAFNOSUPPORT;
    default:
        return -ECONNREFUSED;
    }
}

int
plcore_hs_next(struct plcore_hs *hs)
{
    const struct plcore_proxy *px = hs->px;

    if (hs->out_off < hs->out_len || hs->in_len < hs->in_want)
        return 0;
    switch (hs->stage) {
    case HS_V4_REPLY:
        if (hs->in[0] != 0)
            return -EPROTO;
        return hs->in[1] == 0x5A ? 1 : -ECONNREFUSED;
    case HS_V5_METHOD:
        if (hs->in[0] != 5)
            return -EPROTO;
        if (hs->in[1] == 0) {
            v5_request(hs);
            return 0;
        }
        if (hs->in[1] == 2 && px->has_auth) {
            /* RFC 1929: VER 1, ULEN UNAME, PLEN PASSWD */
            uint8_t ul = (uint8_t)strlen(px->user), pl = (uint8_t)strlen(px->pass), v = 1;
            hs->out_len = hs->out_off = 0;
            out_add(hs, &v, 1);
            out_add(hs, &ul, 1);
            out_add(hs, px->user, ul);
            out_add(hs, &pl, 1);
            out_add(hs, px->pass, pl);
            hs->stage = HS_V5_AUTH;
            want(hs, 2);
            return 0;
        }
        return -EACCES;
    case HS_V5_AUTH:
        if (hs->in[1] != 0)
            return -EACCES;
        v5_request(hs);
        return 0;
    case HS_V5_REPLY_HEAD:
        if (hs->in[0] != 5)
            return -EPROTO;
        if (hs->in[1] != 0)
            return v5_errno(hs->in[1]);
        hs->stage = HS_V5_REPLY_REST;
        switch (hs->in[3]) {
        case 1:
            hs->in_want = 4 + 4 + 2;
            break;
        case 4:
            hs->in_want = 4 + 16 + 2;
            break;
        case 3:
            hs->in_want = 5 + hs->in[4] + 2;
            break;
        default:
            return -EPROTO;
        }
        return 0;
    case HS_V5_REPLY_REST:
        return 1;
    }
    return -EPROTO;
}

/* The address at p (ATYP first) into d; its length, or -EINVAL. */
static int
v5_parse_address(const uint8_t *p, size_t len, struct plcore_dest *d)
{
    size_t n;

    memset(d, 0, sizeof(*d));
    if (len < 1)
        return -EINVAL;
    switch (p[0]) {
    case 1: {
        struct sockaddr_in *a = (struct sockaddr_in *)&d->addr;
        n = 1 + 4;
        if (len < n + 2)
            return -EINVAL;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, p + 1, 4);
        memcpy(&a->sin_port, p + n, 2);
        break;
    }
    case 4: {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&d->addr;
        n = 1 + 16;
        if (len < n + 2)
            return -EINVAL;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, p + 1, 16);
        memcpy(&a->sin6_port, p + n, 2);
        break;
    }
    case 3:
        if (len < 2 || len < 2 + (size_t)p[1] + 2 || p[1] == 0)
            return -EINVAL;
        n = 2 + (size_t)p[1];
        memcpy(d->name, p + 2, p[1]);
        d->name[p[1]] = '\0';
        break;
    default:
        return -EINVAL;
    }
    d->port = (uint16_t)(p[n] << 8 | p[n + 1]);
    return (int)(n + 2);
}

int
plcore_hs_bound(const struct plcore_hs *hs, struct sockaddr_storage *ss, socklen_t *len)
{
    struct plcore_dest d;

    if (v5_parse_address(hs->in + 3, hs->in_len - 3, &d) < 0 || d.name[0] != '\0')
        return -EAFNOSUPPORT;
    *ss = d.addr;
    *len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return 0;
}

int
plcore_udp_header(uint8_t *out, const struct plcore_dest *dest)
{
    /* RSV RSV FRAG, then the destination */
    out[0] = out[1] = out[2] = 0;
    return 3 + (int)v5_address(out + 3, dest);
}

int
plcore_udp_parse(const uint8_t *p, size_t len, struct plcore_dest *src)
{
    int n;

    /* FRAG != 0: fragments are not reassembled (RFC 1928 section 7 allows dropping them). */
    if (len < 4 || p[0] != 0 || p[1] != 0 || p[2] != 0)
        return -EINVAL;
    n = v5_parse_address(p + 3, len - 3, src);
    if (n < 0)
        return n;
    if (src->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&src->addr)->sin_port = htons(src->port);
    else if (src->addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&src->addr)->sin6_port = htons(src->port);
    return 3 + n;
}
