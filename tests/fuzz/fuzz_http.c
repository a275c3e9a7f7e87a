/*
 * fuzz_http.c - libFuzzer harness for socksload's HTTP/1.1 response parser
 * (tools/socksload/http.c).
 *
 * The input is what a server sends back through the tunnel, then its close. It is read
 * whole, then arriving in pieces (every byte for short inputs, random cuts for all), each
 * piece in a heap block of exactly its bytes. The answers must agree however the input is
 * split: the same error, phase, status, body size and keep-alive, and the same bytes
 * consumed; a header block never passes HTTP_HEADER_MAX; a completed response consumes no
 * byte after its end.
 */
#include "fuzz.h"
#include "socksload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct got {
    int rc;
    enum http_err err;
    enum http_phase phase;
    int status;
    uint64_t body;
    bool keep_alive;
    size_t used;
};

static struct http_resp resp;

static struct got
run(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts)
{
    struct got g = {0};
    size_t off = 0;

    http_resp_init(&resp);
    for (size_t c = 0; c < ncuts && off < size && resp.phase != HTTP_P_DONE; c++) {
        if (cuts[c] <= off)
            continue;
        size_t len = cuts[c] - off;
        uint8_t *b = fuzz_dup(data + off, len);
        ssize_t r = http_resp_feed(&resp, b, len);
        free(b);
        if (r < 0) {
            g.rc = (int)r;
            FUZZ_CHECK(resp.err != HTTP_E_NONE);
            break;
        }
        FUZZ_CHECK((size_t)r <= len);
        FUZZ_CHECK(resp.head <= HTTP_HEADER_MAX);
        FUZZ_CHECK(resp.status == 0 || (resp.status >= 100 && resp.status <= 999));
        off += (size_t)r;
        if ((size_t)r < len) {
            FUZZ_CHECK(resp.phase == HTTP_P_DONE);
            break;
        }
    }
    if (g.rc == 0 && off == size) {
        g.rc = http_resp_eof(&resp);
        FUZZ_CHECK(g.rc == 0 ? resp.phase == HTTP_P_DONE
                             : resp.err != HTTP_E_NONE || resp.phase == HTTP_P_BODY_LEN);
    }
    if (resp.phase == HTTP_P_BODY_LEN)
        FUZZ_CHECK(resp.has_length && resp.body < resp.length);
    g.err = resp.err;
    g.phase = resp.phase;
    g.status = resp.status;
    g.body = resp.body;
    g.keep_alive = resp.keep_alive;
    g.used = off;
    return g;
}

static bool
same(const struct got *a, const struct got *b)
{
    return a->rc == b->rc && a->err == b->err && a->phase == b->phase && a->status == b->status &&
           a->body == b->body && a->keep_alive == b->keep_alive &&
           (a->rc < 0 || a->used == b->used);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t whole = size, cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 2];
    struct fuzz_rng rng;

    struct got w = run(data, size, &whole, 1);
    fuzz_rng_seed(&rng, data, size, 0x4854);
    for (int style = 0; style < 2; style++) {
        size_t n = fuzz_cuts(&rng, size, style, cuts);
        if (n == 0)
            continue;
        struct got g = run(data, size, cuts, n);
        FUZZ_CHECK(same(&w, &g));
    }
    return 0;
}
