#!/usr/bin/env bash
# macro-quick.sh - quick side-by-side macro benchmark: direct, ringsocks (splice and copy relay),
# microsocks and Dante, measured in one run with interleaved rounds.
#
# For every round and every server (the order rotates each round) a fresh network namespace
# (unshare -n, loopback only) gets a target (socksbench serve) and the server, then:
#   throughput, 1 tunnel      socksbench throughput --tunnels 1
#   throughput, 16 tunnels    socksbench throughput --tunnels 16
#   tunnel rate, 64 workers   socksbench connrate --workers 64   (last: it leaves TIME_WAIT)
# The namespace dies with the cell, so no TIME_WAIT or stray socket carries into the next one.
# Medians over the rounds, ratios to direct and to microsocks: a markdown table on stdout and in
# bench/results/quick-<date>.md. Progress and warnings go to stderr.
#
# Usage: bench/macro-quick.sh        (as root, for unshare -n; see docs/benchmarks.md)
# Environment:
#   ROUNDS=3           rounds (each server measured once per round)
#   MEASURE_SECONDS=3  seconds per measurement
#   SERVERS="direct ringsocks-splice ringsocks-copy microsocks dante"   subset, in this order
#   EXTRA_SERVERS="hev=/path/run-hev.sh {PORT}"  more proxies, measured as SERVERS entry extra-hev
#                                                 ({PORT}: where the proxy must listen, 127.0.0.1)
#   NETNS=1            0 runs in the current namespace (TIME_WAIT may then leak between cells)
#   KEEP_TMP=0         1 keeps the temporary directory (server logs, Dante config)
# Servers are started on free ports and stopped by their PID only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/bench/macro-quick.sh"
SB="$ROOT/build/socksbench"
RINGSOCKS="$ROOT/build/ringsocks"

ROUNDS=${ROUNDS:-3}
MEASURE_SECONDS=${MEASURE_SECONDS:-3}
SERVERS=${SERVERS:-"direct ringsocks-splice ringsocks-copy microsocks dante"}
NETNS=${NETNS:-1}
KEEP_TMP=${KEEP_TMP:-0}

log() {
    echo "macro-quick: $*" >&2
}

die() {
    log "$*"
    exit 1
}

# ------------------------------------------------------------------ one cell (in its netns)

PIDS=()

# A random port in 20000-29999 that nothing listens on (the ephemeral range starts higher).
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 10000))
        if [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_listen PORT PID: until something listens on PORT, while PID lives; 10 s at most.
wait_listen() {
    local port=$1 pid=$2
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || return 1
        [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] && return 0
        sleep 0.05
    done
    return 1
}

# stop_pid PID: SIGTERM, then SIGKILL after 5 s. Children (Dante forks its workers) are
# listed before the signal and stopped the same way if they outlive their parent.
stop_pid() {
    local pid=$1 kids c
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for c in $kids; do
        for _ in $(seq 1 100); do
            kill -0 "$c" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$c" 2>/dev/null || true
    done
}

cell_cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
    PIDS=()
}

write_dante_conf() {
    local conf=$1 port=$2 dir=$3 priv=root unpriv=nobody
    # Dante switches to user.unprivileged after start; without root it cannot switch at all.
    if [ "$(id -u)" != 0 ]; then
        priv=$(id -un)
        unpriv=$priv
    fi
    cat >"$conf" <<EOF
# written by bench/macro-quick.sh: loopback only, no authentication, CONNECT only
logoutput: $dir/dante.log
internal: 127.0.0.1 port = $port
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: $priv
user.unprivileged: $unpriv
user.libwrap: $unpriv
client pass {
    from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
    from: 127.0.0.0/8 to: 127.0.0.0/8
    command: connect
}
EOF
}

json_field() {
    sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p" <<<"$2"
}

# measure SERVER ROUND FIGURE-PREFIX OUT DIR ARGS...: one socksbench run, appends result rows.
measure() {
    local server=$1 round=$2 fig=$3 out=$4 dir=$5 res json rc=0 err
    shift 5
    res=$("$SB" "$@" 2>>"$dir/socksbench.err") || rc=$?
    echo "$res" >>"$dir/socksbench.out"
    json=$(tail -n 1 <<<"$res")
    err=$(json_field errors "$json")
    if [ "$rc" != 0 ] || [ -z "$err" ]; then
        log "round $round $server $fig: socksbench failed (exit $rc):" \
            "$(head -n 2 <<<"$res" | tr '\n' ' ')"
    fi
    [ -n "$err" ] || err=NA
    case $fig in
    tp1 | tp16)
        printf '%s\t%s\t%s\t%s\t%s\n' "$server" "${fig}_gbps" "$round" \
            "$( [ "$rc" = 0 ] && json_field gbps "$json" || echo NA)" "$err" >>"$out"
        ;;
    cr64)
        local f
        for f in rate p50_us p99_us; do
            printf '%s\t%s\t%s\t%s\t%s\n' "$server" "cr64_$f" "$round" \
                "$( [ "$rc" = 0 ] && json_field "$f" "$json" || echo NA)" "$err" >>"$out"
        done
        ;;
    esac
    if [ "$err" != NA ] && [ "$err" != 0 ]; then
        log "round $round $server $fig: $err errors; $(grep -m1 '^first error' <<<"$res" || true)"
    fi
}

# cell SERVER ROUND OUT: start target and server, run the three measurements, stop both.
cell() {
    local server=$1 round=$2 out=$3 dir tport pport pid s=$MEASURE_SECONDS
    local -a proxy=()
    dir="$TMPROOT/r$round-$server"
    mkdir -p "$dir"
    trap cell_cleanup EXIT
    if [ "$NETNS" = 1 ]; then
        ip link set lo up || die "cannot bring up lo in the namespace"
    fi
    tport=$(free_port) || die "no free port"
    "$SB" serve --port "$tport" --threads 2 >"$dir/target.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_listen "$tport" "$pid" || die "target did not start, see $dir/target.log"
    if [ "$server" != direct ]; then
        pport=$(free_port) || die "no free port"
        while [ "$pport" = "$tport" ]; do pport=$(free_port); done
        case $server in
        ringsocks-splice | ringsocks-copy)
            "$RINGSOCKS" --listen "127.0.0.1:$pport" --shards 2 --relay "${server#ringsocks-}" --admin off \
                >"$dir/server.log" 2>&1 &
            ;;
        microsocks)
            # microsocks logs one line per connection; it goes to the file, not a terminal.
            microsocks -i 127.0.0.1 -p "$pport" >"$dir/server.log" 2>&1 &
            ;;
        dante)
            write_dante_conf "$dir/danted.conf" "$pport" "$dir"
            # danted(8): TMPDIR holds its lock and mmap files and must be writable by both
            # user.privileged and user.unprivileged; /tmp is, a private mktemp directory is not.
            TMPDIR=/tmp danted -f "$dir/danted.conf" -p "$dir/danted.pid" \
                >"$dir/server.log" 2>&1 &
            ;;
        extra-*)
            # EXTRA_SERVERS="name=command ..." with {PORT} in the command: any other proxy
            # (e.g. a hev-socks5-server built outside the repo), started like the others.
            cmd=$(extra_cmd "${server#extra-}") || die "no command for $server"
            sh -c "exec ${cmd//\{PORT\}/$pport}" >"$dir/server.log" 2>&1 &
            ;;
        *) die "unknown server $server" ;;
        esac
        pid=$!
        PIDS+=("$pid")
        if ! wait_listen "$pport" "$pid"; then
            log "round $round $server: server did not start; log:"
            for f in "$dir/server.log" "$dir/dante.log"; do
                [ -f "$f" ] && tail -n 5 "$f" | sed 's/^/    /' >&2
            done
            for f in tp1_gbps tp16_gbps cr64_rate cr64_p50_us cr64_p99_us; do
                printf '%s\t%s\t%s\tNA\tNA\n' "$server" "$f" "$round" >>"$out"
            done
            return 0
        fi
        proxy=(--proxy "127.0.0.1:$pport")
    fi
    measure "$server" "$round" tp1 "$out" "$dir" throughput --target "127.0.0.1:$tport" \
        "${proxy[@]}" --tunnels 1 --seconds "$s"
    measure "$server" "$round" tp16 "$out" "$dir" throughput --target "127.0.0.1:$tport" \
        "${proxy[@]}" --tunnels 16 --seconds "$s"
    measure "$server" "$round" cr64 "$out" "$dir" connrate --target "127.0.0.1:$tport" \
        "${proxy[@]}" --workers 64 --seconds "$s"
    if [ "$server" != direct ] && ! kill -0 "$pid" 2>/dev/null; then
        log "round $round $server: the server exited during the cell; see $dir/server.log"
    fi
    cell_cleanup
}

# The command of extra server NAME from EXTRA_SERVERS ("name=command;name2=command2").
extra_cmd() {
    local entry
    IFS=';' read -r -a entries <<<"${EXTRA_SERVERS:-}"
    for entry in "${entries[@]}"; do
        if [ "${entry%%=*}" = "$1" ]; then
            printf '%s\n' "${entry#*=}"
            return 0
        fi
    done
    return 1
}

if [ "${1:-}" = __cell ]; then
    shift
    cell "$@"
    exit 0
fi

# --------------------------------------------------------------------------------- driver

case $ROUNDS in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer" ;; esac
case $MEASURE_SECONDS in '' | *[!0-9.]*) die "MEASURE_SECONDS must be a number" ;; esac

read -r -a servers <<<"$SERVERS"
[ "${#servers[@]}" -gt 0 ] || die "SERVERS is empty"
want_ringsocks=0
for s in "${servers[@]}"; do
    case $s in
    direct | microsocks | dante) ;;
    extra-*) extra_cmd "${s#extra-}" >/dev/null || die "$s: not in EXTRA_SERVERS" ;;
    ringsocks-splice | ringsocks-copy) want_ringsocks=1 ;;
    *) die "unknown server '$s' (direct ringsocks-splice ringsocks-copy microsocks dante)" ;;
    esac
done

if [ "$want_ringsocks" = 1 ]; then
    log "building (make)"
    make -C "$ROOT" >&2 ||
        die "make failed; to measure the others only: SERVERS=\"direct microsocks dante\" $0"
    [ -x "$RINGSOCKS" ] || die "$RINGSOCKS missing after make"
else
    log "building (make build/socksbench; ringsocks not requested)"
    make -C "$ROOT" build/socksbench >&2 || die "make build/socksbench failed"
fi
for s in "${servers[@]}"; do
    case $s in
    microsocks) command -v microsocks >/dev/null || die "no microsocks: tools/install-deps.sh" ;;
    dante) command -v danted >/dev/null || die "no danted: tools/install-deps.sh" ;;
    esac
done
command -v ss >/dev/null || die "ss (iproute2) not installed"

if [ "$NETNS" = 1 ] && ! unshare -n true 2>/dev/null; then
    log "warning: cannot create a network namespace (needs root); running in the current one"
    NETNS=0
fi

TMPROOT=$(mktemp -d /tmp/macro-quick.XXXXXX)
export TMPROOT MEASURE_SECONDS NETNS
cleanup() {
    if [ "$KEEP_TMP" = 1 ]; then
        log "kept $TMPROOT"
    else
        rm -rf "$TMPROOT"
    fi
}
trap cleanup EXIT

RAW="$TMPROOT/raw.tsv"
: >"$RAW"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
t0=$(date +%s)
n=${#servers[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        # Rotate the order each round so slow drift of the machine spreads over all servers.
        s=${servers[$(((i + r - 1) % n))]}
        log "round $r/$ROUNDS: $s"
        if [ "$NETNS" = 1 ]; then
            unshare -n -- bash "$SELF" __cell "$s" "$r" "$RAW" || log "round $r $s: cell failed"
        else
            bash "$SELF" __cell "$s" "$r" "$RAW" || log "round $r $s: cell failed"
        fi
    done
done
elapsed=$(($(date +%s) - t0))

mkdir -p "$ROOT/bench/results"
report="$ROOT/bench/results/quick-$(date -u +%Y%m%d-%H%M%S).md"
{
    echo "## Quick macro benchmark, $started"
    echo
    echo "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1))," \
        "kernel $(uname -r); $ROUNDS interleaved rounds, ${MEASURE_SECONDS} s per measurement," \
        "$([ "$NETNS" = 1 ] && echo "one network namespace per server and round" ||
            echo "current network namespace"); run took ${elapsed} s."
    echo "microsocks $(dpkg-query -W -f='${Version}' microsocks 2>/dev/null || echo '?')," \
        "Dante $(dpkg-query -W -f='${Version}' dante-server 2>/dev/null || echo '?')."
    echo
    echo "Median of the rounds; \"rounds\" lists every round's value in round order." \
        "Ratios are this server's median over the reference's median" \
        "(throughput and rate: higher is better; latency: lower is better)." \
        "Errors: failed tunnels summed over the rounds."
    echo
    awk -F '\t' -v order="$SERVERS" '
    function median(list,    a, k, m, i, j, t) {
        k = split(list, a, " ")
        if (k == 0) return ""
        for (i = 2; i <= k; i++)
            for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
                t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
            }
        m = int((k + 1) / 2)
        return (k % 2) ? a[m] : (a[m] + a[m + 1]) / 2
    }
    function fmt(v, fig) {
        if (v == "") return "n/a"
        if (fig ~ /gbps/) return sprintf("%.2f", v)
        return sprintf("%.0f", v)
    }
    function ratio(v, ref) {
        if (v == "" || ref == "" || ref == 0) return "-"
        return sprintf("%.2f", v / ref)
    }
    {
        key = $1 SUBSEP $2
        shown[key] = shown[key] (shown[key] == "" ? "" : " ") ($4 == "NA" ? "fail" : fmt($4, $2))
        if ($4 != "NA") vals[key] = vals[key] " " $4
        if ($5 != "NA") errs[key] += $5
    }
    END {
        nf = split("tp1_gbps tp16_gbps cr64_rate cr64_p50_us cr64_p99_us", figs, " ")
        name["tp1_gbps"] = "throughput, 1 tunnel (Gbit/s)"
        name["tp16_gbps"] = "throughput, 16 tunnels (Gbit/s)"
        name["cr64_rate"] = "tunnel rate, 64 workers (tunnels/s)"
        name["cr64_p50_us"] = "tunnel latency p50, 64 workers (us)"
        name["cr64_p99_us"] = "tunnel latency p99, 64 workers (us)"
        ns = split(order, srv, " ")
        print "| figure | server | median | rounds | x direct | x microsocks | errors |"
        print "| --- | --- | ---: | --- | ---: | ---: | ---: |"
        for (f = 1; f <= nf; f++) {
            fig = figs[f]
            dref = median(vals["direct" SUBSEP fig])
            mref = median(vals["microsocks" SUBSEP fig])
            for (s = 1; s <= ns; s++) {
                key = srv[s] SUBSEP fig
                if (!(key in shown)) continue
                m = median(vals[key])
                printf "| %s | %s | %s | %s | %s | %s | %d |\n", name[fig], srv[s], fmt(m, fig),
                    shown[key], ratio(m, dref), ratio(m, mref), errs[key]
            }
        }
    }' "$RAW"
} | tee "$report"
log "saved $report"
