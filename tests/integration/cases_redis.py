"""
cases_redis.py - a fleet's shared state in Redis (issue #13, item 3): two
ringsocks nodes and a real redis-server (Debian's), all on loopback, started
here and stopped by PID. Two nodes share one max_conns exactly; a quota spent
on one node is seen on the other; Redis killed and restarted mid-run loses no
count; redis_fallback when Redis is away; the users table in Redis.
"""

import json
import os
import signal
import socket
import subprocess
import time

from cases_auth import ALICE, BOB
from cases_ulimits import metrics, try_connect
from harness import (CONFIG, Fail, _register_proc, admin_request, case, check, free_port, make_hash, metric,
                     need_option, need_ringsocks, need_tools, open_proxy_socket, request,
                     read_reply, socks5_login, stop_process, tail, wait_until, write_users)


class Redis:
    """redis-server on a free loopback port, no persistence, stopped by PID."""

    def __init__(self, ctx, port=None, password=None, unix=None):
        need_tools("redis-server")
        self.ctx = ctx
        self.port = port or free_port()
        self.password = password
        self.unix = unix
        self.proc = None
        self.start()
        ctx.defer(self.stop)

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.ctx.path(""), "--logfile", ""]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.unix:
            argv += ["--unixsocket", self.unix, "--unixsocketperm", "700"]
        self.log = open(self.ctx.path("redis-%d.log" % self.port), "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        _register_proc(self.proc)
        if not wait_until(self._up, 10.0):
            raise Fail("redis-server did not answer on 127.0.0.1:%d" % self.port)

    def _up(self):
        if self.proc.poll() is not None:
            raise Fail("redis-server exited %d at start" % self.proc.returncode)
        try:
            return self.cmd("PING") in ("PONG", b"PONG")
        except OSError:
            return False

    def kill(self):
        """SIGKILL: nothing written, every key gone (no persistence)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            stop_process(self.proc)
        self.log.close()

    def cmd(self, *args):
        """One command over RESP; the reply decoded (errors raise Fail)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            out = b""
            if self.password:
                out += _resp(["AUTH", self.password])
            out += _resp(args)
            s.sendall(out)
            f = s.makefile("rb")
            if self.password:
                _read(f)
            return _read(f)


def _resp(args):
    b = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        b += b"$%d\r\n%s\r\n" % (len(a), a)
    return b


def _read(f):
    line = f.readline().rstrip(b"\r\n")
    t, rest = line[:1], line[1:]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise Fail("redis error: %s" % rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise Fail("redis: unexpected reply %r" % line)


def node(ctx, r, name, alice_attrs="", extra=(), users=None, port=None):
    """A ringsocks node of the fleet on Redis r: --auth password, alice and bob."""
    need_ringsocks("a fleet through Redis")
    need_option("--redis")
    if users is None:
        users = ["%s:%s %s" % (ALICE[0], make_hash(ALICE[1]), alice_attrs),
                 "%s:%s" % (BOB[0], make_hash(BOB[1]))]
    path = write_users(ctx, users, name="users-%s" % name)
    args = ["--auth", "password", "--users", path,
            "--redis", "127.0.0.1:%d" % (port or r.port), "--redis-node", name,
            "--redis-interval", "200", "--access-log", ctx.path("access-%s.log" % name)]
    return ctx.proxy(args=args + list(extra))


def redis_up(p):
    return metric(metrics(p), "ringsocks_redis_up") == 1


def open_until(ctx, p, user, port, timeout):
    """Retry a login + CONNECT until it succeeds or timeout: the open socket, or None."""
    deadline = time.monotonic() + timeout
    while True:
        rep, s = try_connect(ctx, p, user[0], user[1], port)
        if rep == 0:
            return s
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def user_fleet(p, user="alice"):
    """The "fleet" object of GET /users/USER."""
    status, body, _ = admin_request(p, "GET", "/users/" + user)
    check(status == 200, "GET /users/%s: %d %s" % (user, status, body))
    doc = json.loads(body)
    check("fleet" in doc, "GET /users/%s has no fleet object: %s" % (user, body))
    return doc["fleet"]


def two_nodes(ctx, alice_attrs="", **kw):
    """Redis, nodes a and b on it (both connected), and an echo target."""
    r = Redis(ctx)
    a = node(ctx, r, "a", alice_attrs, **kw)
    b = node(ctx, r, "b", alice_attrs, **kw)
    echo = ctx.echo_server()
    check(wait_until(lambda: redis_up(a) and redis_up(b), 5.0), "the nodes never reached Redis",
          tail(a.stderr()))
    grace_over(a)
    return r, a, b, echo


def grace_over(p):
    """A new Redis gives no new places for 1 s + 2 intervals (fleet.h): wait that out."""
    check("its state is new" in p.stderr(), "the node did not say Redis's state is new",
          tail(p.stderr()))
    time.sleep(1.0 + 2 * 0.2 + 0.1)


@case("redis_conns_shared")
def redis_conns_shared(ctx):
    r, a, b, echo = two_nodes(ctx, "max_conns=3")
    held = []
    for p in (a, b, a):
        rep, s = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        check(rep == 0, "tunnel %d of 3 (max_conns=3 across the fleet) refused: 0x%02x"
              % (len(held) + 1, rep))
        held.append((p, s))
    # The fleet holds 3: a fourth is refused on either node, not 3 per node.
    for p in (b, a):
        t0 = time.monotonic()
        rep, _ = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        check(rep == 2, "a 4th tunnel across the fleet (max_conns=3) got 0x%02x on node %s, "
              "expected 0x02" % (rep, "a" if p is a else "b"))
        check(time.monotonic() - t0 < 3.0, "the refusal took %.1f s: the fleet said full at once"
              % (time.monotonic() - t0))
    # The nodes' leases, as GET /users/alice shows them, hold the 3 and no more.
    leases = [user_fleet(p)["lease"] for p in (a, b)]
    check(sum(leases) <= 3 and leases[0] >= 2 and leases[1] >= 1,
          "GET /users/alice's fleet leases %r: a holds 2 tunnels, b 1, of 3" % leases)
    # Bob has no limit: untouched by alice's.
    rep, _ = try_connect(ctx, b, BOB[0], BOB[1], echo.port)
    check(rep == 0, "bob (no limit) refused 0x%02x" % rep)
    # One of a's ends: b gets the place once a gave it back (its next round).
    held[0][1].close()
    s = open_until(ctx, b, ALICE, echo.port, 5.0)
    check(s is not None, "a place freed on node a never reached node b in 5 s")
    rep, _ = try_connect(ctx, a, ALICE[0], ALICE[1], echo.port)
    check(rep == 2, "after b took the freed place, a 4th on a got 0x%02x" % rep)
    # The tunnels held relay.
    for p, t in held[1:]:
        t.sendall(b"ping")
        check(t.recv(4) == b"ping", "a leased tunnel does not relay")
    ma, mb = metrics(a), metrics(b)
    waits = (metric(ma, "ringsocks_lease_waits_total") or 0) + \
        (metric(mb, "ringsocks_lease_waits_total") or 0)
    check(waits >= 1, "no request waited for a lease: the first tunnels should have")
    lines = [x for x in open(ctx.path("access-a.log")) if "end=limit_conns" in x]
    check(lines, "node a's access log has no end=limit_conns line")


@case("redis_rate_shared")
def redis_rate_shared(ctx):
    """rate=2 burst=6 for the fleet: both nodes together admit the burst and the rate, not
    twice that."""
    r, a, b, echo = two_nodes(ctx, "rate=2 burst=6")
    t0 = time.monotonic()
    admitted = {a: 0, b: 0}
    reps = []
    for i in range(16):
        p = a if i % 2 == 0 else b
        rep, s = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        reps.append(rep)
        if rep == 0:
            admitted[p] += 1
            s.close()
    elapsed = time.monotonic() - t0
    total = admitted[a] + admitted[b]
    bound = 6 + 2 * elapsed + 1
    check(total <= bound, "%d tunnels admitted in %.2f s by the fleet (a %d, b %d) with rate=2 "
          "burst=6: at most %.1f expected (each node on its own would take 6 + 2/s)"
          % (total, elapsed, admitted[a], admitted[b], bound))
    check(total >= 6, "only %d admitted: the fleet's burst of 6 was not spent (%r)" % (total, reps))
    check(admitted[a] and admitted[b], "one node got none of the burst: %r" % reps)
    check(all(x in (0, 2) for x in reps), "replies other than 0x00 and 0x02: %r" % reps)
    def refusals():
        return [x for n in ("a", "b") for x in open(ctx.path("access-%s.log" % n))
                if "user=alice" in x and "rep=2" in x]
    wait_until(lambda: len(refusals()) >= reps.count(2), 5.0)
    lines = refusals()
    check(len(lines) == reps.count(2) and all("end=limit_rate" in x for x in lines),
          "%d refusals, access-log lines %r: not all end=limit_rate" % (reps.count(2), lines[:3]))
    # The bucket refills at the fleet's rate: one more after a second.
    time.sleep(1.2)
    rep, _ = try_connect(ctx, b, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "after 1.2 s at 2/s the bucket had no token for b: 0x%02x" % rep)


def pump_bytes(ctx, p, user, echo_port, n):
    """n bytes up through one tunnel (and back down from the echo): 2n counted."""
    rep, s = try_connect(ctx, p, user[0], user[1], echo_port)
    check(rep == 0, "the tunnel for the quota's bytes was refused 0x%02x" % rep)
    chunk = b"x" * 16384
    got = 0
    sent = 0
    while sent < n:
        k = min(len(chunk), n - sent)
        s.sendall(chunk[:k])
        sent += k
        while got < sent:
            got += len(s.recv(65536))
    s.close()


@case("redis_quota_shared")
def redis_quota_shared(ctx):
    # 400 kB a day for alice, the fleet together: each node spends 240 kB (2 x 120 kB).
    r, a, b, echo = two_nodes(ctx, "quota=400k/day")
    pump_bytes(ctx, a, ALICE, echo.port, 120000)
    # Under the quota on its own, and the fleet's sum (240k) too: b still admits.
    time.sleep(0.6)
    rep, s = try_connect(ctx, b, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "b refused alice at 240 kB of a 400 kB fleet quota: 0x%02x" % rep)
    s.close()
    pump_bytes(ctx, b, ALICE, echo.port, 120000)
    # 480 kB in all, neither node over on its own: both refuse once the figures met.
    for p, name in ((a, "a"), (b, "b")):
        ok = wait_until(lambda: try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)[0] == 2, 5.0)
        check(ok, "node %s still admits alice with 480 kB spent across the fleet of a 400 kB "
              "quota (240 kB on each node)" % name)
    used = r.cmd("HGETALL", "ringsocks:quota:alice:day:%d" % (int(time.time()) // 86400))
    figures = dict(zip(used[0::2], used[1::2])) if used else {}
    check(set(figures) == {"a", "b"} and all(int(v) >= 240000 for v in figures.values()),
          "Redis's figures of the day: %r, expected a and b at 240000 or more" % figures)
    others = user_fleet(b)["quota_others"]
    check(others >= 240000, "node b's GET /users/alice says the others used %d, a used 240000+"
          % others)
    rep, _ = try_connect(ctx, a, BOB[0], BOB[1], echo.port)
    check(rep == 0, "bob (no quota) refused 0x%02x" % rep)


@case("redis_restart")
def redis_restart(ctx):
    r, a, b, echo = two_nodes(ctx, "max_conns=4 quota=10M/total")
    held = []
    for _ in range(2):
        rep, s = try_connect(ctx, a, ALICE[0], ALICE[1], echo.port)
        check(rep == 0, "a tunnel on a refused 0x%02x" % rep)
        held.append(s)
    pump_bytes(ctx, a, ALICE, echo.port, 100000)
    r.kill()
    check(wait_until(lambda: metric(metrics(a), "ringsocks_redis_up") == 0, 5.0),
          "ringsocks_redis_up stayed 1 on a with Redis killed")
    check("serving on the leases held" in a.stderr(), "a's log does not say Redis went away",
          tail(a.stderr()))
    # The tunnels held go on while Redis is away.
    for s in held:
        s.sendall(b"ping")
        check(s.recv(4) == b"ping", "a tunnel stopped relaying while Redis was away")
    r.start()  # empty: no persistence
    check(wait_until(lambda: redis_up(a) and redis_up(b), 8.0), "the nodes did not reconnect",
          tail(a.stderr()))
    check("connected again" in a.stderr(), "a's log does not say Redis came back")
    # a's two tunnels are counted again: b, asking from the moment Redis is back, gets the 2
    # places left of 4, never more (a new Redis gives no new places until every node is back).
    got = []
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline and len(got) < 3:
        rep, s = try_connect(ctx, b, ALICE[0], ALICE[1], echo.port)
        if rep == 0:
            got.append(s)
        else:
            time.sleep(0.05)
    check(len(got) == 2, "after Redis restarted empty, b opened %d of the places (4, a holds 2): "
          "expected exactly 2" % len(got))
    # The quota's figure of a is back too.
    key = "ringsocks:quota:alice:total:0"
    ok = wait_until(lambda: int((r.cmd("HGET", key, "a") or 0)) >= 200000, 5.0)
    check(ok, "a's quota figure (200 kB) did not reach the restarted Redis: %r"
          % r.cmd("HGETALL", key))


@case("redis_fallback")
def redis_fallback(ctx):
    need_ringsocks("a fleet through Redis")
    port = free_port()  # nothing listens: Redis is away from the start
    echo = ctx.echo_server()
    carol = ("carol", "carol-pw")
    users = ["%s:%s max_conns=2" % (ALICE[0], make_hash(ALICE[1])),
             "%s:%s" % (BOB[0], make_hash(BOB[1])),
             "%s:%s rate=1 burst=2" % (carol[0], make_hash(carol[1]))]
    closed = node(ctx, None, "c", users=users, extra=["--redis-fallback", "closed"], port=port)
    opened = node(ctx, None, "o", users=users, port=port)
    # A fleet rate, Redis away: closed refuses; open has the node's own bucket decide.
    rep, _ = try_connect(ctx, closed, carol[0], carol[1], echo.port)
    check(rep == 2, "redis_fallback closed: carol (a fleet rate) got 0x%02x, not 0x02" % rep)
    reps = [try_connect(ctx, opened, carol[0], carol[1], echo.port)[0] for _ in range(3)]
    check(reps == [0, 0, 2], "redis_fallback open: carol's rate=1 burst=2 on this node alone "
          "should admit 2 of 3 at once, got %r" % reps)
    rep, _ = try_connect(ctx, closed, ALICE[0], ALICE[1], echo.port)
    check(rep == 2, "redis_fallback closed, Redis away: alice (max_conns) got 0x%02x, not 0x02"
          % rep)
    rep, _ = try_connect(ctx, closed, BOB[0], BOB[1], echo.port)
    check(rep == 0, "redis_fallback closed: bob (no max_conns, nothing to lease) refused 0x%02x"
          % rep)
    for i in range(2):
        rep, _ = try_connect(ctx, opened, ALICE[0], ALICE[1], echo.port)
        check(rep == 0, "redis_fallback open, Redis away: tunnel %d of max_conns=2 refused 0x%02x"
              % (i + 1, rep))
    rep, _ = try_connect(ctx, opened, ALICE[0], ALICE[1], echo.port)
    check(rep == 2, "redis_fallback open: the local max_conns=2 still holds (got 0x%02x)" % rep)
    for p in (closed, opened):
        check("serving on the leases held" in p.stderr(), "the log does not say Redis is away",
              tail(p.stderr()))
        m = metrics(p)
        check(metric(m, "ringsocks_redis_up") == 0, "ringsocks_redis_up is not 0")
    check((metric(metrics(opened), "ringsocks_redis_lease_fallbacks_total") or 0) >= 1,
          "no lease fallback counted")


@case("redis_users")
def redis_users(ctx):
    # The file has bob alone: alice comes from Redis.
    users = ["%s:%s" % (BOB[0], make_hash(BOB[1]))]
    r, a, b, echo = two_nodes(ctx, users=users, extra=["--redis-users", "true"])
    rep, _ = try_connect(ctx, a, BOB[0], BOB[1], echo.port)
    check(rep == 0, "bob (the file's user until Redis has a table) refused 0x%02x" % rep)
    r.cmd("HSET", "ringsocks:users", ALICE[0], make_hash(ALICE[1]) + " max_conns=1")
    r.cmd("INCR", "ringsocks:users:gen")

    def alice_in(p):
        try:
            rep, s = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        except (OSError, Fail):
            return False
        if rep == 0:
            s.close()
        return rep == 0
    for p, name in ((a, "a"), (b, "b")):
        check(wait_until(lambda: alice_in(p), 5.0),
              "alice, added in Redis, cannot log in on node %s after 5 s (leases: %r)"
              % (name, r.cmd("HGETALL", "ringsocks:conns:alice")),
              tail(open(ctx.path("access-%s.log" % name)).read()))
    # Now the table is Redis's: bob (file only) is gone.
    s = open_proxy_socket(ctx, a)
    try:
        socks5_login(s, BOB[0], BOB[1])
        s.sendall(request("127.0.0.1", echo.port))
        rep = read_reply(s).rep
    except (OSError, Fail):
        rep = None
    check(rep != 0, "bob, in the file but not in Redis's table, still gets through")
    # A bad line is refused and the table in force stays.
    r.cmd("HSET", "ringsocks:users", "carol", "not-a-hash bogus=1")
    r.cmd("INCR", "ringsocks:users:gen")
    check(wait_until(lambda: "redis:ringsocks:users" in a.stderr(), 5.0),
          "a bad users table in Redis is not reported with its origin", tail(a.stderr()))
    # (alice's one place may still be b's lease for a round: asked again for 3 s.)
    check(wait_until(lambda: alice_in(a), 3.0), "a bad table in Redis dropped the good one in "
          "force")
    m = metrics(a)
    check((metric(m, "ringsocks_redis_users_loads_total") or 0) >= 2, "users loads not counted")


@case("redis_auth_unix")
def redis_auth_unix(ctx):
    """AUTH from redis_password_file, over a Unix socket; a wrong password is said and retried."""
    sock = ctx.path("redis.sock")
    r = Redis(ctx, password="s3cret-fleet", unix=sock)
    echo = ctx.echo_server()
    good = ctx.path("redis-pass")
    with open(good, "w") as f:
        f.write("s3cret-fleet\n")
    os.chmod(good, 0o600)
    p = node(ctx, r, "a", "max_conns=1", extra=["--redis", "unix:" + sock,
                                                "--redis-password-file", good])
    check(wait_until(lambda: redis_up(p), 5.0), "no connection over unix:%s with AUTH" % sock,
          tail(p.stderr()))
    grace_over(p)
    rep, s = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "alice's first tunnel (a lease over the Unix socket) refused 0x%02x" % rep)
    held = r.cmd("HGETALL", "ringsocks:conns:alice")
    check(held and held[0].startswith("a/"), "no lease of node a in Redis: %r" % held)
    bad = ctx.path("redis-pass-bad")
    with open(bad, "w") as f:
        f.write("wrong\n")
    q = node(ctx, r, "b", "max_conns=1", extra=["--redis", "unix:" + sock,
                                                "--redis-password-file", bad])
    check(wait_until(lambda: "AUTH" in q.stderr(), 5.0), "a refused AUTH is not in the log",
          tail(q.stderr()))
    time.sleep(1.0)
    check(metric(metrics(q), "ringsocks_redis_up") == 0, "redis_up is 1 with a wrong password")
    # Every reconnect fails the same way: said once, not every two seconds.
    # (Each attempt counts 4 errors: AUTH, the two commands after it, the time-out.)
    check(wait_until(lambda: (metric(metrics(q), "ringsocks_redis_errors_total") or 0) >= 9, 15.0),
          "fewer than 3 failed attempts in 15 s with a wrong password")
    n = q.stderr().count("AUTH: WRONGPASS")
    check(n == 1, "the refused AUTH is in the log %d times over several reconnects, not once" % n,
          tail(q.stderr()))
    # An unreadable password file refuses the start, naming the setting.
    res = ctx.run([CONFIG.binary, "--listen", "127.0.0.1:0", "--admin", "off", "--redis",
                   "unix:" + sock, "--redis-password-file", ctx.path("nope")], timeout=20)
    err = res.stderr.decode() if isinstance(res.stderr, bytes) else res.stderr
    check(res.returncode != 0, "a missing redis_password_file did not stop the start")
    check("redis_password_file %s: No such file" % ctx.path("nope") in err,
          "the error does not name the setting and the file: %s" % err[-300:])


@case("redis_rule_limits")
def redis_rule_limits(ctx):
    """A rule's limits stay the node's own: a rule's rate for a user without a rate of its
    own is the local bucket (answered at once, never parked), and a rule's max_conns under
    the user's fleet max_conns takes the smaller."""
    echo = ctx.echo_server()
    conf = ctx.path("rules.conf")
    with open(conf, "w") as f:
        f.write('rules = ( { action = "allow"; ports = [%d]; limits = "rate=1 burst=1 '
                'max_conns=1"; },\n          { action = "allow"; } );\n' % echo.port)
    r, a, b, _ = two_nodes(ctx, "max_conns=5", extra=["-c", conf])
    rep, s = try_connect(ctx, a, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "first tunnel under the rule: 0x%02x" % rep)
    t0 = time.monotonic()
    rep, _ = try_connect(ctx, a, ALICE[0], ALICE[1], echo.port)
    took = time.monotonic() - t0
    check(rep == 2, "second tunnel (the rule's max_conns=1 and rate=1 burst=1): 0x%02x" % rep)
    check(took < 1.0, "the refusal by the rule's own limits took %.1f s: it waited on the "
          "fleet for a limit that is the node's" % took)
    s.close()
    time.sleep(1.1)  # the rule's bucket refills (1/s)
    rep, _ = try_connect(ctx, b, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "a tunnel on node b (its own rule bucket, the fleet's max_conns=5): 0x%02x"
          % rep)
