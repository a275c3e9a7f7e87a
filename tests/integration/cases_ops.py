"""
cases_ops.py - what an abuse desk and an operator read: the access log's rule
and end_time fields (logfmt and JSON), a UDP association's datagram counts,
the process_* series and the max_conns headroom on /metrics, reload outcomes,
pid_file, the line a SIGUSR1 reopen prints, and whether the seccomp filter is on.
"""

import json
import os
import re
import signal
import socket
import time

from cases_control import (ALLOW_LOOPBACK, _wait_lines, conf_proxy, reload_count, rules_conf, run_binary, scrape,
                           sighup_reload, write_conf)
from cases_udp import associate, echo_via
from harness import (GREETING, admin_request, case, check, hexb, metric, need_option, parse_logfmt,
                     parse_prometheus, read_reply, recv_exact, request, socks_connect, echo_roundtrip, tail,
                     udp_header, wait_until)


def _records(lines, fmt):
    return [json.loads(l) if fmt == "json" else parse_logfmt(l) for l in lines]


def _connect_rep(ctx, p, host, port):
    """A CONNECT; returns (client port, REP). The socket is closed."""
    s = socket.create_connection((p.host, p.port), timeout=5)
    cport = s.getsockname()[1]
    s.sendall(GREETING + request(host, port))
    recv_exact(s, 2, "method reply")
    rep = read_reply(s).rep
    if rep == 0:
        echo_roundtrip(s, 10)
    s.close()
    return cport, rep


def _log_rule_end(ctx, fmt):
    echo = ctx.echo_server()
    blocked = ctx.echo_server(host="127.0.0.2")
    other = ctx.echo_server(host="127.0.0.3")
    log = ctx.path("access.log")
    conf = rules_conf('{ name = "block-127.0.0.2"; action = "deny"; to = ["127.0.0.2/32"]; }',
                      '{ action = "allow"; from = ["127.0.0.0/8"]; to = ["127.0.0.1/32"]; }')
    p, _ = conf_proxy(ctx, conf, args=["--access-log", log, "--log-format", fmt])
    want = {}
    cport, rep = _connect_rep(ctx, p, "127.0.0.2", blocked.port)
    check(rep == 2, "CONNECT to 127.0.0.2: REP %d, expected 2" % rep)
    want[cport] = "block-127.0.0.2"
    cport, rep = _connect_rep(ctx, p, "127.0.0.1", echo.port)
    check(rep == 0, "CONNECT to 127.0.0.1: REP %d, expected 0" % rep)
    want[cport] = "2"
    cport, rep = _connect_rep(ctx, p, "127.0.0.3", other.port)
    check(rep == 2, "CONNECT to 127.0.0.3: REP %d, expected 2 (no rule matches)" % rep)
    want[cport] = "default"
    # A client that leaves before its request never reaches the rules.
    s = socket.create_connection((p.host, p.port), timeout=5)
    want[s.getsockname()[1]] = None if fmt == "json" else "-"
    s.close()
    lines = _wait_lines(log, len(want))
    problems = []
    for l, rec in zip(lines, _records(lines, fmt)):
        port = int(str(rec["client"]).rpartition(":")[2])
        if rec.get("rule", "(missing)") != want.get(port, "(unknown client)"):
            problems.append("rule=%r, expected %r: %s" % (rec.get("rule", "(missing)"), want.get(port), l))
        end = str(rec.get("end_time"))
        if not re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", end) or end < str(rec["time"]):
            problems.append("end_time=%r is not an RFC 3339 time at or after time=%r: %s" % (end, rec["time"], l))
    check(not problems, "access log (%s): %s" % (fmt, problems[0] if problems else ""),
          "\n".join(problems) + "\nall lines:\n" + "\n".join(lines))


@case("ops_log_rule_end_logfmt")
def ops_log_rule_end_logfmt(ctx):
    """The deciding rule: its name, its number, default (none matched), - (never asked);
    end_time after time."""
    _log_rule_end(ctx, "logfmt")


@case("ops_log_rule_end_json")
def ops_log_rule_end_json(ctx):
    _log_rule_end(ctx, "json")


def _udp_line(p, log, fmt="logfmt"):
    lines = _wait_lines(log, 1)
    recs = [r for r in _records(lines, fmt) if r.get("cmd") == "udp"]
    check(len(recs) == 1, "%d access-log lines of cmd udp, expected 1" % len(recs), "\n".join(lines))
    return recs[0]


@case("ops_udp_counts")
def ops_udp_counts(ctx):
    """An association's line counts the datagrams relayed each way and those dropped, by reason."""
    echo = ctx.udp_echo("127.0.0.1")
    log = ctx.path("access.log")
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), args=["--access-log", log])
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    for i in range(5):
        echo_via(cli, relay, "127.0.0.1", echo.port, b"datagram %d" % i)
    cli.sendto(udp_header("127.0.0.1", echo.port, frag=1) + b"fragment", relay)
    cli.sendto(b"\x00\x00", relay)
    echo_via(cli, relay, "127.0.0.1", echo.port, b"after the drops")
    s.close()
    rec = _udp_line(p, log)
    check(rec.get("udp_out") == "6" and rec.get("udp_in") == "6",
          "udp_out=%s udp_in=%s, expected 6 and 6 (datagrams echoed)" % (rec.get("udp_out"), rec.get("udp_in")),
          str(rec))
    check(rec.get("udp_drop") == "malformed:1,frag:1",
          "udp_drop=%r, expected 'malformed:1,frag:1'" % rec.get("udp_drop"), str(rec))
    check(rec.get("rule") == "1", "rule=%r for the association, expected '1'" % rec.get("rule"))


@case("ops_udp_counts_rule_json")
def ops_udp_counts_rule_json(ctx):
    """Datagrams the rules refuse count as udp_drop rule (JSON: an object); none relayed."""
    echo = ctx.udp_echo("127.0.0.1")
    log = ctx.path("access.log")
    conf = rules_conf('{ name = "connect-only"; action = "allow"; commands = ["connect"]; from = ["127.0.0.0/8"]; }',
                      '{ name = "no-udp-out"; action = "deny"; commands = ["udp"]; to = ["127.0.0.0/8"]; }',
                      '{ name = "udp-assoc"; action = "allow"; commands = ["udp"]; from = ["127.0.0.0/8"]; }')
    p, _ = conf_proxy(ctx, conf, args=["--access-log", log, "--log-format", "json"])
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    for i in range(3):
        cli.sendto(udp_header("127.0.0.1", echo.port) + b"denied %d" % i, relay)
    wait_until(lambda: False, 0.5)
    s.close()
    rec = _udp_line(p, log, "json")
    check(rec.get("udp_drop") == {"rule": 3}, "udp_drop=%r, expected {'rule': 3}" % rec.get("udp_drop"), str(rec))
    check(rec.get("udp_out") == 0 and rec.get("udp_in") == 0,
          "udp_out=%r udp_in=%r, expected 0 and 0" % (rec.get("udp_out"), rec.get("udp_in")))
    check(rec.get("rule") == "udp-assoc", "rule=%r for the association, expected 'udp-assoc'" % rec.get("rule"))
    check(not echo.seen, "the echo server got %d datagrams the rules deny" % len(echo.seen))


@case("ops_metrics_process_headroom")
def ops_metrics_process_headroom(ctx):
    """process_* series with plausible values; headroom is max_conns minus the open connections."""
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK, extra="max_conns = 500;"))
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s, 10)
    m = scrape(p)
    fds = len(os.listdir("/proc/%d/fd" % p.proc.pid))
    got = {k: metric(m, k) for k in ("process_open_fds", "process_max_fds", "process_resident_memory_bytes",
                                     "process_virtual_memory_bytes", "process_cpu_seconds_total",
                                     "process_start_time_seconds")}
    check(all(v is not None for v in got.values()), "process series missing: %s" % got)
    check(0 < got["process_open_fds"] and abs(got["process_open_fds"] - fds) <= 4,
          "process_open_fds %s, /proc says %d" % (got["process_open_fds"], fds))
    with open("/proc/%d/limits" % p.proc.pid) as f:
        soft = [l.split()[3] for l in f if l.startswith("Max open files")][0]
    check(str(int(got["process_max_fds"])) == soft, "process_max_fds %s, the soft limit is %s"
          % (got["process_max_fds"], soft))
    check(got["process_resident_memory_bytes"] > 1 << 20, "process_resident_memory_bytes %s"
          % got["process_resident_memory_bytes"])
    check(got["process_virtual_memory_bytes"] >= got["process_resident_memory_bytes"],
          "virtual %s < resident %s" % (got["process_virtual_memory_bytes"], got["process_resident_memory_bytes"]))
    check(got["process_cpu_seconds_total"] >= 0, "process_cpu_seconds_total %s" % got["process_cpu_seconds_total"])
    check(abs(got["process_start_time_seconds"] - time.time()) < 120,
          "process_start_time_seconds %s is not about now (%s)" % (got["process_start_time_seconds"], time.time()))
    open_now = metric(m, "ringsocks_connections_open")
    head = metric(m, "ringsocks_max_conns_headroom")
    check(open_now >= 1 and head == 500 - open_now,
          "ringsocks_max_conns_headroom %s with %s open and max_conns 500" % (head, open_now))
    s.close()


@case("ops_reload_outcome_metrics")
def ops_reload_outcome_metrics(ctx):
    """A reload of a bad file is counted as failed and sets last_reload_success 0; a good one 1."""
    p, path = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK))
    m = scrape(p)
    check(metric(m, "ringsocks_last_reload_success") == 1, "last_reload_success at start: %s"
          % metric(m, "ringsocks_last_reload_success"))
    t0 = metric(m, "ringsocks_last_reload_timestamp_seconds")
    write_conf(ctx, rules_conf(ALLOW_LOOPBACK) + "\nno_such_key = 1;\n", path=path)
    time.sleep(0.01)
    p.proc.send_signal(signal.SIGHUP)
    check(wait_until(lambda: reload_count(p) >= 1, 5.0), "no reload line after SIGHUP", tail(p.stderr()))
    m = scrape(p)
    check(metric(m, "ringsocks_reloads_total", result="failed") == 1,
          "reloads_total{failed} %s after a bad file" % metric(m, "ringsocks_reloads_total", result="failed"))
    check(metric(m, "ringsocks_last_reload_success") == 0, "last_reload_success %s after a failed reload"
          % metric(m, "ringsocks_last_reload_success"))
    t1 = metric(m, "ringsocks_last_reload_timestamp_seconds")
    check(t1 > t0, "last_reload_timestamp_seconds did not move on a failed reload (%s, %s)" % (t0, t1))
    write_conf(ctx, rules_conf(ALLOW_LOOPBACK), path=path)
    p.proc.send_signal(signal.SIGHUP)
    check(wait_until(lambda: reload_count(p) >= 2, 5.0), "no second reload line", tail(p.stderr()))
    m = scrape(p)
    check(metric(m, "ringsocks_last_reload_success") == 1, "last_reload_success %s after a good reload"
          % metric(m, "ringsocks_last_reload_success"))
    check(metric(m, "ringsocks_reloads_total", result="ok") == 1, "reloads_total{ok} %s"
          % metric(m, "ringsocks_reloads_total", result="ok"))


@case("ops_pid_file")
def ops_pid_file(ctx):
    """pid_file holds the server's PID (0644) while it runs and is gone after a clean exit."""
    pid_path = ctx.path("ringsocks.pid")
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK, extra='pid_file = "%s";' % pid_path))
    check(os.path.exists(pid_path), "no %s while the server runs" % pid_path, tail(p.stderr()))
    with open(pid_path) as f:
        text = f.read()
    check(text == "%d\n" % p.proc.pid, "pid_file holds %r, the server is %d" % (text, p.proc.pid))
    mode = os.stat(pid_path).st_mode & 0o777
    check(mode == 0o644, "pid_file mode %o, expected 644" % mode)
    check(not os.path.exists(pid_path + ".tmp"), "the temporary file was left beside it")
    rc = p.stop()
    check(rc == 0, "server exit status %s" % rc)
    check(not os.path.exists(pid_path), "pid_file still there after a clean exit")


@case("ops_pid_file_unwritable")
def ops_pid_file_unwritable(ctx):
    """An unwritable pid_file stops the start with a message naming the path and the error."""
    pid_path = ctx.path("no-such-dir/ringsocks.pid")
    path = write_conf(ctx, rules_conf(ALLOW_LOOPBACK, extra='pid_file = "%s";' % pid_path))
    r = run_binary(ctx, ["-c", path, "--listen", "127.0.0.1:0", "--admin", "off"])
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode != 0, "the server started with an unwritable pid_file", err)
    check(pid_path in err and "No such file or directory" in err, "the error does not name the path and errno",
          err)


@case("ops_sigusr1_reopen_line")
def ops_sigusr1_reopen_line(ctx):
    """SIGUSR1 says on stderr that the access log was reopened, and where."""
    log = ctx.path("access.log")
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), args=["--access-log", log])
    p.proc.send_signal(signal.SIGUSR1)
    line = "ringsocks: access log reopened: %s" % log
    check(wait_until(lambda: line in p.stderr(), 3.0), "no %r on stderr" % line, tail(p.stderr()))


def _seccomp_modes(pid):
    """Seccomp: of every thread of pid (/proc/PID/task/TID/status), by thread name."""
    modes = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                fields = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
        except FileNotFoundError:
            continue
        modes["%s/%s" % (fields.get("Name", "?"), tid)] = fields.get("Seccomp", "?").strip()
    return modes


@case("seccomp_filter_on")
def seccomp_filter_on(ctx):
    """By default every thread of the serving process runs under the filter (Seccomp: 2), and it
    serves: a CONNECT, /metrics and a reload."""
    echo = ctx.echo_server()
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK))
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s, 10)
    modes = _seccomp_modes(p.proc.pid)
    check(len(modes) > 2, "only %d threads: %s" % (len(modes), modes))
    off = {t: m for t, m in modes.items() if m != "2"}
    check(not off, "threads not under the seccomp filter (Seccomp: 2 expected): %s" % off)
    line = sighup_reload(p)
    check("reloaded" in line, "reload under the filter: %s" % line, tail(p.stderr()))
    check(scrape(p) and p.proc.poll() is None, "ringsocks stopped under the filter", tail(p.stderr()))
    s.close()


@case("seccomp_filter_off")
def seccomp_filter_off(ctx):
    """seccomp = false (--seccomp false): no filter on any thread (Seccomp: 0)."""
    p, _ = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK), args=["--seccomp", "false"])
    modes = _seccomp_modes(p.proc.pid)
    on = {t: m for t, m in modes.items() if m != "0"}
    check(not on, "threads under a seccomp filter with --seccomp false: %s" % on)


@case("defer_accept_waits_for_the_greeting")
def defer_accept_waits_for_the_greeting(ctx):
    """--defer-accept 5: a client that connected and said nothing is not accepted yet
    (the kernel holds it); once its greeting arrives it is, and it is served as any
    other. Without the option the same silent client is accepted at once."""
    need_option("--defer-accept")
    from harness import open_proxy_socket, read_method_reply
    echo = ctx.echo_server()

    def accepted(p):
        st, body, _ = admin_request(p, "GET", "/metrics")
        check(st == 200, "GET /metrics answered %d" % st)
        return metric(parse_prometheus(body), "ringsocks_connections_accepted_total")

    p = ctx.proxy(args=("--shards", "1", "--defer-accept", "5"))
    base = accepted(p)
    s = open_proxy_socket(ctx, p, 5)
    time.sleep(1.0)
    check(accepted(p) == base, "--defer-accept 5: a silent client was accepted (%r, before %r)"
          % (accepted(p), base))
    s.sendall(GREETING)
    m = read_method_reply(s)
    check(m == b"\x05\x00", "method reply %s after a deferred accept" % hexb(m))
    s.sendall(request("127.0.0.1", echo.port))
    recv_exact(s, 10)
    echo_roundtrip(s, 1000)
    s.close()
    check(accepted(p) == base + 1, "accepted %r after the greeting, expected %r"
          % (accepted(p), base + 1))

    q = ctx.proxy(args=("--shards", "1"))
    base = accepted(q)
    s = open_proxy_socket(ctx, q, 5)
    check(wait_until(lambda: accepted(q) == base + 1, 3.0),
          "without --defer-accept a silent client was not accepted within 3 s")
    s.close()


def listener_defer_secs(pid):
    """{port: TCP_DEFER_ACCEPT} of every listening TCP socket of process pid, read from
    copies of its descriptors (pidfd_getfd, as root)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_pidfd_getfd = 438
    pidfd = os.pidfd_open(pid)
    out = {}
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            try:
                if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
            if fd < 0:
                continue
            s = socket.socket(fileno=fd)
            try:
                if (s.type == socket.SOCK_STREAM and
                        s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
                    out[s.getsockname()[1]] = s.getsockopt(socket.IPPROTO_TCP,
                                                           socket.TCP_DEFER_ACCEPT)
            finally:
                s.close()
    finally:
        os.close(pidfd)
    return out


@case("defer_accept_not_on_transparent")
def defer_accept_not_on_transparent(ctx):
    """defer_accept = 5 sets TCP_DEFER_ACCEPT on the SOCKS listener's sockets (one per
    shard) and never on a transparent listener's, whose programs may wait for the
    server to speak first."""
    need_option("--defer-accept")
    if os.geteuid() != 0:
        from harness import Skip
        raise Skip("reads the proxy's sockets with pidfd_getfd, as root")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    tport = probe.getsockname()[1]
    probe.close()
    path = ctx.path("defer.conf")
    with open(path, "w") as f:
        f.write('listen = ( "127.0.0.1:0", { address = "127.0.0.1:%d"; mode = "transparent"; } );\n'
                'shards = 2;\nadmin = "off";\ndefer_accept = 5;\n'
                'rules = ( { action = "allow"; } );\n' % tport)
    p = ctx.proxy(listen=("127.0.0.1:0", "127.0.0.1:%d" % tport), args=("-c", path),
                  own_args=False)
    got = listener_defer_secs(p.proc.pid)
    socks = {port: v for port, v in got.items() if port != tport}
    check(tport in got, "no transparent listener on %d among %r" % (tport, got))
    check(got[tport] == 0, "the transparent listener has TCP_DEFER_ACCEPT %d" % got[tport])
    check(len(socks) == 1 and all(v > 0 for v in socks.values()),
          "the SOCKS listener's TCP_DEFER_ACCEPT: %r (expected > 0)" % socks)


@case("metrics_copy_buffers_resident")
def metrics_copy_buffers_resident(ctx):
    """ringsocks_relay_buffers_resident_bytes{shard} (mincore() at each scrape, under the
    seccomp filter): the copy buffers are mapped untouched at start, so it starts below
    the ring's size; traffic through the copy engine fills every buffer of a 16-buffer ring
    in turn (the kernel hands them out in ring order), so after 1 MiB each way it is
    exactly bufs x buf_size, and it never exceeds that."""
    echo = ctx.echo_server()
    p = ctx.proxy(args=("--shards", "1", "--relay", "copy", "--bufs", "16", "--buf-size", "16384"))
    size = 16 * 16384
    before = metric(scrape(p), "ringsocks_relay_buffers_resident_bytes", shard="0")
    check(before is not None, "no ringsocks_relay_buffers_resident_bytes{shard=\"0\"} in /metrics")
    check(before < size, "%d bytes of the copy buffers resident before any tunnel, expected fewer than "
          "all %d" % (before, size))
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    for _ in range(16):
        echo_roundtrip(s, 65536)
    after = metric(scrape(p), "ringsocks_relay_buffers_resident_bytes", shard="0")
    check(after == size, "%s bytes of the copy buffers resident after 1 MiB each way through a 16 x 16 KiB "
          "ring, expected all %d" % (after, size))
    s.close()
