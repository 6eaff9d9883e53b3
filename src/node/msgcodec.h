/* msgcodec.h -- the wire format of Raft peer traffic: struct raft_msg <-> bytes, and the
 * frames that carry them over TCP.
 *
 * Pure: no IO, no clock, no allocation. Encoders write into a caller buffer; the decoder
 * returns a view whose pointers lead into the input buffer and a caller-owned scratch
 * area, so a hostile peer can never make us allocate anything.
 *
 * ---- frame (all integers little-endian) ----------------------------------------------
 *
 *   off size field
 *     0    4 magic        the bytes 'C' 'N' 'C' 'L'
 *     4    1 version      MSGCODEC_VERSION (1)
 *     5    1 kind         MSGCODEC_KIND_HELLO or MSGCODEC_KIND_RAFT
 *     6    2 reserved     0
 *     8    4 payload_len  <= MSGCODEC_PAYLOAD_BYTES_MAX
 *    12    4 crc          crc32c(0, payload, payload_len)
 *    16    . payload
 *
 * HELLO payload (first frame on every connection, 12 bytes):
 *     u32 sender id (nonzero), u64 cluster id
 *
 * RAFT payload: a common head, then the fields of the message type, nothing after:
 *     head       u8 type, u32 from, u32 to, u64 term                          17 bytes
 *     PREVOTE, VOTE        u64 last_log_index, u64 last_log_term, u8 transfer  17
 *     PREVOTE_RESP, VOTE_RESP  u8 granted                                        1
 *     APPEND     u64 prev_index, u64 prev_term, u64 commit, u32 n_entries,      28
 *                then n_entries x (u64 term, u64 index, u8 type, u32 n_bytes,  21 + n_bytes
 *                bytes)
 *     APPEND_RESP  u8 reject, u64 index, u64 hint_index, u64 hint_term          25
 *     HEARTBEAT, HEARTBEAT_RESP  u64 commit, u64 round                          16
 *     SNAPSHOT   u64 index, u64 term, config (raft_config_encode: u32 n_servers,
 *                n_servers x (u32 id, u8 role)), u64 n_total, u64 offset,
 *                u32 n_bytes, bytes                                  36 + config + n_bytes
 *     SNAPSHOT_RESP  u64 index, u64 offset, u8 done                             17
 *     TIMEOUT_NOW    (nothing)                                                   0
 *     READ_INDEX, READ_INDEX_RESP  u64 read_id, u64 index, i32 status           20
 *
 * Booleans are one byte, 0 or 1; anything else is refused, so every accepted payload
 * re-encodes to exactly the same bytes (the fuzz target checks this).
 *
 * What decoding checks: the form of the bytes -- lengths, counts, ranges of enums and
 * booleans, the embedded configuration, no trailing bytes. What it leaves to
 * raft_step(): meaning -- entry index continuity, terms, snapshot offsets.
 */
#ifndef CC_NODE_MSGCODEC_H
#define CC_NODE_MSGCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

/* ---- format constants ------------------------------------------------------------- */

#define MSGCODEC_MAGIC                UINT32_C(0x4C434E43) /* "CNCL" read as a little-endian u32 */
#define MSGCODEC_VERSION              1
#define MSGCODEC_HEADER_BYTES         16
#define MSGCODEC_HELLO_BYTES          12
#define MSGCODEC_HEAD_BYTES           17 /* type, from, to, term */
#define MSGCODEC_ENTRY_FIXED_BYTES    21 /* term, index, type, n_bytes */
#define MSGCODEC_APPEND_FIXED_BYTES   (MSGCODEC_HEAD_BYTES + 28)
#define MSGCODEC_SNAPSHOT_FIXED_BYTES (MSGCODEC_HEAD_BYTES + 36) /* without config, chunk */

enum msgcodec_kind {
    MSGCODEC_KIND_HELLO = 1, /* who is talking, and in which cluster */
    MSGCODEC_KIND_RAFT = 2,  /* one struct raft_msg */
};

/* ---- limits ----------------------------------------------------------------------- */

/* One frame's payload. Bounds what a receiver buffers for one peer before it can check
 * the CRC, and so what a garbage length field can make it hold. A full AppendEntries
 * (RAFT_APPEND_ENTRIES_MAX entries of RAFT_ENTRY_BYTES_MAX) is far larger: senders trim
 * the entry list to fit (msgcodec_append_fit), which Raft tolerates -- the follower acks
 * what it got and the leader sends the rest next. */
#define MSGCODEC_PAYLOAD_BYTES_MAX (UINT32_C(2) << 20)
#define MSGCODEC_FRAME_BYTES_MAX   (MSGCODEC_HEADER_BYTES + MSGCODEC_PAYLOAD_BYTES_MAX)

/* One InstallSnapshot chunk. raft_options.snapshot_chunk_bytes must not exceed it. */
#define MSGCODEC_CHUNK_BYTES_MAX (UINT32_C(1) << 20)

_Static_assert(MSGCODEC_APPEND_FIXED_BYTES + MSGCODEC_ENTRY_FIXED_BYTES +
                       (uint64_t)RAFT_ENTRY_BYTES_MAX <=
                   MSGCODEC_PAYLOAD_BYTES_MAX,
               "an AppendEntries with one largest entry must fit in a frame");
_Static_assert(MSGCODEC_SNAPSHOT_FIXED_BYTES + RAFT_CONFIG_BYTES_MAX +
                       (uint64_t)MSGCODEC_CHUNK_BYTES_MAX <=
                   MSGCODEC_PAYLOAD_BYTES_MAX,
               "a largest snapshot chunk must fit in a frame");
#define MSGCODEC__APPEND_FULL_BYTES \
    ((uint64_t)RAFT_APPEND_ENTRIES_MAX * (MSGCODEC_ENTRY_FIXED_BYTES + RAFT_ENTRY_BYTES_MAX))
_Static_assert(MSGCODEC__APPEND_FULL_BYTES > MSGCODEC_PAYLOAD_BYTES_MAX,
               "a full AppendEntries can exceed a frame: senders must trim (append_fit)");

/* ---- errors (negative, in the msgcodec range) -------------------------------------- */

enum {
    MSGCODEC_ETRUNCATED = -1601,   /* input ends inside a field */
    MSGCODEC_ETRAILING = -1602,    /* bytes left after the last field */
    MSGCODEC_ETYPE = -1603,        /* message type not in 1..RAFT_MSG_TYPE_MAX */
    MSGCODEC_ETOOMANY = -1604,     /* n_entries > RAFT_APPEND_ENTRIES_MAX */
    MSGCODEC_ETOOBIG = -1605,      /* entry > RAFT_ENTRY_BYTES_MAX or chunk > CHUNK_BYTES_MAX */
    MSGCODEC_EENTRYTYPE = -1606,   /* entry type not a raft_entry_type */
    MSGCODEC_ECONFIG = -1607,      /* embedded raft_config invalid or > RAFT_SERVERS_MAX */
    MSGCODEC_EBOOL = -1608,        /* boolean byte neither 0 nor 1 */
    MSGCODEC_ENOSPC = -1609,       /* encode: output buffer too small */
    MSGCODEC_EINVAL = -1610,       /* encode: NULL bytes/entries with a nonzero count */
    MSGCODEC_EMAGIC = -1611,       /* frame: magic is not "CNCL" */
    MSGCODEC_EVERSION = -1612,     /* frame: unknown version */
    MSGCODEC_EKIND = -1613,        /* frame: unknown kind */
    MSGCODEC_ERESERVED = -1614,    /* frame: reserved field nonzero */
    MSGCODEC_EFRAMETOOBIG = -1615, /* frame: payload_len > MSGCODEC_PAYLOAD_BYTES_MAX */
    MSGCODEC_ECRC = -1616,         /* frame: payload CRC mismatch */
    MSGCODEC_EHELLO = -1617,       /* HELLO: sender id 0 */
};
const char *msgcodec_strerror(int rv);

/* ---- messages ----------------------------------------------------------------------- */

/* Where a decoded APPEND's entry array lives. Caller-owned; reusable once the decoded
 * message is no longer used. */
struct msgcodec_scratch {
    struct raft_entry entries[RAFT_APPEND_ENTRIES_MAX];
};

/* 0 when m can be encoded: the decoder's form rules, plus no NULL data behind a nonzero
 * count (MSGCODEC_EINVAL). Call it before msgcodec_payload_size() on untrusted input. */
int msgcodec_check(const struct raft_msg *m);

/* Bytes msgcodec_encode() writes for m; m must pass msgcodec_check(). */
uint64_t msgcodec_payload_size(const struct raft_msg *m);

/* Encodes m into buf[0..cap). Returns 0 and sets *n_out, or a MSGCODEC_E* code if m
 * breaks a rule the decoder enforces (so nothing we send is refused for its form) or
 * the buffer is too small. Does not take ownership of anything. */
int msgcodec_encode(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *n_out);

/* Decodes exactly n bytes into *m. On success m's entries point into scratch and the
 * entry and chunk bytes point into buf (NULL when zero length): m is valid while both
 * buf and scratch are; use raft_msg_copy() to keep it. Never reads outside
 * buf[0..n). On failure *m is unspecified. */
int msgcodec_decode(const uint8_t *buf, size_t n, struct raft_msg *m,
                    struct msgcodec_scratch *scratch);

/* For an APPEND: the largest k <= n_entries such that the message with only its first k
 * entries encodes into at most cap bytes (0 if not even the empty one fits). */
uint32_t msgcodec_append_fit(const struct raft_msg *m, uint64_t cap);

/* Deep equality of two messages: every field of the type's union member, entries and
 * bytes. Meant for tests and the fuzz target. */
bool msgcodec_msg_equal(const struct raft_msg *a, const struct raft_msg *b);

/* ---- frames ------------------------------------------------------------------------- */

struct msgcodec_header {
    uint8_t version;
    uint8_t kind; /* enum msgcodec_kind */
    uint32_t payload_len;
    uint32_t crc;
};

struct msgcodec_hello {
    uint32_t id;         /* sender, nonzero */
    uint64_t cluster_id; /* receivers refuse a cluster that is not theirs */
};

/* Writes the 16-byte header for a payload already in place. */
void msgcodec_header_encode(uint8_t *out, uint8_t kind, const uint8_t *payload,
                            uint32_t payload_len);

/* Checks magic, version, kind, reserved and payload_len of the 16 bytes at buf. The CRC
 * can only be checked once the payload is in: msgcodec_payload_check(). */
int msgcodec_header_decode(const uint8_t *buf, struct msgcodec_header *h);
int msgcodec_payload_check(const struct msgcodec_header *h, const uint8_t *payload);

/* Whole frames: header + payload in one buffer. */
int msgcodec_frame_encode_raft(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *n_out);
int msgcodec_frame_encode_hello(const struct msgcodec_hello *h, uint8_t *buf, size_t cap,
                                size_t *n_out);
int msgcodec_hello_decode(const uint8_t *payload, size_t n, struct msgcodec_hello *h);

/* A decoded frame: kind says which member is set. */
struct msgcodec_frame {
    uint8_t kind;
    struct msgcodec_hello hello;
    struct raft_msg msg;
};

/* Decodes exactly one whole frame in buf[0..n): header, CRC, payload, nothing after. The
 * message points into buf and scratch as with msgcodec_decode(). */
int msgcodec_frame_decode(const uint8_t *buf, size_t n, struct msgcodec_frame *f,
                          struct msgcodec_scratch *scratch);

#endif /* CC_NODE_MSGCODEC_H */
