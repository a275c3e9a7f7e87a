"""
cases_admin.py - the admin endpoint against what it must survive: web pages
in a browser on the host (cross-origin POSTs, DNS rebinding), slow clients
holding connections, and a process out of file descriptors; and that the
ways operators call it keep working (curl -X POST, Prometheus on a listed
host name; an endpoint beyond loopback needs a token: cases_ctl.py).

Tests that need ringsocks' own flags are skipped for other peers.
"""

import select
import socket
import statistics
import threading
import time

from cases_control import conf_proxy, reload_count, rules_conf, write_conf, ALLOW_LOOPBACK
from cases_limits import open_fds, start_tunnels
from harness import (CONFIG, Fail, Skip, admin_addr, admin_request, case, check, echo_roundtrip,
                     fmt_status, need_option, need_ringsocks, need_tools, socks_connect, tail,
                     wait_until)

EVIL = "http://evil.example"


def ask(admin, method, path, headers=None, body=None):
    """(status, body) of one admin request; a connection closed or reset without
    an answer fails the test with what happened."""
    try:
        st, text, _ = admin_request(admin, method, path, body=body, headers=headers, timeout=10.0)
    except Exception as e:  # OSError, http.client.RemoteDisconnected, BadStatusLine, timeouts
        raise Fail("%s %s with %s: no answer (%s: %s)" % (method, path, headers or "no headers",
                                                         type(e).__name__, e))
    return st, text


def still_serving(ctx, p, admin, what):
    """The proxy neither drained nor stopped: /healthz 200, a tunnel works."""
    p.check_alive()
    check("draining" not in p.stderr(), "%s started a drain" % what, tail(p.stderr()))
    st, body = ask(admin, "GET", "/healthz")
    check(st == 200, "GET /healthz after %s answered %d %r, expected 200" % (what, st, body))
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    s.close()


def refused(admin, method, path, headers, want, body=None):
    st, text = ask(admin, method, path, headers, body)
    check(st == want, "%s %s with %s answered %d %r, expected %d"
          % (method, path, headers, st, text, want))
    check(text.endswith("\n") and "\n" not in text[:-1] and len(text) > 1,
          "%s %s: the %d answer's body is not one line saying why: %r" % (method, path, st, text))


# ------------------------------------------------------ browsers on the host

@case("admin_refuses_cross_origin")
def admin_refuses_cross_origin(ctx):
    """What a web page can make a browser send is refused, and changes nothing:
    the attack as shown (POST /drain, Origin: http://evil.example, text/plain,
    a CORS simple request) and its variants. What an operator, or a page of the
    endpoint's own origin, sends still works."""
    need_ringsocks()
    p = ctx.proxy()
    admin = admin_addr(p)
    port = admin[1]
    reloads = reload_count(p)

    refused(admin, "POST", "/drain", {"Origin": EVIL, "Content-Type": "text/plain;charset=UTF-8"},
            403, body="x")
    # fetch() with a Blob body: no content type at all, but an Origin.
    refused(admin, "POST", "/drain", {"Origin": EVIL}, 403)
    # A form, posted from a page that sends no Origin (old browsers, privacy add-ons).
    refused(admin, "POST", "/drain", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
            body="a=1")
    refused(admin, "POST", "/drain", {"Content-Type": "Multipart/Form-Data; boundary=zz"}, 415,
            body="--zz--\r\n")
    refused(admin, "POST", "/reload", {"Content-Type": "text/plain"}, 415, body="x")
    # Fetch metadata from a browser that says where the request came from.
    refused(admin, "POST", "/drain", {"Sec-Fetch-Site": "cross-site"}, 403)
    refused(admin, "POST", "/drain", {"Sec-Fetch-Site": "same-site"}, 403)
    # Another service on this host is another origin.
    refused(admin, "POST", "/drain", {"Origin": "http://127.0.0.1:%d" % (port + 1)}, 403)
    refused(admin, "POST", "/drain", {"Origin": "null"}, 403)
    check(reload_count(p) == reloads, "a refused POST /reload reloaded", tail(p.stderr()))
    still_serving(ctx, p, admin, "the refused requests")

    st, body = ask(admin, "GET", "/healthz", {"Sec-Fetch-Site": "none"})
    check(st == 200, "GET /healthz with Sec-Fetch-Site: none answered %d %r" % (st, body))
    own = {"Origin": "http://127.0.0.1:%d" % port, "Sec-Fetch-Site": "same-origin",
           "Content-Type": "application/json"}
    st, body = ask(admin, "POST", "/reload", own, body="{}")
    check(st == 200, "POST /reload from the endpoint's own origin answered %d %r" % (st, body))


@case("admin_refuses_rebinding")
def admin_refuses_rebinding(ctx):
    """DNS rebinding: a page whose name resolves to 127.0.0.1 is same-origin
    with itself, so only Host tells; a name is refused unless listed, an
    address or localhost is fine."""
    need_ringsocks()
    p = ctx.proxy()
    admin = admin_addr(p)
    port = admin[1]
    rebound = {"Host": "evil.example:%d" % port, "Origin": "http://evil.example:%d" % port,
               "Sec-Fetch-Site": "same-origin"}
    refused(admin, "POST", "/drain", rebound, 403)
    refused(admin, "POST", "/drain", {"Host": "evil.example:%d" % port}, 403)
    refused(admin, "GET", "/metrics", {"Host": "evil.example:%d" % port}, 403)
    refused(admin, "GET", "/metrics", {"Host": "127.0.0.1.nip.io:%d" % port}, 403)
    refused(admin, "GET", "/metrics", {"Host": "localhost.evil.example"}, 403)
    still_serving(ctx, p, admin, "the rebound requests")
    for host in ("127.0.0.1:%d" % port, "127.0.0.1", "localhost:%d" % port, "[::1]:%d" % port):
        st, body = ask(admin, "GET", "/healthz", {"Host": host})
        check(st == 200, "GET /healthz with Host: %s answered %d %r, expected 200" % (host, st, body))


@case("admin_curl_post_drains")
def admin_curl_post_drains(ctx):
    """`curl -X POST .../drain` (no body, no content type) drains; `curl -d ''`
    (a form type, as a web page could send it) is refused with 415 and why."""
    need_ringsocks()
    need_tools("curl")
    p = ctx.proxy()
    admin = admin_addr(p)
    url = "http://%s:%d/drain" % admin

    def curl(*args):
        r = ctx.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-w", " %{http_code}"]
                    + list(args) + [url], timeout=20)
        out = r.stdout.decode("utf-8", "replace")
        check(r.returncode == 0, "curl %s: exit %d %s" % (" ".join(args), r.returncode,
                                                        r.stderr.decode("utf-8", "replace")))
        return out

    out = curl("-d", "")
    check(out.endswith(" 415") and "curl -X POST" in out,
          "curl -d '' %s answered %r, expected 415 saying to use curl -X POST" % (url, out))
    still_serving(ctx, p, admin, "curl -d ''")
    out = curl("-X", "POST")
    check(out == "draining\n 202", "curl -X POST %s answered %r, expected 'draining' 202" % (url, out))
    p.exit_expected = True
    check(wait_until(lambda: p.proc.poll() is not None, 6.0),
          "the proxy still runs 6 s after curl -X POST /drain with no tunnel open", tail(p.stderr()))
    check(p.proc.returncode == 0, "after the drain: %s, expected exit 0" % fmt_status(p.proc.returncode))


@case("admin_hosts_option")
def admin_hosts_option(ctx):
    """admin_hosts (file) and --admin-host (command line, replaces the file's
    list) name the hosts Prometheus may scrape by; other names stay refused. A
    bad name fails -t with FILE:LINE; a reload that changes it says restart."""
    need_option("--admin-host")
    p, path = conf_proxy(ctx, rules_conf(ALLOW_LOOPBACK, extra='admin_hosts = ["node1.example", '
                                                                 '"Prom.Example"];'))
    admin = admin_addr(p)
    port = admin[1]
    for host, want in (("node1.example:%d" % port, 200), ("NODE1.EXAMPLE", 200),
                       ("prom.example:%d" % port, 200), ("node2.example:%d" % port, 403),
                       ("node1.example.evil.example", 403)):
        st, body = ask(admin, "GET", "/metrics", {"Host": host})
        check(st == want, "GET /metrics with Host: %s answered %d %r, expected %d"
              % (host, st, body[:200], want))

    # A reload keeps the list the process started with, and says so.
    write_conf(ctx, rules_conf(ALLOW_LOOPBACK, extra='admin_hosts = ["other.example"];'),
               path=path)
    st, body = ask(admin, "POST", "/reload")
    check(st == 200, "POST /reload answered %d %r" % (st, body))
    check('needs a restart: admin_hosts ["node1.example", "prom.example"] -> ["other.example"]'
          in p.stderr(), "a reload that changed admin_hosts did not say it needs a restart",
          tail(p.stderr()))
    st, _ = ask(admin, "GET", "/healthz", {"Host": "node1.example"})
    check(st == 200, "after the reload, Host: node1.example answered %d, expected 200" % st)
    st, _ = ask(admin, "GET", "/healthz", {"Host": "other.example"})
    check(st == 403, "after the reload, Host: other.example answered %d, expected 403" % st)

    p2 = ctx.proxy(args=["-c", path, "--admin-host", "cli.example", "--admin-host", "two.example"])
    admin2 = admin_addr(p2)
    for host, want in (("cli.example", 200), ("two.example:1", 200), ("other.example", 403)):
        st, _ = ask(admin2, "GET", "/healthz", {"Host": host})
        check(st == want, "with --admin-host: Host: %s answered %d, expected %d" % (host, st, want))

    bad = write_conf(ctx, 'admin_hosts = ["node1.example:9180"];\n', name="bad.conf")
    r = ctx.run([CONFIG.binary, "-t", "-c", bad], timeout=20)
    err = r.stderr.decode("utf-8", "replace") + r.stdout.decode("utf-8", "replace")
    check(r.returncode == 1 and "bad.conf:1" in err and "admin_hosts" in err,
          "-t with admin_hosts = [\"node1.example:9180\"]: exit %d, expected 1 and bad.conf:1"
          % r.returncode, err)
    r = ctx.run([CONFIG.binary, "-t", "--admin-host", "evil example"], timeout=20)
    check(r.returncode == 2, "--admin-host 'evil example': exit %d, expected 2" % r.returncode,
          r.stderr.decode("utf-8", "replace"))


# ----------------------------------------------------- slow clients, no fds

class SlowClients:
    """n clients that each send one byte a second of a request head that never
    ends; one the server closes connects again at its next tick (slow clients
    arriving all the time)."""

    HEAD = b"GET /healthz HTTP/1.1\r\nX-Slow: "

    def __init__(self, addr, n):
        self.addr, self.n = addr, n
        self.socks = [None] * n
        self.sent = [0] * n
        self.connects = 0
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True, name="slow-clients")
        self.th.start()

    def _connect(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(self.addr)
        self.socks[i], self.sent[i] = s, 0
        self.connects += 1

    def _drop(self, i):
        try:
            self.socks[i].close()
        except OSError:
            pass
        self.socks[i] = None

    def _run(self):
        while not self.stop_ev.is_set():
            tick = time.monotonic()
            for i in range(self.n):
                if self.stop_ev.is_set():
                    break
                s = self.socks[i]
                if s is None:
                    self._connect(i)
                    continue
                b = self.HEAD[self.sent[i]:self.sent[i] + 1] or b"a"
                try:
                    if s.send(b) == 1:
                        self.sent[i] += 1
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    if e.errno == 107:  # ENOTCONN: the connect is still on its way
                        continue
                    self._drop(i)
                    continue
                # Closed by the server: EOF, a reset or an answer.
                try:
                    r, _, _ = select.select([s], [], [], 0)
                    if r:
                        self._drop(i)
                except (OSError, ValueError):
                    self._drop(i)
            self.stop_ev.wait(max(0.0, 1.0 - (time.monotonic() - tick)))

    def stop(self):
        self.stop_ev.set()
        self.th.join(10)
        for i in range(self.n):
            if self.socks[i] is not None:
                self._drop(i)


def timed_healthz(admin, limit=8.0):
    """Seconds until GET /healthz is answered (limit when it is not)."""
    t0 = time.monotonic()
    try:
        st, _, _ = admin_request(admin, "GET", "/healthz", timeout=limit)
    except Exception:  # OSError, http.client's errors, timeouts
        return limit, None
    return time.monotonic() - t0, st


@case("admin_healthz_under_slow_clients", timeout=90)
def admin_healthz_under_slow_clients(ctx):
    """200 slow clients (a byte a second, reconnecting when closed) must not
    delay /healthz: the median of 5 is under 0.5 s (the blocking endpoint
    took over 2 s)."""
    need_ringsocks()
    p = ctx.proxy()
    admin = admin_addr(p)
    slow = SlowClients(admin, 200)
    ctx.defer(slow.stop)
    time.sleep(2.5)  # every slow client connected, and some closed and back
    took, codes = [], []
    for _ in range(5):
        t, st = timed_healthz(admin)
        took.append(t)
        codes.append(st)
        time.sleep(0.3)
    slow.stop()
    med = statistics.median(took)
    detail = "times %s, statuses %s, %d slow connects" % (
        " ".join("%.3f" % t for t in took), codes, slow.connects)
    check(slow.connects >= 200, "only %d slow clients connected" % slow.connects, detail)
    check(med < 0.5, "GET /healthz under 200 slow clients took %.2f s (median of 5), expected "
          "< 0.5 s" % med, detail)
    check(codes.count(200) >= 3, "GET /healthz under 200 slow clients was not answered 200", detail)
    p.check_alive()


@case("admin_answers_out_of_fds")
def admin_answers_out_of_fds(ctx):
    """Under a 64-fd limit with every fd taken by tunnels and waiting clients,
    /healthz is still answered 200 (on the spare fd), three times in a row."""
    need_ringsocks("needs prlimit around ringsocks")
    need_tools("prlimit")
    echo = ctx.echo_server()
    p = ctx.proxy(args=("--max-conns", "1000"), wrap=("prlimit", "--nofile=64:64", "--"))
    admin = admin_addr(p)
    pid = p.proc.pid
    ok, failed, waiting = start_tunnels(p, echo.port, 40)
    check(len(ok) < 40, "all 40 tunnels opened under a 64-fd limit: the limit was not reached")
    # Silent clients fill what the tunnels left (how much depends on when the shards ran out),
    # and a few more wait in the backlog to take any fd a shard frees: the table stays full.
    idle = []
    ctx.defer(lambda: [s.close() for s in idle + ok + failed + waiting])
    deadline = time.monotonic() + 5.0
    while open_fds(pid) < 64 and time.monotonic() < deadline:
        idle.append(socket.create_connection(p.addr, timeout=5))
        time.sleep(0.05)
    for _ in range(4):
        idle.append(socket.create_connection(p.addr, timeout=5))
    full = wait_until(lambda: open_fds(pid) >= 64, 3.0, 0.05)
    check(full, "the proxy holds %d fds under a 64-fd limit with %d tunnels and %d silent clients: "
          "the table is not full" % (open_fds(pid), len(ok), len(idle)))
    for i in range(3):
        st, body = ask(admin, "GET", "/healthz")
        check(st == 200, "GET /healthz #%d out of fds answered %d %r, expected 200" % (i + 1, st, body))
        check(wait_until(lambda: open_fds(pid) >= 64, 2.0, 0.02),
              "after GET /healthz #%d the proxy holds %d fds: the spare did not come back"
              % (i + 1, open_fds(pid)))
    st, body = ask(admin, "GET", "/metrics")
    check(st == 200 and "ringsocks_" in body, "GET /metrics out of fds answered %d" % st)
    p.check_alive()
    for s in ok[:2]:
        echo_roundtrip(s, 1024)
