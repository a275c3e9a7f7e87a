/*
 * addrsets.c - named sets of networks: the built-in tables and a file's own
 * sets, checked (bad networks, unknown names, cycles) and expanded into the
 * networks a rule holds.
 *
 * Called by config.c on the main and control threads while a configuration
 * is read; never on a shard, and never keeps anything past the load: the
 * rules hold copies of the networks.
 */
#include "addrsets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the built-in sets (docs/config.md lists them; test_addrsets checks it does) */

#define NETS(a) a, sizeof(a) / sizeof(a[0])

/*
 * IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and the
 * RFCs that updated them), plus multicast and deprecated ranges: nothing an
 * egress proxy should reach. Whole blocks are listed even where the registry
 * marks a few addresses inside them globally reachable (192.0.0.9 and
 * 192.0.0.10, anycast PCP and TURN; AMT and AS112 inside 2001::/23): a rule
 * list cannot say "except", and a rule before the deny can allow one.
 * 64:ff9b::/96 (NAT64, RFC 6052) is global in the registry and not here.
 * IPv4-mapped ::ffff:0:0/96 is not here either: mapped addresses are matched
 * as IPv4 (acl.h), so the IPv4 entries cover them.
 */
static const struct addrsets_net special[] = {
    {"0.0.0.0/8", "\"this network\" (RFC 791, RFC 1122 3.2.1.3)"},
    {"10.0.0.0/8", "private-use (RFC 1918)"},
    {"100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"},
    {"127.0.0.0/8", "loopback (RFC 1122 3.2.1.3)"},
    {"169.254.0.0/16", "link-local, where cloud metadata services live (RFC 3927)"},
    {"172.16.0.0/12", "private-use (RFC 1918)"},
    {"192.0.0.0/24", "IETF protocol assignments (RFC 6890 2.2.2)"},
    {"192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"},
    {"192.88.99.0/24", "6to4 relay anycast, deprecated (RFC 7526)"},
    {"192.168.0.0/16", "private-use (RFC 1918)"},
    {"198.18.0.0/15", "benchmarking (RFC 2544)"},
    {"198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"},
    {"203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"},
    {"224.0.0.0/4", "multicast (RFC 5771)"},
    {"240.0.0.0/4", "reserved, with limited broadcast 255.255.255.255 (RFC 1112 4, RFC 919)"},
    {"::/128", "unspecified (RFC 4291 2.5.2)"},
    {"::1/128", "loopback (RFC 4291 2.5.3)"},
    {"64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"},
    {"100::/64", "discard-only (RFC 6666)"},
    {"2001::/23", "IETF protocol assignments: Teredo, benchmarking, ORCHIDv2 (RFC 2928)"},
    {"2001:db8::/32", "documentation (RFC 3849)"},
    {"2002::/16", "6to4, deprecated (RFC 3056, RFC 7526): it carries an IPv4 address inside"},
    {"3fff::/20", "documentation (RFC 9637)"},
    {"5f00::/16", "segment routing (SRv6) SIDs (RFC 9602)"},
    {"fc00::/7", "unique local (RFC 4193)"},
    {"fe80::/10", "link-local (RFC 4291 2.5.6)"},
    {"fec0::/10", "site-local, deprecated (RFC 3879)"},
    {"ff00::/8", "multicast (RFC 4291 2.7)"},
};

static const struct addrsets_net private[] = {
    {"10.0.0.0/8", "private-use (RFC 1918)"},
    {"172.16.0.0/12", "private-use (RFC 1918)"},
    {"192.168.0.0/16", "private-use (RFC 1918)"},
    {"100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"},
    {"fc00::/7", "unique local (RFC 4193)"},
};

static const struct addrsets_net loopback[] = {
    {"127.0.0.0/8", "loopback (RFC 1122 3.2.1.3)"},
    {"::1/128", "loopback (RFC 4291 2.5.3)"},
};

/*
 * The addresses of the clouds' instance metadata, credential and DNS
 * services: each provider's own documentation. Most of them are inside
 * "@special" too; 168.63.129.16 is not (a public address).
 */
static const struct addrsets_net metadata[] = {
    {"169.254.169.254/32",
     "instance metadata: AWS EC2, Google Compute Engine, Azure IMDS, OpenStack, Oracle Cloud, "
     "DigitalOcean, Hetzner"},
    {"fd00:ec2::254/128", "AWS EC2 instance metadata over IPv6 (Nitro instances)"},
    {"169.254.169.253/32", "AWS Route 53 Resolver, the VPC's DNS server (Amazon DNS)"},
    {"fd00:ec2::253/128", "AWS Route 53 Resolver over IPv6 (Nitro instances)"},
    {"169.254.170.2/32", "AWS ECS task metadata and task role credentials"},
    {"169.254.170.23/32", "AWS EKS Pod Identity Agent (pod credentials)"},
    {"fd00:ec2::23/128", "AWS EKS Pod Identity Agent over IPv6"},
    {"100.100.100.200/32", "Alibaba Cloud ECS instance metadata"},
    {"168.63.129.16/32", "Azure host (WireServer): VM agent goal state, DNS, health probes"},
};

const struct addrsets_builtin addrsets_builtins[] = {
    {"special", "special-purpose, multicast and deprecated ranges: not the public internet",
     NETS(special)},
    {"private", "private networks: RFC 1918, carrier-grade NAT, unique local", NETS(private)},
    {"loopback", "this host", NETS(loopback)},
    {"metadata", "cloud metadata, credential and DNS services", NETS(metadata)},
};

const size_t addrsets_n_builtins = sizeof(addrsets_builtins) / sizeof(addrsets_builtins[0]);

const struct addrsets_builtin *
addrsets_builtin(const char *name)
{
    for (size_t i = 0; name && i < addrsets_n_builtins; i++)
        if (strcmp(addrsets_builtins[i].name, name) == 0)
            return &addrsets_builtins[i];
    return NULL;
}

/* ---- a file's own sets */

struct addrsets_member {
    const char *text; /* a network or "@name" */
    const void *tag;
};

struct addrsets_set {
    const char *name;
    const void *tag;
    struct addrsets_member *members;
    size_t n;
};

struct addrsets {
    struct addrsets_set *sets;
    size_t n, cap;
};

struct addrsets *
addrsets_new(void)
{
    return calloc(1, sizeof(struct addrsets));
}

void
addrsets_free(struct addrsets *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->sets[i].members);
    free(s->sets);
    free(s);
}

static bool
name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > ADDRSETS_NAME_MAX)
        return false;
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

/* The user set called name, or NULL. */
static const struct addrsets_set *
find(const struct addrsets *s, const char *name)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->sets[i].name, name) == 0)
            return &s->sets[i];
    return NULL;
}

bool
addrsets_known(const struct addrsets *s, const char *name)
{
    return find(s, name) || addrsets_builtin(name);
}

int
addrsets_define(struct addrsets *s, const char *name, const void *tag, const char *const *members,
                const void *const *tags, size_t n)
{
    if (!name_ok(name))
        return -EINVAL;
    if (addrsets_known(s, name))
        return -EEXIST;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        struct addrsets_set *ns = realloc(s->sets, cap * sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        s->sets = ns;
        s->cap = cap;
    }
    /* One more than n, so that an empty set allocates too. */
    struct addrsets_member *m = calloc(n + 1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        m[i] = (struct addrsets_member){members[i], tags ? tags[i] : NULL};
    s->sets[s->n++] = (struct addrsets_set){name, tag, m, n};
    return 0;
}

/* ---- checking: one depth-first walk over the sets, each member seen once */

enum { WHITE, GREY, BLACK };

struct walk {
    const struct addrsets *s;
    unsigned char *color; /* per set */
    const char **stack;   /* names of the grey sets, outermost first */
    size_t depth;
    addrsets_report_fn report;
    void *arg;
    unsigned problems;
};

/* "b -> c -> b": the stack from the set called name, and name again. */
static void
cycle_path(const struct walk *w, const char *name, char *buf, size_t cap)
{
    size_t from = 0, used = 0;
    while (from < w->depth && strcmp(w->stack[from], name) != 0)
        from++;
    buf[0] = '\0';
    for (size_t i = from; i <= w->depth; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i > from ? " -> " : "",
                         i < w->depth ? w->stack[i] : name);
        if (k < 0 || (size_t)k >= cap - used)
            return;
        used += (size_t)k;
    }
}

static void
walk_set(struct walk *w, size_t idx)
{
    const struct addrsets_set *set = &w->s->sets[idx];
    w->color[idx] = GREY;
    w->stack[w->depth++] = set->name;
    if (set->n == 0) {
        w->problems++;
        w->report(w->arg, ADDRSETS_EMPTY, set->name, NULL, set->tag, NULL);
    }
    for (size_t i = 0; i < set->n; i++) {
        const char *m = set->members[i].text;
        const void *tag = set->members[i].tag;
        struct acl_cidr net;
        if (m[0] != '@') {
            if (acl_cidr_parse(m, &net) < 0) {
                w->problems++;
                w->report(w->arg, ADDRSETS_BAD_NET, set->name, m, tag, NULL);
            }
            continue;
        }
        const struct addrsets_set *to = find(w->s, m + 1);
        if (!to) {
            if (!addrsets_builtin(m + 1)) {
                w->problems++;
                w->report(w->arg, ADDRSETS_UNKNOWN, set->name, m, tag, NULL);
            }
            continue;
        }
        size_t j = (size_t)(to - w->s->sets);
        if (w->color[j] == GREY) {
            char path[512];
            cycle_path(w, to->name, path, sizeof(path));
            w->problems++;
            w->report(w->arg, ADDRSETS_CYCLE, set->name, m, tag, path);
        } else if (w->color[j] == WHITE) {
            walk_set(w, j);
        }
    }
    w->depth--;
    w->color[idx] = BLACK;
}

unsigned
addrsets_check(const struct addrsets *s, addrsets_report_fn report, void *arg)
{
    if (!s || s->n == 0)
        return 0;
    struct walk w = {.s = s, .report = report, .arg = arg};
    w.color = calloc(s->n, 1);
    w.stack = calloc(s->n, sizeof(*w.stack));
    if (w.color && w.stack)
        for (size_t i = 0; i < s->n; i++)
            if (w.color[i] == WHITE)
                walk_set(&w, i);
    free(w.color);
    free(w.stack);
    return w.problems;
}

/* ---- expansion */

static int
expand(const struct addrsets *s, const char *entry, int (*add)(void *, const struct acl_cidr *),
       void *arg, size_t depth)
{
    struct acl_cidr net;
    if (entry[0] != '@')
        return acl_cidr_parse(entry, &net) < 0 ? -EINVAL : add(arg, &net);
    /* Deeper than there are sets: a set names itself somewhere. */
    if (depth > (s ? s->n : 0))
        return -ELOOP;
    const struct addrsets_set *set = find(s, entry + 1);
    if (set) {
        for (size_t i = 0; i < set->n; i++) {
            int ret = expand(s, set->members[i].text, add, arg, depth + 1);
            if (ret < 0)
                return ret;
        }
        return 0;
    }
    const struct addrsets_builtin *b = addrsets_builtin(entry + 1);
    if (!b)
        return -ENOENT;
    for (size_t i = 0; i < b->n; i++) {
        int ret = expand(NULL, b->nets[i].cidr, add, arg, depth + 1);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int
addrsets_expand(const struct addrsets *s, const char *entry,
                int (*add)(void *arg, const struct acl_cidr *net), void *arg)
{
    return entry ? expand(s, entry, add, arg, 0) : -EINVAL;
}
