#!/usr/bin/env python3
"""
gssmock.py - a reference RFC 1961 SOCKS5 server on python3-gssapi, for one purpose: to show
that gssclient.py's protected paths (CONNECT, BIND, UDP ASSOCIATE under levels 0, 1 and 2)
are right before its results are held against ringsocks (gss_client_vs_mock in
cases_gss.py). Not a server to test anything else with: no rules, no limits, a thread per
client, errors end the connection. The acceptor's keytab is KRB5_KTNAME's (the realm's
server_env()).

    python3 gssmock.py PORT        prints "listening", then serves 127.0.0.1:PORT until killed

Each client: 05 01 whatever it offered; the context (mtyp 1 both ways); the level granted as
asked (3 as 2), answered in the form asked (wrapped or bare); the request and everything
after it through gssclient.Protection (mtyp-3 frames under 1 and 2); one line per client on
stdout: "client NAME level L cmd C" or "client error: WHY".
"""

import os
import select
import socket
import struct
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gssapi  # noqa: E402
from gssclient import MTYP_CTX, MTYP_DATA, MTYP_LEVEL, Conn, Protection, frame, socks_addr  # noqa: E402


def read_request(prot, conn):
    head = prot.read_plain(conn, 4, "request")
    if head[3] != 1:
        raise ValueError("request atyp %d (only IPv4 here)" % head[3])
    rest = prot.read_plain(conn, 6, "request")
    return head[1], socket.inet_ntop(socket.AF_INET, rest[:4]), struct.unpack("!H", rest[4:])[0]


def send_all(sock, data):
    sock.setblocking(True)
    sock.sendall(data)
    sock.setblocking(False)


def forward(src, dst, transform, size):
    """One read from src, transformed, to dst; EOF passed on as a half-close. False at EOF."""
    d = src.recv(size)
    if not d:
        dst.shutdown(socket.SHUT_WR)
        return False
    send_all(dst, transform(d))
    return True


def relay(conn, prot, t):
    """Client frames -> plaintext to t; t's bytes -> frames to the client; EOFs forwarded."""
    s = conn.sock
    if prot.plain:
        t.sendall(bytes(prot.plain))
    if conn.buf:
        t.sendall(prot.feed(bytes(conn.buf)))
        conn.buf.clear()
    s.setblocking(False)
    t.setblocking(False)
    open_ = {s: True, t: True}
    while open_[s] or open_[t]:
        r, _, _ = select.select([x for x in (s, t) if open_[x]], [], [], 10)
        if not r:
            raise ValueError("relay idle for 10 s")
        if s in r:
            open_[s] = forward(s, t, prot.feed, 65536)
        if t in r:
            open_[t] = forward(t, s, prot.encode, 16000)


def udp_relay(conn, prot, u, client):
    """Datagrams from the client (the address of its request) to their DST; answers back
    with the SOCKS UDP header, each wrapped under 1 and 2; until the TCP connection ends."""
    while True:
        r, _, _ = select.select([u, conn.sock], [], [], 10)
        if not r or conn.sock in r:
            return
        d, src = u.recvfrom(65536)
        if src == client:
            if prot.level:
                d = prot.ctx.unwrap(d[4:]).message
            u.sendto(d[10:], (socket.inet_ntop(socket.AF_INET, d[4:8]), struct.unpack("!H", d[8:10])[0]))
        else:
            d = b"\x00\x00\x00" + socks_addr(src[0], src[1]) + d
            if prot.level:
                d = frame(MTYP_DATA, prot.wrap(d))
            u.sendto(d, client)


def serve(sock):
    conn = Conn.__new__(Conn)
    conn.sock = sock
    conn.sock.settimeout(10)
    conn.buf = bytearray()
    n = conn.read(2, "greeting")[1]
    conn.read(n, "greeting")
    conn.send(b"\x05\x01")
    ctx = gssapi.SecurityContext(usage="accept", creds=gssapi.Credentials(usage="accept"))
    while not ctx.complete:
        _, tok = conn.read_msg("context")
        out = ctx.step(tok)
        if out:
            conn.send(frame(MTYP_CTX, out))
    _, tok = conn.read_msg("level")
    nec = len(tok) == 1
    level = min(tok[0] if nec else ctx.unwrap(tok).message[0], 2)
    conn.send(frame(MTYP_LEVEL, bytes([level]) if nec else ctx.wrap(bytes([level]), False).message))
    prot = Protection(ctx, level, {"server_frames": 0, "server_unencrypted": 0})
    cmd, host, port = read_request(prot, conn)
    print("client %s level %d cmd %d" % (ctx.initiator_name, level, cmd), flush=True)
    ok = b"\x05\x00\x00"
    if cmd == 1:
        t = socket.create_connection((host, port))
        conn.send(prot.encode(ok + socks_addr(*t.getsockname()[:2])))
        relay(conn, prot, t)
    elif cmd == 2:
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        conn.send(prot.encode(ok + socks_addr(*ls.getsockname()[:2])))
        t, peer = ls.accept()
        conn.send(prot.encode(ok + socks_addr(*peer[:2])))
        relay(conn, prot, t)
    elif cmd == 3:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        conn.send(prot.encode(ok + socks_addr(*u.getsockname()[:2])))
        udp_relay(conn, prot, u, (host, port))


def serve_one(sock):
    try:
        serve(sock)
    except Exception as e:
        print("client error: %r" % e, flush=True)
    finally:
        sock.close()


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(sys.argv[1])))
    ls.listen(16)
    print("listening", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
