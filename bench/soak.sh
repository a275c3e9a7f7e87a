#!/usr/bin/env bash
# bench/soak.sh - the soak (make soak): one ringsocks under a mix of every kind of client
# for SOAK_MINUTES (default 60), with a reload every 30 s, an access-log reopen every
# SOAK_MINUTES * 5 s (5 min in an hour's run), and a drain + restart halfway; every
# SOAK_SAMPLE seconds (default 10) it records RSS, kernel memory (a memory cgroup of the
# proxy's own), fds, pipe fds, tunnels and handshakes open, loop iterations and stalls per
# shard. Then bench/soak_report.py fits slopes and checks the pass rules (docs/benchmarks.md,
# "Soak"): zero verification errors, no fd / RSS / kernel-memory growth beyond the bounds
# after warm-up, zero shard stalls. Report, TSV and plot: bench/results/soak-STAMP.{md,tsv,svg},
# fds and memory at each round's end in soak-STAMP-quiet.tsv (SOAK_OUT=PREFIX writes PREFIX.*
# instead). Exit 0 when every rule passes, 1 when one fails (the report and the last lines
# say which), 2 when it could not run.
#
# The load, in rounds of SOAK_ROUND seconds (default 20), all at once, every client
# authenticating (RFC 1929, 20 users and a limited one from a users file):
#   bulk       socksload throughput, 4 tunnels both ways, verified, as a user limited to
#              20 MB/s each way (bw_up, bw_down in the users file)
#   short      socksload connrate --rate 150 (open model), 32 in flight, verified
#   byname     socksload connrate through socks5h:// to "localhost" (the proxy resolves it)
#   held       socksload hold, 200 idle tunnels for the round, a round trip at each end
#   udp        socksload udp, 4 associations, echoed and verified
#   bind       bench/soak_clients.py bind: BIND with a peer of its own, verified
#   malformed  soak_clients.py malformed: garbage, truncated, wrong password... (refused)
#   slow       soak_clients.py slow: clients that read nothing (closed at write_timeout)
# At the halfway round only the long-lived drivers (bulk, held, udp) run: their tunnels are
# open when the drain begins and must finish through the draining process, while a new
# process takes the port.
#
# Runs in a network namespace of its own (unshare -n, as root): nothing touches the host's
# network. Every process is stopped by PID; the whole run is bounded by timeout(1) at
# SOAK_MINUTES + 3 minutes. BUILD (default build) names the binaries; SOAK_SAN=1 says they
# are sanitizer builds (RSS is then reported, not judged: ASan's quarantine grows it).
set -u

cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
SOAK_MINUTES=${SOAK_MINUTES:-60}
SOAK_SAMPLE=${SOAK_SAMPLE:-10}
SOAK_ROUND=${SOAK_ROUND:-20}
RS=$BUILD/ringsocks
SL=$BUILD/socksload
TOTAL=$((SOAK_MINUTES * 60))

if [ -z "${SOAK_IN_NETNS:-}" ]; then
    for b in "$RS" "$SL"; do
        [ -x "$b" ] || { echo "soak: missing $b (make $b)"; exit 2; }
    done
    if [ "$(id -u)" != 0 ]; then
        echo "soak: needs root (a network namespace and a memory cgroup of its own)"
        exit 2
    fi
    export SOAK_IN_NETNS=1 BUILD SOAK_MINUTES SOAK_SAMPLE SOAK_ROUND SOAK_SAN
    exec timeout -k 10 $((TOTAL + 180)) unshare -n "$0" "$@"
fi

ip link set lo up || exit 2
. bench/macro/lib.sh

STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${SOAK_OUT:-bench/results/soak-$STAMP}
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX") || exit 2
PIDS=()  # helpers: target, sampler, event loop
JOBS=()  # this round's drivers (not `wait` alone: the sampler and the events are children too)
RSPIDS=() # every ringsocks started
CG=""

cleanup() {
    local p
    for p in "${JOBS[@]}"; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" "${RSPIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" "${RSPIDS[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "$CG" ] && rmdir "$CG" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' TERM INT

log() { echo "soak: $(date -u +%H:%M:%S) $*"; }

# ---- users, configuration
python3 - "$TMP/users" <<'PY' || exit 2
import sys
sys.path.insert(0, "tests/integration")
from harness import make_hash
h = make_hash("soak", "sha512", 5000)
with open(sys.argv[1], "w") as f:
    for i in range(20):
        f.write("soak-%d:%s\n" % (i, h))
    f.write("spare:%s\n" % h)
    # The bulk driver's user: limited, so bulk moves 2 x 20 MB/s, not all the CPU there is.
    f.write("bulk:%s bw_up=20M bw_down=20M max_conns=16\n" % h)
PY
# write_conf N: the configuration, its deny rule naming port 9 + N so each reload changes the
# rules (a new policy built and published) without touching the soak's own traffic.
write_conf() {
    cat >"$TMP/ringsocks.conf.new" <<EOF
listen = ["127.0.0.1:1080"];
auth = "password";
users = "$TMP/users";
access_log = "$TMP/access.log";
drain_timeout = 40;
write_timeout = 8;
handshake_timeout = 5;
rules = (
    { action = "deny"; ports = [$((9 + $1 % 100))]; },
    { action = "allow"; from = ["127.0.0.0/8"]; commands = ["connect", "bind", "udp"]; }
);
EOF
    mv "$TMP/ringsocks.conf.new" "$TMP/ringsocks.conf"
}
write_conf 0

# ---- a memory cgroup of the proxy's own: its kernel memory alone
CGKIND="" CGDIR=""
if mp=$(memcg_parent); then
    CGKIND=${mp%% *}
    CG="${mp#* }/ringsocks-soak-$$"
    if mkdir "$CG" 2>/dev/null; then
        CGDIR=$CG
        [ "$CGKIND" = v1 ] && echo 1 >"$CG/memory.use_hierarchy" 2>/dev/null
    else
        CG=""
    fi
fi
[ -n "$CGDIR" ] || log "no memory cgroup here: kernel memory is not recorded (NA)"

# ---- the target: socksload serve (TCP sink/source/echo, UDP echo)
"$SL" serve --host 127.0.0.1 --port 7000 </dev/null >/dev/null 2>"$TMP/serve.err" &
PIDS+=("$!")

# start_proxy N: ringsocks number N (admin port 9180 + N: the draining one keeps its own),
# in the cgroup; its PID in $TMP/pid and $TMP/admin the admin port. Returns 1 unless it
# listens within 10 s.
start_proxy() {
    local n=$1 i
    # Into the cgroup before exec: the kernel memory it allocates is charged there.
    sh -c '[ -n "$1" ] && echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$CGDIR" \
        "$RS" -c "$TMP/ringsocks.conf" --admin "127.0.0.1:$((9180 + n))" </dev/null \
        >"$TMP/rs$n.out" 2>"$TMP/rs$n.err" &
    local pid=$!
    RSPIDS+=("$pid")
    for i in $(seq 100); do
        if grep -q "^ringsocks: listening on" "$TMP/rs$n.err" 2>/dev/null; then
            echo "$pid" >"$TMP/pid.new" && mv "$TMP/pid.new" "$TMP/pid"
            echo $((9180 + n)) >"$TMP/admin.new" && mv "$TMP/admin.new" "$TMP/admin"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "ringsocks $n did not start:"
    head -20 "$TMP/rs$n.err"
    return 1
}
start_proxy 1 || exit 2
for _ in $(seq 50); do grep -q "serving on" "$TMP/serve.err" && break; sleep 0.1; done
grep -q "serving on" "$TMP/serve.err" || { log "socksload serve did not start"; exit 2; }

T0=$(date +%s)
echo "$T0" >"$TMP/t0"

# Packets the kernel dropped on the way (what a starved host loses, not the proxy): the
# softirq backlog's drops (/proc/net/softnet_stat, all CPUs: the host's, not only this
# namespace's) plus this namespace's UDP receive errors (/proc/net/snmp InErrors, which
# counts RcvbufErrors too).
kernel_drops() {
    local k=0 d u
    while read -r _ d _; do k=$((k + 16#$d)); done </proc/net/softnet_stat
    u=$(awk '$1 == "Udp:" && $2 ~ /^[0-9]/ { print $4; exit }' /proc/net/snmp)
    echo $((k + ${u:-0}))
}

# ---- the sampler: one TSV line every SOAK_SAMPLE s
sampler() {
    local pid port now m rss fds pipes kmem proc=0 lastpid=""
    printf 't_s\tproc\tpid\trss_kib\tkmem_kib\tfds\tpipe_fds\tconns_open\ttunnels_open\thandshakes\tloops\tstalls\tloop_max_ms\tbase_fds\tloops_by_shard\tcpu_wait_s\tudp_drops\tbufs_kib\tkernel_drops\n' \
        >"$TMP/samples.tsv"
    while :; do
        pid=$(cat "$TMP/pid") port=$(cat "$TMP/admin")
        [ "$pid" != "$lastpid" ] && { proc=$((proc + 1)); lastpid=$pid; }
        now=$(($(date +%s) - T0))
        m=$(curl -s --max-time 3 "http://127.0.0.1:$port/metrics")
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        pipes=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -lname 'pipe:*' 2>/dev/null | wc -l)
        kmem=NA
        if [ -n "$CGDIR" ]; then
            kmem=$(memcg_kernel_bytes "$CGKIND" "$CGDIR")
            [ "$kmem" != NA ] && kmem=$((kmem / 1024))
        fi
        echo "$m" | awk -v t="$now" -v proc="$proc" -v pid="$pid" -v rss="${rss:-NA}" \
            -v kmem="$kmem" -v fds="$fds" -v pipes="$pipes" -v kd="$(kernel_drops)" '
            /^ringsocks_connections_open / { conns = $2 }
            /^ringsocks_tunnels_open\{/ { tun += $2 }
            /^ringsocks_shard_loop_iterations_total\{/ { loops += $2; by = by (by == "" ? "" : ",") $2 }
            /^ringsocks_shard_stalls_total\{/ { stalls += $2 }
            /^ringsocks_shard_loop_max_seconds\{/ { if ($2 * 1000 > mx) mx = $2 * 1000 }
            /^ringsocks_shard_cpu_wait_seconds_total\{/ { wait += $2 }
            /^ringsocks_udp_datagrams_dropped_total / { udrop = $2 }
            /^ringsocks_relay_buffers_resident_bytes\{/ { bufs += $2 / 1024 }
            END {
                if (conns == "") { print t "\t" proc "\t" pid "\t" rss "\t" kmem "\t" fds "\t" pipes "\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t" kd; exit }
                # fds not held by a connection (client + target) or a pipe: what a leak grows.
                printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.3f\t%d\t%d\t%s\n", t, proc,
                    pid, rss, kmem, fds, pipes, conns, tun, conns - tun, loops, stalls, mx,
                    fds - pipes - conns - tun, by, wait, udrop, bufs, kd
            }' >>"$TMP/samples.tsv"
        sleep "$SOAK_SAMPLE"
    done
}
sampler &
PIDS+=("$!")

# ---- events: a reload every 30 s (the rules change each time), a log reopen every
# SOAK_MINUTES * 5 s; each logged in $TMP/events.tsv.
REOPEN_S=$((SOAK_MINUTES * 5))
events() {
    local n=0 t next_reload=30 next_reopen=$REOPEN_S code
    while :; do
        sleep 1
        t=$(($(date +%s) - T0))
        if [ "$t" -ge "$next_reload" ]; then
            n=$((n + 1))
            write_conf "$n"
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
                "http://127.0.0.1:$(cat "$TMP/admin")/reload")
            printf '%s\treload\t%s\n' "$t" "$code" >>"$TMP/events.tsv"
            next_reload=$((next_reload + 30))
        fi
        if [ "$t" -ge "$next_reopen" ]; then
            mv "$TMP/access.log" "$TMP/access.log.1" 2>/dev/null
            kill -USR1 "$(cat "$TMP/pid")"
            printf '%s\treopen\t%s\n' "$t" "$?" >>"$TMP/events.tsv"
            next_reopen=$((next_reopen + REOPEN_S))
        fi
    done
}
events &
PIDS+=("$!")

# ---- the rounds
PROXY=127.0.0.1:1080
URL="socks5://x:soak@$PROXY"
run_sl() { # NAME ROUND USER ARGS...: socksload ... --json into $TMP/r/ROUND-NAME.json
    local name=$1 r=$2 user=$3
    shift 3
    timeout $((SOAK_ROUND + 60)) "$SL" "$@" --user "$user" --json --no-fail-fast \
        >"$TMP/r/$r-$name.json" 2>"$TMP/r/$r-$name.err"
    echo $? >"$TMP/r/$r-$name.rc"
}
run_py() { # NAME ROUND ARGS...: soak_clients.py into $TMP/r/ROUND-NAME.json
    local name=$1 r=$2
    shift 2
    timeout $((SOAK_ROUND + 60)) python3 bench/soak_clients.py "$@" --proxy "$PROXY" \
        --duration "$SOAK_ROUND" >"$TMP/r/$r-$name.json" 2>"$TMP/r/$r-$name.err"
    echo $? >"$TMP/r/$r-$name.rc"
}
long_drivers() { # ROUND
    run_sl bulk "$1" bulk throughput --proxy "$URL" --target 127.0.0.1:7000 --tunnels 4 \
        --direction both --duration "$SOAK_ROUND" &
    JOBS+=("$!")
    run_sl held "$1" 'soak-{n%20}' hold --proxy "$URL" --target 127.0.0.1:7000 --tunnels 200 \
        --duration "$SOAK_ROUND" &
    JOBS+=("$!")
    run_sl udp "$1" 'soak-{n%20}' udp --proxy "$URL" --target 127.0.0.1:7000 --tunnels 4 --window 4 \
        --duration "$SOAK_ROUND" &
    JOBS+=("$!")
}
# quiet_sample: fds, RSS and kernel memory when a round's drivers have all ended (a moment
# without clients: what is left then is what a leak grows), into $TMP/quiet.tsv.
quiet_sample() {
    local pid m fds pipes rss kmem=NA
    sleep 0.5
    pid=$(cat "$TMP/pid")
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    if [ -n "$CGDIR" ]; then
        kmem=$(memcg_kernel_bytes "$CGKIND" "$CGDIR")
        [ "$kmem" != NA ] && kmem=$((kmem / 1024))
    fi
    m=$(curl -s --max-time 3 "http://127.0.0.1:$(cat "$TMP/admin")/metrics")
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    pipes=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -lname 'pipe:*' 2>/dev/null | wc -l)
    echo "$m" | awk -v t="$(($(date +%s) - T0))" -v pid="$pid" -v fds="$fds" -v pipes="$pipes" \
        -v rss="${rss:-NA}" -v kmem="$kmem" '
        /^ringsocks_connections_open / { conns = $2 }
        /^ringsocks_tunnels_open\{/ { tun += $2 }
        /^ringsocks_relay_buffers_resident_bytes\{/ { bufs += $2 / 1024 }
        END { printf "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\n", t, pid, fds, pipes, conns, tun,
              fds - pipes - conns - tun, rss, kmem, bufs }' >>"$TMP/quiet.tsv"
}
printf 't_s\tpid\tfds\tpipe_fds\tconns_open\ttunnels_open\tbase_fds\trss_kib\tkmem_kib\tbufs_kib\n' \
    >"$TMP/quiet.tsv"
mkdir -p "$TMP/r"
HALF=$((TOTAL / 2))
restarted=0
r=0
while [ $(($(date +%s) - T0 + SOAK_ROUND)) -le "$TOTAL" ]; do
    r=$((r + 1))
    if [ "$restarted" = 0 ] && [ $(($(date +%s) - T0 + SOAK_ROUND / 2)) -ge "$HALF" ]; then
        restarted=1
        long_drivers "$r"
        sleep 3
        old=$(cat "$TMP/pid")
        log "round $r: drain of $old with tunnels open, a new process on the port"
        curl -s -o /dev/null --max-time 10 -X POST "http://127.0.0.1:$(cat "$TMP/admin")/drain"
        printf '%s\tdrain\t%s\n' "$(($(date +%s) - T0))" "$old" >>"$TMP/events.tsv"
        # The old process closes its listeners at once; the new one may bind when it has.
        ok=0
        for _ in $(seq 50); do
            if start_proxy 2 2>/dev/null; then ok=1; break; fi
            sleep 0.2
        done
        [ "$ok" = 1 ] || { log "no new process"; exit 2; }
        printf '%s\trestart\t%s\n' "$(($(date +%s) - T0))" "$(cat "$TMP/pid")" >>"$TMP/events.tsv"
        wait "${JOBS[@]}"
        JOBS=()
        quiet_sample
        # The old process ends once its tunnels have (the drivers' runs have ended).
        for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$old" 2>/dev/null; then
            echo "drain: process $old still running after its tunnels ended" >"$TMP/drain.err"
        else
            wait "$old"
            echo "$?" >"$TMP/drain.rc"
        fi
        continue
    fi
    long_drivers "$r"
    run_sl short "$r" 'soak-{n%20}' connrate --proxy "$URL" --target 127.0.0.1:7000 --rate 150 --workers 32 \
        --duration "$SOAK_ROUND" &
    JOBS+=("$!")
    run_sl byname "$r" 'soak-{n%20}' connrate --proxy "socks5h://x:soak@$PROXY" --target localhost:7000 \
        --workers 4 --duration "$SOAK_ROUND" &
    JOBS+=("$!")
    run_py bind "$r" bind --workers 2 &
    JOBS+=("$!")
    run_py malformed "$r" malformed --workers 2 &
    JOBS+=("$!")
    run_py slow "$r" slow --workers 8 &
    JOBS+=("$!")
    wait "${JOBS[@]}"
    JOBS=()
    quiet_sample
done
log "$r rounds done; reporting"
kill "${PIDS[1]}" "${PIDS[2]}" 2>/dev/null
wait "${PIDS[1]}" "${PIDS[2]}" 2>/dev/null
# One last sample set is in; the access log must have been written after each reopen.
cp "$TMP/samples.tsv" "$OUT.tsv"
cp "$TMP/quiet.tsv" "$OUT-quiet.tsv"
python3 bench/soak_report.py --samples "$OUT.tsv" --quiet "$OUT-quiet.tsv" --rounds "$TMP/r" \
    --events "$TMP/events.tsv" ${SOAK_SAN:+--san} \
    --drain-dir "$TMP" --minutes "$SOAK_MINUTES" --out "$OUT"
rc=$?
log "report: $OUT.md"
exit "$rc"
