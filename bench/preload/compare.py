#!/usr/bin/env python3
"""
compare.py - the table of docs/routing.md ("Side by side"): the same programs through
ringsocks-run (libringsocks-preload.so), proxychains4 (proxy_dns) and Dante's socksify
(resolveprotocol fake), each against ringsocks on loopback with the integration harness's
DNS stub and target server, which checks that each connection came from the proxy process.

    python3 bench/preload/compare.py [--binary build/ringsocks]

Prints a Markdown table: "yes", or "no" with the reason, per program and wrapper. The rows
marked "slow proxy" use a SOCKS5 server that holds its reply back 1 s (cases_preload's), to see
whether a non-blocking connect blocks and whether the socket turns writable before the tunnel
is open.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))

import harness as H  # noqa: E402
import cases_clients as CC  # noqa: E402
import cases_preload as CP  # noqa: E402

WRAPPERS = ("ringsocks-run", "proxychains4", "socksify")


def wrap(ctx, which, port):
    """(argv prefix, env) that route a program through the SOCKS5 server on 127.0.0.1:port."""
    if which == "ringsocks-run":
        return [], CP.pl_env("socks5h://127.0.0.1:%d" % port)
    if which == "proxychains4":
        conf = CC.proxychains_conf(ctx, "socks5 127.0.0.1 %d" % port, "pc-%d.conf" % port)
        return ["proxychains4", "-q", "-f", conf], H.clean_env()
    conf = CC.dante_conf(ctx, port, resolve="fake")
    return ["socksify"], CC.dante_env(conf)


def http_row(ctx, p, t, sha, which, argv_fn, body_of):
    pre, env = wrap(ctx, which, p.port)
    n = len(t.owners)
    r = ctx.run(pre + argv_fn(t), timeout=40, env=env, input=b"GET /blob HTTP/1.0\r\nHost: good.test\r\n\r\n")
    if r.returncode != 0:
        return "no: exit %d %s" % (r.returncode, H.tail(r.stderr.decode("utf-8", "replace"), 1)[:80])
    if body_of(r.stdout) != sha:
        return "no: wrong body"
    who = [w for _, w in t.owners[n:]]
    if not who or any(w != "proxy" for w in who):
        return "no: went direct"
    return "yes"


def udp_row(ctx, p, which, client):
    """A UDP echo on loopback that records who sent: the proxy's relay, or the program."""
    echo = CP.UDPEchoOnce(ctx)
    pre, env = wrap(ctx, which, p.port)
    try:
        r = ctx.run(pre + client + ["udp", "127.0.0.1", str(echo.addr[1])], timeout=30, env=env)
        try:
            o = json.loads(r.stdout.decode().splitlines()[-1])
        except (ValueError, IndexError):
            return "no: exit %d %s" % (r.returncode, H.tail(r.stderr.decode("utf-8", "replace"), 1)[:80])
        if o.get("reply") != "ping":
            return "no: echo %r" % o.get("reply")
        if not echo.peers or echo.peers[0][1] == o["local"][1]:
            return "no: went direct"
        return "yes"
    finally:
        echo.sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/ringsocks")
    args = ap.parse_args()
    H.CONFIG.binary = os.path.abspath(args.binary)
    root = tempfile.mkdtemp(prefix="ringsocks-cmp-")
    ctx = H.Ctx("auto", root, H.HTTPFiles(root))
    try:
        dns = ctx.dns_stub()
        p = ctx.proxy(args=["--resolver", dns.spec])
        t, sha = CP.target(ctx, p)
        slow = CP.SlowSocks5(ctx)
        client = [sys.executable, CP.CLIENT]

        def body_sha(out):
            return hashlib.sha256(out).hexdigest()

        def json_sha(out):
            try:
                return json.loads(out.decode().splitlines()[-1])["sha256"]
            except (ValueError, IndexError, KeyError):
                return None

        def http_body(out):
            return hashlib.sha256(out.partition(b"\r\n\r\n")[2]).hexdigest()

        def curl(url):
            return lambda tt: ["curl", "-sS", "--fail", "--max-time", "20", url % tt.port]

        rows = [
            ("curl, target by address", curl("http://127.0.0.1:%d/blob"), body_sha),
            ("curl, name only the proxy resolves", curl("http://good.test:%d/blob"), body_sha),
            ("Python urllib, name", lambda tt: client + ["urllib", "http://good.test:%d/blob" % tt.port], json_sha),
            ("Python socket, non-blocking + select", lambda tt: client + ["get", "select", "good.test", str(tt.port),
                                                                         "/blob"], json_sha),
            ("Python socket, non-blocking + epoll (edge)",
             lambda tt: client + ["get", "epollet", "good.test", str(tt.port), "/blob"], json_sha),
            ("ncat, name", lambda tt: ["ncat", "good.test", str(tt.port)], http_body),
            ("Node net, name", lambda tt: ["node", "-e", CP.NODE_CLIENT, "good.test", str(tt.port)], json_sha),
        ]
        table = {}
        for name, argv_fn, body_of in rows:
            for w in WRAPPERS:
                try:
                    table[(name, w)] = http_row(ctx, p, t, sha, w, argv_fn, body_of)
                except H.Fail as e:
                    table[(name, w)] = "no: %s" % str(e)[:80]
        names = [r[0] for r in rows]
        for mode in ("select", "epoll"):
            name = "slow proxy: non-blocking connect + %s returns at once, writable only after the reply" % mode
            names.append(name)
            for w in WRAPPERS:
                pre, env = wrap(ctx, w, slow.port)
                r = ctx.run(pre + client + ["echo", mode, "slow-proxy.test", "7"], timeout=40, env=env)
                try:
                    o = json.loads(r.stdout.decode().splitlines()[-1])
                except (ValueError, IndexError):
                    table[(name, w)] = "no: exit %d %s" % (r.returncode,
                                                           H.tail(r.stderr.decode("utf-8", "replace"), 1)[:80])
                    continue
                if o.get("connect_s", 9) >= 0.5:
                    table[(name, w)] = "no: connect() blocked %.1f s" % o["connect_s"]
                elif o.get("writable_s", 0) < 0.9:
                    table[(name, w)] = "no: writable after %.2f s, before the reply" % o["writable_s"]
                elif o.get("reply") != "ping":
                    table[(name, w)] = "no: echo %r" % o.get("reply")
                else:
                    table[(name, w)] = "yes"
        name = "Python UDP sendto/recvfrom (UDP ASSOCIATE)"
        names.append(name)
        for w in WRAPPERS:
            table[(name, w)] = udp_row(ctx, p, w, client)
        print("| program | " + " | ".join(WRAPPERS) + " |")
        print("| --- | " + " | ".join("---" for _ in WRAPPERS) + " |")
        for name in names:
            print("| %s | %s |" % (name, " | ".join(table[(name, w)].replace("|", "/") for w in WRAPPERS)))
    finally:
        ctx.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
