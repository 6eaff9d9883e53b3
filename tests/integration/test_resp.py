"""test_resp.py -- the Redis protocol front end (issue #6) against real `conclave serve`
processes, driven by python3-redis, redis-cli and raw sockets.

Covered: connection commands (PING, ECHO, HELLO 2/3, SELECT, CLIENT, INFO, COMMAND),
string commands and counters with Redis's exact replies and errors, a differential run
of random string commands against a real redis-server (when installed), keys (DEL,
EXISTS, TYPE, RENAME, KEYS with its bound, SCAN with MATCH/COUNT), expiry basics (the
rest is in test_resp_expiry.py), pipelines (1000 commands, ordered replies, backpressure), MULTI/EXEC with
WATCH conflicts, the lock pattern (SET NX + DELEX IFEQ) and compare-and-set, one key
space with HTTP, unknown commands, garbage bytes, a follower's READONLY error and its
reads, a leader kill with no acknowledged write lost, and redis-cli in RESP2 and -3.

Every socket has a timeout and every wait a deadline, so a hung server fails a test
instead of hanging it.
"""

import random
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
import redis
import requests

from cluster import free_ports, wait_until

T = 10  # seconds: bound on one command


def rc(member, **kw):
    kw.setdefault("socket_timeout", T)
    kw.setdefault("socket_connect_timeout", T)
    return redis.Redis(host="127.0.0.1", port=member.resp_port, **kw)


class Raw:
    """A bare RESP connection: send bytes, read replies exactly as framed."""

    def __init__(self, port, timeout=T):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def reply(self):
        """One reply as raw bytes (aggregates included), for exact framing checks."""
        ln = self.line()
        t, rest = ln[:1], ln[1:]
        out = ln + b"\r\n"
        if t in (b"$", b"=", b"!") and rest != b"-1":
            n = int(rest)
            while len(self.buf) < n + 2:
                self._fill()
            out += self.buf[:n + 2]
            self.buf = self.buf[n + 2:]
        elif t in (b"*", b"~", b">", b"%") and rest != b"-1":
            n = int(rest) * (2 if t == b"%" else 1)
            for _ in range(n):
                out += self.reply()
        return out

    def closed(self, timeout=5.0):
        """True once the server closed the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def cmd(*args):
    """A multibulk request."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


@pytest.fixture
def r(single):
    c = rc(single.m(1))
    yield c
    c.close()


# ---- connection and server commands ------------------------------------------------------


def test_ping_echo_select_client(single, r):
    assert r.ping() is True
    assert r.echo(b"hi\x00there") == b"hi\x00there"
    x = Raw(single.m(1).resp_port)
    x.send(cmd("PING", "x") + cmd("SELECT", "0"))
    assert x.reply() == b"$1\r\nx\r\n" and x.reply() == b"+OK\r\n"
    x.close()
    with pytest.raises(redis.ResponseError, match="^DB index is out of range$"):
        r.execute_command("SELECT", 1)
    with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range$"):
        r.execute_command("SELECT", "x")
    cid = r.client_id()
    assert isinstance(cid, int) and cid > 0
    assert r.client_getname() is None
    assert r.client_setname("worker-1") is True
    assert r.client_getname() == "worker-1"
    with pytest.raises(redis.ResponseError, match="cannot contain spaces"):
        r.client_setname("has space")
    info = r.client_info()
    assert info["id"] == cid and info["name"] == "worker-1" and info["db"] == 0
    with pytest.raises(redis.ResponseError,
                       match=r"^unknown subcommand 'NOPE'. Try CLIENT HELP.$"):
        r.execute_command("CLIENT", "NOPE")
    assert len(r.execute_command("CLIENT", "HELP")) > 4
    x = Raw(single.m(1).resp_port)
    x.send(cmd("COMMAND", "COUNT") + cmd("COMMAND", "DOCS", "get") + cmd("COMMAND", "INFO", "nope"))
    assert int(x.reply()[1:]) > 50
    assert x.reply().startswith(b"*2\r\n$3\r\nget\r\n")
    assert x.reply() == b"*1\r\n$-1\r\n"
    x.close()


def test_info_sections(single, r, ns):
    r.set(ns + "k", "v")
    info = r.info()
    assert info["role"] == "master" and info["redis_mode"] == "standalone"
    assert info["connected_clients"] >= 1
    assert info["db0"]["keys"] >= 1
    assert info["total_commands_processed"] >= 1
    assert info["conclave_raft_role"] == "leader"
    only = r.info("replication")
    assert "role" in only and "redis_version" not in only
    assert r.dbsize() >= 1


def test_hello_resp2_and_resp3_framing(single):
    x = Raw(single.m(1).resp_port)
    x.send(cmd("HELLO", "3"))
    h = x.reply()
    assert h.startswith(b"%7\r\n") and b"$5\r\nproto\r\n:3\r\n" in h, h
    x.send(cmd("GET", "resp3/missing") + cmd("SET", "resp3/k", "v") + cmd("EXISTS", "resp3/k")
           + cmd("INFO", "server") + cmd("MGET", "resp3/k", "resp3/missing"))
    assert x.reply() == b"_\r\n"
    assert x.reply() == b"+OK\r\n"
    assert x.reply() == b":1\r\n"
    assert x.reply().startswith(b"=")  # verbatim "txt:" string
    assert x.reply() == b"*2\r\n$1\r\nv\r\n_\r\n"
    x.send(cmd("HELLO", "2"))
    assert x.reply().startswith(b"*14\r\n")
    x.send(cmd("GET", "resp3/missing"))
    assert x.reply() == b"$-1\r\n"
    x.send(cmd("HELLO", "4"))
    assert x.reply() == b"-NOPROTO unsupported protocol version\r\n"
    x.send(cmd("HELLO", "3", "AUTH", "someone", "pw"))
    assert x.reply().startswith(b"-WRONGPASS")
    x.send(cmd("HELLO", "2", "AUTH", "default", "pw", "SETNAME", "me") + cmd("CLIENT", "GETNAME"))
    assert x.reply().startswith(b"*14\r\n")
    assert x.reply() == b"$2\r\nme\r\n"
    x.close()


def test_inline_commands_and_quit(single):
    x = Raw(single.m(1).resp_port)
    x.send(b"PING\r\nSET inline/k \"a b\"\nGET inline/k\r\n\r\nECHO 'it''s'\r\n")
    assert x.reply() == b"+PONG\r\n"
    assert x.reply() == b"+OK\r\n"
    assert x.reply() == b"$3\r\na b\r\n"
    assert x.reply().startswith(b"-ERR")  # 'it''s': a quote must be followed by a space
    assert x.closed()  # unbalanced quotes are a protocol error
    y = Raw(single.m(1).resp_port)
    y.send(cmd("SET", "q/k", "1") + cmd("QUIT") + cmd("SET", "q/k", "2"))
    assert y.reply() == b"+OK\r\n"
    assert y.reply() == b"+OK\r\n"
    assert y.closed()
    assert rc(single.m(1)).get("q/k") == b"1"  # nothing after QUIT ran


def test_unknown_command_and_arity_errors(r):
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("FLUSHALL", "ASYNC", "x")
    assert str(e.value) == "unknown command 'FLUSHALL', with args beginning with: 'ASYNC' 'x' "
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'get' command$"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'mset' command$"):
        r.execute_command("MSET", "a", "1", "b")
    assert r.ping()  # the connection is still fine


# ---- strings and counters ---------------------------------------------------------------


def test_string_commands(r, ns):
    k = ns + "s"
    assert r.get(k) is None
    assert r.set(k, b"hello") is True
    assert r.get(k) == b"hello"
    assert r.set(k, b"x", nx=True) is None
    assert r.set(ns + "missing", b"x", xx=True) is None
    assert r.set(k, b"world", xx=True) is True
    assert r.set(k, b"again", get=True) == b"world"
    assert r.set(ns + "new", b"1", nx=True, get=True) is None
    assert r.setnx(k, b"no") is False and r.setnx(ns + "nx", b"yes") is True
    assert r.getset(k, b"v2") == b"again"
    assert r.strlen(k) == 2 and r.strlen(ns + "none") == 0
    assert r.append(k, b"-tail") == 7 and r.get(k) == b"v2-tail"
    assert r.append(ns + "app", b"abc") == 3
    assert r.getrange(k, 0, 1) == b"v2" and r.getrange(k, -4, -1) == b"tail"
    assert r.getrange(k, 5, 2) == b"" and r.getrange(ns + "none", 0, -1) == b""
    assert r.setrange(k, 3, b"TA") == 7 and r.get(k) == b"v2-TAil"
    assert r.setrange(ns + "pad", 3, b"x") == 4 and r.get(ns + "pad") == b"\x00\x00\x00x"
    assert r.setrange(ns + "empty", 5, b"") == 0 and r.exists(ns + "empty") == 0
    with pytest.raises(redis.ResponseError, match="^offset is out of range$"):
        r.setrange(k, -1, b"x")
    assert r.mset({ns + "a": b"1", ns + "b": b"2"}) is True
    assert r.mget(ns + "a", ns + "b", ns + "zz") == [b"1", b"2", None]
    assert r.msetnx({ns + "a": b"x", ns + "c": b"3"}) is False and r.get(ns + "c") is None
    assert r.msetnx({ns + "c": b"3", ns + "d": b"4"}) is True
    assert r.getdel(ns + "c") == b"3" and r.getdel(ns + "c") is None
    assert r.execute_command("MSET", ns + "dup", "1", ns + "dup", "2") is True
    assert r.get(ns + "dup") == b"2"
    big = b"\x00\r\n" * 1000
    r.set(ns + "bin", big)
    assert r.get(ns + "bin") == big
    with pytest.raises(redis.ResponseError, match="^empty keys are not supported"):
        r.set("", "v")
    assert r.get("") is None


def test_counters(r, ns):
    k = ns + "n"
    assert r.incr(k) == 1 and r.incr(k) == 2 and r.decr(k) == 1
    assert r.incrby(k, 41) == 42 and r.decrby(k, 50) == -8
    r.set(k, b"abc")
    with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range$"):
        r.incr(k)
    assert r.get(k) == b"abc"
    r.set(k, str(2 ** 63 - 1))
    with pytest.raises(redis.ResponseError, match="^increment or decrement would overflow$"):
        r.incr(k)
    with pytest.raises(redis.ResponseError, match="^value is not an integer or out of range$"):
        r.incrby(ns + "m", "1.5")
    with pytest.raises(redis.ResponseError, match="^decrement would overflow$"):
        r.decrby(ns + "m", -(2 ** 63))
    f = ns + "f"
    assert r.incrbyfloat(f, 10.5) == 10.5
    assert r.incrbyfloat(f, 0.1) == pytest.approx(10.6)
    assert r.get(f) == b"10.6"
    assert r.execute_command("INCRBYFLOAT", f, "5.0e3") == pytest.approx(5010.6)
    r.set(f, "3.0")
    assert r.incrbyfloat(f, "1.5e0") == 4.5 and r.get(f) == b"4.5"
    with pytest.raises(redis.ResponseError, match="^value is not a valid float$"):
        r.incrbyfloat(f, "x")
    with pytest.raises(redis.ResponseError, match="^increment would produce NaN or Infinity$"):
        r.incrbyfloat(f, "inf")


def test_concurrent_incr_and_append_are_atomic(single, ns):
    """20 clients x 25 INCRs on one key: exactly 500, every reply distinct (no lost
    update, no double count); APPENDs from many clients all land."""
    m = single.m(1)
    seen, errors = [], []
    lock = threading.Lock()

    def worker(i):
        c = rc(m)
        try:
            for j in range(25):
                v = c.incr(ns + "ctr")
                c.append(ns + "log", b"%02d," % i)
                with lock:
                    seen.append(v)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))
        finally:
            c.close()

    th = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert sorted(seen) == list(range(1, 501))
    c = rc(m)
    assert c.get(ns + "ctr") == b"500"
    assert len(c.get(ns + "log")) == 500 * 3


def test_incr_races_with_http_writers(single, ns):
    """RESP INCRs and HTTP compare-and-swap increments of one counter at the same time:
    the RESP side must notice writes it did not make (its txn compares what it read), or
    increments get lost."""
    m = single.m(1)
    url = single.url(1)
    key = ns + "mixed"
    errors, resp_acks = [], []
    http_done = threading.Event()

    def resp_worker():
        c = rc(m)
        n = 0
        try:
            for _ in range(5000):  # until the HTTP side is done
                if http_done.is_set() and n >= 20:
                    break
                c.incr(key)
                n += 1
                time.sleep(0.003)  # leave the optimistic HTTP loops a chance
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            resp_acks.append(n)
            c.close()

    def http_worker():
        s = requests.Session()
        try:
            for _ in range(40):
                for _attempt in range(2000):
                    g = s.get(f"{url}/v1/kv/{key}", timeout=T)
                    if g.status_code == 404:
                        cmp = {"key": key, "target": "create", "op": "=", "value": 0}
                        new = 1
                    else:
                        j = g.json()
                        cmp = {"key": key, "target": "mod", "op": "=", "value": j["mod_revision"]}
                        new = int(j["value"]) + 1
                    t = s.post(f"{url}/v1/txn", timeout=T, json={
                        "compare": [cmp], "success": [{"put": {"key": key, "value": str(new)}}]})
                    if t.status_code == 200 and t.json()["succeeded"]:
                        break
                else:
                    errors.append("http worker gave up")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    rth = [threading.Thread(target=resp_worker) for _ in range(4)]
    hth = [threading.Thread(target=http_worker) for _ in range(3)]
    retries0 = rc(m).info("stats")["conclave_rmw_retries"]
    for t in rth + hth:
        t.start()
    for t in hth:
        t.join(timeout=180)
    http_done.set()
    for t in rth:
        t.join(timeout=180)
    assert not errors, errors[:3]
    assert len(resp_acks) == 4
    assert int(rc(m).get(key)) == sum(resp_acks) + 3 * 40
    assert rc(m).info("stats")["conclave_rmw_retries"] > retries0  # conflicts did happen


def test_pipelined_incrs_share_a_txn_and_stay_in_order(single, ns):
    """Pipelined read-modify-writes of one connection join one shared txn (a pipeline of
    100 INCRs is a few proposals, not 100) and still behave as if run one by one, also
    when HTTP compare-and-swap writers make their txns conflict and retry: in each
    pipeline the replies for one key only grow, every reply is distinct, and no
    increment is lost or counted twice."""
    m = single.m(1)
    url = single.url(1)
    keys = [f"{ns}pk{i}" for i in range(3)]
    c = rc(m)
    x = Raw(m.resp_port)
    before = int(re.search(r"^conclave_resp_proposals_total (\d+)$",
                           requests.get(f"{url}/metrics", timeout=T).text, re.M).group(1))
    x.send(b"".join(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(keys[0]), keys[0].encode())
                    for _ in range(100)))
    assert [x.reply() for _ in range(100)] == [b":%d\r\n" % i for i in range(1, 101)]
    after = int(re.search(r"^conclave_resp_proposals_total (\d+)$",
                          requests.get(f"{url}/metrics", timeout=T).text, re.M).group(1))
    assert after - before <= 10, f"{after - before} proposals for one pipeline of 100 INCRs"

    errors, replies = [], []      # replies: (key, [values in pipeline order]) per pipeline
    http_adds = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def resp_worker(seed):
        rng = random.Random(seed)
        cl = rc(m)
        try:
            for _ in range(15):
                pipe = cl.pipeline(transaction=False)
                picks = [rng.randrange(3) for _ in range(24)]
                for k in picks:
                    pipe.incr(keys[k])
                out = pipe.execute()
                with lock:
                    for k in range(3):
                        replies.append((k, [v for kk, v in zip(picks, out) if kk == k]))
                time.sleep(0.02)  # leave the optimistic HTTP loops a chance
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))
        finally:
            cl.close()

    def http_worker():
        sess = requests.Session()
        try:
            while not stop.is_set():
                key = keys[random.randrange(3)]
                g = sess.get(f"{url}/v1/kv/{key}", timeout=T)
                j = g.json()
                t = sess.post(f"{url}/v1/txn", timeout=T, json={
                    "compare": [{"key": key, "target": "mod", "op": "=",
                                 "value": j["mod_revision"]}],
                    "success": [{"put": {"key": key, "value": str(int(j["value"]) + 1000)}}]})
                if t.status_code == 200 and t.json()["succeeded"]:
                    with lock:
                        http_adds[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    for k in keys[1:]:
        c.set(k, 0)
    retries0 = c.info("stats")["conclave_rmw_retries"]
    rth = [threading.Thread(target=resp_worker, args=(i,)) for i in range(6)]
    hth = [threading.Thread(target=http_worker) for _ in range(3)]
    for t in hth + rth:
        t.start()
    for t in rth:
        t.join(timeout=120)
    stop.set()
    for t in hth:
        t.join(timeout=30)
    assert not errors, errors[:3]
    for k, vals in replies:
        assert vals == sorted(vals) and len(set(vals)) == len(vals), (k, vals)
    total = sum(int(c.get(k)) for k in keys)
    n_incr = 6 * 15 * 24
    assert total == 100 + n_incr + 1000 * http_adds[0], (total, n_incr, http_adds[0])
    for k in range(3):
        seen = [v for kk, vals in replies if kk == k for v in vals]
        assert len(set(seen)) == len(seen), f"key {k}: a value was returned twice"
    assert sum(len(vals) for _, vals in replies) == n_incr
    retries = c.info("stats")["conclave_rmw_retries"] - retries0
    print(f"{http_adds[0]} HTTP writes, {retries} RESP retries")
    assert http_adds[0] > 0 and retries > 0  # conflicts did happen
    c.close()


def start_redis_server(tmp_path):
    """A real redis-server on a free port (skips the test when it is not installed).
    Returns (process, client); the caller terminates the process."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (scripts/deps.sh)")
    port = free_ports(1)[0]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ref = redis.Redis(host="127.0.0.1", port=port, socket_timeout=T)

    def up():
        try:
            return ref.ping()
        except redis.RedisError:
            return False

    try:
        wait_until("redis-server to answer", up, 10)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=10)
        raise
    return proc, ref


def run_both(us, ref, args):
    """One command on both servers: ("ok", reply) or ("err", message) from each."""
    def run(c):
        try:
            return ("ok", c.execute_command(*args))
        except redis.ResponseError as e:
            return ("err", str(e))
    return run(us), run(ref)


def test_differential_against_redis_server(single, tmp_path):
    """The same random string commands against Conclave and a real redis-server give the
    same replies (errors compared by message)."""
    proc, ref = start_redis_server(tmp_path)
    try:
        us = rc(single.m(1))
        rnd = random.Random(6)
        keys = [f"diff/{i}" for i in range(6)]
        vals = [b"", b"0", b"1", b"-5", b"12345678901234567890", b"abc", b"3.5", b"x y"]

        def one():
            k, k2 = rnd.choice(keys), rnd.choice(keys)
            v = rnd.choice(vals)
            n = rnd.choice([-3, -1, 0, 1, 2, 5, 100])
            return rnd.choice([
                ("GET", k), ("SET", k, v), ("SET", k, v, "NX"), ("SET", k, v, "XX"),
                ("SET", k, v, "GET"), ("SET", k, v, "NX", "GET"), ("SETNX", k, v),
                ("GETSET", k, v), ("GETDEL", k), ("MGET", k, k2), ("MSET", k, v, k2, v),
                ("MSETNX", k, v, k2, v), ("APPEND", k, v), ("STRLEN", k),
                ("GETRANGE", k, n, rnd.choice([-1, 0, 3, 50])), ("SETRANGE", k, abs(n), v),
                ("INCR", k), ("DECR", k), ("INCRBY", k, n), ("DECRBY", k, n),
                ("INCRBYFLOAT", k, rnd.choice(["1.5", "-0.25", "abc", "10"])),
                ("DEL", k, k2), ("EXISTS", k, k2, k), ("TYPE", k), ("RENAME", k, k2),
                ("TTL", k), ("PTTL", k), ("PERSIST", k), ("GETEX", k), ("ECHO", v),
                ("SET", k, v, "XX", "NX"), ("GETRANGE", k, "a", 1), ("SETRANGE", k, -1, v),
            ])

        for k in keys:
            us.delete(k)
        for i in range(1500):
            args = one()
            a, b = run_both(us, ref, args)
            assert a == b, f"step {i}: {args!r}: conclave {a!r}, redis {b!r}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- keys ------------------------------------------------------------------------------


def test_keys_commands(r, ns):
    r.mset({ns + "a": 1, ns + "b": 2, ns + "c": 3})
    assert r.exists(ns + "a", ns + "a", ns + "zz") == 2
    assert r.type(ns + "a") == b"string" and r.type(ns + "zz") == b"none"
    assert r.delete(ns + "a", ns + "zz", ns + "a") == 1
    assert r.unlink(ns + "b") == 1
    assert r.rename(ns + "c", ns + "c2") is True
    assert r.get(ns + "c2") == b"3" and r.get(ns + "c") is None
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.rename(ns + "c", ns + "x")
    assert r.rename(ns + "c2", ns + "c2") is True


def test_keys_and_scan(r, ns):
    p = ns + "scan/"
    want = set()
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        k = f"{p}{i:03d}" + ("x" if i % 3 == 0 else "")
        want.add(k.encode())
        pipe.set(k, i)
    pipe.execute()
    assert set(r.keys(p + "*")) == want
    assert set(r.keys(p + "0?0x")) == {f"{p}0{d}0x".encode() for d in range(10) if (d * 10) % 3 == 0}
    assert set(r.keys(p + "[12]5[0-2]*")) == {f"{p}{a}5{b}".encode() + (b"x" if int(f"{a}5{b}") % 3 == 0 else b"")
                                              for a in (1, 2) for b in (0, 1, 2)}
    # SCAN: every key exactly once, in steps of COUNT, with MATCH filtering
    got, cursor, calls = [], 0, 0
    while True:
        cursor, batch = r.scan(cursor, match=p + "*x", count=25)
        got += batch
        calls += 1
        assert calls < 100
        if cursor == 0:
            break
    assert sorted(got) == sorted(k for k in want if k.endswith(b"x"))
    assert calls >= 4  # 300 keys under the prefix, 25 examined per call
    assert set(r.scan_iter(match=p + "*")) == want
    with pytest.raises(redis.ResponseError, match="^invalid cursor"):
        r.scan(123456789)
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        r.execute_command("SCAN", 0, "COUNT", 0)
    assert r.execute_command("SCAN", 0, "MATCH", p + "*", "TYPE", "hash")[1] == []


def test_keys_bound(r, ns):
    p = ns + "many/"
    pipe = r.pipeline(transaction=False)
    for i in range(0, 10001, 100):
        pipe.mset({f"{p}{j:05d}": b"" for j in range(i, min(i + 100, 10001))})
    pipe.execute()
    with pytest.raises(redis.ResponseError, match="KEYS would examine more than 10000 keys"):
        r.keys(p + "*")
    assert len(r.keys(p + "0000*")) == 10  # the literal prefix narrows the range
    assert sum(1 for _ in r.scan_iter(match=p + "*", count=1000)) == 10001


def test_expiry_basics(r, ns):
    """Smoke test of expiry (test_resp_expiry.py covers every command and failover)."""
    k = ns + "e"
    r.set(k, "v")
    assert r.ttl(k) == -1 and r.pttl(k) == -1 and r.ttl(ns + "none") == -2
    assert r.execute_command("EXPIRETIME", k) == -1
    assert r.persist(k) is False
    assert r.expire(ns + "none", 10) is False
    assert r.expire(k, 100) is True and 99 <= r.ttl(k) <= 100
    assert r.persist(k) is True and r.ttl(k) == -1
    assert r.set(ns + "lock", "me", nx=True, px=3000) is True
    assert 0 < r.pttl(ns + "lock") <= 3000
    with pytest.raises(redis.ResponseError, match="^invalid expire time in 'setex' command$"):
        r.setex(k, 0, "v")
    with pytest.raises(redis.ResponseError, match="^NX and XX, GT or LT options"):
        r.execute_command("EXPIRE", k, 10, "NX", "XX")
    assert r.getex(k) == b"v" and r.getex(k, persist=True) == b"v"


# ---- pipelines ---------------------------------------------------------------------------


def test_pipeline_1000_commands_in_order(r, ns):
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        m = i % 4
        if m == 0:
            pipe.set(f"{ns}p{i}", i)
        elif m == 1:
            pipe.get(f"{ns}p{i - 1}")
        elif m == 2:
            pipe.incr(ns + "pc")
        else:
            pipe.echo(str(i))
    out = pipe.execute()
    assert len(out) == 1000
    for i, v in enumerate(out):
        m = i % 4
        want = [True, str(i - 1).encode(), i // 4 + 1, str(i).encode()][m]
        assert v == want, (i, v, want)


def test_pipeline_flood_of_small_commands(single, ns):
    """30000 tiny inline commands in one send (more than one event-loop pass handles):
    every reply arrives, in order."""
    x = Raw(single.m(1).resp_port, timeout=60)
    parts = []
    for i in range(30000):
        parts.append(b"PING\r\n" if i % 10 else b"INCR %s\r\n" % (ns + "flood").encode())
    sender = threading.Thread(target=lambda: x.send(b"".join(parts)))
    sender.start()
    n = 0
    for i in range(30000):
        rep = x.reply()
        if i % 10:
            assert rep == b"+PONG\r\n", (i, rep)
        else:
            n += 1
            assert rep == b":%d\r\n" % n, (i, rep)
    sender.join(timeout=60)
    x.close()


def test_pipeline_backpressure_large_replies(single, ns):
    """4000 pipelined GETs of a 64 KiB value (250 MB of replies) sent before reading any:
    the server stops reading instead of buffering, and every reply arrives intact."""
    m = single.m(1)
    val = bytes(range(256)) * 256
    rc(m).set(ns + "big", val)
    x = Raw(m.resp_port, timeout=60)
    req = cmd("GET", ns + "big")
    n = 4000
    sender = threading.Thread(target=lambda: x.send(req * n))
    sender.start()
    time.sleep(1.0)
    # meanwhile another client is served normally
    other = rc(m)
    assert other.ping() and other.get(ns + "big") == val
    info = other.info("stats")
    assert info["conclave_output_overflows"] == 0
    want = b"$65536\r\n" + val + b"\r\n"
    for i in range(n):
        assert x.reply() == want, i
    sender.join(timeout=60)
    x.close()


# ---- MULTI/EXEC --------------------------------------------------------------------------


def test_multi_exec_basic(r, ns):
    pipe = r.pipeline(transaction=True)
    pipe.set(ns + "a", 1).incr(ns + "a").get(ns + "a").mget(ns + "a", ns + "zz").incrby(ns + "b", 5)
    pipe.append(ns + "s", "x").getrange(ns + "s", 0, 0).ping()
    assert pipe.execute() == [True, 2, b"2", [b"2", None], 5, 1, b"x", True]
    # a read-only transaction
    pipe = r.pipeline(transaction=True)
    pipe.get(ns + "a").exists(ns + "a", ns + "b").dbsize()
    got = pipe.execute()
    assert got[:2] == [b"2", 2] and got[2] >= 2
    # a runtime error inside EXEC does not abort the rest
    r.set(ns + "str", "abc")
    pipe = r.pipeline(transaction=True)
    pipe.incr(ns + "str").set(ns + "after", "1")
    res = pipe.execute(raise_on_error=False)
    assert isinstance(res[0], redis.ResponseError) and res[1] is True
    assert r.get(ns + "after") == b"1"


def test_multi_exec_errors(single, ns):
    x = Raw(single.m(1).resp_port)
    x.send(cmd("EXEC") + cmd("DISCARD") + cmd("MULTI") + cmd("MULTI") + cmd("SET", ns + "q", "1")
           + cmd("NOSUCH") + cmd("WATCH", ns + "q") + cmd("EXEC") + cmd("GET", ns + "q"))
    assert x.reply() == b"-ERR EXEC without MULTI\r\n"
    assert x.reply() == b"-ERR DISCARD without MULTI\r\n"
    assert x.reply() == b"+OK\r\n"
    assert x.reply() == b"-ERR MULTI calls can not be nested\r\n"
    assert x.reply() == b"+QUEUED\r\n"
    assert x.reply().startswith(b"-ERR unknown command 'NOSUCH'")
    assert x.reply() == b"-ERR WATCH inside MULTI is not allowed\r\n"
    assert x.reply() == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    assert x.reply() == b"$-1\r\n"  # the queued SET never ran
    x.send(cmd("MULTI") + cmd("SET", ns + "q", "2") + cmd("DISCARD") + cmd("GET", ns + "q"))
    assert [x.reply() for _ in range(4)] == [b"+OK\r\n", b"+QUEUED\r\n", b"+OK\r\n", b"$-1\r\n"]
    x.send(cmd("MULTI") + cmd("HELLO", "3") + cmd("EXEC"))
    assert x.reply() == b"+OK\r\n"
    assert x.reply() == b"-ERR Command not allowed inside a transaction\r\n"
    assert x.reply().startswith(b"-EXECABORT")
    x.close()


def test_watch_conflict(single, ns):
    m = single.m(1)
    a, b = rc(m), rc(m)
    a.set(ns + "w", "1")
    # a WATCHed key changed by another client: EXEC returns nil (WatchError in redis-py)
    with a.pipeline() as pipe:
        pipe.watch(ns + "w")
        v = int(pipe.get(ns + "w"))
        b.set(ns + "w", "100")
        pipe.multi()
        pipe.set(ns + "w", v + 1)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert a.get(ns + "w") == b"100"
    # untouched: EXEC runs
    with a.pipeline() as pipe:
        pipe.watch(ns + "w")
        v = int(pipe.get(ns + "w"))
        pipe.multi()
        pipe.set(ns + "w", v + 1)
        assert pipe.execute() == [True]
    assert a.get(ns + "w") == b"101"
    # a read-only EXEC also fails when a WATCHed key changed; UNWATCH forgets
    with a.pipeline() as pipe:
        pipe.watch(ns + "w")
        b.incr(ns + "w")
        pipe.multi()
        pipe.get(ns + "w")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    x = Raw(m.resp_port)
    x.send(cmd("WATCH", ns + "w") + cmd("UNWATCH"))
    assert x.reply() == b"+OK\r\n" and x.reply() == b"+OK\r\n"
    b.incr(ns + "w")
    x.send(cmd("MULTI") + cmd("GET", ns + "w") + cmd("EXEC"))
    assert x.reply() == b"+OK\r\n" and x.reply() == b"+QUEUED\r\n"
    assert x.reply() == b"*1\r\n$3\r\n103\r\n"
    x.close()


def test_watch_optimistic_counter_contention(single, ns):
    """The classic WATCH/GET/MULTI/SET/EXEC retry loop from 8 clients: no update lost."""
    m = single.m(1)
    errors = []

    def worker():
        c = rc(m)
        try:
            for _ in range(10):
                for _attempt in range(200):
                    with c.pipeline() as p:
                        try:
                            p.watch(ns + "oc")
                            v = int(p.get(ns + "oc") or 0)
                            p.multi()
                            p.set(ns + "oc", v + 1)
                            p.execute()
                            break
                        except redis.WatchError:
                            continue
                else:
                    errors.append("gave up")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            c.close()

    th = [threading.Thread(target=worker) for _ in range(8)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert rc(m).get(ns + "oc") == b"80"


# ---- locks -------------------------------------------------------------------------------


def test_lock_pattern_and_compare_and_set(single, ns):
    m = single.m(1)
    a, b = rc(m), rc(m)
    lock = ns + "lock"
    assert a.set(lock, "owner-a", nx=True) is True
    assert b.set(lock, "owner-b", nx=True) is None  # held
    assert b.execute_command("DELEX", lock, "IFEQ", "owner-b") == 0  # not b's to release
    assert a.get(lock) == b"owner-a"
    assert a.execute_command("DELEX", lock, "IFEQ", "owner-a") == 1
    assert b.set(lock, "owner-b", nx=True) is True
    assert a.execute_command("DELEX", lock, "IFNE", "owner-b") == 0
    assert a.execute_command("DELEX", lock, "IFNE", "someone") == 1
    assert a.execute_command("DELEX", lock) == 0
    # compare-and-set (Redis 8.4 SET ... IFEQ / IFNE)
    k = ns + "cas"
    a.set(k, "v1")
    assert a.execute_command("SET", k, "v2", "IFEQ", "nope") is None
    assert a.execute_command("SET", k, "v2", "IFEQ", "v1") is True
    assert a.execute_command("SET", k, "v3", "IFEQ", "v2", "GET", get=True) == b"v2"
    assert a.execute_command("SET", k, "v4", "IFNE", "v3") is None
    assert a.execute_command("SET", k, "v4", "IFNE", "other") is True
    assert a.execute_command("SET", ns + "casnew", "x", "IFEQ", "x") is None
    assert a.execute_command("SET", ns + "casnew", "x", "IFNE", "x") is True
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        a.execute_command("SET", k, "v", "NX", "IFEQ", "v")
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        a.execute_command("DELEX", k, "IFGT", "v")
    # many clients race for one lock: exactly one wins each round
    for rnd in range(5):
        winners = []

        def grab(i):
            c = rc(m)
            if c.set(lock, f"c{i}", nx=True):
                winners.append(i)
            c.close()

        th = [threading.Thread(target=grab, args=(i,)) for i in range(10)]
        for t in th:
            t.start()
        for t in th:
            t.join(timeout=30)
        assert len(winners) == 1, (rnd, winners)
        assert a.execute_command("DELEX", lock, "IFEQ", f"c{winners[0]}") == 1


# ---- one key space ------------------------------------------------------------------------


def test_one_keyspace_with_http(single, r, ns):
    url = single.url(1)
    r.set(ns + "both", b"from resp \x00\xff")
    g = requests.get(f"{url}/v1/kv/{ns}both", params={"raw": "true"}, timeout=T)
    assert g.status_code == 200 and g.content == b"from resp \x00\xff"
    assert requests.put(f"{url}/v1/kv/{ns}h", data=b"from http", timeout=T).status_code == 200
    assert r.get(ns + "h") == b"from http"
    assert r.incr(ns + "hn") == 1
    g = requests.get(f"{url}/v1/kv/{ns}hn", timeout=T).json()
    assert g["value"] == "1" and g["version"] == 1
    assert r.delete(ns + "h") == 1
    assert requests.get(f"{url}/v1/kv/{ns}h", timeout=T).status_code == 404


# ---- garbage and limits ---------------------------------------------------------------------


def test_garbage_bytes_close_only_that_connection(single, ns):
    m = single.m(1)
    good = rc(m)
    good.set(ns + "g", "1")
    for junk, text in [(b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
                       (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
                       (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
                       (b"*1\r\n$3\r\nabcde\r\n",
                        b"-ERR Protocol error: bulk data not followed by CRLF\r\n")]:
        x = Raw(m.resp_port)
        x.send(cmd("SET", ns + "before", "yes") + junk + cmd("SET", ns + "after", "no"))
        assert x.reply() == b"+OK\r\n"  # what came before the garbage is answered
        assert x.reply() == text
        assert x.closed()
        x.close()
    rnd = random.Random(9)
    for _ in range(20):
        x = Raw(m.resp_port)
        try:
            x.send(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400))) + b"\r\n")
            x.closed(timeout=0.3)
        except (ConnectionError, OSError):
            pass
        x.close()
    assert good.get(ns + "after") is None and good.get(ns + "before") == b"yes"
    assert good.ping() and good.get(ns + "g") == b"1"
    assert good.info("stats")["conclave_protocol_errors"] >= 4


def test_output_buffer_limit_disconnects(single, ns):
    """One reply bigger than the client output buffer (MGET of a 1 MB value 140 times):
    that client is cut off, the server and other clients carry on."""
    m = single.m(1)
    good = rc(m)
    big = b"z" * 1_000_000
    good.set(ns + "big", big)
    before = good.info("stats")["conclave_output_overflows"]
    x = Raw(m.resp_port, timeout=30)
    x.send(cmd("MGET", *([ns + "big"] * 140)))
    assert x.closed(timeout=30)
    assert good.info("stats")["conclave_output_overflows"] == before + 1
    assert good.get(ns + "big") == big
    assert len(good.mget(*([ns + "big"] * 20))) == 20  # 20 MB is fine


def test_limits(single, r, ns):
    x = Raw(single.m(1).resp_port)
    x.send(b"*1\r\n$2000000\r\n")  # over the argument limit: refused at the header
    assert x.reply().startswith(b"-ERR Protocol error: invalid bulk length (2000000 bytes")
    assert x.closed()
    with pytest.raises(redis.ResponseError, match="^key is too long"):
        r.set("k" * 5000, "v")
    with pytest.raises(redis.ResponseError, match="pattern is too long"):
        r.keys("*" * 300)
    with pytest.raises(redis.ResponseError, match="does not fit one Raft transaction"):
        r.delete(*[f"{ns}d{i}" for i in range(200)])
    with pytest.raises(redis.ResponseError, match="client name is too long"):
        r.client_setname("n" * 200)
    y = Raw(single.m(1).resp_port)
    y.send(b"x" * 70000)  # an inline line past 64 KiB
    assert y.reply() == b"-ERR Protocol error: too big inline request\r\n"
    assert y.closed()


# ---- redis-cli ------------------------------------------------------------------------------


def redis_cli(port, *args, resp3=False, stdin=None):
    exe = shutil.which("redis-cli")
    if exe is None:
        pytest.skip("redis-cli is not installed (scripts/deps.sh)")
    argv = [exe, "-p", str(port)] + (["-3"] if resp3 else []) + [str(a) for a in args]
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def test_redis_cli_resp2_and_resp3(single, ns):
    port = single.m(1).resp_port
    for resp3 in (False, True):
        k = ns + ("r3" if resp3 else "r2")
        assert redis_cli(port, "SET", k, "hello world", resp3=resp3) == "OK\n"
        assert redis_cli(port, "GET", k, resp3=resp3) == "hello world\n"
        assert redis_cli(port, "--no-raw", "GET", k + "x", resp3=resp3) == "(nil)\n"
        assert redis_cli(port, "--no-raw", "INCR", k + "n", resp3=resp3) == "(integer) 1\n"
        assert redis_cli(port, "--no-raw", "MGET", k, k + "x", resp3=resp3) == \
            '1) "hello world"\n2) (nil)\n'
        out = redis_cli(port, "--no-raw", "NOSUCH", resp3=resp3)
        assert out.startswith("(error) ERR unknown command 'NOSUCH'")
    hello = redis_cli(port, "--no-raw", "HELLO", "3", resp3=True)
    assert '1# "server" => "redis"' in hello and '3# "proto" => (integer) 3' in hello
    assert "# Keyspace" in redis_cli(port, "INFO", "keyspace", resp3=True)
    # a script of commands on stdin, and --scan (u64 cursors)
    out = redis_cli(port, stdin=f"SET {ns}s1 a\nSET {ns}s2 b\nGET {ns}s2\n".encode())
    assert out.split() == ["OK", "OK", "b"]
    scanned = redis_cli(port, "--scan", "--pattern", ns + "s*").split()
    assert sorted(scanned) == [ns + "s1", ns + "s2"]


# ---- three nodes: followers and a leader kill ---------------------------------------------


def test_follower_errors_and_reads(make_cluster):
    c = make_cluster(3)
    lid = c.leader()
    fid = c.followers(lid)[0]
    lead, fol = rc(c.m(lid)), rc(c.m(fid))
    assert lead.set("fk", "1") is True
    with pytest.raises(redis.ReadOnlyError) as e:
        fol.set("fk", "2")
    msg = str(e.value)
    assert msg.startswith("You can't write against a read only replica.")
    assert f"leader n{lid}" in msg and c.m(lid).http_addr in msg
    with pytest.raises(redis.ReadOnlyError):
        fol.incr("fk")
    with pytest.raises(redis.ReadOnlyError):
        fol.transaction(lambda p: p.set("fk", "3"))
    assert fol.get("fk") == b"1"  # linearizable read through the leader's ReadIndex
    assert lead.incr("fk") == 2
    assert fol.get("fk") == b"2"  # right after the ack, on another member
    assert fol.readonly() is True  # serializable reads of the follower's own state
    wait_until("the follower to apply", lambda: fol.get("fk") == b"2", 10)
    assert fol.info("replication")["role"] == "slave"
    assert lead.info("replication")["role"] == "master"


def test_leader_kill_no_acknowledged_write_lost(make_cluster):
    c = make_cluster(3)
    lid = c.leader()
    acked = {}
    incr_acks = []
    stop = threading.Event()
    lock = threading.Lock()

    def writer(wid):
        """Writes through whichever member is the leader; records what was acknowledged."""
        i = 0
        conn, conn_mid = None, None
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            mid = c.find_leader()
            if mid is None:
                time.sleep(0.05)
                continue
            if conn_mid != mid:
                conn = rc(c.m(mid), socket_timeout=3)
                conn_mid = mid
            key = f"w{wid}/{i}"
            try:
                conn.set(key, f"v{i}")
                n = conn.incr("ctr")
                with lock:
                    acked[key] = f"v{i}".encode()
                    incr_acks.append(n)
                i += 1
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError,
                    redis.ResponseError):
                conn_mid = None  # unknown outcome or not leader: reconnect, new key
                i += 1
                time.sleep(0.05)

    th = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in th:
        t.start()
    wait_until("some writes", lambda: len(acked) >= 40, 30)
    c.kill9(lid)
    before = len(acked)
    new = c.leader(not_id=lid, among=[m.id for m in c.running()])
    wait_until("writes on the new leader", lambda: len(acked) >= before + 40, 30)
    stop.set()
    for t in th:
        t.join(timeout=60)
    nl = rc(c.m(new))
    for key, val in acked.items():
        assert nl.get(key) == val, key
    # every acknowledged INCR counted once: distinct replies, all within the final value
    assert len(set(incr_acks)) == len(incr_acks)
    assert int(nl.get("ctr")) >= max(incr_acks)
    # the old leader comes back, catches up, and refuses writes as a follower
    c.restart(lid)
    old = rc(c.m(lid))
    last = max(acked, key=lambda k: (int(k[1:].split("/")[0]), int(k.split("/")[1])))
    wait_until("the old leader to catch up", lambda: old.get(last) == acked[last], 20)
    if c.find_leader() != lid:
        with pytest.raises(redis.ReadOnlyError):
            old.set("x", "y")


def test_no_quorum_answers_instead_of_hanging(make_cluster):
    """With both followers dead, a write and a read on the old leader get an error within
    the server's timeouts (10 s / 5 s) instead of hanging; service resumes after."""
    c = make_cluster(3)
    lid = c.leader()
    lead = rc(c.m(lid), socket_timeout=30)
    assert lead.set("q", "1") is True
    fids = c.followers(lid)
    for fid in fids:
        c.kill9(fid)
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError) as e:
        lead.set("q", "2")
    assert time.monotonic() - t0 < 15
    assert str(e.value).split()[0] in ("timeout:", "TRYAGAIN", "You"), str(e.value)
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError, match="TRYAGAIN"):
        lead.get("q")
    assert time.monotonic() - t0 < 10
    for fid in fids:
        c.restart(fid)  # waits for /readyz: SIGTERM during boot would kill it outright
    new = c.leader(timeout=30)
    w = rc(c.m(new))
    wait_until("a write after recovery", lambda: w.set("q", "3") is True, 20)
    assert w.get("q") == b"3"


def test_resp_counters_in_metrics(single, r, ns):
    """The RESP listener's counters are on the same node's /metrics."""
    def scrape():
        text = requests.get(f"{single.url(1)}/metrics", timeout=10).text
        return {m.group(1): int(m.group(2)) for m in
                re.finditer(r"^(conclave_resp_[a-z_]+) (\d+)$", text, re.M)}
    before = scrape()
    for k in ("commands_total", "errors_total", "connections_total", "proposals_total",
              "reads_total", "clients"):
        assert f"conclave_resp_{k}" in before, before
    for i in range(5):
        r.set(f"{ns}m{i}", "v")
    r.get(f"{ns}m0")
    with pytest.raises(redis.ResponseError):
        r.execute_command("NOSUCHCOMMAND")
    after = scrape()
    assert after["conclave_resp_clients"] >= 1  # r is connected now
    assert after["conclave_resp_commands_total"] >= before["conclave_resp_commands_total"] + 7
    assert after["conclave_resp_errors_total"] >= before["conclave_resp_errors_total"] + 1
    assert after["conclave_resp_proposals_total"] > before["conclave_resp_proposals_total"]
    assert after["conclave_resp_reads_total"] > before["conclave_resp_reads_total"]
    # lock, lease, election and id requests have their own HTTP path classes
    requests.post(f"{single.url(1)}/v1/lease", json={"ttl_ms": 5000}, timeout=10)
    text = requests.get(f"{single.url(1)}/metrics", timeout=10).text
    assert re.search(r'^conclave_http_requests_total\{path="/v1/lease",code="2xx"\} \d+$',
                     text, re.M), text
