/*
 * test_hosts.c - hosts(5) table loading and lookup, RFC 6761 localhost.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hosts.h"

static char path[64];

static int
setup(void **state)
{
    static const char text[] = "# comment line\n"
                               "127.0.0.1\tlocalhost\n"
                               "10.0.0.1   Alpha.Example   alpha   # trailing comment\n"
                               "2001:db8::7 alpha.example v6only.example\n"
                               "not-an-ip   broken.example\n"
                               "\n"
                               "10.0.0.2 beta.example\r\n"
                               "10.0.0.3 gamma.example. bad..example under_score.example\n"
                               "   \n";
    strcpy(path, "/tmp/test_hosts.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    *state = hosts_load(path);
    assert_non_null(*state);
    return 0;
}

static int
teardown(void **state)
{
    hosts_free(*state);
    unlink(path);
    return 0;
}

static const char *
text(const union sockaddr_inx *a)
{
    static char buf[ADDR_STRLEN];
    return addr_format(&a->sa, buf, sizeof(buf));
}

static void
test_lookup(void **state)
{
    const struct hosts *h = *state;
    union sockaddr_inx out[8];

    assert_int_equal(hosts_lookup(h, "beta.example", 80, out, 8), 1);
    assert_string_equal(text(&out[0]), "10.0.0.2:80");
    /* Case-insensitive, trailing dot ignored, both families kept. */
    unsigned n = hosts_lookup(h, "ALPHA.example.", 443, out, 8);
    assert_int_equal(n, 2);
    int v4 = 0, v6 = 0;
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(text(&out[i]), "10.0.0.1:443") == 0)
            v4++;
        if (strcmp(text(&out[i]), "[2001:db8::7]:443") == 0)
            v6++;
    }
    assert_int_equal(v4, 1);
    assert_int_equal(v6, 1);
    assert_int_equal(hosts_lookup(h, "alpha.example", 1, out, 1), 1);
    assert_int_equal(hosts_lookup(h, "v6only.example", 7, out, 8), 1);
    assert_string_equal(text(&out[0]), "[2001:db8::7]:7");
    /* Table names are kept in the same normal form as lookups: the file's trailing dot goes;
     * a name no request can carry is not kept. */
    assert_int_equal(hosts_lookup(h, "gamma.example", 1, out, 8), 1);
    assert_int_equal(hosts_lookup(h, "under_score.example", 1, out, 8), 1);
    assert_int_equal(hosts_lookup(h, "bad..example", 1, out, 8), 0);
}

static void
test_misses(void **state)
{
    const struct hosts *h = *state;
    union sockaddr_inx out[8];
    assert_int_equal(hosts_lookup(h, "broken.example", 80, out, 8), 0);
    assert_int_equal(hosts_lookup(h, "example", 80, out, 8), 0);
    assert_int_equal(hosts_lookup(h, "lpha.example", 80, out, 8), 0);
    assert_int_equal(hosts_lookup(h, "alpha.example.com", 80, out, 8), 0);
    assert_int_equal(hosts_lookup(h, "", 80, out, 8), 0);
    assert_int_equal(hosts_lookup(h, "beta.example", 80, out, 0), 0);
    assert_int_equal(hosts_lookup(NULL, "beta.example", 80, out, 8), 0);
}

static void
test_localhost(void **state)
{
    union sockaddr_inx out[8];
    (void)state;
    /* RFC 6761: loopback with or without a table, subdomains too. */
    const char *names[] = {"localhost", "LOCALHOST.", "a.localhost", "x.y.localhost."};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(hosts_lookup(NULL, names[i], 8080, out, 8), 2);
        assert_string_equal(text(&out[0]), "127.0.0.1:8080");
        assert_string_equal(text(&out[1]), "[::1]:8080");
    }
    assert_int_equal(hosts_lookup(NULL, "localhost", 1, out, 1), 1);
    assert_int_equal(hosts_lookup(NULL, "notlocalhost", 1, out, 8), 0);
    assert_int_equal(hosts_lookup(NULL, "localhost.example", 1, out, 8), 0);
    /* One normal form (hostname.h): two trailing dots are an empty label, no name at all,
     * where this table used to strip one and the localhost check another (issue #9). */
    const char *bad[] = {"localhost..", "LOCALHOST..", "x.localhost..", ".localhost",
                         "a..localhost"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (hosts_lookup(NULL, bad[i], 1, out, 8) != 0)
            fail_msg("\"%s\" found", bad[i]);
}

static void
test_missing_file(void **state)
{
    (void)state;
    union sockaddr_inx out[2];
    struct hosts *h = hosts_load("/nonexistent/hosts");
    assert_non_null(h);
    assert_int_equal(hosts_lookup(h, "beta.example", 80, out, 2), 0);
    hosts_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_misses),
        cmocka_unit_test(test_localhost),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
