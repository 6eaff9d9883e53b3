"""test_disk_full.py -- a full disk (ENOSPC) is a clean error, never a crash or a loss.

The server's env layer has a test-only switch: while the file named by
$CONCLAVE_TEST_DISK_FULL_FILE exists (a relative name: in each member's own directory),
every WAL write fails with ENOSPC. Then: the failed batch is retried in order (nothing
lost or reordered), new writes get 507 insufficient_storage at once, reads keep working,
a full leader hands leadership away, and everything resumes when space comes back.
"""

import os
import re
import threading
import time

import pytest
import requests

from cluster import wait_until

FLAG = "disk-full"


@pytest.fixture
def full_env(monkeypatch):
    monkeypatch.setenv("CONCLAVE_TEST_DISK_FULL_FILE", FLAG)


def storage_full(c, mid):
    text = requests.get(c.url(mid) + "/metrics", timeout=5).text
    return re.search(r"^conclave_storage_full 1$", text, re.M) is not None


def test_single_node_disk_full_then_space_again(full_env, make_cluster):
    c = make_cluster(1)
    u = c.url(1)
    assert requests.put(u + "/v1/kv/df/before", data="1", timeout=10).status_code == 200
    flag = os.path.join(c.m(1).dir, FLAG)
    open(flag, "w").close()
    first = {}
    th = threading.Thread(target=lambda: first.update(
        r=requests.put(u + "/v1/kv/df/first", data="2", timeout=30)))
    th.start()
    wait_until("the node to notice the full disk", lambda: storage_full(c, 1), 10)
    r = requests.put(u + "/v1/kv/df/refused", data="3", timeout=10)
    assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage", r.text
    r = requests.post(u + "/v1/txn", json={"success": [{"put": {"key": "df/t", "value": "x"}}]},
                      timeout=10)
    assert r.status_code == 507, r.text
    assert requests.get(u + "/v1/kv/df/before?raw=true", timeout=10).content == b"1"
    time.sleep(1)
    os.unlink(flag)                       # space is back: the retried batch goes through
    th.join(timeout=20)
    assert first["r"].status_code in (200, 504), first["r"].text
    wait_until("writes accepted again", lambda: requests.put(
        u + "/v1/kv/df/after", data="4", timeout=10).status_code == 200, 10)
    assert not storage_full(c, 1)
    # a restart recovers everything that was acknowledged; the refused write never existed
    c.terminate(1)
    c.restart(1)
    assert requests.get(u + "/v1/kv/df/after?raw=true", timeout=10).content == b"4"
    assert requests.get(u + "/v1/kv/df/refused", timeout=10).status_code == 404
    if first["r"].status_code == 200:
        assert requests.get(u + "/v1/kv/df/first?raw=true", timeout=10).content == b"2"


def test_full_leader_hands_over(full_env, make_cluster):
    c = make_cluster(3)
    lid = c.leader()
    open(os.path.join(c.m(lid).dir, FLAG), "w").close()
    # a write makes the leader notice; it then transfers leadership to a healthy member
    try:
        requests.put(c.url(lid) + "/v1/kv/h/trigger", data="x", timeout=15)
    except requests.RequestException:
        pass
    new = c.leader(not_id=lid, timeout=20)
    others = [m for m in (1, 2, 3) if m != lid]
    for i in range(20):
        r = requests.put(f"{c.url(others[i % 2])}/v1/kv/h/{i}", data=str(i), timeout=10)
        assert r.status_code == 200, r.text
    os.unlink(os.path.join(c.m(lid).dir, FLAG))

    def caught_up():
        r = c.get(lid, "h/19", {"consistency": "serializable"})
        return r.status_code == 200 and r.json()["value"] == "19"
    wait_until("the formerly full member to catch up", caught_up, 20)
    assert new != lid
