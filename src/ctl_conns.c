/*
 * ctl_conns.c - the admin API's live control of tunnels (issue #12):
 * GET /connections, POST /connections/ID/close, POST /users/NAME/disconnect,
 * /block and /unblock.
 *
 * Control thread only. It reaches the shards through their mailboxes
 * (shardcmd.h), waiting at most SHARDCMD_WAIT_MS for their answers; a
 * shard that is late is named in the answer ("late_shards"), never waited
 * for longer. It never touches a connection itself.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acct.h"
#include "admin.h"
#include "ctl.h"
#include "json.h"
#include "pct.h"
#include "shard.h"
#include "shardcmd.h"

/* A JSON answer built with printf; out of memory: 500 with no body. */
static void
reply(struct admin_reply *out, int status, const char *fmt, ...)
{
    va_list ap;
    char *body = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&body, fmt, ap);
    va_end(ap);
    out->status = n < 0 ? 500 : status;
    out->body = n < 0 ? NULL : body;
    out->len = n < 0 ? 0 : (size_t)n;
}

/* {"error": what}, what escaped (it may quote a name from the request). */
static void
reply_error(struct admin_reply *out, int status, const char *what)
{
    char text[6 * (PCT_SEG_MAX + 64) + 2];
    json_escape(what, strlen(what), text, sizeof(text));
    reply(out, status, "{\"error\":%s}\n", text);
}

static void
reply_405(struct admin_reply *out, const char *allow)
{
    out->allow = allow;
    reply_error(out, 405, "method not allowed");
}

/*
 * ",\"late_shards\":[1,3]" for the shards that hold tunnels and did not
 * answer (an exited shard holds none: not late); "" when every one did.
 */
static void
late_text(const struct ctl *ctl, struct shardcmd *const *ans, unsigned first, unsigned n, char *buf,
          size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        struct shard *sh = &ctl->shards[first + i];
        if (ans[i] || atomic_load_explicit(&sh->exited, memory_order_acquire))
            continue;
        int w =
            snprintf(buf + used, cap - used, "%s%u", used ? "," : ",\"late_shards\":[", first + i);
        if (w < 0 || (size_t)w >= cap - used - 1)
            break;
        used += (size_t)w;
    }
    if (used)
        snprintf(buf + used, cap - used, "]");
}

static void
free_all(struct shardcmd **ans, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        shardcmd_free(ans[i]);
}

/* Close every tunnel of a on every shard; the late shards' text into late (may be NULL). */
static int
close_user(struct ctl *ctl, struct uacct *a, enum conn_end why, unsigned *closed, char *late,
           size_t cap)
{
    struct shardcmd proto = {.op = SHARDCMD_CLOSE_USER, .acct = a, .why = why};
    struct shardcmd *ans[ctl->n_shards];
    snprintf(proto.user, sizeof(proto.user), "%s", a->name);
    unsigned answered = shardcmd_call(ctl->shards, ctl->n_shards, &proto, ans, shard_wake);
    *closed = 0;
    for (unsigned i = 0; i < ctl->n_shards; i++)
        *closed += ans[i] ? (unsigned)ans[i]->n : 0;
    if (late)
        late_text(ctl, ans, 0, ctl->n_shards, late, cap);
    free_all(ans, ctl->n_shards);
    return answered == ctl->n_shards ? 0 : -ETIMEDOUT;
}

int
ctl_disconnect_user(struct ctl *ctl, struct uacct *a, enum conn_end why, unsigned *closed)
{
    return close_user(ctl, a, why, closed, NULL, 0);
}

/* ---- GET /connections */

/* Join the shards' lists (objects separated by '\n') into one array of at most limit. */
static void
list_connections(struct ctl *ctl, const char *query, struct admin_reply *out)
{
    struct shardcmd proto = {.op = SHARDCMD_LIST};
    char why[128];
    const char *bad = shardcmd_parse_query(query, &proto, why, sizeof(why));
    if (bad) {
        reply_error(out, 400, bad);
        return;
    }
    struct shardcmd *ans[ctl->n_shards];
    shardcmd_call(ctl->shards, ctl->n_shards, &proto, ans, shard_wake);
    size_t total = 64, left = proto.limit;
    bool truncated = false;
    for (unsigned i = 0; i < ctl->n_shards; i++)
        total += ans[i] ? ans[i]->len + 2 * ans[i]->n : 0;
    char late[512];
    late_text(ctl, ans, 0, ctl->n_shards, late, sizeof(late));
    total += strlen(late);
    char *body = malloc(total);
    if (!body) {
        free_all(ans, ctl->n_shards);
        out->status = 500;
        return;
    }
    size_t len = (size_t)snprintf(body, total, "{\"connections\":[");
    bool first = true;
    for (unsigned i = 0; i < ctl->n_shards; i++) {
        if (!ans[i])
            continue;
        truncated |= ans[i]->truncated;
        const char *p = ans[i]->out, *end = p + ans[i]->len;
        while (p && p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = (size_t)((nl ? nl : end) - p);
            if (left == 0) {
                truncated = true;
                break;
            }
            if (!first)
                body[len++] = ',';
            body[len++] = '\n';
            memcpy(body + len, p, n);
            len += n;
            first = false;
            left--;
            p += n + 1;
        }
    }
    len += (size_t)snprintf(body + len, total - len, "],\"truncated\":%s%s}\n",
                            truncated ? "true" : "false", late);
    free_all(ans, ctl->n_shards);
    out->status = 200;
    out->body = body;
    out->len = len;
}

/* ---- POST /connections/ID/close */

static void
close_connection(struct ctl *ctl, const char *id, struct admin_reply *out)
{
    uint32_t part[3];
    char msg[PCT_SEG_MAX + 64];
    if (!shardcmd_parse_id(id, part)) {
        reply_error(out, 400, "a connection id is SHARD.SLOT.GEN");
        return;
    }
    snprintf(msg, sizeof(msg), "no live connection %s", id);
    if (part[0] >= ctl->n_shards) {
        reply_error(out, 404, msg);
        return;
    }
    struct shardcmd proto = {
        .op = SHARDCMD_CLOSE, .slot = part[1], .gen = part[2], .why = END_ADMIN};
    struct shardcmd *ans;
    struct shard *sh = &ctl->shards[part[0]];
    if (!shardcmd_call(sh, 1, &proto, &ans, shard_wake)) {
        if (!atomic_load_explicit(&sh->exited, memory_order_acquire)) {
            snprintf(msg, sizeof(msg), "shard %u did not answer within %u ms", part[0],
                     SHARDCMD_WAIT_MS);
            reply_error(out, 503, msg);
        } else {
            reply_error(out, 404, msg);
        }
        return;
    }
    if (ans->n)
        reply(out, 200, "{\"closed\":1}\n");
    else
        reply_error(out, 404, msg);
    shardcmd_free(ans);
}

/* ---- POST /users/NAME/disconnect, /block, /unblock */

static void
user_action(struct ctl *ctl, const char *name, const char *action, struct admin_reply *out)
{
    struct uacct *a = acct_find(ctl->reg, name);
    char late[512];
    unsigned closed = 0;
    if (!a) {
        char msg[PCT_SEG_MAX + 16];
        snprintf(msg, sizeof(msg), "no user %s", name);
        reply_error(out, 404, msg);
        return;
    }
    if (strcmp(action, "unblock") == 0) {
        atomic_store_explicit(&a->blocked, false, memory_order_release);
        ctl_state_save(ctl); /* kept across restarts: the state file says so at once */
        reply(out, 200, "{\"blocked\":false}\n");
        return;
    }
    bool block = strcmp(action, "block") == 0;
    /* Blocked first: a request of the user that races the disconnect is refused. */
    if (block)
        atomic_store_explicit(&a->blocked, true, memory_order_release);
    close_user(ctl, a, block ? END_BLOCKED : END_ADMIN, &closed, late, sizeof(late));
    if (block)
        ctl_state_save(ctl);
    reply(out, 200, "{%s\"closed\":%u%s}\n", block ? "\"blocked\":true," : "", closed, late);
}

bool
ctl_conns_route(struct ctl *ctl, const struct admin_request *rq, struct admin_reply *out)
{
    char seg[2][PCT_SEG_MAX];
    bool post = strcmp(rq->method, "POST") == 0;
    if (strcmp(rq->path, "/connections") == 0) {
        if (strcmp(rq->method, "GET") != 0)
            reply_405(out, "GET");
        else
            list_connections(ctl, rq->query, out);
        return true;
    }
    if (strncmp(rq->path, "/connections/", 13) == 0) {
        int n = pct_path_split(rq->path, "/connections/", seg, 2);
        if (n != 2 || strcmp(seg[1], "close") != 0)
            reply_error(out, n < 0 ? 400 : 404, n < 0 ? "malformed path" : "no such path");
        else if (!post)
            reply_405(out, "POST");
        else
            close_connection(ctl, seg[0], out);
        return true;
    }
    /* /users/NAME/ACTION; the rest of /users is someone else's. */
    const char *rest = rq->path + 7, *sl;
    if (strncmp(rq->path, "/users/", 7) != 0 || !(sl = strchr(rest, '/')) || strchr(sl + 1, '/'))
        return false;
    const char *action = sl + 1;
    if (strcmp(action, "disconnect") != 0 && strcmp(action, "block") != 0 &&
        strcmp(action, "unblock") != 0)
        return false;
    if (!post)
        reply_405(out, "POST");
    else if (pct_path_split(rq->path, "/users/", seg, 1) != 2)
        reply_error(out, 400, "malformed user name (percent-encode it; no '/' or NUL)");
    else
        user_action(ctl, seg[0], action, out);
    return true;
}
