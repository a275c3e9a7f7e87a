/*
 * sock.h - small socket helpers shared by BIND and UDP ASSOCIATE. Plain
 * non-blocking syscalls; shard thread.
 */
#ifndef RINGSOCKS_SOCK_H
#define RINGSOCKS_SOCK_H

#include <stdint.h>

#include "addr.h"

/*
 * Bind fd to local's address with a port from [lo, hi], starting at a
 * random port of the range and trying each once; lo == 0: any port. The
 * chosen port is left in local. Returns 0 or -errno (-EADDRINUSE: range
 * exhausted).
 */
int sock_bind_range(int fd, union sockaddr_inx *local, uint16_t lo, uint16_t hi);

#endif
