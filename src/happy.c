/*
 * happy.c - Happy Eyeballs (RFC 8305) address ordering (happy.h). Pure: it
 * only reorders the addresses it is given; connecting them, the delay
 * between attempts and the cancelling of losers are the request phase's
 * (request.c).
 */
#include "happy.h"

#include <errno.h>
#include <string.h>

static const char *const family_words[] = {
    [HAPPY_ANY] = "any",
    [HAPPY_IPV4] = "ipv4",
    [HAPPY_IPV6] = "ipv6",
    [HAPPY_PREFER_IPV4] = "prefer-ipv4",
    [HAPPY_PREFER_IPV6] = "prefer-ipv6",
};

int
happy_family_parse(const char *s)
{
    for (unsigned i = 0; i < sizeof(family_words) / sizeof(family_words[0]); i++)
        if (strcmp(s, family_words[i]) == 0)
            return (int)i;
    return -EINVAL;
}

const char *
happy_family_str(enum happy_family fam)
{
    return (unsigned)fam < sizeof(family_words) / sizeof(family_words[0]) ? family_words[fam] : "?";
}

/* The family a connect to a reaches: a mapped IPv6 address is IPv4. */
static int
family(const union sockaddr_inx *a)
{
    if (a->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->v6.sin6_addr))
        return AF_INET;
    return a->sa.sa_family;
}

/* The next address of family fam at or after *i in in[0..n), or NULL. */
static const union sockaddr_inx *
next_of(const union sockaddr_inx *in, unsigned n, unsigned *i, int fam)
{
    for (; *i < n; (*i)++)
        if (family(&in[*i]) == fam)
            return &in[(*i)++];
    return NULL;
}

unsigned
happy_order(const union sockaddr_inx *in, unsigned n, enum happy_family fam,
            union sockaddr_inx *out)
{
    int first = AF_INET6, second = AF_INET;
    bool only = fam == HAPPY_IPV4 || fam == HAPPY_IPV6;
    if (fam == HAPPY_IPV4 || fam == HAPPY_PREFER_IPV4) {
        first = AF_INET;
        second = AF_INET6;
    }
    unsigned i1 = 0, i2 = 0, k = 0;
    for (;;) {
        const union sockaddr_inx *a = next_of(in, n, &i1, first);
        const union sockaddr_inx *b = only ? NULL : next_of(in, n, &i2, second);
        if (!a && !b)
            break;
        if (a)
            out[k++] = *a;
        if (b)
            out[k++] = *b;
    }
    return k;
}
