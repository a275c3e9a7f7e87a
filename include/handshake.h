/*
 * handshake.h - the handshake phase: from accept to a complete request
 * (greeting, RFC 1929 password, SOCKS5 or SOCKS4/4a request) and, later,
 * every reply the client gets through the connection's handshake context,
 * with the bytes it pipelined after its request. Shard thread only.
 *
 * The phases that follow a request (request.h, bind.h, udp.h) answer the
 * client through handshake_fail() and handshake_succeed(); after a success
 * reply is written the handshake calls the continuation it was given.
 */
#ifndef RINGSOCKS_HANDSHAKE_H
#define RINGSOCKS_HANDSHAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "socks5.h"

struct shard;

extern const struct conn_phase handshake_phase;

/*
 * The shard's own thread, once its ring exists: the slab of contexts in
 * one registered buffer.
 * on_request: what a complete request goes to (request_start()); the shard
 * wires it, so that the handshake, which the later phases answer through,
 * never calls up to them by name.
 */
int handshake_init(struct shard *sh, void (*on_request)(struct shard *sh, struct conn *c));
/* Main thread, after the shard thread ended. */
void handshake_fini(struct shard *sh);

/*
 * A client was accepted on fd: take it (or close it when out of room). transparent: fd
 * came by a mode = "transparent" listener, its original destination is the request
 * (transparent.h) and no byte of it is read.
 */
void handshake_start(struct shard *sh, int fd, bool transparent);

/* The request's destination as the client named it (valid while c->hs). */
const struct socks_dest *handshake_dest(const struct conn *c);
/* Answer with an error reply (SOCKS5 numbering; SOCKS4 gets 91) and close once written. */
void handshake_fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why);

/*
 * The request was admitted by rule (an index, -1: none): decide its faults (fault.h), and
 * if one forces a refusal, answer it with that code (END_FAULT, nothing tried). true:
 * answered, the caller stops; false: go on.
 */
bool handshake_fault(struct shard *sh, struct conn *c, int rule);

/* handshake_succeed() flags */
#define HS_FORWARD_UNREAD 0x1u /* write the bytes pipelined after the request to c->tfd first */
#define HS_KEEP_UNREAD    0x2u /* keep the context while pipelined bytes wait (BIND) */

/*
 * Success: write the reply with bnd (NULL: 0.0.0.0:0) through the context,
 * the pipelined bytes with HS_FORWARD_UNREAD, then end the handshake (its
 * per-client count, and the context unless HS_KEEP_UNREAD keeps it for
 * unread bytes) and call next(sh, c).
 */
void handshake_succeed(struct shard *sh, struct conn *c, const union sockaddr_inx *bnd,
                       void (*next)(struct shard *sh, struct conn *c), unsigned flags);

/*
 * A reply written at once, when the context is gone (BIND's second):
 * nothing else of ours is in the client's socket, so 8-22 bytes go without
 * blocking (MSG_DONTWAIT). Records the reply code. False when not all went.
 * c's faults act on it as on a queued reply (bind_peer, fault.h).
 */
bool handshake_reply_now(struct shard *sh, struct conn *c, uint8_t rep, const struct sockaddr *bnd);

/* Give c's context back (and with it any password check it waits for). */
void handshake_release(struct shard *sh, struct conn *c);
/*
 * Shard loop, once per iteration before it waits: the contexts given back since go
 * to the connections waiting for one (sh->hsp.handoff says there are some).
 */
void handshake_handoff(struct shard *sh);

/* Bytes the client sent that are still unread in the context. */
bool handshake_has_unread(const struct conn *c);

/*
 * A completion of the handshake's own ops (reading the client, writing it a
 * reply, writing pipelined bytes to the target). The request phase starts
 * while the method reply may still be on its way, so it hands these on.
 */
void handshake_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe);

/*
 * A watched client hung up (conn_watch_hangup()) while the server waited on
 * something else: close it unless it left bytes to serve. For every phase
 * that waits with a context (or in a queue for one).
 */
void handshake_on_hangup(struct shard *sh, struct conn *c, int events);

#endif
