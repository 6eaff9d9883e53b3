"""test_id.py -- the distributed ID service over HTTP (docs/id.md, "HTTP API and CLI").

Real `conclave serve` processes on loopback (cluster.py). What is checked:
  - segment ids: unique across three nodes, strictly increasing per node within its life,
    a burst of ten times the steady rate served with no request finding both segments
    empty, kill -9 restarts that never reissue;
  - snowflake ids: unique across nodes and restarts; a killed node's worker id returns to
    the pool when its lease expires and is claimed again; clock rollbacks through the
    test clock (1 ms waited out, 50 ms -> a fresh worker, 10 s -> refused or waited,
    per CONCLAVE_SNOWFLAKE_ROLLBACK);
  - uuid v4/v7 formats, trace ids and W3C traceparent, order numbers (Luhn, date, type,
    keyed sequence), redeem codes (verify, tamper, wrong campaign, redeem once), short
    urls (302 round trip through a follower);
  - the server secret: nodes with different secrets refuse the keyed generators;
  - bad inputs: each gets a 4xx JSON error with a code;
  - the CLI: `conclave id ...` against a running node.

Every wait is bounded (cluster.wait_until or explicit deadlines).
"""

import os
import re
import subprocess
import threading
import time

import pytest
import requests

from cluster import Cluster, wait_until

TIMEOUT = 10
SECRET_FILE = "id-secret"


# ---- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def make_id_cluster(tmp_path, request, monkeypatch):
    """Like conftest's make_cluster, but every member gets the same server secret before
    its first start (what an operator does by copying <data-dir>/id-secret), unless
    shared_secret=False; env sets server environment variables (inherited at spawn)."""
    made = []

    def make(n=1, shared_secret=True, env=None, **kw):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        c = Cluster(tmp_path / f"idc{len(made)}", n=n, **kw)
        made.append(c)
        if shared_secret:
            secret = os.urandom(32)
            for m in c.members:
                os.makedirs(m.data_dir, exist_ok=True)
                path = os.path.join(m.data_dir, SECRET_FILE)
                with open(path, "wb") as f:
                    f.write(secret)
                os.chmod(path, 0o600)
        c.start()
        return c

    yield make
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    problems = []
    for c in made:
        p = c.close()
        problems += p
        if failed or p:
            print(c.log_tails())
    if problems:
        pytest.fail("server problems:\n  " + "\n  ".join(problems), pytrace=False)


def call(method, url, path, retry_s=15.0, ok=(200, 201), **kw):
    """One request, retried on 502/503/504 and connection errors until retry_s; returns
    the response once its status is in ok or is another 4xx."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            r = requests.request(method, url + path, timeout=TIMEOUT, **kw)
            if r.status_code in ok or (400 <= r.status_code < 500):
                return r
            last = f"{r.status_code} {r.text.strip()}"
        except requests.RequestException as e:
            last = repr(e)
        if time.monotonic() >= deadline:
            raise AssertionError(f"{method} {path} kept failing for {retry_s}s: {last}")
        time.sleep(0.1)


def ok_json(r, status=200):
    assert r.status_code == status, f"{r.request.method} {r.url}: {r.status_code} {r.text}"
    return r.json()


def create_tag(url, tag, initial=1, step=100):
    return ok_json(call("POST", url, "/v1/id/segments",
                        json={"tag": tag, "initial": initial, "step": step}), 201)


def next_ids(url, tag, count=1):
    j = ok_json(call("POST", url, f"/v1/id/segments/{tag}/next", params={"count": count}))
    assert j["count"] == count and len(j["ids"]) == count
    return j["ids"]


def snowflake(url, count=1):
    return ok_json(call("GET", url, "/v1/id/snowflake", params={"count": count}))


def assert_error(r, status, code=None):
    assert r.status_code == status, f"{r.url}: want {status}, got {r.status_code} {r.text}"
    err = r.json()["error"]
    assert err["message"], r.text
    if code:
        assert err["code"] == code, r.text


def luhn_ok(digits):
    total = 0
    for k, c in enumerate(reversed(digits)):
        d = int(c)
        if k % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


SF_WORKER = lambda i: (i >> 12) & 0x3FF  # noqa: E731 (default layout 41/10/12)


# ---- segments --------------------------------------------------------------------------


def test_segment_ids_unique_across_nodes_and_increasing_per_node(make_id_cluster):
    c = make_id_cluster(n=3)
    create_tag(c.url(1), "orders.seg", initial=1000, step=50)
    seen = {}
    for mid in (1, 2, 3):
        per_node = []
        for k in range(40):
            per_node += next_ids(c.url(mid), "orders.seg", count=1 + k % 7)
        assert per_node == sorted(per_node) and len(set(per_node)) == len(per_node), \
            f"n{mid} ids not strictly increasing"
        assert min(per_node) >= 1000
        seen[mid] = per_node
    all_ids = [i for ids in seen.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)), "an id was issued twice"
    tag = ok_json(call("GET", c.url(2), "/v1/id/segments/orders.seg"))
    assert tag["max_id"] > max(all_ids) and tag["allocs"] >= 3
    # ranges=true returns the same ids as [start, end) runs
    r = ok_json(call("POST", c.url(3), "/v1/id/segments/orders.seg/next",
                     params={"count": 500, "ranges": "true"}))
    expanded = [i for s, e in r["ranges"] for i in range(s, e)]
    assert len(expanded) == 500 and not set(expanded) & set(all_ids)


def test_segment_burst_of_ten_times_never_finds_both_buffers_empty(make_id_cluster):
    c = make_id_cluster(n=1)
    url = c.url(1)
    create_tag(url, "burst", step=1000)
    got, errors, lock = [], [], threading.Lock()

    def worker(count, until):
        s = requests.Session()
        while time.monotonic() < until:
            try:
                r = s.post(f"{url}/v1/id/segments/burst/next", params={"count": count},
                           timeout=TIMEOUT)
                with lock:
                    if r.status_code == 200:
                        got.extend(r.json()["ids"])
                    else:
                        errors.append(r.text)
            except requests.RequestException as e:
                with lock:
                    errors.append(repr(e))
            time.sleep(0.004)

    t0 = time.monotonic()
    worker(10, t0 + 3.0)  # steady: one client, 10 ids a request
    steady = len(got) / (time.monotonic() - t0)
    n_steady = len(got)
    t1 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(25, t1 + 2.0)) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    burst = (len(got) - n_steady) / (time.monotonic() - t1)
    assert not errors, errors[:3]
    assert len(got) == len(set(got))
    assert burst >= 5 * steady, f"the burst was not a burst: {steady:.0f} -> {burst:.0f} ids/s"
    buf = ok_json(call("GET", url, "/v1/id/segments/burst"))["buffer"]
    print(f"steady {steady:.0f} ids/s, burst {burst:.0f} ids/s, buffer {buf}")
    assert buf["empty_dry"] == 0, f"requests found both segments empty: {buf}"
    assert buf["fetches"] >= 2


def test_segment_restarts_never_reissue(make_id_cluster):
    c = make_id_cluster(n=3)
    create_tag(c.url(1), "restarts", step=100)
    issued = []
    for rnd in range(3):
        for mid in (1, 2, 3):
            life = []
            for _ in range(5):
                life += next_ids(c.url(mid), "restarts", count=7)
            assert life == sorted(life)
            issued += life
        victim = [3, c.leader(), 2][rnd]
        c.restart(victim)
        c.leader()
    for mid in (1, 2, 3):
        issued += next_ids(c.url(mid), "restarts", count=7)
    assert len(issued) == len(set(issued)), "a restart reissued ids"


# ---- snowflake -------------------------------------------------------------------------


def workers_in_kv(url):
    r = ok_json(call("GET", url, "/v1/kv//conclave/idgen/workers/", params={"prefix": "true"}))
    return {int(kv["key"].rsplit("/", 1)[1]): kv["lease"] for kv in r["kvs"]}


def test_snowflake_unique_across_restarts_and_worker_recycled_after_kill9(make_id_cluster):
    c = make_id_cluster(n=3)
    ids, workers = [], {}
    for mid in (1, 2, 3):
        j = snowflake(c.url(mid), count=50)
        assert all(SF_WORKER(i) == j["worker"] for i in j["ids"])
        assert j["ids"] == sorted(j["ids"])
        ids += j["ids"]
        workers[mid] = j["worker"]
    assert len(set(workers.values())) == 3, workers
    old = workers[3]
    c.restart(3)  # kill -9: its lease lives on until the TTL passes
    j = snowflake(c.url(3), count=50)
    assert j["worker"] not in workers.values(), "took a worker id that is still leased"
    ids += j["ids"]
    assert old in workers_in_kv(c.url(1))
    # the dead node's lease expires (TTL 10 s): its worker key goes with it
    wait_until(f"worker {old} to be recycled", lambda: old not in workers_in_kv(c.url(1)),
               timeout=30, interval=0.5)
    c.restart(3)  # its second worker is still leased: the lowest free one is the recycled id
    j = snowflake(c.url(3), count=50)
    assert j["worker"] == old, f"expected the recycled worker {old}, got {j['worker']}"
    ids += j["ids"]
    for mid in (1, 2):
        ids += snowflake(c.url(mid), count=50)["ids"]
    assert len(ids) == len(set(ids)), "a snowflake id was issued twice"
    st = ok_json(call("GET", c.url(3), "/v1/id/snowflake/status"))
    assert st["phase"] == "ready" and st["reserved_ms"] >= st["last_ms"], st


def test_snowflake_stops_issuing_when_its_lease_cannot_be_renewed(make_id_cluster):
    c = make_id_cluster(n=3)
    f = c.followers(c.leader())[0]
    others = [m for m in (1, 2, 3) if m != f]
    a = snowflake(c.url(f), count=10)
    for m in others:
        c.pause(m)  # no quorum: keepalives and reservations fail from now on
    try:
        t0 = time.monotonic()

        def lapsed():
            st = requests.get(c.url(f) + "/v1/id/snowflake/status", timeout=TIMEOUT).json()
            return st["lease_valid_ms"] == 0 and st

        st = wait_until("the worker lease to lapse locally", lapsed, timeout=20, interval=0.2)
        # the last renewal was sent at most TTL/3 before the pause: lapse by TTL - margin
        assert time.monotonic() - t0 <= 10.0, st
        r = requests.get(c.url(f) + "/v1/id/snowflake", timeout=TIMEOUT)
        assert_error(r, 503, "worker_unavailable")
    finally:
        for m in others:
            c.resume(m)
    b = snowflake(c.url(f), count=10)  # the cluster is back: it issues again
    assert not set(a["ids"]) & set(b["ids"])


def set_clock(url, **body):
    """The server's TEST clock: offset_ms=X (running), or behind_ms=X [freeze=True]: X ms
    behind the worker's last timestamp, measured inside the server (no race with the
    time a request takes, which under ASan can exceed a small rollback)."""
    return ok_json(call("POST", url, "/v1/id/test/clock", json=body))


def test_snowflake_rollback_new_worker(make_id_cluster):
    c = make_id_cluster(n=1, env={"CONCLAVE_TEST_ID_CLOCK": "1",
                                  "CONCLAVE_SNOWFLAKE_ROLLBACK": "new-worker"})
    url = c.url(1)
    a = snowflake(url, count=100)
    set_clock(url, behind_ms=1, freeze=True)  # 1 ms: within the 5 ms tolerance
    b = snowflake(url, count=100)
    assert b["worker"] == a["worker"] and b["ids"][0] > a["ids"][-1], "1 ms must be absorbed"
    set_clock(url, behind_ms=50, freeze=True)  # beyond the tolerance: a fresh worker id
    d = snowflake(url, count=100)
    assert d["worker"] != a["worker"]
    set_clock(url, behind_ms=10000, freeze=True)  # 10 s: fresh again; used floors are ahead
    e = snowflake(url, count=100)
    assert e["worker"] not in (a["worker"], d["worker"])
    set_clock(url, offset_ms=0)
    f = snowflake(url, count=100)
    assert f["worker"] == e["worker"] and f["ids"][0] > e["ids"][-1]
    all_ids = a["ids"] + b["ids"] + d["ids"] + e["ids"] + f["ids"]
    assert len(set(all_ids)) == len(all_ids)
    st = ok_json(call("GET", url, "/v1/id/snowflake/status"))
    assert st["rollbacks"] >= 2 and st["new_workers"] >= 2 and st["policy"] == "new-worker"


def test_snowflake_rollback_refuse_and_wait(make_id_cluster):
    c = make_id_cluster(n=1, env={"CONCLAVE_TEST_ID_CLOCK": "1",
                                  "CONCLAVE_SNOWFLAKE_ROLLBACK": "refuse"})
    url = c.url(1)
    a = snowflake(url, count=10)
    set_clock(url, behind_ms=3, freeze=True)  # within tolerance: served
    b = snowflake(url, count=10)
    assert b["worker"] == a["worker"] and b["ids"][0] > a["ids"][-1]
    set_clock(url, behind_ms=10000, freeze=True)
    assert_error(requests.get(url + "/v1/id/snowflake", timeout=TIMEOUT), 503, "clock_rollback")
    set_clock(url, offset_ms=0)
    b = snowflake(url, count=10)
    assert b["worker"] == a["worker"] and b["ids"][0] > a["ids"][-1]

    c2 = make_id_cluster(n=1, env={"CONCLAVE_TEST_ID_CLOCK": "1",
                                   "CONCLAVE_SNOWFLAKE_ROLLBACK": "wait"})
    url2 = c2.url(1)
    a = snowflake(url2, count=10)
    set_clock(url2, behind_ms=50)  # running 50 ms behind: waited out on the same worker
    t0 = time.monotonic()
    b = snowflake(url2, count=5000)  # more than one ms of sequence: must wait for the clock
    assert b["worker"] == a["worker"] and b["ids"][0] > a["ids"][-1]
    assert b["ids"] == sorted(b["ids"]) and len(set(b["ids"])) == 5000
    assert time.monotonic() - t0 < 5
    st = ok_json(call("GET", url2, "/v1/id/snowflake/status"))
    assert st["new_workers"] == 0 and st["tolerance_ms"] == 1000
    set_clock(url2, behind_ms=10000, freeze=True)  # beyond the wait policy's 1 s: refused
    assert_error(requests.get(url2 + "/v1/id/snowflake", timeout=TIMEOUT), 503, "clock_rollback")


# ---- stateless generators --------------------------------------------------------------

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_uuid_formats(make_id_cluster):
    c = make_id_cluster(n=1)
    url = c.url(1)
    v4 = ok_json(call("GET", url, "/v1/id/uuid", params={"count": 200}))["uuids"]
    assert len(set(v4)) == 200
    for u in v4:
        assert UUID_RE.match(u) and u[14] == "4" and u[19] in "89ab", u
    v7 = []
    for _ in range(5):
        v7 += ok_json(call("GET", url, "/v1/id/uuid", params={"version": 7, "count": 100}))["uuids"]
    assert v7 == sorted(v7) and len(set(v7)) == 500, "v7 must increase within a node"
    for u in v7:
        assert UUID_RE.match(u) and u[14] == "7" and u[19] in "89ab", u
    ms = int(v7[-1].replace("-", "")[:12], 16)
    assert abs(ms - time.time() * 1000) < 60000
    assert_error(requests.get(url + "/v1/id/uuid?version=5", timeout=TIMEOUT), 400, "bad_version")
    assert_error(requests.get(url + "/v1/id/uuid?count=1001", timeout=TIMEOUT), 400, "bad_count")


def test_trace_ids_and_traceparent(make_id_cluster):
    c = make_id_cluster(n=1)
    url = c.url(1)
    ids = set()
    for _ in range(20):
        t = ok_json(call("GET", url, "/v1/id/trace"))
        assert re.match(r"^[0-9a-f]{32}$", t["trace_id"]) and t["span_id"] == "0"
        assert t["traceparent"] == f"00-{t['trace_id']}-{t['parent_id']}-01"
        assert t["trace_id"].startswith("7f000001")  # 127.0.0.1
        ids.add(t["trace_id"])
    assert len(ids) == 20
    child = ok_json(call("GET", url, "/v1/id/trace",
                         params={"parent": t["traceparent"], "span": "0.2", "index": 1}))
    assert child["trace_id"] == t["trace_id"] and child["span_id"] == "0.2.1"
    assert child["parent_id"] != t["parent_id"]
    first = ok_json(call("GET", url, "/v1/id/trace", params={"parent": t["trace_id"]}))
    assert first["span_id"] == "0.1"
    assert_error(requests.get(url + "/v1/id/trace", params={"parent": "00-zz"}, timeout=TIMEOUT),
                 400, "bad_parent")
    assert_error(requests.get(url + "/v1/id/trace", params={"parent": t["trace_id"], "span": "1"},
                              timeout=TIMEOUT), 400, "bad_span")


# ---- keyed generators ------------------------------------------------------------------


def test_order_numbers_validate_and_never_repeat(make_id_cluster):
    c = make_id_cluster(n=3)
    today = time.strftime("%Y%m%d", time.gmtime())
    numbers = []
    for mid in (1, 2, 3):
        j = ok_json(call("POST", c.url(mid), "/v1/id/orders", json={"biz_type": 7, "count": 20}))
        assert j["biz_type"] == 7
        numbers += j["orders"]
    assert len(set(numbers)) == len(numbers)
    seqs = set()
    for n in numbers:
        assert re.match(r"^\d{19}$", n) and luhn_ok(n), n
        assert n[:8] in (today, time.strftime("%Y%m%d", time.gmtime())) and n[8:10] == "07"
        o = ok_json(call("GET", c.url(1 + len(seqs) % 3), f"/v1/id/orders/{n}"))
        assert o["biz_type"] == 7 and o["valid"]
        seqs.add(o["seq"])
    assert len(seqs) == len(numbers)
    # consecutive sequence numbers do not give consecutive middles
    mids = sorted(int(n[10:18]) for n in numbers)
    assert max(b - a for a, b in zip(mids, mids[1:])) > 1000
    bad = numbers[0][:-1] + str((int(numbers[0][-1]) + 1) % 10)
    assert_error(requests.get(c.url(2) + f"/v1/id/orders/{bad}", timeout=TIMEOUT), 422,
                 "bad_check_digit")
    assert_error(requests.get(c.url(2) + "/v1/id/orders/12345", timeout=TIMEOUT), 400)


def test_redeem_codes_verify_and_tampering_is_rejected(make_id_cluster):
    c = make_id_cluster(n=3)
    j = ok_json(call("POST", c.url(2), "/v1/id/redeem/42", json={"count": 50}))
    codes = j["codes"]
    assert len(set(codes)) == 50 and j["campaign"] == 42
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    for code in codes:
        assert re.match(r"^[%s]{4}(-[%s]{4}){3}$" % (alphabet, alphabet), code), code
        assert not set(code) & set("01OI")
    serials = set()
    for k, code in enumerate(codes):
        v = ok_json(call("GET", c.url(1 + k % 3), f"/v1/id/redeem/42/{code}"))
        assert v["valid"] and v["campaign"] == 42
        serials.add(v["serial"])
    assert len(serials) == 50
    # every single-character change of one code is rejected
    code = codes[0]
    for pos in [p for p in range(len(code)) if code[p] != "-"]:
        for ch in alphabet[:6]:
            if ch == code[pos]:
                continue
            bad = code[:pos] + ch + code[pos + 1:]
            r = requests.get(c.url(1) + f"/v1/id/redeem/42/{bad}", timeout=TIMEOUT)
            assert r.status_code == 422, (bad, r.text)
    assert_error(requests.get(c.url(1) + f"/v1/id/redeem/43/{code}", timeout=TIMEOUT), 422,
                 "wrong_campaign")
    assert_error(requests.get(c.url(1) + "/v1/id/redeem/42/0OI1-AAAA-AAAA-AAAA",
                              timeout=TIMEOUT), 400, "bad_code")
    # lower case and missing dashes are accepted
    ok_json(call("GET", c.url(3), f"/v1/id/redeem/42/{code.replace('-', '').lower()}"))
    # a redemption is recorded once
    ok_json(call("POST", c.url(3), f"/v1/id/redeem/42/{code}"))
    assert_error(call("POST", c.url(1), f"/v1/id/redeem/42/{code}"), 409, "already_redeemed")


def test_short_url_round_trip_302(make_id_cluster):
    c = make_id_cluster(n=3)
    leader = c.leader()
    follower = c.followers(leader)[0]
    target = "https://example.com/some/long/path?q=1&r=two"
    j = ok_json(call("POST", c.url(follower), "/v1/id/short", json={"url": target}), 201)
    code = j["code"]
    assert re.match(r"^[0-9A-Za-z]{6,10}$", code)
    codes = {code}
    for k in range(5):
        codes.add(ok_json(call("POST", c.url(leader), "/v1/id/short",
                               json={"url": f"http://example.org/{k}"}), 201)["code"])
    assert len(codes) == 6
    for mid in (1, 2, 3):
        r = call("GET", c.url(mid), f"/s/{code}", allow_redirects=False, ok=(302,))
        assert r.status_code == 302 and r.headers["Location"] == target
    assert_error(requests.get(c.url(1) + "/s/zzzzzz", allow_redirects=False, timeout=TIMEOUT),
                 404, "short_not_found")
    assert_error(requests.get(c.url(1) + "/s/a-b", timeout=TIMEOUT), 400, "bad_code")
    for bad in ({"url": "javascript:alert(1)"}, {"url": "http://a b"}, {}, {"url": 5}):
        assert_error(requests.post(c.url(1) + "/v1/id/short", json=bad, timeout=TIMEOUT), 400,
                     "bad_url")


def test_nodes_with_different_secrets_refuse_keyed_generators(make_id_cluster):
    c = make_id_cluster(n=3, shared_secret=False)  # each node made its own secret

    def states():
        out = []
        for mid in (1, 2, 3):
            r = requests.post(c.url(mid) + "/v1/id/orders", json={"biz_type": 1}, timeout=TIMEOUT)
            code = r.json()["error"]["code"] if r.status_code != 200 else "ok"
            if code not in ("ok", "secret_mismatch"):
                return None  # not settled yet
            out.append(code)
        return out

    got = wait_until("every node to know whether its secret matches", states, timeout=20,
                     interval=0.2)
    assert sorted(got) == ["ok", "secret_mismatch", "secret_mismatch"], got
    # the unkeyed generators still work everywhere
    for mid in (1, 2, 3):
        ok_json(call("GET", c.url(mid), "/v1/id/uuid"))
    for mid in (1, 2, 3):
        st = os.stat(os.path.join(c.m(mid).data_dir, SECRET_FILE))
        assert st.st_size == 32 and (st.st_mode & 0o777) == 0o600


# ---- bad inputs ------------------------------------------------------------------------


def test_bad_inputs_get_4xx_json_errors(make_id_cluster):
    c = make_id_cluster(n=1)
    url = c.url(1)
    create_tag(url, "t1")
    cases = [
        ("POST", "/v1/id/segments", {"tag": "has space"}, 400, "bad_tag"),
        ("POST", "/v1/id/segments", {"tag": "x" * 129}, 400, "bad_tag"),
        ("POST", "/v1/id/segments", {"tag": "ok", "step": 0}, 400, "bad_step"),
        ("POST", "/v1/id/segments", {"tag": "ok", "step": 100000001}, 400, "bad_step"),
        ("POST", "/v1/id/segments", {"tag": "ok", "initial": 0}, 400, "bad_initial"),
        ("POST", "/v1/id/segments", {"tag": "t1"}, 409, "tag_exists"),
        ("POST", "/v1/id/segments", "not json", 400, "bad_json"),
        ("PUT", "/v1/id/segments/t1", {}, 400, "bad_request"),
        ("PUT", "/v1/id/segments/t1", {"max_id": 0}, 400, "bad_max_id"),
        ("PUT", "/v1/id/segments/missing", {"step": 5}, 404, "tag_not_found"),
        ("GET", "/v1/id/segments/missing", None, 404, "tag_not_found"),
        ("POST", "/v1/id/segments/missing/next", None, 404, "tag_not_found"),
        ("POST", "/v1/id/segments/t1/next?count=0", None, 400, "bad_count"),
        ("POST", "/v1/id/segments/t1/next?count=10001", None, 400, "bad_count"),
        ("POST", "/v1/id/segments/t1/next?count=x", None, 400, "bad_count"),
        ("GET", "/v1/id/segments/t1/next", None, 405, "bad_method"),
        ("POST", "/v1/id/segments/t1/alloc", {"count": -1}, 400, "bad_count"),
        ("DELETE", "/v1/id/segments/t1", None, 405, "bad_method"),
        ("GET", "/v1/id/segments/t1/nope", None, 404, "not_found"),
        ("GET", "/v1/id/snowflake?count=0", None, 400, "bad_count"),
        ("POST", "/v1/id/snowflake", None, 405, "bad_method"),
        ("POST", "/v1/id/orders", {"biz_type": 100}, 400, "bad_biz_type"),
        ("POST", "/v1/id/orders", {"biz_type": 1, "count": 1001}, 400, "bad_count"),
        ("POST", "/v1/id/orders", {}, 400, "bad_biz_type"),
        ("GET", "/v1/id/orders/20240102072166012", None, 400, "bad_order_number"),
        ("POST", "/v1/id/redeem/1048576", {"count": 1}, 400, "bad_campaign"),
        ("POST", "/v1/id/redeem/1", {"count": 10001}, 400, "bad_count"),
        ("GET", "/v1/id/redeem/1/ABC", None, 400, "bad_code"),
        ("POST", "/v1/id/internal/claim", {"worker": 5000, "lease": 1}, 400, "bad_worker"),
        ("POST", "/v1/id/internal/lease", {"ttl_ms": 1}, 400, "bad_ttl"),
        ("POST", "/v1/id/internal/nope", {}, 404, "not_found"),
        ("POST", "/v1/id/test/clock", {"offset_ms": 1}, 404, "not_found"),  # off by default
        ("GET", "/v1/id/nothing", None, 404, "not_found"),
    ]
    for method, path, body, status, code in cases:
        kw = {"data": body} if isinstance(body, str) else {"json": body} if body is not None else {}
        r = requests.request(method, url + path, timeout=TIMEOUT, **kw)
        assert r.headers.get("Content-Type", "").startswith("application/json"), (path, r.text)
        assert_error(r, status, code)


# ---- CLI -------------------------------------------------------------------------------


def cli(c, *args):
    p = subprocess.run([c.binary, "id", *args, "--endpoint", c.m(1).http_addr], timeout=30,
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_cli_id(make_id_cluster):
    c = make_id_cluster(n=1)
    rc, out, err = cli(c, "segment", "create", "cli.tag", "--step", "10", "--initial", "500")
    assert rc == 0, err
    rc, out, err = cli(c, "segment", "next", "cli.tag", "-n", "3")
    assert rc == 0 and out.split() == ["500", "501", "502"], (out, err)
    rc, out, err = cli(c, "segment", "get", "cli.tag", "-o", "json")
    assert rc == 0 and '"max_id"' in out
    rc, out, err = cli(c, "snowflake", "-n", "2")
    assert rc == 0 and len(out.split()) == 2 and all(x.isdigit() for x in out.split())
    rc, out, err = cli(c, "uuid", "-v", "7")
    assert rc == 0 and UUID_RE.match(out.strip()) and out.strip()[14] == "7"
    rc, out, err = cli(c, "trace")
    assert rc == 0 and "traceparent" in out
    rc, out, err = cli(c, "order", "--biz", "3", "-n", "2")
    assert rc == 0 and all(luhn_ok(x) for x in out.split()) and len(out.split()) == 2
    rc, out, err = cli(c, "redeem", "issue", "7", "-n", "2")
    assert rc == 0 and len(out.split()) == 2, (out, err)
    code = out.split()[0]
    rc, out, err = cli(c, "redeem", "verify", "7", code)
    assert rc == 0 and "valid" in out
    rc, out, err = cli(c, "redeem", "verify", "7", code[:-1] + ("2" if code[-1] != "2" else "3"))
    assert rc == 1 and "invalid" in err.lower()
    rc, out, err = cli(c, "short", "https://example.com/cli")
    assert rc == 0 and re.search(r"[0-9A-Za-z]{6}", out)
    rc, out, err = cli(c, "segment", "next", "missing.tag")
    assert rc == 1 and "not found" in err
    rc, out, err = cli(c, "bogus")
    assert rc == 2
