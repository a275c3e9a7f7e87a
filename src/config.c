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
#include "addrsets.h"
#include "admin.h"
#include "egress.h"
#include "happy.h"
#include "hostname.h"
#include "options.h"
#include "users.h"
#include "via.h"

/* A configuration file larger than this is a mistake (a log, a binary). */
#define CONFIG_MAX_BYTES (4u << 20)

struct cfg_ctx {
    const char *path;
    const char *text; /* the file exactly as parsed, for line fix-ups (owned when read) */
    char *err;
    size_t errlen;
    size_t used; /* bytes of err written */
    unsigned n_err;
    struct opts *o;        /* the copy being filled */
    struct acl *acl;       /* the rules being built; NULL until a rules list is seen */
    struct addrsets *sets; /* address_sets, read before the rules; NULL: built-in ones only */
    /* While the rules are read: the name settings seen so far, for duplicates. */
    const config_setting_t **rule_names;
    size_t n_rule_names;
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

/* ---- address sets */

#define CIDR_HINT "an address or a network with zero host bits (192.0.2.0/24, 2001:db8::/32)"

/* "built in: @special, ...; others are defined in address_sets": for the unknown-set message. */
static const char *
builtin_set_names(char *buf, size_t cap)
{
    size_t used = 0;
    options_append(buf, cap, &used, "built in:");
    for (size_t i = 0; i < addrsets_n_builtins; i++)
        options_append(buf, cap, &used, "%s @%s", i ? "," : "", addrsets_builtins[i].name);
    options_append(buf, cap, &used, "; others are defined in address_sets");
    return buf;
}

/* addrsets_check()'s report: each problem at the member (or set) it is about. */
static void
set_problem(void *arg, enum addrsets_problem p, const char *set, const char *member,
            const void *tag, const char *path)
{
    struct cfg_ctx *c = arg;
    char names[256];
    switch (p) {
    case ADDRSETS_BAD_NET:
        cfg_error(c, tag, "address_sets: %s: '%s' is neither \"@name\" nor %s", set, member,
                  CIDR_HINT);
        break;
    case ADDRSETS_UNKNOWN:
        cfg_error(c, tag, "address_sets: %s: '%s' is no address set (%s)", set, member,
                  builtin_set_names(names, sizeof(names)));
        break;
    case ADDRSETS_CYCLE:
        cfg_error(c, tag, "address_sets: %s: '%s' makes a cycle (%s)", set, member, path);
        break;
    case ADDRSETS_EMPTY:
        /* Members were given, and each was refused with its own message. */
        if (elem_count(tag) > 0)
            break;
        cfg_error(c, tag,
                  "address_sets: %s: the set is empty (in a rule it would stand for no "
                  "condition, matching every address)",
                  set);
        break;
    }
}

/* One set of address_sets: its members, each a network or "@name". */
static void
set_one(struct cfg_ctx *c, const config_setting_t *g)
{
    const char *name = config_setting_name(g);
    unsigned n = elem_count(g);
    const char **members = calloc(n + 1, sizeof(*members));
    const void **tags = calloc(n + 1, sizeof(*tags));
    if (!members || !tags) {
        cfg_error(c, g, "out of memory");
        goto out;
    }
    if (config_setting_is_group(g)) {
        cfg_error(c, g, "address_sets: %s: expected a list of networks [ ... ], not %s", name,
                  type_name(g));
        goto out;
    }
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = is_list(g) ? config_setting_get_elem(g, i) : g;
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            cfg_error(c, e, "address_sets: %s: expected a string, not %s", name, type_name(e));
            continue;
        }
        members[k] = config_setting_get_string(e);
        tags[k++] = e;
    }
    int ret = addrsets_define(c->sets, name, g, members, tags, k);
    if (ret == -EEXIST && addrsets_builtin(name))
        cfg_error(c, g, "address_sets: '%s' is the name of a built-in set (@%s): choose another",
                  name, name);
    else if (ret == -EEXIST)
        cfg_error(c, g, "address_sets: '%s' is defined twice", name);
    else if (ret == -EINVAL)
        cfg_error(c, g,
                  "address_sets: '%s' is not a set name (a letter, then letters, digits, "
                  "'_' or '-', %d at most)",
                  name, ADDRSETS_NAME_MAX);
    else if (ret < 0)
        cfg_error(c, g, "out of memory");
out:
    free(members);
    free(tags);
}

/* address_sets = { office = ["198.51.100.0/24", "@lab"]; lab = [...]; }; before the rules. */
static void
set_sets(struct cfg_ctx *c, const config_setting_t *s)
{
    unsigned n = (unsigned)config_setting_length(s);
    for (unsigned i = 0; i < n; i++)
        set_one(c, config_setting_get_elem(s, i));
    addrsets_check(c->sets, set_problem, c);
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
    uint8_t flags;                      /* ACL_RF_* set by keys other than conditions */
    const config_setting_t *udp_source; /* where udp_source was given, for its errors */
    struct egress_rule *out;            /* egress and outbound socket keys, NULL: none */
    const config_setting_t *out_key;    /* the first of them, for their errors */
    const config_setting_t *via_key;    /* where via was given, for its errors */
    const char *name;                   /* name = "...": the access log's rule field; NULL none */
    uint8_t gss;                        /* gss_protection: bit n for level n; 0 none */
    const config_setting_t *fault_key;  /* the first of fault, fault_allow, for their errors */
};

/* A rule's from or to list while it is read: an "@set" entry adds many networks. */
struct rule_cidrs {
    struct rule *r;
    struct acl_cidr **list;
    size_t *n, cap;
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

/* addrsets_expand()'s add: one network onto the list, grown as a set needs. */
static int
cidr_push(void *arg, const struct acl_cidr *net)
{
    struct rule_cidrs *l = arg;
    if (*l->n == l->cap) {
        struct acl_cidr *nl = reallocarray(*l->list, 2 * l->cap, sizeof(**l->list));
        if (!nl)
            return -ENOMEM;
        *l->list = nl;
        l->cap *= 2;
    }
    (*l->list)[(*l->n)++] = *net;
    return 0;
}

/* "198.51.100.0/24", or "@name": every network of that address set. */
static int
cidr_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule_cidrs *l = arg;
    const struct rule *r = l->r;
    char names[256];
    const char *v = rule_string(c, r, e, what);
    if (!v)
        return -1;
    int ret = addrsets_expand(c->sets, v, cidr_push, l);
    if (ret == -ENOMEM)
        cfg_error(c, e, "out of memory");
    else if (ret < 0 && v[0] != '@')
        cfg_error(c, e, "rule %u: %s: '%s' is not " CIDR_HINT, r->idx, what, v);
    else if (ret < 0 && !addrsets_known(c->sets, v + 1))
        cfg_error(c, e, "rule %u: %s: '%s' is no address set (%s)", r->idx, what, v,
                  builtin_set_names(names, sizeof(names)));
    /* Otherwise a set of address_sets is wrong, and was reported where it is defined. */
    return ret < 0 ? -1 : 0;
}

static int
rk_cidrs(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    bool to = strcmp(key, "to") == 0;
    struct rule_cidrs l = {r, to ? &r->to : &r->from, to ? &r->n_to : &r->n_from,
                           elem_count(s) + 1};
    *l.list = alloc_elems(c, s, sizeof(**l.list));
    if (!*l.list)
        return -1;
    if (each_elem(c, s, key, cidr_one, &l) < 0)
        return -1;
    /* Never let entries become an empty list: that is no condition, matching every address. */
    if (elem_count(s) > 0 && *l.n == 0) {
        cfg_error(c, s, "rule %u: %s: the list stands for no network", r->idx, key);
        return -1;
    }
    return 0;
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
        if (options_parse_ports(v, true, &p->lo, &p->hi) < 0) {
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

/* Longest rule name: a fixed-size field of the access-log record holds it. */
#define RULE_NAME_MAX 64

/*
 * name = "block-smtp": what the access log's rule field says of the requests
 * this rule decides. Printable ASCII without spaces or quotes (a log field
 * needs no quoting), at most RULE_NAME_MAX bytes, unique among the rules.
 */
static int
rk_name(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    const char *v =
        config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    if (!v) {
        cfg_error(c, s, "rule %u: %s: expected a string, not %s", r->idx, key, type_name(s));
        return -1;
    }
    size_t len = strlen(v);
    if (len == 0 || len > RULE_NAME_MAX) {
        cfg_error(c, s, "rule %u: %s: '%s' is not 1..%d bytes long", r->idx, key, v, RULE_NAME_MAX);
        return -1;
    }
    for (const char *p = v; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\'' || ch == '\\' || ch == '=') {
            cfg_error(c, s,
                      "rule %u: %s: '%s' has a space, quote, backslash, '=' or non-printable "
                      "byte: use letters, digits and - _ . : /",
                      r->idx, key, v);
            return -1;
        }
    }
    for (size_t i = 0; i < c->n_rule_names; i++) {
        if (strcmp(config_setting_get_string(c->rule_names[i]), v) == 0) {
            cfg_error(c, s, "rule %u: %s: '%s' is already the name of the rule at line %u", r->idx,
                      key, v, setting_line(c, c->rule_names[i]));
            return -1;
        }
    }
    const config_setting_t **nn =
        realloc(c->rule_names, (c->n_rule_names + 1) * sizeof(*c->rule_names));
    if (!nn) {
        cfg_error(c, s, "out of memory");
        return -1;
    }
    c->rule_names = nn;
    c->rule_names[c->n_rule_names++] = s;
    r->name = v;
    return 0;
}

/* ---- what an allow rule says about the tunnels it admits (egress.h) */

/* r's egress settings, made on first use; NULL after reporting out of memory. */
static struct egress_rule *
rule_out(struct cfg_ctx *c, struct rule *r, const config_setting_t *s)
{
    if (!r->out_key)
        r->out_key = s;
    if (r->out)
        return r->out;
    r->out = malloc(sizeof(*r->out));
    if (!r->out) {
        cfg_error(c, s, "out of memory");
        return NULL;
    }
    egress_rule_init(r->out);
    return r->out;
}

static int
egress_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule *r = arg;
    const char *v = rule_string(c, r, e, what);
    char why[160];
    if (!v)
        return -1;
    if (egress_pool_add(r->out->pool, v, why, sizeof(why)) < 0) {
        cfg_error(c, e, "rule %u: %s: %s", r->idx, what, why);
        return -1;
    }
    return 0;
}

static int
rk_egress(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    if (!o)
        return -1;
    if (!o->pool)
        o->pool = egress_pool_new();
    if (!o->pool) {
        cfg_error(c, s, "out of memory");
        return -1;
    }
    if (is_list(s) && elem_count(s) == 0) {
        cfg_error(c, s, "rule %u: %s: an empty pool (leave the key out for the default)", r->idx,
                  key);
        return -1;
    }
    return each_elem(c, s, key, egress_one, r);
}

/* One parent of via: checked alone, so that its error points at its own line. */
static int
via_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule *r = arg;
    const char *v = rule_string(c, r, e, what);
    char why[300];
    if (!v)
        return -1;
    struct via_list *one = via_list_new(&v, 1, why, sizeof(why));
    if (!one) {
        /* "via[0]: ..." of a list of one: the element's own line says which it is. */
        cfg_error(c, e, "rule %u: %s: %s", r->idx, what, strchr(why, ' ') + 1);
        return -1;
    }
    via_list_put(one);
    return 0;
}

static int
rk_via(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    if (!o)
        return -1;
    r->via_key = s;
    unsigned n = elem_count(s);
    if (n == 0 || n > VIA_MAX) {
        cfg_error(c, s, "rule %u: %s: %u parents; a rule names 1 to %u", r->idx, key, n, VIA_MAX);
        return -1;
    }
    if (each_elem(c, s, key, via_one, r) < 0)
        return -1;
    const char *urls[VIA_MAX];
    for (unsigned i = 0; i < n; i++)
        urls[i] = config_setting_get_string(is_list(s) ? config_setting_get_elem(s, i) : s);
    char why[300];
    o->via = via_list_new(urls, n, why, sizeof(why));
    if (!o->via) {
        cfg_error(c, s, "rule %u: %s", r->idx, why);
        return -1;
    }
    return 0;
}

/* A rule key holding true or false into *dst; -1 after reporting another type. */
static int
rule_bool(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key,
          int8_t *dst)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        cfg_error(c, s, "rule %u: %s: expected true or false, not %s", r->idx, key, type_name(s));
        return -1;
    }
    *dst = config_setting_get_bool(s) ? 1 : 0;
    return 0;
}

static int
rk_out_bool(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    if (!o)
        return -1;
    int8_t *dst = strcmp(key, "egress_fallback") == 0 ? &o->fallback
                  : strcmp(key, "keepalive") == 0     ? &o->keepalive
                                                      : &o->fastopen;
    return rule_bool(c, r, s, key, dst);
}

/* A rule key holding an integer in [lo, hi]; -1 after reporting. */
static int
rule_uint(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key,
          long long lo, long long hi, long long *v)
{
    if (!is_int(s)) {
        cfg_error(c, s, "rule %u: %s: expected an integer, not %s", r->idx, key, type_name(s));
        return -1;
    }
    *v = setting_int(c, s);
    if (*v < lo || *v > hi) {
        cfg_error(c, s, "rule %u: %s: %lld is not in %lld..%lld", r->idx, key, *v, lo, hi);
        return -1;
    }
    return 0;
}

static int
rk_mark(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    long long v;
    if (!o || rule_uint(c, r, s, key, 1, UINT32_MAX, &v) < 0)
        return -1;
    o->mark = (uint32_t)v;
    o->has_mark = true;
    return 0;
}

static int
rk_user_timeout(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    long long v;
    if (!o || rule_uint(c, r, s, key, 0, 86400, &v) < 0)
        return -1;
    o->user_timeout_s = (int32_t)v;
    return 0;
}

static int
rk_family(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    if (!o)
        return -1;
    const char *v =
        config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    int fam = v ? happy_family_parse(v) : -EINVAL;
    if (fam >= 0) {
        o->family = (uint8_t)fam;
        return 0;
    }
    cfg_error(c, s,
              "rule %u: %s: expected \"any\", \"ipv4\", \"ipv6\", \"prefer-ipv4\" or "
              "\"prefer-ipv6\", not %s%s%s",
              r->idx, key, v ? "'" : "", v ? v : type_name(s), v ? "'" : "");
    return -1;
}

/* The outbound keys act on the tunnels an allow rule admits; on a deny rule they would not. */
/* limits = "max_conns=5 bw_down=1M"; client_limits = "...": lim.h's words, no quota. */
static int
rk_limits(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    const char *v = config_setting_get_string(s);
    char why[200];
    if (!o)
        return -1;
    if (!v) {
        cfg_error(c, s, "rule %u: %s: expected a string \"key=value ...\", not %s", r->idx, key,
                  type_name(s));
        return -1;
    }
    if (lim_conf_parse(key[0] == 'l' ? &o->lim : &o->client_lim, LIM_KEYS_NO_QUOTA, v, why,
                       sizeof(why)) < 0) {
        cfg_error(c, s, "rule %u: %s: %s", r->idx, key, why);
        return -1;
    }
    o->has_lim = true;
    return 0;
}

static void
out_check(struct cfg_ctx *c, const struct rule *r)
{
    if (r->out && r->action != ACL_ALLOW)
        cfg_error(c, r->out_key, "rule %u: %s: only an allow rule admits tunnels to send somewhere",
                  r->idx, config_setting_name(r->out_key));
    else if (r->via_key && r->cmds && !(r->cmds & ACL_CMD_CONNECT))
        cfg_error(c, r->via_key,
                  "rule %u: via: parents carry CONNECT only, and the rule's commands do not "
                  "include \"connect\" (it would only refuse what it matches)",
                  r->idx);
}

/* fault = "refused" or a list: faults every tunnel of the rule commits (faultspec.h). */
static int
fault_one(struct cfg_ctx *c, const config_setting_t *e, const char *what, void *arg)
{
    struct rule *r = arg;
    const char *v = rule_string(c, r, e, what);
    char why[400];
    if (!v)
        return -1;
    if (fault_parse(v, strlen(v), &r->out->fault, why, sizeof(why)) < 0) {
        cfg_error(c, e, "rule %u: %s: %s", r->idx, what, why);
        return -1;
    }
    return 0;
}

static int
rk_fault(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    struct egress_rule *o = rule_out(c, r, s);
    if (!o)
        return -1;
    if (!r->fault_key)
        r->fault_key = s;
    if (strcmp(key, "fault_allow") == 0) {
        int8_t v;
        if (rule_bool(c, r, s, key, &v) < 0)
            return -1;
        o->fault_allow = v;
        return 0;
    }
    return each_elem(c, s, key, fault_one, r);
}

/*
 * A fault of the greeting or the RFC 1929 status acts before the request: the rule it
 * comes from is the first a CONNECT from the client (and its user) to a destination not
 * yet known matches (fault.h). A rule with other conditions would never be that rule.
 */
static void
fault_check(struct cfg_ctx *c, const struct rule *r)
{
    if (!r->out || !r->fault_key)
        return;
    uint32_t kinds = r->out->fault.kinds;
    bool greet = kinds & FAULT_KINDS_GREETING, auth = kinds & FAULT_KINDS_AUTH;
    if (!greet && !auth)
        return;
    const char *extra = r->n_to               ? "to"
                        : r->n_hosts          ? "hosts"
                        : r->n_ports          ? "ports"
                        : r->cmds             ? "commands"
                        : r->gss              ? "gss_protection"
                        : greet && r->n_users ? "users"
                                              : NULL;
    if (extra)
        cfg_error(c, r->fault_key,
                  "rule %u: fault: %s acts before the request (%s), so it comes from a rule "
                  "that can have only from%s, not %s: put it in a rule of its own, before "
                  "the others (docs/faults.md)",
                  r->idx, greet ? "a fault of the greeting" : "a fault of the RFC 1929 status",
                  greet ? "the client has not said what it wants nor who it is"
                        : "the client has not said what it wants",
                  greet ? "" : " and users", extra);
}

/* gss_protection = "N" or "LO-HI": only GSS-API connections protected at those levels. */
static int
rk_gss(struct cfg_ctx *c, struct rule *r, const config_setting_t *s, const char *key)
{
    uint8_t lo, hi;
    const char *v =
        config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    if (!v || options_gss_levels(v, &lo, &hi) < 0) {
        cfg_error(c, s, "rule %u: %s: expected a level \"N\" or a range \"LO-HI\" within 0-2",
                  r->idx, key);
        return -1;
    }
    for (unsigned l = lo; l <= hi; l++)
        r->gss |= (uint8_t)(1u << l);
    return 0;
}

/* Adding a condition to rules is one line here (and a parameter of acl_add). */
static const struct rule_key rule_keys[] = {
    {"action", rk_action},         /* "allow" | "deny", required */
    {"name", rk_name},             /* what the access log calls the rule (else its number) */
    {"from", rk_cidrs},            /* client networks */
    {"to", rk_cidrs},              /* destination networks, checked against the resolved address */
    {"hosts", rk_hosts},           /* destination names and .suffixes */
    {"ports", rk_ports},           /* destination ports and ranges */
    {"commands", rk_commands},     /* connect, bind, udp */
    {"users", rk_users},           /* authenticated user names */
    {"udp_source", rk_udp_source}, /* "control" | "any": who may send an association's datagrams */
    {"gss_protection", rk_gss},    /* GSS-API connections at these protection levels */
    /* What an allow rule says about the tunnels it admits (egress.h). */
    {"egress", rk_egress},             /* source addresses and prefixes */
    {"egress_fallback", rk_out_bool},  /* no pool address of the family: the kernel chooses */
    {"family", rk_family},             /* any, ipv4, ipv6, prefer-ipv4, prefer-ipv6 */
    {"mark", rk_mark},                 /* SO_MARK */
    {"keepalive", rk_out_bool},        /* TCP keepalive on the outgoing socket */
    {"user_timeout", rk_user_timeout}, /* TCP_USER_TIMEOUT on the outgoing socket */
    {"fastopen", rk_out_bool},         /* TCP_FASTOPEN_CONNECT */
    {"via", rk_via},                   /* parent proxies the tunnels go through (via.h) */
    {"limits", rk_limits},             /* the user's limits for these tunnels (lim.h) */
    {"client_limits", rk_limits},      /* the client address's limits for these tunnels */
    {"fault", rk_fault},               /* faults its tunnels commit (fault.h, docs/faults.md) */
    {"fault_allow", rk_fault},         /* a user name may ask for faults ("-fault-") */
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

/*
 * A deny rule whose "to" holds 127.0.0.1 but not ::1, or ::1 but not 127.0.0.1:
 * "localhost" (and many other names) resolve to both, and the request goes on to
 * the address that is not denied. Said, not refused: it may be meant.
 */
static void
warn_loopback_half(struct cfg_ctx *c, const config_setting_t *g, const struct rule *r)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1};
    static const uint8_t lo6[16] = {[15] = 1};
    bool v4 = false, v6 = false;
    for (size_t i = 0; i < r->n_to; i++) {
        v4 = v4 || acl_cidr_holds(&r->to[i], AF_INET, lo4);
        v6 = v6 || acl_cidr_holds(&r->to[i], AF_INET6, lo6);
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
            char names[256];
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
    if (c->n_err == errs)
        out_check(c, &r);
    if (c->n_err == errs)
        fault_check(c, &r);
    if (c->n_err == errs && c->acl) {
        int rule = acl_add(c->acl, r.action, r.from, r.n_from, r.to, r.n_to, r.hosts, r.n_hosts,
                           r.ports, r.n_ports, r.cmds, r.users, r.n_users);
        int ret = rule < 0 ? rule : 0;
        if (ret == 0 && r.flags)
            ret = acl_set_flags(c->acl, rule, r.flags);
        if (ret == 0 && r.gss)
            ret = acl_set_gss(c->acl, rule, r.gss);
        if (ret == 0 && r.name)
            ret = acl_set_name(c->acl, rule, r.name);
        if (ret == 0 && r.out) {
            ret = acl_set_data(c->acl, rule, r.out, egress_rule_free);
            if (ret == 0)
                r.out = NULL; /* the rule set owns it now */
        }
        if (ret < 0)
            cfg_error(c, g, "rule %u: %s", idx,
                      ret == -ENOMEM ? "out of memory" : "not accepted by the rule set");
    }
    free(r.from);
    free(r.to);
    free(r.hosts);
    free(r.ports);
    free(r.users);
    egress_rule_free(r.out);
}

static int
set_rules(struct cfg_ctx *c, const config_setting_t *s)
{
    c->acl = acl_new();
    if (!c->acl) {
        cfg_error(c, s, "out of memory");
        return -1;
    }
    unsigned errs = c->n_err;
    unsigned n = (unsigned)config_setting_length(s);
    for (unsigned i = 0; i < n; i++)
        rule_one(c, config_setting_get_elem(s, i), i + 1);
    free(c->rule_names);
    c->rule_names = NULL;
    c->n_rule_names = 0;
    return c->n_err == errs ? 0 : -1;
}

/* ---- the other keys: one row each in options.c */

static bool
kind_ok(const struct options_row *r, const config_setting_t *s)
{
    switch (r->kind) {
    case OPTIONS_UINT:
        return is_int(s);
    case OPTIONS_BOOL:
        return config_setting_type(s) == CONFIG_TYPE_BOOL;
    case OPTIONS_CHOICE:
    case OPTIONS_STRING:
    case OPTIONS_PORTS:
    case OPTIONS_ADDR:
        return config_setting_type(s) == CONFIG_TYPE_STRING;
    case OPTIONS_ADDRS:
    case OPTIONS_CSV:
        return config_setting_type(s) == CONFIG_TYPE_STRING || is_list(s);
    case OPTIONS_RULES:
        /* rules = (); or rules = []; : no rule, so everything is denied. */
        return config_setting_is_list(s) ||
               (config_setting_is_array(s) && config_setting_length(s) == 0);
    case OPTIONS_SETS:
        return config_setting_is_group(s);
    }
    return false;
}

static const char *
kind_name(enum options_kind kind)
{
    switch (kind) {
    case OPTIONS_UINT:
        return "an integer";
    case OPTIONS_BOOL:
        return "true or false";
    case OPTIONS_CHOICE:
    case OPTIONS_STRING:
    case OPTIONS_PORTS:
    case OPTIONS_ADDR:
        return "a string";
    case OPTIONS_ADDRS:
    case OPTIONS_CSV:
        return "a string or a list of strings";
    case OPTIONS_RULES:
        return "a list of rules ( { ... }, { ... } )";
    case OPTIONS_SETS:
        return "a group of named lists { office = [\"198.51.100.0/24\"]; }";
    }
    return "?";
}

/* Append v to the comma-separated out (used bytes so far); -1 after reporting a full one. */
static int
csv_add(struct cfg_ctx *c, const config_setting_t *e, const char *v, char *out, size_t cap,
        size_t *used, const char *what)
{
    int n = snprintf(out + *used, cap - *used, "%s%s", *used ? "," : "", v);
    if (n < 0 || (size_t)n >= cap - *used) {
        cfg_error(c, e, "%s: the list takes more than %zu bytes", what, cap - 1);
        return -1;
    }
    *used += (size_t)n;
    return 0;
}

/* A listener's egress = "same" or a pool (a string or a list of strings), into out. */
static int
listen_egress(struct cfg_ctx *c, const config_setting_t *s, char *out, size_t cap)
{
    char why[160];
    size_t used = 0;
    out[0] = '\0';
    if (config_setting_type(s) == CONFIG_TYPE_STRING &&
        strcmp(config_setting_get_string(s), "same") == 0) {
        snprintf(out, cap, "same");
        return 0;
    }
    if (is_list(s) && elem_count(s) == 0) {
        cfg_error(c, s, "listen: egress: an empty pool (leave the key out for the default)");
        return -1;
    }
    for (unsigned i = 0; i < elem_count(s); i++) {
        const config_setting_t *e = is_list(s) ? config_setting_get_elem(s, i) : s;
        const char *v = elem_string(c, e, "listen: egress");
        if (!v)
            return -1;
        if (egress_entry_check(v, why, sizeof(why)) < 0) {
            cfg_error(c, e, "listen: egress: %s (or \"same\": the address the client reached)",
                      why);
            return -1;
        }
        if (csv_add(c, e, v, out, cap, &used, "listen: egress") < 0)
            return -1;
    }
    return 0;
}

/* A PROXY listener's from: networks (a string or a list of strings), into out as "a,b". */
static int
listen_from(struct cfg_ctx *c, const config_setting_t *s, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    if (elem_count(s) == 0) {
        cfg_error(c, s, "listen: from: an empty list (name the load balancers' addresses)");
        return -1;
    }
    for (unsigned i = 0; i < elem_count(s); i++) {
        const config_setting_t *e = is_list(s) ? config_setting_get_elem(s, i) : s;
        const char *v = elem_string(c, e, "listen: from");
        struct acl_cidr net;
        if (!v)
            return -1;
        if (acl_cidr_parse(v, &net) < 0) {
            cfg_error(c, e, "listen: from: '%s' is not an address or network (\"10.0.0.0/8\")", v);
            return -1;
        }
        if (csv_add(c, e, v, out, cap, &used, "listen: from") < 0)
            return -1;
    }
    return 0;
}

/*
 * A PROXY listener's keys: proxy_protocol = true needs from, and from means nothing
 * without it (a listener open to "any" balancer would let anyone claim any address).
 */
static int
listen_proxy(struct cfg_ctx *c, const config_setting_t *g, const config_setting_t *pp,
             const config_setting_t *from, struct opts_listen_out *lo)
{
    if (pp && config_setting_type(pp) != CONFIG_TYPE_BOOL) {
        cfg_error(c, pp, "listen: proxy_protocol: expected true or false, not %s", type_name(pp));
        return -1;
    }
    lo->proxy_protocol = pp && config_setting_get_bool(pp);
    if (!lo->proxy_protocol) {
        if (from) {
            cfg_error(c, from, "listen: from is for proxy_protocol = true listeners only");
            return -1;
        }
        return 0;
    }
    if (!from) {
        cfg_error(c, g,
                  "listen: proxy_protocol = true needs from = [ ... ], the load balancers' "
                  "addresses (no default: any other peer could claim any client address)");
        return -1;
    }
    return listen_from(c, from, lo->from, sizeof(lo->from));
}

/*
 * mode = "socks" (the default) or "transparent": connections the kernel redirected to
 * the listener, their original destination the request. A transparent listener takes no
 * PROXY header (its peer is the client itself) and no egress of its own (under tproxy the
 * accepted socket's address is the target's, by which no listener can be found; rules
 * and the global egress still apply).
 */
static int
listen_mode(struct cfg_ctx *c, const config_setting_t *mode, const config_setting_t *pp,
            const config_setting_t *eg, const config_setting_t *auth, struct opts_listen_out *lo)
{
    if (auth) {
        /* Only a transparent listener's clients cannot authenticate: under auth =
         * "password" the operator says so in the listener, or the start is refused. */
        const char *a = elem_string(c, auth, "listen: auth");
        if (!a)
            return -1;
        if (strcmp(a, "none") != 0) {
            cfg_error(c, auth, "listen: auth: expected \"none\", not \"%s\"", a);
            return -1;
        }
        lo->auth_none = true;
    }
    if (!mode) {
        if (auth)
            cfg_error(c, auth,
                      "listen: auth is for mode = \"transparent\" listeners (a SOCKS client "
                      "authenticates itself when auth = \"password\")");
        return auth ? -1 : 0;
    }
    const char *v = elem_string(c, mode, "listen: mode");
    if (!v)
        return -1;
    if (strcmp(v, "transparent") == 0) {
        lo->transparent = true;
    } else if (strcmp(v, "socks") != 0) {
        cfg_error(c, mode, "listen: mode: expected \"socks\" or \"transparent\", not \"%s\"", v);
        return -1;
    }
    if (lo->transparent && lo->proxy_protocol) {
        cfg_error(c, pp,
                  "listen: proxy_protocol is for SOCKS listeners behind a balancer, not mode = "
                  "\"transparent\" (its peer is the client itself)");
        return -1;
    }
    if (auth && !lo->transparent) {
        cfg_error(c, auth,
                  "listen: auth is for mode = \"transparent\" listeners (a SOCKS client "
                  "authenticates itself when auth = \"password\")");
        return -1;
    }
    if (lo->transparent && eg) {
        cfg_error(c, eg,
                  "listen: egress is not for mode = \"transparent\" listeners (under tproxy the "
                  "listener cannot be told from the target): give egress in a rule or globally");
        return -1;
    }
    return 0;
}

/*
 * A listener given as a group: { address = "HOST:PORT"; egress = "same";
 * proxy_protocol = true; from = [...]; mode = "transparent"; }, the one form for every
 * per-listener setting.
 */
static int
listen_group(struct cfg_ctx *c, const config_setting_t *g, const struct options_row *r)
{
    char why[512];
    const config_setting_t *addr = NULL, *eg = NULL, *pp = NULL, *from = NULL, *mode = NULL;
    const config_setting_t *auth = NULL;
    unsigned n = (unsigned)config_setting_length(g);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, i);
        const char *name = config_setting_name(s);
        if (strcmp(name, "address") == 0)
            addr = s;
        else if (strcmp(name, "egress") == 0)
            eg = s;
        else if (strcmp(name, "proxy_protocol") == 0)
            pp = s;
        else if (strcmp(name, "from") == 0)
            from = s;
        else if (strcmp(name, "mode") == 0)
            mode = s;
        else if (strcmp(name, "auth") == 0)
            auth = s;
        else {
            cfg_error(c, s,
                      "listen: unknown key '%s' in a listener (address, egress, proxy_protocol, "
                      "from, mode, auth)",
                      name);
            return -EINVAL;
        }
    }
    if (!addr) {
        cfg_error(c, g, "listen: a listener group needs address = \"HOST:PORT\"");
        return -EINVAL;
    }
    const char *v = elem_string(c, addr, "listen: address");
    if (!v)
        return -EINVAL;
    int ret = options_set(r, c->o, v, why, sizeof(why));
    if (ret < 0) {
        cfg_error(c, addr, "%s: %s", r->key, why);
        return ret;
    }
    if (!eg && !pp && !from && !mode && !auth)
        return 0;
    struct opts_listen_out *lo = &c->o->listen_out[c->o->n_listen_out];
    memset(lo, 0, sizeof(*lo));
    if (eg && listen_egress(c, eg, lo->egress, sizeof(lo->egress)) < 0)
        return -EINVAL;
    if (listen_proxy(c, g, pp, from, lo) < 0 || listen_mode(c, mode, pp, eg, auth, lo) < 0)
        return -EINVAL;
    lo->addr = c->o->listen[c->o->n_listen - 1];
    lo->idx = c->o->n_listen - 1;
    c->o->n_listen_out++;
    return 0;
}

/* One element of a list key (a scalar is a list of one); -E2BIG ends the list. */
static int
list_one(struct cfg_ctx *c, const config_setting_t *e, const struct options_row *r)
{
    char why[512];
    if (config_setting_is_group(e) && strcmp(r->key, "listen") == 0)
        return listen_group(c, e, r);
    const char *v = elem_string(c, e, r->key);
    if (!v)
        return -EINVAL;
    int ret = options_set(r, c->o, v, why, sizeof(why));
    if (ret < 0)
        cfg_error(c, e, "%s: %s", r->key, why);
    return ret;
}

static void
set_row(struct cfg_ctx *c, const config_setting_t *s, const struct options_row *r)
{
    char why[512];
    int ret = 0;
    switch (r->kind) {
    case OPTIONS_RULES:
        set_rules(c, s);
        return;
    case OPTIONS_SETS:
        set_sets(c, s);
        return;
    case OPTIONS_UINT:
        ret = options_set_uint(r, c->o, setting_int(c, s), why, sizeof(why));
        break;
    case OPTIONS_BOOL:
        options_set_bool(r, c->o, config_setting_get_bool(s) != 0);
        break;
    case OPTIONS_ADDRS:
    case OPTIONS_CSV:
        /* The whole list replaces the default (and anything before it). */
        if ((r->flags & OPTIONS_F_NONEMPTY) && elem_count(s) == 0) {
            cfg_error(c, s, "%s: the list is empty (give at least one address)", r->key);
            return;
        }
        options_clear(r, c->o);
        if (strcmp(r->key, "listen") == 0)
            c->o->n_listen_out = 0;
        for (unsigned i = 0; i < elem_count(s); i++) {
            const config_setting_t *e = is_list(s) ? config_setting_get_elem(s, i) : s;
            /* A full list is said once, at the first element too many. */
            if (list_one(c, e, r) == -E2BIG)
                break;
        }
        return;
    default:
        ret = options_set(r, c->o, config_setting_get_string(s), why, sizeof(why));
        break;
    }
    if (ret < 0)
        cfg_error(c, s, "%s: %s", r->key, why);
}

/* The keys of root of kind sets (true: the address sets, which the rules read) or the others. */
static void
apply_pass(struct cfg_ctx *c, const config_setting_t *root, bool sets)
{
    unsigned n = (unsigned)config_setting_length(root);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(root, i);
        const char *name = config_setting_name(s);
        const struct options_row *r = options_find(name);
        if (r && (r->kind == OPTIONS_SETS) != sets)
            continue;
        if (!r) {
            if (!sets)
                cfg_error(c, s, "unknown key '%s'", name);
            continue;
        }
        if (!kind_ok(r, s)) {
            cfg_error(c, s, "%s: expected %s, not %s", name, kind_name(r->kind), type_name(s));
            continue;
        }
        set_row(c, s, r);
    }
}

/* Every key of root: address_sets first, wherever it is written, as the rules name its sets. */
static void
apply(struct cfg_ctx *c, const config_setting_t *root)
{
    c->sets = addrsets_new();
    if (!c->sets) {
        cfg_error(c, root, "out of memory");
        return;
    }
    apply_pass(c, root, true);
    apply_pass(c, root, false);
    addrsets_free(c->sets);
    c->sets = NULL;
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

/*
 * libconfig 1.5 says only "syntax error" and the line where its parser
 * stopped (often the line after a missing ';'). Show that line, and name the
 * one mistake its grammar makes common: a list of groups written as an array.
 */
static void
syntax_error(struct cfg_ctx *c, const config_t *cfg)
{
    const char *file = config_error_file(cfg);
    int line = config_error_line(cfg);
    const char *p = !file && c->text && line > 0 ? line_start(c->text, (unsigned)line) : NULL;
    c->n_err++;
    if (!c->err || !c->errlen)
        return;
    int n = snprintf(c->err, c->errlen, "%s:%d: %s", file ? file : c->path, line,
                     config_error_text(cfg));
    if (!p || n < 0 || (size_t)n >= c->errlen)
        return;
    p = skip_blank(p);
    size_t len = strcspn(p, "\r\n");
    size_t used = (size_t)n;
    if (len)
        used += (size_t)snprintf(c->err + used, c->errlen - used, " in '%.*s%s'",
                                 (int)(len > 60 ? 60 : len), p, len > 60 ? "..." : "");
    const char *brace = memchr(p, '{', len);
    if (brace && used < c->errlen) {
        const char *q = brace;
        while (q > c->text && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n' || q[-1] == '\r'))
            q--;
        if (q > c->text && q[-1] == '[')
            snprintf(c->err + used, c->errlen - used,
                     ": a list of groups is written ( { ... }, { ... } ); [ ] holds only "
                     "strings, numbers and booleans");
    }
}

/* Read path and parse it into cfg (initialised here; the caller destroys it). */
static int
parse_file(struct cfg_ctx *c, config_t *cfg)
{
    config_init(cfg);
    char *text = read_text(c->path);
    if (!text) {
        cfg_error(c, NULL, "cannot read: %s", strerror(errno));
        return -1;
    }
    c->text = text;
    /* Parsed from the text read above, so reported lines and the text agree. */
    if (config_read_string(cfg, text) != CONFIG_TRUE) {
        syntax_error(c, cfg);
        return -1;
    }
    return 0;
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
    if (parse_file(&c, &cfg) < 0)
        goto out;
    apply(&c, config_root_setting(&cfg));
    if (!c.acl && c.n_err == 0) {
        c.acl = config_default_acl();
        if (!c.acl)
            cfg_error(&c, NULL, "out of memory");
    }
    if (c.n_err)
        goto out;
    *o = copy;
    *acl = c.acl;
    c.acl = NULL;
    rc = 0;
out:
    if (c.acl)
        acl_free(c.acl);
    config_destroy(&cfg);
    free((char *)c.text);
    return rc;
}

/* The rules without a file or a rules key: loopback clients only. */
static const char default_rules[] =
    "rules = (\n"
    "    { action = \"allow\"; from = [\"127.0.0.0/8\", \"::1\"]; }\n"
    ");\n";

struct acl *
config_default_acl(void)
{
    struct opts scratch;
    struct cfg_ctx c = {.path = "(built-in rules)", .text = default_rules, .o = &scratch};
    config_t cfg;
    config_init(&cfg);
    if (config_read_string(&cfg, default_rules) == CONFIG_TRUE)
        apply(&c, config_root_setting(&cfg));
    config_destroy(&cfg);
    if (c.n_err && c.acl) {
        acl_free(c.acl);
        c.acl = NULL;
    }
    return c.acl;
}

/* ---- the rules as text, for -T */

static void
print_value(FILE *f, const config_setting_t *s)
{
    char buf[1024];
    unsigned n = elem_count(s);
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        fprintf(f, "%lld", config_setting_get_int64(s));
        return;
    case CONFIG_TYPE_BOOL:
        fputs(config_setting_get_bool(s) ? "true" : "false", f);
        return;
    case CONFIG_TYPE_FLOAT:
        fprintf(f, "%g", config_setting_get_float(s));
        return;
    case CONFIG_TYPE_STRING:
        options_quote(config_setting_get_string(s), buf, sizeof(buf));
        fputs(buf, f);
        return;
    case CONFIG_TYPE_GROUP:
        fputs("{", f);
        for (unsigned i = 0; i < (unsigned)config_setting_length(s); i++) {
            const config_setting_t *e = config_setting_get_elem(s, i);
            fprintf(f, " %s = ", config_setting_name(e));
            print_value(f, e);
            fputs(";", f);
        }
        fputs(" }", f);
        return;
    default: /* arrays [ ] and lists ( ) */
        fputs(config_setting_is_array(s) ? "[" : "(", f);
        for (unsigned i = 0; i < n; i++) {
            fputs(i ? ", " : "", f);
            print_value(f, config_setting_get_elem(s, i));
        }
        fputs(config_setting_is_array(s) ? "]" : ")", f);
        return;
    }
}

/* Does s (a value of the file, lists and groups walked into) hold the string v? */
static bool
holds_string(const config_setting_t *s, const char *v)
{
    if (config_setting_type(s) == CONFIG_TYPE_STRING)
        return strcmp(config_setting_get_string(s), v) == 0;
    unsigned n = is_list(s) || config_setting_is_group(s) ? (unsigned)config_setting_length(s) : 0;
    for (unsigned i = 0; i < n; i++)
        if (holds_string(config_setting_get_elem(s, i), v))
            return true;
    return false;
}

/*
 * The built-in sets the file names, as comments (what "@special" holds in
 * this version), then the file's own address_sets as written: the rules
 * keep their "@name" entries, so the output reads as the file was meant and
 * loads the same.
 */
static void
print_sets(FILE *f, const config_setting_t *root)
{
    char entry[64], ref[ADDRSETS_NAME_MAX + 4];
    for (size_t i = 0; i < addrsets_n_builtins; i++) {
        const struct addrsets_builtin *b = &addrsets_builtins[i];
        snprintf(ref, sizeof(ref), "@%s", b->name);
        if (!holds_string(root, ref))
            continue;
        int col = fprintf(f, "# %s (built in) = [", ref);
        for (size_t k = 0; k < b->n; k++) {
            snprintf(entry, sizeof(entry), "\"%s\"%s", b->nets[k].cidr, k + 1 < b->n ? "," : "];");
            if (col + 1 + (int)strlen(entry) > 100)
                col = fprintf(f, "\n#    ") - 1;
            col += fprintf(f, "%s%s", k ? " " : "", entry);
        }
        fputs("\n", f);
    }
    const config_setting_t *sets = config_setting_get_member(root, "address_sets");
    if (sets) {
        unsigned n = (unsigned)config_setting_length(sets);
        fputs(n ? "address_sets = {\n" : "address_sets = {", f);
        for (unsigned i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(sets, i);
            fprintf(f, "    %s = ", config_setting_name(e));
            print_value(f, e);
            fputs(";\n", f);
        }
        fputs("};\n", f);
    }
}

int
config_print_rules(const char *path, FILE *f)
{
    config_t cfg;
    struct opts scratch;
    struct cfg_ctx c = {.path = path, .o = &scratch};
    int rc = 0;
    if (!path) {
        fputs(default_rules, f);
        return 0;
    }
    if (parse_file(&c, &cfg) < 0) {
        rc = -1;
        goto out;
    }
    print_sets(f, config_root_setting(&cfg));
    const config_setting_t *rules = config_lookup(&cfg, "rules");
    if (!rules) {
        fputs(default_rules, f);
        goto out;
    }
    unsigned n = (unsigned)config_setting_length(rules);
    fputs(n ? "rules = (\n" : "rules = (", f);
    for (unsigned i = 0; i < n; i++) {
        fputs("    ", f);
        print_value(f, config_setting_get_elem(rules, i));
        fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    fputs(");\n", f);
out:
    config_destroy(&cfg);
    free((char *)c.text);
    return rc;
}

const char *
config_key_where(const char *path, const char *key, const char *value, char *buf, size_t cap)
{
    config_t cfg;
    struct opts scratch;
    struct cfg_ctx c = {.path = path, .o = &scratch};
    if (cap)
        buf[0] = '\0';
    if (!path || !value)
        return buf;
    if (parse_file(&c, &cfg) == 0) {
        const config_setting_t *s = config_setting_get_member(config_root_setting(&cfg), key);
        const char *v = s ? config_setting_get_string(s) : NULL;
        if (v && strcmp(v, value) == 0) {
            const char *file = config_setting_source_file(s) ? config_setting_source_file(s) : path;
            snprintf(buf, cap, "%s:%u: ", file, setting_line(&c, s));
        }
    }
    config_destroy(&cfg);
    free((char *)c.text);
    return buf;
}

int
config_check_rule_users(const char *path, const struct users *users, char *warn, size_t cap)
{
    config_t cfg;
    struct opts scratch;
    struct cfg_ctx c = {.path = path, .err = warn, .errlen = cap, .o = &scratch};
    unsigned n_warn = 0;
    if (warn && cap)
        warn[0] = '\0';
    if (!path)
        return 0;
    int rc = parse_file(&c, &cfg);
    if (rc == 0) {
        const config_setting_t *rules = config_lookup(&cfg, "rules");
        unsigned n = rules && is_list(rules) ? (unsigned)config_setting_length(rules) : 0;
        for (unsigned i = 0; i < n; i++) {
            const config_setting_t *g = config_setting_get_elem(rules, i);
            const config_setting_t *u =
                config_setting_is_group(g) ? config_setting_get_member(g, "users") : NULL;
            for (unsigned k = 0; u && k < elem_count(u); k++) {
                const config_setting_t *e = is_list(u) ? config_setting_get_elem(u, k) : u;
                const char *name = config_setting_get_string(e);
                if (!name || users_hash(users, name))
                    continue;
                n_warn++;
                cfg_warn(&c, e,
                         "warning: rule %u: user '%s' is not in the users file%s: the "
                         "rule never matches them",
                         i + 1, name, users ? "" : " (there is none)");
            }
        }
    }
    config_destroy(&cfg);
    free((char *)c.text);
    return rc < 0 ? -1 : (int)n_warn;
}
