"""
cases_happy.py - Happy Eyeballs (RFC 8305) for CONNECT, in a network namespace each
test makes for itself (harness.enter_netns): a name with an IPv6 address whose SYNs
vanish and an IPv4 address that answers.

The namespace: 192.0.2.1 on lo and 2001:db8:1::1/64 on a veth whose peer has no
address; 2001:db8:dead::/48 and 203.0.113.0/24 are routed through that veth to a
neighbour with a permanent entry that does not exist, so a SYN to 2001:db8:dead::1 or
203.0.113.1 leaves and nothing ever answers (a black hole, as a broken path looks).
The DNS stub answers he.test with AAAA 2001:db8:dead::1 and A 192.0.2.1 (IPv6 broken),
he4.test with A 203.0.113.1 and AAAA 2001:db8:1::1 (IPv4 broken).
"""

import socket
import time

from harness import (GREETING, Skip, case, check, echo_roundtrip, enter_netns, need_option,
                     parse_logfmt, read_method_reply, read_reply, request, wait_until)

HOLE = "2001:db8:dead::1"
V4 = "192.0.2.1"
HOLE4 = "203.0.113.1"
V6 = "2001:db8:1::1"


def blackhole_netns(ctx):
    """Enter a fresh namespace set up as the module docstring says; the DNS stub for he.test."""
    ip = enter_netns(ctx)
    ip("link", "add", "he0", "type", "veth", "peer", "name", "he1", skip_on_error=True)
    ip("link", "set", "he0", "up")
    ip("link", "set", "he1", "up")
    ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "he0", "nodad")
    ip("addr", "add", V4 + "/32", "dev", "lo")
    ip("-6", "neigh", "add", "2001:db8:1::ff", "lladdr", "02:00:00:00:00:01", "dev", "he0",
       "nud", "permanent")
    ip("-6", "route", "add", "2001:db8:dead::/48", "via", "2001:db8:1::ff", "dev", "he0")
    ip("addr", "add", "198.51.100.1/24", "dev", "he0")
    ip("neigh", "add", "198.51.100.254", "lladdr", "02:00:00:00:00:01", "dev", "he0", "nud",
       "permanent")
    ip("route", "add", "203.0.113.0/24", "via", "198.51.100.254", "dev", "he0")
    # The holes must be ones: a connect there neither succeeds nor fails for a while.
    for host in (HOLE, HOLE4):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.3)
        try:
            s.connect((host, 9))
            raise Skip("the black hole %s answered" % host)
        except socket.timeout:
            pass
        except OSError as e:
            raise Skip("the black hole %s failed at once: %s" % (host, e))
        finally:
            s.close()
    dns = ctx.dns_stub()
    dns.NAMES = {"he.test", "he4.test"}
    dns.RECORDS = {("he.test", 28): [socket.inet_pton(socket.AF_INET6, HOLE)],
                   ("he.test", 1): [socket.inet_pton(socket.AF_INET, V4)],
                   ("he4.test", 1): [socket.inet_pton(socket.AF_INET, HOLE4)],
                   ("he4.test", 28): [socket.inet_pton(socket.AF_INET6, V6)]}
    return dns


def timed_connect(ctx, p, port, name="he.test"):
    """CONNECT name:port; (seconds to the reply, reply, socket)."""
    s = ctx.connect(p.addr, 30)
    s.sendall(GREETING)
    check(read_method_reply(s) == b"\x05\x00", "method selection failed")
    t0 = time.monotonic()
    s.sendall(request(name, port))
    r = read_reply(s, "reply to CONNECT %s" % name)
    return time.monotonic() - t0, r, s


@case("happy_eyeballs_blackholed_ipv6", timeout=60)
def happy_eyeballs_blackholed_ipv6(ctx):
    """he.test is 2001:db8:dead::1 (SYNs vanish) and 192.0.2.1 (answers). IPv6 is tried
    first; after happy_eyeballs_delay (250 ms) the IPv4 attempt joins it and wins: the
    CONNECT succeeds over IPv4 within 2 s under connect_timeout 10, the tunnel works, and
    the access log names the IPv4 address. Without the delay (0: one at a time) the same
    CONNECT waits for connect_timeout and fails 0x06."""
    need_option("--happy-eyeballs-delay")
    dns = blackhole_netns(ctx)
    echo = ctx.echo_server(V4)
    log = ctx.path("access.log")
    p = ctx.proxy(args=["--resolver", dns.spec, "--connect-timeout", "10", "--access-log", log])
    took, r, s = timed_connect(ctx, p, echo.port)
    check(r.rep == 0, "CONNECT he.test: REP 0x%02x, expected 00" % r.rep)
    check(took < 2.0, "CONNECT he.test took %.2f s, expected under 2 s (IPv4 after 250 ms)"
          % took)
    check(took >= 0.2, "CONNECT he.test took %.3f s: IPv6 was not tried first for 250 ms" % took)
    echo_roundtrip(s, 1500)
    s.close()

    def logged():
        try:
            with open(log) as f:
                lines = [l for l in f.read().split("\n")[:-1] if l.strip()]
        except FileNotFoundError:
            return None
        return parse_logfmt(lines[0]) if lines else None
    rec = wait_until(logged, 5.0)
    check(rec is not None, "no access-log line for the tunnel")
    want = "%s:%d" % (V4, echo.port)
    check(rec.get("resolved") == want and rec.get("end") == "done",
          "access log: resolved=%s end=%s, expected resolved=%s end=done"
          % (rec.get("resolved"), rec.get("end"), want))

    # One attempt at a time: the hole holds the connect until connect_timeout.
    p2 = ctx.proxy(args=["--resolver", dns.spec, "--connect-timeout", "2",
                         "--happy-eyeballs-delay", "0"])
    took0, r0, s0 = timed_connect(ctx, p2, echo.port)
    s0.close()
    check(r0.rep == 6, "with happy_eyeballs_delay 0: REP 0x%02x, expected 06 (connect_timeout "
          "while IPv6 is tried)" % r0.rep)
    check(took0 >= 1.9, "with happy_eyeballs_delay 0 the reply came after %.2f s, expected "
          "connect_timeout (2 s)" % took0)
    print("happy_eyeballs_blackholed_ipv6: %.3f s with the delay, %.3f s (0x06) without"
          % (took, took0))


@case("happy_eyeballs_blackholed_ipv4", timeout=60)
def happy_eyeballs_blackholed_ipv4(ctx):
    """he4.test is 203.0.113.1 (SYNs vanish) and 2001:db8:1::1 (answers), and the
    resolver gives the A record first: IPv6 is still tried first (RFC 8305 section 4)
    and connects at once, and the delay that was armed beside it is cancelled without
    holding the reply (well under the 250 ms delay)."""
    need_option("--happy-eyeballs-delay")
    dns = blackhole_netns(ctx)
    echo = ctx.echo_server(V6)
    p = ctx.proxy(args=["--resolver", dns.spec, "--connect-timeout", "10"])
    took, r, s = timed_connect(ctx, p, echo.port, "he4.test")
    check(r.rep == 0, "CONNECT he4.test: REP 0x%02x, expected 00" % r.rep)
    check(took < 0.2, "CONNECT he4.test took %.3f s, expected at once over IPv6" % took)
    echo_roundtrip(s, 1500)
    s.close()
