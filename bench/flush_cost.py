#!/usr/bin/python3
"""What a namespace flush costs: lmc_flush_prefix against lmc_delete_prefix.

    make python
    PYTHONPATH=build/release/python/lib /usr/bin/python3 bench/flush_cost.py \
        [--n 100000] [--rounds 5] [--dir /dev/shm]

Each round fills a fresh cache (on tmpfs) with --n entries under "app/"
(plus as many under "other/", which neither call touches), then times one
call of each, on its own filled cache: flush_prefix("app/"), which records
a marker and returns, and delete_prefix("app/"), which deletes the entries
in transactions of 1000 (readers see the entries not yet deleted until it
returns; after a flush, none).  It also times the sweep that reclaims the
flushed entries.  The clock is time.perf_counter_ns around the
call; the binding releases the GIL for both, so Python adds a few
microseconds at most.  Prints the median and the spread of the rounds.
"""
import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

import lmc


def fill(cache, n):
    batch = []
    for i in range(n):
        batch.append((b"app/%08d" % i, b"v" * 32))
        batch.append((b"other/%08d" % i, b"v" * 32))
        if len(batch) >= 2000:
            cache.set_many(batch, timeout=0)
            batch = []
    if batch:
        cache.set_many(batch, timeout=0)


def timed(fn):
    t0 = time.perf_counter_ns()
    out = fn()
    return (time.perf_counter_ns() - t0) / 1e6, out


def one_round(base, n):
    res = {}
    for what in ("flush", "delete"):
        d = tempfile.mkdtemp(prefix="lmc-flush-bench-", dir=base)
        try:
            c = lmc.Cache(os.path.join(d, "c"), map_size=1 << 30)
            fill(c, n)
            if what == "flush":
                res["flush_ms"], _ = timed(lambda: c.flush_prefix(b"app/"))
                assert c.get(b"app/00000001") is None
                assert c.stats()["flush_markers"] == 1
                res["sweep_ms"], r = timed(c.sweep)
                assert r["flushed"] == n, r
            else:
                res["delete_ms"], removed = timed(lambda: c.delete_prefix(b"app/"))
                assert removed == n
            assert c.get(b"other/00000001") == b"v" * 32
            c.close()
        finally:
            shutil.rmtree(d)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm")
    a = ap.parse_args()
    rounds = [one_round(a.dir, a.n) for _ in range(a.rounds)]
    print("# lmc %s, %s, %s, %d CPUs; %d entries under the prefix (and %d outside), %d rounds"
          % (lmc.__version__, platform.node(), platform.platform(), os.cpu_count(), a.n, a.n,
             a.rounds))
    print("| call | median ms | min ms | max ms |")
    print("|---|---:|---:|---:|")
    for key, name in (("flush_ms", "flush_prefix"), ("delete_ms", "delete_prefix"),
                      ("sweep_ms", "the sweep after flush_prefix")):
        v = [r[key] for r in rounds]
        print("| %s | %.3f | %.3f | %.3f |" % (name, statistics.median(v), min(v), max(v)))


if __name__ == "__main__":
    main()
