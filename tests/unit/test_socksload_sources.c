/*
 * test_socksload_sources.c - tools/socksload/usertpl.c (the --user template: parse, expand,
 * session key) and sources.c (source addresses per session key: the set, its bound and the
 * summary). Built and run by `make socksload-test` (mk/socksload.mk), linked with those two.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "socksload.h"

static void
test_tpl_expand(void **state)
{
    struct usertpl t;
    char err[200], out[URL_FIELD_MAX + 1];

    (void)state;
    assert_int_equal(usertpl_parse(&t, "alice-session-{n}", err, sizeof(err)), 0);
    assert_true(t.has_key);
    assert_int_equal(usertpl_expand(&t, 0, 0, out), 15);
    assert_string_equal(out, "alice-session-0");
    usertpl_expand(&t, 123456, 0, out);
    assert_string_equal(out, "alice-session-123456");
    /* {n} writes n mod 2^32: the key is 32 bits on the wire. */
    usertpl_expand(&t, (1ull << 32) + 5, 0, out);
    assert_string_equal(out, "alice-session-5");
    assert_int_equal(usertpl_key(&t, (1ull << 32) + 5), 5);

    assert_int_equal(usertpl_parse(&t, "alice-session-{n%200}-ttl-60", err, sizeof(err)), 0);
    assert_int_equal(t.mod, 200);
    usertpl_expand(&t, 199, 0, out);
    assert_string_equal(out, "alice-session-199-ttl-60");
    usertpl_expand(&t, 200, 0, out);
    assert_string_equal(out, "alice-session-0-ttl-60");
    usertpl_expand(&t, 1005, 0, out);
    assert_string_equal(out, "alice-session-5-ttl-60");
    assert_int_equal(usertpl_key(&t, 1005), 5);

    /* No number: one name for every tunnel, no session key. */
    assert_int_equal(usertpl_parse(&t, "bob", err, sizeof(err)), 0);
    assert_false(t.has_key);
    usertpl_expand(&t, 77, 0, out);
    assert_string_equal(out, "bob");
    /* Doubled braces are literal, also around a number. */
    assert_int_equal(usertpl_parse(&t, "{{x}}-{n%3}-}}", err, sizeof(err)), 0);
    usertpl_expand(&t, 4, 0, out);
    assert_string_equal(out, "{x}-1-}");
    /* {n%1}: every tunnel the same key 0. */
    assert_int_equal(usertpl_parse(&t, "{n%1}", err, sizeof(err)), 0);
    usertpl_expand(&t, 99, 0, out);
    assert_string_equal(out, "0");
}

/* {worker}: the worker thread's number, anywhere and any number of times; not the session key. */
static void
test_tpl_worker(void **state)
{
    struct usertpl t;
    char err[200], out[URL_FIELD_MAX + 1], big[300];

    (void)state;
    assert_int_equal(usertpl_parse(&t, "w{worker}-s{n%10}", err, sizeof(err)), 0);
    assert_true(t.has_key);
    usertpl_expand(&t, 23, 7, out);
    assert_string_equal(out, "w7-s3");
    assert_int_equal(usertpl_key(&t, 23), 3);
    usertpl_expand(&t, 23, 255, out);
    assert_string_equal(out, "w255-s3");

    assert_int_equal(usertpl_parse(&t, "{worker}{worker}x{{worker}}", err, sizeof(err)), 0);
    assert_false(t.has_key);
    usertpl_expand(&t, 5, 12, out);
    assert_string_equal(out, "1212x{worker}");
    assert_int_equal(usertpl_parse(&t, "{worker}", err, sizeof(err)), 0);
    usertpl_expand(&t, 0, 0, out);
    assert_string_equal(out, "0");

    /* A worker number may need 3 digits: 252 + 3 = 255 fits, 253 + 3 does not. */
    memset(big, 'a', sizeof(big));
    memcpy(big + 252, "{worker}", 9);
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), 0);
    memset(big, 'a', 253);
    memcpy(big + 253, "{worker}", 9);
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), -EINVAL);
    /* More parts than USERTPL_PARTS. */
    big[0] = '\0';
    for (int i = 0; i < 33; i++)
        strcat(big, "{worker}-");
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), -EINVAL);
}

static void
test_tpl_errors(void **state)
{
    struct usertpl t;
    char err[200], big[300];
    static const char *const bad[] = {
        "",
        "{",
        "}",
        "a{m}",
        "a{n",
        "{n%}",
        "{n%0}",
        "{n%07}",
        "{n%-3}",
        "{n%3x}",
        "{n}{n}",
        "{n%2}-{n}",
        "x{n%4294967296}",
        "{ n}",
        "a}b",
        "{worker",
        "{Worker}",
        "{workers}",
        "{n}{worker}{n%3}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(usertpl_parse(&t, bad[i], err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(usertpl_parse(&t, "x{n%4294967295}", err, sizeof(err)), 0);

    /* The longest expansion must fit 255 bytes: {n} may need 10 digits, {n%K} those of K-1. */
    memset(big, 'a', sizeof(big));
    big[255] = '\0';
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), 0);
    big[255] = 'a';
    big[256] = '\0';
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), -EINVAL);
    memcpy(big + 245, "{n}", 4); /* 245 + 10 digits = 255 */
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), 0);
    memset(big, 'a', 246);
    memcpy(big + 246, "{n}", 4); /* 246 + 10 = 256 */
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), -EINVAL);
    memset(big, 'a', 252);
    memcpy(big + 252, "{n%1000}", 9); /* 252 + 3 digits (999) = 255 */
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), 0);
    memcpy(big + 252, "{n%1001}", 9); /* 1000: 4 digits */
    assert_int_equal(usertpl_parse(&t, big, err, sizeof(err)), -EINVAL);
}

static struct sockaddr_storage
sa(const char *s)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(s, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, s, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, s, &a->sin_addr), 1);
    }
    return ss;
}

static int
add(struct sources *s, const char *addr, bool has_key, uint32_t key)
{
    struct sockaddr_storage ss = sa(addr);

    return sources_add(s, (struct sockaddr *)&ss, has_key, key);
}

static void
test_sources_count(void **state)
{
    struct sources s = {0};
    struct sources_summary m;

    (void)state;
    assert_int_equal(sources_summarize(&s, &m), 0);
    assert_int_equal(m.addresses, 0);
    assert_int_equal(m.sessions, 0);
    /* 200 sessions x 5 tunnels, each session always from its own address: sticky. */
    for (unsigned n = 0; n < 1000; n++) {
        char a[64];
        snprintf(a, sizeof(a), "2001:db8:1::%x", n % 200);
        assert_int_equal(add(&s, a, true, n % 200), n < 200 ? 1 : 0);
    }
    assert_int_equal(sources_summarize(&s, &m), 0);
    assert_int_equal(m.seen, 1000);
    assert_int_equal(m.pairs, 200);
    assert_int_equal(m.addresses, 200);
    assert_int_equal(m.sessions, 200);
    assert_int_equal(m.sessions_one, 200);
    assert_int_equal(m.max_per_session, 1);
    assert_int_equal(m.dropped, 0);
    /* Session 7 seen from two more addresses (one of them another session's). */
    assert_int_equal(add(&s, "2001:db8:1::ffff", true, 7), 1);
    assert_int_equal(add(&s, "2001:db8:1::8", true, 7), 1);
    assert_int_equal(add(&s, "2001:db8:1::8", true, 7), 0);
    assert_int_equal(sources_summarize(&s, &m), 0);
    assert_int_equal(m.addresses, 201);
    assert_int_equal(m.sessions, 200);
    assert_int_equal(m.sessions_one, 199);
    assert_int_equal(m.max_per_session, 3);
    /* Without a key (datagrams, no template): an address, never a session. IPv4 and its
     * mapped IPv6 form are one address. */
    assert_int_equal(add(&s, "192.0.2.1", false, 0), 1);
    assert_int_equal(add(&s, "::ffff:192.0.2.1", false, 0), 0);
    assert_int_equal(add(&s, "192.0.2.1", false, 99), 0); /* the key is ignored */
    assert_int_equal(add(&s, "2001:db8:1::8", false, 0), 1);
    assert_int_equal(sources_summarize(&s, &m), 0);
    assert_int_equal(m.addresses, 202);
    assert_int_equal(m.sessions, 200);
    assert_int_equal(m.pairs, 204);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(sources_add(&s, &un, false, 0), -EAFNOSUPPORT);
    sources_free(&s);
}

/* Random addresses of a /64, no session: every one distinct; and the bound holds. */
static void
test_sources_bound(void **state)
{
    struct sources s = {0};
    struct sources_summary m;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    uint64_t x = 88172645463325252ull;

    (void)state;
    inet_pton(AF_INET6, "2001:db8:1::", &a.sin6_addr);
    for (unsigned i = 0; i < SOURCES_MAX + 1000; i++) {
        x ^= x << 13; /* xorshift64: distinct for this many steps */
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(a.sin6_addr.s6_addr + 8, &x, 8);
        int rc = sources_add(&s, (struct sockaddr *)&a, false, 0);
        assert_int_equal(rc, i < SOURCES_MAX ? 1 : -ENOSPC);
    }
    assert_true(s.cap <= 2 * (size_t)SOURCES_MAX);
    assert_int_equal(sources_summarize(&s, &m), 0);
    assert_int_equal(m.addresses, SOURCES_MAX);
    assert_int_equal(m.dropped, 1000);
    assert_int_equal(m.seen, SOURCES_MAX + 1000);
    assert_int_equal(m.sessions, 0);
    /* A known pair is still found when the table is full. */
    assert_int_equal(sources_add(&s, (struct sockaddr *)&a, false, 0), -ENOSPC);
    sources_free(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tpl_expand),    cmocka_unit_test(test_tpl_worker),
        cmocka_unit_test(test_tpl_errors),    cmocka_unit_test(test_sources_count),
        cmocka_unit_test(test_sources_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
