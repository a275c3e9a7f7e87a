/*
 * test_json.c - src/json.c: json_escape() quotes, escapes '"' and '\',
 * writes control bytes, DEL and bytes >= 0x80 as \u00XX, returns the length
 * it needs, and never writes past cap (a cut text is NUL-ended).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

#include "json.h"

static void
expect_escape(const char *in, size_t n, const char *want)
{
    char out[256];
    size_t len = json_escape(in, n, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}

static void
test_plain_and_escapes(void **state)
{
    (void)state;
    expect_escape("", 0, "\"\"");
    expect_escape("alice", 5, "\"alice\"");
    expect_escape("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_escape("x\n\x01\x7f\xff\xc3\xa9", 7, "\"x\\u000a\\u0001\\u007f\\u00ff\\u00c3\\u00a9\"");
    /* A NUL inside the length is a byte like any other. */
    expect_escape("a\0b", 3, "\"a\\u0000b\"");
    /* '/', '<' and friends pass as they are: JSON does not need them escaped. */
    expect_escape("a/b<c>&'", 8, "\"a/b<c>&'\"");
}

static void
test_bounded(void **state)
{
    (void)state;
    char out[8];
    memset(out, 'Z', sizeof(out));
    /* "\"abc\\u0001\"" needs 11: 7 bytes and the NUL fit. */
    size_t len = json_escape("abc\x01", 4, out, sizeof(out));
    assert_int_equal(len, 11);
    assert_int_equal(out[7], '\0');
    assert_memory_equal(out, "\"abc\\u0", 7);
    /* Exactly enough room. */
    char fit[12];
    assert_int_equal(json_escape("abc\x01", 4, fit, sizeof(fit)), 11);
    assert_string_equal(fit, "\"abc\\u0001\"");
    /* cap 0 writes nothing and still says what it needs. */
    char none = 'Z';
    assert_int_equal(json_escape("ab", 2, &none, 0), 4);
    assert_int_equal(none, 'Z');
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_escapes),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
