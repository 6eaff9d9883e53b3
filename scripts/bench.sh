#!/usr/bin/env bash
# bench.sh -- what `make bench` measures: simulator throughput, Conclave vs etcd (KV and
# locks, locks also vs Redis), the WAL.
#
# Usage: scripts/bench.sh [BUILD_DIR]          (make bench passes build)
# Env:   BENCH_SEEDS (200)  BENCH_RUNS (3)     simulator part
#        BENCH_KV_REPS (3)  BENCH_KV_SECONDS (2)  BENCH_KV=0 skips the KV part
#        BENCH_KV_SYSTEMS (conclave-3,etcd-3; add conclave-1,etcd-1 for 1-node rows)
#        BENCH_KV_RSS_KEYS (1000000)  BENCH_KV_RSS_SECONDS (150,45: conclave,etcd bounds)
#        BENCH_KV_RSS_SYSTEMS (conclave-3,etcd-3; empty skips the memory part)
#        BENCH_LOCK_REPS (3)  BENCH_LOCK_SECONDS (2)  BENCH_LOCK=0 skips the lock part
#        BENCH_WAL_REPS (3)  BENCH_WAL_SECONDS (0.5)  BENCH_WAL=0 skips the WAL part
#        BENCH_ID_REPS (3)  BENCH_ID_SECONDS (3)  BENCH_ID=0 skips the ID service part
#        BENCH_RESP_SECONDS (5)  BENCH_RESP=0 skips the RESP part
#
# 1. Simulator: times `conclave-sim --seeds N --jobs 1 --stats` with hyperfine when it
#    is installed, else with `date +%s%N` around each run, and prints the mean and
#    seeds/minute. The output of the last run (its --stats) is kept in
#    BUILD_DIR/bench-sim.log. Skipped with a note when conclave-sim is not built.
# 2. KV: bench/kv_bench.py (Debian's /usr/bin/python3) starts a 3-node Conclave
#    (BUILD_DIR/conclave) and a 3-node etcd on loopback (1-node ones too with
#    BENCH_KV_SYSTEMS), drives both through the same etcd v3 JSON paths with wrk (put
#    and linearizable range at 1 and 50 connections), prints a table of medians with
#    the Conclave/etcd ratio, PASS/MISS
#    for the targets of issue #4, the machine's fdatasync and loopback round-trip floors,
#    and the RSS of each 3-node leader after loading 1M keys of 100 B (time-bounded);
#    raw results go to BUILD_DIR/bench/results.json. docs/bench.md explains it all.
# 2b. Locks: bench/lock_bench.py starts a 3-node Conclave (twice: lease per client and
#    lease per hold), a 3-node etcd and a redis-server, drives them with
#    bench/lock_driver.c (built into BUILD_DIR/bench/), and prints uncontended
#    acquire+release cycles/s (1 and 16 clients) and 50-contender handoffs/s with the
#    ratios and PASS/MISS for issue #5's target; results in BUILD_DIR/bench/locks.json.
# 3. WAL: BUILD_DIR/bench/wal_bench (bench/wal_bench.c) times the write-ahead log against
#    the bare fdatasync rate of the same disk (about 1 minute) and prints PASS/MISS for
#    the targets of issue #3; WAL data goes to a temp dir under BUILD_DIR/bench/wal-tmp,
#    results to BUILD_DIR/bench/wal.json. A MISS does not fail the script; an error does.
# 4. RESP: bench/resp_bench.sh runs redis-benchmark (-c 50; SET, GET, INCR, without and
#    with -P 16) against a 3-node Conclave's RESP listener and a redis-server with
#    appendonly yes + appendfsync always, and prints ops/s, the ratios and PASS/MISS for
#    issue #6's targets (medians of 3 alternating runs, about 5 minutes); results in
#    BUILD_DIR/bench/resp.json.
# Every part always runs; the exit status is non-zero if any failed.
set -uo pipefail

dir=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0

bench_sim() {
    local sim=$dir/conclave-sim seeds=${BENCH_SEEDS:-200} runs=${BENCH_RUNS:-3}
    local log=$dir/bench-sim.log cmd mean_s total_ns t0 i
    if [ ! -x "$sim" ]; then
        echo "bench: $sim is not built (no sim/main.c yet); skipping the simulator part"
        return 0
    fi
    cmd="$sim --seeds $seeds --jobs 1 --stats"
    if command -v hyperfine >/dev/null; then
        local json=$dir/bench-sim.json
        hyperfine --runs "$runs" --output "$log" --export-json "$json" "$cmd" || return 1
        mean_s=$(sed -n 's/^ *"mean": *\([0-9.eE+-]*\),*$/\1/p' "$json" | head -n 1)
    else
        total_ns=0
        for ((i = 1; i <= runs; i++)); do
            t0=$(date +%s%N)
            $cmd >"$log" 2>&1 || return 1
            total_ns=$((total_ns + $(date +%s%N) - t0))
        done
        mean_s=$(awk -v ns="$total_ns" -v r="$runs" 'BEGIN {printf "%.3f", ns / r / 1e9}')
    fi
    tail -n 5 "$log"
    awk -v s="$mean_s" -v n="$seeds" \
        'BEGIN {printf "bench: sim %d seeds, 1 job: mean %.3f s -> %.0f seeds/minute\n", n, s, n / s * 60}'
}

if ! bench_sim; then
    echo "bench: the simulator part failed (see $dir/bench-sim.log); going on with the KV part" >&2
    status=1
fi

if [ "${BENCH_KV:-1}" != 0 ]; then
    echo
    echo "bench: KV: Conclave vs etcd, then memory with 1M keys (about 5 minutes)"
    PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 "$root/bench/kv_bench.py" --build-dir "$dir" ||
        status=1
fi
if [ "${BENCH_LOCK:-1}" != 0 ]; then
    echo
    echo "bench: locks: Conclave vs etcd vs Redis (about 2 minutes)"
    PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 "$root/bench/lock_bench.py" --build-dir "$dir" ||
        status=1
fi
if [ "${BENCH_WAL:-1}" != 0 ]; then
    echo
    echo "bench: WAL vs bare fdatasync (about 1 minute)"
    if [ -x "$dir/bench/wal_bench" ]; then
        "$dir/bench/wal_bench" --dir "$dir/bench/wal-tmp" --json "$dir/bench/wal.json" \
            --reps "${BENCH_WAL_REPS:-3}" --seconds-per-run "${BENCH_WAL_SECONDS:-0.5}" ||
            status=1
    else
        echo "bench: $dir/bench/wal_bench is not built (make $dir/bench/wal_bench)" >&2
        status=1
    fi
fi
if [ "${BENCH_KV_LOOKUP:-1}" != 0 ] && [ -x "$dir/bench/kv_lookup_bench" ]; then
    echo
    echo "bench: KV store exact lookups, 100k and 1M keys (about 1 minute)"
    "$dir/bench/kv_lookup_bench" 100000 1000000 3 || status=1
    "$dir/bench/kv_lookup_bench" 1000000 1000000 3 || status=1
fi
if [ "${BENCH_ID:-1}" != 0 ]; then
    echo
    echo "bench: ID service: ids/s over HTTP and RESP, open-loop burst latency (about 8 minutes)"
    PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 "$root/bench/id_bench.py" --build-dir "$dir" \
        --reps "${BENCH_ID_REPS:-3}" --duration "${BENCH_ID_SECONDS:-3}" || status=1
fi
if [ "${BENCH_RESP:-1}" != 0 ]; then
    echo
    echo "bench: RESP: redis-benchmark, Conclave vs redis-server with appendfsync always (about 5 minutes)"
    "$root/bench/resp_bench.sh" "$dir" || status=1
fi
exit "$status"
