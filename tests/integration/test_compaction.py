"""test_compaction.py -- automatic compaction by retention (serve --compact-retain N).

The leader compacts history older than the newest N revisions once at least 1000
revisions can go (API_COMPACT_SLACK_REVISIONS), so old revisions answer 410 while the
retained window and the current values stay readable.
"""

import requests

from cluster import wait_until


def test_auto_compaction_keeps_the_window(make_cluster):
    c = make_cluster(1, extra_args=("--compact-retain", "100"))
    s = requests.Session()
    last = None
    for i in range(1250):
        r = s.put(f"{c.url(1)}/v1/kv/ac/{i % 5}", data=str(i), timeout=10)
        assert r.status_code == 200, r.text
        last = r.json()["revision"]

    def old_is_compacted():
        return c.get(1, "ac/0", {"revision": "50"}).status_code == 410
    wait_until("revision 50 to be compacted", old_is_compacted, 10)
    r = c.get(1, "ac/0", {"revision": str(last - 50)})
    assert r.status_code == 200, r.text            # inside the retained window
    r = c.get(1, "ac/4")
    assert r.status_code == 200 and r.json()["value"] == "1249"
    assert c.get(1, "ac/0", {"revision": "50"}).json()["error"]["code"] == "kv_error"
