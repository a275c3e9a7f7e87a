/*
 * ctl_users.c - the admin routes of the users' accounting: GET /users (every
 * user in the registry) and GET /users/NAME (one, 404 when unknown), as
 * JSON. The routes below a user (/users/NAME/block and the like) are not
 * this file's: it leaves them to the next route.
 *
 * Control thread only, inside the admin endpoint's poll step: it reads the
 * registry and the shards' counters (relaxed atomic loads) and writes
 * nothing but the answer.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "acct.h"
#include "acctctl.h"
#include "pct.h"
#include "ctl.h"
#include "policy.h"
#include "users.h"

/* One user object (api.md). */
static void
user_json(struct acctctl_buf *b, const struct policy *pol, const struct uacct *a, bool fleet)
{
    struct lim_conf l;
    struct users_info ui;
    char limits[512];
    acctctl_limits(pol, a->name, &l);
    lim_conf_format(&l, limits, sizeof(limits));
    acctctl_printf(b, "{\"user\":");
    acctctl_json_str(b, a->name);
    acctctl_printf(b,
                   ",\"in_users\":%s,\"blocked\":%s,\"open\":%" PRIu64 ",\"opened\":%" PRIu64
                   ",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64 ",\"hits\":{",
                   pol->users && users_info(pol->users, a->name, &ui) ? "true" : "false",
                   atomic_load_explicit(&a->blocked, memory_order_relaxed) ? "true" : "false",
                   (uint64_t)(atomic_load_explicit(&a->n.open, memory_order_relaxed) & ~LIM_DEAD),
                   atomic_load_explicit(&a->n.opened, memory_order_relaxed),
                   atomic_load_explicit(&a->n.bytes[0], memory_order_relaxed),
                   atomic_load_explicit(&a->n.bytes[1], memory_order_relaxed));
    for (int h = 0; h < LIMH__COUNT; h++)
        acctctl_printf(b, "%s\"%s\":%" PRIu64, h ? "," : "", lim_hit_str((enum lim_hit)h),
                       atomic_load_explicit(&a->n.hits[h], memory_order_relaxed));
    acctctl_printf(b, "},\"limits\":");
    acctctl_json_str(b, limits);
    if (fleet) {
        /* What this node holds of the fleet's limits (fleet.h): null, the local max_conns. */
        uint64_t lease = atomic_load_explicit(&a->lease, memory_order_relaxed);
        if (lease == LEASE_NONE)
            acctctl_printf(b, ",\"fleet\":{\"lease\":null");
        else
            acctctl_printf(b, ",\"fleet\":{\"lease\":%" PRIu64, lease);
        acctctl_printf(
            b, ",\"full\":%s,\"rate_tokens\":%" PRIu64 ",\"quota_others\":%" PRIu64 "}",
            atomic_load_explicit(&a->lease_full, memory_order_relaxed) ? "true" : "false",
            atomic_load_explicit(&a->rate_tokens, memory_order_relaxed), a->ctl.fleet_others);
    }
    uint64_t quota = lim_val(l.quota);
    if (!quota) {
        acctctl_printf(b, ",\"quota\":null}");
        return;
    }
    /* used counts in the period the control thread last rolled into (every 200 ms). */
    acctctl_printf(
        b, ",\"quota\":{\"bytes\":%" PRIu64 ",\"period\":\"%s\",\"used\":%" PRIu64 ",\"over\":%s}}",
        quota, acctctl_period_str((enum lim_period)l.quota_period),
        a->ctl.quota_kind != LIM_PERIOD_NONE ? acctctl_used(a) : 0,
        atomic_load_explicit(&a->over_quota, memory_order_relaxed) ? "true" : "false");
}

static void
reply_error(struct admin_reply *out, int status, const char *text)
{
    struct acctctl_buf b = {0};
    acctctl_printf(&b, "{\"error\":");
    acctctl_json_str(&b, text);
    acctctl_printf(&b, "}\n");
    out->status = b.oom ? 500 : status;
    out->body = b.p;
    out->len = b.oom ? 0 : b.len;
}

static void
reply_body(struct admin_reply *out, struct acctctl_buf *b)
{
    if (b->oom) {
        free(b->p);
        *b = (struct acctctl_buf){0};
        reply_error(out, 500, "out of memory");
        return;
    }
    out->status = 200;
    out->body = b->p;
    out->len = b->len;
}

bool
ctl_users_route(struct ctl *ctl, const struct admin_request *rq, struct admin_reply *out)
{
    static const char prefix[] = "/users";
    const char *p = rq->path;
    if (strncmp(p, prefix, sizeof(prefix) - 1) != 0 ||
        (p[sizeof(prefix) - 1] != '\0' && p[sizeof(prefix) - 1] != '/'))
        return false;
    const char *seg = p[sizeof(prefix) - 1] ? p + sizeof(prefix) : NULL;
    if (seg && strchr(seg, '/'))
        return false; /* /users/NAME/...: another route's */
    if (strcmp(rq->method, "GET") != 0) {
        out->allow = "GET";
        reply_error(out, 405, "method not allowed");
        return true;
    }
    struct acctctl_buf b = {0};
    if (!seg) {
        acctctl_printf(&b, "{\"users\":[");
        for (size_t i = 0; i < acct_count(ctl->reg); i++) {
            if (i)
                acctctl_printf(&b, ",");
            user_json(&b, ctl->pol, acct_at(ctl->reg, i), ctl->fleet != NULL);
        }
        acctctl_printf(&b, "]}\n");
        reply_body(out, &b);
        return true;
    }
    char name[ADMIN_PATH_MAX];
    if (pct_decode(seg, strlen(seg), false, name, sizeof(name)) < 0) {
        reply_error(out, 400, "malformed percent-encoding in the user name");
        return true;
    }
    const struct uacct *a = name[0] ? acct_find(ctl->reg, name) : NULL;
    if (!a) {
        reply_error(out, 404, "no such user");
        return true;
    }
    user_json(&b, ctl->pol, a, ctl->fleet != NULL);
    acctctl_printf(&b, "\n");
    reply_body(out, &b);
    return true;
}
