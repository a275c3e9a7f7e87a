"""
cases_socksload_phases.py - socksload's latency by phase, per-interval JSON lines,
`socksload plot`, the progress line of every mode, its own limits, and `serve` printing what
its help promises (issue #16). Loopback only; each run is bounded to a few seconds.
"""

import json
import os
import re
import resource
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time

from harness import CONFIG, Fail, case, check, make_hash, need_ringsocks, tail, write_users

PHASES = ("connect", "greeting", "auth", "reply", "first_byte", "close")


def socksload_bin():
    path = os.path.join(os.path.dirname(CONFIG.binary) or ".", "socksload")
    if not os.access(path, os.X_OK):
        raise Fail("%s is missing (make all builds it)" % path)
    return path


def run_sl(args, timeout=30, preexec_fn=None):
    """Runs socksload ARGS with stderr not a tty; returns (rc, stdout, stderr)."""
    p = subprocess.run([socksload_bin()] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
    return p.returncode, p.stdout, p.stderr


def run_json(args, **kw):
    rc, out, err = run_sl(list(args) + ["--json"], **kw)
    try:
        return rc, json.loads(out), err
    except ValueError:
        raise Fail("socksload %s: no JSON (exit %d)" % (" ".join(args), rc), tail(out + err))


def samples(j, phase):
    return j["phases"][phase]["samples"]


@case("socksload: connrate with user:pass, every phase has samples")
def t_phases_auth(ctx):
    need_ringsocks("a users file")
    users = write_users(ctx, ["alice:%s" % make_hash("s3cret")])
    p = ctx.proxy(args=["--auth", "password", "--users", users])
    rc, j, err = run_json(["connrate", "--proxy", "socks5://alice:s3cret@%s:%d" % p.addr,
                           "--workers", "4", "--duration", "1", "--close", "fin"])
    check(rc == 0 and j["errors"]["total"] == 0 and j["units"] > 0, "a clean run", tail(err))
    for ph in PHASES:
        s = j["phases"][ph]
        check(s["samples"] > 0 and s["p50"] is not None and s["p50"] <= s["max"],
              "phase %s has samples" % ph, json.dumps(j["phases"]))
    # Every tunnel went through each phase once.
    check(samples(j, "connect") >= j["units"] and samples(j, "auth") >= j["units"],
          "a sample per tunnel", json.dumps(j["phases"]))
    rc, out, err = run_sl(["connrate", "--proxy", "socks5://alice:s3cret@%s:%d" % p.addr,
                           "--workers", "2", "--duration", "0.5"])
    check(re.search(r"^phases ", out, re.M) and re.search(r"^  auth +p50 ", out, re.M)
          and re.search(r"^  close +no samples", out, re.M),
          "the table's phases block (close: no samples with --close rst)", out)


@case("socksload: SOCKS4 has no greeting or auth samples")
def t_phases_socks4(ctx):
    need_ringsocks("SOCKS4")
    p = ctx.proxy()
    rc, j, err = run_json(["connrate", "--proxy", "socks4://%s:%d" % p.addr, "--workers", "2",
                           "--duration", "0.5"])
    check(rc == 0 and j["units"] > 0, "a clean run", tail(err))
    check(samples(j, "greeting") == 0 and samples(j, "auth") == 0
          and j["phases"]["greeting"]["p50"] is None, "greeting and auth: no samples",
          json.dumps(j["phases"]))
    check(samples(j, "connect") > 0 and samples(j, "reply") > 0
          and samples(j, "first_byte") > 0, "connect, reply, first byte", json.dumps(j["phases"]))


class StallReply(socketserver.BaseRequestHandler):
    """A SOCKS5 server that answers the greeting at once, holds the request's reply STALL s,
    then serves socksload's request/response target protocol ('Q') itself."""
    STALL = 0.2

    def rx(self, n):
        b = b""
        while len(b) < n:
            c = self.request.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def handle(self):
        try:
            g = self.rx(2)
            self.rx(g[1])
            self.request.sendall(b"\x05\x00")
            h = self.rx(4)
            self.rx({1: 6, 4: 18}.get(h[3], 0) or self.rx(1)[0] + 2)
            time.sleep(self.STALL)
            self.request.sendall(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
            hdr = self.rx(20)
            seed, a, b = struct.unpack("<III", hdr[4:16])
            self.rx(a)
            self.request.sendall(bytes((seed + o) % 251 for o in range(b)))
            self.request.recv(1)
        except (OSError, EOFError):
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@case("socksload: a stalled reply shows in the reply phase, not in connect")
def t_phases_stall(ctx):
    srv = Server(("127.0.0.1", 0), StallReply)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ctx.defer(srv.server_close)
    ctx.defer(srv.shutdown)
    port = srv.server_address[1]
    rc, j, err = run_json(["connrate", "--proxy", "socks5://127.0.0.1:%d" % port,
                           "--target", "127.0.0.1:%d" % port, "--workers", "4",
                           "--duration", "1.5"])
    ph = j["phases"]
    check(j["units"] > 0 and j["errors"]["total"] == 0, "a clean run", tail(err))
    check(all(ph[x]["samples"] > 0 for x in ("connect", "greeting", "reply", "first_byte")),
          "the phases have samples", json.dumps(ph))
    check(ph["reply"]["p50"] >= 190000, "the 200 ms stall is in reply", json.dumps(ph))
    check(ph["connect"]["p99"] < 100000 and ph["greeting"]["p99"] < 100000
          and ph["first_byte"]["p99"] < 100000, "and nowhere else", json.dumps(ph))


def intervals_run(ctx, name, secs="2.6", interval="0.5"):
    p = ctx.proxy()
    path = ctx.path(name)
    rc, out, err = run_sl(["connrate", "--proxy", "socks5://%s:%d" % p.addr, "--workers", "2",
                           "--duration", secs, "--interval", interval, "--intervals", path])
    check(rc == 0, "socksload exit 0", tail(out + err))
    return path


@case("socksload: --intervals writes one JSON line per interval, then the final line")
def t_intervals(ctx):
    path = intervals_run(ctx, "iv.jsonl")
    with open(path) as f:
        lines = [json.loads(x) for x in f]
    ivs, final = lines[:-1], lines[-1]
    check(len(ivs) >= 5, "at least 5 intervals of 0.5 s in 2.6 s", json.dumps(lines))
    ts = [x["t"] for x in ivs]
    check(all(b > a for a, b in zip(ts, ts[1:])) and final["t"] >= ts[-1],
          "t increases", json.dumps(ts))
    check(final.get("final") is True and not any("final" in x for x in ivs),
          "only the last line is final", json.dumps(lines))
    check(sum(x["units"] for x in ivs) == final["units"] and final["units"] > 0,
          "the intervals add up to the run", json.dumps(lines))
    for x in ivs[:4]:
        check(x["units"] > 0 and x["p50_us"] is not None and x["p50_us"] <= x["max_us"]
              and abs(x["rate"] - x["units"] / x["secs"]) <= 0.1 + x["rate"] * 0.01,
              "an interval's own figures", json.dumps(x))


@case("socksload: --intervals with --rate has the starts due and made")
def t_intervals_rate(ctx):
    p = ctx.proxy()
    path = ctx.path("rate.jsonl")
    rc, out, err = run_sl(["connrate", "--proxy", "socks5://%s:%d" % p.addr, "--rate", "100",
                           "--duration", "1.6", "--interval", "0.5", "--intervals", path])
    check(rc == 0, "socksload exit 0", tail(out + err))
    with open(path) as f:
        lines = [json.loads(x) for x in f]
    ivs, final = lines[:-1], lines[-1]
    check(all("due" in x and "started" in x for x in lines), "due and started on every line",
          json.dumps(lines))
    # Tunnel k is due at k / 100 s: 160 in 1.6 s, all started through an idle proxy.
    check(final["due"] == 160 and sum(x["due"] for x in ivs) == 160
          and sum(x["started"] for x in ivs) == final["started"] >= 155,
          "160 due, as many started", json.dumps(lines))
    check(45 <= ivs[0]["due"] <= 55, "about 50 due in the first 0.5 s", json.dumps(ivs[0]))


@case("socksload plot: SVG, PNG, and a bad line named FILE:LINE")
def t_plot(ctx):
    path = intervals_run(ctx, "run.jsonl", secs="1.6")
    rc, out, err = run_sl(["plot", path])
    svg = ctx.path("run.svg")
    check(rc == 0 and os.path.exists(svg), "plot wrote FILE.svg", tail(err))
    with open(svg, "rb") as f:
        head = f.read(200)
    check(head.startswith(b"<?xml") or head.startswith(b"<svg"), "an SVG", repr(head))
    terms = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    if re.search(r"^\s+(pngcairo|png)\s", terms.stdout + terms.stderr, re.M):
        png = ctx.path("out.png")
        rc, out, err = run_sl(["plot", path, "--out", png, "--title", "it's a test"])
        with open(png, "rb") as f:
            check(rc == 0 and f.read(8) == b"\x89PNG\r\n\x1a\n", "a PNG", tail(err))
    rc, out, err = run_sl(["plot", path, "--out", ctx.path("x.gif")])
    check(rc == 2 and ".svg or .png" in err, "a format it cannot make is refused", err)
    bad = ctx.path("bad.jsonl")
    with open(path) as f, open(bad, "w") as g:
        lines = f.readlines()
        g.writelines(lines[:2] + ['{"t":1.5,"rate":oops}\n'] + lines[2:])
    rc, out, err = run_sl(["plot", bad])
    check(rc == 1 and "%s:3: " % bad in err, "the bad line named FILE:LINE", err)


def progress_lines(err, mode):
    return [x for x in err.split("\n") if re.match(r"\[ *\d+\.\ds\] %s: " % mode, x)]


@case("socksload: a progress line a second in hold and udp (not a tty: one per line)")
def t_progress(ctx):
    need_ringsocks("UDP ASSOCIATE")
    p = ctx.proxy()
    rc, out, err = run_sl(["hold", "--proxy", "socks5://%s:%d" % p.addr, "--tunnels", "10",
                           "--duration", "2.5"])
    lines = progress_lines(err, "hold")
    check(rc == 0 and len(lines) >= 2 and "\r" not in err, "hold: lines", err)
    check(all(re.search(r"\d+ of 10 tunnels set up, .*errors \d+", x) for x in lines),
          "hold: opened of target, failures", err)
    rc, out, err = run_sl(["udp", "--proxy", "socks5://%s:%d" % p.addr, "--duration", "2.5"])
    lines = progress_lines(err, "udp")
    check(rc == 0 and len(lines) >= 2, "udp: lines", err)
    check(all(re.search(r"\d+ datagrams/s, .*lost \d+$", x) for x in lines),
          "udp: datagrams/s and lost", err)


@case("socksload: its own open-files limit is reported")
def t_limits_nofile(ctx):
    p = ctx.proxy()

    def low():
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))
    rc, j, err = run_json(["hold", "--proxy", "socks5://%s:%d" % p.addr, "--tunnels", "200",
                           "--duration", "0.5", "--timeout", "1"], preexec_fn=low)
    check(any(x.startswith("open files: the limit is 100 and the run needs about 464")
              for x in j["limits"]), "JSON limits names the open files", json.dumps(j["limits"]))
    check("socksload: open files: the limit is 100" in err, "and stderr at the start", err)
    rc, j, err = run_json(["hold", "--proxy", "socks5://%s:%d" % p.addr, "--tunnels", "10",
                           "--duration", "0.3"], preexec_fn=low)
    check(j["limits"] == [], "no limit for a small run", json.dumps(j["limits"]))


@case("socksload serve: prints what its help promises")
def t_serve(ctx):
    rc, helptext, _ = run_sl(["--help"])
    check("serving on HOST:PORT (tcp and udp)" in helptext and "served N connections, B bytes"
          in helptext, "the help names the first line and the end report", helptext)
    out_path, err_path = ctx.path("serve.out"), ctx.path("serve.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([socksload_bin(), "serve", "--port", "0"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)

    def stop():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ctx.defer(stop)
    port = None
    deadline = time.monotonic() + 5
    while port is None and time.monotonic() < deadline:
        with open(err_path) as f:
            first = f.readline()
        m = re.match(r"socksload: serving on 127\.0\.0\.1:(\d+) \(tcp and udp\)\n$", first)
        port = m and int(m.group(1))
        time.sleep(0.05)
    check(port, "the first stderr line: serving on HOST:PORT (tcp and udp)", first)
    # One echo connection: the target header, 5 bytes back.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"slE\x00" + struct.pack("<IIII", 7, 0, 0, 0) + b"hello")
    got = b""
    while len(got) < 5:
        got += s.recv(5 - len(got))
    s.close()
    check(got == b"hello", "echoed", repr(got))
    # 30 bytes: the 20-byte header and 5 read, 5 written back.
    time.sleep(1.2)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(10)
    with open(out_path) as f:
        out = f.read()
    with open(err_path) as f:
        errtext = f.read()
    check(rc == 0, "exit 0 on SIGTERM", errtext)
    check(re.search(r"^served +1 connections, 30 bytes", out, re.M)
          and re.search(r"^sources +1 distinct address \(1 connections", out, re.M),
          "the end report: served and sources", out)
    check(re.search(r"^\[ *\d+\.\ds\] serve: 1 connections, 30 bytes served$", errtext, re.M),
          "the progress line", errtext)
    # --socks5 --json: its own first line, and the end report as one object.
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([socksload_bin(), "serve", "--socks5", "--json"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    first, deadline = "", time.monotonic() + 5
    while not first.endswith("\n") and time.monotonic() < deadline:
        time.sleep(0.05)
        with open(err_path) as f:
            first = f.readline()
    check(re.match(r"socksload: serving on 127\.0\.0\.1:\d+ \(tcp behind a SOCKS5 front, and "
                   r"udp\)\n$", first), "--socks5: the first line", first)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(10)
    with open(out_path) as f:
        j = json.loads(f.read())
    check(rc == 0 and j["connections"] == 0 and j["bytes"] == 0 and j["sources"]["seen"] == 0,
          "--json: connections, bytes, sources", json.dumps(j))
