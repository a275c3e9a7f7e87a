"""
cases_protocol.py - SOCKS5 handshake edge cases seen from a raw client:
exact reply bytes and the server closing after an error.
"""

import threading

from harness import (Fail, case, check, expect_close, free_port, hexb, need_ringsocks, recv_exact,
                     request, socks_connect, socks_expect_error)


@case("refused_port")
def refused_port(ctx):
    p = ctx.proxy()
    port = free_port()
    socks_expect_error(ctx, p, request("127.0.0.1", port), 0x05, what="CONNECT to a closed port")


@case("unresolvable_name")
def unresolvable_name(ctx):
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    try:
        socks_expect_error(ctx, p, request("nosuch.test", 80), 0x04, what="CONNECT to nosuch.test")
    except Fail as e:
        raise Fail(str(e), "DNS queries the stub saw: %s" % dns.queries)


@case("greeting_not_socks")
def greeting_not_socks(ctx):
    p = ctx.proxy()
    s = ctx.connect(p.addr)
    s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
    expect_close(s, after="HTTP request sent as greeting (version byte 0x47)")


@case("greeting_no_acceptable_method")
def greeting_no_acceptable_method(ctx):
    p = ctx.proxy()
    s = ctx.connect(p.addr)
    s.sendall(b"\x05\x01\x02")
    m = recv_exact(s, 2, "method selection reply")
    check(m == b"\x05\xff", "method selection reply %s, expected 05 ff" % hexb(m))
    expect_close(s, after="05 ff")


@case("request_bad_version")
def request_bad_version(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    socks_expect_error(ctx, p, request("127.0.0.1", echo.port, ver=4), 0x01,
                       what="request with version 04")


@case("request_unknown_command")
def request_unknown_command(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    socks_expect_error(ctx, p, request("127.0.0.1", echo.port, cmd=0x09), 0x07,
                       what="request with command 09")


@case("request_bad_atyp")
def request_bad_atyp(ctx):
    p = ctx.proxy()
    # VER CMD RSV ATYP=05: nothing after it can be parsed, so send just the header.
    socks_expect_error(ctx, p, b"\x05\x01\x00\x05", 0x08, what="request with ATYP 05")


@case("reply_bnd_addr")
def reply_bnd_addr(ctx):
    p = ctx.proxy()
    seen = []
    accepted = threading.Event()

    def target(conn, peer):
        seen.append(conn.getpeername())
        accepted.set()
        while conn.recv(65536):
            pass

    srv = ctx.tcp_server(target)
    s, r = socks_connect(ctx, p, "127.0.0.1", srv.port)
    check(accepted.wait(5), "the target saw no connection within 5 s of the success reply")
    check(r.atyp == 1, "reply ATYP 0x%02x, expected 01 (IPv4): %s" % (r.atyp, hexb(r.raw)))
    check(r.host == "127.0.0.1", "reply BND.ADDR %s, expected 127.0.0.1: %s" % (r.host, hexb(r.raw)))
    check(r.port == seen[0][1], "reply BND.PORT %d, but the target saw the proxy connect from %s:%d (%s)"
          % (r.port, seen[0][0], seen[0][1], hexb(r.raw)))
    s.close()
