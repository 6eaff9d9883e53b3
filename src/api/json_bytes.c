/* json_bytes.c -- bytes in the API's JSON (see json_bytes.h). */
#include "api/json_bytes.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *json_bytes_base64(const uint8_t *p, size_t n)
{
    if (n > (size_t)INT32_MAX / 4 * 3 - 3)
        return NULL; /* EVP_EncodeBlock counts in int; values are far below this */
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    int k = EVP_EncodeBlock((unsigned char *)out, p ? p : (const uint8_t *)"", (int)n);
    json_t *s = k >= 0 ? json_stringn(out, (size_t)k) : NULL;
    free(out);
    return s;
}

void json_bytes_set(json_t *obj, const char *name, const uint8_t *p, size_t n)
{
    static const uint8_t empty = 0;
    if (!p)
        p = &empty;
    json_t *s = json_stringn((const char *)p, n); /* NULL unless valid UTF-8 */
    if (s && memchr(p, 0, n) == NULL) {
        json_object_set_new(obj, name, s);
        return;
    }
    json_decref(s);
    char b64name[64];
    snprintf(b64name, sizeof(b64name), "%s_base64", name);
    json_object_set_new(obj, b64name, json_bytes_base64(p, n));
}

json_t *json_bytes_kv(const struct kv_kv *kv, bool with_value)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_bytes_set(o, "key", kv->key, kv->key_len);
    if (with_value)
        json_bytes_set(o, "value", kv->value, kv->value_len);
    json_object_set_new(o, "create_revision", json_integer(kv->create_revision));
    json_object_set_new(o, "mod_revision", json_integer(kv->mod_revision));
    json_object_set_new(o, "version", json_integer(kv->version));
    json_object_set_new(o, "lease", json_integer(kv->lease));
    return o;
}
