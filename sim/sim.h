/* sim.h -- Conclave's deterministic cluster simulator: one seed, one run.
 *
 * sim_run() builds a world of 3..7 Raft nodes (src/raft) with simulated disks,
 * a lossy reordering network, skewed clocks and KV clients, injects faults for
 * a while (crashes that lose unsynced writes, pauses, partitions, flapping
 * links, membership changes, leader transfers), heals everything, demands
 * liveness and convergence, and checks safety after every event plus
 * linearizability of the whole client history at the end (DESIGN.md, testing
 * level 2). Lock seeds (cfg->locks) add leases, locks, lock clients and a fenced
 * resource with their own checks (sim/lockworld.h). Everything derives from
 * cfg->seed: the same seed gives the same trace, byte for byte, in any process.
 *
 * Ownership: sim_run() reads *cfg and fills *out; it keeps neither.
 */
#ifndef CONCLAVE_SIM_SIM_H
#define CONCLAVE_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_NODES_MIN           3
#define SIM_NODES_MAX           7
#define SIM_TICK_US             10000u   /* one node tick: 10 ms of its own clock */
#define SIM_FAULT_TICKS_DEFAULT 3000u    /* fault phase: 30 s of simulated time */
#define SIM_FAULT_TICKS_MAX     1000000u /* about 2.8 simulated hours */
#define SIM_FAILOVER_MAX        64       /* leader-crash -> new-leader samples kept per run */
#define SIM_CHECK_MAX           32
#define SIM_DETAIL_MAX          512

enum sim_disk {
    SIM_DISK_MIXED = 0, /* the seed picks: two seeds in three use the real WAL */
    SIM_DISK_REAL,      /* storage/wal.c + snap.c over simfs (sim/disk_wal.h) */
    SIM_DISK_MODEL      /* the logical disk model (sim/disk.h) */
};

enum sim_locks {
    SIM_LOCKS_MIXED = 0, /* the seed picks: one seed in three runs lock clients */
    SIM_LOCKS_ON,        /* every seed (sim/lockworld.h) */
    SIM_LOCKS_OFF
};

struct sim_config {
    uint64_t seed;
    uint32_t disk;         /* enum sim_disk */
    uint32_t n_nodes;      /* 0: the seed picks 3 or 5; else SIM_NODES_MIN..MAX */
    uint32_t fault_ticks;  /* 0: SIM_FAULT_TICKS_DEFAULT */
    bool verbose;          /* print one trace line per event to trace_out */
    FILE *trace_out;       /* NULL: stdout */
    bool no_direct_checks; /* only consequence checks (see checks.h; mutant studies) */
    uint32_t locks;        /* enum sim_locks */
};

struct sim_result {
    uint64_t seed;
    bool failed;
    char check[SIM_CHECK_MAX];   /* e.g. "election-safety", "linearizability" */
    char detail[SIM_DETAIL_MAX]; /* one line */
    uint64_t trace_hash;         /* FNV-1a over the trace; equal for equal seeds */
    uint32_t n_nodes;
    uint64_t sim_us; /* simulated time at the end of the run */
    uint64_t n_events;
    uint32_t n_elections;                      /* times a node became leader */
    uint32_t n_failover;                       /* samples in failover_ticks[] */
    uint32_t failover_ticks[SIM_FAILOVER_MAX]; /* leader crash -> any higher-term leader */
    uint32_t ops_ok, ops_fail, ops_unknown;
    bool lin_budget; /* the linearizability checker ran out of budget (not a failure) */
    /* storage backend (real WAL seeds only for the counters) */
    bool disk_real;
    uint32_t n_wal_recoveries;   /* restarts after a crash recovered through wal_open */
    uint32_t n_torn_tails;       /* of those, with wal_recovered.torn_bytes_dropped > 0 */
    uint32_t n_corrupt_refusals; /* recovery refused (WAL_ECORRUPT...): node kept down */
    uint32_t n_fsync_fatal;      /* crashes after a failed fsync (WAL_ESYNC / SNAP_ESYNC) */
    uint32_t n_enospc;           /* writes that ran out of space */
    /* lease and lock seeds only (sim/lockworld.h) */
    bool locks;                    /* lock clients ran in this seed */
    uint32_t n_lock_grants;        /* distinct grants (by log index) */
    uint32_t n_lock_writes_ok;     /* writes the protected resource accepted */
    uint32_t n_lock_writes_fenced; /* writes it rejected for an old token */
    uint32_t n_lease_expiries;     /* EXPIRE entries applied */
    uint32_t n_keepalives_ok, n_keepalives_failed; /* failed: the lease was dead */
};

void sim_config_default(struct sim_config *cfg, uint64_t seed);
/* Runs one seed. Returns 0 when every check passed, 1 when one failed (see
 * out->check and out->detail). Invalid configurations fail the run with
 * check "config". */
int sim_run(const struct sim_config *cfg, struct sim_result *out);

#endif /* CONCLAVE_SIM_SIM_H */
