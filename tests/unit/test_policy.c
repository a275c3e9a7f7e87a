/*
 * test_policy.c - cmocka unit tests for the listener part of the policy snapshot
 * (src/policy.c): a listener group's proxy_protocol and from as policy_new() builds them,
 * policy_proxy_from() on the balancers' networks, and policy_listener_at() finding the
 * group of an accepted socket by its local address (real loopback sockets, no traffic).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "hosts.h"
#include "options.h"
#include "opts.h"
#include "policy.h"
#include "sa_text.h"

/* An address from its text, IPv4-mapped ones as IPv4 (as a shard sees its peers). */
static union sockaddr_inx
ip(const char *text)
{
    union sockaddr_inx a = sa(text);
    addr_unmap(&a);
    return a;
}

/* o with listeners 127.0.0.1:0 (plain) and a PROXY one at addr, from given. */
static void
opts_proxy(struct opts *o, const char *addr, const char *from)
{
    char why[256];
    options_defaults(o);
    const struct options_row *r = options_find("listen");
    options_clear(r, o);
    assert_int_equal(options_set(r, o, "127.0.0.1:1", why, sizeof(why)), 0);
    assert_int_equal(options_set(r, o, addr, why, sizeof(why)), 0);
    struct opts_listen_out *lo = &o->listen_out[0];
    memset(lo, 0, sizeof(*lo));
    lo->addr = o->listen[1];
    lo->idx = 1;
    lo->proxy_protocol = true;
    snprintf(lo->from, sizeof(lo->from), "%s", from);
    o->n_listen_out = 1;
}

static void
test_proxy_from(void **state)
{
    (void)state;
    struct opts o;
    opts_proxy(&o, "127.0.0.1:1081", "127.0.0.1,10.0.0.0/8,2001:db8::/32");
    struct policy *p = policy_new(&o, NULL, NULL, 1);
    assert_non_null(p);
    assert_true(p->proxy_listeners);
    assert_int_equal(p->n_listeners, 1);
    const struct policy_listener *l = &p->listeners[0];
    assert_true(l->proxy);
    assert_false(l->same);
    assert_null(l->pool);
    assert_int_equal(l->n_from, 3);
    static const char *const in[] = {"127.0.0.1", "10.255.0.1", "2001:db8::7", "::ffff:10.1.2.3"};
    static const char *const out[] = {"127.0.0.2", "11.0.0.1", "2001:db9::7", "::1",
                                      "::ffff:127.0.0.2"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        union sockaddr_inx a = ip(in[i]);
        if (!policy_proxy_from(l, &a))
            fail_msg("%s should be a balancer", in[i]);
    }
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
        union sockaddr_inx a = ip(out[i]);
        if (policy_proxy_from(l, &a))
            fail_msg("%s should not be a balancer", out[i]);
    }
    union sockaddr_inx none = {.sa.sa_family = AF_UNSPEC};
    assert_false(policy_proxy_from(l, &none));
    policy_free(p);

    /* Without proxy_protocol nothing of it is in the snapshot. */
    o.listen_out[0].proxy_protocol = false;
    snprintf(o.listen_out[0].egress, sizeof(o.listen_out[0].egress), "same");
    p = policy_new(&o, NULL, NULL, 1);
    assert_non_null(p);
    assert_false(p->proxy_listeners);
    assert_false(p->listeners[0].proxy);
    assert_true(p->listeners[0].same);
    policy_free(p);
}

/* A socket bound to addr_text, any port, and its bound address. */
static int
bound(const char *addr_text, union sockaddr_inx *a)
{
    *a = ip(addr_text);
    int fd = socket(a->sa.sa_family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, &a->sa, addr_len(&a->sa)), 0);
    socklen_t len = sizeof(*a);
    assert_int_equal(getsockname(fd, &a->sa, &len), 0);
    return fd;
}

static void
test_listener_of(void **state)
{
    (void)state;
    struct opts o;
    union sockaddr_inx a, b, local;
    char text[ADDR_STRLEN + 8];
    int fa = bound("127.0.0.1", &a);
    int fb = bound("127.0.0.1", &b);
    addr_format(&a.sa, text, sizeof(text));
    opts_proxy(&o, text, "127.0.0.1");
    struct policy *p = policy_new(&o, NULL, NULL, 1);
    assert_non_null(p);
    assert_ptr_equal(policy_listener_at(p, &o, &a), &p->listeners[0]);
    /* Another port: no group. */
    assert_null(policy_listener_at(p, &o, &b));
    /* Another address on the group's port: no group. */
    local = ip("127.0.0.2");
    hosts_set_port(&local, addr_port(&a));
    assert_null(policy_listener_at(p, &o, &local));
    policy_free(p);
    close(fa);
    close(fb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_from),
        cmocka_unit_test(test_listener_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
