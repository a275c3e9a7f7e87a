/*
 * dns.h - DNS resolution that never blocks a shard: c-ares with its sockets
 * polled through the shard's ring.
 */
#ifndef RINGSOCKS_DNS_H
#define RINGSOCKS_DNS_H

#include <stdint.h>

#include "shard_types.h"

/* Main thread, before start: the shard's c-ares channel. */
int dns_init(struct shard *sh);
void dns_fini(struct shard *sh);
/*
 * Shard thread: resolve name; session_on_resolved(sh, cookie, ...) is called
 * once with the outcome, possibly before this returns.
 */
void dns_resolve(struct shard *sh, const char *name, uint16_t port, uint64_t cookie);
void dns_on_cqe(struct shard *sh, unsigned op, uint32_t idx, uint32_t gen, int res);
/* Shard thread, every tick: let c-ares retry and time out queries. */
void dns_tick(struct shard *sh);

#endif
