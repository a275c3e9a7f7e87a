/*
 * gssw.h - each shard's GSS-API worker (RFC 1961, SOCKS5 method 0x01): one
 * thread per shard that makes every GSS-API call for the shard's
 * connections, so that none runs on the shard. MIT's gss_accept_sec_context
 * reads the keytab and writes the replay cache, and gss_wrap/gss_unwrap
 * with confidentiality cost about 120 us per 16 KiB (docs/design.md, "GSS-API:
 * where the work runs").
 *
 * The worker does two things:
 *  - jobs from the shard, answered one by one: a context establishment step
 *    (GSSW_ACCEPT), the protection-level message (GSSW_LEVEL), the end of a
 *    session the shard no longer needs (GSSW_FREE);
 *  - protected tunnels (GSSW_PROTECT, levels 1 and 2): the worker takes the
 *    client's socket and one end of a socketpair whose other end the shard
 *    keeps as the connection's client socket. Every mtyp-3 frame from the
 *    client is unwrapped and its payload written to the pair; every byte the
 *    shard writes to its end is wrapped and framed to the client. The shard
 *    serves the rest of the handshake (the request and its replies, which RFC
 *    1961 section 5 also protects), BIND, limits and the relay over its end
 *    exactly as for any client, in plain SOCKS.
 *
 * Ownership. A session (struct gssw_sess: the context and the credential
 * reference) is created by the shard (gssw_sess_new) and named by it in jobs,
 * but only the worker reads or writes what is inside: a context is used by
 * one thread. The shard ends it with GSSW_FREE, or hands it over with
 * GSSW_PROTECT, after which the worker alone owns it and frees it when the
 * tunnel ends. A job is the shard's until gssw_submit(), the worker's until it
 * comes back through the connection's phase (on_gss) or, when the connection
 * is gone by then, is freed by the shard (gssw_job_free).
 *
 * Threads: every function here runs on the shard's thread except the
 * credential's (control thread or main thread) and gssw_init/gssw_fini (main
 * thread, before the shard starts / after it stopped).
 */
#ifndef RINGSOCKS_GSSW_H
#define RINGSOCKS_GSSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gssacc.h"

struct shard;
struct gssw_sess; /* opaque to the shard */

enum gssw_kind {
    GSSW_ACCEPT = 1, /* in: a context token; out: the token to send back */
    GSSW_LEVEL,      /* in: the protection-level message's token; out: the reply's token */
    GSSW_PROTECT,    /* the tunnel is the worker's: no answer */
    GSSW_FREE,       /* the shard's reference on the session is dropped: no answer */
    /* A UDP ASSOCIATE's datagrams at level 1 or 2 (RFC 1961 section 5), each on its own:
     * in: a token from the client; out: its payload (the RFC 1928 header and data). */
    GSSW_UNWRAP_DGRAM,
    /* in: a datagram for the client (header and data); out: its token. */
    GSSW_WRAP_DGRAM,
};

/* GSSW_ACCEPT, GSSW_LEVEL: what the shard says, and what the worker answers. */
struct gssw_job {
    struct gssw_job *next; /* queue link */
    uint64_t ref;          /* conn_ref() of the connection the answer goes to */
    struct gssw_sess *sess;
    uint8_t kind;  /* enum gssw_kind */
    uint32_t user; /* the shard's own, left alone by the worker (a datagram's payload size) */
    /* GSSW_ACCEPT: strip the realm from the client's name */
    bool strip_realm;
    /* GSSW_LEVEL: the levels the server may grant (bit n: level n, 0-2), and whether
     * the client's message was the bare NEC octet (then the reply is bare too) */
    uint8_t levels;
    bool nec;
    /* GSSW_PROTECT: the client's socket and the worker's end of the pair */
    int cfd, pfd;
    /* --- answered by the worker --- */
    /* ACCEPT: 1 complete, 0 continue, < 0 refused; LEVEL: the level granted, < 0 refused;
     * UNWRAP_DGRAM, WRAP_DGRAM: out_len, or < 0 (forged, replayed, not encrypted under level
     * 2, too large) */
    int res;
    bool can_integ, can_conf; /* ACCEPT complete: what the context can protect */
    uint8_t asked;            /* LEVEL: the level the client asked for */
    char name[256];           /* ACCEPT complete: the client's principal (NUL-terminated) */
    char err[GSSACC_ERR_MAX]; /* res < 0: why, in the library's words */
    /* in: what the shard hands over (the token; PROTECT: bytes the client already sent
     * after its level message; a datagram); out: the token to send (ACCEPT, LEVEL), a
     * datagram's payload or token */
    uint32_t in_len, out_len;
    /* in the same allocation as the job: each GSSACC_TOKEN_MAX bytes (none for GSSW_FREE;
     * sized to the datagram for gssw_job_new_dgram()); out follows in, so the 4 bytes
     * before out are in's */
    uint8_t *in, *out;
    uint32_t out_cap;
};

/* Main thread: the worker thread of sh and its queues. */
int gssw_init(struct shard *sh);
void gssw_fini(struct shard *sh);
/* At start: arm the read on the worker's eventfd (OP_GSS). */
void gssw_arm(struct shard *sh);
/* OP_GSS completed: give each answer to its connection's phase (conn_gss), re-arm. */
void gssw_on_cqe(struct shard *sh);

/* A session for one client under cred (the policy snapshot's): it takes a reference at
 * once (gssacc_cred_ref), since the snapshot may be gone before the worker makes the
 * context; or NULL (no memory). The session is counted: the shard's reference (this one),
 * and one more per gssw_sess_ref(); GSSW_PROTECT moves one to the tunnel, GSSW_FREE drops
 * one, and the worker frees the session and its context with the last. */
struct gssw_sess *gssw_sess_new(struct gssacc_cred *cred);
/* One more reference for the shard (a protected UDP ASSOCIATE keeps the session for its
 * datagrams after the tunnel took the first); dropped with a GSSW_FREE job. */
void gssw_sess_ref(struct gssw_sess *s);
/* Drop the shard's reference on s: a GSSW_FREE job (s is leaked if none can be had). */
void gssw_sess_put(struct shard *sh, struct gssw_sess *s);

/* A job of kind for sess, answering conn_ref ref, or NULL (no memory). */
struct gssw_job *gssw_job_new(struct gssw_sess *sess, uint8_t kind, uint64_t ref);
void gssw_job_free(struct gssw_job *j);
/* A datagram job (GSSW_UNWRAP_DGRAM, GSSW_WRAP_DGRAM) for len bytes in, its buffers sized to
 * it (a 1,400-byte datagram's job is 3 KB, not 128 KB); NULL: no memory, or len over
 * GSSACC_TOKEN_MAX. */
#define GSSW_DGRAM_GROWTH 256
struct gssw_job *gssw_job_new_dgram(struct gssw_sess *sess, uint8_t kind, uint64_t ref, size_t len);
/* Hand j to the worker (it is the worker's from now on). */
void gssw_submit(struct shard *sh, struct gssw_job *j);

/* Counters the worker keeps (relaxed atomics, summed by the control thread). */
struct gssw_stats {
    uint64_t contexts;           /* contexts established */
    uint64_t refused;            /* context establishments refused by GSS-API */
    uint64_t levels[3];          /* protection levels granted, 0-2 */
    uint64_t level_refused;      /* protection-level messages refused */
    uint64_t tunnels;            /* protected tunnels taken (GSSW_PROTECT) */
    uint64_t open;               /* gauge: protected tunnels now */
    uint64_t wrapped, unwrapped; /* messages */
    uint64_t frame_errors;       /* malformed, oversized, forged or replayed frames: tunnel ended */
    uint64_t dgram_errors;       /* protected datagrams refused (forged, replayed, clear) */
};
void gssw_stats_read(struct shard *sh, struct gssw_stats *out);

#endif
