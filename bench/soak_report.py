#!/usr/bin/env python3
"""
soak_report.py - the soak's verdict (bench/soak.sh): reads the samples TSV, every driver's
JSON of every round, the events and the drained process's exit status; writes OUT.md (the
report) and OUT.svg (gnuplot: the series over time); prints one "PASS soak-RULE" or
"FAIL soak-RULE: why" line per pass rule and exits 1 when one failed.

Pass rules (docs/benchmarks.md, "Soak", says why these bounds):
  errors   every socksload run exit 0 with units done and 0 errors; BIND clients 0 errors;
           no malformed client accepted, every slow reader closed by the proxy
  drain    the drained process exited 0 after its tunnels ended; every reload answered 200
  fds      after warm-up, the least-squares slope of fds not held by a connection or a pipe
           (base_fds) below FDS_BOUND per minute, in each process
  rss      ... of RSS below RSS_BOUND MiB per hour
  kmem     ... of the cgroup's kernel memory below KMEM_BOUND MiB per hour
  stalls   ringsocks_shard_stalls_total 0 at every sample
  udp-loss datagrams lost below UDP_LOSS_BOUND of those sent, none dropped by the proxy itself
Warm-up: the first 20 % of the run, counted again from the restart for the new process.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

FDS_BOUND = 1.0  # fds per minute
RSS_BOUND = 16.0  # MiB per hour
KMEM_BOUND = 16.0  # MiB per hour
WARMUP = 0.2
STALL_S = 0.1
UDP_LOSS_BOUND = 1e-4  # of the datagrams sent
# A short run cannot tell a slow leak from one allocator or fd-table step: the bound on a
# window of W seconds is the larger of the rate above and these amounts over W.
FDS_STEP = 8  # fds
MEM_STEP = 4.0  # MiB


def read_tsv(path):
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(head, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    return head, rows


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def rss_less_bufs(q):
    """RSS (KiB) less the copy buffers resident (ringsocks_relay_buffers_resident_bytes,
    when the row has it): those are mapped at start and stay once touched, up to bufs x
    buf_size, so they grow RSS for as long as traffic first reaches each buffer (bulk
    tunnels under relay auto touch a new one or two each) and are no leak."""
    r, b = num(q.get("rss_kib")), num(q.get("bufs_kib"))
    return None if r is None else r - (b or 0)


def slope(xs, ys, least=3):
    """Least-squares slope of ys over xs, or None with fewer than least points."""
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pts) < least:
        return None
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def stall_split(rows):
    """Stalls counted between two samples of one process are the host's when the shards'
    time waiting for a CPU (schedstat run delay) grew by at least STALL_S per stall in that
    interval: a shard kept off its CPU that long stalls without doing anything. The rest are
    the shards' own. Returns (own, host, whether any sample had the series)."""
    own = host = 0
    seen = False
    prev = {}
    for r in rows:
        st, w = num(r.get("stalls")), num(r.get("cpu_wait_s"))
        if st is None:
            continue
        seen = True
        pst, pw = prev.get(r["proc"], (0.0, 0.0))
        d = st - pst
        if d > 0:
            if w is not None and w - pw >= STALL_S * d:
                host += d
            else:
                own += d
        prev[r["proc"]] = (st, w if w is not None else pw)
    return int(own), int(host), seen


def drivers(rdir):
    """Totals per driver name over the rounds, and the problems found."""
    tot, probs = {}, []
    for path in sorted(glob.glob(os.path.join(rdir, "*.json"))):
        base = os.path.basename(path)[:-5]
        rnd, name = base.split("-", 1)
        rc = open(path[:-5] + ".rc").read().strip() if os.path.exists(path[:-5] + ".rc") else "?"
        t = tot.setdefault(name, {"runs": 0, "units": 0, "errors": 0, "ok": 0, "refused": 0,
                                  "bytes": 0, "udp_sent": 0, "udp_lost": 0})
        t["runs"] += 1
        try:
            with open(path) as f:
                j = json.loads(f.read().strip().splitlines()[-1])
        except (ValueError, IndexError):
            err = open(path[:-5] + ".err", errors="replace").read()[-300:]
            probs.append("round %s %s: no JSON (exit %s) %s" % (rnd, name, rc, err.strip()))
            t["errors"] += 1
            continue
        if "units" in j:  # socksload
            t["units"] += j["units"]
            t["bytes"] += j.get("bytes_up", 0) + j.get("bytes_down", 0)
            # A datagram that never came back is a loss, not a wrong byte: judged by the
            # udp-loss rule. A run whose only errors are losses exits 1 for them alone.
            lost = j["errors"].get("udp_lost", 0)
            e = j["errors"]["total"] - lost
            t["errors"] += e
            t["udp_lost"] += lost
            t["udp_sent"] += j.get("udp", {}).get("sent", 0)
            if e or (rc != "0" and not (rc == "1" and lost)) or j["units"] == 0:
                fl = "; ".join("%s x%d" % (x["text"], x["count"]) for x in j.get("failures", []))
                probs.append("round %s %s: exit %s, %d units, %d errors %s" %
                             (rnd, name, rc, j["units"], e, fl))
        else:  # soak_clients.py
            for k in ("ok", "refused", "errors"):
                t[k] += j[k]
            if j["errors"] or rc != "0":
                probs.append("round %s %s: exit %s, %d errors %s" %
                             (rnd, name, rc, j["errors"], json.dumps(j["failures"])))
    return tot, probs


def plot(out, tsv, restarts, minutes):
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot is not installed: no plot"
    marks = "".join("set arrow from %s, graph 0 to %s, graph 1 nohead dt 2 lc rgb '#888888'\n"
                    % (t, t) for t in restarts)
    with open(tsv) as f:
        head = f.readline().rstrip("\n").split("\t")
    # With bufs_kib: RSS less the resident copy buffers too, what the rss rule judges.
    less = (", \\\n     '' using 1:(($4-$%d)/1024) skip 1 with linespoints pt 7 ps 0.3 "
            "title 'RSS less copy buffers'" % (head.index("bufs_kib") + 1)
            if "bufs_kib" in head else "")
    script = """set terminal svg size 1000,900 dynamic enhanced font 'sans,10' background '#ffffff'
set output '%(out)s.svg'
set datafile separator '\\t'
set datafile missing 'NA'
set key top left
set grid
set multiplot layout 3,2 title 'ringsocks soak, %(minutes)s min (dashed: drain + restart)'
%(marks)sset xlabel 't (s)'
set title 'RSS, kernel memory (cgroup)'
set ylabel 'MiB'
plot '%(tsv)s' using 1:($4/1024) skip 1 with linespoints pt 7 ps 0.3 title 'RSS', \\
     '' using 1:($5/1024) skip 1 with linespoints pt 7 ps 0.3 title 'kernel'%(less)s
set title 'fds'
set ylabel 'fds'
plot '%(tsv)s' using 1:6 skip 1 with linespoints pt 7 ps 0.3 title 'all', \\
     '' using 1:7 skip 1 with linespoints pt 7 ps 0.3 title 'pipes', \\
     '' using 1:14 skip 1 with linespoints pt 7 ps 0.3 title 'not a connection or pipe'
set title 'open'
set ylabel 'count'
plot '%(tsv)s' using 1:9 skip 1 with linespoints pt 7 ps 0.3 title 'tunnels', \\
     '' using 1:10 skip 1 with linespoints pt 7 ps 0.3 title 'handshakes'
set title 'loop iterations since start (per shard: the TSV)'
set ylabel 'iterations'
plot '%(tsv)s' using 1:11 skip 1 with linespoints pt 7 ps 0.3 title 'all shards'
set title 'shard stalls, longest loop work'
set ylabel ''
plot '%(tsv)s' using 1:12 skip 1 with steps title 'stalls', \\
     '' using 1:13 skip 1 with linespoints pt 7 ps 0.3 title 'max work (ms)'
unset multiplot
""" % {"out": out, "tsv": tsv, "marks": marks, "minutes": minutes, "less": less}
    r = subprocess.run([gp], input=script.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        return "gnuplot: " + r.stderr.decode(errors="replace")[-300:]
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", required=True)
    ap.add_argument("--quiet", help="fds at each round's end (soak.sh's quiet.tsv)")
    ap.add_argument("--rounds", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--drain-dir", required=True)
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--san", action="store_true",
                    help="sanitizer binaries: RSS is reported, not judged (ASan's quarantine "
                    "keeps freed memory, up to 256 MiB, so RSS grows by design)")
    a = ap.parse_args()
    total = a.minutes * 60
    _, rows = read_tsv(a.samples)
    events = []
    if os.path.exists(a.events):
        with open(a.events) as f:
            events = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    restarts = [float(e[0]) for e in events if e[1] == "restart"]
    results = []  # (rule, ok, text)

    tot, probs = drivers(a.rounds)
    mal, slow = tot.get("malformed", {}), tot.get("slow", {})
    errs = sum(t["errors"] for t in tot.values())
    results.append(("errors", errs == 0 and not probs and len(tot) > 0,
                    "%d verification errors over %d driver runs%s" %
                    (errs, sum(t["runs"] for t in tot.values()),
                     (": " + " | ".join(probs[:5])) if probs else "")))

    # UDP: loss on loopback comes from a starved host (the softirq backlog or a socket
    # buffer overflows while the receiver waits for a CPU), so it is bounded, not zero; a
    # datagram the proxy itself dropped (ringsocks_udp_datagrams_dropped_total, sampled
    # when the samples have the column) fails the rule whatever the count.
    u = tot.get("udp", {})
    sent, lost = u.get("udp_sent", 0), u.get("udp_lost", 0)
    drops = [num(r.get("udp_drops")) for r in rows if r.get("udp_drops") not in (None, "")]
    kd = [num(r.get("kernel_drops")) for r in rows if r.get("kernel_drops") not in (None, "")]
    own = max(drops) if drops else None
    ktext = (", the kernel's drop counters (softirq backlog, UDP receive errors) grew by %d"
             % (max(kd) - min(kd)) if kd else "")
    results.append(("udp-loss", sent > 0 and lost <= UDP_LOSS_BOUND * sent and not own,
                    "%d of %d datagrams lost (%.5f %%, bound %.3f %%); dropped by the proxy: %s%s"
                    % (lost, sent, 100.0 * lost / sent if sent else 0.0, 100 * UDP_LOSS_BOUND,
                       "not sampled" if own is None else "%d" % own, ktext)))

    reloads = [e for e in events if e[1] == "reload"]
    bad_reloads = [e for e in reloads if e[2] != "200"]
    dpath = os.path.join(a.drain_dir, "drain.rc")
    drain_rc = open(dpath).read().strip() if os.path.exists(dpath) else None
    derr = os.path.join(a.drain_dir, "drain.err")
    dtext = open(derr).read().strip() if os.path.exists(derr) else ""
    results.append(("drain", drain_rc == "0" and not bad_reloads and len(reloads) > 0,
                    "drained process exit %s%s; %d reloads, %d not 200" %
                    (drain_rc, (" (" + dtext + ")") if dtext else "", len(reloads),
                     len(bad_reloads))))

    # Slopes per process after its warm-up.
    procs = sorted({r["proc"] for r in rows}, key=int)
    seg_pid = {r["proc"]: r["pid"] for r in rows}
    quiet = read_tsv(a.quiet)[1] if a.quiet and os.path.exists(a.quiet) else []
    starts = [0.0] + restarts
    fits = []
    for i, p in enumerate(procs):
        seg = [r for r in rows if r["proc"] == p]
        begin = (starts[i] if i < len(starts) else num(seg[0]["t_s"])) + WARMUP * total
        seg = [r for r in seg if num(r["t_s"]) >= begin]
        xs = [num(r["t_s"]) for r in seg]
        qs = [q for q in quiet if q["pid"] == seg_pid.get(p) and num(q["t_s"]) >= begin]
        qx = [num(q["t_s"]) for q in qs]
        f = {"proc": p, "n": len(seg), "from": begin, "nq": len(qx),
             "fds_quiet": slope(qx, [num(q["base_fds"]) for q in qs], 2),
             "rss_quiet": slope(qx, [rss_less_bufs(q) for q in qs], 2),
             "rss_raw_quiet": slope(qx, [num(q.get("rss_kib")) for q in qs], 2),
             "less_bufs": any(num(q.get("bufs_kib")) is not None for q in qs),
             "kmem_quiet": slope(qx, [num(q.get("kmem_kib")) for q in qs], 2),
             "qwindow": max(1.0, (qx[-1] - qx[0]) if qx else 1.0),
             "window": max(1.0, (xs[-1] - xs[0]) if xs else 1.0),
             "fds": slope(xs, [num(r["base_fds"]) for r in seg]),
             "fds_all": slope(xs, [num(r["fds"]) for r in seg]),
             "rss": slope(xs, [num(r["rss_kib"]) for r in seg]),
             "kmem": slope(xs, [num(r["kmem_kib"]) for r in seg])}
        # per minute (fds), MiB per hour (memory)
        f["fds"] = None if f["fds"] is None else f["fds"] * 60
        if f["fds_quiet"] is not None:
            # Between rounds no client is open: the fds then are the ones to watch (the
            # 10 s samples land mid-round, where handshakes' target fds add noise).
            f["fds_quiet"] *= 60
            f["fds_mid"], f["fds"] = f["fds"], f["fds_quiet"]
        f["fds_all"] = None if f["fds_all"] is None else f["fds_all"] * 60
        for k in ("rss", "kmem"):
            f[k] = None if f[k] is None else f[k] * 3600 / 1024
            q = f[k + "_quiet"]
            f[k + "_quiet"] = None if q is None else q * 3600 / 1024
            # As for fds: between rounds the memory of open sockets and buffers is not there.
            if q is not None:
                f[k + "_mid"], f[k] = f[k], f[k + "_quiet"]
        fits.append(f)

    def rule(name, key, bound, step, per, unit):
        vals = [(f["proc"], f[key]) for f in fits if f[key] is not None]
        if not vals:
            return (name, name == "kmem" and all(r["kmem_kib"] == "NA" for r in rows),
                    "no slope (too few samples after warm-up, or not recorded)")
        def win(f):
            return f["qwindow"] if f[key + "_quiet"] is not None else f["window"]

        ok = all(f[key] < max(bound, step * per / win(f)) for f in fits if f[key] is not None)
        return (name, ok, "slope %s (bound %s %s)" %
                (", ".join("process %s %+.3g" % pv for pv in vals),
                 ", ".join("%.3g" % max(bound, step * per / win(f)) for f in fits
                           if f[key] is not None), unit))

    for key, bound, step, per, unit in (("fds", FDS_BOUND, FDS_STEP, 60, "fds/min"),
                                        ("rss", RSS_BOUND, MEM_STEP, 3600, "MiB/h"),
                                        ("kmem", KMEM_BOUND, MEM_STEP, 3600, "MiB/h")):
        results.append(rule(key, key, bound, step, per, unit))
        if key == "rss" and any(f["less_bufs"] for f in fits):
            raw = ", ".join("process %s %+.3g" % (f["proc"], f["rss_raw_quiet"] * 3600 / 1024)
                            for f in fits if f["rss_raw_quiet"] is not None)
            results[-1] = results[-1][:2] + (results[-1][2] + " less the resident copy buffers "
                                             "(raw RSS: %s MiB/h)" % raw,)
        if key == "rss" and a.san:
            results[-1] = (key, True, results[-1][2] + "; not judged under sanitizers (ASan's "
                           "quarantine grows RSS by design)")
        if any(f[key + "_quiet"] is not None for f in fits):
            results[-1] = results[-1][:2] + (results[-1][2] + ", at the rounds' ends",)
    own, host, seen = stall_split(rows)
    maxwork = [num(r["loop_max_ms"]) for r in rows if num(r["loop_max_ms"]) is not None]
    results.append(("stalls", seen and own == 0,
                    "%d stalls of the shards' own; %d more in intervals where the shards waited "
                    "for a CPU (host contention, not counted); longest loop work %d ms" %
                    (own, host, max(maxwork) if maxwork else -1)))

    note = plot(a.out, a.samples, restarts, a.minutes)

    def fmt(v, d=3):
        return "-" if v is None else ("%+.*g" % (d, v))

    with open(a.out + ".md", "w") as f:
        f.write("# ringsocks soak, %g minutes\n\n" % a.minutes)
        f.write("Samples: %s (%d), plot: %s.svg%s.\n\n" %
                (os.path.basename(a.samples), len(rows), os.path.basename(a.out),
                 (" (" + note + ")") if note else ""))
        f.write("| rule | result | figures |\n| --- | --- | --- |\n")
        for n, ok, text in results:
            f.write("| %s | %s | %s |\n" % (n, "PASS" if ok else "**FAIL**", text.replace("|", "/")))
        f.write("\n## Slopes after warm-up (least squares)\n\n")
        f.write("At the rounds' ends (no client open; the rules use these when there are 2 or"
                " more), and in the 10 s samples (mid-round):\n\n")
        f.write("| process | samples (at rounds' ends) | from t (s) | fds not a connection or pipe"
                " (/min) | the same, 10 s samples | all fds, 10 s samples | RSS (MiB/h) | the same,"
                " 10 s samples | kernel memory (MiB/h) | the same, 10 s samples |\n"
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
        for ft in fits:
            f.write("| %s | %d (%d) | %.0f | %s | %s | %s | %s | %s | %s | %s |\n" %
                    (ft["proc"], ft["n"], ft["nq"], ft["from"], fmt(ft["fds_quiet"]),
                     fmt(ft.get("fds_mid", ft["fds"])), fmt(ft["fds_all"]),
                     fmt(ft["rss_quiet"]), fmt(ft.get("rss_mid", ft["rss"])),
                     fmt(ft["kmem_quiet"]), fmt(ft.get("kmem_mid", ft["kmem"]))))
        f.write("\n## Drivers, summed over the rounds\n\n| driver | runs | units | bytes | ok |"
                " refused (expected) | errors |\n| --- | --- | --- | --- | --- | --- | --- |\n")
        for n in sorted(tot):
            t = tot[n]
            f.write("| %s | %d | %d | %d | %d | %d | %d |\n" %
                    (n, t["runs"], t["units"], t["bytes"], t["ok"], t["refused"], t["errors"]))
        f.write("\nmalformed clients refused: %d; slow readers closed by the proxy: %d\n" %
                (mal.get("refused", 0), slow.get("refused", 0)))
        f.write("\n## Events\n\n")
        for e in events:
            f.write("- t=%s s %s %s\n" % tuple((e + ["", "", ""])[:3]))
        last = rows[-1] if rows else {}
        f.write("\nLast sample: %s\n" % json.dumps(last))
    failed = [n for n, ok, _ in results if not ok]
    for n, ok, text in results:
        print("%s soak-%s: %s" % ("PASS" if ok else "FAIL", n, text))
    print("soak: %s" % ("every rule passed" if not failed else "FAILED: " + ", ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
