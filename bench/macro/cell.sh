#!/usr/bin/env bash
# bench/macro/cell.sh SERVER ROUND OUT - one cell of the macro benchmark: every figure for one
# server in one round. run.sh starts it in a fresh network namespace (unshare -n), so its
# ports, sockets and TIME_WAIT die with it. Appends "server metric round value errors" rows
# to OUT (value NA: the measurement failed; skip: does not apply to this server).
#
# Order within the cell, and why:
#   1-2  throughput 1 and 16 tunnels, with CPU samples   the proxy fresh and idle
#   5    memory per held idle tunnel                      after 1-2 warmed the proxy up, before
#                                                         any short tunnels leave TIME_WAIT
#   7    many concurrent tunnels (BIG_SERVERS only)
#   4    pinned 1-byte RTT (the proxy restarted, pinned)
#   3,6  tunnel rate: IP, then by name (socks5h), then with user/password (proxy restarted
#        with authentication); last because they leave the most TIME_WAIT behind
#   9    tunnel rate with the target closing first (connrate --close target), beside 3's
#        client RST, with the proxy's CPU per 1,000 tunnels for both; after 3 and by name,
#        because its TIME_WAIT (held by the target, the first closer) must not weigh on them
#   10   UDP ASSOCIATE: 1 and 64 associations, 64 B and 1400 B datagrams (proxy restarted);
#        last, on a fresh proxy, as the TCP figures' sockets do not bear on it
# The configuration comes from run.sh through the environment (see run.sh's header).
set -euo pipefail

# shellcheck source=bench/macro/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVER=$1
ROUND=$2
OUT=$3
DIR="$TMPROOT/r$ROUND-$SERVER"
mkdir -p "$DIR"
PIDS=()
MEMCG=""

clog() {
    log "round $ROUND $SERVER: $*"
}

row() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$SERVER" "$1" "$ROUND" "$2" "${3:-0}" >>"$OUT"
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local i
    stop_server
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_tree "${PIDS[i]}"
    done
    PIDS=()
    stop_cgroup "$MEMCG"
    rmdir_cgroup "$MEMCG"
    if [ "${CPUACCT_KIND:-none}" = v1 ]; then
        stop_cgroup "$CPUACCT"
        rmdir_cgroup "$CPUACCT"
    fi
}
trap cleanup EXIT

# proxy_cpu_ticks: the server's CPU time so far, in ticks: from its CPU accounting cgroup
# (every task it ever ran, in nanoseconds) when the cell has one, else from /proc (its tree
# now, plus the children it reaped; tick-sampled).
proxy_cpu_ticks() {
    if [ "$CPUACCT_KIND" != none ]; then
        cgroup_cpu_ticks "$CPUACCT_KIND" "$CPUACCT"
    else
        tree_cpu_ticks "$SPID"
    fi
}

want() {
    case " $FIGURES " in *" $1 "*) return 0 ;; esac
    return 1
}

write_dante_conf() {
    local conf=$1 port=$2 priv=root unpriv=nobody
    # Dante switches to user.unprivileged after start; without root it cannot switch at all.
    if [ "$(id -u)" != 0 ]; then
        priv=$(id -un)
        unpriv=$priv
    fi
    cat >"$conf" <<EOF
# written by bench/macro/cell.sh: loopback only, no authentication, CONNECT and UDP ASSOCIATE
logoutput: $DIR/dante.log
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
    command: connect udpassociate udpreply
}
EOF
}

# server_cmd MODE PORT: sets CMD to the command line of this cell's server for MODE plain,
# pinned (ringsocks with one shard, direct with one thread) or auth; status 2 when the server
# has no such mode.
server_cmd() {
    local mode=$1 port=$2 cmd shards=2
    local -a extra=()
    [ "$mode" != pinned ] || shards=1
    case $SERVER in
    direct)
        # socksload's own target answering the SOCKS5 handshake itself: no proxy in between.
        [ "$mode" != auth ] || return 2
        CMD=("$SOCKSLOAD" serve --socks5 --port "$port" --threads "$shards")
        ;;
    ringsocks-*)
        # ringsocks-ENGINE: --relay ENGINE, so a new engine needs no change here.
        # shellcheck disable=SC2206 # RINGSOCKS_ARGS is a list of flags
        extra=(${RINGSOCKS_ARGS:-})
        if [ "$mode" = auth ]; then
            extra+=(--auth password --users "$USERS_FILE")
        fi
        CMD=("$RINGSOCKS" --listen "127.0.0.1:$port" --shards "$shards"
            --relay "${SERVER#ringsocks-}" --admin off "${extra[@]}")
        ;;
    microsocks)
        # microsocks logs a line per connection; it goes to the cell's log file.
        CMD=(microsocks -i 127.0.0.1 -p "$port")
        if [ "$mode" = auth ]; then
            CMD+=(-u "$AUTH_USER" -P "$AUTH_PASS")
        fi
        ;;
    dante)
        # Dante's username method checks system accounts (passwd/shadow): not set up here.
        [ "$mode" != auth ] || return 2
        write_dante_conf "$DIR/danted-$mode.conf" "$port"
        # danted(8): TMPDIR holds its lock and mmap files and must be writable by both
        # user.privileged and user.unprivileged; /tmp is, a private mktemp directory is not.
        CMD=(env TMPDIR=/tmp danted -f "$DIR/danted-$mode.conf" -p "$DIR/danted.pid")
        ;;
    extra-*)
        if [ "$mode" = auth ]; then
            cmd=$(extra_cmd EXTRA_AUTH "${SERVER#extra-}") || return 2
            cmd=${cmd//\{USER\}/$AUTH_USER}
            cmd=${cmd//\{PASS\}/$AUTH_PASS}
        else
            cmd=$(extra_cmd EXTRA_SERVERS "${SERVER#extra-}") || return 2
        fi
        CMD=(sh -c "exec ${cmd//\{PORT\}/$port}")
        ;;
    *) return 2 ;;
    esac
    return 0
}

# start_server MODE PORT: starts the server in the cell's memory cgroup (and, for pinned, on
# PROXY_CPU; direct, which is the target, on CLIENT_CPU) and waits until it listens. Sets
# SPID. Status 2: no such mode for this server; 1: it did not start.
start_server() {
    local mode=$1 port=$2 cgs="" f
    local -a pin=()
    server_cmd "$mode" "$port" || return 2
    [ -z "$MEMCG" ] || cgs="$MEMCG/cgroup.procs"
    [ "${CPUACCT_KIND:-none}" != v1 ] || cgs="$cgs $CPUACCT/cgroup.procs"
    if [ "$mode" = pinned ]; then
        if [ "$SERVER" = direct ]; then
            pin=(taskset -c "$CLIENT_CPU")
        elif [ -n "${CPUSET_DIR:-}" ]; then
            cgs="$cgs $CPUSET_DIR/cgroup.procs"
        else
            pin=(taskset -c "$PROXY_CPU") # ringsocks' own pinning may escape it: checked later
        fi
    fi
    # The shell joins the cgroups, then becomes the server: $! is the server's PID.
    # shellcheck disable=SC2016 # expanded by the inner shell
    CG_PROCS="$cgs" "${pin[@]}" sh -c 'for f in $CG_PROCS; do echo $$ >"$f"; done; exec "$@"' \
        sh "${CMD[@]}" >>"$DIR/server-$mode.log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    if ! wait_listen "$port" "$SPID"; then
        clog "server ($mode) did not start; its log:"
        for f in "$DIR/server-$mode.log" "$DIR/dante.log"; do
            if [ -f "$f" ]; then tail -n 5 "$f" | sed 's/^/    /' >&2; fi
        done
        stop_server
        return 1
    fi
    return 0
}

# stop_server: the server, and through the cell's memory cgroup (which holds the server alone)
# anything it forked, even away from its process tree.
stop_server() {
    [ -n "${SPID:-}" ] || return 0
    stop_tree "$SPID" "$MEMCG"
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$SPID" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    SPID=""
}

# load NAME SECONDS ARGS...: one socksload run, JSON to $DIR/NAME.json (on CPU PIN_CLIENT when
# set). Bounded by its own --duration and --timeout, and by timeout(1) in case it ever hangs. Status 1 when there is
# no JSON result; errors are logged with their kinds.
load() {
    local name=$1 secs=$2 rc=0 limit errs
    shift 2
    limit=$(awk -v s="$secs" -v t="$TIMEOUT" 'BEGIN { printf "%d", s + 3 * t + 30 }')
    local -a pin=()
    [ -z "${PIN_CLIENT:-}" ] || pin=(taskset -c "$PIN_CLIENT")
    timeout -k 5 "$limit" "${pin[@]}" "$SOCKSLOAD" "$@" --timeout "$TIMEOUT" --json \
        >"$DIR/$name.json" 2>"$DIR/$name.err" || rc=$?
    if ! jq -e .mode "$DIR/$name.json" >/dev/null 2>&1; then
        clog "$name: socksload gave no result (exit $rc): $(tail -c 300 "$DIR/$name.err" | tr '\n' ' ')"
        return 1
    fi
    errs=$(jnum "$DIR/$name.json" .errors.total)
    if [ "$errs" != 0 ]; then
        clog "$name: $errs errors: $(jq -c '.errors | with_entries(select(.value != 0 and .value != {}))' \
            "$DIR/$name.json")"
    fi
    return 0
}

lerr() {
    jnum "$DIR/$1.json" .errors.total
}

na_rows() {
    local m
    for m in "$@"; do row "$m" NA NA; done
}

skip_rows() {
    local m
    for m in "$@"; do row "$m" skip 0; done
}

# ------------------------------------------------------------------------------- figures

fig_throughput() {
    local n threads c0 c1 m0 m1 bytes gb e gbps cpu_proxy cpu_machine
    for n in 1 16; do
        threads=1
        [ "$n" -gt 1 ] && threads=$TP_THREADS
        c0=NA
        [ "$SERVER" != direct ] && c0=$(proxy_cpu_ticks)
        m0=$(machine_busy_ticks)
        if ! load "tp$n" "$TP_SECONDS" throughput --proxy "$PROXY" --target "$TARGET" \
            --tunnels "$n" --threads "$threads" --duration "$TP_SECONDS"; then
            na_rows "tp${n}_gbps" "cpu${n}_proxy" "cpu${n}_machine"
            continue
        fi
        m1=$(machine_busy_ticks)
        c1=NA
        [ "$SERVER" != direct ] && c1=$(proxy_cpu_ticks)
        bytes=$(jnum "$DIR/tp$n.json" '.bytes_down + .bytes_up')
        gb=$(calc "$bytes / 1e9")
        e=$(lerr "tp$n")
        gbps=$(jnum "$DIR/tp$n.json" .gbps)
        cpu_proxy=$(calc "($c1 - $c0) / $CLK_TCK / $gb")
        cpu_machine=$(calc "($m1 - $m0) / $CLK_TCK / $gb")
        row "tp${n}_gbps" "$gbps" "$e"
        if [ "$SERVER" = direct ]; then
            row "cpu${n}_proxy" skip
        else
            row "cpu${n}_proxy" "$cpu_proxy" "$e"
        fi
        row "cpu${n}_machine" "$cpu_machine" "$e"
        clog "throughput $n tunnel(s): $gbps Gbit/s, CPU per GB:" \
            "$([ "$SERVER" = direct ] || echo "proxy $cpu_proxy s, ")machine $cpu_machine s"
    done
}

# open_filter: the ss filter of this cell's open tunnels: the proxy's connections to the target,
# or the direct target's accepted ones.
open_filter() {
    if [ "$SERVER" = direct ]; then echo "sport = :$TPORT"; else echo "dport = :$TPORT"; fi
}

# wait_open N DEADLINE: until N tunnels are set up (established, see open_filter) or the
# deadline (epoch seconds) passes. Prints the count seen last.
wait_open() {
    local n=$1 deadline=$2 filter c=0
    filter=$(open_filter)
    while :; do
        c=$(established_count "$filter")
        [ "$c" -ge "$n" ] && break
        awk -v a="$(date +%s.%N)" -v d="$deadline" 'BEGIN { exit !(a + 0 < d + 0) }' || break
        sleep 0.2
    done
    echo "$c"
}

# Figure 5. The per-tunnel figures divide by the tunnels open when the sample was taken (at
# most MEM_TUNNELS); their errors column is socksload's errors or, when larger, the tunnels
# that were not open then (MEM_TUNNELS - open). None open: they are NA (fail).
fig_memory() {
    local n=$MEM_TUNNELS pid rss0 pss0 rss1 pss1 k0 k1 s0 s1 t0 t1 b0 b1 open deadline filter
    local e per short rss pss kcg sockbuf ksys tcpmem
    filter="( sport = :$PPORT or dport = :$TPORT )"
    read -r rss0 pss0 < <(tree_mem_kb "$SPID")
    k0=$(memcg_kernel_bytes "$MEMCG_KIND" "$MEMCG")
    s0=$(machine_kernel_kb)
    t0=$(sockstat_tcp_pages)
    b0=$(sock_buffer_bytes "$filter")
    deadline=$(awk -v h="$MEM_HOLD" -v now="$(date +%s.%N)" 'BEGIN { printf "%.2f", now + h - 1 }')
    load mem "$MEM_HOLD" hold --proxy "$PROXY" --target "$TARGET" --tunnels "$n" \
        --hold "$MEM_HOLD" &
    pid=$!
    wait_open "$n" "$deadline" >/dev/null
    sleep "$MEM_SETTLE" # the first round trip of every tunnel, and the proxy's bookkeeping
    open=$(established_count "$(open_filter)")
    read -r rss1 pss1 < <(tree_mem_kb "$SPID")
    k1=$(memcg_kernel_bytes "$MEMCG_KIND" "$MEMCG")
    s1=$(machine_kernel_kb)
    t1=$(sockstat_tcp_pages)
    b1=$(sock_buffer_bytes "$filter")
    if ! wait "$pid"; then
        na_rows mem_held mem_rss_B mem_pss_B kmem_cg_B sockbuf_B kmem_sys_raw_B tcpmem_B
        return 0
    fi
    e=$(lerr mem)
    row mem_held "$(jnum "$DIR/mem.json" .units)" "$e"
    per=$((open < n ? open : n))
    short=$((n - per))
    if [ "$per" -eq 0 ]; then
        clog "memory: none of the $n tunnels was open when sampled; no per-tunnel figures"
        if [ "$SERVER" = direct ]; then
            skip_rows mem_rss_B mem_pss_B kmem_cg_B sockbuf_B
        else
            na_rows mem_rss_B mem_pss_B kmem_cg_B sockbuf_B
        fi
        na_rows kmem_sys_raw_B tcpmem_B
        return 0
    fi
    if [ "$short" -gt 0 ]; then
        clog "memory: only $open of $n tunnels were open when sampled; per-tunnel figures use $open"
        case $e in '' | *[!0-9]*) e=$short ;; *) [ "$e" -ge "$short" ] || e=$short ;; esac
    fi
    rss=$(calc "($rss1 - $rss0) * 1024 / $per")
    pss=$(calc "($pss1 - $pss0) * 1024 / $per")
    kcg=$(calc "($k1 - $k0) / $per")
    sockbuf=$(calc "($b1 - $b0) / $per")
    ksys=$(calc "($s1 - $s0) * 1024 / $per")
    tcpmem=$(calc "($t1 - $t0) * 4096 / $per")
    if [ "$SERVER" = direct ]; then
        skip_rows mem_rss_B mem_pss_B kmem_cg_B sockbuf_B
    else
        row mem_rss_B "$rss" "$e"
        row mem_pss_B "$pss" "$e"
        row kmem_cg_B "$kcg" "$e"
        row sockbuf_B "$sockbuf" "$e"
    fi
    row kmem_sys_raw_B "$ksys" "$e"
    row tcpmem_B "$tcpmem" "$e"
    if [ "$SERVER" = direct ]; then
        clog "memory, $per held: machine kernel $ksys B per tunnel"
    else
        clog "memory, $per held, per tunnel: user RSS $rss B, PSS $pss B," \
            "kernel (cgroup) $kcg B, machine kernel $ksys B"
    fi
}

fig_bighold() {
    local n=$BIG_TUNNELS pid open deadline
    deadline=$(awk -v h="$BIG_HOLD" -v now="$(date +%s.%N)" 'BEGIN { printf "%.2f", now + h - 0.5 }')
    load big "$BIG_HOLD" hold --proxy "$PROXY" --target "$TARGET" --tunnels "$n" \
        --threads 2 --hold "$BIG_HOLD" &
    pid=$!
    open=$(wait_open "$n" "$deadline")
    if ! wait "$pid"; then
        na_rows big_held big_open
        return 0
    fi
    row big_held "$(jnum "$DIR/big.json" .units)" "$(lerr big)"
    row big_open "$open" "$(lerr big)"
    clog "$n tunnels: $open open at once, $(jnum "$DIR/big.json" .units) held and verified"
}

# check_pinned: 1 when every thread of the pinned proxy may run on PROXY_CPU only, 0 when one
# may run elsewhere, NA when no thread could be read (the proxy is gone): unknown, not pinned.
check_pinned() {
    local p bad=0 seen=0 allowed
    for p in $(tree_pids "$SPID"); do
        while read -r allowed; do
            seen=$((seen + 1))
            [ "$allowed" = "$PROXY_CPU" ] || bad=1
        done < <(cat /proc/"$p"/task/*/status 2>/dev/null |
            sed -n 's/^Cpus_allowed_list:[[:space:]]*//p')
    done
    ps -L -o tid=,psr=,comm= -p "$(tree_pids "$SPID" | paste -sd,)" >"$DIR/pinned-threads.txt" 2>&1 || true
    if [ "$seen" = 0 ]; then
        echo NA
    else
        echo $((1 - bad))
    fi
}

fig_rtt() {
    local pid pinned=1 PIN_CLIENT=$CLIENT_CPU
    local -a target=()
    # Direct: the client talks to the direct target, which runs on CLIENT_CPU too. A proxy:
    # the target is socksload's embedded one, in the client's process on CLIENT_CPU.
    [ "$SERVER" != direct ] || target=(--target "$TARGET")
    load rtt "$RTT_SECONDS" latency --proxy "$PROXY" "${target[@]}" --tunnels 1 --size 1 \
        --duration "$RTT_SECONDS" &
    pid=$!
    sleep 1
    if [ "$SERVER" != direct ]; then
        pinned=$(check_pinned)
    fi
    if ! wait "$pid"; then
        na_rows rtt_p50_us rtt_p99_us
        return 0
    fi
    row rtt_p50_us "$(jnum "$DIR/rtt.json" .latency_us.p50)" "$(lerr rtt)"
    row rtt_p99_us "$(jnum "$DIR/rtt.json" .latency_us.p99)" "$(lerr rtt)"
    if [ "$SERVER" != direct ]; then
        row rtt_pinned "$pinned" 0
    fi
    if [ "$pinned" = NA ]; then
        clog "warning: could not read the proxy's threads (has it exited?): pinning unknown"
    elif [ "$pinned" != 1 ]; then
        clog "warning: the proxy's threads were not all pinned to CPU $PROXY_CPU" \
            "(see $DIR/pinned-threads.txt)"
    fi
    clog "pinned 1-byte RTT p50 $(jnum "$DIR/rtt.json" .latency_us.p50) us"
}

# rate NAME PROXY-URL TARGET [CONNRATE-ARGS...]: one connrate run (CONNRATE-ARGS, e.g. --close
# target, go to the warm-up too); prints the rate (NA on failure). A warm-up of
# WARMUP_TUNNELS tunnels goes first and is not measured, so the figure is the steady state:
# a credential checked once with the slow crypt(3) hash and then served from the proxy's
# cache, resolver caches filled (a cold start is another figure: see docs/benchmarks.md).
# The proxy's CPU ticks over the measured run alone go to $DIR/NAME.ticks (see cpu_per_k).
rate() {
    local name=$1 url=$2 dest=$3 c0=NA c1=NA
    shift 3
    if [ "$WARMUP_TUNNELS" -gt 0 ]; then
        load "$name-warmup" 2 connrate --proxy "$url" --target "$dest" --workers 8 \
            --count "$WARMUP_TUNNELS" --duration 2 "$@" >/dev/null 2>&1 || true
    fi
    [ "$SERVER" = direct ] || c0=$(proxy_cpu_ticks)
    if ! load "$name" "$RATE_SECONDS" connrate --proxy "$url" --target "$dest" \
        --workers "$RATE_WORKERS" --threads "$RATE_THREADS" --duration "$RATE_SECONDS" "$@"; then
        echo NA >"$DIR/$name.ticks"
        echo NA
        return 0
    fi
    [ "$SERVER" = direct ] || c1=$(proxy_cpu_ticks)
    calc "$c1 - $c0" >"$DIR/$name.ticks"
    jnum "$DIR/$name.json" .rate
}

# cpu_per_k NAME: the proxy's own CPU (user + system, /proc/PID/stat of its process tree) over
# rate NAME's measured run per 1,000 tunnels completed, in ms; NA when unknown or none done.
cpu_per_k() {
    local ticks units
    ticks=$(cat "$DIR/$1.ticks" 2>/dev/null || echo NA)
    units=$(jnum "$DIR/$1.json" .units)
    case $units in '' | NA | 0) echo NA ;; *) calc "$ticks * 1000000 / $CLK_TCK / $units" ;; esac
}

# rate_rows NAME METRIC RATE: the rows of rate NAME's run: METRIC (its RATE), then NAME_p50_us,
# NAME_p99_us and NAME_cpu_ms, the proxy's CPU per 1,000 tunnels (skip for direct: no proxy).
rate_rows() {
    local e
    e=$(lerr "$1")
    row "$2" "$3" "$e"
    row "$1_p50_us" "$(jnum "$DIR/$1.json" .latency_us.p50)" "$e"
    row "$1_p99_us" "$(jnum "$DIR/$1.json" .latency_us.p99)" "$e"
    if [ "$SERVER" = direct ]; then
        row "$1_cpu_ms" skip
    else
        row "$1_cpu_ms" "$(cpu_per_k "$1")" "$e"
    fi
    clog "$1: $3 tunnels/s, p50 $(jnum "$DIR/$1.json" .latency_us.p50) us," \
        "p99 $(jnum "$DIR/$1.json" .latency_us.p99) us$([ "$SERVER" = direct ] ||
            echo ", proxy CPU $(cpu_per_k "$1") ms per 1,000 tunnels")"
}

# Figure 10: UDP ASSOCIATE, closed loop. For 1 and 64 associations and 64 B and 1400 B
# datagrams, one socksload udp run of UDP_SECONDS with UDP_WINDOW datagrams in flight per
# association, each echoed by the target and verified; a datagram not back within
# UDP_LOSS_TIMEOUT is lost and its slot sends on. Rows per run udpN_SIZE_: rate (echoes per
# second), lost (count), loss_pct (lost / sent) and cpu_s (the proxy's own CPU per 1,000,000
# datagrams echoed; skip for direct). The rate row's errors are socksload's errors other than
# the losses, which have their own rows.
# shellcheck disable=SC2317 # called through udp_phase
udp_runs() {
    echo "1 64 1 1400 64 64 64 1400"
}

# shellcheck disable=SC2317 # called through udp_phase
fig_udp() {
    local n size name threads c0 c1 e lost pct rate cpu units
    # shellcheck disable=SC2046 # pairs of numbers
    set -- $(udp_runs)
    while [ "$#" -ge 2 ]; do
        n=$1 size=$2
        shift 2
        name="udp${n}_$size"
        threads=1
        [ "$n" -gt 1 ] && threads=$UDP_THREADS
        c0=NA
        [ "$SERVER" = direct ] || c0=$(proxy_cpu_ticks)
        if ! load "$name" "$UDP_SECONDS" udp --proxy "$PROXY" --target "$TARGET" \
            --tunnels "$n" --threads "$threads" --window "$UDP_WINDOW" --size "$size" \
            --duration "$UDP_SECONDS" --loss-timeout "$UDP_LOSS_TIMEOUT"; then
            na_rows "${name}_rate" "${name}_lost" "${name}_loss_pct" "${name}_cpu_s"
            continue
        fi
        c1=NA
        [ "$SERVER" = direct ] || c1=$(proxy_cpu_ticks)
        lost=$(jnum "$DIR/$name.json" .udp.lost)
        pct=$(jnum "$DIR/$name.json" .udp.loss_pct)
        rate=$(jnum "$DIR/$name.json" .rate)
        units=$(jnum "$DIR/$name.json" .udp.echoed)
        e=$(calc "$(lerr "$name") - $lost")
        row "${name}_rate" "$rate" "$e"
        row "${name}_lost" "$lost" "$e"
        row "${name}_loss_pct" "$pct" "$e"
        if [ "$SERVER" = direct ]; then
            row "${name}_cpu_s" skip
        else
            case $units in '' | NA | 0) cpu=NA ;; *) cpu=$(calc "($c1 - $c0) / $CLK_TCK * 1000000 / $units") ;; esac
            row "${name}_cpu_s" "$cpu" "$e"
        fi
        clog "udp, $n association(s), $size B: $rate datagrams/s echoed, lost $lost ($pct %)$(
            [ "$SERVER" = direct ] || echo ", proxy CPU $cpu s per 1,000,000 datagrams")"
    done
}

# shellcheck disable=SC2317 # called through udp_phase
udp_metrics() {
    local n size
    # shellcheck disable=SC2046 # pairs of numbers
    set -- $(udp_runs)
    while [ "$#" -ge 2 ]; do
        n=$1 size=$2
        shift 2
        echo "udp${n}_${size}_rate udp${n}_${size}_lost udp${n}_${size}_loss_pct udp${n}_${size}_cpu_s"
    done
}

# Figure 12: the UDP loss knee, open loop. For 64 B and 1400 B datagrams and each rate of
# UDPRATE_RATES (datagrams per second in all), one socksload udp --rate run of UDPRATE_SECONDS
# over UDPRATE_TUNNELS associations (UDP_THREADS threads): sent on a fixed schedule whatever
# the echoes do, then UDPRATE_LOSS_TIMEOUT for the last echoes; loss = sent - echoed. Rows per
# size: udprate_SIZE_RATE_loss_pct (lost / sent, %), udprate_SIZE_RATE_sent (the send rate
# socksload achieved / the asked rate: below 0.95 socksload, not the server, bounded that
# rate) and udprate_SIZE_knee: the highest rate of the sweep that, with every lower one, had
# loss < 0.1 % at a send rate of at least 0.95 of the asked one (0: not even the lowest).
# The rate rows' errors are socksload's errors other than the losses.
# shellcheck disable=SC2317 # called through udp_phase
fig_udprate() {
    local size rate name e pct sent asked ratio knee ok
    for size in 64 1400; do
        knee=0 ok=1
        for rate in $UDPRATE_RATES; do
            name="udprate_${size}_$rate"
            if ! load "$name" "$UDPRATE_SECONDS" udp --proxy "$PROXY" --target "$TARGET" \
                --tunnels "$UDPRATE_TUNNELS" --threads "$UDP_THREADS" --size "$size" \
                --rate "$rate" --duration "$UDPRATE_SECONDS" --loss-timeout "$UDPRATE_LOSS_TIMEOUT"; then
                na_rows "${name}_loss_pct" "${name}_sent"
                ok=0
                continue
            fi
            pct=$(jnum "$DIR/$name.json" .udp.loss_pct)
            sent=$(jnum "$DIR/$name.json" .udp.rate_sent)
            asked=$(jnum "$DIR/$name.json" .udp.rate_asked)
            ratio=$(calc "$sent / $asked")
            e=$(calc "$(lerr "$name") - $(jnum "$DIR/$name.json" .udp.lost)")
            row "${name}_loss_pct" "$pct" "$e"
            row "${name}_sent" "$ratio" "$e"
            if [ "$ok" = 1 ] && [ "$e" = 0 ] && awk -v p="$pct" -v r="$ratio" 'BEGIN { exit !(p < 0.1 && r >= 0.95) }'; then
                knee=$rate
            else
                ok=0
            fi
            clog "udp open loop, $UDPRATE_TUNNELS associations, $size B, $rate/s asked:" \
                "sent $sent/s, loss $pct %"
        done
        row "udprate_${size}_knee" "$knee" 0
        clog "udp loss knee, $size B: $knee datagrams/s"
    done
}

# shellcheck disable=SC2317 # called through udp_phase
udprate_metrics() {
    local size rate
    for size in 64 1400; do
        for rate in $UDPRATE_RATES; do
            echo "udprate_${size}_${rate}_loss_pct udprate_${size}_${rate}_sent"
        done
        echo "udprate_${size}_knee"
    done
}

# -------------------------------------------------------------------------------- the cell

if [ "$NETNS" = 1 ]; then
    ip link set lo up || die "cannot bring up lo in the namespace"
fi
# Many concurrent tunnels need many descriptors: the proxy and socksload inherit this. An
# "unlimited" hard limit still stops at fs.nr_open.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n "$(cat /proc/sys/fs/nr_open)" 2>/dev/null ||
    clog "warning: could not raise the descriptor limit (ulimit -n $(ulimit -n))"

if [ -n "${MEMCG_BASE:-}" ]; then
    MEMCG="$MEMCG_BASE/r$ROUND-$SERVER"
    mkdir -p "$MEMCG" 2>/dev/null || MEMCG=""
fi
[ -n "$MEMCG" ] || MEMCG_KIND=none
# The proxy's own CPU: a CPU accounting cgroup per cell (v1), or the memory cgroup (v2).
CPUACCT=""
case ${CPUACCT_KIND:-none} in
v1)
    CPUACCT="$CPUACCT_BASE/r$ROUND-$SERVER"
    mkdir -p "$CPUACCT" 2>/dev/null || CPUACCT_KIND=none
    ;;
v2) [ -n "$MEMCG" ] && CPUACCT=$MEMCG || CPUACCT_KIND=none ;;
*) CPUACCT_KIND=none ;;
esac

TPORT=$(free_port) || die "no free port"
if [ "$SERVER" = direct ]; then
    PPORT=$TPORT
else
    "$SOCKSLOAD" serve --port "$TPORT" --threads 2 >"$DIR/target.log" 2>&1 &
    PIDS+=($!)
    wait_listen "$TPORT" "$!" || die "the target did not start, see $DIR/target.log"
    PPORT=$(free_port "$TPORT") || die "no free port"
fi
PROXY="socks5://127.0.0.1:$PPORT"
TARGET="127.0.0.1:$TPORT"

want_big=0
case " $BIG_SERVERS " in *" $SERVER "*) want big && want_big=1 ;; esac
# What phase 1 measures, for the "fail" rows when its server does not start.
phase1_metrics=""
want throughput && phase1_metrics="tp1_gbps cpu1_proxy cpu1_machine tp16_gbps cpu16_proxy cpu16_machine"
want memory && phase1_metrics="$phase1_metrics mem_held mem_rss_B mem_pss_B kmem_cg_B sockbuf_B \
kmem_sys_raw_B tcpmem_B"
[ "$want_big" = 0 ] || phase1_metrics="$phase1_metrics big_held big_open"

# Phase 1: the plain server: throughput, memory, many tunnels.
if want throughput || want memory || [ "$want_big" = 1 ]; then
    if start_server plain "$PPORT"; then
        want throughput && fig_throughput
        want memory && fig_memory
        [ "$want_big" = 1 ] && fig_bighold
        if ! kill -0 "$SPID" 2>/dev/null; then
            clog "the server exited during the cell; see $DIR/server-plain.log"
        fi
        stop_server
    else
        # shellcheck disable=SC2086 # a list of metric names
        na_rows $phase1_metrics
    fi
fi

# Phase 2: pinned RTT.
if want rtt; then
    if [ "$SERVER" = direct ]; then
        # The direct target restarts on CLIENT_CPU with one thread; its port changes.
        PPORT_RTT=$(free_port "$TPORT") || die "no free port"
        if start_server pinned "$PPORT_RTT"; then
            PROXY="socks5://127.0.0.1:$PPORT_RTT"
            TARGET="127.0.0.1:$PPORT_RTT"
            fig_rtt
            PROXY="socks5://127.0.0.1:$PPORT"
            TARGET="127.0.0.1:$TPORT"
            stop_server
        else
            na_rows rtt_p50_us rtt_p99_us
        fi
    elif start_server pinned "$PPORT"; then
        fig_rtt
        stop_server
    else
        na_rows rtt_p50_us rtt_p99_us
    fi
fi

# Phase 3: tunnel rate by IP and by name on the plain server, then with the target closing
# first (figure 9), then with user/password.
if want rate || want name || want tclose; then
    if start_server plain "$PPORT"; then
        r=NA
        if want rate; then
            r=$(rate rate "$PROXY" "$TARGET")
            rate_rows rate rate "$r"
        fi
        if want name; then
            if [ "$SERVER" = direct ]; then
                skip_rows name_rate name_ratio
            else
                n=$(rate name "socks5h://127.0.0.1:$PPORT" "localhost:$TPORT")
                row name_rate "$n" "$(lerr name)"
                row name_ratio "$(calc "$n / $r")" "$(lerr name)"
                clog "tunnel rate by name $n/s"
            fi
        fi
        if want tclose; then
            # The target closes first (HTTP/1.0): the proxy carries its FIN to the client.
            rate_rows tclose tclose_rate "$(rate tclose "$PROXY" "$TARGET" --close target)"
        fi
        stop_server
    else
        want rate && na_rows rate rate_p50_us rate_p99_us rate_cpu_ms
        want name && na_rows name_rate name_ratio
        want tclose && na_rows tclose_rate tclose_p50_us tclose_p99_us tclose_cpu_ms
    fi
fi
if want auth; then
    rc=0
    start_server auth "$PPORT" || rc=$?
    if [ "$rc" = 0 ]; then
        a=$(rate auth "socks5://$AUTH_USER:$AUTH_PASS@127.0.0.1:$PPORT" "$TARGET")
        row auth_rate "$a" "$(lerr auth)"
        row auth_ratio "$(calc "$a / ${r:-NA}")" "$(lerr auth)"
        clog "tunnel rate with user/password $a/s"
        stop_server
    elif [ "$rc" = 2 ]; then
        skip_rows auth_rate auth_ratio
    else
        na_rows auth_rate auth_ratio
    fi
fi
# udp_phase FIGURE MEASURE METRICS: a UDP figure on a fresh plain server (MEASURE writes its
# rows; METRICS lists them for skip or fail); microsocks has no UDP ASSOCIATE.
udp_phase() {
    want "$1" || return 0
    if [ "$SERVER" = microsocks ]; then
        # shellcheck disable=SC2046 # a list of metric names
        skip_rows $("$3")
    elif start_server plain "$PPORT"; then
        "$2"
        stop_server
    else
        # shellcheck disable=SC2046 # a list of metric names
        na_rows $("$3")
    fi
}
# Phase 4: UDP ASSOCIATE, closed loop (figure 10). Phase 5: the UDP loss knee (figure 12).
udp_phase udp fig_udp udp_metrics
udp_phase udprate fig_udprate udprate_metrics
exit 0
