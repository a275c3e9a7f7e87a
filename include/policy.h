/*
 * policy.h - the reloadable part of the configuration as one immutable
 * snapshot: access rules, users, limits. Built aside by the control
 * thread, published with liburcu's QSBR flavour (one pointer store), read
 * by shards, freed after a grace period.
 *
 * Shards read it only between quiescent states: sh->pol is refreshed at the
 * top of every loop iteration and must never be kept across iterations;
 * what a tunnel needs later is copied into the connection.
 */
#ifndef RINGSOCKS_POLICY_H
#define RINGSOCKS_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "lim.h"
#include "lockout.h"
#include "opts.h"

struct acl;
struct acl_cidr;
struct egress_pool;
struct users;
struct gssacc_cred;

struct policy {
    uint64_t gen; /* 1 for the first, +1 per reload */
    struct acl *acl;
    struct users *users; /* NULL without --users */
    /* Client authentication (auth): SOCKS5 methods in the server's order of preference;
     * n_auth 0: none. auth_password: RFC 1929 and HTTP Basic are among them. */
    uint8_t auth_methods[OPTS_AUTH_METHODS];
    uint8_t n_auth;
    bool auth_password;
    /* GSS-API (gssacc.h, gssw.h): the acceptor's credential while auth has gssapi (else
     * NULL), a reference held by this snapshot (set by the loader after policy_new(),
     * dropped by policy_free()); the name without the realm; the levels that may be
     * granted (bit n: level n). */
    struct gssacc_cred *gss_cred;
    bool gss_strip_realm;
    uint8_t gss_levels;
    enum socks4_mode socks4;
    bool http_connect;
    unsigned handshake_timeout_s, connect_timeout_s, idle_timeout_s, bind_timeout_s;
    unsigned
        auth_fail_budget; /* per address and shard: failed + queued checks before the back queue */
    struct lockout_params lockout;    /* failed-login lockout (auth_lockout_*) */
    unsigned write_timeout_s;         /* 0: never */
    unsigned happy_eyeballs_delay_ms; /* RFC 8305 Connection Attempt Delay; 0: one at a time */
    unsigned via_retry_s;             /* a parent that failed is skipped this long (chain.h) */
    bool close_removed_users, close_denied;
    unsigned client_max_handshakes, client_max_binds, client_max_udp; /* 0: no limit */
    /* Limits (lim.h): user_limits and client_limits as parsed; unset fields: no limit. */
    struct lim_conf user_lim, client_lim;
    bool rules_lim; /* some rule has limits or client_limits */
    /* Accounting (acctctl.h): the control thread's timers and the per-user series' cap. */
    unsigned state_interval_s, accounting_interval_s, metrics_users;
    /* Egress (egress.h, outbound.h): the global pool, the listeners' settings, sessions. */
    struct egress_pool *egress; /* NULL: the kernel chooses */
    bool egress_fallback, username_params;
    bool rules_family; /* some rule has a family other than "any" */
    bool rules_via;    /* some rule names parents (via): names are matched before resolving */
    bool rules_mark;   /* some rule sets SO_MARK (its capability outlives the drop: caps.h) */
    bool rules_fault;  /* some rule has fault or fault_allow (fault.h): faults are on */
    unsigned session_ttl_s, session_ttl_max_s;
    uint8_t session_key[16];
    struct policy_listener {
        union sockaddr_inx addr; /* as configured: a wildcard matches any address */
        unsigned idx;            /* its place in the listen list */
        bool same;               /* egress = "same": leave by the address the client reached */
        bool proxy;              /* proxy_protocol: a PROXY header first, from a balancer */
        struct egress_pool *pool;
        struct acl_cidr *from; /* proxy: the balancers' networks (n_from >= 1) */
        unsigned n_from;
    } listeners[OPTS_MAX_LISTEN];
    unsigned n_listeners;
    bool proxy_listeners; /* some listener has proxy_protocol */
};

/* Control thread: a snapshot owning acl and users (either may be NULL: no rules, no users). */
struct policy *policy_new(const struct opts *o, struct acl *acl, struct users *users, uint64_t gen);
/* Control thread, after a grace period: free the snapshot and what it owns. */
void policy_free(struct policy *p);

/*
 * Any thread: the listener group of local, the address a connection reached (unmapped:
 * conn_local()), or NULL when no group matches: each group's address, a wildcard one by
 * port (and, for [::], either family).
 */
const struct policy_listener *policy_listener_at(const struct policy *p, const struct opts *o,
                                                 const union sockaddr_inx *local);

/* Any thread: is peer (IPv4-mapped given as IPv4: addr_unmap()) one of proxy listener l's
 * balancers (its from)? */
bool policy_proxy_from(const struct policy_listener *l, const union sockaddr_inx *peer);

/*
 * Any thread: does dest (IPv4-mapped given as IPv4) reach this proxy itself, one of its
 * listeners or its admin endpoint (o->self)? A wildcard listener is reached on every
 * address of its family this host has, which a datagram socket's bind() tells (three
 * syscalls, only when the port matches).
 */
bool policy_reaches_self(const struct opts *o, const union sockaddr_inx *dest);

struct via_list;
/* Any thread, p read-only: the parents of rule (rule key via, via.h), or NULL: its tunnels
 * go direct (also for rule -1: none). */
struct via_list *policy_rule_via(const struct policy *p, int rule);

/* One request (or one UDP datagram, or a declared UDP source) as the rules see it. */
struct policy_req {
    const union sockaddr_inx *client;
    uint8_t cmd;                    /* SOCKS5_CMD_* (anything else counts as CONNECT) */
    const char *user;               /* authenticated user, or NULL */
    const union sockaddr_inx *dest; /* the address to be reached, or NULL: not known yet */
    const char *host;               /* the name asked for, or NULL */
    uint16_t port;
    uint8_t gss; /* GSS-API: 0 not used, else the protection level agreed + 1 (conn.gss) */
};

/*
 * Any thread, with p read-only: may r go ahead? An unspecified destination
 * (0.0.0.0, ::, ::ffff:0.0.0.0) never may: Linux connects it to the local
 * host. A CONNECT to one of the proxy's own addresses (o->self: listeners,
 * the admin endpoint; a wildcard listener is every local address of its
 * family) may only when the allowing rule names it in "to". Otherwise the
 * first matching rule decides (acl_match()); no rules: allowed. *flags (may
 * be NULL) gets the admitting rule's ACL_RF_* flags, 0 when none.
 */
bool policy_allows(const struct policy *p, const struct opts *o, const struct policy_req *r,
                   uint8_t *flags);
/* The same, giving the admitting rule's index (-1: none, or no rules at all). */
bool policy_allows_rule(const struct policy *p, const struct opts *o, const struct policy_req *r,
                        int *rule);
/*
 * No rule decided (no rules, or a check before them: an unspecified address,
 * the proxy itself); no rule matched (the default deny).
 */
#define POLICY_DECIDED_NONE    (-1)
#define POLICY_DECIDED_DEFAULT (-2)
/*
 * The same again, also giving in *decided the index of the rule that decided,
 * allow or deny, or POLICY_DECIDED_*: what the access log names.
 */
bool policy_decide(const struct policy *p, const struct opts *o, const struct policy_req *r,
                   int *rule, int *decided);

#endif
