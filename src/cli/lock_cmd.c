/* lock_cmd.c -- `conclave lock`, `conclave lease` and `conclave elect`: distributed
 * locks, leases and leader election from the shell (docs/cli.md), on the C client
 * library (include/conclave/client.h), so the CLI gets the library's watchdog and
 * endpoint failover.
 *
 *   conclave lock NAME [--ttl MS] [--wait MS] [--owner ID] [--grace MS] -- CMD ARGS
 *   conclave lease grant TTL_MS | keepalive ID [--forever] | revoke ID | ls | get ID
 *   conclave elect NAME [--value V] [--ttl MS] [--owner ID] | NAME --observe
 *
 * `lock` acquires, runs CMD as a child in its own process group with the lock's name,
 * fencing token, lease and owner in its environment, waits for it, releases, and exits
 * with CMD's status. The library's renewal thread calls lost_cb when the lock stops
 * being trustworthy; lost_cb, SIGCHLD and the forwarded signals (INT, TERM, HUP) all
 * write one byte into a self-pipe, and the main thread, blocked in poll() on it, does
 * the work: on a loss it sends the group SIGTERM, then SIGKILL after --grace, and exits
 * LOCK_EXIT_LOST. A signal to `conclave lock` is passed on to CMD's group, and the lock
 * is released once CMD has gone. CMD's exit is judged against cc_lock_valid() taken
 * right when it is reaped: a CMD that outlived its lock counts as lost.
 *
 * `--endpoint` (or $CONCLAVE_ENDPOINT) may list several nodes here, "H1:P1,H2:P2": the
 * shared flag parser (cli/client.h) sees only the first, the library gets them all.
 *
 * Output: `lease` and `elect` print for people, or the server's JSON with -o json.
 * `lock` keeps stdout for CMD: its own messages go to stderr (with -o json as one JSON
 * object per line: acquired, lost, released).
 *
 * Sections: limits | wake-up pipe | shared setup | lock | lease | elect.
 */
#include "cli/lock_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/assert.h"
#include "cli/client.h"
#include "cli/sse.h"
#include "client/client_internal.h"
#include "conclave/client.h"

extern char **environ;

/* ---- limits ------------------------------------------------------------------------------ */

#define LOCK_CMD_TTL_MS_DEFAULT      10000u
#define LOCK_CMD_GRACE_MS_DEFAULT    3000u                /* SIGTERM -> SIGKILL after a loss */
#define LOCK_CMD_GRACE_MS_MAX        600000u              /* ten minutes */
#define LOCK_CMD_WAIT_MS_MAX         INT64_C(31536000000) /* a year: "forever" is the default */
#define LOCK_CMD_INTERVAL_MS_DEFAULT 500u                 /* elect --observe reconnect delay */
#define LOCK_CMD_OBSERVE_SILENCE_MS  30000u /* observe: the server pings every 10 s */
#define LOCK_CMD_INTERVAL_MS_MIN     50u
#define LOCK_CMD_INTERVAL_MS_MAX     3600000u
#define LOCK_CMD_LS_PAGE             256u /* ids per GET /v1/lease page (the server's) */
#define LOCK_CMD_LS_PAGES_MAX        (100000u / LOCK_CMD_LS_PAGE + 2) /* LEASE_COUNT_MAX */
#define LOCK_CMD_RETRY_MS            500u /* keepalive --forever after a failed renewal */
#define LOCK_CMD_ENV_EXTRA           4    /* CONCLAVE_LOCK_{NAME,TOKEN,LEASE,OWNER} */
#define LOCK_CMD_ENDPOINTS_BYTES     (CC_ENDPOINTS_MAX * CLIENT_ENDPOINT_BYTES)
#define LOCK_CMD_WAKE_LOST           0xffu /* pipe byte from lost_cb; others: signal numbers */

_Static_assert(LOCK_CMD_WAKE_LOST > 64, "no signal number is mistaken for a loss");

/* ---- wake-up pipe -------------------------------------------------------------------------- */

static int g_wake[2] = {-1, -1};

static void wake_write(unsigned char b)
{
    int saved = errno;
    ssize_t n = write(g_wake[1], &b, 1); /* a full pipe already has a wake-up pending */
    (void)n;
    errno = saved;
}

static void on_signal(int sig)
{
    wake_write((unsigned char)sig);
}

static void on_lock_lost(cc_lock *l, void *arg)
{
    (void)l;
    (void)arg;
    wake_write(LOCK_CMD_WAKE_LOST);
}

static bool wake_open(void)
{
    if (pipe(g_wake) != 0)
        return false;
    for (int i = 0; i < 2; i++) {
        fcntl(g_wake[i], F_SETFD, FD_CLOEXEC);
        fcntl(g_wake[i], F_SETFL, fcntl(g_wake[i], F_GETFL) | O_NONBLOCK);
    }
    return true;
}

static void wake_close(void)
{
    for (int i = 0; i < 2; i++)
        if (g_wake[i] >= 0)
            close(g_wake[i]);
    g_wake[0] = g_wake[1] = -1;
}

static const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP};

/* Routes INT, TERM, HUP (and CHLD if asked) into the pipe, or back to the defaults. */
static void handle_signals(bool on, bool chld)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on ? on_signal : SIG_DFL;
    sigemptyset(&sa.sa_mask); /* no SA_RESTART: poll() wakes up */
    for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(forwarded_signals[0]); i++)
        sigaction(forwarded_signals[i], &sa, NULL);
    if (chld) {
        sa.sa_flags = on ? SA_NOCLDSTOP : 0;
        sigaction(SIGCHLD, &sa, NULL);
    }
}

/* Waits up to timeout_ms (-1: no limit) for bytes on the pipe; returns how many were read
 * into buf (0: timed out). */
static size_t wake_wait(int timeout_ms, unsigned char *buf, size_t cap)
{
    struct pollfd p = {.fd = g_wake[0], .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return 0;
    ssize_t n = read(g_wake[0], buf, cap);
    return n > 0 ? (size_t)n : 0;
}

/* ---- shared setup ------------------------------------------------------------------------ */

struct lk_cli {
    struct client_cli cli; /* -o, --timeout-ms, and the first endpoint */
    const char *prog;
    char endpoints[LOCK_CMD_ENDPOINTS_BYTES]; /* the whole list, for cc_client_new */
    char first_flag[CLIENT_ENDPOINT_BYTES + 16];
    char **argv; /* owned array; the strings are the process's */
    int argc;
};

/* Takes --endpoint (a list here) out of argv, shows client_cli_init the first endpoint,
 * and lets it take the other global flags. Returns 0 or an exit code (printed). */
static int lk_init(struct lk_cli *lc, const char *prog, int argc, char **argv, const char *usage)
{
    memset(lc, 0, sizeof(*lc));
    lc->prog = prog;
    const char *csv = getenv(CLIENT_ENDPOINT_ENV);
    if (!csv || !csv[0])
        csv = CLIENT_DEFAULT_ENDPOINT;
    char **v = malloc(((size_t)argc + 2) * sizeof(*v));
    if (!v) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return CLIENT_EXIT_FAIL;
    }
    int n = 0, i = 1;
    v[n++] = argv[0];
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--endpoint") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --endpoint needs HOST:PORT[,HOST:PORT...]\n\n%s", prog, usage);
                free(v);
                return CLIENT_EXIT_USAGE;
            }
            csv = argv[++i];
        } else if (strncmp(argv[i], "--endpoint=", 11) == 0) {
            csv = argv[i] + 11;
        } else {
            v[n++] = argv[i];
        }
    }
    for (; i < argc; i++)
        v[n++] = argv[i];
    if (strlen(csv) >= sizeof(lc->endpoints)) {
        fprintf(stderr, "%s: the endpoint list is too long (at most %u endpoints)\n", prog,
                CC_ENDPOINTS_MAX);
        free(v);
        return CLIENT_EXIT_USAGE;
    }
    snprintf(lc->endpoints, sizeof(lc->endpoints), "%s", csv);
    size_t first = strcspn(csv, ",");
    while (first > 0 && csv[first - 1] == ' ')
        first--;
    size_t skip = strspn(csv, " ");
    snprintf(lc->first_flag, sizeof(lc->first_flag), "--endpoint=%.*s",
             (int)(first > skip ? first - skip : 0), csv + skip);
    memmove(v + 2, v + 1, (size_t)(n - 1) * sizeof(*v));
    v[1] = lc->first_flag;
    n++;
    v[n] = NULL;
    char err[CLIENT_ERRMSG_BYTES];
    if (client_cli_init(&lc->cli, prog, &n, v, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n\n%s", prog, err, usage);
        free(v);
        return CLIENT_EXIT_USAGE;
    }
    lc->argv = v;
    lc->argc = n;
    return 0;
}

static void lk_fini(struct lk_cli *lc)
{
    free(lc->argv);
    lc->argv = NULL;
}

static int lk_client(const struct lk_cli *lc, cc_client **c)
{
    struct cc_options o = {.request_timeout_ms = lc->cli.timeout_ms};
    int rv = cc_client_new(lc->endpoints, &o, c);
    if (rv != 0) {
        fprintf(stderr, "%s: bad endpoint list '%s': %s\n", lc->prog, lc->endpoints,
                cc_last_error());
        return CLIENT_EXIT_USAGE;
    }
    return 0;
}

/* Prints a library failure and returns its exit code. */
static int lk_fail(const struct lk_cli *lc, const char *what, int rv)
{
    const char *d = cc_last_error();
    if (rv == CC_EUNREACHABLE) {
        fprintf(stderr, "%s: cannot reach Conclave at %s: %s%s\n", what, lc->endpoints, d,
                strstr(d, "refused") ? " \u2014 is `conclave serve` running?" : "");
        return CLIENT_EXIT_UNREACHABLE;
    }
    fprintf(stderr, "%s: %s%s%s\n", what, cc_strerror(rv), d[0] ? ": " : "", d);
    return CLIENT_EXIT_FAIL;
}

/* One request through the library; on a 2xx returns 0 with *resp (caller frees) and
 * *j its JSON object (caller decrefs), else prints and returns an exit code. */
static int lk_call(const struct lk_cli *lc, cc_client *c, const char *what, const char *method,
                   const char *target, const char *body, struct client_response *resp, json_t **j)
{
    int rv = cc__request(c, method, target, body, lc->cli.timeout_ms, resp);
    if (rv != 0)
        return lk_fail(lc, what, rv);
    if (resp->status / 100 != 2) {
        cc__status_error(resp);
        fprintf(stderr, "%s: %s\n", what, cc_last_error());
        client_response_free(resp);
        return CLIENT_EXIT_FAIL;
    }
    *j = cc__reply_json(resp);
    if (!*j) {
        fprintf(stderr, "%s: %s\n", what, cc_last_error());
        client_response_free(resp);
        return CLIENT_EXIT_FAIL;
    }
    return 0;
}

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; *value is NULL when missing. */
static bool lk_flag(const char *name, int argc, char **argv, int *i, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return false;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] != '\0')
        return false;
    *value = *i + 1 < argc ? argv[++*i] : NULL;
    return true;
}

static int lk_usage(const char *prog, const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage);
    return CLIENT_EXIT_USAGE;
}

static bool lk_is_help(const char *s)
{
    return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0;
}

/* ---- lock ------------------------------------------------------------------------------ */

static const char lock_usage[] =
    "usage: conclave lock NAME [--ttl MS] [--wait MS] [--owner ID] [--grace MS] [-v]\n"
    "                     [global flags] -- CMD [ARGS...]\n"
    "\n"
    "Acquires the lock NAME, runs CMD while holding it, releases it, and exits with\n"
    "CMD's exit status. CMD's environment has CONCLAVE_LOCK_NAME, CONCLAVE_LOCK_TOKEN\n"
    "(the fencing token: send it with every write to the protected resource),\n"
    "CONCLAVE_LOCK_LEASE and CONCLAVE_LOCK_OWNER. A watchdog renews the lock every\n"
    "ttl/3. If the lock is lost, CMD gets SIGTERM (SIGKILL after --grace) and the exit\n"
    "status is 76. CMD runs in its own process group.\n"
    "\n"
    "  --ttl MS     the lock's lease (default 10000, at least 500)\n"
    "  --wait MS    wait at most MS in the queue; 0 tries once (default: no limit)\n"
    "  --owner ID   the owner id (default host:pid:random)\n"
    "  --grace MS   SIGTERM to SIGKILL after a loss (default 3000)\n"
    "  -v           say on stderr when the lock is acquired and released\n"
    "\n" CLIENT_GLOBAL_FLAGS_USAGE "  (--endpoint may list several nodes: H1:P1,H2:P2)\n"
    "\n"
    "Exit status: CMD's; 75 not acquired (busy, --wait ran out, or the grant was lost\n"
    "before CMD started); 76 lost while CMD ran; 126 CMD cannot run; 127 CMD not found;\n"
    "1 failed; 2 usage; 3 cannot connect.\n";

struct lock_args {
    const char *name;
    const char *owner;
    uint64_t ttl_ms;
    int64_t wait_ms;
    uint64_t grace_ms;
    bool verbose;
    char **cmd; /* NULL-terminated */
};

static int lock_parse(struct lk_cli *lc, struct lock_args *a)
{
    memset(a, 0, sizeof(*a));
    a->ttl_ms = LOCK_CMD_TTL_MS_DEFAULT;
    a->wait_ms = CC_WAIT_FOREVER;
    a->grace_ms = LOCK_CMD_GRACE_MS_DEFAULT;
    const char *p = lc->prog;
    int i = 1;
    for (; i < lc->argc; i++) {
        char **v = lc->argv;
        const char *val = NULL;
        uint64_t n = 0;
        if (strcmp(v[i], "--") == 0)
            break;
        if (lk_is_help(v[i])) {
            fputs(lock_usage, stdout);
            return -1;
        }
        if (strcmp(v[i], "-v") == 0 || strcmp(v[i], "--verbose") == 0) {
            a->verbose = true;
        } else if (lk_flag("--ttl", lc->argc, v, &i, &val)) {
            if (!client_parse_u64(val, CC_TTL_MS_MIN, CC_TTL_MS_MAX, &a->ttl_ms))
                return lk_usage(p, lock_usage, "--ttl wants milliseconds, at least 500%s", "");
        } else if (lk_flag("--wait", lc->argc, v, &i, &val)) {
            if (!client_parse_u64(val, 0, (uint64_t)LOCK_CMD_WAIT_MS_MAX, &n))
                return lk_usage(p, lock_usage, "--wait wants milliseconds (0: try once)%s", "");
            a->wait_ms = (int64_t)n;
        } else if (lk_flag("--owner", lc->argc, v, &i, &val)) {
            if (!val || !val[0] || strlen(val) > CC_LOCK_OWNER_BYTES_MAX)
                return lk_usage(p, lock_usage, "--owner wants 1-128 bytes%s", "");
            a->owner = val;
        } else if (lk_flag("--grace", lc->argc, v, &i, &val)) {
            if (!client_parse_u64(val, 0, LOCK_CMD_GRACE_MS_MAX, &a->grace_ms))
                return lk_usage(p, lock_usage, "--grace wants milliseconds%s", "");
        } else if (v[i][0] == '-') {
            return lk_usage(p, lock_usage, "unknown flag '%s'", v[i]);
        } else if (!a->name) {
            a->name = v[i];
        } else {
            return lk_usage(p, lock_usage, "unexpected argument '%s' (the command goes after `--`)",
                            v[i]);
        }
    }
    if (!a->name)
        return lk_usage(p, lock_usage, "missing the lock NAME%s", "");
    if (i >= lc->argc || i + 1 >= lc->argc)
        return lk_usage(p, lock_usage, "missing `-- CMD [ARGS...]`%s", "");
    a->cmd = lc->argv + i + 1;
    return 0;
}

/* CMD's environment: ours without stale CONCLAVE_LOCK_* entries, plus the lock's. The
 * array and the four strings are malloc'd (freed by lock_env_free). */
static char **lock_env(const cc_lock *l)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **env = calloc(n + LOCK_CMD_ENV_EXTRA + 1, sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CONCLAVE_LOCK_", 14) != 0)
            env[k++] = environ[i];
    char *extra[LOCK_CMD_ENV_EXTRA];
    size_t name_len = strlen(cc_lock_name(l)), owner_len = strlen(cc_lock_owner(l));
    extra[0] = malloc(name_len + 32);
    extra[1] = malloc(64);
    extra[2] = malloc(64);
    extra[3] = malloc(owner_len + 32);
    for (int i = 0; i < LOCK_CMD_ENV_EXTRA; i++)
        if (!extra[i]) {
            for (int j = 0; j < LOCK_CMD_ENV_EXTRA; j++)
                free(extra[j]);
            free(env);
            return NULL;
        }
    snprintf(extra[0], name_len + 32, "CONCLAVE_LOCK_NAME=%s", cc_lock_name(l));
    snprintf(extra[1], 64, "CONCLAVE_LOCK_TOKEN=%" PRIu64, cc_lock_token(l));
    snprintf(extra[2], 64, "CONCLAVE_LOCK_LEASE=%" PRId64, cc_lock_lease(l));
    snprintf(extra[3], owner_len + 32, "CONCLAVE_LOCK_OWNER=%s", cc_lock_owner(l));
    for (int i = 0; i < LOCK_CMD_ENV_EXTRA; i++)
        env[k++] = extra[i];
    env[k] = NULL;
    return env;
}

static void lock_env_free(char **env)
{
    if (!env)
        return;
    size_t k = 0;
    while (env[k])
        k++;
    for (size_t i = k - LOCK_CMD_ENV_EXTRA; i < k; i++) /* ours are the last four */
        free(env[i]);
    free(env);
}

static void lock_event(const struct lk_cli *lc, const char *event, const cc_lock *l, int exit_code)
{
    if (!lc->cli.json)
        return;
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I}", "event", event, "name", cc_lock_name(l),
                          "owner", cc_lock_owner(l), "token", (json_int_t)cc_lock_token(l), "lease",
                          (json_int_t)cc_lock_lease(l));
    if (j && exit_code >= 0)
        json_object_set_new(j, "exit_code", json_integer(exit_code));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s)
        fprintf(stderr, "%s\n", s);
    free(s);
    json_decref(j);
}

static int status_to_exit(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return CLIENT_EXIT_FAIL;
}

/* Runs CMD under the lock until it ends. Returns its wait status in *status and whether
 * the lock was lost (lost_cb, or no longer valid when CMD was reaped). */
static bool lock_supervise(const struct lk_cli *lc, const struct lock_args *a, cc_lock *l,
                           pid_t pid, int *status)
{
    bool lost = false, killed = false;
    uint64_t kill_at = 0;
    /* Ends when CMD has been reaped; each pass blocks in poll() until a signal, a loss
     * or the grace deadline, so it does not spin. */
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            break;
        int timeout = -1;
        if (lost && !killed) {
            uint64_t now = cc__mono_ms();
            if (now >= kill_at) {
                kill(-pid, SIGKILL);
                killed = true;
                fprintf(stderr, "%s: CMD did not stop within %" PRIu64 " ms: sent SIGKILL\n",
                        lc->prog, a->grace_ms);
            } else {
                timeout = (int)(kill_at - now);
            }
        }
        unsigned char buf[64];
        size_t n = wake_wait(timeout, buf, sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            if (buf[i] == LOCK_CMD_WAKE_LOST && !lost) {
                lost = true;
                kill_at = cc__mono_ms() + a->grace_ms;
                kill(-pid, SIGTERM);
                lock_event(lc, "lost", l, -1);
                fprintf(stderr,
                        "%s: LOST the lock '%s' (token %" PRIu64 "): it could not be renewed "
                        "in time and may pass to another holder; sent SIGTERM to CMD\n",
                        lc->prog, a->name, cc_lock_token(l));
            } else if (buf[i] != SIGCHLD && buf[i] != LOCK_CMD_WAKE_LOST) {
                kill(-pid, buf[i]); /* INT, TERM, HUP: for CMD to decide */
            }
        }
    }
    if (!lost && !cc_lock_valid(l)) {
        lost = true; /* CMD ended after the lock's bound, before lost_cb was seen */
        lock_event(lc, "lost", l, -1);
        fprintf(stderr, "%s: LOST the lock '%s' (token %" PRIu64 ") before CMD ended\n", lc->prog,
                a->name, cc_lock_token(l));
    }
    if (lost)
        kill(-pid, SIGKILL); /* what CMD left behind in its group must not write on */
    return lost;
}

int cli_lock_main(int argc, char **argv)
{
    struct lk_cli lc;
    int rv = lk_init(&lc, "conclave lock", argc, argv, lock_usage);
    if (rv != 0)
        return rv;
    struct lock_args a;
    rv = lock_parse(&lc, &a);
    if (rv != 0) {
        lk_fini(&lc);
        return rv < 0 ? CLIENT_EXIT_OK : rv;
    }
    cc_client *c = NULL;
    rv = lk_client(&lc, &c);
    if (rv != 0)
        goto out_after_cli;
    if (!wake_open()) {
        fprintf(stderr, "%s: pipe: %s\n", lc.prog, strerror(errno));
        rv = CLIENT_EXIT_FAIL;
        goto out_after_client;
    }
    cc_lock *l = NULL;
    int err =
        cc_lock_acquire(c, a.name, a.owner, (int64_t)a.ttl_ms, a.wait_ms, on_lock_lost, NULL, &l);
    if (err == CC_EBUSY || err == CC_ELOCKTIMEOUT || err == CC_ELOST) {
        /* CC_ELOST here: granted, but the grant's lease died before it was confirmed;
         * CMD never ran, so it is "not acquired" too. */
        fprintf(stderr, "%s: '%s' not acquired: %s%s\n", lc.prog, a.name,
                err == CC_EBUSY ? "it is held by someone else (--wait 0)"
                : err == CC_ELOST ? "the grant was lost before it could be used: "
                                  : "--wait ran out",
                err == CC_ELOST ? cc_last_error() : "");
        rv = LOCK_EXIT_NOT_ACQUIRED;
        goto out_after_pipe;
    }
    if (err != 0) {
        rv = lk_fail(&lc, lc.prog, err);
        goto out_after_pipe;
    }
    lock_event(&lc, "acquired", l, -1);
    if (a.verbose && !lc.cli.json)
        fprintf(stderr, "%s: acquired '%s' (token %" PRIu64 ", lease %" PRId64 ")\n", lc.prog,
                a.name, cc_lock_token(l), cc_lock_lease(l));

    char **env = lock_env(l);
    posix_spawnattr_t attr;
    bool attr_ok = env && posix_spawnattr_init(&attr) == 0;
    pid_t pid = -1;
    int spawn_err = ENOMEM;
    if (attr_ok) {
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
        handle_signals(true, true); /* before the child exists: no SIGCHLD is missed */
        spawn_err = posix_spawnp(&pid, a.cmd[0], NULL, &attr, a.cmd, env);
        posix_spawnattr_destroy(&attr);
    }
    if (spawn_err != 0) {
        handle_signals(false, true);
        fprintf(stderr, "%s: cannot run '%s': %s\n", lc.prog, a.cmd[0], strerror(spawn_err));
        rv = spawn_err == ENOENT ? 127 : 126;
        cc_lock_release(l);
        lock_env_free(env);
        goto out_after_pipe;
    }
    int status = 0;
    bool lost = lock_supervise(&lc, &a, l, pid, &status);
    handle_signals(false, true);
    int cmd_exit = status_to_exit(status);
    err = cc_lock_release(l);
    lock_env_free(env);
    if (lost) {
        fprintf(stderr, "%s: CMD ended (exit status %d) after the lock was lost; exit %d\n",
                lc.prog, cmd_exit, LOCK_EXIT_LOST);
        rv = LOCK_EXIT_LOST;
        goto out_after_pipe;
    }
    if (err != 0 && err != CC_ELOST)
        fprintf(stderr, "%s: the release failed (%s: %s); the lock ends with its lease\n", lc.prog,
                cc_strerror(err), cc_last_error());
    rv = cmd_exit;
    if (lc.cli.json) {
        json_t *j = json_pack("{s:s, s:s, s:i}", "event", "released", "name", a.name, "exit_code",
                              cmd_exit);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (s)
            fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(j);
    } else if (a.verbose) {
        fprintf(stderr, "%s: released '%s'; CMD exited with %d\n", lc.prog, a.name, cmd_exit);
    }

out_after_pipe:
    wake_close();
out_after_client:
    cc_client_free(c);
out_after_cli:
    lk_fini(&lc);
    return rv;
}

/* ---- lease ----------------------------------------------------------------------------- */

static const char lease_usage[] =
    "usage: conclave lease <verb> [args] [global flags]\n"
    "\n"
    "verbs:\n"
    "  grant TTL_MS            make a lease of TTL_MS (at least 500) and print its id\n"
    "  keepalive ID [--forever]  renew once, or every ttl/3 until the lease is gone or\n"
    "                          you press Ctrl-C\n"
    "  revoke ID               end the lease now: its keys are deleted, its locks released\n"
    "  ls                      list the lease ids\n"
    "  get ID                  the lease's ttl, remaining time and number of keys\n"
    "\n" CLIENT_GLOBAL_FLAGS_USAGE "  (--endpoint may list several nodes: H1:P1,H2:P2)\n"
    "\n"
    "Exit status: 0 done, 1 refused or failed (a lease that is gone), 2 usage,\n"
    "3 cannot connect. See docs/cli.md.\n";

static void lease_print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (s)
        printf("%s\n", s);
    free(s);
    fflush(stdout);
}

static int lease_keepalive_forever(const struct lk_cli *lc, cc_client *c, int64_t id)
{
    char t[64];
    snprintf(t, sizeof(t), "/v1/lease/%" PRId64 "/keepalive", id);
    if (!wake_open()) {
        fprintf(stderr, "conclave lease keepalive: pipe: %s\n", strerror(errno));
        return CLIENT_EXIT_FAIL;
    }
    handle_signals(true, false);
    int rv = CLIENT_EXIT_OK;
    bool failing = false;
    /* Ends on Ctrl-C/TERM/HUP or when the server says the lease is gone; each pass
     * sleeps ttl/3 (or LOCK_CMD_RETRY_MS after a failure) in poll(). */
    for (uint64_t n = 0;; n++) {
        struct client_response resp;
        int err = cc__request(c, "POST", t, NULL, lc->cli.timeout_ms, &resp);
        uint64_t sleep_ms = LOCK_CMD_RETRY_MS;
        if (err == 0 && resp.status == 200) {
            json_t *j = cc__reply_json(&resp);
            int64_t ttl = (int64_t)json_integer_value(json_object_get(j, "ttl_ms"));
            if (lc->cli.json)
                lease_print_json(j);
            else if (n == 0 || failing)
                printf("lease %" PRId64 " kept alive (ttl %" PRId64 " ms); renewing every %" PRId64
                       " ms until Ctrl-C\n",
                       id, ttl, ttl / 3);
            fflush(stdout);
            json_decref(j);
            failing = false;
            sleep_ms = ttl >= 3 ? (uint64_t)ttl / 3 : 1;
        } else if (err == 0 && (resp.status == 404 || resp.status == 410)) {
            cc__status_error(&resp);
            fprintf(stderr, "conclave lease keepalive: lease %" PRId64 " is gone: %s\n", id,
                    cc_last_error());
            client_response_free(&resp);
            rv = CLIENT_EXIT_FAIL;
            break;
        } else {
            if (err == 0)
                cc__status_error(&resp);
            fprintf(stderr, "conclave lease keepalive: renewal failed (%s), retrying\n",
                    cc_last_error());
            failing = true;
        }
        client_response_free(&resp);
        unsigned char buf[16];
        if (wake_wait((int)sleep_ms, buf, sizeof(buf)) > 0)
            break; /* a signal: stop renewing; the lease runs out by itself */
    }
    handle_signals(false, false);
    wake_close();
    return rv;
}

static int lease_ls(const struct lk_cli *lc, cc_client *c)
{
    json_t *all = json_array();
    int64_t after = 0, count = 0;
    int rv = CLIENT_EXIT_OK;
    for (uint32_t page = 0; page < LOCK_CMD_LS_PAGES_MAX && all; page++) {
        char t[64];
        snprintf(t, sizeof(t), "/v1/lease?after=%" PRId64, after);
        struct client_response resp;
        json_t *j = NULL;
        rv = lk_call(lc, c, "conclave lease ls", "GET", t, NULL, &resp, &j);
        if (rv != 0)
            break;
        client_response_free(&resp);
        json_t *ids = json_object_get(j, "leases");
        for (size_t i = 0; i < json_array_size(ids); i++) {
            after = (int64_t)json_integer_value(json_array_get(ids, i));
            json_array_append_new(all, json_integer(after));
        }
        count = (int64_t)json_integer_value(json_object_get(j, "count"));
        bool more = json_is_true(json_object_get(j, "more")) && json_array_size(ids) > 0;
        json_decref(j);
        if (!more)
            break;
    }
    if (rv == CLIENT_EXIT_OK && all) {
        if (lc->cli.json) {
            json_t *o = json_pack("{s:O, s:I}", "leases", all, "count", (json_int_t)count);
            lease_print_json(o);
            json_decref(o);
        } else {
            for (size_t i = 0; i < json_array_size(all); i++)
                printf("%" PRId64 "\n", (int64_t)json_integer_value(json_array_get(all, i)));
        }
    }
    json_decref(all);
    return rv;
}

int cli_lease_main(int argc, char **argv)
{
    struct lk_cli lc;
    int rv = lk_init(&lc, "conclave lease", argc, argv, lease_usage);
    if (rv != 0)
        return rv;
    const char *verb = lc.argc >= 2 ? lc.argv[1] : NULL;
    const char *arg = NULL;
    bool forever = false;
    if (!verb) {
        fputs(lease_usage, stderr);
        rv = CLIENT_EXIT_USAGE;
        goto out;
    }
    if (lk_is_help(verb) || strcmp(verb, "help") == 0) {
        fputs(lease_usage, stdout);
        goto out;
    }
    for (int i = 2; i < lc.argc; i++) {
        const char *s = lc.argv[i];
        if (strcmp(s, "--forever") == 0 && strcmp(verb, "keepalive") == 0)
            forever = true;
        else if (lk_is_help(s)) {
            fputs(lease_usage, stdout);
            goto out;
        } else if (s[0] == '-' || arg) {
            rv = lk_usage(lc.prog, lease_usage, "unexpected argument '%s'", s);
            goto out;
        } else {
            arg = s;
        }
    }
    bool wants_arg = strcmp(verb, "ls") != 0;
    if (strcmp(verb, "grant") != 0 && strcmp(verb, "keepalive") != 0 &&
        strcmp(verb, "revoke") != 0 && strcmp(verb, "ls") != 0 && strcmp(verb, "get") != 0) {
        rv = lk_usage(lc.prog, lease_usage, "unknown verb '%s'", verb);
        goto out;
    }
    uint64_t num = 0;
    if (wants_arg && !arg) {
        rv = lk_usage(lc.prog, lease_usage, "%s needs an argument", verb);
        goto out;
    }
    if (!wants_arg && arg) {
        rv = lk_usage(lc.prog, lease_usage, "unexpected argument '%s'", arg);
        goto out;
    }
    if (wants_arg && strcmp(verb, "grant") == 0 &&
        !client_parse_u64(arg, CC_TTL_MS_MIN, CC_TTL_MS_MAX, &num)) {
        rv = lk_usage(lc.prog, lease_usage,
                      "TTL_MS must be milliseconds in 500..2592000000, not '%s'", arg);
        goto out;
    }
    if (wants_arg && strcmp(verb, "grant") != 0 && !client_parse_u64(arg, 1, INT64_MAX, &num)) {
        rv = lk_usage(lc.prog, lease_usage, "ID must be a lease id (a positive number), not '%s'",
                      arg);
        goto out;
    }
    cc_client *c = NULL;
    rv = lk_client(&lc, &c);
    if (rv != 0)
        goto out;
    char what[64], t[96], body[64];
    snprintf(what, sizeof(what), "conclave lease %s", verb);
    struct client_response resp;
    json_t *j = NULL;
    if (strcmp(verb, "ls") == 0) {
        rv = lease_ls(&lc, c);
    } else if (strcmp(verb, "keepalive") == 0 && forever) {
        rv = lease_keepalive_forever(&lc, c, (int64_t)num);
    } else {
        const char *method = "GET";
        const char *b = NULL;
        if (strcmp(verb, "grant") == 0) {
            method = "POST";
            snprintf(t, sizeof(t), "/v1/lease");
            snprintf(body, sizeof(body), "{\"ttl_ms\":%" PRIu64 "}", num);
            b = body;
        } else if (strcmp(verb, "keepalive") == 0) {
            method = "POST";
            snprintf(t, sizeof(t), "/v1/lease/%" PRIu64 "/keepalive", num);
        } else if (strcmp(verb, "revoke") == 0) {
            method = "DELETE";
            snprintf(t, sizeof(t), "/v1/lease/%" PRIu64, num);
        } else {
            snprintf(t, sizeof(t), "/v1/lease/%" PRIu64, num);
        }
        rv = lk_call(&lc, c, what, method, t, b, &resp, &j);
        if (rv == 0) {
            int64_t id = (int64_t)json_integer_value(json_object_get(j, "id"));
            int64_t ttl = (int64_t)json_integer_value(json_object_get(j, "ttl_ms"));
            if (lc.cli.json)
                client_cli_print_body(&resp);
            else if (strcmp(verb, "grant") == 0)
                printf("lease %" PRId64 " granted (ttl %" PRId64 " ms)\n", id, ttl);
            else if (strcmp(verb, "keepalive") == 0)
                printf("lease %" PRId64 " kept alive (ttl %" PRId64 " ms)\n", id, ttl);
            else if (strcmp(verb, "revoke") == 0)
                printf("lease %" PRIu64 " revoked: %" PRId64 " keys deleted, %" PRId64
                       " locks released\n",
                       num, (int64_t)json_integer_value(json_object_get(j, "deleted_keys")),
                       (int64_t)json_integer_value(json_object_get(j, "released_locks")));
            else {
                json_t *rem = json_object_get(j, "remaining_ms");
                printf("lease %" PRId64 ": ttl %" PRId64 " ms, ", id, ttl);
                if (json_is_integer(rem))
                    printf("%" PRId64 " ms remaining", (int64_t)json_integer_value(rem));
                else
                    printf("remaining unknown");
                printf(", %" PRId64 " keys, granted at index %" PRId64 "\n",
                       (int64_t)json_integer_value(json_object_get(j, "keys")),
                       (int64_t)json_integer_value(json_object_get(j, "granted_index")));
            }
            json_decref(j);
            client_response_free(&resp);
        }
    }
    cc_client_free(c);
out:
    lk_fini(&lc);
    return rv;
}

/* ---- elect ----------------------------------------------------------------------------- */

static const char elect_usage[] =
    "usage: conclave elect NAME [--value V] [--ttl MS] [--owner ID] [global flags]\n"
    "       conclave elect NAME --observe [--interval MS] [global flags]\n"
    "\n"
    "Campaigns for leadership of NAME and holds it (renewing every ttl/3) until Ctrl-C,\n"
    "then resigns. Prints a line when elected. If leadership is lost (the lease could\n"
    "not be renewed in time), says so and exits 76.\n"
    "--observe: prints the current leader, then every change as the cluster applies it\n"
    "(a Server-Sent Events stream), until Ctrl-C; a lost stream is resumed on the next\n"
    "endpoint after --interval ms (default 500).\n"
    "\n" CLIENT_GLOBAL_FLAGS_USAGE "  (--endpoint may list several nodes: H1:P1,H2:P2)\n"
    "\n"
    "Exit status: 0 done, 76 leadership lost, 1 failed, 2 usage, 3 cannot connect.\n";

struct elect_args {
    const char *name;
    const char *value;
    const char *owner;
    uint64_t ttl_ms;
    uint64_t interval_ms;
    bool observe;
};

static int elect_parse(struct lk_cli *lc, struct elect_args *a)
{
    memset(a, 0, sizeof(*a));
    a->ttl_ms = LOCK_CMD_TTL_MS_DEFAULT;
    a->interval_ms = LOCK_CMD_INTERVAL_MS_DEFAULT;
    const char *p = lc->prog;
    for (int i = 1; i < lc->argc; i++) {
        char **v = lc->argv;
        const char *val = NULL;
        if (lk_is_help(v[i])) {
            fputs(elect_usage, stdout);
            return -1;
        }
        if (strcmp(v[i], "--observe") == 0) {
            a->observe = true;
        } else if (lk_flag("--value", lc->argc, v, &i, &val)) {
            if (!val || strlen(val) > CC_LOCK_VALUE_BYTES_MAX)
                return lk_usage(p, elect_usage, "--value wants at most 1024 bytes%s", "");
            a->value = val;
        } else if (lk_flag("--owner", lc->argc, v, &i, &val)) {
            if (!val || !val[0] || strlen(val) > CC_LOCK_OWNER_BYTES_MAX)
                return lk_usage(p, elect_usage, "--owner wants 1-128 bytes%s", "");
            a->owner = val;
        } else if (lk_flag("--ttl", lc->argc, v, &i, &val)) {
            if (!client_parse_u64(val, CC_TTL_MS_MIN, CC_TTL_MS_MAX, &a->ttl_ms))
                return lk_usage(p, elect_usage, "--ttl wants milliseconds, at least 500%s", "");
        } else if (lk_flag("--interval", lc->argc, v, &i, &val)) {
            if (!client_parse_u64(val, LOCK_CMD_INTERVAL_MS_MIN, LOCK_CMD_INTERVAL_MS_MAX,
                              &a->interval_ms))
                return lk_usage(p, elect_usage, "--interval wants milliseconds, at least 50%s", "");
        } else if (v[i][0] == '-' && strcmp(v[i], "--") != 0) {
            return lk_usage(p, elect_usage, "unknown flag '%s'", v[i]);
        } else if (strcmp(v[i], "--") != 0 && !a->name) {
            a->name = v[i];
        } else if (strcmp(v[i], "--") != 0) {
            return lk_usage(p, elect_usage, "unexpected argument '%s'", v[i]);
        }
    }
    if (!a->name)
        return lk_usage(p, elect_usage, "missing the election NAME%s", "");
    if (strchr(a->name, '/') || strlen(a->name) > CC_LOCK_NAME_BYTES_MAX)
        return lk_usage(p, elect_usage, "NAME is 1-256 bytes without '/', not '%s'", a->name);
    return 0;
}

/* Prints the leader object (or null) when it differs from *last; takes ownership of
 * leader and keeps it in *last. */
static void elect_show(const struct lk_cli *lc, const char *name, json_t *leader, json_t **last)
{
    if (*last && json_equal(*last, leader)) {
        json_decref(leader);
        return;
    }
    json_decref(*last);
    *last = leader;
    if (lc->cli.json) {
        json_t *o = json_pack("{s:s, s:O}", "name", name, "leader", leader);
        lease_print_json(o);
        json_decref(o);
        return;
    }
    if (json_is_null(leader)) {
        printf("%s: no leader\n", name);
    } else {
        printf("%s: leader %s value '%s' (token %" PRId64 ", lease %" PRId64 ")\n", name,
               json_string_value(json_object_get(leader, "owner")),
               json_string_value(json_object_get(leader, "value"))
                   ? json_string_value(json_object_get(leader, "value"))
                   : "",
               (int64_t)json_integer_value(json_object_get(leader, "token")),
               (int64_t)json_integer_value(json_object_get(leader, "lease")));
    }
    fflush(stdout);
}

struct observe_state {
    const struct lk_cli *lc;
    const char *name;
    json_t *last;     /* the leader printed last (elect_show) */
    uint64_t n_events;
};

static int on_observe_event(void *arg, const char *event, const char *id, const char *data,
                            size_t data_len)
{
    (void)id;
    struct observe_state *st = arg;
    if (strcmp(event, "leader") != 0)
        return 0;
    json_t *j = json_loadb(data, data_len, 0, NULL);
    json_t *leader = j ? json_object_get(j, "leader") : NULL;
    if (!leader) {
        json_decref(j);
        fprintf(stderr, "%s: the server sent a leader event that is not JSON\n", st->lc->prog);
        return 1;
    }
    elect_show(st->lc, st->name, json_incref(leader), &st->last);
    json_decref(j);
    st->n_events++;
    return 0;
}

static int observe_body(void *arg, const uint8_t *bytes, size_t n)
{
    return sse_feed(arg, bytes, n);
}

/* Ctrl-C, TERM or HUP while observing: stdout was flushed after every line and nothing
 * is held, so the observer just ends, with status 0 (async-signal-safe). */
static void observe_stop(int sig)
{
    (void)sig;
    _exit(CLIENT_EXIT_OK);
}

/* Follows GET /v1/election/NAME/observe (Server-Sent Events: the leader now, then every
 * change). A broken stream is picked up again on the next endpoint of --endpoint after
 * --interval; only a refusal before any event (a bad name, no node reachable at all on
 * the first pass) ends the command. Ctrl-C ends it with status 0. */
static int elect_observe(const struct lk_cli *lc, cc_client *c, const struct elect_args *a)
{
    (void)c;
    char esc[3 * CC_LOCK_NAME_BYTES_MAX + 1], t[sizeof(esc) + 32];
    cc__escape_segment(a->name, esc, sizeof(esc));
    snprintf(t, sizeof(t), "/v1/election/%s/observe", esc);
    char eps[LOCK_CMD_ENDPOINTS_BYTES];
    snprintf(eps, sizeof(eps), "%s", lc->endpoints[0] ? lc->endpoints : lc->cli.endpoint);
    char *list[CC_ENDPOINTS_MAX];
    uint32_t n_eps = 0;
    for (char *save = NULL, *e = strtok_r(eps, ",", &save); e && n_eps < CC_ENDPOINTS_MAX;
         e = strtok_r(NULL, ",", &save))
        list[n_eps++] = e;
    if (n_eps == 0)
        list[n_eps++] = (char *)lc->cli.endpoint;
    if (!wake_open()) {
        fprintf(stderr, "%s: pipe: %s\n", lc->prog, strerror(errno));
        return CLIENT_EXIT_FAIL;
    }
    struct sigaction sa = {.sa_handler = observe_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    struct observe_state st = {.lc = lc, .name = a->name};
    /* the server pings every 10 s: three missed pings mean the stream is dead */
    struct client_opts opts = {.timeout_ms = LOCK_CMD_OBSERVE_SILENCE_MS};
    struct client_request req = {.method = "GET", .target = t};
    int rv = CLIENT_EXIT_OK;
    bool failing = false;
    for (uint64_t attempt = 0;; attempt++) {
        const char *ep = list[attempt % n_eps];
        struct sse_parser sp = {.event_cb = on_observe_event, .arg = &st};
        struct client_response resp;
        char err[CLIENT_ERRMSG_BYTES] = "";
        uint64_t before = st.n_events;
        int r = client_stream(ep, &opts, &req, &resp, observe_body, &sp, err, sizeof(err));
        sse_free(&sp);
        if (r == 0 && resp.status / 100 != 2) {
            char line[CLIENT_ERRMSG_BYTES];
            int status = resp.status;
            client_error_line(&resp, line, sizeof(line));
            client_response_free(&resp);
            if (status / 100 == 4) { /* a bad name or path: retrying cannot help */
                fprintf(stderr, "%s: %s\n", lc->prog, line);
                rv = CLIENT_EXIT_FAIL;
                break;
            }
            snprintf(err, sizeof(err), "%s", line);
        } else if (r == 0) {
            snprintf(err, sizeof(err), "the server ended the stream");
        } else if (r > 0) {
            rv = CLIENT_EXIT_FAIL; /* printed by on_observe_event */
            break;
        }
        if (st.n_events == 0 && attempt + 1 >= n_eps && r < 0 && client_error_is_unreachable(r)) {
            fprintf(stderr, "%s: cannot reach Conclave at %s: %s\n", lc->prog, lc->endpoints,
                    err);
            rv = CLIENT_EXIT_UNREACHABLE;
            break;
        }
        if (st.n_events > before)
            failing = false;
        if (!failing) /* once per outage, not once per retry */
            fprintf(stderr, "%s: observe stream on %s lost (%s); reconnecting\n", lc->prog, ep,
                    err);
        failing = true;
        unsigned char buf[16];
        wake_wait((int)a->interval_ms, buf, sizeof(buf));
    }
    json_decref(st.last);
    wake_close();
    return rv;
}

static int elect_campaign(const struct lk_cli *lc, cc_client *c, const struct elect_args *a)
{
    if (!wake_open()) {
        fprintf(stderr, "%s: pipe: %s\n", lc->prog, strerror(errno));
        return CLIENT_EXIT_FAIL;
    }
    cc_lock *l = NULL;
    int rv = CLIENT_EXIT_OK;
    int err = cc_election_campaign(c, a->name, a->owner, a->value ? a->value : "",
                                   (int64_t)a->ttl_ms, CC_WAIT_FOREVER, on_lock_lost, NULL, &l);
    if (err != 0) {
        rv = lk_fail(lc, lc->prog, err);
        wake_close();
        return rv;
    }
    handle_signals(true, false);
    if (lc->cli.json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "event", "elected", "name", a->name,
                              "owner", cc_lock_owner(l), "value", a->value ? a->value : "", "token",
                              (json_int_t)cc_lock_token(l), "lease", (json_int_t)cc_lock_lease(l));
        lease_print_json(o);
        json_decref(o);
    } else {
        printf("elected: %s is the leader of '%s' (token %" PRIu64 ", lease %" PRId64
               "); Ctrl-C resigns\n",
               cc_lock_owner(l), a->name, cc_lock_token(l), cc_lock_lease(l));
        fflush(stdout);
    }
    bool lost = false;
    /* Ends on a signal or a loss; poll() blocks until one of them. */
    for (;;) {
        unsigned char buf[16];
        size_t n = wake_wait(-1, buf, sizeof(buf));
        bool signalled = false;
        for (size_t i = 0; i < n; i++) {
            lost |= buf[i] == LOCK_CMD_WAKE_LOST;
            signalled |= buf[i] != LOCK_CMD_WAKE_LOST;
        }
        if (lost || signalled)
            break;
    }
    handle_signals(false, false);
    err = cc_election_resign(l);
    const char *event = lost || err == CC_ELOST ? "lost" : err == 0 ? "resigned" : "resign_failed";
    if (lc->cli.json) {
        json_t *o = json_pack("{s:s, s:s}", "event", event, "name", a->name);
        lease_print_json(o);
        json_decref(o);
    } else if (lost || err == CC_ELOST) {
        fprintf(stderr, "%s: LOST leadership of '%s': the lease could not be renewed in time\n",
                lc->prog, a->name);
    } else if (err == 0) {
        printf("resigned: '%s'\n", a->name);
    } else {
        fprintf(stderr, "%s: resign failed (%s: %s); leadership ends with the lease\n", lc->prog,
                cc_strerror(err), cc_last_error());
    }
    rv = lost || err == CC_ELOST ? LOCK_EXIT_LOST : err == 0 ? CLIENT_EXIT_OK : CLIENT_EXIT_FAIL;
    wake_close();
    return rv;
}

int cli_elect_main(int argc, char **argv)
{
    struct lk_cli lc;
    int rv = lk_init(&lc, "conclave elect", argc, argv, elect_usage);
    if (rv != 0)
        return rv;
    struct elect_args a;
    rv = elect_parse(&lc, &a);
    if (rv != 0) {
        lk_fini(&lc);
        return rv < 0 ? CLIENT_EXIT_OK : rv;
    }
    cc_client *c = NULL;
    rv = lk_client(&lc, &c);
    if (rv == 0) {
        rv = a.observe ? elect_observe(&lc, c, &a) : elect_campaign(&lc, c, &a);
        cc_client_free(c);
    }
    lk_fini(&lc);
    return rv;
}
