"""End to end: the Flask app of python/demo/app.py under gunicorn with 4
prefork workers and --preload, with lmc as the Flask-Caching backend, and
the same app with SimpleCache for comparison.

What is proven, with real processes:
- The master opens the cache before forking (--preload) and every worker
  uses the inherited handle.
- Requests land on every worker (each response names its worker), and each
  expensive function ran once per key across all workers: the executions are
  counted in the cache itself with lmc's atomic incr.
- `lmc PATH del-prefix view//items/` run from a shell drops the cached pages
  under /items/ for every worker at once: the next request recomputes each
  page once and every worker serves the new one, while other pages and the
  memoized function stay cached.
- `lmc-stats PATH --json` shows the hits, per process too.
- With SimpleCache each worker computes every page for itself.
- With CACHE_LMC_LEASE, a page that every worker misses at the same moment
  is computed once (without leases: once per worker); with CACHE_LMC_GRACE
  every worker answers with the stale page while one refreshes it in the
  background, none waiting for the refresh.
"""
import json
import os

import pytest
from conftest import wait_for
from driver import Server, run_tool, tools_available

import lmc

KEYS = (1, 2, 3)


def stats_json(bin_dir, path, *extra):
    r = run_tool(bin_dir, "lmc-stats", path, "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def counts_of(counts, what):
    return [int(counts.get(f"exec/{what}/{n}") or 0) for n in KEYS]


def test_lmc_backend_computes_once_for_all_workers(tmpdir_shm, bin_dir):
    if not tools_available(bin_dir):
        pytest.skip(f"the lmc and lmc-stats tools are not built in {bin_dir} (make all)")
    path = os.path.join(tmpdir_shm, "cache")
    env = {"LMC_DEMO_BACKEND": "lmc", "LMC_DEMO_CACHE": path, "LMC_DEMO_PREFIX": ""}
    with Server(env) as srv:
        workers = srv.wait_ready()
        assert len(workers) == 4 and srv.master_pid not in workers
        counts = lmc.Cache(path, create=False)  # the master created it

        # The master (gunicorn --preload) opened the cache before forking.
        attached = {p["pid"] for p in counts.process_stats() if p["alive"]}
        assert srv.master_pid in attached

        # Warm each page once, one request at a time.
        first = {n: srv.fetch(f"/items/{n}").body for n in KEYS}
        assert all(first[n]["run"] == 1 and first[n]["square"] == n * n for n in KEYS)
        assert srv.fetch("/other/1").body["run"] == 1
        hits_before = stats_json(bin_dir, path)["hits"]

        # Now every worker serves every page, concurrently.
        served = {n: srv.spread(f"/items/{n}", workers) for n in KEYS}
        replies = [r for n in KEYS for rs in served[n].values() for r in rs]
        for n in KEYS:
            assert set(served[n]) == workers
            for rs in served[n].values():
                # The page computed by the first request, whoever serves it.
                assert all(r.body == first[n] for r in rs)
        cross = sum(1 for r in replies if r.body["computed_by"] != r.pid)
        assert cross > 0  # pages computed by one worker, served by others

        # Each expensive function ran exactly once per key, for all workers.
        assert counts_of(counts, "items") == [1, 1, 1]
        assert counts_of(counts, "square") == [1, 1, 1]

        # lmc-stats (another process) sees the hits of all workers.
        st = stats_json(bin_dir, path, "--per-process")
        assert st["hits"] - hits_before >= len(replies)
        per_pid = {p["pid"]: p for p in st["per_process"]}
        assert workers <= set(per_pid)
        assert all(per_pid[w]["hits"] > 0 for w in workers)
        assert st["processes"] >= 5  # master + 4 workers (+ this test)

        # Invalidate every page under /items/ from a shell.
        r = run_tool(bin_dir, "lmc", path, "del-prefix", "view//items/")
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.strip()) == len(KEYS)
        assert counts.keys(b"view//items/") == []

        # The next request of each page recomputes it, once ...
        second = {n: srv.fetch(f"/items/{n}").body for n in KEYS}
        assert all(second[n]["run"] == 2 for n in KEYS)
        # ... and every worker serves the new page, none a stale copy.
        for n in KEYS:
            for rs in srv.spread(f"/items/{n}", workers).values():
                assert all(r.body == second[n] for r in rs)
        assert counts_of(counts, "items") == [2, 2, 2]
        # The memoized function and the page outside /items/ stayed cached.
        assert counts_of(counts, "square") == [1, 1, 1]
        assert srv.fetch("/other/1").body["run"] == 1
        assert int(counts.get(b"exec/other/1")) == 1
        counts.close()
        print(f"\nlmc: {len(replies)} requests on workers {sorted(workers)}; "
              f"each page computed once, then once more after del-prefix")


def test_simplecache_computes_once_per_worker(tmpdir_shm):
    """The same app with Flask-Caching's SimpleCache: each worker has its
    own dict, so each computes each page (and the memoized function)."""
    counts_path = os.path.join(tmpdir_shm, "counts")
    env = {"LMC_DEMO_BACKEND": "simple", "LMC_DEMO_COUNTS": counts_path}
    with Server(env) as srv:
        workers = srv.wait_ready()
        for n in KEYS:
            assert srv.fetch(f"/items/{n}").body["run"] == 1
        served = {n: srv.spread(f"/items/{n}", workers) for n in KEYS}
        counts = lmc.Cache(counts_path, create=False)
        for n in KEYS:
            assert set(served[n]) == workers
            for pid, rs in served[n].items():
                # Every worker serves its own computation.
                assert all(r.body["computed_by"] == pid for r in rs)
        assert counts_of(counts, "items") == [len(workers)] * len(KEYS)
        assert counts_of(counts, "square") == [len(workers)] * len(KEYS)
        counts.close()
        print(f"\nSimpleCache: each page computed {len(workers)} times, once per worker")


def count(c, key):
    return int(c.get(key) or 0)


@pytest.mark.parametrize("lease", [True, False], ids=["lease", "no-lease"])
def test_every_worker_missing_at_once_computes_once_with_leases(tmpdir_shm, lease):
    path = os.path.join(tmpdir_shm, "cache")
    env = {"LMC_DEMO_BACKEND": "lmc", "LMC_DEMO_CACHE": path, "LMC_DEMO_PREFIX": "",
           "LMC_DEMO_LEASE": "1" if lease else ""}
    with Server(env) as srv:
        workers = srv.wait_ready()
        n = len(workers)
        counts = lmc.Cache(path, create=False)
        # One request per worker, all at once: a computation of the page
        # lasts until this test releases it, so each request keeps its
        # worker busy and the next one goes to another worker.
        futures = [srv.pool.submit(srv.fetch, "/gate/1") for _ in range(n)]
        wait_for(lambda: count(counts, b"exec/arrived/gate/1") == n, timeout=30,
                 what="every worker to get a request")
        if lease:
            wait_for(lambda: count(counts, b"exec/gate/1") == 1, what="the computation")
            counts.set(b"release/gate/1/1", b"")
        else:
            # Without leases every worker misses and computes.
            wait_for(lambda: count(counts, b"exec/gate/1") == n, timeout=30,
                     what="every worker to compute the page")
            for run in range(1, n + 1):
                counts.set(b"release/gate/1/%d" % run, b"")
        replies = [f.result(30) for f in futures]
        assert {r.pid for r in replies} == workers
        assert all(r.status == 200 for r in replies)
        if lease:
            assert count(counts, b"exec/gate/1") == 1
            assert all(r.body == replies[0].body for r in replies)
            assert count(counts, b"exec/gate/1") == 1
            st = counts.stats()
            assert st["lease_grants"] == 1 and st["lease_wait_timeouts"] == 0
        else:
            assert count(counts, b"exec/gate/1") == n
            assert sorted(r.body["run"] for r in replies) == list(range(1, n + 1))
        counts.close()


def test_with_grace_every_worker_serves_the_stale_page_while_one_refreshes(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "cache")
    env = {"LMC_DEMO_BACKEND": "lmc", "LMC_DEMO_CACHE": path, "LMC_DEMO_PREFIX": "",
           "LMC_DEMO_GRACE": "600", "LMC_DEMO_GATE_TIMEOUT": "0.5"}
    with Server(env) as srv:
        workers = srv.wait_ready()
        counts = lmc.Cache(path, create=False)
        counts.set(b"release/gate/2/1", b"")
        first = srv.fetch("/gate/2").body
        assert first["run"] == 1
        wait_for(lambda: counts.get(b"view//gate/2") is None, what="the page to expire")
        before = counts.stats()
        # The refresh (run 2) is not released until every request has been
        # answered: a request that waited for it would fail the test.
        served = srv.spread("/gate/2", workers, timeout=30)
        replies = [r for rs in served.values() for r in rs]
        assert all(r.body == first for r in replies)
        wait_for(lambda: count(counts, b"exec/gate/2") == 2, what="the background refresh")
        counts.set(b"release/gate/2/2", b"")
        wait_for(lambda: srv.fetch("/gate/2").body["run"] == 2, what="the refreshed page")
        assert count(counts, b"exec/gate/2") == 2  # refreshed once, for all workers
        st = counts.stats()
        assert st["stale_served"] - before["stale_served"] >= len(replies) - 1
        assert st["lease_waits"] == before["lease_waits"]
        counts.close()
