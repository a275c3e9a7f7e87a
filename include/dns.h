/*
 * dns.h - DNS resolution that never blocks a shard: c-ares with its sockets
 * polled through the shard's ring, and a per-shard cache of answers.
 */
#ifndef RINGSOCKS_DNS_H
#define RINGSOCKS_DNS_H

#include <stdint.h>

struct shard;

/* Main thread, before start: the shard's c-ares channel and cache (sh->dns). */
int dns_init(struct shard *sh);
/* After the shard stopped. */
void dns_fini(struct shard *sh);
/*
 * Shard thread: resolve name (in hostname.h's normal form); the answer goes
 * to conn_resolved(sh, ref, ...) once, possibly before this returns.
 */
void dns_resolve(struct shard *sh, const char *name, uint16_t port, uint64_t ref);
/* Shard thread: a completion of one of the resolver's polls (OP_DNS_POLL, OP_DNS_REMOVE). */
void dns_on_cqe(struct shard *sh, unsigned op, uint32_t idx, uint32_t gen, int res);
/* Shard thread, every tick: let c-ares retry and time out queries. */
void dns_tick(struct shard *sh);

#endif
