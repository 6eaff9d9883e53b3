"""test_resp_expiry.py -- Redis key expiry over RESP on Raft-replicated key-private leases
(issue #6; docs/resp.md "Expiry"), against real `conclave serve` processes, driven by
python3-redis, redis-cli and a real redis-server for reply-for-reply comparison.

Covered: every expiry form (SET EX/PX/EXAT/PXAT/KEEPTTL, SETEX, PSETEX, GETEX, EXPIRE,
PEXPIRE, EXPIREAT, PEXPIREAT with NX/XX/GT/LT, TTL, PTTL, PERSIST, EXPIRETIME, PEXPIRETIME) with
Redis's replies and errors, a differential run against redis-server, which writes keep
or drop a TTL (RENAME carries it), keys really expire (not before their TTL, soon after),
pipelines and MULTI/EXEC with SET PX, one keyspace with HTTP (the lease shows, an HTTP
delete revokes it), the lease table stays bounded over 1000 SET PX / SET / DEL cycles,
redis-cli, expiry replicated to every member, and the notes' lock pattern (SET NX PX +
owner-checked delete) across a leader kill: still held after failover, gone afterwards.

Every socket has a timeout and every wait a deadline.
"""

import random
import subprocess
import time

import pytest
import redis
import requests

from cluster import wait_until
from test_resp import T, rc, redis_cli, run_both, start_redis_server

DAY_MS = 24 * 3600 * 1000
LEASE_TTL_MS_MIN = 500  # sm/lease.h: shorter TTLs are rounded up to it
TICK_SLACK_S = 3.0  # expiry bound in these tests: TTL + election extension + ticks + load


@pytest.fixture
def r(single):
    c = rc(single.m(1))
    yield c
    c.close()


def lease_ids(url):
    j = requests.get(f"{url}/v1/lease", timeout=T).json()
    assert j["more"] is False
    return set(j["leases"])


# ---- every form --------------------------------------------------------------------------


def test_set_forms(r, ns):
    k = ns + "k"
    assert r.set(k, "v", ex=100) is True and r.ttl(k) == 100
    assert 99000 < r.pttl(k) <= 100000
    assert r.set(k, "v", px=50000) is True and 49 <= r.ttl(k) <= 50
    now = int(time.time())
    assert r.set(k, "v", exat=now + 1000) is True
    assert r.execute_command("EXPIRETIME", k) in (now + 1000, now + 999, now + 1001)
    assert r.set(k, "v", pxat=(now + 2000) * 1000) is True
    assert abs(r.execute_command("EXPIRETIME", k) - (now + 2000)) <= 1
    assert abs(r.execute_command("PEXPIRETIME", k) - (now + 2000) * 1000) <= 1000
    assert r.execute_command("PEXPIRETIME", ns + "missing") == -2
    assert r.set(k, "w", keepttl=True) is True and r.ttl(k) > 1900  # KEEPTTL keeps it
    assert r.get(k) == b"w"
    assert r.set(k, "x") is True and r.ttl(k) == -1  # a plain SET drops it
    assert r.set(ns + "new", "v", keepttl=True) is True and r.ttl(ns + "new") == -1
    # EXAT in the past: OK, and the key is gone (Redis sets and deletes at once)
    assert r.set(k, "v", exat=1) is True and r.exists(k) == 0
    assert r.setex(k, 30, "s") is True and r.ttl(k) == 30 and r.get(k) == b"s"
    assert r.psetex(k, 40000, "p") is True and 39 <= r.ttl(k) <= 40
    # NX / XX / GET with a TTL, condition evaluated with the write
    assert r.set(k, "n", nx=True, ex=10) is None and r.get(k) == b"p"
    assert r.set(k, "xx", xx=True, ex=10) is True and r.ttl(k) == 10
    assert r.set(k, "g", ex=20, get=True) == b"xx" and r.ttl(k) == 20
    assert r.set(ns + "nx", "1", nx=True, px=20000) is True and r.ttl(ns + "nx") == 20
    # GETEX
    assert r.getex(k, ex=77) == b"g" and r.ttl(k) == 77
    assert r.getex(k, px=66000) == b"g" and 65 <= r.ttl(k) <= 66
    assert r.getex(k, exat=now + 3000) == b"g"
    assert abs(r.execute_command("EXPIRETIME", k) - (now + 3000)) <= 1
    assert r.getex(k, persist=True) == b"g" and r.ttl(k) == -1
    assert r.getex(k) == b"g" and r.ttl(k) == -1
    assert r.getex(ns + "missing", ex=5) is None
    assert r.getex(k, pxat=1000) == b"g" and r.exists(k) == 0  # a past time deletes
    # short TTLs are rounded up to the lease minimum: a key lives at least its TTL
    assert r.set(k, "v", px=100) is True and 0 < r.pttl(k) <= LEASE_TTL_MS_MIN


def test_writes_keep_or_drop_ttl(r, ns):
    k, k2 = ns + "a", ns + "b"
    r.set(k, "5", ex=100)
    assert r.incr(k) == 6 and r.ttl(k) == 100  # INCR, APPEND, SETRANGE keep it (Redis)
    assert r.append(k, "0") == 2 and r.ttl(k) == 100
    assert r.setrange(k, 0, "7") == 2 and r.ttl(k) == 100
    assert r.rename(k, k2) is True and r.ttl(k2) == 100 and r.exists(k) == 0  # RENAME carries
    r.set(k, "other", ex=300)
    assert r.rename(k2, k) is True and r.ttl(k) == 100  # the target's own TTL is replaced
    r.set(k2, "plain")
    r.set(k, "x", ex=100)
    assert r.rename(k, k2) is True and r.ttl(k2) == 100
    r.set(k, "t", ex=100)
    assert r.rename(k2, k) is True and r.ttl(k) == 100  # and RENAME of a TTL key onto one
    assert r.getset(k, "g") == b"x" and r.ttl(k) == -1  # GETSET drops it
    r.set(k, "m", ex=100)
    r.mset({k: "m2"})
    assert r.ttl(k) == -1  # MSET drops it
    r.set(k, "d", ex=100)
    assert r.delete(k) == 1 and r.ttl(k) == -2


def test_expire_family(r, ns):
    k = ns + "k"
    assert r.expire(ns + "missing", 10) is False
    r.set(k, "v")
    assert r.expire(k, 100, xx=True) is False and r.ttl(k) == -1
    assert r.expire(k, 100, gt=True) is False  # no TTL counts as infinite
    assert r.expire(k, 100, nx=True) is True and r.ttl(k) == 100
    assert r.expire(k, 200, nx=True) is False and r.ttl(k) == 100
    assert r.expire(k, 50, gt=True) is False
    assert r.expire(k, 200, gt=True) is True and r.ttl(k) == 200
    assert r.expire(k, 300, lt=True) is False
    assert r.expire(k, 150, lt=True) is True and r.ttl(k) == 150
    assert r.expire(k, 160, xx=True, gt=True) is True and r.ttl(k) == 160
    assert r.persist(k) is True and r.persist(k) is False and r.ttl(k) == -1
    assert r.expire(k, 150, lt=True) is True  # no TTL counts as infinite
    assert r.pexpire(k, 90000) is True and 89 <= r.ttl(k) <= 90
    now = int(time.time())
    assert r.expireat(k, now + 500) is True
    assert abs(r.execute_command("EXPIRETIME", k) - (now + 500)) <= 1
    assert r.pexpireat(k, (now + 600) * 1000) is True
    assert abs(r.execute_command("EXPIRETIME", k) - (now + 600)) <= 1
    # a non-positive or past time deletes the key and answers 1
    assert r.expire(k, 0) is True and r.exists(k) == 0
    r.set(k, "v")
    assert r.pexpire(k, -5) is True and r.exists(k) == 0
    r.set(k, "v")
    assert r.expireat(k, 1) is True and r.exists(k) == 0
    r.set(k, "v", ex=100)
    assert r.expire(k, -1, gt=True) is False and r.exists(k) == 1  # conditions first
    assert r.pexpireat(k, 5) is True and r.exists(k) == 0
    # errors
    r.set(k, "v")
    for args, msg in [
        (("EXPIRE", k, "abc"), "value is not an integer or out of range"),
        (("EXPIRE", k, 10, "FOO"), "Unsupported option FOO"),
        (("EXPIRE", k, 10, "GT", "LT"), "GT and LT options at the same time are not compatible"),
        (("EXPIRE", k, 10, "NX", "GT"),
         "NX and XX, GT or LT options at the same time are not compatible"),
        (("EXPIRE", k, 9223372036854775807), "invalid expire time in 'expire' command"),
        (("EXPIRE", k, 40 * 86400),
         "invalid expire time in 'expire' command (Conclave keys expire within 30 days)"),
        (("SET", k, "v", "EX", 40 * 86400),
         "invalid expire time in 'set' command (Conclave keys expire within 30 days)"),
    ]:
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command(*args)
        assert str(e.value) == msg, args
    assert r.ttl(k) == -1 and r.get(k) == b"v"  # refused commands changed nothing
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("TTL")


def test_errors_match_redis_server(r, ns, tmp_path):
    """Argument errors of every expiry command, reply for reply against redis-server."""
    proc, ref = start_redis_server(tmp_path)
    try:
        k = ns + "e"
        for c in (r, ref):
            c.set(k, "v")
        cases = [
            ("SET", k, "v", "EX", 0), ("SET", k, "v", "EX", -1), ("SET", k, "v", "PX", 0),
            ("SET", k, "v", "EX", "abc"), ("SET", k, "v", "EX", 10, "PX", 10),
            ("SET", k, "v", "KEEPTTL", "EX", 10), ("SET", k, "v", "EXAT", 0),
            ("SET", k, "v", "EX", 9223372036854775807), ("SET", k, "v", "EX"),
            ("SETEX", k, 0, "v"), ("SETEX", k, -3, "v"), ("SETEX", k, "x", "v"),
            ("PSETEX", k, 0, "v"), ("PSETEX", k, "1.5", "v"), ("SETEX", k, 10),
            ("GETEX", k, "EX", 0), ("GETEX", k, "PERSIST", "EX", 10), ("GETEX", k, "FOO"),
            ("GETEX", k, "EX", "x"), ("GETEX", k, "KEEPTTL"),
            ("EXPIRE", k, "x"), ("EXPIRE", k, 10, "BAR"), ("EXPIRE", k, 10, "NX", "XX"),
            ("EXPIRE", k, 10, "LT", "GT"), ("PEXPIRE", k, 10, "NX", "LT"),
            ("EXPIREAT", k, "x"), ("PEXPIREAT", k, 1, "ZZ"), ("TTL", k, k), ("PTTL",),
            ("PERSIST", k, k), ("EXPIRETIME",), ("EXPIRE", k),
        ]
        for args in cases:
            a, b = run_both(r, ref, args)
            assert a == b, f"{args!r}: conclave {a!r}, redis {b!r}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_differential_against_redis_server(r, ns, tmp_path):
    """Random expiry and string commands on a few keys: the same replies as redis-server.
    TTLs are whole seconds well above the lease minimum, so EXPIRETIME rounds alike; a
    positive TTL may differ by one second (each server rounds at its own moment)."""
    proc, ref = start_redis_server(tmp_path)
    try:
        rnd = random.Random(66)
        keys = [f"{ns}d{i}" for i in range(4)]
        for k in keys:
            r.delete(k)
        now = int(time.time())

        def one():
            k, k2 = rnd.choice(keys), rnd.choice(keys)
            v = rnd.choice([b"1", b"abc", b""])
            s = rnd.choice([-1, 0, 5, 100, 3000])
            cond = rnd.choice([[], ["NX"], ["XX"], ["GT"], ["LT"], ["XX", "GT"], ["XX", "LT"]])
            return rnd.choice([
                ("SET", k, v), ("SET", k, v, "EX", abs(s) + 1), ("SET", k, v, "PX", 90000),
                ("SET", k, v, "NX", "EX", 50), ("SET", k, v, "XX", "PX", 70000),
                ("SET", k, v, "KEEPTTL"), ("SET", k, v, "XX", "KEEPTTL", "GET"),
                ("SET", k, v, "EXAT", rnd.choice([1, now + 4000])),
                ("SETEX", k, abs(s) + 1, v), ("PSETEX", k, 120000, v),
                ("GETEX", k), ("GETEX", k, "EX", 40), ("GETEX", k, "PERSIST"),
                ("GETEX", k, "PXAT", rnd.choice([1000, (now + 5000) * 1000])),
                ("EXPIRE", k, s, *cond), ("PEXPIRE", k, s * 1000, *cond),
                ("EXPIREAT", k, rnd.choice([0, now - 10, now + 7000]), *cond),
                ("PEXPIREAT", k, rnd.choice([1, (now + 8000) * 1000]), *cond),
                ("TTL", k), ("TTL", k), ("EXPIRETIME", k), ("PERSIST", k), ("PERSIST", k),
                ("INCR", k), ("APPEND", k, v), ("RENAME", k, k2), ("DEL", k), ("GET", k),
                ("GETSET", k, v), ("MSET", k, v, k2, v), ("EXISTS", k, k2),
            ])

        for i in range(800):
            args = one()
            a, b = run_both(r, ref, args)
            if args[0] == "TTL" and a[0] == b[0] == "ok" and a[1] > 0 and b[1] > 0:
                # An absolute deadline (EXPIREAT now+7000) is rounded to seconds at the
                # moment each server answers; the two answers may straddle a boundary.
                assert abs(a[1] - b[1]) <= 1, f"step {i}: {args!r}: conclave {a!r}, redis {b!r}"
                continue
            assert a == b, f"step {i}: {args!r}: conclave {a!r}, redis {b!r}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- keys really expire --------------------------------------------------------------------


def test_keys_expire_not_before_their_ttl(single, r, ns):
    url = single.url(1)
    base = lease_ids(url)
    keys = [f"{ns}x{i}" for i in range(20)]
    t0 = time.monotonic()
    for k in keys:
        assert r.set(k, "v", px=1500) is True
    time.sleep(1.0)
    # every key is still there before its TTL ran out
    assert time.monotonic() - t0 < 1.45 and r.exists(*keys) == len(keys)
    wait_until("keys to expire", lambda: r.exists(*keys) == 0, 1.5 + TICK_SLACK_S)
    assert not lease_ids(url) - base  # their leases went with them
    # an HTTP reader sees them gone too (one keyspace)
    assert requests.get(f"{url}/v1/kv/{keys[0]}", timeout=T).status_code == 404


def test_pipeline_with_expiry(r, ns):
    p = r.pipeline(transaction=False)
    for i in range(200):
        k = f"{ns}p{i}"
        p.set(k, i, px=60000)
        p.pttl(k)
        p.expire(k, 100 + i, gt=True)
        p.ttl(k)
        p.persist(k)
        p.ttl(k)
        p.set(k, i, nx=True, ex=5)
        p.getex(k, ex=30)
        p.ttl(k)
    out = p.execute()
    assert len(out) == 9 * 200
    for i in range(200):
        s, pt, ex, t1, pe, t2, nx, gx, t3 = out[9 * i:9 * i + 9]
        assert s is True and 59000 < pt <= 60000 and ex is True and t1 == 100 + i
        assert pe is True and t2 == -1 and nx is None and gx == str(i).encode() and t3 == 30


def test_multi_exec_with_set_px(r, ns):
    a, b = ns + "a", ns + "b"
    r.set(b, "old", ex=500)
    p = r.pipeline(transaction=True)
    p.set(a, "1", px=5000)
    p.pttl(a)
    p.set(b, "2", nx=True, ex=10)  # b exists: not set, keeps its TTL
    p.ttl(b)
    p.incr(a)  # keeps the pending TTL
    p.expire(b, 20, xx=True)
    p.ttl(b)
    assert p.execute() == [True, 5000, None, 500, 2, True, 20]
    assert 0 < r.pttl(a) <= 5000 and r.get(a) == b"2" and r.ttl(b) == 20
    # WATCH still aborts when the watched key's TTL changes (a write)
    c2 = rc_like(r)
    with r.pipeline(transaction=True) as w:
        w.watch(a)
        c2.expire(a, 100)
        w.multi()
        w.set(a, "x", px=9000)
        with pytest.raises(redis.WatchError):
            w.execute()
    assert r.get(a) == b"2" and r.ttl(a) == 100
    c2.close()


def rc_like(c):
    kw = c.connection_pool.connection_kwargs
    return redis.Redis(host=kw["host"], port=kw["port"], socket_timeout=T)


# ---- one keyspace, no leaks ------------------------------------------------------------------


def test_one_keyspace_lease_visible_over_http(single, r, ns):
    url = single.url(1)
    k = ns + "h"
    base = lease_ids(url)
    r.set(k, "v", px=60000)
    kv = requests.get(f"{url}/v1/kv/{k}", timeout=T).json()
    lease = kv["lease"]
    assert lease > 0
    info = requests.get(f"{url}/v1/lease/{lease}", timeout=T).json()
    assert info["ttl_ms"] == 60000 and info["keys"] == 1 and 0 < info["remaining_ms"] <= 60000
    assert lease_ids(url) - base == {lease}
    # an HTTP delete of the key revokes its private lease in the same apply
    assert requests.delete(f"{url}/v1/kv/{k}", timeout=T).status_code == 200
    assert requests.get(f"{url}/v1/lease/{lease}", timeout=T).status_code == 404
    assert not lease_ids(url) - base
    # an HTTP-granted lease shared by keys is never revoked by RESP writes
    g = requests.post(f"{url}/v1/lease", json={"ttl_ms": 60000}, timeout=T).json()
    pub = g["id"]
    for name in ("s1", "s2"):
        assert requests.put(f"{url}/v1/kv/{ns}{name}", params={"lease": pub}, data=b"x",
                            timeout=T).status_code == 200
    assert 0 < r.pttl(ns + "s1") <= 60000
    r.set(ns + "s1", "plain")
    r.delete(ns + "s2")
    assert requests.get(f"{url}/v1/lease/{pub}", timeout=T).status_code == 200
    assert requests.delete(f"{url}/v1/lease/{pub}", timeout=T).status_code == 200


def test_lease_count_bounded_over_1000_cycles(single, r, ns):
    url = single.url(1)
    base = lease_ids(url)  # leases of earlier tests may expire meanwhile: compare sets
    most = 0
    for rnd in range(10):
        p = r.pipeline(transaction=False)
        for i in range(100):
            k = f"{ns}c{i % 10}"
            p.set(k, "a", px=30000)
            p.set(k, "b", px=30000)  # a new TTL: the first lease goes
            p.set(k, "c")  # no TTL: the second goes
            p.set(k, "d", nx=True, px=30000)  # fails: no lease
            p.delete(k)
            p.set(k, "e", ex=30)
            p.delete(k)  # and its lease with it
        assert all(x is not None for x in p.execute()[:2])
        most = max(most, len(lease_ids(url) - base))
    assert most == 0
    assert not lease_ids(url) - base


def test_redis_cli(single, ns):
    port = single.m(1).resp_port
    k = ns + "cli"
    assert redis_cli(port, "SET", k, "v", "NX", "PX", "30000").strip() == "OK"
    assert redis_cli(port, "SET", k, "v", "NX", "PX", "30000").strip() == ""
    assert 0 < int(redis_cli(port, "PTTL", k)) <= 30000
    assert redis_cli(port, "EXPIRE", k, "100").strip() == "1"
    assert redis_cli(port, "TTL", k).strip() == "100"
    assert redis_cli(port, "PERSIST", k).strip() == "1"
    assert redis_cli(port, "TTL", k, resp3=True).strip() == "-1"


# ---- replication and failover ------------------------------------------------------------------


def test_expiry_replicated_to_every_member(make_cluster):
    c = make_cluster(3)
    lid = c.leader()
    lead = rc(c.m(lid))
    assert lead.set("rep", "v", px=1500) is True
    readers = []
    for mid in c.followers(lid):
        f = rc(c.m(mid))
        assert f.readonly() is True  # serializable: each member's own applied state
        wait_until(f"n{mid} to apply the write", lambda f=f: f.get("rep") == b"v", 10)
        ttl = f.pttl("rep")
        assert 0 < ttl <= 1500  # a follower answers the lease's TTL, an upper bound
        readers.append(f)
    for f in readers + [lead]:
        wait_until("the key to expire on every member", lambda f=f: f.exists("rep") == 0,
                   1.5 + TICK_SLACK_S + 5)
    assert requests.get(f"{c.url(lid)}/v1/lease", timeout=T).json()["count"] == 0


def test_lock_pattern_across_leader_kill(make_cluster):
    """The notes' Redis lock: SET k owner NX PX 3000, then an owner-checked delete. With
    leases replicated by Raft a leader kill does not lose the lock: it is still held on
    the new leader and expires there afterwards."""
    c = make_cluster(3)
    lid = c.leader()
    a = rc(c.m(lid))
    ttl_ms = 3000
    t0 = time.monotonic()
    assert a.set("lock", "owner-a", nx=True, px=ttl_ms) is True
    # wait until a follower applied it, so the kill cannot lose an acknowledged write
    fol = rc(c.m(c.followers(lid)[0]))
    fol.readonly()
    wait_until("the lock to replicate", lambda: fol.get("lock") == b"owner-a", 10)
    c.kill9(lid)
    new = c.leader(not_id=lid, among=[m.id for m in c.running()])
    b = rc(c.m(new))
    # still held after failover, and only its owner may release it
    held = b.get("lock") == b"owner-a"
    assert held or time.monotonic() - t0 > ttl_ms / 1000.0, "lock lost in the failover"
    assert b.set("lock", "owner-b", nx=True, px=ttl_ms) is None
    assert b.execute_command("DELEX", "lock", "IFEQ", "owner-b") == 0
    assert 0 < b.pttl("lock") <= ttl_ms + 1000  # the new leader restarted its countdown
    # ... and it expires on the new leader: nobody renewed it
    wait_until("the lock to expire after failover", lambda: b.get("lock") is None,
               ttl_ms / 1000.0 + TICK_SLACK_S + 5)
    assert time.monotonic() - t0 >= ttl_ms / 1000.0  # never before its TTL
    # the next owner takes it and releases it with the owner check
    assert b.set("lock", "owner-b", nx=True, px=ttl_ms) is True
    assert b.execute_command("DELEX", "lock", "IFEQ", "owner-a") == 0
    assert b.execute_command("DELEX", "lock", "IFEQ", "owner-b") == 1
    assert b.get("lock") is None
    assert requests.get(f"{c.url(new)}/v1/lease", timeout=T).json()["count"] == 0
    # the old leader comes back as a follower and agrees
    c.restart(lid)
    old = rc(c.m(lid))
    old.readonly()
    wait_until("the old leader to catch up", lambda: old.exists("lock") == 0, 20)
