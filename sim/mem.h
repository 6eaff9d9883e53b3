/* mem.h -- checked allocation for the simulator.
 *
 * The simulator is a test tool: when malloc fails there is no useful way to go
 * on (a half-built world would only produce false verdicts), so these helpers
 * print one line and abort. Production code (src/) returns RAFT_ENOMEM and
 * friends instead; nothing under src/ may include this header.
 *
 * Ownership: whatever mem_* returns belongs to the caller and is released with
 * free().
 */
#ifndef CONCLAVE_SIM_MEM_H
#define CONCLAVE_SIM_MEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void *mem_check(void *p, size_t n)
{
    if (p == NULL && n > 0) {
        fprintf(stderr, "conclave-sim: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

/* realloc that never returns NULL for n > 0. */
static inline void *mem_realloc(void *p, size_t n)
{
    return mem_check(realloc(p, n ? n : 1), n);
}

/* Zeroed array of count elements of size bytes. */
static inline void *mem_calloc(size_t count, size_t size)
{
    return mem_check(calloc(count ? count : 1, size ? size : 1), count * size);
}

/* Copy of n bytes (NULL when n == 0). */
static inline void *mem_dup(const void *src, size_t n)
{
    if (n == 0)
        return NULL;
    void *p = mem_check(malloc(n), n);
    memcpy(p, src, n);
    return p;
}

/* Grows *items (of elem bytes each) so that at least need fit; *cap doubles. */
static inline void mem_grow(void **items, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    *items = mem_realloc(*items, ncap * elem);
    *cap = ncap;
}

#endif /* CONCLAVE_SIM_MEM_H */
