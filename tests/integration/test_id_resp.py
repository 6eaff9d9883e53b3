"""test_id_resp.py -- the ID service over RESP (ID.NEXT, ID.SNOWFLAKE) and the lazy
snowflake worker (docs/id.md, docs/resp.md "IDs").

Real `conclave serve` processes on loopback. What is checked:
  - ID.NEXT tag -> an integer, ID.NEXT tag N -> N increasing integers, from the same
    per-node buffer as HTTP (the two surfaces interleave without a repeat); a follower
    serves them; 2000 pipelined commands over two connections on three nodes repeat nothing;
  - ID.SNOWFLAKE [N] the same way, under the node's worker;
  - errors: bad counts (0, -1, 10001, x), an argument too many, an unknown tag, a bad
    tag, the commands inside MULTI (refused, the EXEC aborts);
  - COMMAND DOCS / COMMAND INFO know both commands (redis-cli hints);
  - redis-benchmark runs ID.NEXT as a custom command and every answer counts;
  - the lazy worker: no worker id is claimed at start-up or by segment traffic; the first
    snowflake request claims one; after CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS without
    requests it is released (the key goes), and the next request claims again and issues
    ids above every earlier one.

Every wait is bounded.
"""

import shutil
import subprocess
import time

import pytest
import redis

from cluster import wait_until
from test_id import (SF_WORKER, call, create_tag, make_id_cluster, next_ids,  # noqa: F401
                     ok_json, snowflake, workers_in_kv)


def rconn(c, mid, **kw):
    return redis.Redis(host="127.0.0.1", port=c.m(mid).resp_port, socket_timeout=10, **kw)


def test_id_next_replies_and_shares_the_http_buffer(make_id_cluster):
    c = make_id_cluster(1)
    create_tag(c.url(1), "rt", initial=100, step=50)
    r = rconn(c, 1)
    a = r.execute_command("ID.NEXT", "rt")
    assert isinstance(a, int) and a == 100
    b = r.execute_command("ID.NEXT", "rt", "1")
    assert isinstance(b, int) and b == 101  # count 1 is an integer too
    arr = r.execute_command("ID.NEXT", "rt", "5")
    assert arr == list(range(102, 107))
    h = next_ids(c.url(1), "rt", 3)  # the same node buffer over HTTP
    assert h == [107, 108, 109]
    big = r.execute_command("id.next", "rt", "10000")  # the limit, any case
    assert len(big) == 10000 and len(set(big)) == 10000 and big[0] > 109
    # increasing within a segment: any decrease must be a jump to a new segment
    assert all(y > x for x, y in zip(big, big[1:])), "ids went backwards within a request"


def test_id_errors(make_id_cluster):
    c = make_id_cluster(1)
    create_tag(c.url(1), "er")
    r = rconn(c, 1)
    for bad in ("0", "-1", "10001", "x", "1.5", ""):
        with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range"):
            r.execute_command("ID.NEXT", "er", bad)
        with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range"):
            r.execute_command("ID.SNOWFLAKE", bad)
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        r.execute_command("ID.NEXT", "er", "1", "2")
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        r.execute_command("ID.SNOWFLAKE", "1", "2")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'id.next'"):
        r.execute_command("ID.NEXT")
    with pytest.raises(redis.ResponseError, match="^unknown tag .*nope"):
        r.execute_command("ID.NEXT", "nope")
    with pytest.raises(redis.ResponseError, match="^invalid tag"):
        r.execute_command("ID.NEXT", "a/b")
    # inside MULTI: refused, and the transaction aborts (Redis's rule for a bad command)
    p = r.pipeline(transaction=True)
    p.set("k", "v")
    p.execute_command("ID.NEXT", "er")
    with pytest.raises((redis.ResponseError, redis.exceptions.ExecAbortError)):
        p.execute()
    assert r.get("k") is None, "EXEC ran although a command was refused"
    # the connection is fine afterwards
    assert isinstance(r.execute_command("ID.NEXT", "er"), int)
    conn = redis.connection.Connection(host="127.0.0.1", port=c.m(1).resp_port,
                                       socket_timeout=10)
    try:  # raw: redis-py would parse COMMAND's reply as its own COMMAND table
        conn.send_command("COMMAND", "DOCS", "id.next", "id.snowflake")
        text = repr(conn.read_response())
        assert "id.next" in text and "id.snowflake" in text and "count" in text, text
        conn.send_command("COMMAND", "INFO", "id.next")
        info = conn.read_response()
        assert info and info[0] is not None and info[0][0] == b"id.next", info
    finally:
        conn.disconnect()


def test_pipelined_ids_on_three_nodes_never_repeat(make_id_cluster):
    c = make_id_cluster(3)
    create_tag(c.url(1), "pp", step=100)
    seen, sf = [], []
    for mid in (1, 2, 3):  # followers serve ids too: no -READONLY
        for _ in range(2):
            p = rconn(c, mid).pipeline(transaction=False)
            for i in range(1000):
                p.execute_command("ID.NEXT", "pp")
                if i % 10 == 0:
                    p.execute_command("ID.SNOWFLAKE", "3")
            out = p.execute()
            for v in out:
                if isinstance(v, list):
                    sf += v
                else:
                    seen.append(v)
    assert len(seen) == 6000 and len(set(seen)) == 6000, "a segment id was issued twice"
    assert len(sf) == 6 * 100 * 3 and len(set(sf)) == len(sf), "a snowflake id repeated"
    workers = {SF_WORKER(i) for i in sf}
    assert len(workers) == 3, f"three nodes, three worker ids: {workers}"


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="no redis-benchmark")
def test_redis_benchmark_drives_id_next(make_id_cluster):
    c = make_id_cluster(1)
    create_tag(c.url(1), "rb")
    before = ok_json(call("GET", c.url(1), "/v1/id/segments/rb"))
    n = 20000
    p = subprocess.run(["redis-benchmark", "-p", str(c.m(1).resp_port), "-P", "16", "-c", "4",
                        "-n", str(n), "-q", "ID.NEXT", "rb"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "requests per second" in p.stdout, p.stdout
    after = ok_json(call("GET", c.url(1), "/v1/id/segments/rb"))
    served = after["buffer"]["served"] - (before.get("buffer") or {}).get("served", 0)
    assert served == n, f"redis-benchmark sent {n} ID.NEXT, the buffer served {served}"


def test_lazy_snowflake_worker_claimed_on_use_and_released_when_idle(make_id_cluster):
    c = make_id_cluster(1, env={"CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS": "2000"})
    url = c.url(1)
    create_tag(url, "lz")
    next_ids(url, "lz", 5)  # segment traffic needs no worker
    time.sleep(0.5)
    assert workers_in_kv(url) == {}, "a worker id was claimed before any snowflake request"
    st = ok_json(call("GET", url, "/v1/id/snowflake/status"))
    assert st["phase"] == "off" and st["worker"] is None and st["lease"] is None, st
    r = rconn(c, 1)
    t0 = time.monotonic()
    first = r.execute_command("ID.SNOWFLAKE")
    first_ms = (time.monotonic() - t0) * 1000
    t0 = time.monotonic()
    r.execute_command("ID.SNOWFLAKE")
    warm_ms = (time.monotonic() - t0) * 1000
    print(f"first ID.SNOWFLAKE {first_ms:.1f} ms (lease + claim + ceiling), then {warm_ms:.1f} ms")
    w = SF_WORKER(first)
    assert list(workers_in_kv(url)) == [w]
    # idle: released (its key deleted at once, not after the lease TTL)
    wait_until("the idle worker to be released", lambda: workers_in_kv(url) == {}, timeout=10)
    st = ok_json(call("GET", url, "/v1/id/snowflake/status"))
    assert st["phase"] == "off" and st["idle_releases"] >= 1, st
    again = snowflake(url, count=100)
    assert again["ids"][0] > first, "ids after a re-claim must be above the earlier ones"
    assert len(set(again["ids"])) == 100
    assert list(workers_in_kv(url)) == [again["worker"]]


def test_idle_release_config_is_checked(make_id_cluster, tmp_path):
    from cluster import Cluster
    import os
    os.environ["CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS"] = "5"  # below the 1000 ms floor
    try:
        c = Cluster(tmp_path / "badcfg", n=1)
        try:
            with pytest.raises(AssertionError):
                c.start(ready_timeout=5)
            assert b"CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS" in c.m(1).log_text()
        finally:
            c.close()
    finally:
        del os.environ["CONCLAVE_SNOWFLAKE_IDLE_RELEASE_MS"]
