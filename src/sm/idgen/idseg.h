/* idseg.h -- Leaf-style segment allocation: the replicated state machine.
 *
 * Per business tag the cluster holds max_id, the first ID not yet handed out, and a
 * default step. ALLOC(tag, count) hands out [max_id, max_id + count) and advances
 * max_id; it goes through Raft like any write, so two nodes never get overlapping
 * ranges, and a range once allocated is never allocated again (max_id only grows, and
 * tags cannot be deleted: a re-created tag would start over). Nodes serve IDs from the
 * ranges in a local double buffer (idbuf.h); a node that restarts abandons what it had
 * not served, which leaves a gap but never reissues an ID.
 *
 * Pure and deterministic like sm/kv: no clock, no randomness, no IO. Timestamps
 * (created/updated) come inside the command, from the proposer's clock, and are only
 * informational.
 *
 * Commands. Wire format, little-endian, fixed-width:
 *
 *   command = u8 IDSEG_MACHINE_TAG (0x13), u8 IDSEG_FORMAT_VERSION, u8 type,
 *             i64 time_ms, u8 tag_len, tag bytes, body
 *   CREATE  = i64 initial, i64 step
 *   UPDATE  = u8 flags (1 = step, 2 = max_id; at least one), [i64 step], [i64 max_id]
 *   ALLOC   = i64 count (0 = the tag's step)
 *
 * Byte 0 is the machine tag the host's composite state machine dispatches on (0x01 kv,
 * 0x10 members, 0x11 lease, 0x12 lock, 0x13 idseg). Decoding is strict: a wrong tag is
 * IDSEG_EMACHINE, a wrong version IDSEG_EFORMAT, unknown types or flag bits, truncation
 * and trailing bytes IDSEG_EMALFORMED; so each meaning has one encoding. Encoders run
 * the same static checks as the decoder and return the first limit's error, so what
 * they produce decodes.
 *
 * Semantics (checked at apply; a failing command changes nothing):
 *   CREATE  tag must not exist (IDSEG_EEXISTS); max_id = initial.
 *   UPDATE  tag must exist (IDSEG_ENOTFOUND); sets the step and/or raises max_id
 *           (lowering it is IDSEG_EBACKWARD: it would reissue IDs).
 *   ALLOC   tag must exist; [start, end) = [max_id, max_id + count); max_id = end.
 *           IDSEG_EEXHAUSTED when end would pass INT64_MAX.
 *
 * Snapshot: "CIDS", u8 version, u32 n_tags, then per tag in byte order u8 tag_len,
 * tag, i64 max_id, step, created_ms, updated_ms, u64 n_allocs; then CRC-32C of all
 * preceding bytes. Canonical: equal states give equal bytes (and equal digests).
 *
 * Errors: negative IDSEG_E* in -2530..-2549; idseg_strerror() names them.
 * Ownership: command buffers are borrowed; encoders write into a caller buffer of at
 * least IDSEG_CMD_BYTES_MAX bytes; snapshot_encode mallocs *buf (caller frees);
 * struct idseg is freed with idseg_free. Not thread-safe: one writer.
 */
#ifndef CONCLAVE_SM_IDGEN_IDSEG_H
#define CONCLAVE_SM_IDGEN_IDSEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDSEG_MACHINE_TAG    0x13u /* byte 0 of every command */
#define IDSEG_FORMAT_VERSION 1u    /* byte 1 */

/* ---- limits (each has its own error) ------------------------------------- */

/* Leaf's biz_tag is varchar(128); fits the u8 length on the wire. */
#define IDSEG_TAG_BYTES_MAX 128u /* IDSEG_ETAGTOOBIG; IDSEG_ETAGEMPTY below 1 */
/* Bounds the state (about 180 bytes a tag, ~12 MiB) and a snapshot. Tags are never
 * deleted, so this is the lifetime number of tags. */
#define IDSEG_TAGS_MAX 65536u /* IDSEG_ETOOMANY */
/* One segment: 1e8 IDs last 100 s at 1M IDs/s; beyond that a restart wastes too much. */
#define IDSEG_STEP_MIN  1
#define IDSEG_STEP_MAX  100000000      /* IDSEG_ESTEP */
#define IDSEG_COUNT_MAX IDSEG_STEP_MAX /* IDSEG_ECOUNT */
/* IDs are positive signed 64-bit (they fit a BIGINT column); 0 is never issued. */
#define IDSEG_INITIAL_MIN 1 /* IDSEG_EINITIAL */
/* header 3 + time 8 + tag 1 + 128 + the longest body (UPDATE: 1 + 8 + 8) */
#define IDSEG_CMD_BYTES_MAX (3u + 8u + 1u + IDSEG_TAG_BYTES_MAX + 17u)
#define IDSEG_RESULT_BYTES  (2u + 4u + 8u * 4u) /* idseg_encode_result */

_Static_assert(IDSEG_TAG_BYTES_MAX <= UINT8_MAX, "tag length is a u8 on the wire");
_Static_assert(IDSEG_COUNT_MAX <= IDSEG_STEP_MAX, "a count of 0 means the step");

enum {
    IDSEG_EINVAL = -2530,     /* invalid argument (NULL, negative time, bad enum) */
    IDSEG_ENOMEM = -2531,     /* allocation failed (snapshots only; apply aborts) */
    IDSEG_EMALFORMED = -2532, /* bytes do not decode */
    IDSEG_EMACHINE = -2533,   /* byte 0 is not IDSEG_MACHINE_TAG */
    IDSEG_EFORMAT = -2534,    /* unknown command or snapshot format version */
    IDSEG_ETAGEMPTY = -2535,  /* empty tag */
    IDSEG_ETAGTOOBIG = -2536, /* tag longer than IDSEG_TAG_BYTES_MAX */
    IDSEG_ETAGCHAR = -2537,   /* tag byte outside [A-Za-z0-9._:-] */
    IDSEG_ETOOMANY = -2538,   /* IDSEG_TAGS_MAX tags exist */
    IDSEG_ESTEP = -2539,      /* step outside [IDSEG_STEP_MIN, IDSEG_STEP_MAX] */
    IDSEG_ECOUNT = -2540,     /* count outside [0, IDSEG_COUNT_MAX] */
    IDSEG_EINITIAL = -2541,   /* initial below IDSEG_INITIAL_MIN */
    IDSEG_EEXISTS = -2542,    /* CREATE of an existing tag */
    IDSEG_ENOTFOUND = -2543,  /* UPDATE/ALLOC of a missing tag */
    IDSEG_EEXHAUSTED = -2544, /* max_id + count would pass INT64_MAX */
    IDSEG_EBACKWARD = -2545,  /* UPDATE would lower max_id */
    IDSEG_ECORRUPT = -2546,   /* snapshot or result fails its checksum or checks */
};
const char *idseg_strerror(int rv);

/* ---- commands ------------------------------------------------------------ */

enum idseg_cmd_type { IDSEG_CMD_CREATE = 1, IDSEG_CMD_UPDATE = 2, IDSEG_CMD_ALLOC = 3 };

/* A decoded command; self-contained (the tag is copied). */
struct idseg_cmd {
    uint8_t type; /* enum idseg_cmd_type */
    uint8_t tag_len;
    uint8_t tag[IDSEG_TAG_BYTES_MAX];
    int64_t time_ms; /* proposer's clock, >= 0 */
    int64_t initial; /* CREATE */
    int64_t step;    /* CREATE; UPDATE when set_step */
    int64_t max_id;  /* UPDATE when set_max_id */
    int64_t count;   /* ALLOC; 0 = the tag's step */
    bool set_step;
    bool set_max_id;
};

/* Static checks of a command (what the decoder and the encoder run). */
int idseg_cmd_check(const struct idseg_cmd *cmd);
/* Checks cmd, then writes it into buf (cap >= IDSEG_CMD_BYTES_MAX is always enough). */
int idseg_cmd_encode(const struct idseg_cmd *cmd, uint8_t *buf, size_t cap, size_t *n);
/* Shorthands that fill a struct idseg_cmd and encode it. */
int idseg_encode_create(const char *tag, size_t tag_len, int64_t initial, int64_t step,
                        int64_t time_ms, uint8_t *buf, size_t cap, size_t *n);
int idseg_encode_update(const char *tag, size_t tag_len, bool set_step, int64_t step,
                        bool set_max_id, int64_t max_id, int64_t time_ms, uint8_t *buf, size_t cap,
                        size_t *n);
int idseg_encode_alloc(const char *tag, size_t tag_len, int64_t count, int64_t time_ms,
                       uint8_t *buf, size_t cap, size_t *n);
/* Decodes and checks. Returns 0, IDSEG_EMACHINE, IDSEG_EFORMAT, IDSEG_EMALFORMED or the
 * first limit's error; out is fully written on 0. */
int idseg_cmd_decode(const uint8_t *buf, size_t n, struct idseg_cmd *out);

/* ---- results ------------------------------------------------------------- */

struct idseg_result {
    int err;       /* 0 or IDSEG_E*: when nonzero nothing changed */
    uint8_t type;  /* the command's type; 0 if it did not decode */
    int64_t start; /* ALLOC: the range [start, end) */
    int64_t end;
    int64_t max_id; /* the tag's state after the command (0 on error) */
    int64_t step;
};

/* For a leader answering a follower that forwarded the command: fixed
 * IDSEG_RESULT_BYTES = u8 version, u8 type, i32 err, i64 start, end, max_id, step. */
void idseg_encode_result(const struct idseg_result *res, uint8_t out[IDSEG_RESULT_BYTES]);
int idseg_decode_result(const uint8_t *buf, size_t n, struct idseg_result *out);

/* ---- the store ----------------------------------------------------------- */

struct idseg_tag_info {
    uint8_t tag_len;
    char tag[IDSEG_TAG_BYTES_MAX + 1]; /* NUL-terminated copy */
    int64_t max_id;                    /* first ID not yet allocated */
    int64_t step;
    int64_t created_ms;
    int64_t updated_ms;
    uint64_t n_allocs;
};

struct idseg;

/* An empty store. 0 or IDSEG_ENOMEM. */
int idseg_new(struct idseg **out);
void idseg_free(struct idseg *s);

/* Applies one committed command; always fills res and returns res->err. Deterministic:
 * every replica gets the same result. Allocation failure mid-apply aborts (a replica
 * that skipped a committed entry would diverge; a restarted one replays its log). */
int idseg_apply(struct idseg *s, const uint8_t *cmd, size_t n, struct idseg_result *res);

/* Reads. idseg_get: 0 or IDSEG_ENOTFOUND. Tags are ordered by bytes; idseg_at(i) for
 * i < idseg_count() walks them, idseg_lower_bound() gives the first index >= tag, so an
 * API can page through them. */
int idseg_get(const struct idseg *s, const char *tag, size_t tag_len, struct idseg_tag_info *out);
uint32_t idseg_count(const struct idseg *s);
void idseg_at(const struct idseg *s, uint32_t i, struct idseg_tag_info *out);
uint32_t idseg_lower_bound(const struct idseg *s, const char *tag, size_t tag_len);

/* FNV-1a 64 over the canonical state. */
uint64_t idseg_digest(const struct idseg *s);
/* *buf is malloc'd; the caller frees it. 0 or IDSEG_ENOMEM. */
int idseg_snapshot_encode(const struct idseg *s, uint8_t **buf, size_t *n);
/* A new store from an image: IDSEG_ECORRUPT (checksum, truncation, order, limits),
 * IDSEG_EFORMAT or IDSEG_ENOMEM; never crashes on bad input. buf is borrowed. */
int idseg_snapshot_decode(const uint8_t *buf, size_t n, struct idseg **out);

#endif /* CONCLAVE_SM_IDGEN_IDSEG_H */
