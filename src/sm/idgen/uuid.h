/* uuid.h -- RFC 9562 UUIDs: version 4 (random) and version 7 (time-ordered), and the
 * 36-character text form.
 *
 * Randomness is an input: the caller passes bytes from a CSPRNG (the env table's
 * random source, OpenSSL RAND_bytes in production). Nothing here draws or reads a
 * clock, so the simulator replays UUIDs from its seed.
 *
 * Version 7 layout (RFC 9562 §5.7): 48-bit Unix ms | ver 0111 | rand_a 12 | var 10 |
 * rand_b 62. Monotonicity within a generator uses the RFC's Method 1 (§6.2, "fixed
 * bit-length dedicated counter") with a 42-bit counter in rand_a and the top 30 bits of
 * rand_b; the last 32 bits of rand_b are fresh random bytes in every UUID:
 *   - a new millisecond reseeds the counter with 41 random bits: its top bit is 0 (the
 *     RFC's rollover guard), so at least 2^41 UUIDs fit in any millisecond.
 *   - the same millisecond, or a clock that went backwards, keeps the previous
 *     timestamp and increments the counter (§6.2: a rollback must not break order);
 *   - a counter that would overflow moves the timestamp one ms ahead of the clock and
 *     reseeds (§6.2 allows running ahead; it cannot happen below 2^41 per ms).
 * So UUIDs from one generator strictly increase as 16-byte strings (and as text).
 *
 * Errors: UUID_E* in -2555..-2559; uuid_strerror() names them.
 */
#ifndef CONCLAVE_SM_IDGEN_UUID_H
#define CONCLAVE_SM_IDGEN_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_BYTES           16u
#define UUID_TEXT_LEN        36u /* 8-4-4-4-12 hex digits */
#define UUID_V4_RANDOM_BYTES 16u /* 122 of the 128 bits are used */
#define UUID_V7_RANDOM_BYTES 10u /* 6 seed the counter (41 bits), 4 fill rand_b's tail */
#define UUID_V7_MS_MAX       ((INT64_C(1) << 48) - 1) /* year 10889 */
#define UUID_V7_COUNTER_BITS 42u

enum {
    UUID_ECLOCK = -2555,   /* now_ms outside [0, UUID_V7_MS_MAX] */
    UUID_ELENGTH = -2556,  /* text is not 36 characters */
    UUID_ESYNTAX = -2557,  /* text has a non-hex digit or a misplaced hyphen */
    UUID_EVERSION = -2558, /* not a version 7 UUID (uuid_v7_unix_ms) */
};
const char *uuid_strerror(int rv);

struct uuid {
    uint8_t b[UUID_BYTES]; /* network (big-endian) order */
};

/* A version 4 UUID from 16 random bytes (6 bits are overwritten by version/variant). */
void uuid_v4(const uint8_t rnd[UUID_V4_RANDOM_BYTES], struct uuid *out);

/* Version 7 generator state; caller-owned, zero-initialised by uuid_v7_init. */
struct uuid_v7 {
    int64_t last_ms;  /* timestamp of the last UUID (may run ahead of the clock) */
    uint64_t counter; /* 42-bit counter of the last UUID */
    bool started;
    uint64_t n_behind; /* UUIDs issued while the clock was behind last_ms */
    uint64_t n_ahead;  /* counter overflows that moved last_ms ahead */
};

void uuid_v7_init(struct uuid_v7 *g);
/* The next UUID, greater than every earlier one from g. 0 or UUID_ECLOCK. */
int uuid_v7_next(struct uuid_v7 *g, int64_t now_ms, const uint8_t rnd[UUID_V7_RANDOM_BYTES],
                 struct uuid *out);

/* 4 bits at byte 6; 0 for the nil UUID. */
unsigned uuid_version(const struct uuid *u);
/* The timestamp of a version 7 UUID, or UUID_EVERSION. */
int uuid_v7_unix_ms(const struct uuid *u, int64_t *unix_ms);
/* memcmp order, which is also the text order and v7's time order. */
int uuid_cmp(const struct uuid *a, const struct uuid *b);

/* Writes 36 lowercase characters and a NUL into out. */
void uuid_format(const struct uuid *u, char out[UUID_TEXT_LEN + 1]);
/* Parses the 8-4-4-4-12 form, hex digits in either case (RFC 9562 §4: case-insensitive
 * on input). No braces, no "urn:uuid:". 0, UUID_ELENGTH or UUID_ESYNTAX. */
int uuid_parse(const char *s, size_t n, struct uuid *out);

#endif /* CONCLAVE_SM_IDGEN_UUID_H */
