#!/usr/bin/env python3
"""conn_seeds.py - write the seed programs of tests/fuzz/fuzz_conn.c to tests/fuzz/corpus/conn/.

Each seed is a program in fuzz_conn.c's step language (its opcodes below): a config byte,
then steps. Run it again after a change to the step language:

    python3 tests/fuzz/conn_seeds.py
"""
import os
import struct

ACCEPT, WRITE, SHUT, HAND, EXEC, PASS, STALE, TICK, RELOAD, DNS, AUTH, TWRITE, TSHUT, DRAIN, RUN, REAP = range(16)
POL_OPEN, POL_PASSWORD, POL_DENY = range(3)
CFG_AUTH_LATER = 4


def write(data, target=False, who=0):
    """The client (or target) who sends data, in pieces of at most 64 bytes."""
    out = b""
    for i in range(0, len(data), 64):
        piece = data[i:i + 64]
        out += bytes([TWRITE if target else WRITE, who, len(piece) - 1]) + piece
    return out


def run(n=8):
    return bytes([RUN, n - 1, DRAIN])


def socks5_connect_v4(port=80):
    return b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack(">H", port)


def socks5_connect_name(name, port=80):
    return b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port)


def relay_and_close():
    return (write(b"ping from the client") + run() + write(b"pong from the target", target=True) +
            run() + bytes([SHUT, 0, 1]) + run() + bytes([TSHUT, 0, 1]) + run())


SEEDS = {
    # SOCKS5 without auth, CONNECT 127.0.0.1:80, bytes both ways, then both ends close.
    "socks5_noauth_connect":
    bytes([POL_OPEN, ACCEPT, 0]) + write(b"\x05\x01\x00") + run() + write(socks5_connect_v4()) +
    run() + relay_and_close(),
    # SOCKS5 with a password (answered at once), CONNECT to a name of the hosts table.
    "socks5_password":
    bytes([POL_PASSWORD, ACCEPT, 0]) + write(b"\x05\x01\x02") + run() +
    write(b"\x01\x05alice\x02pw") + run() + write(socks5_connect_name(b"target.test")) + run() +
    relay_and_close(),
    # The same, the password worker answering later, and a reload that revokes the user.
    "socks5_password_later_reload":
    bytes([POL_PASSWORD | CFG_AUTH_LATER, ACCEPT, 0]) + write(b"\x05\x01\x02\x01\x05alice\x02pw") +
    run() + bytes([AUTH, 0, 1]) + run() + write(socks5_connect_v4()) + run() +
    write(b"ping") + run() + bytes([RELOAD, POL_DENY]) + run() + bytes([TICK, 0x85]) + run(),
    # SOCKS4a by name: DNS answers two addresses (::1 first, Happy Eyeballs), then relay.
    "socks4a_name":
    bytes([POL_OPEN, ACCEPT, 0]) +
    write(b"\x04\x01\x00\x50\x00\x00\x00\x01user\x00remote.example\x00") + run() +
    bytes([DNS, 0, 1]) + run() + bytes([TICK, 3]) + run() + relay_and_close(),
    # Happy Eyeballs: a name, three addresses, the delay expires and a second attempt races the
    # first; connect_timeout cancels both, the client having left.
    "happy_eyeballs_timeout":
    bytes([POL_OPEN, ACCEPT, 0]) + write(b"\x05\x01\x00") + run() +
    write(socks5_connect_name(b"remote.example")) + run() + bytes([DNS, 0, 1, TICK, 3]) +
    bytes([SHUT, 0, 1, TICK, 0x86]) + run(),
    # SOCKS4 by address, the request and relay bytes pipelined in one write.
    "socks4_pipelined":
    bytes([POL_OPEN, ACCEPT, 0]) + write(b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00GET / HTTP/1.0\r\n\r\n") +
    run() + bytes([TWRITE, 0, 4]) + b"hello" + run() + bytes([TSHUT, 0, 0]) + run(),
    # HTTP CONNECT.
    "http_connect":
    bytes([POL_OPEN, ACCEPT, 0]) +
    write(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n") + run() +
    relay_and_close(),
    # Garbage from three clients at once (one waits for a context), a handshake timeout.
    "garbage_timeout":
    bytes([POL_OPEN, ACCEPT, 0, ACCEPT, 0, ACCEPT, 0]) + write(b"\x05\xff\x00\x13garbage", who=0) +
    write(b"\x05\x01", who=1) + run() + bytes([TICK, 0x80 | 11]) + run() + bytes([TICK, 0x83]) +
    run(),
    # BIND: the first reply, then nobody connects: bind_timeout.
    "socks5_bind":
    bytes([POL_OPEN, ACCEPT, 0]) + write(b"\x05\x01\x00") + run() +
    write(b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50") + run() + bytes([TICK, 0x86]) + run(),
    # Completions by hand (bytes of the program itself read as the client's), a stale CQE, errors.
    "by_hand":
    bytes([POL_OPEN, ACCEPT, 0]) + write(b"\x05\x01\x00") + bytes([EXEC, 0, HAND, 0, 0, 0]) +
    bytes([STALE, 0, 7, HAND, 0, 0x10, 0]) + write(socks5_connect_v4()) + run() +
    bytes([HAND, 0, 0x10, 0, HAND, 1, 0x03, 0, HAND, 0, 0x1C, 0]) + run() +
    bytes([TICK, 0x85, TICK, 0x85]) + run(),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "corpus", "conn")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
