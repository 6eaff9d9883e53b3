/* le.h -- little-endian loads and stores for on-disk and on-wire formats.
 *
 * Byte by byte, so results do not depend on host endianness or alignment; compilers
 * turn each into a single load or store on little-endian hosts. Header-only.
 */
#ifndef CC_BASE_LE_H
#define CC_BASE_LE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline void le_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void le_put_u64(uint8_t *p, uint64_t v)
{
    le_put_u32(p, (uint32_t)v);
    le_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t le_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le_get_u64(const uint8_t *p)
{
    return (uint64_t)le_get_u32(p) | (uint64_t)le_get_u32(p + 4) << 32;
}

/* A bounds-checked little-endian cursor over a decoded buffer (snapshots, commands). */
struct le_reader {
    const uint8_t *p;
    size_t n;
    size_t off;
};

/* Reads an n_bytes (1..8) little-endian integer; false, and nothing consumed, when
 * fewer than n_bytes remain. */
static inline bool le_read(struct le_reader *r, unsigned n_bytes, uint64_t *v)
{
    if (r->n - r->off < n_bytes)
        return false;
    uint64_t x = 0;
    for (unsigned i = 0; i < n_bytes; i++)
        x |= (uint64_t)r->p[r->off + i] << (8 * i);
    r->off += n_bytes;
    *v = x;
    return true;
}

#endif /* CC_BASE_LE_H */
