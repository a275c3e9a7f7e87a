#!/usr/bin/env bash
# tests/run.sh - run every ringsocks test: the cmocka unit test binaries, a
# short fuzz run of every libFuzzer harness (FUZZ_SECONDS each, default 10),
# then the integration suite, with a 3-minute soak (bench/soak.sh, as root) running in the
# background from the start. Called by `make test` as
#     BUILD=build SAN=0 tests/run.sh        (or BUILD=build-san SAN=1)
# Each unit binary counts as one test (pass = exit 0); the integration suite
# counts its own tests. The last line is "N passed, N failed" (", N skipped"
# when the suite skipped some). Exit status is non-zero when anything failed.
# Extra arguments go to the integration runner (e.g. -k half_close --relay copy).
set -u

cd "$(dirname "$0")/.." || exit 2

BUILD=${BUILD:-build}
SAN=${SAN:-0}
PYTHON=${PYTHON:-python3}

if [ "$SAN" = 1 ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    # Leaks of libraries we link (MIT Kerberos), each entry reviewed: tests/lsan.supp.
    export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
fi

passed=0
failed=0
skipped=0

# ---- the 3-minute soak (bench/soak.sh), in the background from here to the end: it overlaps
# the unit tests, the fuzz smoke run and the start of the integration suites (its own network
# namespace, its own ports). One check per pass rule. SOAK_TEST=0 leaves it out.
soakpid=""
soaklog=""
if [ "${SOAK_TEST:-1}" != 0 ] && [ "$(id -u)" = 0 ]; then
    soaklog=$(mktemp "${TMPDIR:-/tmp}/ringsocks-soak.XXXXXX") || exit 2
    SOAK_SAN=$([ "$SAN" = 1 ] && echo 1) SOAK_MINUTES=3 SOAK_OUT="$BUILD/soak-test" BUILD=$BUILD \
        bench/soak.sh >"$soaklog" 2>&1 &
    soakpid=$!
fi

# ---- unit tests
shopt -s nullglob
units=("$BUILD"/tests/test_*)
shopt -u nullglob
for t in "${units[@]}"; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    name="unit/$(basename "$t")"
    echo "== $name"
    "$t"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name: exit status $rc"
        failed=$((failed + 1))
    fi
done
if [ "${#units[@]}" -eq 0 ]; then
    echo "note: no unit test binaries in $BUILD/tests/"
fi

# ---- fuzz smoke run: each libFuzzer harness for a short, bounded time
shopt -s nullglob
fuzzers=("$BUILD"/fuzz/fuzz_*)
shopt -u nullglob
names=()
for f in "${fuzzers[@]}"; do
    [ -x "$f" ] && [[ $f != *.log ]] && names+=("$(basename "$f" | sed 's/^fuzz_//')")
done
if [ "${#names[@]}" -gt 0 ]; then
    echo "== fuzz smoke (${FUZZ_SECONDS:-10} s each)"
    while IFS= read -r l; do
        echo "$l"
        case $l in
        "PASS fuzz_"*) passed=$((passed + 1)) ;;
        "FAIL fuzz_"*) failed=$((failed + 1)) ;;
        esac
    done < <(tests/fuzz/run.sh -t "${FUZZ_SECONDS:-10}" "$BUILD/fuzz" "${names[@]}" 2>&1)
else
    echo "note: no fuzz harnesses in $BUILD/fuzz/"
fi

# ---- checks that print one "PASS name..." or "FAIL ..." line last, counted as one test each
one_check() { # name command...
    local name=$1 out
    shift
    echo "== $name"
    out=$("$@" 2>&1)
    echo "$out" | tail -n 1
    case $(echo "$out" | tail -n 1) in
    "PASS $name"*) passed=$((passed + 1)) ;;
    *) echo "$out" | head -n 40; echo "FAIL $name"; failed=$((failed + 1)) ;;
    esac
}
# Every header compiles on its own.
one_check check-headers make -s --no-print-directory check-headers BUILD="$BUILD"
# The layers: no include circle among modules, nothing below the phases names one.
one_check check-layers "$PYTHON" tests/check_layers.py
# Every opcode the shards submit is on their ring's allowlist (src/ring_allow.c).
one_check check-ring-ops "$PYTHON" tests/check_ring_ops.py
# The code format: every C file as tools/.clang-format writes it.
one_check format-check make -s --no-print-directory format-check
# make install into a temporary tree: files, modes, unit paths, config check, uninstall.
one_check install-check make -s --no-print-directory install-check BUILD="$BUILD"

# ---- integration tests
# The network-namespace suites (cases_egress.py, cases_transparent.py: namespaces, veth pairs,
# nftables rulesets and processes of their own, nothing on the host's network) run in a second
# runner alongside the rest; its output
# is printed after the main runner's and both summaries are added up. EGRESS_PARALLEL=0 runs
# it after the rest instead.
add_summary() { # name logfile exit-status
    local name=$1 file=$2 rc=$3 summary p f s
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$file" | tail -n 1)
    if [ -z "$summary" ]; then
        echo "FAIL $name: run.py ended (exit status $rc) without a summary line"
        failed=$((failed + 1))
        return
    fi
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$summary")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$summary")
    s=0
    if [[ $summary =~ ([0-9]+)\ skipped ]]; then
        s=${BASH_REMATCH[1]}
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: run.py exit status $rc"
        failed=$((failed + 1))
    fi
}
slog=""
log=$(mktemp "${TMPDIR:-/tmp}/ringsocks-run.XXXXXX") || exit 2
elog=$(mktemp "${TMPDIR:-/tmp}/ringsocks-egress.XXXXXX") || exit 2
epid=""
trap '[ -n "$epid" ] && kill "$epid" 2>/dev/null; [ -n "$soakpid" ] && kill "$soakpid" 2>/dev/null
    rm -f "$log" "$elog" ${slog:+"$slog"} ${soaklog:+"$soaklog"}' EXIT
# The Kerberos suites (krb, gss: a KDC of their own on free loopback ports) run there too, and
# the floods (cases_floods.py: 20,000 connections in namespaces of their own, ~40 s).
egress=("$PYTHON" tests/integration/run.py --binary "$BUILD/ringsocks" --suite egress --suite transparent
    --suite krb --suite gss --suite floods "$@")
if [ "${EGRESS_PARALLEL:-1}" != 0 ]; then
    "${egress[@]}" >"$elog" 2>&1 &
    epid=$!
fi
echo "== integration ($BUILD/ringsocks)"
"$PYTHON" tests/integration/run.py --binary "$BUILD/ringsocks" --skip-suite egress --skip-suite transparent \
    --skip-suite krb --skip-suite gss --skip-suite floods "$@" 2>&1 |
    tee "$log"
rc=${PIPESTATUS[0]}
add_summary integration "$log" "$rc"
echo "== integration, egress and transparent suites in network namespaces, Kerberos suites ($BUILD/ringsocks)"
if [ -n "$epid" ]; then
    wait "$epid"
    erc=$?
    epid=""
else
    "${egress[@]}" >"$elog" 2>&1
    erc=$?
fi
cat "$elog"
add_summary "integration (egress)" "$elog" "$erc"

# ---- socksload: a short run of every mode against the server, data verified.
# `make all` builds it, so a missing binary is a failure, not a reason to skip.
if [ ! -x "$BUILD/socksload" ]; then
    echo "FAIL socksload smoke: $BUILD/socksload is missing or not executable (make all builds it)"
    failed=$((failed + 1))
else
    echo "== socksload smoke ($BUILD/socksload)"
    slog=$(mktemp "${TMPDIR:-/tmp}/ringsocks-sl.XXXXXX") || exit 2
    BUILD=$BUILD tests/socksload_smoke.sh 2>&1 | tee "$slog"
    ssum=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$slog" | tail -n 1)
    if [ -n "$ssum" ]; then
        passed=$((passed + ${ssum%% passed*}))
        f=${ssum#*passed, }
        failed=$((failed + ${f%% failed*}))
    else
        echo "FAIL socksload smoke: no summary line"
        failed=$((failed + 1))
    fi
fi

# ---- the soak started at the top
if [ -n "$soakpid" ]; then
    echo "== soak, 3 minutes (bench/soak.sh; report $BUILD/soak-test.md)"
    wait "$soakpid"
    src=$?
    soakpid=""
    cat "$soaklog"
    n=$(grep -c '^PASS soak-' "$soaklog")
    f=$(grep -c '^FAIL soak-' "$soaklog")
    passed=$((passed + n))
    failed=$((failed + f))
    if [ "$src" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL soak: exit status $src"
        failed=$((failed + 1))
    fi
elif [ "${SOAK_TEST:-1}" != 0 ]; then
    echo "note: the soak needs root (a network namespace, a memory cgroup): skipped"
    skipped=$((skipped + 1))
fi

line="$passed passed, $failed failed"
if [ "$skipped" -gt 0 ]; then
    line="$line, $skipped skipped"
fi
echo "$line"
[ "$failed" -eq 0 ]
