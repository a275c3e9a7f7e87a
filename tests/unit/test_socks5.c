/*
 * test_socks5.c - cmocka unit tests for the SOCKS5 parser, reply encoder and UDP ASSOCIATE
 * datagram header (src/socks5.c).
 *
 * Links socks5.o alone: the module is pure, so nothing is faked. Every message is fed from a
 * heap block of exactly its length, so under SAN=1 AddressSanitizer flags any read past the
 * bytes the parser was given. Single-threaded; never touches a socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "socks5.h"

/* Room for the longest request plus a pipelined tail. */
#define MSG_MAX (SOCKS5_REQUEST_MAX + 64)

static const uint8_t greeting_none[] = {0x05, 0x01, 0x00};
static const uint8_t greeting_password[] = {0x05, 0x01, 0x02};

/*
 * Feed a copy of msg[0..len) held in a heap block of exactly len bytes: an over-read is then
 * caught by ASan instead of silently reading the test's larger buffer.
 */
static ssize_t
feed_exact(struct socks5 *st, const uint8_t *msg, size_t len)
{
    uint8_t *buf = malloc(len);
    ssize_t r;

    if (len > 0) {
        assert_non_null(buf);
        memcpy(buf, msg, len);
    }
    r = socks5_feed(st, buf, len);
    free(buf);
    return r;
}

/*
 * A parser freshly started, with a password required or not, and brought to phase the way a
 * session does: for SOCKS5_PHASE_AUTH past a greeting offering 0x02 (pw must be set), for
 * SOCKS5_PHASE_REQUEST past the greeting and, with pw, past the sub-negotiation (whose
 * success the session marks by setting the phase).
 */
static void
start_in_mode(struct socks5 *st, enum socks5_phase phase, bool pw)
{
    socks5_init(st);
    socks5_set_password_required(st, pw);
    if (phase == SOCKS5_PHASE_GREETING)
        return;
    if (pw) {
        assert_int_equal(feed_exact(st, greeting_password, sizeof(greeting_password)),
                         (ssize_t)sizeof(greeting_password));
        assert_int_equal(st->phase, SOCKS5_PHASE_AUTH);
        assert_int_equal(st->method, SOCKS5_METHOD_PASSWORD);
        if (phase == SOCKS5_PHASE_REQUEST)
            st->phase = SOCKS5_PHASE_REQUEST;
    } else {
        assert_int_equal(phase, SOCKS5_PHASE_REQUEST);
        assert_int_equal(feed_exact(st, greeting_none, sizeof(greeting_none)),
                         (ssize_t)sizeof(greeting_none));
        assert_int_equal(st->phase, SOCKS5_PHASE_REQUEST);
    }
    assert_int_equal(st->phase, phase);
}

static void
start_in(struct socks5 *st, enum socks5_phase phase)
{
    start_in_mode(st, phase, false);
}

/*
 * Feed every prefix msg[0..k), k = 0..n-1, then the whole message. Prefixes shorter than
 * decidable_at must answer 0 and leave the state byte-for-byte unchanged (phase included);
 * prefixes from decidable_at on, and the whole message, must answer want. Each prefix is fed
 * twice: to a fresh parser, and to one parser that keeps being offered the growing buffer,
 * as a connection accumulating bytes would.
 */
static void
check_splits_mode(enum socks5_phase phase, bool pw, const uint8_t *msg, size_t n,
                  size_t decidable_at, ssize_t want)
{
    struct socks5 shared;
    struct socks5 fresh;
    struct socks5 before;

    assert_true(decidable_at <= n);
    start_in_mode(&shared, phase, pw);
    for (size_t k = 0; k < n; k++) {
        start_in_mode(&fresh, phase, pw);
        memcpy(&before, &fresh, sizeof(before));
        ssize_t r = feed_exact(&fresh, msg, k);
        if (k < decidable_at) {
            if (r != 0)
                fail_msg("prefix %zu of %zu: got %zd, want 0 (need more)", k, n, r);
            assert_int_equal(fresh.phase, phase);
            assert_memory_equal(&fresh, &before, sizeof(before));

            memcpy(&before, &shared, sizeof(before));
            r = feed_exact(&shared, msg, k);
            if (r != 0)
                fail_msg("shared parser, prefix %zu of %zu: got %zd, want 0", k, n, r);
            assert_memory_equal(&shared, &before, sizeof(before));
        } else if (r != want) {
            fail_msg("prefix %zu of %zu: got %zd, want %zd (decidable at %zu)", k, n, r, want,
                     decidable_at);
        }
    }
    start_in_mode(&fresh, phase, pw);
    assert_int_equal(feed_exact(&fresh, msg, n), want);
    if (decidable_at == n)
        assert_int_equal(feed_exact(&shared, msg, n), want);
}

static void
check_splits(enum socks5_phase phase, const uint8_t *msg, size_t n, size_t decidable_at,
             ssize_t want)
{
    check_splits_mode(phase, false, msg, n, decidable_at, want);
}

/*
 * Build VER CMD RSV ATYP DST.ADDR DST.PORT into out. For SOCKS5_ATYP_DOMAIN the length byte
 * is alen, written before the alen bytes of addr. Returns the message length.
 */
/* n bytes of a valid host name in upper case (labels of 60, so no label passes 63),
 * NUL-terminated in out[n]; its normal form is the same in lower case. */
static void
long_name(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(i % 61 == 60 && i + 1 < n ? '.' : 'A' + i % 26);
    out[n] = '\0';
}

static void
lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static size_t
build_request(uint8_t *out, uint8_t ver, uint8_t cmd, uint8_t atyp, const void *addr, size_t alen,
              uint16_t port)
{
    size_t off = 0;

    out[off++] = ver;
    out[off++] = cmd;
    out[off++] = 0x00;
    out[off++] = atyp;
    if (atyp == SOCKS5_ATYP_DOMAIN)
        out[off++] = (uint8_t)alen;
    if (alen > 0)
        memcpy(out + off, addr, alen);
    off += alen;
    out[off++] = (uint8_t)(port >> 8);
    out[off++] = (uint8_t)(port & 0xFF);
    return off;
}

static size_t
build_connect_v4(uint8_t *out, const char *ip, uint16_t port)
{
    struct in_addr a;

    assert_int_equal(inet_pton(AF_INET, ip, &a), 1);
    return build_request(out, SOCKS5_VERSION, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_IPV4, &a, 4, port);
}

/* ---- socks5_init ---- */

static void
test_init_resets_everything(void **state)
{
    struct socks5 st;

    (void)state;
    memset(&st, 0xAA, sizeof(st));
    socks5_init(&st);
    assert_int_equal(st.phase, SOCKS5_PHASE_GREETING);
    assert_false(st.auth_required);
    assert_int_equal(st.method, SOCKS5_METHOD_REJECT);
    assert_int_equal(st.cmd, 0);
    assert_int_equal(st.offered, 0);
    assert_int_equal(st.dest.atyp, 0);
    assert_int_equal(st.dest.name_len, 0);
    assert_int_equal(st.dest.port, 0);
}

/* ---- greeting ---- */

/* A greeting that must succeed: consumed == len, no-auth chosen, offered as given. */
static void
check_greeting_ok(const uint8_t *msg, size_t len, uint32_t offered)
{
    struct socks5 st;

    socks5_init(&st);
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);
    assert_int_equal(st.phase, SOCKS5_PHASE_REQUEST);
    assert_int_equal(st.method, SOCKS5_METHOD_NONE);
    assert_int_equal(st.offered, offered);
    check_splits(SOCKS5_PHASE_GREETING, msg, len, len, (ssize_t)len);
}

/* A greeting with no acceptable method: decidable only once all NMETHODS bytes are in. */
static void
check_greeting_no_method(const uint8_t *msg, size_t len, uint32_t offered)
{
    struct socks5 st;

    socks5_init(&st);
    assert_int_equal(feed_exact(&st, msg, len), SOCKS5_ERR_NO_METHOD);
    assert_int_equal(st.method, SOCKS5_METHOD_REJECT);
    assert_int_equal(st.offered, offered);
    check_splits(SOCKS5_PHASE_GREETING, msg, len, len, SOCKS5_ERR_NO_METHOD);
}

static void
test_greeting_none_only(void **state)
{
    (void)state;
    check_greeting_ok(greeting_none, sizeof(greeting_none), 1u << SOCKS5_METHOD_NONE);
}

static void
test_greeting_password_then_none(void **state)
{
    static const uint8_t msg[] = {0x05, 0x02, 0x02, 0x00};

    (void)state;
    check_greeting_ok(msg, sizeof(msg), 1u << SOCKS5_METHOD_NONE | 1u << SOCKS5_METHOD_PASSWORD);
}

static void
test_greeting_three_methods(void **state)
{
    static const uint8_t msg[] = {0x05, 0x03, 0x00, 0x01, 0x02};

    (void)state;
    check_greeting_ok(msg, sizeof(msg), 0x7);
}

/* Methods >= 32 (and 0xFF) are ignored, not shifted into offered (that shift would be UB). */
static void
test_greeting_high_methods_ignored(void **state)
{
    static const uint8_t msg[] = {0x05, 0x04, 0xFF, 0x80, 0x20, 0x00};

    (void)state;
    check_greeting_ok(msg, sizeof(msg), 1u << SOCKS5_METHOD_NONE);
}

/* NMETHODS = 255, every value 0x00..0xFE offered once: 257 bytes, the longest greeting. */
static void
test_greeting_255_distinct_methods(void **state)
{
    uint8_t msg[SOCKS5_GREETING_MAX];

    (void)state;
    msg[0] = 0x05;
    msg[1] = 255;
    for (size_t i = 0; i < 255; i++)
        msg[2 + i] = (uint8_t)i;
    check_greeting_ok(msg, sizeof(msg), 0xFFFFFFFFu);
}

/* NMETHODS = 255 with no-auth as the very last byte: the whole list must be scanned. */
static void
test_greeting_255_methods_none_last(void **state)
{
    uint8_t msg[SOCKS5_GREETING_MAX];

    (void)state;
    msg[0] = 0x05;
    msg[1] = 255;
    memset(msg + 2, 0xFF, 254);
    msg[SOCKS5_GREETING_MAX - 1] = 0x00;
    check_greeting_ok(msg, sizeof(msg), 1u << SOCKS5_METHOD_NONE);
}

static void
test_greeting_nmethods_zero(void **state)
{
    static const uint8_t msg[] = {0x05, 0x00};

    (void)state;
    check_greeting_no_method(msg, sizeof(msg), 0);
}

static void
test_greeting_only_password(void **state)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x02};

    (void)state;
    check_greeting_no_method(msg, sizeof(msg), 1u << SOCKS5_METHOD_PASSWORD);
}

static void
test_greeting_only_gssapi(void **state)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x01};

    (void)state;
    check_greeting_no_method(msg, sizeof(msg), 1u << SOCKS5_METHOD_GSSAPI);
}

static void
test_greeting_gssapi_and_password(void **state)
{
    static const uint8_t msg[] = {0x05, 0x02, 0x01, 0x02};

    (void)state;
    check_greeting_no_method(msg, sizeof(msg), 0x6);
}

static void
test_greeting_255_methods_without_none(void **state)
{
    uint8_t msg[SOCKS5_GREETING_MAX];

    (void)state;
    msg[0] = 0x05;
    msg[1] = 255;
    memset(msg + 2, 0xFF, 255);
    check_greeting_no_method(msg, sizeof(msg), 0);
}

/* A SOCKS4 CONNECT to 1.2.3.4:80: not SOCKS5, closed silently from the first byte. */
static void
test_greeting_socks4(void **state)
{
    static const uint8_t msg[] = {0x04, 0x01, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00};
    struct socks5 st;

    (void)state;
    socks5_init(&st);
    assert_int_equal(feed_exact(&st, msg, sizeof(msg)), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, msg, 1), SOCKS5_ERR_CLOSE);
    check_splits(SOCKS5_PHASE_GREETING, msg, sizeof(msg), 1, SOCKS5_ERR_CLOSE);
}

/* An HTTP request sent to the SOCKS port: 'G' (0x47) is not version 5. */
static void
test_greeting_http(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    struct socks5 st;

    (void)state;
    socks5_init(&st);
    assert_int_equal(feed_exact(&st, (const uint8_t *)req, 1), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, (const uint8_t *)req, strlen(req)), SOCKS5_ERR_CLOSE);
    check_splits(SOCKS5_PHASE_GREETING, (const uint8_t *)req, strlen(req), 1, SOCKS5_ERR_CLOSE);
}

/* Every first byte but 0x05 closes at once, whatever follows. */
static void
test_greeting_every_bad_version(void **state)
{
    uint8_t msg[3] = {0x00, 0x01, 0x00};
    struct socks5 st;

    (void)state;
    for (unsigned v = 0; v < 256; v++) {
        if (v == SOCKS5_VERSION)
            continue;
        msg[0] = (uint8_t)v;
        socks5_init(&st);
        if (feed_exact(&st, msg, 1) != SOCKS5_ERR_CLOSE)
            fail_msg("version 0x%02x, 1 byte: not SOCKS5_ERR_CLOSE", v);
        if (feed_exact(&st, msg, sizeof(msg)) != SOCKS5_ERR_CLOSE)
            fail_msg("version 0x%02x, 3 bytes: not SOCKS5_ERR_CLOSE", v);
    }
}

/* Greeting and request arrive in one read: only the greeting is consumed. */
static void
test_greeting_pipelined_request(void **state)
{
    uint8_t buf[MSG_MAX];
    struct socks5 st;
    size_t off = sizeof(greeting_none);
    size_t rlen;

    (void)state;
    memcpy(buf, greeting_none, off);
    rlen = build_connect_v4(buf + off, "10.0.0.1", 80);
    socks5_init(&st);
    assert_int_equal(feed_exact(&st, buf, off + rlen), 3);
    assert_int_equal(st.phase, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, buf + off, rlen), 10);
    assert_int_equal(st.phase, SOCKS5_PHASE_DONE);
    assert_int_equal(st.dest.port, 80);
}

/* A long method list followed by bytes that are not methods: exactly 2 + NMETHODS consumed. */
static void
test_greeting_trailing_bytes_not_consumed(void **state)
{
    uint8_t msg[2 + 5 + 7];
    struct socks5 st;

    (void)state;
    msg[0] = 0x05;
    msg[1] = 5;
    memcpy(msg + 2, (const uint8_t[]){0x02, 0x80, 0x00, 0x01, 0x03}, 5);
    /* The tail holds bytes a greedy parser might take as more methods. */
    memset(msg + 7, 0x00, 7);
    socks5_init(&st);
    assert_int_equal(feed_exact(&st, msg, sizeof(msg)), 7);
    assert_int_equal(st.offered, 0xF);
}

/* ---- request ---- */

/*
 * A request that must succeed, fed in the request phase: checks consumed, phase and cmd (the
 * command byte of msg), with and without a password having been required.
 */
static void
feed_request_ok(struct socks5 *st, const uint8_t *msg, size_t len)
{
    check_splits_mode(SOCKS5_PHASE_REQUEST, true, msg, len, len, (ssize_t)len);
    start_in_mode(st, SOCKS5_PHASE_REQUEST, true);
    assert_int_equal(feed_exact(st, msg, len), (ssize_t)len);
    assert_int_equal(st->method, SOCKS5_METHOD_PASSWORD);
    assert_int_equal(st->cmd, msg[1]);

    start_in(st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(st, msg, len), (ssize_t)len);
    assert_int_equal(st->phase, SOCKS5_PHASE_DONE);
    assert_int_equal(st->cmd, msg[1]);
    assert_int_equal(st->method, SOCKS5_METHOD_NONE);
    check_splits(SOCKS5_PHASE_REQUEST, msg, len, len, (ssize_t)len);
}

/* A request that must fail with want once decidable_at bytes are in, phase left unchanged. */
static void
check_request_err(const uint8_t *msg, size_t len, size_t decidable_at, ssize_t want)
{
    struct socks5 st;

    start_in(&st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, msg, len), want);
    assert_int_equal(st.phase, SOCKS5_PHASE_REQUEST);
    check_splits(SOCKS5_PHASE_REQUEST, msg, len, decidable_at, want);
}

static void
test_request_connect_ipv4(void **state)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x01, 192, 0, 2, 10, 0x1F, 0x90};
    struct socks5 st;
    struct in_addr want;

    (void)state;
    assert_int_equal(inet_pton(AF_INET, "192.0.2.10", &want), 1);
    feed_request_ok(&st, msg, sizeof(msg));
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(st.dest.name_len, 0);
    assert_int_equal(st.dest.port, 8080);
    assert_memory_equal(&st.dest.u.v4, &want, 4);
    assert_int_equal(st.dest.u.v4.s_addr, htonl(0xC000020A));
}

static void
test_request_connect_ipv6(void **state)
{
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    struct in6_addr a;
    size_t len;

    (void)state;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1:2:3:4", &a), 1);
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_IPV6, &a, 16, 443);
    assert_int_equal(len, 22);
    assert_int_equal(msg[20], 0x01);
    assert_int_equal(msg[21], 0xBB);
    feed_request_ok(&st, msg, len);
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV6);
    assert_int_equal(st.dest.name_len, 0);
    assert_int_equal(st.dest.port, 443);
    assert_memory_equal(&st.dest.u.v6, &a, 16);
}

static void
test_request_connect_domain_len1(void **state)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x03, 0x01, 'a', 0x00, 0x50};
    struct socks5 st;

    (void)state;
    feed_request_ok(&st, msg, sizeof(msg));
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_DOMAIN);
    assert_int_equal(st.dest.name_len, 1);
    assert_int_equal(st.dest.port, 80);
    assert_string_equal(st.dest.u.name, "a");
}

/* The longest name a host can have, 253 bytes and the root's dot, kept in normal form; one
 * byte more (the most SOCKS5 can carry is 255) is no host name. */
static void
test_request_connect_domain_longest(void **state)
{
    uint8_t msg[MSG_MAX];
    char name[256], want[256];
    struct socks5 st;
    size_t len;

    (void)state;
    long_name(name, 253);
    memcpy(want, name, sizeof(want));
    lower(want);
    name[253] = '.';
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, name, 254, 0xFFFF);
    /* Dirty the destination first: the terminator must be written, not inherited. */
    start_in(&st, SOCKS5_PHASE_REQUEST);
    memset(st.dest.u.name, 'X', sizeof(st.dest.u.name));
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);
    assert_int_equal(st.dest.atyp, SOCKS5_ATYP_DOMAIN);
    assert_int_equal(st.dest.name_len, 253);
    assert_int_equal(st.dest.u.name[253], '\0');
    assert_string_equal(st.dest.u.name, want);
    assert_int_equal(st.dest.port, 65535);
    feed_request_ok(&st, msg, len);

    long_name(name, 255);
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, name, 255, 0xFFFF);
    assert_int_equal(len, SOCKS5_REQUEST_MAX);
    check_request_err(msg, len, len, SOCKS5_ERR_BAD_NAME);
}

/* A short domain after a long one: the terminator follows the new name. */
static void
test_request_domain_terminated(void **state)
{
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    size_t len;

    (void)state;
    start_in(&st, SOCKS5_PHASE_REQUEST);
    memset(st.dest.u.name, 'X', sizeof(st.dest.u.name));
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, "example.org", 11, 53);
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);
    assert_int_equal(st.dest.name_len, 11);
    assert_int_equal(strlen(st.dest.u.name), 11);
    assert_string_equal(st.dest.u.name, "example.org");
}

/* DST.PORT is big-endian (network order) on the wire and host order in dest.port. */
static void
test_request_port_byte_order(void **state)
{
    static const struct {
        uint8_t hi;
        uint8_t lo;
        uint16_t port;
    } cases[] = {
        {0x1F, 0x90, 8080}, {0xFF, 0xFF, 65535}, {0x00, 0x00, 0},
        {0x01, 0x00, 256},  {0x00, 0x01, 1},     {0x80, 0x00, 32768},
    };
    uint8_t msg[10] = {0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 0};
    struct socks5 st;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msg[8] = cases[i].hi;
        msg[9] = cases[i].lo;
        start_in(&st, SOCKS5_PHASE_REQUEST);
        assert_int_equal(feed_exact(&st, msg, sizeof(msg)), 10);
        assert_int_equal(st.dest.port, cases[i].port);
    }
}

/* The same port through each address type: the port offset follows the address length. */
static void
test_request_port_every_atyp(void **state)
{
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    struct in6_addr a6;
    size_t len;

    (void)state;
    memset(&a6, 0x1F, sizeof(a6));
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_IPV6, &a6, 16, 0x1F90);
    start_in(&st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, msg, len), 22);
    assert_int_equal(st.dest.port, 8080);

    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, "x1f", 3, 0x1F90);
    start_in(&st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, msg, len), 10);
    assert_int_equal(st.dest.port, 8080);
    assert_int_equal(st.dest.name_len, 3);
}

/* RSV is not checked: a non-zero reserved byte is accepted (current, lenient behaviour). */
static void
test_request_rsv_ignored(void **state)
{
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    size_t len;

    (void)state;
    len = build_connect_v4(msg, "127.0.0.1", 1080);
    msg[2] = 0xFF;
    feed_request_ok(&st, msg, len);
    assert_int_equal(st.dest.port, 1080);
}

static void
test_request_bad_version(void **state)
{
    static const uint8_t versions[] = {0x00, 0x04, 0x06, 0x47, 0xFF};
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(versions); i++) {
        len = build_connect_v4(msg, "127.0.0.1", 80);
        msg[0] = versions[i];
        check_request_err(msg, len, 1, -SOCKS5_REP_GENERAL);
        /* The version is judged before anything else, even an unknown ATYP. */
        msg[3] = 0x09;
        check_request_err(msg, len, 1, -SOCKS5_REP_GENERAL);
    }
}

/* An unknown command is answered only once the whole request is in (in step with the client). */
static void
test_request_unknown_cmd(void **state)
{
    static const uint8_t cmds[] = {0x00, 0x04, 0x05, 0x80, 0xFF};
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(cmds); i++) {
        len = build_connect_v4(msg, "127.0.0.1", 80);
        msg[1] = cmds[i];
        check_request_err(msg, len, len, -SOCKS5_REP_CMD_UNSUPP);
        len = build_request(msg, 0x05, cmds[i], SOCKS5_ATYP_DOMAIN, "host", 4, 80);
        check_request_err(msg, len, len, -SOCKS5_REP_CMD_UNSUPP);
    }
}

/*
 * BIND and UDP ASSOCIATE are accepted like CONNECT, with every address type; st->cmd says
 * which. UDP ASSOCIATE clients commonly send 0.0.0.0:0 (address not known yet).
 */
static void
test_request_bind_udp_accepted(void **state)
{
    static const uint8_t cmds[] = {SOCKS5_CMD_CONNECT, SOCKS5_CMD_BIND, SOCKS5_CMD_UDP};
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    struct in6_addr a6;
    size_t len;

    (void)state;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::5", &a6), 1);
    for (size_t i = 0; i < sizeof(cmds); i++) {
        len = build_connect_v4(msg, "0.0.0.0", 0);
        msg[1] = cmds[i];
        feed_request_ok(&st, msg, len);
        assert_int_equal(st.cmd, cmds[i]);
        assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV4);
        assert_int_equal(st.dest.u.v4.s_addr, 0);
        assert_int_equal(st.dest.port, 0);

        len = build_request(msg, 0x05, cmds[i], SOCKS5_ATYP_IPV6, &a6, 16, 5000);
        feed_request_ok(&st, msg, len);
        assert_int_equal(st.cmd, cmds[i]);
        assert_int_equal(st.dest.atyp, SOCKS5_ATYP_IPV6);
        assert_memory_equal(&st.dest.u.v6, &a6, 16);
        assert_int_equal(st.dest.port, 5000);

        len = build_request(msg, 0x05, cmds[i], SOCKS5_ATYP_DOMAIN, "h", 1, 9);
        feed_request_ok(&st, msg, len);
        assert_int_equal(st.cmd, cmds[i]);
        assert_int_equal(st.dest.atyp, SOCKS5_ATYP_DOMAIN);
        assert_string_equal(st.dest.u.name, "h");
        assert_int_equal(st.dest.port, 9);
    }
}

/* Commands 0x02 and 0x03 with a bad address still get the address error, not a command one. */
static void
test_request_bind_udp_errors(void **state)
{
    static const uint8_t cmds[] = {SOCKS5_CMD_BIND, SOCKS5_CMD_UDP};
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(cmds); i++) {
        len = build_connect_v4(msg, "127.0.0.1", 80);
        msg[1] = cmds[i];
        msg[3] = 0x05;
        check_request_err(msg, len, 4, -SOCKS5_REP_ATYP_UNSUPP);
        len = build_request(msg, 0x05, cmds[i], SOCKS5_ATYP_DOMAIN, NULL, 0, 80);
        check_request_err(msg, len, len, SOCKS5_ERR_BAD_NAME);
        len = build_request(msg, 0x05, cmds[i], SOCKS5_ATYP_DOMAIN, "a\0b", 3, 80);
        check_request_err(msg, len, len, SOCKS5_ERR_BAD_NAME);
        len = build_request(msg, 0x05, cmds[i], SOCKS5_ATYP_DOMAIN, "a", 1, 80);
        msg[0] = 0x04;
        check_request_err(msg, len, 1, -SOCKS5_REP_GENERAL);
    }
}

/* An unknown ATYP is decidable as soon as byte 3 is in; no address bytes need follow. */
static void
test_request_unknown_atyp(void **state)
{
    static const uint8_t atyps[] = {0x00, 0x02, 0x05, 0x06, 0xFF};
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(atyps); i++) {
        len = build_connect_v4(msg, "127.0.0.1", 80);
        msg[3] = atyps[i];
        check_request_err(msg, len, 4, -SOCKS5_REP_ATYP_UNSUPP);
        /* Just the 4-byte header. */
        check_request_err(msg, 4, 4, -SOCKS5_REP_ATYP_UNSUPP);
        /* The address type is judged before the command. */
        msg[1] = 0x09;
        check_request_err(msg, len, 4, -SOCKS5_REP_ATYP_UNSUPP);
    }
}

/* A zero-length domain is no host name: refused once the whole request (the port) is in. */
static void
test_request_domain_len0(void **state)
{
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, NULL, 0, 80);
    assert_int_equal(len, 7);
    check_request_err(msg, len, len, SOCKS5_ERR_BAD_NAME);
}

/* A NUL anywhere in the name is refused, once the whole request is in. */
static void
test_request_domain_with_nul(void **state)
{
    static const struct {
        const char *name;
        size_t len;
    } cases[] = {
        {"a\0b", 3}, {"\0ab", 3}, {"ab\0", 3}, {"\0", 1}, {"example\0.com", 12},
    };
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, cases[i].name,
                            cases[i].len, 443);
        check_request_err(msg, len, len, SOCKS5_ERR_BAD_NAME);
    }
}

/*
 * The name check (issue #9): DST.PORT is the only port of a request, so a name that
 * carries one ("127.0.0.1:25") or anything else no host name has is refused before any
 * rule sees it; an IP literal becomes that address; names come out in one normal form.
 */
static void
test_request_name_checked(void **state)
{
    static const struct {
        const char *name;
        int atyp;         /* 0: refused as SOCKS5_ERR_BAD_NAME */
        const char *want; /* the normal form, or the address as text */
    } cases[] = {
        {"127.0.0.1:25", 0, NULL},
        {"[::1]", 0, NULL},
        {"[::1]:25", 0, NULL},
        {"::1:25", SOCKS5_ATYP_IPV6, "::1:25"}, /* a valid IPv6 literal, not a port */
        {"fe80::1%eth0", 0, NULL},
        {"a.example:443", 0, NULL},
        {"localhost..", 0, NULL},
        {"LOCALHOST..", 0, NULL},
        {"x.localhost..", 0, NULL},
        {".localhost", 0, NULL},
        {"a..b", 0, NULL},
        {".", 0, NULL},
        {"..", 0, NULL},
        {"a b", 0, NULL},
        {"a/b", 0, NULL},
        {"a\tb", 0, NULL},
        {"a\x7f", 0, NULL},
        {"\x01a", 0, NULL},
        {"caf\xc3\xa9.example", 0, NULL},
        {"*.example", 0, NULL},
        {"127.1", 0, NULL},
        {"2130706433", 0, NULL},
        {"1.2.3.4.5", 0, NULL},
        {"127.000.000.001", 0, NULL},
        {"0x7f.0.0.1", 0, NULL},
        {"a.123", 0, NULL},
        {"127.0.0.1", SOCKS5_ATYP_IPV4, "127.0.0.1"},
        {"::1", SOCKS5_ATYP_IPV6, "::1"},
        {"::ffff:127.0.0.1", SOCKS5_ATYP_IPV6, "::ffff:127.0.0.1"},
        {"LocalHost.", SOCKS5_ATYP_DOMAIN, "localhost"},
        {"Example.COM", SOCKS5_ATYP_DOMAIN, "example.com"},
        {"_srv.a-b.example", SOCKS5_ATYP_DOMAIN, "_srv.a-b.example"},
        {"xn--bcher-kva.example", SOCKS5_ATYP_DOMAIN, "xn--bcher-kva.example"},
        {"0x7f000001", SOCKS5_ATYP_DOMAIN, "0x7f000001"},
        {"123.example", SOCKS5_ATYP_DOMAIN, "123.example"},
    };
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *n = cases[i].name;
        len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, n, strlen(n), 443);
        if (!cases[i].atyp) {
            check_request_err(msg, len, len, SOCKS5_ERR_BAD_NAME);
            continue;
        }
        start_in(&st, SOCKS5_PHASE_REQUEST);
        if (feed_exact(&st, msg, len) != (ssize_t)len)
            fail_msg("'%s' was refused", n);
        assert_int_equal(st.dest.atyp, cases[i].atyp);
        assert_int_equal(st.dest.port, 443);
        if (cases[i].atyp == SOCKS5_ATYP_DOMAIN) {
            assert_string_equal(st.dest.u.name, cases[i].want);
            assert_int_equal(st.dest.name_len, strlen(cases[i].want));
        } else {
            char text[INET6_ADDRSTRLEN];
            int fam = cases[i].atyp == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6;
            assert_non_null(inet_ntop(fam, &st.dest.u, text, sizeof(text)));
            struct in6_addr a, b;
            assert_int_equal(inet_pton(fam, text, &a), 1);
            assert_int_equal(inet_pton(fam, cases[i].want, &b), 1);
            assert_memory_equal(&a, &b, fam == AF_INET ? 4 : 16);
            assert_int_equal(st.dest.name_len, 0);
        }
    }
}

/* What the access log keeps of a refused name: as sent, cut at a NUL, with port and command. */
static void
test_bad_name_for_log(void **state)
{
    uint8_t msg[MSG_MAX];
    char name[256];
    uint16_t port;
    uint8_t cmd;
    size_t len;

    (void)state;
    len = build_request(msg, 0x05, SOCKS5_CMD_BIND, SOCKS5_ATYP_DOMAIN, "127.0.0.1:25", 12, 443);
    assert_int_equal(socks_bad_name(msg, len, name, &port, &cmd), 0);
    assert_string_equal(name, "127.0.0.1:25");
    assert_int_equal(port, 443);
    assert_int_equal(cmd, SOCKS5_CMD_BIND);
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, "a\0b", 3, 80);
    assert_int_equal(socks_bad_name(msg, len, name, &port, &cmd), 0);
    assert_string_equal(name, "a");
    /* Not a whole request with a name: nothing. */
    assert_int_equal(socks_bad_name(msg, len - 1, name, &port, &cmd), -1);
    len = build_connect_v4(msg, "127.0.0.1", 80);
    assert_int_equal(socks_bad_name(msg, len, name, &port, &cmd), -1);
    /* SOCKS4a: after the user-id. */
    static const uint8_t v4a[] = {4, 1, 0x01, 0xbb, 0, 0, 0, 1, 'u', 0, 'x', '.', '.', 0};
    assert_int_equal(socks_bad_name(v4a, sizeof(v4a), name, &port, &cmd), 0);
    assert_string_equal(name, "x..");
    assert_int_equal(port, 443);
    assert_int_equal(cmd, SOCKS5_CMD_CONNECT);
    assert_int_equal(socks_bad_name(v4a, sizeof(v4a) - 1, name, &port, &cmd), -1);
}

/* A label of 63 bytes is the longest; 64 is no host name. */
static void
test_request_name_label_63(void **state)
{
    uint8_t msg[MSG_MAX];
    char name[80];
    struct socks5 st;
    size_t len;

    (void)state;
    memset(name, 'a', 63);
    memcpy(name + 63, ".io", 4);
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, name, 66, 80);
    start_in(&st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);
    assert_string_equal(st.dest.u.name, name);
    memset(name, 'a', 64);
    memcpy(name + 64, ".io", 4);
    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, name, 67, 80);
    check_request_err(msg, len, len, SOCKS5_ERR_BAD_NAME);
}

/* Data sent right after the request (optimistic clients) stays for the relay. */
static void
test_request_pipelined_payload(void **state)
{
    static const char payload[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    size_t len;

    (void)state;
    len = build_connect_v4(msg, "198.51.100.7", 80);
    memcpy(msg + len, payload, strlen(payload));
    start_in(&st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, msg, len + strlen(payload)), 10);
    assert_int_equal(st.phase, SOCKS5_PHASE_DONE);
    assert_int_equal(st.dest.port, 80);

    len = build_request(msg, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, "a.b", 3, 80);
    /* A tail that starts like a longer name must not be read as one. */
    memset(msg + len, 'c', 40);
    start_in(&st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, msg, len + 40), (ssize_t)len);
    assert_int_equal(st.dest.name_len, 3);
    assert_string_equal(st.dest.u.name, "a.b");
}

/* After the request nothing more is parsed: any feed, even of 0 bytes, closes. */
static void
test_feed_after_done(void **state)
{
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    size_t len;

    (void)state;
    len = build_connect_v4(msg, "127.0.0.1", 80);
    start_in(&st, SOCKS5_PHASE_REQUEST);
    assert_int_equal(feed_exact(&st, msg, len), 10);
    assert_int_equal(feed_exact(&st, msg, len), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, greeting_none, sizeof(greeting_none)), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, msg, 0), SOCKS5_ERR_CLOSE);
    assert_int_equal(st.phase, SOCKS5_PHASE_DONE);
}

/* The whole handshake in one buffer, consumed message by message as the session does. */
static void
test_handshake_one_buffer(void **state)
{
    uint8_t buf[MSG_MAX];
    struct socks5 st;
    size_t off = 0;
    size_t len;
    ssize_t r;

    (void)state;
    memcpy(buf, (const uint8_t[]){0x05, 0x02, 0x00, 0x02}, 4);
    len = 4;
    len +=
        build_request(buf + len, 0x05, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, "x.test", 6, 8443);
    buf[len++] = 0xEE;
    socks5_init(&st);
    r = feed_exact(&st, buf + off, len - off);
    assert_int_equal(r, 4);
    off += (size_t)r;
    r = feed_exact(&st, buf + off, len - off);
    assert_int_equal(r, 13);
    off += (size_t)r;
    assert_int_equal(off, len - 1);
    assert_int_equal(st.dest.port, 8443);
    assert_string_equal(st.dest.u.name, "x.test");
    assert_int_equal(feed_exact(&st, buf + off, len - off), SOCKS5_ERR_CLOSE);
}

/* ---- replies ---- */

static void
test_method_reply(void **state)
{
    static const uint8_t methods[] = {SOCKS5_METHOD_NONE, SOCKS5_METHOD_PASSWORD,
                                      SOCKS5_METHOD_REJECT};
    uint8_t out[4];

    (void)state;
    for (size_t i = 0; i < sizeof(methods); i++) {
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(socks5_method_reply(out, methods[i]), 2);
        assert_int_equal(out[0], 0x05);
        assert_int_equal(out[1], methods[i]);
        assert_int_equal(out[2], 0xAA);
        assert_int_equal(out[3], 0xAA);
    }
}

static void
test_reply_ipv4(void **state)
{
    static const uint8_t want[] = {0x05, 0x00, 0x00, 0x01, 192, 0, 2, 1, 0x04, 0x38};
    struct sockaddr_in sin;
    uint8_t out[SOCKS5_REPLY_MAX + 2];

    (void)state;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1080);
    assert_int_equal(inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr), 1);
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(socks5_reply(out, SOCKS5_REP_SUCCEEDED, (const struct sockaddr *)&sin), 10);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(out[10], 0xAA);
}

static void
test_reply_ipv6(void **state)
{
    static const uint8_t want[] = {
        0x05, 0x05, 0x00, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xbe, 0xef, 0xAB, 0xCD,
    };
    struct sockaddr_in6 sin6;
    uint8_t out[SOCKS5_REPLY_MAX + 2];

    (void)state;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(0xABCD);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::beef", &sin6.sin6_addr), 1);
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(socks5_reply(out, SOCKS5_REP_REFUSED, (const struct sockaddr *)&sin6),
                     SOCKS5_REPLY_MAX);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(out[22], 0xAA);
}

static void
check_reply_zero_addr(uint8_t rep, const struct sockaddr *bnd)
{
    const uint8_t want[] = {0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0};
    uint8_t out[SOCKS5_REPLY_MAX + 2];

    memset(out, 0xAA, sizeof(out));
    assert_int_equal(socks5_reply(out, rep, bnd), 10);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(out[10], 0xAA);
}

/* A v4-mapped address (a dual-stack socket's view of an IPv4 peer) is named as IPv4. */
static void
test_reply_ipv4_mapped(void **state)
{
    (void)state;
    struct sockaddr_in6 s6;
    uint8_t out[SOCKS5_REPLY_MAX + 1];
    static const uint8_t want[] = {0x05, 0x00, 0x00, 0x01, 192, 0, 2, 7, 0x1F, 0x90};

    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(8080);
    assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.7", &s6.sin6_addr), 1);
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(socks5_reply(out, SOCKS5_REP_SUCCEEDED, (struct sockaddr *)&s6), 10);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(out[10], 0xAA); /* nothing written past the reply */
}

static void
test_reply_null_and_other_families(void **state)
{
    struct sockaddr_un sa_un;
    struct sockaddr_storage ss;

    (void)state;
    check_reply_zero_addr(SOCKS5_REP_GENERAL, NULL);

    memset(&sa_un, 0xAB, sizeof(sa_un));
    sa_un.sun_family = AF_UNIX;
    strcpy(sa_un.sun_path, "/run/ringsocks.sock");
    check_reply_zero_addr(SOCKS5_REP_HOST_UNREACH, (const struct sockaddr *)&sa_un);

    memset(&ss, 0xCD, sizeof(ss));
    ss.ss_family = AF_UNSPEC;
    check_reply_zero_addr(SOCKS5_REP_SUCCEEDED, (const struct sockaddr *)&ss);
}

/* Every reply code byte, 0x00..0xFF, is written as given for each address form. */
static void
test_reply_every_code(void **state)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    uint8_t out[SOCKS5_REPLY_MAX];

    (void)state;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    for (unsigned rep = 0; rep < 256; rep++) {
        assert_int_equal(socks5_reply(out, (uint8_t)rep, NULL), 10);
        assert_int_equal(out[0], 0x05);
        assert_int_equal(out[1], rep);
        assert_int_equal(out[2], 0x00);
        assert_int_equal(socks5_reply(out, (uint8_t)rep, (const struct sockaddr *)&sin), 10);
        assert_int_equal(out[1], rep);
        assert_int_equal(out[3], SOCKS5_ATYP_IPV4);
        assert_int_equal(socks5_reply(out, (uint8_t)rep, (const struct sockaddr *)&sin6), 22);
        assert_int_equal(out[1], rep);
        assert_int_equal(out[3], SOCKS5_ATYP_IPV6);
    }
}

/* ---- errno mapping ---- */

static void
test_rep_from_errno(void **state)
{
    static const struct {
        int neg_errno;
        uint8_t rep;
    } cases[] = {
        {-ECONNREFUSED, 0x05},
        {-ENETUNREACH, 0x03},
        {-ENETDOWN, 0x03},
        {-EHOSTUNREACH, 0x04},
        {-EHOSTDOWN, 0x04},
        {-ENOENT, 0x04},
        {-ENODATA, 0x04},
        {-ETIMEDOUT, 0x06},
        {-ECANCELED, 0x06},
        {-EAFNOSUPPORT, 0x08},
        {-EACCES, 0x02},
        {-EPERM, 0x02},
        {-EIO, 0x01},
        {-ENOMEM, 0x01},
        {-EINVAL, 0x01},
        {-ECONNRESET, 0x01},
        {0, 0x01},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t got = socks5_rep_from_errno(cases[i].neg_errno);
        if (got != cases[i].rep)
            fail_msg("errno %d: got 0x%02x, want 0x%02x", -cases[i].neg_errno, got, cases[i].rep);
    }
    /* The named constants agree with the wire values of RFC 1928 section 6. */
    assert_int_equal(socks5_rep_from_errno(-ECONNREFUSED), SOCKS5_REP_REFUSED);
    assert_int_equal(socks5_rep_from_errno(-ETIMEDOUT), SOCKS5_REP_TTL_EXPIRED);
    assert_int_equal(socks5_rep_from_errno(-EIO), SOCKS5_REP_GENERAL);
}

/* ---- password required (RFC 1929 negotiated by the greeting) ---- */

/* A greeting that must pick 0x02 when a password is required: phase AUTH, method 0x02. */
static void
check_greeting_pw_ok(const uint8_t *msg, size_t len, uint32_t offered)
{
    struct socks5 st;

    start_in_mode(&st, SOCKS5_PHASE_GREETING, true);
    assert_int_equal(feed_exact(&st, msg, len), (ssize_t)len);
    assert_int_equal(st.phase, SOCKS5_PHASE_AUTH);
    assert_int_equal(st.method, SOCKS5_METHOD_PASSWORD);
    assert_int_equal(st.offered, offered);
    assert_true(st.auth_required);
    check_splits_mode(SOCKS5_PHASE_GREETING, true, msg, len, len, (ssize_t)len);
}

static void
check_greeting_pw_no_method(const uint8_t *msg, size_t len)
{
    struct socks5 st;

    start_in_mode(&st, SOCKS5_PHASE_GREETING, true);
    assert_int_equal(feed_exact(&st, msg, len), SOCKS5_ERR_NO_METHOD);
    assert_int_equal(st.phase, SOCKS5_PHASE_GREETING);
    assert_int_equal(st.method, SOCKS5_METHOD_REJECT);
    check_splits_mode(SOCKS5_PHASE_GREETING, true, msg, len, len, SOCKS5_ERR_NO_METHOD);
}

static void
test_pw_greeting_picks_password(void **state)
{
    static const uint8_t only[] = {0x05, 0x01, 0x02};
    static const uint8_t none_first[] = {0x05, 0x02, 0x00, 0x02};
    static const uint8_t three[] = {0x05, 0x03, 0x02, 0x01, 0x00};
    static const uint8_t with_high[] = {0x05, 0x03, 0xFF, 0x80, 0x02};

    (void)state;
    check_greeting_pw_ok(only, sizeof(only), 1u << SOCKS5_METHOD_PASSWORD);
    /* No-auth offered too, and first: the policy still demands the password. */
    check_greeting_pw_ok(none_first, sizeof(none_first), 0x5);
    check_greeting_pw_ok(three, sizeof(three), 0x7);
    check_greeting_pw_ok(with_high, sizeof(with_high), 1u << SOCKS5_METHOD_PASSWORD);
}

/* NMETHODS = 255 with 0x02 as the very last byte: the whole list is scanned. */
static void
test_pw_greeting_255_methods_password_last(void **state)
{
    uint8_t msg[SOCKS5_GREETING_MAX];

    (void)state;
    msg[0] = 0x05;
    msg[1] = 255;
    memset(msg + 2, 0xFE, 254);
    msg[SOCKS5_GREETING_MAX - 1] = 0x02;
    check_greeting_pw_ok(msg, sizeof(msg), 1u << SOCKS5_METHOD_PASSWORD);
}

/* Without 0x02 there is no acceptable method, even when no-auth is offered. */
static void
test_pw_greeting_no_method(void **state)
{
    static const uint8_t none[] = {0x05, 0x01, 0x00};
    static const uint8_t gssapi[] = {0x05, 0x01, 0x01};
    static const uint8_t none_gssapi[] = {0x05, 0x02, 0x00, 0x01};
    static const uint8_t empty[] = {0x05, 0x00};
    /* 0x22 and 0x82 are 0x02 plus a high bit: not the password method. */
    static const uint8_t near[] = {0x05, 0x03, 0x22, 0x82, 0x00};
    uint8_t all_but[SOCKS5_GREETING_MAX];

    (void)state;
    check_greeting_pw_no_method(none, sizeof(none));
    check_greeting_pw_no_method(gssapi, sizeof(gssapi));
    check_greeting_pw_no_method(none_gssapi, sizeof(none_gssapi));
    check_greeting_pw_no_method(empty, sizeof(empty));
    check_greeting_pw_no_method(near, sizeof(near));
    all_but[0] = 0x05;
    all_but[1] = 255;
    for (size_t i = 0; i < 255; i++)
        all_but[2 + i] = (uint8_t)(i == 2 ? 0xFF : i);
    check_greeting_pw_no_method(all_but, sizeof(all_but));
}

/* The version byte is judged first in either mode. */
static void
test_pw_greeting_bad_version(void **state)
{
    static const uint8_t msg[] = {0x04, 0x01, 0x02};

    (void)state;
    check_splits_mode(SOCKS5_PHASE_GREETING, true, msg, sizeof(msg), 1, SOCKS5_ERR_CLOSE);
}

/* Switching the policy back before the greeting restores no-auth; init clears it. */
static void
test_pw_policy_toggle(void **state)
{
    static const uint8_t both[] = {0x05, 0x02, 0x02, 0x00};
    struct socks5 st;

    (void)state;
    socks5_init(&st);
    socks5_set_password_required(&st, true);
    assert_true(st.auth_required);
    socks5_set_password_required(&st, false);
    assert_false(st.auth_required);
    assert_int_equal(feed_exact(&st, both, sizeof(both)), 4);
    assert_int_equal(st.method, SOCKS5_METHOD_NONE);
    assert_int_equal(st.phase, SOCKS5_PHASE_REQUEST);

    socks5_set_password_required(&st, true);
    socks5_init(&st);
    assert_false(st.auth_required);
}

/*
 * Several methods: the server's order decides, whatever order the client lists them in;
 * GSS-API leads to PHASE_GSS, the password to PHASE_AUTH; a client offering neither is
 * refused, even when it offers "no authentication".
 */
static void
test_methods_server_order(void **state)
{
    static const uint8_t gss_pw[] = {SOCKS5_METHOD_GSSAPI, SOCKS5_METHOD_PASSWORD};
    static const uint8_t pw_gss[] = {SOCKS5_METHOD_PASSWORD, SOCKS5_METHOD_GSSAPI};
    static const uint8_t offers_pw_gss[] = {0x05, 0x03, 0x00, 0x02, 0x01};
    static const uint8_t offers_pw[] = {0x05, 0x02, 0x00, 0x02};
    static const uint8_t offers_gss[] = {0x05, 0x01, 0x01};
    static const uint8_t offers_none[] = {0x05, 0x01, 0x00};
    static const struct {
        const uint8_t *server;
        const uint8_t *greeting;
        size_t len;
        ssize_t want;
        uint8_t method;
        enum socks5_phase phase;
    } cases[] = {
        {gss_pw, offers_pw_gss, sizeof(offers_pw_gss), 5, SOCKS5_METHOD_GSSAPI, SOCKS5_PHASE_GSS},
        {pw_gss, offers_pw_gss, sizeof(offers_pw_gss), 5, SOCKS5_METHOD_PASSWORD,
         SOCKS5_PHASE_AUTH},
        {gss_pw, offers_pw, sizeof(offers_pw), 4, SOCKS5_METHOD_PASSWORD, SOCKS5_PHASE_AUTH},
        {pw_gss, offers_gss, sizeof(offers_gss), 3, SOCKS5_METHOD_GSSAPI, SOCKS5_PHASE_GSS},
        {gss_pw, offers_none, sizeof(offers_none), SOCKS5_ERR_NO_METHOD, 0, SOCKS5_PHASE_GREETING},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct socks5 st;
        socks5_init(&st);
        socks5_set_methods(&st, cases[i].server, 2);
        assert_true(st.auth_required);
        assert_int_equal(feed_exact(&st, cases[i].greeting, cases[i].len), cases[i].want);
        assert_int_equal(st.phase, cases[i].phase);
        if (cases[i].want > 0)
            assert_int_equal(st.method, cases[i].method);
        /* GSS-API's messages are the caller's (gssframe.h): the parser closes on them. */
        if (cases[i].phase == SOCKS5_PHASE_GSS)
            assert_int_equal(socks5_feed(&st, offers_gss, sizeof(offers_gss)), SOCKS5_ERR_CLOSE);
    }
    /* Only gssapi: a password-only client gets no method. */
    struct socks5 st;
    socks5_init(&st);
    socks5_set_methods(&st, gss_pw, 1);
    assert_int_equal(feed_exact(&st, offers_pw, sizeof(offers_pw)), SOCKS5_ERR_NO_METHOD);
    /* No methods: no authentication, as after socks5_init(). */
    socks5_init(&st);
    socks5_set_methods(&st, gss_pw, 0);
    assert_false(st.auth_required);
    assert_int_equal(feed_exact(&st, offers_pw_gss, sizeof(offers_pw_gss)), 5);
    assert_int_equal(st.method, SOCKS5_METHOD_NONE);
}

/*
 * In PHASE_AUTH the sub-negotiation belongs to auth_feed(): socks5_feed() closes, whatever it
 * is given, and changes nothing.
 */
static void
test_pw_feed_in_auth_phase_closes(void **state)
{
    static const uint8_t subneg[] = {0x01, 0x01, 'u', 0x01, 'p'};
    uint8_t msg[MSG_MAX];
    struct socks5 st;
    struct socks5 before;
    size_t len;

    (void)state;
    len = build_connect_v4(msg, "127.0.0.1", 80);
    start_in_mode(&st, SOCKS5_PHASE_AUTH, true);
    memcpy(&before, &st, sizeof(st));
    assert_int_equal(feed_exact(&st, subneg, sizeof(subneg)), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, msg, len), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, greeting_password, 3), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, msg, 1), SOCKS5_ERR_CLOSE);
    assert_int_equal(feed_exact(&st, msg, 0), SOCKS5_ERR_CLOSE);
    assert_memory_equal(&st, &before, sizeof(st));
}

/* Greeting, sub-negotiation and request in one buffer: only the greeting is consumed. */
static void
test_pw_greeting_pipelined(void **state)
{
    static const uint8_t buf[] = {0x05, 0x01, 0x02, 0x01, 0x01, 'u', 0x01, 'p',  0x05,
                                  0x01, 0x00, 0x01, 10,   0,    0,   1,    0x00, 0x50};
    struct socks5 st;

    (void)state;
    start_in_mode(&st, SOCKS5_PHASE_GREETING, true);
    assert_int_equal(feed_exact(&st, buf, sizeof(buf)), 3);
    assert_int_equal(st.phase, SOCKS5_PHASE_AUTH);
    assert_int_equal(feed_exact(&st, buf + 3, sizeof(buf) - 3), SOCKS5_ERR_CLOSE);
    /* The session takes 5 bytes through auth_feed(), then sets the phase. */
    st.phase = SOCKS5_PHASE_REQUEST;
    assert_int_equal(feed_exact(&st, buf + 8, sizeof(buf) - 8), 10);
    assert_int_equal(st.phase, SOCKS5_PHASE_DONE);
    assert_int_equal(st.method, SOCKS5_METHOD_PASSWORD);
    assert_int_equal(st.dest.port, 80);
}

/* ---- UDP ASSOCIATE datagram header (section 7) ---- */

/* Parse a copy of msg[0..len) held in a heap block of exactly len bytes. */
static ssize_t
udp_parse_exact(const uint8_t *msg, size_t len, struct socks_dest *dest, uint8_t *frag)
{
    uint8_t *buf = malloc(len);
    ssize_t r;

    if (len > 0) {
        assert_non_null(buf);
        memcpy(buf, msg, len);
    }
    r = socks5_udp_parse(buf, len, dest, frag);
    free(buf);
    return r;
}

/*
 * Build RSV RSV FRAG ATYP DST.ADDR DST.PORT into out, then payload. For SOCKS5_ATYP_DOMAIN
 * the length byte alen comes first. Returns the datagram length.
 */
static size_t
build_udp(uint8_t *out, uint8_t frag, uint8_t atyp, const void *addr, size_t alen, uint16_t port,
          const char *payload)
{
    size_t off = 0;

    out[off++] = 0;
    out[off++] = 0;
    out[off++] = frag;
    out[off++] = atyp;
    if (atyp == SOCKS5_ATYP_DOMAIN)
        out[off++] = (uint8_t)alen;
    if (alen > 0)
        memcpy(out + off, addr, alen);
    off += alen;
    out[off++] = (uint8_t)(port >> 8);
    out[off++] = (uint8_t)(port & 0xFF);
    if (payload) {
        memcpy(out + off, payload, strlen(payload));
        off += strlen(payload);
    }
    return off;
}

/*
 * A datagram whose header must parse to hlen: every truncation below hlen is malformed (a
 * datagram comes whole; there is no "need more") and leaves dest and frag untouched, every
 * length from hlen on parses to hlen. Returns the parse of the whole datagram in dest/frag.
 */
static void
check_udp_ok(const uint8_t *msg, size_t len, size_t hlen, struct socks_dest *dest, uint8_t *frag)
{
    struct socks_dest d;
    struct socks_dest before;
    uint8_t f;

    assert_true(hlen <= len);
    for (size_t k = 0; k <= len; k++) {
        memset(&d, 0xA5, sizeof(d));
        memcpy(&before, &d, sizeof(d));
        f = 0xA5;
        ssize_t r = udp_parse_exact(msg, k, &d, &f);
        if (k < hlen) {
            if (r != -1)
                fail_msg("truncated to %zu of header %zu: got %zd, want -1", k, hlen, r);
            assert_memory_equal(&d, &before, sizeof(d));
            assert_int_equal(f, 0xA5);
        } else if (r != (ssize_t)hlen) {
            fail_msg("length %zu: got %zd, want %zu", k, r, hlen);
        }
    }
    memset(dest, 0xA5, sizeof(*dest));
    assert_int_equal(udp_parse_exact(msg, len, dest, frag), (ssize_t)hlen);
    if (dest->atyp == SOCKS5_ATYP_DOMAIN) {
        assert_int_equal(dest->u.name[dest->name_len], '\0');
        assert_int_equal(strlen(dest->u.name), dest->name_len);
    } else {
        assert_int_equal(dest->name_len, 0);
    }
}

/* A datagram that is malformed at every length up to len, dest and frag untouched. */
static void
check_udp_bad(const uint8_t *msg, size_t len)
{
    struct socks_dest d;
    struct socks_dest before;
    uint8_t f;

    for (size_t k = 0; k <= len; k++) {
        memset(&d, 0xA5, sizeof(d));
        memcpy(&before, &d, sizeof(d));
        f = 0xA5;
        ssize_t r = udp_parse_exact(msg, k, &d, &f);
        if (r != -1)
            fail_msg("length %zu of %zu: got %zd, want -1", k, len, r);
        assert_memory_equal(&d, &before, sizeof(d));
        assert_int_equal(f, 0xA5);
    }
}

static void
test_udp_parse_ipv4_exact(void **state)
{
    static const uint8_t msg[] = {0x00, 0x00, 0x00, 0x01, 192, 0, 2, 53, 0x00, 0x35, 'q', 'r'};
    struct socks_dest d;
    uint8_t frag;

    (void)state;
    check_udp_ok(msg, sizeof(msg), 10, &d, &frag);
    assert_int_equal(frag, 0);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(d.u.v4.s_addr, htonl(0xC0000235));
    assert_int_equal(d.port, 53);
}

static void
test_udp_parse_ipv6(void **state)
{
    uint8_t msg[MSG_MAX];
    struct socks_dest d;
    struct in6_addr a6;
    uint8_t frag;
    size_t len;

    (void)state;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::53", &a6), 1);
    len = build_udp(msg, 0, SOCKS5_ATYP_IPV6, &a6, 16, 0xABCD, "payload");
    check_udp_ok(msg, len, 22, &d, &frag);
    assert_int_equal(frag, 0);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV6);
    assert_memory_equal(&d.u.v6, &a6, 16);
    assert_int_equal(d.port, 0xABCD);
}

static void
test_udp_parse_domain(void **state)
{
    uint8_t msg[MSG_MAX];
    struct socks_dest d;
    uint8_t frag;
    size_t len;

    (void)state;
    len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, "dns.example", 11, 53, "\x12\x34");
    check_udp_ok(msg, len, 5 + 11 + 2, &d, &frag);
    assert_int_equal(d.atyp, SOCKS5_ATYP_DOMAIN);
    assert_int_equal(d.name_len, 11);
    assert_string_equal(d.u.name, "dns.example");
    assert_int_equal(d.port, 53);

    len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, "a", 1, 1, NULL);
    check_udp_ok(msg, len, 8, &d, &frag);
    assert_string_equal(d.u.name, "a");
}

/* A 255-byte name makes the longest header, SOCKS5_UDP_HDR_MAX, but no host has that
 * name: the longest that parses is 253 bytes and the root's dot, kept in normal form. */
static void
test_udp_parse_domain_longest(void **state)
{
    uint8_t msg[MSG_MAX];
    char name[256], want[256];
    struct socks_dest d;
    uint8_t frag;
    size_t len;

    (void)state;
    long_name(name, 255);
    len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, name, 255, 65535, NULL);
    assert_int_equal(len, SOCKS5_UDP_HDR_MAX);
    check_udp_bad(msg, len);
    long_name(name, 253);
    memcpy(want, name, sizeof(want));
    lower(want);
    name[253] = '.';
    len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, name, 254, 65535, NULL);
    check_udp_ok(msg, len, len, &d, &frag);
    assert_int_equal(d.name_len, 253);
    assert_string_equal(d.u.name, want);
    assert_int_equal(d.port, 65535);
    /* A port in the name is refused here too; an IP literal is that address. */
    len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, "127.0.0.1:25", 12, 53, NULL);
    check_udp_bad(msg, len);
    len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, "127.0.0.1", 9, 53, NULL);
    check_udp_ok(msg, len, len, &d, &frag);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(d.port, 53);
}

/* A header with no payload at all is well formed (an empty datagram to relay). */
static void
test_udp_parse_empty_payload(void **state)
{
    static const uint8_t msg[] = {0, 0, 0, 0x01, 10, 0, 0, 1, 0x1F, 0x90};
    struct socks_dest d;
    uint8_t frag;

    (void)state;
    assert_int_equal(udp_parse_exact(msg, sizeof(msg), &d, &frag), 10);
    assert_int_equal(d.port, 8080);
}

/* FRAG is reported, not judged: the caller drops fragments. */
static void
test_udp_parse_frag(void **state)
{
    static const uint8_t frags[] = {0x01, 0x02, 0x7F, 0x80, 0x81, 0xFF};
    uint8_t msg[MSG_MAX];
    struct socks_dest d;
    uint8_t frag;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(frags); i++) {
        len = build_udp(msg, frags[i], SOCKS5_ATYP_DOMAIN, "h", 1, 7, "x");
        check_udp_ok(msg, len, 8, &d, &frag);
        assert_int_equal(frag, frags[i]);
        assert_string_equal(d.u.name, "h");
    }
}

static void
test_udp_parse_rsv_nonzero(void **state)
{
    static const uint8_t rsv[][2] = {{0x00, 0x01}, {0x01, 0x00}, {0xFF, 0xFF}, {0x80, 0x00}};
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(rsv) / sizeof(rsv[0]); i++) {
        len = build_udp(msg, 0, SOCKS5_ATYP_IPV4, "\x7f\x00\x00\x01", 4, 53, "data");
        msg[0] = rsv[i][0];
        msg[1] = rsv[i][1];
        check_udp_bad(msg, len);
    }
}

static void
test_udp_parse_unknown_atyp(void **state)
{
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (unsigned atyp = 0; atyp < 256; atyp++) {
        if (atyp == SOCKS5_ATYP_IPV4 || atyp == SOCKS5_ATYP_IPV6 || atyp == SOCKS5_ATYP_DOMAIN)
            continue;
        /* Long enough for any address type: only the ATYP makes it bad. */
        len = build_udp(msg, 0, SOCKS5_ATYP_IPV6, "0123456789abcdef", 16, 53, "data");
        msg[3] = (uint8_t)atyp;
        check_udp_bad(msg, len);
    }
}

static void
test_udp_parse_bad_domain(void **state)
{
    static const struct {
        const char *name;
        size_t len;
    } cases[] = {
        {"", 0}, {"\0", 1}, {"a\0b", 3}, {"\0ab", 3}, {"ab\0", 3},
    };
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, cases[i].name, cases[i].len, 53, "payload");
        check_udp_bad(msg, len);
    }
}

/* A domain length that runs past the datagram is malformed, not a read past it. */
static void
test_udp_parse_domain_overruns(void **state)
{
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    len = build_udp(msg, 0, SOCKS5_ATYP_DOMAIN, "abc", 3, 53, NULL);
    msg[4] = 200;
    check_udp_bad(msg, len);
    msg[4] = 4; /* one byte too many: the port would end past the datagram */
    check_udp_bad(msg, len);
}

/* Encode the header for src into a canary-guarded buffer; check length and untouched tail. */
static size_t
udp_header_checked(uint8_t *out, const struct sockaddr *src)
{
    uint8_t buf[SOCKS5_UDP_HDR_MAX + 8];
    size_t n;

    memset(buf, 0xAA, sizeof(buf));
    n = socks5_udp_header(buf, src);
    assert_true(n == 10 || n == 22);
    for (size_t i = n; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xAA);
    memcpy(out, buf, n);
    return n;
}

static void
test_udp_header_ipv4(void **state)
{
    static const uint8_t want[] = {0, 0, 0, 0x01, 198, 51, 100, 9, 0x00, 0x35};
    struct sockaddr_in sin;
    struct socks_dest d;
    uint8_t out[SOCKS5_UDP_HDR_MAX];
    uint8_t frag = 0xEE;

    (void)state;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(53);
    assert_int_equal(inet_pton(AF_INET, "198.51.100.9", &sin.sin_addr), 1);
    assert_int_equal(udp_header_checked(out, (const struct sockaddr *)&sin), 10);
    assert_memory_equal(out, want, sizeof(want));
    /* It parses back to the same address. */
    assert_int_equal(udp_parse_exact(out, 10, &d, &frag), 10);
    assert_int_equal(frag, 0);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(d.u.v4.s_addr, sin.sin_addr.s_addr);
    assert_int_equal(d.port, 53);
}

static void
test_udp_header_ipv6(void **state)
{
    static const uint8_t want[] = {0, 0, 0, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                   0, 0, 0, 0,    0,    0,    0,    0,    1, 0x01, 0xBB};
    struct sockaddr_in6 sin6;
    struct socks_dest d;
    uint8_t out[SOCKS5_UDP_HDR_MAX];
    uint8_t frag = 0xEE;

    (void)state;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(443);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr), 1);
    assert_int_equal(udp_header_checked(out, (const struct sockaddr *)&sin6), 22);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(udp_parse_exact(out, 22, &d, &frag), 22);
    assert_int_equal(frag, 0);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV6);
    assert_memory_equal(&d.u.v6, &sin6.sin6_addr, 16);
    assert_int_equal(d.port, 443);
}

/* A dual-stack socket's ::ffff:a.b.c.d is an IPv4 peer, and is named as one. */
static void
test_udp_header_v4mapped(void **state)
{
    static const uint8_t want[] = {0, 0, 0, 0x01, 203, 0, 113, 77, 0x13, 0x88};
    struct sockaddr_in6 sin6;
    uint8_t out[SOCKS5_UDP_HDR_MAX];

    (void)state;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(5000);
    assert_int_equal(inet_pton(AF_INET6, "::ffff:203.0.113.77", &sin6.sin6_addr), 1);
    assert_int_equal(udp_header_checked(out, (const struct sockaddr *)&sin6), 10);
    assert_memory_equal(out, want, sizeof(want));
    /* ::203.0.113.77 (deprecated v4-compatible) and ::1 are plain IPv6. */
    assert_int_equal(inet_pton(AF_INET6, "::203.0.113.77", &sin6.sin6_addr), 1);
    assert_int_equal(udp_header_checked(out, (const struct sockaddr *)&sin6), 22);
    assert_int_equal(inet_pton(AF_INET6, "::1", &sin6.sin6_addr), 1);
    assert_int_equal(udp_header_checked(out, (const struct sockaddr *)&sin6), 22);
}

static void
test_udp_header_other_families(void **state)
{
    static const uint8_t zero[] = {0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0};
    struct sockaddr_un sun;
    uint8_t out[SOCKS5_UDP_HDR_MAX];

    (void)state;
    assert_int_equal(udp_header_checked(out, NULL), 10);
    assert_memory_equal(out, zero, sizeof(zero));
    memset(&sun, 0xEE, sizeof(sun));
    sun.sun_family = AF_UNIX;
    assert_int_equal(udp_header_checked(out, (const struct sockaddr *)&sun), 10);
    assert_memory_equal(out, zero, sizeof(zero));
}

/* Every port survives encode then parse, for both families. */
static void
test_udp_header_roundtrip_ports(void **state)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct socks_dest d;
    uint8_t out[SOCKS5_UDP_HDR_MAX];
    uint8_t frag;

    (void)state;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(0x7F000001);
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    memset(&sin6.sin6_addr, 0x20, 16);
    for (unsigned port = 0; port < 65536; port += 257) {
        sin.sin_port = htons((uint16_t)port);
        sin6.sin6_port = htons((uint16_t)port);
        assert_int_equal(socks5_udp_header(out, (const struct sockaddr *)&sin), 10);
        assert_int_equal(socks5_udp_parse(out, 10, &d, &frag), 10);
        assert_int_equal(d.port, port);
        assert_int_equal(socks5_udp_header(out, (const struct sockaddr *)&sin6), 22);
        assert_int_equal(socks5_udp_parse(out, 22, &d, &frag), 22);
        assert_int_equal(d.port, port);
        assert_memory_equal(&d.u.v6, &sin6.sin6_addr, 16);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_resets_everything),
        cmocka_unit_test(test_greeting_none_only),
        cmocka_unit_test(test_greeting_password_then_none),
        cmocka_unit_test(test_greeting_three_methods),
        cmocka_unit_test(test_greeting_high_methods_ignored),
        cmocka_unit_test(test_greeting_255_distinct_methods),
        cmocka_unit_test(test_greeting_255_methods_none_last),
        cmocka_unit_test(test_greeting_nmethods_zero),
        cmocka_unit_test(test_greeting_only_password),
        cmocka_unit_test(test_greeting_only_gssapi),
        cmocka_unit_test(test_greeting_gssapi_and_password),
        cmocka_unit_test(test_greeting_255_methods_without_none),
        cmocka_unit_test(test_greeting_socks4),
        cmocka_unit_test(test_greeting_http),
        cmocka_unit_test(test_greeting_every_bad_version),
        cmocka_unit_test(test_greeting_pipelined_request),
        cmocka_unit_test(test_greeting_trailing_bytes_not_consumed),
        cmocka_unit_test(test_request_connect_ipv4),
        cmocka_unit_test(test_request_connect_ipv6),
        cmocka_unit_test(test_request_connect_domain_len1),
        cmocka_unit_test(test_request_connect_domain_longest),
        cmocka_unit_test(test_request_domain_terminated),
        cmocka_unit_test(test_request_port_byte_order),
        cmocka_unit_test(test_request_port_every_atyp),
        cmocka_unit_test(test_request_rsv_ignored),
        cmocka_unit_test(test_request_bad_version),
        cmocka_unit_test(test_request_unknown_cmd),
        cmocka_unit_test(test_request_bind_udp_accepted),
        cmocka_unit_test(test_request_bind_udp_errors),
        cmocka_unit_test(test_request_unknown_atyp),
        cmocka_unit_test(test_request_domain_len0),
        cmocka_unit_test(test_request_name_checked),
        cmocka_unit_test(test_request_name_label_63),
        cmocka_unit_test(test_bad_name_for_log),
        cmocka_unit_test(test_request_domain_with_nul),
        cmocka_unit_test(test_request_pipelined_payload),
        cmocka_unit_test(test_feed_after_done),
        cmocka_unit_test(test_handshake_one_buffer),
        cmocka_unit_test(test_method_reply),
        cmocka_unit_test(test_reply_ipv4),
        cmocka_unit_test(test_reply_ipv6),
        cmocka_unit_test(test_reply_ipv4_mapped),
        cmocka_unit_test(test_reply_null_and_other_families),
        cmocka_unit_test(test_reply_every_code),
        cmocka_unit_test(test_rep_from_errno),
        cmocka_unit_test(test_pw_greeting_picks_password),
        cmocka_unit_test(test_pw_greeting_255_methods_password_last),
        cmocka_unit_test(test_pw_greeting_no_method),
        cmocka_unit_test(test_pw_greeting_bad_version),
        cmocka_unit_test(test_pw_policy_toggle),
        cmocka_unit_test(test_methods_server_order),
        cmocka_unit_test(test_pw_feed_in_auth_phase_closes),
        cmocka_unit_test(test_pw_greeting_pipelined),
        cmocka_unit_test(test_udp_parse_ipv4_exact),
        cmocka_unit_test(test_udp_parse_ipv6),
        cmocka_unit_test(test_udp_parse_domain),
        cmocka_unit_test(test_udp_parse_domain_longest),
        cmocka_unit_test(test_udp_parse_empty_payload),
        cmocka_unit_test(test_udp_parse_frag),
        cmocka_unit_test(test_udp_parse_rsv_nonzero),
        cmocka_unit_test(test_udp_parse_unknown_atyp),
        cmocka_unit_test(test_udp_parse_bad_domain),
        cmocka_unit_test(test_udp_parse_domain_overruns),
        cmocka_unit_test(test_udp_header_ipv4),
        cmocka_unit_test(test_udp_header_ipv6),
        cmocka_unit_test(test_udp_header_v4mapped),
        cmocka_unit_test(test_udp_header_other_families),
        cmocka_unit_test(test_udp_header_roundtrip_ports),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
