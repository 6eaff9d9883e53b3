#!/usr/bin/env bash
# run-tests.sh -- run every unit-test binary, the integration suite and the bounded
# simulator in one build dir.
#
# Usage: scripts/run-tests.sh BUILD_DIR            (make test uses build/asan)
# Env:   SIM_SEEDS (1000)  SIM_JOBS (2)  UNIT_TIMEOUT (300 s each)  SIM_TIMEOUT (3600 s)
#        FUZZ_SMOKE_SECONDS (10 per fuzz target; 0 skips the fuzz smoke)
#        FUZZ_STORAGE_SECONDS (30: the WAL record and snapshot decoders, issue #3's smoke)
#
# Prints one line per suite (PASS/FAIL, name, count, seconds) and ends with the plain
# line "N passed, M failed"; exits 1 if anything failed or nothing ran. A suite is one
# BUILD_DIR/tests/test_* binary, the integration suite, the chaos suite, one simulator
# run, or one fuzz target's smoke run.
# For cmocka binaries the counts are the individual tests from "[  PASSED  ] N test(s)."
# / "[  FAILED  ] N test(s)"; a suite whose output has no such line (the simulator, a
# fuzz run, a crash) counts as one test.
#
# Fuzz smoke: when clang can link libFuzzer, the tests/fuzz/fuzz_*.c targets are built
# with the Makefile's fuzz flavour (build/fuzz, `make fuzz-bins`) and each runs for
# FUZZ_SMOKE_SECONDS on its corpus (tests/fuzz/corpus/<target> seeds, findings kept in
# build/fuzz/corpus/<target>); crash inputs land in BUILD_DIR/test-logs/. A failed build
# is one failed suite. Without clang or libFuzzer the smoke is skipped with a SKIP line.
# Integration: tests/integration runs under Debian's /usr/bin/python3 -m pytest (not
# whatever python3 is first on PATH) against CONCLAVE_BIN=BUILD_DIR/conclave, after the
# unit tests; pytest's own passed/failed(+errors)/skipped counts join the totals. Each
# test's cluster dirs and member logs stay in BUILD_DIR/test-logs/integration/. Without
# pytest or requests for that python (scripts/deps.sh installs python3-pytest and
# python3-requests), or without BUILD_DIR/conclave, it is skipped with a SKIP line.
# Env: INTEGRATION_TIMEOUT (600 s).
# Chaos: tests/chaos (the bounded Jepsen-style pass: linearizability and workload checker
# tests, register under kill, pause and partition nemeses on three servers, the
# --test-stale-reads negative control, short lock/ids/watch and slow-disk/clock-jump
# phases; about 2.5 minutes) runs the same way, right after integration, against the same binary:
# histories and member logs stay in BUILD_DIR/test-logs/chaos/. Env: CHAOS_TIMEOUT (600 s).
# Each suite's full output is kept in BUILD_DIR/test-logs/<suite>.log, and the tail of
# a failing one is echoed below its line.
set -uo pipefail

dir=${1:?usage: run-tests.sh BUILD_DIR}
logs=$dir/test-logs
mkdir -p "$logs"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

passed=0 failed=0 skipped=0 suites=0

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run_suite NAME TIMEOUT CMD... : run one suite, print its line, add to the totals.
run_suite() {
    local name=$1 limit=$2
    shift 2
    local log=$logs/$name.log t0 t1 rc p f s note
    t0=$(now_ms)
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    t1=$(now_ms)
    p=$(awk '/^\[  PASSED  \] [0-9]+ test/ {n += $4} END {print n + 0}' "$log")
    f=$(awk '/^\[  FAILED  \] [0-9]+ test/ {n += $4} END {print n + 0}' "$log")
    s=$(awk '/^\[  SKIPPED \] [0-9]+ test/ {n += $4} END {print n + 0}' "$log")
    if grep -q '^\[==========\] .* test(s) run\.' "$log"; then
        note="$((p + f + s)) tests"
    else
        note=$(grep -E '^sim: ' "$log" | tail -n 1)
        [ -n "$note" ] || note=$(awk '/^stat::number_of_executed_units:/ {n = $2} END {if (n) print n " runs"}' "$log")
        [ "$rc" -eq 0 ] && p=1
    fi
    [ "$rc" -eq 124 ] && note="$note (timed out after ${limit}s)"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    suites=$((suites + 1))
    local verdict=PASS
    [ "$rc" -eq 0 ] || verdict=FAIL
    printf '%s  %-28s %-32s %6d.%02ds\n' "$verdict" "$name" "$note" \
        $(((t1 - t0) / 1000)) $((((t1 - t0) % 1000) / 10))
    if [ "$verdict" = FAIL ]; then
        echo "      exit $rc; first errors and last lines of $log:"
        grep -E -m 3 'ERROR: [A-Za-z]+Sanitizer|runtime error:|FAIL seed=' "$log" | sed 's/^/      ! /'
        tail -n 25 "$log" | sed 's/^/      | /'
    fi
}

for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    run_suite "$(basename "$t")" "${UNIT_TIMEOUT:-300}" "$t"
done

# pytest_suite NAME TIMEOUT: the pytest suite in tests/NAME against real server processes.
pytest_suite() {
    local name=$1 limit=$2
    local root py=/usr/bin/python3 log=$logs/$name.log t0 t1 rc line p f e s note
    root=$(cd "$(dirname "$0")/.." && pwd)
    [ -d "$root/tests/$name" ] || return 0
    if [ ! -x "$dir/conclave" ]; then
        printf 'SKIP  %-28s (no %s)\n' "$name" "$dir/conclave"
        return 0
    fi
    if ! "$py" -c 'import pytest, requests' >/dev/null 2>&1; then
        printf 'SKIP  %-28s (%s lacks pytest or requests: scripts/deps.sh)\n' "$name" "$py"
        return 0
    fi
    t0=$(now_ms)
    CONCLAVE_BIN="$(cd "$dir" && pwd)/conclave" PYTHONDONTWRITEBYTECODE=1 \
        timeout --kill-after=10 "$limit" \
        "$py" -m pytest -v --durations=10 -p no:cacheprovider -o faulthandler_timeout=120 \
        --basetemp="$logs/$name" \
        "$root/tests/$name" >"$log" 2>&1
    rc=$?
    t1=$(now_ms)
    # pytest's closing line, e.g. "2 failed, 25 passed, 1 error in 31.02s"
    line=$(grep -E '[0-9]+ (passed|failed|errors?|skipped)' "$log" | grep -E ' in [0-9.]+s' |
        tail -n 1)
    count() { echo "$line" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
    if [ -n "$line" ]; then
        p=$(count passed) f=$(count failed) e=$(count 'errors?') s=$(count skipped)
    else # killed before its summary (timeout): count the verbose per-test lines
        p=$(grep -cE '::.* PASSED' "$log") f=$(grep -cE '::.* FAILED' "$log")
        e=$(grep -cE '::.* ERROR' "$log") s=$(grep -cE '::.* SKIPPED' "$log")
    fi
    f=$((f + e))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    note="$((p + f + s)) tests"
    [ "$rc" -eq 124 ] && note="$note (timed out after ${limit}s)"
    [ "$rc" -eq 5 ] && note="no tests collected"
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    suites=$((suites + 1))
    local verdict=PASS
    [ "$rc" -eq 0 ] || verdict=FAIL
    printf '%s  %-28s %-32s %6d.%02ds\n' "$verdict" "$name" "$note" \
        $(((t1 - t0) / 1000)) $((((t1 - t0) % 1000) / 10))
    if [ "$verdict" = FAIL ]; then
        echo "      exit $rc; failing tests and last lines of $log:"
        grep -E '^(FAILED|ERROR) ' "$log" | head -n 20 | sed 's/^/      ! /'
        tail -n 25 "$log" | awk '{print "      | " $0}'
    fi
}

pytest_suite integration "${INTEGRATION_TIMEOUT:-600}"
pytest_suite chaos "${CHAOS_TIMEOUT:-600}"

if [ -x "$dir/conclave-sim" ]; then
    run_suite conclave-sim "${SIM_TIMEOUT:-3600}" \
        "$dir/conclave-sim" --seeds "${SIM_SEEDS:-1000}" --jobs "${SIM_JOBS:-2}"
else
    echo "SKIP  conclave-sim                 (not built: no sim/main.c yet)"
fi

# fuzz_smoke: build the libFuzzer targets and run each for FUZZ_SMOKE_SECONDS.
fuzz_smoke() {
    local root secs srcs log t0 t1 src name bin seeds t
    root=$(cd "$(dirname "$0")/.." && pwd)
    secs=${FUZZ_SMOKE_SECONDS:-10}
    srcs=("$root"/tests/fuzz/fuzz_*.c)
    [ -e "${srcs[0]}" ] || return 0
    if [ "$secs" -eq 0 ]; then
        echo "SKIP  fuzz smoke                   (FUZZ_SMOKE_SECONDS=0)"
        return 0
    fi
    if ! command -v clang >/dev/null 2>&1 ||
        ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' |
        clang -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1; then
        echo "SKIP  fuzz smoke                   (clang with libFuzzer not available)"
        return 0
    fi
    log=$logs/fuzz-build.log
    t0=$(now_ms)
    if ! make -C "$root" -j"${FUZZ_BUILD_JOBS:-2}" B=build/fuzz SAN=fuzz CC=clang fuzz-bins \
        >"$log" 2>&1; then
        t1=$(now_ms)
        printf '%s  %-28s %-32s %6d.%02ds\n' FAIL fuzz-build "make fuzz-bins failed" \
            $(((t1 - t0) / 1000)) $((((t1 - t0) % 1000) / 10))
        grep -E -m 5 'error' "$log" | sed 's/^/      ! /'
        tail -n 15 "$log" | sed 's/^/      | /'
        failed=$((failed + 1)) suites=$((suites + 1))
        return 0
    fi
    for src in "${srcs[@]}"; do
        name=$(basename "$src" .c)
        bin=$root/build/fuzz/$name
        mkdir -p "$root/build/fuzz/corpus/$name"
        seeds=()
        [ -d "$root/tests/fuzz/corpus/$name" ] && seeds=("$root/tests/fuzz/corpus/$name")
        t=$secs
        case $name in # the decoders of what is on disk get issue #3's 30 s
        fuzz_wal_record | fuzz_snap_decode) [ "$secs" -gt 0 ] && t=${FUZZ_STORAGE_SECONDS:-30} ;;
        esac
        run_suite "$name" $((t + 120)) "$bin" -max_total_time="$t" \
            -print_final_stats=1 -artifact_prefix="$logs/$name-" \
            "$root/build/fuzz/corpus/$name" "${seeds[@]}"
    done
}

fuzz_smoke

if [ "$suites" -eq 0 ]; then
    echo "run-tests: no test binaries in $dir/tests" >&2
    echo "0 passed, 0 failed"
    exit 1
fi
summary="$passed passed, $failed failed"
[ "$skipped" -eq 0 ] || summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
