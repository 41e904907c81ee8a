"""The Flask app of the gunicorn demo (make demo-flask) and of the end-to-end
test (python/tests/test_gunicorn.py).

It is configured by environment variables, because gunicorn imports it:
  LMC_DEMO_BACKEND  "lmc" (default): lmc.flask_caching.LmcCache, one cache
                    for all workers; "simple": Flask-Caching's SimpleCache,
                    one dict per worker, to show the difference.
  LMC_DEMO_CACHE    the lmc cache directory (used by the "lmc" backend).
  LMC_DEMO_COUNTS   the lmc cache where executions of the expensive functions
                    are counted (default: LMC_DEMO_CACHE, i.e. the cache
                    itself).  Counting goes through lmc's atomic incr, so the
                    counts are exact across workers whatever the backend.
  LMC_DEMO_PREFIX   CACHE_KEY_PREFIX (default "": the view of /items/3 is
                    then stored under exactly "view//items/3").
  LMC_DEMO_LEASE    "1": CACHE_LMC_LEASE, each page computed once per host
                    even when every worker misses it at once.
  LMC_DEMO_GRACE    CACHE_LMC_GRACE in seconds (default 0).
  LMC_DEMO_GATE_TIMEOUT  the timeout of the /gate/<n> pages (default 300).

/gate/<n> is a page for the tests of leases: computing it takes until the
test stores the key release/gate/<n>/<run> in the counts cache, so that a
test decides when a computation ends instead of guessing how long it takes.

Run with gunicorn --preload: the master imports this module, so the caches
are opened before the workers are forked, and each worker's first call
reopens them transparently.
"""
import os
import time

from flask import Flask, request
from flask_caching import Cache

import lmc

BACKEND = os.environ.get("LMC_DEMO_BACKEND", "lmc")
CACHE_PATH = os.environ.get("LMC_DEMO_CACHE", "/dev/shm/lmc-demo-flask")
COUNT_PATH = os.environ.get("LMC_DEMO_COUNTS") or CACHE_PATH

app = Flask(__name__)
if BACKEND == "lmc":
    app.config.update(
        CACHE_TYPE="lmc.flask_caching.LmcCache",
        CACHE_LMC_PATH=CACHE_PATH,
        CACHE_LMC_MAP_SIZE=64 << 20,
        CACHE_DEFAULT_TIMEOUT=300,
        CACHE_KEY_PREFIX=os.environ.get("LMC_DEMO_PREFIX", ""),
        CACHE_LMC_LEASE=os.environ.get("LMC_DEMO_LEASE") == "1",
        CACHE_LMC_GRACE=float(os.environ.get("LMC_DEMO_GRACE") or 0),
    )
elif BACKEND == "simple":
    app.config.update(CACHE_TYPE="SimpleCache", CACHE_DEFAULT_TIMEOUT=300)
else:
    raise SystemExit(f"LMC_DEMO_BACKEND must be lmc or simple, not {BACKEND!r}")
cache = Cache(app)
counts = lmc.Cache(COUNT_PATH, map_size=64 << 20)


def ran(what):
    """Count one execution of `what` across every worker; returns the count
    including this one."""
    return counts.incr("exec/" + what)


@cache.memoize(timeout=300)
def slow_square(n):
    ran(f"square/{n}")
    time.sleep(0.02)  # the expensive part worth caching
    return n * n


@app.before_request
def hold():
    # A client may ask a request to take a while before it reaches the view
    # (as slow middleware would).  The test and the demo use it so that
    # concurrent requests keep every worker busy and so land on all of them.
    seconds = request.headers.get("X-Hold")
    if seconds:
        time.sleep(min(float(seconds), 1.0))
    if request.path.startswith("/gate/"):
        ran("arrived" + request.path)  # reached the view's cache lookup


@app.after_request
def worker_pid(response):
    # Added to cached responses too: which worker served the request.
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


@app.route("/items/<int:n>")
@cache.cached(timeout=300)
def item(n):
    run = ran(f"items/{n}")
    return {"item": n, "square": slow_square(n), "computed_by": os.getpid(), "run": run}


@app.route("/other/<int:n>")
@cache.cached(timeout=300)
def other(n):
    run = ran(f"other/{n}")
    return {"other": n, "computed_by": os.getpid(), "run": run}


@app.route("/pid")
def pid():
    return {"pid": os.getpid(), "backend": BACKEND}


@app.route("/gate/<int:n>")
@cache.cached(timeout=float(os.environ.get("LMC_DEMO_GATE_TIMEOUT") or 300))
def gate(n):
    run = ran(f"gate/{n}")
    deadline = time.monotonic() + 20
    while counts.get(f"release/gate/{n}/{run}") is None and time.monotonic() < deadline:
        time.sleep(0.002)
    return {"gate": n, "run": run, "computed_by": os.getpid()}
