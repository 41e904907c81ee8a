#!/usr/bin/python3
"""Instructions per get on the client side of the two-level backend's miss
path, against RedisCache's get: what load on a shared machine cannot move.

    make bench-redis-instructions REDIS_INS_ARGS="--baseline REV"
    (or PYTHONPATH=build/release/python/lib /usr/bin/python3 \\
        bench/redis_instructions.py [--baseline REV] [--n1 100 --n2 400])

Starts a redis-server on a unix socket, then runs itself under valgrind's
callgrind once per case and length: set up, then N gets of the case, each
after dropping the key from the L1 (also in the cases that do not read the
L1, so that every case pays the same drop).  Instructions per get are the
difference of the two lengths' totals over the difference of their N, so
that start-up cancels out; only this process is counted, not
redis-server.  Cases, through cachelib's API (Flask-Caching's proxy adds
the same to each):

- redis-hit:   cachelib's RedisCache.get (the baseline);
- l1-miss:     LmcRedisCache.get, the key not in the L1: the fill lease,
               GET and PTTL, the fill;
- bypass:      LmcRedisCache.get of a backend that reads through (GET);
- l1-miss@REV: with --baseline, l1-miss of git revision REV's backend.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "bench/"
VALUE = {"page": "x" * 100, "n": 42}


def child(sock, path, case, n, base_dir):
    """Under callgrind: n gets of one case."""
    import redis
    from cachelib import RedisCache

    if case.startswith("l1-miss@"):
        sys.path.insert(0, base_dir)
        from lmc_base.cachelib import LmcRedisCache
    else:
        from lmc.cachelib import LmcRedisCache
    two = LmcRedisCache("unix://" + sock, path, key_prefix=PREFIX, require_sync=False)
    two.set("k", VALUE)
    if case == "redis-hit":
        plain = RedisCache(host=redis.Redis(unix_socket_path=sock), key_prefix=PREFIX)
        get = plain.get
    elif case == "bypass":
        get = LmcRedisCache("unix://" + sock, path, key_prefix=PREFIX).get  # no sidecar
    else:
        get = two.get
    drop = two.lmc.delete
    k = PREFIX + "k"
    for _ in range(20):
        drop(k)
        assert get("k") == VALUE
    for _ in range(n):
        drop(k)
        get("k")


def baseline(rev, d):
    """git revision rev's lmc/cachelib.py as lmc_base.cachelib in d, over
    today's extension (lmc._lmc)."""
    pkg = os.path.join(d, "lmc_base")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    src = subprocess.run(["git", "show", f"{rev}:python/lmc/cachelib.py"], capture_output=True,
                         text=True, check=True, cwd=HERE).stdout
    with open(os.path.join(pkg, "cachelib.py"), "w") as f:
        f.write(src.replace("from ._lmc import", "from lmc._lmc import"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", metavar="REV")
    ap.add_argument("--n1", type=int, default=100)
    ap.add_argument("--n2", type=int, default=400)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sock, path, case, n, base_dir = a.child
        return child(sock, path, case, int(n), base_dir)

    import lmc
    import redis

    d = tempfile.mkdtemp(prefix="lmc-redis-ins-", dir="/dev/shm")
    sock = os.path.join(d, "redis.sock")
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", d,
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis(unix_socket_path=sock)
        deadline = time.monotonic() + 10
        while True:
            try:
                if os.path.exists(sock) and r.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.01)
        path = os.path.join(d, "l1")
        lmc.Cache(path, map_size=64 << 20).close()
        cases = ["redis-hit", "l1-miss", "bypass"]
        if a.baseline:
            baseline(a.baseline, d)
            cases.append(f"l1-miss@{a.baseline}")

        def total(case, n):
            out = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                 sys.executable, os.path.abspath(__file__), "--child", sock, path, case,
                 str(n), d], capture_output=True, text=True, check=True).stderr
            return int(re.search(r"Collected : (\d+)", out).group(1))

        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: instructions per get of this "
              f"process (callgrind), ({a.n2} gets - {a.n1} gets) / {a.n2 - a.n1}, "
              f"redis-server not counted")
        res = {}
        for case in cases:
            res[case] = (total(case, a.n2) - total(case, a.n1)) / (a.n2 - a.n1)
            print(f"{case:22s} {res[case]:10,.0f}  ({res[case] / res['redis-hit']:.2f}x "
                  f"RedisCache)", flush=True)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
