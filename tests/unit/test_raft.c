/* test_raft.c -- unit tests for the pure Raft core (src/raft/raft.h), driven through
 * the deterministic in-memory network of raft_harness.h.
 *
 * Each test stages one scenario from the Raft paper (Ongaro & Ousterhout 2014, "§N")
 * or the thesis (Ongaro 2014, "thesis §N") and checks the outcome through the public
 * API only. On top of the per-test assertions, the harness checks Election Safety,
 * State Machine Safety, vote/term durability and ack-after-persist on every update.
 *
 * Where a scenario proves something only by contrast (PreVote, CheckQuorum, hints),
 * the test also runs the negative control, so it is visible that the test can fail.
 *
 * Conventions: T = TH_ELECTION_TICKS = 10, heartbeat every tick; clusters boot from
 * the shared CONFIG entry at index 1, term 1, so a fresh leader's no-op sits at 2.
 * Set TH_TRACE=1 to print every delivered message.
 *
 * Durability is staged with the harness's slow disk (defer_persist + th_flush): writes
 * are in progress until flushed, and a crash before that loses them.
 *
 * Sections: basics | Figure 7 | Figure 8 | elections | stale leader | PreVote |
 * durability | ReadIndex | transfer | membership | snapshots | bad input | main.
 */
#include "raft_harness.h"

#define T TH_ELECTION_TICKS

static uint32_t bit(uint32_t id)
{
    return 1u << id;
}

/* Command entry whose bytes name its (term, index): the same (term, index) on two
 * logs means the same bytes, as Log Matching (§5.3) says it must. */
static void make_cmd(struct raft_entry *e, uint64_t term, uint64_t index, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "e%llu.%llu", (unsigned long long)term, (unsigned long long)index);
    e->term = term;
    e->index = index;
    e->type = RAFT_ENTRY_COMMAND;
    e->n_bytes = (uint32_t)n;
    e->bytes = (uint8_t *)buf;
}

/* Starts node id with hard-state term hs_term and a log whose terms are terms[0..n),
 * for indexes 1..n. Index 1 is the bootstrap CONFIG entry (terms[0] must be 1). */
static void start_with_log(struct th_net *net, uint32_t id, uint64_t hs_term, const uint8_t *terms,
                           uint32_t n, const struct raft_config *c)
{
    static char bufs[16][32];
    uint8_t cfg[RAFT_CONFIG_BYTES_MAX];
    struct raft_entry ents[16];
    assert_true(n >= 1 && n <= 16);
    assert_int_equal(terms[0], 1);
    ASSERT_RC(raft_bootstrap_entry(c, cfg, sizeof(cfg), &ents[0]), 0);
    for (uint32_t i = 1; i < n; i++) {
        make_cmd(&ents[i], terms[i], i + 1, bufs[i], sizeof(bufs[i]));
    }
    struct raft_hard_state hs = {.term = hs_term, .vote = 0, .commit = 0};
    th_start(net, id, &hs, NULL, ents, n);
}

/* ==== basics ============================================================== */

static void test_elect_and_replicate(void **state)
{
    struct th_net *net = th_net_new(3, 1);
    th_boot(net, 3);
    uint64_t term = th_elect(net, 1);
    ASSERT_EQ(term, 2);
    struct raft *l = th_raft(net, 1);
    ASSERT_EQ(raft_last_index(l), 2);
    ASSERT_EQ(raft_entry_at(l, 2)->type, RAFT_ENTRY_NOOP);

    uint64_t idx = th_propose(net, 1, "hello");
    ASSERT_EQ(idx, 3);
    th_settle(net, 1, 3, 5);
    for (uint32_t id = 1; id <= 3; id++) {
        ASSERT_EQ(net->nodes[id].applied, 3);
        ASSERT_EQ(raft_leader(th_raft(net, id)), 1);
        ASSERT_EQ(raft_term(th_raft(net, id)), 2);
        th_assert_same_log(net, 1, id);
        th_assert_store_matches(net, id);
    }
    const struct raft_entry *e = raft_entry_at(th_raft(net, 2), 3);
    assert_non_null(e);
    ASSERT_EQ(e->n_bytes, 5);
    assert_memory_equal(e->bytes, "hello", 5);
    th_net_free(net);
}

/* ==== Figure 7 ============================================================= */

/* §5.3, Figure 7: a leader for term 8 meets six followers whose logs are missing
 * entries (a, b), have extra uncommitted entries (c, d), or both (e, f). AppendEntries'
 * consistency check must bring every one of them to exactly the leader's log. */
static void run_fig7(bool prevote, bool check_quorum)
{
    static const uint8_t leader_terms[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
    static const struct {
        const char *name;
        uint8_t n;
        uint8_t terms[12];
        uint64_t term;          /* current term the follower had reached */
        uint64_t truncate_from; /* first conflicting index it must delete; 0 = none */
    } f[] = {
        {"a", 9, {1, 1, 1, 4, 4, 5, 5, 6, 6}, 6, 0},
        {"b", 4, {1, 1, 1, 4}, 4, 0},
        {"c", 11, {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}, 6, 11},
        {"d", 12, {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}, 7, 11},
        {"e", 7, {1, 1, 1, 4, 4, 4, 4}, 4, 6},
        {"f", 11, {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}, 3, 4},
    };
    struct th_net *net = th_net_new(7, 7);
    net->prevote = prevote;
    net->check_quorum = check_quorum;
    struct raft_config c;
    th_config_make(&c, 7, 0);
    start_with_log(net, 1, 7, leader_terms, 10, &c);
    for (uint32_t i = 0; i < 6; i++) {
        start_with_log(net, 2 + i, f[i].term, f[i].terms, f[i].n, &c);
    }

    /* Only the leader ticks. c and d refuse their votes (their logs are more up to
     * date, §5.4.1); a, b, e, f grant, which is 5 of 7. */
    th_campaign(net, 1);
    th_deliver_all(net);
    struct raft *l = th_raft(net, 1);
    ASSERT_EQ(raft_role(l), RAFT_LEADER);
    ASSERT_EQ(raft_term(l), 8);
    ASSERT_EQ(raft_last_index(l), 11);
    for (uint32_t i = 0; i < 6; i++) {
        bool more_up_to_date = f[i].name[0] == 'c' || f[i].name[0] == 'd';
        ASSERT_EQ(net->votes_granted_by[2 + i], more_up_to_date ? 0 : 1);
        ASSERT_EQ(net->votes_refused_by[2 + i], more_up_to_date ? 1 : 0);
    }
    const struct raft_entry *noop = raft_entry_at(l, 11);
    assert_non_null(noop);
    ASSERT_EQ(noop->type, RAFT_ENTRY_NOOP);
    ASSERT_EQ(noop->term, 8);

    /* Heartbeats only if plain delivery did not finish the repair. */
    th_settle(net, 1, 11, 20);

    for (uint32_t i = 0; i < 6; i++) {
        uint32_t id = 2 + i;
        struct raft *r = th_raft(net, id);
        if (!prevote) {
            print_message("  follower (%s): last %llu, truncate_from %llu, rejects %llu\n",
                          f[i].name, (unsigned long long)raft_last_index(r),
                          (unsigned long long)net->nodes[id].min_truncate_from,
                          (unsigned long long)net->append_rejects_by[id]);
        }
        ASSERT_EQ(raft_last_index(r), 11);
        for (uint64_t k = 1; k <= 11; k++) {
            ASSERT_EQ(raft_term_at(r, k), raft_term_at(l, k));
        }
        th_assert_same_log(net, 1, id);
        th_assert_store_matches(net, id);
        /* Extra and conflicting entries went through truncate_from, at the first
         * conflict (§5.3: "delete the existing entry and all that follow it"). */
        ASSERT_EQ(net->nodes[id].min_truncate_from, f[i].truncate_from);
        ASSERT_EQ(raft_term(r), 8);
    }
    /* (d)'s two term-7 entries are gone; the store ends with the leader's no-op. */
    ASSERT_EQ(net->nodes[5].store.n_entries, 11);
    ASSERT_EQ(net->nodes[5].store.entries[10].term, 8);
    /* (f) diverges from index 4 on: with the conflict-term hint the leader skips a
     * whole term per rejection instead of one index (§5.3, the optimisation at the
     * end of the section); without it this would take about 8 rejections. */
    ASSERT_GE(net->append_rejects_by[7], 1);
    ASSERT_LE(net->append_rejects_by[7], 3);
    th_net_free(net);
}

static void test_fig7_log_repair(void **state)
{
    run_fig7(false, false);
}

/* The same with PreVote and CheckQuorum: c and d refuse the pre-vote as well, the
 * other four grant it, and the real election and the repair go as before. */
static void test_fig7_log_repair_prevote(void **state)
{
    run_fig7(true, true);
}

/* ==== Figure 8 ============================================================= */

struct fig8 {
    int phase;
};

/* a: S1 leads term 2, its no-op reaches S2 only.
 * b: S1 is down; S5 leads term 3 and keeps its no-op to itself.
 * c: S1 is back, leads term 4 and replicates index 2 (term 2) to S2 and S3 but has
 *    not sent its term-4 entry yet (entries above 2 are trimmed off its appends). */
static enum th_verdict fig8_filter(struct th_net *net, struct raft_msg *m, void *arg)
{
    const struct fig8 *f = arg;
    bool carries_log =
        m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAPSHOT;
    switch (f->phase) {
    case 'a':
        if (m->from == 1 && m->to >= 3 && carries_log) {
            return TH_DROP;
        }
        return TH_DELIVER;
    case 'b':
        if (m->from == 5 && carries_log) {
            return TH_DROP;
        }
        return TH_DELIVER;
    case 'c':
        if (m->from == 1 && m->to == 4 && carries_log) {
            return TH_DROP;
        }
        if (m->from == 1 && m->type == RAFT_MSG_APPEND) {
            th_msg_trim_entries(m, 2);
        }
        return TH_DELIVER;
    default:
        return TH_DELIVER;
    }
}

/* Runs Figure 8 (a) to (c). On return S1 leads term 4, index 2 (term 2) is stored
 * on S1, S2, S3 -- a majority -- and S5 is down holding index 2 with term 3. */
static void fig8_stage(struct th_net *net, struct fig8 *f)
{
    th_boot(net, 5);
    th_set_filter(net, fig8_filter, f);

    f->phase = 'a';
    th_campaign(net, 1);
    th_deliver_all(net);
    struct raft *s1 = th_raft(net, 1);
    ASSERT_EQ(raft_role(s1), RAFT_LEADER);
    ASSERT_EQ(raft_term(s1), 2);
    ASSERT_EQ(raft_term_at(th_raft(net, 2), 2), 2);
    ASSERT_EQ(raft_last_index(th_raft(net, 3)), 1);
    ASSERT_LT(raft_commit(s1), 2); /* 2 of 5 */
    th_crash(net, 1);

    f->phase = 'b';
    th_campaign(net, 5);
    th_deliver_all(net);
    struct raft *s5 = th_raft(net, 5);
    ASSERT_EQ(raft_role(s5), RAFT_LEADER); /* votes from S3, S4 and itself */
    ASSERT_EQ(raft_term(s5), 3);
    ASSERT_EQ(raft_last_index(s5), 2);
    ASSERT_EQ(raft_term_at(s5, 2), 3);
    ASSERT_EQ(raft_last_index(th_raft(net, 3)), 1);
    th_crash(net, 5);

    f->phase = 'c';
    th_restart(net, 1);
    s1 = th_raft(net, 1);
    /* Term 3 is taken (S3 and S4 voted for S5): S1 needs a second timeout. */
    for (uint32_t i = 0; i < 4 * T && raft_role(s1) != RAFT_LEADER; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(raft_role(s1), RAFT_LEADER);
    ASSERT_EQ(raft_term(s1), 4);
    ASSERT_EQ(raft_last_index(s1), 3);
    ASSERT_EQ(raft_term_at(s1, 3), 4);
    ASSERT_EQ(raft_term_at(th_raft(net, 2), 2), 2);
    ASSERT_EQ(raft_term_at(th_raft(net, 3), 2), 2);
    ASSERT_EQ(raft_last_index(th_raft(net, 3)), 2);
}

/* §5.4.2, Figure 8 (c)->(e): an entry from a previous term stored on a majority is
 * not committed by counting replicas; it commits only under an entry of the
 * leader's own term. */
static void test_fig8_no_commit_by_counting_replicas(void **state)
{
    struct th_net *net = th_net_new(5, 8);
    struct fig8 f = {0};
    fig8_stage(net, &f);
    struct raft *s1 = th_raft(net, 1);

    /* A few heartbeats while the term-4 entry still cannot leave S1. */
    for (uint32_t i = 0; i < 5; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    struct raft_progress_info pr = {0};
    assert_true(th_progress_of(net, 1, 3, &pr));
    ASSERT_EQ(pr.match, 2); /* the leader knows S3 stores index 2 ... */
    assert_true(th_progress_of(net, 1, 2, &pr));
    ASSERT_EQ(pr.match, 2);
    ASSERT_LT(raft_commit(s1), 2); /* ... and still must not commit it */
    ASSERT_LT(raft_commit(th_raft(net, 2)), 2);
    ASSERT_LT(raft_commit(th_raft(net, 3)), 2);
    ASSERT_LT(net->nodes[2].applied, 2);

    /* (e): the term-4 entry reaches a majority; index 2 commits with it. */
    th_set_filter(net, NULL, NULL);
    th_cut(net, 1, 4); /* keep the majority at exactly S1, S2, S3 */
    for (uint32_t i = 0; i < 20 && raft_commit(s1) < 3; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(raft_commit(s1), 3);
    ASSERT_EQ(raft_term_at(s1, 2), 2);
    th_settle(net, 1, 3, 5);
    ASSERT_EQ(net->nodes[2].applied, 3);
    ASSERT_EQ(net->nodes[3].applied, 3);
    ASSERT_EQ(raft_term_at(th_raft(net, 3), 2), 2);
    th_net_free(net);
}

/* §5.4.2, Figure 8 (c)->(d): why counting would have been wrong. S1 crashes, S5
 * (log ends in term 3) is elected and overwrites index 2 on the majority that
 * stored it. Nobody applied the term-2 entry, so State Machine Safety holds (the
 * harness checks it on every apply). */
static void test_fig8_uncommitted_majority_entry_is_overwritten(void **state)
{
    struct th_net *net = th_net_new(5, 9);
    struct fig8 f = {0};
    fig8_stage(net, &f);
    th_crash(net, 1);
    th_set_filter(net, NULL, NULL);
    th_restart(net, 5);
    struct raft *s5 = th_raft(net, 5);
    for (uint32_t i = 0; i < 10 * T && raft_role(s5) != RAFT_LEADER; i++) {
        th_tick(net, 5, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(raft_role(s5), RAFT_LEADER);
    ASSERT_GE(raft_term(s5), 5);
    th_settle(net, 5, raft_last_index(s5), 10);
    for (uint32_t id = 2; id <= 4; id++) {
        ASSERT_EQ(raft_term_at(th_raft(net, id), 2), 3);
        th_assert_same_log(net, 5, id);
    }
    ASSERT_EQ(net->applied[2].term, 3);
    th_net_free(net);
}

/* ==== elections ============================================================ */

/* Every node's first timeout fires before any vote request is delivered, so all
 * five vote for themselves in term 2 and nobody wins (a split vote). Then the nodes
 * tick in lockstep. Returns the ticks until a leader emerged (UINT32_MAX if none
 * within bound_ticks) and the winner. */
static uint32_t run_split_vote(uint64_t seed, bool shared_seed, uint32_t bound_ticks,
                               uint32_t *winner, uint64_t *winner_term)
{
    struct th_net *net = th_net_new(5, seed);
    net->shared_seed = shared_seed;
    th_boot(net, 5);
    for (uint32_t id = 1; id <= 5; id++) {
        th_campaign(net, id);
    }
    th_deliver_all(net);
    ASSERT_EQ(th_leader(net), 0); /* term 2 ended split */
    for (uint32_t id = 1; id <= 5; id++) {
        ASSERT_EQ(raft_term(th_raft(net, id)), 2);
        ASSERT_EQ(raft_vote(th_raft(net, id)), id);
    }
    uint32_t ticks = 0;
    while (th_leader(net) == 0 && ticks < bound_ticks) {
        th_round(net, 0);
        ticks++;
    }
    *winner = th_leader(net);
    *winner_term = *winner ? raft_term(th_raft(net, *winner)) : 0;
    th_net_free(net);
    return *winner ? ticks : UINT32_MAX;
}

/* §5.2: randomized election timeouts resolve a split vote quickly, for every seed. */
static void test_split_vote_resolved_by_randomization(void **state)
{
    const uint32_t n_seeds = 200;
    const uint32_t bound_ticks = 10 * 2 * T; /* ten maximal election timeouts */
    uint32_t worst_ticks = 0, winners[6] = {0};
    uint64_t extra_split_terms = 0;
    for (uint32_t seed = 1; seed <= n_seeds; seed++) {
        uint32_t winner;
        uint64_t term;
        uint32_t ticks = run_split_vote(seed, false, bound_ticks, &winner, &term);
        if (ticks == UINT32_MAX) {
            print_error("FAIL seed=%u check=split-vote-resolves replay: "
                        "run_split_vote(%u, false, %u)\n",
                        seed, seed, bound_ticks);
        }
        ASSERT_LE(ticks, bound_ticks);
        winners[winner]++;
        worst_ticks = ticks > worst_ticks ? ticks : worst_ticks;
        extra_split_terms += term - 3; /* terms after 2 that also ended without a leader */
    }
    print_message("  %u seeds: worst %u ticks, later leaderless terms %llu, "
                  "winners %u/%u/%u/%u/%u\n",
                  n_seeds, worst_ticks, (unsigned long long)extra_split_terms, winners[1],
                  winners[2], winners[3], winners[4], winners[5]);
    /* The winner depends on the seed, not on the node id. */
    uint32_t distinct = 0;
    for (uint32_t id = 1; id <= 5; id++) {
        distinct += winners[id] > 0;
    }
    ASSERT_GE(distinct, 3);

    /* Negative control: the same seed on every node means the same timeout draws
     * (raft.h: random_seed is the core's only randomness), so the nodes keep timing
     * out together and every term splits. This is what the check above would catch. */
    uint32_t winner;
    uint64_t term;
    ASSERT_EQ(run_split_vote(3, true, bound_ticks, &winner, &term), UINT32_MAX);
    ASSERT_EQ(winner, 0);
}

/* §5.4.1 election restriction: a voter refuses a candidate whose log is less up to
 * date than its own, so a server missing a committed entry cannot become leader. */
static void test_vote_refused_to_stale_log(void **state)
{
    struct th_net *net = th_net_new(3, 31);
    th_boot(net, 3);
    th_elect(net, 1);
    th_cut(net, 1, 3);
    uint64_t idx = th_propose(net, 1, "committed-without-3");
    th_settle(net, 1, idx, 5); /* committed on 1 and 2 */
    ASSERT_LT(raft_last_index(th_raft(net, 3)), idx);
    th_crash(net, 1);
    th_heal(net);
    th_stats_reset(net);
    struct raft *n3 = th_raft(net, 3);
    for (uint32_t i = 0; i < 5 * 2 * T; i++) { /* only node 3's timer runs */
        th_tick(net, 3, 1);
        th_deliver_all(net);
        ASSERT_NE(raft_role(n3), RAFT_LEADER);
    }
    ASSERT_GE(net->votes_refused_by[2], 1);
    ASSERT_EQ(net->votes_granted_by[2], 0);
    /* Node 2 holds the entry and can win; the entry survives. */
    for (uint32_t i = 0; i < 10 * 2 * T && th_leader(net) == 0; i++) {
        th_round(net, 0);
    }
    ASSERT_EQ(th_leader(net), 2);
    th_settle(net, 2, raft_last_index(th_raft(net, 2)), 5);
    const struct raft_entry *e = raft_entry_at(n3, idx);
    assert_non_null(e);
    ASSERT_EQ(e->n_bytes, strlen("committed-without-3"));
    assert_memory_equal(e->bytes, "committed-without-3", e->n_bytes);
    th_net_free(net);
}

/* §5.1, Figure 2 "Persistent state": votedFor survives a crash, so a restarted
 * server cannot vote twice in one term. */
static void test_vote_survives_restart(void **state)
{
    struct th_net *net = th_net_new(3, 32);
    th_boot(net, 3);
    th_isolate(net, 3);
    net->cut[2][1] = true; /* node 2's answers to node 1 are lost */
    th_campaign(net, 1);
    ASSERT_EQ(raft_term(th_raft(net, 1)), 2);
    /* Deliver node 1's VoteRequest to node 2; node 2's answer is lost. */
    th_deliver_all(net);
    ASSERT_EQ(raft_vote(th_raft(net, 2)), 1);
    ASSERT_EQ(raft_term(th_raft(net, 2)), 2);
    ASSERT_NE(raft_role(th_raft(net, 1)), RAFT_LEADER);
    th_crash(net, 1);
    th_crash(net, 2);
    th_restart(net, 2);
    ASSERT_EQ(raft_term(th_raft(net, 2)), 2);
    ASSERT_EQ(raft_vote(th_raft(net, 2)), 1);
    th_heal(net);
    th_stats_reset(net);
    /* Node 3 campaigns for term 2 (it was at term 1): node 2 already voted there. */
    th_campaign(net, 3);
    ASSERT_EQ(raft_term(th_raft(net, 3)), 2);
    th_deliver_all(net);
    ASSERT_EQ(net->votes_refused_by[2], 1);
    ASSERT_EQ(net->votes_granted_by[2], 0);
    ASSERT_EQ(raft_vote(th_raft(net, 2)), 1);
    ASSERT_NE(raft_role(th_raft(net, 3)), RAFT_LEADER);
    th_net_free(net);
}

/* ==== stale leader ========================================================= */

static enum th_verdict delay_from_1(struct th_net *net, struct raft_msg *m, void *arg)
{
    if (m->from == 1) {
        return TH_HOLD;
    }
    return m->to == 1 ? TH_DROP : TH_DELIVER;
}

static enum th_verdict drop_to_1(struct th_net *net, struct raft_msg *m, void *arg)
{
    return m->to == 1 ? TH_DROP : TH_DELIVER;
}

/* §5.1, §5.3: a leader cut off from the majority keeps its term; the majority elects
 * a newer leader; on healing the old leader sees the higher term, steps down, and
 * its uncommitted entries from the partition are overwritten. */
static void test_stale_leader_steps_down_and_is_overwritten(void **state)
{
    struct th_net *net = th_net_new(5, 4);
    th_boot(net, 5);
    uint64_t t1 = th_elect(net, 1);
    uint64_t base = th_propose(net, 1, "before");
    th_settle(net, 1, base, 5);

    /* Partition: packets to node 1 are lost, packets from it are delayed. */
    th_set_filter(net, delay_from_1, NULL);
    uint64_t s1 = th_propose(net, 1, "stale-1");
    uint64_t s2 = th_propose(net, 1, "stale-2");
    ASSERT_EQ(s1, base + 1);
    ASSERT_EQ(s2, base + 2);

    uint32_t l2 = 0;
    for (uint32_t i = 0; i < 10 * 2 * T; i++) {
        th_round(net, 0);
        l2 = th_leader(net);
        if (l2 != 0 && l2 != 1) {
            break;
        }
    }
    ASSERT_NE(l2, 0);
    ASSERT_NE(l2, 1);
    uint64_t t2 = raft_term(th_raft(net, l2));
    ASSERT_GT(t2, t1);
    uint64_t fresh = th_propose(net, l2, "fresh");
    th_deliver_all(net);
    /* Without CheckQuorum the old leader does not notice on its own. */
    ASSERT_EQ(raft_role(th_raft(net, 1)), RAFT_LEADER);
    ASSERT_EQ(raft_term(th_raft(net, 1)), t1);
    ASSERT_LT(raft_commit(th_raft(net, 1)), s1);

    /* The delayed term-t1 AppendEntries arrive now: §5.1, "if a server receives a
     * request with a stale term number, it rejects the request". */
    ASSERT_GT(net->n_held, 0);
    th_set_filter(net, drop_to_1, NULL);
    th_release_held(net);
    th_deliver_all(net);
    for (uint32_t id = 2; id <= 5; id++) {
        struct raft *r = th_raft(net, id);
        ASSERT_EQ(raft_term(r), t2);
        for (uint64_t i = s1; i <= s2 && i <= raft_last_index(r); i++) {
            ASSERT_GE(raft_term_at(r, i), t2);
        }
    }

    th_set_filter(net, NULL, NULL);
    for (uint32_t i = 0;
         i < 2 * T && raft_last_index(th_raft(net, 1)) != raft_last_index(th_raft(net, l2)); i++) {
        th_round(net, 0);
    }
    th_rounds(net, 0, 3);
    struct raft *old = th_raft(net, 1);
    ASSERT_EQ(raft_role(old), RAFT_FOLLOWER);
    ASSERT_EQ(th_leader(net), l2);
    ASSERT_EQ(raft_term(old), raft_term(th_raft(net, l2)));
    ASSERT_EQ(raft_leader(old), l2);
    th_assert_same_log(net, 1, l2);
    th_assert_store_matches(net, 1);
    for (uint64_t i = s1; i <= s2; i++) {
        const struct raft_entry *e = raft_entry_at(old, i);
        assert_non_null(e);
        ASSERT_GE(e->term, t2);
        assert_false(e->n_bytes == 7 && memcmp(e->bytes, "stale-", 6) == 0);
    }
    ASSERT_GE(raft_commit(old), fresh);
    ASSERT_GE(net->nodes[1].n_truncates, 1);
    th_net_free(net);
}

/* §5.1: "If a server receives a request with a stale term number, it rejects the
 * request." A delayed AppendEntries from a deposed leader must not touch the log of
 * a follower that has moved on, even where it would fit after the follower's last
 * entry (so no committed entry protects the follower). */
static void test_stale_term_append_is_rejected(void **state)
{
    struct th_net *net = th_net_new(3, 33);
    th_boot(net, 3);
    uint64_t t = th_elect(net, 1);
    th_set_filter(net, delay_from_1, NULL);
    uint64_t idx = th_propose(net, 1, "stale");
    th_deliver_all(net);
    ASSERT_GT(net->n_held, 0);
    struct raft *n2 = th_raft(net, 2);
    ASSERT_EQ(raft_last_index(n2), idx - 1);

    net->cut[2][3] = true; /* node 3 gets node 2 to a newer term but never wins */
    net->cut[1][3] = true;
    th_campaign(net, 3);
    th_deliver_all(net);
    ASSERT_EQ(raft_term(n2), t + 1);
    ASSERT_NE(th_leader(net), 3);

    th_set_filter(net, drop_to_1, NULL);
    th_release_held(net);
    th_deliver_all(net);
    ASSERT_EQ(raft_term(n2), t + 1);
    ASSERT_EQ(raft_last_index(n2), idx - 1);
    assert_null(raft_entry_at(n2, idx));
    ASSERT_EQ(net->nodes[2].store.n_entries, idx - 1);
    th_net_free(net);
}

/* Thesis §6.2: with CheckQuorum an isolated leader steps down by itself once an
 * election timeout passes without hearing from a quorum; without it, it does not. */
static void run_isolated_leader(bool check_quorum, uint32_t *ticks_to_step_down)
{
    struct th_net *net = th_net_new(3, 5);
    net->check_quorum = check_quorum;
    th_boot(net, 3);
    th_elect(net, 1);
    th_rounds(net, 0, 2 * T); /* steady state: followers ack every heartbeat */
    ASSERT_EQ(th_leader(net), 1);
    th_isolate(net, 1);
    uint32_t t = 0;
    struct raft *r = th_raft(net, 1);
    while (t < 5 * T && raft_role(r) == RAFT_LEADER) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
        t++;
    }
    *ticks_to_step_down = raft_role(r) == RAFT_LEADER ? UINT32_MAX : t;
    th_net_free(net);
}

static void test_check_quorum_isolated_leader_steps_down(void **state)
{
    uint32_t with = 0, without = 0;
    run_isolated_leader(true, &with);
    run_isolated_leader(false, &without);
    print_message("  check_quorum: stepped down after %u ticks\n", with);
    ASSERT_GE(with, T);         /* not before a full election timeout without a quorum */
    ASSERT_LE(with, 2 * T + 1); /* and no later than the next quorum check */
    ASSERT_EQ(without, UINT32_MAX);
}

/* ==== PreVote ============================================================== */

struct prevote_result {
    uint64_t term_before;
    uint64_t isolated_term; /* node 3's term after the isolation */
    uint32_t leader_after;
    uint64_t leader_term_after;
};

/* Node 3 is cut off for ten maximal election timeouts while the others keep
 * committing, then rejoins for five more. */
static void run_rejoin(bool prevote, bool check_quorum, struct prevote_result *out)
{
    struct th_net *net = th_net_new(3, 55);
    net->prevote = prevote;
    net->check_quorum = check_quorum;
    th_boot(net, 3);
    out->term_before = th_elect(net, 1);
    th_rounds(net, 0, 3);
    th_isolate(net, 3);
    for (uint32_t i = 0; i < 10 * 2 * T; i++) {
        if (i % 20 == 0) {
            th_propose(net, 1, "traffic");
        }
        th_round(net, 0);
    }
    out->isolated_term = raft_term(th_raft(net, 3));
    ASSERT_EQ(th_leader(net), 1);
    th_heal(net);
    th_rounds(net, 0, 5 * T);
    out->leader_after = th_leader(net);
    out->leader_term_after = out->leader_after ? raft_term(th_raft(net, out->leader_after)) : 0;
    /* Whoever leads, the cluster converges and node 3 catches up. */
    ASSERT_NE(out->leader_after, 0);
    th_settle(net, out->leader_after, raft_last_index(th_raft(net, out->leader_after)), 10);
    th_assert_same_log(net, out->leader_after, 3);
    th_net_free(net);
}

/* Thesis §9.6: a partitioned server with PreVote cannot win a pre-election, so it
 * never bumps its term, and on rejoining it does not depose the leader. */
static void test_prevote_isolated_node_does_not_disrupt(void **state)
{
    struct prevote_result r;
    run_rejoin(true, false, &r);
    ASSERT_EQ(r.isolated_term, r.term_before);
    ASSERT_EQ(r.leader_after, 1);
    ASSERT_EQ(r.leader_term_after, r.term_before);

    run_rejoin(true, true, &r);
    ASSERT_EQ(r.isolated_term, r.term_before);
    ASSERT_EQ(r.leader_after, 1);
    ASSERT_EQ(r.leader_term_after, r.term_before);
}

/* Negative control: without PreVote the isolated node's term climbs and its return
 * forces a new election at a higher term (§9.6's motivating problem). */
static void test_no_prevote_isolated_node_disrupts(void **state)
{
    struct prevote_result r;
    run_rejoin(false, false, &r);
    print_message("  term before %llu, isolated node reached %llu, leader after: %u term %llu\n",
                  (unsigned long long)r.term_before, (unsigned long long)r.isolated_term,
                  r.leader_after, (unsigned long long)r.leader_term_after);
    ASSERT_GE(r.isolated_term, r.term_before + 5);
    ASSERT_GT(r.leader_term_after, r.term_before);
}

/* ==== durability ========================================================== */

/* §5.1 and raft.h step 3: a candidate's vote for itself is a vote like any other and
 * counts only once durable. Otherwise: node 1 wins term 2 with 2 + 3 + its own
 * undurable vote, crashes before the write lands, restarts in term 1, votes for
 * node 4 in term 2, and node 4 wins term 2 too (Election Safety, §5.2). */
static void test_candidate_counts_own_vote_only_when_durable(void **state)
{
    struct th_net *net = th_net_new(5, 41);
    th_boot(net, 5);
    net->nodes[1].defer_persist = true;
    th_cut(net, 1, 4);
    th_cut(net, 1, 5);
    th_campaign(net, 1);
    th_deliver_all(net);
    bool was_leader = raft_role(th_raft(net, 1)) == RAFT_LEADER;
    th_crash(net, 1); /* the disk never finished: term 2 and the self-vote are gone */
    net->nodes[1].defer_persist = false;
    th_restart(net, 1);
    ASSERT_EQ(raft_term(th_raft(net, 1)), 1);
    th_heal(net);
    th_campaign(net, 4);
    ASSERT_EQ(raft_term(th_raft(net, 4)), 2);
    th_deliver_all(net); /* 1 and 5 grant: 4 leads term 2 (the harness checks uniqueness) */
    ASSERT_EQ(raft_role(th_raft(net, 4)), RAFT_LEADER);
    ASSERT_EQ(was_leader, false);
    th_net_free(net);
}

/* Thesis §10.2.1: the leader may replicate before its own write is durable, but an
 * entry commits only when a majority (counting the leader only once durable) has it. */
static void test_leader_commit_counts_only_durable_copies(void **state)
{
    struct th_net *net = th_net_new(3, 42);
    th_boot(net, 3);
    th_elect(net, 1);
    struct raft *l = th_raft(net, 1);
    net->nodes[1].defer_persist = true;
    th_cut(net, 1, 3);
    uint64_t idx = th_propose(net, 1, "slow-disk");
    for (int i = 0; i < 3; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(raft_last_index(th_raft(net, 2)), idx); /* replicated in parallel */
    ASSERT_LT(raft_commit(l), idx);                   /* but 1 durable copy of 3 */
    ASSERT_LT(net->nodes[1].applied, idx);
    th_flush(net, 1);
    th_deliver_all(net);
    ASSERT_EQ(raft_commit(l), idx);
    ASSERT_EQ(net->nodes[1].applied, idx);

    /* Both followers durable, leader not: 2 of 3, which §10.2.1 allows to commit;
     * the leader still applies only what it holds durably (raft.h step 4). */
    th_heal(net);
    idx = th_propose(net, 1, "followers-first");
    th_deliver_all(net);
    ASSERT_EQ(raft_commit(l), idx);
    ASSERT_LT(net->nodes[1].applied, idx);
    th_flush(net, 1);
    ASSERT_EQ(net->nodes[1].applied, idx);
    net->nodes[1].defer_persist = false;
    th_net_free(net);
}

/* ==== ReadIndex ============================================================ */

/* Three nodes, n1 the leader, one entry committed and applied everywhere. */
static struct th_net *three_settled(uint64_t seed)
{
    struct th_net *net = th_net_new(3, seed);
    th_boot(net, 3);
    th_elect(net, 1);
    th_propose(net, 1, "x");
    th_settle(net, 1, 3, 5);
    return net;
}

/* Thesis §6.4: reads are batched. Read 1 starts a heartbeat round at once; reads
 * 2..10 arrive while that round is in flight, so its acks cannot vouch for them
 * (leadership is confirmed as of the round's send time, which predates them).
 * Exactly one more round then serves all nine, each at the commit index it saw. */
static void test_read_index_batching(void **state)
{
    struct th_net *net = three_settled(6);
    struct raft *l = th_raft(net, 1);
    struct th_node *n = &net->nodes[1];
    uint64_t commit = raft_commit(l);

    th_stats_reset(net);
    ASSERT_RC(raft_read_index(l, 101), 0);
    th_drain(net, 1);
    const uint64_t first_round = net->sent_by[1][RAFT_MSG_HEARTBEAT];
    ASSERT_LE(first_round, 2);
    th_stats_reset(net);
    for (uint64_t i = 2; i <= 10; i++) {
        ASSERT_RC(raft_read_index(l, 100 + i), 0);
        th_drain(net, 1);
    }
    ASSERT_EQ(n->n_reads, 0); /* nothing is answered before a round confirms leadership */
    for (uint32_t t = 0; t < 5 && n->n_reads < 10; t++) {
        th_deliver_all(net);
        if (n->n_reads < 10) {
            th_tick(net, 1, 1);
        }
    }
    th_deliver_all(net);
    ASSERT_EQ(n->n_reads, 10);
    for (uint64_t i = 1; i <= 10; i++) {
        const struct th_read *rd = th_find_read(n, 100 + i);
        assert_non_null(rd);
        ASSERT_RC(rd->status, 0);
        ASSERT_EQ(rd->index, commit);
    }
    print_message("  heartbeats: %llu for read 1, %llu for reads 2..10\n",
                  (unsigned long long)first_round,
                  (unsigned long long)net->sent_by[1][RAFT_MSG_HEARTBEAT]);
    ASSERT_GE(net->sent_by[1][RAFT_MSG_HEARTBEAT], 1);
    ASSERT_LE(net->sent_by[1][RAFT_MSG_HEARTBEAT], 2); /* one round to two followers */
    th_net_free(net);
}

struct hb_count {
    uint64_t to[TH_NODES_MAX + 1]; /* heartbeats delivered (or dropped) per receiver */
    uint32_t drop_to;              /* messages to this node are lost; 0 = none */
};

static enum th_verdict count_heartbeats(struct th_net *net, struct raft_msg *m, void *arg)
{
    (void)net;
    struct hb_count *c = arg;
    if (m->type == RAFT_MSG_HEARTBEAT)
        c->to[m->to]++;
    return m->to == c->drop_to ? TH_DROP : TH_DELIVER;
}

/* A read round needs a quorum, not everyone: on 3 nodes it goes to the one follower
 * that answered the last broadcast heartbeat first. If that follower goes quiet, the
 * next periodic heartbeat (to everyone) serves the read and re-ranks them, so the next
 * round goes to the other follower. */
static void test_read_round_goes_to_the_fastest_quorum(void **state)
{
    struct th_net *net = three_settled(7);
    struct raft *l = th_raft(net, 1);
    struct th_node *n = &net->nodes[1];
    th_tick(net, 1, 1); /* a broadcast round, answered by both followers */
    th_deliver_all(net);
    struct hb_count c = {0};
    th_set_filter(net, count_heartbeats, &c);

    ASSERT_RC(raft_read_index(l, 1), 0);
    th_drain(net, 1);
    th_deliver_all(net);
    ASSERT_EQ(n->n_reads, 1);
    ASSERT_EQ(c.to[2] + c.to[3], 1); /* one follower, not two */
    const uint32_t chosen = c.to[2] != 0 ? 2 : 3;
    const uint32_t other = 5 - chosen;

    memset(&c, 0, sizeof(c));
    c.drop_to = chosen;
    ASSERT_RC(raft_read_index(l, 2), 0);
    th_drain(net, 1);
    th_deliver_all(net);
    ASSERT_EQ(n->n_reads, 1); /* its round went to the quiet follower only */
    ASSERT_EQ(c.to[other], 0);
    th_tick(net, 1, 1);
    th_deliver_all(net);
    ASSERT_EQ(n->n_reads, 2); /* the broadcast reached the other one */
    ASSERT_RC(th_find_read(n, 2)->status, 0);

    memset(&c, 0, sizeof(c));
    c.drop_to = chosen;
    ASSERT_RC(raft_read_index(l, 3), 0);
    th_drain(net, 1);
    th_deliver_all(net);
    ASSERT_EQ(n->n_reads, 3); /* re-ranked: the answering follower is chosen now */
    ASSERT_EQ(c.to[other], 1);
    ASSERT_EQ(c.to[chosen], 0);
    th_set_filter(net, NULL, NULL);
    th_net_free(net);
}

static enum th_verdict hold_append_resp_to_1(struct th_net *net, struct raft_msg *m, void *arg)
{
    return m->type == RAFT_MSG_APPEND_RESP && m->to == 1 ? TH_HOLD : TH_DELIVER;
}

/* Thesis §6.4 step 1: a new leader does not know the commit index until an entry of
 * its own term commits, so reads wait for its no-op. */
static void test_read_index_waits_for_commit_in_term(void **state)
{
    struct th_net *net = th_net_new(3, 61);
    th_boot(net, 3);
    th_set_filter(net, hold_append_resp_to_1, NULL);
    th_campaign(net, 1);
    th_deliver_all(net);
    struct raft *l = th_raft(net, 1);
    ASSERT_EQ(raft_role(l), RAFT_LEADER);
    uint64_t noop = raft_last_index(l);
    ASSERT_LT(raft_commit(l), noop);
    for (uint64_t i = 1; i <= 3; i++) {
        ASSERT_RC(raft_read_index(l, i), 0);
        th_drain(net, 1);
    }
    for (uint32_t t = 0; t < 2 * T; t++) { /* heartbeats flow, append acks do not */
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_LT(raft_commit(l), noop);
    ASSERT_EQ(net->nodes[1].n_reads, 0);

    th_set_filter(net, NULL, NULL);
    th_release_held(net);
    for (uint32_t t = 0; t < 5 && net->nodes[1].n_reads < 3; t++) {
        th_deliver_all(net);
        if (net->nodes[1].n_reads < 3) {
            th_tick(net, 1, 1);
        }
    }
    ASSERT_EQ(raft_commit(l), noop);
    ASSERT_EQ(net->nodes[1].n_reads, 3);
    for (uint64_t i = 1; i <= 3; i++) {
        const struct th_read *rd = th_find_read(&net->nodes[1], i);
        assert_non_null(rd);
        ASSERT_RC(rd->status, 0);
        ASSERT_EQ(rd->index, noop);
    }
    th_net_free(net);
}

/* Thesis §6.4: a follower forwards the read; the leader confirms leadership and
 * returns its commit index, which the follower hands to its host. */
static void test_read_index_on_follower(void **state)
{
    struct th_net *net = th_net_new(3, 62);
    th_boot(net, 3);
    th_elect(net, 1);
    th_propose(net, 1, "y");
    th_settle(net, 1, 3, 5);
    th_stats_reset(net);
    struct raft *f = th_raft(net, 2);
    ASSERT_RC(raft_read_index(f, 555), 0);
    th_drain(net, 2);
    struct th_node *n = &net->nodes[2];
    for (uint32_t t = 0; t < 5 && n->n_reads == 0; t++) {
        th_deliver_all(net);
        if (n->n_reads == 0) {
            th_tick(net, 1, 1);
        }
    }
    ASSERT_EQ(net->sent_by[2][RAFT_MSG_READ_INDEX], 1);
    ASSERT_EQ(net->sent_by[1][RAFT_MSG_READ_INDEX_RESP], 1);
    ASSERT_EQ(n->n_reads, 1);
    const struct th_read *rd = th_find_read(n, 555);
    assert_non_null(rd);
    ASSERT_RC(rd->status, 0);
    ASSERT_EQ(rd->index, raft_commit(th_raft(net, 1)));
    ASSERT_EQ(net->nodes[1].n_reads, 0); /* the leader's host never sees the follower's read */
    th_net_free(net);
}

/* raft.h: a read pending when leadership is lost fails with RAFT_ESTEPPEDDOWN; a
 * deposed leader must never answer it with status 0 (it could miss newer writes). */
static void test_read_index_fails_on_step_down(void **state)
{
    struct th_net *net = th_net_new(3, 63);
    th_boot(net, 3);
    th_elect(net, 1);
    th_isolate(net, 1);
    struct raft *l = th_raft(net, 1);
    ASSERT_RC(raft_read_index(l, 9), 0);
    th_drain(net, 1);
    uint32_t nl = 0;
    for (uint32_t i = 0; i < 10 * 2 * T && (nl == 0 || nl == 1); i++) {
        th_round(net, bit(2) | bit(3));
        nl = th_leader(net);
        nl = nl == 1 ? 0 : nl;
    }
    ASSERT_NE(nl, 0);
    th_propose(net, nl, "newer-write");
    th_deliver_all(net);
    ASSERT_EQ(net->nodes[1].n_reads, 0);
    th_heal(net);
    th_rounds(net, 0, 3);
    ASSERT_NE(raft_role(l), RAFT_LEADER);
    ASSERT_EQ(net->nodes[1].n_reads, 1);
    const struct th_read *rd = th_find_read(&net->nodes[1], 9);
    assert_non_null(rd);
    ASSERT_RC(rd->status, RAFT_ESTEPPEDDOWN);
    th_net_free(net);
}

/* raft.h: a follower that knows no leader fails the read at once. */
static void test_read_index_without_leader(void **state)
{
    struct th_net *net = th_net_new(3, 64);
    th_boot(net, 3);
    ASSERT_RC(raft_read_index(th_raft(net, 2), 77), 0);
    th_drain(net, 2);
    ASSERT_EQ(net->sent_by[2][RAFT_MSG_READ_INDEX], 0);
    const struct th_read *rd = th_find_read(&net->nodes[2], 77);
    assert_non_null(rd);
    ASSERT_RC(rd->status, RAFT_ENOTLEADER);
    th_net_free(net);
}

/* Thesis §6.4.1 / raft.h: with lease_read the leader answers without a round while
 * a quorum acknowledged a heartbeat sent less than T - drift ticks ago, and not after. */
static void test_lease_read_expires(void **state)
{
    struct th_net *net = th_net_new(3, 65);
    net->check_quorum = true;
    net->lease_read = true;
    th_boot(net, 3);
    /* With lease reads a freshly started server refuses votes for one timeout (its
     * memory of an old leader's lease died with it), so everybody's clock runs. */
    uint32_t id = 0;
    for (uint32_t i = 0; i < 10 * 2 * T && id == 0; i++) {
        th_round(net, 0);
        id = th_leader(net);
    }
    ASSERT_NE(id, 0);
    struct raft *l = th_raft(net, id);
    th_settle(net, id, raft_last_index(l), 5);
    th_rounds(net, 0, 3);
    ASSERT_EQ(th_leader(net), id);
    struct th_node *n = &net->nodes[id];
    struct raft_options o;
    th_node_options(net, id, &o);
    ASSERT_GT(o.lease_drift_ticks, 0);
    th_stats_reset(net);
    ASSERT_RC(raft_read_index(l, 1), 0);
    th_drain(net, id);
    ASSERT_EQ(n->n_reads, 1); /* answered from the lease, no round */
    ASSERT_RC(n->reads[0].status, 0);
    ASSERT_EQ(n->reads[0].index, raft_commit(l));
    ASSERT_EQ(net->sent_by[id][RAFT_MSG_HEARTBEAT], 0);

    /* Cut off: the last acknowledged heartbeat was sent just before this point. */
    th_isolate(net, id);
    th_tick(net, id, o.election_ticks - o.lease_drift_ticks - 1);
    ASSERT_RC(raft_read_index(l, 2), 0);
    th_drain(net, id);
    ASSERT_EQ(n->n_reads, 2); /* acked heartbeat sent T - drift - 1 ticks ago: valid */
    ASSERT_RC(n->reads[1].status, 0);
    th_tick(net, id, 1);
    th_deliver_all(net);
    ASSERT_EQ(raft_role(l), RAFT_LEADER);
    ASSERT_RC(raft_read_index(l, 3), 0);
    th_drain(net, id);
    ASSERT_EQ(n->n_reads, 2); /* T - drift ticks ago: the lease has run out */
    for (uint32_t i = 0; i < 3 * T && raft_role(l) == RAFT_LEADER; i++) {
        th_tick(net, id, 1);
    }
    ASSERT_NE(raft_role(l), RAFT_LEADER);
    const struct th_read *rd = th_find_read(n, 3);
    assert_non_null(rd);
    ASSERT_NE(rd->status, 0);
    th_net_free(net);
}

/* raft.h limits: RAFT_UNCOMMITTED_MAX bounds a leader's uncommitted tail and
 * RAFT_READS_MAX its read queue; past them the answer is RAFT_EFULL, and the leader
 * recovers once the backlog drains. */
static void test_backpressure_limits(void **state)
{
    struct th_net *net = th_net_new(3, 66);
    th_boot(net, 3);
    th_elect(net, 1);
    struct raft *l = th_raft(net, 1);
    th_isolate(net, 1);
    uint32_t ok = 0;
    int rv = 0;
    for (uint32_t i = 0; i < RAFT_UNCOMMITTED_MAX + 10; i++) {
        uint64_t idx;
        rv = raft_propose(l, "p", 1, &idx);
        if (rv != 0) {
            break;
        }
        ok++;
    }
    th_drain(net, 1);
    ASSERT_RC(rv, RAFT_EFULL);
    ASSERT_GE(ok, RAFT_UNCOMMITTED_MAX - 1);
    ASSERT_LE(ok, RAFT_UNCOMMITTED_MAX);

    uint32_t queued = 0;
    for (uint32_t i = 0; i < RAFT_READS_MAX + 10; i++) {
        rv = raft_read_index(l, 1000 + i);
        if (rv != 0) {
            break;
        }
        queued++;
    }
    th_drain(net, 1);
    bool full_status = false;
    for (uint32_t i = 0; i < net->nodes[1].n_reads; i++) {
        full_status |= net->nodes[1].reads[i].status == RAFT_EFULL;
    }
    assert_true(rv == RAFT_EFULL || full_status);
    ASSERT_LE(queued - (full_status ? 10 : 0), RAFT_READS_MAX);

    th_heal(net);
    th_settle(net, 1, raft_last_index(l), 50);
    uint64_t idx = th_propose(net, 1, "after-backlog");
    th_settle(net, 1, idx, 5);
    th_net_free(net);
}

/* ==== leader transfer ===================================================== */

static void run_transfer(bool prevote, bool check_quorum)
{
    struct th_net *net = th_net_new(3, 7);
    net->prevote = prevote;
    net->check_quorum = check_quorum;
    th_boot(net, 3);
    uint64_t t = th_elect(net, 1);
    th_propose(net, 1, "z");
    th_settle(net, 1, 3, 5);
    th_stats_reset(net);
    struct raft *l = th_raft(net, 1);
    ASSERT_RC(raft_transfer(l, 2), 0);
    th_drain(net, 1);
    ASSERT_EQ(raft_transfer_target(l), 2);
    uint64_t idx = 0;
    ASSERT_RC(raft_propose(l, "no", 2, &idx), RAFT_EBUSY);
    th_drain(net, 1);
    th_deliver_all(net); /* no ticks: the target is up to date, TimeoutNow goes at once */
    ASSERT_EQ(net->sent_by[1][RAFT_MSG_TIMEOUT_NOW], 1);
    struct raft *n2 = th_raft(net, 2);
    ASSERT_EQ(raft_role(n2), RAFT_LEADER);
    ASSERT_EQ(raft_term(n2), t + 1);
    ASSERT_EQ(raft_role(l), RAFT_FOLLOWER);
    ASSERT_EQ(raft_leader(l), 2);
    ASSERT_EQ(raft_transfer_target(l), 0);
    uint64_t idx2 = th_propose(net, 2, "after");
    th_settle(net, 2, idx2, 5);
    th_net_free(net);
}

/* Thesis §3.10: transfer to an up-to-date follower sends TimeoutNow; the target
 * campaigns at once (bypassing PreVote and leader stickiness) and wins term+1. */
static void test_transfer_to_up_to_date_follower(void **state)
{
    run_transfer(false, false);
    run_transfer(true, true);
}

struct lag_check {
    struct raft *leader;
    struct raft *target;
    uint32_t n_timeout_now;
};

static enum th_verdict check_timeout_now(struct th_net *net, struct raft_msg *m, void *arg)
{
    struct lag_check *c = arg;
    if (m->type == RAFT_MSG_TIMEOUT_NOW) {
        /* TimeoutNow only once the target's log matches the leader's (§3.10). */
        ASSERT_EQ(raft_last_index(c->target), raft_last_index(c->leader));
        c->n_timeout_now++;
    }
    return TH_DELIVER;
}

/* Thesis §3.10: a lagging target is first brought up to date, then sent TimeoutNow. */
static void test_transfer_to_lagging_follower(void **state)
{
    struct th_net *net = th_net_new(3, 71);
    th_boot(net, 3);
    uint64_t t = th_elect(net, 1);
    th_cut(net, 1, 3);
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        last = th_propose(net, 1, "lag");
    }
    th_deliver_all(net);
    ASSERT_EQ(raft_commit(th_raft(net, 1)), last);
    ASSERT_LT(raft_last_index(th_raft(net, 3)), last);
    th_heal(net);
    struct lag_check c = {th_raft(net, 1), th_raft(net, 3), 0};
    th_set_filter(net, check_timeout_now, &c);
    ASSERT_RC(raft_transfer(th_raft(net, 1), 3), 0);
    th_drain(net, 1);
    for (uint32_t i = 0; i < T && raft_role(th_raft(net, 3)) != RAFT_LEADER; i++) {
        th_deliver_all(net);
        if (raft_role(th_raft(net, 3)) != RAFT_LEADER) {
            th_tick(net, 1, 1);
        }
    }
    ASSERT_EQ(c.n_timeout_now, 1);
    ASSERT_EQ(raft_role(th_raft(net, 3)), RAFT_LEADER);
    ASSERT_EQ(raft_term(th_raft(net, 3)), t + 1);
    th_net_free(net);
}

/* Thesis §3.10: "If the transfer does not complete within an election timeout, the
 * prior leader aborts the transfer and resumes accepting client requests." */
static void test_transfer_to_unreachable_follower_aborts(void **state)
{
    struct th_net *net = th_net_new(3, 72);
    th_boot(net, 3);
    uint64_t t = th_elect(net, 1);
    th_isolate(net, 3);
    struct raft *l = th_raft(net, 1);
    ASSERT_RC(raft_transfer(l, 3), 0);
    th_drain(net, 1);
    uint64_t idx;
    ASSERT_RC(raft_propose(l, "x", 1, &idx), RAFT_EBUSY);
    uint32_t ticks = 0;
    while (ticks < 3 * T && raft_transfer_target(l) != 0) {
        th_round(net, bit(1) | bit(2));
        ticks++;
    }
    ASSERT_EQ(raft_transfer_target(l), 0);
    ASSERT_LE(ticks, 2 * T);
    ASSERT_EQ(raft_role(l), RAFT_LEADER);
    ASSERT_EQ(raft_term(l), t);
    idx = th_propose(net, 1, "resumed");
    th_settle(net, 1, idx, 5);
    th_net_free(net);
}

/* ==== membership ========================================================== */

static const struct raft_server *find_server(const struct raft_config *c, uint32_t id)
{
    for (uint32_t i = 0; i < c->n_servers; i++) {
        if (c->servers[i].id == id) {
            return &c->servers[i];
        }
    }
    return NULL;
}

/* Thesis §4.1-§4.2.2 and §4.2.1 (learners): single-server changes, one at a time,
 * only after the leader committed in its term; learners replicate but neither vote,
 * campaign nor count; a removed leader steps down once its removal commits. Two
 * learners are used so that counting them would change the outcome (with one, the
 * larger denominator would hide it). */
static void test_membership_changes(void **state)
{
    struct th_net *net = th_net_new(5, 8);
    th_boot(net, 3);
    th_start(net, 4, NULL, NULL, NULL, 0); /* fresh, empty servers */
    th_start(net, 5, NULL, NULL, NULL, 0);
    struct raft *n4 = th_raft(net, 4);
    ASSERT_EQ(raft_last_index(n4), 0);

    /* Before the no-op commits: ENOTREADY (the raft-dev 2015 single-server bug). */
    th_set_filter(net, hold_append_resp_to_1, NULL);
    th_campaign(net, 1);
    th_deliver_all(net);
    struct raft *l = th_raft(net, 1);
    ASSERT_EQ(raft_role(l), RAFT_LEADER);
    ASSERT_LT(raft_commit(l), raft_last_index(l));
    uint64_t idx = 0;
    ASSERT_RC(raft_change(l, RAFT_ADD_LEARNER, 4, &idx), RAFT_ENOTREADY);
    th_set_filter(net, NULL, NULL);
    th_release_held(net);
    th_settle(net, 1, raft_last_index(l), 5);

    /* Changes that make no sense for the current configuration. */
    ASSERT_RC(raft_change(l, RAFT_ADD_VOTER, 2, &idx), RAFT_ECONFIG);
    ASSERT_RC(raft_change(l, RAFT_REMOVE, 7, &idx), RAFT_ECONFIG);
    ASSERT_RC(raft_change(l, RAFT_PROMOTE, 3, &idx), RAFT_ECONFIG);
    ASSERT_RC(raft_change(th_raft(net, 2), RAFT_ADD_LEARNER, 4, &idx), RAFT_ENOTLEADER);
    th_drain(net, 1);
    th_drain(net, 2);

    /* Add learner 4. The config takes effect when appended; a second change waits. */
    ASSERT_RC(raft_change(l, RAFT_ADD_LEARNER, 4, &idx), 0);
    ASSERT_EQ(raft_config_role(raft_config(l), 4), RAFT_LEARNER);
    ASSERT_EQ(raft_config_n_voters(raft_config(l)), 3);
    uint64_t idx2 = 0;
    ASSERT_RC(raft_change(l, RAFT_ADD_LEARNER, 5, &idx2), RAFT_EBUSY);
    ASSERT_RC(raft_change(l, RAFT_REMOVE, 3, &idx2), RAFT_EBUSY);
    th_drain(net, 1);
    th_settle(net, 1, idx, 10);
    th_assert_same_log(net, 1, 4);
    ASSERT_EQ(raft_config_role(raft_config(n4), 4), RAFT_LEARNER);
    const struct raft_server *s = find_server(raft_config(n4), 1);
    assert_non_null(s);
    ASSERT_EQ(s->role, RAFT_VOTER);
    ASSERT_RC(raft_change(l, RAFT_ADD_LEARNER, 5, &idx), 0);
    th_drain(net, 1);
    th_settle(net, 1, idx, 10);
    th_assert_same_log(net, 1, 5);

    /* Learners ack but are not part of the quorum: leader + 2 learners would be 3 of
     * 5 servers, but it is 1 of 3 voters. */
    th_cut(net, 1, 2);
    th_cut(net, 1, 3);
    uint64_t p = th_propose(net, 1, "needs-a-voter");
    for (int i = 0; i < 3; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    struct raft_progress_info pr = {0};
    for (uint32_t id = 4; id <= 5; id++) {
        assert_true(th_progress_of(net, 1, id, &pr));
        ASSERT_EQ(pr.role, RAFT_LEARNER);
        ASSERT_EQ(pr.match, p);
    }
    ASSERT_LT(raft_commit(l), p);
    th_heal(net);
    th_settle(net, 1, p, 10);

    /* Promote 4: voters 1..4, quorum 3; learner 5 still does not count. */
    ASSERT_RC(raft_change(l, RAFT_PROMOTE, 4, &idx), 0);
    th_drain(net, 1);
    ASSERT_EQ(raft_config_n_voters(raft_config(l)), 4);
    th_settle(net, 1, idx, 10);
    ASSERT_EQ(raft_config_role(raft_config(n4), 4), RAFT_VOTER);
    th_cut(net, 1, 3);
    th_cut(net, 1, 4);
    p = th_propose(net, 1, "needs-three");
    for (int i = 0; i < 3; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_LT(raft_commit(l), p); /* leader + node 2 is 2 of 4 voters (+ learner 5) */
    th_heal(net);
    th_settle(net, 1, p, 10);

    /* Remove voter 3. */
    ASSERT_RC(raft_change(l, RAFT_REMOVE, 3, &idx), 0);
    th_drain(net, 1);
    th_settle(net, 1, idx, 10);
    ASSERT_EQ(raft_config_role(raft_config(l), 3), 0);
    ASSERT_EQ(raft_config_n_voters(raft_config(l)), 3);
    th_crash(net, 3);

    /* Remove the leader itself: it leads until the change commits (thesis §4.2.2),
     * then steps down. */
    uint64_t term = raft_term(l);
    th_set_filter(net, hold_append_resp_to_1, NULL);
    ASSERT_RC(raft_change(l, RAFT_REMOVE, 1, &idx), 0);
    th_drain(net, 1);
    th_deliver_all(net);
    ASSERT_EQ(raft_role(l), RAFT_LEADER);
    ASSERT_LT(raft_commit(l), idx);
    th_set_filter(net, NULL, NULL);
    th_release_held(net);
    for (int i = 0; i < 5 && raft_commit(l) < idx; i++) {
        th_deliver_all(net);
        if (raft_commit(l) < idx) {
            th_tick(net, 1, 1);
        }
    }
    th_deliver_all(net);
    ASSERT_GE(raft_commit(l), idx);
    ASSERT_NE(raft_role(l), RAFT_LEADER);

    /* Voters 2 and 4 elect a leader among themselves; learner 5 ticks too but never
     * campaigns. */
    uint32_t nl = 0;
    for (uint32_t i = 0; i < 10 * 2 * T && nl == 0; i++) {
        th_round(net, bit(2) | bit(4) | bit(5));
        ASSERT_EQ(raft_role(th_raft(net, 5)), RAFT_FOLLOWER);
        nl = th_leader(net);
    }
    assert_true(nl == 2 || nl == 4);
    ASSERT_GT(raft_term(th_raft(net, nl)), term);
    idx = th_propose(net, nl, "after-removals");
    th_settle(net, nl, idx, 10);
    ASSERT_EQ(net->nodes[5].applied, idx);
    th_net_free(net);
}

/* Thesis §4.2.1: a learner that has not caught up cannot be promoted yet. */
static void test_promote_lagging_learner(void **state)
{
    struct th_net *net = th_net_new(4, 81);
    th_boot(net, 3);
    th_start(net, 4, NULL, NULL, NULL, 0);
    th_elect(net, 1);
    struct raft *l = th_raft(net, 1);
    th_isolate(net, 4);
    uint64_t idx;
    ASSERT_RC(raft_change(l, RAFT_ADD_LEARNER, 4, &idx), 0);
    th_drain(net, 1);
    th_settle(net, 1, idx, 5);
    uint64_t last = 0;
    for (int i = 0; i < 3 * RAFT_APPEND_ENTRIES_MAX; i++) {
        last = th_propose(net, 1, "bulk");
    }
    th_settle(net, 1, last, 5);
    ASSERT_RC(raft_change(l, RAFT_PROMOTE, 4, &idx), RAFT_ECATCHUP);
    th_drain(net, 1);
    th_heal(net);
    for (int i = 0; i < 20 && raft_last_index(th_raft(net, 4)) < last; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(raft_last_index(th_raft(net, 4)), last);
    ASSERT_RC(raft_change(l, RAFT_PROMOTE, 4, &idx), 0);
    th_drain(net, 1);
    th_settle(net, 1, idx, 5);
    ASSERT_EQ(raft_config_n_voters(raft_config(l)), 4);
    th_net_free(net);
}

static enum th_verdict config_to_2_only(struct th_net *net, struct raft_msg *m, void *arg)
{
    if (m->from == 1 && m->to != 2 && m->type == RAFT_MSG_APPEND) {
        return TH_DROP;
    }
    if (m->from == 2 && m->to == 1 && m->type == RAFT_MSG_APPEND_RESP) {
        return TH_DROP;
    }
    return TH_DELIVER;
}

/* Thesis §4.1: a server uses the latest configuration in its log, committed or not,
 * so when a conflicting leader truncates that entry away the server must fall back
 * to the configuration before it. */
static void test_config_rolls_back_with_truncation(void **state)
{
    struct th_net *net = th_net_new(6, 84);
    th_boot(net, 5);
    th_start(net, 6, NULL, NULL, NULL, 0);
    th_elect(net, 1);
    struct raft *n2 = th_raft(net, 2);
    th_set_filter(net, config_to_2_only, NULL);
    uint64_t idx;
    ASSERT_RC(raft_change(th_raft(net, 1), RAFT_ADD_LEARNER, 6, &idx), 0);
    th_drain(net, 1);
    th_deliver_all(net);
    ASSERT_EQ(raft_last_index(n2), idx);
    ASSERT_EQ(raft_config_role(raft_config(n2), 6), RAFT_LEARNER); /* effective when appended */
    ASSERT_LT(raft_commit(th_raft(net, 1)), idx);
    th_crash(net, 1);
    th_set_filter(net, NULL, NULL);

    /* Node 3 wins with 4 and 5 (node 2 refuses: its log is longer) and overwrites idx. */
    struct raft *n3 = th_raft(net, 3);
    for (uint32_t i = 0; i < 4 * T && raft_role(n3) != RAFT_LEADER; i++) {
        th_tick(net, 3, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(raft_role(n3), RAFT_LEADER);
    th_settle(net, 3, raft_last_index(n3), 5);
    ASSERT_NE(raft_entry_at(n2, idx)->type, RAFT_ENTRY_CONFIG);
    ASSERT_EQ(raft_config_role(raft_config(n2), 6), 0);
    ASSERT_EQ(raft_config(n2)->n_servers, 5);
    ASSERT_EQ(net->nodes[2].min_truncate_from, idx);
    th_net_free(net);
}

/* ==== snapshots =========================================================== */

#define SNAP_BYTES 100 /* with 16-byte chunks: 7 InstallSnapshot messages */
#define SNAP_CHUNK 16

static void fill_image(uint8_t *img, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        img[i] = (uint8_t)(i * 7 + 3);
    }
}

/* Builds: leader 1 has compacted through index 30 with a 100-byte image; node 3
 * was cut off since index 2 and must be repaired by InstallSnapshot. */
static void snapshot_stage(struct th_net *net, uint64_t *snap_index, uint64_t *last)
{
    net->snapshot_chunk_bytes = SNAP_CHUNK;
    net->trailing_entries = 2;
    th_boot(net, 3);
    th_elect(net, 1);
    th_settle(net, 1, 2, 5);
    th_isolate(net, 3);
    uint64_t idx = 0;
    char buf[32];
    for (int i = 0; i < 30; i++) {
        snprintf(buf, sizeof(buf), "cmd-%d", i);
        idx = th_propose(net, 1, buf);
    }
    th_settle(net, 1, idx, 5);
    struct raft *l = th_raft(net, 1);
    ASSERT_EQ(net->nodes[1].applied, idx);
    uint8_t img[SNAP_BYTES];
    fill_image(img, sizeof(img));
    *snap_index = 30;
    ASSERT_RC(raft_snapshot_taken(l, *snap_index, img, sizeof(img)), 0);
    th_drain(net, 1);
    const struct raft_snapshot *s = raft_snapshot(l);
    assert_non_null(s);
    ASSERT_EQ(s->index, *snap_index);
    ASSERT_EQ(s->term, raft_term_at(l, *snap_index));
    ASSERT_EQ(s->n_bytes, SNAP_BYTES);
    ASSERT_GT(raft_first_index(l), 3);                   /* compacted ... */
    ASSERT_LE(raft_first_index(l), *snap_index + 1 - 2); /* ... keeping 2 trailing entries */
    for (int i = 0; i < 3; i++) {
        idx = th_propose(net, 1, "after-snap");
    }
    th_settle(net, 1, idx, 5);
    *last = idx;
}

/* §7: a follower behind the leader's first log entry gets the snapshot in chunks,
 * installs it (update.snapshot) and then receives the entries after it. */
static void test_snapshot_install_in_chunks(void **state)
{
    struct th_net *net = th_net_new(3, 9);
    uint64_t snap_index, last;
    snapshot_stage(net, &snap_index, &last);
    th_stats_reset(net);
    th_heal(net);
    struct raft *f = th_raft(net, 3);
    for (int i = 0; i < 30 && raft_last_index(f) < last; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    th_settle(net, 1, last, 5);
    print_message("  snapshot chunks sent: %llu (max %u bytes)\n",
                  (unsigned long long)net->sent_by[1][RAFT_MSG_SNAPSHOT], net->max_snapshot_chunk);
    ASSERT_GE(net->sent_by[1][RAFT_MSG_SNAPSHOT], (SNAP_BYTES + SNAP_CHUNK - 1) / SNAP_CHUNK);
    ASSERT_LE(net->max_snapshot_chunk, SNAP_CHUNK);
    struct th_node *n = &net->nodes[3];
    ASSERT_EQ(n->n_snapshots_installed, 1);
    ASSERT_EQ(n->installed_index, snap_index);
    ASSERT_EQ(n->installed_n_bytes, SNAP_BYTES);
    uint8_t img[SNAP_BYTES];
    fill_image(img, sizeof(img));
    assert_memory_equal(n->installed_bytes, img, SNAP_BYTES);
    const struct raft_snapshot *s = raft_snapshot(f);
    assert_non_null(s);
    ASSERT_EQ(s->index, snap_index);
    ASSERT_EQ(s->term, raft_term_at(th_raft(net, 1), snap_index));
    ASSERT_EQ(raft_config_n_voters(&s->config), 3);
    ASSERT_EQ(raft_last_index(f), last);
    for (uint64_t i = snap_index + 1; i <= last; i++) {
        const struct raft_entry *a = raft_entry_at(f, i);
        const struct raft_entry *b = raft_entry_at(th_raft(net, 1), i);
        assert_non_null(a);
        assert_non_null(b);
        assert_true(th_entry_same(a, b));
    }
    ASSERT_EQ(n->applied, last);
    th_assert_store_matches(net, 3);

    /* The store is enough to come back: restart from snapshot + entries. */
    th_crash(net, 3);
    th_restart(net, 3);
    f = th_raft(net, 3);
    ASSERT_EQ(raft_last_index(f), last);
    assert_non_null(raft_snapshot(f));
    ASSERT_EQ(raft_snapshot(f)->index, snap_index);
    uint64_t p = th_propose(net, 1, "post-restart");
    th_settle(net, 1, p, 5);
    th_assert_same_log(net, 1, 3);
    th_net_free(net);
}

/* raft.h raft_recovered: entries may start before snapshot->index + 1 and those
 * covered by the snapshot are skipped. The leader's host stored its own snapshot
 * next to its full log; after a restart the node has the snapshot, the same log
 * tail, and can still bring a far-behind follower up via InstallSnapshot. */
static void test_restart_with_snapshot_overlapping_log(void **state)
{
    struct th_net *net = th_net_new(3, 94);
    uint64_t snap_index, last;
    snapshot_stage(net, &snap_index, &last);
    struct th_node *n1 = &net->nodes[1];
    const struct raft_snapshot *s = raft_snapshot(th_raft(net, 1));
    assert_non_null(s);
    struct raft_snapshot copy = *s;
    copy.bytes = th_xmalloc(s->n_bytes);
    memcpy(copy.bytes, s->bytes, s->n_bytes);
    uint64_t first_before = raft_first_index(th_raft(net, 1));
    /* Host side: store the snapshot but keep every entry (from index 1). */
    n1->store.has_snapshot = true;
    n1->store.snapshot = copy;
    ASSERT_EQ(n1->store.entries[0].index, 1);
    th_crash(net, 1);
    th_restart(net, 1);
    struct raft *r = th_raft(net, 1);
    assert_non_null(raft_snapshot(r));
    ASSERT_EQ(raft_snapshot(r)->index, snap_index);
    ASSERT_EQ(raft_last_index(r), last);
    ASSERT_EQ(raft_term_at(r, snap_index), copy.term);
    ASSERT_GE(raft_first_index(r), 1);
    ASSERT_LE(raft_first_index(r), snap_index + 1);
    for (uint64_t i = raft_first_index(r); i <= last; i++) {
        assert_non_null(raft_entry_at(r, i));
    }
    print_message("  first index before restart %llu, after %llu\n",
                  (unsigned long long)first_before, (unsigned long long)raft_first_index(r));

    /* Node 1 leads again (node 3 is still cut off) and repairs node 3. */
    for (uint32_t i = 0; i < 10 * 2 * T && th_leader(net) == 0; i++) {
        th_round(net, bit(1) | bit(2));
    }
    uint32_t l = th_leader(net);
    ASSERT_NE(l, 0);
    uint64_t p = th_propose(net, l, "after-leader-restart");
    th_settle(net, l, p, 5);
    th_heal(net);
    for (int i = 0; i < 30 && raft_last_index(th_raft(net, 3)) < p; i++) {
        th_tick(net, l, 1);
        th_deliver_all(net);
    }
    th_settle(net, l, p, 5);
    th_assert_same_log(net, l, 3);
    ASSERT_EQ(net->nodes[3].applied, p);
    th_net_free(net);
}

struct chunk_loss {
    uint32_t seen;
    uint32_t dropped;
};

static enum th_verdict drop_third_chunk(struct th_net *net, struct raft_msg *m, void *arg)
{
    struct chunk_loss *c = arg;
    if (m->type == RAFT_MSG_SNAPSHOT && ++c->seen == 3) {
        c->dropped++;
        return TH_DROP;
    }
    return TH_DELIVER;
}

/* §7: a lost chunk is sent again; the follower still ends with the exact image. */
static void test_snapshot_chunk_loss_recovers(void **state)
{
    struct th_net *net = th_net_new(3, 91);
    uint64_t snap_index, last;
    snapshot_stage(net, &snap_index, &last);
    struct chunk_loss c = {0, 0};
    th_set_filter(net, drop_third_chunk, &c);
    th_heal(net);
    struct raft *f = th_raft(net, 3);
    for (int i = 0; i < 6 * T && raft_last_index(f) < last; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(c.dropped, 1);
    ASSERT_EQ(raft_last_index(f), last);
    ASSERT_EQ(net->nodes[3].n_snapshots_installed, 1);
    uint8_t img[SNAP_BYTES];
    fill_image(img, sizeof(img));
    ASSERT_EQ(net->nodes[3].installed_n_bytes, SNAP_BYTES);
    assert_memory_equal(net->nodes[3].installed_bytes, img, SNAP_BYTES);
    th_net_free(net);
}

static void fill_image_for(uint8_t *img, size_t n, uint64_t index)
{
    for (size_t i = 0; i < n; i++) {
        img[i] = (uint8_t)(i * 13 + index);
    }
}

struct chunk_gate {
    uint32_t delivered;
    uint32_t open_after; /* deliver this many chunks, then hold the rest */
    uint64_t new_index;  /* chunks of this snapshot always pass, and are counted */
    uint32_t new_delivered;
    bool released;
};

static enum th_verdict gate_chunks(struct th_net *net, struct raft_msg *m, void *arg)
{
    struct chunk_gate *g = arg;
    if (m->type != RAFT_MSG_SNAPSHOT) {
        return TH_DELIVER;
    }
    if (g->new_index != 0 && m->snapshot.index == g->new_index) {
        if (++g->new_delivered == 3) {
            th_release_held(net); /* the stale chunk lands right behind this one */
            g->released = true;
        }
        return TH_DELIVER;
    }
    if (g->delivered == g->open_after && !g->released) {
        return TH_HOLD;
    }
    g->delivered++;
    return TH_DELIVER;
}

/* §7: the leader takes a newer snapshot while a follower is half way through
 * receiving the older one, and a delayed chunk of the older one turns up in the
 * middle of the newer transfer. The follower must end with one whole, consistent
 * image (never a mix of the two) and the leader's log after it. */
static void test_snapshot_replaced_mid_transfer(void **state)
{
    struct th_net *net = th_net_new(3, 92);
    uint64_t snap_index, last;
    snapshot_stage(net, &snap_index, &last);
    struct raft *l = th_raft(net, 1);
    struct chunk_gate g = {.delivered = 0, .open_after = 2};
    th_set_filter(net, gate_chunks, &g);
    th_heal(net);
    for (int i = 0; i < 3; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_EQ(g.delivered, 2);
    ASSERT_EQ(net->nodes[3].n_snapshots_installed, 0);

    /* Newer snapshot at the last applied index, with a different image. */
    uint8_t img[SNAP_BYTES + 20];
    ASSERT_EQ(net->nodes[1].applied, last);
    fill_image_for(img, sizeof(img), last);
    ASSERT_RC(raft_snapshot_taken(l, last, img, sizeof(img)), 0);
    th_drain(net, 1);
    ASSERT_EQ(net->n_held, 1);
    g.new_index = last;
    uint64_t p = th_propose(net, 1, "after-second-snap");
    struct raft *f = th_raft(net, 3);
    for (int i = 0; i < 8 * T && raft_last_index(f) < p; i++) {
        th_tick(net, 1, 1);
        th_deliver_all(net);
    }
    ASSERT_GE(g.new_delivered, 3);
    ASSERT_EQ(net->n_held, 0);
    ASSERT_EQ(raft_last_index(f), p);
    struct th_node *n = &net->nodes[3];
    ASSERT_GE(n->n_snapshots_installed, 1);
    uint8_t want[SNAP_BYTES + 20];
    if (n->installed_index == snap_index) {
        fill_image(want, SNAP_BYTES);
        ASSERT_EQ(n->installed_n_bytes, SNAP_BYTES);
    } else {
        ASSERT_EQ(n->installed_index, last);
        fill_image_for(want, sizeof(want), last);
        ASSERT_EQ(n->installed_n_bytes, sizeof(want));
    }
    assert_memory_equal(n->installed_bytes, want, n->installed_n_bytes);
    th_settle(net, 1, p, 5);
    ASSERT_EQ(n->applied, p);
    th_assert_store_matches(net, 3);
    th_net_free(net);
}

/* §5.1 Figure 2: everything a node needs survives in its store. After all nodes
 * crash and restart, a new leader keeps every committed entry, and the harness's
 * State Machine Safety check sees the same entries applied again. */
static void test_full_cluster_restart(void **state)
{
    struct th_net *net = th_net_new(3, 93);
    th_boot(net, 3);
    th_elect(net, 1);
    uint64_t idx = 0;
    for (int i = 0; i < 5; i++) {
        idx = th_propose(net, 1, "durable");
    }
    th_settle(net, 1, idx, 5);
    for (uint32_t id = 1; id <= 3; id++) {
        th_crash(net, id);
    }
    for (uint32_t id = 1; id <= 3; id++) {
        th_restart(net, id);
        ASSERT_EQ(raft_last_index(th_raft(net, id)), idx);
        ASSERT_EQ(raft_role(th_raft(net, id)), RAFT_FOLLOWER);
    }
    uint32_t nl = 0;
    for (uint32_t i = 0; i < 10 * 2 * T && nl == 0; i++) {
        th_round(net, 0);
        nl = th_leader(net);
    }
    ASSERT_NE(nl, 0);
    ASSERT_GT(raft_term(th_raft(net, nl)), 2);
    uint64_t p = th_propose(net, nl, "after-restart");
    th_settle(net, nl, p, 5);
    for (uint32_t id = 1; id <= 3; id++) {
        ASSERT_EQ(net->nodes[id].applied, p);
        th_assert_same_log(net, nl, id);
    }
    th_net_free(net);
}

/* ==== bad input =========================================================== */

static void expect_einval(struct th_net *net, uint32_t id, const struct raft_msg *m)
{
    struct raft *r = th_raft(net, id);
    uint64_t term = raft_term(r), last = raft_last_index(r), commit = raft_commit(r);
    int role = raft_role(r);
    int rv = raft_step(r, m);
    if (rv != RAFT_EINVAL) {
        th_msg_print("accepted", m);
    }
    ASSERT_RC(rv, RAFT_EINVAL);
    th_drain(net, id);
    /* Dropped means dropped: no term bump, no log change, no role change. */
    ASSERT_EQ(raft_term(r), term);
    ASSERT_EQ(raft_last_index(r), last);
    ASSERT_EQ(raft_commit(r), commit);
    ASSERT_EQ(raft_role(r), role);
}

/* raft.h: raft_step returns RAFT_EINVAL for a malformed message (and drops it);
 * proposals check size and leadership. Nothing may crash (run under ASan). */
static void test_bad_input(void **state)
{
    struct th_net *net = th_net_new(3, 10);
    th_boot(net, 3);
    uint64_t t = th_elect(net, 1);
    th_settle(net, 1, 2, 3);
    struct raft_msg m;

    static const uint8_t bad_types[] = {0, RAFT_MSG_TYPE_MAX + 1, 200, 255};
    for (size_t i = 0; i < sizeof(bad_types); i++) {
        memset(&m, 0, sizeof(m));
        m.type = bad_types[i];
        m.from = 1;
        m.to = 2;
        m.term = t;
        expect_einval(net, 2, &m);
    }

    /* n_entries > 0 but entries == NULL, from the real leader and from a higher term. */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND;
    m.from = 1;
    m.to = 2;
    m.term = t;
    m.append.prev_index = 2;
    m.append.prev_term = t;
    m.append.n_entries = 3;
    m.append.entries = NULL;
    expect_einval(net, 2, &m);
    m.term = t + 100;
    expect_einval(net, 2, &m);

    /* An entry with bytes == NULL but n_bytes > 0. */
    struct raft_entry e = {
        .term = t, .index = 3, .type = RAFT_ENTRY_COMMAND, .n_bytes = 8, .bytes = NULL};
    m.term = t;
    m.append.n_entries = 1;
    m.append.entries = &e;
    expect_einval(net, 2, &m);

    /* A snapshot chunk that claims bytes it does not carry, or overruns its total. */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_SNAPSHOT;
    m.from = 1;
    m.to = 2;
    m.term = t;
    m.snapshot.index = 50;
    m.snapshot.term = t;
    th_config_make(&m.snapshot.config, 3, 0);
    m.snapshot.n_total = 10;
    m.snapshot.offset = 0;
    m.snapshot.n_bytes = 4;
    m.snapshot.bytes = NULL;
    expect_einval(net, 2, &m);
    uint8_t chunk[8] = {0};
    m.snapshot.bytes = chunk;
    m.snapshot.offset = 8;
    m.snapshot.n_bytes = 8; /* 8 + 8 > 10 */
    expect_einval(net, 2, &m);

    /* Proposals. */
    struct raft *l = th_raft(net, 1);
    uint64_t idx = 0;
    uint8_t *big = calloc(1, RAFT_ENTRY_BYTES_MAX + 1);
    assert_non_null(big);
    ASSERT_RC(raft_propose(l, big, RAFT_ENTRY_BYTES_MAX + 1, &idx), RAFT_ETOOBIG);
    ASSERT_RC(raft_propose(l, big, RAFT_ENTRY_BYTES_MAX, &idx), 0); /* the limit itself fits */
    free(big);
    th_drain(net, 1);
    ASSERT_RC(raft_propose(l, NULL, 4, &idx), RAFT_EINVAL);
    ASSERT_RC(raft_propose(th_raft(net, 2), "f", 1, &idx), RAFT_ENOTLEADER);
    ASSERT_RC(raft_change(th_raft(net, 2), RAFT_REMOVE, 3, &idx), RAFT_ENOTLEADER);
    ASSERT_RC(raft_transfer(th_raft(net, 2), 3), RAFT_ENOTLEADER);
    th_drain(net, 1);
    th_drain(net, 2);
    th_settle(net, 1, raft_last_index(l), 5);

    /* raft_new refuses nonsense options and non-contiguous logs. */
    struct raft_options o;
    struct raft *r = NULL;
    struct raft_recovered rec;
    memset(&rec, 0, sizeof(rec));
    raft_options_default(&o, 0, 1);
    ASSERT_RC(raft_new(&o, &rec, &r), RAFT_EINVAL);
    raft_options_default(&o, 1, 1);
    o.election_ticks = 10;
    o.heartbeat_ticks = 10;
    ASSERT_RC(raft_new(&o, &rec, &r), RAFT_EINVAL);
    raft_options_default(&o, 1, 1);
    struct raft_entry gap[2] = {{.term = 1, .index = 1, .type = RAFT_ENTRY_COMMAND},
                                {.term = 1, .index = 3, .type = RAFT_ENTRY_COMMAND}};
    rec.entries = gap;
    rec.n_entries = 2;
    rec.hard_state.term = 1;
    ASSERT_RC(raft_new(&o, &rec, &r), RAFT_EINVAL);

    /* Error strings exist for every code. */
    static const int codes[] = {RAFT_ENOTLEADER, RAFT_EBUSY,       RAFT_EFULL,   RAFT_ETOOBIG,
                                RAFT_EINVAL,     RAFT_ENOMEM,      RAFT_ECONFIG, RAFT_ENOTREADY,
                                RAFT_ECATCHUP,   RAFT_ESTEPPEDDOWN};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(raft_strerror(codes[i]));
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(raft_strerror(codes[i]), raft_strerror(codes[j]));
        }
    }
    for (int type = 1; type <= RAFT_MSG_TYPE_MAX; type++) {
        assert_non_null(raft_msg_type_name(type));
    }
    ASSERT_EQ(th_leader(net), 1);
    ASSERT_EQ(raft_term(l), t);
    th_net_free(net);
}

/* Structural nonsense that a decoder or a buggy peer could produce. These are
 * robustness expectations beyond the strict letter of raft.h ("malformed"). */
static void test_bad_input_structure(void **state)
{
    struct th_net *net = th_net_new(3, 11);
    th_boot(net, 3);
    uint64_t t = th_elect(net, 1);
    th_settle(net, 1, 2, 3);
    struct raft_msg m;
    char b1[16], b2[16];

    /* Entries that do not follow prev_index, or skip an index. */
    struct raft_entry ents[2];
    make_cmd(&ents[0], t, 5, b1, sizeof(b1));
    make_cmd(&ents[1], t, 6, b2, sizeof(b2));
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND;
    m.from = 1;
    m.to = 2;
    m.term = t;
    m.append.prev_index = 2;
    m.append.prev_term = t;
    m.append.commit = 2;
    m.append.n_entries = 2;
    m.append.entries = ents;
    expect_einval(net, 2, &m);
    make_cmd(&ents[0], t, 3, b1, sizeof(b1));
    make_cmd(&ents[1], t, 5, b2, sizeof(b2));
    expect_einval(net, 2, &m);

    /* An entry newer than the message's own term: no leader can send that. */
    make_cmd(&ents[0], t + 1, 3, b1, sizeof(b1));
    m.append.n_entries = 1;
    expect_einval(net, 2, &m);

    /* from == 0 and a message addressed to somebody else. */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_HEARTBEAT;
    m.from = 0;
    m.to = 2;
    m.term = t + 5;
    expect_einval(net, 2, &m);
    m.from = 1;
    m.to = 3;
    expect_einval(net, 2, &m);
    th_net_free(net);
}

/* ==== main ================================================================ */

#define TEST(fn) cmocka_unit_test_teardown(fn, th_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_elect_and_replicate),
        TEST(test_fig7_log_repair),
        TEST(test_fig7_log_repair_prevote),
        TEST(test_fig8_no_commit_by_counting_replicas),
        TEST(test_fig8_uncommitted_majority_entry_is_overwritten),
        TEST(test_split_vote_resolved_by_randomization),
        TEST(test_vote_refused_to_stale_log),
        TEST(test_vote_survives_restart),
        TEST(test_stale_leader_steps_down_and_is_overwritten),
        TEST(test_stale_term_append_is_rejected),
        TEST(test_check_quorum_isolated_leader_steps_down),
        TEST(test_prevote_isolated_node_does_not_disrupt),
        TEST(test_no_prevote_isolated_node_disrupts),
        TEST(test_candidate_counts_own_vote_only_when_durable),
        TEST(test_leader_commit_counts_only_durable_copies),
        TEST(test_read_index_batching),
        TEST(test_read_round_goes_to_the_fastest_quorum),
        TEST(test_read_index_waits_for_commit_in_term),
        TEST(test_read_index_on_follower),
        TEST(test_read_index_fails_on_step_down),
        TEST(test_read_index_without_leader),
        TEST(test_lease_read_expires),
        TEST(test_backpressure_limits),
        TEST(test_transfer_to_up_to_date_follower),
        TEST(test_transfer_to_lagging_follower),
        TEST(test_transfer_to_unreachable_follower_aborts),
        TEST(test_membership_changes),
        TEST(test_promote_lagging_learner),
        TEST(test_config_rolls_back_with_truncation),
        TEST(test_snapshot_install_in_chunks),
        TEST(test_snapshot_chunk_loss_recovers),
        TEST(test_restart_with_snapshot_overlapping_log),
        TEST(test_snapshot_replaced_mid_transfer),
        TEST(test_full_cluster_restart),
        TEST(test_bad_input),
        TEST(test_bad_input_structure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
