"""
cases_faults.py - fault mode (rule keys fault and fault_allow, user names "-fault-",
docs/faults.md) seen from a raw client: each TCP fault does exactly what it is configured
to do (the reply bytes, the delays, the bytes before a reset or a FIN, the throttle), the
faults a rule does not allow never reach its clients, a rule set without fault keys
commits none, and every fault that acted is counted (ringsocks_faults_total) and named in
the access log (fault=, end=fault).

One server per case carries many rules, one per fault: a rule picks its clients by
destination port (each fault has a target of its own), by source address (the greeting's
faults: the client binds 127.0.0.2 or .3) or by user (the RFC 1929 status's faults).
"""

import os
import socket
import threading
import time

from cases_control import conf_proxy, scrape
from cases_egress import access_lines, pw_hash
from harness import (GREETING, case, check, echo_roundtrip, expect_close, hexb,
                     metric, read_method_reply, read_reply, read_reply4, recv_exact, recv_until_eof,
                     request, socks4_request, socks5_command, socks5_open, auth_msg, AUTH_GREETING,
                     wait_until, write_users)

FAULT_KINDS = ("reply", "reply4", "no_method", "auth_fail", "delay_method", "delay_auth",
               "delay_reply", "split", "truncate", "wrong_bnd", "bind_peer", "rst_down", "rst_up",
               "fin_down", "fin_up", "throttle", "udp_drop", "udp_dup", "udp_reorder", "udp_frag")

DELAY_MS = 300
CUT = 1000              # rst_/fin_ after this many bytes
THROTTLE = 100000       # bytes per second
THROTTLE_SIZE = 300000  # a download that takes about 3 s at THROTTLE
SLOW_CUT = 1 << 20      # rst_down for a slow reader: more than the sockets' buffers hold


# -------------------------------------------------------------------- targets

class Target:
    """A target on 127.0.0.1 of its own port: counts connections, and per connection
    sends `send` bytes first (then half-closes when `fin`), and counts what it received
    until EOF or a reset."""

    def __init__(self, ctx, send=0, fin=False):
        self.send, self.fin = send, fin
        self.received = []      # bytes received per finished connection
        self.ends = []          # "eof" or "reset" per finished connection
        self.lock = threading.Lock()
        self.srv = ctx.tcp_server(self._handle)
        self.port = self.srv.port

    def _handle(self, conn, peer):
        if self.send:
            try:
                conn.sendall(os.urandom(self.send))
                if self.fin:
                    conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        n, end = 0, "eof"
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                n += len(b)
        except ConnectionResetError:
            end = "reset"
        except OSError as e:
            end = repr(e)
        with self.lock:
            self.received.append(n)
            self.ends.append(end)

    def accepted(self):
        return len(self.srv.conns)

    def wait_done(self, n=1, timeout=5.0):
        wait_until(lambda: len(self.received) >= n, timeout)
        with self.lock:
            return list(self.received), list(self.ends)


def echo_target(ctx):
    return ctx.echo_server()


# -------------------------------------------------------------------- a raw client

def client(ctx, p, source=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.defer(s.close)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(p.addr)
    return s


def read_all(s, timeout=5.0):
    """Everything until EOF or a reset: (bytes, "eof" | "reset" | "timeout")."""
    s.settimeout(timeout)
    buf = bytearray()
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return bytes(buf), "eof"
            buf += b
    except ConnectionResetError:
        return bytes(buf), "reset"
    except socket.timeout:
        return bytes(buf), "timeout"


def connect5(ctx, p, port, auth=None):
    """A SOCKS5 client past method selection (and login) that sent CONNECT 127.0.0.1:port."""
    s = socks5_open(ctx, p, auth)
    s.sendall(request("127.0.0.1", port))
    return s


def expect_refusal5(ctx, p, port, rep, what, auth=None):
    s = connect5(ctx, p, port, auth)
    r = read_reply(s, "reply to %s" % what)
    check(r.ver == 5 and r.rep == rep, "%s: reply %s, expected 05 %02x" % (what, hexb(r.raw), rep))
    end = expect_close(s, after="the %s reply %s" % (what, hexb(r.raw)))
    return r, end


def expect_refusal4(ctx, p, port, cd, fault):
    s = client(ctx, p)
    s.sendall(socks4_request(1, port))
    r = read_reply4(s, "SOCKS4 reply under fault %s" % fault)
    check(r.vn == 0 and r.cd == cd, "SOCKS4 CONNECT under fault %s: reply %s, expected 00 %02x"
          % (fault, hexb(r.raw), cd))
    expect_close(s, after="the SOCKS4 refusal %s" % hexb(r.raw))


def timed(fn):
    t0 = time.monotonic()
    v = fn()
    return v, time.monotonic() - t0


def check_delay(took, what):
    check(took >= (DELAY_MS - 10) / 1000.0 and took < 2.0,
          "%s came after %.3f s, expected %d ms (>= %.2f s, < 2 s)"
          % (what, took, DELAY_MS, (DELAY_MS - 10) / 1000.0))


# -------------------------------------------------------------------- what the server says

def fault_counts(p):
    m = scrape(p)
    out = {k: metric(m, "ringsocks_faults_total", fault=k) for k in FAULT_KINDS}
    out["asks_refused"] = metric(m, "ringsocks_fault_asks_refused_total")
    return out


def check_counts(p, want):
    """ringsocks_faults_total{fault=k} is want.get(k, 0) for every kind (and the refused asks)."""
    def diff():
        got = fault_counts(p)
        return ["%s=%r (expected %d)" % (k, got.get(k), want.get(k, 0))
                for k in FAULT_KINDS + ("asks_refused",) if got.get(k) != want.get(k, 0)]
    wait_until(lambda: not diff(), 5.0)
    bad = diff()
    check(not bad, "fault counters differ: " + ", ".join(bad))


def log_of(p, pred, what, timeout=5.0):
    """The access-log line pred picks (exactly one)."""
    lines = wait_until(lambda: [d for d in access_lines(p) if pred(d)], timeout) or []
    check(len(lines) == 1, "%d access-log lines for %s, expected 1" % (len(lines), what),
          "\n".join(l for l in p.stderr().splitlines() if l.startswith("time=")))
    return lines[0]


def check_log(p, port, fault, ended, what):
    """The tunnel to port logged fault=fault, and end=fault if and only if ended."""
    d = log_of(p, lambda d: d.get("dest", "").endswith(":%d" % port), what)
    check(d.get("fault") == fault, "%s: access log fault=%r, expected %r (%s)"
          % (what, d.get("fault"), fault, d))
    check((d.get("end") == "fault") == ended, "%s: access log end=%r, expected %s (%s)"
          % (what, d.get("end"), "fault" if ended else "something else than fault", d))


# -------------------------------------------------------------------- no authentication

@case("faults_tcp", timeout=60)
def faults_tcp(ctx):
    """Every TCP fault of a no-authentication server, each from its own rule."""
    t = {name: Target(ctx) for name in ("refused", "reply4", "truncate", "wrong_bnd", "delay_reply",
                                        "split", "rst_up", "fin_up")}
    t["rst_down"] = Target(ctx, send=10 * CUT)
    t["fin_down"] = Target(ctx, send=10 * CUT)
    t["rst_slow"] = Target(ctx, send=2 * SLOW_CUT)
    t["throttle"] = Target(ctx, send=THROTTLE_SIZE, fin=True)
    plain = echo_target(ctx)
    rules = [
        '{ action = "allow"; from = ["127.0.0.2"]; fault = "no_method"; }',
        '{ action = "allow"; from = ["127.0.0.3"]; fault = "delay_method_%d"; }' % DELAY_MS,
        '{ action = "allow"; commands = ["bind"]; fault = "bind_peer"; }',
    ]
    faults = {"refused": "refused", "reply4": "reply_0x5c", "truncate": "truncate_3",
              "wrong_bnd": "wrong_bnd", "delay_reply": "delay_reply_%d" % DELAY_MS,
              "split": "split_50", "rst_down": "rst_down_%d" % CUT, "fin_down": "fin_down_%d" % CUT,
              "rst_slow": "rst_down_%d" % SLOW_CUT,
              "rst_up": "rst_up_%d" % CUT, "fin_up": "fin_up_%d" % CUT,
              "throttle": "throttle_%d" % THROTTLE}
    for name, f in faults.items():
        rules.append('{ action = "allow"; ports = [%d]; fault = "%s"; }' % (t[name].port, f))
    rules.append('{ action = "allow"; from = ["127.0.0.0/8"]; }')
    p, _ = conf_proxy(ctx, "rules = (\n  %s\n);\n" % ",\n  ".join(rules))

    # refused: 05 05 then close, the target never tried; a SOCKS4 client gets 5b for it.
    expect_refusal5(ctx, p, t["refused"].port, 0x05, "CONNECT under fault refused")
    expect_refusal4(ctx, p, t["refused"].port, 0x5b, "refused")
    # reply_0x5c: 00 5c to a SOCKS4 client, general failure (01) to a SOCKS5 one.
    expect_refusal4(ctx, p, t["reply4"].port, 0x5c, "reply_0x5c")
    expect_refusal5(ctx, p, t["reply4"].port, 0x01, "SOCKS5 CONNECT under fault reply_0x5c")
    check(t["refused"].accepted() == 0 and t["reply4"].accepted() == 0,
          "a refusal a fault forces tried the target (%d, %d connections)"
          % (t["refused"].accepted(), t["reply4"].accepted()))

    # no_method: 05 ff then EOF.
    s = client(ctx, p, source="127.0.0.2")
    s.sendall(GREETING)
    m = read_method_reply(s)
    check(m == b"\x05\xff", "greeting under fault no_method: %s, expected 05 ff" % hexb(m))
    end = expect_close(s, after="05 ff")
    check(end == "eof", "after 05 ff the connection ended by %s, expected EOF" % end)

    # delay_method_300: the method selection late, then a normal tunnel.
    s = client(ctx, p, source="127.0.0.3")
    s.sendall(GREETING)
    m, took = timed(lambda: read_method_reply(s))
    check(m == b"\x05\x00", "greeting under fault delay_method: %s, expected 05 00" % hexb(m))
    check_delay(took, "the method selection under delay_method_%d" % DELAY_MS)
    s.sendall(request("127.0.0.1", plain.port))
    r = read_reply(s)
    check(r.rep == 0, "CONNECT after a delayed method selection: %s" % hexb(r.raw))
    echo_roundtrip(s, 1000)
    s.close()

    # truncate_3: exactly 05 00 00, then EOF.
    s = connect5(ctx, p, t["truncate"].port)
    got, end = read_all(s)
    check(got == b"\x05\x00\x00" and end == "eof",
          "CONNECT under truncate_3: %s then %s, expected 05 00 00 then EOF" % (hexb(got), end))

    # wrong_bnd: BND 192.0.2.1:9, the tunnel works.
    s = connect5(ctx, p, t["wrong_bnd"].port)
    r = read_reply(s)
    check(r.rep == 0 and r.atyp == 1 and r.host == "192.0.2.1" and r.port == 9,
          "CONNECT under wrong_bnd: reply %s, expected 05 00 00 01 c0 00 02 01 00 09" % hexb(r.raw))
    s.sendall(b"x" * 100)
    s.shutdown(socket.SHUT_WR)
    t["wrong_bnd"].wait_done()
    s.close()

    # delay_reply_300: the reply late.
    s = socks5_open(ctx, p)
    s.sendall(request("127.0.0.1", t["delay_reply"].port))
    r, took = timed(lambda: read_reply(s))
    check(r.rep == 0, "CONNECT under delay_reply: reply %s" % hexb(r.raw))
    check_delay(took, "the reply under delay_reply_%d" % DELAY_MS)
    s.close()

    # split_50: the 10-byte reply a byte at a time, 50 ms apart.
    s = socks5_open(ctx, p)
    s.sendall(request("127.0.0.1", t["split"].port))
    t0 = time.monotonic()
    reads, got = [], b""
    while len(got) < 10:
        b = s.recv(10 - len(got))
        check(b, "EOF after %s under split_50" % hexb(got))
        reads.append(time.monotonic() - t0)
        got += b
    took = reads[-1]
    check(got[:2] == b"\x05\x00" and got[3] == 1, "reply under split_50: %s" % hexb(got))
    check(took >= 0.45 and len(reads) >= 5,
          "under split_50 the 10-byte reply came in %d reads over %.3f s, expected 10 reads over "
          ">= 0.45 s (arrivals: %s)" % (len(reads), took, ", ".join("%.3f" % x for x in reads)))
    s.close()

    # bind_peer: BIND's second reply names 203.0.113.1 (the peer's port kept).
    s, r1 = socks5_command(ctx, p, 2, "127.0.0.1", 0, what="first BIND reply")
    check(r1.host == "127.0.0.1", "first BIND reply under bind_peer: %s, expected 127.0.0.1" % hexb(r1.raw))
    app = socket.create_connection((r1.host, r1.port), timeout=10)
    ctx.defer(app.close)
    s.settimeout(10)
    r2 = read_reply(s, "second BIND reply")
    check(r2.rep == 0 and r2.host == "203.0.113.1" and r2.port == app.getsockname()[1],
          "second BIND reply under bind_peer: %s, expected 203.0.113.1 port %d"
          % (hexb(r2.raw), app.getsockname()[1]))
    s.close()
    app.close()

    # rst_down_1000 / fin_down_1000: exactly 1000 bytes of the target's 10000, then a reset / EOF.
    for name, want in (("rst_down", "reset"), ("fin_down", "eof")):
        s, _ = socks5_command(ctx, p, 1, "127.0.0.1", t[name].port)
        got, end = read_all(s)
        check(len(got) == CUT and end == want, "under %s_%d the client got %d bytes then %s, expected %d then %s"
              % (name, CUT, len(got), end, CUT, want))

    # rst_down to a client that reads late: the reset waits until it has every byte.
    s = client(ctx, p)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(GREETING + request("127.0.0.1", t["rst_slow"].port))
    time.sleep(0.5)
    got, end = read_all(s)
    check(len(got) == 12 + SLOW_CUT and end == "reset",
          "under rst_down_%d a client that read late got %d bytes then %s, expected %d then reset"
          % (SLOW_CUT, len(got) - 12, end, SLOW_CUT))

    # rst_up_1000 / fin_up_1000: the target gets exactly 1000 of 5000 bytes; the client a reset / EOF.
    for name, want in (("rst_up", "reset"), ("fin_up", "eof")):
        s, _ = socks5_command(ctx, p, 1, "127.0.0.1", t[name].port)
        try:
            s.sendall(os.urandom(5 * CUT))
            got, end = read_all(s)
        except (ConnectionResetError, BrokenPipeError):
            got, end = b"", "reset"
        check(got == b"" and end == want, "under %s_%d the client saw %d bytes then %s, expected %s"
              % (name, CUT, len(got), end, want))
        received, ends = t[name].wait_done()
        check(received == [CUT], "under %s_%d the target received %s bytes of %d, expected %d"
              % (name, CUT, received, 5 * CUT, CUT))

    # throttle_100000: 300 KB down takes about 3 s (2 s at least: a burst may go first).
    s, _ = socks5_command(ctx, p, 1, "127.0.0.1", t["throttle"].port)
    t0 = time.monotonic()
    got = recv_until_eof(s, what="the throttled download")
    took = time.monotonic() - t0
    check(len(got) == THROTTLE_SIZE, "throttled download: %d bytes, expected %d" % (len(got), THROTTLE_SIZE))
    check(2.0 <= took < 15, "%d bytes under throttle_%d took %.2f s, expected about 3 s (>= 2)"
          % (THROTTLE_SIZE, THROTTLE, took))
    s.close()

    # A plain client meets none of it.
    s, r = socks5_command(ctx, p, 1, "127.0.0.1", plain.port)
    echo_roundtrip(s, 100000)
    s.close()

    check_counts(p, {"reply": 2, "reply4": 2, "no_method": 1, "delay_method": 1, "truncate": 1,
                     "wrong_bnd": 1, "delay_reply": 1, "split": 1, "bind_peer": 1, "rst_down": 2,
                     "fin_down": 1, "rst_up": 1, "fin_up": 1, "throttle": 1})
    for name, f, ended in (("truncate", "truncate_3", True), ("wrong_bnd", "wrong_bnd", False),
                           ("delay_reply", "delay_reply_%d" % DELAY_MS, False),
                           ("split", "split_50", False), ("rst_down", "rst_down_%d" % CUT, True),
                           ("fin_down", "fin_down_%d" % CUT, True), ("rst_up", "rst_up_%d" % CUT, True),
                           ("fin_up", "fin_up_%d" % CUT, True), ("throttle", "throttle_%d" % THROTTLE, False)):
        check_log(p, t[name].port, f, ended, name)
    refusals = [d for d in access_lines(p) if d.get("dest", "").endswith(":%d" % t["refused"].port)
                or d.get("dest", "").endswith(":%d" % t["reply4"].port)]
    check(len(refusals) == 4 and all(d.get("end") == "fault" for d in refusals)
          and sorted(d.get("fault") for d in refusals) == ["reply_0x05"] * 2 + ["reply_0x5c"] * 2,
          "the forced refusals' log lines: %s, expected 4 with end=fault (fault=reply_0x05 twice, "
          "reply_0x5c twice)" % refusals)
    d = log_of(p, lambda d: d.get("dest", "").endswith(":%d" % plain.port) and d.get("up") == "100000",
               "the plain tunnel")
    check("fault" not in d and d.get("end") != "fault", "a plain tunnel logged a fault: %s" % d)


# -------------------------------------------------------------------- user names, RFC 1929

def login(ctx, p, user, password, source=None):
    """Greeting 02 and the RFC 1929 message: (socket, status bytes, seconds for the status)."""
    s = client(ctx, p, source)
    s.sendall(AUTH_GREETING + auth_msg(user, password))
    st, took = timed(lambda: recv_exact(s, 4, "method selection and RFC 1929 status for %r" % user))
    check(st[:2] == b"\x05\x02", "method selection %s, expected 05 02" % hexb(st[:2]))
    return s, st[2:], took


USERS = ("alice", "carol", "dave")


def users_server(ctx, rules, name):
    path = write_users(ctx, ["%s:%s" % (u, pw_hash("pw-" + u)) for u in USERS], name=name + ".users")
    text = 'auth = "password";\nusers = "%s";\nusername_params = true;\nrules = (\n  %s\n);\n' \
        % (path, ",\n  ".join(rules))
    return conf_proxy(ctx, text, name=name + ".conf")[0]


@case("faults_user_names", timeout=60)
def faults_user_names(ctx):
    """auth_fail and delay_auth from a rule of users; a name's "-fault-" acts only where the
    admitting rule has fault_allow, is counted as refused elsewhere, and a bad one is a bad login."""
    allowed, other = Target(ctx), echo_target(ctx)
    p = users_server(ctx, [
        '{ action = "allow"; users = ["carol"]; fault = "auth_fail"; }',
        '{ action = "allow"; users = ["dave"]; fault = "delay_auth_%d"; }' % DELAY_MS,
        '{ action = "allow"; users = ["alice"]; ports = [%d]; fault_allow = true; }' % allowed.port,
        '{ action = "allow"; users = ["alice", "dave"]; }',
    ], "faults")

    # auth_fail: the right password refused, 01 01 then EOF.
    s, st, _ = login(ctx, p, "carol", "pw-carol")
    check(st == b"\x01\x01", "carol's right password under auth_fail: status %s, expected 01 01" % hexb(st))
    end = expect_close(s, after="01 01")
    check(end == "eof", "after the 01 01 of auth_fail the connection ended by %s, expected EOF" % end)
    # delay_auth_300: the status late, then a normal tunnel.
    s, st, took = login(ctx, p, "dave", "pw-dave")
    check(st == b"\x01\x00", "dave under delay_auth: status %s, expected 01 00" % hexb(st))
    check_delay(took, "the RFC 1929 status under delay_auth_%d" % DELAY_MS)
    s.sendall(request("127.0.0.1", other.port))
    check(read_reply(s).rep == 0, "dave's CONNECT after a delayed status failed")
    echo_roundtrip(s, 1000)

    # alice-fault-refused where the rule allows it: 05 05, the target never tried.
    r, _ = expect_refusal5(ctx, p, allowed.port, 0x05, "alice-fault-refused's CONNECT (fault_allow)",
                           auth=("alice-fault-refused", "pw-alice"))
    check(allowed.accepted() == 0, "a refusal asked by name tried the target")
    # ... where it does not: served as if it asked nothing, the ask counted.
    s, _ = socks5_command(ctx, p, 1, "127.0.0.1", other.port, auth=("alice-fault-refused", "pw-alice"))
    echo_roundtrip(s, 1000)
    s.close()
    # A malformed ask is a bad login.
    s, st, _ = login(ctx, p, "alice-fault-bogus", "pw-alice")
    check(st == b"\x01\x01", "alice-fault-bogus: status %s, expected 01 01" % hexb(st))
    expect_close(s, after="01 01 to alice-fault-bogus")

    check_counts(p, {"reply": 1, "auth_fail": 1, "delay_auth": 1, "asks_refused": 1})
    d = log_of(p, lambda d: d.get("dest", "").endswith(":%d" % allowed.port), "alice's refusal")
    check(d.get("user") == "alice" and d.get("fault") == "reply_0x05" and d.get("end") == "fault",
          "alice-fault-refused's log line: %s, expected user=alice fault=reply_0x05 end=fault" % d)
    for d in access_lines(p):
        if d.get("dest", "").endswith(":%d" % other.port):
            check("fault" not in d, "a tunnel whose rule allows no fault logged one: %s" % d)


@case("faults_off", timeout=60)
def faults_off(ctx):
    """Rules without fault keys: a name asking for a fault is served as if it asked nothing,
    and nothing is ever committed or counted."""
    other = echo_target(ctx)
    p = users_server(ctx, ['{ action = "allow"; users = ["alice"]; }'], "nofaults")
    for user in ("alice", "alice-fault-refused", "alice-fault-rst_down_10-fault-truncate_0"):
        s, _ = socks5_command(ctx, p, 1, "127.0.0.1", other.port, auth=(user, "pw-alice"))
        echo_roundtrip(s, 100000)
        s.close()
    check_counts(p, {})
    lines = wait_until(lambda: (lambda l: l if len(l) >= 3 else None)(access_lines(p)), 5) or []
    check(len(lines) == 3 and not any("fault" in d or d.get("end") == "fault" for d in lines),
          "access log of a run without faults: %s" % lines)
