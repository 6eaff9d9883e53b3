"""test_snapshots.py -- state machine snapshots on real servers.

With --snapshot-every 50 the members snapshot often (written by a worker thread, then
the WAL is compacted behind them). A follower kept down while 400 writes happen must
catch up by InstallSnapshot (the leader no longer has the entries it missed), and a
whole-cluster restart must come back from snapshot + WAL with every write intact.
"""

import re

import requests

from cluster import wait_until


def metric(c, mid, name):
    text = requests.get(c.url(mid) + "/metrics", timeout=5).text
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def test_follower_catches_up_by_snapshot_and_restart_recovers(make_cluster):
    c = make_cluster(3, extra_args=("--snapshot-every", "50"))
    lid = c.leader()
    victim = next(m for m in (1, 2, 3) if m != lid)
    c.kill9(victim)
    s = requests.Session()
    for i in range(400):
        r = s.put(f"{c.url(lid)}/v1/kv/snap/{i:04d}", data=f"v{i}", timeout=10)
        assert r.status_code == 200, r.text
    wait_until("leader snapshots", lambda: metric(c, lid, "conclave_snapshots_taken_total") >= 3,
               15)
    c.restart(victim)

    def caught_up():
        r = c.get(victim, "snap/0399", {"consistency": "serializable"})
        return r.status_code == 200 and r.json()["value"] == "v399"
    wait_until("the follower to catch up", caught_up, 30)
    assert metric(c, victim, "conclave_snapshots_installed_total") >= 1
    r = c.get(victim, "snap/", {"prefix": "true", "count_only": "true",
                                "consistency": "serializable"})
    assert r.json()["count"] == 400, r.text

    # everyone restarts: snapshot + WAL replay give back the same state
    for m in (1, 2, 3):
        c.terminate(m)
    for m in (1, 2, 3):
        c.restart(m, wait=False)
    c.wait_ready()
    lid = c.leader()
    r = c.get(lid, "snap/", {"prefix": "true", "count_only": "true"})
    assert r.json()["count"] == 400, r.text
    assert c.get(lid, "snap/0123").json()["value"] == "v123"
