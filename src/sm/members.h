/* members.h -- the replicated member directory: who is reachable where.
 *
 * Raft configuration entries carry only member ids and roles (raft.h). The addresses that
 * go with them -- a member's name, its peer (Raft) address and its client HTTP address --
 * live here, in a small replicated state machine, so that every node learns the address of
 * a member added at run time, including nodes that restart or install a snapshot later.
 *
 * The membership API writes the directory entry first and the configuration change
 * second: when the leader appends "add server 4", it already knows where 4 listens.
 * Entries may exist for ids that are not (or no longer) in the configuration; the node
 * only dials members of the configuration.
 *
 * Commands (byte 0 is the composite machine's tag, sm/machine.h):
 *   u8 SM_TAG_MEMBERS, u8 MEMBERS_FORMAT_VERSION, u8 type, body
 *   SET = u32 id, bytes name, bytes peer_addr, bytes http_addr   (bytes = u32 len + bytes)
 *   DEL = u32 id
 * Decoding is strict (unknown types, bad lengths, trailing bytes: MEMBERS_EMALFORMED).
 * SET replaces the entry of that id; a name held by another id is MEMBERS_ENAMETAKEN and
 * changes nothing, so names stay unique. DEL of an unknown id succeeds and changes nothing.
 *
 * Pure and deterministic: no IO, no clock. Errors are -2100..-2119.
 */
#ifndef CONCLAVE_SM_MEMBERS_H
#define CONCLAVE_SM_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMBERS_FORMAT_VERSION 1u
#define MEMBERS_NAME_BYTES     64u  /* incl. NUL; names: [A-Za-z0-9._-], 1..63 chars */
#define MEMBERS_ADDR_BYTES     262u /* incl. NUL; "host:port", as TRANSPORT_ADDR_BYTES_MAX */
/* Entries kept: twice the largest Raft configuration, so a full cluster can replace
 * every member once before old entries must be deleted. MEMBERS_EFULL beyond. */
#define MEMBERS_MAX 18u

enum {
    MEMBERS_EMALFORMED = -2100, /* command or snapshot bytes do not decode */
    MEMBERS_EFORMAT = -2101,    /* unknown format version */
    MEMBERS_EINVAL = -2102,     /* id 0, empty or non-printable name, address too long */
    MEMBERS_ENAMETAKEN = -2103, /* another id already has this name */
    MEMBERS_EFULL = -2104,      /* MEMBERS_MAX entries already */
    MEMBERS_ESPACE = -2105,     /* the caller's buffer is too small */
};
const char *members_strerror(int rv);

enum members_cmd_type { MEMBERS_SET = 1, MEMBERS_DEL = 2 };

struct members_entry {
    uint32_t id;
    char name[MEMBERS_NAME_BYTES];
    char peer_addr[MEMBERS_ADDR_BYTES];
    char http_addr[MEMBERS_ADDR_BYTES]; /* may be empty: not known yet */
};

/* The directory, sorted by id. Embedded in its owner; zero-initialised = empty. */
struct members {
    uint32_t n;
    struct members_entry e[MEMBERS_MAX];
};

/* Validates an entry (id, name charset and length, address lengths). */
int members_check(const struct members_entry *e);

/* Encoders write into a caller buffer of at least MEMBERS_CMD_BYTES_MAX bytes. */
#define MEMBERS_CMD_BYTES_MAX (3u + 4u + 3u * 4u + MEMBERS_NAME_BYTES + 2u * MEMBERS_ADDR_BYTES)
int members_encode_set(const struct members_entry *e, uint8_t *buf, size_t cap, size_t *n);
int members_encode_del(uint32_t id, uint8_t *buf, size_t cap, size_t *n);

/* Applies one command. Returns 0 or an error, in which case nothing changed. */
int members_apply(struct members *m, const uint8_t *cmd, size_t n);

const struct members_entry *members_find(const struct members *m, uint32_t id);
const struct members_entry *members_find_name(const struct members *m, const char *name);

/* Snapshot section: u32 count, then per entry u32 id and the three strings as bytes, in
 * id order. encode writes into buf (cap >= MEMBERS_SNAPSHOT_BYTES_MAX); decode is strict
 * (ids ascending and unique, names unique, every entry valid). */
#define MEMBERS_SNAPSHOT_BYTES_MAX \
    (4u + MEMBERS_MAX * (4u + 3u * 4u + MEMBERS_NAME_BYTES + 2u * MEMBERS_ADDR_BYTES))
int members_encode(const struct members *m, uint8_t *buf, size_t cap, size_t *n);
int members_decode(const uint8_t *buf, size_t n, struct members *out);
uint64_t members_digest(const struct members *m);

#endif /* CONCLAVE_SM_MEMBERS_H */
