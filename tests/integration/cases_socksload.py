"""
cases_socksload.py - socksload's modes that need a server of the test's own (issue #16):
http mode through ringsocks against a local HTTP/1.1 server (keep-alive, Content-Length,
chunked, a 404, a wrong --expect-size, a server that sends less than its Content-Length),
--source client address ranges (seen in ringsocks's access log), the open model on held
tunnels (hold --rate) against a proxy that stalls, and udp mode's loss count (through a
ringsocks whose fault mode drops about half of the datagrams, which it counts itself) and its
no-proxy baseline (serve --socks5 answering UDP ASSOCIATE).

socksload is build/socksload next to the ringsocks binary under test.
"""

import http.server
import json
import os
import re
import subprocess
import threading
import time

from cases_udp_faults import fault_proxy, udp_log_line
from harness import CONFIG, Fail, case, check, need_ringsocks, wait_until

HTTP_BODY = bytes((i * 7 + 3) % 256 for i in range(1 << 20))


def socksload():
    path = os.path.join(os.path.dirname(CONFIG.binary), "socksload")
    if not os.access(path, os.X_OK):
        raise Fail("%s is missing (make builds it)" % path)
    return path


def run_sl(ctx, args, timeout=60):
    """Runs socksload ARGS --json; returns (exit status, JSON or None, stderr)."""
    r = ctx.run([socksload()] + args + ["--json"], timeout=timeout)
    err = r.stderr.decode("utf-8", "replace")
    try:
        j = json.loads(r.stdout)
    except ValueError:
        j = None
    return r.returncode, j, err


class _Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive. /fixed/N: N bytes with Content-Length; /chunked/N: N bytes
    in chunks of 7 (and a trailer); /short/N: Content-Length N + 10, then N bytes and the
    close; anything else 404."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.conns += 1

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests += 1
            srv.hosts.add(self.headers.get("Host"))
            if self.headers.get("Connection", "").lower() == "close":
                srv.closes += 1
        m = re.match(r"^/(fixed|chunked|short)/(\d+)$", self.path)
        if not m:
            body = b"not here\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        kind, n = m.group(1), int(m.group(2))
        body = HTTP_BODY[:n]
        self.send_response(200)
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, n, 7):
                c = body[i:i + 7]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif kind == "short":
            self.send_header("Content-Length", str(n + 10))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # the listen backlog: socksload opens tunnels in bursts


def http_server(ctx):
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.requests = srv.closes = 0
    srv.conns = 0
    srv.handle_error = lambda request, address: None  # resets from --close rst are expected
    srv.hosts = set()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def stop():
        srv.shutdown()
        srv.server_close()
    ctx.defer(stop)
    return srv


def failures(j):
    return [(f["text"], f["count"]) for f in j["failures"]]


@case("socksload_http")
def socksload_http(ctx):
    need_ringsocks("socksload's http mode through ringsocks")
    p = ctx.proxy()
    srv = http_server(ctx)
    hp = srv.server_address[1]
    px = ["--proxy", "socks5://127.0.0.1:%d" % p.port]

    # Keep-alive: 200 requests, 5 per tunnel on 40 tunnels, sizes checked.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--url", "http://127.0.0.1:%d/fixed/1000" % hp,
                                              "--workers", "4", "--count", "200",
                                              "--requests-per-tunnel", "5", "--expect-size", "1000"])
    check(rc == 0 and j and j["units"] == 200 and j["errors"]["total"] == 0,
          "http --count 200: exit %d, %s %s" % (rc, j, err[-300:]))
    check(j["http_status"] == {"200": 200}, "status counts: %r" % j["http_status"])
    check(j["tunnels"] == 40 and srv.conns == 40 and srv.requests == 200,
          "5 requests per tunnel: socksload %d tunnels; the server saw %d connections, %d requests"
          % (j["tunnels"], srv.conns, srv.requests))
    check(srv.closes == 40, "Connection: close on each tunnel's last request: %d" % srv.closes)
    check(srv.hosts == {"127.0.0.1:%d" % hp}, "Host headers: %r" % srv.hosts)
    check(j["unit"] == "requests" and j["latency_us"]["samples"] == 200,
          "requests and their latency: %r" % j)

    # Chunked, with --target and --path, verified against --expect-size.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--target", "127.0.0.1:%d" % hp, "--path",
                                              "/chunked/5000", "--expect-size", "5000",
                                              "--count", "50", "--requests-per-tunnel", "3"])
    check(rc == 0 and j and j["units"] == 50 and j["errors"]["total"] == 0,
          "chunked: exit %d, %s %s" % (rc, j, err[-300:]))
    check(j["bytes_down"] > 50 * 5000, "chunked: %d bytes down" % j["bytes_down"])
    # A chunked body that is not the size expected.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--target", "127.0.0.1:%d" % hp, "--path",
                                              "/chunked/5000", "--expect-size", "5001",
                                              "--count", "5"])
    check(rc == 1 and j and failures(j) == [("HTTP body 5000 bytes, expected 5001", 5)],
          "chunked, wrong --expect-size: exit %d, %s" % (rc, j and j["failures"]))

    # A 404 is counted by its status, and the run fails.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--url", "http://127.0.0.1:%d/missing" % hp,
                                              "--count", "10"])
    check(rc == 1 and j and j["errors"]["http_status"] == 10 and j["units"] == 0,
          "404: exit %d, %s" % (rc, j))
    check(failures(j) == [("HTTP status 404", 10)] and j["http_status"] == {"404": 10},
          "404 named: %r %r" % (j["failures"], j["http_status"]))
    # ... unless it is the status expected.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--url", "http://127.0.0.1:%d/missing" % hp,
                                              "--count", "10", "--expect-status", "404"])
    check(rc == 0 and j and j["units"] == 10, "--expect-status 404: exit %d, %s" % (rc, j))

    # A wrong --expect-size with Content-Length.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--url", "http://127.0.0.1:%d/fixed/20" % hp,
                                              "--count", "4", "--expect-size", "10"])
    check(rc == 1 and j and failures(j) == [("HTTP body 20 bytes, expected 10", 4)],
          "wrong --expect-size: exit %d, %s" % (rc, j and j["failures"]))
    # Less than Content-Length, then the close.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--url", "http://127.0.0.1:%d/short/100" % hp,
                                              "--count", "3"])
    check(rc == 1 and j and failures(j) == [("HTTP body 100 bytes, expected 110", 3)],
          "short body: exit %d, %s" % (rc, j and j["failures"]))

    # The open model: the rate asked is the rate achieved.
    rc, j, err = run_sl(ctx, ["http"] + px + ["--url", "http://127.0.0.1:%d/fixed/100" % hp,
                                              "--rate", "100", "--duration", "2"])
    check(rc == 0 and j and abs(j["rate_achieved"] - 100) <= 10 and j["units"] >= 190 and
          j["latency_us"]["corrected"], "http --rate 100: exit %d, %s" % (rc, j))

    # The same safety as --target: loopback only; no TLS.
    for url in ("http://192.0.2.1:80/", "http://example.com/", "https://127.0.0.1:%d/" % hp):
        r = ctx.run([socksload(), "http"] + px + ["--url", url, "--duration", "1"], timeout=20)
        check(r.returncode == 2, "--url %s: exit %d, want 2 (refused)" % (url, r.returncode))
    r = ctx.run([socksload(), "http"] + px + ["--target", "127.0.0.1:%d" % hp, "--path", "x y"],
                timeout=20)
    check(r.returncode == 2, "--path 'x y': exit %d, want 2" % r.returncode)


@case("socksload_source")
def socksload_source(ctx):
    """--source: each tunnel binds the next client address; ringsocks's access log names
    every one of them as the client."""
    need_ringsocks("ringsocks's access log")
    p = ctx.proxy()
    rc, j, err = run_sl(ctx, ["connrate", "--proxy", "socks5://127.0.0.1:%d" % p.port,
                              "--source", "127.0.0.2-127.0.0.5,127.0.0.20/30", "--workers", "3",
                              "--count", "60"])
    check(rc == 0 and j and j["units"] == 60 and j["errors"]["total"] == 0,
          "connrate --source: exit %d, %s %s" % (rc, j, err[-300:]))
    check(j["client_sources"] == {"given": 6, "used": 6}, "client_sources: %r" % j.get("client_sources"))
    p.stop()
    clients = re.findall(r"\bclient=(127\.0\.0\.\d+):\d+ .*\bcmd=connect\b", p.stderr())
    want = {"127.0.0.%d" % i for i in (2, 3, 4, 5, 21, 22)}
    check(len(clients) >= 60 and set(clients) == want,
          "the access log's clients: %d lines, %s; want %s" % (len(clients), sorted(set(clients)), sorted(want)))
    # Only loopback without --allow-nonlocal, and one family with the proxy.
    for src in ("127.0.0.1,10.0.0.1", "::1", "127.0.0.0/7"):
        r = ctx.run([socksload(), "connrate", "--proxy", "socks5://127.0.0.1:%d" % p.port, "--source",
                     src, "--count", "1"], timeout=20)
        check(r.returncode == 2 and b"--source" in r.stderr,
              "--source %s: exit %d, want 2 (%s)" % (src, r.returncode, r.stderr[-200:]))


@case("socksload_udp_loss")
def socksload_udp_loss(ctx):
    """udp mode through a ringsocks whose rule drops about half of the datagrams each way
    (fault udp_drop_50): every datagram socksload sent is echoed or counted lost (sent =
    echoed + lost, nothing else), and it lost exactly as many as ringsocks says it dropped
    (the access log's udp_drop=fault:N); --loss-timeout frees the slots, so a 400-datagram
    run with 64 in flight ends in seconds instead of waiting --timeout per loss. (The loss
    timeout is 1 s, not less: on a loaded machine under the sanitizers an echo can take
    longer than 0.2 s, and socksload then counts a datagram lost that ringsocks carried.)"""
    need_ringsocks("fault mode")
    p, _ = fault_proxy(ctx, ["udp_drop_50"])
    t0 = time.monotonic()
    rc, j, err = run_sl(ctx, ["udp", "--proxy", "socks5://127.0.0.1:%d" % p.port, "--count", "400",
                              "--window", "64", "--loss-timeout", "1", "--timeout", "30"])
    took = time.monotonic() - t0
    # Exit 1: the losses are errors.
    check(rc == 1 and j is not None, "socksload udp: exit %d, %s" % (rc, err[-300:]))
    u = j.get("udp", {})
    details = [json.dumps(u), json.dumps(j["errors"])]
    check(u.get("sent") == 400, "udp.sent is %r, want 400 (--count)" % u.get("sent"), details)
    check(u.get("echoed") == j["units"] and u.get("lost") == j["errors"]["udp_lost"],
          "udp.echoed/lost disagree with units/errors.udp_lost", details)
    check(u["echoed"] + u["lost"] == u["sent"] and j["errors"]["total"] == u["lost"],
          "sent %d != echoed %d + lost %d, or other errors" % (u["sent"], u["echoed"], u["lost"]),
          details)
    check(0.5 * 400 <= u["lost"] <= 0.95 * 400,
          "lost %d of 400 with half dropped each way (about 300 expected)" % u["lost"], details)
    check(abs(u["loss_pct"] - 100.0 * u["lost"] / 400) < 0.01, "loss_pct %r" % u["loss_pct"], details)
    check(took < 25, "the run took %.1f s: lost slots waited --timeout, not --loss-timeout" % took)
    rec = udp_log_line(p, None)  # socksload has closed the association
    check(rec.get("udp_drop") == "fault:%d" % u["lost"], "ringsocks dropped udp_drop=%r, socksload "
          "lost %d" % (rec.get("udp_drop"), u["lost"]), [str(rec)] + details)


def serve_socks5(ctx):
    """Starts `socksload serve --socks5` (stopped at the end of the case); its port."""
    err_path = ctx.path("serve.err")
    with open(err_path, "w") as errf:
        proc = subprocess.Popen([socksload(), "serve", "--socks5", "--port", "0"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)

    def stop():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ctx.defer(stop)
    port = {}

    def listening():
        with open(err_path) as f:
            m = re.match(r"socksload: serving on 127\.0\.0\.1:(\d+) ", f.readline())
        if m:
            port["p"] = int(m.group(1))
        return bool(m)
    check(wait_until(listening, 5.0), "serve --socks5 did not start")
    return port["p"]


@case("socksload_udp_direct")
def socksload_udp_direct(ctx):
    """serve --socks5 answers UDP ASSOCIATE with its own UDP echo (the macro benchmark's
    no-proxy UDP baseline): 2,000 datagrams of 1,400 bytes over 4 associations, all echoed
    and verified, none lost; --loss-timeout outside udp mode is bad usage."""
    port = {"p": serve_socks5(ctx)}
    px = "socks5://127.0.0.1:%d" % port["p"]
    rc, j, err = run_sl(ctx, ["udp", "--proxy", px, "--target", "127.0.0.1:%d" % port["p"],
                              "--tunnels", "4", "--size", "1400", "--count", "2000",
                              "--loss-timeout", "2"])
    check(rc == 0 and j is not None, "socksload udp: exit %d, %s" % (rc, err[-300:]))
    check(j["udp"] == {"sent": 2000, "echoed": 2000, "lost": 0, "loss_pct": 0,
                       "loss_timeout_s": 2} and j["tunnels"] == 4 and j["errors"]["total"] == 0,
          "direct udp: %s, errors %s" % (json.dumps(j["udp"]), json.dumps(j["errors"])))
    r = ctx.run([socksload(), "connrate", "--proxy", px, "--count", "1", "--loss-timeout", "1"],
                timeout=20)
    check(r.returncode == 2 and b"--loss-timeout" in r.stderr,
          "connrate --loss-timeout: exit %d, want 2 (%s)" % (r.returncode, r.stderr[-200:]))


@case("socksload_udp_rate")
def socksload_udp_rate(ctx):
    """udp --rate, the open loop. Direct (serve --socks5): 3,000 datagrams/s over 4
    associations for 2 s are sent at that pace (the report's send rate within 5 %, and each
    half-second interval's echoes within 0.3x..1.7x of it: paced, not sent in bursts of a
    second), all echoed, none lost.
    Through a ringsocks that drops about half of the datagrams each way (fault udp_drop_50):
    sent = echoed + lost after the drain, and socksload lost exactly as many as ringsocks
    says it dropped (udp_drop=fault:N); the echoes do not drive the sends (sent is the
    schedule's, not the echoes')."""
    port = serve_socks5(ctx)
    px = "socks5://127.0.0.1:%d" % port
    iv = ctx.path("udp-rate.iv")
    # Up to 3 runs: on a busy machine a run can be starved for a second (its intervals come
    # late and its echoes in a heap); a schedule sent in bursts fails every run.
    for attempt in range(3):
        rc, j, err = run_sl(ctx, ["udp", "--proxy", px, "--target", "127.0.0.1:%d" % port,
                                  "--tunnels", "4", "--rate", "3000", "--duration", "2",
                                  "--loss-timeout", "1", "--intervals", iv, "--interval", "0.5"])
        check(rc == 0 and j is not None, "socksload udp --rate: exit %d, %s" % (rc, err[-300:]))
        u = j["udp"]
        details = [json.dumps(u), json.dumps(j["errors"])]
        check(u["rate_asked"] == 3000 and abs(u["rate_sent"] - 3000) < 150,
              "asked 3000/s, sent %.1f/s" % u["rate_sent"], details)
        check(5000 <= u["sent"] <= 6100, "sent %d in 2 s at 3000/s" % u["sent"], details)
        check(u["echoed"] == u["sent"] and u["lost"] == 0 and j["errors"]["total"] == 0,
              "direct lost datagrams", details)
        with open(iv) as f:
            rows = [json.loads(ln) for ln in f if ln.strip()]
        # The first interval holds the setup (the schedule starts once the associations are
        # up). Wide bounds: echoes may stall for half a second (0.45x, then 1.5x); a schedule
        # sent in bursts of a second gives 2x and 0.
        full = [r for r in rows[1:] if r["secs"] >= 0.3 and r["t"] <= 2.0]
        paced = len(full) >= 2 and all(900 < r["rate"] < 5100 for r in full)
        if paced:
            break
    check(paced, "echoes per half second not paced at 3000/s in 3 runs, the last: (t, secs, rate) "
          "%s" % [(r["t"], r["secs"], r["rate"]) for r in rows])

    need_ringsocks("fault mode")
    # udp_buffer: on a busy machine a shard off the CPU for a few hundred ms would overflow the
    # kernel's default buffer, a loss that is neither the fault's nor a counting error.
    p, _ = fault_proxy(ctx, ["udp_drop_50"], extra="udp_buffer = 4194304;")
    rc, j, err = run_sl(ctx, ["udp", "--proxy", "socks5://127.0.0.1:%d" % p.port, "--rate", "1000",
                              "--duration", "1", "--loss-timeout", "1", "--timeout", "30"])
    check(rc == 1 and j is not None, "socksload udp --rate via udp_drop_50: exit %d, %s" % (rc, err[-300:]))
    u = j["udp"]
    details = [json.dumps(u), json.dumps(j["errors"])]
    check(800 <= u["sent"] <= 1050, "sent %d at 1000/s for 1 s: the echoes drove the sends" % u["sent"],
          details)
    check(u["echoed"] + u["lost"] == u["sent"] and j["errors"]["total"] == u["lost"],
          "sent %d != echoed %d + lost %d, or other errors" % (u["sent"], u["echoed"], u["lost"]), details)
    check(0.5 * u["sent"] <= u["lost"] <= 0.95 * u["sent"], "lost %d of %d with half dropped each way"
          % (u["lost"], u["sent"]), details)
    rec = udp_log_line(p, None)
    check(rec.get("udp_drop") == "fault:%d" % u["lost"], "ringsocks dropped udp_drop=%r, socksload "
          "lost %d" % (rec.get("udp_drop"), u["lost"]), [str(rec)] + details)
