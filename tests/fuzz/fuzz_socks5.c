/*
 * fuzz_socks5.c - libFuzzer harness for the SOCKS5 handshake parser and reply encoders
 * (src/socks5.c), with the RFC 1929 sub-negotiation (src/auth.c) in between when a password
 * is required.
 *
 * The input is the byte stream a client sends. It drives a handshake the way a session does
 * (greeting, then auth_feed() and PHASE_REQUEST when the greeting chose 0x02, then the
 * request), once with no-auth and once with a password required; each of them whole, then
 * arriving in pieces (every byte for short inputs, random cuts for all), the parser always
 * offered what was received and not yet consumed, in a heap block of exactly that size.
 * Every step is checked against the bytes it consumed, and the pieces must produce the same
 * steps, the same end and the same final state as the whole input.
 */
#include <stdbool.h>

#include "auth.h"
#include "fuzz.h"
#include "socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A handshake in progress, and what it produced so far. */
struct sess {
    struct socks5 st;
    struct auth_cred cred;
    size_t off;       /* bytes consumed */
    ssize_t steps[3]; /* consumed by each completed message, in order */
    size_t nsteps;
    bool ended;
    ssize_t end; /* 0: still needs bytes; 1: request done; < 0: the error answered */
};

static ssize_t
feed5(struct socks5 *st, const uint8_t *p, size_t n)
{
    uint8_t *b = fuzz_dup(p, n);
    ssize_t r = socks5_feed(st, b, n);

    free(b);
    return r;
}

static ssize_t
feed_auth(struct auth_cred *c, const uint8_t *p, size_t n)
{
    uint8_t *b = fuzz_dup(p, n);
    ssize_t r = auth_feed(c, b, n);

    free(b);
    return r;
}

static bool
offered(const uint8_t *p, uint8_t method)
{
    for (size_t i = 0; i < p[1]; i++)
        if (p[2 + i] == method)
            return true;
    return false;
}

static void
check_greeting(const struct socks5 *st, const struct socks5 *before, const uint8_t *p, size_t n,
               ssize_t r)
{
    if (r == 0) {
        FUZZ_CHECK(n < 2 || n < 2 + (size_t)p[1]);
        FUZZ_CHECK(n < SOCKS5_GREETING_MAX);
        FUZZ_CHECK(memcmp(st, before, sizeof(*st)) == 0);
        return;
    }
    if (r == SOCKS5_ERR_CLOSE) {
        FUZZ_CHECK(n >= 1 && p[0] != SOCKS5_VERSION);
        return;
    }
    FUZZ_CHECK(n >= 2 && p[0] == SOCKS5_VERSION && n >= 2 + (size_t)p[1]);
    uint8_t want = st->auth_required ? SOCKS5_METHOD_PASSWORD : SOCKS5_METHOD_NONE;
    if (r == SOCKS5_ERR_NO_METHOD) {
        FUZZ_CHECK(!offered(p, want));
        FUZZ_CHECK(st->phase == SOCKS5_PHASE_GREETING);
        return;
    }
    FUZZ_CHECK(r > 0);
    FUZZ_CHECK((size_t)r == 2 + (size_t)p[1]);
    FUZZ_CHECK(offered(p, want));
    FUZZ_CHECK(st->method == want);
    FUZZ_CHECK(st->phase == (st->auth_required ? SOCKS5_PHASE_AUTH : SOCKS5_PHASE_REQUEST));
    uint32_t bits = 0;
    for (size_t i = 0; i < p[1]; i++)
        if (p[2 + i] < 32)
            bits |= 1u << p[2 + i];
    FUZZ_CHECK(st->offered == bits);
}

/* The request's length as RFC 1928 section 4 defines it, or 0 if not yet known. */
static size_t
request_len(const uint8_t *p, size_t n)
{
    if (n < 4)
        return 0;
    switch (p[3]) {
    case SOCKS5_ATYP_IPV4:
        return 4 + 4 + 2;
    case SOCKS5_ATYP_IPV6:
        return 4 + 16 + 2;
    case SOCKS5_ATYP_DOMAIN:
        return n < 5 ? 0 : 5 + (size_t)p[4] + 2;
    }
    return 0;
}

static void
check_request(const struct socks5 *st, const struct socks5 *before, const uint8_t *p, size_t n,
              ssize_t r)
{
    size_t total = request_len(p, n);

    if (r == 0) {
        FUZZ_CHECK(n < SOCKS5_REQUEST_MAX);
        FUZZ_CHECK(n == 0 || p[0] == SOCKS5_VERSION);
        FUZZ_CHECK(total == 0 || n < total);
        FUZZ_CHECK(memcmp(st, before, sizeof(*st)) == 0);
        return;
    }
    if (r < 0) {
        FUZZ_CHECK(r == -SOCKS5_REP_GENERAL || r == -SOCKS5_REP_CMD_UNSUPP ||
                   r == -SOCKS5_REP_ATYP_UNSUPP || r == SOCKS5_ERR_BAD_NAME);
        if (r == SOCKS5_ERR_BAD_NAME) {
            /* Judged on the whole request, and only where no host could have the name. */
            char norm[256];
            uint8_t a[16];
            FUZZ_CHECK(p[3] == SOCKS5_ATYP_DOMAIN && total > 0 && n >= total);
            FUZZ_CHECK(p[1] == 1 || p[1] == 2 || p[1] == 3);
            FUZZ_CHECK(fuzz_name_verdict(p + 5, p[4], norm, a) == 0);
            /* What the log keeps of it: the name as sent, to its first NUL. */
            char raw[256];
            uint16_t port;
            uint8_t cmd;
            FUZZ_CHECK(socks_bad_name(p, n, raw, &port, &cmd) == 0);
            FUZZ_CHECK(cmd == p[1] && port == (uint16_t)(p[total - 2] << 8 | p[total - 1]));
            FUZZ_CHECK(strlen(raw) <= p[4] && memcmp(raw, p + 5, strlen(raw)) == 0);
            FUZZ_CHECK(strlen(raw) == p[4] || p[5 + strlen(raw)] == 0);
        }
        FUZZ_CHECK(st->phase == SOCKS5_PHASE_REQUEST);
        if (r == -SOCKS5_REP_ATYP_UNSUPP)
            FUZZ_CHECK(n >= 4 && total == 0 && p[3] != SOCKS5_ATYP_DOMAIN);
        if (r == -SOCKS5_REP_CMD_UNSUPP)
            FUZZ_CHECK(total > 0 && n >= total && p[1] != 1 && p[1] != 2 && p[1] != 3);
        return;
    }
    FUZZ_CHECK((size_t)r == total && total <= n && total <= SOCKS5_REQUEST_MAX);
    FUZZ_CHECK(p[0] == SOCKS5_VERSION);
    FUZZ_CHECK(st->phase == SOCKS5_PHASE_DONE);
    FUZZ_CHECK(st->cmd == p[1]);
    FUZZ_CHECK(st->cmd == SOCKS5_CMD_CONNECT || st->cmd == SOCKS5_CMD_BIND ||
               st->cmd == SOCKS5_CMD_UDP);
    FUZZ_CHECK(st->method == before->method);
    const struct socks_dest *d = &st->dest;
    /* DST.PORT is the port, whatever the name says (issue #9). */
    FUZZ_CHECK(d->port == (uint16_t)(p[total - 2] << 8 | p[total - 1]));
    if (p[3] == SOCKS5_ATYP_DOMAIN) {
        FUZZ_CHECK(d->u.name[d->name_len] == '\0' || d->atyp != SOCKS5_ATYP_DOMAIN);
        fuzz_check_name(d->atyp, d->u.name, d->name_len, &d->u.v4, &d->u.v6, p + 5, p[4]);
    } else if (d->atyp == SOCKS5_ATYP_IPV4) {
        FUZZ_CHECK(p[3] == SOCKS5_ATYP_IPV4);
        FUZZ_CHECK(d->name_len == 0 && memcmp(&d->u.v4, p + 4, 4) == 0);
    } else {
        FUZZ_CHECK(d->atyp == SOCKS5_ATYP_IPV6 && p[3] == SOCKS5_ATYP_IPV6);
        FUZZ_CHECK(d->name_len == 0 && memcmp(&d->u.v6, p + 4, 16) == 0);
    }
}

static void
check_auth(const struct auth_cred *c, const uint8_t *p, size_t n, ssize_t r)
{
    if (r == 0) {
        FUZZ_CHECK(n < AUTH_REQUEST_MAX);
        return;
    }
    if (r < 0) {
        FUZZ_CHECK(r == AUTH_ERR_FAIL || r == AUTH_ERR_CLOSE);
        FUZZ_CHECK((r == AUTH_ERR_CLOSE) == (p[0] != AUTH_VERSION));
        return;
    }
    FUZZ_CHECK((size_t)r == 3 + (size_t)c->ulen + c->plen && (size_t)r <= n);
    FUZZ_CHECK(c->ulen >= 1 && c->plen >= 1);
    FUZZ_CHECK(strlen(c->user) == c->ulen && strlen(c->pass) == c->plen);
    FUZZ_CHECK(memcmp(c->user, p + 2, c->ulen) == 0);
    FUZZ_CHECK(memcmp(c->pass, p + 3 + c->ulen, c->plen) == 0);
}

/* One message of the current phase from data[s->off..avail). */
static ssize_t
step(struct sess *s, const uint8_t *data, size_t avail)
{
    const uint8_t *p = data + s->off;
    size_t n = avail - s->off;
    struct socks5 before;
    ssize_t r;

    memcpy(&before, &s->st, sizeof(before));
    switch (s->st.phase) {
    case SOCKS5_PHASE_GREETING:
        r = feed5(&s->st, p, n);
        check_greeting(&s->st, &before, p, n, r);
        break;
    case SOCKS5_PHASE_AUTH:
        /* The sub-negotiation is not socks5_feed()'s to read. */
        FUZZ_CHECK(feed5(&s->st, p, n) == SOCKS5_ERR_CLOSE);
        FUZZ_CHECK(memcmp(&s->st, &before, sizeof(before)) == 0);
        r = feed_auth(&s->cred, p, n);
        check_auth(&s->cred, p, n, r);
        if (r > 0)
            s->st.phase = SOCKS5_PHASE_REQUEST;
        break;
    case SOCKS5_PHASE_REQUEST:
        r = feed5(&s->st, p, n);
        check_request(&s->st, &before, p, n, r);
        break;
    default:
        FUZZ_CHECK(0);
        return 0;
    }
    FUZZ_CHECK(r <= 0 || (size_t)r <= n);
    return r;
}

/* The bytes arrive at the cut points; after each arrival, parse as far as they go. */
static void
run(struct sess *s, bool pw, const uint8_t *data, const size_t *cuts, size_t ncuts)
{
    memset(s, 0, sizeof(*s));
    socks5_init(&s->st);
    socks5_set_password_required(&s->st, pw);
    for (size_t i = 0; i < ncuts && !s->ended; i++) {
        for (;;) {
            ssize_t r = step(s, data, cuts[i]);
            if (r == 0)
                break;
            if (r < 0) {
                s->ended = true;
                s->end = r;
                break;
            }
            FUZZ_CHECK(s->nsteps < 3);
            s->steps[s->nsteps++] = r;
            s->off += (size_t)r;
            if (s->st.phase == SOCKS5_PHASE_DONE) {
                s->ended = true;
                s->end = 1;
                /* Nothing is parsed after the request, not even zero bytes. */
                FUZZ_CHECK(feed5(&s->st, data + s->off, cuts[i] - s->off) == SOCKS5_ERR_CLOSE);
                break;
            }
        }
    }
    FUZZ_CHECK(s->off <= (ncuts ? cuts[ncuts - 1] : 0));
}

static void
check_same(const struct sess *a, const struct sess *b)
{
    FUZZ_CHECK(a->ended == b->ended && a->end == b->end);
    FUZZ_CHECK(a->nsteps == b->nsteps && a->off == b->off);
    for (size_t i = 0; i < a->nsteps; i++)
        FUZZ_CHECK(a->steps[i] == b->steps[i]);
    FUZZ_CHECK(a->st.phase == b->st.phase);
    if (a->end == 1) {
        FUZZ_CHECK(memcmp(&a->st, &b->st, sizeof(a->st)) == 0);
        FUZZ_CHECK(memcmp(&a->cred, &b->cred, sizeof(a->cred)) == 0);
    }
}

static void
check_replies(const uint8_t *data, size_t size)
{
    struct sockaddr_storage ss;
    uint8_t *out = malloc(SOCKS5_REPLY_MAX);
    uint8_t rep = size > 0 ? data[0] : 0;

    FUZZ_CHECK(out != NULL);
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, data, size < sizeof(ss) ? size : sizeof(ss));
    size_t n = socks5_reply(out, rep, (const struct sockaddr *)&ss);
    FUZZ_CHECK(out[0] == SOCKS5_VERSION && out[1] == rep && out[2] == 0);
    /* An IPv4-mapped IPv6 address is named as IPv4 (socks5.h). */
    if (ss.ss_family == AF_INET6 &&
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&ss)->sin6_addr))
        FUZZ_CHECK(n == 22 && out[3] == SOCKS5_ATYP_IPV6);
    else
        FUZZ_CHECK(n == 10 && out[3] == SOCKS5_ATYP_IPV4);
    free(out);

    out = malloc(2);
    FUZZ_CHECK(out != NULL);
    FUZZ_CHECK(socks5_method_reply(out, rep) == 2 && out[0] == SOCKS5_VERSION && out[1] == rep);
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 1];
    size_t whole[1] = {size};
    struct fuzz_rng rng;
    struct sess want;
    struct sess got;

    fuzz_rng_seed(&rng, data, size, 5);
    for (int pw = 0; pw <= 1; pw++) {
        run(&want, pw, data, whole, size > 0 ? 1 : 0);
        for (int style = 0; style <= 1; style++) {
            size_t n = fuzz_cuts(&rng, size, style, cuts);
            run(&got, pw, data, cuts, n);
            check_same(&got, &want);
        }
    }
    check_replies(data, size);
    return 0;
}
