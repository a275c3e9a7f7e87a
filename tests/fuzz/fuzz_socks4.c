/*
 * fuzz_socks4.c - libFuzzer harness for the SOCKS4/4a request parser and reply encoder
 * (src/socks4.c).
 *
 * The input is the byte stream a client sends. It is parsed whole, then arriving in pieces
 * (every byte for short inputs, random cuts for all), each time as a session would: the
 * parser is offered everything received so far, in a heap block of exactly that size. The
 * answers must agree: a decision once made never changes as more bytes arrive, "need more"
 * leaves the state untouched, and a parsed request matches the bytes it came from.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "socks4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIRTY 0x5A

static ssize_t
feed(struct socks4 *st, const uint8_t *data, size_t n)
{
    uint8_t *b = fuzz_dup(data, n);
    ssize_t r = socks4_feed(st, b, n);

    free(b);
    return r;
}

/* Everything a complete request must satisfy, checked against the bytes it was parsed from. */
static void
check_request(const struct socks4 *st, const uint8_t *p, size_t r)
{
    FUZZ_CHECK(r >= 9 && r <= SOCKS4_REQUEST_MAX);
    FUZZ_CHECK(p[0] == SOCKS4_VERSION);
    FUZZ_CHECK(p[r - 1] == 0);
    FUZZ_CHECK(st->cmd == p[1]);
    FUZZ_CHECK(st->cmd == SOCKS4_CMD_CONNECT || st->cmd == SOCKS4_CMD_BIND);
    FUZZ_CHECK(st->dest.port == (uint16_t)(p[2] << 8 | p[3]));
    FUZZ_CHECK(st->userid_len <= SOCKS4_USERID_MAX);
    FUZZ_CHECK(st->userid[st->userid_len] == '\0');
    FUZZ_CHECK(strlen(st->userid) == st->userid_len);
    FUZZ_CHECK(memcmp(st->userid, p + 8, st->userid_len) == 0);
    FUZZ_CHECK(p[8 + st->userid_len] == 0);

    bool marker = p[4] == 0 && p[5] == 0 && p[6] == 0 && p[7] != 0;
    FUZZ_CHECK(st->is_4a == marker);
    if (st->is_4a) {
        /* The host name went through the name check (issue #9). */
        size_t host_off = 8 + st->userid_len + 1;
        const uint8_t *nul = memchr(p + host_off, 0, r - host_off);
        FUZZ_CHECK(nul != NULL && (size_t)(nul - p) == r - 1);
        const struct socks_dest *d = &st->dest;
        fuzz_check_name(d->atyp, d->u.name, d->name_len, &d->u.v4, &d->u.v6, p + host_off,
                        r - 1 - host_off);
    } else {
        FUZZ_CHECK(st->dest.atyp == SOCKS5_ATYP_IPV4);
        FUZZ_CHECK(st->dest.name_len == 0);
        FUZZ_CHECK(memcmp(&st->dest.u.v4, p + 4, 4) == 0);
        FUZZ_CHECK(r == 8 + (size_t)st->userid_len + 1);
    }
}

/* Feed data as it arrives at the cut points; the result must be the whole-input one. */
static void
run_split(const uint8_t *data, size_t size, ssize_t want, const struct socks4 *want_st,
          struct fuzz_rng *rng, int style)
{
    size_t cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 1];
    size_t n = fuzz_cuts(rng, size, style, cuts);
    struct socks4 st;
    struct socks4 before;

    memset(&st, DIRTY, sizeof(st));
    for (size_t i = 0; i < n; i++) {
        memcpy(&before, &st, sizeof(st));
        ssize_t r = feed(&st, data, cuts[i]);
        if (r == 0) {
            FUZZ_CHECK(memcmp(&st, &before, sizeof(st)) == 0);
            continue;
        }
        /* Decided: the same answer as for the whole input, and no other. */
        FUZZ_CHECK(r == want);
        if (r > 0)
            FUZZ_CHECK(memcmp(&st, want_st, sizeof(st)) == 0);
        else
            FUZZ_CHECK(memcmp(&st, &before, sizeof(st)) == 0);
        return;
    }
    FUZZ_CHECK(want == 0);
}

static void
check_reply(const uint8_t *data, size_t size)
{
    struct sockaddr_storage ss;
    /* Exactly the reply's size: a write past it is an ASan error. */
    uint8_t *out = malloc(SOCKS4_REPLY_LEN);

    FUZZ_CHECK(out != NULL);
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, data, size < sizeof(ss) ? size : sizeof(ss));
    uint8_t cd = size > 0 ? data[0] : SOCKS4_REP_GRANTED;
    FUZZ_CHECK(socks4_reply(out, cd, (const struct sockaddr *)&ss) == SOCKS4_REPLY_LEN);
    FUZZ_CHECK(out[0] == 0 && out[1] == cd);
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        FUZZ_CHECK(memcmp(out + 2, &s4->sin_port, 2) == 0);
        FUZZ_CHECK(memcmp(out + 4, &s4->sin_addr, 4) == 0);
    } else {
        static const uint8_t zero[6];
        FUZZ_CHECK(memcmp(out + 2, zero, 6) == 0);
    }
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct socks4 want_st;
    struct fuzz_rng rng;

    memset(&want_st, DIRTY, sizeof(want_st));
    ssize_t want = feed(&want_st, data, size);
    FUZZ_CHECK(want == 0 || want == SOCKS4_ERR_REJECT || want == SOCKS4_ERR_CLOSE ||
               want == SOCKS4_ERR_BAD_NAME || (want > 0 && (size_t)want <= size));
    if (want == SOCKS4_ERR_BAD_NAME) {
        /* A whole 4a request, with a known command, whose host no host name can be. */
        FUZZ_CHECK(size >= 10 && data[4] == 0 && data[5] == 0 && data[6] == 0 && data[7] != 0);
        FUZZ_CHECK(data[1] == SOCKS4_CMD_CONNECT || data[1] == SOCKS4_CMD_BIND);
        const uint8_t *uid_end = memchr(data + 8, 0, size - 8);
        FUZZ_CHECK(uid_end != NULL);
        size_t host_off = (size_t)(uid_end - data) + 1;
        const uint8_t *host_end = memchr(data + host_off, 0, size - host_off);
        FUZZ_CHECK(host_end != NULL);
        char norm[256];
        uint8_t a[16];
        FUZZ_CHECK(
            fuzz_name_verdict(data + host_off, (size_t)(host_end - data) - host_off, norm, a) == 0);
    }
    /* Past the longest request the answer is always known. */
    if (size >= SOCKS4_REQUEST_MAX)
        FUZZ_CHECK(want != 0);
    if (want == SOCKS4_ERR_CLOSE)
        FUZZ_CHECK(size > 0 && data[0] != SOCKS4_VERSION);
    if (want > 0)
        check_request(&want_st, data, (size_t)want);

    fuzz_rng_seed(&rng, data, size, 4);
    run_split(data, size, want, &want_st, &rng, 0);
    run_split(data, size, want, &want_st, &rng, 1);
    check_reply(data, size);
    return 0;
}
