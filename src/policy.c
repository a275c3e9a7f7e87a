/*
 * policy.c - policy snapshots: built and freed by the control thread (the
 * publication itself, rcu_assign_pointer and synchronize_rcu, is in ctl.c),
 * and the one question shards ask of them, policy_allows(), which must never
 * allocate, lock or write.
 */
#include "policy.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "acl.h"
#include "egress.h"
#include "gssacc.h"
#include "options.h"
#include "sock.h"
#include "socks5.h"
#include "users.h"

/* A PROXY listener's balancers: the networks of from ("a,b/24", checked by the config). */
static int
proxy_init(struct policy *p, struct policy_listener *l, const char *from)
{
    size_t n = 1;
    for (const char *q = from; *q; q++)
        n += *q == ',';
    if (!(l->from = calloc(n, sizeof(*l->from))))
        return -1;
    for (const char *q = from; *q && l->n_from < n;) {
        char one[64];
        size_t len = strcspn(q, ",");
        if (len >= sizeof(one))
            return -1;
        memcpy(one, q, len);
        one[len] = '\0';
        if (acl_cidr_parse(one, &l->from[l->n_from]) < 0)
            return -1;
        l->n_from++;
        q += len + (q[len] == ',');
    }
    l->proxy = true;
    p->proxy_listeners = true;
    return 0;
}

/* The egress settings of o, parsed (the options table checked every entry already). */
static int
egress_init(struct policy *p, const struct opts *o)
{
    char why[160];
    if (o->egress[0] && !(p->egress = egress_pool_parse_csv(o->egress, why, sizeof(why))))
        return -1;
    p->egress_fallback = o->egress_fallback;
    p->username_params = o->username_params;
    p->session_ttl_s = o->session_ttl_s;
    p->session_ttl_max_s = o->session_ttl_max_s;
    /* What the rules' outbound settings ask of every request, known once here. */
    for (size_t i = 0; i < acl_count(p->acl); i++) {
        const struct egress_rule *er = acl_rule_data(p->acl, (int)i);
        p->rules_family = p->rules_family || (er && er->family);
        p->rules_via = p->rules_via || (er && er->via);
        p->rules_mark = p->rules_mark || (er && er->has_mark);
        p->rules_lim = p->rules_lim || (er && er->has_lim);
        p->rules_fault = p->rules_fault || (er && (er->fault.kinds || er->fault_allow));
    }
    egress_session_key(o->session_key, p->session_key);
    /* The options table checked both texts already. */
    lim_conf_unset(&p->user_lim);
    lim_conf_unset(&p->client_lim);
    if (lim_conf_parse(&p->user_lim, LIM_KEYS_ALL, o->user_limits, why, sizeof(why)) < 0 ||
        lim_conf_parse(&p->client_lim, LIM_KEYS_NO_QUOTA, o->client_limits, why, sizeof(why)) < 0)
        return -1;
    for (unsigned i = 0; i < o->n_listen_out; i++) {
        struct policy_listener *l = &p->listeners[p->n_listeners];
        memcpy(&l->addr, &o->listen_out[i].addr, sizeof(l->addr));
        addr_unmap(&l->addr);
        l->idx = o->listen_out[i].idx;
        p->n_listeners++;
        if (strcmp(o->listen_out[i].egress, "same") == 0)
            l->same = true;
        else if (o->listen_out[i].egress[0] &&
                 !(l->pool = egress_pool_parse_csv(o->listen_out[i].egress, why, sizeof(why))))
            return -1;
        if (o->listen_out[i].proxy_protocol && proxy_init(p, l, o->listen_out[i].from) < 0)
            return -1;
    }
    return 0;
}

struct policy *
policy_new(const struct opts *o, struct acl *acl, struct users *users, uint64_t gen)
{
    struct policy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->gen = gen;
    p->acl = acl;
    p->users = users;
    p->n_auth = (uint8_t)options_auth_methods(o, p->auth_methods);
    p->auth_password = options_auth_has(o, SOCKS5_METHOD_PASSWORD);
    p->gss_strip_realm = o->gss_strip_realm;
    uint8_t lo = 0, hi = 2;
    if (options_gss_levels(o->gss_protection, &lo, &hi) < 0)
        lo = 0, hi = 2; /* unreachable: the option's check refused it */
    for (unsigned l = lo; l <= hi; l++)
        p->gss_levels |= (uint8_t)(1u << l);
    p->socks4 = o->socks4;
    p->http_connect = o->http_connect;
    p->handshake_timeout_s = o->handshake_timeout_s;
    p->connect_timeout_s = o->connect_timeout_s;
    p->idle_timeout_s = o->idle_timeout_s;
    p->write_timeout_s = o->write_timeout_s;
    p->happy_eyeballs_delay_ms = o->happy_eyeballs_delay_ms;
    p->via_retry_s = o->via_retry_s;
    p->bind_timeout_s = o->bind_timeout_s;
    p->auth_fail_budget = o->auth_fail_budget;
    p->lockout = (struct lockout_params){
        .failures = o->auth_lockout_failures,
        .address_failures = o->auth_lockout_address_failures,
        .window_s = o->auth_lockout_window_s,
        .duration_s = o->auth_lockout_duration_s,
    };
    p->close_removed_users = o->close_removed_users;
    p->close_denied = o->close_denied;
    p->client_max_handshakes = o->client_max_handshakes;
    p->client_max_binds = o->client_max_binds;
    p->client_max_udp = o->client_max_udp;
    p->state_interval_s = o->state_interval_s;
    p->accounting_interval_s = o->accounting_interval_s;
    p->metrics_users = o->metrics_users;
    if (egress_init(p, o) < 0) {
        p->acl = NULL; /* the caller's still */
        p->users = NULL;
        policy_free(p);
        return NULL;
    }
    return p;
}

void
policy_free(struct policy *p)
{
    if (!p)
        return;
    acl_free(p->acl);
    users_free(p->users);
    gssacc_cred_free(p->gss_cred);
    egress_pool_free(p->egress);
    for (unsigned i = 0; i < p->n_listeners; i++) {
        egress_pool_free(p->listeners[i].pool);
        free(p->listeners[i].from);
    }
    free(p);
}

static uint8_t
acl_cmd(uint8_t cmd)
{
    switch (cmd) {
    case SOCKS5_CMD_BIND:
        return ACL_CMD_BIND;
    case SOCKS5_CMD_UDP:
        return ACL_CMD_UDP;
    default:
        return ACL_CMD_CONNECT;
    }
}

struct via_list *
policy_rule_via(const struct policy *p, int rule)
{
    const struct egress_rule *er = rule >= 0 ? acl_rule_data(p->acl, rule) : NULL;
    return er ? er->via : NULL;
}

bool
policy_reaches_self(const struct opts *o, const union sockaddr_inx *dest)
{
    uint16_t port = addr_port(dest);
    for (unsigned i = 0; i < o->n_self; i++) {
        const union sockaddr_inx *me = (const union sockaddr_inx *)&o->self[i];
        if (addr_port(me) != port || me->sa.sa_family != dest->sa.sa_family)
            continue;
        if (addr_same_ip(me, dest) || (addr_is_any(me) && sock_addr_is_local(dest)))
            return true;
    }
    return false;
}

bool
policy_allows(const struct policy *p, const struct opts *o, const struct policy_req *r,
              uint8_t *flags)
{
    int rule;
    bool ok = policy_allows_rule(p, o, r, &rule);
    if (flags)
        *flags = ok ? acl_rule_flags(p->acl, rule) : 0;
    return ok;
}

bool
policy_allows_rule(const struct policy *p, const struct opts *o, const struct policy_req *r,
                   int *rule_out)
{
    int decided;
    return policy_decide(p, o, r, rule_out, &decided);
}

bool
policy_decide(const struct policy *p, const struct opts *o, const struct policy_req *r,
              int *rule_out, int *decided)
{
    *rule_out = -1;
    *decided = POLICY_DECIDED_NONE;
    /* Checked here, so CONNECT, BIND and every UDP datagram get it. */
    if (r->dest && addr_is_any(r->dest))
        return false;
    /*
     * The proxy's own listeners and admin endpoint are never a CONNECT's target unless
     * the allowing rule names them in "to": one client socket built 4,000 nested
     * tunnels (8,000 fds) through the proxy, and the admin endpoint trusts loopback.
     */
    bool self = r->dest && acl_cmd(r->cmd) == ACL_CMD_CONNECT && policy_reaches_self(o, r->dest);
    if (!p->acl)
        return !self;
    struct acl_query q = {
        .client = r->client,
        .cmd = acl_cmd(r->cmd),
        .user = r->user,
        .host = r->host,
        .dest = r->dest,
        .port = r->port,
        .gss = r->gss,
    };
    int rule;
    enum acl_action act = acl_match(p->acl, &q, &rule);
    *decided = rule >= 0 ? rule : POLICY_DECIDED_DEFAULT;
    if (act != ACL_ALLOW)
        return false;
    if (self && !(acl_rule_flags(p->acl, rule) & ACL_RF_TO)) {
        *decided = POLICY_DECIDED_NONE; /* the proxy's own address, not the rule, refused it */
        return false;
    }
    /* A rule with parents carries CONNECT only: what it admits must not leave directly. */
    if (p->rules_via && q.cmd != ACL_CMD_CONNECT && policy_rule_via(p, rule))
        return false;
    *rule_out = rule;
    return true;
}

const struct policy_listener *
policy_listener_at(const struct policy *p, const struct opts *o, const union sockaddr_inx *local)
{
    if (!p->n_listeners)
        return NULL;
    uint16_t port = addr_port(local);
    for (unsigned i = 0; i < p->n_listeners; i++) {
        const struct policy_listener *l = &p->listeners[i];
        uint16_t want = addr_port(&l->addr);
        /* Port 0: the port this listener was given at start (the same place, same IP). */
        if (want == 0 && l->idx < o->n_listen) {
            union sockaddr_inx bound;
            memcpy(&bound, &o->listen[l->idx], sizeof(bound));
            addr_unmap(&bound);
            if (addr_same_ip(&bound, &l->addr) || (addr_is_any(&bound) && addr_is_any(&l->addr)))
                want = addr_port(&bound);
        }
        if (want != port)
            continue;
        if (addr_same_ip(&l->addr, local))
            return l;
        if (addr_is_any(&l->addr) &&
            (l->addr.sa.sa_family == local->sa.sa_family || l->addr.sa.sa_family == AF_INET6))
            return l;
    }
    return NULL;
}

bool
policy_proxy_from(const struct policy_listener *l, const union sockaddr_inx *peer)
{
    int fam = peer->sa.sa_family;
    const uint8_t *a = fam == AF_INET    ? (const uint8_t *)&peer->v4.sin_addr
                       : fam == AF_INET6 ? peer->v6.sin6_addr.s6_addr
                                         : NULL;
    for (unsigned i = 0; a && i < l->n_from; i++)
        if (acl_cidr_holds(&l->from[i], fam, a))
            return true;
    return false;
}
