/*
 * sock.h - small socket helpers shared by the listeners, CONNECT, BIND and
 * UDP ASSOCIATE. Plain non-blocking syscalls; any thread.
 */
#ifndef RINGSOCKS_SOCK_H
#define RINGSOCKS_SOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

struct opts;

/*
 * Bind fd to local's address with a port from [lo, hi], starting at a
 * random port of the range and trying each once; lo == 0: any port. The
 * chosen port is left in local. Returns 0 or -errno (-EADDRINUSE: range
 * exhausted).
 */
int sock_bind_range(int fd, union sockaddr_inx *local, uint16_t lo, uint16_t hi);

/*
 * TCP liveness as the options say: SO_KEEPALIVE with its idle time, interval
 * and count, and TCP_USER_TIMEOUT. On a listener it is inherited by every
 * accepted socket. Best effort: a setsockopt the kernel refuses is skipped.
 */
void sock_set_liveness(int fd, const struct opts *o);
/* The same with the values given: idle_s 0 is no keepalive, user_timeout_s 0 the kernel's. */
void sock_set_tcp_liveness(int fd, unsigned idle_s, unsigned interval_s, unsigned count,
                           unsigned user_timeout_s);

/*
 * Is addr (any port) an address of this host: does the kernel route it as local
 * (RTM_GETROUTE, rtm_type RTN_LOCAL: the host's addresses, loopback, AnyIP
 * routes)? A bind() test would say yes to everything under ip_nonlocal_bind.
 * Costs four syscalls (a netlink socket, its query and answer, its close), answered
 * within them; without netlink, the bind() test.
 */
bool sock_addr_is_local(const union sockaddr_inx *addr);

#endif
