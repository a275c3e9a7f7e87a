/*
 * test_transparent.c - cmocka unit tests for transparent listeners' helpers
 * (src/transparent.c): a redirected connection's original destination turned
 * into the request, and the original destination of a connection nothing
 * rewrote (a plain loopback connection: its own address, not NAT's).
 *
 * Links transparent.o with addr.o; the syscalls are real, on loopback sockets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sa_text.h"
#include "transparent.h"

static union sockaddr_inx
sa_port(const char *ip, uint16_t port)
{
    union sockaddr_inx a = sa(ip);
    if (a.sa.sa_family == AF_INET)
        a.v4.sin_port = htons(port);
    else
        a.v6.sin6_port = htons(port);
    return a;
}

static void
test_request_v4(void **state)
{
    (void)state;
    struct socks_dest d;
    memset(&d, 0xA5, sizeof(d));
    union sockaddr_inx a = sa_port("198.51.100.10", 8080);
    assert_int_equal(transparent_request(&d, &a), 0);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(d.port, 8080);
    assert_int_equal(d.name_len, 0);
    assert_memory_equal(&d.u.v4, &a.v4.sin_addr, 4);
}

static void
test_request_v6(void **state)
{
    (void)state;
    struct socks_dest d;
    memset(&d, 0xA5, sizeof(d));
    union sockaddr_inx a = sa_port("2001:db8:a::10", 443);
    assert_int_equal(transparent_request(&d, &a), 0);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV6);
    assert_int_equal(d.port, 443);
    assert_memory_equal(&d.u.v6, &a.v6.sin6_addr, 16);
}

/* An IPv4 peer of a dual-stack socket is an IPv4 request, as the rules know it. */
static void
test_request_mapped(void **state)
{
    (void)state;
    struct socks_dest d;
    union sockaddr_inx a = sa_port("::ffff:192.0.2.7", 25);
    assert_int_equal(transparent_request(&d, &a), 0);
    assert_int_equal(d.atyp, SOCKS5_ATYP_IPV4);
    assert_int_equal(d.port, 25);
    struct in_addr want;
    inet_pton(AF_INET, "192.0.2.7", &want);
    assert_memory_equal(&d.u.v4, &want, 4);
}

static void
test_request_other_family(void **state)
{
    (void)state;
    struct socks_dest d;
    memset(&d, 0xA5, sizeof(d));
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    a.sa.sa_family = AF_UNIX;
    assert_int_equal(transparent_request(&d, &a), -EAFNOSUPPORT);
    assert_int_equal(d.atyp, 0xA5); /* untouched */
}

/* A loopback connection nothing rewrote: conntrack has no NAT for it (or no entry at all),
 * so its destination is its own address. */
static void
test_orig_dest_not_natted(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 1), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &len), 0);
    int cs = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cs, (struct sockaddr *)&a, sizeof(a)), 0);
    int as = accept(ls, NULL, NULL);
    assert_true(as >= 0);

    union sockaddr_inx dst;
    bool natted = true;
    assert_int_equal(transparent_orig_dest(as, &dst, &natted), 0);
    assert_false(natted);
    assert_int_equal(dst.sa.sa_family, AF_INET);
    assert_int_equal(dst.v4.sin_addr.s_addr, a.sin_addr.s_addr);
    assert_int_equal(dst.v4.sin_port, a.sin_port);
    assert_int_equal(transparent_orig_dest(-1, &dst, NULL), -EBADF);
    close(as);
    close(cs);
    close(ls);
}

/* Set and cleared on a socket of each family (setting needs CAP_NET_ADMIN or
 * CAP_NET_RAW: without, EPERM, and the socket stays as it was). */
static void
test_set_and_clear(void **state)
{
    (void)state;
    int fams[] = {AF_INET, AF_INET6};
    for (size_t i = 0; i < 2; i++) {
        int fd = socket(fams[i], SOCK_STREAM, 0);
        assert_true(fd >= 0);
        assert_false(transparent_is_set(fd, fams[i]));
        int ret = transparent_set(fd, fams[i], true);
        if (ret == 0) {
            assert_true(transparent_is_set(fd, fams[i]));
        } else {
            assert_int_equal(ret, -EPERM);
            assert_false(transparent_is_set(fd, fams[i]));
        }
        assert_int_equal(transparent_set(fd, fams[i], false), 0);
        assert_false(transparent_is_set(fd, fams[i]));
        close(fd);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_v4),           cmocka_unit_test(test_request_v6),
        cmocka_unit_test(test_request_mapped),       cmocka_unit_test(test_request_other_family),
        cmocka_unit_test(test_orig_dest_not_natted), cmocka_unit_test(test_set_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
