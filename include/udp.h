/*
 * udp.h - the UDP phase (RFC 1928 section 7): UDP ASSOCIATE, one UDP socket
 * per association polled through the shard's ring, alive as long as the
 * TCP control connection and no longer than idle_timeout without a
 * datagram. Shard thread only.
 */
#ifndef RINGSOCKS_UDP_H
#define RINGSOCKS_UDP_H

#include "conn.h"

struct shard;

extern const struct conn_phase udp_phase;

/*
 * The request phase has a UDP ASSOCIATE in c's context: check it against the
 * rules and the per-client limit, open the association's socket, reply, and
 * relay datagrams once the reply is out. Answers errors itself.
 */
void udp_associate(struct shard *sh, struct conn *c);
/* The shard has stopped (any thread, after it joined): unmap its datagram buffers. */
void udp_fini(struct shard *sh);

#endif
