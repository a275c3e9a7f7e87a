/*
 * options.c - the table of settings (one row per key) and everything read
 * from it: value parsing and checking, defaults, the command line, the usage
 * text, the reload diff and the configuration printed by -T.
 *
 * Main thread at start, control thread on reload; never on a shard. It
 * holds no state between calls: the getopt table is built on the stack
 * each time. It must never accept a value on the command line that the
 * file refuses, or the other way round: both go through options_set*().
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "admin.h"
#include "egress.h"
#include "fleet_conf.h"
#include "lim.h"
#include "lockout.h"
#include "socks5.h"

/* The longest value options_format() writes: access_log's 4 KiB path, escaped. */
#define OPTIONS_TEXT_MAX (4 * 4096 + 16)

/* ---- value checks of the rows */

static const char *
check_users(const char *v)
{
    return v[0] ? NULL : "is not a file name";
}

/* user, group: "" is no privilege drop. */
static const char *
check_name(const char *v)
{
    return strpbrk(v, ":/\n") ? "is not a user or group name" : NULL;
}

/* An absolute path (a daemon's working directory is /). */
static const char *
check_path(const char *v)
{
    return v[0] == '/' ? NULL : "is not an absolute path";
}

/* A keytab: an absolute path, with or without the FILE: prefix MIT accepts. */
static const char *
check_keytab(const char *v)
{
    return check_path(strncmp(v, "FILE:", 5) == 0 ? v + 5 : v) ? "is not an absolute path" : NULL;
}

static const char *
check_accounting_log(const char *v)
{
    return strcmp(v, "off") == 0 ? NULL
           : check_path(v)       ? "is not \"off\" or an absolute path"
                                 : NULL;
}

/* "stderr", "syslog", "off" or an absolute path (a daemon's working directory is /). */
static const char *
check_access_log(const char *v)
{
    if (strcmp(v, "stderr") == 0 || strcmp(v, "syslog") == 0 || strcmp(v, "off") == 0 ||
        v[0] == '/')
        return NULL;
    return "is not \"stderr\", \"syslog\", \"off\" or an absolute path";
}

static size_t
csv_count(const char *list)
{
    size_t n = list[0] ? 1 : 0;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

/* Is v an element of list? */
static bool
csv_has(const char *list, const char *v)
{
    size_t vlen = strlen(v);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == vlen && memcmp(p, v, len) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* Append one element to a CSV row's list, or -E2BIG (why says the limit) when it is full. */
static int
csv_append(const struct options_row *r, char *list, const char *v, const char *what, char *why,
           size_t whycap)
{
    size_t used = strlen(list);
    if (csv_count(list) >= (size_t)r->max || used + strlen(v) + 2 > r->size) {
        snprintf(why, whycap, "too many %s (at most %lld)", what, r->max);
        return -E2BIG;
    }
    snprintf(list + used, r->size - used, "%s%s", used ? "," : "", v);
    return 0;
}

/* DNS servers as c-ares wants them: "host:port,host:port". */
static int
add_resolver(const struct options_row *r, char *list, const char *v, char *why, size_t whycap)
{
    struct sockaddr_storage ss;
    char text[ADDR_STRLEN];
    if (addr_parse(v, 53, &ss) < 0) {
        snprintf(why, whycap, "'%s' is not IP[:PORT]", v);
        return -EINVAL;
    }
    addr_format((struct sockaddr *)&ss, text, sizeof(text));
    return csv_append(r, list, text, "addresses", why, whycap);
}

/* The words of auth = [...], and the SOCKS5 method each stands for (0: none). */
static const struct {
    const char *word;
    uint8_t method;
} auth_words[] = {
    {"none", 0},
    {"gssapi", SOCKS5_METHOD_GSSAPI},
    {"password", SOCKS5_METHOD_PASSWORD},
};

/* auth: "none" alone, or gssapi and password in preference order, each once. */
static int
add_auth(const struct options_row *r, char *list, const char *v, char *why, size_t whycap)
{
    size_t i = 0;
    while (i < sizeof(auth_words) / sizeof(auth_words[0]) && strcmp(v, auth_words[i].word) != 0)
        i++;
    if (i == sizeof(auth_words) / sizeof(auth_words[0])) {
        snprintf(why, whycap, "'%s' is not \"none\", \"gssapi\" or \"password\"", v);
        return -EINVAL;
    }
    if (list[0] && (i == 0 || strcmp(list, "none") == 0)) {
        snprintf(why, whycap, "\"none\" cannot be listed with another method");
        return -EINVAL;
    }
    if (csv_has(list, v)) {
        snprintf(why, whycap, "'%s' is listed twice", v);
        return -EINVAL;
    }
    return csv_append(r, list, v, "methods", why, whycap);
}

unsigned
options_auth_methods(const struct opts *o, uint8_t methods[OPTS_AUTH_METHODS])
{
    unsigned n = 0;
    const char *p = o->auth;
    while (*p && n < OPTS_AUTH_METHODS) {
        size_t len = strcspn(p, ",");
        for (size_t i = 1; i < sizeof(auth_words) / sizeof(auth_words[0]); i++)
            if (strlen(auth_words[i].word) == len && memcmp(p, auth_words[i].word, len) == 0)
                methods[n++] = auth_words[i].method;
        p += len + (p[len] == ',');
    }
    return n;
}

bool
options_auth_has(const struct opts *o, uint8_t method)
{
    uint8_t m[OPTS_AUTH_METHODS];
    unsigned n = options_auth_methods(o, m);
    for (unsigned i = 0; i < n; i++)
        if (m[i] == method)
            return true;
    return false;
}

/* gss_protection: "N" or "LO-HI", levels 0-2. */
int
options_gss_levels(const char *v, uint8_t *lo, uint8_t *hi)
{
    if (v[0] < '0' || v[0] > '2')
        return -EINVAL;
    *lo = *hi = (uint8_t)(v[0] - '0');
    if (v[1] == '\0')
        return 0;
    if (v[1] != '-' || v[2] < '0' || v[2] > '2' || v[3] != '\0' || v[2] - '0' < *lo)
        return -EINVAL;
    *hi = (uint8_t)(v[2] - '0');
    return 0;
}

static const char *
check_gss_levels(const char *v)
{
    uint8_t lo, hi;
    return options_gss_levels(v, &lo, &hi) < 0 ? "is not a level N or a range LO-HI within 0-2"
                                               : NULL;
}

/* gss_service: a principal (svc/host[@REALM]), a host-based name (svc@host), or "". */
static const char *
check_gss_service(const char *v)
{
    return strpbrk(v, " \t\n\"") ? "is not a service name (svc/host, svc/host@REALM, svc@host)"
                                 : NULL;
}

static int
add_admin_host(const struct options_row *r, char *list, const char *v, char *why, size_t whycap)
{
    int ret = admin_hosts_add(list, r->size, v);
    if (ret == -ENOSPC) {
        snprintf(why, whycap, "the names take more than %zu bytes", r->size - 1);
        return -E2BIG;
    }
    if (ret < 0) {
        snprintf(why, whycap, "'%s' is not a host name (letters, digits, '-', '_', '.'; no port)",
                 v);
        return -EINVAL;
    }
    return 0;
}

/* A source address or prefix of the global egress pool. */
static int
add_egress(const struct options_row *r, char *list, const char *v, char *why, size_t whycap)
{
    if (egress_entry_check(v, why, whycap) < 0)
        return -EINVAL;
    return csv_append(r, list, v, "entries", why, whycap);
}

/* A limits text (lim.h) for a level; the reason in a buffer of the calling thread's. */
static const char *
check_limits_at(const char *v, unsigned keys)
{
    static _Thread_local char why[200];
    struct lim_conf l;
    lim_conf_unset(&l);
    if (strlen(v) >= OPTS_LIMITS_LEN)
        return "is too long";
    return lim_conf_parse(&l, keys, v, why, sizeof(why)) < 0 ? why : NULL;
}

static const char *
check_user_limits(const char *v)
{
    return check_limits_at(v, LIM_KEYS_ALL);
}

static const char *
check_client_limits(const char *v)
{
    return check_limits_at(v, LIM_KEYS_NO_QUOTA);
}

static const char *
check_admin_socket(const char *v)
{
    return v[0] == '/' ? NULL : "is not an absolute path";
}

/* "0660": octal digits, at most 0777 (no set-id or sticky bits on a socket). */
static const char *
check_socket_mode(const char *v)
{
    size_t n = strspn(v, "01234567");
    if (n == 0 || v[n] != '\0' || strtoul(v, NULL, 8) > 0777)
        return "is not a file mode in octal, 0000..0777";
    return NULL;
}

static const char *
check_session_key(const char *v)
{
    return strlen(v) > 255 ? "is longer than 255 bytes" : NULL;
}

static const char *
check_redis(const char *v)
{
    struct fleet_addr a;
    char err[256];
    return fleet_parse_addr(v, &a, err, sizeof(err)) < 0
               ? "is not IP[:PORT], [IPv6][:PORT] or unix:/path (no names: no DNS here)"
               : NULL;
}

/* A key prefix or a node name: printable, no blanks (they go into keys and fields). */
static const char *
check_word(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return "has a blank or a byte that is not printable ASCII";
    return NULL;
}

/* ---- the table */

/* In the order of enum relay_engine, enum socks4_mode, enum log_format. */
static const char *const relay_words[] = {"splice", "copy", "auto", NULL};
static const char *const socks4_words[] = {"auto", "on", "off", NULL};
static const char *const log_format_words[] = {"logfmt", "json", NULL};
static const char *const redis_fallback_words[] = {"open", "closed", NULL};

_Static_assert(sizeof(enum relay_engine) == sizeof(unsigned) &&
                   sizeof(enum socks4_mode) == sizeof(unsigned) &&
                   sizeof(enum log_format) == sizeof(unsigned),
               "CHOICE rows store enums as unsigned");

#define F(f)      offsetof(struct opts, f), sizeof(((struct opts *)0)->f)
#define F2(f, f2) F(f), offsetof(struct opts, f2)
#define R         OPTIONS_F_RELOAD

#define UINT(key, fl, lo, hi, f, def, unset, arg, help)                                       \
    {                                                                                         \
        key, OPTIONS_UINT, fl, lo, hi, F(f), 0, NULL, NULL, NULL, def, unset, arg, NULL, help \
    }
#define BOOL(key, fl, f, def, help)                                                            \
    {                                                                                          \
        key, OPTIONS_BOOL, fl, 0, 1, F(f), 0, NULL, NULL, NULL, def, NULL, "true|false", NULL, \
            help                                                                               \
    }
#define CHOICE(key, fl, f, words, def, help)                                                   \
    {                                                                                          \
        key, OPTIONS_CHOICE, fl, 0, 0, F(f), 0, words, NULL, NULL, def, NULL, NULL, NULL, help \
    }

const struct options_row options_rows[] = {
    /* listeners and threads */
    {"listen", OPTIONS_ADDRS, OPTIONS_F_PORT | OPTIONS_F_NONEMPTY, 0, OPTS_MAX_LISTEN,
     F2(listen, n_listen), NULL, NULL, NULL, "127.0.0.1:1080", NULL, "HOST:PORT", NULL,
     "address to accept clients on, repeatable; [::1]:1080; port 0: any"},
    UINT("shards", 0, 0, 1024, shards, "0", "one per online CPU", "N",
         "shard threads, each pinned to a CPU with its own ring and listeners"),
    CHOICE("relay", 0, relay, relay_words, "auto",
           "relay engine; auto copies until a read fills a buffer, then splices"),
    UINT("max_conns", 0, 0, 16000000, max_conns, "0", "what RLIMIT_NOFILE allows", "N",
         "connections at once, all shards together"),
    UINT("handshake_slots", 0, 0, 1 << 20, hs_slots, "0", "min(max_conns, 4096)", "N",
         "handshakes in progress per shard; more new clients wait"),
    UINT("pipe_size", 0, 4096, 64 << 20, pipe_size, "65536", NULL, "BYTES", "splice pipe size"),
    UINT("pipe_size_max", 0, 0, 64 << 20, pipe_size_max, "1048576", "pipes never grow", "BYTES",
         "pipe size for a direction that fills its pipe (bulk); 0 or <= pipe_size: never grows"),
    UINT("pipe_bulk_budget", 0, 0, 1u << 30, pipe_bulk_budget, "16777216", "no large pipes",
         "BYTES", "bytes of large (pipe_size_max) pipes, all shards together"),
    UINT("buf_size", 0, 1024, 1 << 20, buf_size, "32768", NULL, "BYTES",
         "copy-engine buffer size: the most one receive takes"),
    UINT("bufs", OPTIONS_F_POW2, 1, 32768, buf_count, "256", NULL, "N",
         "copy-engine buffers per shard, a power of two"),
    UINT("defer_accept", 0, 0, 3600, defer_accept_s, "0", "off", "SECONDS",
         "accept a client only once it has sent its first bytes (TCP_DEFER_ACCEPT), waiting "
         "this long; not on transparent listeners"),
    UINT("ring_entries", OPTIONS_F_POW2, 1, 16384, ring_entries, "4096", NULL, "N",
         "submission queue entries of each shard's ring (the completion queue has 4 times "
         "as many), a power of two"),
    UINT("busy_poll", 0, 0, 100000, busy_poll_us, "0", "off", "USEC",
         "after work, look for more this long before sleeping (latency for CPU)"),
    /* timeouts */
    UINT("handshake_timeout", R, 1, 3600, handshake_timeout_s, "10", NULL, "SEC",
         "close a client that sent no complete request this long"),
    UINT("connect_timeout", R, 1, 3600, connect_timeout_s, "10", NULL, "SEC",
         "name resolution plus every connect attempt, together"),
    UINT("happy_eyeballs_delay", R, 0, 10000, happy_eyeballs_delay_ms, "250", "one at a time",
         "MSEC", "a connect not done this long starts the next address alongside (RFC 8305)"),
    UINT("via_retry", R, 0, 86400, via_retry_s, "30", "never skip", "SEC",
         "a parent proxy that failed a tunnel is skipped this long (rule key via)"),
    UINT("idle_timeout", R, 0, 86400 * 365, idle_timeout_s, "7200", "never", "SEC",
         "close a tunnel (or UDP association) with no byte either way this long"),
    UINT("write_timeout", R, 0, 86400, write_timeout_s, "120", "never", "SEC",
         "reset a tunnel whose client or target reads nothing this long"),
    UINT("bind_timeout", R, 1, 86400, bind_timeout_s, "120", NULL, "SEC",
         "BIND waits this long for its inbound connection"),
    UINT("drain_timeout", 0, 0, 86400, drain_timeout_s, "30", NULL, "SEC",
         "on SIGTERM or POST /drain, open tunnels get this long to finish"),
    UINT("upgrade_timeout", R, 1, 3600, upgrade_timeout_s, "30", NULL, "SEC",
         "on SIGUSR2 or POST /upgrade, the new binary must serve within this long"),
    /* liveness */
    UINT("keepalive_idle", 0, 0, 86400, keepalive_idle_s, "120", "no keepalive", "SEC",
         "TCP keepalive on both sockets of a tunnel: first probe after"),
    UINT("keepalive_interval", 0, 1, 86400, keepalive_interval_s, "30", NULL, "SEC",
         "between keepalive probes"),
    UINT("keepalive_count", 0, 1, 127, keepalive_count, "4", NULL, "N",
         "unanswered keepalive probes that end a tunnel"),
    UINT("tcp_user_timeout", 0, 0, 86400, user_timeout_s, "120", "the kernel's default", "SEC",
         "end a tunnel whose sent data stays unacknowledged this long"),
    /* per client address */
    UINT("client_max_handshakes", R, 0, 1 << 20, client_max_handshakes, "64", "no limit", "N",
         "handshakes per client address and shard before it waits last"),
    UINT("client_max_binds", R, 0, 1 << 20, client_max_binds, "64", "no limit", "N",
         "BINDs waiting per client address and shard"),
    UINT("client_max_udp", R, 0, 1 << 20, client_max_udp, "256", "no limit", "N",
         "UDP associations per client address and shard"),
    /* limits (lim.h): the same key=value words as the users file's attributes */
    {"user_limits", OPTIONS_STRING, R, 0, 0, F(user_limits), 0, NULL, check_user_limits, NULL, NULL,
     "no limits", "KEY=VALUE ...", NULL,
     "every user's limits unless its users-file line says otherwise (max_conns=, rate=, burst=, "
     "bw_up=, bw_down=, tunnel_bw_up=, tunnel_bw_down=, quota=, quota_close=)"},
    {"client_limits", OPTIONS_STRING, R, 0, 0, F(client_limits), 0, NULL, check_client_limits, NULL,
     NULL, "no limits", "KEY=VALUE ...", NULL,
     "each client address's limits across all shards (max_conns=, rate=, burst=, bw_up=, "
     "bw_down=, tunnel_bw_up=, tunnel_bw_down=)"},
    /* DNS */
    {"resolvers", OPTIONS_CSV, 0, 0, OPTS_MAX_RESOLVERS, F(resolvers), 0, NULL, NULL, add_resolver,
     NULL, "/etc/resolv.conf", "IP[:PORT]", "resolver",
     "DNS server for domain-name requests, repeatable, tried in order"},
    /* egress: where tunnels leave from (rules and users may name their own pools) */
    {"egress", OPTIONS_CSV, R, 0, OPTS_MAX_EGRESS, F(egress), 0, NULL, NULL, add_egress, NULL,
     "the kernel's choice", "ADDR[/LEN]", NULL,
     "source address or prefix for outgoing tunnels, repeatable; one is picked per tunnel"},
    BOOL("egress_fallback", R, egress_fallback, "false",
         "no pool address of the target's family: let the kernel choose instead of failing"),
    BOOL("username_params", R, username_params, "false",
         "accept user-session-ID[-ttl-SEC] names: one egress address per session"),
    UINT("session_ttl", R, 1, 2592000, session_ttl_s, "600", NULL, "SEC",
         "how long a session keeps its address when its name gives no -ttl-"),
    UINT("session_ttl_max", R, 1, 2592000, session_ttl_max_s, "86400", NULL, "SEC",
         "the longest -ttl- a session name may ask for (longer ones are cut)"),
    {"session_key", OPTIONS_STRING, R, 0, 0, F(session_key), 0, NULL, check_session_key, NULL, NULL,
     "a built-in key", "SECRET", NULL,
     "secret for the sticky session hash; the same on every node of a fleet"},
    /* clients */
    {"auth", OPTIONS_CSV, R, 0, OPTS_AUTH_METHODS, F(auth), 0, NULL, NULL, add_auth, "none", NULL,
     "METHOD", NULL,
     "client authentication: none, or gssapi and/or password in the order the server prefers "
     "them (password: RFC 1929, needs users; gssapi: RFC 1961, needs a keytab)"},
    {"users", OPTIONS_STRING, R, 0, 0, F(users_file), 0, NULL, check_users, NULL, NULL, "no users",
     "FILE", NULL, "the users file: name:crypt-hash lines, re-read on reload"},
    UINT("auth_fail_budget", R, 0, 1000000, auth_fail_budget, "16", "no budget", "N",
         "failed and queued password checks per address and shard"),
    UINT("auth_lockout_failures", R, 0, LOCKOUT_MAX_FAILURES, auth_lockout_failures, "10",
         "no pair lockout", "N",
         "failed logins of one user from one address within auth_lockout_window that lock "
         "the pair"),
    UINT("auth_lockout_address_failures", R, 0, LOCKOUT_MAX_FAILURES, auth_lockout_address_failures,
         "100", "no address lockout", "N",
         "failed logins from one address, any user, within auth_lockout_window that lock it"),
    UINT("auth_lockout_window", R, 1, 86400, auth_lockout_window_s, "60", NULL, "SEC",
         "failed logins are counted this long from the first"),
    UINT("auth_lockout_duration", R, 1, 604800, auth_lockout_duration_s, "300", NULL, "SEC",
         "a locked pair or address is refused this long, unchecked"),
    {"gss_service", OPTIONS_STRING, R, 0, 0, F(gss_service), 0, NULL, check_gss_service, NULL, NULL,
     "any key in the keytab", "NAME", NULL,
     "GSS-API: the service clients ask tickets for (rcmd/HOST, socks/HOST@REALM, rcmd@HOST)"},
    {"gss_keytab", OPTIONS_STRING, R, 0, 0, F(gss_keytab), 0, NULL, check_keytab, NULL, NULL,
     "KRB5_KTNAME, else /etc/krb5.keytab", "FILE", NULL,
     "GSS-API: the keytab holding the service's keys, read at start and on reload"},
    BOOL("gss_strip_realm", R, gss_strip_realm, "false",
         "GSS-API: alice@EXAMPLE.TEST is the user alice for rules, limits and logs"),
    {"gss_protection", OPTIONS_STRING, R, 0, 0, F(gss_protection), 0, NULL, check_gss_levels, NULL,
     "0-2", NULL, "LO-HI", NULL,
     "GSS-API: protection levels that may be granted (0 none, 1 integrity, 2 confidentiality)"},
    CHOICE("socks4", R, socks4, socks4_words, "auto",
           "SOCKS4/4a (no password); auto: only while auth is none"),
    BOOL("http_connect", R, http_connect, "false",
         "HTTP CONNECT proxy requests on the same ports, with the same users and rules"),
    BOOL("close_removed_users", R, close_removed_users, "true",
         "on reload, close the tunnels of users no longer in the users file"),
    BOOL("close_denied_on_reload", R, close_denied, "false",
         "on reload, close the open tunnels the new rules deny"),
    /* BIND and UDP ASSOCIATE */
    {"bind_ports", OPTIONS_PORTS, 0, 0, 0, F2(bind_port_lo, bind_port_hi), NULL, NULL, NULL, NULL,
     "any free port", "LO-HI", NULL, "port range for BIND listening sockets"},
    {"udp_ports", OPTIONS_PORTS, 0, 0, 0, F2(udp_port_lo, udp_port_hi), NULL, NULL, NULL, NULL,
     "any free port", "LO-HI", NULL, "port range for UDP ASSOCIATE sockets"},
    UINT("udp_buffer", 0, 0, 64 << 20, udp_buffer, "0", "the kernel's (net.core.rmem_default)",
         "BYTES",
         "receive and send buffer of each UDP association socket (SO_RCVBUF, "
         "SO_SNDBUF; capped by net.core.rmem_max / wmem_max)"),
    {"udp_advertise", OPTIONS_ADDR, 0, 0, 0, F(udp_advertise), 0, NULL, NULL, NULL, NULL,
     "the address the client's TCP connection reached", "IP", NULL,
     "the address UDP ASSOCIATE replies give (set it behind NAT)"},
    /* logging and control */
    {"access_log", OPTIONS_STRING, 0, 0, 0, F(access_log), 0, NULL, check_access_log, NULL,
     "stderr", NULL, "TARGET", NULL, "one line per tunnel to stderr, syslog, off or a file path"},
    CHOICE("log_format", 0, log_format, log_format_words, "logfmt", "access-log line format"),
    {"pid_file", OPTIONS_STRING, 0, 0, 0, F(pid_file), 0, NULL, check_path, NULL, NULL,
     "no PID file", "PATH", NULL,
     "write the PID here once listening (before dropping privileges), remove it at exit"},
    {"upgrade_binary", OPTIONS_STRING, R, 0, 0, F(upgrade_binary), 0, NULL, check_path, NULL, NULL,
     "the path this binary was started from", "PATH", NULL,
     "the binary SIGUSR2 and POST /upgrade start (with the same command line)"},
    /* accounting and quotas (acctctl.h) */
    {"state_file", OPTIONS_STRING, 0, 0, 0, F(state_file), 0, NULL, check_path, NULL, NULL,
     "nothing kept: quotas start from 0 at every start", "FILE", NULL,
     "keeps quota counts and admin blocks across restarts (written atomically)"},
    UINT("state_interval", R, 1, 60, state_interval_s, "60", NULL, "SEC",
         "write the state file at least this often (and at exit)"),
    {"accounting_log", OPTIONS_STRING, 0, 0, 0, F(accounting_log), 0, NULL, check_accounting_log,
     NULL, "off", NULL, "FILE|off", NULL,
     "one JSON line per active user and interval, appended; reopened on SIGUSR1"},
    UINT("accounting_interval", R, 1, 3600, accounting_interval_s, "60", NULL, "SEC",
         "the accounting log's interval"),
    UINT("metrics_users", R, 0, 10000, metrics_users, "0", "no per-user series", "N",
         "users with Prometheus series of their own; the rest are summed as user=\"other\""),
    /* a fleet's shared state (fleet.h) */
    {"redis", OPTIONS_STRING, 0, 0, 0, F(redis), 0, NULL, check_redis, NULL, NULL, "no fleet",
     "IP:PORT|unix:PATH", NULL,
     "Redis shared by a fleet: max_conns, quotas (and users) across every node"},
    {"redis_password_file", OPTIONS_STRING, 0, 0, 0, F(redis_password_file), 0, NULL, check_path,
     NULL, NULL, "no AUTH", "FILE", NULL, "Redis AUTH password, read at start"},
    {"redis_prefix", OPTIONS_STRING, 0, 0, 0, F(redis_prefix), 0, NULL, check_word, NULL,
     "ringsocks:", NULL, "TEXT", NULL, "the start of every Redis key (one fleet per prefix)"},
    {"redis_node", OPTIONS_STRING, 0, 0, 0, F(redis_node), 0, NULL, check_word, NULL, NULL,
     "the host name", "NAME", NULL, "this node's name in Redis: unique in the fleet, stable"},
    UINT("redis_interval", 0, 100, 60000, redis_interval_ms, "1000", NULL, "MSEC",
         "leases and quota figures are renewed this often"),
    CHOICE("redis_fallback", 0, redis_fallback, redis_fallback_words, "open",
           "Redis away: open lets a user up to its max_conns on this node; closed refuses"),
    BOOL("redis_users", 0, redis_users, "false",
         "the users table lives in Redis (the users file only until Redis answers)"),
    {"admin", OPTIONS_ADDR, OPTIONS_F_OFF | OPTIONS_F_PORT, 0, 0, F(admin), 0, NULL, NULL, NULL,
     "127.0.0.1:9180", NULL, "HOST:PORT|off", NULL,
     "admin endpoint (/metrics /healthz /reload /drain ...); beyond loopback only with a token"},
    {"admin_token_file", OPTIONS_STRING, R, 0, 0, F(admin_token_file), 0, NULL, check_users, NULL,
     NULL, "no token", "FILE", NULL,
     "bearer token every admin request but GET /healthz must carry (mode 0600, 16+ bytes)"},
    {"admin_socket", OPTIONS_STRING, 0, 0, 0, F(admin_socket), 0, NULL, check_admin_socket, NULL,
     NULL, "none", "PATH", NULL,
     "the admin endpoint on a Unix socket too, guarded by its file mode"},
    {"admin_socket_mode", OPTIONS_STRING, 0, 0, 0, F(admin_socket_mode), 0, NULL, check_socket_mode,
     NULL, "0660", NULL, "MODE", NULL,
     "admin_socket's file mode (octal); its owner is the user and group run as"},
    {"admin_hosts", OPTIONS_CSV, 0, 0, 0, F(admin_hosts), 0, NULL, NULL, add_admin_host, NULL,
     "addresses and localhost", "NAME", "admin-host",
     "a host name the admin endpoint answers to, repeatable"},
    {"user", OPTIONS_STRING, 0, 0, 0, F(user), 0, NULL, check_name, NULL, NULL,
     "keep the starting user", "USER", NULL, "after binding, drop to this user"},
    {"group", OPTIONS_STRING, 0, 0, 0, F(group), 0, NULL, check_name, NULL, NULL,
     "the user's group", "GROUP", NULL, "after binding, drop to this group"},
    BOOL("seccomp", 0, seccomp, "true",
         "after start-up, a seccomp filter allows only the system calls the server makes"),
    /* access rules and the address sets they name: the file only */
    {"address_sets", OPTIONS_SETS, R, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL,
     "only the built-in sets: @special, @private, @loopback, @metadata", NULL, NULL,
     "named lists of networks, for the rules' from and to as \"@name\""},
    {"rules", OPTIONS_RULES, R, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, "loopback clients only",
     NULL, NULL, "access rules, first match wins"},
};

const size_t options_n_rows = sizeof(options_rows) / sizeof(options_rows[0]);

_Static_assert(offsetof(struct opts, bind_port_hi) == offsetof(struct opts, bind_port_lo) + 2 &&
                   offsetof(struct opts, udp_port_hi) == offsetof(struct opts, udp_port_lo) + 2,
               "PORTS rows keep lo and hi side by side");

const struct options_row *
options_find(const char *key)
{
    for (size_t i = 0; i < options_n_rows; i++)
        if (strcmp(options_rows[i].key, key) == 0)
            return &options_rows[i];
    return NULL;
}

const char *
options_relay_name(enum relay_engine e)
{
    return (unsigned)e < sizeof(relay_words) / sizeof(relay_words[0]) - 1 ? relay_words[e] : "?";
}

bool
options_is_list(const struct options_row *r)
{
    return r->kind == OPTIONS_ADDRS || r->kind == OPTIONS_CSV;
}

/* ---- setting values */

#define FIELD(r, o, type)  ((type *)((char *)(o) + (r)->off))
#define CFIELD(r, o, type) ((const type *)((const char *)(o) + (r)->off))

int
options_parse_ports(const char *s, bool allow_single, uint16_t *lo, uint16_t *hi)
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
 * A whole string as an integer, as libconfig writes them: an optional sign,
 * then decimal or 0x hex (no octal: "010" is ten). Beyond long long it
 * saturates, so the range check reports it rather than a wrapped value.
 */
static int
parse_int(const char *s, long long *v)
{
    const char *p = s;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    int base = p[0] == '0' && (p[1] == 'x' || p[1] == 'X') ? 16 : 10;
    const char *digits = base == 16 ? p + 2 : p;
    if (!(*digits >= '0' && *digits <= '9') &&
        !(base == 16 && ((*digits | 0x20) >= 'a' && (*digits | 0x20) <= 'f')))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long u = strtoull(digits, &end, base);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || u > LLONG_MAX)
        *v = neg ? LLONG_MIN : LLONG_MAX;
    else
        *v = neg ? -(long long)u : (long long)u;
    return 0;
}

int
options_set_uint(const struct options_row *r, struct opts *o, long long v, char *why, size_t whycap)
{
    if (v < r->min || v > r->max) {
        snprintf(why, whycap, "%lld is not in %lld..%lld", v, r->min, r->max);
        return -EINVAL;
    }
    if ((r->flags & OPTIONS_F_POW2) && (v & (v - 1))) {
        snprintf(why, whycap, "%lld is not a power of two", v);
        return -EINVAL;
    }
    *FIELD(r, o, unsigned) = (unsigned)v;
    return 0;
}

void
options_set_bool(const struct options_row *r, struct opts *o, bool v)
{
    *FIELD(r, o, bool) = v;
}

void
options_clear(const struct options_row *r, struct opts *o)
{
    if (r->kind == OPTIONS_ADDRS) {
        memset(FIELD(r, o, char), 0, r->size);
        *(unsigned *)((char *)o + r->off2) = 0;
    } else if (r->kind == OPTIONS_CSV) {
        FIELD(r, o, char)[0] = '\0';
    }
}

/* "a", "b" or "c": the words of a CHOICE row, for its message and usage. */
static void
join_words(const char *const *words, const char *quote, const char *sep, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; words[i]; i++) {
        int n = snprintf(buf + used, cap - used, "%s%s%s%s", i ? sep : "", quote, words[i], quote);
        if (n < 0 || (size_t)n >= cap - used)
            return;
        used += (size_t)n;
    }
}

static int
set_addr(const struct options_row *r, struct opts *o, const char *text, char *why, size_t whycap)
{
    struct sockaddr_storage *ss = FIELD(r, o, struct sockaddr_storage);
    if ((r->flags & OPTIONS_F_OFF) && strcmp(text, "off") == 0) {
        memset(ss, 0, sizeof(*ss));
        return 0;
    }
    struct sockaddr_storage tmp;
    if (addr_parse(text, r->flags & OPTIONS_F_PORT ? -1 : 0, &tmp) < 0) {
        if (r->flags & OPTIONS_F_OFF)
            snprintf(why, whycap, "'%s' is neither IP:PORT, [IPv6]:PORT nor \"off\"", text);
        else if (r->flags & OPTIONS_F_PORT)
            snprintf(why, whycap, "'%s' is not IP:PORT or [IPv6]:PORT", text);
        else
            snprintf(why, whycap, "'%s' is not an IP address", text);
        return -EINVAL;
    }
    *ss = tmp;
    return 0;
}

static int
add_addr(const struct options_row *r, struct opts *o, const char *text, char *why, size_t whycap)
{
    unsigned *n = (unsigned *)((char *)o + r->off2);
    if (*n >= (unsigned)r->max) {
        snprintf(why, whycap, "more than %lld addresses", r->max);
        return -E2BIG;
    }
    struct sockaddr_storage *list = FIELD(r, o, struct sockaddr_storage);
    if (addr_parse(text, r->flags & OPTIONS_F_PORT ? -1 : 0, &list[*n]) < 0) {
        memset(&list[*n], 0, sizeof(list[*n]));
        snprintf(why, whycap, "'%s' is not IP:PORT or [IPv6]:PORT", text);
        return -EINVAL;
    }
    (*n)++;
    return 0;
}

int
options_set(const struct options_row *r, struct opts *o, const char *text, char *why, size_t whycap)
{
    switch (r->kind) {
    case OPTIONS_UINT: {
        long long v;
        if (parse_int(text, &v) < 0) {
            snprintf(why, whycap, "'%s' is not an integer", text);
            return -EINVAL;
        }
        return options_set_uint(r, o, v, why, whycap);
    }
    case OPTIONS_BOOL:
        /* libconfig's spelling, in any case. */
        if (strcasecmp(text, "true") == 0 || strcasecmp(text, "false") == 0) {
            options_set_bool(r, o, strcasecmp(text, "true") == 0);
            return 0;
        }
        snprintf(why, whycap, "'%s' is neither true nor false", text);
        return -EINVAL;
    case OPTIONS_CHOICE: {
        char list[128];
        for (unsigned i = 0; r->words[i]; i++) {
            if (strcmp(text, r->words[i]) == 0) {
                *FIELD(r, o, unsigned) = i;
                return 0;
            }
        }
        join_words(r->words, "\"", ", ", list, sizeof(list));
        snprintf(why, whycap, "'%s' is not one of %s", text, list);
        return -EINVAL;
    }
    case OPTIONS_STRING: {
        const char *problem = r->check ? r->check(text) : NULL;
        if (problem) {
            snprintf(why, whycap, "'%s' %s", text, problem);
            return -EINVAL;
        }
        if (strlen(text) >= r->size) {
            snprintf(why, whycap, "'%.200s' is longer than %zu bytes", text, r->size - 1);
            return -EINVAL;
        }
        strcpy(FIELD(r, o, char), text);
        return 0;
    }
    case OPTIONS_PORTS: {
        uint16_t lo, hi;
        if (options_parse_ports(text, false, &lo, &hi) < 0) {
            snprintf(why, whycap, "'%s' is not a port range LO-HI within 1-65535", text);
            return -EINVAL;
        }
        *FIELD(r, o, uint16_t) = lo;
        *(uint16_t *)((char *)o + r->off2) = hi;
        return 0;
    }
    case OPTIONS_ADDR:
        return set_addr(r, o, text, why, whycap);
    case OPTIONS_ADDRS:
        return add_addr(r, o, text, why, whycap);
    case OPTIONS_CSV:
        return r->add(r, FIELD(r, o, char), text, why, whycap);
    case OPTIONS_RULES:
    case OPTIONS_SETS:
        break;
    }
    snprintf(why, whycap, "is set in the configuration file only");
    return -EINVAL;
}

void
options_defaults(struct opts *o)
{
    char why[256];
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        /* The defaults are values like any other; test_options checks they all parse. */
        if (r->def)
            options_set(r, o, r->def, why, sizeof(why));
    }
}

/* ---- formatting */

void
options_append(char *buf, size_t cap, size_t *used, const char *fmt, ...)
{
    if (*used + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, cap - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used = (size_t)n < cap - *used ? *used + (size_t)n : cap - 1;
}

/* s as a libconfig string: quoted, with the escapes its scanner knows. */
static void
put_quoted(char *buf, size_t cap, size_t *used, const char *s, size_t len)
{
    options_append(buf, cap, used, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            options_append(buf, cap, used, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            options_append(buf, cap, used, "\\x%02x", ch);
        else
            options_append(buf, cap, used, "%c", ch);
    }
    options_append(buf, cap, used, "\"");
}

void
options_quote(const char *s, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    put_quoted(buf, cap, &used, s, strlen(s));
}

/* "; key = [\"a\", \"b\"]" from the comma-separated csv, in the file's syntax. */
static void
put_csv_list(char *buf, size_t cap, size_t *used, const char *key, const char *csv)
{
    options_append(buf, cap, used, "; %s = [", key);
    for (const char *p = csv; *p;) {
        size_t len = strcspn(p, ",");
        options_append(buf, cap, used, "%s\"%.*s\"", p == csv ? "" : ", ", (int)len, p);
        p += len + (p[len] == ',');
    }
    options_append(buf, cap, used, "]");
}

/* An address as its row spells it: no ":0" where the port is optional and none was given. */
static void
put_addr(const struct options_row *r, const struct sockaddr_storage *ss, char *buf, size_t cap,
         size_t *used)
{
    char text[ADDR_STRLEN];
    addr_format((const struct sockaddr *)ss, text, sizeof(text));
    size_t len = strlen(text);
    if (!(r->flags & OPTIONS_F_PORT) && len > 2 && strcmp(text + len - 2, ":0") == 0)
        len -= 2;
    put_quoted(buf, cap, used, text, len);
}

bool
options_format(const struct options_row *r, const struct opts *o, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    switch (r->kind) {
    case OPTIONS_UINT:
        options_append(buf, cap, &used, "%u", *CFIELD(r, o, unsigned));
        return true;
    case OPTIONS_BOOL:
        options_append(buf, cap, &used, "%s", *CFIELD(r, o, bool) ? "true" : "false");
        return true;
    case OPTIONS_CHOICE: {
        unsigned v = *CFIELD(r, o, unsigned);
        unsigned n = 0;
        while (r->words[n])
            n++;
        options_append(buf, cap, &used, "\"%s\"", v < n ? r->words[v] : "?");
        return true;
    }
    case OPTIONS_STRING: {
        const char *s = CFIELD(r, o, char);
        if (!s[0])
            return false;
        put_quoted(buf, cap, &used, s, strlen(s));
        return true;
    }
    case OPTIONS_PORTS: {
        uint16_t lo = *CFIELD(r, o, uint16_t), hi = *(const uint16_t *)((const char *)o + r->off2);
        if (lo == 0)
            return false;
        options_append(buf, cap, &used, "\"%u-%u\"", lo, hi);
        return true;
    }
    case OPTIONS_ADDR: {
        const struct sockaddr_storage *ss = CFIELD(r, o, struct sockaddr_storage);
        if (ss->ss_family == AF_UNSPEC) {
            if (!(r->flags & OPTIONS_F_OFF))
                return false;
            options_append(buf, cap, &used, "\"off\"");
            return true;
        }
        put_addr(r, ss, buf, cap, &used);
        return true;
    }
    case OPTIONS_ADDRS: {
        unsigned n = *(const unsigned *)((const char *)o + r->off2);
        const struct sockaddr_storage *list = CFIELD(r, o, struct sockaddr_storage);
        /* Listeners with settings of their own are groups, and a list holding groups is
         * written ( ... ) in the file's syntax. */
        bool groups = list == o->listen && o->n_listen_out;
        options_append(buf, cap, &used, groups ? "(" : "[");
        for (unsigned i = 0; i < n; i++) {
            options_append(buf, cap, &used, "%s", i ? ", " : "");
            const struct opts_listen_out *lo = NULL;
            for (unsigned k = 0; groups && k < o->n_listen_out && !lo; k++)
                if (memcmp(&o->listen_out[k].addr, &list[i], sizeof(list[i])) == 0)
                    lo = &o->listen_out[k];
            if (!lo) {
                put_addr(r, &list[i], buf, cap, &used);
                continue;
            }
            options_append(buf, cap, &used, "{ address = ");
            put_addr(r, &list[i], buf, cap, &used);
            if (strcmp(lo->egress, "same") == 0)
                options_append(buf, cap, &used, "; egress = \"same\"");
            else if (lo->egress[0])
                put_csv_list(buf, cap, &used, "egress", lo->egress);
            if (lo->proxy_protocol) {
                options_append(buf, cap, &used, "; proxy_protocol = true");
                put_csv_list(buf, cap, &used, "from", lo->from);
            }
            if (lo->transparent)
                options_append(buf, cap, &used, "; mode = \"transparent\"");
            if (lo->auth_none)
                options_append(buf, cap, &used, "; auth = \"none\"");
            options_append(buf, cap, &used, "; }");
        }
        options_append(buf, cap, &used, groups ? ")" : "]");
        return true;
    }
    case OPTIONS_CSV: {
        const char *p = CFIELD(r, o, char);
        options_append(buf, cap, &used, "[");
        while (*p) {
            size_t len = strcspn(p, ",");
            options_append(buf, cap, &used, "%s", used > 1 ? ", " : "");
            put_quoted(buf, cap, &used, p, len);
            p += len + (p[len] == ',');
        }
        options_append(buf, cap, &used, "]");
        return true;
    }
    case OPTIONS_RULES:
    case OPTIONS_SETS:
        break;
    }
    return false;
}

bool
options_equal(const struct options_row *r, const struct opts *a, const struct opts *b)
{
    char *ta = malloc(2 * OPTIONS_TEXT_MAX);
    if (!ta)
        return memcmp((const char *)a + r->off, (const char *)b + r->off, r->size) == 0;
    char *tb = ta + OPTIONS_TEXT_MAX;
    bool sa = options_format(r, a, ta, OPTIONS_TEXT_MAX);
    bool sb = options_format(r, b, tb, OPTIONS_TEXT_MAX);
    bool eq = sa == sb && strcmp(ta, tb) == 0;
    free(ta);
    return eq;
}

void
options_copy(const struct options_row *r, struct opts *dst, const struct opts *src)
{
    if (options_file_only(r))
        return;
    memcpy((char *)dst + r->off, (const char *)src + r->off, r->size);
    if (r->kind == OPTIONS_ADDRS)
        memcpy((char *)dst + r->off2, (const char *)src + r->off2, sizeof(unsigned));
    else if (r->kind == OPTIONS_PORTS)
        memcpy((char *)dst + r->off2, (const char *)src + r->off2, sizeof(uint16_t));
}

unsigned
options_diff(const struct opts *was, const struct opts *now, char *applied, size_t applied_cap,
             char *restart, size_t restart_cap)
{
    size_t used_a = 0, used_r = 0;
    unsigned n = 0;
    char *old = malloc(2 * OPTIONS_TEXT_MAX);
    if (applied && applied_cap)
        applied[0] = '\0';
    if (restart && restart_cap)
        restart[0] = '\0';
    if (!old)
        return 0;
    char *new = old + OPTIONS_TEXT_MAX;
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        if (options_file_only(r))
            continue;
        bool so = options_format(r, was, old, OPTIONS_TEXT_MAX);
        bool sn = options_format(r, now, new, OPTIONS_TEXT_MAX);
        if (so == sn && strcmp(old, new) == 0)
            continue;
        n++;
        bool reload = r->flags & OPTIONS_F_RELOAD;
        char *buf = reload ? applied : restart;
        size_t cap = reload ? applied_cap : restart_cap;
        size_t *used = reload ? &used_a : &used_r;
        if (buf)
            options_append(buf, cap, used, "%s%s %s -> %s", *used ? ", " : "", r->key,
                           so ? old : "unset", sn ? new : "unset");
    }
    free(old);
    return n;
}

void
options_print(FILE *f, const struct opts *o)
{
    char *text = malloc(OPTIONS_TEXT_MAX);
    if (!text)
        return;
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        if (options_file_only(r))
            continue;
        if (options_format(r, o, text, OPTIONS_TEXT_MAX))
            fprintf(f, "%s = %s;\n", r->key, text);
        else
            fprintf(f, "# %s is unset: %s\n", r->key, r->unset);
    }
    free(text);
}

/* ---- the command line */

enum {
    OPT_HELP = 1000,
    OPT_VERSION,
    OPT_ROW = 2000, /* + row index */
};

/* "--idle-timeout" for "idle_timeout" (name without the dashes in front). */
static void
dashed(const char *key, char *out, size_t cap)
{
    size_t i = 0;
    for (; key[i] && i + 1 < cap; i++)
        out[i] = key[i] == '_' ? '-' : key[i];
    out[i] = '\0';
}

#define OPTIONS_MAX_ROWS 96
#define OPTIONS_NAME_MAX 40
_Static_assert(sizeof(options_rows) / sizeof(options_rows[0]) <= OPTIONS_MAX_ROWS,
               "options_apply_args' getopt table holds every row");

int
options_apply_args(int argc, char **argv, struct opts *o, struct options_cli *cli, char *err,
                   size_t errlen)
{
    struct option longopts[2 * OPTIONS_MAX_ROWS + 8];
    char names[OPTIONS_MAX_ROWS][OPTIONS_NAME_MAX];
    bool list_seen[OPTIONS_MAX_ROWS] = {false};
    size_t n = 0;
    char why[512];

    err[0] = '\0';
    for (size_t i = 0; i < options_n_rows && i < OPTIONS_MAX_ROWS; i++) {
        const struct options_row *r = &options_rows[i];
        if (options_file_only(r))
            continue;
        dashed(r->key, names[i], sizeof(names[i]));
        longopts[n++] = (struct option){names[i], required_argument, NULL, OPT_ROW + (int)i};
        if (r->alias)
            longopts[n++] = (struct option){r->alias, required_argument, NULL, OPT_ROW + (int)i};
    }
    longopts[n++] = (struct option){"config", required_argument, NULL, 'c'};
    longopts[n++] = (struct option){"test", no_argument, NULL, 't'};
    longopts[n++] = (struct option){"dump-config", no_argument, NULL, 'T'};
    longopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    longopts[n++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    opterr = 0;
    optind = 0; /* glibc: a full re-initialisation, so the command line can be parsed again */
    int c, idx = -1;
    while ((c = getopt_long(argc, argv, "c:tT", longopts, &idx)) != -1) {
        switch (c) {
        case 'c':
            cli->config = optarg;
            break;
        case 't':
            cli->test = true;
            break;
        case 'T':
            cli->dump = true;
            break;
        case OPT_HELP:
            cli->help = true;
            return 0;
        case OPT_VERSION:
            cli->version = true;
            return 0;
        case '?':
            if (optopt)
                snprintf(err, errlen, "option needs a value or is unknown: %s", argv[optind - 1]);
            else
                snprintf(err, errlen, "unknown option: %s", argv[optind - 1]);
            return -1;
        default: {
            size_t i = (size_t)(c - OPT_ROW);
            const struct options_row *r = &options_rows[i];
            /* The name as typed (an alias too) for the message. */
            const char *name = idx >= 0 ? longopts[idx].name : names[i];
            if (options_is_list(r) && !list_seen[i]) {
                options_clear(r, o); /* the command line's list replaces the file's */
                list_seen[i] = true;
            }
            if (options_set(r, o, optarg, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "--%s: %s", name, why);
                return -1;
            }
            break;
        }
        }
        idx = -1;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument: %s", argv[optind]);
        return -1;
    }
    return 0;
}

/* The range of a row, its default and its reload class, as the usage text shows them. */
static void
row_summary(const struct options_row *r, char *buf, size_t cap)
{
    size_t used = 0;
    if (r->kind == OPTIONS_UINT)
        options_append(buf, cap, &used, "%lld..%lld%s%s%s; ", r->min, r->max,
                       r->flags & OPTIONS_F_POW2 ? " power of two" : "", r->unset ? ", 0: " : "",
                       r->unset ? r->unset : "");
    if (r->def)
        options_append(buf, cap, &used, "default %s", r->def);
    else
        options_append(buf, cap, &used, "default: %s", r->unset);
    if (options_is_list(r))
        options_append(buf, cap, &used, "; repeat for a list");
    options_append(buf, cap, &used, "; %s",
                   r->flags & OPTIONS_F_RELOAD ? "reload applies it" : "needs a restart");
}

/* text from column col on, wrapped at spaces to 100 columns, continued at column 31. */
static void
put_wrapped(FILE *f, size_t col, const char *text)
{
    enum { INDENT = 31, WIDTH = 100 };
    while (*text) {
        size_t start = col > INDENT ? col : INDENT;
        size_t room = WIDTH - start, len = strlen(text);
        if (len > room) {
            len = room;
            while (len > 0 && text[len] != ' ')
                len--;
            if (len == 0)
                len = strcspn(text, " ");
        }
        fprintf(f, "%*s%.*s\n", (int)(col > INDENT ? 0 : INDENT - col), "", (int)len, text);
        text += len;
        while (*text == ' ')
            text++;
        col = 0;
    }
}

void
options_usage(FILE *f)
{
    char name[OPTIONS_NAME_MAX + 160], arg[128], summary[512];
    fputs("usage: ringsocks [-c FILE] [-t | -T] [--KEY VALUE ...]\n"
          "  -c, --config FILE            configuration file (the command line overrides it)\n"
          "  -t, --test                   check the configuration, the users file and what\n"
          "                               start and reload need, then exit (0 ok, 1 errors)\n"
          "  -T, --dump-config            check, then print the effective configuration\n"
          "  --help, --version\n"
          "Every key of the configuration file is an option: KEY with '-' for '_', the same\n"
          "values and ranges (ringsocks.conf(5)):\n",
          f);
    for (size_t i = 0; i < options_n_rows; i++) {
        const struct options_row *r = &options_rows[i];
        if (options_file_only(r))
            continue;
        char key[OPTIONS_NAME_MAX];
        dashed(r->key, key, sizeof(key));
        if (r->kind == OPTIONS_CHOICE)
            join_words(r->words, "", "|", arg, sizeof(arg));
        else
            snprintf(arg, sizeof(arg), "%s", r->arg);
        int n = snprintf(name, sizeof(name), "  --%s %s ", key, arg);
        fputs(name, f);
        put_wrapped(f, n > 0 ? (size_t)n : 0, r->help);
        size_t used = 0;
        options_append(summary, sizeof(summary), &used, "(%s%s%s", r->alias ? "also --" : "",
                       r->alias ? r->alias : "", r->alias ? "; " : "");
        row_summary(r, summary + used, sizeof(summary) - used);
        used = strlen(summary);
        options_append(summary, sizeof(summary), &used, ")");
        put_wrapped(f, 0, summary);
    }
}
