"""test_chaos.py -- the bounded chaos pass of `make test`: the register workload on three
real servers under the kill, pause and partition nemeses must show 0 anomalies, no
server problems (sanitizer reports, unexpected deaths, unclean exits) and recover after
the final heal; and the negative control -- the same workload and the partition
nemesis against servers started with --test-stale-reads -- must be flagged as not
linearizable, on the deterministic stale-read probe at least.

Also: the fault proxy's pass / blackhole / drop modes on plain sockets; and short phases
(CHAOS_SHORT_SECONDS, 6 s of workload) of the lock workload under pause, ids under
clock-jump, watch under kill and register under slow-disk (workloads.py, checks.py;
their checkers' negative controls are in test_checks.py).

Budget: about 2.5 minutes in all on the 2-core machine with the ASan build (each register
run is CHAOS_SECONDS of workload, 14 s by default, plus start-up, recovery and final
reads). Every run's history.jsonl, summary.txt and member logs stay in the test's tmp dir
(run-tests.sh: build/asan/test-logs/chaos/); a failure prints the summary, the shrunk
violation window, and where the files are.
"""

import os
import socket
import threading
import time

import pytest

import harness
import lincheck
from proxy import BLACKHOLE, DROP, PASS, Proxy

SECONDS = float(os.environ.get("CHAOS_SECONDS", "14"))
SHORT = float(os.environ.get("CHAOS_SHORT_SECONDS", "6"))   # the new workloads / nemeses


def _run(tmp_path, **kw):
    cfg = harness.Config(**kw)
    return harness.run(cfg, tmp_path / "run", log=print)


def _assert_passed(r, min_faults=1):
    """Any workload: no anomaly, no server problem, served again after the heal."""
    s = r.summary
    msg = "\n" + harness.summary_text(r)
    assert s["passed"] and s["anomalies"] == 0, msg
    assert s["faults"] >= min_faults, msg
    return s, msg


def _assert_clean(r, min_faults=2):
    s = r.summary
    msg = "\n" + harness.summary_text(r)
    assert s["check"] == "linearizable" and s["anomalies"] == 0, msg
    assert not s["server_problems"], msg
    assert s["recovered"], msg
    assert s["faults"] >= min_faults, msg
    assert s["ok"] >= 300, "the workload hardly ran" + msg
    # the workload had cas that swapped and cas that did not, and reads of real values
    by = s["by_op"]
    assert by["cas"]["ok"] > 20 and by["read"]["ok"] > 100, msg


# ---- the proxy on its own ---------------------------------------------------------------


class _Echo:
    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.addr = f"127.0.0.1:{self.ls.getsockname()[1]}"
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        for _ in range(100):
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        for _ in range(10_000):
            try:
                d = c.recv(4096)
            except OSError:
                return
            if not d:
                return
            c.sendall(d)

    def close(self):
        self.ls.close()
        for c in self.conns:
            c.close()


def _recv_exact(s, n, timeout):
    s.settimeout(timeout)
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise ConnectionError("closed")
        out += d
    return out


def test_proxy_pass_blackhole_drop():
    echo = _Echo()
    p = Proxy()
    addr = p.add_link("a", echo.addr)
    host, port = addr.split(":")
    p.start()
    try:
        s = socket.create_connection((host, int(port)), timeout=2)
        s.sendall(b"hello")
        assert _recv_exact(s, 5, 2) == b"hello"
        # blackhole: nothing moves, the connection stays open ...
        p.set_modes({"a": BLACKHOLE})
        s.sendall(b"stuck")
        with pytest.raises(socket.timeout):
            _recv_exact(s, 5, 0.5)
        # ... a new connection is accepted but goes nowhere ...
        s2 = socket.create_connection((host, int(port)), timeout=2)
        s2.sendall(b"later")
        with pytest.raises(socket.timeout):
            _recv_exact(s2, 5, 0.3)
        # ... and healing delivers what was held, on both
        p.set_modes({"a": PASS})
        assert _recv_exact(s, 5, 2) == b"stuck"
        assert _recv_exact(s2, 5, 2) == b"later"
        # drop: open connections die, new ones are refused at once
        p.set_modes({"a": DROP})
        with pytest.raises((ConnectionError, OSError)):
            s.sendall(b"x")
            _recv_exact(s, 1, 2)
        with pytest.raises((ConnectionError, OSError)):   # at connect or at once after
            s3 = socket.create_connection((host, int(port)), timeout=2)
            s3.sendall(b"x")
            _recv_exact(s3, 1, 2)
            s3.close()
        p.heal()
        s4 = socket.create_connection((host, int(port)), timeout=2)
        s4.sendall(b"again")
        assert _recv_exact(s4, 5, 2) == b"again"
        st = p.stats()["a"]
        assert st["refused"] >= 1 and st["bytes"] >= 20, st
        with pytest.raises(AssertionError):
            p.set_modes({"nope": PASS})
        for x in (s, s2, s4):
            x.close()
    finally:
        p.stop()
        echo.close()


# ---- nemeses against real servers ---------------------------------------------------------


def test_kill_nemesis(tmp_path):
    r = _run(tmp_path, nemesis="kill", seconds=SECONDS)
    _assert_clean(r)
    assert r.summary["leader_changes"] >= 1, harness.summary_text(r)   # first kill: the leader


def test_pause_nemesis(tmp_path):
    r = _run(tmp_path, nemesis="pause", seconds=SECONDS)
    _assert_clean(r)
    assert r.summary["leader_changes"] >= 1, harness.summary_text(r)   # first pause: the leader


def test_partition_nemesis(tmp_path):
    r = _run(tmp_path, nemesis="partition", seconds=SECONDS + 4)
    _assert_clean(r, min_faults=3)
    # the probe ran as designed: a new leader acked probe-b while the old one was cut off,
    # so a stale read would have been caught (see the negative control below)
    pr = r.summary["probe"]
    assert pr and pr["acked_a"] and pr["acked_b"] and pr["new_leader"] != pr["old_leader"], pr
    assert not (pr["read_status"] == "ok" and pr["read_value"] == "probe-a"), pr


def test_negative_control_stale_reads_are_caught(tmp_path):
    """Servers that skip ReadIndex (--test-stale-reads) under the partition nemesis: the
    checker must say "NOT linearizable" (not "unknown (budget)") and show the probe's
    stale read: probe-b acked by the new leader, then probe-a read through the old one."""
    t0 = time.monotonic()
    r = _run(tmp_path, nemesis="partition", seconds=5, stale_reads=True, quiet_s=(0.5, 0.5),
             fault_s=(1.0, 1.0))
    s = r.summary
    text = harness.summary_text(r)
    assert s["check"] == "NOT linearizable", text
    assert "probe" in s["anomaly_keys"], text
    pr = s["probe"]
    # (the old member normally answers probe-a; had it only forwarded probe-a, it could
    # still hold the value before it -- stale all the same)
    assert pr["acked_b"] and pr["read_status"] == "ok" and pr["read_value"] != "probe-b", pr
    win = r.report.keys["probe"]
    core = [op for op in win.window if op.id in win.core]
    assert any(op.f == lincheck.READ and op.node == pr["old_leader"] for op in core), text
    assert any(op.f == lincheck.WRITE and op.value == "probe-b" for op in core), text
    assert len(win.window) <= 4, text
    # the flag is the only thing wrong: the servers themselves stayed healthy
    assert not s["server_problems"], text
    assert time.monotonic() - t0 < 60


# ---- the other workloads and nemeses (short phases) ----------------------------------------


def test_lock_workload_under_pause(tmp_path):
    """Locks, fencing tokens and the protected counter while the leader (first) or a
    member is SIGSTOPped: holds' leases outlive pauses on the old leader, or expire and
    the lock moves on -- never two believers, never a double increment."""
    r = _run(tmp_path, workload="lock", nemesis="pause", seconds=SHORT)
    s, msg = _assert_passed(r)
    st = s["checks"]["lock"]["stats"]
    assert st["acquired"] >= 20 and st["counter increments"] >= 10, msg


def test_ids_workload_under_clock_jumps(tmp_path):
    """Segment and snowflake ids from all members while one member's wall clock jumps by
    up to +-10 s (a backward jump makes its snowflake generator take a fresh worker)."""
    r = _run(tmp_path, workload="ids", nemesis="clock-jump", seconds=SHORT)
    s, msg = _assert_passed(r)
    st = s["checks"]["ids"]["stats"]
    assert st["segment ids"] >= 100 and st["snowflake ids"] >= 100, msg
    assert any("clock jump" in f["what"] for f in s["fault_log"]), msg


def test_watch_workload_under_kill(tmp_path):
    """SSE watchers see exactly the committed history of their prefix while members are
    killed and restarted (a watcher on a killed member resumes elsewhere)."""
    r = _run(tmp_path, workload="watch", nemesis="kill", seconds=SHORT)
    s, msg = _assert_passed(r)
    st = s["checks"]["watch"]["stats"]
    assert st["revisions"] >= 50 and st["acked writes"] >= 50, msg
    assert s["check"].startswith("linearizable"), msg


def test_register_under_slow_disk(tmp_path):
    """Registers stay linearizable while fsyncs of one or two members take 20-800 ms."""
    r = _run(tmp_path, workload="register", nemesis="slow-disk", seconds=SHORT)
    s, msg = _assert_passed(r)
    assert any("slow disk" in f["what"] for f in s["fault_log"]), msg
    assert s["ok"] >= 100, msg
