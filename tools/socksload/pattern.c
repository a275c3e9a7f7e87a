/*
 * pattern.c - the deterministic byte stream both ends verify, and the target header.
 *
 * pattern_init() builds one read-only buffer before any thread starts; afterwards every
 * thread reads it and nobody writes it. Must never allocate per call.
 */
#include "socksload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* PATTERN_CHUNK + PATTERN_MOD bytes; buf[i] = i % PATTERN_MOD. */
static uint8_t pattern_buf[PATTERN_CHUNK + PATTERN_MOD];

void
pattern_init(void)
{
    for (size_t i = 0; i < sizeof(pattern_buf); i++)
        pattern_buf[i] = (uint8_t)(i % PATTERN_MOD);
}

const uint8_t *
pattern_at(uint32_t seed, uint64_t off)
{
    return pattern_buf + (((uint64_t)seed + off) % PATTERN_MOD);
}

bool
pattern_check(uint32_t seed, uint64_t off, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t k = n < PATTERN_CHUNK ? n : PATTERN_CHUNK;
        if (memcmp(p, pattern_at(seed, off), k) != 0)
            return false;
        p += k;
        off += k;
        n -= k;
    }
    return true;
}

static void
put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void
pattern_hdr_encode(uint8_t *out, const struct pattern_hdr *h)
{
    out[0] = 's';
    out[1] = 'l';
    out[2] = h->mode;
    out[3] = h->flags;
    put32(out + 4, h->seed);
    put32(out + 8, h->a);
    put32(out + 12, h->b);
    put32(out + 16, h->flags & PATTERN_F_KEY ? h->key : 0);
}

int
pattern_hdr_decode(struct pattern_hdr *h, const uint8_t *in)
{
    if (in[0] != 's' || in[1] != 'l' || (in[3] & ~(PATTERN_F_KEY | PATTERN_F_CLOSE)) != 0)
        return -EPROTO;
    if (!strchr("SKBEQ", in[2]) || in[2] == 0)
        return -EPROTO;
    if ((in[3] & PATTERN_F_CLOSE) && in[2] != 'Q')
        return -EPROTO; /* only a request/response has an end to close at */
    h->mode = in[2];
    h->seed = get32(in + 4);
    h->a = get32(in + 8);
    h->b = get32(in + 12);
    h->flags = in[3];
    h->key = get32(in + 16);
    if (!(h->flags & PATTERN_F_KEY) && h->key != 0)
        return -EPROTO;
    return 0;
}
