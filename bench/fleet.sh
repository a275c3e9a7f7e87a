#!/usr/bin/env bash
# bench/fleet.sh - what a fleet's Redis costs, and what a Redis outage loses (docs/benchmarks.md,
# "A fleet through Redis").
#
#  cost:    bench/relay-ab.sh over two configurations of the same binary, every tunnel logged
#           in as one user with max_conns and rate configured and never reached: `local` (no
#           Redis) and `fleet` (the same with --redis: every tunnel is admitted on a lease, and
#           the leases and tokens are renewed through a real redis-server).
#  outage:  two nodes share max_conns=LIMIT for one user; node a holds HOLD tunnels; Redis is
#           killed (SIGKILL, no persistence: every key gone) and started again; node b then
#           opens as many tunnels as it can. Excess = a's + b's - LIMIT, per round: the places
#           the restart lost (0 when a's renewal reached the new Redis before b asked).
#
#   bench/fleet.sh                         both parts
#   PARTS=outage ROUNDS=10 LOGS=/tmp/fleet-logs bench/fleet.sh
# Runs in a private network namespace (unshare -n): loopback only, fixed ports are safe.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
PARTS=${PARTS:-cost outage}
ROUNDS=${ROUNDS:-10}
LIMIT=${LIMIT:-20}
HOLD=${HOLD:-8}
if [ "${FLEET_IN_NS:-}" != 1 ]; then
    make -s build/ringsocks build/socksload
    exec env FLEET_IN_NS=1 unshare -n "$0" "$@"
fi
ip link set lo up
command -v redis-server >/dev/null || {
    echo "bench/fleet.sh: redis-server is not installed (tools/install-deps.sh test)" >&2
    exit 1
}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # LOGS=DIR keeps the nodes' stderr and Redis's log.
    if [ -n "${LOGS:-}" ]; then cp "$tmp"/err-* "$tmp"/redis.log "$LOGS"/ 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

redis-server --port 19379 --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --logfile "$tmp/redis.log" --dir "$tmp" &
pids+=($!)
sleep 0.3

hash=$(bench_hash bench-pw)

if [[ " $PARTS " == *" cost "* ]]; then
    printf 'alice:%s max_conns=1000000 rate=1000000 burst=1000000\n' "$hash" >"$tmp/users"
    bin=$PWD/build/ringsocks
    printf '#!/bin/sh\nexec %s --auth password --users %s "$@"\n' "$bin" "$tmp/users" \
        >"$tmp/local"
    printf '#!/bin/sh\nexec %s --auth password --users %s --redis 127.0.0.1:19379 --redis-node n1 "$@"\n' \
        "$bin" "$tmp/users" >"$tmp/fleet"
    chmod +x "$tmp/local" "$tmp/fleet"
    echo "## cost of a fleet's leases (limits configured, never reached)"
    redis-cli -p 19379 CONFIG RESETSTAT >/dev/null
    AB_IN_NS=1 PROXY_USERINFO="alice:bench-pw@" bench/relay-ab.sh local="$tmp/local" \
        fleet="$tmp/fleet"
    echo "Redis calls during the run (INFO commandstats):"
    redis-cli -p 19379 INFO commandstats | grep -E 'cmdstat_(fcall|get|hgetall)' || true
fi

if [[ " $PARTS " == *" outage "* ]]; then
    printf 'alice:%s max_conns=%s\n' "$hash" "$LIMIT" >"$tmp/users-o"
    build/socksload serve --port 19300 --threads 1 >/dev/null 2>&1 &
    pids+=($!)
    echo "## Redis killed and restarted empty: places lost (max_conns=$LIMIT, a holds $HOLD)"
    echo "| redis_fallback | rounds | a held | excess per round | max excess |"
    echo "| --- | ---: | ---: | --- | ---: |"
    for fb in closed open; do
    nodes=()
    for n in a b; do
        port=$([ "$n" = a ] && echo 19301 || echo 19302)
        build/ringsocks --listen 127.0.0.1:$port --shards 2 --admin off --access-log off \
            --auth password --users "$tmp/users-o" --redis 127.0.0.1:19379 --redis-node "$n" \
            --redis-interval 200 --redis-fallback "$fb" 2>"$tmp/err-$n-$fb" &
        nodes+=($!)
    done
    pids+=("${nodes[@]}")
    sleep 2 # the nodes' first grace (a new Redis gives no new places at once)
    python3 - "$ROUNDS" "$LIMIT" "$HOLD" "$tmp" "$fb" <<'PY'
import os, signal, socket, struct, subprocess, sys, time
rounds, limit, hold, tmp, fb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], \
    sys.argv[5]

def tunnel(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"\x05\x01\x02")
    assert s.recv(2) == b"\x05\x02"
    u, p = b"alice", b"bench-pw"
    s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
    assert s.recv(2) == b"\x01\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", 19300))
    r = s.recv(10)
    if len(r) < 2 or r[1] != 0:
        s.close()
        return None
    return s

def redis(*args):
    return subprocess.run(["redis-cli", "-p", "19379"] + list(args), capture_output=True,
                          text=True).stdout.strip()

def redis_pid():
    out = subprocess.run(["ss", "-Hltnp", "sport = :19379"], capture_output=True, text=True).stdout
    return int(out.split("pid=")[1].split(",")[0]) if "pid=" in out else None

excess, gaps = [], []
for r in range(rounds):
    held_a = [s for s in (tunnel(19301) for _ in range(hold)) if s]
    time.sleep(0.5)
    pid = redis_pid()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    subprocess.Popen(["redis-server", "--port", "19379", "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--daemonize", "no", "--dir", tmp,
                      "--logfile", tmp + "/redis.log"])
    t0 = time.monotonic()
    while redis("PING") != "PONG" and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    gaps.append(time.monotonic() - t0)
    # b asks at once: it may be granted places a still holds but has not told the new Redis.
    held_b = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and len(held_b) < limit:
        s = tunnel(19302)
        if s:
            held_b.append(s)
        else:
            time.sleep(0.02)
    excess.append(max(0, len(held_a) + len(held_b) - limit))
    for s in held_a + held_b:
        s.close()
    time.sleep(3.0)  # both nodes give their places back; the restart's grace ends
print("| %s | %d | %d | %s | %d |" % (fb, rounds, hold, " ".join(map(str, excess)), max(excess)))
PY
    for p in "${nodes[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
    done
    # The last Redis was started by the script above: it is in this namespace, and goes with it.
    pids+=($(ss -Hltnp 'sport = :19379' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1))
fi
