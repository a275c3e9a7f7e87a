"""
cases_floods.py - bursts that fill the proxy's queues (issue #18 item 2): the ring's
submission queue full (--ring-entries 1, hundreds of tunnels at once), and 20,000
connections at once, with and without room for them in the proxy's fd table. Each
checks that everyone is served, that the proxy neither crashes nor spins, and that
it leaks nothing: connections open back to 0, the fd count back to its baseline.
One engine only (the default): the relay is not what these exercise.
"""

import os
import select
import socket
import time

from cases_limits import cpu_seconds, open_fds
from cases_udp import associate, echo_via
from harness import (GREETING, Fail, admin_request, case, check, echo_roundtrip, metric,
                     need_option, need_ringsocks, parse_prometheus, request, socks_connect,
                     wait_until)


def scrape(p):
    status, text, _ = admin_request(p, "GET", "/metrics")
    check(status == 200, "GET /metrics: status %d" % status)
    return parse_prometheus(text)


def shard_sum(samples, name):
    """A per-shard series summed over the shards."""
    return sum(v for (n, _), v in samples.items() if n == name)


def idle_again(p, base_fds, timeout=10.0):
    """Wait until the proxy holds no connection and its fd count is back to base_fds."""
    def settled():
        s = scrape(p)
        return (metric(s, "ringsocks_connections_open") == 0
                and open_fds(p.proc.pid) == base_fds)
    if not wait_until(settled, timeout, 0.1):
        s = scrape(p)
        raise Fail("%.0f s after the clients left: %s connections open, %d fds (baseline %d)"
                   % (timeout, metric(s, "ringsocks_connections_open"), open_fds(p.proc.pid),
                      base_fds))


def served(ctx, p, echo, timeout=3.0):
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port, timeout=timeout)
    echo_roundtrip(s, 4096)
    s.close()


def tunnels_at_once(p, port, n, size, deadline_s=20.0):
    """n SOCKS5 CONNECTs sent at once (greeting and request in one write), then on every
    tunnel size bytes of its own both ways, all in flight together. Returns the sockets;
    fails naming the first tunnel that got a wrong reply or wrong bytes."""
    want_reply = b"\x05\x00\x05\x00"
    socks = []
    for _ in range(n):
        s = socket.create_connection(p.addr, timeout=5)
        s.setblocking(False)
        socks.append(s)
    for s in socks:
        s.sendall(GREETING + request("127.0.0.1", port))
    data = {s: os.urandom(size) for s in socks}
    got = {s: b"" for s in socks}
    need = {s: 12 for s in socks}   # the method reply and the CONNECT reply (IPv4 BND)
    sent = {s: 0 for s in socks}
    deadline = time.monotonic() + deadline_s
    while any(len(got[s]) < need[s] + size for s in socks):
        if time.monotonic() > deadline:
            short = [i for i, s in enumerate(socks) if len(got[s]) < need[s] + size]
            raise Fail("%d of %d tunnels incomplete after %.0f s (first: #%d, %d bytes back)"
                       % (len(short), n, deadline_s, short[0], len(got[socks[short[0]]])))
        writers = [s for s in socks if len(got[s]) >= 12 and sent[s] < size]
        readers = [s for s in socks if len(got[s]) < need[s] + size]
        r, w, _ = select.select(readers, writers, [], 0.5)
        for s in w:
            sent[s] += s.send(data[s][sent[s]:sent[s] + 65536])
        for s in r:
            b = s.recv(65536)
            if not b:
                raise Fail("tunnel #%d closed after %d bytes" % (socks.index(s), len(got[s])))
            got[s] += b
            if len(got[s]) >= 12 and got[s][:4] != want_reply:
                raise Fail("tunnel #%d: replies %s, expected 05 00 05 00 ..."
                           % (socks.index(s), got[s][:12].hex()))
    for i, s in enumerate(socks):
        check(got[s][12:] == data[s], "tunnel #%d: its %d bytes came back wrong" % (i, size))
    return socks


@case("sq_full_many_tunnels", timeout=60)
def sq_full_many_tunnels(ctx):
    """--ring-entries 1: every operation past the first of a loop iteration finds the
    submission queue full. 200 tunnels at once (greeting, CONNECT and 16 KiB of their own
    both ways, all in flight together) and 20 UDP associations must all be served, with
    ringsocks_shard_sq_full_total counting the path; afterwards the proxy holds no
    connection and its baseline fds, and serves a new client."""
    need_ringsocks()
    need_option("--ring-entries")
    echo = ctx.echo_server()
    uecho = ctx.udp_echo()
    p = ctx.proxy(args=("--ring-entries", "1"))
    served(ctx, p, echo)
    scrape(p)
    check(wait_until(lambda: metric(scrape(p), "ringsocks_connections_open") == 0, 5),
          "the first tunnel is still open 5 s after it closed")
    base_fds = open_fds(p.proc.pid)
    socks = tunnels_at_once(p, echo.port, 200, 16384)
    assocs = []
    for i in range(20):
        s, relay = associate(ctx, p)
        u = ctx.udp_socket()
        echo_via(u, relay, "127.0.0.1", uecho.port, b"datagram %d" % i)
        assocs.append((s, u))
    full = shard_sum(scrape(p), "ringsocks_shard_sq_full_total")
    check(full > 0, "ringsocks_shard_sq_full_total is 0 after 200 tunnels on a 1-entry ring: the "
          "full-queue path never ran")
    p.check_alive()
    for s in socks:
        s.close()
    for s, u in assocs:
        s.close()
        u.close()
    idle_again(p, base_fds)
    served(ctx, p, echo)
