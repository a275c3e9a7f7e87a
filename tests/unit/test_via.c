/*
 * test_via.c - upstream chaining's parent lists and the client side of the
 * handshake with a parent (src/via.c): the bytes sent for each scheme, and every
 * kind of reply, whole, cut short, and followed by the target's first bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "via.h"

static struct via_list *
list1(const char *url)
{
    char why[300];
    struct via_list *vl = via_list_new(&url, 1, why, sizeof(why));
    if (!vl)
        fail_msg("%s: %s", url, why);
    return vl;
}

static const struct via_target t_name = {.kind = VIA_T_NAME, .name = "example.com", .port = 443};
static const struct via_target t_v4 = {.kind = VIA_T_IPV4, .addr = {198, 51, 100, 7}, .port = 80};
static const struct via_target t_v6 = {
    .kind = VIA_T_IPV6, .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}, .port = 22};

/* Feed p whole; the outcome, with *used. */
static enum via_res
feed(struct via_hs *h, const void *p, size_t n, size_t *used, uint8_t *out, size_t *out_len)
{
    return via_hs_feed(h, p, n, used, out, out_len);
}

static void
test_list(void **state)
{
    (void)state;
    const char *urls[] = {"socks5://a:b@192.0.2.1:1081", "http://[2001:db8::2]",
                          "socks4://localhost"};
    char why[300];
    struct via_list *vl = via_list_new(urls, 3, why, sizeof(why));
    assert_non_null(vl);
    assert_int_equal(via_count(vl), 3);
    assert_string_equal(via_label(vl, 0), "socks5://192.0.2.1:1081");
    assert_string_equal(via_label(vl, 1), "http://[2001:db8::2]:1080");
    assert_string_equal(via_label(vl, 2), "socks4://127.0.0.1:1080");
    assert_int_equal(via_addr(vl, 1)->sa.sa_family, AF_INET6);
    assert_int_equal(ntohs(via_addr(vl, 0)->v4.sin_port), 1081);
    /* References: the list lives until the last one goes. */
    via_list_get(vl);
    via_list_put(vl);
    assert_int_equal(via_count(vl), 3);
    /* A parent kept alone holds the list (the caller's reference passes to it). */
    via_list_get(vl);
    const struct via_parent *vp = via_parent_of(vl, 1);
    via_list_put(vl);
    assert_ptr_equal(via_parent_addr(vp), via_addr(vl, 1));
    assert_int_equal(via_parent_addr(vp)->sa.sa_family, AF_INET6);
    /* Who a parent is to the health memory: its credentials count. */
    const char *same[] = {"socks5://a:x@192.0.2.1:1081", "socks5://a:y@192.0.2.1:1081",
                          "socks5://a:x@192.0.2.1:1081"};
    struct via_list *vs = via_list_new(same, 3, why, sizeof(why));
    assert_non_null(vs);
    assert_int_not_equal(via_ident(vs, 0), via_ident(vs, 1));
    assert_int_equal(via_ident(vs, 0), via_ident(vs, 2));
    via_list_put(vs);
    via_parent_put(vp);
    via_parent_put(NULL);

    const char *bad[] = {"socks5://proxy.example:1080"};
    assert_null(via_list_new(bad, 1, why, sizeof(why)));
    assert_string_equal(why, "via[0]: parent proxy.example is not an IP address (names are not "
                             "resolved: write the address)");
    const char *secret[] = {"http://alice:s3cret@192.0.2.1:x"};
    assert_null(via_list_new(secret, 1, why, sizeof(why)));
    assert_null(strstr(why, "s3cret"));
    assert_null(via_list_new(urls, 0, why, sizeof(why)));
    const char *nine[9] = {urls[0], urls[0], urls[0], urls[0], urls[0],
                           urls[0], urls[0], urls[0], urls[0]};
    assert_null(via_list_new(nine, 9, why, sizeof(why)));
    assert_string_equal(why, "via: 9 parents; a rule names 1 to 8");
}

/* SOCKS5 without credentials: greeting, request by name, success with BND. */
static void
test_socks5_plain(void **state)
{
    (void)state;
    struct via_list *vl = list1("socks5://192.0.2.1:1080");
    struct via_hs h;
    uint8_t out[VIA_MSG_MAX];
    size_t used, olen;
    assert_int_equal(via_hs_start(&h, vl, 0, &t_name, out), 3);
    assert_memory_equal(out, "\x05\x01\x00", 3);
    assert_int_equal(feed(&h, "\x05", 1, &used, out, &olen), VIA_MORE);
    assert_int_equal(feed(&h, "\x05\x00", 2, &used, out, &olen), VIA_SEND);
    assert_int_equal(used, 2);
    assert_int_equal(olen, 5 + 11 + 2);
    assert_memory_equal(out,
                        "\x05\x01\x00\x03\x0b"
                        "example.com"
                        "\x01\xbb",
                        olen);
    /* The reply, then the target's first bytes, which are not the handshake's. */
    static const uint8_t rep[] = {5, 0, 0, 1, 203, 0, 113, 9, 0x1f, 0x90, 'S', 'S', 'H'};
    for (size_t n = 0; n < 10; n++)
        assert_int_equal(feed(&h, rep, n, &used, out, &olen), VIA_MORE);
    assert_int_equal(feed(&h, rep, sizeof(rep), &used, out, &olen), VIA_OK);
    assert_int_equal(used, 10);
    assert_int_equal(h.rep, 0);
    assert_int_equal(h.bnd.sa.sa_family, AF_INET);
    assert_int_equal(ntohs(h.bnd.v4.sin_port), 8080);
    via_list_put(vl);
}

/* SOCKS5 with credentials: RFC 1929, refused or accepted; reply codes mapped. */
static void
test_socks5_auth(void **state)
{
    (void)state;
    struct via_list *vl = list1("socks5h://al%40ce:pw@192.0.2.1");
    struct via_hs h;
    uint8_t out[VIA_MSG_MAX];
    size_t used, olen;
    assert_int_equal(via_hs_start(&h, vl, 0, &t_v6, out), 4);
    assert_memory_equal(out, "\x05\x02\x00\x02", 4);
    assert_int_equal(feed(&h, "\x05\x02", 2, &used, out, &olen), VIA_SEND);
    assert_memory_equal(out,
                        "\x01\x05"
                        "al@ce"
                        "\x02"
                        "pw",
                        olen);
    assert_int_equal(feed(&h, "\x01\x01", 2, &used, out, &olen), VIA_BROKEN);
    assert_string_equal(h.why, "parent refused our credentials");

    via_hs_start(&h, vl, 0, &t_v6, out);
    feed(&h, "\x05\x02", 2, &used, out, &olen);
    assert_int_equal(feed(&h, "\x01\x00", 2, &used, out, &olen), VIA_SEND);
    assert_int_equal(olen, 4 + 16 + 2);
    assert_memory_equal(out, "\x05\x01\x00\x04\x20\x01\x0d\xb8", 8);
    static const uint8_t refused[] = {5, 5, 0, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(feed(&h, refused, sizeof(refused), &used, out, &olen), VIA_REFUSED);
    assert_int_equal(h.rep, 5);
    static const uint8_t odd[] = {5, 0x42, 0, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(feed(&h, odd, sizeof(odd), &used, out, &olen), VIA_REFUSED);
    assert_int_equal(h.rep, 1);

    /* A parent choosing no method of ours, or one we did not offer; not SOCKS at all. */
    via_hs_start(&h, vl, 0, &t_v6, out);
    assert_int_equal(feed(&h, "\x05\xff", 2, &used, out, &olen), VIA_BROKEN);
    via_hs_start(&h, vl, 0, &t_v6, out);
    assert_int_equal(feed(&h, "\x05\x01", 2, &used, out, &olen), VIA_BROKEN);
    via_hs_start(&h, vl, 0, &t_v6, out);
    assert_int_equal(feed(&h, "HTTP/1.1 400", 12, &used, out, &olen), VIA_BROKEN);
    via_list_put(vl);
    /* Without credentials of ours, a parent that wants them is broken, not asked. */
    vl = list1("socks5://192.0.2.1");
    via_hs_start(&h, vl, 0, &t_v6, out);
    assert_int_equal(feed(&h, "\x05\x02", 2, &used, out, &olen), VIA_BROKEN);
    via_list_put(vl);
}

static void
test_socks4(void **state)
{
    (void)state;
    struct via_list *vl = list1("socks4a://bob@192.0.2.1");
    struct via_hs h;
    uint8_t out[VIA_MSG_MAX];
    size_t used, olen;
    size_t n = via_hs_start(&h, vl, 0, &t_name, out);
    assert_int_equal(n, 8 + 4 + 12);
    assert_memory_equal(out,
                        "\x04\x01\x01\xbb\x00\x00\x00\x01"
                        "bob\0"
                        "example.com\0",
                        n);
    static const uint8_t ok[] = {0, 90, 0, 0, 0, 0, 0, 0, 'x'};
    assert_int_equal(feed(&h, ok, 7, &used, out, &olen), VIA_MORE);
    assert_int_equal(feed(&h, ok, sizeof(ok), &used, out, &olen), VIA_OK);
    assert_int_equal(used, 8);
    assert_int_equal(h.bnd.sa.sa_family, AF_UNSPEC);
    static const uint8_t no[] = {0, 91, 0, 0, 0, 0, 0, 0};
    assert_int_equal(feed(&h, no, sizeof(no), &used, out, &olen), VIA_REFUSED);
    assert_int_equal(h.rep, 1);
    static const uint8_t identd[] = {0, 92, 0, 0, 0, 0, 0, 0};
    assert_int_equal(feed(&h, identd, sizeof(identd), &used, out, &olen), VIA_BROKEN);
    /* SOCKS4a carries no IPv6 address; SOCKS4 no name either. */
    assert_int_equal(via_hs_start(&h, vl, 0, &t_v6, out), 0);
    via_list_put(vl);
    vl = list1("socks4://192.0.2.1");
    assert_int_equal(via_hs_start(&h, vl, 0, &t_name, out), 0);
    assert_int_equal(via_hs_start(&h, vl, 0, &t_v4, out), 9);
    assert_memory_equal(out, "\x04\x01\x00\x50\xc6\x33\x64\x07\x00", 9);
    via_list_put(vl);
}

static void
test_http(void **state)
{
    (void)state;
    struct via_list *vl = list1("http://u:p@192.0.2.1:3128");
    struct via_hs h;
    uint8_t out[VIA_MSG_MAX + 1];
    size_t used, olen;
    size_t n = via_hs_start(&h, vl, 0, &t_v6, out);
    out[n] = '\0';
    assert_string_equal((char *)out, "CONNECT [2001:db8::1]:22 HTTP/1.1\r\n"
                                     "Host: [2001:db8::1]:22\r\n"
                                     "Proxy-Authorization: Basic dTpw\r\n\r\n");
    static const char ok[] = "HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nSSH-2.0";
    size_t hdr = sizeof(ok) - 1 - 7;
    for (size_t k = 0; k < hdr; k++)
        assert_int_equal(feed(&h, ok, k, &used, out, &olen), VIA_MORE);
    assert_int_equal(feed(&h, ok, sizeof(ok) - 1, &used, out, &olen), VIA_OK);
    assert_int_equal(used, hdr);

    static const struct {
        const char *resp;
        enum via_res res;
        uint8_t rep;
    } cases[] = {
        {"HTTP/1.0 403 Forbidden\r\n\r\n", VIA_REFUSED, 2},
        {"HTTP/1.1 502 Bad Gateway\r\n\r\n", VIA_REFUSED, 4},
        {"HTTP/1.1 504 Gateway Timeout\r\n\r\n", VIA_REFUSED, 6},
        {"HTTP/1.1 503 Service Unavailable\r\n\r\n", VIA_REFUSED, 1},
        {"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", VIA_BROKEN, 0},
        {"SSH-2.0-OpenSSH\r\n", VIA_BROKEN, 0},
        {"HTTP/1.1 2x0 OK\r\n\r\n", VIA_BROKEN, 0},
        {"HTTP/1.1 2000 OK\r\n\r\n", VIA_BROKEN, 0},
        {"HTTP/1.x 200 OK\r\n\r\n", VIA_BROKEN, 0},
        {"HTTP/1.0 200\r\n\r\n", VIA_OK, 0},
        {"HTTP/1.0 502 no\nX: y\n\n", VIA_REFUSED, 4}, /* bare LF ends lines too */
        {"HTTP/1.1 403 no\r\nX: y\n\r\n", VIA_REFUSED, 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        via_hs_start(&h, vl, 0, &t_v4, out);
        enum via_res r = feed(&h, cases[i].resp, strlen(cases[i].resp), &used, out, &olen);
        assert_int_equal(r, cases[i].res);
        if (r == VIA_REFUSED)
            assert_int_equal(h.rep, cases[i].rep);
    }
    via_hs_start(&h, vl, 0, &t_v4, out);
    feed(&h, "HTTP/1.1 407 x\r\n\r\n", 18, &used, out, &olen);
    assert_string_equal(h.why, "parent refused our credentials");
    /* An interim 1xx response is taken, and the final one read after it. */
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    via_hs_start(&h, vl, 0, &t_v4, out);
    assert_int_equal(feed(&h, interim, 12, &used, out, &olen), VIA_MORE);
    assert_int_equal(feed(&h, interim, sizeof(interim) - 1, &used, out, &olen), VIA_AGAIN);
    assert_int_equal(used, 25);
    assert_int_equal(feed(&h, interim + 25, sizeof(interim) - 26, &used, out, &olen), VIA_OK);
    assert_int_equal(used, 19);
    /* A header that never ends within the bound. */
    static char big[VIA_REPLY_MAX];
    memset(big, 'a', sizeof(big));
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    via_hs_start(&h, vl, 0, &t_v4, out);
    assert_int_equal(feed(&h, big, sizeof(big) - 1, &used, out, &olen), VIA_MORE);
    assert_int_equal(feed(&h, big, sizeof(big), &used, out, &olen), VIA_BROKEN);
    via_list_put(vl);

    /* No credentials: no Proxy-Authorization; a 407 says it wants some. */
    vl = list1("http://192.0.2.1:3128");
    n = via_hs_start(&h, vl, 0, &t_name, out);
    out[n] = '\0';
    assert_string_equal((char *)out,
                        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    feed(&h, "HTTP/1.1 407 x\r\n\r\n", 18, &used, out, &olen);
    assert_string_equal(h.why, "parent asks for credentials");
    via_list_put(vl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),        cmocka_unit_test(test_socks5_plain),
        cmocka_unit_test(test_socks5_auth), cmocka_unit_test(test_socks4),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
