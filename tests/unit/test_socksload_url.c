/*
 * test_socksload_url.c - tools/socksload/url.c: proxy URLs, HOST:PORT, loopback test.
 * Built and run by `make socksload-test` (mk/socksload.mk), linked with url.o only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "socksload.h"

static void
test_schemes(void **state)
{
    struct url u;
    char err[200];

    (void)state;
    assert_int_equal(url_parse(&u, "socks4://127.0.0.1:1080", err, sizeof(err)), 0);
    assert_int_equal(u.scheme, URL_SOCKS4);
    assert_int_equal(url_parse(&u, "socks4a://127.0.0.1", err, sizeof(err)), 0);
    assert_int_equal(u.scheme, URL_SOCKS4A);
    assert_int_equal(u.port, 1080);
    assert_int_equal(url_parse(&u, "socks5://127.0.0.1:9", err, sizeof(err)), 0);
    assert_int_equal(u.scheme, URL_SOCKS5);
    assert_int_equal(u.port, 9);
    assert_int_equal(url_parse(&u, "SOCKS5H://127.0.0.1:65535/", err, sizeof(err)), 0);
    assert_int_equal(u.scheme, URL_SOCKS5H);
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.host_type, URL_HOST_IPV4);
    assert_string_equal(u.host, "127.0.0.1");
    assert_false(u.has_user);
}

static void
test_hosts(void **state)
{
    struct url u;
    char err[200];

    (void)state;
    assert_int_equal(url_parse(&u, "socks5://[::1]:1081", err, sizeof(err)), 0);
    assert_int_equal(u.host_type, URL_HOST_IPV6);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 1081);
    assert_int_equal(url_parse(&u, "socks5://[::1]", err, sizeof(err)), 0);
    assert_int_equal(u.port, 1080);
    assert_int_equal(url_parse(&u, "socks5h://localhost:1080", err, sizeof(err)), 0);
    assert_int_equal(u.host_type, URL_HOST_NAME);
    assert_string_equal(u.host, "localhost");
    /* An HTTP CONNECT parent (ringsocks's chaining; socksload refuses it). */
    assert_int_equal(url_parse(&u, "HTTP://u:p@[2001:db8::1]:3128", err, sizeof(err)), 0);
    assert_int_equal(u.scheme, URL_HTTP);
    assert_int_equal(u.port, 3128);
    assert_string_equal(url_scheme_str(u.scheme), "http");
}

static void
test_userinfo(void **state)
{
    struct url u;
    char err[200];

    (void)state;
    assert_int_equal(url_parse(&u, "socks5://alice:s3cret@127.0.0.1:1080", err, sizeof(err)), 0);
    assert_true(u.has_user);
    assert_true(u.has_pass);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.pass, "s3cret");
    /* Percent-escapes, and '@' and ':' inside the password (the last '@' ends user info). */
    assert_int_equal(url_parse(&u, "socks5h://a%40b:p%3A@ss@127.0.0.1", err, sizeof(err)), 0);
    assert_string_equal(u.user, "a@b");
    assert_string_equal(u.pass, "p:@ss");
    assert_int_equal(url_parse(&u, "socks5://bob@127.0.0.1", err, sizeof(err)), 0);
    assert_true(u.has_user);
    assert_false(u.has_pass);
    assert_int_equal(url_parse(&u, "socks5://bob:@127.0.0.1", err, sizeof(err)), 0);
    assert_true(u.has_pass);
    assert_string_equal(u.pass, "");
    assert_int_equal(url_parse(&u, "socks4://user@127.0.0.1", err, sizeof(err)), 0);
    assert_string_equal(u.user, "user");
}

static void
test_errors(void **state)
{
    static const char *const bad[] = {
        "127.0.0.1:1080",           /* no scheme */
        "https://127.0.0.1:1080",   /* TLS to the proxy: not spoken */
        "socks6://127.0.0.1",       /* unknown scheme */
        "socks5://",                /* no host */
        "socks5://127.0.0.1:0",     /* port 0 */
        "socks5://127.0.0.1:65536", /* port too big */
        "socks5://127.0.0.1:12a",   /* port not a number */
        "socks5://127.0.0.1:",      /* empty port */
        "socks5://[::1",            /* missing ']' */
        "socks5://[nope]:1080",     /* bad IPv6 */
        "socks5://::1:1080",        /* IPv6 without brackets */
        "socks5://127.0.0.256",     /* bad IPv4, not a name either */
        "socks5://bad host",        /* space in a name */
        "socks5://127.0.0.1/path",  /* a path */
        "socks5://127.0.0.1?x=1",   /* a query */
        "socks5://:pw@127.0.0.1",   /* empty user */
        "socks5://a%4@127.0.0.1",   /* truncated escape */
        "socks5://a%zz@127.0.0.1",  /* bad escape */
        "socks5://a%00@127.0.0.1",  /* NUL */
        "socks4://u:p@127.0.0.1",   /* SOCKS4 has no password */
    };
    struct url u;
    char err[200];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (url_parse(&u, bad[i], err, sizeof(err)) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err[0] != '\0');
    }
}

static void
test_long_user(void **state)
{
    char s[600], err[200];
    struct url u;

    (void)state;
    strcpy(s, "socks5://");
    memset(s + 9, 'a', 255);
    strcpy(s + 9 + 255, ":p@127.0.0.1");
    assert_int_equal(url_parse(&u, s, err, sizeof(err)), 0);
    assert_int_equal(strlen(u.user), 255);
    memset(s + 9, 'a', 256);
    strcpy(s + 9 + 256, ":p@127.0.0.1");
    assert_int_equal(url_parse(&u, s, err, sizeof(err)), -EINVAL);
}

static void
test_hostport(void **state)
{
    char host[URL_FIELD_MAX + 1], err[200];
    enum url_host t;
    uint16_t port;

    (void)state;
    assert_int_equal(url_parse_hostport("127.0.0.2:80", host, &t, &port, err, sizeof(err)), 0);
    assert_string_equal(host, "127.0.0.2");
    assert_int_equal(port, 80);
    assert_int_equal(url_parse_hostport("[::1]:7", host, &t, &port, err, sizeof(err)), 0);
    assert_int_equal(t, URL_HOST_IPV6);
    assert_int_equal(url_parse_hostport("localhost:7", host, &t, &port, err, sizeof(err)), 0);
    assert_int_equal(t, URL_HOST_NAME);
    assert_int_equal(url_parse_hostport("127.0.0.1", host, &t, &port, err, sizeof(err)), -EINVAL);
    assert_int_equal(url_parse_hostport("[::1]", host, &t, &port, err, sizeof(err)), -EINVAL);
}

static void
test_sockaddr_and_loopback(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;

    (void)state;
    assert_int_equal(url_to_sockaddr("localhost", URL_HOST_NAME, 1080, false, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_true(url_is_loopback((struct sockaddr *)&ss));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 1080);
    assert_int_equal(url_to_sockaddr("localhost", URL_HOST_NAME, 1, true, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_true(url_is_loopback((struct sockaddr *)&ss));
    /* No other name is ever resolved. */
    assert_int_equal(url_to_sockaddr("example.com", URL_HOST_NAME, 1, false, &ss, &len),
                     -EADDRNOTAVAIL);
    assert_int_equal(url_to_sockaddr("127.255.0.9", URL_HOST_IPV4, 1, false, &ss, &len), 0);
    assert_true(url_is_loopback((struct sockaddr *)&ss));
    assert_int_equal(url_to_sockaddr("128.0.0.1", URL_HOST_IPV4, 1, false, &ss, &len), 0);
    assert_false(url_is_loopback((struct sockaddr *)&ss));
    assert_int_equal(url_to_sockaddr("10.0.0.1", URL_HOST_IPV4, 1, false, &ss, &len), 0);
    assert_false(url_is_loopback((struct sockaddr *)&ss));
    assert_int_equal(url_to_sockaddr("::ffff:127.0.0.1", URL_HOST_IPV6, 1, false, &ss, &len), 0);
    assert_true(url_is_loopback((struct sockaddr *)&ss));
    assert_int_equal(url_to_sockaddr("::2", URL_HOST_IPV6, 1, false, &ss, &len), 0);
    assert_false(url_is_loopback((struct sockaddr *)&ss));
    assert_int_equal(url_to_sockaddr("::", URL_HOST_IPV6, 1, false, &ss, &len), 0);
    assert_false(url_is_loopback((struct sockaddr *)&ss));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schemes),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_userinfo),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_long_user),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_sockaddr_and_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
