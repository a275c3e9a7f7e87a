/*
 * pct.h - percent-decoding of the admin API's paths and query strings
 * (RFC 3986 section 2.1; '+' as a space in a query, as HTML forms and curl
 * --data-urlencode send it). Pure: any thread.
 */
#ifndef RINGSOCKS_PCT_H
#define RINGSOCKS_PCT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Decode s[0..n) into out (cap bytes with the NUL): %XX (either case) is
 * that byte, and with plus '+' is a space. Returns the decoded length, or
 * -EINVAL (a '%' not followed by two hex digits, or a NUL byte decoded),
 * or -ENOSPC (it does not fit).
 */
int pct_decode(const char *s, size_t n, bool plus, char *out, size_t cap);

/*
 * The next "key=value" pair of a query string ("a=1&b=x%20y"), from *q on:
 * both decoded (plus as space) into key and val, *q moved past it. Empty
 * pairs ("a=1&&b=2") are skipped. 1 a pair, 0 the end, -EINVAL a pair
 * without '=' or a bad escape, -ENOSPC a key or value too long.
 */
int pct_query_next(const char **q, char *key, size_t kcap, char *val, size_t vcap);

#define PCT_SEG_MAX 256

/*
 * The segments of path after prefix ("/users/" then "NAME/block"), split at
 * '/': the first n decoded (no plus) into seg[i]. Returns how many segments
 * the rest holds, or -EINVAL: path does not start with prefix, or one of
 * the first n is empty, badly escaped, too long, or decodes to a '/' or NUL.
 */
int pct_path_split(const char *path, const char *prefix, char (*seg)[PCT_SEG_MAX], unsigned n);

#endif
