"""
cases_robust.py - the other half-close direction, bulk traffic both ways,
IPv6 reply addresses, and peers that vanish at awkward moments (the proxy must
stay up, keep serving, and show no sanitizer report when stopped).
"""

import hashlib
import os
import socket
import struct
import threading

from harness import (GREETING, Fail, admin_request, case, check, echo_roundtrip, hexb, metric,
                     need_ipv6, need_ringsocks, parse_prometheus, read_method_reply, recv_exact,
                     recv_until_eof, request, socks_connect)


def reset_close(sock):
    """Close with RST (SO_LINGER 0) instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def still_serving(ctx, p, echo):
    p.check_alive()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s, 65536)
    s.close()


@case("half_close_reverse")
def half_close_reverse(ctx):
    """The target finishes first: its EOF reaches the client, and the client's
    data still reaches the target afterwards."""
    p = ctx.proxy()
    greeting = os.urandom(100 * 1024)
    result = {}
    done = threading.Event()

    def target(conn, peer):
        conn.sendall(greeting)
        conn.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        n = 0
        while True:
            b = conn.recv(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        result["sha"], result["n"] = h.hexdigest(), n
        done.set()

    srv = ctx.tcp_server(target)
    s, _ = socks_connect(ctx, p, "127.0.0.1", srv.port)
    got = recv_until_eof(s, what="the target's data")
    check(got == greeting, "client got %d bytes before EOF, the target sent %d" % (len(got), len(greeting)))
    data = os.urandom(1 << 20)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        raise Fail("sending after the target's EOF failed: %r (the proxy closed the other direction)" % e)
    check(done.wait(20), "the target did not see EOF within 20 s after the client's SHUT_WR "
          "(received %s bytes)" % result.get("n", "?"))
    check(result["n"] == len(data) and result["sha"] == hashlib.sha256(data).hexdigest(),
          "after its own EOF the target received %d bytes, expected the client's %d"
          % (result["n"], len(data)))


@case("echo_bulk_bidirectional")
def echo_bulk_bidirectional(ctx):
    """32 MiB each way at once through one tunnel (back-pressure both ways)."""
    p = ctx.proxy()
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    size = 32 << 20
    block = os.urandom(1 << 20)
    sent = hashlib.sha256()
    err = []

    def sender():
        try:
            for i in range(size // len(block)):
                chunk = block[i % 7:] + block[:i % 7]
                sent.update(chunk)
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(repr(e))

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = hashlib.sha256()
    n = 0
    while True:
        try:
            b = s.recv(1 << 20)
        except socket.timeout:
            raise Fail("stalled after %d of %d echoed bytes" % (n, size))
        if not b:
            break
        got.update(b)
        n += len(b)
    t.join(20)
    check(not err, "sending failed: %s" % err)
    check(n == size, "got %d echoed bytes then EOF, sent %d" % (n, size))
    check(got.hexdigest() == sent.hexdigest(), "the echoed 32 MiB differ from what was sent")


@case("reply_bnd_addr_ipv6")
def reply_bnd_addr_ipv6(ctx):
    need_ipv6()
    p = ctx.proxy()
    seen = []
    accepted = threading.Event()

    def target(conn, peer):
        seen.append(conn.getpeername())
        accepted.set()
        while conn.recv(65536):
            pass

    srv = ctx.tcp_server(target, "::1")
    s, r = socks_connect(ctx, p, "::1", srv.port)
    check(accepted.wait(5), "the target saw no connection within 5 s of the success reply")
    check(r.atyp == 4, "reply ATYP 0x%02x, expected 04 (IPv6): %s" % (r.atyp, hexb(r.raw)))
    check(r.host == "::1", "reply BND.ADDR %s, expected ::1: %s" % (r.host, hexb(r.raw)))
    check(r.port == seen[0][1], "reply BND.PORT %d, but the target saw the proxy connect from [%s]:%d"
          % (r.port, seen[0][0], seen[0][1]))


@case("client_gone_during_resolve")
def client_gone_during_resolve(ctx):
    """Clients leave (FIN, RST) while their name lookup is pending; one lookup
    is never answered, one is answered after the client left."""
    need_ringsocks("needs --resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    echo = ctx.echo_server()
    # Each late lookup has its own name: a cached answer would send no query at all.
    for name, closer in (("slow.test", socket.socket.close), ("slow.test", reset_close),
                         ("a.late.test", socket.socket.close), ("b.late.test", reset_close)):
        dns.late_sent.clear()
        s = ctx.connect(p.addr)
        s.sendall(GREETING)
        check(read_method_reply(s) == b"\x05\x00", "method selection failed")
        s.sendall(request(name, echo.port))
        check(dns.wait_query(name, 10), "the DNS stub saw no query for %s within 10 s" % name,
              "queries: %s" % dns.queries)
        closer(s)
        if name.endswith("late.test"):
            check(dns.late_sent.wait(10), "the DNS stub never sent the late answer")
        still_serving(ctx, p, echo)


@case("client_reset_mid_transfer")
def client_reset_mid_transfer(ctx):
    """The client resets while the target is pushing data at it."""
    p = ctx.proxy()
    echo = ctx.echo_server()

    def target(conn, peer):
        block = b"\xa5" * 65536
        try:
            for _ in range(256):   # 16 MiB at most
                conn.sendall(block)
        except OSError:
            pass

    srv = ctx.tcp_server(target)
    for i in range(10):
        s, _ = socks_connect(ctx, p, "127.0.0.1", srv.port)
        recv_exact(s, 65536, "data from the target")
        reset_close(s)
    still_serving(ctx, p, echo)


@case("target_reset_mid_transfer")
def target_reset_mid_transfer(ctx):
    """The target resets while the client is pushing data at it; the client must
    see its tunnel end (EOF or reset)."""
    p = ctx.proxy()
    echo = ctx.echo_server()

    def target(conn, peer):
        recv_exact(conn, 65536, "data from the client")
        reset_close(conn)

    srv = ctx.tcp_server(target)
    block = os.urandom(65536)
    for i in range(10):
        s, _ = socks_connect(ctx, p, "127.0.0.1", srv.port)
        s.settimeout(20)
        ended = None
        try:
            for _ in range(1024):   # 64 MiB at most
                s.sendall(block)
        except OSError as e:
            ended = e
        if ended is None:
            raise Fail("tunnel %d: 64 MiB accepted after the target reset (the tunnel was not closed)" % i)
        if isinstance(ended, socket.timeout):
            raise Fail("tunnel %d: sending stalled for 20 s after the target reset (tunnel not closed)" % i)
        s.close()
    still_serving(ctx, p, echo)


def _sysctl_max(name):
    with open("/proc/sys/net/ipv4/" + name) as f:
        return int(f.read().split()[2])


@case("backpressure_bounded")
def backpressure_bounded(ctx):
    """A client that reads nothing: the target must soon be unable to send, i.e.
    the proxy stops reading once the client's side is full instead of buffering
    without bound. Then the client reads everything, byte for byte."""
    p = ctx.proxy()
    limit = 256 << 20  # a proxy that buffers without bound would take all of it
    block = os.urandom(1 << 16)
    twice = memoryview(block * 2)
    state = {"sent": 0}
    stuck = threading.Event()
    resume = threading.Event()

    def target(conn, peer):
        conn.settimeout(2)
        try:
            while state["sent"] < limit:
                # The stream is block repeated; state["sent"] is the offset in it. A
                # partial send just moves the offset: every send is bounded by the
                # 2 s timeout (a blocking sendall of the rest would hang for good
                # if the back-pressure began right then).
                off = state["sent"] % len(block)
                try:
                    n = conn.send(twice[off:off + len(block)])
                except socket.timeout:
                    break  # no progress for 2 s: the proxy pushed back
                state["sent"] += n
            stuck.set()
            resume.wait(60)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            stuck.set()

    srv = ctx.tcp_server(target)
    s, _ = socks_connect(ctx, p, "127.0.0.1", srv.port)
    check(stuck.wait(120), "the target neither filled up nor sent the whole limit in 120 s")
    sent = state["sent"]
    # What the kernel may hold on the way: the client's receive buffer, the proxy's
    # two sockets (send and receive side), the target's send buffer, and one pipe.
    rmem, wmem = _sysctl_max("tcp_rmem"), _sysctl_max("tcp_wmem")
    bound = 2 * (rmem + wmem) + (4 << 20)
    check(sent < bound, "the target sent %d bytes into a client that reads nothing (bound %d): "
          "the proxy kept reading without back-pressure" % (sent, bound))
    resume.set()
    got = 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        # the target repeats one 64 KiB block: check each byte against its offset
        off = got % len(block)
        want = (block[off:] + block * (len(b) // len(block) + 2))[:len(b)]
        check(b == want, "byte mismatch in the %d bytes after offset %d" % (len(b), got))
        got += len(b)
    check(got == sent, "the client read %d bytes, the target had sent %d" % (got, sent))


@case("relay_engine_switches")
def relay_engine_switches(ctx):
    """--relay auto copies small exchanges and moves a direction on to splice once
    a read fills a buffer; splice and copy never switch. Checked through
    ringsocks_relay_splice_switches_total, with the bytes verified either way."""
    need_ringsocks("reads ringsocks' own /metrics counter")
    p = ctx.proxy()
    echo = ctx.echo_server()

    def switches():
        st, body, _ = admin_request(p, "GET", "/metrics")
        check(st == 200, "GET /metrics answered %d" % st)
        v = metric(parse_prometheus(body), "ringsocks_relay_splice_switches_total")
        check(v is not None, "no ringsocks_relay_splice_switches_total in /metrics")
        return int(v)

    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    for n in (1, 100, 1000):
        echo_roundtrip(s, n)
    small = switches()
    check(small == 0, "%d directions switched to splice after three small round trips" % small)
    size = 16 << 20
    data = os.urandom(1 << 20) * (size >> 20)
    err = []

    def sender():
        try:
            s.sendall(data)
        except OSError as e:
            err.append(repr(e))

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = recv_exact(s, size, what="the echoed 16 MiB")
    t.join(20)
    check(not err, "sending failed: %s" % err)
    check(got == data, "the echoed 16 MiB differ from what was sent")
    bulk = switches()
    if ctx.relay == "auto":
        check(bulk == 2, "after 16 MiB each way %d directions had switched to splice, expected 2"
              % bulk)
    else:
        check(bulk == 0, "relay %s: %d directions switched to splice" % (ctx.relay, bulk))
    echo_roundtrip(s, 10)
    s.close()
