#!/usr/bin/env python3
"""
soak_clients.py - the soak's (bench/soak.sh) clients that socksload has no mode for, each
run for --duration seconds against a ringsocks with password auth, then one JSON line on
stdout with its counts:

  bind       SOCKS5 BIND: the first reply's address is connected to by a peer of our own,
             the second reply must name that peer, then bytes both ways, verified. A wrong
             byte, reply or close is an error ("errors"); "ok" counts full exchanges.
  malformed  clients the proxy must refuse: garbage greetings, a truncated greeting left
             open, a wrong password, a bad address type, a SOCKS4 request (refused under
             password auth). "refused" counts each one closed or answered with a failure;
             one that got a success reply is an error.
  slow       tunnels to a target that writes without end, whose client reads nothing: the
             proxy must close them at write_timeout ("refused": closed by the proxy; one
             still open at --duration + 20 s is an error).

Standard library only. Traffic to 127.0.0.1 only.
"""

import argparse
import json
import os
import random
import socket
import struct
import sys
import threading
import time


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def read_reply(s):
    head = recv_exact(s, 4)
    if head[0] != 5:
        raise ValueError("reply version %d" % head[0])
    atyp = head[3]
    if atyp == 1:
        addr = socket.inet_ntoa(recv_exact(s, 4))
    elif atyp == 4:
        addr = socket.inet_ntop(socket.AF_INET6, recv_exact(s, 16))
    elif atyp == 3:
        addr = recv_exact(s, recv_exact(s, 1)[0]).decode()
    else:
        raise ValueError("reply atyp %d" % atyp)
    port = struct.unpack("!H", recv_exact(s, 2))[0]
    return head[1], addr, port


def login(proxy, user, password, timeout=10.0, source=None):
    s = socket.create_connection(proxy, timeout=timeout, source_address=source)
    s.sendall(b"\x05\x01\x02")
    if recv_exact(s, 2) != b"\x05\x02":
        raise ValueError("method not password")
    u, p = user.encode(), password.encode()
    s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
    if recv_exact(s, 2) != b"\x01\x00":
        raise ValueError("login refused")
    return s


def request(cmd, host, port):
    return bytes([5, cmd, 0, 1]) + socket.inet_aton(host) + struct.pack("!H", port)


def bind_once(a, name):
    s = login(a.proxy, name, a.password)
    peer = None
    try:
        s.sendall(request(2, "127.0.0.1", 0))
        rep, addr, port = read_reply(s)
        if rep != 0:
            raise ValueError("first BIND reply 0x%02x" % rep)
        peer = socket.create_connection((addr, port), timeout=10)
        rep, paddr, pport = read_reply(s)
        if rep != 0 or (paddr, pport) != peer.getsockname():
            raise ValueError("second BIND reply 0x%02x names %s:%d, peer is %s:%d" %
                             ((rep, paddr, pport) + peer.getsockname()))
        up, down = os.urandom(4096), os.urandom(4096)
        s.sendall(up)
        if recv_exact(peer, len(up)) != up:
            raise ValueError("BIND data client to peer differs")
        peer.sendall(down)
        if recv_exact(s, len(down)) != down:
            raise ValueError("BIND data peer to client differs")
    finally:
        s.close()
        if peer:
            peer.close()


def malformed_once(a, name, kind):
    """One misbehaving client of kind 0..5; True when the proxy refused it (closed, or a
    failure). Wrong passwords come from 127.0.0.2 under a name of their own (the lockout
    locks that address and pair, not the soak's other clients on 127.0.0.1); the rest from
    127.0.0.3."""
    src = ("127.0.0.2" if kind == 2 else "127.0.0.3", 0)
    s = socket.create_connection(a.proxy, timeout=15, source_address=src)
    try:
        if kind == 0:
            s.sendall(os.urandom(64))
        elif kind == 1:
            s.sendall(b"\x05\x05\x02")  # says 5 methods, sends 1, then waits: handshake_timeout
        elif kind == 2:
            s.sendall(b"\x05\x01\x02")
            recv_exact(s, 2)
            s.sendall(b"\x01\x08intruder\x05wrong")
        elif kind == 3:
            s.close()
            s = login(a.proxy, name, a.password, source=src)
            s.sendall(b"\x05\x01\x00\x09" + b"\x00" * 6)  # address type 9
        elif kind == 4:
            s.sendall(b"\x04\x01" + struct.pack("!H", 9) + socket.inet_aton("127.0.0.1") + b"x\x00")
        else:
            s.sendall(b"\x05\x00")  # no methods at all
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            data += c
            if len(data) > 1024:
                return False
    except (ConnectionResetError, EOFError, socket.timeout):
        pass
    finally:
        s.close()
    # Refused: nothing, a method refusal, an auth failure, or a non-zero reply.
    if kind == 3 and data[:2] == b"\x05\x00":
        return False
    if kind == 4 and data[1:2] == b"\x5a":
        return False
    return True


def flood_target():
    """A target that writes without end to whoever connects. Returns its port."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(256)

    def pour(c):
        blob = b"x" * 65536
        try:
            while True:
                c.sendall(blob)
        except OSError:
            pass
        finally:
            c.close()

    def serve():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=pour, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bind", "malformed", "slow"])
    ap.add_argument("--proxy", required=True, help="HOST:PORT")
    ap.add_argument("--user", default="soak-%d", help="%%d: the client's number mod --users")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--password", default="soak")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pause", type=float, default=0.05, help="between one worker's clients")
    a = ap.parse_args()
    h, p = a.proxy.rsplit(":", 1)
    a.proxy = (h, int(p))
    names = [a.user % i for i in range(a.users)]
    counts = {"mode": a.mode, "ok": 0, "refused": 0, "errors": 0, "failures": {}}
    lock = threading.Lock()
    stop = time.monotonic() + a.duration

    def note(key, why=None):
        with lock:
            counts[key] += 1
            if why:
                counts["failures"][why] = counts["failures"].get(why, 0) + 1

    if a.mode == "slow":
        port = flood_target()
        socks = []
        for i in range(a.workers):
            try:
                s = login(a.proxy, names[i % len(names)], a.password)
                s.sendall(request(1, "127.0.0.1", port))
                rep, _, _ = read_reply(s)
                if rep != 0:
                    raise ValueError("reply 0x%02x" % rep)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                socks.append(s)
            except (OSError, ValueError, EOFError) as e:
                note("errors", "open: %s" % e)
        # Read nothing; at the end, see which the proxy closed (EOF or reset after draining).
        time.sleep(max(0.0, stop - time.monotonic()))
        for s in socks:
            s.setblocking(False)
            closed = False
            deadline = time.monotonic() + 20
            try:
                while time.monotonic() < deadline:
                    try:
                        if not s.recv(1 << 20):
                            closed = True
                            break
                    except BlockingIOError:
                        time.sleep(0.05)
            except OSError:
                closed = True
            note("refused" if closed else "errors", None if closed else "slow reader still open")
            s.close()
    else:
        def worker(w):
            n = w
            while time.monotonic() < stop:
                name = names[n % len(names)]
                try:
                    if a.mode == "bind":
                        bind_once(a, name)
                        note("ok")
                    elif malformed_once(a, name, n % 6):
                        note("refused")
                    else:
                        note("errors", "malformed kind %d accepted" % (n % 6))
                except (OSError, ValueError, EOFError) as e:
                    note("errors", "%s: %s" % (type(e).__name__, e))
                n += a.workers
                time.sleep(a.pause)

        ts = [threading.Thread(target=worker, args=(w,)) for w in range(a.workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
