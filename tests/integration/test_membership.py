"""test_membership.py -- membership changes on a live 3-node cluster, under write load.

Adds a learner (POST /v1/cluster/members, then a fresh process started with --join),
promotes it, removes a follower and then the leader itself (DELETE), while writer
threads keep writing unique keys through every member. Afterwards every acknowledged
write must be readable (linearizably) through the survivors, and every survivor must
list the same members with both addresses filled in by the replicated directory.
Also covers bad requests to the membership endpoints, and `--initial-cluster`.
"""

import threading
import time

import requests

from cluster import Member, free_ports, wait_until


class Joiner(Member):
    """A member started with --join: it lists the existing members and waits to be
    added, instead of bootstrapping a cluster of its own."""

    def argv(self):
        c = self.cluster
        args = [c.binary, "serve", "--join", "--id", str(self.id), "--name", self.name,
                "--data-dir", self.data_dir, "--http", self.http_addr,
                "--peer", self.peer_addr, "--tick-ms", str(c.tick_ms)]
        for m in c.members:
            if m.id != self.id:
                args += ["--member", f"{m.id},{m.name},{m.peer_addr},{m.http_addr}"]
        return args + list(c.extra_args)


def post(url, body=None, timeout=10):
    return requests.post(url, json=body, timeout=timeout)


def retry_until_ok(what, fn, timeout=20):
    """fn() -> response; retried on 409 (learner catching up) / 5xx until 2xx."""
    last = []

    def attempt():
        try:
            r = fn()
        except requests.RequestException as e:
            last[:] = [repr(e)]
            return None
        last[:] = [f"{r.status_code} {r.text.strip()}"]
        return r if 200 <= r.status_code < 300 else None

    try:
        return wait_until(what, attempt, timeout, interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer: {last}") from None


class Writers:
    """n threads writing unique keys round-robin over a changing set of members."""

    def __init__(self, cluster, n=3):
        self.c = cluster
        self.targets = [1, 2, 3]
        self.acked = {}  # key -> value
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(t,)) for t in range(n)]

    def run(self, t):
        s = requests.Session()
        deadline = time.monotonic() + 120
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline and i < 5000:
            with self.lock:
                targets = list(self.targets)
            m = targets[(t + i) % len(targets)]
            key, value = f"mw/{t}/{i}", f"{t}-{i}"
            try:
                r = s.put(f"{self.c.url(m)}/v1/kv/{key}", data=value, timeout=12)
                if r.status_code == 200:
                    with self.lock:
                        self.acked[key] = value
            except requests.RequestException:
                pass  # unknown outcome: not counted as acknowledged
            i += 1
            time.sleep(0.01)

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=30)
        assert not any(th.is_alive() for th in self.threads), "writers did not stop"

    def count(self):
        with self.lock:
            return len(self.acked)

    def use(self, targets):
        with self.lock:
            self.targets = list(targets)


def members_of(c, mid):
    r = requests.get(c.url(mid) + "/v1/cluster/members", timeout=5)
    r.raise_for_status()
    return {m["name"]: m for m in r.json()["members"]}


def agreed_leader(c, mids):
    """The leader all of mids name in one term, if one of them is it (Cluster.leader()
    counts a majority of every member it ever started, removed ones included)."""
    st = {m: c.status(m, timeout=2) for m in mids}
    leaders = {(s["leader_id"], s["term"]) for s in st.values()}
    if len(leaders) != 1:
        return None
    lid, _ = leaders.pop()
    return lid if lid in st and st[lid]["role"] == "leader" else None


def test_add_promote_remove_under_load(make_cluster):
    c = make_cluster(3)
    c.leader()
    http_port, peer_port = free_ports(2)
    n4 = Joiner(c, 4, http_port, peer_port)
    with Writers(c) as w:
        wait_until("some writes", lambda: w.count() >= 30, 20)

        # 1. add n4 as a learner (through a follower: forwarded to the leader)
        lid = c.leader()
        via = next(m for m in (1, 2, 3) if m != lid)
        r = post(c.url(via) + "/v1/cluster/members",
                 {"name": "n4", "peer_addr": n4.peer_addr, "http_addr": n4.http_addr,
                  "role": "learner"})
        assert r.status_code == 201, r.text
        assert r.json()["id"] == 4 and r.json()["role"] == "learner"
        c.members.append(n4)  # so teardown stops it too
        n4.spawn()
        before = dict(w.acked)
        some_key = next(iter(before))
        wait_until("n4 to catch up", lambda: c.get(4, some_key, {"consistency": "serializable"})
                   .status_code == 200, 30)

        # 2. promote it (409 while it still catches up: retried)
        r = retry_until_ok("promote n4", lambda: post(c.url(1) + "/v1/cluster/members/n4/promote"))
        assert r.json()["role"] == "voter"
        w.use([1, 2, 3, 4])

        # 3. remove a follower
        lid = c.leader()
        victim = next(m for m in (1, 2, 3) if m != lid)
        w.use([m for m in (1, 2, 3, 4) if m != victim])
        r = retry_until_ok(f"remove n{victim}",
                           lambda: requests.delete(f"{c.url(lid)}/v1/cluster/members/n{victim}",
                                                   timeout=10))
        assert r.json()["role"] == "removed"
        c.terminate(victim)
        n_before_leader_removal = w.count()

        # 4. remove the leader itself
        survivors = [m for m in (1, 2, 3, 4) if m != victim]
        lid = c.leader(among=survivors)
        rest = [m for m in survivors if m != lid]
        w.use(rest)
        r = retry_until_ok(f"remove leader n{lid}",
                           lambda: requests.delete(f"{c.url(lid)}/v1/cluster/members/n{lid}",
                                                   timeout=10))
        new_lid = wait_until("a leader among the 2 survivors",
                             lambda: agreed_leader(c, rest), 15)
        assert new_lid in rest
        c.terminate(lid)
        wait_until("writes after the leader left",
                   lambda: w.count() >= n_before_leader_removal + 20, 30)

    # every acknowledged write is there, read linearizably through each survivor
    for mid in rest:
        for key, value in list(w.acked.items())[::7]:
            r = c.get(mid, key)
            assert r.status_code == 200 and r.json()["value"] == value, (mid, key, r.text)
    for key, value in w.acked.items():
        r = c.get(rest[0], key)
        assert r.status_code == 200 and r.json()["value"] == value, (key, r.text)

    # the survivors agree on the membership, addresses included
    def agreed():
        views = [members_of(c, mid) for mid in rest]
        names = {f"n{m}" for m in rest}
        return all(set(v) == names and all(e["http_addr"] and e["peer_addr"] for e in v.values())
                   for v in views)
    wait_until("survivors to agree on 2 members with addresses", agreed, 15)


def test_membership_bad_requests(make_cluster):
    c = make_cluster(1)
    url = c.url(1) + "/v1/cluster/members"
    cases = [
        (post(url, None), 400),                                              # no body
        (requests.post(url, data=b"{not json", timeout=5), 400),
        (post(url, {"name": "x"}), 400),                                     # no peer_addr
        (post(url, {"name": "bad name", "peer_addr": "127.0.0.1:1"}), 400),  # charset
        (post(url, {"name": "x", "peer_addr": "127.0.0.1:1", "role": "boss"}), 400),
        (post(url, {"name": "n1", "peer_addr": "127.0.0.1:1"}), 409),        # exists
        (post(url, {"name": "y" * 64, "peer_addr": "127.0.0.1:1"}), 400),    # too long
        (post(url + "/nobody/promote"), 404),
        (requests.delete(url + "/nobody", timeout=5), 404),
        (requests.delete(url + "/n1", timeout=5), 409),                      # last voter
        (post(url + "/n1/frobnicate"), 404),
    ]
    for r, want in cases:
        assert r.status_code == want, (r.request.method, r.request.url, r.request.body,
                                       r.status_code, r.text)
        assert "error" in r.json()
    # strict reconfiguration: a 1-node cluster refuses a second voter that is not running
    # (it would need both to commit anything), takes it as a learner, and refuses to
    # promote a learner that never answered
    r = post(url, {"name": "ghost", "peer_addr": "127.0.0.1:1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "would_lose_quorum", r.text
    r = post(url, {"name": "ghost", "peer_addr": "127.0.0.1:1", "role": "learner"})
    assert r.status_code == 201, r.text
    r = post(url + "/ghost/promote")
    assert r.status_code == 409, r.text
    r = requests.delete(url + "/ghost", timeout=10)
    assert r.status_code == 200, r.text
    # the node still serves
    assert c.put(1, "still", "here")["revision"] > 0


def test_initial_cluster_flag(tmp_path):
    """Three nodes started etcd-style with --initial-cluster NAME=PEER,... elect a
    leader, and the directory fills in every member's HTTP address."""
    import subprocess
    from cluster import default_binary, _children
    ports = free_ports(6)
    spec = ",".join(f"n{i + 1}=127.0.0.1:{ports[2 * i + 1]}" for i in range(3))
    procs = []
    try:
        for i in range(3):
            d = tmp_path / f"n{i + 1}"
            d.mkdir()
            log = open(d / "log", "wb")
            p = subprocess.Popen([default_binary(), "serve", "--name", f"n{i + 1}",
                                  "--data-dir", str(d / "data"),
                                  "--http", f"127.0.0.1:{ports[2 * i]}",
                                  "--peer", f"127.0.0.1:{ports[2 * i + 1]}",
                                  "--initial-cluster", spec, "--heartbeat-ms", "50",
                                  "--log-format", "json"],
                                 stdout=log, stderr=subprocess.STDOUT, cwd=d)
            _children.add(p)
            procs.append(p)

        def addresses_known():
            r = requests.get(f"http://127.0.0.1:{ports[0]}/v1/cluster/members", timeout=2)
            ms = r.json()["members"]
            return len(ms) == 3 and all(m["http_addr"] for m in ms)
        wait_until("3 members with HTTP addresses", addresses_known, 30)
        r = requests.put(f"http://127.0.0.1:{ports[4]}/v1/kv/ic", data="ok", timeout=10)
        assert r.status_code == 200, r.text
        r = requests.get(f"http://127.0.0.1:{ports[2]}/v1/kv/ic?raw=true", timeout=10)
        assert r.content == b"ok"
        # the JSON log format is one JSON object per line
        import json
        for i in range(3):
            lines = (tmp_path / f"n{i + 1}" / "log").read_text().splitlines()
            assert lines and all(json.loads(line)["level"] for line in lines if line.startswith("{"))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
