#!/usr/bin/env bash
# bench/macro/run.sh - the macro benchmark (make bench): direct, ringsocks (auto, splice, copy
# relay), microsocks, Dante and any EXTRA_SERVERS side by side in one run, with
# build/socksload as the client for every figure:
#   1 throughput, 1 and 16 tunnels          5 memory per held idle tunnel (user and kernel)
#   2 CPU seconds per GB (proxy, machine)   6 handshake rate with user/password and by name
#   3 short-tunnel rate, p50/p99, proxy     7 many concurrent tunnels (BIG_SERVERS)
#     CPU per 1,000 tunnels (client RST)    8 scraping: short tunnels from a /64 (scrape.sh)
#   4 pinned 1-byte round trip              9 short tunnels the target closes first (tclose)
#                                          10 UDP ASSOCIATE datagrams/s and loss (udp)
#  11 HUGE_TUNNELS (100,000) idle tunnels held on this one node, user and kernel memory per
#     tunnel (bench/macro/huge.sh; spread over several proxies: the host's fd limit)
#  12 UDP loss knee, open loop (udprate)
# ROUNDS interleaved rounds; in each every server gets one cell (bench/macro/cell.sh) in a
# fresh network namespace, in an order that rotates from round to round. Medians, ratios, a
# markdown table, the raw TSV and gnuplot plots go to RESULTS_DIR (bench/results/) as
# macro-<UTC stamp>.{md,tsv} and macro-<stamp>-*.svg; latest.md is a copy of the newest
# report. Progress goes to stderr. Method: docs/benchmarks.md.
#
# Usage: bench/macro/run.sh          (as root: network namespaces, cgroups, pinning)
# Environment (durations in seconds):
#   ROUNDS=3            rounds
#   SERVERS="direct ringsocks-auto ringsocks-splice ringsocks-copy microsocks dante"   (any subset, in order;
#                       ringsocks-ENGINE runs ringsocks with --relay ENGINE)
#   EXTRA_SERVERS="name=command {PORT};..."   more proxies, measured as extra-NAME; {PORT} is
#                       where the proxy must listen on 127.0.0.1
#   EXTRA_AUTH="name=command {PORT} {USER} {PASS};..."   the same proxy with user/password
#                       (figure 6); without it the extra server's auth figure is n/a
#   FIGURES="throughput memory big rtt rate name tclose auth scrape udp udprate huge"   what to measure
#   UDP_SECONDS=MEASURE_SECONDS UDP_WINDOW=8 UDP_THREADS=2 UDP_LOSS_TIMEOUT=1   figure 10: each
#                       of its four runs (1 and 64 associations x 64 and 1400 B), datagrams
#                       in flight per association, socksload threads for 64 associations,
#                       and how long an echo may take before the datagram counts as lost
#   UDPRATE_RATES="10000 20000 40000 80000 160000 320000" UDPRATE_SECONDS=2 UDPRATE_TUNNELS=64
#   UDPRATE_LOSS_TIMEOUT=0.5   figure 12: the open-loop sweep (socksload udp --rate), per
#                       datagram size (64, 1400 B) one run per rate; about 35 s per server
#   SCRAPE_SECONDS=60 SCRAPE_WORKERS=64 SCRAPE_THREADS=2 SCRAPE_VARIANTS="direct single pool sticky"
#   SCRAPE_CLOSE=fin    figure 8 (bench/macro/scrape.sh), once per round, not per server;
#                       SCRAPE_CLOSE: how the client ends each tunnel (connrate --close fin|rst)
#   MEASURE_SECONDS=3   default for TP_SECONDS, RATE_SECONDS, RTT_SECONDS and UDP_SECONDS
#   TP_THREADS=2        socksload threads for 16 tunnels (1 tunnel: 1 thread)
#   RATE_WORKERS=64 RATE_THREADS=2 WARMUP_TUNNELS=200   (unmeasured tunnels before each rate)
#   MEM_TUNNELS=2000 MEM_HOLD=4 MEM_SETTLE=1   memory run: tunnels, hold time, wait before
#                       sampling once they are all open
#   BIG_TUNNELS=9000 BIG_HOLD=4 BIG_SERVERS="direct ringsocks-auto ringsocks-splice ringsocks-copy"
#   HUGE_TUNNELS=100000 HUGE_PER_PROC=8400 HUGE_HOLD=30 HUGE_TIMEOUT=60
#   HUGE_SERVERS="ringsocks-auto direct"   figure 11 (bench/macro/huge.sh), once per round:
#                       tunnels in all, at most per proxy process (also bounded by the hard fd
#                       limit), hold, socksload --timeout and ringsocks --handshake-timeout
#   TIMEOUT=5           socksload --timeout (every step of every tunnel)
#   CLIENT_CPU=0 PROXY_CPU=1   figure 4's pinning
#   RINGSOCKS_ARGS=""   more flags for ringsocks, e.g. "--access-log off"
#   QUICK=1             a short run to check the suite: 1 round, 1 s figures, small holds
#   NETNS=1 (0: run in the current namespace)  KEEP_TMP=0 (1: keep logs and JSON)
#   RESULTS_DIR=bench/results  NO_BUILD=0 (1: do not run make)
# Exit status: 0 when the report was written (failed measurements are "fail" in it), 1 on a
# setup error (missing tool, build failure, bad setting).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/macro/lib.sh
. "$HERE/lib.sh"

if [ "${QUICK:-0}" = 1 ]; then
    : "${ROUNDS:=1}" "${MEASURE_SECONDS:=1}" "${MEM_TUNNELS:=500}" "${MEM_HOLD:=3}"
    : "${BIG_TUNNELS:=2000}" "${BIG_HOLD:=3}" "${SCRAPE_SECONDS:=10}" "${HUGE_TUNNELS:=10000}"
    : "${UDPRATE_SECONDS:=1}"
fi
export ROUNDS=${ROUNDS:-3}
export SERVERS=${SERVERS:-"direct ringsocks-auto ringsocks-splice ringsocks-copy microsocks dante"}
export EXTRA_SERVERS=${EXTRA_SERVERS:-} EXTRA_AUTH=${EXTRA_AUTH:-}
export FIGURES=${FIGURES:-"throughput memory big rtt rate name tclose auth scrape udp udprate huge"}
export SCRAPE_SECONDS=${SCRAPE_SECONDS:-60} SCRAPE_WORKERS=${SCRAPE_WORKERS:-64}
export SCRAPE_THREADS=${SCRAPE_THREADS:-2} SCRAPE_VARIANTS=${SCRAPE_VARIANTS:-"direct single pool sticky"}
export SCRAPE_CLOSE=${SCRAPE_CLOSE:-fin}
MEASURE_SECONDS=${MEASURE_SECONDS:-3}
export TP_SECONDS=${TP_SECONDS:-$MEASURE_SECONDS}
export RATE_SECONDS=${RATE_SECONDS:-$MEASURE_SECONDS}
export RTT_SECONDS=${RTT_SECONDS:-$MEASURE_SECONDS}
export UDP_SECONDS=${UDP_SECONDS:-$MEASURE_SECONDS} UDP_WINDOW=${UDP_WINDOW:-8}
export UDP_THREADS=${UDP_THREADS:-2} UDP_LOSS_TIMEOUT=${UDP_LOSS_TIMEOUT:-1}
export UDPRATE_RATES=${UDPRATE_RATES:-"10000 20000 40000 80000 160000 320000"}
export UDPRATE_SECONDS=${UDPRATE_SECONDS:-2} UDPRATE_TUNNELS=${UDPRATE_TUNNELS:-64}
export UDPRATE_LOSS_TIMEOUT=${UDPRATE_LOSS_TIMEOUT:-0.5}
export TP_THREADS=${TP_THREADS:-2}
export RATE_WORKERS=${RATE_WORKERS:-64} RATE_THREADS=${RATE_THREADS:-2}
export WARMUP_TUNNELS=${WARMUP_TUNNELS:-200}
export MEM_TUNNELS=${MEM_TUNNELS:-2000} MEM_HOLD=${MEM_HOLD:-4} MEM_SETTLE=${MEM_SETTLE:-1}
export BIG_TUNNELS=${BIG_TUNNELS:-9000} BIG_HOLD=${BIG_HOLD:-4}
export BIG_SERVERS=${BIG_SERVERS:-"direct ringsocks-auto ringsocks-splice ringsocks-copy"}
export HUGE_TUNNELS=${HUGE_TUNNELS:-100000} HUGE_PER_PROC=${HUGE_PER_PROC:-8400}
export HUGE_HOLD=${HUGE_HOLD:-30} HUGE_TIMEOUT=${HUGE_TIMEOUT:-60}
export HUGE_SERVERS=${HUGE_SERVERS:-"ringsocks-auto direct"}
export TIMEOUT=${TIMEOUT:-5}
export CLIENT_CPU=${CLIENT_CPU:-0} PROXY_CPU=${PROXY_CPU:-1}
export RINGSOCKS_ARGS=${RINGSOCKS_ARGS:-}
export NETNS=${NETNS:-1}
KEEP_TMP=${KEEP_TMP:-0}
RESULTS_DIR=${RESULTS_DIR:-$RS_ROOT/bench/results}
export AUTH_USER=bench AUTH_PASS=benchpass
export BUILD RS_ROOT

# ----------------------------------------------------------------------------- settings

positive() {
    case $2 in '' | *[!0-9.]* | .*) die "$1 must be a positive number, not '$2'" ;; esac
    awk -v v="$2" 'BEGIN { exit !(v > 0) }' || die "$1 must be positive, not '$2'"
}
case $ROUNDS in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer" ;; esac
case $WARMUP_TUNNELS in '' | *[!0-9]*) die "WARMUP_TUNNELS must be a number" ;; esac
for v in TP_SECONDS RATE_SECONDS RTT_SECONDS MEM_HOLD MEM_SETTLE BIG_HOLD TIMEOUT \
    TP_THREADS RATE_WORKERS RATE_THREADS MEM_TUNNELS BIG_TUNNELS SCRAPE_SECONDS SCRAPE_WORKERS \
    SCRAPE_THREADS UDP_SECONDS UDP_WINDOW UDP_THREADS UDP_LOSS_TIMEOUT UDPRATE_SECONDS \
    UDPRATE_TUNNELS UDPRATE_LOSS_TIMEOUT HUGE_TUNNELS HUGE_PER_PROC HUGE_HOLD HUGE_TIMEOUT; do
    positive "$v" "${!v}"
done
awk -v h="$MEM_HOLD" -v s="$MEM_SETTLE" 'BEGIN { exit !(h >= s + 2) }' ||
    die "MEM_HOLD must be at least MEM_SETTLE + 2 s (the sample is taken while the tunnels are held)"
for f in $FIGURES; do
    case $f in throughput | memory | big | rtt | rate | name | tclose | auth | scrape | udp | udprate | huge) ;;
    *) die "unknown figure '$f' (throughput memory big rtt rate name tclose auth scrape udp udprate huge)" ;;
    esac
done
for v in $UDPRATE_RATES; do
    case $v in '' | *[!0-9]* | 0*) die "UDPRATE_RATES are positive integers, not '$v'" ;; esac
done
for v in $SCRAPE_VARIANTS; do
    case $v in direct | single | pool | sticky) ;;
    *) die "unknown SCRAPE_VARIANTS entry '$v' (direct single pool sticky)" ;;
    esac
done
for v in $HUGE_SERVERS; do
    case $v in direct | ringsocks-?*) ;;
    *) die "unknown HUGE_SERVERS entry '$v' (direct ringsocks-ENGINE)" ;;
    esac
done
case $SCRAPE_CLOSE in fin | rst) ;; *) die "SCRAPE_CLOSE is fin or rst, not '$SCRAPE_CLOSE'" ;; esac
case " $FIGURES " in
*" scrape "*) command -v ip >/dev/null || die "ip is missing: tools/install-deps.sh bench" ;;
esac

# The lists are parsed here, in this shell, so that a malformed one stops the run (die inside
# $(...) would only end the subshell).
extra_list=$(extra_parse EXTRA_SERVERS) || die "EXTRA_SERVERS is malformed: name=command {PORT};..."
extra_parse EXTRA_AUTH >/dev/null || die "EXTRA_AUTH is malformed: name=command {PORT} {USER} {PASS};..."
extra_names=()
while IFS= read -r line; do
    [ -z "$line" ] || extra_names+=("${line%%$'\t'*}")
done <<<"$extra_list"

read -r -a servers <<<"$SERVERS"
for name in "${extra_names[@]}"; do
    case " ${servers[*]} " in *" extra-$name "*) ;; *) servers+=("extra-$name") ;; esac
done
[ "${#servers[@]}" -gt 0 ] || die "SERVERS is empty"
export SERVERS="${servers[*]}"
for s in "${servers[@]}"; do
    case $s in
    direct | ringsocks-?*) ;; # ringsocks-ENGINE: any --relay engine
    microsocks) command -v microsocks >/dev/null || die "microsocks is missing: tools/install-deps.sh bench" ;;
    dante) command -v danted >/dev/null || die "danted is missing: tools/install-deps.sh bench" ;;
    extra-*)
        case " ${extra_names[*]} " in *" ${s#extra-} "*) ;;
        *) die "$s: no such name in EXTRA_SERVERS" ;;
        esac
        ;;
    *) die "unknown server '$s' (direct ringsocks-ENGINE microsocks dante extra-NAME)" ;;
    esac
done
for t in jq ss taskset timeout python3 awk; do
    command -v "$t" >/dev/null || die "$t is missing: tools/install-deps.sh bench"
done

# -------------------------------------------------------------------------------- setup

if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building (make $BUILD/ringsocks $BUILD/socksload)"
    make -C "$RS_ROOT" "$BUILD/ringsocks" "$BUILD/socksload" >&2 ||
        die "make failed"
fi
for b in "$RINGSOCKS" "$SOCKSLOAD"; do
    [ -x "$b" ] || die "$b is missing (make)"
done

warnings=()
if [ "$NETNS" = 1 ] && ! unshare -n true 2>/dev/null; then
    warnings+=("no network namespace could be made (needs root): cells ran in the current one")
    NETNS=0
fi
if [ "$(nproc)" -lt 2 ] || [ "$CLIENT_CPU" = "$PROXY_CPU" ]; then
    warnings+=("figure 4 needs two CPUs for client and proxy; CLIENT_CPU=$CLIENT_CPU PROXY_CPU=$PROXY_CPU")
fi

TMPROOT=$(mktemp -d /tmp/ringsocks-bench.XXXXXX)
export TMPROOT
MEMCG_BASE=""
CPUACCT_BASE=""
CPUSET_DIR=""
# Every cell stops its own servers; whatever a cell that was killed left in our cgroups is
# stopped here, through the cgroup (never by name).
# remove_cell_cgroups BASE: stop what is left in each cell's cgroup under BASE, remove them
# and BASE (nothing when BASE is empty).
remove_cell_cgroups() {
    local d
    [ -n "$1" ] || return 0
    for d in "$1"/*/; do
        [ -d "$d" ] || continue
        stop_cgroup "${d%/}"
        rmdir_cgroup "${d%/}"
    done
    rmdir_cgroup "$1"
}
cleanup() {
    if [ -n "$CPUSET_DIR" ]; then
        stop_cgroup "$CPUSET_DIR"
        rmdir_cgroup "$CPUSET_DIR"
    fi
    remove_cell_cgroups "$MEMCG_BASE"
    remove_cell_cgroups "$CPUACCT_BASE"
    if [ "$KEEP_TMP" = 1 ]; then
        log "kept $TMPROOT"
    else
        rm -rf "$TMPROOT"
    fi
}
trap cleanup EXIT

# Kernel memory per proxy: a memory cgroup per cell under MEMCG_BASE.
MEMCG_KIND=none
if read -r kind parent < <(memcg_parent); then
    if mkdir "$parent/rsbench-$$" 2>/dev/null; then
        MEMCG_KIND=$kind
        MEMCG_BASE="$parent/rsbench-$$"
    fi
fi
[ "$MEMCG_KIND" != none ] ||
    warnings+=("no memory cgroup could be made: the proxy's kernel memory (cgroup) is n/a")
export MEMCG_KIND MEMCG_BASE
# The proxy's own CPU time: a CPU accounting cgroup per cell (nanoseconds, every task the
# server ever ran), else /proc/PID/stat of its tree (ticks).
CPUACCT_KIND=none
if read -r kind parent < <(cpuacct_parent); then
    if [ "$kind" = v2 ]; then
        CPUACCT_KIND=v2
    elif mkdir "$parent/rsbench-$$" 2>/dev/null; then
        CPUACCT_KIND=v1
        CPUACCT_BASE="$parent/rsbench-$$"
    fi
fi
[ "$CPUACCT_KIND" != none ] ||
    warnings+=("no CPU accounting cgroup: the proxy's CPU is read from /proc/PID/stat (ticks)")
export CPUACCT_KIND CPUACCT_BASE
# Figure 4: a cpuset cgroup holds the proxy on PROXY_CPU whatever affinity it sets itself.
if root=$(cpuset_root) && cpuset_make "$root/rsbench-$$-pin" "$PROXY_CPU"; then
    CPUSET_DIR="$root/rsbench-$$-pin"
else
    warnings+=("no cpuset cgroup: the proxy was pinned with taskset, which ringsocks' own shard pinning overrides")
fi
export CPUSET_DIR

# Figure 6: one user, its password stored as an sha512-crypt hash as ringsocks wants it.
export USERS_FILE="$TMPROOT/users"
if command -v openssl >/dev/null; then
    hash=$(openssl passwd -6 "$AUTH_PASS")
else
    hash=$(python3 -c "import crypt; print(crypt.crypt('$AUTH_PASS', crypt.mksalt(crypt.METHOD_SHA512)))")
fi
echo "$AUTH_USER:$hash" >"$USERS_FILE"

# ---------------------------------------------------------------------------------- run

RAW="$TMPROOT/raw.tsv"
: >"$RAW"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
stamp=$(date -u +%Y%m%d-%H%M%S)
t0=$(date +%s)
n=${#servers[@]}
cellno=0
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        # Rotate the order each round so slow drift of the machine spreads over all servers.
        s=${servers[$(((i + r - 1) % n))]}
        cellno=$((cellno + 1))
        log "round $r/$ROUNDS: $s (cell $cellno of $((ROUNDS * n)), $(($(date +%s) - t0)) s so far)"
        rc=0
        if [ "$NETNS" = 1 ]; then
            unshare -n -- bash "$HERE/cell.sh" "$s" "$r" "$RAW" || rc=$?
        else
            bash "$HERE/cell.sh" "$s" "$r" "$RAW" || rc=$?
        fi
        [ "$rc" = 0 ] || log "round $r $s: the cell failed (exit $rc); its figures are missing"
    done
    # Figure 8 is not per server: its own namespaces, its own variants (scrape.sh).
    case " $FIGURES " in
    *" scrape "*)
        log "round $r/$ROUNDS: scraping figure ($SCRAPE_VARIANTS, $SCRAPE_SECONDS s each)"
        bash "$HERE/scrape.sh" "$r" "$RAW" || log "round $r: the scraping figure failed (exit $?)"
        ;;
    esac
    # Figure 11: its own processes, cgroup and network namespace, once per round.
    case " $FIGURES " in
    *" huge "*)
        log "round $r/$ROUNDS: $HUGE_TUNNELS tunnels held ($HUGE_SERVERS)"
        rc=0
        if [ "$NETNS" = 1 ]; then
            unshare -n -- bash "$HERE/huge.sh" "$r" "$RAW" || rc=$?
        else
            bash "$HERE/huge.sh" "$r" "$RAW" || rc=$?
        fi
        [ "$rc" = 0 ] || log "round $r: the huge figure failed (exit $rc)"
        ;;
    esac
done
elapsed=$(($(date +%s) - t0))

# -------------------------------------------------------------------------------- report

version_of() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'
}
extra_desc=""
if [ "${#extra_names[@]}" -gt 0 ]; then
    extra_desc="other servers: $(printf 'extra-%s\n' "${extra_names[@]}" | paste -sd, -) (EXTRA_SERVERS)"
fi
isolation="one network namespace per server and round"
[ "$NETNS" = 1 ] || isolation="all cells in the current network namespace"
# The saved TSV carries the run's metadata as "# key=value" lines, so that
# bench/macro/report.py can rebuild the report from it alone.
mkdir -p "$RESULTS_DIR"
prefix="$RESULTS_DIR/macro-$stamp"
{
    echo "# started=$started"
    echo "# elapsed=$elapsed"
    echo "# rounds=$ROUNDS"
    echo "# servers=$SERVERS"
    echo "# ncpu=$(nproc)"
    echo "# cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "# mem_gib=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)"
    echo "# kernel=$(uname -r)"
    echo "# ringsocks_version=$("$RINGSOCKS" --version 2>&1 | head -n 1)"
    echo "# commit=$(git -C "$RS_ROOT" describe --always --dirty 2>/dev/null || echo '?')"
    echo "# microsocks_version=$(version_of microsocks)"
    echo "# dante_version=$(version_of dante-server)"
    echo "# extra_desc=$extra_desc"
    echo "# isolation=$isolation"
    echo "# tp_seconds=$TP_SECONDS"
    echo "# rate_seconds=$RATE_SECONDS"
    echo "# rate_workers=$RATE_WORKERS"
    echo "# warmup_tunnels=$WARMUP_TUNNELS"
    echo "# rtt_seconds=$RTT_SECONDS"
    echo "# mem_tunnels=$MEM_TUNNELS"
    echo "# mem_hold=$MEM_HOLD"
    echo "# big_tunnels=$BIG_TUNNELS"
    echo "# big_hold=$BIG_HOLD"
    echo "# huge_tunnels=$HUGE_TUNNELS"
    echo "# huge_hold=$HUGE_HOLD"
    echo "# huge_timeout=$HUGE_TIMEOUT"
    echo "# nofile_hard=$(ulimit -Hn)"
    echo "# timeout=$TIMEOUT"
    echo "# scrape_seconds=$SCRAPE_SECONDS"
    echo "# udp_seconds=$UDP_SECONDS"
    echo "# udp_window=$UDP_WINDOW"
    echo "# udp_loss_timeout=$UDP_LOSS_TIMEOUT"
    echo "# udprate_rates=$UDPRATE_RATES"
    echo "# udprate_seconds=$UDPRATE_SECONDS"
    echo "# udprate_tunnels=$UDPRATE_TUNNELS"
    echo "# udprate_loss_timeout=$UDPRATE_LOSS_TIMEOUT"
    echo "# scrape_workers=$SCRAPE_WORKERS"
    echo "# scrape_close=$SCRAPE_CLOSE"
    echo "# proxy_cpu=$PROXY_CPU"
    echo "# memcg=$MEMCG_KIND"
    echo "# warnings=$(printf '%s|' "${warnings[@]}")"
    printf 'server\tmetric\tround\tvalue\terrors\n'
    cat "$RAW"
} >"$prefix.tsv"
python3 "$HERE/report.py" "$prefix.tsv" "$prefix" || die "the report could not be written"
echo
cp "$prefix.md" "$RESULTS_DIR/latest.md"
log "saved $prefix.md (and .tsv, plots), copied to $RESULTS_DIR/latest.md; run took $elapsed s"
