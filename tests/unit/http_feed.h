/*
 * http_feed.h - reading one HTTP response in pieces with socksload's parser (tools/socksload/
 * http.c), shared by tests/unit/test_socksload_http.c and tests/fuzz/fuzz_http.c (header-only,
 * static). The includer defines HTTP_FEED_CHECK(cond): cmocka's assert_true or FUZZ_CHECK.
 */
#ifndef HTTP_FEED_H
#define HTTP_FEED_H

#include <stdlib.h>
#include <string.h>

#include "socksload.h"

/* What reading a response gave: an error (rc < 0, err), or how far it got. */
struct http_got {
    int rc;
    enum http_err err;
    enum http_phase phase;
    int status;
    uint64_t body;
    bool keep_alive;
    size_t used; /* bytes consumed */
};

/* Feeds data[0..size) to r arriving at cuts[0] < cuts[1] < ... (the last is size), each piece
 * in a heap block of exactly its bytes; then, when all was consumed, the server's close. The
 * parser's invariants are checked on the way. */
static inline struct http_got
http_feed(struct http_resp *r, const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts)
{
    struct http_got g = {0};
    size_t off = 0;

    http_resp_init(r);
    for (size_t c = 0; c < ncuts && off < size && r->phase != HTTP_P_DONE; c++) {
        if (cuts[c] <= off)
            continue;
        size_t len = cuts[c] - off;
        uint8_t *b = malloc(len);
        HTTP_FEED_CHECK(b != NULL);
        memcpy(b, data + off, len);
        ssize_t n = http_resp_feed(r, b, len);
        free(b);
        if (n < 0) {
            g.rc = (int)n;
            HTTP_FEED_CHECK(r->err != HTTP_E_NONE);
            break;
        }
        HTTP_FEED_CHECK((size_t)n <= len);
        HTTP_FEED_CHECK(r->head <= HTTP_HEADER_MAX);
        HTTP_FEED_CHECK(r->status == 0 || (r->status >= 100 && r->status <= 999));
        off += (size_t)n;
        if ((size_t)n < len) {
            HTTP_FEED_CHECK(r->phase == HTTP_P_DONE);
            break;
        }
    }
    if (g.rc == 0 && off == size) {
        g.rc = http_resp_eof(r);
        HTTP_FEED_CHECK(g.rc == 0 ? r->phase == HTTP_P_DONE
                                  : r->err != HTTP_E_NONE || r->phase == HTTP_P_BODY_LEN);
    }
    if (r->phase == HTTP_P_BODY_LEN)
        HTTP_FEED_CHECK(r->has_length && r->body < r->length);
    g.err = r->err;
    g.phase = r->phase;
    g.status = r->status;
    g.body = r->body;
    g.keep_alive = r->keep_alive;
    g.used = off;
    return g;
}

/* The same answer: bytes consumed too, unless it failed. */
static inline bool
http_got_same(const struct http_got *a, const struct http_got *b)
{
    return a->rc == b->rc && a->err == b->err && a->phase == b->phase && a->status == b->status &&
           a->body == b->body && a->keep_alive == b->keep_alive &&
           (a->rc < 0 || a->used == b->used);
}

#endif
