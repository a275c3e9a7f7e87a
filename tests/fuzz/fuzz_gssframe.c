/*
 * fuzz_gssframe.c - libFuzzer harness for the RFC 1961 framing (src/gssframe.c).
 *
 * Input: one byte picking the mtyp mask (GSSFRAME_EXPECT_*), one picking the token bound,
 * then the byte stream a peer sends. The first message is parsed whole, then arriving in
 * pieces (every byte for short inputs, random cuts for all), each time as a shard would:
 * the parser is offered everything received so far, in a heap block of exactly that size.
 * The answers must agree: a decision once made never changes as more bytes arrive, "need
 * more" and errors leave the frame untouched, and every verdict is what the bytes say
 * (checked against the header read here, apart from the parser). Then the whole stream is
 * walked message after message, and through the server's state machine.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "gssframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIRTY 0x5A

static const size_t bounds[] = {
    0, 1, 5, 29, GSSFRAME_LEVEL_TOKEN_MAX, 1000, GSSFRAME_TOKEN_MAX, SIZE_MAX};

static ssize_t
feed(struct gssframe *f, const uint8_t *data, size_t n, unsigned expect, size_t max)
{
    uint8_t *b = fuzz_dup(data, n);
    ssize_t r = gssframe_feed(f, b, n, expect, max);

    free(b);
    return r;
}

static unsigned
bit_of(uint8_t mtyp)
{
    switch (mtyp) {
    case 0x01:
        return GSSFRAME_EXPECT_CTX;
    case 0x02:
        return GSSFRAME_EXPECT_LEVEL;
    case 0x03:
        return GSSFRAME_EXPECT_DATA;
    case 0xff:
        return GSSFRAME_EXPECT_ABORT;
    default:
        return 0;
    }
}

/* The verdict on p[0..n) as the RFC's layout gives it, for a stream that is long enough. */
static void
check_verdict(const uint8_t *p, size_t n, ssize_t r, const struct gssframe *f, unsigned expect,
              size_t max)
{
    size_t cap = max < GSSFRAME_TOKEN_MAX ? max : GSSFRAME_TOKEN_MAX;

    if (r == GSSFRAME_ERR_VER) {
        FUZZ_CHECK(n >= 1 && p[0] != 0x01);
        return;
    }
    FUZZ_CHECK(n == 0 || p[0] == 0x01);
    if (n < 2) {
        FUZZ_CHECK(r == 0);
        return;
    }
    bool expected = (bit_of(p[1]) & expect) != 0;
    if (r == GSSFRAME_ERR_MTYP) {
        FUZZ_CHECK(!expected);
        return;
    }
    FUZZ_CHECK(expected);
    if (p[1] == 0xff) {
        FUZZ_CHECK(r == GSSFRAME_ABORT_LEN && f->mtyp == 0xff && f->len == 0);
        return;
    }
    if (n < 4) {
        FUZZ_CHECK(r == 0);
        return;
    }
    size_t len = (size_t)p[2] << 8 | p[3];
    bool empty_ok = p[1] == 0x01 && (expect & GSSFRAME_EXPECT_CTX_EMPTY);
    if (r == GSSFRAME_ERR_LEN) {
        FUZZ_CHECK(len > cap);
        return;
    }
    FUZZ_CHECK(len <= cap);
    if (r == GSSFRAME_ERR_EMPTY) {
        FUZZ_CHECK(len == 0 && !empty_ok);
        return;
    }
    FUZZ_CHECK(len > 0 || empty_ok);
    if (r == 0) {
        /* Undecided only while the token is short. */
        FUZZ_CHECK(n < 4 + len);
        return;
    }
    FUZZ_CHECK(r > 0 && (size_t)r == 4 + len && (size_t)r <= n);
    FUZZ_CHECK(f->mtyp == p[1] && f->len == len);
    FUZZ_CHECK(gssframe_is_nec(f) == (p[1] == 0x02 && len == 1));
    /* The encoder writes back the header it came from. */
    uint8_t hdr[GSSFRAME_HDR_LEN];
    FUZZ_CHECK(gssframe_header(hdr, p[1], len) == GSSFRAME_HDR_LEN);
    FUZZ_CHECK(memcmp(hdr, p, GSSFRAME_HDR_LEN) == 0);
}

static void
run_split(const uint8_t *data, size_t size, unsigned expect, size_t max, ssize_t want,
          const struct gssframe *want_f, struct fuzz_rng *rng, int style)
{
    size_t cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 1];
    size_t n = fuzz_cuts(rng, size, style, cuts);
    struct gssframe f, before;

    memset(&f, DIRTY, sizeof(f));
    for (size_t i = 0; i < n; i++) {
        memcpy(&before, &f, sizeof(f));
        ssize_t r = feed(&f, data, cuts[i], expect, max);
        if (r == 0) {
            FUZZ_CHECK(memcmp(&f, &before, sizeof(f)) == 0);
            continue;
        }
        FUZZ_CHECK(r == want);
        if (r > 0)
            FUZZ_CHECK(memcmp(&f, want_f, sizeof(f)) == 0);
        else
            FUZZ_CHECK(memcmp(&f, &before, sizeof(f)) == 0);
        return;
    }
    FUZZ_CHECK(want == 0);
}

/* Message after message, as a relay reads a stream of frames: each verdict as the bytes say. */
static void
walk(const uint8_t *data, size_t size, unsigned expect, size_t max)
{
    size_t off = 0;
    while (off < size) {
        struct gssframe f;
        ssize_t r = feed(&f, data + off, size - off, expect, max);
        check_verdict(data + off, size - off, r, &f, expect, max);
        if (r <= 0) {
            FUZZ_CHECK(r != 0 || gssframe_eof(size - off) == GSSFRAME_ERR_TRUNC);
            return;
        }
        off += (size_t)r;
    }
    FUZZ_CHECK(gssframe_eof(0) == 0);
}

/* The server's exchange driven by the stream: a context token whose first byte is odd
 * completes the context, a level message agrees on its first byte (NEC or not). */
static void
walk_sm(const uint8_t *data, size_t size)
{
    struct gssframe_sm sm;
    size_t off = 0;

    gssframe_sm_init(&sm);
    while (off < size && sm.phase != GSSFRAME_PHASE_CLEAR) {
        struct gssframe f;
        const uint8_t *p = data + off;
        uint8_t phase = sm.phase;
        ssize_t r = gssframe_sm_feed(&sm, &f, p, size - off);
        FUZZ_CHECK(sm.phase == phase);
        if (r <= 0)
            return;
        FUZZ_CHECK(f.mtyp == (phase == GSSFRAME_PHASE_CTX     ? 0x01
                              : phase == GSSFRAME_PHASE_LEVEL ? 0x02
                                                              : 0x03));
        FUZZ_CHECK(f.len > 0);
        if (phase == GSSFRAME_PHASE_LEVEL)
            FUZZ_CHECK(f.len <= GSSFRAME_LEVEL_TOKEN_MAX);
        uint8_t first = p[GSSFRAME_HDR_LEN];
        if (phase == GSSFRAME_PHASE_CTX && (first & 1))
            FUZZ_CHECK(gssframe_sm_complete(&sm) && sm.phase == GSSFRAME_PHASE_LEVEL);
        else if (phase == GSSFRAME_PHASE_LEVEL)
            FUZZ_CHECK(gssframe_sm_agreed(&sm, first) == gssframe_level_known(first));
        off += (size_t)r;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gssframe want_f;
    struct fuzz_rng rng;

    if (size < 2)
        return 0;
    unsigned expect = data[0] & 0x1F;
    size_t max = bounds[data[1] % (sizeof(bounds) / sizeof(bounds[0]))];
    data += 2;
    size -= 2;

    memset(&want_f, DIRTY, sizeof(want_f));
    ssize_t want = feed(&want_f, data, size, expect, max);
    FUZZ_CHECK((want >= GSSFRAME_ERR_EMPTY && want <= 0) || (want > 0 && (size_t)want <= size));
    check_verdict(data, size, want, &want_f, expect, max);
    if (want <= 0) {
        struct gssframe untouched;
        memset(&untouched, DIRTY, sizeof(untouched));
        FUZZ_CHECK(memcmp(&want_f, &untouched, sizeof(want_f)) == 0);
    }
    /* Past the longest message the answer is always known. */
    if (size >= GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX)
        FUZZ_CHECK(want != 0);
    fuzz_rng_seed(&rng, data, size, 17);
    run_split(data, size, expect, max, want, &want_f, &rng, 0);
    run_split(data, size, expect, max, want, &want_f, &rng, 1);
    walk(data, size, expect, max);
    walk_sm(data, size);
    return 0;
}
