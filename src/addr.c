/*
 * addr.c - socket address parsing and formatting. Pure: no sockets, no
 * globals; safe on any thread.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
parse_port(const char *s, int *port)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 65535)
        return -EINVAL;
    *port = (int)v;
    return 0;
}

int
addr_parse(const char *s, int default_port, struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_s = NULL;
    int port = default_port;
    size_t hlen;

    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return -EINVAL;
        hlen = (size_t)(close - s - 1);
        if (close[1] == ':')
            port_s = close + 2;
        else if (close[1] != '\0')
            return -EINVAL;
        s++;
    } else {
        const char *colon = strrchr(s, ':');
        /* A bare IPv6 address has several colons and no port. */
        if (colon && strchr(s, ':') == colon) {
            hlen = (size_t)(colon - s);
            port_s = colon + 1;
        } else {
            hlen = strlen(s);
        }
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (port_s && parse_port(port_s, &port) < 0)
        return -EINVAL;
    if (port < 0)
        return -EINVAL;

    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    memset(ss, 0, sizeof(*ss));
    return -EINVAL;
}

socklen_t
addr_len(const struct sockaddr *sa)
{
    switch (sa->sa_family) {
    case AF_INET:
        return sizeof(struct sockaddr_in);
    case AF_INET6:
        return sizeof(struct sockaddr_in6);
    default:
        return 0;
    }
}

char *
addr_format(const struct sockaddr *sa, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        snprintf(out, n, "%s:%u", host, ntohs(v4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        snprintf(out, n, "[%s]:%u", host, ntohs(v6->sin6_port));
    } else {
        snprintf(out, n, "(family %d)", sa->sa_family);
    }
    return out;
}

uint16_t
addr_port(const union sockaddr_inx *a)
{
    if (a->sa.sa_family == AF_INET)
        return ntohs(a->v4.sin_port);
    if (a->sa.sa_family == AF_INET6)
        return ntohs(a->v6.sin6_port);
    return 0;
}

bool
addr_is_any(const union sockaddr_inx *a)
{
    if (a->sa.sa_family == AF_INET)
        return a->v4.sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->sa.sa_family != AF_INET6)
        return false;
    const struct in6_addr *x = &a->v6.sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr32[3] == 0);
}

bool
addr_same_ip(const union sockaddr_inx *a, const union sockaddr_inx *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->v4.sin_addr.s_addr == b->v4.sin_addr.s_addr;
    if (a->sa.sa_family == AF_INET6)
        return memcmp(&a->v6.sin6_addr, &b->v6.sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

void
addr_unmap(union sockaddr_inx *a)
{
    if (a->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->v6.sin6_addr))
        return;
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = a->v6.sin6_port};
    memcpy(&v4.sin_addr, &a->v6.sin6_addr.s6_addr[12], 4);
    memset(a, 0, sizeof(*a));
    a->v4 = v4;
}

void
addr_client_key(const union sockaddr_inx *a, uint64_t key[2])
{
    if (a->sa.sa_family == AF_INET) {
        key[0] = 0;
        key[1] = UINT64_C(0xffff) << 32 | ntohl(a->v4.sin_addr.s_addr);
    } else if (a->sa.sa_family == AF_INET6) {
        const uint8_t *b = a->v6.sin6_addr.s6_addr;
        uint64_t hi = 0;
        for (int i = 0; i < 8; i++)
            hi = hi << 8 | b[i];
        key[0] = hi;
        key[1] = 0;
    } else {
        key[0] = key[1] = 0;
    }
}
