/*
 * egress.h - where a tunnel leaves from: pools of source addresses, the
 * choice of one per tunnel (random, or sticky for a session named in the
 * user name), the outbound socket settings a rule may carry, and applying
 * them to a socket.
 *
 * Pools and rule settings are built on the control thread (config.c,
 * users.c, policy.c), then immutable inside the policy snapshot and read by
 * every shard. Choosing is pure and allocation-free; applying is a few
 * non-blocking setsockopt()/bind() calls on the shard that owns the socket.
 */
#ifndef RINGSOCKS_EGRESS_H
#define RINGSOCKS_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "faultspec.h"
#include "lim.h"

struct egress_pool;
struct via_list;

/* Control thread: an empty pool; NULL when out of memory. */
struct egress_pool *egress_pool_new(void);
void egress_pool_free(struct egress_pool *p);

/*
 * Add one entry: an address ("203.0.113.7", "2001:db8::7") or a prefix
 * ("2001:db8:1::/64"; host bits set are an error, as in the rules). An
 * IPv4-mapped address counts as IPv4. 0, or -EINVAL / -ENOMEM with why.
 */
int egress_pool_add(struct egress_pool *p, const char *entry, char *why, size_t whycap);
/* Pure: is entry a valid pool entry? (The options table checks with it.) 0 or -EINVAL, why. */
int egress_entry_check(const char *entry, char *why, size_t whycap);
/* Control thread: a pool of every entry of "a,b,c"; NULL with why on error or when empty. */
struct egress_pool *egress_pool_parse_csv(const char *csv, char *why, size_t whycap);

/* Does p hold an address of family (AF_INET, AF_INET6)? */
bool egress_pool_has(const struct egress_pool *p, int family);

/*
 * Pure: the address of p's family part that 128 bits of r select, port 0.
 * Each address of the part is equally likely for uniform r (ranges count
 * by size, a range larger than 2^96 as 2^96); never an IPv4 prefix's
 * network or broadcast address, never an IPv6 prefix's all-zero host (the
 * subnet-router anycast address). -EAFNOSUPPORT when p has no address of
 * family.
 */
int egress_pick(const struct egress_pool *p, int family, const uint64_t r[2],
                union sockaddr_inx *out);

/* A session named in the user name: "alice-session-ab12" or "alice-session-ab12-ttl-600". */
struct egress_session {
    const char *id; /* inside the name, not terminated */
    size_t id_len;  /* 0: no session */
    unsigned ttl_s; /* from -ttl-, 0: not given */
};

#define EGRESS_SESSION_ID_MAX 64

/*
 * Pure: split a user name into its base and the session parameters. No
 * "-session-" in name: base_len = strlen(name), no session, 0. Otherwise the
 * base is what comes before it (1..), the ID 1..64 bytes of [A-Za-z0-9_],
 * then optionally "-ttl-" and 1..9 digits: 0, or -EINVAL for anything else
 * (the login is refused).
 */
int egress_user_params(const char *name, size_t *base_len, struct egress_session *s);
/* Pure: does a user name contain a parameter keyword ("-session-", "-ttl-", "-fault-")? */
bool egress_name_has_keyword(const char *name);

/*
 * Pure: the 128 bits that pick a session's address: a keyed hash
 * (SipHash-2-4, 128-bit output) of the base user, the session ID, the TTL,
 * the TTL bucket (wall_s / ttl) and the family. The same on every shard and
 * every node with the same key.
 */
void egress_session_bits(const uint8_t key[16], const char *user, size_t user_len,
                         const struct egress_session *s, unsigned ttl_s, uint64_t wall_s,
                         int family, uint64_t out[2]);
/* Control thread: the 16-byte session key from the configured secret ("" included). */
void egress_session_key(const char *secret, uint8_t key[16]);

/* What an allow rule says about the tunnels it admits; one per rule, the acl owns it. */
struct egress_rule {
    struct egress_pool *pool; /* NULL: the rule names none */
    int8_t fallback;          /* -1: not set (the global egress_fallback decides), 0, 1 */
    uint8_t family;           /* enum happy_family (happy.h): which addresses, in what order */
    bool has_mark;
    int8_t keepalive;       /* -1: as the global keepalive_* settings; 0 off; 1 on */
    int8_t fastopen;        /* -1/0: no; 1: TCP_FASTOPEN_CONNECT */
    int32_t user_timeout_s; /* -1: as the global user_timeout */
    uint32_t mark;
    /* limits and client_limits (lim.h): override the user's and the client address's
     * for the tunnels this rule admits; unset fields leave them as they are. */
    bool has_lim;
    struct lim_conf lim, client_lim;
    /* via: the parent proxies its tunnels go through (via.h), one reference; NULL: direct. */
    struct via_list *via;
    /* fault: the faults its connections commit; fault_allow: a user name may ask for any
     * (fault.h). */
    struct fault_set fault;
    bool fault_allow;
};

/* An egress_rule with nothing set. */
void egress_rule_init(struct egress_rule *r);
/* Frees r and its pool; for acl_set_data(). */
void egress_rule_free(void *r);

struct opts;

/*
 * Shard: make fd (a stream socket, not yet bound or connected, family of src)
 * leave from src: IP_FREEBIND / IPV6_FREEBIND (egress_freebind()),
 * IP_BIND_ADDRESS_NO_PORT (the port is chosen at connect() against the whole
 * 4-tuple, so one address does not run out of ports), then bind(). 0 or -errno.
 */
int egress_bind(int fd, const union sockaddr_inx *src);
/*
 * IP_FREEBIND or IPV6_FREEBIND: any address of a prefix routed to the host as
 * local can be a source without being configured. Best effort.
 */
void egress_freebind(int fd, int family);
/* SO_MARK of rule r (NULL, or no mark: nothing). 0 or -errno. */
int egress_mark(int fd, const struct egress_rule *r);

/*
 * Shard: the outbound socket settings of rule r (NULL: none) on a target
 * socket, falling back to the global ones in o: keepalive, TCP_USER_TIMEOUT,
 * SO_MARK, and TCP_FASTOPEN_CONNECT only with_data (the client's bytes
 * already wait to go out with the SYN: without them a deferred connect
 * would send no SYN until the client speaks, and a protocol where the
 * server speaks first would hang). 0, or -errno when SO_MARK cannot be set
 * (the tunnel must not leave unmarked).
 */
int egress_sockopts(int fd, const struct egress_rule *r, const struct opts *o, bool with_data);

#endif
