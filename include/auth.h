/*
 * auth.h - RFC 1929 username/password sub-negotiation: parser and reply
 * encoder (pure, any thread), and the user table and credential check
 * (see below for threads).
 */
#ifndef RINGSOCKS_AUTH_H
#define RINGSOCKS_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AUTH_VERSION     0x01
#define AUTH_STATUS_OK   0x00
#define AUTH_STATUS_FAIL 0x01
/* VER ULEN UNAME(255) PLEN PASSWD(255) */
#define AUTH_REQUEST_MAX 513

#define AUTH_ERR_FAIL  (-1) /* answer status 0x01, then close */
#define AUTH_ERR_CLOSE (-2) /* not a sub-negotiation at all: close silently */

struct auth_cred {
    uint8_t ulen, plen;
    char user[256]; /* NUL-terminated */
    char pass[256]; /* NUL-terminated; wipe after use */
};

/*
 * Parse one sub-negotiation (RFC 1929 section 2) from p[0..len). Returns > 0
 * bytes consumed (cred filled), 0 when more bytes are needed, AUTH_ERR_FAIL
 * for ULEN or PLEN of 0 (RFC 1929 allows 1..255) or a NUL inside either
 * field, AUTH_ERR_CLOSE when VER is not 1. The version is judged at the
 * first byte; every AUTH_ERR_FAIL only once the whole message (whose length
 * ULEN and PLEN give even when one is 0) is in. cred is written only when
 * the result is > 0; the password then sits in cred->pass and in p, and
 * the caller wipes both. Bytes after the message are not consumed.
 */
ssize_t auth_feed(struct auth_cred *cred, const uint8_t *p, size_t len);

/* Encode the 2-byte status reply: VER=1, STATUS. Returns 2. */
size_t auth_reply(uint8_t *out, uint8_t status);

#endif
