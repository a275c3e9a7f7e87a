/*
 * transparent.h - what a mode = "transparent" listener needs of the kernel and of
 * the request it stands for: the listener's IP_TRANSPARENT, a redirected
 * connection's original destination, and that destination as a CONNECT request.
 *
 * Plain non-blocking syscalls and pure functions: any thread (the main thread
 * binds, shards ask for destinations). It never touches a connection; the
 * handshake phase (handshake.c) turns its answers into one.
 */
#ifndef RINGSOCKS_TRANSPARENT_H
#define RINGSOCKS_TRANSPARENT_H

#include <stdbool.h>

#include "addr.h"
#include "socks5.h"

/* The version byte of a transparent connection (conn.version, the access log's proto):
 * its client never spoke SOCKS. */
#define TRANSPARENT_VERSION 'T'

/*
 * Set (on) or clear IP_TRANSPARENT (IPV6_TRANSPARENT for family AF_INET6) on a
 * listening socket fd. Setting it needs CAP_NET_ADMIN or CAP_NET_RAW; tproxy
 * hands connections only to sockets that have it (redirect does not need it).
 * Returns 0 or -errno.
 */
int transparent_set(int fd, int family, bool on);

/* Does listening socket fd of family have IP_TRANSPARENT (IPV6_TRANSPARENT)? */
bool transparent_is_set(int fd, int family);

/*
 * The address accepted socket fd was meant for: what conntrack's NAT (nftables
 * redirect) rewrote, SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST; where nothing was
 * rewritten (tproxy, or a client that reached the listener itself) the socket's
 * own address, getsockname(). IPv4-mapped addresses come back as IPv4. *natted
 * (may be NULL): the destination differs from the socket's own address (a
 * conntrack entry alone, which any tracking ruleset makes, is not NAT). Returns 0
 * or -errno.
 */
int transparent_orig_dest(int fd, union sockaddr_inx *dst, bool *natted);

/*
 * The request a transparent connection to dst stands for, as the SOCKS parsers
 * would have left it: an address (never a name) and dst's port. Returns 0, or
 * -EAFNOSUPPORT for a family other than IPv4 and IPv6 (d untouched). Pure.
 */
int transparent_request(struct socks_dest *d, const union sockaddr_inx *dst);

#endif
