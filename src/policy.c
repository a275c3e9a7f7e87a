/*
 * policy.c - build and free policy snapshots. Control thread only; the
 * publication itself (rcu_assign_pointer, synchronize_rcu) is in ctl.c.
 */
#include "policy.h"

#include <stdlib.h>

#include "acl.h"
#include "users.h"

struct policy *
policy_new(const struct opts *o, struct acl *acl, struct users *users, uint64_t gen)
{
    struct policy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->gen = gen;
    p->acl = acl;
    p->users = users;
    p->auth = o->auth;
    p->socks4 = o->socks4;
    p->handshake_timeout_s = o->handshake_timeout_s;
    p->connect_timeout_s = o->connect_timeout_s;
    p->idle_timeout_s = o->idle_timeout_s;
    p->write_timeout_s = o->write_timeout_s;
    p->bind_timeout_s = o->bind_timeout_s;
    p->auth_fail_budget = o->auth_fail_budget;
    p->close_removed_users = o->close_removed_users;
    p->close_denied = o->close_denied;
    p->client_max_handshakes = o->client_max_handshakes;
    p->client_max_binds = o->client_max_binds;
    p->client_max_udp = o->client_max_udp;
    return p;
}

void
policy_free(struct policy *p)
{
    if (!p)
        return;
    acl_free(p->acl);
    users_free(p->users);
    free(p);
}
