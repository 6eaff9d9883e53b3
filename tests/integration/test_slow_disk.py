"""A follower on a slow disk stops writing its WAL on the loop thread.

Followers write and fdatasync their WAL on the event loop while the storage worker is
idle (storage_write_inline, docs/storage.md). A sync slower than NODE_INLINE_SLOW_MS
(20 ms) would keep the loop from answering heartbeats for that long, so the node sends
its writes back through the worker for 10 s and counts it in
conclave_wal_inline_backoffs_total. The slow disk is serve's --test-fsync-delay-file.
"""
import os
import re

import requests

from cluster import wait_until

DELAY_FILE = "fsync-delay-ms"  # relative to each member's directory (its cwd)


def inline_backoffs(c, mid):
    text = requests.get(c.url(mid) + "/metrics", timeout=5).text
    m = re.search(r"^conclave_wal_inline_backoffs_total (\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def test_slow_follower_disk_moves_writes_off_the_loop(make_cluster):
    c = make_cluster(3, extra_args=["--test-fsync-delay-file", DELAY_FILE])
    lid = c.leader()
    fid = next(m for m in (1, 2, 3) if m != lid)
    u = c.url(lid)
    for i in range(5):  # a healthy disk: no back-off anywhere
        assert requests.put(f"{u}/v1/kv/sd/fast{i}", data="x", timeout=10).status_code == 200
    assert all(inline_backoffs(c, m) == 0 for m in (1, 2, 3))
    with open(os.path.join(c.m(fid).dir, DELAY_FILE), "w") as f:
        f.write("60\n")
    for i in range(10):
        assert requests.put(f"{u}/v1/kv/sd/slow{i}", data="y", timeout=10).status_code == 200
    wait_until("the slow follower to back off", lambda: inline_backoffs(c, fid) >= 1, 10)
    assert inline_backoffs(c, lid) == 0  # the leader never writes inline
    os.unlink(os.path.join(c.m(fid).dir, DELAY_FILE))
    # the follower still has every write (a serializable read there)
    wait_until("the follower to catch up", lambda: requests.get(
        f"{c.url(fid)}/v1/kv/sd/slow9?raw=true&consistency=serializable",
        timeout=5).content == b"y", 10)
    assert c.leader() == lid  # the slow syncs cost no election
