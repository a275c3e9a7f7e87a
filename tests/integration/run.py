#!/usr/bin/env python3
"""
run.py - the ringsocks integration suite.

    python3 tests/integration/run.py [--binary build/ringsocks] [-k SUBSTRING]
                                     [--relay auto|splice|copy] [--timeout SEC] [--list]
                                     [--suite NAME | --skip-suite NAME]

Every test runs under the default relay engine (auto), and the suites whose
tunnels carry data (relay, robust, limits, bind, clients, protocol) under each
engine, named test[engine]; --relay runs everything under that one engine. Prints PASS name / FAIL name: reason / SKIP name: reason,
detail lines indented under a failure, then "N passed, N failed" (", N skipped"
when some were skipped). Exit status 1 when anything failed.

Each test is bounded (--timeout, default 60 s); what it started is stopped by
PID and its temp files removed when it ends. The proxy's stderr is checked for
sanitizer reports after it has been stopped (AddressSanitizer, LeakSanitizer,
UBSan "runtime error:"); a report fails the test.

--suite egress runs only the tests of cases_egress.py, --skip-suite egress all
but those (both may be repeated): tests/run.sh runs the network-namespace suites
(egress, transparent) in a runner of their own alongside the rest, since they
touch nothing the others use.

--peer microsocks runs the suite against microsocks instead, --peer-addr
HOST:PORT against a SOCKS5 server already running there (e.g. danted): self-
checks of the harness. Tests that need ringsocks' own flags are skipped, and
other servers fail some tests by design (microsocks: no half-close, drops
pipelined data, BND 0.0.0.0).
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as H  # noqa: E402
import cases_relay  # noqa: E402,F401  (registers tests)
import cases_protocol  # noqa: E402,F401
import cases_robust  # noqa: E402,F401
import cases_cli  # noqa: E402,F401
import cases_limits  # noqa: E402,F401
import cases_socks4  # noqa: E402,F401
import cases_socksload  # noqa: E402,F401
import cases_auth  # noqa: E402,F401
import cases_bind  # noqa: E402,F401
import cases_udp  # noqa: E402,F401
import cases_udp_faults  # noqa: E402,F401
import cases_clients  # noqa: E402,F401
import cases_control  # noqa: E402,F401
import cases_security  # noqa: E402,F401
import cases_admin  # noqa: E402,F401
import cases_conns  # noqa: E402,F401
import cases_ctl  # noqa: E402,F401
import cases_happy  # noqa: E402,F401
import cases_ulimits  # noqa: E402,F401
import cases_fleet  # noqa: E402,F401
import cases_egress  # noqa: E402,F401
import cases_lockout  # noqa: E402,F401
import cases_proxyproto  # noqa: E402,F401
import cases_ops  # noqa: E402,F401
import cases_acct  # noqa: E402,F401
import cases_upgrade  # noqa: E402,F401
import cases_redis  # noqa: E402,F401
import cases_httpconnect  # noqa: E402,F401
import cases_chain  # noqa: E402,F401
import cases_preload  # noqa: E402,F401
import cases_transparent  # noqa: E402,F401
import cases_krb  # noqa: E402,F401
import cases_gss  # noqa: E402,F401
import cases_socksload_phases  # noqa: E402,F401
import cases_fd_storm  # noqa: E402,F401
import cases_faults  # noqa: E402,F401
import cases_faults_review  # noqa: E402,F401
import cases_dns_faults  # noqa: E402,F401
import cases_floods  # noqa: E402,F401
import cases_unit  # noqa: E402,F401
import cases_caps  # noqa: E402,F401

ENGINES = ("auto", "splice", "copy")
# Every test runs under the default engine (auto: copy, then splice for bulk).
# The suites whose tunnels carry data in interesting ways run under each engine.
DEFAULT_ENGINE = "auto"
ALL_ENGINE_MODULES = {"cases_relay", "cases_robust", "cases_limits", "cases_bind",
                      "cases_clients", "cases_protocol"}
MAX_DETAIL_LINES = 60


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def print_details(details):
    lines = []
    for d in details:
        if d:
            lines.extend(str(d).rstrip("\n").splitlines())
    if len(lines) > MAX_DETAIL_LINES:
        lines = lines[:MAX_DETAIL_LINES] + ["... (%d more lines)" % (len(lines) - MAX_DETAIL_LINES)]
    for l in lines:
        say("    " + l)


def one_line(s):
    return " ".join(str(s).split("\n")).strip() or "(no message)"


def run_one(case, relay, root, files, timeout, binary_ok):
    name = "%s[%s]" % (case.name, relay)
    d = tempfile.mkdtemp(dir=root, prefix=case.name + "-" + relay + "-")
    ctx = H.Ctx(relay, d, files)
    outcome = {}

    def body():
        try:
            if not binary_ok:
                raise H.Fail("binary not found or not executable: %s" % H.CONFIG.binary)
            case.fn(ctx)
            outcome["r"] = ("pass", None, None)
        except H.Skip as e:
            outcome["r"] = ("skip", str(e), None)
        except H.Fail as e:
            outcome["r"] = ("fail", str(e), e.details)
        except Exception as e:  # a bug in the test or an unexpected socket error
            outcome["r"] = ("fail", "%s: %s" % (type(e).__name__, e), traceback.format_exc())

    limit = case.timeout or timeout
    t0 = time.monotonic()
    th = threading.Thread(target=body, daemon=True, name=name)
    th.start()
    th.join(limit)
    timed_out = th.is_alive()
    ctx.cleanup()           # stops the proxy (SIGTERM by PID), helpers, client tools
    if timed_out:
        th.join(5)
        kind, msg, details = "fail", "timed out after %g s (per-test limit)" % limit, None
    else:
        kind, msg, details = outcome["r"]

    extra = []
    if kind != "skip" and ctx.problems:
        if kind == "pass":
            kind, msg = "fail", "; ".join(ctx.problems)
        else:
            msg = msg + "; also: " + "; ".join(ctx.problems)
        extra.extend(ctx.problem_details)
    if kind == "fail":
        if details:
            extra.insert(0, details)
        for p in ctx.proxies:
            text = p.stderr().strip()
            if text and not any(text[-200:] in str(x) for x in extra):
                extra.append("proxy%d argv: %s" % (p.n, " ".join(getattr(p, "argv", []))))
                extra.append("proxy%d stderr (last lines):\n%s" % (p.n, H.tail(text, 15)))

    times = os.environ.get("RINGSOCKS_TEST_TIMES")
    if times:   # where make test's minutes go: "seconds name" per test
        with open(times, "a") as f:
            f.write("%.1f %s\n" % (time.monotonic() - t0, name))
    if kind == "pass":
        say("PASS %s" % name)
    elif kind == "skip":
        say("SKIP %s: %s" % (name, one_line(msg)))
    else:
        say("FAIL %s: %s" % (name, one_line(msg)))
        print_details(extra)
    if not timed_out:
        shutil.rmtree(d, ignore_errors=True)
    # a timed-out body may still hold files in d: the run's root is removed at the end
    return kind


def main():
    ap = argparse.ArgumentParser(description="ringsocks integration tests")
    ap.add_argument("--binary", default="build/ringsocks", help="the ringsocks binary")
    ap.add_argument("-k", dest="select", default=None, metavar="SUBSTRING",
                    help="run only tests whose name (with [engine]) contains SUBSTRING")
    ap.add_argument("--relay", choices=ENGINES, default=None, help="run only this relay engine")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-test time limit, seconds")
    ap.add_argument("--peer", choices=("ringsocks", "microsocks", "external"), default="ringsocks",
                    help="server under test (microsocks: self-check of the harness)")
    ap.add_argument("--peer-addr", default=None, metavar="HOST:PORT",
                    help="self-check against a SOCKS5 server already running there (sets --peer external)")
    ap.add_argument("--list", action="store_true", help="list the selected tests and exit")
    ap.add_argument("--suite", action="append", default=[], metavar="NAME",
                    help="run only the tests of cases_NAME.py (repeatable)")
    ap.add_argument("--skip-suite", action="append", default=[], metavar="NAME",
                    help="leave out the tests of cases_NAME.py (repeatable)")
    args = ap.parse_args()

    H.CONFIG.binary = os.path.abspath(args.binary)
    H.CONFIG.peer = args.peer
    if args.peer_addr:
        host, port = args.peer_addr.rsplit(":", 1)
        H.CONFIG.peer = args.peer = "external"
        H.CONFIG.external = (host.strip("[]"), int(port))
    elif args.peer == "external":
        ap.error("--peer external needs --peer-addr HOST:PORT")
    selected = []
    known = {c.fn.__module__ for c in H.TESTS}
    for name in args.suite + args.skip_suite:
        if "cases_" + name not in known:
            ap.error("no suite %r (known: %s)" % (name, ", ".join(sorted(m[6:] for m in known))))
    for c in H.TESTS:
        suite = c.fn.__module__[len("cases_"):]
        if (args.suite and suite not in args.suite) or suite in args.skip_suite:
            continue
        if args.relay:
            relays = [args.relay]
        elif c.fn.__module__ in ALL_ENGINE_MODULES:
            relays = list(ENGINES)
        else:
            relays = [DEFAULT_ENGINE]
        for r in relays:
            if args.select is None or args.select in "%s[%s]" % (c.name, r):
                selected.append((c, r))
    if args.list:
        for c, r in selected:
            say("%s[%s]" % (c.name, r))
        return 0

    binary_ok = args.peer != "ringsocks" or (os.path.isfile(H.CONFIG.binary)
                                              and os.access(H.CONFIG.binary, os.X_OK))

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    H.raise_nofile()
    root = tempfile.mkdtemp(prefix="ringsocks-it-")
    counts = {"pass": 0, "fail": 0, "skip": 0}
    try:
        files = H.HTTPFiles(root)
        for c, r in selected:
            counts[run_one(c, r, root, files, args.timeout, binary_ok)] += 1
    finally:
        H.kill_all_live()
        shutil.rmtree(root, ignore_errors=True)

    line = "%d passed, %d failed" % (counts["pass"], counts["fail"])
    if counts["skip"]:
        line += ", %d skipped" % counts["skip"]
    say(line)
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
