/*
 * config.c - the configuration file: libconfig text -> struct opts and an
 * access-rule set. Owns the key tables (one line per key: name, type,
 * range, field, setter) and the "FILE:LINE: message" error texts.
 *
 * Called on the main thread at start and on the control thread on reload;
 * never on a shard. It must never change the caller's options or rules
 * unless the whole file is good: everything is built on copies, every error
 * is collected, and only a clean file is handed back.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "addr.h"
#include "admin.h"
#include "hostname.h"

/* A configuration file larger than this is a mistake (a log, a binary). */
#define CONFIG_MAX_BYTES (4u << 20)

struct cfg_ctx {
    const char *path;
    const char *text; /* the file exactly as parsed, for line fix-ups */
    char *err;
    size_t errlen;
    size_t used; /* bytes of err written */
    unsigned n_err;
    struct opts *o;  /* the copy being filled */
    struct acl *acl; /* the rules being built; NULL until a rules list is seen */
    bool users_set;
};

/* What a key's value must be; checked before its setter runs. */
enum cfg_kind {
    CFG_UINT,    /* an integer in [min, max] */
    CFG_BOOL,    /* true or false */
    CFG_STRING,  /* one string */
    CFG_STRINGS, /* a string, or a list/array of them */
    CFG_RULES,   /* a list of groups */
};

struct cfg_key {
    const char *name;
    enum cfg_kind kind;
    long long min, max;         /* CFG_UINT: the range */
    size_t off;                 /* the field in struct opts, for the generic setters */
    const char *const *choices; /* set_choice: accepted words, in enum order */
    int (*set)(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k);
};

static void cfg_error(struct cfg_ctx *c, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_warn(struct cfg_ctx *c, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- source text helpers */

/* Start of 1-based line n of text, or NULL past the end. */
static const char *
line_start(const char *text, unsigned n)
{
    const char *p = text;
    while (p && n > 1) {
        p = strchr(p, '\n');
        if (p)
            p++;
        n--;
    }
    return p;
}

static const char *
skip_blank(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

/* Nothing but white space or a '#' / '//' comment up to the end of the line. */
static bool
line_is_empty(const char *p)
{
    p = skip_blank(p);
    return *p == '\n' || *p == '\0' || *p == '#' || (p[0] == '/' && p[1] == '/');
}

/*
 * The line to report for s. libconfig records a list element when the
 * parser reduces it, and a string element needs one token of look-ahead
 * (adjacent strings concatenate), so "x" followed by a newline and "]" is
 * recorded on the line of the "]". When the recorded line starts with the
 * token that follows an element (',', ']' or ')'), the element ended on the
 * last line before it that holds anything but blanks and comments.
 */
static unsigned
setting_line(const struct cfg_ctx *c, const config_setting_t *s)
{
    unsigned line = config_setting_source_line(s);
    const config_setting_t *parent = config_setting_parent(s);

    /* Only strings in lists look ahead; an @include'd file's text is not here. */
    if (!c->text || config_setting_source_file(s) || !parent || config_setting_is_group(parent) ||
        config_setting_type(s) != CONFIG_TYPE_STRING)
        return line;
    const char *p = line_start(c->text, line);
    if (!p)
        return line;
    p = skip_blank(p);
    if (*p != ',' && *p != ']' && *p != ')')
        return line;
    while (line > 1) {
        line--;
        p = line_start(c->text, line);
        if (p && !line_is_empty(p))
            break;
    }
    return line;
}

/*
 * libconfig 1.5 stores an integer literal that does not fit an int
 * truncated, without a word (4294967297 reads as 1). For a named setting
 * find "name =" (or "name :") on its line and read the literal again, so an
 * out-of-range value is reported instead of silently wrapped. Falls back to
 * libconfig's value when the literal cannot be found (another layout, an
 * @include).
 */
static long long
setting_int(const struct cfg_ctx *c, const config_setting_t *s)
{
    long long v = config_setting_get_int64(s);
    const char *name = config_setting_name(s);
    if (!c->text || !name || config_setting_source_file(s) ||
        config_setting_type(s) != CONFIG_TYPE_INT)
        return v;
    const char *line = line_start(c->text, config_setting_source_line(s));
    if (!line)
        return v;
    const char *eol = strchr(line, '\n');
    size_t n = strlen(name);
    const char *p = line;
    for (;; p += n) {
        p = strstr(p, name);
        if (!p || (eol && p > eol))
            return v;
        if (p > line && p[-1] != ' ' && p[-1] != '\t' && p[-1] != ';' && p[-1] != ',')
            continue;
        const char *q = skip_blank(p + n);
        if (*q == '=' || *q == ':') {
            p = skip_blank(q + 1);
            break;
        }
    }
    bool neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    int base = p[0] == '0' && (p[1] == 'x' || p[1] == 'X') ? 16 : 10;
    if (*p < '0' || *p > '9')
        return v;
    errno = 0;
    unsigned long long u = strtoull(p, NULL, base);
    if (errno == ERANGE || u > LLONG_MAX)
        return neg ? LLONG_MIN : LLONG_MAX;
    return neg ? -(long long)u : (long long)u;
}

/* ---- errors */

/* One "FILE:LINE: message" line into err, after the others. */
static void
cfg_vreport(struct cfg_ctx *c, const config_setting_t *s, const char *fmt, va_list ap)
{
    if (!c->err || c->used + 1 >= c->errlen)
        return;
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s) : c->path;
    size_t room = c->errlen - c->used;
    int n;
    if (s)
        n = snprintf(c->err + c->used, room, "%s%s:%u: ", c->used ? "\n" : "", file,
                     setting_line(c, s));
    else
        n = snprintf(c->err + c->used, room, "%s%s: ", c->used ? "\n" : "", file);
    if (n < 0)
        return;
    c->used = (size_t)n < room ? c->used + (size_t)n : c->errlen - 1;
    room = c->errlen - c->used;
    if (room <= 1)
        return;
    n = vsnprintf(c->err + c->used, room, fmt, ap);
    if (n >= 0)
        c->used = (size_t)n < room ? c->used + (size_t)n : c->errlen - 1;
}

static void
cfg_error(struct cfg_ctx *c, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    c->n_err++;
    va_start(ap, fmt);
    cfg_vreport(c, s, fmt, ap);
    va_end(ap);
}

/* A line that does not fail the file: what is probably not what was meant. */
static void
cfg_warn(struct cfg_ctx *c, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport(c, s, fmt, ap);
    va_end(ap);
}

static const char *
type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP:
        return "a group { }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a floating-point number";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array [ ]";
    case CONFIG_TYPE_LIST:
        return "a list ( )";
    default:
        return "nothing";
    }
}

static bool
is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static bool
is_list(const config_setting_t *s)
{
    return config_setting_is_array(s) || config_setting_is_list(s);
}

/* ---- element iteration: a scalar counts as a list of one */

typedef int (*elem_fn)(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg);

static unsigned
elem_count(const config_setting_t *s)
{
    return is_list(s) ? (unsigned)config_setting_length(s) : 1;
}

/* Calls fn on every element (all of them, even after a failure); -1 if any failed. */
static int
each_elem(struct cfg_ctx *c, const config_setting_t *s, const char *what, elem_fn fn, void *arg)
{
    if (!is_list(s))
        return fn(c, s, what, arg);
    int rc = 0;
    unsigned n = elem_count(s);
    for (unsigned i = 0; i < n; i++)
        if (fn(c, config_setting_get_elem(s, i), what, arg) < 0)
            rc = -1;
    return rc;
}

/* The string value of element e, or NULL after reporting its wrong type. */
static const char *
elem_string(struct cfg_ctx *c, const config_setting_t *e, const char *what)
{
    if (config_setting_type(e) == CONFIG_TYPE_STRING)
        return config_setting_get_string(e);
    cfg_error(c, e, "%s: expected a string, not %s", what, type_name(e));
    return NULL;
}

/* ---- value parsers */

/* "LO-HI" or "N" (allow_single), 1 <= LO <= HI <= 65535, digits only. */
static int
parse_port_range(const char *s, bool allow_single, uint16_t *lo, uint16_t *hi)
{
    unsigned long v[2];
    int n = 0;
    const char *p = s;
    for (;;) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        char *end;
        errno = 0;
        v[n] = strtoul(p, &end, 10);
        if (errno || v[n] < 1 || v[n] > 65535)
            return -EINVAL;
        n++;
        p = end;
        if (*p == '\0')
            break;
        if (*p != '-' || n == 2)
            return -EINVAL;
        p++;
    }
    if (n == 1) {
        if (!allow_single)
            return -EINVAL;
        v[1] = v[0];
    }
    if (v[0] > v[1])
        return -EINVAL;
    *lo = (uint16_t)v[0];
    *hi = (uint16_t)v[1];
    return 0;
}

/*
 * A host pattern: a DNS name ("example.com") or a suffix (".example.com"),
 * letters, digits, '-' and '_' in labels of 1..63, 253 bytes at most, one
 * trailing dot allowed. Addresses belong in "to".
 */
static const char *
host_problem(const char *s)
{
    struct in6_addr a6;
    char norm[HOSTNAME_MAX + 1];
    if (inet_pton(AF_INET, s, &a6) == 1 || inet_pton(AF_INET6, s, &a6) == 1)
        return "is an address: destination addresses go in \"to\"";
    /* The names requests are compared in (hostname.h), after a suffix's dot. */
    const char *p = s[0] == '.' ? s + 1 : s;
    int n = hostname_norm(p, strnlen(p, HOSTNAME_MAX + 2), norm);
    return n < 0 ? hostname_strerror(n) : NULL;
}

/* ---- generic setters for struct opts fields */

#define OPT_FIELD(k, type) ((type *)((char *)c->o + (k)->off))

static int
set_uint(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    long long v = setting_int(c, s);
    if (v < k->min || v > k->max) {
        cfg_error(c, s, "%s: %lld is not in %lld..%lld", k->name, v, k->min, k->max);
        return -1;
    }
    *OPT_FIELD(k, unsigned) = (unsigned)v;
    return 0;
}

/* Copy-engine buffers: a provided buffer ring holds a power of two. */
static int
set_pow2(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    if (set_uint(c, s, k) < 0)
        return -1;
    unsigned v = *OPT_FIELD(k, unsigned);
    if (v & (v - 1)) {
        cfg_error(c, s, "%s: %u is not a power of two", k->name, v);
        return -1;
    }
    return 0;
}

static int
set_bool(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    *OPT_FIELD(k, bool) = config_setting_get_bool(s) != 0;
    return 0;
}

/* Enumerations of struct opts are unsigned ints numbered like k->choices. */
_Static_assert(sizeof(enum relay_engine) == sizeof(unsigned) &&
                   sizeof(enum auth_mode) == sizeof(unsigned) &&
                   sizeof(enum socks4_mode) == sizeof(unsigned) &&
                   sizeof(enum log_format) == sizeof(unsigned),
               "set_choice stores enums as unsigned");

static int
set_choice(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    const char *v = config_setting_get_string(s);
    char list[128];
    size_t used = 0;
    for (unsigned i = 0; k->choices[i]; i++) {
        if (strcmp(v, k->choices[i]) == 0) {
            *OPT_FIELD(k, unsigned) = i;
            return 0;
        }
        int n =
            snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i ? ", " : "", k->choices[i]);
        if (n > 0 && (size_t)n < sizeof(list) - used)
            used += (size_t)n;
    }
    list[used] = '\0';
    cfg_error(c, s, "%s: '%s' is not one of %s", k->name, v, list);
    return -1;
}

/* user, group: copied; "" means no privilege drop. */
static int
set_name(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    const char *v = config_setting_get_string(s);
    if (strlen(v) >= (size_t)k->max) {
        cfg_error(c, s, "%s: '%s' is longer than %lld bytes", k->name, v, k->max - 1);
        return -1;
    }
    if (strchr(v, ':') || strchr(v, '/') || strchr(v, '\n')) {
        cfg_error(c, s, "%s: '%s' is not a user or group name", k->name, v);
        return -1;
    }
    strcpy(OPT_FIELD(k, char), v);
    return 0;
}

/* ---- setters for the keys with their own syntax */

static int
listen_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    unsigned *n = arg;
    const char *v = elem_string(c, e, what);
    if (!v)
        return -1;
    if (*n == OPTS_MAX_LISTEN) {
        cfg_error(c, e, "%s: more than %d addresses", what, OPTS_MAX_LISTEN);
        (*n)++;
        return -1;
    }
    if (*n > OPTS_MAX_LISTEN)
        return -1;
    if (addr_parse(v, -1, &c->o->listen[*n]) < 0) {
        cfg_error(c, e, "%s: '%s' is not IP:PORT or [IPv6]:PORT", what, v);
        return -1;
    }
    (*n)++;
    return 0;
}

/* The whole list replaces the defaults (and anything before it). */
static int
set_listen(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    unsigned n = 0;
    if (elem_count(s) == 0) {
        cfg_error(c, s, "%s: the list is empty (give at least one address)", k->name);
        return -1;
    }
    if (each_elem(c, s, k->name, listen_one, &n) < 0)
        return -1;
    c->o->n_listen = n;
    return 0;
}

struct resolver_acc {
    char text[sizeof(((struct opts *)0)->resolvers)];
    size_t used;
    unsigned n;
    bool full; /* reported once */
};

static int
resolver_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct resolver_acc *r = arg;
    struct sockaddr_storage ss;
    char text[ADDR_STRLEN];
    const char *v = elem_string(c, e, what);
    if (!v)
        return -1;
    if (addr_parse(v, 53, &ss) < 0) {
        cfg_error(c, e, "%s: '%s' is not IP[:PORT]", what, v);
        return -1;
    }
    addr_format((struct sockaddr *)&ss, text, sizeof(text));
    if (r->full)
        return -1;
    if (r->n == OPTS_MAX_RESOLVERS || r->used + strlen(text) + 2 > sizeof(r->text)) {
        cfg_error(c, e, "%s: too many addresses (at most %d)", what, OPTS_MAX_RESOLVERS);
        r->full = true;
        return -1;
    }
    r->used += (size_t)snprintf(r->text + r->used, sizeof(r->text) - r->used, "%s%s",
                                r->used ? "," : "", text);
    r->n++;
    return 0;
}

/* c-ares CSV "host:port,...", as --resolver builds it; [] means /etc/resolv.conf. */
static int
set_resolvers(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    struct resolver_acc r = {.used = 0};
    if (each_elem(c, s, k->name, resolver_one, &r) < 0)
        return -1;
    memcpy(c->o->resolvers, r.text, r.used);
    c->o->resolvers[r.used] = '\0';
    return 0;
}

static int
set_users(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    const char *v = config_setting_get_string(s);
    if (v[0] == '\0' || strlen(v) >= sizeof(c->o->users_file)) {
        cfg_error(c, s, "%s: '%s' is not a file name", k->name, v);
        return -1;
    }
    strcpy(c->o->users_file, v);
    c->users_set = true;
    return 0;
}

/* Port ranges "LO-HI" for BIND and UDP ASSOCIATE sockets: off points at the lo, hi pair. */
static int
set_port_range(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    const char *v = config_setting_get_string(s);
    uint16_t *lohi = OPT_FIELD(k, uint16_t);
    if (parse_port_range(v, false, &lohi[0], &lohi[1]) < 0) {
        cfg_error(c, s, "%s: '%s' is not a port range LO-HI within 1-65535", k->name, v);
        return -1;
    }
    return 0;
}

static int
set_udp_advertise(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    const char *v = config_setting_get_string(s);
    if (addr_parse(v, 0, &c->o->udp_advertise) < 0) {
        cfg_error(c, s, "%s: '%s' is not an IP address", k->name, v);
        return -1;
    }
    return 0;
}

/* "stderr", "syslog", "off" or an absolute path (a daemon's working directory is /). */
static int
set_access_log(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    const char *v = config_setting_get_string(s);
    if (strcmp(v, "stderr") != 0 && strcmp(v, "syslog") != 0 && strcmp(v, "off") != 0 &&
        v[0] != '/') {
        cfg_error(c, s, "%s: '%s' is not \"stderr\", \"syslog\", \"off\" or an absolute path",
                  k->name, v);
        return -1;
    }
    if (strlen(v) >= sizeof(c->o->access_log)) {
        cfg_error(c, s, "%s: the path is too long", k->name);
        return -1;
    }
    strcpy(c->o->access_log, v);
    return 0;
}

static int
set_admin(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    const char *v = config_setting_get_string(s);
    if (strcmp(v, "off") == 0) {
        memset(&c->o->admin, 0, sizeof(c->o->admin));
        c->o->admin.ss_family = AF_UNSPEC;
        return 0;
    }
    if (addr_parse(v, -1, &c->o->admin) < 0) {
        cfg_error(c, s, "%s: '%s' is neither IP:PORT, [IPv6]:PORT nor \"off\"", k->name, v);
        return -1;
    }
    return 0;
}

static int
admin_host_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    char *list = arg;
    const char *v = elem_string(c, e, what);
    if (!v)
        return -1;
    int ret = admin_hosts_add(list, sizeof(c->o->admin_hosts), v);
    if (ret == -ENOSPC)
        cfg_error(c, e, "%s: the names take more than %zu bytes", what,
                  sizeof(c->o->admin_hosts) - 1);
    else if (ret < 0)
        cfg_error(c, e, "%s: '%s' is not a host name (letters, digits, '-', '_', '.'; no port)",
                  what, v);
    return ret < 0 ? -1 : 0;
}

/* Host names the admin endpoint answers to; the whole list replaces what came before. */
static int
set_admin_hosts(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    char list[sizeof(c->o->admin_hosts)] = "";
    if (each_elem(c, s, k->name, admin_host_one, list) < 0)
        return -1;
    memcpy(c->o->admin_hosts, list, sizeof(list));
    return 0;
}

/* ---- rules */

struct rule {
    unsigned idx; /* 1-based, as people count */
    bool has_action;
    enum acl_action action;
    struct acl_cidr *from, *to;
    size_t n_from, n_to;
    const char **hosts; /* point into the libconfig tree; acl_add copies them */
    size_t n_hosts;
    struct acl_ports *ports;
    size_t n_ports;
    uint8_t cmds;
    const char **users;
    size_t n_users;
    uint8_t flags;                       /* ACL_RF_* set by keys other than conditions */
    const config_setting_t *udp_source; /* where udp_source was given, for its errors */
};

/* Per element of a rule list: where it goes. */
struct rule_elem {
    struct rule *r;
    const char *key;
};

struct rule_key {
    const char *name;
    int (*set)(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key);
};

/* The string value of a rule's list element e, or NULL after reporting its wrong type. */
static const char *
rule_string(struct cfg_ctx *c, const struct rule *r, const config_setting_t *e, const char *what)
{
    if (config_setting_type(e) == CONFIG_TYPE_STRING)
        return config_setting_get_string(e);
    cfg_error(c, e, "rule %u: %s: expected a string, not %s", r->idx, what, type_name(e));
    return NULL;
}

static void *
alloc_elems(struct cfg_ctx *c, const config_setting_t *s, size_t size)
{
    void *p = calloc(elem_count(s) + 1, size);
    if (!p)
        cfg_error(c, s, "out of memory");
    return p;
}

static int
rk_action(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    const char *v =
        config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    if (!v) {
        cfg_error(c, s, "rule %u: %s: expected \"allow\" or \"deny\", not %s", r->idx, key,
                  type_name(s));
        return -1;
    }
    if (strcmp(v, "allow") == 0) {
        r->action = ACL_ALLOW;
    } else if (strcmp(v, "deny") == 0) {
        r->action = ACL_DENY;
    } else {
        cfg_error(c, s, "rule %u: %s: '%s' is neither \"allow\" nor \"deny\"", r->idx, key, v);
        return -1;
    }
    r->has_action = true;
    return 0;
}

static int
cidr_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule_elem *re = arg;
    struct rule *r = re->r;
    bool to = strcmp(re->key, "to") == 0;
    const char *v = rule_string(c, r, e, what);
    if (!v)
        return -1;
    struct acl_cidr *dst = to ? &r->to[r->n_to] : &r->from[r->n_from];
    if (acl_cidr_parse(v, dst) < 0) {
        cfg_error(c, e,
                  "rule %u: %s: '%s' is not an address or a network with zero host bits "
                  "(192.0.2.0/24, 2001:db8::/32)",
                  r->idx, what, v);
        return -1;
    }
    if (to)
        r->n_to++;
    else
        r->n_from++;
    return 0;
}

static int
rk_cidrs(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct acl_cidr **list = strcmp(key, "to") == 0 ? &r->to : &r->from;
    struct rule_elem re = {r, key};
    *list = alloc_elems(c, s, sizeof(**list));
    if (!*list)
        return -1;
    return each_elem(c, s, key, cidr_one, &re);
}

static int
host_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule *r = arg;
    const char *v = rule_string(c, r, e, what);
    if (!v)
        return -1;
    const char *problem = host_problem(v);
    if (problem) {
        cfg_error(c, e, "rule %u: %s: '%s' %s", r->idx, what, v, problem);
        return -1;
    }
    r->hosts[r->n_hosts++] = v;
    return 0;
}

static int
rk_hosts(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    r->hosts = alloc_elems(c, s, sizeof(*r->hosts));
    if (!r->hosts)
        return -1;
    return each_elem(c, s, key, host_one, r);
}

/* 443, "443" or "8000-8999". */
static int
port_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule *r = arg;
    struct acl_ports *p = &r->ports[r->n_ports];
    if (is_int(e)) {
        long long v = config_setting_get_int64(e);
        if (v < 1 || v > 65535) {
            cfg_error(c, e, "rule %u: %s: %lld is not a port in 1..65535", r->idx, what, v);
            return -1;
        }
        p->lo = p->hi = (uint16_t)v;
    } else if (config_setting_type(e) == CONFIG_TYPE_STRING) {
        const char *v = config_setting_get_string(e);
        if (parse_port_range(v, true, &p->lo, &p->hi) < 0) {
            cfg_error(c, e, "rule %u: %s: '%s' is not a port or a range LO-HI within 1-65535",
                      r->idx, what, v);
            return -1;
        }
    } else {
        cfg_error(c, e, "rule %u: %s: expected a port (443, \"443\" or \"8000-8999\"), not %s",
                  r->idx, what, type_name(e));
        return -1;
    }
    r->n_ports++;
    return 0;
}

static int
rk_ports(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    r->ports = alloc_elems(c, s, sizeof(*r->ports));
    if (!r->ports)
        return -1;
    return each_elem(c, s, key, port_one, r);
}

static int
command_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule *r = arg;
    static const struct {
        const char *name;
        uint8_t bit;
    } cmds[] = {{"connect", ACL_CMD_CONNECT}, {"bind", ACL_CMD_BIND}, {"udp", ACL_CMD_UDP}};
    const char *v = rule_string(c, r, e, what);
    if (!v)
        return -1;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(v, cmds[i].name) == 0) {
            r->cmds |= cmds[i].bit;
            return 0;
        }
    }
    cfg_error(c, e, "rule %u: %s: '%s' is not one of \"connect\", \"bind\", \"udp\"", r->idx, what,
              v);
    return -1;
}

static int
rk_commands(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    return each_elem(c, s, key, command_one, r);
}

static int
user_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule *r = arg;
    const char *v = rule_string(c, r, e, what);
    if (!v)
        return -1;
    /* RFC 1929: a user name is 1..255 bytes. */
    if (v[0] == '\0' || strlen(v) > 255) {
        cfg_error(c, e, "rule %u: %s: '%s' is not a user name (1..255 bytes)", r->idx, what, v);
        return -1;
    }
    r->users[r->n_users++] = v;
    return 0;
}

static int
rk_users(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    r->users = alloc_elems(c, s, sizeof(*r->users));
    if (!r->users)
        return -1;
    return each_elem(c, s, key, user_one, r);
}

/*
 * "control" (the default): a UDP ASSOCIATE's datagrams must come from the
 * control connection's address. "any": from another address too (carrier-
 * grade NAT), if that address passes the rules as a client itself.
 */
static int
rk_udp_source(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    const char *v =
        config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    if (!v || (strcmp(v, "control") != 0 && strcmp(v, "any") != 0)) {
        if (v)
            cfg_error(c, s, "rule %u: %s: '%s' is neither \"control\" nor \"any\"", r->idx, key, v);
        else
            cfg_error(c, s, "rule %u: %s: expected \"control\" or \"any\", not %s", r->idx, key,
                      type_name(s));
        return -1;
    }
    if (strcmp(v, "any") == 0)
        r->flags |= ACL_RF_UDP_ANY_SOURCE;
    r->udp_source = s;
    return 0;
}

/*
 * udp_source acts only on the rule that admits the association itself: an
 * allow rule for the udp command with no destination condition (the request
 * names none; its datagrams are checked one by one). Anywhere else it would
 * silently do nothing.
 */
static void
udp_source_check(struct cfg_ctx *c, const struct rule *r)
{
    const char *why = NULL;
    if (!r->udp_source || !(r->flags & ACL_RF_UDP_ANY_SOURCE))
        return;
    if (r->action != ACL_ALLOW)
        why = "only an allow rule admits a UDP source";
    else if (r->cmds && !(r->cmds & ACL_CMD_UDP))
        why = "the rule's commands do not include \"udp\"";
    else if (r->n_to || r->n_hosts || r->n_ports)
        why = "a rule with to, hosts or ports never admits the association itself, only its "
              "datagrams";
    if (why)
        cfg_error(c, r->udp_source, "rule %u: udp_source: %s", r->idx, why);
}

/* Adding a condition to rules is one line here (and a parameter of acl_add). */
static const struct rule_key rule_keys[] = {
    {"action", rk_action},     /* "allow" | "deny", required */
    {"from", rk_cidrs},        /* client networks */
    {"to", rk_cidrs},          /* destination networks, checked against the resolved address */
    {"hosts", rk_hosts},       /* destination names and .suffixes */
    {"ports", rk_ports},       /* destination ports and ranges */
    {"commands", rk_commands}, /* connect, bind, udp */
    {"users", rk_users},       /* authenticated user names */
    {"udp_source", rk_udp_source}, /* "control" | "any": who may send an association's datagrams */
};

/* "action, from, ...": the rule keys, for the unknown-key message. */
static const char *
rule_key_names(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(rule_keys) / sizeof(rule_keys[0]); i++) {
        int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", rule_keys[i].name);
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
    return buf;
}

/* Does network n hold the address a (4 or 16 bytes of family fam)? */
static bool
cidr_holds(const struct acl_cidr *n, int fam, const uint8_t *a)
{
    if (n->family != fam)
        return false;
    for (unsigned bit = 0; bit < n->prefix; bit++) {
        uint8_t m = (uint8_t)(0x80u >> (bit % 8));
        if ((n->addr[bit / 8] & m) != (a[bit / 8] & m))
            return false;
    }
    return true;
}

/*
 * A deny rule whose "to" holds 127.0.0.1 but not ::1, or ::1 but not 127.0.0.1:
 * "localhost" (and many other names) resolve to both, and the request goes on to
 * the address that is not denied (issue #9). Said, not refused: it may be meant.
 */
static void
warn_loopback_half(struct cfg_ctx *c, const config_setting_t *g, const struct rule *r)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1};
    static const uint8_t lo6[16] = {[15] = 1};
    bool v4 = false, v6 = false;
    for (size_t i = 0; i < r->n_to; i++) {
        v4 = v4 || cidr_holds(&r->to[i], AF_INET, lo4);
        v6 = v6 || cidr_holds(&r->to[i], AF_INET6, lo6);
    }
    if (v4 != v6)
        cfg_warn(c, g,
                 "warning: rule %u denies %s but not %s: names such as localhost resolve to "
                 "both, and the other one is tried; deny \"127.0.0.0/8\" and \"::1\" together",
                 r->idx, v4 ? "127.0.0.1" : "::1", v4 ? "::1" : "127.0.0.1");
}

static void
rule_one(struct cfg_ctx *c, const config_setting_t *g, unsigned idx)
{
    struct rule r = {.idx = idx};
    unsigned errs = c->n_err;

    if (!config_setting_is_group(g)) {
        cfg_error(c, g, "rule %u: expected a group { action = ...; }, not %s", idx, type_name(g));
        return;
    }
    unsigned n = (unsigned)config_setting_length(g);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, i);
        const char *name = config_setting_name(s);
        size_t k = 0;
        while (k < sizeof(rule_keys) / sizeof(rule_keys[0]) && strcmp(rule_keys[k].name, name))
            k++;
        if (k == sizeof(rule_keys) / sizeof(rule_keys[0])) {
            char names[128];
            cfg_error(c, s, "rule %u: unknown key '%s' (%s)", idx, name,
                      rule_key_names(names, sizeof(names)));
            continue;
        }
        /* udp_source takes one string and says so itself. */
        if (strcmp(name, "udp_source") != 0 &&
            (config_setting_is_group(s) || (is_list(s) && strcmp(name, "action") == 0))) {
            cfg_error(c, s, "rule %u: %s: expected %s, not %s", idx, name,
                      strcmp(name, "action") == 0 ? "\"allow\" or \"deny\""
                                                  : "a value or a list of values",
                      type_name(s));
            continue;
        }
        rule_keys[k].set(c, &r, s, name);
    }
    if (!r.has_action && c->n_err == errs)
        cfg_error(c, g, "rule %u: no action (action = \"allow\"; or action = \"deny\";)", idx);
    if (c->n_err == errs && r.action == ACL_DENY)
        warn_loopback_half(c, g, &r);
    if (c->n_err == errs)
        udp_source_check(c, &r);
    if (c->n_err == errs && c->acl) {
        int ret = acl_add(c->acl, r.action, r.from, r.n_from, r.to, r.n_to, r.hosts, r.n_hosts,
                          r.ports, r.n_ports, r.cmds, r.users, r.n_users);
        if (ret >= 0 && r.flags)
            ret = acl_set_flags(c->acl, ret, r.flags);
        if (ret < 0)
            cfg_error(c, g, "rule %u: %s", idx,
                      ret == -ENOMEM ? "out of memory" : "not accepted by the rule set");
    }
    free(r.from);
    free(r.to);
    free(r.hosts);
    free(r.ports);
    free(r.users);
}

static int
set_rules(struct cfg_ctx *c, const config_setting_t *s, const struct cfg_key *k)
{
    (void)k;
    c->acl = acl_new();
    if (!c->acl) {
        cfg_error(c, s, "out of memory");
        return -1;
    }
    unsigned errs = c->n_err;
    unsigned n = (unsigned)config_setting_length(s);
    for (unsigned i = 0; i < n; i++)
        rule_one(c, config_setting_get_elem(s, i), i + 1);
    return c->n_err == errs ? 0 : -1;
}

/* ---- the key table */

#define OPT(f) offsetof(struct opts, f)

/* In the order of enum relay_engine, enum auth_mode, enum socks4_mode, enum log_format. */
static const char *const relay_names[] = {"splice", "copy", "auto", NULL};
static const char *const auth_names[] = {"none", "password", NULL};

const char *
relay_name(enum relay_engine e)
{
    return (unsigned)e < sizeof(relay_names) / sizeof(relay_names[0]) - 1 ? relay_names[e] : "?";
}
static const char *const socks4_names[] = {"auto", "on", "off", NULL};
static const char *const log_format_names[] = {"logfmt", "json", NULL};

/* Ranges are those of the command line (main.c); 0 keeps its "automatic" meaning where the
 * command line has no way to say it. */
static const struct cfg_key cfg_keys[] = {
    {"listen", CFG_STRINGS, 0, 0, 0, NULL, set_listen},
    {"shards", CFG_UINT, 0, 1024, OPT(shards), NULL, set_uint},
    {"relay", CFG_STRING, 0, 0, OPT(relay), relay_names, set_choice},
    {"handshake_timeout", CFG_UINT, 1, 3600, OPT(handshake_timeout_s), NULL, set_uint},
    {"connect_timeout", CFG_UINT, 1, 3600, OPT(connect_timeout_s), NULL, set_uint},
    {"idle_timeout", CFG_UINT, 0, 86400 * 365, OPT(idle_timeout_s), NULL, set_uint},
    {"write_timeout", CFG_UINT, 0, 86400, OPT(write_timeout_s), NULL, set_uint},
    {"bind_timeout", CFG_UINT, 1, 86400, OPT(bind_timeout_s), NULL, set_uint},
    {"drain_timeout", CFG_UINT, 0, 86400, OPT(drain_timeout_s), NULL, set_uint},
    {"busy_poll", CFG_UINT, 0, 100000, OPT(busy_poll_us), NULL, set_uint},
    {"max_conns", CFG_UINT, 0, 16000000, OPT(max_conns), NULL, set_uint},
    {"resolvers", CFG_STRINGS, 0, 0, 0, NULL, set_resolvers},
    {"pipe_size", CFG_UINT, 4096, 64 << 20, OPT(pipe_size), NULL, set_uint},
    {"buf_size", CFG_UINT, 1024, 1 << 20, OPT(buf_size), NULL, set_uint},
    {"bufs", CFG_UINT, 1, 32768, OPT(buf_count), NULL, set_pow2},
    {"handshake_slots", CFG_UINT, 0, 1 << 20, OPT(hs_slots), NULL, set_uint},
    {"auth", CFG_STRING, 0, 0, OPT(auth), auth_names, set_choice},
    {"users", CFG_STRING, 0, 0, 0, NULL, set_users},
    {"auth_fail_budget", CFG_UINT, 0, 1000000, OPT(auth_fail_budget), NULL, set_uint},
    {"socks4", CFG_STRING, 0, 0, OPT(socks4), socks4_names, set_choice},
    {"bind_ports", CFG_STRING, 0, 0, OPT(bind_port_lo), NULL, set_port_range},
    {"udp_ports", CFG_STRING, 0, 0, OPT(udp_port_lo), NULL, set_port_range},
    {"udp_advertise", CFG_STRING, 0, 0, 0, NULL, set_udp_advertise},
    {"access_log", CFG_STRING, 0, 0, 0, NULL, set_access_log},
    {"log_format", CFG_STRING, 0, 0, OPT(log_format), log_format_names, set_choice},
    {"admin", CFG_STRING, 0, 0, 0, NULL, set_admin},
    {"admin_hosts", CFG_STRINGS, 0, 0, 0, NULL, set_admin_hosts},
    {"user", CFG_STRING, 0, sizeof(((struct opts *)0)->user), OPT(user), NULL, set_name},
    {"group", CFG_STRING, 0, sizeof(((struct opts *)0)->group), OPT(group), NULL, set_name},
    {"close_removed_users", CFG_BOOL, 0, 0, OPT(close_removed_users), NULL, set_bool},
    {"close_denied_on_reload", CFG_BOOL, 0, 0, OPT(close_denied), NULL, set_bool},
    {"keepalive_idle", CFG_UINT, 0, 86400, OPT(keepalive_idle_s), NULL, set_uint},
    {"keepalive_interval", CFG_UINT, 1, 86400, OPT(keepalive_interval_s), NULL, set_uint},
    {"keepalive_count", CFG_UINT, 1, 127, OPT(keepalive_count), NULL, set_uint},
    {"tcp_user_timeout", CFG_UINT, 0, 86400, OPT(user_timeout_s), NULL, set_uint},
    {"client_max_handshakes", CFG_UINT, 0, 1 << 20, OPT(client_max_handshakes), NULL, set_uint},
    {"client_max_binds", CFG_UINT, 0, 1 << 20, OPT(client_max_binds), NULL, set_uint},
    {"client_max_udp", CFG_UINT, 0, 1 << 20, OPT(client_max_udp), NULL, set_uint},
    {"rules", CFG_RULES, 0, 0, 0, NULL, set_rules},
};

_Static_assert(offsetof(struct opts, bind_port_hi) ==
                       offsetof(struct opts, bind_port_lo) + sizeof(uint16_t) &&
                   offsetof(struct opts, udp_port_hi) ==
                       offsetof(struct opts, udp_port_lo) + sizeof(uint16_t),
               "set_port_range writes lo and hi as a pair");

static bool
kind_ok(const struct cfg_key *k, const config_setting_t *s)
{
    switch (k->kind) {
    case CFG_UINT:
        return is_int(s);
    case CFG_BOOL:
        return config_setting_type(s) == CONFIG_TYPE_BOOL;
    case CFG_STRING:
        return config_setting_type(s) == CONFIG_TYPE_STRING;
    case CFG_STRINGS:
        return config_setting_type(s) == CONFIG_TYPE_STRING || is_list(s);
    case CFG_RULES:
        /* rules = (); or rules = []; : no rule, so everything is denied. */
        return config_setting_is_list(s) ||
               (config_setting_is_array(s) && config_setting_length(s) == 0);
    }
    return false;
}

static const char *
kind_name(enum cfg_kind kind)
{
    switch (kind) {
    case CFG_UINT:
        return "an integer";
    case CFG_BOOL:
        return "true or false";
    case CFG_STRING:
        return "a string";
    case CFG_STRINGS:
        return "a string or a list of strings";
    case CFG_RULES:
        return "a list of rules ( { ... }, { ... } )";
    }
    return "?";
}

static void
apply(struct cfg_ctx *c, const config_setting_t *root)
{
    unsigned n = (unsigned)config_setting_length(root);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(root, i);
        const char *name = config_setting_name(s);
        const struct cfg_key *k = NULL;
        for (size_t j = 0; j < sizeof(cfg_keys) / sizeof(cfg_keys[0]); j++)
            if (strcmp(cfg_keys[j].name, name) == 0)
                k = &cfg_keys[j];
        if (!k) {
            cfg_error(c, s, "unknown key '%s'", name);
            continue;
        }
        if (!kind_ok(k, s)) {
            cfg_error(c, s, "%s: expected %s, not %s", name, kind_name(k->kind), type_name(s));
            continue;
        }
        k->set(c, s, k);
    }
}

/* The whole file, NUL-terminated, or NULL with errno set. */
static char *
read_text(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 == cap) {
            char *nb = cap >= CONFIG_MAX_BYTES ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                errno = cap >= CONFIG_MAX_BYTES ? EFBIG : ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            buf = NULL;
            errno = e;
            break;
        }
        if (n == 0) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    int e = errno;
    close(fd);
    errno = e;
    return buf;
}

int
config_load(const char *path, struct opts *o, struct acl **acl, char *err, size_t errlen)
{
    struct opts copy = *o;
    struct cfg_ctx c = {.path = path, .err = err, .errlen = errlen, .o = &copy};
    config_t cfg;
    int rc = -1;

    if (err && errlen)
        err[0] = '\0';
    char *text = read_text(path);
    if (!text) {
        cfg_error(&c, NULL, "cannot read: %s", strerror(errno));
        return -1;
    }
    c.text = text;
    /* Parsed from the text read above, so reported lines and the text agree. */
    config_init(&cfg);
    if (config_read_string(&cfg, text) != CONFIG_TRUE) {
        const char *file = config_error_file(&cfg) ? config_error_file(&cfg) : path;
        c.n_err++;
        if (err && errlen)
            snprintf(err, errlen, "%s:%d: %s", file, config_error_line(&cfg),
                     config_error_text(&cfg));
        goto out;
    }
    apply(&c, config_root_setting(&cfg));
    if (!c.acl && c.n_err == 0) {
        c.acl = config_default_acl();
        if (!c.acl)
            cfg_error(&c, NULL, "out of memory");
    }
    if (c.n_err)
        goto out;
    *o = copy;
    if (c.users_set)
        o->users_path = o->users_file;
    *acl = c.acl;
    c.acl = NULL;
    rc = 0;
out:
    if (c.acl)
        acl_free(c.acl);
    config_destroy(&cfg);
    free(text);
    return rc;
}

struct acl *
config_default_acl(void)
{
    struct acl_cidr from[2];
    struct acl *acl = acl_new();
    if (!acl)
        return NULL;
    if (acl_cidr_parse("127.0.0.0/8", &from[0]) < 0 || acl_cidr_parse("::1/128", &from[1]) < 0 ||
        acl_add(acl, ACL_ALLOW, from, 2, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0) < 0) {
        acl_free(acl);
        return NULL;
    }
    return acl;
}

void
config_defaults(struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->relay = RELAY_AUTO;
    o->handshake_timeout_s = 10;
    o->connect_timeout_s = 10;
    o->idle_timeout_s = 7200;
    o->write_timeout_s = 120;
    o->bind_timeout_s = 120;
    o->drain_timeout_s = 30;
    o->pipe_size = 65536;
    o->buf_size = 32768;
    o->buf_count = 256;
    o->auth_fail_budget = 16;
    o->close_removed_users = true;
    o->keepalive_idle_s = 120;
    o->keepalive_interval_s = 30;
    o->keepalive_count = 4;
    o->user_timeout_s = 120;
    o->client_max_handshakes = 64;
    o->client_max_binds = 64;
    o->client_max_udp = 256;
    snprintf(o->access_log, sizeof(o->access_log), "stderr");
    addr_parse("127.0.0.1:9180", -1, &o->admin);
}
