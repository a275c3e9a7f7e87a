/*
 * addr.h - socket address parsing and formatting (pure, any thread).
 */
#ifndef RINGSOCKS_ADDR_H
#define RINGSOCKS_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 socket address, as small as the two need. */
union sockaddr_inx {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

/* Longest text addr_format() writes: "[" v6 "%" scope "]:" port, NUL. */
#define ADDR_STRLEN 64

/*
 * Parse "1.2.3.4:80", "[::1]:80" (or, with default_port >= 0, the same
 * without ":port") into ss. Only numeric addresses. Returns 0 or -EINVAL.
 */
int addr_parse(const char *s, int default_port, struct sockaddr_storage *ss);

/* Length of the sockaddr for its family (0 for an unknown family). */
socklen_t addr_len(const struct sockaddr *sa);

/* Write "1.2.3.4:80" or "[::1]:80" into out[n]; returns out. */
char *addr_format(const struct sockaddr *sa, char *out, size_t n);

/* The port, host byte order (0 for another family). */
uint16_t addr_port(const union sockaddr_inx *a);
/* 0.0.0.0, :: or ::ffff:0.0.0.0 (the port is not looked at). */
bool addr_is_any(const union sockaddr_inx *a);
/* Same family and address (ports are not compared). */
bool addr_same_ip(const union sockaddr_inx *a, const union sockaddr_inx *b);
/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes plain IPv4, port kept. */
void addr_unmap(union sockaddr_inx *a);

/*
 * The key of a client address for per-client accounting (clients.h, lockout.h): an
 * IPv4 address, or the /64 an IPv6 address is in (one subscriber, one host or one
 * attacker usually has a whole /64). IPv4 is laid out as the IPv4-mapped address, so
 * it never equals an IPv6 /64 key; another family is {0, 0}. Unmap a mapped address
 * first (addr_unmap()).
 */
void addr_client_key(const union sockaddr_inx *a, uint64_t key[2]);

#endif
