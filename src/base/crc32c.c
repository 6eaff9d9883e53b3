/* crc32c.c -- CRC-32C: the SSE4.2 crc32 instruction where the CPU has it, else
 * software slice-by-8.
 *
 * The hardware path (x86-64 only) computes the same polynomial 8 bytes per
 * instruction, about 10x the table version (WAL records of 64 KiB entries spent most
 * of their non-fsync time here, docs/bench.md). It is chosen once, at the first call,
 * from cpuid (__builtin_cpu_supports), so one binary runs on any x86-64; CRC32C_SOFT=1
 * in the environment forces the table path; crc32c_sw() is the table path alone, which
 * the tests compare with whatever crc32c() picked.
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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"

#define CRC32C_POLY_REFLECTED UINT32_C(0x82F63B78)
#define CRC32C_SLICES         8 /* bytes consumed per step of the main loop */

/* ---- tables ----------------------------------------------------------------------- */

static uint32_t crc32c__table[CRC32C_SLICES][256];
static pthread_once_t crc32c__once = PTHREAD_ONCE_INIT;

static bool crc32c__hw; /* set once by crc32c__init_tables */

static void crc32c__init_tables(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const char *soft = getenv("CRC32C_SOFT");
    crc32c__hw = __builtin_cpu_supports("sse4.2") && !(soft && strcmp(soft, "1") == 0);
#endif
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

/* ---- hardware ---------------------------------------------------------------------- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t crc32c__sse42(uint32_t crc, const unsigned char *p,
                                                                 size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8); /* x86 is little-endian: the same byte order as the tables */
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p++;
        len--;
    }
    return ~c32;
}
#endif

/* ---- update ----------------------------------------------------------------------- */

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    CC_ASSERT(buf != NULL || len == 0);
    const int rv = pthread_once(&crc32c__once, crc32c__init_tables);
    CC_ASSERT(rv == 0);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc32c__hw)
        return crc32c__sse42(crc, buf, len);
#endif
    return crc32c_sw(crc, buf, len);
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
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
