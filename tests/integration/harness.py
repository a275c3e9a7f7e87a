"""
harness.py - building blocks of the ringsocks integration suite.

Standard library only. Everything a test starts is registered on its Ctx and
stopped by the Ctx at the end of the test (processes by PID, servers and
sockets closed), whether the test passed, failed or timed out.

Pieces:
  Ctx          per-test context: temp dir, proxy under test, helper servers, subprocess runs
  Proxy        one ringsocks (or, for harness self-checks, microsocks) process
  EchoServer   selector-based TCP echo server (half-close aware, back-pressured)
  TCPServer    thread-per-connection TCP server around a handler(conn, peer)
  HTTPFiles    random files served by a python http.server
  DNSStub      tiny UDP DNS server: good.test A 127.0.0.1, good6.test AAAA ::1, NXDOMAIN otherwise
  socks_*      a small raw SOCKS5 client
  socks4_*, socks5_login, udp_*, UDPEcho, OwnerHTTP, make_hash: the other SOCKS variants
"""

import functools
import hashlib
import http.server
import ipaddress
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
IO_TIMEOUT = 20.0       # default bound for one blocking socket operation
LISTEN_WAIT = 30.0      # bound for the proxy to print its listening line(s)
STOP_WAIT = 15.0        # bound for the proxy to exit after SIGTERM
CLOSE_WAIT = 5.0        # bound for "the server closes the connection"

LISTEN_RE = re.compile(r"ringsocks: listening on (\[[0-9A-Fa-f:.%a-z]+\]|[0-9.]+):(\d+)")


class Fail(Exception):
    """A test failure: message is one line, details (optional) are shown indented."""

    def __init__(self, msg, details=None):
        super().__init__(msg)
        self.details = details


class Skip(Exception):
    pass


def check(cond, msg, details=None):
    if not cond:
        raise Fail(msg, details)


def hexb(b, limit=64):
    s = bytes(b[:limit]).hex(" ")
    return s + (" ..." if len(b) > limit else "")


def tail(text, lines=25):
    ls = text.rstrip("\n").splitlines()
    return "\n".join(ls[-lines:])


def clean_env():
    """The environment for client tools: no proxy variables."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


# --------------------------------------------------------------------------
# Capabilities

_ipv6_ok = None


def ipv6_available():
    global _ipv6_ok
    if _ipv6_ok is None:
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.bind(("::1", 0))
            s.close()
            _ipv6_ok = True
        except OSError:
            _ipv6_ok = False
    return _ipv6_ok


_CLONE_NEWNET = 0x40000000


def enter_netns(ctx):
    """Move the calling thread into a network namespace of its own, with lo up: what it
    starts from now on (threads, helper servers, the proxy, `ip`) lives there, other
    tests' threads do not; the namespace goes when the last of them has. Skip when the
    host cannot make one (no CAP_SYS_ADMIN, no `ip`). Returns a function that runs an
    `ip` command in it and fails the test if it fails."""
    import ctypes
    ip = shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)
    if not ip:
        raise Skip("no ip(8) to set up a network namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        raise Skip("cannot make a network namespace: %s" % os.strerror(ctypes.get_errno()))

    def run_ip(*args, skip_on_error=False):
        r = subprocess.run([ip] + list(args), capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            msg = "ip %s: %s" % (" ".join(args), r.stderr.strip())
            if skip_on_error:
                raise Skip(msg)
            raise Fail(msg)
        return r.stdout

    run_ip("link", "set", "lo", "up")
    return run_ip


def raise_nofile(want=16384):
    """Raise RLIMIT_NOFILE (soft) towards want; children (the proxy) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port(host="127.0.0.1"):
    """A port with nothing listening: bind port 0, read it, close."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def fmt_status(rc):
    if rc is None:
        return "running"
    if rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit %d" % rc


# --------------------------------------------------------------------------
# Configuration of one run (set by run.py)

class Config:
    binary = "build/ringsocks"
    peer = "ringsocks"          # or "microsocks", "external": harness self-checks against known servers
    external = None             # (host, port) of an already running SOCKS5 server, peer "external"
    shards = 2


CONFIG = Config()

# Every process started anywhere, for the last-resort cleanup in run.py.
_live_lock = threading.Lock()
_live_procs = set()


def _register_proc(p):
    with _live_lock:
        _live_procs.add(p)


def _unregister_proc(p):
    with _live_lock:
        _live_procs.discard(p)


def kill_all_live():
    """Last resort (runner exit): SIGKILL every process still registered, by PID."""
    with _live_lock:
        procs = list(_live_procs)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
        _unregister_proc(p)


def stop_process(p, sig=signal.SIGTERM, wait=STOP_WAIT):
    """Stop one process by PID: sig, wait, SIGKILL if needed. Returns (rc, killed)."""
    killed = False
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
            killed = True
    _unregister_proc(p)
    return p.returncode, killed


# --------------------------------------------------------------------------
# The proxy under test

class Proxy:
    def __init__(self, ctx, listen, args, wait_listen=True, wrap=(), own_args=True, env=None):
        self.ctx = ctx
        self.env = env           # the server's environment (None: the runner's own)
        self.own_args = own_args  # False: args alone (a configuration file sets the rest)
        self.wrap = list(wrap)   # argv prefix that execs the server (e.g. prlimit ... --)
        self.listen = list(listen)
        self.n = ctx._next_id()
        self.stderr_path = ctx.path("proxy%d.stderr" % self.n)
        self.stdout_path = ctx.path("proxy%d.stdout" % self.n)
        self.addrs = []
        self.stopped = False
        self.problems = []
        self.rc = None
        self.exit_expected = False   # set by a test that expects the process to exit by itself
        ctx.proxies.append(self)
        if CONFIG.peer == "microsocks":
            self._start_microsocks()
        elif CONFIG.peer == "external":
            self.proc = None
            self.argv = ["(external)"]
            self.addrs.append(CONFIG.external)
            self.stopped = True
        else:
            self._start_ringsocks(args, wait_listen)

    # -- start

    def _popen(self, argv):
        self.argv = argv
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, close_fds=True, env=self.env)
        _register_proc(self.proc)
        self.ctx.defer(self.stop)

    def _start_ringsocks(self, args, wait_listen):
        argv = self.wrap + [CONFIG.binary]
        # The admin endpoint on a free port, so parallel instances never collide; a short drain
        # so stopping a proxy with a tunnel still open does not take the default 30 s.
        if self.own_args:
            for l in self.listen:
                argv += ["--listen", l]
            argv += ["--shards", str(CONFIG.shards), "--relay", self.ctx.relay, "--admin",
                     "127.0.0.1:0", "--drain-timeout", "3"]
        argv += list(args)
        self._popen(argv)
        if wait_listen:
            self.wait_listening()

    def wait_listening(self, timeout=LISTEN_WAIT):
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr()
            found = LISTEN_RE.findall(text)
            if len(found) >= len(self.listen):
                break
            rc = self.proc.poll()
            if rc is not None:
                self.stopped = True
                self.rc = rc
                _unregister_proc(self.proc)
                raise Fail("ringsocks %s before printing its listening line(s)" % fmt_status(rc),
                           "argv: %s\nstderr:\n%s" % (" ".join(self.argv), tail(text)))
            if time.monotonic() > deadline:
                raise Fail("ringsocks printed %d of %d listening lines within %.0f s"
                           % (len(found), len(self.listen), timeout),
                           "argv: %s\nstderr:\n%s" % (" ".join(self.argv), tail(text)))
            time.sleep(0.02)
        for host, port in found:
            self.addrs.append((host.strip("[]"), int(port)))

    def _start_microsocks(self):
        # Harness self-check only: microsocks has one listener and no listening line.
        host = self.listen[0].rsplit(":", 1)[0].strip("[]") if self.listen else "127.0.0.1"
        port = free_port(host)
        self._popen(["microsocks", "-i", host, "-p", str(port)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise Fail("microsocks did not start", self.stderr())
                time.sleep(0.02)
        self.addrs.append((host, port))

    # -- access

    @property
    def addr(self):
        return self.addrs[0]

    @property
    def host(self):
        return self.addrs[0][0]

    @property
    def port(self):
        return self.addrs[0][1]

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def check_alive(self):
        if self.proc is None:
            return
        rc = self.proc.poll()
        if rc is not None:
            raise Fail("proxy %s during the test" % fmt_status(rc),
                       "stderr:\n" + tail(self.stderr()))

    # -- stop

    def stop(self):
        """SIGTERM, wait, then scan stderr. Returns the exit status. Problems
        (died early, would not stop, sanitizer reports) go to self.problems and
        the test's problem list."""
        if self.stopped:
            return self.rc
        self.stopped = True
        problems = []
        rc = self.proc.poll()
        if rc is not None:
            _unregister_proc(self.proc)
            if not self.exit_expected:
                problems.append("proxy %s during the test (before it was stopped)" % fmt_status(rc))
        else:
            rc, killed = stop_process(self.proc, signal.SIGTERM, STOP_WAIT)
            if killed:
                problems.append("proxy did not exit within %.0f s of SIGTERM (SIGKILLed)" % STOP_WAIT)
        self.rc = rc
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                start = text.rfind("\n", 0, i) + 1
                excerpt = "\n".join(text[start:].splitlines()[:40])
                problems.append("sanitizer report in proxy stderr (%s)" % marker.rstrip(":"))
                self.ctx.problem_details.append(excerpt)
                break
        if problems and not self.ctx.problem_details:
            self.ctx.problem_details.append("proxy stderr:\n" + tail(text))
        self.problems = problems
        self.ctx.problems.extend(problems)
        return rc


# --------------------------------------------------------------------------
# Helper servers

class EchoServer:
    """Echoes every byte back. Reads no more than 1 MiB ahead of what the peer
    has taken back; on EOF it flushes, then shuts down its write side."""

    LIMIT = 1 << 20

    def __init__(self, host="127.0.0.1"):
        self.lsock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.lsock.bind((host, 0))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.addr = self.lsock.getsockname()[:2]
        self.port = self.addr[1]
        self.peers = []
        self.accepted = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._loop, daemon=True, name="echo")
        self.thread.start()

    def _close(self, conn):
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _update(self, conn, st):
        ev = 0
        if not st["eof"] and len(st["out"]) < self.LIMIT:
            ev |= selectors.EVENT_READ
        if st["out"]:
            ev |= selectors.EVENT_WRITE
        if ev == 0:
            if st["eof"]:
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self._close(conn)
            return
        self.sel.modify(conn, ev, st)

    def _loop(self):
        while not self._stop:
            for key, ev in self.sel.select(1.0):
                if key.data == "wake":
                    return self._shutdown()
                if key.fileobj is self.lsock:
                    while True:
                        try:
                            conn, peer = self.lsock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        conn.setblocking(False)
                        self.peers.append(peer)
                        self.accepted += 1
                        self.sel.register(conn, selectors.EVENT_READ,
                                          {"out": bytearray(), "eof": False})
                    continue
                conn, st = key.fileobj, key.data
                try:
                    if ev & selectors.EVENT_READ:
                        data = conn.recv(262144)
                        if data:
                            st["out"] += data
                        else:
                            st["eof"] = True
                    if st["out"] and (ev & selectors.EVENT_WRITE or ev & selectors.EVENT_READ):
                        try:
                            n = conn.send(st["out"])
                            del st["out"][:n]
                        except (BlockingIOError, InterruptedError):
                            pass
                    self._update(conn, st)
                except OSError:
                    self._close(conn)
        self._shutdown()

    def _shutdown(self):
        for key in list(self.sel.get_map().values()):
            try:
                key.fileobj.close()
            except OSError:
                pass
        self.sel.close()

    def stop(self):
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self.thread.join(5)
        self._wake_w.close()


class TCPServer:
    """Accepts connections; runs handler(conn, peer) in a thread per connection."""

    def __init__(self, handler, host="127.0.0.1"):
        self.handler = handler
        self.lsock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.lsock.bind((host, 0))
        self.lsock.listen(128)
        self.addr = self.lsock.getsockname()[:2]
        self.port = self.addr[1]
        self.conns = []
        self.errors = []
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="tcpserver")
        self.thread.start()

    def _loop(self):
        while not self._stop:
            try:
                conn, peer = self.lsock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn, peer), daemon=True).start()

    def _run(self, conn, peer):
        try:
            conn.settimeout(IO_TIMEOUT)
            self.handler(conn, peer)
        except Exception as e:  # reported by the test if it matters
            self.errors.append(repr(e))
        finally:
            conn.close()

    def stop(self):
        self._stop = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def _http_server_class(family):
    class S(http.server.ThreadingHTTPServer):
        address_family = family
        daemon_threads = True
        block_on_close = False

        def server_bind(self):
            # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): skip it.
            socketserver.TCPServer.server_bind(self)
            host, port = self.server_address[:2]
            self.server_name = host
            self.server_port = port
    return S


class HTTPFiles:
    """Random files for the curl tests, made once per run, shared by the tests."""

    SMALL = 100 * 1024 + 7
    LARGE = 50 * 1024 * 1024

    def __init__(self, root):
        self.dir = os.path.join(root, "www")
        self.sha = {}
        self._lock = threading.Lock()

    def ensure(self, name):
        with self._lock:
            if name in self.sha:
                return
            os.makedirs(self.dir, exist_ok=True)
            size = {"small.bin": self.SMALL, "large.bin": self.LARGE}[name]
            h = hashlib.sha256()
            with open(os.path.join(self.dir, name), "wb") as f:
                left = size
                while left:
                    chunk = os.urandom(min(left, 1 << 20))
                    h.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
            self.sha[name] = h.hexdigest()


class DNSStub:
    """UDP DNS on 127.0.0.1:random. good.test A -> 127.0.0.1, good6.test AAAA -> ::1;
    other types for those two names: NOERROR with no answer (NODATA: the names
    exist); any other name: NXDOMAIN. Two names for robustness tests: slow.test
    is never answered, late.test is answered like good.test after LATE seconds."""

    RECORDS = {
        ("good.test", 1): [socket.inet_pton(socket.AF_INET, "127.0.0.1")],
        ("good6.test", 28): [socket.inet_pton(socket.AF_INET6, "::1")],
        ("late.test", 1): [socket.inet_pton(socket.AF_INET, "127.0.0.1")],
    }
    NAMES = {"good.test", "good6.test", "late.test"}
    LATE = 1.0

    def __init__(self, port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.late_sent = threading.Event()   # set once a late.test answer went out
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="dns")
        self.thread.start()

    @property
    def spec(self):
        return "127.0.0.1:%d" % self.port

    @staticmethod
    def _parse_name(data, off):
        labels = []
        while True:
            n = data[off]
            if n == 0:
                return ".".join(labels), off + 1
            if n & 0xC0:
                raise ValueError("compressed name in question")
            labels.append(data[off + 1:off + 1 + n].decode("ascii", "replace"))
            off += 1 + n

    def answer(self, data):
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        if flags & 0x8000 or qd < 1:
            return None
        name, off = self._parse_name(data, 12)
        qtype, qclass = struct.unpack("!HH", data[off:off + 4])
        question = data[12:off + 4]
        self.queries.append((name, qtype))
        key = self._base(name)
        opcode = (flags >> 11) & 0xF
        answers = []
        if opcode != 0:
            rcode = 4  # NOTIMP
        elif key in self.NAMES:
            rcode = 0
            answers = self.RECORDS.get((key, qtype), []) if qclass == 1 else []
        else:
            rcode = 3  # NXDOMAIN
        rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
        out = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0) + question
        for rdata in answers:
            out += struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata
        return out

    @staticmethod
    def _base(name):
        """X.late.test behaves as late.test: one name per lookup, so the proxy's DNS
        cache cannot answer a test that needs a query to go out."""
        key = name.lower().rstrip(".")
        return "late.test" if key.endswith(".late.test") else key

    def _loop(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                resp = self.answer(data)
            except Exception:
                resp = None
            if not resp:
                continue
            key = self._base(self.queries[-1][0])
            if key == "slow.test":
                continue
            if key == "late.test":
                threading.Timer(self.LATE, self._send_late, (resp, peer)).start()
                continue
            try:
                self.sock.sendto(resp, peer)
            except OSError:
                pass

    def _send_late(self, resp, peer):
        try:
            self.sock.sendto(resp, peer)
        except OSError:
            pass
        self.late_sent.set()

    def wait_query(self, name, timeout=10):
        """Wait until a query for name arrived; returns whether it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(q[0].lower().rstrip(".") == name for q in self.queries):
                return True
            time.sleep(0.01)
        return False

    def stop(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------
# Per-test context

class Ctx:
    def __init__(self, relay, dirpath, files):
        self.relay = relay
        self.dir = dirpath
        self.files = files
        self.problems = []          # found during cleanup: fail the test
        self.problem_details = []
        self.proxies = []
        self._cleanups = []
        self._lock = threading.Lock()
        self._ids = 0
        self.closed = False

    def _next_id(self):
        with self._lock:
            self._ids += 1
            return self._ids

    def path(self, name):
        return os.path.join(self.dir, name)

    def defer(self, fn):
        with self._lock:
            if self.closed:
                # The test timed out and was cleaned up already: undo at once.
                fn()
                return
            self._cleanups.append(fn)

    def cleanup(self):
        with self._lock:
            self.closed = True
            fns, self._cleanups = self._cleanups[::-1], []
        for fn in fns:
            try:
                fn()
            except Exception as e:
                self.problems.append("cleanup error: %r" % e)

    # -- things a test starts

    def proxy(self, listen=("127.0.0.1:0",), args=(), wait_listen=True, wrap=(), own_args=True, env=None):
        """own_args False: no --listen, --shards, --relay, --admin, --drain-timeout of the
        harness (listen then only says how many listening lines to wait for). env: the
        server's environment (e.g. a Kerberos realm's server_env()), default the runner's."""
        return Proxy(self, listen, args, wait_listen, wrap, own_args, env)

    def echo_server(self, host="127.0.0.1"):
        s = EchoServer(host)
        self.defer(s.stop)
        return s

    def tcp_server(self, handler, host="127.0.0.1"):
        s = TCPServer(handler, host)
        self.defer(s.stop)
        return s

    def dns_stub(self):
        s = DNSStub()
        self.defer(s.stop)
        return s

    def udp_echo(self, host="127.0.0.1", port=0, keep=False):
        s = UDPEcho(host, port, keep)
        self.defer(s.stop)
        return s

    def udp_socket(self, host="127.0.0.1", port=0):
        """A bound UDP socket (the SOCKS client's datagram side), closed at cleanup."""
        s = socket.socket(family_of(host), socket.SOCK_DGRAM)
        self.defer(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((host, port))
        return s

    def http_server(self, hosts=("127.0.0.1",)):
        """python http.server over the shared files, on every host in hosts with one
        port (port 0 for the first, the same port tried on the others)."""
        handler = functools.partial(_QuietHandler, directory=self.files.dir)
        for attempt in range(50):
            servers = []
            try:
                port = 0
                for h in hosts:
                    cls = _http_server_class(family_of(h))
                    srv = cls((h, port), handler)
                    servers.append(srv)
                    port = srv.server_address[1]
            except OSError:
                for srv in servers:
                    srv.server_close()
                continue
            for srv in servers:
                threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 daemon=True).start()

                def stop(srv=srv):
                    srv.shutdown()
                    srv.server_close()
                self.defer(stop)
            return port
        raise Fail("could not bind the http server on %s with one port" % (hosts,))

    def connect(self, addr, timeout=IO_TIMEOUT):
        """A plain TCP connection (to the proxy), closed at cleanup."""
        s = socket.create_connection(addr, timeout=timeout)
        self.defer(s.close)
        return s

    def run(self, argv, timeout=50, input=None, env=None):
        """Run a client tool (stopped by PID if it overruns). Returns CompletedProcess."""
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env if env is not None else clean_env(), close_fds=True)
        _register_proc(p)
        self.defer(lambda: stop_process(p, signal.SIGKILL, 5))
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(p, signal.SIGKILL, 5)
            out, err = p.communicate()
            raise Fail("%s did not finish within %s s" % (os.path.basename(argv[0]), timeout),
                       "argv: %s\nstderr: %s" % (" ".join(argv), err.decode("utf-8", "replace")))
        _unregister_proc(p)
        return subprocess.CompletedProcess(argv, p.returncode, out, err)


# --------------------------------------------------------------------------
# A raw SOCKS5 client

class Reply:
    def __init__(self, raw):
        self.raw = raw
        self.ver, self.rep, self.rsv, self.atyp = raw[0], raw[1], raw[2], raw[3]
        if self.atyp == 1:
            self.host = socket.inet_ntop(socket.AF_INET, raw[4:8])
        elif self.atyp == 4:
            self.host = socket.inet_ntop(socket.AF_INET6, raw[4:20])
        elif self.atyp == 3:
            self.host = raw[5:5 + raw[4]].decode("ascii", "replace")
        else:
            self.host = None
        self.port = struct.unpack("!H", raw[-2:])[0]

    def __repr__(self):
        return "Reply(%s)" % hexb(self.raw)


def echo_until_eof(conn):
    """Send every byte conn receives back to it until its EOF, then half-close it."""
    while True:
        b = conn.recv(65536)
        if not b:
            break
        conn.sendall(b)
    conn.shutdown(socket.SHUT_WR)


def recv_exact(sock, n, what="data"):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise Fail("timed out waiting for %s: got %d of %d bytes" % (what, len(buf), n),
                       "received: " + hexb(buf))
        except ConnectionResetError:
            raise Fail("connection reset while reading %s: got %d of %d bytes (%s)"
                       % (what, len(buf), n, hexb(buf)))
        if not chunk:
            raise Fail("EOF while reading %s: got %d of %d bytes (%s)"
                       % (what, len(buf), n, hexb(buf)))
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock, limit=64 << 20, what="data"):
    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            raise Fail("timed out waiting for EOF after %s: got %d bytes" % (what, len(buf)),
                       "received: " + hexb(buf))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise Fail("more than %d bytes of %s" % (limit, what))


def expect_close(sock, timeout=CLOSE_WAIT, after="reply"):
    """The peer must close (EOF or RST) within timeout, sending nothing more."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        raise Fail("server did not close the connection within %.0f s after the %s" % (timeout, after))
    except ConnectionResetError:
        return "reset"
    if data:
        raise Fail("unexpected bytes from the server after the %s: %s" % (after, hexb(data)))
    return "eof"


def encode_addr(host, port):
    """ATYP + DST.ADDR + DST.PORT for host: an IPv4/IPv6 literal or a domain name."""
    try:
        ip = ipaddress.ip_address(host)
        if ip.version == 4:
            return b"\x01" + ip.packed + struct.pack("!H", port)
        return b"\x04" + ip.packed + struct.pack("!H", port)
    except ValueError:
        name = host.encode("idna")
        return b"\x03" + bytes([len(name)]) + name + struct.pack("!H", port)


def request(host, port, cmd=1, ver=5):
    return bytes([ver, cmd, 0]) + encode_addr(host, port)


GREETING = b"\x05\x01\x00"


def read_method_reply(sock):
    return recv_exact(sock, 2, "method selection reply")


def read_reply(sock, what="SOCKS5 reply"):
    head = recv_exact(sock, 4, what)
    atyp = head[3]
    if atyp == 1:
        rest = recv_exact(sock, 4 + 2, what)
    elif atyp == 4:
        rest = recv_exact(sock, 16 + 2, what)
    elif atyp == 3:
        n = recv_exact(sock, 1, what)
        rest = n + recv_exact(sock, n[0] + 2, what)
    else:
        raise Fail("reply with invalid ATYP 0x%02x: %s" % (atyp, hexb(head)))
    return Reply(head + rest)


def open_proxy_socket(ctx, proxy, timeout=IO_TIMEOUT):
    return ctx.connect(proxy.addr, timeout)


def socks_connect(ctx, proxy, host, port, timeout=IO_TIMEOUT):
    """Full no-auth CONNECT through proxy. Returns (sock, Reply); fails unless REP 0."""
    s = open_proxy_socket(ctx, proxy, timeout)
    s.sendall(GREETING)
    m = read_method_reply(s)
    check(m == b"\x05\x00", "method selection reply %s, expected 05 00" % hexb(m))
    s.sendall(request(host, port))
    r = read_reply(s)
    check(r.ver == 5 and r.rep == 0,
          "CONNECT %s:%d: reply %s (REP 0x%02x), expected VER 05 REP 00" % (host, port, hexb(r.raw), r.rep))
    return s, r


def socks_expect_error(ctx, proxy, payload_after_greeting, rep, greeting=GREETING, what="request"):
    """Greeting, then payload: expect VER 05 REP rep, a well-formed reply, then close."""
    s = open_proxy_socket(ctx, proxy)
    s.sendall(greeting)
    m = read_method_reply(s)
    check(m == b"\x05\x00", "method selection reply %s, expected 05 00" % hexb(m))
    s.sendall(payload_after_greeting)
    head = recv_exact(s, 2, "reply to the %s" % what)
    check(head[0] == 5 and head[1] == rep,
          "reply to the %s starts %s, expected 05 %02x" % (what, hexb(head), rep))
    # The rest of a well-formed reply: RSV ATYP BND.ADDR BND.PORT
    r = read_reply_rest(s, head)
    expect_close(s, after="error reply %s" % hexb(r.raw))
    return r


def read_reply_rest(sock, head):
    more = recv_exact(sock, 2, "reply RSV/ATYP")
    raw = head + more
    atyp = raw[3]
    if raw[2] != 0:
        raise Fail("reply RSV byte is 0x%02x, expected 00 (%s)" % (raw[2], hexb(raw)))
    if atyp == 1:
        raw += recv_exact(sock, 6, "reply BND")
    elif atyp == 4:
        raw += recv_exact(sock, 18, "reply BND")
    elif atyp == 3:
        n = recv_exact(sock, 1, "reply BND")
        raw += n + recv_exact(sock, n[0] + 2, "reply BND")
    else:
        raise Fail("reply with invalid ATYP 0x%02x: %s" % (atyp, hexb(raw)))
    return Reply(raw)


def echo_roundtrip(sock, size=4096):
    data = os.urandom(size)
    sock.sendall(data)
    got = recv_exact(sock, size, "echoed data")
    check(got == data, "echoed data differs from what was sent (%d bytes)" % size)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def need_tools(*tools):
    for t in tools:
        if shutil.which(t) is None:
            raise Skip("%s is not installed (tools/install-deps.sh installs it)" % t)


def need_ipv6():
    if not ipv6_available():
        raise Skip("no IPv6 loopback (::1) on this machine")


def need_ringsocks(why="ringsocks-specific"):
    if CONFIG.peer != "ringsocks":
        raise Skip("%s (peer is %s)" % (why, CONFIG.peer))


# --------------------------------------------------------------------------
# The SOCKS variants: features of the binary, password hashes, SOCKS4/4a,
# RFC 1929, BIND, UDP ASSOCIATE, and "which process made this connection"

_help_text = None


def binary_help():
    """`ringsocks --help` of the binary under test (cached)."""
    global _help_text
    if _help_text is None:
        try:
            r = subprocess.run([CONFIG.binary, "--help"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            _help_text = r.stdout.decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired) as e:
            _help_text = "(could not run --help: %r)" % e
    return _help_text


def need_option(*flags):
    """Ringsocks only (skip for other peers); fail with a clear message when the
    binary's --help does not know a flag (the feature is not built in yet)."""
    need_ringsocks("needs ringsocks' %s" % " ".join(flags))
    text = binary_help()
    missing = [f for f in flags if f not in text]
    if missing:
        raise Fail("%s --help does not list %s: feature not in this binary"
                   % (os.path.basename(CONFIG.binary), ", ".join(missing)))


# -- password hashes (crypt(3) strings)

def _crypt_module():
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # deprecated in 3.11, removed in 3.13
        return crypt
    except ImportError:
        return None


def _libcrypt():
    import ctypes
    try:
        lib = ctypes.CDLL("libcrypt.so.1")
    except OSError:
        return None
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    return lib


_hash_lock = threading.Lock()   # crypt(3) is not reentrant


def make_hash(password, scheme="sha512", rounds=0):
    """A crypt(3) hash of password (str or bytes). scheme: sha512 ($6$), bcrypt
    ($2b$) or yescrypt ($y$). Raises Skip when this machine cannot make one.
    Order: libcrypt through ctypes (the library the server uses), python's crypt
    module, then `mkpasswd` (package whois) / `openssl passwd -6`."""
    pw = password.encode() if isinstance(password, str) else bytes(password)
    prefix = {"sha512": b"$6$", "bcrypt": b"$2b$", "yescrypt": b"$y$"}[scheme]
    with _hash_lock:
        lib = _libcrypt()
        if lib is not None:
            setting = lib.crypt_gensalt(prefix, rounds, None, 0)
            if setting:
                h = lib.crypt(pw, setting)
                if h and h.startswith(prefix) and lib.crypt(pw, h) == h:
                    return h.decode()
        mod = _crypt_module()
        method = {"sha512": "METHOD_SHA512", "bcrypt": "METHOD_BLOWFISH"}.get(scheme)
        if mod is not None and method and hasattr(mod, method):
            kw = {"rounds": rounds} if rounds else {}
            h = mod.crypt(pw.decode("utf-8", "surrogateescape"), mod.mksalt(getattr(mod, method), **kw))
            if h and h.startswith(prefix.decode()):
                return h
    tool = {"sha512": (["mkpasswd", "-m", "sha-512", "--stdin"], ["openssl", "passwd", "-6", "-stdin"]),
            "bcrypt": (["mkpasswd", "-m", "bcrypt", "--stdin"],),
            "yescrypt": (["mkpasswd", "-m", "yescrypt", "--stdin"],)}[scheme]
    for argv in tool:
        if shutil.which(argv[0]) is None:
            continue
        r = subprocess.run(argv, input=pw, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        h = r.stdout.decode().strip()
        if r.returncode == 0 and h.startswith(prefix.decode()):
            return h
    raise Skip("cannot make a %s hash here (no libcrypt support, no crypt module, no mkpasswd: "
               "package whois)" % scheme)


def write_users(ctx, lines, name="users"):
    """Write a users file (lines: str, joined with newlines). Returns its path."""
    path = ctx.path(name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# -- SOCKS4 / SOCKS4a

def socks4_request(cmd, port, ip="127.0.0.1", userid=b"", host=None):
    """VN=4 CD DSTPORT DSTIP USERID NUL [HOST NUL]; host set makes it SOCKS4a
    (DSTIP 0.0.0.1 unless ip is given as something else)."""
    if host is not None and ip == "127.0.0.1":
        ip = "0.0.0.1"
    uid = userid.encode() if isinstance(userid, str) else bytes(userid)
    out = struct.pack("!BBH", 4, cmd, port) + socket.inet_aton(ip) + uid + b"\x00"
    if host is not None:
        out += (host.encode() if isinstance(host, str) else bytes(host)) + b"\x00"
    return out


class Reply4:
    def __init__(self, raw):
        self.raw = raw
        self.vn, self.cd = raw[0], raw[1]
        self.port = struct.unpack("!H", raw[2:4])[0]
        self.host = socket.inet_ntoa(raw[4:8])

    def __repr__(self):
        return "Reply4(%s)" % hexb(self.raw)


def read_reply4(sock, what="SOCKS4 reply"):
    return Reply4(recv_exact(sock, 8, what))


def socks4_expect_reject(ctx, proxy, payload, what="SOCKS4 request"):
    """Send payload: expect the 8-byte reply VN 00 CD 5B (91), then close."""
    s = open_proxy_socket(ctx, proxy)
    s.sendall(payload)
    r = read_reply4(s, "reply to the %s" % what)
    check(r.vn == 0 and r.cd == 91, "reply to the %s is %s, expected VN 00 CD 5b (91)" % (what, hexb(r.raw)))
    expect_close(s, after="CD 91 reply to the %s" % what)
    return r


def socks4_connect(ctx, proxy, port, ip="127.0.0.1", userid=b"", host=None, timeout=IO_TIMEOUT):
    s = open_proxy_socket(ctx, proxy, timeout)
    s.sendall(socks4_request(1, port, ip, userid, host))
    r = read_reply4(s)
    check(r.vn == 0 and r.cd == 90, "SOCKS4%s CONNECT: reply %s, expected VN 00 CD 5a (90)"
          % ("a" if host is not None else "", hexb(r.raw)))
    return s, r


# -- SOCKS5 with RFC 1929 username/password

AUTH_GREETING = b"\x05\x01\x02"


def auth_msg(user, password, ver=1):
    u = user.encode() if isinstance(user, str) else bytes(user)
    p = password.encode() if isinstance(password, str) else bytes(password)
    return bytes([ver, len(u)]) + u + bytes([len(p)]) + p


def socks5_login(sock, user, password, greeting=AUTH_GREETING):
    """Greeting offering 02, then the sub-negotiation: fails unless 05 02 / 01 00."""
    sock.sendall(greeting)
    m = read_method_reply(sock)
    check(m == b"\x05\x02", "method selection reply %s, expected 05 02 (username/password)" % hexb(m))
    sock.sendall(auth_msg(user, password))
    st = recv_exact(sock, 2, "RFC 1929 status")
    check(st == b"\x01\x00", "RFC 1929 status %s for user %r, expected 01 00" % (hexb(st), user))


def socks5_open(ctx, proxy, auth=None, timeout=IO_TIMEOUT):
    """A connection to the proxy past method selection (and login when auth =
    (user, password)), ready for a request."""
    s = open_proxy_socket(ctx, proxy, timeout)
    if auth:
        socks5_login(s, auth[0], auth[1])
    else:
        s.sendall(GREETING)
        m = read_method_reply(s)
        check(m == b"\x05\x00", "method selection reply %s, expected 05 00" % hexb(m))
    return s


def socks5_command(ctx, proxy, cmd, host, port, auth=None, timeout=IO_TIMEOUT, what=None):
    """Request cmd (1 CONNECT, 2 BIND, 3 UDP ASSOCIATE); fails unless the (first)
    reply has REP 0. Returns (sock, Reply)."""
    s = socks5_open(ctx, proxy, auth, timeout)
    s.sendall(request(host, port, cmd=cmd))
    r = read_reply(s, what or "reply to command %d" % cmd)
    check(r.ver == 5 and r.rep == 0, "%s %s:%d: reply %s (REP 0x%02x), expected VER 05 REP 00"
          % ({1: "CONNECT", 2: "BIND", 3: "UDP ASSOCIATE"}.get(cmd, "command %d" % cmd), host, port,
             hexb(r.raw), r.rep))
    return s, r


# -- UDP

def udp_header(host, port, frag=0, rsv=b"\x00\x00"):
    return bytes(rsv) + bytes([frag]) + encode_addr(host, port)


def parse_udp(data):
    """(host, port, atyp, payload) of a SOCKS5 UDP datagram; Fail when malformed."""
    check(len(data) >= 4, "UDP reply of %d bytes, shorter than a header: %s" % (len(data), hexb(data)))
    check(data[0:3] == b"\x00\x00\x00", "UDP reply header RSV/FRAG %s, expected 00 00 00" % hexb(data[:3]))
    atyp = data[3]
    if atyp == 1:
        check(len(data) >= 10, "UDP reply too short for ATYP 01: %s" % hexb(data))
        return socket.inet_ntop(socket.AF_INET, data[4:8]), struct.unpack("!H", data[8:10])[0], 1, data[10:]
    if atyp == 4:
        check(len(data) >= 22, "UDP reply too short for ATYP 04: %s" % hexb(data))
        return socket.inet_ntop(socket.AF_INET6, data[4:20]), struct.unpack("!H", data[20:22])[0], 4, data[22:]
    if atyp == 3:
        n = data[4]
        check(len(data) >= 7 + n, "UDP reply too short for its domain: %s" % hexb(data))
        return (data[5:5 + n].decode("ascii", "replace"), struct.unpack("!H", data[5 + n:7 + n])[0], 3,
                data[7 + n:])
    raise Fail("UDP reply with ATYP 0x%02x: %s" % (atyp, hexb(data)))


class UDPEcho:
    """Sends every datagram back to its sender; records (peer, size), and with
    keep the payloads in order (.data). With .pid set, also records per datagram
    whether its source socket belongs to that process (in .owned), looked up
    before the echo is sent."""

    def __init__(self, host="127.0.0.1", port=0, keep=False):
        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, port))
        self.addr = self.sock.getsockname()[:2]
        self.port = self.addr[1]
        self.seen = []
        self.keep = keep
        self.data = []
        self.pid = None
        self.owned = []
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="udpecho")
        self.thread.start()

    def _loop(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(65536)
            except OSError:
                return
            if peer is None or self._stop:   # shut down by stop()
                return
            self.seen.append((peer[:2], len(data)))
            if self.keep:
                self.data.append(data)
            if self.pid is not None:
                self.owned.append(udp_port_owned(self.pid, peer[1]))
            try:
                self.sock.sendto(data, peer)
            except OSError:
                pass

    def stop(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def udp_exchange(sock, relay, host, port, payload, timeout=3.0, frag=0):
    """Send payload to host:port through the UDP relay; return the parsed reply
    (host, port, atyp, payload). Fails when nothing comes back within timeout."""
    sock.sendto(udp_header(host, port, frag) + payload, relay)
    sock.settimeout(timeout)
    try:
        data, src = sock.recvfrom(65536)
    except socket.timeout:
        raise Fail("no UDP reply within %.1f s for %d bytes sent to %s:%d via the relay %s:%d"
                   % (timeout, len(payload), host, port, relay[0], relay[1]))
    except ConnectionRefusedError:
        raise Fail("UDP relay %s:%d answered with ICMP port unreachable (no socket there)" % relay[:2])
    check(src[:2] == tuple(relay[:2]) or (src[0], src[1]) == (relay[0], relay[1]),
          "UDP reply came from %s:%d, not from the relay %s:%d" % (src[0], src[1], relay[0], relay[1]))
    return parse_udp(data)


def udp_expect_silence(sock, timeout=1.0, what="datagram"):
    """Nothing may arrive on sock within timeout. Returns "refused" when the kernel
    reported ICMP port unreachable (only on connected sockets), else "silent"."""
    sock.settimeout(timeout)
    try:
        data, src = sock.recvfrom(65536)
    except socket.timeout:
        return "silent"
    except ConnectionRefusedError:
        return "refused"
    raise Fail("got a UDP answer (%d bytes from %s:%d) to the %s, expected it dropped: %s"
               % (len(data), src[0], src[1], what, hexb(data, 32)))


# -- which process owns a TCP connection (was the proxy used?)

def _proc_net_hex(host, port):
    ip = ipaddress.ip_address(host)
    if ip.version == 4:
        return "%08X:%04X" % (struct.unpack("<I", ip.packed)[0], port)
    words = struct.unpack("<4I", ip.packed)
    return "".join("%08X" % w for w in words) + ":%04X" % port


def socket_inode(local, remote):
    """Inode of the TCP socket with this local and remote address, or None."""
    want_l, want_r = _proc_net_hex(*local[:2]), _proc_net_hex(*remote[:2])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1] == want_l and parts[2] == want_r:
                        return int(parts[9])
        except OSError:
            pass
    return None


def pid_owns_inode(pid, inode):
    target = "socket:[%d]" % inode
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def udp_port_owned(pid, port):
    """Whether pid holds a UDP socket bound to port (any local address)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port and pid_owns_inode(pid, int(parts[9])):
                        return True
        except OSError:
            pass
    return False


class OwnerHTTP:
    """A one-file HTTP/1.0 server on host:0 that notes, for each request, whether
    the connection came from the process pid (set .pid before the requests), by
    looking the peer's socket up in /proc while the connection is open."""

    def __init__(self, ctx, body, host="127.0.0.1"):
        self.body = body
        self.pid = None
        self.owners = []     # per connection: (peer, "proxy" | "other" | "unknown")
        self.server = ctx.tcp_server(self._handle, host)
        self.port = self.server.port

    def _handle(self, conn, peer):
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = conn.recv(65536)
            if not b:
                return
            buf += b
            if len(buf) > 65536:
                return
        inode = socket_inode(peer, conn.getsockname())
        if inode is None:
            who = "unknown"
        elif self.pid is not None and pid_owns_inode(self.pid, inode):
            who = "proxy"
        else:
            who = "other"
        self.owners.append((peer[:2], who))
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body) + self.body)
        conn.shutdown(socket.SHUT_WR)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


# --------------------------------------------------------------------------
# Test registry

class Case:
    def __init__(self, name, fn, timeout=None):
        self.name, self.fn, self.timeout = name, fn, timeout


TESTS = []


def case(name, timeout=None):
    def deco(fn):
        TESTS.append(Case(name, fn, timeout))
        return fn
    return deco


# --------------------------------------------------------------------------
# The control plane: the admin endpoint, Prometheus text, access-log lines
# (added for cases_control.py)

ADMIN_RE = re.compile(r"ringsocks: admin on http://(\[[0-9A-Fa-f:.%a-z]+\]|[0-9.]+):(\d+)/")


def admin_addr(proxy, timeout=10.0):
    """(host, port) of the proxy's admin endpoint, read from its stderr line
    `ringsocks: admin on http://HOST:PORT/` (the harness passes --admin 127.0.0.1:0)."""
    deadline = time.monotonic() + timeout
    while True:
        m = ADMIN_RE.search(proxy.stderr())
        if m:
            return m.group(1).strip("[]"), int(m.group(2))
        if not proxy.alive() or time.monotonic() > deadline:
            raise Fail("no 'ringsocks: admin on http://HOST:PORT/' line in the proxy's stderr",
                       "stderr:\n" + tail(proxy.stderr()))
        time.sleep(0.02)


def admin_request(proxy_or_addr, method, path, body=None, timeout=10.0, headers=None):
    """One HTTP request to the admin endpoint (a Proxy or a (host, port)), with
    extra request headers (a Host among them replaces the automatic one).
    Returns (status, body text, headers dict with lower-case names)."""
    import http.client
    addr = proxy_or_addr if isinstance(proxy_or_addr, tuple) else admin_addr(proxy_or_addr)
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        text = r.read().decode("utf-8", "replace")
        return r.status, text, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


_PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
_PROM_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text):
    """Prometheus text format -> {(name, ((label, value), ...sorted)): float}.
    Raises Fail on a sample line it cannot read."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _PROM_LINE.match(line.strip())
        if not m:
            raise Fail("unreadable metrics line: %r" % line)
        labels = []
        if m.group(3):
            pos, s = 0, m.group(3)
            while pos < len(s):
                lm = _PROM_LABEL.match(s, pos)
                if not lm or lm.end() == pos:
                    raise Fail("unreadable labels in metrics line: %r" % line)
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
        out[(m.group(1), tuple(sorted(labels)))] = float(m.group(4))
    return out


def metric(samples, name, **labels):
    """The value of one sample of parse_prometheus() output, or None."""
    return samples.get((name, tuple(sorted(labels.items()))))


def parse_logfmt(line):
    """One logfmt line -> dict. Values may be "quoted" with \\" \\\\ and \\xNN escapes."""
    out = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        j = line.find("=", i)
        if j < 0:
            raise Fail("logfmt: key without '=' at %d in %r" % (i, line))
        key = line[i:j]
        i = j + 1
        if i < n and line[i] == '"':
            i += 1
            val = []
            while True:
                if i >= n:
                    raise Fail("logfmt: unterminated quoted value for %s in %r" % (key, line))
                c = line[i]
                if c == "\\" and i + 1 < n:
                    if line[i + 1] == "x" and i + 3 < n:
                        val.append(chr(int(line[i + 2:i + 4], 16)))
                        i += 4
                        continue
                    val.append(line[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                val.append(c)
                i += 1
            out[key] = "".join(val)
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            out[key] = line[i:j]
            i = j
    return out


def wait_until(pred, timeout=5.0, interval=0.05):
    """Call pred until it returns something true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)
