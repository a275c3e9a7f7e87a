"""
cases_conns.py - live control of tunnels on the admin endpoint (issue #12):
GET /connections with its filters and limit over every shard, POST
/connections/ID/close (exactly that tunnel, logged with its id), stale and
malformed ids, POST /users/NAME/disconnect, /block and /unblock with
password users.
"""

import json
import re
import socket

from cases_auth import ALICE, BOB, auth_proxy
from cases_limits import log_line_for
from harness import (admin_request, case, check, echo_roundtrip, need_ringsocks, open_proxy_socket,
                     read_reply, request, socks5_login, socks_connect, tail)

ID_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def api(p, method, path, want=200):
    """(status, parsed JSON) of one admin request; fails unless the status is want."""
    st, text, hdrs = admin_request(p, method, path)
    check(st == want, "%s %s answered %d %r, expected %d" % (method, path, st, text, want))
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    check(isinstance(body, dict), "%s %s: the answer is not a JSON object: %r" % (method, path, text))
    check(hdrs.get("content-type", "").startswith("application/json"),
          "%s %s: Content-Type %r" % (method, path, hdrs.get("content-type")))
    return body


def conns(p, query=""):
    body = api(p, "GET", "/connections" + query)
    return body["connections"], body


def by_port(cs):
    return {int(c["client"].rsplit(":", 1)[1]): c for c in cs}


def sees_eof(s, timeout=3.0):
    """The proxy closed s: EOF or a reset within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def login_tunnel(ctx, p, who, port):
    s = open_proxy_socket(ctx, p)
    socks5_login(s, who[0], who[1])
    s.sendall(request("127.0.0.1", port))
    r = read_reply(s)
    check(r.rep == 0, "CONNECT as %s: REP 0x%02x" % (who[0], r.rep))
    return s


@case("conns_list_filters_limit")
def conns_list_filters_limit(ctx):
    """GET /connections: every tunnel on both shards with its fields; user, client and dest
    filters; limit truncates; malformed queries 400; POST 405."""
    need_ringsocks()
    echo, other = ctx.echo_server(), ctx.echo_server()
    p = ctx.proxy()
    socks = []
    # SO_REUSEPORT spreads clients by hash: open tunnels until both shards hold some.
    while len(socks) < 6 or (len(socks) < 40 and len({c["shard"] for c in conns(p)[0]}) < 2):
        s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
        echo_roundtrip(s, 100)
        socks.append(s)
    two = [socks_connect(ctx, p, "127.0.0.1", other.port)[0] for _ in range(2)]
    cs, body = conns(p)
    check(body["truncated"] is False, "truncated with %d tunnels: %r" % (len(cs), body))
    got = by_port(cs)
    ports = [s.getsockname()[1] for s in socks + two]
    check(sorted(got) == sorted(ports), "GET /connections lists clients %s, expected %s"
          % (sorted(got), sorted(ports)))
    check({c["shard"] for c in cs} == {0, 1}, "tunnels on shards %s, expected both of 0, 1"
          % sorted({c["shard"] for c in cs}))
    ids = set()
    for s in socks:
        c = got[s.getsockname()[1]]
        m = ID_RE.match(c["id"])
        check(m and int(m.group(1)) == c["shard"], "id %r does not name shard %r" % (c["id"], c["shard"]))
        ids.add(c["id"])
        want = {"state": "relay", "cmd": "connect", "user": None,
                "client": "127.0.0.1:%d" % s.getsockname()[1], "dest": "127.0.0.1:%d" % echo.port,
                "bytes_up": 100, "bytes_down": 100}
        for k, v in want.items():
            check(c.get(k) == v, "connection %s: %s is %r, expected %r" % (c["id"], k, c.get(k), v))
        check(re.match(r"^127\.0\.0\.1:\d+$", c["egress"] or ""), "egress %r" % c["egress"])
        check(isinstance(c["age_s"], int) and 0 <= c["age_s"] < 60, "age_s %r" % c["age_s"])
    check(len(ids) == len(socks), "ids not unique: %s" % sorted(ids))

    # Filters.
    one = socks[0].getsockname()[1]
    cs, _ = conns(p, "?client=127.0.0.1:%d" % one)
    check([c["client"] for c in cs] == ["127.0.0.1:%d" % one], "client=IP:PORT gave %r" % cs)
    cs, _ = conns(p, "?client=127.0.0.1")
    check(len(cs) == len(ports), "client=IP gave %d, expected %d" % (len(cs), len(ports)))
    cs, _ = conns(p, "?client=10.9.9.9")
    check(cs == [], "client=10.9.9.9 gave %r" % cs)
    cs, _ = conns(p, "?dest=%%3A%d" % other.port)  # ":PORT", percent-encoded
    check(sorted(by_port(cs)) == sorted(s.getsockname()[1] for s in two),
          "dest=:%d gave %r" % (other.port, cs))
    cs, _ = conns(p, "?dest=127.0.0.1&client=127.0.0.1:%d" % one)
    check(len(cs) == 1, "dest and client together gave %r" % cs)
    cs, _ = conns(p, "?user=alice")
    check(cs == [], "user=alice without users gave %r" % cs)

    # Limit.
    cs, body = conns(p, "?limit=3")
    check(len(cs) == 3 and body["truncated"] is True, "limit=3: %d, truncated %r"
          % (len(cs), body["truncated"]))
    cs, body = conns(p, "?limit=%d" % len(ports))
    check(len(cs) == len(ports) and body["truncated"] is False, "limit=all: %d, truncated %r"
          % (len(cs), body["truncated"]))

    for q in ("?limit=100001", "?limit=-1", "?limit=x", "?client=bogus", "?nope=1", "?dest=%zz",
              "?user", "?user=a&user=b"):
        body = api(p, "GET", "/connections" + q, want=400)
        check("error" in body, "GET /connections%s: no error text: %r" % (q, body))
    st, text, hdrs = admin_request(p, "POST", "/connections")
    check(st == 405 and "GET" in hdrs.get("allow", ""), "POST /connections: %d %r, allow %r"
          % (st, text, hdrs.get("allow")))
    for s in socks + two:
        echo_roundtrip(s, 10)


@case("conns_close_by_id")
def conns_close_by_id(ctx):
    """POST /connections/ID/close closes exactly that tunnel (its client sees EOF, the log
    says end=admin_close with the id); the same id again, a wrong generation or shard is 404;
    a malformed id 400; GET 405."""
    need_ringsocks()
    log = ctx.path("access.log")
    echo = ctx.echo_server()
    p = ctx.proxy(args=("--access-log", log, "--log-format", "logfmt"))
    socks = [socks_connect(ctx, p, "127.0.0.1", echo.port)[0] for _ in range(3)]
    for s in socks:
        echo_roundtrip(s, 10)
    victim = socks[1]
    c = by_port(conns(p)[0])[victim.getsockname()[1]]
    body = api(p, "POST", "/connections/%s/close" % c["id"])
    check(body == {"closed": 1}, "close answered %r" % body)
    check(sees_eof(victim), "the closed tunnel's client saw no EOF")
    for s in (socks[0], socks[2]):
        echo_roundtrip(s, 10)
    rec = log_line_for(log, victim.getsockname()[1])
    check(rec is not None, "no access-log line for the closed tunnel", tail(open(log).read()))
    check(rec.get("end") == "admin_close" and rec.get("id") == c["id"],
          "the log line says end=%s id=%s, expected admin_close and %s"
          % (rec.get("end"), rec.get("id"), c["id"]))
    left = conns(p)[0]
    check(sorted(x["id"] for x in left) == sorted(by_port(left)[s.getsockname()[1]]["id"]
                                                  for s in (socks[0], socks[2])),
          "after the close: %r" % left)

    shard, slot, gen = (int(x) for x in c["id"].split("."))
    for stale in (c["id"], "%d.%d.%d" % (shard, slot, gen + 7), "99.0.0"):
        body = api(p, "POST", "/connections/%s/close" % stale, want=404)
        check("error" in body, "stale %s: %r" % (stale, body))
    for bad in ("1.2", "a.b.c", "1.2.3.4", "-1.0.0", "1.2.99999999999"):
        api(p, "POST", "/connections/%s/close" % bad, want=400)
    api(p, "POST", "/connections/0.0.0/open", want=404)
    st, _, hdrs = admin_request(p, "GET", "/connections/%s/close" % left[0]["id"])
    check(st == 405 and hdrs.get("allow") == "POST", "GET on close: %d, allow %r"
          % (st, hdrs.get("allow")))
    for s in (socks[0], socks[2]):
        echo_roundtrip(s, 10)


@case("conns_user_disconnect_block")
def conns_user_disconnect_block(ctx):
    """With password users: ?user= lists one user's tunnels; /users/NAME/disconnect closes
    every tunnel of alice on every shard and none of bob's (end=admin_close); /block closes
    hers with end=blocked, answers blocked:true, and her new requests get 0x02; /unblock answers blocked:false and her
    new tunnels work; unknown users 404, a name with '/' 400, GET 405."""
    need_ringsocks()
    log = ctx.path("access.log")
    echo = ctx.echo_server()
    p = auth_proxy(ctx, extra=("--access-log", log, "--log-format", "logfmt"))
    alice = [login_tunnel(ctx, p, ALICE, echo.port) for _ in range(4)]
    bob = [login_tunnel(ctx, p, BOB, echo.port) for _ in range(2)]
    cs, _ = conns(p, "?user=alice")
    check(sorted(by_port(cs)) == sorted(s.getsockname()[1] for s in alice),
          "user=alice lists %r" % cs)
    check(all(c["user"] == "alice" for c in cs), "user fields %r" % [c["user"] for c in cs])
    cs, _ = conns(p, "?user=bo")
    check(cs == [], "user=bo (a prefix) matched %r" % cs)

    body = api(p, "POST", "/users/alice/disconnect")
    check(body == {"closed": 4}, "disconnect answered %r, expected closed 4" % body)
    for s in alice:
        check(sees_eof(s), "an alice tunnel stayed open after disconnect")
        rec = log_line_for(log, s.getsockname()[1])
        check(rec and rec.get("end") == "admin_close", "alice's log line: %r" % rec)
    for s in bob:
        echo_roundtrip(s, 10)
    check(len(conns(p)[0]) == 2, "after disconnect: %r" % conns(p)[0])
    # A percent-encoded name is the same name; nothing of hers is left.
    check(api(p, "POST", "/users/al%69ce/disconnect") == {"closed": 0}, "encoded name")

    again = login_tunnel(ctx, p, ALICE, echo.port)
    body = api(p, "POST", "/users/alice/block")
    check(body == {"blocked": True, "closed": 1}, "block answered %r" % body)
    check(sees_eof(again), "alice's tunnel stayed open after block")
    rec = log_line_for(log, again.getsockname()[1])
    check(rec and rec.get("end") == "blocked", "the blocked tunnel's log line: %r" % rec)
    for s in bob:
        echo_roundtrip(s, 10)
    # Her new requests are refused while the block lasts (limit_admit() reads it).
    s = open_proxy_socket(ctx, p)
    socks5_login(s, ALICE[0], ALICE[1])
    s.sendall(request("127.0.0.1", echo.port))
    r = read_reply(s)
    check(r.rep == 0x02, "a blocked user's CONNECT: REP 0x%02x, expected 0x02" % r.rep)
    check(sees_eof(s), "a blocked user's refused request left the connection open")

    body = api(p, "POST", "/users/alice/unblock")
    check(body == {"blocked": False}, "unblock answered %r" % body)
    s = login_tunnel(ctx, p, ALICE, echo.port)
    echo_roundtrip(s, 10)

    for path in ("/users/nobody/block", "/users/nobody/unblock", "/users/nobody/disconnect"):
        api(p, "POST", path, want=404)
    api(p, "POST", "/users/a%2Fb/block", want=400)
    api(p, "POST", "/users/a%zz/block", want=400)
    st, _, hdrs = admin_request(p, "GET", "/users/alice/block")
    check(st == 405 and hdrs.get("allow") == "POST", "GET on block: %d, allow %r"
          % (st, hdrs.get("allow")))
    echo_roundtrip(s, 10)
