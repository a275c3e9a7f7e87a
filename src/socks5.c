/*
 * socks5.c - SOCKS5 (RFC 1928) handshake parser and reply encoder.
 *
 * Owns nothing: pure functions over caller-provided buffers, safe on any
 * thread. Must never touch a socket or allocate.
 */
#include "socks5.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "hostname.h"

int
socks_dest_set_name(struct socks_dest *d, const uint8_t *p, size_t len)
{
    char text[256];
    if (len == 0 || len >= sizeof(text) || memchr(p, 0, len))
        return -HOSTNAME_BAD_CHAR;
    memcpy(text, p, len);
    text[len] = '\0';
    /* Checked in a copy: d is written only once the answer is known. */
    char norm[HOSTNAME_MAX + 1];
    int n = hostname_norm(text, len, norm);
    if (n > 0) {
        d->atyp = SOCKS5_ATYP_DOMAIN;
        d->name_len = (uint8_t)n;
        memcpy(d->u.name, norm, (size_t)n + 1);
        return 0;
    }
    /* Only what a host name cannot be may be an address: an all-digit last label
     * (IPv4) or a ':' (IPv6). A port the literal carries ("127.0.0.1:25", "[::1]:25")
     * is no address: inet_pton refuses it. */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } a;
    if (n == -HOSTNAME_NUMERIC && inet_pton(AF_INET, text, &a.v4) == 1) {
        d->atyp = SOCKS5_ATYP_IPV4;
        d->u.v4 = a.v4;
    } else if (n == -HOSTNAME_BAD_CHAR && inet_pton(AF_INET6, text, &a.v6) == 1) {
        d->atyp = SOCKS5_ATYP_IPV6;
        d->u.v6 = a.v6;
    } else {
        return n;
    }
    d->name_len = 0;
    return 0;
}

int
socks_bad_name(const uint8_t *p, size_t len, char name[256], uint16_t *port, uint8_t *cmd)
{
    const uint8_t *n, *end;
    if (len >= 5 && p[0] == SOCKS5_VERSION && p[3] == SOCKS5_ATYP_DOMAIN && len >= 7u + p[4]) {
        n = p + 5;
        end = n + p[4];
        *port = (uint16_t)(end[0] << 8 | end[1]);
        *cmd = p[1];
    } else if (len >= 9 && p[0] == 4) {
        /* VN CD DSTPORT DSTIP USERID NUL HOST NUL */
        const uint8_t *uid_end = memchr(p + 8, 0, len - 8);
        if (!uid_end)
            return -1;
        n = uid_end + 1;
        end = memchr(n, 0, len - (size_t)(n - p));
        if (!end)
            return -1;
        *port = (uint16_t)(p[2] << 8 | p[3]);
        *cmd = p[1] == 2 ? SOCKS5_CMD_BIND : SOCKS5_CMD_CONNECT;
    } else {
        return -1;
    }
    size_t k = (size_t)(end - n);
    const uint8_t *nul = memchr(n, 0, k);
    if (nul)
        k = (size_t)(nul - n);
    if (k > 255)
        k = 255;
    memcpy(name, n, k);
    name[k] = '\0';
    return 0;
}

/*
 * DST.ADDR (alen bytes at a, of type atyp) and the DST.PORT after it into d, as
 * requests and UDP headers carry them. DST.PORT is the only port, whatever a name
 * looks like. 0, or -1 with d untouched for a name no host can have.
 */
static int
dest_read(struct socks_dest *d, uint8_t atyp, const uint8_t *a, size_t alen)
{
    if (atyp == SOCKS5_ATYP_DOMAIN) {
        if (socks_dest_set_name(d, a, alen) < 0)
            return -1;
    } else {
        d->atyp = atyp;
        d->name_len = 0;
        if (atyp == SOCKS5_ATYP_IPV4)
            memcpy(&d->u.v4, a, 4);
        else
            memcpy(&d->u.v6, a, 16);
    }
    d->port = (uint16_t)(a[alen] << 8 | a[alen + 1]);
    return 0;
}

void
socks5_init(struct socks5 *st)
{
    memset(st, 0, sizeof(*st));
    st->phase = SOCKS5_PHASE_GREETING;
    st->method = SOCKS5_METHOD_REJECT;
}

/* Section 3: VER NMETHODS METHODS[NMETHODS]. */
static ssize_t
parse_greeting(struct socks5 *st, const uint8_t *p, size_t len)
{
    if (len < 1)
        return 0;
    if (p[0] != SOCKS5_VERSION)
        return SOCKS5_ERR_CLOSE;
    if (len < 2)
        return 0;
    size_t n = p[1];
    if (len < 2 + n)
        return 0;
    st->offered = 0;
    for (size_t i = 0; i < n; i++)
        if (p[2 + i] < 32)
            st->offered |= 1u << p[2 + i];
    /* NMETHODS == 0 offers nothing: no acceptable method. The server's order decides,
     * not the client's (section 3: "the server selects from one of the methods"). */
    if (st->auth_required) {
        for (unsigned i = 0; i < st->n_methods; i++) {
            uint8_t m = st->methods[i];
            if (st->offered & (1u << m)) {
                st->method = m;
                st->phase = m == SOCKS5_METHOD_GSSAPI ? SOCKS5_PHASE_GSS : SOCKS5_PHASE_AUTH;
                return (ssize_t)(2 + n);
            }
        }
        return SOCKS5_ERR_NO_METHOD;
    }
    if (!(st->offered & (1u << SOCKS5_METHOD_NONE)))
        return SOCKS5_ERR_NO_METHOD;
    st->method = SOCKS5_METHOD_NONE;
    st->phase = SOCKS5_PHASE_REQUEST;
    return (ssize_t)(2 + n);
}

/* Section 4: VER CMD RSV ATYP DST.ADDR DST.PORT. */
static ssize_t
parse_request(struct socks5 *st, const uint8_t *p, size_t len)
{
    if (len < 1)
        return 0;
    if (p[0] != SOCKS5_VERSION)
        return -SOCKS5_REP_GENERAL;
    if (len < 4)
        return 0;
    uint8_t cmd = p[1];
    uint8_t atyp = p[3];
    size_t alen;
    size_t aoff = 4;

    switch (atyp) {
    case SOCKS5_ATYP_IPV4:
        alen = 4;
        break;
    case SOCKS5_ATYP_IPV6:
        alen = 16;
        break;
    case SOCKS5_ATYP_DOMAIN:
        if (len < 5)
            return 0;
        /* An empty name is refused like any other impossible name, once the
         * request is whole (socks_dest_set_name() below). */
        alen = p[4];
        aoff = 5;
        break;
    default:
        return -SOCKS5_REP_ATYP_UNSUPP;
    }
    size_t total = aoff + alen + 2;
    if (len < total)
        return 0;
    /*
     * The whole request is read before the command is judged, so an
     * unsupported command is answered in step with the client.
     */
    if (cmd != SOCKS5_CMD_CONNECT && cmd != SOCKS5_CMD_BIND && cmd != SOCKS5_CMD_UDP)
        return -SOCKS5_REP_CMD_UNSUPP;

    /* The name is checked before any rule, hosts table or resolver sees it. */
    if (dest_read(&st->dest, atyp, p + aoff, alen) < 0)
        return SOCKS5_ERR_BAD_NAME;
    st->cmd = cmd;
    st->phase = SOCKS5_PHASE_DONE;
    return (ssize_t)total;
}

ssize_t
socks5_feed(struct socks5 *st, const uint8_t *p, size_t len)
{
    switch (st->phase) {
    case SOCKS5_PHASE_GREETING:
        return parse_greeting(st, p, len);
    case SOCKS5_PHASE_REQUEST:
        return parse_request(st, p, len);
    case SOCKS5_PHASE_AUTH:
    case SOCKS5_PHASE_GSS:
    case SOCKS5_PHASE_DONE:
        break;
    }
    return SOCKS5_ERR_CLOSE;
}

void
socks5_set_methods(struct socks5 *st, const uint8_t *methods, unsigned n)
{
    st->n_methods = 0;
    for (unsigned i = 0; i < n && st->n_methods < SOCKS5_AUTH_METHODS; i++)
        if (methods[i] == SOCKS5_METHOD_GSSAPI || methods[i] == SOCKS5_METHOD_PASSWORD)
            st->methods[st->n_methods++] = methods[i];
    st->auth_required = st->n_methods > 0;
}

void
socks5_set_password_required(struct socks5 *st, bool required)
{
    static const uint8_t password = SOCKS5_METHOD_PASSWORD;
    socks5_set_methods(st, &password, required ? 1 : 0);
}

size_t
socks5_method_reply(uint8_t *out, uint8_t method)
{
    out[0] = SOCKS5_VERSION;
    out[1] = method;
    return 2;
}

/*
 * ATYP, address and port of sa at out[0..], as replies and UDP headers carry
 * them (section 5). An IPv4-mapped IPv6 address (a dual-stack socket's view
 * of an IPv4 peer) is written as IPv4, the form the client knows it by; NULL
 * or another family is 0.0.0.0:0. Returns 7 or 19.
 */
static size_t
put_addr(uint8_t *out, const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            out[0] = SOCKS5_ATYP_IPV4;
            memcpy(out + 1, &s6->sin6_addr.s6_addr[12], 4);
            memcpy(out + 5, &s6->sin6_port, 2);
            return 7;
        }
        out[0] = SOCKS5_ATYP_IPV6;
        memcpy(out + 1, &s6->sin6_addr, 16);
        memcpy(out + 17, &s6->sin6_port, 2);
        return 19;
    }
    out[0] = SOCKS5_ATYP_IPV4;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(out + 1, &s4->sin_addr, 4);
        memcpy(out + 5, &s4->sin_port, 2);
    } else {
        memset(out + 1, 0, 6);
    }
    return 7;
}

size_t
socks5_reply(uint8_t *out, uint8_t rep, const struct sockaddr *bnd)
{
    out[0] = SOCKS5_VERSION;
    out[1] = rep;
    out[2] = 0;
    return 3 + put_addr(out + 3, bnd);
}

uint8_t
socks5_rep_from_errno(int neg_errno)
{
    switch (-neg_errno) {
    case ECONNREFUSED:
        return SOCKS5_REP_REFUSED;
    case ENETUNREACH:
    case ENETDOWN:
        return SOCKS5_REP_NET_UNREACH;
    case EHOSTUNREACH:
    case EHOSTDOWN:
    case ENOENT:  /* name does not exist */
    case ENODATA: /* name has no address of a usable family */
        return SOCKS5_REP_HOST_UNREACH;
    case ETIMEDOUT:
    case ECANCELED: /* our connect timeout cancelled the attempt */
        return SOCKS5_REP_TTL_EXPIRED;
    case EAFNOSUPPORT:
        return SOCKS5_REP_ATYP_UNSUPP;
    case EACCES:
    case EPERM:
        return SOCKS5_REP_NOT_ALLOWED;
    default:
        return SOCKS5_REP_GENERAL;
    }
}

/* Section 7: RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA. */
ssize_t
socks5_udp_parse(const uint8_t *p, size_t len, struct socks_dest *dest, uint8_t *frag)
{
    if (len < 4)
        return -1;
    if (p[0] != 0 || p[1] != 0)
        return -1;
    uint8_t atyp = p[3];
    size_t alen;
    size_t aoff = 4;

    switch (atyp) {
    case SOCKS5_ATYP_IPV4:
        alen = 4;
        break;
    case SOCKS5_ATYP_IPV6:
        alen = 16;
        break;
    case SOCKS5_ATYP_DOMAIN:
        if (len < 5)
            return -1;
        alen = p[4];
        aoff = 5;
        if (alen == 0)
            return -1;
        break;
    default:
        return -1;
    }
    size_t hlen = aoff + alen + 2;
    if (len < hlen)
        return -1;
    if (dest_read(dest, atyp, p + aoff, alen) < 0)
        return -1;
    *frag = p[2];
    return (ssize_t)hlen;
}

size_t
socks5_udp_header(uint8_t *out, const struct sockaddr *src)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = 0; /* FRAG: we never fragment */
    return 3 + put_addr(out + 3, src);
}
