"""The Flask app of make demo-http and of python/tests/test_http_gunicorn.py:
pages cached with lmc.flask.HttpCache, shared by every gunicorn worker.

Configured by environment variables, because gunicorn imports it:
  LMC_HTTP_PATH    the cache directory (default /dev/shm/lmc-demo-http).
  LMC_DEMO_TTL     seconds a page is fresh (default 2), then served stale
                   for LMC_DEMO_GRACE seconds (default 60) while one worker
                   renders it again.

Renders are counted across workers with lmc's atomic incr (exec/page/N).
So that a demo or a test can show what the other workers do while one
renders, a render of /page/N waits while the key hold/N exists, until
release/N/<run> does (run = the render's number).
"""
import json
import os
import time

from flask import Flask, Response

from lmc.flask import HttpCache

app = Flask(__name__)
app.config["LMC_HTTP_PATH"] = os.environ.get("LMC_HTTP_PATH", "/dev/shm/lmc-demo-http")
app.config["LMC_HTTP_MAP_SIZE"] = 64 << 20
http = HttpCache(app)
TTL = float(os.environ.get("LMC_DEMO_TTL", "2"))
GRACE = float(os.environ.get("LMC_DEMO_GRACE", "60"))


@app.after_request
def name_the_worker(resp):
    resp.headers["X-Worker-Pid"] = str(os.getpid())
    return resp


@app.get("/pid")
def pid():
    return str(os.getpid())


@app.get("/page/<int:n>")
@http.cached_response(TTL, grace=GRACE)
def page(n):
    cache = http.cache
    run = cache.incr(f"exec/page/{n}")
    if cache.has(f"hold/{n}"):
        deadline = time.monotonic() + 20
        while not cache.has(f"release/{n}/{run}") and time.monotonic() < deadline:
            time.sleep(0.005)
    body = {"page": n, "run": run, "rendered_by": os.getpid()}
    return Response(json.dumps(body), content_type="application/json")
