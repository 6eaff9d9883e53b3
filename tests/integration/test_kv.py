"""test_kv.py -- the /v1 HTTP API of a single-node Conclave, over real sockets.

Most tests share one single-node cluster (`single`) and write under their own key
prefix (`ns`); tests that kill or compact get their own (`make_cluster`).
"""

import base64
import json
import random
import re
import threading
import urllib.parse

import requests

from cluster import RawConn, wait_until

T = 10  # seconds: bound on any one HTTP request here


def q(key):
    """Percent-encode a str or bytes key for the URL path ('/' kept as is)."""
    return urllib.parse.quote(key, safe="/")


def put(c, key, value, **params):
    r = requests.put(f"{c.url(1)}/v1/kv/{q(key)}", data=value, params=params, timeout=T)
    assert r.status_code == 200, r.text
    return r.json()


def get(c, key, **params):
    return requests.get(f"{c.url(1)}/v1/kv/{q(key)}", params=params, timeout=T)


def assert_json_error(r, status, code):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert err["code"] == code, err
    assert err["message"], err
    return err["message"]


# ---- put / get / delete ------------------------------------------------------------------


def test_put_get_json_fields(single, ns):
    key = ns + "a"
    w = put(single, key, "hello")
    assert isinstance(w["revision"], int) and w["revision"] >= 2, w
    r = get(single, key)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert j["key"] == key
    assert j["value"] == "hello"
    assert j["create_revision"] == w["revision"]
    assert j["mod_revision"] == w["revision"]
    assert j["version"] == 1
    assert j["lease"] == 0
    assert j["revision"] >= w["revision"]


def test_overwrite_bumps_version_and_prev_kv(single, ns):
    key = ns + "k"
    w1 = put(single, key, "one")
    w2 = put(single, key, "two", prev_kv="true")
    assert w2["revision"] > w1["revision"]
    assert w2["prev_kv"]["value"] == "one", w2
    assert w2["prev_kv"]["version"] == 1
    w3 = put(single, key, "three")
    j = get(single, key).json()
    assert (j["value"], j["version"]) == ("three", 3)
    assert j["create_revision"] == w1["revision"]
    assert j["mod_revision"] == w3["revision"]


def test_raw_get(single, ns):
    put(single, ns + "r", "plain bytes\n")
    r = get(single, ns + "r", raw="true")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.content == b"plain bytes\n"


def test_missing_key_is_404_json(single, ns):
    assert_json_error(get(single, ns + "nope"), 404, "key_not_found")
    assert_json_error(get(single, ns + "nope", raw="true"), 404, "key_not_found")
    assert_json_error(get(single, ns + "nope", consistency="serializable"), 404,
                      "key_not_found")


def test_delete_and_prefix_delete(single, ns):
    put(single, ns + "x", "1")
    r = requests.delete(f"{single.url(1)}/v1/kv/{ns}x", timeout=T)
    assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
    assert_json_error(get(single, ns + "x"), 404, "key_not_found")
    r = requests.delete(f"{single.url(1)}/v1/kv/{ns}x", timeout=T)
    assert r.status_code == 200 and r.json()["deleted"] == 0, r.text

    for i in range(5):
        put(single, f"{ns}p/{i}", str(i))
    put(single, ns + "pother", "stays")  # shares "p" but not "p/"
    r = requests.delete(f"{single.url(1)}/v1/kv/{ns}p/", params={"prefix": "true"}, timeout=T)
    assert r.status_code == 200 and r.json()["deleted"] == 5, r.text
    r = get(single, ns, prefix="true")
    assert [kv["key"] for kv in r.json()["kvs"]] == [ns + "pother"], r.text


def test_prefix_range_limit_and_more(single, ns):
    keys = [f"{ns}r/k{i}" for i in range(5)]
    for k in reversed(keys):
        put(single, k, k.upper())
    j = get(single, ns + "r/", prefix="true").json()
    assert [kv["key"] for kv in j["kvs"]] == keys  # sorted by key
    assert [kv["value"] for kv in j["kvs"]] == [k.upper() for k in keys]
    assert (j["count"], j["more"]) == (5, False)
    j = get(single, ns + "r/", prefix="true", limit=2).json()
    assert [kv["key"] for kv in j["kvs"]] == keys[:2]
    assert (j["count"], j["more"]) == (5, True)
    j = get(single, ns + "r/", prefix="true", limit=5).json()
    assert (len(j["kvs"]), j["more"]) == (5, False)
    r = get(single, ns + "r/", prefix="true", limit="-1")
    assert_json_error(r, 400, "bad_query")


def test_keys_only(single, ns):
    for i in range(3):
        put(single, f"{ns}{i}", "v" * 100)
    j = get(single, ns, prefix="true", keys_only="true").json()
    assert [kv["key"] for kv in j["kvs"]] == [f"{ns}{i}" for i in range(3)]
    for kv in j["kvs"]:
        assert "value" not in kv and "value_base64" not in kv, kv
        assert kv["version"] == 1


def test_binary_key_and_value(single, ns):
    key = ns.encode() + b"\x00\xff\x01bin"
    value = bytes(range(256)) * 4
    path = q(key)
    assert "%00%FF" in path.upper()
    r = requests.put(f"{single.url(1)}/v1/kv/{path}", data=value, timeout=T)
    assert r.status_code == 200, r.text
    r = requests.get(f"{single.url(1)}/v1/kv/{path}", params={"raw": "true"}, timeout=T)
    assert r.status_code == 200
    assert r.content == value
    j = requests.get(f"{single.url(1)}/v1/kv/{path}", timeout=T).json()
    assert base64.b64decode(j["key_base64"]) == key, j
    assert base64.b64decode(j["value_base64"]) == value
    # found by a prefix scan too, and an empty value round-trips
    j = get(single, ns, prefix="true").json()
    assert [base64.b64decode(kv["key_base64"]) for kv in j["kvs"]] == [key]
    r = requests.put(f"{single.url(1)}/v1/kv/{q(ns + 'empty')}", data=b"", timeout=T)
    assert r.status_code == 200
    assert get(single, ns + "empty", raw="true").content == b""


# ---- limits --------------------------------------------------------------------------


def test_value_over_limit_is_413(single, ns):
    r = requests.put(f"{single.url(1)}/v1/kv/{ns}big", data=b"x" * ((1 << 20) + 1), timeout=T)
    msg = assert_json_error(r, 413, "value_too_large")
    m = re.search(r"value is (\d+) bytes; the limit is (\d+)", msg)
    assert m, msg
    limit = int(m.group(2))
    assert int(m.group(1)) == (1 << 20) + 1 and 512 << 10 < limit <= 1 << 20
    # the limit itself is accepted and reads back intact
    value = random.Random(1).randbytes(limit)
    r = requests.put(f"{single.url(1)}/v1/kv/{ns}big", data=value, timeout=T)
    assert r.status_code == 200, r.text
    assert get(single, ns + "big", raw="true").content == value
    r = requests.put(f"{single.url(1)}/v1/kv/{ns}big", data=value + b"y", timeout=T)
    assert_json_error(r, 413, "value_too_large")
    # past the HTTP body limit the transport itself refuses, naming its limit
    r = requests.put(f"{single.url(1)}/v1/kv/{ns}huge", data=b"x" * (5 << 20), timeout=T)
    msg = assert_json_error(r, 413, "body_too_large")
    assert "4194304" in msg and "body_bytes_max" in msg, msg


def test_key_over_limit_is_414(single, ns):
    limit = 4096
    key = ns + "k" * (limit - len(ns))
    assert len(key) == limit
    put(single, key, "at the limit")
    assert get(single, key, raw="true").content == b"at the limit"
    r = requests.put(f"{single.url(1)}/v1/kv/{key}k", data="v", timeout=T)
    msg = assert_json_error(r, 414, "key_too_long")
    assert str(limit) in msg
    assert_json_error(get(single, key + "k"), 414, "key_too_long")


# ---- txn -----------------------------------------------------------------------------


def txn(c, body, member=1):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{c.url(member)}/v1/txn", data=data, timeout=T)


def test_bad_txn_json_is_400_with_position(single):
    msg = assert_json_error(txn(single, '{"compare": [\n {"key": }'), 400, "bad_json")
    assert re.search(r"line 2, column \d+", msg), msg
    msg = assert_json_error(txn(single, "[1, 2]"), 400, "bad_json")
    assert "object" in msg
    msg = assert_json_error(txn(single, b"\xff\xfe"), 400, "bad_json")
    assert "line" in msg and "column" in msg
    bad = {"compare": [{"key": "a", "target": "colour", "op": "=", "value": 1}]}
    assert_json_error(txn(single, bad), 400, "bad_txn")
    bad = {"success": [{"frobnicate": {"key": "a"}}]}
    assert_json_error(txn(single, bad), 400, "bad_txn")


def test_txn_success_and_failure_branches(single, ns):
    k, other = ns + "t", ns + "f"
    put(single, k, "1")
    body = {
        "compare": [{"key": k, "target": "value", "op": "=", "value": "1"}],
        "success": [{"put": {"key": k, "value": "2"}}, {"get": {"key": k}}],
        "failure": [{"put": {"key": other, "value": "failed"}}, {"get": {"key": k}}],
    }
    r = txn(single, body)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["succeeded"] is True
    assert j["responses"][0] == {"put": {}}
    assert j["responses"][1]["get"]["kvs"][0]["value"] == "2"
    rev = j["revision"]

    j = txn(single, body).json()  # value is "2" now: the failure branch runs
    assert j["succeeded"] is False
    assert j["responses"][1]["get"]["kvs"][0]["value"] == "2"
    assert get(single, other, raw="true").content == b"failed"

    # version / mod / create compares; create == 0 is "absent" (create-if-absent idiom)
    j = txn(single, {"compare": [{"key": k, "target": "version", "op": "=", "value": 2},
                                 {"key": k, "target": "mod", "op": "=", "value": rev},
                                 {"key": k, "target": "create", "op": "<", "value": rev}],
                     "success": [{"delete": {"key": other}}]}).json()
    assert j["succeeded"] is True and j["responses"] == [{"delete": {"deleted": 1}}], j
    create = {"compare": [{"key": ns + "lock", "target": "create", "op": "=", "value": 0}],
              "success": [{"put": {"key": ns + "lock", "value": "me"}}],
              "failure": [{"get": {"key": ns + "lock"}}]}
    assert txn(single, create).json()["succeeded"] is True
    j = txn(single, create).json()
    assert j["succeeded"] is False
    assert j["responses"][0]["get"]["kvs"][0]["value"] == "me"
    # prefix delete inside a txn
    j = txn(single, {"success": [{"delete": {"key": ns, "prefix": True}}]}).json()
    assert j["responses"][0]["delete"]["deleted"] == 2, j


# ---- compaction, persistence -----------------------------------------------------------


def test_compaction(make_cluster):
    c = make_cluster(1)
    revs = [put(c, "c", f"v{i}")["revision"] for i in range(3)]
    assert get(c, "c", revision=revs[0]).json()["value"] == "v0"  # history before
    r = requests.post(f"{c.url(1)}/v1/compact", json={"revision": revs[1]}, timeout=T)
    assert r.status_code == 200, r.text
    assert_json_error(get(c, "c", revision=revs[0]), 410, "kv_error")
    assert get(c, "c", revision=revs[1]).json()["value"] == "v1"
    assert get(c, "c", revision=revs[2]).json()["value"] == "v2"
    assert get(c, "c").json()["value"] == "v2"
    r = requests.post(f"{c.url(1)}/v1/compact", json={"revision": revs[0]}, timeout=T)
    assert_json_error(r, 410, "kv_error")  # already compacted past it
    r = requests.post(f"{c.url(1)}/v1/compact", json={"revision": revs[2] + 1000}, timeout=T)
    assert_json_error(r, 400, "kv_error")  # future revision
    r = requests.post(f"{c.url(1)}/v1/compact", data="{}", timeout=T)
    assert_json_error(r, 400, "bad_request")
    assert_json_error(get(c, "c", revision=revs[2] + 1000), 400, "kv_error")


def test_restart_keeps_acknowledged_writes(make_cluster):
    c = make_cluster(1)
    want = {}
    for i in range(30):
        put(c, f"p/{i}", f"v{i}")
        want[f"p/{i}"] = f"v{i}"
    put(c, "p/0", "changed")
    want["p/0"] = "changed"
    r = requests.delete(f"{c.url(1)}/v1/kv/p/1", timeout=T)
    assert r.status_code == 200
    del want["p/1"]

    # writes in flight while the kill lands: only acknowledged ones must survive
    acked, stop = {}, threading.Event()
    top = [0]  # highest acknowledged revision

    def writer():
        s = requests.Session()
        for i in range(2000):
            if stop.is_set():
                return
            try:
                r = s.put(f"{c.url(1)}/v1/kv/live/{i}", data=f"l{i}", timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 200:
                acked[f"live/{i}"] = f"l{i}"
                top[0] = max(top[0], r.json()["revision"])

    th = threading.Thread(target=writer)
    th.start()
    wait_until("20 acknowledged in-flight writes", lambda: len(acked) >= 20, 20)
    c.kill9(1)
    stop.set()
    th.join(timeout=15)
    assert not th.is_alive()
    want.update(acked)

    c.restart(1)
    j = requests.get(f"{c.url(1)}/v1/kv/", params={"prefix": "true"}, timeout=T).json()
    got = {kv["key"]: kv["value"] for kv in j["kvs"]}
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    assert not missing, (f"{len(missing)} acknowledged writes lost or changed, e.g. "
                         f"{list(missing.items())[:5]}")
    assert "p/1" not in got
    assert j["revision"] >= top[0]
    w = put(c, "after", "restart")
    assert w["revision"] > top[0]
    # and a second crash right away is survived as well
    c.kill9(1)
    c.restart(1)
    assert get(c, "after", raw="true").content == b"restart"


# ---- HTTP surface ----------------------------------------------------------------------


def test_unknown_endpoint_and_methods(single):
    r = requests.get(f"{single.url(1)}/v2/nothing/here", timeout=T)
    msg = assert_json_error(r, 404, "not_found")
    assert "/v2/nothing/here" in msg
    r = requests.post(f"{single.url(1)}/v1/kv/x", data="v", timeout=T)
    assert_json_error(r, 405, "bad_request")
    r = requests.put(f"{single.url(1)}/v1/kv/", data="v", timeout=T)
    assert_json_error(r, 400, "bad_request")
    assert_json_error(requests.get(f"{single.url(1)}/v1/kv/", timeout=T), 400, "empty_key")
    r = get(single, "x", consistency="sometimes")
    assert_json_error(r, 400, "bad_consistency")
    # requests would re-quote a bad escape; send it raw. The connection survives it.
    conn = RawConn(single.m(1).http_port, timeout=T)
    try:
        conn.send(b"GET /v1/kv/bad%zzescape HTTP/1.1\r\nHost: t\r\n\r\n")
        r = conn.read_response()
        assert r.status == 400, r
        assert "percent" in json.loads(r.body)["error"]["message"]
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().status == 200
    finally:
        conn.close()
    assert requests.get(f"{single.url(1)}/healthz", timeout=T).status_code == 200


GARBAGE = [
    b"\x00\xff" * 200 + b"\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"NOTAMETHOD /x HTTP/1.1\r\n\r\n",
    b"GET /v1/kv/a HTTP/1.1\r\nno colon here\r\n\r\n",
    b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: -5\r\n\r\nhello",
    b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"PUT /v1/kv/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"GET /v1/kv/" + b"%" * 3000 + b" HTTP/1.1\r\n\r\n",
    b"GET /v1/kv/a HTTP/1.1\r\n" + b"X-Long: " + b"a" * 40000 + b"\r\n\r\n",
    b"\r\n" * 1000,
    b"POST /v1/txn HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"compare",  # then hang up
]


def test_garbage_bytes_do_not_crash(single):
    rnd = random.Random(7)
    blobs = GARBAGE + [rnd.randbytes(rnd.randint(1, 3000)) for _ in range(12)]
    for i, blob in enumerate(blobs):
        conn = RawConn(single.m(1).http_port, timeout=2)
        try:
            conn.send(blob)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if i == len(GARBAGE) - 1:  # the half-sent body: just hang up mid-request
            conn.close()
            continue
        out = conn.read_until_closed()
        conn.close()
        if out:  # any answer must be an HTTP error, not a crash dump or a 2xx
            assert re.match(rb"HTTP/1\.1 [45]\d\d ", out), (i, out[:200])
        assert single.m(1).alive(), f"server died on garbage #{i}: {blob[:60]!r}"
    # still serving, on a fresh connection
    put(single, "after-garbage", "ok")
    assert get(single, "after-garbage", raw="true").content == b"ok"


def test_pipelining_50_requests_in_order(single, ns):
    for i in range(25):
        put(single, f"{ns}pre/{i}", f"p{i}")
    reqs = []
    for i in range(50):
        if i % 2 == 0:
            body = f"w{i}".encode()
            reqs.append(f"PUT /v1/kv/{ns}pipe/{i} HTTP/1.1\r\nHost: t\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        else:
            reqs.append(f"GET /v1/kv/{ns}pre/{i // 2}?raw=true HTTP/1.1\r\nHost: t\r\n\r\n"
                        .encode())
    conn = RawConn(single.m(1).http_port, timeout=T)
    try:
        conn.send(b"".join(reqs))  # all 50 at once, in one write
        resps = [conn.read_response() for _ in range(50)]
        # and the connection is still usable afterwards
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().status == 200
    finally:
        conn.close()
    last_rev = 0
    for i, r in enumerate(resps):
        assert r.status == 200, (i, r)
        if i % 2 == 0:
            rev = json.loads(r.body)["revision"]
            assert rev > last_rev, f"PUT #{i} got revision {rev} after {last_rev}: out of order"
            last_rev = rev
        else:
            assert r.body == f"p{i // 2}".encode(), f"response #{i} out of order: {r.body!r}"
    for i in range(0, 50, 2):
        assert get(single, f"{ns}pipe/{i}", raw="true").content == f"w{i}".encode()


def test_keep_alive_session(single, ns):
    with requests.Session() as s:
        for i in range(30):
            r = s.put(f"{single.url(1)}/v1/kv/{ns}{i}", data=str(i), timeout=T)
            assert r.status_code == 200
            r = s.get(f"{single.url(1)}/v1/kv/{ns}{i}", params={"raw": "1"}, timeout=T)
            assert r.content == str(i).encode()
            assert r.headers.get("Connection", "").lower() != "close"
        # an error answer must not cost the connection either
        assert s.get(f"{single.url(1)}/v1/kv/{ns}missing", timeout=T).status_code == 404
        assert s.get(f"{single.url(1)}/healthz", timeout=T).status_code == 200
        pool = s.get_adapter(single.url(1)).poolmanager.connection_from_url(single.url(1))
        assert pool.num_connections == 1, f"{pool.num_connections} connections for 62 requests"


def test_metrics_health_and_status(single):
    r = requests.get(f"{single.url(1)}/metrics", timeout=T)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    m = re.search(r"^conclave_raft_term (\d+)$", r.text, re.M)
    assert m and int(m.group(1)) >= 1, r.text
    assert re.search(r"^conclave_raft_is_leader 1$", r.text, re.M), r.text
    assert re.search(r"^# TYPE conclave_raft_term gauge$", r.text, re.M)
    # histograms: WAL fsync (every write synced at least once by now) and per path
    count = re.search(r"^conclave_wal_fsync_seconds_count (\d+)$", r.text, re.M)
    assert count and int(count.group(1)) >= 1, r.text
    inf = re.search(r'^conclave_wal_fsync_seconds_bucket\{le="\+Inf"\} (\d+)$', r.text, re.M)
    assert inf and inf.group(1) == count.group(1)
    assert re.search(r'^conclave_http_requests_total\{path="[^"]+",code="2xx"\} \d+$',
                     r.text, re.M), r.text  # at least the /readyz probes
    assert re.search(r'^conclave_http_request_seconds_bucket\{path="[^"]+",le="0.001"\} \d+$',
                     r.text, re.M), r.text
    # every sample line is `name{labels} value`: the format Prometheus parses
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$',
                            line), line
    assert requests.get(f"{single.url(1)}/healthz", timeout=T).text == "ok\n"
    assert requests.get(f"{single.url(1)}/readyz", timeout=T).status_code == 200
    s = single.status(1)
    assert (s["id"], s["role"], s["leader_id"], s["term"]) == (1, "leader", 1, int(m.group(1)))
    assert s["commit_index"] >= s["applied_index"] >= 1
    members = requests.get(f"{single.url(1)}/v1/cluster/members", timeout=T).json()["members"]
    assert len(members) == 1
    assert members[0]["http_addr"] == single.m(1).http_addr
    assert members[0]["role"] == "voter"


def test_serializable_read_single(single, ns):
    put(single, ns + "s", "ser")
    r = get(single, ns + "s", consistency="serializable", raw="true")
    assert r.status_code == 200 and r.content == b"ser"
    r = get(single, ns + "s", consistency="linearizable", raw="true")
    assert r.status_code == 200 and r.content == b"ser"


def test_concurrent_clients_all_acknowledged(single, ns):
    """8 clients writing and reading at once: no fault is injected, so every write must
    be acknowledged (no 504 for a write that applied) and read back."""
    results, errors = {}, []

    def client(t):
        with requests.Session() as s:
            for i in range(25):
                key = f"{ns}{t}/{i}"
                try:
                    r = s.put(f"{single.url(1)}/v1/kv/{key}", data=key, timeout=15)
                    g = s.get(f"{single.url(1)}/v1/kv/{key}", params={"raw": "1"}, timeout=15)
                except requests.RequestException as e:
                    errors.append(f"{key}: {e!r}")
                    return
                results[key] = (r.status_code, r.text.strip()[:120], g.status_code, g.content)
                if r.status_code != 200 or g.status_code != 200:
                    return  # one failure is enough; do not wait out more timeouts

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors[:5]
    bad = {k: v for k, v in results.items() if v[0] != 200 or v[2] != 200 or v[3] != k.encode()}
    assert not bad, f"{len(bad)} failed, e.g. {list(bad.items())[:3]}"
    assert len(results) == 200
