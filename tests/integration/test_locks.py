"""test_locks.py -- leases, locks and elections on real servers (docs/locks.md).

Covers: lease grant/keepalive/revoke and expiry deleting attached keys; a lease kept
alive across a leader kill does not expire (the new leader extends deadlines); lock
mutual exclusion, reentrancy, owner+token release, FIFO hand-off, wait timeouts,
expiry of a crashed holder's lease passing the lock on; and a fenced counter: many
clients increment a counter under the lock, writing through a compare on the fencing
token, while some "crash" (stop renewing mid-hold); the counter equals the successful
increments and accepted tokens only ever increase.
"""

import threading
import time

import requests

from cluster import wait_until

T = 10


def post(url, body=None):
    return requests.post(url, json=body, timeout=15)


def test_lease_lifecycle_and_expiry(make_cluster):
    c = make_cluster(1)
    u = c.url(1)
    r = post(u + "/v1/lease", {"ttl_ms": 1000})
    assert r.status_code == 200, r.text
    lid = r.json()["id"]
    assert requests.put(f"{u}/v1/kv/eph/a?lease={lid}", data="1", timeout=T).status_code == 200
    assert requests.put(f"{u}/v1/kv/eph/b?lease={lid}", data="2", timeout=T).status_code == 200
    r = requests.put(f"{u}/v1/kv/eph/c?lease=987654", data="3", timeout=T)
    assert r.status_code == 404 and r.json()["error"]["code"] == "lease_not_found"
    # keepalives hold it past its TTL
    for _ in range(8):
        r = post(f"{u}/v1/lease/{lid}/keepalive")
        assert r.status_code == 200 and r.json()["ttl_ms"] == 1000, r.text
        time.sleep(0.25)
    info = requests.get(f"{u}/v1/lease/{lid}", timeout=T).json()
    assert info["keys"] == 2 and 0 < info["remaining_ms"] <= 1000
    assert c.get(1, "eph/a").status_code == 200
    # then it expires: the leader commits EXPIRE and the keys go in one revision
    wait_until("the lease to expire", lambda: c.get(1, "eph/a").status_code == 404, 5)
    assert c.get(1, "eph/b").status_code == 404
    r = post(f"{u}/v1/lease/{lid}/keepalive")
    assert r.status_code in (404, 410), r.text
    # revoke
    lid2 = post(u + "/v1/lease", {"ttl_ms": 60000}).json()["id"]
    assert lid2 != lid
    requests.put(f"{u}/v1/kv/eph/d?lease={lid2}", data="4", timeout=T)
    r = requests.delete(f"{u}/v1/lease/{lid2}", timeout=T)
    assert r.status_code == 200 and r.json()["deleted_keys"] == 1, r.text
    assert c.get(1, "eph/d").status_code == 404
    # bad input
    assert post(u + "/v1/lease", {"ttl_ms": 10}).status_code == 400        # below the minimum
    assert post(u + "/v1/lease", {}).status_code == 400
    assert requests.post(u + "/v1/lease", data="{x", timeout=T).status_code == 400
    assert requests.get(u + "/v1/lease/abc", timeout=T).status_code == 404


def test_lease_survives_leader_failover(make_cluster):
    """etcd#9395: a new leader must not expire a lease the client kept alive."""
    c = make_cluster(3)
    lid = c.leader()
    r = post(c.url(lid) + "/v1/lease", {"ttl_ms": 2000})
    lease = r.json()["id"]
    requests.put(f"{c.url(lid)}/v1/kv/fo/key?lease={lease}", data="x", timeout=T)
    stop = threading.Event()
    failures = []

    def keep():
        while not stop.is_set():
            ok = False
            for m in (1, 2, 3):
                try:
                    r = post(f"{c.url(m)}/v1/lease/{lease}/keepalive")
                    if r.status_code == 200:
                        ok = True
                        break
                    if r.status_code in (404, 410):
                        failures.append(r.text)
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.3 if ok else 0.05)

    th = threading.Thread(target=keep)
    th.start()
    try:
        time.sleep(1)
        c.kill9(lid)
        new = c.leader(not_id=lid, timeout=15)
        time.sleep(3)  # longer than the TTL
        assert not failures, failures
        assert c.get(new, "fo/key").status_code == 200
    finally:
        stop.set()
        th.join(timeout=10)


def test_lock_semantics(make_cluster):
    c = make_cluster(1)
    u = c.url(1) + "/v1/lock/job"
    a = post(u, {"owner": "alice", "ttl_ms": 5000})
    assert a.status_code == 200, a.text
    ta, la = a.json()["token"], a.json()["lease"]
    r = post(u, {"owner": "alice", "lease": la})                  # reentrant: same token
    assert r.json()["token"] == ta and r.json()["hold_count"] == 2
    assert post(u, {"owner": "bob"}).status_code == 409           # busy, no wait
    # bob waits in the queue; alice releases twice (reentrant) and bob gets it
    got = {}

    def bob():
        got["r"] = post(u, {"owner": "bob", "wait_ms": 8000})
    th = threading.Thread(target=bob)
    th.start()
    wait_until("bob queued", lambda: len(requests.get(u, timeout=T).json()["queue"]) == 1, 5)
    r = requests.delete(u, json={"owner": "mallory", "token": ta}, timeout=T)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_holder"
    r = requests.delete(u, json={"owner": "alice", "token": ta + 1000}, timeout=T)
    assert r.status_code == 409
    assert requests.delete(u, json={"owner": "alice", "token": ta}, timeout=T).json()["hold_count"] == 1
    time.sleep(0.3)
    assert "r" not in got                                         # still held once
    assert requests.delete(u, json={"owner": "alice", "token": ta}, timeout=T).json()["released"]
    th.join(timeout=10)
    assert got["r"].status_code == 200, got["r"].text
    tb, lb = got["r"].json()["token"], got["r"].json()["lease"]
    assert tb > ta
    # a waiter that times out is told so and does not end up holding the lock
    r = post(u, {"owner": "carol", "wait_ms": 500})
    assert r.status_code == 409 and r.json()["error"]["code"] == "lock_timeout"
    # bob "crashes": he stops renewing; his lease expires and the next waiter gets it
    t0 = time.monotonic()
    r = post(u, {"owner": "dave", "wait_ms": 10000, "ttl_ms": 5000})
    assert r.status_code == 200, r.text
    assert r.json()["token"] > tb
    assert time.monotonic() - t0 > 2  # only after bob's 10 s default lease ran out
    info = requests.get(u, timeout=T).json()
    assert [h["owner"] for h in info["holders"]] == ["dave"] and info["queue"] == []
    # read-write lock and semaphore
    rw = c.url(1) + "/v1/lock/rw"
    r1 = post(rw, {"owner": "r1", "kind": "rw", "mode": "read"})
    r2 = post(rw, {"owner": "r2", "kind": "rw", "mode": "read"})
    assert r1.status_code == 200 and r2.status_code == 200
    assert post(rw, {"owner": "w", "kind": "rw", "mode": "write"}).status_code == 409
    sem = c.url(1) + "/v1/lock/sem"
    assert all(post(sem, {"owner": f"s{i}", "kind": "semaphore", "limit": 2}).status_code == 200
               for i in range(2))
    assert post(sem, {"owner": "s3", "kind": "semaphore", "limit": 2}).status_code == 409
    assert post(sem, {"owner": "s3", "kind": "mutex"}).status_code == 409  # kind mismatch
    # bad input
    assert post(u, {}).status_code == 400
    assert post(u, {"owner": "x", "wait_ms": 10 ** 9}).status_code == 400
    assert post(u, {"owner": "x", "lease": 999999}).status_code == 404
    assert requests.get(c.url(1) + "/v1/lock/nobody", timeout=T).status_code == 404


def test_election(make_cluster):
    c = make_cluster(1)
    e = c.url(1) + "/v1/election/svc"
    r = post(e + "/campaign", {"owner": "n1", "value": "10.0.0.1:80"})
    assert r.status_code == 200, r.text
    tok = r.json()["token"]
    assert requests.get(e, timeout=T).json()["leader"]["value"] == "10.0.0.1:80"
    r = post(e + "/proclaim", {"owner": "n1", "token": tok, "value": "10.0.0.9:80"})
    assert r.status_code == 200, r.text
    assert requests.get(e, timeout=T).json()["leader"]["value"] == "10.0.0.9:80"
    assert post(e + "/proclaim", {"owner": "n2", "token": tok, "value": "evil"}).status_code == 409
    got = {}
    th = threading.Thread(target=lambda: got.update(r=post(e + "/campaign", {
        "owner": "n2", "value": "10.0.0.2:80", "wait_ms": 8000})))
    th.start()
    wait_until("n2 queued", lambda: len(requests.get(e, timeout=T).json()["queue"]) == 1, 5)
    assert post(e + "/resign", {"owner": "n1", "token": tok}).status_code == 200
    th.join(timeout=10)
    assert got["r"].status_code == 200 and got["r"].json()["token"] > tok
    assert requests.get(e, timeout=T).json()["leader"]["owner"] == "n2"


def test_election_observe_streams_every_leader_change(make_cluster):
    """GET /v1/election/{name}/observe on a follower: the current leader first, then a
    new event for a proclaim, a hand-over on resign, and null when the leader's lease
    expires; a second observer sees the same sequence."""
    from test_watch import Sse
    c = make_cluster(3)
    lid = c.leader()
    fol = next(m for m in (1, 2, 3) if m != lid)
    e = c.url(lid) + "/v1/election/obs"
    # nobody leads yet: the stream opens with null
    w = Sse(c.m(fol).http_port, "/v1/election/obs/observe")
    first = w.next(timeout=15)
    assert first.event == "leader" and first.id == 1 and first.data["leader"] is None, first
    r = post(e + "/campaign", {"owner": "a", "value": "v1", "ttl_ms": 1500})
    assert r.status_code == 200, r.text
    tok_a, lease_a = r.json()["token"], r.json()["lease"]
    ev = w.next(timeout=10)
    assert ev.data["leader"]["owner"] == "a" and ev.data["leader"]["value"] == "v1"
    assert ev.data["leader"]["token"] == tok_a and ev.id == 2
    w2 = Sse(c.m(lid).http_port, "/v1/election/obs/observe")
    assert w2.next(timeout=10).data["leader"]["token"] == tok_a
    assert post(f"{c.url(lid)}/v1/lease/{lease_a}/keepalive").status_code == 200
    assert post(e + "/proclaim", {"owner": "a", "token": tok_a, "value": "v2"}).status_code == 200
    for s in (w, w2):
        ev = s.next(timeout=10)
        assert ev.data["leader"]["value"] == "v2" and ev.data["leader"]["token"] == tok_a, ev
    got = {}
    th = threading.Thread(target=lambda: got.update(r=post(e + "/campaign", {
        "owner": "b", "value": "vb", "ttl_ms": 1500, "wait_ms": 8000})))
    th.start()
    wait_until("b queued", lambda: len(requests.get(e, timeout=T).json()["queue"]) == 1, 5)
    assert post(e + "/resign", {"owner": "a", "token": tok_a}).status_code == 200
    th.join(timeout=10)
    tok_b = got["r"].json()["token"]
    assert tok_b > tok_a
    # resign hands over in the same entry: observers see b directly, never a gap
    for s in (w, w2):
        ev = s.next(timeout=10)
        assert ev.data["leader"]["owner"] == "b" and ev.data["leader"]["token"] == tok_b, ev
    # b stops renewing: its lease expires and the election has no leader
    for s in (w, w2):
        ev = s.next(timeout=15)
        assert ev.data["leader"] is None, ev
        s.close()
    # a leader without a value shows "" (not a missing field)
    r = post(c.url(lid) + "/v1/election/obs2/campaign", {"owner": "c", "value": ""})
    assert r.status_code == 200, r.text
    w3 = Sse(c.m(fol).http_port, "/v1/election/obs2/observe")
    ev = w3.next(timeout=10)
    assert ev.data["leader"]["owner"] == "c" and ev.data["leader"]["value"] == "", ev
    w3.close()
    # bad paths
    assert requests.get(c.url(lid) + "/v1/election/obs/observer", timeout=T).status_code == 404
    assert requests.post(c.url(lid) + "/v1/election/obs/observe", timeout=T).status_code == 404


def pad(n):
    return "%020d" % n


def test_fenced_counter_under_contention(make_cluster):
    """8 clients x up to 12 rounds: acquire (wait), increment a counter with a txn that
    also requires the stored fencing token to be older than ours, release. Every third
    client 'crashes' once while holding (never releases; its lease expires). The counter
    must equal the number of acknowledged increments and the stored token only grows."""
    c = make_cluster(3)
    lid = c.leader()
    url = c.url(lid)
    requests.put(f"{url}/v1/kv/fc/count", data="0", timeout=T)
    requests.put(f"{url}/v1/kv/fc/token", data=pad(0), timeout=T)
    acked = []
    tokens = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def client(i):
        s = requests.Session()
        crashed = False
        for rnd in range(12):
            if time.monotonic() > deadline:
                return
            r = s.post(f"{url}/v1/lock/counter", json={
                "owner": f"c{i}", "ttl_ms": 1500, "wait_ms": 8000}, timeout=15)
            if r.status_code != 200:
                continue
            tok = r.json()["token"]
            cur = s.get(f"{url}/v1/kv/fc/count", timeout=T).json()
            txn = {"compare": [
                {"key": "fc/token", "target": "value", "op": "<", "value": pad(tok)},
                {"key": "fc/count", "target": "mod", "op": "=", "value": cur["mod_revision"]}],
                "success": [{"put": {"key": "fc/count", "value": str(int(cur["value"]) + 1)}},
                            {"put": {"key": "fc/token", "value": pad(tok)}}],
                "failure": []}
            r = s.post(f"{url}/v1/txn", json=txn, timeout=T)
            if r.status_code == 200 and r.json()["succeeded"]:
                with lock:
                    acked.append((i, rnd))
                    tokens.append(tok)
            if i % 3 == 0 and not crashed and rnd == 2:
                crashed = True   # hold without releasing: the lease (1.5 s) must free it
                continue
            s.delete(f"{url}/v1/lock/counter", json={"owner": f"c{i}", "token": tok}, timeout=T)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=90)
    assert not any(th.is_alive() for th in threads)
    count = int(c.get(lid, "fc/count").json()["value"])
    assert count == len(acked) and count > 20, (count, len(acked))
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens


def _metric(c, name):
    text = requests.get(c.url(1) + "/metrics", timeout=T).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def test_queue_joins_are_lazy_and_keep_fifo(make_cluster):
    """A waiter that will certainly queue is proposed lazily (node_propose_lazy): it
    shares the next proposal's fdatasync, or goes alone after 2 ms. The queue must stay
    exactly FIFO, a waiter that gives up or hangs up must not stay queued, and the grant
    must go to the next waiter in the same step as the release."""
    c = make_cluster(1)
    u = c.url(1) + "/v1/lock/lz"
    lazy0 = _metric(c, "conclave_lazy_proposals_total")
    h = post(u, {"owner": "holder", "ttl_ms": 10000}).json()
    assert post(u, {"owner": "w-free", "wait_ms": 10}).status_code == 409  # timed out
    got, threads = {}, []

    def wait(owner):
        got[owner] = post(u, {"owner": owner, "wait_ms": 9000, "ttl_ms": 10000})
    for i in range(4):                       # queue w0..w3, one at a time
        th = threading.Thread(target=wait, args=(f"w{i}",))
        th.start()
        threads.append(th)
        wait_until(f"w{i} queued",
                   lambda: len(requests.get(u, timeout=T).json()["queue"]) == i + 1, 5)
    assert _metric(c, "conclave_lazy_proposals_total") - lazy0 >= 4
    assert _metric(c, "conclave_lazy_proposals_alone_total") >= 4  # nothing to ride with
    # A waiter that hangs up right after asking. Inside the lazy window the server drops
    # the entry unproposed (ASan catches a callback into the freed request if node_cancel
    # forgets it); after it, the ACQUIRE is in the log but not applied, and the CANCEL
    # that follows it must take the waiter out again (lock_api_forget: o->acquiring).
    # Its wait_ms is long, so only that can empty the queue in time.
    import socket
    lid = post(c.url(1) + "/v1/lease", {"ttl_ms": 10000}).json()["id"]
    body = b'{"owner":"quitter","wait_ms":9000,"lease":%d}' % lid  # no lease to wait for
    s = socket.create_connection(("127.0.0.1", int(u.split(":")[2].split("/")[0])))
    s.sendall(b"POST /v1/lock/lz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    s.close()
    # a waiter that gives up
    r = post(u, {"owner": "quick", "wait_ms": 50})
    assert r.status_code == 409 and r.json()["error"]["code"] == "lock_timeout"
    time.sleep(0.6)
    q = [w["owner"] for w in requests.get(u, timeout=T).json()["queue"]]
    assert q == ["w0", "w1", "w2", "w3"], q
    # hand the lock down the queue: each release grants the next waiter, in order
    token = h["token"]
    owners = ["holder", "w0", "w1", "w2", "w3"]
    for i, owner in enumerate(owners):
        r = requests.delete(u, json={"owner": owner, "token": token}, timeout=T)
        assert r.status_code == 200 and r.json()["released"], r.text
        if i + 1 < len(owners):
            nxt = owners[i + 1]
            threads[i].join(timeout=10)
            assert got[nxt].status_code == 200, got[nxt].text
            assert got[nxt].json()["token"] > token
            token = got[nxt].json()["token"]
    assert requests.get(u, timeout=T).status_code == 404  # nobody holds or waits
    # a join racing a release: the releasing proposal carries the join along
    h = post(u, {"owner": "holder", "ttl_ms": 10000}).json()
    lazy0 = _metric(c, "conclave_lazy_proposals_total")
    th = threading.Thread(target=wait, args=("racer",))
    th.start()
    wait_until("racer asked", lambda: _metric(c, "conclave_lazy_proposals_total") > lazy0
               or requests.get(u, timeout=T).json()["queue"], 5)
    assert requests.delete(u, json={"owner": "holder", "token": h["token"]},
                           timeout=T).json()["released"]
    th.join(timeout=10)
    assert got["racer"].status_code == 200 and got["racer"].json()["token"] > h["token"]
