/*
 * handshake_types.h - the handshake context (one per connection in the
 * handshake, from the shard's slab in its registered buffer) and the shard's
 * pool of them with the queues of connections waiting for one. Owned by
 * handshake.c; the request and BIND phases use a connection's context while
 * it holds one.
 */
#ifndef RINGSOCKS_HANDSHAKE_TYPES_H
#define RINGSOCKS_HANDSHAKE_TYPES_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/time_types.h>

#include "addr.h"
#include "auth.h"
#include "egress.h"
#include "httpconnect.h"
#include "socks4.h"
#include "socks5.h"
#include "udq.h"

struct shard;
struct conn;
struct chain;
struct gsshs;
struct gssw_sess;

/* The longest client message is an HTTP CONNECT header (HTTPCONNECT_HEADER_MAX);
 * of SOCKS, an RFC 1929 auth, 513 bytes, and SOCKS4a with a 255-byte user-id and
 * host, 520. The longest reply is an HTTP error response. */
#define HS_IN_SIZE   HTTPCONNECT_HEADER_MAX
#define HS_OUT_SIZE  HTTPCONNECT_RESPONSE_MAX
#define HS_MAX_ADDRS 8

/* Handshake context flags. */
#define HSF_WRITING     0x01u /* a write to the client is in flight */
#define HSF_CLOSE_AFTER 0x02u /* close once the replies are written */
#define HSF_PROXY       0x04u /* a PROXY protocol header is due before the greeting */
#define HSF_LEFTOVER    0x08u /* pipelined bytes being written to the target */
#define HSF_DNS         0x10u /* a DNS query is out */
#define HSF_TIMED_OUT   0x20u /* the connect deadline passed */
#define HSF_AUTH_WAIT   0x40u /* the credential check is on the auth worker */

/*
 * One per connection in the handshake, from the shard's slab: the input and
 * output areas are inside the ring's registered buffer.
 */
struct hs {
    uint8_t in[HS_IN_SIZE];
    uint8_t out[HS_OUT_SIZE];
    uint16_t in_len, in_off;
    uint8_t out_len, out_off;
    uint8_t n_addrs, next_addr;
    int last_err; /* -errno of the last failed attempt */
    /* The request phase's connect attempts (RFC 8305, request.c): attempt a (0, 1) is
     * OP_CONNECT with argument a on c->tfd (0) or c->xfd (1), to addrs[att_addr[a]]. */
    uint8_t att_live;               /* bit a: attempt a's connect is in flight */
    uint8_t att_addr[2];            /* its address, an index into addrs */
    uint8_t he_flags;               /* HE_* (request.c) */
    struct __kernel_timespec he_ts; /* OP_CONNECT_DELAY's timeout, while it is in flight */
    uint32_t next_free;
    union {
        struct socks5 s5;
        struct socks4 s4;
        struct httpconnect hc;
    } p;
    struct auth_cred cred;
    /* username_params: the session the name carried (cred.user is then the base name). */
    char sess_id[EGRESS_SESSION_ID_MAX + 1];
    unsigned sess_ttl_s;
    union sockaddr_inx addrs[HS_MAX_ADDRS];
    /* SOCKS5 method 0x01 (gsshs.c) while it runs, else NULL. */
    struct gsshs *gss;
    /* Levels 1 and 2: a reference on the GSS-API session, for a UDP ASSOCIATE's datagrams
     * (udp.c takes it; otherwise dropped with the context). */
    struct gssw_sess *gss_sess;
    /* Upstream chaining (chain.c): the handshake with the parents, while it runs. */
    struct chain *chain;
    /* handshake_succeed(): what follows the reply, and its HS_* flags. */
    void (*next)(struct shard *sh, struct conn *c);
    unsigned next_flags;
};

/* hs_need_more() reads into a full buffer only while the parsers can still say "need
 * more"; out_len and out_off are bytes. */
_Static_assert(HS_IN_SIZE >= HTTPCONNECT_HEADER_MAX && HS_IN_SIZE >= SOCKS4_REQUEST_MAX &&
                   HS_IN_SIZE >= AUTH_REQUEST_MAX,
               "every handshake message fits the input");
_Static_assert(HS_OUT_SIZE >= SOCKS5_REPLY_MAX && HS_OUT_SIZE <= 255, "replies fit the output");

struct hs_pool {
    struct hs *slab;
    uint32_t count, free;
    bool fixed_bufs; /* handshake I/O with READ_FIXED/WRITE_FIXED */
    bool handoff;    /* a context was freed: handshake_handoff() gives them to waiters */
    /* Accepted connections waiting for a context: conn_ref(c, 0); those of addresses
     * holding more than client_max_handshakes wait in the second queue. */
    struct udq wait, wait_heavy;
    /* Where a complete request goes (handshake_init()). */
    void (*on_request)(struct shard *sh, struct conn *c);
};

#endif
