"""test_snapshots.py -- state machine snapshots on real servers.

With --snapshot-every 50 the members snapshot often (encoded and written by a fork()ed
child, or with --snapshot-encode loop encoded on the loop and written by a worker
thread; then the WAL is compacted behind them). A follower kept down while 400 writes
happen must catch up by InstallSnapshot (the leader no longer has the entries it
missed), and a whole-cluster restart must come back from snapshot + WAL with every
write intact. A server killed with -9 while its snapshot child works takes the child
with it (the child would otherwise keep the ports and the data directory).
"""

import os
import re
import signal
import time

import pytest
import requests

from cluster import wait_until


def metric(c, mid, name):
    text = requests.get(c.url(mid) + "/metrics", timeout=5).text
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("encode", ["child", "loop"])
def test_follower_catches_up_by_snapshot_and_restart_recovers(make_cluster, encode):
    c = make_cluster(3, extra_args=("--snapshot-every", "50", "--snapshot-encode", encode))
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
    logs = b"".join(c.m(m).log_text() for m in (1, 2, 3))
    assert (b"by a child process" in logs) == (encode == "child"), logs[-3000:]
    assert (b"encoded on the loop" in logs) == (encode == "loop"), logs[-3000:]


def children_of(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


def test_snapshot_child_dies_with_a_killed_server(make_cluster):
    delay = "fsync-delay-ms"  # serve's --test-fsync-delay-file, relative to the member dir
    every = 40
    c = make_cluster(1, extra_args=("--snapshot-every", str(every),
                                    "--test-fsync-delay-file", delay))
    u = c.url(1)
    s = requests.Session()
    i = 0
    while metric(c, 1, "conclave_raft_applied_index") % every < every - 3 or i < 5:
        assert s.put(f"{u}/v1/kv/k{i}", data="v", timeout=10).status_code == 200
        i += 1
    with open(os.path.join(c.m(1).dir, delay), "w") as f:
        f.write("3000\n")  # every fsync, the child's too, now takes 3 s
    time.sleep(0.3)  # the knob file is re-read at most every 100 ms
    pid = c.m(1).proc.pid
    kids = []
    for j in range(i, i + 6):
        s.put(f"{u}/v1/kv/k{j}", data="v", timeout=30)
        kids = children_of(pid)
        if kids:
            break
    assert kids, "no snapshot child appeared"
    # the child keeps no socket of the server's open (clients and peers would see no FIN
    # from a connection the server closes while the child runs)
    links = []
    for fd in os.listdir(f"/proc/{kids[0]}/fd"):
        try:
            links.append(os.readlink(f"/proc/{kids[0]}/fd/{fd}"))
        except OSError:
            pass
    assert not [x for x in links if x.startswith("socket:")], links
    c.kill9(1)
    deadline = time.monotonic() + 1  # well inside the child's own 3 s sync
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover = [k for k in kids if alive(k)]
    for k in leftover:
        os.kill(k, signal.SIGKILL)
    assert not leftover, f"snapshot child {leftover} outlived its server"
    os.unlink(os.path.join(c.m(1).dir, delay))
    c.restart(1)  # ports and data directory are free; every acknowledged write is there
    r = requests.get(f"{u}/v1/kv/k?prefix=true&count_only=true", timeout=10)
    assert r.json()["count"] >= i, r.text
