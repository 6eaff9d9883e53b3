/* wal_record.c -- the WAL's pure codec: records, segment headers, names, error strings.
 *
 * Pure: no IO, no allocation, no globals beyond constant tables, so the fuzzer
 * (tests/fuzz/fuzz_wal_record.c) can drive it with arbitrary bytes. The decoder never
 * reads outside buf[0..n), checks the CRC before it looks at the payload, and accepts
 * exactly what the encoder produces: decode(encode(r)) == r and, for every accepted
 * input, encode(decode(b)) == b.
 *
 * Record: [u32 len][u32 crc32c(type + payload)][u8 type][payload], little endian, with
 * len = 1 + payload bytes. A zero len is how unwritten (preallocated) space reads, so it
 * is never valid.
 *
 * Sections: errors | helpers | records | segment headers | names.
 */
#include "storage/wal.h"

#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/le.h"

#define WAL_MAGIC_BYTES       8
#define WAL_HARD_STATE_BYTES  20
#define WAL_U64_PAIR_BYTES    16 /* SNAPSHOT and SEAL payloads */
#define WAL_TRUNCATE_BYTES    8
#define WAL_HEADER_CRC_OFFSET 44

_Static_assert(WAL_HEADER_CRC_OFFSET + 4 == WAL_HEADER_BYTES, "crc closes the header");
static const uint8_t wal__magic[WAL_MAGIC_BYTES] = {'C', 'N', 'C', 'L', 'V', 'W', 'A', 'L'};

/* ---- errors ----------------------------------------------------------------------- */

const char *wal_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case WAL_ECORRUPT:
        return "WAL corrupt: bad data before valid data";
    case WAL_ESYNC:
        return "WAL fdatasync failed (fatal: restart and recover from disk)";
    case WAL_ENOSPC:
        return "no space left for the WAL";
    case WAL_EIO:
        return "WAL input/output error";
    case WAL_ENOMEM:
        return "out of memory";
    case WAL_EINVAL:
        return "invalid WAL argument";
    case WAL_ETOOBIG:
        return "WAL entry or file over its size limit";
    case WAL_EFAILED:
        return "WAL handle failed earlier (fatal)";
    case WAL_ESHORT:
        return "WAL record runs past the end of the data";
    case WAL_ETOOMANY:
        return "too many WAL segments";
    case WAL_ENOENT:
        return "WAL data directory does not exist";
    case WAL_EVERSION:
        return "WAL segment has an unknown format version";
    default:
        return "unknown WAL error";
    }
}

/* ---- helpers ---------------------------------------------------------------------- */

static size_t wal__payload_size(const struct wal_record *rec)
{
    switch (rec->type) {
    case WAL_REC_ENTRY:
        return WAL_ENTRY_FIXED_BYTES + rec->entry.n_bytes;
    case WAL_REC_HARD_STATE:
        return WAL_HARD_STATE_BYTES;
    case WAL_REC_TRUNCATE:
        return WAL_TRUNCATE_BYTES;
    case WAL_REC_SNAPSHOT:
    case WAL_REC_SEAL:
        return WAL_U64_PAIR_BYTES;
    default:
        return 0;
    }
}

/* Field rules shared by encoder and decoder; NULL when rec is acceptable. */
static const char *wal__record_invalid(const struct wal_record *rec)
{
    switch (rec->type) {
    case WAL_REC_ENTRY:
        if (rec->entry.index == 0) {
            return "entry index 0";
        }
        if (rec->entry.term == 0) {
            return "entry term 0";
        }
        if (rec->entry.type == 0) {
            return "entry type 0";
        }
        if (rec->entry.n_bytes > RAFT_ENTRY_BYTES_MAX) {
            return "entry larger than RAFT_ENTRY_BYTES_MAX";
        }
        return NULL;
    case WAL_REC_HARD_STATE:
        return NULL;
    case WAL_REC_TRUNCATE:
        return rec->truncate.from_index == 0 ? "truncation from index 0" : NULL;
    case WAL_REC_SNAPSHOT:
        return rec->snapshot.index == 0 || rec->snapshot.term == 0 ? "snapshot marker at 0" : NULL;
    case WAL_REC_SEAL:
        return NULL;
    default:
        return "unknown record type";
    }
}

/* ---- records ---------------------------------------------------------------------- */

size_t wal_record_size(const struct wal_record *rec)
{
    CC_ASSERT(rec != NULL);
    return WAL_RECORD_HEADER_BYTES + 1 + wal__payload_size(rec);
}

int wal_encode_record(const struct wal_record *rec, uint8_t *buf, size_t cap, size_t *n_out)
{
    CC_ASSERT(rec != NULL);
    CC_ASSERT(buf != NULL);
    CC_ASSERT(n_out != NULL);
    const char *bad = wal__record_invalid(rec);
    if (bad != NULL) {
        return rec->type == WAL_REC_ENTRY && rec->entry.n_bytes > RAFT_ENTRY_BYTES_MAX ? WAL_ETOOBIG
                                                                                       : WAL_EINVAL;
    }
    if (rec->type == WAL_REC_ENTRY && rec->entry.n_bytes > 0 && rec->entry.bytes == NULL) {
        return WAL_EINVAL;
    }
    const size_t payload = wal__payload_size(rec);
    const size_t total = WAL_RECORD_HEADER_BYTES + 1 + payload;
    if (total > cap) {
        return WAL_EINVAL;
    }
    uint8_t *t = buf + WAL_RECORD_HEADER_BYTES; /* type, then payload */
    uint8_t *p = t + 1;
    t[0] = rec->type;
    switch (rec->type) {
    case WAL_REC_ENTRY:
        le_put_u64(p, rec->entry.term);
        le_put_u64(p + 8, rec->entry.index);
        p[16] = rec->entry.type;
        if (rec->entry.n_bytes > 0) {
            memcpy(p + WAL_ENTRY_FIXED_BYTES, rec->entry.bytes, rec->entry.n_bytes);
        }
        break;
    case WAL_REC_HARD_STATE:
        le_put_u64(p, rec->hard_state.term);
        le_put_u32(p + 8, rec->hard_state.vote);
        le_put_u64(p + 12, rec->hard_state.commit);
        break;
    case WAL_REC_TRUNCATE:
        le_put_u64(p, rec->truncate.from_index);
        break;
    case WAL_REC_SNAPSHOT:
        le_put_u64(p, rec->snapshot.index);
        le_put_u64(p + 8, rec->snapshot.term);
        break;
    case WAL_REC_SEAL:
        le_put_u64(p, rec->seal.last_index);
        le_put_u64(p + 8, rec->seal.last_term);
        break;
    default:
        CC_UNREACHABLE();
    }
    le_put_u32(buf, (uint32_t)(1 + payload));
    le_put_u32(buf + 4, crc32c(0, t, 1 + payload));
    *n_out = total;
    return 0;
}

int wal_decode_record_why(const uint8_t *buf, size_t n, struct wal_record *rec, size_t *consumed,
                          const char **why)
{
    CC_ASSERT(buf != NULL || n == 0);
    CC_ASSERT(rec != NULL);
    CC_ASSERT(consumed != NULL);
    const char *dummy;
    if (why == NULL) {
        why = &dummy;
    }
    if (n < 4) {
        *why = "fewer than 4 bytes left for a record length";
        return WAL_ESHORT;
    }
    const uint32_t len = le_get_u32(buf);
    if (len == 0) {
        *why = "zero length (unwritten space)";
        return WAL_ECORRUPT;
    }
    if (len > WAL_RECORD_LEN_MAX) {
        *why = "length field out of range";
        return WAL_ECORRUPT;
    }
    if (n < WAL_RECORD_HEADER_BYTES || n - WAL_RECORD_HEADER_BYTES < len) {
        *why = "record runs past the end of the file (torn write?)";
        return WAL_ESHORT;
    }
    const uint8_t *t = buf + WAL_RECORD_HEADER_BYTES;
    if (crc32c(0, t, len) != le_get_u32(buf + 4)) {
        *why = "checksum mismatch";
        return WAL_ECORRUPT;
    }
    const uint8_t *p = t + 1;
    const size_t payload = len - 1;
    memset(rec, 0, sizeof(*rec));
    rec->type = t[0];
    switch (rec->type) {
    case WAL_REC_ENTRY:
        if (payload < WAL_ENTRY_FIXED_BYTES) {
            *why = "entry record too short";
            return WAL_ECORRUPT;
        }
        rec->entry.term = le_get_u64(p);
        rec->entry.index = le_get_u64(p + 8);
        rec->entry.type = p[16];
        rec->entry.n_bytes = (uint32_t)(payload - WAL_ENTRY_FIXED_BYTES);
        rec->entry.bytes = rec->entry.n_bytes > 0 ? p + WAL_ENTRY_FIXED_BYTES : NULL;
        break;
    case WAL_REC_HARD_STATE:
        if (payload != WAL_HARD_STATE_BYTES) {
            *why = "hard state record of the wrong size";
            return WAL_ECORRUPT;
        }
        rec->hard_state.term = le_get_u64(p);
        rec->hard_state.vote = le_get_u32(p + 8);
        rec->hard_state.commit = le_get_u64(p + 12);
        break;
    case WAL_REC_TRUNCATE:
        if (payload != WAL_TRUNCATE_BYTES) {
            *why = "truncate record of the wrong size";
            return WAL_ECORRUPT;
        }
        rec->truncate.from_index = le_get_u64(p);
        break;
    case WAL_REC_SNAPSHOT:
    case WAL_REC_SEAL:
        if (payload != WAL_U64_PAIR_BYTES) {
            *why = "snapshot or seal record of the wrong size";
            return WAL_ECORRUPT;
        }
        rec->snapshot.index = le_get_u64(p); /* same layout as seal */
        rec->snapshot.term = le_get_u64(p + 8);
        break;
    default:
        *why = "unknown record type";
        return WAL_ECORRUPT;
    }
    const char *bad = wal__record_invalid(rec);
    if (bad != NULL) {
        *why = bad;
        return WAL_ECORRUPT;
    }
    *consumed = WAL_RECORD_HEADER_BYTES + len;
    return 0;
}

int wal_decode_record(const uint8_t *buf, size_t n, struct wal_record *rec, size_t *consumed)
{
    return wal_decode_record_why(buf, n, rec, consumed, NULL);
}

/* ---- segment headers -------------------------------------------------------------- */

/* Layout: magic[8] | u32 version | u32 header bytes | u64 seq | u64 first_index |
 * u64 prev_term | u32 reserved (0) | u32 crc32c of bytes [0, 44). */
void wal_encode_segment_header(const struct wal_segment_header *h, uint8_t *buf)
{
    CC_ASSERT(h != NULL);
    CC_ASSERT(buf != NULL);
    memcpy(buf, wal__magic, WAL_MAGIC_BYTES);
    le_put_u32(buf + 8, h->version);
    le_put_u32(buf + 12, WAL_HEADER_BYTES);
    le_put_u64(buf + 16, h->seq);
    le_put_u64(buf + 24, h->first_index);
    le_put_u64(buf + 32, h->prev_term);
    le_put_u32(buf + 40, 0);
    le_put_u32(buf + WAL_HEADER_CRC_OFFSET, crc32c(0, buf, WAL_HEADER_CRC_OFFSET));
}

int wal_decode_segment_header(const uint8_t *buf, size_t n, struct wal_segment_header *h)
{
    CC_ASSERT(buf != NULL || n == 0);
    CC_ASSERT(h != NULL);
    if (n < WAL_HEADER_BYTES) {
        return WAL_ESHORT;
    }
    if (memcmp(buf, wal__magic, WAL_MAGIC_BYTES) != 0) {
        return WAL_ECORRUPT;
    }
    if (crc32c(0, buf, WAL_HEADER_CRC_OFFSET) != le_get_u32(buf + WAL_HEADER_CRC_OFFSET)) {
        return WAL_ECORRUPT;
    }
    if (le_get_u32(buf + 12) != WAL_HEADER_BYTES || le_get_u32(buf + 40) != 0) {
        return WAL_ECORRUPT;
    }
    h->version = le_get_u32(buf + 8);
    h->seq = le_get_u64(buf + 16);
    h->first_index = le_get_u64(buf + 24);
    h->prev_term = le_get_u64(buf + 32);
    if (h->version != WAL_FORMAT_VERSION) {
        return WAL_EVERSION;
    }
    if (h->seq == 0 || h->first_index == 0) {
        return WAL_ECORRUPT;
    }
    return 0;
}

/* ---- names ------------------------------------------------------------------------ */

bool wal_parse_segment_name(const char *name, uint64_t *seq)
{
    CC_ASSERT(name != NULL);
    if (strlen(name) != WAL_NAME_BYTES - 1 || memcmp(name, "wal-", 4) != 0 ||
        memcmp(name + 20, ".log", 4) != 0) {
        return false;
    }
    uint64_t v = 0;
    for (int i = 4; i < 20; i++) {
        const char c = name[i];
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else {
            return false;
        }
        v = v << 4 | (uint64_t)d;
    }
    if (v == 0) {
        return false;
    }
    if (seq != NULL) {
        *seq = v;
    }
    return true;
}
