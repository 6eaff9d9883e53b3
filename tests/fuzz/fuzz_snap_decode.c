/* fuzz_snap_decode.c -- arbitrary bytes as a snapshot file image, through snap_decode().
 *
 * What must hold for every input:
 *   - the decoder never reads outside the input (ASan) and never crashes;
 *   - a refusal says why; an accepted image has consistent lengths, and re-encoding its
 *     header (snap_encode_header) and trailer gives back exactly the input bytes, so
 *     snap_load and snap_save agree on one encoding.
 *
 * Input: byte 0 is a mode; bit 0 recomputes the header CRC and the trailer CRC first, so
 * the fuzzer reaches the length and configuration rules. The rest is the file.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/le.h"
#include "storage/snap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fix_crcs(uint8_t *p, size_t n)
{
    if (n < SNAP_HEADER_FIXED_BYTES + 4) {
        return;
    }
    const uint32_t n_config = le_get_u32(p + 12);
    if (n_config > RAFT_CONFIG_BYTES_MAX || n < SNAP_HEADER_FIXED_BYTES + n_config + 8) {
        return;
    }
    const size_t header = SNAP_HEADER_FIXED_BYTES + n_config;
    le_put_u32(p + header, crc32c(0, p, header));
    le_put_u32(p + n - 4, crc32c(0, p, n - 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const size_t n = size - 1;
    uint8_t *p = malloc(n > 0 ? n : 1);
    CC_ASSERT(p != NULL);
    memcpy(p, data + 1, n);
    if (data[0] & 1) {
        fix_crcs(p, n);
    }
    struct snap_view v;
    const char *why = NULL;
    const int rv = snap_decode(p, n, &v, &why);
    if (rv != 0) {
        CC_ASSERT(rv == SNAP_ECORRUPT || rv == SNAP_EVERSION);
        CC_ASSERT(why != NULL);
    } else {
        CC_ASSERT(v.index != 0 && v.term != 0);
        CC_ASSERT(v.n_bytes <= n);
        struct raft_snapshot s;
        memset(&s, 0, sizeof(s));
        s.index = v.index;
        s.term = v.term;
        s.config = v.config;
        s.n_bytes = v.n_bytes;
        s.bytes = (uint8_t *)p; /* only read by the encoder; any non-NULL pointer */
        uint8_t header[SNAP_HEADER_BYTES_MAX];
        size_t n_header = 0;
        CC_ASSERT(snap_encode_header(&s, header, sizeof(header), &n_header) == 0);
        CC_ASSERT(n_header + v.n_bytes + SNAP_TRAILER_BYTES == n);
        CC_ASSERT(memcmp(header, p, n_header) == 0);
        CC_ASSERT(v.n_bytes == 0 || v.bytes == p + n_header);
        CC_ASSERT(le_get_u32(p + n - 4) == crc32c(0, p, n - 4));
    }
    free(p);
    return 0;
}
