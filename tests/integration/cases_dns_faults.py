"""
cases_dns_faults.py - resolver faults (issue #18, part 2): a fake DNS server on
loopback that answers garbage, truncated, oversized or spoofed messages, late or
never. For each, the client must get its reply code within connect_timeout, the
next clients (by address, and by a name that needs a fresh query) must still be
served, and once every lookup has ended no connection and no descriptor is left.

What ringsocks does with each fault (c-ares 1.18; docs/operations.md, "Name resolution"):
  random bytes, a header with a nonsense body, a spoofed ID, no answer at all: c-ares
      drops the message and waits; the client gets 0x04 at connect_timeout.
  the question asked then a random or cut answer section: the lookup fails; 0x04 at once.
  TC=1, or a UDP answer beyond 512 bytes: asked again over TCP; answered there, served
      (0x00), reset there, 0x04 at once.
  an answer after the client left, or after connect_timeout: dropped, nothing touched.
"""

import os
import socket
import struct
import threading
import time

import harness as H
from cases_control import scrape
from harness import (GREETING, case, check, echo_roundtrip, expect_close, hexb, metric, need_ringsocks,
                     read_method_reply, read_reply, request, socks_connect, wait_until)

CONNECT_TIMEOUT = 2   # s, the proxy's connect_timeout in these tests: it bounds a resolution
REPLY_SLACK = 1.0     # s past connect_timeout for the reply (timer lists tick in deciseconds)
# c-ares keeps at most one UDP and one TCP socket per server per channel, and each shard
# has its own channel with the one stub as server: that many descriptors may come and go.
FD_SLACK = 2 * H.CONFIG.shards
# c-ares gives up on a lookup after timeout 2 s and tries 2 (2 s + 4 s): the longest a
# query the stub never answers stays pending.
ARES_GIVE_UP = 6.0


A_RR = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")


def _msg(qid, flags, question, n):
    """A response: the question and n A records 127.0.0.1 (name: a pointer to the question)."""
    return struct.pack("!HHHHHH", qid, flags, 1, n, 0, 0) + question + A_RR * n


class FaultDNS(H.DNSStub):
    """DNSStub plus faulty names, over UDP and TCP on one port. The first label of a
    faulty name picks the variant and makes the name unique (the proxy caches
    answers): X.good.test answers like good.test, and
      r*.garbage.test   random bytes
      h*.garbage.test   a valid header (its ID, QR, ANCOUNT 2) then random bytes
      a*.garbage.test   header and question, then a random answer section
      c*.trunc.test     four A records, the message cut in the middle of the second
      t*.trunc.test     TC=1 and no answer; over TCP the whole answer
      *.big.test        A: 400 A records (6.4 KB, beyond the 512 bytes of DNS without
                        EDNS) over UDP and over TCP
      *.wrongid.test    A 127.0.0.1 with the wrong transaction ID, then nothing
      *.late.test       as good.test, after LATE s (longer than connect_timeout)
    A name whose first label starts with n: the TCP connection is reset unanswered."""

    LATE = CONNECT_TIMEOUT + 0.5
    BIG = 400

    def __init__(self):
        # TCP first: its port is then tried for UDP (c-ares asks both on one port).
        for _ in range(50):
            self.tcp = H.TCPServer(self._tcp_serve)
            try:
                super().__init__(self.tcp.port)
                break
            except OSError:
                self.tcp.stop()
        else:
            raise H.Fail("no port free for both TCP and UDP on 127.0.0.1")
        self.tcp_queries = []

    @staticmethod
    def _base(name):
        labels = name.lower().rstrip(".").split(".")
        return ".".join(labels[-2:])

    def answer(self, data):
        """Over UDP (DNSStub's loop, which holds back slow.test and late.test)."""
        return self._response(data, False)

    def _tcp_serve(self, conn, peer):
        while True:
            n = struct.unpack("!H", H.recv_exact(conn, 2, "length"))[0]
            data = H.recv_exact(conn, n, "query")
            name = self._parse_name(data, 12)[0]
            self.tcp_queries.append(name)
            if name.lower().startswith("n"):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            resp = self._response(data, True)
            conn.sendall(struct.pack("!H", len(resp)) + resp)

    def _response(self, data, tcp):
        """The response to a query (None: none)."""
        qid, flags = struct.unpack("!HH", data[:4])
        name, off = self._parse_name(data, 12)
        qtype = struct.unpack("!H", data[off:off + 2])[0]
        question = data[12:off + 4]
        key, first = self._base(name), name.lower()[:1]
        rflags = 0x8000 | (flags & 0x0100) | 0x0080
        if key not in ("garbage.test", "trunc.test", "big.test", "wrongid.test", "good.test"):
            return H.DNSStub.answer(self, data)
        self.queries.append((name, qtype))
        n = 1 if qtype == 1 else 0
        if key == "garbage.test":
            if first == "r":
                return os.urandom(80)
            if first == "h":
                return struct.pack("!HHHHHH", qid, rflags, 1, 2, 0, 0) + os.urandom(60)
            return struct.pack("!HHHHHH", qid, rflags, 1, 2, 0, 0) + question + os.urandom(60)
        if key == "trunc.test" and first == "c":
            full = _msg(qid, rflags, question, 4 * n)
            return full[:12 + len(question) + len(A_RR) + len(A_RR) // 2]
        if key == "trunc.test" and not tcp:
            return _msg(qid, rflags | 0x0200, question, 0)
        if key == "big.test":
            n *= self.BIG
        if key == "wrongid.test":
            qid ^= 0x5A5A
        return _msg(qid, rflags, question, n)

    def stop(self):
        super().stop()
        self.tcp.stop()


_seq = [0]


def unique(suffix, first="x"):
    _seq[0] += 1
    return "%s%d-%d.%s" % (first, os.getpid(), _seq[0], suffix)


def fds(p):
    return len(os.listdir("/proc/%d/fd" % p.proc.pid))


def fd_targets(p):
    out = []
    for f in os.listdir("/proc/%d/fd" % p.proc.pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (p.proc.pid, f)))
        except OSError:
            pass
    return sorted(out)


def still_serving(ctx, p, echo, dns):
    """CONNECT by address, then by a name the stub must be asked for: both tunnel data."""
    p.check_alive()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s, 4096)
    s.close()
    name = unique("good.test", "g")
    s, _ = socks_connect(ctx, p, name, echo.port, timeout=CONNECT_TIMEOUT + 5)
    check(dns.wait_query(name, 0.5), "the proxy answered %s without asking the stub" % name)
    echo_roundtrip(s, 4096)
    s.close()


def settled(p):
    """Every connection gone and every lookup sent ended (answered, failed or timed out)."""
    m = scrape(p)
    open_ = metric(m, "ringsocks_connections_open")
    sent = metric(m, "ringsocks_dns_queries_total")
    ended = metric(m, "ringsocks_dns_lookup_duration_seconds_count")
    return (open_ == 0 and sent == ended), (open_, sent, ended)


def start(ctx):
    need_ringsocks("needs --resolver and --connect-timeout")
    dns = FaultDNS()
    ctx.defer(dns.stop)
    p = ctx.proxy(args=["--resolver", dns.spec, "--connect-timeout", str(CONNECT_TIMEOUT)])
    echo = ctx.echo_server()
    # Warm-up: lookups on every shard, so each c-ares channel has opened its socket.
    for _ in range(2 * H.CONFIG.shards):
        still_serving(ctx, p, echo, dns)
    check(wait_until(lambda: settled(p)[0], 5), "not settled after the warm-up: open, sent, ended = %s"
          % (settled(p)[1],))
    return dns, p, echo, fds(p)


def fault_reply(ctx, p, dns, name, port, want):
    """CONNECT name: REP want within connect_timeout (+ slack). Returns the seconds it took."""
    s = ctx.connect(p.addr, CONNECT_TIMEOUT + REPLY_SLACK + 5)
    s.sendall(GREETING)
    check(read_method_reply(s) == b"\x05\x00", "method selection failed")
    t0 = time.monotonic()
    s.sendall(request(name, port))
    r = read_reply(s, "reply to CONNECT %s" % name)
    took = time.monotonic() - t0
    check(dns.wait_query(name, 0.5), "the proxy never asked the stub for %s" % name,
          "queries: %s" % dns.queries[-10:])
    check(r.rep == want, "CONNECT %s: REP 0x%02x, expected 0x%02x (%s)" % (name, r.rep, want, hexb(r.raw)))
    check(took <= CONNECT_TIMEOUT + REPLY_SLACK,
          "CONNECT %s: the reply took %.2f s, connect_timeout is %d s" % (name, took, CONNECT_TIMEOUT))
    if want == 0:
        echo_roundtrip(s, 4096)
        s.close()
    else:
        expect_close(s, after="REP 0x%02x for %s" % (want, name))
        s.close()
    return took


def no_leaks(p, base, wait=ARES_GIVE_UP + 2):
    """After every client left: no connection open, every lookup ended (c-ares may need
    ARES_GIVE_UP to time out one the stub never answered), descriptors back to the
    warm-up's count within FD_SLACK."""
    ok = wait_until(lambda: settled(p)[0], wait, 0.2)
    check(ok, "not settled %.0f s after the clients left: open, sent, ended = %s" % (wait, settled(p)[1]))
    if not wait_until(lambda: fds(p) <= base + FD_SLACK, 3):
        raise H.Fail("the proxy holds %d descriptors, %d after the warm-up (slack %d)"
                     % (fds(p), base, FD_SLACK), "fds: %s" % fd_targets(p))
    p.check_alive()


def run_faults(ctx, names, want, when):
    """Each (suffix, first) name in turn: REP want, "now" (well within connect_timeout) or
    at "timeout" (the message was dropped and the lookup waited), then still serving;
    then no leaks. Returns the stub."""
    dns, p, echo, base = start(ctx)
    for suffix, first in names:
        name = unique(suffix, first)
        took = fault_reply(ctx, p, dns, name, echo.port, want)
        if when == "now":
            check(took < CONNECT_TIMEOUT / 2, "CONNECT %s: 0x%02x after %.2f s, expected at once"
                  % (name, want, took))
        else:
            check(took >= CONNECT_TIMEOUT - 0.2, "CONNECT %s: 0x%02x after %.2f s, expected at "
                  "connect_timeout (%d s)" % (name, want, took, CONNECT_TIMEOUT))
        still_serving(ctx, p, echo, dns)
    no_leaks(p, base)
    return dns


@case("dns_fault_garbage", timeout=40)
def dns_fault_garbage(ctx):
    """Random bytes, and a valid header with a nonsense body (not the question asked):
    c-ares drops them and waits, so 0x04 (host unreachable) at connect_timeout."""
    run_faults(ctx, [("garbage.test", "r"), ("garbage.test", "h")], 0x04, "timeout")


@case("dns_fault_garbage_answers", timeout=40)
def dns_fault_garbage_answers(ctx):
    """The question asked, then a random answer section: the lookup fails, 0x04 at once."""
    run_faults(ctx, [("garbage.test", "a")], 0x04, "now")


@case("dns_fault_truncated", timeout=40)
def dns_fault_truncated(ctx):
    """An answer cut in its answer section: 0x04 at once. TC=1 and the TCP connection
    (c-ares asks again over TCP) reset unanswered: 0x04 at once."""
    run_faults(ctx, [("trunc.test", "c"), ("trunc.test", "n")], 0x04, "now")


@case("dns_fault_truncated_tcp", timeout=40)
def dns_fault_truncated_tcp(ctx):
    """TC=1, then the whole answer over TCP: served."""
    dns = run_faults(ctx, [("trunc.test", "t")], 0x00, "now")
    check(any(q.startswith("t") for q in dns.tcp_queries), "c-ares never asked over TCP: %s" % dns.tcp_queries)


@case("dns_fault_oversized", timeout=40)
def dns_fault_oversized(ctx):
    """A 6.4 KB UDP answer of 400 A records, beyond 512 bytes (c-ares sends no EDNS): taken
    as truncated and asked again over TCP, where the same answer is taken: served (0x00)."""
    dns = run_faults(ctx, [("big.test", "b")], 0x00, "now")
    check(any(q.startswith("b") for q in dns.tcp_queries), "c-ares never asked over TCP: %s" % dns.tcp_queries)


@case("dns_fault_oversized_tcp_reset", timeout=40)
def dns_fault_oversized_tcp_reset(ctx):
    """The 6.4 KB UDP answer, and the TCP connection reset unanswered: 0x04 at once."""
    run_faults(ctx, [("big.test", "n")], 0x04, "now")


@case("dns_fault_wrong_id", timeout=40)
def dns_fault_wrong_id(ctx):
    """A reply with the wrong transaction ID (a spoof pointing at a live target): ignored,
    so 0x04 at connect_timeout, never 0x00."""
    run_faults(ctx, [("wrongid.test", "w")], 0x04, "timeout")


@case("dns_fault_no_answer", timeout=40)
def dns_fault_no_answer(ctx):
    """slow.test is never answered: 0x04 at connect_timeout, and c-ares's own timeout later
    ends the lookup of a connection that is gone."""
    run_faults(ctx, [("slow.test", "s")], 0x04, "timeout")


@case("dns_fault_late_answer", timeout=40)
def dns_fault_late_answer(ctx):
    """The answer comes after the client left (FIN, RST), and after the server gave up
    (0x04 at connect_timeout, the client still there): it must find nothing."""
    dns, p, echo, base = start(ctx)
    for how in ("fin", "rst", "timeout"):
        name = unique("late.test", how[0])
        dns.late_sent.clear()
        if how == "timeout":
            fault_reply(ctx, p, dns, name, echo.port, 0x04)
        else:
            s = ctx.connect(p.addr)
            s.sendall(GREETING)
            check(read_method_reply(s) == b"\x05\x00", "method selection failed")
            s.sendall(request(name, echo.port))
            check(dns.wait_query(name, 5), "the stub saw no query for %s" % name)
            if how == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        check(dns.late_sent.wait(FaultDNS.LATE + 2), "the stub never sent the late answer for %s" % name)
        time.sleep(0.1)   # for the proxy to read it
        still_serving(ctx, p, echo, dns)
    no_leaks(p, base)
