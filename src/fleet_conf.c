/*
 * fleet_conf.c - the pure parts of a fleet's settings (fleet_conf.h).
 */
#include "fleet_conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
fleet_parse_addr(const char *s, struct fleet_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(s, "unix:", 5) == 0) {
        if (s[5] != '/' || strlen(s + 5) >= sizeof(out->host)) {
            snprintf(err, errlen, "\"%s\": unix: needs an absolute path of at most %zu bytes", s,
                     sizeof(out->host) - 1);
            return -1;
        }
        out->unix_path = true;
        strcpy(out->host, s + 5);
        return 0;
    }
    char host[64];
    const char *port = NULL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (size_t)(end - s - 1) >= sizeof(host) || (end[1] && end[1] != ':'))
            goto bad;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port = end[1] ? end + 2 : NULL;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            goto bad; /* a bare IPv6 address needs brackets */
        size_t len = colon ? (size_t)(colon - s) : strlen(s);
        if (len >= sizeof(host))
            goto bad;
        memcpy(host, s, len);
        host[len] = '\0';
        port = colon ? colon + 1 : NULL;
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
        goto bad;
    out->port = 6379;
    if (port) {
        char *end;
        errno = 0;
        long p = strtol(port, &end, 10);
        if (!*port || *end || errno || p < 1 || p > 65535)
            goto bad;
        out->port = (int)p;
    }
    strcpy(out->host, host);
    return 0;
bad:
    snprintf(err, errlen,
             "\"%s\" is not IP[:PORT], [IPv6][:PORT] or unix:/path (a name would need DNS on "
             "the control thread: give the address)",
             s);
    return -1;
}

void
fleet_want(uint64_t open, bool asking, uint64_t max, uint64_t *need, uint64_t *spare)
{
    uint64_t n = open + (asking ? 1 : 0);
    /* Nothing open and nothing asked: the user is idle here, every place goes back. */
    uint64_t s = !n ? 0 : open / 4 ? open / 4 : 1;
    if (n > max)
        n = max;
    if (s > max - n)
        s = max - n;
    *need = n;
    *spare = s;
}
