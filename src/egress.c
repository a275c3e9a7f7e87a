/*
 * egress.c - pools of source addresses, the choice of one per tunnel, the
 * session parameters of a user name, and the outbound socket settings.
 *
 * A pool keeps its IPv4 and IPv6 entries apart, each range with its size,
 * so a pick is a draw over the sizes and then a draw inside the range: a
 * /64 is never enumerated. The draw takes 128 bits from the caller (the
 * shard's generator, or the session hash), so the same bits give the same
 * address on every shard and every node.
 */
#include "egress.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "acl.h"
#include "opts.h"
#include "sock.h"
#include "via.h"

typedef unsigned __int128 u128;

/* keepalive = true on a rule while the global keepalive_idle is 0: the default idle. */
#define EGRESS_KEEPALIVE_IDLE_S 120

/* Ranges above this size count as this size in the draw over ranges. */
#define SIZE_CAP_BITS 96

struct egress_range {
    u128 net;  /* the network, host bits zero; an IPv4 one in the low 32 bits */
    u128 size; /* addresses it holds, at most 2^SIZE_CAP_BITS */
    uint8_t prefix;
    uint8_t host_bits; /* 32 or 128 minus prefix */
};

struct egress_part {
    struct egress_range *r;
    size_t n;
    u128 total; /* sum of sizes */
};

struct egress_pool {
    struct egress_part part[2]; /* [0] IPv4, [1] IPv6 */
};

static struct egress_part *
part_of(const struct egress_pool *p, int family)
{
    if (!p)
        return NULL;
    if (family == AF_INET)
        return (struct egress_part *)&p->part[0];
    if (family == AF_INET6)
        return (struct egress_part *)&p->part[1];
    return NULL;
}

struct egress_pool *
egress_pool_new(void)
{
    return calloc(1, sizeof(struct egress_pool));
}

void
egress_pool_free(struct egress_pool *p)
{
    if (!p)
        return;
    free(p->part[0].r);
    free(p->part[1].r);
    free(p);
}

static u128
bytes_to_u128(const uint8_t *b, size_t n)
{
    u128 v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

static void
u128_to_bytes(u128 v, uint8_t *b, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

static int
entry_parse(const char *entry, struct acl_cidr *c, char *why, size_t whycap)
{
    if (acl_cidr_parse(entry, c) == 0)
        return 0;
    if (strchr(entry, '/'))
        snprintf(why, whycap,
                 "'%s' is not an address or a prefix (NETWORK/LENGTH with the host bits zero)",
                 entry);
    else
        snprintf(why, whycap, "'%s' is not an IPv4 or IPv6 address", entry);
    return -EINVAL;
}

int
egress_entry_check(const char *entry, char *why, size_t whycap)
{
    struct acl_cidr c;
    return entry_parse(entry, &c, why, whycap);
}

int
egress_pool_add(struct egress_pool *p, const char *entry, char *why, size_t whycap)
{
    struct acl_cidr c;
    if (entry_parse(entry, &c, why, whycap) < 0)
        return -EINVAL;
    struct egress_part *pt = part_of(p, c.family);
    struct egress_range *nr = realloc(pt->r, (pt->n + 1) * sizeof(*nr));
    if (!nr) {
        snprintf(why, whycap, "out of memory");
        return -ENOMEM;
    }
    pt->r = nr;
    struct egress_range *r = &nr[pt->n];
    size_t len = c.family == AF_INET ? 4 : 16;
    r->net = bytes_to_u128(c.addr, len);
    r->prefix = c.prefix;
    r->host_bits = (uint8_t)(len * 8 - c.prefix);
    r->size = (u128)1 << (r->host_bits < SIZE_CAP_BITS ? r->host_bits : SIZE_CAP_BITS);
    pt->total += r->size;
    pt->n++;
    return 0;
}

struct egress_pool *
egress_pool_parse_csv(const char *csv, char *why, size_t whycap)
{
    struct egress_pool *p = egress_pool_new();
    if (!p) {
        snprintf(why, whycap, "out of memory");
        return NULL;
    }
    const char *s = csv;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        char one[64];
        if (n == 0 || n >= sizeof(one)) {
            snprintf(why, whycap, "'%.*s' is not an IPv4 or IPv6 address", (int)(n < 64 ? n : 64),
                     s);
            egress_pool_free(p);
            return NULL;
        }
        memcpy(one, s, n);
        one[n] = '\0';
        if (egress_pool_add(p, one, why, whycap) < 0) {
            egress_pool_free(p);
            return NULL;
        }
        s += n;
        if (*s == ',')
            s++;
    }
    if (!p->part[0].n && !p->part[1].n) {
        snprintf(why, whycap, "the pool is empty");
        egress_pool_free(p);
        return NULL;
    }
    return p;
}

bool
egress_pool_has(const struct egress_pool *p, int family)
{
    const struct egress_part *pt = part_of(p, family);
    return pt && pt->n > 0;
}

/* splitmix64: spreads a seed into independent-looking 64-bit words. */
static uint64_t
mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int
egress_pick(const struct egress_pool *p, int family, const uint64_t r[2], union sockaddr_inx *out)
{
    const struct egress_part *pt = part_of(p, family);
    if (!pt || !pt->n)
        return -EAFNOSUPPORT;
    /* Which range: by size, from all 128 bits. */
    u128 x = ((u128)r[0] << 64 | r[1]) % pt->total;
    size_t i = 0;
    while (i + 1 < pt->n && x >= pt->r[i].size) {
        x -= pt->r[i].size;
        i++;
    }
    const struct egress_range *g = &pt->r[i];
    /* Where inside it: 128 further bits derived from the same ones. */
    u128 host = (u128)mix64(r[0] ^ 0x5bd1e995u) << 64 | mix64(r[1] + 0x27d4eb2fu);
    if (g->host_bits < 128)
        host &= ((u128)1 << g->host_bits) - 1;
    u128 all = g->host_bits < 128 ? ((u128)1 << g->host_bits) - 1 : ~(u128)0;
    if (family == AF_INET && g->host_bits >= 2 && (host == 0 || host == all))
        host = 1; /* not the network or broadcast address */
    else if (family == AF_INET6 && g->host_bits >= 2 && host == 0)
        host = 1; /* not the subnet-router anycast address */
    u128 a = g->net | host;
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        out->v4.sin_family = AF_INET;
        uint8_t b[4];
        u128_to_bytes(a, b, 4);
        memcpy(&out->v4.sin_addr, b, 4);
    } else {
        out->v6.sin6_family = AF_INET6;
        u128_to_bytes(a, out->v6.sin6_addr.s6_addr, 16);
    }
    return 0;
}

static const char KW_SESSION[] = "-session-";
static const char KW_TTL[] = "-ttl-";

bool
egress_name_has_keyword(const char *name)
{
    return strstr(name, KW_SESSION) || strstr(name, KW_TTL) || fault_name_has_keyword(name);
}

static bool
id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

int
egress_user_params(const char *name, size_t *base_len, struct egress_session *s)
{
    memset(s, 0, sizeof(*s));
    const char *k = strstr(name, KW_SESSION);
    if (!k) {
        *base_len = strlen(name);
        return 0;
    }
    if (k == name)
        return -EINVAL;
    *base_len = (size_t)(k - name);
    const char *id = k + sizeof(KW_SESSION) - 1, *e = id;
    while (id_char(*e))
        e++;
    if (e == id || e - id > EGRESS_SESSION_ID_MAX)
        return -EINVAL;
    s->id = id;
    s->id_len = (size_t)(e - id);
    if (*e == '\0')
        return 0;
    if (strncmp(e, KW_TTL, sizeof(KW_TTL) - 1) != 0)
        return -EINVAL;
    const char *d = e + sizeof(KW_TTL) - 1;
    unsigned ttl = 0;
    size_t nd = 0;
    for (; *d >= '0' && *d <= '9'; d++, nd++)
        ttl = ttl * 10 + (unsigned)(*d - '0');
    if (nd == 0 || nd > 9 || *d != '\0' || ttl == 0)
        return -EINVAL;
    s->ttl_s = ttl;
    return 0;
}

void
egress_session_key(const char *secret, uint8_t key[16])
{
    static const char ctx[] = "ringsocks egress session v1";
    crypto_generichash(key, 16, (const unsigned char *)secret, strlen(secret),
                       (const unsigned char *)ctx, sizeof(ctx) - 1);
}

void
egress_session_bits(const uint8_t key[16], const char *user, size_t user_len,
                    const struct egress_session *s, unsigned ttl_s, uint64_t wall_s, int family,
                    uint64_t out[2])
{
    /* user NUL id NUL ttl(4) bucket(8) family(1): unambiguous, as neither part holds NUL. */
    uint8_t in[256 + 1 + EGRESS_SESSION_ID_MAX + 1 + 13];
    size_t n = 0;
    if (user_len > 255)
        user_len = 255;
    memcpy(in, user, user_len);
    n += user_len;
    in[n++] = 0;
    size_t il = s->id_len > EGRESS_SESSION_ID_MAX ? EGRESS_SESSION_ID_MAX : s->id_len;
    memcpy(in + n, s->id, il);
    n += il;
    in[n++] = 0;
    uint64_t bucket = ttl_s ? wall_s / ttl_s : 0;
    for (int i = 3; i >= 0; i--)
        in[n++] = (uint8_t)(ttl_s >> (8 * i));
    for (int i = 7; i >= 0; i--)
        in[n++] = (uint8_t)(bucket >> (8 * i));
    in[n++] = (uint8_t)family;
    uint8_t h[crypto_shorthash_siphashx24_BYTES];
    crypto_shorthash_siphashx24(h, in, n, key);
    uint64_t a = 0, b = 0;
    for (int i = 0; i < 8; i++) {
        a = a << 8 | h[i];
        b = b << 8 | h[8 + i];
    }
    out[0] = a;
    out[1] = b;
}

void
egress_rule_init(struct egress_rule *r)
{
    memset(r, 0, sizeof(*r));
    r->fallback = -1;
    r->keepalive = -1;
    r->fastopen = -1;
    r->user_timeout_s = -1;
    r->family = 0; /* HAPPY_ANY */
    lim_conf_unset(&r->lim);
    lim_conf_unset(&r->client_lim);
}

void
egress_rule_free(void *v)
{
    struct egress_rule *r = v;
    if (!r)
        return;
    egress_pool_free(r->pool);
    via_list_put(r->via);
    free(r);
}

void
egress_freebind(int fd, int family)
{
    int one = 1;
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
    else
        setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
}

int
egress_mark(int fd, const struct egress_rule *r)
{
    if (!r || !r->has_mark)
        return 0;
    uint32_t m = r->mark;
    return setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof(m)) == -1 ? -errno : 0;
}

int
egress_bind(int fd, const union sockaddr_inx *src)
{
    int one = 1;
    egress_freebind(fd, src->sa.sa_family);
    /* IPPROTO_IP level for both families: the kernel reads it from the socket. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, &src->sa, addr_len(&src->sa)) == -1)
        return -errno;
    return 0;
}

int
egress_sockopts(int fd, const struct egress_rule *r, const struct opts *o, bool with_data)
{
    unsigned idle = o->keepalive_idle_s, uto = o->user_timeout_s;
    if (r && r->keepalive == 0)
        idle = 0;
    else if (r && r->keepalive == 1 && !idle)
        idle = EGRESS_KEEPALIVE_IDLE_S;
    if (r && r->user_timeout_s >= 0)
        uto = (unsigned)r->user_timeout_s;
    sock_set_tcp_liveness(fd, idle, o->keepalive_interval_s, o->keepalive_count, uto);
    if (r && r->fastopen == 1 && with_data) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
    }
    return egress_mark(fd, r);
}
