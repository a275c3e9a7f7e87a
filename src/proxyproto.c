/*
 * proxyproto.c - PROXY protocol v1 and v2 header parser (proxyproto.h).
 *
 * Owns nothing: pure functions over caller-provided buffers, safe on any
 * thread. Must never touch a socket, allocate, or write to pp before a
 * header is complete (a caller may keep offering the same pp).
 *
 * Protocol: HAProxy's doc/proxy-protocol.txt ("The PROXY protocol, Versions
 * 1 & 2"), sections 2.1 (v1) and 2.2 (v2).
 */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

static const uint8_t v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V2_HDR_LEN    16
#define V2_CMD_LOCAL  0x0
#define V2_CMD_PROXY  0x1
#define V2_TCP4       0x11 /* AF_INET << 4 | STREAM */
#define V2_TCP6       0x21 /* AF_INET6 << 4 | STREAM */
#define V2_ADDR4_LEN  12
#define V2_ADDR6_LEN  36
#define V2_TLV_HDR    3
#define V1_ADDR_MAX   45 /* INET6_ADDRSTRLEN - 1 */
#define V1_FIELDS_MAX 6  /* PROXY TCP4 SRC DST SPORT DPORT */

/* Does p[0..len) start like sig (as far as both go)? */
static bool
prefix_of(const uint8_t *p, size_t len, const uint8_t *sig, size_t n)
{
    return memcmp(p, sig, len < n ? len : n) == 0;
}

/* One field of a v1 line: [start, start + len). */
struct field {
    const uint8_t *start;
    size_t len;
};

/* 0..65535 in decimal, no sign, no leading zero (section 2.1: "0" itself is a port). */
static bool
v1_port(const struct field *f, uint16_t *port)
{
    unsigned v = 0;
    if (f->len < 1 || f->len > 5 || (f->len > 1 && f->start[0] == '0'))
        return false;
    for (size_t i = 0; i < f->len; i++) {
        if (f->start[i] < '0' || f->start[i] > '9')
            return false;
        v = v * 10 + (unsigned)(f->start[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = htons((uint16_t)v);
    return true;
}

static bool
v1_addr(const struct field *f, int family, union sockaddr_inx *a)
{
    char text[V1_ADDR_MAX + 1];
    if (f->len > V1_ADDR_MAX)
        return false;
    memcpy(text, f->start, f->len);
    text[f->len] = '\0';
    memset(a, 0, sizeof(*a));
    a->sa.sa_family = (sa_family_t)family;
    void *dst = family == AF_INET ? (void *)&a->v4.sin_addr : (void *)&a->v6.sin6_addr;
    return inet_pton(family, text, dst) == 1;
}

static void
set_port(union sockaddr_inx *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET)
        a->v4.sin_port = port;
    else
        a->v6.sin6_port = port;
}

/* The line between "PROXY " and its CRLF, [p, end): split on single spaces, then checked. */
static ssize_t
v1_line(struct proxyproto *pp, const uint8_t *p, const uint8_t *end, size_t total)
{
    struct field f[V1_FIELDS_MAX];
    size_t n = 0;
    const uint8_t *s = p;
    for (const uint8_t *q = p;; q++) {
        if (q < end && *q != ' ')
            continue;
        if (n == V1_FIELDS_MAX - 1)
            return PROXYPROTO_ERR_V1;
        f[n].start = s;
        f[n].len = (size_t)(q - s);
        /* Section 2.1: "UNKNOWN" may be followed by anything, which is ignored. */
        if (n == 0 && f[0].len == 7 && memcmp(s, "UNKNOWN", 7) == 0) {
            memset(pp, 0, sizeof(*pp));
            pp->version = 1;
            pp->local = 1;
            return (ssize_t)total;
        }
        if (f[n].len == 0)
            return PROXYPROTO_ERR_V1;
        n++;
        if (q == end)
            break;
        s = q + 1;
    }
    int family;
    if (n != 5)
        return PROXYPROTO_ERR_V1;
    if (f[0].len == 4 && memcmp(f[0].start, "TCP4", 4) == 0)
        family = AF_INET;
    else if (f[0].len == 4 && memcmp(f[0].start, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return PROXYPROTO_ERR_V1;
    union sockaddr_inx src, dst;
    uint16_t sport, dport;
    if (!v1_addr(&f[1], family, &src) || !v1_addr(&f[2], family, &dst) || !v1_port(&f[3], &sport) ||
        !v1_port(&f[4], &dport))
        return PROXYPROTO_ERR_V1;
    set_port(&src, sport);
    set_port(&dst, dport);
    memset(pp, 0, sizeof(*pp));
    pp->version = 1;
    pp->src = src;
    pp->dst = dst;
    return (ssize_t)total;
}

/* Section 2.1: one US-ASCII line; anything but printable bytes before its CRLF breaks it. */
static ssize_t
v1_feed(struct proxyproto *pp, const uint8_t *p, size_t len)
{
    /* The CR may be at most the 106th byte: its LF is then the 107th. */
    size_t scan = len < PROXYPROTO_V1_MAX - 1 ? len : PROXYPROTO_V1_MAX - 1;
    for (size_t i = sizeof(v1_sig); i < scan; i++) {
        if (p[i] == '\r') {
            if (i + 1 == len)
                return 0;
            if (p[i + 1] != '\n')
                return PROXYPROTO_ERR_V1;
            return v1_line(pp, p + sizeof(v1_sig), p + i, i + 2);
        }
        if (p[i] < 0x20 || p[i] > 0x7E)
            return PROXYPROTO_ERR_V1;
    }
    return len >= PROXYPROTO_V1_MAX - 1 ? PROXYPROTO_ERR_V1_LEN : 0;
}

static void
v2_addrs(struct proxyproto *pp, uint8_t fam, const uint8_t *a)
{
    memset(pp, 0, sizeof(*pp));
    pp->version = 2;
    if (fam == V2_TCP4) {
        pp->src.v4.sin_family = pp->dst.v4.sin_family = AF_INET;
        memcpy(&pp->src.v4.sin_addr, a, 4);
        memcpy(&pp->dst.v4.sin_addr, a + 4, 4);
        memcpy(&pp->src.v4.sin_port, a + 8, 2);
        memcpy(&pp->dst.v4.sin_port, a + 10, 2);
    } else {
        pp->src.v6.sin6_family = pp->dst.v6.sin6_family = AF_INET6;
        memcpy(&pp->src.v6.sin6_addr, a, 16);
        memcpy(&pp->dst.v6.sin6_addr, a + 16, 16);
        memcpy(&pp->src.v6.sin6_port, a + 32, 2);
        memcpy(&pp->dst.v6.sin6_port, a + 34, 2);
    }
}

/* Section 2.2. Each field is judged as soon as it is in. */
static ssize_t
v2_feed(struct proxyproto *pp, const uint8_t *p, size_t len)
{
    if (len <= 12)
        return 0;
    if (p[12] >> 4 != 2)
        return PROXYPROTO_ERR_V2_VER;
    uint8_t cmd = p[12] & 0x0F;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return PROXYPROTO_ERR_V2_CMD;
    if (len <= 13)
        return 0;
    uint8_t fam = p[13];
    /* A LOCAL's family is ignored (section 2.2): it carries no client. */
    if (cmd == V2_CMD_PROXY && fam != V2_TCP4 && fam != V2_TCP6)
        return PROXYPROTO_ERR_V2_FAM;
    if (len < V2_HDR_LEN)
        return 0;
    size_t body = (size_t)p[14] << 8 | p[15];
    size_t addr_len = cmd == V2_CMD_LOCAL ? 0 : fam == V2_TCP4 ? V2_ADDR4_LEN : V2_ADDR6_LEN;
    if (body < addr_len || V2_HDR_LEN + body > PROXYPROTO_V2_MAX)
        return PROXYPROTO_ERR_V2_LEN;
    size_t total = V2_HDR_LEN + body;
    if (len < total)
        return 0;
    if (cmd == V2_CMD_LOCAL) {
        memset(pp, 0, sizeof(*pp));
        pp->version = 2;
        pp->local = 1;
        return (ssize_t)total;
    }
    /* Section 2.2.x: the TLVs fill the rest exactly; their contents are not ours to judge. */
    for (size_t off = V2_HDR_LEN + addr_len; off < total;) {
        if (total - off < V2_TLV_HDR)
            return PROXYPROTO_ERR_V2_TLV;
        size_t vlen = (size_t)p[off + 1] << 8 | p[off + 2];
        if (total - off - V2_TLV_HDR < vlen)
            return PROXYPROTO_ERR_V2_TLV;
        off += V2_TLV_HDR + vlen;
    }
    v2_addrs(pp, fam, p + V2_HDR_LEN);
    return (ssize_t)total;
}

ssize_t
proxyproto_feed(struct proxyproto *pp, const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0;
    if (prefix_of(p, len, v2_sig, sizeof(v2_sig)))
        return len < sizeof(v2_sig) ? 0 : v2_feed(pp, p, len);
    if (prefix_of(p, len, v1_sig, sizeof(v1_sig)))
        return len < sizeof(v1_sig) ? 0 : v1_feed(pp, p, len);
    return PROXYPROTO_ERR_SIG;
}
