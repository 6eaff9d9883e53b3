/* sse.h -- a Server-Sent Events parser for the CLI's streams (watch, elect --observe).
 *
 * Feed it body bytes as they arrive (client_stream's body callback); it cuts lines (LF,
 * CR or CRLF), collects "event", "id" and "data" fields, ignores ':' comments and unknown
 * fields, and calls event_cb for every event that has data, as the SSE spec says. One
 * event is held at a time, bounded by SSE_EVENT_BYTES_MAX.
 */
#ifndef CC_CLI_SSE_H
#define CC_CLI_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/client.h"

/* One event's data (a watch's compacted-history snapshot can be large). */
#define SSE_EVENT_BYTES_MAX CLIENT_RESPONSE_BYTES_MAX
#define SSE_FIELD_BYTES     32u /* event names and ids; longer ones are truncated */

/* sse_feed's own stop value: an event or line past SSE_EVENT_BYTES_MAX, or no memory. */
#define SSE_STOP_TOOBIG 1000

/* event: "message" when the event had no "event" field; id: NULL when it had no "id";
 * data: NUL-terminated, data_len bytes (multi-line data joined with LF). Returns 0 to
 * go on, or a positive stop value that sse_feed returns. */
typedef int (*sse_event_cb)(void *arg, const char *event, const char *id, const char *data,
                            size_t data_len);

struct sse_parser {
    sse_event_cb event_cb;
    void *arg;
    /* internal */
    char *line;
    size_t line_len, line_cap;
    bool after_cr; /* the previous byte was a CR ending a line: skip an LF */
    char *data;
    size_t data_len, data_cap;
    bool has_data, has_id;
    char event[SSE_FIELD_BYTES];
    char id[SSE_FIELD_BYTES];
};

/* Zero the struct, set event_cb and arg, then feed. */
int sse_feed(struct sse_parser *p, const uint8_t *bytes, size_t n);
/* Frees the buffers; an event cut off by the end of the stream is dropped (SSE rule). */
void sse_free(struct sse_parser *p);

#endif /* CC_CLI_SSE_H */
