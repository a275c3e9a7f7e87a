/*
 * socks.c - the client side of SOCKS4 (and 4a), SOCKS5 (RFC 1928) and RFC 1929, and the two
 * server-side parsers (greeting, request) of the target's SOCKS5 front (`serve --socks5`).
 *
 * Pure: encodes requests into caller buffers and parses replies and requests from byte
 * buffers; never touches a socket. Called by worker and target threads; no state of its own.
 */
#include "socksload.h"

#include <errno.h>
#include <string.h>

static bool
is_v5(const struct url *u)
{
    return u->scheme == URL_SOCKS5 || u->scheme == URL_SOCKS5H;
}

size_t
socks_greeting(uint8_t *out, const struct url *u)
{
    /* RFC 1928 section 3: offer no-auth, and username/password when we have a user. */
    out[0] = 5;
    if (u->has_user) {
        out[1] = 2;
        out[2] = 0x00;
        out[3] = 0x02;
        return 4;
    }
    out[1] = 1;
    out[2] = 0x00;
    return 3;
}

size_t
socks_auth_request(uint8_t *out, const struct url *u, const char *user)
{
    /* RFC 1929 section 2: VER=1 ULEN UNAME PLEN PASSWD */
    const char *name = user ? user : u->user;
    size_t ul = strlen(name), pl = strlen(u->pass), n = 0;

    out[n++] = 1;
    out[n++] = (uint8_t)ul;
    memcpy(out + n, name, ul);
    n += ul;
    out[n++] = (uint8_t)pl;
    memcpy(out + n, u->pass, pl);
    return n + pl;
}

static size_t
put_dest5(uint8_t *out, const struct socks_dest *d)
{
    size_t n = 0;

    if (d->type == URL_HOST_IPV4) {
        out[n++] = 1;
        memcpy(out + n, d->addr, 4);
        n += 4;
    } else if (d->type == URL_HOST_IPV6) {
        out[n++] = 4;
        memcpy(out + n, d->addr, 16);
        n += 16;
    } else {
        size_t l = strlen(d->name);
        out[n++] = 3;
        out[n++] = (uint8_t)l;
        memcpy(out + n, d->name, l);
        n += l;
    }
    out[n++] = (uint8_t)(d->port >> 8);
    out[n++] = (uint8_t)d->port;
    return n;
}

size_t
socks_request(uint8_t *out, const struct url *u, uint8_t cmd, const struct socks_dest *d)
{
    size_t n = 0;

    if (is_v5(u)) {
        out[n++] = 5;
        out[n++] = cmd;
        out[n++] = 0;
        return n + put_dest5(out + n, d);
    }
    /* SOCKS4: VN=4 CD DSTPORT DSTIP USERID NUL; 4a: DSTIP 0.0.0.1, then the name NUL. */
    out[n++] = 4;
    out[n++] = cmd;
    out[n++] = (uint8_t)(d->port >> 8);
    out[n++] = (uint8_t)d->port;
    if (d->type == URL_HOST_NAME) {
        static const uint8_t invalid[4] = {0, 0, 0, 1};
        memcpy(out + n, invalid, 4);
    } else {
        memcpy(out + n, d->addr, 4);
    }
    n += 4;
    size_t ul = u->has_user ? strlen(u->user) : 0;
    memcpy(out + n, u->user, ul);
    n += ul;
    out[n++] = 0;
    if (d->type == URL_HOST_NAME) {
        size_t l = strlen(d->name);
        memcpy(out + n, d->name, l + 1);
        n += l + 1;
    }
    return n;
}

size_t
socks_udp_header(uint8_t *out, const struct socks_dest *d)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = 0; /* FRAG: standalone datagram */
    return 3 + put_dest5(out + 3, d);
}

/* A two-byte reply: version byte ver, then the code. */
static ssize_t
parse_two(const uint8_t *p, size_t len, uint8_t ver, int *code)
{
    if (len < 2)
        return 0;
    if (p[0] != ver)
        return -EPROTO;
    *code = p[1];
    return 2;
}

ssize_t
socks_parse_method(const uint8_t *p, size_t len, int *code)
{
    return parse_two(p, len, 5, code);
}

ssize_t
socks_parse_auth(const uint8_t *p, size_t len, int *code)
{
    return parse_two(p, len, 1, code); /* RFC 1929: sub-negotiation version 1 */
}

/*
 * Bytes of ATYP, address and port starting at p (RFC 1928 section 5), or -EPROTO for an
 * unknown ATYP. p must hold 2 bytes (ATYP 3's name length). Whether the buffer holds them all
 * is the caller's question: a reply may still be arriving, a datagram may not.
 */
static ssize_t
addr_span(const uint8_t *p)
{
    switch (p[0]) {
    case 1:
        return 1 + 4 + 2;
    case 4:
        return 1 + 16 + 2;
    case 3:
        return 1 + 1 + (ssize_t)p[1] + 2;
    default:
        return -EPROTO;
    }
}

ssize_t
socks_parse_reply(const struct url *u, const uint8_t *p, size_t len, int *code,
                  struct sockaddr_storage *bnd)
{
    size_t need;

    if (!is_v5(u)) {
        /* SOCKS4 reply: VN=0 CD DSTPORT DSTIP, 8 bytes. */
        if (len < 8)
            return 0;
        if (p[0] != 0)
            return -EPROTO;
        *code = p[1];
        return 8;
    }
    if (len < 5)
        return 0;
    if (p[0] != 5 || p[2] != 0)
        return -EPROTO;
    ssize_t span = addr_span(p + 3);
    if (span < 0)
        return span;
    need = 3 + (size_t)span;
    if (len < need)
        return 0;
    *code = p[1];
    if (bnd) {
        memset(bnd, 0, sizeof(*bnd));
        if (p[3] == 1) {
            struct sockaddr_in *a = (struct sockaddr_in *)bnd;
            a->sin_family = AF_INET;
            memcpy(&a->sin_addr, p + 4, 4);
            memcpy(&a->sin_port, p + 8, 2);
        } else if (p[3] == 4) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)bnd;
            a->sin6_family = AF_INET6;
            memcpy(&a->sin6_addr, p + 4, 16);
            memcpy(&a->sin6_port, p + 20, 2);
        }
    }
    return (ssize_t)need;
}

ssize_t
socks_parse_udp_header(const uint8_t *p, size_t len)
{
    size_t need;

    if (len < 5 || p[0] != 0 || p[1] != 0 || p[2] != 0)
        return -EPROTO;
    ssize_t span = addr_span(p + 3);
    if (span < 0)
        return span;
    need = 3 + (size_t)span;
    return len < need ? -EPROTO : (ssize_t)need;
}

ssize_t
socks_parse_greeting(const uint8_t *p, size_t len, bool *noauth)
{
    /* RFC 1928 section 3: VER=5 NMETHODS METHODS (1 to 255 of them). */
    if (len >= 1 && p[0] != 5)
        return -EPROTO;
    if (len >= 2 && p[1] == 0)
        return -EPROTO;
    if (len < 2 || len < 2u + p[1])
        return 0;
    *noauth = memchr(p + 2, 0x00, p[1]) != NULL;
    return 2 + (ssize_t)p[1];
}

ssize_t
socks_parse_request(const uint8_t *p, size_t len, int *cmd)
{
    /* RFC 1928 section 4: VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT. */
    if (len >= 1 && p[0] != 5)
        return -EPROTO;
    if (len >= 3 && p[2] != 0)
        return -EPROTO;
    if (len >= 4 && p[3] != 1 && p[3] != 3 && p[3] != 4)
        return -EPROTO;
    if (len < 5)
        return 0;
    if (p[3] == 3 && p[4] == 0)
        return -EPROTO; /* an empty name names nothing */
    size_t need = 3 + (size_t)addr_span(p + 3);
    if (len < need)
        return 0;
    *cmd = p[1];
    return (ssize_t)need;
}

bool
socks_reply_ok(const struct url *u, int code)
{
    return is_v5(u) ? code == 0 : code == 90;
}
