/*
 * test_usersedit.c - ringsocksctl's users file editor: add, passwd, del and
 * set change one line and keep every other byte (comments, blank lines,
 * order, other users' attributes, CRLF, a missing last newline); names
 * taken, unknown or invalid, and bad attributes are refused.
 *
 * Links tools/ringsocksctl/usersedit.o alone.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "usersedit.h"

static const char FILE_TEXT[] = "# ringsocks users\n"
                                "\n"
                                "bob:$y$j9T$bob$hash egress=192.0.2.1\n"
                                "  # carol left\n"
                                "alice:$6$alice$hash\tmax_conns=3  rate=5\n"
                                "dave:$y$dave\n";

/* The edit's result as a string (or NULL and *ret on a refusal). */
static char *
apply(const char *in, enum usersedit_op op, const char *name, const char *hash, const char *attrs,
      int *ret, unsigned *line)
{
    char *out = NULL;
    size_t len = 0;
    unsigned l;
    *ret = usersedit_apply(in, strlen(in), op, name, hash, attrs, &out, &len, line ? line : &l);
    if (*ret < 0)
        return NULL;
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, out, len);
    s[len] = '\0';
    free(out);
    return s;
}

static void
test_add(void **state)
{
    (void)state;
    int ret;
    unsigned line;
    char *s = apply(FILE_TEXT, USERSEDIT_ADD, "erin", "$y$new", "", &ret, &line);
    assert_int_equal(ret, 0);
    assert_int_equal(line, 7);
    assert_int_equal(strncmp(s, FILE_TEXT, strlen(FILE_TEXT)), 0);
    assert_string_equal(s + strlen(FILE_TEXT), "erin:$y$new\n");
    free(s);
    /* With attributes; to a file whose last line has no newline; to an empty file. */
    s = apply("bob:$y$b", USERSEDIT_ADD, "erin", "$y$new", " max_conns=2   rate=1 ", &ret, &line);
    assert_string_equal(s, "bob:$y$b\nerin:$y$new max_conns=2 rate=1\n");
    assert_int_equal(line, 2);
    free(s);
    s = apply("", USERSEDIT_ADD, "erin", "$y$new", NULL, &ret, &line);
    assert_string_equal(s, "erin:$y$new\n");
    assert_int_equal(line, 1);
    free(s);
    /* A name there already, even indented; a comment naming it does not count. */
    assert_null(apply(FILE_TEXT, USERSEDIT_ADD, "alice", "$y$new", "", &ret, &line));
    assert_int_equal(ret, -EEXIST);
    assert_int_equal(line, 5);
    assert_null(apply("  alice:$y$a\n", USERSEDIT_ADD, "alice", "$y$new", "", &ret, &line));
    assert_int_equal(ret, -EEXIST);
    s = apply("#alice:$y$a\n", USERSEDIT_ADD, "alice", "$y$new", "", &ret, &line);
    assert_string_equal(s, "#alice:$y$a\nalice:$y$new\n");
    free(s);
    /* A name that is a prefix of another's is another name. */
    s = apply(FILE_TEXT, USERSEDIT_ADD, "ali", "$y$new", "", &ret, NULL);
    assert_int_equal(ret, 0);
    free(s);
}

static void
test_passwd(void **state)
{
    (void)state;
    int ret;
    unsigned line;
    char *s = apply(FILE_TEXT, USERSEDIT_PASSWD, "alice", "$y$NEW", NULL, &ret, &line);
    assert_int_equal(ret, 0);
    assert_int_equal(line, 5);
    assert_string_equal(s, "# ringsocks users\n"
                           "\n"
                           "bob:$y$j9T$bob$hash egress=192.0.2.1\n"
                           "  # carol left\n"
                           "alice:$y$NEW\tmax_conns=3  rate=5\n"
                           "dave:$y$dave\n");
    free(s);
    /* CRLF kept; the last line without a newline; indentation kept. */
    s = apply("a:$1\r\n  dave:$y$dave\r\nz:$2", USERSEDIT_PASSWD, "dave", "$y$N", NULL, &ret, NULL);
    assert_string_equal(s, "a:$1\r\n  dave:$y$N\r\nz:$2");
    free(s);
    s = apply("a:$1\nz:$2", USERSEDIT_PASSWD, "z", "$y$N", NULL, &ret, NULL);
    assert_string_equal(s, "a:$1\nz:$y$N");
    free(s);
    assert_null(apply(FILE_TEXT, USERSEDIT_PASSWD, "carol", "$y$N", NULL, &ret, NULL));
    assert_int_equal(ret, -ENOENT);
    /* Never an empty hash, nor one that would split the line. */
    assert_null(apply(FILE_TEXT, USERSEDIT_PASSWD, "alice", "", NULL, &ret, NULL));
    assert_int_equal(ret, -EINVAL);
    assert_null(apply(FILE_TEXT, USERSEDIT_PASSWD, "alice", "$y$a b", NULL, &ret, NULL));
    assert_int_equal(ret, -EINVAL);
}

static void
test_del(void **state)
{
    (void)state;
    int ret;
    unsigned line;
    char *s = apply(FILE_TEXT, USERSEDIT_DEL, "bob", NULL, NULL, &ret, &line);
    assert_int_equal(ret, 0);
    assert_int_equal(line, 3);
    assert_string_equal(s, "# ringsocks users\n"
                           "\n"
                           "  # carol left\n"
                           "alice:$6$alice$hash\tmax_conns=3  rate=5\n"
                           "dave:$y$dave\n");
    free(s);
    s = apply("a:$1\nz:$2", USERSEDIT_DEL, "z", NULL, NULL, &ret, NULL);
    assert_string_equal(s, "a:$1\n");
    free(s);
    s = apply("a:$1\r\nz:$2\r\n", USERSEDIT_DEL, "a", NULL, NULL, &ret, NULL);
    assert_string_equal(s, "z:$2\r\n");
    free(s);
    assert_null(apply(FILE_TEXT, USERSEDIT_DEL, "carol", NULL, NULL, &ret, NULL));
    assert_int_equal(ret, -ENOENT);
}

static void
test_set(void **state)
{
    (void)state;
    int ret;
    char *s = apply(FILE_TEXT, USERSEDIT_SET, "alice", NULL, "rate=9 quota=1G/day", &ret, NULL);
    assert_int_equal(ret, 0);
    assert_string_equal(s, "# ringsocks users\n"
                           "\n"
                           "bob:$y$j9T$bob$hash egress=192.0.2.1\n"
                           "  # carol left\n"
                           "alice:$6$alice$hash max_conns=3 rate=9 quota=1G/day\n"
                           "dave:$y$dave\n");
    free(s);
    s = apply("dave:$y$d\r\n", USERSEDIT_SET, "dave", NULL, "max_conns=1", &ret, NULL);
    assert_string_equal(s, "dave:$y$d max_conns=1\r\n");
    free(s);
    assert_null(apply(FILE_TEXT, USERSEDIT_SET, "carol", NULL, "rate=1", &ret, NULL));
    assert_int_equal(ret, -ENOENT);
}

static void
test_names(void **state)
{
    (void)state;
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name));
    long_name[256] = '\0';
    assert_null(usersedit_name_problem("alice"));
    assert_null(usersedit_name_problem("al.ice-42@example"));
    long_name[255] = '\0';
    assert_null(usersedit_name_problem(long_name));
    long_name[255] = 'a';
    assert_non_null(usersedit_name_problem(long_name));
    const char *bad[] = {"", "a:b", "a b", "a\tb", "a\nb", "a\x7f", "#a", "a\rb"};
    int ret;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_non_null(usersedit_name_problem(bad[i]));
        assert_null(apply(FILE_TEXT, USERSEDIT_ADD, bad[i], "$y$x", NULL, &ret, NULL));
        assert_int_equal(ret, -EINVAL);
    }
    assert_null(usersedit_attr_problem("max_conns=3"));
    assert_non_null(usersedit_attr_problem("max_conns"));
    assert_non_null(usersedit_attr_problem("max_conns="));
    assert_non_null(usersedit_attr_problem("=3"));
    assert_non_null(usersedit_attr_problem("Max=3"));
    assert_non_null(usersedit_attr_problem("a=b\x01"));
    assert_null(apply(FILE_TEXT, USERSEDIT_ADD, "erin", "$y$x", "rate=1 oops", &ret, NULL));
    assert_int_equal(ret, -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add), cmocka_unit_test(test_passwd), cmocka_unit_test(test_del),
        cmocka_unit_test(test_set), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
