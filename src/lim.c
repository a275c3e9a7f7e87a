/*
 * lim.c - limits as configured, and the lock-free counters and GCRA buckets
 * every shard shares (lim.h).
 */
#include "lim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char lim_conf_keys[] = "max_conns, rate, burst, bw_up, bw_down, tunnel_bw_up, "
                             "tunnel_bw_down, quota, quota_close";

void
lim_conf_unset(struct lim_conf *l)
{
    l->max_conns = l->rate = l->burst = LIM_UNSET;
    l->bw[0] = l->bw[1] = l->tunnel_bw[0] = l->tunnel_bw[1] = LIM_UNSET;
    l->quota = l->quota_period = l->quota_close = LIM_UNSET;
}

/* The fields as an array: the struct is nothing but uint64_t. */
#define LIM_FIELDS (sizeof(struct lim_conf) / sizeof(uint64_t))

void
lim_conf_merge(struct lim_conf *l, const struct lim_conf *under)
{
    uint64_t *a = (uint64_t *)l;
    const uint64_t *b = (const uint64_t *)under;
    /* A level that sets quota sets its period with it (parse_quota), so field by field is right. */
    for (size_t i = 0; i < LIM_FIELDS; i++)
        if (a[i] == LIM_UNSET)
            a[i] = b[i];
}

bool
lim_conf_none(const struct lim_conf *l)
{
    return lim_val(l->max_conns) == 0 && lim_val(l->rate) == 0 && !lim_conf_has_bw(l) &&
           lim_val(l->quota) == 0;
}

bool
lim_conf_has_bw(const struct lim_conf *l)
{
    return lim_val(l->bw[0]) || lim_val(l->bw[1]) || lim_val(l->tunnel_bw[0]) ||
           lim_val(l->tunnel_bw[1]);
}

int
lim_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suf;
        uint64_t mul;
    } sufs[] = {
        {"", 1},
        {"k", 1000ull},
        {"K", 1000ull},
        {"M", 1000000ull},
        {"G", 1000000000ull},
        {"T", 1000000000000ull},
        {"Ki", 1ull << 10},
        {"Mi", 1ull << 20},
        {"Gi", 1ull << 30},
        {"Ti", 1ull << 40},
    };
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    size_t n = strlen(end);
    if (n && end[n - 1] == 'B')
        n--;
    for (size_t i = 0; i < sizeof(sufs) / sizeof(sufs[0]); i++) {
        if (strlen(sufs[i].suf) != n || strncmp(end, sufs[i].suf, n) != 0)
            continue;
        if (v > (UINT64_MAX - 1) / sufs[i].mul)
            return -1;
        *out = v * sufs[i].mul;
        return 0;
    }
    return -1;
}

static int
parse_count(const char *v, uint64_t *out)
{
    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n > UINT32_MAX)
        return -1;
    *out = n;
    return 0;
}

static int
parse_bool(const char *v, uint64_t *out)
{
    if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0")) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* "SIZE/day|month|total", or "0" (no quota). */
static int
parse_quota(const char *v, uint64_t *bytes, uint64_t *period)
{
    static const char *const names[] = {
        [LIM_PERIOD_DAY] = "day", [LIM_PERIOD_MONTH] = "month", [LIM_PERIOD_TOTAL] = "total"};
    if (!strcmp(v, "0")) {
        *bytes = 0;
        *period = LIM_PERIOD_NONE;
        return 0;
    }
    const char *slash = strchr(v, '/');
    char num[32];
    if (!slash || (size_t)(slash - v) >= sizeof(num))
        return -1;
    memcpy(num, v, (size_t)(slash - v));
    num[slash - v] = '\0';
    if (lim_parse_size(num, bytes) < 0 || *bytes == 0)
        return -1;
    for (unsigned p = LIM_PERIOD_DAY; p <= LIM_PERIOD_TOTAL; p++)
        if (!strcmp(slash + 1, names[p])) {
            *period = p;
            return 0;
        }
    return -1;
}

int
lim_conf_set(struct lim_conf *l, const char *key, const char *value, char *err, size_t errlen)
{
    return lim_conf_set_at(l, LIM_KEYS_ALL, key, value, err, errlen);
}

int
lim_conf_set_at(struct lim_conf *l, unsigned keys, const char *key, const char *value, char *err,
                size_t errlen)
{
    int r = -1;
    const char *want = "a count";
    if (!strcmp(key, "max_conns")) {
        r = parse_count(value, &l->max_conns);
    } else if (!strcmp(key, "rate")) {
        r = parse_count(value, &l->rate);
    } else if (!strcmp(key, "burst")) {
        r = parse_count(value, &l->burst);
        if (r == 0 && l->burst == 0)
            r = -1, want = "a count of at least 1";
    } else if (!strncmp(key, "bw_", 3) || !strncmp(key, "tunnel_bw_", 10)) {
        uint64_t *pair = key[0] == 'b' ? l->bw : l->tunnel_bw;
        const char *d = key + (key[0] == 'b' ? 3 : 10);
        if (strcmp(d, "up") && strcmp(d, "down"))
            goto unknown;
        want = "bytes per second (e.g. 10M, 512Ki; 0: no limit)";
        r = lim_parse_size(value, &pair[d[0] == 'd']);
    } else if (!strcmp(key, "quota") || !strcmp(key, "quota_close")) {
        if (keys & LIM_KEYS_NO_QUOTA) {
            snprintf(err, errlen, "'%s' is a per-user setting (users file or user_limits)", key);
            return -1;
        }
        if (key[5]) {
            want = "yes or no";
            r = parse_bool(value, &l->quota_close);
        } else {
            want = "SIZE/day, SIZE/month or SIZE/total (e.g. 100G/month; 0: no quota)";
            r = parse_quota(value, &l->quota, &l->quota_period);
        }
    } else {
        goto unknown;
    }
    if (r < 0)
        snprintf(err, errlen, "%s: '%s' is not %s", key, value, want);
    return r;
unknown:
    snprintf(err, errlen, "unknown limit '%s' (%s)", key, lim_conf_keys);
    return -2;
}

int
lim_conf_parse(struct lim_conf *l, unsigned keys, const char *text, char *err, size_t errlen)
{
    char word[128];
    for (const char *p = text;;) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, " \t");
        if (n == 0)
            return 0;
        if (n >= sizeof(word)) {
            snprintf(err, errlen, "'%.*s...' is too long", 32, p);
            return -1;
        }
        memcpy(word, p, n);
        word[n] = '\0';
        p += n;
        char *eq = strchr(word, '=');
        if (!eq || eq == word || !eq[1]) {
            snprintf(err, errlen, "'%s' is not key=value (%s)", word, lim_conf_keys);
            return -1;
        }
        *eq = '\0';
        if (lim_conf_set_at(l, keys, word, eq + 1, err, errlen) < 0)
            return -1;
    }
}

void
lim_conf_format(const struct lim_conf *l, char *buf, size_t cap)
{
    static const char *const periods[] = {"", "day", "month", "total"};
    size_t used = 0;
    buf[0] = '\0';
#define PUT(...)                                                \
    do {                                                        \
        int k_ = snprintf(buf + used, cap - used, __VA_ARGS__); \
        if (k_ > 0 && (size_t)k_ < cap - used)                  \
            used += (size_t)k_;                                 \
    } while (0)
    if (l->max_conns != LIM_UNSET)
        PUT("%smax_conns=%llu", used ? " " : "", (unsigned long long)l->max_conns);
    if (l->rate != LIM_UNSET)
        PUT("%srate=%llu", used ? " " : "", (unsigned long long)l->rate);
    if (l->burst != LIM_UNSET)
        PUT("%sburst=%llu", used ? " " : "", (unsigned long long)l->burst);
    for (unsigned d = 0; d < 2; d++)
        if (l->bw[d] != LIM_UNSET)
            PUT("%sbw_%s=%llu", used ? " " : "", d ? "down" : "up", (unsigned long long)l->bw[d]);
    for (unsigned d = 0; d < 2; d++)
        if (l->tunnel_bw[d] != LIM_UNSET)
            PUT("%stunnel_bw_%s=%llu", used ? " " : "", d ? "down" : "up",
                (unsigned long long)l->tunnel_bw[d]);
    if (l->quota != LIM_UNSET) {
        if (l->quota == 0)
            PUT("%squota=0", used ? " " : "");
        else
            PUT("%squota=%llu/%s", used ? " " : "", (unsigned long long)l->quota,
                periods[l->quota_period < 4 ? l->quota_period : 0]);
    }
    if (l->quota_close != LIM_UNSET)
        PUT("%squota_close=%s", used ? " " : "", l->quota_close ? "yes" : "no");
#undef PUT
}

/* ---- GCRA */

bool
gcra_take(_Atomic uint64_t *tat, uint64_t now_ns, uint64_t cost_ns, uint64_t tau_ns,
          uint64_t *wait_ns)
{
    uint64_t t = atomic_load_explicit(tat, memory_order_relaxed);
    for (;;) {
        if (t > now_ns + tau_ns) {
            if (wait_ns)
                *wait_ns = t - now_ns - tau_ns;
            return false;
        }
        uint64_t next = (t > now_ns ? t : now_ns) + cost_ns;
        if (atomic_compare_exchange_weak_explicit(tat, &t, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    }
}

/* ns that n bytes take at rate bytes per second (rounded up: never faster). */
static uint64_t
bytes_ns(uint64_t rate, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)n * 1000000000u + rate - 1) / rate);
}

uint64_t
gcra_reserve(_Atomic uint64_t *tat, uint64_t now_ns, uint64_t rate, uint64_t tau_ns, uint64_t want)
{
    uint64_t cost = bytes_ns(rate, want);
    uint64_t t = atomic_load_explicit(tat, memory_order_relaxed), next;
    do
        next = (t > now_ns ? t : now_ns) + cost;
    while (!atomic_compare_exchange_weak_explicit(tat, &t, next, memory_order_relaxed,
                                                  memory_order_relaxed));
    return next > now_ns + tau_ns ? next - tau_ns : now_ns;
}

void
gcra_return(_Atomic uint64_t *tat, uint64_t rate, uint64_t unused)
{
    if (unused)
        atomic_fetch_sub_explicit(tat, bytes_ns(rate, unused), memory_order_relaxed);
}

uint64_t
lim_chunk(uint64_t rate)
{
    uint64_t c = rate / 100;
    return c < 4096 ? 4096 : c;
}

uint64_t
lim_bw_tau(uint64_t rate)
{
    return bytes_ns(rate, lim_chunk(rate));
}

/* ---- counters */

const char *
lim_hit_str(enum lim_hit h)
{
    static const char *const names[LIMH__COUNT] = {
        [LIMH_CONNS] = "max_conns", [LIMH_RATE] = "rate",    [LIMH_QUOTA] = "quota",
        [LIMH_BLOCKED] = "blocked", [LIMH_BW] = "bandwidth",
    };
    return (unsigned)h < LIMH__COUNT ? names[h] : "unknown";
}

bool
lim_open_take(struct lim_node *n, uint64_t max)
{
    uint64_t was = atomic_fetch_add_explicit(&n->open, 1, memory_order_acq_rel);
    if ((was & LIM_DEAD) || (max && was >= max)) {
        atomic_fetch_sub_explicit(&n->open, 1, memory_order_acq_rel);
        return false;
    }
    return true;
}

void
lim_open_put(struct lim_node *n)
{
    atomic_fetch_sub_explicit(&n->open, 1, memory_order_acq_rel);
}

uint64_t
lim_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
