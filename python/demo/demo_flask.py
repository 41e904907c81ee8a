#!/usr/bin/python3
"""make demo-flask: the Flask app of app.py under gunicorn with 4 prefork
workers (--preload), first with lmc as the Flask-Caching backend, then with
SimpleCache, driven by the same traffic.  Prints which worker served what,
each worker's cache hits, the shared statistics (lmc-stats) and how often the
expensive functions ran, before and after `lmc PATH del-prefix view//items/`.

    PYTHONPATH=build/release/python/lib LMC_BIN_DIR=build/release \\
        /usr/bin/python3 python/demo/demo_flask.py [--requests 400]
"""
import argparse
import collections
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from driver import Server, run_tool, tools_available  # noqa: E402

import lmc  # noqa: E402

PAGES = [f"/items/{n}" for n in range(1, 6)] + ["/other/1"]


def traffic(srv, workers, requests):
    """Warm each page once, then make every worker serve every page, then
    send `requests` more in random order, 8 at a time.  Returns
    {pid: Counter(path)}."""
    served = collections.defaultdict(collections.Counter)
    for p in PAGES:
        r = srv.fetch(p)
        served[r.pid][p] += 1
    for p in PAGES:
        for pid, rs in srv.spread(p, workers).items():
            served[pid][p] += len(rs)
    paths = [random.choice(PAGES) for _ in range(requests)]
    for r in srv.pool.map(lambda p: (p, srv.fetch(p, hold=0.002)), paths):
        served[r[1].pid][r[0]] += 1
    return served


def executions(counts):
    keys = [f"items/{n}" for n in range(1, 6)] + ["other/1"] + [f"square/{n}" for n in range(1, 6)]
    return {k: int(counts.get("exec/" + k) or 0) for k in keys}


def show_executions(title, ex):
    print(f"\n{title}")
    print("  " + "  ".join(f"{k}={v}" for k, v in ex.items()))


def run_lmc(tmp, bin_dir, requests):
    path = os.path.join(tmp, "cache")
    print("=" * 72)
    print(f"lmc: CACHE_TYPE=lmc.flask_caching.LmcCache, CACHE_LMC_PATH={path}")
    print("=" * 72)
    with Server({"LMC_DEMO_BACKEND": "lmc", "LMC_DEMO_CACHE": path,
                 "LMC_DEMO_PREFIX": ""}) as srv:
        workers = srv.wait_ready()
        print(f"gunicorn master {srv.master_pid} (--preload: opened the cache), "
              f"workers {sorted(workers)}")
        served = traffic(srv, workers, requests)
        counts = lmc.Cache(path, create=False)
        procs = {p["pid"]: p for p in counts.process_stats()}
        print("\nper worker: requests served, and that process's lmc counters")
        for pid in sorted(served):
            p = procs.get(pid, {})
            print(f"  worker {pid}: {sum(served[pid].values()):4d} requests, "
                  f"lmc hits {p.get('hits', 0):5d}, misses {p.get('misses', 0):3d}, "
                  f"sets {p.get('sets', 0):3d}")
        show_executions("executions (counted with lmc incr across all workers): each "
                        "page and square() ran once", executions(counts))
        if tools_available(bin_dir):
            print(f"\n$ lmc-stats {path}")
            print(run_tool(bin_dir, "lmc-stats", path).stdout.rstrip())
            r = run_tool(bin_dir, "lmc", path, "del-prefix", "view//items/")
            print(f"\n$ lmc {path} del-prefix view//items/\n{r.stdout.strip()}")
        else:
            print(f"\n(no lmc/lmc-stats in {bin_dir}: run `make all`; using the Python API)")
            st = counts.stats()
            print("  " + "  ".join(f"{k}:{st[k]}" for k in ("gets", "hits", "misses", "sets",
                                                           "entries", "processes")))
            print(f"delete_prefix('view//items/') removed {counts.delete_prefix('view//items/')}")
        traffic(srv, workers, requests // 4)
        show_executions("executions after the invalidation: each /items/ page ran once "
                        "more, for all workers; /other/1 and square() stayed cached",
                        executions(counts))
        counts.close()


def run_simple(tmp, requests):
    counts_path = os.path.join(tmp, "counts")
    print("\n" + "=" * 72)
    print("the same app with CACHE_TYPE=SimpleCache (one dict per worker)")
    print("=" * 72)
    with Server({"LMC_DEMO_BACKEND": "simple", "LMC_DEMO_COUNTS": counts_path}) as srv:
        workers = srv.wait_ready()
        served = traffic(srv, workers, requests)
        print(f"workers {sorted(workers)} served "
              + ", ".join(str(sum(served[p].values())) for p in sorted(served)) + " requests")
        counts = lmc.Cache(counts_path, create=False)
        show_executions(f"executions: every page and square() ran once per worker "
                        f"({len(workers)} times)", executions(counts))
        counts.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--bin-dir", default=os.environ.get("LMC_BIN_DIR", "build/release"))
    args = ap.parse_args()
    random.seed(1)
    tmp = tempfile.mkdtemp(prefix="lmc-demo-flask-",
                           dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        run_lmc(tmp, args.bin_dir, args.requests)
        run_simple(tmp, args.requests)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
