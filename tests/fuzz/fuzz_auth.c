/*
 * fuzz_auth.c - libFuzzer harness for the RFC 1929 sub-negotiation parser and status encoder
 * (src/auth.c).
 *
 * The input is the byte stream a client sends after choosing method 0x02. It is parsed whole,
 * then arriving in pieces (every byte for short inputs, random cuts for all), each time from a
 * heap block of exactly the bytes received. The answers must agree, "need more" and errors
 * leave the credential untouched, and a parsed credential matches the bytes it came from.
 */
#include "auth.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIRTY 0x5A

static ssize_t
feed(struct auth_cred *cred, const uint8_t *data, size_t n)
{
    uint8_t *b = fuzz_dup(data, n);
    ssize_t r = auth_feed(cred, b, n);

    free(b);
    return r;
}

static void
check_cred(const struct auth_cred *c, const uint8_t *p, size_t r)
{
    FUZZ_CHECK(p[0] == AUTH_VERSION);
    FUZZ_CHECK(c->ulen >= 1 && c->plen >= 1);
    FUZZ_CHECK(c->ulen == p[1]);
    FUZZ_CHECK(c->plen == p[2 + c->ulen]);
    FUZZ_CHECK(r == 3 + (size_t)c->ulen + c->plen);
    FUZZ_CHECK(r <= AUTH_REQUEST_MAX);
    FUZZ_CHECK(c->user[c->ulen] == '\0' && c->pass[c->plen] == '\0');
    FUZZ_CHECK(strlen(c->user) == c->ulen && strlen(c->pass) == c->plen);
    FUZZ_CHECK(memcmp(c->user, p + 2, c->ulen) == 0);
    FUZZ_CHECK(memcmp(c->pass, p + 3 + c->ulen, c->plen) == 0);
}

static void
run_split(const uint8_t *data, size_t size, ssize_t want, const struct auth_cred *want_c,
          struct fuzz_rng *rng, int style)
{
    size_t cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 1];
    size_t n = fuzz_cuts(rng, size, style, cuts);
    struct auth_cred c;
    struct auth_cred before;

    memset(&c, DIRTY, sizeof(c));
    for (size_t i = 0; i < n; i++) {
        memcpy(&before, &c, sizeof(c));
        ssize_t r = feed(&c, data, cuts[i]);
        if (r == 0) {
            FUZZ_CHECK(memcmp(&c, &before, sizeof(c)) == 0);
            continue;
        }
        FUZZ_CHECK(r == want);
        /* Both started DIRTY, so even the bytes past the strings must agree. */
        if (r > 0)
            FUZZ_CHECK(memcmp(&c, want_c, sizeof(c)) == 0);
        else
            FUZZ_CHECK(memcmp(&c, &before, sizeof(c)) == 0);
        return;
    }
    FUZZ_CHECK(want == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_cred want_c;
    struct fuzz_rng rng;

    memset(&want_c, DIRTY, sizeof(want_c));
    ssize_t want = feed(&want_c, data, size);
    FUZZ_CHECK(want == 0 || want == AUTH_ERR_FAIL || want == AUTH_ERR_CLOSE ||
               (want > 0 && (size_t)want <= size));
    if (size >= AUTH_REQUEST_MAX)
        FUZZ_CHECK(want != 0);
    if (want == AUTH_ERR_CLOSE)
        FUZZ_CHECK(size > 0 && data[0] != AUTH_VERSION);
    if (want > 0)
        check_cred(&want_c, data, (size_t)want);

    fuzz_rng_seed(&rng, data, size, 1929);
    run_split(data, size, want, &want_c, &rng, 0);
    run_split(data, size, want, &want_c, &rng, 1);

    uint8_t *out = malloc(2);
    FUZZ_CHECK(out != NULL);
    uint8_t status = size > 0 ? data[size - 1] : AUTH_STATUS_FAIL;
    FUZZ_CHECK(auth_reply(out, status) == 2);
    FUZZ_CHECK(out[0] == AUTH_VERSION && out[1] == status);
    free(out);
    return 0;
}
