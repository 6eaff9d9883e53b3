/* lockcheck.c -- lease and lock invariants for the simulator (see lockcheck.h).
 *
 * Data: per client slot what it believes (lock, token, the real-time bound of its lease
 * belief); per lock the grants every replica applied, ascending by index (a grant is
 * recorded the first time any replica applies its index, and every later replica must
 * agree), the last token each replica's apply stream granted, and the resource's
 * accepted history folded into three numbers; per index the lease+lock digest.
 *
 * Every call is O(clients) or O(log grants) plus an occasional insertion into the grant
 * list, which is almost always an append (replicas apply in index order).
 *
 * Sections: helpers | lifecycle | beliefs | replicas | resource.
 */
#include "lockcheck.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "mem.h"

/* ---- helpers ------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
lockchk_fail(struct lockchk *c, const char *name, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = true;
    snprintf(c->name, sizeof(c->name), "%s", name);
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): see checks.c
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    return -1;
}

/* First grant whose index is >= index. */
static size_t lockchk_lower_index(const struct lockchk_lock *l, uint64_t index)
{
    size_t lo = 0, hi = l->n_grants;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->grants[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The grant of token, or NULL. Tokens ascend with the index (checked on insertion). */
static const struct lockchk_grant *lockchk_find_token(const struct lockchk_lock *l, uint64_t token)
{
    size_t lo = 0, hi = l->n_grants;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->grants[mid].token < token)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n_grants && l->grants[lo].token == token ? &l->grants[lo] : NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

void lockchk_init(struct lockchk *c, uint32_t drift_ppm)
{
    CC_ASSERT(drift_ppm <= LOCKCHK_DRIFT_PPM_MAX);
    memset(c, 0, sizeof(*c));
    c->drift_ppm = drift_ppm;
}

void lockchk_free(struct lockchk *c)
{
    for (uint32_t i = 0; i < LOCKCHK_LOCKS_MAX; i++)
        free(c->locks[i].grants);
    free(c->digests);
    free(c->elected_us);
    memset(c, 0, sizeof(*c));
}

uint64_t lockchk_bound_us(uint32_t drift_ppm, uint64_t sent_us, uint64_t belief_us)
{
    CC_ASSERT(drift_ppm <= LOCKCHK_DRIFT_PPM_MAX);
    uint64_t slow = 1000000u - drift_ppm; /* the slowest clock: local us per 1e6 real us */
    return sent_us + (belief_us * 1000000u + slow - 1) / slow;
}

/* ---- beliefs ------------------------------------------------------------- */

void lockchk_lease(struct lockchk *c, uint32_t client, int64_t lease)
{
    CC_ASSERT(client >= 1 && client <= LOCKCHK_CLIENTS_MAX);
    c->clients[client].lease = lease;
}

void lockchk_renewed(struct lockchk *c, uint32_t client, uint64_t sent_us, uint64_t belief_us)
{
    CC_ASSERT(client >= 1 && client <= LOCKCHK_CLIENTS_MAX);
    uint64_t b = lockchk_bound_us(c->drift_ppm, sent_us, belief_us);
    if (b > c->clients[client].bound_us)
        c->clients[client].bound_us = b;
}

int lockchk_hold(struct lockchk *c, uint32_t client, uint32_t inc, uint32_t lock, uint64_t token,
                 uint64_t now_us)
{
    CC_ASSERT(client >= 1 && client <= LOCKCHK_CLIENTS_MAX);
    CC_ASSERT(lock < LOCKCHK_LOCKS_MAX);
    if (c->failed)
        return -1;
    struct lockchk_client *cl = &c->clients[client];
    cl->holding = true;
    cl->lock = lock;
    cl->token = token;
    cl->inc = inc;
    const struct lockchk_lock *l = &c->locks[lock];
    if (l->n_grants > 0 && l->grants[l->n_grants - 1].token > token && cl->bound_us > now_us)
        return lockchk_fail(
            c, "lock-overlap",
            "c%u.%u learned at %" PRIu64 " us that it holds token %" PRIu64
            " of L%u, may believe until %" PRIu64 " us, but token %" PRIu64 " was already granted",
            client, inc, now_us, token, lock, cl->bound_us, l->grants[l->n_grants - 1].token);
    return 0;
}

void lockchk_unhold(struct lockchk *c, uint32_t client)
{
    CC_ASSERT(client >= 1 && client <= LOCKCHK_CLIENTS_MAX);
    c->clients[client].holding = false;
}

void lockchk_session_end(struct lockchk *c, uint32_t client)
{
    CC_ASSERT(client >= 1 && client <= LOCKCHK_CLIENTS_MAX);
    c->clients[client].holding = false;
    c->clients[client].bound_us = 0;
    c->clients[client].lease = 0;
}

/* ---- replicas ------------------------------------------------------------ */

/* Check (1): nobody with an older token on the lock may still believe. */
static int lockchk_overlap(struct lockchk *c, uint32_t node, uint64_t index, uint32_t lock,
                           uint64_t token, uint32_t client, uint32_t inc, uint64_t now_us)
{
    for (uint32_t i = 1; i <= LOCKCHK_CLIENTS_MAX; i++) {
        const struct lockchk_client *a = &c->clients[i];
        if (!a->holding || a->lock != lock || a->token >= token || a->bound_us <= now_us)
            continue;
        return lockchk_fail(
            c, "lock-overlap",
            "n%u granted token %" PRIu64 " of L%u to c%u.%u (index %" PRIu64 ") at %" PRIu64
            " us while c%u.%u holding token %" PRIu64 " may believe until %" PRIu64 " us",
            node, token, lock, client, inc, index, now_us, i, a->inc, a->token, a->bound_us);
    }
    return 0;
}

int lockchk_grant(struct lockchk *c, uint32_t node, uint64_t index, uint32_t lock, uint64_t token,
                  uint32_t client, uint32_t inc, uint64_t now_us)
{
    CC_ASSERT(node >= 1 && node <= LOCKCHK_NODES_MAX);
    CC_ASSERT(lock < LOCKCHK_LOCKS_MAX);
    if (c->failed)
        return -1;
    struct lockchk_lock *l = &c->locks[lock];
    if (token <= l->last_token[node])
        return lockchk_fail(c, "token-order",
                            "n%u granted token %" PRIu64 " of L%u at index %" PRIu64
                            " after token %" PRIu64 " in its own apply stream",
                            node, token, lock, index, l->last_token[node]);
    l->last_token[node] = token;
    size_t at = lockchk_lower_index(l, index);
    if (at < l->n_grants && l->grants[at].index == index) {
        const struct lockchk_grant *g = &l->grants[at];
        if (g->token != token || g->client != client || g->inc != inc)
            return lockchk_fail(c, "token-order",
                                "n%u granted token %" PRIu64 " of L%u to c%u.%u at index %" PRIu64
                                ", another replica granted token %" PRIu64 " to c%u.%u there",
                                node, token, lock, client, inc, index, g->token, g->client, g->inc);
        return lockchk_overlap(c, node, index, lock, token, client, inc, now_us);
    }
    if ((at > 0 && l->grants[at - 1].token >= token) ||
        (at < l->n_grants && l->grants[at].token <= token))
        return lockchk_fail(c, "token-order",
                            "n%u granted token %" PRIu64 " of L%u at index %" PRIu64
                            ", out of order with token %" PRIu64 " at index %" PRIu64,
                            node, token, lock, index,
                            at > 0 ? l->grants[at - 1].token : l->grants[at].token,
                            at > 0 ? l->grants[at - 1].index : l->grants[at].index);
    mem_grow((void **)&l->grants, &l->cap_grants, l->n_grants + 1, sizeof(*l->grants));
    memmove(&l->grants[at + 1], &l->grants[at], (l->n_grants - at) * sizeof(*l->grants));
    l->grants[at] =
        (struct lockchk_grant){.index = index, .token = token, .client = client, .inc = inc};
    l->n_grants++;
    c->n_grants++;
    return lockchk_overlap(c, node, index, lock, token, client, inc, now_us);
}

void lockchk_replica_reset(struct lockchk *c, uint32_t node, uint64_t next_token)
{
    CC_ASSERT(node >= 1 && node <= LOCKCHK_NODES_MAX);
    CC_ASSERT(next_token >= 1);
    for (uint32_t i = 0; i < LOCKCHK_LOCKS_MAX; i++)
        c->locks[i].last_token[node] = next_token - 1;
}

int lockchk_digest(struct lockchk *c, uint32_t node, uint64_t index, uint64_t digest, bool *first)
{
    *first = false;
    if (c->failed)
        return -1;
    if (index >= c->cap_digests) {
        size_t old = c->cap_digests;
        mem_grow((void **)&c->digests, &c->cap_digests, (size_t)index + 1, sizeof(*c->digests));
        memset(&c->digests[old], 0, (c->cap_digests - old) * sizeof(*c->digests));
    }
    struct lockchk_digest_at *d = &c->digests[index];
    if (!d->set) {
        d->set = true;
        d->digest = digest;
        *first = true;
        return 0;
    }
    if (d->digest != digest)
        return lockchk_fail(c, "lock-digest",
                            "n%u lease+lock digest after index %" PRIu64 " is %016" PRIx64
                            ", another replica had %016" PRIx64,
                            node, index, digest, d->digest);
    return 0;
}

int lockchk_expire_proposed(struct lockchk *c, uint32_t node, uint64_t term, bool quorum_active)
{
    if (c->failed)
        return -1;
    if (!quorum_active)
        return lockchk_fail(c, "expire-quorum",
                            "n%u, leader of term %" PRIu64
                            ", proposed EXPIRE without an active quorum (lease_timer.h claim 6)",
                            node, term);
    return 0;
}

int lockchk_deadline(struct lockchk *c, uint32_t node, uint32_t client, uint64_t now_us,
                     uint64_t remaining_us)
{
    CC_ASSERT(client >= 1 && client <= LOCKCHK_CLIENTS_MAX);
    if (c->failed)
        return -1;
    const struct lockchk_client *cl = &c->clients[client];
    uint64_t fast = 1000000u + c->drift_ppm; /* the fastest clock: local us per 1e6 real us */
    uint64_t at = now_us + remaining_us * 1000000u / fast;
    if (cl->lease != 0 && at < cl->bound_us)
        return lockchk_fail(c, "lease-deadline",
                            "n%u took over lease %" PRId64 " with %" PRIu64 " us left (by %" PRIu64
                            " us at the latest) but c%u may believe in"
                            " it until %" PRIu64 " us",
                            node, cl->lease, remaining_us, at, client, cl->bound_us);
    return 0;
}

void lockchk_elected(struct lockchk *c, uint64_t term, uint64_t now_us)
{
    CC_ASSERT(term >= 1);
    if (term >= c->cap_elected) {
        size_t old = c->cap_elected;
        mem_grow((void **)&c->elected_us, &c->cap_elected, (size_t)term + 1,
                 sizeof(*c->elected_us));
        memset(&c->elected_us[old], 0, (c->cap_elected - old) * sizeof(*c->elected_us));
    }
    if (c->elected_us[term] == 0)
        c->elected_us[term] = now_us + 1; /* +1: time 0 is a time too */
    if (term > c->max_term)
        c->max_term = term;
}

int lockchk_renew_ok(struct lockchk *c, uint32_t node, uint64_t term, uint64_t taken_us)
{
    if (c->failed)
        return -1;
    for (uint64_t t = term + 1; t <= c->max_term; t++) {
        uint64_t e = c->elected_us[t];
        if (e != 0 && e - 1 < taken_us)
            return lockchk_fail(c, "renew-deposed",
                                "n%u renewed a lease for a keepalive it took at %" PRIu64
                                " us as leader of term %" PRIu64 ", but term %" PRIu64
                                " had a leader since %" PRIu64 " us (lease_timer.h claim 1)",
                                node, taken_us, term, t, e - 1);
    }
    return 0;
}

/* ---- resource ------------------------------------------------------------ */

int lockchk_write(struct lockchk *c, uint32_t lock, uint64_t token, uint32_t client, uint32_t inc,
                  uint64_t decided_us, uint64_t rx_us, bool accepted)
{
    CC_ASSERT(lock < LOCKCHK_LOCKS_MAX);
    if (c->failed)
        return -1;
    struct lockchk_lock *l = &c->locks[lock];
    if (!accepted) {
        c->n_writes_fenced++;
        return 0;
    }
    c->n_writes_ok++;
    if (l->res_any && token < l->res_token)
        return lockchk_fail(c, "fencing",
                            "the L%u resource accepted token %" PRIu64
                            " from c%u.%u after token %" PRIu64,
                            lock, token, client, inc, l->res_token);
    const struct lockchk_grant *g = lockchk_find_token(l, token);
    if (g == NULL || g->client != client || g->inc != inc)
        return lockchk_fail(c, "fencing",
                            "the L%u resource accepted token %" PRIu64
                            " from c%u.%u, which no replica granted it",
                            lock, token, client, inc);
    if (!l->res_any || token > l->res_token) {
        uint64_t old = l->res_any ? l->res_old_decided_us : 0;
        if (l->res_any && l->res_cur_decided_us > old)
            old = l->res_cur_decided_us;
        if (l->res_any && rx_us <= old)
            return lockchk_fail(c, "resource-overlap",
                                "the L%u resource accepted token %" PRIu64 " from c%u.%u, which"
                                " learned of its grant at %" PRIu64
                                " us, and a write with an older token decided at %" PRIu64 " us",
                                lock, token, client, inc, rx_us, old);
        l->res_any = true;
        l->res_token = token;
        l->res_old_decided_us = old;
        l->res_cur_decided_us = decided_us;
    } else if (decided_us > l->res_cur_decided_us) {
        l->res_cur_decided_us = decided_us;
    }
    return 0;
}
