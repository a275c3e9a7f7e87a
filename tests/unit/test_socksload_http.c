/*
 * test_socksload_http.c - tools/socksload/http.c: the incremental HTTP/1.1 response parser
 * (every input also fed split at every point and byte by byte, with the same answer), the
 * request socksload sends, and the --url splitter.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>

#define HTTP_FEED_CHECK assert_true
#include "http_feed.h"
#include "socksload.h"

static struct http_resp resp;

/* Feeds in[0..n): cut at split (n: whole), or one byte at a time when bytewise; eof: then the
 * server closes (http_feed closes whenever all was consumed: without eof the last byte is held
 * back by one more piece that never comes). */
static struct http_got
feed(const char *in, size_t n, size_t split, bool bytewise, bool eof)
{
    size_t *cuts = malloc((n + 2) * sizeof(*cuts)), k = 0;

    assert_non_null(cuts);
    if (bytewise)
        for (size_t i = 1; i <= n; i++)
            cuts[k++] = i;
    else if (split > 0 && split < n)
        cuts[k++] = split;
    if (!bytewise || n == 0)
        cuts[k++] = n;
    struct http_got g = http_feed(&resp, (const uint8_t *)in, eof ? n : n + 1, cuts, k);
    free(cuts);
    return g;
}

/* Reads s whole, then split at every point and byte by byte: the answers must agree. */
static struct http_got
check_all(const char *s, size_t n, bool eof)
{
    struct http_got whole = feed(s, n, n, false, eof);

    for (size_t i = 0; i <= n + 1; i++) {
        struct http_got g = i <= n ? feed(s, n, i, false, eof) : feed(s, n, 0, true, eof);
        if (!http_got_same(&g, &whole))
            fail_msg("split %zu of %zu gives another answer", i, n);
    }
    return whole;
}

#define CHECK(s, eof) check_all(s, sizeof(s) - 1, eof)

static void
test_length(void **state)
{
    (void)state;
    struct http_got g =
        CHECK("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello", false);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.body, 5);
    assert_true(g.keep_alive);

    /* Bare LF line ends, upper/lower case names, white space around the value. */
    g = CHECK("HTTP/1.1 404 Not Found\ncontent-LENGTH:\t 3 \nConnection: close\n\nabc", false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.status, 404);
    assert_int_equal(g.body, 3);
    assert_false(g.keep_alive);

    /* A repeated, equal Content-Length is fine; no reason phrase is fine. */
    g = CHECK("HTTP/1.1 200\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.body, 2);

    /* Content-Length 0, 204 and 304: no body at all. */
    g = CHECK("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    g = CHECK("HTTP/1.1 204 No Content\r\n\r\n", false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.body, 0);
    g = CHECK("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false);
    assert_int_equal(g.phase, HTTP_P_DONE);

    /* Bytes after the response: consumed only up to its end. */
    g = CHECK("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.used, sizeof("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") - 1);

    /* A short body: the caller sees HTTP_P_BODY_LEN at the close and names the sizes. */
    g = CHECK("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789", true);
    assert_int_equal(g.rc, -EPROTO);
    assert_int_equal(g.err, HTTP_E_NONE);
    assert_int_equal(g.phase, HTTP_P_BODY_LEN);
    assert_int_equal(g.body, 10);
    assert_int_equal(resp.length, 20);
}

static void
test_chunked(void **state)
{
    (void)state;
    struct http_got g = CHECK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5;name=value\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n"
                              "0\r\nX-Trailer: 1\r\n\r\n",
                              false);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.body, 31);
    assert_true(g.keep_alive);

    /* gzip, chunked: chunked is last, so the length is known. */
    g = CHECK("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n"
              "3\r\nabc\r\n0\r\n\r\n",
              false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.body, 3);
    /* Data after the last chunk. */
    g = CHECK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP", false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.used, sizeof("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "0\r\n\r\n") -
                                 1);
    /* The close in a chunked body is an error. */
    g = CHECK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true);
    assert_int_equal(g.rc, -EPROTO);
    assert_int_equal(g.err, HTTP_E_EOF_CHUNKED);
}

static void
test_until_close(void **state)
{
    (void)state;
    /* No length: the body is what comes until the close, and the connection ends. */
    struct http_got g = CHECK("HTTP/1.0 200 OK\r\n\r\nsome body", true);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.body, 9);
    assert_false(g.keep_alive);
    /* A coding other than chunked last: until the close too. */
    g = CHECK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n12345", true);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.body, 5);
    /* HTTP/1.0 keep-alive. */
    g = CHECK("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", false);
    assert_true(g.keep_alive);
}

static void
test_interim(void **state)
{
    (void)state;
    /* 1xx responses are skipped: the status is the final one's. */
    struct http_got g =
        CHECK("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
              "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nz",
              false);
    assert_int_equal(g.phase, HTTP_P_DONE);
    assert_int_equal(g.status, 201);
    assert_int_equal(g.body, 1);
}

static void
test_errors(void **state)
{
    static const struct {
        const char *in;
        enum http_err err;
        size_t n; /* 0: strlen(in) */
    } bad[] = {
        {"HTTP/2 200 OK\r\n\r\n", HTTP_E_STATUS_LINE, 0},
        {"HTTP/1.1 20 OK\r\n\r\n", HTTP_E_STATUS_LINE, 0},
        {"HTTP/1.1 2000 OK\r\n\r\n", HTTP_E_STATUS_LINE, 0},
        {"HTTP/1.1 099 OK\r\n\r\n", HTTP_E_STATUS_LINE, 0},
        {"http/1.1 200 OK\r\n\r\n", HTTP_E_STATUS_LINE, 0},
        {"\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP_E_STATUS_LINE, 0},
        {"HTTP/1.1 200 O\x01K\r\n\r\n", HTTP_E_STATUS_LINE, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", HTTP_E_HEADER, 0},
        {"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", HTTP_E_HEADER, 0},
        {"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", HTTP_E_HEADER, 0},
        {"HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n", HTTP_E_HEADER, 27},
        {"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", HTTP_E_HEADER, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", HTTP_E_LENGTH, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HTTP_E_LENGTH, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", HTTP_E_LENGTH, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", HTTP_E_LENGTH, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HTTP_E_LENGTH, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", HTTP_E_LENGTH, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_BOTH,
         0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HTTP_E_CHUNK, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", HTTP_E_CHUNK, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", HTTP_E_CHUNK, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", HTTP_E_CHUNK,
         0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", HTTP_E_CHUNK_END, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
         HTTP_E_HEADER, 0},
        {"HTTP/1.1 200 OK\r\nContent-Le", HTTP_E_EOF_HEADERS, 0},
        {"", HTTP_E_EOF_HEADERS, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = bad[i].n ? bad[i].n : strlen(bad[i].in);
        struct http_got g = check_all(bad[i].in, n, true);
        if (g.rc != -EPROTO || g.err != bad[i].err)
            fail_msg("case %zu (%s): rc %d err %s", i, bad[i].in, g.rc, http_err_str(g.err));
        assert_string_not_equal(http_err_str(g.err), "unknown");
    }
}

/* The header block is bounded: exactly HTTP_HEADER_MAX bytes pass, one more does not; a
 * chunk size line likewise at HTTP_CHUNK_LINE_MAX. */
/* "HTTP/1.1 200 OK\r\nX: aaa...\r\n\r\n", total bytes long. */
static size_t
long_header(char *out, size_t total)
{
    const char *st = "HTTP/1.1 200 OK\r\nX: ";
    size_t n = total - strlen(st) - 4;

    strcpy(out, st);
    memset(out + strlen(st), 'a', n);
    strcpy(out + strlen(st) + n, "\r\n\r\n");
    return strlen(out);
}

/* The header block is bounded: exactly HTTP_HEADER_MAX bytes pass, one more does not; a
 * chunk size line likewise at HTTP_CHUNK_LINE_MAX. */
static void
test_limits(void **state)
{
    static char big[HTTP_HEADER_MAX + 200];
    size_t n;

    (void)state;
    n = long_header(big, HTTP_HEADER_MAX);
    http_resp_init(&resp);
    assert_int_equal(http_resp_feed(&resp, (const uint8_t *)big, n), HTTP_HEADER_MAX);
    assert_int_equal(resp.phase, HTTP_P_BODY_EOF);

    n = long_header(big, HTTP_HEADER_MAX + 1);
    http_resp_init(&resp);
    assert_int_equal(http_resp_feed(&resp, (const uint8_t *)big, n), -EPROTO);
    assert_int_equal(resp.err, HTTP_E_TOO_BIG);
    /* Also when it arrives in pieces that each fit. */
    http_resp_init(&resp);
    ssize_t r = 0;
    for (size_t off = 0; off < n && r >= 0; off += 1000)
        r = http_resp_feed(&resp, (const uint8_t *)big + off, n - off < 1000 ? n - off : 1000);
    assert_int_equal(r, -EPROTO);
    assert_int_equal(resp.err, HTTP_E_TOO_BIG);

    /* Once failed, it stays failed. */
    assert_int_equal(http_resp_feed(&resp, (const uint8_t *)"x", 1), -EPROTO);

    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;";
    strcpy(big, ch);
    memset(big + strlen(ch), 'e', HTTP_CHUNK_LINE_MAX);
    big[strlen(ch) + HTTP_CHUNK_LINE_MAX] = '\0';
    http_resp_init(&resp);
    assert_int_equal(http_resp_feed(&resp, (const uint8_t *)big, strlen(big)), -EPROTO);
    assert_int_equal(resp.err, HTTP_E_CHUNK);
}

static void
test_request(void **state)
{
    char out[HTTP_REQ_MAX];

    (void)state;
    size_t n = http_get(out, sizeof(out), "127.0.0.1:8080", "/x?y=1", false);
    assert_string_equal(out, "GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                             "User-Agent: socksload\r\nAccept: */*\r\n\r\n");
    assert_int_equal(n, strlen(out));
    http_get(out, sizeof(out), "[::1]:80", "/", true);
    assert_non_null(strstr(out, "Host: [::1]:80\r\n"));
    assert_non_null(strstr(out, "\r\nConnection: close\r\n\r\n"));
    assert_int_equal(http_get(out, 20, "h", "/", false), 0);

    assert_true(http_path_ok("/a/b?c=d%20e"));
    assert_false(http_path_ok("a"));
    assert_false(http_path_ok("/a b"));
    assert_false(http_path_ok("/a\r\nX: y"));
    assert_false(http_path_ok(""));
}

static void
test_url(void **state)
{
    char a[300], hp[300], path[HTTP_PATH_MAX], err[200];

    (void)state;
    assert_int_equal(http_url_parse("http://127.0.0.1:8080/big?x=1#frag", a, sizeof(a), hp,
                                    sizeof(hp), path, sizeof(path), err, sizeof(err)),
                     0);
    assert_string_equal(a, "127.0.0.1:8080");
    assert_string_equal(hp, "127.0.0.1:8080");
    assert_string_equal(path, "/big?x=1");
    assert_int_equal(http_url_parse("HTTP://localhost", a, sizeof(a), hp, sizeof(hp), path,
                                    sizeof(path), err, sizeof(err)),
                     0);
    assert_string_equal(a, "localhost");
    assert_string_equal(hp, "localhost:80");
    assert_string_equal(path, "/");
    assert_int_equal(http_url_parse("http://[::1]?q", a, sizeof(a), hp, sizeof(hp), path,
                                    sizeof(path), err, sizeof(err)),
                     0);
    assert_string_equal(a, "[::1]");
    assert_string_equal(hp, "[::1]:80");
    assert_string_equal(path, "/?q");
    assert_int_equal(http_url_parse("http://[::1]:81/", a, sizeof(a), hp, sizeof(hp), path,
                                    sizeof(path), err, sizeof(err)),
                     0);
    assert_string_equal(hp, "[::1]:81");

    static const char *const bad[] = {
        "https://127.0.0.1/",    "ftp://x/",     "127.0.0.1:80/", "http://", "http:///x",
        "http://u:p@127.0.0.1/", "http://[::1/", "http://h/a b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(http_url_parse(bad[i], a, sizeof(a), hp, sizeof(hp), path, sizeof(path),
                                        err, sizeof(err)),
                         -EINVAL);
        assert_true(err[0] != '\0');
    }
    http_url_parse("https://x/", a, sizeof(a), hp, sizeof(hp), path, sizeof(path), err,
                   sizeof(err));
    assert_non_null(strstr(err, "not supported"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length),      cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_until_close), cmocka_unit_test(test_interim),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_limits),
        cmocka_unit_test(test_request),     cmocka_unit_test(test_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
