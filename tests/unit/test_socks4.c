/*
 * test_socks4.c - cmocka unit tests for the SOCKS4/4a parser and reply encoder (src/socks4.c).
 *
 * Links socks4.o alone: the module is pure, so nothing is faked. Every message is fed from a
 * heap block of exactly its length, so under SAN=1 AddressSanitizer flags any read past the
 * bytes the parser was given. Single-threaded; never touches a socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "socks4.h"

/* Room for the longest request plus a pipelined tail. */
#define MSG_MAX (SOCKS4_REQUEST_MAX + 600)

/* The byte a parser state is filled with to show that a call did not write it. */
#define DIRTY 0xA5

static const uint8_t ip_4a[4] = {0, 0, 0, 1};

/* Feed a copy of msg[0..len) held in a heap block of exactly len bytes. */
static ssize_t
feed_exact(struct socks4 *st, const uint8_t *msg, size_t len)
{
    uint8_t *buf = malloc(len);
    ssize_t r;

    if (len > 0) {
        assert_non_null(buf);
        memcpy(buf, msg, len);
    }
    r = socks4_feed(st, buf, len);
    free(buf);
    return r;
}

/*
 * Build VN CD DSTPORT DSTIP USERID NUL [HOST NUL] into out: host is written only when non-NULL.
 * Returns the message length.
 */
static size_t
build(uint8_t *out, uint8_t vn, uint8_t cd, uint16_t port, const uint8_t ip[4], const void *userid,
      size_t uid_len, const void *host, size_t host_len)
{
    size_t off = 0;

    out[off++] = vn;
    out[off++] = cd;
    out[off++] = (uint8_t)(port >> 8);
    out[off++] = (uint8_t)(port & 0xFF);
    memcpy(out + off, ip, 4);
    off += 4;
    if (uid_len > 0)
        memcpy(out + off, userid, uid_len);
    off += uid_len;
    out[off++] = 0;
    if (host) {
        if (host_len > 0)
            memcpy(out + off, host, host_len);
        off += host_len;
        out[off++] = 0;
    }
    return off;
}

/* n bytes of a printable pattern, NUL-terminated in out[n]. */
static void
pattern(char *out, size_t n, char base)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(base + i % 26);
    out[n] = '\0';
}

/*
 * Feed every prefix msg[0..k), k = 0..n-1, then the whole message, each to a parser state
 * filled with DIRTY. Prefixes shorter than decidable_at must answer 0 and leave the state
 * untouched; from decidable_at on, and the whole message, must answer want (errors must
 * leave the state untouched too). The parser keeps no state between calls, so every prefix
 * is also every way of splitting the message into arrivals.
 */
static void
check_splits(const uint8_t *msg, size_t n, size_t decidable_at, ssize_t want)
{
    struct socks4 st;
    struct socks4 before;

    assert_true(decidable_at <= n);
    for (size_t k = 0; k <= n; k++) {
        memset(&st, DIRTY, sizeof(st));
        memcpy(&before, &st, sizeof(st));
        ssize_t r = feed_exact(&st, msg, k);
        ssize_t exp = k < decidable_at ? 0 : want;
        if (r != exp)
            fail_msg("prefix %zu of %zu: got %zd, want %zd (decidable at %zu)", k, n, r, exp,
                     decidable_at);
        if (r <= 0 && memcmp(&st, &before, sizeof(st)) != 0)
            fail_msg("prefix %zu of %zu: answer %zd but the state was written", k, n, r);
    }
}

/* A request that must parse: consumed == len at every split, state as expected. */
static void
check_ok(const uint8_t *msg, size_t len, struct socks4 *st)
{
    check_splits(msg, len, len, (ssize_t)len);
    memset(st, DIRTY, sizeof(*st));
    assert_int_equal(feed_exact(st, msg, len), (ssize_t)len);
    /* Whatever the request, the strings are terminated and their lengths agree. */
    assert_int_equal(st->userid[st->userid_len], '\0');
    assert_int_equal(strlen(st->userid), st->userid_len);
    if (st->dest.atyp == SOCKS5_ATYP_DOMAIN) {
        assert_int_equal(st->is_4a, 1);
        assert_int_equal(st->dest.u.name[st->dest.name_len], '\0');
        assert_int_equal(strlen(st->dest.u.name), st->dest.name_len);
    } else {
        /* An address: SOCKS4's, or a 4a host name that was an IP literal. */
        if (!st->is_4a)
            assert_int_equal(st->dest.atyp, SOCKS5_ATYP_IPV4);
        assert_int_equal(st->dest.name_len, 0);
    }
}

/* ---- SOCKS4 ---- */

/* The example of the SOCKS4 memo: CONNECT 192.0.2.1:80, empty user-id. Exact bytes. */
static void
test_connect_ipv4_exact(void **state)
{
    static const uint8_t msg[] = {0x04, 0x01, 0x00, 0x50, 192, 0, 2, 1, 0x00};
    struct socks4 st;

    (void)state;
    check_ok(msg, sizeof(msg), &st);
    assert_int_equal(st.cmd, SOCKS4_CMD_CONNECT);
    assert_int_equal(st.is_4a, 0);
    assert_int_equal(st.userid_len, 0);
    assert_string_equal(st.userid, "");
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(st.dest.port, 80);
    assert_int_equal(st.dest.u.v4.s_addr, htonl(0xC0000201));
}

static void
test_connect_with_userid(void **state)
{
    static const uint8_t ip[4] = {10, 1, 2, 3};
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 8080, ip, "alice", 5, NULL, 0);
    assert_int_equal(len, 14);
    check_ok(msg, len, &st);
    assert_int_equal(st.cmd, SOCKS4_CMD_CONNECT);
    assert_int_equal(st.userid_len, 5);
    assert_string_equal(st.userid, "alice");
    assert_int_equal(st.dest.port, 8080);
    assert_memory_equal(&st.dest.u.v4, ip, 4);
}

/* Any byte but NUL may be in a user-id, 0xFF included. */
static void
test_userid_binary(void **state)
{
    static const uint8_t ip[4] = {127, 0, 0, 1};
    static const uint8_t uid[] = {0x01, 0xFF, 0x80, ' ', '\t', 0x7F};
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 1, ip, uid, sizeof(uid), NULL, 0);
    check_ok(msg, len, &st);
    assert_int_equal(st.userid_len, sizeof(uid));
    assert_memory_equal(st.userid, uid, sizeof(uid));
}

static void
test_bind_accepted(void **state)
{
    static const uint8_t ip[4] = {198, 51, 100, 7};
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    len = build(msg, 4, SOCKS4_CMD_BIND, 21, ip, "u", 1, NULL, 0);
    check_ok(msg, len, &st);
    assert_int_equal(st.cmd, SOCKS4_CMD_BIND);
    assert_int_equal(st.dest.port, 21);

    len = build(msg, 4, SOCKS4_CMD_BIND, 21, ip_4a, "u", 1, "ftp.example", 11);
    check_ok(msg, len, &st);
    assert_int_equal(st.cmd, SOCKS4_CMD_BIND);
    assert_int_equal(st.is_4a, 1);
    assert_string_equal(st.dest.u.name, "ftp.example");
}

/* DST.PORT is big-endian on the wire and host order in dest.port. */
static void
test_port_byte_order(void **state)
{
    static const struct {
        uint8_t hi;
        uint8_t lo;
        uint16_t port;
    } cases[] = {
        {0x1F, 0x90, 8080}, {0xFF, 0xFF, 65535}, {0x00, 0x00, 0},
        {0x01, 0x00, 256},  {0x00, 0x01, 1},     {0x80, 0x00, 32768},
    };
    uint8_t msg[9] = {0x04, 0x01, 0, 0, 127, 0, 0, 1, 0x00};
    uint8_t msg4a[11] = {0x04, 0x01, 0, 0, 0, 0, 0, 9, 0x00, 'h', 0x00};
    struct socks4 st;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msg[2] = msg4a[2] = cases[i].hi;
        msg[3] = msg4a[3] = cases[i].lo;
        assert_int_equal(feed_exact(&st, msg, sizeof(msg)), 9);
        assert_int_equal(st.dest.port, cases[i].port);
        assert_int_equal(feed_exact(&st, msg4a, sizeof(msg4a)), 11);
        assert_int_equal(st.dest.port, cases[i].port);
    }
}

/*
 * Only 0.0.0.x with x != 0 means 4a. Anything else is an address, and the bytes after the
 * user-id's NUL (which a 4a parser would take as a host) are left unconsumed.
 */
static void
test_not_4a_addresses(void **state)
{
    static const uint8_t ips[][4] = {
        {0, 0, 0, 0}, {0, 0, 1, 0}, {0, 0, 1, 1}, {0, 1, 0, 1}, {1, 0, 0, 1}, {255, 0, 0, 1},
    };
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
        len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ips[i], "id", 2, NULL, 0);
        check_ok(msg, len, &st);
        assert_int_equal(st.is_4a, 0);
        assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV4);
        assert_memory_equal(&st.dest.u.v4, ips[i], 4);
        /* A tail shaped like a 4a host name stays for the relay. */
        memcpy(msg + len, "example.com", 12);
        assert_int_equal(feed_exact(&st, msg, len + 12), (ssize_t)len);
        assert_int_equal(st.is_4a, 0);
    }
}

/* ---- SOCKS4a ---- */

static void
test_4a_exact(void **state)
{
    static const uint8_t msg[] = {0x04, 0x01, 0x01, 0xBB, 0x00, 0x00, 0x00, 0x01,
                                  'b',  'o',  'b',  0x00, 'e',  'x',  'a',  'm',
                                  'p',  'l',  'e',  '.',  'c',  'o',  'm',  0x00};
    struct socks4 st;

    (void)state;
    check_ok(msg, sizeof(msg), &st);
    assert_int_equal(st.cmd, SOCKS4_CMD_CONNECT);
    assert_int_equal(st.is_4a, 1);
    assert_int_equal(st.userid_len, 3);
    assert_string_equal(st.userid, "bob");
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_DOMAIN);
    assert_int_equal(st.dest.name_len, 11);
    assert_string_equal(st.dest.u.name, "example.com");
    assert_int_equal(st.dest.port, 443);
}

/* Every x in 0.0.0.x, 1..255, announces a host name; curl sends 0.0.0.1. */
static void
test_4a_every_marker(void **state)
{
    uint8_t ip[4] = {0, 0, 0, 0};
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    for (unsigned x = 1; x < 256; x++) {
        ip[3] = (uint8_t)x;
        len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip, NULL, 0, "h.test", 6);
        memset(&st, DIRTY, sizeof(st));
        if (feed_exact(&st, msg, len) != (ssize_t)len)
            fail_msg("0.0.0.%u: not parsed as SOCKS4a", x);
        assert_int_equal(st.is_4a, 1);
        assert_string_equal(st.dest.u.name, "h.test");
        /* Without the host name it is incomplete, not a SOCKS4 request to 0.0.0.x. */
        assert_int_equal(feed_exact(&st, msg, len - 7), 0);
    }
}

static void
test_4a_empty_host(void **state)
{
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip_4a, NULL, 0, "", 0);
    assert_int_equal(len, 10);
    check_splits(msg, len, len, SOCKS4_ERR_BAD_NAME);
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip_4a, "user", 4, "", 0);
    check_splits(msg, len, len, SOCKS4_ERR_BAD_NAME);
    /* Bytes after the empty name do not rescue it. */
    memcpy(msg + len, "host", 5);
    check_splits(msg, len + 5, len, SOCKS4_ERR_BAD_NAME);
}

/* ---- length limits ---- */

static void
test_userid_255_accepted(void **state)
{
    static const uint8_t ip[4] = {192, 0, 2, 9};
    char uid[SOCKS4_USERID_MAX + 1];
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    pattern(uid, 255, 'a');
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip, uid, 255, NULL, 0);
    assert_int_equal(len, 8 + 255 + 1);
    check_ok(msg, len, &st);
    assert_int_equal(st.userid_len, 255);
    assert_string_equal(st.userid, uid);

    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip_4a, uid, 255, "x", 1);
    check_ok(msg, len, &st);
    assert_int_equal(st.userid_len, 255);
    assert_string_equal(st.dest.u.name, "x");
}

/* A 256th user-id byte that is not NUL rejects at once, NUL or no NUL after it. */
static void
test_userid_256_rejected(void **state)
{
    static const uint8_t ip[4] = {192, 0, 2, 9};
    char uid[300];
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    pattern(uid, 256, 'a');
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip, uid, 256, NULL, 0);
    check_splits(msg, len, 8 + 256, SOCKS4_ERR_REJECT);
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip_4a, uid, 256, "h", 1);
    check_splits(msg, len, 8 + 256, SOCKS4_ERR_REJECT);
    /* No NUL at all: a flood is cut off at the limit, not read to the end. */
    pattern(uid, 299, 'a');
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip, uid, 299, NULL, 0);
    check_splits(msg, len - 1, 8 + 256, SOCKS4_ERR_REJECT);
}

/* n bytes of a valid host name in upper case (labels of 60), NUL-terminated; its normal
 * form is the same in lower case. */
static void
host_pattern(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(i % 61 == 60 && i + 1 < n ? '.' : 'A' + i % 26);
    out[n] = '\0';
}

static void
test_host_longest(void **state)
{
    char host[SOCKS4_HOST_MAX + 1], want[SOCKS4_HOST_MAX + 1];
    char uid[SOCKS4_USERID_MAX + 1];
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    /* The longest host name, 253 bytes and the root's dot, kept in normal form. */
    host_pattern(host, 253);
    for (size_t i = 0; i <= 253; i++)
        want[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] - 'A' + 'a' : host[i]);
    host[253] = '.';
    host[254] = '\0';
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, NULL, 0, host, 254);
    check_ok(msg, len, &st);
    assert_int_equal(st.dest.name_len, 253);
    assert_string_equal(st.dest.u.name, want);

    /* The longest request of all: 255-byte user-id and host name; such a host name
     * is no host's, refused once the request is whole. */
    pattern(uid, 255, 'a');
    host_pattern(host, 255);
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, uid, 255, host, 255);
    assert_int_equal(len, SOCKS4_REQUEST_MAX);
    check_splits(msg, len, len, SOCKS4_ERR_BAD_NAME);
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, uid, 255, host, 253);
    check_ok(msg, len, &st);
    assert_int_equal(st.userid_len, 255);
    assert_string_equal(st.userid, uid);
    assert_int_equal(st.dest.name_len, 253);
}

/* The 4a host goes through the same check as SOCKS5 names (issue #9). */
static void
test_4a_name_checked(void **state)
{
    static const char *const bad[] = {"127.0.0.1:25",  "[::1]",      "localhost..",
                                      "x.localhost..", "a b",        "a/b",
                                      "127.1",         "2130706433", "a..b"};
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, NULL, 0, bad[i], strlen(bad[i]));
        check_splits(msg, len, len, SOCKS4_ERR_BAD_NAME);
    }
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, NULL, 0, "127.0.0.1", 9);
    check_ok(msg, len, &st);
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(st.dest.port, 443);
    assert_int_equal(ntohl(st.dest.u.v4.s_addr), 0x7f000001);
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, NULL, 0, "LocalHost.", 10);
    check_ok(msg, len, &st);
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_DOMAIN);
    assert_string_equal(st.dest.u.name, "localhost");
}

static void
test_host_256_rejected(void **state)
{
    char host[300];
    char uid[SOCKS4_USERID_MAX + 1];
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    pattern(host, 256, 'A');
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, NULL, 0, host, 256);
    check_splits(msg, len, 9 + 256, SOCKS4_ERR_REJECT);

    pattern(uid, 255, 'a');
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, uid, 255, host, 256);
    check_splits(msg, len, SOCKS4_REQUEST_MAX, SOCKS4_ERR_REJECT);

    pattern(host, 299, 'A');
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 443, ip_4a, "u", 1, host, 299);
    check_splits(msg, len - 1, 10 + 256, SOCKS4_ERR_REJECT);
}

/* ---- other errors ---- */

/* Every first byte but 4 closes at once, whatever follows (SOCKS5, HTTP, ...). */
static void
test_bad_version(void **state)
{
    static const uint8_t ip[4] = {127, 0, 0, 1};
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip, "u", 1, NULL, 0);
    for (unsigned v = 0; v < 256; v++) {
        if (v == SOCKS4_VERSION)
            continue;
        msg[0] = (uint8_t)v;
        check_splits(msg, len, 1, SOCKS4_ERR_CLOSE);
        if (feed_exact(&st, msg, 1) != SOCKS4_ERR_CLOSE)
            fail_msg("version 0x%02x: not SOCKS4_ERR_CLOSE", v);
    }
    check_splits((const uint8_t *)"\x05\x01\x00", 3, 1, SOCKS4_ERR_CLOSE);
    check_splits((const uint8_t *)"GET / HTTP/1.0\r\n\r\n", 18, 1, SOCKS4_ERR_CLOSE);
}

/* An unknown command is rejected once the whole request is in, for SOCKS4 and 4a alike. */
static void
test_unknown_command(void **state)
{
    static const uint8_t ip[4] = {127, 0, 0, 1};
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (unsigned cd = 0; cd < 256; cd++) {
        if (cd == SOCKS4_CMD_CONNECT || cd == SOCKS4_CMD_BIND)
            continue;
        len = build(msg, 4, (uint8_t)cd, 80, ip, "u", 1, NULL, 0);
        check_splits(msg, len, len, SOCKS4_ERR_REJECT);
        len = build(msg, 4, (uint8_t)cd, 80, ip_4a, NULL, 0, "h", 1);
        check_splits(msg, len, len, SOCKS4_ERR_REJECT);
    }
    /* An over-long user-id still rejects at its limit, before the command is looked at. */
    char uid[300];
    pattern(uid, 299, 'a');
    len = build(msg, 4, 0x09, 80, ip, uid, 299, NULL, 0);
    check_splits(msg, len, 8 + 256, SOCKS4_ERR_REJECT);
}

static void
test_error_codes(void **state)
{
    (void)state;
    assert_int_equal(SOCKS4_ERR_REJECT, -91);
    assert_int_equal(-SOCKS4_ERR_REJECT, SOCKS4_REP_REJECTED);
    assert_true(SOCKS4_ERR_CLOSE < 0);
    assert_true(SOCKS4_ERR_CLOSE != SOCKS4_ERR_REJECT);
}

/* ---- what is consumed, what is written ---- */

/* Data pipelined after the request (optimistic clients) is never consumed. */
static void
test_pipelined_tail(void **state)
{
    static const uint8_t ip[4] = {203, 0, 113, 5};
    static const char tail[] = "GET / HTTP/1.1\r\n\r\n";
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip, "id", 2, NULL, 0);
    memcpy(msg + len, tail, sizeof(tail));
    assert_int_equal(feed_exact(&st, msg, len + sizeof(tail)), (ssize_t)len);
    assert_string_equal(st.userid, "id");

    len = build(msg, 4, SOCKS4_CMD_CONNECT, 80, ip_4a, "id", 2, "a.b", 3);
    memcpy(msg + len, tail, sizeof(tail));
    assert_int_equal(feed_exact(&st, msg, len + sizeof(tail)), (ssize_t)len);
    assert_string_equal(st.dest.u.name, "a.b");
    /* A second complete request behind the first is not taken either. */
    memcpy(msg + len, msg, len);
    assert_int_equal(feed_exact(&st, msg, 2 * len), (ssize_t)len);
}

/* A short request after a long one on the same state: nothing of the old one shows through. */
static void
test_state_overwritten(void **state)
{
    static const uint8_t ip[4] = {10, 0, 0, 1};
    char uid[SOCKS4_USERID_MAX + 1];
    char host[SOCKS4_HOST_MAX + 1];
    uint8_t msg[MSG_MAX];
    struct socks4 st;
    size_t len;

    (void)state;
    pattern(uid, 255, 'a');
    host_pattern(host, 253);
    len = build(msg, 4, SOCKS4_CMD_BIND, 1, ip_4a, uid, 255, host, 253);
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);

    len = build(msg, 4, SOCKS4_CMD_CONNECT, 2, ip_4a, "u", 1, "h", 1);
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);
    assert_int_equal(st.cmd, SOCKS4_CMD_CONNECT);
    assert_string_equal(st.userid, "u");
    assert_string_equal(st.dest.u.name, "h");
    assert_int_equal(st.dest.name_len, 1);

    len = build(msg, 4, SOCKS4_CMD_CONNECT, 3, ip, NULL, 0, NULL, 0);
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);
    assert_int_equal(st.is_4a, 0);
    assert_int_equal(st.userid_len, 0);
    assert_string_equal(st.userid, "");
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(st.dest.name_len, 0);
    assert_memory_equal(&st.dest.u.v4, ip, 4);
}

/* ---- reply ---- */

static void
test_reply_granted_ipv4(void **state)
{
    static const uint8_t want[] = {0x00, 0x5A, 0x1F, 0x90, 192, 0, 2, 33};
    struct sockaddr_in sin;
    uint8_t out[SOCKS4_REPLY_LEN + 2];

    (void)state;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(8080);
    assert_int_equal(inet_pton(AF_INET, "192.0.2.33", &sin.sin_addr), 1);
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(socks4_reply(out, SOCKS4_REP_GRANTED, (const struct sockaddr *)&sin), 8);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(out[8], 0xAA);
    assert_int_equal(out[9], 0xAA);
}

static void
check_reply_zero(uint8_t cd, const struct sockaddr *bnd)
{
    const uint8_t want[] = {0x00, cd, 0, 0, 0, 0, 0, 0};
    uint8_t out[SOCKS4_REPLY_LEN + 2];

    memset(out, 0xAA, sizeof(out));
    assert_int_equal(socks4_reply(out, cd, bnd), SOCKS4_REPLY_LEN);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(out[8], 0xAA);
}

/* NULL, IPv6 and any other family: 0.0.0.0:0, SOCKS4 has no other address form. */
static void
test_reply_zero_address(void **state)
{
    struct sockaddr_in6 sin6;
    struct sockaddr_un sun;

    (void)state;
    check_reply_zero(SOCKS4_REP_REJECTED, NULL);
    check_reply_zero(SOCKS4_REP_GRANTED, NULL);

    memset(&sin6, 0xEE, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    check_reply_zero(SOCKS4_REP_GRANTED, (const struct sockaddr *)&sin6);

    memset(&sun, 0xEE, sizeof(sun));
    sun.sun_family = AF_UNIX;
    check_reply_zero(SOCKS4_REP_REJECTED, (const struct sockaddr *)&sun);
}

static void
test_reply_every_code(void **state)
{
    struct sockaddr_in sin;
    uint8_t out[SOCKS4_REPLY_LEN];

    (void)state;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1);
    for (unsigned cd = 0; cd < 256; cd++) {
        assert_int_equal(socks4_reply(out, (uint8_t)cd, (const struct sockaddr *)&sin), 8);
        assert_int_equal(out[0], 0);
        assert_int_equal(out[1], cd);
        assert_int_equal(out[2], 0);
        assert_int_equal(out[3], 1);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_ipv4_exact),
        cmocka_unit_test(test_connect_with_userid),
        cmocka_unit_test(test_userid_binary),
        cmocka_unit_test(test_bind_accepted),
        cmocka_unit_test(test_port_byte_order),
        cmocka_unit_test(test_not_4a_addresses),
        cmocka_unit_test(test_4a_exact),
        cmocka_unit_test(test_4a_every_marker),
        cmocka_unit_test(test_4a_empty_host),
        cmocka_unit_test(test_userid_255_accepted),
        cmocka_unit_test(test_userid_256_rejected),
        cmocka_unit_test(test_host_longest),
        cmocka_unit_test(test_4a_name_checked),
        cmocka_unit_test(test_host_256_rejected),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_unknown_command),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_pipelined_tail),
        cmocka_unit_test(test_state_overwritten),
        cmocka_unit_test(test_reply_granted_ipv4),
        cmocka_unit_test(test_reply_zero_address),
        cmocka_unit_test(test_reply_every_code),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
