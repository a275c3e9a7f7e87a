/*
 * test_proxyproto.c - cmocka unit tests for the PROXY protocol v1/v2 header parser
 * (src/proxyproto.c).
 *
 * Links proxyproto.o alone: the module is pure, so nothing is faked. Every header is fed
 * from a heap block of exactly its length, so under SAN=1 AddressSanitizer flags any read
 * past the bytes the parser was given. Every header is also fed byte by byte (every prefix):
 * the parser keeps no state between calls, so every prefix is every way of splitting it.
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

#include "proxyproto.h"

#define DIRTY   0xA5
#define MSG_MAX (PROXYPROTO_MAX + 64)

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static ssize_t
feed_exact(struct proxyproto *pp, const uint8_t *msg, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    if (len)
        memcpy(buf, msg, len);
    ssize_t r = proxyproto_feed(pp, buf, len);
    free(buf);
    return r;
}

/*
 * Every prefix msg[0..k), k = 0..n: below decidable_at the answer is 0 and the state
 * untouched; from there on it is want (and an error leaves the state untouched too).
 */
static void
check_splits(const uint8_t *msg, size_t n, size_t decidable_at, ssize_t want)
{
    struct proxyproto pp, before;
    assert_true(decidable_at <= n);
    for (size_t k = 0; k <= n; k++) {
        memset(&pp, DIRTY, sizeof(pp));
        memcpy(&before, &pp, sizeof(pp));
        ssize_t r = feed_exact(&pp, msg, k);
        ssize_t exp = k < decidable_at ? 0 : want;
        if (r != exp)
            fail_msg("prefix %zu of %zu: got %zd, want %zd (decidable at %zu)", k, n, r, exp,
                     decidable_at);
        if (r <= 0 && memcmp(&pp, &before, sizeof(pp)) != 0)
            fail_msg("prefix %zu of %zu: answer %zd but the state was written", k, n, r);
    }
}

/* A header that must parse whole, at every split, and with a pipelined tail after it. */
static void
check_ok(const uint8_t *msg, size_t len, struct proxyproto *pp)
{
    uint8_t tail[MSG_MAX + 3];
    check_splits(msg, len, len, (ssize_t)len);
    memcpy(tail, msg, len);
    memcpy(tail + len, "\x05\x01\x00", 3);
    memset(pp, DIRTY, sizeof(*pp));
    assert_int_equal(feed_exact(pp, tail, len + 3), (ssize_t)len);
    memset(pp, DIRTY, sizeof(*pp));
    assert_int_equal(feed_exact(pp, msg, len), (ssize_t)len);
}

static void
check_v1_bad(const char *line, ssize_t want)
{
    size_t n = strlen(line);
    /* Decided at the first byte that breaks it; for a v1 line that is its CRLF at the
     * latest: every prefix shorter than the line answers 0 or want. */
    struct proxyproto pp;
    memset(&pp, DIRTY, sizeof(pp));
    ssize_t r = feed_exact(&pp, (const uint8_t *)line, n);
    if (r != want)
        fail_msg("\"%s\": got %zd, want %zd", line, r, want);
    for (size_t k = 0; k < n; k++) {
        r = feed_exact(&pp, (const uint8_t *)line, k);
        if (r != 0 && r != want)
            fail_msg("\"%s\" prefix %zu: got %zd", line, k, r);
    }
}

static void
assert_addr(const union sockaddr_inx *a, int family, const char *ip, uint16_t port)
{
    char text[INET6_ADDRSTRLEN];
    assert_int_equal(a->sa.sa_family, family);
    const void *raw =
        family == AF_INET ? (const void *)&a->v4.sin_addr : (const void *)&a->v6.sin6_addr;
    assert_non_null(inet_ntop(family, raw, text, sizeof(text)));
    assert_string_equal(text, ip);
    assert_int_equal(ntohs(family == AF_INET ? a->v4.sin_port : a->v6.sin6_port), port);
}

/* ---- v1 ---- */

static void
test_v1_tcp4(void **state)
{
    static const char msg[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 1080\r\n";
    struct proxyproto pp;
    (void)state;
    check_ok((const uint8_t *)msg, sizeof(msg) - 1, &pp);
    assert_int_equal(pp.version, 1);
    assert_int_equal(pp.local, 0);
    assert_addr(&pp.src, AF_INET, "192.0.2.1", 56324);
    assert_addr(&pp.dst, AF_INET, "198.51.100.2", 1080);
}

static void
test_v1_tcp6(void **state)
{
    static const char msg[] = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n";
    struct proxyproto pp;
    (void)state;
    check_ok((const uint8_t *)msg, sizeof(msg) - 1, &pp);
    assert_int_equal(pp.version, 1);
    assert_addr(&pp.src, AF_INET6, "2001:db8::1", 0);
    assert_addr(&pp.dst, AF_INET6, "::ffff:10.0.0.1", 65535);
}

static void
test_v1_unknown(void **state)
{
    static const char *const ok[] = {
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        "PROXY UNKNOWN  anything at all\r\n",
    };
    struct proxyproto pp;
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        check_ok((const uint8_t *)ok[i], strlen(ok[i]), &pp);
        assert_int_equal(pp.version, 1);
        assert_int_equal(pp.local, 1);
        assert_int_equal(pp.src.sa.sa_family, 0);
        assert_int_equal(pp.dst.sa.sa_family, 0);
    }
}

/* Section 2.1: at most 107 bytes with the CRLF. */
static void
test_v1_length_bound(void **state)
{
    char line[PROXYPROTO_V1_MAX + 2];
    struct proxyproto pp;
    (void)state;
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + PROXYPROTO_V1_MAX - 2, "\r\n", 2);
    check_ok((const uint8_t *)line, PROXYPROTO_V1_MAX, &pp);
    assert_int_equal(pp.local, 1);
    /* One byte more: its CR would be the 107th byte, known once 106 are in without one. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + PROXYPROTO_V1_MAX - 1, "\r\n", 2);
    check_splits((const uint8_t *)line, PROXYPROTO_V1_MAX + 1, PROXYPROTO_V1_MAX - 1,
                 PROXYPROTO_ERR_V1_LEN);
}

static void
test_v1_malformed(void **state)
{
    static const char *const bad[] = {
        "PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n",      /* protocol */
        "PROXY tcp4 192.0.2.1 192.0.2.2 1 2\r\n",      /* case */
        "PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n",     /* double space */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n",     /* trailing space */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n",        /* a field missing */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n",    /* a field too many */
        "PROXY TCP4\r\n",                              /* no addresses */
        "PROXY \r\n",                                  /* nothing */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 65536\r\n",  /* port range */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 99999\r\n",  /* port range */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 123456\r\n", /* port length */
        "PROXY TCP4 192.0.2.1 192.0.2.2 080 2\r\n",    /* leading zero */
        "PROXY TCP4 192.0.2.1 192.0.2.2 +80 2\r\n",    /* sign */
        "PROXY TCP4 192.0.2.1 192.0.2.2 8a 2\r\n",     /* digits */
        "PROXY TCP4 256.0.2.1 192.0.2.2 1 2\r\n",      /* address */
        "PROXY TCP4 192.0.2 192.0.2.2 1 2\r\n",        /* address */
        "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n",    /* family */
        "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",    /* family */
        "PROXY TCP6 2001:db8::1:2:3:4:5:6:7:8:9 ::2 1 2\r\n",
        "PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0 ::2 1 2\r\n", /* over 45 */
        "PROXY UNKNOWNX\r\n",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_v1_bad(bad[i], PROXYPROTO_ERR_V1);
}

/* A CR without its LF, a bare LF, a NUL or a high byte breaks the line where it is. */
static void
test_v1_bad_bytes(void **state)
{
    static const uint8_t cr[] = "PROXY TCP4 192.0.2.1\rx";
    static const uint8_t lf[] = "PROXY TCP4 192.0.2.1\n";
    static const uint8_t nul[] = "PROXY TCP4 192.0.2.1\0 192.0.2.2 1 2\r\n";
    static const uint8_t high[] = "PROXY TCP4 192.0.2.\xb1 192.0.2.2 1 2\r\n";
    (void)state;
    check_splits(cr, sizeof(cr) - 1, sizeof(cr) - 1, PROXYPROTO_ERR_V1);
    check_splits(lf, sizeof(lf) - 1, sizeof(lf) - 1, PROXYPROTO_ERR_V1);
    check_splits(nul, sizeof(nul) - 1, 21, PROXYPROTO_ERR_V1);
    check_splits(high, sizeof(high) - 1, 20, PROXYPROTO_ERR_V1);
}

/* ---- signature ---- */

static void
test_not_a_header(void **state)
{
    static const uint8_t socks5[] = {0x05, 0x01, 0x00};
    static const uint8_t socks4[] = {0x04, 0x01, 0x00, 0x50, 192, 0, 2, 1, 0};
    static const uint8_t proxz[] = "PROXZ TCP4";
    static const uint8_t nospace[] = "PROXYTCP4";
    uint8_t v2[16];
    (void)state;
    check_splits(socks5, sizeof(socks5), 1, PROXYPROTO_ERR_SIG);
    check_splits(socks4, sizeof(socks4), 1, PROXYPROTO_ERR_SIG);
    check_splits(proxz, sizeof(proxz) - 1, 5, PROXYPROTO_ERR_SIG);
    check_splits(nospace, sizeof(nospace) - 1, 6, PROXYPROTO_ERR_SIG);
    /* The v2 signature with its last byte wrong: known at the 12th byte. */
    memcpy(v2, sig, 12);
    v2[11] = 0x0B;
    v2[12] = 0x21;
    v2[13] = 0x11;
    v2[14] = 0;
    v2[15] = 12;
    check_splits(v2, sizeof(v2), 12, PROXYPROTO_ERR_SIG);
}

/* ---- v2 ---- */

/* A v2 header: ver_cmd, fam, then body (addresses and TLVs) of blen bytes. */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t blen)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    if (blen)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

static const uint8_t addr4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x04, 0x38};

static void
test_v2_tcp4(void **state)
{
    uint8_t msg[MSG_MAX];
    struct proxyproto pp;
    (void)state;
    size_t n = v2(msg, 0x21, 0x11, addr4, sizeof(addr4));
    check_ok(msg, n, &pp);
    assert_int_equal(pp.version, 2);
    assert_int_equal(pp.local, 0);
    assert_addr(&pp.src, AF_INET, "192.0.2.1", 56324);
    assert_addr(&pp.dst, AF_INET, "198.51.100.2", 1080);
}

static void
test_v2_tcp6(void **state)
{
    uint8_t body[36] = {
        0x20,        0x01,        0x0d,     0xb8,     [15] = 1, [16] = 0x20, [17] = 0x01,
        [18] = 0x0d, [19] = 0xb8, [31] = 2, [32] = 0, [33] = 1, [34] = 0xFF, [35] = 0xFF};
    uint8_t msg[MSG_MAX];
    struct proxyproto pp;
    (void)state;
    size_t n = v2(msg, 0x21, 0x21, body, sizeof(body));
    check_ok(msg, n, &pp);
    assert_int_equal(pp.version, 2);
    assert_addr(&pp.src, AF_INET6, "2001:db8::1", 1);
    assert_addr(&pp.dst, AF_INET6, "2001:db8::2", 65535);
}

/* TLVs after the addresses (HAProxy sends e.g. PP2_TYPE_UNIQUE_ID, CRC32C) are skipped. */
static void
test_v2_tlvs(void **state)
{
    uint8_t body[PROXYPROTO_MAX];
    uint8_t msg[MSG_MAX];
    struct proxyproto pp;
    (void)state;
    memcpy(body, addr4, 12);
    size_t b = 12;
    /* CRC32C (0x03, 4 bytes), an empty NOOP (0x04), ALPN "h2" (0x01). */
    memcpy(body + b, "\x03\x00\x04\x11\x22\x33\x44", 7);
    b += 7;
    memcpy(body + b, "\x04\x00\x00", 3);
    b += 3;
    memcpy(body + b, "\x01\x00\x02h2", 5);
    b += 5;
    size_t n = v2(msg, 0x21, 0x11, body, b);
    check_ok(msg, n, &pp);
    assert_addr(&pp.src, AF_INET, "192.0.2.1", 56324);
    /* The largest header allowed: one TLV fills it to 536 bytes. */
    size_t v = PROXYPROTO_V2_MAX - 16 - 12 - 3;
    memset(body + 12, 0, sizeof(body) - 12);
    body[12] = 0x04;
    body[13] = (uint8_t)(v >> 8);
    body[14] = (uint8_t)v;
    n = v2(msg, 0x21, 0x11, body, 12 + 3 + v);
    assert_int_equal(n, PROXYPROTO_V2_MAX);
    check_ok(msg, n, &pp);
}

/* LOCAL (health checks): no addresses; the family and body are ignored (section 2.2). */
static void
test_v2_local(void **state)
{
    uint8_t msg[MSG_MAX];
    struct proxyproto pp;
    (void)state;
    size_t n = v2(msg, 0x20, 0x00, NULL, 0);
    check_ok(msg, n, &pp);
    assert_int_equal(pp.version, 2);
    assert_int_equal(pp.local, 1);
    assert_int_equal(pp.src.sa.sa_family, 0);
    n = v2(msg, 0x20, 0x11, addr4, sizeof(addr4));
    check_ok(msg, n, &pp);
    assert_int_equal(pp.local, 1);
    assert_int_equal(pp.src.sa.sa_family, 0);
    n = v2(msg, 0x20, 0x31, (const uint8_t *)"junk", 4);
    check_ok(msg, n, &pp);
    assert_int_equal(pp.local, 1);
}

static void
test_v2_malformed(void **state)
{
    uint8_t msg[MSG_MAX];
    uint8_t body[PROXYPROTO_MAX];
    (void)state;
    memset(body, 0, sizeof(body));
    memcpy(body, addr4, 12);
    /* Version 1 in the binary form, or 3: known at the 13th byte. */
    size_t n = v2(msg, 0x11, 0x11, addr4, 12);
    check_splits(msg, n, 13, PROXYPROTO_ERR_V2_VER);
    n = v2(msg, 0x31, 0x11, addr4, 12);
    check_splits(msg, n, 13, PROXYPROTO_ERR_V2_VER);
    /* Command 2..15. */
    for (uint8_t cmd = 2; cmd < 16; cmd++) {
        n = v2(msg, (uint8_t)(0x20 | cmd), 0x11, addr4, 12);
        check_splits(msg, n, 13, PROXYPROTO_ERR_V2_CMD);
    }
    /* PROXY over UDP, UNIX, UNSPEC, or an unknown family: known at the 14th byte. */
    static const uint8_t fams[] = {0x00, 0x01, 0x10, 0x12, 0x22, 0x31, 0x32, 0x41, 0x13};
    for (size_t i = 0; i < sizeof(fams); i++) {
        n = v2(msg, 0x21, fams[i], body, 216);
        check_splits(msg, n, 14, PROXYPROTO_ERR_V2_FAM);
    }
    /* A length shorter than the addresses: known at the 16th byte. */
    n = v2(msg, 0x21, 0x11, body, 11);
    check_splits(msg, n, 16, PROXYPROTO_ERR_V2_LEN);
    n = v2(msg, 0x21, 0x21, body, 35);
    check_splits(msg, n, 16, PROXYPROTO_ERR_V2_LEN);
    n = v2(msg, 0x21, 0x11, body, 0);
    check_splits(msg, n, 16, PROXYPROTO_ERR_V2_LEN);
    /* Over the bound, LOCAL too: refused at the 16th byte, without waiting for it. */
    n = v2(msg, 0x21, 0x11, body, PROXYPROTO_V2_MAX - 16 + 1);
    check_splits(msg, 16, 16, PROXYPROTO_ERR_V2_LEN);
    n = v2(msg, 0x20, 0x00, body, PROXYPROTO_V2_MAX - 16 + 1);
    check_splits(msg, 16, 16, PROXYPROTO_ERR_V2_LEN);
    msg[14] = 0xFF;
    msg[15] = 0xFF;
    check_splits(msg, 16, 16, PROXYPROTO_ERR_V2_LEN);
}

static void
test_v2_bad_tlv(void **state)
{
    uint8_t msg[MSG_MAX];
    uint8_t body[64];
    (void)state;
    memcpy(body, addr4, 12);
    /* Two bytes left after the addresses: no room for a TLV header. */
    memcpy(body + 12, "\x04\x00", 2);
    size_t n = v2(msg, 0x21, 0x11, body, 14);
    check_splits(msg, n, n, PROXYPROTO_ERR_V2_TLV);
    /* A TLV whose value runs past the header. */
    memcpy(body + 12, "\x04\x00\x05xxxx", 7);
    n = v2(msg, 0x21, 0x11, body, 19);
    check_splits(msg, n, n, PROXYPROTO_ERR_V2_TLV);
    /* A good TLV then a short one. */
    memcpy(body + 12, "\x04\x00\x01x\x01", 5);
    n = v2(msg, 0x21, 0x11, body, 17);
    check_splits(msg, n, n, PROXYPROTO_ERR_V2_TLV);
}

/* A complete header overwrites a state that held another one, whole. */
static void
test_state_overwritten(void **state)
{
    static const char v1[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 1080\r\n";
    static const char unk[] = "PROXY UNKNOWN\r\n";
    struct proxyproto pp;
    (void)state;
    assert_int_equal(feed_exact(&pp, (const uint8_t *)v1, sizeof(v1) - 1), sizeof(v1) - 1);
    assert_int_equal(feed_exact(&pp, (const uint8_t *)unk, sizeof(unk) - 1), sizeof(unk) - 1);
    assert_int_equal(pp.local, 1);
    assert_int_equal(pp.src.sa.sa_family, 0);
    assert_int_equal(pp.src.v4.sin_addr.s_addr, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),      cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),   cmocka_unit_test(test_v1_length_bound),
        cmocka_unit_test(test_v1_malformed), cmocka_unit_test(test_v1_bad_bytes),
        cmocka_unit_test(test_not_a_header), cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6),      cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_local),     cmocka_unit_test(test_v2_malformed),
        cmocka_unit_test(test_v2_bad_tlv),   cmocka_unit_test(test_state_overwritten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
