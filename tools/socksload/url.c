/*
 * url.c - proxy URL and HOST:PORT parsing, literal address conversion, loopback test.
 *
 * Pure: no sockets, no name resolution (only the literal name "localhost" maps to the
 * loopback address). Called from main.c at start-up and from the unit test.
 */
#include "socksload.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
fail(char *err, size_t errlen, const char *msg, const char *s)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", msg, s);
    return -EINVAL;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes p[0..n) into out (URL_FIELD_MAX + 1 bytes); RFC 3986 section 2.1. */
static int
decode(char *out, const char *p, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -EINVAL;
            int h = hexval(p[i + 1]), l = hexval(p[i + 2]);
            if (h < 0 || l < 0)
                return -EINVAL;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0 || o >= URL_FIELD_MAX)
            return -EINVAL;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int
parse_port(const char *p, size_t n, uint16_t *port)
{
    unsigned long v = 0;

    if (n == 0 || n > 5)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -EINVAL;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

static bool
valid_name(const char *h)
{
    size_t n = strlen(h);

    if (n == 0 || n > URL_FIELD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return false;
    }
    return true;
}

/* host[:port] or [v6][:port] in p[0..n); port stays untouched when absent and !need_port. */
static int
parse_host(const char *p, size_t n, char *host, enum url_host *type, uint16_t *port, bool need_port,
           char *err, size_t errlen)
{
    const char *hs, *rest;
    size_t hn;
    struct in6_addr a6;
    struct in_addr a4;

    if (n == 0)
        return fail(err, errlen, "missing host", "");
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close)
            return fail(err, errlen, "missing ']' after IPv6 address", p);
        hs = p + 1;
        hn = (size_t)(close - hs);
        rest = close + 1;
        if (hn == 0 || hn > 45)
            return fail(err, errlen, "bad IPv6 address", p);
        memcpy(host, hs, hn);
        host[hn] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return fail(err, errlen, "bad IPv6 address", host);
        *type = URL_HOST_IPV6;
    } else {
        const char *colon = memchr(p, ':', n);
        hs = p;
        hn = colon ? (size_t)(colon - p) : n;
        rest = p + hn;
        if (hn == 0)
            return fail(err, errlen, "missing host", p);
        if (hn > URL_FIELD_MAX)
            return fail(err, errlen, "host name too long", p);
        memcpy(host, hs, hn);
        host[hn] = '\0';
        if (inet_pton(AF_INET, host, &a4) == 1) {
            *type = URL_HOST_IPV4;
        } else {
            /* A name that looks numeric but is no dotted quad is a typo, not a host. */
            bool digits = strspn(host, "0123456789.") == hn;
            if (digits || !valid_name(host))
                return fail(err, errlen, "bad host", host);
            *type = URL_HOST_NAME;
        }
    }
    size_t rn = n - (size_t)(rest - p);
    if (rn == 0) {
        if (need_port)
            return fail(err, errlen, "missing port", p);
        return 0;
    }
    if (rest[0] != ':' || parse_port(rest + 1, rn - 1, port) < 0)
        return fail(err, errlen, "bad port", p);
    return 0;
}

int
url_parse(struct url *u, const char *s, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        enum url_scheme s;
    } schemes[] = {
        {"socks4", URL_SOCKS4},   {"socks4a", URL_SOCKS4A}, {"socks5", URL_SOCKS5},
        {"socks5h", URL_SOCKS5H}, {"http", URL_HTTP},
    };
    const char *sep, *auth, *hp, *at;
    size_t i, n;

    memset(u, 0, sizeof(*u));
    u->port = 1080;
    sep = strstr(s, "://");
    if (!sep)
        return fail(err, errlen,
                    "missing scheme (socks4://, socks4a://, socks5://, socks5h://, http://)", s);
    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strlen(schemes[i].name) == (size_t)(sep - s) &&
            strncasecmp(s, schemes[i].name, (size_t)(sep - s)) == 0)
            break;
    }
    if (i == sizeof(schemes) / sizeof(schemes[0]))
        return fail(err, errlen, "unknown scheme", s);
    u->scheme = schemes[i].s;

    auth = sep + 3;
    n = strcspn(auth, "/?#");
    if (auth[n] == '?' || auth[n] == '#' || (auth[n] == '/' && auth[n + 1] != '\0'))
        return fail(err, errlen, "a proxy URL has no path, query or fragment", s);
    /* The last '@' ends the user info: curl does the same, so '@' in a password works. */
    at = NULL;
    for (const char *q = auth; q < auth + n; q++)
        if (*q == '@')
            at = q;
    hp = auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        size_t un = colon ? (size_t)(colon - auth) : (size_t)(at - auth);
        if (un == 0)
            return fail(err, errlen, "empty user name", s);
        if (decode(u->user, auth, un) < 0)
            return fail(err, errlen, "bad user name (too long or bad %-escape)", s);
        u->has_user = true;
        if (colon) {
            if (decode(u->pass, colon + 1, (size_t)(at - colon - 1)) < 0)
                return fail(err, errlen, "bad password (too long or bad %-escape)", s);
            u->has_pass = true;
        }
        hp = at + 1;
    }
    int rc = parse_host(hp, n - (size_t)(hp - auth), u->host, &u->host_type, &u->port, false, err,
                        errlen);
    if (rc < 0)
        return rc;
    if ((u->scheme == URL_SOCKS4 || u->scheme == URL_SOCKS4A) && u->has_pass)
        return fail(err, errlen, "SOCKS4 has a user id but no password", s);
    return 0; /* has_pass implies has_user: both are set only above, with a non-empty user */
}

int
url_parse_hostport(const char *s, char *host, enum url_host *type, uint16_t *port, char *err,
                   size_t errlen)
{
    return parse_host(s, strlen(s), host, type, port, true, err, errlen);
}

int
url_to_sockaddr(const char *host, enum url_host type, uint16_t port, bool want_v6,
                struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (type == URL_HOST_NAME) {
        if (strcasecmp(host, "localhost") != 0)
            return -EADDRNOTAVAIL;
        host = want_v6 ? "::1" : "127.0.0.1";
        type = want_v6 ? URL_HOST_IPV6 : URL_HOST_IPV4;
    }
    if (type == URL_HOST_IPV4) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -EINVAL;
        *len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -EINVAL;
        *len = sizeof(*a);
    }
    return 0;
}

bool
url_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

const char *
url_scheme_str(enum url_scheme s)
{
    switch (s) {
    case URL_SOCKS4:
        return "socks4";
    case URL_SOCKS4A:
        return "socks4a";
    case URL_SOCKS5:
        return "socks5";
    case URL_SOCKS5H:
        return "socks5h";
    case URL_HTTP:
        return "http";
    }
    return "?";
}
