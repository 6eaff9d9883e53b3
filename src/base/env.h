/* env.h -- the environment table: every file, directory, clock and randomness call that
 * core code makes goes through one struct of function pointers.
 *
 * Why: the simulator and the storage tests swap the production table (env_posix(), over
 * POSIX) for an in-memory one (sim/simfs.h) that loses unsynced writes at a crash, tears
 * the last write, fails fsync and runs out of space on demand. That only works if no core
 * module calls open()/pwrite()/fsync()/time() itself (STYLE.md rule 4; SQLite's
 * aSyscall[] exists "to facilitate fault injection", canonical/raft's struct raft_io).
 *
 * Conventions for every callback:
 *   - The first argument is the table itself, so an implementation finds its state in
 *     env->impl.
 *   - Errors are negative errno values (-ENOENT, -ENOSPC, -EIO, ...), libuv style; 0 is
 *     success. env_strerror() names them without touching errno or locale state.
 *   - Paths are plain strings built with env_path_join(); at most ENV_PATH_MAX bytes.
 *   - A struct env_file is owned by whoever opened it and is released by close(), which
 *     never syncs: durability is always an explicit sync().
 *   - write_at() writes all n bytes or fails; after a failure a prefix of the bytes may
 *     have reached the file (a real pwrite can be cut short by ENOSPC), so callers that
 *     must not leave half a record behind truncate back (see storage/wal.c).
 *   - sync() is fdatasync: the file's data and the metadata needed to read it back
 *     (its size) are durable when it returns 0. A failed sync is reported once and the
 *     kernel may then drop the dirty pages ("fsyncgate", PostgreSQL 2018): callers must
 *     treat it as fatal, never retry and trust the page cache.
 *   - Names created, renamed or removed in a directory are durable only after
 *     sync_dir() on that directory.
 *
 * Thread safety: env_posix() is safe from any thread. Implementations document their own.
 */
#ifndef CC_BASE_ENV_H
#define CC_BASE_ENV_H

#include <stddef.h>
#include <stdint.h>

/* ---- limits ----------------------------------------------------------------------- */

#define ENV_PATH_MAX 4096 /* Linux PATH_MAX: longer paths fail with -ENAMETOOLONG */
#define ENV_NAME_MAX 255  /* one directory entry, as NAME_MAX */

_Static_assert(ENV_NAME_MAX < ENV_PATH_MAX, "a name must fit in a path");

/* ---- types ------------------------------------------------------------------------ */

/* Opaque per-implementation file handle. */
struct env_file;

enum env_open_flags {
    ENV_OPEN_READ = 0,   /* read only */
    ENV_OPEN_WRITE = 1,  /* read and write */
    ENV_OPEN_CREATE = 2, /* create when missing (implies WRITE) */
    ENV_OPEN_EXCL = 4,   /* with CREATE: fail with -EEXIST when it exists */
    ENV_OPEN_TRUNC = 8,  /* cut to zero length (implies WRITE) */
};

/* Called once per directory entry ("." and ".." excluded), in no particular order.
 * Returning nonzero stops the listing and becomes list_dir()'s result. */
typedef int (*env_list_cb)(void *arg, const char *name);

struct env {
    void *impl; /* the implementation's state */

    /* files */
    int (*open)(struct env *env, const char *path, int flags, struct env_file **out);
    int (*close)(struct env *env, struct env_file *f);
    /* Reads up to n bytes at offset; *n_read < n only at end of file. */
    int (*read_at)(struct env *env, struct env_file *f, uint64_t offset, void *buf, size_t n,
                   size_t *n_read);
    int (*write_at)(struct env *env, struct env_file *f, uint64_t offset, const void *buf,
                    size_t n);
    int (*sync)(struct env *env, struct env_file *f);
    int (*truncate)(struct env *env, struct env_file *f, uint64_t size);
    /* Reserves [offset, offset + n) so later writes there cannot fail with ENOSPC, and
     * extends the file size (zero filled) to offset + n if it was smaller. Falls back to a
     * plain size extension where the filesystem cannot reserve. */
    int (*allocate)(struct env *env, struct env_file *f, uint64_t offset, uint64_t n);
    int (*size)(struct env *env, struct env_file *f, uint64_t *size_out);

    /* directories */
    int (*rename)(struct env *env, const char *from, const char *to);
    int (*unlink)(struct env *env, const char *path);
    int (*mkdir)(struct env *env, const char *path); /* -EEXIST when it exists */
    int (*sync_dir)(struct env *env, const char *path);
    int (*list_dir)(struct env *env, const char *path, void *arg, env_list_cb cb);

    /* clock and randomness */
    uint64_t (*mono_ms)(struct env *env); /* monotonic, for timeouts */
    uint64_t (*mono_us)(struct env *env); /* monotonic, for latency metrics */
    uint64_t (*wall_ms)(struct env *env); /* Unix epoch, for humans only */
    int (*random_bytes)(struct env *env, void *buf, size_t n);
};

/* ---- implementations and helpers -------------------------------------------------- */

/* The production table over POSIX. Static storage: never freed. */
struct env *env_posix(void);

/* Name of a negative errno value (e.g. -ENOSPC -> "no space left on device"). */
const char *env_strerror(int rv);

/* buf = dir + "/" + name, with trailing slashes of dir dropped. Returns 0 or
 * -ENAMETOOLONG when it does not fit in cap (and then buf is ""). */
int env_path_join(char *buf, size_t cap, const char *dir, const char *name);

/* Parent directory of path into buf ("." when path has no slash, "/" for "/x").
 * Returns 0 or -ENAMETOOLONG. */
int env_path_parent(char *buf, size_t cap, const char *path);

/* Reads exactly n bytes at offset: 0, -EIO when the file ends first, or the error. */
int env_read_exact(struct env *env, struct env_file *f, uint64_t offset, void *buf, size_t n);

#endif /* CC_BASE_ENV_H */
