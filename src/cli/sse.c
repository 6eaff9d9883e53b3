/* sse.c -- Server-Sent Events parsing for the CLI (see sse.h). */
#include "cli/sse.h"

#include <stdlib.h>
#include <string.h>

/* Appends to a bounded growing buffer; false past SSE_EVENT_BYTES_MAX or on OOM. */
static bool sse_append(char **p, size_t *len, size_t *cap, const void *bytes, size_t n)
{
    if (n > SSE_EVENT_BYTES_MAX - *len)
        return false;
    if (!*p || *len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        char *q = realloc(*p, c);
        if (!q)
            return false;
        *p = q;
        *cap = c;
    }
    memcpy(*p + *len, bytes, n);
    *len += n;
    (*p)[*len] = '\0';
    return true;
}

static void sse_field_copy(char *dst, const char *v, size_t n)
{
    size_t k = n < SSE_FIELD_BYTES - 1 ? n : SSE_FIELD_BYTES - 1;
    memcpy(dst, v, k);
    dst[k] = '\0';
}

/* A blank line: dispatch the event if it has data, then start a new one. */
static int sse_dispatch(struct sse_parser *p)
{
    int rv = 0;
    if (p->has_data)
        rv = p->event_cb(p->arg, p->event[0] ? p->event : "message", p->has_id ? p->id : NULL,
                         p->data, p->data_len);
    p->has_data = false;
    p->has_id = false;
    p->data_len = 0;
    p->event[0] = '\0';
    return rv;
}

/* One complete line (without its end). Returns 0 or a stop value. */
static int sse_line(struct sse_parser *p, const char *s, size_t n)
{
    if (n == 0)
        return sse_dispatch(p);
    if (s[0] == ':')
        return 0; /* comment */
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t v_len = colon ? n - name_len - 1 : 0;
    if (v_len > 0 && v[0] == ' ') {
        v++;
        v_len--;
    }
    if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        sse_field_copy(p->event, v, v_len);
    } else if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        if ((p->has_data && !sse_append(&p->data, &p->data_len, &p->data_cap, "\n", 1)) ||
            !sse_append(&p->data, &p->data_len, &p->data_cap, v, v_len))
            return SSE_STOP_TOOBIG;
        p->has_data = true;
    } else if (name_len == 2 && memcmp(s, "id", 2) == 0) {
        sse_field_copy(p->id, v, v_len);
        p->has_id = true;
    }
    return 0; /* retry and unknown fields are ignored, as SSE says */
}

int sse_feed(struct sse_parser *p, const uint8_t *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = (char)bytes[i];
        if (p->after_cr) {
            p->after_cr = false;
            if (c == '\n')
                continue;
        }
        if (c == '\r' || c == '\n') {
            p->after_cr = c == '\r';
            int rv = sse_line(p, p->line ? p->line : "", p->line_len);
            p->line_len = 0;
            if (rv != 0)
                return rv;
            continue;
        }
        if (!sse_append(&p->line, &p->line_len, &p->line_cap, &c, 1))
            return SSE_STOP_TOOBIG;
    }
    return 0;
}

void sse_free(struct sse_parser *p)
{
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}
