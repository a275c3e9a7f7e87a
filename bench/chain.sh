#!/usr/bin/env bash
# bench/chain.sh - what upstream chaining (rule key via) costs the proxy that chains
# (docs/benchmarks.md, "Upstream chaining"). bench/relay-ab.sh over two configurations of the
# same binary, side by side in one run: `direct` (the default rules: tunnels go straight to
# the target) and `chained` (one rule with via = a parent ringsocks on loopback: every tunnel
# is connected through it with a SOCKS5 handshake). relay-ab measures the proxy under test's
# own CPU (the parent's is not counted): per GB relayed (the relay is the same splice/copy
# relay, so it should not move) and per 1,000 short tunnels (the parent's connect, greeting,
# request and reply: one more connect, two sends, two peeks and two recvs per tunnel). The
# tunnel rate of `chained` also pays the parent's work on the same two cores.
#
#   bench/chain.sh
#   ROUNDS=7 SECONDS_EACH=3 ENGINES=auto PARENT=http bench/chain.sh
# PARENT=socks5 (default) or http: the parent's protocol. Runs in a private network namespace
# (unshare -n): loopback only, fixed ports are safe.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
if [ "${CHAIN_IN_NS:-}" != 1 ]; then
    make -s build/ringsocks build/socksload
    exec env CHAIN_IN_NS=1 unshare -n "$0" "$@"
fi
ip link set lo up
PARENT=${PARENT:-socks5}
bench_scratch

bin=$PWD/build/ringsocks
# The parent: its own two shards, splice, no log.
"$bin" --listen 127.0.0.1:19900 --shards 2 --admin off --access-log off --http-connect true \
    2>"$tmp/parent.err" &
pids+=($!)
cat >"$tmp/child.conf" <<CONF
rules = ( { action = "allow"; from = ["127.0.0.0/8"]; via = ["$PARENT://127.0.0.1:19900"]; } );
CONF
printf '#!/bin/sh\nexec %s "$@"\n' "$bin" >"$tmp/direct"
printf '#!/bin/sh\nexec %s -c %s "$@"\n' "$bin" "$tmp/child.conf" >"$tmp/chained"
chmod +x "$tmp/direct" "$tmp/chained"
sleep 0.3
echo "## upstream chaining: the chaining proxy's own cost (parent: $PARENT on loopback)"
AB_IN_NS=1 bench/relay-ab.sh direct="$tmp/direct" chained="$tmp/chained"
