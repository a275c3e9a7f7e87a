/*
 * test_request.c - src/request.c, the request phase: the resolve ladder and
 * CONNECT, on the real slot layer (timers, references, the hang-up watch)
 * with a fake ring (fake_ring.h) whose kernel connects for real on loopback.
 *
 * Rules: an address request connects to that address with DST.PORT; a name in
 * the hosts table, or a localhost name, connects without DNS; any other name
 * goes to dns_resolve() with the connection's conn_ref; the answer's addresses
 * are tried in order, those the rules deny skipped (a name cannot lead into a
 * denied range), the next tried after a failed connect; all denied: 0x02, all
 * failed: the reply of the last errno; connect_timeout while resolving: 0x04,
 * while connecting: a cancel of the connect by user_data, then 0x06 when it
 * completes -ECANCELED; a DNS answer for a connection no longer resolving is
 * ignored; request_tick() watches for a hang-up only resolves and connects
 * older than a second.
 *
 * Happy Eyeballs (RFC 8305, happy_eyeballs_delay 250 ms): the addresses are
 * tried IPv6 first, families interleaved; with more than one address a delay
 * (OP_CONNECT_DELAY, an IORING_OP_TIMEOUT of 250 ms) runs beside the first
 * attempt, and when it expires the next address starts as a second attempt
 * (OP_CONNECT argument 1, on c->xfd) while the first goes on; a failed attempt
 * starts the next at once; at most two attempts at once; the first to connect
 * wins (it is c->tfd, and c->dest), the other attempt and the delay are
 * cancelled by user_data, and the success reply goes out only when their
 * completions are in, so none reaches the relay phase; the loser's socket is
 * closed exactly once, when its completion comes, or when the slot is freed;
 * connect_timeout cancels every attempt and the delay and answers 0x06 once the
 * last is back, trying nothing more; with a delay of 0 one attempt at a time.
 *
 * Links request.o with the real slot layer (conn.o, clients.o), the real rules
 * (policy.o, acl.o, users.o, sock.o), the real hosts table (hosts.o, read from
 * a temporary file) and socks5.o, addr.o, hostname.o, happy.o; close() is wrapped
 * to be counted. Fakes: ring_sqe()
 * (fake_ring.h), log_push() (fake_shard.h), and the phases around it:
 * handshake_dest() (the test's context), handshake_fail() (records the reply,
 * then closes as if it were written at once), handshake_succeed(), handshake_release(),
 * handshake_on_cqe(), handshake_on_hangup(), dns_resolve(), bind_start(),
 * udp_associate(), relay_start() (all record their calls).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl.h"
#include "bind.h"
#include "conn.h"
#include "dns.h"
#include "handshake.h"
#include "hosts.h"
#include "policy.h"
#include "relay.h"
#include "request.h"
#include "shard_types.h"
#include "udp.h"

#define FAKE_SHARD_REAL_POLICY
#include "fake_shard.h"

/* --- fakes of the phases around it, and of the resolver ------------------ */

static struct {
    unsigned fails, succeeds, releases, hs_cqes, hangups, binds, udps, relays;
    uint8_t rep;
    enum conn_end why;
    uint8_t state; /* the connection's state at the reply */
    union sockaddr_inx bnd;
    void (*next)(struct shard *sh, struct conn *c);
    unsigned next_flags;
    unsigned hs_op;
    unsigned ops_at_reply; /* the request phase's connects and delays in flight at the reply */
} got;

/* close() counted per fd (-Wl,--wrap=close). */
#define MAX_FD 4096
static unsigned closes[MAX_FD];
int __real_close(int fd);
int __wrap_close(int fd);

int
__wrap_close(int fd)
{
    if (fd >= 0 && fd < MAX_FD)
        closes[fd]++;
    return __real_close(fd);
}

static struct {
    unsigned n;
    char name[256];
    uint16_t port;
    uint64_t ref;
} dns;

const struct socks_dest *
handshake_dest(const struct conn *c)
{
    return &c->hs->p.s5.dest;
}

void
handshake_fail(struct shard *sh, struct conn *c, uint8_t rep, enum conn_end why)
{
    got.fails++;
    got.rep = rep;
    got.why = why;
    got.state = c->state;
    c->rep = (int8_t)rep;
    conn_close(sh, c, why);
}

/* No rule here carries a fault (fault.h): never a forced refusal. */
bool
handshake_fault(struct shard *sh, struct conn *c, int rule)
{
    (void)sh;
    (void)c;
    (void)rule;
    return false;
}

void
handshake_succeed(struct shard *sh, struct conn *c, const union sockaddr_inx *bnd,
                  void (*next)(struct shard *sh, struct conn *c), unsigned flags)
{
    (void)sh;
    got.succeeds++;
    got.state = c->state;
    got.ops_at_reply = fr_count(OP_CONNECT, c->slot, -1) + fr_count(OP_CONNECT_DELAY, c->slot, -1) +
                       fr_cq_count(OP_CONNECT, c->slot, -1) +
                       fr_cq_count(OP_CONNECT_DELAY, c->slot, -1);
    got.bnd = *bnd;
    got.next = next;
    got.next_flags = flags;
    c->rep = SOCKS5_REP_SUCCEEDED;
    c->state = CONN_REPLY;
}

void
handshake_release(struct shard *sh, struct conn *c)
{
    (void)sh;
    got.releases++;
    c->hs = NULL;
}

void
handshake_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    (void)sh;
    (void)c;
    got.hs_cqes++;
    got.hs_op = ud_op(cqe->user_data);
}

void
handshake_on_hangup(struct shard *sh, struct conn *c, int events)
{
    (void)sh;
    (void)c;
    (void)events;
    got.hangups++;
}

void
dns_resolve(struct shard *sh, const char *name, uint16_t port, uint64_t ref)
{
    (void)sh;
    dns.n++;
    snprintf(dns.name, sizeof(dns.name), "%s", name);
    dns.port = port;
    dns.ref = ref;
}

void
bind_start(struct shard *sh, struct conn *c)
{
    (void)sh;
    (void)c;
    got.binds++;
}

void
udp_associate(struct shard *sh, struct conn *c)
{
    (void)sh;
    (void)c;
    got.udps++;
}

void
relay_start(struct shard *sh, struct conn *c)
{
    (void)sh;
    (void)c;
    got.relays++;
}

/* --- the fake shard ------------------------------------------------------ */

static struct shard sh;
static struct opts o;
static struct policy *pol;
static struct hosts *hosts;
static char hosts_path[64];
static struct hs hs_mem[8];
static int listener = -1;
static uint16_t open_port, closed_port; /* on 127.0.0.1: one listening, one refusing */

/* Connects to 198.51.100.0/24 (TEST-NET-2) and 2001:db8::/32 are completed by hand, never run. */
static bool
hold_test_net(const struct io_uring_sqe *sqe)
{
    if (sqe->opcode != IORING_OP_CONNECT)
        return false;
    const union sockaddr_inx *a = (const union sockaddr_inx *)(uintptr_t)sqe->addr;
    if (a->sa.sa_family == AF_INET6)
        return a->v6.sin6_addr.s6_addr[0] == 0x20 && a->v6.sin6_addr.s6_addr[1] == 0x01 &&
               a->v6.sin6_addr.s6_addr[2] == 0x0d && a->v6.sin6_addr.s6_addr[3] == 0xb8;
    return a->sa.sa_family == AF_INET && (ntohl(a->v4.sin_addr.s_addr) >> 8) == 0xC63364;
}

static struct acl_cidr
cidr(const char *s)
{
    struct acl_cidr c;
    assert_int_equal(acl_cidr_parse(s, &c), 0);
    return c;
}

static uint16_t
bound_port(int fd)
{
    union sockaddr_inx a;
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, &a.sa, &len), 0);
    return ntohs(a.v4.sin_port);
}

static int
setup(void **state)
{
    (void)state;
    memset(&o, 0, sizeof(o));
    memset(&got, 0, sizeof(got));
    memset(&dns, 0, sizeof(dns));
    memset(hs_mem, 0, sizeof(hs_mem));
    memset(closes, 0, sizeof(closes));

    /* Rules: nothing into 10.0.0.0/8, anything else. */
    struct acl *acl = acl_new();
    assert_non_null(acl);
    struct acl_cidr ten = cidr("10.0.0.0/8");
    assert_true(acl_add(acl, ACL_DENY, NULL, 0, &ten, 1, NULL, 0, NULL, 0, 0, NULL, 0) >= 0);
    assert_true(acl_add(acl, ACL_ALLOW, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0) >= 0);
    o.connect_timeout_s = 5;
    o.handshake_timeout_s = 10;
    pol = policy_new(&o, acl, NULL, 1);
    assert_non_null(pol);

    hosts = fs_hosts(hosts_path, "# hosts(5)\n"
                                 "127.0.0.1 target.test alias.test\n"
                                 "10.9.9.9 internal.test\n");

    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(listener, (struct sockaddr *)&lo, sizeof(lo)), 0);
    assert_int_equal(listen(listener, 16), 0);
    open_port = bound_port(listener);
    int gone = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(gone, (struct sockaddr *)&lo, sizeof(lo)), 0);
    closed_port = bound_port(gone);
    close(gone); /* nothing listens there: connects are refused */

    fs_start(&sh, &o, pol, 8);
    sh.hosts = hosts;
    fr_hold = hold_test_net;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    fs_close_all(&sh, false);
    fs_fini(&sh);
    policy_free(pol);
    hosts_free(hosts);
    unlink(hosts_path);
    close(listener);
    return 0;
}

/* fds open now, less the test's own ends of the clients' socket pairs. */
static unsigned
open_fds(void)
{
    return fs_open_fds() - fs_n_peers;
}

/* A connection whose handshake parsed a request: cmd to dest, with a context and a client. */
static struct conn *
conn_with(uint8_t cmd, const struct socks_dest *dest)
{
    struct conn *c = conn_alloc(&sh, &fs_before_phase);
    assert_non_null(c);
    c->cfd = fs_pair();
    c->client.v4.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &c->client.v4.sin_addr);
    c->version = 5;
    c->cmd = cmd;
    c->hs = &hs_mem[c->slot];
    memset(c->hs, 0, sizeof(*c->hs));
    c->hs->p.s5.dest = *dest;
    return c;
}

static struct conn *
request_v4(uint8_t cmd, const char *ip, uint16_t port)
{
    struct socks_dest d = {.atyp = SOCKS5_ATYP_IPV4, .port = port};
    assert_int_equal(inet_pton(AF_INET, ip, &d.u.v4), 1);
    struct conn *c = conn_with(cmd, &d);
    request_start(&sh, c);
    return c;
}

static struct conn *
request_name(uint8_t cmd, const char *name, uint16_t port)
{
    struct socks_dest d = {.atyp = SOCKS5_ATYP_DOMAIN, .port = port};
    d.name_len = (uint8_t)strlen(name);
    memcpy(d.u.name, name, d.name_len + 1);
    struct conn *c = conn_with(cmd, &d);
    request_start(&sh, c);
    return c;
}

/* ip (of family fam) and port as a socket address. */
static union sockaddr_inx
inx(int fam, const char *ip, uint16_t port)
{
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    a.sa.sa_family = (sa_family_t)fam;
    if (fam == AF_INET) {
        a.v4.sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &a.v4.sin_addr), 1);
    } else {
        a.v6.sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &a.v6.sin6_addr), 1);
    }
    return a;
}

static union sockaddr_inx
v4(const char *ip, uint16_t port)
{
    return inx(AF_INET, ip, port);
}

static union sockaddr_inx
v6(const char *ip, uint16_t port)
{
    return inx(AF_INET6, ip, port);
}

/* The address of c's connect in flight (it must have exactly one). */
static union sockaddr_inx
connect_addr(const struct conn *c)
{
    assert_int_equal(fr_count(OP_CONNECT, c->slot, -1), 1);
    const struct io_uring_sqe *s = &fr_ops[fr_find(OP_CONNECT, c->slot, -1)].sqe;
    assert_int_equal(s->opcode, IORING_OP_CONNECT);
    assert_int_equal(s->fd, c->tfd);
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    const struct sockaddr *sa = (const struct sockaddr *)(uintptr_t)s->addr;
    assert_int_equal(s->off, addr_len(sa));
    memcpy(&a, sa, addr_len(sa));
    return a;
}

static void
assert_addr(const union sockaddr_inx *a, const char *ip, uint16_t port)
{
    char text[ADDR_STRLEN], want[ADDR_STRLEN];
    addr_format(&a->sa, text, sizeof(text));
    snprintf(want, sizeof(want), "%s:%u", ip, port);
    assert_string_equal(text, want);
}

/* The kernel runs c's connect (loopback) until it completes, then the app sees it. */
static void
kernel_completes_connect(const struct conn *c)
{
    for (int i = 0; i < 1000; i++) {
        int k = fr_find(OP_CONNECT, c->slot, -1);
        assert_true(k >= 0);
        if (fr_exec((unsigned)k)) {
            fr_reap(&sh);
            return;
        }
        usleep(1000);
    }
    fail_msg("the connect did not complete");
}

/* Let the kernel connect everything in flight for real. */
static void
kernel_connects(void)
{
    for (int i = 0; i < 200 && fr_count(OP_CONNECT, CONN_NIL, -1); i++) {
        fr_run(&sh, 10);
        if (fr_count(OP_CONNECT, CONN_NIL, -1))
            usleep(1000);
    }
}

/* --- the tests ------------------------------------------------------------- */

/* An address: one connect to it with DST.PORT, no DNS; its success is the reply. */
static void
test_address_connects(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    struct conn *c = request_v4(SOCKS5_CMD_CONNECT, "127.0.0.1", open_port);
    assert_int_equal(dns.n, 0);
    assert_int_equal(c->state, CONN_CONNECT);
    assert_int_equal(c->tlist, TL_CONNECT);
    assert_int_equal(c->port, open_port);
    assert_addr(&c->dest, "127.0.0.1", open_port);
    union sockaddr_inx a = connect_addr(c);
    assert_addr(&a, "127.0.0.1", open_port);
    assert_true(fcntl(c->tfd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(open_fds(), fds + 2); /* its client socket, its target socket */

    kernel_connects();
    assert_int_equal(got.succeeds, 1);
    assert_int_equal(got.fails, 0);
    assert_int_equal(got.state, CONN_CONNECT);
    assert_ptr_equal(got.next, relay_start);
    assert_int_equal(got.next_flags, HS_FORWARD_UNREAD);
    /* BND is the target socket's own address. */
    assert_int_equal(got.bnd.sa.sa_family, AF_INET);
    assert_int_equal(ntohs(got.bnd.v4.sin_port), bound_port(c->tfd));
    assert_int_equal(open_fds(), fds + 2);
}

/* An address the rules deny: 0x02, no socket, no connect. */
static void
test_denied_address(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    struct conn *c = request_v4(SOCKS5_CMD_CONNECT, "10.1.2.3", 80);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_NOT_ALLOWED);
    assert_int_equal(got.why, END_DENIED);
    assert_int_equal(fr_count(OP_CONNECT, CONN_NIL, -1), 0);
    assert_int_equal(open_fds(), fds); /* no target socket, and the client's went with it */
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(sh.st.acl_denied, 1);

    /* The same address in IPv6 clothes (IPv4-mapped) is the same address. */
    struct socks_dest d = {.atyp = SOCKS5_ATYP_IPV6, .port = 80};
    assert_int_equal(inet_pton(AF_INET6, "::ffff:10.1.2.3", &d.u.v6), 1);
    c = conn_with(SOCKS5_CMD_CONNECT, &d);
    request_start(&sh, c);
    assert_int_equal(got.fails, 2);
    assert_int_equal(got.rep, SOCKS5_REP_NOT_ALLOWED);
    assert_int_equal(fr_count(OP_CONNECT, CONN_NIL, -1), 0);
}

/* A name in the hosts table, and a localhost name: connected without DNS, with DST.PORT. */
static void
test_hosts_and_localhost_without_dns(void **state)
{
    (void)state;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "Alias.Test", open_port);
    assert_int_equal(dns.n, 0);
    assert_string_equal(c->host, "Alias.Test");
    union sockaddr_inx a = connect_addr(c);
    assert_addr(&a, "127.0.0.1", open_port);
    kernel_connects();
    assert_int_equal(got.succeeds, 1);

    /* localhost is ::1 and 127.0.0.1: IPv6 first (RFC 8305 section 4); nothing listens on
     * ::1 here, so the refusal sends it on to 127.0.0.1. */
    struct conn *l = request_name(SOCKS5_CMD_CONNECT, "localhost", open_port);
    assert_int_equal(dns.n, 0);
    a = connect_addr(l);
    assert_addr(&a, "[::1]", open_port);
    kernel_completes_connect(l);
    a = connect_addr(l);
    assert_addr(&a, "127.0.0.1", open_port);
    kernel_connects();
    assert_int_equal(got.succeeds, 2);

    /* A table name into a denied range is denied like its address. */
    struct conn *i = request_name(SOCKS5_CMD_CONNECT, "internal.test", 80);
    assert_int_equal(dns.n, 0);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_NOT_ALLOWED);
    assert_int_equal(i->state, CONN_FREE);
}

/* Any other name goes to DNS with the connection's reference, and waits. */
static void
test_other_name_goes_to_dns(void **state)
{
    (void)state;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 8443);
    assert_int_equal(dns.n, 1);
    assert_string_equal(dns.name, "www.example.org");
    assert_int_equal(dns.port, 8443);
    assert_int_equal(dns.ref, conn_ref(c, 0));
    assert_ptr_equal(conn_from_ref(&sh, dns.ref), c);
    assert_int_equal(c->state, CONN_RESOLVE);
    assert_true(c->hs_flags & HSF_DNS);
    assert_int_equal(c->tlist, TL_CONNECT);
    assert_int_equal(fr_n, 0);
    assert_int_equal(c->dest.sa.sa_family, 0);
}

/*
 * The answer's addresses in order: a denied one skipped, a refused one left for
 * the next, and the first that connects is the tunnel's, with no fd left over.
 */
static void
test_resolved_addresses_tried_in_order(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 80);
    union sockaddr_inx addrs[4] = {
        v4("10.0.0.5", open_port),
        v4("127.0.0.1", closed_port),
        v4("127.0.0.1", open_port),
        v4("127.0.0.1", closed_port),
    };
    conn_resolved(&sh, dns.ref, 0, addrs, 4);
    assert_false(c->hs_flags & HSF_DNS);
    assert_int_equal(c->state, CONN_CONNECT);
    assert_int_equal(sh.st.acl_denied, 1);
    union sockaddr_inx a = connect_addr(c);
    assert_addr(&a, "127.0.0.1", closed_port);

    /* Refused: the next address. */
    kernel_completes_connect(c);
    assert_int_equal(got.fails, 0);
    assert_int_equal(c->hs->last_err, -ECONNREFUSED);
    a = connect_addr(c);
    assert_addr(&a, "127.0.0.1", open_port);

    kernel_connects();
    assert_int_equal(got.succeeds, 1);
    assert_int_equal(got.fails, 0);
    assert_addr(&c->dest, "127.0.0.1", open_port);
    assert_int_equal(fr_count(OP_CONNECT, CONN_NIL, -1), 0);
    assert_int_equal(open_fds(), fds + 2); /* the refused attempt's socket is closed */
}

/* Every address denied: 0x02, whatever DNS said. */
static void
test_all_denied(void **state)
{
    (void)state;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 80);
    union sockaddr_inx addrs[3] = {v4("10.0.0.1", 80), v4("10.200.0.1", 80)};
    /* A mapped one too: DNS may answer AAAA ::ffff:10.x. */
    addrs[2].v6 = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons(80)};
    assert_int_equal(inet_pton(AF_INET6, "::ffff:10.3.0.1", &addrs[2].v6.sin6_addr), 1);
    conn_resolved(&sh, dns.ref, 0, addrs, 3);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_NOT_ALLOWED);
    assert_int_equal(got.why, END_DENIED);
    assert_int_equal(fr_n, 0);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(sh.st.acl_denied, 3);
}

/* Every connect failed: the reply says why the last one did; a denial among them does not. */
static void
test_all_failed_reply_of_last_errno(void **state)
{
    (void)state;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 80);
    union sockaddr_inx addrs[3] = {v4("198.51.100.1", 80), v4("10.0.0.1", 80),
                                   v4("198.51.100.2", 80)};
    conn_resolved(&sh, dns.ref, 0, addrs, 3);
    union sockaddr_inx a = connect_addr(c);
    assert_addr(&a, "198.51.100.1", 80);
    fr_complete_op(&sh, OP_CONNECT, c->slot, -1, -EHOSTUNREACH);
    a = connect_addr(c);
    assert_addr(&a, "198.51.100.2", 80);
    assert_int_equal(got.fails, 0);
    fr_complete_op(&sh, OP_CONNECT, c->slot, -1, -ECONNREFUSED);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_REFUSED);
    assert_int_equal(got.why, END_REPLY_ERR);
    assert_int_equal(c->state, CONN_FREE);

    /* The other way round: host unreachable. */
    c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 80);
    union sockaddr_inx two[2] = {v4("198.51.100.1", 80), v4("10.0.0.1", 80)};
    conn_resolved(&sh, dns.ref, 0, two, 2);
    fr_complete_op(&sh, OP_CONNECT, c->slot, -1, -EHOSTUNREACH);
    assert_int_equal(got.fails, 2);
    assert_int_equal(got.rep, SOCKS5_REP_HOST_UNREACH);
}

/* DNS failed, or answered nothing: 0x04; out of memory for the question, or of fds for a
 * socket to ask it on: 0x01, a resource failure (no verdict on the name). */
static void
test_dns_failure(void **state)
{
    (void)state;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "nx.example.org", 80);
    conn_resolved(&sh, dns.ref, -ENOENT, NULL, 0);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_HOST_UNREACH);
    assert_int_equal(c->state, CONN_FREE);
    c = request_name(SOCKS5_CMD_CONNECT, "empty.example.org", 80);
    conn_resolved(&sh, dns.ref, 0, NULL, 0);
    assert_int_equal(got.fails, 2);
    assert_int_equal(got.rep, SOCKS5_REP_HOST_UNREACH);
    assert_int_equal(got.why, END_REPLY_ERR);
    /* No memory for the question, or no socket to ask it on (an fd storm, dns.c): the
     * proxy's fault, not the name's. */
    static const int resource[] = {-ENOMEM, -EMFILE};
    for (unsigned i = 0; i < 2; i++) {
        c = request_name(SOCKS5_CMD_CONNECT, "busy.example.org", 80);
        conn_resolved(&sh, dns.ref, resource[i], NULL, 0);
        assert_int_equal(got.fails, 3 + i);
        assert_int_equal(got.rep, SOCKS5_REP_GENERAL);
        assert_int_equal(got.why, END_RESOURCE);
        assert_int_equal(c->state, CONN_FREE);
    }
}

/* connect_timeout while resolving: 0x04 once it has passed, not before; a late answer then
 * changes nothing. */
static void
test_timeout_while_resolving(void **state)
{
    (void)state;
    uint32_t t0 = sh.now_ds;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "slow.example.org", 80);
    uint64_t ref = dns.ref;
    sh.now_ds = t0 + 50;
    conn_timers_run(&sh);
    assert_int_equal(got.fails, 0);
    sh.now_ds = t0 + 51;
    conn_timers_run(&sh);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_HOST_UNREACH);
    assert_int_equal(got.state, CONN_RESOLVE);
    assert_false(c->hs_flags & HSF_DNS);
    union sockaddr_inx a = v4("127.0.0.1", open_port);
    conn_resolved(&sh, ref, 0, &a, 1);
    assert_int_equal(fr_n, 0);
    assert_int_equal(got.fails + got.succeeds, 1);
}

/* A second answer to a connection already connecting (no longer resolving) changes nothing. */
static void
test_answer_when_not_resolving_ignored(void **state)
{
    (void)state;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 80);
    union sockaddr_inx first = v4("198.51.100.1", 80), second = v4("198.51.100.9", 80);
    conn_resolved(&sh, dns.ref, 0, &first, 1);
    int tfd = c->tfd;
    conn_resolved(&sh, dns.ref, 0, &second, 1);
    union sockaddr_inx a = connect_addr(c);
    assert_addr(&a, "198.51.100.1", 80);
    assert_int_equal(c->tfd, tfd);
    assert_int_equal(c->hs->n_addrs, 1);
    assert_addr(&c->hs->addrs[0], "198.51.100.1", 80);
    assert_int_equal(got.fails + got.succeeds, 0);
}

/*
 * connect_timeout while connecting: the connect is cancelled by its user_data
 * (no reply yet); when it completes -ECANCELED the reply is 0x06, and the
 * addresses not tried yet stay untried (connect_timeout bounds the whole ladder).
 */
static void
test_timeout_while_connecting(void **state)
{
    (void)state;
    uint32_t t0 = sh.now_ds;
    unsigned fds = open_fds();
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 80);
    union sockaddr_inx addrs[2] = {v4("198.51.100.1", 80), v4("198.51.100.2", 80)};
    conn_resolved(&sh, dns.ref, 0, addrs, 2);
    uint64_t cud = fr_ud((unsigned)fr_find(OP_CONNECT, c->slot, -1));
    assert_int_equal(cud, conn_ud(c, OP_CONNECT, 0));
    sh.now_ds = t0 + 50;
    conn_timers_run(&sh);
    assert_int_equal(fr_count(OP_CANCEL, CONN_NIL, -1), 0);
    sh.now_ds = t0 + 51;
    conn_timers_run(&sh);
    assert_int_equal(got.fails, 0);
    assert_true(c->hs_flags & HSF_TIMED_OUT);
    int ci = fr_find(OP_CANCEL, c->slot, -1);
    assert_true(ci >= 0);
    const struct io_uring_sqe *s = &fr_ops[ci].sqe;
    assert_int_equal(s->opcode, IORING_OP_ASYNC_CANCEL);
    assert_false(s->cancel_flags & IORING_ASYNC_CANCEL_FD);
    assert_int_equal(s->addr, cud);

    /* The kernel cancels it: the connect ends -ECANCELED, then the cancel itself. */
    assert_true(fr_exec((unsigned)ci));
    assert_int_equal(fr_cq_n, 2);
    assert_int_equal(fr_cq[0].user_data, cud);
    assert_int_equal(fr_cq[0].res, -ECANCELED);
    fr_reap(&sh);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_TTL_EXPIRED);
    assert_int_equal(got.why, END_REPLY_ERR);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(fr_n, 0);
    assert_int_equal(open_fds(), fds);
}

/* request_tick(): the hang-up watch for resolves and connects that have lasted a second. */
static void
test_tick_watches_after_a_second(void **state)
{
    (void)state;
    uint32_t t0 = sh.now_ds;
    struct conn *r = request_name(SOCKS5_CMD_CONNECT, "slow.example.org", 80);
    sh.now_ds = t0 + 5;
    struct conn *k = request_v4(SOCKS5_CMD_CONNECT, "198.51.100.1", 80);
    /* Something else on the connect list (a datagram's name): never watched here. */
    struct conn *u = conn_with(SOCKS5_CMD_UDP, &(struct socks_dest){.atyp = SOCKS5_ATYP_IPV4});
    u->state = CONN_UDP;
    conn_timer_set(&sh, u, TL_CONNECT);

    sh.now_ds = t0 + 9;
    request_tick(&sh);
    assert_int_equal(fr_count(OP_HUP, CONN_NIL, -1), 0);
    sh.now_ds = t0 + 10;
    request_tick(&sh);
    assert_int_equal(fr_count(OP_HUP, r->slot, -1), 1);
    assert_int_equal(fr_count(OP_HUP, k->slot, -1), 0);
    const struct io_uring_sqe *s = &fr_ops[fr_find(OP_HUP, r->slot, -1)].sqe;
    assert_int_equal(s->fd, r->cfd);
    assert_true(s->poll32_events & POLLRDHUP);
    sh.now_ds = t0 + 15;
    request_tick(&sh);
    request_tick(&sh);
    assert_int_equal(fr_count(OP_HUP, r->slot, -1), 1);
    assert_int_equal(fr_count(OP_HUP, k->slot, -1), 1);
    sh.now_ds = t0 + 40;
    request_tick(&sh);
    assert_int_equal(fr_count(OP_HUP, u->slot, -1), 0);

    /* The client leaves: the watch fires and goes to the request phase's on_hangup. */
    shutdown(fs_peers[0], SHUT_WR);
    fr_run(&sh, 5);
    assert_int_equal(got.hangups, 1);
    assert_int_equal(fr_count(OP_HUP, r->slot, -1), 0);
}

/* What the request phase hands on: the handshake's own completions, BIND, UDP ASSOCIATE. */
static void
test_hands_on(void **state)
{
    (void)state;
    /* The method reply of a pipelining client is still being written. */
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 80);
    struct io_uring_sqe *sqe = conn_sqe(&sh, c, OP_HS_WRITE, 0);
    io_uring_prep_nop(sqe);
    fr_complete_op(&sh, OP_HS_WRITE, c->slot, -1, 2);
    assert_int_equal(got.hs_cqes, 1);
    assert_int_equal(got.hs_op, OP_HS_WRITE);
    assert_int_equal(c->state, CONN_RESOLVE);

    /* BIND waits for its addresses (a name from the table here), then goes to bind_start(). */
    request_name(SOCKS5_CMD_BIND, "target.test", 0);
    assert_int_equal(got.binds, 1);
    assert_int_equal(fr_count(OP_CONNECT, CONN_NIL, -1), 0);
    struct conn *b = request_name(SOCKS5_CMD_BIND, "peer.example.org", 0);
    assert_int_equal(got.binds, 1);
    union sockaddr_inx a = v4("198.51.100.3", 0);
    conn_resolved(&sh, dns.ref, 0, &a, 1);
    assert_int_equal(got.binds, 2);
    assert_int_equal(b->hs->n_addrs, 1);

    /* UDP ASSOCIATE goes to udp_associate() at once, with no resolve and no timer here. */
    unsigned n_dns = dns.n;
    struct conn *u = request_v4(SOCKS5_CMD_UDP, "0.0.0.0", 0);
    assert_int_equal(got.udps, 1);
    assert_int_equal(dns.n, n_dns);
    assert_int_equal(u->tlist, TL_NONE);
    assert_int_equal(fr_count(OP_CONNECT, CONN_NIL, -1), 0);
}

/* --- Happy Eyeballs ---------------------------------------------------------- */

/* The SQE of c's attempt arg (it must be in flight), and its address. */
static const struct io_uring_sqe *
attempt(const struct conn *c, unsigned arg, union sockaddr_inx *addr)
{
    assert_int_equal(fr_count(OP_CONNECT, c->slot, (int)arg), 1);
    int i = fr_find(OP_CONNECT, c->slot, (int)arg);
    if (i < 0) {
        fail_msg("no connect of attempt %u in flight", arg);
        abort(); /* not reached: fail_msg() jumps out; says so to the compiler */
    }
    const struct io_uring_sqe *s = &fr_ops[i].sqe;
    const struct sockaddr *sa = (const struct sockaddr *)(uintptr_t)s->addr;
    memset(addr, 0, sizeof(*addr));
    memcpy(addr, sa, addr_len(sa));
    return s;
}

/*
 * A name answered (A first, as a resolver may) with two IPv4 addresses and one IPv6, all
 * held by the kernel: IPv6 first, then 198.51.100.1, then 198.51.100.2.
 */
static struct conn *
racing_request(void)
{
    pol->happy_eyeballs_delay_ms = 250;
    struct conn *c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 443);
    union sockaddr_inx addrs[3] = {v4("198.51.100.1", 443), v4("198.51.100.2", 443),
                                   v6("2001:db8::1", 443)};
    conn_resolved(&sh, dns.ref, 0, addrs, 3);
    return c;
}

/* The delay runs beside the first attempt; when it expires the second starts on c->xfd. */
static void
test_delay_starts_second_attempt(void **state)
{
    (void)state;
    struct conn *c = racing_request();
    union sockaddr_inx a;
    const struct io_uring_sqe *s = attempt(c, 0, &a);
    assert_addr(&a, "[2001:db8::1]", 443);
    assert_int_equal(s->fd, c->tfd);
    assert_int_equal(c->xfd, -1);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, 1), 0);
    int di = fr_find(OP_CONNECT_DELAY, c->slot, -1);
    assert_true(di >= 0);
    const struct io_uring_sqe *d = &fr_ops[di].sqe;
    assert_int_equal(d->opcode, IORING_OP_TIMEOUT);
    assert_int_equal(d->off, 0); /* a pure timer, not a completion count */
    const struct __kernel_timespec *ts = (const struct __kernel_timespec *)(uintptr_t)d->addr;
    assert_ptr_equal(ts, &c->hs->he_ts); /* lives in the context until it completes */
    assert_int_equal(ts->tv_sec, 0);
    assert_int_equal(ts->tv_nsec, 250000000);

    /* Nothing moves before it expires. */
    fr_run(&sh, 5);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, -1), 1);

    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    s = attempt(c, 1, &a);
    assert_addr(&a, "198.51.100.1", 443);
    assert_true(c->xfd >= 0 && c->xfd != c->tfd);
    assert_int_equal(s->fd, c->xfd);
    attempt(c, 0, &a); /* the first goes on */
    assert_addr(&a, "[2001:db8::1]", 443);
    /* Two in flight: no third, and no delay until one of them ends. */
    assert_int_equal(fr_count(OP_CONNECT_DELAY, c->slot, -1), 0);
    assert_int_equal(got.fails + got.succeeds, 0);

    /* A failed attempt starts the next at once, in its place. */
    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, -ENETUNREACH);
    attempt(c, 0, &a);
    assert_addr(&a, "198.51.100.2", 443);
    attempt(c, 1, &a);
    assert_addr(&a, "198.51.100.1", 443);
    assert_int_equal(got.fails + got.succeeds, 0);
}

/* A failed first attempt starts the next at once, long before the delay; the delay goes on. */
static void
test_failure_starts_next_at_once(void **state)
{
    (void)state;
    struct conn *c = racing_request();
    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, -ENETUNREACH);
    union sockaddr_inx a;
    attempt(c, 0, &a);
    assert_addr(&a, "198.51.100.1", 443);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, 1), 0);
    assert_int_equal(fr_count(OP_CONNECT_DELAY, c->slot, -1), 1);
    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    attempt(c, 1, &a);
    assert_addr(&a, "198.51.100.2", 443);
}

/*
 * The second attempt connects first: it becomes c->tfd, the first is cancelled by its
 * user_data, and the reply waits for that cancellation to come back; the loser's socket
 * is closed exactly once, when its completion arrives.
 */
static void
test_first_success_cancels_the_other(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    struct conn *c = racing_request();
    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    int fd0 = c->tfd, fd1 = c->xfd;
    assert_true(fd0 >= 0 && fd1 >= 0);

    fr_complete_op(&sh, OP_CONNECT, c->slot, 1, 0);
    assert_int_equal(c->tfd, fd1); /* the winner is the tunnel's target socket */
    assert_int_equal(c->xfd, fd0);
    assert_addr(&c->dest, "198.51.100.1", 443);
    assert_int_equal(got.succeeds, 0); /* not while the loser is out */
    assert_int_equal(c->state, CONN_CONNECT);
    int ci = fr_find(OP_CANCEL, c->slot, -1);
    assert_true(ci >= 0);
    assert_int_equal(fr_ops[ci].sqe.opcode, IORING_OP_ASYNC_CANCEL);
    assert_false(fr_ops[ci].sqe.cancel_flags & IORING_ASYNC_CANCEL_FD);
    assert_int_equal(fr_ops[ci].sqe.addr, conn_ud(c, OP_CONNECT, 0));
    assert_int_equal(closes[fd0], 0);

    /* The kernel cancels it: -ECANCELED, then the cancel's own CQE; one batch. */
    assert_true(fr_exec((unsigned)ci));
    fr_reap(&sh);
    assert_int_equal(got.succeeds, 1);
    assert_int_equal(got.ops_at_reply, 0);
    assert_int_equal(got.state, CONN_CONNECT);
    assert_int_equal(closes[fd0], 1);
    assert_int_equal(closes[fd1], 0);
    assert_int_equal(c->xfd, -1);
    assert_int_equal(fr_count_slot(c->slot, -1), 0);
    assert_int_equal(open_fds(), fds + 2); /* client and winner */

    /* At close the winner goes once, the loser not again. */
    conn_close(&sh, c, END_DONE);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(closes[fd1], 1);
    assert_int_equal(closes[fd0], 1);
    assert_int_equal(open_fds(), fds);
}

/* A phase after the request that no completion of the request may reach. */
static void
trap_on_cqe(struct shard *s, struct conn *c, const struct io_uring_cqe *cqe)
{
    (void)s;
    (void)c;
    fail_msg("a CQE (op %u) reached the phase after the reply", ud_op(cqe->user_data));
}
static const struct conn_phase trap_phase = {.name = "relay", .on_cqe = trap_on_cqe};

/*
 * The first attempt wins with the delay still running; the cancellation misses and the
 * delay's CQE comes late (-ETIME, not -ECANCELED): it still reaches the request phase,
 * which starts nothing. The same when both attempts connect: the late one is closed.
 * Only then the reply, after which nothing of the request is in flight.
 */
static void
test_late_completion_stays_in_request(void **state)
{
    (void)state;
    struct conn *c = racing_request();
    int fd0 = c->tfd;
    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, 0);
    assert_int_equal(got.succeeds, 0);
    assert_int_equal(fr_count(OP_CANCEL, c->slot, -1), 1);
    /* The delay expires before the cancel reaches it. */
    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, -1), 0); /* no new attempt */
    assert_int_equal(c->xfd, -1);
    assert_int_equal(got.succeeds, 1);
    assert_int_equal(got.ops_at_reply, 0);
    assert_int_equal(c->tfd, fd0);
    conn_enter(c, &trap_phase);
    /* The cancel finds nothing: its own CQE goes to the slot layer, not to a phase. */
    fr_run(&sh, 5);
    assert_int_equal(fr_n, 0);

    /* Both connect; the second's success comes after the first's. */
    memset(&got, 0, sizeof(got));
    memset(closes, 0, sizeof(closes));
    c = racing_request();
    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    fd0 = c->tfd;
    int fd1 = c->xfd;
    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, 0);
    assert_int_equal(got.succeeds, 0);
    fr_complete_op(&sh, OP_CONNECT, c->slot, 1, 0); /* connected too: a loser all the same */
    assert_int_equal(got.succeeds, 1);
    assert_int_equal(got.ops_at_reply, 0);
    assert_int_equal(c->tfd, fd0);
    assert_int_equal(closes[fd1], 1);
    assert_int_equal(closes[fd0], 0);
    assert_addr(&c->dest, "[2001:db8::1]", 443);
    conn_enter(c, &trap_phase);
    fr_run(&sh, 5); /* the cancel: -ENOENT */
    assert_int_equal(fr_count_slot(c->slot, -1), 0);
}

/*
 * connect_timeout with two attempts out: both cancelled (and the delay, when it runs), no
 * third address tried, 0x06 once the last is back; every socket closed once.
 */
static void
test_timeout_ends_every_attempt(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    uint32_t t0 = sh.now_ds;
    struct conn *c = racing_request();
    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    int fd0 = c->tfd, fd1 = c->xfd;
    sh.now_ds = t0 + 51;
    conn_timers_run(&sh);
    assert_true(c->hs_flags & HSF_TIMED_OUT);
    assert_int_equal(fr_count(OP_CANCEL, c->slot, -1), 2);
    assert_int_equal(got.fails, 0);
    /* One comes back cancelled: the other still counts. */
    assert_true(fr_exec_op(OP_CANCEL, c->slot, -1));
    fr_reap(&sh);
    assert_int_equal(got.fails, 0);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, -1), 1); /* nothing new started */
    assert_true(fr_exec_op(OP_CANCEL, c->slot, -1));
    fr_reap(&sh);
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_TTL_EXPIRED);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(closes[fd0], 1);
    assert_int_equal(closes[fd1], 1);
    assert_int_equal(fr_n, 0);
    assert_int_equal(open_fds(), fds);

    /* With one attempt and the delay out: both cancelled, the slot freed when both are in. */
    memset(closes, 0, sizeof(closes)); /* fd numbers are reused */
    t0 = sh.now_ds;
    c = racing_request();
    fd0 = c->tfd;
    sh.now_ds = t0 + 51;
    conn_timers_run(&sh);
    assert_int_equal(fr_count(OP_CANCEL, c->slot, -1), 2);
    fr_run(&sh, 5);
    assert_int_equal(got.fails, 2);
    assert_int_equal(got.rep, SOCKS5_REP_TTL_EXPIRED);
    assert_int_equal(fr_count(OP_CONNECT, CONN_NIL, -1), 0);
    assert_int_equal(fr_count(OP_CONNECT_DELAY, CONN_NIL, -1), 0);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(closes[fd0], 1);
    assert_int_equal(fr_n, 0);
}

/* A client that leaves while two attempts race: both sockets shut down, closed once at free. */
static void
test_close_while_racing(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    struct conn *c = racing_request();
    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    int fd0 = c->tfd, fd1 = c->xfd;
    conn_close(&sh, c, END_CLIENT_EOF);
    assert_int_equal(c->state, CONN_CLOSING);
    /* shutdown() woke both connects: they fail, and the phase leaves the fds to the slot. */
    fr_complete_op(&sh, OP_CONNECT, c->slot, 1, -EPIPE);
    assert_int_equal(closes[fd1], 0);
    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, -EPIPE);
    assert_int_equal(c->state, CONN_FREE);
    assert_int_equal(closes[fd0], 1);
    assert_int_equal(closes[fd1], 1);
    assert_int_equal(open_fds(), fds);
}

/* One address (an IP literal): no delay; a delay of 0: none either, one attempt at a time. */
static void
test_no_delay_when_nothing_to_race(void **state)
{
    (void)state;
    pol->happy_eyeballs_delay_ms = 250;
    struct conn *c = request_v4(SOCKS5_CMD_CONNECT, "198.51.100.7", 80);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, -1), 1);
    assert_int_equal(fr_count(OP_CONNECT_DELAY, CONN_NIL, -1), 0);

    pol->happy_eyeballs_delay_ms = 0;
    c = request_name(SOCKS5_CMD_CONNECT, "www.example.org", 443);
    union sockaddr_inx addrs[2] = {v4("198.51.100.1", 443), v6("2001:db8::1", 443)};
    conn_resolved(&sh, dns.ref, 0, addrs, 2);
    union sockaddr_inx a;
    attempt(c, 0, &a);
    assert_addr(&a, "[2001:db8::1]", 443);
    assert_int_equal(fr_count(OP_CONNECT_DELAY, CONN_NIL, -1), 0);
    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, -ETIMEDOUT);
    attempt(c, 0, &a);
    assert_addr(&a, "198.51.100.1", 443);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, 1), 0);
}

/* --- fd storms (issue #18) ----------------------------------------------------- */

/*
 * Out of fds when the target socket is made (socket() fails EMFILE for real): the client
 * gets 0x01, general SOCKS server failure (RFC 1928: nothing about the target is known, the
 * fault is the server's own); nothing is in flight, its slot is free and no fd is left.
 * Once fds free up, the next client is served.
 */
static void
test_out_of_fds_general_failure(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    struct socks_dest d = {.atyp = SOCKS5_ATYP_DOMAIN, .port = open_port};
    d.name_len = (uint8_t)strlen("www.example.org");
    memcpy(d.u.name, "www.example.org", d.name_len + 1);
    struct conn *c = conn_with(SOCKS5_CMD_CONNECT, &d);
    uint32_t gen = c->gen;
    request_start(&sh, c);
    union sockaddr_inx addrs[2] = {v4("127.0.0.1", open_port), v4("127.0.0.1", closed_port)};

    fs_fd_fill();
    conn_resolved(&sh, dns.ref, 0, addrs, 2);
    fs_fd_unfill();
    assert_int_equal(got.fails, 1);
    assert_int_equal(got.rep, SOCKS5_REP_GENERAL);
    assert_int_equal(got.why, END_REPLY_ERR);
    assert_int_equal(got.state, CONN_CONNECT);
    assert_int_equal(fr_n, 0);
    assert_true(c->state == CONN_FREE && c->gen != gen);
    assert_int_equal(sh.n_open, 0);
    assert_int_equal(open_fds(), fds);

    /* fds again: the next client is served. */
    c = request_v4(SOCKS5_CMD_CONNECT, "127.0.0.1", open_port);
    kernel_connects();
    assert_int_equal(got.succeeds, 1);
    assert_int_equal(got.fails, 1);
    assert_int_equal(open_fds(), fds + 2);
}

/*
 * Happy Eyeballs in a storm: the delay expires while fds are out, so the second attempt
 * cannot start; the first goes on and decides (no reply yet, nothing leaked), and when it
 * fails after the storm the next address is tried.
 */
static void
test_out_of_fds_second_attempt(void **state)
{
    (void)state;
    unsigned fds = open_fds();
    struct conn *c = racing_request();
    fs_fd_fill();
    fr_complete_op(&sh, OP_CONNECT_DELAY, c->slot, -1, -ETIME);
    fs_fd_unfill();
    assert_int_equal(c->xfd, -1);
    assert_int_equal(fr_count(OP_CONNECT, c->slot, 1), 0);
    union sockaddr_inx a;
    attempt(c, 0, &a);
    assert_addr(&a, "[2001:db8::1]", 443);
    assert_int_equal(got.fails + got.succeeds, 0);
    assert_int_equal(open_fds(), fds + 2);

    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, -ENETUNREACH);
    attempt(c, 0, &a);
    assert_addr(&a, "198.51.100.2", 443);
    fr_complete_op(&sh, OP_CONNECT, c->slot, 0, 0);
    assert_int_equal(got.succeeds, 1);
    assert_int_equal(got.fails, 0);
    assert_int_equal(open_fds(), fds + 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_address_connects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denied_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hosts_and_localhost_without_dns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_name_goes_to_dns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolved_addresses_tried_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_failed_reply_of_last_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_while_resolving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_when_not_resolving_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_watches_after_a_second, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hands_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_starts_second_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_starts_next_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_success_cancels_the_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_completion_stays_in_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_ends_every_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_racing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_delay_when_nothing_to_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_fds_general_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_fds_second_attempt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
