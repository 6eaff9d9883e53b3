"""conftest.py -- the chaos suite's pytest setup: its modules and the integration suite's
cluster.py are importable, and however pytest ends (an error, `timeout` sending SIGTERM)
no server it started outlives it. The binary is $CONCLAVE_BIN, else build/asan/conclave
if it exists, else build/conclave (cluster.default_binary)."""

import atexit
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from cluster import default_binary, kill_all_children  # noqa: E402

atexit.register(kill_all_children)


def _on_sigterm(signum, frame):
    kill_all_children()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_report_header(config):
    return f"conclave binary: {default_binary()}"
