/* resp_proto.h -- the Redis protocol (RESP2 and RESP3) as a pure, IO-free codec: an
 * incremental request parser and a reply encoder. The RESP listener (api/) owns the
 * sockets; this module only turns bytes into commands and replies into bytes.
 *
 * Requests (struct resp_parser). Bytes go in as they arrive (resp_parser_feed, or
 * resp_parser_reserve + resp_parser_commit to read straight into the parser's buffer
 * from a libuv alloc_cb), complete commands come out one at a time (resp_parser_next)
 * as argc + argv views. Two request forms, as in Redis's networking.c:
 *   - multibulk: "*<n>\r\n" then n times "$<len>\r\n<len bytes>\r\n" (what every client
 *     library and redis-cli send);
 *   - inline: one line of space-separated words ended by "\n" or "\r\n" (telnet,
 *     redis-benchmark's inline tests), with Redis's quoting: "..." with \n \r \t \b \a
 *     \xHH and \<any> escapes, '...' with \' only. A closing quote must be followed by
 *     a space or the end of the line. Empty words are dropped and a NUL byte ends the
 *     line's content, as in Redis (its inline splitter works on C strings).
 * Empty requests ("*0\r\n", "*-1\r\n", blank lines) are skipped, not returned.
 * Pipelining is free: one buffer may hold many commands, and a command may be split at
 * any byte; the commands that come out do not depend on where the splits were.
 *
 * Errors. Every malformed input and every exceeded limit has its own code, and
 * resp_parser_errmsg() gives the text Redis sends for it (the caller replies
 * "-ERR <text>\r\n", e.g. resp_out_error(o, resp_parser_errmsg(p))). As in Redis, a
 * protocol error ends the connection: the parser enters a terminal state in which
 * every call returns the same error. Where Redis is lax and Conclave is strict (a
 * header line whose "\r" is not followed by "\n", bulk data not followed by "\r\n"),
 * the code is Conclave's own and the text is documented in docs/resp.md.
 *
 * Memory. The parser holds the bytes of the command being parsed plus whatever was fed
 * beyond it. It never allocates for a length that has only been announced: a
 * "$536870912" header costs nothing until the bytes arrive, and the buffer then grows
 * geometrically with the data (at most query_bytes_max). An idle parser shrinks back
 * to RESP_BUF_KEEP_BYTES. The argv array grows with the arguments actually parsed,
 * not with the announced count.
 *
 * Replies (struct resp_out). A growable buffer with a hard cap: the client output
 * buffer limit. Bytes queued plus bytes handed to the socket but not yet written
 * (resp_out_take / resp_out_sent) may not exceed bytes_max; a write past it fails with
 * RESP_EOUTFULL, which is sticky (every later write fails too), so a handler may write
 * a whole reply and check once; the server then disconnects the client, as Redis does
 * on its client-output-buffer-limit. The protocol version (2 or 3, set by HELLO) is a
 * property of the encoder: the same calls produce RESP2 or RESP3 framing.
 *
 * Ownership: struct resp_parser and struct resp_out are embedded in their owner (the
 * connection) and released with resp_parser_free / resp_out_free. Views in a struct
 * resp_cmd point into the parser and stay valid until the next call of any
 * resp_parser_* function on that parser: copy what must outlive that. Bytes passed to
 * resp_parser_feed and to the resp_out writers stay the caller's (they are copied).
 * Nothing here is thread-safe; one connection, one thread.
 *
 * Errors are negative ints in the RESP range (-1951..-1979: the api 1900s, after
 * http's -1901..-1949); resp_strerror() names them. Sections: limits | errors |
 * parser | integers | encoder.
 */
#ifndef CC_API_RESP_PROTO_H
#define CC_API_RESP_PROTO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sm/kv.h"

/* ---- limits ------------------------------------------------------------------------
 * The wire ceilings mirror Redis; the per-parser fields of struct resp_limits may be
 * lowered (tests and fuzzing do), never raised above them. */

/* Bulk length Redis accepts at all (proto-max-bulk-len default): RESP_EBULKTOOBIG. */
#define RESP_BULK_BYTES_MAX (512ull << 20)
/* Default per-parser argument cap: the largest value Conclave can store, so a bigger
 * argument is refused while its header is read, not after buffering it:
 * RESP_EARGTOOBIG. */
#define RESP_ARG_BYTES_DEFAULT ((uint64_t)KV_VALUE_BYTES_MAX)
/* Arguments per multibulk command (Redis <= 6.2's 1024*1024; 7.0 raised it to
 * INT_MAX): RESP_EMBULKTOOMANY. */
#define RESP_MULTIBULK_MAX (1024u * 1024u)
/* An inline request line, and a multibulk count or bulk length line, without its
 * terminator (Redis PROTO_INLINE_MAX_SIZE): RESP_EINLINETOOBIG, RESP_EMBULKHDR,
 * RESP_EBULKHDR. */
#define RESP_INLINE_BYTES_MAX (64u << 10)
/* Before AUTH succeeds (resp_parser_set_authenticated(p, false)), Redis allows at most
 * this many arguments of at most this many bytes: RESP_EUNAUTHMBULK, RESP_EUNAUTHBULK. */
#define RESP_UNAUTH_MULTIBULK_MAX  10u
#define RESP_UNAUTH_BULK_BYTES_MAX 16384u
/* Bytes one parser may hold (the command being parsed plus what was fed after it;
 * Redis's client-query-buffer-limit is 1 GiB): RESP_EQUERYBUF. The default fits the
 * largest argument, a header line and a full read buffer of pipelined commands. */
#define RESP_QUERY_BYTES_MAX     (1ull << 30)
#define RESP_QUERY_BYTES_DEFAULT (32ull << 20)
/* An idle parser frees a buffer larger than this (Redis shrinks idle query buffers):
 * one 64 KiB socket read (libuv's suggested size) fits without churn. */
#define RESP_BUF_KEEP_BYTES (64u << 10)
/* An idle parser frees an argv array with more slots than this. */
#define RESP_ARGV_KEEP 1024u
/* Client output buffer: default hard cap (resp_out_init's bytes_max); two of the
 * largest results a KV read may return, plus framing. */
#define RESP_OUT_BYTES_DEFAULT (2ull * KV_RESULT_BYTES_MAX + (1u << 20))
/* First allocation of an output buffer. */
#define RESP_OUT_CHUNK_BYTES (16u << 10)
/* resp_parser_errmsg text, NUL included. */
#define RESP_ERRMSG_BYTES 160u

_Static_assert(RESP_ARG_BYTES_DEFAULT <= RESP_BULK_BYTES_MAX, "our cap is below Redis's");
_Static_assert(RESP_INLINE_BYTES_MAX <= RESP_ARG_BYTES_DEFAULT,
               "an inline word can never exceed the argument cap");
_Static_assert(RESP_QUERY_BYTES_DEFAULT >= RESP_ARG_BYTES_DEFAULT + 2ull * RESP_INLINE_BYTES_MAX,
               "the default query buffer holds the largest argument and its header");
_Static_assert(RESP_QUERY_BYTES_MAX >= RESP_BULK_BYTES_MAX + 2ull * RESP_INLINE_BYTES_MAX,
               "the query ceiling holds Redis's largest argument");
_Static_assert(RESP_QUERY_BYTES_MAX <= SIZE_MAX / 2, "buffer sizes fit size_t with room");
_Static_assert(RESP_UNAUTH_BULK_BYTES_MAX <= RESP_INLINE_BYTES_MAX, "unauth caps are small");
_Static_assert(RESP_OUT_BYTES_DEFAULT >= KV_RESULT_BYTES_MAX + KV_VALUE_BYTES_MAX,
               "one full KV result fits the output buffer");

/* Per-parser limits; resp_limits_default() fills the defaults. */
struct resp_limits {
    uint64_t arg_bytes_max;    /* [inline_bytes_max, RESP_BULK_BYTES_MAX] */
    uint32_t multibulk_max;    /* [1, RESP_MULTIBULK_MAX] */
    uint32_t inline_bytes_max; /* [16, RESP_INLINE_BYTES_MAX] */
    uint64_t query_bytes_max;  /* [arg_bytes_max + 2 * inline_bytes_max, RESP_QUERY_BYTES_MAX] */
};
void resp_limits_default(struct resp_limits *lim);

/* ---- errors (negative, in the RESP range) ------------------------------------------ */

enum {
    RESP_EAGAIN = -1951,        /* no complete command yet: feed more bytes (not an error) */
    RESP_EINVAL = -1952,        /* bad argument (limits out of range) */
    RESP_ENOMEM = -1953,        /* allocation failed */
    RESP_EMBULKLEN = -1954,     /* "*" count is not an integer (or its \r lacks \n) */
    RESP_EMBULKTOOMANY = -1955, /* "*" count over multibulk_max */
    RESP_EMBULKHDR = -1956,     /* "*" line longer than inline_bytes_max */
    RESP_EBULKHDR = -1957,      /* "$" line longer than inline_bytes_max */
    RESP_EDOLLAR = -1958,       /* a multibulk element does not start with '$' */
    RESP_EBULKLEN = -1959,      /* "$" length not an integer, negative (or \r lacks \n) */
    RESP_EBULKTOOBIG = -1960,   /* "$" length over RESP_BULK_BYTES_MAX */
    RESP_EARGTOOBIG = -1961,    /* "$" length over the parser's arg_bytes_max */
    RESP_EBULKEND = -1962,      /* bulk data not followed by "\r\n" */
    RESP_EINLINETOOBIG = -1963, /* inline line longer than inline_bytes_max */
    RESP_EQUOTES = -1964,       /* inline line with unbalanced quotes */
    RESP_EUNAUTHMBULK = -1965,  /* unauthenticated: more than RESP_UNAUTH_MULTIBULK_MAX args */
    RESP_EUNAUTHBULK = -1966,   /* unauthenticated: an arg over RESP_UNAUTH_BULK_BYTES_MAX */
    RESP_EQUERYBUF = -1967,     /* more than query_bytes_max bytes held */
    RESP_EOUTFULL = -1968,      /* reply would exceed the output buffer's bytes_max */
};
const char *resp_strerror(int rv);

/* ---- parser ------------------------------------------------------------------------ */

/* One argument: len bytes at ptr (binary-safe; ptr[len] is not necessarily NUL). */
struct resp_arg {
    const char *ptr;
    size_t len;
};

/* One command: argc >= 1 arguments, argv[0] is the command name as sent. */
struct resp_cmd {
    uint32_t argc;
    const struct resp_arg *argv;
    bool is_inline; /* came as an inline line (no client library sends those) */
};

/* Fields are private: use the functions below. Embedded in the connection. */
struct resp_parser {
    struct resp_limits lim;
    char *buf;         /* buf[head, len) are held bytes */
    size_t cap;        /* allocated bytes of buf */
    size_t len;        /* bytes received */
    size_t head;       /* first byte of the command being parsed */
    size_t cur;        /* parse cursor, head <= cur <= len */
    size_t scanned;    /* bytes after cur known to hold no line terminator */
    uint64_t bulk_len; /* state BULK_DATA: payload length */
    uint32_t mb_left;  /* multibulk elements still expected */
    uint32_t argc;     /* arguments parsed for the current command */
    uint32_t argv_cap; /* slots of argv and arg_off */
    struct resp_arg *argv;
    size_t *arg_off; /* offsets into buf while a command is incomplete */
    uint8_t state;
    bool unauthenticated;
    int err; /* terminal error, or 0 */
    char errmsg[RESP_ERRMSG_BYTES];
};

/* lim NULL means the defaults. Returns 0, or RESP_EINVAL when a limit is out of its
 * range (then p needs no free). Allocates nothing until bytes arrive. */
int resp_parser_init(struct resp_parser *p, const struct resp_limits *lim);

/* Frees the buffers; p may be initialized again. */
void resp_parser_free(struct resp_parser *p);

/* Copies n bytes in. Returns 0, RESP_EQUERYBUF when the parser would hold more than
 * query_bytes_max bytes (drain commands with resp_parser_next between feeds), or the
 * terminal error. */
int resp_parser_feed(struct resp_parser *p, const void *bytes, size_t n);

/* For reading straight from a socket: makes room for up to want (> 0) bytes and
 * points *buf at it, *n >= 1 bytes long (it may be less than want near the query
 * limit, or more). Then resp_parser_commit(p, nread) with nread <= *n. Returns 0,
 * RESP_EQUERYBUF when already query_bytes_max bytes are held, RESP_ENOMEM, or the
 * terminal error. Invalidates the views of the last command. */
int resp_parser_reserve(struct resp_parser *p, size_t want, void **buf, size_t *n);
void resp_parser_commit(struct resp_parser *p, size_t nread);

/* The next complete command: 0 and *cmd filled; RESP_EAGAIN when more bytes are
 * needed; any other negative value is a protocol error (terminal: every later call
 * returns it, resp_parser_errmsg says why). Bounded work: at most the held bytes
 * are looked at, each at most twice. */
int resp_parser_next(struct resp_parser *p, struct resp_cmd *cmd);

/* Redis's text for the terminal error ("Protocol error: invalid bulk length"), "" when
 * there is none. Reply with it as "-ERR <text>\r\n", then close the connection. */
const char *resp_parser_errmsg(const struct resp_parser *p);

/* false: apply Redis's limits for unauthenticated clients (RESP_UNAUTH_*). A new
 * parser is authenticated (a server without a password never calls this). */
void resp_parser_set_authenticated(struct resp_parser *p, bool authenticated);

/* Bytes held but not yet returned as commands (Redis's qbuf in CLIENT INFO). */
size_t resp_parser_buffered(const struct resp_parser *p);

/* Heap bytes the parser holds (buffer plus argv), for memory accounting. */
size_t resp_parser_mem_bytes(const struct resp_parser *p);

/* ---- integers ---------------------------------------------------------------------- */

/* Parses a decimal int64 with Redis's string2ll rules: optional '-', no '+', no
 * leading zeros ("0" itself is fine, "-0" is not), no spaces, at most 20 digits, no
 * overflow. Returns true and sets *v on success. The lead's INCRBY etc. use it to
 * match "value is not an integer or out of range". */
bool resp_parse_i64(const char *s, size_t len, int64_t *v);

/* ---- encoder ----------------------------------------------------------------------- */

/* Fields are private: use the functions below. Embedded in the connection. */
struct resp_out {
    uint8_t *buf;
    size_t len;       /* queued bytes */
    size_t cap;       /* allocated bytes of buf */
    size_t in_flight; /* taken with resp_out_take, not yet reported by resp_out_sent */
    size_t bytes_max; /* len + in_flight may not exceed it */
    uint64_t gen;     /* increments on every take/clear: invalidates deferred headers */
    int err;          /* sticky: 0, RESP_EOUTFULL or RESP_ENOMEM */
    uint8_t proto;    /* 2 or 3 */
};

/* A deferred aggregate header (count not known yet); see resp_out_defer. */
struct resp_out_defer {
    size_t pos;
    uint64_t gen;
};

/* bytes_max > 0 (RESP_OUT_BYTES_DEFAULT is the usual one). Starts at RESP2. */
void resp_out_init(struct resp_out *o, size_t bytes_max);
void resp_out_free(struct resp_out *o);

/* 2 or 3 (an assertion); takes effect for the next write. */
void resp_out_set_proto(struct resp_out *o, int proto);
int resp_out_proto(const struct resp_out *o);

/* The sticky error: 0, RESP_EOUTFULL or RESP_ENOMEM. */
int resp_out_status(const struct resp_out *o);

/* The queued bytes (valid until the next call on o); *len may be 0. */
const uint8_t *resp_out_data(const struct resp_out *o, size_t *len);

/* Drops the queued bytes (not the in-flight count) and clears the sticky error. */
void resp_out_clear(struct resp_out *o);

/* Hands the queued bytes to the caller: returns their count and sets *bytes to a
 * malloc'd block the caller frees (NULL when 0 bytes). They count against bytes_max
 * until resp_out_sent() reports them written. */
size_t resp_out_take(struct resp_out *o, uint8_t **bytes);
void resp_out_sent(struct resp_out *o, size_t n);

/* Writers. Each returns resp_out_status(o) after the write: 0, or the sticky error
 * (then nothing more is queued). */

/* "+s\r\n"; CR and LF in s become spaces (a status line cannot hold them). */
int resp_out_simple(struct resp_out *o, const char *s);
int resp_out_ok(struct resp_out *o); /* "+OK\r\n" */

/* An error. As Redis's addReplyError: a message starting with '-' carries its own code
 * ("-WRONGTYPE Operation ..."); any other gets "-ERR " in front. CR and LF become
 * spaces. */
int resp_out_error(struct resp_out *o, const char *msg);
int resp_out_errorf(struct resp_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int resp_out_verrorf(struct resp_out *o, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

int resp_out_int(struct resp_out *o, int64_t v);                /* ":v\r\n" */
int resp_out_bulk(struct resp_out *o, const void *p, size_t n); /* "$n\r\n...\r\n" */
int resp_out_bulk_cstr(struct resp_out *o, const char *s);
int resp_out_bulk_i64(struct resp_out *o, int64_t v); /* the decimal text as a bulk */
int resp_out_null(struct resp_out *o);                /* RESP2 "$-1\r\n", RESP3 "_\r\n" */
int resp_out_null_array(struct resp_out *o);          /* RESP2 "*-1\r\n", RESP3 "_\r\n" */
int resp_out_array(struct resp_out *o, uint64_t n);   /* "*n\r\n" */
/* n key-value pairs follow: RESP3 "%n\r\n", RESP2 "*2n\r\n". */
int resp_out_map(struct resp_out *o, uint64_t n);
int resp_out_set(struct resp_out *o, uint64_t n);  /* RESP3 "~n\r\n", RESP2 "*n\r\n" */
int resp_out_push(struct resp_out *o, uint64_t n); /* RESP3 ">n\r\n", RESP2 "*n\r\n" */
/* RESP3 ",<d>\r\n", RESP2 the same text as a bulk string. The text is the shortest
 * that reads back as d (integral values without a fraction), or inf, -inf, nan. */
int resp_out_double(struct resp_out *o, double d);
int resp_out_bool(struct resp_out *o, bool b); /* RESP3 "#t\r\n"/"#f\r\n", RESP2 ":1"/":0" */
/* RESP3 "=<n+4>\r\n<fmt>:<text>\r\n" (fmt is three characters, "txt" or "mkd"), RESP2
 * a bulk string of the text. */
int resp_out_verbatim(struct resp_out *o, const char *fmt, const void *p, size_t n);
/* Bytes already in RESP form (pre-encoded replies); the caller vouches for them. */
int resp_out_raw(struct resp_out *o, const void *p, size_t n);

/* Deferred aggregate headers, for replies whose count is known only at the end (KEYS,
 * SCAN, COMMAND DOCS with names): resp_out_defer() marks the spot, then the elements
 * are written, then one resp_out_defer_*() inserts the header there. No take or clear
 * may come in between (an assertion). */
struct resp_out_defer resp_out_defer(struct resp_out *o);
int resp_out_defer_array(struct resp_out *o, struct resp_out_defer d, uint64_t n);
int resp_out_defer_map(struct resp_out *o, struct resp_out_defer d, uint64_t n);
int resp_out_defer_set(struct resp_out *o, struct resp_out_defer d, uint64_t n);

#endif /* CC_API_RESP_PROTO_H */
