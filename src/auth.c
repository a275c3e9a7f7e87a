/*
 * auth.c - RFC 1929 username/password sub-negotiation parser and status
 * reply encoder.
 *
 * Owns nothing: pure functions over caller-provided buffers, safe on any
 * thread. Must never touch a socket, allocate, or write to cred before a
 * message is complete and valid. The user table and the credential check
 * live in users.c.
 */
#include "auth.h"

#include <string.h>

/* RFC 1929 section 2: VER ULEN UNAME(ULEN) PLEN PASSWD(PLEN). */
ssize_t
auth_feed(struct auth_cred *cred, const uint8_t *p, size_t len)
{
    if (len < 1)
        return 0;
    if (p[0] != AUTH_VERSION)
        return AUTH_ERR_CLOSE;
    if (len < 2)
        return 0;
    size_t ulen = p[1];
    if (len < 2 + ulen + 1)
        return 0;
    size_t plen = p[2 + ulen];
    size_t total = 2 + ulen + 1 + plen;
    if (len < total)
        return 0;

    /*
     * Judged only once the whole message is in, even when ULEN is 0: the
     * failure status then reaches a client that has finished sending, instead
     * of racing the rest of its message (closing on unread bytes sends RST).
     */
    const uint8_t *user = p + 2;
    const uint8_t *pass = p + 2 + ulen + 1;
    if (ulen == 0 || plen == 0)
        return AUTH_ERR_FAIL;
    /* A NUL would cut the C string short: "bob\0x" must not pass as "bob". */
    if (memchr(user, 0, ulen) || memchr(pass, 0, plen))
        return AUTH_ERR_FAIL;

    cred->ulen = (uint8_t)ulen;
    memcpy(cred->user, user, ulen);
    cred->user[ulen] = '\0';
    cred->plen = (uint8_t)plen;
    memcpy(cred->pass, pass, plen);
    cred->pass[plen] = '\0';
    return (ssize_t)total;
}

size_t
auth_reply(uint8_t *out, uint8_t status)
{
    out[0] = AUTH_VERSION;
    out[1] = status;
    return 2;
}
