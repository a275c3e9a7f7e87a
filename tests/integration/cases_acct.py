"""
cases_acct.py - accounting and quotas (issue #12): the state file (written
atomically within state_interval, kept across kill -9, a malformed one
refusing the start), the over-quota flag and its refusal, the accounting
lines adding up to the bytes relayed, GET /users and /users/NAME, SIGUSR1
reopening the accounting log, the per-user Prometheus series and their cap.

The shards' per-user counters (bytes as they are relayed, admission and the
request checks) come with another change of issue #12: the parts that need
them check that the tree has them (need_counters(), need_request_checks())
and are skipped until then, so they run as soon as both changes are merged.
"""

import json
import os
import signal
import socket
import time

from harness import (CONFIG, Fail, Skip, admin_request, case, check, fmt_status, make_hash, metric,
                     need_option, open_proxy_socket, parse_prometheus, read_reply, recv_exact,
                     request, socks5_login, tail, wait_until, write_users)

ALICE = ("alice", "alice-pw-1")
BOB = ("bob", "bob-pw-2")
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
MAGIC = "ringsocks-state 1"


# The control thread's side (this change) names the flag too: not a sign of the shards' side.
_OURS = ("acctctl.c", "ctl_users.c")


def _src_has(token):
    """Some module of src/ other than the control thread's accounting uses token."""
    try:
        names = [n for n in os.listdir(SRC) if n.endswith(".c") and n not in _OURS]
    except OSError:
        return False
    for n in names:
        with open(os.path.join(SRC, n)) as f:
            if token in f.read():
                return True
    return False


def need_counters():
    """The shards count each user's relayed bytes (lim_bytes() as they relay)."""
    if not _src_has("lim_bytes("):
        raise Skip("the shards do not count per-user bytes yet (lim_bytes, issue #12)")


def need_request_checks():
    """New requests read uacct.over_quota."""
    if not _src_has("over_quota"):
        raise Skip("no request check reads uacct.over_quota yet (issue #12)")


def today():
    return int(time.time()) // 86400


def acct_proxy(ctx, users=None, state=None, args=(), wait_listen=True):
    """A proxy with --auth password, alice (quota 1M a day) and bob, and a state file
    (state: its text, or None for none yet). Returns (proxy, state path)."""
    need_option("--state-file", "--accounting-log", "--metrics-users")
    if users is None:
        users = ["%s:%s quota=1M/day" % (ALICE[0], make_hash(ALICE[1])),
                 "%s:%s" % (BOB[0], make_hash(BOB[1]))]
    path = write_users(ctx, users)
    spath = ctx.path("state")
    if state is not None:
        with open(spath, "w") as f:
            f.write(state)
    argv = ["--auth", "password", "--users", path, "--state-file", spath] + list(args)
    return ctx.proxy(args=argv, wait_listen=wait_listen), spath


def get_json(p, path, status=200):
    st, body, hdrs = admin_request(p, "GET", path)
    check(st == status, "GET %s: status %d, expected %d: %r" % (path, st, status, body[:300]))
    check(hdrs.get("content-type", "").startswith("application/json"),
          "GET %s: Content-Type %r, expected application/json" % (path, hdrs.get("content-type")))
    try:
        return json.loads(body)
    except ValueError as e:
        raise Fail("GET %s: not JSON (%s): %r" % (path, e, body[:300]))


def user(p, name):
    return get_json(p, "/users/" + name)


def move_bytes(ctx, p, who, echo, sizes):
    """One tunnel as who to the echo server: send and read back each size in turn.
    Returns the bytes sent (= bytes read back)."""
    s = open_proxy_socket(ctx, p)
    socks5_login(s, who[0], who[1])
    s.sendall(request("127.0.0.1", echo.port))
    r = read_reply(s)
    check(r.rep == 0, "CONNECT as %s: reply %02x" % (who[0], r.rep))
    total = 0
    for n in sizes:
        s.sendall(b"x" * n)
        recv_exact(s, n, "echo of %d bytes" % n)
        total += n
    s.shutdown(socket.SHUT_WR)
    check(s.recv(1) == b"", "the echo sent more than it got")
    s.close()
    return total


def read_state(spath):
    with open(spath) as f:
        text = f.read()
    lines = text.split("\n")
    check(lines[0] == MAGIC and text.endswith("\n"), "state file is not whole: %r" % text[:300])
    out = {}
    for l in lines[1:]:
        if l and not l.startswith("#"):
            w = l.split(" ")
            check(len(w) == 5, "state line %r: not 5 words" % l)
            out[w[0]] = (w[1], int(w[2]), int(w[3]), int(w[4]))
    return out


@case("acct_state_file_atomic")
def acct_state_file_atomic(ctx):
    """Written at start, then every state_interval by rename (a new inode each time, never
    a partial file, no temp file left), and at exit."""
    p, spath = acct_proxy(ctx, args=["--state-interval", "1"])
    st = read_state(spath)
    check(st.get("alice") == ("day", today(), 0, 0), "state at start: %r" % st)
    check("bob" not in st, "bob (no quota, not blocked) is in the state file: %r" % st)
    ino = os.stat(spath).st_ino
    seen = {ino}
    deadline = time.monotonic() + 3.5
    reads = 0
    while time.monotonic() < deadline:
        # Each read must find a whole file: the old one or the new one, never a mix.
        try:
            with open(spath) as f:
                text = f.read()
                seen.add(os.fstat(f.fileno()).st_ino)
        except FileNotFoundError:
            raise Fail("the state file was missing for a moment: not replaced by rename")
        check(text.startswith(MAGIC + "\n") and text.endswith("\n") and "\nalice day " in text,
              "a read found a partial state file: %r" % text[:200])
        reads += 1
        time.sleep(0.005)
    check(len(seen) >= 3, "the state file was replaced %d times in 3.5 s with state_interval 1"
          % (len(seen) - 1))
    check(not os.path.exists(spath + ".tmp"), "a temp file is left beside the state file")
    check(os.stat(spath).st_mode & 0o777 == 0o600,
          "state file mode %o, expected 600" % (os.stat(spath).st_mode & 0o777))
    before = os.stat(spath).st_ino
    p.stop()
    check(p.rc == 0, "proxy exit %s" % fmt_status(p.rc))
    check(os.stat(spath).st_ino != before, "not written at exit")
    read_state(spath)


@case("acct_kill9_keeps_quota")
def acct_kill9_keeps_quota(ctx):
    """kill -9 and restart within state_interval: the quota used (and a block) survive; a
    period that ended while the file waited starts at 0."""
    users = ["%s:%s quota=1M/day" % (ALICE[0], make_hash(ALICE[1])),
             "%s:%s quota=1M/day" % (BOB[0], make_hash(BOB[1]))]
    state = "%s\nalice day %d 12345 0\nbob day %d 999 0\ncarol none 0 0 1\n" % (
        MAGIC, today(), today() - 1)
    p, spath = acct_proxy(ctx, users=users, state=state, args=["--state-interval", "1"])
    a = user(p, "alice")
    check(a["quota"] and a["quota"]["used"] == 12345, "alice after start: %r" % a)
    b = user(p, "bob")
    check(b["quota"]["used"] == 0, "bob's period ended before the start, used: %r" % b)
    c = user(p, "carol")
    check(c["blocked"] is True and c["in_users"] is False, "carol (state file only): %r" % c)
    echo = ctx.echo_server()
    move_bytes(ctx, p, ALICE, echo, [3000, 2000])
    a = user(p, "alice")
    counted = a["bytes_up"] + a["bytes_down"]
    want = 12345 + counted
    check(a["quota"]["used"] == want, "alice used %r, expected %d" % (a["quota"], want))
    # A save happens within state_interval (1 s) after the bytes were counted.
    time.sleep(1.6)
    p.exit_expected = True
    p.proc.kill()
    p.proc.wait(10)
    p.stop()
    check(not os.path.exists(spath + ".tmp"), "a temp file is left after kill -9")
    st = read_state(spath)
    check(st["alice"][2] == want, "state after kill -9: alice %r, expected used %d" % (st["alice"], want))
    p2, _ = acct_proxy(ctx, users=users, args=["--state-interval", "1"])
    a = user(p2, "alice")
    check(a["quota"]["used"] == want, "alice after the restart: %r, expected used %d" % (a, want))
    check(user(p2, "carol")["blocked"] is True, "carol's block did not survive kill -9")
    try:
        need_counters()
    except Skip:
        return
    check(counted == 10000, "alice moved 5000 bytes each way, /users counted %d" % counted)


@case("acct_state_malformed_refuses_start")
def acct_state_malformed_refuses_start(ctx):
    bad = "%s\nalice day %d 12345 0\nbob day x 1 0\n" % (MAGIC, today())
    p, spath = acct_proxy(ctx, state=bad, wait_listen=False)
    p.exit_expected = True
    try:
        rc = p.proc.wait(15)
    except Exception:
        rc = None
    err = p.stderr()
    check(rc is not None and rc > 0, "a malformed state file: %s, expected a non-zero exit: %r"
          % (fmt_status(rc) if rc is not None else "still running", tail(err, 5)))
    check("%s:3:" % spath in err, "the error does not name %s:3: %r" % (spath, tail(err, 5)))
    check("listening on" not in err, "it listened with a malformed state file")
    with open(spath) as f:
        check(f.read() == bad, "the malformed state file was rewritten (a quota reset)")
    p.stop()


@case("acct_over_quota_refused")
def acct_over_quota_refused(ctx):
    """A user at its quota is flagged over within a control-loop turn; its new requests get
    0x02 (the request check), another user's do not."""
    users = ["%s:%s quota=10k/day" % (ALICE[0], make_hash(ALICE[1])),
             "%s:%s" % (BOB[0], make_hash(BOB[1]))]
    p, _ = acct_proxy(ctx, users=users, state="%s\nalice day %d 10000 0\n" % (MAGIC, today()))
    q = wait_until(lambda: user(p, "alice")["quota"]["over"], timeout=2)
    check(q, "alice at 10000 of a 10k quota is not over: %r" % user(p, "alice"))
    check(user(p, "bob")["quota"] is None, "bob has a quota: %r" % user(p, "bob"))
    need_request_checks()
    echo = ctx.echo_server()
    s = open_proxy_socket(ctx, p)
    socks5_login(s, ALICE[0], ALICE[1])
    s.sendall(request("127.0.0.1", echo.port))
    r = read_reply(s)
    check(r.rep == 0x02, "alice over quota: CONNECT reply %02x, expected 02" % r.rep)
    move_bytes(ctx, p, BOB, echo, [100])
    check(user(p, "alice")["hits"]["quota"] >= 1, "the refusal is not counted as a quota hit")


@case("acct_quota_close")
def acct_quota_close(ctx):
    """With quota_close, going over the quota closes the user's open tunnels (end=quota, the
    client sees the connection end) and not another user's; without it they stay open."""
    users = ["%s:%s quota=100k/day quota_close=yes" % (ALICE[0], make_hash(ALICE[1])),
             "%s:%s quota=100k/day" % (BOB[0], make_hash(BOB[1]))]
    log = ctx.path("access.log")
    p, _ = acct_proxy(ctx, users=users, args=["--access-log", log])
    echo = ctx.echo_server()
    held = {}
    for who in (ALICE, BOB):
        s = open_proxy_socket(ctx, p)
        socks5_login(s, who[0], who[1])
        s.sendall(request("127.0.0.1", echo.port))
        check(read_reply(s).rep == 0, "CONNECT as %s" % who[0])
        held[who[0]] = s
    # Both go over: 60 KB each way is 120 KB counted against 100 KB.
    for name, s in held.items():
        s.sendall(b"q" * 60000)
        recv_exact(s, 60000, "%s's echo" % name)
    check(wait_until(lambda: user(p, "alice")["quota"]["over"] and user(p, "bob")["quota"]["over"],
                     timeout=3), "alice and bob not flagged over their quota")
    a = held["alice"]
    a.settimeout(3)
    try:
        gone = a.recv(1) == b""
    except ConnectionResetError:
        gone = True
    except socket.timeout:
        gone = False
    check(gone, "alice's tunnel (quota_close=yes) still open after she went over her quota")
    b = held["bob"]
    b.sendall(b"still")
    recv_exact(b, 5, "bob's echo after going over (no quota_close: the tunnel stays)")
    b.close()
    def ends():
        with open(log) as f:
            return [l for l in f if "user=alice" in l and "end=quota" in l]
    check(wait_until(lambda: ends(), timeout=3), "no access-log line with user=alice end=quota")


def acct_lines(path, name=None):
    out = []
    try:
        with open(path) as f:
            for l in f:
                try:
                    j = json.loads(l)
                except ValueError:
                    raise Fail("accounting line is not JSON: %r" % l)
                if name is None or j.get("user") == name:
                    out.append(j)
    except FileNotFoundError:
        pass
    return out


@case("acct_lines_add_up", timeout=90)
def acct_lines_add_up(ctx):
    """The accounting lines of a run add up exactly to the bytes relayed, a long tunnel is
    counted while it runs, and the last lines are written at exit."""
    need_counters()
    log = ctx.path("acct.log")
    p, _ = acct_proxy(ctx, args=["--accounting-log", log, "--accounting-interval", "1"])
    echo = ctx.echo_server()
    # A long tunnel: its bytes appear in the lines while it is still open.
    s = open_proxy_socket(ctx, p)
    socks5_login(s, ALICE[0], ALICE[1])
    s.sendall(request("127.0.0.1", echo.port))
    check(read_reply(s).rep == 0, "CONNECT as alice")
    s.sendall(b"y" * 7777)
    recv_exact(s, 7777)
    got = wait_until(lambda: [j for j in acct_lines(log, "alice") if j["bytes_up"] > 0], timeout=4)
    check(got, "no accounting line for alice's open tunnel within 4 s")
    check(got[0]["tunnels_open"] == 1 and got[0]["bytes_up"] == 7777,
          "the open tunnel's line: %r" % got[0])
    s.sendall(b"z" * 1000)
    recv_exact(s, 1000)
    s.close()
    up = down = 8777
    up += move_bytes(ctx, p, ALICE, echo, [1, 65536, 300000])
    down = up
    # socksload, several tunnels both ways, as bob.
    sl = os.path.join(os.path.dirname(CONFIG.binary), "socksload")
    if os.access(sl, os.X_OK):
        r = ctx.run([sl, "throughput", "--proxy", "socks5://%s:%s@127.0.0.1:%d" % (BOB[0], BOB[1], p.port),
                     "--tunnels", "4", "--direction", "both", "--count", "8M", "--json"], timeout=60)
        check(r.returncode == 0, "socksload: exit %d: %s" % (r.returncode, r.stderr[-300:]))
        moved = json.loads(r.stdout)
    else:
        moved = None
    wait_until(lambda: user(p, "bob")["open"] == 0 and user(p, "alice")["open"] == 0, timeout=5)
    m = parse_prometheus(admin_request(p, "GET", "/metrics")[1])
    total_up = metric(m, "ringsocks_relay_bytes_total", direction="up")
    total_down = metric(m, "ringsocks_relay_bytes_total", direction="down")
    p.stop()
    check(p.rc == 0, "proxy exit %s" % fmt_status(p.rc))
    lines = acct_lines(log)
    a = acct_lines(log, "alice")
    b = acct_lines(log, "bob")
    check(sum(j["bytes_up"] for j in a) == up and sum(j["bytes_down"] for j in a) == down,
          "alice's lines sum to up %d down %d, the client moved %d each way"
          % (sum(j["bytes_up"] for j in a), sum(j["bytes_down"] for j in a), up))
    check(sum(j["tunnels_opened"] for j in a) == 2, "alice's lines count %d tunnels, not 2"
          % sum(j["tunnels_opened"] for j in a))
    check(sum(j["bytes_up"] for j in lines) == total_up and
          sum(j["bytes_down"] for j in lines) == total_down,
          "all lines sum to up %d down %d, ringsocks_relay_bytes_total says %s and %s"
          % (sum(j["bytes_up"] for j in lines), sum(j["bytes_down"] for j in lines), total_up,
             total_down))
    if moved is not None:
        bu, bd = sum(j["bytes_up"] for j in b), sum(j["bytes_down"] for j in b)
        # socksload counts the payload it sent up (some may still be in flight when it closes)
        # and received down: the proxy relayed at most the one, plus the target protocol's
        # few header bytes per tunnel, and at least the other.
        check(0 < bu <= moved["bytes_up"] + 256 * moved["tunnels"] and bd >= moved["bytes_down"],
              "bob's lines (up %d, down %d) against socksload's sent up and received down (%r)"
              % (bu, bd, moved))
    for j in lines:
        for k in ("time", "interval_s", "user", "bytes_up", "bytes_down", "tunnels_opened",
                  "tunnels_open", "limit_hits", "quota_used"):
            check(k in j, "accounting line lacks %s: %r" % (k, j))
        check(j["time"].endswith("Z") and "T" in j["time"], "time is not RFC 3339 UTC: %r" % j)
    check(all(j["quota_used"] is None for j in b) and all(j["quota_used"] is not None for j in a),
          "quota_used: alice has a quota, bob none")


@case("acct_users_api")
def acct_users_api(ctx):
    state = "%s\ncarol none 0 0 1\nx%%20y none 0 0 1\n" % MAGIC
    users = ["%s:%s quota=1M/day quota_close=yes max_conns=5" % (ALICE[0], make_hash(ALICE[1])),
             "%s:%s" % (BOB[0], make_hash(BOB[1]))]
    p, _ = acct_proxy(ctx, users=users, state=state, args=["--user-limits", "rate=100"])
    all_users = get_json(p, "/users")["users"]
    names = sorted(u["user"] for u in all_users)
    check(names == sorted(["alice", "bob", "carol", "x y"]), "GET /users names: %r" % names)
    a = user(p, "alice")
    for k, v in (("user", "alice"), ("in_users", True), ("blocked", False), ("open", 0),
                 ("opened", 0)):
        check(a.get(k) == v, "alice's %s: %r, expected %r (%r)" % (k, a.get(k), v, a))
    check(set(a["hits"]) == {"max_conns", "rate", "quota", "blocked", "bandwidth"},
          "hits: %r" % a["hits"])
    for w in ("max_conns=5", "rate=100", "quota=1000000/day", "quota_close=yes"):
        check(w in a["limits"], "alice's effective limits %r lack %s" % (a["limits"], w))
    check(a["quota"] == {"bytes": 1000000, "period": "day", "used": 0, "over": False},
          "alice's quota: %r" % a["quota"])
    b = user(p, "bob")
    check(b["quota"] is None and b["limits"] == "rate=100", "bob: %r" % b)
    xy = user(p, "x%20y")
    check(xy["user"] == "x y" and xy["in_users"] is False and xy["blocked"] is True, "x y: %r" % xy)
    e = get_json(p, "/users/nobody", 404)
    check("error" in e, "404 body: %r" % e)
    get_json(p, "/users/a%zz", 400)
    get_json(p, "/users/a%00b", 400)
    for path in ("/users", "/users/alice"):
        st, body, hdrs = admin_request(p, "POST", path)
        check(st == 405 and hdrs.get("allow") == "GET", "POST %s: %d, Allow %r" % (path, st, hdrs.get("allow")))


@case("acct_sigusr1_reopens")
def acct_sigusr1_reopens(ctx):
    log = ctx.path("acct.log")
    p, _ = acct_proxy(ctx, args=["--accounting-log", log, "--accounting-interval", "1"])
    check(os.path.exists(log), "the accounting log is not created at start")
    os.rename(log, log + ".1")
    p.proc.send_signal(signal.SIGUSR1)
    check(wait_until(lambda: os.path.exists(log), timeout=3), "SIGUSR1 did not reopen the log")
    check(wait_until(lambda: "accounting_log %s reopened" % log in p.stderr(), timeout=3),
          "SIGUSR1: nothing said on stderr: %r" % tail(p.stderr(), 5))
    need_counters()
    echo = ctx.echo_server()
    move_bytes(ctx, p, ALICE, echo, [4321])
    check(wait_until(lambda: acct_lines(log, "alice"), timeout=4),
          "no line for alice in the reopened log")
    check(not acct_lines(log + ".1", "alice"), "a line went to the renamed log after SIGUSR1")


@case("acct_metrics_users")
def acct_metrics_users(ctx):
    users = ["%s:%s" % (n, make_hash(pw)) for n, pw in (ALICE, BOB, ("carol", "c-pw"))]
    p0, _ = acct_proxy(ctx, users=users)
    m = admin_request(p0, "GET", "/metrics")[1]
    check("ringsocks_user_" not in m, "per-user series without metrics_users")
    p0.stop()
    p, _ = acct_proxy(ctx, users=users, args=["--metrics-users", "1"])
    m = parse_prometheus(admin_request(p, "GET", "/metrics")[1])
    check(metric(m, "ringsocks_user_bytes_total", user="other", direction="up") == 0,
          "no user=\"other\" series: %r" % [k for k in m if k[0].startswith("ringsocks_user")][:5])
    need_counters()
    echo = ctx.echo_server()
    move_bytes(ctx, p, ALICE, echo, [1000])
    m = parse_prometheus(admin_request(p, "GET", "/metrics")[1])
    check(metric(m, "ringsocks_user_bytes_total", user="alice", direction="up") == 1000,
          "alice (the first active user) has no series of her own")
    move_bytes(ctx, p, BOB, echo, [50])
    m = parse_prometheus(admin_request(p, "GET", "/metrics")[1])
    check(metric(m, "ringsocks_user_bytes_total", user="bob", direction="up") is None,
          "bob got a label past metrics_users 1")
    check(metric(m, "ringsocks_user_bytes_total", user="other", direction="up") == 50,
          "user=\"other\" is not the sum of the users without a label")
    check(metric(m, "ringsocks_user_tunnels_opened_total", user="alice") == 1,
          "alice's tunnels_opened_total")
