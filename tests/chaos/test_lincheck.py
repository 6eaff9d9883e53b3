"""test_lincheck.py -- the linearizability checker on histories whose answer is known.

Hand-written histories (good and bad: the stale read after a partition, a lost write, a
read from the future, cas semantics, unknown ops that make a bad history good), a
brute-force cross-check on hundreds of small random histories (every permutation of every
subset of the unknown ops), shrink windows that are small and sound, the step budget, the
JSON-lines loader, and a 2,000-op, 5-client history that must check in seconds.

Times are small integers here (the checker does not care about units).
"""

import itertools
import json
import os
import random
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lincheck  # noqa: E402
from lincheck import ANY, CAS, FAIL, OK, READ, UNKNOWN, WRITE, Op  # noqa: E402


class H:
    """A tiny history builder: h.w(...), h.r(...), h.cas(...) append ops with the next id."""

    def __init__(self):
        self.ops = []

    def _add(self, **kw):
        kw.setdefault("key", "x")
        kw.setdefault("client", len(self.ops) % 5)
        op = Op(len(self.ops) + 1, **kw)
        self.ops.append(op)
        return op

    def w(self, v, t0, t1=None, status=OK, key="x", **kw):
        return self._add(f=WRITE, value=v, invoke=t0, complete=t1, status=status, key=key, **kw)

    def r(self, v, t0, t1=None, status=OK, key="x", **kw):
        return self._add(f=READ, result=v, invoke=t0, complete=t1, status=status, key=key, **kw)

    def cas(self, x, y, t0, t1=None, ok=True, saw=None, status=OK, key="x", **kw):
        return self._add(f=CAS, expected=x, value=y, invoke=t0, complete=t1, status=status,
                         succeeded=ok if status == OK else None, result=saw, key=key, **kw)

    def check(self, **kw):
        return lincheck.check(self.ops, **kw)


def verdict(h, **kw):
    return h.check(**kw).verdict


# ---- hand-written histories ------------------------------------------------------------


def test_empty_and_sequential_good():
    assert lincheck.check([]).ok
    h = H()
    h.r(None, 0, 1)
    h.w("a", 2, 3)
    h.r("a", 4, 5)
    h.cas("a", "b", 6, 7)
    h.cas("a", "c", 8, 9, ok=False, saw="b")
    h.r("b", 10, 11)
    assert verdict(h) == "linearizable"


def test_concurrent_read_may_see_either_value():
    for seen in ("a", "b"):
        h = H()
        h.w("a", 0, 1)
        h.w("b", 2, 10)
        h.r(seen, 3, 4)      # overlaps the write of b
        assert verdict(h) == "linearizable", seen


def test_reads_must_not_go_back_in_time():
    h = H()
    h.w("a", 0, 1)
    h.w("b", 2, 10)
    h.r("b", 3, 4)           # b took effect by t=4 ...
    h.r("a", 5, 6)           # ... so a later read cannot see a again
    rep = h.check()
    assert not rep.ok and rep.violations[0].key == "x"


def test_stale_read_after_partition():
    """The classic: n1 was leader and acked a; a partition isolates it; n2 is elected and
    acks b; a read served by the old leader n1 returns a."""
    h = H()
    h.w("a", 0, 10, node=1)
    h.r("a", 12, 14, node=1)
    # partition: n1 alone; n2 wins an election
    h.w("b", 100, 110, node=2)
    h.r("b", 111, 113, node=3)
    stale = h.r("a", 120, 121, node=1)    # the old leader answers locally
    h.r("b", 130, 132, node=2)
    rep = h.check()
    assert rep.verdict == "NOT linearizable"
    r = rep.violations[0]
    ids = [op.id for op in r.window]
    assert stale.id in ids and stale.id in r.core
    assert len(r.window) <= 3, [lincheck.describe(o) for o in r.window]
    text = rep.text()
    assert "NOT linearizable" in text and f"#{stale.id}" in text
    assert "written by #1" in text        # where the stale value came from


def test_lost_write():
    """An acknowledged write that later reads do not see (e.g. truncated on failover)."""
    h = H()
    h.w("a", 0, 1)
    h.w("b", 2, 3)            # acked ...
    h.r("b", 4, 5)
    h.r("a", 6, 7)            # ... then gone: the log rolled back to a
    assert verdict(h) == "NOT linearizable"
    h2 = H()
    h2.w("a", 0, 1)
    h2.r(None, 2, 3)          # the key vanished
    assert verdict(h2) == "NOT linearizable"


def test_read_from_the_future_and_phantom_values():
    h = H()
    h.r("a", 0, 1)
    h.w("a", 2, 3)            # a read cannot see a write invoked after it completed
    assert verdict(h) == "NOT linearizable"
    h2 = H()
    h2.w("a", 0, 1)
    h2.r("zzz", 2, 3)         # nobody wrote zzz
    rep = h2.check()
    assert not rep.ok and "which no op in the history" in rep.text()


def test_cas_semantics():
    h = H()
    h.cas("a", "b", 0, 1, ok=False, saw=None)     # missing key: a value compare fails
    h.w("a", 2, 3)
    h.cas("a", "b", 4, 5)
    h.r("b", 6, 7)
    assert verdict(h) == "linearizable"
    bad = H()
    bad.w("a", 0, 1)
    bad.cas("a", "b", 2, 3, ok=False, saw="a")   # it held, so the swap had to happen
    assert verdict(bad) == "NOT linearizable"
    bad2 = H()
    bad2.w("a", 0, 1)
    bad2.cas("z", "b", 2, 3)                     # swapped although the register was a
    assert verdict(bad2) == "NOT linearizable"
    bad3 = H()
    bad3.cas("a", "b", 0, 1, ok=False, saw=None)
    bad3.r("b", 2, 3)                            # a failed cas has no effect
    assert verdict(bad3) == "NOT linearizable"


def test_failed_ops_did_not_happen():
    h = H()
    h.w("a", 0, 1)
    h.w("b", 2, 3, status=FAIL)
    h.r("b", 4, 5)
    assert verdict(h) == "NOT linearizable"


def test_unknown_ops_make_a_bad_history_good():
    # the same history as above, but the write of b timed out: it may have applied
    h = H()
    h.w("a", 0, 1)
    h.w("b", 2, None, status=UNKNOWN)
    h.r("b", 4, 5)
    assert verdict(h) == "linearizable"
    # an unknown write may take effect long after its invoke, even after later reads
    h2 = H()
    h2.w("a", 0, 1)
    h2.w("b", 2, None, status=UNKNOWN)
    h2.r("a", 3, 4)
    h2.r("a", 5, 6)
    h2.r("b", 50, 51)
    assert verdict(h2) == "linearizable"
    # ... or never
    h3 = H()
    h3.w("a", 0, 1)
    h3.w("b", 2, None, status=UNKNOWN)
    h3.r("a", 100, 101)
    assert verdict(h3) == "linearizable"
    # an unknown cas that swapped
    h4 = H()
    h4.w("a", 0, 1)
    h4.cas("a", "b", 2, None, status=UNKNOWN)
    h4.r("b", 5, 6)
    assert verdict(h4) == "linearizable"


def test_unknown_ops_cannot_fix_everything():
    # not before its invoke
    h = H()
    h.r("b", 0, 1)
    h.w("b", 2, None, status=UNKNOWN)
    assert verdict(h) == "NOT linearizable"
    # at most once: once overwritten by an acked write it cannot come back
    h2 = H()
    h2.w("b", 0, None, status=UNKNOWN)
    h2.r("b", 1, 2)
    h2.w("c", 3, 4)
    h2.r("b", 5, 6)
    assert verdict(h2) == "NOT linearizable"
    # an unknown cas can only swap from its compare value
    h3 = H()
    h3.w("a", 0, 1)
    h3.cas("z", "b", 2, None, status=UNKNOWN)
    h3.r("b", 5, 6)
    assert verdict(h3) == "NOT linearizable"
    # unknown reads say nothing
    h4 = H()
    h4.w("a", 0, 1)
    h4.r("zzz", 2, None, status=UNKNOWN)
    assert verdict(h4) == "linearizable"


def test_keys_are_checked_independently():
    h = H()
    h.w("a", 0, 1, key="k1")
    h.w("b", 2, 3, key="k2")
    h.r("a", 4, 5, key="k1")
    h.r(None, 4, 5, key="k3")
    h.r("a", 6, 7, key="k2")        # bad on k2 only
    rep = h.check()
    assert [r.key for r in rep.violations] == ["k2"]
    assert rep.keys["k1"].verdict == "ok" and rep.keys["k3"].verdict == "ok"


def test_budget_gives_unknown_not_a_hang():
    # many concurrent writes of observed values: lots of orders to try
    h = H()
    n = 14
    for i in range(n):
        h.w(f"v{i}", 0, 100)
    for i in range(n):
        h.r(f"v{(i * 5) % n}", 1 + i, 100)
    h.r("nobody", 200, 201)         # makes the whole thing bad, found only after search
    t0 = time.monotonic()
    rep = h.check(budget=500, do_shrink=False)
    assert rep.verdict == "unknown (budget)", rep.text()
    assert time.monotonic() - t0 < 5
    assert "unknown (budget)" in rep.text()


# ---- brute force cross-check -----------------------------------------------------------


def brute_force(ops, inits=(None,)):
    """True iff some subset of the unknown ops plus all ok ops has an order that respects
    real time and the register model, from one of `inits`."""
    ops = [op for op in ops if op.status != FAIL and not (op.status == UNKNOWN and op.f == READ)]
    done = [op for op in ops if op.status == OK]
    unknown = [op for op in ops if op.status == UNKNOWN]
    for k in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, k):
            cand = done + list(chosen)
            for perm in itertools.permutations(cand):
                good = True
                for i in range(len(perm)):
                    for j in range(i + 1, len(perm)):
                        if perm[j].complete is not None and perm[j].complete < perm[i].invoke:
                            good = False
                            break
                    if not good:
                        break
                if not good:
                    continue
                for init in inits:
                    s = init
                    for op in perm:
                        s = lincheck.step(s, op)
                        if s is lincheck._REJECT:
                            break
                    else:
                        return True
    return False


def random_history(rng, n_ops, n_clients=3, values=("a", "b", "c")):
    """Small random histories, good and bad alike (values repeat on purpose)."""
    h = H()
    free_at = [0] * n_clients
    for _ in range(n_ops):
        c = rng.randrange(n_clients)
        t0 = free_at[c] + rng.randrange(0, 4)
        t1 = t0 + rng.randrange(0, 6)
        st = rng.choices((OK, UNKNOWN, FAIL), (8, 2, 1))[0]
        comp = None if st == UNKNOWN else t1
        kind = rng.choice((READ, WRITE, CAS))
        if kind == READ:
            h.r(rng.choice(values + (None,)), t0, comp, status=st, client=c)
        elif kind == WRITE:
            h.w(rng.choice(values), t0, comp, status=st, client=c)
        else:
            ok = rng.random() < 0.5
            h.cas(rng.choice(values), rng.choice(values), t0, comp, ok=ok,
                  saw=None if ok else rng.choice(values + (None,)), status=st, client=c)
        # an unknown op leaves its client free again (it gave up), like the harness
        free_at[c] = t1 + 1
    return h


def test_agrees_with_brute_force_on_random_small_histories():
    rng = random.Random(8)
    counts = {True: 0, False: 0}
    for _ in range(600):
        h = random_history(rng, rng.randrange(1, 8))
        want = brute_force(h.ops)
        rep = h.check(do_shrink=False)
        assert rep.verdict != "unknown (budget)"
        got = rep.ok
        assert got == want, "\n".join(lincheck.describe(o) + f" [{o.invoke},{o.complete}]"
                                      for o in h.ops)
        counts[want] += 1
    # the generator produces both kinds, so both directions were exercised
    assert counts[True] > 100 and counts[False] > 100, counts


def test_shrink_windows_are_sound_and_fail_on_their_own():
    """Every reported window (with its overlapping may-have-applied writes and any initial
    value) must itself be non-linearizable by brute force: so it proves the violation."""
    rng = random.Random(81)
    n_checked = 0
    for _ in range(400):
        h = random_history(rng, rng.randrange(2, 9))
        rep = h.check()
        for r in rep.violations:
            win_ids = {o.id for o in r.window}
            assert r.window and r.core <= win_ids
            values = {o.value for o in r.all_ops} | {o.result for o in r.all_ops} | {"fresh"}
            inits = (None,) if r.from_start else tuple(values | {None})
            assert not brute_force(r.window + r.extra, inits)
            n_checked += 1
    assert n_checked > 50


# ---- loader ----------------------------------------------------------------------------


def test_jsonl_history_round_trip(tmp_path):
    ev = [
        {"type": "nemesis", "t": 0, "what": "start", "fault": "kill n1"},
        {"type": "invoke", "id": 1, "client": 0, "node": 1, "key": "k", "f": "write",
         "value": "a", "t": 10},
        {"type": "ok", "id": 1, "t": 20},
        {"type": "invoke", "id": 2, "client": 1, "node": 2, "key": "k", "f": "cas",
         "expected": "a", "value": "b", "t": 30},
        {"type": "unknown", "id": 2, "t": 40, "error": "timeout"},
        {"type": "invoke", "id": 3, "client": 2, "node": 3, "key": "k", "f": "read", "t": 50},
        {"type": "ok", "id": 3, "t": 60, "value": "b"},
        {"type": "invoke", "id": 4, "client": 3, "node": 1, "key": "k", "f": "write",
         "value": "c", "t": 55},                        # never completed: unknown
        {"type": "invoke", "id": 5, "client": 4, "node": 1, "key": "k", "f": "cas",
         "expected": "q", "value": "d", "t": 70},
        {"type": "ok", "id": 5, "t": 80, "succeeded": False, "value": "b"},
        {"type": "invoke", "id": 6, "client": 4, "node": 1, "key": "k", "f": "write",
         "value": "e", "t": 90},
        {"type": "fail", "id": 6, "t": 95, "error": "503 no_leader"},
    ]
    p = tmp_path / "h.jsonl"
    p.write_text("\n".join(json.dumps(e) for e in ev) + "\n")
    ops = {op.id: op for op in lincheck.load_history(str(p))}
    assert ops[2].status == UNKNOWN and ops[2].complete is None
    assert ops[4].status == UNKNOWN and ops[4].error == "no completion recorded"
    assert ops[5].succeeded is False and ops[5].result == "b"
    assert ops[6].status == FAIL
    assert lincheck.main([str(p)]) == 0
    # now make the read impossible: the cas saw "a" after the read saw "b"
    ev[9] = {"type": "ok", "id": 5, "t": 80, "succeeded": False, "value": "a"}
    p.write_text("\n".join(json.dumps(e) for e in ev) + "\n")
    assert lincheck.main([str(p)]) == 1
    p.write_text('{"type":"ok","id":9,"t":1}\n')
    assert lincheck.main([str(p)]) == 3


# ---- performance -------------------------------------------------------------------------


def simulated_history(rng, n_ops, n_clients, keys, unknown_rate=0.02, mean_gap=3):
    """A linearizable history from a simulated register: each op takes effect at a random
    instant inside its interval; results follow from the effect order."""
    pending = []
    free_at = [0.0] * n_clients
    seq = 0
    for _ in range(n_ops):
        c = min(range(n_clients), key=lambda i: free_at[i])
        t0 = free_at[c] + rng.random() * mean_gap
        t1 = t0 + 1 + rng.random() * 20
        at = t0 + rng.random() * (t1 - t0)
        seq += 1
        kind = rng.choice((READ, WRITE, CAS))
        unknown = rng.random() < unknown_rate and kind != READ
        applies = not unknown or rng.random() < 0.5
        pending.append((at if applies else None, seq, c, rng.choice(keys), kind,
                        t0, None if unknown else t1))
        free_at[c] = t1
    state = {}
    last_seen = {}
    ops = []
    # effects in time order; unknown ops that did not apply are recorded without effect
    for at, sid, c, key, kind, t0, t1 in sorted(pending, key=lambda p: (p[0] is None, p[0] or 0)):
        st = UNKNOWN if t1 is None else OK
        cur = state.get(key)
        if kind == READ:
            op = Op(sid, key, READ, t0, t1, st, result=cur if st == OK else None, client=c)
        elif kind == WRITE:
            v = f"c{c}-{sid}"
            if at is not None:
                state[key] = v
            op = Op(sid, key, WRITE, t0, t1, st, value=v, client=c)
        else:
            exp = last_seen.get(key, "none")
            v = f"c{c}-{sid}"
            swapped = cur == exp
            if swapped and at is not None:
                state[key] = v
            if st == UNKNOWN:
                op = Op(sid, key, CAS, t0, None, UNKNOWN, value=v, expected=exp, client=c)
            else:
                op = Op(sid, key, CAS, t0, t1, OK, value=v, expected=exp, succeeded=swapped,
                        result=None if swapped else cur, client=c)
        if at is not None and state.get(key) is not None:
            last_seen[key] = state[key] if rng.random() < 0.7 else last_seen.get(key, "none")
        ops.append(op)
    return ops


@pytest.mark.parametrize("keys", [("k",), ("k0", "k1", "k2", "k3")])
def test_performance_2000_ops_5_clients(keys):
    rng = random.Random(2000)
    ops = simulated_history(rng, 2000, 5, keys)
    t0 = time.monotonic()
    rep = lincheck.check(ops)
    dt = time.monotonic() - t0
    assert rep.verdict == "linearizable", rep.text()
    assert dt < 10, f"{dt:.2f}s"
    # one corrupted read in the middle is found, and the window around it is small
    reads = [op for op in ops if op.f == READ and op.status == OK and op.result is not None]
    bad = reads[len(reads) // 2]
    older = next(op for op in sorted(ops, key=lambda o: o.invoke)
                 if op.f == WRITE and op.key == bad.key and op.status == OK
                 and op.complete < bad.invoke - 200)
    bad.result = older.value
    t0 = time.monotonic()
    rep = lincheck.check(ops)
    dt = time.monotonic() - t0
    assert rep.verdict == "NOT linearizable"
    r = rep.violations[0]
    assert bad.id in r.core and len(r.window) <= 12, rep.text()
    assert dt < 30, f"{dt:.2f}s"


def test_any_state_model():
    # ANY matches the first observation and then is that value
    assert lincheck.step(ANY, Op(1, "k", READ, 0, 1, result="q")) == "q"
    assert lincheck.step(ANY, Op(1, "k", CAS, 0, 1, expected="a", value="b",
                                 succeeded=True)) == "b"
    assert lincheck.step("z", Op(1, "k", CAS, 0, 1, expected="a", value="b",
                                 succeeded=True)) is lincheck._REJECT
