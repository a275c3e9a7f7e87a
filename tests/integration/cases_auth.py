"""
cases_auth.py - SOCKS5 username/password (RFC 1929) with --auth password and a
--users file of crypt(3) hashes: curl with and without good credentials, the
exact bytes of the sub-negotiation, its malformed forms, the fast path for
repeated logins (and that it never lets a wrong password in), and the users file
format (comments, blank lines, sha512-crypt, bcrypt, yescrypt).
"""

import asyncio
import os
import random
import re
import socket
import threading
import time

from cases_relay import curl_fetch
from harness import (AUTH_GREETING, CONFIG, Fail, admin_request, auth_msg, case, check, echo_roundtrip,
                     expect_close, fmt_status, hexb, make_hash, need_option, need_tools, open_proxy_socket,
                     read_method_reply, read_reply, recv_exact, request, socks5_login, socks_connect,
                     tail, write_users, metric, need_ringsocks, parse_prometheus, raise_nofile)

ALICE = ("alice", "alice-pw-1")
BOB = ("bob", "b0b secret:with colon")
# The password checker's own behaviour under floods of wrong passwords, without the lockout
# (cases_lockout.py) refusing the guessers (and, past its address threshold, everyone of their
# address) before they reach it.
NO_LOCKOUT = ["--auth-lockout-failures", "0", "--auth-lockout-address-failures", "0"]


def auth_proxy(ctx, users=None, extra=()):
    """A proxy with --auth password and a users file (default: alice, bob)."""
    need_option("--auth", "--users")
    if users is None:
        users = ["%s:%s" % (ALICE[0], make_hash(ALICE[1])), "%s:%s" % (BOB[0], make_hash(BOB[1]))]
    path = write_users(ctx, users)
    return ctx.proxy(args=["--auth", "password", "--users", path] + list(extra))


def login_connect(ctx, p, user, password, port):
    s = open_proxy_socket(ctx, p)
    socks5_login(s, user, password)
    s.sendall(request("127.0.0.1", port))
    r = read_reply(s)
    check(r.ver == 5 and r.rep == 0, "CONNECT after login as %r: reply %s" % (user, hexb(r.raw)))
    return s


def expect_login_fail(ctx, p, user, password, what=None, echo=None):
    """Login with a bad credential (a CONNECT pipelined right behind it): 05 02,
    then 01 + non-zero status, then close; the CONNECT must not be carried out."""
    what = what or "user %r" % (user,)
    s = open_proxy_socket(ctx, p)
    s.sendall(AUTH_GREETING)
    m = read_method_reply(s)
    check(m == b"\x05\x02", "method selection reply %s, expected 05 02" % hexb(m))
    tail_req = request("127.0.0.1", echo.port) if echo else b""
    s.sendall(auth_msg(user, password) + tail_req)
    st = recv_exact(s, 2, "RFC 1929 status for %s" % what)
    check(st[0] == 0x01, "RFC 1929 status reply %s for %s: version byte must be 01" % (hexb(st), what))
    check(st[1] != 0x00, "RFC 1929 status 00 (success) for %s: a bad credential was accepted" % what)
    expect_close(s, after="failed login (%s) status %s" % (what, hexb(st)))
    return st


# -------------------------------------------------------------- real clients

@case("auth_curl_ok")
def auth_curl_ok(ctx):
    need_tools("curl")
    p = auth_proxy(ctx)
    port = ctx.http_server(("127.0.0.1",))
    base = "http://127.0.0.1:%d/" % port
    curl_fetch(ctx, ["--socks5-hostname", "%s:%s@127.0.0.1:%d" % (ALICE[0], ALICE[1], p.port)], base, "small.bin")
    curl_fetch(ctx, ["--socks5-hostname", "%s:%s@127.0.0.1:%d" % (ALICE[0], ALICE[1], p.port)], base, "large.bin")
    curl_fetch(ctx, ["--socks5", "127.0.0.1:%d" % p.port, "--proxy-user", "%s:%s" % BOB], base, "small.bin")
    curl_fetch(ctx, ["--proxy", "socks5h://%s:%s@127.0.0.1:%d" % (ALICE[0], ALICE[1], p.port)], base, "small.bin")


@case("auth_curl_dns")
def auth_curl_dns(ctx):
    need_tools("curl")
    dns = ctx.dns_stub()
    p = auth_proxy(ctx, extra=["--resolver", dns.spec])
    port = ctx.http_server(("127.0.0.1",))
    curl_fetch(ctx, ["--socks5-hostname", "%s:%s@127.0.0.1:%d" % (ALICE[0], ALICE[1], p.port)],
               "http://good.test:%d/" % port, "small.bin")


@case("auth_curl_bad_credentials")
def auth_curl_bad_credentials(ctx):
    need_tools("curl")
    p = auth_proxy(ctx)
    port = ctx.http_server(("127.0.0.1",))
    ctx.files.ensure("small.bin")
    url = "http://127.0.0.1:%d/small.bin" % port
    for creds, what in (("%s:wrong" % ALICE[0], "a wrong password"),
                        ("mallory:%s" % ALICE[1], "a user not in the file"),
                        (None, "no credentials")):
        out = ctx.path("out.bin")
        proxy = "%s@127.0.0.1:%d" % (creds, p.port) if creds else "127.0.0.1:%d" % p.port
        r = ctx.run(["curl", "-sS", "--max-time", "20", "--socks5-hostname", proxy, "-o", out, url], timeout=30)
        check(r.returncode != 0, "curl with %s through --auth password exited 0" % what)
        got = os.path.getsize(out) if os.path.exists(out) else 0
        check(got == 0, "curl with %s got %d bytes of the file" % (what, got))
    p.check_alive()


@case("auth_ncat")
def auth_ncat(ctx):
    need_tools("ncat")
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    lines = b"".join(b"line %d\n" % i for i in range(200))
    r = ctx.run(["ncat", "--proxy-type", "socks5", "--proxy", "127.0.0.1:%d" % p.port,
                 "--proxy-auth", "%s:%s" % ALICE, "127.0.0.1", str(echo.port)], input=lines, timeout=30)
    err = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0, "ncat --proxy-auth exit %d: %s" % (r.returncode, err or "(no message)"))
    check(r.stdout == lines, "ncat got back %d bytes, sent %d" % (len(r.stdout), len(lines)))


# -------------------------------------------------------------- raw RFC 1929

@case("auth_raw_ok")
def auth_raw_ok(ctx):
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    s = open_proxy_socket(ctx, p)
    s.sendall(AUTH_GREETING)
    m = recv_exact(s, 2, "method selection reply")
    check(m == b"\x05\x02", "method selection reply %s, expected 05 02" % hexb(m))
    s.sendall(auth_msg(*ALICE))
    st = recv_exact(s, 2, "RFC 1929 status")
    check(st == b"\x01\x00", "RFC 1929 status %s, expected 01 00 (version 01, success)" % hexb(st))
    s.sendall(request("127.0.0.1", echo.port))
    r = read_reply(s)
    check(r.rep == 0, "CONNECT after login: %s" % hexb(r.raw))
    echo_roundtrip(s, 65536)


@case("auth_method_choice")
def auth_method_choice(ctx):
    """The server picks 02 whenever it is offered, in any position."""
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    for greeting in (b"\x05\x02\x00\x02", b"\x05\x02\x02\x00", b"\x05\x03\x01\x00\x02",
                     b"\x05\x04\x80\x81\xfe\x02"):
        s = open_proxy_socket(ctx, p)
        s.sendall(greeting)
        m = read_method_reply(s)
        check(m == b"\x05\x02", "greeting %s: method reply %s, expected 05 02" % (hexb(greeting), hexb(m)))
        s.sendall(auth_msg(*ALICE) + request("127.0.0.1", echo.port))
        st = recv_exact(s, 2, "RFC 1929 status")
        check(st == b"\x01\x00", "status %s" % hexb(st))
        r = read_reply(s)
        check(r.rep == 0, "CONNECT: %s" % hexb(r.raw))
        echo_roundtrip(s, 1024)
        s.close()


@case("auth_no_acceptable_method")
def auth_no_acceptable_method(ctx):
    """--auth password and a client offering no 02: 05 ff, then close."""
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    for greeting in (b"\x05\x01\x00", b"\x05\x02\x00\x01", b"\x05\x00"):
        s = open_proxy_socket(ctx, p)
        s.sendall(greeting + request("127.0.0.1", echo.port))
        m = recv_exact(s, 2, "method selection reply to %s" % hexb(greeting))
        check(m == b"\x05\xff", "greeting %s: method reply %s, expected 05 ff" % (hexb(greeting), hexb(m)))
        expect_close(s, after="05 ff")
    check(echo.accepted == 0, "the target got %d connection(s) from clients that never logged in" % echo.accepted)


@case("auth_wrong_password")
def auth_wrong_password(ctx):
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    expect_login_fail(ctx, p, ALICE[0], "wrong", "a wrong password", echo)
    expect_login_fail(ctx, p, ALICE[0], BOB[1], "bob's password for alice", echo)
    expect_login_fail(ctx, p, ALICE[0], ALICE[1].upper(), "the password in upper case", echo)
    check(echo.accepted == 0, "a CONNECT pipelined after a failed login reached the target (%d)" % echo.accepted)
    s = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)   # still serving
    echo_roundtrip(s)


@case("auth_unknown_user")
def auth_unknown_user(ctx):
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    expect_login_fail(ctx, p, "mallory", ALICE[1], "a user not in the file", echo)
    expect_login_fail(ctx, p, "Alice", ALICE[1], "the user name in another case", echo)
    expect_login_fail(ctx, p, "alic", ALICE[1], "a prefix of a user name", echo)
    expect_login_fail(ctx, p, "alicex", ALICE[1], "a user name extending a known one", echo)
    check(echo.accepted == 0, "a CONNECT after a failed login reached the target")


@case("auth_empty_fields")
def auth_empty_fields(ctx):
    """ULEN 0 or PLEN 0 (RFC 1929 allows 1..255): status 01 01, then close."""
    p = auth_proxy(ctx)
    for msg, what in ((b"\x01\x00\x05hello", "ULEN 0"),
                      (b"\x01\x05alice\x00", "PLEN 0"),
                      (b"\x01\x00\x00", "ULEN 0 and PLEN 0")):
        s = open_proxy_socket(ctx, p)
        s.sendall(AUTH_GREETING)
        m = read_method_reply(s)
        check(m == b"\x05\x02", "method reply %s" % hexb(m))
        s.sendall(msg)
        st = recv_exact(s, 2, "status for %s" % what)
        check(st == b"\x01\x01", "sub-negotiation with %s (%s): status %s, expected 01 01" % (what, hexb(msg), hexb(st)))
        expect_close(s, after="01 01 for %s" % what)


@case("auth_nul_in_fields")
def auth_nul_in_fields(ctx):
    """A NUL inside the user name or password can match no user: a failure status."""
    p = auth_proxy(ctx)
    expect_login_fail(ctx, p, b"alice\x00", ALICE[1].encode(), "user name 'alice' + NUL")
    expect_login_fail(ctx, p, ALICE[0].encode(), ALICE[1].encode() + b"\x00x", "password + NUL + x")


@case("auth_bad_version")
def auth_bad_version(ctx):
    """A sub-negotiation with VER other than 01 (05 is a common client bug): close."""
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    for ver in (0x05, 0x00, 0x02):
        s = open_proxy_socket(ctx, p)
        s.sendall(AUTH_GREETING)
        m = read_method_reply(s)
        check(m == b"\x05\x02", "method reply %s" % hexb(m))
        s.sendall(auth_msg(ALICE[0], ALICE[1], ver=ver) + request("127.0.0.1", echo.port))
        expect_close(s, after="a sub-negotiation with VER %02x" % ver)
    check(echo.accepted == 0, "the target got a connection after a bad sub-negotiation")


@case("auth_max_lengths")
def auth_max_lengths(ctx):
    """A 255-byte user name with a 255-byte password (the RFC 1929 limits)."""
    user, pw = "u" * 250 + "-long", ("p4" * 127) + "!"
    check(len(user) == 255 and len(pw) == 255, "test bug: lengths")
    p = auth_proxy(ctx, users=["%s:%s" % (user, make_hash(pw)), "%s:%s" % (ALICE[0], make_hash(ALICE[1]))])
    echo = ctx.echo_server()
    s = login_connect(ctx, p, user, pw, echo.port)
    echo_roundtrip(s)
    expect_login_fail(ctx, p, user, pw[:-1], "the 255-byte user with a 254-byte prefix of its password")


@case("auth_split_and_pipelined")
def auth_split_and_pipelined(ctx):
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    whole = AUTH_GREETING + auth_msg(*ALICE) + request("127.0.0.1", echo.port)
    # Byte by byte.
    s = open_proxy_socket(ctx, p)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(whole)):
        s.send(whole[i:i + 1])
        time.sleep(0.005)
    got = recv_exact(s, 4, "05 02 + 01 00")
    check(got == b"\x05\x02\x01\x00", "byte-by-byte: method reply + status %s, expected 05 02 01 00" % hexb(got))
    r = read_reply(s)
    check(r.rep == 0, "byte-by-byte CONNECT reply %s" % hexb(r.raw))
    echo_roundtrip(s, 4096)
    s.close()
    # All at once, with data behind the request.
    payload = os.urandom(5000)
    s = open_proxy_socket(ctx, p)
    s.sendall(whole + payload)
    got = recv_exact(s, 4, "05 02 + 01 00")
    check(got == b"\x05\x02\x01\x00", "pipelined: method reply + status %s, expected 05 02 01 00" % hexb(got))
    r = read_reply(s)
    check(r.rep == 0, "pipelined CONNECT reply %s" % hexb(r.raw))
    back = recv_exact(s, len(payload), "echo of the data pipelined behind greeting+auth+request")
    check(back == payload, "pipelined data came back altered")


@case("auth_cache_never_admits_wrong")
def auth_cache_never_admits_wrong(ctx):
    """After a good login (which may be remembered), wrong passwords for the same
    user, near misses included, still fail, and the good one still works."""
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    for _ in range(2):
        s = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
        echo_roundtrip(s, 1024)
        s.close()
    for bad, what in ((ALICE[1][:-1], "the password minus its last byte"),
                      (ALICE[1] + "x", "the password plus a byte"),
                      (ALICE[1][:-1] + chr(ord(ALICE[1][-1]) ^ 1), "the last byte flipped")):
        expect_login_fail(ctx, p, ALICE[0], bad, what, echo)
    expect_login_fail(ctx, p, BOB[0], ALICE[1], "alice's (cached) password for bob", echo)
    check(echo.accepted == 2, "the target got %d connections, expected the 2 good ones" % echo.accepted)
    s = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    echo_roundtrip(s, 1024)


@case("auth_200_sequential_logins", timeout=120)
def auth_200_sequential(ctx):
    """200 logins in a row with a deliberately slow hash (sha512-crypt, 1,000,000
    rounds: about half a second per check here). Checking the hash every time
    would take ~100 s; the design keeps a fast digest after the first success."""
    need_option("--auth", "--users")
    slow = make_hash(ALICE[1], "sha512", rounds=1000000)
    check("rounds=1000000" in slow, "test bug: hash without rounds: %s" % slow)
    t = time.monotonic()
    import harness
    lib = harness._libcrypt()
    if lib is not None:
        lib.crypt(ALICE[1].encode(), slow.encode())
    one = time.monotonic() - t
    p = auth_proxy(ctx, users=["%s:%s" % (ALICE[0], slow)])
    echo = ctx.echo_server()
    t0 = time.monotonic()
    s = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    first = time.monotonic() - t0
    echo_roundtrip(s, 100)
    s.close()
    t1 = time.monotonic()
    for i in range(199):
        s = open_proxy_socket(ctx, p)
        s.sendall(AUTH_GREETING + auth_msg(*ALICE) + request("127.0.0.1", echo.port))
        got = recv_exact(s, 4, "05 02 + 01 00 (login %d)" % (i + 2))
        check(got == b"\x05\x02\x01\x00", "login %d: %s, expected 05 02 01 00" % (i + 2, hexb(got)))
        r = read_reply(s)
        check(r.rep == 0, "login %d: CONNECT reply %s" % (i + 2, hexb(r.raw)))
        echo_roundtrip(s, 100)
        s.close()
        if time.monotonic() - t1 > 60:
            raise Fail("only %d of 199 repeated logins done in 60 s (first login %.2f s, one hash check "
                       "here %.2f s): repeated logins pay the slow hash" % (i + 1, first, one))
    rest = time.monotonic() - t1
    check(rest < 20, "199 repeated logins took %.1f s (first login %.2f s, one hash check here %.2f s): "
          "the fast path for verified credentials is not used" % (rest, first, one))


@case("auth_100_parallel_logins")
def auth_100_parallel(ctx):
    p = auth_proxy(ctx)
    echo = ctx.echo_server()
    addr = p.addr
    creds = [ALICE, BOB]

    async def one(i):
        user, pw = creds[i % 2]
        r, w = await asyncio.open_connection(addr[0], addr[1])
        try:
            w.write(AUTH_GREETING + auth_msg(user, pw) + request("127.0.0.1", echo.port))
            got = await r.readexactly(4)
            if got != b"\x05\x02\x01\x00":
                return "login %d (%s): %s" % (i, user, hexb(got))
            head = await r.readexactly(4)
            if head[1] != 0:
                return "login %d: CONNECT reply %s" % (i, hexb(head))
            await r.readexactly(6 if head[3] == 1 else 18)
            data = os.urandom(1000)
            w.write(data)
            back = await r.readexactly(len(data))
            return None if back == data else "login %d: echo differs" % i
        except (asyncio.IncompleteReadError, OSError) as e:
            return "login %d: %r" % (i, e)
        finally:
            w.close()

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(100))), 40)

    bad = [r for r in asyncio.run(main()) if r]
    check(not bad, "%d of 100 parallel logins failed; first: %s" % (len(bad), "; ".join(bad[:3])))


@case("auth_cold_logins_coalesce")
def auth_cold_logins_coalesce(ctx):
    """80 logins at once on a cold cache, 60 right and 20 with the same wrong
    password: every one gets its right answer, and each shard runs crypt(3) at
    most once per distinct credential: the others wait for that answer
    (ringsocks_auth_coalesced_total) or find it cached."""
    need_ringsocks()
    shards = 2
    # 20 wrong passwords for alice from one address are past the login lockout's 10: a right
    # one answered after the tenth failure would be refused for that, not for coalescing.
    p = auth_proxy(ctx, extra=["--shards", str(shards)] + NO_LOCKOUT)
    echo = ctx.echo_server()
    addr = p.addr

    async def one(i):
        good = i % 4 != 3
        pw = ALICE[1] if good else "not-alices-password"
        r, w = await asyncio.open_connection(addr[0], addr[1])
        try:
            w.write(AUTH_GREETING + auth_msg(ALICE[0], pw))
            got = await r.readexactly(4)
            want = b"\x05\x02\x01\x00" if good else None
            if good and got != want:
                return "login %d (right password): %s" % (i, hexb(got))
            if not good and (got[:3] != b"\x05\x02\x01" or got[3] == 0):
                return "login %d (wrong password): %s, expected a refusal" % (i, hexb(got))
            return None
        except (asyncio.IncompleteReadError, OSError) as e:
            return "login %d: %r" % (i, e)
        finally:
            w.close()

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(80))), 40)

    bad = [r for r in asyncio.run(main()) if r]
    check(not bad, "%d of 80 cold logins got a wrong answer; first: %s" % (len(bad), "; ".join(bad[:3])))
    st, body, _ = admin_request(p, "GET", "/metrics")
    check(st == 200, "GET /metrics answered %d" % st)
    m = parse_prometheus(body)
    slow = metric(m, "ringsocks_auth_slow_checks_total")
    coalesced = metric(m, "ringsocks_auth_coalesced_total")
    check(slow is not None and coalesced is not None, "auth counters missing from /metrics")
    check(slow <= 2 * shards, "%d crypt(3) runs for 2 distinct credentials on %d shards "
          "(%d coalesced): identical checks in flight were not shared" % (slow, shards, coalesced))


# -------------------------------------------------------------- under attack

class WrongPasswordFlood:
    """k connections from src, each sending a fresh wrong password for user and
    reconnecting as soon as it has its answer (or its close): a password-guessing
    attack that keeps the crypt(3) worker busy. Runs in its own thread; counts
    what the attackers got. stop() ends it (also registered on ctx)."""

    def __init__(self, ctx, addr, user, k, src="127.0.0.1"):
        self.addr, self.user, self.k, self.src = addr, user, k, src
        self.refused = self.accepted = self.closed = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        raise_nofile(4 * k + 1024)
        ctx.defer(self.stop)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(15)

    async def _one(self, i):
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(self.addr[0], self.addr[1],
                                                                      local_addr=(self.src, 0)), 5)
            except (OSError, asyncio.TimeoutError):
                self.errors += 1
                await asyncio.sleep(0.05)
                continue
            try:
                w.write(AUTH_GREETING + auth_msg(self.user, "guess-%d-%d-%s" % (i, n, os.urandom(6).hex())))
                got = b""
                while len(got) < 4:
                    b = await asyncio.wait_for(r.read(4 - len(got)), 60)
                    if not b:
                        break
                    got += b
                if len(got) < 4:
                    self.closed += 1
                elif got[3] == 0:
                    self.accepted += 1
                else:
                    self.refused += 1
            except (OSError, asyncio.TimeoutError):
                self.errors += 1
            finally:
                w.close()

    async def _main(self):
        tasks = [asyncio.ensure_future(self._one(i)) for i in range(self.k)]
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def summary(self):
        return "attackers got %d refusals, %d successes, %d closes without a verdict, %d errors" % (
            self.refused, self.accepted, self.closed, self.errors)


def login_outcome(addr, user, password, src="127.0.0.1", timeout=30):
    """One login (greeting + RFC 1929 together) from src: ("ok" | "refused" | "closed", seconds,
    bytes received)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        t0 = time.monotonic()
        s.connect(addr)
        s.sendall(AUTH_GREETING + auth_msg(user, password))
        got = b""
        try:
            while len(got) < 4:
                b = s.recv(4 - len(got))
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass
        took = time.monotonic() - t0
    finally:
        s.close()
    if len(got) < 4:
        check(got in (b"", b"\x05\x02"), "login as %s: answer %s, then a close" % (user, hexb(got)))
        return "closed", took, got
    check(got[:3] == b"\x05\x02\x01", "login as %s: answer %s" % (user, hexb(got)))
    return ("ok" if got[3] == 0 else "refused"), took, got


def yescrypt_users(n_good):
    """alice and g0..g{n-1}, all yescrypt, so crypt(3) is slow (about 25 ms here).
    Returns (lines of a users file, [(user, password) of the g's])."""
    need_option("--auth", "--users")
    good = [("g%d" % i, "good-pw-%d-%s" % (i, os.urandom(4).hex())) for i in range(n_good)]
    lines = ["%s:%s" % (ALICE[0], make_hash(ALICE[1], "yescrypt"))]
    lines += ["%s:%s" % (u, make_hash(pw, "yescrypt")) for u, pw in good]
    return lines, good


def crypt_seconds(h, runs=3):
    import harness
    lib = harness._libcrypt()
    t = time.monotonic()
    for i in range(runs):
        lib.crypt(b"probe-%d" % i, h.encode())
    return (time.monotonic() - t) / runs


@case("auth_overload_never_refuses_a_right_password", timeout=150)
def auth_overload_never_refuses_a_right_password(ctx):
    """Issue #9 item 9: 300 connections guessing alice's password (yescrypt) keep the
    crypt worker busy; meanwhile 10 right, not yet cached credentials of other users
    are tried from the same address. A right password may be answered late, or the
    connection closed without a verdict under such load, but never refused (01 01):
    the old 256-check queue answered "wrong password" when it was full."""
    need_ringsocks()
    lines, good = yescrypt_users(10)
    p = auth_proxy(ctx, users=lines, extra=["--shards", "1"] + NO_LOCKOUT)
    flood = WrongPasswordFlood(ctx, p.addr, ALICE[0], 300).start()
    time.sleep(1.5)
    results = [None] * len(good)

    def try_one(i):
        try:
            results[i] = login_outcome(p.addr, good[i][0], good[i][1])
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = ("error", 0, repr(e))

    threads = []
    for i in range(len(good)):
        t = threading.Thread(target=try_one, args=(i,), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(0.3)
    for t in threads:
        t.join(40)
    flood.stop()
    wrong = ["%s (after %.2f s)" % (good[i][0], r[1]) for i, r in enumerate(results) if r and r[0] == "refused"]
    check(not wrong, "%d of %d right passwords were refused (01 01) under a password-guessing flood: %s; %s"
          % (len(wrong), len(good), ", ".join(wrong), flood.summary()))
    errors = [r[2] for r in results if not r or r[0] == "error"]
    check(not errors, "login errors: %s" % "; ".join(str(e) for e in errors[:3]))
    check(flood.accepted == 0, "a wrong password was accepted: %s" % flood.summary())
    check(flood.refused > 0, "the flood never got a verdict, so it tested nothing: %s" % flood.summary())
    p.check_alive()
    # The flood is over: every one of them logs in (the served ones from the cache).
    for user, pw in good:
        r = login_outcome(p.addr, user, pw)
        check(r[0] == "ok", "after the flood, %s with its right password: %s" % (user, r[0]))


@case("auth_failure_budget_keeps_others_moving", timeout=150)
def auth_failure_budget_keeps_others_moving(ctx):
    """One address (127.0.0.1) floods wrong passwords with 300 connections; another
    (127.0.0.2) logs in 8 times with right, not yet cached credentials. The failing
    address is over its failure budget, so its checks wait behind the other's: each
    of 127.0.0.2's logins succeeds within a few crypt(3) runs, not behind hundreds."""
    need_ringsocks()
    lines, good = yescrypt_users(8)
    one = crypt_seconds(lines[0].split(":", 1)[1])
    p = auth_proxy(ctx, users=lines, extra=["--shards", "1"] + NO_LOCKOUT)
    flood = WrongPasswordFlood(ctx, p.addr, ALICE[0], 300).start()
    time.sleep(2.0)   # long enough for the flood to spend its budget (16 failures)
    took = []
    for user, pw in good:
        outcome, t, _ = login_outcome(p.addr, user, pw, src="127.0.0.2")
        check(outcome == "ok", "login of %s from 127.0.0.2 during a flood from 127.0.0.1: %s after %.2f s; %s"
              % (user, outcome, t, flood.summary()))
        took.append(t)
    flood.stop()
    check(flood.refused > 0, "the flood never got a verdict, so it tested nothing: %s" % flood.summary())
    took.sort()
    median, worst = took[len(took) // 2], took[-1]
    bound = max(1.0, 15 * one)
    check(median < bound and worst < 3 * bound,
          "logins from 127.0.0.2 took %s s (median %.2f, bound %.2f; one crypt(3) here %.3f s) while "
          "127.0.0.1 flooded wrong passwords: they waited behind the failing address; %s"
          % (", ".join("%.2f" % t for t in took), median, bound, one, flood.summary()))
    st, body, _ = admin_request(p, "GET", "/metrics")
    deferred = metric(parse_prometheus(body), "ringsocks_auth_deferred_total")
    check(deferred and deferred > 0, "ringsocks_auth_deferred_total is %r after the flood" % deferred)


@case("auth_departed_guessers_cost_no_crypt", timeout=90)
def auth_departed_guessers_cost_no_crypt(ctx):
    """200 connections each send one wrong password for a yescrypt user and hang
    up at once. Their checks leave the queue with them: crypt(3) runs for the few
    the worker had already taken, not for all 200 (which is 5 s of crypt(3) here,
    all spent on clients that are gone). A client that pipelined its request
    before half-closing is still served."""
    need_ringsocks()
    lines, good = yescrypt_users(1)
    p = auth_proxy(ctx, users=lines, extra=["--shards", "1"] + NO_LOCKOUT)
    echo = ctx.echo_server()
    n = 200
    for i in range(n):
        s = socket.create_connection(p.addr)
        s.sendall(AUTH_GREETING + auth_msg(ALICE[0], "gone-%d-%s" % (i, os.urandom(4).hex())))
        s.close()

    def settled():
        st, body, _ = admin_request(p, "GET", "/metrics")
        m = parse_prometheus(body)
        slow = metric(m, "ringsocks_auth_slow_checks_total") or 0
        cancelled = metric(m, "ringsocks_auth_cancelled_total") or 0
        return slow, cancelled, slow + cancelled >= n

    deadline = time.monotonic() + 20
    while True:
        slow, cancelled, done = settled()
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(done and slow <= 40, "200 clients that hung up right after their password: %d crypt(3) runs, %d "
          "checks dropped unrun (expected nearly all dropped)" % (slow, cancelled))
    # Greeting, credentials and request pipelined, then a half-close: still a tunnel.
    s = socket.create_connection(p.addr)
    s.settimeout(20)
    s.sendall(AUTH_GREETING + auth_msg(good[0][0], good[0][1]) + request("127.0.0.1", echo.port) + b"ping")
    s.shutdown(socket.SHUT_WR)
    got = recv_exact(s, 4, "05 02 + RFC 1929 status after a half-close")
    check(got == b"\x05\x02\x01\x00", "pipelined login then half-close: %s, expected 05 02 01 00" % hexb(got))
    r = read_reply(s)
    check(r.rep == 0, "CONNECT after a half-closed pipelined login: %s" % hexb(r.raw))
    back = recv_exact(s, 4, "echo of the pipelined bytes")
    check(back == b"ping", "echo %s" % hexb(back))
    s.close()


@case("auth_unknown_user_costs_the_same")
def auth_unknown_user_costs_the_same(ctx):
    """User names must not be found out with a stopwatch: a login as a name not in
    the file takes as long as one with a known name and a wrong password (the old
    code answered the first in 0.2 ms, the second after crypt(3)). Repeats of the
    same unknown credential are answered from the cache, like known ones."""
    need_ringsocks()
    lines, _ = yescrypt_users(3)
    p = auth_proxy(ctx, users=lines, extra=["--shards", "1"] + NO_LOCKOUT)
    one = crypt_seconds(lines[0].split(":", 1)[1])
    known, unknown = [], []
    for i in range(11):
        tag = os.urandom(4).hex()
        r = login_outcome(p.addr, ALICE[0], "wrong-%s" % tag)
        check(r[0] == "refused", "alice with a wrong password: %s" % r[0])
        known.append(r[1])
        r = login_outcome(p.addr, "nobody-%d-%s" % (i, tag), "wrong-%s" % tag)
        check(r[0] == "refused", "an unknown user: %s" % r[0])
        unknown.append(r[1])
    mk, mu = sorted(known)[5], sorted(unknown)[5]
    check(0.5 <= mu / mk <= 2.0,
          "median login time: unknown user %.2f ms, known user with a wrong password %.2f ms (one "
          "crypt(3) here %.2f ms): user names can be told apart by timing"
          % (mu * 1000, mk * 1000, one * 1000))
    st, body, _ = admin_request(p, "GET", "/metrics")
    hits0 = metric(parse_prometheus(body), "ringsocks_auth_cache_hits_total")
    for user in (ALICE[0], "nobody-again"):
        for _ in range(2):
            r = login_outcome(p.addr, user, "the-same-wrong-one")
            check(r[0] == "refused", "%s with a wrong password: %s" % (user, r[0]))
    st, body, _ = admin_request(p, "GET", "/metrics")
    hits = metric(parse_prometheus(body), "ringsocks_auth_cache_hits_total") - hits0
    check(hits == 2, "the second try of each of two identical wrong credentials (one known user, one "
          "unknown) should come from the cache: %d cache hits, expected 2" % hits)


# -------------------------------------------------------------- the users file

@case("auth_users_file_format")
def auth_users_file_format(ctx):
    """Comments, blank lines, several users with different hash schemes."""
    need_option("--auth", "--users")
    users = {"alice": ("alice-pw-1", "sha512"), "bob": (BOB[1], "bcrypt"), "carol": ("c@rol pw", "sha512"),
             "dave.d-1_x": ("d", "sha512")}
    lines = ["# ringsocks users: user:hash", "", "   ", "#alice:" + make_hash("commented-out"),
             "alice:" + make_hash(users["alice"][0], "sha512"),
             "# bob has bcrypt",
             "bob:" + make_hash(users["bob"][0], "bcrypt"),
             "",
             "carol:" + make_hash(users["carol"][0], "sha512"),
             "dave.d-1_x:" + make_hash(users["dave.d-1_x"][0], "sha512"),
             "# end"]
    try:
        lines.insert(6, "erin:" + make_hash("erin-yes", "yescrypt"))
        users["erin"] = ("erin-yes", "yescrypt")
    except Exception:
        pass    # yescrypt has its own test (auth_yescrypt)
    path = write_users(ctx, lines)
    p = ctx.proxy(args=["--auth", "password", "--users", path])
    echo = ctx.echo_server()
    for user, (pw, scheme) in users.items():
        try:
            s = login_connect(ctx, p, user, pw, echo.port)
        except Fail as e:
            raise Fail("login as %s (%s hash) from a file with comments and blank lines: %s" % (user, scheme, e))
        echo_roundtrip(s, 1024)
        s.close()
    names = list(users)
    for i, user in enumerate(names):
        other = users[names[(i + 1) % len(names)]][0]
        expect_login_fail(ctx, p, user, other, "%s with %s's password" % (user, names[(i + 1) % len(names)]))
    expect_login_fail(ctx, p, "#alice", "commented-out", "a commented-out line")
    expect_login_fail(ctx, p, "alice", "commented-out", "alice with the commented-out line's password")


@case("auth_sha512_hash")
def auth_sha512_hash(ctx):
    need_option("--auth", "--users")
    h = make_hash(ALICE[1], "sha512")
    check(h.startswith("$6$"), "test bug: %s" % h)
    p = auth_proxy(ctx, users=["alice:" + h])
    echo = ctx.echo_server()
    echo_roundtrip(login_connect(ctx, p, ALICE[0], ALICE[1], echo.port))
    expect_login_fail(ctx, p, ALICE[0], "nope")


@case("auth_bcrypt_hash")
def auth_bcrypt_hash(ctx):
    need_option("--auth", "--users")
    h = make_hash(ALICE[1], "bcrypt")
    check(h.startswith("$2b$"), "test bug: %s" % h)
    p = auth_proxy(ctx, users=["alice:" + h])
    echo = ctx.echo_server()
    echo_roundtrip(login_connect(ctx, p, ALICE[0], ALICE[1], echo.port))
    expect_login_fail(ctx, p, ALICE[0], "nope")


@case("auth_yescrypt_hash")
def auth_yescrypt_hash(ctx):
    need_option("--auth", "--users")
    h = make_hash(ALICE[1], "yescrypt")   # Skip when this machine cannot make one
    check(h.startswith("$y$"), "test bug: %s" % h)
    p = auth_proxy(ctx, users=["alice:" + h])
    echo = ctx.echo_server()
    echo_roundtrip(login_connect(ctx, p, ALICE[0], ALICE[1], echo.port))
    expect_login_fail(ctx, p, ALICE[0], "nope")


def run_expect_exit(ctx, args, what):
    """Start the binary, expect it to exit non-zero by itself (no listening)."""
    argv = [CONFIG.binary, "--listen", "127.0.0.1:0", "--shards", "1", "--relay", ctx.relay] + list(args)
    r = ctx.run(argv, timeout=10, env=None)
    err = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode not in (0, None) and r.returncode > 0,
          "%s: %s, expected a non-zero exit; output: %r" % (what, fmt_status(r.returncode), tail(err, 5)))
    check("ringsocks: listening on" not in err, "%s: it printed a listening line: %r" % (what, tail(err, 5)))
    return err


@case("auth_users_file_errors")
def auth_users_file_errors(ctx):
    """Startup refuses what cannot work, and says where: --auth password without
    --users, a users file that does not exist, a line without ':' (file and line)."""
    need_option("--auth", "--users")
    run_expect_exit(ctx, ["--auth", "password"], "--auth password without --users")
    missing = ctx.path("no-such-users-file")
    err = run_expect_exit(ctx, ["--auth", "password", "--users", missing], "a missing users file")
    check(missing in err or "no-such-users-file" in err, "the error for a missing users file does not name it: %r"
          % tail(err, 5))
    bad = write_users(ctx, ["# ok", "alice:" + make_hash("x"), "this line has no colon", "bob:" + make_hash("y")],
                      name="bad-users")
    err = run_expect_exit(ctx, ["--auth", "password", "--users", bad], "a users file with a line without ':'")
    check("bad-users" in err and re.search(r"(:|line\s*)3\b", err),
          "the error for line 3 of the users file does not name the file and the line: %r" % tail(err, 5))
    run_expect_exit(ctx, ["--auth", "bogus"], "--auth bogus")


@case("auth_garbage_keeps_serving")
def auth_garbage_keeps_serving(ctx):
    """200 random sub-negotiations sent with the greeting: each is answered 01 +
    non-zero and closed, or closed (incomplete ones by --handshake-timeout 2);
    never a success; the server keeps serving."""
    need_option("--auth", "--users")
    p = auth_proxy(ctx, extra=["--handshake-timeout", "2"])
    echo = ctx.echo_server()
    rnd = random.Random(1929)
    conns = []
    for i in range(200):
        ver = rnd.choice((1, 1, 1, 0, 5, 0xff))
        body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 520)))
        data = AUTH_GREETING + bytes([ver]) + body
        s = open_proxy_socket(ctx, p)
        try:
            s.sendall(data)
        except OSError:
            pass
        conns.append((s, data))
    deadline = time.monotonic() + 15
    for s, data in conns:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        got = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except socket.timeout:
            raise Fail("no close within the bound after the sub-negotiation garbage %s" % hexb(data[3:]),
                       "received: %s" % hexb(got))
        except ConnectionResetError:
            pass
        # Closing without even the 05 02 is accepted here: the greeting and the bad
        # sub-negotiation arrived together and the connection is dropped either way.
        ok = got in (b"", b"\x05\x02") or (len(got) == 4 and got[:3] == b"\x05\x02\x01" and got[3] != 0)
        check(ok, "answer %s to 05 01 02 + sub-negotiation garbage %s, expected a close after nothing, 05 02, "
              "or 05 02 01 + non-zero" % (hexb(got), hexb(data[3:], 32)))
        s.close()
    p.check_alive()
    s = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    echo_roundtrip(s)


@case("auth_none_still_default")
def auth_none_still_default(ctx):
    """Without --auth: no-auth as before, and a client offering 00 and 02 gets 00."""
    p = ctx.proxy()
    echo = ctx.echo_server()
    s = open_proxy_socket(ctx, p)
    s.sendall(b"\x05\x02\x02\x00")
    m = read_method_reply(s)
    check(m == b"\x05\x00", "--auth none (default), client offers 02 00: method reply %s, expected 05 00" % hexb(m))
    s.sendall(request("127.0.0.1", echo.port))
    r = read_reply(s)
    check(r.rep == 0, "CONNECT: %s" % hexb(r.raw))
    echo_roundtrip(s)
    s2, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s2)


@case("auth_none_explicit")
def auth_none_explicit(ctx):
    need_option("--auth")
    p = ctx.proxy(args=["--auth", "none"])
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    s = open_proxy_socket(ctx, p)
    s.sendall(AUTH_GREETING)
    m = read_method_reply(s)
    check(m == b"\x05\xff", "--auth none, client offers only 02: %s, expected 05 ff" % hexb(m))
    expect_close(s, after="05 ff")


@case("auth_handshake_timeout")
def auth_handshake_timeout(ctx):
    """A client that stops after the method reply (or mid sub-negotiation) is
    closed by --handshake-timeout."""
    p = auth_proxy(ctx, extra=["--handshake-timeout", "1"])
    for partial in (b"", b"\x01\x05ali"):
        s = open_proxy_socket(ctx, p)
        s.sendall(AUTH_GREETING)
        check(read_method_reply(s) == b"\x05\x02", "method reply")
        if partial:
            s.sendall(partial)
        expect_close(s, timeout=5, after="a stalled login (%s) with --handshake-timeout 1" % (hexb(partial) or "nothing"))


@case("auth_slow_hash_blocks_nobody")
def auth_slow_hash_blocks_nobody(ctx):
    """One shard, a deliberately slow hash (sha512-crypt with its rounds chosen to
    cost about 1.5 s here) being checked for two logins: other clients on that
    shard are served meanwhile (SOCKS4 with --socks4 on, and a login whose result
    is already known). --handshake-timeout 60 keeps the slow logins themselves
    clear of the handshake limit on a loaded machine."""
    need_option("--auth", "--users", "--socks4")
    import harness
    lib = harness._libcrypt()
    if lib is None:
        from harness import Skip
        raise Skip("no libcrypt to time a hash with")
    probe = make_hash("x", "sha512", rounds=200000)
    t = time.monotonic()
    lib.crypt(b"x", probe.encode())
    per_round = (time.monotonic() - t) / 200000
    rounds = int(min(50000000, max(200000, 1.5 / per_round)))
    slow = make_hash("slow-pw", "sha512", rounds=rounds)
    t = time.monotonic()
    lib.crypt(b"slow-pw", slow.encode())
    one = time.monotonic() - t
    fast = make_hash(ALICE[1])
    p = auth_proxy(ctx, users=["slowpoke:" + slow, "%s:%s" % (ALICE[0], fast)],
                   extra=["--shards", "1", "--socks4", "on", "--handshake-timeout", "60"])
    echo = ctx.echo_server()
    warm = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)     # alice's check is done and remembered
    warm.close()
    hold = []
    for i in range(2):    # two slow checks in flight (a right and a wrong password)
        s = open_proxy_socket(ctx, p)
        s.settimeout(max(30, 6 * one))
        s.sendall(AUTH_GREETING + auth_msg("slowpoke", "slow-pw" if i == 0 else "slow-px"))
        hold.append(s)
    time.sleep(0.2)
    from harness import socks4_connect
    t0 = time.monotonic()
    s4, _ = socks4_connect(ctx, p, echo.port)
    echo_roundtrip(s4, 1000)
    s5 = login_connect(ctx, p, ALICE[0], ALICE[1], echo.port)
    echo_roundtrip(s5, 1000)
    took = time.monotonic() - t0
    check(took < max(0.5, one / 2), "other clients waited %.2f s while slow hash checks (%.2f s each here, %d "
          "rounds) ran: the hash is checked on the shard" % (took, one, rounds))
    st = recv_exact(hold[0], 4, "slow login result (right password; one check %.2f s here)" % one)
    check(st == b"\x05\x02\x01\x00", "the slow login (right password) got %s" % hexb(st))
    st = recv_exact(hold[1], 4, "slow login result (wrong password; one check %.2f s here)" % one)
    check(st[:3] == b"\x05\x02\x01" and st[3] != 0, "the slow login (wrong password) got %s" % hexb(st))
