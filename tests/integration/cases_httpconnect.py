"""
cases_httpconnect.py - HTTP CONNECT on the SOCKS port (http_connect = true): curl -x http://
-p through the proxy without and with credentials (auth = password, Proxy-Authorization:
Basic against the users file), the 407 challenge for missing and wrong credentials, 403 for a
rule's deny, 502 for a refused target, 405 for other methods, 400 and 431 for bad headers,
pipelined bytes after the header kept, the option off by default, and the access log's line.
"""

import base64
import socket

from cases_auth import ALICE, auth_proxy
from cases_control import ALLOW_LOOPBACK, conf_proxy, rules_conf
from cases_egress import access_lines, wait_log
from cases_relay import curl_fetch
from harness import (Fail, case, check, expect_close, free_port, ipv6_available, need_option,
                     need_tools, open_proxy_socket, recv_exact)

ON = ["--http-connect", "true"]


def http_proxy(ctx, extra=()):
    need_option("--http-connect")
    return ctx.proxy(args=ON + list(extra))


def read_head(s, what="response"):
    """The response header (through its empty line) as text."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            raise Fail("timed out waiting for the HTTP %s" % what, repr(buf))
        except ConnectionResetError:
            raise Fail("reset before the HTTP %s" % what, repr(buf))
        if not chunk:
            raise Fail("closed before the HTTP %s was whole" % what, repr(buf))
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def ask(ctx, p, data):
    """Send data on a new connection; returns (status, head, rest, socket)."""
    s = open_proxy_socket(ctx, p)
    s.sendall(data)
    head, rest = read_head(s)
    status = int(head.split(" ", 2)[1])
    return status, head, rest, s


def connect_req(target, auth=None, extra=""):
    req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target)
    if auth:
        req += "Proxy-Authorization: Basic %s\r\n" % base64.b64encode(auth.encode()).decode()
    return (req + extra + "\r\n").encode()


def expect_status(ctx, p, data, want, what):
    status, head, _, s = ask(ctx, p, data)
    check(status == want, "%s: status %d, expected %d" % (what, status, want), head)
    if want != 200:
        expect_close(s, after="the %d response" % want)
    return head, s


@case("http_connect_curl")
def http_connect_curl(ctx):
    need_tools("curl")
    p = http_proxy(ctx)
    port = ctx.http_server(("127.0.0.1",))
    for name in ("small.bin", "large.bin"):
        curl_fetch(ctx, ["-x", "http://127.0.0.1:%d" % p.port, "-p"],
                   "http://127.0.0.1:%d/" % port, name)
    curl_fetch(ctx, ["-x", "http://127.0.0.1:%d" % p.port, "-p"], "http://localhost:%d/" % port,
               "small.bin")
    lines = wait_log(p, 3)
    check(len(lines) >= 3, "%d access-log lines for 3 tunnels" % len(lines), p.stderr())
    for d in lines:
        check(d.get("proto") == "http" and d.get("version") == "1" and d.get("rep") == "0" and
              d.get("end") == "done", "access-log line of an HTTP tunnel: %r" % d)
    check(any(d.get("dest") == "localhost:%d" % port for d in lines),
          "no line names the host as asked (localhost:%d)" % port, p.stderr())


@case("http_connect_pipelined")
def http_connect_pipelined(ctx):
    """Bytes right behind the header go to the target after the 200, none dropped; an IPv6
    literal target in brackets; a header with bare LF line ends."""
    p = http_proxy(ctx)
    echo = ctx.echo_server()
    payload = b"hello through http\n" * 50
    status, head, rest, s = ask(ctx, p, connect_req("127.0.0.1:%d" % echo.port) + payload)
    check(status == 200 and head.startswith("HTTP/1.1 200 Connection established"),
          "status line %r" % head.splitlines()[0])
    got = rest + recv_exact(s, len(payload) - len(rest), "the pipelined bytes echoed")
    check(got == payload, "the pipelined bytes came back changed")
    s.close()
    status, _, _, s = ask(ctx, p, b"CONNECT 127.0.0.1:%d HTTP/1.0\n\n" % echo.port)
    check(status == 200, "bare-LF HTTP/1.0 request: status %d" % status)
    s.sendall(b"x")
    check(recv_exact(s, 1, "echo") == b"x", "no echo")
    s.close()
    if ipv6_available():
        echo6 = ctx.echo_server("::1")
        status, _, _, s = ask(ctx, p, connect_req("[::1]:%d" % echo6.port))
        check(status == 200, "[::1] target: status %d" % status)
        s.close()


@case("http_connect_off_by_default")
def http_connect_off_by_default(ctx):
    need_option("--http-connect")
    p = ctx.proxy()
    echo = ctx.echo_server()
    s = open_proxy_socket(ctx, p)
    s.sendall(connect_req("127.0.0.1:%d" % echo.port))
    expect_close(s, after="an HTTP request on a port without http_connect")
    check(echo.accepted == 0, "the target was reached with http_connect off")


@case("http_connect_auth")
def http_connect_auth(ctx):
    need_tools("curl")
    need_option("--http-connect")
    p = auth_proxy(ctx, extra=ON)
    port = ctx.http_server(("127.0.0.1",))
    base = "http://127.0.0.1:%d/" % port
    curl_fetch(ctx, ["-x", "http://127.0.0.1:%d" % p.port, "-p", "-U", "%s:%s" % ALICE], base,
               "small.bin")
    # Wrong password and none: curl fails, the proxy answers 407 with its challenge.
    for cred in (["-U", "%s:wrong" % ALICE[0]], []):
        # Without --fail, which would hide the proxy's status behind its own exit 22.
        r = ctx.run(["curl", "-sS", "--max-time", "20", "-x", "http://127.0.0.1:%d" % p.port,
                     "-p"] + cred + ["-o", "/dev/null", base + "small.bin"], timeout=30)
        err = r.stderr.decode("utf-8", "replace")
        check(r.returncode != 0 and "407" in err, "curl %s: exit %d, expected a 407 failure"
              % (" ".join(cred) or "without credentials", r.returncode), err)
    echo = ctx.echo_server()
    target = "127.0.0.1:%d" % echo.port
    for auth, what in ((None, "no credentials"), ("%s:wrong" % ALICE[0], "a wrong password"),
                       (":x", "an empty user"), ("nobody:x", "an unknown user")):
        head, _ = expect_status(ctx, p, connect_req(target, auth), 407, what)
        check('\r\nProxy-Authenticate: Basic realm="ringsocks"' in head,
              "%s: 407 without the Basic challenge" % what, head)
    check(echo.accepted == 0, "a refused login reached the target")
    status, _, _, s = ask(ctx, p, connect_req(target, "%s:%s" % ALICE))
    check(status == 200, "good credentials: status %d" % status)
    s.close()
    lines = wait_log(p, 2)
    check(any(d.get("user") == ALICE[0] and d.get("end") == "done" and d.get("proto") == "http"
              for d in lines), "no access-log line of alice's HTTP tunnel", p.stderr())
    check(any(d.get("end") == "auth_failed" and d.get("proto") == "http"
              for d in access_lines(p)), "no auth_failed line for the 407s", p.stderr())


@case("http_connect_errors")
def http_connect_errors(ctx):
    need_option("--http-connect")
    echo = ctx.echo_server()
    closed = free_port()
    p, _ = conf_proxy(ctx, rules_conf('{ action = "deny"; ports = [%d]; }' % echo.port,
                                      ALLOW_LOOPBACK, extra="http_connect = true;"))
    expect_status(ctx, p, connect_req("127.0.0.1:%d" % echo.port), 403, "a rule's deny")
    check(echo.accepted == 0, "a denied target was reached")
    expect_status(ctx, p, connect_req("127.0.0.1:%d" % closed), 502, "a refused target")
    head, _ = expect_status(ctx, p, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % closed,
                            405, "GET")
    check("\r\nAllow: CONNECT" in head, "405 without Allow: CONNECT", head)
    expect_status(ctx, p, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % closed, 400,
                  "HTTP/1.1 without Host")
    expect_status(ctx, p, b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "no port")
    # Exactly the bound without the header's end: all of it is read, so the close after the
    # 431 finds nothing unread (which would turn it into a reset).
    big = connect_req("127.0.0.1:%d" % closed)[:-2]
    big += b"X-Big: " + b"v" * (2048 - len(big) - 7)
    check(len(big) == 2048, "the test's header is %d bytes" % len(big))
    expect_status(ctx, p, big, 431, "2 KiB without the header's end")
    lines = wait_log(p, 2)
    check(any(d.get("rep") == "2" and d.get("end") == "denied" and d.get("proto") == "http"
              for d in lines), "no denied line with proto=http", p.stderr())


@case("http_connect_slow_header")
def http_connect_slow_header(ctx):
    """A header that never ends is closed at handshake_timeout, like a SOCKS greeting."""
    p = http_proxy(ctx, ["--handshake-timeout", "1"])
    s = open_proxy_socket(ctx, p)
    s.sendall(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    expect_close(s, timeout=5, after="a header left unfinished")
