/*
 * gssframe.h - RFC 1961 (GSS-API authentication for SOCKS V5) wire formats:
 * the framing of context establishment tokens, the protection-level
 * subnegotiation and the per-message protected data, and the abort message.
 * Groundwork for issue #15.
 *
 * Pure functions over byte buffers: no sockets, no allocation, no globals,
 * no GSS-API calls (gss_accept_sec_context, gss_wrap and gss_unwrap belong to
 * the caller, on the auth worker thread). As with socks5.h and proxyproto.h
 * the caller feeds everything received and not yet consumed; a message split
 * anywhere answers "need more" until it is whole, and one that can no longer
 * become valid is refused as soon as the byte that breaks it is in.
 *
 * Every message but the abort is, in both directions (sections 3.4, 3.7,
 * 4.3, 5):
 *
 *     ver (1) = 0x01 | mtyp (1) | len (2, network order) | token (len octets)
 *
 *   mtyp 0x01  context establishment token (gss_init/accept_sec_context)
 *   mtyp 0x02  protection level: one octet wrapped with gss_wrap, conf_req
 *              FALSE (section 4.4); or, as the NEC reference implementation
 *              and curl --socks5-gssapi-nec send it, the bare octet (len 1)
 *   mtyp 0x03  user data wrapped with gss_wrap (section 5)
 *
 * The abort (section 3.8) is two octets, ver 0x01 and mtyp 0xff, with no
 * length and no token: what a server sends when it "refuses the client's
 * connection for any reason", then closes.
 *
 * The token is never copied: a message parsed from p has its token at
 * p + GSSFRAME_HDR_LEN, gssframe.len octets long.
 */
#ifndef RINGSOCKS_GSSFRAME_H
#define RINGSOCKS_GSSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GSSFRAME_VER        0x01
#define GSSFRAME_MTYP_CTX   0x01
#define GSSFRAME_MTYP_LEVEL 0x02
#define GSSFRAME_MTYP_DATA  0x03
#define GSSFRAME_MTYP_ABORT 0xff

#define GSSFRAME_HDR_LEN       4 /* ver, mtyp, len */
#define GSSFRAME_ABORT_LEN     2 /* ver, mtyp */
/* A bare (NEC) protection-level message: header and the level octet. */
#define GSSFRAME_LEVEL_NEC_LEN (GSSFRAME_HDR_LEN + 1)

/*
 * Token bounds, the "max" of gssframe_feed(). The length field is two
 * octets, so 65535 is the protocol's own limit ("up to 2^16 - 1 octets").
 *
 * Context tokens get all of it: a Kerberos AP-REQ carries the ticket, and
 * with an Active Directory PAC listing the user's groups that is several KB
 * and grows with every group (Windows clients allow up to 48,000 bytes by
 * default, MaxTokenSize, configurable to 65535). A lower cap would refuse
 * exactly the enterprise users this method is for; 64 KiB buffered per
 * handshake is bounded by the handshake count.
 *
 * A protection-level token is one octet wrapped: a Kerberos RFC 4121 wrap
 * token is a 16-octet header, the octet and a 12-16 octet checksum (under 64
 * octets); RFC 1964 tokens add an ASN.1 header and a confounder (under 100).
 * 512 leaves room for any mechanism and refuses a client that would make the
 * server buffer 64 KiB for one octet.
 *
 * Data frames: the sender chooses how much user data it wraps at once, and a
 * peer is free to use the whole length field, so refusing less would break
 * interoperable peers.
 */
#define GSSFRAME_TOKEN_MAX       65535
#define GSSFRAME_CTX_TOKEN_MAX   GSSFRAME_TOKEN_MAX
#define GSSFRAME_LEVEL_TOKEN_MAX 512
#define GSSFRAME_DATA_TOKEN_MAX  GSSFRAME_TOKEN_MAX

/* The mtyp values gssframe_feed() takes ("expect" is a mask of these). */
#define GSSFRAME_EXPECT_CTX       (1u << 0)
#define GSSFRAME_EXPECT_LEVEL     (1u << 1)
#define GSSFRAME_EXPECT_DATA      (1u << 2)
#define GSSFRAME_EXPECT_ABORT     (1u << 3)
/* A context token of length 0 is taken (section 3.6: the server's reply when
 * gss_accept_sec_context completed without an output token). */
#define GSSFRAME_EXPECT_CTX_EMPTY (1u << 4)

/*
 * Protection levels (section 4.2). 0 is not in RFC 1961: curl asks for it
 * as "no data protection" and goes on in the clear when it is granted; it
 * never implemented per-message protection and fails when 1-3 is granted.
 */
#define GSSFRAME_LEVEL_NONE      0
#define GSSFRAME_LEVEL_INTEG     1 /* required per-message integrity */
#define GSSFRAME_LEVEL_CONF      2 /* required integrity and confidentiality */
#define GSSFRAME_LEVEL_SELECTIVE 3 /* per message, by local configuration */

/*
 * Negative results of gssframe_feed() and gssframe_sm_feed(). Each ends the
 * connection; the caller answers with gssframe_abort() first (section 3.8:
 * "for any reason"), except after GSSFRAME_ERR_TRUNC (the peer is gone).
 */
#define GSSFRAME_ERR_VER   (-1) /* ver other than 0x01 */
#define GSSFRAME_ERR_MTYP  (-2) /* mtyp unknown, or not one this phase takes */
#define GSSFRAME_ERR_LEN   (-3) /* token longer than the bound given */
#define GSSFRAME_ERR_EMPTY (-4) /* a token of length 0 where one must be sent */
#define GSSFRAME_ERR_TRUNC (-5) /* gssframe_eof(): the stream ended inside a message */

struct gssframe {
    uint8_t mtyp; /* GSSFRAME_MTYP_* */
    uint16_t len; /* token length; the token is at p + GSSFRAME_HDR_LEN (0 for the abort) */
};

/*
 * Parse one message from p[0..len): its mtyp must be one of expect (a mask
 * of GSSFRAME_EXPECT_*), its token at most max octets (the length field
 * cannot say more than GSSFRAME_TOKEN_MAX whatever max is) and, except for a
 * context token under GSSFRAME_EXPECT_CTX_EMPTY, at least one. Returns > 0 bytes consumed, the
 * whole message (f filled; bytes after it, the next message or data, are not
 * consumed), 0 when more bytes are needed, or a GSSFRAME_ERR_*. f is written
 * only when the message is complete.
 */
ssize_t gssframe_feed(struct gssframe *f, const uint8_t *p, size_t len, unsigned expect,
                      size_t max);

/* The stream ended with len bytes not consumed: 0 when none, else GSSFRAME_ERR_TRUNC. */
int gssframe_eof(size_t len);

/* Is f a protection-level message carrying the bare level octet (the NEC form)? No
 * mechanism's wrap token is one octet long, so the length alone tells them apart; the
 * level is then p[GSSFRAME_HDR_LEN]. */
bool gssframe_is_nec(const struct gssframe *f);

/* Is lvl a protection level a client may ask for: 1-3 (section 4.2) or curl's 0? */
bool gssframe_level_known(uint8_t lvl);

/* Encoders. Each writes into out and returns the bytes written, 0 when it cannot. */

/* The header of a message whose token is n bytes (to writev with the token): 4 bytes, or
 * 0 when mtyp is not 1-3 or n is over GSSFRAME_TOKEN_MAX. */
size_t gssframe_header(uint8_t out[GSSFRAME_HDR_LEN], uint8_t mtyp, size_t n);

/* The abort message (section 3.8): 2 bytes. */
size_t gssframe_abort(uint8_t out[GSSFRAME_ABORT_LEN]);

/* The protection-level reply in the NEC form, the level unwrapped: 5 bytes. (A wrapped
 * reply is gssframe_header(GSSFRAME_MTYP_LEVEL, n) and gss_wrap's token.) */
size_t gssframe_level_nec(uint8_t out[GSSFRAME_LEVEL_NEC_LEN], uint8_t lvl);

/*
 * The server's side of the exchange, for the shard to know what it may read
 * next without knowing RFC 1961: context tokens (each handed to
 * gss_accept_sec_context on the auth worker) until GSS says complete, then
 * one protection-level message, then, when a level other than 0 was agreed,
 * data frames until the end. A client never sends an abort (section 3.5: it
 * closes), so one is refused like any other misplaced mtyp.
 */
enum gssframe_phase {
    GSSFRAME_PHASE_CTX = 0, /* context tokens from the client */
    GSSFRAME_PHASE_LEVEL,   /* the protection-level message */
    GSSFRAME_PHASE_DATA,    /* mtyp 3 frames, both ways */
    GSSFRAME_PHASE_CLEAR,   /* level 0 agreed: plain SOCKS bytes follow, no framing */
};

struct gssframe_sm {
    uint8_t phase; /* enum gssframe_phase */
};

/* A new exchange: waiting for the client's first context token. */
void gssframe_sm_init(struct gssframe_sm *sm);

/* gssframe_feed() with what the phase takes: in PHASE_CTX a non-empty context token up to
 * GSSFRAME_CTX_TOKEN_MAX; in PHASE_LEVEL one protection-level message up to
 * GSSFRAME_LEVEL_TOKEN_MAX; in PHASE_DATA a non-empty data frame. In PHASE_CLEAR there is
 * nothing to frame: GSSFRAME_ERR_MTYP. The phase is not changed. */
ssize_t gssframe_sm_feed(const struct gssframe_sm *sm, struct gssframe *f, const uint8_t *p,
                         size_t len);

/* gss_accept_sec_context returned GSS_S_COMPLETE (its last token, if any, sent): the
 * protection level comes next. Only from PHASE_CTX; returns false otherwise. */
bool gssframe_sm_complete(struct gssframe_sm *sm);

/* The server's protection-level reply carries lvl (gssframe_level_known()): data frames
 * follow, or the clear for level 0. Only from PHASE_LEVEL; returns false otherwise or for
 * an unknown level, the phase unchanged. */
bool gssframe_sm_agreed(struct gssframe_sm *sm, uint8_t lvl);

#endif
