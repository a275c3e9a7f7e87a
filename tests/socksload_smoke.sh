#!/usr/bin/env bash
# tests/socksload_smoke.sh - every socksload mode against build/ringsocks on loopback.
#
# Starts two ringsocks instances (no auth; --auth password with a users file), runs each
# mode for about a second through socks5, socks5h (target localhost), socks4, socks4a and
# user:pass, and checks the JSON: zero errors, non-zero work. Then puts a tiny Python relay
# that flips one byte per direction in front of the proxy and checks that socksload counts
# data mismatches. Stops everything it started by PID. Last line: "N passed, N failed".
# Usage: BUILD=build tests/socksload_smoke.sh   (needs $BUILD/ringsocks and $BUILD/socksload)
set -u
BUILD=${BUILD:-build}
SL=$BUILD/socksload
RS=$BUILD/ringsocks
TMP=$(mktemp -d)
PIDS=()
pass=0
fail=0

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

for b in "$SL" "$RS"; do
    [ -x "$b" ] || { echo "missing $b (make $b)"; echo "0 passed, 1 failed"; exit 1; }
done

# start_ringsocks NAME ARGS...: starts it, waits for "listening on 127.0.0.1:PORT", prints PORT.
start_ringsocks() {
    local name=$1; shift
    "$RS" --listen 127.0.0.1:0 --admin off --access-log off "$@" </dev/null >/dev/null 2>"$TMP/$name.err" &
    echo $! >"$TMP/$name.pid"
    for _ in $(seq 50); do
        port=$(sed -n 's/^ringsocks: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/$name.err" | head -1)
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.1
    done
    cat "$TMP/$name.err" >&2
    return 1
}

ok()  { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && echo "     $2"; }

# check NAME EXPR -- socksload args: runs it with --json and evaluates EXPR (Python, j = JSON).
check() {
    local name=$1 expr=$2; shift 3
    local out
    out=$(timeout 60 "$SL" "$@" --json 2>"$TMP/sl.err")
    if python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$out" "$expr" 2>/dev/null; then
        ok "$name"
    else
        bad "$name" "socksload $* -> ${out:-no output} $(head -c 300 "$TMP/sl.err")"
    fi
}
CLEAN='j["errors"]["total"] == 0 and j["units"] > 0'

P=$(start_ringsocks plain) || { bad "start ringsocks"; echo "$pass passed, $fail failed"; exit 1; }
PIDS+=("$(cat "$TMP/plain.pid")")

HASH=$(python3 -W ignore -c 'import crypt; print(crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_SHA512)))')
echo "alice:$HASH" >"$TMP/users"
PA=$(start_ringsocks auth --auth password --users "$TMP/users") || { bad "start ringsocks --auth password"; echo "$pass passed, $fail failed"; exit 1; }
PIDS+=("$(cat "$TMP/auth.pid")")

S5=socks5://127.0.0.1:$P
D="--duration 1"
check "throughput down, socks5"            "$CLEAN and j['bytes_down'] > 0" -- throughput --proxy "$S5" --tunnels 2 $D
check "throughput up, socks5"              "$CLEAN and j['bytes_up'] > 0"   -- throughput --proxy "$S5" --tunnels 2 --direction up $D
check "throughput both, socks5h localhost" "$CLEAN and j['bytes_up'] > 0 and j['bytes_down'] > 0" -- throughput --proxy "socks5h://127.0.0.1:$P" --target localhost --direction both $D
check "throughput --count 64M"             "$CLEAN and j['bytes_down'] >= 64 << 20" -- throughput --proxy "$S5" --tunnels 2 --count 64M
check "connrate, socks5"                   "$CLEAN" -- connrate --proxy "$S5" --workers 8 $D
check "connrate, socks4"                   "$CLEAN" -- connrate --proxy "socks4://127.0.0.1:$P" --workers 8 --request 1000 --response 5000 $D
check "connrate, socks4a localhost"        "$CLEAN" -- connrate --proxy "socks4a://127.0.0.1:$P" --target localhost --workers 8 $D
check "connrate --count 500"               "$CLEAN and j['units'] == 500" -- connrate --proxy "$S5" --workers 8 --count 500
check "hold, socks5"                       "$CLEAN and j['units'] == 50" -- hold --proxy "$S5" --tunnels 50 $D
check "latency, socks5h localhost"         "$CLEAN and j['latency_us']['p99'] > 0" -- latency --proxy "socks5h://127.0.0.1:$P" --target localhost $D
check "udp, socks5"                        "$CLEAN and j['latency_us']['p50'] > 0" -- udp --proxy "$S5" --tunnels 2 $D
# 256 datagrams in flight: echoes come back in any order relative to send completions, and
# every one must still find its slot (and no socket on the way may overflow).
check "udp, 4 tunnels x window 64"         "$CLEAN and j['units'] > 256" -- udp --proxy "$S5" --tunnels 4 --window 64 $D
check "connrate, user:pass"                "$CLEAN" -- connrate --proxy "socks5://alice:s3cret@127.0.0.1:$PA" --workers 8 $D
check "latency, user:pass socks5h"         "$CLEAN" -- latency --proxy "socks5h://alice:s3cret@127.0.0.1:$PA" --target localhost $D
check "wrong password counted as auth"     'j["errors"]["auth"] > 0 and j["units"] == 0' -- connrate --proxy "socks5://alice:wrong@127.0.0.1:$PA" --workers 2 $D
check "no credentials counted as auth"     'j["errors"]["auth"] > 0' -- connrate --proxy "socks5://127.0.0.1:$PA" --workers 2 $D
check "refused target counted by code"     'j["errors"]["socks_reply"] > 0 and j["errors"]["socks_reply_codes"].get("5", 0) > 0' -- connrate --proxy "$S5" --target 127.0.0.1:1 --workers 2 $D

# A relay that flips one byte at offset 1 MiB of each direction of each connection.
cat >"$TMP/flip.py" <<'PY'
import socket, sys, threading
up = int(sys.argv[1])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(64)
print(ls.getsockname()[1], flush=True)
def pipe(a, b):
    n = 0
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            if n <= (1 << 20) < n + len(d):
                i = (1 << 20) - n
                d = d[:i] + bytes([d[i] ^ 0x5a]) + d[i + 1:]
            n += len(d)
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
def serve(c):
    u = socket.create_connection(("127.0.0.1", up))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
python3 "$TMP/flip.py" "$P" </dev/null >"$TMP/flip.port" 2>/dev/null &
PIDS+=("$!")
for _ in $(seq 50); do [ -s "$TMP/flip.port" ] && break; sleep 0.1; done
F=$(cat "$TMP/flip.port")
check "corrupting relay caught, down" 'j["errors"]["data_mismatch"] > 0' -- throughput --proxy "socks5://127.0.0.1:$F" --tunnels 2 $D
check "corrupting relay caught, up"   'j["errors"]["data_mismatch"] > 0' -- throughput --proxy "socks5://127.0.0.1:$F" --tunnels 2 --direction up $D
check "corrupting relay caught, both" 'j["errors"]["data_mismatch"] > 0' -- throughput --proxy "socks5://127.0.0.1:$F" --tunnels 2 --direction both $D

# Safety: nothing but loopback without --allow-nonlocal (exit status 2, nothing sent).
for args in "--proxy socks5://192.0.2.1:1080" "--proxy $S5 --target 192.0.2.1:80" \
            "--proxy socks5h://127.0.0.1:$P --target example.com:80"; do
    timeout 10 "$SL" latency $args --duration 1 >/dev/null 2>&1
    rc=$?
    if [ "$rc" = 2 ]; then ok "refused: $args"; else bad "refused: $args" "exit status $rc, want 2"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
