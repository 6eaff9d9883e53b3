/* fuzz_msgcodec.c -- arbitrary bytes as a peer frame (header + payload), through
 * msgcodec_frame_decode(), and as a bare RAFT payload through msgcodec_decode().
 *
 * What must hold for every input:
 *   - the decoders never read outside the input (ASan) and never crash; a refusal is a
 *     named MSGCODEC_E* code;
 *   - an accepted frame re-encodes to exactly the input bytes, and decoding that again
 *     gives an equal message (one canonical encoding, so encoder and decoder agree);
 *   - an accepted message fits the limits the transport relies on.
 *
 * Input: byte 0 is a mode. Bit 0 rewrites the header first (magic, version, reserved,
 * payload_len = the rest, CRC), so the fuzzer reaches the payload rules through the
 * frame path; bit 1 picks the kind (HELLO/RAFT) in that rewrite. The rest is the frame.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "node/msgcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(int rv)
{
    CC_ASSERT(rv <= MSGCODEC_ETRUNCATED);
    CC_ASSERT(rv >= MSGCODEC_EHELLO);
    CC_ASSERT(rv != MSGCODEC_ENOSPC);
    CC_ASSERT(rv != MSGCODEC_EINVAL);
}

static void check_msg(const struct raft_msg *m)
{
    CC_ASSERT(m->type >= 1 && m->type <= RAFT_MSG_TYPE_MAX);
    if (m->type == RAFT_MSG_APPEND) {
        CC_ASSERT(m->append.n_entries <= RAFT_APPEND_ENTRIES_MAX);
        for (uint32_t i = 0; i < m->append.n_entries; i++) {
            CC_ASSERT(m->append.entries[i].n_bytes <= RAFT_ENTRY_BYTES_MAX);
        }
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        CC_ASSERT(m->snapshot.config.n_servers <= RAFT_SERVERS_MAX);
        CC_ASSERT(m->snapshot.n_bytes <= MSGCODEC_CHUNK_BYTES_MAX);
    }
}

/* The payload path on its own: decode, re-encode to the same bytes, decode again. */
static void fuzz_payload(const uint8_t *p, size_t n)
{
    static struct msgcodec_scratch scratch_a;
    static struct msgcodec_scratch scratch_b;
    struct raft_msg m;
    int rv = msgcodec_decode(p, n, &m, &scratch_a);
    if (rv != 0) {
        check_refusal(rv);
        return;
    }
    check_msg(&m);
    CC_ASSERT(msgcodec_payload_size(&m) == n);
    uint8_t *again = malloc(n > 0 ? n : 1);
    CC_ASSERT(again != NULL);
    size_t n_again = 0;
    rv = msgcodec_encode(&m, again, n, &n_again);
    CC_ASSERT(rv == 0);
    CC_ASSERT(n_again == n);
    CC_ASSERT(memcmp(again, p, n) == 0);
    struct raft_msg m2;
    rv = msgcodec_decode(again, n_again, &m2, &scratch_b);
    CC_ASSERT(rv == 0);
    CC_ASSERT(msgcodec_msg_equal(&m, &m2));
    free(again);
}

static void fuzz_frame(const uint8_t *p, size_t n)
{
    static struct msgcodec_scratch scratch_a;
    static struct msgcodec_scratch scratch_b;
    struct msgcodec_frame f;
    int rv = msgcodec_frame_decode(p, n, &f, &scratch_a);
    if (rv != 0) {
        check_refusal(rv);
        return;
    }
    uint8_t *again = malloc(n > 0 ? n : 1);
    CC_ASSERT(again != NULL);
    size_t n_again = 0;
    if (f.kind == MSGCODEC_KIND_HELLO) {
        CC_ASSERT(f.hello.id != 0);
        rv = msgcodec_frame_encode_hello(&f.hello, again, n, &n_again);
    } else {
        CC_ASSERT(f.kind == MSGCODEC_KIND_RAFT);
        check_msg(&f.msg);
        rv = msgcodec_frame_encode_raft(&f.msg, again, n, &n_again);
    }
    CC_ASSERT(rv == 0);
    CC_ASSERT(n_again == n);
    CC_ASSERT(memcmp(again, p, n) == 0);
    struct msgcodec_frame f2;
    rv = msgcodec_frame_decode(again, n_again, &f2, &scratch_b);
    CC_ASSERT(rv == 0);
    CC_ASSERT(f2.kind == f.kind);
    if (f.kind == MSGCODEC_KIND_HELLO) {
        CC_ASSERT(f2.hello.id == f.hello.id);
        CC_ASSERT(f2.hello.cluster_id == f.hello.cluster_id);
    } else {
        CC_ASSERT(msgcodec_msg_equal(&f.msg, &f2.msg));
    }
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size - 1 > MSGCODEC_FRAME_BYTES_MAX) {
        return 0;
    }
    const uint8_t mode = data[0];
    const size_t n = size - 1;
    /* an exact-size copy, so ASan catches a read one past the end */
    uint8_t *p = malloc(n > 0 ? n : 1);
    CC_ASSERT(p != NULL);
    memcpy(p, data + 1, n);
    if ((mode & 1) && n >= MSGCODEC_HEADER_BYTES) {
        const uint8_t kind = (mode & 2) ? MSGCODEC_KIND_HELLO : MSGCODEC_KIND_RAFT;
        msgcodec_header_encode(p, kind, p + MSGCODEC_HEADER_BYTES,
                               (uint32_t)(n - MSGCODEC_HEADER_BYTES));
    }
    fuzz_frame(p, n);
    if (n >= MSGCODEC_HEADER_BYTES) {
        fuzz_payload(p + MSGCODEC_HEADER_BYTES, n - MSGCODEC_HEADER_BYTES);
    }
    free(p);
    return 0;
}
