"""
cases_upgrade.py - the zero-downtime binary upgrade: SIGUSR2 and POST /upgrade
start the binary again with the listening sockets handed over (SCM_RIGHTS);
the new process says it serves, the old one stops accepting without shutting
the shared sockets down and drains. A new process that fails leaves the old
one serving, with the reason in the log. systemd hears READY=1 at start and
MAINPID=<new> on an upgrade.

The new process is the old one's child, not the harness's: each test stops the
processes it upgraded to by PID (SIGTERM, then SIGKILL) before the harness
stops the first one and scans the shared stderr for sanitizer reports.
"""

import os
import re
import signal
import socket
import stat
import time
import types

from cases_control import Handshaker
from cases_ctl import ctl
from harness import (CONFIG, Fail, admin_addr, admin_request, case, check, echo_roundtrip,
                     need_option, parse_prometheus, metric, socks_connect, tail, wait_until)

READY_RE = re.compile(r"ringsocks: upgrade: new process (\d+) is ready; this process \((\d+)\)")
STARTED_RE = re.compile(r"ringsocks: upgrade started: new process (\d+)")
FAILED_RE = re.compile(r"ringsocks: upgrade failed: (.*); this process \((\d+)\) keeps serving")
TOKEN = "upgrade-token-0123456789abcdef"


def need_upgrade():
    need_option("--upgrade-timeout", "--upgrade-binary", "--admin-token-file")


def pid_running(pid):
    """Alive and not a zombie (an orphan's zombie is init's to reap)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return st[st.rfind(")") + 2] != "Z"


def stop_pid(pid, wait=15.0):
    """Stop a process that is not our child: SIGTERM, wait, SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_until(lambda: not pid_running(pid), wait):
            return


def adopt(ctx, pid):
    """A process the upgrade started: stopped by PID at the end of the test."""
    ctx.defer(lambda: stop_pid(pid))


def upgrades(p):
    """[(new pid, old pid)] of every hand-over in the shared stderr, in order."""
    return [(int(a), int(b)) for a, b in READY_RE.findall(p.stderr())]


def upgrade_once(ctx, p, pid, trigger=None, timeout=15.0):
    """Signal pid (SIGUSR2, or trigger()), wait for its hand-over; returns the new pid."""
    before = len(upgrades(p))
    failed = len(FAILED_RE.findall(p.stderr()))
    (trigger or (lambda: os.kill(pid, signal.SIGUSR2)))()
    if not wait_until(lambda: len(upgrades(p)) > before or len(FAILED_RE.findall(p.stderr())) > failed,
                      timeout):
        raise Fail("no upgrade hand-over within %.0f s" % timeout, tail(p.stderr()))
    got = upgrades(p)
    check(len(got) > before, "the upgrade failed", tail(p.stderr()))
    new, old = got[before]
    check(old == pid, "process %d handed over, expected %d" % (old, pid))
    adopt(ctx, new)
    return new


def serving_pid(admin):
    st, body, _ = admin_request(admin, "GET", "/metrics")
    check(st == 200, "GET /metrics answered %d" % st)
    return int(metric(parse_prometheus(body), "ringsocks_process_pid") or 0)


def wait_gone(pid, timeout, what):
    check(wait_until(lambda: not pid_running(pid), timeout), "%s (pid %d) still runs after %.0f s"
          % (what, pid, timeout))


def handshakes_done(hs):
    """Stop the handshake loop; every handshake across the upgrades must have worked."""
    hs.finish()
    check(not hs.failures, "%d of %d handshakes failed across the upgrades"
          % (len(hs.failures), len(hs.failures) + hs.ok), "\n".join(hs.failures[:10]))
    check(hs.ok > 0, "no handshake completed")


@case("upgrade_under_load", timeout=120)
def upgrade_under_load(ctx):
    """Three SIGUSR2 upgrades in a row under a handshake loop: no handshake fails, a
    tunnel opened before keeps relaying after the hand-over until it closes, every old
    process exits 0 after its drain, the admin endpoint answers from the newest pid."""
    need_upgrade()
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--drain-timeout", "4", "--access-log", "off"])
    admin = admin_addr(p)
    p.exit_expected = True
    tunnel, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(tunnel, 1024)
    churn = Handshaker(ctx, p, echo.port, interval=0)
    check(wait_until(lambda: churn.ok > 20, 10), "the handshake loop does not get going",
          "\n".join(churn.failures[:5]))
    pid = p.proc.pid
    pids = [pid]
    for k in range(3):
        pid = upgrade_once(ctx, p, pid)
        pids.append(pid)
        if k == 0:
            # The tunnel is the first process's: it relays through its drain.
            for _ in range(3):
                echo_roundtrip(tunnel, 2048)
                time.sleep(0.2)
            tunnel.close()
        ok_before = churn.ok
        check(wait_until(lambda: churn.ok > ok_before + 20, 10),
              "handshakes stalled after upgrade %d" % (k + 1), "\n".join(churn.failures[:5]))
    handshakes_done(churn)
    rc = p.proc.wait(15)
    check(rc == 0, "the first process exited with %s after its drain" % rc)
    for old in pids[1:-1]:
        wait_gone(old, 15, "an upgraded-from process")
    check(pid_running(pids[-1]), "the newest process %d is not running" % pids[-1], tail(p.stderr()))
    check(serving_pid(admin) == pids[-1], "the admin endpoint does not answer from pid %d"
          % pids[-1])
    check(len(re.findall(r"draining: no new connections", p.stderr())) == 3,
          "expected 3 drains in the log", tail(p.stderr()))
    # Ready only once every shard runs: the new process's summary line (written after its
    # shards started, to the stderr both share) comes before the old one hears "ready".
    for new in pids[1:]:
        text = p.stderr()
        a = text.find("upgrade started: new process %d " % new)
        b = text.find("new process %d is ready" % new)
        check(0 <= a < b and re.search(r"ringsocks \S+: \d+ shards", text[a:b]),
              "process %d said ready before its shards ran" % new, text[a:b])
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s, 512)


def write_conf(ctx, text, name="ringsocks.conf"):
    path = ctx.path(name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)
    return path


def script(ctx, name, body):
    path = ctx.path(name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


@case("upgrade_failed", timeout=90)
def upgrade_failed(ctx):
    """A new binary that fails leaves the old one serving with the reason logged:
    a configuration that does not load (its FILE:LINE is in the log, from the new
    process), a binary that exits 1, and one that never confirms (killed and reaped
    after upgrade_timeout). A later upgrade with the fault mended succeeds."""
    need_upgrade()
    echo = ctx.echo_server()
    good = 'upgrade_timeout = 2;\nrules = ({ action = "allow"; from = ["127.0.0.0/8"]; });\n'
    conf = write_conf(ctx, good)
    p = ctx.proxy(args=["-c", conf])
    p.exit_expected = True
    pid = p.proc.pid

    def failures():
        return FAILED_RE.findall(p.stderr())

    def still_serves(what):
        check(p.alive(), "the old process died after %s" % what, tail(p.stderr()))
        s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
        echo_roundtrip(s, 256)
        s.close()

    # 1. The configuration does not load in the new process.
    write_conf(ctx, good + "this is not a setting\n")
    os.kill(pid, signal.SIGUSR2)
    check(wait_until(lambda: len(failures()) == 1, 15), "no 'upgrade failed' line", tail(p.stderr()))
    why = failures()[0][0]
    check("exited with status 2" in why, "reason %r does not give the exit status" % why)
    check(re.search(re.escape(conf) + r":\d+", p.stderr()), "the new process's FILE:LINE error "
          "is not in the log", tail(p.stderr()))
    child = int(STARTED_RE.findall(p.stderr())[0])
    check(not os.path.exists("/proc/%d" % child), "the failed new process %d was not reaped" % child)
    still_serves("a configuration that does not load")

    def fail_with(n, name, body, reason):
        """Upgrade to the script name (body), which must fail the n-th time for reason."""
        write_conf(ctx, good + 'upgrade_binary = "%s";\n' % script(ctx, name, body))
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.3)
        os.kill(pid, signal.SIGUSR2)
        check(wait_until(lambda: len(failures()) == n, 15), "no 'upgrade failed' line %d" % n,
              tail(p.stderr()))
        check(reason in failures()[n - 1][0], "reason %r, expected %r" % (failures()[n - 1][0], reason))
        child = int(STARTED_RE.findall(p.stderr())[n - 1])
        check(not os.path.exists("/proc/%d" % child), "the failed new process %d still exists "
              "(not killed, or not reaped)" % child)
        still_serves(name)

    # -t says so before anyone tries.
    bad = write_conf(ctx, good + 'upgrade_binary = "%s";\n' % ctx.path("missing"), "bad.conf")
    r = ctx.run([CONFIG.binary, "-t", "-c", bad])
    err = r.stderr.decode()
    check(r.returncode == 1 and re.search(re.escape(bad) + r":3: upgrade_binary: .*cannot execute",
                                          err), "-t on a missing upgrade_binary: exit %d, %r"
          % (r.returncode, err))

    # 2. A binary that exits 1 at once.
    fail_with(2, "exit1.sh", "exit 1", "exited with status 1")
    # 3. A binary that never confirms: killed by PID after upgrade_timeout and reaped.
    fail_with(3, "hang.sh", "exec sleep 60", "did not confirm within 2 s")
    st, body, _ = admin_request(p, "GET", "/metrics")
    check(metric(parse_prometheus(body), "ringsocks_upgrades_total", result="failed") == 3,
          "ringsocks_upgrades_total{result=failed} is not 3")

    # 4. Mended: the upgrade goes through.
    write_conf(ctx, good)
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)
    new = upgrade_once(ctx, p, pid)
    check(p.proc.wait(15) == 0, "the old process did not exit 0 after its drain")
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s, 256)
    check(pid_running(new), "the new process is gone")


@case("upgrade_post", timeout=90)
def upgrade_post(ctx):
    """POST /upgrade: 401 without the admin token, 202 with the new pid with it, 409
    while one is in progress; GET is 405. Over the admin socket too, which the new
    process keeps serving on (the old one leaves the file)."""
    need_upgrade()
    tok = ctx.path("admin.token")
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    sock_path = ctx.path("admin.sock")
    hang = script(ctx, "hang.sh", "exec sleep 60")
    conf = write_conf(ctx, 'upgrade_timeout = 3;\nupgrade_binary = "%s";\nadmin_token_file = "%s";\n'
                      'admin_socket = "%s";\n' % (hang, tok, sock_path))
    p = ctx.proxy(args=["-c", conf])
    p.exit_expected = True
    auth = {"Authorization": "Bearer " + TOKEN}
    st, body, _ = admin_request(p, "POST", "/upgrade")
    check(st == 401, "POST /upgrade without the token answered %d" % st)
    check(not STARTED_RE.search(p.stderr()), "an upgrade started without the token")
    st, body, hdrs = admin_request(p, "GET", "/upgrade", headers=auth)
    check(st == 405, "GET /upgrade answered %d, expected 405" % st)
    st, body, _ = admin_request(p, "POST", "/upgrade", headers=auth)
    check(st == 202 and '"pid":' in body, "POST /upgrade answered %d %r, expected 202" % (st, body))
    st, body, _ = admin_request(p, "POST", "/upgrade", headers=auth)
    check(st == 409, "a second POST /upgrade during the first answered %d %r" % (st, body))
    check(wait_until(lambda: FAILED_RE.search(p.stderr()), 10), "the hanging upgrade did not fail")
    # Mended: the binary itself, over the Unix socket.
    write_conf(ctx, 'upgrade_timeout = 10;\nadmin_token_file = "%s";\nadmin_socket = "%s";\n'
               % (tok, sock_path))
    os.kill(p.proc.pid, signal.SIGHUP)
    time.sleep(0.3)

    def post_unix():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(b"POST /upgrade HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                  + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n")
        data = s.recv(4096)
        s.close()
        check(data.startswith(b"HTTP/1.1 202"), "POST /upgrade over the socket: %r" % data[:200])

    new = upgrade_once(ctx, p, p.proc.pid, trigger=post_unix)
    check(p.proc.wait(15) == 0, "the old process did not exit 0")
    # ringsocksctl upgrade, from the configuration's admin socket and token.
    got = []

    def ctl_upgrade():
        rc, out, err = ctl(ctx, ["-c", conf, "upgrade"])
        got.append((rc, out, err))
    newer = upgrade_once(ctx, p, new, trigger=ctl_upgrade)
    check(got[0][0] == 0 and '"pid":%d' % newer in got[0][1], "ringsocksctl upgrade: exit %d, out %r"
          % (got[0][0], got[0][1]), got[0][2])
    wait_gone(new, 15, "the process ringsocksctl upgraded from")
    new = newer
    check(os.path.exists(sock_path), "the old process removed the admin socket the new one serves on")
    st, body, _ = admin_request(p, "GET", "/metrics", headers=auth)
    check(st == 200 and int(metric(parse_prometheus(body), "ringsocks_process_pid")) == new,
          "the TCP admin endpoint does not answer from the new process")
    stop_pid(new)
    check(not os.path.exists(sock_path), "the new process did not remove its admin socket at exit")


@case("upgrade_notify", timeout=60)
def upgrade_notify(ctx):
    """NOTIFY_SOCKET: READY=1 with MAINPID at start, RELOADING=1 then READY=1 around a
    SIGHUP, MAINPID=<new> when an upgrade hands over (before the old one drains); the
    pid_file names the new process, and the old one leaves it in place."""
    need_upgrade()
    path = ctx.path("notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    ns.settimeout(10)
    ctx.defer(ns.close)
    pidf = ctx.path("ringsocks.pid")
    p = ctx.proxy(args=["--pid-file", pidf], wrap=["env", "NOTIFY_SOCKET=" + path])
    p.exit_expected = True
    pid = p.proc.pid

    def recv():
        try:
            return ns.recv(4096).decode()
        except socket.timeout:
            raise Fail("no notify datagram within 10 s", tail(p.stderr()))

    msg = recv()
    check("READY=1" in msg and "MAINPID=%d" % pid in msg, "the first datagram is %r" % msg)
    os.kill(pid, signal.SIGHUP)
    check(recv() == "RELOADING=1", "no RELOADING=1 on SIGHUP")
    check(recv() == "READY=1", "no READY=1 after the reload")
    st, _, _ = admin_request(p, "POST", "/reload")
    check(st == 200, "POST /reload answered %d" % st)
    check(recv() == "RELOADING=1", "no RELOADING=1 on POST /reload")
    check(recv() == "READY=1", "no READY=1 after POST /reload")
    new = upgrade_once(ctx, p, pid)
    msg = recv()
    check(msg == "MAINPID=%d" % new, "after the upgrade: %r, expected MAINPID=%d" % (msg, new))
    check(p.proc.wait(15) == 0, "the old process did not exit 0")
    check(os.path.exists(pidf), "the old process removed the pid_file at its exit")
    with open(pidf) as f:
        check(f.read().strip() == str(new), "the pid_file does not name the new process")


def seccomp_status(pid):
    """(Seccomp mode, Seccomp_filters) of pid's main thread, from /proc/PID/status."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields.get("Seccomp"), fields.get("Seccomp_filters")


@case("upgrade_group_only_under_seccomp", timeout=60)
def upgrade_group_only_under_seccomp(ctx):
    """Root with --group nogroup and no --user, under the seccomp filter (the default): an
    upgrade's new process starts under the old one's filter, where setgroups()/setgid()/
    setuid() are not allowed, so it must see that its identity is already the one asked
    for and not call them (it died of SIGSYS before serving). It does not stack a second
    copy of the filter either: Seccomp_filters stays 1 across two upgrades."""
    need_upgrade()
    if os.geteuid() != 0:
        from harness import Skip
        raise Skip("needs root (the test runs as uid %d)" % os.geteuid())
    echo = ctx.echo_server()
    p = ctx.proxy(args=["--group", "nogroup"])
    p.exit_expected = True
    pid = p.proc.pid
    mode, n = seccomp_status(pid)
    check(mode == "2" and n == "1", "the first process: Seccomp %s, %s filters" % (mode, n))
    for _ in range(2):
        new = upgrade_once(ctx, p, pid)
        check(wait_until(lambda: serving_pid(p) == new, 10.0),
              "the new process %d does not serve" % new, tail(p.stderr()))
        s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
        echo_roundtrip(s, 1000)
        s.close()
        mode, n = seccomp_status(new)
        check(mode == "2" and n == "1", "after the upgrade: Seccomp %s with %s filters (one "
              "expected: the parent's, not a copy stacked on it)" % (mode, n))
        wait_gone(pid, 20, "the old process")
        pid = new


@case("upgrade_quota", timeout=60)
def upgrade_quota(ctx):
    """The quota bytes a user moves through the old process's tunnel during its drain reach
    the new process's count (and its state file) when the old one exits; the old process
    never writes the state file after the hand-over."""
    need_upgrade()
    from cases_acct import ALICE, acct_proxy, read_state, user
    from harness import recv_exact, socks5_command
    p, spath = acct_proxy(ctx, args=["--state-interval", "1", "--drain-timeout", "20"])
    p.exit_expected = True
    echo = ctx.echo_server()
    s, _ = socks5_command(ctx, p, 1, "127.0.0.1", echo.port, auth=ALICE)
    s.sendall(b"x" * 3000)
    recv_exact(s, 3000, "echo before the upgrade")
    check(wait_until(lambda: user(p, "alice")["quota"]["used"] == 6000, 5),
          "alice's 6000 bytes are not counted: %r" % user(p, "alice"))
    new = upgrade_once(ctx, p, p.proc.pid)
    check(user(p, "alice")["quota"]["used"] == 6000, "the new process does not start from the "
          "old one's count: %r" % user(p, "alice")["quota"])
    # Through the old process's tunnel, during its drain: 2 x 20000 more.
    s.sendall(b"y" * 20000)
    recv_exact(s, 20000, "echo during the drain")
    # Over two state_intervals the new process writes 6000; the old one (46000) must not.
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        st = read_state(spath)
        check(st["alice"][2] == 6000, "the state file says %r while the old process drains: "
              "written by the old one" % (st["alice"],))
        time.sleep(0.02)
    s.close()
    check(p.proc.wait(15) == 0, "the old process did not exit 0 after its drain")
    want = 6000 + 40000
    check(wait_until(lambda: user(p, "alice")["quota"]["used"] == want, 5),
          "alice in the new process: %r, expected used %d" % (user(p, "alice")["quota"], want),
          tail(p.stderr()))
    check(wait_until(lambda: read_state(spath)["alice"][2] == want, 5),
          "the state file says %r, expected %d" % (read_state(spath).get("alice"), want))
    check(pid_running(new), "the new process is gone")


@case("upgrade_config_change", timeout=60)
def upgrade_config_change(ctx):
    """An upgrade whose configuration changed: a listen address it keeps is handed over, one
    it adds is bound, one it drops is closed (refused once the old process is gone); another
    shard count keeps the running one, and says so."""
    need_upgrade()
    from harness import free_port
    echo = ctx.echo_server()
    keep, drop, add = free_port(), free_port(), free_port()
    text = ('shards = %d;\nadmin = "127.0.0.1:0";\ndrain_timeout = 3;\naccess_log = "off";\n'
            'listen = [%s];\nrules = ({ action = "allow"; from = ["127.0.0.0/8"]; });\n'
            'admin_socket = "%s";\n')
    sock_a, sock_b = ctx.path("a.sock"), ctx.path("b.sock")
    conf = write_conf(ctx, text % (2, '"127.0.0.1:%d", "127.0.0.1:%d"' % (keep, drop), sock_a))
    p = ctx.proxy(listen=["a", "b"], args=["-c", conf], own_args=False)
    p.exit_expected = True
    write_conf(ctx, text % (3, '"127.0.0.1:%d", "127.0.0.1:%d"' % (keep, add), sock_b))
    new = upgrade_once(ctx, p, p.proc.pid)
    check("shards = 3 needs a restart: keeping the running 2" in p.stderr(),
          "no line about the shard count kept", tail(p.stderr()))
    check(re.search(r"upgrade: 127\.0\.0\.1:%d is new: bound here" % add, p.stderr()),
          "no line about the new address", tail(p.stderr()))
    # 2 shards x 2 addresses and the 2 admin sockets were handed over; the dropped address's
    # 2 and the old admin_socket go.
    check("upgrade: 3 handed-over sockets the configuration no longer names closed" in p.stderr(),
          "no line about the dropped address and admin socket", tail(p.stderr()))
    check(p.proc.wait(15) == 0, "the old process did not exit 0")
    check(os.path.exists(sock_b), "the new admin_socket %s is missing" % sock_b)
    check(not os.path.exists(sock_a), "the old admin_socket %s, which nobody serves on, is left"
          % sock_a)
    for port in (keep, add):
        s, _ = socks_connect(ctx, types.SimpleNamespace(addr=("127.0.0.1", port)), "127.0.0.1",
                             echo.port)
        echo_roundtrip(s, 256)
        s.close()
    try:
        socket.create_connection(("127.0.0.1", drop), timeout=2).close()
        raise Fail("port %d, dropped by the new configuration, still accepts" % drop)
    except ConnectionRefusedError:
        pass
    st, body, _ = admin_request(admin_addr(p), "GET", "/metrics")
    shards = set(dict(labels).get("shard") for name, labels in parse_prometheus(body)
                 if name == "ringsocks_shard_loop_iterations_total")
    check(shards == {"0", "1"}, "the new process runs shards %r, expected the running 0 and 1"
          % sorted(shards))
    check(pid_running(new), "the new process is gone")


@case("upgrade_fleet", timeout=90)
def upgrade_fleet(ctx):
    """A node of a fleet (Redis) upgraded: the draining old process keeps its lease (its
    tunnel's place still counts against the fleet's max_conns), the node's quota figure in
    Redis is the new process's during the drain (never the old one's), and once the old one
    exits the figure holds every byte of both."""
    from cases_auth import ALICE
    from cases_redis import Redis, grace_over, node, redis_up
    from cases_ulimits import try_connect
    from harness import recv_exact
    need_upgrade()
    r = Redis(ctx)
    p = node(ctx, r, "a", "max_conns=2 quota=10M/day", extra=["--drain-timeout", "20"])
    p.exit_expected = True
    echo = ctx.echo_server()
    check(wait_until(lambda: redis_up(p), 5.0), "the node never reached Redis", tail(p.stderr()))
    grace_over(p)
    key = "ringsocks:quota:alice:day:%d" % (int(time.time()) // 86400)

    def figure():
        v = r.cmd("HGET", key, "a")
        return int(v) if v is not None else None

    rep, t1 = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "alice's first tunnel refused 0x%02x" % rep)
    t1.sendall(b"x" * 3000)
    recv_exact(t1, 3000, "echo before the upgrade")
    check(wait_until(lambda: figure() == 6000, 5), "the node's figure is %r, expected 6000"
          % figure())
    new = upgrade_once(ctx, p, p.proc.pid)
    check(wait_until(lambda: redis_up(p), 5.0), "the new process never reached Redis")
    # max_conns=2 across the fleet: the old process's tunnel holds one place, and gives its
    # spare one back at the hand-over (its first round after it).
    time.sleep(0.3)
    rep, t2 = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 0, "the second tunnel (one place left) refused 0x%02x" % rep)
    rep, _ = try_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    check(rep == 2, "a third tunnel got 0x%02x: the draining process's place was given away" % rep)
    # Without a state file the old process hands its counts over with the sockets: the
    # node's figure is the new process's, and 6000 from the start.
    check(wait_until(lambda: figure() == 6000, 2), "the node's figure is %r after the hand-over, "
          "expected 6000" % figure())
    # 40000 more through the old process's tunnel: the figure stays the new process's.
    t1.sendall(b"y" * 20000)
    recv_exact(t1, 20000, "echo during the drain")
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:
        check(figure() == 6000, "the node's figure is %r during the drain: written by the old "
              "process" % figure())
        time.sleep(0.05)
    t1.close()
    t2.close()
    check(p.proc.wait(15) == 0, "the old process did not exit 0 after its drain")
    check(wait_until(lambda: figure() == 46000, 5), "the node's figure is %r after the old "
          "process exited, expected 46000" % figure(), tail(p.stderr()))
    check(pid_running(new), "the new process is gone")
