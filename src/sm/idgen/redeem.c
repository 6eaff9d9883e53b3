/* redeem.c -- redeem codes: campaign | masked serial | check (see redeem.h).
 *
 * The 80 code bits are held big-endian in 10 bytes; character i is bits
 * [5i, 5i + 5) from the top. HMAC inputs are fixed-width big-endian fields after a
 * label, so no two inputs of different meaning share bytes.
 *
 * Sections: bits | lifecycle | make | verify | errors.
 */
#include "sm/idgen/redeem.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/assert.h"

#define CODE_BYTES 10u
#define CHECK_MASK ((UINT64_C(1) << REDEEM_CHECK_BITS) - 1)

static const char ALPHABET[] = REDEEM_ALPHABET;
_Static_assert(sizeof(ALPHABET) == 33, "32 letters");

/* ==== bits =============================================================== */

static void pack(uint32_t campaign, uint32_t masked, uint64_t check, uint8_t out[CODE_BYTES])
{
    /* campaign 20 | masked 24 | check 36 = 80 bits: the top 64 in hi, the low 16 in lo */
    uint64_t hi = (uint64_t)campaign << 44 | (uint64_t)masked << 20 | check >> 16;
    uint16_t lo = (uint16_t)(check & 0xffff);
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(hi >> (56 - 8 * i));
    }
    out[8] = (uint8_t)(lo >> 8);
    out[9] = (uint8_t)lo;
}

static void unpack(const uint8_t in[CODE_BYTES], uint32_t *campaign, uint32_t *masked,
                   uint64_t *check)
{
    uint64_t hi = 0;
    for (int i = 0; i < 8; i++) {
        hi = hi << 8 | in[i];
    }
    uint64_t lo = (uint64_t)in[8] << 8 | in[9];
    *campaign = (uint32_t)(hi >> 44);
    *masked = (uint32_t)(hi >> 20) & REDEEM_SERIAL_MAX;
    *check = (hi & 0xfffff) << 16 | lo;
}

static unsigned get5(const uint8_t *b, unsigned i)
{
    unsigned bit = 5 * i, byte = bit / 8, shift = bit % 8;
    unsigned w = (unsigned)b[byte] << 8 | (byte + 1 < CODE_BYTES ? b[byte + 1] : 0);
    return (w >> (11 - shift)) & 0x1f;
}

static void put5(uint8_t *b, unsigned i, unsigned v)
{
    unsigned bit = 5 * i, byte = bit / 8, shift = bit % 8;
    unsigned w = v << (11 - shift);
    b[byte] |= (uint8_t)(w >> 8);
    if (byte + 1 < CODE_BYTES) {
        b[byte + 1] |= (uint8_t)w;
    }
}

static int letter_value(char c)
{
    if (c >= 'a' && c <= 'z') {
        c = (char)(c - 'a' + 'A');
    }
    const char *p = c != '\0' ? strchr(ALPHABET, c) : NULL;
    return p != NULL ? (int)(p - ALPHABET) : -1;
}

/* Reads typed input into 10 code bytes: separators skipped, case folded. */
static int read_code(const char *input, size_t n, uint8_t out[CODE_BYTES])
{
    if (input == NULL || n > REDEEM_INPUT_CHARS_MAX) {
        return REDEEM_ELENGTH;
    }
    memset(out, 0, CODE_BYTES);
    unsigned k = 0;
    for (size_t i = 0; i < n; i++) {
        if (input[i] == '-' || input[i] == ' ') {
            continue;
        }
        int v = letter_value(input[i]);
        if (v < 0) {
            return REDEEM_ECHAR;
        }
        if (k == REDEEM_CODE_CHARS) {
            return REDEEM_ELENGTH;
        }
        put5(out, k++, (unsigned)v);
    }
    return k == REDEEM_CODE_CHARS ? 0 : REDEEM_ELENGTH;
}

/* ==== lifecycle ========================================================== */

int redeem_init(struct redeem *r, const uint8_t *key, size_t key_len, uint32_t campaign)
{
    CC_ASSERT(r != NULL);
    memset(r, 0, sizeof *r);
    if (campaign > REDEEM_CAMPAIGN_MAX) {
        return REDEEM_ECAMPAIGN;
    }
    int rv = idmac_init(&r->mac, key, key_len);
    if (rv != 0) {
        return rv == IDMAC_EKEY ? REDEEM_EKEY : REDEEM_ECRYPTO;
    }
    r->campaign = campaign;
    return 0;
}

void redeem_fini(struct redeem *r)
{
    if (r != NULL) {
        idmac_fini(&r->mac);
    }
}

/* ==== make =============================================================== */

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int check_of(struct redeem *r, uint32_t serial, uint64_t *check)
{
    uint8_t in[5 + 8], mac[IDMAC_OUT_BYTES];
    memcpy(in, "rdm-t", 5);
    be32(in + 5, r->campaign);
    be32(in + 9, serial);
    if (idmac_compute(&r->mac, in, sizeof in, NULL, 0, mac) != 0) {
        return REDEEM_ECRYPTO;
    }
    uint64_t v = 0;
    for (int i = 0; i < 5; i++) {
        v = v << 8 | mac[i];
    }
    *check = v >> 4; /* the top 36 of 40 bits */
    return 0;
}

static int mask_of(struct redeem *r, uint64_t check, uint32_t *mask)
{
    uint8_t in[5 + 4 + 5], mac[IDMAC_OUT_BYTES];
    memcpy(in, "rdm-m", 5);
    be32(in + 5, r->campaign);
    for (int i = 0; i < 5; i++) {
        in[9 + i] = (uint8_t)(check >> (32 - 8 * i));
    }
    if (idmac_compute(&r->mac, in, sizeof in, NULL, 0, mac) != 0) {
        return REDEEM_ECRYPTO;
    }
    *mask = ((uint32_t)mac[0] << 16 | (uint32_t)mac[1] << 8 | mac[2]) & REDEEM_SERIAL_MAX;
    return 0;
}

int redeem_make(struct redeem *r, uint32_t serial, char out[REDEEM_CODE_CHARS + 1])
{
    CC_ASSERT(r != NULL);
    CC_ASSERT(r->mac.ctx != NULL);
    CC_ASSERT(out != NULL);
    if (serial > REDEEM_SERIAL_MAX) {
        return REDEEM_ESERIAL;
    }
    uint64_t check;
    uint32_t mask;
    int rv = check_of(r, serial, &check);
    if (rv == 0) {
        rv = mask_of(r, check, &mask);
    }
    if (rv != 0) {
        return rv;
    }
    CC_ASSERT(check <= CHECK_MASK);
    uint8_t b[CODE_BYTES];
    pack(r->campaign, serial ^ mask, check, b);
    for (unsigned i = 0; i < REDEEM_CODE_CHARS; i++) {
        out[i] = ALPHABET[get5(b, i)];
    }
    out[REDEEM_CODE_CHARS] = '\0';
    return 0;
}

void redeem_group(const char code[REDEEM_CODE_CHARS], char out[REDEEM_GROUPED_CHARS + 1])
{
    size_t o = 0;
    for (unsigned i = 0; i < REDEEM_CODE_CHARS; i++) {
        if (i > 0 && i % 4 == 0) {
            out[o++] = '-';
        }
        out[o++] = code[i];
    }
    CC_ASSERT(o == REDEEM_GROUPED_CHARS);
    out[o] = '\0';
}

/* ==== verify ============================================================= */

int redeem_campaign_of(const char *input, size_t n, uint32_t *campaign)
{
    uint8_t b[CODE_BYTES];
    int rv = read_code(input, n, b);
    if (rv != 0) {
        return rv;
    }
    uint32_t masked;
    uint64_t check;
    unpack(b, campaign, &masked, &check);
    return 0;
}

int redeem_verify(struct redeem *r, const char *input, size_t n, uint32_t *serial)
{
    CC_ASSERT(r != NULL);
    CC_ASSERT(r->mac.ctx != NULL);
    CC_ASSERT(serial != NULL);
    uint8_t b[CODE_BYTES];
    int rv = read_code(input, n, b);
    if (rv != 0) {
        return rv;
    }
    uint32_t campaign, masked, mask;
    uint64_t check, want;
    unpack(b, &campaign, &masked, &check);
    if (campaign != r->campaign) {
        return REDEEM_ECAMPAIGN;
    }
    rv = mask_of(r, check, &mask);
    if (rv != 0) {
        return rv;
    }
    uint32_t s = masked ^ mask;
    rv = check_of(r, s, &want);
    if (rv != 0) {
        return rv;
    }
    uint8_t x[8], y[8];
    for (int i = 0; i < 8; i++) {
        x[i] = (uint8_t)(check >> (8 * i));
        y[i] = (uint8_t)(want >> (8 * i));
    }
    if (CRYPTO_memcmp(x, y, sizeof x) != 0) {
        return REDEEM_EFORGED;
    }
    *serial = s;
    return 0;
}

/* ==== errors ============================================================= */

const char *redeem_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case REDEEM_EKEY:
        return "key length outside [16, 64] bytes";
    case REDEEM_ECAMPAIGN:
        return "code belongs to another campaign (or campaign id out of range)";
    case REDEEM_ESERIAL:
        return "serial above REDEEM_SERIAL_MAX";
    case REDEEM_ELENGTH:
        return "a code has 16 characters";
    case REDEEM_ECHAR:
        return "character not in the code alphabet (no 0, O, 1, I)";
    case REDEEM_EFORGED:
        return "invalid code";
    case REDEEM_ECRYPTO:
        return "OpenSSL HMAC failed";
    default:
        return "unknown redeem error";
    }
}
