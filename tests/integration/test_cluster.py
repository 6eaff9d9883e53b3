"""test_cluster.py -- three real `conclave serve` processes on loopback: forwarding,
linearizable and serializable reads, leader crash, leader transfer, a paused leader, and
concurrent writers across a leader kill.

Elections use --tick-ms 50 (election timeout 10 ticks = 500 ms, randomised upwards), so
"a new leader within a few seconds" is checked with a bound well above that but far
below anything a human would call slow.
"""

import threading
import time

import requests

from cluster import wait_until

T = 10                 # seconds: bound on one HTTP request
FAILOVER_S = 6.0       # a new leader after a crash/pause, ASan build on a busy box included


def put_ok(c, mid, key, value):
    r = requests.put(f"{c.url(mid)}/v1/kv/{key}", data=value, timeout=T)
    assert r.status_code == 200, f"PUT {key} via n{mid}: {r.status_code} {r.text}"
    return r.json()


def read(c, mid, key, serializable=False):
    params = {"raw": "true"}
    if serializable:
        params["consistency"] = "serializable"
    return requests.get(f"{c.url(mid)}/v1/kv/{key}", params=params, timeout=T)


def eventually_reads(c, mid, key, value, timeout=15, serializable=True):
    def ok():
        r = read(c, mid, key, serializable)
        return r.status_code == 200 and r.content == value.encode()
    wait_until(f"n{mid} to read {key}={value}", ok, timeout, interval=0.05)


def test_writes_and_reads_through_any_member(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    for i in range(30):
        w = 1 + i % 3
        rd = 1 + (i + 1) % 3
        put_ok(c, w, f"k/{i}", f"v{i}")
        r = read(c, rd, f"k/{i}")  # linearizable on another member, right after the ack
        assert r.status_code == 200 and r.content == f"v{i}".encode(), (i, w, rd, r.text)
        # one register overwritten through every member: each read sees the latest ack
        put_ok(c, w, "reg", f"r{i}")
        for m in (1, 2, 3):
            r = read(c, m, "reg")
            assert r.content == f"r{i}".encode(), f"n{m} read {r.content!r} after r{i} acked"
    # followers forwarded; the leader never changed while doing it
    assert c.find_leader() == leader
    # the full JSON and a prefix scan agree across members (linearizable)
    scans = [requests.get(f"{c.url(m)}/v1/kv/k/", params={"prefix": "true"}, timeout=T).json()
             for m in (1, 2, 3)]
    assert all(s["count"] == 30 for s in scans), [s["count"] for s in scans]
    assert scans[0]["kvs"] == scans[1]["kvs"] == scans[2]["kvs"]


def test_serializable_reads_on_followers(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    put_ok(c, leader, "s", "one")
    r = read(c, leader, "s", serializable=True)
    assert r.status_code == 200 and r.content == b"one"
    for f in c.followers(leader):
        eventually_reads(c, f, "s", "one", timeout=5)
    # members list is the same everywhere
    for m in (1, 2, 3):
        members = requests.get(f"{c.url(m)}/v1/cluster/members", timeout=T).json()["members"]
        assert sorted(x["id"] for x in members) == [1, 2, 3]
        assert {x["http_addr"] for x in members} == {c.m(i).http_addr for i in (1, 2, 3)}


def test_leader_crash_failover_and_catch_up(make_cluster):
    c = make_cluster(3)
    old = c.leader()
    for i in range(10):
        put_ok(c, 1 + i % 3, f"before/{i}", f"b{i}")
    term_before = c.status(old)["term"]

    c.kill9(old)
    t0 = time.monotonic()
    new = c.leader(timeout=15, not_id=old)
    elapsed = time.monotonic() - t0
    assert elapsed < FAILOVER_S, f"new leader n{new} only after {elapsed:.1f}s"
    assert c.status(new)["term"] > term_before

    # writes continue, through the new leader and through the other follower
    other = [m for m in (1, 2, 3) if m not in (old, new)][0]
    for i in range(10):
        put_ok(c, new if i % 2 else other, f"after/{i}", f"a{i}")
    for i in range(10):
        assert read(c, other, f"before/{i}").content == f"b{i}".encode()

    # the old leader comes back as a follower and catches up
    c.restart(old, wait=False)
    eventually_reads(c, old, "after/9", "a9", timeout=15)
    eventually_reads(c, old, "before/0", "b0", timeout=5)
    wait_until(f"n{old} to follow the current leader", lambda: follows(c, old), 10)
    put_ok(c, old, "via-old", "x")  # and it forwards writes again
    eventually_reads(c, new, "via-old", "x", timeout=5, serializable=False)


def follows(c, mid):
    """mid's status if it is a follower of the leader the cluster agrees on, in its term."""
    s = c.status(mid)
    lid = c.find_leader()
    if s["role"] == "follower" and lid and lid != mid and s["leader_id"] == lid and \
            s["term"] == c.status(lid)["term"]:
        return s
    return None


def test_leader_transfer(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    target = c.followers(leader)[0]
    r = requests.post(f"{c.url(leader)}/v1/cluster/leader/transfer", json={"to": target},
                      timeout=T)
    assert r.status_code == 202, r.text
    assert r.json()["transferring_to"] == target
    got = c.leader(timeout=FAILOVER_S, not_id=leader)
    assert got == target, f"asked for n{target}, got n{got}"
    put_ok(c, leader, "after-transfer", "1")  # the old leader now forwards

    # asked of a follower, without a target: forwarded, moves to some other member
    follower = c.followers(target)[0]
    r = requests.post(f"{c.url(follower)}/v1/cluster/leader/transfer", timeout=T)
    assert r.status_code == 202, r.text
    moved = c.leader(timeout=FAILOVER_S, not_id=target)
    assert moved == r.json()["transferring_to"]
    # a transfer to a member that does not exist is refused, nothing moves
    r = requests.post(f"{c.url(moved)}/v1/cluster/leader/transfer", json={"to": 99}, timeout=T)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] == "transfer_failed"
    assert c.leader() == moved
    assert read(c, moved, "after-transfer").content == b"1"


def test_paused_leader_rejoins_as_follower(make_cluster):
    c = make_cluster(3)
    old = c.leader()
    put_ok(c, old, "p", "0")
    others = c.followers(old)

    c.pause(old)  # SIGSTOP: no crash, no closed sockets, just silence
    t0 = time.monotonic()
    new = c.leader(timeout=15, among=others)
    assert new in others and time.monotonic() - t0 < FAILOVER_S
    for i, m in enumerate(others * 3):
        put_ok(c, m, "p", str(i + 1))
    last = str(len(others) * 3)
    time.sleep(0.6)  # stay paused well past an election timeout
    c.resume(old)

    wait_until(f"n{old} to rejoin as a follower", lambda: follows(c, old), 10)
    eventually_reads(c, old, "p", last, timeout=10)
    put_ok(c, old, "p", "after")
    for m in (1, 2, 3):
        assert read(c, m, "p").content == b"after"


def test_concurrent_writers_across_leader_kill(make_cluster):
    """4 threads x 100 writes to distinct keys, round-robin over all members, with the
    leader killed once in the middle. A client retries a write that failed (error status
    or timeout: it may or may not have applied) for up to retry_s. Every acknowledged
    write must be readable afterwards; writes that finished before the kill must have
    been acknowledged at the first try; and writes keep being acknowledged after it."""
    c = make_cluster(3)
    victim = c.leader()
    n_threads, per_thread, retry_s = 4, 100, 10.0
    deadline = time.monotonic() + 60
    lock = threading.Lock()
    log = []  # (thread, i, t_start, t_end, first outcome, final outcome, tries)
    killed_at = [None]

    give_up = threading.Event()  # a write failed before any fault: fail fast

    def writer(t):
        sessions = {m: requests.Session() for m in (1, 2, 3)}
        for i in range(per_thread):
            if time.monotonic() > deadline or give_up.is_set():
                return
            t0 = time.monotonic()
            first = out = None
            tries = 0
            while tries < 200 and time.monotonic() - t0 < retry_s:
                m = 1 + (t + i + tries) % 3
                if killed_at[0] is not None and m == victim:
                    m = 1 + (m % 3)  # a client stops using the dead address
                tries += 1
                try:
                    r = sessions[m].put(f"{c.url(m)}/v1/kv/cw/{t}/{i}", data=f"{t}-{i}",
                                        timeout=12)
                    out = r.status_code
                except requests.RequestException as e:
                    out = type(e).__name__
                first = first or out
                if out == 200:
                    break
                if killed_at[0] is None:
                    give_up.set()
                    break
                time.sleep(0.05)
            with lock:
                log.append((t, i, t0, time.monotonic(), first, out, tries))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    wait_until("100 writes done", lambda: len(log) >= 100 or give_up.is_set(), 40,
               interval=0.02)
    if give_up.is_set():
        for th in threads:
            th.join(timeout=30)
        bad = [e for e in log if e[4] != 200]
        raise AssertionError(f"writes failed with no fault injected yet: {bad[:5]}")
    killed_at[0] = time.monotonic()
    c.kill9(victim)
    c.leader(timeout=15, not_id=victim)
    for th in threads:
        th.join(timeout=max(1, deadline - time.monotonic() + 15))
    assert not any(th.is_alive() for th in threads), "writers did not finish in time"
    assert len(log) == n_threads * per_thread

    before = [e for e in log if e[3] < killed_at[0]]
    assert len(before) >= 100
    bad_before = [e for e in before if e[4] != 200]
    assert not bad_before, f"writes failed with no fault injected yet: {bad_before[:5]}"
    after = [e for e in log if e[2] > killed_at[0]]
    assert len(after) >= 100, f"only {len(after)} writes started after the kill"
    failed = [e for e in log if e[5] != 200]
    assert not failed, f"{len(failed)} writes not acknowledged within {retry_s}s of " \
                       f"retries across the failover: {failed[:5]}"
    retried = sum(1 for e in log if e[6] > 1)
    print(f"{retried} writes needed a retry across the leader kill")

    acked = {f"cw/{t}/{i}": f"{t}-{i}" for (t, i, a, b, f, out, n) in log if out == 200}
    c.restart(victim)
    leader = c.leader()
    for m in (leader, victim):
        params = {"prefix": "true", "limit": "1000"}
        if m == victim:
            wait_until(f"n{victim} to catch up", lambda: c.status(victim)["applied_index"] >=
                       c.status(leader)["commit_index"], 15)
            params["consistency"] = "serializable"
        j = requests.get(f"{c.url(m)}/v1/kv/cw/", params=params, timeout=T).json()
        got = {kv["key"]: kv["value"] for kv in j["kvs"]}
        lost = [k for k, v in acked.items() if got.get(k) != v]
        assert not lost, f"n{m}: {len(lost)} of {len(acked)} acknowledged writes missing, " \
                         f"e.g. {lost[:5]}"
        assert len(got) == n_threads * per_thread, f"n{m} has {len(got)} keys"
