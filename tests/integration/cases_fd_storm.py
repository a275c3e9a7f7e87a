"""
cases_fd_storm.py - fd storms (issue #18 item 2): the proxy's fd table runs full
while tunnels are open. Its limit is small (prlimit around it): the test
measures what the proxy holds at start, fills the rest with tunnels, and brings
it to the free fds it wants with idle clients (accepted, silent: one fd each):

- one fd free: a client is accepted, but its request's socket() fails
  (EMFILE): CONNECT, BIND and UDP ASSOCIATE each get a well-formed reply 0x01
  (general SOCKS server failure, RFC 1928: the fault is the server's own, not
  the target's) and a close, at once; so do several at once. A splice pipe
  needs two fds: none can be had, and the open tunnels go on relaying by copy
  (ringsocks_pipe_fallbacks_total), every byte checked.
- no fd free: accept fails (EMFILE); new clients wait in the backlog, the
  shard does not spin (CPU over 1.5 s, as in fd_exhaustion_pauses_and_resumes),
  the open tunnels still relay, and once the tunnels leave the waiting clients
  are answered: served, or refused 0x01 when the accept took the fd that their
  request needed.

Afterwards nothing is left: once every client has gone, the proxy's fds are
what it had at start plus two per idle pooled pipe (ringsocks_pipes_idle), and
a new client's tunnel splices again (no fallback) and leaves its pipes in the
pool. One engine (splice, the one that needs pipes), one shard.
"""

import select
import time

from harness import (GREETING, Fail, admin_request, case, check, echo_roundtrip, hexb, metric,
                     need_ringsocks, parse_prometheus, request, wait_until)
from cases_limits import cpu_seconds, open_fds

# The proxy's fd limit: room for about 24 tunnels on one shard.
NOFILE = 64


def steady_fds(pid, samples=3):
    """The proxy's fd count once it has stayed the same for samples tenths of a second (an
    admin connection just answered may still be closing), bounded at 5 s."""
    last, same = -1, 0
    deadline = time.monotonic() + 5
    while same < samples and time.monotonic() < deadline:
        n = open_fds(pid)
        same = same + 1 if n == last else 0
        last = n
        time.sleep(0.1)
    return last


def scrape(p):
    status, body, _ = admin_request(p, "GET", "/metrics")
    check(status == 200, "/metrics answered %d" % status)
    return parse_prometheus(body)


def answer(s, wait):
    """What the proxy sent within wait seconds and whether it closed: (bytes, closed).
    Stops early at a whole method reply + CONNECT reply with an IPv4 BND (12 bytes)."""
    got = b""
    deadline = time.monotonic() + wait
    s.setblocking(False)
    try:
        while len(got) < 12:
            left = deadline - time.monotonic()
            if left <= 0:
                return got, False
            r, _, _ = select.select([s], [], [], left)
            if not r:
                continue
            try:
                b = s.recv(64)
            except ConnectionResetError:
                return got, True
            if not b:
                return got, True
            got += b
        # The reply is whole: a refusal must be followed by the close.
        if got[3:4] == b"\x00" or got[:4] == b"\x05\x00\x05\x00":
            return got, False
        r, _, _ = select.select([s], [], [], 5.0)
        try:
            return got, bool(r) and s.recv(64) == b""
        except ConnectionResetError:
            return got, True
    finally:
        s.setblocking(True)


def ask(ctx, p, cmd, host, port):
    """A client that sends its greeting and request (cmd) at once."""
    s = ctx.connect(p.addr, timeout=10)
    s.sendall(GREETING + request(host, port, cmd=cmd))
    return s


def expect_general_failure(s, what):
    got, closed = answer(s, 5.0)
    check(got[:2] == b"\x05\x00", "%s in a storm: method reply %s%s, expected 05 00"
          % (what, hexb(got), " and a close" if closed else " in 5 s"))
    check(got[2:4] == b"\x05\x01" and len(got) == 12 and got[5] == 1,
          "%s in a storm: reply %s, expected a whole 05 01 00 01 ... (general failure)"
          % (what, hexb(got[2:])))
    check(closed, "%s in a storm: reply 0x01 but the connection stayed open" % what)
    s.close()


def expect_served(s, what):
    got, closed = answer(s, 10.0)
    check(got[:4] == b"\x05\x00\x05\x00" and not closed,
          "%s: %s%s, expected 05 00 05 00 ... (served)"
          % (what, hexb(got), " and a close" if closed else ""))
    echo_roundtrip(s, 4096)


def hold_fds(ctx, p, pid, free, idle):
    """Idle clients (accepted, silent: one fd each) until the proxy has free fds left. Each
    is waited for until the proxy has accepted it (a busy host may take longer than the
    steady count's look), or two would be sent for one fd."""
    for _ in range(8):
        held = steady_fds(pid)
        n = NOFILE - held
        if n == free:
            return
        check(n > free, "the proxy has %d fds free, fewer than the %d wanted" % (n, free))
        s = ctx.connect(p.addr, timeout=10)
        idle.append(s)
        check(wait_until(lambda: open_fds(pid) > held, 5),
              "an idle client was not accepted within 5 s with %d fds free" % n)
    raise Fail("could not bring the proxy to %d free fds" % free)


@case("fd_storm_keeps_tunnels_and_leaks_nothing", timeout=40)
def fd_storm(ctx):
    need_ringsocks("needs prlimit around ringsocks")
    echo = ctx.echo_server()
    dns = ctx.dns_stub()
    p = ctx.proxy(args=("--shards", "1", "--relay", "splice", "--max-conns", "1000",
                        "--handshake-timeout", "60", "--resolver", dns.spec),
                  wrap=("prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"))
    pid = p.proc.pid
    m = scrape(p)
    check(metric(m, "ringsocks_pipe_fallbacks_total") == 0, "pipe fallbacks before any load")
    check(metric(m, "ringsocks_pipes_idle") == 0, "idle pipes before any load")
    base = steady_fds(pid, samples=10)  # a second: what start-up opens for a while is gone
    n_tunnels = (NOFILE - base - 1) // 2
    check(n_tunnels >= 8, "%d fds at start leave room for only %d tunnels under %d"
          % (base, n_tunnels, NOFILE))

    tunnels, idle = [], []
    for _ in range(n_tunnels):
        s = ask(ctx, p, 1, "127.0.0.1", echo.port)
        got, closed = answer(s, 10.0)
        check(got[:4] == b"\x05\x00\x05\x00" and not closed,
              "tunnel before the storm: %s" % hexb(got))
        s.settimeout(10)
        tunnels.append(s)
    # Idle tunnels hold no pipe: two fds each.
    check(steady_fds(pid) == base + 2 * n_tunnels, "%d fds with %d idle tunnels, expected %d + 2 "
          "each" % (open_fds(pid), n_tunnels, base))

    # One fd free: accepts work, a request's socket does not, and no pipe (two fds) can be had.
    hold_fds(ctx, p, pid, 1, idle)
    for cmd, host, port, what in ((1, "127.0.0.1", echo.port, "CONNECT"),
                                  (2, "0.0.0.0", 0, "BIND"),
                                  (3, "0.0.0.0", 0, "UDP ASSOCIATE")):
        expect_general_failure(ask(ctx, p, cmd, host, port), what)
    # A name: c-ares has no socket to ask on either. Its servers did not fail the name.
    expect_general_failure(ask(ctx, p, 1, "good.test", echo.port), "CONNECT by name")
    several = [ask(ctx, p, 1, "127.0.0.1", echo.port) for _ in range(6)]
    for i, s in enumerate(several):
        expect_general_failure(s, "CONNECT %d of 6 at once" % (i + 1))
    for _ in range(2):
        for s in tunnels:
            echo_roundtrip(s, 32768)
    p.check_alive()

    # No fd free: accepting pauses; new clients wait, nothing spins, tunnels go on.
    loops0 = metric(scrape(p), "ringsocks_shard_loop_iterations_total", shard="0")
    hold_fds(ctx, p, pid, 0, idle)
    waiting = [ask(ctx, p, 1, "127.0.0.1", echo.port) for _ in range(3)]
    for s in waiting:
        got, closed = answer(s, 1.0)
        check(got == b"" and not closed, "a client with no fd left for it got %s%s, expected to "
              "wait" % (hexb(got), " and a close" if closed else ""))
    t0 = cpu_seconds(pid)
    time.sleep(1.5)
    used = cpu_seconds(pid) - t0
    check(used < 0.6, "the proxy used %.2f s of CPU in 1.5 s with no fd free and 3 clients "
          "waiting: something spins" % used)
    for s in tunnels[:4]:
        echo_roundtrip(s, 32768)

    # The tunnels leave: the waiting clients are answered, never left hanging. Served, or
    # refused 0x01 like those above when the multishot accept took them all into the first
    # fds that came free and left none for one's request.
    for s in tunnels:
        s.close()
    served = 0
    for i, s in enumerate(waiting):
        got, closed = answer(s, 10.0)
        what = "client %d that waited for an fd" % (i + 1)
        if got[:4] == b"\x05\x00\x05\x00" and not closed:
            echo_roundtrip(s, 4096)
            served += 1
        else:
            check(got[:4] == b"\x05\x00\x05\x01" and len(got) == 12 and closed,
                  "%s: %s%s, expected to be served (05 00 05 00) or refused (05 00 05 01, close)"
                  % (what, hexb(got), " and a close" if closed else ""))
    check(served > 0, "none of the 3 clients that waited for an fd was served once the tunnels "
          "left")
    for s in idle:
        s.close()
    m = scrape(p)
    # The CPU check above cannot see a loop that goes round for nothing on every host (a VM's
    # tick-based accounting missed one entirely: 0.07 s in 1.5 s); its iterations can. A shard
    # that re-arms its accept at once on EMFILE did 718,778 here, a paused one 64.
    loops = metric(m, "ringsocks_shard_loop_iterations_total", shard="0") - loops0
    check(loops < 5000, "%d shard loop iterations while no fd was free for 1.5 s and the "
          "tunnels left: accepting spins on EMFILE" % loops)
    fallbacks = metric(m, "ringsocks_pipe_fallbacks_total")
    check(fallbacks and fallbacks > 0, "ringsocks_pipe_fallbacks_total is %r after relaying "
          "with no pipe to be had" % fallbacks)
    for s in waiting:
        s.close()

    def settled():
        idle_pipes = metric(scrape(p), "ringsocks_pipes_idle")
        n = steady_fds(pid)
        return (n, idle_pipes) if n == base + 2 * idle_pipes else None

    check(wait_until(settled, 5), "%d fds once every client left, expected %d at start + 2 per "
          "idle pipe (%r)" % (open_fds(pid), base, metric(scrape(p), "ringsocks_pipes_idle")))

    # A new client splices again: no fallback, and its pipes go back to the pool.
    s = ask(ctx, p, 1, "127.0.0.1", echo.port)
    expect_served(s, "a client after the storm")
    for _ in range(4):
        echo_roundtrip(s, 65536)
    s.close()
    m = scrape(p)
    check(metric(m, "ringsocks_pipe_fallbacks_total") == fallbacks,
          "the tunnel after the storm fell back %d times: no pipe for it"
          % (metric(m, "ringsocks_pipe_fallbacks_total") - fallbacks))
    check(metric(m, "ringsocks_pipes_idle") >= 1, "no idle pipe after a splice tunnel ended")
    check(wait_until(settled, 5), "%d fds after the last client, expected %d + 2 per idle pipe "
          "(%r)" % (open_fds(pid), base, metric(scrape(p), "ringsocks_pipes_idle")))
    p.check_alive()
