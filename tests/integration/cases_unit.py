"""
cases_unit.py - the shipped systemd unit (conf/ringsocks.service): its sandbox
scores 2.0 or better in `systemd-analyze security --offline=true`, its
SystemCallFilter= lets io_uring through, and every system call ringsocks makes
while serving (listen below 1024, CONNECT, BIND, UDP ASSOCIATE, a SIGHUP reload,
a SIGUSR1 log reopen, /metrics, a SIGUSR2 binary upgrade, the state file, the drain
at SIGTERM), traced with
strace under the unit's credentials (an unprivileged uid, CAP_NET_BIND_SERVICE
alone, no_new_privs), is one the unit's SystemCallFilter= allows, and none asks for
memory MemoryDenyWriteExecute= refuses. systemd is not
PID 1 here: the unit itself is not started.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

from cases_auth import ALICE
from cases_bind import app_connect, bind5_second
from cases_control import REPO, reload_count
from cases_udp import associate, echo_via
from cases_upgrade import stop_pid, upgrade_once, wait_gone
from harness import (CONFIG, Fail, Skip, admin_request, case, check, echo_roundtrip, make_hash,
                     free_port, need_ringsocks, socks5_command, tail, wait_until)

UNIT = os.path.join(REPO, "conf", "ringsocks.service")
MAX_EXPOSURE = 2.0
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
SCORE_RE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)")
# strace -f lines: "PID name(" or "PID <... name resumed>".
STRACE_RE = re.compile(r"^\d+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()")
# The capabilities the shipped configuration needs: listeners below 1024.
WANT_CAPS = {"net_bind_service"}
CAP_BITS = {"net_bind_service": 10, "net_broadcast": 11, "net_admin": 12, "net_raw": 13}


def need_analyze():
    if not shutil.which("systemd-analyze"):
        raise Skip("systemd-analyze is not installed (package systemd): the unit's sandbox is not checked")


def unit_values(key):
    """Every value of key= in the unit's [Service] section, in order."""
    out, section = [], None
    with open(UNIT) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                if k.strip() == key:
                    out.append(v.strip())
    return out


_groups = {}


def expand(name):
    """A syscall or @group, as the set of syscall names systemd-analyze lists for it."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        r = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise Fail("systemd-analyze syscall-filter %s failed" % name, r.stderr)
        names = set()
        for line in r.stdout.splitlines()[1:]:
            item = line.strip()
            if item and not item.startswith("#"):
                names |= expand(item)
        _groups[name] = names
    return _groups[name]


def allowed_syscalls():
    """What the unit's SystemCallFilter= lines leave allowed: the first line is an allow
    list (no ~), each later line adds to it or (with ~) takes away from it."""
    lines = unit_values("SystemCallFilter")
    check(lines, "%s has no SystemCallFilter=" % UNIT)
    check(not lines[0].startswith("~"), "the first SystemCallFilter= of %s is a deny list (%s): expected an "
          "allow list" % (UNIT, lines[0]))
    allowed = set()
    for v in lines:
        deny = v.startswith("~")
        names = set()
        for item in v.lstrip("~").split():
            names |= expand(item)
        allowed = allowed - names if deny else allowed | names
    return allowed


@case("unit_security_score")
def unit_security_score(ctx):
    """systemd-analyze security rates the shipped unit 2.0 or better."""
    need_analyze()
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", UNIT],
                       capture_output=True, text=True, timeout=60)
    m = SCORE_RE.search(r.stdout)
    if not m:
        raise Fail("no 'Overall exposure level' line from systemd-analyze security --offline=true %s (exit %d)"
                   % (UNIT, r.returncode), tail(r.stdout + r.stderr))
    score = float(m.group(1))
    exposed = [l for l in r.stdout.splitlines() if l.lstrip().startswith("\u2717")]
    check(score <= MAX_EXPOSURE, "systemd-analyze security rates %s %s %s: above %.1f"
          % (os.path.basename(UNIT), m.group(1), m.group(2), MAX_EXPOSURE), "\n".join(exposed))


@case("unit_syscall_filter_io_uring")
def unit_syscall_filter_io_uring(ctx):
    """The unit's SystemCallFilter= allows io_uring's three system calls."""
    need_analyze()
    allowed = allowed_syscalls()
    missing = [s for s in IO_URING if s not in allowed]
    check(not missing, "SystemCallFilter= of %s does not allow %s: ringsocks could not make a ring"
          % (UNIT, ", ".join(missing)), "SystemCallFilter=" + "\nSystemCallFilter=".join(
              unit_values("SystemCallFilter")))


def unit_caps(key):
    """The capabilities a unit line names (AmbientCapabilities=, CapabilityBoundingSet=), as
    setpriv names them (net_bind_service)."""
    names = set()
    for v in unit_values(key):
        names |= {c.lower()[4:] if c.lower().startswith("cap_") else c.lower() for c in v.split()}
    return names


def low_port():
    """A free TCP port below 1024 on 127.0.0.1 (CAP_NET_BIND_SERVICE's test)."""
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise Skip("no free port between 901 and 1023 on 127.0.0.1")


def traced_pid(p):
    """The pid of ringsocks, strace's child (setpriv execs it)."""
    def child():
        try:
            with open("/proc/%d/task/%d/children" % (p.proc.pid, p.proc.pid)) as f:
                kids = f.read().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None
    if not wait_until(lambda: child() is not None, 5.0):
        raise Fail("strace (pid %d) has no child" % p.proc.pid)
    pid = child()
    return pid


def need_trace():
    need_analyze()
    need_ringsocks("the unit's system calls")
    for tool in ("strace", "setpriv"):
        if not shutil.which(tool):
            raise Skip("%s is not installed: ringsocks' system calls are not checked against the unit" % tool)
    if os.geteuid() != 0:
        raise Skip("not root: cannot take on the unit's credentials (setpriv --reuid)")


def service_dir(ctx):
    """A directory the service user can reach (the test's own is root's, 0700) and write in,
    as LogsDirectory=/StateDirectory= give it."""
    run = tempfile.mkdtemp(prefix="ringsocks-unit-")
    ctx.defer(lambda: shutil.rmtree(run, ignore_errors=True))
    os.chmod(run, 0o777)
    return run


def readable_file(run, name, text):
    path = os.path.join(run, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def traced_proxy(ctx, run, caps, trace, keep=(), **kw):
    """ringsocks under strace -f, as the unit runs it: DynamicUser= (an unprivileged uid, no
    groups), NoNewPrivileges=, caps as its ambient and bounding sets; $NOTIFY_SOCKET set
    (Type=notify). Waits for READY=1 and checks that it holds keep alone once started (what
    its configuration needs at run time: src/caps.c dropped the rest) and that its bounding
    set is still caps (dropping from it needs CAP_SETPCAP). Returns (proxy, pid of
    ringsocks)."""
    caps_arg = "-all" + "".join(",+" + c for c in sorted(caps))
    wrap = ["strace", "-f", "-qq", "-o", trace, "--",
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
            "--inh-caps=" + caps_arg, "--ambient-caps=" + caps_arg, "--bounding-set=" + caps_arg, "--"]
    notify = os.path.join(run, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    os.chmod(notify, 0o777)
    ctx.defer(ns.close)
    ns.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=notify)
    # A sanitizer build: LeakSanitizer cannot work under ptrace, and would fail the exit.
    env["ASAN_OPTIONS"] = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"), "detect_leaks=0") if o)
    p = ctx.proxy(wrap=wrap, env=env, **kw)
    pid = traced_pid(p)

    def cleanup():
        # A failed test: strace, not ringsocks, got the harness's SIGTERM.
        p.exit_expected = True
        stop_pid(pid)
    ctx.defer(cleanup)
    try:
        ready = ns.recv(4096).decode()
    except socket.timeout:
        raise Fail("no datagram on $NOTIFY_SOCKET within 10 s of the start", tail(p.stderr()))
    check("READY=1" in ready, "the first $NOTIFY_SOCKET datagram is %r, expected READY=1" % ready)
    with open("/proc/%d/status" % pid) as f:
        have = dict(l.split(":", 1) for l in f if l.startswith("Cap"))
    given = sum(1 << CAP_BITS[c] for c in caps)
    kept = sum(1 << CAP_BITS[c] for c in keep)
    for k, want, names in (("CapEff", kept, keep), ("CapPrm", kept, keep), ("CapInh", kept, keep),
                           ("CapAmb", kept, keep), ("CapBnd", given, caps)):
        check(int(have[k], 16) == want, "%s of ringsocks is %s, expected %x (%s)"
              % (k, have[k].strip(), want, " ".join(sorted(names)) or "none"), tail(p.stderr()))
    return p, pid


def stop_traced(p, pid):
    """SIGTERM: drain, exit 0, and strace with it."""
    p.exit_expected = True
    os.kill(pid, signal.SIGTERM)
    try:
        rc = p.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise Fail("ringsocks under strace did not exit within 20 s of SIGTERM", tail(p.stderr()))
    p.stop()
    check(rc == 0, "ringsocks exited with %d under the unit's credentials" % rc, tail(p.stderr()))


def check_trace(trace, allowed):
    """Every call of ringsocks (from setpriv's execve of the binary on) is allowed, and none
    asks for memory MemoryDenyWriteExecute= refuses."""
    used, started, wx = set(), False, []
    with open(trace, errors="replace") as f:
        for line in f:
            if not started:
                started = "execve(\"%s\"" % CONFIG.binary in line or \
                    ("execve(" in line and os.path.basename(CONFIG.binary) in line.split(",")[0])
                continue
            m = STRACE_RE.match(line)
            if m:
                name = m.group(1) or m.group(2)
                used.add(name)
                # MemoryDenyWriteExecute=: no mapping both writable and executable, no
                # mprotect() to executable.
                if ("PROT_EXEC" in line and (name in ("mprotect", "pkey_mprotect") or
                                             (name == "mmap" and "PROT_WRITE" in line))):
                    wx.append(line.strip())
    check(started, "no execve of %s in the strace output %s" % (CONFIG.binary, trace))
    check("io_uring_setup" in used, "the trace shows no io_uring_setup: not ringsocks' trace?",
          " ".join(sorted(used)))
    check(not wx, "ringsocks asked for writable and executable memory, which MemoryDenyWriteExecute= refuses",
          "\n".join(wx[:10]))
    denied = sorted(used - allowed)
    check(not denied, "ringsocks made system calls the unit's SystemCallFilter= does not allow (they would "
          "fail with EPERM under systemd): %s" % ", ".join(denied), "used: " + " ".join(sorted(used)))


@case("unit_syscalls_allowed", timeout=120)
def unit_syscalls_allowed(ctx):
    """Every system call ringsocks makes through its features (the old and the new process
    of an upgrade), run as the unit runs it (an unprivileged uid, CAP_NET_BIND_SERVICE
    ambient and nothing else, no_new_privs), is allowed by the unit's SystemCallFilter=."""
    need_trace()
    allowed = allowed_syscalls()
    # The unit's credentials: AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges=.
    ambient, bounding = unit_caps("AmbientCapabilities"), unit_caps("CapabilityBoundingSet")
    check(ambient == WANT_CAPS and bounding == WANT_CAPS,
          "%s gives AmbientCapabilities=%s CapabilityBoundingSet=%s: expected %s alone (what the shipped "
          "configuration needs; a drop-in adds more)" % (UNIT, " ".join(sorted(ambient)) or "(none)",
                                                         " ".join(sorted(bounding)) or "(none)",
                                                         " ".join(sorted(WANT_CAPS))))
    check(unit_values("NoNewPrivileges") == ["yes"], "%s lacks NoNewPrivileges=yes" % UNIT)
    run = service_dir(ctx)
    users = readable_file(run, "users", "%s:%s\n" % (ALICE[0], make_hash(ALICE[1])))
    log = os.path.join(run, "access.log")
    state = os.path.join(run, "state")
    trace = ctx.path("strace.out")
    port = low_port()
    p, pid = traced_proxy(ctx, run, ambient, trace, listen=("127.0.0.1:%d" % port,),
                          args=["--auth", "password", "--users", users, "--access-log", log,
                                "--state-file", state])
    auth = ALICE
    # CONNECT
    echo = ctx.echo_server()
    s, _ = socks5_command(ctx, p, 1, "127.0.0.1", echo.port, auth=auth)
    echo_roundtrip(s)
    echo_roundtrip(s, 4 << 20)  # bulk: the auto engine's splice and its pipes
    s.close()
    # CONNECT to a name: c-ares reads /etc/hosts and resolv.conf
    s, _ = socks5_command(ctx, p, 1, "localhost", echo.port, auth=auth)
    echo_roundtrip(s)
    s.close()
    # BIND
    s, r1 = socks5_command(ctx, p, 2, "127.0.0.1", 0, auth=auth, what="first BIND reply")
    app = app_connect((r1.host, r1.port))
    ctx.defer(app.close)
    r2 = bind5_second(s)
    check(r2.rep == 0, "second BIND reply REP 0x%02x, expected 00" % r2.rep)
    s.sendall(b"bind ok")
    check(app.recv(64) == b"bind ok", "BIND: the application server did not get the client's bytes")
    s.close()
    # UDP ASSOCIATE
    uecho = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p, auth=auth)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", uecho.port, b"udp through the unit's sandbox")
    s.close()
    # /metrics
    st, body, _ = admin_request(p, "GET", "/metrics")
    check(st == 200, "GET /metrics answered %d: %r" % (st, body[:200]))
    # SIGHUP reload
    before = reload_count(p)
    os.kill(pid, signal.SIGHUP)
    if not wait_until(lambda: reload_count(p) > before, 10.0):
        raise Fail("no reload line within 10 s of SIGHUP", tail(p.stderr()))
    check("reloaded" in p.stderr(), "the reload failed", tail(p.stderr()))
    # SIGUSR1 reopen, after logrotate's rename
    wait_until(lambda: os.path.exists(log), 5.0)
    os.rename(log, log + ".1")
    os.kill(pid, signal.SIGUSR1)
    if not wait_until(lambda: "access log reopened" in p.stderr(), 10.0):
        raise Fail("no 'access log reopened' line within 10 s of SIGUSR1", tail(p.stderr()))
    # SIGUSR2: the binary upgrade re-execs ringsocks (traced too: strace -f) and hands over
    new = upgrade_once(ctx, p, pid)
    wait_gone(pid, 15.0, "the old process after the upgrade")
    s, _ = socks5_command(ctx, p, 1, "127.0.0.1", echo.port, auth=auth)
    echo_roundtrip(s)
    s.close()
    # SIGTERM: drain, state file saved, exit 0
    stop_traced(p, new)
    check(os.path.exists(state), "no state file %s written at exit" % state, tail(p.stderr()))
    check_trace(trace, allowed)


@case("unit_dropin_mark_tproxy", timeout=60)
def unit_dropin_mark_tproxy(ctx):
    """The drop-in the unit documents for mark and tproxy (CAP_NET_RAW added: Linux 5.17 and
    later accept it for SO_MARK too): a rule with mark serves (a tunnel whose SO_MARK fails
    is refused), a transparent listener gets IP_TRANSPARENT, and the calls stay in the filter."""
    need_trace()
    if tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2]) < (5, 17):
        raise Skip("Linux %s: SO_MARK needs CAP_NET_ADMIN before 5.17" % os.uname().release)
    allowed = allowed_syscalls()
    caps = unit_caps("AmbientCapabilities") | {"net_raw"}
    # After start-up ringsocks keeps CAP_NET_RAW alone, for SO_MARK: IP_TRANSPARENT was set
    # at bind, and no port below 1024 is bound at run time.
    run = service_dir(ctx)
    socks, tproxy = free_port(), free_port()
    conf = readable_file(run, "ringsocks.conf", (
        'listen = ( "127.0.0.1:%d", { address = "127.0.0.1:%d"; mode = "transparent"; } );\n'
        'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; mark = 42; } );\n') % (socks, tproxy))
    trace = ctx.path("strace.out")
    p, pid = traced_proxy(ctx, run, caps, trace, keep={"net_raw"},
                          listen=("127.0.0.1:%d" % socks, "127.0.0.1:%d" % tproxy),
                          own_args=False, args=["-c", conf, "--admin", "127.0.0.1:0", "--drain-timeout", "3"])
    echo = ctx.echo_server()
    s, _ = socks5_command(ctx, p, 1, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    s.close()
    check("IP_TRANSPARENT" not in p.stderr(), "the transparent listener did not get IP_TRANSPARENT",
          tail(p.stderr()))
    stop_traced(p, pid)
    check_trace(trace, allowed)
