"""cluster.py -- start, poke and tear down real `conclave serve` processes on loopback.

A Cluster is 1 or 3 (any n) members in one temp dir: member i (1-based, also its Raft
id) has its data in <root>/n<i>/data, its combined stdout+stderr in <root>/n<i>/log,
and an HTTP, a peer and a RESP (Redis protocol) port picked free on 127.0.0.1 (resp=False
starts members with --resp off). Members can be killed (-9),
paused (SIGSTOP), resumed (SIGCONT) and restarted with the same flags and data.
addr_overrides lets each member dial every other one at its own address (per member,
per peer), e.g. through the chaos suite's fault proxy; by default all use the real ones.

Every wait here is bounded in time (and so in count); helpers raise AssertionError with
what they saw when the deadline passes, so a test fails instead of hanging.

close() always ends every process this Cluster started: SIGCONT, then SIGTERM so the
sanitizers get their exit-time checks (leaks), then SIGKILL after a grace period. It
returns the problems found: a member that died without being told to, or a sanitizer or
assertion report in a log. conftest.py turns those into a test error.

Sections: ports | member | cluster | raw HTTP.
"""

import os
import random
import re
import signal
import socket
import subprocess
import time

import requests

# ---- ports ---------------------------------------------------------------------------

_handed_out = set()  # ports this pytest process gave away: never hand one out twice
_children = set()    # every Popen this process started that may still run


def kill_all_children():
    """Last resort (atexit, SIGTERM from `timeout`): SIGKILL whatever is still running."""
    for p in list(_children):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _children.discard(p)


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count):
    """count distinct TCP ports that were free on 127.0.0.1 just now.

    They are drawn at random from below the kernel's ephemeral range: a port from bind(0)
    is an ephemeral port, and any client connection made before the server binds it may
    take it as its source port ("address already in use" at start-up, seen in CI). The
    bind is without SO_REUSEADDR, so a port still in TIME_WAIT counts as taken."""
    lo, _ = _ephemeral_range()
    first, last = (10000, lo - 1) if lo > 12000 else (61000, 65535)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    ports = []
    for _ in range(100 * count + 1000):
        if len(ports) == count:
            return ports
        port = rng.randint(first, last)
        if port in _handed_out:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.add(port)
        ports.append(port)
    raise AssertionError(f"cannot find {count} free ports in {first}-{last}")


def default_binary():
    env = os.environ.get("CONCLAVE_BIN")
    if env:
        return os.path.abspath(env)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    asan = os.path.join(root, "build", "asan", "conclave")
    return asan if os.path.exists(asan) else os.path.join(root, "build", "conclave")


# Lines that mean a member hit a bug even if it kept running or we killed it later.
BUG_PATTERNS = re.compile(
    rb"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    rb"WARNING: ThreadSanitizer|: assertion failed: |unreachable code reached|"
    rb"Assertion .* failed"
)


def wait_until(what, fn, timeout, interval=0.05):
    """Calls fn() until it returns a truthy value (returned) or timeout seconds pass
    (AssertionError naming `what` and the last value or exception seen)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except (requests.RequestException, OSError, ValueError, KeyError) as e:
            last = repr(e)
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}; last: {last}")
        time.sleep(interval)


# ---- member --------------------------------------------------------------------------


class Member:
    def __init__(self, cluster, mid, http_port, peer_port, resp_port=None):
        self.cluster = cluster
        self.id = mid
        self.name = f"n{mid}"
        self.http_port = http_port
        self.peer_port = peer_port
        self.resp_port = resp_port  # None: --resp off
        self.dir = os.path.join(cluster.root, self.name)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "log")
        self.proc = None
        self.state = "new"  # running | paused | killed | stopped | new
        self.starts = 0
        os.makedirs(self.dir, exist_ok=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_addr(self):
        return f"127.0.0.1:{self.http_port}"

    @property
    def peer_addr(self):
        return f"127.0.0.1:{self.peer_port}"

    @property
    def resp_addr(self):
        return f"127.0.0.1:{self.resp_port}" if self.resp_port else "off"

    def argv(self):
        c = self.cluster
        args = [c.binary, "serve", "--id", str(self.id), "--name", self.name,
                "--data-dir", self.data_dir, "--http", self.http_addr,
                "--peer", self.peer_addr, "--resp", self.resp_addr, "--tick-ms", str(c.tick_ms)]
        if len(c.members) > 1:
            for m in c.members:
                args += ["--member", c.member_spec(self, m)]
        return args + list(c.extra_args)

    def spawn(self):
        assert self.state in ("new", "killed", "stopped"), f"{self.name} is {self.state}"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts} at {time.time():.3f}: "
                      f"{' '.join(self.argv())}\n".encode())
            log.flush()
            # same process group as pytest: `timeout` in run-tests.sh reaches us too
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
        _children.add(self.proc)
        self.state = "running"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def log_tail(self, lines=40):
        text = self.log_text().decode("utf-8", "replace").splitlines()
        return "\n".join(text[-lines:])


# ---- cluster -------------------------------------------------------------------------


class Cluster:
    def __init__(self, root, n=1, binary=None, tick_ms=50, extra_args=(), http_timeout=5.0,
                 addr_overrides=None, resp=True):
        assert n >= 1
        self.root = str(root)
        self.binary = binary or default_binary()
        assert os.path.exists(self.binary), f"no conclave binary at {self.binary} (CONCLAVE_BIN)"
        self.tick_ms = tick_ms
        self.extra_args = tuple(extra_args)
        self.http_timeout = http_timeout
        # (viewer id, member id) -> (peer addr or None, http addr or None): what `viewer`
        # is told to dial for that member instead of its real addresses (a fault proxy, see
        # tests/chaos/proxy.py). May be filled in after __init__, before start().
        self.addr_overrides = dict(addr_overrides or {})
        ports = free_ports(2 * n)
        resp_ports = free_ports(n) if resp else [None] * n
        self.members = []
        for i in range(n):
            self.members.append(Member(self, i + 1, ports[2 * i], ports[2 * i + 1],
                                       resp_ports[i]))
        self.problems = []
        self.closed = False

    # -- access --
    def m(self, mid):
        """Member by Raft id (1-based)."""
        return self.members[mid - 1]

    def url(self, mid):
        return self.m(mid).url

    @property
    def urls(self):
        return [m.url for m in self.members]

    def member_spec(self, viewer, m):
        """The --member entry `viewer` starts with for member m: m's real addresses unless
        addr_overrides redirects viewer's traffic to m. m itself always listens on its real
        --peer/--http (those flags win over its own entry), so its own entry is never
        redirected."""
        peer, http = (None, None) if viewer.id == m.id else \
            self.addr_overrides.get((viewer.id, m.id), (None, None))
        return f"{m.id},{m.name},{peer or m.peer_addr},{http or m.http_addr}"

    def running(self):
        return [m for m in self.members if m.state == "running"]

    # -- lifecycle --
    def start(self, ready_timeout=30):
        for m in self.members:
            m.spawn()
        self.wait_ready(timeout=ready_timeout)
        return self

    def wait_ready(self, mids=None, timeout=30):
        mids = mids or [m.id for m in self.members if m.state == "running"]

        def ready():
            for mid in mids:
                m = self.m(mid)
                if not m.alive():
                    raise AssertionError(f"{m.name} exited with {m.proc.returncode} while "
                                         f"starting; log:\n{m.log_tail()}")
                r = requests.get(m.url + "/readyz", timeout=self.http_timeout)
                if r.status_code != 200:
                    return False
            return True

        wait_until(f"/readyz on members {mids}", ready, timeout, interval=0.05)

    def kill9(self, mid):
        m = self.m(mid)
        assert m.state in ("running", "paused"), f"{m.name} is {m.state}"
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(timeout=10)
        m.state = "killed"

    def pause(self, mid):
        m = self.m(mid)
        assert m.state == "running"
        m.proc.send_signal(signal.SIGSTOP)
        m.state = "paused"

    def resume(self, mid):
        m = self.m(mid)
        assert m.state == "paused"
        m.proc.send_signal(signal.SIGCONT)
        m.state = "running"

    def terminate(self, mid, grace=15):
        """SIGTERM and wait for a clean exit; returns the exit code."""
        m = self.m(mid)
        if m.state == "paused":
            self.resume(mid)
        assert m.state == "running"
        m.proc.send_signal(signal.SIGTERM)
        try:
            rc = m.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait(timeout=10)
            self.problems.append(f"{m.name} did not exit within {grace}s of SIGTERM")
            rc = m.proc.returncode
        m.state = "stopped"
        if rc != 0:
            self.problems.append(f"{m.name} exited with {rc} after SIGTERM")
        return rc

    def restart(self, mid, wait=True, timeout=30):
        m = self.m(mid)
        if m.state in ("running", "paused"):
            self.kill9(mid)
        m.spawn()
        if wait:
            self.wait_ready([mid], timeout=timeout)

    def check_alive(self):
        """Records and returns members that died on their own."""
        dead = []
        for m in self.members:
            if m.state in ("running", "paused") and not m.alive():
                dead.append(m)
                self.problems.append(f"{m.name} died unexpectedly with exit code "
                                     f"{m.proc.returncode}")
                m.state = "stopped"
        return dead

    def close(self, grace=15):
        """Ends every process; returns the list of problems (empty when all was well)."""
        if self.closed:
            return self.problems
        self.closed = True
        self.check_alive()
        live = [m for m in self.members if m.state in ("running", "paused")]
        for m in live:
            try:
                if m.state == "paused":
                    m.proc.send_signal(signal.SIGCONT)
                m.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for m in live:
            try:
                rc = m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                if rc != 0:
                    self.problems.append(f"{m.name} exited with {rc} after SIGTERM")
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=10)
                self.problems.append(f"{m.name} did not exit within {grace}s of SIGTERM; killed")
            m.state = "stopped"
        for m in self.members:
            for line in m.log_text().splitlines():
                if BUG_PATTERNS.search(line):
                    self.problems.append(f"{m.name} log: {line.decode('utf-8', 'replace')}")
                    break
        return self.problems

    def log_tails(self, lines=40):
        out = []
        for m in self.members:
            out.append(f"---- {m.name} ({m.state}, http {m.http_addr}) log tail: {m.log_path}")
            out.append(m.log_tail(lines))
        return "\n".join(out)

    # -- status --
    def status(self, mid, timeout=None):
        r = requests.get(self.url(mid) + "/v1/cluster/status",
                         timeout=timeout or self.http_timeout)
        r.raise_for_status()
        return r.json()

    def find_leader(self, among=None):
        """The leader's id if the running members agree on one right now, else None: it
        says role leader, and a majority of the whole cluster (itself included) names it
        with the same term."""
        among = among or [m.id for m in self.running()]
        seen = {}
        for mid in among:
            try:
                seen[mid] = self.status(mid, timeout=2)
            except (requests.RequestException, ValueError):
                continue
        for mid, s in seen.items():
            if s.get("role") != "leader":
                continue
            backers = [x for x in seen.values()
                       if x.get("leader_id") == mid and x.get("term") == s["term"]]
            if len(backers) * 2 > len(self.members):
                return mid
        return None

    def leader(self, timeout=15, among=None, not_id=None):
        def probe():
            lid = self.find_leader(among)
            return lid if lid and lid != not_id else None

        what = "an agreed leader" + (f" other than n{not_id}" if not_id else "")
        return wait_until(what, probe, timeout, interval=0.05)

    def followers(self, leader_id):
        return [m.id for m in self.running() if m.id != leader_id]

    # -- KV shortcuts (with bounded retries for transient election errors) --
    def put(self, mid, key, value, timeout=None, retry_s=10.0):
        """PUT with retries on 502/503/504 and connection errors until retry_s; returns
        the 200 JSON. Keys are sent as-is: percent-encode them yourself."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                r = requests.put(f"{self.url(mid)}/v1/kv/{key}", data=value,
                                 timeout=timeout or self.http_timeout)
                if r.status_code == 200:
                    return r.json()
                last = f"{r.status_code} {r.text.strip()}"
                if r.status_code not in (502, 503, 504):
                    raise AssertionError(f"PUT {key} on n{mid}: {last}")
            except requests.RequestException as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                raise AssertionError(f"PUT {key} on n{mid} kept failing for {retry_s}s: {last}")
            time.sleep(0.1)

    def get(self, mid, key, params=None, timeout=None):
        return requests.get(f"{self.url(mid)}/v1/kv/{key}", params=params,
                            timeout=timeout or self.http_timeout)


# ---- raw HTTP --------------------------------------------------------------------------


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def __repr__(self):
        return f"RawResponse({self.status}, {self.body[:80]!r})"


class RawConn:
    """A bare socket that reads HTTP/1.1 responses (Content-Length bodies) one by one,
    for pipelining and garbage tests where requests/urllib3 would hide the wire."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_response(self, max_bytes=8 << 20):
        while b"\r\n\r\n" not in self.buf:
            assert len(self.buf) < 65536, "response head too large"
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0].startswith("HTTP/1."), f"bad status line {lines[0]!r}"
        status = int(parts[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        if status == 100:
            return self.read_response(max_bytes)
        n = int(headers.get("content-length", "0"))
        assert n <= max_bytes
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return RawResponse(status, headers, body)

    def read_until_closed(self, limit=1 << 20):
        """Everything until EOF (or timeout), for garbage tests."""
        out = self.buf
        self.buf = b""
        try:
            while len(out) < limit:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out

    def close(self):
        self.sock.close()
