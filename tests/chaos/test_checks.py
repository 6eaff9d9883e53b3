"""test_checks.py -- checks.py on fabricated histories: each checker passes a good one and
flags each kind of bad one (the negative controls: a double increment, two holders at
once, a token going backwards, an early expiry, a duplicate id, ids going backwards, a
missing / duplicated / phantom watch event, a stuck watcher). No servers; ~0.1 s."""

import checks

MS = 1_000_000


class H:
    """A history under construction: op(...) adds an invoke and its completion."""

    def __init__(self):
        self.ev = []
        self.n = 0

    def op(self, f, key, t0, t1, status="ok", node=1, inv=None, res=None):
        self.n += 1
        i = {"type": "invoke", "id": self.n, "client": 0, "node": node, "key": key, "f": f,
             "t": t0}
        i.update(inv or {})
        self.ev.append(i)
        if status != "open":
            c = {"type": status, "id": self.n, "t": t1}
            c.update(res or {})
            self.ev.append(c)
        return self.n

    def note(self, **kw):
        self.ev.append(kw)


# ---- lock ------------------------------------------------------------------------------


def _hold(h, name, owner, token, t_acq, t_rel, ttl_ms=1000, seqs=None, value=None):
    """An acquire at t_acq (reply 5 ms later), a release invoked at t_rel."""
    h.op("acquire", name, t_acq, t_acq + 5 * MS, inv={"owner": owner, "ttl_ms": ttl_ms},
         res={"token": token, "lease": token})
    if seqs:
        h.note(type="resource", lock=name, seq=seqs[0], op="read", owner=owner,
               token=token, value=value, accepted=True)
        h.note(type="resource", lock=name, seq=seqs[1], op="write", owner=owner,
               token=token, value=value + 1, accepted=True)
    h.op("release", name, t_rel, t_rel + 3 * MS, inv={"owner": owner, "token": token},
         res={"released": True})


def _good_lock():
    h = H()
    _hold(h, "L0", "a", 1, 0, 100 * MS, seqs=(1, 2), value=0)
    _hold(h, "L0", "b", 2, 90 * MS, 300 * MS, seqs=(3, 4), value=1)      # waited for a
    _hold(h, "L1", "c", 3, 100 * MS, 200 * MS)
    # d's lease expired (ttl 1 s from its send at 400 ms) before e got the lock
    _hold(h, "L0", "d", 4, 400 * MS, 3000 * MS, seqs=(5, 6), value=2)
    _hold(h, "L0", "e", 5, 1405 * MS, 1500 * MS, seqs=(8, 9), value=3)
    h.note(type="resource", lock="L0", seq=7, op="read", owner="d", token=4, value=None,
           accepted=False)                                               # never: 8 > 7
    return h


def test_lock_good_history_passes():
    r = checks.check_lock(_good_lock().ev)
    assert r.ok, r.text()
    assert r.stats["acquired"] == 5 and r.stats["counter increments"] == 4, r.stats


def test_lock_two_believers_at_once_is_flagged():
    h = _good_lock()
    _hold(h, "L1", "x", 6, 1600 * MS, 1700 * MS)
    _hold(h, "L1", "z", 7, 1650 * MS, 1800 * MS)  # while x believes (until 1.7 s)
    r = checks.check_lock(h.ev)
    assert r.rules() == ["L1"], r.text()


def test_lock_renewal_extends_belief_and_overlap_is_flagged():
    h = H()
    h.op("acquire", "L0", 0, 5 * MS, inv={"owner": "a", "ttl_ms": 1000},
         res={"token": 1, "lease": 1})
    h.op("keepalive", "L0", 800 * MS, 810 * MS, inv={"owner": "a", "lease": 1},
         res={"gone": False})
    h.op("acquire", "L0", 1000 * MS, 1500 * MS, inv={"owner": "b", "ttl_ms": 1000},
         res={"token": 2, "lease": 2})             # a believes until 1.8 s
    assert checks.check_lock(h.ev).rules() == ["L1"]
    # the same without the renewal: a's belief ended at 1.0 s, b's grant is fine
    h2 = H()
    h2.ev = [e for e in h.ev if e.get("id") != 2]
    assert checks.check_lock(h2.ev).ok


def test_lock_token_backwards_and_duplicate_are_flagged():
    h = _good_lock()
    _hold(h, "L1", "y", 2, 5000 * MS, 5100 * MS)  # token 2 again, after 5 was granted
    r = checks.check_lock(h.ev)
    assert r.rules() == ["L2"], r.text()
    assert any("granted to 2 holders" in a for a in r.anomalies), r.text()
    assert any("not above token 5" in a for a in r.anomalies), r.text()


def test_lock_early_expiry_is_flagged():
    h = H()
    h.op("acquire", "L0", 0, 5 * MS, inv={"owner": "a", "ttl_ms": 1000},
         res={"token": 1, "lease": 1})
    h.op("keepalive", "L0", 600 * MS, 610 * MS, inv={"owner": "a", "lease": 1},
         res={"gone": True, "code": 410})
    r = checks.check_lock(h.ev)
    assert r.rules() == ["L3"], r.text()


def test_lock_resource_double_increment_and_interleaving_are_flagged():
    h = H()
    h.op("acquire", "L0", 0, 5 * MS, inv={"owner": "a", "ttl_ms": 1000},
         res={"token": 1, "lease": 1})
    h.op("acquire", "L0", 2000 * MS, 2005 * MS, inv={"owner": "b", "ttl_ms": 1000},
         res={"token": 2, "lease": 2})
    # a fabricated resource log: both read 0 and both wrote 1 (equal tokens would do
    # this); the checker must see the double increment and the interleaving
    for seq, op, owner, tok, v in ((1, "read", "a", 2, 0), (2, "read", "b", 2, 0),
                                   (3, "write", "a", 2, 1), (4, "write", "b", 2, 1)):
        h.note(type="resource", lock="L0", seq=seq, op=op, owner=owner, token=tok,
               value=v, accepted=True)
    r = checks.check_lock(h.ev)
    assert r.rules() == ["L4"], r.text()
    assert any("double increment" in a for a in r.anomalies), r.text()
    assert any("two holders at once" in a for a in r.anomalies), r.text()
    # and an accepted older token
    h.note(type="resource", lock="L0", seq=5, op="read", owner="c", token=1, value=1,
           accepted=True)
    assert any("accepted token 1" in a for a in checks.check_lock(h.ev).anomalies)


def test_lock_resource_backwards_is_flagged():
    h = H()
    for seq, op, v in ((1, "read", 0), (2, "write", 1), (3, "read", 1), (4, "write", 0)):
        h.note(type="resource", lock="L0", seq=seq, op=op, owner=f"o{(seq + 1) // 2}",
               token=seq, value=v, accepted=True)
    r = checks.check_lock(h.ev)
    assert any("double increment" in a and "wrote 0 over 1" in a for a in r.anomalies), \
        r.text()


# ---- ids -------------------------------------------------------------------------------


def _sf(ms, worker, seq):
    return (ms << 22) | (worker << 12) | seq


def _good_ids():
    h = H()
    h.op("seg", "chaos", 0, 10, node=1, inv={"life": 1}, res={"ids": [1, 2, 3], "life": 1})
    h.op("seg", "chaos", 5, 20, node=2, inv={"life": 1}, res={"ids": [101], "life": 1})
    h.op("seg", "chaos", 30, 40, node=1, inv={"life": 1}, res={"ids": [4], "life": 1})
    # n1 restarted: a fresh segment, lower than n2's ids is fine
    h.op("seg", "chaos", 50, 60, node=1, inv={"life": 2}, res={"ids": [201, 202], "life": 2})
    h.op("seg", "chaos", 50, 60, node=2, inv={"life": 1}, res={"ids": [102], "life": 1})
    h.op("sf", "snowflake", 0, 10, node=1, res={"ids": [_sf(5, 0, 0), _sf(5, 0, 1)],
                                                 "worker": 0})
    h.op("sf", "snowflake", 20, 30, node=2, res={"ids": [_sf(5, 1, 0)], "worker": 1})
    h.op("sf", "snowflake", 40, 50, node=1, res={"ids": [_sf(9, 0, 0)], "worker": 0})
    return h


def test_ids_good_history_passes():
    r = checks.check_ids(_good_ids().ev)
    assert r.ok, r.text()
    assert r.stats["segment ids"] == 8 and r.stats["snowflake workers"] == 2, r.stats


def test_ids_duplicate_is_flagged_even_from_an_unknown_op():
    h = _good_ids()
    h.op("seg", "chaos", 70, 80, node=3, status="unknown", inv={"life": 1},
         res={"ids": [102], "error": "bad body"})
    assert checks.check_ids(h.ev).rules() == ["I1"]
    h = _good_ids()
    h.op("sf", "snowflake", 60, 70, node=3, res={"ids": [_sf(5, 1, 0)], "worker": 1})
    assert "I1" in checks.check_ids(h.ev).rules()


def test_ids_going_backwards_is_flagged():
    h = _good_ids()
    h.op("seg", "chaos", 70, 80, node=2, inv={"life": 1}, res={"ids": [99], "life": 1})
    assert checks.check_ids(h.ev).rules() == ["I3"]
    h = _good_ids()
    h.op("sf", "snowflake", 60, 70, node=3, res={"ids": [_sf(8, 0, 5)], "worker": 0})
    assert checks.check_ids(h.ev).rules() == ["I4"]
    h = _good_ids()
    h.op("sf", "snowflake", 60, 70, node=3, res={"ids": [_sf(20, 2, 1), _sf(20, 2, 0)],
                                                  "worker": 2})
    assert checks.check_ids(h.ev).rules() == ["I2"]
    h = _good_ids()
    h.op("sf", "snowflake", 60, 70, node=3, res={"ids": [_sf(20, 3, 0)], "worker": 2})
    assert checks.check_ids(h.ev).rules() == ["I4"]


# ---- watch -----------------------------------------------------------------------------


def _good_watch():
    """Start revision 10; puts at 11, 12 (a), 14 (b; 13 was elsewhere); two watchers,
    watcher 1 reconnected once."""
    h = H()
    h.op("write", "w/a", 0, 10, inv={"value": "c0-1"}, res={"revision": 11})
    h.op("write", "w/a", 20, 30, inv={"value": "c0-2"}, res={"revision": 12})
    h.op("cas", "w/b", 40, 50, inv={"value": "c1-1", "expected": None},
         res={"succeeded": True, "revision": 14})
    evs = [(11, "w/a", "c0-1"), (12, "w/a", "c0-2"), (14, "w/b", "c1-1")]
    for w in (0, 1):
        for rev, k, v in evs:
            h.note(type="watch", watcher=w, node=1 + w, conn=1 + (w and rev > 11), rev=rev,
                   changes=[["put", k, v, rev]])
        h.note(type="watch-final", watcher=w, last=14)
    final = ({"w/a": (12, "c0-2"), "w/b": (14, "c1-1")}, 15)
    return h, final


def test_watch_good_history_passes():
    h, final = _good_watch()
    r = checks.check_watch(h.ev, 10, final, 2)
    assert r.ok, r.text()
    assert r.stats["revisions"] == 3 and r.stats["acked writes"] == 3, r.stats


def test_watch_missing_event_is_flagged():
    h, final = _good_watch()
    h.ev = [e for e in h.ev if not (e.get("type") == "watch" and e["watcher"] == 1 and
                                    e["rev"] == 12)]
    r = checks.check_watch(h.ev, 10, final, 2)
    assert "W3" in r.rules(), r.text()
    # missing from every watcher: still caught, by the acknowledged put
    h.ev = [e for e in h.ev if not (e.get("type") == "watch" and e["rev"] == 12)]
    r = checks.check_watch(h.ev, 10, final, 2)
    assert any("acknowledged put" in a for a in r.anomalies), r.text()


def test_watch_duplicate_and_reorder_are_flagged():
    h, final = _good_watch()
    h.note(type="watch", watcher=0, node=1, conn=2, rev=12, changes=[["put", "w/a", "c0-2",
                                                                      12]])
    assert checks.check_watch(h.ev, 10, final, 2).rules() == ["W1"]


def test_watch_disagreement_phantom_and_final_are_flagged():
    h, final = _good_watch()
    for e in h.ev:
        if e.get("type") == "watch" and e["watcher"] == 1 and e["rev"] == 14:
            e["changes"] = [["put", "w/b", "zzz", 14]]
    r = checks.check_watch(h.ev, 10, final, 2)
    assert {"W2", "W3", "W4", "W5"} <= set(r.rules()), r.text()


def test_watch_stuck_watcher_is_flagged():
    h, final = _good_watch()
    h.ev = [e for e in h.ev if not (e.get("watcher") == 1 and e.get("rev", 0) >= 12) and
            not (e.get("type") == "watch-final" and e["watcher"] == 1)]
    r = checks.check_watch(h.ev, 10, final, 2)
    assert "W6" in r.rules(), r.text()
