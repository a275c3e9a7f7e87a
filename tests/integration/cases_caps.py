"""
cases_caps.py - the capabilities ringsocks keeps once start-up is over (issue #18
item 4, src/caps.c): every thread's five sets (/proc/PID/task/*/status CapEff,
CapPrm, CapInh, CapBnd, CapAmb) hold exactly what the configuration needs at run
time and nothing else: none for a root start without `user`, for `user`, and for a
transparent listener (IP_TRANSPARENT is set at bind); CAP_NET_RAW (Linux 5.17 and
later; CAP_NET_ADMIN before) for rules with mark; CAP_NET_BIND_SERVICE for
bind_ports below 1024. The same sets after a binary upgrade, and the server still
serves in each case (a tunnel, a reload, a log reopen). The same again under a
supervisor's seccomp filter (seccomp_allow.py: systemd's SystemCallFilter=, Docker's
default profile), which once made the drop skip everything.

Needs root (it starts ringsocks as root). Single engine: no tunnel data of interest.
"""

import os
import re
import shutil
import signal
import sys
import tempfile

from cases_control import sighup_reload
from cases_upgrade import need_upgrade, serving_pid, upgrade_once, wait_gone, write_conf
from harness import (Fail, Skip, case, check, echo_roundtrip, read_reply, request, socks5_command,
                     socks5_open, socks_connect, tail, wait_until)

SETS = ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb")
NET_BIND_SERVICE, NET_ADMIN, NET_RAW = 10, 12, 13
CAPS_LINE = re.compile(r"ringsocks: capabilities after start-up: (.*)")


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (the test runs as uid %d)" % os.geteuid())


def mark_cap():
    """The capability SO_MARK takes here: CAP_NET_RAW from Linux 5.17 on."""
    major, minor = (int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    return NET_RAW if (major, minor) >= (5, 17) else NET_ADMIN


def thread_sets(pid):
    """{thread name/tid: {set: int}} for every thread of pid."""
    out = {}
    for tid in sorted(os.listdir("/proc/%d/task" % pid), key=int):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                sets = {k: int(v, 16) for k, v in (l.split(":", 1) for l in f) if k in SETS}
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        out["%s/%s" % (name, tid)] = sets
    return out


def check_sets(pid, want, what, p):
    """Every set of every thread of pid is want (a bit mask), shard threads included."""
    threads = thread_sets(pid)
    check(any(n.startswith("shard-") for n in threads), "no shard thread in /proc/%d/task: %s"
          % (pid, " ".join(threads)))
    bad = ["%s %s %x" % (n, k, v) for n, sets in threads.items() for k, v in sets.items() if v != want]
    check(not bad, "%s: capability sets other than %x (%d threads)" % (what, want, len(threads)),
          "\n".join(bad[:20]) + "\n" + tail(p.stderr()))


HERE = os.path.dirname(os.path.abspath(__file__))


def outside_filter():
    """The argv prefix that starts the server under an allow-everything seccomp filter; a
    python any uid may run (the runner's may be a per-user shim)."""
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    return [py, os.path.join(HERE, "seccomp_allow.py")]


def seccomp_filters(pid):
    with open("/proc/%d/status" % pid) as f:
        st = dict(l.split(":", 1) for l in f)
    return int(st.get("Seccomp_filters", "0"))


def serves(ctx, p):
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s, 2000)
    s.close()


def reload_and_reopen(ctx, p, log):
    """SIGHUP reload, then SIGUSR1 after a logrotate-style rename: the new file gets lines."""
    line = sighup_reload(p)
    check("reloaded" in line, "the reload after the drop failed: %s" % line, tail(p.stderr()))
    check(wait_until(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 5.0),
          "no access-log line in %s" % log, tail(p.stderr()))
    os.rename(log, log + ".1")
    p.proc.send_signal(signal.SIGUSR1)
    check(wait_until(lambda: "access log reopened" in p.stderr(), 5.0),
          "no 'access log reopened' line after SIGUSR1", tail(p.stderr()))
    serves(ctx, p)
    check(wait_until(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 5.0),
          "the reopened access log %s gets no line" % log, tail(p.stderr()))


def caps_line(p):
    m = CAPS_LINE.findall(p.stderr())
    check(m, "no 'capabilities after start-up' line on stderr", tail(p.stderr()))
    return m[-1]


def open_dir(ctx, mode=0o755):
    """A directory another uid can read (the test's own is root's, 0700), removed after."""
    d = tempfile.mkdtemp(prefix="ringsocks-caps-")
    ctx.defer(lambda: shutil.rmtree(d, ignore_errors=True))
    os.chmod(d, mode)
    return d


def open_conf(d, text, name="ringsocks.conf"):
    """text as d/name, mode 0644 (a server that dropped to nobody reloads it)."""
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def start(ctx, conf, args=()):
    log = ctx.path("access.log")
    path = write_conf(ctx, conf)
    p = ctx.proxy(args=["-c", path, "--access-log", log] + list(args))
    return p, log


@case("caps_root_none")
def caps_root_none(ctx):
    """Root without user, no rule with mark: every set of every thread is empty (it held
    all of them at start), and the server serves, reloads and reopens its log."""
    need_root()
    p, log = start(ctx, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n')
    check_sets(p.proc.pid, 0, "root without user", p)
    check(caps_line(p) == "none", "the start line says %r, expected none" % caps_line(p))
    serves(ctx, p)
    reload_and_reopen(ctx, p, log)
    check_sets(p.proc.pid, 0, "after the reload and the reopen", p)


@case("caps_root_mark")
def caps_root_mark(ctx):
    """Root, a rule with mark: only the capability SO_MARK takes (CAP_NET_RAW on Linux 5.17
    and later) in every set of every thread; the marked tunnel works (an SO_MARK refused
    would fail it with 0x02)."""
    need_root()
    p, log = start(ctx, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; mark = 42; } );\n')
    cap = mark_cap()
    check_sets(p.proc.pid, 1 << cap, "root with a rule with mark", p)
    check(caps_line(p).startswith("cap_net_raw" if cap == NET_RAW else "cap_net_admin"),
          "the start line says %r" % caps_line(p))
    serves(ctx, p)
    reload_and_reopen(ctx, p, log)


@case("caps_user")
def caps_user(ctx):
    """user = nobody, a rule with mark: the capability SO_MARK takes alone, through setuid();
    without mark, none, the bounding set included (it stayed full before)."""
    need_root()
    # A directory the unprivileged server can read, for the reload after the drop.
    d = open_dir(ctx)
    for conf, want in (('rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n', 0),
                       ('rules = ( { action = "allow"; from = ["127.0.0.0/8"]; mark = 7; } );\n',
                        1 << mark_cap())):
        path = open_conf(d, conf, "user%d.conf" % want)
        p = ctx.proxy(args=["-c", path, "--user", "nobody", "--group", "nogroup"])
        check_sets(p.proc.pid, want, "user = nobody", p)
        serves(ctx, p)
        line = sighup_reload(p)
        check("reloaded" in line, "the reload as nobody failed: %s" % line, tail(p.stderr()))
        p.stop()


@case("caps_transparent")
def caps_transparent(ctx):
    """A transparent listener: IP_TRANSPARENT is set at bind (no warning), and nothing is
    kept for it afterwards."""
    need_root()
    from harness import free_port
    socks, tproxy = free_port(), free_port()
    path = write_conf(ctx, (
        'listen = ( "127.0.0.1:%d", { address = "127.0.0.1:%d"; mode = "transparent"; } );\n'
        'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n') % (socks, tproxy))
    p = ctx.proxy(listen=("127.0.0.1:%d" % socks, "127.0.0.1:%d" % tproxy), own_args=False,
                  args=["-c", path, "--admin", "127.0.0.1:0", "--drain-timeout", "3"])
    check("IP_TRANSPARENT" not in p.stderr(), "the transparent listener did not get IP_TRANSPARENT",
          tail(p.stderr()))
    check_sets(p.proc.pid, 0, "a transparent listener", p)
    serves(ctx, p)


@case("caps_low_bind_ports")
def caps_low_bind_ports(ctx):
    """bind_ports below 1024: CAP_NET_BIND_SERVICE alone (the shards bind those at run time),
    and a BIND gets a port of the range."""
    need_root()
    p, _ = start(ctx, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n',
                 ["--bind-ports", "900-1000"])
    check_sets(p.proc.pid, 1 << NET_BIND_SERVICE, "bind_ports 900-1000", p)
    s, r = socks5_command(ctx, p, 2, "127.0.0.1", 0, what="BIND reply")
    check(r.rep == 0 and 900 <= r.port <= 1000, "BIND answered %02x port %d, expected 00 and a "
          "port in 900-1000" % (r.rep, r.port), tail(p.stderr()))
    s.close()


@case("caps_upgrade", timeout=90)
def caps_upgrade(ctx):
    """A binary upgrade of a root start with a rule with mark, under the seccomp filter: the
    new process finds its sets in place (no capset() needed) and has the same, no more (the
    bounding set is the kept capability), serves, reloads; and again from it."""
    need_root()
    need_upgrade()
    p, log = start(ctx, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; mark = 9; } );\n')
    p.exit_expected = True
    want = 1 << mark_cap()
    pid = p.proc.pid
    check_sets(pid, want, "before the upgrade", p)
    for _ in range(2):
        new = upgrade_once(ctx, p, pid)
        check(wait_until(lambda: serving_pid(p) == new, 10.0), "the new process %d does not serve"
              % new, tail(p.stderr()))
        wait_gone(pid, 20, "the old process")
        check_sets(new, want, "after the upgrade (pid %d)" % new, p)
        serves(ctx, p)
        check("stay held" not in p.stderr(), "the new process kept more than it needs",
              tail(p.stderr()))
        pid = new


@case("caps_upgrade_group_no_seccomp", timeout=60)
def caps_upgrade_group_no_seccomp(ctx):
    """Root with a group and no user, seccomp off: the upgrade's new process has no
    CAP_SETGID, so it must see that its groups are already the one asked for (it would fail
    setgroups() and the upgrade with it)."""
    need_root()
    need_upgrade()
    p, _ = start(ctx, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n',
                 ["--group", "nogroup", "--seccomp", "false"])
    p.exit_expected = True
    pid = p.proc.pid
    check_sets(pid, 0, "before the upgrade", p)
    new = upgrade_once(ctx, p, pid)
    wait_gone(pid, 20, "the old process")
    check_sets(new, 0, "after the upgrade", p)
    serves(ctx, p)
    if "cannot drop privileges" in p.stderr():
        raise Fail("the new process tried the identity change again", tail(p.stderr()))


@case("caps_upgrade_user", timeout=60)
def caps_upgrade_user(ctx):
    """user = nobody with a rule with mark: the upgrade's new process, not root, gets only
    its parent's ambient set at execve(), so the kept capability must be ambient (before,
    it was lost and every marked tunnel of the new process failed)."""
    need_root()
    need_upgrade()
    path = open_conf(open_dir(ctx), 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; '
                                    'mark = 5; } );\n')
    p = ctx.proxy(args=["-c", path, "--user", "nobody", "--group", "nogroup"])
    p.exit_expected = True
    want = 1 << mark_cap()
    check_sets(p.proc.pid, want, "before the upgrade", p)
    new = upgrade_once(ctx, p, p.proc.pid)
    wait_gone(p.proc.pid, 20, "the old process")
    check_sets(new, want, "after the upgrade", p)
    serves(ctx, p)


@case("caps_reload_adds_mark")
def caps_reload_adds_mark(ctx):
    """A reload that brings the first rule with mark gets no capability (none was kept at
    start): the reload line says so, and a marked tunnel fails (0x02) rather than leave
    unmarked."""
    need_root()
    p, _ = start(ctx, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n')
    check_sets(p.proc.pid, 0, "no mark at start", p)
    write_conf(ctx, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; mark = 3; } );\n')
    line = sighup_reload(p)
    check("reloaded" in line, "the reload failed: %s" % line, tail(p.stderr()))
    check("no capability for SO_MARK was kept" in p.stderr(), "the reload does not say that "
          "marks will fail", tail(p.stderr()))
    echo = ctx.echo_server()
    s = socks5_open(ctx, p, None, 5)
    s.sendall(request("127.0.0.1", echo.port, cmd=1))
    r = read_reply(s, "CONNECT reply")
    check(r.rep == 0x02, "a marked CONNECT without the capability answered %02x, expected 02"
          % r.rep, tail(p.stderr()))
    s.close()


@case("caps_outside_filter")
def caps_outside_filter(ctx):
    """Started under a supervisor's seccomp filter that allows everything: root without user
    ends with every set empty; root with user = nobody and a rule with mark with the mark's
    capability alone (effective and permitted: SO_MARK works, so the marked tunnel does, and
    nothing more can be set back), in every thread."""
    need_root()
    p = ctx.proxy(args=["-c", write_conf(ctx, 'rules = ( { action = "allow"; from = '
                                              '["127.0.0.0/8"]; } );\n')],
                  wrap=outside_filter())
    check(seccomp_filters(p.proc.pid) == 2, "ringsocks runs under %d seccomp filters, expected "
          "2 (the outside one, then its own)" % seccomp_filters(p.proc.pid), tail(p.stderr()))
    check_sets(p.proc.pid, 0, "root without user under an outside filter", p)
    check(caps_line(p) == "none", "the start line says %r, expected none" % caps_line(p))
    serves(ctx, p)
    p.stop()
    p = ctx.proxy(args=["-c", write_conf(ctx, 'rules = ( { action = "allow"; from = '
                                              '["127.0.0.0/8"]; mark = 11; } );\n'),
                        "--user", "nobody", "--group", "nogroup"],
                  wrap=outside_filter())
    check_sets(p.proc.pid, 1 << mark_cap(), "user = nobody with mark under an outside filter", p)
    check("stay held" not in p.stderr(), "the start kept more than it needs", tail(p.stderr()))
    serves(ctx, p)  # marked: an SO_MARK refused would answer 0x02


@case("caps_unit_credentials_filter")
def caps_unit_credentials_filter(ctx):
    """The shipped unit's credentials (uid 65534, CAP_NET_BIND_SERVICE ambient and bounding,
    no_new_privs) under its SystemCallFilter= (here one that allows everything), a port above
    1024: CAP_NET_BIND_SERVICE goes once the listeners are bound (it stayed for life)."""
    need_root()
    if not shutil.which("setpriv"):
        raise Skip("setpriv is not installed")
    run = open_dir(ctx, 0o777)  # the access log is made there by uid 65534
    conf = open_conf(run, 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n')
    caps = "-all,+net_bind_service"
    wrap = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
            "--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps, "--"]
    p = ctx.proxy(args=["-c", conf, "--access-log", os.path.join(run, "access.log")],
                  wrap=wrap + outside_filter())
    threads = thread_sets(p.proc.pid)
    want = dict.fromkeys(SETS, 0)
    want["CapBnd"] = 1 << NET_BIND_SERVICE  # no CAP_SETPCAP: the bounding set stays
    bad = ["%s %s %x" % (n, k, v) for n, sets in threads.items() for k, v in sets.items()
           if v != want[k]]
    check(not bad, "the unit's credentials under a filter: sets other than none (bounding "
          "cap_net_bind_service)", "\n".join(bad[:20]) + "\n" + tail(p.stderr()))
    check(caps_line(p) == "none", "the start line says %r, expected none" % caps_line(p))
    serves(ctx, p)


@case("caps_no_setpcap_warns")
def caps_no_setpcap_warns(ctx):
    """Root without CAP_SETPCAP (a container that took it away) cannot cut its bounding set:
    with seccomp = false (no no_new_privs) an upgrade's execve() would give root its permitted
    set back from it, so a start-up line warns; with the filter on, none."""
    need_root()
    if not shutil.which("setpriv"):
        raise Skip("setpriv is not installed")
    conf = 'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n'
    for seccomp, warned in (("false", True), ("true", False)):
        p = ctx.proxy(args=["-c", write_conf(ctx, conf), "--seccomp", seccomp],
                      wrap=["setpriv", "--bounding-set=-setpcap", "--"])
        threads = thread_sets(p.proc.pid)
        check(all(not s["CapEff"] and not s["CapPrm"] for s in threads.values()),
              "root without CAP_SETPCAP kept capabilities", tail(p.stderr()))
        said = "could not cut the bounding set" in p.stderr()
        check(said == warned, "seccomp = %s: the bounding-set warning %s" % (
            seccomp, "is missing" if warned else "shows"), tail(p.stderr()))
        serves(ctx, p)
        p.stop()
