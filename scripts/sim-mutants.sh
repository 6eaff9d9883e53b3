#!/usr/bin/env bash
# sim-mutants.sh -- prove the simulator's checks can fail: run each mutant build
# (compiled with -DRAFT_MUTANT_<NAME>, or -DSIM_MUTANT_<X> for a name SIM_<X>, into
# build/mutants/<NAME>/) and expect it caught. SIM_* mutants break the lease driving in
# sim/lockhost.c, so they run with --locks on (every seed has lock clients), through all
# seeds, and count as caught only by a lease/lock check (LOCK_CHECKS below): a seed that
# fails some other check is not their doing.
#
# Usage: scripts/sim-mutants.sh NAME...      (make sim-mutants builds them and calls this)
# Env:   MUTANT_SEEDS (300)  MUTANT_JOBS (2)  MUTANT_TIMEOUT (1800 s each)
#
# Verdicts: "caught" = non-zero exit and a "FAIL seed=N" line (the seed is shown; for
# SIM_* the lowest seed failing a lease/lock check);
# "missed" = exit 0, every seed passed ("missed(other)": SIM_* seeds failed, but only
# other checks); "error" = non-zero exit without a FAIL line
# (usage error, crash outside a seed, missing binary). Only "caught" counts as caught:
# a mis-typed flag must not pass for a detection. Output of each run is kept in
# build/mutants/<NAME>/sim.log. Ends with "mutants: K/N caught"; exits 1 unless K == N.
set -uo pipefail

[ $# -gt 0 ] || { echo "usage: sim-mutants.sh NAME..." >&2; exit 2; }
seeds=${MUTANT_SEEDS:-300}
caught=0
LOCK_CHECKS='lock-overlap|resource-overlap|fencing|token-order|lock-digest|lease-deadline|renew-deposed|expire-quorum'

printf '%-28s %-13s %-12s %s\n' mutant caught/missed seed time
for m in "$@"; do
    bin=build/mutants/$m/conclave-sim
    log=build/mutants/$m/sim.log
    seed=- verdict=error t0=$(date +%s)
    extra=(--stop-on-fail) checks='[a-z-]+'
    case $m in SIM_*) extra=(--locks on) checks=$LOCK_CHECKS ;; esac
    if [ -x "$bin" ]; then
        timeout --kill-after=10 "${MUTANT_TIMEOUT:-1800}" "$bin" --seeds "$seeds" \
            --jobs "${MUTANT_JOBS:-2}" "${extra[@]}" >"$log" 2>&1
        rc=$?
        fail_seed=$(grep -Eo "^FAIL seed=[0-9]+ check=($checks) " "$log" | cut -d' ' -f2 |
            cut -d= -f2 | sort -n | head -n 1)
        if [ -n "$fail_seed" ] && [ "$rc" -ne 0 ]; then
            verdict=caught seed=$fail_seed
            caught=$((caught + 1))
        elif [ "$rc" -eq 0 ]; then
            verdict=missed
        elif grep -q '^FAIL seed=' "$log"; then
            verdict="missed(other)" # SIM_*: only seeds failing checks it does not touch
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
