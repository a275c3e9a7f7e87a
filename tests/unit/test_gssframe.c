/*
 * test_gssframe.c - cmocka unit tests for the RFC 1961 framing (src/gssframe.c).
 *
 * Links gssframe.o alone: the module is pure, so nothing is faked. Every message is fed
 * from a heap block of exactly its length, so under SAN=1 AddressSanitizer flags any read
 * past the bytes the parser was given, and fed byte by byte (every prefix): the parser keeps
 * no state between calls, so every prefix is every way of splitting it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gssframe.h"

#define DIRTY   0xA5
#define ALL     (GSSFRAME_EXPECT_CTX | GSSFRAME_EXPECT_LEVEL | GSSFRAME_EXPECT_DATA)
#define MSG_MAX (GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX)

/* The next message or relayed bytes, pipelined after the one under test. */
static const uint8_t tail[] = {0x01, 0x03, 0x00, 0x02, 0xAB, 0xCD, 0x05};

/* A heap block of exactly msg's length, so AddressSanitizer sees a read past it. */
static uint8_t *
dup_exact(const uint8_t *msg, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    if (len)
        memcpy(buf, msg, len);
    return buf;
}

static ssize_t
feed_exact(struct gssframe *f, const uint8_t *msg, size_t len, unsigned expect, size_t max)
{
    uint8_t *buf = dup_exact(msg, len);
    ssize_t r = gssframe_feed(f, buf, len, expect, max);
    free(buf);
    return r;
}

/* A message of mtyp with an n-byte token (bytes i & 0xff), returning its length. */
static size_t
build(uint8_t *out, uint8_t ver, uint8_t mtyp, size_t n)
{
    out[0] = ver;
    out[1] = mtyp;
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    for (size_t i = 0; i < n; i++)
        out[GSSFRAME_HDR_LEN + i] = (uint8_t)i;
    return GSSFRAME_HDR_LEN + n;
}

/*
 * Every prefix msg[0..k), k = 0..n (or a sample of them for long messages): below
 * decidable_at the answer is 0 and f untouched; from there on it is want (and an error
 * leaves f untouched too).
 */
static void
check_splits(const uint8_t *msg, size_t n, size_t decidable_at, ssize_t want, unsigned expect,
             size_t max)
{
    struct gssframe f, before;
    assert_true(decidable_at <= n);
    for (size_t k = 0; k <= n; k++) {
        /* Long tokens: every prefix of the header and around the end, a stride in between. */
        if (k > 16 && k + 16 < n && k % 997 != 0)
            continue;
        memset(&f, DIRTY, sizeof(f));
        memcpy(&before, &f, sizeof(f));
        ssize_t r = feed_exact(&f, msg, k, expect, max);
        ssize_t exp = k < decidable_at ? 0 : want;
        if (r != exp)
            fail_msg("prefix %zu of %zu: got %zd, want %zd (decidable at %zu)", k, n, r, exp,
                     decidable_at);
        if (r <= 0 && memcmp(&f, &before, sizeof(f)) != 0)
            fail_msg("prefix %zu of %zu: answer %zd but the state was written", k, n, r);
    }
}

/* A message that must parse whole, at every split, and with the next bytes after it. */
static void
check_ok(const uint8_t *msg, size_t len, unsigned expect, size_t max, uint8_t mtyp,
         size_t token_len)
{
    static uint8_t with_tail[MSG_MAX + sizeof(tail)];
    struct gssframe f;

    check_splits(msg, len, len, (ssize_t)len, expect, max);
    memcpy(with_tail, msg, len);
    memcpy(with_tail + len, tail, sizeof(tail));
    memset(&f, DIRTY, sizeof(f));
    assert_int_equal(feed_exact(&f, with_tail, len + sizeof(tail), expect, max), (ssize_t)len);
    assert_int_equal(f.mtyp, mtyp);
    assert_int_equal(f.len, token_len);
    memset(&f, DIRTY, sizeof(f));
    assert_int_equal(feed_exact(&f, msg, len, expect, max), (ssize_t)len);
    assert_int_equal(f.mtyp, mtyp);
    assert_int_equal(f.len, token_len);
}

static void
test_ctx_token(void **state)
{
    (void)state;
    static uint8_t m[MSG_MAX];
    /* A Kerberos AP-REQ's size, one byte, and a token filling the length field. */
    size_t sizes[] = {1, 1400, 12000, GSSFRAME_TOKEN_MAX};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = build(m, 1, GSSFRAME_MTYP_CTX, sizes[i]);
        check_ok(m, n, GSSFRAME_EXPECT_CTX, GSSFRAME_CTX_TOKEN_MAX, GSSFRAME_MTYP_CTX, sizes[i]);
    }
}

/* Section 3.6: a server that completes without an output token sends a zero-length token. */
static void
test_ctx_empty(void **state)
{
    (void)state;
    uint8_t m[GSSFRAME_HDR_LEN];
    size_t n = build(m, 1, GSSFRAME_MTYP_CTX, 0);
    check_ok(m, n, GSSFRAME_EXPECT_CTX | GSSFRAME_EXPECT_CTX_EMPTY, GSSFRAME_CTX_TOKEN_MAX,
             GSSFRAME_MTYP_CTX, 0);
    /* Without the flag (a client's token), empty is refused as soon as the length is in. */
    check_splits(m, n, n, GSSFRAME_ERR_EMPTY, GSSFRAME_EXPECT_CTX, GSSFRAME_CTX_TOKEN_MAX);
}

static void
test_level_wrapped(void **state)
{
    (void)state;
    uint8_t m[GSSFRAME_HDR_LEN + GSSFRAME_LEVEL_TOKEN_MAX + 1];
    struct gssframe f;
    /* An RFC 4121 wrap token of one octet, integrity only: 16 + 1 + 12 octets. */
    size_t n = build(m, 1, GSSFRAME_MTYP_LEVEL, 29);
    check_ok(m, n, GSSFRAME_EXPECT_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX, GSSFRAME_MTYP_LEVEL, 29);
    assert_int_equal(feed_exact(&f, m, n, GSSFRAME_EXPECT_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX),
                     (ssize_t)n);
    assert_false(gssframe_is_nec(&f));
    /* The bound itself is taken, one more is refused as soon as the length is in. */
    n = build(m, 1, GSSFRAME_MTYP_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX);
    check_ok(m, n, GSSFRAME_EXPECT_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX, GSSFRAME_MTYP_LEVEL,
             GSSFRAME_LEVEL_TOKEN_MAX);
    n = build(m, 1, GSSFRAME_MTYP_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX + 1);
    check_splits(m, GSSFRAME_HDR_LEN, GSSFRAME_HDR_LEN, GSSFRAME_ERR_LEN, GSSFRAME_EXPECT_LEVEL,
                 GSSFRAME_LEVEL_TOKEN_MAX);
}

/* curl --socks5-gssapi-nec: 01 02 00 01 then the level in the clear (curl sends 0). */
static void
test_level_nec(void **state)
{
    (void)state;
    const uint8_t m[] = {0x01, 0x02, 0x00, 0x01, 0x00};
    struct gssframe f;
    check_ok(m, sizeof(m), GSSFRAME_EXPECT_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX, GSSFRAME_MTYP_LEVEL, 1);
    assert_int_equal(feed_exact(&f, m, sizeof(m), GSSFRAME_EXPECT_LEVEL, 512), 5);
    assert_true(gssframe_is_nec(&f));
    assert_true(gssframe_level_known(m[GSSFRAME_HDR_LEN]));
    /* One octet of another mtyp is not a level. */
    f.mtyp = GSSFRAME_MTYP_DATA;
    assert_false(gssframe_is_nec(&f));
    f.mtyp = GSSFRAME_MTYP_CTX;
    assert_false(gssframe_is_nec(&f));
}

static void
test_levels(void **state)
{
    (void)state;
    assert_true(gssframe_level_known(GSSFRAME_LEVEL_NONE));
    assert_true(gssframe_level_known(GSSFRAME_LEVEL_INTEG));
    assert_true(gssframe_level_known(GSSFRAME_LEVEL_CONF));
    assert_true(gssframe_level_known(GSSFRAME_LEVEL_SELECTIVE));
    assert_false(gssframe_level_known(4));
    assert_false(gssframe_level_known(0xff));
}

static void
test_data(void **state)
{
    (void)state;
    static uint8_t m[MSG_MAX];
    size_t sizes[] = {1, 61, 16 * 1024 + 60, GSSFRAME_TOKEN_MAX};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = build(m, 1, GSSFRAME_MTYP_DATA, sizes[i]);
        check_ok(m, n, GSSFRAME_EXPECT_DATA, GSSFRAME_DATA_TOKEN_MAX, GSSFRAME_MTYP_DATA, sizes[i]);
    }
    /* A wrap token is never empty. */
    size_t n = build(m, 1, GSSFRAME_MTYP_DATA, 0);
    check_splits(m, n, n, GSSFRAME_ERR_EMPTY, GSSFRAME_EXPECT_DATA, GSSFRAME_DATA_TOKEN_MAX);
}

/* Section 3.8: two octets, no length; the bytes after it are not consumed. */
static void
test_abort(void **state)
{
    (void)state;
    const uint8_t m[] = {0x01, 0xff};
    check_ok(m, sizeof(m), GSSFRAME_EXPECT_ABORT | GSSFRAME_EXPECT_CTX, 100, GSSFRAME_MTYP_ABORT,
             0);
    check_splits(m, sizeof(m), 2, GSSFRAME_ERR_MTYP, GSSFRAME_EXPECT_CTX, 100);
}

static void
test_bad_ver(void **state)
{
    (void)state;
    uint8_t m[GSSFRAME_HDR_LEN + 3];
    /* SOCKS5's own version, 0, and what a client that skipped GSS-API would send. */
    const uint8_t vers[] = {0x00, 0x02, 0x05, 0xff};
    for (size_t i = 0; i < sizeof(vers); i++) {
        size_t n = build(m, vers[i], GSSFRAME_MTYP_CTX, 3);
        check_splits(m, n, 1, GSSFRAME_ERR_VER, ALL | GSSFRAME_EXPECT_ABORT, 100);
    }
}

static void
test_bad_mtyp(void **state)
{
    (void)state;
    uint8_t m[GSSFRAME_HDR_LEN + 3];
    const uint8_t unknown[] = {0x00, 0x04, 0x05, 0x80, 0xfe};
    for (size_t i = 0; i < sizeof(unknown); i++) {
        size_t n = build(m, 1, unknown[i], 3);
        check_splits(m, n, 2, GSSFRAME_ERR_MTYP, ALL | GSSFRAME_EXPECT_ABORT, 100);
    }
    /* Known but not what this phase takes: each mtyp against the others' masks. */
    const uint8_t known[] = {GSSFRAME_MTYP_CTX, GSSFRAME_MTYP_LEVEL, GSSFRAME_MTYP_DATA};
    const unsigned masks[] = {GSSFRAME_EXPECT_CTX | GSSFRAME_EXPECT_CTX_EMPTY,
                              GSSFRAME_EXPECT_LEVEL, GSSFRAME_EXPECT_DATA};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++) {
            if (i == j)
                continue;
            size_t n = build(m, 1, known[i], 3);
            check_splits(m, n, 2, GSSFRAME_ERR_MTYP, masks[j] | GSSFRAME_EXPECT_ABORT, 100);
        }
    /* Nothing expected: everything is misplaced. */
    size_t n = build(m, 1, GSSFRAME_MTYP_DATA, 3);
    check_splits(m, n, 2, GSSFRAME_ERR_MTYP, 0, 100);
}

static void
test_bounds(void **state)
{
    (void)state;
    static uint8_t m[MSG_MAX];
    /* At the bound, then one over it: refused once the length is in, before the token. */
    size_t n = build(m, 1, GSSFRAME_MTYP_DATA, 100);
    check_ok(m, n, GSSFRAME_EXPECT_DATA, 100, GSSFRAME_MTYP_DATA, 100);
    n = build(m, 1, GSSFRAME_MTYP_DATA, 101);
    check_splits(m, n, GSSFRAME_HDR_LEN, GSSFRAME_ERR_LEN, GSSFRAME_EXPECT_DATA, 100);
    /* A bound above the protocol's is the protocol's; 0 takes only the empty context token. */
    n = build(m, 1, GSSFRAME_MTYP_CTX, GSSFRAME_TOKEN_MAX);
    check_ok(m, n, GSSFRAME_EXPECT_CTX, SIZE_MAX, GSSFRAME_MTYP_CTX, GSSFRAME_TOKEN_MAX);
    n = build(m, 1, GSSFRAME_MTYP_CTX, 1);
    check_splits(m, n, GSSFRAME_HDR_LEN, GSSFRAME_ERR_LEN, GSSFRAME_EXPECT_CTX, 0);
    n = build(m, 1, GSSFRAME_MTYP_CTX, 0);
    check_ok(m, n, GSSFRAME_EXPECT_CTX | GSSFRAME_EXPECT_CTX_EMPTY, 0, GSSFRAME_MTYP_CTX, 0);
    /* The length is big-endian: 0x0100 is 256, not 1. */
    m[0] = 1, m[1] = GSSFRAME_MTYP_DATA, m[2] = 0x01, m[3] = 0x00;
    check_splits(m, GSSFRAME_HDR_LEN + 255, GSSFRAME_HDR_LEN + 255, 0, GSSFRAME_EXPECT_DATA,
                 GSSFRAME_TOKEN_MAX);
    memset(m + GSSFRAME_HDR_LEN, 0, 256);
    check_ok(m, GSSFRAME_HDR_LEN + 256, GSSFRAME_EXPECT_DATA, GSSFRAME_TOKEN_MAX,
             GSSFRAME_MTYP_DATA, 256);
}

static void
test_eof(void **state)
{
    (void)state;
    assert_int_equal(gssframe_eof(0), 0);
    assert_int_equal(gssframe_eof(1), GSSFRAME_ERR_TRUNC);
    assert_int_equal(gssframe_eof(GSSFRAME_HDR_LEN + 10), GSSFRAME_ERR_TRUNC);
}

static void
test_encoders(void **state)
{
    (void)state;
    uint8_t out[GSSFRAME_LEVEL_NEC_LEN + 1];
    struct gssframe f;

    memset(out, DIRTY, sizeof(out));
    assert_int_equal(gssframe_header(out, GSSFRAME_MTYP_CTX, 0x1234), GSSFRAME_HDR_LEN);
    assert_memory_equal(out, "\x01\x01\x12\x34", 4);
    assert_int_equal(out[4], DIRTY);
    assert_int_equal(gssframe_header(out, GSSFRAME_MTYP_CTX, 0), GSSFRAME_HDR_LEN);
    assert_memory_equal(out, "\x01\x01\x00\x00", 4);
    assert_int_equal(gssframe_header(out, GSSFRAME_MTYP_DATA, GSSFRAME_TOKEN_MAX),
                     GSSFRAME_HDR_LEN);
    assert_memory_equal(out, "\x01\x03\xff\xff", 4);
    assert_int_equal(gssframe_header(out, GSSFRAME_MTYP_LEVEL, 29), GSSFRAME_HDR_LEN);
    assert_memory_equal(out, "\x01\x02\x00\x1d", 4);
    /* What cannot be said in a header: a longer token, the abort, unknown types. */
    memset(out, DIRTY, sizeof(out));
    assert_int_equal(gssframe_header(out, GSSFRAME_MTYP_DATA, GSSFRAME_TOKEN_MAX + 1), 0);
    assert_int_equal(gssframe_header(out, GSSFRAME_MTYP_ABORT, 1), 0);
    assert_int_equal(gssframe_header(out, 0, 1), 0);
    assert_int_equal(gssframe_header(out, 4, 1), 0);
    assert_int_equal(out[0], DIRTY);

    memset(out, DIRTY, sizeof(out));
    assert_int_equal(gssframe_abort(out), GSSFRAME_ABORT_LEN);
    assert_memory_equal(out, "\x01\xff", 2);
    assert_int_equal(out[2], DIRTY);

    memset(out, DIRTY, sizeof(out));
    assert_int_equal(gssframe_level_nec(out, GSSFRAME_LEVEL_CONF), GSSFRAME_LEVEL_NEC_LEN);
    assert_memory_equal(out, "\x01\x02\x00\x01\x02", 5);
    assert_int_equal(out[5], DIRTY);
    /* What the encoder writes, the parser reads back as the NEC form. */
    assert_int_equal(feed_exact(&f, out, 5, GSSFRAME_EXPECT_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX), 5);
    assert_true(gssframe_is_nec(&f));
}

static ssize_t
sm_feed(const struct gssframe_sm *sm, struct gssframe *f, const uint8_t *p, size_t len)
{
    uint8_t *buf = dup_exact(p, len);
    ssize_t r = gssframe_sm_feed(sm, f, buf, len);
    free(buf);
    return r;
}

/* A Kerberos exchange as the server sees it: AP-REQ, level, data; everything else refused. */
static void
test_sm(void **state)
{
    (void)state;
    static uint8_t ctx[GSSFRAME_HDR_LEN + 1400], lvl[GSSFRAME_HDR_LEN + 29],
        data[GSSFRAME_HDR_LEN + 600], big_lvl[GSSFRAME_HDR_LEN + 513], empty[GSSFRAME_HDR_LEN];
    const uint8_t abort_msg[] = {0x01, 0xff};
    size_t nc = build(ctx, 1, GSSFRAME_MTYP_CTX, 1400);
    size_t nl = build(lvl, 1, GSSFRAME_MTYP_LEVEL, 29);
    size_t nd = build(data, 1, GSSFRAME_MTYP_DATA, 600);
    size_t nb = build(big_lvl, 1, GSSFRAME_MTYP_LEVEL, 513);
    struct gssframe_sm sm;
    struct gssframe f;

    gssframe_sm_init(&sm);
    assert_int_equal(sm.phase, GSSFRAME_PHASE_CTX);
    assert_int_equal(sm_feed(&sm, &f, ctx, nc), (ssize_t)nc);
    assert_int_equal(f.len, 1400);
    assert_int_equal(sm_feed(&sm, &f, ctx, 3), 0);
    assert_int_equal(sm_feed(&sm, &f, lvl, nl), GSSFRAME_ERR_MTYP);
    assert_int_equal(sm_feed(&sm, &f, data, nd), GSSFRAME_ERR_MTYP);
    assert_int_equal(sm_feed(&sm, &f, abort_msg, 2), GSSFRAME_ERR_MTYP);
    build(empty, 1, GSSFRAME_MTYP_CTX, 0);
    assert_int_equal(sm_feed(&sm, &f, empty, sizeof(empty)), GSSFRAME_ERR_EMPTY);
    /* The level is not agreed before the context is complete. */
    assert_false(gssframe_sm_agreed(&sm, GSSFRAME_LEVEL_INTEG));
    assert_int_equal(sm.phase, GSSFRAME_PHASE_CTX);

    assert_true(gssframe_sm_complete(&sm));
    assert_int_equal(sm.phase, GSSFRAME_PHASE_LEVEL);
    assert_false(gssframe_sm_complete(&sm));
    assert_int_equal(sm_feed(&sm, &f, lvl, nl), (ssize_t)nl);
    assert_int_equal(sm_feed(&sm, &f, ctx, nc), GSSFRAME_ERR_MTYP);
    assert_int_equal(sm_feed(&sm, &f, data, nd), GSSFRAME_ERR_MTYP);
    assert_int_equal(sm_feed(&sm, &f, big_lvl, nb), GSSFRAME_ERR_LEN);
    assert_false(gssframe_sm_agreed(&sm, 4));
    assert_int_equal(sm.phase, GSSFRAME_PHASE_LEVEL);

    assert_true(gssframe_sm_agreed(&sm, GSSFRAME_LEVEL_CONF));
    assert_int_equal(sm.phase, GSSFRAME_PHASE_DATA);
    assert_false(gssframe_sm_agreed(&sm, GSSFRAME_LEVEL_CONF));
    assert_false(gssframe_sm_complete(&sm));
    assert_int_equal(sm_feed(&sm, &f, data, nd), (ssize_t)nd);
    assert_int_equal(f.mtyp, GSSFRAME_MTYP_DATA);
    assert_int_equal(sm_feed(&sm, &f, lvl, nl), GSSFRAME_ERR_MTYP);
    assert_int_equal(sm_feed(&sm, &f, ctx, nc), GSSFRAME_ERR_MTYP);
    assert_int_equal(sm_feed(&sm, &f, abort_msg, 2), GSSFRAME_ERR_MTYP);
}

/* curl's exchange: level 0 agreed, after which the SOCKS request comes in the clear. */
static void
test_sm_clear(void **state)
{
    (void)state;
    const uint8_t nec[] = {0x01, 0x02, 0x00, 0x01, 0x00};
    const uint8_t socks_req[] = {0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80};
    struct gssframe_sm sm;
    struct gssframe f;

    gssframe_sm_init(&sm);
    assert_true(gssframe_sm_complete(&sm));
    assert_int_equal(sm_feed(&sm, &f, nec, sizeof(nec)), (ssize_t)sizeof(nec));
    assert_true(gssframe_is_nec(&f));
    assert_true(gssframe_sm_agreed(&sm, nec[GSSFRAME_HDR_LEN]));
    assert_int_equal(sm.phase, GSSFRAME_PHASE_CLEAR);
    assert_int_equal(sm_feed(&sm, &f, socks_req, sizeof(socks_req)), GSSFRAME_ERR_MTYP);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_token),
        cmocka_unit_test(test_ctx_empty),
        cmocka_unit_test(test_level_wrapped),
        cmocka_unit_test(test_level_nec),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_bad_ver),
        cmocka_unit_test(test_bad_mtyp),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_sm),
        cmocka_unit_test(test_sm_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
