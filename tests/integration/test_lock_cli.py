"""test_lock_cli.py -- `conclave lock|lease|elect` and the C client library's watchdog
against real servers (docs/cli.md, docs/client.md).

Covers:
  - `conclave lock` runs CMD with CONCLAVE_LOCK_{NAME,TOKEN,LEASE,OWNER}, holds the lock
    while it runs, passes its exit status through (also 128+N for a signal), releases
    the lock and revokes its lease; 75 when busy with --wait 0, 127/126/2/3 as documented;
    -o json events on stderr.
  - Concurrent `conclave lock` runs never overlap (children log start/end times).
  - A SIGSTOPped holder: the server hands the lock to the waiting contender; when the
    paused process continues, its child is killed and it exits 76, and the stale token
    is refused by a fenced write (the resource's compare on the stored token).
  - 20 processes contend for one lock on 3 nodes (endpoint list), with kill -9 and
    SIGSTOP of holders: a counter protected by the lock and by a fencing compare never
    double-increments and never goes backwards (every increment is logged under its
    token in the same txn; the log must be the chain 0->1->2... in token order).
  - `conclave lease` grant/keepalive/get/ls/revoke, keepalive --forever, and
    `conclave elect` campaign/resign and --observe.

Every wait is bounded; every process started here is ended in a finally block.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import requests

from cluster import default_binary, wait_until

T = 10
BIN = default_binary()
LOCK_EXIT_NOT_ACQUIRED = 75
LOCK_EXIT_LOST = 76


def pad(n):
    return "%020d" % n


def run(args, endpoint, timeout=30, **kw):
    env = dict(os.environ, CONCLAVE_ENDPOINT=endpoint)
    env.pop("CONCLAVE_LOCK_TOKEN", None)
    return subprocess.run([BIN] + args, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def spawn(args, endpoint, **kw):
    env = dict(os.environ, CONCLAVE_ENDPOINT=endpoint)
    return subprocess.Popen([BIN] + args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finish(p, timeout=15):
    """Waits for p (SIGCONT + SIGKILL if it outlives timeout); returns (rc, out, err)."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            p.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
        p.kill()
        out, err = p.communicate(timeout=10)
        raise AssertionError(f"process {p.args} did not end in {timeout}s: {err}")
    return p.returncode, out, err


def end_all(*procs):
    """Ends every process still running (paused ones too): for finally blocks."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(timeout=10)


def fenced_txn(url, prefix, token, extra_success=()):
    """A write to the protected resource: succeeds only if no newer token wrote first."""
    txn = {"compare": [{"key": prefix + "fence", "target": "value", "op": "<",
                        "value": pad(token)}],
           "success": [{"put": {"key": prefix + "fence", "value": pad(token)}}]
           + list(extra_success),
           "failure": []}
    r = requests.post(url + "/v1/txn", json=txn, timeout=T)
    assert r.status_code == 200, r.text
    return r.json()["succeeded"]


# A child of `conclave lock`: a fenced write with its token, result in a file.
FENCE_PY = r'''
import http.client, json, os, sys
tok = int(os.environ["CONCLAVE_LOCK_TOKEN"])
prefix, out = sys.argv[1], sys.argv[2]
host, port = os.environ["CONCLAVE_ENDPOINT"].split(",")[0].rsplit(":", 1)
pad = lambda n: "%020d" % n
txn = {"compare": [{"key": prefix + "fence", "target": "value", "op": "<", "value": pad(tok)}],
       "success": [{"put": {"key": prefix + "fence", "value": pad(tok)}}], "failure": []}
c = http.client.HTTPConnection(host, int(port), timeout=5)
c.request("POST", "/v1/txn", body=json.dumps(txn), headers={"Content-Type": "application/json"})
r = json.loads(c.getresponse().read())
with open(out, "w") as f:
    f.write("%d %s\n" % (tok, r.get("succeeded")))
'''


def test_lock_runs_cmd_and_passes_exit_code(make_cluster, tmp_path):
    c = make_cluster(1)
    ep = c.m(1).http_addr
    u = c.url(1)
    # the environment, the exit status, the release and the lease revoke
    r = run(["lock", "job", "--ttl", "2000", "--", "sh", "-c",
             'echo "$CONCLAVE_LOCK_NAME $CONCLAVE_LOCK_TOKEN $CONCLAVE_LOCK_LEASE '
             '$CONCLAVE_LOCK_OWNER"; exit 7'], ep)
    assert r.returncode == 7, r.stderr
    name, token, lease, owner = r.stdout.split()
    assert name == "job" and int(token) > 0 and int(lease) > 0 and owner.count(":") == 2
    assert requests.get(u + "/v1/lock/job", timeout=T).status_code == 404   # released
    assert requests.get(f"{u}/v1/lease/{lease}", timeout=T).status_code == 404  # revoked
    # the lock is held while CMD runs, with the token CMD was given
    marker = tmp_path / "held"
    p = spawn(["lock", "job", "--owner", "me", "--", "sh", "-c",
               f'echo $CONCLAVE_LOCK_TOKEN > {marker}; sleep 1.5'], ep)
    try:
        wait_until("CMD started", lambda: marker.exists() and marker.read_text().strip(), 10)
        tok = int(marker.read_text())
        info = requests.get(u + "/v1/lock/job", timeout=T).json()
        assert [(h["owner"], h["token"]) for h in info["holders"]] == [("me", tok)]
        assert tok > int(token)
        # busy: --wait 0 does not run CMD and exits 75
        r = run(["lock", "job", "--wait", "0", "--", "sh", "-c", "echo ran"], ep)
        assert r.returncode == LOCK_EXIT_NOT_ACQUIRED and r.stdout == "", (r.returncode, r.stderr)
        assert "held by someone else" in r.stderr
        # a short wait runs out
        t0 = time.monotonic()
        r = run(["lock", "job", "--wait", "300", "--", "true"], ep)
        assert r.returncode == LOCK_EXIT_NOT_ACQUIRED and time.monotonic() - t0 >= 0.3, r.stderr
    finally:
        rc, _, err = finish(p)
    assert rc == 0, err
    # more exit statuses
    assert run(["lock", "job", "--", "true"], ep).returncode == 0
    assert run(["lock", "job", "--", "sh", "-c", "exit 3"], ep).returncode == 3
    assert run(["lock", "job", "--", "sh", "-c", "kill -TERM $$"], ep).returncode == 128 + 15
    r = run(["lock", "job", "--", "/nonexistent/cmd"], ep)
    assert r.returncode == 127 and "cannot run" in r.stderr
    r = run(["lock", "job", "--", str(tmp_path)], ep)    # a directory: not executable
    assert r.returncode == 126, r.stderr
    assert run(["lock", "job"], ep).returncode == 2                       # no -- CMD
    assert run(["lock", "--", "true"], ep).returncode == 2                # no NAME
    assert run(["lock", "job", "--ttl", "100", "--", "true"], ep).returncode == 2
    assert run(["lock", "a/b", "--", "true"], ep).returncode == 1         # refused name
    r = run(["lock", "job", "--", "true"], "127.0.0.1:1")
    assert r.returncode == 3 and "cannot reach" in r.stderr, r.stderr
    # an endpoint list with a dead node first still works (failover)
    r = run(["lock", "job", "--", "true"], f"127.0.0.1:1,{ep}")
    assert r.returncode == 0, r.stderr
    # -o json: events on stderr, stdout stays CMD's
    r = run(["lock", "job", "-o", "json", "--", "echo", "out"], ep)
    assert r.returncode == 0 and r.stdout == "out\n"
    events = [json.loads(line) for line in r.stderr.splitlines()]
    assert [e["event"] for e in events] == ["acquired", "released"]
    assert events[0]["token"] > tok and events[1]["exit_code"] == 0


def test_concurrent_locks_never_overlap(make_cluster, tmp_path):
    c = make_cluster(1)
    ep = c.m(1).http_addr
    log = tmp_path / "intervals"
    script = (f'echo "S $CONCLAVE_LOCK_TOKEN $(date +%s%N)" >> {log}; sleep 0.15; '
              f'echo "E $CONCLAVE_LOCK_TOKEN $(date +%s%N)" >> {log}')
    procs = []
    try:
        for i in range(6):
            procs.append(spawn(["lock", "overlap", "--ttl", "2000", "--wait", "30000", "--",
                                "sh", "-c", f"{script}; {script}"], ep))
        results = [finish(p, timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert all(rc == 0 for rc, _, _ in results), [err for _, _, err in results]
    starts, ends = {}, {}
    for line in log.read_text().splitlines():
        kind, tok, ns = line.split()
        (starts if kind == "S" else ends).setdefault(int(tok), []).append(int(ns))
    assert len(starts) == 6 and all(len(v) == 2 for v in starts.values())
    intervals = sorted((min(starts[t]), max(ends[t]), t) for t in starts)
    for (s1, e1, t1), (s2, e2, t2) in zip(intervals, intervals[1:]):
        assert e1 <= s2, f"token {t1} ran until {e1}, token {t2} started at {s2}"
        assert t1 < t2  # granted in token order


def test_paused_holder_loses_lock_and_its_stale_token_is_fenced(make_cluster, tmp_path):
    c = make_cluster(1)
    ep = c.m(1).http_addr
    u = c.url(1)
    fence = tmp_path / "fence.py"
    fence.write_text(FENCE_PY)
    requests.put(u + "/v1/kv/res/fence", data=pad(0), timeout=T)
    tok_a, pid_a = tmp_path / "tokA", tmp_path / "pidA"
    a = spawn(["lock", "L", "--ttl", "1000", "--grace", "1000", "--", "sh", "-c",
               f"echo $CONCLAVE_LOCK_TOKEN > {tok_a}; echo $$ > {pid_a}; exec sleep 60"], ep)
    b = None
    try:
        wait_until("A holds L", lambda: pid_a.exists() and pid_a.read_text().strip(), 10)
        child_a = int(pid_a.read_text())
        ta = int(tok_a.read_text())
        b_out = tmp_path / "B"
        b = spawn(["lock", "L", "--ttl", "5000", "--wait", "20000", "--", "/usr/bin/python3",
                   str(fence), "res/", str(b_out)], ep)
        wait_until("B queued", lambda: len(requests.get(u + "/v1/lock/L", timeout=T)
                                           .json()["queue"]) == 1, 10)
        a.send_signal(signal.SIGSTOP)       # A's watchdog stops; its child runs on
        t0 = time.monotonic()
        wait_until("B granted and fenced write done", lambda: b_out.exists(), 15)
        handoff = time.monotonic() - t0
        tb, ok_b = b_out.read_text().split()
        assert ok_b == "True" and int(tb) > ta
        assert requests.get(u + "/v1/lock/L", timeout=T).status_code in (200, 404)
        time.sleep(0.5)
        a.send_signal(signal.SIGCONT)
        rc_a, _, err_a = finish(a, timeout=10)
        assert rc_a == LOCK_EXIT_LOST, (rc_a, err_a)
        assert "LOST the lock 'L'" in err_a
        try:
            os.kill(child_a, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, "the paused holder's child survived"
        # the stale holder's write is refused by the resource; a fresh token passes
        assert not fenced_txn(u, "res/", ta)
        assert fenced_txn(u, "res/", int(tb) + 1000)
        rc_b, _, err_b = finish(b, timeout=20)
        assert rc_b == 0, err_b
        print(f"hand-off to the waiter {handoff:.2f}s after SIGSTOP (ttl 1.0s)")
    finally:
        end_all(a, b)


# The child of each contender: read the counter, wait a little, then a txn that
# increments it only if no newer token has written (fence) and nobody wrote in between
# (mod revision), and logs the step under its token in the same txn. argv[1] == "blind"
# drops both compares: the negative control, whose stale writes must be caught.
INCR_PY = r"""
import http.client, json, os, random, sys, time
tok = int(os.environ["CONCLAVE_LOCK_TOKEN"])
eps = os.environ["CONCLAVE_ENDPOINT"].split(",")
blind = sys.argv[1] == "blind"
pad = lambda n: "%020d" % n
def req(method, path, body=None):
    for ep in random.sample(eps, len(eps)):
        host, port = ep.rsplit(":", 1)
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=3)
            c.request(method, path, body=json.dumps(body) if body else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status in (502, 503):
                continue
            return r.status, json.loads(data)
        except (OSError, ValueError):
            continue
    return None, None
st, cur = req("GET", "/v1/kv/ctr/count")
if st != 200:
    sys.exit(5)
n = int(cur["value"])
time.sleep(random.uniform(float(sys.argv[2]), float(sys.argv[3])))
cmp = [{"key": "ctr/fence", "target": "value", "op": "<", "value": pad(tok)},
       {"key": "ctr/count", "target": "mod", "op": "=", "value": cur["mod_revision"]}]
txn = {"compare": [] if blind else cmp,
       "success": [{"put": {"key": "ctr/count", "value": str(n + 1)}},
                   {"put": {"key": "ctr/fence", "value": pad(tok)}},
                   {"put": {"key": "ctr/log/" + pad(tok), "value": "%d->%d" % (n, n + 1)}}],
       "failure": []}
st, r = req("POST", "/v1/txn", txn)
ok = st == 200 and r.get("succeeded")
with open(sys.argv[4], "a") as f:
    f.write("%d %d\n" % (tok, 1 if ok else 0))
sys.exit(0 if ok else 4)
"""


def child_of(pid):
    """The pid of the child `conclave lock` pid spawned (its CMD), or None."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def contend(c, tmp_path, seconds, mode, sleep_range, kill_ratio, seed):
    """Runs 20 `conclave lock counter` slots for `seconds` with faults on holders: kill -9
    of the `conclave lock` process, or a pause (SIGSTOP) of it AND its CMD's process group
    for longer than the ttl; CMD's group resumes first, so a stale writer gets its chance
    before `conclave lock` wakes up and kills it. Returns what the resource recorded."""
    lid = c.leader()
    u = c.url(lid)
    eps = ",".join(m.http_addr for m in c.members)
    incr = tmp_path / "incr.py"
    incr.write_text(INCR_PY)
    results = tmp_path / "writes"     # one line per txn: token, 1 applied / 0 refused
    c.put(lid, "ctr/count", "0")
    c.put(lid, "ctr/fence", pad(0))
    deadline = time.monotonic() + seconds
    procs = {}          # owner -> Popen, while it runs
    codes = {}          # owner -> exit code
    faults = {}         # owner -> "kill" | "stop"
    errs = {}           # owner -> the end of its stderr, to explain an odd exit code
    mu = threading.Lock()
    rng = random.Random(seed)

    def slot(i):
        for it in range(1000):
            if time.monotonic() >= deadline:
                return
            owner = f"s{i}-{it}"
            p = spawn(["lock", "counter", "--ttl", "1000", "--wait", "8000", "--grace", "300",
                       "--owner", owner, "--endpoint", eps, "--", "/usr/bin/python3", str(incr),
                       mode, str(sleep_range[0]), str(sleep_range[1]), str(results)], eps)
            with mu:
                procs[owner] = p
            try:
                _, err = p.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGCONT)
                p.kill()
                _, err = p.communicate(timeout=10)
                err = "killed after 40 s\n" + err
            with mu:
                procs.pop(owner, None)
                codes[owner] = p.returncode
                errs[owner] = err[-600:]

    def resume(p, kid):
        if kid:
            signal_group(kid, signal.SIGCONT)
            time.sleep(0.1)
        p.send_signal(signal.SIGCONT)

    def chaos():
        timers = []
        while time.monotonic() < deadline - 2:
            time.sleep(rng.uniform(0.5, 1.2))
            try:
                holders = requests.get(u + "/v1/lock/counter", timeout=2).json().get("holders", [])
            except (requests.RequestException, ValueError):
                continue
            if not holders:
                continue
            owner = holders[0]["owner"]
            with mu:
                p = procs.get(owner)
                if p is None or owner in faults or p.poll() is not None:
                    continue
                kind = "kill" if rng.random() < kill_ratio else "stop"
                faults[owner] = kind
            if kind == "kill":
                p.send_signal(signal.SIGKILL)
                continue
            kid = child_of(p.pid)
            p.send_signal(signal.SIGSTOP)
            if kid:
                signal_group(kid, signal.SIGSTOP)
            t = threading.Timer(rng.uniform(1.6, 2.4), resume, (p, kid))
            t.start()
            timers.append(t)
        for t in timers:
            t.join(timeout=5)

    threads = [threading.Thread(target=slot, args=(i,)) for i in range(20)]
    ch = threading.Thread(target=chaos)
    try:
        for th in threads:
            th.start()
        ch.start()
        ch.join(timeout=seconds + 30)
        for th in threads:
            th.join(timeout=seconds + 60)
        assert not ch.is_alive() and not any(th.is_alive() for th in threads)
    finally:
        with mu:
            left = list(procs.values())
        for p in left:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
    time.sleep(1.5)   # children orphaned by kill -9 finish their txn
    r = requests.get(u + "/v1/kv/ctr/log/", params={"prefix": "true"}, timeout=T)
    assert r.status_code == 200, r.text
    steps = sorted((int(kv["key"].rsplit("/", 1)[1]), kv["value"], kv["mod_revision"])
                   for kv in r.json()["kvs"])
    count = int(c.get(lid, "ctr/count").json()["value"])
    refused = sum(1 for line in (results.read_text().splitlines() if results.exists() else [])
                  if line.split()[1] == "0")
    return steps, count, codes, faults, refused, errs


def counter_problems(steps, count):
    """What is wrong with the resource's record: the increments, in token order, must be
    the chain 0->1, 1->2, ... committed in that order, and end at the counter's value."""
    problems = []
    for i, (tok, step, _) in enumerate(steps):
        if step != f"{i}->{i + 1}":
            problems.append(f"increment #{i} by token {tok} was {step}: double or backwards")
    revs = [rev for _, _, rev in steps]
    if revs != sorted(revs):
        problems.append("increments committed out of token order")
    if count != len(steps):
        problems.append(f"counter {count} after {len(steps)} increments")
    return problems


def test_waiter_paused_through_its_grant_and_deadline_is_not_acquired(make_cluster, tmp_path):
    """A waiter paused while queued is granted the lock, but its lease dies before it can
    confirm the grant, and its --wait runs out meanwhile: it never ran CMD, so it gives the
    grant back and exits 75 (not acquired), not 1. (Seen in the 20-contender test.)"""
    c = make_cluster(1)
    ep = c.m(1).http_addr
    u = c.url(1)
    pid_a = tmp_path / "pidA"
    a = spawn(["lock", "L", "--ttl", "5000", "--", "sh", "-c",
               f"echo $$ > {pid_a}; exec sleep 60"], ep)
    b = None
    try:
        wait_until("A holds L", lambda: pid_a.exists() and pid_a.read_text().strip(), 10)
        b = spawn(["lock", "L", "--ttl", "1000", "--wait", "1500", "--owner", "b", "--",
                   "sh", "-c", "echo ran"], ep)
        wait_until("B queued", lambda: len(requests.get(u + "/v1/lock/L", timeout=T)
                                           .json()["queue"]) == 1, 10)
        b.send_signal(signal.SIGSTOP)
        os.kill(int(pid_a.read_text()), signal.SIGTERM)   # A's CMD ends: A releases
        rc_a, _, err_a = finish(a)
        assert rc_a == 128 + signal.SIGTERM, err_a
        # the grant goes to the paused B, whose lease (ttl 1 s) then ends
        wait_until("the grant to B to die with its lease",
                   lambda: requests.get(u + "/v1/lock/L", timeout=T).status_code == 404, 10)
        time.sleep(0.5)                                   # past B's --wait too
        b.send_signal(signal.SIGCONT)
        rc_b, out_b, err_b = finish(b)
        assert rc_b == LOCK_EXIT_NOT_ACQUIRED and out_b == "", (rc_b, err_b)
        assert "'L' not acquired: --wait ran out" in err_b, err_b
    finally:
        end_all(a, b)


def test_twenty_contenders_with_kills_and_pauses(make_cluster, tmp_path):
    """20 `conclave lock counter` processes at a time on 3 nodes (given all 3
    endpoints); holders are killed (-9) or paused with their CMD past the ttl. The counter,
    protected by the lock and by fencing tokens, never double-increments and never goes
    backwards, and paused holders exit with the lost code."""
    c = make_cluster(3)
    seconds = float(os.environ.get("LOCK_CONTENTION_SECONDS", "20"))
    seed = int(os.environ.get("LOCK_CONTENTION_SEED", "5"))
    steps, count, codes, faults, refused, errs = contend(c, tmp_path, seconds, "fenced", (0.05, 0.4),
                                                   0.4, seed)
    problems = counter_problems(steps, count)
    assert not problems, problems
    hist = {}
    for owner, rc in codes.items():
        hist[rc] = hist.get(rc, 0) + 1
    stopped = [o for o, k in faults.items() if k == "stop"]
    killed = [o for o, k in faults.items() if k == "kill"]
    lost = [o for o in stopped if codes.get(o) == LOCK_EXIT_LOST]
    print(f"{len(codes)} runs in {seconds:.0f}s (seed {seed}), {count} increments, "
          f"{len(killed)} holders killed, {len(stopped)} paused ({len(lost)} exited "
          f"{LOCK_EXIT_LOST}), {refused} stale writes refused by the fence; exit codes {hist}")
    assert count >= 20, hist
    assert len(killed) + len(stopped) >= 4, faults
    # A paused holder lost its lock (76), or its CMD was done before that mattered (0/4),
    # or the grant had not reached it yet: on waking it found the grant's lease gone, gave
    # it back and queued again (then 0/4, or 75 when --wait ran out). Never anything else.
    odd = {o: (codes.get(o), errs.get(o)) for o in stopped
           if codes.get(o) not in (LOCK_EXIT_LOST, 0, 4, LOCK_EXIT_NOT_ACQUIRED)}
    assert not odd, odd
    assert len(stopped) == 0 or len(lost) >= 1
    allowed = {0, 4, LOCK_EXIT_LOST, LOCK_EXIT_NOT_ACQUIRED, -signal.SIGKILL}
    assert set(hist) <= allowed, {o: (rc, errs.get(o)) for o, rc in codes.items()
                                  if rc not in allowed}
    assert all(codes.get(o) == -signal.SIGKILL for o in killed)


def test_contention_check_catches_unfenced_writes(make_cluster, tmp_path):
    """Negative control: the same run with writers that skip the fence (and the compare on
    the counter's revision), paused mid-write. The lock alone cannot stop a paused writer,
    so the checker above must find a double or backward increment."""
    c = make_cluster(3)
    steps, count, codes, faults, _, _ = contend(c, tmp_path, 12, "blind", (0.3, 0.6), 0.0, 11)
    problems = counter_problems(steps, count)
    print(f"unfenced: {count} increments, {len(faults)} pauses, problems found: {problems[:3]}")
    assert problems, "stale unfenced writes went unnoticed: the check cannot fail"


def test_lease_commands(make_cluster):
    c = make_cluster(1)
    ep = c.m(1).http_addr
    u = c.url(1)
    r = run(["lease", "grant", "1500"], ep)
    assert r.returncode == 0 and r.stdout.startswith("lease "), r.stderr
    lid = int(r.stdout.split()[1])
    r = run(["lease", "grant", "60000", "-o", "json"], ep)
    other = json.loads(r.stdout)["id"]
    assert run(["lease", "ls"], ep).stdout.split() == [str(lid), str(other)]
    assert json.loads(run(["lease", "ls", "-o", "json"], ep).stdout)["leases"] == [lid, other]
    r = run(["lease", "get", str(lid)], ep)
    assert r.returncode == 0 and "ttl 1500 ms" in r.stdout and "remaining" in r.stdout
    assert json.loads(run(["lease", "get", str(lid), "-o", "json"], ep).stdout)["ttl_ms"] == 1500
    assert run(["lease", "keepalive", str(lid)], ep).returncode == 0
    # --forever keeps it alive past its ttl; Ctrl-C stops (exit 0)
    requests.put(f"{u}/v1/kv/eph?lease={lid}", data="x", timeout=T)
    p = spawn(["lease", "keepalive", str(lid), "--forever"], ep)
    try:
        time.sleep(3)
        assert c.get(1, "eph").status_code == 200
        p.send_signal(signal.SIGINT)
        rc, out, err = finish(p)
        assert rc == 0 and "kept alive" in out, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    wait_until("the lease to expire", lambda: c.get(1, "eph").status_code == 404, 5)
    # keepalive of an expired lease fails; --forever ends by itself
    r = run(["lease", "keepalive", str(lid)], ep)
    assert r.returncode == 1 and "lease" in r.stderr
    r = run(["lease", "keepalive", str(lid), "--forever"], ep, timeout=10)
    assert r.returncode == 1 and "is gone" in r.stderr
    r = run(["lease", "revoke", str(other)], ep)
    assert r.returncode == 0 and "revoked" in r.stdout
    assert run(["lease", "get", str(other)], ep).returncode == 1
    assert run(["lease", "grant", "10"], ep).returncode == 2
    assert run(["lease", "frob"], ep).returncode == 2
    assert run(["lease", "get"], ep).returncode == 2
    assert run(["lease", "ls"], "127.0.0.1:1").returncode == 3


def test_elect_campaign_resign_and_observe(make_cluster):
    c = make_cluster(1)
    ep = c.m(1).http_addr
    obs = spawn(["elect", "svc", "--observe", "--interval", "100", "-o", "json"], ep)
    seen = []   # the observer's leaders, as it prints them

    def read_observer():
        for line in obs.stdout:
            seen.append((json.loads(line)["leader"] or {}).get("owner"))

    reader = threading.Thread(target=read_observer)
    reader.start()
    wait_until("the observer's first report", lambda: seen, 10)
    e1 = spawn(["elect", "svc", "--owner", "n1", "--value", "10.0.0.1:80", "--ttl", "1000"], ep)
    e2 = None
    try:
        def leader():
            r = requests.get(c.url(1) + "/v1/election/svc", timeout=T)
            return r.status_code == 200 and (r.json().get("leader") or {}).get("owner")
        wait_until("n1 elected", lambda: leader() == "n1", 10)
        wait_until("the observer to see n1", lambda: "n1" in seen, 10)
        e2 = spawn(["elect", "svc", "--owner", "n2", "--value", "10.0.0.2:80", "--ttl", "1000",
                    "-o", "json"], ep)
        wait_until("n2 queued", lambda: len(requests.get(c.url(1) + "/v1/election/svc",
                                                         timeout=T).json()["queue"]) == 1, 10)
        e1.send_signal(signal.SIGINT)
        rc1, out1, err1 = finish(e1)
        assert rc1 == 0 and "elected: n1" in out1 and "resigned" in out1, (out1, err1)
        wait_until("n2 elected", lambda: leader() == "n2", 10)
        # pause n2 past its ttl: it is not the leader any more when it wakes, and says so
        e2.send_signal(signal.SIGSTOP)
        wait_until("n2's lease to expire", lambda: leader() != "n2", 10)
        e2.send_signal(signal.SIGCONT)
        rc2, out2, err2 = finish(e2)
        assert rc2 == LOCK_EXIT_LOST, (rc2, out2, err2)
        events = [json.loads(line)["event"] for line in out2.splitlines()]
        assert events == ["elected", "lost"]
        wait_until("the observer to see no leader", lambda: seen[-1] is None, 10)
        obs.send_signal(signal.SIGINT)
        assert obs.wait(timeout=10) == 0, obs.stderr.read()
        reader.join(timeout=10)
        assert seen[0] is None and seen.index("n1") < seen.index("n2") < len(seen) - 1, seen
        assert all(a != b for a, b in zip(seen, seen[1:])), seen   # changes only
    finally:
        end_all(obs, e1, e2)
        reader.join(timeout=10)


if __name__ == "__main__":
    sys.exit("run with: /usr/bin/python3 -m pytest tests/integration/test_lock_cli.py")
