/* crc32c.c -- software CRC-32C, slice-by-8.
 *
 * Polynomial 0x1EDC6F41 (reflected 0x82F63B78), as in iSCSI (RFC 3720), ext4 and
 * most storage engines. Slice-by-8 handles 8 bytes per step with 8 lookup tables
 * (8 KiB); table k maps a byte to its CRC contribution k bytes further on.
 *
 * Invariants: the tables are built exactly once, on first use, under pthread_once, so
 * concurrent first calls are safe and later calls pay nothing. Input words are read
 * byte by byte, so the result does not depend on host endianness or alignment.
 *
 * Sections: tables | update.
 */
#include "base/crc32c.h"

#include <pthread.h>

#include "base/assert.h"

#define CRC32C_POLY_REFLECTED UINT32_C(0x82F63B78)
#define CRC32C_SLICES         8 /* bytes consumed per step of the main loop */

/* ---- tables ----------------------------------------------------------------------- */

static uint32_t crc32c__table[CRC32C_SLICES][256];
static pthread_once_t crc32c__once = PTHREAD_ONCE_INIT;

static void crc32c__init_tables(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++) {
            c = (c >> 1) ^ ((c & 1) ? CRC32C_POLY_REFLECTED : 0);
        }
        crc32c__table[0][b] = c;
    }
    for (int k = 1; k < CRC32C_SLICES; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            const uint32_t prev = crc32c__table[k - 1][b];
            crc32c__table[k][b] = (prev >> 8) ^ crc32c__table[0][prev & 0xff];
        }
    }
}

/* ---- update ----------------------------------------------------------------------- */

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    CC_ASSERT(buf != NULL || len == 0);
    const int rv = pthread_once(&crc32c__once, crc32c__init_tables);
    CC_ASSERT(rv == 0);

    uint32_t(*t)[256] = crc32c__table;
    const unsigned char *p = buf;
    uint32_t c = ~crc;

    while (len >= CRC32C_SLICES) {
        const uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                 (uint32_t)p[3] << 24);
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
            t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
        p += CRC32C_SLICES;
        len -= CRC32C_SLICES;
    }
    while (len > 0) {
        c = (c >> 8) ^ t[0][(c ^ *p) & 0xff];
        p++;
        len--;
    }
    return ~c;
}
