/*
 * test_oom.c - allocation failure at every allocation site on a connection's
 * path, in turn (issue #18), the way SQLite tests OOM: the allocator is
 * wrapped (-Wl,--wrap=malloc,... : calls from the server's objects linked here
 * go through __wrap_*, a library's own calls do not), counts the allocations
 * since it was armed, fails the Nth once (NULL, errno ENOMEM), and tracks the
 * live ones by pointer.
 *
 * For N = 1, 2, 3, ...: a fresh shard (the real handshake, request and relay
 * phases, slot layer, rules, hosts table and client-address limits on the fake
 * ring of fake_ring.h, whose kernel reads, writes and connects for real on
 * loopback), the hook armed to fail the Nth allocation, then clients one after
 * the other, each a whole connection (struct step): SOCKS5 greeting without and
 * with a password, CONNECT by address, by a name from the hosts table and by a
 * name through the (faked) resolver, a second client waiting for the only
 * handshake context, a megabyte each way that stalls the copy engine into a
 * spill, a user name with a session and a fault (username_params), HTTP
 * CONNECT with Basic credentials, a name no host can have (refused 0x04 by
 * design); bytes relayed both ways, then both ends close; then one more client. Rules: the
 * client in which the allocation failed is served or ends cleanly (its socket
 * closed, the log line's reason END_RESOURCE), never a crash, an assert, a hang
 * or a wrong verdict on its password; every other client, those after it
 * included, is served (the server keeps serving others), a password client as
 * its user; after close-all every slot is free, nothing is in flight, every
 * buffer and every client address's count is back; no fd and no allocation
 * outlives the shard. The loop ends when a scenario runs without reaching its
 * Nth allocation: every allocation on the path has failed once. It must have
 * taken at least OOM_MIN_SITES rounds (no vacuous pass).
 *
 * Out of scope: allocations at start-up (the slot table, the relay's buffers and
 * pipes, the handshake slab: the hook is armed after them), the password worker
 * (authq.c: a thread; authq_check() is faked to answer at once, as a cache hit
 * does), the resolver (dns.c: c-ares; dns_resolve() is faked, its query's
 * allocation and -ENOMEM answer modelled, and the test answers with
 * conn_resolved()), GSS-API, UDP ASSOCIATE, upstream chaining, and
 * a rule's own faults.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "acl.h"
#include "authq.h"
#include "climap.h"
#include "conn.h"
#include "dns.h"
#include "handshake.h"
#include "hosts.h"
#include "policy.h"
#include "relay.h"
#include "request.h"
#include "shard_types.h"
#include "socks5.h"

#define FAKE_RING_REGISTRATIONS
#define FAKE_SHARD_REAL_POLICY
#include "fake_shard.h"

/* At least this many allocations on a connection's path, or the loop proves nothing. */
#define OOM_MIN_SITES 4

/* --- the counting allocator --------------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_reallocarray(void *p, size_t n, size_t size);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_reallocarray(void *p, size_t n, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void __wrap_free(void *p);

#define OOM_TABLE       65536 /* live pointers, open addressing; a power of two */
#define OOM_TOMB        ((void *)1)
#define OOM_MAX_CALLERS 64

static struct {
    bool armed;
    unsigned long n;       /* allocations since armed */
    unsigned long fail_at; /* the one to fail; 0: none */
    bool failed;           /* it was failed */
    void *caller;          /* where it was */
    unsigned live;         /* pointers in the table */
    void *table[OOM_TABLE];
    void *callers[OOM_MAX_CALLERS]; /* distinct sites failed so far */
    unsigned n_callers;
} oom;

static size_t
oom_slot(const void *p)
{
    return ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 48 & (OOM_TABLE - 1);
}

static void
oom_track(void *p)
{
    if (!p)
        return;
    assert_true(oom.live < OOM_TABLE / 2);
    size_t i = oom_slot(p);
    while (oom.table[i] && oom.table[i] != OOM_TOMB)
        i = (i + 1) & (OOM_TABLE - 1);
    oom.table[i] = p;
    oom.live++;
}

static void
oom_untrack(void *p)
{
    if (!p)
        return;
    for (size_t i = oom_slot(p); oom.table[i]; i = (i + 1) & (OOM_TABLE - 1)) {
        if (oom.table[i] == p) {
            oom.table[i] = OOM_TOMB;
            oom.live--;
            return;
        }
    }
    /* Not ours: a library allocated it (getaddrinfo(), say). */
}

/* Should this allocation fail? */
static bool
oom_fail(void *caller)
{
    if (!oom.armed)
        return false;
    oom.n++;
    if (oom.n != oom.fail_at)
        return false;
    oom.failed = true;
    oom.caller = caller;
    unsigned i = 0;
    while (i < oom.n_callers && oom.callers[i] != caller)
        i++;
    if (i == oom.n_callers && i < OOM_MAX_CALLERS)
        oom.callers[oom.n_callers++] = caller;
    errno = ENOMEM;
    return true;
}

/* A call site as an offset in the binary: `addr2line -e build/tests/test_oom OFFSET`. */
extern char __executable_start;
#define SITE(p) ((unsigned long)((char *)(p) - &__executable_start))

#define OOM_CALLER __builtin_extract_return_addr(__builtin_return_address(0))

void *
__wrap_malloc(size_t n)
{
    if (oom_fail(OOM_CALLER))
        return NULL;
    void *p = __real_malloc(n);
    oom_track(p);
    return p;
}

void *
__wrap_calloc(size_t n, size_t size)
{
    if (oom_fail(OOM_CALLER))
        return NULL;
    void *p = __real_calloc(n, size);
    oom_track(p);
    return p;
}

void *
__wrap_aligned_alloc(size_t align, size_t n)
{
    if (oom_fail(OOM_CALLER))
        return NULL;
    void *p = __real_aligned_alloc(align, n);
    oom_track(p);
    return p;
}

char *
__wrap_strdup(const char *s)
{
    if (oom_fail(OOM_CALLER))
        return NULL;
    char *p = __real_strdup(s);
    oom_track(p);
    return p;
}

char *
__wrap_strndup(const char *s, size_t n)
{
    if (oom_fail(OOM_CALLER))
        return NULL;
    char *p = __real_strndup(s, n);
    oom_track(p);
    return p;
}

void *
__wrap_realloc(void *p, size_t n)
{
    if (oom_fail(OOM_CALLER))
        return NULL; /* p stays the caller's */
    void *q = __real_realloc(p, n);
    if (q || !n) {
        oom_untrack(p);
        oom_track(q);
    }
    return q;
}

void *
__wrap_reallocarray(void *p, size_t n, size_t size)
{
    if (oom_fail(OOM_CALLER))
        return NULL;
    void *q = __real_reallocarray(p, n, size);
    if (q) {
        oom_untrack(p);
        oom_track(q);
    }
    return q;
}

void
__wrap_free(void *p)
{
    oom_untrack(p);
    __real_free(p);
}

static void
oom_arm(unsigned long fail_at)
{
    oom.n = 0;
    oom.fail_at = fail_at;
    oom.failed = false;
    oom.caller = NULL;
    oom.armed = true;
}

static void
oom_disarm(void)
{
    oom.armed = false;
}

/* --- fakes of the neighbours out of scope ------------------------------------ */

/* The password worker answers at once, yes, as its cache does for a known pair. */
enum authq_result
authq_check(struct shard *s, uint32_t waiter, uint64_t cookie, const union sockaddr_inx *client,
            const struct auth_cred *cred)
{
    (void)s;
    (void)waiter;
    (void)cookie;
    (void)client;
    (void)cred;
    return AUTHQ_OK;
}

void
authq_cancel(struct shard *s, uint32_t waiter)
{
    (void)s;
    (void)waiter;
}

/*
 * The resolver: the test answers with conn_resolved(). Its one allocation is dns.c's (a
 * query, freed with the answer): out of memory, it answers -ENOMEM at once, as dns.c does.
 */
static struct {
    bool pending;
    uint64_t ref;
    uint16_t port;
    void *query;
} dns;

void
dns_resolve(struct shard *s, const char *name, uint16_t port, uint64_t ref)
{
    (void)name;
    dns.query = malloc(64);
    if (!dns.query) {
        conn_resolved(s, ref, -ENOMEM, NULL, 0);
        return;
    }
    dns.pending = true;
    dns.ref = ref;
    dns.port = port;
}

/* --- the shard ------------------------------------------------------------------ */

static struct shard sh;
static struct opts o;
static struct policy *pol;
static struct hosts *hosts;
static char hosts_path[64];
static int listener = -1;
static uint16_t port;
static unsigned n_ends[END__COUNT];    /* log lines by reason, this round */
static union sockaddr_inx client_addr; /* the clients' address, as the shard saw it */

static void
batch_end(struct shard *s)
{
    relay_batch_end(s);
    if (s->hsp.handoff)
        handshake_handoff(s);
}

static void
count_end(struct shard *s)
{
    (void)s;
    static unsigned seen;
    if (fs_log_n < seen)
        seen = 0;
    if (fs_log_n > seen) {
        seen = fs_log_n;
        n_ends[fs_log_last.end]++;
    }
}

static void
shard_up(void)
{
    fs_start(&sh, &o, pol, 8);
    sh.hosts = hosts;
    /* Not a logger: fake_shard.h's log_push() counts the lines and keeps the last. */
    sh.lg = (struct logger *)&sh;
    assert_int_equal(handshake_init(&sh, request_start), 0);
    assert_int_equal(relay_init(&sh), 0);
    fr_use_buf_ring(sh.relay.br, o.buf_count);
    /* Client addresses' limits (client_limits max_conns): the shared map and a tunnel's own
     * limit state. */
    sh.climap = climap_new();
    assert_non_null(sh.climap);
    fr_batch_end = batch_end;
    fr_after_cqe = count_end;
    memset(n_ends, 0, sizeof(n_ends));
    memset(&dns, 0, sizeof(dns));
}

static void
shard_down(void)
{
    fs_close_all(&sh, true);
    assert_int_equal(fr_n, 0);
    assert_int_equal(fr_bufs_free(), o.buf_count);
    /* Every tunnel gave its client address's count back: the address may open one now. */
    if (client_addr.sa.sa_family) {
        bool over;
        struct lim_node *n = climap_take(sh.climap, &client_addr, 1, &over);
        if (!n)
            fail_msg("a tunnel's count stayed with its client address (over: %d)", over);
        lim_open_put(n);
    }
    relay_fini(&sh);
    handshake_fini(&sh);
    rcu_unregister_thread(); /* climap_free() registers for itself */
    climap_free(sh.climap);
    rcu_register_thread();
    fs_fini(&sh);
}

/* --- the kernel and the clients ------------------------------------------------- */

/*
 * One batch: the handshake's plain recvs (the fake kernel runs only buffer-select ones)
 * read here, then everything else as fake_ring.h's kernel does. Returns the CQEs delivered.
 */
static unsigned
kernel_pass(void)
{
    for (unsigned i = 0; i < fr_n;) {
        struct io_uring_sqe *s = &fr_ops[i].sqe;
        if (s->opcode != IORING_OP_RECV || (s->flags & IOSQE_BUFFER_SELECT)) {
            i++;
            continue;
        }
        ssize_t n = recv(s->fd, (void *)(uintptr_t)s->addr, s->len, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            i++;
            continue;
        }
        uint64_t ud = s->user_data;
        fr_remove(i);
        fr_post(ud, n < 0 ? -errno : (int)n, 0);
    }
    return fr_pass(&sh);
}

struct client {
    int fd;             /* the program's end */
    int target;         /* the target's end, accepted; -1 none */
    uint32_t slot, gen; /* its connection; slot CONN_NIL: none (refused at once) */
    uint8_t in[256];
    size_t n_in;
    bool eof; /* the server closed it */
};

/* Read what the server sent the client (EOF or a reset: eof). */
static void
client_read(struct client *cl)
{
    for (;;) {
        ssize_t r = recv(cl->fd, cl->in + cl->n_in, sizeof(cl->in) - cl->n_in, MSG_DONTWAIT);
        if (r > 0) {
            cl->n_in += (size_t)r;
            continue;
        }
        if (r == 0 || errno != EAGAIN)
            cl->eof = true;
        return;
    }
}

/* The resolver answers the name it was asked: the target's address. */
static void
dns_answer(void)
{
    if (!dns.pending)
        return;
    dns.pending = false;
    free(dns.query);
    dns.query = NULL;
    union sockaddr_inx a = {.v4 = {.sin_family = AF_INET, .sin_port = htons(dns.port)}};
    a.v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    conn_resolved(&sh, dns.ref, 0, &a, 1);
}

/* Batches until the client has want bytes from the server, or its end closed. */
static bool
pump_for(struct client *cl, size_t want)
{
    for (int i = 0; i < 2000; i++) {
        client_read(cl);
        if (cl->n_in >= want)
            return true;
        if (cl->eof)
            return false;
        dns_answer();
        if (!kernel_pass())
            usleep(200);
    }
    fail_msg("hang: the client waited for %zu bytes, has %zu, its end still open", want, cl->n_in);
    return false;
}

static void
client_send(struct client *cl, const void *p, size_t n)
{
    ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        cl->eof = true;
        return;
    }
    assert_int_equal(w, (ssize_t)n);
}

/* Bytes from one end to the other through the tunnel: true when all came. */
static bool
relay_bytes(int from, int to, const char *what)
{
    size_t n = strlen(what);
    if (send(from, what, n, MSG_NOSIGNAL) != (ssize_t)n)
        return false;
    char buf[64];
    size_t got = 0;
    for (int i = 0; i < 2000 && got < n; i++) {
        ssize_t r = recv(to, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0 || errno != EAGAIN)
            return false;
        if (!kernel_pass())
            usleep(200);
    }
    if (got < n)
        fail_msg("hang: %zu of %zu bytes relayed", got, n);
    return memcmp(buf, what, n) == 0;
}

/*
 * BULK bytes from one end to the other, the receiver reading nothing until the tunnel
 * stalls (the copy engine's send finds the destination full and spills its buffer):
 * true when all came, in order.
 */
#define BULK (1u << 20)
static bool
bulk_bytes(int from, int to)
{
    static uint8_t out[16384], in[16384];
    size_t sent = 0, got = 0;
    bool reading = false;
    for (int i = 0; i < 20000 && got < BULK; i++) {
        bool moved = false;
        while (sent < BULK) {
            size_t k = BULK - sent < sizeof(out) ? BULK - sent : sizeof(out);
            for (size_t j = 0; j < k; j++)
                out[j] = (uint8_t)((sent + j) * 7);
            ssize_t w = send(from, out, k, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w <= 0)
                break;
            sent += (size_t)w;
            moved = true;
        }
        while (reading) {
            ssize_t r = recv(to, in, sizeof(in), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                return false;
            if (r < 0)
                break;
            for (ssize_t j = 0; j < r; j++)
                if (in[j] != (uint8_t)((got + (size_t)j) * 7))
                    fail_msg("bulk byte %zu differs", got + (size_t)j);
            got += (size_t)r;
            moved = true;
        }
        moved |= kernel_pass() > 0;
        if (!moved) {
            reading = true; /* stalled: the receiver wakes */
            usleep(200);
        }
    }
    if (got < BULK)
        fail_msg("hang: %zu of %u bulk bytes relayed", got, BULK);
    return true;
}

/* A new client: its connection accepted by the shard (which may refuse it at once). */
static void
client_open(struct client *cl)
{
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp), 0);
    memset(cl, 0, sizeof(*cl));
    cl->fd = sp[1];
    cl->target = -1;
    cl->slot = CONN_NIL;
    handshake_start(&sh, sp[0], false);
    for (uint32_t i = 0; i < sh.high; i++) {
        if (sh.conns[i].state != CONN_FREE && sh.conns[i].cfd == sp[0]) {
            cl->slot = i;
            cl->gen = sh.conns[i].gen;
            client_addr = sh.conns[i].client;
        }
    }
}

static bool
client_gone(const struct client *cl)
{
    return cl->slot == CONN_NIL || sh.conns[cl->slot].gen != cl->gen ||
           sh.conns[cl->slot].state == CONN_FREE;
}

/* BAD_NAME: a name no host can have, refused 0x04 by design (the log keeps it). */
enum dest { BY_ADDR, BY_HOSTS, BY_DNS, BAD_NAME };

struct step {
    enum dest dest;
    bool password;
    bool bulk;   /* a megabyte each way that stalls the tunnel (a spill) */
    bool queued; /* a second client waits for the handshake context meanwhile */
    bool params; /* username_params: a session and a fault asked in the user name */
    bool http;   /* HTTP CONNECT (with password: Basic credentials) instead of SOCKS5 */
};

/* Batches until the client has a whole HTTP response (its header), or its end closed. */
static bool
pump_http(struct client *cl)
{
    for (size_t want = 12;; want = cl->n_in + 1) {
        if (!pump_for(cl, want))
            return false;
        if (memmem(cl->in, cl->n_in, "\r\n\r\n", 4))
            return true;
        assert_true(cl->n_in < sizeof(cl->in));
    }
}

/* An HTTP CONNECT to the target (alice's Basic credentials with password): true on 200. */
static bool
http_connect(struct client *cl, bool password)
{
    char req[256];
    int n =
        snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%s\r\n",
                 port, port, password ? "Proxy-Authorization: Basic YWxpY2U6cHc=\r\n" : "");
    client_send(cl, req, (size_t)n);
    if (!pump_http(cl))
        return false;
    if (memcmp(cl->in, "HTTP/1.1 200 ", 13) != 0)
        fail_msg("HTTP CONNECT answered %.12s", (const char *)cl->in);
    return true;
}

/*
 * The client's whole connection, the shard playing its part, both ends closed at the end:
 * true when it was served (replies, bytes both ways), false when the server closed it first.
 */
static bool
client_go(struct client *cl, const struct step *st)
{
    bool served = false;
    pol->n_auth = st->password ? 1 : 0;
    pol->auth_password = st->password;
    pol->username_params = st->params;
    pol->auth_methods[0] = st->password ? SOCKS5_METHOD_PASSWORD : SOCKS5_METHOD_NONE;
    pol->http_connect = st->http;
    if (st->http) {
        if (!http_connect(cl, st->password))
            goto out;
        goto relay;
    }
    uint8_t greet[3] = {5, 1, st->password ? SOCKS5_METHOD_PASSWORD : SOCKS5_METHOD_NONE};
    client_send(cl, greet, sizeof(greet));
    size_t at = 2;
    if (!pump_for(cl, at))
        goto out;
    assert_int_equal(cl->in[0], 5);
    assert_int_equal(cl->in[1], greet[2]);
    if (st->password) {
        uint8_t auth[64] = {1};
        const char *user = st->params ? "alice-session-s1-fault-wrong_bnd" : "alice";
        size_t ul = strlen(user);
        auth[1] = (uint8_t)ul;
        memcpy(auth + 2, user, ul);
        memcpy(auth + 2 + ul, "\2pw", 3);
        client_send(cl, auth, 2 + ul + 3);
        at += 2;
        if (!pump_for(cl, at))
            goto out;
        /* A verdict is right or not given: never "wrong password" for want of memory. */
        if (cl->in[at - 1] != 0)
            fail_msg("a good password answered with status %u", cl->in[at - 1]);
    }
    uint8_t req[64] = {5, SOCKS5_CMD_CONNECT, 0};
    size_t n = 3;
    const char *name = st->dest == BY_HOSTS   ? "target.test"
                       : st->dest == BAD_NAME ? "bad name!"
                                              : "remote.example";
    if (st->dest == BY_ADDR) {
        req[n++] = SOCKS5_ATYP_IPV4;
        uint32_t lo = htonl(INADDR_LOOPBACK);
        memcpy(req + n, &lo, 4);
        n += 4;
    } else {
        req[n++] = SOCKS5_ATYP_DOMAIN;
        req[n++] = (uint8_t)strlen(name);
        memcpy(req + n, name, strlen(name));
        n += strlen(name);
    }
    req[n++] = (uint8_t)(port >> 8);
    req[n++] = (uint8_t)port;
    client_send(cl, req, n);
    if (!pump_for(cl, at + 10))
        goto out;
    assert_int_equal(cl->in[at], 5);
    if (st->dest == BAD_NAME) {
        assert_int_equal(cl->in[at + 1], SOCKS5_REP_HOST_UNREACH);
        served = true;
        goto out;
    }
    if (cl->in[at + 1] != SOCKS5_REP_SUCCEEDED)
        goto out;
relay:
    cl->target = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
    assert_true(cl->target >= 0);
    if (!relay_bytes(cl->fd, cl->target, "ping from the client") ||
        !relay_bytes(cl->target, cl->fd, "pong from the target"))
        goto out;
    if (st->bulk && (!bulk_bytes(cl->fd, cl->target) || !bulk_bytes(cl->target, cl->fd)))
        goto out;
    served = true;
out:
    close(cl->fd);
    if (cl->target >= 0)
        close(cl->target);
    for (int i = 0; i < 2000 && !client_gone(cl); i++)
        if (!kernel_pass())
            usleep(200);
    if (!client_gone(cl))
        fail_msg("hang: the connection outlived both its ends");
    /* Served as the user it logged in as: the rules, limits and the log saw its name. */
    if (served && st->password && strcmp(fs_log_last.user, "alice") != 0)
        fail_msg("a client served without its user (log: \"%s\")", fs_log_last.user);
    return served;
}

/* --- the loop --------------------------------------------------------------------- */

/* The scenario, step by step: each a client (a queued step two at once). */
static const struct step scenario[] = {
    {.dest = BY_ADDR},
    {.dest = BY_HOSTS, .password = true, .queued = true},
    {.dest = BY_DNS, .bulk = true},
    {.dest = BY_ADDR, .password = true},
    {.dest = BY_HOSTS, .password = true, .params = true},
    {.dest = BY_ADDR, .password = true, .http = true},
    {.dest = BAD_NAME},
};
#define N_STEPS (sizeof(scenario) / sizeof(scenario[0]))

/*
 * The whole scenario on a fresh shard, then one more client after it; refused[k]: clients
 * of step k (N_STEPS: the last one) the server closed before serving them; failed_in:
 * the step in which the armed allocation failed (N_STEPS + 1: none).
 */
static void
run_scenario(unsigned refused[N_STEPS + 1], unsigned *failed_in)
{
    static const struct step last = {.dest = BY_ADDR};
    *failed_in = N_STEPS + 1;
    for (unsigned k = 0; k <= N_STEPS; k++) {
        const struct step *st = k < N_STEPS ? &scenario[k] : &last;
        bool before = oom.failed;
        struct client a, b;
        client_open(&a);
        if (st->queued) {
            client_open(&b);
            if (b.slot != CONN_NIL)
                assert_null(sh.conns[b.slot].hs); /* it waits for a's context */
        }
        refused[k] = !client_go(&a, st);
        if (st->queued) {
            const struct step plain = {.dest = BY_ADDR};
            refused[k] += !client_go(&b, &plain);
        }
        if (!before && oom.failed)
            *failed_in = k;
    }
}

static int
setup(void **state)
{
    (void)state;
    memset(&o, 0, sizeof(o));
    o.connect_timeout_s = 5;
    o.handshake_timeout_s = 10;
    o.hs_slots = 1; /* a second client at once waits for the context (a queued step) */
    o.relay = RELAY_COPY;
    o.buf_count = 8;
    o.buf_size = 4096;
    o.pipe_size = 65536;
    struct acl *acl = acl_new();
    assert_non_null(acl);
    assert_true(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0) >= 0);
    pol = policy_new(&o, acl, NULL, 1);
    assert_non_null(pol);
    lim_conf_unset(&pol->client_lim);
    pol->client_lim.max_conns = 100;

    hosts = fs_hosts(hosts_path, "127.0.0.1 target.test\n");

    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(listener, (struct sockaddr *)&lo, sizeof(lo)), 0);
    /* Small receive buffers (the accepted targets inherit them): a bulk transfer stalls. */
    int rcvbuf = 8192;
    assert_int_equal(setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    assert_int_equal(listen(listener, 16), 0);
    socklen_t len = sizeof(lo);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&lo, &len), 0);
    port = ntohs(lo.sin_port);
    rcu_register_thread(); /* climap_take() reads under RCU, as a shard thread does */
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    rcu_unregister_thread();
    policy_free(pol);
    hosts_free(hosts);
    unlink(hosts_path);
    close(listener);
    return 0;
}

/* Without a failure every client is served: the scenario itself works, and reaches a spill. */
static void
test_scenario_serves_everyone(void **state)
{
    (void)state;
    unsigned fds = fs_open_fds(), live = oom.live;
    shard_up();
    oom_arm(0);
    unsigned refused[N_STEPS + 1], failed_in;
    run_scenario(refused, &failed_in);
    oom_disarm();
    for (unsigned k = 0; k <= N_STEPS; k++)
        assert_int_equal(refused[k], 0);
    assert_int_equal(n_ends[END_DONE] + n_ends[END_BAD_NAME], fs_log_n);
    assert_int_equal(n_ends[END_BAD_NAME], 1);
    assert_true(sh.st.spills > 0);
    assert_true(sh.st.hs_waits > 0);
    shard_down();
    assert_int_equal(fs_open_fds(), fds);
    assert_int_equal(oom.live, live);
    print_message("%lu allocations on the path of %u connections\n", oom.n, fs_log_n);
}

/* The Nth allocation fails, for every N the scenario reaches. */
static void
test_every_allocation_fails_once(void **state)
{
    (void)state;
    unsigned long fail_at;
    for (fail_at = 1;; fail_at++) {
        unsigned fds = fs_open_fds(), live = oom.live;
        shard_up();
        oom_arm(fail_at);
        unsigned refused[N_STEPS + 1], failed_in, n_refused = 0;
        run_scenario(refused, &failed_in);
        oom_disarm();
        bool reached = oom.failed;
        unsigned long site = SITE(oom.caller);
        /* Only the failure's own client may be refused, and for want of memory. */
        for (unsigned k = 0; k <= N_STEPS; k++) {
            n_refused += refused[k];
            if (refused[k] && (k != failed_in || refused[k] > 1))
                fail_msg("allocation %lu failed (site 0x%lx) in step %u, and step %u had "
                         "%u clients refused",
                         fail_at, site, failed_in, k, refused[k]);
        }
        if (n_refused != n_ends[END_RESOURCE] || n_ends[END_BAD_NAME] != 1 ||
            n_ends[END_DONE] + n_ends[END_BAD_NAME] + n_refused != fs_log_n)
            fail_msg("allocation %lu failed (site 0x%lx): %u refused, %u log lines: done %u, "
                     "resource %u, bad name %u",
                     fail_at, site, n_refused, fs_log_n, n_ends[END_DONE], n_ends[END_RESOURCE],
                     n_ends[END_BAD_NAME]);
        shard_down();
        if (fs_open_fds() != fds)
            fail_msg("allocation %lu failed (site 0x%lx): %u fds leaked", fail_at, site,
                     fs_open_fds() - fds);
        if (oom.live != live)
            fail_msg("allocation %lu failed (site 0x%lx): %d allocations leaked", fail_at, site,
                     (int)oom.live - (int)live);
        if (!reached)
            break;
        print_message("allocation %lu (site 0x%lx, step %u): %s\n", fail_at, site, failed_in,
                      n_refused ? "its client refused" : "all served");
    }
    unsigned long sites = fail_at - 1;
    print_message("%lu allocations failed in turn, at %u distinct call sites\n", sites,
                  oom.n_callers);
    assert_true(sites >= OOM_MIN_SITES);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenario_serves_everyone),
        cmocka_unit_test(test_every_allocation_fails_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
