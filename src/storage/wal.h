/* wal.h -- the write-ahead log: Raft log entries and hard state, durable across crashes
 * and checked against corrupt disks. All IO goes through the env table (base/env.h).
 *
 * On disk (docs/storage.md has the byte layout): a data directory holds segment files
 * wal-<16 hex seq>.log, numbered without gaps. Each starts with a 48-byte header (magic,
 * format version, seq, the index its first new entry gets, the term before it, CRC-32C)
 * and then records
 *
 *     [u32 len][u32 crc32c(type + payload)][u8 type][payload]      little endian,
 *                                                                   len = 1 + payload
 *
 * of the types below. The last segment is preallocated to segment_bytes; a new segment
 * starts when a write would cross that bound. Before it does, the old one is cut to its
 * used length and synced, so every segment but the last must decode to its exact end.
 *
 * Zero-filled segments (opts.zero_fill, the default): a segment's blocks are really
 * written (zeros) and synced before records go into them, so a later fdatasync has only
 * data to write, not the "unwritten extent" conversion that posix_fallocate leaves behind
 * (PostgreSQL's wal_init_zero). A new WAL's first segment is zero-filled inside wal_open.
 * Later ones come from a spare file, WAL_SPARE_NAME, that wal_prepare() zero-fills in
 * steps while the owner is idle (the storage thread calls it between groups) once the
 * current segment is half full; a roll writes the new header into the spare, syncs it,
 * renames it to its segment name and syncs the directory. When no spare is ready the
 * roll falls back to a preallocated (fallocate) segment. A spare is never part of the
 * log: wal_open deletes whatever spare a crash left behind, finished or half-zeroed.
 *
 * Durability contract:
 *   - wal_write() (and its wrappers) only write; wal_sync() writes a SEAL record (the
 *     log's last index and term) and fdatasyncs. Whatever wal_sync() reports durable is
 *     what may be acknowledged. Within one wal_write() the order is snapshot marker,
 *     truncation, entries, hard state, the order of raft_update's persist part, so a
 *     follower's truncation is on disk before any acknowledgement that depends on it.
 *   - A crash loses at most a suffix of what was written since the last wal_sync().
 *   - A failed fdatasync returns WAL_ESYNC and poisons the handle: the process must exit
 *     and recover from disk (fsyncgate: a retried fsync can succeed without writing).
 *   - ENOSPC returns WAL_ENOSPC and leaves nothing of that call in the log: the file is
 *     cut back to the last whole record. The handle stays usable.
 *
 * Recovery (wal_open) replays every segment. A bad or partial record at the end of the
 * last segment, with no valid record after it, is a torn write that was never
 * acknowledged: it is cut off (and reported). Any bad record with a valid one after it,
 * any bad record in an earlier segment, a bad header, or a log whose indexes do not line
 * up is corruption: WAL_ECORRUPT, with the file, byte offset and record number in msg.
 * Because every sync ends in a SEAL, an acknowledged record always has a valid record
 * after it, so a flipped bit in acknowledged data is never mistaken for a torn tail.
 *
 * Ownership: struct wal is opaque, created by wal_open() and freed by wal_close(). Entry
 * bytes passed in are copied into the file before the call returns.
 * Thread safety: none; one thread owns a struct wal (storage/storage_thread.h hands it
 * to a worker thread).
 */
#ifndef CC_STORAGE_WAL_H
#define CC_STORAGE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/env.h"
#include "raft/raft.h"

/* ---- limits and format constants -------------------------------------------------- */

#define WAL_FORMAT_VERSION        1
#define WAL_SEGMENT_BYTES_DEFAULT (UINT64_C(64) << 20) /* roll bound and preallocation */
#define WAL_SEGMENT_BYTES_MIN     UINT64_C(1024)       /* tests roll every few records */
#define WAL_SEGMENT_BYTES_MAX     (UINT64_C(1) << 30)  /* recovery reads a segment whole */
#define WAL_BATCH_BYTES_MAX       (UINT64_C(64) << 20) /* one atomic write, encode buffer */
#define WAL_FILE_BYTES_MAX        (WAL_SEGMENT_BYTES_MAX + WAL_BATCH_BYTES_MAX + 4096)
#define WAL_SEGMENTS_MAX          100000 /* bounds the directory scan and segment table */
#define WAL_HEADER_BYTES          48
#define WAL_RECORD_HEADER_BYTES   8  /* len + crc */
#define WAL_ENTRY_FIXED_BYTES     17 /* term, index, entry type */
#define WAL_RECORD_LEN_MAX        (1 + WAL_ENTRY_FIXED_BYTES + RAFT_ENTRY_BYTES_MAX)
#define WAL_RECORD_BYTES_MAX      (WAL_RECORD_HEADER_BYTES + WAL_RECORD_LEN_MAX)
#define WAL_NAME_BYTES            25  /* "wal-" 16 hex ".log" NUL */
#define WAL_MSG_BYTES             512 /* a comfortable size for msg buffers */
#define WAL_SPARE_NAME            "wal-spare.tmp" /* not a segment name: scans ignore it */
/* Zeros one wal_prepare() step writes and syncs: bounds how long a batch that arrives
 * meanwhile waits for the storage thread (about 1-3 ms on a disk doing 400 MB/s). */
#define WAL_PREPARE_STEP_BYTES    (UINT64_C(1) << 20)

_Static_assert(WAL_SEGMENT_BYTES_MIN <= WAL_SEGMENT_BYTES_DEFAULT, "default within bounds");
_Static_assert(WAL_SEGMENT_BYTES_DEFAULT <= WAL_SEGMENT_BYTES_MAX, "default within bounds");
_Static_assert(WAL_RECORD_BYTES_MAX <= WAL_BATCH_BYTES_MAX, "one entry fits in a batch");
_Static_assert(WAL_SEGMENT_BYTES_MIN > WAL_HEADER_BYTES + 2 * 64,
               "a segment holds its header and its initial records");
_Static_assert(WAL_FILE_BYTES_MAX <= SIZE_MAX, "a segment file fits in memory");

/* ---- errors (negative, in the wal range) ------------------------------------------ */

enum {
    WAL_ECORRUPT = -1201, /* bad data before valid data, or an inconsistent log */
    WAL_ESYNC = -1202,    /* fdatasync failed: fatal, exit and recover */
    WAL_ENOSPC = -1203,   /* disk full; nothing of the call is in the log */
    WAL_EIO = -1204,      /* another IO error */
    WAL_ENOMEM = -1205,   /* allocation failed */
    WAL_EINVAL = -1206,   /* bad argument (e.g. entries not following the log) */
    WAL_ETOOBIG = -1207,  /* an entry over RAFT_ENTRY_BYTES_MAX or a file over its bound */
    WAL_EFAILED = -1208,  /* an earlier fatal error poisoned this handle */
    WAL_ESHORT = -1209,   /* decoder: the record runs past the end of the input */
    WAL_ETOOMANY = -1210, /* more than WAL_SEGMENTS_MAX segments */
    WAL_ENOENT = -1211,   /* the data directory does not exist */
    WAL_EVERSION = -1212, /* a segment of an unknown (newer) format version */
};
const char *wal_strerror(int rv);

/* ---- records: the pure codec (fuzzed by tests/fuzz/fuzz_wal_record.c) ------------ */

enum wal_record_type {
    WAL_REC_ENTRY = 1,      /* u64 term, u64 index, u8 entry type, bytes */
    WAL_REC_HARD_STATE = 2, /* u64 term, u32 vote, u64 commit */
    WAL_REC_TRUNCATE = 3,   /* u64 from: entries >= from are gone */
    WAL_REC_SNAPSHOT = 4,   /* u64 index, u64 term: a saved snapshot covers <= index */
    WAL_REC_SEAL = 5,       /* u64 last index, u64 last term: ends every synced batch */
};

struct wal_record {
    uint8_t type; /* enum wal_record_type */
    union {
        struct {
            uint64_t term;
            uint64_t index;
            uint8_t type; /* enum raft_entry_type */
            uint32_t n_bytes;
            const uint8_t *bytes; /* decode: points into the input buffer */
        } entry;
        struct raft_hard_state hard_state;
        struct {
            uint64_t from_index;
        } truncate;
        struct {
            uint64_t index;
            uint64_t term;
        } snapshot;
        struct {
            uint64_t last_index;
            uint64_t last_term;
        } seal;
    };
};

/* Decodes one record at buf[0..n). Returns 0 and sets *rec and *consumed, WAL_ESHORT when
 * the record (by its length field) runs past n, or WAL_ECORRUPT for a bad length, CRC,
 * type or payload. Pure; reads nothing outside buf[0..n). */
int wal_decode_record(const uint8_t *buf, size_t n, struct wal_record *rec, size_t *consumed);
/* Same, plus a static string saying what is wrong (for messages). */
int wal_decode_record_why(const uint8_t *buf, size_t n, struct wal_record *rec, size_t *consumed,
                          const char **why);
/* Encoded size of rec. */
size_t wal_record_size(const struct wal_record *rec);
/* Encodes rec into buf[0..cap). Returns 0 and sets *n_out, or WAL_EINVAL / WAL_ETOOBIG. */
int wal_encode_record(const struct wal_record *rec, uint8_t *buf, size_t cap, size_t *n_out);

struct wal_segment_header {
    uint32_t version;
    uint64_t seq;
    uint64_t first_index; /* index the segment's first new entry gets */
    uint64_t prev_term;   /* term of entry first_index - 1 (0 = none or unknown) */
};
void wal_encode_segment_header(const struct wal_segment_header *h, uint8_t *buf);
/* Returns 0, WAL_ESHORT, WAL_ECORRUPT (magic or CRC) or WAL_EVERSION. */
int wal_decode_segment_header(const uint8_t *buf, size_t n, struct wal_segment_header *h);

/* ---- the log ---------------------------------------------------------------------- */

struct wal;

struct wal_options {
    uint64_t segment_bytes; /* roll bound and preallocation, in [MIN, MAX] */
    bool create;            /* create the data directory when missing */
    bool zero_fill;         /* default true: zero-filled first segment and spares (above);
                               false: fallocate only, wal_prepare() does nothing */
};
void wal_options_default(struct wal_options *o);

/* What recovery found. entries[] is contiguous (entries[k].index == first_index + k),
 * with every truncation and snapshot marker applied. Owned by the caller:
 * wal_recovered_free(). */
struct wal_recovered {
    struct raft_hard_state hard_state; /* zero when none was ever written */
    bool has_hard_state;
    uint64_t first_index; /* of entries[0]; last_index + 1 when there are none */
    uint64_t prev_term;   /* term of entry first_index - 1; 0 = none or unknown */
    uint64_t last_index;  /* first_index - 1 when there are no entries */
    uint64_t last_term;
    uint64_t snapshot_index; /* newest SNAPSHOT marker still in the log; 0 = none */
    uint64_t snapshot_term;
    struct raft_entry *entries; /* each entries[k].bytes malloc'd (NULL when empty) */
    uint64_t n_entries;
    uint32_t n_segments;
    uint64_t n_records;
    uint64_t torn_bytes_dropped; /* nonzero garbage cut from the tail by recovery */
    bool torn_segment_removed;   /* a half-created last segment was removed */
};
void wal_recovered_free(struct wal_recovered *r);

/* One atomic write, in raft_update's persist order. Zero fields mean "none". */
struct wal_batch {
    uint64_t snapshot_index; /* a snapshot, already saved and synced, covers <= index */
    uint64_t snapshot_term;
    uint64_t truncate_from; /* drop entries >= truncate_from */
    const struct raft_entry *entries;
    uint32_t n_entries;
    bool has_hard_state;
    struct raft_hard_state hard_state;
};

/* Opens (recovering) the WAL in dir. On success *out is the handle and *rec what was
 * recovered; the recovered log is synced (it may have been read back from the page cache
 * of a crashed process) and sealed before this returns. On failure msg says why (for
 * WAL_ECORRUPT: file, offset, record) and *rec is empty. msg may be NULL. */
int wal_open(struct env *env, const char *dir, const struct wal_options *o, struct wal **out,
             struct wal_recovered *rec, char *msg, size_t msg_cap);

/* Writes b. entries[0] must follow the log's last index after the batch's snapshot
 * marker and truncation, entries must be contiguous with non-decreasing terms. Not
 * durable until wal_sync(). Atomic: on WAL_ENOSPC none of it is in the log. A batch
 * whose encoding exceeds WAL_BATCH_BYTES_MAX is written as several atomic pieces in
 * order; a failure may then leave a prefix of the pieces. */
int wal_write(struct wal *w, const struct wal_batch *b);
/* Group commit: writes bs[0..n) in order with as few writes as possible (one, when they
 * fit WAL_BATCH_BYTES_MAX together), each batch atomic as in wal_write(). With seal, a
 * SEAL closes the last such write, so the wal_sync() that follows only fdatasyncs. On an
 * error, *n_written (always set) batches are in the log, bs[*n_written] failed with the
 * returned code and nothing after it was written. Not durable until wal_sync(). */
int wal_write_group(struct wal *w, const struct wal_batch *const *bs, uint32_t n, bool seal,
                    uint32_t *n_written);
int wal_append(struct wal *w, const struct raft_entry *entries, uint32_t n);
int wal_truncate(struct wal *w, uint64_t from_index);
int wal_set_hard_state(struct wal *w, const struct raft_hard_state *hs);
int wal_set_snapshot(struct wal *w, uint64_t index, uint64_t term);

/* Seals and fdatasyncs what was written. Sets the durable last index and term (either
 * pointer may be NULL). WAL_ESYNC is fatal; WAL_ENOSPC (no room for the seal) is not,
 * and nothing new is durable then. */
int wal_sync(struct wal *w, uint64_t *durable_index, uint64_t *durable_term);

/* Deletes whole segments whose live entries all have index <= snapshot_index (never the
 * last segment). The snapshot must already be durable (snap_save). Keep the WAL back to
 * the OLDEST snapshot you keep, so that falling back to it still finds the log after it.
 * *n_deleted may be NULL. */
int wal_compact(struct wal *w, uint64_t snapshot_index, uint32_t *n_deleted);

/* Background work for the owner's idle time: zero-fills up to budget_bytes more of the
 * spare segment (creating it first) and fdatasyncs them, so one call costs about one
 * write + sync of budget_bytes (the storage thread passes WAL_PREPARE_STEP_BYTES).
 * *more says whether another call would do more now (the spare is not ready yet). It has nothing to do while zero_fill is off, the current segment is less
 * than half full, the spare is ready, or a preparation failed since the last roll.
 * Errors are not fatal and not the log's: the spare is dropped, the next roll falls back
 * to fallocate, and the return value says why (WAL_ENOSPC, WAL_EIO, ...). */
int wal_prepare(struct wal *w, uint64_t budget_bytes, bool *more);
/* Whether wal_prepare() has work to do now. */
bool wal_prepare_wanted(const struct wal *w);

/* Closes without syncing: what wal_sync() did not report durable may be lost. */
void wal_close(struct wal *w);

uint64_t wal_last_index(const struct wal *w);
uint64_t wal_last_term(const struct wal *w);
uint64_t wal_durable_index(const struct wal *w);
struct env *wal_env(const struct wal *w); /* the env table it does IO through */
uint64_t wal_durable_term(const struct wal *w);
/* Term of the entry at index (0 if unknown or not in the log). */
uint64_t wal_term_at(const struct wal *w, uint64_t index);

struct wal_stats {
    uint64_t n_syncs;  /* fdatasyncs of wal_sync() that wrote a seal */
    uint64_t n_writes; /* wal_write() pieces written */
    uint64_t n_bytes;  /* record bytes written */
    uint64_t n_segments_created;
    uint64_t n_segments_deleted;
    uint64_t n_segments_zeroed;  /* created from a zero-filled spare (or at wal_open) */
    uint64_t n_spare_bytes;      /* zeros written by wal_prepare and wal_open */
    uint64_t n_spare_failures;   /* preparations given up (disk full, IO error) */
    uint32_t n_segments; /* live now */
};
void wal_get_stats(const struct wal *w, struct wal_stats *out);

/* ---- inspection (read-only; `conclave wal check`) --------------------------------- */

struct wal_segment_info {
    char name[WAL_NAME_BYTES];
    uint64_t seq;
    uint64_t first_index; /* from the header */
    uint64_t file_bytes;
    uint64_t used_bytes; /* end of the last valid record */
    uint64_t n_records;
    uint64_t n_entries;
    uint64_t min_entry_index; /* of ENTRY records in this file; 0 if none */
    uint64_t max_entry_index;
    bool header_ok;
};

struct wal_report {
    int status; /* 0, or the error recovery would return (WAL_ECORRUPT, ...) */
    struct wal_segment_info *segments; /* n_segments, in seq order */
    uint32_t n_segments;
    struct wal_recovered log; /* the log as recovery would return it (when status == 0) */
    /* a torn tail recovery would cut */
    bool torn_tail;
    uint32_t torn_segment; /* index into segments[] */
    uint64_t torn_offset;
    uint64_t torn_bytes;      /* nonzero bytes from torn_offset on */
    bool torn_segment_header; /* the last segment's header itself is torn */
    /* corruption (status == WAL_ECORRUPT) */
    bool has_bad;
    uint32_t bad_segment; /* index into segments[] */
    uint64_t bad_offset;
    uint64_t bad_record; /* 1-based record number within the segment; 0 = the header */
};

/* Scans dir exactly as recovery does but changes nothing. Returns 0 when the scan ran
 * (rep->status says what recovery would do) or an error that prevented the scan (missing
 * directory, IO error). msg gets the details of rep->status. Free with wal_report_free. */
int wal_inspect(struct env *env, const char *dir, struct wal_report *rep, char *msg,
                size_t msg_cap);
void wal_report_free(struct wal_report *rep);

/* Parses "wal-<16 lowercase hex>.log". */
bool wal_parse_segment_name(const char *name, uint64_t *seq);

#endif /* CC_STORAGE_WAL_H */
