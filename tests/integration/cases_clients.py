"""
cases_clients.py - unmodified programs through ringsocks with the two common
wrappers: proxychains4 (proxychains-ng) and Dante's socksify, for SOCKS5, SOCKS5
with username/password, SOCKS4, remote DNS, and (socksify) UDP.

Every target here is on loopback, where a wrapper could just as well connect
directly: the target server therefore looks each connection up in /proc and
the test requires it to belong to the proxy process.
"""

import hashlib
import os
import sys

from harness import (Fail, OwnerHTTP, case, check, clean_env, make_hash, need_option, need_tools, tail,
                     write_users)

BODY_SIZE = 1 << 20
USER = ("alice", "alice-pw-1")


def owner_target(ctx, p):
    body = os.urandom(BODY_SIZE)
    t = OwnerHTTP(ctx, body)
    t.pid = p.proc.pid if p.proc is not None else None
    return t, hashlib.sha256(body).hexdigest()


def run_curl(ctx, wrapper_argv, url, env, what):
    out = ctx.path("out.bin")
    if os.path.exists(out):
        os.unlink(out)
    argv = list(wrapper_argv) + ["curl", "-sS", "--fail", "--max-time", "30", "-o", out, url]
    r = ctx.run(argv, timeout=45, env=env)
    err = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0, "%s: curl %s exited %d: %s" % (what, url, r.returncode, tail(err, 8) or "(no message)"))
    check(os.path.exists(out), "%s: curl wrote no file" % what)
    with open(out, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), err


def check_via_proxy(t, sha, got, what, p):
    check(got == sha, "%s: the body curl wrote differs from what the target sent" % what)
    check(t.owners, "%s: the target saw no connection" % what)
    if t.pid is None:
        return
    who = [w for _, w in t.owners]
    check(all(w == "proxy" for w in who),
          "%s: the target's connection(s) came from %s, not from the proxy (pid %d): the wrapper bypassed it"
          % (what, t.owners, t.pid))


def auth_proxy(ctx, extra=()):
    need_option("--auth", "--users")
    users = write_users(ctx, ["%s:%s" % (USER[0], make_hash(USER[1]))])
    return ctx.proxy(args=["--auth", "password", "--users", users] + list(extra))


# -------------------------------------------------------------- proxychains4

def proxychains_conf(ctx, line, name="proxychains.conf"):
    path = ctx.path(name)
    with open(path, "w") as f:
        f.write("strict_chain\nproxy_dns\nremote_dns_subnet 224\ntcp_read_time_out 15000\n"
                "tcp_connect_time_out 8000\n[ProxyList]\n%s\n" % line)
    return path


def proxychains(ctx, p, t, sha, line, url=None, what=None):
    conf = proxychains_conf(ctx, line)
    what = what or "proxychains4 (%s)" % line
    got, err = run_curl(ctx, ["proxychains4", "-f", conf], url or "http://127.0.0.1:%d/blob" % t.port,
                        clean_env(), what)
    check_via_proxy(t, sha, got, what, p)


@case("proxychains_socks5")
def proxychains_socks5(ctx):
    need_tools("proxychains4", "curl")
    p = ctx.proxy()
    t, sha = owner_target(ctx, p)
    proxychains(ctx, p, t, sha, "socks5 127.0.0.1 %d" % p.port)


@case("proxychains_socks5_auth")
def proxychains_socks5_auth(ctx):
    need_tools("proxychains4", "curl")
    p = auth_proxy(ctx)
    t, sha = owner_target(ctx, p)
    proxychains(ctx, p, t, sha, "socks5 127.0.0.1 %d %s %s" % (p.port, USER[0], USER[1]))
    conf = proxychains_conf(ctx, "socks5 127.0.0.1 %d %s %s" % (p.port, USER[0], "wrong"), "bad.conf")
    n = len(t.owners)
    r = ctx.run(["proxychains4", "-f", conf, "curl", "-sS", "--max-time", "20", "-o", ctx.path("bad.out"),
                 "http://127.0.0.1:%d/blob" % t.port], timeout=40)
    check(r.returncode != 0, "proxychains4 with a wrong password: curl exited 0")
    check(len(t.owners) == n, "proxychains4 with a wrong password: the target still got a connection %s"
          % t.owners[n:])


@case("proxychains_socks4")
def proxychains_socks4(ctx):
    need_tools("proxychains4", "curl")
    p = ctx.proxy()
    t, sha = owner_target(ctx, p)
    proxychains(ctx, p, t, sha, "socks4 127.0.0.1 %d" % p.port)


@case("proxychains_proxy_dns")
def proxychains_proxy_dns(ctx):
    """proxy_dns: curl's lookup of good.test gets a fake 224.x address, and the
    proxy resolves the name (through the DNS stub)."""
    need_tools("proxychains4", "curl")
    need_option("--resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    t, sha = owner_target(ctx, p)
    try:
        proxychains(ctx, p, t, sha, "socks5 127.0.0.1 %d" % p.port, url="http://good.test:%d/blob" % t.port,
                    what="proxychains4 proxy_dns good.test")
    except Fail as e:
        raise Fail(str(e), "DNS queries the stub saw: %s" % dns.queries)
    check(dns.wait_query("good.test", 1), "the proxy never asked the DNS stub for good.test: %s" % dns.queries)


@case("proxychains_proxy_dns_auth")
def proxychains_proxy_dns_auth(ctx):
    need_tools("proxychains4", "curl")
    dns = ctx.dns_stub()
    p = auth_proxy(ctx, ["--resolver", dns.spec])
    t, sha = owner_target(ctx, p)
    proxychains(ctx, p, t, sha, "socks5 127.0.0.1 %d %s %s" % (p.port, USER[0], USER[1]),
                url="http://good.test:%d/blob" % t.port, what="proxychains4 proxy_dns + auth good.test")


# -------------------------------------------------------------- Dante socksify

def dante_conf(ctx, port, protocol="socks_v5", method="none", resolve=None, extra_route=""):
    path = ctx.path("dante-%s-%s.conf" % (protocol, method))
    with open(path, "w") as f:
        if resolve:
            f.write("resolveprotocol: %s\n" % resolve)
        f.write("route {\n  from: 0.0.0.0/0 to: 0.0.0.0/0 via: 127.0.0.1 port = %d\n"
                "  proxyprotocol: %s\n  method: %s\n%s}\n" % (port, protocol, method, extra_route))
        if resolve == "fake":
            f.write("route {\n  from: 0.0.0.0/0 to: . via: 127.0.0.1 port = %d\n"
                    "  proxyprotocol: %s\n  method: %s\n}\n" % (port, protocol, method))
    return path


def dante_env(conf, user=None):
    env = clean_env()
    env.update({"SOCKS_CONF": conf, "SOCKS_AUTOADD_LANROUTES": "no"})
    for k in ("SOCKS_SERVER", "SOCKS4_SERVER", "SOCKS5_SERVER", "SOCKS_DEBUG", "SOCKS_USER", "SOCKS_USERNAME",
              "SOCKS_PASSWORD"):
        env.pop(k, None)
    if user:
        env["SOCKS_USERNAME"], env["SOCKS_PASSWORD"] = user
    return env


def socksify(ctx, p, t, sha, conf, user=None, url=None, what="socksify"):
    got, err = run_curl(ctx, ["socksify"], url or "http://127.0.0.1:%d/blob" % t.port, dante_env(conf, user), what)
    check_via_proxy(t, sha, got, what, p)


@case("socksify_socks5")
def socksify_socks5(ctx):
    need_tools("socksify", "curl")
    p = ctx.proxy()
    t, sha = owner_target(ctx, p)
    socksify(ctx, p, t, sha, dante_conf(ctx, p.port), what="socksify socks_v5 method none")


@case("socksify_socks5_auth")
def socksify_socks5_auth(ctx):
    need_tools("socksify", "curl")
    p = auth_proxy(ctx)
    t, sha = owner_target(ctx, p)
    socksify(ctx, p, t, sha, dante_conf(ctx, p.port, method="username"), user=USER,
             what="socksify socks_v5 method username")


@case("socksify_socks4")
def socksify_socks4(ctx):
    need_tools("socksify", "curl")
    p = ctx.proxy()
    t, sha = owner_target(ctx, p)
    socksify(ctx, p, t, sha, dante_conf(ctx, p.port, protocol="socks_v4"), what="socksify socks_v4")


@case("socksify_remote_dns")
def socksify_remote_dns(ctx):
    """resolveprotocol fake: the name goes to the proxy, which resolves it."""
    need_tools("socksify", "curl")
    need_option("--resolver")
    dns = ctx.dns_stub()
    p = ctx.proxy(args=["--resolver", dns.spec])
    t, sha = owner_target(ctx, p)
    try:
        socksify(ctx, p, t, sha, dante_conf(ctx, p.port, resolve="fake"), url="http://good.test:%d/blob" % t.port,
                 what="socksify resolveprotocol fake good.test")
    except Fail as e:
        raise Fail(str(e), "DNS queries the stub saw: %s" % dns.queries)
    check(dns.wait_query("good.test", 1), "the proxy never asked the DNS stub for good.test: %s" % dns.queries)


UDP_CLIENT = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for i in range(n):
    msg = b"datagram %d " % i + b"x" * (100 * i)
    s.sendto(msg, (host, port))
    data, src = s.recvfrom(65536)
    if data != msg:
        print("mismatch at %d: %r from %r" % (i, data[:40], src)); sys.exit(3)
print("ok %d" % n)
"""


@case("socksify_udp")
def socksify_udp(ctx):
    """A plain UDP client (python) under socksify: Dante uses UDP ASSOCIATE; the
    echo server must see the datagrams coming from the proxy's relay socket."""
    need_tools("socksify")
    p = ctx.proxy()
    echo = ctx.udp_echo("127.0.0.1")
    if p.proc is not None:
        echo.pid = p.proc.pid
    conf = dante_conf(ctx, p.port, extra_route="  protocol: tcp udp\n  command: connect udpassociate\n")
    script = ctx.path("udp_client.py")
    with open(script, "w") as f:
        f.write(UDP_CLIENT)
    r = ctx.run(["socksify", os.path.realpath(sys.executable), script, "127.0.0.1", str(echo.port), "5"],
                timeout=40, env=dante_env(conf))
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode == 0 and "ok 5" in out, "UDP client under socksify: exit %d: %s" % (r.returncode, tail(out, 8)))
    check(echo.seen, "the echo server saw no datagram")
    if echo.pid is not None:
        check(all(echo.owned), "datagrams reached the echo server from %s; from a proxy socket: %s "
              "(socksify sent them directly?)" % ([peer for peer, _ in echo.seen], echo.owned))
