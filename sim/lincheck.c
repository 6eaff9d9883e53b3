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
 *   - a hash set of (bitset of linearized ops, model state) prunes
 *     configurations already explored: the rest of the search depends on
 *     nothing else. The bitset hash is Zobrist-style (xor of per-op keys) so it
 *     is updated in O(1) per step; equality is checked on the full bitset.
 * Unknown ops return at +infinity. Their returns therefore sort after every
 * finite return, so when the walker reaches one, every completed op has been
 * linearized and the key is linearizable: unknown ops may stay unapplied.
 * FAIL ops and unknown GETs have no effect and are dropped up front. An
 * unknown CAS is only ever applied when it would swap; a CAS that did not swap
 * is indistinguishable from one never applied.
 *
 * Bounded work. Each key gets a budget of model steps; every loop iteration
 * either takes a step or undoes one, so the loop runs at most 2 * budget
 * times. The memo cache is also capped in bytes. Running out of either is
 * LIN_VERDICT_BUDGET, never OK.
 *
 * Violation window. When a key fails, let F be the op whose return event was
 * the deepest (latest in event order) at which the walker ever had to
 * backtrack, and t_fail its return time. The walker never looked at a call
 * event after that return, so the prefix P = {ops called at or before t_fail}
 * produces the same search and is itself non-linearizable. To shrink P from
 * the left we only cut at quiescent points: a cut before op i (in call order)
 * is valid if every completed op called before i returned strictly before
 * op i's call. Then in any linearization of P all those ops precede the
 * window, so the window W = P[i..] plus the earlier unknown ops (which may
 * still take effect later) must be linearizable from the state they leave.
 * If W is non-linearizable from every starting value, it is a standalone
 * witness. "Every value" is finite: the model only compares the state with
 * constants in W, so ABSENT, those constants and one fresh value cover all
 * cases. We take the latest such cut (i <= F, |W| <= LIN_WINDOW_MAX); the cut
 * at i == 0 is checked from ABSENT only. If none fits, we report the ops of P
 * nearest F and say so (LIN_WINDOW_TRUNCATED).
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

/* Memo cache bytes per key: 1M configurations of a 400-op key fit easily;
 * a pathological 4096-op key stops here instead of exhausting the host. */
#define LIN_CACHE_BYTES_MAX ((size_t)256 << 20)
/* Model steps spent minimising one violation window (all candidate cuts and
 * starting values together); windows have <= LIN_WINDOW_MAX ops. */
#define LIN_WINDOW_STATES_MAX 1000000u
/* Starting values tried per candidate window: ABSENT, up to two constants
 * per op (PUT arg; GET ret; CAS expected and new) and one fresh value. */
#define LIN_WINDOW_STARTS_MAX (2 * LIN_WINDOW_MAX + 2)
#define LIN_CACHE_SLOTS_MIN 1024u
#define LIN_NIL UINT32_MAX

_Static_assert(2u * LIN_OPS_PER_KEY_MAX + 1u < LIN_NIL, "event ids fit in uint32");
_Static_assert(LIN_WINDOW_MAX <= LIN_OPS_PER_KEY_MAX, "a window lies within one key");

/* Internal search results; errors are negative errno values. */
enum { LIN_LINEARIZABLE = 0, LIN_NOT_LINEARIZABLE = 1, LIN_OUT_OF_BUDGET = 2 };

struct lin_kop { /* one checked op of the current key; kops[] is in call order */
	size_t src;     /* index into the caller's ops[] */
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

struct lin_frame { /* one linearization choice on the explicit stack */
	uint32_t op;
	int64_t state_before;
};

struct lin_centry {
	uint64_t hash;
	int64_t state;
};

struct lin_cache { /* open-addressing set of (bitset, state) */
	uint64_t *slots; /* (generation << 32) | (entry + 1); stale generation = empty */
	uint32_t n_slots, gen;
	struct lin_centry *entries;
	uint64_t *arena; /* bitset of entry e at arena[e * words] */
	size_t n_entries, cap_entries, cap_arena_words, words;
};

struct lin_ws { /* scratch sized for the largest key; owned by lin_check() */
	size_t cap;
	struct lin_kop *kops;
	uint32_t *sel, *call_ev, *ret_ev;
	struct lin_event *ev;
	struct lin_frame *stack;
	uint64_t *bits, *zobrist;
	uint64_t *pmax; /* window: pmax[i] = 1 + latest return of completed kops[0..i) */
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
	assert(words > 0);
	c->n_entries = 0;
	c->words = words;
	if (++c->gen == 0) {
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

/* Makes room for one more entry. Returns 0, LIN_OUT_OF_BUDGET or -ENOMEM. */
static int lin_cache_reserve(struct lin_cache *c)
{
	size_t need_words = (c->n_entries + 1) * c->words;
	size_t cap_entries = c->cap_entries, cap_words = c->cap_arena_words;
	uint32_t n_slots = c->n_slots;
	if (c->n_entries == cap_entries)
		cap_entries = cap_entries ? 2 * cap_entries : LIN_CACHE_SLOTS_MIN / 2;
	if (need_words > cap_words)
		cap_words = cap_entries * c->words > need_words ? cap_entries * c->words
								: 2 * need_words;
	if ((c->n_entries + 1) * 2 > n_slots) /* keep the load factor <= 1/2 */
		n_slots = n_slots ? 2 * n_slots : LIN_CACHE_SLOTS_MIN;
	size_t bytes = cap_entries * sizeof(struct lin_centry) + cap_words * 8 +
		       (size_t)n_slots * 8;
	if (bytes > LIN_CACHE_BYTES_MAX || n_slots == 0)
		return LIN_OUT_OF_BUDGET;
	if (cap_entries != c->cap_entries) {
		struct lin_centry *entries = realloc(c->entries, cap_entries * sizeof(*entries));
		if (!entries)
			return -ENOMEM;
		c->entries = entries;
		c->cap_entries = cap_entries;
	}
	if (cap_words != c->cap_arena_words) {
		uint64_t *arena = realloc(c->arena, cap_words * 8);
		if (!arena)
			return -ENOMEM;
		c->arena = arena;
		c->cap_arena_words = cap_words;
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
static int lin_cache_add(struct lin_cache *c, const uint64_t *bits, uint64_t hash,
			 int64_t state, bool *added)
{
	*added = false;
	int rv = lin_cache_reserve(c);
	if (rv != 0)
		return rv;
	uint32_t mask = c->n_slots - 1;
	uint32_t s = (uint32_t)hash & mask;
	size_t n_bytes = c->words * 8;
	for (; lin_slot_used(c, s); s = (s + 1) & mask) {
		size_t e = (size_t)(uint32_t)c->slots[s] - 1;
		if (c->entries[e].hash == hash && c->entries[e].state == state &&
		    memcmp(&c->arena[e * c->words], bits, n_bytes) == 0)
			return 0;
	}
	size_t e = c->n_entries++;
	c->entries[e] = (struct lin_centry){ .hash = hash, .state = state };
	memcpy(&c->arena[e * c->words], bits, n_bytes);
	c->slots[s] = ((uint64_t)c->gen << 32) | (uint64_t)(e + 1);
	*added = true;
	return 0;
}

/* ---- search --------------------------------------------------------------- */

struct lin_search {
	const uint32_t *sel; /* in: kops indexes to check, in call order */
	uint32_t n_sel;
	int64_t start;    /* in: model state before the first op */
	uint64_t budget;  /* in: most model steps to try */
	uint64_t n_steps; /* out: model steps tried */
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
		ev[2 * j] = (struct lin_event){ .t_us = k->call_us, .op = j, .unknown = k->unknown };
		ev[2 * j + 1] = (struct lin_event){
			.t_us = k->return_us, .op = j, .is_return = 1, .unknown = k->unknown
		};
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
	ev[head] = (struct lin_event){ .prev = LIN_NIL, .next = n_ev ? 0 : LIN_NIL };
}

/* WGL search over s->sel. Returns LIN_LINEARIZABLE, LIN_NOT_LINEARIZABLE,
 * LIN_OUT_OF_BUDGET or -ENOMEM. Iterations <= 2 * budget: each one either
 * tries a step or pops a frame pushed by an earlier step. */
static int lin_search(struct lin_ws *ws, struct lin_search *s)
{
	struct lin_event *ev = ws->ev;
	const uint32_t head = 2 * s->n_sel;
	const size_t words = (s->n_sel + 63) / 64 + (s->n_sel == 0);
	int64_t state = s->start;
	uint64_t hbits = 0;
	uint32_t depth = 0, deepest = 0;

	lin_build_events(ws, s);
	memset(ws->bits, 0, words * 8);
	lin_cache_reset(&ws->cache, words);
	s->n_steps = 0;
	uint32_t e = ev[head].next;
	while (ev[head].next != LIN_NIL) {
		assert(e != LIN_NIL);
		const struct lin_event *cur = &ev[e];
		uint32_t j = cur->op;
		if (!cur->is_return) {
			if (s->n_steps >= s->budget)
				return LIN_OUT_OF_BUDGET;
			s->n_steps++;
			int64_t next;
			if (lin_model_step(&ws->kops[s->sel[j]], state, &next)) {
				uint64_t h = hbits ^ ws->zobrist[j];
				bool added;
				ws->bits[j / 64] |= 1ull << (j % 64);
				int rv = lin_cache_add(&ws->cache, ws->bits, h ^ lin_mix64((uint64_t)next),
						       next, &added);
				if (rv != 0)
					return rv;
				if (added) {
					ws->stack[depth++] = (struct lin_frame){ j, state };
					state = next;
					hbits = h;
					lin_lift(ev, ws->call_ev[j], ws->ret_ev[j]);
					e = ev[head].next;
					continue;
				}
				ws->bits[j / 64] &= ~(1ull << (j % 64));
			}
			e = cur->next;
			continue;
		}
		/* Only unknown ops are left: they may stay unapplied. */
		if (cur->unknown)
			return LIN_LINEARIZABLE;
		if (e > deepest) /* event 0 is always a call, so 0 means "none yet" */
			deepest = e;
		if (depth == 0) {
			s->failed = s->sel[ev[deepest].op];
			return LIN_NOT_LINEARIZABLE;
		}
		struct lin_frame f = ws->stack[--depth];
		state = f.state_before;
		hbits ^= ws->zobrist[f.op];
		ws->bits[f.op / 64] &= ~(1ull << (f.op % 64));
		lin_unlift(ev, ws->call_ev[f.op], ws->ret_ev[f.op]);
		e = ev[ws->call_ev[f.op]].next;
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

static size_t lin_add_start(int64_t *v, size_t n, int64_t x)
{
	if (!lin_has(v, n, x)) {
		assert(n < LIN_WINDOW_STARTS_MAX);
		v[n++] = x;
	}
	return n;
}

/* Is ws->sel[0..n_sel) non-linearizable from every starting value (or from
 * ABSENT only, when from_empty)? Returns LIN_NOT_LINEARIZABLE if so,
 * LIN_LINEARIZABLE, LIN_OUT_OF_BUDGET (*budget spent) or -ENOMEM. */
static int lin_window_refuted(struct lin_ws *ws, uint32_t n_sel, bool from_empty,
			      uint64_t *budget)
{
	int64_t starts[LIN_WINDOW_STARTS_MAX];
	size_t n_starts = lin_add_start(starts, 0, LIN_ABSENT);
	assert(n_sel <= LIN_WINDOW_MAX);
	for (uint32_t j = 0; j < n_sel && !from_empty; j++) {
		const struct lin_kop *k = &ws->kops[ws->sel[j]];
		if (k->kind == LIN_PUT || k->kind == LIN_CAS)
			n_starts = lin_add_start(starts, n_starts, k->arg);
		if (k->kind == LIN_CAS)
			n_starts = lin_add_start(starts, n_starts, k->arg2);
		if (k->kind == LIN_GET)
			n_starts = lin_add_start(starts, n_starts, k->ret);
	}
	if (!from_empty) { /* one value equal to no constant stands for all of them */
		int64_t fresh = 0;
		while (lin_has(starts, n_starts, fresh))
			fresh++;
		n_starts = lin_add_start(starts, n_starts, fresh);
	}
	for (size_t i = 0; i < n_starts; i++) {
		struct lin_search s = { .sel = ws->sel, .n_sel = n_sel, .start = starts[i],
					.budget = *budget };
		int rv = lin_search(ws, &s);
		*budget -= s.n_steps;
		if (rv != LIN_NOT_LINEARIZABLE)
			return rv;
	}
	return LIN_NOT_LINEARIZABLE;
}

/* Fills out->window for a key whose kops[0..n) failed at kops[f]; see the
 * essay at the top for why the result is sound. Returns 0 or -ENOMEM. */
static int lin_find_window(struct lin_ws *ws, uint32_t n, uint32_t f, uint64_t budget,
			   struct lin_result *out)
{
	const struct lin_kop *k = ws->kops;
	uint32_t q = f + 1, n_unknown = 0;
	uint64_t left = budget < LIN_WINDOW_STATES_MAX ? budget : LIN_WINDOW_STATES_MAX;

	assert(f < n && !k[f].unknown);
	while (q < n && k[q].call_us <= k[f].return_us)
		q++; /* the prefix P is kops[0..q) */
	ws->pmax[0] = 0;
	for (uint32_t i = 0; i < f; i++) {
		uint64_t r = k[i].unknown ? 0 : k[i].return_us + 1;
		ws->pmax[i + 1] = ws->pmax[i] > r ? ws->pmax[i] : r;
		n_unknown += k[i].unknown;
	}
	for (uint32_t i = f + 1; i-- > 0;) { /* n_unknown counts unknown kops[0..i) */
		if ((q - i) + n_unknown > LIN_WINDOW_MAX)
			break;
		if (ws->pmax[i] <= k[i].call_us) { /* quiescent cut before kops[i] */
			uint32_t n_sel = 0;
			for (uint32_t j = 0; j < q; j++)
				if (j >= i || k[j].unknown)
					ws->sel[n_sel++] = j;
			int rv = lin_window_refuted(ws, n_sel, i == 0, &left);
			if (rv < 0)
				return rv;
			if (rv == LIN_OUT_OF_BUDGET)
				break;
			if (rv == LIN_NOT_LINEARIZABLE) {
				for (uint32_t j = 0; j < n_sel; j++)
					out->window[j] = k[ws->sel[j]].src;
				out->n_window = n_sel;
				out->window_kind = i == 0 ? LIN_WINDOW_FROM_EMPTY : LIN_WINDOW_ANY_START;
				return 0;
			}
		}
		if (i > 0 && k[i - 1].unknown)
			n_unknown--;
	}
	/* Fallback: the last LIN_WINDOW_MAX ops of P, swapping in F if needed. */
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
	ws->cap = cap;
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
			recs[r++] = (struct lin_sortrec){ ops[i].key, ops[i].call_us, i };
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
			ws.kops[n] = (struct lin_kop){
				.src = recs[hi].idx, .kind = op->kind, .arg = op->arg,
				.arg2 = op->arg2, .ret = op->ret, .call_us = op->call_us,
				.return_us = unknown ? UINT64_MAX : op->return_us, .unknown = unknown
			};
			ws.sel[n] = n;
		}
		struct lin_search s = { .sel = ws.sel, .n_sel = n, .start = LIN_ABSENT,
					.budget = budget };
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
	static const char *const kind_names[] = { "put", "get", "cas" };
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
	fprintf(f, "%c%6zu %7" PRIu32 " %8" PRIu32 " %-4s %12s %12s %8s %12" PRIu64 " %12s\n",
		failed ? '*' : ' ', idx, op->client, op->key,
		(unsigned)op->kind <= LIN_CAS ? kind_names[op->kind] : "?", arg, arg2, ret,
		op->call_us, t);
}

void lin_print_result(const struct lin_result *res, const struct lin_op *ops, FILE *f)
{
	static const char *const window_notes[] = {
		[LIN_WINDOW_NONE] = "",
		[LIN_WINDOW_ANY_START] = "not linearizable from any starting value",
		[LIN_WINDOW_FROM_EMPTY] = "from the key's first op, not linearizable",
		[LIN_WINDOW_TRUNCATED] = "ops nearest the failure, not a complete witness",
	};
	fprintf(f, "lincheck: %s", lin_verdict_name(res->verdict));
	if (res->verdict != LIN_VERDICT_OK)
		fprintf(f, " on key %" PRIu32, res->key);
	fprintf(f, " (%zu ops checked, %" PRIu64 " states explored)\n", res->n_ops_checked,
		res->n_states_explored);
	if (res->verdict != LIN_VERDICT_VIOLATION || ops == NULL)
		return;
	fprintf(f, "window: %zu ops, %s; '*' marks the op that could not be linearized\n",
		res->n_window,
		(unsigned)res->window_kind <= LIN_WINDOW_TRUNCATED ? window_notes[res->window_kind]
								  : "?");
	fprintf(f, " %6s %7s %8s %-4s %12s %12s %8s %12s %12s\n", "#", "client", "key", "op",
		"arg", "arg2", "ret", "call_us", "return_us");
	for (size_t i = 0; i < res->n_window && i < LIN_WINDOW_MAX; i++)
		lin_print_op(&ops[res->window[i]], res->window[i],
			     res->window[i] == res->failed_op, f);
}
