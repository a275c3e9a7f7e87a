/*
 * test_options.c - the option table: every row's default is a value it
 * accepts, each kind's values and messages, the command line built from the
 * rows (0 = auto where the file allows it, lists replaced, aliases, booleans),
 * the usage text, the reload diff, that a row's reload class is what
 * policy_new() copies into the reloadable snapshot, and that docs/config.md
 * and the man pages say what the table says (run from the repository root).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "options.h"
#include "policy.h"

static const struct options_row *
row(const char *key)
{
    const struct options_row *r = options_find(key);
    assert_non_null(r);
    return r;
}

/* The text row key of o shows in the file's syntax ("unset" when it has none). */
static const char *
shown(const char *key, const struct opts *o)
{
    static char buf[20000];
    if (!options_format(row(key), o, buf, sizeof(buf)))
        strcpy(buf, "unset");
    return buf;
}

/* Set key from text; returns the message (or "" when accepted). */
static const char *
set(struct opts *o, const char *key, const char *text)
{
    static char why[512];
    why[0] = '\0';
    int ret = options_set(row(key), o, text, why, sizeof(why));
    assert_true(ret == 0 ? why[0] == '\0' : why[0] != '\0');
    return why;
}

static void
test_defaults(void **state)
{
    (void)state;
    struct opts o;
    char why[256];
    /* Every documented default is a value its row accepts. */
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        options_defaults(&o);
        if (r->def) {
            options_clear(r, &o);
            assert_int_equal(options_set(r, &o, r->def, why, sizeof(why)), 0);
        } else {
            /* No default value: unset, and the table says what unset means. */
            assert_non_null(r->unset);
        }
        assert_non_null(r->help);
        assert_true(options_file_only(r) || r->arg || r->kind == OPTIONS_CHOICE);
    }
    options_defaults(&o);
    assert_string_equal(shown("listen", &o), "[\"127.0.0.1:1080\"]");
    assert_int_equal(o.n_listen, 1);
    assert_int_equal(o.relay, RELAY_AUTO);
    assert_int_equal(o.shards, 0);
    assert_int_equal(o.idle_timeout_s, 7200);
    assert_int_equal(o.buf_count, 256);
    assert_true(o.close_removed_users);
    assert_false(o.close_denied);
    assert_string_equal(o.access_log, "stderr");
    assert_string_equal(shown("admin", &o), "\"127.0.0.1:9180\"");
    assert_string_equal(shown("resolvers", &o), "[]");
    assert_string_equal(shown("users", &o), "unset");
    assert_string_equal(shown("bind_ports", &o), "unset");
    assert_string_equal(shown("udp_advertise", &o), "unset");
}

static void
test_uint(void **state)
{
    (void)state;
    struct opts o;
    options_defaults(&o);
    assert_string_equal(set(&o, "shards", "0"), "");
    assert_string_equal(set(&o, "shards", "1024"), "");
    assert_int_equal(o.shards, 1024);
    assert_string_equal(set(&o, "shards", "0x10"), "");
    assert_int_equal(o.shards, 16);
    /* Decimal, not octal. */
    assert_string_equal(set(&o, "shards", "010"), "");
    assert_int_equal(o.shards, 10);
    assert_string_equal(set(&o, "shards", "1025"), "1025 is not in 0..1024");
    assert_string_equal(set(&o, "shards", "-1"), "-1 is not in 0..1024");
    assert_string_equal(set(&o, "shards", "99999999999999999999999"),
                        "9223372036854775807 is not in 0..1024");
    assert_string_equal(set(&o, "shards", "4294967297"), "4294967297 is not in 0..1024");
    assert_string_equal(set(&o, "shards", "two"), "'two' is not an integer");
    assert_string_equal(set(&o, "shards", ""), "'' is not an integer");
    assert_string_equal(set(&o, "shards", "2 "), "'2 ' is not an integer");
    assert_int_equal(o.shards, 10); /* refused values change nothing */
    assert_string_equal(set(&o, "bufs", "1000"), "1000 is not a power of two");
    assert_string_equal(set(&o, "bufs", "1024"), "");
    assert_string_equal(set(&o, "handshake_timeout", "0"), "0 is not in 1..3600");
    assert_int_equal(options_set_uint(row("idle_timeout"), &o, 31536000, NULL, 0), 0);
    assert_int_equal(o.idle_timeout_s, 31536000);
}

static void
test_words(void **state)
{
    (void)state;
    struct opts o;
    options_defaults(&o);
    assert_string_equal(set(&o, "close_denied_on_reload", "true"), "");
    assert_true(o.close_denied);
    assert_string_equal(set(&o, "close_denied_on_reload", "FALSE"), "");
    assert_false(o.close_denied);
    assert_string_equal(set(&o, "close_denied_on_reload", "yes"),
                        "'yes' is neither true nor false");
    assert_string_equal(set(&o, "relay", "copy"), "");
    assert_int_equal(o.relay, RELAY_COPY);
    assert_string_equal(set(&o, "relay", "zerocopy"),
                        "'zerocopy' is not one of \"splice\", \"copy\", \"auto\"");
    assert_string_equal(set(&o, "log_format", "json"), "");
    assert_int_equal(o.log_format, LOG_JSON);
    assert_string_equal(set(&o, "access_log", "access.log"),
                        "'access.log' is not \"stderr\", \"syslog\", \"off\" or an absolute path");
    assert_string_equal(set(&o, "access_log", "/var/log/x.log"), "");
    assert_string_equal(set(&o, "users", ""), "'' is not a file name");
    assert_string_equal(set(&o, "user", "a:b"), "'a:b' is not a user or group name");
    assert_string_equal(set(&o, "user", ""), ""); /* no privilege drop */
    char big[100];
    memset(big, 'g', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_string_equal(
        set(&o, "group", big),
        "'ggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg"
        "gggggggggggggggggggggg' is longer than 63 bytes");
    assert_string_equal(set(&o, "bind_ports", "4000"),
                        "'4000' is not a port range LO-HI within 1-65535");
    assert_string_equal(set(&o, "bind_ports", "5000-4000"),
                        "'5000-4000' is not a port range LO-HI within 1-65535");
    assert_string_equal(set(&o, "bind_ports", "4000-4999"), "");
    assert_int_equal(o.bind_port_lo, 4000);
    assert_int_equal(o.bind_port_hi, 4999);
    assert_string_equal(shown("bind_ports", &o), "\"4000-4999\"");
}

static void
test_addresses(void **state)
{
    (void)state;
    struct opts o;
    options_defaults(&o);
    assert_string_equal(set(&o, "admin", "off"), "");
    assert_int_equal(o.admin.ss_family, AF_UNSPEC);
    assert_string_equal(shown("admin", &o), "\"off\"");
    assert_string_equal(set(&o, "admin", "127.0.0.1"),
                        "'127.0.0.1' is neither IP:PORT, [IPv6]:PORT nor \"off\"");
    assert_string_equal(set(&o, "admin", "[::1]:9"), "");
    assert_string_equal(shown("admin", &o), "\"[::1]:9\"");
    assert_string_equal(set(&o, "udp_advertise", "proxy.example"),
                        "'proxy.example' is not an IP address");
    assert_string_equal(set(&o, "udp_advertise", "2001:db8::7"), "");
    assert_string_equal(shown("udp_advertise", &o), "\"[2001:db8::7]\"");
    assert_string_equal(set(&o, "udp_advertise", "off"), "'off' is not an IP address");

    /* Lists: each set appends; clear empties. */
    const struct options_row *l = row("listen");
    options_clear(l, &o);
    assert_string_equal(shown("listen", &o), "[]");
    for (int i = 0; i < OPTS_MAX_LISTEN; i++) {
        char a[32];
        snprintf(a, sizeof(a), "127.0.0.1:%d", 2000 + i);
        assert_string_equal(set(&o, "listen", a), "");
    }
    char why[128];
    assert_int_equal(options_set(l, &o, "127.0.0.1:3000", why, sizeof(why)), -E2BIG);
    assert_string_equal(why, "more than 16 addresses");
    assert_int_equal(options_set(l, &o, "127.0.0.1", why, sizeof(why)), -E2BIG);
    options_clear(l, &o);
    assert_string_equal(set(&o, "listen", "localhost:1080"),
                        "'localhost:1080' is not IP:PORT or [IPv6]:PORT");
    assert_int_equal(o.n_listen, 0);

    const struct options_row *rs = row("resolvers");
    options_clear(rs, &o);
    assert_string_equal(set(&o, "resolvers", "1.1.1.1"), "");
    assert_string_equal(set(&o, "resolvers", "[2606:4700::1111]:5353"), "");
    assert_string_equal(set(&o, "resolvers", "dns.google"), "'dns.google' is not IP[:PORT]");
    assert_string_equal(o.resolvers, "1.1.1.1:53,[2606:4700::1111]:5353");
    assert_string_equal(shown("resolvers", &o), "[\"1.1.1.1:53\", \"[2606:4700::1111]:5353\"]");
    for (int i = 0; i < 6; i++)
        assert_string_equal(set(&o, "resolvers", "10.0.0.1"), "");
    assert_int_equal(options_set(rs, &o, "10.0.0.9", why, sizeof(why)), -E2BIG);
    assert_string_equal(why, "too many addresses (at most 8)");

    /* egress: entries checked one by one, the list bounded like the others. */
    const struct options_row *re = row("egress");
    options_clear(re, &o);
    assert_string_equal(set(&o, "egress", "2001:db8:1::/64"), "");
    assert_string_equal(set(&o, "egress", "2001:db8::1/64"),
                        "'2001:db8::1/64' is not an address or a prefix (NETWORK/LENGTH with the "
                        "host bits zero)");
    assert_string_equal(o.egress, "2001:db8:1::/64");
    for (int i = 1; i < OPTS_MAX_EGRESS; i++)
        assert_string_equal(set(&o, "egress", "203.0.113.7"), "");
    assert_int_equal(options_set(re, &o, "203.0.113.8", why, sizeof(why)), -E2BIG);
    assert_string_equal(why, "too many entries (at most 64)");

    assert_string_equal(set(&o, "admin_hosts", "Node1.Example"), "");
    assert_string_equal(set(&o, "admin_hosts", "x:9180"),
                        "'x:9180' is not a host name (letters, digits, '-', '_', '.'; no port)");
    assert_string_equal(shown("admin_hosts", &o), "[\"node1.example\"]");
    assert_string_equal(set(&o, "rules", "x"), "is set in the configuration file only");
}

/* Strings the file must read back as written: quotes, backslashes, control bytes escaped. */
static void
test_quote(void **state)
{
    (void)state;
    char buf[64];
    options_quote("/var/log/a \"b\"\\c\n", buf, sizeof(buf));
    assert_string_equal(buf, "\"/var/log/a \\\"b\\\"\\\\c\\x0a\"");
    options_quote("0123456789", buf, 8);
    assert_int_equal(strlen(buf), 7);
}

static int
apply(struct opts *o, struct options_cli *cli, char *err, const char *first, ...)
{
    char *argv[32] = {"ringsocks"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    memset(cli, 0, sizeof(*cli));
    return options_apply_args(argc, argv, o, cli, err, 512);
}

static void
test_command_line(void **state)
{
    (void)state;
    struct opts o;
    struct options_cli cli;
    char err[512];

    /* 0 = auto on the command line too, as in the file. */
    options_defaults(&o);
    o.shards = o.max_conns = o.hs_slots = 7;
    assert_int_equal(
        apply(&o, &cli, err, "--shards", "0", "--max-conns", "0", "--handshake-slots", "0", NULL),
        0);
    assert_int_equal(o.shards + o.max_conns + o.hs_slots, 0);

    /* A list option replaces the list it was given on top of; the next ones add. */
    options_defaults(&o);
    assert_int_equal(apply(&o, &cli, err, "--listen", "127.0.0.1:1", "--relay", "copy", "--listen",
                           "[::1]:2", "--resolver", "192.0.2.53", "--resolvers", "192.0.2.54:5353",
                           "--admin-host", "a.example", "--admin-hosts", "b.example", NULL),
                     0);
    assert_string_equal(shown("listen", &o), "[\"127.0.0.1:1\", \"[::1]:2\"]");
    assert_string_equal(o.resolvers, "192.0.2.53:53,192.0.2.54:5353");
    assert_string_equal(o.admin_hosts, "a.example,b.example");
    assert_int_equal(o.relay, RELAY_COPY);

    /* Parsed again (a reload) on top of other values: the same result. */
    struct opts again;
    options_defaults(&again);
    assert_int_equal(apply(&again, &cli, err, "--listen", "127.0.0.1:1", "--relay", "copy",
                           "--listen", "[::1]:2", "--resolver", "192.0.2.53", "--resolvers",
                           "192.0.2.54:5353", "--admin-host", "a.example", "--admin-hosts",
                           "b.example", NULL),
                     0);
    assert_memory_equal(&o, &again, sizeof(o));

    assert_int_equal(apply(&o, &cli, err, "--close-denied-on-reload", "true",
                           "--close-removed-users", "false", "-c", "x.conf", "-t", "-T", NULL),
                     0);
    assert_true(o.close_denied);
    assert_false(o.close_removed_users);
    assert_string_equal(cli.config, "x.conf");
    assert_true(cli.test && cli.dump && !cli.help);
    assert_int_equal(apply(&o, &cli, err, "--help", NULL), 0);
    assert_true(cli.help);
    assert_int_equal(apply(&o, &cli, err, "--version", NULL), 0);
    assert_true(cli.version);

    /* Refusals: one line naming the option as typed. */
    assert_int_equal(apply(&o, &cli, err, "--shards", "2000", NULL), -1);
    assert_string_equal(err, "--shards: 2000 is not in 0..1024");
    assert_int_equal(apply(&o, &cli, err, "--resolver", "dns.google", NULL), -1);
    assert_string_equal(err, "--resolver: 'dns.google' is not IP[:PORT]");
    assert_int_equal(apply(&o, &cli, err, "--close-denied-on-reload", "yes", NULL), -1);
    assert_string_equal(err, "--close-denied-on-reload: 'yes' is neither true nor false");
    assert_int_equal(apply(&o, &cli, err, "--access-log", "rel.log", NULL), -1);
    assert_string_equal(err, "--access-log: 'rel.log' is not \"stderr\", \"syslog\", \"off\" or "
                             "an absolute path");
    assert_int_equal(apply(&o, &cli, err, "--no-such-flag", NULL), -1);
    assert_string_equal(err, "unknown option: --no-such-flag");
    assert_int_equal(apply(&o, &cli, err, "--rules", "x", NULL), -1);
    assert_string_equal(err, "unknown option: --rules");
    assert_int_equal(apply(&o, &cli, err, "--shards", NULL), -1);
    assert_string_equal(err, "option needs a value or is unknown: --shards");
    assert_int_equal(apply(&o, &cli, err, "stray", NULL), -1);
    assert_string_equal(err, "unexpected argument: stray");
}

static void
test_usage(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    options_usage(f);
    fclose(f);
    /* Every row but the rules has its option, with its default; no line past 100 columns. */
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        char opt[64];
        snprintf(opt, sizeof(opt), "\n  --%s ", r->key);
        for (char *p = opt; *p; p++)
            *p = *p == '_' ? '-' : *p;
        if (options_file_only(r)) {
            assert_null(strstr(text, opt));
            continue;
        }
        char *at = strstr(text, opt);
        assert_non_null(at);
        char *next = strstr(at + 1, "\n  --");
        char want[128];
        snprintf(want, sizeof(want), r->def ? "default %s" : "default: %s",
                 r->def ? r->def : r->unset);
        char *d = strstr(at, want);
        assert_true(d && (!next || d < next));
        if (r->alias) {
            snprintf(want, sizeof(want), "also --%s", r->alias);
            assert_non_null(strstr(at, want));
        }
    }
    for (char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        assert_true(n <= 100);
        p += n + (p[n] == '\n');
    }
    assert_non_null(strstr(text, "-t, --test"));
    assert_non_null(strstr(text, "-T, --dump-config"));
    free(text);
}

static void
test_diff(void **state)
{
    (void)state;
    struct opts was, now;
    char applied[512], restart[512];
    options_defaults(&was);
    now = was;
    assert_int_equal(options_diff(&was, &now, applied, sizeof(applied), restart, sizeof(restart)),
                     0);
    assert_string_equal(applied, "");
    assert_string_equal(restart, "");
    now.idle_timeout_s = 600;
    now.shards = 4;
    now.close_denied = true;
    strcpy(now.users_file, "/etc/u");
    strcpy(now.access_log, "/var/log/a.log");
    options_clear(row("listen"), &now);
    set(&now, "listen", "[::1]:1080");
    set(&now, "bind_ports", "4000-4001");
    assert_int_equal(options_diff(&was, &now, applied, sizeof(applied), restart, sizeof(restart)),
                     7);
    assert_string_equal(applied, "idle_timeout 7200 -> 600, users unset -> \"/etc/u\", "
                                 "close_denied_on_reload false -> true");
    assert_string_equal(restart, "listen [\"127.0.0.1:1080\"] -> [\"[::1]:1080\"], shards 0 -> 4, "
                                 "bind_ports unset -> \"4000-4001\", "
                                 "access_log \"stderr\" -> \"/var/log/a.log\"");
    /* Either list may be left out; the count stays; a short buffer is cut, terminated. */
    assert_int_equal(options_diff(&was, &now, NULL, 0, restart, 20), 7);
    assert_int_equal(strlen(restart), 19);
    /* Copying the reloadable rows makes them equal; the others still differ. */
    for (size_t i = 0; i < options_n_rows; i++)
        if (options_rows[i].flags & OPTIONS_F_RELOAD)
            options_copy(&options_rows[i], &was, &now);
    assert_int_equal(options_diff(&was, &now, applied, sizeof(applied), NULL, 0), 4);
    assert_string_equal(applied, "");
}

/*
 * A value of row r other than o's, as text (the sample values a test needs
 * for every kind without knowing the keys).
 */
static bool
other_value(const struct options_row *r, struct opts *o)
{
    static const char *const samples[] = {
        "1",         "2",      "4096",      "true",        "false",  "192.0.2.1:1", "192.0.2.1",
        "4000-4999", "/tmp/x", "x.example", "splice",      "copy",   "none",        "password",
        "on",        "off",    "json",      "max_conns=3", "closed", NULL};
    struct opts was = *o;
    char why[256];
    if (r->kind == OPTIONS_UINT)
        return options_set_uint(
                   r, o, *(unsigned *)((char *)o + r->off) == (unsigned)r->max ? r->min : r->max,
                   why, sizeof(why)) == 0;
    for (size_t i = 0; samples[i]; i++) {
        options_clear(r, o);
        if (options_set(r, o, samples[i], why, sizeof(why)) == 0 && !options_equal(r, o, &was))
            return true;
        *o = was;
    }
    return false;
}

/* The snapshot a reload publishes, less what is not a setting. */
static void
policy_settings(const struct opts *o, struct policy *out)
{
    struct policy *p = policy_new(o, NULL, NULL, 1);
    assert_non_null(p);
    *out = *p;
    policy_free(p);
}

/*
 * A row marked "a reload applies it" must reach the snapshot (or be read by
 * the reload itself: users, rules); a row without the mark must not, or the
 * reload report would call it applied, or "needs a restart", wrongly.
 */
static void
test_reload_class_is_policy(void **state)
{
    (void)state;
    struct opts base, o;
    struct policy pb, po;
    options_defaults(&base);
    policy_settings(&base, &pb);
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        /* Read by the reload itself: the users file, and the admin token (ctl.c hands it on);
         * read by the control thread at each upgrade (ctl_upgrade.c): the upgrade settings;
         * the GSS-API service and keytab, whose credential the reload opens (main.c). */
        if (options_file_only(r) || strcmp(r->key, "users") == 0 ||
            strcmp(r->key, "gss_service") == 0 || strcmp(r->key, "gss_keytab") == 0 ||
            strcmp(r->key, "admin_token_file") == 0 || strncmp(r->key, "upgrade_", 8) == 0)
            continue;
        o = base;
        assert_true(other_value(r, &o));
        policy_settings(&o, &po);
        bool differs = memcmp(&pb, &po, sizeof(pb)) != 0;
        if (differs != !!(r->flags & OPTIONS_F_RELOAD))
            fail_msg("%s: %s, but the policy snapshot %s", r->key,
                     r->flags & OPTIONS_F_RELOAD ? "marked reloadable" : "marked restart-only",
                     differs ? "changes with it" : "does not hold it");
    }
    assert_true(row("users")->flags & OPTIONS_F_RELOAD);
    assert_true(row("admin_token_file")->flags & OPTIONS_F_RELOAD);
    assert_true(row("rules")->flags & OPTIONS_F_RELOAD);
}

/* ---- the documentation against the table (run from the repository root) */

static char *
slurp(const char *name)
{
    FILE *f = fopen(name, "r");
    assert_non_null(f);
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    assert_true(n > 0);
    return text;
}

/* The line starting with prefix (at a line start), or NULL. */
static const char *
find_line(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, n) == 0)
            return p;
    return NULL;
}

/* Groff text as read: \(dq \(aq \- \~ \e \fX and \& spelled out or dropped. */
static void
unescape(const char *p, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        if (p[i] != '\\' || i + 1 >= len) {
            out[o++] = p[i];
        } else if (p[i + 1] == '(' && i + 3 < len) {
            out[o++] = !strncmp(p + i + 2, "dq", 2)   ? '"'
                       : !strncmp(p + i + 2, "aq", 2) ? '\''
                                                      : '?';
            i += 3;
        } else if (p[i + 1] == 'f' && i + 2 < len) {
            i += 2;
        } else if (p[i + 1] == '&' || p[i + 1] == '%') {
            i++;
        } else {
            out[o++] = p[i + 1] == '~' ? ' ' : p[i + 1] == 'e' ? '\\' : p[i + 1];
            i++;
        }
    }
    out[o] = '\0';
}

/* "idle-timeout" for "idle_timeout". */
static void
dash(const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "%s", key);
    for (char *p = out; *p; p++)
        *p = *p == '_' ? '-' : *p;
}

/* A problem into the list (problems are collected so one run shows them all). */
static void __attribute__((format(printf, 3, 4)))
problem(char *list, size_t cap, const char *fmt, ...)
{
    size_t used = strlen(list);
    va_list ap;
    va_start(ap, fmt);
    if (used + 2 < cap) {
        list[used++] = '\n';
        vsnprintf(list + used, cap - used, fmt, ap);
    }
    va_end(ap);
}

/* docs/config.md's Settings table: one row per key with option, range, default and reload. */
static void
check_config_md(char *probs, size_t cap)
{
    char *md = slurp("docs/config.md");
    char line[4096], want[512], dashed_key[64], *cells[8];
    char fmt[256];
    struct opts d;
    options_defaults(&d);
    const char *table = strstr(md, "\n## Settings\n");
    assert_non_null(table);
    const char *table_end = strstr(table + 1, "\n## ");
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        snprintf(want, sizeof(want), "| `%s` |", r->key);
        const char *p = find_line(table, want);
        if (!p || (table_end && p > table_end)) {
            problem(probs, cap, "docs/config.md: no row for %s in the Settings table", r->key);
            continue;
        }
        snprintf(line, sizeof(line), "%.*s", (int)strcspn(p, "\n"), p);
        /* Cells split at '|' but not at "\|" (a '|' inside a cell). */
        int n = 0;
        for (char *c = line; *c && n < 8; c++)
            if (*c == '|' && (c == line || c[-1] != '\\')) {
                *c = '\0';
                cells[n++] = c + 1;
            }
        if (n < 7) {
            problem(probs, cap, "docs/config.md: the row of %s has %d cells, not 6", r->key, n - 1);
            continue;
        }
        const char *option = cells[1], *type = cells[2], *def = cells[3], *reload = cells[4];
        dash(r->key, dashed_key, sizeof(dashed_key));
        snprintf(want, sizeof(want), "`--%s ", dashed_key);
        if (!options_file_only(r) && !strstr(option, want))
            problem(probs, cap, "docs/config.md: %s: option cell '%s' lacks %s", r->key, option,
                    want);
        if (r->alias) {
            snprintf(want, sizeof(want), "`--%s`", r->alias);
            if (!strstr(option, want))
                problem(probs, cap, "docs/config.md: %s: option cell lacks the alias %s", r->key,
                        want);
        }
        if (r->kind == OPTIONS_UINT) {
            snprintf(want, sizeof(want), "integer %lld..%lld", r->min, r->max);
            if (!strstr(type, want))
                problem(probs, cap, "docs/config.md: %s: type cell '%s', the table says %s", r->key,
                        type, want);
        }
        for (unsigned w = 0; r->kind == OPTIONS_CHOICE && r->words[w]; w++) {
            snprintf(want, sizeof(want), "`\"%s\"`", r->words[w]);
            if (!strstr(type, want))
                problem(probs, cap, "docs/config.md: %s: type cell '%s' lacks %s", r->key, type,
                        want);
        }
        if (!options_file_only(r)) {
            if (options_format(r, &d, fmt, sizeof(fmt)))
                snprintf(want, sizeof(want), " `%s` ", fmt);
            else
                snprintf(want, sizeof(want), " unset: %s ", r->unset);
            if (strcmp(def, want) != 0)
                problem(probs, cap, "docs/config.md: %s: default cell '%s', the table says '%s'",
                        r->key, def, want);
        }
        const char *cls = r->flags & OPTIONS_F_RELOAD ? " reload " : " restart ";
        if (strcmp(reload, cls) != 0)
            problem(probs, cap, "docs/config.md: %s: on-reload cell '%s', the table says '%s'",
                    r->key, reload, cls);
    }
    /* And no row for a key the program does not have. */
    for (const char *p = find_line(table, "| `"); p && (!table_end || p < table_end);
         p = find_line(p + 1, "| `")) {
        char key[64];
        if (sscanf(p, "| `%63[a-z0-9_]` |", key) == 1 && !options_find(key))
            problem(probs, cap, "docs/config.md: row for '%s', which is no key", key);
    }
    free(md);
}

/* ringsocks.conf(5): each key's head says its range, default and reload class. */
static void
check_conf5(char *probs, size_t cap)
{
    char *man = slurp("docs/ringsocks.conf.5");
    char head[1024], want[512];
    char fmt[256];
    struct opts d;
    options_defaults(&d);
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        snprintf(want, sizeof(want), ".BR %s \" (", r->key);
        const char *p = find_line(man, want);
        if (!p) {
            problem(probs, cap, "docs/ringsocks.conf.5: no '%s' entry for %s", want, r->key);
            continue;
        }
        unescape(p, strcspn(p, "\n"), head, sizeof(head));
        if (r->kind == OPTIONS_UINT) {
            snprintf(want, sizeof(want), "integer %lld to %lld", r->min, r->max);
            if (!strstr(head, want))
                problem(probs, cap, "docs/ringsocks.conf.5: %s: '%s' lacks '%s'", r->key, head,
                        want);
        }
        if (!options_file_only(r)) {
            if (options_format(r, &d, fmt, sizeof(fmt)))
                snprintf(want, sizeof(want), "; default %s;", fmt);
            else
                snprintf(want, sizeof(want), "; unset by default: %s;", r->unset);
            if (!strstr(head, want))
                problem(probs, cap, "docs/ringsocks.conf.5: %s: '%s' lacks '%s'", r->key, head,
                        want);
        }
        snprintf(want, sizeof(want), "; %s)\"", r->flags & OPTIONS_F_RELOAD ? "reload" : "restart");
        if (!strstr(head, want))
            problem(probs, cap, "docs/ringsocks.conf.5: %s: '%s' does not end in '%s'", r->key,
                    head, want);
    }
    free(man);
}

/* ringsocks(8): each option's entry says its range, default and reload class. */
static void
check_man8(char *probs, size_t cap)
{
    char *man = slurp("docs/ringsocks.8");
    char entry[8192], want[512], dashed_key[64], esc[128];
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        if (options_file_only(r))
            continue;
        dash(r->key, dashed_key, sizeof(dashed_key));
        size_t o = 0;
        for (const char *k = dashed_key; *k && o + 3 < sizeof(esc); k++) {
            if (*k == '-')
                esc[o++] = '\\';
            esc[o++] = *k;
        }
        esc[o] = '\0';
        const char *p = NULL;
        for (const char *m = ".BI", *alt = ".BR"; !p && m; m = alt, alt = NULL) {
            snprintf(want, sizeof(want), "%s \\-\\-%s \"", m, esc);
            p = find_line(man, want);
        }
        if (!p) {
            problem(probs, cap, "docs/ringsocks.8: no entry for --%s", dashed_key);
            continue;
        }
        const char *end = strstr(p, "\n.TP");
        const char *sh = strstr(p, "\n.SH");
        if (!end || (sh && sh < end))
            end = sh;
        unescape(p, end ? (size_t)(end - p) : strlen(p), entry, sizeof(entry));
        for (char *c = entry; *c; c++)
            *c = *c == '\n' ? ' ' : *c;
        snprintf(want, sizeof(want), "Default: %s.", r->def ? r->def : r->unset);
        if (!strstr(entry, want))
            problem(probs, cap, "docs/ringsocks.8: --%s: no '%s'", dashed_key, want);
        if (r->kind == OPTIONS_UINT) {
            snprintf(want, sizeof(want), "From %lld to %lld", r->min, r->max);
            if (!strstr(entry, want))
                problem(probs, cap, "docs/ringsocks.8: --%s: no '%s'", dashed_key, want);
        }
        const char *cls =
            r->flags & OPTIONS_F_RELOAD ? "A reload applies it." : "Restart to change.";
        if (!strstr(entry, cls))
            problem(probs, cap, "docs/ringsocks.8: --%s: no '%s'", dashed_key, cls);
        if (r->alias) {
            snprintf(want, sizeof(want), "--%s", r->alias);
            if (!strstr(entry, want))
                problem(probs, cap, "docs/ringsocks.8: --%s: no alias %s", dashed_key, want);
        }
    }
    free(man);
}

/*
 * The documentation cannot drift from the table: every key's option, range,
 * default and reload class in docs/config.md, ringsocks.conf(5) and
 * ringsocks(8) is the table's; a failure lists every disagreement.
 */
static void
test_docs(void **state)
{
    (void)state;
    static char probs[32768];
    probs[0] = '\0';
    check_config_md(probs, sizeof(probs));
    check_conf5(probs, sizeof(probs));
    check_man8(probs, sizeof(probs));
    if (probs[0])
        fail_msg("the documentation disagrees with src/options.c:%s", probs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_command_line),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_reload_class_is_policy),
        cmocka_unit_test(test_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
