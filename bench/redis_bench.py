#!/usr/bin/python3
"""lmc as the L1 in front of Redis: Flask-Caching gets, and invalidation latency.

    make B=build/release python lmc-redis-sync   (or plain `make python`)
    PYTHONPATH=build/release/python/lib /usr/bin/python3 bench/redis_bench.py \
        [--bin-dir build/release] [--n 20000] [--rounds 5] [--csv] [--baseline REV]

Starts its own redis-server on a unix socket and an lmc-redis-sync per
"host" (two cache directories), then measures, side by side in one run and
taking turns over the rounds, through Flask-Caching's Cache.get:

- l1-hit:      LmcRedisCache, the key in this host's L1;
- redis-hit:   Flask-Caching's RedisCache on the same Redis (the baseline);
- l1-miss:     LmcRedisCache, the key not in the L1 (dropped before each get):
               an L1 miss, GET+PTTL from Redis, and the L1 fill;
- bypass:      LmcRedisCache with no sidecar status (read through);
- l1-miss@REV: with --baseline REV, the l1-miss of the backends as they were
               in git revision REV (lmc/cachelib.py and lmc/flask_caching.py
               of that revision, over the same built extension), taking
               turns with today's in the same rounds: a before/after of the
               miss path in one run.

Besides the wall-clock percentiles, each line gives the CPU time this
process spent per get (time.thread_time over each batch): on a shared
machine the steadier figure, though it leaves out redis-server's share of
the round trip.

and the invalidation latency: from the moment host A's set() starts (and
from when it returned) until host B's L1 no longer holds the old value,
median and p99.
"""
import argparse
import importlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import flask
import redis
from flask_caching import Cache

import lmc
from lmc.cachelib import LmcRedisCache

PREFIX = "bench/"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def wait(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


class FlaskCache:
    """A Flask-Caching Cache and its app; calls run in the app's context."""

    def __init__(self, config):
        self.app = flask.Flask("bench")
        self.app.config.update(config)
        self.c = Cache(self.app)

    @property
    def cache(self):
        return self.app.extensions["cache"][self.c]

    def set(self, k, v):
        with self.app.app_context():
            return self.c.set(k, v)

    def get(self, k):
        with self.app.app_context():
            return self.c.get(k)

    def timed(self, keys, before=None):
        with self.app.app_context():
            return timed(self.c.get, keys, before)


def flask_cache(config):
    return FlaskCache(config)


def timed(fn, keys, before=None):
    """Wall-clock ns of each call, and the CPU ns of the calls together (the
    batch's thread time less that of `before`, timed the same way)."""
    ns = []
    cpu = 0
    for k in keys:
        if before:
            before(k)
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        fn(k)
        t1 = time.perf_counter_ns()
        cpu += time.thread_time_ns() - c0
        ns.append(t1 - t0)
    return ns, cpu


def baseline_package(rev, d):
    """The backends of git revision rev as a package `lmc_base` in d, over
    today's built extension (lmc._lmc): their relative imports of ._lmc
    rewritten, nothing else."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    pkg = os.path.join(d, "lmc_base")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for name in ("cachelib.py", "flask_caching.py"):
        src = subprocess.run(["git", "show", f"{rev}:python/lmc/{name}"], capture_output=True,
                             text=True, check=True, cwd=top).stdout
        src = src.replace("from ._lmc import", "from lmc._lmc import")
        with open(os.path.join(pkg, name), "w") as f:
            f.write(src)
    sys.path.insert(0, d)
    importlib.invalidate_caches()
    return "lmc_base.flask_caching.LmcRedisCache"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default="build/release")
    ap.add_argument("--n", type=int, default=20000, help="gets per backend per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inval", type=int, default=300, help="invalidations timed")
    ap.add_argument("--csv", action="store_true")
    ap.add_argument("--baseline", metavar="REV",
                    help="also time the miss path of the backends of this git revision")
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="lmc-redis-bench-", dir="/dev/shm")
    sock = os.path.join(d, "redis.sock")
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", sock, "--dir", d, "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL))
        r = redis.Redis(unix_socket_path=sock)
        def pings():
            # The socket's file exists a moment before the server listens.
            try:
                return os.path.exists(sock) and r.ping()
            except redis.exceptions.ConnectionError:
                return False

        wait(pings, "redis-server")
        paths = {}
        for h in ("a", "b"):
            paths[h] = os.path.join(d, h)
            lmc.Cache(paths[h], map_size=64 << 20).close()
            procs.append(subprocess.Popen(
                [os.path.join(a.bin_dir, "lmc-redis-sync"), paths[h], "--redis", "unix:" + sock,
                 "--prefix", PREFIX, "--heartbeat", "0.5"], stderr=subprocess.DEVNULL))
        status = ("lmc-redis-sync/status/" + PREFIX)
        for h in ("a", "b"):
            c = lmc.Cache(paths[h])
            wait(lambda: c.get(status) is not None, "lmc-redis-sync of host " + h)
            c.close()

        two = flask_cache({"CACHE_TYPE": "lmc.flask_caching.LmcRedisCache",
                           "CACHE_REDIS_URL": "unix://" + sock, "CACHE_LMC_PATH": paths["a"],
                           "CACHE_KEY_PREFIX": PREFIX, "CACHE_DEFAULT_TIMEOUT": 300})
        plain = flask_cache({"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": "unix://" + sock,
                             "CACHE_KEY_PREFIX": PREFIX, "CACHE_DEFAULT_TIMEOUT": 300})
        # A host whose sidecar is not running: every get reads through.
        lmc.Cache(os.path.join(d, "nosync"), map_size=16 << 20).close()
        through = flask_cache({"CACHE_TYPE": "lmc.flask_caching.LmcRedisCache",
                               "CACHE_REDIS_URL": "unix://" + sock,
                               "CACHE_LMC_PATH": os.path.join(d, "nosync"),
                               "CACHE_KEY_PREFIX": PREFIX, "CACHE_DEFAULT_TIMEOUT": 300})
        old = None
        if a.baseline:
            old = flask_cache({"CACHE_TYPE": baseline_package(a.baseline, d),
                               "CACHE_REDIS_URL": "unix://" + sock, "CACHE_LMC_PATH": paths["a"],
                               "CACHE_KEY_PREFIX": PREFIX, "CACHE_DEFAULT_TIMEOUT": 300})
        value = {"page": "x" * 100, "n": 42}
        keys = [f"k{i}" for i in range(1000)]
        for k in keys:
            two.set(k, value)
        time.sleep(0.2)  # the sidecars' own invalidations of these sets
        for k in keys:
            two.get(k)
        l1 = two.cache.lmc
        assert all(l1.get(PREFIX + k) is not None for k in keys), "the L1 was not filled"

        def drop(k):
            l1.delete(PREFIX + k)

        runs = {"l1-hit": [], "redis-hit": [], "l1-miss": [], "bypass": []}
        if old:
            runs[f"l1-miss@{a.baseline}"] = []
        cpu = dict.fromkeys(runs, 0)

        def run(name, fc, ks, before=None):
            ns, c = fc.timed(ks, before)
            runs[name] += ns
            cpu[name] += c

        for rnd in range(a.rounds):
            ks = [keys[i % len(keys)] for i in range(a.n)]
            run("l1-hit", two, ks)
            run("redis-hit", plain, ks)
            run("l1-miss", two, ks[: a.n // 4], drop)
            if old:
                run(f"l1-miss@{a.baseline}", old, ks[: a.n // 4], drop)
            run("bypass", through, ks[: a.n // 4])
        for k in keys:
            two.get(k)

        # Invalidation latency, host A -> host B's L1: from the start of A's
        # set() until B's L1 no longer holds the old value, polled through a
        # handle of B's cache (a get costs about a microsecond).
        b = LmcRedisCache("unix://" + sock, paths["b"], key_prefix=PREFIX)
        aa = LmcRedisCache("unix://" + sock, paths["a"], key_prefix=PREFIX)
        bl1 = lmc.Cache(paths["b"])
        lat, after = [], []
        for i in range(a.inval):
            aa.set("lat", i)
            wait(lambda: b.get("lat") == i and bl1.get(PREFIX + "lat") is not None, "B to fill")
            t0 = time.perf_counter_ns()
            aa.set("lat", -1)
            t1 = time.perf_counter_ns()
            deadline = time.monotonic() + 5
            while bl1.get(PREFIX + "lat") is not None:
                if time.monotonic() > deadline:
                    raise SystemExit("B's L1 was never invalidated")
            t2 = time.perf_counter_ns()
            lat.append(t2 - t0)
            after.append(t2 - t1)
        bl1.close()

        model = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, "
              f"{os.cpu_count()} CPUs ({model}), load {os.getloadavg()[0]:.2f}, "
              f"Python {platform.python_version()}, redis-server "
              f"{r.info()['redis_version']}, redis-py {redis.__version__}")
        print(f"# {a.rounds} rounds, {a.n} gets per round for hits ({a.n // 4} for misses), "
              f"100-byte page in a dict, through Flask-Caching Cache.get")
        if a.csv:
            print("what,gets_per_s,p50_us,p95_us,p99_us,cpu_us")
        base = pct(runs["redis-hit"], 0.5)
        base_cpu = cpu["redis-hit"] / len(runs["redis-hit"])
        for name, ns in runs.items():
            rate = len(ns) / (sum(ns) / 1e9)
            p50, p95, p99 = (pct(ns, q) / 1000 for q in (0.5, 0.95, 0.99))
            c = cpu[name] / len(ns)
            if a.csv:
                print(f"{name},{rate:.0f},{p50:.2f},{p95:.2f},{p99:.2f},{c / 1000:.2f}")
            else:
                print(f"{name:10s} {rate:10.0f} gets/s  p50 {p50:7.2f} us  p95 {p95:7.2f} us  "
                      f"p99 {p99:7.2f} us  (p50 vs RedisCache: {pct(ns, 0.5) / base:.2f}x)  "
                      f"cpu {c / 1000:6.2f} us ({c / base_cpu:.2f}x)")
        print(f"invalidation, A's set() starts -> B's L1 dropped: median "
              f"{pct(lat, 0.5) / 1000:.0f} us, p99 {pct(lat, 0.99) / 1000:.0f} us, max "
              f"{max(lat) / 1000:.0f} us ({len(lat)} sets)")
        print(f"invalidation, A's set() returned -> B's L1 dropped: median "
              f"{pct(after, 0.5) / 1000:.0f} us, p99 {pct(after, 0.99) / 1000:.0f} us, max "
              f"{max(after) / 1000:.0f} us")
        print(f"# fills refused during the run: {two.cache.counts['fill_rejects']}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
