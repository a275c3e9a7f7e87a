/*
 * fleet.c - the fleet's shared state in Redis (fleet.h): one hiredis
 * asynchronous connection driven by the control thread's poll loop.
 *
 * The logic that must be atomic across nodes runs inside Redis, as a
 * library of two functions (FUNCTION LOAD, Redis 7): a lease request reads
 * every node's lease of the user, drops the expired ones and grants what
 * fits under max_conns; a quota write stores this node's figure and returns
 * the others' sum. Loaded again at every connect, so a restarted Redis
 * needs nothing from an operator.
 */
#include "fleet.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "acct.h"
#include "acctctl.h"
#include "lim.h"
#include "policy.h"

/* The library's name carries its version: nodes of two versions each call their own. */
static const char fleet_lib[] =
    "#!lua name=ringsocks_v1\n"
    "local function now_ms()\n"
    "  local t = redis.call('TIME')\n"
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "end\n"
    /*
     * KEYS[1] the user's leases, KEYS[2] the epoch (when this Redis's state began); ARGV
     * field, need, spare, max, ttl_ms, held (the node's lease so far), grace_ms. Returns
     * {grant, full}. A Redis that lost its state (restarted, flushed) starts a new epoch:
     * for grace_ms every node may take back what it holds, and nobody gets more, so the
     * places of a node that has not reconnected yet are not given away.
     */
    "redis.register_function('ringsocks_v1_lease', function(keys, args)\n"
    "  local now = now_ms()\n"
    "  local field, need, spare = args[1], tonumber(args[2]), tonumber(args[3])\n"
    "  local max, ttl = tonumber(args[4]), tonumber(args[5])\n"
    "  local held, grace = tonumber(args[6]), tonumber(args[7])\n"
    "  local epoch = tonumber(redis.call('GET', keys[2]) or '')\n"
    "  if not epoch then\n"
    "    epoch = now\n"
    "    redis.call('SET', keys[2], now)\n"
    "  end\n"
    "  if now - epoch < grace then\n"
    "    if need > held then need, spare = held, 0 end\n"
    "  end\n"
    "  local all = redis.call('HGETALL', keys[1])\n"
    "  local others, nodes = 0, 1\n"
    "  for i = 1, #all, 2 do\n"
    "    if all[i] ~= field then\n"
    "      local held, exp = string.match(all[i + 1], '^(%d+) (%d+)$')\n"
    "      if held and tonumber(exp) > now then\n"
    "        others = others + tonumber(held)\n"
    "        nodes = nodes + 1\n"
    "      else\n"
    "        redis.call('HDEL', keys[1], all[i])\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local room = max - others\n"
    "  if room < 0 then room = 0 end\n"
    "  local grant, full = need, 0\n"
    "  if need < tonumber(args[2]) then full = 1 end\n"
    "  if need > room then\n"
    "    grant, full = room, 1\n"
    "  else\n"
    "    local extra = math.floor((room - need) / nodes)\n"
    "    if extra > spare then extra = spare end\n"
    "    grant = need + extra\n"
    "  end\n"
    "  if grant > 0 then\n"
    "    redis.call('HSET', keys[1], field, grant .. ' ' .. (now + ttl))\n"
    "    redis.call('PEXPIRE', keys[1], ttl * 2)\n"
    "  else\n"
    "    redis.call('HDEL', keys[1], field)\n"
    "  end\n"
    "  return {grant, full}\n"
    "end)\n"
    /* KEYS[1] the epoch: made now if this Redis has none (a new or a restarted one). */
    "redis.register_function('ringsocks_v1_hello', function(keys, args)\n"
    "  local now = now_ms()\n"
    "  redis.call('SET', keys[1], now, 'NX')\n"
    "  return now - tonumber(redis.call('GET', keys[1]))\n"
    "end)\n"
    /* KEYS[1] the user's new-tunnel bucket (GCRA: the time it is empty until, in us); ARGV
     * want, rate, burst. Returns {tokens taken, ms until the next one when short}. */
    "redis.register_function('ringsocks_v1_rate', function(keys, args)\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "  local want, rate, burst = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])\n"
    "  local cost = 1000000 / rate\n"
    "  local tau = (burst - 1) * cost\n"
    "  local tat = tonumber(redis.call('GET', keys[1]) or '0') or 0\n"
    "  if tat < now then tat = now end\n"
    "  local room = math.floor((now + tau - tat) / cost) + 1\n"
    "  if room < 0 then room = 0 end\n"
    "  local n = math.min(want, room)\n"
    "  if n > 0 then\n"
    "    tat = tat + n * cost\n"
    "    redis.call('SET', keys[1], string.format('%.0f', tat), 'PX',\n"
    "               math.ceil((tat - now) / 1000) + 1000)\n"
    "  end\n"
    "  local wait = 0\n"
    "  if n < want then wait = math.max(1, math.ceil((tat + cost - tau - now) / 1000)) end\n"
    "  return {n, wait}\n"
    "end)\n"
    /* KEYS[1] the user's figures of one period; ARGV field, used, ttl_s (0: none). Returns the
     * others' sum. */
    "redis.register_function('ringsocks_v1_quota', function(keys, args)\n"
    "  redis.call('HSET', keys[1], args[1], args[2])\n"
    "  local ttl = tonumber(args[3])\n"
    "  if ttl > 0 then redis.call('EXPIRE', keys[1], ttl) end\n"
    "  local all = redis.call('HGETALL', keys[1])\n"
    "  local others = 0\n"
    "  for i = 1, #all, 2 do\n"
    "    if all[i] ~= args[1] then others = others + (tonumber(all[i + 1]) or 0) end\n"
    "  end\n"
    "  return others\n"
    "end)\n";

enum fstate { F_DOWN = 0, F_CONNECTING, F_UP };

/* Reconnects back off up to this: a Redis that returns is seen within a second. */
#define FLEET_BACKOFF_MAX_MS 1000

/* What a reply answers: the callback's privdata (malloc'ed; freed by the callback). */
enum req_kind {
    REQ_LOAD = 1,
    REQ_HELLO,
    REQ_AUTH,
    REQ_LEASE,
    REQ_RATE,
    REQ_QUOTA,
    REQ_USERS_GEN,
    REQ_USERS
};
struct req {
    struct fleet *f;
    enum req_kind kind;
    struct uacct *a;
    bool asking;       /* LEASE: a shard asked (the answer decides its parked requests) */
    uint32_t q_period; /* QUOTA: the period the figure was for */
    uint8_t q_kind;    /* QUOTA */
    char gen[32];      /* USERS: the generation it was fetched for */
};

struct fleet {
    struct fleet_conf c;
    struct acct_reg *reg;
    struct lease_board board;
    void (*wake)(void *arg);
    void *wake_arg;
    char field[192]; /* "node/pid": this process's lease field */

    redisAsyncContext *rc;
    enum fstate state;
    bool want_read, want_write;
    unsigned pending;     /* requests out */
    uint64_t progress_ms; /* the last reply, or when the first of pending went out */
    uint64_t connect_ms;  /* when the connect started */
    uint64_t next_connect_ms;
    uint64_t backoff_ms;
    bool said_down;    /* the outage is in the log already */
    uint64_t round_ms; /* the last periodic round */
    bool changed;      /* leases moved: bump the board, wake the shards */
    bool handed_over;  /* a binary upgrade handed over: no quota figure, no spare places */

    const struct policy *pol; /* during fleet_poll_done() */

    /* redis_users */
    char users_gen[32]; /* the generation loaded ("" none) */
    bool users_pending;
    char *users_text;
    bool users_new;

    struct fleet_stats st;
};

static uint64_t
now_ms(void)
{
    return lim_now_ns() / 1000000;
}

/* ---- the connection */

static void
ev_add_read(void *p)
{
    ((struct fleet *)p)->want_read = true;
}
static void
ev_del_read(void *p)
{
    ((struct fleet *)p)->want_read = false;
}
static void
ev_add_write(void *p)
{
    ((struct fleet *)p)->want_write = true;
}
static void
ev_del_write(void *p)
{
    ((struct fleet *)p)->want_write = false;
}
static void
ev_cleanup(void *p)
{
    struct fleet *f = p;
    f->want_read = f->want_write = false;
}

static const char *
addr_text(const struct fleet *f, char *buf, size_t cap)
{
    if (f->c.addr.unix_path)
        snprintf(buf, cap, "unix:%s", f->c.addr.host);
    else if (strchr(f->c.addr.host, ':'))
        snprintf(buf, cap, "[%s]:%d", f->c.addr.host, f->c.addr.port);
    else
        snprintf(buf, cap, "%s:%d", f->c.addr.host, f->c.addr.port);
    return buf;
}

/* Asks that come while Redis is away get the fallback at once. */
static void
fallback_one(void *arg, struct uacct *a)
{
    struct fleet *f = arg;
    if (f->c.fail_open)
        atomic_store_explicit(&a->lease, LEASE_NONE, memory_order_release);
    else
        atomic_store_explicit(&a->lease_full, true, memory_order_release);
    f->st.lease_fallbacks++;
    f->changed = true;
}

static void
went_down(struct fleet *f, const char *why)
{
    char where[160];
    f->st.errors++;
    f->st.up = 0;
    f->state = F_DOWN;
    atomic_store_explicit(&f->board.local_rate, f->c.fail_open, memory_order_release);
    f->pending = 0;
    f->next_connect_ms = now_ms() + f->backoff_ms;
    f->backoff_ms =
        f->backoff_ms * 2 > FLEET_BACKOFF_MAX_MS ? FLEET_BACKOFF_MAX_MS : f->backoff_ms * 2;
    if (!f->said_down) {
        f->said_down = true;
        fprintf(stderr,
                "ringsocks: redis %s: %s: serving on the leases held; new asks: redis_fallback = "
                "%s; retrying\n",
                addr_text(f, where, sizeof(where)), why, f->c.fail_open ? "open" : "closed");
    }
    for (size_t i = 0, n = acct_count(f->reg); i < n; i++) {
        struct uacct *a = acct_at(f->reg, i);
        a->ctl.lease_pending = a->ctl.quota_pending = a->ctl.rate_pending = false;
        a->ctl.fleet_pushed_ms = 0; /* every quota figure goes out again at the reconnect */
    }
    f->users_pending = false;
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    struct fleet *f = ac->data;
    f->rc = NULL; /* hiredis frees the context after this returns */
    if (f->state != F_DOWN)
        went_down(f, status == REDIS_OK ? "disconnected" : (ac->errstr ? ac->errstr : "error"));
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static bool
send_cmd(struct fleet *f, struct req *q, int argc, const char **argv, const size_t *lens)
{
    if (!f->rc) {
        free(q);
        return false;
    }
    if (redisAsyncCommandArgv(f->rc, on_reply, q, argc, argv, lens) != REDIS_OK) {
        free(q);
        return false;
    }
    if (!f->pending++)
        f->progress_ms = now_ms();
    return true;
}

static struct req *
req_new(struct fleet *f, enum req_kind kind, struct uacct *a)
{
    struct req *q = calloc(1, sizeof(*q));
    if (q) {
        q->f = f;
        q->kind = kind;
        q->a = a;
    }
    return q;
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    struct fleet *f = ac->data;
    if (status != REDIS_OK) {
        f->rc = NULL; /* hiredis frees it */
        went_down(f, ac->errstr ? ac->errstr : "connect failed");
        return;
    }
    /* AUTH first when set, then the library; UP when the library answers. */
    if (f->c.password[0]) {
        const char *argv[] = {"AUTH", f->c.password};
        send_cmd(f, req_new(f, REQ_AUTH, NULL), 2, argv, NULL);
    }
    const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", fleet_lib};
    send_cmd(f, req_new(f, REQ_LOAD, NULL), 4, argv, NULL);
    /* The epoch starts with the first node to reach a Redis without one: the grace after a
     * restart runs from then, before users ask. */
    char epoch[96];
    snprintf(epoch, sizeof(epoch), "%sepoch", f->c.prefix);
    const char *hello[] = {"FCALL", "ringsocks_v1_hello", "1", epoch};
    send_cmd(f, req_new(f, REQ_HELLO, NULL), 4, hello, NULL);
}

static void
start_connect(struct fleet *f)
{
    redisAsyncContext *ac = f->c.addr.unix_path ? redisAsyncConnectUnix(f->c.addr.host)
                                                : redisAsyncConnect(f->c.addr.host, f->c.addr.port);
    f->connect_ms = now_ms();
    if (!ac || ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        went_down(f, why);
        return;
    }
    ac->data = f;
    ac->ev.data = f;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    f->rc = ac;
    f->state = F_CONNECTING;
    /* A non-blocking connect reports through writability. */
    f->want_write = true;
}

/* Drop the connection from outside a callback (a timeout): every callback runs with NULL. */
static void
drop(struct fleet *f, const char *why)
{
    redisAsyncContext *ac = f->rc;
    went_down(f, why);
    if (ac) {
        f->rc = NULL;
        ac->onDisconnect = NULL;
        redisAsyncFree(ac);
    }
}

/* ---- requests */

static uint64_t
user_max_conns(const struct policy *pol, const struct uacct *a)
{
    struct lim_conf l;
    acctctl_limits(pol, a->name, &l);
    return lim_val(l.max_conns);
}

static uint64_t
open_of(const struct uacct *a)
{
    return atomic_load_explicit(&a->n.open, memory_order_acquire) & ~LIM_DEAD;
}

/* Ask Redis for a's lease: what it holds now, plus one when a request waits. */
static void
lease_request(struct fleet *f, struct uacct *a, uint64_t max, bool asking)
{
    uint64_t need, spare;
    fleet_want(open_of(a), asking, max, &need, &spare);
    /* Draining after a hand-over: no tunnel is admitted here again, the new process needs
     * the places. */
    if (f->handed_over)
        spare = 0;
    /*
     * Giving back room: lower the lease here first, to what Redis will grant for sure
     * (need), so no tunnel is admitted beyond the grant while the answer travels. A tunnel
     * admitted just before is counted by reading open again.
     */
    uint64_t lease = atomic_load_explicit(&a->lease, memory_order_acquire);
    uint64_t held = lease == LEASE_NONE ? open_of(a) : lease;
    if (lease != LEASE_NONE && lease > need) {
        atomic_store_explicit(&a->lease, need, memory_order_release);
        uint64_t again = open_of(a);
        if (again > need)
            need = again;
    }
    struct req *q = req_new(f, REQ_LEASE, a);
    if (!q)
        return;
    q->asking = asking;
    char key[512], epoch[96], n[24], s[24], m[24], ttl[24], h[24], grace[24];
    snprintf(key, sizeof(key), "%sconns:%s", f->c.prefix, a->name);
    snprintf(epoch, sizeof(epoch), "%sepoch", f->c.prefix);
    snprintf(h, sizeof(h), "%" PRIu64, held);
    /* Every node reconnects within a second of Redis's return (the backoff's cap) and
     * renews at once: two intervals more cover its round. */
    snprintf(grace, sizeof(grace), "%u", FLEET_BACKOFF_MAX_MS + 2 * f->c.interval_ms);
    snprintf(n, sizeof(n), "%" PRIu64, need);
    snprintf(s, sizeof(s), "%" PRIu64, spare);
    snprintf(m, sizeof(m), "%" PRIu64, max);
    snprintf(ttl, sizeof(ttl), "%u", f->c.interval_ms * 5);
    const char *argv[] = {"FCALL", "ringsocks_v1_lease", "2", key, epoch, f->field, n, s, m, ttl, h,
                          grace};
    if (send_cmd(f, q, 12, argv, NULL))
        a->ctl.lease_pending = true;
}

static void
on_lease(struct fleet *f, struct req *q, const redisReply *r)
{
    struct uacct *a = q->a;
    a->ctl.lease_pending = false;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        if (q->asking)
            fallback_one(f, a);
        return;
    }
    atomic_store_explicit(&a->lease, (uint64_t)r->element[0]->integer, memory_order_release);
    atomic_store_explicit(&a->lease_full, r->element[1]->integer != 0, memory_order_release);
    f->st.lease_rounds++;
    f->changed = true;
}

/* Take new-tunnel tokens for a from the fleet's bucket: a quarter interval's worth. */
static void
rate_request(struct fleet *f, struct uacct *a, uint64_t rate, uint64_t burst)
{
    if (!burst)
        burst = rate;
    uint64_t want = rate * f->c.interval_ms / 4000;
    want = want < 1 ? 1 : want > burst ? burst : want;
    struct req *q = req_new(f, REQ_RATE, a);
    if (!q)
        return;
    char key[512], w[24], r[24], b[24];
    snprintf(key, sizeof(key), "%srate:%s", f->c.prefix, a->name);
    snprintf(w, sizeof(w), "%" PRIu64, want);
    snprintf(r, sizeof(r), "%" PRIu64, rate);
    snprintf(b, sizeof(b), "%" PRIu64, burst);
    const char *argv[] = {"FCALL", "ringsocks_v1_rate", "1", key, w, r, b};
    if (send_cmd(f, q, 7, argv, NULL))
        a->ctl.rate_pending = true;
}

/* The bucket is dry for this long (or, Redis away and redis_fallback closed, an interval). */
static void
rate_dry(struct uacct *a, uint64_t ms)
{
    atomic_store_explicit(&a->rate_dry_until, lim_now_ns() + ms * 1000000, memory_order_release);
}

static void
on_rate(struct fleet *f, struct req *q, const redisReply *r)
{
    struct uacct *a = q->a;
    a->ctl.rate_pending = false;
    f->changed = true;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        if (!f->c.fail_open)
            rate_dry(a, f->c.interval_ms);
        return;
    }
    long long n = r->element[0]->integer, wait = r->element[1]->integer;
    if (n > 0) {
        atomic_fetch_add_explicit(&a->rate_tokens, (uint64_t)n, memory_order_acq_rel);
        atomic_store_explicit(&a->rate_dry_until, 0, memory_order_release);
    } else {
        rate_dry(a, wait > 0 ? (uint64_t)wait : 1);
    }
    f->st.lease_rounds++;
}

static uint32_t
period_ttl_s(uint8_t kind)
{
    return kind == LIM_PERIOD_DAY ? 2 * 86400 : kind == LIM_PERIOD_MONTH ? 63 * 86400 : 0;
}

static void
quota_request(struct fleet *f, struct uacct *a)
{
    struct req *q = req_new(f, REQ_QUOTA, a);
    if (!q)
        return;
    q->q_kind = a->ctl.quota_kind;
    q->q_period = a->ctl.quota_period;
    uint64_t used = acctctl_used(a);
    char key[512], v[24], ttl[24];
    snprintf(key, sizeof(key), "%squota:%s:%s:%" PRIu32, f->c.prefix, a->name,
             acctctl_period_str((enum lim_period)q->q_kind), q->q_period);
    snprintf(v, sizeof(v), "%" PRIu64, used);
    snprintf(ttl, sizeof(ttl), "%" PRIu32, period_ttl_s(q->q_kind));
    const char *argv[] = {"FCALL", "ringsocks_v1_quota", "1", key, f->c.node, v, ttl};
    if (send_cmd(f, q, 7, argv, NULL)) {
        a->ctl.quota_pending = true;
        a->ctl.fleet_pushed = used;
        a->ctl.fleet_pushed_ms = now_ms();
    }
}

static void
on_quota(struct fleet *f, struct req *q, const redisReply *r)
{
    struct uacct *a = q->a;
    a->ctl.quota_pending = false;
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        return;
    /* A figure of a period that ended meanwhile says nothing of the new one. */
    if (a->ctl.quota_kind != q->q_kind || a->ctl.quota_period != q->q_period)
        return;
    a->ctl.fleet_others = (uint64_t)r->integer;
    f->st.quota_syncs++;
}

static void
users_request(struct fleet *f)
{
    char key[128];
    snprintf(key, sizeof(key), "%susers:gen", f->c.prefix);
    const char *argv[] = {"GET", key};
    if (send_cmd(f, req_new(f, REQ_USERS_GEN, NULL), 2, argv, NULL))
        f->users_pending = true;
}

static void
on_users_gen(struct fleet *f, const redisReply *r)
{
    char gen[32];
    if (!r || r->type != REDIS_REPLY_STRING || r->len >= sizeof(gen)) {
        /* No generation key: Redis has no table (yet), the one in force stays. */
        f->users_pending = false;
        return;
    }
    memcpy(gen, r->str, r->len + 1);
    if (strcmp(gen, f->users_gen) == 0) {
        f->users_pending = false;
        return;
    }
    struct req *q = req_new(f, REQ_USERS, NULL);
    if (!q) {
        f->users_pending = false;
        return;
    }
    snprintf(q->gen, sizeof(q->gen), "%s", gen);
    char key[128];
    snprintf(key, sizeof(key), "%susers", f->c.prefix);
    const char *argv[] = {"HGETALL", key};
    if (!send_cmd(f, q, 2, argv, NULL))
        f->users_pending = false;
}

/* The hash's fields and values as users-file lines "name:value". */
static void
on_users(struct fleet *f, struct req *q, const redisReply *r)
{
    f->users_pending = false;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return;
    size_t len = 1;
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            return;
        len += r->element[i]->len + 1;
    }
    char *text = malloc(len), *p = text;
    if (!text)
        return;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        /* A newline inside would make two lines of one: the users parser must see one. */
        if (memchr(k->str, '\n', k->len) || memchr(v->str, '\n', v->len) ||
            memchr(k->str, '\0', k->len) || memchr(v->str, '\0', v->len)) {
            fprintf(stderr,
                    "ringsocks: redis %susers: field %.*s: a newline or NUL; table not "
                    "loaded\n",
                    f->c.prefix, (int)(k->len > 64 ? 64 : k->len), k->str);
            free(text);
            f->st.errors++;
            snprintf(f->users_gen, sizeof(f->users_gen), "%s", q->gen);
            return;
        }
        memcpy(p, k->str, k->len);
        p += k->len;
        *p++ = ':';
        memcpy(p, v->str, v->len);
        p += v->len;
        *p++ = '\n';
    }
    *p = '\0';
    free(f->users_text);
    f->users_text = text;
    f->users_new = true;
    snprintf(f->users_gen, sizeof(f->users_gen), "%s", q->gen);
    f->st.users_loads++;
}

static void
on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct req *q = privdata;
    struct fleet *f = q->f;
    const redisReply *r = reply;
    if (f->pending)
        f->pending--;
    f->progress_ms = now_ms();
    if (r && r->type == REDIS_REPLY_ERROR) {
        f->st.errors++;
        /* Said once per outage: a wrong password or an old Redis fails every reconnect. */
        if ((q->kind == REQ_LOAD || q->kind == REQ_AUTH) && !f->said_down) {
            char where[160];
            fprintf(stderr, "ringsocks: redis %s: %s: %s\n", addr_text(f, where, sizeof(where)),
                    q->kind == REQ_AUTH ? "AUTH" : "FUNCTION LOAD (Redis 7 or later needed)",
                    r->str);
        }
    }
    switch (q->kind) {
    case REQ_AUTH:
        break;
    case REQ_HELLO:
        if (r && r->type == REDIS_REPLY_INTEGER &&
            r->integer < (long long)FLEET_BACKOFF_MAX_MS + 2ll * f->c.interval_ms)
            fprintf(stderr,
                    "ringsocks: redis: its state is new (started or restarted %lld ms ago): "
                    "for the next %u ms, nodes take back the places they hold and none gets "
                    "more\n",
                    r->integer, FLEET_BACKOFF_MAX_MS + 2 * f->c.interval_ms);
        break;
    case REQ_LOAD:
        if (r && r->type != REDIS_REPLY_ERROR && f->state == F_CONNECTING) {
            char where[160];
            f->state = F_UP;
            f->st.up = 1;
            atomic_store_explicit(&f->board.local_rate, false, memory_order_release);
            f->changed = true;
            f->backoff_ms = 100;
            fprintf(stderr, "ringsocks: redis %s: connected%s\n",
                    addr_text(f, where, sizeof(where)), f->said_down ? " again" : "");
            f->said_down = false;
            f->round_ms = 0; /* a round now: the figures reach Redis again */
        }
        break;
    case REQ_LEASE:
        on_lease(f, q, r);
        break;
    case REQ_RATE:
        on_rate(f, q, r);
        break;
    case REQ_QUOTA:
        on_quota(f, q, r);
        break;
    case REQ_USERS_GEN:
        on_users_gen(f, r);
        break;
    case REQ_USERS:
        on_users(f, q, r);
        break;
    }
    free(q);
}

/* ---- rounds */

/* A shard found a's lease spent: ask Redis now (or, Redis away, answer by the fallback). */
static void
answer_ask(void *arg, struct uacct *a)
{
    struct fleet *f = arg;
    struct lim_conf l;
    lim_conf_unset(&l);
    if (a->ctl.in_users)
        acctctl_limits(f->pol, a->name, &l);
    if (atomic_exchange_explicit(&a->want_rate, false, memory_order_acq_rel)) {
        uint64_t rate = lim_val(l.rate);
        if (!rate || f->state != F_UP) {
            /* No fleet rate (any more), or Redis away: open has the local buckets decide
             * (local_rate), closed refuses for an interval. */
            if (rate && !f->c.fail_open)
                rate_dry(a, f->c.interval_ms);
            if (rate)
                f->st.lease_fallbacks++;
            f->changed = true;
        } else if (!a->ctl.rate_pending) {
            rate_request(f, a, rate, lim_val(l.burst));
        }
    }
    if (!atomic_exchange_explicit(&a->want_conns, false, memory_order_acq_rel))
        return;
    uint64_t max = lim_val(l.max_conns);
    if (!max) {
        /* No fleet limit (any more): nothing to lease, the local limits decide. */
        atomic_store_explicit(&a->lease, LEASE_NONE, memory_order_release);
        f->changed = true;
    } else if (f->state != F_UP) {
        fallback_one(f, a);
    } else if (!a->ctl.lease_pending) {
        /* With one out, its answer moves the board: the parked requests retry, and ask
         * again if they still find no room. */
        lease_request(f, a, max, true);
    }
}

/* Every interval: renew the leases held (to grow, shrink, or stay alive) and the quotas. */
static void
round_users(struct fleet *f)
{
    uint64_t ms = now_ms();
    for (size_t i = 0, n = acct_count(f->reg); i < n; i++) {
        struct uacct *a = acct_at(f->reg, i);
        if (!a->ctl.in_users)
            continue;
        uint64_t max = user_max_conns(f->pol, a);
        uint64_t lease = atomic_load_explicit(&a->lease, memory_order_acquire);
        /* A user told "full" asks no more: the round finds out when it is not. */
        bool full = atomic_load_explicit(&a->lease_full, memory_order_acquire);
        if (max && !a->ctl.lease_pending && (lease || open_of(a) || full))
            lease_request(f, a, max, false);
        else if (!max && lease != LEASE_NONE && lease) {
            atomic_store_explicit(&a->lease, LEASE_NONE, memory_order_release);
            f->changed = true;
        }
        if (a->ctl.q_bytes && !a->ctl.quota_pending && !f->handed_over &&
            (acctctl_used(a) != a->ctl.fleet_pushed || open_of(a) ||
             ms - a->ctl.fleet_pushed_ms >= 10ull * f->c.interval_ms))
            quota_request(f, a);
    }
}

void
fleet_hand_over(struct fleet *f)
{
    if (!f)
        return;
    f->handed_over = true;
    f->round_ms = 0; /* a round now: the spare places go back at once */
}

/* ---- the loop */

struct fleet *
fleet_new(const struct fleet_conf *conf, struct acct_reg *reg, void (*wake)(void *arg),
          void *wake_arg, char *err, size_t errlen)
{
    struct fleet *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->c = *conf;
    f->reg = reg;
    f->wake = wake;
    f->wake_arg = wake_arg;
    f->backoff_ms = 100;
    snprintf(f->field, sizeof(f->field), "%s/%d", f->c.node, (int)getpid());
    f->board.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (f->board.wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        free(f);
        return NULL;
    }
    return f;
}

void
fleet_free(struct fleet *f)
{
    if (!f)
        return;
    if (f->rc) {
        redisAsyncContext *ac = f->rc;
        f->rc = NULL;
        ac->onDisconnect = NULL;
        f->state = F_DOWN;
        redisAsyncFree(ac);
    }
    free(f->users_text);
    close(f->board.wake_fd);
    free(f);
}

struct lease_board *
fleet_board(struct fleet *f)
{
    return &f->board;
}

static int
ms_until(uint64_t when, uint64_t now)
{
    return when <= now ? 0 : when - now > 200 ? 200 : (int)(when - now);
}

unsigned
fleet_poll_prepare(struct fleet *f, struct pollfd *pfd, int *timeout_ms)
{
    uint64_t now = now_ms();
    int t = 50; /* asks from the shards are looked at this often at least */
    if (f->state == F_DOWN) {
        int c = ms_until(f->next_connect_ms, now);
        if (c < t)
            t = c;
    } else if (f->state == F_UP) {
        int c = ms_until(f->round_ms + f->c.interval_ms, now);
        if (c < t)
            t = c;
    }
    if (t < *timeout_ms)
        *timeout_ms = t;
    /* pfd[0]: the shards' asks; pfd[1]: Redis, when hiredis wants something of it. */
    pfd[0] = (struct pollfd){.fd = f->board.wake_fd, .events = POLLIN};
    if (!f->rc || (!f->want_read && !f->want_write))
        return 1;
    pfd[1].fd = f->rc->c.fd;
    pfd[1].events = (short)((f->want_read ? POLLIN : 0) | (f->want_write ? POLLOUT : 0));
    pfd[1].revents = 0;
    return 2;
}

void
fleet_poll_done(struct fleet *f, const struct pollfd *pfd, unsigned n, const struct policy *pol)
{
    f->pol = pol;
    if (n >= 1 && (pfd[0].revents & POLLIN)) {
        uint64_t v;
        ssize_t got = read(f->board.wake_fd, &v, sizeof(v));
        (void)got; /* the asks are taken below either way */
    }
    if (n >= 2 && f->rc) {
        if (pfd[1].revents & (POLLIN | POLLERR | POLLHUP))
            redisAsyncHandleRead(f->rc);
        if (f->rc && (pfd[1].revents & (POLLOUT | POLLERR)))
            redisAsyncHandleWrite(f->rc);
    }
    /* After the replies: their callbacks moved progress_ms on. */
    uint64_t now = now_ms();
    /* No answer in time: a Redis that hangs is as good as gone. */
    uint64_t limit = f->c.interval_ms * 2 > 2000 ? f->c.interval_ms * 2 : 2000;
    if (f->rc && f->state == F_CONNECTING && now - f->connect_ms > limit)
        drop(f, "no connection in time");
    else if (f->rc && f->pending && now - f->progress_ms > limit)
        drop(f, "no answer in time");
    if (f->state == F_DOWN && !f->rc && now >= f->next_connect_ms)
        start_connect(f);
    lease_asks_take(&f->board, answer_ask, f);
    if (f->state == F_UP && now - f->round_ms >= f->c.interval_ms) {
        f->round_ms = now;
        round_users(f);
        if (f->c.users && !f->users_pending)
            users_request(f);
    }
    if (f->changed) {
        f->changed = false;
        atomic_fetch_add_explicit(&f->board.gen, 1, memory_order_release);
        f->wake(f->wake_arg);
    }
    f->pol = NULL;
}

bool
fleet_users_changed(struct fleet *f)
{
    bool c = f->users_new;
    f->users_new = false;
    return c;
}

const char *
fleet_users_text(const struct fleet *f)
{
    return f ? f->users_text : NULL;
}

void
fleet_stats(const struct fleet *f, struct fleet_stats *out)
{
    *out = f->st;
}
