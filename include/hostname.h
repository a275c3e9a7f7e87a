/*
 * hostname.h - the one check and normal form of a host name, used by
 * everything that looks a name up or compares it: the request parsers
 * (SOCKS5 DOMAINNAME, SOCKS4a host, UDP headers), the access rules (both
 * the names in rules and the names in queries), the hosts table and the DNS
 * cache. Pure, any thread.
 *
 * A host name here is what DNS and hosts(5) can hold for a host: labels of
 * letters, digits, '-' and '_' (1..63 bytes each) joined by single dots,
 * at most 253 bytes, with one optional trailing dot (the root) that the
 * normal form drops; letters are lower-cased. Everything else is refused:
 * ':' '[' ']' (a port or an IPv6 literal in disguise), '%' (a zone), '/',
 * spaces, control bytes, NUL, bytes >= 0x80 (IDNs travel as punycode),
 * empty labels ("a..b", ".a", "localhost.."). A name whose last label is
 * all digits is refused too: no top-level domain is numeric (RFC 3696
 * section 2), and such a name is an address in another spelling ("127.1",
 * "2130706433") that resolvers would turn into an address behind the
 * rules' back.
 */
#ifndef RINGSOCKS_HOSTNAME_H
#define RINGSOCKS_HOSTNAME_H

#include <stddef.h>

#define HOSTNAME_MAX 253

enum hostname_err {
    HOSTNAME_OK = 0,
    HOSTNAME_EMPTY,       /* no bytes, or only the root "." */
    HOSTNAME_TOO_LONG,    /* more than 253 bytes (254 with the trailing dot) */
    HOSTNAME_EMPTY_LABEL, /* two dots in a row, or a leading dot */
    HOSTNAME_LONG_LABEL,  /* a label over 63 bytes */
    HOSTNAME_BAD_CHAR,    /* a byte no host name has */
    HOSTNAME_NUMERIC,     /* the last label is all digits */
};

/*
 * Check in[0..len) (no NUL needed; a NUL inside is a bad byte) and write
 * its normal form, NUL-terminated, to out (room for HOSTNAME_MAX + 1
 * bytes; out may be in). Returns the normal form's length (> 0), or
 * -HOSTNAME_* with out unspecified.
 */
int hostname_norm(const char *in, size_t len, char *out);

/* The problem as a phrase ("has an empty label"), for FILE:LINE messages. */
const char *hostname_strerror(int err);

#endif
