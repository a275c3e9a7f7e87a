/*
 * pct.c - percent-decoding of admin paths and query strings (pct.h). Pure:
 * any thread, no allocation.
 */
#include "pct.h"

#include <errno.h>
#include <string.h>

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
pct_decode(const char *s, size_t n, bool plus, char *out, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int h = i + 2 < n ? hexval(s[i + 1]) : -1, l = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (h < 0 || l < 0)
                return -EINVAL;
            c = h << 4 | l;
            i += 2;
        } else if (plus && c == '+') {
            c = ' ';
        }
        if (c == 0)
            return -EINVAL;
        if (len + 1 >= cap)
            return -ENOSPC;
        out[len++] = (char)c;
    }
    if (cap == 0)
        return -ENOSPC;
    out[len] = '\0';
    return (int)len;
}

int
pct_query_next(const char **q, char *key, size_t kcap, char *val, size_t vcap)
{
    const char *p = *q;
    while (*p == '&')
        p++;
    if (!*p) {
        *q = p;
        return 0;
    }
    size_t n = strcspn(p, "&");
    const char *eq = memchr(p, '=', n);
    *q = p + n;
    if (!eq)
        return -EINVAL;
    int r = pct_decode(p, (size_t)(eq - p), true, key, kcap);
    if (r >= 0)
        r = pct_decode(eq + 1, (size_t)(p + n - eq - 1), true, val, vcap);
    return r < 0 ? r : 1;
}

int
pct_path_split(const char *path, const char *prefix, char (*seg)[PCT_SEG_MAX], unsigned n)
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0)
        return -EINVAL;
    const char *p = path + pl;
    int count = 0;
    for (;;) {
        size_t len = strcspn(p, "/");
        if ((unsigned)count < n) {
            int r = len ? pct_decode(p, len, false, seg[count], PCT_SEG_MAX) : -EINVAL;
            if (r < 0 || memchr(seg[count], '/', (size_t)r))
                return -EINVAL;
        }
        count++;
        if (!p[len])
            return count;
        p += len + 1;
    }
}
