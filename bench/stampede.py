"""The cache stampede, measured: a gunicorn app with 8 prefork workers whose
one page takes 200 ms to compute, cached by Flask-Caching in lmc with a
short timeout, under an open-loop load of 200 requests/s across several
expiries of the page.  Run three ways:

  none    CACHE_TYPE lmc.flask_caching.LmcCache alone: every request that
          misses computes the page (what every Flask-Caching backend does)
  lease   CACHE_LMC_LEASE = True: one worker computes, the others wait for it
  grace   CACHE_LMC_GRACE = 60: the stale page is served during the
          refresh, which one worker runs in the background

For each: how many times the page was computed per expiry, and the p50,
p99 and max latency of the requests sent within a second of an expiry (and
of the others, the hits).  The load is open-loop: request i is sent at
start + i/rate whatever happened to the earlier ones, and its latency is
counted from that scheduled time, so a server that falls behind is charged
for the queue it builds (no coordinated omission).

    make bench-stampede          # all three, ~1 minute
    PYTHONPATH=build/release/python/lib /usr/bin/python3 bench/stampede.py \
        [--modes none,lease,grace] [--rate 200] [--seconds 12] [--timeout 3] \
        [--workers 8] [--compute 0.2]

Uses Debian's /usr/bin/python3 and gunicorn; the cache lives in a private
directory on /dev/shm, gunicorn listens on a unix socket.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

PYTHON = "/usr/bin/python3"

APP = textwrap.dedent('''
    import os, time
    from flask import Flask
    from flask_caching import Cache
    import lmc

    mode = os.environ["STAMPEDE_MODE"]
    path = os.environ["STAMPEDE_CACHE"]
    app = Flask(__name__)
    app.config.update(CACHE_TYPE="lmc.flask_caching.LmcCache", CACHE_LMC_PATH=path,
                      CACHE_LMC_MAP_SIZE=64 << 20, CACHE_KEY_PREFIX="",
                      CACHE_LMC_LEASE=mode == "lease",
                      CACHE_LMC_GRACE=60 if mode == "grace" else 0)
    cache = Cache(app)
    counts = lmc.Cache(path)
    COMPUTE = float(os.environ["STAMPEDE_COMPUTE"])
    TIMEOUT = float(os.environ["STAMPEDE_TIMEOUT"])

    @app.route("/page")
    @cache.cached(timeout=TIMEOUT)
    def page():
        run = counts.incr("computations")
        counts.set("computed/%d" % run, b"%.6f" % time.time())
        time.sleep(COMPUTE)  # the expensive part
        return {"run": run}

    @app.route("/ping")
    def ping():
        return {"pid": os.getpid()}
''')


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def fetch(sock, path):
    conn = UnixHTTPConnection(sock)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        return r.status, body
    finally:
        conn.close()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def run_mode(mode, args):
    tmp = tempfile.mkdtemp(prefix="lmc-stampede-", dir="/dev/shm")
    try:
        app_dir = os.path.join(tmp, "app")
        os.mkdir(app_dir)
        with open(os.path.join(app_dir, "stampede_app.py"), "w") as f:
            f.write(APP)
        sock = os.path.join(tmp, "http.sock")
        cache_path = os.path.join(tmp, "cache")
        env = dict(os.environ, STAMPEDE_MODE=mode, STAMPEDE_CACHE=cache_path,
                   STAMPEDE_COMPUTE=str(args.compute), STAMPEDE_TIMEOUT=str(args.timeout))
        log = open(os.path.join(tmp, "gunicorn.log"), "wb")
        proc = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "--preload", "--workers", str(args.workers),
             "--backlog", "2048", "--bind", "unix:" + sock, "--chdir", app_dir,
             "stampede_app:app"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    fetch(sock, "/ping")
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("gunicorn did not start; see " + log.name)
                    time.sleep(0.05)
            return load(mode, args, sock, cache_path)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(mode, args, sock, cache_path):
    import lmc

    counts = lmc.Cache(cache_path, create=False)
    # Warm: the page computed once before the load starts.
    status, _ = fetch(sock, "/page")
    assert status == 200
    start_runs = int(counts.get(b"computations"))
    n = int(args.rate * args.seconds)
    results = [None] * n
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.threads)

    def one(i, scheduled):
        try:
            status, _ = fetch(sock, "/page")
        except OSError:
            status = -1
        results[i] = (scheduled, time.time() - scheduled, status)

    # Start every client thread now, so that none is created during the load.
    ready = threading.Barrier(args.threads + 1)
    for _ in range(args.threads):
        pool.submit(ready.wait, 30)
    ready.wait(30)
    t0 = time.time() + 0.2
    for i in range(n):
        at = t0 + i / args.rate
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
        pool.submit(one, i, at)
    pool.shutdown(wait=True)
    end = t0 + n / args.rate
    total_runs = int(counts.get(b"computations"))
    # The computations made during the load, grouped by expiry: those that
    # start within a second of one another recompute the same expiry.
    starts = sorted(float(counts.get(b"computed/%d" % r))
                    for r in range(start_runs + 1, total_runs + 1))
    starts = [s for s in starts if t0 <= s <= end + 1]
    expiries = []
    for s in starts:
        if expiries and s - expiries[-1][-1] < 1.0:
            expiries[-1].append(s)
        else:
            expiries.append([s])
    counts.close()
    if os.environ.get("STAMPEDE_DUMP"):
        with open(os.environ["STAMPEDE_DUMP"] + "." + mode, "w") as f:
            json.dump({"t0": t0, "starts": starts, "results": results}, f)
    near, far, errors = [], [], 0
    for scheduled, latency, status in results:
        if status != 200:
            errors += 1
            continue
        (near if any(abs(scheduled - e[0]) < 1.0 for e in expiries) else far).append(latency)
    return {
        "mode": mode,
        "requests": n,
        "errors": errors,
        "expiries": len(expiries),
        "computations": len(starts),
        "per_expiry": [len(e) for e in expiries],
        "near": near,
        "far": far,
    }


def ms(x):
    return f"{x * 1000:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="none,lease,grace")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--seconds", type=float, default=12.0, help="length of the load")
    ap.add_argument("--timeout", type=float, default=3.0, help="the page's cache timeout")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--compute", type=float, default=0.2, help="seconds to compute the page")
    ap.add_argument("--threads", type=int, default=400, help="client threads")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = ap.parse_args()
    rows = []
    for mode in args.modes.split(","):
        r = run_mode(mode, args)
        rows.append(r)
        print(f"{mode}: {r['computations']} computations over {r['expiries']} expiries "
              f"{r['per_expiry']}, {r['errors']} errors", file=sys.stderr)
    print(f"\n{args.workers} workers, page computed in {args.compute * 1000:.0f} ms, cache "
          f"timeout {args.timeout:g} s, {args.rate:g} requests/s for {args.seconds:g} s "
          f"(open loop)\n")
    print("| mode | computations per expiry | near expiry: requests | p50 ms | p99 ms | max ms "
          "| >= 100 ms | other requests: p50 ms | p99 ms | max ms | >= 100 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = r["per_expiry"]
        per_s = (f"{statistics.mean(per):.1f} ({min(per)}-{max(per)}, {len(per)} expiries)"
                 if per else "0")
        near, far = r["near"], r["far"]
        print(f"| {r['mode']} | {per_s} | {len(near)} | {ms(pct(near, 50))} | "
              f"{ms(pct(near, 99))} | {ms(max(near) if near else float('nan'))} | "
              f"{sum(1 for x in near if x >= 0.1)} | "
              f"{ms(pct(far, 50))} | {ms(pct(far, 99))} | "
              f"{ms(max(far) if far else float('nan'))} | {sum(1 for x in far if x >= 0.1)} | "
              f"{r['errors']} |")
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k not in ("near", "far")}
                          for r in rows]))


if __name__ == "__main__":
    threading.stack_size(256 * 1024)
    main()
