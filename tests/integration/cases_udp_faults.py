"""
cases_udp_faults.py - fault mode's UDP faults (docs/faults.md, "UDP faults"): udp_drop_P,
udp_dup_P, udp_reorder_P and udp_frag_N on the datagrams of a UDP ASSOCIATE.

A raw client (socket module only) associates through a ringsocks whose rule
carries the fault, sends numbered datagrams ("seq NNNNN") to a UDP echo server
the test starts on 127.0.0.1 (ctx.udp_echo, keep: it records what it got in
order, and is closed at the test's end); the client
records what comes back, with each reply's FRAG byte. The checks: what each
side saw, the access-log line (fault=, udp_drop=fault:N) and
ringsocks_faults_total. A fault asked by user name (username_params) acts only
where the rule has fault_allow.
"""

import collections
import re
import socket
import time

from cases_control import conf_proxy, rules_conf, scrape
from harness import (case, check, make_hash, metric, need_option, parse_logfmt, socks5_command, tail,
                     udp_header, wait_until, write_users)

N = 400
ALLOW = '{ action = "allow"; from = ["127.0.0.0/8"]; %s }'


def seq_of(payload):
    m = re.fullmatch(rb"seq (\d{5})", payload)
    check(m is not None, "a datagram with a payload not sent by the test: %r" % payload[:40])
    return int(m.group(1))


def parse_reply(data):
    """(frag, seq) of a datagram from the relay (RFC 1928 header, ATYP 01 expected)."""
    check(len(data) >= 10 and data[0:2] == b"\x00\x00" and data[3] == 1,
          "a reply datagram whose header is not RSV 00 00, ATYP 01: %r" % data[:16])
    return data[2], seq_of(data[10:])


def drain(cli, got):
    while True:
        try:
            got.append(parse_reply(cli.recv(65536)))
        except (BlockingIOError, socket.timeout):
            return


def burst(ctx, p, echo, n=N, auth=None):
    """UDP ASSOCIATE, n numbered datagrams to echo (paced, the replies read as they
    come), then the replies until 1 s of silence. Returns (control socket, echo's
    sequence numbers in order, the client's [(frag, seq)] in order)."""
    s, r = socks5_command(ctx, p, 3, "0.0.0.0", 0, auth=auth, what="UDP ASSOCIATE reply")
    relay = (r.host, r.port)
    cli = ctx.udp_socket("127.0.0.1")
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    hdr = udp_header("127.0.0.1", echo.port)
    got = []
    cli.setblocking(False)
    for i in range(n):
        cli.sendto(hdr + b"seq %05d" % i, relay)
        if i % 10 == 9:
            time.sleep(0.005)
            drain(cli, got)
    cli.settimeout(1.0)
    drain(cli, got)
    return s, [seq_of(d) for d in list(echo.data)], got


def fault_proxy(ctx, fault, extra_rule="", extra="", more_rules=()):
    """A proxy whose first rule carries fault (a list of names, or None)."""
    need_option("--config")
    keys = extra_rule
    if fault:
        keys += " fault = [%s];" % ", ".join('"%s"' % f for f in fault)
    p, _ = conf_proxy(ctx, rules_conf(ALLOW % keys, *more_rules, extra=extra))
    return p, ctx.udp_echo("127.0.0.1", keep=True)


def udp_log_line(p, s):
    """Close the association's control connection (s; None: closed already); its access-log
    line (logfmt dict)."""
    if s is not None:
        s.close()
    found = {}

    def line():
        for ln in p.stderr().splitlines():
            if " cmd=udp " in ln and " udp_out=" in ln:
                found["rec"] = parse_logfmt(ln)
                return True
        return False
    check(wait_until(line, 5.0), "no access-log line for the UDP association", tail(p.stderr()))
    return found["rec"]


def faults_total(p, name):
    return metric(scrape(p), "ringsocks_faults_total", fault=name)


def show(echo_seqs, got):
    return ["echo server got %d: %s ..." % (len(echo_seqs), echo_seqs[:24]),
            "client got %d: %s ..." % (len(got), got[:24])]


# ------------------------------------------------------------------- udp_drop

@case("udp_fault_drop_50")
def udp_fault_drop_50(ctx):
    """udp_drop_50: about half of the datagrams each way are lost (the echo server gets
    about 200 of 400, the client about half of those back); the access log names the
    fault and counts every loss as udp_drop=fault:N; ringsocks_faults_total counts it."""
    p, echo = fault_proxy(ctx, ["udp_drop_50"])
    s, seen, got = burst(ctx, p, echo)
    details = show(seen, got)
    check(0.25 * N <= len(seen) <= 0.75 * N,
          "udp_drop_50: the echo server got %d of %d datagrams, expected about half" % (len(seen), N), details)
    check(0.25 * len(seen) <= len(got) <= 0.75 * len(seen),
          "udp_drop_50: the client got %d of the %d echoed datagrams back, expected about half"
          % (len(got), len(seen)), details)
    check(len(set(seen)) == len(seen) and len(set(g for _, g in got)) == len(got),
          "udp_drop_50: a datagram arrived twice", details)
    rec = udp_log_line(p, s)
    check(rec.get("fault") == "udp_drop_50", "access log fault=%r, expected udp_drop_50" % rec.get("fault"),
          [str(rec)])
    want = "fault:%d" % (N - len(got))
    check(rec.get("udp_drop") == want, "access log udp_drop=%r, expected %s (%d sent, %d back)"
          % (rec.get("udp_drop"), want, N, len(got)), [str(rec)])
    check(rec.get("udp_out") == str(len(seen)) and rec.get("udp_in") == str(len(got)),
          "access log udp_out=%s udp_in=%s, expected %d and %d"
          % (rec.get("udp_out"), rec.get("udp_in"), len(seen), len(got)), [str(rec)])
    check(faults_total(p, "udp_drop") == 1, "ringsocks_faults_total{fault=\"udp_drop\"} is %r, expected 1 "
          "(one association)" % faults_total(p, "udp_drop"))


@case("udp_fault_drop_100")
def udp_fault_drop_100(ctx):
    """udp_drop_100: nothing gets through either way."""
    p, echo = fault_proxy(ctx, ["udp_drop_100"])
    s, seen, got = burst(ctx, p, echo, n=100)
    check(not seen and not got, "udp_drop_100: datagrams got through", show(seen, got))
    rec = udp_log_line(p, s)
    check(rec.get("udp_drop") == "fault:100", "access log udp_drop=%r, expected fault:100" % rec.get("udp_drop"),
          [str(rec)])


# -------------------------------------------------------------------- udp_dup

@case("udp_fault_dup_100")
def udp_fault_dup_100(ctx):
    """udp_dup_100: every datagram is sent twice each way: the echo server gets each
    twice, the client each of the echoes twice (four copies)."""
    p, echo = fault_proxy(ctx, ["udp_dup_100"])
    s, seen, got = burst(ctx, p, echo)
    details = show(seen, got)
    c_echo = collections.Counter(seen)
    c_cli = collections.Counter(g for _, g in got)
    check(sorted(c_echo) == list(range(N)) and set(c_echo.values()) == {2},
          "udp_dup_100: the echo server did not get each of the %d datagrams exactly twice "
          "(%d distinct, counts %s)" % (N, len(c_echo), sorted(set(c_echo.values()))), details)
    check(sorted(c_cli) == list(range(N)) and set(c_cli.values()) == {4},
          "udp_dup_100: the client did not get each datagram four times (twice each way) "
          "(%d distinct, counts %s)" % (len(c_cli), sorted(set(c_cli.values()))), details)
    rec = udp_log_line(p, s)
    check(rec.get("fault") == "udp_dup_100" and rec.get("udp_drop") == "-",
          "access log fault=%r udp_drop=%r, expected udp_dup_100 and -" % (rec.get("fault"), rec.get("udp_drop")),
          [str(rec)])
    check(faults_total(p, "udp_dup") == 1, "ringsocks_faults_total{fault=\"udp_dup\"} is %r, expected 1"
          % faults_total(p, "udp_dup"))


# ---------------------------------------------------------------- udp_reorder

@case("udp_fault_reorder_100")
def udp_fault_reorder_100(ctx):
    """udp_reorder_100: each datagram is held behind the next of its direction, so the
    echo server sees pairs swapped (1 0 3 2 ...), and the echoes, swapped again, reach
    the client in the order sent. An odd count: the last datagram has no successor and
    is dropped when the association ends (udp_drop=fault:1)."""
    p, echo = fault_proxy(ctx, ["udp_reorder_100"])
    n = N + 1
    s, seen, got = burst(ctx, p, echo, n=n)
    details = show(seen, got)
    swapped = [i ^ 1 for i in range(N)]
    check(seen == swapped, "udp_reorder_100: the echo server did not get the pairs swapped", details)
    check([g for _, g in got] == list(range(N)),
          "udp_reorder_100: the client did not get the %d echoes back in the order sent "
          "(each swapped pair swapped again)" % N, details)
    rec = udp_log_line(p, s)
    check(rec.get("udp_drop") == "fault:1",
          "access log udp_drop=%r, expected fault:1 (the last datagram, held with no successor)"
          % rec.get("udp_drop"), [str(rec)])
    check(rec.get("fault") == "udp_reorder_100", "access log fault=%r" % rec.get("fault"), [str(rec)])
    check(faults_total(p, "udp_reorder") == 1, "ringsocks_faults_total{fault=\"udp_reorder\"} is %r, expected 1"
          % faults_total(p, "udp_reorder"))


@case("udp_fault_reorder_50")
def udp_fault_reorder_50(ctx):
    """udp_reorder_50: datagrams come out of order, none lost but at most the one held
    at the end of each direction, none twice."""
    p, echo = fault_proxy(ctx, ["udp_reorder_50"])
    s, seen, got = burst(ctx, p, echo)
    details = show(seen, got)
    gs = [g for _, g in got]
    check(len(set(seen)) == len(seen) and len(set(gs)) == len(gs), "udp_reorder_50: a datagram arrived twice",
          details)
    check(len(seen) >= N - 1 and len(gs) >= N - 2,
          "udp_reorder_50: the echo server got %d and the client %d of %d: more lost than the held ones"
          % (len(seen), len(gs), N), details)
    inversions = sum(1 for a, b in zip(seen, seen[1:]) if a > b)
    check(inversions >= 0.1 * N, "udp_reorder_50: only %d datagrams came before their predecessor at the echo "
          "server, expected about a quarter of %d" % (inversions, N), details)
    rec = udp_log_line(p, s)
    lost = N - len(gs)
    want = "fault:%d" % lost if lost else "-"
    check(rec.get("udp_drop") == want, "access log udp_drop=%r, expected %s" % (rec.get("udp_drop"), want),
          [str(rec)])


# ------------------------------------------------------------------- udp_frag

@case("udp_fault_frag_3")
def udp_fault_frag_3(ctx):
    """udp_frag_3: every datagram to the client carries FRAG 3 (header byte 2); the
    client's own (FRAG 0) go on unchanged."""
    p, echo = fault_proxy(ctx, ["udp_frag_3"])
    s, seen, got = burst(ctx, p, echo, n=100)
    details = show(seen, got)
    check(seen == list(range(100)), "udp_frag_3: the echo server did not get the client's 100 datagrams", details)
    check([g for _, g in got] == list(range(100)), "udp_frag_3: the client did not get the 100 echoes", details)
    frags = collections.Counter(f for f, _ in got)
    check(set(frags) == {3}, "udp_frag_3: FRAG bytes of the replies %s, expected all 3" % dict(frags), details)
    rec = udp_log_line(p, s)
    check(rec.get("fault") == "udp_frag_3", "access log fault=%r, expected udp_frag_3" % rec.get("fault"),
          [str(rec)])
    check(faults_total(p, "udp_frag") == 1, "ringsocks_faults_total{fault=\"udp_frag\"} is %r, expected 1"
          % faults_total(p, "udp_frag"))


# ----------------------------------------------------------- asked by user name

@case("udp_fault_asked_by_name")
def udp_fault_asked_by_name(ctx):
    """alice-fault-udp_drop_100 (username_params): a rule without fault_allow serves
    every datagram (the ask is counted as refused; a later rule for bob with
    fault_allow turns fault mode on); with fault_allow = true nothing gets through."""
    pw = "al1ce-pw"
    users = write_users(ctx, ["alice:%s" % make_hash(pw, rounds=1000)])
    extra = 'username_params = true;\nauth = "password";\nusers = "%s";' % users
    name = "alice-fault-udp_drop_100"

    bob = '{ action = "allow"; users = ["bob"]; fault_allow = true; }'
    p, echo = fault_proxy(ctx, None, extra=extra, more_rules=(bob,))
    s, seen, got = burst(ctx, p, echo, n=100, auth=(name, pw))
    check(seen == list(range(100)) and [g for _, g in got] == list(range(100)),
          "%s through a rule without fault_allow: datagrams were lost" % name, show(seen, got))
    rec = udp_log_line(p, s)
    check(rec.get("user") == "alice" and rec.get("fault") in (None, "", "-") and rec.get("udp_drop") == "-",
          "access log user=%r fault=%r udp_drop=%r, expected alice, no fault, -"
          % (rec.get("user"), rec.get("fault"), rec.get("udp_drop")), [str(rec)])
    m = scrape(p)
    check(metric(m, "ringsocks_fault_asks_refused_total") == 1 and
          metric(m, "ringsocks_faults_total", fault="udp_drop") == 0,
          "ringsocks_fault_asks_refused_total %r, faults_total{udp_drop} %r: expected 1 and 0"
          % (metric(m, "ringsocks_fault_asks_refused_total"),
             metric(m, "ringsocks_faults_total", fault="udp_drop")))
    p.stop()

    p, echo = fault_proxy(ctx, None, extra_rule="fault_allow = true;", extra=extra)
    s, seen, got = burst(ctx, p, echo, n=100, auth=(name, pw))
    check(not seen and not got, "%s through a rule with fault_allow: datagrams got through" % name,
          show(seen, got))
    rec = udp_log_line(p, s)
    check(rec.get("fault") == "udp_drop_100" and rec.get("udp_drop") == "fault:100",
          "access log fault=%r udp_drop=%r, expected udp_drop_100 and fault:100"
          % (rec.get("fault"), rec.get("udp_drop")), [str(rec)])
