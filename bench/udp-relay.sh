#!/usr/bin/env bash
# bench/udp-relay.sh - UDP ASSOCIATE side by side: two ringsocks binaries (OLD, NEW) in one
# run, interleaved rounds of `socksload udp` (datagrams echoed per second, the proxy's CPU per
# echoed datagram from /proc/PID/stat), medians; then the proxy's RSS with ASSOCS associations
# that each relayed one datagram of MEM_SIZE bytes, and after they closed. Re-executes itself in
# a private network namespace (unshare -n, as root) so nothing touches the host's loopback.
#   OLD=/tmp/old/build/ringsocks ROUNDS=5 SECONDS_EACH=3 ASSOCS=3000 bench/udp-relay.sh
# NEW defaults to build/ringsocks; OLD=none runs NEW alone.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
if [ "${UR_IN_NS:-}" != 1 ]; then
    make -s build/ringsocks build/socksload
    exec env UR_IN_NS=1 unshare -n "$0" "$@"
fi
ip link set lo up
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_EACH:-3}
ASSOCS=${ASSOCS:-3000}
MEM_SIZE=${MEM_SIZE:-60000}
NEW=${NEW:-build/ringsocks}
OLD=${OLD:-none}
bench_scratch

bins=(new)
declare -A bin=([new]=$NEW) port=([new]=19180 [old]=19181) pid=()
if [ "$OLD" != none ]; then
    bins=(old new)
    bin[old]=$OLD
fi
for b in "${bins[@]}"; do
    "${bin[$b]}" --listen "127.0.0.1:${port[$b]}" --shards 2 --admin off --access-log off \
        2>"$tmp/$b.err" &
    pid[$b]=$!
    pids+=($!)
done
sleep 0.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# name: socksload udp arguments
loads=("1x1:--tunnels 1 --window 1" "8x16:--tunnels 8 --window 16" "4x8x1400:--tunnels 4 --window 8 --size 1400")
for round in $(seq "$ROUNDS"); do
    for l in "${loads[@]}"; do
        name=${l%%:*}
        for b in "${bins[@]}"; do
            c0=$(cpu_ticks "${pid[$b]}")
            # shellcheck disable=SC2086
            line=$(build/socksload udp --proxy "socks5://127.0.0.1:${port[$b]}" ${l#*:} \
                --duration "$SECS" --json || true)
            c1=$(cpu_ticks "${pid[$b]}")
            echo "$b $name $((c1 - c0)) $line" >>"$tmp/results"
            echo "udp-relay: round $round/$ROUNDS: $b $name: $line" >&2
        done
    done
done

# RSS: ASSOCS associations, one MEM_SIZE datagram echoed through each, then closed.
specs=()
for b in "${bins[@]}"; do specs+=("$b:${port[$b]}:${pid[$b]}"); done
python3 - "$tmp/mem" "$ASSOCS" "$MEM_SIZE" "${specs[@]}" <<'PY'
import os, resource, socket, struct, sys, threading, time
out, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
echo.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
echo.bind(("127.0.0.1", 0))
def serve():
    while True:
        d, peer = echo.recvfrom(65536)
        echo.sendto(d, peer)
threading.Thread(target=serve, daemon=True).start()
def rss(pid):
    for l in open("/proc/%d/status" % pid):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
hdr = b"\0\0\0\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", echo.getsockname()[1])
payload = os.urandom(size)
with open(out, "w") as f:
    for spec in sys.argv[4:]:
        name, port, pid = spec.split(":")
        port, pid = int(port), int(pid)
        base = rss(pid)
        ctl = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"\x05\x01\x00")
            assert s.recv(2) == b"\x05\x00"
            s.sendall(b"\x05\x03\x00\x01\0\0\0\0\0\0")
            r = b""
            while len(r) < 10:
                r += s.recv(10 - len(r))
            assert r[1] == 0, r
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", 0))
            u.settimeout(5)
            u.sendto(hdr + payload, (socket.inet_ntoa(r[4:8]), struct.unpack("!H", r[8:10])[0]))
            assert u.recvfrom(65536)[0][10:] == payload
            u.close()
            ctl.append(s)
        time.sleep(0.5)
        held = rss(pid)
        for s in ctl:
            s.close()
        time.sleep(3)
        f.write("%s %d %d %d\n" % (name, base, held, rss(pid)))
PY

python3 - "$tmp/results" "$tmp/mem" "$ROUNDS" "$SECS" "$ASSOCS" "$MEM_SIZE" <<'PY'
import json, os, statistics, sys
hz = os.sysconf("SC_CLK_TCK")
rows = {}
for line in open(sys.argv[1]):
    b, name, ticks, js = line.split(" ", 3)
    j = json.loads(js)
    rows.setdefault((name, b), []).append((j["rate"], int(ticks) / hz * 1e6 / max(j["units"], 1),
                                           j["errors"]["total"]))
print("| load | binary | median datagrams/s | rounds | proxy CPU us per echoed datagram | errors |")
print("| --- | --- | ---: | --- | ---: | ---: |")
for (name, b), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != "old")):
    print("| %s | %s | %.0f | %s | %.2f | %d |" % (name, b, statistics.median(r[0] for r in rs),
          " ".join("%.0f" % r[0] for r in rs), statistics.median(r[1] for r in rs), sum(r[2] for r in rs)))
print("\n%s rounds x %s s each, socksload udp (1 thread, embedded echo target), 2 shards; "
      "1x1 = --tunnels 1 --window 1, 8x16 = --tunnels 8 --window 16 (64-byte datagrams), "
      "4x8x1400 = 4 tunnels x window 8 of 1400 bytes." % tuple(sys.argv[3:5]))
print("\n| binary | RSS before | with %s associations | after they closed (+3 s) | per association |" % sys.argv[5])
print("| --- | ---: | ---: | ---: | ---: |")
for line in open(sys.argv[2]):
    b, base, held, after = line.split()
    base, held, after = int(base), int(held), int(after)
    print("| %s | %.1f MB | %.1f MB | %.1f MB | %.1f KB |" % (b, base / 1024, held / 1024, after / 1024,
                                                            (held - base) / int(sys.argv[5])))
print("\neach association relayed one %s-byte datagram (echoed) before the RSS was read." % sys.argv[6])
PY
