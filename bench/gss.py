#!/usr/bin/env python3
"""
bench/gss.py - what GSS-API authentication (SOCKS5 method 0x01, RFC 1961) costs the proxy
(docs/benchmarks.md, "GSS-API"), side by side in one run against a throw-away MIT realm on
loopback (tests/integration/krb.py), one ringsocks and build/tests/gss-load:

  handshakes   sequential handshakes (connect, authentication, CONNECT to an echo, one byte
               each way, close) by no authentication, RFC 1929 password (a warm credential
               cache: one crypt(3) per shard, then digests) and GSS-API at level 0 and level 2:
               handshakes per second and, the figure a proxy controls, its own CPU time per
               handshake (user + system of the whole process, workers included)
  throughput   one tunnel at levels 0, 1 and 2: MB/s through the proxy and its CPU per GB
               relayed; the client wraps and unwraps too, on the same two cores

Each figure is the median of ROUNDS rounds (default 5), the kinds interleaved in each round.

    python3 bench/gss.py                     # ROUNDS=5 HS=2000 MIB=128
    ROUNDS=3 HS=300 MIB=32 python3 bench/gss.py
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from krb import KrbRealm  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))
HS = int(os.environ.get("HS", "2000"))
MIB = int(os.environ.get("MIB", "128"))
BIN = os.path.join(ROOT, "build", "ringsocks")
LOAD = os.path.join(ROOT, "build", "tests", "gss-load")
TICK = os.sysconf("SC_CLK_TCK")


class Ctx:
    """What krb.KrbRealm needs of the test harness's context: a directory, a runner, cleanups."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringsocks-bench-gss-")
        self.cleanups = []

    def path(self, name):
        return os.path.join(self.dir, name)

    def run(self, argv, timeout=60, input=None, env=None):
        return subprocess.run(argv, input=input, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def defer(self, fn):
        self.cleanups.append(fn)

    def close(self):
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # a cleanup must not hide the others
                print("cleanup: %s" % e, file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_s(pid):
    """User + system seconds of a process, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start_proxy(ctx, realm, port, port_none):
    users = ctx.path("users")
    with open(users, "w") as f:
        f.write("carol:%s\n" % harness_hash("carol-pw"))
    conf = ctx.path("ringsocks.conf")
    with open(conf, "w") as f:
        f.write('auth = ["gssapi", "password"];\nusers = "%s";\ngss_service = "rcmd/localhost";\n'
                'gss_keytab = "%s";\ngss_protection = "0-2";\n'
                'rules = ( { action = "allow"; from = ["127.0.0.0/8"]; } );\n'
                % (users, realm.keytab))
    env = dict(realm.server_env())
    argv = [BIN, "--listen", "127.0.0.1:%d" % port, "--shards", "2", "--admin", "off",
            "--access-log", "off", "-c", conf]
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ctx.defer(lambda: stop(p))
    # A second proxy without authentication, for the "none" handshakes.
    q = subprocess.Popen([BIN, "--listen", "127.0.0.1:%d" % port_none, "--shards", "2", "--admin",
                          "off", "--access-log", "off"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    ctx.defer(lambda: stop(q))
    time.sleep(0.5)
    for proc in (p, q):
        if proc.poll() is not None:
            raise SystemExit("ringsocks did not start: %s" % proc.stderr.read().decode())
    return p, q


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def harness_hash(pw):
    out = subprocess.run(["bash", "-c", '. "%s/bench/common.sh"; bench_hash "$1"' % ROOT, "_", pw],
                         stdout=subprocess.PIPE, check=True)
    return out.stdout.decode().strip()


def load(env, args):
    r = subprocess.run([LOAD] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=600)
    if r.returncode != 0:
        raise SystemExit("gss-load %s: %s" % (" ".join(args), r.stderr.decode()))
    return dict(kv.split("=") for kv in r.stdout.decode().split())


def main():
    if not os.access(LOAD, os.X_OK) or not os.access(BIN, os.X_OK):
        raise SystemExit("build first: make build/ringsocks build/tests/gss-load")
    ctx = Ctx()
    try:
        realm = KrbRealm(ctx)
        realm.kinit("alice")
        env = realm.client_env("alice")
        port, port_none = harness.free_port(), harness.free_port()
        p, q = start_proxy(ctx, realm, port, port_none)
        kinds = [
            ("none", q, ["--port", str(port_none), "--method", "none"]),
            ("password", p, ["--port", str(port), "--method", "password", "--user", "carol",
                             "--pass", "carol-pw"]),
            ("gssapi level 0", p, ["--port", str(port), "--method", "gssapi", "--level", "0"]),
            ("gssapi level 2", p, ["--port", str(port), "--method", "gssapi", "--level", "2"]),
        ]
        # Warm-up: the password's digest cache on both shards, the service ticket in the ccache.
        for _, _, args in kinds:
            load(env, ["hs", "--count", "20", "--threads", "2"] + args)
        hs = {k: [] for k, _, _ in kinds}
        for _ in range(ROUNDS):
            for name, proc, args in kinds:
                c0 = cpu_s(proc.pid)
                r = load(env, ["hs", "--count", str(HS), "--threads", "2"] + args)
                hs[name].append((float(r["rate"]), (cpu_s(proc.pid) - c0) * 1e6 / HS))
        tp = {lvl: [] for lvl in (0, 1, 2)}
        for _ in range(ROUNDS):
            for lvl in (0, 1, 2):
                c0 = cpu_s(p.pid)
                r = load(env, ["bulk", "--port", str(port), "--level", str(lvl), "--bytes",
                               str(MIB << 20)])
                gb = 2 * (MIB << 20) / 1e9  # both directions went through the proxy
                tp[lvl].append((float(r["mbps"]) / 8, (cpu_s(p.pid) - c0) / gb))
        print("## GSS-API: handshakes (sequential, 2 client threads; median of %d rounds of %d)"
              % (ROUNDS, HS))
        print("| method | handshakes/s | proxy CPU us per handshake |")
        print("| --- | ---: | ---: |")
        for name, _, _ in kinds:
            print("| %s | %.0f | %.0f |" % (name, statistics.median(x for x, _ in hs[name]),
                                           statistics.median(y for _, y in hs[name])))
        print()
        print("## GSS-API: one tunnel by protection level (%d MiB each way; median of %d rounds)"
              % (MIB, ROUNDS))
        print("| level | MB/s each way | proxy CPU s per GB relayed |")
        print("| --- | ---: | ---: |")
        for lvl in (0, 1, 2):
            print("| %d | %.0f | %.2f |" % (lvl, statistics.median(x for x, _ in tp[lvl]),
                                           statistics.median(y for _, y in tp[lvl])))
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
