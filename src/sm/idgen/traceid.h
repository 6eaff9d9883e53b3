/* traceid.h -- trace ids that a server computes alone, W3C traceparent, and
 * hierarchical span ids ("0", "0.1", "0.2.1"), as the notes describe (after
 * SOFATracer).
 *
 * A trace id is 16 bytes:  IPv4 (4) | Unix ms (6, big-endian) | sequence (2) | pid (4).
 * Two text forms:
 *   - hex, 32 lowercase digits: the W3C trace-id, so a Conclave trace id travels in a
 *     traceparent header unchanged;
 *   - the SOFATracer form: 8 hex digits of IP, 13 decimal digits of ms, the 4-digit
 *     sequence, then the pid in decimal, e.g. 0ad1348f1403169275002100356696 =
 *     10.209.52.143, 1403169275002 ms, sequence 1003, pid 56696.
 * The sequence counts 1000..9999 within one millisecond, so it is always four digits.
 * SOFATracer rolls a process-wide counter through 1000..9000 and repeats itself past
 * 8000 traces in one ms; here the 9001st trace of a millisecond moves the embedded
 * time one ms ahead instead (and a clock that goes back keeps the last time), so one
 * generator never repeats (ms, sequence). Across processes the pid differs, across
 * hosts the IP. A pid reused after a restart together with a clock rolled back can
 * repeat a trace id: acceptable for tracing, which needs no coordination (that is the
 * point), and why order-critical IDs use snowflake or segments instead.
 *
 * Span ids: the root is "0"; the k-th call a span makes gets "<span>.<k>", k from 1.
 * The pure functions below build a child, the next sibling, and check a span id; the
 * struct traceid_span keeps a span's child counter for the client library. For W3C,
 * whose parent-id is 8 bytes, traceid_span_w3c_id() maps (trace, span) to a stable,
 * non-zero 64-bit value.
 *
 * Pure: the time and the pid are inputs. Errors: TRACEID_E* in -2560..-2569.
 */
#ifndef CONCLAVE_SM_IDGEN_TRACEID_H
#define CONCLAVE_SM_IDGEN_TRACEID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACEID_BYTES            16u
#define TRACEID_HEX_LEN          32u
#define TRACEID_SOFA_LEN_MAX     (8u + 13u + 4u + 10u)  /* pid up to 10 digits */
#define TRACEID_MS_MAX           INT64_C(9999999999999) /* 13 digits: year 2286 */
#define TRACEID_SEQ_MIN          1000u
#define TRACEID_SEQ_MAX          9999u
#define TRACEPARENT_LEN          55u /* "00-" 32 "-" 16 "-" 2 */
#define TRACEPARENT_FLAG_SAMPLED 0x01u

/* Span id limits: depth bounds what a deep call chain carries in every log line,
 * the index bounds one component's digits, the length bounds the header. */
#define TRACEID_SPAN_DEPTH_MAX 32u     /* TRACEID_EDEPTH: components, root included */
#define TRACEID_SPAN_INDEX_MAX 999999u /* TRACEID_EINDEX */
#define TRACEID_SPAN_LEN_MAX   128u    /* TRACEID_ESPANLEN: characters */

enum {
    TRACEID_ECLOCK = -2560,   /* now_ms outside [0, TRACEID_MS_MAX] */
    TRACEID_ESYNTAX = -2561,  /* malformed trace id, traceparent or span id */
    TRACEID_EVERSION = -2562, /* traceparent version ff (forbidden by W3C) */
    TRACEID_EZERO = -2563,    /* all-zero trace-id or parent-id (invalid in W3C) */
    TRACEID_EDEPTH = -2564,   /* span deeper than TRACEID_SPAN_DEPTH_MAX */
    TRACEID_EINDEX = -2565,   /* span component above TRACEID_SPAN_INDEX_MAX */
    TRACEID_ESPANLEN = -2566, /* span id longer than TRACEID_SPAN_LEN_MAX */
    TRACEID_EROOT = -2567,    /* the root span "0" has no sibling */
    TRACEID_ESPACE = -2568,   /* output buffer too small */
};
const char *traceid_strerror(int rv);

struct traceid {
    uint8_t b[TRACEID_BYTES];
};

struct traceid_parts {
    uint32_t ipv4; /* 10.209.52.143 = 0x0ad1348f */
    int64_t unix_ms;
    uint32_t sequence;
    uint32_t pid;
};

/* Caller-owned generator, one per process (or per thread, with distinct pids). */
struct traceid_gen {
    uint32_t ipv4;
    uint32_t pid;
    int64_t last_ms;
    uint32_t seq;
    bool started;
    uint64_t n_ahead; /* sequence wraps that moved the time ahead */
};

void traceid_gen_init(struct traceid_gen *g, uint32_t ipv4, uint32_t pid);
/* 0 or TRACEID_ECLOCK. */
int traceid_next(struct traceid_gen *g, int64_t now_ms, struct traceid *out);

void traceid_parts(const struct traceid *t, struct traceid_parts *out);

/* 32 lowercase hex digits + NUL. */
void traceid_format_hex(const struct traceid *t, char out[TRACEID_HEX_LEN + 1]);
/* 32 hex digits (lowercase, as W3C); TRACEID_ESYNTAX or TRACEID_EZERO. */
int traceid_parse_hex(const char *s, size_t n, struct traceid *out);
/* The SOFATracer form + NUL; returns its length. Requires sequence in [1000, 9999] and
 * unix_ms <= TRACEID_MS_MAX (what traceid_next produces). */
size_t traceid_format_sofa(const struct traceid *t, char out[TRACEID_SOFA_LEN_MAX + 1]);
/* TRACEID_ESYNTAX for anything but the canonical form (pid without leading zeros). */
int traceid_parse_sofa(const char *s, size_t n, struct traceid *out);

/* ---- W3C traceparent ----------------------------------------------------- */

struct traceparent {
    uint8_t version;
    struct traceid trace_id;
    uint64_t parent_id; /* 8 bytes, big-endian in the text */
    uint8_t flags;
};

/* "00-<trace>-<parent>-<flags>" + NUL. parent_id 0 or an all-zero trace id is
 * TRACEID_EZERO. */
int traceparent_format(const struct traceid *t, uint64_t parent_id, uint8_t flags,
                       char out[TRACEPARENT_LEN + 1]);
/* W3C Trace Context §3.2: lowercase hex only; version 00 is exactly 55 characters; a
 * higher version may carry more after a '-' (ignored); version ff is
 * TRACEID_EVERSION; zero ids TRACEID_EZERO; anything else malformed TRACEID_ESYNTAX. */
int traceparent_parse(const char *s, size_t n, struct traceparent *out);

/* ---- span ids ------------------------------------------------------------ */

/* 0 if span is a valid id ("0" then ".k" components, k in 1..INDEX_MAX without leading
 * zeros); sets *depth (components) when depth is not NULL. */
int traceid_span_check(const char *span, size_t n, uint32_t *depth);
/* out = span + "." + index (index >= 1). *out_len excludes the NUL. */
int traceid_span_child(const char *span, size_t n, uint32_t index, char *out, size_t cap,
                       size_t *out_len);
/* The next sibling: the last component plus one ("0.2.1" -> "0.2.2"). */
int traceid_span_next_sibling(const char *span, size_t n, char *out, size_t cap, size_t *out_len);
/* A stable non-zero W3C parent-id for (trace, span): FNV-1a 64 of both. */
uint64_t traceid_span_w3c_id(const struct traceid *t, const char *span, size_t n);

/* A span and the counter of the calls it made (client library). */
struct traceid_span {
    char id[TRACEID_SPAN_LEN_MAX + 1];
    size_t len;
    uint32_t n_children;
};
/* "0". */
void traceid_span_root(struct traceid_span *s);
/* A span received from upstream (validated). */
int traceid_span_from(struct traceid_span *s, const char *span, size_t n);
/* The next child of parent (parent's counter advances only on success). */
int traceid_span_fork(struct traceid_span *parent, struct traceid_span *child);

#endif /* CONCLAVE_SM_IDGEN_TRACEID_H */
