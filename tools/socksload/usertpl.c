/*
 * usertpl.c - the --user template: an RFC 1929 user name per tunnel, such as
 * "alice-session-{n%200}" or "w{worker}-{n}", and the session key that goes with it.
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

/* Appends c to the literal text of the last part (a new literal part when the last is a
 * placeholder); false when it would not fit. */
static bool
tpl_put(struct usertpl *t, size_t *len, char c)
{
    if (*len >= URL_FIELD_MAX)
        return false;
    if (t->nparts == 0 || t->part[t->nparts - 1].kind != USERTPL_LIT) {
        if (t->nparts == USERTPL_PARTS)
            return false;
        t->part[t->nparts].kind = USERTPL_LIT;
        t->part[t->nparts++].len = 0;
    }
    t->part[t->nparts - 1].len++;
    t->lit[(*len)++] = c;
    t->lit[*len] = '\0';
    return true;
}

int
usertpl_parse(struct usertpl *t, const char *s, char *err, size_t errlen)
{
    static const char long_msg[] = "user name too long (at most 255 bytes, 64 parts)";
    size_t len = 0, workers = 0;

    memset(t, 0, sizeof(*t));
    for (const char *p = s; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            if (!tpl_put(t, &len, *p++))
                return tpl_fail(err, errlen, long_msg);
            continue;
        }
        if (*p == '}')
            return tpl_fail(err, errlen, "a lone '}' (write '}}' for the character)");
        if (*p != '{') {
            if (!tpl_put(t, &len, *p))
                return tpl_fail(err, errlen, long_msg);
            continue;
        }
        if (t->nparts == USERTPL_PARTS)
            return tpl_fail(err, errlen, long_msg);
        if (strncmp(p, "{worker}", 8) == 0) {
            p += 7;
            t->part[t->nparts++].kind = USERTPL_WORKER;
            workers++;
            continue;
        }
        if (t->has_key && (strncmp(p, "{n}", 3) == 0 || strncmp(p, "{n%", 3) == 0))
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
            return tpl_fail(err, errlen,
                            "'{' starts {n}, {n%K} or {worker} (write '{{' for the character)");
        }
        t->has_key = true;
        t->part[t->nparts++].kind = USERTPL_N;
    }
    /* The longest number: K - 1, or a 32-bit key written out in full; each worker number has
     * at most USERTPL_WORKER_DIGITS digits. */
    size_t widest = (t->has_key ? digits(t->mod ? t->mod - 1 : UINT32_MAX) : 0) +
                    workers * USERTPL_WORKER_DIGITS;
    if (len + widest > URL_FIELD_MAX)
        return tpl_fail(err, errlen, long_msg);
    if (len + widest == 0)
        return tpl_fail(err, errlen, "empty user name");
    return 0;
}

uint32_t
usertpl_key(const struct usertpl *t, uint64_t n)
{
    return (uint32_t)(t->mod ? n % t->mod : n);
}

size_t
usertpl_expand(const struct usertpl *t, uint64_t n, unsigned worker, char *out)
{
    size_t len = 0, lit = 0;

    for (unsigned i = 0; i < t->nparts; i++) {
        switch (t->part[i].kind) {
        case USERTPL_LIT:
            memcpy(out + len, t->lit + lit, t->part[i].len);
            len += t->part[i].len;
            lit += t->part[i].len;
            break;
        case USERTPL_N:
            len += (size_t)snprintf(out + len, URL_FIELD_MAX + 1 - len, "%u", usertpl_key(t, n));
            break;
        default:
            len += (size_t)snprintf(out + len, URL_FIELD_MAX + 1 - len, "%u", worker % 1000);
            break;
        }
    }
    out[len] = '\0';
    return len;
}
