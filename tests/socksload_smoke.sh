#!/usr/bin/env bash
# tests/socksload_smoke.sh - every socksload mode against build/ringsocks on loopback.
#
# Starts two ringsocks instances (no auth; --auth password with a users file), runs each
# mode for about a second through socks5, socks5h (target localhost), socks4, socks4a and
# user:pass, and checks the JSON and the exit status: zero errors, non-zero work, exactly the
# --count asked for. Runs connrate's open model (--rate) through ringsocks and against a tiny
# Python SOCKS5 server that stalls every handshake 300 ms (the stall must show as latency). Runs throughput and connrate against `socksload serve --socks5` alone. Then puts tiny Python relays in front of the proxy that flip one byte of
# the upload, of the download or of both, and checks that socksload counts each corruption,
# once, whoever finds it (the client, or the embedded target for uploads), also after the stop
# time. Fail fast: a wrong password, a port with nothing listening and a rule denying the
# target (a third ringsocks, with rules) each stop a 10 s run in < 3 s, naming the failure; a
# mixed run does not stop. Stops everything it started by PID. Last line: "N passed, N failed".
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

# start_py VAR NAME SCRIPT ARGS...: starts python3 $TMP/SCRIPT ARGS (a stub server or relay
# below), records its PID, waits for the port it prints first and sets VAR to it (empty when
# none came). Not in $(...): the PID must reach PIDS in this shell, so that cleanup stops it.
start_py() {
    local var=$1 name=$2 script=$3
    shift 3
    python3 "$TMP/$script" "$@" </dev/null >"$TMP/$name.port" 2>/dev/null &
    PIDS+=("$!")
    for _ in $(seq 50); do [ -s "$TMP/$name.port" ] && break; sleep 0.1; done
    printf -v "$var" '%s' "$(cat "$TMP/$name.port")"
}
# The asyncio server the Python SOCKS5 stubs run their handler in: prints its port, serves.
cat >"$TMP/stubserve.py" <<'PY'
import asyncio
def serve(handle):
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await srv.serve_forever()
    asyncio.run(main())
PY

ok()  { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && echo "     $2"; }

# check NAME EXPR -- socksload args: runs it with --json and evaluates EXPR (Python, j = JSON,
# rc = exit status; 124 when timeout(1) stopped it; err = its stderr; secs = how long it ran).
check() {
    local name=$1 expr=$2; shift 3
    local out rc t0
    t0=$(date +%s.%N)
    out=$(timeout 60 "$SL" "$@" --json 2>"$TMP/sl.err")
    rc=$?
    if python3 -c 'import json,sys,time; j=json.loads(sys.argv[1]); rc=int(sys.argv[3]); err=open(sys.argv[4]).read(); secs=time.time()-float(sys.argv[5]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$out" "$expr" "$rc" "$TMP/sl.err" "$t0" 2>/dev/null; then
        ok "$name"
    else
        bad "$name" "socksload $* -> exit $rc, ${out:-no output} $(head -c 300 "$TMP/sl.err")"
    fi
}
# usage NAME -- socksload args: must exit with status 2 (bad usage) at once.
usage() {
    local name=$1; shift 2
    timeout 10 "$SL" "$@" >/dev/null 2>&1
    local rc=$?
    if [ "$rc" = 2 ]; then ok "$name"; else bad "$name" "socksload $* -> exit status $rc, want 2"; fi
}
CLEAN='j["errors"]["total"] == 0 and j["units"] > 0 and rc == 0'

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
check "connrate closes with rst by default" "$CLEAN and j['close'] == 'rst'" -- connrate --proxy "$S5" --workers 8 --count 200
# A plain close: the client's FIN, then ringsocks half-closes towards the target.
check "connrate --close fin --count 500"   "$CLEAN and j['units'] == 500 and j['close'] == 'fin'" -- connrate --proxy "$S5" --workers 8 --count 500 --close fin
# The target closes first (HTTP/1.0): ringsocks carries its FIN to the client, and a tunnel
# counts only once that EOF is in, so 500 units and no error is 500 tunnels the target ended.
check "connrate --close target --count 500" "$CLEAN and j['units'] == 500 and j['tunnels'] == 500 and j['close'] == 'target' and j['phases']['close']['samples'] == 500 and j['errors']['no_eof'] == 0" -- connrate --proxy "$S5" --workers 8 --count 500 --close target
check "connrate --close target, no response" "$CLEAN and j['units'] == 100 and j['bytes_down'] == 0" -- connrate --proxy "$S5" --workers 4 --count 100 --close target --response 0
# More threads than workers: every share of --count must go to a thread that has tunnels.
check "connrate --threads 4 --workers 2 --count 10" "$CLEAN and j['units'] == 10" -- connrate --proxy "$S5" --threads 4 --workers 2 --count 10
# The first message of each tunnel is part of --count too.
check "latency --tunnels 4 --count 50"     "$CLEAN and j['units'] == 50" -- latency --proxy "$S5" --tunnels 4 --count 50
check "latency --threads 3 --tunnels 2 --count 7" "$CLEAN and j['units'] == 7" -- latency --proxy "$S5" --threads 3 --tunnels 2 --count 7
check "hold, socks5"                       "$CLEAN and j['units'] == 50" -- hold --proxy "$S5" --tunnels 50 $D
check "latency, socks5h localhost"         "$CLEAN and j['latency_us']['p99'] > 0" -- latency --proxy "socks5h://127.0.0.1:$P" --target localhost $D
check "udp, socks5"                        "$CLEAN and j['latency_us']['p50'] > 0" -- udp --proxy "$S5" --tunnels 2 $D
# 256 datagrams in flight: echoes come back in any order relative to send completions, and
# every one must still find its slot (and no socket on the way may overflow).
check "udp, 4 tunnels x window 64"         "$CLEAN and j['units'] > 256" -- udp --proxy "$S5" --tunnels 4 --window 64 $D
# --count alone must end the run (no --duration: the default would be an hour).
check "udp --count 100 ends"               "$CLEAN and j['units'] == 100" -- udp --proxy "$S5" --tunnels 2 --count 100
check "udp --count 5 < window"             "$CLEAN and j['units'] == 5" -- udp --proxy "$S5" --tunnels 2 --window 8 --count 5
check "connrate, user:pass"                "$CLEAN" -- connrate --proxy "socks5://alice:s3cret@127.0.0.1:$PA" --workers 8 $D
check "latency, user:pass socks5h"         "$CLEAN" -- latency --proxy "socks5h://alice:s3cret@127.0.0.1:$PA" --target localhost $D
check "wrong password counted as auth"     'j["errors"]["auth"] > 0 and j["units"] == 0' -- connrate --proxy "socks5://alice:wrong@127.0.0.1:$PA" --workers 2 $D
check "no credentials counted as auth"     'j["errors"]["auth"] > 0' -- connrate --proxy "socks5://127.0.0.1:$PA" --workers 2 $D
check "refused target counted by code"     'j["errors"]["socks_reply"] > 0 and j["errors"]["socks_reply_codes"].get("5", 0) > 0 and rc == 1' -- connrate --proxy "$S5" --target 127.0.0.1:1 --workers 2 $D
# Fail fast: every attempt failing the same way stops the run at once (a 10 s --duration
# ends in < 3 s), exit status 1, with one line naming the failure and what to check.
FAST='rc == 1 and secs < 3 and j["tunnels"] == 0 and "stopped early: all " in err'
check "fail fast: wrong password"          "$FAST and 'RFC 1929 auth failed' in err and 'check the user and password' in err and j['failures'][0]['text'].startswith('RFC 1929 auth failed')" -- connrate --proxy "socks5://alice:wrong@127.0.0.1:$PA" --duration 10
# A port with nothing listening: the errno by name and text.
NOPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
check "fail fast: nothing listening"       "$FAST and 'connect: ECONNREFUSED (Connection refused) - is the proxy listening on 127.0.0.1:$NOPORT?' in err and j['failures'][0]['detail'] == 111" -- connrate --proxy "socks5://127.0.0.1:$NOPORT" --duration 10
check "--no-fail-fast runs on"             "rc == 1 and secs >= 1 and j['stopped_early'] is None and j['errors']['connect'] > 0" -- connrate --proxy "socks5://127.0.0.1:$NOPORT" --duration 1 --no-fail-fast
# A rule denying the destination (user u1): "0x02 not allowed by ruleset", in the line and
# in the table of failures. A mixed run (u0 allowed, u1 denied, alternating) never stops early.
echo 'rules = ( { action = "deny"; users = ["u1"]; }, { action = "allow"; } );' >"$TMP/rules.conf"
printf 'u0:%s\nu1:%s\n' "$HASH" "$HASH" >"$TMP/users2"
PR=$(start_ringsocks rules -c "$TMP/rules.conf" --auth password --users "$TMP/users2")
if [ -z "$PR" ]; then
    bad "start ringsocks with a deny rule"
else
    PIDS+=("$(cat "$TMP/rules.pid")")
    check "fail fast: rule denies, 0x02 named" "$FAST and 'SOCKS reply 0x02 not allowed by ruleset - check the proxy' in err and j['failures'] == [dict(kind='socks_reply', detail=2, text='SOCKS reply 0x02 not allowed by ruleset', count=j['errors']['total'])]" -- connrate --proxy "socks5://x:s3cret@127.0.0.1:$PR" --user u1 --duration 10
    check "mixed run does not fail fast"       "rc == 1 and secs >= 1.9 and j['stopped_early'] is None and j['units'] > 0 and j['errors']['socks_reply'] > 0 and 'stopped early' not in err" -- connrate --proxy "socks5://x:s3cret@127.0.0.1:$PR" --user 'u{n%2}' --workers 4 --duration 2
fi
# hold: no rate (a rate of held tunnels means nothing), and how long opening them all took.
check "hold: no rate, time to open all"    "$CLEAN and j['rate'] is None and 0 < j['open_all_s'] < 1" -- hold --proxy "$S5" --tunnels 20 --duration 1
# A user name needing JSON escapes (a"b\c and a control byte); the password is never printed.
check "JSON escapes the user name"         'j["proxy"].startswith("socks5://a\"b\\c\x01@") and "pw9q" not in json.dumps(j)' -- connrate --proxy "socks5://a%22b%5Cc%01:pw9q@127.0.0.1:$PA" --workers 1 --duration 0.2

# serve --socks5: the target answers the SOCKS5 handshake itself, so proxy and target are one
# address (the macro benchmark's direct cell runs it the same way).
"$SL" serve --socks5 --port 0 </dev/null >/dev/null 2>"$TMP/serve5.err" &
PIDS+=("$!")
S5T=""
for _ in $(seq 50); do
    S5T=$(sed -n 's/^socksload: serving on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$TMP/serve5.err" | head -1)
    [ -n "$S5T" ] && break
    sleep 0.1
done
if [ -z "$S5T" ]; then
    bad "serve --socks5 starts" "$(head -c 300 "$TMP/serve5.err")"
else
    check "serve --socks5: throughput, no proxy" "$CLEAN and j['bytes_down'] > 0 and j['target_mismatches'] == 0" -- throughput --proxy "socks5://127.0.0.1:$S5T" --target "127.0.0.1:$S5T" --tunnels 2 --threads 2 $D
    check "serve --socks5: connrate, no proxy"   "$CLEAN and j['tunnels'] == j['units']" -- connrate --proxy "socks5://127.0.0.1:$S5T" --target "127.0.0.1:$S5T" --workers 8 $D
    # serve learns --close target from the header, as the embedded target does.
    check "serve --socks5: connrate --close target" "$CLEAN and j['units'] == 200" -- connrate --proxy "socks5://127.0.0.1:$S5T" --target "127.0.0.1:$S5T" --workers 8 --count 200 --close target
fi

# A SOCKS5 relay that carries data both ways but keeps the target's EOF to itself (the client
# side stays open until the client closes): with --close target every tunnel must fail as
# no_eof, "no EOF from the target through the proxy", after --timeout, and nothing else.
cat >"$TMP/noeof.py" <<'PY'
import asyncio, socket
async def pipe(r, w, eof):
    try:
        while (d := await r.read(65536)):
            w.write(d)
            await w.drain()
        if eof:
            w.write_eof()
        else:
            await asyncio.sleep(3600)
    except (OSError, asyncio.CancelledError):
        pass
async def handle(r, w):
    try:
        g = await r.readexactly(2)
        await r.readexactly(g[1])
        w.write(b"\x05\x00")
        h = await r.readexactly(4)
        if h[3] != 1:
            raise OSError("IPv4 destinations only")
        a = await r.readexactly(6)
        tr, tw = await asyncio.open_connection(socket.inet_ntoa(a[:4]), int.from_bytes(a[4:], "big"))
        w.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        down = asyncio.ensure_future(pipe(tr, w, False))
        await pipe(r, tw, True)
        down.cancel()
        tw.close()
    except (OSError, asyncio.IncompleteReadError):
        pass
    w.close()
from stubserve import serve
serve(handle)
PY
start_py NE noeof noeof.py
if [ -z "$NE" ]; then
    bad "start the no-EOF relay"
else
    check "--close target, proxy keeps the EOF: no_eof" "rc == 1 and j['units'] == 0 and j['tunnels'] == 4 and j['errors']['no_eof'] == 4 and j['errors']['total'] == 4 and j['failures'][0]['text'] == 'no EOF from the target through the proxy'" -- connrate --proxy "socks5://127.0.0.1:$NE" --workers 2 --count 4 --close target --timeout 1
    # The same relay passes the client's FIN on: --close fin through it is clean.
    check "--close fin through the no-EOF relay" "$CLEAN and j['units'] == 4" -- connrate --proxy "socks5://127.0.0.1:$NE" --workers 2 --count 4 --close fin --timeout 1
fi

# connrate --rate, the open model: tunnel k is due at start + k/N whatever the proxy does, and
# its latency counts from that intended start. Through ringsocks: the rate asked is the rate
# achieved (within 5 %), and every tunnel's response was verified.
RATE_OK='abs(j["rate_achieved"] - 200) <= 10 and j["rate_asked"] == 200'
check "connrate --rate 200 through ringsocks"  "$CLEAN and $RATE_OK and j['units'] == j['started'] >= 380 and j['bytes_down'] == 64 * j['units'] and j['latency_us']['corrected']" -- connrate --proxy "$S5" --rate 200 --duration 2
# A SOCKS5 server that holds every greeting STALL seconds before its method reply, then serves
# the target's request/response ('Q') itself: the response is the pattern socksload verifies;
# or the echo ('E', hold's round trips), each message held STALL seconds before it goes back.
cat >"$TMP/stall.py" <<'PY'
import asyncio, struct, sys
stall = float(sys.argv[1])
async def handle(r, w):
    try:
        g = await r.readexactly(2)
        await r.readexactly(g[1])
        await asyncio.sleep(stall)
        w.write(b"\x05\x00")
        h = await r.readexactly(4)
        if h[3] == 1:
            await r.readexactly(6)
        elif h[3] == 4:
            await r.readexactly(18)
        else:
            await r.readexactly((await r.readexactly(1))[0] + 2)
        w.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        hdr = await r.readexactly(20)
        while hdr[2:3] == b"E":
            d = await r.read(65536)
            if not d:
                break
            await asyncio.sleep(stall)
            w.write(d)
        seed, a, b = struct.unpack("<III", hdr[4:16])
        await r.readexactly(a)
        w.write(bytes((seed + o) % 251 for o in range(b)))
        await w.drain()
        await r.read()
    except (OSError, asyncio.IncompleteReadError):
        pass
    w.close()
from stubserve import serve
serve(handle)
PY
start_py ST stall stall.py 0.3
# Against the stall the schedule holds (60 tunnels in flight, under the bound of 256) and the
# 300 ms are in the latency, not in a lower start rate.
check "connrate --rate 200, 300 ms stall: schedule kept" "$CLEAN and $RATE_OK and j['units'] == j['started'] >= 380 and j['late_starts'] < 40 and j['latency_us']['p50'] >= 300000" -- connrate --proxy "socks5://127.0.0.1:$ST" --rate 200 --duration 2
# Bound to 20 in flight (about 66 tunnels/s through the stall): due starts wait, and the wait
# is in their latency (from the intended start), so p90 is far past the 300 ms; the late and
# missed starts are counted and the achieved rate says the truth.
check "connrate --rate 200 --workers 20, stall: waits in the latency" "$CLEAN and j['latency_us']['p90'] >= 800000 and j['late_starts'] > 50 and j['missed_starts'] > 50 and j['rate_achieved'] < 100" -- connrate --proxy "socks5://127.0.0.1:$ST" --rate 200 --workers 20 --duration 2
# hold --rate, the open model on held tunnels: 40 round trips a second over 20 tunnels through
# an echo that holds each message 300 ms (12 busy at a time): the schedule holds and the stall
# is in the latency. Over 4 tunnels (at most about 13 a second get through) the due round trips
# wait for a free tunnel, and the wait is in their latency, from their intended start.
check "hold --rate 40, 300 ms stall: schedule kept" "$CLEAN and abs(j['rate_achieved'] - 40) <= 4 and j['started'] == j['units'] >= 75 and j['late_starts'] < 10 and j['latency_us']['p50'] >= 300000 and j['latency_us']['corrected']" -- hold --proxy "socks5://127.0.0.1:$ST" --tunnels 20 --rate 40 --hold 2
check "hold --rate 40 --tunnels 4, stall: waits in the latency" "$CLEAN and j['latency_us']['p90'] >= 800000 and j['late_starts'] > 15 and j['missed_starts'] > 20 and j['rate_achieved'] < 20" -- hold --proxy "socks5://127.0.0.1:$ST" --tunnels 4 --rate 40 --hold 2
check "hold --rate 200 through ringsocks" "$CLEAN and abs(j['rate_achieved'] - 200) <= 10 and j['units'] == j['started'] >= 190 and j['unit'] == 'round trips on held tunnels'" -- hold --proxy "$S5" --tunnels 10 --rate 200 --hold 1
usage "--rate outside connrate, http and hold refused" -- latency --proxy "$S5" --rate 10 --duration 1
usage "--rate 0 refused"               -- connrate --proxy "$S5" --rate 0 --duration 1

# A relay that flips the byte at offset 1 MiB of the upload (client to proxy), the download or
# both, of each connection; DELAY seconds before it forwards the flipped byte.
cat >"$TMP/flip.py" <<'PY'
import socket, sys, threading, time
up, dirs, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(64)
print(ls.getsockname()[1], flush=True)
def pipe(a, b, flip):
    n = 0
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            if flip and n <= (1 << 20) < n + len(d):
                i = (1 << 20) - n
                d = d[:i] + bytes([d[i] ^ 0x5a]) + d[i + 1:]
                time.sleep(delay)
            n += len(d)
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
def serve(c):
    u = socket.create_connection(("127.0.0.1", up))
    threading.Thread(target=pipe, args=(c, u, dirs in ("up", "both")), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c, dirs in ("down", "both")), daemon=True).start()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
# Four relays in front of ringsocks (started by start_py, so that cleanup stops them too).
start_py FB flipboth flip.py "$P" both 0
start_py FU flipup flip.py "$P" up 0
start_py FD flipdown flip.py "$P" down 0
start_py FS flipslow flip.py "$P" up 3
# Every corruption is one data_mismatch, and nothing else: errors.total == data_mismatch.
ONCE='j["errors"]["total"] == j["errors"]["data_mismatch"] and rc == 1'
check "corrupting relay caught, down"      "j['errors']['data_mismatch'] > 0 and $ONCE" -- throughput --proxy "socks5://127.0.0.1:$FD" --tunnels 2 $D
check "corrupting relay caught, up (sink's report)" "j['errors']['data_mismatch'] > 0 and j['target_mismatches'] == 0 and $ONCE" -- throughput --proxy "socks5://127.0.0.1:$FU" --tunnels 2 --direction up $D
check "corrupting relay caught, both"      "j['errors']['data_mismatch'] > 0 and $ONCE" -- throughput --proxy "socks5://127.0.0.1:$FB" --tunnels 2 --direction both $D
# Each direction of 'both' on its own: the download by the client, the upload by the target.
check "both, download flipped: client"     "j['errors']['data_mismatch'] > 0 and j['target_mismatches'] == 0 and $ONCE" -- throughput --proxy "socks5://127.0.0.1:$FD" --tunnels 2 --direction both $D
check "both, upload flipped: target, once" "j['errors']['data_mismatch'] == 2 and j['target_mismatches'] == 2 and $ONCE" -- throughput --proxy "socks5://127.0.0.1:$FU" --tunnels 2 --direction both $D
check "connrate, request flipped: once"    "j['errors']['data_mismatch'] == 6 and j['target_mismatches'] == 6 and j['units'] == 0 and $ONCE" -- connrate --proxy "socks5://127.0.0.1:$FU" --workers 2 --count 6 --request 2M
# The corrupted echo comes back only after the stop time (the relay holds it 3 s, the run
# stops at 1 s, the default --timeout is 5 s): still counted, and no unit done means exit
# status 1 whatever bytes went through. (1 s leaves any machine time to open 4 tunnels.)
check "latency, corruption after the stop" "j['tunnels'] == 4 and j['errors']['data_mismatch'] == 4 and j['units'] == 0 and $ONCE" -- latency --proxy "socks5://127.0.0.1:$FS" --size 1M --tunnels 4 --duration 1
check "latency --duration 0.01, flipped"   "j['errors']['data_mismatch'] == j['tunnels'] and rc == 1" -- latency --proxy "socks5://127.0.0.1:$FB" --size 1M --tunnels 4 --duration 0.01

# Numbers out of range are bad usage, never silently truncated.
usage "--request 4294967297 refused"   -- connrate --proxy "$S5" --request 4294967297 --duration 1
usage "--proxy http:// refused"        -- connrate --proxy "http://127.0.0.1:1" --duration 1
usage "--workers 4294967297 refused"   -- connrate --proxy "$S5" --workers 4294967297 --duration 1
usage "--tunnels 0 refused"            -- latency --proxy "$S5" --tunnels 0 --duration 1
usage "--tunnels -1 refused"           -- latency --proxy "$S5" --tunnels -1 --duration 1
usage "--target-threads 100000 refused" -- latency --proxy "$S5" --target-threads 100000 --duration 1
usage "--count 1.5 refused"            -- latency --proxy "$S5" --count 1.5
usage "--count 99999999999G refused"   -- throughput --proxy "$S5" --count 99999999999G
usage "--socks5 outside serve refused" -- connrate --proxy "$S5" --socks5 --duration 1
usage "--close reset refused"          -- connrate --proxy "$S5" --close reset --duration 1
usage "--close outside connrate refused" -- hold --proxy "$S5" --close fin --duration 1
usage "--close target outside connrate refused" -- http --proxy "$S5" --close target --duration 1

# Safety: nothing but loopback without --allow-nonlocal (exit status 2, nothing sent).
for args in "--proxy socks5://192.0.2.1:1080" "--proxy $S5 --target 192.0.2.1:80" \
            "--proxy socks5h://127.0.0.1:$P --target example.com:80"; do
    timeout 10 "$SL" latency $args --duration 1 >/dev/null 2>&1
    rc=$?
    if [ "$rc" = 2 ]; then ok "refused: $args"; else bad "refused: $args" "exit status $rc, want 2"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
