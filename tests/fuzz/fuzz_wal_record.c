/* fuzz_wal_record.c -- arbitrary bytes as a WAL segment: an optional segment header, then
 * a stream of records, through the pure decoders in storage/wal_record.c.
 *
 * What must hold for every input:
 *   - the decoders never read outside the input (ASan) and never crash or hang;
 *   - whatever they accept re-encodes to exactly the same bytes (the format has one
 *     encoding per record, so recovery and `wal check` agree with the writer);
 *   - every strict prefix of an accepted record is refused (a torn record is never
 *     taken for a whole one).
 *
 * Input: byte 0 is a mode. Bit 0: recompute the CRC fields first, so the fuzzer gets past
 * the checksum to the payload rules. Bit 1: the data starts with a 48-byte segment
 * header. The rest is the segment.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/le.h"
#include "storage/wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rewrites each plausible record's CRC (and the header's) to match its bytes. */
static void fix_crcs(uint8_t *p, size_t n, size_t off, int with_header)
{
    if (with_header && n >= WAL_HEADER_BYTES) {
        le_put_u32(p + WAL_HEADER_BYTES - 4, crc32c(0, p, WAL_HEADER_BYTES - 4));
    }
    while (off + WAL_RECORD_HEADER_BYTES < n) {
        const uint32_t len = le_get_u32(p + off);
        if (len == 0 || len > n - off - WAL_RECORD_HEADER_BYTES) {
            break;
        }
        le_put_u32(p + off + 4, crc32c(0, p + off + WAL_RECORD_HEADER_BYTES, len));
        off += WAL_RECORD_HEADER_BYTES + len;
    }
}

static void check_record(const uint8_t *p, const struct wal_record *rec, size_t consumed)
{
    CC_ASSERT(consumed > WAL_RECORD_HEADER_BYTES);
    CC_ASSERT(wal_record_size(rec) == consumed);
    uint8_t *again = malloc(consumed);
    CC_ASSERT(again != NULL);
    size_t n = 0;
    CC_ASSERT(wal_encode_record(rec, again, consumed, &n) == 0);
    CC_ASSERT(n == consumed);
    CC_ASSERT(memcmp(again, p, consumed) == 0);
    free(again);
    struct wal_record shorter;
    size_t used;
    CC_ASSERT(wal_decode_record(p, consumed - 1, &shorter, &used) == WAL_ESHORT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const uint8_t mode = data[0];
    const int with_header = (mode & 2) != 0;
    const size_t n = size - 1;
    uint8_t *p = malloc(n > 0 ? n : 1);
    CC_ASSERT(p != NULL);
    memcpy(p, data + 1, n);
    size_t off = 0;
    if (with_header) {
        off = WAL_HEADER_BYTES;
    }
    if (mode & 1) {
        fix_crcs(p, n, off, with_header);
    }
    if (with_header) {
        struct wal_segment_header h;
        if (wal_decode_segment_header(p, n, &h) == 0) {
            uint8_t again[WAL_HEADER_BYTES];
            wal_encode_segment_header(&h, again);
            CC_ASSERT(memcmp(again, p, WAL_HEADER_BYTES) == 0);
        }
    }
    while (off < n) {
        struct wal_record rec;
        size_t consumed = 0;
        const char *why = NULL;
        const int rv = wal_decode_record_why(p + off, n - off, &rec, &consumed, &why);
        if (rv != 0) {
            CC_ASSERT(rv == WAL_ESHORT || rv == WAL_ECORRUPT);
            CC_ASSERT(why != NULL);
            break;
        }
        CC_ASSERT(consumed <= n - off);
        check_record(p + off, &rec, consumed);
        off += consumed;
    }
    free(p);
    return 0;
}
