"""harness.py -- Jepsen-style chaos runs: a real Conclave cluster, concurrent clients, a
nemesis, and a linearizability check of everything the clients saw.

One run:
  1. start n (3 or 5) `conclave serve` processes (tests/integration/cluster.py) whose peer
     links -- Raft traffic and a follower's forwarded writes -- go through a fault proxy
     (proxy.py): member i dials member j at proxy link (i -> j), which relays to j's real
     address;
  2. start C client threads, each with its own keep-alive HTTP session, running the
     register workload (even-numbered clients stay on one member, odd ones pick a random
     member per op; after an error a client pauses BACKOFF_S): get, put and compare-and-set
     (POST /v1/txn: compare value = X, success put Y, failure get) on a few keys with
     unique values "c<client>-<seq>". Keys rotate ("k<slot>.<gen>") after
     ops_per_key ops so each key's history stays small enough to check quickly;
  3. run the nemesis: quiet, fault, heal, quiet, ... until the run's time is up; then
     heal everything, keep the clients going for recovery_s (liveness), stop them, read
     every key once more (final reads: a lost acknowledged write shows up here);
  4. stop the cluster (sanitizer reports and unexpected deaths are "server problems"),
     check the history with lincheck.py, write summary.json and summary.txt.

How an op is recorded (docs/API.md says which errors are definite):
  ok       2xx; a read's 404 (key missing); a cas that did not swap (its failure branch
           read the current value);
  fail     a definite "did not happen": 4xx; 503 (no leader / leader changed / overloaded:
           the server promises the write was not applied); 502 leader_unreachable (the
           forwarder could not even connect); a refused connection or connect timeout
           (nothing was sent); any non-2xx read (reads have no effect anyway);
  unknown  may or may not have happened: 504 (write or forward timeout), other 502s (a
           forwarded request was cut mid-way), 5xx otherwise, a client timeout, a
           connection lost after sending.
If the server ever answers 503 for a write that did apply, the checker will say so.

Nemeses (each fault is undone before the next one starts):
  (the first fault targets the leader, later ones the leader or a random member; on 5+
  nodes kill and pause take a second random member half of the time)
  kill       kill -9 the target(s), restart at the end of the fault (the fault window
             closes when they serve again);
  pause      SIGSTOP the target(s) for longer than the election timeout, then SIGCONT;
  partition  through the proxy, with links dropped or blackholed at random:
             isolate (the leader or a random member: majority/minority), split (5 nodes: a
             random minority of two), one-way (a member's outbound or inbound links only),
             bridge (two sides that only the bridge member connects), flapping (isolate a
             member, heal, isolate, ... every 0.2-0.8 s), each kind once in random order
             before any repeats (split only on 5 nodes). With probe=True the first
             partition is the stale-read probe: write A through the leader, isolate the
             leader, wait for a new leader, write B through it, then read through the old
             leader -- a server that reads without ReadIndex returns A, which the checker
             must flag;
  slow-disk  every fsync of the target (a third of the time also of a second member)
             sleeps 20-800 ms first (serve --test-fsync-delay-file, src/base/env_posix.c);
  clock-jump the target's wall clock jumps by up to +-10 s (half of the time a second
             jump of the other sign follows), back to 0 at the heal (serve
             --test-clock-offset-file; the monotonic clock is not touched, README.md);
  mixed      any of the above, chosen per fault;
  none       no faults.

Workloads: register (above), and lock, ids, watch (workloads.py, checked by checks.py;
watch also runs the register workload on keys under "w/", which lincheck checks too).

History: history.jsonl, events as lincheck.py reads them, plus {"type":"nemesis"},
{"type":"leader"} and {"type":"phase"} lines to read failures by.

CLI (make chaos): /usr/bin/python3 tests/chaos/harness.py --minutes N --nemesis kill
  [--workload register|lock|ids|watch] [--nodes 3] [--clients 5] [--rate OPS_PER_S] [--out build/chaos]
  [--seed S] [--stale-reads]
writes build/chaos/<timestamp>/ and exits 0 (no anomalies, no server problems, recovered)
or 1.

Every loop and wait is bounded in count or time; run() always tears down what it started.

Sections: config | history | workload and clients | cluster with proxy | nemeses |
monitor | run | summary | CLI.
"""

import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import checks  # noqa: E402
import lincheck  # noqa: E402
import workloads  # noqa: E402
from cluster import Cluster, default_binary, kill_all_children  # noqa: E402
from lincheck import CAS, READ, WRITE  # noqa: E402
from proxy import BLACKHOLE, DROP, Proxy  # noqa: E402
from workloads import BACKOFF_S, new_session  # noqa: E402,F401

NEMESES = ("none", "kill", "pause", "partition", "slow-disk", "clock-jump", "mixed")
MIXED = ("kill", "pause", "partition", "slow-disk", "clock-jump")
PARTITIONS = ("isolate", "split", "one-way", "bridge", "flapping")
WORKLOADS = ("register", "lock", "ids", "watch")
FSYNC_DELAY_FILE = "fsync-delay-ms"      # in each member's dir (its cwd): serve reads it
CLOCK_OFFSET_FILE = "clock-offset-ms"

# ---- config ---------------------------------------------------------------------------


class Config:
    """Everything a run depends on; seed reproduces the client and nemesis choices (not
    the servers' timing)."""

    def __init__(self, **kw):
        self.nodes = 3
        self.seconds = 30.0            # workload + nemesis time, before healing
        self.nemesis = "none"
        self.workload = "register"
        self.clients = 5
        self.keys = 3                  # keys in use at once
        self.ops_per_key = 300         # then the slot moves to a fresh key
        self.seed = None
        self.binary = None             # default: cluster.default_binary()
        self.stale_reads = False       # serve --test-stale-reads (negative control)
        self.tick_ms = 50              # election timeout = 10 ticks = 500 ms
        self.client_timeout = 2.0      # s: a reply later than this is "unknown"
        self.connect_timeout = 1.0
        self.quiet_s = (1.0, 2.5)      # between faults
        self.fault_s = (2.0, 4.0)      # how long a fault lasts (pauses: > election timeout)
        self.recovery_s = 3.0          # clients keep going after the final heal
        self.ready_timeout = 40.0      # s: a leader again after healing
        self.probe = True              # partition nemeses start with the stale-read probe
        self.budget = lincheck.DEFAULT_BUDGET
        self.mix = (2, 1, 1)           # weights of read, write, cas
        self.rate = None               # ops/s over all clients (None: as fast as they go)
        self.lock_ttl_ms = 1000        # lock workload: lease ttl of each hold (min 500)
        self.lock_wait_ms = 1000       # lock workload: how long an acquire may queue
        self.watchers = 2              # watch workload: SSE watchers
        self.fsync_delay_ms = (20, 800)    # slow-disk: per-sync delay range
        self.clock_jump_ms = 10_000        # clock-jump: offsets within +-this
        for k, v in kw.items():
            assert hasattr(self, k), f"unknown config {k}"
            setattr(self, k, v)
        assert self.nemesis in NEMESES, self.nemesis
        assert self.workload in WORKLOADS, self.workload
        assert self.nodes >= 1 and self.clients >= 1 and self.keys >= 1
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1, 1 << 31)

    def as_dict(self):
        return {k: v for k, v in vars(self).items()}


# ---- history --------------------------------------------------------------------------


class History:
    """Appends events to a JSON-lines file (line-buffered: a crash keeps what happened)
    and to memory. Times are ns since the run started. Thread-safe. An invoke's time is
    taken before the request is sent and a completion's after the reply arrived, so every
    recorded interval contains the real one."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "w", encoding="utf-8", buffering=1)
        self.lock = threading.Lock()
        self.t0 = time.monotonic_ns()
        self.next_id = 0
        self.events = []
        self.inv_t = {}

    def now(self):
        return time.monotonic_ns() - self.t0

    def _emit(self, ev):
        self.events.append(ev)
        self.f.write(json.dumps(ev, separators=(",", ":")) + "\n")

    def invoke(self, client, node, key, f, value=None, expected=None, **extra):
        with self.lock:
            self.next_id += 1
            ev = {"type": "invoke", "id": self.next_id, "client": client, "node": node,
                  "key": key, "f": f, "t": self.now()}
            if value is not None:
                ev["value"] = value
            if expected is not None:
                ev["expected"] = expected
            ev.update(extra)
            self._emit(ev)
            self.inv_t[self.next_id] = ev["t"]
            return self.next_id

    def t_of(self, oid):
        """The invoke time of op oid."""
        with self.lock:
            return self.inv_t[oid]

    def complete(self, oid, typ, **fields):
        with self.lock:
            ev = {"type": typ, "id": oid, "t": self.now()}
            ev.update(fields)
            self._emit(ev)

    def note(self, typ, **fields):
        with self.lock:
            ev = {"type": typ, "t": self.now()}
            ev.update(fields)
            self._emit(ev)
            return ev["t"]

    def close(self):
        with self.lock:
            self.f.close()


# ---- workload and clients ----------------------------------------------------------------


class Keys:
    """Key slots; each slot's key is replaced by a fresh one after ops_per_key ops."""

    def __init__(self, n_slots, ops_per_key, prefix=""):
        self.prefix = prefix
        self.lock = threading.Lock()
        self.gen = [0] * n_slots
        self.count = [0] * n_slots
        self.ops_per_key = ops_per_key
        self.used = []

    def pick(self, rng):
        slot = rng.randrange(len(self.gen))
        with self.lock:
            self.count[slot] += 1
            if self.count[slot] > self.ops_per_key:
                self.gen[slot] += 1
                self.count[slot] = 1
            key = f"{self.prefix}k{slot}.{self.gen[slot]}"
            if self.count[slot] == 1:
                self.used.append(key)
            return key


_never_sent = workloads.never_sent
_error_code = workloads.error_code


def perform(run, sess, client, node, key, f, value=None, expected=None):
    """Runs one op against member `node` and records it. Returns (status, result) with
    status "ok" | "fail" | "unknown"; result is the value read (read, failed cas), True
    for a swapped cas, None otherwise."""
    h = run.history
    oid = h.invoke(client, node, key, f, value, expected)
    url = run.cluster.url(node)
    timeout = (run.cfg.connect_timeout, run.cfg.client_timeout)
    try:
        if f == READ:
            r = sess.get(f"{url}/v1/kv/{key}", timeout=timeout)
        elif f == WRITE:
            r = sess.put(f"{url}/v1/kv/{key}", data=value.encode(), timeout=timeout)
        else:
            body = {"compare": [{"key": key, "target": "value", "op": "=", "value": expected}],
                    "success": [{"put": {"key": key, "value": value}}],
                    "failure": [{"get": {"key": key}}]}
            r = sess.post(f"{url}/v1/txn", data=json.dumps(body), timeout=timeout)
    except requests.RequestException as e:
        if _never_sent(e):
            h.complete(oid, "fail", error=f"not sent: {type(e).__name__}")
            return "fail", None
        h.complete(oid, "unknown", error=type(e).__name__)
        return "unknown", None
    code = r.status_code
    if code == 200:
        try:
            j = r.json()
            if f == READ:
                v = j["value"]
                h.complete(oid, "ok", value=v)
                return "ok", v
            if f == WRITE:
                h.complete(oid, "ok", revision=j.get("revision"))
                return "ok", None
            if j["succeeded"]:
                h.complete(oid, "ok", succeeded=True, revision=j.get("revision"))
                return "ok", True
            kvs = j["responses"][0]["get"]["kvs"]
            v = kvs[0]["value"] if kvs else None
            h.complete(oid, "ok", succeeded=False, value=v)
            return "ok", v
        except (ValueError, KeyError, IndexError, TypeError) as e:
            what = "fail" if f == READ else "unknown"
            h.complete(oid, what, error=f"200 with a bad body: {e!r}: {r.text[:200]}")
            return what, None
    err = f"{code} {_error_code(r)}".strip()
    if f == READ:
        if code == 404 and _error_code(r) == "key_not_found":
            h.complete(oid, "ok", value=None)
            return "ok", None
        h.complete(oid, "fail", error=err)
        return "fail", None
    if 400 <= code < 500 or code == 503 or \
            (code == 502 and _error_code(r) in ("leader_unreachable", "bad_leader_address")):
        h.complete(oid, "fail", error=err)
        return "fail", None
    h.complete(oid, "unknown", error=err)
    return "unknown", None


class Clients:
    """C threads running the register workload until stop()."""

    def __init__(self, run):
        self.run = run
        self.stop_ev = threading.Event()
        self.threads = []
        self.known = {}                # key -> latest value some client saw (cas input)
        self.lock = threading.Lock()
        self.errors = []

    def start(self):
        for c in range(self.run.cfg.clients):
            t = threading.Thread(target=self._loop, args=(c,), name=f"client-{c}", daemon=True)
            self.threads.append(t)
            t.start()

    def _loop(self, cid):
        try:
            self._work(cid)
        except Exception as e:  # noqa: BLE001 -- a harness bug must fail the run
            self.errors.append(f"client {cid}: {e!r}")

    def _work(self, cid):
        run = self.run
        rng = random.Random(run.cfg.seed * 1009 + cid)
        sess = new_session()
        ids = [m.id for m in run.cluster.members]
        # even clients stay on one member (they stall with it), odd ones pick per op
        fixed = ids[(cid // 2) % len(ids)] if cid % 2 == 0 else None
        seq = 0
        interval = run.cfg.clients / run.cfg.rate if run.cfg.rate else 0.0
        next_at = time.monotonic()
        while not self.stop_ev.is_set():
            if interval:
                next_at += interval
                if self.stop_ev.wait(max(0.0, next_at - time.monotonic())):
                    break
                next_at = max(next_at, time.monotonic() - interval)   # no catch-up bursts
            key = run.keys.pick(rng)
            node = fixed or rng.choice(ids)
            f = rng.choices((READ, WRITE, CAS), run.cfg.mix)[0]
            with self.lock:
                expected = self.known.get(key)
            if f == CAS and expected is None:
                f = WRITE
            value = None
            if f != READ:
                seq += 1
                value = f"c{cid}-{seq}"
            status, res = perform(run, sess, cid, node, key, f, value, expected)
            if status != "ok":
                time.sleep(BACKOFF_S)      # like a real client: no hot loop on errors
                continue
            seen = value if (f == WRITE or (f == CAS and res is True)) else res
            if seen is not None:
                with self.lock:
                    self.known[key] = seen
        sess.close()

    def stop(self, timeout):
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:             # (only started threads are listed)
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]


# ---- cluster with proxy -------------------------------------------------------------------


class ChaosCluster:
    """A Cluster whose members reach each other only through a Proxy: links
    (i, j, "peer") and (i, j, "http") for every ordered pair of members."""

    def __init__(self, root, cfg):
        extra = ["--test-stale-reads"] if cfg.stale_reads else []
        if cfg.nemesis in ("slow-disk", "clock-jump", "mixed"):
            # relative: each member runs in its own dir (cluster.py), so each has its own
            extra += ["--test-fsync-delay-file", FSYNC_DELAY_FILE,
                      "--test-clock-offset-file", CLOCK_OFFSET_FILE]
        # Run a private copy of the binary: every (re)start in this run execs the same
        # program even if the build tree is relinked meanwhile.
        root = os.path.abspath(root)
        os.makedirs(root, exist_ok=True)
        binary = os.path.join(root, "conclave")
        shutil.copy2(cfg.binary or default_binary(), binary)
        self.cluster = Cluster(root, n=cfg.nodes, binary=binary, tick_ms=cfg.tick_ms,
                               extra_args=extra, http_timeout=2.0)
        self.source_binary = os.path.abspath(cfg.binary or default_binary())
        self.proxy = Proxy()
        self.ids = [m.id for m in self.cluster.members]
        for i in self.ids:
            for j in self.ids:
                if i == j:
                    continue
                mj = self.cluster.m(j)
                peer = self.proxy.add_link((i, j, "peer"), mj.peer_addr)
                http = self.proxy.add_link((i, j, "http"), mj.http_addr)
                self.cluster.addr_overrides[(i, j)] = (peer, http)

    def start(self, ready_timeout):
        self.proxy.start()
        self.cluster.start(ready_timeout=ready_timeout)

    def cut(self, pairs, mode):
        """Sets directed links src -> dst (both kinds) to mode."""
        modes = {}
        for src, dst in pairs:
            modes[(src, dst, "peer")] = mode
            modes[(src, dst, "http")] = mode
        self.proxy.set_modes(modes)

    def partition(self, groups, mode):
        """Cuts every link between members of different groups, both ways."""
        pairs = [(a, b) for g in groups for h in groups if g is not h for a in g for b in h]
        self.cut(pairs, mode)

    def heal(self):
        self.proxy.heal()

    def set_knob(self, mid, name, value):
        """Writes a test-hook control file of member mid (FSYNC_DELAY_FILE or
        CLOCK_OFFSET_FILE) atomically, or removes it (value None). The server sees the
        change within 100 ms (env_posix.c)."""
        path = os.path.join(self.cluster.m(mid).dir, name)
        if value is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        with open(path + ".tmp", "w", encoding="ascii") as f:
            f.write(f"{int(value)}\n")
        os.replace(path + ".tmp", path)

    def clear_knobs(self):
        for m in self.cluster.members:
            self.set_knob(m.id, FSYNC_DELAY_FILE, None)
            self.set_knob(m.id, CLOCK_OFFSET_FILE, None)

    def leader_now(self, among=None, timeout=0.7):
        """(leader id, term) by asking running members; the highest-term self-declared
        leader wins (no agreement needed: this is for picking a target). None if none."""
        best = None
        for m in self.cluster.members:
            if m.state != "running" or (among and m.id not in among):
                continue
            try:
                s = self.cluster.status(m.id, timeout=timeout)
            except (requests.RequestException, ValueError):
                continue
            if s.get("role") == "leader" and (best is None or s["term"] > best[1]):
                best = (m.id, s["term"])
        return best


# ---- nemeses --------------------------------------------------------------------------------


class Fault:
    def __init__(self, what, undo, targets=()):
        self.what = what
        self.undo = undo
        self.targets = list(targets)


class Nemesis:
    """Starts one fault at a time; `begin()` returns a Fault whose undo() heals it."""

    def __init__(self, run):
        self.run = run
        self.cc = run.cc
        self.rng = random.Random(run.cfg.seed * 7919 + 1)
        self.n_faults = 0
        self.probe_done = False
        self.partition_order = []

    def _target(self):
        """The leader for the first fault and then half of the time (when one is known),
        else a random running member."""
        running = [m.id for m in self.cc.cluster.members if m.state == "running"]
        if self.n_faults == 1 or self.rng.random() < 0.5:
            ld = self.cc.leader_now()
            if ld and ld[0] in running:
                return ld[0], "leader"
        return self.rng.choice(running), "random"

    def begin(self):
        kind = self.run.cfg.nemesis
        if kind == "mixed":
            kind = self.rng.choice(MIXED)
        self.n_faults += 1
        if kind == "kill":
            return self._kill()
        if kind == "pause":
            return self._pause()
        if kind == "slow-disk":
            return self._slow_disk()
        if kind == "clock-jump":
            return self._clock_jump()
        if self.run.cfg.probe and not self.probe_done:
            self.probe_done = True
            return self._probe()
        if not self.partition_order:       # every kind once, in random order, then again
            kinds = [k for k in PARTITIONS if k != "split" or len(self.cc.ids) >= 5]
            self.rng.shuffle(kinds)
            self.partition_order = kinds
        return self._partition(self.partition_order.pop())

    def _targets(self):
        """One target (_target), plus a second random one half of the time when a
        minority of two exists (5+ nodes). Returns (ids, description)."""
        mid, why = self._target()
        mids = [mid]
        others = [m.id for m in self.cc.cluster.members if m.state == "running" and m.id != mid]
        if len(self.cc.ids) >= 5 and others and self.rng.random() < 0.5:
            mids.append(self.rng.choice(others))
        return mids, " ".join(f"n{m}" for m in mids) + f" ({why}{' + random' if len(mids) > 1 else ''})"

    def _kill(self):
        mids, what = self._targets()
        c = self.cc.cluster
        for mid in mids:
            c.kill9(mid)

        def undo():
            # the fault lasts until the members serve again (bounded: one that does not
            # come back is a liveness problem, recorded, and the run goes on)
            for mid in mids:
                c.restart(mid, wait=False)
            try:
                c.wait_ready(mids, timeout=self.run.cfg.ready_timeout)
            except AssertionError as e:
                self.run.problems.append(f"{mids} not ready after restart: {e}")
        return Fault(f"kill -9 {what}", undo, mids)

    def _pause(self):
        mids, what = self._targets()
        c = self.cc.cluster
        for mid in mids:
            c.pause(mid)

        def undo():
            for mid in mids:
                c.resume(mid)
        return Fault(f"SIGSTOP {what}", undo, mids)

    def _slow_disk(self):
        """Every fsync of the target (and, a third of the time, of a second member: a
        slow majority on 3 nodes) sleeps 20-800 ms first."""
        mids, what = self._targets()
        others = [m.id for m in self.cc.cluster.members if m.id not in mids]
        if others and len(mids) == 1 and self.rng.random() < 1 / 3:
            mids.append(self.rng.choice(others))
            what += f" + n{mids[-1]}"
        ms = self.rng.randint(*self.run.cfg.fsync_delay_ms)
        for mid in mids:
            self.cc.set_knob(mid, FSYNC_DELAY_FILE, ms)

        def undo():
            for mid in mids:
                self.cc.set_knob(mid, FSYNC_DELAY_FILE, None)
        return Fault(f"slow disk {ms} ms/fsync: {what}", undo, mids)

    def _clock_jump(self):
        """The target's wall clock jumps by up to +-clock_jump_ms (half of the time a
        second jump of the other sign follows mid-fault), and back at the heal."""
        mid, why = self._target()
        j = self.run.cfg.clock_jump_ms
        off = self.rng.choice((-1, 1)) * self.rng.randint(j // 20, j)
        self.cc.set_knob(mid, CLOCK_OFFSET_FILE, off)
        stop = threading.Event()
        th = None
        what = f"clock jump {off:+d} ms: n{mid} ({why})"
        if self.rng.random() < 0.5:
            off2 = -(off // abs(off)) * self.rng.randint(j // 20, j)
            after = self.rng.uniform(0.7, 1.5)
            what += f", then {off2:+d} ms after {after:.1f}s"

            def second():
                if not stop.wait(after):
                    self.cc.set_knob(mid, CLOCK_OFFSET_FILE, off2)
            th = threading.Thread(target=second, name="clock-jump", daemon=True)
            th.start()

        def undo():
            stop.set()
            if th is not None:
                th.join(5)
            self.cc.set_knob(mid, CLOCK_OFFSET_FILE, None)
        return Fault(what, undo, [mid])

    def _mode(self):
        return self.rng.choice((DROP, BLACKHOLE))

    def _partition(self, kind):
        cc, ids, rng = self.cc, list(self.cc.ids), self.rng
        mode = self._mode()
        if kind == "split" and len(ids) < 5:
            kind = "isolate"
        if kind == "isolate":
            t, why = self._target()
            rest = [i for i in ids if i != t]
            cc.partition([[t], rest], mode)
            return Fault(f"partition {mode}: n{t} ({why}) | {rest}", cc.heal, [t])
        if kind == "split":
            rng.shuffle(ids)
            minority, majority = ids[:len(ids) // 2], ids[len(ids) // 2:]
            cc.partition([minority, majority], mode)
            return Fault(f"partition {mode}: {sorted(minority)} | {sorted(majority)}",
                         cc.heal, minority)
        if kind == "one-way":
            t, why = self._target()
            rest = [i for i in ids if i != t]
            if rng.random() < 0.5:
                cc.cut([(t, o) for o in rest], mode)
                return Fault(f"one-way {mode}: n{t} ({why}) cannot send to {rest}", cc.heal, [t])
            cc.cut([(o, t) for o in rest], mode)
            return Fault(f"one-way {mode}: n{t} ({why}) cannot receive from {rest}",
                         cc.heal, [t])
        if kind == "bridge":
            rng.shuffle(ids)
            half = (len(ids) - 1) // 2
            left, bridge, right = ids[:half], ids[half], ids[half + 1:]
            if not left:                   # 2 nodes: nothing to bridge
                left, right = [ids[0]], ids[1:]
            cc.cut([(a, b) for a in left for b in right] + [(b, a) for a in left for b in right],
                   mode)
            return Fault(f"bridge {mode}: {sorted(left)} - n{bridge} - {sorted(right)}",
                         cc.heal, [bridge])
        assert kind == "flapping", kind
        t, why = self._target()
        rest = [i for i in ids if i != t]
        stop = threading.Event()
        flap_rng = random.Random(rng.randrange(1 << 30))   # the thread's own

        def flap():
            cut = False
            for _ in range(10_000):        # bounded; stopped by undo long before
                if stop.wait(flap_rng.uniform(0.2, 0.8)):
                    break
                if cut:
                    cc.heal()
                else:
                    cc.partition([[t], rest], mode)
                cut = not cut
        cc.partition([[t], rest], mode)
        th = threading.Thread(target=flap, name="flapping", daemon=True)
        th.start()

        def undo():
            stop.set()
            th.join(10)
            cc.heal()
        return Fault(f"flapping {mode}: n{t} ({why}) | {rest}", undo, [t])

    def _probe(self):
        """The stale-read probe (module comment). Each step is bounded; its ops are
        recorded like any client's (client "probe")."""
        run, cc = self.run, self.cc
        h = run.history
        sess = new_session()
        key = "probe"
        deadline = time.monotonic() + 30

        def write_until_ok(node, value):
            for _ in range(200):
                if time.monotonic() > deadline:
                    return False
                st, _ = perform(run, sess, "probe", node, key, WRITE, value)
                if st == "ok":
                    return True
                time.sleep(0.1)
            return False

        ld = None
        for _ in range(100):
            ld = cc.leader_now()
            if ld or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        old = ld[0] if ld else self.rng.choice(cc.ids)
        old_term = ld[1] if ld else 0
        acked_a = write_until_ok(old, "probe-a")
        rest = [i for i in cc.ids if i != old]
        cc.partition([[old], rest], DROP)
        h.note("phase", what=f"probe: n{old} isolated after probe-a acked={acked_a}")
        new = None
        for _ in range(300):
            ld = cc.leader_now(among=rest)
            if (ld and ld[1] > old_term) or time.monotonic() > deadline:
                new = ld[0] if ld and ld[1] > old_term else None
                break
            time.sleep(0.1)
        acked_b = write_until_ok(new, "probe-b") if new else False
        st, res = perform(run, sess, "probe", old, key, READ)
        sess.close()
        self.probe_result = {"old_leader": old, "new_leader": new, "acked_a": acked_a,
                             "acked_b": acked_b, "read_status": st, "read_value": res}
        h.note("phase", what="probe done", **{k: v for k, v in self.probe_result.items()})
        return Fault(f"probe: partition drop: n{old} (leader) | {rest}; "
                     f"a acked={acked_a}, b acked={acked_b} via n{new}, "
                     f"read via n{old}: {st} {res!r}", cc.heal, [old])


# ---- monitor --------------------------------------------------------------------------------


class Monitor:
    """Polls /v1/cluster/status of running members every POLL_S and records each new
    (term, leader) in the history; leader changes = distinct leaders seen - 1."""

    POLL_S = 0.25

    def __init__(self, run):
        self.run = run
        self.seen = set()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="monitor", daemon=True)

    def start(self):
        self.thread.start()

    def _loop(self):
        c = self.run.cluster
        sess = new_session()
        for _ in range(10_000_000):
            if self.stop_ev.wait(self.POLL_S):
                break
            for m in list(c.members):
                if m.state != "running":
                    continue
                try:
                    s = sess.get(m.url + "/v1/cluster/status", timeout=0.5).json()
                except (requests.RequestException, ValueError):
                    continue
                if s.get("role") == "leader":
                    k = (s.get("term"), m.id)
                    if k not in self.seen:
                        self.seen.add(k)
                        self.run.history.note("leader", term=k[0], leader=m.id)
        sess.close()

    def stop(self):
        self.stop_ev.set()
        if self.thread.ident is not None:      # started
            self.thread.join(5)

    @property
    def leader_changes(self):
        return max(0, len(self.seen) - 1)


# ---- run ------------------------------------------------------------------------------------


class Run:
    def __init__(self, cfg, out_dir):
        self.cfg = cfg
        self.out_dir = os.path.abspath(str(out_dir))   # members run in their own dirs
        os.makedirs(self.out_dir, exist_ok=True)
        self.history = None
        self.cc = None
        self.cluster = None
        self.keys = Keys(cfg.keys, cfg.ops_per_key,
                         workloads.WATCH_PREFIX if cfg.workload == "watch" else "")
        self.checks = []               # checks.Result of the workload (lock, ids, watch)
        self.watch_final = None
        self.faults = []               # {"start": ns, "end": ns, "what": str}
        self.problems = []
        self.recovered = None
        self.probe = None
        self.report = None
        self.summary = None


def _sleep_until(t_mono, stop_at):
    time.sleep(max(0.0, min(t_mono, stop_at) - time.monotonic()))


def run(cfg, out_dir, log=print):
    """Does one run (module comment) and returns the Run (r.summary: the summary dict,
    r.report: the lincheck Report); the files land in out_dir. Never leaves a process or
    thread of its own running."""
    r = Run(cfg, out_dir)
    r.history = History(os.path.join(r.out_dir, "history.jsonl"))
    r.cc = ChaosCluster(os.path.join(r.out_dir, "cluster"), cfg)
    r.cluster = r.cc.cluster
    clients = None
    watchers = None
    monitor = Monitor(r)
    nemesis = Nemesis(r)
    active = None
    try:
        log(f"chaos: {cfg.nodes} nodes, nemesis {cfg.nemesis}, {cfg.seconds:.0f}s, seed "
            f"{cfg.seed}, binary {r.cc.source_binary}, out {r.out_dir}")
        r.cc.start(cfg.ready_timeout)
        r.cluster.leader(timeout=cfg.ready_timeout)
        r.history.note("phase", what="cluster ready")
        if cfg.workload == "lock":
            clients = workloads.LockClients(r)
        elif cfg.workload == "ids":
            workloads.setup_ids(r)
            clients = workloads.IdClients(r)
        else:
            clients = Clients(r)
        if cfg.workload == "watch":
            start_rev = workloads.current_revision(r)
            r.history.note("phase", what="watch start", start_revision=start_rev)
            watchers = workloads.Watchers(r, start_rev)
            watchers.start()
        monitor.start()
        clients.start()
        stop_at = time.monotonic() + cfg.seconds
        rng = nemesis.rng
        for _ in range(100_000):
            if cfg.nemesis == "none" or time.monotonic() >= stop_at:
                break
            _sleep_until(time.monotonic() + rng.uniform(*cfg.quiet_s), stop_at)
            if time.monotonic() >= stop_at:
                break
            t0 = r.history.note("nemesis", what="start")
            active = nemesis.begin()
            ev = {"start": t0, "what": active.what}
            r.history.note("nemesis", what="started", fault=active.what)
            log(f"  fault: {active.what}")
            _sleep_until(time.monotonic() + rng.uniform(*cfg.fault_s), stop_at + 5)
            active.undo()
            active = None
            ev["end"] = r.history.note("nemesis", what="healed", fault=ev["what"])
            r.faults.append(ev)
        _sleep_until(stop_at, stop_at)
        # heal everything, then the cluster must serve again
        heal_all(r)
        r.history.note("phase", what="healed all; recovery")
        t_rec = r.history.now()
        try:
            r.cluster.wait_ready(timeout=cfg.ready_timeout)
            r.cluster.leader(timeout=cfg.ready_timeout)
        except AssertionError as e:
            r.problems.append(f"no leader after healing: {e}")
        time.sleep(cfg.recovery_s)
        stuck = clients.stop(timeout=cfg.client_timeout * 3 + 5)
        if stuck:
            r.problems.append(f"client threads did not stop: {stuck}")
        r.problems += clients.errors
        r.history.note("phase", what="final reads")
        if cfg.workload in ("register", "watch"):
            final_reads(r)
        if watchers is not None:
            r.watch_final = workloads.final_range(r)
            if r.watch_final is not None:
                target = max([watchers.start_rev] +
                             [mr for mr, _ in r.watch_final[0].values()])
                watchers.wait_caught_up(target, timeout=20)
            for w in range(watchers.n):
                r.history.note("watch-final", watcher=w, last=watchers.last[w])
            stuck = watchers.stop(timeout=WATCH_STOP_S)
            if stuck:
                r.problems.append(f"watcher threads did not stop: {stuck}")
            r.problems += watchers.errors
        monitor.stop()
        ok_after = [e for e in r.history.events
                    if e["type"] == "ok" and e["t"] >= t_rec]
        r.recovered = len(ok_after) > 0
        if not r.recovered:
            r.problems.append("no op succeeded after the final heal (liveness)")
    finally:
        if clients is not None:
            clients.stop(timeout=cfg.client_timeout * 3 + 5)
        if watchers is not None:
            watchers.stop(timeout=WATCH_STOP_S)
        monitor.stop()
        if active is not None:
            try:
                active.undo()
            except Exception as e:  # noqa: BLE001 -- teardown goes on
                r.problems.append(f"undo {active.what}: {e!r}")
        try:
            heal_all(r)
        except Exception as e:  # noqa: BLE001
            r.problems.append(f"heal: {e!r}")
        r.problems += r.cluster.close()
        try:
            r.cc.proxy.stop()
        except Exception as e:  # noqa: BLE001
            r.problems.append(f"proxy: {e!r}")
        r.history.close()
    r.probe = getattr(nemesis, "probe_result", None)
    r.leader_changes = monitor.leader_changes
    t0 = time.monotonic()
    ev = r.history.events
    reg_ids = _register_ids(ev)
    reg = [e for e in ev if "id" not in e or e["id"] in reg_ids]
    ops = lincheck.ops_from_events(reg)
    r.report = lincheck.check(ops, budget=cfg.budget)
    if cfg.workload == "lock":
        r.checks.append(checks.check_lock(ev))
    elif cfg.workload == "ids":
        r.checks.append(checks.check_ids(ev))
    elif cfg.workload == "watch":
        start = next(e["start_revision"] for e in ev if e.get("what") == "watch start")
        r.checks.append(checks.check_watch(ev, start, r.watch_final, cfg.watchers,
                                           workloads.WATCH_PREFIX))
    r.check_s = time.monotonic() - t0
    r.summary = summarize(r, checks.pair_events(ev))
    write_summary(r)
    log(summary_text(r).rstrip())
    return r


WATCH_STOP_S = workloads.WATCH_READ_TIMEOUT_S + 5   # a watcher notices stop after a read


def _register_ids(events):
    """Ids of the register ops (read, write, cas) among events."""
    return {e["id"] for e in events if e.get("type") == "invoke" and
            e.get("f") in (READ, WRITE, CAS)}


def heal_all(r):
    r.cc.heal()
    r.cc.clear_knobs()
    c = r.cluster
    for m in c.members:
        if m.state == "paused":
            c.resume(m.id)
        elif m.state in ("killed", "stopped") and not m.alive():
            c.restart(m.id, wait=False)


def final_reads(r):
    """One linearizable read of every key used, through a random member, retried (fail
    or unknown) for a bounded time; each attempt is recorded."""
    sess = new_session()
    rng = random.Random(r.cfg.seed + 17)
    keys = list(r.keys.used) + (["probe"] if r.probe is not None or
                                 any(e.get("key") == "probe" for e in r.history.events
                                     if e["type"] == "invoke") else [])
    deadline = time.monotonic() + 30
    for key in keys:
        for _ in range(50):
            node = rng.choice([m.id for m in r.cluster.members])
            st, _ = perform(r, sess, "final", node, key, READ)
            if st == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    sess.close()


# ---- summary ------------------------------------------------------------------------------


def summarize(r, ops):
    faults = [(f["start"], f.get("end", f["start"])) for f in r.faults]

    def in_fault(t):
        return any(a <= t <= b for a, b in faults)

    by_f = {}
    win = {"during": [0, 0], "outside": [0, 0]}
    for op in ops:
        d = by_f.setdefault(op.f, {"ok": 0, "fail": 0, "unknown": 0})
        d[op.status] += 1
        w = win["during" if in_fault(op.invoke) else "outside"]
        w[1] += 1
        w[0] += op.status == "ok"
    n = len(ops)
    n_unknown = sum(1 for op in ops if op.status == "unknown")
    rep = r.report
    lin = r.cfg.workload in ("register", "watch")
    verdicts = ([rep.verdict] if lin else []) + [f"{c.name}: {c.verdict}" for c in r.checks]
    n_anom = len(rep.violations) + sum(len(c.anomalies) for c in r.checks)
    return {
        "workload": r.cfg.workload, "nemesis": r.cfg.nemesis, "nodes": r.cfg.nodes,
        "seconds": r.cfg.seconds, "seed": r.cfg.seed, "stale_reads": r.cfg.stale_reads,
        "clients": r.cfg.clients, "rate": r.cfg.rate,
        "binary": r.cc.source_binary,
        "ops": n,
        "ok": sum(1 for op in ops if op.status == "ok"),
        "fail": sum(1 for op in ops if op.status == "fail"),
        "unknown": n_unknown,
        "unknown_rate": round(n_unknown / n, 4) if n else 0.0,
        "by_op": by_f,
        "check": "; ".join(verdicts),
        "anomalies": n_anom,
        "anomaly_keys": [v.key for v in rep.violations] + [x for c in r.checks
                                                           for x in c.rules()],
        "checks": {c.name: {"anomalies": c.anomalies[:100], "stats": c.stats}
                   for c in r.checks},
        "unchecked_keys": [v.key for v in rep.unknown_keys],
        "keys_checked": len(rep.keys),
        "check_seconds": round(r.check_s, 2),
        "leader_changes": r.leader_changes,
        "faults": len(r.faults),
        "fault_log": [{"start_s": round(f["start"] / 1e9, 3),
                       "end_s": round(f.get("end", f["start"]) / 1e9, 3), "what": f["what"]}
                      for f in r.faults],
        "availability": {
            "during_faults": round(win["during"][0] / win["during"][1], 4) if win["during"][1] else None,
            "outside_faults": round(win["outside"][0] / win["outside"][1], 4) if win["outside"][1] else None,
            "ops_during_faults": win["during"][1],
            "ops_outside_faults": win["outside"][1],
        },
        "probe": r.probe,
        "recovered": r.recovered,
        "server_problems": r.problems,
        "passed": rep.ok and all(c.ok for c in r.checks) and not r.problems and
        bool(r.recovered),
    }


def summary_text(r):
    s = r.summary
    a = s["availability"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        f"chaos {s['workload']}/{s['nemesis']} on {s['nodes']} nodes, {s['seconds']:.0f}s, "
        f"seed {s['seed']}{' (--test-stale-reads)' if s['stale_reads'] else ''}: "
        f"{'PASS' if s['passed'] else 'FAIL'}",
        f"  ops {s['ops']} (ok {s['ok']}, fail {s['fail']}, unknown {s['unknown']} = "
        f"{100 * s['unknown_rate']:.1f}%)",
        f"  check: {s['check']}; anomalies {s['anomalies']}"
        + (f" on {s['anomaly_keys']}" if s['anomalies'] else "")
        + (f"; unchecked (budget) {s['unchecked_keys']}" if s['unchecked_keys'] else "")
        + f"; {s['keys_checked']} keys in {s['check_seconds']}s",
        f"  faults {s['faults']}, leader changes {s['leader_changes']}",
        f"  availability: during faults {pct(a['during_faults'])} of {a['ops_during_faults']} "
        f"ops, outside {pct(a['outside_faults'])} of {a['ops_outside_faults']} ops",
        f"  recovered after heal: {s['recovered']}",
    ]
    for p in s["server_problems"]:
        lines.append(f"  server problem: {p}")
    for f in s["fault_log"][:50]:
        lines.append(f"    {f['start_s']:8.3f}s .. {f['end_s']:8.3f}s  {f['what']}")
    for c in r.checks:
        lines.append("  " + c.text().replace("\n", "\n  "))
    if r.report is not None and not r.report.ok:
        lines.append(r.report.text())
    lines.append(f"  files: {r.out_dir}/history.jsonl, summary.json, cluster/n*/log")
    return "\n".join(lines) + "\n"


def write_summary(r):
    with open(os.path.join(r.out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(r.summary, f, indent=2)
        f.write("\n")
    with open(os.path.join(r.out_dir, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(summary_text(r))


# ---- CLI ------------------------------------------------------------------------------------


def main(argv):
    ap = argparse.ArgumentParser(description="Jepsen-style chaos run against real servers")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--workload", default="register", choices=WORKLOADS)
    ap.add_argument("--nemesis", default="mixed", choices=NEMESES)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rate", type=float, help="cap on ops/s over all clients")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--binary", default=os.environ.get("CONCLAVE_BIN"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "chaos"))
    ap.add_argument("--stale-reads", action="store_true",
                    help="negative control: servers skip ReadIndex (must be flagged)")
    a = ap.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(a.out, f"{stamp}-{a.workload}-{a.nemesis}")
    cfg = Config(nodes=a.nodes, clients=a.clients, seconds=a.minutes * 60, nemesis=a.nemesis,
                 workload=a.workload, seed=a.seed,
                 binary=os.path.abspath(a.binary) if a.binary else None,
                 stale_reads=a.stale_reads, rate=a.rate)

    def on_sigterm(signum, frame):         # `timeout`, kill: tear down like Ctrl-C
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        r = run(cfg, out)
    finally:
        kill_all_children()
    return 0 if r.summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
