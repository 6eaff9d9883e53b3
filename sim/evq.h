/* evq.h -- the simulator's event queue: a binary min-heap of timed events.
 *
 * Events are ordered by (time_us, seq). seq is assigned at push time from a
 * per-queue counter, so two events at the same simulated microsecond pop in
 * the order they were pushed. Nothing else (no pointer value, no hash order)
 * takes part in the order: one seed gives one event sequence.
 *
 * Ownership: the queue copies events by value. An event's ptr payload (a
 * message copy, say) belongs to whoever pops the event; evq_free() hands each
 * still-queued event to free_cb so the owner can release it.
 */
#ifndef CONCLAVE_SIM_EVQ_H
#define CONCLAVE_SIM_EVQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evq_event {
    uint64_t time_us;
    uint64_t seq;  /* set by evq_push() */
    uint32_t kind; /* meaning is the owner's */
    uint32_t node;
    uint64_t a, b; /* small payload */
    void *ptr;     /* owned payload, see above */
};

struct evq {
    struct evq_event *heap;
    size_t n, cap;
    uint64_t next_seq;
};

void evq_init(struct evq *q);
/* Releases the heap; free_cb (may be NULL) sees every event still queued. */
void evq_free(struct evq *q, void (*free_cb)(struct evq_event *ev, void *arg), void *arg);
/* Copies ev in, stamping its seq. Never fails (allocation failure aborts). */
void evq_push(struct evq *q, const struct evq_event *ev);
/* Pops the earliest event into *out; false when the queue is empty. */
bool evq_pop(struct evq *q, struct evq_event *out);
size_t evq_len(const struct evq *q);

#endif /* CONCLAVE_SIM_EVQ_H */
