/*
 * hosts.h - names resolved without DNS: a hosts(5) table loaded once at
 * start, and the RFC 6761 localhost names. Pure lookups, any thread.
 */
#ifndef RINGSOCKS_HOSTS_H
#define RINGSOCKS_HOSTS_H

#include <stdint.h>

#include "addr.h"

struct hosts;

/* Main thread: load a hosts(5) file; a missing file gives an empty table. */
struct hosts *hosts_load(const char *path);
void hosts_free(struct hosts *h);
/*
 * Any thread: addresses of name (case-insensitive) with port set, at most
 * max. "localhost" and names under ".localhost" (RFC 6761) are always
 * loopback. Returns how many were written (0: not in the table).
 */
unsigned hosts_lookup(const struct hosts *h, const char *name, uint16_t port,
                      union sockaddr_inx *out, unsigned max);

/* Set the port of an IPv4 or IPv6 address (host byte order in). */
void hosts_set_port(union sockaddr_inx *a, uint16_t port);

#endif
