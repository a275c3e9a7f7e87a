/*
 * users_file.h - helpers for unit tests that need crypt(3) hashes and a
 * loaded users table (test_users.c, test_authq.c). Static functions: each
 * test binary gets its own copy. Include after cmocka.h.
 */
#ifndef RINGSOCKS_TEST_USERS_FILE_H
#define RINGSOCKS_TEST_USERS_FILE_H

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "users.h"

/* A crypt(3) hash of pw with a fresh salt for prefix at cost count (0: default). Caller frees. */
static char *
hash_of(const char *pw, const char *prefix, unsigned long count)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    assert_non_null(crypt_gensalt_rn(prefix, count, NULL, 0, setting, sizeof(setting)));
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    assert_non_null(cd);
    const char *h = crypt_rn(pw, setting, cd, sizeof(*cd));
    assert_non_null(h);
    char *out = strdup(h);
    free(cd);
    return out;
}

/* users_load() of a temporary file holding text; fails the test when it does not load. */
static struct users *
users_from(const char *text)
{
    char path[] = "/tmp/ringsocks-test-users.XXXXXX", err[512];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    struct users *u = users_load(path, err, sizeof(err));
    unlink(path);
    if (!u)
        fail_msg("users_load: %s", err);
    return u;
}

#endif
