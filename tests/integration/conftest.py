"""conftest.py -- fixtures that run real Conclave clusters for the integration tests.

Fixtures:
  make_cluster(n=1|3, **kw)  starts a fresh Cluster (cluster.py) in the test's tmp dir and
                             waits for /readyz on every member; torn down after the test.
  single                     one shared single-node cluster per module (starting one costs
                             an election), for tests that only add their own keys; a
                             member that died in an earlier test is replaced.
  ns                         a key prefix unique to the test, for tests sharing `single`.

Teardown always ends every process. When the test failed, or a member died on its own,
or a log holds a sanitizer/assertion report (or a clean SIGTERM exit was not clean), the
tail of each member's log is printed (pytest shows it under "Captured stdout teardown")
and the problems fail the test as a teardown error.

The binary is $CONCLAVE_BIN, else build/asan/conclave if it exists, else build/conclave.
"""

import atexit
import os
import re
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster import Cluster, default_binary, kill_all_children  # noqa: E402

# However pytest ends (an internal error, `timeout` sending SIGTERM), no server outlives it.
atexit.register(kill_all_children)


def _on_sigterm(signum, frame):
    kill_all_children()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_sigterm)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _test_failed(node):
    rep = getattr(node, "rep_call", None)
    return rep is None or rep.failed


def pytest_report_header(config):
    return f"conclave binary: {default_binary()}"


def _finish(clusters, failed):
    problems = []
    for c in clusters:
        p = c.close()
        problems += p
        if failed or p:
            print(c.log_tails())
    return problems


@pytest.fixture
def make_cluster(tmp_path, request):
    made = []

    def make(n=1, **kw):
        c = Cluster(tmp_path / f"cluster{len(made)}", n=n, **kw)
        made.append(c)
        c.start()
        return c

    yield make
    problems = _finish(made, _test_failed(request.node))
    if problems:
        pytest.fail("server problems:\n  " + "\n  ".join(problems), pytrace=False)


class _Shared:
    def __init__(self, factory):
        self.factory = factory
        self.cluster = None
        self.all = []
        self.count = 0

    def get(self):
        if self.cluster is None or self.cluster.check_alive():
            self.count += 1
            c = Cluster(self.factory.mktemp(f"single{self.count}"), n=1)
            self.all.append(c)
            c.start()
            self.cluster = c
        return self.cluster


@pytest.fixture(scope="module")
def _shared_single(tmp_path_factory):
    s = _Shared(tmp_path_factory)
    yield s
    problems = _finish(s.all, False)
    # A problem found only at module end (e.g. a leak at exit) still has to fail a test.
    if problems:
        pytest.fail("server problems at module teardown:\n  " + "\n  ".join(problems),
                    pytrace=False)


@pytest.fixture
def single(_shared_single, request):
    c = _shared_single.get()
    yield c
    dead = c.check_alive()
    if dead or _test_failed(request.node):
        print(c.log_tails())
    if dead:
        pytest.fail("member died during this test: " + "; ".join(c.problems), pytrace=False)


@pytest.fixture
def ns(request):
    return re.sub(r"[^A-Za-z0-9_]", "_", request.node.name) + "/"
