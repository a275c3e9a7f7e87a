#!/usr/bin/env python3
"""bench/macro/report.py - turns the raw rows of a macro benchmark run into its report.

Input: the run's TSV as run.sh saves it: "# key=value" lines (the run's metadata), a header
line, then one row per measurement (server, metric, round, value, errors; value NA = the
measurement failed, skip = it does not apply to that server). Output: PREFIX.md (machine,
versions, settings, the medians at a glance, the full table, the targets section, plots) and,
when gnuplot is there, PREFIX-{throughput,cpu,rate,rtt,memory,tclose,tclose-cpu,udp}.svg
(PLOT_FORMAT=png: .png).
Standard library only. Rerunning it on a saved TSV rebuilds the report.

Usage: report.py RUN.tsv OUT-PREFIX
"""

import os
import shutil
import statistics
import subprocess
import sys

# key, label, decimals, better ("hi", "lo" or None: no ratios), ratio to direct meaningful.
# Labels go through Run.label: {workers} is the run's RATE_WORKERS, {big} its BIG_TUNNELS.
METRICS = [
    ("tp1_gbps", "1. throughput, 1 tunnel (Gbit/s)", 2, "hi", True),
    ("tp16_gbps", "1. throughput, 16 tunnels (Gbit/s)", 2, "hi", True),
    ("cpu1_proxy", "2. proxy CPU per GB, 1 tunnel (s/GB)", 3, "lo", False),
    ("cpu16_proxy", "2. proxy CPU per GB, 16 tunnels (s/GB)", 3, "lo", False),
    ("cpu1_machine", "2. machine CPU per GB, 1 tunnel (s/GB)", 3, "lo", True),
    ("cpu16_machine", "2. machine CPU per GB, 16 tunnels (s/GB)", 3, "lo", True),
    ("rate", "3. tunnel rate, {workers} workers (tunnels/s)", 0, "hi", True),
    ("rate_p50_us", "3. tunnel latency p50, {workers} workers (us)", 0, "lo", True),
    ("rate_p99_us", "3. tunnel latency p99, {workers} workers (us)", 0, "lo", True),
    ("rate_cpu_ms", "3. proxy CPU per 1,000 tunnels, client RST (ms)", 1, "lo", False),
    ("rtt_p50_us", "4. pinned 1-byte RTT p50 (us)", 1, "lo", True),
    ("rtt_overhead_us", "4. RTT overhead over direct, p50 (us)", 1, "lo", False),
    ("mem_rss_B", "5. user memory per idle tunnel, RSS (bytes)", 0, "lo", False),
    ("mem_pss_B", "5. user memory per idle tunnel, PSS anon+shmem (bytes)", 0, "lo", False),
    ("kmem_cg_B", "5. kernel memory per idle tunnel, proxy's cgroup (bytes)", 0, "lo", False),
    ("sockbuf_B", "5. socket buffers per idle tunnel, proxy's sockets (bytes)", 0, "lo", False),
    ("kmem_sys_raw_B", "5. machine kernel memory per tunnel, all sockets (bytes)", 0, None, False),
    ("kmem_sys_B", "5. machine kernel memory per tunnel, minus direct (bytes)", 0, "lo", False),
    ("mem_held", "5. tunnels held and verified, memory run", 0, None, False),
    ("auth_ratio", "6. user/password rate / plain rate", 2, "hi", False),
    ("auth_rate", "6. tunnel rate with user/password (tunnels/s)", 0, "hi", False),
    ("name_ratio", "6. socks5h (by name) rate / plain rate", 2, "hi", False),
    ("name_rate", "6. tunnel rate by name, socks5h (tunnels/s)", 0, "hi", False),
    ("big_held", "7. concurrent tunnels held and verified", 0, "hi", False),
    ("tclose_rate", "9. tunnel rate, target closes first, {workers} workers (tunnels/s)", 0,
     "hi", True),
    ("tclose_p99_us", "9. tunnel latency p99 to the target's EOF (us)", 0, "lo", True),
    ("tclose_cpu_ms", "9. proxy CPU per 1,000 tunnels, target closes first (ms)", 1, "lo",
     False),
]
# Figure 10: the four UDP ASSOCIATE runs, (associations, datagram size).
UDP_RUNS = [(1, 64), (1, 1400), (64, 64), (64, 1400)]


def udp_what(n, size):
    return "%d assoc%s, %d B" % (n, "" if n == 1 else "s", size)


for _n, _size in UDP_RUNS:
    _k, _w = "udp%d_%d" % (_n, _size), udp_what(_n, _size)
    METRICS += [
        (_k + "_rate", "10. UDP datagrams/s echoed, %s" % _w, 0, "hi", True),
        (_k + "_lost", "10. UDP datagrams lost, %s" % _w, 0, None, False),
        (_k + "_loss_pct", "10. UDP loss, %s (%%)" % _w, 3, "lo", False),
        (_k + "_cpu_s", "10. proxy CPU per 1,000,000 datagrams, %s (s)" % _w, 2, "lo", False),
    ]


# Figure 12: the open-loop UDP sweep (udprate), per datagram size; its rates are the run's
# UDPRATE_RATES (metadata udprate_rates).
UDPRATE_SIZES = (64, 1400)


def udprate_metrics(rates):
    out = []
    for size in UDPRATE_SIZES:
        out.append(("udprate_%d_knee" % size,
                    "12. UDP loss knee, %d B: highest rate with loss < 0.1 %% (datagrams/s)" % size,
                    0, "hi", True))
        for r in rates:
            out.append(("udprate_%d_%s_loss_pct" % (size, r),
                        "11. UDP open loop, %d B, %s/s asked: loss (%%)" % (size, r), 3, "lo", False))
            out.append(("udprate_%d_%s_sent" % (size, r),
                        "11. UDP open loop, %d B, %s/s asked: sent / asked" % (size, r), 2, None,
                        False))
    return out


def udprate_section(run, rates):
    """Per size a table: a server per row, its median loss at each rate, its knee."""
    out = []
    for size in UDPRATE_SIZES:
        key = "udprate_%d_knee" % size
        servers = [s for s in run.servers if run.applies(s, key)]
        if not servers:
            continue
        out.append("%d B datagrams, median loss %% at each asked rate (datagrams/s in all); "
                   "a * marks a median send rate below 0.95 of the asked one (socksload, not "
                   "the server, was short):" % size)
        out.append("")
        out.append("| server | " + " | ".join(rates) + " | knee |")
        out.append("| --- |" + " ---: |" * (len(rates) + 1))
        for sv in servers:
            cells = []
            for r in rates:
                m = run.median(sv, "udprate_%d_%s_loss_pct" % (size, r))
                sent = run.median(sv, "udprate_%d_%s_sent" % (size, r))
                c = "fail" if m is None else fmt(m, 3)
                if sent is not None and sent < 0.95:
                    c += "*"
                cells.append(c)
            k = run.median(sv, key)
            cells.append("fail" if k is None else fmt(k, 0))
            out.append("| %s | %s |" % (sv, " | ".join(cells)))
        out.append("")
    return "\n".join(out)


def is_ringsocks(s):
    """ringsocks-ENGINE, or an extra server named ringsocks... (ringsocks with other flags,
    e.g. EXTRA_SERVERS="ringsocks-busypoll=build/ringsocks ... --busy-poll 50"): not a peer."""
    return s.startswith("ringsocks") or s.startswith("extra-ringsocks")


def is_peer(s):
    return s != "direct" and not is_ringsocks(s)


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def fmt(v, dec):
    if v is None:
        return "n/a"
    if dec == 0:
        return "%.0f" % v
    return "%.*f" % (dec, v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "-"
    return "%.2f" % r if abs(r) >= 0.1 else "%.2g" % r


class Run:
    def __init__(self, tsv):
        self.meta = {}
        rows = []
        with open(tsv) as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith("# "):
                    if "=" in line:
                        k, v = line[2:].split("=", 1)
                        self.meta[k] = v
                    continue
                parts = line.split("\t")
                if len(parts) == 5 and parts[2].isdigit():
                    rows.append(parts)
        self.servers = self.meta.get("servers", "").split()
        self.rounds = int(self.meta.get("rounds", "1"))
        # (server, metric) -> {round: (value or None, state, errors)}
        self.cells = {}
        # Figure 8 (scrape.sh): its own variants, not servers of the other figures.
        self.scrape = {}
        # Figure 11 (huge.sh): its own variants too.
        self.huge = {}
        for server, metric, rnd, value, errors in rows:
            state = "ok" if num(value) is not None else ("skip" if value == "skip" else "fail")
            if metric.startswith("huge_"):
                into = self.huge
            elif metric.startswith("scrape_"):
                into = self.scrape
            else:
                into = self.cells
                if server not in self.servers:
                    self.servers.append(server)
            into.setdefault((server, metric), {})[int(rnd)] = (num(value), state, num(errors))
        self.derive()

    def derive(self):
        """Per-round figures computed from two measured ones."""
        self.minus_direct("rtt_p50_us", "rtt_overhead_us")
        self.minus_direct("kmem_sys_raw_B", "kmem_sys_B")

    def minus_direct(self, src, dst):
        """dst of every server but direct: its src minus direct's src in the same round (direct's
        median when that round has none)."""
        direct = self.cells.get(("direct", src), {})
        med = self.median("direct", src)
        for s in self.servers:
            c = self.cells.get((s, src))
            if s == "direct" or c is None:
                continue
            out = {}
            for r, (v, st, e) in c.items():
                d = direct.get(r, (None,))[0]
                if d is None:
                    d = med
                out[r] = (v - d, "ok", e) if v is not None and d is not None else (None, st, e)
            self.cells[(s, dst)] = out

    def label(self, text):
        """A label with the run's settings in it: {workers} (RATE_WORKERS), {big} (BIG_TUNNELS)."""
        return text.format(workers=self.meta.get("rate_workers", "?"),
                           big=self.meta.get("big_tunnels", "?"))

    def values(self, s, m):
        return [v for v, st, e in self.cells.get((s, m), {}).values() if v is not None]

    def median(self, s, m):
        v = self.values(s, m)
        return statistics.median(v) if v else None

    def minmax(self, s, m):
        v = self.values(s, m)
        return (min(v), max(v)) if v else (None, None)

    def applies(self, s, m):
        c = self.cells.get((s, m))
        return c is not None and any(st != "skip" for v, st, e in c.values())

    def best_peer(self, m, better):
        meds = [(self.median(s, m), s) for s in self.servers if is_peer(s)]
        meds = [x for x in meds if x[0] is not None]
        if not meds or better is None:
            return None, None
        return (max if better == "hi" else min)(meds)

    def rounds_text(self, s, m, dec):
        c = self.cells.get((s, m), {})
        out = []
        for r in range(1, self.rounds + 1):
            if r not in c:
                continue
            v, st, e = c[r]
            out.append(fmt(v, dec) if v is not None else ("n/a" if st == "skip" else "fail"))
        return " ".join(out)

    def errors_text(self, s, m):
        c = self.cells.get((s, m), {})
        total, fails = 0, 0
        for v, st, e in c.values():
            if st == "fail":
                fails += 1
            if e is not None:
                total += int(e)
        t = str(total)
        if fails:
            t += " (%d failed)" % fails
        return t


def table(run):
    lines = ["| figure | server | median | every round | x direct | x best peer | errors |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for key, label, dec, better, vs_direct in METRICS:
        dref = run.median("direct", key) if vs_direct else None
        pref = run.best_peer(key, better)[0]
        for s in run.servers:
            if (s, key) not in run.cells or not run.applies(s, key):
                continue
            m = run.median(s, key)
            xd = fmt_ratio(ratio(m, dref)) if vs_direct else "-"
            xp = fmt_ratio(ratio(m, pref)) if better and pref is not None else "-"
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                run.label(label), s, fmt(m, dec), run.rounds_text(s, key, dec), xd, xp,
                run.errors_text(s, key)))
    return "\n".join(lines)


# The medians at a glance: a figure per row, a server per column.
SUMMARY = [
    ("tp1_gbps", "throughput, 1 tunnel (Gbit/s)", 2),
    ("tp16_gbps", "throughput, 16 tunnels (Gbit/s)", 2),
    ("cpu16_proxy", "proxy CPU per GB, 16 tunnels (s)", 3),
    ("cpu16_machine", "machine CPU per GB, 16 tunnels (s)", 3),
    ("rate", "tunnels/s, {workers} workers", 0),
    ("rate_p99_us", "tunnel latency p99 (us)", 0),
    ("rate_cpu_ms", "proxy CPU per 1,000 tunnels, client RST (ms)", 1),
    ("tclose_rate", "tunnels/s, target closes first", 0),
    ("tclose_cpu_ms", "proxy CPU per 1,000 tunnels, target closes (ms)", 1),
    ("rtt_p50_us", "pinned 1-byte RTT p50 (us)", 1),
    ("rtt_overhead_us", "RTT overhead over direct (us)", 1),
    ("mem_rss_B", "user memory per idle tunnel, RSS (B)", 0),
    ("kmem_cg_B", "kernel memory per idle tunnel, cgroup (B)", 0),
    ("auth_ratio", "user/password rate / plain rate", 2),
    ("name_ratio", "socks5h rate / plain rate", 2),
    ("big_held", "concurrent tunnels held (of {big})", 0),
] + [("udp%d_%d_%s" % (n, size, k), "UDP %s, %s" % (what, udp_what(n, size)), dec)
     for n, size in UDP_RUNS
     for k, what, dec in (("rate", "datagrams/s", 0), ("loss_pct", "loss %", 3))]


def summary(run):
    out = ["| figure (median) | " + " | ".join(run.servers) + " |",
           "| --- |" + " ---: |" * len(run.servers)]
    for key, label, dec in SUMMARY:
        if not any(run.applies(s, key) for s in run.servers):
            continue
        cells = []
        for s in run.servers:
            if not run.applies(s, key):
                cells.append("n/a")
            else:
                m = run.median(s, key)
                cells.append("fail" if m is None else fmt(m, dec))
        out.append("| %s | %s |" % (run.label(label), " | ".join(cells)))
    return "\n".join(out)


def targets(run):
    rs = [s for s in run.servers if is_ringsocks(s)]
    peers = [s for s in run.servers if is_peer(s)]
    if not rs:
        return "No ringsocks engine in this run."
    rows = []

    def vs_peers(key, what):
        for p in peers:
            cells = []
            for s in rs:
                a, b = run.median(s, key), run.median(p, key)
                cells.append(fmt_ratio(ratio(a, b)) + "x" if ratio(a, b) is not None else "n/a")
            rows.append(("%s vs %s" % (what, p), cells))

    vs_peers("tp1_gbps", "throughput, 1 tunnel (higher is better)")
    vs_peers("tp16_gbps", "throughput, 16 tunnels (higher is better)")
    vs_peers("rate", "tunnel rate (higher is better)")
    vs_peers("rate_p99_us", "p99 tunnel latency (lower is better)")
    vs_peers("rate_cpu_ms", "proxy CPU per tunnel, client RST (lower is better)")
    vs_peers("tclose_rate", "tunnel rate, target closes first (higher is better)")
    vs_peers("tclose_cpu_ms", "proxy CPU per tunnel, target closes first (lower is better)")
    vs_peers("cpu16_proxy", "proxy CPU per GB, 16 tunnels (lower is better)")
    vs_peers("cpu1_proxy", "proxy CPU per GB, 1 tunnel (lower is better)")
    vs_peers("cpu16_machine", "machine CPU per GB, 16 tunnels (lower is better)")
    vs_peers("cpu1_machine", "machine CPU per GB, 1 tunnel (lower is better)")
    for size in UDPRATE_SIZES:
        vs_peers("udprate_%d_knee" % size,
                 "UDP loss knee, %d B, open loop (higher is better)" % size)
    for n, size in UDP_RUNS:
        vs_peers("udp%d_%d_rate" % (n, size),
                 "UDP datagrams/s, %s (higher is better)" % udp_what(n, size))
        vs_peers("udp%d_%d_cpu_s" % (n, size),
                 "proxy CPU per UDP datagram, %s (lower is better)" % udp_what(n, size))
    best, bname = run.best_peer("rtt_overhead_us", "lo")
    cells = []
    for s in rs:
        o = run.median(s, "rtt_overhead_us")
        if o is None:
            cells.append("n/a")
        elif best is None:
            cells.append("%.1f us (no peer)" % o)
        else:
            cells.append("%.1f us vs %.1f us: %sx" % (o, best, fmt_ratio(ratio(o, best))))
    rows.append(("RTT overhead over direct vs best peer%s (lower is better)" %
                 (" (%s)" % bname if bname else ""), cells))
    for key, what in (("mem_rss_B", "user memory per idle tunnel, RSS"),
                      ("mem_pss_B", "user memory per idle tunnel, PSS (anon+shmem)"),
                      ("kmem_cg_B", "kernel memory per idle tunnel (cgroup)")):
        cells = []
        for s in rs:
            v = run.median(s, key)
            cells.append("n/a" if v is None else "%.2f KiB" % (v / 1024))
        rows.append((what, cells))
    for key, what in (("auth_ratio", "user/password rate / plain rate"),
                      ("name_ratio", "socks5h rate / plain rate")):
        rows.append((what, [fmt_ratio(run.median(s, key)) for s in rs]))
    rows.append((run.label("concurrent tunnels held and verified of {big}"),
                 [fmt(run.median(s, "big_held"), 0) for s in rs]))
    # A figure the run did not measure (not in FIGURES, or no peer has it) says nothing.
    rows = [(what, cells) for what, cells in rows if any(c not in ("n/a", "-") for c in cells)]
    if not rows:
        return "No figure of this run has both ringsocks and a peer."
    out = ["| ratio | " + " | ".join(rs) + " |", "| --- |" + " ---: |" * len(rs)]
    for what, cells in rows:
        out.append("| %s | %s |" % (what, " | ".join(cells)))
    return "\n".join(out)


# ------------------------------------------------------------------------------------ plots

def datablock(run, keys, scale=1.0):
    """One line per server: name, then median min max for each key ('NaN' when missing)."""
    lines = []
    for s in run.servers:
        if not any(run.applies(s, k) and run.median(s, k) is not None for k in keys):
            continue
        cols = ['"%s"' % s]
        for k in keys:
            m = run.median(s, k)
            lo, hi = run.minmax(s, k)
            if m is None:
                cols += ["NaN", "NaN", "NaN"]
            else:
                cols += ["%g" % (m * scale), "%g" % (lo * scale), "%g" % (hi * scale)]
        lines.append(" ".join(cols))
    return "\n".join(lines)


def clustered(run, out, title, ylabel, series, scale=1.0, log=False):
    # A series no server has (its figure not in FIGURES) would be a column of NaN only, which
    # gnuplot refuses: "No valid points".
    series = [(k, t) for k, t in series if any(run.median(s, k) is not None for s in run.servers)]
    keys = [k for k, t in series]
    data = datablock(run, keys, scale)
    if not data:
        return None
    plots = []
    for i, (k, t) in enumerate(series):
        c = 2 + 3 * i
        plots.append("$d using %d:%d:%d%s title '%s'" % (c, c + 1, c + 2,
                                                           ":xtic(1)" if i == 0 else "", t))
    return """@TERM@
set output '%s'
set title '%s'
set ylabel '%s'
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key below
set xtics rotate by -20
set yrange [%s:*]
%s
$d << EOD
%s
EOD
plot %s
""" % (out, title, ylabel, "*" if log else "0", "set logscale y" if log else "", data,
       ", ".join(plots))


def rate_plot(run, out):
    data = datablock(run, ["rate", "rate_p99_us"])
    if not data:
        return None
    return """@TERM@
set output '%s'
set title 'Figure 3: short tunnels, %s workers (median, bars: min-max of the rounds)'
set ylabel 'tunnels per second'
set y2label 'p99 tunnel latency (ms)'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set style fill solid 0.8 border -1
set offsets 0.6, 0.6, graph 0.08, 0
set grid ytics
set xtics rotate by -20
set key below
$d << EOD
%s
EOD
plot $d using 0:2:3:4:(0.3):xtic(1) with boxerrorbars title 'tunnels/s' axes x1y1, \\
     $d using 0:($5/1000):($6/1000):($7/1000) with yerrorbars lw 2 pt 7 ps 1.5 title 'p99 latency (ms)' axes x1y2
""" % (out, run.meta.get("rate_workers", "?"), data)


def rtt_plot(run, out):
    data = datablock(run, ["rtt_p50_us"])
    if not data:
        return None
    return """@TERM@
set output '%s'
set title 'Figure 4: pinned 1-byte round trip, p50 (client+target on one CPU, proxy on the other)'
set ylabel 'microseconds'
set yrange [0:*]
set style fill solid 0.8 border -1
set offsets 0.6, 0.6, graph 0.08, 0
set grid ytics
set xtics rotate by -20
$d << EOD
%s
EOD
plot $d using 0:2:3:4:(0.3):xtic(1) with boxerrorbars notitle, \\
     $d using 0:2:(sprintf('%%.0f', $2)) with labels offset 0,1 notitle
""" % (out, data)


# PLOT_FORMAT=png renders PNG (pngcairo) instead of SVG.
FORMAT = os.environ.get("PLOT_FORMAT", "svg")
TERM = {
    "svg": "set terminal svg size 900,480 dynamic enhanced font 'sans,11' background '#ffffff'",
    "png": "set terminal pngcairo size 900,480 enhanced font 'sans,10' background '#ffffff'",
}


def plots(run, prefix):
    gp = shutil.which("gnuplot")
    if not gp:
        return [], "gnuplot is not installed (tools/install-deps.sh bench): no plots."
    base = os.path.basename(prefix)
    scripts = {
        "throughput": clustered(
            run, prefix + "-throughput." + FORMAT,
            "Figure 1: throughput, download (median, bars: min-max of the rounds)", "Gbit/s",
            [("tp1_gbps", "1 tunnel"), ("tp16_gbps", "16 tunnels")]),
        "cpu": clustered(
            run, prefix + "-cpu." + FORMAT, "Figure 2: CPU seconds per GB moved (lower is better)",
            "CPU s / GB",
            [("cpu1_proxy", "proxy, 1 tunnel"), ("cpu16_proxy", "proxy, 16 tunnels"),
             ("cpu1_machine", "machine, 1 tunnel"), ("cpu16_machine", "machine, 16 tunnels")]),
        "rate": rate_plot(run, prefix + "-rate." + FORMAT),
        "rtt": rtt_plot(run, prefix + "-rtt." + FORMAT),
        "memory": clustered(
            run, prefix + "-memory." + FORMAT,
            "Figure 5: memory per held idle tunnel (KiB, log scale)", "KiB per tunnel",
            [("mem_rss_B", "user RSS"), ("mem_pss_B", "user PSS (anon+shmem)"),
             ("kmem_cg_B", "kernel (cgroup)"), ("kmem_sys_B", "kernel (machine - direct)")],
            scale=1 / 1024, log=True),
        "tclose": clustered(
            run, prefix + "-tclose." + FORMAT,
            "Figure 9: short tunnels by who closes (median, bars: min-max of the rounds)",
            "tunnels per second",
            [("rate", "client RST (figure 3)"), ("tclose_rate", "target closes first")]),
        "tclose-cpu": clustered(
            run, prefix + "-tclose-cpu." + FORMAT,
            "Figure 9: proxy CPU per 1,000 short tunnels (lower is better)", "CPU ms",
            [("rate_cpu_ms", "client RST (figure 3)"),
             ("tclose_cpu_ms", "target closes first")]),
        "udp": clustered(
            run, prefix + "-udp." + FORMAT,
            "Figure 10: UDP ASSOCIATE datagrams echoed per second (median, bars: min-max)",
            "datagrams per second",
            [("udp%d_%d_rate" % (n, size), udp_what(n, size)) for n, size in UDP_RUNS]),
    }
    made, warn = [], []
    for name, script in scripts.items():
        if script is None:
            continue
        script = script.replace("@TERM@", TERM.get(FORMAT, TERM["svg"]))
        r = subprocess.run([gp], input=script, text=True, capture_output=True)
        img = prefix + "-%s.%s" % (name, FORMAT)
        if r.returncode == 0 and os.path.exists(img) and os.path.getsize(img) > 0:
            made.append((name, base + "-%s.%s" % (name, FORMAT)))
        else:
            warn.append("%s: %s" % (name, r.stderr.strip().splitlines()[-1:] or "failed"))
    return made, ("gnuplot: " + "; ".join(warn)) if warn else ""


SCRAPE = [
    ("scrape-pool", "ringsocks, egress = [\"2001:db8:1::/64\"]: a random source address per tunnel"),
    ("scrape-sticky", "ringsocks, the same pool, password auth, username_params: "
     "200 sessions (bench-session-{n%200}), one address each"),
    ("scrape-single", "ringsocks, no egress pool: one source address"),
    ("scrape-direct", "direct: no proxy (socksload serve --socks5)"),
]
SCRAPE_METRICS = [
    ("scrape_rate", "tunnels/s", 0),
    ("scrape_success_pct", "success %", 1),
    ("scrape_p99_us", "p99 (us)", 0),
    ("scrape_addrs", "source addresses seen", 0),
    ("scrape_sessions", "sessions", 0),
    ("scrape_addrs_per_session", "most addresses for one session", 0),
    ("scrape_timewait", "TIME_WAIT towards the target at the end", 0),
    ("scrape_cpu_us", "proxy CPU per tunnel (us)", 1),
]
# Metrics only the sticky variant has (the others log in without a session name).
SCRAPE_SESSION_METRICS = ("scrape_sessions", "scrape_addrs_per_session")
CLOSE_TEXT = {
    "fin": "the client closes with FIN, so the proxy (direct: the client) closes first "
           "towards the target and holds its TIME_WAIT",
    "rst": "the client closes with RST, which the proxy passes on: no TIME_WAIT",
}


def rounds_cell(c, dec):
    """One figure of a section's table from its {round: (value, state, errors)}: the median,
    and with more than one round every round in brackets (fail, skip: none measured)."""
    vals = [v for v, st, e in (c[r] for r in sorted(c)) if v is not None]
    every = ", ".join(fmt(v, dec) if v is not None else st
                      for v, st, e in (c[r] for r in sorted(c)))
    med = fmt(statistics.median(vals), dec) if vals else (
        "skip" if all(st == "skip" for _, st, _ in c.values()) else "fail")
    return "%s (%s)" % (med, every) if len(c) > 1 else med


def scrape_section(run):
    """Figure 8: one row per variant; medians, every round in brackets."""
    if not run.scrape:
        return None
    m = run.meta
    out = ["Short tunnels (connect, SOCKS5 handshake, 64 B each way, close) to one target "
           "address and port for %s s per variant, %s workers, from a proxy namespace to a "
           "target namespace over a veth pair (bench/macro/scrape.sh). Close: %s, %s. "
           "Success: tunnels completed / (completed + failed). Source addresses: distinct "
           "addresses the target saw; sessions: distinct session names it saw (sticky only); "
           "TIME_WAIT: sockets towards the target's address and port in the proxy namespace "
           "when the run ends; proxy CPU: ringsocks' own user + system time over the run per "
           "completed tunnel. Median of the rounds, every round in brackets (skip: the variant "
           "could not run, see the log)."
           % (m.get("scrape_seconds", "?"), m.get("scrape_workers", "?"),
              m.get("scrape_close", "rst"),
              CLOSE_TEXT.get(m.get("scrape_close", "rst"), "unknown close")),
           "",
           "| variant | " + " | ".join(lab for _, lab, _ in SCRAPE_METRICS) + " | errors |",
           "| --- |" + " ---: |" * (len(SCRAPE_METRICS) + 1)]
    for name, desc in SCRAPE:
        if not any((name, k) in run.scrape for k, _, _ in SCRAPE_METRICS):
            continue
        cells = []
        errs = 0
        for key, _, dec in SCRAPE_METRICS:
            c = run.scrape.get((name, key), {})
            if (key in SCRAPE_SESSION_METRICS and name != "scrape-sticky") or \
                    (key == "scrape_cpu_us" and name == "scrape-direct"):
                cells.append("n/a")
                continue
            cells.append(rounds_cell(c, dec))
            if key == "scrape_rate":
                errs = sum(e for _, _, e in c.values() if e is not None)
        out.append("| %s | %s | %s |" % (desc, " | ".join(cells), fmt(errs, 0)))
    return "\n".join(out)


HUGE_METRICS = [
    ("huge_held", "held and verified", 0),
    ("huge_open_s", "time to open all (s)", 1),
    ("huge_procs", "processes", 0),
    ("huge_rss_B", "proxy RSS per tunnel (B)", 0),
    ("huge_pss_B", "proxy PSS anon+shmem per tunnel (B)", 0),
    ("huge_kmem_cg_B", "kernel, proxies' cgroup, per tunnel (B)", 0),
    ("huge_kmem_sys_B", "machine kernel per tunnel, all sockets (B)", 0),
    ("huge_procfs_B", "of which /proc inodes (B)", 0),
    ("huge_kmem_proxy_B", "machine kernel minus direct (B)", 0),
    ("huge_idle_rss_kB", "idle proxy RSS (KiB)", 0),
    ("huge_idle_kmem_kB", "idle proxy kernel, cgroup (KiB)", 0),
]


def huge_section(run):
    """Figure 11: one row per variant; medians, every round in brackets."""
    if not run.huge:
        return None
    m = run.meta
    # The proxy's share of the machine figure: minus direct's of the same round (direct has
    # the client's and the target's sockets only).
    base = run.huge.get(("direct", "huge_kmem_sys_B"), {})
    for (name, key), c in list(run.huge.items()):
        if key != "huge_kmem_sys_B" or name == "direct":
            continue
        d = {}
        for r, (v, st, e) in c.items():
            b = base.get(r, (None, "fail", None))[0]
            d[r] = (v - b, "ok", e) if v is not None and b is not None else (None, "fail", e)
        run.huge[(name, "huge_kmem_proxy_B")] = d
    out = ["%s idle tunnels held at once on this node (bench/macro/huge.sh), each variant in "
           "its own network namespace: the tunnels are spread over several proxies of two "
           "shards each (ringsocks) or several targets (direct: `socksload serve --socks5`, no "
           "proxy), one `socksload hold` client each, because no process here may have more "
           "than %s descriptors (the hard RLIMIT_NOFILE) and a proxied tunnel takes two. The "
           "idle processes are sampled first: per-tunnel figures are the growth from idle to "
           "all held, divided by the tunnels open at the sample, so the split does not enter "
           "them. Held: tunnels with a verified round trip after the %s s hold. Machine kernel: "
           "Slab + KernelStack + PageTables, all four sockets of a proxied tunnel (two for "
           "direct). socksload --timeout and ringsocks --handshake-timeout %s s. Median of the "
           "rounds, every round in brackets."
           % (fmt(num(m.get("huge_tunnels")), 0), m.get("nofile_hard", "?"),
              m.get("huge_hold", "?"), m.get("huge_timeout", "?")),
           "",
           "| variant | " + " | ".join(lab for _, lab, _ in HUGE_METRICS) + " | errors |",
           "| --- |" + " ---: |" * (len(HUGE_METRICS) + 1)]
    for name in sorted({s for s, _ in run.huge}, key=lambda s: (s == "direct", s)):
        cells = []
        errs = 0
        for key, _, dec in HUGE_METRICS:
            c = run.huge.get((name, key), {})
            if not c or all(st == "skip" for _, st, _ in c.values()):
                cells.append("n/a")
                continue
            cells.append(rounds_cell(c, dec))
            if key == "huge_held":
                errs = sum(e for _, _, e in c.values() if e is not None)
        out.append("| %s | %s | %s |" % (name, " | ".join(cells), fmt(errs, 0)))
    return "\n".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: report.py RUN.tsv OUT-PREFIX")
    tsv, prefix = sys.argv[1:3]
    run = Run(tsv)
    m = run.meta
    udprate_rates = m.get("udprate_rates", "").split()
    METRICS.extend(udprate_metrics(udprate_rates))
    SUMMARY.extend(("udprate_%d_knee" % size, "UDP loss knee, %d B (datagrams/s)" % size, 0)
                   for size in UDPRATE_SIZES)
    made, warn = plots(run, prefix)
    notes = []
    unpinned = [s for s in run.servers
                if any(v == 0 for v in run.values(s, "rtt_pinned"))]
    if unpinned:
        notes.append("Figure 4: the proxy's threads were not all confined to CPU %s for: %s "
                     "(see the cell logs); their RTT is not a pinned figure." %
                     (m.get("proxy_cpu", "?"), ", ".join(unpinned)))
    unchecked = [s for s in run.servers
                 if any(st == "fail" for v, st, e in run.cells.get((s, "rtt_pinned"), {}).values())]
    if unchecked:
        notes.append("Figure 4: whether the proxy's threads stayed on CPU %s could not be checked "
                     "in some rounds for: %s (the proxy had exited?); those RTTs may not be "
                     "pinned figures." % (m.get("proxy_cpu", "?"), ", ".join(unchecked)))
    if warn:
        notes.append(warn)
    for w in m.get("warnings", "").split("|"):
        if w.strip():
            notes.append(w.strip())
    out = []
    out.append("## Macro benchmark, %s" % m.get("started", "?"))
    out.append("")
    out.append("%s CPUs (%s), %s GiB, kernel %s; %s (commit %s); microsocks %s, "
               "Dante %s; %s." % (m.get("ncpu"), m.get("cpu"), m.get("mem_gib"),
                                  m.get("kernel"), m.get("ringsocks_version"), m.get("commit"),
                                  m.get("microsocks_version"), m.get("dante_version"),
                                  m.get("extra_desc") or "no other servers"))
    out.append("")
    out.append("%s interleaved rounds (order rotates), %s; throughput %s s, rate %s s "
               "(%s workers, after %s unmeasured warm-up tunnels), RTT %s s, memory run %s "
               "tunnels held %s s, concurrency run %s tunnels held %s s; socksload --timeout "
               "%s s. Run took %s s. Client: build/socksload for every figure." % (
                   m.get("rounds"), m.get("isolation"), m.get("tp_seconds"),
                   m.get("rate_seconds"), m.get("rate_workers"), m.get("warmup_tunnels"),
                   m.get("rtt_seconds"),
                   m.get("mem_tunnels"), m.get("mem_hold"), m.get("big_tunnels"),
                   m.get("big_hold"), m.get("timeout"), m.get("elapsed")))
    if m.get("udp_seconds"):
        out.append("")
        out.append("Figure 10 (UDP ASSOCIATE): %s s per run, %s datagrams in flight per "
                   "association, a datagram not echoed within %s s counts as lost." % (
                       m.get("udp_seconds"), m.get("udp_window"), m.get("udp_loss_timeout")))
    out.append("")
    out.append("### Medians")
    out.append("")
    out.append(summary(run))
    out.append("")
    out.append("### Every figure")
    out.append("")
    out.append("Median of the rounds; \"every round\" lists the rounds in order (fail: the "
               "measurement failed; n/a: does not apply). x direct: median / direct's median. "
               "x best peer: median / the best median among the peers (%s) for that figure, "
               "best meaning highest for throughput and rates, lowest for CPU, latency and "
               "memory. Errors: socksload's error count summed over the rounds. "
               "Method: docs/benchmarks.md." % (", ".join(s for s in run.servers
                                                       if is_peer(s)) or "none"))
    out.append("")
    out.append(table(run))
    out.append("")
    sc = scrape_section(run)
    if sc:
        out.append("### 8. Scraping: short tunnels from a /64")
        out.append("")
        out.append(sc)
        out.append("")
    ur = udprate_section(run, udprate_rates)
    if ur:
        out.append("### 12. UDP: the loss knee (open loop)")
        out.append("")
        out.append("%s associations, %s s per rate, a datagram not echoed %s s after its "
                   "association's last send is lost; the knee is the highest rate that, with "
                   "every lower one, lost < 0.1 %% at a send rate of at least 0.95 of the asked "
                   "one." % (m.get("udprate_tunnels"), m.get("udprate_seconds"),
                             m.get("udprate_loss_timeout")))
        out.append("")
        out.append(ur)
    hg = huge_section(run)
    if hg:
        out.append("### 11. Many idle tunnels on one node")
        out.append("")
        out.append(hg)
        out.append("")
    out.append("### Targets")
    out.append("")
    out.append("ringsocks' median divided by each peer's median (and the absolute figures "
               "where a ratio would say nothing).")
    out.append("")
    out.append(targets(run))
    out.append("")
    if made:
        out.append("### Plots")
        out.append("")
        for name, f in made:
            out.append("![%s](%s)" % (name, f))
        out.append("")
    if notes:
        out.append("### Notes")
        out.append("")
        for n in notes:
            out.append("- " + n)
        out.append("")
    with open(prefix + ".md", "w") as f:
        f.write("\n".join(out))
    sys.stdout.write("\n".join(out))
    if warn:
        sys.stderr.write("bench: warning: %s\n" % warn)


if __name__ == "__main__":
    main()
