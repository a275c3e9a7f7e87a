#!/usr/bin/env python3
"""
seccomp_trace.py - the system calls ringsocks makes once its seccomp filter is installed,
against the list src/sandbox_syscalls.h (docs/security.md, "The seccomp filter").

    python3 tests/tools/seccomp_trace.py [--build build] [--out DIR] -- RUN.PY ARGS
        runs tests/integration/run.py ARGS with every ringsocks under strace -f (a wrapper,
        BUILD/ringsocks-strace, that strace attaches to and that then execs BUILD/ringsocks:
        the pid, and so the signals the tests send, stay the server's), then reports
    python3 tests/tools/seccomp_trace.py --report DIR
        reports on the traces already in DIR

The report: each call made after the filter's own seccomp(SECCOMP_SET_MODE_FILTER, ...) with
its count (an upgrade's new process counts whole: it starts under the filter), the calls of
the list never seen, and every SIGSYS the filter sent (a call the list misses: the server
stopped there). Exit 1 when a call was seen that the list lacks, or a SIGSYS.
Standard library only; needs strace.
"""

import argparse
import collections
import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALL = re.compile(r"^(\d+)\s+([a-z0-9_]+)\(")
SIGSYS = re.compile(r"SIGSYS \{.*si_code=SYS_SECCOMP.*si_syscall=(?:__NR_)?(\w+)")
LISTED = re.compile(r"^SANDBOX_CALL\(([a-z0-9_]+)\)", re.M)

WRAPPER = """#!/bin/sh
# strace attaches to this shell, which then becomes ringsocks: same pid, same signals.
strace -f -qq -o {out}/t.$$.$(date +%s%N) -p $$ >/dev/null 2>&1 &
sleep 0.4
exec {binary} "$@"
"""


def listed():
    with open(os.path.join(ROOT, "src", "sandbox_syscalls.h")) as f:
        return set(LISTED.findall(f.read()))


def report(out):
    after, sigsys = collections.Counter(), collections.Counter()
    files = marked = 0
    for path in glob.glob(os.path.join(out, "t.*")):
        files += 1
        on = False
        with open(path, errors="replace") as f:
            for line in f:
                m = SIGSYS.search(line)
                if m:
                    sigsys[m.group(1)] += 1
                m = CALL.match(line)
                if not m:
                    continue
                if not on:
                    if m.group(2) == "seccomp" and "filter=" in line and line.rstrip().endswith("= 0"):
                        on = True
                        marked += 1
                    continue
                after[m.group(2)] += 1
    have = listed()
    print("%d traces, %d with the filter installed; %d calls after it" % (files, marked, len(after)))
    for name, n in sorted(after.items()):
        print("  %-20s %8d%s" % (name, n, "" if name in have else "   NOT IN THE LIST"))
    print("listed, not seen: %s" % " ".join(sorted(have - set(after))))
    for name, n in sorted(sigsys.items()):
        print("SIGSYS: %s (%d times)" % (name, n))
    return 1 if sigsys or set(after) - have else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", help="where the traces go (default: a new temporary directory)")
    ap.add_argument("--report", metavar="DIR", help="only report on the traces in DIR")
    ap.add_argument("args", nargs="*", help="arguments of tests/integration/run.py (after --)")
    a = ap.parse_args()
    if a.report:
        return report(a.report)
    out = os.path.abspath(a.out or tempfile.mkdtemp(prefix="ringsocks-seccomp-"))
    os.makedirs(out, exist_ok=True)
    build = os.path.join(ROOT, a.build)
    wrapper = os.path.join(build, "ringsocks-strace")
    with open(wrapper, "w") as f:
        f.write(WRAPPER.format(out=out, binary=os.path.join(build, "ringsocks")))
    os.chmod(wrapper, 0o755)
    run = [sys.executable, os.path.join(ROOT, "tests", "integration", "run.py"), "--binary", wrapper]
    rc = subprocess.call(run + a.args, cwd=ROOT)
    print("run.py exit %d; traces in %s" % (rc, out))
    return report(out) or (1 if rc else 0)


if __name__ == "__main__":
    sys.exit(main())
