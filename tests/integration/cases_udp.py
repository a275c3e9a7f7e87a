"""
cases_udp.py - UDP ASSOCIATE: datagrams with the RFC 1928 header to UDP echo
servers on 127.0.0.1 and ::1, by address and by name (DNS stub, localhost);
large datagrams; what must be dropped (other sources, FRAG != 0, malformed
headers); the association's life (ends with the TCP connection and after idle_timeout
without a datagram); who may send (the control connection's address unless a
rule says udp_source = "any"); memory per association; --udp-advertise,
--udp-ports; malformed requests.
"""

import os
import re
import socket
import time

from harness import (Fail, case, check, expect_close, hexb, ipv6_available, make_hash, need_ipv6, need_option,
                     need_ringsocks, parse_udp, read_reply, read_reply_rest, recv_exact, request, socks5_command,
                     socks5_open, tail, udp_exchange, udp_expect_silence, udp_header, wait_until, write_users)


def associate(ctx, p, dst=("0.0.0.0", 0), auth=None, expect_host="127.0.0.1"):
    """UDP ASSOCIATE; returns (tcp control socket, relay address)."""
    s, r = socks5_command(ctx, p, 3, dst[0], dst[1], auth=auth, what="UDP ASSOCIATE reply")
    if expect_host is not None:
        check(r.host == expect_host, "UDP ASSOCIATE reply BND.ADDR %s, expected %s (%s)"
              % (r.host, expect_host, hexb(r.raw)))
    check(r.port != 0, "UDP ASSOCIATE reply BND.PORT 0 (%s)" % hexb(r.raw))
    return s, (r.host, r.port)


def echo_via(sock, relay, echo_host, echo_port, payload, want_host=None, want_atyp=None, timeout=3.0):
    host, port, atyp, data = udp_exchange(sock, relay, echo_host, echo_port, payload, timeout)
    want_host = want_host or echo_host
    check((host, port) == (want_host, echo_port),
          "reply header names %s:%d, expected the echo server %s:%d" % (host, port, want_host, echo_port))
    if want_atyp is not None:
        check(atyp == want_atyp, "reply header ATYP %02x, expected %02x" % (atyp, want_atyp))
    check(data == payload, "reply payload (%d bytes) differs from the %d bytes sent" % (len(data), len(payload)))


def still_works(cli, relay, echo, what):
    try:
        echo_via(cli, relay, "127.0.0.1", echo.port, b"still there? " + os.urandom(8))
    except Fail as e:
        raise Fail("the association stopped working %s: %s" % (what, e))


def udp_collect(sock, n, timeout):
    """Up to n datagrams, each arriving within timeout s of the one before."""
    sock.settimeout(timeout)
    got = []
    try:
        while len(got) < n:
            got.append(sock.recvfrom(65536)[0])
    except socket.timeout:
        pass
    return got


def control_still_open(s, when):
    """The TCP control connection of an association neither closed nor sent anything."""
    s.settimeout(0.1)
    try:
        b = s.recv(10)
        raise Fail("the UDP ASSOCIATE control connection was %s %s"
                   % ("closed" if not b else "sent %s" % hexb(b), when))
    except socket.timeout:
        pass
    except ConnectionResetError:
        raise Fail("the UDP ASSOCIATE control connection was reset %s" % when)


def relay_port_closed(ctx, relay, echo, when):
    """The relay socket is gone: a connected socket sending to it sees ICMP port unreachable."""
    probe = ctx.udp_socket("127.0.0.1")
    probe.connect(relay)
    probe.send(udp_header("127.0.0.1", echo.port) + b"probe")
    how = udp_expect_silence(probe, 1.0, "probe %s" % when)
    check(how == "refused", "the relay's UDP port %d is still open %s (no ICMP port unreachable)" % (relay[1], when))


# -------------------------------------------------------------- the relay works

@case("udp_ipv4_echo")
def udp_ipv4_echo(ctx):
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    for size in (1, 100, 1400, 9000):
        echo_via(cli, relay, "127.0.0.1", echo.port, os.urandom(size), want_atyp=1)
    check(echo.seen and all(peer[0] == "127.0.0.1" for peer, _ in echo.seen),
          "the echo server saw datagrams from %s" % echo.seen)
    check(all(peer != cli.getsockname()[:2] for peer, _ in echo.seen),
          "the echo server got datagrams straight from the client socket: they did not go via the relay")


@case("udp_client_addr_dst")
def udp_client_addr_dst(ctx):
    """DST is the client's real UDP address: that source works, another is dropped
    (even when it sends first)."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    cli = ctx.udp_socket("127.0.0.1")
    s, relay = associate(ctx, p, dst=cli.getsockname()[:2])
    intruder = ctx.udp_socket("127.0.0.1")
    intruder.sendto(udp_header("127.0.0.1", echo.port) + b"intruder", relay)
    udp_expect_silence(intruder, 1.0, "datagram from a source other than the DST of the association")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"hello from the named source")
    check(not any(size == len(b"intruder") for _, size in echo.seen),
          "the intruder's datagram reached the echo server: %s" % echo.seen)


@case("udp_ipv6_target")
def udp_ipv6_target(ctx):
    need_ipv6()
    p = ctx.proxy()
    echo6 = ctx.udp_echo("::1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    for size in (10, 1400):
        echo_via(cli, relay, "::1", echo6.port, os.urandom(size), want_atyp=4)


@case("udp_domain_targets")
def udp_domain_targets(ctx):
    """good.test (A 127.0.0.1) and good6.test (AAAA ::1) through the DNS stub: the
    reply header carries the echo server's address."""
    need_option("--resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    try:
        echo_via(cli, relay, "good.test", echo.port, b"to good.test", want_host="127.0.0.1", want_atyp=1,
                 timeout=5)
        if ipv6_available():
            echo6 = ctx.udp_echo("::1")
            echo_via(cli, relay, "good6.test", echo6.port, b"to good6.test", want_host="::1", want_atyp=4,
                     timeout=5)
        # Again: names already looked up (a cache, if any) work the same.
        echo_via(cli, relay, "good.test", echo.port, b"to good.test again", want_host="127.0.0.1")
    except Fail as e:
        raise Fail(str(e), "DNS queries the stub saw: %s" % dns.queries)


@case("udp_localhost")
def udp_localhost(ctx):
    p = ctx.proxy()
    echos = [ctx.udp_echo("127.0.0.1")]
    port = echos[0].port
    if ipv6_available():
        try:
            echos.append(ctx.udp_echo("::1", port))
        except OSError:
            pass
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    host, rport, atyp, data = udp_exchange(cli, relay, "localhost", port, b"to localhost", 5)
    check(data == b"to localhost", "payload differs")
    check(rport == port and host in [e.addr[0] for e in echos],
          "reply header names %s:%d, expected one of %s port %d" % (host, rport, [e.addr[0] for e in echos], port))
    who = [e.addr[0] for e in echos if e.seen]
    check(who == [host], "echo servers that got the datagram: %s; the reply header names %s" % (who, host))


@case("udp_large_datagram")
def udp_large_datagram(ctx):
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, os.urandom(60000), timeout=5)
    if ipv6_available():
        echo6 = ctx.udp_echo("::1")
        echo_via(cli, relay, "::1", echo6.port, os.urandom(60000), timeout=5)
    still_works(cli, relay, echo, "after 60000-byte datagrams")


@case("udp_many_datagrams")
def udp_many_datagrams(ctx):
    """300 ping-pongs, then a burst of 50 datagrams sent at once: all come back."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    for i in range(300):
        echo_via(cli, relay, "127.0.0.1", echo.port, b"ping %d" % i)
    sent = set()
    for i in range(50):
        payload = b"burst %02d " % i + os.urandom(100)
        sent.add(payload)
        cli.sendto(udp_header("127.0.0.1", echo.port) + payload, relay)
    got = set()
    cli.settimeout(3)
    try:
        while len(got) < len(sent):
            data, _ = cli.recvfrom(65536)
            got.add(data[10:])
    except socket.timeout:
        pass
    check(got == sent, "%d of a burst of 50 datagrams came back (%d unexpected)"
          % (len(got & sent), len(got - sent)))


@case("udp_two_associations")
def udp_two_associations(ctx):
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s1, relay1 = associate(ctx, p)
    s2, relay2 = associate(ctx, p)
    check(relay1 != relay2, "two associations share the relay address %s:%d" % relay1)
    c1, c2 = ctx.udp_socket("127.0.0.1"), ctx.udp_socket("127.0.0.1")
    for i in range(5):
        echo_via(c1, relay1, "127.0.0.1", echo.port, b"one %d" % i)
        echo_via(c2, relay2, "127.0.0.1", echo.port, b"two %d" % i)
    s1.close()
    time.sleep(0.5)
    echo_via(c2, relay2, "127.0.0.1", echo.port, b"two after one closed")


# -------------------------------------------------------------- what must be dropped

@case("udp_other_source_dropped")
def udp_other_source_dropped(ctx):
    """DST 0.0.0.0:0: after the client's first datagram, another socket (other
    port, or other address 127.0.0.2) gets nothing, and the client keeps working."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"first from the client")
    n = len(echo.seen)
    for src in ("127.0.0.1", "127.0.0.2"):
        other = ctx.udp_socket(src)
        other.sendto(udp_header("127.0.0.1", echo.port) + b"from another socket", relay)
        udp_expect_silence(other, 1.0, "datagram from another socket (%s:%d)" % other.getsockname()[:2])
        udp_expect_silence(cli, 0.2, "(nothing for the client either)")
    check(len(echo.seen) == n, "datagrams from other sockets reached the echo server: %s" % echo.seen[n:])
    still_works(cli, relay, echo, "after datagrams from other sockets")


@case("udp_foreign_address_first_dropped")
def udp_foreign_address_first_dropped(ctx):
    """DST 0.0.0.0:0 and the first datagram comes from 127.0.0.2 while the TCP
    client is 127.0.0.1: not the client's address (RFC 1928 section 7), dropped."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    foreign = ctx.udp_socket("127.0.0.2")
    foreign.sendto(udp_header("127.0.0.1", echo.port) + b"foreign", relay)
    udp_expect_silence(foreign, 1.0, "datagram from 127.0.0.2 (the TCP client is 127.0.0.1)")
    check(not echo.seen, "a datagram from 127.0.0.2 reached the echo server")
    cli = ctx.udp_socket("127.0.0.1")
    still_works(cli, relay, echo, "after a datagram from a foreign address")


@case("udp_frag_dropped")
def udp_frag_dropped(ctx):
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"unfragmented")
    for frag in (1, 0x81, 0x7f):
        cli.sendto(udp_header("127.0.0.1", echo.port, frag=frag) + b"fragment", relay)
        udp_expect_silence(cli, 1.0, "datagram with FRAG %02x" % frag)
    check(not any(size == len(b"fragment") for _, size in echo.seen), "a FRAG != 0 datagram reached the echo server")
    still_works(cli, relay, echo, "after FRAG != 0 datagrams")


@case("udp_malformed_dropped")
def udp_malformed_dropped(ctx):
    """Datagrams whose header cannot be right are dropped; the association lives on."""
    need_option("--resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"good")
    port = echo.port.to_bytes(2, "big")
    bad = [
        (udp_header("127.0.0.1", echo.port, rsv=b"\x00\x01") + b"rsv", "RSV 00 01"),
        (udp_header("127.0.0.1", echo.port, rsv=b"\x01\x00") + b"rsv", "RSV 01 00"),
        (b"\x00\x00\x00\x05\x7f\x00\x00\x01" + port + b"atyp", "ATYP 05"),
        (b"\x00\x00\x00\x02\x7f\x00\x00\x01" + port + b"atyp", "ATYP 02"),
        (b"\x00\x00\x00", "3 bytes"),
        (b"\x00\x00\x00\x01\x7f\x00", "ATYP 01 cut short"),
        (b"\x00\x00\x00\x04" + b"\x00" * 10, "ATYP 04 cut short"),
        (b"\x00\x00\x00\x03\x00" + port + b"empty", "zero-length domain"),
        (b"\x00\x00\x00\x03\x20good.test", "domain longer than the datagram"),
        (b"\x00\x00\x00\x03\x0agood\x00.test" + port + b"nul", "domain with a NUL"),
        (b"", "empty datagram"),
    ]
    for data, what in bad:
        cli.sendto(data, relay)
        udp_expect_silence(cli, 0.5, "malformed datagram (%s)" % what)
    check(len(echo.seen) == 1, "malformed datagrams reached the echo server: %s" % echo.seen[1:])
    p.check_alive()
    still_works(cli, relay, echo, "after malformed datagrams")


@case("udp_unresolvable_dropped")
def udp_unresolvable_dropped(ctx):
    need_option("--resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    cli.sendto(udp_header("nosuch.test", echo.port) + b"nowhere", relay)
    udp_expect_silence(cli, 1.5, "datagram to nosuch.test (NXDOMAIN)")
    still_works(cli, relay, echo, "after a datagram to a name that does not resolve")
    s.settimeout(0.2)
    try:
        b = s.recv(10)
        raise Fail("the TCP control connection got %s after an unresolvable datagram" % (hexb(b) or "EOF"))
    except socket.timeout:
        pass


# -------------------------------------------------------------- the association's life

@case("udp_ends_with_tcp")
def udp_ends_with_tcp(ctx):
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"before")
    s.close()
    time.sleep(0.5)
    n = len(echo.seen)
    cli.sendto(udp_header("127.0.0.1", echo.port) + b"after", relay)
    udp_expect_silence(cli, 1.0, "datagram after the TCP control connection closed")
    check(len(echo.seen) == n, "a datagram sent after the TCP connection closed reached the echo server")
    relay_port_closed(ctx, relay, echo, "1.5 s after the TCP connection closed")


@case("udp_tcp_half_close_ends")
def udp_tcp_half_close_ends(ctx):
    """The client's EOF on the TCP connection also ends the association."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"before")
    s.shutdown(socket.SHUT_WR)
    expect_close(s, after="the client's EOF on a UDP ASSOCIATE control connection")
    time.sleep(0.3)
    cli.sendto(udp_header("127.0.0.1", echo.port) + b"after", relay)
    udp_expect_silence(cli, 1.0, "datagram after the TCP control connection ended")


@case("udp_idle_timeout")
def udp_idle_timeout(ctx):
    """--idle-timeout 2 and no datagram either way after the first echo: the
    association and its TCP control connection are closed within about 2 s
    (idle_timeout, plus the 250 ms tick and a loaded machine), not before
    1.5 s; the access log says end=idle_timeout and the relay port is gone."""
    need_option("--idle-timeout")
    p = ctx.proxy(args=["--idle-timeout", "2"])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"the last datagram")
    t0 = time.monotonic()
    expect_close(s, timeout=8.0, after="2 s without a datagram on a UDP association with --idle-timeout 2")
    took = time.monotonic() - t0
    check(1.5 <= took <= 3.5, "the idle association was closed %.1f s after its last datagram with "
          "--idle-timeout 2 (expected 2 to 3 s)" % took)
    check(wait_until(lambda: re.search(r"cmd=udp .*end=idle_timeout", p.stderr()), 3.0),
          "no access-log line with cmd=udp and end=idle_timeout", "stderr:\n" + tail(p.stderr()))
    relay_port_closed(ctx, relay, echo, "after the idle timeout")


def chatty_remote(ctx, replies):
    """A UDP socket on 127.0.0.1 that waits for one datagram, then sends its
    sender reply(datagram) for each (delay in s, reply) of replies, in order."""
    import threading
    srv = ctx.udp_socket("127.0.0.1")

    def serve():
        srv.settimeout(10)
        try:
            data, peer = srv.recvfrom(65536)
        except OSError:
            return
        for delay, reply in replies:
            time.sleep(delay)
            try:
                srv.sendto(reply(data), peer)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return srv


@case("udp_remote_datagrams_keep_alive")
def udp_remote_datagrams_keep_alive(ctx):
    """--idle-timeout 1: the client sends one datagram, then only the remote
    talks (a datagram every 0.3 s for 3 s). Datagrams either way are activity:
    all of them reach the client and the association lives on."""
    need_option("--idle-timeout")
    p = ctx.proxy(args=["--idle-timeout", "1"])
    srv = chatty_remote(ctx, [(0.3, lambda d, i=i: b"tick %d" % i) for i in range(10)])
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    cli.sendto(udp_header("127.0.0.1", srv.getsockname()[1]) + b"start", relay)
    got = [parse_udp(d)[3] for d in udp_collect(cli, 10, 3)]
    check(got == [b"tick %d" % i for i in range(10)],
          "the client got %s from a remote sending every 0.3 s with --idle-timeout 1" % got)
    control_still_open(s, "while the remote's datagrams flowed, with --idle-timeout 1")


@case("udp_busy_datagrams_keep_tcp")
def udp_busy_datagrams_keep_tcp(ctx):
    """--idle-timeout 1 with datagrams flowing for 3 s while the TCP connection is
    silent: the association is not torn down for TCP idleness."""
    need_option("--idle-timeout")
    p = ctx.proxy(args=["--idle-timeout", "1"])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 3:
        echo_via(cli, relay, "127.0.0.1", echo.port, b"tick %d" % i)
        i += 1
        time.sleep(0.2)


# -------------------------------------------------------------- options and variants

@case("udp_advertise")
def udp_advertise(ctx):
    need_option("--udp-advertise")
    p = ctx.proxy(args=["--udp-advertise", "192.0.2.10"])
    s, relay = associate(ctx, p, expect_host="192.0.2.10")
    # The socket itself is still reachable on loopback (it is bound to a wildcard or to 127.0.0.1).
    echo = ctx.udp_echo("127.0.0.1")
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, ("127.0.0.1", relay[1]), "127.0.0.1", echo.port, b"via the real address")


@case("udp_advertise_ipv6")
def udp_advertise_ipv6(ctx):
    need_option("--udp-advertise")
    need_ipv6()
    p = ctx.proxy(args=["--udp-advertise", "2001:db8::10"])
    s, relay = associate(ctx, p, expect_host="2001:db8::10")


@case("udp_ports_range")
def udp_ports_range(ctx):
    need_option("--udp-ports")
    from cases_bind import free_range
    lo, hi = free_range(8)
    p = ctx.proxy(args=["--udp-ports", "%d-%d" % (lo, hi)])
    echo = ctx.udp_echo("127.0.0.1")
    seen = []
    for i in range(3):
        s, relay = associate(ctx, p)
        check(lo <= relay[1] <= hi, "association %d: BND.PORT %d outside --udp-ports %d-%d" % (i, relay[1], lo, hi))
        check(relay[1] not in seen, "two live associations share port %d" % relay[1])
        seen.append(relay[1])
        cli = ctx.udp_socket("127.0.0.1")
        echo_via(cli, relay, "127.0.0.1", echo.port, b"in range")


@case("udp_ipv6_client")
def udp_ipv6_client(ctx):
    """Control connection over [::1]: BND.ADDR ::1 (ATYP 04), the client's
    datagrams come from ::1, targets on both families."""
    need_ringsocks("needs --listen [::1]")
    need_ipv6()
    p = ctx.proxy(listen=["[::1]:0"])
    echo = ctx.udp_echo("127.0.0.1")
    echo6 = ctx.udp_echo("::1")
    s, relay = associate(ctx, p, expect_host="::1")
    cli = ctx.udp_socket("::1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"v6 client to v4 target", want_atyp=1)
    echo_via(cli, relay, "::1", echo6.port, b"v6 client to v6 target", want_atyp=4)


@case("udp_with_auth")
def udp_with_auth(ctx):
    need_option("--udp-ports", "--auth")
    users = write_users(ctx, ["alice:" + make_hash("pw-a")])
    p = ctx.proxy(args=["--auth", "password", "--users", users])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p, auth=("alice", "pw-a"))
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"authenticated datagram")


@case("socks5_request_malformed")
def socks5_request_malformed(ctx):
    """Requests the SOCKS5 parser must answer with an error reply, then close."""
    p = ctx.proxy()
    cases = [
        (b"\x05\x03\x00\x05", 0x08, "UDP ASSOCIATE with ATYP 05"),
        (b"\x05\x03\x00\x00", 0x08, "UDP ASSOCIATE with ATYP 00"),
        (request("0.0.0.0", 0, cmd=3, ver=4), 0x01, "UDP ASSOCIATE with VER 04"),
        (b"\x05\x04\x00\x01\x7f\x00\x00\x01\x00\x50", 0x07, "command 04"),
        (b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50", 0x07, "command 00"),
    ]
    for payload, rep, what in cases:
        s = socks5_open(ctx, p)
        s.sendall(payload)
        head = recv_exact(s, 2, "reply to %s" % what)
        check(head == bytes([5, rep]), "reply to %s starts %s, expected 05 %02x" % (what, hexb(head), rep))
        read_reply_rest(s, head)
        expect_close(s, after="the error reply to %s" % what)
    # A zero-length domain names nothing: any error reply, then close.
    for cmd in (1, 3):
        s = socks5_open(ctx, p)
        s.sendall(bytes([5, cmd, 0, 3, 0, 0, 80]))
        head = recv_exact(s, 2, "reply to a zero-length domain (command %d)" % cmd)
        check(head[0] == 5 and head[1] != 0, "zero-length domain with command %d: reply starts %s, expected an "
              "error" % (cmd, hexb(head)))
        read_reply_rest(s, head)
        expect_close(s, after="the error reply to a zero-length domain")
    p.check_alive()


@case("udp_unsendable_dropped")
def udp_unsendable_dropped(ctx):
    """Datagrams the relay cannot or must not send (port 0, broadcast, the
    unspecified address, which Linux would deliver to the local host: here the
    echo server's own port, so a leak would come back) are dropped; the
    association lives on."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"first")
    for host, port in (("127.0.0.1", 0), ("255.255.255.255", echo.port), ("0.0.0.0", echo.port)):
        cli.sendto(udp_header(host, port) + b"unsendable", relay)
        udp_expect_silence(cli, 0.5, "datagram to %s:%d" % (host, port))
    p.check_alive()
    still_works(cli, relay, echo, "after datagrams to port 0 / broadcast / 0.0.0.0")


@case("udp_to_relay_itself")
def udp_to_relay_itself(ctx):
    """A datagram addressed to the relay's own socket must not start a loop: at
    most one bounce, the proxy stays idle afterwards and keeps working."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"first")
    cli.sendto(udp_header(relay[0], relay[1]) + b"to myself", relay)
    cli.sendto(udp_header("127.0.0.1", p.port) + b"to the proxy's TCP port", relay)
    time.sleep(1.0)
    cli.settimeout(0.1)
    got = 0
    try:
        while got < 1000:
            cli.recvfrom(65536)
            got += 1
    except socket.timeout:
        pass
    check(got <= 2, "%d datagrams came back after one datagram addressed to the relay itself: a loop" % got)
    if p.proc is not None:
        from cases_limits import cpu_seconds
        c0 = cpu_seconds(p.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(p.proc.pid) - c0
        check(used < 0.3, "the proxy used %.2f s of CPU in 1 s after a datagram to the relay itself" % used)
    still_works(cli, relay, echo, "after a datagram addressed to the relay itself")


@case("udp_parallel_associations")
def udp_parallel_associations(ctx):
    """100 associations open at once, each with its own client socket and traffic."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    assocs = []
    for _ in range(100):
        s, relay = associate(ctx, p)
        assocs.append((s, relay, ctx.udp_socket("127.0.0.1")))
    relays = {relay for _, relay, _ in assocs}
    check(len(relays) == 100, "100 associations share %d relay addresses" % len(relays))
    for i, (s, relay, cli) in enumerate(assocs):
        echo_via(cli, relay, "127.0.0.1", echo.port, b"assoc %d" % i)


def _open_fds(pid):
    from cases_bind import open_sockets
    return open_sockets(pid)


@case("udp_resources_released")
def udp_resources_released(ctx):
    """Two rounds of 100 associations opened, used and closed (half of them by
    RST): afterwards the proxy holds no more sockets than before."""
    need_option("--udp-ports")
    import struct
    p = ctx.proxy()
    pid = p.proc.pid
    echo = ctx.udp_echo("127.0.0.1")
    cli = ctx.udp_socket("127.0.0.1")

    def one_round():
        for i in range(100):
            s, relay = associate(ctx, p)
            echo_via(cli, relay, "127.0.0.1", echo.port, b"n %d" % i)
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    def settle(limit):
        deadline = time.monotonic() + 5
        while _open_fds(pid) > limit and time.monotonic() < deadline:
            time.sleep(0.1)
        return _open_fds(pid)

    base = _open_fds(pid)
    one_round()
    first = settle(base + 2)
    one_round()
    second = settle(base + 2)
    check(first <= base + 2 and second <= base + 2,
          "the proxy holds %d sockets after one round of 100 closed associations, %d after two, %d before: "
          "UDP ASSOCIATE leaks sockets" % (first, second, base))
    p.check_alive()


@case("cli_new_options_invalid")
def cli_new_options_invalid(ctx):
    """Bad values for the new options: a non-zero exit naming the option."""
    need_option("--bind-ports", "--udp-ports", "--udp-advertise", "--socks4", "--bind-timeout")
    from cases_auth import run_expect_exit
    for args in (["--bind-ports", "5000-4000"], ["--bind-ports", "0-10"], ["--bind-ports", "abc"],
                 ["--bind-ports", "1000-70000"], ["--udp-ports", "9-8"], ["--udp-ports", "x-y"],
                 ["--udp-advertise", "not-an-ip"], ["--udp-advertise", "300.1.1.1"],
                 ["--socks4", "maybe"], ["--bind-timeout", "-1"], ["--bind-timeout", "abc"]):
        err = run_expect_exit(ctx, args, " ".join(args))
        check(args[0] in err or args[0].lstrip("-") in err,
              "%s: the error message does not name the option: %r" % (" ".join(args), err.strip()[-300:]))


@case("udp_dst_partial")
def udp_dst_partial(ctx):
    """DST with only the address (127.0.0.1:0) or only the port (0.0.0.0:PORT) of
    the client: datagrams from the client are relayed."""
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    cli = ctx.udp_socket("127.0.0.1")
    s1, relay1 = associate(ctx, p, dst=("127.0.0.1", 0))
    echo_via(cli, relay1, "127.0.0.1", echo.port, b"DST 127.0.0.1:0")
    cli2 = ctx.udp_socket("127.0.0.1")
    s2, relay2 = associate(ctx, p, dst=("0.0.0.0", cli2.getsockname()[1]))
    echo_via(cli2, relay2, "127.0.0.1", echo.port, b"DST 0.0.0.0:port")
    other = ctx.udp_socket("127.0.0.1")
    other.sendto(udp_header("127.0.0.1", echo.port) + b"other port", relay2)
    udp_expect_silence(other, 1.0, "datagram from another port than DST.PORT")


@case("udp_outlives_handshake_timeout")
def udp_outlives_handshake_timeout(ctx):
    """--handshake-timeout 1: an association whose request completed long ago is no
    handshake; it lives on past 2.5 s."""
    need_option("--handshake-timeout")
    p = ctx.proxy(args=["--handshake-timeout", "1"])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"before")
    time.sleep(2.5)
    control_still_open(s, "2.5 s after the reply with --handshake-timeout 1")
    still_works(cli, relay, echo, "2.5 s after the reply with --handshake-timeout 1")


@case("udp_slow_name_bounded")
def udp_slow_name_bounded(ctx):
    """A datagram to a name whose lookup never completes (slow.test), then one to an
    address: --connect-timeout 1 bounds name resolution (docs/config.md), so the
    second datagram's echo is back within 3 s (datagrams are relayed one at a
    time, so the second waits for the first's lookup to end)."""
    need_option("--resolver", "--connect-timeout")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec, "--connect-timeout", "1"])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"warm-up")
    # Control: a CONNECT to the same name gives up within the bound.
    c = socks5_open(ctx, p)
    t0 = time.monotonic()
    c.sendall(request("slow.test", 80))
    head = recv_exact(c, 2, "CONNECT slow.test reply")
    took_tcp = time.monotonic() - t0
    check(head == b"\x05\x04", "CONNECT slow.test with --connect-timeout 1: reply %s, expected 05 04" % hexb(head))
    check(took_tcp < 3, "CONNECT slow.test: REP 04 took %.1f s with --connect-timeout 1" % took_tcp)
    cli.sendto(udp_header("slow.test", 53) + b"to a name that never resolves", relay)
    t0 = time.monotonic()
    cli.sendto(udp_header("127.0.0.1", echo.port) + b"right behind it", relay)
    cli.settimeout(15)
    try:
        data, _ = cli.recvfrom(65536)
    except socket.timeout:
        raise Fail("no echo within 15 s of a datagram sent right behind one to slow.test")
    took = time.monotonic() - t0
    check(data.endswith(b"right behind it"), "unexpected datagram %s" % hexb(data))
    check(took < 3, "the association was stalled %.1f s by one datagram to a name that does not resolve, with "
          "--connect-timeout 1 (a CONNECT to that name gave up after %.1f s)" % (took, took_tcp))


@case("udp_name_wait_blocks_nothing")
def udp_name_wait_blocks_nothing(ctx):
    """Three datagrams to a.late.test (the DNS stub answers after 1 s), then one
    to 127.0.0.1: the address's echo comes back first, while the name is being
    resolved, and then the three, in order. 40 more to b.late.test while it
    resolves: the association keeps a bounded number (at least one, at most
    16) and drops the rest, and keeps working."""
    need_option("--resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    echo = ctx.udp_echo("127.0.0.1")
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    echo_via(cli, relay, "127.0.0.1", echo.port, b"warm-up")
    for i in range(3):
        cli.sendto(udp_header("a.late.test", echo.port) + b"to a name %d" % i, relay)
    cli.sendto(udp_header("127.0.0.1", echo.port) + b"to an address", relay)
    got = [parse_udp(d)[3] for d in udp_collect(cli, 4, 6)]
    check(got == [b"to an address"] + [b"to a name %d" % i for i in range(3)],
          "echoes came back as %s; expected the address's first (the name takes 1 s to resolve), then the "
          "name's three in order" % got, "DNS queries the stub saw: %s" % dns.queries)
    for i in range(40):
        cli.sendto(udp_header("b.late.test", echo.port) + b"queued %02d" % i, relay)
    got = [parse_udp(d)[3] for d in udp_collect(cli, 40, 3)]
    check(1 <= len(got) <= 16 and got == sorted(got),
          "%d of 40 datagrams sent to a name while it resolved came back (%s): expected between 1 and 16, "
          "in order" % (len(got), got[:3]))
    p.check_alive()
    still_works(cli, relay, echo, "after a queue of datagrams to a name")


@case("udp_remote_several_replies")
def udp_remote_several_replies(ctx):
    """A remote that answers one datagram with three (one of them 1 s later): all
    three reach the client, each with the remote's address in the header."""
    p = ctx.proxy()
    srv = chatty_remote(ctx, [(0, lambda d: b"reply 0 to " + d), (0, lambda d: b"reply 1 to " + d),
                              (1.0, lambda d: b"late reply to " + d)])
    s, relay = associate(ctx, p)
    cli = ctx.udp_socket("127.0.0.1")
    cli.sendto(udp_header("127.0.0.1", srv.getsockname()[1]) + b"question", relay)
    got = udp_collect(cli, 3, 4)
    want = [b"reply 0 to question", b"reply 1 to question", b"late reply to question"]
    payloads = [parse_udp(d)[3] for d in got]
    check(payloads == want, "the client got %s, expected %s" % (payloads, want))
    for d in got:
        h, port, _, _ = parse_udp(d)
        check((h, port) == srv.getsockname()[:2], "reply header %s:%d, the remote is %s:%d"
              % ((h, port) + srv.getsockname()[:2]))


# -------------------------------------------------------------- who may send (issue #9)

def associate_reply(ctx, p, dst):
    """UDP ASSOCIATE declaring dst as the client's datagram source; returns
    (tcp control socket, Reply) whatever the REP."""
    s = socks5_open(ctx, p)
    s.sendall(request(dst[0], dst[1], cmd=3))
    return s, read_reply(s, "UDP ASSOCIATE reply (DST %s:%d)" % dst)


def expect_denied_assoc(ctx, p, dst, why):
    s, r = associate_reply(ctx, p, dst)
    check(r.rep == 0x02, "UDP ASSOCIATE declaring %s:%d as the source (%s): reply %s (REP %02x), expected "
          "REP 02 (not allowed by the rules)" % (dst + (why, hexb(r.raw), r.rep)))
    expect_close(s, after="the 02 reply to a UDP ASSOCIATE declaring %s" % dst[0])
    check(wait_until(lambda: re.search(r"cmd=udp .*end=denied", p.stderr()), 3.0),
          "no access-log line with cmd=udp and end=denied for the refused association",
          "stderr:\n" + tail(p.stderr()))


def udp_rules_proxy(ctx, *rules):
    from cases_control import conf_proxy, rules_conf
    p, _ = conf_proxy(ctx, rules_conf(*rules))
    return p


@case("udp_declared_foreign_source_refused")
def udp_declared_foreign_source_refused(ctx):
    """RFC 1928 section 7: the association belongs to the control connection's
    address. A client on 127.0.0.1 declaring 127.0.0.9 (a host the rules refuse
    as a client, and, with the built-in rules, one they admit) gets REP 02 and
    nothing from 127.0.0.9 is relayed; declaring its own address still works."""
    p = udp_rules_proxy(ctx, '{ action = "allow"; from = ["127.0.0.1"]; }')
    echo = ctx.udp_echo("127.0.0.1")
    # Whoever sits on 127.0.0.9 would get the relay, if it were opened.
    foreign = ctx.udp_socket("127.0.0.9")
    expect_denied_assoc(ctx, p, foreign.getsockname()[:2], "127.0.0.9 is refused as a client")
    check(not echo.seen, "a datagram reached the echo server")
    cli = ctx.udp_socket("127.0.0.1")
    s, relay = associate(ctx, p, dst=cli.getsockname()[:2])
    echo_via(cli, relay, "127.0.0.1", echo.port, b"from the declared own address")
    # The default is the control connection's address even where the rules admit the other one.
    p2 = ctx.proxy()
    expect_denied_assoc(ctx, p2, ("127.0.0.9", 0), "built-in rules, udp_source not \"any\"")


@case("udp_source_any_rule")
def udp_source_any_rule(ctx):
    """A rule with udp_source = "any" (clients behind carrier-grade NAT): the
    declared 127.0.0.9 works because the rules admit 127.0.0.9 as a UDP client;
    127.0.0.10, which they refuse, is refused with REP 02. With an all-zero DST
    the first datagram's source becomes the client if the rules admit it: one
    from 127.0.0.10 is dropped, then 127.0.0.9's is relayed, and afterwards
    only 127.0.0.9 is the client (the control connection's address too is
    dropped)."""
    p = udp_rules_proxy(ctx,
                        '{ action = "deny"; from = ["127.0.0.10"]; }',
                        '{ action = "allow"; from = ["127.0.0.1"]; udp_source = "any"; }',
                        '{ action = "allow"; from = ["127.0.0.9"]; commands = ["udp"]; }')
    echo = ctx.udp_echo("127.0.0.1")
    nat = ctx.udp_socket("127.0.0.9")
    s, relay = associate(ctx, p, dst=nat.getsockname()[:2])
    echo_via(nat, relay, "127.0.0.1", echo.port, b"from the declared 127.0.0.9")
    ctl_side = ctx.udp_socket("127.0.0.1")
    ctl_side.sendto(udp_header("127.0.0.1", echo.port) + b"control address", relay)
    udp_expect_silence(ctl_side, 1.0, "datagram from the control connection's address (127.0.0.9 was declared)")

    expect_denied_assoc(ctx, p, ("127.0.0.10", 0), "the rules refuse 127.0.0.10")

    n = len(echo.seen)
    s2, relay2 = associate(ctx, p)
    refused = ctx.udp_socket("127.0.0.10")
    refused.sendto(udp_header("127.0.0.1", echo.port) + b"from 127.0.0.10", relay2)
    udp_expect_silence(refused, 1.0, "first datagram from 127.0.0.10, which the rules refuse")
    check(len(echo.seen) == n, "a datagram from 127.0.0.10 reached the echo server")
    nat2 = ctx.udp_socket("127.0.0.9")
    echo_via(nat2, relay2, "127.0.0.1", echo.port, b"first admitted datagram, from 127.0.0.9")
    for other in (ctx.udp_socket("127.0.0.1"), refused):
        other.sendto(udp_header("127.0.0.1", echo.port) + b"after the client was learned", relay2)
        udp_expect_silence(other, 0.5, "datagram from %s:%d after 127.0.0.9 became the client"
                           % other.getsockname()[:2])
    still_works(nat2, relay2, echo, "after datagrams from others")


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Fail("no VmRSS in /proc/%d/status" % pid)


@case("udp_memory_per_association")
def udp_memory_per_association(ctx):
    """300 associations, each after relaying one 60,000-byte datagram: the
    proxy's RSS grows by far less than 300 x 64 KiB (a buffer per association
    costs about 19 MB here; the bound is a quarter of that)."""
    need_ringsocks("reads the proxy's RSS")
    n, size = 300, 60000
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    payload = os.urandom(size)
    # Warm up: every shard maps what it needs for UDP at its first association.
    for _ in range(8):
        s, relay = associate(ctx, p)
        cli = ctx.udp_socket("127.0.0.1")
        echo_via(cli, relay, "127.0.0.1", echo.port, payload, timeout=5)
        s.close()
        cli.close()
    time.sleep(0.3)
    base = _rss_kb(p.proc.pid)
    held = []
    for i in range(n):
        s, relay = associate(ctx, p)
        cli = ctx.udp_socket("127.0.0.1")
        echo_via(cli, relay, "127.0.0.1", echo.port, payload, timeout=5)
        cli.close()
        held.append(s)
    grown = _rss_kb(p.proc.pid) - base
    bound = n * 64 // 4
    check(grown < bound, "RSS grew by %d KiB with %d associations that each relayed one %d-byte datagram "
          "(%.1f KiB each; bound %d KiB): associations hold datagram buffers" % (grown, n, size, grown / n, bound))
    p.check_alive()


def relay_skmem(ctx, port):
    """The rb and tb (receive and send buffer sizes) of the UDP socket bound to port, from
    `ss -uanm`."""
    r = ctx.run(["ss", "-uanmH", "sport", "=", ":%d" % port], timeout=10)
    m = re.search(rb"skmem:\(r\d+,rb(\d+),t\d+,tb(\d+),", r.stdout)
    check(m is not None, "ss shows no UDP socket on port %d: %s" % (port, r.stdout[-300:]))
    return int(m.group(1)), int(m.group(2))


def sysctl_int(name):
    with open("/proc/sys/net/core/" + name) as f:
        return int(f.read())


@case("udp_buffer")
def udp_buffer(ctx):
    """--udp-buffer sets SO_RCVBUF and SO_SNDBUF of every association socket (the kernel
    doubles the value and caps it at rmem_max / wmem_max); without it the socket keeps the
    kernel's default (rmem_default / wmem_default)."""
    need_ringsocks("--udp-buffer")
    want = 1 << 20
    echo = ctx.udp_echo("127.0.0.1")
    for args, rb, tb in ((["--udp-buffer", str(want)], 2 * min(want, sysctl_int("rmem_max")),
                          2 * min(want, sysctl_int("wmem_max"))),
                         ([], sysctl_int("rmem_default"), sysctl_int("wmem_default"))):
        p = ctx.proxy(args=args)
        for _ in range(2):
            s, relay = associate(ctx, p)
            cli = ctx.udp_socket("127.0.0.1")
            echo_via(cli, relay, "127.0.0.1", echo.port, b"sized")
            got = relay_skmem(ctx, relay[1])
            check(got == (rb, tb), "%s: the association socket has rb %d, tb %d; want %d, %d"
                  % (" ".join(args) or "no --udp-buffer", got[0], got[1], rb, tb))
            s.close()
        p.stop()
