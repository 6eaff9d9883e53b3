/* lincheck.c -- linearizability checker for key-value register histories.
 *
 * What it is. lin_check() takes a client history (one record per op, with call
 * and return times) and decides whether it is linearizable against the model
 * in lincheck.h. Pure: no IO except lin_print_result(), no clock, no
 * randomness.
 *
 * Algorithm. The model is per-key independent, so a history is linearizable
 * iff each key's sub-history is (P-compositionality, Lowe 2017, "Testing for
 * linearizability"; Horn & Kroening 2015; Porcupine). Per key we run the
 * Wing & Gong search with Lowe's memoisation ("WGL"):
 *   - every op becomes a call and a return event, sorted by time; at equal
 *     times calls sort first, so ops touching at one instant are concurrent;
 *   - events sit in a doubly linked list; linearizing an op "lifts" its call
 *     and return out of the list, backtracking puts them back (dancing links);
 *   - a walker scans the list from the head: at a call it tries to apply the
 *     op to the model; at a return it must backtrack, since that op had to
 *     take effect before its response;
 *   - an explicit stack holds (op, state before op) choices -- no recursion;
 *   - reads that match the current state are applied first without branching
 *     (see lin_search() for why that loses nothing);
 *   - a hash set of (bitset of linearized ops, model state) prunes
 *     configurations already explored: the rest of the search depends on
 *     nothing else. The bitset hash is Zobrist-style (xor of per-op keys) so it
 *     is updated in O(1) per step; equality is checked on the whole (trimmed)
 *     bitset, so the memo never merges distinct configurations.
 * Unknown ops return at +infinity. Their returns therefore sort after every
 * finite return, so when the walker reaches one, every completed op has been
 * linearized and the key is linearizable: unknown ops may stay unapplied.
 * FAIL ops and unknown GETs have no effect and are dropped up front, and so
 * are unknown writes whose value nothing observes (lin_drop_unobserved()). An
 * unknown CAS is only ever applied when it would swap; a CAS that did not swap
 * is indistinguishable from one never applied.
 *
 * Bounded work. Each key gets a budget of search steps (looks at one call
 * event in one configuration); the loop runs at most 3 * budget times. The
 * memo cache is also capped in bytes. Running out of either is
 * LIN_VERDICT_BUDGET, never OK. Window minimisation has its own budget.
 *
 * Violation window. When a key fails, F is the op whose return event is the
 * deepest (latest in event order) that any configuration blocked on, and
 * t_fail its return time. No configuration looked at a later call, so the
 * window is drawn from P = {ops called at or before t_fail}. Two kinds of
 * window are proofs on their own; each is sound for the whole history:
 *
 * LIN_WINDOW_LAST_WRITE: F plus every write that can be the last one ordered
 * before F -- any write of P except those that returned before another write
 * that itself returned before F was called -- and F's result contradicts the
 * value each of them leaves (and ABSENT, when no write must precede F). Ops
 * called after t_fail cannot precede F, so nothing left out can help. (Unknown
 * writes dropped as unobserved are not listed: F cannot observe them either.)
 *
 * LIN_WINDOW_CUT: a window W that is not linearizable from any start value
 * (from ABSENT when no completed write precedes it), and where the ops left
 * out cannot rescue it:
 *   - completed reads (GET, CAS that did not swap) may always be left out:
 *     deleting a read from a linearization leaves it valid;
 *   - a cut before op i (call order) leaves out the completed writes called
 *     before it. It is valid when they all returned before any completed op
 *     of W was called: every linearization orders them first, so they only
 *     fix W's start value. Unknown ops called before the cut stay in W, as
 *     they may land later;
 *   - ops called after P (the first at t_next) can only be ordered before
 *     W's ops that return at or after t_next ("exposed"). Exposed reads are
 *     left out; exposed PUTs are blind writes that can be moved last;
 *     unknown ops may stay unapplied; an exposed CAS that swapped could
 *     depend on a later op, so such a W is not used.
 * "Any start value" is finite: the model only compares the state with
 * constants of W, so those constants plus one other value cover all cases.
 * Cuts are tried at i = F, F-1, ... while |W| <= LIN_WINDOW_MAX; the first
 * refuted one wins.
 *
 * If neither kind is found, the ops of P nearest F are reported as
 * LIN_WINDOW_TRUNCATED: context, not proof. Highly concurrent histories
 * rarely have valid cuts, so expect that there when F's value was written.
 *
 * Sections: limits and types | model | memo cache | search | window | driver |
 * printing.
 */
#include "lincheck.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- limits and types ------------------------------------------------- */

/* Memo cache bytes per search. An entry is ~40 bytes plus the trimmed
 * bitset, so several million configurations fit; a pathological history
 * stops here (as BUDGET) instead of exhausting the host. */
#define LIN_CACHE_BYTES_MAX ((size_t)256 << 20)
/* Search steps spent minimising one violation window (all candidates and
 * starting values together); windows have <= LIN_WINDOW_MAX ops. */
#define LIN_WINDOW_STATES_MAX 1000000u
/* Starting values tried per candidate window: ABSENT, up to two constants
 * per op (PUT arg; GET ret; CAS expected and new) and one fresh value. */
#define LIN_WINDOW_STARTS_MAX (2 * LIN_WINDOW_MAX + 2)
#define LIN_CACHE_SLOTS_MIN   1024u
#define LIN_NIL               UINT32_MAX

_Static_assert(2u * LIN_OPS_PER_KEY_MAX + 1u < LIN_NIL, "event ids fit in uint32");
_Static_assert(LIN_WINDOW_MAX <= LIN_OPS_PER_KEY_MAX, "a window lies within one key");

/* Internal search results; errors are negative errno values. */
enum { LIN_LINEARIZABLE = 0, LIN_NOT_LINEARIZABLE = 1, LIN_OUT_OF_BUDGET = 2 };

struct lin_kop { /* one checked op of the current key; kops[] is in call order */
    size_t src;  /* index into the caller's ops[] */
    enum lin_kind kind;
    int64_t arg, arg2, ret;
    uint64_t call_us, return_us; /* return_us is UINT64_MAX when unknown */
    bool unknown;
};

struct lin_event {
    uint64_t t_us;
    uint32_t op; /* index into the search's selection */
    uint8_t is_return, unknown;
    uint32_t prev, next;
};

struct lin_frame { /* one linearization step on the explicit stack */
    uint32_t op;
    bool forced; /* a read applied without branching (see lin_search) */
    int64_t state_before;
};

/* A bitset is stored trimmed: words below lo are all ones, words from
 * lo + n_words on are all zero. The form is canonical, so equal sets have
 * equal (lo, n_words, words); it keeps entries small because the search only
 * ever varies the few ops around its frontier. */
struct lin_centry {
    uint64_t hash;
    int64_t state;
    size_t at; /* first stored word in arena[] */
    uint32_t lo, n_words;
};

struct lin_cache {   /* open-addressing set of (bitset, state) */
    uint64_t *slots; /* (generation << 32) | (entry + 1); stale generation = empty */
    uint32_t n_slots, gen;
    struct lin_centry *entries;
    uint64_t *arena;
    size_t n_entries, cap_entries, n_arena, cap_arena, words;
};

struct lin_ws { /* scratch sized for the largest key; owned by lin_check() */
    struct lin_kop *kops;
    uint32_t *sel, *call_ev, *ret_ev;
    struct lin_event *ev;
    struct lin_frame *stack;
    uint64_t *bits, *zobrist;
    uint64_t *pmax; /* window search scratch, see lin_find_window() */
    struct lin_cache cache;
};

struct lin_sortrec {
    uint32_t key;
    uint64_t call_us;
    size_t idx;
};

/* ---- model -------------------------------------------------------------- */

static bool lin_model_step(const struct lin_kop *op, int64_t state, int64_t *next)
{
    *next = state;
    switch (op->kind) {
    case LIN_PUT:
        *next = op->arg;
        return true;
    case LIN_GET:
        return state == op->ret;
    case LIN_CAS:
        if (op->unknown || op->ret == 1) {
            if (state != op->arg)
                return false;
            *next = op->arg2;
            return true;
        }
        return state != op->arg; /* ret == 0: a read that saw a mismatch */
    }
    return false;
}

/* Completed ops that cannot change the state: GET, and CAS that did not swap. */
static bool lin_is_read(const struct lin_kop *op)
{
    return !op->unknown && (op->kind == LIN_GET || (op->kind == LIN_CAS && op->ret == 0));
}

static uint64_t lin_mix64(uint64_t x) /* splitmix64 finaliser */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- memo cache --------------------------------------------------------- */

static void lin_cache_free(struct lin_cache *c)
{
    free(c->slots);
    free(c->entries);
    free(c->arena);
    memset(c, 0, sizeof(*c));
}

/* O(1) reset: bumping the generation empties every slot. */
static void lin_cache_reset(struct lin_cache *c, size_t words)
{
    c->n_entries = 0;
    c->n_arena = 0;
    c->words = words;
    if (++c->gen == 0) { /* wrapped: stale stamps could look current */
        if (c->slots)
            memset(c->slots, 0, (size_t)c->n_slots * sizeof(*c->slots));
        c->gen = 1;
    }
}

static bool lin_slot_used(const struct lin_cache *c, uint32_t s)
{
    return (uint32_t)(c->slots[s] >> 32) == c->gen;
}

static void lin_cache_place(struct lin_cache *c, size_t e)
{
    uint32_t mask = c->n_slots - 1;
    uint32_t s = (uint32_t)c->entries[e].hash & mask;
    while (lin_slot_used(c, s))
        s = (s + 1) & mask;
    c->slots[s] = ((uint64_t)c->gen << 32) | (uint64_t)(e + 1);
}

/* Makes room for one more entry of n_words. Returns 0, LIN_OUT_OF_BUDGET
 * (LIN_CACHE_BYTES_MAX reached) or -ENOMEM. */
static int lin_cache_reserve(struct lin_cache *c, size_t n_words)
{
    size_t cap_entries = c->cap_entries, cap_arena = c->cap_arena;
    uint32_t n_slots = c->n_slots;
    if (c->n_entries == cap_entries)
        cap_entries = cap_entries ? 2 * cap_entries : LIN_CACHE_SLOTS_MIN / 2;
    if (c->n_arena + n_words > cap_arena)
        cap_arena = 2 * (c->n_arena + n_words);
    if ((c->n_entries + 1) * 2 > n_slots) /* keep the load factor <= 1/2 */
        n_slots = n_slots ? 2 * n_slots : LIN_CACHE_SLOTS_MIN;
    size_t n_bytes = cap_entries * sizeof(struct lin_centry) + cap_arena * 8 + (size_t)n_slots * 8;
    if (n_bytes > LIN_CACHE_BYTES_MAX || n_slots == 0)
        return LIN_OUT_OF_BUDGET;
    if (cap_entries != c->cap_entries) {
        struct lin_centry *entries = realloc(c->entries, cap_entries * sizeof(*entries));
        if (!entries)
            return -ENOMEM;
        c->entries = entries;
        c->cap_entries = cap_entries;
    }
    if (cap_arena != c->cap_arena) {
        uint64_t *arena = realloc(c->arena, cap_arena * 8);
        if (!arena)
            return -ENOMEM;
        c->arena = arena;
        c->cap_arena = cap_arena;
    }
    if (n_slots != c->n_slots) {
        uint64_t *slots = calloc(n_slots, sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        free(c->slots);
        c->slots = slots;
        c->n_slots = n_slots;
        c->gen = 1;
        for (size_t e = 0; e < c->n_entries; e++)
            lin_cache_place(c, e);
    }
    return 0;
}

/* Adds (bits, state) unless present; *added says which. Returns as reserve. */
static int lin_cache_add(struct lin_cache *c, const uint64_t *bits, uint64_t hash, int64_t state,
                         bool *added)
{
    uint32_t lo = 0, hi = (uint32_t)c->words;
    while (lo < hi && bits[lo] == UINT64_MAX)
        lo++;
    while (hi > lo && bits[hi - 1] == 0)
        hi--;
    *added = false;
    int rv = lin_cache_reserve(c, hi - lo);
    if (rv != 0)
        return rv;
    uint32_t mask = c->n_slots - 1;
    uint32_t s = (uint32_t)hash & mask;
    for (; lin_slot_used(c, s); s = (s + 1) & mask) {
        const struct lin_centry *x = &c->entries[(uint32_t)c->slots[s] - 1];
        if (x->hash == hash && x->state == state && x->lo == lo && x->n_words == hi - lo &&
            (hi == lo || memcmp(&c->arena[x->at], &bits[lo], (size_t)(hi - lo) * 8) == 0))
            return 0;
    }
    size_t e = c->n_entries++;
    c->entries[e] = (struct lin_centry){
        .hash = hash, .state = state, .at = c->n_arena, .lo = lo, .n_words = hi - lo};
    if (hi > lo)
        memcpy(&c->arena[c->n_arena], &bits[lo], (size_t)(hi - lo) * 8);
    c->n_arena += hi - lo;
    c->slots[s] = ((uint64_t)c->gen << 32) | (uint64_t)(e + 1);
    *added = true;
    return 0;
}

/* ---- search --------------------------------------------------------------- */

struct lin_search {
    const uint32_t *sel; /* in: kops indexes to check, in call order */
    uint32_t n_sel;
    int64_t start;    /* in: model state before the first op */
    uint64_t budget;  /* in: most search steps to take */
    uint64_t n_steps; /* out: search steps taken */
    uint32_t failed;  /* out (NOT_LINEARIZABLE): kops index of the deepest failing op */
};

/* Time order; calls before returns at equal times (so those ops overlap);
 * unknown (infinite) returns after finite ones; then op id for determinism. */
static int lin_event_cmp(const void *a, const void *b)
{
    const struct lin_event *x = a, *y = b;
    if (x->t_us != y->t_us)
        return x->t_us < y->t_us ? -1 : 1;
    if (x->is_return != y->is_return)
        return x->is_return < y->is_return ? -1 : 1;
    if (x->unknown != y->unknown)
        return x->unknown < y->unknown ? -1 : 1;
    return (x->op > y->op) - (x->op < y->op);
}

/* A call is always followed by its return, so ev[call].next is never NIL. */
static void lin_lift(struct lin_event *ev, uint32_t call, uint32_t ret)
{
    ev[ev[call].prev].next = ev[call].next;
    ev[ev[call].next].prev = ev[call].prev;
    ev[ev[ret].prev].next = ev[ret].next;
    if (ev[ret].next != LIN_NIL)
        ev[ev[ret].next].prev = ev[ret].prev;
}

/* Exact inverse of lin_lift(), valid because undo happens in stack order. */
static void lin_unlift(struct lin_event *ev, uint32_t call, uint32_t ret)
{
    if (ev[ret].next != LIN_NIL)
        ev[ev[ret].next].prev = ret;
    ev[ev[ret].prev].next = ret;
    ev[ev[call].next].prev = call;
    ev[ev[call].prev].next = call;
}

static void lin_build_events(struct lin_ws *ws, const struct lin_search *s)
{
    uint32_t n_ev = 2 * s->n_sel, head = n_ev;
    struct lin_event *ev = ws->ev;
    for (uint32_t j = 0; j < s->n_sel; j++) {
        const struct lin_kop *k = &ws->kops[s->sel[j]];
        struct lin_event *pair = &ev[(size_t)j * 2];
        pair[0] = (struct lin_event){.t_us = k->call_us, .op = j, .unknown = k->unknown};
        pair[1] = (struct lin_event){
            .t_us = k->return_us, .op = j, .is_return = 1, .unknown = k->unknown};
    }
    qsort(ev, n_ev, sizeof(*ev), lin_event_cmp);
    for (uint32_t e = 0; e < n_ev; e++) {
        ev[e].prev = e == 0 ? head : e - 1;
        ev[e].next = e + 1 < n_ev ? e + 1 : LIN_NIL;
        if (ev[e].is_return)
            ws->ret_ev[ev[e].op] = e;
        else
            ws->call_ev[ev[e].op] = e;
    }
    ev[head] = (struct lin_event){.prev = LIN_NIL, .next = n_ev ? 0 : LIN_NIL};
}

/* WGL search over s->sel, with one addition. Lowe's observation: a read-only
 * op (GET, CAS that did not swap) whose value matches the current state can
 * be linearized right now without loss -- moving it earlier in any valid
 * order changes no result, and every op that had to precede it already has
 * (its call is ahead of the first pending return). So each configuration
 * first sweeps for such reads and applies them as "forced" steps; only then
 * does it branch, over writes. If a configuration reached by a forced step
 * fails, so does the one before it, so backtracking pops forced frames
 * without trying siblings.
 *
 * Returns LIN_LINEARIZABLE, LIN_NOT_LINEARIZABLE, LIN_OUT_OF_BUDGET or
 * -ENOMEM. A step is one look at one call event. Every iteration takes a
 * step, ends a sweep or pops a frame, and the last two happen at most once per
 * pushed frame, so the loop runs at most 3 * budget times.
 * s->failed is the op whose return was the deepest event any configuration
 * blocked on: no configuration ever looked past it (see the window section). */
static int lin_search(struct lin_ws *ws, struct lin_search *s)
{
    struct lin_event *ev = ws->ev;
    const uint32_t head = 2 * s->n_sel;
    const size_t words = (s->n_sel + 63) / 64;
    int64_t state = s->start;
    uint64_t hbits = 0;
    uint32_t depth = 0, deepest = 0;
    bool sweeping = true; /* reads-only sweep of the current configuration */
    bool failed = false;  /* the current configuration is known to fail */

    lin_build_events(ws, s);
    memset(ws->bits, 0, words * sizeof(*ws->bits));
    lin_cache_reset(&ws->cache, words);
    s->n_steps = 0;
    uint32_t e = ev[head].next;
    while (ev[head].next != LIN_NIL) {
        assert(e != LIN_NIL);
        const struct lin_event *cur = &ev[e];
        uint32_t j = cur->op;
        if (!failed && !cur->is_return) {
            const struct lin_kop *k = &ws->kops[s->sel[j]];
            bool is_read = lin_is_read(k);
            int64_t next;
            if (s->n_steps >= s->budget)
                return LIN_OUT_OF_BUDGET;
            s->n_steps++;
            /* In the branching pass reads are known not to match. */
            if (is_read == sweeping && lin_model_step(k, state, &next)) {
                uint64_t h = hbits ^ ws->zobrist[j];
                bool added;
                ws->bits[j / 64] |= 1ull << (j % 64);
                /* The analyzer loses track of ws's buffers across qsort() and
                 * reports a leak here; there is none (ws owns them). */
                /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
                int rv = lin_cache_add(&ws->cache, ws->bits, h ^ lin_mix64((uint64_t)next), next,
                                       &added);
                if (rv != 0)
                    return rv;
                if (added) {
                    ws->stack[depth++] = (struct lin_frame){j, sweeping, state};
                    state = next;
                    hbits = h;
                    lin_lift(ev, ws->call_ev[j], ws->ret_ev[j]);
                    e = ev[head].next;
                    sweeping = true;
                    continue;
                }
                ws->bits[j / 64] &= ~(1ull << (j % 64));
                failed = sweeping; /* the forced successor already failed */
                if (failed)
                    continue;
            }
            e = cur->next;
            continue;
        }
        if (!failed && cur->unknown)
            return LIN_LINEARIZABLE; /* only unknown ops remain: leave them out */
        if (!failed && sweeping) {   /* sweep done: now branch over writes */
            sweeping = false;
            e = ev[head].next;
            continue;
        }
        if (!failed && e > deepest) /* event 0 is a call: 0 means "none yet" */
            deepest = e;
        if (depth == 0) {
            assert(deepest > 0);
            s->failed = s->sel[ev[deepest].op];
            return LIN_NOT_LINEARIZABLE;
        }
        struct lin_frame f = ws->stack[--depth];
        state = f.state_before;
        hbits ^= ws->zobrist[f.op];
        ws->bits[f.op / 64] &= ~(1ull << (f.op % 64));
        lin_unlift(ev, ws->call_ev[f.op], ws->ret_ev[f.op]);
        e = ev[ws->call_ev[f.op]].next;
        failed = f.forced;
        sweeping = false;
    }
    return LIN_LINEARIZABLE;
}

/* ---- window --------------------------------------------------------------- */

static bool lin_has(const int64_t *v, size_t n, int64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

static size_t lin_add_value(int64_t *v, size_t n, int64_t x)
{
    if (!lin_has(v, n, x)) {
        assert(n < LIN_WINDOW_STARTS_MAX);
        v[n++] = x;
    }
    return n;
}

/* The value op writes if it takes effect and changes the state. */
static bool lin_writes(const struct lin_kop *op, int64_t *value)
{
    if (op->kind == LIN_PUT)
        *value = op->arg;
    else if (op->kind == LIN_CAS && (op->unknown || op->ret == 1))
        *value = op->arg2;
    else
        return false;
    return true;
}

/* Ops called after the prefix (the first at t_next_us) can be ordered
 * before op only if it returns at or after t_next_us: it is "exposed". An
 * exposed read may have seen a later write, so it is left out of windows. */
static bool lin_window_keeps(const struct lin_kop *op, uint64_t t_next_us)
{
    return !(lin_is_read(op) && op->return_us >= t_next_us);
}

/* An exposed swap may depend on a later write and cannot be left out. */
static bool lin_window_blocks(const struct lin_kop *op, uint64_t t_next_us)
{
    return !op->unknown && op->kind == LIN_CAS && op->ret == 1 && op->return_us >= t_next_us;
}

struct lin_starts { /* start values to refute a window from */
    int64_t consts[LIN_WINDOW_STARTS_MAX], v[LIN_WINDOW_STARTS_MAX];
    size_t n_consts, n_v;
    bool have_other; /* v[] holds a value no window op mentions */
};

/* Values the window mentions; the model compares the state with nothing else,
 * so all other values behave alike and one of them stands for the rest. */
static void lin_starts_init(struct lin_starts *st, const struct lin_ws *ws, uint32_t n_sel)
{
    memset(st, 0, sizeof(*st));
    st->n_consts = lin_add_value(st->consts, 0, LIN_ABSENT);
    for (uint32_t j = 0; j < n_sel; j++) {
        const struct lin_kop *w = &ws->kops[ws->sel[j]];
        st->n_consts =
            lin_add_value(st->consts, st->n_consts, w->kind == LIN_GET ? w->ret : w->arg);
        if (w->kind == LIN_CAS)
            st->n_consts = lin_add_value(st->consts, st->n_consts, w->arg2);
    }
}

static void lin_starts_offer(struct lin_starts *st, int64_t v)
{
    bool mentioned = lin_has(st->consts, st->n_consts, v);
    if (mentioned || !st->have_other)
        st->n_v = lin_add_value(st->v, st->n_v, v);
    st->have_other = st->have_other || !mentioned;
}

/* Every value: the mentioned ones plus one that is not. */
static void lin_starts_any(struct lin_starts *st)
{
    int64_t fresh = 0;
    while (lin_has(st->consts, st->n_consts, fresh))
        fresh++;
    for (size_t i = 0; i < st->n_consts; i++)
        lin_starts_offer(st, st->consts[i]);
    lin_starts_offer(st, fresh);
}

/* Is ws->sel[0..n_sel) non-linearizable from every start in st? Returns
 * LIN_NOT_LINEARIZABLE, LIN_LINEARIZABLE, LIN_OUT_OF_BUDGET (*budget is
 * spent) or -ENOMEM. */
static int lin_refuted(struct lin_ws *ws, uint32_t n_sel, const struct lin_starts *st,
                       uint64_t *budget)
{
    assert(n_sel <= LIN_WINDOW_MAX);
    for (size_t i = 0; i < st->n_v; i++) {
        struct lin_search s = {
            .sel = ws->sel, .n_sel = n_sel, .start = st->v[i], .budget = *budget};
        int rv = lin_search(ws, &s);
        *budget -= s.n_steps;
        if (rv != LIN_NOT_LINEARIZABLE)
            return rv;
    }
    return LIN_NOT_LINEARIZABLE;
}

static void lin_emit_window(const struct lin_ws *ws, const uint32_t *sel, uint32_t n_sel,
                            enum lin_window_kind kind, struct lin_result *out)
{
    for (uint32_t j = 0; j < n_sel; j++)
        out->window[j] = ws->kops[sel[j]].src;
    out->n_window = n_sel;
    out->window_kind = kind;
}

/* LIN_WINDOW_LAST_WRITE: F against every write of P = kops[0..q) that can
 * be the last one ordered before it. Returns like lin_refuted(), or
 * LIN_LINEARIZABLE when the window would not fit. */
static int lin_window_last_write(struct lin_ws *ws, uint32_t q, uint32_t f, uint64_t *budget,
                                 struct lin_result *out)
{
    const struct lin_kop *k = ws->kops;
    uint64_t last_forced_call = 0;
    bool any_forced = false;
    uint32_t win[LIN_WINDOW_MAX], n_win = 0;
    struct lin_starts st;
    int64_t v;

    for (uint32_t o = 0; o < q; o++) {
        if (o != f && !k[o].unknown && lin_writes(&k[o], &v) && k[o].return_us < k[f].call_us) {
            any_forced = true;
            if (k[o].call_us > last_forced_call)
                last_forced_call = k[o].call_us;
        }
    }
    ws->sel[0] = f;
    lin_starts_init(&st, ws, 1);
    if (!any_forced)
        lin_starts_offer(&st, LIN_ABSENT);
    for (uint32_t o = 0; o < q; o++) {
        if (o != f && !(lin_writes(&k[o], &v) && k[o].return_us >= last_forced_call))
            continue;
        if (n_win == LIN_WINDOW_MAX)
            return LIN_LINEARIZABLE;
        win[n_win++] = o;
        if (o != f)
            lin_starts_offer(&st, v);
    }
    int rv = lin_refuted(ws, 1, &st, budget);
    if (rv == LIN_NOT_LINEARIZABLE)
        lin_emit_window(ws, win, n_win, LIN_WINDOW_LAST_WRITE, out);
    return rv;
}

/* Fills out->window for a key whose kops[0..n) failed at kops[f]: first the
 * last-write window, then cuts before kops[i] for i = f, f-1, ... while the
 * window fits, else the truncated fallback. Returns 0 or -ENOMEM. */
static int lin_find_window(struct lin_ws *ws, uint32_t n, uint32_t f, uint64_t budget,
                           struct lin_result *out)
{
    const struct lin_kop *k = ws->kops;
    const uint64_t t_fail = k[f].return_us;
    uint64_t left = budget < LIN_WINDOW_STATES_MAX ? budget : LIN_WINDOW_STATES_MAX;
    uint64_t min_ok_call = k[f].call_us; /* earliest call of a completed window op */
    uint64_t t_next_us;
    uint32_t q = f + 1, i = f, n_unknown = 0, n_kept = 1;
    uint32_t n_tried = 0; /* size of the last cut window tried */
    bool blocked = false, tried_absent = false;
    struct lin_starts st;
    int64_t v;

    assert(f < n && !k[f].unknown);
    while (q < n && k[q].call_us <= t_fail)
        q++; /* P is kops[0..q) */
    t_next_us = q < n ? k[q].call_us : UINT64_MAX;
    int rv = lin_window_last_write(ws, q, f, &left, out);
    if (rv == LIN_NOT_LINEARIZABLE)
        return 0;
    for (uint32_t j = f + 1; j < q; j++) {
        n_kept += lin_window_keeps(&k[j], t_next_us);
        blocked = blocked || lin_window_blocks(&k[j], t_next_us);
    }
    ws->pmax[0] = 0; /* pmax[i] = 1 + latest return of a completed write in kops[0..i) */
    for (uint32_t j = 0; j < f; j++) {
        uint64_t r = !k[j].unknown && lin_writes(&k[j], &v) ? k[j].return_us + 1 : 0;
        ws->pmax[j + 1] = ws->pmax[j] > r ? ws->pmax[j] : r;
        n_unknown += k[j].unknown;
    }
    while (rv == LIN_LINEARIZABLE && !blocked && n_kept + n_unknown <= LIN_WINDOW_MAX) {
        /* A valid cut before kops[i]; windows only grow as i falls, so an
         * unchanged size (and start rule) means an already refuted-or-not W. */
        bool from_absent = ws->pmax[i] == 0; /* nothing was written before */
        if (ws->pmax[i] <= min_ok_call &&
            (n_kept + n_unknown != n_tried || from_absent != tried_absent)) {
            n_tried = n_kept + n_unknown;
            tried_absent = from_absent;
            uint32_t n_sel = 0;
            for (uint32_t j = 0; j < q; j++)
                if (j < i ? k[j].unknown : lin_window_keeps(&k[j], t_next_us))
                    ws->sel[n_sel++] = j;
            assert(n_sel == n_kept + n_unknown);
            lin_starts_init(&st, ws, n_sel);
            if (from_absent)
                lin_starts_offer(&st, LIN_ABSENT);
            else
                lin_starts_any(&st);
            rv = lin_refuted(ws, n_sel, &st, &left);
            if (rv == LIN_NOT_LINEARIZABLE) {
                lin_emit_window(ws, ws->sel, n_sel, LIN_WINDOW_CUT, out);
                return 0;
            }
        }
        if (i == 0)
            break;
        i--; /* kops[i] joins the window */
        n_unknown -= k[i].unknown;
        if (lin_window_keeps(&k[i], t_next_us)) {
            n_kept++;
            if (!k[i].unknown)
                min_ok_call = k[i].call_us;
        }
        blocked = blocked || lin_window_blocks(&k[i], t_next_us);
    }
    if (rv < 0)
        return rv;
    /* No witness within limits: the last LIN_WINDOW_MAX ops of P, with F. */
    uint32_t lo = q > LIN_WINDOW_MAX ? q - LIN_WINDOW_MAX : 0;
    out->n_window = 0;
    if (f < lo) {
        out->window[out->n_window++] = k[f].src;
        lo++;
    }
    for (uint32_t j = lo; j < q; j++)
        out->window[out->n_window++] = k[j].src;
    out->window_kind = LIN_WINDOW_TRUNCATED;
    return 0;
}

/* ---- driver ------------------------------------------------------------------ */

static int lin_sortrec_cmp(const void *a, const void *b)
{
    const struct lin_sortrec *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->call_us != y->call_us)
        return x->call_us < y->call_us ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int lin_validate(const struct lin_op *op)
{
    if ((unsigned)op->kind > LIN_CAS || (unsigned)op->outcome > LIN_UNKNOWN)
        return -EINVAL;
    if (op->outcome != LIN_OK)
        return 0;
    if (op->return_us < op->call_us || op->return_us == UINT64_MAX)
        return -EINVAL; /* UINT64_MAX is reserved for "never returned" */
    if (op->kind == LIN_CAS && op->ret != 0 && op->ret != 1)
        return -EINVAL;
    return 0;
}

/* FAIL ops and unknown GETs cannot affect the state or be observed: skip them. */
static bool lin_is_checked(const struct lin_op *op)
{
    return op->outcome == LIN_OK || (op->outcome == LIN_UNKNOWN && op->kind != LIN_GET);
}

/* An unknown write whose value v no op of the key can observe may always stay
 * unapplied: in a linearization that applies it, the op right after it must
 * be a write (a GET would return v, a CAS would expect v), and a PUT there
 * does not care; a CAS that did not swap could have been helped by v, so any
 * of those on the key keeps every unknown write. Dropping such writes up
 * front matters: each one left in can double the configurations searched.
 * O(n_unknown * n). Returns the new count; kops[] stays in call order. */
static uint32_t lin_drop_unobserved(struct lin_ws *ws, uint32_t n)
{
    struct lin_kop *k = ws->kops;
    uint32_t *drop = ws->sel; /* scratch: decide on the full list, then compact */
    uint32_t m = 0;
    bool any_noswap = false;
    for (uint32_t j = 0; j < n; j++)
        any_noswap = any_noswap || (k[j].kind == LIN_CAS && lin_is_read(&k[j]));
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = 0;
        drop[i] = !any_noswap && k[i].unknown && lin_writes(&k[i], &v);
        for (uint32_t j = 0; j < n && drop[i]; j++)
            if ((k[j].kind == LIN_GET && k[j].ret == v) || (k[j].kind == LIN_CAS && k[j].arg == v))
                drop[i] = false;
    }
    for (uint32_t i = 0; i < n; i++)
        if (!drop[i])
            k[m++] = k[i];
    return m;
}

static void lin_ws_free(struct lin_ws *ws)
{
    lin_cache_free(&ws->cache);
    free(ws->kops);
    free(ws->sel);
    free(ws->call_ev);
    free(ws->ret_ev);
    free(ws->ev);
    free(ws->stack);
    free(ws->bits);
    free(ws->zobrist);
    free(ws->pmax);
}

static int lin_ws_init(struct lin_ws *ws, size_t cap)
{
    memset(ws, 0, sizeof(*ws));
    ws->kops = calloc(cap, sizeof(*ws->kops));
    ws->sel = calloc(cap, sizeof(*ws->sel));
    ws->call_ev = calloc(cap, sizeof(*ws->call_ev));
    ws->ret_ev = calloc(cap, sizeof(*ws->ret_ev));
    ws->ev = calloc(2 * cap + 1, sizeof(*ws->ev));
    ws->stack = calloc(cap, sizeof(*ws->stack));
    ws->bits = calloc(cap / 64 + 1, sizeof(*ws->bits));
    ws->zobrist = calloc(cap, sizeof(*ws->zobrist));
    ws->pmax = calloc(cap + 1, sizeof(*ws->pmax));
    if (!ws->kops || !ws->sel || !ws->call_ev || !ws->ret_ev || !ws->ev || !ws->stack ||
        !ws->bits || !ws->zobrist || !ws->pmax) {
        lin_ws_free(ws);
        return -ENOMEM;
    }
    for (size_t j = 0; j < cap; j++)
        ws->zobrist[j] = lin_mix64(0x6c696e636865636bull + j);
    return 0;
}

int lin_check(const struct lin_op *ops, size_t n_ops, uint64_t max_states_per_key,
              struct lin_result *out)
{
    const uint64_t budget = max_states_per_key ? max_states_per_key : LIN_STATES_PER_KEY_DEFAULT;
    struct lin_sortrec *recs;
    struct lin_ws ws;
    size_t n_recs = 0, max_group = 0;
    bool budget_hit = false;
    uint32_t budget_key = 0;
    int rv;

    if (out == NULL || (ops == NULL && n_ops > 0))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->verdict = LIN_VERDICT_OK;
    out->window_kind = LIN_WINDOW_NONE;
    for (size_t i = 0; i < n_ops; i++) {
        rv = lin_validate(&ops[i]);
        if (rv != 0)
            return rv;
        n_recs += lin_is_checked(&ops[i]);
    }
    if (n_recs == 0)
        return 0;
    recs = calloc(n_recs, sizeof(*recs));
    if (recs == NULL)
        return -ENOMEM;
    for (size_t i = 0, r = 0; i < n_ops; i++)
        if (lin_is_checked(&ops[i]))
            recs[r++] = (struct lin_sortrec){ops[i].key, ops[i].call_us, i};
    qsort(recs, n_recs, sizeof(*recs), lin_sortrec_cmp);
    for (size_t lo = 0, hi; lo < n_recs; lo = hi) {
        for (hi = lo; hi < n_recs && recs[hi].key == recs[lo].key; hi++)
            ;
        if (hi - lo > LIN_OPS_PER_KEY_MAX) {
            out->key = recs[lo].key;
            rv = -E2BIG;
            goto err_after_recs;
        }
        max_group = hi - lo > max_group ? hi - lo : max_group;
    }
    rv = lin_ws_init(&ws, max_group);
    if (rv != 0)
        goto err_after_recs;

    for (size_t lo = 0, hi; lo < n_recs; lo = hi) {
        uint32_t n = 0;
        for (hi = lo; hi < n_recs && recs[hi].key == recs[lo].key; hi++, n++) {
            const struct lin_op *op = &ops[recs[hi].idx];
            bool unknown = op->outcome == LIN_UNKNOWN;
            ws.kops[n] = (struct lin_kop){.src = recs[hi].idx,
                                          .kind = op->kind,
                                          .arg = op->arg,
                                          .arg2 = op->arg2,
                                          .ret = op->ret,
                                          .call_us = op->call_us,
                                          .return_us = unknown ? UINT64_MAX : op->return_us,
                                          .unknown = unknown};
        }
        n = lin_drop_unobserved(&ws, n);
        for (uint32_t j = 0; j < n; j++)
            ws.sel[j] = j;
        struct lin_search s = {.sel = ws.sel, .n_sel = n, .start = LIN_ABSENT, .budget = budget};
        rv = lin_search(&ws, &s);
        out->n_ops_checked += n;
        out->n_states_explored += s.n_steps;
        if (rv < 0)
            goto err_after_ws;
        if (rv == LIN_OUT_OF_BUDGET && !budget_hit) {
            budget_hit = true;
            budget_key = recs[lo].key;
        }
        if (rv == LIN_NOT_LINEARIZABLE) {
            out->verdict = LIN_VERDICT_VIOLATION;
            out->key = recs[lo].key;
            out->failed_op = ws.kops[s.failed].src;
            rv = lin_find_window(&ws, n, s.failed, budget, out);
            if (rv != 0)
                goto err_after_ws;
            break;
        }
    }
    if (out->verdict != LIN_VERDICT_VIOLATION && budget_hit) {
        out->verdict = LIN_VERDICT_BUDGET;
        out->key = budget_key;
    }
    rv = 0;
err_after_ws:
    lin_ws_free(&ws);
err_after_recs:
    free(recs);
    return rv;
}

/* ---- printing ---------------------------------------------------------------- */

const char *lin_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
    case -EINVAL:
        return "invalid history (bad kind/outcome, return before call, CAS ret not 0/1)";
    case -E2BIG:
        return "too many ops on one key (LIN_OPS_PER_KEY_MAX)";
    case -ENOMEM:
        return "out of memory";
    default:
        return "unknown lincheck error";
    }
}

const char *lin_verdict_name(enum lin_verdict v)
{
    switch (v) {
    case LIN_VERDICT_OK:
        return "OK";
    case LIN_VERDICT_VIOLATION:
        return "VIOLATION";
    case LIN_VERDICT_BUDGET:
        return "BUDGET";
    }
    return "?";
}

static const char *lin_fmt_value(char *buf, size_t n, int64_t v)
{
    if (v == LIN_ABSENT)
        return "absent";
    snprintf(buf, n, "%" PRId64, v);
    return buf;
}

static void lin_print_op(const struct lin_op *op, size_t idx, bool failed, FILE *f)
{
    static const char *const kind_names[] = {"put", "get", "cas"};
    char a[24] = "-", b[24] = "-", r[24] = "-", t[24] = "unknown";
    const char *arg = "-", *arg2 = "-", *ret = "-";
    bool unknown = op->outcome == LIN_UNKNOWN;
    if (op->kind != LIN_GET)
        arg = lin_fmt_value(a, sizeof(a), op->arg);
    if (op->kind == LIN_CAS)
        arg2 = lin_fmt_value(b, sizeof(b), op->arg2);
    if (unknown)
        ret = "?";
    else if (op->kind == LIN_GET)
        ret = lin_fmt_value(r, sizeof(r), op->ret);
    else if (op->kind == LIN_CAS)
        ret = op->ret ? "swapped" : "no-swap";
    if (!unknown)
        snprintf(t, sizeof(t), "%" PRIu64, op->return_us);
    fprintf(f, "%c%6zu %7" PRIu32 " %8" PRIu32 " %-4s %12s %12s %12s %12" PRIu64 " %12s\n",
            failed ? '*' : ' ', idx, op->client, op->key,
            (unsigned)op->kind <= LIN_CAS ? kind_names[op->kind] : "?", arg, arg2, ret, op->call_us,
            t);
}

void lin_print_result(const struct lin_result *res, const struct lin_op *ops, FILE *f)
{
    static const char *const window_notes[] = {
        [LIN_WINDOW_NONE] = "",
        [LIN_WINDOW_LAST_WRITE] = "the failed op against every write that could precede it",
        [LIN_WINDOW_CUT] = "not linearizable from any value earlier ops could leave",
        [LIN_WINDOW_TRUNCATED] = "ops nearest the failure, not a complete witness",
    };
    fprintf(f, "lincheck: %s", lin_verdict_name(res->verdict));
    if (res->verdict != LIN_VERDICT_OK)
        fprintf(f, " on key %" PRIu32, res->key);
    fprintf(f, " (%zu ops checked, %" PRIu64 " states explored)\n", res->n_ops_checked,
            res->n_states_explored);
    if (res->verdict != LIN_VERDICT_VIOLATION || ops == NULL)
        return;
    fprintf(
        f, "window: %zu ops, %s; '*' marks the op that could not be linearized\n", res->n_window,
        (unsigned)res->window_kind <= LIN_WINDOW_TRUNCATED ? window_notes[res->window_kind] : "?");
    fprintf(f, " %6s %7s %8s %-4s %12s %12s %12s %12s %12s\n", "#", "client", "key", "op", "arg",
            "arg2", "ret", "call_us", "return_us");
    for (size_t i = 0; i < res->n_window && i < LIN_WINDOW_MAX; i++)
        lin_print_op(&ops[res->window[i]], res->window[i], res->window[i] == res->failed_op, f);
}
