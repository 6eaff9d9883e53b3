"""test_id_client.py -- the C client's local segment buffer (cc_id_next) against three
real nodes (docs/client.md "IDs", docs/id.md).

A small C driver (its source is below; built with cc against BUILD_DIR/libconclave-client.a)
runs T threads that each take N ids of one tag with cc_id_next, retrying transient errors,
and writes them as int64 to a file, thread after thread. The test runs it twice (two client
lives) while the leader is killed with -9 and restarted, then checks:
  - no id appears twice, across threads, client lives and server restarts;
  - every thread's ids strictly increase (the client hands out ids in increasing order);
  - the second life's ids lie above the first life's (a restart never reissues).
An unknown tag is CC_ENOTFOUND (the driver's exit code 3). Every wait is bounded.
"""

import array
import os
import subprocess
import threading
import time

import pytest

from cluster import default_binary
from test_id import create_tag, make_id_cluster  # noqa: F401

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DRIVER = r"""
#include <conclave/client.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static cc_client *cli;
static const char *tag;
static long per;
static long long *ids;
static int fatal;

static void *run(void *arg) {
    long long *mine = ids + (long)(size_t)arg * per;
    for (long i = 0; i < per; i++) {
        int64_t id = 0;
        int rv = 0;
        for (int tries = 0; tries < 400; tries++) {   /* transient: the server restarts */
            rv = cc_id_next(cli, tag, &id);
            if (rv == 0 || rv == CC_ENOTFOUND || rv == CC_EINVAL) break;
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (rv != 0) {
            fprintf(stderr, "cc_id_next: %s: %s\n", cc_strerror(rv), cc_last_error());
            fatal = rv == CC_ENOTFOUND ? 3 : 2;
            return NULL;
        }
        mine[i] = id;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) return 64;
    tag = argv[2];
    int threads = atoi(argv[3]);
    per = atol(argv[4]);
    struct cc_options o = {.request_timeout_ms = 3000};
    if (cc_client_new(argv[1], &o, &cli) != 0) return 2;
    ids = calloc((size_t)threads * per, sizeof(long long));
    pthread_t th[64];
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, run, (void *)(size_t)i);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    if (fatal) return fatal;
    struct cc_id_stats st;
    cc_id_stats(cli, tag, &st);
    fprintf(stderr, "served %llu fetches %llu errors %llu empty %llu last_step %lld\n",
            (unsigned long long)st.served, (unsigned long long)st.fetches,
            (unsigned long long)st.fetch_errors, (unsigned long long)st.empty_waits,
            (long long)st.last_step);
    FILE *f = fopen(argv[5], "wb");
    fwrite(ids, sizeof(long long), (size_t)threads * per, f);
    fclose(f);
    cc_client_free(cli);
    return 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    build = os.path.dirname(default_binary())
    lib = os.path.join(build, "libconclave-client.a")
    if not os.path.exists(lib):
        pytest.skip(f"{lib} is not built")
    d = tmp_path_factory.mktemp("idclient")
    src, exe = d / "driver.c", d / "driver"
    src.write_text(DRIVER)
    flags = ["-fsanitize=address,undefined"] if "asan" in build else []
    subprocess.run(["cc", "-std=c17", "-O1", "-g", "-pthread", *flags, "-I",
                    os.path.join(ROOT, "include"), "-o", str(exe), str(src), lib, "-ljansson",
                    "-lhttp_parser"], check=True, timeout=120)
    return str(exe)


def run_driver(exe, endpoints, tag, threads, per, out, timeout=120):
    return subprocess.Popen([exe, endpoints, tag, str(threads), str(per), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load(path, threads, per):
    a = array.array("q")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    assert len(a) == threads * per
    return a


def test_client_buffer_many_threads_and_restarts_never_reissue(make_id_cluster, driver, tmp_path):
    c = make_id_cluster(3)
    create_tag(c.url(1), "cli", step=1000)
    eps = ",".join(m.http_addr for m in c.members)
    threads, per = 8, 25000
    lives = []
    for life in range(2):
        out = tmp_path / f"ids{life}"
        p = run_driver(driver, eps, "cli", threads, per, out)
        time.sleep(0.3)
        leader = c.leader(timeout=15)
        c.kill9(leader)  # mid-run: fetches fail over to the others after an election
        time.sleep(0.5)
        c.restart(leader)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        print(err.strip())
        lives.append(load(out, threads, per))
    for a in lives:
        for t in range(threads):
            s = a[t * per:(t + 1) * per]
            assert all(y > x for x, y in zip(s, s[1:])), f"thread {t}: ids not increasing"
    assert min(lives[1]) > max(lives[0]), "the second client life reissued or went below"
    allids = sorted(lives[0].tolist() + lives[1].tolist())
    assert all(y != x for x, y in zip(allids, allids[1:])), "an id was handed out twice"


def test_client_unknown_tag(make_id_cluster, driver, tmp_path):
    c = make_id_cluster(1)
    p = run_driver(driver, c.members[0].http_addr, "nope", 2, 10, tmp_path / "x")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3, err
    assert "not found" in err
