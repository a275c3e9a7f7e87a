/*
 * httpconnect.c - HTTP CONNECT request parser and response encoder
 * (httpconnect.h).
 *
 * Owns nothing: pure functions over caller-provided buffers, safe on any
 * thread. Must never touch a socket, allocate, or write to hc or cred before
 * a header is complete (a caller may keep offering the same ones); the
 * decoded password lives on its stack only until it is copied out, and is
 * wiped there on every return.
 *
 * Protocol: RFC 9112 (message syntax), RFC 9110 sections 5.6.2 (tokens),
 * 9.3.6 (CONNECT) and 11.7 (proxy authentication), RFC 7617 (Basic).
 */
#include "httpconnect.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define METHOD_MAX 32 /* a longer token is no CONNECT: answered 405 without its end */

static const char connect_m[] = "CONNECT";

/* RFC 9110 section 5.6.2: tchar. */
static bool
is_tchar(uint8_t b)
{
    if ((b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z'))
        return true;
    return b != 0 && strchr("!#$%&'*+-.^_`|~", b) != NULL;
}

/* A byte no header line may hold (RFC 9112 section 5.5: CTLs but HTAB). */
static bool
is_ctl(uint8_t b)
{
    return (b < 0x20 && b != '\t') || b == 0x7F;
}

static bool
name_is(const uint8_t *p, size_t n, const char *lower)
{
    if (strlen(lower) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (b >= 'A' && b <= 'Z')
            b = (uint8_t)(b - 'A' + 'a');
        if (b != (uint8_t)lower[i])
            return false;
    }
    return true;
}

/* The method, judged as soon as its space is in (or it is too long to be CONNECT). */
static ssize_t
method_check(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ' ') {
            if (i == sizeof(connect_m) - 1 && memcmp(p, connect_m, i) == 0)
                return 0;
            return i == 0 ? HTTPCONNECT_ERR_BAD : HTTPCONNECT_ERR_METHOD;
        }
        if (!is_tchar(p[i]))
            return HTTPCONNECT_ERR_BAD;
        if (i == METHOD_MAX)
            return HTTPCONNECT_ERR_METHOD;
    }
    return 0;
}

/* A port: 1-5 digits, 1..65535. */
static bool
parse_port(const uint8_t *p, size_t n, uint16_t *port)
{
    unsigned v = 0;
    if (n < 1 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* RFC 9112 section 3.2.3: authority-form, host ":" port, an IPv6 literal in brackets. */
static bool
parse_target(const uint8_t *p, size_t n, struct socks_dest *d)
{
    const uint8_t *host, *colon;
    size_t hlen;
    if (n > 0 && p[0] == '[') {
        const uint8_t *rb = memchr(p, ']', n);
        if (!rb || rb + 1 == p + n || rb[1] != ':')
            return false;
        host = p + 1;
        hlen = (size_t)(rb - host);
        colon = rb + 1;
        /* Brackets hold an IPv6 literal and nothing else (host names have no ':'). */
        if (hlen == 0 || !memchr(host, ':', hlen))
            return false;
    } else {
        colon = memrchr(p, ':', n);
        if (!colon)
            return false;
        host = p;
        hlen = (size_t)(colon - p);
        if (hlen == 0 || memchr(host, ':', hlen))
            return false;
    }
    uint16_t port;
    if (!parse_port(colon + 1, (size_t)(p + n - colon - 1), &port))
        return false;
    struct socks_dest t;
    memset(&t, 0, sizeof(t)); /* the same bytes for the same request, whatever the stack held */
    if (socks_dest_set_name(&t, host, hlen) < 0)
        return false;
    t.port = port;
    *d = t;
    return true;
}

/* "CONNECT" SP authority SP HTTP-version (RFC 9112 section 3). */
static ssize_t
request_line(struct httpconnect *st, const uint8_t *p, size_t n)
{
    static const char ver[] = "HTTP/";
    size_t m = sizeof(connect_m); /* past "CONNECT " */
    for (size_t i = 0; i < n; i++)
        if (is_ctl(p[i]) || p[i] == '\t')
            return HTTPCONNECT_ERR_BAD;
    const uint8_t *sp = memchr(p + m, ' ', n - m);
    if (!sp)
        return HTTPCONNECT_ERR_BAD;
    const uint8_t *v = sp + 1;
    size_t vlen = (size_t)(p + n - v);
    if (vlen != 8 || memcmp(v, ver, 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return HTTPCONNECT_ERR_BAD;
    if (v[5] != '1')
        return HTTPCONNECT_ERR_VERSION;
    st->minor = (uint8_t)(v[7] - '0');
    if (!parse_target(p + m, (size_t)(sp - (p + m)), &st->dest))
        return HTTPCONNECT_ERR_BAD;
    return 0;
}

static int
b64_value(uint8_t b)
{
    if (b >= 'A' && b <= 'Z')
        return b - 'A';
    if (b >= 'a' && b <= 'z')
        return b - 'a' + 26;
    if (b >= '0' && b <= '9')
        return b - '0' + 52;
    if (b == '+')
        return 62;
    if (b == '/')
        return 63;
    return -1;
}

/* RFC 4648 section 4, padding optional. Returns the decoded length or -1. */
static ssize_t
b64_decode(const uint8_t *p, size_t n, uint8_t *out, size_t cap)
{
    size_t pad = 0;
    while (pad < 2 && n > 0 && p[n - 1] == '=') {
        n--;
        pad++;
    }
    if ((pad && (n + pad) % 4) || n % 4 == 1 || n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > cap)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(p[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (ssize_t)o;
}

/* RFC 7617 section 2: "Basic" 1*SP token68 of base64("user:password"). */
static enum httpconnect_auth
basic(const uint8_t *v, size_t n, struct auth_cred *cr)
{
    uint8_t raw[AUTH_REQUEST_MAX];
    enum httpconnect_auth res = HTTPCONNECT_AUTH_BAD;
    if (n < 5 || !name_is(v, 5, "basic") || (n > 5 && v[5] != ' '))
        return HTTPCONNECT_AUTH_NONE;
    size_t i = 5;
    while (i < n && v[i] == ' ')
        i++;
    ssize_t len = b64_decode(v + i, n - i, raw, sizeof(raw));
    if (len < 0)
        goto out;
    const uint8_t *colon = memchr(raw, ':', (size_t)len);
    if (!colon || memchr(raw, 0, (size_t)len))
        goto out;
    size_t ulen = (size_t)(colon - raw), plen = (size_t)len - ulen - 1;
    if (ulen < 1 || ulen > 255 || plen < 1 || plen > 255)
        goto out;
    cr->ulen = (uint8_t)ulen;
    cr->plen = (uint8_t)plen;
    memcpy(cr->user, raw, ulen);
    cr->user[ulen] = '\0';
    memcpy(cr->pass, colon + 1, plen);
    cr->pass[plen] = '\0';
    res = HTTPCONNECT_AUTH_BASIC;
out:
    explicit_bzero(raw, sizeof(raw));
    return res;
}

/* What the header lines have said so far. */
struct seen {
    unsigned host, pauth;
};

/* field-name ":" OWS field-value OWS (RFC 9112 section 5). */
static ssize_t
header_line(struct httpconnect *st, struct auth_cred *cr, struct seen *s, const uint8_t *p,
            size_t n)
{
    size_t k = 0;
    while (k < n && is_tchar(p[k]))
        k++;
    /* No space before the colon, no folded line (section 5.1, 5.2). */
    if (k == 0 || k == n || p[k] != ':')
        return HTTPCONNECT_ERR_BAD;
    for (size_t i = k + 1; i < n; i++)
        if (is_ctl(p[i]))
            return HTTPCONNECT_ERR_BAD;
    const uint8_t *v = p + k + 1, *e = p + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t vlen = (size_t)(e - v);
    if (name_is(p, k, "host")) {
        if (++s->host > 1)
            return HTTPCONNECT_ERR_BAD;
    } else if (name_is(p, k, "proxy-authorization")) {
        if (++s->pauth > 1)
            return HTTPCONNECT_ERR_BAD;
        st->auth = (uint8_t)basic(v, vlen, cr);
    } else if (name_is(p, k, "transfer-encoding")) {
        return HTTPCONNECT_ERR_BAD;
    } else if (name_is(p, k, "content-length")) {
        if (vlen != 1 || v[0] != '0')
            return HTTPCONNECT_ERR_BAD;
    }
    return 0;
}

ssize_t
httpconnect_feed(struct httpconnect *hc, struct auth_cred *cred, const uint8_t *p, size_t len)
{
    struct httpconnect st;
    struct auth_cred cr;
    memset(&st, 0, sizeof(st));
    memset(&cr, 0, sizeof(cr));
    struct seen s = {0};
    size_t lim = len < HTTPCONNECT_HEADER_MAX ? len : HTTPCONNECT_HEADER_MAX;
    ssize_t r = method_check(p, lim);
    if (r < 0)
        return r;
    r = 0;
    for (size_t off = 0, line = 0;; line++) {
        const uint8_t *lf = memchr(p + off, '\n', lim - off);
        if (!lf) {
            r = len >= HTTPCONNECT_HEADER_MAX ? HTTPCONNECT_ERR_TOO_LONG : 0;
            break;
        }
        size_t end = (size_t)(lf - p);
        size_t n = end - off;
        if (n > 0 && p[end - 1] == '\r')
            n--;
        if (line == 0) {
            r = request_line(&st, p + off, n);
        } else if (n == 0) {
            /* RFC 9112 section 3.2: an HTTP/1.1 request without Host is answered 400. */
            if (st.minor >= 1 && s.host == 0) {
                r = HTTPCONNECT_ERR_BAD;
                break;
            }
            *hc = st;
            if (st.auth == HTTPCONNECT_AUTH_BASIC)
                *cred = cr;
            r = (ssize_t)end + 1;
            break;
        } else {
            r = header_line(&st, &cr, &s, p + off, n);
        }
        if (r < 0)
            break;
        off = end + 1;
    }
    explicit_bzero(&cr, sizeof(cr));
    return r;
}

unsigned
httpconnect_status(uint8_t rep)
{
    switch (rep) {
    case SOCKS5_REP_SUCCEEDED:
        return 200;
    case SOCKS5_REP_NOT_ALLOWED:
        return 403;
    case SOCKS5_REP_NET_UNREACH:
    case SOCKS5_REP_HOST_UNREACH:
    case SOCKS5_REP_REFUSED:
        return 502;
    case SOCKS5_REP_TTL_EXPIRED:
        return 504;
    case SOCKS5_REP_CMD_UNSUPP:
        return 405;
    case SOCKS5_REP_ATYP_UNSUPP:
        return 400;
    default:
        return 503;
    }
}

static const char *
reason(unsigned status)
{
    switch (status) {
    case 200:
        return "Connection established";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 405:
        return "Method Not Allowed";
    case 407:
        return "Proxy Authentication Required";
    case 431:
        return "Request Header Fields Too Large";
    case 502:
        return "Bad Gateway";
    case 504:
        return "Gateway Timeout";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return NULL;
    }
}

size_t
httpconnect_response(uint8_t *out, unsigned status)
{
    const char *extra = "";
    if (status == 200)
        return (size_t)snprintf((char *)out, HTTPCONNECT_RESPONSE_MAX,
                                "HTTP/1.1 200 Connection established\r\n\r\n");
    if (!reason(status))
        status = 503;
    if (status == 405)
        extra = "Allow: CONNECT\r\n";
    else if (status == 407)
        extra = "Proxy-Authenticate: Basic realm=\"ringsocks\"\r\n";
    int n = snprintf((char *)out, HTTPCONNECT_RESPONSE_MAX,
                     "HTTP/1.1 %u %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n", status,
                     reason(status), extra);
    return (size_t)n;
}
