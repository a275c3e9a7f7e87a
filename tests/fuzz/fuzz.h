/*
 * fuzz.h - helpers shared by the libFuzzer harnesses in tests/fuzz/ (header-only, static).
 *
 * FUZZ_CHECK aborts with the failed invariant, so libFuzzer records the input as a crash
 * (unlike assert(), it cannot be compiled out). fuzz_dup() gives a parser a heap block of
 * exactly the bytes it may read, so AddressSanitizer flags any read past them. The split
 * generator is seeded from the input itself: a run is deterministic, which libFuzzer needs to
 * reproduce a crash from its file.
 */
#ifndef RINGSOCKS_FUZZ_H
#define RINGSOCKS_FUZZ_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* Inputs up to this length are also fed one byte at a time, every prefix in turn. */
#define FUZZ_BYTEWISE_MAX 128
/* Longer inputs get this many random cut points. */
#define FUZZ_CUTS         24

/* A copy of p[0..n) in a heap block of exactly n bytes (a valid, unreadable block for 0). */
static inline uint8_t *
fuzz_dup(const uint8_t *p, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);

    FUZZ_CHECK(b != NULL);
    if (n > 0)
        memcpy(b, p, n);
    return b;
}

struct fuzz_rng {
    uint64_t s;
};

/* FNV-1a over the input, so each input has its own splits and the same ones on every run. */
static inline void
fuzz_rng_seed(struct fuzz_rng *r, const uint8_t *p, size_t n, uint64_t salt)
{
    uint64_t h = 0xcbf29ce484222325ull ^ salt;

    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    r->s = h ? h : 1;
}

/* xorshift64* */
static inline uint64_t
fuzz_rng_next(struct fuzz_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

/*
 * Fill cuts[] with increasing arrival points 0 < c1 < c2 < ... < n (the last is always n) and
 * return how many. style 0: every byte (n <= FUZZ_BYTEWISE_MAX); style 1: random cuts biased
 * to small steps, as TCP segments of a slow or hostile client would arrive. cuts needs room
 * for max(FUZZ_BYTEWISE_MAX, FUZZ_CUTS) + 1 entries.
 */
static inline size_t
fuzz_cuts(struct fuzz_rng *r, size_t n, int style, size_t *cuts)
{
    size_t k = 0;

    if (n == 0)
        return 0;
    if (style == 0 && n <= FUZZ_BYTEWISE_MAX) {
        for (size_t i = 1; i <= n; i++)
            cuts[k++] = i;
        return k;
    }
    size_t at = 0;
    while (at < n && k < FUZZ_CUTS) {
        uint64_t x = fuzz_rng_next(r);
        /* Mostly 1..8 byte steps, sometimes up to 300: crosses every field boundary. */
        size_t step = (x & 3) ? 1 + (size_t)(x >> 8) % 8 : 1 + (size_t)(x >> 8) % 300;
        at = at + step < n ? at + step : n;
        cuts[k++] = at;
    }
    if (cuts[k - 1] != n)
        cuts[k++] = n;
    return k;
}

/*
 * The name check's oracle, written apart from hostname.c so that the two can disagree: what
 * a destination name sent as p[0..n) must become. Returns 4 or 6 (an IP literal; the address
 * in *addr), 1 (a host name; its normal form in norm[], NUL-terminated) or 0 (no host name:
 * the parsers must refuse it). norm needs 256 bytes; addr 16.
 */
static inline int
fuzz_name_verdict(const uint8_t *p, size_t n, char *norm, uint8_t *addr)
{
    char text[256];

    if (n == 0 || n > 255 || memchr(p, 0, n))
        return 0;
    memcpy(text, p, n);
    text[n] = '\0';
    if (inet_pton(AF_INET, text, addr) == 1)
        return 4;
    if (inet_pton(AF_INET6, text, addr) == 1)
        return 6;
    if (text[n - 1] == '.')
        text[--n] = '\0';
    if (n == 0 || n > 253)
        return 0;
    /* Label by label: 1..63 bytes of [a-z0-9_-] after lower-casing. */
    size_t start = 0;
    bool digits = false;
    while (start <= n) {
        const char *dot = memchr(text + start, '.', n - start);
        size_t end = dot ? (size_t)(dot - text) : n;
        if (end == start || end - start > 63)
            return 0;
        digits = true;
        for (size_t i = start; i < end; i++) {
            char ch = text[i];
            if (ch >= 'A' && ch <= 'Z')
                ch = (char)(ch + 32);
            bool ok =
                (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
            if (!ok)
                return 0;
            digits = digits && ch >= '0' && ch <= '9';
            norm[i] = ch;
        }
        if (!dot)
            break;
        norm[end] = '.';
        start = end + 1;
    }
    if (digits) /* an all-digit last label: an address in another spelling */
        return 0;
    norm[n] = '\0';
    return 1;
}

/*
 * A destination the parser took from the name p[0..n) must be what the oracle says: the
 * address of an IP literal with its ATYP, or the name's normal form.
 */
static inline void
fuzz_check_name(uint8_t atyp, const char *name, uint8_t name_len, const void *addr_v4,
                const void *addr_v6, const uint8_t *p, size_t n)
{
    char norm[256];
    uint8_t a[16];
    int v = fuzz_name_verdict(p, n, norm, a);

    FUZZ_CHECK(v != 0);
    if (v == 4) {
        FUZZ_CHECK(atyp == 0x01 && name_len == 0 && memcmp(addr_v4, a, 4) == 0);
    } else if (v == 6) {
        FUZZ_CHECK(atyp == 0x04 && name_len == 0 && memcmp(addr_v6, a, 16) == 0);
    } else {
        FUZZ_CHECK(atyp == 0x03);
        FUZZ_CHECK(name_len == strlen(norm) && strcmp(name, norm) == 0);
    }
}

#endif
