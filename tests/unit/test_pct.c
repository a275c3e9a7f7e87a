/*
 * test_pct.c - src/pct.c: percent-decoding of the admin API's names and
 * query values (%XX either case, '+' a space only in a query), refusal of
 * a broken escape, a decoded NUL and what does not fit; the query's pairs
 * one by one; the path's segments, with a decoded '/' refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "pct.h"

static void
test_decode(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(pct_decode("a%20b%2f%2F+c", 13, false, out, sizeof(out)), 7);
    assert_string_equal(out, "a b//+c");
    assert_int_equal(pct_decode("a+b%2B", 6, true, out, sizeof(out)), 4);
    assert_string_equal(out, "a b+");
    assert_int_equal(pct_decode("%c3%A9", 6, false, out, sizeof(out)), 2);
    assert_string_equal(out, "\xc3\xa9");
    assert_int_equal(pct_decode("", 0, false, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* Broken escapes: short, not hex, at the very end. */
    assert_int_equal(pct_decode("a%2", 3, false, out, sizeof(out)), -EINVAL);
    assert_int_equal(pct_decode("a%", 2, false, out, sizeof(out)), -EINVAL);
    assert_int_equal(pct_decode("%zz", 3, false, out, sizeof(out)), -EINVAL);
    assert_int_equal(pct_decode("%-1", 3, false, out, sizeof(out)), -EINVAL);
    /* The length bounds the input: "%2" then what follows is not read. */
    assert_int_equal(pct_decode("%2041", 2, false, out, sizeof(out)), -EINVAL);
    /* A NUL cannot be in a name. */
    assert_int_equal(pct_decode("a%00b", 5, false, out, sizeof(out)), -EINVAL);
    /* 15 bytes and the NUL fit in 16; 16 do not. */
    assert_int_equal(pct_decode("aaaaaaaaaaaaaaa", 15, false, out, sizeof(out)), 15);
    assert_int_equal(pct_decode("aaaaaaaaaaaaaaaa", 16, false, out, sizeof(out)), -ENOSPC);
    assert_int_equal(pct_decode("", 0, false, out, 0), -ENOSPC);
}

static void
test_query(void **state)
{
    (void)state;
    char k[16], v[16];
    const char *q = "user=al%69ce+x&&client=127.0.0.1&dest=&limit=5";
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 1);
    assert_string_equal(k, "user");
    assert_string_equal(v, "alice x");
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 1);
    assert_string_equal(k, "client");
    assert_string_equal(v, "127.0.0.1");
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 1);
    assert_string_equal(k, "dest");
    assert_string_equal(v, "");
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 1);
    assert_string_equal(k, "limit");
    assert_string_equal(v, "5");
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 0);
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 0);

    q = "";
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 0);
    q = "user";
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), -EINVAL);
    q = "user=%G1";
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), -EINVAL);
    q = "u%3Dx=1"; /* an escaped '=' belongs to the key */
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 1);
    assert_string_equal(k, "u=x");
    q = "a=b=c";
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), 1);
    assert_string_equal(v, "b=c");
    q = "dest=0123456789abcdef";
    assert_int_equal(pct_query_next(&q, k, sizeof(k), v, sizeof(v)), -ENOSPC);
}

static void
test_path(void **state)
{
    (void)state;
    char seg[2][PCT_SEG_MAX];
    assert_int_equal(pct_path_split("/users/al%20ice/block", "/users/", seg, 2), 2);
    assert_string_equal(seg[0], "al ice");
    assert_string_equal(seg[1], "block");
    /* '+' is itself in a path. */
    assert_int_equal(pct_path_split("/users/a+b/block", "/users/", seg, 1), 2);
    assert_string_equal(seg[0], "a+b");
    assert_int_equal(pct_path_split("/connections/0.1.2/close/x", "/connections/", seg, 2), 3);
    assert_int_equal(pct_path_split("/users/bob", "/users/", seg, 2), 1);
    assert_string_equal(seg[0], "bob");
    /* A name may not hold '/' or NUL, nor be empty, nor be badly escaped. */
    assert_int_equal(pct_path_split("/users/a%2Fb/block", "/users/", seg, 2), -EINVAL);
    assert_int_equal(pct_path_split("/users/a%00/block", "/users/", seg, 2), -EINVAL);
    assert_int_equal(pct_path_split("/users//block", "/users/", seg, 2), -EINVAL);
    assert_int_equal(pct_path_split("/users/%4/block", "/users/", seg, 2), -EINVAL);
    assert_int_equal(pct_path_split("/user/a/block", "/users/", seg, 2), -EINVAL);
    /* Segments past n are counted, not decoded. */
    assert_int_equal(pct_path_split("/users/a/%zz", "/users/", seg, 1), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
