/*
 * socks4.c - SOCKS4 and SOCKS4a request parser and reply encoder.
 *
 * Owns nothing: pure functions over caller-provided buffers, safe on any
 * thread. Must never touch a socket, allocate, or write to st before a
 * request is complete (a caller may keep offering the same st).
 *
 * Protocol: the SOCKS4 memo (Ying-Da Lee, "SOCKS: A protocol for TCP proxy
 * across firewalls") and its 4a extension ("SOCKS 4A: A Simple Extension to
 * SOCKS 4 Protocol").
 */
#include "socks4.h"

#include <stdbool.h>
#include <string.h>

/* VN CD DSTPORT(2) DSTIP(4): the fixed part before USERID. */
#define SOCKS4_FIXED_LEN 8

/*
 * Find the NUL that ends a string of at most max bytes starting at p[off].
 * Returns its offset, 0 when the string may still end within the limit
 * (more bytes needed), or -1 when max + 1 bytes are in without a NUL.
 * off > 0, so 0 never names a real NUL.
 */
static ssize_t
find_nul(const uint8_t *p, size_t len, size_t off, size_t max)
{
    size_t avail = len > off ? len - off : 0;
    size_t scan = avail < max + 1 ? avail : max + 1;
    const uint8_t *nul = memchr(p + off, 0, scan);

    if (nul)
        return (ssize_t)(nul - p);
    return scan == max + 1 ? -1 : 0;
}

/* DSTIP 0.0.0.x with x != 0 announces a host name (SOCKS4a). */
static bool
is_socks4a(const uint8_t *ip)
{
    return ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0;
}

ssize_t
socks4_feed(struct socks4 *st, const uint8_t *p, size_t len)
{
    if (len < 1)
        return 0;
    if (p[0] != SOCKS4_VERSION)
        return SOCKS4_ERR_CLOSE;
    if (len < SOCKS4_FIXED_LEN)
        return 0;

    ssize_t uid_end = find_nul(p, len, SOCKS4_FIXED_LEN, SOCKS4_USERID_MAX);
    if (uid_end < 0)
        return SOCKS4_ERR_REJECT;
    if (uid_end == 0)
        return 0;

    bool is_4a = is_socks4a(p + 4);
    size_t host_off = (size_t)uid_end + 1;
    ssize_t host_end = 0;
    size_t total = host_off;
    if (is_4a) {
        host_end = find_nul(p, len, host_off, SOCKS4_HOST_MAX);
        if (host_end < 0)
            return SOCKS4_ERR_REJECT;
        if (host_end == 0)
            return 0;
        total = (size_t)host_end + 1;
    }

    /*
     * Like SOCKS5, the command is judged only once the whole request is in:
     * the reject then reaches a client that has finished sending, instead
     * of racing the rest of its request (closing on unread bytes sends RST).
     */
    uint8_t cmd = p[1];
    if (cmd != SOCKS4_CMD_CONNECT && cmd != SOCKS4_CMD_BIND)
        return SOCKS4_ERR_REJECT;

    /* The host name (empty included) is checked as SOCKS5's are: before any rule,
     * hosts table or resolver sees it, and an IP literal becomes that address. */
    struct socks_dest dest = {.atyp = SOCKS5_ATYP_IPV4, .port = (uint16_t)(p[2] << 8 | p[3])};
    if (is_4a) {
        if (socks_dest_set_name(&dest, p + host_off, (size_t)host_end - host_off) < 0)
            return SOCKS4_ERR_BAD_NAME;
    } else {
        memcpy(&dest.u.v4, p + 4, 4);
    }

    size_t uid_len = (size_t)uid_end - SOCKS4_FIXED_LEN;
    memset(st, 0, sizeof(*st));
    st->cmd = cmd;
    st->is_4a = is_4a;
    st->userid_len = (uint8_t)uid_len;
    memcpy(st->userid, p + SOCKS4_FIXED_LEN, uid_len);
    st->dest = dest;
    return (ssize_t)total;
}

size_t
socks4_reply(uint8_t *out, uint8_t cd, const struct sockaddr *bnd)
{
    /* VN of a reply is 0, not 4. */
    out[0] = 0;
    out[1] = cd;
    if (bnd && bnd->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)bnd;
        memcpy(out + 2, &s4->sin_port, 2);
        memcpy(out + 4, &s4->sin_addr, 4);
    } else {
        memset(out + 2, 0, 6);
    }
    return SOCKS4_REPLY_LEN;
}
