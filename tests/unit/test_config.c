/*
 * test_config.c - the configuration file: every key, every kind of error with
 * its line, several errors at once, outputs untouched on error, default rules,
 * and the shipped files under conf/ (run from the repository root).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "acl.h"
#include "addr.h"
#include "config.h"
#include "egress.h"
#include "via.h"
#include "happy.h"
#include "options.h"
#include "opts.h"
#include "socks5.h"
#include "users.h"

static char path[64];

static void
write_conf(const char *text)
{
    strcpy(path, "/tmp/test_config.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static int
teardown(void **state)
{
    (void)state;
    if (path[0])
        unlink(path);
    path[0] = '\0';
    return 0;
}

/* Load text; returns config_load's result. err gets the messages. */
static int
load_text(const char *text, struct opts *o, struct acl **acl, char *err, size_t errlen)
{
    write_conf(text);
    return config_load(path, o, acl, err, errlen);
}

/* Load a text that must load, into o from the defaults; the file is removed after. */
static void
load_good(const char *text, struct opts *o, struct acl **acl)
{
    char err[4096];
    options_defaults(o);
    write_conf(text);
    assert_int_equal(config_load(path, o, acl, err, sizeof(err)), 0);
    unlink(path);
    path[0] = '\0';
}

/* want: the expected err, with '@' standing for the file's path. */
static void
assert_errors(const char *err, const char *want)
{
    char full[8192];
    size_t n = 0;
    for (const char *p = want; *p && n + sizeof(path) < sizeof(full); p++) {
        if (*p == '@') {
            strcpy(full + n, path);
            n += strlen(path);
        } else {
            full[n++] = *p;
        }
    }
    full[n] = '\0';
    assert_string_equal(err, full);
}

/* Load a text that must fail with exactly want; checks outputs are untouched. */
static void
load_bad(const char *text, const char *want)
{
    struct opts o, before;
    struct acl *sentinel = (struct acl *)&before, *acl = sentinel;
    char err[8192];
    options_defaults(&o);
    memcpy(&before, &o, sizeof(o));
    assert_int_equal(load_text(text, &o, &acl, err, sizeof(err)), -1);
    assert_errors(err, want);
    assert_memory_equal(&o, &before, sizeof(o));
    assert_ptr_equal(acl, sentinel);
    unlink(path);
    path[0] = '\0';
}

static union sockaddr_inx
sa(const char *s)
{
    struct sockaddr_storage ss;
    union sockaddr_inx a;
    assert_int_equal(addr_parse(s, 0, &ss), 0);
    memcpy(&a, &ss, sizeof(a));
    return a;
}

static const char *
text(const struct sockaddr_storage *ss)
{
    static char buf[ADDR_STRLEN];
    return addr_format((const struct sockaddr *)ss, buf, sizeof(buf));
}

/* acl_match for one query; returns the rule index matched (-1: none), *allow the action. */
static int
match(const struct acl *acl, const char *client, uint8_t cmd, const char *user, const char *host,
      const char *dest, uint16_t port, bool *allow)
{
    union sockaddr_inx c = sa(client), d;
    struct acl_query q = {.client = &c, .cmd = cmd, .user = user, .host = host, .port = port};
    int rule = -2;
    if (dest) {
        d = sa(dest);
        q.dest = &d;
    }
    *allow = acl_match(acl, &q, &rule) == ACL_ALLOW;
    return rule;
}

static void
assert_allowed(const struct acl *acl, const char *client, uint8_t cmd, const char *user,
               const char *host, const char *dest, uint16_t port, int want_rule)
{
    bool allow;
    assert_int_equal(match(acl, client, cmd, user, host, dest, port, &allow), want_rule);
    assert_true(allow);
}

static void
assert_denied(const struct acl *acl, const char *client, uint8_t cmd, const char *user,
              const char *host, const char *dest, uint16_t port, int want_rule)
{
    bool allow;
    assert_int_equal(match(acl, client, cmd, user, host, dest, port, &allow), want_rule);
    assert_false(allow);
}

/* ---- good files */

static const char all_keys[] =
    "# every key\n"
    "listen = [\"0.0.0.0:1081\", \"[::]:1081\"];\n"
    "shards = 4;\n"
    "relay = \"copy\";\n"
    "handshake_timeout = 5;\n"
    "connect_timeout = 7;\n"
    "idle_timeout = 0;\n"
    "write_timeout = 30;\n"
    "bind_timeout = 60;\n"
    "drain_timeout = 45;\n"
    "max_conns = 100000;\n"
    "resolvers = [\"1.1.1.1\", \"[2606:4700::1111]:5353\", \"9.9.9.9:5353\"];\n"
    "pipe_size = 1048576;\n"
    "buf_size = 16384;\n"
    "bufs = 4096;\n"
    "auth = \"password\";\n"
    "users = \"/etc/ringsocks/users\";\n"
    "auth_fail_budget = 5;\n"
    "socks4 = \"off\";\n"
    "bind_ports = \"40000-40999\";\n"
    "udp_ports = \"50000-50999\";\n"
    "udp_advertise = \"203.0.113.7\";\n"
    "access_log = \"/var/log/ringsocks/access.log\";\n"
    "log_format = \"json\";\n"
    "admin = \"[::1]:9180\";\n"
    "admin_hosts = [\"node1.example\", \"Prom-2.example\"];\n"
    "user = \"nobody\";\n"
    "group = \"nogroup\";\n"
    "close_removed_users = false;\n"
    "close_denied_on_reload = true;\n"
    "keepalive_idle = 45;\n"
    "keepalive_interval = 9;\n"
    "keepalive_count = 3;\n"
    "tcp_user_timeout = 33;\n"
    "client_max_handshakes = 7;\n"
    "client_max_binds = 0;\n"
    "client_max_udp = 12;\n"
    "rules = (\n"
    "  { action = \"deny\";  to = [\"10.0.0.0/8\", \"169.254.0.0/16\"]; },\n"
    "  { action = \"deny\";  hosts = [\".internal\", \"metadata.google.internal\"]; },\n"
    "  { action = \"allow\"; from = [\"127.0.0.0/8\", \"::1\"];\n"
    "    ports = [\"80\", \"443\", \"8000-8999\"];\n"
    "    commands = [\"connect\", \"udp\"]; users = [\"alice\"]; }\n"
    ");\n";

static void
test_all_keys(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[1024];
    options_defaults(&o);
    assert_int_equal(load_text(all_keys, &o, &acl, err, sizeof(err)), 0);
    assert_string_equal(err, "");

    assert_int_equal(o.n_listen, 2);
    assert_string_equal(text(&o.listen[0]), "0.0.0.0:1081");
    assert_string_equal(text(&o.listen[1]), "[::]:1081");
    assert_int_equal(o.shards, 4);
    assert_int_equal(o.relay, RELAY_COPY);
    assert_int_equal(o.handshake_timeout_s, 5);
    assert_int_equal(o.connect_timeout_s, 7);
    assert_int_equal(o.idle_timeout_s, 0);
    assert_int_equal(o.write_timeout_s, 30);
    assert_int_equal(o.bind_timeout_s, 60);
    assert_int_equal(o.drain_timeout_s, 45);
    assert_int_equal(o.max_conns, 100000);
    assert_string_equal(o.resolvers, "1.1.1.1:53,[2606:4700::1111]:5353,9.9.9.9:5353");
    assert_int_equal(o.pipe_size, 1048576);
    assert_int_equal(o.buf_size, 16384);
    assert_int_equal(o.buf_count, 4096);
    assert_string_equal(o.auth, "password");
    assert_string_equal(o.users_file, "/etc/ringsocks/users");
    assert_int_equal(o.auth_fail_budget, 5);
    assert_int_equal(o.socks4, SOCKS4_OFF);
    assert_int_equal(o.bind_port_lo, 40000);
    assert_int_equal(o.bind_port_hi, 40999);
    assert_int_equal(o.udp_port_lo, 50000);
    assert_int_equal(o.udp_port_hi, 50999);
    assert_string_equal(text(&o.udp_advertise), "203.0.113.7:0");
    assert_string_equal(o.access_log, "/var/log/ringsocks/access.log");
    assert_int_equal(o.log_format, LOG_JSON);
    assert_string_equal(text(&o.admin), "[::1]:9180");
    assert_string_equal(o.admin_hosts, "node1.example,prom-2.example"); /* normal form */
    assert_string_equal(o.user, "nobody");
    assert_string_equal(o.group, "nogroup");
    assert_false(o.close_removed_users);
    assert_true(o.close_denied);
    assert_int_equal(o.keepalive_idle_s, 45);
    assert_int_equal(o.keepalive_interval_s, 9);
    assert_int_equal(o.keepalive_count, 3);
    assert_int_equal(o.user_timeout_s, 33);
    assert_int_equal(o.client_max_handshakes, 7);
    assert_int_equal(o.client_max_binds, 0);
    assert_int_equal(o.client_max_udp, 12);

    assert_non_null(acl);
    assert_int_equal(acl_count(acl), 3);
    /* First match wins: the deny rules come before the allow. */
    assert_denied(acl, "127.0.0.1:5000", ACL_CMD_CONNECT, "alice", NULL, "10.1.2.3:80", 80, 0);
    assert_denied(acl, "127.0.0.1:5000", ACL_CMD_CONNECT, "alice", "db.prod.internal",
                  "93.184.216.34:443", 443, 1);
    assert_denied(acl, "127.0.0.1:5000", ACL_CMD_CONNECT, "alice", "metadata.google.internal", NULL,
                  80, 1);
    assert_allowed(acl, "127.0.0.1:5000", ACL_CMD_CONNECT, "alice", "example.com",
                   "93.184.216.34:8080", 8080, 2);
    assert_allowed(acl, "[::1]:5000", ACL_CMD_UDP, "alice", NULL, "93.184.216.34:443", 443, 2);
    /* No rule matched: denied. */
    assert_denied(acl, "127.0.0.1:5000", ACL_CMD_CONNECT, "bob", NULL, "93.184.216.34:80", 80, -1);
    assert_denied(acl, "127.0.0.1:5000", ACL_CMD_CONNECT, "alice", NULL, "93.184.216.34:22", 22,
                  -1);
    assert_denied(acl, "127.0.0.1:5000", ACL_CMD_BIND, "alice", NULL, "93.184.216.34:80", 80, -1);
    assert_denied(acl, "192.0.2.1:5000", ACL_CMD_CONNECT, "alice", NULL, "93.184.216.34:80", 80,
                  -1);
    acl_free(acl);
}

/* A key absent from the file keeps the value the caller had (the command-line defaults). */
static void
test_absent_keys_keep_defaults(void **state)
{
    (void)state;
    struct opts o, want;
    struct acl *acl = NULL;
    char err[256];
    options_defaults(&o);
    strcpy(o.users_file, "/from/the/command/line");
    addr_parse("10.0.0.1:53", 53, &o.listen[0]);
    o.n_listen = 1;
    strcpy(o.resolvers, "10.0.0.53:53");
    memcpy(&want, &o, sizeof(o));
    want.shards = 3;
    assert_int_equal(load_text("shards = 3;   # only this\n", &o, &acl, err, sizeof(err)), 0);
    assert_memory_equal(&o, &want, sizeof(o));
    assert_string_equal(o.users_file, "/from/the/command/line");
    /* Below idle_timeout by design: a peer that reads nothing must not hold memory for hours. */
    assert_int_equal(o.write_timeout_s, 120);
    assert_int_equal(acl_count(acl), 1);
    acl_free(acl);
}

static void
test_default_acl(void **state)
{
    (void)state;
    struct acl *acl = config_default_acl();
    assert_non_null(acl);
    assert_int_equal(acl_count(acl), 1);
    assert_allowed(acl, "127.0.0.1:1", ACL_CMD_CONNECT, NULL, NULL, "93.184.216.34:80", 80, 0);
    assert_allowed(acl, "127.255.255.254:1", ACL_CMD_BIND, NULL, NULL, NULL, 80, 0);
    assert_allowed(acl, "[::1]:1", ACL_CMD_UDP, "alice", "example.com", NULL, 53, 0);
    assert_allowed(acl, "[::ffff:127.0.0.1]:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 80, 0);
    assert_denied(acl, "10.0.0.1:1", ACL_CMD_CONNECT, NULL, NULL, "93.184.216.34:80", 80, -1);
    assert_denied(acl, "192.0.2.7:1", ACL_CMD_CONNECT, "alice", NULL, NULL, 80, -1);
    assert_denied(acl, "[::2]:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 80, -1);
    assert_denied(acl, "[2001:db8::1]:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 80, -1);
    acl_free(acl);
}

/* No rules list: the default rules. An empty one: no rule, so everything is denied. */
static void
test_rules_absent_or_empty(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[256];
    options_defaults(&o);
    assert_int_equal(load_text("", &o, &acl, err, sizeof(err)), 0);
    assert_int_equal(acl_count(acl), 1);
    assert_allowed(acl, "127.0.0.1:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 80, 0);
    assert_denied(acl, "198.51.100.1:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 80, -1);
    acl_free(acl);
    unlink(path);

    acl = NULL;
    assert_int_equal(load_text("rules = ();\n", &o, &acl, err, sizeof(err)), 0);
    assert_int_equal(acl_count(acl), 0);
    assert_denied(acl, "127.0.0.1:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 80, -1);
    acl_free(acl);
    unlink(path);

    acl = NULL;
    assert_int_equal(load_text("rules = [];\n", &o, &acl, err, sizeof(err)), 0);
    assert_int_equal(acl_count(acl), 0);
    acl_free(acl);
}

/* A single value stands for a list of one; ports as integers or strings. */
static void
test_scalar_lists(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[256];
    options_defaults(&o);
    o.n_listen = 2;
    assert_int_equal(load_text("listen = \"[::1]:1080\";\n"
                               "resolvers = \"192.0.2.53\";\n"
                               "rules = ( { action = \"allow\"; from = \"::1\"; ports = 443;\n"
                               "            commands = \"bind\"; users = \"bob\";\n"
                               "            hosts = \"Example.COM.\"; to = \"2001:db8::/32\"; },\n"
                               "          { action = \"allow\"; ports = (\"1-1024\", 8080); } );\n",
                               &o, &acl, err, sizeof(err)),
                     0);
    assert_int_equal(o.n_listen, 1);
    assert_string_equal(text(&o.listen[0]), "[::1]:1080");
    assert_string_equal(o.resolvers, "192.0.2.53:53");
    assert_int_equal(acl_count(acl), 2);
    assert_allowed(acl, "[::1]:1", ACL_CMD_BIND, "bob", "example.com", "[2001:db8::5]:443", 443, 0);
    assert_allowed(acl, "[::1]:1", ACL_CMD_CONNECT, "bob", "example.com", "[2001:db8::5]:443", 443,
                   1);
    assert_allowed(acl, "[::1]:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 8080, 1);
    assert_denied(acl, "[::1]:1", ACL_CMD_CONNECT, NULL, NULL, NULL, 8081, -1);
    acl_free(acl);
}

/* admin = "off"; an empty resolvers list means /etc/resolv.conf again. */
static void
test_off_values(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[256];
    options_defaults(&o);
    strcpy(o.resolvers, "10.0.0.53:53");
    assert_int_equal(load_text("admin = \"off\";\nresolvers = [];\naccess_log = \"off\";\n", &o,
                               &acl, err, sizeof(err)),
                     0);
    assert_int_equal(o.admin.ss_family, AF_UNSPEC);
    assert_string_equal(o.resolvers, "");
    assert_string_equal(o.access_log, "off");
    acl_free(acl);
}

/*
 * A deny rule that covers one loopback family but not the other loads, with a warning:
 * localhost resolves to 127.0.0.1 and ::1, and the one not denied is tried next.
 */
static void
test_loopback_half_warning(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[4096];

    options_defaults(&o);
    assert_int_equal(load_text("rules = (\n"
                               "  { action = \"deny\"; to = [\"127.0.0.1\"]; },\n"
                               "  { action = \"deny\"; to = [\"::/0\"]; ports = [25]; },\n"
                               "  { action = \"deny\"; to = [\"127.0.0.0/8\", \"::1\"]; },\n"
                               "  { action = \"deny\"; to = [\"10.0.0.0/8\"]; },\n"
                               "  { action = \"allow\"; to = [\"127.0.0.1\"]; }\n"
                               ");\n",
                               &o, &acl, err, sizeof(err)),
                     0);
    assert_errors(err, "@:2: warning: rule 1 denies 127.0.0.1 but not ::1: names such as "
                       "localhost resolve to both, and the other one is tried; deny "
                       "\"127.0.0.0/8\" and \"::1\" together\n"
                       "@:3: warning: rule 2 denies ::1 but not 127.0.0.1: names such as "
                       "localhost resolve to both, and the other one is tried; deny "
                       "\"127.0.0.0/8\" and \"::1\" together");
    assert_int_equal(acl_count(acl), 5);
    acl_free(acl);
}

/* The shipped files load; the egress example keeps tunnels off internal destinations. */
static void
test_shipped_configs(void **state)
{
    (void)state;
    struct opts o, d;
    struct acl *acl = NULL;
    char err[4096];

    options_defaults(&o);
    options_defaults(&d);
    assert_int_equal(config_load("conf/ringsocks.conf", &o, &acl, err, sizeof(err)), 0);
    assert_string_equal(err, ""); /* no warning either */
    /* The shipped file states every default, listen included. */
    assert_int_equal(o.n_listen, 1);
    assert_string_equal(text(&o.listen[0]), "127.0.0.1:1080");
    assert_memory_equal(&o, &d, sizeof(o));
    assert_int_equal(acl_count(acl), 1);
    assert_allowed(acl, "127.0.0.1:1", ACL_CMD_CONNECT, NULL, NULL, "93.184.216.34:80", 80, 0);
    assert_allowed(acl, "[::1]:1", ACL_CMD_CONNECT, NULL, NULL, "93.184.216.34:80", 80, 0);
    assert_denied(acl, "192.0.2.1:1", ACL_CMD_CONNECT, NULL, NULL, "93.184.216.34:80", 80, -1);
    acl_free(acl);

    acl = NULL;
    options_defaults(&o);
    assert_int_equal(config_load("conf/egress.conf", &o, &acl, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_string_equal(text(&o.listen[0]), "192.0.2.10:1080");
    assert_string_equal(o.auth, "password");
    assert_int_equal(o.socks4, SOCKS4_OFF);
    assert_string_equal(o.users_file, "/etc/ringsocks/users");
    assert_string_equal(o.access_log, "/var/log/ringsocks/access.log");
    assert_string_equal(text(&o.admin), "127.0.0.1:9180");
    static const char *const internal[] = {
        "0.0.0.0:80",
        "10.1.2.3:80",
        "100.64.0.1:80",
        "127.0.0.1:80",
        "169.254.169.254:80",
        "172.16.0.1:80",
        "172.31.255.255:80",
        "192.168.1.1:80",
        "224.0.0.1:80",
        "239.255.255.250:80",
        "255.255.255.255:80",
        "[::1]:80",
        "[::]:80",
        "[fc00::1]:80",
        "[fd12:3456::1]:80",
        "[fe80::1]:80",
        "[ff02::1]:80",
        "[::ffff:10.0.0.1]:80",
        "[::ffff:169.254.169.254]:80",
        "[2002:a00:1::1]:80",
        "[fd00:ec2::254]:80",
        "168.63.129.16:80",
    };
    for (size_t i = 0; i < sizeof(internal) / sizeof(internal[0]); i++)
        assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", "rebind.example",
                      internal[i], 80, 0);
    assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", NULL, "192.0.2.10:1080", 1080,
                  0);
    assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", "metadata.google.internal", NULL,
                  80, 2);
    assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", "Metadata.Google.Internal.",
                  "93.184.216.34:80", 80, 2);
    assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", "printer.local", NULL, 631, 2);
    static const uint16_t smtp[] = {25, 465, 587};
    for (size_t i = 0; i < sizeof(smtp) / sizeof(smtp[0]); i++)
        assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", "mx.example",
                      "93.184.216.34:0", smtp[i], 3);
    assert_allowed(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", "example.com",
                   "93.184.216.34:443", 443, 4);
    assert_allowed(acl, "[2001:4860::1]:1", ACL_CMD_CONNECT, "bob", NULL,
                   "[2606:2800:220:1::1]:443", 443, 4);
    assert_denied(acl, "198.51.100.7:1", ACL_CMD_BIND, "alice", NULL, "93.184.216.34:443", 443, -1);
    acl_free(acl);

    /* conf/scraping.conf: a global pool of both families, sessions, a rule's family. */
    acl = NULL;
    options_defaults(&o);
    assert_int_equal(config_load("conf/scraping.conf", &o, &acl, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_string_equal(o.egress, "2001:db8:1::/64,192.0.2.10");
    assert_true(o.username_params);
    assert_int_equal(o.session_ttl_s, 600);
    assert_int_equal(o.session_ttl_max_s, 3600);
    assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", NULL, "169.254.169.254:80", 80,
                  0);
    assert_allowed(acl, "198.51.100.7:1", ACL_CMD_CONNECT, "alice", NULL, "[2606:2800::1]:443", 443,
                   1);
    const struct egress_rule *er = acl_rule_data(acl, 1);
    assert_non_null(er);
    assert_int_equal(er->family, HAPPY_PREFER_IPV6);
    assert_null(acl_rule_data(acl, 0));
    acl_free(acl);
}

/* A rule's egress keys become its struct egress_rule; listener groups keep their settings. */
static void
test_egress_keys(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[4096];
    options_defaults(&o);
    write_conf(
        "listen = ( \"127.0.0.1:1080\",\n"
        "  { address = \"198.51.100.7:1080\"; egress = \"same\"; },\n"
        "  { address = \"[2001:db8::7]:1080\"; egress = [\"2001:db8:1::/64\"]; } );\n"
        "rules = ( { action = \"allow\"; egress = [\"203.0.113.0/24\", \"2001:db8:2::/64\"];\n"
        "  egress_fallback = true; family = \"ipv4\"; mark = 42; keepalive = false;\n"
        "  user_timeout = 30; fastopen = true; } );\n");
    assert_int_equal(config_load(path, &o, &acl, err, sizeof(err)), 0);
    unlink(path);
    path[0] = '\0';
    assert_int_equal(o.n_listen, 3);
    assert_int_equal(o.n_listen_out, 2);
    assert_string_equal(text(&o.listen_out[0].addr), "198.51.100.7:1080");
    assert_string_equal(o.listen_out[0].egress, "same");
    assert_string_equal(o.listen_out[1].egress, "2001:db8:1::/64");
    const struct egress_rule *er = acl_rule_data(acl, 0);
    assert_non_null(er);
    assert_true(egress_pool_has(er->pool, AF_INET));
    assert_true(egress_pool_has(er->pool, AF_INET6));
    assert_int_equal(er->fallback, 1);
    assert_int_equal(er->family, HAPPY_IPV4);
    assert_true(er->has_mark);
    assert_int_equal(er->mark, 42);
    assert_int_equal(er->keepalive, 0);
    assert_int_equal(er->user_timeout_s, 30);
    assert_int_equal(er->fastopen, 1);
    acl_free(acl);

    load_bad("rules = ( { action = \"deny\"; egress = [\"203.0.113.7\"]; } );\n",
             "@:1: rule 1: egress: only an allow rule admits tunnels to send somewhere");
    load_bad("rules = ( { action = \"allow\"; egress = [\"2001:db8::1/64\"]; } );\n",
             "@:1: rule 1: egress: '2001:db8::1/64' is not an address or a prefix "
             "(NETWORK/LENGTH with the host bits zero)");
    load_bad("listen = ( { address = \"127.0.0.1:1080\"; egres = \"same\"; } );\n",
             "@:1: listen: unknown key 'egres' in a listener (address, egress, proxy_protocol, "
             "from, mode, auth)");
    load_bad("egress = [\"203.0.113.1/24\"];\n",
             "@:1: egress: '203.0.113.1/24' is not an address or a prefix (NETWORK/LENGTH with "
             "the host bits zero)");
}

/* via: parents checked one by one at their own lines, kept on the rule in order. */
static void
test_via_keys(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[4096];
    options_defaults(&o);
    write_conf("rules = ( { action = \"allow\";\n"
               "  via = [\"socks5://u:p@192.0.2.1:1080\", \"http://[2001:db8::1]:3128\",\n"
               "         \"socks4a://localhost\"]; },\n"
               "  { action = \"allow\"; } );\n");
    assert_int_equal(config_load(path, &o, &acl, err, sizeof(err)), 0);
    unlink(path);
    path[0] = '\0';
    const struct egress_rule *er = acl_rule_data(acl, 0);
    assert_non_null(er);
    assert_non_null(er->via);
    assert_int_equal(via_count(er->via), 3);
    assert_string_equal(via_label(er->via, 0), "socks5://192.0.2.1:1080");
    assert_string_equal(via_label(er->via, 1), "http://[2001:db8::1]:3128");
    assert_string_equal(via_label(er->via, 2), "socks4a://127.0.0.1:1080");
    er = acl_rule_data(acl, 1);
    assert_true(!er || !er->via);
    acl_free(acl);

    load_bad("rules = ( { action = \"deny\"; via = \"socks5://192.0.2.1:1080\"; } );\n",
             "@:1: rule 1: via: only an allow rule admits tunnels to send somewhere");
    load_bad("rules = ( { action = \"allow\";\n"
             "  via = [\"socks5://192.0.2.1:1080\",\n"
             "         \"socks5://proxy.example:1080\",\n"
             "         \"ftp://192.0.2.1\",\n"
             "         \"socks4://u:p%40x:y\"]; } );\n",
             "@:3: rule 1: via: parent proxy.example is not an IP address (names are not resolved: "
             "write the address)\n"
             "@:4: rule 1: via: unknown scheme: ftp://192.0.2.1\n"
             "@:5: rule 1: via: bad port (the URL is not repeated: it may hold a password)");
    load_bad("rules = ( { action = \"allow\"; via = [7]; } );\n",
             "@:1: rule 1: via: expected a string, not an integer");
    load_bad("rules = ( { action = \"allow\"; via = []; } );\n",
             "@:1: rule 1: via: 0 parents; a rule names 1 to 8");
    load_bad("rules = ( { action = \"allow\"; commands = [\"udp\", \"bind\"];\n"
             "  via = \"socks5://192.0.2.1:1080\"; } );\n",
             "@:2: rule 1: via: parents carry CONNECT only, and the rule's commands do not include "
             "\"connect\" (it would only refuse what it matches)");
}

/*
 * A PROXY listener: proxy_protocol = true with its balancers in from (required: no
 * default "any"), kept with the group and written back by options_format().
 */
static void
test_proxy_keys(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char shown[4096];
    load_good("listen = ( \"127.0.0.1:1080\",\n"
              "  { address = \"127.0.0.1:1081\"; proxy_protocol = true;\n"
              "    from = [\"127.0.0.1\", \"10.0.0.0/8\"]; },\n"
              "  { address = \"127.0.0.1:1082\"; proxy_protocol = true; from = \"::1\";\n"
              "    egress = \"same\"; },\n"
              "  { address = \"127.0.0.1:1083\"; proxy_protocol = false; } );\n",
              &o, &acl);
    assert_int_equal(o.n_listen, 4);
    assert_int_equal(o.n_listen_out, 3);
    assert_true(o.listen_out[0].proxy_protocol);
    assert_string_equal(o.listen_out[0].from, "127.0.0.1,10.0.0.0/8");
    assert_string_equal(o.listen_out[0].egress, "");
    assert_true(o.listen_out[1].proxy_protocol);
    assert_string_equal(o.listen_out[1].from, "::1");
    assert_string_equal(o.listen_out[1].egress, "same");
    assert_false(o.listen_out[2].proxy_protocol);
    assert_true(options_format(options_find("listen"), &o, shown, sizeof(shown)));
    assert_string_equal(shown, "(\"127.0.0.1:1080\", { address = \"127.0.0.1:1081\"; "
                               "proxy_protocol = true; from = [\"127.0.0.1\", \"10.0.0.0/8\"]; }, "
                               "{ address = \"127.0.0.1:1082\"; egress = \"same\"; "
                               "proxy_protocol = true; from = [\"::1\"]; }, "
                               "{ address = \"127.0.0.1:1083\"; })");
    acl_free(acl);

    load_bad("listen = ( { address = \"127.0.0.1:1081\"; proxy_protocol = true; } );\n",
             "@:1: listen: proxy_protocol = true needs from = [ ... ], the load balancers' "
             "addresses (no default: any other peer could claim any client address)");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; from = [\"127.0.0.1\"]; } );\n",
             "@:1: listen: from is for proxy_protocol = true listeners only");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; proxy_protocol = \"yes\";\n"
             "  from = [\"127.0.0.1\"]; } );\n",
             "@:1: listen: proxy_protocol: expected true or false, not a string");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; proxy_protocol = true;\n"
             "  from = [ ]; } );\n",
             "@:2: listen: from: an empty list (name the load balancers' addresses)");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; proxy_protocol = true;\n"
             "  from = [\"127.0.0.1\",\n \"10.0.0.1/8\"]; } );\n",
             "@:3: listen: from: '10.0.0.1/8' is not an address or network (\"10.0.0.0/8\")");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; proxy_protocol = true;\n"
             "  from = [ 1 ]; } );\n",
             "@:2: listen: from: expected a string, not an integer");
}

/* mode = "transparent": a listener of redirected connections, alone of its kind. */
static void
test_mode_keys(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char shown[4096];
    load_good("listen = ( \"127.0.0.1:1080\",\n"
              "  { address = \"0.0.0.0:1081\"; mode = \"transparent\"; },\n"
              "  { address = \"[::]:1081\"; mode = \"transparent\"; auth = \"none\"; },\n"
              "  { address = \"127.0.0.1:1082\"; mode = \"socks\"; } );\n",
              &o, &acl);
    assert_int_equal(o.n_listen, 4);
    assert_int_equal(o.n_listen_out, 3);
    assert_true(o.listen_out[0].transparent);
    assert_true(o.listen_out[1].transparent);
    assert_false(o.listen_out[2].transparent);
    assert_false(o.listen_out[0].proxy_protocol);
    assert_false(o.listen_out[0].auth_none);
    assert_true(o.listen_out[1].auth_none);
    assert_true(options_format(options_find("listen"), &o, shown, sizeof(shown)));
    assert_string_equal(shown, "(\"127.0.0.1:1080\", { address = \"0.0.0.0:1081\"; "
                               "mode = \"transparent\"; }, { address = \"[::]:1081\"; "
                               "mode = \"transparent\"; auth = \"none\"; }, "
                               "{ address = \"127.0.0.1:1082\"; })");
    acl_free(acl);

    load_bad("listen = ( { address = \"127.0.0.1:1081\";\n  mode = \"redirect\"; } );\n",
             "@:2: listen: mode: expected \"socks\" or \"transparent\", not \"redirect\"");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; mode = 1; } );\n",
             "@:1: listen: mode: expected a string, not an integer");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; mode = \"transparent\";\n"
             "  proxy_protocol = true; from = [\"127.0.0.1\"]; } );\n",
             "@:2: listen: proxy_protocol is for SOCKS listeners behind a balancer, not mode = "
             "\"transparent\" (its peer is the client itself)");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; mode = \"transparent\";\n"
             "  egress = \"same\"; } );\n",
             "@:2: listen: egress is not for mode = \"transparent\" listeners (under tproxy the "
             "listener cannot be told from the target): give egress in a rule or globally");
    load_bad("listen = ( { address = \"127.0.0.1:1081\";\n  auth = \"none\"; } );\n",
             "@:2: listen: auth is for mode = \"transparent\" listeners (a SOCKS client "
             "authenticates itself when auth = \"password\")");
    load_bad("listen = ( { address = \"127.0.0.1:1081\"; mode = \"transparent\";\n"
             "  auth = \"password\"; } );\n",
             "@:2: listen: auth: expected \"none\", not \"password\"");
}

/* Address sets: built-in and the file's own, defined after the rules that name them. */
static void
test_address_sets(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[4096];

    options_defaults(&o);
    assert_int_equal(load_text("rules = (\n"
                               "  { action = \"deny\"; to = [\"@loopback\", \"@metadata\"]; },\n"
                               "  { action = \"allow\"; from = \"@office\"; to = \"@private\"; },\n"
                               "  { action = \"allow\"; from = [\"192.0.2.0/24\", \"@lab\"]; }\n"
                               ");\n"
                               "address_sets = {\n"
                               "  office = [\"198.51.100.0/24\", \"2001:db8:5::/48\", \"@lab\"];\n"
                               "  lab = \"203.0.113.0/25\";\n"
                               "};\n",
                               &o, &acl, err, sizeof(err)),
                     0);
    assert_string_equal(err, ""); /* @loopback holds both families: no warning */
    assert_int_equal(acl_count(acl), 3);
    assert_denied(acl, "192.0.2.1:1", ACL_CMD_CONNECT, NULL, NULL, "127.0.0.1:80", 80, 0);
    assert_denied(acl, "192.0.2.1:1", ACL_CMD_CONNECT, NULL, NULL, "[::1]:80", 80, 0);
    assert_denied(acl, "192.0.2.1:1", ACL_CMD_CONNECT, NULL, NULL, "[::ffff:127.0.0.1]:80", 80, 0);
    assert_denied(acl, "192.0.2.1:1", ACL_CMD_CONNECT, NULL, NULL, "169.254.169.254:80", 80, 0);
    assert_allowed(acl, "198.51.100.7:1", ACL_CMD_CONNECT, NULL, NULL, "10.1.2.3:80", 80, 1);
    assert_allowed(acl, "[2001:db8:5::1]:1", ACL_CMD_CONNECT, NULL, NULL, "[fd00::1]:80", 80, 1);
    assert_allowed(acl, "203.0.113.9:1", ACL_CMD_CONNECT, NULL, NULL, "10.1.2.3:80", 80, 1);
    /* 8.8.8.8 is not in @private: rule 2 does not match, rule 3 does for lab's clients only. */
    assert_allowed(acl, "203.0.113.9:1", ACL_CMD_CONNECT, NULL, NULL, "8.8.8.8:80", 80, 2);
    assert_denied(acl, "198.51.100.7:1", ACL_CMD_CONNECT, NULL, NULL, "8.8.8.8:80", 80, -1);
    assert_denied(acl, "203.0.113.200:1", ACL_CMD_CONNECT, NULL, NULL, "10.1.2.3:80", 80, -1);
    acl_free(acl);
}

/*
 * Load a text that must fail with exactly want, where "F" stands for the
 * file's path (load_bad's '@' is a set's sigil here).
 */
static void
load_bad_sets(const char *text, const char *want)
{
    struct opts o;
    struct acl *acl = NULL;
    char err[8192], got[8192];
    options_defaults(&o);
    assert_int_equal(load_text(text, &o, &acl, err, sizeof(err)), -1);
    assert_null(acl);
    size_t n = 0, plen = strlen(path);
    for (const char *p = err; *p && n + 2 < sizeof(got);)
        if (strncmp(p, path, plen) == 0) {
            got[n++] = 'F';
            p += plen;
        } else {
            got[n++] = *p++;
        }
    got[n] = '\0';
    assert_string_equal(got, want);
    unlink(path);
    path[0] = '\0';
}

/* Every problem of a set at the line of the member (or set) it is about, once. */
static void
test_bad_address_sets(void **state)
{
    (void)state;
    load_bad_sets("address_sets = {\n"
                  "  office = [\"198.51.100.0/24\",\n"
                  "            \"@lab\"];\n"
                  "  lab = [\"203.0.113.0/25\", \"@office\"];\n"
                  "  private = [\"10.0.0.0/8\"];\n"
                  "  bad = [\"10.0.0.1/8\", \"@nosuch\"];\n"
                  "  empty = [];\n"
                  "  num = [1];\n"
                  "  group = { a = 1; };\n"
                  "};\n"
                  "rules = (\n"
                  "  { action = \"deny\"; to = [\"@loopback\", \"@ofice\"]; },\n"
                  "  { action = \"allow\"; from = [\"@private\", \"@bad\"]; }\n"
                  ");\n",
                  "F:5: address_sets: 'private' is the name of a built-in set (@private): choose "
                  "another\n"
                  "F:8: address_sets: num: expected a string, not an integer\n"
                  "F:9: address_sets: group: expected a list of networks [ ... ], not a group { }\n"
                  "F:4: address_sets: lab: '@office' makes a cycle (office -> lab -> office)\n"
                  "F:6: address_sets: bad: '10.0.0.1/8' is neither \"@name\" nor an address or a "
                  "network with zero host bits (192.0.2.0/24, 2001:db8::/32)\n"
                  "F:6: address_sets: bad: '@nosuch' is no address set (built in: @special, "
                  "@private, @loopback, @metadata; others are defined in address_sets)\n"
                  "F:7: address_sets: empty: the set is empty (in a rule it would stand for no "
                  "condition, matching every address)\n"
                  "F:12: rule 1: to: '@ofice' is no address set (built in: @special, @private, "
                  "@loopback, @metadata; others are defined in address_sets)");
    load_bad_sets("address_sets = [\"10.0.0.0/8\"];\n",
                  "F:1: address_sets: expected a group of named lists { office = "
                  "[\"198.51.100.0/24\"]; }, not an array [ ]");
}

/* udp_source: "any" becomes the rule's ACL_RF_UDP_ANY_SOURCE flag; "control" is the default. */
static void
test_udp_source(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[1024];
    options_defaults(&o);
    assert_int_equal(
        load_text("rules = (\n"
                  "  { action = \"allow\"; from = \"100.64.0.0/10\"; udp_source = \"any\"; },\n"
                  "  { action = \"allow\"; from = \"192.0.2.0/24\"; udp_source = \"control\";\n"
                  "    commands = [\"udp\", \"connect\"]; },\n"
                  "  { action = \"allow\"; from = \"198.51.100.0/24\"; },\n"
                  "  { action = \"deny\"; udp_source = \"control\"; }\n"
                  ");\n",
                  &o, &acl, err, sizeof(err)),
        0);
    assert_int_equal(acl_count(acl), 4);
    assert_int_equal(acl_rule_flags(acl, 0), ACL_RF_UDP_ANY_SOURCE);
    assert_int_equal(acl_rule_flags(acl, 1), 0);
    assert_int_equal(acl_rule_flags(acl, 2), 0);
    assert_int_equal(acl_rule_flags(acl, 3), 0);
    assert_allowed(acl, "100.64.1.2:5000", ACL_CMD_UDP, NULL, NULL, NULL, 0, 0);
    acl_free(acl);
}

/* ---- bad files: each kind of error, with its line */

static void
test_missing_file(void **state)
{
    (void)state;
    struct opts o, before;
    struct acl *acl = NULL;
    char err[256];
    options_defaults(&o);
    memcpy(&before, &o, sizeof(o));
    assert_int_equal(config_load("/nonexistent/ringsocks.conf", &o, &acl, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/ringsocks.conf: cannot read: No such file or directory");
    assert_memory_equal(&o, &before, sizeof(o));
    assert_null(acl);
    assert_int_equal(config_load("/tmp", &o, &acl, err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp: cannot read: Is a directory");
}

static void
test_syntax_error(void **state)
{
    (void)state;
    load_bad("shards = 2;\n"
             "\n"
             "relay = ;\n"
             "bogus = 1;\n",
             "@:3: syntax error in 'relay = ;'");
    /* The line libconfig stopped on is shown, cut when long. */
    load_bad("rules = (\n"
             "  { action = \"allow\"; }\n"
             "     { action = \"deny\"; }   # the ',' missing above shows here\n"
             ");\n",
             "@:3: syntax error in '{ action = \"deny\"; }   # the ',' missing above shows here'");
    load_bad("admin_hosts = [\"a.example\", \"b.example\", \"c.example\", \"d.example\", "
             "\"e.example\", 3];\n",
             "@:1: mismatched element type in array in 'admin_hosts = [\"a.example\", "
             "\"b.example\", \"c.example\", \"d.exa...'");
    /* Groups in [ ]: libconfig's arrays hold scalars only, which its message does not say. */
    load_bad("rules = [\n"
             "    { action = \"allow\"; }\n"
             "];\n",
             "@:2: syntax error in '{ action = \"allow\"; }': a list of groups is written "
             "( { ... }, { ... } ); [ ] holds only strings, numbers and booleans");
    load_bad("shards = 2;\nshards = 3;\n", "@:2: duplicate setting name in 'shards = 3;'");
    load_bad("listen = [\"127.0.0.1:1\", 2];\n",
             "@:1: mismatched element type in array in 'listen = [\"127.0.0.1:1\", 2];'");
}

static void
test_unknown_keys(void **state)
{
    (void)state;
    load_bad("shards = 2;\n"
             "shard = 2;\n"
             "rules = (\n"
             "  { action = \"allow\";\n"
             "    form = [\"127.0.0.1\"];\n"
             "    port = 80; }\n"
             ");\n"
             "close_denied = true;\n",
             "@:2: unknown key 'shard'\n"
             "@:5: rule 1: unknown key 'form' (action, name, from, to, hosts, ports, commands, "
             "users, udp_source, gss_protection, egress, egress_fallback, family, mark, keepalive, "
             "user_timeout, "
             "fastopen, via, limits, client_limits, fault, fault_allow)\n"
             "@:6: rule 1: unknown key 'port' (action, name, from, to, hosts, ports, commands, "
             "users, udp_source, gss_protection, egress, egress_fallback, family, mark, keepalive, "
             "user_timeout, "
             "fastopen, via, limits, client_limits, fault, fault_allow)\n"
             "@:8: unknown key 'close_denied'");
}

/* name = "...": kept by the rule set for the access log; checked; unique (both lines named). */
static void
test_rule_names(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[4096];
    options_defaults(&o);
    assert_int_equal(load_text("rules = (\n"
                               "  { name = \"block-smtp\"; action = \"deny\"; ports = [25]; },\n"
                               "  { action = \"allow\"; },\n"
                               "  { name = \"office/v6:a.b_c\"; action = \"allow\"; mark = 7; "
                               "udp_source = \"any\"; }\n"
                               ");\n",
                               &o, &acl, err, sizeof(err)),
                     0);
    assert_string_equal(acl_rule_name(acl, 0), "block-smtp");
    assert_null(acl_rule_name(acl, 1));
    assert_string_equal(acl_rule_name(acl, 2), "office/v6:a.b_c");
    assert_null(acl_rule_name(acl, 3));
    /* Each of a rule's settings lands on that rule, whatever else it carries. */
    assert_int_equal(((const struct egress_rule *)acl_rule_data(acl, 2))->mark, 7);
    assert_null(acl_rule_data(acl, 0));
    assert_int_equal(acl_rule_flags(acl, 2), ACL_RF_UDP_ANY_SOURCE);
    acl_free(acl);

    char long_name[80];
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    char text_buf[1024], want[1024];
    snprintf(text_buf, sizeof(text_buf),
             "rules = (\n"
             "  { name = \"a\"; action = \"allow\"; },\n"
             "  { name = \"a b\"; action = \"allow\"; },\n"
             "  { name = \"q\\\"x\"; action = \"allow\"; },\n"
             "  { name = \"%s\"; action = \"allow\"; },\n"
             "  { name = \"\"; action = \"allow\"; },\n"
             "  { name = 3; action = \"allow\"; },\n"
             "  { name = \"a\"; action = \"deny\"; },\n"
             "  { name = \"tab\\there\"; action = \"deny\"; }\n"
             ");\n",
             long_name);
    snprintf(want, sizeof(want),
             "@:3: rule 2: name: 'a b' has a space, quote, backslash, '=' or non-printable byte: "
             "use letters, digits and - _ . : /\n"
             "@:4: rule 3: name: 'q\"x' has a space, quote, backslash, '=' or non-printable "
             "byte: use letters, digits and - _ . : /\n"
             "@:5: rule 4: name: '%s' is not 1..64 bytes long\n"
             "@:6: rule 5: name: '' is not 1..64 bytes long\n"
             "@:7: rule 6: name: expected a string, not an integer\n"
             "@:8: rule 7: name: 'a' is already the name of the rule at line 2\n"
             "@:9: rule 8: name: 'tab\there' has a space, quote, backslash, '=' or "
             "non-printable byte: use letters, digits and - _ . : /",
             long_name);
    load_bad(text_buf, want);
}

static void
test_wrong_types(void **state)
{
    (void)state;
    load_bad("shards = \"2\";\n"
             "relay = 1;\n"
             "idle_timeout = 1.5;\n"
             "close_removed_users = 1;\n"
             "listen = 1080;\n"
             "admin = [\"127.0.0.1:9180\"];\n"
             "resolvers = { a = 1; };\n"
             "users = true;\n",
             "@:1: shards: expected an integer, not a string\n"
             "@:2: relay: expected a string, not an integer\n"
             "@:3: idle_timeout: expected an integer, not a floating-point number\n"
             "@:4: close_removed_users: expected true or false, not an integer\n"
             "@:5: listen: expected a string or a list of strings, not an integer\n"
             "@:6: admin: expected a string, not an array [ ]\n"
             "@:7: resolvers: expected a string or a list of strings, not a group { }\n"
             "@:8: users: expected a string, not a boolean");
    load_bad("rules = { action = \"allow\"; };\n",
             "@:1: rules: expected a list of rules ( { ... }, { ... } ), not a group { }");
    load_bad("rules = (\n"
             "  \"allow\",\n"
             "  { action = [\"allow\"]; },\n"
             "  { action = \"deny\"; to = { x = 1; }; from = (1); users = [2];\n"
             "    ports = [true]; commands = 3; hosts = 4; }\n"
             ");\n",
             "@:2: rule 1: expected a group { action = ...; }, not a string\n"
             "@:3: rule 2: action: expected \"allow\" or \"deny\", not an array [ ]\n"
             "@:4: rule 3: to: expected a value or a list of values, not a group { }\n"
             "@:4: rule 3: from: expected a string, not an integer\n"
             "@:4: rule 3: users: expected a string, not an integer\n"
             "@:5: rule 3: ports: expected a port (443, \"443\" or \"8000-8999\"), not a boolean\n"
             "@:5: rule 3: commands: expected a string, not an integer\n"
             "@:5: rule 3: hosts: expected a string, not an integer");
}

static void
test_out_of_range(void **state)
{
    (void)state;
    load_bad("shards = 1025;\n"
             "handshake_timeout = 0;\n"
             "connect_timeout = 3601;\n"
             "idle_timeout = -1;\n"
             "bind_timeout = 0;\n"
             "drain_timeout = 86401;\n"
             "max_conns = 16000001;\n"
             "pipe_size = 4095;\n"
             "buf_size = 2097152;\n"
             "bufs = 1000;\n"
             "busy_poll = 100001;\n"
             "handshake_slots = 1048577;\n"
             "auth_fail_budget = 1000001;\n",
             "@:1: shards: 1025 is not in 0..1024\n"
             "@:2: handshake_timeout: 0 is not in 1..3600\n"
             "@:3: connect_timeout: 3601 is not in 1..3600\n"
             "@:4: idle_timeout: -1 is not in 0..31536000\n"
             "@:5: bind_timeout: 0 is not in 1..86400\n"
             "@:6: drain_timeout: 86401 is not in 0..86400\n"
             "@:7: max_conns: 16000001 is not in 0..16000000\n"
             "@:8: pipe_size: 4095 is not in 4096..67108864\n"
             "@:9: buf_size: 2097152 is not in 1024..1048576\n"
             "@:10: bufs: 1000 is not a power of two\n"
             "@:11: busy_poll: 100001 is not in 0..100000\n"
             "@:12: handshake_slots: 1048577 is not in 0..1048576\n"
             "@:13: auth_fail_budget: 1000001 is not in 0..1000000");
    /* 0 (never) and a day are in range; beyond a day is a typo, not a policy. */
    load_bad("write_timeout = 86401;\n", "@:1: write_timeout: 86401 is not in 0..86400");
    load_bad("write_timeout = -1;\n", "@:1: write_timeout: -1 is not in 0..86400");
    /* 0 is in range for both (never spin; min(max_conns, 4096) slots): below it. */
    load_bad("busy_poll = -1;\nhandshake_slots = -1;\n",
             "@:1: busy_poll: -1 is not in 0..100000\n"
             "@:2: handshake_slots: -1 is not in 0..1048576");
    /* libconfig 1.5 wraps integers beyond an int silently; these must not load as 1 or 80. */
    load_bad("# a comment\n"
             "max_conns = 4294967297;\n"
             "pipe_size: 0x100001000;\n"
             "bufs = 99999999999999999999999;\n"
             "shards = 1; handshake_timeout = 4294967306; connect_timeout=-4294967295;\n",
             "@:2: max_conns: 4294967297 is not in 0..16000000\n"
             "@:3: pipe_size: 4294971392 is not in 4096..67108864\n"
             "@:4: bufs: 9223372036854775807 is not in 1..32768\n"
             "@:5: handshake_timeout: 4294967306 is not in 1..3600\n"
             "@:5: connect_timeout: -4294967295 is not in 1..3600");
}

/*
 * GSS-API: auth as a list in the server's order, the gss_* keys, and the rule key
 * gss_protection, which matches only GSS-API clients at its levels.
 */
static void
test_gss_keys(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    char err[1024];
    options_defaults(&o);
    assert_string_equal(o.auth, "none");
    assert_string_equal(o.gss_protection, "0-2");
    assert_int_equal(load_text("auth = [\"gssapi\", \"password\"];\n"
                               "gss_service = \"rcmd/proxy.example\";\n"
                               "gss_keytab = \"FILE:/etc/ringsocks/krb5.keytab\";\n"
                               "gss_strip_realm = true;\n"
                               "gss_protection = \"1-2\";\n"
                               "rules = (\n"
                               "  { action = \"allow\"; ports = [443]; gss_protection = \"2\"; },\n"
                               "  { action = \"deny\";  ports = [443]; },\n"
                               "  { action = \"allow\"; gss_protection = \"0-1\"; }\n"
                               ");\n",
                               &o, &acl, err, sizeof(err)),
                     0);
    assert_string_equal(o.auth, "gssapi,password");
    uint8_t m[OPTS_AUTH_METHODS];
    assert_int_equal(options_auth_methods(&o, m), 2);
    assert_int_equal(m[0], SOCKS5_METHOD_GSSAPI);
    assert_int_equal(m[1], SOCKS5_METHOD_PASSWORD);
    assert_string_equal(o.gss_service, "rcmd/proxy.example");
    assert_string_equal(o.gss_keytab, "FILE:/etc/ringsocks/krb5.keytab");
    assert_true(o.gss_strip_realm);
    assert_string_equal(o.gss_protection, "1-2");

    union sockaddr_inx c = sa("192.0.2.1:1000"), d = sa("198.51.100.1:443");
    struct acl_query q = {.client = &c, .cmd = ACL_CMD_CONNECT, .dest = &d, .port = 443};
    int rule;
    /* gss is the level + 1: 3 is level 2; 0 is a client that did not use GSS-API. */
    static const struct {
        uint16_t port;
        uint8_t gss;
        enum acl_action action;
        int rule;
    } cases[] = {
        {443, 3, ACL_ALLOW, 0}, {443, 2, ACL_DENY, 1}, {443, 0, ACL_DENY, 1}, {80, 1, ACL_ALLOW, 2},
        {80, 2, ACL_ALLOW, 2},  {80, 3, ACL_DENY, -1}, {80, 0, ACL_DENY, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        q.port = cases[i].port;
        q.gss = cases[i].gss;
        assert_int_equal(acl_match(acl, &q, &rule), cases[i].action);
        assert_int_equal(rule, cases[i].rule);
    }
    acl_free(acl);

    /* The single value still works; none with another method does not. */
    options_defaults(&o);
    acl = NULL;
    assert_int_equal(load_text("auth = \"gssapi\";\n", &o, &acl, err, sizeof(err)), 0);
    acl_free(acl);
    assert_int_equal(options_auth_methods(&o, m), 1);
    assert_int_equal(m[0], SOCKS5_METHOD_GSSAPI);
    load_bad("auth = [\"none\", \"password\"];\n"
             "gss_protection = \"2-1\";\n"
             "gss_keytab = \"krb5.keytab\";\n"
             "rules = ( { action = \"allow\"; gss_protection = \"3\"; } );\n",
             "@:1: auth: \"none\" cannot be listed with another method\n"
             "@:2: gss_protection: '2-1' is not a level N or a range LO-HI within 0-2\n"
             "@:3: gss_keytab: 'krb5.keytab' is not an absolute path\n"
             "@:4: rule 1: gss_protection: expected a level \"N\" or a range \"LO-HI\" within "
             "0-2");
    load_bad("auth = [\"password\", \"password\"];\n", "@:1: auth: 'password' is listed twice");
}

static void
test_bad_values(void **state)
{
    (void)state;
    load_bad("listen = [\n"
             "    \"127.0.0.1:1080\",\n"
             "    \"127.0.0.1\",\n"
             "    \"localhost:1080\"\n"
             "];\n"
             "relay = \"zerocopy\";\n"
             "resolvers = [\"8.8.8.8\", \"dns.google\"];\n"
             "auth = \"basic\";\n"
             "users = \"\";\n"
             "socks4 = \"yes\";\n"
             "bind_ports = \"5000-4000\";\n"
             "udp_ports = \"0-100\";\n"
             "udp_advertise = \"proxy.example\";\n"
             "access_log = \"access.log\";\n"
             "log_format = \"text\";\n"
             "admin = \"127.0.0.1\";\n"
             "user = \"a:b\";\n"
             "group = \"0123456789012345678901234567890123456789012345678901234567890123\";\n",
             "@:3: listen: '127.0.0.1' is not IP:PORT or [IPv6]:PORT\n"
             "@:4: listen: 'localhost:1080' is not IP:PORT or [IPv6]:PORT\n"
             "@:6: relay: 'zerocopy' is not one of \"splice\", \"copy\", \"auto\"\n"
             "@:7: resolvers: 'dns.google' is not IP[:PORT]\n"
             "@:8: auth: 'basic' is not \"none\", \"gssapi\" or \"password\"\n"
             "@:9: users: '' is not a file name\n"
             "@:10: socks4: 'yes' is not one of \"auto\", \"on\", \"off\"\n"
             "@:11: bind_ports: '5000-4000' is not a port range LO-HI within 1-65535\n"
             "@:12: udp_ports: '0-100' is not a port range LO-HI within 1-65535\n"
             "@:13: udp_advertise: 'proxy.example' is not an IP address\n"
             "@:14: access_log: 'access.log' is not \"stderr\", \"syslog\", \"off\" or an "
             "absolute path\n"
             "@:15: log_format: 'text' is not one of \"logfmt\", \"json\"\n"
             "@:16: admin: '127.0.0.1' is neither IP:PORT, [IPv6]:PORT nor \"off\"\n"
             "@:17: user: 'a:b' is not a user or group name\n"
             "@:18: group: '0123456789012345678901234567890123456789012345678901234567890123' is "
             "longer than 63 bytes");
    /* Comma-first layout: a string is recorded on the line of the token after it. */
    load_bad("resolvers = (\n"
             "    \"192.0.2.1\"\n"
             "  , \"bad\"\n"
             "  # a comment\n"
             "\n"
             "  , \"worse\"\n"
             ");\n"
             "rules = (\n"
             "    { action = \"allow\"; }\n"
             "  , { to = \"10.0.0.0/8\"; }\n"
             ");\n",
             "@:3: resolvers: 'bad' is not IP[:PORT]\n"
             "@:6: resolvers: 'worse' is not IP[:PORT]\n"
             "@:10: rule 2: no action (action = \"allow\"; or action = \"deny\";)");
    /* A host name, no port: what Host is compared with, never an address pattern. */
    load_bad("admin_hosts = [\"node1.example\", \"node1.example:9180\", \"*.example\"];\n",
             "@:1: admin_hosts: 'node1.example:9180' is not a host name (letters, digits, '-', "
             "'_', '.'; no port)\n"
             "@:1: admin_hosts: '*.example' is not a host name (letters, digits, '-', '_', '.'; "
             "no port)");
    load_bad("listen = [];\nbind_ports = \"4000\";\n",
             "@:1: listen: the list is empty (give at least one address)\n"
             "@:2: bind_ports: '4000' is not a port range LO-HI within 1-65535");
}

/*
 * fault, fault_allow (fault.h): on an allow rule only; a bad fault name at its line with
 * the parser's message; a fault of the greeting or the RFC 1929 status only in a rule with
 * from (and, for the status, users) alone (fault_check).
 */
static void
test_fault_keys(void **state)
{
    (void)state;
    struct opts o;
    struct acl *acl = NULL;
    load_good("rules = (\n"
              "  { action = \"allow\"; ports = [443]; fault = [\"refused\", \"split_20\"];\n"
              "    fault_allow = true; },\n"
              "  { action = \"allow\"; users = [\"alice\"]; fault = \"auth_fail\"; },\n"
              "  { action = \"allow\"; from = [\"192.0.2.0/24\"];\n"
              "    fault = [\"no_method\", \"delay_method_300\", \"delay_auth_200\"]; },\n"
              "  { action = \"allow\"; fault_allow = true; },\n"
              "  { action = \"allow\"; fault_allow = false; }\n"
              ");\n",
              &o, &acl);
    const struct egress_rule *er = acl_rule_data(acl, 0);
    assert_non_null(er);
    assert_int_equal(er->fault.kinds, (1u << FAULT_REPLY) | (1u << FAULT_SPLIT));
    assert_int_equal(er->fault.arg[FAULT_REPLY], 5);
    assert_int_equal(er->fault.arg[FAULT_SPLIT], 20);
    assert_true(er->fault_allow);
    er = acl_rule_data(acl, 1);
    assert_int_equal(er->fault.kinds, 1u << FAULT_AUTH_FAIL);
    assert_false(er->fault_allow);
    er = acl_rule_data(acl, 2);
    assert_int_equal(er->fault.kinds, (1u << FAULT_NO_METHOD) | (1u << FAULT_DELAY_METHOD) |
                                          (1u << FAULT_DELAY_AUTH));
    assert_int_equal(er->fault.arg[FAULT_DELAY_METHOD], 300);
    assert_int_equal(er->fault.arg[FAULT_DELAY_AUTH], 200);
    er = acl_rule_data(acl, 3);
    assert_int_equal(er->fault.kinds, 0);
    assert_true(er->fault_allow);
    er = acl_rule_data(acl, 4);
    assert_int_equal(er->fault.kinds, 0);
    assert_false(er->fault_allow);
    acl_free(acl);

    /* A deny rule admits no tunnel to commit anything. */
    load_bad("rules = ( { action = \"deny\"; fault = \"refused\"; } );\n",
             "@:1: rule 1: fault: only an allow rule admits tunnels to send somewhere");
    load_bad("rules = ( { action = \"deny\";\n"
             "  fault_allow = true; } );\n",
             "@:2: rule 1: fault_allow: only an allow rule admits tunnels to send somewhere");
    /* A bad name, at its own line, in the parser's words. */
    load_bad("rules = ( { action = \"allow\";\n"
             "  fault = [\"refused\",\n"
             "           \"split\", \"bogus\"]; } );\n",
             "@:3: rule 1: fault: fault 'split': split needs an argument (split_N)\n"
             "@:3: rule 1: fault: unknown fault 'bogus' (refused, reply_N, no_method, auth_fail, "
             "delay_method_MS, delay_auth_MS, delay_reply_MS, split_MS, truncate_N, wrong_bnd, "
             "bind_peer, rst_down_N, rst_up_N, fin_down_N, fin_up_N, throttle_BPS, "
             "udp_drop_PCT, udp_dup_PCT, udp_reorder_PCT, udp_frag[_N]: docs/faults.md)");
    load_bad("rules = ( { action = \"allow\"; fault = \"truncate_22\"; } );\n",
             "@:1: rule 1: fault: fault 'truncate_22': truncate takes a whole number 0-21");
    load_bad("rules = ( { action = \"allow\"; fault_allow = \"yes\"; } );\n",
             "@:1: rule 1: fault_allow: expected true or false, not a string");
    /* The greeting's faults: from alone. */
    static const char *const greet_extra[][2] = {
        {"users = [\"alice\"];", "users"},         {"to = [\"198.51.100.0/24\"];", "to"},
        {"hosts = [\"example.com\"];", "hosts"},   {"ports = [443];", "ports"},
        {"commands = [\"connect\"];", "commands"},
    };
    static const char *const greet[] = {"no_method", "delay_method_300"};
    char text[512], want[1024];
    for (size_t g = 0; g < sizeof(greet) / sizeof(greet[0]); g++)
        for (size_t i = 0; i < sizeof(greet_extra) / sizeof(greet_extra[0]); i++) {
            snprintf(text, sizeof(text),
                     "rules = ( { action = \"allow\"; %s\n  fault = \"%s\"; } );\n",
                     greet_extra[i][0], greet[g]);
            snprintf(want, sizeof(want),
                     "@:2: rule 1: fault: a fault of the greeting acts before the request (the "
                     "client has not said what it wants nor who it is), so it comes from a rule "
                     "that can have only from, not %s: put it in a rule of its own, before the "
                     "others (docs/faults.md)",
                     greet_extra[i][1]);
            load_bad(text, want);
        }
    /* The status's: from and users. */
    for (size_t i = 1; i < sizeof(greet_extra) / sizeof(greet_extra[0]); i++) {
        snprintf(text, sizeof(text),
                 "rules = ( { action = \"allow\"; users = [\"alice\"]; %s\n"
                 "  fault = [\"split_10\", \"auth_fail\"]; } );\n",
                 greet_extra[i][0]);
        snprintf(want, sizeof(want),
                 "@:2: rule 1: fault: a fault of the RFC 1929 status acts before the request "
                 "(the client has not said what it wants), so it comes from a rule that can have "
                 "only from and users, not %s: put it in a rule of its own, before the others "
                 "(docs/faults.md)",
                 greet_extra[i][1]);
        load_bad(text, want);
    }
    load_good("rules = ( { action = \"allow\"; users = [\"alice\"]; from = [\"127.0.0.1\"];\n"
              "  fault = [\"auth_fail\", \"delay_auth_100\"]; } );\n",
              &o, &acl);
    er = acl_rule_data(acl, 0);
    assert_int_equal(er->fault.kinds, (1u << FAULT_AUTH_FAIL) | (1u << FAULT_DELAY_AUTH));
    acl_free(acl);
    /* Faults of the request and after go with any condition. */
    load_good("rules = ( { action = \"allow\"; users = [\"alice\"]; to = [\"198.51.100.0/24\"];\n"
              "  ports = [443]; commands = [\"connect\", \"bind\"];\n"
              "  fault = [\"refused\", \"wrong_bnd\", \"rst_down_1000\"]; } );\n",
              &o, &acl);
    acl_free(acl);
}

static void
test_bad_rules(void **state)
{
    (void)state;
    load_bad("rules = (\n"
             "    { action = \"permit\"; },\n"
             "    { to = [\"10.0.0.0/8\"]; },\n"
             "    {\n"
             "        action = \"deny\";\n"
             "        to = [\"10.0.0.1/8\",\n"
             "              \"192.168.0.0/33\"];\n"
             "        from = (\"2001:db8::/32\", \"300.1.1.1\");\n"
             "    },\n"
             "    {\n"
             "        action = \"allow\";\n"
             "        hosts = [\"10.0.0.1\", \"*.example.com\", \"a..b\", \".\"];\n"
             "        ports = (\"0\", \"9000-8000\", 70000, \"http\", \"80-\", \" 80\");\n"
             "        commands = [\"connect\", \"associate\"];\n"
             "        users = [\"alice\",\n"
             "                 \"\"\n"
             "        ];\n"
             "    }\n"
             ");\n",
             "@:2: rule 1: action: 'permit' is neither \"allow\" nor \"deny\"\n"
             "@:3: rule 2: no action (action = \"allow\"; or action = \"deny\";)\n"
             "@:6: rule 3: to: '10.0.0.1/8' is not an address or a network with zero host bits "
             "(192.0.2.0/24, 2001:db8::/32)\n"
             "@:7: rule 3: to: '192.168.0.0/33' is not an address or a network with zero host "
             "bits (192.0.2.0/24, 2001:db8::/32)\n"
             "@:8: rule 3: from: '300.1.1.1' is not an address or a network with zero host bits "
             "(192.0.2.0/24, 2001:db8::/32)\n"
             "@:12: rule 4: hosts: '10.0.0.1' is an address: destination addresses go in \"to\"\n"
             "@:12: rule 4: hosts: '*.example.com' is not a host name (letters, digits, '-', "
             "'_' and '.' between labels; no wildcards, ports or spaces)\n"
             "@:12: rule 4: hosts: 'a..b' has an empty label\n"
             "@:12: rule 4: hosts: '.' is empty\n"
             "@:13: rule 4: ports: '0' is not a port or a range LO-HI within 1-65535\n"
             "@:13: rule 4: ports: '9000-8000' is not a port or a range LO-HI within 1-65535\n"
             "@:13: rule 4: ports: 70000 is not a port in 1..65535\n"
             "@:13: rule 4: ports: 'http' is not a port or a range LO-HI within 1-65535\n"
             "@:13: rule 4: ports: '80-' is not a port or a range LO-HI within 1-65535\n"
             "@:13: rule 4: ports: ' 80' is not a port or a range LO-HI within 1-65535\n"
             "@:14: rule 4: commands: 'associate' is not one of \"connect\", \"bind\", \"udp\"\n"
             "@:16: rule 4: users: '' is not a user name (1..255 bytes)");
}

/* udp_source: a wrong value or type, and "any" where it could never act, each at its line. */
static void
test_bad_udp_source(void **state)
{
    (void)state;
    load_bad("rules = (\n"
             "    { action = \"allow\"; udp_source = \"anywhere\"; },\n"
             "    { action = \"allow\";\n"
             "      udp_source = [\"any\"]; },\n"
             "    { action = \"allow\"; udp_source = 1; },\n"
             "    { action = \"allow\"; udp_source = \"ANY\"; },\n"
             "    { action = \"allow\"; udp_source = { }; },\n"
             "    { action = \"deny\"; from = \"10.0.0.0/8\";\n"
             "      udp_source = \"any\"; },\n"
             "    { action = \"allow\"; commands = \"connect\"; udp_source = \"any\"; },\n"
             "    { action = \"allow\"; ports = 53;\n"
             "      udp_source = \"any\"; },\n"
             "    { action = \"allow\"; udp_source = \"any\"; to = \"192.0.2.0/24\"; }\n"
             ");\n",
             "@:2: rule 1: udp_source: 'anywhere' is neither \"control\" nor \"any\"\n"
             "@:4: rule 2: udp_source: expected \"control\" or \"any\", not an array [ ]\n"
             "@:5: rule 3: udp_source: expected \"control\" or \"any\", not an integer\n"
             "@:6: rule 4: udp_source: 'ANY' is neither \"control\" nor \"any\"\n"
             "@:7: rule 5: udp_source: expected \"control\" or \"any\", not a group { }\n"
             "@:9: rule 6: udp_source: only an allow rule admits a UDP source\n"
             "@:10: rule 7: udp_source: the rule's commands do not include \"udp\"\n"
             "@:12: rule 8: udp_source: a rule with to, hosts or ports never admits the "
             "association itself, only its datagrams\n"
             "@:13: rule 9: udp_source: a rule with to, hosts or ports never admits the "
             "association itself, only its datagrams");
}

/* Errors everywhere in one file: all reported, in file order, and nothing changed. */
static void
test_many_errors(void **state)
{
    (void)state;
    load_bad("# several mistakes\n"
             "listen = [\"127.0.0.1:1080\", \"[::1]\"];\n"
             "shards = -2;\n"
             "relay = \"copy\";\n"
             "tiemout = 5;\n"
             "rules = (\n"
             "    { action = \"deny\"; to = \"10.0.0.0/8\"; },\n"
             "    { action = \"alow\"; commands = \"udp\"; }\n"
             ");\n"
             "admin = \"off\";\n"
             "socks4 = \"auto\";\n"
             "log_format = \"JSON\";\n",
             "@:2: listen: '[::1]' is not IP:PORT or [IPv6]:PORT\n"
             "@:3: shards: -2 is not in 0..1024\n"
             "@:5: unknown key 'tiemout'\n"
             "@:8: rule 2: action: 'alow' is neither \"allow\" nor \"deny\"\n"
             "@:12: log_format: 'JSON' is not one of \"logfmt\", \"json\"");
}

/* More listen addresses than the table holds: one error, at the first one too many. */
static void
test_too_many(void **state)
{
    (void)state;
    char buf[2048] = "listen = [\n";
    for (int i = 0; i <= OPTS_MAX_LISTEN + 1; i++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "  \"127.0.0.1:%d\"%s\n", 2000 + i,
                 i <= OPTS_MAX_LISTEN ? "," : "");
    strcat(buf, "];\n");
    /* Line 1 is "listen = [", address i on line i + 2: the 17th (i = 16) on line 18. */
    load_bad(buf, "@:18: listen: more than 16 addresses");

    load_bad("resolvers = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\", \"10.0.0.4\", \"10.0.0.5\",\n"
             "  \"10.0.0.6\", \"10.0.0.7\", \"10.0.0.8\",\n"
             "  \"10.0.0.9\", \"10.0.0.10\"];\n",
             "@:3: resolvers: too many addresses (at most 8)");
}

/* err is cut to errlen, always terminated; the result is still -1 with outputs untouched. */
static void
test_truncated_errors(void **state)
{
    (void)state;
    struct opts o, before;
    struct acl *acl = NULL;
    char err[48];
    memset(err, 'x', sizeof(err));
    options_defaults(&o);
    memcpy(&before, &o, sizeof(o));
    assert_int_equal(load_text("a = 1;\nb = 2;\nc = 3;\n", &o, &acl, err, 40), -1);
    assert_int_equal(strlen(err), 39);
    assert_int_equal(err[41], 'x');
    assert_memory_equal(&o, &before, sizeof(o));
    assert_null(acl);
    unlink(path);
    assert_int_equal(load_text("a = 1;\n", &o, &acl, NULL, 0), -1);
}

/*
 * The file and the command line take the same values: for every row, a value
 * one accepts the other accepts with the same result, and what one refuses
 * the other refuses.
 */
static void
test_file_and_command_line_agree(void **state)
{
    (void)state;
    static const char *const samples[] = {"0",
                                          "1",
                                          "7",
                                          "64",
                                          "1024",
                                          "1025",
                                          "4096",
                                          "65536",
                                          "1048577",
                                          "-1",
                                          "0x20",
                                          "true",
                                          "false",
                                          "auto",
                                          "splice",
                                          "copy",
                                          "none",
                                          "password",
                                          "on",
                                          "off",
                                          "json",
                                          "logfmt",
                                          "stderr",
                                          "syslog",
                                          "rel.log",
                                          "/var/log/x.log",
                                          "",
                                          "nobody",
                                          "a:b",
                                          "127.0.0.1:1080",
                                          "[::1]:9",
                                          "127.0.0.1",
                                          "2001:db8::1",
                                          "host.example",
                                          "x.example:1",
                                          "4000-4999",
                                          "4000",
                                          "0-10",
                                          NULL};
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        if (options_file_only(r))
            continue;
        for (size_t k = 0; samples[k]; k++) {
            struct opts by_cli, by_file;
            struct acl *acl = NULL;
            char why[512], err[1024], text[1024], quoted[256];
            long long n;
            char *end;
            char opt[64];
            snprintf(opt, sizeof(opt), "--%s", r->key);
            for (char *p = opt; *p; p++)
                *p = *p == '_' ? '-' : *p;
            char *argv[] = {"ringsocks", opt, (char *)samples[k], NULL};
            struct options_cli cli = {0};
            options_defaults(&by_cli);
            options_defaults(&by_file);
            bool cli_ok = options_apply_args(3, argv, &by_cli, &cli, why, sizeof(why)) == 0;
            n = strtoll(samples[k], &end, 0);
            (void)n;
            bool literal = (r->kind == OPTIONS_UINT && samples[k][0] && !*end) ||
                           (r->kind == OPTIONS_BOOL &&
                            (!strcmp(samples[k], "true") || !strcmp(samples[k], "false")));
            options_quote(samples[k], quoted, sizeof(quoted));
            snprintf(text, sizeof(text), "%s = %s;\n", r->key, literal ? samples[k] : quoted);
            bool file_ok = load_text(text, &by_file, &acl, err, sizeof(err)) == 0;
            acl_free(acl);
            unlink(path);
            if (cli_ok != file_ok)
                fail_msg("%s = %s: the command line %s it (%s), the file %s it (%s)", r->key,
                         samples[k], cli_ok ? "takes" : "refuses", why,
                         file_ok ? "takes" : "refuses", err);
            if (cli_ok && !options_equal(r, &by_cli, &by_file))
                fail_msg("%s = %s: the command line and the file read it differently", r->key,
                         samples[k]);
        }
    }
    path[0] = '\0';
}

/* Write what -T prints for the file at path (the settings of o, the rules of path) to out. */
static void
dump(const struct opts *o, const char *from, const char *out)
{
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    options_print(f, o);
    assert_int_equal(config_print_rules(from, f), 0);
    fclose(f);
}

/* -T's output is a configuration file that means the same, and prints the same again. */
static void
test_dump_round_trip(void **state)
{
    (void)state;
    static const char *const texts[] = {
        all_keys,
        "",
        "rules = ();\n",
        "access_log = \"/var/log/a \\\"quoted\\\" \\\\ name.log\";\nadmin = \"off\";\n"
        "udp_advertise = \"2001:db8::5\";\nresolvers = [];\n"
        "rules = ( { action = \"deny\"; ports = (22, \"8000-8999\"); },\n"
        "          { action = \"allow\"; from = \"::1\"; udp_source = \"any\"; } );\n",
        "rules = ( { action = \"deny\"; to = [\"@special\", \"@metadata\", \"@office\"]; },\n"
        "          { action = \"allow\"; from = \"@lab\"; } );\n"
        "address_sets = { office = [\"198.51.100.0/24\", \"@lab\"]; lab = \"::1\";\n"
        "                 empty_looking = [\"@loopback\"]; };\n",
        "address_sets = {};\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct opts a, b;
        struct acl *acl = NULL;
        char err[1024], first[80], second[80];
        options_defaults(&a);
        if (load_text(texts[i], &a, &acl, err, sizeof(err)) != 0)
            fail_msg("text %zu does not load: %s", i, err);
        size_t rules = acl_count(acl);
        acl_free(acl);
        snprintf(first, sizeof(first), "%s.T1", path);
        snprintf(second, sizeof(second), "%s.T2", path);
        dump(&a, path, first);
        options_defaults(&b);
        b.shards = 99; /* every key is in the dump: nothing is left from before */
        acl = NULL;
        if (config_load(first, &b, &acl, err, sizeof(err)) != 0)
            fail_msg("the dump of text %zu does not load: %s", i, err);
        assert_memory_equal(&a, &b, sizeof(a));
        assert_int_equal(acl_count(acl), rules);
        acl_free(acl);
        dump(&b, first, second);
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "cmp -s %s %s", first, second);
        assert_int_equal(system(cmd), 0);
        unlink(first);
        unlink(second);
        unlink(path);
    }
    path[0] = '\0';
}

/* Users named in rules but not in the users file: a warning each, at their line. */
static void
test_rule_users(void **state)
{
    (void)state;
    char warn[1024];
    write_conf("rules = (\n"
               "  { action = \"allow\"; users = [\"alice\",\n"
               "                                \"mallory\"]; },\n"
               "  { action = \"deny\"; users = \"trudy\"; }\n"
               ");\n");
    assert_int_equal(config_check_rule_users(path, NULL, warn, sizeof(warn)), 3);
    assert_errors(warn, "@:2: warning: rule 1: user 'alice' is not in the users file (there is "
                        "none): the rule never matches them\n"
                        "@:3: warning: rule 1: user 'mallory' is not in the users file (there is "
                        "none): the rule never matches them\n"
                        "@:4: warning: rule 2: user 'trudy' is not in the users file (there is "
                        "none): the rule never matches them");
    char users_path[] = "/tmp/test_config_users.XXXXXX";
    int fd = mkstemp(users_path);
    assert_true(fd >= 0);
    static const char line[] = "alice:$6$8OUTMpWNua3Nj16s$pgM3kMyDp.Lz1Bs6J6P0mUln0h6L7DcQGAvPjrSE"
                               "d0XR4PYliLKnJV57YTGs6hVfnIcgNs7PF/N8ik1gytnET0\n";
    assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    close(fd);
    char uerr[256];
    struct users *u = users_load(users_path, uerr, sizeof(uerr));
    assert_non_null(u);
    assert_int_equal(config_check_rule_users(path, u, warn, sizeof(warn)), 2);
    assert_errors(warn, "@:3: warning: rule 1: user 'mallory' is not in the users file: the rule "
                        "never matches them\n"
                        "@:4: warning: rule 2: user 'trudy' is not in the users file: the rule "
                        "never matches them");
    users_free(u);
    unlink(users_path);
    assert_int_equal(config_check_rule_users(NULL, NULL, warn, sizeof(warn)), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_all_keys, teardown),
        cmocka_unit_test_teardown(test_absent_keys_keep_defaults, teardown),
        cmocka_unit_test(test_default_acl),
        cmocka_unit_test_teardown(test_egress_keys, teardown),
        cmocka_unit_test_teardown(test_proxy_keys, teardown),
        cmocka_unit_test_teardown(test_via_keys, teardown),
        cmocka_unit_test_teardown(test_mode_keys, teardown),
        cmocka_unit_test_teardown(test_rules_absent_or_empty, teardown),
        cmocka_unit_test_teardown(test_scalar_lists, teardown),
        cmocka_unit_test_teardown(test_off_values, teardown),
        cmocka_unit_test_teardown(test_loopback_half_warning, teardown),
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test_teardown(test_address_sets, teardown),
        cmocka_unit_test_teardown(test_bad_address_sets, teardown),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test_teardown(test_syntax_error, teardown),
        cmocka_unit_test_teardown(test_unknown_keys, teardown),
        cmocka_unit_test_teardown(test_rule_names, teardown),
        cmocka_unit_test_teardown(test_wrong_types, teardown),
        cmocka_unit_test_teardown(test_out_of_range, teardown),
        cmocka_unit_test_teardown(test_bad_values, teardown),
        cmocka_unit_test_teardown(test_gss_keys, teardown),
        cmocka_unit_test_teardown(test_bad_rules, teardown),
        cmocka_unit_test_teardown(test_udp_source, teardown),
        cmocka_unit_test_teardown(test_bad_udp_source, teardown),
        cmocka_unit_test_teardown(test_many_errors, teardown),
        cmocka_unit_test_teardown(test_too_many, teardown),
        cmocka_unit_test_teardown(test_truncated_errors, teardown),
        cmocka_unit_test_teardown(test_file_and_command_line_agree, teardown),
        cmocka_unit_test_teardown(test_dump_round_trip, teardown),
        cmocka_unit_test_teardown(test_rule_users, teardown),
        cmocka_unit_test_teardown(test_fault_keys, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
