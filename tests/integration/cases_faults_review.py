"""
cases_faults_review.py - the fault mode's corners found in review (docs/faults.md): each
case reproduces one bug that was fixed, against a proxy whose rules commit the fault.

Every proxy is started by the harness with --listen, --shards, --relay and --admin on the
command line; the files written here carry only the rules.
"""

import socket
import time

from cases_control import conf_proxy, rules_conf
from harness import (GREETING, case, check, expect_close, hexb, need_ipv6, need_ringsocks,
                     open_proxy_socket, read_method_reply, read_reply, request)


def closed_port():
    """A loopback port nobody listens on (a connect there is refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@case("fault_review_refusal_truncated_to_nothing")
def t_refusal_truncated_to_nothing(ctx):
    """refused + truncate_0: nothing is written and the connection closes; the server
    lives on (it closed the connection under connect_next(), which then used its freed
    context: a crash)."""
    need_ringsocks()
    port = closed_port()
    p, _ = conf_proxy(ctx, rules_conf(
        '{ action = "allow"; ports = [%d]; fault = ["refused", "truncate_0"]; }' % port,
        '{ action = "allow"; from = ["127.0.0.0/8"]; }'))
    for pipelined in (False, True):
        s = open_proxy_socket(ctx, p)
        if pipelined:
            s.sendall(GREETING + request("127.0.0.1", port))
            check(read_method_reply(s) == b"\x05\x00", "method selection")
        else:
            s.sendall(GREETING)
            check(read_method_reply(s) == b"\x05\x00", "method selection")
            s.sendall(request("127.0.0.1", port))
        expect_close(s, after="truncate_0 of a refusal")
        s.close()
        time.sleep(0.2)
        p.check_alive()


@case("fault_review_fault_of_the_admitting_rule")
def t_fault_of_the_admitting_rule(ctx):
    """A name with two addresses under two rules: the first address (::1, whose rule
    carries wrong_bnd) is refused, the second (127.0.0.1, a rule without faults) connects.
    The tunnel commits no fault: its rule has none (it used to carry the failed
    address's)."""
    need_ringsocks()
    need_ipv6()
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]
    try:
        p, _ = conf_proxy(ctx, rules_conf(
            '{ action = "allow"; to = ["::1"]; fault = "wrong_bnd"; }',
            '{ action = "allow"; from = ["127.0.0.0/8"]; }'))
        s = open_proxy_socket(ctx, p)
        s.sendall(GREETING)
        check(read_method_reply(s) == b"\x05\x00", "method selection")
        s.sendall(request("localhost", port))
        r = read_reply(s)
        check(r.rep == 0 and r.host == "127.0.0.1",
              "CONNECT localhost:%d (::1 refused, 127.0.0.1 under a rule without faults): reply %s, "
              "expected a success naming 127.0.0.1" % (port, hexb(r.raw)))
        s.close()
    finally:
        ls.close()


@case("fault_review_slow_no_method")
def t_slow_no_method(ctx):
    """no_method with delay_method is a slow refusal: 05 ff after the delay, then the close
    (the delay used to be skipped, as no other pair of faults skips one)."""
    need_ringsocks()
    p, _ = conf_proxy(ctx, rules_conf(
        '{ action = "allow"; from = ["127.0.0.0/8"]; fault = ["no_method", "delay_method_300"]; }'))
    s = open_proxy_socket(ctx, p)
    t0 = time.monotonic()
    s.sendall(GREETING)
    m = read_method_reply(s)
    took = time.monotonic() - t0
    check(m == b"\x05\xff" and took >= 0.29,
          "greeting under no_method + delay_method_300: %s after %.3f s, expected 05 ff after 0.3 s"
          % (hexb(m), took))
    expect_close(s, after="05 ff")
    s.close()


@case("fault_review_pipelined_delay_and_split")
def t_pipelined_delay_and_split(ctx):
    """delay_reply + split for a client that pipelines its request behind its greeting: the
    reply still comes after the delay (the split's first pause used to replace it, while the
    method selection was being written)."""
    need_ringsocks()
    port = closed_port()
    p, _ = conf_proxy(ctx, rules_conf(
        '{ action = "allow"; ports = [%d]; fault = ["refused", "delay_reply_400", "split_10"]; }' % port,
        '{ action = "allow"; from = ["127.0.0.0/8"]; }'))
    s = open_proxy_socket(ctx, p)
    t0 = time.monotonic()
    s.sendall(GREETING + request("127.0.0.1", port))
    got = b""
    while len(got) < 12:
        d = s.recv(64)
        if not d:
            break
        got += d
    took = time.monotonic() - t0
    check(got == b"\x05\x00\x05\x05\x00\x01" + bytes(6) and took >= 0.45,
          "pipelined greeting + request under refused, delay_reply_400, split_10: %s after %.3f s, "
          "expected 05 00 and the refusal after 0.4 s + 9 pauses of 10 ms" % (hexb(got), took))
    expect_close(s, after="the refusal")
    s.close()
