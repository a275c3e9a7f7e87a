#!/usr/bin/env python3
"""
check_ring_ops.py - every opcode the server can submit is on the shards' ring allowlist
(src/ring_allow.c, ring_allow.h), and nothing else is:

1. Each io_uring_prep_X() called in src/*.c is resolved to its IORING_OP_ through
   liburing.h (a prep helper calls io_uring_prep_rw(IORING_OP_Y, ...) or another
   helper), and every opcode found must be on the list: one missing would complete
   -EACCES at run time, on a path the tests may not reach.
2. Every opcode on the list is used somewhere: the list is no wider than the code.
3. SQE flags set in src/ (IOSQE_*) are the ones the list allows (buffer select).

Prints "PASS check-ring-ops: ..." or every problem and "FAIL check-ring-ops", exit 1
on a problem. Standard library only; tests/run.sh runs it.
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBURING = os.environ.get("LIBURING_H", "/usr/include/liburing.h")
ALLOW = os.path.join(ROOT, "src", "ring_allow.c")
ALLOWED_FLAGS = {"IOSQE_BUFFER_SELECT"}


def prep_bodies(text):
    """{helper name: body} for every static inline io_uring_prep_* in liburing.h."""
    out = {}
    for m in re.finditer(r"\b(io_uring_prep_\w+)\s*\([^;{]*\)\s*\{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out[m.group(1)] = text[m.end():i - 1]
    return out


def opcodes_of(name, bodies, seen=()):
    """The IORING_OP_ names helper name submits, following the helpers it calls."""
    if name in seen or name not in bodies:
        return set()
    body = bodies[name]
    ops = set(re.findall(r"\b(IORING_OP_\w+)", body))
    for callee in set(re.findall(r"\b(io_uring_prep_\w+)\s*\(", body)):
        if callee != "io_uring_prep_rw":
            ops |= opcodes_of(callee, bodies, seen + (name,))
    return ops


def main():
    problems = []
    with open(LIBURING) as f:
        bodies = prep_bodies(f.read())
    with open(ALLOW) as f:
        m = re.search(r"ring_allowed_ops\[\]\s*=\s*\{(.*?)\};", f.read(), re.S)
    listed = set(re.findall(r"\b(IORING_OP_\w+)", re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)))
    used = {}
    flags = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "*.c"))):
        if path == ALLOW:
            continue
        with open(path) as f:
            # comments out, their lines kept, so line numbers stay right
            text = re.sub(r"/\*.*?\*/", lambda c: "\n" * c.group(0).count("\n"), f.read(), flags=re.S)
        rel = os.path.relpath(path, ROOT)
        for lineno, line in enumerate(text.split("\n"), 1):
            for helper in re.findall(r"\b(io_uring_prep_\w+)\s*\(", line):
                ops = opcodes_of(helper, bodies)
                if not ops:
                    problems.append("%s:%d: %s: no opcode found for it in %s" % (rel, lineno, helper, LIBURING))
                for op in ops:
                    used.setdefault(op, "%s:%d (%s)" % (rel, lineno, helper))
            for flag in re.findall(r"\b(IOSQE_\w+)", line):
                flags.setdefault(flag, "%s:%d" % (rel, lineno))
    for op in sorted(set(used) - listed):
        problems.append("%s: %s is submitted but not on the list in src/ring_allow.c" % (used[op], op))
    for op in sorted(listed - set(used)):
        problems.append("src/ring_allow.c: %s is on the list but nothing in src/ submits it" % op)
    for flag in sorted(set(flags) - ALLOWED_FLAGS):
        problems.append("%s: SQE flag %s is not allowed on the shards' rings" % (flags[flag], flag))
    if problems:
        for p in problems:
            print(p)
        print("FAIL check-ring-ops")
        return 1
    print("PASS check-ring-ops: %d opcodes submitted in src/, all on the list of %d" % (len(used), len(listed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
