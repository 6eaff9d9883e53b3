"""test_id_10m.py -- issue #7's "10M IDs from 3 nodes, with kill -9 and restarts in
between: no duplicates, and IDs increase per tag within a segment" (docs/id.md).

The size comes from the environment: ID_SOAK_COUNT ids (default 300 000, what `make test`
runs) and ID_SOAK_KILLS kill -9 + restart rounds (default 1). `make soak` runs
ID_SOAK_COUNT=10000000 ID_SOAK_KILLS=6.

How: one client thread per node drives `ID.NEXT soak 10000` over RESP, pipelined 8 deep,
on its own connection; a killer thread kill -9s a node (round robin: leaders too) at even
steps of progress and restarts it with its data. A thread whose node died reconnects and
starts a new "life" of that node. Every reply is kept as runs of consecutive ids
(start, length), which is exact and memory-light (a few runs per 10 000 ids), so the
check for 10M ids is a sort of a few thousand runs:
  - no two runs overlap (no id handed out twice, across nodes and restarts);
  - within one node life, every id is above the one before (one FIFO per tag per node, one
    connection per life: ids increase within a segment and from segment to segment);
  - every reply had exactly the count asked for, and the total reached the target.
The test prints its wall time and rate. Every wait is bounded.
"""

import os
import threading
import time

import redis

from cluster import wait_until
from test_id import call, create_tag, make_id_cluster, ok_json  # noqa: F401

COUNT = int(os.environ.get("ID_SOAK_COUNT", "300000"))
KILLS = int(os.environ.get("ID_SOAK_KILLS", "1"))
BATCH = 10000
DEPTH = 8


def runs_of(ids):
    """[(start, length)] of consecutive ids, in order; raises if ids ever go down."""
    out = []
    start = prev = ids[0]
    for v in ids[1:]:
        if v == prev + 1:
            prev = v
            continue
        assert v > prev, f"ids went backwards within one reply: {prev} then {v}"
        out.append((start, prev - start + 1))
        start = prev = v
    out.append((start, prev - start + 1))
    return out


class Driver(threading.Thread):
    def __init__(self, cluster, mid, shared):
        super().__init__(daemon=True)
        self.c, self.mid, self.shared = cluster, mid, shared
        self.lives = []  # per life: list of runs in the order received
        self.errors = []
        self.retries = 0

    def run(self):
        try:
            self._run()
        except Exception as e:  # surfaced by the test
            self.errors.append(repr(e))

    def _run(self):
        life = None
        r = None
        deadline = self.shared["deadline"]
        while not self.shared["stop"] and time.monotonic() < deadline:
            if self.shared["kills_done"] and self.shared["total"] >= COUNT:
                break
            if r is None:
                try:
                    r = redis.Redis(host="127.0.0.1", port=self.c.m(self.mid).resp_port,
                                    socket_timeout=10, socket_connect_timeout=2)
                    r.ping()
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    r = None
                    time.sleep(0.1)
                    continue
                life = []
                self.lives.append(life)
            p = r.pipeline(transaction=False)
            for _ in range(DEPTH):
                p.execute_command("ID.NEXT", "soak", str(BATCH))
            try:
                replies = p.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                r = None  # the node died (or restarts): a new life on reconnect
                continue
            for rep in replies:
                if isinstance(rep, Exception):
                    msg = str(rep)
                    assert msg.startswith("no segment") or "TRYAGAIN" in msg or \
                        "busy" in msg or "within" in msg, f"unexpected error: {msg}"
                    self.retries += 1
                    time.sleep(0.05)
                    continue
                assert isinstance(rep, list) and len(rep) == BATCH, f"bad reply: {rep!r:.100}"
                life += runs_of(rep)
                with self.shared["lock"]:
                    self.shared["total"] += BATCH


def test_ids_from_three_nodes_with_kill9_never_repeat(make_id_cluster):
    c = make_id_cluster(3)
    create_tag(c.url(1), "soak", initial=1, step=10000)
    shared = {"stop": False, "total": 0, "kills_done": KILLS == 0, "lock": threading.Lock(),
              "deadline": time.monotonic() + 120 + COUNT / 20000}
    drivers = [Driver(c, mid, shared) for mid in (1, 2, 3)]
    t0 = time.monotonic()
    for d in drivers:
        d.start()
    kills = []
    for k in range(KILLS):
        target = COUNT * (k + 1) // (KILLS + 1)
        wait_until(f"{target} ids before kill {k + 1}", lambda: shared["total"] >= target or
                   any(d.errors for d in drivers), timeout=shared["deadline"] - time.monotonic())
        if any(d.errors for d in drivers):
            break
        victim = k % 3 + 1
        c.kill9(victim)
        kills.append((victim, shared["total"]))
        time.sleep(0.3)
        c.restart(victim)
    shared["kills_done"] = True
    wait_until(f"{COUNT} ids", lambda: shared["total"] >= COUNT or any(d.errors for d in drivers),
               timeout=max(1.0, shared["deadline"] - time.monotonic()))
    shared["stop"] = True
    for d in drivers:
        d.join(timeout=30)
        assert not d.is_alive(), f"driver of node {d.mid} did not stop"
    wall = time.monotonic() - t0
    errors = [e for d in drivers for e in d.errors]
    assert not errors, errors
    # within a node life: strictly increasing, reply after reply
    all_runs = []
    n_lives = 0
    for d in drivers:
        for life in d.lives:
            n_lives += 1
            for (a, la), (b, _) in zip(life, life[1:]):
                assert b > a + la - 1, f"node {d.mid}: id {b} after {a + la - 1} in one life"
            all_runs += life
    total = sum(n for _, n in all_runs)
    assert total == shared["total"] and total >= COUNT, (total, shared["total"])
    # across nodes and lives: no overlap
    all_runs.sort()
    for (a, la), (b, lb) in zip(all_runs, all_runs[1:]):
        assert b >= a + la, f"ids {b}..{b + lb - 1} overlap {a}..{a + la - 1}: issued twice"
    retries = sum(d.retries for d in drivers)
    st = ok_json(call("GET", c.url(1), "/v1/id/segments/soak"))
    print(f"\n{total} ids in {wall:.1f}s ({total / wall:,.0f}/s) from 3 nodes, {len(kills)} "
          f"kill -9 + restart {kills}, {n_lives} node lives, {len(all_runs)} runs, {retries} "
          f"retried replies, allocs {st['allocs']}, max_id {st['max_id']}: no duplicates")
    assert len(kills) == KILLS
