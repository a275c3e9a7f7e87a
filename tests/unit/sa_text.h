/*
 * sa_text.h - for unit tests: a client address from its text. Include after
 * <cmocka.h> (a bad address fails the test).
 */
#ifndef RINGSOCKS_SA_TEXT_H
#define RINGSOCKS_SA_TEXT_H

#include <arpa/inet.h>
#include <string.h>

#include "addr.h"

/* "192.0.2.1" or "2001:db8::1", port 0. */
static inline union sockaddr_inx
sa(const char *ip)
{
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, ip, &a.v4.sin_addr) == 1)
        a.v4.sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &a.v6.sin6_addr) == 1)
        a.v6.sin6_family = AF_INET6;
    else
        fail_msg("bad test address %s", ip);
    return a;
}

#endif
