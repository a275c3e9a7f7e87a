#!/usr/bin/env bash
# bench/macro/scrape.sh ROUND OUT - the scraping figure of the macro benchmark: short tunnels
# per second to ONE target address and port, for SCRAPE_SECONDS, side by side:
#   scrape-pool    through ringsocks with egress = ["2001:db8:1::/64"]: every tunnel leaves
#                  from a random address of the /64 (needs issue #11's egress pools; skipped,
#                  with the reason, while `ringsocks -t` rejects the key)
#   scrape-single  through ringsocks with no pool: one source address, so the proxy's
#                  outgoing connections share ~28k ephemeral ports, held 60 s in TIME_WAIT
#   scrape-sticky  scrape-pool with password auth and username_params = true: the client
#                  logs in as bench-session-{n%200}, so 200 sessions, each keeping one
#                  address of the /64 (session_ttl = 86400: the TTL bucket turns over only at
#                  00:00 UTC, so a run almost never sees a session change its address)
#   scrape-direct  no proxy: `socksload serve --socks5` answers the handshake itself
# SCRAPE_CLOSE (fin, the default, or rst) is how the client ends each tunnel (connrate
# --close). fin: the client closes first; ringsocks half-closes towards the target on its FIN,
# so the proxy is the first closer there and holds the TIME_WAIT of the outgoing connection.
# rst: ringsocks passes the reset on and no TIME_WAIT builds up anywhere.
# Each variant gets two fresh network namespaces made here (ip netns), joined by a veth pair:
#   proxy side  2001:db8::1/64, the /64 routed as local (ip -6 route add local ... dev lo);
#               the client (socksload connrate) and ringsocks run here, ringsocks listening
#               on [::1]:1080: over loopback the client's own TIME_WAIT ports are reused
#               (tcp_tw_reuse 2, the default, is for loopback only), so with fin only the
#               proxy's outgoing side (2001:db8::1 or the pool) can run out of ports
#   target side 2001:db8::2/64, a route to the /64 via 2001:db8::1; `socksload serve`
#               records the source address of every target connection
# Documentation prefixes only. Every process is started here and stopped by its PID; the
# namespaces are deleted at the end. Appends "server metric round value errors" rows to OUT:
# scrape_rate (tunnels/s), scrape_success_pct, scrape_p99_us, scrape_addrs (distinct
# source addresses the target saw), scrape_sessions and scrape_addrs_per_session (distinct
# session keys and the most addresses one of them had: sticky only, NA for the others),
# scrape_timewait (TIME_WAIT sockets towards the target in the proxy namespace at the end);
# scrape_cpu_us (the proxy's own CPU per completed tunnel, from /proc/PID/stat; direct: NA);
# the errors column is socksload's error count.
# Environment (from run.sh): SCRAPE_SECONDS SCRAPE_WORKERS SCRAPE_THREADS SCRAPE_VARIANTS
# SCRAPE_CLOSE TIMEOUT TMPROOT.
set -euo pipefail

# shellcheck source=bench/macro/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUND=$1
OUT=$2
SECS=${SCRAPE_SECONDS:-60}
WORKERS=${SCRAPE_WORKERS:-64}
THREADS=${SCRAPE_THREADS:-2}
VARIANTS=${SCRAPE_VARIANTS:-"direct single pool sticky"}
CLOSE=${SCRAPE_CLOSE:-fin}
TIMEOUT=${TIMEOUT:-5}
POOL=2001:db8:1::/64
PADDR=2001:db8::1
TADDR=2001:db8::2
TPORT=19000
PPORT=1080
LADDR=::1 # where ringsocks listens, in the proxy namespace
SESSIONS=200
SUSER=bench
SPASS=benchpass
DIR="${TMPROOT:-/tmp}/scrape-r$ROUND"
mkdir -p "$DIR"
NS_P="rsscrape-$$-p"
NS_T="rsscrape-$$-t"
PIDS=()

slog() {
    log "round $ROUND scrape-$V: $*"
}

row() {
    printf 'scrape-%s\t%s\t%s\t%s\t%s\n' "$V" "$1" "$ROUND" "$2" "${3:-0}" >>"$OUT"
}

netns_down() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_tree "${PIDS[i]}"; done
    PIDS=()
    ip netns del "$NS_P" 2>/dev/null || true
    ip netns del "$NS_T" 2>/dev/null || true
}
trap netns_down EXIT

netns_up() {
    local vp="rsp$$" vt="rst$$"
    ip netns add "$NS_P"
    ip netns add "$NS_T"
    ip link add "${vp:0:15}" type veth peer name "${vt:0:15}"
    ip link set "${vp:0:15}" netns "$NS_P"
    ip link set "${vt:0:15}" netns "$NS_T"
    ip -n "$NS_P" link set lo up
    ip -n "$NS_T" link set lo up
    ip -n "$NS_P" addr add "$PADDR/64" dev "${vp:0:15}" nodad
    ip -n "$NS_T" addr add "$TADDR/64" dev "${vt:0:15}" nodad
    ip -n "$NS_P" link set "${vp:0:15}" up
    ip -n "$NS_T" link set "${vt:0:15}" up
    # Any address of the /64 is the proxy's own (IPV6_FREEBIND binds it unconfigured).
    ip -n "$NS_P" -6 route add local "$POOL" dev lo
    ip -n "$NS_T" -6 route add "$POOL" via "$PADDR"
}

# wait_port NS PORT PID: until something listens on PORT in NS, as long as PID lives; 10 s.
wait_port() {
    for _ in $(seq 1 200); do
        kill -0 "$3" 2>/dev/null || return 1
        [ -n "$(ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null)" ] && return 0
        sleep 0.05
    done
    return 1
}

# start NS PORT LOG WHAT CMD...: CMD in NS, stdout to LOG, stderr to LOG.err, until it listens
# on PORT; its PID in STARTED (and PIDS). On failure logs why and returns 1.
start() {
    local ns=$1 port=$2 out=$3 what=$4
    shift 4
    ip netns exec "$ns" "$@" >"$out" 2>"$out.err" &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_port "$ns" "$port" "$STARTED" && return 0
    slog "$what did not start: $(head -c 300 "$out.err")"
    return 1
}

na() {
    local m
    for m in scrape_rate scrape_success_pct scrape_p99_us scrape_addrs scrape_sessions \
        scrape_addrs_per_session scrape_timewait scrape_cpu_us; do
        row "$m" "$1" "${2:-NA}"
    done
}

# CPU ticks (user + system, 1/100 s) a process has used, or NA.
ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo NA
}

variant() {
    local conf="$DIR/$V.conf" proxy target tpid ppid="" c0=NA c1=NA rc=0 limit hash
    local -a serve=("$SOCKSLOAD" serve --host "$TADDR" --port "$TPORT" --threads 2
        --allow-nonlocal --json) user=()
    cat >"$conf" <<CONF
listen = ["[$LADDR]:$PPORT"];
shards = 2;
rules = ( { action = "allow"; from = ["$LADDR"]; to = ["$TADDR"]; ports = [$TPORT]; commands = ["connect"]; } );
CONF
    case $V in
    pool) echo "egress = [\"$POOL\"];" >>"$conf" ;;
    sticky)
        # One user, sha512-crypt like bench/handshake-rate.sh; checked once, then cached.
        hash=$(python3 -W ignore -c "import crypt; print(crypt.crypt('$SPASS', crypt.mksalt(crypt.METHOD_SHA512)))")
        echo "$SUSER:$hash" >"$DIR/$V.users"
        cat >>"$conf" <<CONF
egress = ["$POOL"];
auth = "password";
users = "$DIR/$V.users";
username_params = true;
session_ttl = 86400;
CONF
        user=(--user "$SUSER-session-{n%$SESSIONS}")
        ;;
    single) ;;
    direct) serve+=(--socks5) ;;
    *) slog "unknown variant (direct single pool sticky)"; return 0 ;;
    esac
    if [ "$V" != direct ] && ! "$RINGSOCKS" -t -c "$conf" >"$DIR/$V.check" 2>&1; then
        slog "skipped: ringsocks -t rejects the configuration: $(tr '\n' ' ' <"$DIR/$V.check")"
        na skip 0
        return 0
    fi
    netns_up
    if ! start "$NS_T" "$TPORT" "$DIR/$V.target.json" "the target" "${serve[@]}"; then
        na NA
        netns_down
        return 0
    fi
    tpid=$STARTED
    if [ "$V" = direct ]; then
        proxy="socks5://[$TADDR]:$TPORT"
    else
        if ! start "$NS_P" "$PPORT" "$DIR/$V.proxy.log" ringsocks \
            "$RINGSOCKS" -c "$conf" --admin off --access-log off; then
            na NA
            netns_down
            return 0
        fi
        ppid=$STARTED
        proxy="socks5://[$LADDR]:$PPORT"
        [ "$V" = sticky ] && proxy="socks5://$SUSER:$SPASS@[$LADDR]:$PPORT"
    fi
    target="[$TADDR]:$TPORT"
    limit=$(awk -v s="$SECS" -v t="$TIMEOUT" 'BEGIN { printf "%d", s + 3 * t + 30 }')
    slog "connrate --workers $WORKERS --close $CLOSE${user[*]:+ ${user[*]}} for $SECS s"
    [ -n "$ppid" ] && c0=$(ticks "$ppid")
    timeout -k 5 "$limit" ip netns exec "$NS_P" "$SOCKSLOAD" connrate --proxy "$proxy" \
        --target "$target" --allow-nonlocal --workers "$WORKERS" --threads "$THREADS" \
        --duration "$SECS" --timeout "$TIMEOUT" --close "$CLOSE" "${user[@]}" --json \
        >"$DIR/$V.json" 2>"$DIR/$V.err" || rc=$?
    # The proxy's own CPU over the run (ip netns exec execs it: its PID is the proxy's).
    [ -n "$ppid" ] && c1=$(ticks "$ppid")
    # The target reports its source addresses when it stops (SIGTERM).
    stop_tree "$tpid"
    # TIME_WAIT towards the target only: the client's own towards ::1 are no cost of the proxy.
    ip netns exec "$NS_P" ss -Htan state time-wait >"$DIR/$V.tw" 2>/dev/null || true
    awk -v t="[$TADDR]:$TPORT" '$4 == t || $5 == t { n++ } END { print n + 0 }' "$DIR/$V.tw" >"$DIR/$V.timewait"
    netns_down
    if ! jq -e .mode "$DIR/$V.json" >/dev/null 2>&1; then
        slog "socksload gave no result (exit $rc): $(tail -c 300 "$DIR/$V.err" | tr '\n' ' ')"
        na NA
        return 0
    fi
    local units errs rate p99 addrs ok sess=NA per=NA tw cpu=NA
    units=$(jnum "$DIR/$V.json" .units)
    errs=$(jnum "$DIR/$V.json" .errors.total)
    rate=$(jnum "$DIR/$V.json" .rate)
    p99=$(jnum "$DIR/$V.json" .latency_us.p99)
    addrs=$(jnum "$DIR/$V.target.json" .sources.addresses)
    tw=$(cat "$DIR/$V.timewait")
    if [ "$V" = sticky ]; then
        sess=$(jnum "$DIR/$V.target.json" .sources.sessions)
        per=$(jnum "$DIR/$V.target.json" .sources.max_addresses_per_session)
    fi
    ok=$(calc "100 * $units / ($units + $errs)")
    if [ "$c0" != NA ] && [ "$c1" != NA ] && [ "$units" -gt 0 ] 2>/dev/null; then
        cpu=$(calc "($c1 - $c0) * 10000 / $units")
    fi
    [ "$errs" = 0 ] || slog "$errs errors: $(jq -c '.errors | with_entries(select(.value != 0 and .value != {}))' "$DIR/$V.json")"
    slog "$rate tunnels/s, success $ok %, $addrs source addresses, sessions $sess (most addresses for one: $per), close $CLOSE, TIME_WAIT at the end $tw"
    row scrape_rate "$rate" "$errs"
    row scrape_success_pct "$ok" "$errs"
    row scrape_p99_us "$p99" "$errs"
    row scrape_addrs "$addrs" "$errs"
    row scrape_sessions "$sess" "$errs"
    row scrape_addrs_per_session "$per" "$errs"
    row scrape_timewait "$tw" "$errs"
    row scrape_cpu_us "$cpu" "$errs"
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
read -r -a vs <<<"$VARIANTS"
n=${#vs[@]}
for ((i = 0; i < n; i++)); do
    V=${vs[$(((i + ROUND - 1) % n))]}
    variant
done
