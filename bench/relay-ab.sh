#!/usr/bin/env bash
# bench/relay-ab.sh - the relay data path of two or more ringsocks binaries side by side in one
# run: per relay engine, 1-tunnel and 16-tunnel download throughput with the proxy's own CPU per
# GB, and the short-tunnel rate with its CPU per 1,000 tunnels. Interleaved rounds (the order of
# the binaries rotates), medians. build/socksload is the client and `socksload serve --threads 2`
# the target. Re-executes itself in a private network namespace (unshare -n), so fixed loopback
# ports and TIME_WAIT never touch the host. Made for A/B checks of a change (docs/benchmarks.md,
# "Slow readers"); `make bench` is the full comparison with peers.
#   bench/relay-ab.sh old=/tmp/old/build/ringsocks new=build/ringsocks
#   ROUNDS=5 SECONDS_EACH=3 ENGINES="copy auto" FIGS="tp1 tp16 rate tclose" bench/relay-ab.sh a=BIN b=BIN ...
# FIGS (default "tp1 tp16 rate"): tclose is the short-tunnel rate with the target closing
# first (connrate --close target), as figure 9 of make bench.
# A BINARY may be a wrapper script that adds options (bench/limits-cost.sh makes such);
# PROXY_USERINFO="user:password@" logs every tunnel in (RFC 1929) when they ask for it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
if [ $# -lt 1 ]; then
    echo "usage: $0 NAME=BINARY [NAME=BINARY ...]" >&2
    exit 2
fi
if [ "${AB_IN_NS:-}" != 1 ]; then
    make -s build/socksload
    exec env AB_IN_NS=1 unshare -n "$0" "$@"
fi
ip link set lo up
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_EACH:-3}
ENGINES=${ENGINES:-copy auto}
FIGS=${FIGS:-tp1 tp16 rate}
B=build
bench_scratch

# utime + stime of a process and all its threads, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

$B/socksload serve --port 19000 --threads 2 >/dev/null 2>&1 & pids+=($!)
names=()
declare -A pid_of
port=19100
for spec in "$@"; do
    name=${spec%%=*}
    bin=${spec#*=}
    names+=("$name")
    for e in $ENGINES; do
        "$bin" --listen 127.0.0.1:$port --shards 2 --relay "$e" --admin off --access-log off \
            2>"$tmp/$name-$e.err" &
        pids+=($!)
        pid_of[$name-$e]=$!
        echo "$name-$e $port" >>"$tmp/ports"
        port=$((port + 1))
    done
done
sleep 0.5
hz=$(getconf CLK_TCK)
n=${#names[@]}
for round in $(seq "$ROUNDS"); do
    for k in $(seq 0 $((n - 1))); do
        name=${names[$(((k + round - 1) % n))]}
        for e in $ENGINES; do
            p=$(awk -v s="$name-$e" '$1 == s { print $2 }' "$tmp/ports")
            pid=${pid_of[$name-$e]}
            for fig in $FIGS; do
                case $fig in
                tp1) a=(throughput --tunnels 1 --threads 1) ;;
                tp16) a=(throughput --tunnels 16 --threads 2) ;;
                rate) a=(connrate --workers 64 --threads 2) ;;
                tclose) a=(connrate --workers 64 --threads 2 --close target) ;;
                *)
                    echo "relay-ab: unknown figure $fig (FIGS: tp1 tp16 rate tclose)" >&2
                    exit 2
                    ;;
                esac
                t0=$(ticks "$pid")
                # socksload exits 1 when a run had errors; the JSON still says how many.
                line=$($B/socksload "${a[@]}" --proxy socks5://"${PROXY_USERINFO:-}"127.0.0.1:"$p" \
                    --target 127.0.0.1:19000 --duration "$SECS" --timeout 5 --json || true)
                t1=$(ticks "$pid")
                echo "$name $e $fig $(((t1 - t0))) $hz $line" >>"$tmp/results"
                echo "relay-ab: round $round/$ROUNDS: $name $e $fig: cpu $((t1 - t0)) ticks" >&2
            done
        done
    done
done
python3 - "$tmp/results" "$ROUNDS" "$SECS" "${names[@]}" <<'PY'
import json, statistics, sys
path, rounds, secs, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = {}
for line in open(path):
    name, eng, fig, ticks, hz, js = line.split(" ", 5)
    r = json.loads(js)
    cpu = int(ticks) / int(hz)
    if fig in ("rate", "tclose"):
        v, c = r["rate"], cpu / max(r["tunnels"], 1) * 1000
    else:
        v, c = r["gbps"], cpu / max(r["bytes_down"] / 1e9, 1e-9)
    rows.setdefault((eng, fig), {}).setdefault(name, []).append((v, c, r["errors"]["total"]))
what = {"tp1": ("1 tunnel, Gbit/s", "proxy CPU s/GB"),
        "tp16": ("16 tunnels, Gbit/s", "proxy CPU s/GB"),
        "rate": ("short tunnels/s (64 workers)", "proxy CPU s/1000 tunnels"),
        "tclose": ("short tunnels/s, target closes first", "proxy CPU s/1000 tunnels")}
print("%s rounds of %s s, medians (every round in brackets)\n" % (rounds, secs))
print("| engine | figure | " + " | ".join(names) + " |")
print("| --- | --- | " + " | ".join("---:" for _ in names) + " |")
for (eng, fig), by in rows.items():
    for i, label in enumerate(what[fig]):
        cells = []
        for nm in names:
            xs = [x[i] for x in by.get(nm, [])]
            errs = sum(x[2] for x in by.get(nm, []))
            fmt = "%.0f" if (fig in ("rate", "tclose") and i == 0) else "%.3f"
            cell = (fmt % statistics.median(xs)) if xs else "n/a"
            cell += " (" + ", ".join(fmt % x for x in xs) + ")"
            if errs:
                cell += " errors %d" % errs
            cells.append(cell)
        print("| %s | %s | %s |" % (eng, label, " | ".join(cells)))
PY
