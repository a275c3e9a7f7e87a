#!/usr/bin/env python3
"""
preload_client.py - client programs for cases_preload.py, run under libringsocks-preload.so.
They are plain Python socket users that know nothing of SOCKS: the library must route them.

    preload_client.py urllib URL                 GET URL with urllib, print the body's sha256
    preload_client.py get MODE HOST PORT PATH    HTTP/1.0 GET over a socket, MODE one of
                                                 blocking, select, poll, epoll, epollet
                                                 (non-blocking connect, then wait for writable);
                                                 MODE6: the same on an IPv6 socket
    preload_client.py echo MODE HOST PORT        non-blocking connect, then "ping" -> "ping"
    preload_client.py udp HOST PORT [HOW]        "ping" -> "ping" on an unconnected UDP socket with
                                                 sendto/recvfrom (HOW "to", the default) or
                                                 sendmsg/recvmsg ("msg"), or on a connected one
                                                 with send/recv ("conn")
    preload_client.py dns HOST PORT NAME         a DNS A query for NAME with sendto/recvfrom

Prints one JSON line: sha256 (get, urllib), connect_s (how long connect() took),
writable_s (when the socket turned writable, from the start), reply (echo, udp), from and
local (udp, dns: the answer's source and the socket's own address), a (dns: the addresses).
"""

import hashlib
import json
import select
import socket
import sys
import time


def wait_writable(s, mode, t0):
    fd = s.fileno()
    if mode == "select":
        while True:
            _, w, _ = select.select([], [s], [], 20)
            if w:
                break
            raise SystemExit("select: timeout")
    elif mode == "poll":
        p = select.poll()
        p.register(fd, select.POLLOUT)
        if not p.poll(20000):
            raise SystemExit("poll: timeout")
    elif mode in ("epoll", "epollet"):
        ep = select.epoll()
        ep.register(fd, select.EPOLLOUT | (select.EPOLLET if mode == "epollet" else 0))
        if not ep.poll(20):
            raise SystemExit("epoll: timeout")
        ep.close()
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise SystemExit("SO_ERROR %d after the socket turned writable" % err)
    return time.monotonic() - t0


def connect(mode, host, port):
    # MODE6: an IPv6 socket (a placeholder comes IPv4-mapped)
    family = socket.AF_INET6 if mode.endswith("6") else socket.AF_UNSPEC
    mode = mode.rstrip("6")
    ai = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0]
    s = socket.socket(ai[0], socket.SOCK_STREAM)
    t0 = time.monotonic()
    out = {}
    if mode == "blocking":
        s.connect(ai[4])
        out["connect_s"] = time.monotonic() - t0
        out["writable_s"] = out["connect_s"]
        return s, out
    s.setblocking(False)
    rc = s.connect_ex(ai[4])
    out["connect_s"] = time.monotonic() - t0
    out["connect_rc"] = rc
    if rc not in (0, 115):  # EINPROGRESS
        raise SystemExit("connect: %s" % rc)
    out["writable_s"] = wait_writable(s, mode, t0)
    s.setblocking(True)
    s.settimeout(20)
    return s, out


def recv_all(s):
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b


def main():
    if sys.argv[1] == "urllib":
        import urllib.request
        body = urllib.request.urlopen(sys.argv[2], timeout=20).read()
        print(json.dumps({"sha256": hashlib.sha256(body).hexdigest()}))
        return
    if sys.argv[1] == "get":
        mode, host, port, path = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        s, out = connect(mode, host, port)
        s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
        resp = recv_all(s)
        head, _, body = resp.partition(b"\r\n\r\n")
        out["status"] = head.split(b"\r\n")[0].decode("latin-1")
        out["sha256"] = hashlib.sha256(body).hexdigest()
        print(json.dumps(out))
        return
    if sys.argv[1] == "echo":
        mode, host, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
        s, out = connect(mode, host, port)
        s.sendall(b"ping")
        out["reply"] = s.recv(16).decode("latin-1")
        print(json.dumps(out))
        return
    if sys.argv[1] in ("udp", "dns"):
        host, port = sys.argv[2], int(sys.argv[3])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        how = "to"
        if sys.argv[1] == "udp":
            msg = b"ping"
            how = sys.argv[4] if len(sys.argv) > 4 else "to"
        else:
            msg = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            msg += b"".join(bytes([len(x)]) + x.encode() for x in sys.argv[4].split(".")) + b"\x00\x00\x01\x00\x01"
        if how == "conn":
            s.connect((host, port))
            s.send(msg)
            data, peer = s.recv(4096), s.getpeername()
        elif how == "msg":
            s.sendmsg([msg[:2], msg[2:]], [], 0, (host, port))
            data, _, _, peer = s.recvmsg(4096)
        else:
            s.sendto(msg, (host, port))
            data, peer = s.recvfrom(4096)
        out = {"from": list(peer), "local": list(s.getsockname())}
        if sys.argv[1] == "udp":
            out["reply"] = data.decode("latin-1")
        else:
            an = int.from_bytes(data[6:8], "big")
            out["rcode"] = data[3] & 15
            out["a"] = [socket.inet_ntoa(data[-4:])] if an else []
        print(json.dumps(out))
        return
    raise SystemExit("unknown command %s" % sys.argv[1])


if __name__ == "__main__":
    main()
