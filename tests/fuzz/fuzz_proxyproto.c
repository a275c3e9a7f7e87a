/*
 * fuzz_proxyproto.c - libFuzzer harness for the PROXY protocol v1/v2 header parser
 * (src/proxyproto.c).
 *
 * The input is the byte stream a load balancer sends. It is parsed whole, then arriving in
 * pieces (every byte for short inputs, random cuts for all), each time as the handshake
 * does: the parser is offered everything received so far, in a heap block of exactly that
 * size. The answers must agree: a decision once made never changes as more bytes arrive,
 * "need more" and errors leave the state untouched, and a parsed header matches the bytes
 * it came from.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIRTY 0x5A

static ssize_t
feed(struct proxyproto *pp, const uint8_t *data, size_t n)
{
    uint8_t *b = fuzz_dup(data, n);
    ssize_t r = proxyproto_feed(pp, b, n);

    free(b);
    return r;
}

static uint16_t
port_of(const union sockaddr_inx *a)
{
    return ntohs(a->sa.sa_family == AF_INET ? a->v4.sin_port : a->v6.sin6_port);
}

/* A v1 line: "PROXY ", printable, CRLF last; the ports it names end it. */
static void
check_v1(const struct proxyproto *pp, const uint8_t *p, size_t r)
{
    FUZZ_CHECK(r >= 8 && r <= PROXYPROTO_V1_MAX);
    FUZZ_CHECK(memcmp(p, "PROXY ", 6) == 0);
    FUZZ_CHECK(p[r - 2] == '\r' && p[r - 1] == '\n');
    for (size_t i = 6; i < r - 2; i++)
        FUZZ_CHECK(p[i] >= 0x20 && p[i] <= 0x7E);
    if (pp->local) {
        FUZZ_CHECK(memcmp(p + 6, "UNKNOWN", 7) == 0);
        FUZZ_CHECK(pp->src.sa.sa_family == 0 && pp->dst.sa.sa_family == 0);
        return;
    }
    int fam = memcmp(p + 6, "TCP4 ", 5) == 0 ? AF_INET : AF_INET6;
    FUZZ_CHECK(fam == AF_INET || memcmp(p + 6, "TCP6 ", 5) == 0);
    FUZZ_CHECK(pp->src.sa.sa_family == fam && pp->dst.sa.sa_family == fam);
    char tail[16];
    int n = snprintf(tail, sizeof(tail), " %u %u\r\n", port_of(&pp->src), port_of(&pp->dst));
    FUZZ_CHECK(n > 0 && (size_t)n < r && memcmp(p + r - (size_t)n, tail, (size_t)n) == 0);
    /* The source address is the text after the protocol, as inet_pton() read it. */
    char text[64];
    const uint8_t *a = p + 11;
    const uint8_t *sp = memchr(a, ' ', r - 11);
    FUZZ_CHECK(sp != NULL && (size_t)(sp - a) < sizeof(text));
    memcpy(text, a, (size_t)(sp - a));
    text[sp - a] = '\0';
    uint8_t raw[16];
    FUZZ_CHECK(inet_pton(fam, text, raw) == 1);
    FUZZ_CHECK(memcmp(raw,
                      fam == AF_INET ? (const void *)&pp->src.v4.sin_addr
                                     : (const void *)&pp->src.v6.sin6_addr,
                      fam == AF_INET ? 4 : 16) == 0);
}

/* A v2 header: version 2, its length field, LOCAL or TCP over IPv4/IPv6 at the bytes. */
static void
check_v2(const struct proxyproto *pp, const uint8_t *p, size_t r)
{
    FUZZ_CHECK(r >= 16 && r <= PROXYPROTO_V2_MAX);
    FUZZ_CHECK(p[12] >> 4 == 2);
    FUZZ_CHECK(r == 16 + ((size_t)p[14] << 8 | p[15]));
    if (pp->local) {
        FUZZ_CHECK((p[12] & 0x0F) == 0);
        FUZZ_CHECK(pp->src.sa.sa_family == 0);
        return;
    }
    FUZZ_CHECK((p[12] & 0x0F) == 1);
    if (p[13] == 0x11) {
        FUZZ_CHECK(pp->src.sa.sa_family == AF_INET && r >= 28);
        FUZZ_CHECK(memcmp(&pp->src.v4.sin_addr, p + 16, 4) == 0);
        FUZZ_CHECK(memcmp(&pp->dst.v4.sin_addr, p + 20, 4) == 0);
        FUZZ_CHECK(memcmp(&pp->src.v4.sin_port, p + 24, 2) == 0);
    } else {
        FUZZ_CHECK(p[13] == 0x21);
        FUZZ_CHECK(pp->src.sa.sa_family == AF_INET6 && r >= 52);
        FUZZ_CHECK(memcmp(&pp->src.v6.sin6_addr, p + 16, 16) == 0);
        FUZZ_CHECK(memcmp(&pp->dst.v6.sin6_port, p + 50, 2) == 0);
    }
}

static void
run_split(const uint8_t *data, size_t size, ssize_t want, const struct proxyproto *want_pp,
          struct fuzz_rng *rng, int style)
{
    size_t cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 1];
    size_t n = fuzz_cuts(rng, size, style, cuts);
    struct proxyproto pp, before;

    memset(&pp, DIRTY, sizeof(pp));
    for (size_t i = 0; i < n; i++) {
        memcpy(&before, &pp, sizeof(pp));
        ssize_t r = feed(&pp, data, cuts[i]);
        if (r == 0) {
            FUZZ_CHECK(memcmp(&pp, &before, sizeof(pp)) == 0);
            continue;
        }
        FUZZ_CHECK(r == want);
        if (r > 0)
            FUZZ_CHECK(memcmp(&pp, want_pp, sizeof(pp)) == 0);
        else
            FUZZ_CHECK(memcmp(&pp, &before, sizeof(pp)) == 0);
        return;
    }
    FUZZ_CHECK(want == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxyproto want_pp;
    struct fuzz_rng rng;

    memset(&want_pp, DIRTY, sizeof(want_pp));
    ssize_t want = feed(&want_pp, data, size);
    FUZZ_CHECK((want >= PROXYPROTO_ERR_V2_TLV && want <= 0) || (want > 0 && (size_t)want <= size));
    /* Past the longest header the answer is always known. */
    if (size >= PROXYPROTO_MAX)
        FUZZ_CHECK(want != 0);
    if (want > 0) {
        FUZZ_CHECK(want_pp.version == 1 || want_pp.version == 2);
        FUZZ_CHECK(want_pp.local == 0 || want_pp.local == 1);
        if (want_pp.version == 1)
            check_v1(&want_pp, data, (size_t)want);
        else
            check_v2(&want_pp, data, (size_t)want);
    }
    fuzz_rng_seed(&rng, data, size, 13);
    run_split(data, size, want, &want_pp, &rng, 0);
    run_split(data, size, want, &want_pp, &rng, 1);
    return 0;
}
