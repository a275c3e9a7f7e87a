/*
 * bm_socks4.c - the SOCKS4/4a request parser and reply encoder
 * (src/socks4.c), one whole message per iteration.
 */
#include <arpa/inet.h>
#include <string.h>

#include "bench.h"
#include "socks4.h"

static void
feed(struct bench *b, const uint8_t *msg, size_t len)
{
    struct socks4 st;
    if (socks4_feed(&st, msg, len) != (ssize_t)len) {
        bench_error(b, "request not accepted");
        return;
    }
    bench_set_bytes(b, (int64_t)len);
    while (bench_next(b)) {
        ssize_t n = socks4_feed(&st, msg, len);
        bench_do_not_optimize(&n);
        bench_do_not_optimize(&st);
    }
}

/* CONNECT 93.184.216.34:443, user-id "bench" */
void
bm_socks4_feed_4(struct bench *b)
{
    static const uint8_t msg[] = {0x04, 0x01, 0x01, 0xbb, 93,  184, 216,
                                  34,   'b',  'e',  'n',  'c', 'h', 0};
    feed(b, msg, sizeof(msg));
}

/* CONNECT www.example.com:443 by name (DSTIP 0.0.0.1), user-id "bench" */
void
bm_socks4_feed_4a(struct bench *b)
{
    static const uint8_t msg[] = {0x04, 0x01, 0x01, 0xbb, 0,   0,   0,   1,   'b', 'e',
                                  'n',  'c',  'h',  0,    'w', 'w', 'w', '.', 'e', 'x',
                                  'a',  'm',  'p',  'l',  'e', '.', 'c', 'o', 'm', 0};
    feed(b, msg, sizeof(msg));
}

void
bm_socks4_reply(struct bench *b)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(40001);
    inet_pton(AF_INET, "192.0.2.7", &a.sin_addr);
    uint8_t out[SOCKS4_REPLY_LEN];
    bench_set_bytes(b, SOCKS4_REPLY_LEN);
    while (bench_next(b)) {
        size_t n = socks4_reply(out, SOCKS4_REP_GRANTED, (const struct sockaddr *)&a);
        bench_do_not_optimize(&n);
        bench_do_not_optimize(out);
    }
}
