#!/usr/bin/python3
"""Python benchmark of lmc: get/set latency through Flask-Caching for lmc,
SimpleCache, FileSystemCache, RedisCache and diskcache, in one run, with
ratios; plus the cost of the binding itself against the C library, and the
measurement behind the binding's choice to keep the GIL during gets.

    make B=build/python python
    PYTHONPATH=build/python/python/lib /usr/bin/python3 bench/python_bench.py [--n 20000]

Every backend stores its files on tmpfs (/dev/shm), so none pays for a disk.
Redis is a Debian redis-server that this script starts on a unix socket in a
temporary directory (persistence off) and always stops; the client is
python3-redis through Flask-Caching's RedisCache, one request at a time, as
a web worker does.  Flask-Caching 2.0.2 has no diskcache backend, so a
minimal one (DiskCacheBackend below) wraps diskcache.Cache.

Each operation is timed on its own with a monotonic clock (time.perf_counter_ns,
about 40-60 ns of timer overhead included in every figure); the tables give
the mean, p50 and p99 in microseconds.  The output is Markdown, as kept in
bench/RESULTS-python.md.
"""
import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from flask import Flask
from flask_caching import Cache
from flask_caching.backends.base import BaseCache

import lmc


class DiskCacheBackend(BaseCache):
    """Flask-Caching backend over diskcache.Cache (SQLite plus files); only
    what the benchmark calls.  diskcache pickles values itself."""

    def __init__(self, directory, default_timeout=300):
        super().__init__(default_timeout)
        import diskcache

        self._c = diskcache.Cache(directory)

    @classmethod
    def factory(cls, app, config, args, kwargs):
        return cls(config["CACHE_DIR"], **kwargs)

    def _expire(self, timeout):
        t = self._normalize_timeout(timeout)
        return None if t == 0 else t

    def get(self, key):
        return self._c.get(key)

    def set(self, key, value, timeout=None):
        return self._c.set(key, value, expire=self._expire(timeout))

    def add(self, key, value, timeout=None):
        return self._c.add(key, value, expire=self._expire(timeout))

    def delete(self, key):
        return self._c.delete(key)

    def has(self, key):
        return key in self._c

    def clear(self):
        self._c.clear()
        return True


class Redis:
    """A private redis-server on a unix socket; stopped by stop() whatever
    happened."""

    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "redis.sock")
        self.log = open(os.path.join(tmp, "redis.log"), "wb")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", tmp, "--daemonize", "no"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited; see " + self.log.name)
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    s.close()
                    break
                s.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer within 10 s")
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def timed(fn, args_list):
    """Call fn(*args) for each args; returns the latencies in ns."""
    clock = time.perf_counter_ns
    out = []
    append = out.append
    for args in args_list:
        t0 = clock()
        fn(*args)
        append(clock() - t0)
    return out


def summary(ns):
    ns = sorted(ns)
    return {"mean": statistics.fmean(ns) / 1000, "p50": ns[len(ns) // 2] / 1000,
            "p99": ns[int(len(ns) * 0.99)] / 1000}


class Backend:
    """One Flask-Caching backend in its own Flask app, filled with every key
    before the measurements."""

    def __init__(self, name, config, keys, value):
        self.name = name
        self.app = Flask(f"bench-{name}")
        self.app.config.update(config)
        self.cache = Cache(self.app)
        self.samples = {"get hit": [], "get miss": [], "set": []}
        with self.app.app_context():
            self.cache.clear()
            for k in keys:
                self.cache.set(k, value)
            timed(self.cache.get, [(k,) for k in keys])  # warm-up
            assert self.cache.get(keys[0]) == value, f"{name}: wrong value"

    def measure(self, n, keys, value, round_no):
        """One round: n sets, n hits and n misses through the Flask-Caching
        proxy (cache.set / cache.get in an app context)."""
        c = self.cache
        with self.app.app_context():
            self.samples["set"] += timed(c.set, [(random.choice(keys), value) for _ in range(n)])
            self.samples["get hit"] += timed(c.get, [(random.choice(keys),) for _ in range(n)])
            self.samples["get miss"] += timed(
                c.get, [("miss-%d-%d" % (round_no, i),) for i in range(n)])

    def close(self):
        with self.app.app_context():
            self.cache.clear()


def binding_overhead(path, n):
    """Per-get cost of lmc.Cache.get against the C library in one process."""
    c = lmc.Cache(path, map_size=256 << 20)
    key = b"bench:key:000042"
    c.set(key, b"v" * 100)
    get = c.get
    loops = []
    for _ in range(7):  # best of 7: the machine is shared
        c_get = c._c_get_loop(key, n, 0) / n
        c_view = c._c_get_loop(key, n, 1) / n
        t0 = time.perf_counter_ns()
        for _ in range(n):
            get(key)
        py_get = (time.perf_counter_ns() - t0) / n
        t0 = time.perf_counter_ns()
        for _ in range(n):
            pass
        empty = (time.perf_counter_ns() - t0) / n
        nogil = c._get_nogil
        t0 = time.perf_counter_ns()
        for _ in range(n):
            nogil(key)
        py_nogil = (time.perf_counter_ns() - t0) / n
        d = {key: b"v" * 100}
        dget = d.get
        t0 = time.perf_counter_ns()
        for _ in range(n):
            dget(key)
        py_dict = (time.perf_counter_ns() - t0) / n
        loops.append((c_get, c_view, py_get, empty, py_nogil, py_dict))
    best = [min(col) for col in zip(*loops)]
    c.close()
    return dict(zip(("c_get", "c_view", "py_get", "empty_loop", "py_get_nogil", "dict_get"),
                    best))


def gil_threads(path, n, threads):
    """Total gets per second of `threads` threads on one handle, with the GIL
    held (Cache.get) and released (Cache._get_nogil)."""
    c = lmc.Cache(path, map_size=256 << 20)
    key = b"bench:key:000042"
    c.set(key, b"v" * 100)
    out = {}
    for label, fn in (("get (GIL held)", c.get), ("get, GIL released", c._get_nogil)):
        best = 0
        for _ in range(3):
            barrier = threading.Barrier(threads + 1)

            def work():
                barrier.wait()
                for _ in range(n):
                    fn(key)

            ts = [threading.Thread(target=work) for _ in range(threads)]
            for t in ts:
                t.start()
            barrier.wait()
            t0 = time.perf_counter()
            for t in ts:
                t.join()
            best = max(best, threads * n / (time.perf_counter() - t0))
        out[label] = best
    c.close()
    return out


def gil_latency(path, n):
    """Latency of gets in one thread while another thread runs pure Python
    code (as a threaded web worker's other requests would), with the GIL
    held and released.  A get that releases the GIL must take it back, and
    the other thread gives it up only at its switch interval (5 ms)."""
    c = lmc.Cache(path, map_size=256 << 20)
    key = b"bench:key:000042"
    c.set(key, b"v" * 100)
    stop = threading.Event()

    def busy():
        x = 0
        while not stop.is_set():
            x += 1

    out = {}
    for label, fn in (("get (GIL held)", c.get), ("get, GIL released", c._get_nogil)):
        t = threading.Thread(target=busy)
        t.start()
        try:
            lat = timed(fn, [(key,)] * n)
        finally:
            stop.set()
            t.join()
            stop.clear()
        lat.sort()
        out[label] = (lat[len(lat) // 2] / 1000, lat[int(len(lat) * 0.99)] / 1000,
                      lat[-1] / 1000, sum(lat) / 1e9)
    c.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="operations per measurement")
    ap.add_argument("--keys", type=int, default=1000, help="distinct keys")
    ap.add_argument("--value-size", type=int, default=1000, help="bytes of the cached str")
    ap.add_argument("--skip", default="", help="comma-separated backends to leave out")
    args = ap.parse_args()
    random.seed(1)
    skip = set(filter(None, args.skip.split(",")))
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmp = tempfile.mkdtemp(prefix="lmc-pybench-", dir=shm)
    redis = None
    try:
        keys = ["bench/key/%06d" % i for i in range(args.keys)]
        value = "x" * args.value_size  # a rendered page fragment, pickled by every backend
        base = {"CACHE_DEFAULT_TIMEOUT": 300, "CACHE_KEY_PREFIX": "bench_"}
        backends = {
            "lmc": dict(base, CACHE_TYPE="lmc.flask_caching.LmcCache",
                        CACHE_LMC_PATH=os.path.join(tmp, "lmc"), CACHE_LMC_MAP_SIZE=256 << 20),
            "SimpleCache": dict(base, CACHE_TYPE="SimpleCache", CACHE_THRESHOLD=10 * args.keys),
            "FileSystemCache": dict(base, CACHE_TYPE="FileSystemCache",
                                    CACHE_DIR=os.path.join(tmp, "fs"),
                                    CACHE_THRESHOLD=10 * args.keys),
            "RedisCache": None,
            "diskcache": dict(base, CACHE_TYPE="__main__.DiskCacheBackend",
                              CACHE_DIR=os.path.join(tmp, "diskcache")),
        }
        if "RedisCache" not in skip:
            redis = Redis(tmp)
            backends["RedisCache"] = dict(base, CACHE_TYPE="RedisCache",
                                          CACHE_REDIS_URL="unix://" + redis.sock)
        # The backends take turns, round after round, so that a burst of load
        # from elsewhere on the host spreads over all of them instead of
        # landing on one.
        ready = [Backend(name, config, keys, value) for name, config in backends.items()
                 if name not in skip and config is not None]
        rounds = 5
        for r in range(rounds):
            for b in ready:
                print(f"# round {r + 1}/{rounds}: {b.name}", file=sys.stderr)
                b.measure(max(1, args.n // rounds), keys, value, r)
        results = {b.name: {op: summary(ns) for op, ns in b.samples.items()} for b in ready}
        for b in ready:
            b.close()

        print(f"# Python benchmark: Flask-Caching backends, {time.strftime('%Y-%m-%d')}\n")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"- host: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, "
              f"load average at the end {load}")
        print(f"- Python {platform.python_version()} ({sys.executable}), lmc {lmc.LIB_VERSION}, "
              f"module {lmc._lmc.__file__}")
        print(f"- {args.n} operations per row, {args.keys} keys, value: a str of "
              f"{args.value_size} characters (pickled), files on {shm or tmp}")
        print("- latency in microseconds per call of cache.get / cache.set on flask_caching.Cache,"
              " timer overhead included; the backends take turns over 5 rounds; ratios are of"
              " the p50 (the median shrugs off bursts of load from other processes)\n")
        for op in ("get hit", "get miss", "set"):
            print(f"## {op}\n")
            print("| backend | mean us | p50 us | p99 us | p50 vs lmc |")
            print("|---|---:|---:|---:|---:|")
            ref = results.get("lmc", {}).get(op, {}).get("p50")
            for name, r in results.items():
                s = r[op]
                ratio = f"{s['p50'] / ref:.1f}x" if ref else "-"
                print(f"| {name} | {s['mean']:.2f} | {s['p50']:.2f} | {s['p99']:.2f} | {ratio} |")
            print()

        o = binding_overhead(os.path.join(tmp, "raw"), 1_000_000)
        print("## The binding against the C library (1,000,000 gets of a 100-byte value, "
              "best of 7, ns per get)\n")
        print("| what | ns |")
        print("|---|---:|")
        rows = [
            ("lmc_get() in a C loop (the library alone)", o["c_get"]),
            ("lmc_get_view() + bytes object in a C loop (what Cache.get does inside)",
             o["c_view"]),
            ("Cache.get(key) in a Python loop", o["py_get"]),
            ("empty Python loop (for comparison)", o["empty_loop"]),
            ("dict.get(key) in a Python loop (for comparison)", o["dict_get"]),
            ("Cache.get with the GIL released (not used; see below)", o["py_get_nogil"]),
        ]
        for label, v in rows:
            print(f"| {label} | {v:.0f} |")
        over = o["py_get"] - o["empty_loop"] - o["c_get"]
        print(f"\nOverhead of the binding per get (Python loop minus empty loop minus the C "
              f"library): **{over:.0f} ns**; of which building the bytes object is "
              f"{o['c_view'] - o['c_get']:.0f} ns.\n")

        print("## Keeping the GIL during gets (gets per second, 100-byte value, one handle)\n")
        print("| threads | get (GIL held) | get, GIL released | ratio |")
        print("|---:|---:|---:|---:|")
        for t in (1, 2, 4):
            g = gil_threads(os.path.join(tmp, "raw"), 200_000 // t, t)
            held, rel = g["get (GIL held)"], g["get, GIL released"]
            print(f"| {t} | {held:,.0f} | {rel:,.0f} | {held / rel:.2f}x |")
        print()
        print("## Get latency while another thread runs Python code (2000 gets)\n")
        print("| variant | p50 us | p99 us | max us | total s |")
        print("|---|---:|---:|---:|---:|")
        for label, (p50, p99, mx, total) in gil_latency(os.path.join(tmp, "raw"), 2000).items():
            print(f"| {label} | {p50:.2f} | {p99:.1f} | {mx:.1f} | {total:.3f} |")
        print()
    finally:
        if redis:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
