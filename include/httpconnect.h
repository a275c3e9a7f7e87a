/*
 * httpconnect.h - HTTP CONNECT request parser and response encoder, for
 * HTTP proxy clients on the SOCKS port (http_connect = true).
 *
 * Pure functions over byte buffers: no sockets, no allocation, no globals,
 * callable from any thread. As with socks4.h and proxyproto.h, the caller
 * feeds everything received and not yet consumed; a header split anywhere
 * answers "need more" until it is whole, and a header that can no longer
 * become valid is refused as soon as the line that breaks it is in (the
 * method as soon as its space is).
 *
 * Request (RFC 9112 section 3, RFC 9110 section 9.3.6): "CONNECT" SP
 * host:port SP "HTTP/1." DIGIT, then header lines, then an empty line. Lines
 * end in CRLF or a bare LF (RFC 9112 section 2.2). The target is the
 * authority form: a host name, an IPv4 literal or an [IPv6] literal, and a
 * port 1-65535 (no zone, no user info). Header names are matched without
 * regard to case. Refused with 400: a space before a header's colon or a
 * folded line (RFC 9112 section 5), a control byte in a line, an HTTP/1.1
 * request without Host (section 3.2), two Host or two Proxy-Authorization
 * lines, a Transfer-Encoding, a Content-Length other than 0 (a CONNECT has
 * no content, and the bytes after the header belong to the tunnel). The
 * whole header must end within HTTPCONNECT_HEADER_MAX bytes.
 *
 * Proxy-Authorization "Basic" (RFC 7617, scheme without regard to case):
 * base64 of "user:password", split at the first colon (the password may
 * hold colons). A user or password that is empty, over 255 bytes or holds a
 * NUL, or base64 that does not decode, is HTTPCONNECT_AUTH_BAD: RFC 1929's
 * limits, so HTTP and SOCKS5 clients are the same users with the same rules.
 */
#ifndef RINGSOCKS_HTTPCONNECT_H
#define RINGSOCKS_HTTPCONNECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth.h"
#include "socks5.h" /* struct socks_dest, SOCKS5_REP_* */

/*
 * The longest header taken: the longest Basic credentials (255 + 1 + 255
 * bytes, 684 in base64), a 255-byte host in both the request line and Host,
 * and a browser's usual lines fit with room to spare.
 */
#define HTTPCONNECT_HEADER_MAX   2048
/* The longest response httpconnect_response() writes. */
#define HTTPCONNECT_RESPONSE_MAX 160

/* conn->version of an HTTP client (SOCKS clients have 4 or 5): the first byte was an
 * upper-case letter, the start of a method. */
#define HTTPCONNECT_VERSION 'H'

/* Negative results of httpconnect_feed(): the negated status to answer, then close. */
#define HTTPCONNECT_ERR_BAD      (-400) /* malformed request or header */
#define HTTPCONNECT_ERR_METHOD   (-405) /* a method other than CONNECT */
#define HTTPCONNECT_ERR_TOO_LONG (-431) /* no end of header within HTTPCONNECT_HEADER_MAX */
#define HTTPCONNECT_ERR_VERSION  (-505) /* HTTP/ major version other than 1 */

enum httpconnect_auth {
    HTTPCONNECT_AUTH_NONE = 0, /* no Proxy-Authorization, or a scheme other than Basic */
    HTTPCONNECT_AUTH_BASIC,    /* cred filled */
    HTTPCONNECT_AUTH_BAD,      /* Basic, but not credentials RFC 1929 could carry */
};

struct httpconnect {
    uint8_t minor; /* HTTP/1.minor */
    uint8_t auth;  /* enum httpconnect_auth */
    /* The target as socks_dest_set_name() keeps it (an IP literal as that address). */
    struct socks_dest dest;
};

/*
 * Parse one request header from p[0..len). Returns > 0 bytes consumed, the
 * whole header with its empty line (hc filled; *cred too when hc->auth is
 * HTTPCONNECT_AUTH_BASIC; bytes after the header are not consumed), 0 when
 * more bytes are needed, or an HTTPCONNECT_ERR_*. hc and cred are written only
 * when the header is complete. The password then sits in cred->pass and, in
 * base64, in p: the caller wipes both.
 */
ssize_t httpconnect_feed(struct httpconnect *hc, struct auth_cred *cred, const uint8_t *p,
                         size_t len);

/*
 * The status answering a SOCKS5 reply code (SOCKS5_REP_*): 200 for success,
 * 403 not allowed, 502 network or host unreachable or refused, 504 TTL
 * expired (the connect timed out), 503 for a general failure (the server's
 * own resources), 405 command and 400 address type not supported.
 */
unsigned httpconnect_status(uint8_t rep);

/*
 * Encode the response for status into out (at least HTTPCONNECT_RESPONSE_MAX
 * bytes): "HTTP/1.1 200 Connection established" and the empty line; every
 * other status with Content-Length: 0 and Connection: close, 405 with Allow:
 * CONNECT, 407 with Proxy-Authenticate: Basic realm="ringsocks". Returns the
 * number of bytes written.
 */
size_t httpconnect_response(uint8_t *out, unsigned status);

#endif
