/*
 * request.h - the request phase: a complete request's destination becomes
 * addresses (a literal, the hosts table, DNS) and, for CONNECT, a connected
 * target socket tried address by address under the rules; BIND and UDP
 * ASSOCIATE go on in their own phases. Shard thread only.
 */
#ifndef RINGSOCKS_REQUEST_H
#define RINGSOCKS_REQUEST_H

#include "conn.h"

struct shard;

extern const struct conn_phase request_phase;

/* The handshake parsed a request into c's context: act on it. */
void request_start(struct shard *sh, struct conn *c);
/* Every tick: watch the clients of resolves and connects that have lasted a second. */
void request_tick(struct shard *sh);
/* Retry the requests parked for a fleet lease, if the board moved since (limit.h). */
void request_leases(struct shard *sh);

#endif
