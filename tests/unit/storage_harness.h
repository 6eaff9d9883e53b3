/* storage_harness.h -- shared helpers for the storage tests (test_wal.c, test_snap.c,
 * test_storage_thread.c): deterministic entries whose bytes follow from (index, term), a
 * ground-truth model of the log, and comparisons that print both sides.
 *
 * Header-only (static functions), included after cmocka.h by each test file.
 */
#ifndef CC_TESTS_STORAGE_HARNESS_H
#define CC_TESTS_STORAGE_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"
#include "storage/wal.h"

#define SH_ENTRY_BYTES_MAX 64 /* generated entries are small so segments roll often */
#define SH_MODEL_MAX       4096

/* ---- deterministic entries -------------------------------------------------------- */

static inline uint32_t sh_entry_len(uint64_t index, uint64_t term)
{
    return (uint32_t)((index * 13u + term * 7u) % SH_ENTRY_BYTES_MAX);
}

static inline uint8_t sh_entry_byte(uint64_t index, uint64_t term, uint32_t k)
{
    return (uint8_t)(index * 31u + term * 17u + k * 7u + 1u);
}

/* Fills *e for (index, term); bytes point into buf (SH_ENTRY_BYTES_MAX bytes). */
static inline void sh_entry(struct raft_entry *e, uint64_t index, uint64_t term, uint8_t *buf)
{
    e->index = index;
    e->term = term;
    e->type = (uint8_t)(1 + index % 3);
    e->n_bytes = sh_entry_len(index, term);
    for (uint32_t k = 0; k < e->n_bytes; k++) {
        buf[k] = sh_entry_byte(index, term, k);
    }
    e->bytes = e->n_bytes ? buf : NULL;
}

/* True when e is exactly what sh_entry(index, term) makes. */
static inline bool sh_entry_ok(const struct raft_entry *e, uint64_t index, uint64_t term)
{
    if (e->index != index || e->term != term || e->type != (uint8_t)(1 + index % 3) ||
        e->n_bytes != sh_entry_len(index, term)) {
        return false;
    }
    for (uint32_t k = 0; k < e->n_bytes; k++) {
        if (e->bytes[k] != sh_entry_byte(index, term, k)) {
            return false;
        }
    }
    return true;
}

/* ---- ground truth ----------------------------------------------------------------- */

struct sh_model {
    uint64_t first; /* index of terms[0] */
    uint64_t n;
    uint64_t terms[SH_MODEL_MAX];
    struct raft_hard_state hs;
    bool has_hs;
};

static inline void sh_model_init(struct sh_model *m)
{
    memset(m, 0, sizeof(*m));
    m->first = 1;
}

static inline uint64_t sh_model_last(const struct sh_model *m)
{
    return m->first + m->n - 1;
}

static inline uint64_t sh_model_last_term(const struct sh_model *m)
{
    return m->n ? m->terms[m->n - 1] : 0;
}

static inline void sh_model_truncate(struct sh_model *m, uint64_t from)
{
    if (from <= sh_model_last(m)) {
        m->n = from > m->first ? from - m->first : 0;
    }
}

static inline void sh_model_append(struct sh_model *m, uint64_t term)
{
    if (m->n >= SH_MODEL_MAX) {
        fprintf(stderr, "sh_model_append: model full\n");
        abort();
    }
    m->terms[m->n++] = term;
}

/* Writes one entry of `term` at the end of both the WAL and the model. */
static inline int sh_append(struct wal *w, struct sh_model *m, uint64_t term)
{
    uint8_t buf[SH_ENTRY_BYTES_MAX];
    struct raft_entry e;
    sh_entry(&e, sh_model_last(m) + 1, term, buf);
    const int rv = wal_append(w, &e, 1);
    if (rv == 0) {
        sh_model_append(m, term);
    }
    return rv;
}

/* Returns NULL when rec equals the model exactly (entries from m->first on, hard state),
 * or a description of the first difference (static buffer). */
static inline const char *sh_diff(const struct wal_recovered *rec, const struct sh_model *m)
{
    static char why[256];
    if (rec->n_entries != m->n || (m->n > 0 && rec->first_index != m->first)) {
        snprintf(why, sizeof(why), "entries: recovered %llu from %llu, model %llu from %llu",
                 (unsigned long long)rec->n_entries, (unsigned long long)rec->first_index,
                 (unsigned long long)m->n, (unsigned long long)m->first);
        return why;
    }
    for (uint64_t k = 0; k < m->n; k++) {
        if (!sh_entry_ok(&rec->entries[k], m->first + k, m->terms[k])) {
            snprintf(why, sizeof(why), "entry %llu differs", (unsigned long long)(m->first + k));
            return why;
        }
    }
    if (rec->has_hard_state != m->has_hs ||
        (m->has_hs && (rec->hard_state.term != m->hs.term || rec->hard_state.vote != m->hs.vote ||
                       rec->hard_state.commit != m->hs.commit))) {
        snprintf(why, sizeof(why), "hard state: recovered %d/%llu/%u/%llu model %d/%llu/%u/%llu",
                 rec->has_hard_state, (unsigned long long)rec->hard_state.term,
                 rec->hard_state.vote, (unsigned long long)rec->hard_state.commit, m->has_hs,
                 (unsigned long long)m->hs.term, m->hs.vote, (unsigned long long)m->hs.commit);
        return why;
    }
    return NULL;
}

/* True when rec's entries are a prefix of the model's that holds at least n_acked entries
 * and every entry is exactly right. */
static inline bool sh_is_prefix(const struct wal_recovered *rec, const struct sh_model *m,
                                uint64_t n_acked)
{
    if (rec->n_entries > m->n || rec->n_entries < n_acked) {
        return false;
    }
    if (rec->n_entries > 0 && rec->first_index != m->first) {
        return false;
    }
    for (uint64_t k = 0; k < rec->n_entries; k++) {
        if (!sh_entry_ok(&rec->entries[k], m->first + k, m->terms[k])) {
            return false;
        }
    }
    return true;
}

#define SH_ASSERT_SAME(rec, model)                                         \
    do {                                                                   \
        const char *sh_why_ = sh_diff((rec), (model));                     \
        if (sh_why_ != NULL) {                                             \
            fail_msg("recovered log differs from the model: %s", sh_why_); \
        }                                                                  \
    } while (0)

#define SH_ASSERT_OK(expr)                                                        \
    do {                                                                          \
        const int sh_rv_ = (expr);                                                \
        if (sh_rv_ != 0) {                                                        \
            fail_msg("%s returned %d (%s)", #expr, sh_rv_, wal_strerror(sh_rv_)); \
        }                                                                         \
    } while (0)

#endif /* CC_TESTS_STORAGE_HARNESS_H */
