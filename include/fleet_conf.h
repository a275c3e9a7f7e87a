/*
 * fleet_conf.h - the pure parts of a fleet's settings (fleet.h): the Redis
 * address as written, and how many tunnels a node asks to hold. No
 * hiredis, no state: the option checks and the unit tests use them alone.
 */
#ifndef RINGSOCKS_FLEET_CONF_H
#define RINGSOCKS_FLEET_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLEET_HOST_MAX 108 /* an IP literal, or a Unix socket path */

/* "IP:PORT", "[IPv6]:PORT", "IP" (port 6379) or "unix:/path". */
struct fleet_addr {
    bool unix_path;
    char host[FLEET_HOST_MAX]; /* the IP text, or the path */
    int port;
};
/* Pure: 0, or -1 (with why in err) for anything else, names included (no DNS here). */
int fleet_parse_addr(const char *s, struct fleet_addr *out, char *err, size_t errlen);

/*
 * Pure: the tunnels a node asks to hold for a user with open tunnels (plus
 * one when a request waits): what it needs now, and spare room on top
 * (a quarter of open, at least one) so that most new tunnels find a place
 * without a round trip; none for a user idle here (nothing open, nothing
 * asked: its places go back to the fleet). Never above max.
 */
void fleet_want(uint64_t open, bool asking, uint64_t max, uint64_t *need, uint64_t *spare);

#endif
