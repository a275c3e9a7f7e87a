/*
 * bm_socks5.c - the SOCKS5 parsers and encoders (src/socks5.c): greeting
 * and request as socks5_feed() sees them, the reply, and the UDP ASSOCIATE
 * datagram header both ways. One message per iteration, whole in the
 * buffer (the common case: a client's message arrives in one segment).
 */
#include <arpa/inet.h>
#include <string.h>

#include "bench.h"
#include "socks5.h"

/* The parser state of a new connection: a memset of struct socks5 (with its 256-byte name). */
void
bm_socks5_init(struct bench *b)
{
    struct socks5 st;
    while (bench_next(b)) {
        socks5_init(&st);
        bench_do_not_optimize(&st);
    }
}

/* A connection's state starts at socks5_init(): counted with the greeting. */
static void
greeting(struct bench *b, bool password, const uint8_t *msg, size_t len)
{
    struct socks5 st;
    socks5_init(&st);
    socks5_set_password_required(&st, password);
    if (socks5_feed(&st, msg, len) != (ssize_t)len) {
        bench_error(b, "greeting not accepted");
        return;
    }
    bench_set_bytes(b, (int64_t)len);
    while (bench_next(b)) {
        socks5_init(&st);
        socks5_set_password_required(&st, password);
        ssize_t n = socks5_feed(&st, msg, len);
        bench_do_not_optimize(&n);
    }
}

void
bm_socks5_feed_greeting(struct bench *b)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x00};
    greeting(b, false, msg, sizeof(msg));
}

/* curl with credentials offers both: 05 02 00 02. */
void
bm_socks5_feed_greeting_password(struct bench *b)
{
    static const uint8_t msg[] = {0x05, 0x02, 0x00, 0x02};
    greeting(b, true, msg, sizeof(msg));
}

/* The parser state after a greeting: only the phase is reset per iteration. */
static void
request(struct bench *b, const uint8_t *msg, size_t len)
{
    struct socks5 st;
    socks5_init(&st);
    st.phase = SOCKS5_PHASE_REQUEST;
    if (socks5_feed(&st, msg, len) != (ssize_t)len) {
        bench_error(b, "request not accepted");
        return;
    }
    bench_set_bytes(b, (int64_t)len);
    while (bench_next(b)) {
        st.phase = SOCKS5_PHASE_REQUEST;
        ssize_t n = socks5_feed(&st, msg, len);
        bench_do_not_optimize(&n);
    }
}

void
bm_socks5_feed_request_ipv4(struct bench *b)
{
    /* CONNECT 93.184.216.34:443 */
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x01, 93, 184, 216, 34, 0x01, 0xbb};
    request(b, msg, sizeof(msg));
}

void
bm_socks5_feed_request_ipv6(struct bench *b)
{
    /* CONNECT [2001:db8::1]:443 */
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                  0,    0,    0,    0,    0,    0,    0,    0,    1, 0x01, 0xbb};
    request(b, msg, sizeof(msg));
}

void
bm_socks5_feed_request_domain(struct bench *b)
{
    /* CONNECT www.example.com:443, as curl --socks5-hostname sends it */
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x03, 15,  'w', 'w', 'w', '.', 'e',  'x',
                                  'a',  'm',  'p',  'l',  'e', '.', 'c', 'o', 'm', 0x01, 0xbb};
    request(b, msg, sizeof(msg));
}

static void
reply(struct bench *b, const struct sockaddr *bnd)
{
    uint8_t out[SOCKS5_REPLY_MAX];
    bench_set_bytes(b, (int64_t)socks5_reply(out, SOCKS5_REP_SUCCEEDED, bnd));
    while (bench_next(b)) {
        size_t n = socks5_reply(out, SOCKS5_REP_SUCCEEDED, bnd);
        bench_do_not_optimize(&n);
        bench_do_not_optimize(out);
    }
}

static struct sockaddr_in
v4(const char *ip, uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6
v6(const char *ip, uint16_t port)
{
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

void
bm_socks5_reply_ipv4(struct bench *b)
{
    struct sockaddr_in a = v4("192.0.2.7", 40001);
    reply(b, (const struct sockaddr *)&a);
}

void
bm_socks5_reply_ipv6(struct bench *b)
{
    struct sockaddr_in6 a = v6("2001:db8::7", 40001);
    reply(b, (const struct sockaddr *)&a);
}

/* A DNS query as a client sends it through the association: header, then 32 bytes of payload. */
static void
udp_parse(struct bench *b, const uint8_t *hdr, size_t hlen)
{
    uint8_t dgram[SOCKS5_UDP_HDR_MAX + 32];
    memcpy(dgram, hdr, hlen);
    memset(dgram + hlen, 0xab, 32);
    size_t len = hlen + 32;
    struct socks_dest d;
    uint8_t frag;
    if (socks5_udp_parse(dgram, len, &d, &frag) != (ssize_t)hlen) {
        bench_error(b, "datagram not accepted");
        return;
    }
    bench_set_bytes(b, (int64_t)hlen);
    while (bench_next(b)) {
        ssize_t n = socks5_udp_parse(dgram, len, &d, &frag);
        bench_do_not_optimize(&n);
    }
}

void
bm_socks5_udp_parse_ipv4(struct bench *b)
{
    static const uint8_t hdr[] = {0, 0, 0, 0x01, 9, 9, 9, 9, 0, 53};
    udp_parse(b, hdr, sizeof(hdr));
}

void
bm_socks5_udp_parse_domain(struct bench *b)
{
    static const uint8_t hdr[] = {0,   0,   0,   0x03, 11,  'e', 'x', 'a', 'm',
                                  'p', 'l', 'e', '.',  'c', 'o', 'm', 0,   53};
    udp_parse(b, hdr, sizeof(hdr));
}

static void
udp_header(struct bench *b, const struct sockaddr *src)
{
    uint8_t out[SOCKS5_UDP_HDR_MAX];
    bench_set_bytes(b, (int64_t)socks5_udp_header(out, src));
    while (bench_next(b)) {
        size_t n = socks5_udp_header(out, src);
        bench_do_not_optimize(&n);
        bench_do_not_optimize(out);
    }
}

void
bm_socks5_udp_header_ipv4(struct bench *b)
{
    struct sockaddr_in a = v4("9.9.9.9", 53);
    udp_header(b, (const struct sockaddr *)&a);
}

void
bm_socks5_udp_header_ipv6(struct bench *b)
{
    struct sockaddr_in6 a = v6("2620:fe::fe", 53);
    udp_header(b, (const struct sockaddr *)&a);
}

/* What a dual-stack association socket reports for an IPv4 peer. */
void
bm_socks5_udp_header_mapped(struct bench *b)
{
    struct sockaddr_in6 a = v6("::ffff:9.9.9.9", 53);
    udp_header(b, (const struct sockaddr *)&a);
}
