/*
 * bm_acl.c - cost of acl_match() against the size of the rule set.
 *
 * Builds sets of 10, 1,000 and 10,000 rules (the argument) shaped like an
 * egress block list (deny rules of one destination CIDR, mostly IPv4, or
 * one host suffix, then one allow rule at the end) and times two queries
 * that both have to look at every rule: one matched by the last rule, one
 * matched by none. Each set is built once per process (the same set for a
 * given size whatever runs before it: the generator restarts from its
 * seed) and checked before timing.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "acl.h"
#include "bench.h"

#define SEED 0x2545f4914f6cdd1du
static uint64_t rng;

static uint32_t
rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* The destination of both queries: no deny rule may cover it. */
#define DEST_V4 0x5db8d822u /* 93.184.216.34 */

/* The first error of a build, sticky: the set is then discarded. */
static int add_err;

static void
add_checked(int r)
{
    if (r < 0 && add_err == 0)
        add_err = r;
}

/*
 * n rules: 60 % deny an IPv4 network (/8 to /28), 10 % an IPv6 one, 30 % a
 * host suffix; the last allows clients in 192.168.0.0/16 to connect to
 * ports 80 and 443.
 */
static struct acl *
build(size_t n)
{
    struct acl *acl = acl_new();
    if (!acl)
        return NULL;
    rng = SEED;
    add_err = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        struct acl_cidr c = {0};
        uint32_t kind = rnd(10);
        if (kind < 6) {
            unsigned prefix = 8 + rnd(21);
            uint32_t mask = ~0u << (32 - prefix), net;
            do
                net = ((uint32_t)rnd(1u << 16) << 16 | rnd(1u << 16)) & mask;
            while ((DEST_V4 & mask) == net);
            c.family = AF_INET;
            c.prefix = (uint8_t)prefix;
            net = htonl(net);
            memcpy(c.addr, &net, 4);
            add_checked(acl_add(acl, ACL_DENY, NULL, 0, &c, 1, NULL, 0, NULL, 0, 0, NULL, 0));
        } else if (kind < 7) {
            /* 2001:db8:xxxx:xxxx::/64 */
            c.family = AF_INET6;
            c.prefix = 64;
            c.addr[0] = 0x20, c.addr[1] = 0x01, c.addr[2] = 0x0d, c.addr[3] = 0xb8;
            for (int k = 4; k < 8; k++)
                c.addr[k] = (uint8_t)rnd(256);
            add_checked(acl_add(acl, ACL_DENY, NULL, 0, &c, 1, NULL, 0, NULL, 0, 0, NULL, 0));
        } else {
            static const char *const tld[] = {"com", "net", "org", "io", "ru", "cn"};
            char name[40];
            size_t len = 1;
            name[0] = '.';
            for (uint32_t k = 0, l = 4 + rnd(12); k < l; k++)
                name[len++] = (char)('a' + rnd(26));
            snprintf(name + len, sizeof(name) - len, ".%s", tld[rnd(6)]);
            const char *hosts[1] = {name};
            add_checked(acl_add(acl, ACL_DENY, NULL, 0, NULL, 0, hosts, 1, NULL, 0, 0, NULL, 0));
        }
    }
    struct acl_cidr lan;
    static const struct acl_ports web[] = {{80, 80}, {443, 443}};
    acl_cidr_parse("192.168.0.0/16", &lan);
    add_checked(
        acl_add(acl, ACL_ALLOW, &lan, 1, NULL, 0, NULL, 0, web, 2, ACL_CMD_CONNECT, NULL, 0));
    if (add_err < 0) {
        acl_free(acl);
        return NULL;
    }
    return acl;
}

static union sockaddr_inx
v4(const char *ip, uint16_t port)
{
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    a.v4.sin_family = AF_INET;
    a.v4.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.v4.sin_addr);
    return a;
}

/*
 * The set of n rules, built on first use and kept for the process; NULL
 * (and the run skipped) if it cannot be built or a query does not walk it
 * all, since the figure would then measure something else.
 */
static const struct acl *
rule_set(struct bench *b, size_t n, const struct acl_query *last, const struct acl_query *none)
{
    static struct {
        size_t n;
        struct acl *acl;
    } made[4];
    for (size_t i = 0; i < 4; i++)
        if (made[i].acl && made[i].n == n)
            return made[i].acl;
    struct acl *acl = n >= 1 ? build(n) : NULL;
    int rule;
    if (!acl) {
        bench_error(b, "cannot build the rule set");
        return NULL;
    }
    if (acl_match(acl, last, &rule) != ACL_ALLOW || rule != (int)n - 1 ||
        acl_match(acl, none, &rule) != ACL_DENY || rule != -1) {
        acl_free(acl);
        bench_error(b, "a query matched the wrong rule");
        return NULL;
    }
    for (size_t i = 0; i < 4; i++)
        if (!made[i].acl) {
            made[i].n = n;
            made[i].acl = acl;
            return acl;
        }
    return acl; /* more sizes than slots: built again on every call, never freed */
}

/* The timed body: one acl_match() per iteration; last: the query the last rule matches. */
static void
match(struct bench *b, bool last)
{
    union sockaddr_inx lan_client = v4("192.168.1.10", 50000),
                       wan_client = v4("203.0.113.5", 50000);
    union sockaddr_inx dest = v4("93.184.216.34", 443);
    struct acl_query q_last = {.client = &lan_client,
                               .cmd = ACL_CMD_CONNECT,
                               .host = "www.shop.example.org",
                               .dest = &dest,
                               .port = 443};
    struct acl_query q_none = q_last;
    q_none.client = &wan_client;

    const struct acl *acl = rule_set(b, (size_t)bench_arg(b, 0), &q_last, &q_none);
    if (!acl)
        return;
    const struct acl_query *q = last ? &q_last : &q_none;
    while (bench_next(b)) {
        int rule;
        enum acl_action a = acl_match(acl, q, &rule);
        bench_do_not_optimize(&a);
        bench_do_not_optimize(&rule);
    }
}

void
bm_acl_match_last_rule(struct bench *b)
{
    match(b, true);
}

void
bm_acl_match_no_match(struct bench *b)
{
    match(b, false);
}
