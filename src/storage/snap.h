/* snap.h -- state machine snapshots on disk: checksummed files written atomically, the
 * newest valid one loaded at start, the last N kept.
 *
 * Files: snap-<16 hex index>-<16 hex term>.snap in the data directory (the same one as
 * the WAL). Layout (little endian, docs/storage.md):
 *
 *   magic "CNCLSNAP" | u32 version | u32 config bytes | u64 index | u64 term |
 *   u64 payload bytes | encoded raft_config | u32 crc32c(header so far) |
 *   payload | u32 crc32c(everything before it)
 *
 * The header has its own CRC so a damaged length is caught before it is trusted; the
 * trailer covers the whole file.
 *
 * Atomicity: snap_save() writes <name>.tmp, fdatasyncs it, renames it over <name> and
 * fsyncs the directory, so a crash leaves either no file or a whole one; a leftover
 * *.tmp is ignored by every reader and removed by snap_prune(). A failed sync is
 * SNAP_ESYNC: treat it as fatal, like WAL_ESYNC.
 *
 * Loading: snap_load_latest() tries files newest first (by index, then term) and skips
 * any that fail a check, saying so in msg; it never returns a corrupt snapshot.
 * Compaction: keep the WAL back to the OLDEST snapshot you keep (wal_compact), or a
 * fall-back to it would find a gap in the log.
 *
 * Ownership: a loaded snapshot's bytes are malloc'd; release with snap_free().
 * Thread safety: none needed; functions share nothing but the env.
 */
#ifndef CC_STORAGE_SNAP_H
#define CC_STORAGE_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/env.h"
#include "raft/raft.h"

/* ---- limits and format constants -------------------------------------------------- */

#define SNAP_FORMAT_VERSION     1
#define SNAP_HEADER_FIXED_BYTES 40 /* magic to payload length */
#define SNAP_HEADER_BYTES_MAX   (SNAP_HEADER_FIXED_BYTES + RAFT_CONFIG_BYTES_MAX + 4)
#define SNAP_TRAILER_BYTES      4
/* Loading holds a snapshot in memory; the Raft core's receive buffer has the same bound. */
#define SNAP_PAYLOAD_BYTES_MAX (UINT64_C(1) << 32)
#define SNAP_FILES_MAX         1024 /* snapshots listed per directory scan */
#define SNAP_NAME_BYTES        44   /* "snap-" 16 "-" 16 ".snap" NUL */
#define SNAP_KEEP_DEFAULT      2    /* the newest and one to fall back to */
#define SNAP_MSG_BYTES         1024

_Static_assert(SNAP_PAYLOAD_BYTES_MAX + SNAP_HEADER_BYTES_MAX + SNAP_TRAILER_BYTES <= SIZE_MAX,
               "a snapshot file fits in memory");

/* ---- errors (negative, in the snap range) ----------------------------------------- */

enum {
    SNAP_ECORRUPT = -1301, /* bad magic, CRC, length or config; also: every file is bad */
    SNAP_ENOENT = -1302,   /* no snapshot (or no directory) */
    SNAP_EIO = -1303,      /* IO error */
    SNAP_ESYNC = -1304,    /* fsync of the file or directory failed: fatal */
    SNAP_ENOSPC = -1305,   /* disk full; the temp file is removed */
    SNAP_ENOMEM = -1306,   /* allocation failed */
    SNAP_EINVAL = -1307,   /* bad argument (index 0, invalid config) */
    SNAP_ETOOBIG = -1308,  /* payload over SNAP_PAYLOAD_BYTES_MAX */
    SNAP_ETOOMANY = -1309, /* more than SNAP_FILES_MAX snapshot files */
    SNAP_EVERSION = -1310, /* unknown (newer) format version */
};
const char *snap_strerror(int rv);

/* ---- the pure codec (fuzzed by tests/fuzz/fuzz_snap_decode.c) --------------------- */

/* A decoded snapshot; bytes points into the decoded buffer. */
struct snap_view {
    uint64_t index;
    uint64_t term;
    struct raft_config config;
    uint64_t n_bytes;
    const uint8_t *bytes;
};

/* Encodes the header of s into buf (at least SNAP_HEADER_BYTES_MAX). */
int snap_encode_header(const struct raft_snapshot *s, uint8_t *buf, size_t cap, size_t *n_out);
/* Checks a whole file image: header CRC, lengths, config, trailer CRC. Returns 0, or
 * SNAP_ECORRUPT / SNAP_EVERSION with a static reason in *why (may be NULL). */
int snap_decode(const uint8_t *buf, size_t n, struct snap_view *out, const char **why);

/* ---- files ------------------------------------------------------------------------ */

struct snap_info {
    char name[SNAP_NAME_BYTES];
    uint64_t index;
    uint64_t term;
};

/* Writes s atomically and durably (see above). msg may be NULL. */
int snap_save(struct env *env, const char *dir, const struct raft_snapshot *s, char *msg,
              size_t msg_cap);

/* Loads the newest valid snapshot into *out (bytes malloc'd). Skipped files are named in
 * msg (also on success). Returns 0, SNAP_ENOENT when there is none, SNAP_ECORRUPT when
 * there are snapshot files but none is valid, or an IO error. *info may be NULL. */
int snap_load_latest(struct env *env, const char *dir, struct raft_snapshot *out,
                     struct snap_info *info, char *msg, size_t msg_cap);

/* Loads and checks one file by name. */
int snap_load(struct env *env, const char *dir, const char *name, struct raft_snapshot *out,
              char *msg, size_t msg_cap);

/* Lists snapshot files (names parsed, contents not read), newest first. Returns 0 with
 * *n_out <= cap; more files than cap is SNAP_ETOOMANY. */
int snap_list(struct env *env, const char *dir, struct snap_info *out, uint32_t cap,
              uint32_t *n_out);

/* Removes all but the newest keep_n (>= 1) snapshots and any leftover *.snap.tmp, then
 * syncs the directory. *n_removed may be NULL. */
int snap_prune(struct env *env, const char *dir, uint32_t keep_n, uint32_t *n_removed);

void snap_free(struct raft_snapshot *s);

/* Parses "snap-<16 hex>-<16 hex>.snap". */
bool snap_parse_name(const char *name, uint64_t *index, uint64_t *term);

#endif /* CC_STORAGE_SNAP_H */
