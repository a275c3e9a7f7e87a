/*
 * shardcmd.c - the control thread's mailbox into a shard (shardcmd.h).
 *
 * Threads: shardcmd_call() and shardcmd_free() run on the control thread,
 * which may wait (bounded) for the answers; shardcmd_run() runs on a shard
 * thread, never waits, and touches that shard's connections alone.
 *
 * Ownership of a posted command: the control thread's until the shard takes
 * it out of sh->cmd (one exchange); then the shard's until it stores DONE.
 * A control thread that stops waiting first takes it back out of sh->cmd if
 * it is still there (the shard never saw it), else marks it ABANDONED: the
 * shard, finding ABANDONED when it stores DONE, frees it; the control
 * thread, finding DONE when it marks, has its answer after all.
 */
#include "shardcmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acct.h"
#include "conn.h"
#include "httpconnect.h"
#include "json.h"
#include "log.h"
#include "pct.h"
#include "shard_types.h"
#include "via.h"
#include "transparent.h"

enum { CMD_POSTED, CMD_DONE, CMD_ABANDONED };

static uint64_t
clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- pure parts */

static const char *const state_names[] = {
    [CONN_FREE] = "free",       [CONN_HANDSHAKE] = "handshake",
    [CONN_RESOLVE] = "resolve", [CONN_CONNECT] = "connect",
    [CONN_REPLY] = "reply",     [CONN_BIND_WAIT] = "bind_wait",
    [CONN_RELAY] = "relay",     [CONN_UDP] = "udp",
    [CONN_CLOSING] = "closing",
};

bool
shardcmd_dest_text(const struct conn *c, char *out, size_t cap)
{
    out[0] = '\0';
    if (c->host) {
        bool v6 = strchr(c->host, ':') != NULL;
        snprintf(out, cap, "%s%s%s:%u", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
    } else if (c->dest.sa.sa_family && c->cmd) {
        addr_format(&c->dest.sa, out, cap);
    }
    return out[0] != '\0';
}

bool
shardcmd_match(const struct conn *c, const char *dest, const struct shardcmd_filter *f)
{
    if (f->user[0] && !(c->user && strcmp(c->user, f->user) == 0))
        return false;
    if (f->dest[0] && !(dest && strstr(dest, f->dest)))
        return false;
    if (f->client.sa.sa_family) {
        if (!addr_same_ip(&c->client, &f->client))
            return false;
        if (f->client_port && addr_port(&c->client) != addr_port(&f->client))
            return false;
    }
    return true;
}

/* The protocol the client spoke, as a JSON value: null before its first byte. */
static const char *
proto_json(uint8_t version)
{
    switch (version) {
    case 4:
        return "\"socks4\"";
    case 5:
        return "\"socks5\"";
    case HTTPCONNECT_VERSION:
        return "\"http\"";
    case TRANSPARENT_VERSION:
        return "\"transparent\"";
    default:
        return "null";
    }
}

/* An address as a JSON string, or null for none. */
static void
addr_json(const union sockaddr_inx *a, char *out, size_t cap)
{
    char text[ADDR_STRLEN];
    if (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6) {
        snprintf(out, cap, "null");
        return;
    }
    addr_format(&a->sa, text, sizeof(text));
    json_escape(text, strlen(text), out, cap);
}

size_t
shardcmd_render(const struct conn *c, unsigned shard_id, uint64_t now_ms, char *out, size_t cap)
{
    char dest[SHARDCMD_TEXT_MAX + 16], user[6 * SHARDCMD_TEXT_MAX], dest_j[sizeof(user)];
    char client[2 * ADDR_STRLEN], egress[2 * ADDR_STRLEN], via[2 * ADDR_STRLEN];
    char parent[2 * ADDR_STRLEN];
    snprintf(user, sizeof(user), "null");
    if (c->user)
        json_escape(c->user, strlen(c->user), user, sizeof(user));
    snprintf(dest_j, sizeof(dest_j), "null");
    if (shardcmd_dest_text(c, dest, sizeof(dest)))
        json_escape(dest, strlen(dest), dest_j, sizeof(dest_j));
    addr_json(&c->client, client, sizeof(client));
    addr_json(&c->src, egress, sizeof(egress));
    addr_json(&c->via, via, sizeof(via)); /* the balancer, on a proxy_protocol listener */
    union sockaddr_inx none = {0};
    addr_json(c->parent ? via_parent_addr(c->parent) : &none, parent, sizeof(parent));
    /* GSS-API (RFC 1961): the protection level agreed, 0-2; null: another method or none. */
    char gss[8] = "null";
    if (c->gss)
        snprintf(gss, sizeof(gss), "%u", (unsigned)(c->gss - 1));
    const char *state =
        c->state < sizeof(state_names) / sizeof(state_names[0]) ? state_names[c->state] : "unknown";
    uint64_t age = now_ms > c->start_ms ? (now_ms - c->start_ms) / 1000 : 0;
    int n = snprintf(out, cap,
                     "{\"id\":\"%u.%" PRIu32 ".%" PRIu32 "\",\"shard\":%u,\"state\":\"%s\","
                     "\"cmd\":\"%s\",\"proto\":%s,\"user\":%s,\"gss\":%s,\"client\":%s,\"via\":%s,"
                     "\"dest\":%s,"
                     "\"egress\":%s,\"parent\":%s,\"age_s\":%" PRIu64 ",\"bytes_up\":%" PRIu64
                     ",\"bytes_down\":%" PRIu64 "}",
                     shard_id, c->slot, c->gen, shard_id, state, log_cmd_name(c->cmd),
                     proto_json(c->version), user, gss, client, via, dest_j, egress, parent, age,
                     c->dir[DIR_C2T].bytes, c->dir[DIR_T2C].bytes);
    if (n < 0)
        n = 0;
    return (size_t)n < cap ? (size_t)n : cap ? cap - 1 : 0;
}

const char *
shardcmd_parse_query(const char *query, struct shardcmd *cmd, char *why, size_t cap)
{
    char key[32], val[PCT_SEG_MAX];
    unsigned seen = 0;
    cmd->limit = SHARDCMD_LIMIT_DEFAULT;
    for (const char *q = query;;) {
        int r = pct_query_next(&q, key, sizeof(key), val, sizeof(val));
        if (r == 0)
            return NULL;
        if (r < 0)
            return "malformed query string";
        static const char *const keys[] = {"user", "client", "dest", "limit"};
        unsigned k = 0;
        while (k < 4 && strcmp(key, keys[k]) != 0)
            k++;
        if (k == 4) {
            snprintf(why, cap, "unknown parameter %s (user, client, dest, limit)", key);
            return why;
        }
        if (seen & 1u << k) {
            snprintf(why, cap, "parameter %s given twice", key);
            return why;
        }
        seen |= 1u << k;
        if (k == 0) {
            snprintf(cmd->f.user, sizeof(cmd->f.user), "%s", val);
        } else if (k == 2) {
            snprintf(cmd->f.dest, sizeof(cmd->f.dest), "%s", val);
        } else if (k == 1) {
            struct sockaddr_storage ss;
            /* ip:port first; then a bare IP, any port. */
            cmd->f.client_port = addr_parse(val, -1, &ss) == 0;
            if (!cmd->f.client_port && addr_parse(val, 0, &ss) < 0)
                return "client: want an IP address or IP:port";
            memcpy(&cmd->f.client, &ss, sizeof(cmd->f.client));
            addr_unmap(&cmd->f.client);
        } else {
            char *end;
            errno = 0;
            unsigned long v = strtoul(val, &end, 10);
            if (val[0] < '0' || val[0] > '9' || *end || errno || v > SHARDCMD_LIMIT_MAX)
                return "limit: want 0..100000";
            cmd->limit = v;
        }
    }
}

bool
shardcmd_parse_id(const char *s, uint32_t part[3])
{
    for (int i = 0; i < 3; i++) {
        if (*s < '0' || *s > '9')
            return false;
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || v > UINT32_MAX || *end != (i < 2 ? '.' : '\0'))
            return false;
        part[i] = (uint32_t)v;
        s = end + 1;
    }
    return true;
}

/* ---- the shard side */

/* Append one object to cmd->out (grown as needed); false when out of memory. */
static bool
list_append(struct shardcmd *cmd, size_t *cap, const char *obj, size_t n)
{
    if (cmd->len + n + 1 > *cap) {
        size_t want = *cap ? *cap * 2 : 16384;
        while (want < cmd->len + n + 1)
            want *= 2;
        char *p = realloc(cmd->out, want);
        if (!p)
            return false;
        cmd->out = p;
        *cap = want;
    }
    if (cmd->len)
        cmd->out[cmd->len++] = '\n';
    memcpy(cmd->out + cmd->len, obj, n);
    cmd->len += n;
    cmd->out[cmd->len] = '\0';
    return true;
}

static void
run_list(struct shard *sh, struct shardcmd *cmd)
{
    char dest[SHARDCMD_TEXT_MAX + 16], obj[4096];
    size_t cap = 0;
    uint64_t now_ms = clock_ms(CLOCK_REALTIME_COARSE);
    for (uint32_t i = 0; i < sh->high; i++) {
        const struct conn *c = &sh->conns[i];
        if (c->state == CONN_FREE)
            continue;
        bool has_dest = shardcmd_dest_text(c, dest, sizeof(dest));
        if (!shardcmd_match(c, has_dest ? dest : NULL, &cmd->f))
            continue;
        if (cmd->n >= cmd->limit) {
            cmd->truncated = true;
            return;
        }
        size_t n = shardcmd_render(c, sh->id, now_ms, obj, sizeof(obj));
        if (!list_append(cmd, &cap, obj, n)) {
            cmd->err = -ENOMEM;
            cmd->truncated = true;
            return;
        }
        cmd->n++;
    }
}

static bool
is_live(const struct conn *c)
{
    return c->state != CONN_FREE && c->state != CONN_CLOSING;
}

static void
run_close(struct shard *sh, struct shardcmd *cmd)
{
    if (cmd->slot >= sh->high)
        return;
    struct conn *c = &sh->conns[cmd->slot];
    if (c->gen != cmd->gen || !is_live(c))
        return;
    conn_close(sh, c, cmd->why);
    cmd->n = 1;
}

static void
run_close_user(struct shard *sh, struct shardcmd *cmd)
{
    for (uint32_t i = 0; i < sh->high; i++) {
        struct conn *c = &sh->conns[i];
        if (!is_live(c) || !c->user)
            continue;
        bool mine = c->acct ? c->acct == cmd->acct : strcmp(c->user, cmd->user) == 0;
        if (mine) {
            conn_close(sh, c, cmd->why);
            cmd->n++;
        }
    }
}

void
shardcmd_run(struct shard *sh)
{
    if (!atomic_load_explicit(&sh->cmd, memory_order_relaxed))
        return;
    struct shardcmd *cmd = atomic_exchange_explicit(&sh->cmd, NULL, memory_order_acquire);
    if (!cmd)
        return;
    switch (cmd->op) {
    case SHARDCMD_LIST:
        run_list(sh, cmd);
        break;
    case SHARDCMD_CLOSE:
        run_close(sh, cmd);
        break;
    case SHARDCMD_CLOSE_USER:
        run_close_user(sh, cmd);
        break;
    }
    if (atomic_exchange_explicit(&cmd->state, CMD_DONE, memory_order_acq_rel) == CMD_ABANDONED)
        shardcmd_free(cmd);
}

/* ---- the control thread's side */

void
shardcmd_free(struct shardcmd *cmd)
{
    if (!cmd)
        return;
    free(cmd->out);
    free(cmd);
}

/*
 * The wait is over for cmd on sh without an answer: take it back if the
 * shard never took it (NULL: freed here), else leave it to the shard unless
 * it answered in the meantime (then it is returned).
 */
static struct shardcmd *
give_up(struct shard *sh, struct shardcmd *cmd)
{
    struct shardcmd *expect = cmd;
    if (atomic_compare_exchange_strong_explicit(&sh->cmd, &expect, NULL, memory_order_acq_rel,
                                                memory_order_acquire)) {
        shardcmd_free(cmd);
        return NULL;
    }
    if (atomic_exchange_explicit(&cmd->state, CMD_ABANDONED, memory_order_acq_rel) == CMD_DONE)
        return cmd;
    return NULL;
}

unsigned
shardcmd_call(struct shard *shards, unsigned n, const struct shardcmd *proto, struct shardcmd **ans,
              void (*wake)(struct shard *sh))
{
    unsigned answered = 0, pending = 0;
    for (unsigned i = 0; i < n; i++) {
        struct shard *sh = &shards[i];
        struct shardcmd *cmd = NULL, *expect = NULL;
        ans[i] = NULL;
        if (atomic_load_explicit(&sh->exited, memory_order_acquire) ||
            !(cmd = malloc(sizeof(*cmd))))
            continue;
        memcpy(cmd, proto, sizeof(*cmd));
        cmd->out = NULL;
        cmd->len = cmd->n = 0;
        cmd->truncated = false;
        cmd->err = 0;
        atomic_init(&cmd->state, CMD_POSTED);
        /* One command at a time: one the shard never took (it is stuck) is still there. */
        if (!atomic_compare_exchange_strong_explicit(&sh->cmd, &expect, cmd, memory_order_release,
                                                     memory_order_relaxed)) {
            free(cmd);
            continue;
        }
        ans[i] = cmd;
        pending++;
        wake(sh);
    }
    const struct timespec tick = {.tv_nsec = 200000};
    uint64_t deadline = clock_ms(CLOCK_MONOTONIC) + SHARDCMD_WAIT_MS;
    while (pending) {
        pending = 0;
        bool late = clock_ms(CLOCK_MONOTONIC) >= deadline;
        for (unsigned i = 0; i < n; i++) {
            struct shardcmd *cmd = ans[i];
            if (!cmd || atomic_load_explicit(&cmd->state, memory_order_acquire) != CMD_POSTED)
                continue;
            /* exited: the shard's loop is over; what it took it has answered. */
            if (late || atomic_load_explicit(&shards[i].exited, memory_order_acquire))
                ans[i] = give_up(&shards[i], cmd);
            else
                pending++;
        }
        if (pending)
            nanosleep(&tick, NULL);
    }
    for (unsigned i = 0; i < n; i++)
        answered += ans[i] != NULL;
    return answered;
}
