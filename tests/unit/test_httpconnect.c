/*
 * test_httpconnect.c - cmocka unit tests for the HTTP CONNECT parser and response encoder
 * (src/httpconnect.c).
 *
 * Links httpconnect.o with socks5.o and hostname.o (the target's host check): all pure, so
 * nothing is faked. Every header is fed from a heap block of exactly its length, so under
 * SAN=1 AddressSanitizer flags any read past the bytes the parser was given, and every
 * prefix of it is fed too: the parser keeps no state between calls, so every prefix is every
 * way of splitting it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpconnect.h"

#define DIRTY 0xA5
#define BIG   (HTTPCONNECT_HEADER_MAX + 64)

static ssize_t
feed_exact(struct httpconnect *hc, struct auth_cred *cred, const char *msg, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    if (len)
        memcpy(buf, msg, len);
    ssize_t r = httpconnect_feed(hc, cred, buf, len);
    free(buf);
    return r;
}

/*
 * Every prefix msg[0..k), k = 0..n: below decidable_at the answer is 0, from there on it is
 * want; whenever the answer is not > 0, neither hc nor cred was written.
 */
static void
check_splits(const char *msg, size_t n, size_t decidable_at, ssize_t want)
{
    struct httpconnect hc, hc0;
    struct auth_cred cr, cr0;
    assert_true(decidable_at <= n);
    for (size_t k = 0; k <= n; k++) {
        memset(&hc, DIRTY, sizeof(hc));
        memset(&cr, DIRTY, sizeof(cr));
        hc0 = hc;
        cr0 = cr;
        ssize_t r = feed_exact(&hc, &cr, msg, k);
        ssize_t exp = k < decidable_at ? 0 : want;
        if (r != exp)
            fail_msg("prefix %zu of %zu: got %zd, want %zd (decidable at %zu)", k, n, r, exp,
                     decidable_at);
        if (r <= 0 && (memcmp(&hc, &hc0, sizeof(hc)) || memcmp(&cr, &cr0, sizeof(cr))))
            fail_msg("prefix %zu of %zu: answer %zd but the state was written", k, n, r);
    }
}

/* A header that parses whole at every split, and with pipelined bytes after it. */
static void
parse_ok(const char *msg, struct httpconnect *hc, struct auth_cred *cr)
{
    size_t n = strlen(msg);
    char tail[BIG + 8];
    check_splits(msg, n, n, (ssize_t)n);
    assert_true(n + 5 < sizeof(tail));
    memcpy(tail, msg, n);
    memcpy(tail + n, "\x16\x03\x01\x00\x05", 5); /* a TLS ClientHello's start */
    memset(hc, DIRTY, sizeof(*hc));
    memset(cr, DIRTY, sizeof(*cr));
    assert_int_equal(feed_exact(hc, cr, tail, n + 5), (ssize_t)n);
}

/* msg refused with want, decidable once the line holding marker is whole. */
static void
bad_at(const char *msg, const char *marker, ssize_t want)
{
    const char *m = strstr(msg, marker);
    assert_non_null(m);
    const char *lf = strchr(m, '\n');
    assert_non_null(lf);
    check_splits(msg, strlen(msg), (size_t)(lf - msg) + 1, want);
}

static void
b64(const char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(uint8_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (uint8_t)in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}

/* A request to example.com:443 with a Proxy-Authorization value of value. */
static ssize_t
with_auth(const char *value, struct httpconnect *hc, struct auth_cred *cr)
{
    char msg[BIG];
    snprintf(msg, sizeof(msg),
             "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
             "Proxy-Authorization: %s\r\n\r\n",
             value);
    size_t n = strlen(msg);
    check_splits(msg, n, n, (ssize_t)n);
    memset(hc, DIRTY, sizeof(*hc));
    memset(cr, DIRTY, sizeof(*cr));
    return feed_exact(hc, cr, msg, n);
}

static enum httpconnect_auth
basic_of(const char *userpass, size_t n, struct auth_cred *cr)
{
    char enc[1024], value[1100];
    struct httpconnect hc;
    b64(userpass, n, enc);
    snprintf(value, sizeof(value), "Basic %s", enc);
    assert_true(with_auth(value, &hc, cr) > 0);
    return (enum httpconnect_auth)hc.auth;
}

static void
test_curl(void **state)
{
    (void)state;
    struct httpconnect hc;
    struct auth_cred cr;
    parse_ok("CONNECT Example.COM:443 HTTP/1.1\r\nHost: example.com:443\r\n"
             "User-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n",
             &hc, &cr);
    assert_int_equal(hc.minor, 1);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_NONE);
    assert_int_equal(hc.dest.atyp, SOCKS5_ATYP_DOMAIN);
    assert_string_equal(hc.dest.u.name, "example.com");
    assert_int_equal(hc.dest.port, 443);
}

static void
test_line_ends(void **state)
{
    (void)state;
    struct httpconnect hc;
    struct auth_cred cr;
    /* RFC 9112 section 2.2: a bare LF ends a line too, mixed or not. */
    parse_ok("CONNECT a.example:80 HTTP/1.1\nHost: a.example:80\n\n", &hc, &cr);
    assert_int_equal(hc.dest.port, 80);
    parse_ok("CONNECT a.example:80 HTTP/1.1\r\nHost: a.example:80\n\r\n", &hc, &cr);
    /* A CR that ends no line is a control byte. */
    bad_at("CONNECT a.example:80 HTTP/1.1\r\nHost: a\rb\r\n\r\n", "Host", HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:80\r HTTP/1.1\r\nHost: a\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_BAD);
}

static void
test_literals(void **state)
{
    (void)state;
    struct httpconnect hc;
    struct auth_cred cr;
    parse_ok("CONNECT 127.0.0.1:8080 HTTP/1.0\r\n\r\n", &hc, &cr);
    assert_int_equal(hc.minor, 0);
    assert_int_equal(hc.dest.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(ntohl(hc.dest.u.v4.s_addr), 0x7F000001);
    assert_int_equal(hc.dest.port, 8080);
    parse_ok("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", &hc, &cr);
    assert_int_equal(hc.dest.atyp, SOCKS5_ATYP_IPV6);
    struct in6_addr lo = IN6ADDR_LOOPBACK_INIT;
    assert_memory_equal(&hc.dest.u.v6, &lo, 16);
    assert_int_equal(hc.dest.port, 443);
    parse_ok("CONNECT [2001:db8::a]:65535 HTTP/1.0\r\n\r\n", &hc, &cr);
    assert_int_equal(hc.dest.port, 65535);
}

static void
test_bad_targets(void **state)
{
    (void)state;
    static const char *const targets[] = {
        "example.com",         /* no port */
        "example.com:",        /* empty port */
        ":443",                /* no host */
        "example.com:0",       /* port 0 */
        "example.com:65536",   /* over */
        "example.com:123456",  /* six digits */
        "example.com:44a",     /* not a number */
        "::1:443",             /* IPv6 without brackets */
        "[::1]",               /* brackets, no port */
        "[::1]443",            /* nothing between */
        "[127.0.0.1]:80",      /* brackets around IPv4 */
        "[example.com]:80",    /* brackets around a name */
        "[fe80::1%25eth0]:80", /* a zone */
        "[]:80",               /* empty brackets */
        "user@example.com:80", /* user info */
        "exa_mple..com:80",    /* no host name */
        "127.1:80",            /* an address in another spelling */
        "http://example.com:80",
        "/path",
    };
    char msg[512];
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        snprintf(msg, sizeof(msg), "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", targets[i]);
        bad_at(msg, "CONNECT", HTTPCONNECT_ERR_BAD);
    }
}

static void
test_methods(void **state)
{
    (void)state;
    /* Judged at the method's space: the rest need not come. */
    check_splits("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 50, 4,
                 HTTPCONNECT_ERR_METHOD);
    check_splits("POST / HTTP/1.1\r\n\r\n", 19, 5, HTTPCONNECT_ERR_METHOD);
    /* Methods are case-sensitive (RFC 9110 section 9.1). */
    check_splits("connect a:1 HTTP/1.1\r\n\r\n", 24, 8, HTTPCONNECT_ERR_METHOD);
    check_splits("CONNECTX a:1 HTTP/1.1\r\n\r\n", 25, 9, HTTPCONNECT_ERR_METHOD);
    check_splits("CONNEC a:1 HTTP/1.1\r\n\r\n", 23, 7, HTTPCONNECT_ERR_METHOD);
    /* Not a token: at the byte. */
    check_splits("CON(ECT a:1 HTTP/1.1\r\n\r\n", 24, 4, HTTPCONNECT_ERR_BAD);
    check_splits("CONNECT\r\n\r\n", 11, 8, HTTPCONNECT_ERR_BAD);
    check_splits(" CONNECT a:1 HTTP/1.1\r\n\r\n", 25, 1, HTTPCONNECT_ERR_BAD);
    /* A token longer than any method we know: no need to see its end. */
    char longm[64];
    memset(longm, 'A', sizeof(longm));
    check_splits(longm, sizeof(longm), 33, HTTPCONNECT_ERR_METHOD);
}

static void
test_request_line(void **state)
{
    (void)state;
    bad_at("CONNECT a.example:1 HTTP/2.0\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_VERSION);
    bad_at("CONNECT a.example:1 HTTP/1.1 \r\nHost: a\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1 HTTP/1\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1 http/1.1\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT  a.example:1 HTTP/1.1\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1\tHTTP/1.1\r\n\r\n", "CONNECT", HTTPCONNECT_ERR_BAD);
}

static void
test_headers(void **state)
{
    (void)state;
    struct httpconnect hc;
    struct auth_cred cr;
    /* RFC 9112 section 3.2: HTTP/1.1 needs its Host, once. */
    check_splits("CONNECT a.example:1 HTTP/1.1\r\nX: y\r\n\r\n", 38, 38, HTTPCONNECT_ERR_BAD);
    check_splits("CONNECT a.example:1 HTTP/1.1\n\n", 30, 30, HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", "host",
           HTTPCONNECT_ERR_BAD);
    /* Names without regard to case; values trimmed. */
    parse_ok("CONNECT a.example:1 HTTP/1.1\r\nhOsT:a.example:1\r\nX-Empty:\r\n"
             "X-Tab:\tv\t\r\n\r\n",
             &hc, &cr);
    /* Section 5.1: no space before the colon; 5.2: no folded lines. */
    bad_at("CONNECT a.example:1 HTTP/1.1\r\nHost : a\r\n\r\n", "Host", HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", " z",
           HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", "no colon",
           HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", ": v", HTTPCONNECT_ERR_BAD);
    /* A CONNECT has no content: the bytes after the header are the tunnel's. */
    parse_ok("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &hc, &cr);
    bad_at("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "Content",
           HTTPCONNECT_ERR_BAD);
    bad_at("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n",
           "transfer", HTTPCONNECT_ERR_BAD);
    /* A control byte in a value; bytes >= 0x80 (obs-text) are let through. */
    const char nul[] = "CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    check_splits(nul, sizeof(nul) - 1, sizeof(nul) - 3, HTTPCONNECT_ERR_BAD);
    parse_ok("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", &hc, &cr);
}

static void
test_basic(void **state)
{
    (void)state;
    struct auth_cred cr;
    struct httpconnect hc;
    assert_int_equal(basic_of("alice:secret", 12, &cr), HTTPCONNECT_AUTH_BASIC);
    assert_string_equal(cr.user, "alice");
    assert_string_equal(cr.pass, "secret");
    assert_int_equal(cr.ulen, 5);
    assert_int_equal(cr.plen, 6);
    /* RFC 7617 section 2: the first colon splits; the password may hold more. */
    assert_int_equal(basic_of("alice:pa:ss:", 12, &cr), HTTPCONNECT_AUTH_BASIC);
    assert_string_equal(cr.pass, "pa:ss:");
    /* Empty user, empty password, no colon, a NUL: not credentials RFC 1929 carries. */
    assert_int_equal(basic_of(":secret", 7, &cr), HTTPCONNECT_AUTH_BAD);
    assert_int_equal(basic_of("alice:", 6, &cr), HTTPCONNECT_AUTH_BAD);
    assert_int_equal(basic_of("alice", 5, &cr), HTTPCONNECT_AUTH_BAD);
    assert_int_equal(basic_of("al\0ce:secret", 12, &cr), HTTPCONNECT_AUTH_BAD);
    assert_int_equal(basic_of("alice:se\0ret", 12, &cr), HTTPCONNECT_AUTH_BAD);
    /* The longest of each, and one byte more. */
    char up[600];
    memset(up, 'u', 255);
    up[255] = ':';
    memset(up + 256, 'p', 255);
    assert_int_equal(basic_of(up, 511, &cr), HTTPCONNECT_AUTH_BASIC);
    assert_int_equal(cr.ulen, 255);
    assert_int_equal(cr.plen, 255);
    memset(up, 'u', 256);
    up[256] = ':';
    memset(up + 257, 'p', 3);
    assert_int_equal(basic_of(up, 260, &cr), HTTPCONNECT_AUTH_BAD);
    memset(up, 'u', 3);
    up[3] = ':';
    memset(up + 4, 'p', 256);
    assert_int_equal(basic_of(up, 260, &cr), HTTPCONNECT_AUTH_BAD);
    /* Scheme without regard to case, several spaces, no padding. */
    assert_true(with_auth("bAsIc    YWxpY2U6c2VjcmV0", &hc, &cr) > 0);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_BASIC);
    assert_string_equal(cr.user, "alice");
    assert_true(with_auth("Basic YWxpY2U6cw", &hc, &cr) > 0); /* alice:s */
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_BASIC);
    assert_string_equal(cr.pass, "s");
    /* Not base64, or cut where no base64 ends. */
    assert_true(with_auth("Basic YWxp!2U6c2VjcmV0", &hc, &cr) > 0);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_BAD);
    assert_true(with_auth("Basic YWxpY", &hc, &cr) > 0);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_BAD);
    assert_true(with_auth("Basic YWxpY2U6cw=", &hc, &cr) > 0);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_BAD);
    assert_true(with_auth("Basic ", &hc, &cr) > 0);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_BAD);
    /* Another scheme: as if none was sent (the 407 asks for Basic). */
    assert_true(with_auth("Bearer abc", &hc, &cr) > 0);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_NONE);
    assert_true(with_auth("Basicx YWxpY2U6cw", &hc, &cr) > 0);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_NONE);
    /* Case-insensitive header name, and only one of it. */
    parse_ok("CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\npROXY-aUTHORIZATION: Basic "
             "YWxpY2U6c2VjcmV0\r\n\r\n",
             &hc, &cr);
    assert_int_equal(hc.auth, HTTPCONNECT_AUTH_BASIC);
    assert_string_equal(cr.user, "alice");
    const char two[] = "CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic "
                       "YWxpY2U6c2VjcmV0\r\nproxy-authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n";
    check_splits(two, sizeof(two) - 1, sizeof(two) - 3, HTTPCONNECT_ERR_BAD);
}

static void
test_too_long(void **state)
{
    (void)state;
    struct httpconnect hc;
    struct auth_cred cr;
    static char msg[BIG + 1];
    const char *head = "CONNECT a.example:1 HTTP/1.1\r\nHost: a\r\nX: ";
    size_t h = strlen(head);
    /* Exactly the bound: taken. */
    memcpy(msg, head, h);
    memset(msg + h, 'v', HTTPCONNECT_HEADER_MAX - h - 4);
    memcpy(msg + HTTPCONNECT_HEADER_MAX - 4, "\r\n\r\n", 5);
    assert_int_equal(strlen(msg), HTTPCONNECT_HEADER_MAX);
    parse_ok(msg, &hc, &cr);
    /* One byte more: refused once the bound is reached without the end. */
    memset(msg + h, 'v', HTTPCONNECT_HEADER_MAX - h - 3);
    memcpy(msg + HTTPCONNECT_HEADER_MAX - 3, "\r\n\r\n", 5);
    check_splits(msg, strlen(msg), HTTPCONNECT_HEADER_MAX, HTTPCONNECT_ERR_TOO_LONG);
    /* A bad line within the bound is judged first. */
    memcpy(msg, "CONNECT a.example:1 HTTP/1.1\r\nHost : a\r\n", 40);
    check_splits(msg, strlen(msg), 40, HTTPCONNECT_ERR_BAD);
}

static void
test_status(void **state)
{
    (void)state;
    assert_int_equal(httpconnect_status(SOCKS5_REP_SUCCEEDED), 200);
    assert_int_equal(httpconnect_status(SOCKS5_REP_GENERAL), 503);
    assert_int_equal(httpconnect_status(SOCKS5_REP_NOT_ALLOWED), 403);
    assert_int_equal(httpconnect_status(SOCKS5_REP_NET_UNREACH), 502);
    assert_int_equal(httpconnect_status(SOCKS5_REP_HOST_UNREACH), 502);
    assert_int_equal(httpconnect_status(SOCKS5_REP_REFUSED), 502);
    assert_int_equal(httpconnect_status(SOCKS5_REP_TTL_EXPIRED), 504);
    assert_int_equal(httpconnect_status(SOCKS5_REP_CMD_UNSUPP), 405);
    assert_int_equal(httpconnect_status(SOCKS5_REP_ATYP_UNSUPP), 400);
}

static void
test_response(void **state)
{
    (void)state;
    uint8_t out[HTTPCONNECT_RESPONSE_MAX];
    size_t n = httpconnect_response(out, 200);
    const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    assert_int_equal(n, sizeof(ok) - 1);
    assert_memory_equal(out, ok, n);
    const char p407[] = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                        "Proxy-Authenticate: Basic realm=\"ringsocks\"\r\n"
                        "Content-Length: 0\r\nConnection: close\r\n\r\n";
    n = httpconnect_response(out, 407);
    assert_int_equal(n, sizeof(p407) - 1);
    assert_memory_equal(out, p407, n);
    const char p405[] = "HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\n"
                        "Content-Length: 0\r\nConnection: close\r\n\r\n";
    n = httpconnect_response(out, 405);
    assert_int_equal(n, sizeof(p405) - 1);
    assert_memory_equal(out, p405, n);
    static const unsigned all[] = {400, 403, 431, 502, 503, 504, 505, 999};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        n = httpconnect_response(out, all[i]);
        assert_true(n > 0 && n < HTTPCONNECT_RESPONSE_MAX);
        assert_memory_equal(out + n - 4, "\r\n\r\n", 4);
        assert_non_null(memmem(out, n, "Connection: close\r\n", 19));
    }
    /* A status without a text of its own: 503. */
    n = httpconnect_response(out, 999);
    assert_memory_equal(out, "HTTP/1.1 503 Service Unavailable\r\n", 34);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curl),     cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_literals), cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_methods),  cmocka_unit_test(test_request_line),
        cmocka_unit_test(test_headers),  cmocka_unit_test(test_basic),
        cmocka_unit_test(test_too_long), cmocka_unit_test(test_status),
        cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
