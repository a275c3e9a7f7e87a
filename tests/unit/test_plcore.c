/*
 * test_plcore.c - cmocka unit tests for the socksifier's pure parts (src/preload/plcore.c): the
 * proxy URL, bypass networks, placeholder names, the hosts(5) check and the SOCKS client
 * handshake, whose messages are checked byte for byte and whose replies are fed by hand.
 *
 * Links plcore.o alone: nothing to fake. Single-threaded; never touches a socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "preload/plcore.h"

static void
test_url_schemes(void **state)
{
    struct plcore_proxy px;

    (void)state;
    assert_int_equal(plcore_proxy_parse(&px, "socks5h://127.0.0.1:9050", NULL, 0), 0);
    assert_int_equal(px.scheme, PLCORE_SOCKS5H);
    assert_string_equal(px.host, "127.0.0.1");
    assert_int_equal(px.port, 9050);
    assert_false(px.has_auth);
    assert_true(plcore_remote_dns(px.scheme));
    assert_int_equal(plcore_proxy_parse(&px, "SOCKS5://proxy.example/", NULL, 0), 0);
    assert_int_equal(px.scheme, PLCORE_SOCKS5);
    assert_int_equal(px.port, 1080);
    assert_false(plcore_remote_dns(px.scheme));
    assert_int_equal(plcore_proxy_parse(&px, "socks4a://[::1]:1081", NULL, 0), 0);
    assert_int_equal(px.scheme, PLCORE_SOCKS4A);
    assert_string_equal(px.host, "::1");
    assert_int_equal(px.port, 1081);
    assert_int_equal(plcore_proxy_parse(&px, "socks4://h", NULL, 0), 0);
    assert_int_equal(px.scheme, PLCORE_SOCKS4);
}

static void
test_url_auth(void **state)
{
    struct plcore_proxy px;

    (void)state;
    assert_int_equal(plcore_proxy_parse(&px, "socks5h://al%40ice:p%3Ass@w:o@h:2", NULL, 0), 0);
    assert_true(px.has_auth);
    assert_string_equal(px.user, "al@ice");
    assert_string_equal(px.pass, "p:ss@w:o");
    assert_string_equal(px.host, "h");
    assert_int_equal(px.port, 2);
    assert_int_equal(plcore_proxy_parse(&px, "socks5://bob@h", NULL, 0), 0);
    assert_string_equal(px.user, "bob");
    assert_string_equal(px.pass, "");
}

static void
test_url_rejected(void **state)
{
    static const char *bad[] = {
        "127.0.0.1:1080", /* curl: an HTTP proxy */
        "http://h:3128",   "socks5h://",     "socks5h://h:0",    "socks5h://h:65536",
        "socks5h://h:12x", "socks5h://[::1", "socks5h://h/path", "socks5h://h:",
    };
    struct plcore_proxy px;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(plcore_proxy_parse(&px, bad[i], NULL, 0), -EINVAL);
}

static struct sockaddr_storage
sa(const char *ip)
{
    struct sockaddr_storage ss = {0};

    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        fail_msg("bad address %s", ip);
    return ss;
}

static bool
in(const char *net, const char *ip)
{
    struct plcore_net n;
    struct sockaddr_storage s = sa(ip);

    assert_int_equal(plcore_net_parse(&n, net), 0);
    return plcore_net_match(&n, (struct sockaddr *)&s);
}

static void
test_networks(void **state)
{
    struct plcore_net n;

    (void)state;
    assert_true(in("10.0.0.0/8", "10.200.1.1"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("192.168.1.0/23", "192.168.0.255"));
    assert_false(in("192.168.1.0/24", "192.168.0.255"));
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1")); /* IPv4-mapped counts as IPv4 */
    assert_true(in("::1/128", "::1"));
    assert_false(in("::1/128", "::2"));
    assert_true(in("fd00::/8", "fd12::1"));
    assert_false(in("fd00::/8", "10.0.0.1"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_true(in("192.0.2.7", "192.0.2.7"));
    assert_false(in("192.0.2.7", "192.0.2.8"));
    assert_int_equal(plcore_net_parse(&n, "10.0.0.0/33"), -EINVAL);
    assert_int_equal(plcore_net_parse(&n, "10.0.0/8"), -EINVAL);
    assert_int_equal(plcore_net_parse(&n, "/8"), -EINVAL);
    assert_int_equal(plcore_net_parse(&n, "10.0.0.0/"), -EINVAL);
}

static void
test_names(void **state)
{
    char slots[3][PLCORE_NAME_MAX + 1];
    struct plcore_names t = {.base = 0xf0000000u, .cap = 3, .name = slots};
    char long_name[PLCORE_NAME_MAX + 2];
    uint32_t a, b;

    (void)state;
    memset(slots, 0, sizeof(slots));
    a = plcore_names_get(&t, "one.test");
    assert_int_equal(a, 0xf0000001u);
    assert_int_equal(plcore_names_get(&t, "ONE.test"), a); /* names are case-insensitive */
    b = plcore_names_get(&t, "two.test");
    assert_int_equal(b, 0xf0000002u);
    assert_string_equal(plcore_names_lookup(&t, a), "one.test");
    assert_string_equal(plcore_names_lookup(&t, b), "two.test");
    assert_null(plcore_names_lookup(&t, 0xf0000003u)); /* not given out yet */
    assert_null(plcore_names_lookup(&t, 0xf0000000u)); /* the network's own address */
    assert_null(plcore_names_lookup(&t, 0x0a000001u));
    assert_int_equal(plcore_names_get(&t, "three.test"), 0xf0000003u);
    /* Full: the oldest slot is reused. */
    assert_int_equal(plcore_names_get(&t, "four.test"), 0xf0000001u);
    assert_string_equal(plcore_names_lookup(&t, a), "four.test");
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(plcore_names_get(&t, long_name), 0);
    assert_int_equal(plcore_names_get(&t, ""), 0);
}

static void
test_hosts(void **state)
{
    static const char text[] = "127.0.0.1\tlocalhost\n"
                               "# 10.0.0.1 commented.test\n"
                               "10.0.0.2 canon.test alias.test # tail.test\n"
                               "::1 ip6-localhost";

    (void)state;
    assert_true(plcore_hosts_has(text, strlen(text), "canon.test"));
    assert_true(plcore_hosts_has(text, strlen(text), "ALIAS.test"));
    assert_true(plcore_hosts_has(text, strlen(text), "ip6-localhost"));
    assert_false(plcore_hosts_has(text, strlen(text), "commented.test"));
    assert_false(plcore_hosts_has(text, strlen(text), "tail.test"));
    assert_false(plcore_hosts_has(text, strlen(text), "10.0.0.2")); /* an address, not a name */
    assert_false(plcore_hosts_has(text, strlen(text), "canon"));
    assert_false(plcore_hosts_has(text, 0, "localhost"));
}

/* Runs the handshake against the proxy's replies: each reply is fed once the machine waits
 * for input; the messages it sent are concatenated into sent. Returns the last result. */
static int
run_hs(struct plcore_hs *hs, const uint8_t *replies, size_t rlen, uint8_t *sent, size_t *slen)
{
    size_t r = 0;
    int rc;

    *slen = 0;
    for (;;) {
        memcpy(sent + *slen, hs->out + hs->out_off, hs->out_len - hs->out_off);
        *slen += hs->out_len - hs->out_off;
        hs->out_off = hs->out_len;
        /* One byte at a time: the machine must ask for exactly what each stage needs. */
        while (hs->in_len < hs->in_want) {
            if (r == rlen)
                return 0;
            hs->in[hs->in_len++] = replies[r++];
        }
        rc = plcore_hs_next(hs);
        if (rc != 0) {
            assert_int_equal(r, rlen); /* nothing read past the reply */
            return rc;
        }
    }
}

static struct plcore_dest
dest_ip(const char *ip, uint16_t port)
{
    struct plcore_dest d = {.port = port};

    d.addr = sa(ip);
    return d;
}

static void
test_hs_socks5_name_auth(void **state)
{
    struct plcore_proxy px;
    struct plcore_dest d = {.name = "good.test", .port = 80};
    struct plcore_hs hs;
    static const uint8_t replies[] = {5, 2, 1, 0, 5, 0, 0, 3, 4, 'a', 'b', 'c', 'd', 0, 80};
    static const uint8_t want[] = {5, 2, 0,   2,   1,   1,   'u', 2,   'p', 'w', 5,   1, 0,
                                   3, 9, 'g', 'o', 'o', 'd', '.', 't', 'e', 's', 't', 0, 80};
    uint8_t sent[1024];
    size_t n;

    (void)state;
    assert_int_equal(plcore_proxy_parse(&px, "socks5h://u:pw@h", NULL, 0), 0);
    assert_int_equal(plcore_hs_start(&hs, &px, &d), 0);
    assert_int_equal(run_hs(&hs, replies, sizeof(replies), sent, &n), 1);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(sent, want, n);
}

static void
test_hs_socks5_ipv4_ipv6(void **state)
{
    struct plcore_proxy px;
    struct plcore_dest d4 = dest_ip("192.0.2.1", 443), d6 = dest_ip("2001:db8::1", 22);
    struct plcore_hs hs;
    static const uint8_t r4[] = {5, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 1};
    static const uint8_t w4[] = {5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 1, 1, 187};
    uint8_t r6[2 + 22] = {5, 0, 5, 0, 0, 4};
    uint8_t w6[3 + 22] = {5, 1, 0, 5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8};
    uint8_t sent[1024];
    size_t n;

    (void)state;
    assert_int_equal(plcore_proxy_parse(&px, "socks5://h", NULL, 0), 0);
    assert_int_equal(plcore_hs_start(&hs, &px, &d4), 0);
    assert_int_equal(run_hs(&hs, r4, sizeof(r4), sent, &n), 1);
    assert_int_equal(n, sizeof(w4));
    assert_memory_equal(sent, w4, n);
    w6[3 + 4 + 15] = 1;
    w6[3 + 4 + 17] = 22;
    assert_int_equal(plcore_hs_start(&hs, &px, &d6), 0);
    assert_int_equal(run_hs(&hs, r6, sizeof(r6), sent, &n), 1);
    assert_int_equal(n, sizeof(w6));
    assert_memory_equal(sent, w6, n);
    /* socks5 (no h) never sends a name. */
    {
        struct plcore_dest dn = {.name = "x.test", .port = 1};
        assert_int_equal(plcore_hs_start(&hs, &px, &dn), -EINVAL);
    }
}

static void
test_hs_socks5_refusals(void **state)
{
    static const struct {
        uint8_t rep;
        int err;
    } codes[] = {{1, -ECONNREFUSED}, {2, -EACCES},    {3, -ENETUNREACH}, {4, -EHOSTUNREACH},
                 {5, -ECONNREFUSED}, {6, -ETIMEDOUT}, {7, -EOPNOTSUPP},  {8, -EAFNOSUPPORT}};
    struct plcore_proxy px, pxa;
    struct plcore_dest d = dest_ip("192.0.2.1", 80);
    struct plcore_hs hs;
    uint8_t sent[1024], rep[7] = {5, 0, 5, 0, 0, 1, 0};
    static const uint8_t no_method[] = {5, 0xff}, auth_bad[] = {5, 2, 1, 1};
    size_t i, n;

    (void)state;
    assert_int_equal(plcore_proxy_parse(&px, "socks5://h", NULL, 0), 0);
    assert_int_equal(plcore_proxy_parse(&pxa, "socks5://u:p@h", NULL, 0), 0);
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        rep[3] = codes[i].rep;
        assert_int_equal(plcore_hs_start(&hs, &px, &d), 0);
        assert_int_equal(run_hs(&hs, rep, 5 + 2 - 2 + 2, sent, &n), codes[i].err);
    }
    assert_int_equal(plcore_hs_start(&hs, &px, &d), 0);
    assert_int_equal(run_hs(&hs, no_method, sizeof(no_method), sent, &n), -EACCES);
    /* A server that picks username/password though none was offered. */
    assert_int_equal(plcore_hs_start(&hs, &px, &d), 0);
    assert_int_equal(run_hs(&hs, auth_bad, 2, sent, &n), -EACCES);
    assert_int_equal(plcore_hs_start(&hs, &pxa, &d), 0);
    assert_int_equal(run_hs(&hs, auth_bad, sizeof(auth_bad), sent, &n), -EACCES);
}

static void
test_hs_socks4(void **state)
{
    struct plcore_proxy px;
    struct plcore_dest d = dest_ip("192.0.2.1", 80), dn = {.name = "n.test", .port = 80};
    struct plcore_dest d6 = dest_ip("::1", 80);
    struct plcore_hs hs;
    static const uint8_t ok[] = {0, 0x5A, 0, 0, 0, 0, 0, 0}, no[] = {0, 0x5B, 0, 0, 0, 0, 0, 0};
    static const uint8_t w4[] = {4, 1, 0, 80, 192, 0, 2, 1, 'u', 0};
    static const uint8_t w4a[] = {4, 1, 0, 80, 0, 0, 0, 1, 'u', 0, 'n', '.', 't', 'e', 's', 't', 0};
    uint8_t sent[1024];
    size_t n;

    (void)state;
    assert_int_equal(plcore_proxy_parse(&px, "socks4a://u@h", NULL, 0), 0);
    assert_int_equal(plcore_hs_start(&hs, &px, &d), 0);
    assert_int_equal(run_hs(&hs, ok, sizeof(ok), sent, &n), 1);
    assert_int_equal(n, sizeof(w4));
    assert_memory_equal(sent, w4, n);
    assert_int_equal(plcore_hs_start(&hs, &px, &dn), 0);
    assert_int_equal(run_hs(&hs, ok, sizeof(ok), sent, &n), 1);
    assert_int_equal(n, sizeof(w4a));
    assert_memory_equal(sent, w4a, n);
    assert_int_equal(plcore_hs_start(&hs, &px, &d), 0);
    assert_int_equal(run_hs(&hs, no, sizeof(no), sent, &n), -ECONNREFUSED);
    assert_int_equal(plcore_hs_start(&hs, &px, &d6), -EAFNOSUPPORT);
    assert_int_equal(plcore_proxy_parse(&px, "socks4://h", NULL, 0), 0);
    assert_int_equal(plcore_hs_start(&hs, &px, &dn), -EINVAL);
}

static void
test_udp_header(void **state)
{
    struct plcore_dest d = {.name = "u.test", .port = 53}, got;
    struct plcore_dest d4 = dest_ip("192.0.2.9", 5353);
    static const uint8_t want[] = {0, 0, 0, 3, 6, 'u', '.', 't', 'e', 's', 't', 0, 53};
    uint8_t pkt[300];
    int n;

    (void)state;
    n = plcore_udp_header(pkt, &d);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(pkt, want, sizeof(want));
    memcpy(pkt + n, "data", 4);
    assert_int_equal(plcore_udp_parse(pkt, (size_t)n + 4, &got), n);
    assert_string_equal(got.name, "u.test");
    assert_int_equal(got.port, 53);
    n = plcore_udp_header(pkt, &d4);
    assert_int_equal(n, 10);
    assert_int_equal(plcore_udp_parse(pkt, (size_t)n, &got), n);
    assert_int_equal(got.addr.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&got.addr)->sin_port), 5353);
    assert_int_equal(got.port, 5353);
    /* A fragment, a cut header, an unknown ATYP: dropped. */
    pkt[2] = 1;
    assert_int_equal(plcore_udp_parse(pkt, (size_t)n, &got), -EINVAL);
    pkt[2] = 0;
    assert_int_equal(plcore_udp_parse(pkt, (size_t)n - 1, &got), -EINVAL);
    pkt[3] = 9;
    assert_int_equal(plcore_udp_parse(pkt, (size_t)n, &got), -EINVAL);
}

static void
test_hs_udp_associate_bound(void **state)
{
    struct plcore_proxy px;
    struct plcore_dest any = {.port = 0};
    struct plcore_hs hs;
    struct sockaddr_storage ss;
    socklen_t len;
    static const uint8_t replies[] = {5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90};
    uint8_t sent[1024];
    size_t n;

    (void)state;
    any.addr.ss_family = AF_INET;
    assert_int_equal(plcore_proxy_parse(&px, "socks5://h", NULL, 0), 0);
    assert_int_equal(plcore_hs_start(&hs, &px, &any), 0);
    hs.cmd = 3;
    assert_int_equal(run_hs(&hs, replies, sizeof(replies), sent, &n), 1);
    assert_int_equal(sent[3 + 1], 3); /* CMD UDP ASSOCIATE */
    assert_int_equal(plcore_hs_bound(&hs, &ss, &len), 0);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
    assert_int_equal(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr), 0x7f000001);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_schemes),
        cmocka_unit_test(test_url_auth),
        cmocka_unit_test(test_url_rejected),
        cmocka_unit_test(test_networks),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_hs_socks5_name_auth),
        cmocka_unit_test(test_hs_socks5_ipv4_ipv6),
        cmocka_unit_test(test_hs_socks5_refusals),
        cmocka_unit_test(test_hs_socks4),
        cmocka_unit_test(test_udp_header),
        cmocka_unit_test(test_hs_udp_associate_bound),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
