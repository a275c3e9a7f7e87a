/*
 * gssframe.c - RFC 1961 message framing (gssframe.h).
 *
 * Owns nothing: pure functions over caller-provided buffers, safe on any
 * thread. Must never touch a socket, allocate, call GSS-API, or write to f
 * before a message is complete (a caller may keep offering the same f).
 *
 * Protocol: RFC 1961 sections 3.4 and 3.7 (context tokens), 3.8 (abort), 4.3
 * and 4.4 (protection level), 5 (per-message protection).
 */
#include "gssframe.h"

static unsigned
expect_bit(uint8_t mtyp)
{
    switch (mtyp) {
    case GSSFRAME_MTYP_CTX:
        return GSSFRAME_EXPECT_CTX;
    case GSSFRAME_MTYP_LEVEL:
        return GSSFRAME_EXPECT_LEVEL;
    case GSSFRAME_MTYP_DATA:
        return GSSFRAME_EXPECT_DATA;
    case GSSFRAME_MTYP_ABORT:
        return GSSFRAME_EXPECT_ABORT;
    default:
        return 0;
    }
}

ssize_t
gssframe_feed(struct gssframe *f, const uint8_t *p, size_t len, unsigned expect, size_t max)
{
    if (len < 1)
        return 0;
    if (p[0] != GSSFRAME_VER)
        return GSSFRAME_ERR_VER;
    if (len < 2)
        return 0;
    uint8_t mtyp = p[1];
    unsigned bit = expect_bit(mtyp);
    if (bit == 0 || !(expect & bit))
        return GSSFRAME_ERR_MTYP;
    /* Section 3.8: the abort is ver and mtyp alone. */
    if (mtyp == GSSFRAME_MTYP_ABORT) {
        f->mtyp = mtyp;
        f->len = 0;
        return GSSFRAME_ABORT_LEN;
    }
    if (len < GSSFRAME_HDR_LEN)
        return 0;
    size_t n = (size_t)p[2] << 8 | p[3];
    if (n > max)
        return GSSFRAME_ERR_LEN;
    /* Section 3.6: an empty context token is the server's "complete, nothing more". Every
     * other token is what a GSS-API call emitted, never empty: a wrap token has a header. */
    if (n == 0 && !(mtyp == GSSFRAME_MTYP_CTX && (expect & GSSFRAME_EXPECT_CTX_EMPTY)))
        return GSSFRAME_ERR_EMPTY;
    if (len - GSSFRAME_HDR_LEN < n)
        return 0;
    f->mtyp = mtyp;
    f->len = (uint16_t)n;
    return (ssize_t)(GSSFRAME_HDR_LEN + n);
}

int
gssframe_eof(size_t len)
{
    return len == 0 ? 0 : GSSFRAME_ERR_TRUNC;
}

bool
gssframe_is_nec(const struct gssframe *f)
{
    return f->mtyp == GSSFRAME_MTYP_LEVEL && f->len == 1;
}

bool
gssframe_level_known(uint8_t lvl)
{
    return lvl <= GSSFRAME_LEVEL_SELECTIVE;
}

size_t
gssframe_header(uint8_t out[GSSFRAME_HDR_LEN], uint8_t mtyp, size_t n)
{
    if (mtyp < GSSFRAME_MTYP_CTX || mtyp > GSSFRAME_MTYP_DATA || n > GSSFRAME_TOKEN_MAX)
        return 0;
    out[0] = GSSFRAME_VER;
    out[1] = mtyp;
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    return GSSFRAME_HDR_LEN;
}

size_t
gssframe_abort(uint8_t out[GSSFRAME_ABORT_LEN])
{
    out[0] = GSSFRAME_VER;
    out[1] = GSSFRAME_MTYP_ABORT;
    return GSSFRAME_ABORT_LEN;
}

size_t
gssframe_level_nec(uint8_t out[GSSFRAME_LEVEL_NEC_LEN], uint8_t lvl)
{
    gssframe_header(out, GSSFRAME_MTYP_LEVEL, 1);
    out[GSSFRAME_HDR_LEN] = lvl;
    return GSSFRAME_LEVEL_NEC_LEN;
}

void
gssframe_sm_init(struct gssframe_sm *sm)
{
    sm->phase = GSSFRAME_PHASE_CTX;
}

ssize_t
gssframe_sm_feed(const struct gssframe_sm *sm, struct gssframe *f, const uint8_t *p, size_t len)
{
    switch (sm->phase) {
    case GSSFRAME_PHASE_CTX:
        /* The client sends only what gss_init_sec_context emitted (section 3.3): never empty. */
        return gssframe_feed(f, p, len, GSSFRAME_EXPECT_CTX, GSSFRAME_CTX_TOKEN_MAX);
    case GSSFRAME_PHASE_LEVEL:
        return gssframe_feed(f, p, len, GSSFRAME_EXPECT_LEVEL, GSSFRAME_LEVEL_TOKEN_MAX);
    case GSSFRAME_PHASE_DATA:
        return gssframe_feed(f, p, len, GSSFRAME_EXPECT_DATA, GSSFRAME_DATA_TOKEN_MAX);
    default:
        return GSSFRAME_ERR_MTYP;
    }
}

bool
gssframe_sm_complete(struct gssframe_sm *sm)
{
    if (sm->phase != GSSFRAME_PHASE_CTX)
        return false;
    sm->phase = GSSFRAME_PHASE_LEVEL;
    return true;
}

bool
gssframe_sm_agreed(struct gssframe_sm *sm, uint8_t lvl)
{
    if (sm->phase != GSSFRAME_PHASE_LEVEL || !gssframe_level_known(lvl))
        return false;
    sm->phase = lvl == GSSFRAME_LEVEL_NONE ? GSSFRAME_PHASE_CLEAR : GSSFRAME_PHASE_DATA;
    return true;
}
