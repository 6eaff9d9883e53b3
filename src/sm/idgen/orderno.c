/* orderno.c -- order numbers: date, type, permuted sequence, Luhn (see orderno.h).
 *
 * The Feistel tweak is "ord" || yyyymmdd (u32 BE) || type (u8): every (day, type) has
 * its own permutation, so sequence 0 of two days gives unrelated middles too.
 *
 * Sections: dates | Luhn | lifecycle | make | check and open | errors.
 */
#include "sm/idgen/orderno.h"

#include <stdbool.h>
#include <string.h>

#include "base/assert.h"
#include "sm/idgen/feistel.h"

#define MS_PER_DAY INT64_C(86400000)

/* ==== dates ============================================================== */

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 ? 28 + is_leap(y) : dm[m - 1];
}

static int date_check(const struct orderno_date *d)
{
    if (d->year < ORDERNO_YEAR_MIN || d->year > ORDERNO_YEAR_MAX || d->month < 1 || d->month > 12 ||
        d->day < 1 || d->day > days_in_month(d->year, d->month)) {
        return ORDERNO_EDATE;
    }
    return 0;
}

/* Howard Hinnant's civil_from_days: days since 1970-01-01 to (y, m, d). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    uint64_t doe = (uint64_t)(z - era * 146097);
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint64_t mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yy + (*m <= 2);
}

int orderno_date_from_unix_ms(int64_t unix_ms, int32_t utc_offset_min, struct orderno_date *out)
{
    CC_ASSERT(out != NULL);
    if (utc_offset_min < -ORDERNO_UTC_OFFSET_MIN_MAX ||
        utc_offset_min > ORDERNO_UTC_OFFSET_MIN_MAX) {
        return ORDERNO_EDATE;
    }
    /* year 9999 ends at 253402300800000 ms: anything beyond is out of range anyway */
    if (unix_ms < 0 || unix_ms > INT64_C(253402300800000) + MS_PER_DAY) {
        return ORDERNO_EDATE;
    }
    int64_t local = unix_ms + (int64_t)utc_offset_min * 60000;
    int64_t days = local >= 0 ? local / MS_PER_DAY : -((-local + MS_PER_DAY - 1) / MS_PER_DAY);
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < ORDERNO_YEAR_MIN || y > ORDERNO_YEAR_MAX) {
        return ORDERNO_EDATE;
    }
    out->year = (uint16_t)y;
    out->month = (uint8_t)m;
    out->day = (uint8_t)d;
    return 0;
}

/* ==== Luhn =============================================================== */

/* The digit that makes payload (n digits) || digit pass the Luhn check. */
static char luhn_digit(const char *payload, size_t n)
{
    unsigned sum = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned d = (unsigned)(payload[n - 1 - k] - '0');
        if (k % 2 == 0) { /* doubled: it sits in an odd place from the right of the result */
            d *= 2;
            if (d > 9) {
                d -= 9;
            }
        }
        sum += d;
    }
    return (char)('0' + (10 - sum % 10) % 10);
}

/* ==== lifecycle ========================================================== */

static uint64_t pow10u(unsigned e)
{
    uint64_t x = 1;
    for (unsigned i = 0; i < e; i++) {
        x *= 10;
    }
    return x;
}

static bool digits_ok(unsigned d)
{
    return d >= ORDERNO_MIDDLE_DIGITS_MIN && d <= ORDERNO_MIDDLE_DIGITS_MAX;
}

int orderno_init(struct orderno *o, const uint8_t *key, size_t key_len, unsigned middle_digits)
{
    CC_ASSERT(o != NULL);
    memset(o, 0, sizeof *o);
    if (!digits_ok(middle_digits)) {
        return ORDERNO_EDIGITS;
    }
    int rv = idmac_init(&o->mac, key, key_len);
    if (rv != 0) {
        return rv == IDMAC_EKEY ? ORDERNO_EKEY : ORDERNO_ECRYPTO;
    }
    o->middle_digits = middle_digits;
    o->radix_a = pow10u(middle_digits / 2);
    o->radix_b = pow10u(middle_digits - middle_digits / 2);
    return 0;
}

void orderno_fini(struct orderno *o)
{
    if (o != NULL) {
        idmac_fini(&o->mac);
    }
}

/* ==== make =============================================================== */

static void tweak_of(const struct orderno_date *d, unsigned biz, uint8_t tweak[8])
{
    uint32_t ymd = (uint32_t)d->year * 10000u + d->month * 100u + d->day;
    static const uint8_t label[3] = {'o', 'r', 'd'};
    memcpy(tweak, label, sizeof label);
    tweak[3] = (uint8_t)(ymd >> 24);
    tweak[4] = (uint8_t)(ymd >> 16);
    tweak[5] = (uint8_t)(ymd >> 8);
    tweak[6] = (uint8_t)ymd;
    tweak[7] = (uint8_t)biz;
}

/* Writes v as exactly n decimal digits. */
static void put_digits(char *out, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        out[n - 1 - i] = (char)('0' + v % 10);
        v /= 10;
    }
}

int orderno_make(struct orderno *o, const struct orderno_date *date, unsigned biz, uint64_t seq,
                 char *out, size_t cap, size_t *out_len)
{
    CC_ASSERT(o != NULL);
    CC_ASSERT(o->mac.ctx != NULL);
    CC_ASSERT(date != NULL);
    int rv = date_check(date);
    if (rv != 0) {
        return rv;
    }
    if (biz > ORDERNO_BIZ_MAX) {
        return ORDERNO_EBIZ;
    }
    if (seq >= o->radix_a * o->radix_b) {
        return ORDERNO_ESEQ;
    }
    size_t len = ORDERNO_LEN(o->middle_digits);
    if (out == NULL || cap < len + 1) {
        return ORDERNO_ESPACE;
    }
    uint8_t tweak[8];
    tweak_of(date, biz, tweak);
    uint64_t middle;
    rv = feistel_encrypt(&o->mac, tweak, sizeof tweak, o->radix_a, o->radix_b, seq, &middle);
    if (rv != 0) {
        return ORDERNO_ECRYPTO;
    }
    put_digits(out, date->year, 4);
    put_digits(out + 4, date->month, 2);
    put_digits(out + 6, date->day, 2);
    put_digits(out + 8, biz, 2);
    put_digits(out + 10, middle, o->middle_digits);
    out[len - 1] = luhn_digit(out, len - 1);
    out[len] = '\0';
    if (out_len != NULL) {
        *out_len = len;
    }
    return 0;
}

/* ==== check and open ===================================================== */

static uint64_t get_digits(const char *s, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

static int check_parse(const char *s, size_t n, unsigned middle_digits, struct orderno_date *date,
                       unsigned *biz, uint64_t *middle)
{
    if (!digits_ok(middle_digits)) {
        return ORDERNO_EDIGITS;
    }
    if (s == NULL || n != ORDERNO_LEN(middle_digits)) {
        return ORDERNO_ELENGTH;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return ORDERNO_ESYNTAX;
        }
    }
    if (luhn_digit(s, n - 1) != s[n - 1]) {
        return ORDERNO_ECHECK;
    }
    date->year = (uint16_t)get_digits(s, 4);
    date->month = (uint8_t)get_digits(s + 4, 2);
    date->day = (uint8_t)get_digits(s + 6, 2);
    int rv = date_check(date);
    if (rv != 0) {
        return rv;
    }
    *biz = (unsigned)get_digits(s + 8, 2);
    *middle = get_digits(s + 10, middle_digits);
    return 0;
}

int orderno_check(const char *s, size_t n, unsigned middle_digits)
{
    struct orderno_date d;
    unsigned biz;
    uint64_t middle;
    return check_parse(s, n, middle_digits, &d, &biz, &middle);
}

int orderno_open(struct orderno *o, const char *s, size_t n, struct orderno_date *date,
                 unsigned *biz, uint64_t *seq)
{
    CC_ASSERT(o != NULL);
    CC_ASSERT(o->mac.ctx != NULL);
    uint64_t middle;
    int rv = check_parse(s, n, o->middle_digits, date, biz, &middle);
    if (rv != 0) {
        return rv;
    }
    uint8_t tweak[8];
    tweak_of(date, *biz, tweak);
    rv = feistel_decrypt(&o->mac, tweak, sizeof tweak, o->radix_a, o->radix_b, middle, seq);
    return rv != 0 ? ORDERNO_ECRYPTO : 0;
}

/* ==== errors ============================================================= */

const char *orderno_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case ORDERNO_EKEY:
        return "key length outside [16, 64] bytes";
    case ORDERNO_EDIGITS:
        return "middle digits outside [ORDERNO_MIDDLE_DIGITS_MIN, ORDERNO_MIDDLE_DIGITS_MAX]";
    case ORDERNO_EDATE:
        return "not a calendar date in 1970..9999 (or UTC offset beyond 14 h)";
    case ORDERNO_EBIZ:
        return "business type above 99";
    case ORDERNO_ESEQ:
        return "sequence exceeds the day's number space";
    case ORDERNO_ESPACE:
        return "output buffer too small";
    case ORDERNO_ELENGTH:
        return "order number has the wrong length";
    case ORDERNO_ESYNTAX:
        return "order number must be digits only";
    case ORDERNO_ECHECK:
        return "order number check digit does not match";
    case ORDERNO_ECRYPTO:
        return "OpenSSL HMAC failed";
    default:
        return "unknown orderno error";
    }
}
