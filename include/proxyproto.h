/*
 * proxyproto.h - PROXY protocol v1 and v2 header parser (HAProxy's
 * proxy-protocol.txt), for listeners behind a load balancer.
 *
 * Pure functions over byte buffers: no sockets, no allocation, no globals,
 * callable from any thread. As with socks4.h and socks5.h, the caller feeds
 * everything received and not yet consumed; a header split anywhere answers
 * "need more" until it is whole, and a header that can no longer become
 * valid is refused as soon as the byte that breaks it is in.
 *
 * v1: one line "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN
 * ...\r\n", at most 107 bytes with its CRLF, single spaces, addresses as
 * inet_pton() reads them, ports 0-65535 in decimal without leading zeros.
 * v2: the 12-byte signature, version 2, command LOCAL or PROXY, for PROXY
 * family AF_INET or AF_INET6 over STREAM (a LOCAL's family is ignored, as
 * the specification says); TLVs after the addresses are checked to fit and
 * skipped. A v2 header longer than PROXYPROTO_V2_MAX bytes is refused: the
 * specification asks receivers to take at least 536 bytes (the smallest
 * IPv4 TCP segment), no sender we know of sends more.
 */
#ifndef RINGSOCKS_PROXYPROTO_H
#define RINGSOCKS_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"

#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_V2_MAX 536
#define PROXYPROTO_MAX    PROXYPROTO_V2_MAX

/* Negative results of proxyproto_feed(): each ends the connection. */
#define PROXYPROTO_ERR_SIG    (-1) /* neither "PROXY " nor the v2 signature */
#define PROXYPROTO_ERR_V1     (-2) /* a v1 line that breaks the syntax */
#define PROXYPROTO_ERR_V1_LEN (-3) /* 107 bytes without the line's CRLF */
#define PROXYPROTO_ERR_V2_VER (-4) /* v2 signature, version other than 2 */
#define PROXYPROTO_ERR_V2_CMD (-5) /* v2 command other than LOCAL or PROXY */
#define PROXYPROTO_ERR_V2_FAM (-6) /* v2 PROXY for other than TCP over IPv4 or IPv6 */
#define PROXYPROTO_ERR_V2_LEN (-7) /* v2 length shorter than its addresses or over the bound */
#define PROXYPROTO_ERR_V2_TLV (-8) /* a v2 TLV that does not fit the header */

struct proxyproto {
    uint8_t version; /* 1 or 2 */
    uint8_t local;   /* v2 LOCAL or v1 UNKNOWN: no addresses (a health check) */
    /* The connection as the balancer saw it (family 0 when local): src is the real client. */
    union sockaddr_inx src, dst;
};

/*
 * Parse one header from p[0..len). Returns > 0 bytes consumed (pp filled;
 * bytes after the header, e.g. the SOCKS greeting, are not consumed), 0 when
 * more bytes are needed, or a PROXYPROTO_ERR_*. pp is written only when the
 * header is complete.
 */
ssize_t proxyproto_feed(struct proxyproto *pp, const uint8_t *p, size_t len);

#endif
