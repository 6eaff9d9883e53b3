/* grow.h -- amortized growth of a heap array with a uint32_t capacity.
 *
 * cc_grow(&p, &cap, need, sizeof(*p)) makes room for `need` elements, doubling from 16.
 * Returns false (p and cap untouched) when need exceeds UINT32_MAX / 2 or realloc
 * fails; callers map that to their own out-of-memory error.
 */
#ifndef CC_BASE_GROW_H
#define CC_BASE_GROW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static inline bool cc_grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    if (need > UINT32_MAX / 2)
        return false;
    uint32_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, (size_t)ncap * elem);
    if (!np)
        return false;
    *p = np;
    *cap = ncap;
    return true;
}

#endif
