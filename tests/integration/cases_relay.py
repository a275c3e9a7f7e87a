"""
cases_relay.py - tunnels that carry data: real clients (curl, ncat) and a raw
SOCKS5 client (half-close, pipelined data, 500 parallel tunnels).
"""

import asyncio
import hashlib
import os
import socket
import time

from harness import (GREETING, IO_TIMEOUT, Fail, case, check, echo_roundtrip, expect_close,
                     hexb, ipv6_available, need_ipv6, need_ringsocks, need_tools, read_method_reply, read_reply,
                     recv_exact, recv_until_eof, request, sha256_file, socks_connect)

FILES = ("small.bin", "large.bin")


def curl_fetch(ctx, proxy_opts, base_url, name):
    """curl a file through the proxy; compare the SHA-256 of what it wrote."""
    ctx.files.ensure(name)
    out = ctx.path("curl-" + name)
    url = base_url + name
    argv = ["curl", "-sS", "--fail", "--connect-timeout", "15", "--max-time", "40"] + \
        list(proxy_opts) + ["-o", out, url]
    r = ctx.run(argv, timeout=45)
    err = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0, "curl exit %d fetching %s via %s: %s"
          % (r.returncode, url, " ".join(proxy_opts), err or "(no message)"))
    size = os.path.getsize(out) if os.path.exists(out) else -1
    got = sha256_file(out) if size >= 0 else None
    check(got == ctx.files.sha[name],
          "%s via %s: SHA-256 of the %d bytes curl wrote differs from the file's"
          % (url, " ".join(proxy_opts), size))
    os.unlink(out)


def curl_both(ctx, proxy_opts, base_url):
    for name in FILES:
        curl_fetch(ctx, proxy_opts, base_url, name)


@case("connect_ipv4_curl")
def connect_ipv4_curl(ctx):
    need_tools("curl")
    p = ctx.proxy()
    port = ctx.http_server(("127.0.0.1",))
    curl_both(ctx, ["--socks5", "127.0.0.1:%d" % p.port], "http://127.0.0.1:%d/" % port)


@case("socks5h_localhost_curl")
def socks5h_localhost_curl(ctx):
    need_tools("curl")
    p = ctx.proxy()
    # localhost may map to 127.0.0.1 and/or ::1 in /etc/hosts: serve on both, one port.
    hosts = ("127.0.0.1", "::1") if ipv6_available() else ("127.0.0.1",)
    port = ctx.http_server(hosts)
    curl_both(ctx, ["--socks5-hostname", "127.0.0.1:%d" % p.port], "http://localhost:%d/" % port)


@case("socks5h_dns_curl")
def socks5h_dns_curl(ctx):
    need_tools("curl")
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    port = ctx.http_server(("127.0.0.1",))
    try:
        curl_both(ctx, ["--socks5-hostname", "127.0.0.1:%d" % p.port], "http://good.test:%d/" % port)
    except Fail as e:
        raise Fail(str(e), "DNS queries the stub saw: %s" % dns.queries)


@case("connect_ipv6_curl")
def connect_ipv6_curl(ctx):
    need_tools("curl")
    need_ipv6()
    p = ctx.proxy()
    port = ctx.http_server(("::1",))
    curl_both(ctx, ["--socks5", "127.0.0.1:%d" % p.port], "http://[::1]:%d/" % port)


@case("socks5h_dns6_curl")
def socks5h_dns6_curl(ctx):
    need_tools("curl")
    need_ipv6()
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    port = ctx.http_server(("::1",))
    try:
        curl_both(ctx, ["--socks5-hostname", "127.0.0.1:%d" % p.port], "http://good6.test:%d/" % port)
    except Fail as e:
        raise Fail(str(e), "DNS queries the stub saw: %s" % dns.queries)


@case("listen_ipv6_curl")
def listen_ipv6_curl(ctx):
    need_tools("curl")
    need_ipv6()
    p = ctx.proxy(listen=["[::1]:0"])
    check(p.host == "::1", "listening line names %s, expected [::1]" % p.host)
    port = ctx.http_server(("127.0.0.1",))
    curl_both(ctx, ["--proxy", "socks5://[::1]:%d" % p.port], "http://127.0.0.1:%d/" % port)


@case("ncat_echo")
def ncat_echo(ctx):
    need_tools("ncat")
    p = ctx.proxy()
    echo = ctx.echo_server()
    lines = b"".join(b"line %d %s\n" % (i, os.urandom(16).hex().encode()) for i in range(500))
    r = ctx.run(["ncat", "--proxy-type", "socks5", "--proxy", "127.0.0.1:%d" % p.port,
                 "127.0.0.1", str(echo.port)], input=lines, timeout=30)
    err = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0, "ncat exit %d: %s" % (r.returncode, err or "(no message)"))
    check(r.stdout == lines, "ncat got back %d bytes, sent %d (first difference at byte %d)"
          % (len(r.stdout), len(lines),
             next((i for i, (a, b) in enumerate(zip(r.stdout, lines)) if a != b),
                  min(len(r.stdout), len(lines)))))


@case("half_close_roundtrip")
def half_close_roundtrip(ctx):
    p = ctx.proxy()
    got_len = []

    def target(conn, peer):
        h = hashlib.sha256()
        n = 0
        while True:
            b = conn.recv(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        got_len.append(n)
        time.sleep(0.3)  # answer a little later: the tunnel must still be there
        conn.sendall(h.hexdigest().encode())
        # close: the client must see EOF after the answer

    srv = ctx.tcp_server(target)
    s, _ = socks_connect(ctx, p, "127.0.0.1", srv.port)
    data = os.urandom(1 << 20)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    try:
        got = recv_until_eof(s, what="the target's digest")
    except Fail as e:
        raise Fail(str(e) + " (target received %s bytes before EOF)" % (got_len or "no EOF /"))
    want = hashlib.sha256(data).hexdigest().encode()
    check(got == want, "after SHUT_WR the client received %r, expected the %d-char digest %r "
          "(target received %s bytes)" % (got[:80], len(want), want[:16] + b"...", got_len))


@case("pipelined_data")
def pipelined_data(ctx):
    p = ctx.proxy()
    echo = ctx.echo_server()
    for size in (100, 65536):
        payload = os.urandom(size)
        s = ctx.connect(p.addr)
        s.sendall(GREETING + request("127.0.0.1", echo.port) + payload)
        m = read_method_reply(s)
        check(m == b"\x05\x00", "method selection reply %s, expected 05 00" % hexb(m))
        r = read_reply(s)
        check(r.ver == 5 and r.rep == 0, "reply %s, expected 05 00" % hexb(r.raw))
        got = recv_exact(s, size, "echo of the %d pipelined bytes" % size)
        check(got == payload, "the %d pipelined bytes came back altered" % size)
        s.close()


@case("parallel_500_tunnels")
def parallel_500(ctx):
    N, SIZE = 500, 64 * 1024
    p = ctx.proxy()
    echo = ctx.echo_server()
    proxy_addr = p.addr
    req = request("127.0.0.1", echo.port)

    async def one(i):
        r, w = await asyncio.open_connection(proxy_addr[0], proxy_addr[1])
        try:
            w.write(GREETING + req)
            m = await r.readexactly(2)
            if m != b"\x05\x00":
                return "tunnel %d: method reply %s" % (i, hexb(m))
            head = await r.readexactly(4)
            if head[0] != 5 or head[1] != 0:
                return "tunnel %d: reply %s" % (i, hexb(head))
            await r.readexactly({1: 6, 4: 18}.get(head[3], 6))
            payload = os.urandom(SIZE)

            async def send():
                w.write(payload)
                await w.drain()
            t = asyncio.ensure_future(send())
            got = await r.readexactly(SIZE)
            await t
            if got != payload:
                return "tunnel %d: echoed data differs" % i
            return None
        except asyncio.IncompleteReadError as e:
            return "tunnel %d: EOF after %d bytes of an expected %s" % (i, len(e.partial), e.expected)
        except OSError as e:
            return "tunnel %d: %r" % (i, e)
        finally:
            w.close()

    async def main():
        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(N))), 45)
        return results

    results = asyncio.run(main())
    bad = [r for r in results if r]
    check(not bad, "%d of %d tunnels failed; first: %s" % (len(bad), N, "; ".join(bad[:3])))
    p.check_alive()


@case("handshake_timeout")
def handshake_timeout(ctx):
    need_ringsocks("needs --handshake-timeout")
    p = ctx.proxy(args=["--handshake-timeout", "1"])
    echo = ctx.echo_server()
    slow = ctx.connect(p.addr)
    t0 = time.monotonic()
    slow.sendall(b"\x05")
    good, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(good, 65536)
    expect_close(slow, timeout=max(0.5, 5 - (time.monotonic() - t0)),
                 after="partial greeting (05) with --handshake-timeout 1")
    # Past the good client's own handshake deadline: its tunnel must live on.
    time.sleep(1.5)
    good.settimeout(IO_TIMEOUT)
    try:
        echo_roundtrip(good, 65536)
    except Fail as e:
        raise Fail("established tunnel broken after the handshake timeout: " + str(e))


@case("dns_cache_answers_repeats")
def dns_cache_answers_repeats(ctx):
    """Ten tunnels to the same name cost one round of DNS queries: the shard's
    cache answers the rest. One shard, so every tunnel meets the same cache."""
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--resolver", dns.spec, "--shards", "1"])
    for _ in range(10):
        s, _ = socks_connect(ctx, p, "good.test", echo.port)
        echo_roundtrip(s, 256)
        s.close()
    names = [q for q in dns.queries if "good.test" in str(q)]
    # One A and one AAAA query for the first tunnel; none after it.
    check(0 < len(names) <= 2, "%d DNS queries for good.test over 10 tunnels, expected at most 2 "
          "(the cache should answer): %s" % (len(names), dns.queries))
