/*
 * test_socksload_socks.c - tools/socksload/socks.c and pattern.c: the client side of the
 * SOCKS wire formats, the server-side parsers of the target's SOCKS5 front, and the byte
 * pattern every run verifies.
 * Built and run by `make socksload-test` (mk/socksload.mk), linked with socks.o and pattern.o.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "socksload.h"

static struct url
url_of(enum url_scheme scheme, const char *user, const char *pass)
{
    struct url u;

    memset(&u, 0, sizeof(u));
    u.scheme = scheme;
    if (user) {
        u.has_user = true;
        strcpy(u.user, user);
    }
    if (pass) {
        u.has_pass = true;
        strcpy(u.pass, pass);
    }
    return u;
}

static struct socks_dest
dest_v4(const char *ip, uint16_t port)
{
    struct socks_dest d;

    memset(&d, 0, sizeof(d));
    d.type = URL_HOST_IPV4;
    inet_pton(AF_INET, ip, d.addr);
    d.port = port;
    return d;
}

static struct socks_dest
dest_name(const char *name, uint16_t port)
{
    struct socks_dest d;

    memset(&d, 0, sizeof(d));
    d.type = URL_HOST_NAME;
    strcpy(d.name, name);
    d.port = port;
    return d;
}

static void
test_greeting_and_auth(void **state)
{
    uint8_t out[600];
    struct url plain = url_of(URL_SOCKS5, NULL, NULL);
    struct url user = url_of(URL_SOCKS5, "alice", "s3cret");

    (void)state;
    assert_int_equal(socks_greeting(out, &plain), 3);
    assert_memory_equal(out, "\x05\x01\x00", 3);
    assert_int_equal(socks_greeting(out, &user), 4);
    assert_memory_equal(out, "\x05\x02\x00\x02", 4);
    assert_int_equal(socks_auth_request(out, &user, NULL), 1 + 1 + 5 + 1 + 6);
    assert_memory_equal(out,
                        "\x01\x05"
                        "alice"
                        "\x06"
                        "s3cret",
                        14);
}

static void
test_requests(void **state)
{
    uint8_t out[600];
    struct url s5 = url_of(URL_SOCKS5, NULL, NULL);
    struct url s4 = url_of(URL_SOCKS4, "bob", NULL);
    struct url s4a = url_of(URL_SOCKS4A, NULL, NULL);
    struct socks_dest v4 = dest_v4("127.0.0.1", 0x1234);
    struct socks_dest name = dest_name("localhost", 80);
    struct socks_dest v6;

    (void)state;
    assert_int_equal(socks_request(out, &s5, SOCKS_CMD_CONNECT, &v4), 10);
    assert_memory_equal(out, "\x05\x01\x00\x01\x7f\x00\x00\x01\x12\x34", 10);
    assert_int_equal(socks_request(out, &s5, SOCKS_CMD_UDP, &name), 4 + 1 + 9 + 2);
    assert_memory_equal(out,
                        "\x05\x03\x00\x03\x09"
                        "localhost"
                        "\x00\x50",
                        16);
    memset(&v6, 0, sizeof(v6));
    v6.type = URL_HOST_IPV6;
    v6.addr[15] = 1;
    v6.port = 1;
    assert_int_equal(socks_request(out, &s5, SOCKS_CMD_CONNECT, &v6), 22);
    assert_int_equal(out[3], 4);
    assert_int_equal(out[19], 1);
    /* SOCKS4 carries the user id; 4a sends 0.0.0.1 and the name after the empty user id. */
    assert_int_equal(socks_request(out, &s4, SOCKS_CMD_CONNECT, &v4), 8 + 3 + 1);
    assert_memory_equal(out,
                        "\x04\x01\x12\x34\x7f\x00\x00\x01"
                        "bob"
                        "\x00",
                        12);
    assert_int_equal(socks_request(out, &s4a, SOCKS_CMD_CONNECT, &name), 8 + 1 + 10);
    assert_memory_equal(out,
                        "\x04\x01\x00\x50\x00\x00\x00\x01\x00"
                        "localhost"
                        "\x00",
                        19);
}

static void
test_two_byte_replies(void **state)
{
    int code = -1;

    (void)state;
    assert_int_equal(socks_parse_method((const uint8_t *)"\x05", 1, &code), 0);
    assert_int_equal(socks_parse_method((const uint8_t *)"\x05\x02", 2, &code), 2);
    assert_int_equal(code, 2);
    assert_int_equal(socks_parse_method((const uint8_t *)"\x04\x00", 2, &code), -EPROTO);
    assert_int_equal(socks_parse_auth((const uint8_t *)"\x01\x01", 2, &code), 2);
    assert_int_equal(code, 1);
    assert_int_equal(socks_parse_auth((const uint8_t *)"\x05\x00", 2, &code), -EPROTO);
}

static void
test_reply_v5(void **state)
{
    struct url u = url_of(URL_SOCKS5H, NULL, NULL);
    struct sockaddr_storage bnd;
    int code = -1;
    const uint8_t v4[] = {5, 0, 0, 1, 127, 0, 0, 2, 0x1f, 0x90, 0xee};
    uint8_t v6[22] = {5, 0, 0, 4};
    const uint8_t name[] = {5, 4, 0, 3, 3, 'a', '.', 'b', 0, 1};

    (void)state;
    /* Every prefix of a complete reply asks for more. */
    for (size_t n = 0; n < 10; n++)
        assert_int_equal(socks_parse_reply(&u, v4, n, &code, &bnd), 0);
    assert_int_equal(socks_parse_reply(&u, v4, sizeof(v4), &code, &bnd), 10);
    assert_int_equal(code, 0);
    assert_int_equal(bnd.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&bnd)->sin_port), 8080);
    assert_int_equal(ntohl(((struct sockaddr_in *)&bnd)->sin_addr.s_addr), 0x7f000002);

    v6[19] = 1;
    v6[21] = 7;
    assert_int_equal(socks_parse_reply(&u, v6, 21, &code, &bnd), 0);
    assert_int_equal(socks_parse_reply(&u, v6, 22, &code, NULL), 22);
    assert_int_equal(socks_parse_reply(&u, v6, 22, &code, &bnd), 22);
    assert_int_equal(bnd.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&bnd)->sin6_port), 7);

    assert_int_equal(socks_parse_reply(&u, name, 9, &code, &bnd), 0);
    assert_int_equal(socks_parse_reply(&u, name, sizeof(name), &code, &bnd), 10);
    assert_int_equal(code, 4);
    assert_int_equal(bnd.ss_family, AF_UNSPEC); /* a name is no address to use */

    uint8_t bad[10];
    memcpy(bad, v4, sizeof(bad));
    bad[0] = 4; /* version */
    assert_int_equal(socks_parse_reply(&u, bad, sizeof(bad), &code, &bnd), -EPROTO);
    memcpy(bad, v4, sizeof(bad));
    bad[2] = 1; /* RSV */
    assert_int_equal(socks_parse_reply(&u, bad, sizeof(bad), &code, &bnd), -EPROTO);
    memcpy(bad, v4, sizeof(bad));
    bad[3] = 2; /* ATYP */
    assert_int_equal(socks_parse_reply(&u, bad, sizeof(bad), &code, &bnd), -EPROTO);
}

static void
test_reply_v4(void **state)
{
    struct url u = url_of(URL_SOCKS4A, NULL, NULL);
    int code = -1;
    const uint8_t ok[] = {0, 90, 0, 0, 0, 0, 0, 0};
    const uint8_t bad[] = {4, 90, 0, 0, 0, 0, 0, 0};

    (void)state;
    assert_int_equal(socks_parse_reply(&u, ok, 7, &code, NULL), 0);
    assert_int_equal(socks_parse_reply(&u, ok, 8, &code, NULL), 8);
    assert_int_equal(code, 90);
    assert_true(socks_reply_ok(&u, code));
    assert_int_equal(socks_parse_reply(&u, bad, 8, &code, NULL), -EPROTO);
    struct url u5 = url_of(URL_SOCKS5, NULL, NULL);
    assert_false(socks_reply_ok(&u5, 90));
    assert_true(socks_reply_ok(&u5, 0));
}

static void
test_udp_header(void **state)
{
    uint8_t out[600];
    struct socks_dest v4 = dest_v4("127.0.0.1", 9);
    struct socks_dest name = dest_name("localhost", 9);

    (void)state;
    assert_int_equal(socks_udp_header(out, &v4), 10);
    assert_memory_equal(out, "\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x09", 10);
    assert_int_equal(socks_parse_udp_header(out, 10), 10);
    assert_int_equal(socks_parse_udp_header(out, 14), 10); /* payload after it */
    /* A datagram is whole or malformed: there is no "more to come". */
    for (size_t n = 0; n < 10; n++)
        assert_int_equal(socks_parse_udp_header(out, n), -EPROTO);
    size_t h = socks_udp_header(out, &name);
    assert_int_equal(h, 4 + 1 + 9 + 2);
    assert_int_equal(socks_parse_udp_header(out, h), (ssize_t)h);
    assert_int_equal(socks_parse_udp_header(out, h - 1), -EPROTO);
    out[2] = 1; /* a fragment */
    assert_int_equal(socks_parse_udp_header(out, h), -EPROTO);
    out[2] = 0;
    out[3] = 5; /* unknown ATYP */
    assert_int_equal(socks_parse_udp_header(out, h), -EPROTO);
}

/* The target's SOCKS5 front: the greeting. What socks_greeting encodes parses back. */
static void
test_front_greeting(void **state)
{
    uint8_t out[600];
    bool noauth = false;
    struct url plain = url_of(URL_SOCKS5, NULL, NULL);
    struct url user = url_of(URL_SOCKS5, "alice", "s3cret");

    (void)state;
    size_t n = socks_greeting(out, &plain);
    assert_int_equal(socks_parse_greeting(out, n, &noauth), (ssize_t)n);
    assert_true(noauth);
    /* Incomplete, byte by byte: more to come, never a verdict. */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(socks_parse_greeting(out, k, &noauth), 0);
    /* Bytes after it (a pipelined request) are not consumed. */
    assert_int_equal(socks_parse_greeting((const uint8_t *)"\x05\x01\x00\x05\x01", 5, &noauth), 3);
    n = socks_greeting(out, &user);
    noauth = false;
    assert_int_equal(socks_parse_greeting(out, n, &noauth), (ssize_t)n);
    assert_true(noauth);
    /* Method 0 anywhere in the list; a list without it parses, and says so. */
    assert_int_equal(socks_parse_greeting((const uint8_t *)"\x05\x03\x02\x01\x00", 5, &noauth), 5);
    assert_true(noauth);
    assert_int_equal(socks_parse_greeting((const uint8_t *)"\x05\x01\x02", 3, &noauth), 3);
    assert_false(noauth);
    /* 255 methods: the largest greeting. */
    uint8_t big[2 + 255];
    big[0] = 5;
    big[1] = 255;
    for (int i = 0; i < 255; i++)
        big[2 + i] = (uint8_t)(254 - i); /* 0x00 last */
    assert_int_equal(socks_parse_greeting(big, sizeof(big) - 1, &noauth), 0);
    assert_int_equal(socks_parse_greeting(big, sizeof(big), &noauth), (ssize_t)sizeof(big));
    assert_true(noauth);
    /* Malformed: another version (SOCKS4, HTTP) at the first byte, no methods at all. */
    assert_int_equal(socks_parse_greeting((const uint8_t *)"\x04", 1, &noauth), -EPROTO);
    assert_int_equal(socks_parse_greeting((const uint8_t *)"GET / HTTP/1.1", 14, &noauth), -EPROTO);
    assert_int_equal(socks_parse_greeting((const uint8_t *)"\x05\x00", 2, &noauth), -EPROTO);
}

/* The target's SOCKS5 front: the request, every ATYP, as socks_request encodes it. */
static void
test_front_request(void **state)
{
    uint8_t out[600];
    int cmd = -1;
    struct url s5 = url_of(URL_SOCKS5, NULL, NULL);
    struct socks_dest v4 = dest_v4("127.0.0.1", 8080);
    struct socks_dest name = dest_name("localhost", 80);
    struct socks_dest v6;

    (void)state;
    memset(&v6, 0, sizeof(v6));
    v6.type = URL_HOST_IPV6;
    inet_pton(AF_INET6, "::1", v6.addr);
    v6.port = 443;

    size_t n = socks_request(out, &s5, SOCKS_CMD_CONNECT, &v4);
    assert_int_equal(n, 10);
    assert_int_equal(socks_parse_request(out, n, &cmd), 10);
    assert_int_equal(cmd, SOCKS_CMD_CONNECT);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(socks_parse_request(out, k, &cmd), 0);
    /* The target header right behind it is left for the target. */
    memcpy(out + n, "sl", 2);
    assert_int_equal(socks_parse_request(out, n + 2, &cmd), 10);

    n = socks_request(out, &s5, SOCKS_CMD_CONNECT, &v6);
    assert_int_equal(n, 22);
    assert_int_equal(socks_parse_request(out, n, &cmd), 22);
    assert_int_equal(socks_parse_request(out, n - 1, &cmd), 0);

    n = socks_request(out, &s5, SOCKS_CMD_CONNECT, &name);
    assert_int_equal(n, 4 + 1 + 9 + 2);
    assert_int_equal(socks_parse_request(out, n, &cmd), (ssize_t)n);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(socks_parse_request(out, k, &cmd), 0);

    /* Another command parses: refusing it is the caller's business. */
    n = socks_request(out, &s5, SOCKS_CMD_UDP, &v4);
    assert_int_equal(socks_parse_request(out, n, &cmd), 10);
    assert_int_equal(cmd, SOCKS_CMD_UDP);

    /* Malformed, as soon as the wrong byte is in: version, RSV, ATYP, an empty name. */
    n = socks_request(out, &s5, SOCKS_CMD_CONNECT, &v4);
    out[0] = 4;
    assert_int_equal(socks_parse_request(out, 1, &cmd), -EPROTO);
    out[0] = 5;
    out[2] = 1;
    assert_int_equal(socks_parse_request(out, 3, &cmd), -EPROTO);
    out[2] = 0;
    out[3] = 2;
    assert_int_equal(socks_parse_request(out, 4, &cmd), -EPROTO);
    out[3] = 0;
    assert_int_equal(socks_parse_request(out, n, &cmd), -EPROTO);
    out[3] = 3;
    out[4] = 0;
    assert_int_equal(socks_parse_request(out, 5, &cmd), -EPROTO);
    /* A greeting sent twice is not a request (RSV would be a method byte). */
    assert_int_equal(socks_parse_request((const uint8_t *)"\x05\x02\x00\x02", 4, &cmd), -EPROTO);
}

static void
test_pattern(void **state)
{
    uint8_t buf[PATTERN_CHUNK + 1000];

    (void)state;
    pattern_init();
    /* Two pieces of a stream fit together, across the chunk boundary too. */
    memcpy(buf, pattern_at(7, 100), PATTERN_CHUNK);
    memcpy(buf + PATTERN_CHUNK, pattern_at(7, 100 + PATTERN_CHUNK), 1000);
    assert_true(pattern_check(7, 100, buf, sizeof(buf)));
    /* One flipped byte anywhere, another seed or offset: caught. */
    buf[PATTERN_CHUNK + 500] ^= 1;
    assert_false(pattern_check(7, 100, buf, sizeof(buf)));
    buf[PATTERN_CHUNK + 500] ^= 1;
    assert_false(pattern_check(8, 100, buf, sizeof(buf)));
    assert_false(pattern_check(7, 101, buf, sizeof(buf)));

    struct pattern_hdr h = {.mode = 'Q', .seed = 0xdeadbeef, .a = 64, .b = 1u << 20}, g;
    uint8_t wire[PATTERN_HDR_LEN];
    pattern_hdr_encode(wire, &h);
    assert_int_equal(pattern_hdr_decode(&g, wire), 0);
    assert_int_equal(g.mode, 'Q');
    assert_int_equal(g.seed, 0xdeadbeef);
    assert_int_equal(g.a, 64);
    assert_int_equal(g.b, 1u << 20);
    wire[2] = 'Z';
    assert_int_equal(pattern_hdr_decode(&g, wire), -EPROTO);
    wire[2] = 0;
    assert_int_equal(pattern_hdr_decode(&g, wire), -EPROTO);
    wire[2] = 'S';
    wire[1] = 'x';
    assert_int_equal(pattern_hdr_decode(&g, wire), -EPROTO);

    /* The session key: carried only with its flag; unknown flags and a stray key refused. */
    h.flags = PATTERN_F_KEY;
    h.key = 199;
    pattern_hdr_encode(wire, &h);
    assert_int_equal(pattern_hdr_decode(&g, wire), 0);
    assert_int_equal(g.flags, PATTERN_F_KEY);
    assert_int_equal(g.key, 199);
    wire[3] = 0;
    assert_int_equal(pattern_hdr_decode(&g, wire), -EPROTO);
    wire[3] = PATTERN_F_KEY | 4;
    assert_int_equal(pattern_hdr_decode(&g, wire), -EPROTO);
    wire[3] = 0x80;
    assert_int_equal(pattern_hdr_decode(&g, wire), -EPROTO);
    h.flags = 0; /* no flag: the key is not sent */
    pattern_hdr_encode(wire, &h);
    assert_int_equal(pattern_hdr_decode(&g, wire), 0);
    assert_int_equal(g.key, 0);

    /* --close target: the target closes first. Its flag is carried, alone or with the key,
     * and only on a request/response ('Q'): no other mode has an end to close at. */
    h.mode = 'Q';
    h.flags = PATTERN_F_CLOSE;
    pattern_hdr_encode(wire, &h);
    assert_int_equal(wire[3], PATTERN_F_CLOSE);
    assert_int_equal(pattern_hdr_decode(&g, wire), 0);
    assert_int_equal(g.flags, PATTERN_F_CLOSE);
    assert_int_equal(g.mode, 'Q');
    assert_int_equal(g.a, 64);
    assert_int_equal(g.b, 1u << 20);
    assert_int_equal(g.key, 0);
    h.flags = PATTERN_F_CLOSE | PATTERN_F_KEY;
    h.key = 7;
    pattern_hdr_encode(wire, &h);
    assert_int_equal(pattern_hdr_decode(&g, wire), 0);
    assert_int_equal(g.flags, PATTERN_F_CLOSE | PATTERN_F_KEY);
    assert_int_equal(g.key, 7);
    /* Without it a 'Q' waits for the client's EOF, as before. */
    h.flags = 0;
    pattern_hdr_encode(wire, &h);
    assert_int_equal(pattern_hdr_decode(&g, wire), 0);
    assert_int_equal(g.flags & PATTERN_F_CLOSE, 0);
    const char others[] = "SKBE";
    for (size_t i = 0; i < sizeof(others) - 1; i++) {
        h.mode = (uint8_t)others[i];
        h.flags = PATTERN_F_CLOSE;
        pattern_hdr_encode(wire, &h);
        assert_int_equal(pattern_hdr_decode(&g, wire), -EPROTO);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_and_auth), cmocka_unit_test(test_requests),
        cmocka_unit_test(test_two_byte_replies),  cmocka_unit_test(test_reply_v5),
        cmocka_unit_test(test_reply_v4),          cmocka_unit_test(test_udp_header),
        cmocka_unit_test(test_front_greeting),    cmocka_unit_test(test_front_request),
        cmocka_unit_test(test_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
