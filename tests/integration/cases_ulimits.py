"""
cases_ulimits.py - per-user and per-client-address limits (issue #12): the
N+1th tunnel refused with 0x02 and its own end reason, the new-tunnel bucket
and its refill, the places given back when tunnels end, a rule's override,
SOCKS4's 0x5B, and the bandwidth limits: one tunnel, and one user's tunnels
spread over two shards sharing one rate.
"""

import socket
import threading
import time

from cases_auth import ALICE, BOB, login_connect
from harness import (CONFIG, Fail, admin_request, case, check, hexb, make_hash, metric, need_option,
                     need_ringsocks, open_proxy_socket, parse_logfmt, parse_prometheus, read_reply,
                     request, socks4_connect, socks4_request, read_reply4, socks5_login,
                     wait_until, write_users)


def limits_proxy(ctx, alice_attrs="", bob_attrs="", extra=(), config=None):
    """A proxy with --auth password, alice and bob with these users-file attributes."""
    need_ringsocks("per-user limits")
    need_option("--user-limits")
    users = ["%s:%s %s" % (ALICE[0], make_hash(ALICE[1]), alice_attrs),
             "%s:%s %s" % (BOB[0], make_hash(BOB[1]), bob_attrs)]
    path = write_users(ctx, users)
    args = ["--auth", "password", "--users", path, "--access-log", ctx.path("access.log")]
    if config:
        cpath = ctx.path("ringsocks.conf")
        with open(cpath, "w") as f:
            f.write(config)
        args += ["-c", cpath]
    return ctx.proxy(args=args + list(extra))


def try_connect(ctx, p, user, password, port):
    """Login and CONNECT: the reply's REP (0 on success: the socket stays open in ctx)."""
    s = open_proxy_socket(ctx, p)
    socks5_login(s, user, password)
    s.sendall(request("127.0.0.1", port))
    r = read_reply(s)
    if r.rep != 0:
        s.close()
    return r.rep, s


def log_lines(ctx, p, want, timeout=5.0):
    path = ctx.path("access.log")

    def lines():
        try:
            with open(path) as f:
                return [parse_logfmt(x.rstrip("\n")) for x in f if x.strip()]
        except OSError:
            return []
    wait_until(lambda: len(lines()) >= want, timeout)
    return lines()


def metrics(p):
    body = admin_request(p, "GET", "/metrics")[1]
    return parse_prometheus(body.decode() if isinstance(body, bytes) else body)


@case("user_max_conns")
def user_max_conns(ctx):
    """User max_conns: the N+1th tunnel gets 0x02 and end=limit_conns, a closed one frees a place."""
    echo = ctx.echo_server()
    p = limits_proxy(ctx, alice_attrs="max_conns=2")
    held = []
    for i in range(2):
        rep, s = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        check(rep == 0, "tunnel %d of 2: REP 0x%02x, expected 0" % (i + 1, rep))
        held.append(s)
    rep, _ = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 0x02, "third tunnel with max_conns=2: REP 0x%02x, expected 0x02" % rep)
    # Another user is not limited by alice's count.
    for i in range(3):
        rep, s = try_connect(ctx, p, BOB[0], BOB[1], echo.port)
        check(rep == 0, "bob's tunnel %d: REP 0x%02x" % (i + 1, rep))
        held.append(s)
    held[0].close()
    # The place comes back when the slot is freed (the close reaches the shard).
    ok = wait_until(lambda: try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)[0] == 0, 5.0)
    check(ok, "after one of alice's tunnels closed, a new one is still refused")
    lines = log_lines(ctx, p, 1)
    ends = [x.get("end") for x in lines if x.get("user") == ALICE[0]]
    check("limit_conns" in ends, "no access-log line with end=limit_conns for alice: %r" % ends)
    m = metrics(p)
    check(metric(m, "ringsocks_limit_refusals_total", limit="max_conns") >= 1,
          "ringsocks_limit_refusals_total{limit=max_conns} not counted")


@case("user_limits_default")
def user_limits_default(ctx):
    """User_limits default applies to every user; a users-file 0 exempts one."""
    echo = ctx.echo_server()
    p = limits_proxy(ctx, alice_attrs="max_conns=0", extra=["--user-limits", "max_conns=1"])
    rep, _ = try_connect(ctx, p, BOB[0], BOB[1], echo.port)
    check(rep == 0, "bob's first tunnel: REP 0x%02x" % rep)
    rep, _ = try_connect(ctx, p, BOB[0], BOB[1], echo.port)
    check(rep == 0x02, "bob's second tunnel under user_limits max_conns=1: REP 0x%02x" % rep)
    for i in range(3):
        rep, _ = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        check(rep == 0, "alice (max_conns=0: exempt) tunnel %d: REP 0x%02x" % (i + 1, rep))


@case("user_rate")
def user_rate(ctx):
    """User rate: a burst passes, the next is refused with end=limit_rate, the bucket refills."""
    echo = ctx.echo_server()
    p = limits_proxy(ctx, alice_attrs="rate=2 burst=3")
    reps = []
    for _ in range(4):
        rep, s = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        reps.append(rep)
        s.close()
    check(reps[:3] == [0, 0, 0] and reps[3] == 0x02,
          "rate=2 burst=3: replies %r, expected three 0 then 0x02" % reps)
    time.sleep(0.6)  # one token back after 0.5 s at 2 per second
    rep, s = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "after 0.6 s the bucket should hold a token: REP 0x%02x" % rep)
    s.close()
    lines = log_lines(ctx, p, 5)
    check(any(x.get("end") == "limit_rate" for x in lines), "no end=limit_rate in the access log")


@case("client_max_conns")
def client_max_conns(ctx):
    """Client_limits max_conns counts one address across all shards, whoever the user."""
    echo = ctx.echo_server()
    p = limits_proxy(ctx, extra=["--shards", "4", "--client-limits", "max_conns=5"])
    held, reps = [], []
    for i in range(8):
        user = ALICE if i % 2 else BOB
        rep, s = try_connect(ctx, p, user[0], user[1], echo.port)
        reps.append(rep)
        if rep == 0:
            held.append(s)
    check(reps.count(0) == 5 and reps.count(0x02) == 3,
          "client max_conns=5 over 4 shards: replies %r, expected exactly 5 successes" % reps)
    m = metrics(p)
    check(metric(m, "ringsocks_limit_refusals_client_total") == 3,
          "client refusals counted %r, expected 3" % metric(m, "ringsocks_limit_refusals_client_total"))


@case("rule_override")
def rule_override(ctx):
    """A rule's limits override the user's for the tunnels it admits."""
    echo = ctx.echo_server()
    conf = ('rules = ( { action = "allow"; ports = [%d]; limits = "max_conns=1"; },\n'
            '          { action = "allow"; } );\n' % echo.port)
    p = limits_proxy(ctx, alice_attrs="max_conns=5", config=conf)
    rep, _ = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "first tunnel: REP 0x%02x" % rep)
    rep, _ = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 0x02, "second tunnel through the rule with limits max_conns=1: REP 0x%02x" % rep)


@case("socks4_limit")
def socks4_limit(ctx):
    """SOCKS4 over a client limit gets 91 (0x5B)."""
    need_ringsocks("per-client limits")
    need_option("--client-limits")
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--client-limits", "max_conns=1"])
    socks4_connect(ctx, p, echo.port)
    s = open_proxy_socket(ctx, p)
    s.sendall(socks4_request(1, echo.port))
    r = read_reply4(s)
    check(r.cd == 0x5B, "second SOCKS4 tunnel over client max_conns=1: code 0x%02x, expected 0x5B"
          % r.cd)


@case("users_file_bad_limit")
def users_file_bad_limit(ctx):
    """Users file: a bad limit is refused at its line."""
    need_ringsocks("per-user limits")
    path = write_users(ctx, ["alice:%s max_conns=lots" % make_hash("x")])
    r = ctx.run([CONFIG.binary, "-t", "--auth", "password", "--users", path], timeout=20)
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    check(r.returncode != 0, "-t accepted max_conns=lots")
    check("%s:1: alice: max_conns: 'lots' is not a count" % path in err,
          "no FILE:LINE message for max_conns=lots: %s" % err[-400:])


def pump(ctx, p, user, port, seconds, results, idx, size=1 << 16, barrier=None, warmup=0.0):
    """Download from the source target: bytes received in `seconds` into results[idx]. With a
    barrier, every tunnel is open before any is measured, and the first `warmup` seconds (the
    bucket's burst, the socket buffers filled meanwhile) are not counted."""
    rep, s = try_connect(ctx, p, user[0], user[1], port)
    if barrier is not None:
        barrier.wait(timeout=30)
    if rep != 0:
        results[idx] = -1
        return
    s.settimeout(2)
    got, t0 = 0, time.monotonic()
    start, end = t0 + warmup, t0 + warmup + seconds
    try:
        while time.monotonic() < end:
            b = s.recv(size)
            if not b:
                break
            if time.monotonic() >= start:
                got += len(b)
    except OSError:
        pass
    results[idx] = got
    s.close()


class Source:
    """A target that writes zeros to every client as fast as it can take them."""

    def __init__(self, ctx):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        self.stop = False
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        ctx.defer(self.close)

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            t = threading.Thread(target=self._feed, args=(c,), daemon=True)
            t.start()

    def _feed(self, c):
        buf = b"\0" * (1 << 16)
        try:
            while not self.stop:
                c.sendall(buf)
        except OSError:
            pass
        c.close()

    def close(self):
        self.stop = True
        try:
            self.ls.close()
        except OSError:
            pass


@case("tunnel_bandwidth", timeout=60)
def tunnel_bandwidth(ctx):
    """Bandwidth: one tunnel under tunnel_bw_down gets its rate, within 10 %."""
    src = Source(ctx)
    rate = 2_000_000
    for engine in ("splice", "copy"):
        p = limits_proxy(ctx, alice_attrs="tunnel_bw_down=%d" % rate,
                         extra=["--relay", engine])
        res = [0]
        pump(ctx, p, ALICE, src.port, 3.0, res, 0)
        got = res[0] / 3.0
        # The first 100 ms of the rate may come at once (the bucket's burst).
        check(0.9 * rate <= got <= 1.1 * rate + rate * 0.1 / 3,
              "relay %s: one tunnel at tunnel_bw_down=%d moved %.0f B/s" % (engine, rate, got))
        p.stop()


@case("user_bandwidth_shared", timeout=90)
def user_bandwidth_shared(ctx):
    """Bandwidth: a user's 10 tunnels on two shards share bw_down, fairly."""
    src = Source(ctx)
    rate = 4_000_000
    p = limits_proxy(ctx, alice_attrs="bw_down=%d" % rate, extra=["--shards", "2"])
    n, secs = 10, 4.0
    res = [0] * n
    barrier = threading.Barrier(n)
    ts = [threading.Thread(target=pump, args=(ctx, p, ALICE, src.port, secs, res, i),
                           kwargs={"barrier": barrier, "warmup": 1.0})
          for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(min(res) > 0, "a tunnel failed: %r" % res)
    total = sum(res) / secs
    check(0.93 * rate <= total <= 1.07 * rate,
          "10 tunnels under bw_down=%d moved %.0f B/s in total" % (rate, total))
    fair = rate / n
    check(all(0.9 * fair <= r / secs <= 1.1 * fair for r in res),
          "unfair shares (B/s): %r" % [round(r / secs) for r in res])
    shards = {x.get("shard") for x in log_lines(ctx, p, n) if x.get("user") == ALICE[0]}
    check(len(shards) == 2, "the tunnels all landed on one shard (%r): the test proves nothing"
          % shards)
    m = metrics(p)
    check(metric(m, "ringsocks_bandwidth_waits_total") > 0, "no bandwidth wait counted")
