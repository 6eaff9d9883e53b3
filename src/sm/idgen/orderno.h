/* orderno.h -- readable order numbers that do not reveal the order volume.
 *
 *   yyyyMMdd | TT | MMMMMMMM | C         e.g. 2024010207 48213095 3 -> "2024010207482130953"
 *   date       business type (00-99)   middle (D digits, default 8)   Luhn check digit
 *
 * The date and the type are public on purpose (customer service reads them). The
 * middle is the day's sequence number (0, 1, 2, ... from a segment tag per day and
 * type) passed through a keyed permutation of [0, 10^D) -- the mixed-radix Feistel
 * network of feistel.h, tweaked with the date and the type -- so consecutive orders get
 * unrelated middles and a competitor who sees a few numbers learns neither neighbours
 * nor how many orders were placed. Being a permutation, distinct sequence numbers give
 * distinct middles: two orders of one day and type never share a number. The Luhn
 * digit catches every single mistyped digit and most swaps of neighbours (all but
 * 09/90) before any lookup. No personal data goes in.
 *
 * With the default D = 8 a number has 19 digits and fits a signed 64-bit integer
 * (until the year 9223), allowing 10^8 orders per day per type.
 *
 * Keys: 16..64 bytes (idmac.h), one per deployment; rotating it changes the mapping
 * for future numbers only (numbers carry no key id: keep the old key to open old ones).
 *
 * Ownership: struct orderno is caller-owned and holds an OpenSSL context released by
 * orderno_fini(). One thread at a time per struct. Errors: ORDERNO_E* in -2570..-2579.
 */
#ifndef CONCLAVE_SM_IDGEN_ORDERNO_H
#define CONCLAVE_SM_IDGEN_ORDERNO_H

#include <stddef.h>
#include <stdint.h>

#include "sm/idgen/idmac.h"

#define ORDERNO_MIDDLE_DIGITS_DEFAULT 8u
/* 10^6 is the smallest domain NIST SP 800-38G rev 1 allows a format-preserving cipher. */
#define ORDERNO_MIDDLE_DIGITS_MIN  6u  /* ORDERNO_EDIGITS */
#define ORDERNO_MIDDLE_DIGITS_MAX  12u /* ORDERNO_EDIGITS: 23 digits is the readable limit */
#define ORDERNO_BIZ_MAX            99u /* ORDERNO_EBIZ: two digits */
#define ORDERNO_YEAR_MIN           1970
#define ORDERNO_YEAR_MAX           9999      /* ORDERNO_EDATE: four digits */
#define ORDERNO_UTC_OFFSET_MIN_MAX (14 * 60) /* ORDERNO_EDATE: UTC-14:00..UTC+14:00 */
#define ORDERNO_LEN(d)             (8u + 2u + (d) + 1u)
#define ORDERNO_LEN_MAX            ORDERNO_LEN(ORDERNO_MIDDLE_DIGITS_MAX)

enum {
    ORDERNO_EKEY = -2570,    /* key length outside [IDMAC_KEY_BYTES_MIN, IDMAC_KEY_BYTES_MAX] */
    ORDERNO_EDIGITS = -2571, /* middle digits outside [MIN, MAX] */
    ORDERNO_EDATE = -2572,   /* not a calendar date in [1970, 9999], or bad UTC offset */
    ORDERNO_EBIZ = -2573,    /* business type above ORDERNO_BIZ_MAX */
    ORDERNO_ESEQ = -2574,    /* sequence >= 10^digits: the day's numbers are used up */
    ORDERNO_ESPACE = -2575,  /* output buffer too small */
    ORDERNO_ELENGTH = -2576, /* text is not ORDERNO_LEN(digits) characters */
    ORDERNO_ESYNTAX = -2577, /* text has a non-digit */
    ORDERNO_ECHECK = -2578,  /* Luhn check digit does not match (a typo) */
    ORDERNO_ECRYPTO = -2579, /* OpenSSL failed */
};
const char *orderno_strerror(int rv);

struct orderno_date {
    uint16_t year;
    uint8_t month; /* 1..12 */
    uint8_t day;   /* 1..31 */
};

/* The calendar date at unix_ms in the zone UTC+utc_offset_min (proleptic Gregorian,
 * computed, no libc time zone state). 0 or ORDERNO_EDATE. */
int orderno_date_from_unix_ms(int64_t unix_ms, int32_t utc_offset_min, struct orderno_date *out);

struct orderno {
    struct idmac mac;
    unsigned middle_digits;
    uint64_t radix_a; /* 10^floor(D/2) */
    uint64_t radix_b; /* 10^ceil(D/2) */
};

/* 0, ORDERNO_EKEY, ORDERNO_EDIGITS or ORDERNO_ECRYPTO. The key is copied. */
int orderno_init(struct orderno *o, const uint8_t *key, size_t key_len, unsigned middle_digits);
void orderno_fini(struct orderno *o);

/* Writes the number for the seq-th order (0-based) of that date and type, NUL
 * terminated, into out (cap >= ORDERNO_LEN(digits) + 1). */
int orderno_make(struct orderno *o, const struct orderno_date *date, unsigned biz, uint64_t seq,
                 char *out, size_t cap, size_t *out_len);

/* Keyless validation, as a shop front-end or a support tool does before a lookup:
 * length, digits, Luhn, calendar date. 0, ORDERNO_ELENGTH, ORDERNO_ESYNTAX,
 * ORDERNO_ECHECK, ORDERNO_EDATE or ORDERNO_EDIGITS. */
int orderno_check(const char *s, size_t n, unsigned middle_digits);

/* With the key: validates like orderno_check and recovers date, type and sequence. */
int orderno_open(struct orderno *o, const char *s, size_t n, struct orderno_date *date,
                 unsigned *biz, uint64_t *seq);

#endif /* CONCLAVE_SM_IDGEN_ORDERNO_H */
