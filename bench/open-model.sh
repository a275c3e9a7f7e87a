#!/bin/bash
# bench/open-model.sh - the open model side by side: socksload connrate --rate RATE against
# ringsocks and Dante in turn, ROUNDS times, on loopback (docs/benchmarks.md, "Open model").
#   RATE=1000 DUR=5 ROUNDS="1 2 3" bench/open-model.sh [extra socksload options]
# Needs danted (tools/install-deps.sh bench). Stops what it started, by PID.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
SL=$(realpath "${SL:-$here/build/socksload}")
RS=$(realpath "${RS:-$here/build/ringsocks}")
RATE=${RATE:-1000}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-1 2 3}
command -v danted >/dev/null || { echo "danted is missing: tools/install-deps.sh bench" >&2; exit 2; }
D=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$D"' EXIT
cat >"$D/dante.conf" <<EOC
logoutput: $D/dante.log
internal: 127.0.0.1 port = 19190
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
user.libwrap: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }
EOC
"$RS" --listen 127.0.0.1:19191 --access-log off --admin off >"$D/rs.log" 2>&1 &
pids+=($!)
TMPDIR=$D danted -f "$D/dante.conf" -p "$D/danted.pid" >"$D/danted.out" 2>&1 &
pids+=($!)
"$SL" serve --port 19192 >"$D/serve.log" 2>&1 &
pids+=($!)
sleep 1
[ -s "$D/danted.pid" ] && pids+=("$(cat "$D/danted.pid")")
for round in $ROUNDS; do
    for srv in ringsocks:19191 dante:19190; do
        echo "=== round $round ${srv%%:*} rate $RATE/s ${DUR}s"
        "$SL" connrate --proxy "socks5://127.0.0.1:${srv##*:}" --target 127.0.0.1:19192 \
            --rate "$RATE" --duration "$DUR" "$@" 2>&1 | grep -v '^\['
    done
done
