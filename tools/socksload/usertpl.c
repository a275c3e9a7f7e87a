/*
 * usertpl.c - the --user template: an RFC 1929 user name per tunnel, such as
 * "alice-session-{n%200}", and the session key that goes with it.
 *
 * Pure: parses once in main.c, expands on the worker threads into their own buffers; no state
 * of its own. Must never produce a name longer than URL_FIELD_MAX: parse refuses a template
 * whose longest expansion would not fit, so expansion cannot fail.
 */
#include "socksload.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int
tpl_fail(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -EINVAL;
}

static size_t
digits(uint64_t v)
{
    size_t n = 1;

    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Appends c to the literal text of the part being read; false when it would not fit. */
static bool
tpl_put(char *buf, size_t *len, char c)
{
    if (*len >= URL_FIELD_MAX)
        return false;
    buf[(*len)++] = c;
    buf[*len] = '\0';
    return true;
}

int
usertpl_parse(struct usertpl *t, const char *s, char *err, size_t errlen)
{
    size_t len = 0;
    char *buf;

    memset(t, 0, sizeof(*t));
    buf = t->pre;
    for (const char *p = s; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            if (!tpl_put(buf, &len, *p++))
                return tpl_fail(err, errlen, "user name too long (at most 255 bytes)");
            continue;
        }
        if (*p == '}')
            return tpl_fail(err, errlen, "a lone '}' (write '}}' for the character)");
        if (*p != '{') {
            if (!tpl_put(buf, &len, *p))
                return tpl_fail(err, errlen, "user name too long (at most 255 bytes)");
            continue;
        }
        if (t->has_key)
            return tpl_fail(err, errlen, "one {n} or {n%K} per template");
        if (strncmp(p, "{n}", 3) == 0) {
            p += 2;
        } else if (strncmp(p, "{n%", 3) == 0 && p[3] >= '1' && p[3] <= '9') {
            uint64_t k = 0;
            p += 3;
            while (*p >= '0' && *p <= '9') {
                k = k * 10 + (uint64_t)(*p - '0');
                if (k > USERTPL_MOD_MAX)
                    return tpl_fail(err, errlen, "K of {n%K} is at most 4294967295");
                p++;
            }
            if (*p != '}')
                return tpl_fail(err, errlen, "{n%K} needs a whole K from 1, then '}'");
            t->mod = k;
        } else {
            return tpl_fail(err, errlen, "'{' starts {n} or {n%K} (write '{{' for the character)");
        }
        t->has_key = true;
        t->pre_len = len;
        buf = t->post;
        len = 0;
    }
    if (!t->has_key)
        t->pre_len = len;
    else
        t->post_len = len;
    /* The longest number: K - 1, or a 32-bit key written out in full. */
    size_t widest = t->has_key ? digits(t->mod ? t->mod - 1 : UINT32_MAX) : 0;
    if (t->pre_len + widest + t->post_len > URL_FIELD_MAX)
        return tpl_fail(err, errlen, "user name too long (at most 255 bytes)");
    if (t->pre_len + widest + t->post_len == 0)
        return tpl_fail(err, errlen, "empty user name");
    return 0;
}

uint32_t
usertpl_key(const struct usertpl *t, uint64_t n)
{
    return (uint32_t)(t->mod ? n % t->mod : n);
}

size_t
usertpl_expand(const struct usertpl *t, uint64_t n, char *out)
{
    size_t len = t->pre_len;

    memcpy(out, t->pre, t->pre_len);
    if (t->has_key)
        len += (size_t)snprintf(out + len, URL_FIELD_MAX + 1 - len, "%u", usertpl_key(t, n));
    memcpy(out + len, t->post, t->post_len);
    len += t->post_len;
    out[len] = '\0';
    return len;
}
