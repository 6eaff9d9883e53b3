/* assert.h -- assertions that stay on in release builds.
 *
 * CC_ASSERT(cond) states a programmer contract: a precondition, a postcondition or a
 * safety invariant. Unlike <assert.h> it ignores NDEBUG, because a Raft safety bug
 * that goes on running corrupts replicated state; stopping is the cheaper failure
 * (STYLE.md rule 6, after TigerBeetle and LMDB's mdb_cassert). Write one fact per
 * assert so the printed expression says exactly which fact broke.
 *
 * CC_UNREACHABLE() marks code that control must never reach (e.g. a switch default
 * over a closed enum).
 *
 * On failure both print "file:line: function: message" to stderr and abort(). The
 * condition is evaluated exactly once. Header-only: the cold path is a static inline
 * function so base/ needs no extra object for it.
 */
#ifndef CC_BASE_ASSERT_H
#define CC_BASE_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__) || defined(__clang__)
#define CC_COLD      __attribute__((cold))
#define CC_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define CC_COLD
#define CC_LIKELY(x) (x)
#endif

CC_COLD static inline _Noreturn void cc__assert_fail(const char *what, const char *expr,
                                                     const char *file, int line, const char *func)
{
    fprintf(stderr, "%s:%d: %s: %s%s\n", file, line, func, what, expr);
    fflush(stderr);
    abort();
}

#define CC_ASSERT(cond)        \
    (CC_LIKELY(cond) ? (void)0 \
                     : cc__assert_fail("assertion failed: ", #cond, __FILE__, __LINE__, __func__))

#define CC_UNREACHABLE() \
    cc__assert_fail("unreachable code reached", "", __FILE__, __LINE__, __func__)

#endif /* CC_BASE_ASSERT_H */
