/*
 * gsshs.h - SOCKS5 method 0x01 inside the handshake (RFC 1961 sections 3 and 4):
 * the method reply, the context establishment tokens, the protection-level
 * subnegotiation. The shard only frames and moves bytes (gssframe.h); every
 * GSS-API call is a job for the shard's worker (gssw.h).
 *
 * When the level is agreed, the handshake goes on with the SOCKS request:
 *  - level 0 (curl's "no protection"): in the clear on the client's socket;
 *  - levels 1 and 2: the client's socket goes to the worker, which unwraps
 *    and wraps every message from then on, and the connection's client
 *    socket becomes the shard's end of a socketpair (gssw.h): the request,
 *    the replies, BIND and the relay run over it unchanged.
 *
 * Shard thread only. The handshake context holds the state (struct hs.gss)
 * while the method runs; the handshake's phase table routes OP_GSS_READ,
 * OP_GSS_WRITE and the worker's answers here.
 */
#ifndef RINGSOCKS_GSSHS_H
#define RINGSOCKS_GSSHS_H

#include <stddef.h>
#include <stdint.h>

struct shard;
struct conn;
struct gssw_job;
struct io_uring_cqe;

/*
 * The client chose method 0x01: answer "05 01" and run the method. p[0..len) are bytes
 * the client sent after its greeting (its first token, often). On success the handshake
 * resumes through done(sh, c, left, n) with the bytes after the level message (level 0;
 * none for levels 1 and 2, whose bytes went to the worker).
 */
void gsshs_start(struct shard *sh, struct conn *c, const uint8_t *p, size_t len,
                 void (*done)(struct shard *sh, struct conn *c, const uint8_t *left, size_t n));
/* A completion of OP_GSS_READ or OP_GSS_WRITE. */
void gsshs_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe);
/* The worker's answer to the method's job. */
void gsshs_on_answer(struct shard *sh, struct conn *c, struct gssw_job *j);
/* The context is being given back: free the method's state, end its session. */
void gsshs_release(struct shard *sh, struct conn *c);

#endif
