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
#define HTTP_FEED_CHECK FUZZ_CHECK
#include "../unit/http_feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http_resp resp;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t whole = size, cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 2];
    struct fuzz_rng rng;

    struct http_got w = http_feed(&resp, data, size, &whole, 1);
    fuzz_rng_seed(&rng, data, size, 0x4854);
    for (int style = 0; style < 2; style++) {
        size_t n = fuzz_cuts(&rng, size, style, cuts);
        if (n == 0)
            continue;
        struct http_got g = http_feed(&resp, data, size, cuts, n);
        FUZZ_CHECK(http_got_same(&w, &g));
    }
    return 0;
}
