/*
 * chain.h - the chain phase: a tunnel whose admitting rule names parents
 * (rule key via, via.h) is connected through one of them.
 *
 * Shard thread only, like the request phase it follows. The parents are tried
 * in the rule's order, one at a time: a non-blocking connect through the ring
 * (the rule's egress settings apply to it, as to a direct target), then the
 * SOCKS5, SOCKS4a or HTTP CONNECT handshake with it (via.c), every read a peek
 * of which exactly the reply's bytes are taken, so that the target's first
 * bytes stay in the socket for the relay. A parent that cannot be connected,
 * answers malformed, refuses our credentials or times out is remembered by the
 * shard as down for via_retry and skipped meanwhile (all of them down: tried
 * anyway, in order); a parent that answers for the target (refused,
 * unreachable, not allowed) is healthy and its answer is the client's.
 * connect_timeout bounds the whole phase.
 */
#ifndef RINGSOCKS_CHAIN_H
#define RINGSOCKS_CHAIN_H

#include "addr.h"

struct shard;
struct conn;
struct via_list;

/*
 * Connect c through vl's parents (c admitted by rule; its places are taken).
 * dest: the address to ask the parent for, or NULL for the name c->host (never
 * resolved here: the parent resolves it). The outcome is the client's reply
 * (handshake_succeed() then the relay, or handshake_fail()).
 */
void chain_start(struct shard *sh, struct conn *c, struct via_list *vl, int rule,
                 const union sockaddr_inx *dest);

extern const struct conn_phase chain_phase;

#endif
