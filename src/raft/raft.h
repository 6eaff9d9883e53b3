/* raft.h -- the pure Raft consensus core.
 *
 * The core is a deterministic state machine. It never reads a clock, draws
 * randomness from the OS, allocates sockets or touches a disk. The host feeds
 * it inputs and collects effects:
 *
 *   inputs:   raft_tick()          one logical clock tick
 *             raft_step()          one message from a peer
 *             raft_propose()       a client command (leader only)
 *             raft_read_index()    a linearizable read request
 *             raft_persisted()     "the stored log is durable up to (index, term)"
 *             raft_snapshot_taken() the state machine snapshotted at an index
 *             raft_change()        a membership change (leader only)
 *             raft_transfer()      leader transfer (leader only)
 *
 *   effects:  raft_update_take() fills a struct raft_update with everything
 *             the calls since the previous take produced.
 *
 * Host contract for one struct raft_update, in this order:
 *   1. Persist: if snapshot != NULL store it (entries <= snapshot->index may
 *      then be dropped); if truncate_from != 0 delete stored entries with
 *      index >= truncate_from; append entries[]; if hard_state_changed store
 *      hard_state. Storage must apply these in order (a crash may lose a
 *      suffix of them, never a middle part).
 *   2. Send msgs_now[] at once. They do not depend on this batch's durability
 *      (Raft thesis §10.2.1: the leader replicates while its own write runs).
 *   3. When step 1 is durable: call raft_persisted(r, last_index, last_term)
 *      with the stored log's last entry, then send msgs_after_persist[].
 *      These carry votes and acknowledgements, which are promises that only
 *      durable state may make (Raft §5.1, Figure 2 "Persistent state").
 *   4. If snapshot != NULL restore the state machine from it, then apply
 *      committed[] in order. Committed entries are always durable locally.
 *   5. Serve each reads[] entry with status 0 once the state machine has
 *      applied read.index; a nonzero status fails that read.
 *
 * Memory: everything a raft_update points to is owned by the core and stays
 * valid until the next call into the core (of any kind). Copy what you keep.
 *
 * Terms of art follow the Raft paper (Ongaro & Ousterhout 2014) and the
 * thesis (Ongaro 2014), cited as §N and thesis §N.
 */
#ifndef CONCLAVE_RAFT_H
#define CONCLAVE_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ------------------------------------------------------------ */

#define RAFT_SERVERS_MAX 9            /* 7 voters + 2 learners; bounds quorum math */
#define RAFT_APPEND_ENTRIES_MAX 64    /* entries per AppendEntries; bounds message size */
#define RAFT_APPEND_BYTES_MAX (1u << 20) /* entry bytes per AppendEntries (beyond the first
                                            entry), so one message fits a transport frame */
#define RAFT_INFLIGHT_MAX 32          /* unacked AppendEntries per follower (pipelining window) */
#define RAFT_ENTRY_BYTES_MAX (1u << 20) /* one command; bigger values belong in chunks */
#define RAFT_UNCOMMITTED_MAX 8192     /* leader backpressure: proposals beyond this get RAFT_EFULL */
#define RAFT_READS_MAX 4096           /* queued ReadIndex requests on one leader */
#define RAFT_CONFIG_BYTES_MAX (4 + RAFT_SERVERS_MAX * 5) /* encoded raft_config */

_Static_assert(RAFT_SERVERS_MAX >= 7, "the simulator runs clusters of up to 7 voters");
_Static_assert(RAFT_INFLIGHT_MAX * RAFT_APPEND_ENTRIES_MAX <= RAFT_UNCOMMITTED_MAX,
               "a full pipeline must not exceed the uncommitted bound");

/* ---- errors (negative, in the raft range) --------------------------------- */

enum {
    RAFT_ENOTLEADER = -1101, /* this node is not the leader; see raft_leader() */
    RAFT_EBUSY = -1102,      /* leader transfer or membership change in progress */
    RAFT_EFULL = -1103,      /* a named queue limit was hit (uncommitted log, reads) */
    RAFT_ETOOBIG = -1104,    /* entry larger than RAFT_ENTRY_BYTES_MAX */
    RAFT_EINVAL = -1105,     /* malformed argument or message */
    RAFT_ENOMEM = -1106,     /* allocation failed */
    RAFT_ECONFIG = -1107,    /* membership change not valid for the current config */
    RAFT_ENOTREADY = -1108,  /* leader has not committed an entry in its term yet */
    RAFT_ECATCHUP = -1109,   /* learner too far behind to be promoted */
    RAFT_ESTEPPEDDOWN = -1110, /* leadership lost while a read was pending */
};
const char *raft_strerror(int rv);

/* ---- log entries and configurations ------------------------------------- */

enum raft_entry_type {
    RAFT_ENTRY_COMMAND = 1, /* opaque state machine command */
    RAFT_ENTRY_NOOP = 2,    /* appended by every new leader (§5.4.2, §8) */
    RAFT_ENTRY_CONFIG = 3,  /* encoded struct raft_config; takes effect when appended */
};

struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type;     /* enum raft_entry_type */
    uint32_t n_bytes;
    uint8_t *bytes;   /* owned by whoever holds the entry */
};

enum raft_server_role { RAFT_VOTER = 1, RAFT_LEARNER = 2 };

struct raft_server {
    uint32_t id; /* nonzero */
    uint8_t role; /* enum raft_server_role */
};

struct raft_config {
    uint32_t n_servers;
    struct raft_server servers[RAFT_SERVERS_MAX];
};

int raft_config_encode(const struct raft_config *c, uint8_t *buf, size_t cap, size_t *n_out);
int raft_config_decode(struct raft_config *c, const uint8_t *buf, size_t n);
/* Returns the server's role in c, or 0 when absent. */
int raft_config_role(const struct raft_config *c, uint32_t id);
uint32_t raft_config_n_voters(const struct raft_config *c);

/* The first entry of a brand-new cluster: index 1, term 1, a CONFIG entry.
 * Every founding member stores the same one. bytes points into buf. */
int raft_bootstrap_entry(const struct raft_config *c, uint8_t *buf, size_t cap,
                         struct raft_entry *out);

struct raft_snapshot {
    uint64_t index; /* last entry the snapshot covers */
    uint64_t term;  /* that entry's term */
    struct raft_config config; /* configuration as of index */
    uint64_t n_bytes;
    uint8_t *bytes; /* opaque state machine image */
};

/* term and vote must be durable before any message that depends on them. commit
 * is a hint: storing it lets a restart apply sooner, losing it is safe. */
struct raft_hard_state {
    uint64_t term;
    uint32_t vote; /* 0 = none */
    uint64_t commit;
};

/* ---- messages ----------------------------------------------------------- */

enum raft_msg_type {
    RAFT_MSG_PREVOTE = 1,     /* thesis §9.6 */
    RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_VOTE,            /* RequestVote §5.2 */
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_APPEND,          /* AppendEntries §5.3 */
    RAFT_MSG_APPEND_RESP,
    RAFT_MSG_HEARTBEAT,       /* empty AppendEntries carrying commit + read round */
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_SNAPSHOT,        /* InstallSnapshot §7, one chunk */
    RAFT_MSG_SNAPSHOT_RESP,
    RAFT_MSG_TIMEOUT_NOW,     /* leader transfer, thesis §3.10 */
    RAFT_MSG_READ_INDEX,      /* follower forwards a read to the leader, thesis §6.4 */
    RAFT_MSG_READ_INDEX_RESP,
    RAFT_MSG_TYPE_MAX = RAFT_MSG_READ_INDEX_RESP,
};
const char *raft_msg_type_name(int type);

struct raft_msg_vote { /* PREVOTE, VOTE */
    uint64_t last_log_index;
    uint64_t last_log_term;
    bool transfer; /* caused by TimeoutNow: bypasses leader stickiness */
};

struct raft_msg_vote_resp { /* PREVOTE_RESP, VOTE_RESP */
    bool granted;
};

struct raft_msg_append { /* APPEND */
    uint64_t prev_index;
    uint64_t prev_term;
    uint64_t commit;
    uint32_t n_entries;
    struct raft_entry *entries;
};

struct raft_msg_append_resp { /* APPEND_RESP */
    bool reject;
    uint64_t index;      /* success: last index known to match the leader;
                            reject: the prev_index that was rejected */
    uint64_t hint_index; /* reject: first index of hint_term in our log, or our last+1 */
    uint64_t hint_term;  /* reject: term of our entry at prev_index, 0 if we have none */
};

struct raft_msg_heartbeat { /* HEARTBEAT, HEARTBEAT_RESP */
    uint64_t commit;   /* HEARTBEAT: min(leader commit, follower match) */
    uint64_t round;    /* read round; the response echoes it (ReadIndex, lease) */
};

struct raft_msg_snapshot { /* SNAPSHOT (one chunk) */
    uint64_t index;
    uint64_t term;
    struct raft_config config;
    uint64_t n_total;  /* size of the whole snapshot */
    uint64_t offset;   /* where this chunk starts */
    uint32_t n_bytes;
    uint8_t *bytes;
};

struct raft_msg_snapshot_resp { /* SNAPSHOT_RESP */
    uint64_t index;    /* snapshot being acknowledged */
    uint64_t offset;   /* next byte wanted; == n_total when installed */
    bool done;         /* installed (durable) */
};

struct raft_msg_read { /* READ_INDEX, READ_INDEX_RESP */
    uint64_t read_id;  /* the follower host's id for the request */
    uint64_t index;    /* RESP: read index to wait for */
    int32_t status;    /* RESP: 0 or a RAFT_E* code */
};

struct raft_msg {
    uint8_t type; /* enum raft_msg_type */
    uint32_t from;
    uint32_t to;
    uint64_t term;
    union {
        struct raft_msg_vote vote;
        struct raft_msg_vote_resp vote_resp;
        struct raft_msg_append append;
        struct raft_msg_append_resp append_resp;
        struct raft_msg_heartbeat heartbeat;
        struct raft_msg_snapshot snapshot;
        struct raft_msg_snapshot_resp snapshot_resp;
        struct raft_msg_read read;
    };
};

/* Deep copy (entries and chunk bytes) for hosts that queue messages. The copy
 * is freed with raft_msg_free_copy(). Returns 0 or RAFT_ENOMEM. */
int raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src);
void raft_msg_free_copy(struct raft_msg *m);

/* ---- the update (effects) ---------------------------------------------- */

struct raft_read_ready {
    uint64_t read_id;
    uint64_t index;  /* serve once applied >= index */
    int status;      /* 0, or RAFT_ENOTLEADER / RAFT_ESTEPPEDDOWN / RAFT_EFULL */
};

struct raft_update {
    /* 1. persist, in this order */
    const struct raft_snapshot *snapshot; /* installed from a leader; NULL if none */
    uint64_t truncate_from;               /* 0 = none */
    const struct raft_entry *entries;
    uint32_t n_entries;
    bool hard_state_changed;
    struct raft_hard_state hard_state;

    /* 2. and 3. messages */
    const struct raft_msg *msgs_now;
    uint32_t n_msgs_now;
    const struct raft_msg *msgs_after_persist;
    uint32_t n_msgs_after_persist;

    /* 4. apply */
    const struct raft_entry *committed;
    uint32_t n_committed;

    /* 5. reads */
    const struct raft_read_ready *reads;
    uint32_t n_reads;
};

/* ---- options and lifecycle --------------------------------------------- */

struct raft_options {
    uint32_t id;                 /* this server, nonzero */
    uint32_t election_ticks;     /* T: timeouts are drawn from [T, 2T) (§5.2) */
    uint32_t heartbeat_ticks;    /* < T; one read round per heartbeat */
    bool prevote;                /* thesis §9.6 */
    bool check_quorum;           /* leader steps down without a quorum for T ticks (thesis §6.2) */
    bool lease_read;             /* off by default; see raft_read_index() */
    uint32_t lease_drift_ticks;  /* assumed max clock drift over one lease, in ticks */
    uint32_t snapshot_chunk_bytes; /* InstallSnapshot chunk size */
    uint32_t trailing_entries;   /* entries kept behind a snapshot for slow followers */
    uint64_t random_seed;        /* the core's only source of randomness */
};
void raft_options_default(struct raft_options *o, uint32_t id, uint64_t random_seed);

/* What the host recovered from storage. Everything is copied; the caller keeps
 * ownership. entries must be contiguous and start at snapshot->index + 1 or
 * earlier (entries covered by the snapshot are skipped). */
struct raft_recovered {
    struct raft_hard_state hard_state;
    const struct raft_snapshot *snapshot; /* NULL if none */
    const struct raft_entry *entries;
    uint64_t n_entries;
};

struct raft;
int raft_new(const struct raft_options *o, const struct raft_recovered *rec, struct raft **out);
void raft_free(struct raft *r);

/* ---- inputs -------------------------------------------------------------- */

void raft_tick(struct raft *r);
/* Returns 0, or RAFT_EINVAL for a malformed message (which is dropped). */
int raft_step(struct raft *r, const struct raft_msg *m);
/* Leader only. *index_out gets the entry's index; the command is committed
 * when an entry with that index and raft_term() at propose time is applied. */
int raft_propose(struct raft *r, const void *bytes, uint32_t n_bytes, uint64_t *index_out);
/* Queue a linearizable read (thesis §6.4). The answer arrives in
 * raft_update.reads with the same read_id. Reads queued while a heartbeat
 * round is in flight share the next round (batching). On a follower the
 * request is forwarded to the leader; if that message is lost the read never
 * answers, so the host must time reads out.
 *
 * With options.lease_read the leader answers without a round while its lease
 * holds: a quorum acknowledged a heartbeat sent less than
 * election_ticks - lease_drift_ticks ticks ago. This is safe only if no
 * server's clock runs faster than the leader's by more than lease_drift_ticks
 * per election timeout (thesis §6.4.1); ReadIndex has no such assumption. */
int raft_read_index(struct raft *r, uint64_t read_id);
void raft_persisted(struct raft *r, uint64_t index, uint64_t term);
/* The state machine has a snapshot covering every entry up to index (which
 * must be <= the last index the host applied). The core copies bytes,
 * compacts its log behind it (keeping trailing_entries) and uses it for
 * InstallSnapshot. */
int raft_snapshot_taken(struct raft *r, uint64_t index, const void *bytes, uint64_t n_bytes);
/* The same, taking ownership of bytes (malloc'd) on success: no copy of a big image. */
int raft_snapshot_adopt(struct raft *r, uint64_t index, uint8_t *bytes, uint64_t n_bytes);
/* What raft_snapshot_taken(index) would record, bytes aside (index, term, config): for a
 * host that writes the image elsewhere first. RAFT_EINVAL when index is not eligible. */
int raft_snapshot_meta(const struct raft *r, uint64_t index, struct raft_snapshot *out);

enum raft_change_op { RAFT_ADD_VOTER = 1, RAFT_ADD_LEARNER, RAFT_PROMOTE, RAFT_REMOVE };
/* Single-server membership change (thesis §4.1): leader only, one at a time,
 * and only after the leader committed an entry in its own term (the fix for
 * the single-server change bug, raft-dev 2015). */
int raft_change(struct raft *r, enum raft_change_op op, uint32_t id, uint64_t *index_out);
/* Leader transfer (thesis §3.10). Proposals get RAFT_EBUSY until it ends. */
int raft_transfer(struct raft *r, uint32_t target);

/* ---- effects ------------------------------------------------------------- */

/* Collects the effects of all calls since the previous take. */
void raft_update_take(struct raft *r, struct raft_update *u);
bool raft_update_pending(const struct raft *r);

/* ---- queries ----------------------------------------------------------- */

enum raft_role { RAFT_FOLLOWER = 1, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };
const char *raft_role_name(int role);

uint32_t raft_id(const struct raft *r);
int raft_role(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint32_t raft_vote(const struct raft *r);
uint32_t raft_leader(const struct raft *r);      /* 0 = unknown */
uint64_t raft_commit(const struct raft *r);
uint64_t raft_applied(const struct raft *r);     /* last index handed out in committed[] */
uint64_t raft_first_index(const struct raft *r); /* first entry still in memory */
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_last_term(const struct raft *r);
uint64_t raft_persisted_index(const struct raft *r);
/* Term of the entry at index: from the log or the snapshot; 0 if unknown. */
uint64_t raft_term_at(const struct raft *r, uint64_t index);
/* NULL when the entry is not in memory (compacted or beyond the end). */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
const struct raft_config *raft_config(const struct raft *r); /* latest appended */
const struct raft_snapshot *raft_snapshot(const struct raft *r); /* NULL if none */
uint32_t raft_transfer_target(const struct raft *r); /* 0 = none */

enum raft_progress_state { RAFT_PROBE = 1, RAFT_REPLICATE, RAFT_SNAPSHOTTING };
struct raft_progress_info {
    uint64_t match;
    uint64_t next;
    uint32_t id;
    uint8_t role;
    uint8_t state;   /* enum raft_progress_state */
    bool recent_active;
};
/* Leader only: fills up to cap entries, returns the count. */
uint32_t raft_progress(const struct raft *r, struct raft_progress_info *out, uint32_t cap);

#endif
