"""workloads.py -- the lock, ids and watch workloads of the chaos harness, and the HTTP
helpers every workload shares (harness.py runs the register workload itself and imports
the helpers from here).

Every client op is recorded like a register op (History.invoke, then ok / fail / unknown
with the same rules: a definite "did not happen" is fail, a timeout or a lost connection
is unknown); `f` names the op, so lincheck.py (registers only) skips these. What each
workload records and what checks.py then checks:

lock   C clients contend for a few locks (POST /v1/lock/{name}, a short ttl, wait_ms);
       f = "acquire" (ok: token, lease), "keepalive" (POST /v1/lease/{id}/keepalive; ok
       with gone=true when the answer is 404/410: the lease is dead), "release" (DELETE
       with owner and token; ok with released=false for 409 not_holder). A holder
       believes it holds the lock from the acquire's reply until `send time of its last
       successful renewal (the acquire counts) + ttl` (docs/locks.md) or its release's
       invoke, whichever is first; it renews (ttl/3 before the end) only while it still
       believes. Under the lock it increments a counter kept in a Resource: a Python
       object standing for the protected resource of docs/locks.md's fencing contract,
       which rejects any access (read or write) whose token is lower than the highest it
       has seen. Every access is a {"type":"resource"} event in the history. A few
       holders (ZOMBIE_P) act like a GC-paused client: they sleep past their ttl between
       read and write without looking at the clock; the fencing must reject them.
ids    clients draw segment ids (POST /v1/id/segments/chaos/next?count=N, tag "chaos"
       created first with a small step) and snowflake ids (GET /v1/id/snowflake?count=N)
       from every member; f = "seg" | "sf", ok with the ids (and the worker). Each op
       records the member's life (its start count) at invoke and completion.
watch  the register workload on keys under "w/" (harness Clients) plus W watchers, each an
       SSE stream GET /v1/watch/w/?prefix=true&from_revision=R on a member, reconnecting
       (to a random member after an error) with from_revision = last revision + 1. Each
       SSE put/delete event is a {"type":"watch"} line (watcher, member, connection,
       revision, changes); reconnects, snapshots and error events are recorded too.

Every loop and wait is bounded in count or time.

Sections: http helpers | lock | ids | watch.
"""

import json
import random
import threading
import time

import requests
import urllib3
from requests.adapters import HTTPAdapter

BACKOFF_S = 0.05               # a client's pause after an op that did not succeed

# ---- http helpers ----------------------------------------------------------------------


def never_sent(exc):
    """True when requests failed before a byte of the request left (connect refused or
    timed out): the op definitely did not happen."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (urllib3.exceptions.NewConnectionError,
                               urllib3.exceptions.ConnectTimeoutError))


def new_session():
    s = requests.Session()
    # max_retries=0: never resend a request behind our back (the history would lie)
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=2, max_retries=0)
    s.mount("http://", adapter)
    return s


def error_code(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def definite_failure(code, err):
    """docs/API.md: 4xx, 503 and a forwarder that could not connect mean "not applied"."""
    return 400 <= code < 500 or code == 503 or \
        (code == 502 and err in ("leader_unreachable", "bad_leader_address"))


def http_op(run, sess, client, node, f, key, method, path, body=None, read_only=False,
            on_ok=None, special=None, **inv):
    """One recorded HTTP op against member `node`; always completes it in the history.
    Returns (status, fields, oid, invoke time): fields is what was recorded with an ok.
    on_ok(json) gives the fields of a 2xx answer (KeyError/TypeError/ValueError: a bad
    body, recorded unknown -- fail for read_only ops); special(code, err) may classify a
    non-2xx answer itself as (status, fields) (a definite answer such as 409
    not_holder); otherwise definite_failure() (and any non-2xx of a read_only op) is
    fail and the rest unknown. Every completion carries the member's life then."""
    h = run.history
    m = run.cluster.m(node)
    oid = h.invoke(client, node, key, f, life=m.starts, **inv)
    t_inv = h.t_of(oid)
    url = m.url + path
    timeout = (run.cfg.connect_timeout, run.cfg.client_timeout)
    data = json.dumps(body) if body is not None else None
    try:
        r = sess.request(method, url, data=data, timeout=timeout)
    except requests.RequestException as e:
        if never_sent(e):
            h.complete(oid, "fail", error=f"not sent: {type(e).__name__}")
            return "fail", None, oid, t_inv
        h.complete(oid, "unknown", error=type(e).__name__)
        return "unknown", None, oid, t_inv
    code = r.status_code
    if 200 <= code < 300:
        try:
            fields = on_ok(r.json()) if on_ok else {}
        except (ValueError, KeyError, TypeError, IndexError) as e:
            st = "fail" if read_only else "unknown"
            h.complete(oid, st, error=f"{code} with a bad body ({e!r}): {r.text[:200]}")
            return st, None, oid, t_inv
        h.complete(oid, "ok", life=m.starts, **fields)
        return "ok", fields, oid, t_inv
    err = error_code(r)
    if special is not None:
        got = special(code, err)
        if got is not None:
            st, fields = got
            h.complete(oid, st, life=m.starts, **fields)
            return st, fields, oid, t_inv
    st = "fail" if (read_only or definite_failure(code, err)) else "unknown"
    h.complete(oid, st, error=f"{code} {err}".strip())
    return st, None, oid, t_inv


class _Threads:
    """C client threads running self._work(cid) until stop(); an exception in one is a
    harness bug and fails the run (errors)."""

    def __init__(self, run, n, name):
        self.run = run
        self.n = n
        self.name = name
        self.stop_ev = threading.Event()
        self.threads = []
        self.errors = []

    def start(self):
        for c in range(self.n):
            t = threading.Thread(target=self._loop, args=(c,), name=f"{self.name}-{c}",
                                 daemon=True)
            self.threads.append(t)
            t.start()

    def _loop(self, cid):
        try:
            self._work(cid)
        except Exception as e:  # noqa: BLE001 -- a harness bug must fail the run
            self.errors.append(f"{self.name} {cid}: {e!r}")

    def _work(self, cid):
        raise NotImplementedError

    def _pace(self, cid, state):
        """Rate limiting like the register clients: returns False when stopping."""
        rate = self.run.cfg.rate
        if not rate:
            return not self.stop_ev.is_set()
        interval = self.n / rate
        state["next_at"] = state.get("next_at", time.monotonic()) + interval
        if self.stop_ev.wait(max(0.0, state["next_at"] - time.monotonic())):
            return False
        state["next_at"] = max(state["next_at"], time.monotonic() - interval)
        return True

    def _node(self, cid, rng):
        ids = [m.id for m in self.run.cluster.members]
        return ids[(cid // 2) % len(ids)] if cid % 2 == 0 else rng.choice(ids)

    def stop(self, timeout):
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]


# ---- lock ------------------------------------------------------------------------------

LOCK_NAMES = ("L0", "L1")
ZOMBIE_P = 0.05                # a holder that sleeps past its ttl before writing
RENEW_MARGIN_MS = 50           # renew this long before the believed end at the latest


class Resource:
    """The protected resource of docs/locks.md, one per lock name: a counter that
    accepts an access only when its token is >= the highest token it has seen (reads
    count: a holder whose read was accepted cannot be overtaken unnoticed). Every access
    is logged as {"type":"resource","lock","seq","op","owner","token","value",
    "accepted"} -- in the resource's own order (seq), under its lock."""

    def __init__(self, name, history):
        self.name = name
        self.h = history
        self.mu = threading.Lock()
        self.value = 0
        self.max_token = 0
        self.seq = 0

    def _log(self, op, owner, token, value, accepted):
        self.seq += 1
        self.h.note("resource", lock=self.name, seq=self.seq, op=op, owner=owner,
                    token=token, value=value, accepted=accepted)

    def read(self, owner, token):
        with self.mu:
            ok = token >= self.max_token
            if ok:
                self.max_token = token
            self._log("read", owner, token, self.value if ok else None, ok)
            return ok, self.value

    def write(self, owner, token, value):
        with self.mu:
            ok = token >= self.max_token
            if ok:
                self.max_token = token
                self.value = value
            self._log("write", owner, token, value, ok)
            return ok



class LockClients(_Threads):
    """The lock workload (module comment)."""

    def __init__(self, run):
        super().__init__(run, run.cfg.clients, "lock")
        self.resources = {n: Resource(n, run.history) for n in LOCK_NAMES}

    def _work(self, cid):
        run, cfg = self.run, self.run.cfg
        rng = random.Random(cfg.seed * 1013 + cid)
        sess = new_session()
        seq = 0
        pace = {}
        for _ in range(10_000_000):
            if not self._pace(cid, pace):
                break
            seq += 1
            name = rng.choice(LOCK_NAMES)
            owner = f"c{cid}-{seq}"
            node = self._node(cid, rng)
            body = {"owner": owner, "ttl_ms": cfg.lock_ttl_ms, "wait_ms": cfg.lock_wait_ms}
            st, got, _, t_inv = http_op(
                run, sess, cid, node, "acquire", name, "POST", f"/v1/lock/{name}", body,
                on_ok=lambda j: {"token": int(j["token"]), "lease": int(j["lease"])},
                owner=owner, ttl_ms=cfg.lock_ttl_ms)
            if st != "ok":
                time.sleep(BACKOFF_S)
                continue
            self._hold(cid, rng, sess, node, name, owner, got["token"], got["lease"], t_inv)
        sess.close()

    def _hold(self, cid, rng, sess, node, name, owner, token, lease, t_inv):
        run, cfg, h = self.run, self.run.cfg, self.run.history
        ttl_ns = cfg.lock_ttl_ms * 1_000_000
        margin_ns = RENEW_MARGIN_MS * 1_000_000
        valid = [t_inv + ttl_ns]       # believed end: last successful renewal's send + ttl

        def believe():
            """True while the hold may be trusted; renews once a third of the ttl or
            less is left, and only while the hold is still believed."""
            now = h.now()
            if now >= valid[0] - margin_ns:
                return False
            if valid[0] - now > ttl_ns // 3:
                return True
            kst, kf, _, k_inv = http_op(
                run, sess, cid, node, "keepalive", name, "POST",
                f"/v1/lease/{lease}/keepalive", {},
                on_ok=lambda j: {"gone": False},
                special=lambda c, e: ("ok", {"gone": True, "code": c}) if c in (404, 410)
                else None,
                owner=owner, lease=lease)
            if kst == "ok" and not kf["gone"]:
                if k_inv < valid[0]:
                    valid[0] = max(valid[0], k_inv + ttl_ns)
            elif kst == "ok":          # the lease is dead: the hold is over
                valid[0] = min(valid[0], h.now())
            return h.now() < valid[0] - margin_ns

        res = self.resources[name]
        zombie = rng.random() < ZOMBIE_P
        if believe():
            ok, v = res.read(owner, token)
            if ok:
                time.sleep(rng.uniform(0, 0.02))               # the "work"
                if zombie:                                     # a GC pause, unaware
                    time.sleep(cfg.lock_ttl_ms * 1.5 / 1000)
                    res.write(owner, token, v + 1)
                elif believe():
                    res.write(owner, token, v + 1)
        # release, also after the hold was lost (cleans up whatever is left); the hold
        # is no longer believed from this invoke on
        http_op(run, sess, cid, node, "release", name, "DELETE", f"/v1/lock/{name}",
                {"owner": owner, "token": token},
                on_ok=lambda j: {"released": True},
                special=lambda c, e: ("ok", {"released": False, "code": c})
                if c == 409 and e == "not_holder" else None,
                owner=owner, token=token)


# ---- ids -------------------------------------------------------------------------------

ID_TAG = "chaos"
ID_STEP = 100                  # small: segments turn over often, so ALLOCs run under faults
ID_COUNTS = (1, 1, 1, 5, 20)


def setup_ids(run, deadline_s=30):
    """Creates the segment tag (201, or 409 tag_exists after an unknown first try)."""
    sess = new_session()
    end = time.monotonic() + deadline_s
    try:
        for _ in range(300):
            ld = run.cluster.find_leader()
            node = ld if ld else run.cluster.members[0].id
            try:
                r = sess.post(run.cluster.url(node) + "/v1/id/segments",
                              data=json.dumps({"tag": ID_TAG, "initial": 1, "step": ID_STEP}),
                              timeout=3)
                if r.status_code == 201 or (r.status_code == 409 and
                                            error_code(r) == "tag_exists"):
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > end:
                break
            time.sleep(0.2)
    finally:
        sess.close()
    raise AssertionError(f"could not create segment tag {ID_TAG!r}")


class IdClients(_Threads):
    """The ids workload (module comment)."""

    def __init__(self, run):
        super().__init__(run, run.cfg.clients, "ids")

    def _work(self, cid):
        run, cfg = self.run, self.run.cfg
        rng = random.Random(cfg.seed * 1019 + cid)
        sess = new_session()
        pace = {}
        for _ in range(10_000_000):
            if not self._pace(cid, pace):
                break
            node = self._node(cid, rng)
            n = rng.choice(ID_COUNTS)
            if rng.random() < 0.5:
                st, _, _, _ = http_op(
                    run, sess, cid, node, "seg", ID_TAG, "POST",
                    f"/v1/id/segments/{ID_TAG}/next?count={n}",
                    on_ok=lambda j: {"ids": [int(x) for x in j["ids"]]}, count=n)
            else:
                st, _, _, _ = http_op(
                    run, sess, cid, node, "sf", "snowflake", "GET",
                    f"/v1/id/snowflake?count={n}",
                    on_ok=lambda j: {"ids": [int(x) for x in j["ids"]],
                                     "worker": int(j["worker"])}, count=n)
            if st != "ok":
                time.sleep(BACKOFF_S)
        sess.close()


# ---- watch -----------------------------------------------------------------------------

WATCH_PREFIX = "w/"
WATCH_READ_TIMEOUT_S = 6.0     # > the 5 s progress bookmark of an idle stream


def current_revision(run, deadline_s=20):
    """The store's revision now (a linearizable range read of the watched prefix)."""
    sess = new_session()
    end = time.monotonic() + deadline_s
    try:
        for _ in range(200):
            for m in run.cluster.running():
                try:
                    r = sess.get(f"{m.url}/v1/kv/{WATCH_PREFIX}?prefix=true&count_only=true",
                                 timeout=3)
                    if r.status_code == 200:
                        return int(r.json()["revision"])
                except (requests.RequestException, ValueError, KeyError):
                    pass
            if time.monotonic() > end:
                break
            time.sleep(0.2)
    finally:
        sess.close()
    raise AssertionError("no member answered a range read")


def final_range(run, deadline_s=20):
    """{key: (mod_revision, value)} of the watched prefix and its revision, read
    linearizably (one page: at most 10,000 keys), or None when no member answered."""
    sess = new_session()
    end = time.monotonic() + deadline_s
    try:
        for _ in range(200):
            for m in run.cluster.running():
                try:
                    r = sess.get(f"{m.url}/v1/kv/{WATCH_PREFIX}", timeout=5,
                                 params={"prefix": "true", "limit": "10000"})
                    if r.status_code != 200:
                        continue
                    j = r.json()
                    if j.get("more"):
                        raise AssertionError("more than 10,000 watched keys")
                    return {kv["key"]: (kv["mod_revision"], kv.get("value"))
                            for kv in j["kvs"]}, int(j["revision"])
                except (requests.RequestException, ValueError, KeyError):
                    pass
            if time.monotonic() > end:
                break
            time.sleep(0.2)
    finally:
        sess.close()
    return None


class Watchers(_Threads):
    """W SSE watchers of WATCH_PREFIX (module comment). last[w] is watcher w's latest
    revision (from events and progress bookmarks)."""

    def __init__(self, run, start_rev):
        super().__init__(run, run.cfg.watchers, "watch")
        self.start_rev = start_rev
        self.last = [start_rev] * self.n
        self.conns = [0] * self.n

    def _work(self, w):
        run = self.run
        h = run.history
        rng = random.Random(run.cfg.seed * 1021 + w)
        ids = [m.id for m in run.cluster.members]
        node = ids[w % len(ids)]
        sess = new_session()
        for _ in range(1_000_000):
            if self.stop_ev.is_set():
                break
            self.conns[w] += 1
            conn = self.conns[w]
            frm = self.last[w] + 1
            h.note("watch-connect", watcher=w, node=node, conn=conn, from_revision=frm)
            why = self._stream(w, sess, node, conn, frm)
            if self.stop_ev.is_set():
                break
            h.note("watch-reconnect", watcher=w, node=node, conn=conn, why=why)
            sess.close()
            sess = new_session()
            self.stop_ev.wait(0.1)
            node = rng.choice(ids)     # resume anywhere: the revision is cluster-wide
        sess.close()

    def _stream(self, w, sess, node, conn, frm):
        """Reads one SSE stream until it ends, fails or the run stops; returns why."""
        h = self.run.history
        url = f"{self.run.cluster.url(node)}/v1/watch/{WATCH_PREFIX}"
        try:
            r = sess.get(url, params={"prefix": "true", "from_revision": str(frm)},
                         stream=True, timeout=(self.run.cfg.connect_timeout,
                                               WATCH_READ_TIMEOUT_S))
        except requests.RequestException as e:
            return f"connect: {type(e).__name__}"
        try:
            if r.status_code != 200:
                return f"{r.status_code} {error_code(r)}"
            ev = {}
            for line in r.iter_lines(chunk_size=16384):
                if self.stop_ev.is_set():
                    return "stopped"
                if line:
                    k, _, v = line.decode("utf-8", "replace").partition(":")
                    ev[k] = v[1:] if v.startswith(" ") else v
                    continue
                if not ev:
                    continue
                typ, data = ev.get("event", ""), ev.get("data", "")
                ev = {}
                j = json.loads(data) if data else {}
                if typ in ("put", "delete"):
                    rev = int(j["revision"])
                    changes = []
                    for c in j["events"]:
                        if c["type"] == "put":
                            kv = c["kv"]
                            changes.append(["put", kv.get("key"), kv.get("value"),
                                            kv.get("mod_revision")])
                        else:
                            changes.append(["delete", c.get("key"), None,
                                            c.get("mod_revision")])
                    h.note("watch", watcher=w, node=node, conn=conn, rev=rev,
                           changes=changes)
                    self.last[w] = max(self.last[w], rev)
                elif typ == "progress":
                    self.last[w] = max(self.last[w], int(j["revision"]))
                elif typ == "snapshot":
                    h.note("watch-snapshot", watcher=w, node=node, conn=conn,
                           rev=int(j["revision"]))
                    self.last[w] = max(self.last[w], int(j["revision"]))
                elif typ == "error":
                    h.note("watch-error", watcher=w, node=node, conn=conn, error=j)
                    return f"error event {j.get('error', {}).get('code')}"
            return "stream ended"
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError,
                KeyError, TypeError) as e:
            return f"{type(e).__name__}: {str(e)[:120]}"
        finally:
            r.close()

    def wait_caught_up(self, target, timeout):
        """Waits (bounded) until every watcher's last revision >= target; returns the
        watchers that did not get there."""
        end = time.monotonic() + timeout
        for _ in range(100_000):
            behind = [w for w in range(self.n) if self.last[w] < target]
            if not behind or time.monotonic() > end:
                return behind
            time.sleep(0.1)
        return [w for w in range(self.n) if self.last[w] < target]
