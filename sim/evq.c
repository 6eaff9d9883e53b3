/* evq.c -- binary min-heap of simulator events keyed by (time_us, seq).
 *
 * Invariant: heap[i] <= heap[2i+1] and heap[i] <= heap[2i+2] under evq_less().
 * Sift-up and sift-down are loops (no recursion); each is O(log n). seq is
 * unique per queue, so the order is total and the pop sequence is a pure
 * function of the push sequence.
 *
 * Sections: order | lifecycle | push and pop.
 */
#include "evq.h"

#include "base/assert.h"
#include "mem.h"

/* ---- order --------------------------------------------------------------- */

static bool evq_less(const struct evq_event *x, const struct evq_event *y)
{
    if (x->time_us != y->time_us)
        return x->time_us < y->time_us;
    return x->seq < y->seq;
}

static void evq_swap(struct evq_event *h, size_t i, size_t j)
{
    struct evq_event t = h[i];
    h[i] = h[j];
    h[j] = t;
}

/* ---- lifecycle ----------------------------------------------------------- */

void evq_init(struct evq *q)
{
    CC_ASSERT(q != NULL);
    q->heap = NULL;
    q->n = q->cap = 0;
    q->next_seq = 0;
}

void evq_free(struct evq *q, void (*free_cb)(struct evq_event *ev, void *arg), void *arg)
{
    for (size_t i = 0; free_cb != NULL && i < q->n; i++)
        free_cb(&q->heap[i], arg);
    free(q->heap);
    evq_init(q);
}

size_t evq_len(const struct evq *q)
{
    return q->n;
}

/* ---- push and pop -------------------------------------------------------- */

void evq_push(struct evq *q, const struct evq_event *ev)
{
    mem_grow((void **)&q->heap, &q->cap, q->n + 1, sizeof(*q->heap));
    size_t i = q->n++;
    q->heap[i] = *ev;
    q->heap[i].seq = q->next_seq++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!evq_less(&q->heap[i], &q->heap[parent]))
            break;
        evq_swap(q->heap, i, parent);
        i = parent;
    }
}

bool evq_pop(struct evq *q, struct evq_event *out)
{
    if (q->n == 0)
        return false;
    *out = q->heap[0];
    q->heap[0] = q->heap[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && evq_less(&q->heap[l], &q->heap[m]))
            m = l;
        if (r < q->n && evq_less(&q->heap[r], &q->heap[m]))
            m = r;
        if (m == i)
            break;
        evq_swap(q->heap, i, m);
        i = m;
    }
    return true;
}
