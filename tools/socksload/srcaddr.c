/*
 * srcaddr.c - --source: the client's source addresses (ranges, prefixes, lists) and the
 * round robin over them, so that one run looks like many clients to the proxy's rules, limits
 * and logs.
 *
 * Pure: parsed once in main.c, read by every worker (srcaddr_at) without writes. Must never
 * hand out an address outside what was given, nor the network or broadcast address of an
 * IPv4 prefix shorter than /31.
 */
#include "socksload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
src_fail(char *err, size_t errlen, const char *elem, const char *msg)
{
    snprintf(err, errlen, "%s: %s", elem, msg);
    return -EINVAL;
}

/* An IPv4 or IPv6 literal (no scope): its family, and its bytes in addr. */
static int
src_addr(const char *text, uint8_t *addr)
{
    if (inet_pton(AF_INET, text, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, text, addr) == 1)
        return AF_INET6;
    return 0;
}

/* The number in the range's moving part: the IPv4 address, or IPv6's low 64 bits. */
static uint64_t
src_low(int family, const uint8_t *a)
{
    uint64_t v = 0;
    int from = family == AF_INET ? 0 : 8, to = family == AF_INET ? 4 : 16;

    for (int i = from; i < to; i++)
        v = v << 8 | a[i];
    return v;
}

static void
src_set_low(int family, uint8_t *a, uint64_t v)
{
    for (int i = family == AF_INET ? 3 : 15, end = family == AF_INET ? 0 : 8; i >= end; i--) {
        a[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* One element of the list, at most 100 bytes: into r. */
static int
src_elem(struct srcaddr_range *r, char *e, char *err, size_t errlen)
{
    char *slash = strchr(e, '/'), *dash = strchr(e, '-');
    uint8_t hi[16];

    memset(r, 0, sizeof(*r));
    if (slash)
        *slash = '\0';
    if (dash)
        *dash = '\0';
    r->family = src_addr(e, r->lo);
    if (slash)
        *slash = '/';
    if (dash)
        *dash = '-';
    if (!r->family)
        return src_fail(err, errlen, e, "not an IPv4 or IPv6 address");
    if (slash && dash)
        return src_fail(err, errlen, e, "a range or a prefix, not both");
    int bits = r->family == AF_INET ? 32 : 128;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end || p > bits)
            return src_fail(err, errlen, e, "bad prefix length");
        int host = bits - (int)p;
        if (host > 32)
            return src_fail(err, errlen, e, "more than 2^32 addresses");
        /* The host bits are cleared: 127.0.0.9/24 is 127.0.0.0/24. */
        uint64_t base = src_low(r->family, r->lo) & ~((1ull << host) - 1);
        r->n = 1ull << host;
        if (r->family == AF_INET && host > 1) {
            base++; /* no network address, and no broadcast address below */
            r->n -= 2;
        }
        src_set_low(r->family, r->lo, base);
        return 0;
    }
    if (!dash) {
        r->n = 1;
        return 0;
    }
    int f2 = src_addr(dash + 1, hi);
    if (f2 != r->family)
        return src_fail(err, errlen, e, "the range's end is not an address of the same family");
    if (r->family == AF_INET6 && memcmp(r->lo, hi, 8) != 0)
        return src_fail(err, errlen, e, "an IPv6 range must stay within one /64");
    uint64_t a = src_low(r->family, r->lo), b = src_low(r->family, hi);
    if (b < a)
        return src_fail(err, errlen, e, "the range ends before it starts");
    if (b - a >= SRCADDR_MAX)
        return src_fail(err, errlen, e, "more than 2^32 addresses");
    r->n = b - a + 1;
    return 0;
}

int
srcaddr_parse(struct srcaddr *s, const char *str, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    while (1) {
        size_t len = strcspn(str, ",");
        char e[101];
        if (len == 0 || len >= sizeof(e)) {
            snprintf(err, errlen, "%s",
                     len ? "an element longer than 100 bytes" : "an empty element");
            return -EINVAL;
        }
        if (s->n == SRCADDR_RANGES) {
            snprintf(err, errlen, "more than %d elements", SRCADDR_RANGES);
            return -EINVAL;
        }
        memcpy(e, str, len);
        e[len] = '\0';
        struct srcaddr_range *r = &s->r[s->n];
        int rc = src_elem(r, e, err, errlen);
        if (rc < 0)
            return rc;
        if (s->n > 0 && r->family != s->r[0].family)
            return src_fail(err, errlen, e, "IPv4 and IPv6 in one list");
        s->n++;
        s->total += r->n;
        if (s->total > SRCADDR_MAX) {
            snprintf(err, errlen, "more than 2^32 addresses in all");
            return -EINVAL;
        }
        if (!str[len])
            return 0;
        str += len + 1;
    }
}

/* Address j of range r. */
static void
src_fill(const struct srcaddr_range *r, uint64_t j, struct sockaddr_storage *ss, socklen_t *len)
{
    uint8_t a[16];

    memset(ss, 0, sizeof(*ss));
    memcpy(a, r->lo, sizeof(a));
    src_set_low(r->family, a, src_low(r->family, a) + j);
    if (r->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, a, 4);
        if (len)
            *len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, a, 16);
        if (len)
            *len = sizeof(*in6);
    }
}

void
srcaddr_at(const struct srcaddr *s, uint64_t i, struct sockaddr_storage *ss, socklen_t *len)
{
    i %= s->total;
    for (unsigned k = 0; k < s->n; k++) {
        if (i < s->r[k].n)
            return src_fill(&s->r[k], i, ss, len);
        i -= s->r[k].n;
    }
}

void
srcaddr_ends(const struct srcaddr *s, unsigned k, struct sockaddr_storage *first,
             struct sockaddr_storage *last)
{
    src_fill(&s->r[k], 0, first, NULL);
    src_fill(&s->r[k], s->r[k].n - 1, last, NULL);
}
