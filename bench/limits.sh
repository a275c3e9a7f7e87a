#!/usr/bin/env bash
# bench/limits.sh - what the per-user limits of issue #12 cost, and how exact the bandwidth
# limit is (docs/benchmarks.md, "Limits").
#
#  cost:  bench/relay-ab.sh over three configurations of the same binary, every tunnel logged
#         in as one user: `plain` (users, no limits), `counted` (max_conns, rate and a client
#         limit configured, none reached) and `bw` (the same plus bandwidth limits of 100 GB/s
#         per direction: every read asks the buckets, none ever waits).
#  exact: one user with bw_down=RATE; socksload throughput with 1, 10 and 100 tunnels for
#         WINDOW seconds, ROUNDS times each; achieved bytes / (RATE x WINDOW), per round.
#
#   bench/limits.sh                     both parts
#   PARTS=exact RATE=20000000 WINDOW=10 ROUNDS=3 bench/limits.sh
# Runs in a private network namespace (unshare -n): loopback only, fixed ports are safe.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
PARTS=${PARTS:-cost exact}
RATE=${RATE:-20000000}
WINDOW=${WINDOW:-10}
ROUNDS=${ROUNDS:-3}
if [ "${LIM_IN_NS:-}" != 1 ]; then
    make -s build/ringsocks build/socksload
    exec env LIM_IN_NS=1 unshare -n "$0" "$@"
fi
ip link set lo up
bench_scratch

hash=$(bench_hash bench-pw)
printf 'alice:%s\n' "$hash" >"$tmp/users"

if [[ " $PARTS " == *" cost "* ]]; then
    bin=$PWD/build/ringsocks
    counted='max_conns=1000000 rate=1000000 burst=1000000'
    printf '#!/bin/sh\nexec %s --auth password --users %s "$@"\n' "$bin" "$tmp/users" \
        >"$tmp/plain"
    printf '#!/bin/sh\nexec %s --auth password --users %s --user-limits "%s" --client-limits "max_conns=1000000" "$@"\n' \
        "$bin" "$tmp/users" "$counted" >"$tmp/counted"
    printf '#!/bin/sh\nexec %s --auth password --users %s --user-limits "%s bw_up=100G bw_down=100G" --client-limits "max_conns=1000000" "$@"\n' \
        "$bin" "$tmp/users" "$counted" >"$tmp/bw"
    chmod +x "$tmp/plain" "$tmp/counted" "$tmp/bw"
    echo "## cost of limits configured but not reached"
    PROXY_USERINFO="alice:bench-pw@" bench/relay-ab.sh plain="$tmp/plain" counted="$tmp/counted" \
        bw="$tmp/bw"
fi

if [[ " $PARTS " == *" exact "* ]]; then
    build/socksload serve --port 19300 --threads 2 >/dev/null 2>&1 &
    pids+=($!)
    for engine in splice copy; do
        printf 'alice:%s bw_down=%s\n' "$hash" "$RATE" >"$tmp/users-$engine"
        build/ringsocks --listen 127.0.0.1:19301 --shards 2 --relay "$engine" --admin off \
            --access-log off --auth password --users "$tmp/users-$engine" 2>"$tmp/err" &
        rp=$!
        pids+=($rp)
        sleep 0.5
        echo "## bw_down=$RATE B/s, relay $engine, ${WINDOW}s windows: achieved / configured"
        echo "| tunnels | rounds | median |"
        echo "| ---: | --- | ---: |"
        for n in 1 10 100; do
            rs=()
            for r in $(seq "$ROUNDS"); do
                line=$(build/socksload throughput --tunnels "$n" --threads 2 \
                    --proxy socks5://alice:bench-pw@127.0.0.1:19301 --target 127.0.0.1:19300 \
                    --duration "$WINDOW" --timeout 10 --json || true)
                rs+=("$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.4f" % (r["bytes_down"] / r["seconds"] / float(sys.argv[2])))' "$line" "$RATE")")
            done
            med=$(printf '%s\n' "${rs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            echo "| $n | ${rs[*]} | $med |"
        done
        kill "$rp"
        wait "$rp" 2>/dev/null || true
    done
fi
