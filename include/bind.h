/*
 * bind.h - the BIND phase (RFC 1928 section 4, SOCKS4 BIND): a listening
 * socket for the one inbound connection the client expects, its two
 * replies, then the relay. Shard thread only.
 */
#ifndef RINGSOCKS_BIND_H
#define RINGSOCKS_BIND_H

#include "conn.h"

struct shard;

extern const struct conn_phase bind_phase;

/* The request phase has the expected peer's address in c's context: listen, reply. */
void bind_start(struct shard *sh, struct conn *c);

#endif
