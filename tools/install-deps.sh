#!/bin/sh
# Install the Debian packages ringsocks needs to build, test and benchmark.
# Idempotent: only packages that are missing are installed, and they are named first.
# Usage: tools/install-deps.sh [build|test|bench|all]   (default: all)
set -eu

BUILD_PKGS="gcc make pkg-config liburing-dev libjemalloc-dev libc-ares-dev liburcu-dev \
libconfig-dev libcrypt-dev libsodium-dev libhiredis-dev libkrb5-dev libseccomp-dev"
TEST_PKGS="libcmocka-dev clang libclang-rt-14-dev curl ncat socat python3 iproute2 whois prometheus \
proxychains4 dante-client dante-server microsocks haproxy redis-server nodejs g++ libbenchmark-dev clang-format \
nftables file krb5-kdc krb5-admin-server krb5-user python3-gssapi gnuplot-nox strace systemd \
util-linux"
# strace, systemd (systemd-analyze), util-linux (setpriv): tests/integration/cases_unit.py scores
# the shipped unit and traces every system call ringsocks makes under its credentials.
# gnuplot-nox: `socksload plot` in tests/integration/cases_socksload_phases.py draws with it.
# Kerberos (tests/integration/krb.py, issue #15): krb5-kdc (krb5kdc, kdb5_util), krb5-admin-server
# (kadmin.local), krb5-user (kinit, klist, kvno); libkrb5-dev for the GSS-API headers. Their
# packaging writes /etc/krb5.conf and /etc/krb5kdc/kdc.conf and enables krb5-kdc and
# krb5-admin-server units (not started here: see policy-rc.d below; without a database of
# their own they would fail to start anyway). The tests read none of it: each runs its own realm
# from its own files, on its own port.
# make bench (bench/macro/): the peers, plots without X, and the tools the scripts call:
# ip/ss (iproute2), ps (procps), unshare/taskset (util-linux), timeout (coreutils), jq for
# socksload's JSON, python3 for the report, openssl for the password hash.
BENCH_PKGS="microsocks dante-server gnuplot-nox iproute2 procps util-linux coreutils jq python3 \
openssl"

case "${1:-all}" in
build) want="$BUILD_PKGS" ;;
test) want="$BUILD_PKGS $TEST_PKGS" ;;
bench) want="$BUILD_PKGS $BENCH_PKGS" ;;
all) want="$BUILD_PKGS $TEST_PKGS $BENCH_PKGS" ;;
*)
    echo "usage: $0 [build|test|bench|all]" >&2
    exit 2
    ;;
esac

missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac # named by two sets
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = "installed" ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install packages (run as root, or install them yourself)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Debian starts the daemons it installs (danted, microsocks) with stock configs;
# tests start their own on their own ports. policy-rc.d answering 101 tells
# invoke-rc.d not to start anything, so a daemon that cannot start cannot fail
# the install either. An existing policy is left alone.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
rc=0
apt-get update -qq || rc=$?
if [ "$rc" = 0 ]; then
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
fi
[ "$own_policy" = 1 ] && rm -f "$policy"
if [ "$rc" != 0 ]; then
    echo "install-deps: apt-get failed (exit $rc)" >&2
    exit 1
fi
echo "install-deps: done"
