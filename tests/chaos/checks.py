"""checks.py -- the checkers of the lock, ids and watch workloads (workloads.py says what
each records). Pure: each takes the history's events (dicts, as in history.jsonl) and
returns a Result; test_checks.py feeds them fabricated histories, good and bad.

lock  (docs/locks.md's guarantees, from the clients' side)
  L1 mutual exclusion: per lock, no two holders *believe* at once. A holder believes from
     its acquire's reply until min(release invoke, send time of its last successful
     renewal + ttl), renewals counted only while still believed (the acquire's own send
     counts as the first). The server's deadline is never earlier than that ("no early
     expiry"), so an overlap longer than LOCK_SLACK_NS is a grant while a prior holder
     could still rightly believe. Times are the harness's (one CLOCK_MONOTONIC, the one
     the servers' timers use): invokes are taken before sending, completions after the
     reply, so every error is in the checker's favour.
  L2 fencing tokens: unique among granted holds, and increasing in real-time grant order
     (A's reply came before B's acquire was sent => token A < token B), across names:
     one counter for the whole lock table.
  L3 no early expiry: a renewal sent while believed that answers "gone" (404/410) before
     the believed end is a lease that died early.
  L4 the protected resource (its own log, in its order): accepted tokens never decrease,
     every accepted write is the previous accepted value + 1 (no double increment, never
     backwards), an accepted read returns the current value, and no two holders' accepted
     accesses interleave (X, Y, X).
ids
  I1 no id is issued twice (segment and snowflake ids separately; every op that returned
     ids counts, whatever its recorded status);
  I2 ids increase within one response;
  I3 segment ids increase per member and life (start count): A completed before B was
     invoked on the same member in the same life => every id of A < every id of B;
  I4 snowflake ids increase per worker id (bits 12..21), across members, in real-time
     order; the worker in an id equals the worker the response named.
watch (revisions are cluster-wide; the prefix only sees some of them)
  W1 each watcher's revisions strictly increase across reconnects (no duplicate, in
     order); a put's mod_revision is its event's revision;
  W2 watchers that saw the same revision saw the same changes;
  W3 a watcher has every revision any watcher saw within its coverage
     (start, its last revision], and every acknowledged put/cas (its reply's revision)
     in it, with the acknowledged value;
  W4 the final range read (after the clients stopped): every key's (mod_revision, value)
     is the last event of that key for every watcher, and no event names a key the
     range does not have;
  W5 no phantom: every put's value was written by some client;
  W6 every watcher caught up with the final revision of the prefix (bounded wait).
  A snapshot event (history compacted away) ends a watcher's coverage check there.

Sections: ops | result | lock | ids | watch.
"""

import bisect

LOCK_SLACK_NS = 10_000_000     # uv_now's ms truncation and loop-time staleness, with room
ANOMALIES_SHOWN = 30           # per check in the text

# ---- ops -------------------------------------------------------------------------------


class GOp:
    """An invoke paired with its completion (none: unknown, complete None)."""

    __slots__ = ("id", "f", "key", "node", "client", "status", "invoke", "complete",
                 "inv", "res")

    def __init__(self, inv, res):
        self.id, self.f, self.key = inv["id"], inv.get("f"), inv.get("key")
        self.node, self.client = inv.get("node"), inv.get("client")
        self.inv, self.res = inv, res or {}
        self.status = res["type"] if res else "unknown"
        self.invoke = inv["t"]
        self.complete = res["t"] if res and res["type"] != "unknown" else None

    def __repr__(self):
        return f"#{self.id} {self.f} {self.key} n{self.node} {self.status}"


def pair_events(events, fs=None):
    """All ops (optionally only those whose f is in fs), in invoke order."""
    pending, out = {}, []
    for ev in events:
        typ = ev.get("type")
        if "id" not in ev or typ not in ("invoke", "ok", "fail", "unknown"):
            continue
        if typ == "invoke":
            pending[ev["id"]] = ev
            continue
        inv = pending.pop(ev["id"], None)
        if inv is not None:
            out.append(GOp(inv, ev))
    out += [GOp(inv, None) for inv in pending.values()]
    out.sort(key=lambda o: (o.invoke, o.id))
    return [o for o in out if fs is None or o.f in fs]


# ---- result ----------------------------------------------------------------------------


class Result:
    """A checker's answer: anomalies (strings, one per finding, grouped by rule), stats."""

    def __init__(self, name):
        self.name = name
        self.anomalies = []
        self.stats = {}

    def add(self, rule, text):
        self.anomalies.append(f"{rule}: {text}")

    @property
    def ok(self):
        return not self.anomalies

    @property
    def verdict(self):
        return "ok" if self.ok else f"{len(self.anomalies)} anomalies"

    def rules(self):
        return sorted({a.split(":", 1)[0] for a in self.anomalies})

    def text(self):
        lines = [f"{self.name} check: {self.verdict}; " +
                 ", ".join(f"{k} {v}" for k, v in self.stats.items())]
        for a in self.anomalies[:ANOMALIES_SHOWN]:
            lines.append(f"  {a}")
        if len(self.anomalies) > ANOMALIES_SHOWN:
            lines.append(f"  ... {len(self.anomalies) - ANOMALIES_SHOWN} more")
        return "\n".join(lines)


def _s(t):
    return f"{t / 1e9:.3f}s" if t is not None else "?"


# ---- lock ------------------------------------------------------------------------------


def lock_beliefs(ops):
    """[(lock, start, end, owner, token, acquire op)] for every ok acquire whose belief
    interval is not empty, and the L3 anomalies found on the way."""
    kas, rel = {}, {}
    for o in ops:
        owner = o.inv.get("owner")
        if o.f == "keepalive":
            kas.setdefault(owner, []).append(o)
        elif o.f == "release":
            rel[owner] = min(rel.get(owner, o.invoke), o.invoke)
    beliefs, early = [], []
    for a in ops:
        if a.f != "acquire" or a.status != "ok":
            continue
        owner = a.inv.get("owner")
        ttl = int(a.inv.get("ttl_ms", 0)) * 1_000_000
        valid = a.invoke + ttl
        for k in kas.get(owner, []):               # in invoke order
            if k.invoke >= valid or k.invoke >= rel.get(owner, float("inf")):
                break
            if k.status != "ok":
                continue
            if k.res.get("gone"):
                if k.complete < valid - LOCK_SLACK_NS:
                    early.append(f"{a.key}: lease {k.inv.get('lease')} of {owner} gone at "
                                 f"{_s(k.complete)} (#{k.id}), before its believed end "
                                 f"{_s(valid)}")
                valid = min(valid, k.complete)
                break
            valid = max(valid, k.invoke + ttl)
        end = min(valid, rel.get(owner, valid))
        if a.complete < end:
            beliefs.append((a.key, a.complete, end, owner, a.res.get("token"), a))
    return beliefs, early


def check_lock(events):
    r = Result("lock")
    ops = pair_events(events, ("acquire", "keepalive", "release"))
    acq = [o for o in ops if o.f == "acquire" and o.status == "ok"]
    beliefs, early = lock_beliefs(ops)
    # L1
    by_lock = {}
    for b in beliefs:
        by_lock.setdefault(b[0], []).append(b)
    for name, bs in by_lock.items():
        bs.sort(key=lambda b: b[1])
        far = None                                  # the belief reaching furthest so far
        for b in bs:
            if far is not None and b[1] < far[2] - LOCK_SLACK_NS:
                r.add("L1", f"{name}: {b[3]} (token {b[4]}) believed from {_s(b[1])} "
                            f"while {far[3]} (token {far[4]}) believed until {_s(far[2])}")
            if far is None or b[2] > far[2]:
                far = b
    # L2
    owners = {}
    for a in acq:
        owners.setdefault(a.res.get("token"), []).append(a)
    for t, os_ in owners.items():
        if len(os_) > 1:
            r.add("L2", f"token {t} granted to {len(os_)} holders: "
                        f"{[(o.key, o.inv.get('owner')) for o in os_]}")
    by_complete = sorted(acq, key=lambda o: o.complete)
    done = [o.complete for o in by_complete]
    prefix_max = []
    m = None
    for o in by_complete:
        if m is None or o.res["token"] > m.res["token"]:
            m = o
        prefix_max.append(m)
    for b in sorted(acq, key=lambda o: o.invoke):
        i = bisect.bisect_left(done, b.invoke)      # acquires completed before b's invoke
        if i > 0 and prefix_max[i - 1].res["token"] >= b.res["token"]:
            p = prefix_max[i - 1]
            r.add("L2", f"token {b.res['token']} ({b.key}, {b.inv.get('owner')}, invoked "
                        f"{_s(b.invoke)}) not above token {p.res['token']} granted before "
                        f"({p.key}, {p.inv.get('owner')}, reply {_s(p.complete)})")
    # L3
    for e in early:
        r.add("L3", e)
    # L4
    res_ev = {}
    for ev in events:
        if ev.get("type") == "resource":
            res_ev.setdefault(ev["lock"], []).append(ev)
    writes = rejected = 0
    for name, evs in res_ev.items():
        evs.sort(key=lambda e: e["seq"])
        value, max_tok, span = 0, None, {}
        for e in evs:
            if not e["accepted"]:
                rejected += 1
                continue
            tok = e["token"]
            if max_tok is not None and tok < max_tok:
                r.add("L4", f"{name}: accepted token {tok} of {e['owner']} after token "
                            f"{max_tok} (seq {e['seq']})")
            max_tok = tok if max_tok is None else max(max_tok, tok)
            if e["op"] == "read" and e["value"] != value:
                r.add("L4", f"{name}: {e['owner']} read {e['value']} but the counter was "
                            f"{value} (seq {e['seq']})")
            if e["op"] == "write":
                writes += 1
                if e["value"] != value + 1:
                    what = "double increment" if e["value"] <= value else "skipped ahead"
                    r.add("L4", f"{name}: {what}: {e['owner']} (token {tok}) wrote "
                                f"{e['value']} over {value} (seq {e['seq']})")
                value = e["value"]
            s = span.setdefault(e["owner"], [e["seq"], e["seq"]])
            s[1] = e["seq"]
        spans = sorted((s[0], s[1], o) for o, s in span.items())
        for (a0, a1, ao), (b0, b1, bo) in zip(spans, spans[1:]):
            if b0 < a1:
                r.add("L4", f"{name}: {bo} accepted at seq {b0} inside {ao}'s accesses "
                            f"(seq {a0}..{a1}): two holders at once")
    r.stats = {"acquired": len(acq), "believed holds": len(beliefs),
               "counter increments": writes, "fenced (rejected) accesses": rejected,
               "renewals": sum(1 for o in ops if o.f == "keepalive" and o.status == "ok")}
    return r


# ---- ids -------------------------------------------------------------------------------

SF_WORKER_SHIFT, SF_WORKER_MASK = 12, 1023      # docs/id.md: 41/10/12 layout


def _ordered(r, rule, ops, what):
    """ops share one order domain: A.complete < B.invoke => max(A) < min(B)."""
    by_c = sorted(ops, key=lambda o: o.complete)
    done = [o.complete for o in by_c]
    pm, m = [], None
    for o in by_c:
        if m is None or max(o.res["ids"]) > max(m.res["ids"]):
            m = o
        pm.append(m)
    for b in ops:
        i = bisect.bisect_left(done, b.invoke)
        if i > 0 and max(pm[i - 1].res["ids"]) >= min(b.res["ids"]):
            p = pm[i - 1]
            r.add(rule, f"{what}: #{b.id} (invoked {_s(b.invoke)}) got {min(b.res['ids'])} "
                        f"not above {max(p.res['ids'])} of #{p.id} (reply {_s(p.complete)})")


def check_ids(events):
    r = Result("ids")
    ops = [o for o in pair_events(events, ("seg", "sf")) if o.res.get("ids")]
    counts = {}
    for kind in ("seg", "sf"):
        seen = {}
        kops = [o for o in ops if o.f == kind]
        counts[kind] = sum(len(o.res["ids"]) for o in kops)
        for o in kops:
            ids = o.res["ids"]
            if any(b <= a for a, b in zip(ids, ids[1:])):
                r.add("I2", f"{kind} #{o.id} on n{o.node}: ids not increasing: {ids[:10]}")
            for x in ids:
                if x in seen and seen[x] != o.id:
                    r.add("I1", f"{kind} id {x} issued twice: #{seen[x]} and #{o.id} "
                                f"(n{o.node})")
                seen.setdefault(x, o.id)
    groups = {}
    for o in ops:
        if o.status != "ok":
            continue
        if o.f == "seg":
            if o.inv.get("life") != o.res.get("life"):
                continue
            groups.setdefault(("seg", o.node, o.inv.get("life")), []).append(o)
        else:
            workers = {(x >> SF_WORKER_SHIFT) & SF_WORKER_MASK for x in o.res["ids"]}
            if workers != {o.res.get("worker")}:
                r.add("I4", f"sf #{o.id}: ids carry workers {sorted(workers)}, the reply "
                            f"said {o.res.get('worker')}")
            for w in workers:
                groups.setdefault(("sf", w), []).append(o)
    for g, gops in groups.items():
        if g[0] == "seg":
            _ordered(r, "I3", gops, f"segment ids on n{g[1]} life {g[2]}")
        else:
            _ordered(r, "I4", gops, f"snowflake worker {g[1]}")
    r.stats = {"segment ids": counts["seg"], "snowflake ids": counts["sf"],
               "snowflake workers": len({g[1] for g in groups if g[0] == "sf"})}
    return r


# ---- watch -----------------------------------------------------------------------------


def check_watch(events, start_rev, final, n_watchers, prefix="w/"):
    """final: ({key: (mod_revision, value)}, revision) of the range read after the
    clients stopped, or None (then W4/W6 are skipped and that is an anomaly)."""
    r = Result("watch")
    streams = {w: [] for w in range(n_watchers)}
    stop_at = {}                                   # watcher -> revision of a snapshot
    last_note = {}
    for ev in events:
        t = ev.get("type")
        if t == "watch":
            streams.setdefault(ev["watcher"], []).append(ev)
        elif t == "watch-snapshot":
            stop_at.setdefault(ev["watcher"], ev["rev"])
        elif t == "watch-final":
            last_note[ev["watcher"]] = ev["last"]
    ops = pair_events(events, ("write", "cas"))
    written = {(o.key, o.inv.get("value")) for o in ops}
    acked = [(o.res["revision"], o.key, o.inv.get("value"), o.id) for o in ops
             if o.status == "ok" and "revision" in o.res and o.key.startswith(prefix)
             and (o.f == "write" or o.res.get("succeeded"))]
    norm = {}                                      # watcher -> {rev: changes tuple}
    ref = {}                                       # rev -> (changes, watcher)
    for w, evs in streams.items():
        prev, d = start_rev, {}
        for ev in evs:
            rev = ev["rev"]
            if rev <= prev:
                r.add("W1", f"watcher {w} got revision {rev} after {prev} (n{ev['node']}, "
                            f"connection {ev['conn']}): duplicate or out of order")
                continue
            prev = rev
            ch = tuple(tuple(c) for c in ev["changes"])
            for c in ch:
                if c[0] == "put" and c[3] != rev:
                    r.add("W1", f"watcher {w}: put of {c[1]!r} at revision {rev} says "
                                f"mod_revision {c[3]}")
                if c[0] == "put" and (c[1], c[2]) not in written:
                    r.add("W5", f"watcher {w}: {c[1]!r} = {c[2]!r} at revision {rev} was "
                                f"never written")
            d[rev] = ch
            if rev in ref and ref[rev][0] != ch:
                r.add("W2", f"revision {rev}: watcher {w} saw {ch}, watcher {ref[rev][1]} "
                            f"saw {ref[rev][0]}")
            ref.setdefault(rev, (ch, w))
        norm[w] = d

    def cover(w):
        end = max([start_rev] + list(norm[w]) + [last_note.get(w, start_rev)])
        return min(end, stop_at[w] - 1) if w in stop_at else end

    for w, d in norm.items():
        hi = cover(w)
        missing = [rev for rev in ref if start_rev < rev <= hi and rev not in d]
        for rev in sorted(missing)[:ANOMALIES_SHOWN]:
            r.add("W3", f"watcher {w} misses revision {rev} {ref[rev][0]} (watcher "
                        f"{ref[rev][1]} has it; watcher {w} covers up to {hi})")
        for rev, key, value, oid in acked:
            if start_rev < rev <= hi and ("put", key, value, rev) not in d.get(rev, ()):
                r.add("W3", f"watcher {w}: acknowledged put #{oid} {key!r} = {value!r} at "
                            f"revision {rev} is not in its events ({d.get(rev)})")
    if final is None:
        r.add("W4", "no final range read (no member answered)")
    else:
        kvs, _ = final
        target = max([start_rev] + [mr for mr, _ in kvs.values()])
        for w, d in norm.items():
            lastv = {}
            for rev in sorted(d):
                for c in d[rev]:
                    lastv[c[1]] = (rev, c[2])
            for k, (mr, v) in kvs.items():
                if mr > start_rev and w not in stop_at and lastv.get(k) != (mr, v):
                    r.add("W4", f"watcher {w}: key {k!r} is {v!r} at mod_revision {mr} in the "
                                f"final range, its last event says {lastv.get(k)}")
            for k in lastv:
                if k not in kvs:
                    r.add("W4", f"watcher {w}: key {k!r} has events but is not in the final "
                                f"range")
            if cover(w) < target and w not in stop_at:
                r.add("W6", f"watcher {w} stuck at revision {cover(w)} < {target}")
    r.stats = {"watchers": n_watchers, "revisions": len(ref),
               "events": sum(len(d) for d in norm.values()), "acked writes": len(acked),
               "reconnects": sum(1 for e in events if e.get("type") == "watch-reconnect"),
               "snapshots": len(stop_at)}
    return r
