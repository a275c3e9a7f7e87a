/*
 * fault.h - faults committed on purpose (faultspec.h, docs/faults.md): which ones a
 * connection commits, decided from its rules and its user name, and the ones that act in
 * the relay. The handshake (replies: delays, byte-by-byte, truncated, wrong addresses) and
 * UDP ASSOCIATE (datagrams) act on the others themselves, with what this module decided.
 *
 * Off unless a rule carries `fault` or `fault_allow` (policy.rules_fault): then a connection
 * commits a fault only when the rule that admits it carries it, or its user name asked for
 * it ("alice-fault-refused", username_params) and that rule has fault_allow. A rule that
 * allows nothing never lets a fault reach its clients.
 *
 * Which rule: for the greeting and the RFC 1929 status (no request yet), the first rule a
 * CONNECT from the client (and, for the status, its user) to a destination not yet known
 * matches: such a rule can have only from (and users); config.c refuses others with those
 * faults. For everything after, the rule that admitted the request.
 *
 * Shard thread only.
 */
#ifndef RINGSOCKS_FAULT_H
#define RINGSOCKS_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "fault_types.h"
#include "faultspec.h"

struct shard;

/*
 * username_params: the faults the user name asked for (its "-fault-" part, already cut off
 * the name), kept until a rule allows them. Out of memory: nothing is kept and the
 * connection is served as if it asked for none (as when a rule's faults cannot be taken);
 * never a refusal, which would count as a wrong password.
 */
void fault_ask(struct conn *c, const struct fault_set *asked);

/*
 * The greeting (user NULL) or the RFC 1929 status (user: the base name): the faults of
 * that phase that c commits, merged into c->fault, or NULL when none. SOCKS5 only.
 */
struct conn_fault *fault_before_request(struct shard *sh, struct conn *c, const char *user);

/*
 * The request was admitted by rule (its index, -1: none): c's faults from now on are
 * decided, once per rule (another address of a name, admitted by another rule, decides
 * again: its rule's faults, not the failed address's). Returns the reply code a refusal fault forces (SOCKS5 numbering; a
 * SOCKS4 client's own code, reply_0x5b-0x5d, is then in c->fault: acted FAULT_REPLY4), for
 * the caller to answer with END_FAULT and nothing tried; -1: go on. SOCKS4 and SOCKS5 clients only (not HTTP CONNECT nor transparent).
 */
int fault_request(struct shard *sh, struct conn *c, int rule);

/* Fault k acts now: counted (metrics) and named in the access log, once per connection. */
void fault_acted(struct shard *sh, struct conn *c, enum fault_kind k);

/* Handshake: sleep c->fault->wait_ms (OP_FAULT, argument 0) before the next write. */
void fault_sleep(struct shard *sh, struct conn *c, unsigned arg, uint32_t ms);

/* The relay starts: the tunnel's throttle, if it has one. */
void fault_relay_start(struct shard *sh, struct conn *c);
/* Relay direction d may read at most this much of budget before its cut (rst_/fin_). */
uint32_t fault_relay_budget(const struct conn *c, unsigned d, uint32_t budget);
/*
 * Relay direction d has nothing pending: if it has moved its cut's bytes, end the tunnel as
 * the fault says (a reset once the client has every byte, or a close) and return true
 * (closed, or waiting on OP_FAULT with argument d, counted in the direction's ops).
 */
bool fault_relay_cut(struct shard *sh, struct conn *c, unsigned d);
/* OP_FAULT completed (argument arg): the timer is no longer in flight. */
void fault_timer_done(struct conn *c, unsigned arg);

/* UDP: a pseudo-random number in 0..99, for a fault's probability (the shard's generator,
 * outbound.h, seeded from the kernel at start). */
unsigned fault_dice(struct shard *sh);

#endif
