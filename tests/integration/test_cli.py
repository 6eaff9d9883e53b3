"""test_cli.py -- `conclave kv` and `conclave cluster` against real servers (docs/cli.md).

Covers: put/get/del/txn/compact output and exit codes, values from stdin byte for byte,
-o json, prefix ranges with --limit, usage errors (exit 2), an unreachable node (exit 3),
and --endpoint lists: a dead first node is skipped, a write that reached a node is never
re-sent, a watch opens on the next node, and `cluster status` works through a list whose
first node is down.
"""

import json
import os
import subprocess

from cluster import default_binary, free_ports

BIN = default_binary()


def run(args, endpoint=None, stdin=None, timeout=30):
    env = dict(os.environ)
    env.pop("CONCLAVE_ENDPOINT", None)
    if endpoint:
        args = args + ["--endpoint", endpoint]
    return subprocess.run([BIN] + args, env=env, input=stdin, capture_output=True,
                          timeout=timeout)


def out(r):
    return r.stdout.decode()


def test_kv_put_get_del_and_json(single, ns):
    ep = single.m(1).http_addr
    r = run(["kv", "put", ns + "greeting", "hello"], ep)
    assert r.returncode == 0 and out(r).startswith("OK revision "), r
    r = run(["kv", "get", ns + "greeting"], ep)
    assert r.returncode == 0 and r.stdout == b"hello", r
    r = run(["kv", "get", ns + "greeting", "-o", "json"], ep)
    j = json.loads(out(r))
    assert j["value"] == "hello" and j["version"] == 1
    blob = bytes(range(256)) * 4
    r = run(["kv", "put", ns + "blob", "-"], ep, stdin=blob)
    assert r.returncode == 0, r
    assert run(["kv", "get", ns + "blob"], ep).stdout == blob
    for i in range(3):
        assert run(["kv", "put", f"{ns}p/{i}", str(i)], ep).returncode == 0
    r = run(["kv", "get", ns + "p/", "--prefix", "--limit", "2"], ep)
    assert out(r).splitlines() == [f"{ns}p/0 = 0", f"{ns}p/1 = 1", "(2 of 3 keys, more)"], r
    r = run(["kv", "del", ns + "p/", "--prefix"], ep)
    assert r.returncode == 0 and "deleted 3 keys" in out(r), r
    r = run(["kv", "get", ns + "missing"], ep)
    assert r.returncode == 1 and b"404 key_not_found" in r.stderr, r


def test_kv_txn_from_stdin(single, ns):
    ep = single.m(1).http_addr
    body = json.dumps({"compare": [{"key": ns + "leader", "target": "create", "op": "=",
                                    "value": 0}],
                       "success": [{"put": {"key": ns + "leader", "value": "a"}}],
                       "failure": [{"get": {"key": ns + "leader"}}]}).encode()
    r = run(["kv", "txn", "-"], ep, stdin=body)
    assert r.returncode == 0 and out(r).startswith("SUCCEEDED"), r
    r = run(["kv", "txn", "-"], ep, stdin=body)
    assert r.returncode == 0 and out(r).startswith("FAILED"), r
    r = run(["kv", "txn", "-"], ep, stdin=b"{not json")
    assert r.returncode == 1 and b"400" in r.stderr, r


def test_usage_and_unreachable_exit_codes(single):
    ep = single.m(1).http_addr
    assert run(["kv", "frob"], ep).returncode == 2
    assert run(["kv", "get"], ep).returncode == 2
    assert run(["kv", "get", "k", "--endpoint", ""], None).returncode == 2
    assert run(["kv", "get", "k"], "127.0.0.1:99999").returncode == 2   # not a port
    assert run(["kv", "get", "k"], "127.0.0.1:80,,127.0.0.1:81").returncode == 2
    assert run(["kv", "get", "k"], ",".join(["127.0.0.1:1"] * 17)).returncode == 2
    dead = free_ports(2)
    r = run(["kv", "get", "k"], f"127.0.0.1:{dead[0]}")
    assert r.returncode == 3 and b"cannot reach Conclave" in r.stderr, r
    r = run(["kv", "get", "k"], f"127.0.0.1:{dead[0]},127.0.0.1:{dead[1]}")
    assert r.returncode == 3 and b"any endpoint" in r.stderr, r


def test_endpoint_list_skips_dead_nodes(make_cluster):
    c = make_cluster(3)
    lid = c.leader()
    down = next(m for m in (1, 2, 3) if m != lid)
    up = next(m for m in (1, 2, 3) if m not in (lid, down))
    c.kill9(down)
    eps = f"{c.m(down).http_addr},{c.m(up).http_addr}"
    r = run(["kv", "put", "fo/key", "v1"], eps)
    assert r.returncode == 0, r
    assert b"trying " + c.m(up).http_addr.encode() in r.stderr, r
    # written once: version 1, not 2
    j = json.loads(out(run(["kv", "get", "fo/key", "-o", "json"], eps)))
    assert j["value"] == "v1" and j["version"] == 1, j
    r = run(["cluster", "status"], eps)
    assert r.returncode == 0, r
    # a watch skips the dead node too
    w = subprocess.Popen([BIN, "watch", "fo/key", "--count", "1", "--endpoint", eps],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(50):   # wait until the stream is open: a put then reaches it
            if run(["kv", "put", "fo/key", "v2"], eps).returncode == 0 and w.poll() is not None:
                break
            try:
                w.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
        out_w, err_w = w.communicate(timeout=10)
    finally:
        if w.poll() is None:
            w.kill()
    assert w.returncode == 0 and b"PUT fo/key = v2" in out_w, (out_w, err_w)
    assert b"trying " + c.m(up).http_addr.encode() in err_w
    # the env var takes a list too
    env = dict(os.environ, CONCLAVE_ENDPOINT=eps)
    r = subprocess.run([BIN, "kv", "get", "fo/key"], env=env, capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == b"v2", r
