#!/usr/bin/env bash
# bench/upgrade.sh - binary upgrades under load: UPGRADES SIGUSR2s spaced through a socksload
# connrate run, then through a throughput run, with build/socksload as the client and its own
# error counts as the verdict (refused = connect errors, reset, timeout, closed early, SOCKS
# replies other than success, data that differs). The handshake rate of a run without upgrades
# first, for comparison. Each SIGUSR2 goes to the process the pid_file names, and the next waits
# until the pid_file names the new one (or a failure is logged). Re-executes itself in a private
# network namespace (unshare -n) so fixed loopback ports and TIME_WAIT never touch the host.
#   UPGRADES=10 SECONDS_EACH=20 WORKERS=64 TUNNELS=16 bench/upgrade.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${UP_IN_NS:-}" != 1 ]; then
    make -s build/ringsocks build/socksload
    exec env UP_IN_NS=1 unshare -n "$0" "$@"
fi
ip link set lo up
UPGRADES=${UPGRADES:-10}
SECS=${SECONDS_EACH:-20}
WORKERS=${WORKERS:-64}
TUNNELS=${TUNNELS:-16}
B=$PWD/build
tmp=$(mktemp -d)
pids=()
cleanup() {
    # Every ringsocks the upgrades started named itself in the pid_file at some point.
    for p in "${pids[@]}" $(cat "$tmp/seen" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
$B/socksload serve --port 19000 --threads 2 >/dev/null 2>&1 & pids+=($!)
# drain_timeout above the run: a throughput tunnel stays with the process it was opened on.
$B/ringsocks --listen 127.0.0.1:19080 --shards 2 --admin 127.0.0.1:19180 --access-log off \
    --drain-timeout $((SECS + 30)) --pid-file "$tmp/pid" 2>"$tmp/ringsocks.err" & pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
cat "$tmp/pid" >>"$tmp/seen"

# UPGRADES SIGUSR2s, one every SECS/(UPGRADES+2) s, each waiting for its hand-over.
upgrade_loop() {
    local gap ok=0 failed=0
    gap=$(python3 -c "print($SECS / ($UPGRADES + 2))")
    for i in $(seq "$UPGRADES"); do
        sleep "$gap"
        local old new
        old=$(cat "$tmp/pid")
        kill -USR2 "$old"
        for _ in $(seq 200); do
            new=$(cat "$tmp/pid" 2>/dev/null || true)
            [ -n "$new" ] && [ "$new" != "$old" ] && break
            grep -q "upgrade failed" "$tmp/ringsocks.err" && break
            sleep 0.05
        done
        if [ -n "$new" ] && [ "$new" != "$old" ]; then
            ok=$((ok + 1))
            echo "$new" >>"$tmp/seen"
        else
            failed=$((failed + 1))
        fi
    done
    echo "$ok $failed"
}

run() { # name, socksload arguments...
    local name=$1
    shift
    # socksload exits 1 when a run had errors; the JSON still says how many.
    $B/socksload "$@" --proxy socks5://127.0.0.1:19080 --target 127.0.0.1:19000 --threads 2 \
        --duration "$SECS" --timeout 5 --json >"$tmp/$name.json" || true
}

SECS_BASE=5
$B/socksload connrate --proxy socks5://127.0.0.1:19080 --target 127.0.0.1:19000 --threads 2 \
    --workers "$WORKERS" --duration $SECS_BASE --timeout 5 --json >"$tmp/base.json" || true
echo "upgrade: baseline connrate done" >&2

run connrate connrate --workers "$WORKERS" &
lp=$!
read -r c_ok c_failed < <(upgrade_loop)
wait $lp
echo "upgrade: connrate run done: $c_ok upgrades, $c_failed failed" >&2

run throughput throughput --tunnels "$TUNNELS" &
lp=$!
read -r t_ok t_failed < <(upgrade_loop)
wait $lp
echo "upgrade: throughput run done: $t_ok upgrades, $t_failed failed" >&2

python3 - "$tmp" "$c_ok" "$c_failed" "$t_ok" "$t_failed" "$SECS" "$WORKERS" "$TUNNELS" <<'PY'
import json, sys
tmp, c_ok, c_failed, t_ok, t_failed, secs, workers, tunnels = sys.argv[1:]
def load(name):
    return json.load(open("%s/%s.json" % (tmp, name)))
base, cr, tp = load("base"), load("connrate"), load("throughput")
def errs(r):
    e = r["errors"]
    refused = e["connect"]
    reset = e["reset"] + e["closed"]
    other = e["total"] - refused - reset
    return refused, reset, other, e
print("| run | upgrades ok / failed | units | rate | refused (connect) | reset or closed early | other errors |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for name, r, ok, failed in (("connrate, no upgrade (5 s)", base, "-", "-"),
                            ("connrate, %s s" % secs, cr, c_ok, c_failed),
                            ("throughput, %s s" % secs, tp, t_ok, t_failed)):
    refused, reset, other, e = errs(r)
    rate = ("%.0f tunnels/s" % r["rate"]) if r["mode"] == "connrate" else ("%.2f Gbit/s" % r["gbps"])
    units = ("%d tunnels" % r["units"]) if r["mode"] == "connrate" else (
        "%.1f GB" % ((r["bytes_up"] + r["bytes_down"]) / 1e9))
    print("| %s | %s / %s | %s | %s | %d | %d | %d |" % (name, ok, failed, units, rate, refused, reset, other))
print()
print("connrate: %s workers, handshake rate during the upgrades %.0f/s vs %.0f/s without (%.2fx); "
      "throughput: %s tunnels opened at the start, every byte verified by socksload." % (
          workers, cr["rate"], base["rate"], cr["rate"] / base["rate"] if base["rate"] else 0, tunnels))
bad = sum(errs(r)[0] + errs(r)[1] + errs(r)[2] for r in (cr, tp))
sys.exit(1 if bad or int(c_failed) or int(t_failed) else 0)
PY
