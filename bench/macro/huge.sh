#!/usr/bin/env bash
# bench/macro/huge.sh ROUND OUT - figure 11 of the macro benchmark (FIGURES=huge, issue #17):
# HUGE_TUNNELS (default 100,000) idle tunnels held at once on this one node, with the user and
# kernel memory each costs. run.sh starts it once per round in a fresh network namespace
# (unshare -n); it can also run alone: unshare -n bash bench/macro/huge.sh 1 /tmp/huge.tsv
#
# Why several processes: no process here may hold more descriptors than the hard
# RLIMIT_NOFILE (20,000 on the machine the figures were first taken on, and raising it needs
# CAP_SYS_RESOURCE), and a ringsocks tunnel holds two. So the tunnels are spread evenly over
# as many proxies as needed for at most HUGE_PER_PROC each (itself at most (limit - 1024) / 2:
# 12 proxies for 100,000 tunnels under 20,000), each on its own port, all in one memory cgroup and this one
# network namespace; each proxy has its own target (socksload serve, its own port, so each
# proxy->target destination has its own ephemeral-port space) and its own client
# (socksload hold). The per-tunnel figures do not depend on the split: the idle proxies are
# sampled first and their fixed cost (binary, connection table, rings) is subtracted; only
# the growth from idle to all tunnels held is divided by the tunnels.
#
# Variants (HUGE_SERVERS, default "ringsocks-auto direct"):
#   ringsocks-auto  client -> ringsocks (--relay auto, 2 shards) -> target, per group
#   direct          client -> `socksload serve --socks5` (the target answers SOCKS5 itself):
#                   no proxy; its machine kernel figure is what the client and target sockets
#                   alone cost, to compare with ringsocks' (which has two more sockets)
# Rows appended to OUT ("server metric round value errors"; server is the variant):
#   huge_held         tunnels held and verified (a round trip each after the hold), all clients
#   huge_open_s       wall time from starting the clients until all tunnels were established
#   huge_procs        proxy (direct: target) processes the tunnels were spread over
#   huge_rss_B        proxies' RSS growth per tunnel (ringsocks only)
#   huge_pss_B        proxies' PSS (anon + shmem) growth per tunnel (ringsocks only)
#   huge_kmem_cg_B    kernel memory charged to the proxies' memory cgroup, growth per tunnel
#   huge_kmem_sys_B   machine kernel memory (Slab + KernelStack + PageTables) growth per
#                     tunnel: all sockets of the tunnel, client's and target's included
#   huge_procfs_B     of which /proc inodes (proc_inode_cache): on a machine where something
#                     reads every process's /proc/PID/fd, each descriptor gets a /proc inode
#                     (reclaimable); a node without such a monitor does not pay it
#   huge_idle_rss_kB  one idle proxy's RSS (the fixed cost subtracted above), KiB
#   huge_idle_kmem_kB one idle proxy's kernel memory in the cgroup, KiB
# The errors column is socksload's errors plus the tunnels that were not held.
# Environment: HUGE_TUNNELS=100000 HUGE_PER_PROC=8400 HUGE_HOLD=30 HUGE_OPEN_MAX=120
# HUGE_SETTLE=2 HUGE_SERVERS TIMEOUT TMPROOT MEMCG_KIND MEMCG_BASE RINGSOCKS_ARGS (from
# run.sh; alone, the cgroup is made here). Every process is started here and stopped by PID
# or through the cgroup; bounded: HUGE_OPEN_MAX + HUGE_HOLD + 3 * HUGE_TIMEOUT + 60 s per
# variant. HUGE_HOLD must outlast the opening (16 s for 100,000 on 2 CPUs): each client's hold
# starts when its own tunnels are open, and the sample is taken once all are.
set -euo pipefail

# shellcheck source=bench/macro/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUND=${1:?usage: huge.sh ROUND OUT}
OUT=${2:?usage: huge.sh ROUND OUT}
HUGE_TUNNELS=${HUGE_TUNNELS:-100000}
HUGE_PER_PROC=${HUGE_PER_PROC:-8400}
HUGE_HOLD=${HUGE_HOLD:-30}
HUGE_OPEN_MAX=${HUGE_OPEN_MAX:-120}
HUGE_SETTLE=${HUGE_SETTLE:-2}
HUGE_SERVERS=${HUGE_SERVERS:-"ringsocks-auto direct"}
# Each step of each tunnel (socksload --timeout) and ringsocks' --handshake-timeout: opening
# 100,000 at once on two CPUs queues connects and handshakes for many seconds, which the macro
# benchmark's TIMEOUT (5 s) and ringsocks' default handshake timeout (10 s) would cut.
HUGE_TIMEOUT=${HUGE_TIMEOUT:-60}
OWN_TMP=""
if [ -z "${TMPROOT:-}" ]; then
    TMPROOT=$(mktemp -d /tmp/ringsocks-huge.XXXXXX)
    OWN_TMP=$TMPROOT
fi
OWN_CG=""
if [ -z "${MEMCG_BASE:-}" ]; then
    MEMCG_KIND=none
    if read -r kind parent < <(memcg_parent) && mkdir "$parent/rsbench-huge-$$" 2>/dev/null; then
        MEMCG_KIND=$kind
        MEMCG_BASE="$parent/rsbench-huge-$$"
        OWN_CG=$MEMCG_BASE
    fi
fi

PIDS=()
MEMCG=""

hlog() {
    log "round $ROUND huge: $*"
}

# shellcheck disable=SC2317 # called by the EXIT trap and between variants
stop_all() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_tree "${PIDS[i]}"
    done
    PIDS=()
    if [ -n "$MEMCG" ]; then
        stop_cgroup "$MEMCG"
        rmdir_cgroup "$MEMCG"
        MEMCG=""
    fi
}

# shellcheck disable=SC2317
cleanup() {
    stop_all
    [ -z "$OWN_CG" ] || rmdir_cgroup "$OWN_CG"
    [ -z "$OWN_TMP" ] || [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$OWN_TMP"
}
trap cleanup EXIT

for v in HUGE_TUNNELS HUGE_PER_PROC HUGE_HOLD HUGE_OPEN_MAX HUGE_SETTLE HUGE_TIMEOUT; do
    case ${!v} in '' | *[!0-9]* | 0) die "$v must be a positive integer" ;; esac
done

ip link set lo up 2>/dev/null || true
# Widened in this namespace only: room for many connections per destination (each group has
# its own destination, so the default range would do; this leaves a margin). It stays above
# 29999: free_port picks listening ports in 20000-29999, which TIME_WAIT left by an earlier
# variant must not hold.
# Never in the host's own namespace (NETNS=0): there the range is left alone.
if [ "$(readlink /proc/self/ns/net)" = "$(readlink /proc/1/ns/net 2>/dev/null)" ]; then
    hlog "warning: not in a namespace of its own: net.ipv4.ip_local_port_range left as it is"
else
    sysctl -qw net.ipv4.ip_local_port_range="30000 65535" 2>/dev/null ||
        hlog "warning: could not widen net.ipv4.ip_local_port_range"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
# Two descriptors per tunnel in a proxy, 1,024 kept for the rest: ringsocks' own default
# max_conns under this limit (docs/config.md), so no proxy turns clients away.
max_per=$(((nofile - 1024) / 2))
per=$HUGE_PER_PROC
[ "$per" -le "$max_per" ] || per=$max_per
[ "$per" -gt 0 ] || die "the descriptor limit ($nofile) is too low"
procs=$(((HUGE_TUNNELS + per - 1) / per))

row() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$ROUND" "$3" "${4:-0}" >>"$OUT"
}

# proxies_mem: "RSS PSS" KiB summed over the proxies.
proxies_mem() {
    local p r q rss=0 pss=0
    for p in "${PROXIES[@]}"; do
        read -r r q < <(tree_mem_kb "$p")
        rss=$((rss + r))
        pss=$((pss + q))
    done
    echo "$rss $pss"
}

# established: established TCP sockets whose local port is one of the FILTER's.
established() {
    ss -Htn state established "$1" 2>/dev/null | wc -l
}

variant() {
    local server=$1 dir i n tp pp rest share cgs=""
    dir="$TMPROOT/huge-r$ROUND-$server"
    local filter="" t0 t1 open_s=NA open=0 rss0=0 pss0=0 rss1=0 pss1=0 k0 k1 s0 s1 held=0 errs=0 e u m polls=0
    local -a clients=() tports=() pports=() taken=()
    mkdir -p "$dir"
    PROXIES=()
    if [ "$server" != direct ] && [ "$MEMCG_KIND" != none ]; then
        MEMCG="$MEMCG_BASE/huge-r$ROUND-$server"
        mkdir -p "$MEMCG" 2>/dev/null && cgs="$MEMCG/cgroup.procs" || MEMCG=""
    fi
    for ((i = 0; i < procs; i++)); do
        tp=$(free_port "${taken[@]}") || die "no free port"
        taken+=("$tp")
        tports+=("$tp")
        if [ "$server" = direct ]; then
            "$SOCKSLOAD" serve --socks5 --port "$tp" --threads 1 >"$dir/target$i.log" 2>&1 &
        else
            "$SOCKSLOAD" serve --port "$tp" --threads 1 >"$dir/target$i.log" 2>&1 &
        fi
        PIDS+=($!)
        wait_listen "$tp" "$!" || {
            hlog "$server: target $i did not start"
            return 1
        }
        if [ "$server" = direct ]; then
            pports+=("$tp")
            filter="$filter${filter:+ or }sport = :$tp"
            continue
        fi
        pp=$(free_port "${taken[@]}") || die "no free port"
        taken+=("$pp")
        pports+=("$pp")
        # shellcheck disable=SC2206 # RINGSOCKS_ARGS is a list of flags
        local -a extra=(${RINGSOCKS_ARGS:-})
        # shellcheck disable=SC2016 # expanded by the inner shell
        CG_PROCS="$cgs" sh -c 'for f in $CG_PROCS; do echo $$ >"$f"; done; exec "$@"' sh \
            "$RINGSOCKS" --listen "127.0.0.1:$pp" --shards 2 --relay "${server#ringsocks-}" \
            --admin off --handshake-timeout "$HUGE_TIMEOUT" "${extra[@]}" >"$dir/proxy$i.log" 2>&1 &
        PIDS+=($!)
        PROXIES+=($!)
        wait_listen "$pp" "$!" || {
            hlog "$server: proxy $i did not start, see $dir/proxy$i.log"
            return 1
        }
        filter="$filter${filter:+ or }dport = :$tp"
    done
    filter="( $filter )"
    sleep 1 # the idle processes settle (their threads, rings and first allocations)
    [ "$server" = direct ] || read -r rss0 pss0 < <(proxies_mem)
    k0=$(memcg_kernel_bytes "${MEMCG:+$MEMCG_KIND}" "$MEMCG")
    s0=$(machine_kernel_kb)
    slabs "$dir/slab0"
    # The clients: group i holds its share of the tunnels through proxy i to target i.
    rest=$HUGE_TUNNELS
    t0=$(date +%s.%N)
    for ((i = 0; i < procs; i++)); do
        share=$((rest / (procs - i)))
        rest=$((rest - share))
        timeout -k 5 $((HUGE_OPEN_MAX + HUGE_HOLD + 3 * HUGE_TIMEOUT + 30)) "$SOCKSLOAD" hold \
            --proxy "socks5://127.0.0.1:${pports[i]}" --target "127.0.0.1:${tports[i]}" \
            --tunnels "$share" --hold "$HUGE_HOLD" --timeout "$HUGE_TIMEOUT" --json \
            >"$dir/hold$i.json" 2>"$dir/hold$i.err" &
        clients+=($!)
        PIDS+=($!)
    done
    # Until all are established (the proxies' outgoing sockets; direct: the targets' accepted
    # ones) or HUGE_OPEN_MAX passes.
    while :; do
        open=$(established "$filter")
        t1=$(date +%s.%N)
        if [ "$open" -ge "$HUGE_TUNNELS" ]; then
            open_s=$(calc "$t1 - $t0")
            break
        fi
        awk -v a="$t1" -v b="$t0" -v m="$HUGE_OPEN_MAX" 'BEGIN { exit !(a - b < m) }' || break
        # A client that has exited has ended its hold (or failed): sample what is left now.
        for i in "${!clients[@]}"; do
            kill -0 "${clients[i]}" 2>/dev/null || break 2
        done
        [ $((++polls % 10)) != 0 ] || hlog "$server: $open established so far"
        sleep 0.5
    done
    sleep "$HUGE_SETTLE" # every tunnel's first round trip, the proxies' bookkeeping
    [ "$server" = direct ] || read -r rss1 pss1 < <(proxies_mem)
    k1=$(memcg_kernel_bytes "${MEMCG:+$MEMCG_KIND}" "$MEMCG")
    s1=$(machine_kernel_kb)
    slabs "$dir/slab1"
    n=$(established "$filter")
    [ "$n" -ge "$open" ] || open=$n # some closed before the sample: divide by the fewest seen
    hlog "$server: $open of $HUGE_TUNNELS established after $open_s s; sampled;" \
        "$(nstat -az TcpExtListenOverflows TcpExtListenDrops TcpExtTCPTimeouts 2>/dev/null |
            awk '/^Tcp/ { printf "%s %s ", $1, $2 }')"
    for i in "${!clients[@]}"; do
        wait "${clients[i]}" || true
        u=$(jnum "$dir/hold$i.json" .units)
        e=$(jnum "$dir/hold$i.json" .errors.total)
        [ "$u" != NA ] || u=0
        [ "$e" != NA ] || e=$(head -c 300 "$dir/hold$i.err" | grep -c . || true)
        held=$((held + u))
        errs=$((errs + e))
        [ "$e" = 0 ] || hlog "$server: client $i: $e errors: $(tail -c 300 "$dir/hold$i.err" | tr '\n' ' ')"
    done
    [ $((HUGE_TUNNELS - held)) -le "$errs" ] || errs=$((HUGE_TUNNELS - held))
    row "$server" huge_held "$held" "$errs"
    row "$server" huge_open_s "$open_s" "$errs"
    row "$server" huge_procs "$procs" 0
    if [ "$open" -eq 0 ]; then
        for m in huge_rss_B huge_pss_B huge_kmem_cg_B huge_kmem_sys_B huge_procfs_B; do row "$server" "$m" NA "$errs"; done
    elif [ "$server" = direct ]; then
        for m in huge_rss_B huge_pss_B huge_kmem_cg_B huge_idle_rss_kB huge_idle_kmem_kB; do
            row "$server" "$m" skip 0
        done
        row "$server" huge_kmem_sys_B "$(calc "($s1 - $s0) * 1024 / $open")" "$errs"
        row "$server" huge_procfs_B "$(slab_delta "$dir" proc_inode_cache "$open")" "$errs"
    else
        row "$server" huge_rss_B "$(calc "($rss1 - $rss0) * 1024 / $open")" "$errs"
        row "$server" huge_pss_B "$(calc "($pss1 - $pss0) * 1024 / $open")" "$errs"
        row "$server" huge_kmem_cg_B "$(calc "($k1 - $k0) / $open")" "$errs"
        row "$server" huge_kmem_sys_B "$(calc "($s1 - $s0) * 1024 / $open")" "$errs"
        row "$server" huge_procfs_B "$(slab_delta "$dir" proc_inode_cache "$open")" "$errs"
        row "$server" huge_idle_rss_kB "$(calc "$rss0 / $procs")" 0
        row "$server" huge_idle_kmem_kB "$(calc "$k0 / 1024 / $procs")" 0
    fi
    hlog "$server: $held held and verified over $procs processes, $errs errors, open in $open_s s;" \
        "per tunnel: RSS $(calc "($rss1 - $rss0) * 1024 / $open") B," \
        "kernel (cgroup) $(calc "($k1 - $k0) / $open") B, machine kernel $(calc "($s1 - $s0) * 1024 / $open") B"
    [ "$open" -eq 0 ] || hlog "$server: the slab caches that grew most, bytes per tunnel:" \
        "$(slab_growth "$dir/slab0" "$dir/slab1" "$open")"
    stop_all
}

# slabs FILE: "cache bytes" of every slab cache (active objects x object size) into FILE; empty
# when /proc/slabinfo cannot be read.
slabs() {
    awk 'NR > 2 { print $1, $2 * $4 }' /proc/slabinfo >"$1" 2>/dev/null || : >"$1"
}

# slab_delta DIR CACHE N: growth of the slab cache CACHE between DIR/slab0 and DIR/slab1, bytes
# per tunnel (NA when unknown).
slab_delta() {
    local b a
    b=$(awk -v c="$2" '$1 == c { print $2 }' "$1/slab0")
    a=$(awk -v c="$2" '$1 == c { print $2 }' "$1/slab1")
    calc "(${a:-NA} - ${b:-NA}) / $3"
}

# slab_growth BEFORE AFTER N: the eight caches that grew most, bytes per tunnel (for the log:
# which kernel objects a tunnel costs, beyond what the cgroup is charged).
slab_growth() {
    awk -v n="$3" 'NR == FNR { b[$1] = $2; next }
        { d = $2 - b[$1]; if (d > 0) printf "%s %.0f\n", $1, d / n }' "$1" "$2" |
        sort -k2,2nr | head -n 8 | paste -sd, -
}

hlog "$HUGE_TUNNELS tunnels over $procs process groups of at most $per (descriptor limit $nofile)"
for s in $HUGE_SERVERS; do
    case $s in
    direct | ringsocks-?*) variant "$s" || hlog "$s: failed" ;;
    *) die "HUGE_SERVERS: unknown variant '$s' (direct ringsocks-ENGINE)" ;;
    esac
    stop_all
done
exit 0
