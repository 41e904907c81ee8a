"""lmc.flask.HttpCache under gunicorn with 4 prefork workers (python/demo/
http_app.py): one worker renders, the others wait or get the stale page.

The app's render of /page/1 blocks while the test holds it (the key hold/1
exists and release/1/<run> does not), so the order of events is forced:
- a cold page: the first request renders; the three others, on other
  workers, wait on the fill lease and get the page it rendered (lmc counts
  their waits); the render ran once.
- the page expired (lmc's clock, polled): the first request re-renders
  (X-Cache UPDATING) while the three others are answered at once with the
  stale page (STALE), before the render is released.
- every worker answers If-None-Match with 304, and an invalidation from
  another process (this test) makes the next request render again.
"""
import concurrent.futures
import json
import os

import pytest
from conftest import wait_for
from driver import Server, UnixHTTPConnection

import lmc

PAGE = "/page/1"


def get(srv, path, headers=None):
    conn = UnixHTTPConnection(srv.sock, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def run_of(body):
    return json.loads(body)["run"]


def test_one_worker_renders_the_others_wait_or_get_it_stale(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "http")
    env = {"LMC_HTTP_PATH": path, "LMC_DEMO_TTL": "1", "LMC_DEMO_GRACE": "60"}
    with Server(env, app="http_app:app") as srv, \
            concurrent.futures.ThreadPoolExecutor(8) as pool:
        workers = srv.wait_ready()
        assert len(workers) == 4
        c = lmc.Cache(path, create=False)
        c.set("hold/1", b"1")
        runs = lambda: int(c.get("exec/page/1") or 0)  # noqa: E731

        # A cold page: one render, three waiters.
        waits0 = c.stats()["lease_waits"]
        first = pool.submit(get, srv, PAGE)
        wait_for(lambda: runs() == 1, what="the first render")
        others = [pool.submit(get, srv, PAGE) for _ in range(3)]
        # They wait: nothing comes back while the render is held.
        done, _ = concurrent.futures.wait(others, timeout=0.3)
        assert not done
        c.set("release/1/1", b"1")
        replies = [first.result(30)] + [f.result(30) for f in others]
        assert runs() == 1
        assert [r[0] for r in replies] == [200] * 4
        assert {run_of(r[2]) for r in replies} == {1}
        assert sorted(r[1]["x-cache"] for r in replies) == ["HIT", "HIT", "HIT", "MISS"]
        pids = {int(r[1]["x-worker-pid"]) for r in replies}
        assert len(pids) == 4 and pids <= workers  # one renderer, three other workers
        assert c.stats()["lease_waits"] - waits0 == 3
        etag = replies[0][1]["etag"]

        # Expired: one re-renders, the others get the stale page at once.
        key = [k for k in c.keys(b"http/GET /page/1\0") if k.count(b"\0") == 3][0]
        wait_for(lambda: c.get(key) is None, what="the page to expire")
        refresher = pool.submit(get, srv, PAGE)
        wait_for(lambda: runs() == 2, what="the refresh render")
        stale = [pool.submit(get, srv, PAGE) for _ in range(3)]
        stale = [f.result(30) for f in stale]
        assert not refresher.done()  # answered while the render is still held
        for status, headers, body in stale:
            assert status == 200 and headers["x-cache"] == "STALE" and run_of(body) == 1
            assert "max-age=0," in headers["cache-control"]
            assert "stale-while-revalidate=60" in headers["cache-control"]
            assert int(headers["age"]) >= 1
        c.set("release/1/2", b"1")
        status, headers, body = refresher.result(30)
        assert (status, headers["x-cache"], run_of(body)) == (200, "UPDATING", 2)
        assert headers["etag"] != etag
        etag = headers["etag"]

        # Every worker answers the new validator with 304.
        answered = set()
        for _ in range(40):
            status, headers, body = get(srv, PAGE, {"If-None-Match": etag})
            assert (status, body) == (304, b"")
            answered.add(int(headers["x-worker-pid"]))
        assert len(answered) >= 2
        assert runs() == 2

        # An invalidation from another process reaches every worker.
        c.delete("hold/1")
        http_cache_entries = len(c.keys(b"http/GET /page/"))
        assert http_cache_entries >= 2
        from lmc.flask import HttpCache

        assert HttpCache(cache=c).invalidate_path("/page/") == http_cache_entries
        status, headers, body = get(srv, PAGE)
        assert (headers["x-cache"], run_of(body)) == ("MISS", 3)
        c.close()
