"""
cases_preload.py - the socksifier (build/libringsocks-preload.so, build/ringsocks-run) with
programs no one here wrote: curl without proxy flags, Python urllib and sockets (blocking and
non-blocking with select, poll, epoll and edge-triggered epoll; UDP through UDP ASSOCIATE, a
DNS query among it), ncat, socat and Node's net; against ringsocks, and against Dante.

Targets are on loopback, which the library leaves alone by default: the cases set
RINGSOCKS_BYPASS_LOOPBACK=0, and the target looks each connection up in /proc and requires it
to belong to the proxy process (OwnerHTTP). Remote DNS uses good.test, a name only the proxy's
DNS stub knows: the program can reach it only if the name went to the proxy.

A fake SOCKS5 server in the test process holds its final reply back for HOLD seconds: a
non-blocking connect must return at once and the socket must turn writable only after the
reply, whichever way the program waits.
"""

import hashlib
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time

from harness import (CONFIG, Fail, OwnerHTTP, Skip, case, check, clean_env, free_port, make_hash, need_option, need_tools,
                     stop_process, tail, write_users)

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "preload_client.py")
BODY_SIZE = 256 << 10
USER = ("carol", "carol-pw-7")
HOLD = 1.0


def lib_path():
    lib = os.path.join(os.path.dirname(os.path.abspath(CONFIG.binary)), "libringsocks-preload.so")
    check(os.path.exists(lib), "%s is missing (make all builds it)" % lib)
    return lib


def run_path():
    path = os.path.join(os.path.dirname(os.path.abspath(CONFIG.binary)), "ringsocks-run")
    check(os.access(path, os.X_OK), "%s is missing (make all builds it)" % path)
    return path


def pl_env(proxy, var="RINGSOCKS_PROXY", loopback_direct=False):
    env = clean_env()
    env["LD_PRELOAD"] = lib_path()
    env[var] = proxy
    if not loopback_direct:
        env["RINGSOCKS_BYPASS_LOOPBACK"] = "0"
    return env


def target(ctx, p):
    body = os.urandom(BODY_SIZE)
    t = OwnerHTTP(ctx, body)
    t.pid = p.proc.pid if p is not None and p.proc is not None else None
    return t, hashlib.sha256(body).hexdigest()


def via_proxy(t, what, n=1):
    check(len(t.owners) >= n, "%s: the target saw %d connection(s), expected %d" % (what, len(t.owners), n))
    check(all(w == "proxy" for _, w in t.owners),
          "%s: the target's connections came from %s, not all from the proxy: the library let the program "
          "connect directly" % (what, t.owners))


def run_json(ctx, argv, env, what):
    r = ctx.run(argv, timeout=40, env=env)
    out = r.stdout.decode("utf-8", "replace").strip()
    err = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0, "%s exited %d: %s" % (what, r.returncode, tail(err, 8) or out or "(no message)"))
    try:
        return json.loads(out.splitlines()[-1])
    except (ValueError, IndexError):
        raise Fail("%s printed no JSON line: %r" % (what, out[-200:]))


def curl(ctx, argv_prefix, url, env, what):
    out = ctx.path("curl.out")
    if os.path.exists(out):
        os.unlink(out)
    r = ctx.run(list(argv_prefix) + ["curl", "-sS", "--fail", "--max-time", "20", "-o", out, url], timeout=40,
                env=env)
    err = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0, "%s: curl %s exited %d: %s" % (what, url, r.returncode, tail(err, 8) or "(no message)"))
    with open(out, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def dns_proxy(ctx, extra=()):
    need_option("--resolver")
    dns = ctx.dns_stub()
    return dns, ctx.proxy(args=["--resolver", dns.spec] + list(extra))


# ------------------------------------------------------------------ curl, no proxy flags

@case("preload_curl_socks5h_remote_dns")
def preload_curl_socks5h_remote_dns(ctx):
    """ringsocks-run --proxy socks5h://: curl resolves good.test to a placeholder, the name goes to
    the proxy (ATYP 3), the proxy's DNS stub answers."""
    need_tools("curl")
    dns, p = dns_proxy(ctx)
    t, sha = target(ctx, p)
    env = clean_env()
    env["RINGSOCKS_BYPASS_LOOPBACK"] = "0"
    got = curl(ctx, [run_path(), "--proxy", "socks5h://127.0.0.1:%d" % p.port, "--"],
               "http://good.test:%d/blob" % t.port, env, "ringsocks-run socks5h curl")
    check(got == sha, "curl got a body that differs from the target's")
    via_proxy(t, "curl socks5h good.test")
    check(dns.wait_query("good.test", 1), "the proxy never asked its DNS stub for good.test: %s" % dns.queries)


@case("preload_curl_socks5_local_dns")
def preload_curl_socks5_local_dns(ctx):
    """socks5:// (no h) resolves locally: an address goes to the proxy; good.test, which only the
    proxy's resolver knows, does not resolve."""
    need_tools("curl")
    dns, p = dns_proxy(ctx)
    t, sha = target(ctx, p)
    env = pl_env("socks5://127.0.0.1:%d" % p.port)
    check(curl(ctx, [], "http://127.0.0.1:%d/blob" % t.port, env, "socks5 by address") == sha, "body differs")
    via_proxy(t, "curl socks5 127.0.0.1")
    r = ctx.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "http://good.test:%d/blob" % t.port],
                timeout=30, env=env)
    check(r.returncode != 0, "socks5:// (local DNS): curl reached good.test, a name only the proxy knows")
    check(not any(q[0].rstrip(".") == "good.test" for q in dns.queries),
          "socks5:// (local DNS): the name still went to the proxy: %s" % dns.queries)


@case("preload_curl_socks4_socks4a")
def preload_curl_socks4_socks4a(ctx):
    need_tools("curl")
    dns, p = dns_proxy(ctx)
    t, sha = target(ctx, p)
    check(curl(ctx, [], "http://127.0.0.1:%d/blob" % t.port, pl_env("socks4://127.0.0.1:%d" % p.port),
               "socks4") == sha, "socks4: body differs")
    check(curl(ctx, [], "http://good.test:%d/blob" % t.port, pl_env("socks4a://127.0.0.1:%d" % p.port),
               "socks4a") == sha, "socks4a: body differs")
    via_proxy(t, "curl socks4 and socks4a", 2)
    check(dns.wait_query("good.test", 1), "socks4a: the proxy never asked for good.test: %s" % dns.queries)


@case("preload_curl_auth")
def preload_curl_auth(ctx):
    """user:pass in the URL (RFC 1929); a wrong password makes connect() fail, nothing reaches the
    target."""
    need_tools("curl")
    need_option("--auth", "--users")
    users = write_users(ctx, ["%s:%s" % (USER[0], make_hash(USER[1]))])
    p = ctx.proxy(args=["--auth", "password", "--users", users])
    t, sha = target(ctx, p)
    url = "http://127.0.0.1:%d/blob" % t.port
    check(curl(ctx, [], url, pl_env("socks5h://%s:%s@127.0.0.1:%d" % (USER[0], USER[1], p.port)), "auth") == sha,
          "auth: body differs")
    via_proxy(t, "curl socks5h with a password")
    n = len(t.owners)
    r = ctx.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", url], timeout=30,
                env=pl_env("socks5h://%s:wrong@127.0.0.1:%d" % (USER[0], p.port)))
    check(r.returncode != 0, "a wrong password: curl exited 0")
    check(len(t.owners) == n, "a wrong password: the target still got a connection")


@case("preload_loopback_bypass")
def preload_loopback_bypass(ctx):
    """Loopback goes direct by default, and so do RINGSOCKS_BYPASS networks."""
    need_tools("curl")
    p = ctx.proxy()
    t, sha = target(ctx, p)
    url = "http://127.0.0.1:%d/blob" % t.port
    check(curl(ctx, [], url, pl_env("socks5h://127.0.0.1:%d" % p.port, loopback_direct=True),
               "loopback default") == sha, "body differs")
    env = pl_env("socks5h://127.0.0.1:%d" % p.port)
    env["RINGSOCKS_BYPASS"] = "10.0.0.0/8, 127.0.0.0/16"
    check(curl(ctx, [], url, env, "RINGSOCKS_BYPASS") == sha, "body differs")
    check(len(t.owners) == 2 and all(w == "other" for _, w in t.owners),
          "bypassed connections should come from curl itself, not the proxy: %s" % (t.owners,))


# ------------------------------------------------------------------ Python

@case("preload_python_urllib")
def preload_python_urllib(ctx):
    """urllib (blocking sockets, getaddrinfo) with the proxy from SOCKS_PROXY."""
    dns, p = dns_proxy(ctx)
    t, sha = target(ctx, p)
    out = run_json(ctx, [sys.executable, CLIENT, "urllib", "http://good.test:%d/blob" % t.port],
                   pl_env("socks5h://127.0.0.1:%d" % p.port, var="SOCKS_PROXY"), "python urllib")
    check(out["sha256"] == sha, "urllib got a body that differs from the target's")
    via_proxy(t, "python urllib")


@case("preload_python_nonblocking")
def preload_python_nonblocking(ctx):
    """Non-blocking connect, then select / poll / epoll / edge-triggered epoll for writable,
    through ringsocks to good.test; and poll on an IPv6 socket (placeholder IPv4-mapped, the
    proxy reached at its IPv4-mapped address)."""
    dns, p = dns_proxy(ctx)
    t, sha = target(ctx, p)
    env = pl_env("socks5h://127.0.0.1:%d" % p.port)
    for mode in ("blocking", "select", "poll", "epoll", "epollet", "poll6"):
        out = run_json(ctx, [sys.executable, CLIENT, "get", mode, "good.test", str(t.port), "/blob"], env,
                       "python socket (%s)" % mode)
        check(out["status"].startswith("HTTP/1.0 200"), "%s: status %r" % (mode, out["status"]))
        check(out["sha256"] == sha, "%s: the body differs from the target's" % mode)
    via_proxy(t, "python sockets", 6)


class SlowSocks5:
    """A SOCKS5 server (no auth, CONNECT) that holds the final reply back HOLD seconds, then
    echoes. Records each request's ATYP and address."""

    def __init__(self, ctx):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.replied_at = []
        ctx.defer(self.sock.close)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _exact(c, n):
        b = b""
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise OSError("closed")
            b += x
        return b

    def _serve(self, c):
        try:
            with c:
                c.settimeout(20)
                head = self._exact(c, 2)
                self._exact(c, head[1])
                c.sendall(b"\x05\x00")
                req = self._exact(c, 4)
                if req[3] == 1:
                    addr = socket.inet_ntoa(self._exact(c, 4))
                elif req[3] == 3:
                    addr = self._exact(c, self._exact(c, 1)[0]).decode()
                else:
                    addr = socket.inet_ntop(socket.AF_INET6, self._exact(c, 16))
                port = int.from_bytes(self._exact(c, 2), "big")
                self.requests.append((req[3], addr, port))
                time.sleep(HOLD)
                self.replied_at.append(time.monotonic())
                c.sendall(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50")
                while True:
                    b = c.recv(4096)
                    if not b:
                        return
                    c.sendall(b)
        except OSError:
            return


@case("preload_handshake_before_writable")
def preload_handshake_before_writable(ctx):
    """A non-blocking connect returns EINPROGRESS at once, and the socket turns writable for the
    program only once the proxy's reply arrived (select, poll, epoll, epoll edge-triggered); a
    blocking connect returns only then. The name goes to the proxy as ATYP 3."""
    srv = SlowSocks5(ctx)
    env = pl_env("socks5h://127.0.0.1:%d" % srv.port)
    for mode in ("select", "poll", "epoll", "epollet", "blocking"):
        out = run_json(ctx, [sys.executable, CLIENT, "echo", mode, "slow-proxy.test", "7"], env,
                       "python echo (%s)" % mode)
        check(out["reply"] == "ping", "%s: the echo came back as %r" % (mode, out["reply"]))
        check(out["writable_s"] >= HOLD * 0.9,
              "%s: the socket turned writable after %.3f s, before the proxy's reply (held %.1f s)"
              % (mode, out["writable_s"], HOLD))
        if mode != "blocking":
            check(out["connect_rc"] == 115 and out["connect_s"] < HOLD / 2,
                  "%s: a non-blocking connect() took %.3f s and returned %d: it waited for the handshake"
                  % (mode, out["connect_s"], out["connect_rc"]))
    check(srv.requests and all(r == (3, "slow-proxy.test", 7) for r in srv.requests),
          "the proxy should get the name (ATYP 3) and port 7, got %s" % srv.requests)


# ------------------------------------------------------------------ UDP

class UDPEchoOnce:
    """A UDP echo on 127.0.0.1 for one datagram that records who sent it (.peers)."""

    def __init__(self, ctx):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(20)
        self.addr = self.sock.getsockname()
        self.peers = []
        ctx.defer(self.sock.close)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            data, peer = self.sock.recvfrom(4096)
            self.peers.append(peer)
            self.sock.sendto(data, peer)
        except OSError:
            pass


@case("preload_udp_associate")
def preload_udp_associate(ctx):
    """Python UDP goes through UDP ASSOCIATE, with sendto/recvfrom and sendmsg/recvmsg on an
    unconnected socket and send/recv on a connected one: the echo server sees the proxy's relay
    socket, not the program's, and the answer's source is the echo server; a DNS query to the
    DNS stub gets good.test's address back."""
    dns, p = dns_proxy(ctx)
    env = pl_env("socks5h://127.0.0.1:%d" % p.port)
    for how in ("to", "msg", "conn"):
        echo = UDPEchoOnce(ctx)
        out = run_json(ctx, [sys.executable, CLIENT, "udp", "127.0.0.1", str(echo.addr[1]), how], env,
                       "python udp (%s)" % how)
        check(out["reply"] == "ping", "%s: the UDP echo came back as %r" % (how, out["reply"]))
        if how != "conn":  # a connected socket's peer is the relay (getpeername), as with TCP
            check(tuple(out["from"]) == echo.addr, "%s: the answer's source is %s, not the echo server %s"
                  % (how, out["from"], echo.addr))
        check(echo.peers and echo.peers[0][1] != out["local"][1],
              "%s: the echo server saw the program's own socket %s: the datagram went direct" % (how, echo.peers))
    out = run_json(ctx, [sys.executable, CLIENT, "dns", "127.0.0.1", str(dns.port), "good.test"], env, "python dns")
    check(out["rcode"] == 0 and out["a"] == ["127.0.0.1"], "the DNS answer through the proxy: %s" % out)


# ------------------------------------------------------------------ ncat, socat, Node

def stdio_get(ctx, argv, what):
    """A program that copies stdin to a connection and the connection to stdout sends a GET for
    good.test through ringsocks (socks5h); the body must be the target's."""
    dns, p = dns_proxy(ctx)
    t, sha = target(ctx, p)
    r = ctx.run([a.replace("PORT", str(t.port)) for a in argv], timeout=40,
                input=b"GET /blob HTTP/1.0\r\nHost: good.test\r\n\r\n",
                env=pl_env("socks5h://127.0.0.1:%d" % p.port))
    check(r.returncode == 0, "%s exited %d: %s" % (what, r.returncode, tail(r.stderr.decode("utf-8", "replace"), 6)))
    body = r.stdout.partition(b"\r\n\r\n")[2]
    check(hashlib.sha256(body).hexdigest() == sha, "%s got %d body bytes that differ from the target's"
          % (what, len(body)))
    via_proxy(t, what)


@case("preload_ncat")
def preload_ncat(ctx):
    """ncat (nsock: non-blocking connect, epoll)."""
    need_tools("ncat")
    stdio_get(ctx, ["ncat", "good.test", "PORT"], "ncat")


@case("preload_socat")
def preload_socat(ctx):
    """socat with connect-timeout (non-blocking connect, then select)."""
    need_tools("socat")
    stdio_get(ctx, ["socat", "-t", "10", "-", "TCP:good.test:PORT,connect-timeout=10"], "socat")


NODE_CLIENT = r"""
const net = require('net'), crypto = require('crypto');
const [host, port] = process.argv.slice(1);
const chunks = [];
const s = net.connect({host, port: +port}, () => s.write('GET /blob HTTP/1.0\r\nHost: ' + host + '\r\n\r\n'));
s.on('data', d => chunks.push(d));
s.on('end', () => {
  const all = Buffer.concat(chunks), i = all.indexOf('\r\n\r\n');
  console.log(JSON.stringify({sha256: crypto.createHash('sha256').update(all.subarray(i + 4)).digest('hex')}));
});
s.on('error', e => { console.error(String(e)); process.exit(1); });
"""


@case("preload_node_net")
def preload_node_net(ctx):
    """Node's net (libuv: getaddrinfo on its thread pool, non-blocking connect, epoll)."""
    need_tools("node")
    dns, p = dns_proxy(ctx)
    t, sha = target(ctx, p)
    out = run_json(ctx, ["node", "-e", NODE_CLIENT, "good.test", str(t.port)],
                   pl_env("socks5h://127.0.0.1:%d" % p.port), "node net")
    check(out["sha256"] == sha, "node got a body that differs from the target's")
    via_proxy(t, "node net")


# ------------------------------------------------------------------ Dante as the server

def dante_account(ctx, user, password):
    """The argv prefix that runs a program in a mount namespace of its own where
    /etc/passwd and /etc/shadow are copies holding one more account, user with password:
    Dante's username method checks system accounts, and a test must not add one to the
    machine. Root only."""
    if os.getuid() != 0:
        raise Skip("a private system account for Dante needs root (a mount namespace)")
    files = {}
    for name in ("passwd", "shadow"):
        with open("/etc/" + name) as f:
            files[name] = f.read()
    files["passwd"] += "%s:x:40123:40123::/nonexistent:/usr/sbin/nologin\n" % user
    files["shadow"] += "%s:%s:19000:0:99999:7:::\n" % (user, make_hash(password))
    for name, text in files.items():
        path = ctx.path("dante-" + name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600 if name == "shadow" else 0o644)
    return ["unshare", "-m", "sh", "-c",
            'mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/shadow && shift && exec "$@"',
            ctx.path("dante-passwd"), ctx.path("dante-shadow")]


def start_danted(ctx, account=None):
    """danted on 127.0.0.1, no authentication, or with account = (user, password) its
    username method (RFC 1929) against that private account (dante_account())."""
    port = free_port()
    log = ctx.path("dante.log")
    conf = ctx.path("danted.conf")
    user = "root" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    unpriv = "nobody" if os.getuid() == 0 else user
    with open(conf, "w") as f:
        f.write("logoutput: %s\ninternal: 127.0.0.1 port = %d\nexternal: 127.0.0.1\n"
                "socksmethod: %s\nclientmethod: none\nuser.privileged: %s\nuser.unprivileged: %s\n"
                "user.libwrap: %s\nclient pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: connect\n}\n"
                "socks pass {\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  command: connect\n  log: connect\n}\n"
                % (log, port, "username" if account else "none", user, unpriv, unpriv))
    env = clean_env()
    env["TMPDIR"] = "/tmp"  # danted(8): its lock and mmap files, writable by both of its users
    errf = open(ctx.path("danted.err"), "wb")
    ctx.defer(errf.close)
    prefix = dante_account(ctx, *account) if account else []
    # unshare and sh exec: the PID is danted's own, stopped by the harness.
    proc = subprocess.Popen(prefix + ["danted", "-f", conf, "-p", ctx.path("danted.pid")], env=env,
                            stdout=subprocess.DEVNULL, stderr=errf)
    ctx.defer(lambda: stop_process(proc))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port, log
        except OSError:
            if proc.poll() is not None:
                with open(ctx.path("danted.err"), errors="replace") as f:
                    raise Fail("danted exited %s: %s" % (proc.returncode, tail(f.read(), 3)))
            time.sleep(0.1)
    raise Fail("danted did not listen on 127.0.0.1:%d within 15 s" % port)


@case("preload_dante_server")
def preload_dante_server(ctx):
    """Dante (danted) as the server: curl and a non-blocking Python client by address, with
    socks5 and socks4; Dante's log must show each connection to the target."""
    need_tools("danted", "curl")
    port, log = start_danted(ctx)
    t, sha = target(ctx, None)
    url = "http://127.0.0.1:%d/blob" % t.port
    for scheme in ("socks5", "socks4"):
        check(curl(ctx, [], url, pl_env("%s://127.0.0.1:%d" % (scheme, port)), "Dante %s" % scheme) == sha,
              "Dante %s: body differs" % scheme)
    out = run_json(ctx, [sys.executable, CLIENT, "get", "epoll", "127.0.0.1", str(t.port), "/blob"],
                   pl_env("socks5h://127.0.0.1:%d" % port), "python epoll via Dante")
    check(out["sha256"] == sha, "python epoll via Dante: body differs")
    check(len(t.owners) == 3, "the target saw %d connections, expected 3" % len(t.owners))
    with open(log, errors="replace") as f:
        text = f.read()
    seen = text.count("127.0.0.1.%d" % t.port)
    check(seen >= 3, "Dante's log names the target 127.0.0.1.%d %d times, expected 3 (the programs went direct?)"
          % (t.port, seen), tail(text, 10))
