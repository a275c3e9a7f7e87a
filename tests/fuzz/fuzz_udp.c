/*
 * fuzz_udp.c - libFuzzer harness for the UDP ASSOCIATE datagram header (RFC 1928 section 7):
 * socks5_udp_parse() and socks5_udp_header() in src/socks5.c.
 *
 * The input is one datagram from a client. It is parsed from a heap block of exactly its
 * size, then truncated at every length below the header (a datagram arrives whole: a short
 * one is malformed, never "need more") and at random lengths past it. A parsed header is
 * checked against its bytes; an address header is encoded again with socks5_udp_header() and
 * must parse back to the same destination (byte for byte when FRAG was 0). The input also
 * serves as a raw sockaddr for the encoder, whose output must always parse.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIRTY 0x5A

static ssize_t
parse(const uint8_t *data, size_t n, struct socks_dest *d, uint8_t *frag)
{
    uint8_t *b = fuzz_dup(data, n);
    ssize_t r = socks5_udp_parse(b, n, d, frag);

    free(b);
    return r;
}

static void
check_header(const struct socks_dest *d, uint8_t frag, const uint8_t *p, size_t r)
{
    FUZZ_CHECK(r >= 8 && r <= SOCKS5_UDP_HDR_MAX);
    FUZZ_CHECK(p[0] == 0 && p[1] == 0);
    FUZZ_CHECK(frag == p[2]);
    FUZZ_CHECK(d->atyp == p[3] || p[3] == SOCKS5_ATYP_DOMAIN);
    FUZZ_CHECK(d->port == (uint16_t)(p[r - 2] << 8 | p[r - 1]));
    switch (p[3]) {
    case SOCKS5_ATYP_IPV4:
        FUZZ_CHECK(r == 10 && d->name_len == 0);
        FUZZ_CHECK(memcmp(&d->u.v4, p + 4, 4) == 0);
        break;
    case SOCKS5_ATYP_IPV6:
        FUZZ_CHECK(r == 22 && d->name_len == 0);
        FUZZ_CHECK(memcmp(&d->u.v6, p + 4, 16) == 0);
        break;
    case SOCKS5_ATYP_DOMAIN:
        /* The name check (issue #9): an IP literal comes back as that address. */
        FUZZ_CHECK(r == 5 + (size_t)p[4] + 2);
        fuzz_check_name(d->atyp, d->u.name, d->name_len, &d->u.v4, &d->u.v6, p + 5, p[4]);
        break;
    default:
        FUZZ_CHECK(0);
    }
}

/* Encode src into a block of exactly SOCKS5_UDP_HDR_MAX bytes; the result must parse back. */
static size_t
encode(const struct sockaddr *src, uint8_t *copy, struct socks_dest *back)
{
    uint8_t *out = malloc(SOCKS5_UDP_HDR_MAX);
    uint8_t frag = DIRTY;

    FUZZ_CHECK(out != NULL);
    size_t n = socks5_udp_header(out, src);
    FUZZ_CHECK(n == 10 || n == 22);
    FUZZ_CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0);
    FUZZ_CHECK(parse(out, n, back, &frag) == (ssize_t)n);
    FUZZ_CHECK(frag == 0);
    memcpy(copy, out, n);
    free(out);
    return n;
}

/* A parsed address header, encoded again, names the same destination. */
static void
check_roundtrip(const struct socks_dest *d, uint8_t frag, const uint8_t *p, size_t r)
{
    struct sockaddr_storage ss;
    struct socks_dest back;
    uint8_t out[SOCKS5_UDP_HDR_MAX];
    bool mapped = false;

    memset(&ss, 0, sizeof(ss));
    if (p[3] == SOCKS5_ATYP_DOMAIN)
        return; /* a name, or an IP literal sent as one: not what the encoder writes */
    if (d->atyp == SOCKS5_ATYP_IPV4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr = d->u.v4;
        s4->sin_port = htons(d->port);
    } else if (d->atyp == SOCKS5_ATYP_IPV6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = d->u.v6;
        s6->sin6_port = htons(d->port);
        mapped = IN6_IS_ADDR_V4MAPPED(&d->u.v6);
    } else {
        /* A name has no sockaddr: the encoder only ever names the peer's address. */
        return;
    }
    size_t n = encode((const struct sockaddr *)&ss, out, &back);
    FUZZ_CHECK(back.port == d->port);
    if (mapped) {
        FUZZ_CHECK(n == 10 && back.atyp == SOCKS5_ATYP_IPV4);
        FUZZ_CHECK(memcmp(&back.u.v4, &d->u.v6.s6_addr[12], 4) == 0);
        return;
    }
    FUZZ_CHECK(n == r && back.atyp == d->atyp);
    FUZZ_CHECK(memcmp(&back.u, &d->u, n == 10 ? 4 : 16) == 0);
    if (frag == 0)
        FUZZ_CHECK(memcmp(out, p, n) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct socks_dest d;
    struct socks_dest t;
    struct socks_dest before;
    struct fuzz_rng rng;
    uint8_t frag = DIRTY;
    uint8_t tfrag;

    memset(&d, DIRTY, sizeof(d));
    memcpy(&before, &d, sizeof(d));
    ssize_t r = parse(data, size, &d, &frag);
    FUZZ_CHECK(r == -1 || (r > 0 && (size_t)r <= size));
    if (r < 0) {
        FUZZ_CHECK(memcmp(&d, &before, sizeof(d)) == 0 && frag == DIRTY);
        /* A whole, well-formed header with a name is refused only for the name. */
        if (size >= 5 && data[0] == 0 && data[1] == 0 && data[3] == SOCKS5_ATYP_DOMAIN &&
            size >= 5 + (size_t)data[4] + 2) {
            char norm[256];
            uint8_t a[16];
            FUZZ_CHECK(fuzz_name_verdict(data + 5, data[4], norm, a) == 0);
        }
    } else {
        check_header(&d, frag, data, (size_t)r);
        check_roundtrip(&d, frag, data, (size_t)r);
    }

    /*
     * Truncations: every length below the header is malformed and writes nothing; lengths
     * past it parse the same header (the payload is not looked at).
     */
    size_t hlen = r > 0 ? (size_t)r : size + 1;
    for (size_t k = 0; k < size && k < hlen; k++) {
        memset(&t, DIRTY, sizeof(t));
        tfrag = DIRTY;
        FUZZ_CHECK(parse(data, k, &t, &tfrag) == -1);
        FUZZ_CHECK(memcmp(&t, &before, sizeof(t)) == 0 && tfrag == DIRTY);
    }
    fuzz_rng_seed(&rng, data, size, 7);
    for (int i = 0; i < 4 && r > 0 && (size_t)r < size; i++) {
        size_t k = (size_t)r + (size_t)(fuzz_rng_next(&rng) % (size - (size_t)r + 1));
        memset(&t, DIRTY, sizeof(t));
        tfrag = DIRTY;
        FUZZ_CHECK(parse(data, k, &t, &tfrag) == r);
        FUZZ_CHECK(memcmp(&t, &d, sizeof(t)) == 0 && tfrag == frag);
    }

    /* The input as a raw sockaddr of any family: the header still parses. */
    struct sockaddr_storage ss;
    struct socks_dest back;
    uint8_t out[SOCKS5_UDP_HDR_MAX];
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, data, size < sizeof(ss) ? size : sizeof(ss));
    size_t n = encode((const struct sockaddr *)&ss, out, &back);
    if (ss.ss_family == AF_INET6 &&
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&ss)->sin6_addr))
        FUZZ_CHECK(n == 22);
    else
        FUZZ_CHECK(n == 10);
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        FUZZ_CHECK(back.u.v4.s_addr == 0 && back.port == 0);
    return 0;
}
