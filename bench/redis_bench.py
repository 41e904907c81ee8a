#!/usr/bin/python3
"""lmc as the L1 in front of Redis: Flask-Caching gets, and invalidation latency.

    make B=build/release python lmc-redis-sync   (or plain `make python`)
    PYTHONPATH=build/release/python/lib /usr/bin/python3 bench/redis_bench.py \
        [--bin-dir build/release] [--n 20000] [--rounds 5] [--csv]

Starts its own redis-server on a unix socket and an lmc-redis-sync per
"host" (two cache directories), then measures, side by side in one run and
taking turns over the rounds, through Flask-Caching's Cache.get:

- l1-hit:      LmcRedisCache, the key in this host's L1;
- redis-hit:   Flask-Caching's RedisCache on the same Redis (the baseline);
- l1-miss:     LmcRedisCache, the key not in the L1 (dropped before each get):
               an L1 miss, GET+PTTL from Redis, and the L1 fill;
- bypass:      LmcRedisCache with no sidecar status (read through).

and the invalidation latency: from the moment host A's set() starts (and
from when it returned) until host B's L1 no longer holds the old value,
median and p99.
"""
import argparse
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
    ns = []
    for k in keys:
        if before:
            before(k)
        t0 = time.perf_counter_ns()
        fn(k)
        ns.append(time.perf_counter_ns() - t0)
    return ns


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default="build/release")
    ap.add_argument("--n", type=int, default=20000, help="gets per backend per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inval", type=int, default=300, help="invalidations timed")
    ap.add_argument("--csv", action="store_true")
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="lmc-redis-bench-", dir="/dev/shm")
    sock = os.path.join(d, "redis.sock")
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", sock, "--dir", d, "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL))
        r = redis.Redis(unix_socket_path=sock)
        wait(lambda: os.path.exists(sock) and r.ping(), "redis-server")
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
        for rnd in range(a.rounds):
            ks = [keys[i % len(keys)] for i in range(a.n)]
            runs["l1-hit"] += two.timed(ks)
            runs["redis-hit"] += plain.timed(ks)
            runs["l1-miss"] += two.timed(ks[: a.n // 4], before=drop)
            runs["bypass"] += through.timed(ks[: a.n // 4])
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

        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, "
              f"{os.cpu_count()} CPUs ({cpu}), load {os.getloadavg()[0]:.2f}, "
              f"Python {platform.python_version()}, redis-server "
              f"{r.info()['redis_version']}, redis-py {redis.__version__}")
        print(f"# {a.rounds} rounds, {a.n} gets per round for hits ({a.n // 4} for misses), "
              f"100-byte page in a dict, through Flask-Caching Cache.get")
        if a.csv:
            print("what,gets_per_s,p50_us,p95_us,p99_us")
        base = pct(runs["redis-hit"], 0.5)
        for name, ns in runs.items():
            rate = len(ns) / (sum(ns) / 1e9)
            p50, p95, p99 = (pct(ns, q) / 1000 for q in (0.5, 0.95, 0.99))
            if a.csv:
                print(f"{name},{rate:.0f},{p50:.2f},{p95:.2f},{p99:.2f}")
            else:
                print(f"{name:10s} {rate:10.0f} gets/s  p50 {p50:7.2f} us  p95 {p95:7.2f} us  "
                      f"p99 {p99:7.2f} us  (p50 vs RedisCache: {pct(ns, 0.5) / base:.2f}x)")
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
