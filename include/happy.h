/*
 * happy.h - Happy Eyeballs (RFC 8305) address ordering: which family a
 * connection may use and in which order its resolved addresses are tried.
 * Pure: no state, any thread.
 */
#ifndef RINGSOCKS_HAPPY_H
#define RINGSOCKS_HAPPY_H

#include "addr.h"

/* Family policy of a connection (a rule's "family", "any" by default). */
enum happy_family {
    HAPPY_ANY = 0,     /* both, IPv6 first (RFC 6724's default precedence, RFC 8305 section 4) */
    HAPPY_IPV4,        /* IPv4 only */
    HAPPY_IPV6,        /* IPv6 only */
    HAPPY_PREFER_IPV4, /* both, IPv4 first */
    HAPPY_PREFER_IPV6, /* both, IPv6 first */
};

/* "any", "ipv4", "ipv6", "prefer-ipv4", "prefer-ipv6": the policy, or -EINVAL. */
int happy_family_parse(const char *s);
/* The policy's name, as happy_family_parse() reads it. */
const char *happy_family_str(enum happy_family fam);

/*
 * RFC 8305 section 4: write the addresses in[0..n) that fam admits to
 * out[0..), the preferred family first, then the families alternating
 * (First Address Family Count 1); within a family the order of in is kept
 * (the resolver's, which stands for RFC 6724 sorting: ringsocks asks c-ares
 * not to sort). An IPv4-mapped IPv6 address counts as IPv4. out has room
 * for n and does not overlap in. Returns how many were written (0: fam
 * admits none of them).
 */
unsigned happy_order(const union sockaddr_inx *in, unsigned n, enum happy_family fam,
                     union sockaddr_inx *out);

#endif
