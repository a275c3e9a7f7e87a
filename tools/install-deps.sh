#!/bin/sh
# Install the Debian packages ringsocks needs to build, test and benchmark.
# Idempotent: only packages that are missing are installed, and they are named first.
# Usage: tools/install-deps.sh [build|test|all]   (default: all)
set -eu

BUILD_PKGS="gcc make pkg-config liburing-dev libjemalloc-dev libc-ares-dev liburcu-dev \
libconfig-dev libcrypt-dev libsodium-dev"
TEST_PKGS="libcmocka-dev clang libclang-rt-14-dev curl ncat socat python3 iproute2 \
proxychains4 dante-client dante-server microsocks g++ libbenchmark-dev"

case "${1:-all}" in
build) want="$BUILD_PKGS" ;;
test | all) want="$BUILD_PKGS $TEST_PKGS" ;;
*)
    echo "usage: $0 [build|test|all]" >&2
    exit 2
    ;;
esac

missing=""
for p in $want; do
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
apt-get update -qq
# dante-server's postinst tries to start danted with a stock config; it failing must not fail us.
apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "install-deps: apt-get install failed" >&2
    exit 1
}
# Debian starts daemons it installs; we start our own peers in tests, on our own ports.
for svc in danted microsocks; do
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
echo "install-deps: done"
