"""test_v3_compat.py -- /v3/kv/put|range|deleterange answer exactly like etcd 3.4's
JSON gateway. The same request sequence goes to a real etcd (Debian's etcd-server, run
on loopback in the test's tmp dir) and to Conclave; the answers must be equal apart
from the header's cluster_id, member_id and raft_term, and absolute revision numbers:
Conclave's own services (the ID service's worker claim) may write system keys under
/conclave/ at start-up, so revisions are compared by their order of first appearance.
Skipped if etcd is not installed (scripts/deps.sh installs it)."""

import base64
import os
import shutil
import subprocess

import pytest
import requests

from cluster import _children, free_ports, wait_until


def b(s):
    return base64.b64encode(s.encode()).decode()


REQUESTS = [
    ("put", {"key": b("a"), "value": b("1")}),
    ("put", {"key": b("b"), "value": b("2")}),
    ("put", {"key": b("a"), "value": b("3"), "prev_kv": True}),
    ("put", {"key": b("c"), "value": ""}),
    ("range", {"key": b("a")}),
    ("range", {"key": b("a"), "range_end": b("z")}),
    ("range", {"key": b("a"), "range_end": b("z"), "limit": 1}),
    ("range", {"key": b("a"), "range_end": b("z"), "keys_only": True}),
    ("range", {"key": b("a"), "range_end": b("z"), "count_only": True}),
    ("range", {"key": b("a"), "range_end": b("\0")}),   # every key >= "a"
    ("range", {"key": b("a"), "revision": "FIRST_PUT"}),
    ("range", {"key": b("a"), "serializable": True}),
    ("range", {"key": b("missing")}),
    ("deleterange", {"key": b("b")}),
    ("deleterange", {"key": b("a"), "range_end": b("z"), "prev_kv": True}),
    ("deleterange", {"key": b("none")}),
    ("range", {"key": b("a"), "range_end": b("z")}),
]


REV_FIELDS = ("revision", "create_revision", "mod_revision")


def normalize(j, ranks):
    """Drops per-cluster ids; replaces revisions by their rank of first appearance."""
    def walk(x):
        if isinstance(x, dict):
            for k, v in list(x.items()):
                if k in REV_FIELDS and isinstance(v, str):
                    x[k] = ranks.setdefault(v, len(ranks) + 1)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    h = j.get("header")
    if h:
        for k in ("cluster_id", "member_id", "raft_term"):
            h.pop(k, None)
    walk(j)
    return j


@pytest.mark.skipif(not shutil.which("etcd"), reason="etcd not installed (scripts/deps.sh)")
def test_same_answers_as_etcd(make_cluster, tmp_path):
    c = make_cluster(1)
    client, peer = free_ports(2)
    etcd = subprocess.Popen(
        ["etcd", "--data-dir", str(tmp_path / "etcd"), "--name", "e1",
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"e1=http://127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, ETCD_UNSUPPORTED_ARCH=os.environ.get("ETCD_UNSUPPORTED_ARCH", "")))
    _children.add(etcd)
    try:
        eurl = f"http://127.0.0.1:{client}"
        wait_until("etcd", lambda: requests.get(eurl + "/health", timeout=2).ok, 30)
        # let Conclave's start-up writes (system keys) finish: the revision holds still
        def rev():
            return requests.post(f"{c.url(1)}/v3/kv/range", json={"key": b("x")},
                                 timeout=10).json()["header"]["revision"]
        last = [rev()]

        def settled():
            import time
            time.sleep(1)
            now = rev()
            same = now == last[0]
            last[0] = now
            return same
        wait_until("Conclave's revision to hold still", settled, 20, interval=0)
        ranks = ({}, {})          # etcd's, Conclave's
        first_put = [None, None]
        for verb, body in REQUESTS:
            out = []
            for side, url in enumerate((eurl, c.url(1))):
                b_ = dict(body)
                if b_.get("revision") == "FIRST_PUT":
                    b_["revision"] = first_put[side]
                r = requests.post(f"{url}/v3/kv/{verb}", json=b_, timeout=10)
                j = r.json()
                if verb == "put" and first_put[side] is None:
                    first_put[side] = j["header"]["revision"]
                out.append((r.status_code, normalize(j, ranks[side])))
            assert out[1] == out[0], (verb, body)
        # errors have etcd's shape and gRPC codes too
        for body in ({"key": "!!!"}, {}):
            k = requests.post(f"{c.url(1)}/v3/kv/range", json=body, timeout=10)
            assert k.status_code == 400 and k.json()["code"] == 3, k.text
        k = requests.post(f"{c.url(1)}/v3/kv/range", json={"key": b("a"), "revision": "99"},
                          timeout=10)
        assert k.json()["code"] == 11
    finally:
        etcd.terminate()
        etcd.wait(timeout=15)
