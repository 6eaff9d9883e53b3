#!/usr/bin/env bash
# bench.sh -- simulator throughput, in seeds per minute, on one core.
#
# Usage: scripts/bench.sh [BUILD_DIR]          (make bench passes build)
# Env:   BENCH_SEEDS (200)  BENCH_RUNS (3)
#
# Times `conclave-sim --seeds N --jobs 1 --stats` with hyperfine when it is installed,
# else with `date +%s%N` around each run, and prints the mean and seeds/minute. The
# output of the last run (its --stats) is kept in BUILD_DIR/bench-sim.log.
# A fuller benchmark, side by side with etcd, comes later.
set -euo pipefail

dir=${1:-build}
sim=$dir/conclave-sim
seeds=${BENCH_SEEDS:-200}
runs=${BENCH_RUNS:-3}
log=$dir/bench-sim.log
[ -x "$sim" ] || { echo "bench: $sim is not built (no sim/main.c yet)" >&2; exit 1; }
cmd="$sim --seeds $seeds --jobs 1 --stats"

if command -v hyperfine >/dev/null; then
    json=$dir/bench-sim.json
    hyperfine --runs "$runs" --output "$log" --export-json "$json" "$cmd"
    mean_s=$(sed -n 's/^ *"mean": *\([0-9.eE+-]*\),*$/\1/p' "$json" | head -n 1)
else
    total_ns=0
    for ((i = 1; i <= runs; i++)); do
        t0=$(date +%s%N)
        $cmd >"$log" 2>&1
        total_ns=$((total_ns + $(date +%s%N) - t0))
    done
    mean_s=$(awk -v ns="$total_ns" -v r="$runs" 'BEGIN {printf "%.3f", ns / r / 1e9}')
fi

tail -n 5 "$log"
awk -v s="$mean_s" -v n="$seeds" \
    'BEGIN {printf "bench: sim %d seeds, 1 job: mean %.3f s -> %.0f seeds/minute\n", n, s, n / s * 60}'
