/*
 * acl.h - access rules: ordered, first match wins, allow or deny.
 *
 * A rule set is built once (config.c, on the control thread), then is
 * immutable and read by every shard through the RCU-published policy
 * snapshot; matching is pure and allocation-free, callable on any thread.
 * An empty condition list matches anything; a request that no rule matches
 * is denied. Conditions of one rule are ANDed, the entries of one list ORed.
 * Matching costs about the number of keys a query can match (its parent
 * domains, the prefix lengths in use), not the number of rules.
 */
#ifndef RINGSOCKS_ACL_H
#define RINGSOCKS_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

enum acl_action {
    ACL_DENY = 0,
    ACL_ALLOW = 1,
};

/* Command bits of acl_rule.cmds (0: any command). */
#define ACL_CMD_CONNECT 0x01u
#define ACL_CMD_BIND    0x02u
#define ACL_CMD_UDP     0x04u

struct acl_cidr {
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t prefix;   /* 0..32 or 0..128 */
    uint8_t addr[16]; /* network order, host bits zero */
};

struct acl_ports {
    uint16_t lo, hi; /* inclusive */
};

struct acl;

/* Control thread: an empty rule set. NULL when out of memory. */
struct acl *acl_new(void);
/* Frees the set and every copy acl_add() made; NULL is ignored. */
void acl_free(struct acl *acl);

/*
 * Control thread: append a rule. Each list may be empty (matches anything;
 * its pointer may then be NULL).
 * from, to: networks as acl_cidr_parse() gives them (host bits zero);
 *   IPv4-mapped networks are stored as IPv4. An IPv6 network shorter than
 *   /96 never matches a mapped address, as those are matched as IPv4.
 * hosts: "example.com" matches that name exactly; ".example.com" matches
 *   example.com and every name under it (label boundary: "badexample.com"
 *   does not match). Names are host names as hostname.h defines them and
 *   compare in its normal form (case-insensitively, a trailing dot
 *   ignored): "*.example.com", a UTF-8 name or "10.0.0.1" is -EINVAL (write
 *   ".example.com", the punycode form, or put the address in to).
 * ports: inclusive ranges, lo <= hi.
 * users: exact, case-sensitive user names of 1..255 bytes.
 * cmds: ACL_CMD_* bits, 0 for any.
 * Everything is copied. Returns the rule's index, or -ENOMEM/-EINVAL, in
 * which case acl is as it was.
 */
int acl_add(struct acl *acl, enum acl_action action, const struct acl_cidr *from, size_t n_from,
            const struct acl_cidr *to, size_t n_to, const char *const *hosts, size_t n_hosts,
            const struct acl_ports *ports, size_t n_ports, uint8_t cmds, const char *const *users,
            size_t n_users);

size_t acl_count(const struct acl *acl);

/* Rule flags. The rule has destination networks: a match names the address reached. */
#define ACL_RF_TO             0x01u
/* udp_source = "any": an association's datagrams may come from another address the rules admit */
#define ACL_RF_UDP_ANY_SOURCE 0x02u

/* Any thread: the ACL_RF_* flags of rule (an index acl_add() or acl_match() gave); 0 for none. */
uint8_t acl_rule_flags(const struct acl *acl, int rule);
/*
 * Control thread, before the set is published: add flags to rule (flags a
 * rule key other than the conditions sets). ACL_RF_TO is derived, not set.
 * 0 or -EINVAL.
 */
int acl_set_flags(struct acl *acl, int rule, uint8_t flags);
/* Control thread, before publishing: rule matches only a query authenticated by GSS-API
 * (RFC 1961) whose protection level is one of levels (bit n: level n, 0-2). 0 or -EINVAL. */
int acl_set_gss(struct acl *acl, int rule, uint8_t levels);

/*
 * Control thread, before the set is published: attach data to rule (the
 * settings a rule carries besides its conditions, such as egress.h's
 * struct egress_rule). The set owns it from then on and frees it with
 * data_free, which must be the same function for every rule of the set.
 * 0, -EINVAL or -ENOMEM (data is then still the caller's).
 */
int acl_set_data(struct acl *acl, int rule, void *data, void (*data_free)(void *));
/* Any thread: what acl_set_data() attached to rule, or NULL. */
void *acl_rule_data(const struct acl *acl, int rule);
/*
 * Control thread, before the set is published: name rule (the access log's
 * rule field; config.c checks the name). Copied. 0, -EINVAL or -ENOMEM.
 */
int acl_set_name(struct acl *acl, int rule, const char *name);
/* Any thread: rule's name, or NULL when it has none. */
const char *acl_rule_name(const struct acl *acl, int rule);

/*
 * "10.0.0.0/8", "::1/128", "192.0.2.7" (a host: /32 or /128). Host bits set
 * ("10.0.0.1/8", a typo for one or the other) are -EINVAL; so is anything
 * but decimal digits after the '/'. "::ffff:10.0.0.0/104" becomes
 * 10.0.0.0/8 (AF_INET). 0, or -EINVAL with *out untouched.
 */
int acl_cidr_parse(const char *s, struct acl_cidr *out);

/* Any thread: does network n hold the address a (4 or 16 bytes, network order, of family
 * fam: AF_INET or AF_INET6; a mapped IPv4 address is given as IPv4)? */
bool acl_cidr_holds(const struct acl_cidr *n, int fam, const uint8_t *a);

struct acl_query {
    const union sockaddr_inx *client; /* the client's address */
    uint8_t cmd;                      /* one ACL_CMD_* bit (0 matches no rule) */
    const char *user;                 /* authenticated user, or NULL */
    const char *host;                 /* the name the client asked for, compared in the
                                         normal form of hostname.h (a name it refuses matches
                                         no host), or NULL */
    const union sockaddr_inx *dest;   /* the address to be reached (resolved), or NULL */
    uint16_t port;                    /* destination port */
    uint8_t gss; /* GSS-API: 0 not authenticated by it, else the protection level + 1 */
};

/*
 * Any thread: the first rule matching q. A rule with destination CIDRs
 * matches only a query with dest set and inside one of them; one with
 * hosts only a query whose host matches one of them; one with users only
 * an authenticated user in the list (a NULL user never does); one with
 * client CIDRs only a query with client set and inside one; ports and
 * cmds likewise. So a name that resolves into a denied range is denied by
 * a CIDR rule once dest is known (DNS rebinding), and a host rule catches
 * the name whatever it resolves to. IPv4-mapped IPv6 addresses are matched
 * as IPv4. Returns the action; *rule (if rule is not NULL) gets the index
 * matched, or -1 (no rule matched: ACL_DENY). Never allocates.
 */
enum acl_action acl_match(const struct acl *acl, const struct acl_query *q, int *rule);

#endif
