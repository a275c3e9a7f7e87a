"""
cases_control.py - the control plane: the configuration file (-c, -t, flags
over the file), access rules (destination, port, DNS rebinding, host names),
reloads (under load, broken files, removed users, close_denied_on_reload),
graceful drain (SIGTERM, SIGINT, POST /drain, /healthz), Prometheus metrics,
the access log (logfmt, JSON, SIGUSR1 reopen) and the privilege drop.

Every proxy is started by the harness with --listen 127.0.0.1:0, --shards,
--relay and --admin 127.0.0.1:0; the command line overrides the file, so the
files written here carry the policy and leave the listeners alone.
"""

import grp
import json
import os
import pwd
import random
import re
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from cases_auth import expect_login_fail, login_connect
from cases_relay import curl_fetch
from harness import (CONFIG, GREETING, IO_TIMEOUT, Fail, Skip, admin_addr, admin_request, case, check,
                     echo_roundtrip, expect_close, fmt_status, hexb, make_hash, metric, need_option,
                     need_ringsocks, need_tools, open_proxy_socket, parse_logfmt, parse_prometheus,
                     read_method_reply, read_reply, recv_exact, recv_until_eof, request, socks4_connect,
                     socks4_expect_reject, socks4_request, socks5_login, socks_connect, socks_expect_error,
                     stop_process, tail, wait_until, write_users)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELOAD_RE = re.compile(r"ringsocks: (reloaded \(policy \d+\)|reload failed)")
ALICE = ("alice", "alice-pw-1")
BOB = ("bob", "b0b-pw-2")

# An allow rule for the test's own traffic (clients and targets on loopback).
ALLOW_LOOPBACK = '{ action = "allow"; from = ["127.0.0.0/8"]; }'


# -------------------------------------------------------------------- helpers

def need_control():
    need_option("--config", "--test", "--admin", "--access-log", "--drain-timeout")


def write_conf(ctx, text, name="ringsocks.conf", path=None):
    """Write a config file atomically (temp file + rename, as configuration
    management does). Returns its path."""
    path = path or ctx.path(name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)
    return path


def rules_conf(*rules, extra=""):
    return "%s\nrules = (\n  %s\n);\n" % (extra, ",\n  ".join(rules))


def conf_proxy(ctx, text, args=(), name="ringsocks.conf"):
    """A proxy started with -c FILE (FILE written from text). Returns (proxy, path)."""
    need_control()
    path = write_conf(ctx, text, name)
    return ctx.proxy(args=["-c", path] + list(args)), path


def run_binary(ctx, args, timeout=20):
    return ctx.run([CONFIG.binary] + list(args), timeout=timeout, env=None)


def reload_count(p):
    return len(RELOAD_RE.findall(p.stderr()))


def sighup_reload(p, timeout=10.0):
    """SIGHUP, then wait for the server's `reloaded (policy N)` or `reload failed`
    line. Returns that line's text."""
    before = reload_count(p)
    p.proc.send_signal(signal.SIGHUP)
    if not wait_until(lambda: reload_count(p) > before, timeout, 0.01):
        p.check_alive()
        raise Fail("no 'reloaded'/'reload failed' line within %.0f s of SIGHUP" % timeout,
                   "stderr:\n" + tail(p.stderr()))
    return RELOAD_RE.findall(p.stderr())[before]


def http_reload(p):
    """POST /reload: returns (status, body)."""
    st, body, _ = admin_request(p, "POST", "/reload")
    return st, body


def scrape(p):
    st, body, _ = admin_request(p, "GET", "/metrics")
    check(st == 200, "GET /metrics answered %d: %r" % (st, body[:200]))
    return parse_prometheus(body)


def check_gauges_settle(p, what, timeout=5.0):
    """Once every client socket is closed, the open-connection and open-tunnel
    gauges must come back to 0 (no leaked slot or count on any end path)."""
    last = {}

    def zero():
        m = scrape(p)
        last["m"] = m
        vals = [metric(m, "ringsocks_connections_open")] + [
            v for (name, labels), v in m.items() if name == "ringsocks_tunnels_open"]
        return all(v == 0 for v in vals if v is not None)
    if not wait_until(zero, timeout, 0.1):
        m = last["m"]
        shown = ["%s%s %g" % (n, dict(l) if l else "", v) for (n, l), v in sorted(m.items())
                 if n in ("ringsocks_connections_open", "ringsocks_tunnels_open")]
        raise Fail("%s: open gauges not back to 0 within %.0f s of closing every client" % (what, timeout),
                   "\n".join(shown))


def deny_reply(ctx, p, host, port, what=None):
    """A CONNECT that the rules must refuse with 0x02 (then close)."""
    socks_expect_error(ctx, p, request(host, port), 0x02,
                       what=what or "CONNECT %s:%d (denied by the rules)" % (host, port))


def connect_reply(ctx, p, host, port):
    """CONNECT through p; returns (sock, REP) without failing on a non-zero REP."""
    s = open_proxy_socket(ctx, p)
    s.sendall(GREETING)
    m = read_method_reply(s)
    check(m == b"\x05\x00", "method selection reply %s, expected 05 00" % hexb(m))
    s.sendall(request(host, port))
    r = read_reply(s)
    return s, r.rep


def expect_tunnel_closed(sock, timeout, what):
    """The proxy must end this tunnel (EOF or reset, possibly after echoed bytes
    still in flight) within timeout. Returns how it ended and after how long."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while True:
        try:
            b = sock.recv(65536)
            if not b:
                return "eof", time.monotonic() - t0
        except socket.timeout:
            pass
        except (ConnectionResetError, BrokenPipeError):
            return "reset", time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise Fail("%s: the tunnel was not closed within %.1f s" % (what, timeout))


def tunnel_alive(sock, what, size=2048):
    try:
        echo_roundtrip(sock, size)
    except (Fail, OSError) as e:
        raise Fail("%s: the tunnel stopped working: %s" % (what, e))


def wait_exit(p, timeout):
    """Wait for the proxy to exit by itself; returns (rc, seconds waited) or (None, ...)."""
    t0 = time.monotonic()
    try:
        rc = p.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, time.monotonic() - t0


def new_client_refused(p, timeout=3.0):
    """While draining, a new client must be refused: the TCP connect fails, or
    the connection is closed without a SOCKS answer. Returns a description or
    raises Fail."""
    try:
        s = socket.create_connection(p.addr, timeout=timeout)
    except ConnectionRefusedError:
        return "connection refused"
    except socket.timeout:
        raise Fail("a new connection to the draining server neither connected nor was refused "
                   "within %.0f s" % timeout)
    try:
        s.settimeout(timeout)
        try:
            s.sendall(GREETING)
            b = s.recv(16)
        except (ConnectionResetError, BrokenPipeError):
            return "reset after connect"
        except socket.timeout:
            raise Fail("a new connection to the draining server was accepted by the kernel and then left "
                       "hanging: no answer, no close within %.0f s (listeners still open, nobody accepting)"
                       % timeout)
        if not b:
            return "closed after connect"
        raise Fail("the draining server answered a new client's greeting with %s (still accepting)" % hexb(b))
    finally:
        s.close()


# ------------------------------------------------------- -t: checking files

GOOD_CONF = """\
# every key, all valid
listen = [ "127.0.0.1:0" ];
shards = 2;
relay = "copy";
handshake_timeout = 10;
connect_timeout = 10;
idle_timeout = 0;
write_timeout = 30;
bind_timeout = 60;
drain_timeout = 5;
max_conns = 1000;
resolvers = [ "127.0.0.1:53" ];
auth = "none";
socks4 = "auto";
access_log = "off";
log_format = "json";
admin = "127.0.0.1:0";
close_removed_users = true;
close_denied_on_reload = false;
rules = (
  { action = "deny"; to = [ "10.0.0.0/8", "192.168.0.0/16", "::1/128" ]; },
  { action = "deny"; hosts = [ "exact.example", ".internal.example" ]; },
  { action = "allow"; from = [ "127.0.0.0/8" ]; ports = [ "80", "443", "8000-8999" ];
    commands = [ "connect", "bind", "udp" ]; },
  { action = "allow"; ports = [ 22, 2222 ]; commands = [ "connect" ]; },
  { action = "allow"; users = [ "alice" ]; commands = [ "connect" ]; }
);
"""

# Three errors on lines 3, 4 and 6 (an out-of-range number, an unknown word,
# an unknown key); line 5 is fine.
BAD_TOP_CONF = """\
# three mistakes
handshake_timeout = 0;
relay = "zerocopy";
shards = 2;
no_such_key = 1;
"""
BAD_TOP_LINES = (2, 3, 5)

# Three errors inside rules, on lines 3, 7 and 10 (a prefix length, a port
# range upside down, a command), elements of lists spread over lines.
BAD_RULES_CONF = """\
rules = (
  { action = "deny";
    to = [ "10.0.0.0/33" ];
  },
  { action = "allow";
    ports = [ "80",
              "9000-8000" ];
  },
  { action = "allow";
    commands = [ "connect", "teleport" ]; }
);
"""
BAD_RULES_LINES = (3, 7, 10)

SYNTAX_CONF = """\
shards = 2;
relay = "copy";
handshake_timeout = ;
"""
SYNTAX_LINE = 3


def error_lines(text, path):
    return [l for l in text.splitlines() if l.startswith(path + ":")]


def check_errors(ctx, text, lines, name):
    path = write_conf(ctx, text, name)
    r = run_binary(ctx, ["-t", "-c", path])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode not in (0, None), "-t -c %s (%d errors): %s, expected a non-zero exit; output:\n%s"
          % (name, len(lines), fmt_status(r.returncode), out))
    got = error_lines(out, path)
    for n in lines:
        check(any(l.startswith("%s:%d: " % (path, n)) for l in got),
              "-t -c %s: no error reported as %s:%d: (errors on lines %s expected)"
              % (name, name, n, ", ".join(map(str, lines))), "output:\n" + out)
    reported = sorted({int(l[len(path) + 1:].split(":", 1)[0]) for l in got
                       if l[len(path) + 1:].split(":", 1)[0].isdigit()})
    check(reported == sorted(lines), "-t -c %s: errors reported on lines %s, expected exactly %s"
          % (name, reported, sorted(lines)), "output:\n" + out)
    return out


@case("config_check")
def config_check(ctx):
    need_control()
    path = write_conf(ctx, GOOD_CONF, "good.conf")
    r = run_binary(ctx, ["-t", "-c", path])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode == 0, "-t -c good.conf: %s, expected exit 0; output:\n%s" % (fmt_status(r.returncode), out))
    check_errors(ctx, BAD_TOP_CONF, BAD_TOP_LINES, "bad-top.conf")
    check_errors(ctx, BAD_RULES_CONF, BAD_RULES_LINES, "bad-rules.conf")
    check_errors(ctx, SYNTAX_CONF, (SYNTAX_LINE,), "syntax.conf")
    # A file that does not exist: an error naming it, non-zero exit.
    missing = ctx.path("missing.conf")
    r = run_binary(ctx, ["-t", "-c", missing])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode not in (0, None) and missing in out,
          "-t -c (missing file): %s, output %r; expected a non-zero exit naming the file"
          % (fmt_status(r.returncode), out))
    # A users file with an error: -t checks it too and names its line.
    users = write_users(ctx, ["# users", "alice:%s" % make_hash(ALICE[1]), "bob:clear-text-password"])
    path = write_conf(ctx, 'auth = "password";\nusers = "%s";\n' % users, "users.conf")
    r = run_binary(ctx, ["-t", "-c", path])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode not in (0, None), "-t with a users file holding a clear-text password: %s, expected "
          "a non-zero exit; output:\n%s" % (fmt_status(r.returncode), out))
    check("%s:3:" % users in out, "-t with a bad users file: no error reported as users:3:", "output:\n" + out)


def _check(ctx, text, name, args=()):
    """-t -c FILE (written from text) ARGS: (exit status, output, path)."""
    path = write_conf(ctx, text, name)
    r = run_binary(ctx, ["-t", "-c", path] + list(args))
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace"), path


@case("config_check_preflight")
def config_check_preflight(ctx):
    """-t finds what start or a reload would fail on, beyond the syntax: a log
    directory that does not exist or that the service user cannot write, a
    user or group that does not exist, files the service user cannot read;
    users named in rules but missing from the users file are warnings."""
    need_control()
    d = tempfile.mkdtemp(prefix="ringsocks-t-")
    ctx.defer(lambda: shutil.rmtree(d, ignore_errors=True))
    os.chmod(d, 0o755)
    missing = os.path.join(d, "no-such-dir", "access.log")
    rc, out, path = _check(ctx, '# the log\n\naccess_log = "%s";\n' % missing, "log-missing.conf")
    check(rc == 1, "-t with the log in a missing directory: %s, expected 1" % fmt_status(rc), out)
    check("%s:3: access_log: the directory %s does not exist" % (path, os.path.dirname(missing))
          in out, "-t does not say at %s:3 that the log directory is missing" % path, out)
    # The command line overrides the file: the message names no line of the file.
    other = os.path.join(d, "other-dir", "access.log")
    rc, out, path = _check(ctx, 'access_log = "%s";\n' % missing, "log-missing-cli.conf",
                           ["--access-log", other])
    check(rc == 1 and "\naccess_log: the directory %s does not exist" % os.path.dirname(other)
          in "\n" + out and path + ":1:" not in out,
          "-t --access-log X: the message should name X without the file's line", out)

    users = write_users(ctx, ["alice:" + make_hash(ALICE[1])])
    rules = rules_conf('{ action = "allow"; users = ["alice", "mallory"]; }', ALLOW_LOOPBACK)
    rc, out, path = _check(ctx, 'users = "%s";\n%s' % (users, rules), "rule-users.conf")
    check(rc == 0, "-t with a rule naming a user not in the users file: %s, expected 0 (a warning)"
          % fmt_status(rc), out)
    n = rules.splitlines().index('  { action = "allow"; users = ["alice", "mallory"]; },') + 2
    check("%s:%d: warning: rule 1: user 'mallory' is not in the users file" % (path, n) in out,
          "-t does not warn about mallory at %s:%d" % (path, n), out)
    check("'alice'" not in out, "-t warns about alice, who is in the users file", out)

    rc, out, _ = _check(ctx, "", "nouser.conf", ["--user", "no-such-user-rs"])
    check(rc == 1 and "user 'no-such-user-rs' does not exist" in out,
          "-t --user no-such-user-rs: %s, expected 1 naming the user" % fmt_status(rc), out)
    rc, out, path = _check(ctx, 'group = "no-such-group-rs";\n', "nogroup.conf")
    check(rc == 1 and "%s:1: group 'no-such-group-rs' does not exist" % path in out,
          "-t with group no-such-group-rs: %s, expected 1 naming %s:1" % (fmt_status(rc), path), out)
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam("nobody")
        grp.getgrnam("nogroup")
    except KeyError:
        raise Skip("no user nobody or group nogroup: the checks as another user are not run")
    # The configuration in a directory others may read, so only the one thing under test fails.
    conf = lambda text, name: write_conf(ctx, text, path=os.path.join(d, name))

    def as_nobody(path, rc, want, what):
        r = run_binary(ctx, ["-t", "-c", path, "--user", "nobody", "--group", "nogroup"])
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        check(r.returncode == rc and want in out, "-t --user nobody, %s: %s, expected %d saying %r"
              % (what, fmt_status(r.returncode), rc, want), out)

    logdir = os.path.join(d, "logs")
    os.mkdir(logdir, 0o755)   # root's: nobody cannot create the log there
    path = conf('access_log = "%s/access.log";\n' % logdir, "log-root.conf")
    os.chmod(path, 0o644)
    as_nobody(path, 1, "access_log: user nobody cannot create files in %s" % logdir,
              "log directory root's 0755")
    os.chown(logdir, pwd.getpwnam("nobody").pw_uid, -1)
    as_nobody(path, 0, "configuration ok", "log directory nobody's")

    private = os.path.join(d, "users")
    shutil.copy(users, private)
    os.chmod(private, 0o600)
    path = conf('users = "%s";\n' % private, "users-private.conf")
    os.chmod(path, 0o644)
    as_nobody(path, 1, "users: user nobody cannot read %s" % private, "users file root's 0600")
    os.chmod(path, 0o600)
    os.chmod(private, 0o644)
    as_nobody(path, 1, "configuration file: user nobody cannot read %s" % path,
              "configuration root's 0600 (a reload re-reads it)")


def _adapt_shipped(ctx, name):
    """conf/NAME for -t: as shipped, or, when it names files or directories that
    do not exist here (a users file under /etc, a log directory under /var/log),
    a copy with those paths pointing at stand-ins in the test directory.
    Returns (path, notes)."""
    src = os.path.join(REPO, "conf", name)
    if not os.path.exists(src):
        raise Fail("conf/%s is not in the repository (the shipped configuration must exist)" % name)
    with open(src) as f:
        text = f.read()
    notes = []
    m = re.search(r'^\s*users\s*[=:]\s*"([^"]+)"', text, re.M)
    if m and not os.path.exists(m.group(1)):
        stand_in = write_users(ctx, ["alice:%s" % make_hash(ALICE[1])], name + ".users")
        text = text[:m.start(1)] + stand_in + text[m.end(1):]
        notes.append("users file %s does not exist here: replaced by a one-user stand-in" % m.group(1))
    m = re.search(r'^\s*access_log\s*[=:]\s*"(/[^"]+)"', text, re.M)
    if m and not os.path.isdir(os.path.dirname(m.group(1))):
        stand_in = ctx.path(name + ".access.log")
        text = text[:m.start(1)] + stand_in + text[m.end(1):]
        notes.append("access log directory %s does not exist here (-t refuses it): the log goes to "
                     "a stand-in" % os.path.dirname(m.group(1)))
    if not notes:
        return src, notes
    return write_conf(ctx, text, name), notes


@case("config_check_shipped")
def config_check_shipped(ctx):
    need_control()
    for name in ("ringsocks.conf", "egress.conf", "fleet.conf", "chain.conf", "transparent.conf",
                 "faults.conf"):
        path, notes = _adapt_shipped(ctx, name)
        r = run_binary(ctx, ["-t", "-c", path])
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        check(r.returncode == 0, "-t -c conf/%s: %s, expected exit 0%s" % (
            name, fmt_status(r.returncode), " (%s)" % "; ".join(notes) if notes else ""), "output:\n" + out)


@case("config_file_and_flags")
def config_file_and_flags(ctx):
    """Settings from the file apply; the command line overrides the file."""
    other = "copy" if ctx.relay == "splice" else "splice"
    p, _ = conf_proxy(ctx, 'shards = 1;\nrelay = "%s";\nhandshake_timeout = 1;\n%s'
                      % (other, rules_conf(ALLOW_LOOPBACK)))
    summary = [l for l in p.stderr().splitlines() if re.match(r"ringsocks \S+: ", l)]
    check(summary, "no startup summary line", p.stderr())
    check("%d shards" % CONFIG.shards in summary[0] and "relay %s" % ctx.relay in summary[0],
          "--shards %d --relay %s on the command line did not override the file's shards = 1, relay = %s: %r"
          % (CONFIG.shards, ctx.relay, other, summary[0]))
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    # handshake_timeout = 1 from the file: a silent client is closed within ~1 s.
    t0 = time.monotonic()
    c = ctx.connect(p.addr)
    expect_close(c, timeout=4.0, after="connect (silent client, handshake_timeout = 1 in the file)")
    took = time.monotonic() - t0
    check(took < 3.0, "silent client closed after %.1f s with handshake_timeout = 1 in the file" % took)


@case("config_default_rules_loopback_only")
def config_default_rules_loopback_only(ctx):
    """A file without rules allows loopback clients only. Needs a non-loopback
    address on this host (the traffic stays on the host)."""
    need_control()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))   # no packet is sent: this only picks a source address
        ip = probe.getsockname()[0]
    except OSError:
        ip = None
    finally:
        probe.close()
    if not ip or ip.startswith("127."):
        raise Skip("no non-loopback IPv4 address on this host")
    path = write_conf(ctx, "handshake_timeout = 10;\n")
    p = ctx.proxy(listen=["127.0.0.1:0", "%s:0" % ip], args=["-c", path])
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    ext = [a for a in p.addrs if a[0] == ip]
    check(ext, "no listener on %s: %s" % (ip, p.addrs))
    c = socket.create_connection(ext[0], timeout=IO_TIMEOUT, source_address=(ip, 0))
    try:
        c.sendall(GREETING)
        m = c.recv(2)
        if m == b"\x05\x00":
            c.sendall(request("127.0.0.1", echo.port))
            r = recv_exact(c, 2, "reply to a non-loopback client")
            check(r[1] != 0, "a client from %s (not loopback) got REP 00 with no rules in the file" % ip)
        # 05 FF or a close is an acceptable refusal too
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        c.close()
    check(echo.accepted == 1, "the echo server saw %d connections, expected 1 (the loopback client's)"
          % echo.accepted)


# ------------------------------------------------------------ access rules

@case("acl_denied_destination")
def acl_denied_destination(ctx):
    need_tools("curl", "ncat")
    denied_host = ctx.tcp_server(lambda conn, peer: conn.recv(1), host="127.0.0.2")
    denied_port = ctx.tcp_server(lambda conn, peer: conn.recv(1))
    echo = ctx.echo_server()
    http_port = ctx.http_server(("127.0.0.1",))
    p, _ = conf_proxy(ctx, rules_conf(
        '{ action = "deny"; to = ["127.0.0.2/32"]; }',
        '{ action = "deny"; ports = ["%d"]; }' % denied_port.port,
        ALLOW_LOOPBACK))

    # Raw SOCKS5: 0x02 for both kinds of denial.
    deny_reply(ctx, p, "127.0.0.2", denied_host.port)
    deny_reply(ctx, p, "127.0.0.1", denied_port.port)
    # SOCKS4: CD 91.
    socks4_expect_reject(ctx, p, socks4_request(1, denied_host.port, "127.0.0.2"), "SOCKS4 CONNECT to 127.0.0.2")
    socks4_expect_reject(ctx, p, socks4_request(1, denied_port.port), "SOCKS4 CONNECT to a denied port")
    # curl and ncat fail.
    for host, port in (("127.0.0.2", denied_host.port), ("127.0.0.1", denied_port.port)):
        for opt in ("--socks5", "--socks5-hostname", "--socks4"):
            r = ctx.run(["curl", "-sS", "--max-time", "10", opt, "127.0.0.1:%d" % p.port,
                         "http://%s:%d/x" % (host, port)], timeout=20)
            check(r.returncode != 0, "curl %s to the denied %s:%d exited 0" % (opt, host, port))
        r = ctx.run(["ncat", "--proxy-type", "socks5", "--proxy", "127.0.0.1:%d" % p.port, host, str(port)],
                    input=b"hello\n", timeout=20)
        check(r.returncode != 0, "ncat to the denied %s:%d exited 0 (stdout %r)" % (host, port, r.stdout[:100]))
    time.sleep(0.2)
    check(not denied_host.conns and not denied_port.conns,
          "denied targets were connected to anyway: 127.0.0.2 saw %d, the denied port %d connections"
          % (len(denied_host.conns), len(denied_port.conns)))

    # The allowed ones still work, with every client.
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    s4, _ = socks4_connect(ctx, p, echo.port)
    echo_roundtrip(s4)
    curl_fetch(ctx, ["--socks5", "127.0.0.1:%d" % p.port], "http://127.0.0.1:%d/" % http_port, "small.bin")
    lines = b"".join(b"line %d\n" % i for i in range(50))
    r = ctx.run(["ncat", "--proxy-type", "socks5", "--proxy", "127.0.0.1:%d" % p.port, "127.0.0.1",
                 str(echo.port)], input=lines, timeout=30)
    check(r.returncode == 0 and r.stdout == lines, "ncat to the allowed echo server: exit %d, %d of %d bytes back"
          % (r.returncode, len(r.stdout), len(lines)))


@case("acl_dns_rebinding")
def acl_dns_rebinding(ctx):
    """A name that resolves into a denied range is denied although the request
    named no address; a hosts rule denies by name."""
    dns = ctx.dns_stub()
    guarded = ctx.echo_server()   # 127.0.0.1:guarded.port is denied
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf(
        '{ action = "deny"; to = ["127.0.0.1/32"]; ports = ["%d"]; }' % guarded.port,
        ALLOW_LOOPBACK), args=["--resolver", dns.spec])
    deny_reply(ctx, p, "127.0.0.1", guarded.port)
    deny_reply(ctx, p, "good.test", guarded.port, "CONNECT good.test:%d (resolves to the denied 127.0.0.1)"
               % guarded.port)
    check(dns.wait_query("good.test", 1), "the server never asked DNS for good.test")
    socks4_expect_reject(ctx, p, socks4_request(1, guarded.port, host="good.test"),
                         "SOCKS4a CONNECT good.test (resolves to a denied address)")
    s, _ = socks_connect(ctx, p, "good.test", echo.port)
    echo_roundtrip(s)
    check(guarded.accepted == 0, "the guarded port was connected to %d times" % guarded.accepted)

    # hosts: a suffix rule and an exact rule.
    p2, _ = conf_proxy(ctx, rules_conf('{ action = "deny"; hosts = [".test"]; }', ALLOW_LOOPBACK),
                       args=["--resolver", dns.spec], name="hosts.conf")
    deny_reply(ctx, p2, "good.test", echo.port, "CONNECT good.test (hosts = [\".test\"] denies it)")
    deny_reply(ctx, p2, "late.test", echo.port, "CONNECT late.test (hosts = [\".test\"] denies it)")
    s, _ = socks_connect(ctx, p2, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    p3, _ = conf_proxy(ctx, rules_conf('{ action = "deny"; hosts = ["good.test"]; }', ALLOW_LOOPBACK),
                       args=["--resolver", dns.spec], name="exact.conf")
    deny_reply(ctx, p3, "good.test", echo.port, "CONNECT good.test (hosts = [\"good.test\"])")
    s, _ = socks_connect(ctx, p3, "late.test", echo.port)   # another name: not matched by the exact rule
    echo_roundtrip(s)


@case("acl_hosts_name_variants")
def acl_hosts_name_variants(ctx):
    """A hosts deny rule cannot be dodged by spelling: DNS names are
    case-insensitive and a trailing dot names the same host."""
    dns = ctx.dns_stub()
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf('{ action = "deny"; hosts = [".test", "good.test"]; }', ALLOW_LOOPBACK),
                      args=["--resolver", dns.spec])
    for name in ("GOOD.TEST", "Good.Test", "good.test.", "LATE.test"):
        s, rep = connect_reply(ctx, p, name, echo.port)
        check(rep == 0x02, "CONNECT %s:%d: REP 0x%02x, expected 0x02 (hosts = [\".test\", \"good.test\"] deny)"
              % (name, echo.port, rep))
        s.close()
    check(echo.accepted == 0, "the echo server was reached %d times through name variants" % echo.accepted)


def request_reply(ctx, p, cmd, host, port, auth=None, source=None):
    """A request (1 CONNECT, 2 BIND, 3 UDP ASSOCIATE) after the greeting (and
    login); returns the REP of the (first) reply."""
    if source:
        s = socket.create_connection(p.addr, timeout=IO_TIMEOUT, source_address=(source, 0))
        ctx.defer(s.close)
    else:
        s = open_proxy_socket(ctx, p)
    if auth:
        socks5_login(s, *auth)
    else:
        s.sendall(GREETING)
        m = read_method_reply(s)
        check(m == b"\x05\x00", "method selection reply %s, expected 05 00" % hexb(m))
    s.sendall(request(host, port, cmd=cmd))
    r = read_reply(s)
    s.close()
    return r.rep


@case("acl_users_commands_sources")
def acl_users_commands_sources(ctx):
    """Rules on user, command and client address, first match wins."""
    need_option("--auth", "--users")
    users = write_users(ctx, ["alice:" + make_hash(ALICE[1]), "bob:" + make_hash(BOB[1])])
    echo = ctx.echo_server()
    vip = ctx.echo_server()      # only bob may reach it
    p, _ = conf_proxy(ctx, 'auth = "password";\nusers = "%s";\n%s' % (users, rules_conf(
        '{ action = "deny"; from = ["127.0.0.5/32"]; }',
        '{ action = "deny"; commands = ["bind", "udp"]; users = ["alice"]; }',
        '{ action = "allow"; users = ["bob"]; ports = ["%d"]; }' % vip.port,
        '{ action = "deny"; ports = ["%d"]; }' % vip.port,
        ALLOW_LOOPBACK)))
    got = {
        "alice CONNECT vip": request_reply(ctx, p, 1, "127.0.0.1", vip.port, ALICE),
        "bob CONNECT vip": request_reply(ctx, p, 1, "127.0.0.1", vip.port, BOB),
        "alice CONNECT echo": request_reply(ctx, p, 1, "127.0.0.1", echo.port, ALICE),
        "alice BIND": request_reply(ctx, p, 2, "127.0.0.1", 0, ALICE),
        "alice UDP ASSOCIATE": request_reply(ctx, p, 3, "0.0.0.0", 0, ALICE),
        "bob UDP ASSOCIATE": request_reply(ctx, p, 3, "0.0.0.0", 0, BOB),
        "bob from 127.0.0.5 CONNECT echo": request_reply(ctx, p, 1, "127.0.0.1", echo.port, BOB,
                                                         source="127.0.0.5"),
        "bob from 127.0.0.6 CONNECT echo": request_reply(ctx, p, 1, "127.0.0.1", echo.port, BOB,
                                                         source="127.0.0.6"),
    }
    want = {"alice CONNECT vip": 2, "bob CONNECT vip": 0, "alice CONNECT echo": 0, "alice BIND": 2,
            "alice UDP ASSOCIATE": 2, "bob UDP ASSOCIATE": 0, "bob from 127.0.0.5 CONNECT echo": 2,
            "bob from 127.0.0.6 CONNECT echo": 0}
    bad = ["%s: REP 0x%02x, expected 0x%02x" % (k, got[k], want[k]) for k in want if got[k] != want[k]]
    check(not bad, "%d of %d requests answered against the rules" % (len(bad), len(want)), "\n".join(bad))


@case("acl_ipv4_mapped")
def acl_ipv4_mapped(ctx):
    """An IPv4 rule also covers the IPv4-mapped IPv6 form of its addresses
    (a CONNECT to ::ffff:127.0.0.1 reaches 127.0.0.1)."""
    guarded = ctx.echo_server()
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf('{ action = "deny"; to = ["127.0.0.1/32"]; ports = ["%d"]; }' % guarded.port,
                                      ALLOW_LOOPBACK, '{ action = "allow"; to = ["::ffff:127.0.0.0/104"]; }'))
    deny_reply(ctx, p, "::ffff:127.0.0.1", guarded.port, "CONNECT [::ffff:127.0.0.1] (127.0.0.1 denied)")
    s, _ = socks_connect(ctx, p, "::ffff:127.0.0.1", echo.port)
    echo_roundtrip(s)
    check(guarded.accepted == 0, "the guarded port was reached %d times" % guarded.accepted)


@case("acl_unspecified_destination")
def acl_unspecified_destination(ctx):
    """CONNECT 0.0.0.0:PORT is connected by the kernel to the local host: a deny
    on 127.0.0.0/8 ("no loopback") must not be dodged that way."""
    guarded = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf('{ action = "deny"; to = ["127.0.0.0/8"]; }',
                                      '{ action = "allow"; from = ["127.0.0.0/8"]; }'))
    for host in ("0.0.0.0", "::ffff:0.0.0.0"):
        s, rep = connect_reply(ctx, p, host, guarded.port)
        s.close()
        check(rep != 0, "CONNECT %s:%d answered REP 00 although 127.0.0.0/8 is denied: the kernel connects "
              "an unspecified destination to the local host" % (host, guarded.port))
    check(guarded.accepted == 0, "the loopback echo server was reached %d times" % guarded.accepted)


# -------------------------------------------------------------------- reload

class Streamer:
    """Tunnels streaming data to echo servers, from one selector thread, at a
    bounded total rate; every received byte is compared with what was sent."""

    PATTERN_LEN = (1 << 20) + 7

    def __init__(self, socks, rate=16 << 20, chunk=4096, window=64 << 10):
        self.block = os.urandom(self.PATTERN_LEN)
        self.block2 = self.block + self.block
        self.rate, self.chunk, self.window = rate, chunk, window
        self.conns = []
        self.sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            s.setblocking(False)
            st = {"i": i, "sock": s, "off": random.randrange(self.PATTERN_LEN), "sent": 0, "recv": 0,
                  "err": None, "eof": False, "shut": False}
            self.conns.append(st)
            self.sel.register(s, selectors.EVENT_READ, st)
        self.rounds = 0
        self.stop_flag = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="streamer")
        self.thread.start()

    def _expected(self, st, start, n):
        o = (st["off"] + start) % self.PATTERN_LEN
        return self.block2[o:o + n]

    def _loop(self):
        budget, last = 0.0, time.monotonic()
        try:
            while True:
                now = time.monotonic()
                budget = min(budget + (now - last) * self.rate, self.rate * 0.1)
                last = now
                stopping = self.stop_flag.is_set()
                # Start each round at another tunnel, so the budget is shared fairly.
                k = self.rounds % len(self.conns)
                self.rounds += 1
                for st in self.conns[k:] + self.conns[:k]:
                    if st["err"] or st["shut"]:
                        continue
                    if stopping:
                        try:
                            st["sock"].shutdown(socket.SHUT_WR)
                        except OSError as e:
                            st["err"] = "shutdown: %r" % e
                        st["shut"] = True
                        continue
                    if budget <= 0 or st["sent"] - st["recv"] >= self.window:
                        continue
                    data = self._expected(st, st["sent"], self.chunk)
                    try:
                        n = st["sock"].send(data)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        st["err"] = "send after %d bytes: %r" % (st["sent"], e)
                        continue
                    st["sent"] += n
                    budget -= n
                for key, ev in self.sel.select(0.005):
                    st = key.data
                    try:
                        b = st["sock"].recv(262144)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        st["err"] = "recv after %d of %d bytes: %r" % (st["recv"], st["sent"], e)
                        self.sel.unregister(st["sock"])
                        continue
                    if not b:
                        st["eof"] = True
                        self.sel.unregister(st["sock"])
                        if not st["shut"]:
                            st["err"] = "EOF from the proxy after %d of %d bytes (tunnel dropped)" % (
                                st["recv"], st["sent"])
                        continue
                    if b != self._expected(st, st["recv"], len(b)):
                        st["err"] = "received bytes %d..%d differ from those sent" % (st["recv"], st["recv"] + len(b))
                        self.sel.unregister(st["sock"])
                        continue
                    st["recv"] += len(b)
                if stopping and all(st["eof"] or st["err"] for st in self.conns):
                    return
        finally:
            self.done.set()

    def errors(self):
        return [(st["i"], st["err"]) for st in self.conns if st["err"]]

    def finish(self, timeout=20.0):
        self.stop_flag.set()
        self.done.wait(timeout)
        errs = self.errors()
        for st in self.conns:
            if not st["err"] and (not st["eof"] or st["recv"] != st["sent"]):
                errs.append((st["i"], "sent %d, got back %d, EOF %s" % (st["sent"], st["recv"], st["eof"])))
        return errs


class Handshaker:
    """New handshakes every few ms from a thread: CONNECT, a short echo, close."""

    def __init__(self, ctx, p, port, interval=0.004):
        self.ctx, self.p, self.port, self.interval = ctx, p, port, interval
        self.ok = 0
        self.failures = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="handshaker")
        self.thread.start()

    def _one(self):
        s = socket.create_connection(self.p.addr, timeout=10)
        try:
            s.sendall(GREETING + request("127.0.0.1", self.port))
            m = recv_exact(s, 2, "method reply")
            check(m == b"\x05\x00", "method reply %s" % hexb(m))
            r = read_reply(s)
            check(r.rep == 0, "REP 0x%02x" % r.rep)
            data = os.urandom(64)
            s.sendall(data)
            check(recv_exact(s, 64, "echo") == data, "echo differs")
        finally:
            s.close()

    def _loop(self):
        while not self.stop_flag.is_set():
            try:
                self._one()
                self.ok += 1
            except Exception as e:
                self.failures.append("%.3f: %s" % (time.monotonic(), e))
            time.sleep(self.interval)

    def finish(self):
        self.stop_flag.set()
        self.thread.join(20)


@case("reload_under_load", timeout=150)
def reload_under_load(ctx):
    echo = ctx.echo_server()
    probe = ctx.echo_server()   # allowed by rule set A, denied by B: shows each reload took effect
    # Both sets allow the streaming and handshake traffic; with close_denied_on_reload
    # every reload re-checks the 200 tunnels, and none may be closed.
    opt = "close_denied_on_reload = true;"
    set_a = rules_conf('{ action = "deny"; to = ["127.0.0.2/32"]; }',
                       '{ action = "allow"; from = ["127.0.0.0/8"]; to = ["127.0.0.1/32"]; commands = ["connect"]; }',
                       extra=opt)
    set_b = rules_conf('{ action = "deny"; ports = ["%d"]; }' % probe.port,
                       '{ action = "allow"; from = ["127.0.0.1/32"]; to = ["127.0.0.0/8"]; ports = ["1024-65535"]; }',
                       extra=opt)
    p, path = conf_proxy(ctx, set_a, args=["--access-log", "off"])
    socks = []
    for i in range(200):
        s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
        socks.append(s)
    streamer = Streamer(socks)
    hs = Handshaker(ctx, p, echo.port)
    reloads, probe_errors = 0, []
    try:
        time.sleep(0.5)
        for i in range(20):
            use_b = i % 2 == 0
            write_conf(ctx, set_b if use_b else set_a, path=path)
            if i % 4 < 2:
                line = sighup_reload(p)
                check(line.startswith("reloaded"), "reload %d (SIGHUP) failed" % (i + 1),
                      "stderr:\n" + tail(p.stderr()))
            else:
                st, body = http_reload(p)
                check(st == 200, "reload %d: POST /reload answered %d: %r" % (i + 1, st, body))
            reloads += 1
            s, rep = connect_reply(ctx, p, "127.0.0.1", probe.port)
            s.close()
            want = 0x02 if use_b else 0x00
            if rep != want:
                probe_errors.append("after reload %d (rule set %s) the probe got REP 0x%02x, expected 0x%02x"
                                    % (i + 1, "B" if use_b else "A", rep, want))
            time.sleep(0.15)
        time.sleep(0.5)
    finally:
        hs.finish()
        errs = streamer.finish()
    p.check_alive()
    moved = sum(st["recv"] for st in streamer.conns)
    print("    info reload_under_load[%s]: %d reloads, %d handshakes ok, %d failed, 200 tunnels moved %.1f MiB"
          % (ctx.relay, reloads, hs.ok, len(hs.failures), moved / 1048576.0), flush=True)
    check(not errs, "%d of 200 streaming tunnels broke during %d reloads" % (len(errs), reloads),
          "\n".join("tunnel %d: %s" % e for e in errs[:20]))
    check(not hs.failures, "%d of %d handshakes failed during %d reloads" % (
        len(hs.failures), hs.ok + len(hs.failures), reloads), "\n".join(hs.failures[:20]))
    check(not probe_errors, "rules did not follow the reloads", "\n".join(probe_errors))
    check(hs.ok >= 100, "only %d handshakes completed during the reloads" % hs.ok)
    idle = [(st["i"], st["sent"], st["recv"]) for st in streamer.conns if st["recv"] == 0]
    check(not idle, "%d tunnels moved no data" % len(idle),
          "\n".join("tunnel %d: sent %d, got back %d" % t for t in idle[:20]))
    m = scrape(p)
    ok = metric(m, "ringsocks_reloads_total", result="ok")
    check(ok == reloads, "ringsocks_reloads_total{result=\"ok\"} is %s after %d reloads" % (ok, reloads))


BROKEN_SYNTAX = """\
rules = (
  { action = "allow"; from = ["127.0.0.0/8"]; }
  { action = "deny"; }
);
"""   # line 3: a missing comma between two groups


@case("reload_broken_config")
def reload_broken_config(ctx):
    blocked = ctx.echo_server(host="127.0.0.2")
    echo = ctx.echo_server()
    p, path = conf_proxy(ctx, rules_conf('{ action = "deny"; to = ["127.0.0.2/32"]; }', ALLOW_LOOPBACK))
    kept, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(kept)

    for text, line_no, what in ((BROKEN_SYNTAX, 3, "a syntax error"),
                                ('handshake_timeout = 5;\nrelay = "zerocopy";\n' +
                                 rules_conf(ALLOW_LOOPBACK), 2, "an invalid value")):
        write_conf(ctx, text, path=path)
        before = p.stderr()
        line = sighup_reload(p)
        check(line == "reload failed", "SIGHUP with %s in the file: %r, expected 'reload failed'" % (what, line))
        new = p.stderr()[len(before):]
        check("%s:%d:" % (path, line_no) in new, "the failed reload (%s) does not name %s:%d" % (what, path, line_no),
              "stderr since the SIGHUP:\n" + new)
        # The old rules are still in force.
        deny_reply(ctx, p, "127.0.0.2", blocked.port, "CONNECT 127.0.0.2 after a failed reload (%s)" % what)
        s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
        echo_roundtrip(s)
        tunnel_alive(kept, "a tunnel opened before the failed reload")
        st, body = http_reload(p)
        check(st == 500, "POST /reload with %s in the file answered %d, expected 500: %r" % (what, st, body))
        check("%s:%d:" % (path, line_no) in body, "POST /reload's 500 answer does not name %s:%d: %r"
              % (path, line_no, body))
        p.check_alive()
    check(blocked.accepted == 0, "127.0.0.2 was reached %d times" % blocked.accepted)
    m = scrape(p)
    failed = metric(m, "ringsocks_reloads_total", result="failed")
    check(failed == 4, "ringsocks_reloads_total{result=\"failed\"} is %s after 4 failed reloads" % failed)

    # Mended: the new rules (127.0.0.2 allowed now) apply.
    write_conf(ctx, rules_conf(ALLOW_LOOPBACK), path=path)
    st, body = http_reload(p)
    check(st == 200, "POST /reload with a good file again answered %d: %r" % (st, body))
    s, _ = socks_connect(ctx, p, "127.0.0.2", blocked.port)
    echo_roundtrip(s)


def _users_conf(users_path, extra=""):
    return 'auth = "password";\nusers = "%s";\n%s\n%s' % (users_path, extra, rules_conf(ALLOW_LOOPBACK))


def _removed_user(ctx, close_removed):
    need_option("--auth", "--users")
    ha, hb = make_hash(ALICE[1]), make_hash(BOB[1])
    users = write_users(ctx, ["alice:" + ha, "bob:" + hb])
    extra = "" if close_removed is None else "close_removed_users = %s;" % ("true" if close_removed else "false")
    p, path = conf_proxy(ctx, _users_conf(users, extra))
    echo = ctx.echo_server()
    sa = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    sb = login_connect(ctx, p, BOB[0], BOB[1], echo.port)
    echo_roundtrip(sa)
    echo_roundtrip(sb)
    write_users(ctx, ["# alice removed", "bob:" + hb])
    line = sighup_reload(p)
    check(line.startswith("reloaded"), "reload after removing alice: %r" % line, tail(p.stderr()))
    if close_removed is False:
        time.sleep(1.0)
        tunnel_alive(sa, "alice's tunnel with close_removed_users = false")
    else:
        how, took = expect_tunnel_closed(sa, 5.0, "alice removed from the users file")
    tunnel_alive(sb, "bob's tunnel after alice was removed")
    expect_login_fail(ctx, p, ALICE[0], ALICE[1], "alice after her removal")
    sb2 = login_connect(ctx, p, BOB[0], BOB[1], echo.port)
    echo_roundtrip(sb2)
    for c in (sa, sb, sb2):
        c.close()
    check_gauges_settle(p, "after alice's revoked tunnel and bob's tunnels")
    return p


@case("reload_removed_user")
def reload_removed_user(ctx):
    p = _removed_user(ctx, None)   # close_removed_users defaults to true
    # The access log (stderr by default) says why alice's tunnel ended.
    def alice_lines():
        return [l for l in p.stderr().splitlines() if " user=alice " in l and " cmd=connect " in l]
    wait_until(lambda: any("end=revoked" in l for l in alice_lines()), 3.0)
    lines = alice_lines()
    check(any("end=revoked" in l for l in lines), "no access-log line for alice's tunnel with end=revoked",
          "alice's lines:\n" + "\n".join(lines))


@case("reload_removed_user_kept")
def reload_removed_user_kept(ctx):
    _removed_user(ctx, False)


def _close_denied(ctx, flag):
    dns = ctx.dns_stub()
    echo = ctx.echo_server()
    other = ctx.echo_server()
    opt = "close_denied_on_reload = %s;" % ("true" if flag else "false")
    p, path = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK, extra=opt), args=["--resolver", dns.spec])
    s_ip, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    s_name, _ = socks_connect(ctx, p, "good.test", other.port)
    s_ok, _ = socks_connect(ctx, p, "127.0.0.1", other.port)
    for s in (s_ip, s_name, s_ok):
        echo_roundtrip(s)
    write_conf(ctx, rules_conf('{ action = "deny"; ports = ["%d"]; }' % echo.port,
                               '{ action = "deny"; hosts = [".test"]; }', ALLOW_LOOPBACK, extra=opt), path=path)
    line = sighup_reload(p)
    check(line.startswith("reloaded"), "reload: %r" % line, tail(p.stderr()))
    if flag:
        expect_tunnel_closed(s_ip, 5.0, "tunnel to a port the new rules deny, close_denied_on_reload = true")
        expect_tunnel_closed(s_name, 5.0, "tunnel to good.test, which the new hosts rule denies, "
                             "close_denied_on_reload = true")
    else:
        time.sleep(1.0)
        tunnel_alive(s_ip, "tunnel to a port the new rules deny, close_denied_on_reload = false")
        tunnel_alive(s_name, "tunnel to good.test (denied by name now), close_denied_on_reload = false")
    tunnel_alive(s_ok, "tunnel to a destination the new rules still allow")
    deny_reply(ctx, p, "127.0.0.1", echo.port, "new CONNECT to the port denied since the reload")
    for c in (s_ip, s_name, s_ok):
        c.close()
    check_gauges_settle(p, "after tunnels closed by the reload")


@case("reload_close_denied_true")
def reload_close_denied_true(ctx):
    _close_denied(ctx, True)


@case("reload_close_denied_false")
def reload_close_denied_false(ctx):
    _close_denied(ctx, False)


@case("reload_broken_users_file")
def reload_broken_users_file(ctx):
    """A users file that fails to load on reload changes nothing: the old users
    still log in, the error names the users file and line; a missing file too."""
    need_option("--auth", "--users")
    ha, hb = make_hash(ALICE[1]), make_hash(BOB[1])
    users = write_users(ctx, ["alice:" + ha, "bob:" + hb])
    p, path = conf_proxy(ctx, _users_conf(users))
    echo = ctx.echo_server()
    echo_roundtrip(login_connect(ctx, p, ALICE[0], ALICE[1], echo.port))
    write_users(ctx, ["# alice is gone, carol has no hash", "bob:" + hb, "carol"])
    line = sighup_reload(p)
    check(line == "reload failed", "SIGHUP with a broken users file: %r, expected 'reload failed'" % line,
          tail(p.stderr()))
    check("%s:3:" % users in p.stderr(), "the failed reload does not name %s:3" % users, tail(p.stderr()))
    st, body = http_reload(p)
    check(st == 500 and "%s:3:" % users in body, "POST /reload with a broken users file: %d %r, expected 500 "
          "naming %s:3" % (st, body, users))
    echo_roundtrip(login_connect(ctx, p, ALICE[0], ALICE[1], echo.port))
    os.unlink(users)
    line = sighup_reload(p)
    check(line == "reload failed", "SIGHUP with the users file missing: %r, expected 'reload failed'" % line,
          tail(p.stderr()))
    echo_roundtrip(login_connect(ctx, p, ALICE[0], ALICE[1], echo.port))
    echo_roundtrip(login_connect(ctx, p, BOB[0], BOB[1], echo.port))


@case("reload_users_changed")
def reload_users_changed(ctx):
    """A reload that changes a password (and adds a user) applies at once: the
    old password is refused even though it was verified (and cached) before."""
    need_option("--auth", "--users")
    carol = ("carol", "carol-pw-3")
    new_alice = "alice-pw-NEW"
    hb = make_hash(BOB[1])
    users = write_users(ctx, ["alice:" + make_hash(ALICE[1]), "bob:" + hb])
    p, path = conf_proxy(ctx, _users_conf(users))
    echo = ctx.echo_server()
    for _ in range(3):   # verified, then answered from the cache
        echo_roundtrip(login_connect(ctx, p, ALICE[0], ALICE[1], echo.port))
    expect_login_fail(ctx, p, carol[0], carol[1], "carol before she is added")
    write_users(ctx, ["alice:" + make_hash(new_alice), "bob:" + hb, "carol:" + make_hash(carol[1])])
    line = sighup_reload(p)
    check(line.startswith("reloaded"), "reload: %r" % line, tail(p.stderr()))
    for _ in range(3):
        expect_login_fail(ctx, p, ALICE[0], ALICE[1], "alice with her old password after the change")
    echo_roundtrip(login_connect(ctx, p, ALICE[0], new_alice, echo.port))
    echo_roundtrip(login_connect(ctx, p, carol[0], carol[1], echo.port))
    echo_roundtrip(login_connect(ctx, p, BOB[0], BOB[1], echo.port))


def _report(p, before):
    """The `reloaded (policy N): ...` line written since before (stderr text)."""
    lines = [l for l in p.stderr()[len(before):].splitlines() if l.startswith("ringsocks: reloaded")]
    check(len(lines) == 1, "expected one 'ringsocks: reloaded' line, got %d" % len(lines),
          p.stderr()[len(before):])
    return lines[0][len("ringsocks: "):]


@case("reload_report")
def reload_report(ctx):
    """A reload says what it changed: the keys it applied, the ones that need a
    restart (only those that changed), users added and removed, and how many
    tunnels it closed, on stderr and in the POST /reload answer."""
    need_option("--auth", "--users")
    carol = ("carol", "carol-pw-3")
    ha, hb = make_hash(ALICE[1]), make_hash(BOB[1])
    users = write_users(ctx, ["alice:" + ha, "bob:" + hb])
    p, path = conf_proxy(ctx, _users_conf(users, "idle_timeout = 7200;\nkeepalive_idle = 120;"))
    echo = ctx.echo_server()
    sa = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    sb = login_connect(ctx, p, BOB[0], BOB[1], echo.port)
    echo_roundtrip(sa)
    echo_roundtrip(sb)

    write_users(ctx, ["bob:" + hb, "carol:" + make_hash(carol[1])])
    write_conf(ctx, _users_conf(users, "idle_timeout = 600;\nkeepalive_idle = 60;"), path=path)
    before = p.stderr()
    line = sighup_reload(p)
    check(line.startswith("reloaded"), "reload: %r" % line, tail(p.stderr()))
    report = _report(p, before)
    for want in ("applied: idle_timeout 7200 -> 600;", "needs a restart: keepalive_idle 120 -> 60;",
                 "users added: carol;", "users removed: alice;", "tunnels revoked: 1"):
        check(want in report, "the reload report lacks %r" % want, report)
    # Only what changed: the settings given on the command line and left alone are not named.
    for unchanged in ("relay", "shards", "handshake_timeout", "listen"):
        check(" %s " % unchanged not in report, "the report names %s, which did not change" % unchanged,
              report)
    expect_tunnel_closed(sa, 5.0, "alice's tunnel after her removal")
    tunnel_alive(sb, "bob's tunnel")

    # Again with nothing new: nothing applied, the restart still pending, no user, no tunnel.
    before = p.stderr()
    st, body = http_reload(p)
    check(st == 200, "POST /reload answered %d: %r" % (st, body))
    report = _report(p, before)
    check(body.strip() == report, "POST /reload's answer is not the report on stderr",
          "answer: %r\nstderr: %r" % (body, report))
    check(re.fullmatch(r"reloaded \(policy \d+\): needs a restart: keepalive_idle 120 -> 60; "
                       r"tunnels revoked: 0", report), "second reload's report: %r" % report)
    sb.close()


@case("reload_timeouts")
def reload_timeouts(ctx):
    """handshake_timeout changes on reload: 10 s, then 1 s."""
    p, path = conf_proxy(ctx, "handshake_timeout = 10;\n" + rules_conf(ALLOW_LOOPBACK))
    c = ctx.connect(p.addr)
    c.settimeout(2.0)
    try:
        b = c.recv(1)
        raise Fail("a silent client was closed (%r) within 2 s with handshake_timeout = 10" % b)
    except socket.timeout:
        pass
    c.close()
    write_conf(ctx, "handshake_timeout = 1;\n" + rules_conf(ALLOW_LOOPBACK), path=path)
    st, body = http_reload(p)
    check(st == 200, "POST /reload answered %d: %r" % (st, body))
    t0 = time.monotonic()
    c = ctx.connect(p.addr)
    expect_close(c, timeout=5.0, after="connect (silent client, handshake_timeout = 1 since the reload)")
    took = time.monotonic() - t0
    check(took < 2.5, "silent client closed after %.1f s; handshake_timeout = 1 since the reload" % took)


# --------------------------------------------------------------------- drain

def _drain_streaming(ctx, trigger):
    """A streaming tunnel survives the start of a drain, new clients are refused,
    /healthz says 503, and the server exits 0 once the tunnel closes."""
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), args=["--drain-timeout", "5"])
    admin = admin_addr(p)
    st, body, _ = admin_request(admin, "GET", "/healthz")
    check(st == 200, "GET /healthz before the drain answered %d: %r" % (st, body))
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    t0 = time.monotonic()
    if trigger == "signal":
        p.proc.send_signal(signal.SIGTERM)
    else:
        st, body, _ = admin_request(admin, "POST", "/drain")
        check(st in (200, 202), "POST /drain answered %d: %r" % (st, body))
    p.exit_expected = True
    check(wait_until(lambda: "draining" in p.stderr(), 3), "no 'draining' line after the %s"
          % ("SIGTERM" if trigger == "signal" else "POST /drain"), tail(p.stderr()))
    n = 0
    while time.monotonic() - t0 < 1.2:
        tunnel_alive(s, "streaming tunnel %.1f s into the drain" % (time.monotonic() - t0), 16384)
        n += 1
    st, body, _ = admin_request(admin, "GET", "/healthz")
    check(st == 503, "GET /healthz while draining answered %d, expected 503: %r" % (st, body))
    m = scrape(p)
    check(metric(m, "ringsocks_draining") == 1, "ringsocks_draining is %s while draining"
          % metric(m, "ringsocks_draining"))
    how = new_client_refused(p)
    check(p.proc.poll() is None, "the server exited (%s) with a tunnel still open, %.1f s into a 5 s drain"
          % (fmt_status(p.proc.returncode), time.monotonic() - t0))
    tunnel_alive(s, "streaming tunnel after a new client was refused")
    s.shutdown(socket.SHUT_WR)
    recv_until_eof(s, what="echo after our half-close")
    s.close()
    t_close = time.monotonic()
    rc, took = wait_exit(p, 4.0)
    check(rc is not None, "the server still runs %.1f s after its last tunnel closed (drain started %.1f s ago)"
          % (took, time.monotonic() - t0), tail(p.stderr()))
    check(rc == 0, "after the drain: %s, expected exit 0" % fmt_status(rc), tail(p.stderr()))
    check(time.monotonic() - t0 < 5.0 or t_close - t0 > 4.0,
          "the server exited only at the drain deadline, not when its last tunnel closed")
    p.stop()
    return how


@case("drain_sigterm_streaming")
def drain_sigterm_streaming(ctx):
    _drain_streaming(ctx, "signal")


@case("drain_admin_streaming")
def drain_admin_streaming(ctx):
    _drain_streaming(ctx, "admin")


@case("drain_deadline_idle_tunnel")
def drain_deadline_idle_tunnel(ctx):
    """An idle tunnel that never closes is closed at the drain deadline; then exit 0."""
    drain = 3
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), args=["--drain-timeout", str(drain)])
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    # Signal late in a second of CLOCK_MONOTONIC (the clock of time.monotonic()):
    # a deadline kept in whole seconds and rounded down then shows as a drain
    # up to a second short, every time rather than by chance.
    time.sleep((0.9 - time.monotonic() % 1.0) % 1.0)
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    p.exit_expected = True
    time.sleep(1.0)
    tunnel_alive(s, "idle tunnel 1 s into a %d s drain" % drain)
    how, _ = expect_tunnel_closed(s, drain + 3.0, "idle tunnel during a %d s drain" % drain)
    closed_at = time.monotonic() - t0
    check(closed_at >= drain - 0.3, "the idle tunnel was closed %.1f s into a %d s drain (before the deadline)"
          % (closed_at, drain))
    rc, _ = wait_exit(p, max(0.1, drain + 3.0 - (time.monotonic() - t0)))
    total = time.monotonic() - t0
    check(rc is not None, "the server still runs %.1f s after SIGTERM with drain_timeout %d" % (total, drain),
          tail(p.stderr()))
    check(rc == 0, "after the drain deadline: %s, expected exit 0" % fmt_status(rc), tail(p.stderr()))
    p.stop()


@case("drain_second_signal_stops")
def drain_second_signal_stops(ctx):
    """SIGINT starts a drain (30 s); a second signal (SIGTERM) stops at once."""
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), args=["--drain-timeout", "30"])
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    p.proc.send_signal(signal.SIGINT)
    p.exit_expected = True
    check(wait_until(lambda: "draining" in p.stderr(), 3), "no 'draining' line after SIGINT", tail(p.stderr()))
    time.sleep(0.5)
    tunnel_alive(s, "tunnel 0.5 s into a 30 s drain started by SIGINT")
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    how, took = expect_tunnel_closed(s, 5.0, "tunnel after a second signal during the drain")
    check(took < 1.0, "the tunnel was closed %.1f s after the second signal; 'stop now' should be at once" % took)
    rc, _ = wait_exit(p, 6.0)
    check(rc is not None, "the server still runs %.1f s after the second signal" % (time.monotonic() - t0),
          tail(p.stderr()))
    check(rc == 0, "after the second signal: %s, expected exit 0" % fmt_status(rc), tail(p.stderr()))
    p.stop()


# ------------------------------------------------------------------- metrics

@case("metrics_values")
def metrics_values(ctx):
    need_tools("curl")
    need_option("--auth", "--users")
    users = write_users(ctx, ["alice:" + make_hash(ALICE[1])])
    blocked = ctx.echo_server(host="127.0.0.2")
    echo = ctx.echo_server()
    p, path = conf_proxy(ctx, 'auth = "password";\nusers = "%s";\n%s' % (
        users, rules_conf('{ action = "deny"; to = ["127.0.0.2/32"]; }', ALLOW_LOOPBACK)))
    admin = admin_addr(p)
    sizes = [1000, 20000, 65536, 300000, 7]
    for n in sizes:
        s = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        echo_roundtrip(s, n)
        s.shutdown(socket.SHUT_WR)
        recv_until_eof(s)
        s.close()
    s = open_proxy_socket(ctx, p)
    socks5_login(s, *ALICE)
    s.sendall(request("127.0.0.2", blocked.port))
    r = read_reply(s)
    check(r.rep == 0x02, "denied CONNECT: REP 0x%02x, expected 0x02" % r.rep)
    s.close()
    expect_login_fail(ctx, p, ALICE[0], "wrong password")
    url = "http://%s:%d/metrics" % admin

    def get():
        r = ctx.run(["curl", "-sS", "--max-time", "10", "-D", ctx.path("headers"), url], timeout=20)
        check(r.returncode == 0, "curl %s: exit %d %s" % (url, r.returncode, r.stderr.decode("utf-8", "replace")))
        return r.stdout

    want = len(sizes)
    total = sum(sizes)

    def ready():
        m = parse_prometheus(get().decode("utf-8", "replace"))
        v = metric(m, "ringsocks_tunnels_total", command="connect", reply="succeeded") or 0
        return m if v >= want and (metric(m, "ringsocks_auth_failures_total") or 0) >= 1 else None

    m = wait_until(ready, 5.0, 0.2)
    body = get()
    with open(ctx.path("headers"), "rb") as f:
        headers = f.read().decode("latin-1")
    check(re.search(r"(?im)^content-type:\s*text/plain", headers),
          "GET /metrics Content-Type is not text/plain", headers)
    check(m, "metrics never showed %d succeeded connect tunnels and an auth failure" % want,
          body.decode("utf-8", "replace")[:3000])

    def val(name, **labels):
        v = metric(m, name, **labels)
        check(v is not None, "no sample %s%s in /metrics" % (name, labels or ""))
        return v

    v = val("ringsocks_tunnels_total", command="connect", reply="succeeded")
    check(v >= want, "tunnels_total{connect,succeeded} = %g, expected >= %d" % (v, want))
    v = val("ringsocks_tunnels_total", command="connect", reply="not_allowed")
    check(v >= 1, "tunnels_total{connect,not_allowed} = %g, expected >= 1" % v)
    for d in ("up", "down"):
        v = val("ringsocks_relay_bytes_total", direction=d)
        check(v >= total, "relay_bytes_total{direction=\"%s\"} = %g, expected >= %d (bytes echoed)" % (d, v, total))
    check(val("ringsocks_acl_denied_total") >= 1, "acl_denied_total < 1 after a denied request")
    check(val("ringsocks_auth_failures_total") >= 1, "auth_failures_total < 1 after a wrong password")
    check(val("ringsocks_connections_accepted_total") >= want + 2, "connections_accepted_total below %d" % (want + 2))
    check(blocked.accepted == 0, "127.0.0.2 was reached")

    with open(ctx.path("metrics.txt"), "wb") as f:
        f.write(body)
    if shutil.which("promtool"):
        r = ctx.run(["promtool", "check", "metrics"], input=body, timeout=30)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        check(r.returncode == 0, "promtool check metrics: exit %d" % r.returncode, out)

    before = val("ringsocks_reloads_total", result="ok")
    st, text = http_reload(p)
    check(st == 200, "POST /reload answered %d: %r" % (st, text))
    sighup_reload(p)
    m = parse_prometheus(get().decode("utf-8", "replace"))
    after = metric(m, "ringsocks_reloads_total", result="ok")
    check(after == before + 2, "reloads_total{result=\"ok\"}: %s before, %s after two reloads" % (before, after))
    check_gauges_settle(p, "after the metrics traffic")


@case("admin_endpoints")
def admin_endpoints(ctx):
    """Methods and paths: what is not an endpoint is refused and changes nothing."""
    p, path = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK))
    admin = admin_addr(p)
    st, body, _ = admin_request(admin, "GET", "/healthz")
    check(st == 200 and body.strip() == "ok", "GET /healthz: %d %r, expected 200 ok" % (st, body))
    st, _, _ = admin_request(admin, "GET", "/no-such-path")
    check(st == 404, "GET /no-such-path answered %d, expected 404" % st)
    for method, path_ in (("GET", "/reload"), ("GET", "/drain")):
        st, _, _ = admin_request(admin, method, path_)
        check(st in (405, 404), "%s %s answered %d, expected 405" % (method, path_, st))
    check("draining" not in p.stderr(), "GET /drain started a drain", tail(p.stderr()))
    check(reload_count(p) == 0, "GET /reload reloaded", tail(p.stderr()))
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    # --admin off: no endpoint, no admin line.
    p2 = ctx.proxy(args=["-c", path, "--admin", "off"])
    check("admin on" not in p2.stderr(), "--admin off still printed an admin line", tail(p2.stderr()))


# ---------------------------------------------------------------- access log

def _wait_lines(path, n, timeout=5.0):
    def get():
        try:
            with open(path) as f:
                ls = [l for l in f.read().splitlines() if l.strip()]
        except FileNotFoundError:
            return None
        return ls if len(ls) >= n else None
    got = wait_until(get, timeout, 0.05)
    if got is None:
        try:
            with open(path) as f:
                have = f.read()
        except FileNotFoundError:
            have = "(no file)"
        raise Fail("access log %s: fewer than %d lines after %.0f s" % (os.path.basename(path), n, timeout),
                   have[-3000:])
    return got


def _exchange(ctx, p, host, port, up):
    """CONNECT host:port, send up bytes, half-close, read to EOF. Returns (client port, bytes back)."""
    s, _ = socks_connect(ctx, p, host, port)
    cport = s.getsockname()[1]
    s.sendall(os.urandom(up))
    s.shutdown(socket.SHUT_WR)
    got = recv_until_eof(s)
    s.close()
    return cport, len(got)


DOWN = 5000


def _sink_then_reply(conn, peer):
    """Read to EOF, then send DOWN bytes and close."""
    while conn.recv(65536):
        pass
    conn.sendall(b"d" * DOWN)
    conn.shutdown(socket.SHUT_WR)


def _access_log_run(ctx, fmt):
    dns = ctx.dns_stub()
    srv = ctx.tcp_server(_sink_then_reply)
    blocked = ctx.echo_server(host="127.0.0.2")
    echo = ctx.echo_server()
    log = ctx.path("access.log")
    p, _ = conf_proxy(ctx, rules_conf('{ action = "deny"; to = ["127.0.0.2/32"]; }', ALLOW_LOOPBACK),
                      args=["--access-log", log, "--log-format", fmt, "--resolver", dns.spec])
    conns = {}
    cport, down = _exchange(ctx, p, "127.0.0.1", srv.port, 3000)
    check(down == DOWN, "got %d bytes back, expected %d" % (down, DOWN))
    conns[cport] = dict(cmd="connect", version=5, dest="127.0.0.1:%d" % srv.port,
                        resolved="127.0.0.1:%d" % srv.port, rep=0, up=3000, down=DOWN, end="done")
    cport, _ = _exchange(ctx, p, "good.test", srv.port, 10)
    conns[cport] = dict(cmd="connect", version=5, dest="good.test:%d" % srv.port,
                        resolved="127.0.0.1:%d" % srv.port, rep=0, up=10, down=DOWN, end="done")
    s = open_proxy_socket(ctx, p)
    cport = s.getsockname()[1]
    s.sendall(GREETING + request("127.0.0.2", blocked.port))
    recv_exact(s, 2, "method reply")
    r = read_reply(s)
    check(r.rep == 2, "denied CONNECT: REP 0x%02x" % r.rep)
    s.close()
    conns[cport] = dict(cmd="connect", version=5, dest="127.0.0.2:%d" % blocked.port, rep=2, up=0, down=0,
                        end="denied")
    s4, _ = socks4_connect(ctx, p, echo.port)
    cport = s4.getsockname()[1]
    echo_roundtrip(s4, 777)
    s4.shutdown(socket.SHUT_WR)
    recv_until_eof(s4)
    s4.close()
    conns[cport] = dict(cmd="connect", version=4, dest="127.0.0.1:%d" % echo.port, up=777, down=777, end="done")

    lines = _wait_lines(log, len(conns))
    time.sleep(0.3)   # a duplicate would come right behind
    lines = _wait_lines(log, len(conns))
    recs = []
    for l in lines:
        if fmt == "json":
            try:
                rec = json.loads(l)
            except ValueError as e:
                raise Fail("access log line is not JSON (%s): %r" % (e, l))
        else:
            rec = parse_logfmt(l)
        recs.append((l, rec))
    keys = ["time", "shard", "id", "client", "user", "cmd", "version", "dest", "resolved", "egress", "rule", "rep",
            "up", "down", "duration_ms", "end", "end_time"]
    problems = []
    for l, rec in recs:
        if sorted(rec) != sorted(keys):
            problems.append("keys %s, expected %s: %s" % (sorted(rec), sorted(keys), l))
    check(not problems, "access log lines with the wrong keys", "\n".join(problems))
    by_port = {}
    for l, rec in recs:
        host, _, port = str(rec["client"]).rpartition(":")
        check(host == "127.0.0.1" and port.isdigit(), "client=%r is not 127.0.0.1:PORT: %s" % (rec["client"], l))
        by_port.setdefault(int(port), []).append((l, rec))
    problems = []
    for cport, want in conns.items():
        got = by_port.get(cport, [])
        what = "%s to %s (client port %d)" % (want["cmd"], want["dest"], cport)
        if len(got) != 1:
            problems.append("%d access log lines for %s, expected 1" % (len(got), what))
            continue
        l, rec = got[0]
        bad = []
        for k, v in want.items():
            have = rec[k]
            if fmt != "json" and isinstance(v, int) and str(have).isdigit():
                have = int(have)
            if have != v or (fmt == "json" and isinstance(v, int) and type(rec[k]) is not int):
                bad.append("%s=%r, expected %r" % (k, rec[k], v))
        none = None if fmt == "json" else "-"
        if rec["user"] != none:
            bad.append("user=%r without auth, expected %r" % (rec["user"], none))
        for k in ("shard", "duration_ms", "version"):
            if not (type(rec[k]) is int if fmt == "json" else str(rec[k]).isdigit()):
                bad.append("%s=%r is not a number" % (k, rec[k]))
        # Our end towards the target: the address and port an abuse report would name.
        ok = str(rec["rep"]) == "0" and want["cmd"] == "connect"
        if ok and not re.match(r"127\.0\.0\.1:\d+$", str(rec["egress"])):
            bad.append("egress=%r, expected 127.0.0.1:PORT" % rec["egress"])
        if not ok and rec["egress"] != none:
            bad.append("egress=%r with no connection made, expected %r" % (rec["egress"], none))
        if not re.match(r"%s\.\d+\.\d+$" % rec["shard"], str(rec["id"])):
            bad.append("id=%r is not SHARD.SLOT.GEN of shard %r" % (rec["id"], rec["shard"]))
        if not re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", str(rec["time"])):
            bad.append("time=%r is not an ISO 8601 time" % rec["time"])
        if bad:
            problems.append("%s: %s\n      %s" % (what, "; ".join(bad), l))
    if len(lines) != len(conns):
        problems.append("%d access log lines for %d connections" % (len(lines), len(conns)))
    check(not problems, "access log (%s): %s" % (fmt, problems[0].splitlines()[0] if problems else ""),
          "\n".join(problems) + "\nall lines:\n" + "\n".join(lines))
    return p, log, srv


@case("access_log_logfmt")
def access_log_logfmt(ctx):
    need_control()
    _access_log_run(ctx, "logfmt")


@case("access_log_json")
def access_log_json(ctx):
    need_control()
    _access_log_run(ctx, "json")


@case("access_log_reopen")
def access_log_reopen(ctx):
    """SIGUSR1 after renaming the file: new lines go to a new file at the old path."""
    need_control()
    echo = ctx.echo_server()
    log = ctx.path("access.log")
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), args=["--access-log", log])

    def one():
        s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
        port = s.getsockname()[1]
        echo_roundtrip(s, 100)
        s.close()
        return "client=127.0.0.1:%d " % port

    first = one()
    _wait_lines(log, 1)
    os.rename(log, log + ".1")
    second = one()
    old = _wait_lines(log + ".1", 2)
    check(any(second in l for l in old), "the line of a tunnel closed after the rename is not in the renamed file",
          "\n".join(old))
    p.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(log), 3.0)
    third = one()
    new = _wait_lines(log, 1)
    check(any(third in l for l in new), "after SIGUSR1 the new line is not in the new %s" % log, "\n".join(new))
    check(not any(first in l or second in l for l in new), "old lines in the new file", "\n".join(new))
    time.sleep(0.2)
    with open(log + ".1") as f:
        old2 = f.read().splitlines()
    check(not any(third in l for l in old2), "after SIGUSR1 a line still went to the renamed file",
          "\n".join(old2))
    p.check_alive()


# A host name no DNS will answer, with bytes a log line must not carry raw:
# a newline (a forged second line), quotes, a backslash, '=', spaces, a
# control byte and bytes >= 0x80.
ODD_NAME = b'evil.test\nend=done fake=1 "q\\b" x=y \x07\xe9\xff.test'


@case("access_log_escaping")
def access_log_escaping(ctx):
    """Hostile destination names stay inside their field in both formats."""
    need_control()
    dns = ctx.dns_stub()
    for fmt in ("logfmt", "json"):
        log = ctx.path("access-%s.log" % fmt)
        p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), name="%s.conf" % fmt,
                          args=["--access-log", log, "--log-format", fmt, "--resolver", dns.spec])
        s = open_proxy_socket(ctx, p)
        cport = s.getsockname()[1]
        s.sendall(GREETING + b"\x05\x01\x00\x03" + bytes([len(ODD_NAME)]) + ODD_NAME + b"\x01\xbb")
        recv_exact(s, 2, "method reply")
        r = read_reply(s)
        check(r.rep != 0, "CONNECT to a name with a newline in it succeeded")
        s.close()
        lines = _wait_lines(log, 1)
        time.sleep(0.3)
        lines = _wait_lines(log, 1)
        check(len(lines) == 1, "%s: %d lines for one connection (a name with a newline forged a line?)"
              % (fmt, len(lines)), "\n".join(repr(l) for l in lines))
        try:
            rec = json.loads(lines[0]) if fmt == "json" else parse_logfmt(lines[0])
        except (ValueError, Fail) as e:
            raise Fail("%s: the line with an odd name does not parse: %s" % (fmt, e), repr(lines[0]))
        check(not any(ord(c) < 0x20 or ord(c) == 0x7f for c in lines[0]),
              "%s: control bytes written raw into the line" % fmt, repr(lines[0]))
        check(rec.get("client") == "127.0.0.1:%d" % cport, "%s: client=%r, expected 127.0.0.1:%d (fields shifted?)"
              % (fmt, rec.get("client"), cport), repr(lines[0]))
        want = ODD_NAME.decode("latin-1") + ":443"
        check(rec.get("dest") == want, "%s: dest reads back as %r, expected %r" % (fmt, rec.get("dest"), want),
              repr(lines[0]))
        check(rec.get("end") != "done" and "fake" not in rec, "%s: the name's 'end=done fake=1' became fields"
              % fmt, repr(lines[0]))


# ------------------------------------------------------------ privilege drop

def _status_ids(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%d/status" % (pid, tid)
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups", "CapPrm", "CapEff"):
                out[k] = v.split()
    return out


@case("privilege_drop")
def privilege_drop(ctx):
    need_option("--user", "--group")
    if os.geteuid() != 0:
        raise Skip("needs root (the test runs as uid %d)" % os.geteuid())
    try:
        uid = pwd.getpwnam("nobody").pw_uid
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        raise Skip("no user nobody or no group nogroup on this machine")
    need_tools("curl")
    # A directory the unprivileged server can read, for the reload after the drop.
    d = tempfile.mkdtemp(prefix="ringsocks-priv-")
    ctx.defer(lambda: shutil.rmtree(d, ignore_errors=True))
    os.chmod(d, 0o755)
    path = write_conf(ctx, rules_conf(ALLOW_LOOPBACK), path=os.path.join(d, "ringsocks.conf"))
    os.chmod(path, 0o644)
    need_control()
    p = ctx.proxy(args=["-c", path, "--user", "nobody", "--group", "nogroup"])
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    pid = p.proc.pid
    bad = []
    tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    for tid in [None] + tids:
        ids = _status_ids(pid, tid)
        who = "process" if tid is None else "thread %d" % tid
        if ids["Uid"] != [str(uid)] * 4:
            bad.append("%s Uid: %s, expected %d x4" % (who, " ".join(ids["Uid"]), uid))
        if ids["Gid"] != [str(gid)] * 4:
            bad.append("%s Gid: %s, expected %d x4" % (who, " ".join(ids["Gid"]), gid))
        if [g for g in ids.get("Groups", []) if g != str(gid)]:
            bad.append("%s keeps supplementary groups: %s" % (who, " ".join(ids["Groups"])))
        for cap in ("CapPrm", "CapEff"):
            if cap in ids and int(ids[cap][0], 16) != 0:
                bad.append("%s keeps capabilities: %s %s" % (who, cap, ids[cap][0]))
    check(not bad, "privileges not (fully) dropped with --user nobody --group nogroup",
          "\n".join(bad) + "\nthreads: %s" % tids)
    port = ctx.http_server(("127.0.0.1",))
    curl_fetch(ctx, ["--socks5", "127.0.0.1:%d" % p.port], "http://127.0.0.1:%d/" % port, "small.bin")
    st, body = http_reload(p)
    check(st == 200, "POST /reload after the privilege drop (config readable by all) answered %d: %r" % (st, body))
    s2, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s2)


@case("privilege_drop_missing_user")
def privilege_drop_missing_user(ctx):
    need_option("--user", "--group")
    if os.geteuid() != 0:
        raise Skip("needs root (the test runs as uid %d)" % os.geteuid())
    for args, name in ((["--user", "no-such-user-rs"], "no-such-user-rs"),
                       (["--user", "nobody", "--group", "no-such-group-rs"], "no-such-group-rs")):
        p = ctx.proxy(args=args, wait_listen=False)
        p.exit_expected = True
        rc, _ = wait_exit(p, 15)
        err = p.stderr()
        check(rc is not None, "%s: still running 15 s after start" % " ".join(args), tail(err))
        check(rc > 0, "%s: %s, expected a non-zero exit" % (" ".join(args), fmt_status(rc)), tail(err))
        check(name in err, "%s: the error does not name %s" % (" ".join(args), name), tail(err))
        p.stop()
