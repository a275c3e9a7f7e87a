/*
 * outbound.h - a tunnel's outgoing socket as the policy says: its source
 * address (the user's pool, the admitting rule's, the listener's, the
 * global one; a session's sticky choice) and the rule's socket settings.
 * Used by CONNECT (request.c), BIND (bind.c) and UDP ASSOCIATE (udp.c).
 *
 * Shard thread only; a few non-blocking syscalls, no allocation.
 */
#ifndef RINGSOCKS_OUTBOUND_H
#define RINGSOCKS_OUTBOUND_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

struct shard;
struct conn;
struct egress_session;

/* Shard start: seed the shard's generator for random picks. */
void outbound_seed(struct shard *sh);
/* Shard: the next 64 bits of that generator (xoshiro256**; fast, not a secret). */
uint64_t outbound_rand(struct shard *sh);

/* How the socket will be used. */
enum outbound_use {
    OUTBOUND_CONNECT,      /* a stream socket about to connect: bound here, TCP settings too */
    OUTBOUND_CONNECT_DATA, /* the same, with the client's bytes already waiting (fastopen) */
    OUTBOUND_LISTEN,       /* a BIND listener: *src is where the caller binds it (its port range) */
};

/*
 * Make fd, a fresh socket of family (AF_INET, AF_INET6), leave as the policy
 * says for c admitted by rule (-1: no rule). *src (may be NULL) gets the
 * source chosen, port 0 (family 0: none, the kernel chooses). 0,
 * -EAFNOSUPPORT when the pool in force has no address of family and no
 * fallback lets the kernel choose, or -errno of the bind or of SO_MARK (the
 * tunnel must not leave unmarked).
 */
int outbound_prepare(struct shard *sh, struct conn *c, int fd, int family, int rule,
                     enum outbound_use use, union sockaddr_inx *src);

/*
 * A non-blocking stream socket of family for c's connect, TCP_NODELAY and
 * outbound_prepare() done: the one place an outgoing tunnel socket is set
 * up (a target's, a parent's). The fd, or -errno.
 */
int outbound_socket(struct shard *sh, struct conn *c, int family, int rule, enum outbound_use use);

/* UDP ASSOCIATE: where its datagrams to targets leave from, chosen once per association. */
struct outbound_dgram {
    union sockaddr_inx src[2]; /* [0] IPv4, [1] IPv6; family 0: the kernel's choice */
    bool refuse[2];            /* no address of the family and no fallback: such datagrams drop */
};

/*
 * The sources of c's association (fd: its socket, rule: the rule that
 * admitted it), per family as outbound_prepare() chooses, and what the
 * socket needs to send from them (IP_FREEBIND / IPV6_FREEBIND, SO_MARK).
 * Datagrams carry the source in an IP_PKTINFO / IPV6_PKTINFO message. 0 or
 * -errno of SO_MARK.
 */
int outbound_dgram(struct shard *sh, struct conn *c, int fd, int rule, struct outbound_dgram *d);

/*
 * handshake: c->user for an authenticated base name and session (id_len 0:
 * none), allocated; NULL when out of memory. Sets CONN_F_SESSION as needed (conn_session() reads it).
 */
char *outbound_user_dup(struct conn *c, const char *base, const struct egress_session *s);

#endif
