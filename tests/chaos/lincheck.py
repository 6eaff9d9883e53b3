"""lincheck.py -- a linearizability checker for per-key registers (read, write, cas).

What it decides: given a history of operations on keys, each with an invoke time and
(unless its outcome is unknown) a complete time, is there one total order of the ops that
(a) respects real time (an op that completed before another was invoked comes first) and
(b) explains every result with a sequential register per key? The algorithm is
Wing & Gong's search with Lowe's memoization, as Porcupine does it: walk a doubly linked
list of call/return entries, "lift" an op out of the list when the model accepts it at the
current state, backtrack when a return entry is reached whose op is not linearized yet,
and never revisit a (linearized-set bitmask, state) pair. Keys are independent (P-
compositionality), so each key is searched on its own.

Operations (Op):
  read()        ok -> the value seen (None = the key was missing)
  write(V)      ok -> V is the register
  cas(X, Y)     ok, succeeded  -> the register was X and became Y
                ok, failed     -> the register was `result` (the txn's failure branch
                                  reads the key), which is not X
Statuses: "ok"; "fail" (definitely did not take effect: dropped before checking);
"unknown" (a timeout or a lost connection: it may or may not have taken effect, and if it
did, at any time after its invoke -- so it has no return entry, and the search succeeds as
soon as every *completed* op is linearized; unknown reads say nothing and are dropped).

Pruning, before the search (each rule keeps the answer exact, see _prune):
  - an unknown write/cas whose new value nobody observed (no read or failed cas saw it, no
    cas expected it) is dropped: placing it after everything is always legal;
  - an unknown cas that expects a value no remaining op writes is dropped: it cannot
    succeed, and failing has no effect.
Values are expected to be unique per key (the harness writes client-seq strings); the
checker is correct without that, only slower.

Bounds: every search has a step budget (one step = one loop iteration); when it runs out
the key's verdict is "unknown (budget)" rather than a hang. Nothing recurses.

Shrinking: for a key that is not linearizable the report shows the smallest contiguous
window of that key's ops (in invoke order) that is still not linearizable, found by
dropping ops from both ends (binary search; the property is monotone), then marks with
"*" the ops inside it that cannot be dropped. A window is checked soundly: the register's
state before it is unconstrained (ANY), and writes outside the window that could have
taken effect during it (their interval overlaps it) stay in as "may have applied". So a
window that fails proves the whole history fails.

History files are JSON lines, one event per line (harness.py writes them):
  {"type":"invoke","id":7,"client":2,"node":1,"key":"k0","f":"cas","expected":"c1-4","value":"c2-9","t":1200}
  {"type":"ok","id":7,"t":1900,"succeeded":false,"value":"c3-1"}
  {"type":"fail"|"unknown","id":7,"t":1900,"error":"..."}
  {"type":"nemesis",...} and any other line without an "id" is ignored here.
t is in nanoseconds. An invoke without a completion is "unknown".

CLI: /usr/bin/python3 tests/chaos/lincheck.py HISTORY.jsonl [--budget N]
     exit 0 linearizable, 1 not, 2 unknown (budget), 3 bad input.

Sections: ops and history | model | search | pruning | check and shrink | report | CLI.
"""

import json
import sys

# ---- ops and history -----------------------------------------------------------------

READ, WRITE, CAS = "read", "write", "cas"
OK, FAIL, UNKNOWN = "ok", "fail", "unknown"

DEFAULT_BUDGET = 2_000_000     # search steps per key search; ~1-3 s of CPython
SHRINK_BUDGET = 200_000        # per window check while shrinking
CORE_WINDOW_MAX = 120          # mark essential ops only in windows up to this size
INF = float("inf")


class Op:
    """One operation. invoke/complete are numbers (ns in harness histories); complete is
    None for unknown ops. For a cas, `value` is the new value and `expected` the compare
    value; `succeeded` is its outcome when ok, and `result` the value its failure branch
    read. For a read, `result` is the value read (None = missing)."""

    __slots__ = ("id", "client", "node", "key", "f", "value", "expected", "invoke",
                 "complete", "status", "result", "succeeded", "error")

    def __init__(self, id, key, f, invoke, complete=None, status=OK, value=None,
                 expected=None, result=None, succeeded=None, client=None, node=None,
                 error=None):
        assert f in (READ, WRITE, CAS), f
        assert status in (OK, FAIL, UNKNOWN), status
        assert status == UNKNOWN or complete is not None, "a completed op needs a time"
        assert complete is None or complete >= invoke, (id, invoke, complete)
        assert f != CAS or status != OK or succeeded is not None, "ok cas needs succeeded"
        self.id, self.key, self.f = id, key, f
        self.invoke = invoke
        self.complete = None if status == UNKNOWN else complete
        self.status = status
        self.value, self.expected = value, expected
        self.result, self.succeeded = result, succeeded
        self.client, self.node, self.error = client, node, error

    def copy_unknown(self):
        """The same op as "may have applied at any time after its invoke"."""
        return Op(self.id, self.key, self.f, self.invoke, None, UNKNOWN, self.value,
                  self.expected, None, None, self.client, self.node, self.error)

    def end(self):
        return INF if self.complete is None else self.complete

    def __repr__(self):
        return f"Op({describe(self)})"


def describe(op):
    """One readable line for an op: 'cas 'a' -> 'b' = ok (failed, saw 'c')'."""
    if op.f == READ:
        what = "read"
    elif op.f == WRITE:
        what = f"write {op.value!r}"
    else:
        what = f"cas {op.expected!r} -> {op.value!r}"
    if op.status == UNKNOWN:
        res = "unknown" + (f" ({op.error})" if op.error else "")
    elif op.status == FAIL:
        res = "fail" + (f" ({op.error})" if op.error else "")
    elif op.f == READ:
        res = f"ok {op.result!r}" if op.result is not None else "ok (missing)"
    elif op.f == CAS:
        res = "ok (swapped)" if op.succeeded else (
            f"ok (failed, saw {op.result!r})" if op.result is not None
            else "ok (failed, key missing)")
    else:
        res = "ok"
    return f"{what} = {res}"


def ops_from_events(events, skip_other=False):
    """Pairs JSON-line events (dicts) into Ops; invokes without completion are unknown.
    Raises ValueError on a malformed event. skip_other: ops of other workloads (an f
    other than read/write/cas: locks, ids) are left out instead of refused."""
    pending = {}
    skipped = set()
    ops = []
    for ev in events:
        if "id" not in ev or ev.get("type") not in ("invoke", OK, FAIL, UNKNOWN):
            continue
        oid = ev["id"]
        if ev["type"] == "invoke":
            if oid in pending:
                raise ValueError(f"op {oid} invoked twice")
            if ev.get("f") not in (READ, WRITE, CAS) and skip_other:
                skipped.add(oid)
                continue
            if ev.get("f") not in (READ, WRITE, CAS):
                raise ValueError(f"op {oid}: unknown f {ev.get('f')!r}")
            pending[oid] = ev
            continue
        inv = pending.pop(oid, None)
        if inv is None and oid in skipped:
            continue
        if inv is None:
            raise ValueError(f"op {oid} completes without an invoke")
        st = ev["type"]
        ops.append(Op(oid, inv["key"], inv["f"], inv["t"], ev["t"] if st != UNKNOWN else None,
                      st, value=inv.get("value"), expected=inv.get("expected"),
                      result=ev.get("value") if st == OK else None,
                      succeeded=ev.get("succeeded") if st == OK else None,
                      client=inv.get("client"), node=inv.get("node"), error=ev.get("error")))
    for oid, inv in pending.items():
        ops.append(Op(oid, inv["key"], inv["f"], inv["t"], None, UNKNOWN,
                      value=inv.get("value"), expected=inv.get("expected"),
                      client=inv.get("client"), node=inv.get("node"),
                      error="no completion recorded"))
    return ops


def load_history(path):
    """Ops from a JSON-lines history file (see the module comment)."""
    events = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: {e}") from None
    return ops_from_events(events, skip_other=True)


# ---- model -----------------------------------------------------------------------------


class _Any:
    """The register's state before a shrink window: any value (it matches the first
    observation, then is that value)."""

    def __repr__(self):
        return "ANY"


ANY = _Any()
_REJECT = object()


def step(state, op):
    """The sequential register: the state after op, or _REJECT if op's result is
    impossible in `state`. Unknown ops only ever take their "it happened" branch here:
    "it did not happen" is the search never linearizing them."""
    f = op.f
    if f == WRITE:
        return op.value
    if f == READ:
        if state is ANY or state == op.result:
            return op.result
        return _REJECT
    # cas
    if op.status == UNKNOWN or op.succeeded:
        if state is ANY or state == op.expected:
            return op.value
        return _REJECT
    # a failed cas read `result`, which must differ from the compare value
    if op.result == op.expected and op.result is not None:
        return _REJECT
    if state is ANY or state == op.result:
        return op.result
    return _REJECT


# ---- search ------------------------------------------------------------------------------


def search(ops, init=None, budget=DEFAULT_BUDGET):
    """WGL + memoization over one key's ops (no FAIL ops). Returns (verdict, steps) with
    verdict True (linearizable), False (not) or None (budget spent)."""
    n_ops = len(ops)
    events = []
    for i, op in enumerate(ops):
        assert op.status != FAIL
        events.append((op.invoke, 0, i))
        if op.complete is not None:
            events.append((op.complete, 1, i))
    # At equal times calls sort before returns: such ops count as concurrent.
    events.sort()
    n = len(events)
    tail = n + 1
    nxt = list(range(1, n + 2)) + [tail]   # node 0 = head sentinel, n+1 = tail
    prv = [0] + list(range(0, n + 1))
    is_call = [False] * (n + 1)
    op_of = [0] * (n + 1)
    ret_of = [0] * n_ops                   # call node -> its return node (0: none)
    call_of = [0] * n_ops
    for k, (_, kind, i) in enumerate(events, 1):
        op_of[k] = i
        if kind == 0:
            is_call[k] = True
            call_of[i] = k
        else:
            ret_of[i] = k
    need = sum(1 for op in ops if op.complete is not None)
    done = 0
    state = init
    linearized = 0
    cache = set()
    stack = []
    entry = nxt[0]
    steps = 0
    while True:
        if done == need:
            return True, steps
        steps += 1
        if steps > budget:
            return None, steps
        if entry != tail and is_call[entry]:
            i = op_of[entry]
            new_state = step(state, ops[i])
            if new_state is not _REJECT:
                bits = linearized | (1 << i)
                key = (bits, new_state)
                if key not in cache:
                    cache.add(key)
                    stack.append((entry, state))
                    state = new_state
                    linearized = bits
                    r = ret_of[i]
                    if r:
                        done += 1
                        # lift: unlink the call and its return
                        nxt[prv[r]] = nxt[r]
                        prv[nxt[r]] = prv[r]
                    nxt[prv[entry]] = nxt[entry]
                    prv[nxt[entry]] = prv[entry]
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
            continue
        # a return entry of an op not linearized yet (or the end): backtrack
        if not stack:
            return False, steps
        entry, state = stack.pop()
        i = op_of[entry]
        linearized &= ~(1 << i)
        # unlift in reverse order: the call, then its return
        nxt[prv[entry]] = entry
        prv[nxt[entry]] = entry
        r = ret_of[i]
        if r:
            done -= 1
            nxt[prv[r]] = r
            prv[nxt[r]] = r
        entry = nxt[entry]


# ---- pruning -------------------------------------------------------------------------------


def _prune(ops, init=None):
    """Drops ops that cannot change the verdict (ops of one key, any order):
      - FAIL ops (they did not happen) and unknown reads (no result, no effect);
      - an unknown write/cas whose new value V is never observed -- no ok read or failed
        cas saw V, no cas (ok or unknown) compares against V. Proof: in any linearization
        that contains it, no op between it and the next state-setting op can observe V, so
        removing it leaves a valid linearization; and without it, "it happened after
        everything" is always available;
      - an unknown cas whose compare value no remaining op writes (and that is not the
        initial state): it cannot have succeeded, and a failed cas has no effect. Not when
        the initial state is ANY (a shrink window): then any value may be there already.
    Repeats until nothing changes (each pass only removes, so at most len(ops) passes)."""
    keep = [op for op in ops if op.status != FAIL and not (op.status == UNKNOWN and op.f == READ)]
    for _ in range(len(keep) + 1):
        observed = set()
        written = set()
        for op in keep:
            if op.f == READ:
                observed.add(op.result)
            elif op.f == CAS:
                observed.add(op.expected)
                if op.status == OK and not op.succeeded:
                    observed.add(op.result)
            if op.f in (WRITE, CAS):
                written.add(op.value)
        nxt = []
        for op in keep:
            if op.status == UNKNOWN:
                if op.value not in observed:
                    continue
                if op.f == CAS and init is not ANY and op.expected not in written \
                        and op.expected != init:
                    continue
            nxt.append(op)
        if len(nxt) == len(keep):
            return keep
        keep = nxt
    return keep


def check_key(ops, init=None, budget=DEFAULT_BUDGET):
    """(verdict, steps, n_searched) for one key's ops; verdict True/False/None."""
    keep = _prune(ops, init)
    if not keep:
        return True, 0, 0
    ok, steps = search(keep, init, budget)
    return ok, steps, len(keep)


# ---- check and shrink ------------------------------------------------------------------------


class KeyResult:
    """The verdict for one key: "ok", "violation" or "unknown"; for a violation, `window`
    (ops in invoke order), `extra` (outside ops that may have applied during it), `core`
    (ids of window ops that cannot be dropped) and `from_start` (the window starts at the
    key's first op: checked from the initial state, else from ANY)."""

    def __init__(self, key, verdict, n_ops, n_searched, steps):
        self.key, self.verdict = key, verdict
        self.n_ops, self.n_searched, self.steps = n_ops, n_searched, steps
        self.window, self.extra, self.core = [], [], set()
        self.from_start = True
        self.all_ops = []


def _by_key(ops):
    keys = {}
    for op in ops:
        keys.setdefault(op.key, []).append(op)
    return keys


def _window_ops(ordered, lo_i, hi_i):
    """The ops to check for window ordered[lo_i..hi_i]: the window itself plus every
    state-changing op outside it whose interval overlaps the window's time span, as
    unknown. Returns (ops, extra)."""
    win = ordered[lo_i:hi_i + 1]
    t_lo = min(op.invoke for op in win)
    t_hi = max(op.end() for op in win)
    extra = []
    for k, op in enumerate(ordered):
        if lo_i <= k <= hi_i:
            continue
        changes = op.f == WRITE or (op.f == CAS and (op.status == UNKNOWN or op.succeeded))
        if changes and op.invoke <= t_hi and op.end() >= t_lo:
            extra.append(op.copy_unknown())
    return win + extra, extra


def _window_bad(ordered, lo_i, hi_i, budget):
    ops, _ = _window_ops(ordered, lo_i, hi_i)
    ok, _, _ = check_key(ops, None if lo_i == 0 else ANY, budget)
    return ok is False


def shrink(ops, budget=SHRINK_BUDGET):
    """For one key's non-linearizable ops: (window, extra, core, from_start) as in
    KeyResult. The window is the shortest contiguous run (invoke order) whose check still
    fails; from_start says it starts at the key's first op (so from the initial state,
    not from ANY)."""
    ordered = sorted((op for op in ops if op.status != FAIL and
                      not (op.status == UNKNOWN and op.f == READ)),
                     key=lambda op: (op.invoke, op.end()))
    n = len(ordered)
    if n == 0:
        return [], [], set(), True
    # smallest end index hi with ordered[0..hi] bad (monotone in hi)
    lo, hi = 0, n - 1
    if not _window_bad(ordered, 0, n - 1, budget):
        return [], [], set(), True   # only the full-budget search could see it
    while lo < hi:
        mid = (lo + hi) // 2
        if _window_bad(ordered, 0, mid, budget):
            hi = mid
        else:
            lo = mid + 1
    end = hi
    # largest start index with ordered[start..end] bad (monotone in start)
    lo, hi = 0, end
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _window_bad(ordered, mid, end, budget):
            lo = mid
        else:
            hi = mid - 1
    start = lo
    # The property is monotone up to the overlap rule (a wider window admits more outside
    # ops as "may have applied"), so finish with a bounded trim from both ends.
    for _ in range(end - start + 1):
        if start < end and _window_bad(ordered, start + 1, end, budget):
            start += 1
        elif start < end and _window_bad(ordered, start, end - 1, budget):
            end -= 1
        else:
            break
    window_ops, extra = _window_ops(ordered, start, end)
    # Show only the outside ops that pruning keeps: the others cannot matter.
    kept = {id(op) for op in _prune(window_ops, None if start == 0 else ANY)}
    extra = [op for op in extra if id(op) in kept]
    win = ordered[start:end + 1]
    core = {op.id for op in win}
    if len(win) <= CORE_WINDOW_MAX:
        # Greedily drop (or, for writes, relax to "may have applied") each op; keep it out
        # when the rest still fails. What remains is needed to show the violation.
        init = None if start == 0 else ANY
        current = {op.id: op for op in window_ops}
        for op in win:
            trial = dict(current)
            if op.f == READ or (op.f == CAS and op.status == OK and not op.succeeded):
                del trial[op.id]
            else:
                trial[op.id] = op.copy_unknown()
            ok, _, _ = check_key(list(trial.values()), init, budget)
            if ok is False:
                current = trial
                core.discard(op.id)
    return win, extra, core, start == 0


class Report:
    """check()'s answer: verdict "linearizable" | "NOT linearizable" | "unknown (budget)";
    keys: {key: KeyResult}; text(): the human report."""

    def __init__(self, keys, t0):
        self.keys = keys
        self.t0 = t0
        if any(r.verdict == "violation" for r in keys.values()):
            self.verdict = "NOT linearizable"
        elif any(r.verdict == "unknown" for r in keys.values()):
            self.verdict = "unknown (budget)"
        else:
            self.verdict = "linearizable"

    @property
    def ok(self):
        return self.verdict == "linearizable"

    @property
    def violations(self):
        return [r for r in self.keys.values() if r.verdict == "violation"]

    @property
    def unknown_keys(self):
        return [r for r in self.keys.values() if r.verdict == "unknown"]

    def text(self, time_unit=1e9):
        return format_report(self, time_unit)


def check(ops, budget=DEFAULT_BUDGET, shrink_budget=SHRINK_BUDGET, do_shrink=True):
    """Checks a whole history (list of Op, any keys, any order). Returns a Report."""
    t0 = min((op.invoke for op in ops), default=0)
    results = {}
    for key, kops in _by_key(ops).items():
        ok, steps, n_searched = check_key(kops, None, budget)
        verdict = {True: "ok", False: "violation", None: "unknown"}[ok]
        r = KeyResult(key, verdict, len(kops), n_searched, steps)
        r.all_ops = kops
        if ok is False and do_shrink:
            r.window, r.extra, r.core, r.from_start = shrink(kops, shrink_budget)
        results[key] = r
    return Report(results, t0)


# ---- report ------------------------------------------------------------------------------


def _fmt_t(t, t0, unit):
    return "never" if t is None else f"{(t - t0) / unit:+.3f}s"


def _fmt_who(x):
    return "-" if x is None else str(x)


def format_report(report, unit=1e9):
    lines = [f"lincheck: {report.verdict} ({len(report.keys)} keys, "
             f"{sum(r.n_ops for r in report.keys.values())} ops)"]
    for r in report.unknown_keys:
        lines.append(f"  key {r.key!r}: unknown (budget): {r.steps} steps over "
                     f"{r.n_searched} ops were not enough")
    for r in report.violations:
        lines.append(f"  key {r.key!r}: NOT linearizable ({r.n_ops} ops on the key, "
                     f"{r.n_searched} after pruning, {r.steps} search steps)")
        if not r.window:
            lines.append("    (no smaller window fails within the shrink budget)")
            continue
        w0 = min(op.invoke for op in r.window)
        lines.append(f"    smallest failing window: {len(r.window)} ops, starting "
                     f"{_fmt_t(w0, report.t0, unit)} into the history; times below are "
                     f"relative to the window start")
        lines.append("    * = needed to show the violation; ~ = outside the window but "
                     "overlapping it (may have applied)")
        lines.append(f"    {'':1} {'op':>7} {'client':>6} {'node':>4} {'invoke':>9} "
                     f"{'complete':>9}  operation")
        rows = [(op, "*" if op.id in r.core else " ") for op in r.window]
        rows += [(op, "~") for op in r.extra]
        rows.sort(key=lambda x: (x[0].invoke, x[0].end()))
        for op, mark in rows:
            src = next((o for o in r.all_ops if o.id == op.id), op) if mark == "~" else op
            lines.append(f"    {mark} {('#' + str(op.id)):>7} {_fmt_who(src.client):>6} "
                         f"{_fmt_who(src.node):>4} {_fmt_t(op.invoke, w0, unit):>9} "
                         f"{_fmt_t(src.complete, w0, unit):>9}  {describe(src)}")
        # Where did values read in the window come from?
        writers = {}
        for op in r.all_ops:
            if op.f in (WRITE, CAS) and op.status != FAIL:
                writers.setdefault(op.value, op)
        in_win = {op.id for op in r.window} | {op.id for op in r.extra}
        for op in r.window:
            if op.id not in r.core:
                continue
            seen = op.result if (op.f == READ or (op.f == CAS and op.status == OK
                                                  and not op.succeeded)) else None
            w = writers.get(seen) if seen is not None else None
            if w is not None and w.id not in in_win:
                lines.append(f"      #{op.id} saw {seen!r}, written by #{w.id} "
                             f"({describe(w)}; invoked {_fmt_t(w.invoke, w0, unit)}, "
                             f"completed {_fmt_t(w.complete, w0, unit)})")
            elif seen is not None and w is None:
                lines.append(f"      #{op.id} saw {seen!r}, which no op in the history "
                             f"wrote (or whose write definitely failed)")
    return "\n".join(lines)


# ---- CLI -----------------------------------------------------------------------------------


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="check a JSON-lines register history")
    ap.add_argument("history")
    ap.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    a = ap.parse_args(argv)
    try:
        ops = load_history(a.history)
    except (OSError, ValueError, KeyError) as e:
        print(f"lincheck: {e}", file=sys.stderr)
        return 3
    rep = check(ops, a.budget)
    print(rep.text())
    return 0 if rep.ok else (1 if rep.violations else 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
