/*
 * climap.h - each client address's shared limit counters (lim.h), across
 * every shard: a lock-free hash table (liburcu's RCU hash table, QSBR
 * flavour) of nodes keyed as clients.h keys addresses (IPv4 address, IPv6
 * /64), made by the first shard that needs one.
 *
 * A node lives while a tunnel holds a place in it (open > 0) and while its
 * buckets remember recent use; the control thread's sweep frees the others:
 * it marks a node dead only when open is 0 (one CAS, so no shard can take a
 * place in a node being freed: lim_open_take() refuses a dead node and the
 * taker looks again), unlinks it, waits for a grace period and frees it.
 * A tunnel keeps its node's pointer for its life: open > 0 keeps it alive.
 *
 * Shards call climap_take() while online (between quiescent states, as for
 * the policy); the control thread calls climap_sweep().
 */
#ifndef RINGSOCKS_CLIMAP_H
#define RINGSOCKS_CLIMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "lim.h"

struct climap;

/* NULL when out of memory. */
struct climap *climap_new(void);
/* No shard may be running. */
void climap_free(struct climap *m);

/*
 * Shard: take a place for a tunnel of client in its node (made if needed)
 * if fewer than max (0: no limit) are open (given back with lim_open_put()).
 * The node, or NULL: *over true
 * when the address holds max already, false when no node could be made
 * (out of memory: the caller admits uncounted, as clients.h does).
 */
struct lim_node *climap_take(struct climap *m, const union sockaddr_inx *client, uint64_t max,
                             bool *over);

/*
 * Control thread: free the nodes that hold nothing and whose buckets are
 * empty at now_ns (their memory would change no decision). Waits for one
 * grace period when it unlinked any. Returns how many it freed.
 */
unsigned climap_sweep(struct climap *m, uint64_t now_ns);

#endif
