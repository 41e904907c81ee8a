#!/usr/bin/python3
"""Throughput of one cached Flask view under gunicorn with 4 workers, side
by side in one run: lmc.flask.HttpCache, Flask-Caching over lmc, over
SimpleCache, RedisCache and MemcachedCache, and 304 revalidations with
HttpCache.  Load from wrk (Debian's), over TCP on 127.0.0.1.

    make python && make bench-http        (or PYTHONPATH=build/release/python/lib
                                           /usr/bin/python3 bench/http_bench.py [--seconds 5])

Every contender serves the same ~2 KB page (bench/http_bench_app.py),
warmed first so that every measured request is a hit (SimpleCache needs one
render per worker).  wrk runs 2 threads and 16 connections for --seconds;
the table gives requests per second, p50 and p99 latency as wrk reports
them, and the requests that were not 2xx or 3xx (must be 0).  On a machine
of 2 cores wrk and the 4 workers share the CPUs, so the figures compare the
contenders with each other, not with another machine.
"""
import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, dict(r.headers)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer {url}")
            time.sleep(0.05)


def wait_socket(path, proc, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.02)


def wrk(url, seconds, headers=()):
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def lat(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, lat(50), lat(99), int(bad.group(1)) if bad else 0


def run(mode, env, seconds, tmp, revalidate=False):
    port = free_port()
    log = open(os.path.join(tmp, f"gunicorn-{mode}.log"), "wb")
    full = dict(os.environ, LMC_BENCH_MODE=mode, **env)
    proc = subprocess.Popen([PY, "-m", "gunicorn", "--workers", "4", "--bind", f"127.0.0.1:{port}",
                             "--chdir", HERE, "--access-logfile", "/dev/null", "http_bench_app:app"],
                            env=full, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/page"
    rows = []
    try:
        status, headers = wait_http(url, proc, f"gunicorn ({mode})")
        assert status == 200
        wrk(url, 1)  # warm every worker
        rows.append((mode + " hit",) + wrk(url, seconds))
        if revalidate:
            etag = headers["ETag"]
            rows.append((mode + " 304",) + wrk(url, seconds, [f"If-None-Match: {etag}"]))
            big = url.replace("/page", "/big")
            status, headers = wait_http(big, proc, f"gunicorn ({mode})")
            rows.append((mode + " hit 110 KB",) + wrk(big, seconds))
            rows.append((mode + " 304 110 KB",) +
                        wrk(big, seconds, [f"If-None-Match: {headers['ETag']}"]))
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    return rows


def in_process(contenders, rounds, n=2000):
    """CPU cost of one request through the whole WSGI app in this process
    (no server, no network): the least of `rounds` interleaved runs of n
    requests, in microseconds."""
    sys.path.insert(0, HERE)
    from http_bench_app import make_app
    from werkzeug.test import EnvironBuilder

    def caller(app, headers=(), path="/page"):
        environ = EnvironBuilder(path=path, headers=list(headers)).get_environ()

        def call():
            out = []
            it = app(dict(environ), lambda status, h, exc=None: out.append(status))
            for _ in it:
                pass
            getattr(it, "close", lambda: None)()
            return out[0]

        return call

    calls = []
    for mode, env, reval in contenders:
        app = make_app(mode, env)
        call = caller(app)
        assert call().startswith("200")
        calls.append((mode + " hit", call))
        if reval:
            for path, label in (("/page", ""), ("/big", " 110 KB")):
                etag = app.test_client().get(path).headers["ETag"]
                if path != "/page":
                    calls.append((mode + " hit" + label, caller(app, path=path)))
                c304 = caller(app, [("If-None-Match", etag)], path)
                assert c304().startswith("304")
                calls.append((mode + " 304" + label, c304))
    best = {}
    for _ in range(rounds):
        for name, call in calls:
            for _ in range(200):
                call()
            t = time.perf_counter()
            for _ in range(n):
                call()
            us = (time.perf_counter() - t) / n * 1e6
            best[name] = min(best.get(name, us), us)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3,
                    help="every contender once per round; the medians are printed")
    args = ap.parse_args()
    for tool in ("wrk", "redis-server", "memcached"):
        if not shutil.which(tool):
            sys.exit(f"http_bench.py needs {tool} (make deps)")
    tmp = tempfile.mkdtemp(prefix="lmc-http-bench-", dir="/dev/shm")
    servers = []
    try:
        redis_sock = os.path.join(tmp, "redis.sock")
        servers.append(subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", redis_sock, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_socket(redis_sock, servers[-1], "redis-server")
        mc_sock = os.path.join(tmp, "memcached.sock")
        root = ["-u", "root"] if os.geteuid() == 0 else []  # memcached refuses root otherwise
        servers.append(subprocess.Popen(["memcached", *root, "-s", mc_sock, "-a", "0700", "-m", "64"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_socket(mc_sock, servers[-1], "memcached")
        contenders = [
            ("lmc-http", {"LMC_HTTP_PATH": os.path.join(tmp, "lmc-http")}, True),
            ("fc-lmc", {"LMC_HTTP_PATH": os.path.join(tmp, "fc-lmc")}, False),
            ("fc-simple", {}, False),
            ("fc-redis", {"LMC_BENCH_REDIS": redis_sock}, False),
            ("fc-memcached", {"LMC_BENCH_MEMCACHED": mc_sock}, False),
        ]
        cpu = in_process(contenders, max(args.rounds, 3))
        results = {}
        for _ in range(args.rounds):
            for mode, env, reval in contenders:
                for row in run(mode, env, args.seconds, tmp, revalidate=reval):
                    results.setdefault(row[0], []).append(row[1:])
    finally:
        for s in servers:
            s.terminate()
            s.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"gunicorn, 4 sync workers; wrk -t2 -c16 -d{args.seconds}s; {os.cpu_count()} CPUs; "
          f"median of {args.rounds} rounds (each round runs every contender once)\n")
    print("| contender | requests/s | p50 ms | p99 ms | not 2xx/3xx (all rounds) "
          "| µs per request in-process |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        med = lambda i: statistics.median(r[i] for r in runs)  # noqa: E731
        bad = sum(r[3] for r in runs)
        print(f"| {name} | {med(0):,.0f} | {med(1):.2f} | {med(2):.2f} | {bad} | {cpu[name]:.0f} |")
    print("\nThe last column: one request through the whole Flask app, called as a WSGI")
    print("application in one process (no server, no socket), the least of the rounds.")


if __name__ == "__main__":
    main()
