/* main.c -- conclave-sim, the command line front end of the simulator (sim.h).
 *
 *   conclave-sim [--seed S | --seeds N [--seed-start S] | --soak-minutes M]
 *                [--jobs J] [--nodes N] [--ticks N] [--stop-on-fail]
 *                [--verbose] [--trace-hash] [--stats] [--no-direct-checks]
 *                [--disk real|model|mixed] [--locks on|off|mixed]
 *
 * Each seed is one sim_run(). A failing seed prints exactly
 *   FAIL seed=<seed> check=<name> <detail>
 *   replay: <argv0> --seed <seed> --verbose [forced options]
 * and the last line is always "sim: N seeds, F failed"; the exit status is 0
 * iff F == 0. A seed that crashes the process (an assertion in the core, a
 * sanitizer report) still prints its FAIL line from a signal handler or the
 * sanitizer death callback, from a message formatted before the seed started.
 *
 * --jobs J forks J workers; worker w runs seeds w, w+J, ... and sends one
 * fixed-size record per seed through its pipe (records are < PIPE_BUF, so
 * writes are atomic). The parent aggregates records and exit statuses; a
 * worker that dies mid-seed counts that seed as failed and, unless
 * --stop-on-fail, is replaced by one that carries on after it.
 *
 * This is the only file of the simulator that reads the wall clock: for
 * --soak-minutes (deadline and start seed) and --stats (wall seconds).
 *
 * Sections: options | output | one seed | workers | stats | main.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"
#include "sim.h"

#define MAIN_JOBS_MAX         64   /* bounds fork fan-out */
#define MAIN_LINE_MAX         1024 /* one FAIL + replay message */
#define MAIN_SOAK_MINUTES_MAX 100000

/* ---- options ------------------------------------------------------------------ */

struct main_opts {
    const char *argv0;
    uint64_t seed_start, n_seeds;
    bool soak;
    double soak_minutes;
    uint32_t jobs, nodes, ticks;
    bool stop_on_fail, verbose, trace_hash, stats, no_direct;
    uint32_t disk;  /* enum sim_disk */
    uint32_t locks; /* enum sim_locks */
};

static void main_usage(FILE *f)
{
    fprintf(f, "usage: conclave-sim [--seed S | --seeds N [--seed-start S] | --soak-minutes M]\n"
               "                    [--jobs J] [--nodes N] [--ticks N] [--stop-on-fail]\n"
               "                    [--verbose] [--trace-hash] [--stats] [--no-direct-checks]\n"
               "                    [--disk real|model|mixed] [--locks on|off|mixed]\n");
}

static bool main_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static int main_parse(int argc, char **argv, struct main_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->argv0 = argv[0];
    o->seed_start = 1;
    o->n_seeds = 1;
    o->jobs = 1;
    o->disk = SIM_DISK_MIXED; /* 2 seeds in 3 recover through the real WAL code */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x = 0;
        bool takes = true;
        if (strcmp(a, "--seed") == 0 && main_u64(v, &x)) {
            o->seed_start = x;
            o->n_seeds = 1;
        } else if (strcmp(a, "--seeds") == 0 && main_u64(v, &x) && x > 0) {
            o->n_seeds = x;
        } else if (strcmp(a, "--seed-start") == 0 && main_u64(v, &x)) {
            o->seed_start = x;
        } else if (strcmp(a, "--jobs") == 0 && main_u64(v, &x) && x >= 1 && x <= MAIN_JOBS_MAX) {
            o->jobs = (uint32_t)x;
        } else if (strcmp(a, "--nodes") == 0 && main_u64(v, &x) && x >= SIM_NODES_MIN &&
                   x <= SIM_NODES_MAX) {
            o->nodes = (uint32_t)x;
        } else if (strcmp(a, "--ticks") == 0 && main_u64(v, &x) && x >= 1 &&
                   x <= SIM_FAULT_TICKS_MAX) {
            o->ticks = (uint32_t)x;
        } else if (strcmp(a, "--disk") == 0 && v != NULL &&
                   (strcmp(v, "real") == 0 || strcmp(v, "model") == 0 || strcmp(v, "mixed") == 0)) {
            o->disk = strcmp(v, "real") == 0    ? SIM_DISK_REAL
                      : strcmp(v, "model") == 0 ? SIM_DISK_MODEL
                                                : SIM_DISK_MIXED;
        } else if (strcmp(a, "--locks") == 0 && v != NULL &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0 || strcmp(v, "mixed") == 0)) {
            o->locks = strcmp(v, "on") == 0    ? SIM_LOCKS_ON
                       : strcmp(v, "off") == 0 ? SIM_LOCKS_OFF
                                               : SIM_LOCKS_MIXED;
        } else if (strcmp(a, "--soak-minutes") == 0 && v != NULL && atof(v) > 0 &&
                   atof(v) <= MAIN_SOAK_MINUTES_MAX) {
            o->soak = true;
            o->soak_minutes = atof(v);
        } else {
            takes = false;
            if (strcmp(a, "--stop-on-fail") == 0)
                o->stop_on_fail = true;
            else if (strcmp(a, "--verbose") == 0)
                o->verbose = true;
            else if (strcmp(a, "--trace-hash") == 0)
                o->trace_hash = true;
            else if (strcmp(a, "--stats") == 0)
                o->stats = true;
            else if (strcmp(a, "--no-direct-checks") == 0)
                o->no_direct = true;
            else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
                return 1;
            else {
                fprintf(stderr, "conclave-sim: bad option or value: %s%s%s\n", a, v ? " " : "",
                        v ? v : "");
                return -1;
            }
        }
        if (takes)
            i++;
    }
    return 0;
}

/* ---- output --------------------------------------------------------------------- */

/* One write(2) per message, so lines from workers never interleave. */
static void main_emit(const char *buf, size_t n)
{
    fflush(stdout);
    while (n > 0) {
        ssize_t k = write(STDOUT_FILENO, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        buf += k;
        n -= (size_t)k;
    }
}

static int main_replay(const struct main_opts *o, uint64_t seed, char *buf, size_t cap)
{
    char nodes[32] = "", ticks[32] = "";
    if (o->nodes)
        snprintf(nodes, sizeof(nodes), " --nodes %u", o->nodes);
    if (o->ticks)
        snprintf(ticks, sizeof(ticks), " --ticks %u", o->ticks);
    const char *disk = o->disk == SIM_DISK_REAL    ? " --disk real"
                       : o->disk == SIM_DISK_MIXED ? " --disk mixed"
                                                   : "";
    const char *locks = o->locks == SIM_LOCKS_ON    ? " --locks on"
                        : o->locks == SIM_LOCKS_OFF ? " --locks off"
                                                    : "";
    return snprintf(buf, cap, "replay: %s --seed %" PRIu64 " --verbose%s%s%s%s%s\n", o->argv0,
                    seed, nodes, ticks, o->no_direct ? " --no-direct-checks" : "", disk, locks);
}

/* Pre-formatted for the crash paths, which may only write(2). */
static char main_crash_msg[MAIN_LINE_MAX];
static volatile sig_atomic_t main_crash_len;

static void main_crash_write(void)
{
    if (main_crash_len > 0) {
        ssize_t k = write(STDOUT_FILENO, main_crash_msg, (size_t)main_crash_len);
        (void)k;
        main_crash_len = 0;
    }
}

static void main_on_signal(int sig)
{
    main_crash_write();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Present in sanitizer runtimes only; NULL otherwise. The name is the
 * sanitizers' public interface, hence the reserved identifier. */
// NOLINTNEXTLINE(bugprone-reserved-identifier)
extern void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static void main_install_crash_handlers(void)
{
    static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], main_on_signal);
    if (__sanitizer_set_death_callback != NULL)
        __sanitizer_set_death_callback(main_crash_write);
}

/* ---- one seed -------------------------------------------------------------------- */

struct main_record { /* worker -> parent, one per seed */
    uint64_t seed;
    uint64_t sim_ticks;
    uint32_t failed, lin_budget;
    uint32_t disk_real, wal_recoveries, torn_tails, corrupt_refusals, fsync_fatal, enospc;
    uint32_t n_elections, ops_ok, ops_fail, ops_unknown;
    uint32_t n_failover;
    uint32_t failover_ticks[SIM_FAILOVER_MAX];
    uint32_t locks, lock_grants, lock_writes_ok, lock_writes_fenced, lease_expiries;
    uint32_t keepalives_ok, keepalives_failed;
};
_Static_assert(sizeof(struct main_record) <= 512, "records must stay well below PIPE_BUF");

static void main_run_seed(const struct main_opts *o, uint64_t seed, struct main_record *rec)
{
    char msg[MAIN_LINE_MAX];
    int n = snprintf(main_crash_msg, sizeof(main_crash_msg),
                     "FAIL seed=%" PRIu64 " check=crash the process died during this seed\n", seed);
    n += main_replay(o, seed, main_crash_msg + n, sizeof(main_crash_msg) - (size_t)n);
    fflush(stdout);
    main_crash_len = n;

    struct sim_config cfg;
    struct sim_result res;
    sim_config_default(&cfg, seed);
    cfg.n_nodes = o->nodes;
    cfg.fault_ticks = o->ticks;
    cfg.verbose = o->verbose;
    cfg.no_direct_checks = o->no_direct;
    cfg.disk = o->disk;
    cfg.locks = o->locks;
    sim_run(&cfg, &res);
    main_crash_len = 0;

    memset(rec, 0, sizeof(*rec));
    rec->seed = seed;
    rec->sim_ticks = res.sim_us / SIM_TICK_US;
    rec->failed = res.failed;
    rec->lin_budget = res.lin_budget;
    rec->disk_real = res.disk_real;
    rec->wal_recoveries = res.n_wal_recoveries;
    rec->torn_tails = res.n_torn_tails;
    rec->corrupt_refusals = res.n_corrupt_refusals;
    rec->fsync_fatal = res.n_fsync_fatal;
    rec->enospc = res.n_enospc;
    rec->n_elections = res.n_elections;
    rec->ops_ok = res.ops_ok;
    rec->ops_fail = res.ops_fail;
    rec->ops_unknown = res.ops_unknown;
    rec->n_failover = res.n_failover;
    memcpy(rec->failover_ticks, res.failover_ticks, sizeof(rec->failover_ticks));
    rec->locks = res.locks;
    rec->lock_grants = res.n_lock_grants;
    rec->lock_writes_ok = res.n_lock_writes_ok;
    rec->lock_writes_fenced = res.n_lock_writes_fenced;
    rec->lease_expiries = res.n_lease_expiries;
    rec->keepalives_ok = res.n_keepalives_ok;
    rec->keepalives_failed = res.n_keepalives_failed;

    n = 0;
    if (o->trace_hash)
        n += snprintf(msg, sizeof(msg), "trace-hash seed=%" PRIu64 " %016" PRIx64 "\n", seed,
                      res.trace_hash);
    if (res.failed) {
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, "FAIL seed=%" PRIu64 " check=%s %s\n", seed,
                      res.check, res.detail);
        n += main_replay(o, seed, msg + n, sizeof(msg) - (size_t)n);
    }
    if (n > (int)sizeof(msg) - 1)
        n = (int)sizeof(msg) - 1;
    main_emit(msg, (size_t)n);
}

/* ---- workers ----------------------------------------------------------------------- */

static double main_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t main_soak_seed(uint64_t start, uint64_t k)
{
    uint64_t x = start + k * UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

struct main_plan {
    const struct main_opts *o;
    double deadline_s; /* soak only */
};

static uint64_t main_seed_of(const struct main_plan *p, uint64_t k)
{
    return p->o->soak ? main_soak_seed(p->o->seed_start, k) : p->o->seed_start + k;
}

/* Seed number k of the run, or false when k is past the end (or the soak
 * deadline has passed). */
static bool main_seed_at(const struct main_plan *p, uint64_t k, uint64_t *seed)
{
    if (p->o->soak ? main_now_s() >= p->deadline_s : k >= p->o->n_seeds)
        return false;
    *seed = main_seed_of(p, k);
    return true;
}

static bool main_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Worker body: seeds k, k+stride, ...; one record each through fd. */
static _Noreturn void main_worker(const struct main_plan *p, uint64_t k, uint64_t stride, int fd)
{
    uint64_t seed;
    for (; main_seed_at(p, k, &seed); k += stride) {
        struct main_record rec;
        main_run_seed(p->o, seed, &rec);
        if (!main_write_all(fd, &rec, sizeof(rec)))
            _exit(3);
        if (rec.failed && p->o->stop_on_fail)
            break;
    }
    _exit(0);
}

struct main_totals {
    uint64_t seeds, failed, sim_ticks, elections, ok, fail, unknown, lin_budget;
    uint64_t disk_real, wal_recoveries, torn_tails, corrupt_refusals, fsync_fatal, enospc;
    uint64_t locks, lock_grants, lock_writes_ok, lock_writes_fenced, lease_expiries;
    uint64_t keepalives_ok, keepalives_failed;
    uint32_t *failover;
    size_t n_failover, cap_failover;
};

static void main_add(struct main_totals *t, const struct main_record *r)
{
    t->seeds++;
    t->failed += r->failed;
    t->sim_ticks += r->sim_ticks;
    t->elections += r->n_elections;
    t->ok += r->ops_ok;
    t->fail += r->ops_fail;
    t->unknown += r->ops_unknown;
    t->lin_budget += r->lin_budget;
    t->disk_real += r->disk_real;
    t->wal_recoveries += r->wal_recoveries;
    t->torn_tails += r->torn_tails;
    t->corrupt_refusals += r->corrupt_refusals;
    t->fsync_fatal += r->fsync_fatal;
    t->enospc += r->enospc;
    t->locks += r->locks;
    t->lock_grants += r->lock_grants;
    t->lock_writes_ok += r->lock_writes_ok;
    t->lock_writes_fenced += r->lock_writes_fenced;
    t->lease_expiries += r->lease_expiries;
    t->keepalives_ok += r->keepalives_ok;
    t->keepalives_failed += r->keepalives_failed;
    for (uint32_t i = 0; i < r->n_failover && i < SIM_FAILOVER_MAX; i++) {
        mem_grow((void **)&t->failover, &t->cap_failover, t->n_failover + 1, sizeof(*t->failover));
        t->failover[t->n_failover++] = r->failover_ticks[i];
    }
}

static void main_serial(const struct main_plan *p, struct main_totals *t)
{
    uint64_t seed;
    for (uint64_t k = 0; main_seed_at(p, k, &seed); k++) {
        struct main_record rec;
        main_run_seed(p->o, seed, &rec);
        main_add(t, &rec);
        if (rec.failed && p->o->stop_on_fail)
            break;
    }
}

struct main_worker_slot {
    pid_t pid;
    int fd;
    uint64_t next_k; /* the seed index it is running or will run next */
    char buf[sizeof(struct main_record)];
    size_t n_buf;
};

static int main_spawn(const struct main_plan *p, struct main_worker_slot *s, uint64_t stride)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        main_worker(p, s->next_k, stride, fds[1]);
    }
    close(fds[1]);
    s->pid = pid;
    s->fd = fds[0];
    s->n_buf = 0;
    return 0;
}

static int main_parallel(const struct main_plan *p, struct main_totals *t)
{
    uint32_t jobs = p->o->jobs;
    struct main_worker_slot slots[MAIN_JOBS_MAX];
    uint32_t live = 0;
    bool stopping = false;
    for (uint32_t w = 0; w < jobs; w++) {
        slots[w] = (struct main_worker_slot){.pid = -1, .fd = -1, .next_k = w};
        if (main_spawn(p, &slots[w], jobs) != 0) {
            perror("conclave-sim: fork");
            return -1;
        }
        live++;
    }
    while (live > 0) {
        struct pollfd pfd[MAIN_JOBS_MAX];
        uint32_t map[MAIN_JOBS_MAX], n = 0;
        for (uint32_t w = 0; w < jobs; w++)
            if (slots[w].fd >= 0) {
                pfd[n] = (struct pollfd){.fd = slots[w].fd, .events = POLLIN};
                map[n++] = w;
            }
        if (poll(pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("conclave-sim: poll");
            return -1;
        }
        for (uint32_t i = 0; i < n; i++) {
            struct main_worker_slot *s = &slots[map[i]];
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t k = read(s->fd, s->buf + s->n_buf, sizeof(s->buf) - s->n_buf);
            if (k < 0 && errno == EINTR)
                continue;
            if (k > 0) {
                s->n_buf += (size_t)k;
                if (s->n_buf == sizeof(s->buf)) {
                    struct main_record rec;
                    memcpy(&rec, s->buf, sizeof(rec));
                    s->n_buf = 0;
                    s->next_k += jobs;
                    main_add(t, &rec);
                    if (rec.failed && p->o->stop_on_fail && !stopping) {
                        stopping = true;
                        for (uint32_t w = 0; w < jobs; w++)
                            if (slots[w].pid > 0 && &slots[w] != s)
                                kill(slots[w].pid, SIGTERM);
                    }
                }
                continue;
            }
            /* EOF: the worker is done or died */
            close(s->fd);
            s->fd = -1;
            int status = 0;
            waitpid(s->pid, &status, 0);
            s->pid = -1;
            live--;
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (clean || stopping)
                continue;
            /* It died inside seed next_k: that seed failed (its FAIL line came
             * from the crash handler). Carry on after it. */
            struct main_record rec = {.seed = main_seed_of(p, s->next_k), .failed = 1};
            main_add(t, &rec);
            if (p->o->stop_on_fail) {
                stopping = true;
                for (uint32_t w = 0; w < jobs; w++)
                    if (slots[w].pid > 0)
                        kill(slots[w].pid, SIGTERM);
                continue;
            }
            s->next_k += jobs;
            uint64_t next_seed;
            if (main_seed_at(p, s->next_k, &next_seed)) {
                if (main_spawn(p, s, jobs) != 0) {
                    perror("conclave-sim: fork");
                    return -1;
                }
                live++;
            }
        }
    }
    return 0;
}

/* ---- stats ---------------------------------------------------------------------------- */

static int main_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void main_print_stats(struct main_totals *t, double wall_s)
{
    uint32_t med = 0, p99 = 0;
    if (t->n_failover > 0) {
        qsort(t->failover, t->n_failover, sizeof(*t->failover), main_cmp_u32);
        med = t->failover[t->n_failover / 2];
        p99 = t->failover[(t->n_failover * 99) / 100 < t->n_failover ? (t->n_failover * 99) / 100
                                                                     : t->n_failover - 1];
    }
    double s = wall_s > 0 ? wall_s : 1e-9;
    printf("stats: seeds=%" PRIu64 " simulated_ticks=%" PRIu64 " wall_s=%.2f seeds_per_min=%.1f "
           "ticks_per_s=%.0f\n",
           t->seeds, t->sim_ticks, wall_s, (double)t->seeds * 60.0 / s, (double)t->sim_ticks / s);
    printf("stats: elections=%" PRIu64 " leader_crash_to_new_leader_ticks median=%u p99=%u "
           "samples=%zu\n",
           t->elections, med, p99, t->n_failover);
    printf("stats: client_ops ok=%" PRIu64 " fail=%" PRIu64 " unknown=%" PRIu64
           " lin_budget=%" PRIu64 "\n",
           t->ok, t->fail, t->unknown, t->lin_budget);
    printf("stats: disk real_wal_seeds=%" PRIu64 " model_seeds=%" PRIu64
           " wal_recoveries=%" PRIu64 " torn_tails=%" PRIu64 " corrupt_refusals=%" PRIu64
           " fsync_fatal=%" PRIu64 " enospc=%" PRIu64 "\n",
           t->disk_real, t->seeds - t->disk_real, t->wal_recoveries, t->torn_tails,
           t->corrupt_refusals, t->fsync_fatal, t->enospc);
    printf("stats: locks seeds=%" PRIu64 " grants=%" PRIu64 " resource_writes ok=%" PRIu64
           " fenced=%" PRIu64 " lease_expiries=%" PRIu64 " keepalives ok=%" PRIu64
           " lease_gone=%" PRIu64 "\n",
           t->locks, t->lock_grants, t->lock_writes_ok, t->lock_writes_fenced, t->lease_expiries,
           t->keepalives_ok, t->keepalives_failed);
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct main_opts o;
    int rv = main_parse(argc, argv, &o);
    if (rv != 0) {
        main_usage(rv > 0 ? stdout : stderr);
        return rv > 0 ? 0 : 2;
    }
    main_install_crash_handlers();
    double t0 = main_now_s();
    struct main_plan plan = {.o = &o};
    if (o.soak) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o.seed_start = main_soak_seed((uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec);
        plan.deadline_s = t0 + o.soak_minutes * 60.0;
        printf("soak: %g minutes, %u jobs, seeds derived from start seed %" PRIu64 "\n",
               o.soak_minutes, o.jobs, o.seed_start);
        fflush(stdout);
    }
    struct main_totals t = {0};
    if (o.jobs > 1 && !o.verbose)
        rv = main_parallel(&plan, &t);
    else
        main_serial(&plan, &t);
    double wall = main_now_s() - t0;
    if (o.stats)
        main_print_stats(&t, wall);
    printf("sim: %" PRIu64 " seeds, %" PRIu64 " failed\n", t.seeds, t.failed);
    free(t.failover);
    return rv == 0 && t.failed == 0 ? 0 : 1;
}
