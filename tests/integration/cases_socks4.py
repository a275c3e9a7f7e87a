"""
cases_socks4.py - SOCKS4 and SOCKS4a: curl --socks4 / --socks4a (local name,
names through the DNS stub), and a raw client for the exact 8-byte reply, the
rejections (CD 91, then close), the length limits of user-id and host name,
and the --socks4 / --auth policy.
"""

import os
import socket
import threading
import time

from cases_relay import curl_both, curl_fetch
from harness import (Fail, case, check, echo_roundtrip, echo_until_eof, expect_close, free_port, hexb,
                     ipv6_available, make_hash, need_option, need_ringsocks, need_tools, open_proxy_socket,
                     read_reply4, recv_exact, socks4_connect, socks4_expect_reject, socks4_request,
                     socks_connect, write_users)


def recording_echo(ctx):
    """A TCP echo target that records each connection's peer address."""
    seen = []
    accepted = threading.Event()

    def handler(conn, peer):
        seen.append(peer[:2])
        accepted.set()
        echo_until_eof(conn)

    srv = ctx.tcp_server(handler)
    return srv, seen, accepted


def no_more_bytes(sock, wait=0.3, after="reply"):
    """Nothing beyond the reply may arrive (the target sends nothing first)."""
    sock.settimeout(wait)
    try:
        extra = sock.recv(4096)
    except socket.timeout:
        return
    finally:
        sock.settimeout(20)
    raise Fail("bytes after the %s: %s" % (after, hexb(extra) if extra else "(EOF)"))


# -------------------------------------------------------------- real clients

@case("socks4_curl")
def socks4_curl(ctx):
    need_tools("curl")
    p = ctx.proxy()
    port = ctx.http_server(("127.0.0.1",))
    curl_both(ctx, ["--socks4", "127.0.0.1:%d" % p.port], "http://127.0.0.1:%d/" % port)


@case("socks4a_localhost_curl")
def socks4a_localhost_curl(ctx):
    need_tools("curl")
    p = ctx.proxy()
    hosts = ("127.0.0.1", "::1") if ipv6_available() else ("127.0.0.1",)
    port = ctx.http_server(hosts)
    curl_both(ctx, ["--socks4a", "127.0.0.1:%d" % p.port], "http://localhost:%d/" % port)


@case("socks4a_dns_curl")
def socks4a_dns_curl(ctx):
    need_tools("curl")
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    port = ctx.http_server(("127.0.0.1",))
    try:
        curl_both(ctx, ["--socks4a", "127.0.0.1:%d" % p.port], "http://good.test:%d/" % port)
    except Fail as e:
        raise Fail(str(e), "DNS queries the stub saw: %s" % dns.queries)
    check(dns.wait_query("good.test", 1), "curl --socks4a good.test worked but the proxy never asked "
          "the DNS stub (did curl resolve it itself?): %s" % dns.queries)


@case("socks4_url_scheme_curl")
def socks4_url_scheme_curl(ctx):
    """socks4:// and socks4a:// proxy URLs with a user name (sent as USERID)."""
    need_tools("curl")
    p = ctx.proxy()
    port = ctx.http_server(("127.0.0.1",))
    base = "http://127.0.0.1:%d/" % port
    curl_fetch(ctx, ["--proxy", "socks4://someone@127.0.0.1:%d" % p.port], base, "small.bin")
    curl_fetch(ctx, ["--proxy", "socks4a://someone@127.0.0.1:%d" % p.port], base, "small.bin")


@case("socks4_ncat_echo")
def socks4_ncat_echo(ctx):
    need_tools("ncat")
    p = ctx.proxy()
    echo = ctx.echo_server()
    lines = b"".join(b"line %d %s\n" % (i, os.urandom(16).hex().encode()) for i in range(300))
    r = ctx.run(["ncat", "--proxy-type", "socks4", "--proxy", "127.0.0.1:%d" % p.port,
                 "127.0.0.1", str(echo.port)], input=lines, timeout=30)
    err = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0, "ncat --proxy-type socks4 exit %d: %s" % (r.returncode, err or "(no message)"))
    check(r.stdout == lines, "ncat got back %d bytes, sent %d" % (len(r.stdout), len(lines)))


# -------------------------------------------------------------- raw client: success

@case("socks4_reply_exact")
def socks4_reply_exact(ctx):
    """The reply is exactly 8 bytes: VN 0, CD 90, DSTPORT/DSTIP the proxy's end of
    the connection to the target; then the tunnel carries data both ways."""
    p = ctx.proxy()
    srv, seen, accepted = recording_echo(ctx)
    s, r = socks4_connect(ctx, p, srv.port, userid=b"tester")
    check(accepted.wait(5), "the target saw no connection within 5 s of the CD 90 reply")
    no_more_bytes(s, after="8-byte SOCKS4 reply %s" % hexb(r.raw))
    check((r.host, r.port) == seen[0],
          "reply DSTIP:DSTPORT %s:%d, but the target saw the proxy connect from %s:%d (%s)"
          % (r.host, r.port, seen[0][0], seen[0][1], hexb(r.raw)))
    echo_roundtrip(s, 65536)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    check(s.recv(10) == b"", "no EOF after half-closing a SOCKS4 tunnel to an echo target")


@case("socks4a_reply_and_data")
def socks4a_reply_and_data(ctx):
    """SOCKS4a: DSTIP 0.0.0.1 and a host name after the user-id's NUL."""
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    srv, seen, accepted = recording_echo(ctx)
    for host, uid in (("good.test", b"someone"), ("good.test", b""), ("127.0.0.1", b"")):
        s, r = socks4_connect(ctx, p, srv.port, userid=uid, host=host)
        check(r.vn == 0 and r.cd == 90, "SOCKS4a %s: reply %s" % (host, hexb(r.raw)))
        no_more_bytes(s, after="8-byte SOCKS4a reply %s" % hexb(r.raw))
        echo_roundtrip(s, 8192)
        s.close()


@case("socks4_split_request")
def socks4_split_request(ctx):
    """A request that arrives one byte at a time (and a 4a one) is still served."""
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    echo = ctx.echo_server()
    for req in (socks4_request(1, echo.port, userid=b"splitter"),
                socks4_request(1, echo.port, userid=b"splitter", host="good.test")):
        s = open_proxy_socket(ctx, p)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(req)):
            s.send(req[i:i + 1])
            time.sleep(0.01)
        r = read_reply4(s)
        check(r.vn == 0 and r.cd == 90, "byte-by-byte request %s: reply %s" % (hexb(req), hexb(r.raw)))
        echo_roundtrip(s, 4096)
        s.close()


@case("socks4_pipelined_data")
def socks4_pipelined_data(ctx):
    """Data sent together with the request must reach the target."""
    p = ctx.proxy()
    echo = ctx.echo_server()
    for size in (100, 65536):
        payload = os.urandom(size)
        s = open_proxy_socket(ctx, p)
        s.sendall(socks4_request(1, echo.port, userid=b"u") + payload)
        r = read_reply4(s)
        check(r.cd == 90, "reply %s" % hexb(r.raw))
        got = recv_exact(s, size, "echo of the %d bytes pipelined after the SOCKS4 request" % size)
        check(got == payload, "the %d pipelined bytes came back altered" % size)
        s.close()


@case("socks4_userid_255")
def socks4_userid_255(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    s, r = socks4_connect(ctx, p, echo.port, userid=b"u" * 255)
    echo_roundtrip(s, 4096)


# -------------------------------------------------------------- raw client: rejections

@case("socks4_refused_port")
def socks4_refused_port(ctx):
    p = ctx.proxy()
    socks4_expect_reject(ctx, p, socks4_request(1, free_port()), what="CONNECT to a closed port")


@case("socks4a_unresolvable")
def socks4a_unresolvable(ctx):
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    socks4_expect_reject(ctx, p, socks4_request(1, 80, host="nosuch.test"), what="SOCKS4a CONNECT nosuch.test")


@case("socks4_userid_256_rejected")
def socks4_userid_256_rejected(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    socks4_expect_reject(ctx, p, socks4_request(1, echo.port, userid=b"u" * 256), what="256-byte user-id")
    # Over the limit and no NUL yet: rejected without waiting for the rest.
    s = open_proxy_socket(ctx, p)
    s.sendall(socks4_request(1, echo.port)[:8] + b"v" * 300)
    r = read_reply4(s, "reply to a 300-byte user-id without NUL")
    check(r.cd == 91, "reply to a 300-byte user-id without its NUL: %s, expected CD 91" % hexb(r.raw))
    expect_close(s, after="CD 91")


@case("socks4a_host_256_rejected")
def socks4a_host_256_rejected(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    socks4_expect_reject(ctx, p, socks4_request(1, echo.port, host="h" * 256), what="SOCKS4a 256-byte host name")
    s = open_proxy_socket(ctx, p)
    s.sendall(socks4_request(1, echo.port, host="h" * 256)[:-1] + b"h" * 100)
    r = read_reply4(s, "reply to a 356-byte host name without NUL")
    check(r.cd == 91, "reply to an over-long 4a host name without its NUL: %s, expected CD 91" % hexb(r.raw))
    expect_close(s, after="CD 91")


@case("socks4a_empty_host_rejected")
def socks4a_empty_host_rejected(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    socks4_expect_reject(ctx, p, socks4_request(1, echo.port, host=""), what="SOCKS4a empty host name")


@case("socks4_unknown_command")
def socks4_unknown_command(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    for cd in (3, 0, 0xff):
        socks4_expect_reject(ctx, p, socks4_request(cd, echo.port), what="SOCKS4 request with CD %d" % cd)


@case("first_byte_not_socks")
def first_byte_not_socks(ctx):
    """Neither 4 nor 5: closed without any reply."""
    p = ctx.proxy()
    for first in (b"G", b"\x00", b"\x03", b"\x06", b"\xff"):
        s = open_proxy_socket(ctx, p)
        s.sendall(first + b"\x01\x00\x50\x7f\x00\x00\x01\x00")
        expect_close(s, after="a request starting with byte %s" % hexb(first))
    still = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", still.port)
    echo_roundtrip(s)


@case("socks4_garbage_keeps_serving")
def socks4_garbage_keeps_serving(ctx):
    """200 random SOCKS4-shaped requests (random command, closed port, DSTIP
    127.0.0.1 or 0.0.0.x, random user-id / host bytes and lengths): each gets CD 91
    then close, or a close (incomplete ones by --handshake-timeout 2); none may
    hang, and the server keeps serving. Nothing here can reach a real target: the
    port is closed and names go to the DNS stub (NXDOMAIN)."""
    need_ringsocks("needs --handshake-timeout and --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--handshake-timeout", "2", "--resolver", dns.spec])
    echo = ctx.echo_server()
    closed = free_port()
    import random
    import struct
    rnd = random.Random(4)
    socks = []
    for i in range(200):
        cd = rnd.choice((1, 1, 1, 0, 3, 4, 0x5a, 0xff))
        ip = rnd.choice((b"\x7f\x00\x00\x01", bytes([0, 0, 0, rnd.randrange(1, 256)])))
        tail = bytes(rnd.randrange(256) if rnd.random() < 0.7 else 0 for _ in range(rnd.randrange(0, 600)))
        data = b"\x04" + bytes([cd]) + struct.pack("!H", closed) + ip + tail
        s = open_proxy_socket(ctx, p)
        try:
            s.sendall(data)
        except OSError:
            pass
        socks.append((s, data))
    deadline = time.monotonic() + 15
    for s, data in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        got = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except socket.timeout:
            raise Fail("no close within the bound after the SOCKS4 garbage %s" % hexb(data),
                       "received: %s" % hexb(got))
        except ConnectionResetError:
            pass
        check(got == b"" or (len(got) == 8 and got[:2] == b"\x00\x5b"),
              "answer of %d bytes to SOCKS4 garbage %s: %s, expected nothing or 00 5b + 6 bytes"
              % (len(got), hexb(data, 32), hexb(got)))
        s.close()
    p.check_alive()
    s, _ = socks4_connect(ctx, p, echo.port)
    echo_roundtrip(s)


@case("socks4_handshake_timeout")
def socks4_handshake_timeout(ctx):
    need_ringsocks("needs --handshake-timeout")
    p = ctx.proxy(args=["--handshake-timeout", "1"])
    s = open_proxy_socket(ctx, p)
    s.sendall(socks4_request(1, 80, userid=b"slow")[:-1])   # user-id without its NUL
    expect_close(s, timeout=5, after="a SOCKS4 request missing its NUL with --handshake-timeout 1")


# -------------------------------------------------------------- policy: --socks4, --auth

def _users(ctx):
    return write_users(ctx, ["alice:" + make_hash("alicepw")])


@case("socks4_refused_with_auth_password")
def socks4_refused_with_auth_password(ctx):
    """--auth password with --socks4 auto (default): SOCKS4 and 4a get CD 91."""
    need_option("--auth", "--users", "--socks4")
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--auth", "password", "--users", _users(ctx)])
    socks4_expect_reject(ctx, p, socks4_request(1, echo.port, userid=b"alice"),
                         what="SOCKS4 CONNECT with --auth password")
    socks4_expect_reject(ctx, p, socks4_request(1, echo.port, userid=b"alice", host="localhost"),
                         what="SOCKS4a CONNECT with --auth password")
    check(echo.accepted == 0, "the target got %d connection(s) from refused SOCKS4 requests" % echo.accepted)
    p2 = ctx.proxy(args=["--auth", "password", "--users", _users(ctx), "--socks4", "auto"])
    socks4_expect_reject(ctx, p2, socks4_request(1, echo.port), what="SOCKS4 with --socks4 auto --auth password")


@case("socks4_on_with_auth_password")
def socks4_on_with_auth_password(ctx):
    need_option("--auth", "--users", "--socks4")
    need_tools("curl")
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--auth", "password", "--users", _users(ctx), "--socks4", "on"])
    s, _ = socks4_connect(ctx, p, echo.port, userid=b"whoever")
    echo_roundtrip(s, 65536)
    port = ctx.http_server(("127.0.0.1",))
    curl_fetch(ctx, ["--socks4", "127.0.0.1:%d" % p.port], "http://127.0.0.1:%d/" % port, "small.bin")
    # SOCKS5 still demands the password on the same server.
    s = open_proxy_socket(ctx, p)
    s.sendall(b"\x05\x01\x00")
    m = recv_exact(s, 2, "method selection reply")
    check(m == b"\x05\xff", "SOCKS5 without credentials on --auth password --socks4 on: %s, expected 05 ff"
          % hexb(m))
    expect_close(s, after="05 ff")


@case("socks4_off")
def socks4_off(ctx):
    need_option("--socks4")
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--socks4", "off"])
    socks4_expect_reject(ctx, p, socks4_request(1, echo.port), what="SOCKS4 CONNECT with --socks4 off")
    socks4_expect_reject(ctx, p, socks4_request(1, echo.port, host="localhost"),
                         what="SOCKS4a CONNECT with --socks4 off")
    check(echo.accepted == 0, "the target got %d connection(s) with --socks4 off" % echo.accepted)
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)   # SOCKS5 unaffected
    echo_roundtrip(s)


@case("socks4_on_explicit")
def socks4_on_explicit(ctx):
    need_option("--socks4")
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--socks4", "on"])
    s, _ = socks4_connect(ctx, p, echo.port)
    echo_roundtrip(s)


@case("socks4a_ipv6_target")
def socks4a_ipv6_target(ctx):
    """A 4a name with only an AAAA record: the tunnel works; the reply cannot
    carry an IPv6 address (DSTIP/DSTPORT then 0.0.0.0:0, or the like) but CD 90."""
    need_ringsocks("needs --resolver")
    from harness import need_ipv6
    need_ipv6()
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    echo6 = ctx.echo_server("::1")
    s, r = socks4_connect(ctx, p, echo6.port, userid=b"six", host="good6.test")
    no_more_bytes(s, after="8-byte SOCKS4a reply %s" % hexb(r.raw))
    echo_roundtrip(s, 65536)
