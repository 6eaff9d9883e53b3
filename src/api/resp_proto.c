/* resp_proto.c -- RESP2/RESP3 request parser and reply encoder. Pure: no IO, no clock.
 *
 * Parser invariants (struct resp_parser):
 *   - buf[head, len) are the held bytes; head <= cur <= len. Bytes before head belong to
 *     commands already returned: they stay in place until the next reserve/feed, so the
 *     views of the last returned command point at them. Only reserve/feed move bytes
 *     (compaction to the front, realloc), and they rebase cur and arg_off[]: while a
 *     command is incomplete its arguments are offsets, turned into pointers only when
 *     it is returned.
 *   - `scanned` counts bytes after cur already searched for the current line's
 *     terminator, so a header line that arrives a byte at a time is searched once.
 *   - Header lines and inline lines are searched at most inline_bytes_max + 1 bytes
 *     deep: the "too big" errors depend on the line, never on how it was split.
 *   - err != 0 is terminal; errmsg holds Redis's text for it.
 *   - No allocation is sized by an announced length: the buffer grows with bytes that
 *     arrived (reserve), argv with arguments that were parsed.
 *
 * Sections: errors | integers | parser: limits and memory | parser: lines and errors |
 * parser: inline | parser: next | encoder.
 */
#include "api/resp_proto.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"

/* ---- errors -------------------------------------------------------------------------- */

const char *resp_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
    case RESP_EAGAIN:
        return "incomplete command: more bytes needed";
    case RESP_EINVAL:
        return "invalid argument";
    case RESP_ENOMEM:
        return "out of memory";
    case RESP_EMBULKLEN:
        return "multibulk count is not an integer";
    case RESP_EMBULKTOOMANY:
        return "multibulk count exceeds multibulk_max";
    case RESP_EMBULKHDR:
        return "multibulk count line exceeds inline_bytes_max";
    case RESP_EBULKHDR:
        return "bulk length line exceeds inline_bytes_max";
    case RESP_EDOLLAR:
        return "multibulk element does not start with '$'";
    case RESP_EBULKLEN:
        return "bulk length is not a non-negative integer";
    case RESP_EBULKTOOBIG:
        return "bulk length exceeds RESP_BULK_BYTES_MAX";
    case RESP_EARGTOOBIG:
        return "bulk length exceeds arg_bytes_max";
    case RESP_EBULKEND:
        return "bulk data not followed by CRLF";
    case RESP_EINLINETOOBIG:
        return "inline request exceeds inline_bytes_max";
    case RESP_EQUOTES:
        return "unbalanced quotes in inline request";
    case RESP_EUNAUTHMBULK:
        return "unauthenticated multibulk count exceeds RESP_UNAUTH_MULTIBULK_MAX";
    case RESP_EUNAUTHBULK:
        return "unauthenticated bulk length exceeds RESP_UNAUTH_BULK_BYTES_MAX";
    case RESP_EQUERYBUF:
        return "query buffer exceeds query_bytes_max";
    case RESP_EOUTFULL:
        return "output buffer exceeds its bytes_max";
    default:
        return "unknown RESP error";
    }
}

/* ---- integers ------------------------------------------------------------------------ */

bool resp_parse_i64(const char *s, size_t len, int64_t *v)
{
    /* Redis string2ll: at most LONG_STR_SIZE - 1 = 20 characters. */
    if (len == 0 || len > 20) {
        return false;
    }
    if (len == 1 && s[0] == '0') {
        *v = 0;
        return true;
    }
    size_t i = 0;
    bool neg = false;
    if (s[0] == '-') {
        neg = true;
        i = 1;
        if (len == 1) {
            return false;
        }
    }
    if (s[i] < '1' || s[i] > '9') { /* no leading zero, no "-0" */
        return false;
    }
    uint64_t u = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        const unsigned d = (unsigned)(s[i] - '0');
        if (u > (UINT64_MAX - d) / 10) {
            return false;
        }
        u = u * 10 + d;
    }
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1) {
            return false;
        }
        *v = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX) {
            return false;
        }
        *v = (int64_t)u;
    }
    return true;
}

/* ---- parser: limits and memory --------------------------------------------------------- */

enum resp__state {
    RESP__START,     /* between commands */
    RESP__INLINE,    /* an inline line starts at cur */
    RESP__MB_COUNT,  /* a "*<n>" line starts at cur */
    RESP__BULK_HDR,  /* a "$<len>" line starts at cur */
    RESP__BULK_DATA, /* bulk_len bytes and CRLF start at cur */
};

void resp_limits_default(struct resp_limits *lim)
{
    lim->arg_bytes_max = RESP_ARG_BYTES_DEFAULT;
    lim->multibulk_max = RESP_MULTIBULK_MAX;
    lim->inline_bytes_max = RESP_INLINE_BYTES_MAX;
    lim->query_bytes_max = RESP_QUERY_BYTES_DEFAULT;
}

int resp_parser_init(struct resp_parser *p, const struct resp_limits *lim)
{
    struct resp_limits d;
    if (lim == NULL) {
        resp_limits_default(&d);
        lim = &d;
    }
    if (lim->inline_bytes_max < 16 || lim->inline_bytes_max > RESP_INLINE_BYTES_MAX ||
        lim->multibulk_max < 1 || lim->multibulk_max > RESP_MULTIBULK_MAX ||
        lim->arg_bytes_max < lim->inline_bytes_max || lim->arg_bytes_max > RESP_BULK_BYTES_MAX ||
        lim->query_bytes_max < lim->arg_bytes_max + 2ull * lim->inline_bytes_max ||
        lim->query_bytes_max > RESP_QUERY_BYTES_MAX) {
        return RESP_EINVAL;
    }
    memset(p, 0, sizeof(*p));
    p->lim = *lim;
    p->state = RESP__START;
    return 0;
}

void resp_parser_free(struct resp_parser *p)
{
    free(p->buf);
    free(p->argv);
    free(p->arg_off);
    memset(p, 0, sizeof(*p));
}

static int parser_fail(struct resp_parser *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Enters the terminal state with Redis's text for it. */
static int parser_fail(struct resp_parser *p, int code, const char *fmt, ...)
{
    CC_ASSERT(code < 0 && code != RESP_EAGAIN);
    if (p->err != 0) {
        return p->err;
    }
    p->err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

/* Nothing held: rewind to the front, and give back memory a big command left behind. */
static void parser_idle_shrink(struct resp_parser *p)
{
    if (p->head != p->len) {
        return;
    }
    CC_ASSERT(p->state == RESP__START);
    CC_ASSERT(p->argc == 0);
    p->head = p->cur = p->len = 0;
    p->scanned = 0;
    if (p->cap > RESP_BUF_KEEP_BYTES) {
        free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
    if (p->argv_cap > RESP_ARGV_KEEP) {
        free(p->argv);
        free(p->arg_off);
        p->argv = NULL;
        p->arg_off = NULL;
        p->argv_cap = 0;
    }
}

/* Moves the held bytes to the front of buf and rebases every offset into them. */
static void parser_compact(struct resp_parser *p)
{
    const size_t shift = p->head;
    if (shift == 0) {
        return;
    }
    memmove(p->buf, p->buf + shift, p->len - shift);
    p->len -= shift;
    p->cur -= shift;
    p->head = 0;
    for (uint32_t i = 0; i < p->argc; i++) {
        CC_ASSERT(p->arg_off[i] >= shift);
        p->arg_off[i] -= shift;
    }
}

int resp_parser_reserve(struct resp_parser *p, size_t want, void **buf, size_t *n)
{
    CC_ASSERT(want > 0);
    if (p->err != 0) {
        return p->err;
    }
    parser_idle_shrink(p);
    const size_t held = p->len - p->head;
    const size_t held_max = (size_t)p->lim.query_bytes_max;
    if (held >= held_max) {
        return parser_fail(p, RESP_EQUERYBUF,
                           "Protocol error: too big query buffer (over %llu bytes)",
                           (unsigned long long)held_max);
    }
    const size_t room_max = held_max - held;
    if (want > room_max) {
        want = room_max;
    }
    if (p->cap - p->len < want) {
        parser_compact(p);
    }
    if (p->cap - p->len < want) {
        const size_t need = p->len + want; /* <= held_max after compaction */
        size_t ncap = p->cap > 0 ? p->cap : 4096;
        while (ncap < need) {
            ncap *= 2;
        }
        if (ncap > held_max) {
            ncap = held_max;
        }
        char *nbuf = realloc(p->buf, ncap);
        if (nbuf == NULL) {
            return parser_fail(p, RESP_ENOMEM, "Protocol error: server out of memory");
        }
        p->buf = nbuf;
        p->cap = ncap;
    }
    size_t avail = p->cap - p->len;
    if (avail > room_max) {
        avail = room_max;
    }
    CC_ASSERT(avail >= 1);
    *buf = p->buf + p->len;
    *n = avail;
    return 0;
}

void resp_parser_commit(struct resp_parser *p, size_t nread)
{
    if (p->err != 0) {
        return;
    }
    CC_ASSERT(nread <= p->cap - p->len);
    CC_ASSERT(p->len - p->head + nread <= p->lim.query_bytes_max);
    p->len += nread;
}

int resp_parser_feed(struct resp_parser *p, const void *bytes, size_t n)
{
    const char *src = bytes;
    /* Each round copies >= 1 byte or fails: at most n rounds. */
    while (n > 0) {
        void *dst = NULL;
        size_t room = 0;
        const int rv = resp_parser_reserve(p, n, &dst, &room);
        if (rv != 0) {
            return rv;
        }
        CC_ASSERT(dst != NULL);
        const size_t k = room < n ? room : n;
        memcpy(dst, src, k);
        resp_parser_commit(p, k);
        src += k;
        n -= k;
    }
    return p->err;
}

/* Makes room for need arguments; the arrays only grow with arguments actually parsed. */
static int parser_argv_reserve(struct resp_parser *p, uint32_t need)
{
    if (need <= p->argv_cap) {
        return 0;
    }
    uint32_t ncap = p->argv_cap > 0 ? p->argv_cap : 16;
    while (ncap < need) {
        CC_ASSERT(ncap <= UINT32_MAX / 2);
        ncap *= 2;
    }
    struct resp_arg *nargv = realloc(p->argv, (size_t)ncap * sizeof(*nargv));
    if (nargv == NULL) {
        return parser_fail(p, RESP_ENOMEM, "Protocol error: server out of memory");
    }
    p->argv = nargv;
    size_t *noff = realloc(p->arg_off, (size_t)ncap * sizeof(*noff));
    if (noff == NULL) {
        return parser_fail(p, RESP_ENOMEM, "Protocol error: server out of memory");
    }
    p->arg_off = noff;
    p->argv_cap = ncap;
    return 0;
}

const char *resp_parser_errmsg(const struct resp_parser *p)
{
    return p->err != 0 ? p->errmsg : "";
}

void resp_parser_set_authenticated(struct resp_parser *p, bool authenticated)
{
    p->unauthenticated = !authenticated;
}

size_t resp_parser_buffered(const struct resp_parser *p)
{
    return p->len - p->head;
}

size_t resp_parser_mem_bytes(const struct resp_parser *p)
{
    return p->cap + (size_t)p->argv_cap * (sizeof(struct resp_arg) + sizeof(size_t));
}

/* ---- parser: lines and errors ---------------------------------------------------------- */

enum { LINE_FOUND = 1, LINE_MORE = 0, LINE_TOO_LONG = -1 };

/* Looks for byte t in the line starting at cur. A line may hold at most
 * inline_bytes_max bytes before its terminator. */
static int parser_line_find(struct resp_parser *p, char t, size_t *at)
{
    const size_t lim = p->lim.inline_bytes_max;
    const size_t avail = p->len - p->cur;
    const size_t stop = avail < lim + 1 ? avail : lim + 1;
    if (p->scanned < stop) {
        const char *from = p->buf + p->cur + p->scanned;
        const char *hit = memchr(from, t, stop - p->scanned);
        if (hit != NULL) {
            *at = (size_t)(hit - p->buf);
            return LINE_FOUND;
        }
        p->scanned = stop;
    }
    return avail > lim ? LINE_TOO_LONG : LINE_MORE;
}

/* A header line "<c><digits>\r\n" at cur: finds it and parses the number. Returns 0 with
 * *v and *next set (first byte after the line), RESP_EAGAIN, or a terminal error. */
static int parser_header(struct resp_parser *p, bool is_count, int64_t *v, size_t *next)
{
    size_t r;
    const int found = parser_line_find(p, '\r', &r);
    if (found == LINE_TOO_LONG) {
        return is_count
                   ? parser_fail(p, RESP_EMBULKHDR, "Protocol error: too big mbulk count string")
                   : parser_fail(p, RESP_EBULKHDR, "Protocol error: too big bulk count string");
    }
    if (found == LINE_MORE) {
        return RESP_EAGAIN;
    }
    if (r + 1 >= p->len) { /* the \n is still to come: search from \r again then */
        p->scanned = r - p->cur;
        return RESP_EAGAIN;
    }
    const char c0 = p->buf[p->cur];
    if (!is_count && c0 != '$') {
        /* Redis prints the byte; CR and LF become spaces (addReplyErrorFormat), and
         * so does NUL, which would end our C string. */
        char shown = c0;
        if (c0 == '\r' || c0 == '\n' || c0 == '\0') {
            shown = ' ';
        }
        return parser_fail(p, RESP_EDOLLAR, "Protocol error: expected '$', got '%c'", shown);
    }
    const bool ok = p->buf[r + 1] == '\n' && resp_parse_i64(p->buf + p->cur + 1, r - p->cur - 1, v);
    if (!ok) {
        return is_count ? parser_fail(p, RESP_EMBULKLEN, "Protocol error: invalid multibulk length")
                        : parser_fail(p, RESP_EBULKLEN, "Protocol error: invalid bulk length");
    }
    *next = r + 2;
    return 0;
}

/* ---- parser: inline -------------------------------------------------------------------- */

/* C isspace() in the "C" locale, which Redis's splitter uses between words. */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return (unsigned)(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return (unsigned)(c - 'a' + 10);
    }
    return (unsigned)(c - 'A' + 10);
}

/* Splits buf[from, end) into words with Redis's sdssplitargs rules, unescaping each
 * word in place (a word never grows: every output byte consumes an input byte, so the
 * write position never passes the read position). Empty words are dropped, as Redis's
 * processInlineBuffer does. Returns 0 with the words in argv[0, argc), or a terminal
 * error. */
static int parser_split_inline(struct resp_parser *p, size_t from, size_t end)
{
    char *b = p->buf;
    const char *nul = memchr(b + from, '\0', end - from);
    if (nul != NULL) { /* Redis splits a C string: a NUL ends the line's content */
        end = (size_t)(nul - b);
    }
    size_t i = from;
    p->argc = 0;
    while (i < end) { /* every round consumes >= 1 byte */
        while (i < end && is_space(b[i])) {
            i++;
        }
        if (i == end) {
            break;
        }
        const size_t start = i;
        size_t w = i;
        bool inq = false, insq = false, done = false;
        while (!done) {
            if (inq) {
                if (i == end) {
                    return parser_fail(p, RESP_EQUOTES,
                                       "Protocol error: unbalanced quotes in request");
                }
                if (b[i] == '\\' && i + 3 < end && b[i + 1] == 'x' && is_hex(b[i + 2]) &&
                    is_hex(b[i + 3])) {
                    b[w++] = (char)(hex_val(b[i + 2]) * 16 + hex_val(b[i + 3]));
                    i += 3;
                } else if (b[i] == '\\' && i + 1 < end) {
                    i++;
                    char c;
                    switch (b[i]) {
                    case 'n':
                        c = '\n';
                        break;
                    case 'r':
                        c = '\r';
                        break;
                    case 't':
                        c = '\t';
                        break;
                    case 'b':
                        c = '\b';
                        break;
                    case 'a':
                        c = '\a';
                        break;
                    default:
                        c = b[i];
                        break;
                    }
                    b[w++] = c;
                } else if (b[i] == '"') {
                    /* the closing quote must be followed by a space or nothing */
                    if (i + 1 < end && !is_space(b[i + 1])) {
                        return parser_fail(p, RESP_EQUOTES,
                                           "Protocol error: unbalanced quotes in request");
                    }
                    done = true;
                } else {
                    b[w++] = b[i];
                }
            } else if (insq) {
                if (i == end) {
                    return parser_fail(p, RESP_EQUOTES,
                                       "Protocol error: unbalanced quotes in request");
                }
                if (b[i] == '\\' && i + 1 < end && b[i + 1] == '\'') {
                    i++;
                    b[w++] = '\'';
                } else if (b[i] == '\'') {
                    if (i + 1 < end && !is_space(b[i + 1])) {
                        return parser_fail(p, RESP_EQUOTES,
                                           "Protocol error: unbalanced quotes in request");
                    }
                    done = true;
                } else {
                    b[w++] = b[i];
                }
            } else if (i == end) {
                done = true;
            } else {
                switch (b[i]) {
                case ' ':
                case '\n':
                case '\r':
                case '\t':
                    done = true;
                    break;
                case '"':
                    inq = true;
                    break;
                case '\'':
                    insq = true;
                    break;
                default:
                    b[w++] = b[i];
                    break;
                }
            }
            if (i < end) {
                i++;
            }
        }
        CC_ASSERT(w <= i);
        if (w > start) {
            const int rv = parser_argv_reserve(p, p->argc + 1);
            if (rv != 0) {
                return rv;
            }
            p->argv[p->argc].ptr = b + start;
            p->argv[p->argc].len = w - start;
            p->argc++;
        }
    }
    return 0;
}

/* ---- parser: next ---------------------------------------------------------------------- */

/* The command is complete: turn offsets into views, consume it, return it. */
static int parser_emit(struct resp_parser *p, struct resp_cmd *cmd, bool is_inline)
{
    CC_ASSERT(p->argc >= 1);
    if (!is_inline) {
        for (uint32_t i = 0; i < p->argc; i++) {
            p->argv[i].ptr = p->buf + p->arg_off[i];
        }
    }
    cmd->argc = p->argc;
    cmd->argv = p->argv;
    cmd->is_inline = is_inline;
    p->argc = 0;
    p->head = p->cur;
    p->scanned = 0;
    p->state = RESP__START;
    return 0;
}

int resp_parser_next(struct resp_parser *p, struct resp_cmd *cmd)
{
    if (p->err != 0) {
        return p->err;
    }
    /* Every two rounds consume at least one byte (START only picks the next state). */
    size_t budget = 2 * (p->len - p->cur) + 4;
    while (budget-- > 0) {
        switch (p->state) {
        case RESP__START:
            if (p->cur == p->len) {
                return RESP_EAGAIN;
            }
            p->scanned = 0;
            p->state = p->buf[p->cur] == '*' ? RESP__MB_COUNT : RESP__INLINE;
            break;

        case RESP__INLINE: {
            size_t nl;
            const int found = parser_line_find(p, '\n', &nl);
            if (found == LINE_TOO_LONG) {
                return parser_fail(p, RESP_EINLINETOOBIG, "Protocol error: too big inline request");
            }
            if (found == LINE_MORE) {
                return RESP_EAGAIN;
            }
            size_t end = nl;
            if (end > p->cur && p->buf[end - 1] == '\r') {
                end--;
            }
            const int rv = parser_split_inline(p, p->cur, end);
            if (rv != 0) {
                return rv;
            }
            p->cur = nl + 1;
            if (p->argc > 0) {
                return parser_emit(p, cmd, true);
            }
            p->head = p->cur; /* a blank line: skipped */
            p->state = RESP__START;
            break;
        }

        case RESP__MB_COUNT: {
            int64_t n = 0;
            size_t next = 0;
            const int rv = parser_header(p, true, &n, &next);
            if (rv != 0) {
                return rv;
            }
            if (n > (int64_t)p->lim.multibulk_max) {
                return parser_fail(p, RESP_EMBULKTOOMANY,
                                   "Protocol error: invalid multibulk length");
            }
            if (p->unauthenticated && n > (int64_t)RESP_UNAUTH_MULTIBULK_MAX) {
                return parser_fail(p, RESP_EUNAUTHMBULK,
                                   "Protocol error: unauthenticated multibulk length");
            }
            p->cur = next;
            p->scanned = 0;
            if (n <= 0) { /* "*0" and "*-1": an empty request, skipped as Redis does */
                p->head = p->cur;
                p->state = RESP__START;
                break;
            }
            p->mb_left = (uint32_t)n;
            p->argc = 0;
            p->state = RESP__BULK_HDR;
            break;
        }

        case RESP__BULK_HDR: {
            int64_t n = 0;
            size_t next = 0;
            const int rv = parser_header(p, false, &n, &next);
            if (rv != 0) {
                return rv;
            }
            if (n < 0) {
                return parser_fail(p, RESP_EBULKLEN, "Protocol error: invalid bulk length");
            }
            if ((uint64_t)n > RESP_BULK_BYTES_MAX) {
                return parser_fail(p, RESP_EBULKTOOBIG, "Protocol error: invalid bulk length");
            }
            if (p->unauthenticated && n > (int64_t)RESP_UNAUTH_BULK_BYTES_MAX) {
                return parser_fail(p, RESP_EUNAUTHBULK,
                                   "Protocol error: unauthenticated bulk length");
            }
            if ((uint64_t)n > p->lim.arg_bytes_max) {
                return parser_fail(p, RESP_EARGTOOBIG,
                                   "Protocol error: invalid bulk length (%llu bytes is over the "
                                   "%llu-byte argument limit)",
                                   (unsigned long long)n, (unsigned long long)p->lim.arg_bytes_max);
            }
            const int grv = parser_argv_reserve(p, p->argc + 1);
            if (grv != 0) {
                return grv;
            }
            p->cur = next;
            p->scanned = 0;
            p->bulk_len = (uint64_t)n;
            p->state = RESP__BULK_DATA;
            break;
        }

        case RESP__BULK_DATA: {
            if (p->len - p->cur < p->bulk_len + 2) {
                return RESP_EAGAIN;
            }
            const size_t end = p->cur + (size_t)p->bulk_len;
            if (p->buf[end] != '\r' || p->buf[end + 1] != '\n') {
                return parser_fail(p, RESP_EBULKEND,
                                   "Protocol error: bulk data not followed by CRLF");
            }
            CC_ASSERT(p->argc < p->argv_cap);
            p->arg_off[p->argc] = p->cur;
            p->argv[p->argc].ptr = NULL; /* set by parser_emit */
            p->argv[p->argc].len = (size_t)p->bulk_len;
            p->argc++;
            p->cur = end + 2;
            p->mb_left--;
            if (p->mb_left == 0) {
                return parser_emit(p, cmd, false);
            }
            p->scanned = 0;
            p->state = RESP__BULK_HDR;
            break;
        }

        default:
            CC_UNREACHABLE();
        }
    }
    CC_UNREACHABLE(); /* the budget covers every byte twice */
}

/* ---- encoder --------------------------------------------------------------------------- */

void resp_out_init(struct resp_out *o, size_t bytes_max)
{
    CC_ASSERT(bytes_max > 0);
    memset(o, 0, sizeof(*o));
    o->bytes_max = bytes_max;
    o->proto = 2;
}

void resp_out_free(struct resp_out *o)
{
    free(o->buf);
    memset(o, 0, sizeof(*o));
}

void resp_out_set_proto(struct resp_out *o, int proto)
{
    CC_ASSERT(proto == 2 || proto == 3);
    o->proto = (uint8_t)proto;
}

int resp_out_proto(const struct resp_out *o)
{
    return o->proto;
}

int resp_out_status(const struct resp_out *o)
{
    return o->err;
}

const uint8_t *resp_out_data(const struct resp_out *o, size_t *len)
{
    *len = o->len;
    return o->buf;
}

void resp_out_clear(struct resp_out *o)
{
    o->len = 0;
    o->err = 0;
    o->gen++;
}

size_t resp_out_take(struct resp_out *o, uint8_t **bytes)
{
    const size_t n = o->len;
    o->gen++;
    if (n == 0) {
        *bytes = NULL;
        return 0;
    }
    *bytes = o->buf;
    o->in_flight += n;
    o->buf = NULL;
    o->cap = 0;
    o->len = 0;
    return n;
}

void resp_out_sent(struct resp_out *o, size_t n)
{
    CC_ASSERT(n <= o->in_flight);
    o->in_flight -= n;
}

/* Makes room for n more bytes within bytes_max; the sticky error otherwise. */
static int out_room(struct resp_out *o, size_t n)
{
    if (o->err != 0) {
        return o->err;
    }
    CC_ASSERT(o->len + o->in_flight <= o->bytes_max);
    if (n > o->bytes_max - o->len - o->in_flight) {
        o->err = RESP_EOUTFULL;
        return o->err;
    }
    if (o->cap - o->len >= n) {
        return 0;
    }
    const size_t need = o->len + n;
    const size_t ceiling = o->bytes_max - o->in_flight; /* >= need */
    size_t ncap = o->cap > 0 ? o->cap : RESP_OUT_CHUNK_BYTES;
    while (ncap < need && ncap <= ceiling / 2) {
        ncap *= 2;
    }
    if (ncap < need) {
        ncap = need;
    }
    if (ncap > ceiling) {
        ncap = ceiling;
    }
    uint8_t *nbuf = realloc(o->buf, ncap);
    if (nbuf == NULL) {
        o->err = RESP_ENOMEM;
        return o->err;
    }
    o->buf = nbuf;
    o->cap = ncap;
    return 0;
}

/* The line terminator at p (two bytes, no NUL). */
static void put_crlf(void *p)
{
    uint8_t *b = p;
    b[0] = '\r';
    b[1] = '\n';
}

static int out_put(struct resp_out *o, const void *p, size_t n)
{
    const int rv = out_room(o, n);
    if (rv != 0) {
        return rv;
    }
    if (n > 0) {
        memcpy(o->buf + o->len, p, n);
        o->len += n;
    }
    return 0;
}

/* "<prefix><v>\r\n" into h (at least 24 bytes); returns its length. */
static size_t fmt_header(char *h, char prefix, int64_t v)
{
    const int n = snprintf(h, 24, "%c%lld\r\n", prefix, (long long)v);
    CC_ASSERT(n > 0 && n < 24);
    return (size_t)n;
}

static int out_header(struct resp_out *o, char prefix, int64_t v)
{
    char h[24];
    return out_put(o, h, fmt_header(h, prefix, v));
}

/* Copies n bytes turning CR and LF into spaces: a status or error line cannot hold them. */
static void copy_line(uint8_t *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char c = src[i];
        dst[i] = (uint8_t)((c == '\r' || c == '\n') ? ' ' : c);
    }
}

int resp_out_simple(struct resp_out *o, const char *s)
{
    const size_t n = strlen(s);
    const int rv = out_room(o, n + 3);
    if (rv != 0) {
        return rv;
    }
    o->buf[o->len] = '+';
    copy_line(o->buf + o->len + 1, s, n);
    put_crlf(o->buf + o->len + 1 + n);
    o->len += n + 3;
    return 0;
}

int resp_out_ok(struct resp_out *o)
{
    return out_put(o, "+OK\r\n", 5);
}

int resp_out_verrorf(struct resp_out *o, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    CC_ASSERT(n >= 0);
    /* room for "-ERR " + text + NUL (vsnprintf's) + CRLF */
    const int rv = out_room(o, 5 + (size_t)n + 3);
    if (rv != 0) {
        return rv;
    }
    char *at = (char *)o->buf + o->len;
    vsnprintf(at + 5, (size_t)n + 1, fmt, ap);
    size_t total;
    if (n > 0 && at[5] == '-') { /* the caller's own code: "-WRONGTYPE ..." */
        memmove(at, at + 5, (size_t)n);
        at[0] = '-';
        copy_line((uint8_t *)at + 1, at + 1, (size_t)n - 1);
        total = (size_t)n;
    } else {
        static const char err_code[5] = {'-', 'E', 'R', 'R', ' '};
        memcpy(at, err_code, sizeof(err_code));
        copy_line((uint8_t *)at + 5, at + 5, (size_t)n);
        total = 5 + (size_t)n;
    }
    put_crlf(at + total);
    o->len += total + 2;
    return 0;
}

int resp_out_errorf(struct resp_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int rv = resp_out_verrorf(o, fmt, ap);
    va_end(ap);
    return rv;
}

int resp_out_error(struct resp_out *o, const char *msg)
{
    return resp_out_errorf(o, "%s", msg);
}

int resp_out_int(struct resp_out *o, int64_t v)
{
    return out_header(o, ':', v);
}

int resp_out_bulk(struct resp_out *o, const void *p, size_t n)
{
    CC_ASSERT(n <= (size_t)INT64_MAX);
    char h[24];
    const size_t hl = fmt_header(h, '$', (int64_t)n);
    const int rv = out_room(o, hl + n + 2);
    if (rv != 0) {
        return rv;
    }
    memcpy(o->buf + o->len, h, hl);
    if (n > 0) {
        memcpy(o->buf + o->len + hl, p, n);
    }
    put_crlf(o->buf + o->len + hl + n);
    o->len += hl + n + 2;
    return 0;
}

int resp_out_bulk_cstr(struct resp_out *o, const char *s)
{
    return resp_out_bulk(o, s, strlen(s));
}

int resp_out_bulk_i64(struct resp_out *o, int64_t v)
{
    char t[24];
    const int n = snprintf(t, sizeof(t), "%lld", (long long)v);
    CC_ASSERT(n > 0 && (size_t)n < sizeof(t));
    return resp_out_bulk(o, t, (size_t)n);
}

int resp_out_null(struct resp_out *o)
{
    return o->proto == 3 ? out_put(o, "_\r\n", 3) : out_put(o, "$-1\r\n", 5);
}

int resp_out_null_array(struct resp_out *o)
{
    return o->proto == 3 ? out_put(o, "_\r\n", 3) : out_put(o, "*-1\r\n", 5);
}

static int64_t count_i64(uint64_t n)
{
    CC_ASSERT(n <= (uint64_t)INT64_MAX / 2);
    return (int64_t)n;
}

int resp_out_array(struct resp_out *o, uint64_t n)
{
    return out_header(o, '*', count_i64(n));
}

int resp_out_map(struct resp_out *o, uint64_t n)
{
    return o->proto == 3 ? out_header(o, '%', count_i64(n)) : out_header(o, '*', 2 * count_i64(n));
}

int resp_out_set(struct resp_out *o, uint64_t n)
{
    return out_header(o, o->proto == 3 ? '~' : '*', count_i64(n));
}

int resp_out_push(struct resp_out *o, uint64_t n)
{
    return out_header(o, o->proto == 3 ? '>' : '*', count_i64(n));
}

/* The shortest decimal text that reads back as d; integral values within +-2^62 print
 * as integers (Redis's d2string does the same with double2ll). */
static size_t fmt_double(char *t, size_t cap, double d)
{
    int n;
    if (isnan(d)) {
        n = snprintf(t, cap, "nan");
    } else if (isinf(d)) {
        n = snprintf(t, cap, "%s", d > 0 ? "inf" : "-inf");
    } else if (d == 0) {
        n = snprintf(t, cap, "%s", signbit(d) ? "-0" : "0");
    } else if (d > -4611686018427387904.0 && d < 4611686018427387904.0 &&
               d == (double)(long long)d) {
        n = snprintf(t, cap, "%lld", (long long)d);
    } else {
        n = 0;
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(t, cap, "%.*g", prec, d);
            if (strtod(t, NULL) == d) {
                break;
            }
        }
    }
    CC_ASSERT(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

int resp_out_double(struct resp_out *o, double d)
{
    char t[40];
    const size_t n = fmt_double(t, sizeof(t), d);
    if (o->proto == 2) {
        return resp_out_bulk(o, t, n);
    }
    const int rv = out_room(o, n + 3);
    if (rv != 0) {
        return rv;
    }
    o->buf[o->len] = ',';
    memcpy(o->buf + o->len + 1, t, n);
    put_crlf(o->buf + o->len + 1 + n);
    o->len += n + 3;
    return 0;
}

int resp_out_bool(struct resp_out *o, bool b)
{
    if (o->proto == 3) {
        return out_put(o, b ? "#t\r\n" : "#f\r\n", 4);
    }
    return out_put(o, b ? ":1\r\n" : ":0\r\n", 4);
}

int resp_out_verbatim(struct resp_out *o, const char *fmt, const void *p, size_t n)
{
    CC_ASSERT(strlen(fmt) == 3);
    if (o->proto == 2) {
        return resp_out_bulk(o, p, n);
    }
    CC_ASSERT(n <= (size_t)INT64_MAX - 4);
    char h[24];
    const size_t hl = fmt_header(h, '=', (int64_t)n + 4);
    const int rv = out_room(o, hl + 4 + n + 2);
    if (rv != 0) {
        return rv;
    }
    uint8_t *at = o->buf + o->len;
    memcpy(at, h, hl);
    memcpy(at + hl, fmt, 3);
    at[hl + 3] = ':';
    if (n > 0) {
        memcpy(at + hl + 4, p, n);
    }
    put_crlf(at + hl + 4 + n);
    o->len += hl + 4 + n + 2;
    return 0;
}

int resp_out_raw(struct resp_out *o, const void *p, size_t n)
{
    return out_put(o, p, n);
}

struct resp_out_defer resp_out_defer(struct resp_out *o)
{
    return (struct resp_out_defer){.pos = o->len, .gen = o->gen};
}

/* Inserts a header at d.pos, moving what was written since. */
static int out_defer_set(struct resp_out *o, struct resp_out_defer d, char prefix, int64_t n)
{
    if (o->err != 0) {
        return o->err;
    }
    CC_ASSERT(d.gen == o->gen);
    CC_ASSERT(d.pos <= o->len);
    char h[24];
    const size_t hl = fmt_header(h, prefix, n);
    const int rv = out_room(o, hl);
    if (rv != 0) {
        return rv;
    }
    memmove(o->buf + d.pos + hl, o->buf + d.pos, o->len - d.pos);
    memcpy(o->buf + d.pos, h, hl);
    o->len += hl;
    return 0;
}

int resp_out_defer_array(struct resp_out *o, struct resp_out_defer d, uint64_t n)
{
    return out_defer_set(o, d, '*', count_i64(n));
}

int resp_out_defer_map(struct resp_out *o, struct resp_out_defer d, uint64_t n)
{
    return o->proto == 3 ? out_defer_set(o, d, '%', count_i64(n))
                         : out_defer_set(o, d, '*', 2 * count_i64(n));
}

int resp_out_defer_set(struct resp_out *o, struct resp_out_defer d, uint64_t n)
{
    return out_defer_set(o, d, o->proto == 3 ? '~' : '*', count_i64(n));
}
