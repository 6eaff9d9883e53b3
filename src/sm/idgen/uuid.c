/* uuid.c -- RFC 9562 version 4 and 7 UUIDs and their text form (see uuid.h).
 *
 * Invariant of a v7 generator once started: the last UUID had timestamp last_ms and
 * counter `counter`; the next one has (last_ms, counter + 1) or a larger timestamp, so
 * its 16 bytes compare greater (timestamp and counter are the most significant bits
 * after the fixed version nibble, whose position is the same in every v7 UUID).
 *
 * Sections: v4 | v7 | inspection | text | errors.
 */
#include "sm/idgen/uuid.h"

#include <string.h>

#include "base/assert.h"

#define COUNTER_LIMIT (UINT64_C(1) << UUID_V7_COUNTER_BITS)

/* ==== v4 ================================================================= */

static void set_version_variant(struct uuid *u, unsigned version)
{
    u->b[6] = (uint8_t)((u->b[6] & 0x0f) | (version << 4));
    u->b[8] = (uint8_t)((u->b[8] & 0x3f) | 0x80); /* variant 10 (RFC 9562 §4.1) */
}

void uuid_v4(const uint8_t rnd[UUID_V4_RANDOM_BYTES], struct uuid *out)
{
    CC_ASSERT(rnd != NULL);
    CC_ASSERT(out != NULL);
    memcpy(out->b, rnd, UUID_BYTES);
    set_version_variant(out, 4);
}

/* ==== v7 ================================================================= */

void uuid_v7_init(struct uuid_v7 *g)
{
    memset(g, 0, sizeof *g);
}

/* 41 random bits: the counter's top (guard) bit starts at 0. */
static uint64_t counter_seed(const uint8_t rnd[UUID_V7_RANDOM_BYTES])
{
    uint64_t x = 0;
    for (int i = 0; i < 6; i++) {
        x = x << 8 | rnd[i];
    }
    return x & ((UINT64_C(1) << (UUID_V7_COUNTER_BITS - 1)) - 1);
}

int uuid_v7_next(struct uuid_v7 *g, int64_t now_ms, const uint8_t rnd[UUID_V7_RANDOM_BYTES],
                 struct uuid *out)
{
    CC_ASSERT(g != NULL);
    CC_ASSERT(rnd != NULL);
    CC_ASSERT(out != NULL);
    if (now_ms < 0 || now_ms > UUID_V7_MS_MAX) {
        return UUID_ECLOCK;
    }
    int64_t ts;
    uint64_t counter;
    if (!g->started || now_ms > g->last_ms) {
        ts = now_ms;
        counter = counter_seed(rnd);
    } else if (g->counter + 1 < COUNTER_LIMIT) {
        if (now_ms < g->last_ms) {
            g->n_behind++;
        }
        ts = g->last_ms;
        counter = g->counter + 1;
    } else {
        if (g->last_ms >= UUID_V7_MS_MAX) {
            return UUID_ECLOCK;
        }
        g->n_ahead++;
        ts = g->last_ms + 1;
        counter = counter_seed(rnd);
    }
    CC_ASSERT(counter < COUNTER_LIMIT);
    uint64_t t = (uint64_t)ts;
    for (int i = 0; i < 6; i++) {
        out->b[i] = (uint8_t)(t >> (40 - 8 * i));
    }
    /* rand_a = counter bits 41..30, rand_b = counter bits 29..0, then 32 random bits */
    uint64_t hi12 = counter >> 30;
    uint64_t lo30 = counter & ((UINT64_C(1) << 30) - 1);
    out->b[6] = (uint8_t)(0x70 | (hi12 >> 8));
    out->b[7] = (uint8_t)hi12;
    out->b[8] = (uint8_t)(0x80 | (lo30 >> 24));
    out->b[9] = (uint8_t)(lo30 >> 16);
    out->b[10] = (uint8_t)(lo30 >> 8);
    out->b[11] = (uint8_t)lo30;
    memcpy(out->b + 12, rnd + 6, 4);
    g->started = true;
    g->last_ms = ts;
    g->counter = counter;
    return 0;
}

/* ==== inspection ========================================================= */

unsigned uuid_version(const struct uuid *u)
{
    return u->b[6] >> 4;
}

int uuid_v7_unix_ms(const struct uuid *u, int64_t *unix_ms)
{
    if (uuid_version(u) != 7 || (u->b[8] & 0xc0) != 0x80) {
        return UUID_EVERSION;
    }
    uint64_t t = 0;
    for (int i = 0; i < 6; i++) {
        t = t << 8 | u->b[i];
    }
    *unix_ms = (int64_t)t;
    return 0;
}

int uuid_cmp(const struct uuid *a, const struct uuid *b)
{
    return memcmp(a->b, b->b, UUID_BYTES);
}

/* ==== text =============================================================== */

static const char HEX[] = "0123456789abcdef";

static bool is_hyphen_at(size_t i)
{
    return i == 8 || i == 13 || i == 18 || i == 23;
}

void uuid_format(const struct uuid *u, char out[UUID_TEXT_LEN + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < UUID_BYTES; i++) {
        if (is_hyphen_at(o)) {
            out[o++] = '-';
        }
        out[o++] = HEX[u->b[i] >> 4];
        out[o++] = HEX[u->b[i] & 0x0f];
    }
    CC_ASSERT(o == UUID_TEXT_LEN);
    out[o] = '\0';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int uuid_parse(const char *s, size_t n, struct uuid *out)
{
    CC_ASSERT(out != NULL);
    if (s == NULL || n != UUID_TEXT_LEN) {
        return UUID_ELENGTH;
    }
    struct uuid u;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (is_hyphen_at(i)) {
            if (s[i] != '-') {
                return UUID_ESYNTAX;
            }
            i++;
            continue;
        }
        int hi = hex_val(s[i]), lo = hex_val(s[i + 1]);
        if (hi < 0 || lo < 0) {
            return UUID_ESYNTAX;
        }
        u.b[k++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    CC_ASSERT(k == UUID_BYTES);
    *out = u;
    return 0;
}

/* ==== errors ============================================================= */

const char *uuid_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case UUID_ECLOCK:
        return "clock outside the 48-bit millisecond range of UUIDv7";
    case UUID_ELENGTH:
        return "UUID text must be 36 characters";
    case UUID_ESYNTAX:
        return "UUID text must be 8-4-4-4-12 hex digits";
    case UUID_EVERSION:
        return "not a version 7 UUID";
    default:
        return "unknown uuid error";
    }
}
