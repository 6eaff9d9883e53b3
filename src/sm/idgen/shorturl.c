/* shorturl.c -- base62 codes through a per-length keyed permutation (see shorturl.h).
 *
 * The Feistel tweak is "surl" || n (1 byte); the radices are 62^floor(n/2) and
 * 62^ceil(n/2). Digits are written most significant first, zero ('0') padded to n.
 *
 * Sections: tiers | lifecycle | encode and decode | errors.
 */
#include "sm/idgen/shorturl.h"

#include <string.h>

#include "base/assert.h"
#include "sm/idgen/feistel.h"

static const char ALPHABET[] = SHORTURL_ALPHABET;
_Static_assert(sizeof(ALPHABET) == 63, "62 characters");

/* ==== tiers ============================================================== */

static uint64_t pow62(unsigned e)
{
    uint64_t x = 1;
    for (unsigned i = 0; i < e; i++) {
        x *= 62;
    }
    return x;
}

/* S_n: the first id whose code has length n. */
static uint64_t tier_start(unsigned len_min, unsigned n)
{
    uint64_t s = 0;
    for (unsigned k = len_min; k < n; k++) {
        s += pow62(k);
    }
    return s;
}

uint64_t shorturl_id_max(const struct shorturl *s)
{
    return tier_start(s->len_min, SHORTURL_LEN_MAX) + pow62(SHORTURL_LEN_MAX) - 1;
}

static void tweak_of(unsigned n, uint8_t tweak[5])
{
    static const uint8_t label[4] = {'s', 'u', 'r', 'l'};
    memcpy(tweak, label, sizeof label);
    tweak[4] = (uint8_t)n;
}

/* ==== lifecycle ========================================================== */

int shorturl_init(struct shorturl *s, const uint8_t *key, size_t key_len, unsigned len_min)
{
    CC_ASSERT(s != NULL);
    memset(s, 0, sizeof *s);
    if (len_min < SHORTURL_LEN_MIN_MIN || len_min > SHORTURL_LEN_MAX) {
        return SHORTURL_ECONFIG;
    }
    int rv = idmac_init(&s->mac, key, key_len);
    if (rv != 0) {
        return rv == IDMAC_EKEY ? SHORTURL_EKEY : SHORTURL_ECRYPTO;
    }
    s->len_min = len_min;
    return 0;
}

void shorturl_fini(struct shorturl *s)
{
    if (s != NULL) {
        idmac_fini(&s->mac);
    }
}

/* ==== encode and decode ================================================== */

int shorturl_encode(struct shorturl *s, uint64_t id, char out[SHORTURL_LEN_MAX + 1], size_t *n)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(s->mac.ctx != NULL);
    CC_ASSERT(out != NULL);
    if (id > shorturl_id_max(s)) {
        return SHORTURL_ERANGE;
    }
    unsigned len = s->len_min;
    uint64_t start = 0;
    while (id - start >= pow62(len)) { /* at most SHORTURL_LEN_MAX - len_min steps */
        start += pow62(len);
        len++;
        CC_ASSERT(len <= SHORTURL_LEN_MAX);
    }
    uint8_t tweak[5];
    tweak_of(len, tweak);
    uint64_t v;
    if (feistel_encrypt(&s->mac, tweak, sizeof tweak, pow62(len / 2), pow62(len - len / 2),
                        id - start, &v) != 0) {
        return SHORTURL_ECRYPTO;
    }
    for (unsigned i = 0; i < len; i++) {
        out[len - 1 - i] = ALPHABET[v % 62];
        v /= 62;
    }
    CC_ASSERT(v == 0);
    out[len] = '\0';
    if (n != NULL) {
        *n = len;
    }
    return 0;
}

static int digit62(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'Z') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 36;
    }
    return -1;
}

int shorturl_decode(struct shorturl *s, const char *code, size_t n, uint64_t *id)
{
    CC_ASSERT(s != NULL);
    CC_ASSERT(s->mac.ctx != NULL);
    CC_ASSERT(id != NULL);
    if (code == NULL || n < s->len_min || n > SHORTURL_LEN_MAX) {
        return SHORTURL_ELENGTH;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = digit62(code[i]);
        if (d < 0) {
            return SHORTURL_ECHAR;
        }
        v = v * 62 + (uint64_t)d; /* < 62^10: no overflow */
    }
    unsigned len = (unsigned)n;
    uint8_t tweak[5];
    tweak_of(len, tweak);
    uint64_t x;
    if (feistel_decrypt(&s->mac, tweak, sizeof tweak, pow62(len / 2), pow62(len - len / 2), v,
                        &x) != 0) {
        return SHORTURL_ECRYPTO;
    }
    *id = tier_start(s->len_min, len) + x;
    return 0;
}

/* ==== errors ============================================================= */

const char *shorturl_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case SHORTURL_EKEY:
        return "key length outside [16, 64] bytes";
    case SHORTURL_ECONFIG:
        return "minimum code length outside [4, 10]";
    case SHORTURL_ERANGE:
        return "id beyond the largest encodable id";
    case SHORTURL_ELENGTH:
        return "code length outside the configured range";
    case SHORTURL_ECHAR:
        return "code character outside 0-9A-Za-z";
    case SHORTURL_ECRYPTO:
        return "OpenSSL HMAC failed";
    default:
        return "unknown shorturl error";
    }
}
