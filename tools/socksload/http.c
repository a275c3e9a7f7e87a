/*
 * http.c - HTTP/1.1 through the tunnel: the GET socksload sends, and an incremental parser of
 * the response (RFC 9112): status line, headers, Content-Length, chunked transfer coding,
 * a body read until the close, 1xx interim responses skipped.
 *
 * Pure: no I/O, no allocation, no state but the struct http_resp the caller owns (one per
 * tunnel, on its worker thread). Must never read past the bytes given, never accept a header
 * block past HTTP_HEADER_MAX, and give the same answer however the input is split.
 */
#include "socksload.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HTTP_BODY_MAX (1ull << 62) /* a Content-Length or chunk size above this is refused */

void
http_resp_init(struct http_resp *r)
{
    r->phase = HTTP_P_STATUS;
    r->err = HTTP_E_NONE;
    r->status = 0;
    r->keep_alive = true;
    r->has_length = r->chunked = r->has_te = false;
    r->length = r->body = r->chunk_left = 0;
    r->head = r->line_len = 0;
}

const char *
http_err_str(enum http_err e)
{
    static const char *const names[HTTP_E_N] = {
        [HTTP_E_NONE] = "no error",
        [HTTP_E_STATUS_LINE] = "bad status line",
        [HTTP_E_HEADER] = "bad header line",
        [HTTP_E_TOO_BIG] = "header block larger than 16384 bytes",
        [HTTP_E_LENGTH] = "bad Content-Length",
        [HTTP_E_BOTH] = "both Content-Length and Transfer-Encoding",
        [HTTP_E_CHUNK] = "bad chunk size line",
        [HTTP_E_CHUNK_END] = "chunk data not followed by CRLF",
        [HTTP_E_EXTRA] = "data after the response",
        [HTTP_E_EOF_HEADERS] = "closed before the end of the headers",
        [HTTP_E_EOF_CHUNKED] = "closed before the last chunk",
    };
    return (unsigned)e < HTTP_E_N ? names[e] : "unknown";
}

static ssize_t
fail(struct http_resp *r, enum http_err e)
{
    r->err = e;
    return -EPROTO;
}

/* SP and HTAB: optional white space around a field value (RFC 9110 section 5.6.3). */
static bool
ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 section 5.6.2 tchar. */
static bool
tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* True when the comma-separated list v[0..n) has the token tok (case-insensitive). */
static bool
list_has(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;

    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && ows(v[a]))
            a++;
        while (b > a && ows(v[b - 1]))
            b--;
        if (b - a == tl && strncasecmp(v + a, tok, tl) == 0)
            return true;
        i = j + 1;
    }
    return false;
}

/* "HTTP/1.x SSS[ reason]" */
static ssize_t
on_status(struct http_resp *r, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ')
        return fail(r, HTTP_E_STATUS_LINE);
    for (int i = 9; i < 12; i++)
        if (l[i] < '0' || l[i] > '9')
            return fail(r, HTTP_E_STATUS_LINE);
    if (n > 12 && l[12] != ' ')
        return fail(r, HTTP_E_STATUS_LINE);
    r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (r->status < 100)
        return fail(r, HTTP_E_STATUS_LINE);
    r->keep_alive = l[7] != '0'; /* HTTP/1.0 closes unless it says keep-alive */
    r->phase = HTTP_P_HEADERS;
    return 0;
}

static ssize_t
on_length(struct http_resp *r, const char *v, size_t n)
{
    uint64_t len = 0;

    if (n == 0)
        return fail(r, HTTP_E_LENGTH);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return fail(r, HTTP_E_LENGTH);
        if (len > HTTP_BODY_MAX / 10)
            return fail(r, HTTP_E_LENGTH);
        len = len * 10 + (uint64_t)(v[i] - '0');
    }
    if (r->has_length && r->length != len)
        return fail(r, HTTP_E_LENGTH);
    r->has_length = true;
    r->length = len;
    return 0;
}

/* The empty line after the headers: where the body ends (RFC 9112 section 6.3). */
static ssize_t
on_headers_end(struct http_resp *r)
{
    if (r->status < 200 && r->status != 101) {
        /* An interim response: the final one follows. */
        http_resp_init(r);
        return 0;
    }
    if (r->status == 101 || r->status == 204 || r->status == 304) {
        r->phase = HTTP_P_DONE;
        return 0;
    }
    if (r->has_length && r->has_te)
        return fail(r, HTTP_E_BOTH); /* section 6.1: a sign of request smuggling */
    if (r->chunked) {
        r->phase = HTTP_P_CHUNK_SIZE;
    } else if (r->has_te || !r->has_length) {
        r->phase = HTTP_P_BODY_EOF;
        r->keep_alive = false;
    } else {
        r->phase = r->length ? HTTP_P_BODY_LEN : HTTP_P_DONE;
    }
    return 0;
}

static ssize_t
on_header(struct http_resp *r, const char *l, size_t n)
{
    if (n == 0)
        return on_headers_end(r);
    const char *colon = memchr(l, ':', n);
    size_t name = colon ? (size_t)(colon - l) : 0;
    if (name == 0)
        return fail(r, HTTP_E_HEADER); /* also obs-fold: a line starting with white space */
    for (size_t i = 0; i < name; i++)
        if (!tchar((unsigned char)l[i]))
            return fail(r, HTTP_E_HEADER);
    const char *v = colon + 1;
    size_t vn = n - name - 1;
    while (vn && ows(*v))
        v++, vn--;
    while (vn && ows(v[vn - 1]))
        vn--;
    if (name == 14 && strncasecmp(l, "content-length", 14) == 0)
        return on_length(r, v, vn);
    if (name == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
        /* The last coding must be chunked for the length to be known (section 6.3). */
        size_t last = vn;
        while (last > 0 && v[last - 1] != ',')
            last--;
        r->chunked = list_has(v + last, vn - last, "chunked");
        r->has_te = true;
        return 0;
    }
    if (name == 10 && strncasecmp(l, "connection", 10) == 0) {
        if (list_has(v, vn, "close"))
            r->keep_alive = false;
        else if (list_has(v, vn, "keep-alive"))
            r->keep_alive = true;
    }
    return 0;
}

/* chunk-size [ chunk-ext ]: hex digits, then nothing, white space or ';' extensions. */
static ssize_t
on_chunk_size(struct http_resp *r, const char *l, size_t n)
{
    uint64_t size = 0;
    size_t i = 0;

    for (; i < n; i++) {
        char c = l[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            break;
        if (size > HTTP_BODY_MAX / 16)
            return fail(r, HTTP_E_CHUNK);
        size = size * 16 + (uint64_t)d;
    }
    if (i == 0)
        return fail(r, HTTP_E_CHUNK);
    while (i < n && ows(l[i]))
        i++;
    if (i < n && l[i] != ';')
        return fail(r, HTTP_E_CHUNK);
    if (size == 0) {
        r->phase = HTTP_P_TRAILERS;
        r->head = 0;
    } else {
        r->chunk_left = size;
        r->phase = HTTP_P_CHUNK_DATA;
    }
    return 0;
}

static ssize_t
on_line(struct http_resp *r, const char *l, size_t n)
{
    /* Control bytes other than HTAB have no place in these lines (a NUL would also hide
     * the rest from the string functions). */
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)l[i] < 0x20 && l[i] != '\t') || l[i] == 0x7f)
            return fail(r, r->phase == HTTP_P_STATUS ? HTTP_E_STATUS_LINE
                           : r->phase == HTTP_P_HEADERS || r->phase == HTTP_P_TRAILERS
                               ? HTTP_E_HEADER
                               : HTTP_E_CHUNK);
    switch (r->phase) {
    case HTTP_P_STATUS:
        return on_status(r, l, n);
    case HTTP_P_HEADERS:
        return on_header(r, l, n);
    case HTTP_P_CHUNK_SIZE:
        return on_chunk_size(r, l, n);
    case HTTP_P_CHUNK_CRLF:
        if (n)
            return fail(r, HTTP_E_CHUNK_END);
        r->phase = HTTP_P_CHUNK_SIZE;
        return 0;
    default: /* trailers: read and dropped; an empty line ends the message */
        if (n == 0) {
            r->phase = HTTP_P_DONE;
            return 0;
        }
        if (ows(l[0]) || !memchr(l, ':', n))
            return fail(r, HTTP_E_HEADER);
        return 0;
    }
}

/* A header block (status line and headers, or trailers) is bounded as a whole. */
static bool
in_head(const struct http_resp *r)
{
    return r->phase == HTTP_P_STATUS || r->phase == HTTP_P_HEADERS || r->phase == HTTP_P_TRAILERS;
}

ssize_t
http_resp_feed(struct http_resp *r, const uint8_t *p, size_t n)
{
    size_t i = 0;

    if (r->err != HTTP_E_NONE)
        return -EPROTO;
    while (i < n && r->phase != HTTP_P_DONE) {
        uint64_t left = n - i, take;
        switch (r->phase) {
        case HTTP_P_BODY_LEN:
            take = r->length - r->body < left ? r->length - r->body : left;
            r->body += take;
            i += (size_t)take;
            if (r->body == r->length)
                r->phase = HTTP_P_DONE;
            continue;
        case HTTP_P_BODY_EOF:
            r->body += left;
            i = n;
            continue;
        case HTTP_P_CHUNK_DATA:
            take = r->chunk_left < left ? r->chunk_left : left;
            r->chunk_left -= take;
            r->body += take;
            i += (size_t)take;
            if (r->chunk_left == 0)
                r->phase = HTTP_P_CHUNK_CRLF;
            continue;
        default:
            break;
        }
        /* A line: up to and with its LF. */
        const uint8_t *nl = memchr(p + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
        size_t cap = in_head(r) ? HTTP_HEADER_MAX - r->head : HTTP_CHUNK_LINE_MAX;
        if (r->line_len + len > cap)
            return fail(r, in_head(r) ? HTTP_E_TOO_BIG : HTTP_E_CHUNK);
        memcpy(r->line + r->line_len, p + i, len);
        r->line_len += len;
        i += len;
        if (!nl)
            break;
        if (in_head(r))
            r->head += r->line_len;
        size_t ll = r->line_len - 1; /* without the LF, and a CR before it */
        if (ll > 0 && r->line[ll - 1] == '\r')
            ll--;
        r->line[ll] = '\0';
        r->line_len = 0;
        if (on_line(r, r->line, ll) < 0)
            return -EPROTO;
    }
    return (ssize_t)i;
}

int
http_resp_eof(struct http_resp *r)
{
    switch (r->phase) {
    case HTTP_P_DONE:
        return 0;
    case HTTP_P_BODY_EOF:
        r->phase = HTTP_P_DONE;
        return 0;
    case HTTP_P_BODY_LEN:
        return -EPROTO;
    case HTTP_P_STATUS:
    case HTTP_P_HEADERS:
        r->err = HTTP_E_EOF_HEADERS;
        return -EPROTO;
    default:
        r->err = HTTP_E_EOF_CHUNKED;
        return -EPROTO;
    }
}

size_t
http_get(char *out, size_t cap, const char *host, const char *path, bool close)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: socksload\r\nAccept: */*\r\n"
                     "%s\r\n",
                     path, host, close ? "Connection: close\r\n" : "");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

bool
http_path_ok(const char *path)
{
    if (path[0] != '/' || strlen(path) >= HTTP_PATH_MAX)
        return false;
    for (const unsigned char *c = (const unsigned char *)path; *c; c++)
        if (*c <= 0x20 || *c >= 0x7f)
            return false;
    return true;
}

static int
url_fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -EINVAL;
}

int
http_url_parse(const char *url, char *authority, size_t alen, char *hostport, size_t hlen,
               char *path, size_t plen, char *err, size_t errlen)
{
    if (strncasecmp(url, "https://", 8) == 0)
        return url_fail(err, errlen,
                        "https is not supported: socksload speaks plain HTTP/1.1 only (TLS would "
                        "need a TLS library on the data path)");
    if (strncasecmp(url, "http://", 7) != 0)
        return url_fail(err, errlen, "the URL must start with http://");
    const char *a = url + 7;
    size_t an = strcspn(a, "/?#");
    if (an == 0)
        return url_fail(err, errlen, "no host in the URL");
    if (memchr(a, '@', an))
        return url_fail(err, errlen, "user info in the URL is not supported");
    if (an >= alen)
        return url_fail(err, errlen, "host too long");
    memcpy(authority, a, an);
    authority[an] = '\0';
    /* A port after the host (after the brackets of an IPv6 address)? */
    const char *close = authority[0] == '[' ? strchr(authority, ']') : authority;
    if (!close)
        return url_fail(err, errlen, "unbalanced [ in the URL's host");
    bool has_port = strchr(close, ':') != NULL;
    int n = snprintf(hostport, hlen, has_port ? "%s" : "%s:80", authority);
    if (n < 0 || (size_t)n >= hlen)
        return url_fail(err, errlen, "host too long");
    const char *rest = a + an;
    size_t pn = strcspn(rest, "#");
    n = snprintf(path, plen, "%s%.*s", rest[0] == '/' ? "" : "/", (int)pn, rest);
    if (n < 0 || (size_t)n >= plen || !http_path_ok(path))
        return url_fail(err, errlen,
                        "the URL's path must be visible ASCII (percent-encode the rest), at "
                        "most 2047 bytes");
    return 0;
}
