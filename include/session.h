/*
 * session.h - drives a connection from accept to the start of the relay:
 * greeting, request, resolve, connect, reply. Shard thread only.
 */
#ifndef RINGSOCKS_SESSION_H
#define RINGSOCKS_SESSION_H

#include <stdbool.h>

#include "shard_types.h"

int session_slab_init(struct shard *sh);
void session_slab_fini(struct shard *sh);

/* A client was accepted on fd: take it (or close it when out of room). */
void session_start(struct shard *sh, int fd);
/* A completion for one of the handshake ops. */
void session_on_cqe(struct shard *sh, struct conn *c, unsigned op, int res);
/* Name resolution finished: err 0 and n >= 1 addresses, or -errno. */
void session_on_resolved(struct shard *sh, uint64_t cookie, int err, const union sockaddr_inx *addrs,
                         unsigned n);
/* The auth worker checked the credential of the connection behind cookie. */
void session_on_auth(struct shard *sh, uint64_t cookie, bool ok);
/* The connect deadline (or BIND wait) of c passed. */
void session_connect_timeout(struct shard *sh, struct conn *c);
/*
 * May c's client reach dest (NULL: not known yet) under the current rules?
 * An unspecified dest is always refused. host: the name asked for, or NULL.
 * Counts a denial.
 */
bool session_allowed(struct shard *sh, const struct conn *c, const union sockaddr_inx *dest,
                     const char *host, uint16_t port);
/* The slot is being freed: its handshake context and per-client counts go back. */
void session_release(struct shard *sh, struct conn *c);
/* The hang-up watch on the client completed (res: poll events or -errno). */
void session_on_hup(struct shard *sh, struct conn *c, int res);
/* Every tick: watch the clients of resolves and connects that have lasted a while. */
void session_tick(struct shard *sh);

#endif
