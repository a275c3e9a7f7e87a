"""
cases_lockout.py - the failed-login lockout (auth_lockout_*): a (client address,
user) pair locked after auth_lockout_failures wrong passwords is refused at once,
without a password check, while the same user from another address and another
user from the same address log in; an address locked after
auth_lockout_address_failures refuses every user; both end by time. The access
log names the user tried (end=auth_failed, end=auth_locked), the metrics count
lockouts and refusals by scope.
"""

import time

from cases_auth import ALICE, BOB, auth_proxy, login_outcome
from cases_security import log_lines
from harness import admin_request, case, check, metric, need_option, parse_prometheus, wait_until


def metrics(p):
    st, body, _ = admin_request(p, "GET", "/metrics")
    check(st == 200, "GET /metrics: %d" % st)
    return parse_prometheus(body)


def checks_run(m):
    """Password checks that reached the cache or crypt(3)."""
    return sum(metric(m, n) or 0 for n in ("ringsocks_auth_slow_checks_total",
                                           "ringsocks_auth_cache_hits_total",
                                           "ringsocks_auth_coalesced_total"))


def expect(p, user, password, want, src="127.0.0.1", what=""):
    outcome, took, got = login_outcome(p.addr, user, password, src=src, timeout=10)
    check(outcome == want, "login as %s from %s%s: %s, expected %s" % (user, src, what, outcome, want))
    return took


def lockout_proxy(ctx, log, *extra):
    need_option("--auth-lockout-failures", "--auth-lockout-address-failures", "--auth-lockout-window",
                "--auth-lockout-duration")
    return auth_proxy(ctx, extra=["--access-log", log, "--auth-lockout-window", "60"] + list(extra))


def wait_log(log, pred, n, what):
    lines = wait_until(lambda: len([r for r in log_lines(log) if pred(r)]) >= n and log_lines(log), 5)
    got = [r for r in (lines or []) if pred(r)]
    check(len(got) >= n, "access log: %d lines %s, expected %d; log: %r" % (len(got), what, n, lines))
    return got


@case("lockout_pair")
def lockout_pair(ctx):
    """failures=3: three wrong passwords for alice (two of them through session names, which
    count as alice) lock (127.0.0.1, alice); her right password is then refused with no check
    run, bob still logs in from that address and alice from another; after the duration the
    right password works again."""
    log = ctx.path("access.log")
    p = lockout_proxy(ctx, log, "--auth-lockout-failures", "3", "--auth-lockout-address-failures", "0",
                      "--auth-lockout-duration", "2", "--username-params", "true")
    expect(p, "alice-session-a1", "wrong-1", "refused")
    expect(p, "alice", "wrong-2", "refused")
    m = metrics(p)
    check(metric(m, "ringsocks_auth_lockouts_total", scope="pair") == 0,
          "two failures of three already counted a lockout")
    expect(p, "alice-session-b2", "wrong-3", "refused")
    m0 = metrics(p)
    check(metric(m0, "ringsocks_auth_lockouts_total", scope="pair") == 1,
          "ringsocks_auth_lockouts_total{scope=pair} after the third failure: %r"
          % metric(m0, "ringsocks_auth_lockouts_total", scope="pair"))
    expect(p, "alice-session-c3", ALICE[1], "refused", what=" (right password, pair locked)")
    expect(p, ALICE[0], ALICE[1], "refused", what=" (right password, pair locked)")
    m1 = metrics(p)
    check(checks_run(m1) == checks_run(m0),
          "a locked pair's logins reached the password check: %d checks before, %d after"
          % (checks_run(m0), checks_run(m1)))
    check(metric(m1, "ringsocks_auth_locked_refusals_total", scope="pair") == 2,
          "ringsocks_auth_locked_refusals_total{scope=pair}: %r"
          % metric(m1, "ringsocks_auth_locked_refusals_total", scope="pair"))
    check(metric(m1, "ringsocks_auth_locked_refusals_total", scope="address") == 0,
          "address refusals with the address lockout off")
    check(metric(m1, "ringsocks_connections_ended_total", reason="auth_locked") == 2,
          "ringsocks_connections_ended_total{reason=auth_locked}: %r"
          % metric(m1, "ringsocks_connections_ended_total", reason="auth_locked"))
    expect(p, BOB[0], BOB[1], "ok", what=" (another user of the locked pair's address)")
    expect(p, ALICE[0], ALICE[1], "ok", src="127.0.0.2", what=" (the locked user from another address)")
    time.sleep(2.5)
    expect(p, ALICE[0], ALICE[1], "ok", what=" (after auth_lockout_duration)")
    failed = wait_log(log, lambda r: r.get("end") == "auth_failed", 3, "end=auth_failed")
    check(all(r.get("user") == "alice" for r in failed),
          "auth_failed lines must name the user tried (the base name of a session name): %r" % failed)
    check(sorted(r.get("session", "") for r in failed) == ["", "a1", "b2"],
          "auth_failed lines' sessions: %r" % failed)
    locked = wait_log(log, lambda r: r.get("end") == "auth_locked", 2, "end=auth_locked")
    check(all(r.get("user") == "alice" and r.get("client", "").startswith("127.0.0.1:") for r in locked),
          "auth_locked lines must name alice and 127.0.0.1: %r" % locked)


@case("lockout_address")
def lockout_address(ctx):
    """address_failures=4: four failures from 127.0.0.1, each for another name (no pair
    reaches failures=3), lock the address: alice's and bob's right passwords are refused
    from it, not from 127.0.0.2; after the duration both log in."""
    log = ctx.path("access.log")
    p = lockout_proxy(ctx, log, "--auth-lockout-failures", "3", "--auth-lockout-address-failures", "4",
                      "--auth-lockout-duration", "2")
    for i in range(3):
        expect(p, "guess-%d" % i, "wrong", "refused")
    expect(p, ALICE[0], ALICE[1], "ok", what=" (3 failures of 4)")
    expect(p, "guess-3", "wrong", "refused")
    m0 = metrics(p)
    check(metric(m0, "ringsocks_auth_lockouts_total", scope="address") == 1,
          "ringsocks_auth_lockouts_total{scope=address}: %r"
          % metric(m0, "ringsocks_auth_lockouts_total", scope="address"))
    check(metric(m0, "ringsocks_auth_lockouts_total", scope="pair") == 0, "a pair locked")
    for user, pw in (ALICE, BOB):
        expect(p, user, pw, "refused", what=" (address locked)")
    m1 = metrics(p)
    check(checks_run(m1) == checks_run(m0), "a locked address's logins reached the password check")
    check(metric(m1, "ringsocks_auth_locked_refusals_total", scope="address") == 2,
          "ringsocks_auth_locked_refusals_total{scope=address}: %r"
          % metric(m1, "ringsocks_auth_locked_refusals_total", scope="address"))
    expect(p, BOB[0], BOB[1], "ok", src="127.0.0.2", what=" (another address)")
    time.sleep(2.5)
    for user, pw in (ALICE, BOB):
        expect(p, user, pw, "ok", what=" (after auth_lockout_duration)")
    locked = wait_log(log, lambda r: r.get("end") == "auth_locked", 2, "end=auth_locked")
    check(sorted(r.get("user") for r in locked) == ["alice", "bob"], "auth_locked lines: %r" % locked)
    failed = wait_log(log, lambda r: r.get("end") == "auth_failed", 4, "end=auth_failed")
    check(sorted(r.get("user") for r in failed) == ["guess-%d" % i for i in range(4)],
          "auth_failed lines must name the names tried: %r" % failed)


@case("lockout_success_clears_pair")
def lockout_success_clears_pair(ctx):
    """failures=3: two wrong passwords, the right one, two wrong again: not locked (the
    success cleared the count); one more locks."""
    log = ctx.path("access.log")
    p = lockout_proxy(ctx, log, "--auth-lockout-failures", "3", "--auth-lockout-duration", "60")
    for pw in ("w1", "w2"):
        expect(p, ALICE[0], pw, "refused")
    expect(p, ALICE[0], ALICE[1], "ok")
    for pw in ("w3", "w4"):
        expect(p, ALICE[0], pw, "refused")
    expect(p, ALICE[0], ALICE[1], "ok", what=" (2 failures since a success)")
    for pw in ("w5", "w6", "w7"):
        expect(p, ALICE[0], pw, "refused")
    expect(p, ALICE[0], ALICE[1], "refused", what=" (3 failures since a success)")
