/*
 * fuzz_httpconnect.c - libFuzzer harness for the HTTP CONNECT request parser
 * (src/httpconnect.c).
 *
 * The input is the byte stream an HTTP proxy client sends. It is parsed whole, then arriving
 * in pieces (every byte for short inputs, random cuts for all), each time as the handshake
 * does: the parser is offered everything received so far, in a heap block of exactly that
 * size. The answers must agree: a decision once made never changes as more bytes arrive,
 * "need more" and errors leave the request and the credentials untouched, and a parsed
 * header is a CONNECT line ending in its empty line, within the bound, with credentials
 * RFC 1929 could carry.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "httpconnect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIRTY 0x5A

struct out {
    struct httpconnect hc;
    struct auth_cred cr;
};

static ssize_t
feed(struct out *o, const uint8_t *data, size_t n)
{
    uint8_t *b = fuzz_dup(data, n);
    ssize_t r = httpconnect_feed(&o->hc, &o->cr, b, n);

    free(b);
    return r;
}

static bool
is_err(ssize_t r)
{
    return r == HTTPCONNECT_ERR_BAD || r == HTTPCONNECT_ERR_METHOD ||
           r == HTTPCONNECT_ERR_TOO_LONG || r == HTTPCONNECT_ERR_VERSION;
}

static void
check_ok(const struct out *o, const uint8_t *p, size_t r)
{
    FUZZ_CHECK(r <= HTTPCONNECT_HEADER_MAX);
    FUZZ_CHECK(r >= 12 && memcmp(p, "CONNECT ", 8) == 0);
    FUZZ_CHECK(p[r - 1] == '\n' && (p[r - 2] == '\n' || (p[r - 2] == '\r' && p[r - 3] == '\n')));
    FUZZ_CHECK(o->hc.minor <= 9);
    FUZZ_CHECK(o->hc.dest.port >= 1);
    const struct socks_dest *d = &o->hc.dest;
    FUZZ_CHECK(d->atyp == SOCKS5_ATYP_IPV4 || d->atyp == SOCKS5_ATYP_IPV6 ||
               d->atyp == SOCKS5_ATYP_DOMAIN);
    if (d->atyp == SOCKS5_ATYP_DOMAIN)
        FUZZ_CHECK(d->name_len >= 1 && strlen(d->u.name) == d->name_len);
    FUZZ_CHECK(o->hc.auth <= HTTPCONNECT_AUTH_BAD);
    if (o->hc.auth == HTTPCONNECT_AUTH_BASIC) {
        FUZZ_CHECK(o->cr.ulen >= 1 && strlen(o->cr.user) == o->cr.ulen);
        FUZZ_CHECK(o->cr.plen >= 1 && strlen(o->cr.pass) == o->cr.plen);
        FUZZ_CHECK(!strchr(o->cr.user, ':'));
    }
}

static void
run_split(const uint8_t *data, size_t size, ssize_t want, const struct out *want_o,
          struct fuzz_rng *rng, int style)
{
    size_t cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 1];
    size_t n = fuzz_cuts(rng, size, style, cuts);
    struct out o, before;

    memset(&o, DIRTY, sizeof(o));
    for (size_t i = 0; i < n; i++) {
        memcpy(&before, &o, sizeof(o));
        ssize_t r = feed(&o, data, cuts[i]);
        if (r == 0) {
            FUZZ_CHECK(memcmp(&o, &before, sizeof(o)) == 0);
            continue;
        }
        FUZZ_CHECK(r == want);
        if (r > 0) {
            FUZZ_CHECK(memcmp(&o.hc, &want_o->hc, sizeof(o.hc)) == 0);
            if (o.hc.auth == HTTPCONNECT_AUTH_BASIC)
                FUZZ_CHECK(memcmp(&o.cr, &want_o->cr, sizeof(o.cr)) == 0);
        } else {
            FUZZ_CHECK(memcmp(&o, &before, sizeof(o)) == 0);
        }
        return;
    }
    FUZZ_CHECK(want == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct out want_o;
    struct fuzz_rng rng;

    memset(&want_o, DIRTY, sizeof(want_o));
    ssize_t want = feed(&want_o, data, size);
    FUZZ_CHECK(want == 0 || is_err(want) || (want > 0 && (size_t)want <= size));
    /* Past the longest header the answer is always known. */
    if (size >= HTTPCONNECT_HEADER_MAX)
        FUZZ_CHECK(want != 0);
    if (want > 0)
        check_ok(&want_o, data, (size_t)want);
    fuzz_rng_seed(&rng, data, size, 13);
    run_split(data, size, want, &want_o, &rng, 0);
    run_split(data, size, want, &want_o, &rng, 1);
    return 0;
}
