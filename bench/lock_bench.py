#!/usr/bin/python3
"""lock_bench.py -- Conclave's locks vs etcd 3.4's lock API vs Redis, in one run.

    /usr/bin/python3 bench/lock_bench.py [--build-dir build] [--reps 3] [--duration 2]

Starts, on loopback with data in one temp dir (removed at the end): a 3-node Conclave
(BUILD_DIR/conclave, release build, default timings), a 3-node etcd (Debian's
etcd-server 3.4, defaults) and one redis-server (Debian's, started with --save "" and
--appendonly no: nothing is written to disk, so a crash or a failover to a replica can
lose a granted lock; Conclave and etcd fsync every grant on a majority before answering).

The load comes from bench/lock_driver.c (built here with cc into BUILD_DIR/bench/), one
thread and one keep-alive connection per client, so the client costs little and the
same on every side (its CPU time per grant is measured and printed):

  uncontended_c1   1 client: acquire + release cycles/s on one lock
  uncontended_c16  16 clients, each on its own lock name: cycles/s
  handoff_c50      50 clients loop acquire (waiting) -> release on ONE lock: grants/s

Per system (lock_driver.c has the details):
  conclave      POST /v1/lock/{name} {"owner","lease","wait_ms"} and DELETE with
                {"owner","token"}; one lease per client (POST /v1/lease), as etcd's session
  conclave-ttl  the same with {"ttl_ms"} instead of a lease: the server makes a lease for
                each hold (two more Raft entries per cycle)
  etcd          POST /v3/lock/lock {"name","lease"} and /v3/lock/unlock {"key"}, one lease
                per client from /v3/lease/grant, revoked at the end (/v3/lease/revoke)
  redis         SET name owner NX PX ttl, polling every --poll-us (1000) while the lock
                is taken (Redis has no wait queue); release = EVAL compare-and-delete

Every grant is checked by the driver: no two clients hold one lock at once, and
Conclave's fencing tokens only grow. Before the runs a negative control (Redis with SET
without NX) must show violations, or the checker is broken and the script fails.

Repetitions are interleaved (rep 1 of every system and workload, then rep 2, ...); the
table shows medians and the ratios conclave/etcd and conclave/redis. Target of issue #5:
handoffs/s at 50 contenders >= 5x etcd's (PASS/MISS). Raw results, every run included:
BUILD_DIR/bench/locks.json. --perf WORKLOAD records `perf record --call-graph dwarf` on
the Conclave leader during that workload's first repetition
(BUILD_DIR/bench/perf-lock-WORKLOAD.data).
Exit status 1 if a system could not start, a run failed outright, the negative control
saw nothing, or a real system showed a violation.
Sections: setup | redis | runs | report | main.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from cluster import free_ports, kill_all_children, wait_until  # noqa: E402
from kv_bench import ConclaveCluster, EtcdCluster, log  # noqa: E402

DRIVER_SRC = os.path.join(ROOT, "bench", "lock_driver.c")
WORKLOADS = [  # name, clients, names
    ("uncontended_c1", 1, "distinct"),
    ("uncontended_c16", 16, "distinct"),
    ("handoff_c50", 50, "same"),
]
SYSTEMS = ("conclave", "conclave-ttl", "etcd", "redis")
TARGET_HANDOFF_RATIO = 5.0

# ---- setup ---------------------------------------------------------------------------


def build_driver(build_dir):
    exe = os.path.join(build_dir, "bench", "lock_driver")
    if (not os.access(exe, os.X_OK)
            or os.path.getmtime(exe) < os.path.getmtime(DRIVER_SRC)
            or os.path.getmtime(exe) < os.path.getmtime(os.path.join(ROOT, "bench",
                                                                      "bench_util.h"))):
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        subprocess.run(["cc", "-std=c17", "-O2", "-Wall", "-Wextra", "-pthread", "-o", exe,
                        DRIVER_SRC], check=True)
    return exe


# ---- redis ---------------------------------------------------------------------------


class RedisServer:
    """One redis-server, persistence off (--save "" --appendonly no)."""

    def __init__(self, root):
        self.root = root
        self.port = free_ports(1)[0]
        self.proc = None

    def start(self, timeout=20):
        os.makedirs(self.root, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.root, "--daemonize", "no",
                "--protected-mode", "no", "--loglevel", "warning"]
        with open(os.path.join(self.root, "log"), "ab") as lf:
            self.proc = subprocess.Popen(args, stdout=lf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

        def pong():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")

        wait_until("redis-server answering PING", pong, timeout, interval=0.1)

    def addr(self):
        return f"127.0.0.1:{self.port}"

    def version(self):
        try:
            return subprocess.run(["redis-server", "--version"], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---- runs ----------------------------------------------------------------------------


def steal_ticks():
    """CPU time the hypervisor gave to others (the 'steal' column of /proc/stat, in
    clock ticks); 0 where the kernel does not report it."""
    try:
        with open("/proc/stat") as f:
            cols = f.readline().split()
        return int(cols[8]) if len(cols) > 8 else 0
    except (OSError, ValueError):
        return 0


def run_driver(exe, system, addr, clients, names, duration, prefix, poll_us):
    cmd = [exe, system, addr, "--clients", str(clients), "--names", names,
           "--seconds", str(duration), "--prefix", prefix, "--ttl-ms", "30000",
           "--wait-ms", "5000", "--poll-us", str(poll_us)]
    steal0, t0 = steal_ticks(), time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90)
    cpu_ticks = (time.monotonic() - t0) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
    try:
        r = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"lock_driver gave no result (exit {p.returncode}): "
                           f"{p.stdout[-300:]} {p.stderr[-300:]}")
    if p.returncode != 0:
        raise RuntimeError(f"lock_driver {system} failed: {r.get('first_error')}")
    # The machine is shared: time taken by other guests shows up here, not in our code.
    r["steal_pct"] = round(100.0 * (steal_ticks() - steal0) / max(cpu_ticks, 1.0), 1)
    return r


def perf_record(pid, out, seconds):
    """Starts `perf record --call-graph dwarf` on pid for `seconds` (None without perf)."""
    if not shutil.which("perf"):
        log("perf is not installed; no profile")
        return None
    return subprocess.Popen(["perf", "record", "--call-graph", "dwarf", "-F", "499",
                             "-p", str(pid), "-o", out,
                             "--", "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- report --------------------------------------------------------------------------


def summarize(runs):
    per = {}
    for r in runs:
        per.setdefault(r["sys"], {}).setdefault(r["workload"], []).append(r)
    out = {}
    for system, wls in per.items():
        for wl, rs in wls.items():
            out.setdefault(system, {})[wl] = {
                "grants_per_s": statistics.median(x["grants_per_s"] for x in rs),
                "acquire_p50_us": statistics.median(x["acquire_p50_us"] for x in rs),
                "acquire_p99_us": statistics.median(x["acquire_p99_us"] for x in rs),
                "cycle_p50_us": statistics.median(x["cycle_p50_us"] for x in rs),
                "cycle_p99_us": statistics.median(x["cycle_p99_us"] for x in rs),
                "client_cpu_us_per_grant": statistics.median(
                    x["client_cpu_us_per_grant"] for x in rs),
                "errors": sum(x["errors"] for x in rs),
                "wait_timeouts": sum(x["wait_timeouts"] for x in rs),
                "violations": sum(x["violations"] for x in rs),
                "token_regressions": sum(x["token_regressions"] for x in rs),
                "lost": sum(x["lost"] for x in rs),
                "reps": len(rs),
            }
    return out


def fmt_us(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} us"


ROWS = [  # label, workload, field, kind
    ("cycles/s, 1 client", "uncontended_c1", "grants_per_s", "rate"),
    ("cycle p50, 1 client", "uncontended_c1", "cycle_p50_us", "us"),
    ("cycle p99, 1 client", "uncontended_c1", "cycle_p99_us", "us"),
    ("cycles/s, 16 clients x 16 locks", "uncontended_c16", "grants_per_s", "rate"),
    ("handoffs/s, 50 on 1 lock", "handoff_c50", "grants_per_s", "rate"),
    ("wait p50, 50 on 1 lock", "handoff_c50", "acquire_p50_us", "us"),
    ("driver CPU per grant, 50", "handoff_c50", "client_cpu_us_per_grant", "us"),
]


def table(summary, systems):
    cols = [s for s in SYSTEMS if s in systems]
    head = f"{'':32s}" + "".join(f" {s:>13s}" for s in cols)
    ratios = [("etcd", "c/etcd"), ("redis", "c/redis")]
    ratios = [(o, lab) for o, lab in ratios if o in cols and "conclave" in cols]
    head += "".join(f" {lab:>8s}" for _, lab in ratios)
    lines = [head, "-" * len(head)]
    for label, wl, field, kind in ROWS:
        row = f"{label:32s}"
        vals = {s: summary.get(s, {}).get(wl, {}).get(field) for s in cols}
        for s in cols:
            v = vals[s]
            row += f" {('-' if v is None else f'{v:,.0f}/s') if kind == 'rate' else fmt_us(v):>13s}"
        for other, _ in ratios:
            c, o = vals.get("conclave"), vals.get(other)
            row += f" {f'{c / o:.2f}' if c is not None and o else '-':>8s}"
        lines.append(row)
    lines.append("ratios: conclave / other (rates: higher is better; latencies: lower).")
    return "\n".join(lines)


def verdict(summary, runs=()):
    def reps(system):
        return {r["rep"]: r for r in runs if r["sys"] == system and r["workload"] == "handoff_c50"}
    cr, er = reps("conclave"), reps("etcd")
    pairs = [cr[k]["grants_per_s"] / er[k]["grants_per_s"] for k in sorted(cr)
             if k in er and er[k]["grants_per_s"]]
    steal = [r.get("steal_pct", 0.0) for k in sorted(cr) for r in (cr[k], er.get(k)) if r]
    c = summary.get("conclave", {}).get("handoff_c50", {}).get("grants_per_s")
    e = summary.get("etcd", {}).get("handoff_c50", {}).get("grants_per_s")
    if not c or not e:
        return None, "target: handoffs/s at 50 contenders >= 5x etcd: not measured"
    ratio = c / e
    ok = ratio >= TARGET_HANDOFF_RATIO
    line = (f"target (issue #5): handoffs/s at 50 contenders >= {TARGET_HANDOFF_RATIO:.0f}x "
            f"etcd: {c:,.0f}/s vs {e:,.0f}/s = {ratio:.2f}x -> {'PASS' if ok else 'MISS'}")
    if pairs:
        line += (f"\n  same-rep ratios {', '.join(f'{x:.2f}' for x in pairs)} "
                 f"(median {statistics.median(pairs):.2f}x); steal during the handoff runs: "
                 f"{', '.join(f'{x:.0f}%' for x in steal)}")
    return ok, line


# ---- main ----------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_LOCK_REPS", 3)))
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("BENCH_LOCK_SECONDS", 2)))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--workloads", default=",".join(w[0] for w in WORKLOADS))
    ap.add_argument("--poll-us", type=int, default=1000,
                    help="redis: sleep between SET NX attempts while the lock is taken")
    ap.add_argument("--perf", default=None, metavar="WORKLOAD",
                    help="perf record the Conclave leader during this workload")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    build_dir = os.path.abspath(args.build_dir)
    binary = os.path.join(build_dir, "conclave")
    out_path = args.out or os.path.join(build_dir, "bench", "locks.json")
    systems = [s for s in args.systems.split(",") if s]
    workloads = [w for w in WORKLOADS if w[0] in args.workloads.split(",")]
    for s in systems:
        if s not in SYSTEMS:
            log(f"unknown system {s} (known: {', '.join(SYSTEMS)})")
            return 1
    need = {"etcd": "etcd", "redis": "redis-server"}
    for s, tool in need.items():
        if s in systems and not shutil.which(tool):
            log(f"{tool} is not installed (scripts/deps.sh installs it)")
            return 1
    if any(s.startswith("conclave") for s in systems) and not os.access(binary, os.X_OK):
        log(f"{binary} is not built")
        return 1

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="conclave-lockbench-")
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }
    servers, addrs, runs, rc, control, failed = {}, {}, [], 0, None, {}
    try:
        exe = build_driver(build_dir)
        for s in systems:  # conclave-ttl gets a cluster of its own: a crash stays apart
            if s.startswith("conclave"):
                servers[s] = ConclaveCluster(os.path.join(tmp, s), 3, binary)
        if "etcd" in systems:
            servers["etcd"] = EtcdCluster(os.path.join(tmp, "etcd"), 3)
        servers["redis"] = RedisServer(os.path.join(tmp, "redis"))  # also the control
        for name, s in servers.items():
            os.makedirs(getattr(s, "root", tmp), exist_ok=True)
            s.start()
            if name == "redis":
                addrs[name] = s.addr()
                info["redis_version"] = s.version()
            else:
                addrs[name] = s.leader_url().split("//")[1]
            log(f"{name} up at {addrs[name]}")

        # negative control: the exclusion check must see a lock that excludes nobody
        control = run_driver(exe, "redis-broken", addrs["redis"], 50, "same", 0.5,
                             "control", args.poll_us)
        log(f"negative control (redis SET without NX, 50 clients): "
            f"{control['violations']} overlapping holds seen")
        if control["violations"] == 0:
            log("FAILED: the negative control saw no overlap; the exclusion check is blind")
            rc = 1

        # failed: system -> why; it is skipped from then on, the others go on
        for rep in range(args.reps):
            for system in systems:
                for wl, clients, names in workloads:
                    if system in failed:
                        break
                    prof = None
                    if args.perf == wl and rep == 0 and system == "conclave":
                        pid = next(iter(servers["conclave"].pids().values()))
                        out = os.path.join(build_dir, "bench", f"perf-lock-{wl}.data")
                        prof = perf_record(pid, out, args.duration)
                    try:
                        r = run_driver(exe, system, addrs[system], clients, names,
                                       args.duration, f"r{rep}-{wl}-{system}-{os.getpid()}",
                                       args.poll_us)
                    except RuntimeError as e:
                        failed[system] = f"{wl}, rep {rep + 1}: {e}"
                        log(f"FAILED: {system}: {failed[system]}; no more runs of {system}")
                        rc = 1
                        continue
                    if prof is not None:
                        prof.wait(timeout=60)
                        log(f"perf data: {out} (perf report -i {out} --no-children)")
                    r.update(sys=system, workload=wl, rep=rep)
                    runs.append(r)
                    if r["errors"] and system in servers and hasattr(servers[system], "c") \
                            and servers[system].c.check_alive():
                        failed[system] = f"{wl}, rep {rep + 1}: a member died"
                        log(f"FAILED: {system}: a member died during {wl}; no more runs")
                        rc = 1
                    log(f"rep {rep + 1}/{args.reps} {system:12s} {wl:16s} "
                        f"{r['grants_per_s']:8.0f}/s cycle p50 {r['cycle_p50_us']:.0f}us "
                        f"acquire p99 {r['acquire_p99_us']:.0f}us errors {r['errors']} "
                        f"violations {r['violations']} steal {r['steal_pct']:.0f}%"
                        + (f" first error: {r['first_error']}" if r["first_error"] else ""))
    except (RuntimeError, AssertionError, subprocess.SubprocessError, OSError) as e:
        log(f"FAILED: {e}")
        rc = 1
    finally:
        for name, s in servers.items():
            if name == "redis":
                s.close()
            else:
                s.close(logs_dir=os.path.join(build_dir, "bench", f"logs-lock-{name}"))
        kill_all_children()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(runs)
    bad = [f"{s}/{wl}: {v['violations']} violations, {v['token_regressions']} token "
           f"regressions" for s, per in summary.items() for wl, v in per.items()
           if v["violations"] or v["token_regressions"]]
    errs = [f"{s}/{wl}: {v['errors']}" for s, per in summary.items()
            for wl, v in per.items() if v["errors"]]
    ok, target_line = verdict(summary, runs)
    info["loadavg_end"] = os.getloadavg()
    info["seconds"] = round(time.monotonic() - t_start, 1)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump({"machine": info, "params": {"reps": args.reps, "duration_s": args.duration,
                                                "poll_us": args.poll_us,
                                                "workloads": workloads},
                   "negative_control": control, "summary": summary, "target": target_line,
                   "failed": failed,
                   "runs": runs}, f, indent=1)
    print()
    print(table(summary, systems))
    print(target_line)
    print("redis: one instance, no persistence (--save '' --appendonly no) and no replica: "
          "a grant is in memory only; waiting clients poll every "
          f"{args.poll_us} us. conclave and etcd: 3 nodes, each grant fsynced on a majority.")
    if errs:
        print("runs with errors (a cycle that failed ends that client's run): "
              + "; ".join(errs))
    if bad:
        print("MUTUAL EXCLUSION BROKEN: " + "; ".join(bad))
        rc = 1
    for system, why in failed.items():
        print(f"FAILED: {system}: {why} (logs of a crashed cluster are kept under "
              f"{os.path.relpath(os.path.join(build_dir, 'bench'), ROOT)}/logs-lock-*)")
    print(f"(medians of {args.reps} x {args.duration:g}s runs; {info['nproc']} CPUs shared "
          f"with other work, load average {info['loadavg_start'][0]:.1f} at start; raw "
          f"results in {os.path.relpath(out_path, ROOT)}; took {info['seconds']:.0f}s)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
