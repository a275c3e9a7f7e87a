/*
 * acctctl.c - quotas, the state file, the accounting export and the
 * per-user series (acctctl.h), over the registry of users' running state.
 *
 * Control thread only (main() before the shards start): file writes and
 * fsync happen here, never on a shard. The shards' side is a handful of
 * atomics in struct uacct: it reads them relaxed and writes only
 * uacct.over_quota (one store, when it changes) and the acct_ctl block.
 */
#include "acctctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acct.h"
#include "json.h"
#include "metrics.h"
#include "pct.h"
#include "opts.h"
#include "policy.h"
#include "users.h"

#define ACCTCTL_STATE_MAGIC "ringsocks-state 1"

/* ---- pure parts */

uint32_t
acctctl_period(enum lim_period p, time_t t)
{
    struct tm tm;
    switch (p) {
    case LIM_PERIOD_DAY:
        return t < 0 ? 0 : (uint32_t)(t / 86400);
    case LIM_PERIOD_MONTH:
        if (t < 0 || !gmtime_r(&t, &tm))
            return 0;
        return (uint32_t)((tm.tm_year - 70) * 12 + tm.tm_mon);
    default:
        return 0;
    }
}

static const char *const period_words[] = {"none", "day", "month", "total"};

const char *
acctctl_period_str(enum lim_period p)
{
    return (unsigned)p < 4 ? period_words[p] : "none";
}

static uint64_t
bytes_sum(const struct uacct *a)
{
    return atomic_load_explicit(&a->n.bytes[0], memory_order_relaxed) +
           atomic_load_explicit(&a->n.bytes[1], memory_order_relaxed);
}

uint64_t
acctctl_used(const struct uacct *a)
{
    return a->ctl.quota_used + (bytes_sum(a) - a->ctl.quota_mark);
}

void
acctctl_limits(const struct policy *pol, const char *name, struct lim_conf *out)
{
    struct users_info ui;
    lim_conf_unset(out);
    if (pol->users && users_info(pol->users, name, &ui) && ui.lim)
        *out = *ui.lim;
    lim_conf_merge(out, &pol->user_lim);
}

void
acctctl_periods(time_t wall, uint32_t period_now[4])
{
    for (int k = 0; k < 4; k++)
        period_now[k] = acctctl_period((enum lim_period)k, wall);
}

bool
acctctl_quota_check(struct uacct *a, const uint32_t period_now[4])
{
    struct acct_ctl *c = &a->ctl;
    unsigned kind = c->q_bytes ? c->q_kind : LIM_PERIOD_NONE;
    if (kind > LIM_PERIOD_TOTAL)
        kind = LIM_PERIOD_NONE;
    if (kind != c->quota_kind || period_now[kind] != c->quota_period) {
        /* A new period, or another kind of period: counting starts again. */
        c->quota_kind = (uint8_t)kind;
        c->quota_period = period_now[kind];
        c->quota_used = 0;
        c->quota_mark = bytes_sum(a);
        c->closed_for_quota = false;
        c->fleet_others = 0;
    }
    /* In a fleet, the other nodes' use of the period too (fleet.h). */
    bool over = kind != LIM_PERIOD_NONE && acctctl_used(a) + c->fleet_others >= c->q_bytes;
    if (over != atomic_load_explicit(&a->over_quota, memory_order_relaxed))
        atomic_store_explicit(&a->over_quota, over, memory_order_release);
    if (!over) {
        c->closed_for_quota = false;
        return false;
    }
    if (!c->q_close || c->closed_for_quota)
        return false;
    c->closed_for_quota = true;
    return true;
}

/* ---- text */

static bool
buf_room(struct acctctl_buf *b, size_t more)
{
    if (b->oom)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void
acctctl_printf(struct acctctl_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_room(b, (size_t)n))
        return;
    if ((size_t)n < sizeof(small)) {
        memcpy(b->p + b->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void
acctctl_json_str(struct acctctl_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (!buf_room(b, n * 6 + 2))
        return;
    b->len += json_escape(s, n, b->p + b->len, b->cap - b->len);
}

/* The state file's NAME: bytes that would break its words or lines as %XX. */
static void
pct_encode(struct acctctl_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c == '%' || c >= 0x7f)
            acctctl_printf(b, "%%%02X", c);
        else
            acctctl_printf(b, "%c", c);
    }
}

/* ---- the state file */

static int
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (*s < '0' || *s > '9' || d > max || v > (max - d) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/*
 * While the file is read, q_gen marks the users it named already (no
 * policy has generation 0 or STATE_SEEN; the first quota refresh sets it).
 */
#define STATE_SEEN UINT64_MAX

/* One user line: 0, or -1 with the reason in why. */
static int
state_line(char *line, struct acct_reg *reg, char *why, size_t whycap)
{
    char *w[6], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(line, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        if (n < 6)
            w[n++] = t;
        else
            n++;
    if (n != 5) {
        snprintf(why, whycap, "%d words, not 5 (NAME KIND PERIOD USED BLOCKED)", n);
        return -1;
    }
    char name[1024];
    if (pct_decode(w[0], strlen(w[0]), false, name, sizeof(name)) <= 0 || strchr(name, ':')) {
        snprintf(why, whycap, "'%.64s' is not a user name (percent-encoded, no ':')", w[0]);
        return -1;
    }
    int kind = -1;
    for (int k = 0; k < 4; k++)
        if (strcmp(w[1], period_words[k]) == 0)
            kind = k;
    uint64_t period, used, blocked;
    if (kind < 0) {
        snprintf(why, whycap, "period kind '%.32s' is not day, month, total or none", w[1]);
        return -1;
    }
    if (parse_u64(w[2], UINT32_MAX, &period) < 0 || parse_u64(w[3], UINT64_MAX, &used) < 0 ||
        parse_u64(w[4], 1, &blocked) < 0) {
        snprintf(why, whycap, "PERIOD, USED and BLOCKED must be numbers (BLOCKED 0 or 1)");
        return -1;
    }
    struct uacct *a = acct_get(reg, name);
    if (!a) {
        snprintf(why, whycap, "out of memory");
        return -1;
    }
    if (a->ctl.q_gen == STATE_SEEN) {
        snprintf(why, whycap, "user '%.64s' again", w[0]);
        return -1;
    }
    a->ctl.q_gen = STATE_SEEN;
    a->ctl.quota_kind = (uint8_t)kind;
    a->ctl.quota_period = (uint32_t)period;
    a->ctl.quota_used = used;
    a->ctl.quota_mark = bytes_sum(a);
    atomic_store_explicit(&a->blocked, blocked != 0, memory_order_relaxed);
    return 0;
}

int
acctctl_state_read(const char *path, struct acct_reg *reg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL, why[256];
    size_t cap = 0;
    ssize_t len;
    unsigned lineno = 0;
    int rc = 0;
    bool magic = false;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (!magic) {
            if (strcmp(line, ACCTCTL_STATE_MAGIC) != 0) {
                snprintf(err, errlen, "%s:%u: not a ringsocks state file of version 1 (\"%s\")",
                         path, lineno, ACCTCTL_STATE_MAGIC);
                rc = -1;
                break;
            }
            magic = true;
            continue;
        }
        if ((size_t)len != strlen(line)) {
            snprintf(err, errlen, "%s:%u: a NUL byte", path, lineno);
            rc = -1;
            break;
        }
        if (line[strspn(line, " \t")] == '\0' || line[strspn(line, " \t")] == '#')
            continue;
        if (state_line(line, reg, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    for (size_t i = 0; i < acct_count(reg); i++)
        if (acct_at(reg, i)->ctl.q_gen == STATE_SEEN)
            acct_at(reg, i)->ctl.q_gen = 0;
    free(line);
    fclose(f);
    return rc;
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync the directory holding path, so the rename survives a power cut. */
static int
sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -errno;
    int rc = fsync(fd) == -1 ? -errno : 0;
    close(fd);
    return rc;
}

int
acctctl_state_write(const char *path, const struct acct_reg *reg)
{
    struct acctctl_buf b = {0};
    char tmp[4096 + 8];
    int rc = 0, fd = -1;
    acctctl_printf(&b, ACCTCTL_STATE_MAGIC "\n# NAME KIND PERIOD USED BLOCKED\n");
    for (size_t i = 0; i < acct_count(reg); i++) {
        const struct uacct *a = acct_at(reg, i);
        bool blocked = atomic_load_explicit(&a->blocked, memory_order_relaxed);
        if (a->ctl.quota_kind == LIM_PERIOD_NONE && !blocked)
            continue;
        pct_encode(&b, a->name);
        acctctl_printf(&b, " %s %" PRIu32 " %" PRIu64 " %d\n",
                       acctctl_period_str((enum lim_period)a->ctl.quota_kind), a->ctl.quota_period,
                       a->ctl.quota_kind == LIM_PERIOD_NONE ? 0 : acctctl_used(a), blocked);
    }
    if (b.oom) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd == -1) {
        rc = -errno;
        goto out;
    }
    if ((rc = write_all(fd, b.p, b.len)) < 0 || (fsync(fd) == -1 && (rc = -errno) < 0))
        goto out_unlink;
    int cr = close(fd);
    fd = -1;
    if (cr == -1) {
        rc = -errno;
        goto out_unlink;
    }
    if (rename(tmp, path) == -1) {
        rc = -errno;
        goto out_unlink;
    }
    rc = sync_dir(path);
    goto out;
out_unlink:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out:
    free(b.p);
    return rc;
}

/* ---- the accounting export */

size_t
acctctl_export(const struct acct_reg *reg, time_t wall, unsigned interval_s, struct acctctl_buf *b)
{
    char when[32];
    struct tm tm;
    size_t lines = 0;
    gmtime_r(&wall, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (size_t i = 0; i < acct_count(reg); i++) {
        struct uacct *a = acct_at(reg, i);
        struct acct_ctl *c = &a->ctl;
        uint64_t bytes[2], opened, hits[LIMH__COUNT], d_hits = 0;
        for (int d = 0; d < 2; d++)
            bytes[d] = atomic_load_explicit(&a->n.bytes[d], memory_order_relaxed);
        opened = atomic_load_explicit(&a->n.opened, memory_order_relaxed);
        for (int h = 0; h < LIMH__COUNT; h++) {
            hits[h] = atomic_load_explicit(&a->n.hits[h], memory_order_relaxed);
            d_hits |= hits[h] - c->hits[h];
        }
        uint64_t open = atomic_load_explicit(&a->n.open, memory_order_relaxed) & ~LIM_DEAD;
        if (bytes[0] == c->bytes[0] && bytes[1] == c->bytes[1] && opened == c->opened && !d_hits &&
            !open)
            continue;
        acctctl_printf(b, "{\"time\":\"%s\",\"interval_s\":%u,\"user\":", when, interval_s);
        acctctl_json_str(b, a->name);
        acctctl_printf(b,
                       ",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64
                       ",\"tunnels_opened\":%" PRIu64 ",\"tunnels_open\":%" PRIu64
                       ",\"limit_hits\":{",
                       bytes[0] - c->bytes[0], bytes[1] - c->bytes[1], opened - c->opened, open);
        for (int h = 0; h < LIMH__COUNT; h++)
            acctctl_printf(b, "%s\"%s\":%" PRIu64, h ? "," : "", lim_hit_str((enum lim_hit)h),
                           hits[h] - c->hits[h]);
        if (c->quota_kind != LIM_PERIOD_NONE)
            acctctl_printf(b, "},\"quota_used\":%" PRIu64 "}\n", acctctl_used(a));
        else
            acctctl_printf(b, "},\"quota_used\":null}\n");
        memcpy(c->bytes, bytes, sizeof(bytes));
        c->opened = opened;
        memcpy(c->hits, hits, sizeof(hits));
        lines++;
    }
    return lines;
}

/* ---- per-user series */

static bool
has_activity(const struct uacct *a)
{
    uint64_t any = atomic_load_explicit(&a->n.opened, memory_order_relaxed) | bytes_sum(a) |
                   (atomic_load_explicit(&a->n.open, memory_order_relaxed) & ~LIM_DEAD);
    for (int h = 0; h < LIMH__COUNT; h++)
        any |= atomic_load_explicit(&a->n.hits[h], memory_order_relaxed);
    return any != 0;
}

static void
add_user(struct metrics_user *m, const struct uacct *a)
{
    for (int d = 0; d < 2; d++)
        m->bytes[d] += atomic_load_explicit(&a->n.bytes[d], memory_order_relaxed);
    m->opened += atomic_load_explicit(&a->n.opened, memory_order_relaxed);
    m->open += atomic_load_explicit(&a->n.open, memory_order_relaxed) & ~LIM_DEAD;
    for (int h = 0; h < LIMH__COUNT; h++)
        m->hits[h] += atomic_load_explicit(&a->n.hits[h], memory_order_relaxed);
    if (a->ctl.quota_kind != LIM_PERIOD_NONE)
        m->quota_used += acctctl_used(a);
}

size_t
acctctl_metrics_users(const struct acct_reg *reg, unsigned max, uint32_t *next_rank,
                      struct metrics_user **out)
{
    size_t n = acct_count(reg), k = 0;
    *out = NULL;
    if (!max)
        return 0;
    struct metrics_user *m = calloc((n < max ? n : max) + 1, sizeof(*m));
    if (!m)
        return 0;
    struct metrics_user other = {.name = NULL};
    bool others = false;
    for (size_t i = 0; i < n; i++) {
        struct uacct *a = acct_at(reg, i);
        if (!a->ctl.metrics_rank && *next_rank < max && has_activity(a))
            a->ctl.metrics_rank = ++*next_rank;
        if (a->ctl.metrics_rank && a->ctl.metrics_rank <= max) {
            m[k].name = a->name;
            add_user(&m[k++], a);
        } else {
            add_user(&other, a);
            others = true;
        }
    }
    if (others)
        m[k++] = other;
    *out = m;
    return k;
}

/* ---- the control thread's part */

struct acctctl {
    struct acct_reg *reg;
    char state_path[4096]; /* "": none */
    char log_path[4096];   /* "": none */
    int log_fd;
    uint64_t gen;                 /* the policy the users' quotas were taken from */
    uint64_t state_ms, export_ms; /* CLOCK_MONOTONIC of the last save and the last export */
    time_t export_wall;
    int state_err; /* the last save's error, so a failing save is said once */
    uint32_t next_rank;
};

static uint64_t
mono_ms(void)
{
    return lim_now_ns() / 1000000;
}

static int
open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd == -1 ? -errno : fd;
}

/* Take a user's effective quota from pol. */
static void
quota_of(struct uacct *a, const struct policy *pol)
{
    struct lim_conf l;
    struct users_info ui;
    a->ctl.in_users = pol->users && users_info(pol->users, a->name, &ui);
    acctctl_limits(pol, a->name, &l);
    a->ctl.q_bytes = lim_val(l.quota);
    a->ctl.q_kind = (uint8_t)(l.quota_period == LIM_UNSET ? LIM_PERIOD_NONE : l.quota_period);
    a->ctl.q_close = lim_val(l.quota_close) != 0;
    a->ctl.q_gen = pol->gen;
}

void
acctctl_add_used(const struct policy *pol, struct uacct *a, uint64_t bytes)
{
    uint32_t now[4];
    if (a->ctl.q_gen != pol->gen)
        quota_of(a, pol);
    /* Into its current period first, which would otherwise start the count at 0. */
    acctctl_periods(time(NULL), now);
    if (acctctl_quota_check(a, now))
        a->ctl.closed_for_quota = false; /* over with quota_close: the next tick closes */
    a->ctl.quota_used += bytes;
}

/* Every user's effective quota (after a load or a reload). */
static void
quota_refresh(struct acctctl *ac, const struct policy *pol)
{
    for (size_t i = 0; i < acct_count(ac->reg); i++)
        quota_of(acct_at(ac->reg, i), pol);
    ac->gen = pol->gen;
}

/* Some user has a quota (its line's, or user_limits'). */
static bool
any_quota(const struct policy *pol)
{
    if (lim_val(pol->user_lim.quota))
        return true;
    for (size_t i = 0; pol->users && users_name(pol->users, i); i++) {
        struct lim_conf l;
        acctctl_limits(pol, users_name(pol->users, i), &l);
        if (lim_val(l.quota))
            return true;
    }
    return false;
}

struct acctctl *
acctctl_new(const struct opts *o, const struct policy *pol, struct acct_reg *reg, char *err,
            size_t errlen)
{
    struct acctctl *ac = calloc(1, sizeof(*ac));
    if (!ac) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ac->reg = reg;
    ac->log_fd = -1;
    ac->state_ms = ac->export_ms = mono_ms();
    ac->export_wall = time(NULL);
    snprintf(ac->state_path, sizeof(ac->state_path), "%s", o->state_file);
    if (ac->state_path[0]) {
        if (acctctl_state_read(ac->state_path, reg, err, errlen) < 0)
            goto fail;
        quota_refresh(ac, pol);
        uint32_t now[4];
        acctctl_periods(time(NULL), now);
        for (size_t i = 0; i < acct_count(reg); i++)
            acctctl_quota_check(acct_at(reg, i), now);
        int rc = acctctl_state_write(ac->state_path, reg);
        if (rc < 0) {
            snprintf(err, errlen, "state_file %s: cannot write it: %s", ac->state_path,
                     strerror(-rc));
            goto fail;
        }
    } else if (any_quota(pol)) {
        fprintf(stderr, "ringsocks: warning: quotas are configured but state_file is not set: "
                        "every restart starts the quotas from 0\n");
    }
    if (strcmp(o->accounting_log, "off") != 0 && o->accounting_log[0]) {
        snprintf(ac->log_path, sizeof(ac->log_path), "%s", o->accounting_log);
        ac->log_fd = open_log(ac->log_path);
        if (ac->log_fd < 0) {
            snprintf(err, errlen, "accounting_log %s: %s", ac->log_path, strerror(-ac->log_fd));
            goto fail;
        }
    }
    return ac;
fail:
    free(ac);
    return NULL;
}

void
acctctl_free(struct acctctl *ac)
{
    if (!ac)
        return;
    if (ac->log_fd >= 0)
        close(ac->log_fd);
    free(ac);
}

int
acctctl_save(struct acctctl *ac)
{
    if (!ac || !ac->state_path[0])
        return 0;
    ac->state_ms = mono_ms();
    int rc = acctctl_state_write(ac->state_path, ac->reg);
    if (rc < 0 && rc != ac->state_err)
        fprintf(stderr,
                "ringsocks: state_file %s: cannot write it: %s (tried again every "
                "state_interval)\n",
                ac->state_path, strerror(-rc));
    else if (rc == 0 && ac->state_err)
        fprintf(stderr, "ringsocks: state_file %s: written again\n", ac->state_path);
    ac->state_err = rc;
    return rc;
}

void
acctctl_state_release(struct acctctl *ac)
{
    if (ac)
        ac->state_path[0] = '\0';
}

static void
export_now(struct acctctl *ac)
{
    time_t wall = time(NULL);
    uint64_t now = mono_ms();
    unsigned interval_s = (unsigned)((now - ac->export_ms + 500) / 1000);
    ac->export_ms = now;
    ac->export_wall = wall;
    if (ac->log_fd < 0)
        return;
    struct acctctl_buf b = {0};
    acctctl_export(ac->reg, wall, interval_s, &b);
    int rc = b.oom ? -ENOMEM : write_all(ac->log_fd, b.p, b.len);
    if (rc < 0)
        fprintf(stderr, "ringsocks: accounting_log %s: %s (these lines are lost)\n", ac->log_path,
                strerror(-rc));
    free(b.p);
}

void
acctctl_tick(struct acctctl *ac, const struct policy *pol, void (*over)(void *arg, struct uacct *a),
             void *arg)
{
    if (!ac)
        return;
    if (ac->gen != pol->gen)
        quota_refresh(ac, pol);
    uint32_t now[4];
    acctctl_periods(time(NULL), now);
    for (size_t i = 0; i < acct_count(ac->reg); i++) {
        struct uacct *a = acct_at(ac->reg, i);
        if (a->ctl.q_gen != ac->gen) /* made since the refresh */
            quota_of(a, pol);
        if (acctctl_quota_check(a, now) && over)
            over(arg, a);
    }
    uint64_t ms = mono_ms();
    if (ac->state_path[0] && ms - ac->state_ms >= (uint64_t)pol->state_interval_s * 1000)
        acctctl_save(ac);
    if (ms - ac->export_ms >= (uint64_t)pol->accounting_interval_s * 1000)
        export_now(ac);
}

void
acctctl_reopen(struct acctctl *ac)
{
    if (!ac || ac->log_fd < 0)
        return;
    int fd = open_log(ac->log_path);
    if (fd < 0) {
        fprintf(stderr, "ringsocks: accounting_log: reopen %s: %s (still writing the old one)\n",
                ac->log_path, strerror(-fd));
        return;
    }
    close(ac->log_fd);
    ac->log_fd = fd;
    fprintf(stderr, "ringsocks: accounting_log %s reopened\n", ac->log_path);
}

void
acctctl_finish(struct acctctl *ac, const struct policy *pol)
{
    if (!ac)
        return;
    acctctl_tick(ac, pol, NULL, NULL);
    export_now(ac);
    acctctl_save(ac);
}

size_t
acctctl_metrics(struct acctctl *ac, const struct policy *pol, struct metrics_user **out)
{
    *out = NULL;
    return ac ? acctctl_metrics_users(ac->reg, pol->metrics_users, &ac->next_rank, out) : 0;
}
