#!/usr/bin/env python3
"""
check_layers.py - the include rules of docs/design.md ("Layers"), checked on the source:

1. No circle among modules. Module M is src/M.c with include/M.h; M uses N when
   one of M's two files includes "N.h" and src/N.c exists. A circle means some
   layer calls up.
2. Nothing below the phases names a phase: the slot layer (conn), DNS, the auth
   checker, the access log and the user table include no phase's header.

Prints "PASS check-layers: ..." or every violation and "FAIL check-layers", and exits
1 on a violation. Standard library only; run from anywhere (tests/run.sh runs it).
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = {"handshake", "request", "bind", "relay", "udp"}
BELOW = ["conn", "dns", "authq", "authcache", "auth", "log", "users", "clients", "policy", "ring"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)\.h"', re.M)


def module_files(m):
    return [p for p in (os.path.join(ROOT, "src", m + ".c"), os.path.join(ROOT, "include", m + ".h"))
            if os.path.exists(p)]


def includes(path):
    with open(path, errors="replace") as f:
        return {os.path.basename(n) for n in INCLUDE.findall(f.read())}


def circles(deps):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def main():
    mods = sorted(f[:-2] for f in os.listdir(os.path.join(ROOT, "src")) if f.endswith(".c"))
    deps = {m: set() for m in mods}
    for m in mods:
        for path in module_files(m):
            deps[m] |= {n for n in includes(path) if n in deps and n != m}
    problems = []
    for comp in circles(deps):
        edges = ["%s->%s" % (a, b) for a in comp for b in sorted(deps[a]) if b in comp]
        problems.append("circle of %d modules: %s (%s)" % (len(comp), " ".join(comp), ", ".join(edges)))
    for m in BELOW:
        for path in module_files(m):
            bad = sorted(includes(path) & PHASES)
            if bad:
                problems.append("%s includes a phase's header: %s" % (os.path.relpath(path, ROOT),
                                                                      ", ".join(b + ".h" for b in bad)))
    if problems:
        for p in problems:
            print(p)
        print("FAIL check-layers: %d problem(s)" % len(problems))
        return 1
    print("PASS check-layers: %d modules, no circle, nothing below the phases names one" % len(mods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
