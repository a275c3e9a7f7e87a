/*
 * udp.h - UDP ASSOCIATE (RFC 1928 section 7): one UDP socket per
 * association, polled through the shard's ring, alive as long as the TCP
 * control connection and no longer than idle_timeout without a datagram.
 * Shard thread only.
 */
#ifndef RINGSOCKS_UDP_H
#define RINGSOCKS_UDP_H

#include "shard_types.h"

/*
 * Open the association's socket for c. hint is the request's DST: the
 * address the client will send from (all zero: the TCP peer's address, port
 * learned from the first datagram; under a rule with udp_source "any", the
 * first datagram's source). Writes the address for the reply into bnd.
 * Returns 0, -EPERM when the rules do not admit the declared source (another
 * address than the control connection's, without udp_source "any", or one
 * the rules refuse as a client), or another -errno.
 */
int udp_open(struct shard *sh, struct conn *c, const struct socks_dest *hint,
             union sockaddr_inx *bnd);
/* The reply is written: relay datagrams until the control connection ends. */
void udp_start(struct shard *sh, struct conn *c);
void udp_on_cqe(struct shard *sh, struct conn *c, unsigned op, int res);
/*
 * A datagram's destination name resolved (err 0 and n >= 1, or -errno);
 * seq is the query's number from the DNS cookie.
 */
void udp_on_resolved(struct shard *sh, struct conn *c, unsigned seq, int err,
                     const union sockaddr_inx *addrs, unsigned n);
/* The name took longer than connect_timeout: drop its datagram, go on with the next. */
void udp_resolve_timeout(struct shard *sh, struct conn *c);
/* The slot is being freed. */
void udp_release(struct shard *sh, struct conn *c);
/* The shard has stopped (any thread, after it joined): unmap its datagram buffers. */
void udp_fini(struct shard *sh);

#endif
