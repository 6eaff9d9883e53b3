/* env_posix.c -- the production env table over POSIX: the only file in core code that
 * calls open(), pwrite(), fdatasync(), readdir() or clock_gettime() directly.
 *
 * Invariants:
 *   - Every call maps to one POSIX primitive plus EINTR/short-count loops; nothing is
 *     cached, so what env.h promises is exactly what the kernel promises.
 *   - sync() is fdatasync() and is never retried: after a failed fsync Linux may mark the
 *     dirty pages clean and drop them (fsyncgate), so the error is passed up as is.
 *   - allocate() is posix_fallocate(). Where the filesystem cannot reserve blocks
 *     (EOPNOTSUPP, EINVAL on some network filesystems) it falls back to ftruncate() to
 *     the requested size, which keeps the size right but not the space guarantee.
 *   - File descriptors are opened O_CLOEXEC so a forked helper never inherits the WAL.
 *   - Test-only fault hooks (the chaos suite, tests/chaos/README.md) are switched by
 *     environment variables naming a control file; unset, each costs one getenv in the
 *     process's life and nothing per call. A file set: the disk is full while it exists
 *     (CONCLAVE_TEST_DISK_FULL_FILE); every fsync/fdatasync first sleeps the number of
 *     ms it holds (CONCLAVE_TEST_FSYNC_DELAY_FILE); the wall clock is shifted by the
 *     signed number of ms it holds (CONCLAVE_TEST_CLOCK_OFFSET_FILE). The number files
 *     are re-read at most every ENV_POSIX_KNOB_REFRESH_MS, never per call.
 *
 * Sections: test hooks | file handles | files | directories | clock and randomness |
 * the table.
 */
#include "base/env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"

#define ENV_POSIX_FILE_MODE 0644 /* data files: owner writes, others may read for backups */
#define ENV_POSIX_DIR_MODE  0755

/* ---- test hooks -------------------------------------------------------------------- */

/* TEST ONLY knobs: a number in a control file named by an environment variable (the
 * chaos suite's slow-disk and clock-jump nemeses write, change and remove the files
 * while the server runs). The file is read at most every ENV_POSIX_KNOB_REFRESH_MS
 * (not per call: a sync or a clock read must stay cheap), so a change takes effect
 * within that time. A missing file, an empty one, text that is not a decimal integer,
 * or a value beyond +-max reads as 0 (off). Thread-safe: the storage thread syncs while
 * the loop thread reads the clock. */
#define ENV_POSIX_KNOB_REFRESH_MS     100  /* bounds how stale a knob is, and its cost */
#define ENV_POSIX_KNOB_FILE_BYTES_MAX 31   /* "-10000\n" and then some */
#define ENV_POSIX_FSYNC_DELAY_MS_MAX  60000 /* a minute per sync is "very slow disk" */
#define ENV_POSIX_CLOCK_OFFSET_MS_MAX (INT64_C(366) * 24 * 3600 * 1000) /* a year */

struct env_posix__knob {
    const char *env_var;
    int64_t max_abs;
    pthread_once_t once;
    const char *path;       /* getenv's string (process-lifetime) or NULL: off */
    pthread_mutex_t mu;     /* guards the two fields below */
    bool loaded;
    uint64_t next_read_ms;  /* CLOCK_MONOTONIC ms at which the file is read again */
    int64_t value;
};

static struct env_posix__knob env_posix__fsync_delay = {
    .env_var = "CONCLAVE_TEST_FSYNC_DELAY_FILE",
    .max_abs = ENV_POSIX_FSYNC_DELAY_MS_MAX,
    .once = PTHREAD_ONCE_INIT,
    .mu = PTHREAD_MUTEX_INITIALIZER,
};

static struct env_posix__knob env_posix__clock_offset = {
    .env_var = "CONCLAVE_TEST_CLOCK_OFFSET_FILE",
    .max_abs = ENV_POSIX_CLOCK_OFFSET_MS_MAX,
    .once = PTHREAD_ONCE_INIT,
    .mu = PTHREAD_MUTEX_INITIALIZER,
};

static void env_posix__fsync_delay_init(void)
{
    env_posix__fsync_delay.path = getenv(env_posix__fsync_delay.env_var);
}

static void env_posix__clock_offset_init(void)
{
    env_posix__clock_offset.path = getenv(env_posix__clock_offset.env_var);
}

static uint64_t env_posix__mono_raw_ms(void)
{
    struct timespec ts;
    const int rv = clock_gettime(CLOCK_MONOTONIC, &ts);
    CC_ASSERT(rv == 0);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The file's number, or 0 (see above). One bounded read; no EINTR loop needed: a short
 * or interrupted read is "off" until the next refresh. */
static int64_t env_posix__knob_read(const char *path, int64_t max_abs)
{
    char buf[ENV_POSIX_KNOB_FILE_BYTES_MAX + 1];
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    const ssize_t n = read(fd, buf, ENV_POSIX_KNOB_FILE_BYTES_MAX);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *end = NULL;
    errno = 0;
    const long long v = strtoll(buf, &end, 10);
    if (errno != 0 || end == buf)
        return 0;
    while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')
        end++;
    if (*end != 0 || v > max_abs || v < -max_abs)
        return 0;
    return (int64_t)v;
}

/* A knob's mutex must not be held across fork() (node.c forks a snapshot child, which
 * syncs through this env): fork waits until neither is held, and both sides unlock. */
static void env_posix__fork_prepare(void)
{
    pthread_mutex_lock(&env_posix__fsync_delay.mu);
    pthread_mutex_lock(&env_posix__clock_offset.mu);
}

static void env_posix__fork_done(void)
{
    pthread_mutex_unlock(&env_posix__clock_offset.mu);
    pthread_mutex_unlock(&env_posix__fsync_delay.mu);
}

static pthread_once_t env_posix__atfork_once = PTHREAD_ONCE_INIT;

static void env_posix__atfork_init(void)
{
    pthread_atfork(env_posix__fork_prepare, env_posix__fork_done, env_posix__fork_done);
}

static int64_t env_posix__knob_value(struct env_posix__knob *k, void (*init)(void))
{
    pthread_once(&env_posix__atfork_once, env_posix__atfork_init);
    pthread_once(&k->once, init);
    if (k->path == NULL)
        return 0;
    const uint64_t now = env_posix__mono_raw_ms();
    pthread_mutex_lock(&k->mu);
    if (!k->loaded || now >= k->next_read_ms) {
        k->value = env_posix__knob_read(k->path, k->max_abs);
        k->next_read_ms = now + ENV_POSIX_KNOB_REFRESH_MS;
        k->loaded = true;
    }
    const int64_t v = k->value;
    pthread_mutex_unlock(&k->mu);
    return v;
}

/* TEST ONLY: the slow disk. Sleeps the delay (if any) before a sync. */
static void env_posix__fsync_delay_sleep(void)
{
    const int64_t ms = env_posix__knob_value(&env_posix__fsync_delay, env_posix__fsync_delay_init);
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    for (int i = 0; i < 1000 && nanosleep(&ts, &ts) != 0 && errno == EINTR; i++) {
        /* interrupted: sleep the rest (bounded: at most 1000 signals) */
    }
}

/* ---- file handles ----------------------------------------------------------------- */

struct env_file {
    int fd;
};

static int env_posix__errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

/* ---- files ------------------------------------------------------------------------ */

static int env_posix_open(struct env *env, const char *path, int flags, struct env_file **out)
{
    CC_ASSERT(path != NULL);
    CC_ASSERT(out != NULL);
    int oflags = O_CLOEXEC;
    const int writable = (flags & (ENV_OPEN_WRITE | ENV_OPEN_CREATE | ENV_OPEN_TRUNC)) != 0;
    oflags |= writable ? O_RDWR : O_RDONLY;
    if (flags & ENV_OPEN_CREATE) {
        oflags |= O_CREAT;
        if (flags & ENV_OPEN_EXCL) {
            oflags |= O_EXCL;
        }
    }
    if (flags & ENV_OPEN_TRUNC) {
        oflags |= O_TRUNC;
    }
    struct env_file *f = malloc(sizeof(*f));
    if (f == NULL) {
        return -ENOMEM;
    }
    int fd;
    do {
        fd = open(path, oflags, ENV_POSIX_FILE_MODE);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        const int rv = env_posix__errno();
        free(f);
        return rv;
    }
    f->fd = fd;
    *out = f;
    return 0;
}

static int env_posix_close(struct env *env, struct env_file *f)
{
    CC_ASSERT(f != NULL);
    /* Linux always releases the descriptor, even when close() reports EINTR, so it is
     * never retried (retrying could close a descriptor another thread just opened). */
    const int rv = close(f->fd) == 0 ? 0 : env_posix__errno();
    free(f);
    return rv == -EINTR ? 0 : rv;
}

static int env_posix_read_at(struct env *env, struct env_file *f, uint64_t offset, void *buf,
                             size_t n, size_t *n_read)
{
    CC_ASSERT(f != NULL);
    CC_ASSERT(buf != NULL || n == 0);
    size_t done = 0;
    while (done < n) {
        const ssize_t r = pread(f->fd, (char *)buf + done, n - done, (off_t)(offset + done));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return env_posix__errno();
        }
        if (r == 0) {
            break;
        }
        done += (size_t)r;
    }
    *n_read = done;
    return 0;
}

/* TEST ONLY: while the file named by $CONCLAVE_TEST_DISK_FULL_FILE exists, every write
 * fails with ENOSPC, so tests can fill "the disk" of one real process and empty it
 * again (tests/integration/test_disk_full.py). Unset: one getenv at the first write. */
static pthread_once_t env_posix__full_once = PTHREAD_ONCE_INIT;
static const char *env_posix__full_file;

static void env_posix__full_init(void)
{
    env_posix__full_file = getenv("CONCLAVE_TEST_DISK_FULL_FILE");
}

static bool env_posix__disk_full(void)
{
    pthread_once(&env_posix__full_once, env_posix__full_init);
    return env_posix__full_file && access(env_posix__full_file, F_OK) == 0;
}

static int env_posix_write_at(struct env *env, struct env_file *f, uint64_t offset, const void *buf,
                              size_t n)
{
    CC_ASSERT(f != NULL);
    CC_ASSERT(buf != NULL || n == 0);
    if (env_posix__disk_full())
        return -ENOSPC;
    size_t done = 0;
    while (done < n) {
        const ssize_t w = pwrite(f->fd, (const char *)buf + done, n - done, (off_t)(offset + done));
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return env_posix__errno();
        }
        if (w == 0) {
            return -EIO;
        }
        done += (size_t)w;
    }
    return 0;
}

static int env_posix_sync(struct env *env, struct env_file *f)
{
    CC_ASSERT(f != NULL);
    env_posix__fsync_delay_sleep();
    return fdatasync(f->fd) == 0 ? 0 : env_posix__errno();
}

static int env_posix_truncate(struct env *env, struct env_file *f, uint64_t size)
{
    CC_ASSERT(f != NULL);
    int rv;
    do {
        rv = ftruncate(f->fd, (off_t)size);
    } while (rv != 0 && errno == EINTR);
    return rv == 0 ? 0 : env_posix__errno();
}

static int env_posix_size(struct env *env, struct env_file *f, uint64_t *size_out)
{
    CC_ASSERT(f != NULL);
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        return env_posix__errno();
    }
    *size_out = (uint64_t)st.st_size;
    return 0;
}

static int env_posix_allocate(struct env *env, struct env_file *f, uint64_t offset, uint64_t n)
{
    CC_ASSERT(f != NULL);
    if (n == 0) {
        return 0;
    }
    if (env_posix__disk_full())
        return -ENOSPC;
    int rv;
    do {
        rv = posix_fallocate(f->fd, (off_t)offset, (off_t)n); /* returns the error */
    } while (rv == EINTR);
    if (rv == 0) {
        return 0;
    }
    if (rv != EOPNOTSUPP && rv != EINVAL && rv != ENOSYS) {
        return -rv;
    }
    /* The filesystem cannot reserve: extend the size so offsets stay meaningful. */
    uint64_t size = 0;
    rv = env_posix_size(env, f, &size);
    if (rv != 0 || size >= offset + n) {
        return rv;
    }
    return env_posix_truncate(env, f, offset + n);
}

/* ---- directories ------------------------------------------------------------------ */

static int env_posix_rename(struct env *env, const char *from, const char *to)
{
    return rename(from, to) == 0 ? 0 : env_posix__errno();
}

static int env_posix_unlink(struct env *env, const char *path)
{
    return unlink(path) == 0 ? 0 : env_posix__errno();
}

static int env_posix_mkdir(struct env *env, const char *path)
{
    return mkdir(path, ENV_POSIX_DIR_MODE) == 0 ? 0 : env_posix__errno();
}

static int env_posix_sync_dir(struct env *env, const char *path)
{
    int fd;
    do {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return env_posix__errno();
    }
    env_posix__fsync_delay_sleep();
    int rv = fsync(fd) == 0 ? 0 : env_posix__errno();
    close(fd);
    return rv;
}

static int env_posix_list_dir(struct env *env, const char *path, void *arg, env_list_cb cb)
{
    CC_ASSERT(cb != NULL);
    DIR *d = opendir(path);
    if (d == NULL) {
        return env_posix__errno();
    }
    int rv = 0;
    for (;;) {
        errno = 0;
        const struct dirent *de = readdir(d);
        if (de == NULL) {
            rv = errno != 0 ? -errno : 0;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        rv = cb(arg, de->d_name);
        if (rv != 0) {
            break;
        }
    }
    closedir(d);
    return rv;
}

/* ---- clock and randomness --------------------------------------------------------- */

static uint64_t env_posix__clock_ms(clockid_t id)
{
    struct timespec ts;
    const int rv = clock_gettime(id, &ts);
    CC_ASSERT(rv == 0);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t env_posix_mono_us(struct env *env)
{
    (void)env;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t env_posix_mono_ms(struct env *env)
{
    return env_posix__clock_ms(CLOCK_MONOTONIC);
}

/* The realtime clock, plus the TEST ONLY offset (CONCLAVE_TEST_CLOCK_OFFSET_FILE): a
 * clock step as NTP makes it. The monotonic clock is never shifted: a real step does not
 * move CLOCK_MONOTONIC either (tests/chaos/README.md, "clock-jump"). */
static uint64_t env_posix_wall_ms(struct env *env)
{
    const uint64_t raw = env_posix__clock_ms(CLOCK_REALTIME);
    const int64_t off = env_posix__knob_value(&env_posix__clock_offset, env_posix__clock_offset_init);
    if (off < 0 && (uint64_t)(-off) > raw)
        return 0;
    return off < 0 ? raw - (uint64_t)(-off) : raw + (uint64_t)off;
}

static int env_posix_random_bytes(struct env *env, void *buf, size_t n)
{
    int fd;
    do {
        fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return env_posix__errno();
    }
    size_t done = 0;
    int rv = 0;
    while (done < n) {
        const ssize_t r = read(fd, (char *)buf + done, n - done);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            rv = r < 0 ? env_posix__errno() : -EIO;
            break;
        }
        done += (size_t)r;
    }
    close(fd);
    return rv;
}

/* ---- the table -------------------------------------------------------------------- */

static struct env env_posix__table = {
    .impl = NULL,
    .open = env_posix_open,
    .close = env_posix_close,
    .read_at = env_posix_read_at,
    .write_at = env_posix_write_at,
    .sync = env_posix_sync,
    .truncate = env_posix_truncate,
    .allocate = env_posix_allocate,
    .size = env_posix_size,
    .rename = env_posix_rename,
    .unlink = env_posix_unlink,
    .mkdir = env_posix_mkdir,
    .sync_dir = env_posix_sync_dir,
    .list_dir = env_posix_list_dir,
    .mono_ms = env_posix_mono_ms,
    .mono_us = env_posix_mono_us,
    .wall_ms = env_posix_wall_ms,
    .random_bytes = env_posix_random_bytes,
};

struct env *env_posix(void)
{
    return &env_posix__table;
}
