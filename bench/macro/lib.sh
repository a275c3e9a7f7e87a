# bench/macro/lib.sh - shell functions shared by bench/macro/run.sh (the driver) and
# bench/macro/cell.sh (one server in one round, inside its own network namespace).
# Sourced, never run. Everything here only reads /proc and /sys, or starts and stops processes
# it is given by PID or by the cgroup they were started in: nothing is ever stopped by name.
# shellcheck shell=bash

RS_ROOT=${RS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-build}
# shellcheck disable=SC2034 # used by the scripts that source this file
SOCKSLOAD="$RS_ROOT/$BUILD/socksload"
# shellcheck disable=SC2034
RINGSOCKS="$RS_ROOT/$BUILD/ringsocks"
# /proc/*/stat and /proc/stat count in USER_HZ ticks.
# shellcheck disable=SC2034
CLK_TCK=$(getconf CLK_TCK)

log() {
    echo "bench: $*" >&2
}

die() {
    log "$*"
    exit 1
}

# ------------------------------------------------------------------------- processes, ports

# free_port [PORT...]: a port in 20000-29999 that nothing listens on and that is not among the
# arguments (the ephemeral range starts at 32768, so outgoing connections never take it).
free_port() {
    local p a taken
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 10000))
        taken=0
        for a in "$@"; do [ "$a" = "$p" ] && taken=1; done
        if [ "$taken" = 0 ] && [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_listen PORT PID: until something listens on PORT, as long as PID lives; 10 s at most.
wait_listen() {
    local port=$1 pid=$2
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || return 1
        [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] && return 0
        sleep 0.05
    done
    return 1
}

# tree_pids PID: PID and all its descendants (Dante forks its workers), one per line.
tree_pids() {
    ps -e -o pid=,ppid= 2>/dev/null | awk -v root="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            keep[root] = 1; print root
            do {
                more = 0
                for (i in pids) {
                    p = pids[i]
                    if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; more = 1 }
                }
            } while (more)
        }'
}

# start_time PID: when PID started (field 22 of /proc/PID/stat, ticks since boot); nothing when
# it is gone or a zombie. The same PID with the same start time is the same process.
start_time() {
    local line
    line=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    line=${line##*) }
    awk '$1 != "Z" && $1 != "X" { print $20 }' <<<"$line"
}

# cgroup_pids DIR: the processes in the cgroup DIR, one per line.
cgroup_pids() {
    cat "$1/cgroup.procs" 2>/dev/null || true
}

# cgroup_drain DIR N: waits until the cgroup DIR is empty, N times 50 ms at most; status 1 if not.
cgroup_drain() {
    for _ in $(seq 1 "$2"); do
        [ -n "$(cgroup_pids "$1")" ] || return 0
        sleep 0.05
    done
    [ -z "$(cgroup_pids "$1")" ]
}

# stop_cgroup DIR: stops every process left in the cgroup DIR (a server's children, daemons
# that forked away from its tree): SIGTERM to each, then after 5 s cgroup.kill (v2) or SIGKILL
# to each PID the cgroup still lists; 7 s at most. Never a cgroup this shell is in.
stop_cgroup() {
    local cg=$1 p procs
    [ -n "$cg" ] && [ -f "$cg/cgroup.procs" ] || return 0
    procs=$(cgroup_pids "$cg")
    [ -n "$procs" ] || return 0
    if grep -qxF -e "$$" -e "$BASHPID" <<<"$procs"; then
        log "warning: not stopping cgroup $cg: this shell is in it"
        return 0
    fi
    for p in $procs; do kill -TERM "$p" 2>/dev/null || true; done
    cgroup_drain "$cg" 100 && return 0
    if [ -f "$cg/cgroup.kill" ]; then
        echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
    else
        for p in $(cgroup_pids "$cg"); do kill -KILL "$p" 2>/dev/null || true; done
    fi
    cgroup_drain "$cg" 40 && return 0
    log "warning: processes left in cgroup $cg: $(cgroup_pids "$cg" | paste -sd' ')"
}

# stop_tree PID [CGROUP]: SIGTERM to PID (a child of this shell), SIGKILL after 5 s, then the
# rest of it. With CGROUP (the cgroup PID was started in, holding nothing else): whatever is
# still in the cgroup, forked children and double-forked daemons included (stop_cgroup).
# Without: the descendants of PID listed before the signal, each killed after 5 s only if it
# is still the same process (same start time), so a reused PID is never hit. 12 s at most.
stop_tree() {
    local pid=$1 cg=${2:-} c st alive
    local -a kids=()
    [ -n "$cg" ] && [ -f "$cg/cgroup.procs" ] || cg=""
    if [ -z "$cg" ]; then
        for c in $(tree_pids "$pid" | tail -n +2); do
            st=$(start_time "$c")
            [ -z "$st" ] || kids+=("$c:$st")
        done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        # Still an unreaped child of this shell until the wait: its PID cannot be reused.
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    if [ -n "$cg" ]; then
        stop_cgroup "$cg"
        return 0
    fi
    for _ in $(seq 1 100); do
        alive=""
        for c in "${kids[@]}"; do
            [ "$(start_time "${c%%:*}")" = "${c#*:}" ] && alive="$alive ${c%%:*}"
        done
        [ -n "$alive" ] || return 0
        sleep 0.05
    done
    for c in "${kids[@]}"; do
        [ "$(start_time "${c%%:*}")" != "${c#*:}" ] || kill -KILL "${c%%:*}" 2>/dev/null || true
    done
}

# -------------------------------------------------------------------------------- CPU time

# tree_cpu_ticks PID: utime + stime of PID and every descendant (all their threads: the kernel
# sums a process's threads, io_uring's io-wq workers included, in /proc/PID/stat), plus
# cutime + cstime, the ticks of children that already exited and were reaped.
tree_cpu_ticks() {
    local p sum=0 line
    for p in $(tree_pids "$1"); do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        # Fields after the ") " that ends the command name: state is field 3, utime 14.
        line=${line##*) }
        sum=$(awk -v s="$sum" '{ print s + $12 + $13 + $14 + $15 }' <<<"$line")
    done
    echo "$sum"
}

# cpuacct_parent: where per-cell CPU accounting cgroups can be made, as "v1 DIR" (a child of
# the cpuacct cgroup this shell is in, on the v1 cpuacct hierarchy) or "v2" (the cell's memory
# cgroup on the unified hierarchy, whose cpu.stat has usage_usec whatever is delegated), or
# nothing.
cpuacct_parent() {
    local mnt rel
    mnt=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpuacct(,|$)/ { print $2; exit }' /proc/mounts)
    rel=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}cpuacct\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p' /proc/self/cgroup)
    if [ -n "$mnt" ] && [ -n "$rel" ] && [ -f "$mnt$rel/cpuacct.usage" ] && [ -w "$mnt$rel" ]; then
        echo "v1 ${mnt%/}${rel%/}"
        return 0
    fi
    [ "${MEMCG_KIND:-}" = v2 ] && echo v2
}

# cgroup_cpu_ticks KIND DIR: CPU time of every task that ever ran in the cgroup DIR (threads,
# io-wq workers, children, exited ones included), in ticks (fractions kept: the cgroup counts
# nanoseconds), or NA.
cgroup_cpu_ticks() {
    case $1 in
    v1) awk -v hz="$CLK_TCK" '{ printf "%.3f\n", $1 * hz / 1e9 }' "$2/cpuacct.usage" 2>/dev/null ||
        echo NA ;;
    v2) awk -v hz="$CLK_TCK" '$1 == "usage_usec" { printf "%.3f\n", $2 * hz / 1e6 }' \
        "$2/cpu.stat" 2>/dev/null || echo NA ;;
    *) echo NA ;;
    esac
}

# machine_busy_ticks: busy ticks of all CPUs from /proc/stat: user nice system irq softirq
# (guest time is already inside user; idle, iowait and steal, the hypervisor's, are not busy).
machine_busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# -------------------------------------------------------------------------------- memory

# tree_mem_kb PID: "RSS PSS" in KiB summed over PID and its descendants (smaps_rollup). The PSS
# is Pss_Anon + Pss_Shmem: file-backed pages (libraries) are left out because their share
# changes whenever another program maps the same file (socksload starting maps libc too),
# which would swamp a per-tunnel difference; tunnels cost anonymous memory, not files.
tree_mem_kb() {
    local p rss=0 pss=0 r q
    for p in $(tree_pids "$1"); do
        read -r r q < <(awk '/^Rss:/ { r = $2 } /^Pss_(Anon|Shmem):/ { q += $2 }
            END { print r + 0, q + 0 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo "0 0")
        rss=$((rss + r))
        pss=$((pss + q))
    done
    echo "$rss $pss"
}

# machine_kernel_kb: Slab (SReclaimable + SUnreclaim) + KernelStack + PageTables, KiB.
machine_kernel_kb() {
    awk '/^(Slab|KernelStack|PageTables):/ { s += $2 } END { print s + 0 }' /proc/meminfo
}

# sockstat_tcp_pages: the "mem" pages of TCP in /proc/net/sockstat (a global counter).
sockstat_tcp_pages() {
    awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' \
        /proc/net/sockstat
}

# sock_buffer_bytes FILTER: bytes held by the buffers of the TCP sockets matching the ss
# FILTER in this namespace: rmem_alloc + wmem_alloc + forward_alloc + wmem_queued + optmem
# (skmem r, t, f, w, o).
sock_buffer_bytes() {
    ss -Htmn "$1" 2>/dev/null | awk '
        { for (i = 1; i <= NF; i++) if ($i ~ /^skmem:\(/) {
              gsub(/^skmem:\(|\)$/, "", $i)
              n = split($i, f, ",")
              for (k = 1; k <= n; k++) if (f[k] ~ /^(r|t|f|w|o)[0-9]+$/) s += substr(f[k], 2)
          } }
        END { print s + 0 }'
}

# established_count FILTER: established TCP sockets matching the ss FILTER.
established_count() {
    ss -Htn state established "$1" 2>/dev/null | wc -l
}

# ------------------------------------------------------------------------------- cgroups
# A per-cell memory cgroup makes the kernel memory the proxy allocates (sockets, files,
# io_uring, pipes, page tables, kernel stacks: what memcg charges as kmem) readable for the
# proxy alone; a cpuset cgroup pins a proxy to one CPU so firmly that its own
# pthread_setaffinity_np() calls cannot move it (ringsocks pins shard i to CPU i).

# v2_with CONTROLLER: a writable cgroup v2 mount that delegates CONTROLLER, or nothing.
v2_with() {
    local v2
    for v2 in /sys/fs/cgroup /sys/fs/cgroup/unified; do
        if [ "$(stat -fc %T "$v2" 2>/dev/null)" = cgroup2fs ] &&
            grep -qw "$1" "$v2/cgroup.subtree_control" 2>/dev/null && [ -w "$v2" ]; then
            echo "$v2"
            return 0
        fi
    done
    return 1
}

# memcg_parent: the directory under which per-cell memory cgroups can be made, and how kernel
# memory is read there ("v1 DIR" or "v2 DIR"), or nothing. v1: a child of the memory cgroup
# this shell is in (so any limit of ours still applies); v2: the root of the unified
# hierarchy when it delegates the memory controller.
memcg_parent() {
    local rel v2
    rel=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
    if [ -n "$rel" ] && [ -f "/sys/fs/cgroup/memory$rel/memory.kmem.usage_in_bytes" ] &&
        [ -w "/sys/fs/cgroup/memory$rel" ]; then
        echo "v1 /sys/fs/cgroup/memory${rel%/}"
        return 0
    fi
    v2=$(v2_with memory) || return 1
    echo "v2 $v2"
}

# memcg_kernel_bytes KIND DIR: kernel memory charged to the cgroup, bytes.
memcg_kernel_bytes() {
    case $1 in
    v1) cat "$2/memory.kmem.usage_in_bytes" 2>/dev/null || echo NA ;;
    v2) awk '$1 == "kernel" { k = $2; found = 1 }
            $1 ~ /^(slab|kernel_stack|pagetables|percpu)$/ { s += $2 }
            END { print found ? k : s + 0 }' "$2/memory.stat" 2>/dev/null || echo NA ;;
    *) echo NA ;;
    esac
}

# cpuset_make DIR CPU: a cpuset cgroup (v1 hierarchy, or v2 with the cpuset controller)
# limited to CPU. Returns 1 when it cannot be made.
cpuset_make() {
    local dir=$1 cpu=$2 mems
    mkdir -p "$dir" 2>/dev/null || return 1
    if [ -f "$dir/cpuset.mems" ]; then
        mems=$(cat "$(dirname "$dir")/cpuset.mems" 2>/dev/null || true)
        [ -n "$mems" ] || mems=$(cat "$(dirname "$dir")/cpuset.mems.effective" 2>/dev/null || echo 0)
        echo "$mems" >"$dir/cpuset.mems" 2>/dev/null || true
    fi
    echo "$cpu" >"$dir/cpuset.cpus" 2>/dev/null || {
        rmdir "$dir" 2>/dev/null
        return 1
    }
}

# cpuset_root: where a cpuset cgroup can be made (v1 cpuset hierarchy, or v2 with cpuset
# delegated at its root), or nothing.
cpuset_root() {
    local v2
    if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ] && [ -w /sys/fs/cgroup/cpuset ]; then
        echo /sys/fs/cgroup/cpuset
        return 0
    fi
    v2_with cpuset
}

# rmdir_cgroup DIR: remove a cgroup once its last task is gone (Dante's workers linger).
rmdir_cgroup() {
    [ -n "$1" ] && [ -d "$1" ] || return 0
    for _ in $(seq 1 50); do
        rmdir "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    log "warning: could not remove cgroup $1"
}

# ------------------------------------------------------------------------- extra servers

# extra_parse VAR: the entries of the list in the variable VAR (EXTRA_SERVERS or EXTRA_AUTH:
# "name=command;name2=command2"), one "NAME<TAB>COMMAND" line each; blank entries are skipped,
# blanks around a name dropped. Status 1, with the reason on stderr, for an entry without '=',
# an empty command, a name other than letters, digits, '.', '_' and '-' (it becomes part of
# file and cgroup names), or a name given twice. Call it outside $(...) (or check its status)
# so that a bad list stops the run.
extra_parse() {
    local var=$1 entry name cmd seen=" "
    local -a entries
    IFS=';' read -r -a entries <<<"${!var:-}"
    for entry in "${entries[@]}"; do
        [ -n "${entry//[[:space:]]/}" ] || continue
        case $entry in *=*) ;; *)
            log "$var entry '$entry' is not name=command"
            return 1
            ;;
        esac
        name=${entry%%=*}
        name=${name#"${name%%[![:space:]]*}"}
        name=${name%"${name##*[![:space:]]}"}
        cmd=${entry#*=}
        case $name in '' | *[!A-Za-z0-9._-]*)
            log "$var entry '$entry': the name must be letters, digits, '.', '_' or '-'"
            return 1
            ;;
        esac
        if [ -z "${cmd//[[:space:]]/}" ]; then
            log "$var entry '$entry' has no command"
            return 1
        fi
        case $seen in *" $name "*)
            log "$var names '$name' twice"
            return 1
            ;;
        esac
        seen="$seen$name "
        printf '%s\t%s\n' "$name" "$cmd"
    done
}

# extra_cmd VAR NAME: the command of NAME in the list in VAR; status 1 when NAME is not there.
extra_cmd() {
    local line
    while IFS= read -r line; do
        if [ "${line%%$'\t'*}" = "$2" ]; then
            printf '%s\n' "${line#*$'\t'}"
            return 0
        fi
    done < <(extra_parse "$1" 2>/dev/null)
    return 1
}

# -------------------------------------------------------------------------------- numbers

# jnum FILE FILTER: a number from socksload's JSON (jq filter), or NA.
jnum() {
    local v
    v=$(jq -r "$2 // empty" "$1" 2>/dev/null || true)
    case $v in '' | null | *[!0-9.e+-]*) echo NA ;; *) echo "$v" ;; esac
}

# calc EXPR: awk arithmetic on numbers; NA when any input is NA (or the divisor is 0).
calc() {
    local r
    case " $* " in *NA*) echo NA; return 0 ;; esac
    r=$(awk "BEGIN { printf \"%.6g\\n\", ($*) }" 2>/dev/null) || r=NA
    case $r in *inf* | *nan* | '') echo NA ;; *) echo "$r" ;; esac
}
