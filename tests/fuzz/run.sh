#!/usr/bin/env bash
# tests/fuzz/run.sh - run the libFuzzer harnesses for a bounded time and report.
#
#     tests/fuzz/run.sh [-t SECONDS] [-n RUNS] [-j JOBS] FUZZ_DIR NAME[@RUNS]...
#
# For each NAME runs FUZZ_DIR/fuzz_NAME for SECONDS (default 60) on FUZZ_DIR/corpus-NAME, a
# working copy of tests/fuzz/corpus/NAME (the seeds are copied in on every run; what the
# fuzzer adds stays there and is reused next time, the repository's corpus is never written).
# With -n RUNS, each harness runs until RUNS inputs have been executed instead, SECONDS
# being then only the bound: a harness that did not reach RUNS in that time FAILs. NAME@RUNS
# gives one harness its own RUNS (a stateful harness runs far fewer inputs a second).
# Up to JOBS harnesses run at once (default: one per harness, at most one per CPU).
# Crash inputs go to FUZZ_DIR/artifacts-NAME/, the full log to FUZZ_DIR/fuzz_NAME.log.
#
# Prints one line per harness, in the order given:
#     PASS fuzz_NAME: N execs           (N from libFuzzer's stat::number_of_executed_units)
#     FAIL fuzz_NAME: why               (followed by the sanitizer/invariant lines, indented)
# Exit status: 0 when every harness passed, 1 otherwise, 2 on bad usage.
set -u

cd "$(dirname "$0")/../.." || exit 2

usage() {
    echo "usage: $0 [-t SECONDS] [-n RUNS] [-j JOBS] FUZZ_DIR NAME[@RUNS]..." >&2
    exit 2
}

seconds=60
runs=0
jobs=0
while getopts "t:n:j:" opt; do
    case $opt in
    t) seconds=$OPTARG ;;
    n) runs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || usage
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage
[[ $jobs =~ ^[0-9]+$ ]] || usage
[[ $runs =~ ^[0-9]+$ ]] || usage
dir=$1
shift
names=("$@")
if [ "$jobs" -eq 0 ]; then
    jobs=$(nproc 2>/dev/null || echo 1)
fi

# A UBSan report is a failure, not a warning; ASan leaks count too.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

# Run one harness (NAME or NAME@RUNS); its verdict line goes to $dir/fuzz_NAME.result.
run_one() {
    local name=${1%@*}
    local runs=$runs
    [[ $1 != *@* ]] || runs=${1#*@}
    local bin=$dir/fuzz_$name
    local corpus=$dir/corpus-$name
    local art=$dir/artifacts-$name
    local log=$dir/fuzz_$name.log
    local result=$dir/fuzz_$name.result
    local seeds=tests/fuzz/corpus/$name

    if [ ! -x "$bin" ]; then
        echo "FAIL fuzz_$name: $bin not built" >"$result"
        return
    fi
    if [ ! -d "$seeds" ]; then
        echo "FAIL fuzz_$name: no seed corpus $seeds" >"$result"
        return
    fi
    mkdir -p "$corpus" "$art"
    cp "$seeds"/* "$corpus"/
    # -timeout catches a hang in one input, -rss_limit_mb a runaway allocation; the
    # longest handshake stream is about 1 KiB, so 2 KiB inputs leave room for tails.
    local -a count=()
    [ "$runs" -eq 0 ] || count=(-runs="$runs")
    "$bin" -max_total_time="$seconds" "${count[@]}" -print_final_stats=1 -max_len=2048 \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$art/" "$corpus" >"$log" 2>&1
    local rc=$?
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        local crash
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        {
            echo "FAIL fuzz_$name: exit status $rc${crash:+, input saved as $crash} (log: $log)"
            grep -E 'invariant failed|ERROR: |runtime error|SUMMARY: |Test unit written' "$log" |
                head -n 8 | sed 's/^/    /'
        } >"$result"
    elif [ -z "$execs" ]; then
        echo "FAIL fuzz_$name: no final stats in $log" >"$result"
    elif [ "$execs" -lt "$runs" ]; then
        echo "FAIL fuzz_$name: $execs execs, fewer than the $runs asked in $seconds s" >"$result"
    else
        echo "PASS fuzz_$name: $execs execs" >"$result"
    fi
}

mkdir -p "$dir" || exit 2
running=0
for name in "${names[@]}"; do
    [[ $name != *@* || ${name#*@} =~ ^[0-9]+$ ]] || usage
    rm -f "$dir/fuzz_${name%@*}.result"
    run_one "$name" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

status=0
for name in "${names[@]}"; do
    name=${name%@*}
    result=$dir/fuzz_$name.result
    if [ -s "$result" ]; then
        cat "$result"
    else
        echo "FAIL fuzz_$name: the runner left no result"
    fi
    grep -q '^PASS ' "$result" 2>/dev/null || status=1
done
exit "$status"
