"""
cases_chain.py - upstream chaining (rule key via): a ringsocks whose rules send tunnels through
parent proxies. Parents: a second ringsocks (SOCKS5 and HTTP CONNECT with a password, SOCKS4a
without), Dante from Debian (SOCKS5 and SOCKS4a, and SOCKS5 with a password), and small fake parents written here for what
real ones do not do on demand (answer with the target's first bytes in the same segment, hang,
refuse our password). Checked: curl gets its bytes through each scheme; a name goes to the
parent unresolved; a dead parent is passed over, then skipped for via_retry; a hung one costs
connect_timeout once; the parent's answer about the target is the client's reply; bytes that
arrive with the parent's reply and bytes the client pipelined are kept; BIND and UDP ASSOCIATE
are refused under a via rule; the access log and the metrics say which parent carried it.
"""

import json
import socket
import threading
import time

from cases_auth import ALICE, auth_proxy
from cases_control import conf_proxy, rules_conf, scrape
from cases_egress import access_lines, wait_log
from cases_preload import start_danted
from cases_relay import curl_fetch
from harness import (GREETING, admin_request, case, check, expect_close, free_port, metric, need_option,
                     need_tools, open_proxy_socket, read_method_reply, read_reply, recv_exact,
                     request, wait_until)

LOOPBACK = '["127.0.0.0/8"]'


def via_rule(parents, extra=""):
    return '{ action = "allow"; from = %s; %s via = [%s]; }' % (
        LOOPBACK, extra, ", ".join('"%s"' % u for u in parents))


def child(ctx, *rules, args=()):
    """The ringsocks under test, with rules (each a via rule or any other)."""
    p, _ = conf_proxy(ctx, rules_conf(*rules), args=list(args), name="child.conf")
    return p


def connect_rep(ctx, p, host, port, payload=None):
    """A SOCKS5 CONNECT through p; returns (REP, socket)."""
    s = open_proxy_socket(ctx, p)
    s.sendall(GREETING)
    check(read_method_reply(s) == b"\x05\x00", "method selection refused")
    s.sendall(request(host, port) + (payload or b""))
    return read_reply(s).rep, s


def echo_through(ctx, p, host, port, what):
    rep, s = connect_rep(ctx, p, host, port)
    check(rep == 0, "%s: CONNECT %s:%d got REP 0x%02x" % (what, host, port, rep))
    s.sendall(b"ping " + what.encode())
    got = recv_exact(s, 5 + len(what), what)
    check(got == b"ping " + what.encode(), "%s: echo came back as %r" % (what, got))
    s.close()


def counter(p, name):
    return metric(scrape(p), name) or 0


def line_for(p, dest):
    """The access-log line of the tunnel to dest (shards log in their own order)."""
    def find():
        return next((d for d in access_lines(p) if d.get("dest") == dest), None)
    d = wait_until(find, 10)
    check(d is not None, "no access-log line for %s" % dest, p.stderr()[-2000:])
    return d


def last_line(p, n):
    lines = wait_log(p, n)
    check(len(lines) >= n, "%d access-log lines, expected %d" % (len(lines), n), p.stderr()[-2000:])
    return lines[n - 1]


@case("chain_ringsocks_parents")
def chain_ringsocks_parents(ctx):
    """A second ringsocks as the parent through socks5 and http (with a password) and socks4a
    (without): curl's bytes arrive; a name goes to the parent unresolved (the parents' DNS stub
    is asked, ours never is); the access log names the parent."""
    need_tools("curl")
    need_option("--resolver")
    pdns, ours = ctx.dns_stub(), ctx.dns_stub()
    pw = auth_proxy(ctx, extra=["--http-connect", "true", "--resolver", pdns.spec])
    open_parent = ctx.proxy(args=["--resolver", pdns.spec])
    port = ctx.http_server(("127.0.0.1",))
    user = "%s:%s" % ALICE
    p = child(ctx,
              via_rule(["socks5://%s@127.0.0.1:%d" % (user, pw.port)], "ports = [%d];" % port),
              via_rule(["http://%s@127.0.0.1:%d" % (user, pw.port)], 'users = ["-"];'),
              via_rule(["socks4a://127.0.0.1:%d" % open_parent.port]),
              args=["--resolver", ours.spec, "--http-connect", "true"])
    # Rule 1 (socks5 with alice) for the HTTP server's port; rule 2 never matches (no user);
    # rule 3 (socks4a) for everything else: an echo server by name.
    curl_fetch(ctx, ["--socks5-hostname", "127.0.0.1:%d" % p.port],
               "http://good.test:%d/" % port, "small.bin")
    echo = ctx.echo_server()
    echo_through(ctx, p, "good.test", echo.port, "socks4a")
    # An HTTP CONNECT client of ours, through an http parent: its own rule set.
    p2 = child(ctx, via_rule(["http://%s@127.0.0.1:%d" % (user, pw.port)]),
               args=["--resolver", ours.spec, "--http-connect", "true"])
    curl_fetch(ctx, ["-x", "http://127.0.0.1:%d" % p2.port, "-p"],
               "http://good.test:%d/" % port, "large.bin")
    for proxy, parent, dest in ((p, pw, "good.test:%d" % port),
                                (p, open_parent, "good.test:%d" % echo.port),
                                (p2, pw, "good.test:%d" % port)):
        d = line_for(proxy, dest)
        check(d.get("parent") == "127.0.0.1:%d" % parent.port and d.get("rep") == "0",
              "access log parent=%s rep=%s, expected parent 127.0.0.1:%d rep 0"
              % (d.get("parent"), d.get("rep"), parent.port), str(d))
        check(d.get("resolved") in (None, "-"),
              "good.test was resolved here (resolved=%s): the parent should have" % d.get("resolved"))
    check(not ours.queries, "our DNS was asked %r: a name for a parent is never resolved here"
          % ours.queries)
    def parent_lines():
        pl = [d for d in access_lines(pw) + access_lines(open_parent)
              if d.get("dest", "").startswith("good.test:")]
        return pl if len(pl) >= 3 else None
    pl = wait_until(parent_lines, 10) or []
    check(len(pl) == 3, "the parents logged %d tunnels to good.test, expected 3" % len(pl), str(pl))
    check(all(d.get("resolved", "").startswith("127.0.0.1") for d in pl),
          "a parent did not resolve the name", str(pl))
    check(any(d.get("user") == ALICE[0] and d.get("proto") == "http" for d in pl),
          "no HTTP CONNECT tunnel with alice's credentials at the parent", str(pl))
    check(any(d.get("user") == ALICE[0] and d.get("version") == "5" for d in pl),
          "no SOCKS5 tunnel with alice's credentials at the parent", str(pl))
    # By address: the address goes to the parent.
    curl_fetch(ctx, ["--socks5", "127.0.0.1:%d" % p.port], "http://127.0.0.1:%d/" % port,
               "large.bin")
    d = line_for(p, "127.0.0.1:%d" % port)
    check(d.get("resolved", "").startswith("127.0.0.1"), "an address request's resolved=%s"
          % d.get("resolved"))
    check(counter(p, "ringsocks_via_tunnels_total") == 3, "ringsocks_via_tunnels_total is not 3")


@case("chain_dante_parent")
def chain_dante_parent(ctx):
    """Dante (danted) as the parent, SOCKS5 and SOCKS4a: bytes echo, Dante logs the tunnel."""
    need_tools("danted")
    dport, dlog = start_danted(ctx)
    echo = ctx.echo_server()
    p = child(ctx, via_rule(["socks5://127.0.0.1:%d" % dport], "ports = [%d];" % echo.port),
              via_rule(["socks4a://127.0.0.1:%d" % dport]))
    echo_through(ctx, p, "127.0.0.1", echo.port, "dante-socks5")
    # A second echo port to reach the socks4a rule (Dante's rules here admit 127.0.0.0/8).
    echo2 = ctx.echo_server()
    echo_through(ctx, p, "127.0.0.1", echo2.port, "dante-socks4a")
    def dante_lines():
        with open(dlog, errors="replace") as f:
            text = f.read()
        return text if text.count("tcp/connect") >= 2 else None
    check(wait_until(dante_lines, 10), "Dante's log does not show two tunnels")


@case("chain_dante_password_parent")
def chain_dante_password_parent(ctx):
    """Dante as a parent that wants a password (its username method, against an account that
    exists only in danted's own mount namespace): the wrong password is refused and the
    parent passed over; the right one gets through, Dante's log naming the user."""
    need_tools("danted", "unshare")
    dport, dlog = start_danted(ctx, account=("dtest", "dpw-1"))
    echo = ctx.echo_server()
    p = child(ctx, via_rule(["socks5://dtest:wrong@127.0.0.1:%d" % dport], "ports = [%d];" % echo.port),
              via_rule(["socks5://dtest:dpw-1@127.0.0.1:%d" % dport]))
    rep, s = connect_rep(ctx, p, "127.0.0.1", echo.port)
    check(rep == 0x01, "the wrong password through Dante: REP 0x%02x, expected 01" % rep)
    s.close()
    echo2 = ctx.echo_server()
    echo_through(ctx, p, "127.0.0.1", echo2.port, "dante-password")

    def dante_user():
        with open(dlog, errors="replace") as f:
            text = f.read()
        return text if "username%dtest@" in text and "pass(1): tcp/connect" in text else None
    check(wait_until(dante_user, 10), "Dante's log shows no tunnel for dtest")
    check(counter(p, "ringsocks_via_parent_failures_total") == 1,
          "the refused password did not count against the parent")


@case("chain_dead_parent")
def chain_dead_parent(ctx):
    """The first parent refuses connections: the second carries the tunnel; for via_retry the
    first is skipped, not tried again (ringsocks_via_skipped_total); with via_retry 0 it is."""
    echo = ctx.echo_server()
    good = ctx.proxy()
    dead = free_port()
    p = child(ctx, via_rule(["socks5://127.0.0.1:%d" % dead, "socks5://127.0.0.1:%d" % good.port]),
              args=["--shards", "1"])
    echo_through(ctx, p, "127.0.0.1", echo.port, "first")
    check(counter(p, "ringsocks_via_parent_failures_total") == 1, "the dead parent's failure was not counted")
    echo_through(ctx, p, "127.0.0.1", echo.port, "second")
    check(counter(p, "ringsocks_via_skipped_total") == 1, "the dead parent was not skipped the second time")
    check(counter(p, "ringsocks_via_parent_failures_total") == 1, "the dead parent was tried again")
    d = last_line(p, 2)
    check(d.get("parent") == "127.0.0.1:%d" % good.port, "parent= names %s" % d.get("parent"))
    # A live tunnel shows its parent in GET /connections.
    rep, s = connect_rep(ctx, p, "127.0.0.1", echo.port)
    check(rep == 0, "third tunnel: REP 0x%02x" % rep)
    st, body, _ = admin_request(p, "GET", "/connections")
    conns = [c for c in json.loads(body)["connections"] if c["state"] == "relay"]
    check(st == 200 and len(conns) == 1 and conns[0].get("parent") == "127.0.0.1:%d" % good.port,
          "GET /connections does not show the parent", body[:500])
    s.close()
    # All parents dead: the client's reply is the connect error, end parent_failed.
    p2 = child(ctx, via_rule(["socks5://127.0.0.1:%d" % dead]), args=["--via-retry", "0"])
    for i in range(2):
        rep, s = connect_rep(ctx, p2, "127.0.0.1", echo.port)
        check(rep == 0x05, "every parent dead: REP 0x%02x, expected 05 (refused)" % rep)
        expect_close(s)
    check(counter(p2, "ringsocks_via_parent_failures_total") == 2, "via_retry 0 skipped a parent")
    d = last_line(p2, 2)
    check(d.get("end") == "parent_failed", "end=%s, expected parent_failed" % d.get("end"))


def hung_parent(conn, peer):
    """Accepts and says nothing."""
    time.sleep(8)


def slow_target_parent(conn, peer):
    """A SOCKS5 parent that takes the request and never hears back from the target."""
    recv_exact(conn, 3, "greeting")
    conn.sendall(b"\x05\x00")
    recv_exact(conn, 10, "request")
    time.sleep(8)


@case("chain_hung_parent")
def chain_hung_parent(ctx):
    """A parent that accepts and never answers costs connect_timeout once (REP 06); then it is
    skipped and the next parent answers at once."""
    echo = ctx.echo_server()
    hung = ctx.tcp_server(hung_parent)
    good = ctx.proxy()
    p = child(ctx, via_rule(["socks5://127.0.0.1:%d" % hung.port, "socks5://127.0.0.1:%d" % good.port]),
              args=["--shards", "1", "--connect-timeout", "1"])
    t0 = time.monotonic()
    rep, s = connect_rep(ctx, p, "127.0.0.1", echo.port)
    took = time.monotonic() - t0
    check(rep == 0x06, "hung parent: REP 0x%02x, expected 06 (TTL expired)" % rep)
    check(0.8 < took < 4, "the hung parent's reply took %.1f s, expected about connect_timeout" % took)
    echo_through(ctx, p, "127.0.0.1", echo.port, "after-hang")
    check(counter(p, "ringsocks_via_skipped_total") == 1 and
          counter(p, "ringsocks_via_parent_failures_total") == 1,
          "the hung parent was not skipped the second time")
    # A parent that answered the greeting and waits for a slow target is not to blame.
    slow = ctx.tcp_server(slow_target_parent)
    p2 = child(ctx, via_rule(["socks5://127.0.0.1:%d" % slow.port]),
               args=["--shards", "1", "--connect-timeout", "1"])
    rep, s = connect_rep(ctx, p2, "127.0.0.1", echo.port)
    check(rep == 0x06, "slow target: REP 0x%02x, expected 06" % rep)
    check(counter(p2, "ringsocks_via_parent_failures_total") == 0,
          "a slow target counted against its parent")


def echo_rest(conn):
    """A fake parent's relay: the target is an echo."""
    while True:
        d = conn.recv(4096)
        if not d:
            return
        conn.sendall(d)


def fake_parent(reply, then=b""):
    """A SOCKS5 parent (no auth) that answers the request with reply + then in one send, then
    echoes."""
    def handler(conn, peer):
        recv_exact(conn, 3, "greeting")
        conn.sendall(b"\x05\x00")
        head = recv_exact(conn, 5, "request")
        recv_exact(conn, {1: 5, 4: 17, 3: head[4] + 2}[head[3]], "request rest")
        conn.sendall(reply + then)
        echo_rest(conn)
    return handler


def read_http_request(conn):
    """The CONNECT request's header, or None at EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(4096)
        if not d:
            return None
        buf += d
    return buf


def fake_http_parent(status_line, then=b"", want_auth=None):
    def handler(conn, peer):
        buf = read_http_request(conn)
        if buf is None:
            return
        if want_auth is not None and want_auth not in buf:
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n")
            return
        conn.sendall(status_line + b"\r\nVia: 1.1 fake\r\n\r\n" + then)
        echo_rest(conn)
    return handler


@case("chain_reply_bytes_kept")
def chain_reply_bytes_kept(ctx):
    """The target's first bytes in the same segment as the parent's reply reach the client
    (SOCKS5 and HTTP parents); bytes the client pipelined after its request reach the target."""
    ok5 = b"\x05\x00\x00\x01\xc0\x00\x02\x63\x1f\x90"
    s5 = ctx.tcp_server(fake_parent(ok5, b"BANNER-5\r\n"))
    h = ctx.tcp_server(fake_http_parent(b"HTTP/1.1 200 Connection established", b"BANNER-H\r\n"))
    p = child(ctx, via_rule(["socks5://127.0.0.1:%d" % s5.port], "ports = [1];"),
              via_rule(["http://127.0.0.1:%d" % h.port], "ports = [2];"))
    for port, banner in ((1, b"BANNER-5\r\n"), (2, b"BANNER-H\r\n")):
        rep, s = connect_rep(ctx, p, "198.51.100.9", port, payload=b"early")
        check(rep == 0, "port %d: REP 0x%02x" % (port, rep))
        got = recv_exact(s, len(banner) + 5, "banner and echo")
        check(got == banner + b"early", "port %d: got %r, expected the banner then our bytes" % (port, got))
        s.close()
    # The SOCKS5 parent's BND (192.0.2.99:8080 in ok5) is the client's; an HTTP parent says
    # none, so the client gets our end of the connection to the parent.
    for port, want in ((1, ("192.0.2.99", 8080)), (2, ("127.0.0.1", None))):
        s = open_proxy_socket(ctx, p)
        s.sendall(GREETING)
        read_method_reply(s)
        s.sendall(request("198.51.100.9", port))
        r = read_reply(s)
        s.close()
        check(r.rep == 0 and r.host == want[0] and (want[1] is None or r.port == want[1]),
              "port %d: BND %s:%d, expected %s" % (port, r.host, r.port, want))


@case("chain_parent_answers")
def chain_parent_answers(ctx):
    """The parent's answer about the target is the client's reply, and the parent stays in
    use: refused (SOCKS5 05), HTTP 403 -> 02, 502 -> 04, 504 -> 06. A parent that refuses our
    credentials is broken: the next one is used."""
    refused = ctx.tcp_server(fake_parent(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"))
    forbidden = ctx.tcp_server(fake_http_parent(b"HTTP/1.1 403 Forbidden"))
    badgw = ctx.tcp_server(fake_http_parent(b"HTTP/1.1 502 Bad Gateway"))
    slow = ctx.tcp_server(fake_http_parent(b"HTTP/1.0 504 Gateway Timeout"))
    wants = [ctx.tcp_server(fake_http_parent(b"HTTP/1.1 200 OK", want_auth=b"Basic dTpyaWdodA=="))
             for _ in range(2)]
    interim = ctx.tcp_server(fake_http_parent(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"))
    p = child(ctx,
              via_rule(["socks5://127.0.0.1:%d" % refused.port], "ports = [1];"),
              via_rule(["http://127.0.0.1:%d" % forbidden.port], "ports = [2];"),
              via_rule(["http://127.0.0.1:%d" % badgw.port], "ports = [3];"),
              via_rule(["http://127.0.0.1:%d" % slow.port], "ports = [4];"),
              via_rule(["http://u:wrong@127.0.0.1:%d" % wants[0].port,
                        "http://u:right@127.0.0.1:%d" % wants[1].port], "ports = [5];"),
              via_rule(["http://127.0.0.1:%d" % interim.port], "ports = [6];"))
    for port, want in ((1, 0x05), (2, 0x02), (3, 0x04), (4, 0x06)):
        rep, s = connect_rep(ctx, p, "198.51.100.9", port)
        check(rep == want, "port %d: REP 0x%02x, expected 0x%02x" % (port, rep, want))
        expect_close(s)
    check(counter(p, "ringsocks_via_parent_failures_total") == 0,
          "an answer about the target counted against the parent")
    rep, s = connect_rep(ctx, p, "198.51.100.9", 5)
    check(rep == 0, "wrong then right credentials: REP 0x%02x" % rep)
    s.sendall(b"x")
    check(recv_exact(s, 1, "echo") == b"x", "no echo through the second parent")
    check(counter(p, "ringsocks_via_parent_failures_total") == 1,
          "refused credentials did not count against the parent")
    # An interim 1xx response before the 200 is read past.
    rep, s = connect_rep(ctx, p, "198.51.100.9", 6)
    check(rep == 0, "a 100 Continue before the 200: REP 0x%02x" % rep)
    s.sendall(b"y")
    check(recv_exact(s, 1, "echo") == b"y", "no echo after an interim response")


def failing_parent(conn, peer):
    """Takes the greeting, then fails after a second: time for a reload in between."""
    recv_exact(conn, 3, "greeting")
    time.sleep(1.0)
    conn.close()


@case("chain_reload_between_parents")
def chain_reload_between_parents(ctx):
    """A reload while a tunnel's first parent is being tried: before the next parent the
    request is decided again under the new rules. Denied now: 02, and the second parent is
    never asked (its rule index would name another rule of the new file)."""
    from cases_control import sighup_reload, write_conf
    slow = ctx.tcp_server(failing_parent)
    good = ctx.proxy()
    echo = ctx.echo_server()
    rules = [via_rule(["socks5://127.0.0.1:%d" % slow.port, "socks5://127.0.0.1:%d" % good.port])]
    p, path = conf_proxy(ctx, rules_conf(*rules), name="child.conf")
    result = {}

    def ask():
        result["rep"], s = connect_rep(ctx, p, "127.0.0.1", echo.port)
        s.close()
    t = threading.Thread(target=ask)
    t.start()
    check(wait_until(lambda: slow.conns, 5), "the first parent was not tried")
    write_conf(ctx, rules_conf('{ action = "deny"; from = %s; }' % LOOPBACK, *rules), path=path)
    sighup_reload(p)
    t.join(10)
    check(result.get("rep") == 0x02, "after a reload that denies it: REP %r, expected 02" % result.get("rep"))
    check(counter(p, "ringsocks_via_tunnels_total") == 0, "the second parent carried it anyway")
    d = line_for(p, "127.0.0.1:%d" % echo.port)
    check(d.get("end") == "denied", "end=%s, expected denied" % d.get("end"))


@case("chain_refuses_bind_udp")
def chain_refuses_bind_udp(ctx):
    """A via rule carries CONNECT only: BIND and UDP ASSOCIATE it matches are refused (02),
    nothing leaves directly; a socks4 parent cannot carry a name or IPv6 (08)."""
    good = ctx.proxy()
    p = child(ctx, via_rule(["socks4://127.0.0.1:%d" % good.port]))
    for cmd, what in ((2, "BIND"), (3, "UDP ASSOCIATE")):
        s = open_proxy_socket(ctx, p)
        s.sendall(GREETING)
        read_method_reply(s)
        s.sendall(request("0.0.0.0", 0, cmd=cmd))
        r = read_reply(s)
        check(r.rep == 0x02, "%s under a via rule: REP 0x%02x, expected 02" % (what, r.rep))
        s.close()
    rep, s = connect_rep(ctx, p, "2001:db8::1", 80)
    check(rep == 0x08, "IPv6 through a socks4 parent: REP 0x%02x, expected 08" % rep)
    # No socket towards the parent at all (the rule's egress pool has no IPv4 address and no
    # fallback): the tunnel fails, and the parent is not blamed for it.
    p2 = child(ctx, via_rule(["socks5://127.0.0.1:%d" % good.port],
                             'egress = ["2001:db8::1"]; egress_fallback = false;'))
    rep, s = connect_rep(ctx, p2, "127.0.0.1", 80)
    s.close()
    d = line_for(p2, "127.0.0.1:80")
    check(rep != 0 and d.get("end") == "parent_failed" and d.get("parent") is None,
          "no socket to the parent: REP 0x%02x, log %r" % (rep, d))
    check(counter(p2, "ringsocks_via_parent_failures_total") == 0,
          "a parent was blamed for a socket we could not make")


def split_bad_parent(first, rest):
    """An HTTP parent whose reply starts well (first), then, in a later segment, is bad."""
    def handler(conn, peer):
        if read_http_request(conn) is None:
            return
        conn.sendall(first)
        time.sleep(0.3)
        conn.sendall(rest)
        time.sleep(2)
    return handler


@case("chain_reply_split_then_bad")
def chain_reply_split_then_bad(ctx):
    """A parent reply that arrives in pieces and then turns out malformed (not HTTP after all;
    a header longer than the bound) fails the parent; the bytes after it are never read into
    the proxy (under SAN, reading them overflowed the chain's buffer)."""
    junk = ctx.tcp_server(split_bad_parent(b"HTTP/1", b"x" * 3000))
    long = ctx.tcp_server(split_bad_parent(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 580,
                                           b"a" * 700 + b"\r\n\r\n" + b"b" * 2000))
    p = child(ctx, via_rule(["http://127.0.0.1:%d" % junk.port], "ports = [1];"),
              via_rule(["http://127.0.0.1:%d" % long.port], "ports = [2];"))
    for port in (1, 2):
        rep, s = connect_rep(ctx, p, "198.51.100.9", port)
        check(rep == 0x01, "port %d: REP 0x%02x, expected 01 (the parent failed)" % (port, rep))
        s.close()
    p.check_alive()
    check(counter(p, "ringsocks_via_parent_failures_total") == 2, "two broken parents not counted")


@case("chain_happy_eyeballs_mix")
def chain_happy_eyeballs_mix(ctx):
    """A name with two addresses: the first admitted direct (refused at once), the second by a
    via rule. The parent takes over while Happy Eyeballs' delay is still pending; the tunnel
    must outlive that delay (its completion once reached the relay and killed the tunnel)."""
    import harness
    need_option("--resolver")

    class Stub(harness.DNSStub):
        RECORDS = {("two.test", 1): [socket.inet_aton("127.0.0.2"), socket.inet_aton("127.0.0.1")]}
        NAMES = {"two.test"}
    dns = Stub()
    ctx.defer(dns.stop)
    parent = ctx.proxy()
    echo = ctx.echo_server()
    p = child(ctx, '{ action = "allow"; from = %s; to = ["127.0.0.2"]; }' % LOOPBACK,
              via_rule(["socks5://127.0.0.1:%d" % parent.port], 'to = ["127.0.0.1"];'),
              args=["--resolver", dns.spec, "--happy-eyeballs-delay", "400"])
    rep, s = connect_rep(ctx, p, "two.test", echo.port)
    check(rep == 0, "two.test: REP 0x%02x" % rep)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        s.sendall(b"tick")
        check(recv_exact(s, 4, "echo") == b"tick", "the tunnel's echo is wrong")
        time.sleep(0.1)
    s.close()
    d = line_for(p, "two.test:%d" % echo.port)
    check(d.get("end") == "done" and d.get("parent") == "127.0.0.1:%d" % parent.port,
          "the tunnel ended %s through %s" % (d.get("end"), d.get("parent")), str(d))


@case("chain_reload")
def chain_reload(ctx):
    """Reloads: a tunnel to a name a parent resolved is closed when close_denied_on_reload and
    the new rules deny the name; a rule whose parent is the proxy's own listener is refused
    at request time (no tunnel into itself); credentials refused under one rule do not make
    the same gateway skipped under another rule with the right ones."""
    from cases_control import sighup_reload, write_conf
    wants = ctx.tcp_server(fake_http_parent(b"HTTP/1.1 200 OK", want_auth=b"Basic dTpyaWdodA=="))
    other = ctx.proxy()
    echo = ctx.echo_server()
    rules = [via_rule(["http://u:wrong@127.0.0.1:%d" % wants.port], "ports = [1];"),
             via_rule(["http://u:right@127.0.0.1:%d" % wants.port,
                       "socks5://127.0.0.1:%d" % other.port], 'hosts = ["name.test"];')]
    p, path = conf_proxy(ctx, "close_denied_on_reload = true;\n" + rules_conf(*rules),
                         name="child.conf")
    rep, s = connect_rep(ctx, p, "198.51.100.9", 1)
    check(rep == 0x01, "wrong credentials: REP 0x%02x, expected 01" % rep)
    s.close()
    rep, s = connect_rep(ctx, p, "name.test", 7)
    check(rep == 0, "right credentials after wrong ones: REP 0x%02x" % rep)
    s.sendall(b"x")
    check(recv_exact(s, 1, "echo") == b"x", "no echo through the parent")
    check(wait_until(lambda: len(wants.conns) >= 2, 5), "the right credentials skipped the gateway")
    # The new rules deny the name: the open tunnel is closed.
    write_conf(ctx, "close_denied_on_reload = true;\n" + rules_conf(
        '{ action = "deny"; hosts = ["name.test"]; }', rules[0]), path=path)
    sighup_reload(p)
    expect_close(s, timeout=5, after="the reload that denies its name")
    check(wait_until(lambda: any(d.get("end") == "revoked" for d in access_lines(p)), 5),
          "no tunnel ended revoked", p.stderr()[-1500:])
    # A parent that is the proxy itself.
    write_conf(ctx, rules_conf(via_rule(["socks5://127.0.0.1:%d" % p.port])), path=path)
    sighup_reload(p)
    before = counter(p, "ringsocks_connections_accepted_total")
    rep, s = connect_rep(ctx, p, "127.0.0.1", echo.port)
    check(rep == 0x01, "through the proxy itself: REP 0x%02x, expected 01" % rep)
    s.close()
    accepted = counter(p, "ringsocks_connections_accepted_total") - before
    check(accepted == 1, "the request made the proxy accept %d connections from itself"
          % (accepted - 1))
    p.check_alive()
    check(counter(p, "ringsocks_via_tunnels_total") == 1, "a tunnel went through the proxy itself")
