/*
 * test_log.c - access-log formatting (logfmt and JSON, hostile strings,
 * truncation, time) and the logger: two producer threads into a file,
 * drops on a tiny ring, reopen after a rename, stderr and off targets.
 * Links log.o with conn_end.o (the end-reason names) and addr.o.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn_end.h"
#include "httpconnect.h"
#include "log.h"
#include "socks5.h"
#include "transparent.h"

/* 2026-11-21T21:40:00.123Z */
#define T0_MS 1795297200123ull

static void
set_v4(union sockaddr_inx *a, const char *ip, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->v4.sin_family = AF_INET;
    a->v4.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &a->v4.sin_addr), 1);
}

static void
set_v6(union sockaddr_inx *a, const char *ip, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->v6.sin6_family = AF_INET6;
    a->v6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a->v6.sin6_addr), 1);
}

static void
base_rec(struct log_rec *r)
{
    memset(r, 0, sizeof(*r));
    r->start_ms = T0_MS;
    r->duration_ms = 250;
    r->shard = 0;
    r->slot = 7;
    r->gen = 2;
    r->port = 443;
    r->version = 5;
    r->cmd = SOCKS5_CMD_CONNECT;
    r->rep = 0;
    r->end = END_DONE;
    set_v4(&r->client, "127.0.0.1", 50000);
    set_v4(&r->resolved, "93.184.216.34", 443);
    r->bytes_up = 123;
    r->bytes_down = 4567;
    strcpy(r->user, "alice");
    strcpy(r->host, "example.com");
}

static size_t
fmt(const struct log_rec *r, enum log_format f, char *buf, size_t cap)
{
    return log_format(r, f, conn_end_str((enum conn_end)r->end), buf, cap);
}

static void
expect(const struct log_rec *r, enum log_format f, const char *want)
{
    char buf[4096];
    size_t n = fmt(r, f, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

/* ---- a strict reader for the one-line JSON objects log_format writes */

struct jcur {
    const char *p;
};

static bool
j_string(struct jcur *c, char *out, size_t cap, size_t *outlen)
{
    size_t n = 0;
    if (*c->p != '"')
        return false;
    c->p++;
    for (;;) {
        unsigned char ch = (unsigned char)*c->p;
        unsigned v;
        if (ch == '"')
            break;
        if (ch < 0x20 || ch >= 0x7f) /* must be escaped; and ASCII keeps it valid UTF-8 */
            return false;
        if (ch == '\\') {
            c->p++;
            if (*c->p == '"' || *c->p == '\\' || *c->p == '/') {
                v = (unsigned char)*c->p;
                c->p++;
            } else if (*c->p == 'u') {
                char hex[5] = {0};
                memcpy(hex, c->p + 1, 4);
                if (strspn(hex, "0123456789abcdefABCDEF") != 4)
                    return false;
                v = (unsigned)strtoul(hex, NULL, 16);
                if (v > 0xff) /* log_format maps bytes to U+0000..U+00FF */
                    return false;
                c->p += 5;
            } else {
                return false;
            }
        } else {
            v = ch;
            c->p++;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)v;
    }
    c->p++;
    out[n] = '\0';
    if (outlen)
        *outlen = n;
    return true;
}

/* Parse the line; when key is found, copy its value (string bytes, or the literal) out. */
static bool
json_line(const char *line, const char *key, char *val, size_t cap, bool *found)
{
    struct jcur c = {line};
    char k[64], v[1024];
    *found = false;
    if (*c.p++ != '{')
        return false;
    for (;;) {
        if (!j_string(&c, k, sizeof(k), NULL) || *c.p++ != ':')
            return false;
        if (*c.p == '"') {
            size_t vl;
            if (!j_string(&c, v, sizeof(v), &vl))
                return false;
        } else if (strncmp(c.p, "null", 4) == 0) {
            strcpy(v, "null");
            c.p += 4;
        } else if (*c.p == '{') {
            /* udp_drop: an object of numbers, kept as its text. */
            const char *start = c.p++;
            while (*c.p != '}') {
                char ik[64];
                if (!j_string(&c, ik, sizeof(ik), NULL) || *c.p++ != ':' ||
                    strspn(c.p, "0123456789") == 0)
                    return false;
                c.p += strspn(c.p, "0123456789");
                if (*c.p == ',')
                    c.p++;
                else if (*c.p != '}')
                    return false;
            }
            c.p++;
            snprintf(v, sizeof(v), "%.*s", (int)(c.p - start), start);
        } else {
            size_t d = strspn(c.p, "0123456789");
            if (d == 0 || (d > 1 && c.p[0] == '0') || d >= sizeof(v))
                return false;
            memcpy(v, c.p, d);
            v[d] = '\0';
            c.p += d;
        }
        if (key && strcmp(k, key) == 0) {
            *found = true;
            snprintf(val, cap, "%s", v);
        }
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        break;
    }
    return c.p[0] == '}' && c.p[1] == '\n' && c.p[2] == '\0';
}

/* ---- a logfmt reader: key=bare or key="quoted with \" \\ \xNN" */

static bool
logfmt_get(const char *line, const char *key, char *val, size_t cap, bool *found)
{
    const char *p = line;
    *found = false;
    for (;;) {
        const char *eq = strchr(p, '=');
        char v[1024];
        size_t n = 0;
        if (!eq)
            return false;
        size_t kl = (size_t)(eq - p);
        bool match = strlen(key) == kl && strncmp(p, key, kl) == 0;
        p = eq + 1;
        if (*p == '"') {
            for (p++; *p != '"'; p++) {
                unsigned char ch = (unsigned char)*p;
                if (ch < 0x20 || ch >= 0x7f || n + 1 >= sizeof(v))
                    return false;
                if (ch == '\\') {
                    p++;
                    if (*p == '"' || *p == '\\') {
                        ch = (unsigned char)*p;
                    } else if (*p == 'x') {
                        char hex[3] = {p[1], p[2], 0};
                        if (strspn(hex, "0123456789abcdef") != 2)
                            return false;
                        ch = (unsigned char)strtoul(hex, NULL, 16);
                        p += 2;
                    } else {
                        return false;
                    }
                }
                v[n++] = (char)ch;
            }
            p++;
        } else {
            while (*p && *p != ' ' && *p != '\n') {
                unsigned char ch = (unsigned char)*p;
                if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '=' || n + 1 >= sizeof(v))
                    return false;
                v[n++] = *p++;
            }
        }
        v[n] = '\0';
        if (match) {
            *found = true;
            snprintf(val, cap, "%s", v);
        }
        if (*p == '\n')
            return p[1] == '\0';
        if (*p++ != ' ')
            return false;
    }
}

/* ---- formatting */

static void
test_logfmt_ipv4(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 user=alice "
           "cmd=connect "
           "version=5 dest=example.com:443 resolved=93.184.216.34:443 egress=- rule=- rep=0 up=123 "
           "down=4567 "
           "duration_ms=250 end=done end_time=2026-11-21T21:40:00.373Z\n");
}

/* Where the tunnel left from, and the session its user name named (username_params). */
static void
test_egress_session(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    set_v6(&r.egress, "2001:db8:1::7", 40000);
    snprintf(r.session, sizeof(r.session), "ab12");
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 user=alice "
           "cmd=connect "
           "version=5 dest=example.com:443 resolved=93.184.216.34:443 "
           "egress=[2001:db8:1::7]:40000 session=ab12 rule=- rep=0 up=123 down=4567 "
           "duration_ms=250 end=done end_time=2026-11-21T21:40:00.373Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\",\"client\":\"127.0."
           "0.1:50000\","
           "\"user\":\"alice\",\"cmd\":\"connect\",\"version\":5,\"dest\":\"example.com:443\","
           "\"resolved\":\"93.184.216.34:443\",\"egress\":\"[2001:db8:1::7]:40000\","
           "\"session\":\"ab12\",\"rule\":null,\"rep\":0,\"up\":123,\"down\":4567,"
           "\"duration_ms\":250,\"end\":\"done\",\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");
}

/* Behind a PROXY listener: the client the header named, and the balancer as via. */
static void
test_via(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    set_v4(&r.client, "192.0.2.9", 40000);
    set_v4(&r.via, "127.0.0.1", 50000);
    r.end = END_PROXY_LOCAL;
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=192.0.2.9:40000 "
           "via=127.0.0.1:50000 user=alice cmd=connect "
           "version=5 dest=example.com:443 resolved=93.184.216.34:443 egress=- rule=- rep=0 up=123 "
           "down=4567 duration_ms=250 end=proxy_local end_time=2026-11-21T21:40:00.373Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\","
           "\"client\":\"192.0.2.9:40000\",\"via\":\"127.0.0.1:50000\","
           "\"user\":\"alice\",\"cmd\":\"connect\",\"version\":5,\"dest\":\"example.com:443\","
           "\"resolved\":\"93.184.216.34:443\",\"egress\":null,\"rule\":null,\"rep\":0,\"up\":123,"
           "\"down\":4567,\"duration_ms\":250,\"end\":\"proxy_local\","
           "\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");
}

/* Through a parent proxy (rule key via): parent= after egress, the name unresolved here. */
static void
test_parent(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    memset(&r.resolved, 0, sizeof(r.resolved));
    set_v4(&r.egress, "192.0.2.1", 41000);
    set_v4(&r.parent, "198.51.100.20", 3128);
    r.end = END_PARENT;
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 user=alice "
           "cmd=connect version=5 dest=example.com:443 resolved=- egress=192.0.2.1:41000 "
           "parent=198.51.100.20:3128 rule=- rep=0 up=123 down=4567 duration_ms=250 "
           "end=parent_failed end_time=2026-11-21T21:40:00.373Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\","
           "\"client\":\"127.0.0.1:50000\",\"user\":\"alice\",\"cmd\":\"connect\",\"version\":5,"
           "\"dest\":\"example.com:443\",\"resolved\":null,\"egress\":\"192.0.2.1:41000\","
           "\"parent\":\"198.51.100.20:3128\",\"rule\":null,\"rep\":0,\"up\":123,"
           "\"down\":4567,\"duration_ms\":250,\"end\":\"parent_failed\","
           "\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");
}

/* An HTTP CONNECT client's tunnel: proto=http, and version its HTTP major version. */
static void
test_http(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    r.version = HTTPCONNECT_VERSION;
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 user=alice "
           "cmd=connect proto=http "
           "version=1 dest=example.com:443 resolved=93.184.216.34:443 egress=- rule=- rep=0 up=123 "
           "down=4567 duration_ms=250 end=done end_time=2026-11-21T21:40:00.373Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\","
           "\"client\":\"127.0.0.1:50000\",\"user\":\"alice\",\"cmd\":\"connect\","
           "\"proto\":\"http\",\"version\":1,\"dest\":\"example.com:443\","
           "\"resolved\":\"93.184.216.34:443\",\"egress\":null,\"rule\":null,\"rep\":0,\"up\":123,"
           "\"down\":4567,\"duration_ms\":250,\"end\":\"done\","
           "\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");
}

/* A transparent listener's tunnel: proto=transparent, version 0 (no proxy protocol), no
 * user, the original destination as an address; a loop is named by its end. */
static void
test_transparent(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    r.version = TRANSPARENT_VERSION;
    r.user[0] = '\0';
    strcpy(r.host, "93.184.216.34");
    r.rep = 2;
    r.end = END_LOOP;
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 user=- "
           "cmd=connect proto=transparent "
           "version=0 dest=93.184.216.34:443 resolved=93.184.216.34:443 egress=- rule=- rep=2 "
           "up=123 down=4567 duration_ms=250 end=loop end_time=2026-11-21T21:40:00.373Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\","
           "\"client\":\"127.0.0.1:50000\",\"user\":null,\"cmd\":\"connect\","
           "\"proto\":\"transparent\",\"version\":0,\"dest\":\"93.184.216.34:443\","
           "\"resolved\":\"93.184.216.34:443\",\"egress\":null,\"rule\":null,\"rep\":2,\"up\":123,"
           "\"down\":4567,\"duration_ms\":250,\"end\":\"loop\","
           "\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");
}

/* A client authenticated by GSS-API: its principal is the user, gss the level agreed (0 too). */
static void
test_gss(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    strcpy(r.user, "alice@EXAMPLE.TEST");
    for (uint8_t level = 0; level <= 2; level++) {
        char want[512];
        r.gss = (uint8_t)(level + 1);
        snprintf(want, sizeof(want),
                 "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 "
                 "user=alice@EXAMPLE.TEST cmd=connect version=5 gss=%u dest=example.com:443 "
                 "resolved=93.184.216.34:443 egress=- rule=- rep=0 up=123 down=4567 "
                 "duration_ms=250 end=done end_time=2026-11-21T21:40:00.373Z\n",
                 level);
        expect(&r, LOG_LOGFMT, want);
    }
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\","
           "\"client\":\"127.0.0.1:50000\",\"user\":\"alice@EXAMPLE.TEST\",\"cmd\":\"connect\","
           "\"version\":5,\"gss\":2,\"dest\":\"example.com:443\","
           "\"resolved\":\"93.184.216.34:443\",\"egress\":null,\"rule\":null,\"rep\":0,\"up\":123,"
           "\"down\":4567,\"duration_ms\":250,\"end\":\"done\","
           "\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");
}

static void
test_json_ipv4(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\",\"client\":\"127.0."
           "0.1:50000\","
           "\"user\":\"alice\",\"cmd\":\"connect\",\"version\":5,\"dest\":\"example.com:443\","
           "\"resolved\":\"93.184.216.34:443\",\"egress\":null,\"rule\":null,\"rep\":0,\"up\":123,"
           "\"down\":4567,"
           "\"duration_ms\":250,\"end\":\"done\",\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");
}

static void
test_ipv6(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    set_v6(&r.client, "2001:db8::1", 50000);
    set_v6(&r.resolved, "2001:db8::2", 8443);
    strcpy(r.host, "2001:db8::2"); /* an IPv6 literal request: bracketed in dest */
    r.port = 8443;
    r.shard = 3;
    r.cmd = SOCKS5_CMD_BIND;
    r.rep = 5;
    r.bytes_up = 18446744073709551615ull;
    r.duration_ms = 4294967295u;
    r.end = END_HS_TIMEOUT;
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=3 id=3.7.2 client=[2001:db8::1]:50000 user=alice "
           "cmd=bind "
           "version=5 dest=[2001:db8::2]:8443 resolved=[2001:db8::2]:8443 egress=- rule=- rep=5 "
           "up=18446744073709551615 down=4567 duration_ms=4294967295 end=handshake_timeout "
           "end_time=2027-01-10T14:42:47.418Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":3,\"id\":\"3.7.2\",\"client\":\"[2001:"
           "db8::1]:50000\","
           "\"user\":\"alice\",\"cmd\":\"bind\",\"version\":5,\"dest\":\"[2001:db8::2]:8443\","
           "\"resolved\":\"[2001:db8::2]:8443\",\"egress\":null,\"rule\":null,\"rep\":5,\"up\":"
           "18446744073709551615,"
           "\"down\":4567,\"duration_ms\":4294967295,\"end\":\"handshake_timeout\",\"end_time\":"
           "\"2027-01-10T14:42:47.418Z\"}\n");
}

static void
test_empty_fields(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    r.user[0] = '\0';
    r.host[0] = '\0';
    memset(&r.resolved, 0, sizeof(r.resolved));
    r.rep = -1;
    r.cmd = 0;
    r.version = 0;
    r.bytes_up = r.bytes_down = 0;
    r.duration_ms = 0;
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 user=- cmd=none "
           "version=0 dest=- resolved=- egress=- rule=- rep=- up=0 down=0 duration_ms=0 end=done "
           "end_time=2026-11-21T21:40:00.123Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\",\"client\":\"127.0."
           "0.1:50000\","
           "\"user\":null,\"cmd\":\"none\",\"version\":0,\"dest\":null,\"resolved\":null,"
           "\"egress\":null,"
           "\"rule\":null,\"rep\":null,\"up\":0,\"down\":0,\"duration_ms\":0,\"end\":\"done\","
           "\"end_time\":\"2026-11-21T21:40:00.123Z\"}\n");

    /* No end text at all, UDP, SOCKS4, an unknown command number. */
    r.cmd = SOCKS5_CMD_UDP;
    r.version = 4;
    char buf[512];
    log_format(&r, LOG_LOGFMT, NULL, buf, sizeof(buf));
    assert_non_null(strstr(buf, " cmd=udp version=4 "));
    assert_non_null(strstr(buf, " end=- end_time="));
    r.cmd = 9;
    log_format(&r, LOG_JSON, NULL, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"cmd\":\"unknown\""));
    assert_non_null(strstr(buf, "\"end\":null,\"end_time\":"));
}

/* The deciding rule, and a UDP association's datagram counts (only on cmd udp lines). */
static void
test_rule_and_udp(void **state)
{
    (void)state;
    struct log_rec r;
    char buf[1024];
    base_rec(&r);
    snprintf(r.rule, sizeof(r.rule), "block-smtp");
    r.udp.out = 7; /* not a udp line: not shown */
    log_format(&r, LOG_LOGFMT, "done", buf, sizeof(buf));
    assert_non_null(strstr(buf, " egress=- rule=block-smtp rep=0 "));
    assert_null(strstr(buf, "udp_"));
    r.cmd = SOCKS5_CMD_UDP;
    r.udp.in = 5;
    r.udp.drop[LOG_UDP_DROP_RULE] = 3;
    r.udp.drop[LOG_UDP_DROP_FRAG] = 1;
    log_format(&r, LOG_LOGFMT, "done", buf, sizeof(buf));
    assert_non_null(strstr(buf, " end_time=2026-11-21T21:40:00.373Z udp_out=7 udp_in=5 "
                                "udp_drop=rule:3,frag:1\n"));
    /* Fault mode's drops (udp_drop, udp_reorder's last held datagram) have a name of their own. */
    r.udp.drop[LOG_UDP_DROP_FAULT] = 4;
    log_format(&r, LOG_LOGFMT, "done", buf, sizeof(buf));
    assert_non_null(strstr(buf, " udp_drop=rule:3,frag:1,fault:4\n"));
    r.udp.drop[LOG_UDP_DROP_FAULT] = 0;
    log_format(&r, LOG_JSON, "done", buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"rule\":\"block-smtp\","));
    assert_non_null(
        strstr(buf, ",\"udp_out\":7,\"udp_in\":5,\"udp_drop\":{\"rule\":3,\"frag\":1}}\n"));
    memset(&r.udp, 0, sizeof(r.udp));
    snprintf(r.rule, sizeof(r.rule), "default");
    log_format(&r, LOG_LOGFMT, "done", buf, sizeof(buf));
    assert_non_null(strstr(buf, " rule=default "));
    assert_non_null(strstr(buf, " udp_out=0 udp_in=0 udp_drop=-\n"));
    log_format(&r, LOG_JSON, "done", buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"udp_drop\":{}}\n"));
    for (int i = 0; i < LOG_UDP_DROP__COUNT; i++)
        assert_string_not_equal(log_udp_drop_str((enum log_udp_drop)i), "unknown");
}

static void
test_hostile_strings(void **state)
{
    (void)state;
    struct log_rec r;
    base_rec(&r);
    strcpy(r.user, "a b\"c=d\\e\n\x01\x7f\xff");
    strcpy(r.host, "evil.com:1 end=done\r\nfake=1");
    expect(&r, LOG_LOGFMT,
           "time=2026-11-21T21:40:00.123Z shard=0 id=0.7.2 client=127.0.0.1:50000 "
           "user=\"a b\\\"c=d\\\\e\\x0a\\x01\\x7f\\xff\" cmd=connect version=5 "
           "dest=\"[evil.com:1 end=done\\x0d\\x0afake=1]:443\" resolved=93.184.216.34:443 egress=- "
           "rule=- rep=0 "
           "up=123 down=4567 duration_ms=250 end=done end_time=2026-11-21T21:40:00.373Z\n");
    expect(&r, LOG_JSON,
           "{\"time\":\"2026-11-21T21:40:00.123Z\",\"shard\":0,\"id\":\"0.7.2\",\"client\":\"127.0."
           "0.1:50000\","
           "\"user\":\"a b\\\"c=d\\\\e\\u000a\\u0001\\u007f\\u00ff\",\"cmd\":\"connect\","
           "\"version\":5,\"dest\":\"[evil.com:1 end=done\\u000d\\u000afake=1]:443\","
           "\"resolved\":\"93.184.216.34:443\",\"egress\":null,\"rule\":null,\"rep\":0,\"up\":123,"
           "\"down\":4567,"
           "\"duration_ms\":250,\"end\":\"done\",\"end_time\":\"2026-11-21T21:40:00.373Z\"}\n");

    /* A backslash alone needs no quotes; a lone quote or '=' does. */
    strcpy(r.user, "dom\\user");
    strcpy(r.host, "a=b");
    char buf[1024];
    fmt(&r, LOG_LOGFMT, buf, sizeof(buf));
    assert_non_null(strstr(buf, " user=dom\\user "));
    assert_non_null(strstr(buf, " dest=\"a=b:443\" "));
    strcpy(r.user, "john smith");
    strcpy(r.host, "a\"b");
    fmt(&r, LOG_LOGFMT, buf, sizeof(buf));
    assert_non_null(strstr(buf, " user=\"john smith\" "));
    assert_non_null(strstr(buf, " dest=\"a\\\"b:443\" "));
    strcpy(r.user, "tab\there");
    fmt(&r, LOG_LOGFMT, buf, sizeof(buf));
    assert_non_null(strstr(buf, " user=\"tab\\x09here\" "));
    /* UTF-8 user names come out as their bytes, escaped: the line stays ASCII. */
    strcpy(r.user, "jos\xc3\xa9");
    fmt(&r, LOG_JSON, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"user\":\"jos\\u00c3\\u00a9\""));
    fmt(&r, LOG_LOGFMT, buf, sizeof(buf));
    assert_non_null(strstr(buf, " user=\"jos\\xc3\\xa9\" "));
}

/* Fill s with n random bytes 1..255 (NUL ends the C string). */
static void
rand_bytes(unsigned *seed, char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(1 + rand_r(seed) % 255);
    s[n] = '\0';
}

/* Random user and host bytes: both formats parse back to the same bytes, always. */
static void
test_roundtrip_random(void **state)
{
    (void)state;
    unsigned seed = 12345;
    struct log_rec r;
    char buf[4096], val[1024], want[300];
    bool found;

    for (int i = 0; i < 3000; i++) {
        base_rec(&r);
        rand_bytes(&seed, r.user, (size_t)rand_r(&seed) % 256);
        rand_bytes(&seed, r.host, 1 + (size_t)rand_r(&seed) % 255);
        if (i % 3 == 0)
            r.host[0] = '[';
        bool br = strchr(r.host, ':') && r.host[0] != '[';
        snprintf(want, sizeof(want), "%s%s%s:443", br ? "[" : "", r.host, br ? "]" : "");

        size_t n = fmt(&r, LOG_JSON, buf, sizeof(buf));
        assert_true(n < sizeof(buf) - 1);
        assert_true(json_line(buf, "user", val, sizeof(val), &found));
        assert_true(found);
        assert_string_equal(val, r.user[0] ? r.user : "null");
        assert_true(json_line(buf, "dest", val, sizeof(val), &found));
        assert_string_equal(val, want);

        n = fmt(&r, LOG_LOGFMT, buf, sizeof(buf));
        assert_true(n < sizeof(buf) - 1);
        assert_int_equal(strchr(buf, '\n') - buf, (ptrdiff_t)n - 1);
        assert_true(logfmt_get(buf, "user", val, sizeof(val), &found));
        assert_true(found);
        assert_string_equal(val, r.user[0] ? r.user : "-");
        assert_true(logfmt_get(buf, "dest", val, sizeof(val), &found));
        assert_string_equal(val, want);
        assert_true(logfmt_get(buf, "end", val, sizeof(val), &found));
        assert_string_equal(val, "done");
    }
}

/* The longest possible line (every user and host byte escaped) fits in 4 KiB. */
static void
test_longest_line(void **state)
{
    (void)state;
    struct log_rec r;
    char buf[4096];
    bool found;
    char val[8];

    base_rec(&r);
    memset(r.user, 0x01, 255);
    r.user[255] = '\0';
    memset(r.host, 0x01, 255);
    r.host[255] = '\0';
    set_v6(&r.client, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    set_v6(&r.via, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    set_v6(&r.resolved, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    set_v6(&r.egress, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    memset(r.session, 'x', 64);
    r.session[64] = '\0';
    memset(r.rule, 'x', 64);
    r.rule[64] = '\0';
    r.cmd = SOCKS5_CMD_UDP;
    r.udp.out = r.udp.in = UINT32_MAX;
    for (int i = 0; i < LOG_UDP_DROP__COUNT; i++)
        r.udp.drop[i] = UINT32_MAX;
    r.bytes_up = r.bytes_down = UINT64_MAX;
    r.start_ms = UINT64_MAX;
    size_t n = fmt(&r, LOG_JSON, buf, sizeof(buf));
    assert_true(n < 4000); /* LOG_LINE_MAX is 4096 */
    assert_true(json_line(buf, "up", val, sizeof(val), &found));
    n = fmt(&r, LOG_LOGFMT, buf, sizeof(buf));
    assert_true(n < 3000);
    assert_true(logfmt_get(buf, "down", val, sizeof(val), &found));
}

/* Every cap from 0 up: never a byte past cap, always NUL-terminated, a prefix ending in '\n'. */
static void
test_truncation(void **state)
{
    (void)state;
    struct log_rec r;
    char full[4096];

    base_rec(&r);
    strcpy(r.user, "a\"b");
    for (int f = LOG_LOGFMT; f <= LOG_JSON; f++) {
        size_t len = fmt(&r, (enum log_format)f, full, sizeof(full));
        for (size_t cap = 0; cap <= len + 2; cap++) {
            /* Exactly cap bytes on the heap (ASan sees an overflow), then a guard check. */
            char *b = malloc(cap ? cap : 1);
            char guard[4200];
            assert_non_null(b);
            memset(b, 'Z', cap ? cap : 1);
            size_t n = fmt(&r, (enum log_format)f, b, cap);
            if (cap == 0) {
                assert_int_equal(n, 0);
                assert_int_equal(b[0], 'Z');
                free(b);
                continue;
            }
            assert_true(n < cap);
            assert_int_equal(b[n], '\0');
            if (cap > len) {
                assert_int_equal(n, len);
                assert_string_equal(b, full);
            } else {
                assert_int_equal(n, cap - 1);
                if (n > 0) {
                    assert_memory_equal(b, full, n - 1);
                    assert_int_equal(b[n - 1], '\n');
                }
            }
            free(b);

            memset(guard, 'Z', sizeof(guard));
            fmt(&r, (enum log_format)f, guard, cap);
            for (size_t i = cap; i < sizeof(guard); i++)
                assert_int_equal(guard[i], 'Z');
        }
    }
}

static void
expect_time(uint64_t ms, const char *want)
{
    struct log_rec r;
    char buf[512], got[40];
    bool found;
    base_rec(&r);
    r.start_ms = ms;
    fmt(&r, LOG_LOGFMT, buf, sizeof(buf));
    assert_true(logfmt_get(buf, "time", got, sizeof(got), &found));
    assert_string_equal(got, want);
}

static void
test_time(void **state)
{
    (void)state;
    expect_time(0, "1970-01-01T00:00:00.000Z");
    expect_time(951782400000ull, "2000-02-29T00:00:00.000Z");
    expect_time(951868800001ull, "2000-03-01T00:00:00.001Z");
    expect_time(1709251199999ull, "2024-02-29T23:59:59.999Z");
    expect_time(4102444800000ull, "2100-01-01T00:00:00.000Z");
    expect_time(253402300799999ull, "9999-12-31T23:59:59.999Z");

    /* Against gmtime_r over random instants up to year 9999. */
    unsigned seed = 7;
    for (int i = 0; i < 20000; i++) {
        uint64_t ms =
            (((uint64_t)rand_r(&seed) << 31) ^ (uint64_t)rand_r(&seed)) % 253402300800000ull;
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        char want[40];
        gmtime_r(&t, &tm);
        size_t n = strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + n, sizeof(want) - n, ".%03uZ", (unsigned)(ms % 1000));
        expect_time(ms, want);
    }
}

/* ---- the logger */

struct tmp {
    char dir[64];
    char path[96];
    char path1[96];
};

static int
tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    strcpy(t->dir, "/tmp/test_log.XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->path, sizeof(t->path), "%s/access.log", t->dir);
    snprintf(t->path1, sizeof(t->path1), "%s/access.log.1", t->dir);
    *state = t;
    return 0;
}

static int
tmp_teardown(void **state)
{
    struct tmp *t = *state;
    unlink(t->path);
    unlink(t->path1);
    rmdir(t->dir);
    free(t);
    return 0;
}

/* The whole file, NUL-terminated; *n_lines counts '\n'. */
static char *
slurp(const char *path, size_t *n_lines)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n;
    while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
    }
    fclose(f);
    s[len] = '\0';
    *n_lines = 0;
    for (size_t i = 0; i < len; i++)
        *n_lines += s[i] == '\n';
    assert_true(len == 0 || s[len - 1] == '\n');
    return s;
}

/* shard and up of one line, either format. */
static void
line_ids(const char *line, enum log_format f, unsigned *shard, uint64_t *seq)
{
    char v[64];
    bool found;
    if (f == LOG_JSON) {
        assert_true(json_line(line, "shard", v, sizeof(v), &found));
        assert_true(found);
        *shard = (unsigned)strtoul(v, NULL, 10);
        assert_true(json_line(line, "up", v, sizeof(v), &found));
    } else {
        assert_true(logfmt_get(line, "shard", v, sizeof(v), &found));
        assert_true(found);
        *shard = (unsigned)strtoul(v, NULL, 10);
        assert_true(logfmt_get(line, "up", v, sizeof(v), &found));
    }
    assert_true(found);
    *seq = strtoull(v, NULL, 10);
}

/*
 * Check every line of the file: ids unique per shard, in push order, below
 * n. Returns how many lines each shard has in count[0..1].
 */
static void
check_lines(const char *path, enum log_format f, uint64_t n, uint64_t count[2])
{
    size_t n_lines;
    char *s = slurp(path, &n_lines);
    char *save = NULL;
    int64_t last[2] = {-1, -1};
    count[0] = count[1] = 0;
    for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char line[4100];
        unsigned sh;
        uint64_t seq;
        snprintf(line, sizeof(line), "%s\n", l);
        line_ids(line, f, &sh, &seq);
        assert_true(sh < 2);
        assert_true(seq < n);
        /* Strictly increasing: no duplicate, no reordering within a shard. */
        assert_true((int64_t)seq > last[sh]);
        last[sh] = (int64_t)seq;
        count[sh]++;
    }
    assert_int_equal(count[0] + count[1], n_lines);
    free(s);
}

struct producer {
    struct logger *lg;
    unsigned shard;
    unsigned n;
    unsigned pause_every, pause_us;
    unsigned failed;
};

static void *
producer_main(void *arg)
{
    struct producer *p = arg;
    struct log_rec r;
    base_rec(&r);
    r.shard = (uint16_t)p->shard;
    snprintf(r.user, sizeof(r.user), "user %u", p->shard);
    for (unsigned i = 0; i < p->n; i++) {
        r.bytes_up = i;
        snprintf(r.host, sizeof(r.host), "h%u.example", i);
        if (!log_push(p->lg, p->shard, &r))
            p->failed++;
        if (p->pause_every && i % p->pause_every == p->pause_every - 1)
            usleep(p->pause_us);
    }
    return NULL;
}

static void
run_producers(struct producer p[2])
{
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &p[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
}

static bool
wait_for(bool (*cond)(void *), void *arg)
{
    for (int i = 0; i < 500; i++) {
        if (cond(arg))
            return true;
        usleep(10000);
    }
    return false;
}

/* Ring big enough: every record arrives exactly once, and log_stop() drains. */
static void
test_threads_exactly_once(void **state)
{
    struct tmp *t = *state;
    char err[256] = "";
    const unsigned n = 10000;
    struct logger *lg = log_start(t->path, LOG_JSON, 2, 16384, err, sizeof(err));
    assert_non_null(lg);
    /* Spread over ~100 ms so the writer drains while the shards push. */
    struct producer p[2] = {
        {.lg = lg, .shard = 0, .n = n, .pause_every = 200, .pause_us = 2000},
        {.lg = lg, .shard = 1, .n = n, .pause_every = 200, .pause_us = 2000},
    };
    run_producers(p);
    assert_int_equal(p[0].failed + p[1].failed, 0);
    assert_int_equal(log_dropped(lg), 0);
    log_stop(lg); /* at once: it must write what is still queued */

    uint64_t count[2];
    check_lines(t->path, LOG_JSON, n, count);
    assert_int_equal(count[0], n);
    assert_int_equal(count[1], n);
}

struct wait_all {
    struct logger *lg;
    uint64_t pushed;
};

static bool
all_accounted(void *arg)
{
    struct wait_all *w = arg;
    return log_written(w->lg) + log_dropped(w->lg) == w->pushed;
}

/* A 4-slot ring and a writer that looks every 50 ms: drops, all accounted for. */
static void
test_threads_tiny_ring(void **state)
{
    struct tmp *t = *state;
    char err[256] = "";
    const unsigned n = 5000;
    struct logger *lg = log_start(t->path, LOG_LOGFMT, 2, 4, err, sizeof(err));
    assert_non_null(lg);
    struct producer p[2] = {
        {.lg = lg, .shard = 0, .n = n, .pause_every = 16, .pause_us = 200},
        {.lg = lg, .shard = 1, .n = n, .pause_every = 16, .pause_us = 200},
    };
    run_producers(p);
    struct wait_all w = {lg, 2 * n};
    assert_true(wait_for(all_accounted, &w));
    uint64_t written = log_written(lg), dropped = log_dropped(lg);
    assert_int_equal(dropped, p[0].failed + p[1].failed);
    assert_int_equal(written + dropped, 2 * n);
    assert_true(dropped > 0);
    assert_true(written >= 8); /* at least what the rings hold at the end */
    log_stop(lg);

    uint64_t count[2];
    check_lines(t->path, LOG_LOGFMT, n, count);
    assert_int_equal(count[0], n - p[0].failed);
    assert_int_equal(count[1], n - p[1].failed);
}

struct wait_n {
    struct logger *lg;
    uint64_t n;
};

static bool
written_n(void *arg)
{
    struct wait_n *w = arg;
    return log_written(w->lg) == w->n;
}

static bool
file_exists(void *arg)
{
    return access((const char *)arg, F_OK) == 0;
}

static void
push_range(struct logger *lg, uint64_t from, uint64_t to)
{
    struct log_rec r;
    base_rec(&r);
    for (uint64_t i = from; i < to; i++) {
        r.bytes_up = i;
        assert_true(log_push(lg, 0, &r));
    }
}

/* logrotate: rename, reopen, and the next lines go to a new file of that name. */
static void
test_reopen(void **state)
{
    struct tmp *t = *state;
    char err[256] = "";
    mode_t old_mask = umask(022);
    struct logger *lg = log_start(t->path, LOG_LOGFMT, 1, 64, err, sizeof(err));
    umask(old_mask);
    assert_non_null(lg);
    struct stat st;
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    push_range(lg, 0, 10);
    struct wait_n w = {lg, 10};
    assert_true(wait_for(written_n, &w));
    assert_int_equal(rename(t->path, t->path1), 0);
    log_reopen(lg);
    assert_true(wait_for(file_exists, t->path));
    push_range(lg, 10, 25);
    log_stop(lg);

    uint64_t count[2];
    size_t lines;
    char *s = slurp(t->path1, &lines);
    assert_int_equal(lines, 10);
    assert_non_null(strstr(s, " up=9 "));
    free(s);
    check_lines(t->path, LOG_LOGFMT, 25, count);
    assert_int_equal(count[0], 15);
    s = slurp(t->path, &lines);
    assert_true(strncmp(strstr(s, " up="), " up=10 ", 7) == 0);
    free(s);
}

/* The file is appended to, never truncated. */
static void
test_append(void **state)
{
    struct tmp *t = *state;
    char err[256] = "";
    for (int round = 0; round < 2; round++) {
        struct logger *lg = log_start(t->path, LOG_LOGFMT, 1, 8, err, sizeof(err));
        assert_non_null(lg);
        push_range(lg, (uint64_t)round * 3, (uint64_t)round * 3 + 3);
        log_stop(lg);
    }
    uint64_t count[2];
    check_lines(t->path, LOG_LOGFMT, 6, count);
    assert_int_equal(count[0], 6);
}

/* The strings after the fixed part (fault, user, host) go through the ring by length, a fault's
 * as well as none. */
static void
test_push_strings(void **state)
{
    struct tmp *t = *state;
    char err[256] = "";
    struct logger *lg = log_start(t->path, LOG_LOGFMT, 1, 8, err, sizeof(err));
    assert_non_null(lg);
    struct log_rec r;
    base_rec(&r);
    snprintf(r.fault, sizeof(r.fault), "delay_reply_500,split_20");
    snprintf(r.user, sizeof(r.user), "tester");
    snprintf(r.host, sizeof(r.host), "example.test");
    assert_true(log_push(lg, 0, &r));
    r.fault[0] = '\0';
    assert_true(log_push(lg, 0, &r));
    log_stop(lg);
    size_t lines;
    char *s = slurp(t->path, &lines);
    assert_int_equal(lines, 2);
    char *second = strchr(s, '\n') + 1;
    assert_non_null(strstr(s, " fault=delay_reply_500,split_20 "));
    assert_non_null(strstr(s, " user=tester "));
    assert_non_null(strstr(s, "dest=example.test:"));
    assert_null(strstr(second, "fault="));
    assert_non_null(strstr(second, " user=tester "));
    free(s);
}

static void
test_stderr_target(void **state)
{
    struct tmp *t = *state;
    char err[256] = "";
    int fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    struct logger *lg = log_start("stderr", LOG_JSON, 1, 8, err, sizeof(err));
    assert_non_null(lg);
    push_range(lg, 0, 5);
    log_reopen(lg); /* nothing to reopen: harmless */
    log_stop(lg);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(fd);
    uint64_t count[2];
    check_lines(t->path, LOG_JSON, 5, count);
    assert_int_equal(count[0], 5);
}

static void
test_syslog_smoke(void **state)
{
    (void)state;
    char err[256] = "";
    struct logger *lg = log_start("syslog", LOG_LOGFMT, 2, 8, err, sizeof(err));
    assert_non_null(lg);
    push_range(lg, 0, 3);
    struct wait_n w = {lg, 3};
    assert_true(wait_for(written_n, &w));
    log_stop(lg);
}

static void
test_off_and_errors(void **state)
{
    struct tmp *t = *state;
    char err[256] = "";
    struct log_rec r;
    base_rec(&r);

    struct logger *lg = log_start("off", LOG_JSON, 4, 1024, err, sizeof(err));
    assert_non_null(lg);
    for (int i = 0; i < 100; i++)
        assert_true(log_push(lg, 0, &r));
    log_reopen(lg);
    assert_int_equal(log_dropped(lg), 0);
    assert_int_equal(log_written(lg), 0);
    log_stop(lg);
    log_stop(NULL);

    assert_null(log_start(t->path, LOG_LOGFMT, 1, 3, err, sizeof(err)));
    assert_non_null(strstr(err, "power of two"));
    assert_null(log_start(t->path, LOG_LOGFMT, 1, 1, err, sizeof(err)));
    assert_null(log_start(t->path, LOG_LOGFMT, 0, 8, err, sizeof(err)));
    assert_null(log_start("", LOG_LOGFMT, 1, 8, err, sizeof(err)));
    assert_null(log_start(t->path, (enum log_format)7, 1, 8, err, sizeof(err)));
    char bad[128];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/log", t->dir);
    err[0] = '\0';
    assert_null(log_start(bad, LOG_LOGFMT, 1, 8, err, sizeof(err)));
    assert_non_null(strstr(err, bad));
    assert_non_null(strstr(err, strerror(ENOENT)));

    /* A shard beyond n_shards is refused, not written out of bounds. */
    lg = log_start(t->path, LOG_LOGFMT, 1, 8, err, sizeof(err));
    assert_non_null(lg);
    assert_false(log_push(lg, 1, &r));
    assert_true(log_push(lg, 0, &r));
    log_stop(lg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_ipv4),
        cmocka_unit_test(test_via),
        cmocka_unit_test(test_parent),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_gss),
        cmocka_unit_test(test_transparent),
        cmocka_unit_test(test_json_ipv4),
        cmocka_unit_test(test_egress_session),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_empty_fields),
        cmocka_unit_test(test_rule_and_udp),
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_longest_line),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_time),
        cmocka_unit_test_setup_teardown(test_threads_exactly_once, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_threads_tiny_ring, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_reopen, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_append, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_push_strings, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_stderr_target, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_syslog_smoke),
        cmocka_unit_test_setup_teardown(test_off_and_errors, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
