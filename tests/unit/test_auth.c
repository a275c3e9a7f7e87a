/*
 * test_auth.c - cmocka unit tests for the RFC 1929 parser and status encoder (src/auth.c).
 *
 * Links auth.o alone: the parser is pure, so nothing is faked. Every message is fed from a
 * heap block of exactly its length, so under SAN=1 AddressSanitizer flags any read past the
 * bytes the parser was given. Single-threaded; never touches a socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "auth.h"

/* Room for the longest message plus a pipelined tail. */
#define MSG_MAX (AUTH_REQUEST_MAX + 64)

/* The byte a credential is filled with to show that a call did not write it. */
#define DIRTY 0xA5

static ssize_t
feed_exact(struct auth_cred *cred, const uint8_t *msg, size_t len)
{
    uint8_t *buf = malloc(len);
    ssize_t r;

    if (len > 0) {
        assert_non_null(buf);
        memcpy(buf, msg, len);
    }
    r = auth_feed(cred, buf, len);
    free(buf);
    return r;
}

/* Build VER ULEN UNAME PLEN PASSWD into out. Returns the message length. */
static size_t
build(uint8_t *out, uint8_t ver, const void *user, size_t ulen, const void *pass, size_t plen)
{
    size_t off = 0;

    out[off++] = ver;
    out[off++] = (uint8_t)ulen;
    if (ulen > 0)
        memcpy(out + off, user, ulen);
    off += ulen;
    out[off++] = (uint8_t)plen;
    if (plen > 0)
        memcpy(out + off, pass, plen);
    off += plen;
    return off;
}

static void
pattern(char *out, size_t n, char base)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(base + i % 26);
    out[n] = '\0';
}

/*
 * Feed every prefix msg[0..k), k = 0..n, to a credential filled with DIRTY. Prefixes shorter
 * than decidable_at answer 0, the rest want; anything but success leaves the credential
 * untouched. The parser keeps no state between calls, so prefixes cover every split.
 */
static void
check_splits(const uint8_t *msg, size_t n, size_t decidable_at, ssize_t want)
{
    struct auth_cred cred;
    struct auth_cred before;

    assert_true(decidable_at <= n);
    for (size_t k = 0; k <= n; k++) {
        memset(&cred, DIRTY, sizeof(cred));
        memcpy(&before, &cred, sizeof(cred));
        ssize_t r = feed_exact(&cred, msg, k);
        ssize_t exp = k < decidable_at ? 0 : want;
        if (r != exp)
            fail_msg("prefix %zu of %zu: got %zd, want %zd (decidable at %zu)", k, n, r, exp,
                     decidable_at);
        if (r <= 0 && memcmp(&cred, &before, sizeof(cred)) != 0)
            fail_msg("prefix %zu of %zu: answer %zd but the credential was written", k, n, r);
    }
}

/* A message that must parse into user/pass (given with their lengths). */
static void
check_ok(const void *user, size_t ulen, const void *pass, size_t plen)
{
    uint8_t msg[MSG_MAX];
    struct auth_cred cred;
    size_t len = build(msg, AUTH_VERSION, user, ulen, pass, plen);

    assert_int_equal(len, 3 + ulen + plen);
    check_splits(msg, len, len, (ssize_t)len);
    memset(&cred, DIRTY, sizeof(cred));
    assert_int_equal(feed_exact(&cred, msg, len), (ssize_t)len);
    assert_int_equal(cred.ulen, ulen);
    assert_int_equal(cred.plen, plen);
    assert_memory_equal(cred.user, user, ulen);
    assert_memory_equal(cred.pass, pass, plen);
    assert_int_equal(cred.user[ulen], '\0');
    assert_int_equal(cred.pass[plen], '\0');
    assert_int_equal(strlen(cred.user), ulen);
    assert_int_equal(strlen(cred.pass), plen);
}

/* ---- accepted ---- */

static void
test_exact_bytes(void **state)
{
    static const uint8_t msg[] = {0x01, 0x05, 'a', 'l', 'i', 'c', 'e',
                                  0x06, 's',  '3', 'c', 'r', '3', 't'};
    struct auth_cred cred;

    (void)state;
    check_splits(msg, sizeof(msg), sizeof(msg), 14);
    assert_int_equal(feed_exact(&cred, msg, sizeof(msg)), 14);
    assert_int_equal(cred.ulen, 5);
    assert_int_equal(cred.plen, 6);
    assert_string_equal(cred.user, "alice");
    assert_string_equal(cred.pass, "s3cr3t");
}

static void
test_one_byte_each(void **state)
{
    (void)state;
    check_ok("u", 1, "p", 1);
}

/* Any byte but NUL, 0xFF and control bytes included, is part of a name or password. */
static void
test_binary_bytes(void **state)
{
    static const uint8_t user[] = {0x01, 0xFF, 0x80, ':', ' ', '\n'};
    uint8_t pass[255];

    (void)state;
    for (size_t i = 0; i < sizeof(pass); i++)
        pass[i] = (uint8_t)(i + 1);
    check_ok(user, sizeof(user), pass, sizeof(pass));
}

/* 255 is the most a one-byte length can say: the longest message, 513 bytes. */
static void
test_255_each(void **state)
{
    char user[256];
    char pass[256];

    (void)state;
    pattern(user, 255, 'a');
    pattern(pass, 255, 'A');
    check_ok(user, 255, pass, 255);
    check_ok(user, 255, "p", 1);
    check_ok("u", 1, pass, 255);
    assert_int_equal(3 + 255 + 255, AUTH_REQUEST_MAX);
}

/*
 * A 256-byte name cannot be said: with ULEN 255 the 256th byte is read as PLEN, so the
 * message boundary stays where ULEN put it and nothing past it is taken as the name.
 */
static void
test_256_byte_user_is_not_a_name(void **state)
{
    char user[257];
    uint8_t msg[MSG_MAX];
    struct auth_cred cred;
    size_t len;

    (void)state;
    pattern(user, 256, 'a');
    /* ULEN 255, then 256 name bytes: the last one, 'a' + 255 % 26 = 'v' (118), is PLEN. */
    msg[0] = 0x01;
    msg[1] = 255;
    memcpy(msg + 2, user, 256);
    len = 2 + 256;
    assert_int_equal(msg[257], 'v');
    assert_int_equal(feed_exact(&cred, msg, len), 0);
    memset(msg + len, 'x', 118);
    check_splits(msg, len + 118, len + 118, (ssize_t)(len + 118));
    assert_int_equal(feed_exact(&cred, msg, len + 118), (ssize_t)(len + 118));
    assert_int_equal(cred.ulen, 255);
    assert_int_equal(strlen(cred.user), 255);
    assert_int_equal(cred.plen, 118);
}

/* ---- refused ---- */

/* RFC 1929 lengths are 1..255: a zero is refused once the whole message is in. */
static void
test_zero_lengths(void **state)
{
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    len = build(msg, AUTH_VERSION, NULL, 0, "pass", 4);
    check_splits(msg, len, len, AUTH_ERR_FAIL);
    len = build(msg, AUTH_VERSION, "user", 4, NULL, 0);
    check_splits(msg, len, len, AUTH_ERR_FAIL);
    len = build(msg, AUTH_VERSION, NULL, 0, NULL, 0);
    assert_int_equal(len, 3);
    check_splits(msg, len, len, AUTH_ERR_FAIL);
}

/* A NUL anywhere in either field is refused: "bob\0x" must not pass as "bob". */
static void
test_nul_inside(void **state)
{
    static const struct {
        const char *user;
        size_t ulen;
        const char *pass;
        size_t plen;
    } cases[] = {
        {"\0", 1, "p", 1},     {"bob\0x", 5, "pw", 2}, {"\0bob", 4, "pw", 2},
        {"bob\0", 4, "pw", 2}, {"bob", 3, "\0", 1},    {"bob", 3, "pw\0", 3},
        {"bob", 3, "\0pw", 3}, {"bob", 3, "p\0w", 3},  {"b\0b", 3, "p\0w", 3},
    };
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = build(msg, AUTH_VERSION, cases[i].user, cases[i].ulen, cases[i].pass, cases[i].plen);
        check_splits(msg, len, len, AUTH_ERR_FAIL);
    }
}

/* A NUL as the 255th byte of a 255-byte field: the scan covers the whole field. */
static void
test_nul_last_of_255(void **state)
{
    char f[256];
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    pattern(f, 255, 'a');
    f[254] = '\0';
    len = build(msg, AUTH_VERSION, f, 255, "p", 1);
    check_splits(msg, len, len, AUTH_ERR_FAIL);
    len = build(msg, AUTH_VERSION, "u", 1, f, 255);
    check_splits(msg, len, len, AUTH_ERR_FAIL);
}

/* Every VER but 1 closes at once: a SOCKS5 request sent instead, or garbage. */
static void
test_bad_version(void **state)
{
    uint8_t msg[MSG_MAX];
    size_t len;

    (void)state;
    for (unsigned v = 0; v < 256; v++) {
        if (v == AUTH_VERSION)
            continue;
        len = build(msg, (uint8_t)v, "user", 4, "pass", 4);
        check_splits(msg, len, 1, AUTH_ERR_CLOSE);
    }
    /* The version is judged before the lengths, even zero ones. */
    len = build(msg, 0x05, NULL, 0, NULL, 0);
    check_splits(msg, len, 1, AUTH_ERR_CLOSE);
}

static void
test_error_codes(void **state)
{
    (void)state;
    assert_true(AUTH_ERR_FAIL < 0);
    assert_true(AUTH_ERR_CLOSE < 0);
    assert_true(AUTH_ERR_FAIL != AUTH_ERR_CLOSE);
}

/* ---- what is consumed, what is written ---- */

/* The SOCKS5 request pipelined behind the sub-negotiation is left for socks5_feed(). */
static void
test_pipelined_request(void **state)
{
    static const uint8_t req[] = {0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50};
    uint8_t msg[MSG_MAX];
    struct auth_cred cred;
    size_t len;

    (void)state;
    len = build(msg, AUTH_VERSION, "user", 4, "pass", 4);
    memcpy(msg + len, req, sizeof(req));
    assert_int_equal(feed_exact(&cred, msg, len + sizeof(req)), (ssize_t)len);
    assert_string_equal(cred.user, "user");
    assert_string_equal(cred.pass, "pass");
}

/* A short credential after a long one: both strings end where the new lengths say. */
static void
test_cred_overwritten(void **state)
{
    char f[256];
    uint8_t msg[MSG_MAX];
    struct auth_cred cred;
    size_t len;

    (void)state;
    pattern(f, 255, 'a');
    len = build(msg, AUTH_VERSION, f, 255, f, 255);
    assert_int_equal(feed_exact(&cred, msg, len), (ssize_t)len);
    len = build(msg, AUTH_VERSION, "u", 1, "pw", 2);
    assert_int_equal(feed_exact(&cred, msg, len), (ssize_t)len);
    assert_string_equal(cred.user, "u");
    assert_string_equal(cred.pass, "pw");
    assert_int_equal(cred.ulen, 1);
    assert_int_equal(cred.plen, 2);
}

/* ---- reply ---- */

static void
test_reply(void **state)
{
    static const uint8_t statuses[] = {AUTH_STATUS_OK, AUTH_STATUS_FAIL, 0x02, 0xFF};
    uint8_t out[4];

    (void)state;
    for (size_t i = 0; i < sizeof(statuses); i++) {
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(auth_reply(out, statuses[i]), 2);
        assert_int_equal(out[0], 0x01);
        assert_int_equal(out[1], statuses[i]);
        assert_int_equal(out[2], 0xAA);
        assert_int_equal(out[3], 0xAA);
    }
    assert_int_equal(AUTH_STATUS_OK, 0x00);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_one_byte_each),
        cmocka_unit_test(test_binary_bytes),
        cmocka_unit_test(test_255_each),
        cmocka_unit_test(test_256_byte_user_is_not_a_name),
        cmocka_unit_test(test_zero_lengths),
        cmocka_unit_test(test_nul_inside),
        cmocka_unit_test(test_nul_last_of_255),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_pipelined_request),
        cmocka_unit_test(test_cred_overwritten),
        cmocka_unit_test(test_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
