"""
cases_transparent.py - listeners with mode = "transparent" (issue #14): connections
the kernel redirected to ringsocks (nftables redirect, read with SO_ORIGINAL_DST /
IP6T_SO_ORIGINAL_DST; tproxy, whose socket's own address is the destination) are
CONNECTs to their original destination, under the same rules, egress and access log.

The topology is netns.py's with a third namespace C (net.add_client()), a client
network behind the proxy namespace P, which does not forward: C reaches the target
namespace T only through ringsocks, once the ruleset the test loads into P sends C's
TCP to it. Checks: redirect over IPv4 and IPv6 with conf/transparent.nft as shipped (and
the same connect failing with the proxy stopped and without the ruleset), tproxy over
both families, a start without the privilege for IP_TRANSPARENT (a warning, redirect
only), a statically linked client, this host's own programs through the ruleset's output
chain, a deny rule resetting the client with proto=transparent in the access log, a
connection to the listener itself refused as a loop, GET /connections, an upgrade
that keeps the listener transparent, and the static client through a parent proxy (rule
key via): a socksifier for a whole namespace.

Runs in the network-namespace runner with cases_egress.py (tests/run.sh).
"""

import json
import os
import resource
import shutil
import socket
import subprocess

from harness import (CONFIG, Fail, Skip, admin_request, case, check, metric, parse_logfmt, parse_prometheus,
                     wait_until)
from netns import C_V4, C_V6, P_C4, P_C6, P_V4, P_V6, T4, T6, EgressNet

REDIRECT_PORT, TPROXY_PORT = 10800, 10801
TPROXY_MARK, TPROXY_TABLE = 7, 107

ALLOW_ALL = 'rules = ( { action = "allow"; } );\n'

# The proxy's own SOCKS listener first (what the harness waits for and talks to), then the
# transparent ones, both families.
LISTEN = ['"127.0.0.1:0"'] + ['{ address = "%s:%d"; mode = "transparent"; }' % (a, port)
                             for port in (REDIRECT_PORT, TPROXY_PORT) for a in ("0.0.0.0", "[::]")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shipped_ruleset():
    """conf/transparent.nft as shipped (redirect, interface "vethc", port 1090), with our
    redirect port: the ruleset the documentation gives is the one tested."""
    with open(os.path.join(REPO, "conf", "transparent.nft")) as f:
        text = f.read()
    check(":1090" in text and '"vethc"' in text, "conf/transparent.nft no longer redirects vethc to :1090")
    return text.replace(":1090", ":%d" % REDIRECT_PORT)



# The tproxy chain of conf/transparent.nft (commented out there: one way at a time).
TPROXY_RULESET = """
table inet rsx_tproxy {
    chain prerouting {
        type filter hook prerouting priority mangle; policy accept;
        iifname "vethc" meta nfproto ipv4 meta l4proto tcp meta mark set %d tproxy ip to :%d accept
        iifname "vethc" meta nfproto ipv6 meta l4proto tcp meta mark set %d tproxy ip6 to :%d accept
    }
}
""" % (TPROXY_MARK, TPROXY_PORT, TPROXY_MARK, TPROXY_PORT)


# Both at once, one family each: redirect (NAT) for IPv4, tproxy for IPv6.
REDIRECT_V4_TPROXY_V6 = """
table inet rsx_both {
    chain nat_prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "vethc" meta nfproto ipv4 meta l4proto tcp redirect to :%d
    }
    chain mangle_prerouting {
        type filter hook prerouting priority mangle; policy accept;
        iifname "vethc" meta nfproto ipv6 meta l4proto tcp meta mark set %d tproxy ip6 to :%d accept
    }
}
""" % (REDIRECT_PORT, TPROXY_MARK, TPROXY_PORT)


def need_nft():
    if shutil.which("nft") is None:
        raise Skip("nftables (nft) is not installed: tools/install-deps.sh test installs it")


def setup(ctx, conf=ALLOW_ALL, ruleset="shipped", start=True):
    """EgressNet with the client namespace, an echo service on T4 and T6, the ruleset
    loaded in P ("shipped": conf/transparent.nft's redirect; None: none) and ringsocks
    started (start False: not yet)."""
    need_nft()
    if ruleset == "shipped":
        ruleset = shipped_ruleset()
    net = EgressNet(ctx)
    net.add_client()
    net.echo4 = net.target.add_echo(T4)
    net.echo6 = net.target.add_echo(T6)
    if ruleset:
        net.nft(ruleset)
    net.p = start_proxy(net, conf) if start else None
    return net


def start_proxy(net, conf=ALLOW_ALL, extra_listen=()):
    """ringsocks in P with LISTEN and extra_listen (listener texts of the file)."""
    listen = LISTEN + list(extra_listen)
    return net.proxy("listen = ( %s );\n" % ",\n  ".join(listen) + conf, listen=(), n_listen=len(listen))


def _talk(dst, msg, timeout):
    """(Inside C.) Connect to dst, send msg and half-close (msg empty: neither, so that
    no unread byte of ours makes the proxy's close a reset anyway), read to EOF. Returns
    ("ok", reply, local address) or ("error", errno name, local address or None)."""
    fam = socket.AF_INET6 if ":" in dst[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    local = None
    try:
        s.connect(tuple(dst[:2]))
        local = s.getsockname()[:2]
        if msg:
            s.sendall(msg)
            s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                return "ok", got, local
            got += b
    except socket.timeout:
        return "error", "timeout", local
    except OSError as e:
        return "error", e.__class__.__name__ if not e.errno else errno_name(e.errno), local
    finally:
        s.close()


def errno_name(n):
    import errno
    return errno.errorcode.get(n, str(n))


def talk(net, dst, msg=b"hello through the kernel's redirect\n", timeout=5):
    return net.C.call(_talk, tuple(dst[:2]), msg, timeout)


def echo_ok(net, dst, what, msg=b"hello through the kernel's redirect\n"):
    kind, got, local = talk(net, dst, msg)
    check(kind == "ok", "%s: connect to %s:%d from the client namespace failed: %s" % (what, dst[0], dst[1], got))
    check(got == msg, "%s: the echo through ringsocks came back as %r, expected %r" % (what, got, msg))
    return local


def reset_or_refused(net, dst, what):
    """The client's connect succeeds (the kernel accepted it for ringsocks) and it is then
    reset, or the connect itself is refused: never a clean EOF, never the target's echo.
    The client sends nothing: a close with our bytes unread would be a reset by itself."""
    kind, got, _ = talk(net, dst, msg=b"")
    check(kind == "error" and got in ("ECONNRESET", "ECONNREFUSED", "EPIPE"),
          "%s: expected a reset or refused connection, got %s %r" % (what, kind, got))
    return got


def access_lines(p):
    out = []
    for line in p.stderr().splitlines():
        if line.startswith("time=") and " cmd=" in line:
            out.append(parse_logfmt(line))
    return out


def wait_lines(p, n, timeout=10):
    return wait_until(lambda: (lambda l: l if len(l) >= n else None)(access_lines(p)), timeout) or access_lines(p)


def hostport(h, port):
    return "[%s]:%d" % (h, port) if ":" in h else "%s:%d" % (h, port)


def metrics_in_p(net):
    """The proxy's metrics, fetched from inside P (its admin endpoint is P's loopback)."""
    def get():
        st, body, _ = admin_request(net.p, "GET", "/metrics")
        check(st == 200, "GET /metrics: %d" % st)
        return parse_prometheus(body)
    return net.P.call(get)


# -------------------------------------------------------------------- redirect

def redirect_case(ctx, fam):
    echo, client, proxy_src = ((lambda n: n.echo4), C_V4, P_V4) if fam == 4 else ((lambda n: n.echo6), C_V6, P_V6)
    net = setup(ctx, ruleset=None, start=False)
    dst = echo(net)
    # Without ringsocks and without the ruleset P does not forward: no way to the target.
    kind, got, _ = talk(net, dst, timeout=3)
    check(kind == "error", "without ringsocks the client namespace reached %s:%d (%r): P forwards?"
          % (dst[0], dst[1], got))
    net.nft(shipped_ruleset())
    net.p = start_proxy(net)
    msg = b"x" * 100000 + b" - IPv%d redirect, both ways\n" % fam
    local = echo_ok(net, dst, "IPv%d redirect" % fam, msg)
    srcs = net.target.echo_sources(dst[1])
    check(len(srcs) == 1 and srcs[0][0] == proxy_src,
          "the target saw %r, expected one connection from the proxy's %s" % (srcs, proxy_src))
    lines = wait_lines(net.p, 1)
    check(len(lines) == 1, "%d access-log lines, expected 1: %r" % (len(lines), lines))
    ln = lines[0]
    want = {"proto": "transparent", "cmd": "connect", "client": hostport(client, local[1]),
            "dest": hostport(dst[0], dst[1]), "resolved": hostport(dst[0], dst[1]), "end": "done",
            "rep": "0", "up": str(len(msg)), "down": str(len(msg)), "user": "-"}
    for k, v in want.items():
        check(ln.get(k) == v, "access log %s=%r, expected %r (line %r)" % (k, ln.get(k), v, ln))
    # With ringsocks stopped the same connect is refused: it was ringsocks that carried it.
    net.p.stop()
    kind, got, _ = talk(net, dst, timeout=3)
    check(kind == "error", "with ringsocks stopped the client still reached the target (%r)" % (got,))
    check(len(net.target.echo_sources(dst[1])) == 1, "the target saw a connection with ringsocks stopped")


@case("transparent_redirect_v4")
def transparent_redirect_v4(ctx):
    """nftables redirect of the client namespace's TCP to a transparent listener: the
    client connects to the target's IPv4 address, ringsocks reads SO_ORIGINAL_DST and
    relays 100 kB each way; the target sees the proxy's address; the access log says
    proto=transparent with the real client. Without ringsocks the connect fails."""
    redirect_case(ctx, 4)


@case("transparent_redirect_v6")
def transparent_redirect_v6(ctx):
    """The same over IPv6 (IP6T_SO_ORIGINAL_DST)."""
    redirect_case(ctx, 6)


# -------------------------------------------------------------------- tproxy

def tproxy_routes(net):
    P = net.P
    P.ip("rule", "add", "fwmark", TPROXY_MARK, "lookup", TPROXY_TABLE)
    P.ip("route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", TPROXY_TABLE)
    P.ip("-6", "rule", "add", "fwmark", TPROXY_MARK, "lookup", TPROXY_TABLE)
    P.ip("-6", "route", "add", "local", "::/0", "dev", "lo", "table", TPROXY_TABLE)


@case("transparent_tproxy")
def transparent_tproxy(ctx):
    """nftables tproxy (mark, ip rule to a local route table) to a transparent listener
    with IP_TRANSPARENT: nothing is NAT'ed, the accepted socket's own address is the
    original destination. Both families relay; the access log names the target. A SOCKS
    listener with egress = "same" on the target's port does not make the tunnel leave from
    the target's own address (which the accepted socket has, and could pass for it)."""
    net = setup(ctx, ruleset=TPROXY_RULESET, start=False)
    tproxy_routes(net)
    net.p = start_proxy(net, extra_listen=['{ address = "0.0.0.0:%d"; egress = "same"; }' % net.echo4[1],
                                           '{ address = "[::]:%d"; egress = "same"; }' % net.echo6[1]])
    for dst, client, src in ((net.echo4, C_V4, P_V4), (net.echo6, C_V6, P_V6)):
        msg = b"tproxy to %s\n" % dst[0].encode()
        local = echo_ok(net, dst, "tproxy to %s" % dst[0], msg)
        srcs = net.target.echo_sources(dst[1])
        check(srcs and srcs[-1][0] == src, "the target saw %r, expected the proxy's %s" % (srcs, src))
        mine = lambda: [l for l in access_lines(net.p) if l.get("client") == hostport(client, local[1])]
        lines = wait_until(mine, 10) or mine()
        check(len(lines) == 1, "no access-log line for the client %s: %r" % (hostport(client, local[1]),
                                                                           access_lines(net.p)))
        check(lines[0].get("proto") == "transparent" and lines[0].get("dest") == hostport(dst[0], dst[1]),
              "access log %r, expected proto=transparent dest=%s" % (lines[0], hostport(dst[0], dst[1])))
    # Without the listener (ringsocks stopped) tproxy finds no socket: nothing gets through.
    net.p.stop()
    kind, got, _ = talk(net, net.echo4, timeout=3)
    check(kind == "error", "tproxy with ringsocks stopped still reached the target (%r)" % (got,))


@case("transparent_without_privilege")
def transparent_without_privilege(ctx):
    """Started without CAP_NET_ADMIN and CAP_NET_RAW (setpriv drops them from the bounding
    set), ringsocks cannot set IP_TRANSPARENT: it says so once per listener, naming it, and
    serves on: redirect still reaches the listener, tproxy does not."""
    net = setup(ctx, ruleset=REDIRECT_V4_TPROXY_V6, start=False)
    tproxy_routes(net)
    path = ctx.path("ringsocks.conf")
    with open(path, "w") as f:
        f.write("listen = ( %s );\n" % ",\n  ".join(LISTEN) + ALLOW_ALL)
    net.p = ctx.proxy(listen=(), args=["-c", path, "--connect-timeout", "3"], wait_listen=False,
                      wrap=net.P.wrap() + ["setpriv", "--bounding-set=-net_admin,-net_raw"])
    net.p.listen = [None] * len(LISTEN)
    net.p.wait_listening()
    warned = [l for l in net.p.stderr().splitlines() if "cannot set IP_TRANSPARENT" in l]
    want = ["0.0.0.0:%d" % REDIRECT_PORT, "[::]:%d" % REDIRECT_PORT, "0.0.0.0:%d" % TPROXY_PORT,
            "[::]:%d" % TPROXY_PORT]
    check(len(warned) == 4 and all(any(w in l for l in warned) for w in want),
          "expected one IP_TRANSPARENT warning per transparent listener (%s), got %r" % (want, warned))
    echo_ok(net, net.echo4, "redirect without the privilege")
    kind, got, _ = talk(net, net.echo6, timeout=3)
    check(kind == "error", "tproxy reached a listener without IPV6_TRANSPARENT (%r)" % (got,))


# -------------------------------------------------------------------- a static client

def static_client():
    path = os.path.join(os.path.dirname(os.path.abspath(CONFIG.binary)), "tests", "echo-client-static")
    if not os.path.exists(path):
        raise Fail("%s is missing: make %s builds it (make test does)" % (path, os.path.relpath(path)))
    return path


def run_static(net, binary, dst, msg):
    """The static client in C to dst with msg: the completed process."""
    return subprocess.run(net.C.wrap() + [binary, dst[0], str(dst[1]), msg], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)


def static_echo_ok(net, binary, what):
    """The static client echoes through to both targets (IPv4 and IPv6)."""
    for dst in (net.echo4, net.echo6):
        msg = "%s %s" % (what, dst[0])
        r = run_static(net, binary, dst, msg)
        check(r.returncode == 0 and r.stdout.decode() == msg,
              "the static client to %s:%d (%s): exit %d, out %r, err %r"
              % (dst[0], dst[1], what, r.returncode, r.stdout, r.stderr.decode().strip()))


@case("transparent_static_client")
def transparent_static_client(ctx):
    """A statically linked C client (tests/tools/echo_client.c: no libc.so, so no
    LD_PRELOAD socksifier could reach it) in the client namespace reaches the target over
    IPv4 and IPv6 only through the redirect to ringsocks."""
    binary = static_client()
    out = subprocess.run(["file", "-L", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=20).stdout.decode()
    check("statically linked" in out, "file says %r: not a static binary" % out.strip())
    ldd = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    check("not a dynamic executable" in ldd.stdout.decode(), "ldd says %r" % ldd.stdout.decode().strip())
    net = setup(ctx)
    static_echo_ok(net, binary, "static")
    lines = wait_lines(net.p, 2)
    check([l.get("proto") for l in lines] == ["transparent"] * 2, "access log %r" % lines)
    # And without ringsocks the same binary cannot get there.
    net.p.stop()
    r = run_static(net, binary, net.echo4, "x")
    check(r.returncode == 3, "the static client with ringsocks stopped: exit %d (%r), expected 3"
          % (r.returncode, r.stderr.decode().strip()))


def shipped_host_ruleset():
    """conf/transparent.nft with its output chain (this host's own programs) uncommented,
    ringsocks' exemption by user made root's (the proxy under test runs as root), our port."""
    text = shipped_ruleset()
    start = text.index("    # chain output_nat {")
    end = text.index("    # }", start) + len("    # }")
    block = "\n".join(l.replace("    # ", "    ", 1) for l in text[start:end].splitlines())
    check('meta skuid "ringsocks" return' in block, "the output chain no longer exempts ringsocks by user")
    return text[:start] + block.replace('meta skuid "ringsocks"', "meta skuid 0") + text[end:]


@case("transparent_host")
def transparent_host(ctx):
    """The whole-host ruleset of conf/transparent.nft (the output hook): the static client,
    run in the proxy's own namespace as nobody, reaches the target over IPv4 and IPv6
    through ringsocks, whose own connections the ruleset exempts by user (else each tunnel
    would be redirected into another). The access log names the host's own address as the
    client."""
    binary = static_client()
    net = setup(ctx, ruleset=None)
    net.nft(shipped_host_ruleset())
    for dst in (net.echo4, net.echo6):
        msg = "host %s" % dst[0]
        r = subprocess.run(net.P.wrap() + ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                           binary, dst[0], str(dst[1]), msg],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        check(r.returncode == 0 and r.stdout.decode() == msg, "the static client as nobody to %s:%d: exit %d, "
              "out %r, err %r" % (dst[0], dst[1], r.returncode, r.stdout, r.stderr.decode().strip()))
    lines = wait_lines(net.p, 2)
    check(len(lines) == 2 and all(l.get("proto") == "transparent" and l.get("end") == "done" for l in lines),
          "access log %r, expected 2 transparent tunnels (and no nested one)" % lines)
    check(sorted(l["client"].rsplit(":", 1)[0].strip("[]") for l in lines) == sorted([P_V4, P_V6]),
          "clients %r, expected the host's own %s and %s" % ([l["client"] for l in lines], P_V4, P_V6))


# -------------------------------------------------------------------- rules, loops

@case("transparent_rules")
def transparent_rules(ctx):
    """Rules apply as to a SOCKS CONNECT: a deny rule on the target's IPv4 address and
    port resets the client (ECONNRESET, not an EOF), logged proto=transparent end=denied
    rep=2 with the real client and the target; a rule on the client's network decides
    by the real client; the other port of the target still goes through."""
    conf = ('rules = ( { action = "deny"; to = ["%s"]; ports = ["%%d"]; },\n'
            '          { action = "deny"; from = ["%s/128"]; },\n'
            '          { action = "allow"; from = ["192.0.2.128/26", "2001:db8:c0::/64"]; } );\n'
            % (T4, C_V6))
    net = setup(ctx, start=False)
    net.p = start_proxy(net, conf % net.echo4[1])
    got = reset_or_refused(net, net.echo4, "a denied target")
    check(got in ("ECONNRESET", "EPIPE"), "a denied target: %s, expected ECONNRESET (the connect itself "
          "succeeds: the kernel accepted it for ringsocks)" % got)
    reset_or_refused(net, net.echo6, "a denied client (IPv6)")
    check(net.target.echo_sources() == [], "the target saw %r" % net.target.echo_sources())
    lines = wait_lines(net.p, 2)
    d4 = [l for l in lines if l.get("dest") == hostport(net.echo4[0], net.echo4[1])]
    check(len(d4) == 1, "no access-log line for the denied target: %r" % lines)
    want = {"proto": "transparent", "end": "denied", "rep": "2", "rule": "1", "up": "0", "down": "0"}
    for k, v in want.items():
        check(d4[0].get(k) == v, "denied line %s=%r, expected %r: %r" % (k, d4[0].get(k), v, d4[0]))
    check(d4[0].get("client", "").startswith(C_V4 + ":"), "denied line's client %r, expected %s:PORT"
          % (d4[0].get("client"), C_V4))
    d6 = [l for l in lines if l.get("client", "").startswith("[%s]:" % C_V6)]
    check(len(d6) == 1 and d6[0].get("end") == "denied" and d6[0].get("rule") == "2",
          "the IPv6 client's line: %r" % d6)
    # Another port of the same target is not denied.
    other = net.target.add_echo(T4)
    echo_ok(net, other, "the target's other port")


@case("transparent_loop")
def transparent_loop(ctx):
    """A client that reaches the transparent listener's own address (the destination is
    the proxy itself: with the redirect ruleset it stays that after NAT) is a loop: reset,
    never relayed to ringsocks itself, logged end=loop and counted in
    ringsocks_connections_ended_total{reason="loop"}, even with a rule that allows it."""
    conf = 'rules = ( { action = "allow"; to = ["%s", "%s"]; }, { action = "allow"; } );\n' % (P_C4, P_C6)
    net = setup(ctx, conf=conf)
    for dst in ((P_C4, REDIRECT_PORT), (P_C6, REDIRECT_PORT)):
        reset_or_refused(net, dst, "a connection to the listener itself (%s)" % hostport(*dst))
    lines = wait_lines(net.p, 2)
    check(len(lines) == 2, "%d access-log lines, expected 2 (no nested tunnel): %r" % (len(lines), lines))
    for dst in ((P_C4, REDIRECT_PORT), (P_C6, REDIRECT_PORT)):
        # The shards write their lines in their own order: found by destination.
        ln = next((l for l in lines if l.get("dest") == hostport(*dst)), {})
        check(ln.get("end") == "loop" and ln.get("proto") == "transparent",
              "access log %r, expected end=loop proto=transparent dest=%s" % (lines, hostport(*dst)))
    m = metrics_in_p(net)
    check(metric(m, "ringsocks_connections_ended_total", reason="loop") == 2,
          "ringsocks_connections_ended_total{reason=\"loop\"} is %r, expected 2"
          % metric(m, "ringsocks_connections_ended_total", reason="loop"))
    # The proxy is still fine: a real destination goes through.
    echo_ok(net, net.echo4, "after the loops")


def loop_flood(ctx, n, half_close):
    """n transparent clients wait for a handshake context (one shard, handshake_slots = 1,
    held by silent SOCKS clients) and are loops: once the contexts free up, each waiter
    starts as a transparent connection (not as a SOCKS client whose bytes are read), is
    reset, and hands its context to the next. half_close: each sends a byte and shuts its
    side first, which fires and spends its hang-up watch, so nothing of it is in flight
    and its reset frees it at once (this once nested each waiter's start inside the
    previous one's release: 12,000 on a 512 KiB stack killed the proxy)."""
    net = setup(ctx, start=False)
    old = resource.getrlimit(resource.RLIMIT_STACK)
    resource.setrlimit(resource.RLIMIT_STACK, (512 << 10, old[1]))
    try:
        listen = LISTEN
        net.p = net.proxy("listen = ( %s );\n" % ",\n  ".join(listen) + ALLOW_ALL +
                          "handshake_slots = 1;\nclient_max_handshakes = 0;\nhandshake_timeout = 60;\n"
                          "max_conns = 18000;\n", args=["--shards", "1"], listen=(), n_listen=len(listen))
    finally:
        resource.setrlimit(resource.RLIMIT_STACK, old)
    holders = []
    for _ in range(4):
        holders.append(net.P.call(socket.create_connection, net.p.addr, 5))

    def flood():
        out = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(20)
            s.connect((P_C4, REDIRECT_PORT))
            if half_close:
                s.sendall(b"x")
                s.shutdown(socket.SHUT_WR)
            out.append(s)
        return out
    socks = net.C.call(flood, timeout=90)
    try:
        # Every one accepted and waiting (not yet answered): then free the contexts.
        def waiting():
            m = metrics_in_p(net)
            return (metric(m, "ringsocks_handshake_waits_total") or 0) >= n
        check(wait_until(waiting, 30), "the flood did not all wait for a handshake context")
        for h in holders:
            h.close()

        def outcome():
            reset = other = 0
            for s in socks:
                try:
                    s.recv(16)
                    other += 1  # bytes or an EOF: not the reset a refused client gets
                except ConnectionResetError:
                    reset += 1
                except OSError:
                    other += 1
            return reset, other
        reset, other = net.C.call(outcome, timeout=90)
        check(reset == n, "%d of %d waiting loop clients were reset (%d otherwise)" % (reset, n, other))
    finally:
        for s in socks:
            s.close()
    net.p.check_alive()
    m = metrics_in_p(net)
    check(metric(m, "ringsocks_connections_ended_total", reason="loop") == n,
          "loops counted: %r, expected %d" % (metric(m, "ringsocks_connections_ended_total", reason="loop"), n))
    echo_ok(net, net.echo4, "after the flood")


@case("transparent_loop_flood", timeout=120)
def transparent_loop_flood(ctx):
    """4,000 transparent loop clients wait for a context, then are reset one by one."""
    loop_flood(ctx, 4000, False)


@case("transparent_loop_flood_halfclosed", timeout=150)
def transparent_loop_flood_halfclosed(ctx):
    """The same with clients that half-closed while they waited: 12,000 of them on a shard
    with a 512 KiB stack."""
    loop_flood(ctx, 12000, True)


@case("transparent_connections")
def transparent_connections(ctx):
    """GET /connections shows a transparent tunnel with proto "transparent", the real
    client and the original destination, while it is open."""
    net = setup(ctx)

    def hold():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(net.echo4)
        s.sendall(b"ping\n")
        check(s.recv(16) == b"ping\n", "no echo")
        return s
    s = net.C.call(hold)
    try:
        def conns():
            st, body, _ = admin_request(net.p, "GET", "/connections")
            check(st == 200, "GET /connections: %d %s" % (st, body))
            return json.loads(body)["connections"]
        cs = [c for c in net.P.call(conns) if c.get("proto") == "transparent"]
        check(len(cs) == 1, "GET /connections: %r, expected one transparent tunnel" % cs)
        c = cs[0]
        want = {"state": "relay", "cmd": "connect", "user": None, "client": hostport(C_V4, s.getsockname()[1]),
                "dest": hostport(net.echo4[0], net.echo4[1]), "bytes_up": 5, "bytes_down": 5}
        for k, v in want.items():
            check(c.get(k) == v, "connection %s=%r, expected %r: %r" % (k, c.get(k), v, c))
        check((c.get("egress") or "").startswith(P_V4 + ":"), "egress %r" % c.get("egress"))
    finally:
        s.close()


# -------------------------------------------------------------------- upgrade

@case("transparent_upgrade", timeout=90)
def transparent_upgrade(ctx):
    """An upgrade (SIGUSR2: the listeners handed to a new process by address) keeps the
    transparent listeners transparent: IPv4 by redirect and IPv6 by tproxy (which finds
    only sockets with IPV6_TRANSPARENT) still go through, now by the new process."""
    from cases_upgrade import need_upgrade, upgrade_once, wait_gone
    need_upgrade()
    net = setup(ctx, ruleset=REDIRECT_V4_TPROXY_V6)
    tproxy_routes(net)
    old = net.p.proc.pid
    net.p.exit_expected = True  # it hands over and drains
    for dst in (net.echo4, net.echo6):
        echo_ok(net, dst, "before the upgrade, to %s" % dst[0])
    new = upgrade_once(ctx, net.p, old)
    wait_gone(old, 15, "the upgraded-from process")
    for dst in (net.echo4, net.echo6):
        echo_ok(net, dst, "after the upgrade, to %s" % dst[0])
    lines = wait_lines(net.p, 4)
    check(len(lines) == 4 and all(l.get("proto") == "transparent" for l in lines),
          "access log %r, expected 4 transparent tunnels" % lines)
    check(new != old, "no new process")


# ------------------------------------------------------------------ with a parent proxy

PARENT_PORT = 10900


@case("transparent_via_parent")
def transparent_via_parent(ctx):
    """Transparent listener and upstream chaining together: a socksifier for a whole
    namespace. The statically linked client in C connects to the target; the redirect
    brings it to ringsocks, whose rule sends it through a parent ringsocks (SOCKS5, with a
    password) to the target. The target sees the parent's connection, not the client's."""
    from cases_auth import ALICE
    from harness import make_hash, write_users
    binary = static_client()
    net = setup(ctx, start=False)
    users = write_users(ctx, ["%s:%s" % (ALICE[0], make_hash(ALICE[1]))], "parent.users")
    parent = net.proxy('rules = ( { action = "allow"; } );\n', name="parent.conf",
                       listen=("127.0.0.1:%d" % PARENT_PORT,),
                       args=["--auth", "password", "--users", users])
    net.p = start_proxy(net, 'rules = ( { action = "allow"; via = ["socks5://%s:%s@127.0.0.1:%d"]; } );\n'
                        % (ALICE[0], ALICE[1], PARENT_PORT))
    static_echo_ok(net, binary, "static through a parent")
    lines = wait_lines(net.p, 2)
    for ln in lines:
        check(ln.get("proto") == "transparent" and ln.get("parent") == "127.0.0.1:%d" % PARENT_PORT
              and ln.get("end") == "done", "the chaining proxy's access log: %r" % ln)
    plines = wait_lines(parent, 2)
    dests = sorted(ln.get("dest") for ln in plines)
    want = sorted(hostport(d[0], d[1]) for d in (net.echo4, net.echo6))
    check(dests == want and all(ln.get("user") == ALICE[0] for ln in plines),
          "the parent's access log: %r, expected tunnels to %r as %s" % (plines, want, ALICE[0]))


@case("transparent_nonlocal_bind")
def transparent_nonlocal_bind(ctx):
    """With ip_nonlocal_bind = 1 (common on tproxy, keepalived and HAProxy hosts) every address
    binds, so a bind() test called every destination local: a client's connection to a remote
    service whose port a wildcard SOCKS listener of ours also uses was reset as a loop. The
    route lookup knows it is remote."""
    net = setup(ctx, start=False)
    net.P.sysctl("net.ipv4.ip_nonlocal_bind", 1)
    net.p = start_proxy(net, extra_listen=['"0.0.0.0:%d"' % net.echo4[1]])
    echo_ok(net, net.echo4, "to a remote port that a wildcard listener of ours shares")
    lines = wait_lines(net.p, 1)
    check(lines and lines[0].get("end") == "done", "access log %r" % lines)


@case("transparent_auth_password")
def transparent_auth_password(ctx):
    """Under auth = "password" a transparent listener's clients cannot authenticate, so the
    rules alone would admit them: the configuration is refused unless the listener says
    auth = "none"."""
    from cases_auth import ALICE
    from cases_control import run_binary, write_conf
    from harness import make_hash, write_users
    users = write_users(ctx, ["%s:%s" % (ALICE[0], make_hash(ALICE[1]))])
    text = ('listen = ( "127.0.0.1:0", { address = "127.0.0.1:%d"; mode = "transparent";%s } );\n'
            'auth = "password";\nusers = "%s";\n')
    path = write_conf(ctx, text % (REDIRECT_PORT, "", users))
    r = run_binary(ctx, ["-t", "-c", path])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode != 0 and 'mode = "transparent" under auth = "password"' in out,
          "a transparent listener under auth = password was accepted: exit %d, %r" % (r.returncode, out))
    path = write_conf(ctx, text % (REDIRECT_PORT, ' auth = "none";', users))
    r = run_binary(ctx, ["-t", "-c", path])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode == 0, "with auth = \"none\" on the listener: exit %d, %r" % (r.returncode, out))


@case("transparent_wait_timeout_reset", timeout=60)
def transparent_wait_timeout_reset(ctx):
    """A transparent client whose handshake_timeout runs out while it waits for a context is
    reset, not closed with a FIN: a program must never take a tunnel that never was for
    one that ended cleanly."""
    net = setup(ctx, start=False)
    net.p = net.proxy("listen = ( %s );\n" % ",\n  ".join(LISTEN) + ALLOW_ALL +
                      "handshake_slots = 1;\nclient_max_handshakes = 0;\nhandshake_timeout = 2;\n",
                      args=["--shards", "1", "--connect-timeout", "20"], listen=(), n_listen=len(LISTEN))
    # The one context: a tunnel whose target drops its SYNs (held for connect_timeout).
    net.nft("table inet rsx_drop {\n chain input {\n  type filter hook input priority 0; "
            "policy accept;\n  tcp dport 9 drop\n }\n}\n", ns=net.T)

    def hold():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect((T4, 9))
        return s
    holder = net.C.call(hold)
    try:
        check(wait_until(lambda: (metric(metrics_in_p(net), "ringsocks_connections_open") or 0) >= 1, 5),
              "the holder's tunnel did not start")
        kind, got, _ = talk(net, net.echo4, msg=b"", timeout=10)
        check(kind == "error" and got == "ECONNRESET",
              "a waiter past handshake_timeout got %s %r, expected a reset" % (kind, got))
    finally:
        holder.close()
    lines = wait_lines(net.p, 1)
    check(any(l.get("end") == "handshake_timeout" and l.get("proto") == "transparent" for l in lines),
          "no transparent handshake_timeout line: %r" % lines)
