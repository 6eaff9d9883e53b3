#!/usr/bin/python3
"""kv_bench.py -- Conclave vs etcd on this machine, in one run, same client, same disk.

    /usr/bin/python3 bench/kv_bench.py [--build-dir build] [--reps 3] [--duration 2]

Starts four clusters on loopback, data dirs in one temp dir (removed at the end):
a 1-node and a 3-node Conclave (BUILD_DIR/conclave, the release build, default tick) and
a 1-node and a 3-node etcd (Debian's etcd-server 3.4, default heartbeat/election). Both
are driven over HTTP/1.1 keep-alive by wrk (bench/kv.lua replays prepared requests):
Conclave's /v1/kv API, and etcd's gRPC-JSON gateway (POST /v3/kv/put, /v3/kv/range with
base64 keys and values), so each side pays for HTTP parsing and JSON. Clients talk to the
leader (found via /v1/cluster/status and /v3/maintenance/status).

Workloads (keys bench/k0..k999, 100-byte values, all keys written before the first run):
  put_seq     1 connection, sequential PUTs: latency p50/p99
  put_c16     16 connections: PUT throughput
  put_c64     64 connections: PUT throughput
  get_lin_c64 64 connections: linearizable GET throughput (etcd: default range)
  get_ser_c64 64 connections: serializable GET throughput (etcd: "serializable": true)
Each workload runs --reps times for --duration seconds; repetitions are interleaved
(rep 1 of every system and workload, then rep 2, ...) so slow phases of this shared,
noisy machine spread over all systems. The table shows medians and the ratio
Conclave / etcd. Also measured: fdatasync latency in the data dir and loopback TCP
round trip (bench/physlimits.c), the floors under any replicated write here.

Raw results: BUILD_DIR/bench/results.json. Exit status 1 if a cluster could not start
or a run failed outright; runs with error responses are reported, not hidden.
Sections: setup | etcd | conclave | workloads | report | main.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from cluster import Cluster, free_ports, kill_all_children, wait_until  # noqa: E402

N_KEYS = 1000
VALUE = b"v" * 100
WRK_LUA = os.path.join(ROOT, "bench", "kv.lua")
WORKLOADS = [  # name, op, connections, wrk threads
    ("put_seq", "put", 1, 1),
    ("put_c16", "put", 16, 2),
    ("put_c64", "put", 64, 2),
    ("get_lin_c64", "get_lin", 64, 2),
    ("get_ser_c64", "get_ser", 64, 2),
]


def log(msg):
    print(f"bench: {msg}", flush=True)


def http_json(url, body=None, method=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


# ---- etcd ----------------------------------------------------------------------------


class EtcdCluster:
    def __init__(self, root, n):
        self.root = root
        self.n = n
        ports = free_ports(2 * n)
        self.client = [ports[2 * i] for i in range(n)]
        self.peer = [ports[2 * i + 1] for i in range(n)]
        self.procs = []

    def url(self, i):
        return f"http://127.0.0.1:{self.client[i]}"

    def start(self, timeout=60):
        initial = ",".join(f"e{i}=http://127.0.0.1:{self.peer[i]}" for i in range(self.n))
        for i in range(self.n):
            d = os.path.join(self.root, f"e{i}")
            os.makedirs(d, exist_ok=True)
            args = ["etcd", "--name", f"e{i}", "--data-dir", os.path.join(d, "data"),
                    "--listen-client-urls", self.url(i), "--advertise-client-urls", self.url(i),
                    "--listen-peer-urls", f"http://127.0.0.1:{self.peer[i]}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[i]}",
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"bench-{os.getpid()}-{self.n}",
                    "--logger", "zap", "--log-level", "error"]
            with open(os.path.join(d, "log"), "ab") as lf:
                self.procs.append(subprocess.Popen(args, stdout=lf, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL))

        def healthy():
            for i in range(self.n):
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"etcd e{i} exited with {self.procs[i].returncode}")
                if http_json(self.url(i) + "/health").get("health") != "true":
                    return False
            return self.leader() is not None

        wait_until(f"etcd x{self.n} healthy with a leader", healthy, timeout, interval=0.2)

    def leader(self):
        """The leader's client URL, or None."""
        for i in range(self.n):
            s = http_json(self.url(i) + "/v3/maintenance/status", {})
            if s.get("leader") and s["leader"] == s["header"]["member_id"]:
                return self.url(i)
        return None

    def leader_url(self):
        return wait_until("etcd leader", self.leader, 30, interval=0.2)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    # request lines for bench/kv.lua
    def requests(self, op):
        out = []
        for k in range(N_KEYS):
            key = b64(f"bench/k{k}")
            if op == "put":
                body = {"key": key, "value": b64(VALUE)}
                out.append(("POST", "/v3/kv/put", json.dumps(body, separators=(",", ":"))))
            else:
                body = {"key": key}
                if op == "get_ser":
                    body["serializable"] = True
                out.append(("POST", "/v3/kv/range", json.dumps(body, separators=(",", ":"))))
        return out

    content_type = "application/json"


# ---- conclave ------------------------------------------------------------------------


class ConclaveCluster:
    content_type = ""

    def __init__(self, root, n, binary):
        # the release default tick (100 ms, election 10 ticks) matches etcd's defaults
        # (heartbeat 100 ms, election 1000 ms)
        self.c = Cluster(root, n=n, binary=binary, tick_ms=100)

    def start(self, timeout=60):
        self.c.start(ready_timeout=timeout)

    def leader_url(self):
        return self.c.url(self.c.leader(timeout=30))

    def close(self):
        problems = self.c.close()
        for p in problems:
            log(f"conclave problem: {p}")

    def requests(self, op):
        out = []
        for k in range(N_KEYS):
            if op == "put":
                out.append(("PUT", f"/v1/kv/bench/k{k}", VALUE.decode()))
            elif op == "get_lin":
                out.append(("GET", f"/v1/kv/bench/k{k}", ""))
            else:
                out.append(("GET", f"/v1/kv/bench/k{k}?consistency=serializable", ""))
        return out


# ---- workloads -------------------------------------------------------------------------


def write_reqs(path, reqs):
    with open(path, "w") as f:
        for method, p, body in reqs:
            assert "\t" not in body and "\n" not in body
            f.write(f"{method}\t{p}\t{body}\n")


def run_wrk(url, reqs_path, ctype, conns, threads, duration):
    env = dict(os.environ, BENCH_REQS=reqs_path, BENCH_CTYPE=ctype)
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
           "-s", WRK_LUA, url]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in p.stdout.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[len("WRKJSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["errors"] = sum(v for k, v in r.items() if k.startswith("err_"))
            return r
    raise RuntimeError(f"wrk gave no result (exit {p.returncode}): {p.stdout[-500:]} "
                       f"{p.stderr[-500:]}")


def preload(system, url, deadline_s=60):
    """Writes every key once, sequentially on one keep-alive connection, so reads always
    find their key. Sequential on purpose: it works even on a server whose concurrent
    path is broken, and 1000 writes take a second or two."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    headers = {"Content-Type": system.content_type} if system.content_type else {}
    deadline = time.monotonic() + deadline_s
    try:
        for method, p, body in system.requests("put"):
            while True:
                try:
                    conn.request(method, p, body=body.encode(), headers=headers)
                    r = conn.getresponse()
                    r.read()
                    if r.status == 200:
                        break
                    err = f"{r.status}"
                except (OSError, http.client.HTTPException) as e:
                    err = repr(e)
                    conn.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"preload: {method} {p} keeps failing: {err}")
                time.sleep(0.1)
    finally:
        conn.close()


# ---- report ------------------------------------------------------------------------------


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "us":
        return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} us"
    return f"{v:,.0f}/s"


def summarize(runs):
    out = {}
    for r in runs:
        out.setdefault(r["system"], {}).setdefault(r["workload"], []).append(r)
    summary = {}
    for system, per in out.items():
        for wl, rs in per.items():
            summary.setdefault(system, {})[wl] = {
                "rps": statistics.median(x["rps"] for x in rs),
                "p50_us": statistics.median(x["p50_us"] for x in rs),
                "p99_us": statistics.median(x["p99_us"] for x in rs),
                "errors": sum(x["errors"] for x in rs),
                "requests": sum(x["requests"] for x in rs),
                "reps": len(rs),
            }
    return summary


ROWS = [  # label, workload, field, unit
    ("put seq p50 latency", "put_seq", "p50_us", "us"),
    ("put seq p99 latency", "put_seq", "p99_us", "us"),
    ("put seq throughput", "put_seq", "rps", "rps"),
    ("put 16 conns", "put_c16", "rps", "rps"),
    ("put 64 conns", "put_c64", "rps", "rps"),
    ("get linearizable 64 conns", "get_lin_c64", "rps", "rps"),
    ("get serializable 64 conns", "get_ser_c64", "rps", "rps"),
]


def table(summary, phys):
    lines = []
    head = f"{'':27s}"
    for n in (1, 3):
        head += f" | {'conclave x' + str(n):>12s} {'etcd x' + str(n):>12s} {'ratio':>6s}"
    lines.append(head)
    lines.append("-" * len(head))
    for label, wl, field, unit in ROWS:
        row = f"{label:27s}"
        for n in (1, 3):
            c = summary.get(f"conclave-{n}", {}).get(wl, {}).get(field)
            e = summary.get(f"etcd-{n}", {}).get(wl, {}).get(field)
            ratio = f"{c / e:.2f}" if c is not None and e else "-"
            row += f" | {fmt(c, unit):>12s} {fmt(e, unit):>12s} {ratio:>6s}"
        lines.append(row)
    errs = [f"{s}/{wl}: {v['errors']} of {v['requests'] + v['errors']}"
            for s, per in sorted(summary.items()) for wl, v in per.items() if v["errors"]]
    lines.append("ratio = conclave / etcd (latency: lower is better; throughput: higher).")
    for system, per in sorted(summary.items()):
        seq, c16 = per.get("put_seq", {}).get("rps"), per.get("put_c16", {}).get("rps")
        if seq and c16 and c16 < 1.5 * seq:
            lines.append(f"note: {system}: 16 connections put only {c16:,.0f}/s against "
                         f"{seq:,.0f}/s on one; writes do not batch, or requests stall "
                         f"(wrk does not count requests still unanswered when a run ends)")
    if errs:
        lines.append("runs with error responses or timeouts (not counted as throughput): "
                     + "; ".join(errs))
    if phys:
        f, r = phys["fdatasync_us"], phys["loopback_rtt_us"]
        lines.append(f"machine floors (median of {len(phys['samples'])} samples): fdatasync of "
                     f"a 4 KiB append {f['median']:.0f} us (p99 {f['p99']:.0f} us); loopback "
                     f"TCP round trip {r['median']:.0f} us (p99 {r['p99']:.0f} us)")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------


def physlimits(build_dir, data_dir):
    """One bench/physlimits.c sample (make bench builds it; built here if missing)."""
    exe = os.path.join(build_dir, "bench", "physlimits")
    if not os.access(exe, os.X_OK):
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        subprocess.run(["cc", "-std=c17", "-O2", "-D_POSIX_C_SOURCE=200809L", "-o", exe,
                        os.path.join(ROOT, "bench", "physlimits.c")], check=True)
    out = subprocess.run([exe, data_dir], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    return json.loads(out)


def combine_phys(samples):
    """Median over samples (taken before, between and after the runs) of each figure."""
    out = {}
    for what in ("fdatasync_us", "loopback_rtt_us"):
        out[what] = {k: statistics.median(s[what][k] for s in samples)
                     for k in ("median", "p99", "n")}
    out["samples"] = samples
    return out


def machine_info(binary):
    def cmd(args):
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=10,
                                  cwd=ROOT).stdout.strip()
        except OSError:
            return ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "conclave_rev": cmd(["git", "describe", "--always", "--dirty"]),
        "conclave_binary": binary,
        "etcd_version": cmd(["etcd", "--version"]).splitlines()[0:1],
        "wrk_version": cmd(["wrk", "-v"]).splitlines()[0:1],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_KV_REPS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_KV_SECONDS", 2)))
    ap.add_argument("--systems", default="conclave-1,conclave-3,etcd-1,etcd-3")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    build_dir = os.path.abspath(args.build_dir)
    binary = os.path.join(build_dir, "conclave")
    out_path = args.out or os.path.join(build_dir, "bench", "results.json")
    for tool in ("wrk", "etcd"):
        if not shutil.which(tool):
            log(f"{tool} is not installed (scripts/deps.sh installs wrk, etcd-server)")
            return 1
    if not os.access(binary, os.X_OK):
        log(f"{binary} is not built")
        return 1

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="conclave-bench-")
    info = machine_info(binary)
    systems, runs, rc, phys = {}, [], 0, None
    try:
        phys_samples = [physlimits(build_dir, tmp)]
        for name in args.systems.split(","):
            kind, n = name.split("-")
            root = os.path.join(tmp, name)
            os.makedirs(root)
            s = (ConclaveCluster(root, int(n), binary) if kind == "conclave"
                 else EtcdCluster(root, int(n)))
            systems[name] = s
            s.start()
            url = s.leader_url()
            preload(s, url)
            files = {}
            for op in ("put", "get_lin", "get_ser"):
                files[op] = os.path.join(root, f"reqs-{op}.txt")
                write_reqs(files[op], s.requests(op))
            s.bench = {"url": url, "files": files}
            run_wrk(url, files["put"], s.content_type, 16, 2, 1)  # warm-up
            log(f"{name} up, leader at {url}")
        for rep in range(args.reps):
            if rep == args.reps // 2:
                phys_samples.append(physlimits(build_dir, tmp))
            for name, s in systems.items():
                for wl, op, conns, threads in WORKLOADS:
                    r = run_wrk(s.bench["url"], s.bench["files"][op], s.content_type, conns,
                                threads, args.duration)
                    r.update(system=name, workload=wl, rep=rep, conns=conns)
                    runs.append(r)
                    log(f"rep {rep + 1}/{args.reps} {name:10s} {wl:12s} {r['rps']:9.0f}/s "
                        f"p50 {r['p50_us']}us p99 {r['p99_us']}us errors {r['errors']}")
        phys_samples.append(physlimits(build_dir, tmp))
        phys = combine_phys(phys_samples)
        log(f"fdatasync median {phys['fdatasync_us']['median']:.0f} us, loopback RTT median "
            f"{phys['loopback_rtt_us']['median']:.0f} us (median of {len(phys_samples)})")
    except (RuntimeError, AssertionError, subprocess.SubprocessError, OSError) as e:
        log(f"FAILED: {e}")
        rc = 1
    finally:
        for s in systems.values():
            s.close()
        kill_all_children()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(runs)
    info["loadavg_end"] = os.getloadavg()
    info["seconds"] = round(time.monotonic() - t_start, 1)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump({"machine": info, "params": {"reps": args.reps, "duration_s": args.duration,
                                                "keys": N_KEYS, "value_bytes": len(VALUE),
                                                "workloads": WORKLOADS},
                   "physical": phys, "summary": summary, "runs": runs}, f,
                  indent=1)
    print()
    print(table(summary, phys))
    print(f"(medians of {args.reps} x {args.duration}s runs; {info['nproc']} CPUs shared with "
          f"other work, load average {info['loadavg_start'][0]:.1f} at start; raw results "
          f"in {os.path.relpath(out_path, ROOT)}; took {info['seconds']:.0f}s)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
