/*
 * socks4.h - SOCKS4 and SOCKS4a request parser and reply encoder.
 *
 * Pure functions over byte buffers: no sockets, no allocation, no globals,
 * callable from any thread. As with socks5.h, the caller feeds everything
 * received and not yet consumed; a request split anywhere answers "need
 * more" until it is whole.
 *
 * Request: VN=4 CD DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL]. SOCKS4a is
 * signalled only by DSTIP 0.0.0.x with x != 0; the host name follows the
 * user-id's NUL. Reply: always 8 bytes, VN=0, CD 90 granted / 91 rejected.
 */
#ifndef RINGSOCKS_SOCKS4_H
#define RINGSOCKS_SOCKS4_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "socks5.h" /* struct socks_dest */

#define SOCKS4_VERSION     0x04
#define SOCKS4_CMD_CONNECT 0x01
#define SOCKS4_CMD_BIND    0x02

#define SOCKS4_REP_GRANTED  90
#define SOCKS4_REP_REJECTED 91

#define SOCKS4_USERID_MAX  255
#define SOCKS4_HOST_MAX    255
#define SOCKS4_REPLY_LEN   8
/* 8 + 255 + NUL + 255 + NUL */
#define SOCKS4_REQUEST_MAX 520

/* Negative results of socks4_feed(). */
#define SOCKS4_ERR_REJECT   (-SOCKS4_REP_REJECTED) /* send CD 91, then close */
#define SOCKS4_ERR_CLOSE    (-0x101)               /* not SOCKS4: close silently */
#define SOCKS4_ERR_BAD_NAME (-0x102)               /* 4a host no host can have: CD 91, close */

struct socks4 {
    uint8_t cmd;   /* SOCKS4_CMD_* */
    uint8_t is_4a; /* the destination is a host name */
    uint8_t userid_len;
    char userid[SOCKS4_USERID_MAX + 1]; /* NUL-terminated */
    /*
     * SOCKS4: atyp SOCKS5_ATYP_IPV4. SOCKS4a: the host name as
     * socks_dest_set_name() keeps it (normal form, or an IP literal as that
     * address).
     */
    struct socks_dest dest;
};

/*
 * Parse one request from p[0..len). Returns > 0 bytes consumed (st filled;
 * bytes after the request, e.g. pipelined data, are not consumed), 0 when
 * more bytes are needed, SOCKS4_ERR_REJECT for a request that is SOCKS4 but
 * unacceptable (unknown command, user-id or host name over 255 bytes),
 * SOCKS4_ERR_BAD_NAME for a 4a host name no host can have (empty included,
 * hostname.h), or SOCKS4_ERR_CLOSE when the first byte is not 4. A user-id
 * or host name longer than allowed is rejected as soon as the limit is
 * passed, without waiting for its NUL; an unknown command only once the
 * whole request is in. st is written only when the request is complete.
 * DSTIP 0.0.0.0 is plain SOCKS4 (atyp IPv4, address 0.0.0.0).
 */
ssize_t socks4_feed(struct socks4 *st, const uint8_t *p, size_t len);

/*
 * Encode the 8-byte reply into out. bnd gives DSTPORT/DSTIP (AF_INET); NULL
 * or any other family (IPv6 included) is written as 0.0.0.0:0. Returns 8.
 */
size_t socks4_reply(uint8_t *out, uint8_t cd, const struct sockaddr *bnd);

#endif
