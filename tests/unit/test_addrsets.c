/*
 * test_addrsets.c - named address sets: the built-in tables (each network
 * valid, no IPv4-mapped /96, all of them in docs/config.md), what they match
 * through the real rule matcher, user sets naming each other, and every
 * problem reported once at the member it is about (run from the repository
 * root).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acl.h"
#include "addrsets.h"

/* ---- helpers */

struct nets {
    struct acl_cidr v[128];
    size_t n;
};

static int
push(void *arg, const struct acl_cidr *net)
{
    struct nets *l = arg;
    if (l->n == sizeof(l->v) / sizeof(l->v[0]))
        return -E2BIG;
    l->v[l->n++] = *net;
    return 0;
}

/* Does entry ("@set" or a network) hold the address addr (IPv4-mapped ones included)? */
static bool
holds(const struct addrsets *s, const char *entry, const char *addr)
{
    struct nets l = {.n = 0};
    assert_int_equal(addrsets_expand(s, entry, push, &l), 0);
    assert_true(l.n > 0);
    struct acl *acl = acl_new();
    assert_non_null(acl);
    assert_true(acl_add(acl, ACL_DENY, NULL, 0, l.v, l.n, NULL, 0, NULL, 0, 0, NULL, 0) >= 0);
    union sockaddr_inx client = {0}, dest = {0};
    client.v4.sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &dest.v4.sin_addr) == 1) {
        dest.v4.sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, addr, &dest.v6.sin6_addr), 1);
        dest.v6.sin6_family = AF_INET6;
    }
    struct acl_query q = {.client = &client, .cmd = ACL_CMD_CONNECT, .dest = &dest, .port = 80};
    int rule = -2;
    acl_match(acl, &q, &rule);
    acl_free(acl);
    return rule == 0;
}

/* Problems as "KIND set member tag [path]" lines, in the order reported. */
struct reports {
    char text[2048];
    size_t used;
};

static void
report(void *arg, enum addrsets_problem p, const char *set, const char *member, const void *tag,
       const char *path)
{
    static const char *const kinds[] = {"bad", "unknown", "cycle", "empty"};
    struct reports *r = arg;
    int n = snprintf(r->text + r->used, sizeof(r->text) - r->used, "%s %s %s %u%s%s\n", kinds[p],
                     set, member ? member : "-", (unsigned)(uintptr_t)tag, path ? " " : "",
                     path ? path : "");
    assert_true(n > 0 && (size_t)n < sizeof(r->text) - r->used);
    r->used += (size_t)n;
}

/* Tags are line numbers here, as config.c's are the members' settings. */
#define TAG(n) ((const void *)(uintptr_t)(n))

static void
define(struct addrsets *s, const char *name, unsigned line, const char *const *members,
       const unsigned *lines, size_t n)
{
    const void *tags[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++)
        tags[i] = TAG(lines[i]);
    assert_int_equal(addrsets_define(s, name, TAG(line), members, tags, n), 0);
}

/* ---- the built-in sets */

static void
test_builtin_tables(void **state)
{
    (void)state;
    static const char *const names[] = {"special", "private", "loopback", "metadata"};
    assert_int_equal(addrsets_n_builtins, 4);
    for (size_t i = 0; i < 4; i++) {
        const struct addrsets_builtin *b = addrsets_builtin(names[i]);
        assert_non_null(b);
        assert_ptr_equal(b, &addrsets_builtins[i]);
        assert_true(b->n > 0);
        for (size_t k = 0; k < b->n; k++) {
            struct acl_cidr c;
            if (acl_cidr_parse(b->nets[k].cidr, &c) != 0)
                fail_msg("@%s: '%s' does not parse", b->name, b->nets[k].cidr);
            /* A mapped /96 would be stored as 0.0.0.0/0 and hold every IPv4 address. */
            assert_null(strstr(b->nets[k].cidr, "ffff:"));
            assert_false(c.family == AF_INET && c.prefix == 0);
            assert_non_null(b->nets[k].what);
        }
    }
    assert_null(addrsets_builtin("Special"));
    assert_null(addrsets_builtin("@special"));
    assert_null(addrsets_builtin(""));
    assert_null(addrsets_builtin(NULL));
    assert_true(addrsets_known(NULL, "metadata"));
    assert_false(addrsets_known(NULL, "office"));
}

static void
test_builtin_matching(void **state)
{
    (void)state;
    /* @private */
    assert_true(holds(NULL, "@private", "10.1.2.3"));
    assert_true(holds(NULL, "@private", "172.31.255.255"));
    assert_true(holds(NULL, "@private", "192.168.0.1"));
    assert_true(holds(NULL, "@private", "100.64.0.1"));
    assert_true(holds(NULL, "@private", "fd12:3456::1"));
    assert_true(holds(NULL, "@private", "::ffff:10.1.2.3"));
    assert_false(holds(NULL, "@private", "8.8.8.8"));
    assert_false(holds(NULL, "@private", "172.32.0.1"));
    assert_false(holds(NULL, "@private", "127.0.0.1"));
    assert_false(holds(NULL, "@private", "2001:4860::1"));
    /* @loopback: both families, and a mapped address as its IPv4 */
    assert_true(holds(NULL, "@loopback", "127.0.0.1"));
    assert_true(holds(NULL, "@loopback", "127.255.0.9"));
    assert_true(holds(NULL, "@loopback", "::1"));
    assert_true(holds(NULL, "@loopback", "::ffff:127.0.0.1"));
    assert_false(holds(NULL, "@loopback", "::2"));
    assert_false(holds(NULL, "@loopback", "::ffff:8.8.8.8"));
    assert_false(holds(NULL, "@loopback", "128.0.0.1"));
    /* @metadata */
    assert_true(holds(NULL, "@metadata", "169.254.169.254"));
    assert_true(holds(NULL, "@metadata", "::ffff:169.254.169.254"));
    assert_true(holds(NULL, "@metadata", "fd00:ec2::254"));
    assert_true(holds(NULL, "@metadata", "100.100.100.200"));
    assert_true(holds(NULL, "@metadata", "168.63.129.16"));
    assert_false(holds(NULL, "@metadata", "169.254.1.1"));
    /* @special: what conf/egress.conf listed by hand, and the rest of the registries */
    static const char *const special[] = {
        "0.0.0.0",       "10.1.2.3",        "100.64.0.1",
        "127.0.0.1",     "169.254.169.254", "172.16.0.1",
        "192.0.0.1",     "192.0.2.1",       "192.88.99.1",
        "192.168.1.1",   "198.19.0.1",      "198.51.100.1",
        "203.0.113.1",   "224.0.0.1",       "239.255.255.250",
        "240.0.0.1",     "255.255.255.255", "::",
        "::1",           "64:ff9b:1::1",    "100::1",
        "2001::1",       "2001:db8::1",     "2002:a00:1::1",
        "3fff::1",       "5f00::1",         "fc00::1",
        "fd00:ec2::254", "fe80::1",         "fec0::1",
        "ff02::1",       "::ffff:10.0.0.1", "::ffff:127.0.0.1",
    };
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
        if (!holds(NULL, "@special", special[i]))
            fail_msg("@special does not hold %s", special[i]);
    static const char *const public[] = {
        "8.8.8.8",         "1.1.1.1",         "93.184.216.34",    "172.32.0.1",     "100.128.0.1",
        "2001:4860::8888", "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8", "168.63.129.16",
    };
    for (size_t i = 0; i < sizeof(public) / sizeof(public[0]); i++)
        if (holds(NULL, "@special", public[i]))
            fail_msg("@special holds %s", public[i]);
}

/* Every built-in network is in docs/config.md, on its set's table row. */
static void
test_builtin_documented(void **state)
{
    (void)state;
    FILE *f = fopen("docs/config.md", "r");
    assert_non_null(f);
    static char md[1 << 20];
    size_t len = fread(md, 1, sizeof(md) - 1, f);
    fclose(f);
    md[len] = '\0';
    for (size_t i = 0; i < addrsets_n_builtins; i++) {
        const struct addrsets_builtin *b = &addrsets_builtins[i];
        char want[128];
        snprintf(want, sizeof(want), "\n| `@%s` |", b->name);
        const char *row = strstr(md, want);
        if (!row)
            fail_msg("docs/config.md: no table row for @%s", b->name);
        const char *eol = strchr(row + 1, '\n');
        for (size_t k = 0; k < b->n; k++) {
            snprintf(want, sizeof(want), "`%s`", b->nets[k].cidr);
            const char *at = strstr(row, want);
            if (!at || (eol && at > eol))
                fail_msg("docs/config.md: the row of @%s lacks %s", b->name, want);
        }
    }
}

/* ---- user sets */

static void
test_user_sets(void **state)
{
    (void)state;
    struct addrsets *s = addrsets_new();
    assert_non_null(s);
    static const char *const office[] = {"198.51.100.0/24", "2001:db8:5::/48", "@lab"};
    static const char *const lab[] = {"203.0.113.0/25", "@loopback"};
    static const unsigned lines[] = {2, 3, 4};
    define(s, "office", 1, office, lines, 3);
    define(s, "lab", 5, lab, lines, 2);
    struct reports r = {.used = 0};
    assert_int_equal(addrsets_check(s, report, &r), 0);
    assert_int_equal(r.used, 0);

    struct nets l = {.n = 0};
    assert_int_equal(addrsets_expand(s, "@office", push, &l), 0);
    assert_int_equal(l.n, 5); /* two of its own, one of lab's, two of @loopback's */
    assert_true(holds(s, "@office", "198.51.100.7"));
    assert_true(holds(s, "@office", "2001:db8:5:1::9"));
    assert_true(holds(s, "@office", "203.0.113.1"));
    assert_true(holds(s, "@office", "::1"));
    assert_false(holds(s, "@office", "203.0.113.200"));
    assert_false(holds(s, "@lab", "198.51.100.7"));
    /* A plain network is expanded to itself; a set name is case-sensitive. */
    l.n = 0;
    assert_int_equal(addrsets_expand(s, "192.0.2.0/24", push, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(addrsets_expand(s, "@Office", push, &l), -ENOENT);
    assert_int_equal(addrsets_expand(s, "@", push, &l), -ENOENT);
    assert_int_equal(addrsets_expand(NULL, "@office", push, &l), -ENOENT);
    assert_int_equal(addrsets_expand(s, "10.0.0.1/8", push, &l), -EINVAL);
    assert_int_equal(addrsets_expand(s, NULL, push, &l), -EINVAL);
    assert_true(addrsets_known(s, "office"));
    assert_false(addrsets_known(s, "Office"));

    /* A name of a built-in set, or one defined already, or not a name. */
    assert_int_equal(addrsets_define(s, "private", NULL, office, NULL, 1), -EEXIST);
    assert_int_equal(addrsets_define(s, "office", NULL, office, NULL, 1), -EEXIST);
    assert_int_equal(addrsets_define(s, "", NULL, office, NULL, 1), -EINVAL);
    assert_int_equal(addrsets_define(s, "1st", NULL, office, NULL, 1), -EINVAL);
    assert_int_equal(addrsets_define(s, "a b", NULL, office, NULL, 1), -EINVAL);
    assert_int_equal(addrsets_define(s, "@x", NULL, office, NULL, 1), -EINVAL);
    char longname[ADDRSETS_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(addrsets_define(s, longname, NULL, office, NULL, 1), -EINVAL);
    longname[ADDRSETS_NAME_MAX] = '\0';
    assert_int_equal(addrsets_define(s, longname, NULL, office, NULL, 1), 0);
    assert_int_equal(addrsets_define(s, "lab-2_b", NULL, office, NULL, 1), 0);
    addrsets_free(s);
    addrsets_free(NULL);
}

/* Each problem once, at the member it is about: a cycle at the member that closes it. */
static void
test_problems(void **state)
{
    (void)state;
    struct addrsets *s = addrsets_new();
    assert_non_null(s);
    static const char *const a[] = {"192.0.2.0/24", "@b"};
    static const char *const b[] = {"@c", "10.0.0.1/8"};
    static const char *const c[] = {"@a", "@nosuch", "@special"};
    static const char *const self[] = {"@self"};
    static const unsigned la[] = {2, 3}, lb[] = {5, 6}, lc[] = {8, 9, 10}, ls[] = {12};
    define(s, "a", 1, a, la, 2);
    define(s, "b", 4, b, lb, 2);
    define(s, "c", 7, c, lc, 3);
    define(s, "self", 11, self, ls, 1);
    define(s, "empty", 13, NULL, NULL, 0);
    struct reports r = {.used = 0};
    assert_int_equal(addrsets_check(s, report, &r), 5);
    assert_string_equal(r.text, "cycle c @a 8 a -> b -> c -> a\n"
                                "unknown c @nosuch 9\n"
                                "bad b 10.0.0.1/8 6\n"
                                "cycle self @self 12 self -> self\n"
                                "empty empty - 13\n");
    /* Expansion stops at a cycle or an unknown name rather than looping. */
    struct nets l = {.n = 0};
    assert_int_equal(addrsets_expand(s, "@self", push, &l), -ELOOP);
    assert_int_equal(addrsets_expand(s, "@a", push, &l), -ELOOP);
    l.n = 0;
    assert_int_equal(addrsets_expand(s, "@empty", push, &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(addrsets_check(NULL, report, &r), 0);
    addrsets_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_tables),     cmocka_unit_test(test_builtin_matching),
        cmocka_unit_test(test_builtin_documented), cmocka_unit_test(test_user_sets),
        cmocka_unit_test(test_problems),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
