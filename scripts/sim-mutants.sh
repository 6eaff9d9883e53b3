#!/usr/bin/env bash
# sim-mutants.sh -- prove the simulator's checks can fail: run each mutant build
# (compiled with -DRAFT_MUTANT_<NAME> into build/mutants/<NAME>/) and expect it caught.
#
# Usage: scripts/sim-mutants.sh NAME...      (make sim-mutants builds them and calls this)
# Env:   MUTANT_SEEDS (300)  MUTANT_JOBS (2)  MUTANT_TIMEOUT (1800 s each)
#
# Verdicts: "caught" = non-zero exit and a "FAIL seed=N" line (the seed is shown);
# "missed" = exit 0, every seed passed; "error" = non-zero exit without a FAIL line
# (usage error, crash outside a seed, missing binary). Only "caught" counts as caught:
# a mis-typed flag must not pass for a detection. Output of each run is kept in
# build/mutants/<NAME>/sim.log. Ends with "mutants: K/N caught"; exits 1 unless K == N.
set -uo pipefail

[ $# -gt 0 ] || { echo "usage: sim-mutants.sh NAME..." >&2; exit 2; }
seeds=${MUTANT_SEEDS:-300}
caught=0

printf '%-28s %-13s %-12s %s\n' mutant caught/missed seed time
for m in "$@"; do
    bin=build/mutants/$m/conclave-sim
    log=build/mutants/$m/sim.log
    seed=- verdict=error t0=$(date +%s)
    if [ -x "$bin" ]; then
        timeout --kill-after=10 "${MUTANT_TIMEOUT:-1800}" "$bin" --seeds "$seeds" \
            --jobs "${MUTANT_JOBS:-2}" --stop-on-fail >"$log" 2>&1
        rc=$?
        fail_seed=$(grep -o 'FAIL seed=[0-9]*' "$log" | head -n 1 | cut -d= -f2)
        if [ "$rc" -eq 0 ]; then
            verdict=missed
        elif [ -n "$fail_seed" ]; then
            verdict=caught seed=$fail_seed
            caught=$((caught + 1))
        else
            verdict="error($rc)"
        fi
    else
        verdict="error(no bin)"
    fi
    printf '%-28s %-13s %-12s %ss\n' "$m" "$verdict" "$seed" $(($(date +%s) - t0))
done
echo "mutants: $caught/$# caught"
[ "$caught" -eq $# ]
