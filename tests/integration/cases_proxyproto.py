"""
cases_proxyproto.py - listeners marked proxy_protocol (issue #13 item 1): behind a real
HAProxy in TCP mode (Debian's haproxy, running conf/haproxy.cfg with its ports replaced,
send-proxy-v2 and send-proxy), curl --socks5-hostname reaches a local HTTP target, the
access log names the client curl connected from (127.0.0.2 or 127.0.0.3, the balancer as
via=), and a deny rule on a client address applies through the balancer. By hand: a peer
not in from is closed at once, a LOCAL header closes cleanly, a malformed header closes,
a header pipelined with the SOCKS request is served, and a late header is closed by the
handshake timeout.
"""

import hashlib
import os
import socket
import struct
import subprocess
import time

from cases_security import log_lines
from cases_udp import echo_via
from harness import (GREETING, Fail, _register_proc, case, check, expect_close, free_port, hexb,
                     need_tools, read_method_reply, read_reply, recv_exact, request, stop_process,
                     tail, udp_expect_silence, udp_header, wait_until)

HAPROXY_CFG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf",
                           "haproxy.cfg")
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
RULES = 'rules = ( { action = "deny"; from = ["127.0.0.3"]; }, { action = "allow"; } );\n'


def proxy_listener(ctx, from_=("127.0.0.1",), extra=""):
    """ringsocks with one listener marked proxy_protocol, open to from_ only."""
    port = free_port()
    conf = ctx.path("ringsocks-pp.conf")
    with open(conf, "w") as f:
        f.write('listen = ( { address = "127.0.0.1:%d"; proxy_protocol = true; from = [%s]; } );\n'
                % (port, ", ".join('"%s"' % a for a in from_)))
        f.write(RULES + extra)
    log = ctx.path("access-pp.log")
    p = ctx.proxy(listen=(), args=["-c", conf, "--access-log", log], wait_listen=False)
    p.listen = [None]
    p.wait_listening()
    return p, log


def start_haproxy(ctx, backend_port, send="send-proxy-v2"):
    """conf/haproxy.cfg on free loopback ports, in the foreground (-db), stopped by PID."""
    need_tools("haproxy")
    with open(HAPROXY_CFG) as f:
        text = f.read()
    fe = free_port()
    text = text.replace("127.0.0.1:1080", "127.0.0.1:%d" % fe)
    text = text.replace("127.0.0.1:1081", "127.0.0.1:%d" % backend_port)
    if send != "send-proxy-v2":
        text = text.replace("send-proxy-v2", send)
    cfg = ctx.path("haproxy-%s.cfg" % send)
    with open(cfg, "w") as f:
        f.write(text)
    err = ctx.path("haproxy-%s.stderr" % send)
    with open(err, "wb") as e:
        proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdin=subprocess.DEVNULL,
                                stdout=e, stderr=e, close_fds=True)
    _register_proc(proc)
    ctx.defer(lambda: stop_process(proc))

    def up():
        if proc.poll() is not None:
            return True
        try:
            socket.create_connection(("127.0.0.1", fe), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(up, 10)
    if proc.poll() is not None:
        with open(err, errors="replace") as e:
            raise Fail("haproxy exited %d at start" % proc.returncode, tail(e.read()))
    return fe


def curl(ctx, fe, url, source):
    out = ctx.path("curl.out")
    if os.path.exists(out):
        os.unlink(out)
    argv = ["curl", "-sS", "--fail", "--max-time", "20", "--interface", source,
            "--socks5-hostname", "127.0.0.1:%d" % fe, "-o", out, url]
    return ctx.run(argv, timeout=30), out


def wait_log(log, pred, what):
    lines = wait_until(lambda: [r for r in log_lines(log) if pred(r)], 5)
    check(lines, "access log: no line %s; log: %r" % (what, log_lines(log)))
    return lines


def ip_of(field):
    """The address of a log field "127.0.0.2:5000" / "[::1]:5000"."""
    return (field or "").rsplit(":", 1)[0].strip("[]")


def through_haproxy(ctx, send):
    need_tools("curl", "haproxy")
    p, log = proxy_listener(ctx)
    fe = start_haproxy(ctx, p.port, send)
    ctx.files.ensure("small.bin")
    port = ctx.http_server(("127.0.0.1",))
    url = "http://localhost:%d/small.bin" % port

    r, out = curl(ctx, fe, url, "127.0.0.2")
    check(r.returncode == 0, "%s: curl from 127.0.0.2 through haproxy exited %d: %s"
          % (send, r.returncode, r.stderr.decode("utf-8", "replace").strip()))
    with open(out, "rb") as f:
        check(hashlib.sha256(f.read()).hexdigest() == ctx.files.sha["small.bin"],
              "%s: the body curl wrote differs from the file" % send)
    lines = wait_log(log, lambda l: l.get("cmd") == "connect" and l.get("end") == "done",
                     "cmd=connect end=done")
    check(ip_of(lines[0].get("client")) == "127.0.0.2" and ip_of(lines[0].get("via")) == "127.0.0.1",
          "%s: the tunnel's log line names client=%s via=%s, expected client 127.0.0.2 (curl's "
          "source) via 127.0.0.1 (haproxy): %r" % (send, lines[0].get("client"), lines[0].get("via"),
                                                  lines[0]))

    # The deny rule on 127.0.0.3 applies to the client behind the balancer.
    r, _ = curl(ctx, fe, url, "127.0.0.3")
    check(r.returncode != 0, "%s: curl from 127.0.0.3 (denied by rule 1) through haproxy succeeded"
          % send)
    denied = wait_log(log, lambda l: ip_of(l.get("client")) == "127.0.0.3", "client=127.0.0.3")
    check(denied[0].get("end") == "denied" and denied[0].get("rule") == "1",
          "%s: the line of the denied client says end=%s rule=%s, expected end=denied rule=1: %r"
          % (send, denied[0].get("end"), denied[0].get("rule"), denied[0]))
    # HAProxy's health checks (check-send-proxy, every 2 s) send a LOCAL header (v2) or a
    # TCP4 header naming the check's own connection (v1), and reset the connection at once:
    # they end proxy_local (v2), client_eof (v1) or client_error (reset before the read),
    # never as a refused or malformed header.
    ok = ("proxy_local", "client_error") if send == "send-proxy-v2" else ("client_eof", "client_error")
    time.sleep(2.5)
    # A check's line has no via (LOCAL, or reset before the header) or names its own
    # connection as the client (v1); start_haproxy's probe came through the frontend.
    checks = [l for l in log_lines(log) if l.get("cmd") == "none"
              and l.get("via") in (None, l.get("client"))]
    check(checks, "%s: no access-log line of haproxy's health checks in 2.5 s" % send)
    bad = [l for l in checks if l.get("end") not in ok]
    check(not bad, "%s: haproxy's health checks should end %s: %r" % (send, " or ".join(ok), bad))
    p.check_alive()


@case("proxyproto_haproxy_v2")
def proxyproto_haproxy_v2(ctx):
    """curl through HAProxy send-proxy-v2: served, logged as its own address, rules apply."""
    through_haproxy(ctx, "send-proxy-v2")


@case("proxyproto_haproxy_v1")
def proxyproto_haproxy_v1(ctx):
    """The same through HAProxy send-proxy (v1 text header)."""
    through_haproxy(ctx, "send-proxy")


def v2_header(src, dst, sport, dport, cmd=0x21):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + bytes([cmd, 0x11]) + struct.pack("!H", len(body)) + body


@case("proxyproto_refused")
def proxyproto_refused(ctx):
    """A peer not in from is closed at once, before it sends anything (end=proxy_refused)."""
    p, log = proxy_listener(ctx, from_=("127.0.0.9", "10.0.0.0/8"))
    s = ctx.connect(p.addr)
    t0 = time.monotonic()
    how = expect_close(s, timeout=2, after="connect from 127.0.0.1 (not a balancer)")
    took = time.monotonic() - t0
    check(took < 1.0, "closed after %.2f s, expected at once" % took)
    lines = wait_log(log, lambda l: l.get("end") == "proxy_refused", "end=proxy_refused")
    check(ip_of(lines[0].get("client")) == "127.0.0.1", "proxy_refused line (%s): %r" % (how, lines[0]))


@case("proxyproto_local_and_bad")
def proxyproto_local_and_bad(ctx):
    """A v2 LOCAL header (a health check) closes cleanly with EOF (end=proxy_local); a
    malformed header closes (end=proxy_bad); neither is served."""
    p, log = proxy_listener(ctx)
    s = ctx.connect(p.addr)
    s.sendall(V2_SIG + b"\x20\x00\x00\x00")
    how = expect_close(s, after="a v2 LOCAL header")
    check(how == "eof", "the LOCAL health check was %s, expected a clean close (EOF)" % how)
    wait_log(log, lambda l: l.get("end") == "proxy_local", "end=proxy_local")

    for bad in (b"PROXY TCP4 127.0.0.5 127.0.0.1 1 2 3\r\n", GREETING,
                V2_SIG + b"\x21\x12\x00\x0c" + bytes(12)):
        s = ctx.connect(p.addr)
        s.sendall(bad)
        expect_close(s, after="a malformed header %s" % hexb(bad))
    lines = wait_until(lambda: len([l for l in log_lines(log) if l.get("end") == "proxy_bad"]) >= 3
                       and log_lines(log), 5) or []
    check(len([l for l in lines if l.get("end") == "proxy_bad"]) == 3,
          "expected 3 end=proxy_bad lines: %r" % lines)


@case("proxyproto_pipelined")
def proxyproto_pipelined(ctx):
    """v1 and v2 headers sent in one write with the greeting and the CONNECT: served, and the
    tunnel is logged as the header's client; a rule on that client applies."""
    p, log = proxy_listener(ctx)
    echo = ctx.echo_server()
    for hdr, client in ((b"PROXY TCP4 192.0.2.7 127.0.0.1 40007 1081\r\n", "192.0.2.7"),
                        (v2_header("198.51.100.8", "127.0.0.1", 40008, 1081), "198.51.100.8")):
        s = ctx.connect(p.addr)
        s.sendall(hdr + GREETING + request(echo.addr[0], echo.port) + b"ping")
        m = read_method_reply(s)
        check(m == b"\x05\x00", "method reply after a header %s: %s" % (hexb(hdr), hexb(m)))
        r = read_reply(s)
        check(r.rep == 0, "CONNECT after a pipelined header: REP 0x%02x" % r.rep)
        got = recv_exact(s, 4, "echo of the pipelined bytes")
        check(got == b"ping", "echo %r" % got)
        s.close()
        wait_log(log, lambda l, c=client: ip_of(l.get("client")) == c and l.get("end") == "done",
                 "client=%s end=done" % client)
    s = ctx.connect(p.addr)
    s.sendall(v2_header("127.0.0.3", "127.0.0.1", 40009, 1081) + GREETING + request(echo.addr[0], echo.port))
    read_method_reply(s)
    r = read_reply(s)
    check(r.rep == 0x02, "CONNECT as 127.0.0.3 (denied by rule 1): REP 0x%02x, expected 02" % r.rep)


@case("proxyproto_late_header")
def proxyproto_late_header(ctx):
    """Half a header, then nothing: closed by the handshake timeout (2 s), not later."""
    p, log = proxy_listener(ctx, extra="handshake_timeout = 2;\n")
    s = ctx.connect(p.addr)
    s.sendall(b"PROXY TCP4 127.0.0.5 ")
    t0 = time.monotonic()
    expect_close(s, timeout=6, after="half a header")
    took = time.monotonic() - t0
    check(took < 4.5, "closed after %.1f s, the handshake timeout is 2 s" % took)
    wait_log(log, lambda l: l.get("end") == "handshake_timeout", "end=handshake_timeout")


@case("proxyproto_udp_client")
def proxyproto_udp_client(ctx):
    """UDP ASSOCIATE behind a header naming 127.0.0.5 (DST 0.0.0.0:0): the association
    expects that client's address, not the balancer's: datagrams from 127.0.0.5 are
    relayed, those from 127.0.0.1 (the peer of the TCP connection) are dropped."""
    p, log = proxy_listener(ctx)
    echo = ctx.udp_echo("127.0.0.1")
    s = ctx.connect(p.addr)
    s.sendall(v2_header("127.0.0.5", "127.0.0.1", 40005, 1081) + GREETING
              + request("0.0.0.0", 0, cmd=3))
    read_method_reply(s)
    r = read_reply(s)
    check(r.rep == 0 and r.port, "UDP ASSOCIATE behind a header: reply %s" % hexb(r.raw))
    relay = ("127.0.0.1", r.port)
    balancer = ctx.udp_socket("127.0.0.1")
    balancer.sendto(udp_header("127.0.0.1", echo.port) + b"balancer", relay)
    udp_expect_silence(balancer, 1.0, "datagram from the balancer's address, not the header's client")
    echo_via(ctx.udp_socket("127.0.0.5"), relay, "127.0.0.1", echo.port, b"from the real client")
