"""
cases_egress.py - egress source addresses (issue #11) in network namespaces of
their own (netns.py): a proxy namespace and a target namespace joined by veth
pairs, documentation prefixes only, the target recording the source of every
connection and datagram. The pool prefixes are routed as local in the proxy
namespace, so any address of them is a valid source (IP_FREEBIND).

Checks: the fixture itself and ringsocks without egress; a global pool; the
precedence user > rule > listener > global; 1,000 tunnels without a session from
a /64; sticky sessions (200 x 5 tunnels on two shards, a second process, another
session_key, the TTL bucket, session_ttl_max); listener groups with egress =
"same"; an address family without a pool address (0x03 / 0x04, egress_fallback);
UDP ASSOCIATE and BIND from the pool; SO_MARK through an ip rule; bad pool
entries and user attributes refused by -t with FILE:LINE.

The suite runs serially in its own runner process, in parallel with the rest of
the integration suite (tests/run.sh): nothing here uses the host's network.
"""

import socket
import threading
import time
from collections import defaultdict

from cases_control import sighup_reload
from harness import (CONFIG, DNSStub, Fail, case, check, fmt_status, hexb, make_hash, need_ringsocks, parse_logfmt,
                     wait_until, write_users)
from netns import (LISTEN_V4, LISTEN_V6, MARK, P_V4, P_V4_MARK, P_V6, P_V6_MARK, T4, T6, EgressNet, in_net,
                   read_source)

ALLOW_ALL = 'rules = ( { action = "allow"; } );\n'


def _raw_from(src, dst, mark=None):
    """(Inside P.) A plain TCP connection to dst from src (FREEBIND: any address of a
    local route), or with SO_MARK; returns what the target says it saw."""
    fam = socket.AF_INET6 if ":" in dst[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        if src:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, 78, 1)   # IPV6_FREEBIND
            else:
                s.setsockopt(socket.IPPROTO_IP, 15, 1)     # IP_FREEBIND
            s.bind((src, 0))
        if mark is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        s.connect(dst)
        return read_source(s, "on a direct connection to %s:%d" % dst[:2])
    finally:
        s.close()


@case("egress_netns_fixture")
def egress_netns_fixture(ctx):
    """The topology itself, without ringsocks: the default source per family, a pool
    address bound with FREEBIND reaches the target and is seen, SO_MARK 42 takes the
    second path (table 100), UDP is recorded."""
    net = EgressNet(ctx)
    t = net.target
    for dst, want in ((t.tcp4, P_V4), (t.tcp6, P_V6)):
        got = net.P.call(_raw_from, None, dst)
        check(got[0] == want, "plain connection to %s: the target saw %s, expected %s" % (dst, got, want))
    for src, dst in (("203.0.113.77", t.tcp4), ("2001:db8:1::dead:beef", t.tcp6), ("2001:db8:4::9", t.tcp6b)):
        got = net.P.call(_raw_from, src, dst)
        check(got[0] == src, "connection bound to pool address %s: the target saw %s" % (src, got))
    for dst, want in ((t.tcp4, P_V4_MARK), (t.tcp6, P_V6_MARK)):
        got = net.P.call(_raw_from, None, dst, MARK)
        check(got[0] == want, "connection with SO_MARK %d to %s: the target saw %s, expected %s (table 100)"
              % (MARK, dst, got, want))

    def udp(dst):
        s = socket.socket(socket.AF_INET6 if ":" in dst[0] else socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        try:
            s.sendto(b"x", dst)
            data, peer = s.recvfrom(256)
            return data.decode().split()[0], s.getsockname()[:2]
        finally:
            s.close()
    for dst, want in ((t.udp4, P_V4), (t.udp6, P_V6)):
        seen, local = net.P.call(udp, dst)
        check(seen == want, "UDP to %s: the target saw %s, expected %s" % (dst, seen, want))
    check(len(t.udp_sources()) == 2 and len(t.tcp_sources()) == 7,
          "the target recorded %d TCP and %d UDP events, expected 7 and 2"
          % (len(t.tcp_sources()), len(t.udp_sources())))


@case("egress_plain")
def egress_plain(ctx):
    """ringsocks in P without any egress key: CONNECT to the IPv4 and the IPv6 target
    leaves from the veth address the kernel chooses."""
    net = EgressNet(ctx)
    p = net.proxy(ALLOW_ALL)
    t = net.target
    for dst, want in ((t.tcp4, P_V4), (t.tcp6, P_V6)):
        src = net.tunnel_ok(p.addr, dst)
        check(src[0] == want, "CONNECT %s:%d without egress left from %s, expected %s" % (dst[0], dst[1], src[0], want))
    got = t.tcp_sources()
    check(len(got) == 2, "the target recorded %d connections, expected 2: %s" % (len(got), got))
    # UDP and BIND without egress: the kernel's source toward the target
    for dst, want in ((t.udp4, P_V4), (t.udp6, P_V6)):
        r, relay, seen = net.udp(p.addr, dst)
        check(r.rep == 0, "UDP ASSOCIATE: reply %s" % hexb(r.raw))
        check({a for a, _ in seen} == {want}, "UDP to %s:%d without egress left from %s, expected %s"
              % (dst[0], dst[1], seen, want))
    for peer, want in ((T4, P_V4), (T6, P_V6)):
        r1, r2, reached = net.bind(p.addr, peer)
        check(r1.rep == 0 and r2 is not None and r2.rep == 0, "BIND for %s: replies %s / %s"
              % (peer, hexb(r1.raw), r2 and hexb(r2.raw)))
        check(r1.host == want and r2.host == peer, "BIND for %s without egress: first reply names %s "
              "(expected %s), second %s (expected %s)" % (peer, r1.host, want, r2.host, peer))



# -------------------------------------------------------------------- helpers

_egress_ok = None


def need_egress(ctx):
    """Fail (not skip: the feature is part of the product) when the binary does not
    know the egress keys yet."""
    global _egress_ok
    need_ringsocks("egress pools are ringsocks configuration")
    if _egress_ok is None:
        path = ctx.path("probe.conf")
        with open(path, "w") as f:
            f.write('egress = ["2001:db8:1::/64"];\n')
        r = ctx.run([CONFIG.binary, "-t", "-c", path], timeout=20, env=None)
        _egress_ok = (r.returncode == 0, (r.stdout + r.stderr).decode("utf-8", "replace").strip())
    if not _egress_ok[0]:
        raise Fail("this ringsocks does not accept `egress = [...]` (issue #11 not in the binary)",
                   "ringsocks -t: " + _egress_ok[1])


def access_lines(p, cmd=None):
    """The proxy's access-log lines (stderr, logfmt) as dicts."""
    out = []
    for line in p.stderr().splitlines():
        if line.startswith("time=") and " cmd=" in line:
            d = parse_logfmt(line)
            if cmd is None or d.get("cmd") == cmd:
                out.append(d)
    return out


def wait_log(p, n, cmd="connect", timeout=10):
    """Wait until the proxy logged at least n tunnels of cmd; returns the lines."""
    return wait_until(lambda: (lambda l: l if len(l) >= n else None)(access_lines(p, cmd)), timeout) or \
        access_lines(p, cmd)


def log_addr(v):
    """"[2001:db8::1]:80" / "192.0.2.1:80" / "2001:db8::1" -> the address alone."""
    if v is None:
        return None
    if v.startswith("["):
        return v[1:v.index("]")]
    if v.count(":") == 1:
        return v.rsplit(":", 1)[0]
    return v


def users_conf(ctx, lines, extra=""):
    path = write_users(ctx, lines)
    return 'auth = "password";\nusers = "%s";\n%s' % (path, extra)


_hashes = {}


def pw_hash(pw):
    if pw not in _hashes:
        _hashes[pw] = make_hash(pw, rounds=1000)
    return _hashes[pw]


ALICE = ("alice", "alice-pw")
BOB = ("bob", "bob-pw")


def mismatch_report(problems):
    if problems:
        raise Fail("%d mismatch(es) with the spec: %s" % (len(problems), problems[0]), "\n".join(problems))


# -------------------------------------------------------------------- pools

@case("egress_global_pool")
def egress_global_pool(ctx):
    """egress = ["2001:db8:1::/64", "203.0.113.7"]: IPv6 tunnels leave from the /64,
    IPv4 tunnels from 203.0.113.7; the access log names the address (egress=)."""
    need_egress(ctx)
    net = EgressNet(ctx)
    p = net.proxy('egress = ["2001:db8:1::/64", "203.0.113.7"];\n' + ALLOW_ALL)
    t = net.target
    problems = []
    srcs = []
    for i in range(5):
        s6 = net.tunnel_ok(p.addr, t.tcp6)
        s4 = net.tunnel_ok(p.addr, t.tcp4)
        srcs += [s6, s4]
        if not in_net(s6[0], "2001:db8:1::/64"):
            problems.append("CONNECT [%s]:%d with egress = [\"2001:db8:1::/64\", \"203.0.113.7\"] left from %s, "
                            "expected an address of 2001:db8:1::/64" % (t.tcp6[0], t.tcp6[1], s6[0]))
        if s4[0] != "203.0.113.7":
            problems.append("CONNECT %s:%d with the same pool left from %s, expected 203.0.113.7"
                            % (t.tcp4[0], t.tcp4[1], s4[0]))
    mismatch_report(problems)
    lines = wait_log(p, 10)
    by_port = {}
    for d in lines:
        by_port[(log_addr(d.get("resolved")), d.get("egress"))] = d
    for src, sport in srcs:
        hits = [d for d in lines if log_addr(d.get("egress")) == src]
        if not hits:
            problems.append("no access-log line with egress=%s (the source the target saw); lines: %s"
                            % (src, [d.get("egress") for d in lines]))
    mismatch_report(problems)


@case("egress_precedence")
def egress_precedence(ctx):
    """The pool comes from the user, then the rule, then the listener, then the
    global key. alice has egress= in the users file, bob none; the first rule
    (the targets' second ports) has a pool, a listener group on 127.0.0.2 has one.
    Fixed listener ports: the proxy namespace is the test's own."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    users = ["alice:%s egress=2001:db8:1::/64,203.0.113.1" % pw_hash(ALICE[1]), "bob:%s" % pw_hash(BOB[1])]
    conf = users_conf(ctx, users, extra="""
egress = ["2001:db8:3::/64", "203.0.113.3"];
listen = ( "127.0.0.1:1080", { address = "127.0.0.2:1080"; egress = ["2001:db8:4::/64", "203.0.113.4"]; } );
rules = (
  { action = "allow"; ports = [%d, %d]; egress = ["2001:db8:2::/64", "203.0.113.2"]; },
  { action = "allow"; }
);
""" % (t.tcp4b[1], t.tcp6b[1]))
    p = net.proxy(conf, listen=(), n_listen=2)
    l0 = [a for a in p.addrs if a[0] == "127.0.0.1"]
    l1 = [a for a in p.addrs if a[0] == "127.0.0.2"]
    check(l0 and l1, "listening lines name %s, expected 127.0.0.1 and 127.0.0.2" % p.addrs)
    l0, l1 = l0[0], l1[0]
    pools = {"user": ("2001:db8:1::/64", "203.0.113.1/32"), "rule": ("2001:db8:2::/64", "203.0.113.2/32"),
             "listener": ("2001:db8:4::/64", "203.0.113.4/32"), "global": ("2001:db8:3::/64", "203.0.113.3/32")}
    plan = []
    for who in (ALICE, BOB):
        for lname, laddr in (("127.0.0.1 (no listener pool)", l0), ("127.0.0.2 (listener pool)", l1)):
            for pname, dsts in (("a (no rule pool)", (t.tcp6, t.tcp4)), ("b (rule pool)", (t.tcp6b, t.tcp4b))):
                if who is ALICE:
                    want = "user"
                elif pname.startswith("b"):
                    want = "rule"
                elif laddr is l1:
                    want = "listener"
                else:
                    want = "global"
                for dst in dsts:
                    plan.append((who, lname, laddr, pname, dst, want))
    problems = []
    for who, lname, laddr, pname, dst, want in plan:
        r, src = net.tunnel(laddr, dst, auth=who)
        if r.rep != 0:
            problems.append("%s via listener %s to port %s %s:%d: reply REP 0x%02x, expected 00 (%s pool)"
                            % (who[0], lname, pname, dst[0], dst[1], r.rep, want))
            continue
        if not in_net(src[0], *pools[want]):
            got = [k for k, v in pools.items() if in_net(src[0], *v)] or ["no pool"]
            problems.append("%s via listener %s to port %s %s:%d left from %s (%s), expected the %s pool %s"
                            % (who[0], lname, pname, dst[0], dst[1], src[0], got[0], want, pools[want]))
    mismatch_report(problems)


def from_pool(net, p, dst, n, pool):
    """n CONNECTs to dst at once; all must succeed from an address of pool. Their sources.
    A first 20 alone, so a broken choice fails fast."""
    srcs = []
    for batch in (20, n - 20):
        res = net.tunnels([(p.addr, dst, None)] * batch)
        bad = [(hexb(r.raw), src) for r, src, _ in res if r.rep != 0]
        check(not bad, "%d of %d CONNECTs to %s:%d failed: %s" % (len(bad), batch, dst[0], dst[1], bad[:5]))
        srcs += [src[0] for _, src, _ in res]
        outside = [a for a in srcs if not in_net(a, pool)]
        check(not outside, "%d of %d tunnels left from outside %s: %s" % (len(outside), len(srcs), pool,
                                                                          outside[:5]))
    return srcs


@case("egress_random_1000", timeout=120)
def egress_random_1000(ctx):
    """Without a session every tunnel takes a uniformly random pool address: 1,000
    tunnels from a /64 leave from 1,000 distinct addresses (a collision has odds of
    about 2^-45); 500 from a /24 stay in it and spread over it."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    p = net.proxy('egress = ["2001:db8:1::/64", "203.0.113.0/24"];\n' + ALLOW_ALL)
    t0 = time.monotonic()
    srcs = from_pool(net, p, t.tcp6, 1000, "2001:db8:1::/64")
    dt6 = time.monotonic() - t0
    distinct = len(set(srcs))
    check(distinct == 1000, "1000 tunnels without a session from 2001:db8:1::/64 left from %d distinct "
          "addresses, expected 1000 (uniformly random over 2^64)" % distinct)
    srcs4 = from_pool(net, p, t.tcp4, 500, "203.0.113.0/24")
    d4 = len(set(srcs4))
    # 500 draws from 256 addresses give about 220 distinct ones; 150 is far below any fair draw
    check(d4 >= 150, "500 tunnels from 203.0.113.0/24 used only %d distinct addresses (about 220 expected "
          "from a uniform choice)" % d4)
    check(len(t.tcp_sources()) == 1500, "the target recorded %d connections, expected 1500" % len(t.tcp_sources()))
    check(dt6 < 60, "1000 tunnels took %.1f s" % dt6)


# -------------------------------------------------------------------- sessions

SESSION_CONF = """
username_params = true;
session_key = "%s";
session_ttl = 3600;
egress = ["2001:db8:1::/64", "203.0.113.0/24"];
rules = ( { action = "allow"; users = ["alice"]; } );
"""


def away_from_bucket_edge(ttl, margin):
    """Sleep past the next multiple of ttl (wall clock) when it is less than margin s away."""
    left = ttl - (time.time() % ttl)
    if left < margin:
        time.sleep(left + 0.2)


@case("egress_sessions", timeout=150)
def egress_sessions(ctx):
    """username_params: alice-session-K keeps one address for all its tunnels, on
    both shards (--shards 2), and a second process with the same config gives each
    session the same address; another session_key gives other addresses. Rules see
    the base user (the only rule allows users = ["alice"])."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    users = ["alice:%s" % pw_hash(ALICE[1])]
    conf = users_conf(ctx, users, extra=SESSION_CONF % "key-one")
    away_from_bucket_edge(3600, 60)
    p = net.proxy(conf, args=["--shards", "2"])
    n_sess, per = 200, 5
    jobs, who = [], []
    for rep in range(per):
        for k in range(n_sess):
            jobs.append((p.addr, t.tcp6, ("alice-session-%d" % k, ALICE[1])))
            who.append(k)
    res = net.tunnels(jobs)
    bad = [(who[i], hexb(r.raw)) for i, (r, src, _) in enumerate(res) if r.rep != 0]
    check(not bad, "%d of %d CONNECTs as alice-session-K failed (rule users = [\"alice\"] must see the base "
          "user): %s" % (len(bad), len(jobs), bad[:5]))
    per_sess = defaultdict(set)
    cport_sess, cport_seen = {}, defaultdict(int)
    for i, (r, src, cport) in enumerate(res):
        per_sess[who[i]].add(src[0])
        cport_sess[cport] = who[i]
        cport_seen[cport] += 1
    # A client port the kernel reused within the 1,000 tunnels names two of them: keep
    # only ports used once, so a log line is matched to its own tunnel (it failed once
    # that way under the sanitizers, when the run was slow enough for ports to come round)
    cport_sess = {c: k for c, k in cport_sess.items() if cport_seen[c] == 1}
    problems = []
    multi = {k: sorted(v) for k, v in per_sess.items() if len(v) != 1}
    if multi:
        problems.append("%d of %d sessions left from more than one address over %d tunnels, e.g. "
                        "alice-session-%d: %s" % (len(multi), n_sess, per, *next(iter(multi.items()))))
    addr = {k: next(iter(v)) for k, v in per_sess.items()}
    outside = [a for a in addr.values() if not in_net(a, "2001:db8:1::/64")]
    if outside:
        problems.append("session addresses outside the pool: %s" % outside[:5])
    if len(set(addr.values())) != n_sess:
        problems.append("%d sessions got only %d distinct addresses (a keyed hash over 2^64 should give %d)"
                        % (n_sess, len(set(addr.values())), n_sess))
    # Which shard carried which tunnel: the access log's shard= and client= fields.
    lines = wait_log(p, len(jobs))
    shards_of = defaultdict(set)
    for d in lines:
        cp = d.get("client", "").rsplit(":", 1)[-1]
        if cp.isdigit() and int(cp) in cport_sess:
            shards_of[cport_sess[int(cp)]].add(d.get("shard"))
    all_shards = set().union(*shards_of.values()) if shards_of else set()
    both = [k for k, v in shards_of.items() if len(v) >= 2]
    if len(all_shards) < 2:
        problems.append("the access log shows tunnels on shard(s) %s only, expected both of --shards 2"
                        % sorted(all_shards))
    elif not both:
        problems.append("no session had tunnels on both shards (%d sessions logged)" % len(shards_of))
    # rules and logs see the base user; the log names the session and the address
    sample = [d for d in lines if d.get("user") not in ("alice",)]
    if sample:
        problems.append("%d access-log lines with user=%r, expected the base user alice"
                        % (len(sample), sample[0].get("user")))
    for d in lines[:20]:
        cp = d.get("client", "").rsplit(":", 1)[-1]
        k = cport_sess.get(int(cp)) if cp.isdigit() else None
        if k is None:
            continue
        if d.get("session") != str(k) or log_addr(d.get("egress")) != addr[k]:
            problems.append("access-log line for alice-session-%d has session=%r egress=%r, expected "
                            "session=%d egress=%s" % (k, d.get("session"), d.get("egress"), k, addr[k]))
            break
    mismatch_report(problems)
    # The IPv4 part of the pool is sticky too.
    res4 = net.tunnels([(p.addr, t.tcp4, ("alice-session-v4x%d" % (i % 20), ALICE[1])) for i in range(60)])
    per4 = defaultdict(set)
    for i, (r, src, _) in enumerate(res4):
        per4[i % 20].add(src[0] if src else "REP 0x%02x" % r.rep)
    multi4 = {k: sorted(v) for k, v in per4.items() if len(v) != 1 or not in_net(next(iter(v)), "203.0.113.0/24")}
    if multi4:
        problems.append("%d of 20 sessions to the IPv4 target did not keep one address of 203.0.113.0/24 over 3 "
                        "tunnels, e.g. alice-session-v4x%d: %s" % (len(multi4), *next(iter(multi4.items()))))
    mismatch_report(problems)
    # A second process with the same config: the same address for every session.
    p2 = net.proxy(conf, args=["--shards", "2"], name="second.conf")
    res2 = net.tunnels([(p2.addr, t.tcp6, ("alice-session-%d" % k, ALICE[1])) for k in range(n_sess)])
    differ = [(k, addr[k], src[0] if src else hexb(r.raw)) for k, (r, src, _) in enumerate(res2)
              if src is None or src[0] != addr[k]]
    check(not differ, "%d of %d sessions left a second ringsocks (same config) from another address, e.g. "
          "alice-session-%d: %s first, %s second" % (len(differ), n_sess, *differ[0]) if differ else "")
    p2.stop()
    # Another session_key: other addresses.
    conf3 = users_conf(ctx, users, extra=SESSION_CONF % "key-two")
    p3 = net.proxy(conf3, name="third.conf")
    res3 = net.tunnels([(p3.addr, t.tcp6, ("alice-session-%d" % k, ALICE[1])) for k in range(50)])
    same = [k for k, (r, src, _) in enumerate(res3) if src is not None and src[0] == addr[k]]
    check(not same, "%d of 50 sessions got the same address with another session_key, e.g. alice-session-%d"
          % (len(same), same[0]) if same else "")


@case("egress_session_ttl", timeout=60)
def egress_session_ttl(ctx):
    """alice-session-x-ttl-2: the same address within one bucket floor(wall / 2),
    another one in the next bucket (session_ttl 3600). With session_ttl_max = 2,
    -ttl-100000 is cut to 2 and changes with the 2 s bucket too. (Without a -ttl-, session_ttl applies: the
    sessions test holds its addresses for the whole run with session_ttl 3600.)"""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    users = ["alice:%s" % pw_hash(ALICE[1])]
    p1 = net.proxy(users_conf(ctx, users, extra=SESSION_CONF % "key-ttl"))
    p2 = net.proxy(users_conf(ctx, users, extra=(SESSION_CONF % "key-ttl") + "session_ttl_max = 2;\n"),
                   name="max.conf")
    problems = []
    for p, user in ((p1, "alice-session-x-ttl-2"), (p2, "alice-session-y-ttl-100000")):
        # start just after a bucket edge so the first two tunnels share a bucket; not in
        # its first 50 ms: the proxy stamps a connection with CLOCK_REALTIME_COARSE, which
        # lags by up to a tick, so a tunnel opened 1 ms after the edge can still be stamped
        # in the bucket before (it failed once that way)
        while not 0.05 <= time.time() % 2 <= 0.3:
            time.sleep(0.01)
        b0 = int(time.time() // 2)
        a1 = net.tunnel_ok(p.addr, t.tcp6, auth=(user, ALICE[1]))[0]
        a2 = net.tunnel_ok(p.addr, t.tcp6, auth=(user, ALICE[1]))[0]
        b1 = int(time.time() // 2)
        if b0 == b1 and a1 != a2:
            problems.append("%s: two tunnels within one 2 s bucket left from %s and %s" % (user, a1, a2))
        while int(time.time() // 2) == b1 or time.time() % 2 < 0.1:
            time.sleep(0.05)
        a3 = net.tunnel_ok(p.addr, t.tcp6, auth=(user, ALICE[1]))[0]
        if a3 == a1:
            problems.append("%s: the tunnel in the next 2 s bucket left from the same %s, expected another "
                            "address (bucket floor(wall / 2) changed)" % (user, a1))
    mismatch_report(problems)


@case("egress_reload")
def egress_reload(ctx):
    """The pools are reloadable: after SIGHUP with another global pool and a users
    file whose alice gained egress=, new tunnels leave from the new pools."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    users = write_users(ctx, ["alice:%s" % pw_hash(ALICE[1])])
    head = 'auth = "password";\nusers = "%s";\n' % users
    p = net.proxy(head + 'egress = ["2001:db8:1::/64"];\n' + ALLOW_ALL)
    src = net.tunnel_ok(p.addr, t.tcp6, auth=ALICE)[0]
    check(in_net(src, "2001:db8:1::/64"), "before the reload the tunnel left from %s, expected 2001:db8:1::/64" % src)
    with open(ctx.path("ringsocks.conf"), "w") as f:
        f.write(head + 'egress = ["2001:db8:2::/64"];\n' + ALLOW_ALL)
    line = sighup_reload(p)
    check(line.startswith("reloaded"), "SIGHUP with a new pool: %s" % line)
    src = net.tunnel_ok(p.addr, t.tcp6, auth=ALICE)[0]
    check(in_net(src, "2001:db8:2::/64"), "after reloading egress = [\"2001:db8:2::/64\"] the tunnel left from %s"
          % src)
    write_users(ctx, ["alice:%s egress=2001:db8:3::/64" % pw_hash(ALICE[1])])
    line = sighup_reload(p)
    check(line.startswith("reloaded"), "SIGHUP with alice's new egress=: %s" % line)
    src = net.tunnel_ok(p.addr, t.tcp6, auth=ALICE)[0]
    check(in_net(src, "2001:db8:3::/64"), "after reloading the users file with alice egress=2001:db8:3::/64 the "
          "tunnel left from %s" % src)


# -------------------------------------------------------------------- listeners

def same_listeners(ctx, port):
    """Four listener groups with egress = "same" on the extra proxy addresses."""
    net = EgressNet(ctx)
    groups = ['{ address = "%s:%d"; egress = "same"; }' % (a, port) for a in LISTEN_V4] + \
             ['{ address = "[%s]:%d"; egress = "same"; }' % (a, port) for a in LISTEN_V6]
    conf = "listen = ( %s );\n%s" % (", ".join(groups), ALLOW_ALL)
    p = net.proxy(conf, listen=(), n_listen=4)
    check(sorted(a for a, _ in p.addrs) == sorted(LISTEN_V4 + LISTEN_V6),
          "listening lines name %s, expected %s" % (p.addrs, LISTEN_V4 + LISTEN_V6))
    return net, p


def check_same(net, p, what):
    t = net.target
    problems = []
    for laddr in p.addrs:
        dst = t.tcp6 if ":" in laddr[0] else t.tcp4
        for _ in range(2):
            r, src = net.tunnel(laddr, dst)
            if r.rep != 0:
                problems.append("CONNECT %s:%d via the \"same\" listener %s:%d%s: REP 0x%02x, expected 00"
                                % (dst[0], dst[1], laddr[0], laddr[1], what, r.rep))
            elif src[0] != laddr[0]:
                problems.append("CONNECT %s:%d via the \"same\" listener %s:%d%s left from %s, expected %s"
                                % (dst[0], dst[1], laddr[0], laddr[1], what, src[0], laddr[0]))
        other = t.tcp4 if ":" in laddr[0] else t.tcp6
        r, src = net.tunnel(laddr, other)
        if r.rep != 0x03:
            problems.append("CONNECT %s:%d via the \"same\" listener %s:%d%s (no address of that family, "
                            "egress_fallback false): REP 0x%02x%s, expected 0x03"
                            % (other[0], other[1], laddr[0], laddr[1], what, r.rep,
                               " from %s" % src[0] if src else ""))
    mismatch_report(problems)


@case("egress_listener_same")
def egress_listener_same(ctx):
    """egress = "same" on listener groups: a tunnel leaves from the address its
    client connected to (two IPv4 and two IPv6 proxy addresses, port 1080 in the
    test's own namespace); a destination of the other family has no address to
    leave from: 0x03 (egress_fallback false)."""
    need_egress(ctx)
    net, p = same_listeners(ctx, 1080)
    check_same(net, p, "")


@case("egress_listener_port0")
def egress_listener_port0(ctx):
    """The same with listener groups on port 0 (the kernel's choice, as every other
    test of the suite listens): the group's egress must still apply."""
    need_egress(ctx)
    net, p = same_listeners(ctx, 0)
    check_same(net, p, " (configured as port 0)")


# -------------------------------------------------------------------- families

DEAD6 = "2001:db8:dead::1"   # routed in P to a neighbour that never answers: a SYN into the void


def dns_in(net):
    """A DNS stub inside P: t4.test A T4, t6.test AAAA T6, dual.test both, slow6.test
    AAAA DEAD6 and A T4."""
    dns = net.P.call(DNSStub)
    net.ctx.defer(dns.stop)
    a4, a6 = socket.inet_pton(socket.AF_INET, T4), socket.inet_pton(socket.AF_INET6, T6)
    dns.RECORDS = {("t4.test", 1): [a4], ("t6.test", 28): [a6], ("dual.test", 1): [a4], ("dual.test", 28): [a6],
                   ("slow6.test", 1): [a4], ("slow6.test", 28): [socket.inet_pton(socket.AF_INET6, DEAD6)]}
    dns.NAMES = {"t4.test", "t6.test", "dual.test", "slow6.test"}
    return dns


@case("egress_family_fallback")
def egress_family_fallback(ctx):
    """An IPv6-only pool: an IPv4 address request gets 0x03, a name with only an A
    record 0x04; a rule with egress_fallback = true lets the kernel choose (the veth
    address), and so does the global key."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    dns = dns_in(net)
    conf = 'egress = ["2001:db8:1::/64"];\nrules = ( { action = "allow"; ports = [%d]; egress_fallback = true; },' \
           ' { action = "allow"; } );\n' % t.tcp4b[1]
    p = net.proxy(conf, args=["--resolver", dns.spec])
    problems = []
    src6 = net.tunnel_ok(p.addr, t.tcp6)[0]
    if not in_net(src6, "2001:db8:1::/64"):
        problems.append("IPv6 CONNECT with egress = [\"2001:db8:1::/64\"] left from %s" % src6)
    for host, want, what in ((None, 0x03, "address request %s" % T4), ("t4.test", 0x04, "name t4.test (A only)")):
        r, src = net.tunnel(p.addr, t.tcp4, host=host)
        if r.rep != want:
            problems.append("CONNECT %s:%d with an IPv6-only pool and egress_fallback false: REP 0x%02x%s, "
                            "expected 0x%02x" % (what, t.tcp4[1], r.rep, " from %s" % src[0] if src else "", want))
    for host in (None, "t4.test"):
        r, src = net.tunnel(p.addr, t.tcp4b, host=host)
        if r.rep != 0 or src[0] != P_V4:
            problems.append("CONNECT %s:%d under a rule with egress_fallback = true: REP 0x%02x from %s, "
                            "expected 00 from %s (the kernel's choice)"
                            % (host or T4, t.tcp4b[1], r.rep, src and src[0], P_V4))
    p.stop()
    conf = 'egress = ["2001:db8:1::/64"];\negress_fallback = true;\n' + ALLOW_ALL
    p2 = net.proxy(conf, args=["--resolver", dns.spec], name="fallback.conf")
    for host in (None, "t4.test"):
        r, src = net.tunnel(p2.addr, t.tcp4, host=host)
        if r.rep != 0 or src[0] != P_V4:
            problems.append("CONNECT %s:%d with global egress_fallback = true: REP 0x%02x from %s, expected 00 "
                            "from %s" % (host or T4, t.tcp4[1], r.rep, src and src[0], P_V4))
    src6 = net.tunnel_ok(p2.addr, t.tcp6, host="t6.test")[0]
    if not in_net(src6, "2001:db8:1::/64"):
        problems.append("CONNECT t6.test with egress_fallback = true left from %s, expected the pool" % src6)
    mismatch_report(problems)


@case("egress_family_rule")
def egress_family_rule(ctx):
    """family = on rules for a name with A and AAAA: ipv4 / ipv6 / prefer-ipv4 /
    prefer-ipv6 pick the family (seen as the source's family); a name whose AAAA
    address never answers still connects over IPv4 soon after happy_eyeballs_delay
    (its default, 250 ms: config_check checks that the key itself is known)."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    dns = dns_in(net)
    net.P.ip("-6", "route", "add", DEAD6 + "/128", "via", "2001:db8:f0::99", "dev", "veth0")
    fams = ("ipv4", "ipv6", "prefer-ipv4", "prefer-ipv6")
    # one rule per family, told apart by the destination port (listening on T4 and T6 alike)
    ports = [t.add_dual() for _ in fams]
    rules = ['{ action = "allow"; ports = [%d]; family = "%s"; }' % (pt, f) for pt, f in zip(ports, fams)]
    conf = 'rules = (\n  %s,\n  { action = "allow"; }\n);\n' % ",\n  ".join(rules)
    p = net.proxy(conf, args=["--resolver", dns.spec])
    problems = []
    for pt, fam in zip(ports, fams):
        r, src = net.tunnel(p.addr, ("dual.test", pt), host="dual.test")
        want = P_V4 if "4" in fam else P_V6
        if r.rep != 0 or src[0] != want:
            problems.append("CONNECT dual.test:%d (A and AAAA) under family = \"%s\": REP 0x%02x from %s, "
                            "expected 00 from %s" % (pt, fam, r.rep, src and src[0], want))
    # prefer-ipv6 tries the AAAA first; it never answers (--connect-timeout 3): the A must
    # be tried after happy_eyeballs_delay, not after the timeout
    t0 = time.monotonic()
    r, src = net.tunnel(p.addr, ("slow6.test", ports[3]), host="slow6.test")
    dt = time.monotonic() - t0
    if r.rep != 0 or src[0] != P_V4 or dt > 2.0:
        problems.append("CONNECT slow6.test:%d under family = \"prefer-ipv6\" (AAAA never answers, A reachable): "
                        "REP 0x%02x from %s after %.2f s, expected 00 over IPv4 (%s) within about "
                        "happy_eyeballs_delay (default 250 ms)" % (ports[3], r.rep, src and src[0], dt, P_V4))
    mismatch_report(problems)


# -------------------------------------------------------------------- UDP, BIND, mark

@case("egress_udp")
def egress_udp(ctx):
    """UDP ASSOCIATE: datagrams to the target leave from a pool address of their
    family (one address for the association)."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    p = net.proxy('egress = ["2001:db8:1::/64", "203.0.113.9"];\n' + ALLOW_ALL)
    problems = []
    for dst, pool in ((t.udp4, "203.0.113.9/32"), (t.udp6, "2001:db8:1::/64")):
        r, relay, seen = net.udp(p.addr, dst, count=3)
        check(r.rep == 0, "UDP ASSOCIATE: reply %s" % hexb(r.raw))
        addrs = {a for a, _ in seen}
        if len(addrs) != 1 or not in_net(next(iter(addrs)), pool):
            problems.append("UDP datagrams to %s:%d with egress pool %s left from %s, expected one address of %s"
                            % (dst[0], dst[1], pool, sorted(addrs), pool))
    check(len(t.udp_sources()) == 6, "the target recorded %d datagrams, expected 6" % len(t.udp_sources()))
    mismatch_report(problems)


@case("egress_bind")
def egress_bind(ctx):
    """BIND listens on a pool address of the peer's family: BND.ADDR of the first reply
    is in the pool, and the peer reaches it there."""
    need_egress(ctx)
    net = EgressNet(ctx)
    p = net.proxy('egress = ["2001:db8:1::/64", "203.0.113.9"];\n' + ALLOW_ALL)
    problems = []
    for peer, pool in ((T4, "203.0.113.9/32"), (T6, "2001:db8:1::/64")):
        r1, r2, reached = net.bind(p.addr, peer)
        if r1.rep != 0:
            problems.append("BIND for %s with a pool: first reply %s" % (peer, hexb(r1.raw)))
            continue
        if not in_net(r1.host, pool):
            problems.append("BIND for %s with egress pool %s: BND.ADDR %s, expected an address of the pool"
                            % (peer, pool, r1.host))
        if r2 is None or r2.rep != 0 or r2.host != peer:
            problems.append("BIND for %s: second reply %s, expected 00 naming %s"
                            % (peer, r2 and hexb(r2.raw), peer))
    mismatch_report(problems)


@case("egress_mark")
def egress_mark(ctx, user=None):
    """A rule with mark = 42: the outgoing socket carries SO_MARK 42, which the proxy
    namespace's `ip rule fwmark 42 table 100` routes over the second veth pair, so the
    target sees the source address of that path; other tunnels take the main table."""
    need_egress(ctx)
    net = EgressNet(ctx)
    t = net.target
    conf = 'rules = ( { action = "allow"; ports = [%d, %d]; mark = %d; }, { action = "allow"; } );\n' \
           % (t.tcp4b[1], t.tcp6b[1], MARK)
    if user:
        conf += 'user = "%s";\n' % user
    p = net.proxy(conf)
    problems = []
    for dst, want in ((t.tcp4b, P_V4_MARK), (t.tcp6b, P_V6_MARK), (t.tcp4, P_V4), (t.tcp6, P_V6)):
        src = net.tunnel_ok(p.addr, dst)[0]
        if src != want:
            problems.append("CONNECT %s:%d (%s) left from %s, expected %s"
                            % (dst[0], dst[1], "rule with mark = 42" if dst in (t.tcp4b, t.tcp6b) else "no mark",
                               src, want))
    mismatch_report(problems)


@case("egress_mark_after_privilege_drop")
def egress_mark_after_privilege_drop(ctx):
    """The same with user = "nobody": SO_MARK needs CAP_NET_RAW (Linux 5.17 and later) or
    CAP_NET_ADMIN, which ringsocks keeps (alone) through the drop when a rule sets mark;
    without it every marked tunnel fails."""
    egress_mark(ctx, user="nobody")


def own_listener(ctx, net, fastopen=False):
    """A TCP listener of the test's own in T (the target's are made before a test can change
    T's sysctls) that answers like the target, "SRC SPORT\n", and keeps each connection open
    until the test ends. Returns its (address, port)."""
    srv = net.T.socket(socket.AF_INET, socket.SOCK_STREAM)
    if fastopen:
        srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
    srv.bind((T4, 0))
    srv.listen(16)
    kept = []
    ctx.defer(lambda: [c.close() for c in kept])
    ctx.defer(srv.close)

    def serve():
        while True:
            try:
                c, a = srv.accept()
            except OSError:
                return
            c.sendall(("%s %d\n" % a[:2]).encode())
            kept.append(c)
    threading.Thread(target=serve, daemon=True).start()
    return (T4, srv.getsockname()[1])


def _fastopen_passive(ns):
    """TcpExt TCPFastOpenPassive of namespace ns: connections accepted with data in the SYN."""
    import subprocess
    out = subprocess.run(["ip", "netns", "exec", ns.name, "cat", "/proc/net/netstat"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20).stdout.decode()
    lines = [l.split() for l in out.splitlines() if l.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1]))["TCPFastOpenPassive"])


@case("egress_fastopen")
def egress_fastopen(ctx):
    """fastopen = true on a rule: bytes a client pipelines after its request ride in the
    SYN once the target gave a cookie (TCPFastOpenPassive counts in the target namespace);
    a client that waits for the server to speak first still gets its connection at once
    (no deferred connect without bytes to send), so server-first protocols do not hang."""
    need_egress(ctx)
    from harness import GREETING, request as socks_request, read_reply, recv_exact
    net = EgressNet(ctx)
    dst = own_listener(ctx, net, fastopen=True)
    net.T.sysctl("net.ipv4.tcp_fastopen", "3")
    p = net.proxy('rules = ( { action = "allow"; fastopen = true; } );\n')

    def pipelined():
        s = socket.create_connection(tuple(p.addr[:2]), timeout=5)
        try:
            s.sendall(GREETING + socks_request(dst[0], dst[1]) + b"PING\n")
            recv_exact(s, 2, "method selection reply")
            r = read_reply(s, "CONNECT reply")
            check(r.rep == 0, "pipelined CONNECT: REP 0x%02x, expected 00" % r.rep)
            return read_source(s, "after a pipelined CONNECT")
        finally:
            s.close()

    before = _fastopen_passive(net.T)
    for _ in range(3):
        net.P.call(pipelined)
    got = _fastopen_passive(net.T) - before
    check(got >= 1, "3 pipelined tunnels with fastopen = true: %d accepted with data in the SYN, "
          "expected at least 1 (the first only fetches the cookie)" % got)
    # The cookie is cached now: a client that sends nothing until the server speaks.
    t0 = time.monotonic()
    src = net.tunnel_ok(p.addr, dst, what=" (server speaks first, cookie cached)")
    took = time.monotonic() - t0
    check(src is not None and took < 2, "a server-first tunnel after the cookie took %.1f s" % took)


@case("egress_keepalive_rule")
def egress_keepalive_rule(ctx):
    """keepalive = false on a rule: its tunnels' outgoing sockets carry no keepalive timer,
    while the global keepalive (keepalive_idle 120) stays on the others; the socket state
    as `ss -o` shows it in the proxy namespace."""
    need_egress(ctx)
    import subprocess
    from harness import request as socks_request, read_reply
    net = EgressNet(ctx)
    off, on = own_listener(ctx, net), own_listener(ctx, net)
    p = net.proxy('rules = ( { action = "allow"; ports = [%d]; keepalive = false; }, '
                  '{ action = "allow"; } );\n' % off[1])

    def hold(dst):
        s = net.socks_open(tuple(p.addr[:2]))
        s.sendall(socks_request(dst[0], dst[1]))
        r = read_reply(s, "CONNECT reply")
        check(r.rep == 0, "CONNECT %s:%d: REP 0x%02x" % (dst[0], dst[1], r.rep))
        read_source(s, "through the tunnel")
        return s

    held = [net.P.call(hold, d) for d in (off, on)]
    try:
        problems = []
        for dst, want in ((off, False), (on, True)):
            out = subprocess.run(["ip", "netns", "exec", net.P.name, "ss", "-tnoH", "state", "established",
                                  "dst", "%s:%d" % dst], stdout=subprocess.PIPE, timeout=20).stdout.decode()
            lines = [l for l in out.splitlines() if l.strip()]
            if len(lines) != 1:
                problems.append("%d sockets to %s:%d in the proxy namespace, expected 1: %r" % (len(lines), dst[0], dst[1], out))
            elif ("timer:(keepalive" in lines[0]) != want:
                problems.append("the outgoing socket to %s:%d %s a keepalive timer (%s): %s"
                                % (dst[0], dst[1], "lacks" if want else "has",
                                   "global keepalive" if want else "rule keepalive = false", lines[0]))
        check(not problems, "; ".join(problems))
    finally:
        for s in held:
            s.close()


# -------------------------------------------------------------------- -t

def check_t(ctx, conf_text, name, want_ok, want_where=None):
    path = ctx.path(name)
    with open(path, "w") as f:
        f.write(conf_text)
    r = ctx.run([CONFIG.binary, "-t", "-c", path], timeout=20, env=None)
    out = (r.stdout + r.stderr).decode("utf-8", "replace").strip()
    if want_ok:
        return None if r.returncode == 0 else "-t -c %s: %s, expected exit 0; output: %s" % (
            name, fmt_status(r.returncode), out)
    if r.returncode == 0:
        return "-t -c %s: exit 0, expected an error at %s; config:\n%s" % (name, want_where, conf_text)
    if want_where not in out:
        return "-t -c %s: %s but no error naming %s; output: %s" % (name, fmt_status(r.returncode), want_where, out)
    return None


@case("egress_config_check")
def egress_config_check(ctx):
    """Every key of the spec passes -t; a pool entry with host bits, an unknown user
    attribute, a bad user egress value and (with username_params) a user name
    holding -session- are refused with FILE:LINE."""
    need_egress(ctx)
    h = pw_hash(ALICE[1])
    problems = []
    good_users = write_users(ctx, ["alice:%s egress=2001:db8:1::/64,203.0.113.7" % h, "bob:%s" % h], "good-users")
    good = """auth = "password";
users = "%s";
egress = ["2001:db8:1::/64", "198.51.100.7"];
egress_fallback = false;
username_params = true;
session_ttl = 600;
session_ttl_max = 86400;
session_key = "secret";
listen = ( "127.0.0.1:1080", { address = "198.51.100.7:1080"; egress = "same"; },
           { address = "[::1]:1081"; egress = ["2001:db8:2::/64"]; } );
rules = (
  { action = "allow"; users = ["alice"]; egress = ["203.0.113.0/24", "2001:db8:2::/64"]; egress_fallback = true;
    family = "prefer-ipv6"; mark = 42; keepalive = true; user_timeout = 30; fastopen = true; },
  { action = "allow"; family = "any"; }
);
""" % good_users
    e = check_t(ctx, good, "good.conf", True)
    if e:
        problems.append(e)
    e = check_t(ctx, "happy_eyeballs_delay = 250;\n", "he.conf", True)
    if e:
        problems.append(e)
    for i, fam in enumerate(("ipv4", "ipv6", "prefer-ipv4")):
        e = check_t(ctx, 'rules = ( { action = "allow"; family = "%s"; } );\n' % fam, "fam%d.conf" % i, True)
        if e:
            problems.append(e)
    # bad pool entries: host bits set, not an address; global and in a rule
    cases = [('# pools\nlisten = ["127.0.0.1:1080"];\negress = ["2001:db8::1/64"];\n', 3),
             ('egress = ["2001:db8:1::/64",\n  "203.0.113.5/24"];\n', 2),
             ('rules = (\n  { action = "allow";\n    egress = ["not-an-address"]; }\n);\n', 3),
             ('rules = (\n  { action = "allow"; egress = ["2001:db8::1/64"]; }\n);\n', 2),
             ('listen = ( { address = "127.0.0.1:1080";\n  egress = "nearby"; } );\n', 2)]
    for i, (text, line) in enumerate(cases):
        name = "bad%d.conf" % i
        e = check_t(ctx, text, name, False, "%s:%d:" % (ctx.path(name), line))
        if e:
            problems.append(e)
    # users file errors: FILE:LINE of the users file
    ucases = [(["alice:%s" % h, "bob:%s colour=blue" % h], False, 2, "unknown attribute colour="),
              (["# c", "", "carol:%s egress=not-an-address" % h], False, 3, "bad egress value"),
              (["dave:%s egress=2001:db8::1/64" % h], False, 1, "pool entry with host bits"),
              (["alice:%s" % h, "eve-session-1:%s" % h], True, 2, "-session- in a name, username_params on"),
              (["alice:%s" % h, "eve-ttl-9:%s" % h], True, 2, "-ttl- in a name, username_params on")]
    for i, (lines, params, line, what) in enumerate(ucases):
        upath = write_users(ctx, lines, "users%d" % i)
        text = 'auth = "password";\nusers = "%s";\n%s' % (upath, "username_params = true;\n" if params else "")
        e = check_t(ctx, text, "u%d.conf" % i, False, "%s:%d:" % (upath, line))
        if e:
            problems.append("users file (%s): %s" % (what, e))
    # the same names are fine without username_params
    upath = write_users(ctx, ["eve-session-1:%s" % h], "users-plain")
    e = check_t(ctx, 'auth = "password";\nusers = "%s";\n' % upath, "u-plain.conf", True)
    if e:
        problems.append("a name with -session- and username_params off: " + e)
    mismatch_report(problems)
