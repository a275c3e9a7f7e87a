#!/usr/bin/env python3
"""
gssclient.py - a SOCKS5 client through GSS-API (RFC 1961) for the integration suite, over
python3-gssapi (Debian's package, MIT Kerberos underneath). Run as a subprocess, with the
realm's client environment (krb.py: KrbRealm.client_env(user) gives KRB5_CONFIG and
KRB5CCNAME): the GSS library reads them when it is first used, and a process of its own
keeps one test's credential cache from leaking into another's. One JSON object on stdout
says what happened at each step; the exit status is 0 whenever the client ran to its end
(whatever the server did), 2 on a usage error or a crash of the client itself.

    python3 gssclient.py --proxy 127.0.0.1:1080 --target rcmd/localhost [options]

The steps, each recorded in the JSON:
  greeting      05 N METHODS (--methods, default 01), the server's choice ("method": "01",
                "ff", or "02", then RFC 1929 with --login/--password when given)
  context       RFC 1961 section 3: mtyp-1 tokens until the context is complete, mutual
                authentication (the server's AP-REP is required); "abort": true when the
                server answered 01 ff, "closed" how the connection ended after it
  level         section 4: the asked level (--level, 0-3) wrapped with conf_req FALSE, or
                the bare octet (--nec); "granted" and "granted_form" (wrapped | bare)
  request       CONNECT (--cmd connect --dest H:P), BIND (--cmd bind), UDP ASSOCIATE (--cmd
                udp --dest H:P of a UDP echo); in the clear after level 0, else each message
                an mtyp-3 frame (ver 1, mtyp 3, 2-byte length, gss_wrap token; conf under
                level 2), as everything after the level message is (section 5)
  data          connect: --bytes N random bytes to an echo target and back, sha256 compared,
                then a half-close and the echo's EOF back; bind: the client connects the peer
                to the first reply's address itself, reads the second reply, then --bytes
                each way; udp: --datagrams K datagrams of --dgram-size bytes through the
                relay, each (SOCKS UDP header + data) wrapped into ver 1 / mtyp 3 / len /
                token inside the UDP payload under level 1/2
  server frames "server_frames": how many protected frames came from the server,
                "server_unencrypted": how many of them were not encrypted (must be 0 under 2)

Misbehaving (--misbehave), for the negative cases:
  damage-frame     the first data frame after the reply with one token byte flipped
  integ-frame      the first data frame wrapped without confidentiality (under level 2)
  oversized-frame  a data frame header of length 65535 followed by 65535 bytes of junk
  empty-frame      a data frame of length 0
  oversized-level  a level message whose length (1000) is over the server's bound (512)
  truncate-context half of the first context token (its header says the whole), then close
  mtyp-ff          01 ff instead of the first context token
  bad-version      the first context token with ver 2
  (--first-token HEX: send these bytes as the first context token instead of a fresh one:
   a replayed token, or one made while a ticket was still valid; --token-only: make the
   first context token, print it as "first_token" and stop before connecting.)
After a misbehaving frame the client waits (--wait, default 5 s) for the server to end the
connection and records how: "end": "eof" | "reset" | "timeout" (with any bytes that came).
"""

import argparse
import hashlib
import json
import os
import select
import socket
import struct
import sys
import time

import gssapi
from gssapi.exceptions import GSSError

VER = 1
MTYP_CTX, MTYP_LEVEL, MTYP_DATA, MTYP_ABORT = 1, 2, 3, 0xFF
CHUNK = 16000           # plaintext bytes per protected frame (wrap limit with AES: 65475)
IO_TIMEOUT = 10.0


class Ended(Exception):
    """The server ended the connection: how ("eof", "reset", "abort", "timeout")."""

    def __init__(self, how, where):
        Exception.__init__(self, "%s %s" % (how, where))
        self.how = how
        self.where = where


def hexs(b, limit=64):
    h = bytes(b[:limit]).hex()
    return h + ("..." if len(b) > limit else "")


class Conn:
    """A TCP connection with a receive buffer: exact reads, RFC 1961 messages."""

    def __init__(self, addr, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, where):
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise Ended("timeout", where)
        except ConnectionResetError:
            raise Ended("reset", where)
        if not d:
            raise Ended("eof", where)
        self.buf += d

    def read(self, n, where):
        while len(self.buf) < n:
            self._fill(where)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_msg(self, where):
        """(mtyp, token) of one RFC 1961 message; Ended("abort") for 01 ff."""
        h = self.read(2, where)
        if h[0] != VER:
            raise ValueError("%s: message version %d (bytes %s)" % (where, h[0], hexs(h + self.buf)))
        if h[1] == MTYP_ABORT:
            raise Ended("abort", where)
        n = struct.unpack("!H", self.read(2, where))[0]
        return h[1], self.read(n, where)

    def wait_end(self, secs):
        """After something the server must refuse: how the connection ends, and what came first."""
        got = bytes(self.buf)
        self.sock.settimeout(secs)
        deadline = time.monotonic() + secs
        while True:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return "timeout", got
            except ConnectionResetError:
                return "reset", got
            if not d:
                return "eof", got
            got += d
            if time.monotonic() > deadline:
                return "timeout", got


def frame(mtyp, token, ver=VER):
    return struct.pack("!BBH", ver, mtyp, len(token)) + token


class Protection:
    """Level 0: the bytes themselves. Level 1/2: mtyp-3 frames of gss_wrap tokens."""

    def __init__(self, ctx, level, res):
        self.ctx = ctx
        self.level = level
        self.conf = level == 2
        self.res = res
        self.inbuf = bytearray()
        self.plain = bytearray()

    def encode(self, data, chunk=CHUNK):
        if self.level == 0:
            return bytes(data)
        out = bytearray()
        for i in range(0, len(data), chunk):
            out += frame(MTYP_DATA, self.wrap(data[i:i + chunk]))
        return bytes(out)

    def wrap(self, data, conf=None):
        return self.ctx.wrap(bytes(data), self.conf if conf is None else conf).message

    def unwrap(self, token):
        r = self.ctx.unwrap(bytes(token))
        self.res["server_frames"] += 1
        if not r.encrypted:
            self.res["server_unencrypted"] += 1
        return r.message

    def feed(self, wire):
        """Wire bytes in, plaintext out (what whole frames carried)."""
        if self.level == 0:
            return bytes(wire)
        self.inbuf += wire
        out = bytearray()
        while len(self.inbuf) >= 4:
            ver, mtyp, n = struct.unpack("!BBH", self.inbuf[:4])
            if ver != VER or mtyp != MTYP_DATA:
                raise ValueError("server frame ver %d mtyp %d (bytes %s)" % (ver, mtyp, hexs(self.inbuf)))
            if len(self.inbuf) < 4 + n:
                break
            out += self.unwrap(self.inbuf[4:4 + n])
            del self.inbuf[:4 + n]
        return bytes(out)

    def read_plain(self, conn, n, where):
        """Exactly n plaintext bytes from the connection (frames unwrapped); what whole
        frames carried beyond them waits in self.plain."""
        if self.level == 0:
            return conn.read(n, where)
        while len(self.plain) < n:
            if not conn.buf:
                conn._fill(where)
            self.plain += self.feed(bytes(conn.buf))
            conn.buf.clear()
        out = bytes(self.plain[:n])
        del self.plain[:n]
        return out


def socks_addr(host, port):
    try:
        return b"\x01" + socket.inet_pton(socket.AF_INET, host) + struct.pack("!H", port)
    except OSError:
        pass
    try:
        return b"\x04" + socket.inet_pton(socket.AF_INET6, host) + struct.pack("!H", port)
    except OSError:
        h = host.encode()
        return b"\x03" + bytes([len(h)]) + h + struct.pack("!H", port)


def read_reply(prot, conn, where):
    """A SOCKS5 reply through the protection: (rep, host, port, raw)."""
    head = prot.read_plain(conn, 4, where)
    atyp = head[3]
    if atyp == 1:
        rest = prot.read_plain(conn, 6, where)
        host = socket.inet_ntop(socket.AF_INET, rest[:4])
    elif atyp == 4:
        rest = prot.read_plain(conn, 18, where)
        host = socket.inet_ntop(socket.AF_INET6, rest[:16])
    elif atyp == 3:
        ln = prot.read_plain(conn, 1, where)
        rest = ln + prot.read_plain(conn, ln[0] + 2, where)
        host = rest[1:1 + ln[0]].decode("utf-8", "replace")
    else:
        raise ValueError("%s: reply %s with atyp %d" % (where, hexs(head), atyp))
    port = struct.unpack("!H", rest[-2:])[0]
    return head[1], host, port, head + rest


def pump(conn, prot, peer, payload, res, chunk):
    """Send payload through the tunnel (framed) while reading it back (unframed):
    peer is None for an echo target, or the BIND peer's socket, which reads what
    the client sent and sends its own payload back. Returns what came back."""
    s = conn.sock
    s.setblocking(False)
    out = bytearray(prot.encode(payload, chunk))
    back = bytearray(prot.plain)
    prot.plain.clear()
    if conn.buf:
        back += prot.feed(bytes(conn.buf))
        conn.buf.clear()
    peer_out = bytearray(payload[::-1]) if peer is not None else None
    peer_in = bytearray()
    want_back = len(payload)
    deadline = time.monotonic() + 60
    socks = [s] + ([peer] if peer is not None else [])
    if peer is not None:
        peer.setblocking(False)
    while len(back) < want_back or (peer is not None and len(peer_in) < len(payload)):
        if time.monotonic() > deadline:
            raise Ended("timeout", "data: %d of %d bytes back" % (len(back), want_back))
        w = ([s] if out else []) + ([peer] if peer_out else [])
        r, w, _ = select.select(socks, w, [], 5)
        if s in w:
            try:
                n = s.send(out[:262144])
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, ConnectionResetError):
                raise Ended("reset", "data: sending")
            del out[:n]
        if peer is not None and peer in w:
            try:
                n = peer.send(peer_out[:262144])
            except BlockingIOError:
                n = 0
            del peer_out[:n]
        if s in r:
            try:
                d = s.recv(262144)
            except BlockingIOError:
                d = None
            except ConnectionResetError:
                raise Ended("reset", "data: %d of %d bytes back" % (len(back), want_back))
            if d == b"":
                raise Ended("eof", "data: %d of %d bytes back" % (len(back), want_back))
            if d:
                back += prot.feed(d)
        if peer is not None and peer in r:
            try:
                d = peer.recv(262144)
            except BlockingIOError:
                d = None
            if d == b"":
                raise Ended("eof", "data: the BIND peer saw EOF after %d bytes" % len(peer_in))
            if d:
                peer_in += d
    s.setblocking(True)
    s.settimeout(IO_TIMEOUT)
    if peer is not None:
        res["peer_sha_ok"] = hashlib.sha256(peer_in).digest() == hashlib.sha256(payload).digest()
        return bytes(back), payload[::-1]
    return bytes(back), payload


def half_close(conn, prot, res, peer=None):
    """Shut our side; the far side (echo, or the BIND peer after our EOF) closes its own:
    the server must forward both EOFs."""
    conn.sock.shutdown(socket.SHUT_WR)
    if peer is not None:
        peer.settimeout(IO_TIMEOUT)
        try:
            res["peer_saw_eof"] = peer.recv(1) == b""
        except OSError as e:
            res["peer_saw_eof"] = "error: %s" % e
        peer.shutdown(socket.SHUT_WR)
    how, got = conn.wait_end(IO_TIMEOUT)
    extra = prot.feed(got) if got else b""
    res["eof_back"] = how == "eof" and not extra
    if extra:
        res["after_eof_bytes"] = len(extra)


def do_udp(conn, prot, args, res):
    fam = socket.AF_INET6 if ":" in args.dest_host else socket.AF_INET
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind(("::1" if fam == socket.AF_INET6 else "127.0.0.1", 0))
    me = u.getsockname()
    conn.send(prot.encode(b"\x05\x03\x00" + socks_addr(me[0], me[1])))
    rep, host, port, raw = read_reply(prot, conn, "UDP ASSOCIATE reply")
    res.update(reply=rep, reply_raw=raw.hex(), bnd="%s:%d" % (host, port))
    if rep != 0:
        return
    relay = (host, port)
    u.settimeout(3)
    ok = 0
    res["udp_errors"] = []
    header = b"\x00\x00\x00" + socks_addr(args.dest_host, args.dest_port)
    if args.udp_bad:
        res["udp_bad_answered"] = udp_bad(u, relay, prot, header, args.udp_bad)
    for i in range(args.datagrams):
        data = os.urandom(args.dgram_size)
        dgram = header + data
        if prot.level:
            dgram = frame(MTYP_DATA, prot.wrap(dgram))
        u.sendto(dgram, relay)
        try:
            got, src = u.recvfrom(65536)
        except socket.timeout:
            res["udp_errors"].append("datagram %d: no answer within 3 s" % i)
            continue
        if prot.level:
            if len(got) < 4 or got[0] != VER or got[1] != MTYP_DATA or struct.unpack("!H", got[2:4])[0] != len(got) - 4:
                res["udp_errors"].append("datagram %d: answer not a protected frame: %s" % (i, hexs(got)))
                continue
            try:
                got = prot.unwrap(got[4:])
            except GSSError as e:
                res["udp_errors"].append("datagram %d: unwrap: %s" % (i, e))
                continue
        if got[:3] != b"\x00\x00\x00" or not got.endswith(data):
            res["udp_errors"].append("datagram %d: answer %s is not header + the data" % (i, hexs(got)))
            continue
        ok += 1
    res["udp_ok"] = ok
    u.close()


def udp_bad(u, relay, prot, header, kind):
    """One datagram the server must drop (level 1/2), before the good ones: "clear" (the
    RFC 1928 datagram not framed), "damaged" (a token byte flipped), "integ" (wrapped
    without confidentiality, under level 2), "replay" (a good one sent again after its
    answer). Returns whether the bad one got an answer within 1 s."""
    dgram = header + os.urandom(64)
    if kind == "clear":
        bad = dgram
    elif kind == "integ":
        bad = frame(MTYP_DATA, prot.wrap(dgram, conf=False))
    else:
        bad = bytearray(frame(MTYP_DATA, prot.wrap(dgram)))
        if kind == "damaged":
            bad[-3] ^= 0x40
        else:  # replay: the original first, answered, then the very same bytes again
            u.sendto(bytes(bad), relay)
            try:
                got, _ = u.recvfrom(65536)
            except socket.timeout:
                return "the original of the replay got no answer"
            prot.unwrap(got[4:])  # the client's sequence state: this answer was received
    u.sendto(bytes(bad), relay)
    u.settimeout(1)
    try:
        u.recvfrom(65536)
        answered = True
    except socket.timeout:
        answered = False
    u.settimeout(3)
    return answered


def target_name(target):
    if "/" in target:
        return gssapi.Name(target, gssapi.NameType.kerberos_principal)
    return gssapi.Name(target, gssapi.NameType.hostbased_service)


def new_context(target):
    flags = (gssapi.RequirementFlag.mutual_authentication | gssapi.RequirementFlag.replay_detection
             | gssapi.RequirementFlag.out_of_sequence_detection | gssapi.RequirementFlag.integrity
             | gssapi.RequirementFlag.confidentiality)
    return gssapi.SecurityContext(name=target_name(target), usage="initiate", flags=flags,
                                  mech=gssapi.MechType.kerberos)


def context(conn, args, res):
    """RFC 1961 section 3. Returns the complete context, or None (res says why)."""
    if args.first_token:
        tok = bytes.fromhex(args.first_token)
        conn.send(frame(MTYP_CTX, tok))
        res["context_sent"] = "canned token of %d bytes" % len(tok)
        mtyp, back = conn.read_msg("context reply to the canned token")
        res["context_reply"] = "mtyp %d, %d bytes" % (mtyp, len(back))
        return None
    ctx = new_context(args.target)
    tok = ctx.step()
    res["first_token_len"] = len(tok)
    if args.misbehave == "mtyp-ff":
        conn.send(b"\x01\xff")
        return None
    if args.misbehave == "bad-version":
        conn.send(frame(MTYP_CTX, tok, ver=2))
        return None
    if args.misbehave == "truncate-context":
        conn.send(frame(MTYP_CTX, tok)[:4 + len(tok) // 2])
        conn.sock.shutdown(socket.SHUT_WR)
        return None
    rounds = 0
    while True:
        if tok:
            conn.send(frame(MTYP_CTX, tok))
        if ctx.complete:
            break
        mtyp, back = conn.read_msg("context, round %d" % rounds)
        if mtyp != MTYP_CTX:
            raise ValueError("context: server message mtyp %d" % mtyp)
        tok = ctx.step(back)
        rounds += 1
        if rounds > 10:
            raise ValueError("context: not complete after 10 rounds")
    res["context"] = True
    res["context_rounds"] = rounds
    res["mutual"] = bool(ctx.actual_flags & gssapi.RequirementFlag.mutual_authentication)
    res["server_principal"] = str(ctx.target_name)
    res["client_principal"] = str(ctx.initiator_name)
    return ctx


def level(conn, ctx, args, res):
    """RFC 1961 section 4. Returns the granted level, or None."""
    ask = bytes([args.level])
    if args.misbehave == "oversized-level":
        conn.send(struct.pack("!BBH", VER, MTYP_LEVEL, 1000) + b"\x00" * 1000)
        return None
    if args.nec:
        conn.send(frame(MTYP_LEVEL, ask))
    else:
        conn.send(frame(MTYP_LEVEL, ctx.wrap(ask, False).message))
    mtyp, tok = conn.read_msg("protection level reply")
    if mtyp != MTYP_LEVEL:
        raise ValueError("protection level reply: mtyp %d" % mtyp)
    if len(tok) == 1:
        res["granted_form"] = "bare"
        granted = tok[0]
    else:
        res["granted_form"] = "wrapped"
        r = ctx.unwrap(tok)
        res["granted_encrypted"] = r.encrypted
        if len(r.message) != 1:
            raise ValueError("protection level reply unwraps to %d bytes" % len(r.message))
        granted = r.message[0]
    res["granted"] = granted
    return granted


def misbehave_data(conn, prot, args, res):
    """A bad data frame once the tunnel is up; then how the server ends it."""
    m = args.misbehave
    if m == "damage-frame":
        tok = bytearray(prot.wrap(b"x" * 100))
        tok[len(tok) // 2] ^= 0x55
        bad = frame(MTYP_DATA, bytes(tok))
    elif m == "integ-frame":
        bad = frame(MTYP_DATA, prot.wrap(b"x" * 100, conf=False))
    elif m == "oversized-frame":
        bad = struct.pack("!BBH", VER, MTYP_DATA, 65535) + os.urandom(65535)
    elif m == "empty-frame":
        bad = struct.pack("!BBH", VER, MTYP_DATA, 0)
    else:
        raise ValueError("misbehave %s: not a data-phase one" % m)
    try:
        conn.send(bad)
    except (BrokenPipeError, ConnectionResetError):
        res["end"] = "reset"
        return
    how, got = conn.wait_end(args.wait)
    res["end"] = how
    if got:
        res["end_bytes"] = hexs(got)


def run(args, res):
    if args.token_only:
        res["first_token"] = new_context(args.target).step().hex()
        return
    conn = Conn((args.proxy_host, args.proxy_port))
    methods = bytes.fromhex(args.methods)
    conn.send(bytes([5, len(methods)]) + methods)
    m = conn.read(2, "method choice")
    res["method"] = "%02x" % m[1]
    if m[0] != 5:
        raise ValueError("method choice %s: version %d" % (hexs(m), m[0]))
    if m[1] == 0xFF:
        res["end"], _ = conn.wait_end(args.wait)
        return
    if m[1] == 0x02 and args.login is not None:
        u, p = args.login.encode(), args.password.encode()
        conn.send(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        st = conn.read(2, "RFC 1929 status")
        res["password_status"] = st[1]
        if st[1] != 0:
            return
        prot = Protection(None, 0, res)
        return request(conn, prot, args, res)
    if m[1] == 0x00 and args.cmd != "none":
        return request(conn, Protection(None, 0, res), args, res)
    if m[1] != 0x01:
        return
    try:
        ctx = context(conn, args, res)
    except Ended as e:
        res["abort"] = e.how == "abort"
        res["refused_at"] = e.where
        res["end"], rest = conn.wait_end(args.wait) if e.how == "abort" else (e.how, b"")
        if rest:
            res["after_abort"] = hexs(rest)
        return
    if ctx is None:
        how, got = conn.wait_end(args.wait)
        if got[:2] == b"\x01\xff":
            res["abort"] = True
            got = got[2:]
        res["end"] = how
        if got:
            res["end_bytes"] = hexs(got)
        return
    try:
        granted = level(conn, ctx, args, res)
    except Ended as e:
        res["abort"] = e.how == "abort"
        res["refused_at"] = e.where
        res["end"], _ = conn.wait_end(args.wait) if e.how == "abort" else (e.how, b"")
        return
    if granted is None:
        how, got = conn.wait_end(args.wait)
        res["abort"] = got[:2] == b"\x01\xff"
        res["end"] = how
        return
    if args.cmd == "none":
        return
    if granted not in (0, 1, 2):
        raise ValueError("granted level %d" % granted)
    return request(conn, Protection(ctx, granted, res), args, res)


def request(conn, prot, args, res):
    if args.cmd == "udp":
        return do_udp(conn, prot, args, res)
    cmd = 1 if args.cmd == "connect" else 2
    conn.send(prot.encode(bytes([5, cmd, 0]) + socks_addr(args.dest_host, args.dest_port)))
    rep, host, port, raw = read_reply(prot, conn, "reply")
    res.update(reply=rep, reply_raw=raw.hex(), bnd="%s:%d" % (host, port))
    if rep != 0:
        res["end"], _ = conn.wait_end(args.wait)
        return
    peer = None
    if cmd == 2:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        peer = socket.socket(fam, socket.SOCK_STREAM)
        peer.settimeout(IO_TIMEOUT)
        peer.connect((host, port))
        rep2, h2, p2, raw2 = read_reply(prot, conn, "second BIND reply")
        res.update(reply2=rep2, reply2_raw=raw2.hex(), peer="%s:%d" % (h2, p2))
        res["peer_matches"] = (h2, p2) == peer.getsockname()[:2]
        if rep2 != 0:
            return
    if args.misbehave:
        return misbehave_data(conn, prot, args, res)
    payload = os.urandom(args.bytes)
    t0 = time.monotonic()
    back, want = pump(conn, prot, peer, payload, res, args.chunk)
    res["seconds"] = round(time.monotonic() - t0, 3)
    res["sent"] = len(payload)
    res["received"] = len(back)
    res["sha_ok"] = hashlib.sha256(back).hexdigest() == hashlib.sha256(want).hexdigest()
    half_close(conn, prot, res, peer)
    if peer is not None:
        peer.close()


def hostport(s):
    h, _, p = s.rpartition(":")
    return h.strip("[]"), int(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy", help="HOST:PORT of the SOCKS5 server")
    ap.add_argument("--target", default="rcmd/localhost",
                    help="service: a principal (rcmd/localhost) or host-based (rcmd@localhost)")
    ap.add_argument("--methods", default="01", help="hex octets offered, e.g. 0102")
    ap.add_argument("--login", help="RFC 1929 user name, when the server picks 02")
    ap.add_argument("--password")
    ap.add_argument("--level", type=int, default=0, choices=(0, 1, 2, 3))
    ap.add_argument("--nec", action="store_true", help="the level as the bare octet")
    ap.add_argument("--cmd", default="connect", choices=("connect", "bind", "udp", "none"))
    ap.add_argument("--dest", default="127.0.0.1:0", help="HOST:PORT (BIND: where the peer is from)")
    ap.add_argument("--bytes", type=int, default=65536)
    ap.add_argument("--chunk", type=int, default=CHUNK)
    ap.add_argument("--datagrams", type=int, default=5)
    ap.add_argument("--dgram-size", type=int, default=1000)
    ap.add_argument("--udp-bad", choices=("clear", "damaged", "integ", "replay"),
                    help="udp: one datagram the server must drop, before the good ones")
    ap.add_argument("--misbehave", choices=("damage-frame", "integ-frame", "oversized-frame", "empty-frame",
                                            "oversized-level", "truncate-context", "mtyp-ff", "bad-version"))
    ap.add_argument("--first-token", help="hex: send this as the first context token")
    ap.add_argument("--token-only", action="store_true", help="print the first context token and stop")
    ap.add_argument("--wait", type=float, default=5.0)
    args = ap.parse_args()
    if not args.token_only:
        if not args.proxy:
            ap.error("--proxy is required")
        args.proxy_host, args.proxy_port = hostport(args.proxy)
    args.dest_host, args.dest_port = hostport(args.dest)
    res = {"server_frames": 0, "server_unencrypted": 0}
    try:
        run(args, res)
    except Ended as e:
        res["ended"] = e.how
        res["ended_at"] = e.where
    except GSSError as e:
        res["gss_error"] = str(e)
    except (ValueError, OSError) as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(res, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
