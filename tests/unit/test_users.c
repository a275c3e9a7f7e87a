/*
 * test_users.c - src/users.c: the users file, and the dummy hash unknown
 * names are checked against (the kind most entries have, never a match).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <crypt.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress.h"
#include "users.h"
#include "users_file.h"

static int
crypt_matches(const char *pw, const char *hash)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    assert_non_null(cd);
    const char *h = crypt_rn(pw, hash, cd, sizeof(*cd));
    int r = h && strcmp(h, hash) == 0;
    free(cd);
    return r;
}

static int
setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void
test_hash_class(void **state)
{
    (void)state;
    static const struct {
        const char *hash, *class;
    } cases[] = {
        {"$y$j9T$PaLjcJ1X9WQ3nXY1l1j4O.$0123456789abcdefABCDEFGHIJKLMNOPQRSTUVWXYZa", "$y$j9T"},
        {"$gy$j9T$salt$hash", "$gy$j9T"},
        {"$2b$12$abcdefghijklmnopqrstuu0123456789012345678901234567890", "$2b$12"},
        {"$2y$05$abcdefghijklmnopqrstuu0123456789012345678901234567890", "$2y$05"},
        {"$6$saltsalt$hash", "$6"},
        {"$6$rounds=50000$saltsalt$hash", "$6$rounds=50000"},
        {"$5$rounds=1000$s$h", "$5$rounds=1000"},
        {"$1$salt$hash", "$1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = users_hash_class_len(cases[i].hash);
        if (n != strlen(cases[i].class) || strncmp(cases[i].hash, cases[i].class, n) != 0)
            fail_msg("class of %s: '%.*s', expected '%s'", cases[i].hash, (int)n, cases[i].hash,
                     cases[i].class);
    }
}

/* The dummy is of the commonest kind: most entries sha512-crypt at 2,000 rounds here. */
static void
test_dummy_of_the_commonest_kind(void **state)
{
    (void)state;
    char *a = hash_of("a-pw", "$6$", 2000), *b = hash_of("b-pw", "$6$", 2000);
    char *c = hash_of("c-pw", "$6$", 2000), *d = hash_of("d-pw", "$2b$", 4);
    char *e = hash_of("e-pw", "$6$", 1000);
    char text[4096];
    snprintf(text, sizeof(text), "# users\nd:%s\na:%s\ne:%s\nb:%s\nc:%s\n", d, a, e, b, c);
    struct users *u = users_from(text);
    const char *dummy = users_dummy(u);
    assert_non_null(dummy);
    assert_int_equal(strncmp(dummy, "$6$rounds=2000$", 15), 0);
    /* Not any user's hash, and none of their passwords matches it. */
    const char *pws[] = {"a-pw", "b-pw", "c-pw", "d-pw", "e-pw", ""};
    const char *hs[] = {a, b, c, d, e};
    for (size_t i = 0; i < 5; i++)
        assert_string_not_equal(dummy, hs[i]);
    for (size_t i = 0; i < 6; i++)
        assert_false(crypt_matches(pws[i], dummy));
    users_free(u);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}

/* Two loads of the same file: two different dummies (a random password each time). */
static void
test_dummy_differs_per_load(void **state)
{
    (void)state;
    char *a = hash_of("a-pw", "$2b$", 4);
    char text[512];
    snprintf(text, sizeof(text), "a:%s\n", a);
    struct users *u1 = users_from(text), *u2 = users_from(text);
    assert_non_null(users_dummy(u1));
    assert_non_null(users_dummy(u2));
    assert_int_equal(strncmp(users_dummy(u1), "$2b$04$", 7), 0);
    assert_string_not_equal(users_dummy(u1), users_dummy(u2));
    users_free(u1);
    users_free(u2);
    free(a);
}

/* No users, or none whose hash crypt(3) can use: no dummy (unknown names fail at once). */
static void
test_no_dummy_without_usable_hash(void **state)
{
    (void)state;
    struct users *u = users_from("# nobody\n");
    assert_int_equal(users_count(u), 0);
    assert_null(users_dummy(u));
    users_free(u);
    u = users_from("x:$y$$$x\n");
    assert_int_equal(users_count(u), 1);
    assert_null(users_dummy(u));
    users_free(u);
}

/* users_load_flags() of text: the table, or NULL with the error (path replaced by "@"). */
static struct users *
load_flags(const char *text, unsigned flags, char *err, size_t cap)
{
    char path[] = "/tmp/ringsocks-test-users.XXXXXX", raw[400];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct users *u = users_load_flags(path, flags, raw, sizeof(raw));
    unlink(path);
    const char *rest = strncmp(raw, path, strlen(path)) == 0 ? raw + strlen(path) : raw;
    snprintf(err, cap, "@%s", u ? "" : rest);
    return u;
}

/* Attributes after the hash: egress pools, shared by text; every bad line named. */
static void
test_attributes(void **state)
{
    (void)state;
    char err[512];
    struct users *u = load_flags("alice:$6$s$h  egress=2001:db8:1::/64,203.0.113.7 # comment\n"
                                 "bob:$6$s$h\tegress=2001:db8:1::/64,203.0.113.7\n"
                                 "carol:$6$s$h\n",
                                 0, err, sizeof(err));
    assert_non_null(u);
    const struct egress_pool *a = users_egress(u, "alice"), *b = users_egress(u, "bob");
    assert_non_null(a);
    assert_ptr_equal(a, b); /* one parsed copy for one text */
    assert_true(egress_pool_has(a, AF_INET) && egress_pool_has(a, AF_INET6));
    assert_null(users_egress(u, "carol"));
    assert_null(users_egress(u, "dave"));
    assert_string_equal(users_hash(u, "alice"), "$6$s$h");
    users_free(u);

    static const struct {
        const char *text, *err;
        unsigned flags;
    } bad[] = {
        {"a:$6$s$h\nb:$6$s$h colour=blue\n",
         "@:2: b: unknown attribute 'colour' (egress, max_conns, rate, burst, bw_up, bw_down, "
         "tunnel_bw_up, tunnel_bw_down, quota, quota_close)",
         0},
        {"a:$6$s$h egress\n", "@:1: a: 'egress' is not key=value", 0},
        {"a:$6$s$h egress=\n", "@:1: a: 'egress=' is not key=value", 0},
        {"a:$6$s$h egress=2001:db8::1/64\n",
         "@:1: a: '2001:db8::1/64' is not an address or a prefix (NETWORK/LENGTH with the host "
         "bits zero)",
         0},
        {"a-session-x:$6$s$h\n",
         "@:1: 'a-session-x' holds \"-session-\", \"-ttl-\" or \"-fault-\", which "
         "username_params reads as parameters: rename the user",
         USERS_F_PARAMS},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(load_flags(bad[i].text, bad[i].flags, err, sizeof(err)));
        assert_string_equal(err, bad[i].err);
    }
    /* The keyword is only a keyword with username_params. */
    u = load_flags("a-session-x:$6$s$h\n", 0, err, sizeof(err));
    assert_non_null(u);
    users_free(u);
}

/* users_load() of text: NULL expected; err with every occurrence of the path as "@". */
static void
load_bad_all(const char *text, const char *want)
{
    char path[] = "/tmp/ringsocks-test-users.XXXXXX", raw[8192], got[8192];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct users *u = users_load(path, raw, sizeof(raw));
    unlink(path);
    assert_null(u);
    size_t n = 0, pl = strlen(path);
    for (const char *p = raw; *p && n + 1 < sizeof(got);) {
        if (strncmp(p, path, pl) == 0) {
            got[n++] = '@';
            p += pl;
        } else {
            got[n++] = *p++;
        }
    }
    got[n] = '\0';
    assert_string_equal(got, want);
}

/*
 * As strict as the config: every bad line at once with FILE:LINE, duplicates with both
 * lines, names with blanks or control bytes, weak and unsupported hashes refused.
 */
static void
test_strict(void **state)
{
    (void)state;
    char *y = hash_of("pw", "$y$", 0), *b = hash_of("pw", "$2b$", 4), *s6 = hash_of("pw", "$6$", 0);
    char *s5 = hash_of("pw", "$5$", 0);
    char text[8192], want[8192];
    snprintf(text, sizeof(text),
             "# every kind of mistake\n"
             "alice:%s\n"                               /* 2 */
             "bob:$1$abcdefgh$0123456789abcdefghijkl\n" /* 3: md5-crypt */
             "carol:$apr1$abcdefgh$0123456789abcdefghijkl\n"
             "dave:abCD01./xyZ98\n" /* 5: DES */
             "eve:$sha1$40000$salt$hash\n"
             "frank:$md5,rounds=5000$salt$$hash\n"
             "grace:$3$$8846f7eaee8fb117ad06bdd830b7586c\n"
             "heidi:\n"              /* 9 */
             "no colon here\n"       /* 10 */
             "ivan smith:%s\n"       /* 11 */
             "judy\x01:%s\n"         /* 12 */
             "alice:%s\n"            /* 13: the second alice */
             "ken:$6$\n"             /* 14: checksalt refuses it */
             "leo:%s\n"              /* 15: good */
             "mallory:$9$whatever\n" /* 16 */
             ":%s\n",                /* 17 */
             y, b, b, s6, s5, y);
    snprintf(
        want, sizeof(want),
        "@:3: 'bob': md5-crypt ($1$) is a weak hash, refused (set one with: ringsocksctl users "
        "passwd NAME)\n"
        "@:4: 'carol': Apache's $apr1$ (htpasswd) is not a crypt(3) hash and is weak: unsupported "
        "(set one with: ringsocksctl users passwd NAME)\n"
        "@:5: 'dave': traditional DES crypt is a weak hash, refused (set one with: ringsocksctl "
        "users passwd NAME)\n"
        "@:6: 'eve': NetBSD SHA-1 ($sha1$) is a weak hash, refused (set one with: ringsocksctl "
        "users passwd NAME)\n"
        "@:7: 'frank': Sun MD5 ($md5) is a weak hash, refused (set one with: ringsocksctl users "
        "passwd NAME)\n"
        "@:8: 'grace': NT hash ($3$) is a weak hash, refused (set one with: ringsocksctl users "
        "passwd NAME)\n"
        "@:9: 'heidi': no password hash (set one with: ringsocksctl users passwd NAME)\n"
        "@:10: expected user:hash\n"
        "@:11: the user name has a blank or control byte (byte 5): not allowed\n"
        "@:12: the user name has a blank or control byte (byte 5): not allowed\n"
        "@:14: 'ken': the $6$ hash is malformed (set one with: ringsocksctl users passwd NAME)\n"
        "@:16: 'mallory': not a crypt(3) hash ringsocks accepts (yescrypt $y$, gost-yescrypt $gy$, "
        "scrypt $7$, bcrypt $2b$, sha512-crypt $6$, sha256-crypt $5$; set one with: ringsocksctl "
        "users passwd NAME)\n"
        "@:17: expected user:hash\n"
        "@:13: user 'alice' appears twice: also at line 2");
    load_bad_all(text, want);

    /* Every kind kept is accepted; so are bcrypt's older prefixes. */
    snprintf(text, sizeof(text), "a:%s\nb:%s\nc:%s\nd:%s\ne:$2a$%s\nf:$2y$%s\n", y, b, s6, s5,
             b + 4, b + 4);
    struct users *u = users_from(text);
    assert_int_equal(users_count(u), 6);
    users_free(u);

    /* Past 20 errors, a count of the rest. */
    size_t n = 0;
    for (int i = 0; i < 25; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "u%d:$1$x$y\n", i);
    char path[] = "/tmp/ringsocks-test-users.XXXXXX", err[8192];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    assert_null(users_load(path, err, sizeof(err)));
    unlink(path);
    unsigned lines = 1;
    for (const char *p = err; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 21);
    assert_non_null(strstr(err, ":20: 'u19'"));
    assert_null(strstr(err, "'u20'"));
    assert_non_null(strstr(err, ": and 5 more errors"));
    free(y);
    free(b);
    free(s6);
    free(s5);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_hash_class, setup),
        cmocka_unit_test_setup(test_dummy_of_the_commonest_kind, setup),
        cmocka_unit_test_setup(test_dummy_differs_per_load, setup),
        cmocka_unit_test_setup(test_no_dummy_without_usable_hash, setup),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test_setup(test_strict, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
