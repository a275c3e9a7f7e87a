"""
cases_bind.py - BIND, SOCKS5 and SOCKS4: the first reply names where the proxy
listens, an "application server" connects there, the second reply names that
peer, then data and EOF flow both ways. A peer from the wrong address, nobody
connecting (--bind-timeout), --bind-ports, and the client leaving while waiting.
"""

import hashlib
import os
import random
import socket
import threading
import time

from harness import (Fail, case, check, expect_close, hexb, make_hash, need_ipv6, need_option, need_ringsocks,
                     open_proxy_socket, read_reply, read_reply4, read_reply_rest, recv_exact, recv_until_eof,
                     request, socks4_request, socks5_command, socks5_open, write_users)

SECOND_REPLY_WAIT = 10.0


def app_connect(addr, source=None, timeout=10):
    """The "application server" side: connect to the address of the first reply."""
    fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    a = socket.socket(fam, socket.SOCK_STREAM)
    a.settimeout(timeout)
    if source:
        a.bind(source)
    a.connect(tuple(addr[:2]))
    return a


def bind5_first(ctx, p, host="127.0.0.1", port=0, auth=None, expect_host="127.0.0.1"):
    s, r1 = socks5_command(ctx, p, 2, host, port, auth=auth, what="first BIND reply")
    check(r1.host == expect_host and r1.port != 0,
          "first BIND reply %s names %s:%d, expected %s and a non-zero port" % (hexb(r1.raw), r1.host, r1.port,
                                                                               expect_host))
    return s, r1


def bind5_second(s, what="second BIND reply"):
    s.settimeout(SECOND_REPLY_WAIT)
    return read_reply(s, what)


def both_ways(ctx, client, app, size=1 << 20):
    """client -> app with EOF, then app -> client with EOF (half-close each way)."""
    up = os.urandom(size)
    down = os.urandom(size)
    got = {}

    def app_reader():
        try:
            got["up"] = recv_until_eof(app, what="client->app data")
        except Exception as e:
            got["err"] = e

    t = threading.Thread(target=app_reader, daemon=True)
    t.start()
    client.sendall(up)
    client.shutdown(socket.SHUT_WR)
    t.join(30)
    check(not t.is_alive(), "the app side saw no EOF within 30 s after the client's SHUT_WR")
    if "err" in got:
        raise got["err"]
    check(hashlib.sha256(got["up"]).digest() == hashlib.sha256(up).digest(),
          "client->app: the app got %d bytes, the client sent %d (or they differ)" % (len(got["up"]), size))
    app.sendall(down)
    app.shutdown(socket.SHUT_WR)
    back = recv_until_eof(client, what="app->client data")
    check(back == down, "app->client: the client got %d bytes before EOF, the app sent %d (or they differ)"
          % (len(back), size))


def expect_port_closed(addr, what, within=5.0):
    """Connecting to addr must be refused (the listening socket is gone) within `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            a = app_connect(addr, timeout=2)
            a.close()
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise Fail("%s:%d still accepts connections %.0f s %s" % (addr[0], addr[1], within, what))
        time.sleep(0.2)


def expect_closed_or_reset(sock, what, timeout=5):
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        raise Fail("%s: not closed within %.0f s" % (what, timeout))
    except ConnectionResetError:
        return
    check(data == b"", "%s: got %s instead of a close" % (what, hexb(data)))


# -------------------------------------------------------------- SOCKS5

@case("bind5_basic")
def bind5_basic(ctx):
    p = ctx.proxy()
    s, r1 = bind5_first(ctx, p)
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second BIND reply %s, expected REP 00" % hexb(r2.raw))
    mine = app.getsockname()[:2]
    check((r2.host, r2.port) == mine, "second BIND reply names %s:%d, the connecting socket is %s:%d (%s)"
          % (r2.host, r2.port, mine[0], mine[1], hexb(r2.raw)))
    both_ways(ctx, s, app)


@case("bind5_exact_peer")
def bind5_exact_peer(ctx):
    """DST is the exact address and port the application server will connect from."""
    p = ctx.proxy()
    app = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.defer(app.close)
    app.bind(("127.0.0.1", 0))
    src = app.getsockname()
    s, r1 = bind5_first(ctx, p, "127.0.0.1", src[1])
    app.settimeout(10)
    app.connect((r1.host, r1.port))
    r2 = bind5_second(s)
    check(r2.rep == 0, "second BIND reply %s, expected REP 00 (peer %s:%d is the one named in DST)"
          % (hexb(r2.raw), src[0], src[1]))
    check((r2.host, r2.port) == src, "second reply names %s:%d, peer is %s:%d" % (r2.host, r2.port, src[0], src[1]))
    both_ways(ctx, s, app, 65536)


@case("bind5_peer_sends_first")
def bind5_peer_sends_first(ctx):
    """The application server writes as soon as it is connected: those bytes come
    after the second reply, none lost."""
    p = ctx.proxy()
    s, r1 = bind5_first(ctx, p)
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    hello = os.urandom(30000)
    app.sendall(hello)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second BIND reply %s" % hexb(r2.raw))
    got = recv_exact(s, len(hello), "the app's early bytes after the second reply")
    check(got == hello, "the app's early bytes arrived altered")
    s.sendall(b"pong")
    check(recv_exact(app, 4, "client->app") == b"pong", "client->app bytes altered")


@case("bind5_wrong_peer")
def bind5_wrong_peer(ctx):
    """DST 127.0.0.2, the connection comes from 127.0.0.1: second reply REP 02
    (not allowed), then the control connection and the inbound one are closed."""
    p = ctx.proxy()
    s, r1 = bind5_first(ctx, p, "127.0.0.2", 0)
    app = app_connect((r1.host, r1.port), source=("127.0.0.1", 0))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0x02, "second BIND reply %s for a peer from 127.0.0.1 when DST was 127.0.0.2, expected REP 02"
          % hexb(r2.raw))
    expect_close(s, after="second reply REP 02")
    expect_closed_or_reset(app, "the inbound connection from the wrong peer")


@case("bind5_timeout")
def bind5_timeout(ctx):
    need_option("--bind-timeout")
    p = ctx.proxy(args=["--bind-timeout", "1"])
    s, r1 = bind5_first(ctx, p)
    t0 = time.monotonic()
    s.settimeout(6)
    try:
        head = recv_exact(s, 2, "the failure reply after --bind-timeout 1")
    except Fail as e:
        raise Fail("%s (waited %.1f s)" % (e, time.monotonic() - t0))
    took = time.monotonic() - t0
    check(head[0] == 5 and head[1] != 0, "reply after the BIND timeout starts %s, expected 05 and a non-zero REP"
          % hexb(head))
    r2 = read_reply_rest(s, head)
    check(took < 5, "the BIND timeout reply took %.1f s with --bind-timeout 1" % took)
    expect_close(s, after="the BIND timeout reply %s" % hexb(r2.raw))
    expect_port_closed((r1.host, r1.port), "after the BIND timed out")


@case("bind5_client_leaves")
def bind5_client_leaves(ctx):
    """The client closes the control connection while waiting: the listening socket closes."""
    p = ctx.proxy()
    s, r1 = bind5_first(ctx, p)
    s.close()
    expect_port_closed((r1.host, r1.port), "after the BIND client left")
    p.check_alive()


@case("bind5_ports_range")
def bind5_ports_range(ctx):
    need_option("--bind-ports")
    lo, hi = free_range(8)
    p = ctx.proxy(args=["--bind-ports", "%d-%d" % (lo, hi)])
    held = []
    for i in range(3):
        s, r1 = bind5_first(ctx, p)
        check(lo <= r1.port <= hi, "BIND %d: first reply port %d, outside --bind-ports %d-%d" % (i, r1.port, lo, hi))
        check(r1.port not in [x[1] for x in held], "two waiting BINDs got the same port %d" % r1.port)
        held.append((s, r1.port))
    s, port = held[0]
    app = app_connect(("127.0.0.1", port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second reply %s" % hexb(r2.raw))
    both_ways(ctx, s, app, 4096)


def free_range(n):
    """n consecutive ports with nothing bound on 127.0.0.1 right now (by probing), below the
    kernel's ephemeral range: a port 0 bind (the proxy's own listener, a client socket) is
    never handed one of them while the test runs (a listener on 38923 inside a 38923-38924
    range once made the 2-port test see one port)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        eph_lo = 32768
    for _ in range(200):
        base = random.randint(10000, max(10001, eph_lo - n - 1))
        ok = True
        for port in range(base, base + n):
            x = socket.socket()
            try:
                x.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                x.close()
            if not ok:
                break
        if ok:
            return base, base + n - 1
    raise Fail("no %d consecutive free ports found" % n)


@case("bind5_ipv6")
def bind5_ipv6(ctx):
    need_ringsocks("needs --listen [::1]")
    need_ipv6()
    p = ctx.proxy(listen=["[::1]:0"])
    s, r1 = bind5_first(ctx, p, "::1", 0, expect_host="::1")
    check(r1.atyp == 4, "first reply ATYP %02x, expected 04" % r1.atyp)
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0 and (r2.host, r2.port) == app.getsockname()[:2],
          "second reply %s, the connecting socket is %s" % (hexb(r2.raw), app.getsockname()[:2]))
    both_ways(ctx, s, app, 65536)


@case("bind5_domain_dst")
def bind5_domain_dst(ctx):
    """BIND with DST a domain (good.test -> 127.0.0.1 through the DNS stub)."""
    need_option("--resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    s, r1 = bind5_first(ctx, p, "good.test", 0)
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second reply %s for a peer from 127.0.0.1, DST good.test (127.0.0.1)" % hexb(r2.raw))
    both_ways(ctx, s, app, 4096)


@case("bind5_with_auth")
def bind5_with_auth(ctx):
    need_option("--bind-timeout", "--auth")
    users = write_users(ctx, ["alice:" + make_hash("pw-a")])
    p = ctx.proxy(args=["--auth", "password", "--users", users])
    s, r1 = bind5_first(ctx, p, auth=("alice", "pw-a"))
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second reply %s" % hexb(r2.raw))
    both_ways(ctx, s, app, 4096)


@case("bind5_malformed")
def bind5_malformed(ctx):
    """BIND requests the parser must refuse: bad ATYP -> 08; version 04 inside a
    SOCKS5 session -> 01; each then closed."""
    p = ctx.proxy()
    for payload, rep, what in ((b"\x05\x02\x00\x05", 0x08, "BIND with ATYP 05"),
                               (request("127.0.0.1", 0, cmd=2, ver=4), 0x01, "BIND with VER 04")):
        s = socks5_open(ctx, p)
        s.sendall(payload)
        head = recv_exact(s, 2, "reply to %s" % what)
        check(head == bytes([5, rep]), "reply to %s starts %s, expected 05 %02x" % (what, hexb(head), rep))
        read_reply_rest(s, head)
        expect_close(s, after="the error reply to %s" % what)


# -------------------------------------------------------------- SOCKS4

def bind4_first(ctx, p, ip="127.0.0.1", port=0):
    s = open_proxy_socket(ctx, p)
    s.sendall(socks4_request(2, port, ip, userid=b"binder"))
    r1 = read_reply4(s, "first SOCKS4 BIND reply")
    check(r1.vn == 0 and r1.cd == 90, "first SOCKS4 BIND reply %s, expected VN 00 CD 90" % hexb(r1.raw))
    check(r1.host == "127.0.0.1" and r1.port != 0,
          "first SOCKS4 BIND reply names %s:%d, expected 127.0.0.1 and a non-zero port" % (r1.host, r1.port))
    return s, r1


@case("bind4_basic")
def bind4_basic(ctx):
    p = ctx.proxy()
    s, r1 = bind4_first(ctx, p)
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    s.settimeout(SECOND_REPLY_WAIT)
    r2 = read_reply4(s, "second SOCKS4 BIND reply")
    check(r2.vn == 0 and r2.cd == 90, "second SOCKS4 BIND reply %s, expected VN 00 CD 90" % hexb(r2.raw))
    mine = app.getsockname()[:2]
    check((r2.host, r2.port) == mine, "second reply names %s:%d, the connecting socket is %s:%d"
          % (r2.host, r2.port, mine[0], mine[1]))
    both_ways(ctx, s, app)


@case("bind4_wrong_peer")
def bind4_wrong_peer(ctx):
    p = ctx.proxy()
    s, r1 = bind4_first(ctx, p, ip="127.0.0.2")
    app = app_connect((r1.host, r1.port), source=("127.0.0.1", 0))
    ctx.defer(app.close)
    s.settimeout(SECOND_REPLY_WAIT)
    r2 = read_reply4(s, "second SOCKS4 BIND reply")
    check(r2.vn == 0 and r2.cd == 91, "second SOCKS4 BIND reply %s for a peer from 127.0.0.1 when DSTIP was "
          "127.0.0.2, expected CD 91" % hexb(r2.raw))
    expect_close(s, after="CD 91")
    expect_closed_or_reset(app, "the inbound connection from the wrong peer")


@case("bind4_timeout")
def bind4_timeout(ctx):
    need_option("--bind-timeout")
    p = ctx.proxy(args=["--bind-timeout", "1"])
    s, r1 = bind4_first(ctx, p)
    t0 = time.monotonic()
    s.settimeout(6)
    r2 = read_reply4(s, "SOCKS4 reply after --bind-timeout 1")
    took = time.monotonic() - t0
    check(r2.vn == 0 and r2.cd == 91, "reply after the BIND timeout %s, expected VN 00 CD 91" % hexb(r2.raw))
    check(took < 5, "the timeout reply took %.1f s with --bind-timeout 1" % took)
    expect_close(s, after="CD 91 after the BIND timeout")


@case("bind4_ports_range")
def bind4_ports_range(ctx):
    need_option("--bind-ports")
    lo, hi = free_range(4)
    p = ctx.proxy(args=["--bind-ports", "%d-%d" % (lo, hi)])
    s, r1 = bind4_first(ctx, p)
    check(lo <= r1.port <= hi, "SOCKS4 BIND port %d outside --bind-ports %d-%d" % (r1.port, lo, hi))


@case("bind_ports_exhausted")
def bind_ports_exhausted(ctx):
    """--bind-ports with 2 ports: a third waiting BIND gets a failure reply, not a hang."""
    need_option("--bind-ports")
    lo, hi = free_range(2)
    p = ctx.proxy(args=["--bind-ports", "%d-%d" % (lo, hi)])
    a, _ = bind5_first(ctx, p)
    b, _ = bind5_first(ctx, p)
    s = socks5_open(ctx, p)
    s.sendall(request("127.0.0.1", 0, cmd=2))
    s.settimeout(5)
    head = recv_exact(s, 2, "reply to a BIND with every --bind-ports port in use")
    check(head[0] == 5 and head[1] != 0, "third BIND with a 2-port range in use: reply %s, expected a failure"
          % hexb(head))
    read_reply_rest(s, head)
    expect_close(s, after="the failure reply")


@case("bind5_app_closes_first")
def bind5_app_closes_first(ctx):
    """The application server sends, then closes before the client has read the
    second reply: the client still gets the reply, the data, then EOF."""
    p = ctx.proxy()
    s, r1 = bind5_first(ctx, p)
    app = app_connect((r1.host, r1.port))
    data = os.urandom(100000)
    app.sendall(data)
    app.close()
    time.sleep(0.3)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second reply %s after the peer already closed" % hexb(r2.raw))
    got = recv_until_eof(s, what="the peer's data before its close")
    check(got == data, "the client got %d bytes before EOF, the peer sent %d" % (len(got), len(data)))


@case("bind5_app_half_closes_first")
def bind5_app_half_closes_first(ctx):
    """The peer finishes first (SHUT_WR): its EOF reaches the client, and the
    client's data still reaches the peer afterwards."""
    p = ctx.proxy()
    s, r1 = bind5_first(ctx, p)
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second reply %s" % hexb(r2.raw))
    down = os.urandom(300000)
    app.sendall(down)
    app.shutdown(socket.SHUT_WR)
    got = recv_until_eof(s, what="the peer's data")
    check(got == down, "client got %d bytes before EOF, the peer sent %d" % (len(got), len(down)))
    up = os.urandom(300000)
    s.sendall(up)
    s.shutdown(socket.SHUT_WR)
    back = recv_until_eof(app, what="the client's data after the peer's EOF")
    check(back == up, "the peer got %d bytes, the client sent %d after the peer's EOF" % (len(back), len(up)))


@case("bind5_parallel_50")
def bind5_parallel_50(ctx):
    """50 BINDs waiting at once, each connected by its own peer, each carrying data."""
    p = ctx.proxy()
    waiting = [bind5_first(ctx, p) for _ in range(50)]
    ports = [r1.port for _, r1 in waiting]
    check(len(set(ports)) == 50, "50 waiting BINDs got %d distinct ports" % len(set(ports)))
    apps = []
    for s, r1 in waiting:
        a = app_connect((r1.host, r1.port))
        ctx.defer(a.close)
        apps.append(a)
    for (s, r1), a in zip(waiting, apps):
        r2 = bind5_second(s)
        check(r2.rep == 0 and (r2.host, r2.port) == a.getsockname()[:2],
              "second reply %s, the peer is %s" % (hexb(r2.raw), a.getsockname()[:2]))
    for (s, r1), a in zip(waiting, apps):
        msg = os.urandom(2000)
        s.sendall(msg)
        check(recv_exact(a, len(msg), "client->peer") == msg, "client->peer data differs")
        a.sendall(msg[::-1])
        check(recv_exact(s, len(msg), "peer->client") == msg[::-1], "peer->client data differs")


@case("bind_ports_skips_busy")
def bind_ports_skips_busy(ctx):
    """A port of --bind-ports already taken by another program is skipped."""
    need_option("--bind-ports")
    lo, hi = free_range(3)
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.defer(busy.close)
    busy.bind(("127.0.0.1", lo))
    busy.listen(1)
    p = ctx.proxy(args=["--bind-ports", "%d-%d" % (lo, hi)])
    got = []
    for _ in range(2):
        s, r1 = bind5_first(ctx, p)
        got.append(r1.port)
        check(lo < r1.port <= hi, "BIND port %d with --bind-ports %d-%d and %d taken" % (r1.port, lo, hi, lo))
    check(len(set(got)) == 2, "two waiting BINDs share port %d" % got[0])


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def open_sockets(pid):
    """Socket fds of pid (pipes, which the splice engine pools, are not counted)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def settle_fds(pid, limit, within=5.0, count=open_sockets):
    deadline = time.monotonic() + within
    while True:
        n = count(pid)
        if n <= limit or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


@case("bind_resources_released")
def bind_resources_released(ctx):
    """BINDs that end every way (timeout, client gone, wrong peer, done), two
    rounds of 60: afterwards the proxy holds no more sockets than before (pipes,
    pooled by the splice engine, are not counted)."""
    need_option("--bind-timeout")
    p = ctx.proxy(args=["--bind-timeout", "1"])
    pid = p.proc.pid

    def one_round():
        timeouts = [bind5_first(ctx, p)[0] for _ in range(20)]
        for _ in range(20):
            s, _ = bind5_first(ctx, p)
            s.close()
        for _ in range(10):
            s, r1 = bind5_first(ctx, p, "127.0.0.2", 0)
            a = app_connect((r1.host, r1.port))
            r2 = bind5_second(s)
            check(r2.rep == 2, "wrong peer: %s" % hexb(r2.raw))
            a.close()
            s.close()
        for _ in range(10):
            s, r1 = bind5_first(ctx, p)
            a = app_connect((r1.host, r1.port))
            r2 = bind5_second(s)
            check(r2.rep == 0, "second reply %s" % hexb(r2.raw))
            s.sendall(b"x" * 5000)
            check(recv_exact(a, 5000, "bytes") == b"x" * 5000, "data")
            a.sendall(b"y" * 5000)
            check(recv_exact(s, 5000, "bytes") == b"y" * 5000, "data")
            a.close()
            s.close()
        for t in timeouts:
            t.settimeout(5)
            try:
                while t.recv(4096):
                    pass
            except OSError:
                pass
            t.close()

    base = open_sockets(pid)
    one_round()
    first = settle_fds(pid, base + 2)
    one_round()
    second = settle_fds(pid, base + 2)
    check(first <= base + 2 and second <= base + 2,
          "the proxy holds %d sockets after one round of 60 finished BINDs, %d after two, %d before: BIND "
          "leaks sockets" % (first, second, base))
    p.check_alive()


@case("bind5_wildcard_dst")
def bind5_wildcard_dst(ctx):
    """DST 0.0.0.0: any peer is accepted (here one from 127.0.0.2)."""
    p = ctx.proxy()
    s, r1 = bind5_first(ctx, p, "0.0.0.0", 0)
    app = app_connect((r1.host, r1.port), source=("127.0.0.2", 0))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0 and (r2.host, r2.port) == app.getsockname()[:2],
          "second reply %s for a peer %s with DST 0.0.0.0" % (hexb(r2.raw), app.getsockname()[:2]))
    both_ways(ctx, s, app, 4096)


@case("bind_wait_outlives_handshake_timeout")
def bind_wait_outlives_handshake_timeout(ctx):
    """--handshake-timeout 1: a BIND whose request is complete waits for its peer
    under --bind-timeout, not the handshake timeout."""
    need_option("--bind-timeout", "--handshake-timeout")
    p = ctx.proxy(args=["--handshake-timeout", "1", "--bind-timeout", "10"])
    s, r1 = bind5_first(ctx, p)
    s4, r41 = bind4_first(ctx, p)
    time.sleep(2.5)
    for sock, first, v in ((s, r1, 5), (s4, r41, 4)):
        app = app_connect((first.host, first.port))
        ctx.defer(app.close)
        sock.settimeout(SECOND_REPLY_WAIT)
        if v == 5:
            r2 = read_reply(sock, "second BIND reply after 2.5 s")
            ok = r2.rep == 0
        else:
            r2 = read_reply4(sock, "second SOCKS4 BIND reply after 2.5 s")
            ok = r2.cd == 90
        check(ok, "SOCKS%d BIND: second reply %s after a 2.5 s wait with --handshake-timeout 1 --bind-timeout 10"
              % (v, hexb(r2.raw)))
        both_ways(ctx, sock, app, 4096)


@case("bind_wait_outlives_idle_timeout")
def bind_wait_outlives_idle_timeout(ctx):
    """--idle-timeout 1 --bind-timeout 10: the wait for the peer is bounded by
    --bind-timeout (the option made for it), not by the tunnel idle timeout."""
    need_option("--bind-timeout", "--idle-timeout")
    p = ctx.proxy(args=["--idle-timeout", "1", "--bind-timeout", "10"])
    s, r1 = bind5_first(ctx, p)
    time.sleep(2.5)
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s, "second BIND reply after 2.5 s")
    check(r2.rep == 0, "second reply %s after a 2.5 s wait with --idle-timeout 1 --bind-timeout 10" % hexb(r2.raw))
    both_ways(ctx, s, app, 4096)


@case("bind5_client_data_before_peer")
def bind5_client_data_before_peer(ctx):
    """Bytes the client sends right behind the BIND request, before any peer has
    connected, are kept and delivered to the peer."""
    p = ctx.proxy()
    s = socks5_open(ctx, p)
    early = os.urandom(3000)
    s.sendall(request("127.0.0.1", 0, cmd=2) + early)
    r1 = read_reply(s, "first BIND reply")
    check(r1.rep == 0, "first BIND reply %s" % hexb(r1.raw))
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second reply %s" % hexb(r2.raw))
    got = recv_exact(app, len(early), "the client's early bytes at the peer")
    check(got == early, "the client's early bytes arrived altered")


@case("bind_timeout_not_early")
def bind_timeout_not_early(ctx):
    """--bind-timeout 1 means a full second: six waits, in parallel and started at
    staggered moments, none ends before 0.9 s (measured by the client from the
    first reply, after the server started waiting) nor after 2.5 s."""
    need_option("--bind-timeout")
    p = ctx.proxy(args=["--bind-timeout", "1"])
    import threading
    results = []

    def one(delay):
        time.sleep(delay)
        s, r1 = bind5_first(ctx, p)
        t0 = time.monotonic()
        s.settimeout(6)
        try:
            head = recv_exact(s, 2, "reply after --bind-timeout 1")
            results.append((time.monotonic() - t0, head))
        except Fail as e:
            results.append((None, str(e)))

    threads = [threading.Thread(target=one, args=(i * 0.17,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    check(len(results) == 6, "only %d of 6 BIND waits ended" % len(results))
    bad = [r for r in results if r[0] is None]
    check(not bad, "BIND wait without a timeout reply: %s" % bad[0][1] if bad else "")
    times = sorted(r[0] for r in results)
    check(times[0] >= 0.9 and times[-1] <= 2.5,
          "with --bind-timeout 1 the failure replies came after %s s: a timeout must not fire early"
          % ", ".join("%.2f" % t for t in times))
