/*
 * log.c - the access log: records handed from the shards to one writer
 * thread through per-shard single-producer single-consumer rings.
 *
 * Threads: log_push() runs on shard threads (shard i is the only producer of
 * ring i); the writer thread is the only consumer of every ring and the only
 * one that formats, writes, reopens or touches the file descriptor;
 * log_start()/log_stop() run on the main thread; log_reopen(), log_dropped()
 * and log_written() on any thread. log_format() is pure.
 *
 * Never: a lock, a syscall or a blocking wait in log_push(); a write from a
 * shard; a shard reading another shard's ring.
 *
 * Waking the writer: it polls. When a pass over the rings finds nothing it
 * sleeps LOG_POLL_MS and looks again; while passes find records it keeps
 * going without sleeping. The alternative, an eventfd the shard writes when
 * its ring goes from empty to non-empty, costs a write(2) on the shard for
 * nearly every record at low and medium rates (the writer empties the ring
 * between two tunnels, so the next push finds it empty again): about a
 * microsecond per tunnel on the hot thread, to save the writer 20 idle
 * wake-ups a second. Polling keeps log_push() at a handful of stores and
 * bounds the latency of a line at LOG_POLL_MS plus one formatting pass. The
 * price is that a ring must hold what its shard finishes in LOG_POLL_MS
 * (ring_slots >= peak tunnels per second per shard / 20); what does not fit
 * is counted as dropped, never waited for.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "conn_end.h"
#include "httpconnect.h"
#include "socks5.h"
#include "transparent.h"

#define LOG_CACHELINE 64
/* Writer's sleep when every ring was empty: the bound on a line's latency. */
#define LOG_POLL_MS   50
/* Writer's output buffer: one write(2) per pass, or per LOG_BUF_SIZE bytes. */
#define LOG_BUF_SIZE  (64 * 1024)
/*
 * Longest line log_format() can produce: JSON with a 255-byte user and host
 * of bytes that all need \u00XX (6 bytes each), a 64-byte rule name and every UDP
 * counter at its widest is about 3.9 KB.
 */
#define LOG_LINE_MAX  4096
/* Ring sizes accepted by log_start(). */
#define LOG_RING_MIN  2u
#define LOG_RING_MAX  (1u << 20)

/* log_push() copies the fixed part, then fault, user and host by length: keep them last. */
_Static_assert(offsetof(struct log_rec, host) + sizeof(((struct log_rec *)0)->host) ==
                   sizeof(struct log_rec),
               "host must be the last field of struct log_rec");
_Static_assert(offsetof(struct log_rec, user) + sizeof(((struct log_rec *)0)->user) ==
                   offsetof(struct log_rec, host),
               "user must come right before host in struct log_rec");
_Static_assert(offsetof(struct log_rec, fault) + sizeof(((struct log_rec *)0)->fault) ==
                   offsetof(struct log_rec, user),
               "fault must come right before user in struct log_rec");
/* Ring indices and the reopen flag must not hide a lock (log_reopen() may run in a handler). */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_BOOL_LOCK_FREE == 2,
               "lock-free 64-bit and bool atomics required");

/*
 * One shard's ring. head and tail count records forever (64 bits do not
 * wrap); the slot is the count masked. The shard stores head with release
 * after filling the slot, the writer loads it with acquire before reading;
 * the writer stores tail with release after formatting the slot, the shard
 * loads it with acquire before overwriting. Each index sits on its own
 * cache line so the two threads do not bounce a line on every record.
 */
struct log_ring {
    /* Read-only after log_start(). */
    alignas(LOG_CACHELINE) struct log_rec *slot;
    uint64_t mask;

    /* Written by the shard only. */
    alignas(LOG_CACHELINE) _Atomic uint64_t head;
    uint64_t tail_seen;       /* the shard's last load of tail: plain, shard only */
    _Atomic uint64_t dropped; /* relaxed store by the shard, relaxed loads by anyone */

    /* Written by the writer only. */
    alignas(LOG_CACHELINE) _Atomic uint64_t tail;
};

enum log_target {
    LOG_T_OFF = 0,
    LOG_T_STDERR,
    LOG_T_FILE,
    LOG_T_SYSLOG,
};

struct logger {
    /* Read-only after log_start(): every thread reads these. */
    enum log_target target;
    enum log_format fmt;
    unsigned n_rings;
    struct log_ring *ring;
    char *path; /* LOG_T_FILE */

    /* Requests to the writer, from other threads. */
    alignas(LOG_CACHELINE) _Atomic bool stop;
    _Atomic bool reopen;      /* lock-free, so log_reopen() is async-signal-safe */
    _Atomic uint64_t written; /* relaxed store by the writer, relaxed loads by anyone */

    /* The writer's own. */
    alignas(LOG_CACHELINE) pthread_t thread;
    bool running; /* log_run() started the writer */
    int fd;
    bool reported;  /* a write error was already reported; cleared by a good write */
    size_t len;     /* bytes in buf */
    uint64_t lines; /* lines in buf */
    char *buf;      /* LOG_BUF_SIZE bytes */
};

/* ---- formatting (pure) */

/* A bounded output cursor: never writes past cap - 1, remembers truncation. */
struct out {
    char *buf;
    size_t cap, len;
    unsigned fields; /* fields written so far: the first has no separator */
    bool trunc;
};

static void
put_mem(struct out *o, const char *s, size_t n)
{
    size_t room = o->cap - 1 - o->len;
    if (n > room) {
        n = room;
        o->trunc = true;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void
put_str(struct out *o, const char *s)
{
    put_mem(o, s, strlen(s));
}

static void
put_char(struct out *o, char c)
{
    put_mem(o, &c, 1);
}

/* v in decimal, zero-padded to at least width digits. */
static void
put_u64(struct out *o, uint64_t v, unsigned width)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (sizeof(tmp) - i < width && i > 0)
        tmp[--i] = '0';
    put_mem(o, tmp + i, sizeof(tmp) - i);
}

static void
put_hex2(struct out *o, const char *prefix, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[2] = {hex[c >> 4], hex[c & 15]};
    put_str(o, prefix);
    put_mem(o, tmp, 2);
}

/*
 * Days since 1970-01-01 to a civil date: H. Hinnant, "chrono-Compatible
 * Low-Level Date Algorithms", days_from_civil's inverse. No libc, no locale.
 */
static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* RFC 3339 UTC with milliseconds: 2026-11-21T21:40:00.123Z. */
static void
put_time(struct out *o, uint64_t ms)
{
    uint64_t s = ms / 1000, days = s / 86400, sod = s % 86400;
    int64_t y;
    unsigned mo, d;
    civil_from_days((int64_t)days, &y, &mo, &d);
    put_u64(o, (uint64_t)y, 4);
    put_char(o, '-');
    put_u64(o, mo, 2);
    put_char(o, '-');
    put_u64(o, d, 2);
    put_char(o, 'T');
    put_u64(o, sod / 3600, 2);
    put_char(o, ':');
    put_u64(o, sod / 60 % 60, 2);
    put_char(o, ':');
    put_u64(o, sod % 60, 2);
    put_char(o, '.');
    put_u64(o, ms % 1000, 3);
    put_char(o, 'Z');
}

/* Bytes no line carries raw: control bytes, DEL, and everything >= 0x80. */
static bool
byte_is_unsafe(unsigned char c)
{
    return c < 0x20 || c >= 0x7f;
}

/* s in double quotes, with '"' and '\\' backslash-escaped and unsafe bytes
 * written as hex_prefix followed by two hex digits. */
static void
put_quoted(struct out *o, const char *s, size_t n, const char *hex_prefix)
{
    put_char(o, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put_mem(o, esc, 2);
        } else if (byte_is_unsafe(c)) {
            put_hex2(o, hex_prefix, c);
        } else {
            put_char(o, (char)c);
        }
    }
    put_char(o, '"');
}

/*
 * A logfmt value. Quoted when it holds a space, '"', '=' or an unsafe byte;
 * inside quotes '"' and '\' are backslash-escaped and unsafe bytes become
 * \xNN, so every line is printable ASCII and the original bytes can be
 * recovered. An empty value is written as "-".
 */
static void
put_logfmt_val(struct out *o, const char *s, size_t n)
{
    bool quote = false;
    if (n == 0) {
        put_char(o, '-');
        return;
    }
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char c = (unsigned char)s[i];
        quote = c == ' ' || c == '"' || c == '=' || byte_is_unsafe(c);
    }
    if (!quote) {
        put_mem(o, s, n);
        return;
    }
    put_quoted(o, s, n, "\\x");
}

/*
 * A JSON string (RFC 8259 section 7). Every byte >= 0x80 is escaped as
 * \u00XX, like control bytes and DEL, rather than passed through after a
 * UTF-8 check: user and host are arbitrary bytes off the network, and with
 * this mapping (byte N is code point U+00NN) the line is always ASCII, hence
 * valid UTF-8, and the exact bytes can be recovered by a consumer. A valid
 * UTF-8 user name shows as its bytes (e.g. "\u00c3\u00a9" for U+00E9).
 * An empty value is null.
 */
static void
put_json_str(struct out *o, const char *s, size_t n)
{
    if (n == 0) {
        put_str(o, "null");
        return;
    }
    put_quoted(o, s, n, "\\u00");
}

/* Separator and key: `key=` or `"key":`. */
static void
put_key(struct out *o, enum log_format fmt, const char *key)
{
    if (fmt == LOG_JSON) {
        put_str(o, o->fields++ ? ",\"" : "\"");
        put_str(o, key);
        put_str(o, "\":");
    } else {
        if (o->fields++)
            put_char(o, ' ');
        put_str(o, key);
        put_char(o, '=');
    }
}

/* A string field; empty means none ("-" or null). */
static void
put_field_str(struct out *o, enum log_format fmt, const char *key, const char *s, size_t n)
{
    put_key(o, fmt, key);
    if (fmt == LOG_JSON)
        put_json_str(o, s, n);
    else
        put_logfmt_val(o, s, n);
}

/* A number field; with none set, "-" or null. */
static void
put_field_num(struct out *o, enum log_format fmt, const char *key, bool none, uint64_t v)
{
    put_key(o, fmt, key);
    if (!none)
        put_u64(o, v, 0);
    else
        put_str(o, fmt == LOG_JSON ? "null" : "-");
}

/* An address as text, or "" for a family that is neither IPv4 nor IPv6. */
static size_t
sockaddr_text(const union sockaddr_inx *a, char *out, size_t n)
{
    out[0] = '\0';
    if (a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6)
        addr_format(&a->sa, out, n);
    return strlen(out);
}

const char *
log_cmd_name(uint8_t cmd)
{
    switch (cmd) {
    case 0:
        return "none";
    case SOCKS5_CMD_CONNECT:
        return "connect";
    case SOCKS5_CMD_BIND:
        return "bind";
    case SOCKS5_CMD_UDP:
        return "udp";
    default:
        return "unknown";
    }
}

/* "host:port", with an IPv6 literal in brackets; "" when there is no host. */
static size_t
dest_text(const struct log_rec *r, char *out, size_t n)
{
    size_t hl = strnlen(r->host, sizeof(r->host));
    if (hl == 0) {
        out[0] = '\0';
        return 0;
    }
    bool v6 = memchr(r->host, ':', hl) && r->host[0] != '[';
    snprintf(out, n, "%s%.*s%s:%u", v6 ? "[" : "", (int)hl, r->host, v6 ? "]" : "", r->port);
    return strlen(out);
}

const char *
log_udp_drop_str(enum log_udp_drop why)
{
    static const char *const names[LOG_UDP_DROP__COUNT] = {
        [LOG_UDP_DROP_RULE] = "rule",       [LOG_UDP_DROP_MALFORMED] = "malformed",
        [LOG_UDP_DROP_FRAG] = "frag",       [LOG_UDP_DROP_SOURCE] = "source",
        [LOG_UDP_DROP_RESOLVE] = "resolve", [LOG_UDP_DROP_QUEUE] = "queue",
        [LOG_UDP_DROP_FAMILY] = "family",   [LOG_UDP_DROP_SEND] = "send",
        [LOG_UDP_DROP_TOO_BIG] = "too_big", [LOG_UDP_DROP_GSS] = "gss",
        [LOG_UDP_DROP_FAULT] = "fault",
    };
    return (unsigned)why < LOG_UDP_DROP__COUNT ? names[why] : "unknown";
}

/* udp_drop: "reason:n,..." in logfmt ("-": none), {"reason":n,...} in JSON. */
static void
put_udp_drop(struct out *o, enum log_format fmt, const struct log_udp *u)
{
    bool any = false;
    put_key(o, fmt, "udp_drop");
    if (fmt == LOG_JSON)
        put_char(o, '{');
    for (int i = 0; i < LOG_UDP_DROP__COUNT; i++) {
        if (!u->drop[i])
            continue;
        if (any)
            put_char(o, ',');
        any = true;
        const char *name = log_udp_drop_str((enum log_udp_drop)i);
        if (fmt == LOG_JSON) {
            put_json_str(o, name, strlen(name));
            put_char(o, ':');
        } else {
            put_str(o, name);
            put_char(o, ':');
        }
        put_u64(o, u->drop[i], 0);
    }
    if (fmt == LOG_JSON)
        put_char(o, '}');
    else if (!any)
        put_char(o, '-');
}

size_t
log_format(const struct log_rec *r, enum log_format fmt, const char *end_str, char *buf, size_t cap)
{
    struct out o = {.buf = buf, .cap = cap};
    char client[ADDR_STRLEN], via[ADDR_STRLEN], resolved[ADDR_STRLEN], egress[ADDR_STRLEN],
        parent[ADDR_STRLEN];
    char dest[sizeof(r->host) + 16];
    char tbuf[32], ebuf[32];

    if (cap == 0)
        return 0;
    struct out t = {.buf = tbuf, .cap = sizeof(tbuf)};
    put_time(&t, r->start_ms);
    struct out e = {.buf = ebuf, .cap = sizeof(ebuf)};
    put_time(&e, r->start_ms + r->duration_ms);

    if (fmt == LOG_JSON)
        put_char(&o, '{');
    put_field_str(&o, fmt, "time", tbuf, t.len);
    put_field_num(&o, fmt, "shard", false, r->shard);
    char id[40];
    int id_len = snprintf(id, sizeof(id), "%u.%u.%u", r->shard, r->slot, r->gen);
    put_field_str(&o, fmt, "id", id, (size_t)id_len);
    put_field_str(&o, fmt, "client", client, sockaddr_text(&r->client, client, sizeof(client)));
    if (r->via.sa.sa_family)
        put_field_str(&o, fmt, "via", via, sockaddr_text(&r->via, via, sizeof(via)));
    put_field_str(&o, fmt, "user", r->user, strnlen(r->user, sizeof(r->user)));
    const char *cmd = log_cmd_name(r->cmd);
    put_field_str(&o, fmt, "cmd", cmd, strlen(cmd));
    /* An HTTP CONNECT client: version is HTTP's major version, and proto says so. A
     * transparent one spoke no proxy protocol at all: version 0. */
    if (r->version == HTTPCONNECT_VERSION) {
        put_field_str(&o, fmt, "proto", "http", 4);
        put_field_num(&o, fmt, "version", false, 1);
    } else if (r->version == TRANSPARENT_VERSION) {
        put_field_str(&o, fmt, "proto", "transparent", 11);
        put_field_num(&o, fmt, "version", false, 0);
    } else {
        put_field_num(&o, fmt, "version", false, r->version);
    }
    /* Authenticated by GSS-API (RFC 1961): the protection level agreed, 0-2. */
    if (r->gss)
        put_field_num(&o, fmt, "gss", false, (uint64_t)(r->gss - 1));
    put_field_str(&o, fmt, "dest", dest, dest_text(r, dest, sizeof(dest)));
    put_field_str(&o, fmt, "resolved", resolved,
                  sockaddr_text(&r->resolved, resolved, sizeof(resolved)));
    put_field_str(&o, fmt, "egress", egress, sockaddr_text(&r->egress, egress, sizeof(egress)));
    if (r->parent.sa.sa_family)
        put_field_str(&o, fmt, "parent", parent, sockaddr_text(&r->parent, parent, sizeof(parent)));
    if (r->session[0])
        put_field_str(&o, fmt, "session", r->session, strnlen(r->session, sizeof(r->session)));
    put_field_str(&o, fmt, "rule", r->rule, strnlen(r->rule, sizeof(r->rule)));
    if (r->fault[0])
        put_field_str(&o, fmt, "fault", r->fault, strnlen(r->fault, sizeof(r->fault)));
    put_field_num(&o, fmt, "rep", r->rep < 0, (uint64_t)(r->rep < 0 ? 0 : r->rep));
    put_field_num(&o, fmt, "up", false, r->bytes_up);
    put_field_num(&o, fmt, "down", false, r->bytes_down);
    put_field_num(&o, fmt, "duration_ms", false, r->duration_ms);
    if (!end_str)
        end_str = "";
    put_field_str(&o, fmt, "end", end_str, strlen(end_str));
    put_field_str(&o, fmt, "end_time", ebuf, e.len);
    if (r->cmd == SOCKS5_CMD_UDP) {
        put_field_num(&o, fmt, "udp_out", false, r->udp.out);
        put_field_num(&o, fmt, "udp_in", false, r->udp.in);
        put_udp_drop(&o, fmt, &r->udp);
    }
    if (fmt == LOG_JSON)
        put_char(&o, '}');
    put_char(&o, '\n');

    /* A cut line still ends the line, so the next one starts on its own. */
    if (o.trunc && o.len > 0)
        buf[o.len - 1] = '\n';
    buf[o.len] = '\0';
    return o.len;
}

/* ---- the shard side */

static void
copy_str(char *dst, const char *src, size_t cap)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

bool
log_push(struct logger *lg, unsigned shard, const struct log_rec *rec)
{
    if (lg->target == LOG_T_OFF)
        return true;
    if (shard >= lg->n_rings)
        return false;
    struct log_ring *r = &lg->ring[shard];
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head - r->tail_seen > r->mask) {
        /* Looks full: only now read the writer's line. */
        r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (head - r->tail_seen > r->mask) {
            uint64_t d = atomic_load_explicit(&r->dropped, memory_order_relaxed);
            atomic_store_explicit(&r->dropped, d + 1, memory_order_relaxed);
            return false;
        }
    }
    /*
     * The fixed part, then the strings by length: most names are short and
     * faults rare, so a record touches few cache lines of the slot, not all.
     */
    struct log_rec *s = &r->slot[head & r->mask];
    memcpy(s, rec, offsetof(struct log_rec, fault));
    copy_str(s->fault, rec->fault, sizeof(s->fault));
    copy_str(s->user, rec->user, sizeof(s->user));
    copy_str(s->host, rec->host, sizeof(s->host));
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return true;
}

/* ---- the writer thread */

static int
open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd == -1 ? -errno : fd;
}

static void
writer_flush(struct logger *lg)
{
    size_t off = 0;
    while (off < lg->len) {
        ssize_t n = write(lg->fd, lg->buf + off, lg->len - off);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            /* Lost: the lines in buf count as neither written nor dropped. */
            if (!lg->reported)
                fprintf(stderr, "ringsocks: access log: write: %s\n", strerror(errno));
            lg->reported = true;
            goto out;
        }
        off += (size_t)n;
    }
    lg->reported = false;
    atomic_store_explicit(&lg->written,
                          atomic_load_explicit(&lg->written, memory_order_relaxed) + lg->lines,
                          memory_order_relaxed);
out:
    lg->len = 0;
    lg->lines = 0;
}

static void
writer_reopen(struct logger *lg)
{
    if (lg->target != LOG_T_FILE)
        return;
    /* Open the new file first: when that fails the old one stays in use. */
    int fd = open_file(lg->path);
    if (fd < 0) {
        fprintf(stderr, "ringsocks: access log not reopened: %s: %s (still writing the old file)\n",
                lg->path, strerror(-fd));
        return;
    }
    close(lg->fd);
    lg->fd = fd;
    /* The operator who rotated the file reads this to know the new one is in use. */
    fprintf(stderr, "ringsocks: access log reopened: %s\n", lg->path);
}

/* Format one record into the batch (or hand it to syslog). */
static void
writer_emit(struct logger *lg, const struct log_rec *rec)
{
    const char *end = conn_end_str((enum conn_end)rec->end);
    if (lg->target == LOG_T_SYSLOG) {
        size_t n = log_format(rec, lg->fmt, end, lg->buf, LOG_LINE_MAX);
        syslog(LOG_INFO, "%.*s", (int)(n ? n - 1 : 0), lg->buf);
        atomic_store_explicit(&lg->written,
                              atomic_load_explicit(&lg->written, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return;
    }
    if (LOG_BUF_SIZE - lg->len < LOG_LINE_MAX)
        writer_flush(lg);
    lg->len += log_format(rec, lg->fmt, end, lg->buf + lg->len, LOG_LINE_MAX);
    lg->lines++;
}

/* One pass over every ring, up to the head seen on entry; returns records taken. */
static uint64_t
writer_drain(struct logger *lg)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < lg->n_rings; i++) {
        struct log_ring *r = &lg->ring[i];
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        for (; tail != head; tail++) {
            writer_emit(lg, &r->slot[tail & r->mask]);
            /* The slot was copied into buf: the shard may reuse it. */
            atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
            total++;
        }
    }
    if (lg->len)
        writer_flush(lg);
    return total;
}

static void *
writer_main(void *arg)
{
    struct logger *lg = arg;
    const struct timespec poll = {.tv_sec = 0, .tv_nsec = LOG_POLL_MS * 1000000L};

    for (;;) {
        /*
         * Read stop before the pass: the shards stopped before log_stop()
         * set it, so a pass that starts after seeing it and finds nothing
         * means every ring is empty for good.
         */
        bool stopping = atomic_load_explicit(&lg->stop, memory_order_acquire);
        if (atomic_exchange_explicit(&lg->reopen, false, memory_order_acq_rel))
            writer_reopen(lg);
        if (writer_drain(lg) == 0) {
            if (stopping)
                break;
            clock_nanosleep(CLOCK_MONOTONIC, 0, &poll, NULL);
        }
    }
    return NULL;
}

/* ---- start, stop, counters */

static void
logger_free(struct logger *lg)
{
    if (lg->ring) {
        for (unsigned i = 0; i < lg->n_rings; i++)
            free(lg->ring[i].slot);
        free(lg->ring);
    }
    if (lg->target == LOG_T_FILE && lg->fd >= 0)
        close(lg->fd);
    if (lg->target == LOG_T_SYSLOG)
        closelog();
    free(lg->buf);
    free(lg->path);
    free(lg);
}

struct logger *
log_open(const char *target, enum log_format fmt, unsigned n_shards, unsigned ring_slots, char *err,
         size_t errlen)
{
    struct logger *lg = NULL;

    if (!target || !*target) {
        snprintf(err, errlen, "access log: empty target");
        return NULL;
    }
    if (fmt != LOG_LOGFMT && fmt != LOG_JSON) {
        snprintf(err, errlen, "access log: unknown format %d", (int)fmt);
        return NULL;
    }
    lg = aligned_alloc(LOG_CACHELINE, sizeof(*lg));
    if (!lg)
        goto nomem;
    memset(lg, 0, sizeof(*lg));
    lg->fd = -1;
    lg->fmt = fmt;
    if (strcmp(target, "off") == 0) {
        lg->target = LOG_T_OFF;
        return lg;
    }
    /* shard ids travel in a uint16_t */
    if (n_shards == 0 || n_shards > 65536) {
        snprintf(err, errlen, "access log: %u shards: want 1..65536", n_shards);
        goto fail;
    }
    if (ring_slots < LOG_RING_MIN || ring_slots > LOG_RING_MAX || (ring_slots & (ring_slots - 1))) {
        snprintf(err, errlen, "access log: ring of %u records: want a power of two in %u..%u",
                 ring_slots, LOG_RING_MIN, LOG_RING_MAX);
        goto fail;
    }
    lg->ring = aligned_alloc(LOG_CACHELINE, n_shards * sizeof(*lg->ring));
    lg->buf = malloc(LOG_BUF_SIZE);
    if (!lg->ring || !lg->buf)
        goto nomem;
    memset(lg->ring, 0, n_shards * sizeof(*lg->ring));
    lg->n_rings = n_shards;
    for (unsigned i = 0; i < n_shards; i++) {
        /* Pages are faulted in by the shard as the ring first fills. */
        lg->ring[i].slot = calloc(ring_slots, sizeof(struct log_rec));
        if (!lg->ring[i].slot)
            goto nomem;
        lg->ring[i].mask = ring_slots - 1;
    }

    if (strcmp(target, "stderr") == 0) {
        lg->target = LOG_T_STDERR;
        lg->fd = STDERR_FILENO;
    } else if (strcmp(target, "syslog") == 0) {
        lg->target = LOG_T_SYSLOG;
        /* LOG_NDELAY: connect to /dev/log now, before a chroot or privilege drop. */
        openlog("ringsocks", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    } else {
        lg->target = LOG_T_FILE;
        lg->path = strdup(target);
        if (!lg->path)
            goto nomem;
        lg->fd = open_file(target);
        if (lg->fd < 0) {
            snprintf(err, errlen, "access log: %s: %s", target, strerror(-lg->fd));
            goto fail;
        }
    }

    return lg;

nomem:
    snprintf(err, errlen, "access log: out of memory");
fail:
    if (lg)
        logger_free(lg);
    return NULL;
}

int
log_run(struct logger *lg, char *err, size_t errlen)
{
    if (lg->target == LOG_T_OFF || lg->running)
        return 0;
    /* The writer takes no signals, whatever the caller's mask; but those a fault of its own
     * raises stay open: a SIGSYS (the seccomp filter) that meets a blocked mask kills the
     * process without the handler's line naming the call (sandbox.h). */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSYS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int ret = pthread_create(&lg->thread, NULL, writer_main, lg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret) {
        snprintf(err, errlen, "access log: writer thread: %s", strerror(ret));
        return -1;
    }
    pthread_setname_np(lg->thread, "log-writer");
    lg->running = true;
    return 0;
}

struct logger *
log_start(const char *target, enum log_format fmt, unsigned n_shards, unsigned ring_slots,
          char *err, size_t errlen)
{
    struct logger *lg = log_open(target, fmt, n_shards, ring_slots, err, errlen);
    if (lg && log_run(lg, err, errlen) < 0) {
        logger_free(lg);
        return NULL;
    }
    return lg;
}

void
log_stop(struct logger *lg)
{
    if (!lg)
        return;
    if (lg->running) {
        atomic_store_explicit(&lg->stop, true, memory_order_release);
        pthread_join(lg->thread, NULL);
    }
    logger_free(lg);
}

void
log_reopen(struct logger *lg)
{
    atomic_store_explicit(&lg->reopen, true, memory_order_release);
}

uint64_t
log_dropped(const struct logger *lg)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < lg->n_rings; i++)
        sum += atomic_load_explicit(&lg->ring[i].dropped, memory_order_relaxed);
    return sum;
}

uint64_t
log_written(const struct logger *lg)
{
    return atomic_load_explicit(&lg->written, memory_order_relaxed);
}
