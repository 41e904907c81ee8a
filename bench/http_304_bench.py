#!/usr/bin/python3
"""Is a 304 cheaper than a hit?  lmc.flask.HttpCache's two answers to a
cached page, measured by what they cost the server's CPU rather than by
requests per second, which the load of a shared machine moves by more than
the difference (bench/RESULTS-http.md).

    make python && make bench-http-304
    (or PYTHONPATH=build/release/python/lib /usr/bin/python3 bench/http_304_bench.py
         [--rounds 15] [--seconds 3] [--no-callgrind] [--no-gunicorn])

For the ~2 KB page (/page) and the ~110 KB page (/big) of
bench/http_bench_app.py, a hit (no validator) against a 304 (If-None-Match
with the page's ETag), three ways, every case taking turns in each round:

- in-process CPU: the Flask app called as a WSGI application in this
  process (no server, no socket; a hit's body iterated as a server would),
  CPU time per request (time.thread_time over a batch), median of the
  rounds;
- in-process instructions: the same request loop under valgrind's
  callgrind, instructions per request from two runs of different lengths
  (their difference, so that start-up cancels out): exact, whatever the
  load;
- under gunicorn (4 sync workers, wrk over TCP on 127.0.0.1): the CPU time
  the workers spent (their /proc/PID/schedstat, user and kernel, sending
  the body included) divided by the requests wrk completed, median of the
  rounds.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from http_bench import free_port, wait_http  # noqa: E402 (the throughput bench's helpers)
PY = "/usr/bin/python3"
CASES = ("hit 2 KB", "304 2 KB", "hit 110 KB", "304 110 KB")
PATHS = {"2 KB": "/page", "110 KB": "/big"}


def callers(cache_dir):
    """{case: call()} over one HttpCache app, every page cached and its
    ETag known; each call() makes one request and returns its status."""
    from http_bench_app import make_app
    from werkzeug.test import EnvironBuilder

    app = make_app("lmc-http", {"LMC_HTTP_PATH": cache_dir})
    out = {}
    for size, path in PATHS.items():
        first = app.test_client().get(path)
        assert first.status_code == 200, first.status
        etag = first.headers["ETag"]
        for kind, headers in (("hit", []), ("304", [("If-None-Match", etag)])):
            environ = EnvironBuilder(path=path, headers=headers).get_environ()

            def call(environ=environ):
                status = []
                it = app(dict(environ), lambda s, h, exc=None: status.append(s))
                for _ in it:  # what a server does with the body
                    pass
                getattr(it, "close", lambda: None)()
                return status[0]

            want = "200" if kind == "hit" else "304"
            got = call()
            assert got.startswith(want), (kind, size, got)
            out[f"{kind} {size}"] = call
    return out


def in_process_cpu(rounds, n=500):
    d = tempfile.mkdtemp(prefix="lmc-304-bench-", dir="/dev/shm")
    try:
        calls = callers(os.path.join(d, "c"))
        cpu = {c: [] for c in CASES}
        wall = {c: [] for c in CASES}
        for name in CASES:  # warm
            for _ in range(200):
                calls[name]()
        for _ in range(rounds):
            for name in CASES:
                call = calls[name]
                c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                for _ in range(n):
                    call()
                wall[name].append((time.perf_counter_ns() - t0) / n / 1000)
                cpu[name].append((time.thread_time_ns() - c0) / n / 1000)
        return ({c: statistics.median(v) for c, v in cpu.items()},
                {c: statistics.median(v) for c, v in wall.items()})
    finally:
        shutil.rmtree(d, ignore_errors=True)


def count_child(case, n):
    """Under callgrind: set up, then n requests of one case."""
    d = tempfile.mkdtemp(prefix="lmc-304-bench-", dir="/dev/shm")
    try:
        call = callers(os.path.join(d, "c"))[case]
        for _ in range(20):
            call()
        for _ in range(n):
            call()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def instructions(case, n1=50, n2=250):
    def run(n):
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PY,
             os.path.abspath(__file__), "--count", case, str(n)],
            capture_output=True, text=True, check=True).stderr
        return int(re.search(r"Collected : (\d+)", out).group(1))
    return (run(n2) - run(n1)) / (n2 - n1)


def oncpu_ns(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def workers_of(master):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def under_gunicorn(rounds, seconds):
    d = tempfile.mkdtemp(prefix="lmc-304-bench-", dir="/dev/shm")
    port = free_port()
    env = dict(os.environ, LMC_BENCH_MODE="lmc-http", LMC_HTTP_PATH=os.path.join(d, "c"))
    proc = subprocess.Popen([PY, "-m", "gunicorn", "--workers", "4", "--bind",
                             f"127.0.0.1:{port}", "--chdir", HERE, "--access-logfile",
                             "/dev/null", "http_bench_app:app"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        etags = {size: wait_http(base + path, proc, "gunicorn")[1]["ETag"]
                 for size, path in PATHS.items()}
        # The first answer can come before gunicorn has forked every worker.
        deadline = time.monotonic() + 30
        while len(pids := workers_of(proc.pid)) < 4:
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn started {len(pids)} of 4 workers")
            time.sleep(0.05)
        per = {c: [] for c in CASES}
        for rnd in range(rounds + 1):
            for name in CASES:
                kind, size = name.split(" ", 1)
                cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s"]
                if kind == "304":
                    cmd += ["-H", f"If-None-Match: {etags[size]}"]
                c0 = oncpu_ns(pids)
                out = subprocess.run(cmd + [base + PATHS[size]], capture_output=True,
                                     text=True, check=True).stdout
                used = oncpu_ns(pids) - c0
                n = int(re.search(r"(\d+) requests in", out).group(1))
                bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
                assert not bad, f"{name}: {bad.group(0)}"
                if rnd:  # round 0 warms every worker
                    per[name].append(used / n / 1000)
        return per
    finally:
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=3, help="wrk's duration per case and round")
    ap.add_argument("--gunicorn-rounds", type=int, default=5)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-gunicorn", action="store_true")
    ap.add_argument("--count", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.count:
        return count_child(a.count[0], int(a.count[1]))

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    cpu, wall = in_process_cpu(a.rounds)
    ins = {} if a.no_callgrind or not shutil.which("valgrind") else \
        {c: instructions(c) for c in CASES}
    gun_rounds = {} if a.no_gunicorn or not shutil.which("wrk") else \
        under_gunicorn(a.gunicorn_rounds, a.seconds)
    gun = {c: statistics.median(v) for c, v in gun_rounds.items()}
    print(f"# in-process: median of {a.rounds} rounds of 500 requests per case; gunicorn: "
          f"4 sync workers, wrk -t2 -c16 -d{a.seconds}s, median of {a.gunicorn_rounds} rounds\n")
    print("| request | in-process CPU µs | in-process wall µs | in-process instructions "
          "| gunicorn workers' CPU µs per request (least-most of the rounds) |")
    print("|---|---:|---:|---:|---:|")
    for c in CASES:
        i = f"{ins[c]:,.0f}" if c in ins else "-"
        g = f"{gun[c]:.0f} ({min(gun_rounds[c]):.0f}-{max(gun_rounds[c]):.0f})" \
            if c in gun else "-"
        print(f"| {c} | {cpu[c]:.1f} | {wall[c]:.1f} | {i} | {g} |")
    print()
    for size in PATHS:
        h, n = f"hit {size}", f"304 {size}"
        parts = [f"in-process CPU {cpu[n] / cpu[h]:.2f}"]
        if ins:
            parts.append(f"instructions {ins[n] / ins[h]:.2f}")
        if gun:
            parts.append(f"gunicorn CPU {gun[n] / gun[h]:.2f}")
        print(f"304 / hit, {size}: " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
