/*
 * bm_auth.c - the RFC 1929 sub-negotiation parser (src/auth.c), one whole
 * message per iteration. The credential check behind it is bm_users.c.
 */
#include <string.h>

#include "auth.h"
#include "bench.h"

static void
feed(struct bench *b, size_t ulen, size_t plen)
{
    uint8_t msg[AUTH_REQUEST_MAX];
    size_t len = 0;
    msg[len++] = AUTH_VERSION;
    msg[len++] = (uint8_t)ulen;
    memset(msg + len, 'u', ulen);
    len += ulen;
    msg[len++] = (uint8_t)plen;
    memset(msg + len, 'p', plen);
    len += plen;

    struct auth_cred cred;
    if (auth_feed(&cred, msg, len) != (ssize_t)len) {
        bench_error(b, "sub-negotiation not accepted");
        return;
    }
    bench_set_bytes(b, (int64_t)len);
    while (bench_next(b)) {
        ssize_t n = auth_feed(&cred, msg, len);
        bench_do_not_optimize(&n);
        bench_do_not_optimize(&cred);
    }
}

/* An 8-byte user name and a 16-byte password. */
void
bm_auth_feed(struct bench *b)
{
    feed(b, 8, 16);
}

/* Both fields at RFC 1929's limit of 255 bytes. */
void
bm_auth_feed_max(struct bench *b)
{
    feed(b, 255, 255);
}
