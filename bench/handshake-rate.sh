#!/usr/bin/env bash
# bench/handshake-rate.sh - short-tunnel rate through ringsocks side by side in one run:
# no auth, username/password (RFC 1929), and CONNECT by name (localhost), interleaved rounds,
# medians and ratios to the no-auth rate, with build/socksload as the client. Re-executes itself
# in a private network namespace (unshare -n) so fixed loopback ports and TIME_WAIT never touch
# the host. The macro benchmark (make bench, figure 6) measures the same against the peers.
#   ROUNDS=5 SECONDS_EACH=3 WORKERS=64 bench/handshake-rate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
if [ "${HR_IN_NS:-}" != 1 ]; then
    make -s build/ringsocks build/socksload
    exec env HR_IN_NS=1 unshare -n "$0" "$@"
fi
ip link set lo up
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_EACH:-3}
WORKERS=${WORKERS:-64}
B=build
bench_scratch
hash=$(python3 -c "import crypt; print(crypt.crypt('benchpass', crypt.mksalt(crypt.METHOD_SHA512)))")
echo "bench:$hash" >"$tmp/users"
$B/socksload serve --port 19000 --threads 2 >/dev/null 2>&1 & pids+=($!)
$B/ringsocks --listen 127.0.0.1:19080 --shards 2 --admin off 2>"$tmp/r1.err" & pids+=($!)
$B/ringsocks --listen 127.0.0.1:19081 --shards 2 --admin off --auth password --users "$tmp/users" \
    2>"$tmp/r2.err" & pids+=($!)
sleep 0.5
modes="none password name"
for round in $(seq "$ROUNDS"); do
    for mode in $modes; do
        case $mode in
        none) a=(--proxy socks5://127.0.0.1:19080 --target 127.0.0.1:19000) ;;
        password) a=(--proxy socks5://bench:benchpass@127.0.0.1:19081 --target 127.0.0.1:19000) ;;
        name) a=(--proxy socks5h://127.0.0.1:19080 --target localhost:19000) ;;
        esac
        # socksload exits 1 when a run had errors; the JSON still says how many.
        line=$($B/socksload connrate "${a[@]}" --workers "$WORKERS" --threads 2 \
            --duration "$SECS" --timeout 5 --json || true)
        echo "$mode $line" >>"$tmp/results"
        echo "handshake-rate: round $round/$ROUNDS: $mode: $line" >&2
    done
done
python3 - "$tmp/results" "$ROUNDS" "$SECS" "$WORKERS" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, js = line.split(" ", 1)
    rows.setdefault(mode, []).append(json.loads(js))
for rs in rows.values():
    for r in rs:  # socksload's JSON: latency_us.{p50,p99} (null: no samples), errors.total
        lat = r["latency_us"]
        r["p50_us"], r["p99_us"] = (float("nan") if lat[k] is None else lat[k] for k in ("p50", "p99"))
        r["errors"] = r["errors"]["total"]
base = statistics.median(r["rate"] for r in rows["none"])
print("| handshake | median tunnels/s | rounds | x no-auth | p50 us | p99 us | errors |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
for mode, label in (("none", "no auth, IPv4"), ("password", "username/password, IPv4"),
                    ("name", "no auth, name (localhost)")):
    rs = rows[mode]
    med = statistics.median(r["rate"] for r in rs)
    print("| %s | %.0f | %s | %.2f | %.0f | %.0f | %d |" % (
        label, med, " ".join("%.0f" % r["rate"] for r in rs), med / base,
        statistics.median(r["p50_us"] for r in rs), statistics.median(r["p99_us"] for r in rs),
        sum(r["errors"] for r in rs)))
print("\n%s rounds x %s s, %s workers (socksload, 2 threads), 2 shards; one password (sha512-crypt) checked once per "
      "shard, then answered from the shard's digest cache." % (sys.argv[2], sys.argv[3], sys.argv[4]))
PY
