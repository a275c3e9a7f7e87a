/*
 * test_shardcmd.c - src/shardcmd.c: the query string of GET /connections
 * (percent-decoded, unknown, repeated and malformed parameters refused) and
 * connection ids (SHARD.SLOT.GEN, strict); the filter (exact
 * base user name, client IP with or without its port, destination
 * substring), the JSON object of a connection (names escaped, nulls for
 * what it has not got), what a shard runs (list up to a limit, close one
 * connection only by its slot and live generation, close a user's tunnels
 * by its entry or, without one, by its name), and the mailbox across
 * threads: answered, a shard that never answers (given up after
 * SHARDCMD_WAIT_MS and the command taken back), a shard that exits (not
 * waited for), a mailbox still holding a command (not overwritten).
 *
 * Links shardcmd.o with the real slot layer (conn.o on fake_shard.h's fake
 * ring), json.o, pct.o and log.o; shard_wake() is faked (counted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acct.h"
#include "conn.h"
#include "shard.h"
#include "shardcmd.h"
#include "shard_types.h"
#include "via.h"
#include "transparent.h"

#define FAKE_SHARD_REAL_LOG
#include "fake_shard.h"

static _Atomic unsigned wakes;

void
shard_wake(struct shard *sh)
{
    (void)sh;
    wakes++;
}

static struct opts opts;
static struct policy pol;

static void
set_addr(union sockaddr_inx *a, const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    char text[80];
    snprintf(text, sizeof(text), strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
    assert_int_equal(addr_parse(text, -1, &ss), 0);
    memcpy(a, &ss, sizeof(*a));
}

/* A connection in state, of user (NULL: none; may hold "base\0session"), to host:port. */
static struct conn *
mk(struct shard *sh, uint8_t state, const char *user, size_t ulen, const char *host, uint16_t port,
   const char *client_ip, uint16_t client_port, struct uacct *acct)
{
    struct conn *c = conn_alloc(sh, &fs_before_phase);
    assert_non_null(c);
    c->state = state;
    c->cmd = SOCKS5_CMD_CONNECT;
    c->version = 5;
    c->port = port;
    if (user) {
        c->user = malloc(ulen + 1);
        memcpy(c->user, user, ulen);
        c->user[ulen] = '\0';
    }
    c->host = host ? strdup(host) : NULL;
    c->acct = acct;
    set_addr(&c->client, client_ip, client_port);
    return c;
}

static void
test_match(void **state)
{
    (void)state;
    struct shard sh;
    fs_start(&sh, &opts, &pol, 16);
    struct conn *a = mk(&sh, CONN_RELAY,
                        "alice\0s1\0"
                        "60",
                        11, "example.com", 443, "10.0.0.1", 5000, NULL);
    a->flags |= CONN_F_SESSION;
    struct conn *b = mk(&sh, CONN_HANDSHAKE, NULL, 0, NULL, 0, "2001:db8::1", 6000, NULL);
    char dest[SHARDCMD_TEXT_MAX + 16];
    struct shardcmd_filter f;

    assert_true(shardcmd_dest_text(a, dest, sizeof(dest)));
    assert_string_equal(dest, "example.com:443");
    assert_false(shardcmd_dest_text(b, dest, sizeof(dest)));

    memset(&f, 0, sizeof(f));
    assert_true(shardcmd_match(a, "example.com:443", &f));
    assert_true(shardcmd_match(b, NULL, &f));
    /* user: the exact base name (the session part is not the name). */
    strcpy(f.user, "alice");
    assert_true(shardcmd_match(a, "example.com:443", &f));
    assert_false(shardcmd_match(b, NULL, &f));
    strcpy(f.user, "alic");
    assert_false(shardcmd_match(a, "example.com:443", &f));
    strcpy(f.user, "alice2");
    assert_false(shardcmd_match(a, "example.com:443", &f));
    /* dest: a substring of host:port; a connection without one never matches. */
    memset(&f, 0, sizeof(f));
    strcpy(f.dest, "ample.com:4");
    assert_true(shardcmd_match(a, "example.com:443", &f));
    assert_false(shardcmd_match(b, NULL, &f));
    strcpy(f.dest, "example.org");
    assert_false(shardcmd_match(a, "example.com:443", &f));
    /* client: the IP with any port, or the IP and port. */
    memset(&f, 0, sizeof(f));
    set_addr(&f.client, "10.0.0.1", 0);
    assert_true(shardcmd_match(a, NULL, &f));
    assert_false(shardcmd_match(b, NULL, &f));
    f.client_port = true;
    assert_false(shardcmd_match(a, NULL, &f));
    set_addr(&f.client, "10.0.0.1", 5000);
    assert_true(shardcmd_match(a, NULL, &f));
    set_addr(&f.client, "2001:db8::1", 6000);
    assert_true(shardcmd_match(b, NULL, &f));
    set_addr(&f.client, "10.0.0.2", 5000);
    assert_false(shardcmd_match(a, NULL, &f));
    fs_close_all(&sh, false);
    fs_fini(&sh);
}

static void
test_render(void **state)
{
    (void)state;
    struct shard sh;
    fs_start(&sh, &opts, &pol, 16);
    sh.id = 1;
    struct conn *c =
        mk(&sh, CONN_RELAY, "a\"b\\\xff", 5, "2001:db8::5", 8443, "127.0.0.1", 40000, NULL);
    set_addr(&c->src, "192.0.2.7", 50001);
    set_addr(&c->via, "198.51.100.9", 37000); /* came through a PROXY-protocol balancer */
    c->start_ms = 1000000;
    c->gss = 3; /* GSS-API, protection level 2 */
    c->dir[DIR_C2T].bytes = 12;
    c->dir[DIR_T2C].bytes = 34;
    char out[4096];
    size_t n = shardcmd_render(c, 1, 1000000 + 61500, out, sizeof(out));
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"id\":\"1.%u.%u\",\"shard\":1,\"state\":\"relay\",\"cmd\":\"connect\","
             "\"proto\":\"socks5\",\"user\":\"a\\\"b\\\\\\u00ff\",\"gss\":2,\"client\":\"127.0.0.1:"
             "40000\","
             "\"via\":\"198.51.100.9:37000\",\"dest\":\"[2001:db8::5]:8443\",\"egress\":\"192.0.2."
             "7:50001\",\"parent\":null,\"age_s\":61,"
             "\"bytes_up\":12,\"bytes_down\":34}",
             c->slot, c->gen);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));

    /* Before the request: no user, no destination, no egress; a command not made yet. */
    struct conn *h = mk(&sh, CONN_HANDSHAKE, NULL, 0, NULL, 0, "::1", 1, NULL);
    h->cmd = 0;
    h->version = 0;
    shardcmd_render(h, 1, 0, out, sizeof(out));
    assert_non_null(strstr(out, "\"state\":\"handshake\",\"cmd\":\"none\",\"proto\":null,"
                                "\"user\":null,\"gss\":null,"
                                "\"client\":\"[::1]:1\",\"via\":null,\"dest\":null,\"egress\":null,"
                                "\"parent\":null,\"age_s\":0,"));
    /* A destination by address: the address and its port. */
    h->state = CONN_CONNECT;
    h->cmd = SOCKS5_CMD_CONNECT;
    set_addr(&h->dest, "198.51.100.1", 80);
    shardcmd_render(h, 1, 0, out, sizeof(out));
    assert_non_null(strstr(out, "\"state\":\"connect\",\"cmd\":\"connect\""));
    assert_non_null(strstr(out, "\"dest\":\"198.51.100.1:80\""));
    /* Through a parent proxy (rule key via): its address. */
    const char *url = "http://192.0.2.80:3128";
    char why[200];
    struct via_list *vl = via_list_new(&url, 1, why, sizeof(why));
    assert_non_null(vl);
    h->parent = via_parent_of(vl, 0);
    shardcmd_render(h, 1, 0, out, sizeof(out));
    assert_non_null(strstr(out, "\"parent\":\"192.0.2.80:3128\""));
    via_parent_put(h->parent);
    h->parent = NULL;
    /* A transparent listener's connection: its own proto, the original destination. */
    h->version = TRANSPARENT_VERSION;
    shardcmd_render(h, 1, 0, out, sizeof(out));
    assert_non_null(strstr(out, "\"cmd\":\"connect\",\"proto\":\"transparent\","));
    /* Cut to the room given, NUL-ended. */
    assert_int_equal(shardcmd_render(h, 1, 0, out, 10), 9);
    assert_int_equal(strlen(out), 9);
    fs_close_all(&sh, false);
    fs_fini(&sh);
}

/* Run cmd on sh as the shard would: posted, then its loop turn. */
static struct shardcmd *
run(struct shard *sh, struct shardcmd *proto)
{
    struct shardcmd *cmd = calloc(1, sizeof(*cmd));
    *cmd = *proto;
    atomic_init(&cmd->state, 0);
    atomic_store(&sh->cmd, cmd);
    shardcmd_run(sh);
    assert_null(atomic_load(&sh->cmd));
    return cmd;
}

static void
test_run_list(void **state)
{
    (void)state;
    struct shard sh;
    fs_start(&sh, &opts, &pol, 16);
    for (int i = 0; i < 5; i++)
        mk(&sh, CONN_RELAY, i % 2 ? "bob" : "alice", i % 2 ? 3 : 5, "example.com", 443, "10.0.0.1",
           (uint16_t)(5000 + i), NULL);
    struct conn *gone = mk(&sh, CONN_RELAY, "alice", 5, "x", 1, "10.0.0.1", 1, NULL);
    conn_close(&sh, gone, END_DONE); /* freed: never listed */

    struct shardcmd proto = {.op = SHARDCMD_LIST, .limit = 10};
    struct shardcmd *cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 5);
    assert_false(cmd->truncated);
    /* Objects one per line, no separator after the last. */
    unsigned lines = 0;
    for (size_t i = 0; i < cmd->len; i++)
        lines += cmd->out[i] == '\n';
    assert_int_equal(lines, 4);
    assert_int_equal(cmd->out[0], '{');
    assert_int_equal(cmd->out[cmd->len - 1], '}');
    shardcmd_free(cmd);

    strcpy(proto.f.user, "alice");
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 3);
    assert_null(strstr(cmd->out, "bob"));
    shardcmd_free(cmd);

    proto.limit = 2;
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 2);
    assert_true(cmd->truncated);
    shardcmd_free(cmd);
    /* Exactly at the limit is not cut. */
    proto.limit = 3;
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 3);
    assert_false(cmd->truncated);
    shardcmd_free(cmd);

    proto.limit = 0;
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 0);
    assert_null(cmd->out);
    assert_true(cmd->truncated);
    shardcmd_free(cmd);
    fs_close_all(&sh, false);
    fs_fini(&sh);
}

static void
test_run_close(void **state)
{
    (void)state;
    struct shard sh;
    fs_start(&sh, &opts, &pol, 16);
    struct conn *a = mk(&sh, CONN_RELAY, NULL, 0, "a", 1, "10.0.0.1", 1, NULL);
    struct conn *b = mk(&sh, CONN_RELAY, NULL, 0, "b", 1, "10.0.0.1", 2, NULL);
    uint32_t slot = a->slot, gen = a->gen;

    /* A stale generation, a slot never used, a slot past the table: nothing closes. */
    struct shardcmd proto = {.op = SHARDCMD_CLOSE, .slot = slot, .gen = gen + 1, .why = END_ADMIN};
    struct shardcmd *cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 0);
    shardcmd_free(cmd);
    proto.slot = 5;
    proto.gen = 0;
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 0);
    shardcmd_free(cmd);
    proto.slot = 1000000;
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 0);
    shardcmd_free(cmd);
    assert_int_equal(a->state, CONN_RELAY);
    assert_int_equal(b->state, CONN_RELAY);

    /* The live one: closed with the reason, the other left. */
    proto.slot = slot;
    proto.gen = gen;
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 1);
    shardcmd_free(cmd);
    assert_int_equal(a->state, CONN_FREE);
    assert_int_equal(sh.st.ended[END_ADMIN], 1);
    assert_int_equal(b->state, CONN_RELAY);
    /* The same id again: its slot's generation moved on. */
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 0);
    shardcmd_free(cmd);
    /* A slot reused by a new connection keeps the old id dead. */
    struct conn *c = mk(&sh, CONN_RELAY, NULL, 0, "c", 1, "10.0.0.1", 3, NULL);
    assert_int_equal(c->slot, slot);
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 0);
    shardcmd_free(cmd);
    assert_int_equal(c->state, CONN_RELAY);
    fs_close_all(&sh, false);
    fs_fini(&sh);
}

static void
test_run_close_user(void **state)
{
    (void)state;
    struct shard sh;
    struct uacct alice = {.name = "alice"}, bob = {.name = "bob"};
    fs_start(&sh, &opts, &pol, 16);
    struct conn *a1 = mk(&sh, CONN_RELAY, "alice", 5, "a", 1, "10.0.0.1", 1, &alice);
    struct conn *a2 = mk(&sh, CONN_UDP, "alice", 5, NULL, 0, "10.0.0.1", 2, &alice);
    /* No entry linked (yet): matched by its base name. */
    struct conn *a3 = mk(&sh, CONN_CONNECT,
                         "alice\0s\0"
                         "1",
                         9, "a", 1, "10.0.0.1", 3, NULL);
    struct conn *b1 = mk(&sh, CONN_RELAY, "bob", 3, "a", 1, "10.0.0.1", 4, &bob);
    struct conn *b2 = mk(&sh, CONN_RELAY, "alicex", 6, "a", 1, "10.0.0.1", 5, NULL);
    struct conn *n1 = mk(&sh, CONN_RELAY, NULL, 0, "a", 1, "10.0.0.1", 6, NULL);

    struct shardcmd proto = {.op = SHARDCMD_CLOSE_USER, .acct = &alice, .why = END_BLOCKED};
    strcpy(proto.user, "alice");
    struct shardcmd *cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 3);
    shardcmd_free(cmd);
    assert_int_equal(a1->state, CONN_FREE);
    assert_int_equal(a2->state, CONN_FREE);
    assert_int_equal(a3->state, CONN_FREE);
    assert_int_equal(sh.st.ended[END_BLOCKED], 3);
    assert_int_equal(b1->state, CONN_RELAY);
    assert_int_equal(b2->state, CONN_RELAY);
    assert_int_equal(n1->state, CONN_RELAY);
    /* Again: nothing of hers is left. */
    cmd = run(&sh, &proto);
    assert_int_equal(cmd->n, 0);
    shardcmd_free(cmd);
    fs_close_all(&sh, false);
    fs_fini(&sh);
}

/* The query string of GET /connections into a filter; "" for good, else the reason. */
static const char *
parse(const char *query, struct shardcmd *cmd)
{
    static char why[128];
    memset(cmd, 0, sizeof(*cmd));
    const char *bad = shardcmd_parse_query(query, cmd, why, sizeof(why));
    return bad ? bad : "";
}

static void
test_parse_query(void **state)
{
    (void)state;
    struct shardcmd cmd;
    union sockaddr_inx want;
    assert_string_equal(parse("", &cmd), "");
    assert_int_equal(cmd.limit, SHARDCMD_LIMIT_DEFAULT);
    assert_int_equal(cmd.f.client.sa.sa_family, 0);
    assert_string_equal(cmd.f.user, "");

    assert_string_equal(parse("user=j%C3%B6rg+x&dest=%3A443&limit=7", &cmd), "");
    assert_string_equal(cmd.f.user, "j\xc3\xb6rg x");
    assert_string_equal(cmd.f.dest, ":443");
    assert_int_equal(cmd.limit, 7);

    /* client: an IP (any port) or IP:PORT; IPv4-mapped IPv6 is the IPv4 address. */
    assert_string_equal(parse("client=10.0.0.1", &cmd), "");
    set_addr(&want, "10.0.0.1", 0);
    assert_true(addr_same_ip(&cmd.f.client, &want));
    assert_false(cmd.f.client_port);
    assert_string_equal(parse("client=10.0.0.1:5000", &cmd), "");
    assert_true(cmd.f.client_port);
    assert_int_equal(addr_port(&cmd.f.client), 5000);
    assert_string_equal(parse("client=%5B::ffff:10.0.0.1%5D:5000", &cmd), "");
    assert_int_equal(cmd.f.client.sa.sa_family, AF_INET);
    assert_true(cmd.f.client_port);
    assert_string_equal(parse("client=2001:db8::1", &cmd), "");
    assert_int_equal(cmd.f.client.sa.sa_family, AF_INET6);
    assert_false(cmd.f.client_port);
    assert_string_equal(parse("client=%5B2001:db8::1%5D:80", &cmd), "");
    assert_true(cmd.f.client_port);

    /* Limits: 0 and the maximum are fine; past it, signs, junk and empty are not. */
    assert_string_equal(parse("limit=0", &cmd), "");
    assert_int_equal(cmd.limit, 0);
    assert_string_equal(parse("limit=100000", &cmd), "");
    assert_int_equal(cmd.limit, SHARDCMD_LIMIT_MAX);
    const char *bad[] = {"limit=100001",
                         "limit=-1",
                         "limit=+5",
                         "limit=5x",
                         "limit=",
                         "limit=99999999999999999999",
                         "client=bogus",
                         "client=10.0.0.1:99999",
                         "client=example.com",
                         "user",
                         "user=%zz",
                         "nope=1",
                         "user=a&user=b",
                         "user=a&limit=1&limit=2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = parse(bad[i], &cmd);
        if (!why[0])
            fail_msg("query %s was taken", bad[i]);
    }
    assert_non_null(strstr(parse("nope=1", &cmd), "unknown parameter nope"));
    assert_non_null(strstr(parse("dest=a&dest=b", &cmd), "dest given twice"));
}

static void
test_parse_id(void **state)
{
    (void)state;
    uint32_t p[3];
    assert_true(shardcmd_parse_id("1.42.7", p));
    assert_int_equal(p[0], 1);
    assert_int_equal(p[1], 42);
    assert_int_equal(p[2], 7);
    assert_true(shardcmd_parse_id("0.0.4294967295", p));
    assert_int_equal(p[2], UINT32_MAX);
    const char *bad[] = {
        "",       "1",      "1.2",    "1.2.",   "1.2.3.", "1.2.3.4",        "a.b.c",
        "-1.2.3", "1.+2.3", "1. 2.3", " 1.2.3", "1.2.3 ", "1.2.4294967296", "1..3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (shardcmd_parse_id(bad[i], p))
            fail_msg("id %s was taken", bad[i]);
}

/* ---- the mailbox across threads */

struct fake_loop {
    struct shard *sh;
    _Atomic bool stop;
    unsigned exit_after_ms; /* 0: run until stop; else exit (without running) after this */
};

static void *
loop_main(void *arg)
{
    struct fake_loop *l = arg;
    const struct timespec t = {.tv_nsec = 100000};
    if (l->exit_after_ms) {
        usleep(l->exit_after_ms * 1000);
        atomic_store(&l->sh->exited, true);
        return NULL;
    }
    while (!atomic_load(&l->stop)) {
        shardcmd_run(l->sh);
        nanosleep(&t, NULL);
    }
    return NULL;
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
test_mailbox(void **state)
{
    (void)state;
    struct shard sh[2];
    for (int i = 0; i < 2; i++) {
        fs_start(&sh[i], &opts, &pol, 16);
        sh[i].id = (unsigned)i;
        atomic_init(&sh[i].cmd, NULL);
        atomic_init(&sh[i].exited, false);
    }
    mk(&sh[0], CONN_RELAY, "alice", 5, "a", 1, "10.0.0.1", 1, NULL);
    mk(&sh[1], CONN_RELAY, "alice", 5, "a", 1, "10.0.0.1", 2, NULL);
    mk(&sh[1], CONN_RELAY, "bob", 3, "a", 1, "10.0.0.1", 3, NULL);
    struct fake_loop l0 = {.sh = &sh[0]}, l1 = {.sh = &sh[1]};
    pthread_t t0, t1;
    struct shardcmd *ans[2];
    struct shardcmd proto = {.op = SHARDCMD_LIST, .limit = 100};

    /* Both answer. */
    pthread_create(&t0, NULL, loop_main, &l0);
    pthread_create(&t1, NULL, loop_main, &l1);
    wakes = 0;
    assert_int_equal(shardcmd_call(sh, 2, &proto, ans, shard_wake), 2);
    assert_int_equal(wakes, 2);
    assert_int_equal(ans[0]->n, 1);
    assert_int_equal(ans[1]->n, 2);
    assert_non_null(strstr(ans[1]->out, "\"id\":\"1."));
    shardcmd_free(ans[0]);
    shardcmd_free(ans[1]);
    /* Over and over: every command answered, the mailbox empty between them. */
    for (int i = 0; i < 200; i++) {
        assert_int_equal(shardcmd_call(sh, 2, &proto, ans, shard_wake), 2);
        shardcmd_free(ans[0]);
        shardcmd_free(ans[1]);
    }
    atomic_store(&l1.stop, true);
    pthread_join(t1, NULL);

    /* Shard 1 no longer runs: given up after SHARDCMD_WAIT_MS, the command taken back. */
    uint64_t t = mono_ms();
    assert_int_equal(shardcmd_call(sh, 2, &proto, ans, shard_wake), 1);
    t = mono_ms() - t;
    assert_true(t >= SHARDCMD_WAIT_MS && t < SHARDCMD_WAIT_MS + 500);
    assert_non_null(ans[0]);
    assert_null(ans[1]);
    assert_null(atomic_load(&sh[1].cmd));
    shardcmd_free(ans[0]);

    /* A mailbox still holding a command is not overwritten: late at once. */
    struct shardcmd stuck = {.op = SHARDCMD_LIST};
    atomic_store(&sh[1].cmd, &stuck);
    t = mono_ms();
    assert_int_equal(shardcmd_call(&sh[1], 1, &proto, ans, shard_wake), 0);
    assert_true(mono_ms() - t < 100);
    assert_ptr_equal(atomic_load(&sh[1].cmd), &stuck);
    atomic_store(&sh[1].cmd, NULL);

    /* An exited shard is not posted to; one that exits while waited for is let go. */
    atomic_store(&sh[1].exited, true);
    wakes = 0;
    t = mono_ms();
    assert_int_equal(shardcmd_call(&sh[1], 1, &proto, ans, shard_wake), 0);
    assert_true(mono_ms() - t < 100);
    assert_int_equal(wakes, 0);
    atomic_store(&sh[1].exited, false);
    struct fake_loop lx = {.sh = &sh[1], .exit_after_ms = 100};
    pthread_create(&t1, NULL, loop_main, &lx);
    t = mono_ms();
    assert_int_equal(shardcmd_call(&sh[1], 1, &proto, ans, shard_wake), 0);
    t = mono_ms() - t;
    assert_true(t >= 90 && t < 600);
    assert_null(atomic_load(&sh[1].cmd));
    pthread_join(t1, NULL);

    atomic_store(&l0.stop, true);
    pthread_join(t0, NULL);
    for (int i = 0; i < 2; i++) {
        fs_close_all(&sh[i], false);
        fs_fini(&sh[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),          cmocka_unit_test(test_render),
        cmocka_unit_test(test_run_list),       cmocka_unit_test(test_run_close),
        cmocka_unit_test(test_run_close_user), cmocka_unit_test(test_parse_query),
        cmocka_unit_test(test_parse_id),       cmocka_unit_test(test_mailbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
