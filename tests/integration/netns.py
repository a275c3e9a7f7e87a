"""
netns.py - network namespaces for the integration suite (standard library only).

    net = EgressNet(ctx)        # two fresh namespaces joined by veth pairs, torn down at cleanup
    p = net.proxy(conf_text)    # ringsocks inside the proxy namespace (ip netns exec), by PID
    src = net.tunnel(p, net.T4, net.target.tcp4)   # (Reply, (src, sport) the target saw)

Namespaces are named rsx<pid>x<n>p / rsx<pid>x<n>t (unique per run and per test) and
deleted by the test's cleanup, whether it passed or failed; an atexit hook deletes any
this process left behind, and namespaces of runs whose process is gone are removed when
a new fixture is made. Processes inside are started with `ip netns exec` (which execs:
the PID is the server's own) and stopped by PID by the harness.

Python sockets inside a namespace: a socket belongs to the namespace of the thread that
created it (the network namespace is per thread), so NetNS.call() runs a function on a
fresh thread that joined the namespace with setns(2), and NetNS.pool() gives worker
threads that all live there. A socket made there can be used from any thread afterwards.

Topology (documentation prefixes only):

    proxy ns P                                    target ns T
    lo: 127.0.0.1, 192.0.2.200, .201,             lo: 198.51.100.10, 2001:db8:a::10 (the target)
        2001:db8:b::1, ::2 (listener addresses)
    local routes (AnyIP): 203.0.113.0/24,
        2001:db8:1::/64 .. 2001:db8:4::/64 (pools)
    veth0 192.0.2.1/26 2001:db8:f0::1/64  <---->  veth0 192.0.2.2/26 2001:db8:f0::2/64
    veth1 192.0.2.65/26 2001:db8:f1::1/64 <---->  veth1 192.0.2.66/26 2001:db8:f1::2/64
    main table: target via veth0                  pools, listener addresses: via veth0
    table 100 (ip rule fwmark 42): target via veth1

So a tunnel without an egress pool leaves from 192.0.2.1 / 2001:db8:f0::1, a marked one
(SO_MARK 42) from 192.0.2.65 / 2001:db8:f1::1, and one bound to a pool address from it.

net.add_client() adds a third namespace C, a client network behind the proxy (the
transparent-listener tests):

    client ns C                                   proxy ns P
    veth0 192.0.2.130/26 2001:db8:c0::2/64  <---->  vethc 192.0.2.129/26 2001:db8:c0::1/64
    default route via P                           forwarding off (ip_forward 0, IPv6 too)

P does not forward, so C reaches the target only through a proxy in P that takes its
connections (nftables redirect or tproxy, which the test installs with net.nft()).
"""

import atexit
import ctypes
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (GREETING, IO_TIMEOUT, Fail, Skip, auth_msg, check, echo_until_eof, hexb, need_ringsocks,
                     read_reply, recv_exact, request)

CLONE_NEWNET = 0x40000000
IP_FREEBIND = 15
IPV6_FREEBIND = 78
NETNS_DIR = "/run/netns"
PREFIX = "rsx"

# -- the addresses of the topology
P_V4, T_V4 = "192.0.2.1", "192.0.2.2"              # veth0
P_V6, T_V6 = "2001:db8:f0::1", "2001:db8:f0::2"
P_V4_MARK, T_V4_MARK = "192.0.2.65", "192.0.2.66"  # veth1, reached through table 100
P_V6_MARK, T_V6_MARK = "2001:db8:f1::1", "2001:db8:f1::2"
P_C4, C_V4 = "192.0.2.129", "192.0.2.130"          # vethc in P <-> veth0 in C (add_client)
P_C6, C_V6 = "2001:db8:c0::1", "2001:db8:c0::2"
T4, T6 = "198.51.100.10", "2001:db8:a::10"          # the target's service addresses
LISTEN_V4 = ("192.0.2.200", "192.0.2.201")          # extra proxy addresses (listener groups)
LISTEN_V6 = ("2001:db8:b::1", "2001:db8:b::2")
POOL_V4 = "203.0.113.0/24"
POOL_V6 = ("2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:3::/64", "2001:db8:4::/64")
MARK, MARK_TABLE = 42, 100

_libc = ctypes.CDLL(None, use_errno=True)
_made_lock = threading.Lock()
_made = []          # namespaces this process made and has not deleted yet
_counter = [0]


def _ip(*args, timeout=20, check_rc=True):
    r = subprocess.run(["ip"] + [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise Fail("ip %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode,
                                          r.stderr.decode("utf-8", "replace").strip()))
    return r


def _delete_ns(name):
    _ip("netns", "del", name, check_rc=False)
    with _made_lock:
        if name in _made:
            _made.remove(name)


@atexit.register
def _delete_leftovers():
    with _made_lock:
        names = list(_made)
    for n in names:
        _delete_ns(n)


def _reap_dead_runs():
    """Delete namespaces of earlier runs whose process no longer exists."""
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return
    for n in names:
        m = re.match(r"^%s(\d+)x\d+[ptc]$" % PREFIX, n)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists("/proc/%s" % m.group(1)):
            _ip("netns", "del", n, check_rc=False)


_avail = None


def need_netns():
    """Skip unless this machine lets us make network namespaces and veth pairs."""
    global _avail
    need_ringsocks("network namespace tests start ringsocks with ip netns exec")
    if _avail is None:
        if shutil.which("ip") is None:
            _avail = "the ip tool (iproute2) is not installed"
        elif os.geteuid() != 0:
            _avail = "network namespaces need root (running as uid %d)" % os.geteuid()
        else:
            name = "%s%dx0probe" % (PREFIX, os.getpid())
            r = _ip("netns", "add", name, check_rc=False)
            if r.returncode != 0:
                _avail = "ip netns add fails here: %s" % r.stderr.decode("utf-8", "replace").strip()
            else:
                r = _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1", check_rc=False)
                if r.returncode != 0:
                    _avail = "no veth pairs here: %s" % r.stderr.decode("utf-8", "replace").strip()
                else:
                    _avail = ""
                _ip("netns", "del", name, check_rc=False)
    if _avail:
        raise Skip(_avail)


class NetNS:
    """One named network namespace (made by __init__, deleted by delete())."""

    def __init__(self, name):
        self.name = name
        with _made_lock:
            _made.append(name)
        _ip("netns", "add", name)
        self.ip("link", "set", "lo", "up")

    @property
    def path(self):
        return os.path.join(NETNS_DIR, self.name)

    def ip(self, *args, check_rc=True):
        return _ip("-n", self.name, *args, check_rc=check_rc)

    def sysctl(self, key, value):
        r = subprocess.run(["ip", "netns", "exec", self.name, "sysctl", "-q", "-w", "%s=%s" % (key, value)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        if r.returncode != 0:
            raise Fail("sysctl %s=%s in %s: %s" % (key, value, self.name, r.stderr.decode().strip()))

    def wrap(self):
        """argv prefix that runs a program inside (ip netns exec execs it: same PID)."""
        return ["ip", "netns", "exec", self.name]

    def enter(self):
        """Move the calling thread into this namespace (for good: use on a dedicated thread)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns(%s): %s" % (self.name, os.strerror(e)))
        finally:
            os.close(fd)

    def call(self, fn, *args, timeout=60, **kw):
        """fn(*args) on a fresh thread inside the namespace; its result or its exception."""
        out = {}

        def body():
            try:
                self.enter()
                out["r"] = fn(*args, **kw)
            except BaseException as e:  # handed to the caller
                out["e"] = e
        th = threading.Thread(target=body, daemon=True, name="netns-" + self.name)
        th.start()
        th.join(timeout)
        if th.is_alive():
            raise Fail("a helper inside namespace %s did not finish within %g s" % (self.name, timeout))
        if "e" in out:
            raise out["e"]
        return out.get("r")

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        return self.call(socket.socket, family, type)

    def pool(self, workers):
        """A ThreadPoolExecutor whose threads live in this namespace."""
        return ThreadPoolExecutor(max_workers=workers, initializer=self.enter,
                                  thread_name_prefix="netns-" + self.name)

    def delete(self):
        _delete_ns(self.name)


# --------------------------------------------------------------------------
# The target: records the source of every TCP connection and UDP datagram

class Target:
    """In the target namespace: TCP listeners and UDP sockets on T4 and T6 (two TCP
    ports each: .tcp4/.tcp6 and .tcp4b/.tcp6b, one UDP port each: .udp4/.udp6, all
    (host, port) tuples). Every TCP connection is answered with one line
    "SRC SPORT\\n" (the source it came from), then closed; every datagram is answered
    with the same text to its sender. Every event is recorded in .records (dicts
    proto, src, sport, dst, dport, t) and appended as a JSON line to .log_path."""

    def __init__(self, ns, log_path):
        self.ns = ns
        self.log_path = log_path
        self.records = []
        self._lock = threading.Lock()
        self._stop = False
        self._socks = []
        self._conns = []
        addrs = {}
        for key, host, kind in (("tcp4", T4, socket.SOCK_STREAM), ("tcp4b", T4, socket.SOCK_STREAM),
                                ("tcp6", T6, socket.SOCK_STREAM), ("tcp6b", T6, socket.SOCK_STREAM),
                                ("udp4", T4, socket.SOCK_DGRAM), ("udp6", T6, socket.SOCK_DGRAM)):
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = ns.socket(fam, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            if kind == socket.SOCK_STREAM:
                s.listen(4096)
                th = threading.Thread(target=self._accept_loop, args=(s,), daemon=True, name="target-" + key)
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                th = threading.Thread(target=self._udp_loop, args=(s,), daemon=True, name="target-" + key)
            self._socks.append(s)
            addrs[key] = s.getsockname()[:2]
            th.start()
        self.__dict__.update(addrs)

    def add_dual(self):
        """One more TCP port listening on both T4 and T6 (for names with A and AAAA)."""
        for _ in range(50):
            s6 = self.ns.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s6.bind((T6, 0))
            port = s6.getsockname()[1]
            s4 = self.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s4.bind((T4, port))
            except OSError:
                s4.close()
                s6.close()
                continue
            for s in (s6, s4):
                s.listen(256)
                self._socks.append(s)
                threading.Thread(target=self._accept_loop, args=(s,), daemon=True, name="target-dual").start()
            return port
        raise Fail("no port free on both %s and %s in the target namespace" % (T4, T6))

    def _record(self, proto, peer, local):
        rec = {"proto": proto, "src": peer[0], "sport": peer[1], "dst": local[0], "dport": local[1],
               "t": time.time()}
        with self._lock:
            self.records.append(rec)
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec

    def _accept_loop(self, ls, proto="tcp", serve=None):
        """Accept on ls until stopped, record each connection as proto, and answer it:
        the source line, or serve(conn) on a thread of its own."""
        while not self._stop:
            try:
                conn, peer = ls.accept()
            except OSError:
                return
            if self._stop:
                conn.close()
                return
            self._record(proto, peer, conn.getsockname())
            if serve:
                threading.Thread(target=serve, args=(conn,), daemon=True, name="target-" + proto).start()
                continue
            try:
                conn.sendall(("%s %d\n" % (peer[0], peer[1])).encode())
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finally:
                conn.close()

    def _udp_loop(self, s):
        while not self._stop:
            try:
                data, peer = s.recvfrom(65536)
            except OSError:
                return
            if self._stop or peer is None:
                return
            self._record("udp", peer, s.getsockname())
            try:
                s.sendto(("%s %d\n" % (peer[0], peer[1])).encode(), peer)
            except OSError:
                pass

    def add_echo(self, host):
        """One more TCP port on host (T4 or T6) that echoes every byte back until the
        client's EOF, then closes; its connections are recorded as proto "echo".
        Returns (host, port)."""
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = self.ns.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        s.listen(256)
        self._socks.append(s)
        threading.Thread(target=self._accept_loop, args=(s, "echo", self._echo_one), daemon=True,
                         name="target-echo").start()
        return s.getsockname()[:2]

    @staticmethod
    def _echo_one(conn):
        try:
            conn.settimeout(30)
            echo_until_eof(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def echo_sources(self, port=None):
        with self._lock:
            return [(r["src"], r["sport"]) for r in self.records
                    if r["proto"] == "echo" and (port is None or r["dport"] == port)]

    def tcp_sources(self, port=None):
        with self._lock:
            return [(r["src"], r["sport"]) for r in self.records
                    if r["proto"] == "tcp" and (port is None or r["dport"] == port)]

    def udp_sources(self):
        with self._lock:
            return [(r["src"], r["sport"]) for r in self.records if r["proto"] == "udp"]

    def stop(self):
        self._stop = True
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# --------------------------------------------------------------------------
# The two namespaces and what runs in them

class EgressNet:
    """The topology above, made for one test and torn down by its cleanup."""

    def __init__(self, ctx):
        need_netns()
        self.ctx = ctx
        with _made_lock:
            _counter[0] += 1
            n = _counter[0]
        if n == 1:
            _reap_dead_runs()
        base = "%s%dx%d" % (PREFIX, os.getpid(), n)
        self.P = NetNS(base + "p")
        ctx.defer(self.P.delete)      # deferred first: runs last, after the proxies stopped
        self.T = NetNS(base + "t")
        ctx.defer(self.T.delete)
        self._setup()
        self.target = Target(self.T, ctx.path("target.jsonl"))
        ctx.defer(self.target.stop)

    def _setup(self):
        P, T = self.P, self.T
        for ns in (P, T):
            ns.sysctl("net.ipv6.conf.all.accept_dad", 0)
            ns.sysctl("net.ipv6.conf.default.accept_dad", 0)
            ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
            ns.sysctl("net.ipv4.conf.default.rp_filter", 0)
        for i in (0, 1):
            P.ip("link", "add", "veth%d" % i, "type", "veth", "peer", "name", "veth%d" % i, "netns", T.name)
        plan = ((P, "veth0", P_V4, P_V6), (P, "veth1", P_V4_MARK, P_V6_MARK),
                (T, "veth0", T_V4, T_V6), (T, "veth1", T_V4_MARK, T_V6_MARK))
        for ns, dev, a4, a6 in plan:
            ns.ip("addr", "add", a4 + "/26", "dev", dev)
            ns.ip("-6", "addr", "add", a6 + "/64", "dev", dev, "nodad")
            ns.ip("link", "set", dev, "up")
        # proxy side: extra listener addresses, pools routed as local, the target via veth0,
        # and via veth1 for marked traffic
        for a in LISTEN_V4:
            P.ip("addr", "add", a + "/32", "dev", "lo")
        for a in LISTEN_V6:
            P.ip("-6", "addr", "add", a + "/128", "dev", "lo", "nodad")
        P.ip("route", "add", "local", POOL_V4, "dev", "lo")
        for pfx in POOL_V6:
            P.ip("-6", "route", "add", "local", pfx, "dev", "lo")
        P.ip("route", "add", T4 + "/32", "via", T_V4, "dev", "veth0")
        P.ip("-6", "route", "add", T6 + "/128", "via", T_V6, "dev", "veth0")
        P.ip("route", "add", T4 + "/32", "via", T_V4_MARK, "dev", "veth1", "table", MARK_TABLE)
        P.ip("-6", "route", "add", T6 + "/128", "via", T_V6_MARK, "dev", "veth1", "table", MARK_TABLE)
        P.ip("rule", "add", "fwmark", MARK, "table", MARK_TABLE)
        P.ip("-6", "rule", "add", "fwmark", MARK, "table", MARK_TABLE)
        # target side: its service addresses, routes back to the pools and listener addresses
        T.ip("addr", "add", T4 + "/32", "dev", "lo")
        T.ip("-6", "addr", "add", T6 + "/128", "dev", "lo", "nodad")
        T.ip("route", "add", POOL_V4, "via", P_V4, "dev", "veth0")
        T.ip("route", "add", "192.0.2.192/26", "via", P_V4, "dev", "veth0")
        for pfx in POOL_V6 + ("2001:db8:b::/64",):
            T.ip("-6", "route", "add", pfx, "via", P_V6, "dev", "veth0")
        # anything else back through P too, so a source outside the pools still gets its
        # answer and the test names it (instead of waiting for a connect timeout)
        T.ip("route", "add", "default", "via", P_V4, "dev", "veth0")
        T.ip("-6", "route", "add", "default", "via", P_V6, "dev", "veth0")

    # -- a client network behind the proxy (transparent listeners)

    def add_client(self):
        """The third namespace C (see the topology above), its veth to P, forwarding off
        in P. Returns C (also self.C)."""
        P = self.P
        self.C = C = NetNS(self.P.name[:-1] + "c")
        self.ctx.defer(C.delete)
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            C.sysctl(key, 0)
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            C.sysctl(key, 0)
        P.sysctl("net.ipv4.ip_forward", 0)
        P.sysctl("net.ipv6.conf.all.forwarding", 0)
        P.ip("link", "add", "vethc", "type", "veth", "peer", "name", "veth0", "netns", C.name)
        for ns, dev, a4, a6 in ((P, "vethc", P_C4, P_C6), (C, "veth0", C_V4, C_V6)):
            ns.ip("addr", "add", a4 + "/26", "dev", dev)
            ns.ip("-6", "addr", "add", a6 + "/64", "dev", dev, "nodad")
            ns.ip("link", "set", dev, "up")
        C.ip("route", "add", "default", "via", P_C4, "dev", "veth0")
        C.ip("-6", "route", "add", "default", "via", P_C6, "dev", "veth0")
        return C

    def nft(self, ruleset, ns=None):
        """Load an nftables ruleset (text for nft -f) into ns (default P)."""
        ns = ns or self.P
        path = self.ctx.path("ruleset%d.nft" % self.ctx._next_id())
        with open(path, "w") as f:
            f.write(ruleset)
        r = subprocess.run(ns.wrap() + ["nft", "-f", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
        if r.returncode != 0:
            raise Fail("nft -f in %s: exit %d: %s" % (ns.name, r.returncode, r.stderr.decode("utf-8", "replace").strip()),
                       ruleset)

    # -- the proxy under test

    def proxy(self, conf_text, args=(), listen=("127.0.0.1:0",), n_listen=None, name="ringsocks.conf"):
        """ringsocks -c FILE inside P. listen: --listen flags (the harness's way); () with
        n_listen: the listeners come from the file, and n_listen listening lines are awaited.
        --connect-timeout 3: a connect here takes well under a millisecond, and a broken
        source must not hold the 1,000-tunnel tests for the default 10 s per tunnel."""
        path = self.ctx.path(name)
        with open(path, "w") as f:
            f.write(conf_text)
        p = self.ctx.proxy(listen=listen, args=["-c", path, "--connect-timeout", "3"] + list(args),
                           wait_listen=not n_listen,
                           wrap=self.P.wrap())
        if n_listen:
            p.listen = [None] * n_listen
            p.wait_listening()
        return p

    # -- clients inside P

    def socks_open(self, addr, auth=None, timeout=IO_TIMEOUT):
        """(Call inside P.) A connection to the proxy past method selection / login."""
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(tuple(addr[:2]))
            if auth:
                s.sendall(b"\x05\x01\x02")
                m = recv_exact(s, 2, "method selection reply")
                check(m == b"\x05\x02", "method selection reply %s, expected 05 02" % hexb(m))
                s.sendall(auth_msg(auth[0], auth[1]))
                st = recv_exact(s, 2, "RFC 1929 status")
                check(st == b"\x01\x00", "RFC 1929 status %s for user %r, expected 01 00" % (hexb(st), auth[0]))
            else:
                s.sendall(GREETING)
                m = recv_exact(s, 2, "method selection reply")
                check(m == b"\x05\x00", "method selection reply %s, expected 05 00" % hexb(m))
        except BaseException:
            s.close()
            raise
        return s

    def _tunnel(self, addr, dst, auth, host):
        s = self.socks_open(addr, auth)
        try:
            s.sendall(request(host or dst[0], dst[1]))
            r = read_reply(s, "CONNECT reply")
            cport = s.getsockname()[1]
            if r.rep != 0:
                return r, None, cport
            return r, read_source(s, "through the tunnel to %s:%d" % dst[:2]), cport
        finally:
            s.close()

    def tunnel(self, proxy_addr, dst, auth=None, host=None):
        """One CONNECT from inside P through proxy_addr to dst (a target (host, port);
        host: ask for this name instead). Returns (Reply, (src, sport) seen by the
        target) - the second None when the reply is not 00."""
        return self.P.call(self._tunnel, tuple(proxy_addr[:2]), dst, auth, host)[:2]

    def tunnel_ok(self, proxy_addr, dst, auth=None, host=None, what=""):
        r, src = self.tunnel(proxy_addr, dst, auth, host)
        check(r.rep == 0, "CONNECT %s:%d%s%s: reply %s (REP 0x%02x), expected REP 00"
              % (host or dst[0], dst[1], " as %s" % auth[0] if auth else "", what, hexb(r.raw), r.rep))
        return src

    def tunnels(self, jobs, workers=32):
        """Many CONNECTs at once from inside P: jobs are (proxy_addr, dst, auth) tuples;
        returns [(Reply, src, client port)] in order."""
        with self.P.pool(workers) as ex:
            futs = [ex.submit(self._tunnel, tuple(a[:2]), d, au, None) for a, d, au in jobs]
            return [f.result() for f in futs]


    # -- UDP ASSOCIATE and BIND from inside P

    def _udp(self, proxy_addr, dst, count, auth):
        from harness import parse_udp, udp_header
        ctl = self.socks_open(proxy_addr, auth)
        u = None
        try:
            ctl.sendall(request("0.0.0.0", 0, cmd=3))
            r = read_reply(ctl, "UDP ASSOCIATE reply")
            if r.rep != 0:
                return r, None, []
            relay = (r.host, r.port)
            if r.host in ("0.0.0.0", "::"):
                relay = (proxy_addr[0], r.port)
            u = socket.socket(socket.AF_INET6 if ":" in relay[0] else socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(3)
            u.bind((ctl.getsockname()[0], 0))
            seen = []
            for i in range(count):
                u.sendto(udp_header(dst[0], dst[1]) + b"ping %d" % i, relay)
                try:
                    data, frm = u.recvfrom(65536)
                except socket.timeout:
                    raise Fail("no UDP answer within 3 s to datagram %d sent through the relay %s:%d to %s:%d"
                               % (i, relay[0], relay[1], dst[0], dst[1]))
                host, port, atyp, payload = parse_udp(data)
                check((host, port) == tuple(dst), "UDP answer names %s:%d, expected the target %s:%d"
                      % (host, port, dst[0], dst[1]))
                a, p = payload.decode().split()
                seen.append((a, int(p)))
            return r, relay, seen
        finally:
            if u is not None:
                u.close()
            ctl.close()

    def udp(self, proxy_addr, dst, count=3, auth=None):
        """A UDP association from inside P; count datagrams to dst (a target UDP
        address), each answered. Returns (Reply, relay, [(src, sport) the target saw])."""
        return self.P.call(self._udp, tuple(proxy_addr[:2]), dst, count, auth)

    def bind(self, proxy_addr, peer_host, auth=None):
        """BIND from inside P naming peer_host (T4 or T6); the target namespace then
        connects from peer_host to the first reply's address. Returns (first Reply,
        second Reply or None, the address the peer's connection reached)."""
        ctl = self.P.call(self.socks_open, tuple(proxy_addr[:2]), auth)
        try:
            ctl.sendall(request(peer_host, 0, cmd=2))
            r1 = read_reply(ctl, "first BIND reply")
            if r1.rep != 0:
                return r1, None, None
            fam = socket.AF_INET6 if ":" in peer_host else socket.AF_INET
            a = self.T.socket(fam, socket.SOCK_STREAM)
            try:
                a.settimeout(10)
                a.bind((peer_host, 0))
                a.connect((r1.host, r1.port))
                r2 = read_reply(ctl, "second BIND reply")
                a.sendall(b"from-peer\n")
                got = recv_exact(ctl, 10, "data from the BIND peer")
                check(got == b"from-peer\n", "BIND tunnel carried %r, expected b'from-peer\\n'" % got)
                return r1, r2, a.getpeername()[:2]
            finally:
                a.close()
        finally:
            ctl.close()


def read_source(s, what):
    """The target's "SRC SPORT\\n" line from s: (src, sport)."""
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(256)
        if not b:
            break
        line += b
    parts = line.decode("ascii", "replace").split()
    check(len(parts) == 2, "the target's line %s is %r, expected 'SRC SPORT'" % (what, line))
    return parts[0], int(parts[1])


def in_net(addr, *nets):
    ip = ipaddress.ip_address(addr)
    return any(ip in ipaddress.ip_network(n) for n in nets)
