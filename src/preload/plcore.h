/*
 * plcore.h - the pure parts of the LD_PRELOAD socksifier (libringsocks-preload.so): the proxy
 * URL, the bypass networks, the placeholder-address table of remote DNS, the /etc/hosts check
 * and the client side of the SOCKS4/4a/5 handshake as a byte machine.
 *
 * Nothing here makes a system call: src/preload/preload.c does the I/O, the unit test drives
 * these functions directly. Callers serialise access to a struct plcore_names themselves.
 */
#ifndef RINGSOCKS_PLCORE_H
#define RINGSOCKS_PLCORE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum plcore_scheme {
    PLCORE_SOCKS4,
    PLCORE_SOCKS4A,
    PLCORE_SOCKS5,
    PLCORE_SOCKS5H,
};

struct plcore_proxy {
    enum plcore_scheme scheme;
    char host[256];
    uint16_t port;
    char user[256];
    char pass[256];
    bool has_auth;
};

/* Parses curl's proxy URL syntax: socks4|socks4a|socks5|socks5h://[user[:pass]@]host[:port][/],
 * host an IPv4 literal, [IPv6] or a name; user and pass %-decoded; the port defaults to 1080
 * (tools/socksload/url.c does the parsing). Returns 0, or -EINVAL with why in err (no socks
 * scheme: curl reads a bare host:port as an HTTP proxy). */
int plcore_proxy_parse(struct plcore_proxy *px, const char *url, char *err, size_t errlen);

/* Whether the names of the scheme are resolved by the proxy (socks4a, socks5h). */
bool plcore_remote_dns(enum plcore_scheme scheme);

struct plcore_net {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

/* "10.0.0.0/8", "fd00::/8", "192.0.2.1" (a host). Returns 0 or -EINVAL. */
int plcore_net_parse(struct plcore_net *net, const char *s);

/* Whether sa (AF_INET, AF_INET6; an IPv4-mapped IPv6 address counts as IPv4) is in net. */
bool plcore_net_match(const struct plcore_net *net, const struct sockaddr *sa);

/* The IPv4 address of sa in host order, also for an IPv4-mapped IPv6 address; false if none. */
bool plcore_sa_ipv4(const struct sockaddr *sa, uint32_t *ip);

/* Remote DNS: a name gets a placeholder IPv4 address base + 1 + slot, slot < cap; connect()
 * maps it back. When the table is full the oldest slot is reused. */
#define PLCORE_NAME_MAX 255
struct plcore_names {
    uint32_t base; /* network, host order */
    uint32_t cap;  /* slots: at most the range's size - 2 */
    uint32_t next;
    char (*name)[PLCORE_NAME_MAX + 1];
};

/* The placeholder of name (assigned when new), host order; 0 when name is too long. */
uint32_t plcore_names_get(struct plcore_names *t, const char *name);

/* The name of placeholder ip (host order), or NULL when ip is none of the table's. */
const char *plcore_names_lookup(const struct plcore_names *t, uint32_t ip);

/* Whether the hosts(5) text names name (case-insensitive, canonical name or alias). */
bool plcore_hosts_has(const char *text, size_t len, const char *name);

/* The SOCKS client handshake. dest is a name (remote DNS) or an address. */
struct plcore_dest {
    char name[PLCORE_NAME_MAX + 1]; /* "" when addr is set */
    struct sockaddr_storage addr;
    uint16_t port; /* host order */
};

struct plcore_hs {
    const struct plcore_proxy *px;
    struct plcore_dest dest;
    uint8_t cmd; /* SOCKS5 CONNECT (1, what plcore_hs_start sets) or UDP ASSOCIATE (3) */
    int stage;
    uint8_t out[600];
    size_t out_len, out_off;
    uint8_t in[300];
    size_t in_len, in_want;
};

/* Starts the handshake: the first message is in out. Returns 0 or -errno (-EAFNOSUPPORT: an
 * IPv6 destination over SOCKS4, -EINVAL: a name over a scheme without remote DNS). */
int plcore_hs_start(struct plcore_hs *hs, const struct plcore_proxy *px,
                    const struct plcore_dest *dest);

/* After out was sent in full, or in_len reached in_want: the next stage. Returns 1 when the
 * tunnel is open, 0 to go on (send out[out_off..out_len), then read until in_len == in_want),
 * -errno when the proxy refused (its reply code mapped: see docs/routing.md). */
int plcore_hs_next(struct plcore_hs *hs);

/* After a SOCKS5 handshake returned 1: the reply's BND.ADDR and BND.PORT into ss (IPv4 or
 * IPv6). Returns 0, or -EAFNOSUPPORT when the proxy named a host. */
int plcore_hs_bound(const struct plcore_hs *hs, struct sockaddr_storage *ss, socklen_t *len);

/* The SOCKS5 UDP header (RFC 1928 section 7) for dest into out (at least 262 bytes): its
 * length, or -EINVAL for a name over a scheme without remote DNS. */
int plcore_udp_header(uint8_t *out, const struct plcore_dest *dest);

/* Parses a relayed datagram's header: the payload's offset in p, the source into src (a name
 * is returned in src->name). Returns the offset, or -EINVAL (short, fragmented, bad ATYP). */
int plcore_udp_parse(const uint8_t *p, size_t len, struct plcore_dest *src);

#endif
