"""test_watch.py -- GET /v1/watch/{key}: Server-Sent Events of puts and deletes.

What is proven, each against the committed history read back with GET ...?revision=R
(the changes at R are the keys whose mod_revision is R plus the keys gone since R-1):
  - Ordered and unique: ids strictly increase, one SSE event per revision, each change
    exactly once, no revision of the watched range missing, with concurrent writers.
  - Atomic: a txn's changes (one revision) arrive together, in op order, in one event.
  - Resumable: reconnecting with from_revision = last id + 1 (or the SSE Last-Event-ID
    header) gives exactly the missed events.
  - Compacted history: a watch from a compacted revision gets ONE snapshot event at the
    current revision holding the range's state, then continues live.
  - Many watchers (200) on one key all get the same sequence.
  - A watcher that does not read is cut with a final error naming the revision to
    resume from; resuming there gives the rest, nothing lost.
  - Followers serve watches; a leader killed during a watch costs a watcher on a
    surviving node nothing: every committed write arrives exactly once.
  - Lease deaths reach watchers that name the lease (?lease=ID), bookmarks carry the
    current revision, bad requests get 4xx, and `conclave watch` prints the stream.

The SSE client is a raw socket (chunked transfer decoding and SSE framing by hand), so
the tests see the wire and can stop reading on purpose. Every wait is bounded.
"""

import json
import os
import socket
import subprocess
import time
import urllib.parse

import pytest
import requests

from cluster import wait_until

# ---- an SSE client over a raw socket ----------------------------------------------------


class Event:
    def __init__(self, event, id_, data):
        self.event = event
        self.id = id_
        self.data = data

    def __repr__(self):
        return f"Event({self.event}, id={self.id}, {json.dumps(self.data)[:200]})"


class Sse:
    """One GET on its own connection; next() returns events until the stream ends."""

    def __init__(self, port, path, headers=(), rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Accept: text/event-stream\r\n{extra}\r\n".encode())
        self.raw = b""   # received, not yet de-chunked
        self.text = b""  # body, not yet cut into events
        self.status = None
        self.headers = {}
        self.chunked = False
        self.length = None
        self.eof = False
        self.ended = False  # the terminal chunk arrived

    def close(self):
        self.sock.close()

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no SSE event in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout as e:
            raise TimeoutError("no SSE event in time") from e
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.raw += data

    def _head(self, deadline):
        while b"\r\n\r\n" not in self.raw:
            assert not self.eof, f"closed before the head: {self.raw!r}"
            self._recv(deadline)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if "content-length" in self.headers:
            self.length = int(self.headers["content-length"])

    def _dechunk(self):
        if not self.chunked:
            self.text += self.raw
            self.raw = b""
            return
        while not self.ended:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + size + 2:
                return
            if size == 0:
                self.ended = True
            self.text += self.raw[i + 2:i + 2 + size]
            self.raw = self.raw[i + 2 + size + 2:]

    def response(self, timeout=10.0):
        """A non-streaming answer (an error): (status, parsed JSON body)."""
        deadline = time.monotonic() + timeout
        if self.status is None:
            self._head(deadline)
        while self.length is not None and len(self.raw) < self.length and not self.eof:
            self._recv(deadline)
        return self.status, json.loads(self.raw[:self.length or len(self.raw)] or b"null")

    def next(self, timeout=10.0):
        """The next event, or None once the stream ended."""
        deadline = time.monotonic() + timeout
        if self.status is None:
            self._head(deadline)
            assert self.status == 200, f"watch refused: {self.status} {self.raw[:300]!r}"
            assert self.headers.get("content-type", "").startswith("text/event-stream")
        while True:
            self._dechunk()
            i = self.text.find(b"\n\n")
            if i >= 0:
                block, self.text = self.text[:i], self.text[i + 2:]
                ev, id_, data = "message", None, []
                for line in block.decode().split("\n"):
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        ev = value
                    elif name == "id":
                        id_ = int(value)
                    elif name == "data":
                        data.append(value)
                if data:
                    return Event(ev, id_, json.loads("\n".join(data)))
                continue
            if self.ended or self.eof:
                return None
            self._recv(deadline)


def watch_path(key, **params):
    q = {k: ("true" if v is True else str(v)) for k, v in params.items() if v is not None}
    path = "/v1/watch/" + urllib.parse.quote(key, safe="/")
    return path + ("?" + urllib.parse.urlencode(q) if q else "")


def open_watch(member, key, headers=(), rcvbuf=None, **params):
    """A watch on member; waits for the stream's first event and returns (w, first)."""
    w = Sse(member.http_port, watch_path(key, **params), headers=headers, rcvbuf=rcvbuf)
    first = w.next(timeout=15)
    assert first is not None
    return w, first


def read_changes(w, until_rev, timeout=20.0):
    """put/delete/snapshot events until one with id >= until_rev (progress skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while not out or out[-1].id < until_rev:
        left = deadline - time.monotonic()
        assert left > 0, f"stream stopped at {out[-1].id if out else None}, wanted {until_rev}"
        ev = w.next(timeout=left)
        assert ev is not None, f"stream ended at {out[-1].id if out else None}"
        assert ev.event != "error", f"unexpected error event {ev}"
        if ev.event in ("put", "delete", "snapshot"):
            out.append(ev)
    return out


# ---- the committed history ---------------------------------------------------------------


def state_at(session, url, prefix, rev):
    """{key: (value, mod_revision)} of every key under prefix at revision rev (0: empty)."""
    if rev < 1:
        return {}
    r = session.get(f"{url}/v1/kv/{urllib.parse.quote(prefix, safe='/')}",
                    params={"prefix": "true", "revision": str(rev),
                            "consistency": "serializable"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["more"]
    return {kv["key"]: (kv["value"], kv["mod_revision"]) for kv in body["kvs"]}


def history(url, prefix, start, end):
    """{rev: sorted changes} for start <= rev <= end, from GET ?revision= diffs."""
    s = requests.Session()
    out = {}
    prev = state_at(s, url, prefix, start - 1)
    for rev in range(start, end + 1):
        cur = state_at(s, url, prefix, rev)
        changes = [("put", k, v) for k, (v, mod) in cur.items() if mod == rev]
        changes += [("delete", k, None) for k in prev if k not in cur]
        if changes:
            out[rev] = sorted(changes, key=repr)
        prev = cur
    return out


def changes_of(events):
    """The stream as {rev: sorted changes}, checking order, uniqueness and shape."""
    out = {}
    last = 0
    for ev in events:
        assert ev.event in ("put", "delete"), ev
        assert ev.id is not None and ev.id > last, f"ids not increasing: {last} then {ev}"
        assert ev.data["revision"] == ev.id
        assert ev.event == ev.data["events"][0]["type"]  # named after its first change
        last = ev.id
        changes = []
        for c in ev.data["events"]:
            if c["type"] == "put":
                assert c["kv"]["mod_revision"] == ev.id
                changes.append(("put", c["kv"]["key"], c["kv"]["value"]))
            else:
                assert c["type"] == "delete" and c["mod_revision"] == ev.id
                changes.append(("delete", c["key"], None))
        assert len(set(changes)) == len(changes), f"a change twice in {ev}"
        out[ev.id] = sorted(changes, key=repr)
    return out


def assert_matches_history(events, url, prefix, start, end):
    got = {r: c for r, c in changes_of(events).items() if start <= r <= end}
    want = history(url, prefix, start, end)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"missing revisions {missing[:10]}, extra {extra[:10]}"
    for rev in want:
        assert got[rev] == want[rev], f"revision {rev}: stream {got[rev]} != history {want[rev]}"
    return len(want)


def put(url, key, value, session=None):
    r = (session or requests).put(f"{url}/v1/kv/{key}", data=value, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["revision"]


def delete(url, key):
    r = requests.delete(f"{url}/v1/kv/{key}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["revision"]


def txn(url, ops):
    r = requests.post(f"{url}/v1/txn", json={"success": ops}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["revision"]


# ---- single node ----------------------------------------------------------------------------


def test_put_delete_and_txn_atomic(single, ns):
    m = single.m(1)
    w, first = open_watch(m, ns, prefix=True)
    assert first.event == "progress"  # the start: everything up to first.id is before us
    start = first.id + 1
    r1 = put(m.url, ns + "a", "1")
    r2 = put(m.url, ns + "b", "2")
    r3 = txn(m.url, [{"put": {"key": ns + "c", "value": "3"}},
                     {"delete": {"key": ns + "a"}},
                     {"put": {"key": ns + "b", "value": "22"}}])
    r4 = delete(m.url, ns + "c")
    put(m.url, "elsewhere/" + ns, "x")  # outside the prefix: not seen
    evs = read_changes(w, r4)
    assert [e.id for e in evs] == [r1, r2, r3, r4]
    t = evs[2]  # the txn: one event, its three changes in op order
    assert t.event == "put"
    assert [(c["type"], c.get("key") or c["kv"]["key"]) for c in t.data["events"]] == \
        [("put", ns + "c"), ("delete", ns + "a"), ("put", ns + "b")]
    assert t.data["events"][2]["kv"]["version"] == 2
    assert t.data["events"][2]["kv"]["create_revision"] == r2
    assert evs[3].event == "delete" and evs[3].data["events"] == \
        [{"type": "delete", "key": ns + "c", "mod_revision": r4}]
    assert_matches_history(evs, m.url, ns, start, r4)
    w.close()


def test_exact_key_and_binary_bytes(single, ns):
    m = single.m(1)
    w, first = open_watch(m, ns + "k")
    put(m.url, ns + "kk", "not me")  # a longer key with the watched key as prefix
    r = requests.put(f"{m.url}/v1/kv/{urllib.parse.quote(ns + 'k')}", data=b"\x00\xffbin",
                     timeout=10)
    assert r.status_code == 200
    evs = read_changes(w, r.json()["revision"])
    assert len(evs) == 1
    kv = evs[0].data["events"][0]["kv"]
    assert kv["key"] == ns + "k" and kv["value_base64"] == "AP9iaW4=" and "value" not in kv
    w.close()


def test_ordered_unique_with_concurrent_writers(single, ns):
    import threading
    m = single.m(1)
    w, first = open_watch(m, ns, prefix=True)
    start = first.id + 1
    acked = []
    errors = []

    def writer(t):
        s = requests.Session()
        try:
            for i in range(40):
                k = f"{ns}k{(t * 7 + i) % 10}"
                if i % 9 == 8:
                    r = s.delete(f"{m.url}/v1/kv/{k}", timeout=10)
                elif i % 13 == 12:
                    r = s.post(f"{m.url}/v1/txn", timeout=10, json={"success": [
                        {"put": {"key": f"{ns}t{t}a", "value": str(i)}},
                        {"put": {"key": f"{ns}t{t}b", "value": str(i)}}]})
                else:
                    r = s.put(f"{m.url}/v1/kv/{k}", data=f"{t}:{i}", timeout=10)
                assert r.status_code == 200, r.text
                acked.append(r.json()["revision"])
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    end = max(acked)
    evs = read_changes(w, end)
    n = assert_matches_history(evs, m.url, ns, start, end)
    assert n >= 100  # deletes of absent keys change nothing; everything else is a revision
    w.close()


def test_resume_with_from_revision_and_last_event_id(single, ns):
    m = single.m(1)
    full, first = open_watch(m, ns, prefix=True)  # the reference: never disconnects
    start = first.id + 1
    part, _ = open_watch(m, ns, prefix=True, from_revision=start)
    revs = [put(m.url, f"{ns}x{i % 3}", str(i)) for i in range(10)]
    got = read_changes(part, revs[4])
    assert [e.id for e in got] == revs[:5]
    part.close()  # disconnect; more writes happen meanwhile
    revs += [put(m.url, f"{ns}x{i % 3}", str(i)) for i in range(10, 20)]
    revs.append(delete(m.url, ns + "x0"))
    resumed, first2 = open_watch(m, ns, prefix=True, from_revision=got[-1].id + 1)
    assert first2.event == "progress" and first2.id == got[-1].id
    rest = read_changes(resumed, revs[-1])
    reference = read_changes(full, revs[-1])
    assert [e.id for e in got + rest] == [e.id for e in reference] == revs
    assert [e.data for e in got + rest] == [e.data for e in reference]
    # the same through the SSE header an EventSource sends when it reconnects
    by_header, first3 = open_watch(m, ns, prefix=True, from_revision=1,
                                   headers=[("Last-Event-ID", str(revs[9]))])
    assert first3.id == revs[9]
    assert [e.id for e in read_changes(by_header, revs[-1])] == revs[10:]
    assert_matches_history(reference, m.url, ns, start, revs[-1])
    for w in (full, resumed, by_header):
        w.close()


def test_compacted_from_revision_gets_one_snapshot(single, ns):
    m = single.m(1)
    old = put(m.url, ns + "a", "1")
    put(m.url, ns + "b", "2")
    put(m.url, ns + "c", "3")
    delete(m.url, ns + "b")
    cur = put(m.url, ns + "a", "4")
    r = requests.post(f"{m.url}/v1/compact", json={"revision": cur}, timeout=10)
    assert r.status_code == 200, r.text
    assert single.get(1, ns + "a", {"revision": str(old)}).status_code == 410  # truly gone

    w, snap = open_watch(m, ns, prefix=True, from_revision=old)
    assert snap.event == "snapshot", snap  # no error, no relist: the state, at once
    assert snap.id == snap.data["revision"] and snap.id >= cur
    state = {kv["key"]: kv["value"] for kv in snap.data["kvs"]}
    assert state == {ns + "a": "4", ns + "c": "3"}
    assert state == {k: v for k, (v, _) in state_at(requests, m.url, ns, snap.id).items()}
    a = next(kv for kv in snap.data["kvs"] if kv["key"] == ns + "a")
    assert a["mod_revision"] == cur and a["version"] == 2 and a["create_revision"] == old
    nxt = put(m.url, ns + "d", "5")  # then live, exactly once
    evs = read_changes(w, nxt)
    assert [e.id for e in evs] == [nxt] and evs[0].data["events"][0]["kv"]["key"] == ns + "d"

    k, snap_k = open_watch(m, ns + "a", from_revision=old)  # one key
    assert snap_k.event == "snapshot" and [kv["key"] for kv in snap_k.data["kvs"]] == [ns + "a"]
    gone, snap_g = open_watch(m, ns + "b", from_revision=old)  # a deleted key: empty state
    assert snap_g.event == "snapshot" and snap_g.data["kvs"] == []
    # an EventSource reconnecting with an id that was compacted meanwhile: same path
    hdr, snap_h = open_watch(m, ns, prefix=True, headers=[("Last-Event-ID", str(old))])
    assert snap_h.event == "snapshot" and len(snap_h.data["kvs"]) == 3
    for x in (w, k, gone, hdr):
        x.close()


def test_two_hundred_watchers_share_one_key(single, ns):
    m = single.m(1)
    watchers = [open_watch(m, ns + "hot")[0] for _ in range(200)]
    other, _ = open_watch(m, ns + "cold")
    revs = [put(m.url, ns + "hot", f"v{i}") for i in range(20)]
    seqs = []
    for w in watchers:
        evs = read_changes(w, revs[-1])
        seqs.append([(e.id, e.data["events"][0]["kv"]["value"]) for e in evs])
    want = [(r, f"v{i}") for i, r in enumerate(revs)]
    assert all(s == want for s in seqs)
    cold = put(m.url, ns + "cold", "c")
    assert [e.id for e in read_changes(other, cold)] == [cold]  # the other key saw none of it
    for w in watchers + [other]:
        w.close()


def test_slow_watcher_is_cut_with_a_resume_revision(single, ns):
    m = single.m(1)
    w, first = open_watch(m, ns, prefix=True, rcvbuf=4096)
    start = first.id + 1
    s = requests.Session()
    value = "v" * (100 << 10)
    revs = [put(m.url, f"{ns}big{i % 4}", value + str(i), session=s) for i in range(150)]
    # now read: complete events, in order, then the error naming where to resume
    seen = []
    err = None
    deadline = time.monotonic() + 60
    while err is None:
        assert time.monotonic() < deadline, "no error event: the watcher was never cut"
        ev = w.next(timeout=30)
        assert ev is not None, "the stream ended without an error event"
        if ev.event == "error":
            err = ev
        elif ev.event != "progress":
            seen.append(ev)
    assert err.id is None and err.data["error"]["code"] == "watch_slow"
    resume = err.data["resume_revision"]
    assert w.next(timeout=10) is None  # the error is the last thing on the stream
    assert start < resume <= revs[-1]
    assert [e.id for e in seen] == [r for r in revs if r < resume]  # no gap before the cut
    w2, _ = open_watch(m, ns, prefix=True, from_revision=resume)
    rest = read_changes(w2, revs[-1], timeout=60)
    assert [e.id for e in seen + rest] == revs  # nothing lost, nothing twice
    assert rest[0].data["events"][0]["kv"]["value"] == value + str(revs.index(resume))
    w.close()
    w2.close()


def test_progress_bookmark_carries_the_current_revision(single, ns):
    m = single.m(1)
    w, first = open_watch(m, ns + "quiet")
    rev = put(m.url, ns + "other", "x")  # not watched: only a bookmark can tell
    deadline = time.monotonic() + 12
    while True:
        assert time.monotonic() < deadline, "no bookmark within 12 s (WATCH_PROGRESS_MS is 5 s)"
        ev = w.next(timeout=12)
        assert ev is not None and ev.event == "progress", ev
        if ev.id >= rev:
            break
    assert ev.data == {"revision": ev.id}
    w.close()


def test_lease_death_reaches_the_watch(single, ns):
    m = single.m(1)
    r = requests.post(f"{m.url}/v1/lease", json={"ttl_ms": 60000}, timeout=10)
    if r.status_code == 404:
        pytest.skip("no /v1/lease endpoint in this build")
    assert r.status_code in (200, 201), r.text
    lease = r.json()["id"]
    w, _ = open_watch(m, ns, prefix=True, lease=lease)
    only, _ = open_watch(m, "", lease=lease)  # a lease-only watch
    r = requests.put(f"{m.url}/v1/kv/{ns}held", params={"lease": lease}, data="x", timeout=10)
    assert r.status_code == 200, r.text
    held = r.json()["revision"]
    r = requests.delete(f"{m.url}/v1/lease/{lease}", timeout=10)
    assert r.status_code == 200, r.text
    evs = read_changes(w, held + 1)
    assert [e.event for e in evs] == ["put", "delete"]  # the key died with its lease
    gone = evs[1].id
    ev = w.next(timeout=10)
    while ev.event == "progress":
        ev = w.next(timeout=10)
    assert ev.event == "lease" and ev.id is None
    assert ev.data == {"lease": lease, "type": "revoked", "revision": gone}
    ev = only.next(timeout=10)
    while ev.event == "progress":
        ev = only.next(timeout=10)
    assert ev.event == "lease" and ev.data["type"] == "revoked"
    late, first = open_watch(m, ns, prefix=True, lease=lease)  # asked after the death
    ev = late.next(timeout=10)
    assert first.event == "progress" and ev.event == "lease" and ev.data["type"] == "not_found"
    for x in (w, only, late):
        x.close()


def test_bad_requests(single, ns):
    m = single.m(1)
    cases = [
        (watch_path(""), 400, "empty_key"),
        (watch_path(ns, from_revision="x"), 400, "bad_query"),
        (watch_path(ns, prefix="maybe"), 400, "bad_query"),
        (watch_path(ns, lease="-1"), 400, "bad_query"),
        (watch_path("k" * 4097), 414, "key_too_long"),
    ]
    for path, status, code in cases:
        st, body = Sse(m.http_port, path).response()
        assert (st, body["error"]["code"]) == (status, code), path
    st, body = Sse(m.http_port, watch_path(ns), headers=[("Last-Event-ID", "abc")]).response()
    assert (st, body["error"]["code"]) == (400, "bad_last_event_id")
    r = requests.post(f"{m.url}{watch_path(ns)}", timeout=10)
    assert r.status_code == 405
    # the longest key is fine
    w, first = open_watch(m, "k" * 4096)
    assert first.event == "progress"
    w.close()


def test_cli_watch_prints_one_line_per_change(single, ns):
    m = single.m(1)
    w, first = open_watch(m, ns, prefix=True)
    r1 = put(m.url, ns + "a", "hello")
    r2 = txn(m.url, [{"put": {"key": ns + "b", "value": "x y"}}, {"delete": {"key": ns + "a"}}])
    read_changes(w, r2)
    binary = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    exe = single.binary
    out = subprocess.run([exe, "watch", ns, "--prefix", "--from-revision", str(r1),
                          "--count", "2", "--endpoint", m.http_addr],
                         capture_output=True, timeout=30, cwd=binary)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == [
        f"{r1} PUT {ns}a = hello", f"{r2} PUT {ns}b = x y", f"{r2} DELETE {ns}a"]
    out = subprocess.run([exe, "watch", ns, "--prefix", "--from-revision", str(r2),
                          "--count", "1", "-o", "json", "--endpoint", m.http_addr],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.decode().splitlines()]
    assert [(x["event"], x["id"]) for x in lines] == [("progress", r2 - 1), ("put", r2)]
    assert lines[1]["data"]["events"][1] == {"type": "delete", "key": ns + "a",
                                             "mod_revision": r2}
    out = subprocess.run([exe, "watch", "", "--endpoint", m.http_addr],
                         capture_output=True, timeout=30)
    assert out.returncode == 2  # usage: an empty key needs --prefix
    w.close()


# ---- three nodes ------------------------------------------------------------------------------


def test_watch_on_a_follower(make_cluster):
    c = make_cluster(3)
    lid = c.leader()
    fid = c.followers(lid)[0]
    f = c.m(fid)
    w, first = open_watch(f, "fw/", prefix=True)
    start = first.id + 1
    revs = [put(c.url(lid), f"fw/{i % 4}", str(i)) for i in range(30)]
    revs.append(txn(c.url(lid), [{"put": {"key": "fw/t1", "value": "1"}},
                                 {"put": {"key": "fw/t2", "value": "2"}}]))
    evs = read_changes(w, revs[-1])
    assert [e.id for e in evs] == revs
    assert len(evs[-1].data["events"]) == 2
    assert_matches_history(evs, f.url, "fw/", start, revs[-1])
    w.close()


def test_leader_killed_during_a_watch(make_cluster):
    c = make_cluster(3)
    lid = c.leader()
    fid = c.followers(lid)[0]
    f = c.m(fid)
    w, first = open_watch(f, "lk/", prefix=True)
    start = first.id + 1
    acked = []  # (rev, key, value) of every write answered 200
    s = requests.Session()
    for i in range(120):
        if i == 40:
            c.kill9(lid)
        key, value = f"lk/{i % 7}", f"w{i}"
        deadline = time.monotonic() + 20
        while True:
            targets = [m for m in c.running()]
            m = targets[i % len(targets)]
            try:
                r = s.put(f"{m.url}/v1/kv/{key}", data=value, timeout=3)
                if r.status_code == 200:
                    acked.append((r.json()["revision"], key, value))
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"write {i} kept failing"
            time.sleep(0.05)
    end = max(r for r, _, _ in acked)
    evs = read_changes(w, end, timeout=30)
    n = assert_matches_history([e for e in evs if e.id <= end], f.url, "lk/", start, end)
    assert n >= 120  # retried writes may have applied twice; none is lost
    stream = {(e.id, e.data["events"][0]["kv"]["key"], e.data["events"][0]["kv"]["value"])
              for e in evs}
    assert all(a in stream for a in acked), "an acknowledged write is missing from the stream"
    wait_until("the killed leader's successor", lambda: c.find_leader(), 15)
    w.close()


def metric(url, name):
    text = requests.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_snapshot_install_on_a_follower_keeps_the_stream_whole(make_cluster):
    """A follower that fell behind gets the leader's snapshot (the hub's reset): its
    watchers resume from their next revision through the new state's history."""
    c = make_cluster(3, extra_args=("--snapshot-every", "20"))
    lid = c.leader()
    fid = c.followers(lid)[0]
    f = c.m(fid)
    w, first = open_watch(f, "si/", prefix=True)
    start = first.id + 1
    before = put(c.url(lid), "si/a", "0")
    early = read_changes(w, before)
    assert [e.id for e in early] == [before]  # live before the pause
    c.pause(fid)
    s = requests.Session()
    revs = [put(c.url(lid), f"si/{i % 5}", str(i), session=s) for i in range(300)]
    c.resume(fid)
    wait_until("the follower to install a snapshot",
               lambda: metric(f.url, "conclave_snapshots_installed_total") >= 1, 20)
    revs.append(put(c.url(lid), "si/after", "x"))
    evs = early + read_changes(w, revs[-1], timeout=30)
    assert [e.id for e in evs] == [before] + revs
    assert_matches_history(evs, f.url, "si/", start, revs[-1])
    w.close()
