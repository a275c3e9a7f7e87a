/*
 * test_acl.c - access rules: CIDR parsing, rule validation and copying,
 * matching of every condition, first match wins, and a randomised
 * comparison of acl_match() with a plain reference matcher.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sa_text.h"

#include "acl.h"

/* ---- helpers */

#define MAXL 8

/* A rule spelled in text; lists end at the first NULL (ports: at n_ports). */
struct spec {
    enum acl_action action;
    const char *from[MAXL];
    const char *to[MAXL];
    const char *hosts[MAXL];
    struct acl_ports ports[MAXL];
    size_t n_ports;
    uint8_t cmds;
    const char *users[MAXL];
};

static size_t
list_len(const char *const *l)
{
    size_t n = 0;
    while (n < MAXL && l[n])
        n++;
    return n;
}

static struct acl_cidr
cidr(const char *s)
{
    struct acl_cidr c;
    if (acl_cidr_parse(s, &c) != 0)
        fail_msg("acl_cidr_parse(\"%s\") failed", s);
    return c;
}

static int
add(struct acl *acl, const struct spec *s)
{
    struct acl_cidr from[MAXL], to[MAXL];
    size_t nf = list_len(s->from), nt = list_len(s->to);
    for (size_t i = 0; i < nf; i++)
        from[i] = cidr(s->from[i]);
    for (size_t i = 0; i < nt; i++)
        to[i] = cidr(s->to[i]);
    return acl_add(acl, s->action, from, nf, to, nt, s->hosts, list_len(s->hosts), s->ports,
                   s->n_ports, s->cmds, s->users, list_len(s->users));
}

#define ADD(acl, ...) add((acl), &(struct spec){__VA_ARGS__})

/* A query in text; NULL client or dest leaves that address out. */
struct q {
    const char *client;
    uint8_t cmd;
    const char *user;
    const char *host;
    const char *dest;
    uint16_t port;
};

static enum acl_action last_action;

/* The index of the rule q matches (-1: none), its action in last_action. */
static int
match(const struct acl *acl, const struct q *t)
{
    union sockaddr_inx c, d;
    struct acl_query q = {.cmd = t->cmd ? t->cmd : ACL_CMD_CONNECT,
                          .user = t->user,
                          .host = t->host,
                          .port = t->port};
    if (t->client) {
        c = sa(t->client);
        q.client = &c;
    }
    if (t->dest) {
        d = sa(t->dest);
        q.dest = &d;
    }
    int rule = 12345;
    last_action = acl_match(acl, &q, &rule);
    if (rule == -1)
        assert_int_equal(last_action, ACL_DENY);
    return rule;
}

#define MATCH(acl, ...) match((acl), &(struct q){__VA_ARGS__})

static struct acl *
new_acl(void)
{
    struct acl *acl = acl_new();
    assert_non_null(acl);
    return acl;
}

/* ---- rule flags */

static void
test_rule_flags(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    int r0 = ADD(acl, .action = ACL_ALLOW, .from = {"127.0.0.0/8"});
    int r1 =
        ADD(acl, .action = ACL_ALLOW, .to = {"127.0.0.1"}, .ports = {{1080, 1080}}, .n_ports = 1);
    assert_int_equal(acl_rule_flags(acl, r0), 0);
    assert_int_equal(acl_rule_flags(acl, r1), ACL_RF_TO);
    /* Out of range: no flags, and nothing to set. */
    assert_int_equal(acl_rule_flags(acl, -1), 0);
    assert_int_equal(acl_rule_flags(acl, 2), 0);
    assert_int_equal(acl_rule_flags(NULL, 0), 0);
    assert_int_equal(acl_set_flags(acl, 2, 0x02), -EINVAL);
    assert_int_equal(acl_set_flags(acl, -1, 0x02), -EINVAL);
    /* ACL_RF_TO is derived from the rule, never set by hand. */
    assert_int_equal(acl_set_flags(acl, r0, ACL_RF_TO), -EINVAL);
    assert_int_equal(acl_rule_flags(acl, r0), 0);
    assert_int_equal(acl_set_flags(acl, r0, 0x02), 0);
    assert_int_equal(acl_rule_flags(acl, r0), 0x02);
    assert_int_equal(acl_rule_flags(acl, r1), ACL_RF_TO);
    acl_free(acl);
}

/* ---- acl_cidr_parse */

static void
cidr_ok(const char *s, int family, unsigned prefix, const char *addr)
{
    struct acl_cidr c, want = {.family = (uint8_t)family, .prefix = (uint8_t)prefix};
    assert_int_equal(inet_pton(family, addr, want.addr), 1);
    memset(&c, 0xa5, sizeof(c));
    assert_int_equal(acl_cidr_parse(s, &c), 0);
    assert_int_equal(c.family, family);
    assert_int_equal(c.prefix, prefix);
    assert_memory_equal(c.addr, want.addr, sizeof(c.addr));
}

static void
cidr_bad(const char *s)
{
    struct acl_cidr c, before;
    memset(&c, 0x5a, sizeof(c));
    before = c;
    if (acl_cidr_parse(s, &c) != -EINVAL)
        fail_msg("acl_cidr_parse(\"%s\") accepted", s);
    assert_memory_equal(&c, &before, sizeof(c)); /* out untouched on error */
}

static void
test_cidr_parse(void **state)
{
    (void)state;
    cidr_ok("10.0.0.0/8", AF_INET, 8, "10.0.0.0");
    cidr_ok("192.0.2.7", AF_INET, 32, "192.0.2.7");
    cidr_ok("192.0.2.7/32", AF_INET, 32, "192.0.2.7");
    cidr_ok("0.0.0.0/0", AF_INET, 0, "0.0.0.0");
    cidr_ok("128.0.0.0/1", AF_INET, 1, "128.0.0.0");
    cidr_ok("255.255.255.254/31", AF_INET, 31, "255.255.255.254");
    cidr_ok("::1", AF_INET6, 128, "::1");
    cidr_ok("::1/128", AF_INET6, 128, "::1");
    cidr_ok("::/0", AF_INET6, 0, "::");
    cidr_ok("8000::/1", AF_INET6, 1, "8000::");
    cidr_ok("2001:db8::/32", AF_INET6, 32, "2001:db8::");
    cidr_ok("2001:DB8::/32", AF_INET6, 32, "2001:db8::");
    cidr_ok("2001:db8:0:1::/65", AF_INET6, 65, "2001:db8:0:1::");
    cidr_ok("2001:db8:0:1:8000::/65", AF_INET6, 65, "2001:db8:0:1:8000::");
    /* IPv4-mapped: stored as IPv4, prefix - 96. */
    cidr_ok("::ffff:10.0.0.0/104", AF_INET, 8, "10.0.0.0");
    cidr_ok("::ffff:192.0.2.7", AF_INET, 32, "192.0.2.7");
    cidr_ok("::ffff:0:0/96", AF_INET, 0, "0.0.0.0");
    /* ::/0 stays IPv6 (it covers ::ffff:0:0/96 but is not mapped itself). */
    cidr_ok("::/80", AF_INET6, 80, "::");
}

static void
test_cidr_parse_bad(void **state)
{
    (void)state;
    cidr_bad("");
    cidr_bad("/8");
    cidr_bad("10.0.0.0/");
    cidr_bad("10.0.0.0/33");
    cidr_bad("10.0.0.0/99999999999999999999");
    cidr_bad("::/129");
    cidr_bad("::1/200");
    cidr_bad("10.0.0.0/-1");
    cidr_bad("10.0.0.0/+8");
    cidr_bad("10.0.0.0/ 8");
    cidr_bad("10.0.0.0/8 ");
    cidr_bad(" 10.0.0.0/8");
    cidr_bad("10.0.0.0/08");
    cidr_bad("10.0.0.0/8x");
    cidr_bad("10.0.0.0/8/8");
    cidr_bad("10.0.0.0//8");
    cidr_bad("10.0.0.1/8"); /* host bits set: a typo */
    cidr_bad("10.128.0.0/8");
    cidr_bad("128.0.0.0/0");
    cidr_bad("192.0.2.7/31");
    cidr_bad("2001:db8::1/32");
    cidr_bad("2001:db8:0:1:4000::/65");
    cidr_bad("::1/127");
    cidr_bad("::ffff:10.0.0.1/104");
    cidr_bad("::ffff:0:0/80"); /* the ffff is host bits of a /80 */
    cidr_bad("garbage");
    cidr_bad("example.com/8");
    cidr_bad("10.0.0/8");
    cidr_bad("1.2.3.4.5");
    cidr_bad("256.0.0.0/8");
    cidr_bad("010.0.0.0/8");
    cidr_bad("fe80::1%eth0");
    cidr_bad("[::1]");
    cidr_bad("[::1]/128");
    cidr_bad("::1::2");
    cidr_bad("0000:0000:0000:0000:0000:0000:0000:0000:0000/0");
    assert_int_equal(acl_cidr_parse(NULL, &(struct acl_cidr){0}), -EINVAL);
}

/* ---- acl_add */

static void
test_empty(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(acl_count(acl), 0);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .host = "a", .dest = "10.0.0.1"), -1);
    assert_int_equal(last_action, ACL_DENY);
    assert_int_equal(MATCH(NULL, .client = "127.0.0.1"), -1);
    assert_int_equal(acl_count(NULL), 0);
    acl_free(acl);
    acl_free(NULL);
}

static void
test_add_index(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_DENY), 0);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"10.0.0.0/8"}), 1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {"example.com"}), 2);
    assert_int_equal(acl_count(acl), 3);
    acl_free(acl);
}

static void
test_add_invalid(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    const char *longname =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; /* 253 */
    char toolong[300];
    char longuser[300];
    assert_int_equal(strlen(longname), 253);
    snprintf(toolong, sizeof(toolong), "a%s", longname);
    memset(longuser, 'u', 256);
    longuser[256] = '\0';

    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"127.0.0.0/8"}), 0);

    /* Actions and command bits. */
    assert_int_equal(ADD(acl, .action = (enum acl_action)2), -EINVAL);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .cmds = 0x08), -EINVAL);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .cmds = 0xff), -EINVAL);
    /* Ports: lo <= hi. */
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .ports = {{80, 80}, {444, 443}}, .n_ports = 2),
                     -EINVAL);
    /* Host names. */
    const char *bad_hosts[] = {"", ".", "..", "..example.com", "a..b", "a.b..", "*.a.com",
                               "exa mple.com", "a/b", "a:b", "\xc3\xa9.fr", toolong,
                               /* an address in a name's clothes: the same check as requests */
                               "10.0.0.1", ".123", "127.1"};
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++)
        if (ADD(acl, .action = ACL_ALLOW, .hosts = {"ok.example", bad_hosts[i]}) != -EINVAL)
            fail_msg("host \"%s\" accepted", bad_hosts[i]);
    /* Users: 1..255 bytes. */
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .users = {"alice", ""}), -EINVAL);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .users = {longuser}), -EINVAL);

    /* Addresses built by hand: bad family, prefix, host bits. */
    struct acl_cidr c[2] = {cidr("10.0.0.0/8"), cidr("10.0.0.0/8")};
    c[1].prefix = 33;
    assert_int_equal(acl_add(acl, ACL_ALLOW, c, 2, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0), -EINVAL);
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, c, 2, NULL, 0, NULL, 0, 0, NULL, 0), -EINVAL);
    c[1] = cidr("::/0");
    c[1].prefix = 129;
    assert_int_equal(acl_add(acl, ACL_ALLOW, c, 2, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0), -EINVAL);
    c[1] = cidr("10.0.0.0/8");
    c[1].addr[3] = 1;
    assert_int_equal(acl_add(acl, ACL_ALLOW, c, 2, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0), -EINVAL);
    c[1] = cidr("10.0.0.0/8");
    c[1].family = AF_UNIX;
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, c, 2, NULL, 0, NULL, 0, 0, NULL, 0), -EINVAL);

    /* A non-empty list without its array, or a NULL entry. */
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 1, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0),
                     -EINVAL);
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 1, NULL, 0, NULL, 0, 0, NULL, 0),
                     -EINVAL);
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 0, NULL, 1, NULL, 0, 0, NULL, 0),
                     -EINVAL);
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 0, NULL, 0, NULL, 1, 0, NULL, 0),
                     -EINVAL);
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 1),
                     -EINVAL);
    const char *nul[1] = {NULL};
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 0, nul, 1, NULL, 0, 0, NULL, 0),
                     -EINVAL);
    assert_int_equal(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, nul, 1),
                     -EINVAL);
    assert_int_equal(acl_add(NULL, ACL_ALLOW, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0),
                     -EINVAL);

    /* Every rejected rule left the set as it was. */
    assert_int_equal(acl_count(acl), 1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .host = "ok.example"), 0);
    assert_int_equal(MATCH(acl, .client = "10.0.0.1", .host = "ok.example"), -1);

    /* The longest names accepted: 253 characters, and 255 bytes of user name. */
    longuser[255] = '\0';
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {longname}, .users = {longuser}), 1);
    assert_int_equal(MATCH(acl, .client = "10.0.0.1", .host = longname, .user = longuser), 1);
    longuser[254] = '\0';
    assert_int_equal(MATCH(acl, .client = "10.0.0.1", .host = longname, .user = longuser), -1);
    acl_free(acl);
}

static void
test_add_copies(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    char host[32], user[32];
    struct acl_cidr from = cidr("192.0.2.0/24"), to = cidr("198.51.100.0/24");
    struct acl_ports ports = {443, 443};
    const char *hosts[1] = {host}, *users[1] = {user};
    strcpy(host, ".Example.COM.");
    strcpy(user, "alice");

    assert_int_equal(acl_add(acl, ACL_ALLOW, &from, 1, &to, 1, hosts, 1, &ports, 1, 0, users, 1),
                     0);
    /* The caller's storage is reused: the rule must not see it. */
    strcpy(host, "evil.org");
    strcpy(user, "mallory");
    from = cidr("0.0.0.0/0");
    to = cidr("0.0.0.0/0");
    ports = (struct acl_ports){0, 65535};

    assert_int_equal(MATCH(acl, .client = "192.0.2.1", .user = "alice", .host = "www.example.com",
                           .dest = "198.51.100.9", .port = 443),
                     0);
    assert_int_equal(last_action, ACL_ALLOW);
    assert_int_equal(MATCH(acl, .client = "192.0.2.1", .user = "mallory", .host = "www.example.com",
                           .dest = "198.51.100.9", .port = 443),
                     -1);
    assert_int_equal(MATCH(acl, .client = "192.0.2.1", .user = "alice", .host = "evil.org",
                           .dest = "198.51.100.9", .port = 443),
                     -1);
    assert_int_equal(MATCH(acl, .client = "203.0.113.1", .user = "alice", .host = "www.example.com",
                           .dest = "198.51.100.9", .port = 443),
                     -1);
    assert_int_equal(MATCH(acl, .client = "192.0.2.1", .user = "alice", .host = "www.example.com",
                           .dest = "203.0.113.9", .port = 443),
                     -1);
    assert_int_equal(MATCH(acl, .client = "192.0.2.1", .user = "alice", .host = "www.example.com",
                           .dest = "198.51.100.9", .port = 80),
                     -1);
    acl_free(acl);
}

/* ---- matching, one condition at a time */

static void
test_first_match(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_DENY, .to = {"10.0.0.0/8"}), 0);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"127.0.0.0/8"}), 1);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .from = {"127.0.0.1"}), 2);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW), 3);

    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .dest = "10.1.1.1"), 0);
    assert_int_equal(last_action, ACL_DENY);
    /* Rule 2 also matches, but rule 1 comes first. */
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .dest = "192.0.2.1"), 1);
    assert_int_equal(last_action, ACL_ALLOW);
    /* No dest yet (before resolving): rule 0 cannot match. */
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .host = "internal.example"), 1);
    assert_int_equal(MATCH(acl, .client = "192.0.2.1", .dest = "10.0.0.1"), 0);
    assert_int_equal(MATCH(acl, .client = "192.0.2.1", .dest = "11.0.0.1"), 3);
    assert_int_equal(last_action, ACL_ALLOW);
    acl_free(acl);

    /* The other order gives the other answer. */
    acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_ALLOW), 0);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .to = {"10.0.0.0/8"}), 1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .dest = "10.1.1.1"), 0);
    assert_int_equal(last_action, ACL_ALLOW);
    acl_free(acl);
}

static void
test_cmds(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .cmds = ACL_CMD_CONNECT | ACL_CMD_UDP), 0);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .cmds = ACL_CMD_BIND), 1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .cmds = 0), 2);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .cmd = ACL_CMD_CONNECT), 0);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .cmd = ACL_CMD_UDP), 0);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .cmd = ACL_CMD_BIND), 1);
    acl_free(acl);

    acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .cmds = ACL_CMD_BIND), 0);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .cmd = ACL_CMD_CONNECT), -1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .cmd = ACL_CMD_UDP), -1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .cmd = ACL_CMD_BIND), 0);
    acl_free(acl);
}

static void
test_ports(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(
        ADD(acl, .action = ACL_ALLOW, .ports = {{80, 80}, {443, 443}, {1000, 2000}}, .n_ports = 3),
        0);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .ports = {{0, 0}, {65535, 65535}}, .n_ports = 2),
                     1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .ports = {{0, 65535}}, .n_ports = 1), 2);
    static const struct {
        uint16_t port;
        int rule;
    } cases[] = {{80, 0},   {443, 0}, {1000, 0}, {1500, 0},  {2000, 0},
                 {79, 2},   {81, 2},  {442, 2},  {444, 2},   {999, 2},
                 {2001, 2}, {0, 1},   {1, 2},    {65535, 1}, {65534, 2}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (MATCH(acl, .client = "127.0.0.1", .port = cases[i].port) != cases[i].rule)
            fail_msg("port %u: want rule %d", cases[i].port, cases[i].rule);
    acl_free(acl);
}

static void
test_from(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"192.0.2.7"}), 0);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"2001:db8::/32", "10.0.0.0/8"}), 1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"::1"}), 2);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"0.0.0.0/1"}), 3);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"8000::/1"}), 4);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .from = {"0.0.0.0/0"}), 5);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .from = {"::/0"}), 6);

    assert_int_equal(MATCH(acl, .client = "192.0.2.7"), 0);
    assert_int_equal(MATCH(acl, .client = "192.0.2.6"), 5);
    assert_int_equal(MATCH(acl, .client = "192.0.2.8"), 5);
    assert_int_equal(MATCH(acl, .client = "10.0.0.0"), 1);
    assert_int_equal(MATCH(acl, .client = "10.255.255.255"), 1);
    assert_int_equal(MATCH(acl, .client = "9.255.255.255"), 3);
    assert_int_equal(MATCH(acl, .client = "11.0.0.0"), 3);
    assert_int_equal(MATCH(acl, .client = "2001:db8::"), 1);
    assert_int_equal(MATCH(acl, .client = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 1);
    assert_int_equal(MATCH(acl, .client = "2001:db9::"), 6);
    assert_int_equal(MATCH(acl, .client = "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"), 6);
    assert_int_equal(MATCH(acl, .client = "::1"), 2);
    assert_int_equal(MATCH(acl, .client = "::2"), 6);
    assert_int_equal(MATCH(acl, .client = "::"), 6);
    /* /1 edges. */
    assert_int_equal(MATCH(acl, .client = "127.255.255.255"), 3);
    assert_int_equal(MATCH(acl, .client = "0.0.0.0"), 3);
    assert_int_equal(MATCH(acl, .client = "128.0.0.0"), 5);
    assert_int_equal(MATCH(acl, .client = "255.255.255.255"), 5);
    assert_int_equal(MATCH(acl, .client = "8000::"), 4);
    assert_int_equal(MATCH(acl, .client = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 4);
    assert_int_equal(MATCH(acl, .client = "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 6);
    /* No client address: a from list cannot match. */
    assert_int_equal(MATCH(acl, .client = NULL), -1);
    acl_free(acl);
}

static void
test_v6_prefixes(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .to = {"2001:db8:0:1::/64"}), 0);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .to = {"2001:db8:0:2:8000::/65"}), 1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .to = {"2001:db8::/63"}), 2);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .to = {"2001:db8:0:3:0:0:0:fffe/127"}), 3);

    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:1::"), 0);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:1:ffff:ffff:ffff:ffff"), 0);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:2:8000::1"), 1);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:2:ffff:ffff:ffff:ffff"), 1);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:2:7fff:ffff:ffff:ffff"), -1);
    assert_int_equal(MATCH(acl, .dest = "2001:db8::1"), 2);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:3:0:0:0:fffe"), 3);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:3:0:0:0:ffff"), 3);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:3:0:0:0:fffd"), -1);
    assert_int_equal(MATCH(acl, .dest = "2001:db8:0:3:0:0:1:fffe"), -1);
    acl_free(acl);
}

static void
test_to(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_DENY, .to = {"10.0.0.0/8", "fc00::/7"}), 0);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .to = {"0.0.0.0/0"}), 1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {".example.com"}), 2);

    assert_int_equal(MATCH(acl, .dest = "10.9.8.7"), 0);
    assert_int_equal(MATCH(acl, .dest = "fd00::1"), 0);
    assert_int_equal(MATCH(acl, .dest = "192.0.2.1"), 1);
    assert_int_equal(MATCH(acl, .dest = "2001:db8::1"), -1);
    /* Before resolving, the name alone; after, its address decides (DNS rebinding). */
    assert_int_equal(MATCH(acl, .host = "a.example.com"), 2);
    assert_int_equal(MATCH(acl, .host = "a.example.com", .dest = "10.0.0.1"), 0);
    assert_int_equal(MATCH(acl, .host = "a.example.com", .dest = "2001:db8::1"), 2);
    acl_free(acl);
}

static void
test_v4mapped(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    /* A mapped network built by hand (not through acl_cidr_parse) is normalised by acl_add. */
    struct acl_cidr mapped = {.family = AF_INET6, .prefix = 108};
    assert_int_equal(inet_pton(AF_INET6, "::ffff:172.16.0.0", mapped.addr), 1);
    assert_int_equal(acl_add(acl, ACL_ALLOW, &mapped, 1, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0), 0);
    /* ... and checked in its mapped form: 172.16.0.0/8 has host bits set. */
    struct acl_cidr bad = mapped;
    bad.prefix = 104;
    assert_int_equal(acl_add(acl, ACL_ALLOW, &bad, 1, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0),
                     -EINVAL);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"10.0.0.0/8"}), 1);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .to = {"::ffff:192.168.0.0/112"}), 2);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .to = {"::/0"}), 3);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .to = {"0.0.0.0/0"}), 4);

    assert_int_equal(MATCH(acl, .client = "172.16.1.1"), 0);
    assert_int_equal(MATCH(acl, .client = "::ffff:172.16.1.1"), 0);
    assert_int_equal(MATCH(acl, .client = "::ffff:172.31.255.255"), 0);
    assert_int_equal(MATCH(acl, .client = "::ffff:172.32.0.0"), -1);
    assert_int_equal(MATCH(acl, .client = "::ffff:10.1.2.3"), 1);
    assert_int_equal(MATCH(acl, .client = "10.1.2.3"), 1);
    assert_int_equal(MATCH(acl, .client = "::ffff:11.1.2.3"), -1);
    /* Not mapped: ::a01:203 and 64:ff9b::a01:203 are IPv6. */
    assert_int_equal(MATCH(acl, .client = "::10.1.2.3"), -1);
    assert_int_equal(MATCH(acl, .client = "64:ff9b::10.1.2.3"), -1);

    assert_int_equal(MATCH(acl, .client = "::1", .dest = "192.168.3.4"), 2);
    assert_int_equal(MATCH(acl, .client = "::1", .dest = "::ffff:192.168.3.4"), 2);
    /* A mapped destination is IPv4: ::/0 does not catch it, 0.0.0.0/0 does. */
    assert_int_equal(MATCH(acl, .client = "::1", .dest = "::ffff:8.8.8.8"), 4);
    assert_int_equal(MATCH(acl, .client = "::1", .dest = "2001:db8::1"), 3);
    acl_free(acl);
}

static void
test_hosts(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_DENY, .hosts = {"Example.COM."}), 0);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {".example.com"}), 1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {"a.io", ".B.ORG."}), 2);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {".internal"}), 3);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {"x"}), 4);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .hosts = {".averyveryverylongname.net"}), 5);
    assert_int_equal(ADD(acl, .action = ACL_DENY, .hosts = {"exactly8.net", ".abcdefgh"}), 6);

    static const struct {
        const char *host;
        int rule;
    } cases[] = {
        {"example.com", 0},
        {"EXAMPLE.com", 0},
        {"example.com.", 0},
        {"Example.Com.", 0},
        {"www.example.com", 1},
        {"WWW.EXAMPLE.COM.", 1},
        {"a.b.c.example.com", 1},
        {".example.com", -1}, /* a leading dot: no host name (hostname.h) */
        {"badexample.com", -1},
        {"example.com.evil", -1},
        {"example.co", -1},
        {"xample.com", -1},
        {"example.com..", -1},
        {"a.io", 2},
        {"A.IO.", 2},
        {"b.a.io", -1},
        {"aa.io", -1},
        {"b.org", 2},
        {"www.b.org", 2},
        {"wwwb.org", -1},
        {"b.or", -1},
        {"internal", 3},
        {"metadata.google.internal", 3},
        {"notinternal", -1},
        {"x", 4},
        {"X.", 4},
        {"xx", -1},
        {"a.x", -1},
        {"averyveryverylongname.net", 5},
        {"www.averyveryverylongname.net", 5},
        {"wwwaveryveryverylongname.net", -1},
        {"veryveryverylongname.net", -1},
        {"averyveryverylongname.ne", -1},
        {"exactly8.net", 6},
        {"abcdefgh", 6},
        {"a.abcdefgh", 6},
        {"aabcdefgh", -1},
        {"bcdefgh", -1},
        {"", -1},
        {".", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (MATCH(acl, .client = "127.0.0.1", .host = cases[i].host) != cases[i].rule)
            fail_msg("host \"%s\": want rule %d", cases[i].host, cases[i].rule);

    /* No host (an address request): host rules cannot match. */
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .host = NULL), -1);
    /* Longer than SOCKS allows: no host rule matches, a rule without hosts still does. */
    char huge[400];
    memset(huge, 'a', sizeof(huge) - 14);
    strcpy(huge + sizeof(huge) - 14, ".example.com");
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .host = huge), -1);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"127.0.0.1"}), 7);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .host = huge), 7);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .host = NULL), 7);
    acl_free(acl);
}

static void
test_users(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_DENY, .users = {"mallory"}), 0);
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .users = {"alice", "bob"}), 1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = "mallory"), 0);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = "alice"), 1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = "bob"), 1);
    /* Exact and case-sensitive. */
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = "Alice"), -1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = "alic"), -1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = "alice2"), -1);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = ""), -1);
    /* Not authenticated: never in a users list. */
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = NULL), -1);
    /* An empty users list matches anyone, authenticated or not. */
    assert_int_equal(ADD(acl, .action = ACL_ALLOW), 2);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = NULL), 2);
    assert_int_equal(MATCH(acl, .client = "127.0.0.1", .user = "carol"), 2);
    acl_free(acl);
}

/* Every condition of one rule must hold: break each in turn. */
static void
test_and(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    assert_int_equal(ADD(acl, .action = ACL_ALLOW, .from = {"192.0.2.0/24"},
                         .to = {"198.51.100.0/24"}, .hosts = {".example.com"},
                         .ports = {{443, 443}}, .n_ports = 1, .cmds = ACL_CMD_CONNECT,
                         .users = {"alice"}),
                     0);
    struct q ok = {.client = "192.0.2.1",
                   .cmd = ACL_CMD_CONNECT,
                   .user = "alice",
                   .host = "www.example.com",
                   .dest = "198.51.100.1",
                   .port = 443};
    assert_int_equal(match(acl, &ok), 0);
    struct q t;
    t = ok, t.client = "192.0.3.1";
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.cmd = ACL_CMD_UDP;
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.user = "bob";
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.user = NULL;
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.host = "www.example.org";
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.host = NULL;
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.dest = "198.51.101.1";
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.dest = NULL;
    assert_int_equal(match(acl, &t), -1);
    t = ok, t.port = 444;
    assert_int_equal(match(acl, &t), -1);
    acl_free(acl);
}

/* Offsets into the shared arrays stay right across many rules and array growth. */
static void
test_many_rules(void **state)
{
    (void)state;
    struct acl *acl = new_acl();
    char net[32], host[32], user[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(net, sizeof(net), "10.%d.%d.0/24", i / 256, i % 256);
        snprintf(host, sizeof(host), ".h%d.example", i);
        snprintf(user, sizeof(user), "u%d", i);
        assert_int_equal(ADD(acl, .action = (i % 2) ? ACL_ALLOW : ACL_DENY,
                             .to = {net, "2001:db8::/32"}, .hosts = {"a.b", host},
                             .ports = {{1, 1}, {(uint16_t)(i + 1000), (uint16_t)(i + 1000)}},
                             .n_ports = 2, .users = {"x", user}),
                         i);
    }
    assert_int_equal(acl_count(acl), 3000);
    for (int i = 0; i < 3000; i += 7) {
        char dest[32];
        snprintf(dest, sizeof(dest), "10.%d.%d.9", i / 256, i % 256);
        snprintf(host, sizeof(host), "www.h%d.example", i);
        snprintf(user, sizeof(user), "u%d", i);
        assert_int_equal(
            MATCH(acl, .host = host, .dest = dest, .user = user, .port = (uint16_t)(i + 1000)), i);
        assert_int_equal(last_action, (i % 2) ? ACL_ALLOW : ACL_DENY);
        assert_int_equal(
            MATCH(acl, .host = host, .dest = dest, .user = "u", .port = (uint16_t)(i + 1000)), -1);
    }
    acl_free(acl);
}

/* ---- randomised comparison with a reference matcher */

static uint64_t rng_state;

static uint32_t
rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

#define PICK(a) ((a)[rnd(sizeof(a) / sizeof((a)[0]))])

static const char *const pool_cidrs[] = {
    "10.0.0.0/8",     "10.1.0.0/16",         "10.1.2.3",
    "0.0.0.0/0",      "128.0.0.0/1",         "0.0.0.0/1",
    "192.168.0.0/16", "127.0.0.0/8",         "::/0",
    "2001:db8::/32",  "2001:db8::1",         "::1",
    "fe80::/10",      "::ffff:10.0.0.0/104", "::ffff:0:0/96",
    "8000::/1",       "2001:db8:0:1::/64",   "2001:db8::/96",
    "10.1.2.0/31",
};
static const char *const pool_rule_hosts[] = {
    "example.com", ".example.com", "EXAMPLE.org.",           ".com", "a.b.example.com", "x",
    ".x",          ".example.net", "longername.example.net",
};
static const char *const pool_users[] = {"alice", "bob", "Alice"};
static const struct acl_ports pool_ports[] = {
    {80, 80}, {0, 1023}, {1024, 65535}, {443, 443}, {0, 65535}};

static const char *const pool_addrs[] = {
    "10.1.2.3",         "10.2.0.1",        "192.168.1.1", "127.0.0.1",   "128.0.0.0",
    "127.255.255.255",  "255.255.255.255", "::1",         "2001:db8::1", "2001:db9::",
    "::ffff:10.1.2.3",  "::ffff:8.8.8.8",  "fe80::1",     "::",          "2001:db8:0:1::5",
    "2001:db8::ffff:1", "10.1.2.2",        NULL,
};
static const char *const pool_query_hosts[] = {
    "example.com",
    "www.example.com",
    "WWW.Example.COM.",
    "badexample.com",
    "example.org",
    "example.org.",
    "a.b.example.com",
    "b.example.com",
    "foo.com",
    "x",
    "X.",
    "a.x",
    "ax",
    "example.net",
    "longername.example.net",
    "ongername.example.net",
    "com",
    "",
    NULL,
};
static const char *const pool_query_users[] = {"alice", "bob", "ALICE", "alic", "", NULL};
static const uint16_t pool_query_ports[] = {0, 79, 80, 81, 443, 1023, 1024, 65535};
static const uint8_t pool_cmds[] = {ACL_CMD_CONNECT, ACL_CMD_BIND, ACL_CMD_UDP};

/* The reference: obvious code over text and bits, no precomputation. */
static void
ref_lower(const char *s, char *out)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    if (n && out[n - 1] == '.')
        n--;
    out[n] = '\0';
}

static bool
ref_host(const char *rule, const char *host)
{
    char r[300], h[300];
    ref_lower(rule, r);
    ref_lower(host, h);
    if (h[0] == '\0')
        return false;
    if (r[0] != '.')
        return strcmp(r, h) == 0;
    size_t rl = strlen(r), hl = strlen(h);
    if (strcmp(r + 1, h) == 0)
        return true;
    return hl >= rl && strcmp(h + hl - rl, r) == 0;
}

static bool
ref_in(const char *cidr_text, const char *addr_text)
{
    struct acl_cidr c = cidr(cidr_text);
    uint8_t a[16];
    int fam;
    if (!addr_text)
        return false;
    if (inet_pton(AF_INET, addr_text, a) == 1) {
        fam = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, addr_text, a), 1);
        fam = AF_INET6;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            memmove(a, a + 12, 4);
            fam = AF_INET;
        }
    }
    if (fam != c.family)
        return false;
    for (unsigned bit = 0; bit < c.prefix; bit++) {
        unsigned mask = 0x80u >> (bit % 8);
        if ((a[bit / 8] & mask) != (c.addr[bit / 8] & mask))
            return false;
    }
    return true;
}

static int
ref_match(const struct spec *rules, size_t n, const struct q *t)
{
    for (size_t i = 0; i < n; i++) {
        const struct spec *r = &rules[i];
        bool ok = r->cmds == 0 || (r->cmds & t->cmd);
        if (ok && r->n_ports) {
            bool any = false;
            for (size_t k = 0; k < r->n_ports; k++)
                any |= t->port >= r->ports[k].lo && t->port <= r->ports[k].hi;
            ok = any;
        }
        if (ok && r->from[0]) {
            bool any = false;
            for (size_t k = 0; r->from[k]; k++)
                any |= ref_in(r->from[k], t->client);
            ok = any;
        }
        if (ok && r->to[0]) {
            bool any = false;
            for (size_t k = 0; r->to[k]; k++)
                any |= ref_in(r->to[k], t->dest);
            ok = any;
        }
        if (ok && r->hosts[0]) {
            bool any = false;
            for (size_t k = 0; r->hosts[k] && t->host; k++)
                any |= ref_host(r->hosts[k], t->host);
            ok = any;
        }
        if (ok && r->users[0]) {
            bool any = false;
            for (size_t k = 0; r->users[k] && t->user; k++)
                any |= strcmp(r->users[k], t->user) == 0;
            ok = any;
        }
        if (ok)
            return (int)i;
    }
    return -1;
}

/* Each list empty half of the time, else 1..3 entries from its pool. */
static void
fill(const char **list, const char *const *pool, size_t n_pool)
{
    if (rnd(2))
        return;
    size_t n = 1 + rnd(3);
    for (size_t i = 0; i < n; i++)
        list[i] = pool[rnd((uint32_t)n_pool)];
}

#define FILL(list, pool) fill((list), (pool), sizeof(pool) / sizeof((pool)[0]))

static void
test_random(void **state)
{
    (void)state;
    enum { SETS = 300, RULES = 60, QUERIES = 400 };
    static struct spec rules[RULES];
    const char *seed_env = getenv("TEST_ACL_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : 0;
    if (seed == 0) /* xorshift stays at 0 */
        seed = 0x9e3779b97f4a7c15u;
    rng_state = seed;
    long matched = 0;

    for (int s = 0; s < SETS; s++) {
        struct acl *acl = new_acl();
        size_t n = 1 + rnd(RULES);
        for (size_t i = 0; i < n; i++) {
            struct spec *r = &rules[i];
            memset(r, 0, sizeof(*r));
            r->action = rnd(2) ? ACL_ALLOW : ACL_DENY;
            FILL(r->from, pool_cidrs);
            FILL(r->to, pool_cidrs);
            FILL(r->hosts, pool_rule_hosts);
            FILL(r->users, pool_users);
            r->n_ports = rnd(2) ? 0 : 1 + rnd(2);
            for (size_t k = 0; k < r->n_ports; k++)
                r->ports[k] = PICK(pool_ports);
            r->cmds = rnd(2) ? 0 : (uint8_t)(1 + rnd(7));
            assert_int_equal(add(acl, r), (int)i);
        }
        for (int k = 0; k < QUERIES; k++) {
            struct q t = {
                .client = PICK(pool_addrs),
                .cmd = PICK(pool_cmds),
                .user = PICK(pool_query_users),
                .host = PICK(pool_query_hosts),
                .dest = PICK(pool_addrs),
                .port = PICK(pool_query_ports),
            };
            int want = ref_match(rules, n, &t);
            int got = match(acl, &t);
            if (got != want)
                fail_msg("seed %#llx set %d: client %s cmd %u user %s host %s dest %s port %u: "
                         "rule %d, reference %d",
                         (unsigned long long)seed, s, t.client ? t.client : "-", t.cmd,
                         t.user ? t.user : "-", t.host ? t.host : "-", t.dest ? t.dest : "-",
                         t.port, got, want);
            if (want >= 0) {
                assert_int_equal(last_action, rules[want].action);
                matched++;
            }
        }
        acl_free(acl);
    }
    /* The pools must make matches common, or the comparison proves little. */
    assert_true(matched > SETS * QUERIES / 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse), cmocka_unit_test(test_cidr_parse_bad),
        cmocka_unit_test(test_rule_flags), cmocka_unit_test(test_empty),
        cmocka_unit_test(test_add_index),  cmocka_unit_test(test_add_invalid),
        cmocka_unit_test(test_add_copies), cmocka_unit_test(test_first_match),
        cmocka_unit_test(test_cmds),       cmocka_unit_test(test_ports),
        cmocka_unit_test(test_from),       cmocka_unit_test(test_v6_prefixes),
        cmocka_unit_test(test_to),         cmocka_unit_test(test_v4mapped),
        cmocka_unit_test(test_hosts),      cmocka_unit_test(test_users),
        cmocka_unit_test(test_and),        cmocka_unit_test(test_many_rules),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
