/*
 * socks5.h - SOCKS5 (RFC 1928) handshake parser and reply encoder.
 *
 * Pure functions over byte buffers: no sockets, no allocation, no globals,
 * callable from any thread. The caller accumulates the client's bytes in a
 * buffer and calls socks5_feed() with everything not yet consumed; a message
 * split at any byte boundary simply answers "need more" until it is whole.
 */
#ifndef RINGSOCKS_SOCKS5_H
#define RINGSOCKS_SOCKS5_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SOCKS5_VERSION 0x05

/* Authentication methods (RFC 1928 section 3). */
#define SOCKS5_METHOD_NONE     0x00
#define SOCKS5_METHOD_GSSAPI   0x01
#define SOCKS5_METHOD_PASSWORD 0x02
#define SOCKS5_METHOD_REJECT   0xFF

/* Commands (section 4). */
#define SOCKS5_CMD_CONNECT 0x01
#define SOCKS5_CMD_BIND    0x02
#define SOCKS5_CMD_UDP     0x03

/* Address types (section 4). */
#define SOCKS5_ATYP_IPV4   0x01
#define SOCKS5_ATYP_DOMAIN 0x03
#define SOCKS5_ATYP_IPV6   0x04

/* Reply codes (section 6). */
#define SOCKS5_REP_SUCCEEDED    0x00
#define SOCKS5_REP_GENERAL      0x01
#define SOCKS5_REP_NOT_ALLOWED  0x02
#define SOCKS5_REP_NET_UNREACH  0x03
#define SOCKS5_REP_HOST_UNREACH 0x04
#define SOCKS5_REP_REFUSED      0x05
#define SOCKS5_REP_TTL_EXPIRED  0x06
#define SOCKS5_REP_CMD_UNSUPP   0x07
#define SOCKS5_REP_ATYP_UNSUPP  0x08

/*
 * Negative results of socks5_feed() other than -SOCKS5_REP_*:
 * SOCKS5_ERR_NO_METHOD: answer "05 FF" and close (section 3).
 * SOCKS5_ERR_CLOSE:     not SOCKS5 at all, or malformed beyond a reply: close silently.
 * SOCKS5_ERR_BAD_NAME:  a DOMAINNAME no host can have (hostname.h): answer
 *                       SOCKS5_REP_HOST_UNREACH, the reply DNS would have led to, and close.
 */
#define SOCKS5_ERR_NO_METHOD (-0x100)
#define SOCKS5_ERR_CLOSE     (-0x101)
#define SOCKS5_ERR_BAD_NAME  (-0x102)

/* Longest messages: greeting 2+255, request 4+1+255+2. */
#define SOCKS5_GREETING_MAX 257
#define SOCKS5_REQUEST_MAX  262
/* Longest reply: 4 + 16 (IPv6) + 2. */
#define SOCKS5_REPLY_MAX    22

enum socks5_phase {
    SOCKS5_PHASE_GREETING = 0,
    SOCKS5_PHASE_AUTH, /* RFC 1929 sub-negotiation: auth_feed(), then set PHASE_REQUEST */
    SOCKS5_PHASE_GSS,  /* RFC 1961 (gssframe.h) on the caller's side, then set PHASE_REQUEST */
    SOCKS5_PHASE_REQUEST,
    SOCKS5_PHASE_DONE,
};

/*
 * A destination as the client named it: an address, or a host name to
 * resolve. A name that is an IP literal is stored as that address, and a
 * name is always in hostname.h's normal form (lower case, no trailing dot).
 */
struct socks_dest {
    uint8_t atyp;     /* SOCKS5_ATYP_* */
    uint8_t name_len; /* SOCKS5_ATYP_DOMAIN: bytes in name, 1..255 */
    uint16_t port;    /* host byte order */
    union {
        struct in_addr v4;
        struct in6_addr v6;
        char name[256]; /* NUL-terminated, at most HOSTNAME_MAX bytes */
    } u;
};

/* Authentication methods a server may require: GSS-API and username/password. */
#define SOCKS5_AUTH_METHODS 2

struct socks5 {
    enum socks5_phase phase;
    bool auth_required; /* one of methods[] must be offered (else 0x00) */
    uint8_t n_methods;
    uint8_t methods[SOCKS5_AUTH_METHODS]; /* the server's, in its order of preference */
    uint8_t method;                       /* chosen after the greeting: SOCKS5_METHOD_* */
    uint8_t cmd;                          /* after the request: SOCKS5_CMD_* */
    uint32_t offered;                     /* bit m set when the client offered method m (m < 32) */
    struct socks_dest dest;
};

/*
 * Set d from a name as the client sent it (p[0..len), no NUL needed): an
 * IPv4 or IPv6 literal becomes SOCKS5_ATYP_IPV4/IPV6 with that address (the
 * port is left alone), anything else must pass hostname_norm() and is kept
 * in its normal form. Returns 0, or < 0 with d untouched.
 */
int socks_dest_set_name(struct socks_dest *d, const uint8_t *p, size_t len);

/*
 * For the access log of a request refused with SOCKS5_ERR_BAD_NAME (or SOCKS4a's
 * SOCKS4_ERR_BAD_NAME): its command (SOCKS5 numbering), DST.PORT and the name as
 * sent, cut at a NUL, NUL-terminated in name. p[0..len) starts at the request (byte 0
 * is its version, 4 or 5). Returns 0, or -1 when p holds no such whole request.
 */
int socks_bad_name(const uint8_t *p, size_t len, char name[256], uint16_t *port, uint8_t *cmd);

/* Start a handshake: the parser then expects the greeting. */
void socks5_init(struct socks5 *st);

/*
 * Consume one complete message of the current phase from p[0..len).
 * Returns > 0 bytes consumed (the phase advanced: after the greeting
 * st->method holds the method to answer, SOCKS5_METHOD_REJECT never, since
 * that is returned as SOCKS5_ERR_NO_METHOD), 0 when more bytes are needed,
 * or < 0: -SOCKS5_REP_* (send that reply, then close), SOCKS5_ERR_NO_METHOD,
 * SOCKS5_ERR_BAD_NAME or SOCKS5_ERR_CLOSE. A DOMAINNAME that is an IP
 * literal comes back as that address (socks_dest_set_name()). In PHASE_AUTH
 * it answers SOCKS5_ERR_CLOSE: that message belongs to auth_feed(). CONNECT,
 * BIND and UDP ASSOCIATE are accepted; st->cmd says which.
 */
ssize_t socks5_feed(struct socks5 *st, const uint8_t *p, size_t len);

/*
 * Server policy for the greeting: which method to pick. Default (after
 * socks5_init) is no-auth: the client must offer 0x00. With methods (GSSAPI,
 * PASSWORD; others are ignored, n 0 is no-auth) the first of them, in the
 * server's order, that the client offered; the phase after the greeting is
 * SOCKS5_PHASE_AUTH for a password, SOCKS5_PHASE_GSS for GSS-API.
 */
void socks5_set_methods(struct socks5 *st, const uint8_t *methods, unsigned n);
/* The same with methods {PASSWORD} (required) or none. */
void socks5_set_password_required(struct socks5 *st, bool required);

/* Encode the method-selection answer: 2 bytes. Returns 2. */
size_t socks5_method_reply(uint8_t *out, uint8_t method);

/*
 * Encode a reply (section 6) into out (at least SOCKS5_REPLY_MAX bytes).
 * bnd may be NULL (or of a family other than AF_INET/AF_INET6): the address
 * is then 0.0.0.0:0. An IPv4-mapped IPv6 address is written as IPv4.
 * Returns the number of bytes written (10 or 22).
 */
size_t socks5_reply(uint8_t *out, uint8_t rep, const struct sockaddr *bnd);

/* Map a negative errno from connect() or name resolution to a reply code. */
uint8_t socks5_rep_from_errno(int neg_errno);

/*
 * UDP ASSOCIATE datagram header (section 7): RSV(2)=0 FRAG ATYP DST.ADDR
 * DST.PORT, then the payload.
 *
 * socks5_udp_parse() reads the header of a whole datagram p[0..len) into
 * dest and *frag and returns the header length (the payload starts there,
 * and may be empty), or -1 when the datagram is malformed: too short for
 * its ATYP, RSV not 0, unknown ATYP, or a domain socks_dest_set_name()
 * refuses (an IP literal comes back as that address). A FRAG other than 0 is
 * returned in *frag for the caller to drop (we do not reassemble). dest and
 * *frag are written only when it returns > 0.
 *
 * socks5_udp_header() writes the header for a datagram from the remote
 * address src (AF_INET or AF_INET6) into out (at least SOCKS5_UDP_HDR_MAX
 * bytes) and returns its length (10 or 22). An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, from a dual-stack socket) is written as IPv4; NULL or
 * another family as 0.0.0.0:0. FRAG is always 0.
 */
#define SOCKS5_UDP_HDR_MAX 262
ssize_t socks5_udp_parse(const uint8_t *p, size_t len, struct socks_dest *dest, uint8_t *frag);
size_t socks5_udp_header(uint8_t *out, const struct sockaddr *src);

#endif
