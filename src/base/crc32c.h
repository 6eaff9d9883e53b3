/* crc32c.h -- CRC-32C (Castagnoli), the checksum on WAL records, snapshots and frames.
 *
 * Chains like zlib's crc32(): start with crc = 0 and feed pieces in order;
 * crc32c(crc32c(0, a, na), b, nb) == crc32c(0, a||b, na + nb).
 * Check value: crc32c(0, "123456789", 9) == 0xE3069283.
 */
#ifndef CC_BASE_CRC32C_H
#define CC_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc over len bytes at buf. buf may be NULL only when len is 0. Thread-safe. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable table version alone (crc32c() uses SSE4.2 where the CPU has it). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif /* CC_BASE_CRC32C_H */
