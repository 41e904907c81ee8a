"""lmc.flask.HttpCache seen by a real browser: Debian's chromium, headless,
driven over the DevTools protocol by puppeteer-core (browser/browse.js),
against the app below served by werkzeug on a local port.

What the browser's own network events must show:
- a reload of a cached page is revalidated: the request carries
  If-None-Match with the page's ETag, and the answer is 304 (X-Cache HIT);
- a second profile (another user, its own cookies and cache) never receives
  the first user's Set-Cookie or per-user page, and gets its own.

make deps installs chromium and node_modules (npm ci, no browser
downloaded); without them the test is skipped with the command to run.
"""
import json
import os
import shutil
import subprocess
import threading

import pytest
from conftest import SMALL_MAP
from flask import Flask, Response, request, session
from werkzeug.serving import make_server

from lmc.flask import HttpCache

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def need_browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (make deps installs Debian's chromium)")
    if not shutil.which("node"):
        pytest.skip("node is not installed (make deps)")
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "puppeteer-core")):
        pytest.skip("puppeteer-core is not installed (make deps runs npm ci in python/tests/browser)")


def browser_env():
    env = {k: v for k, v in os.environ.items()
           # check-python-asan preloads ASan into Python, not into node
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env.update(PUPPETEER_SKIP_DOWNLOAD="1", CHROMIUM=CHROMIUM)
    return env


def make_app(path):
    app = Flask(__name__)
    app.secret_key = "browser-test"
    http = HttpCache(app, path, map_size=SMALL_MAP)
    runs = {"n": 0}

    @app.get("/login/<name>")
    def login(name):
        session["user"] = name
        return f"logged in as {name}"

    @app.get("/public")
    @http.cached_response(60, query=())
    def public():
        # Rendered for whoever comes first; the cookie is that visitor's.
        runs["n"] += 1
        r = Response(f"<p>public page {runs['n']}</p>", content_type="text/html")
        r.set_cookie("who", request.args.get("u", "nobody"))
        return r

    @app.get("/me")
    @http.cached_response(60, per_user=lambda: session.get("user"))
    def me():
        runs["n"] += 1
        return f"<p>page of {session.get('user', 'anonymous')}</p>"

    return app


def test_browser_revalidates_and_users_stay_apart(tmpdir_shm):
    need_browser()
    app = make_app(os.path.join(tmpdir_shm, "http"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{server.server_port}"
    steps = [
        {"profile": "alice", "action": "goto", "path": "/login/alice"},
        {"profile": "alice", "action": "goto", "path": "/public?u=alice"},
        {"profile": "alice", "action": "reload", "path": "/public?u=alice"},
        {"profile": "alice", "action": "goto", "path": "/me"},
        {"profile": "bob", "action": "goto", "path": "/public?u=bob"},
        {"profile": "bob", "action": "goto", "path": "/me"},
        {"profile": "bob", "action": "goto", "path": "/login/bob"},
        {"profile": "bob", "action": "goto", "path": "/me"},
        {"profile": "alice", "action": "reload", "path": "/me"},
    ]
    try:
        r = subprocess.run(["node", os.path.join(BROWSER_DIR, "browse.js"), base, json.dumps(steps)],
                           capture_output=True, text=True, timeout=120, cwd=BROWSER_DIR,
                           env=browser_env())
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert len(seen) == len(steps)

    def doc(i):
        reqs = seen[i]["requests"]
        assert len(reqs) == 1, seen[i]
        d = reqs[0]
        d["wire"] = {k.lower(): v for k, v in (d.get("wireHeaders") or {}).items()}
        d["sent"] = {k.lower(): v for k, v in (d.get("requestHeaders") or {}).items()}
        return d

    # Alice's first view of /public renders it, with her cookie.
    first = doc(1)
    assert first["wireStatus"] == 200 and first["wire"]["x-cache"] == "MISS"
    assert "who=alice" in first["wire"]["set-cookie"]
    etag = first["wire"]["etag"]
    assert "who=alice" in seen[1]["cookies"]
    # Her reload is revalidated with the ETag and answered 304 by the cache.
    again = doc(2)
    assert again["sent"]["if-none-match"] == etag
    assert again["wireStatus"] == 304 and again["wire"]["x-cache"] == "HIT"
    assert seen[2]["text"] == "public page 1"  # the browser shows its copy
    # Her own page.
    assert seen[3]["text"] == "page of alice"
    assert doc(3)["wire"]["cache-control"].startswith("private")

    # Bob, another profile: the same public page, without alice's cookie.
    bob_public = doc(4)
    assert bob_public["wire"]["x-cache"] == "HIT" and seen[4]["text"] == "public page 1"
    assert "set-cookie" not in bob_public["wire"]
    assert not any(c.startswith("who=") for c in seen[4]["cookies"])
    # Never alice's page: anonymous first, then his own once logged in.
    assert seen[5]["text"] == "page of anonymous"
    assert seen[7]["text"] == "page of bob"
    assert not any("alice" in c for s in seen[4:8] for c in s["cookies"])
    # Alice's page is still hers (revalidated: 304 from her stored entry).
    last = doc(8)
    assert seen[8]["text"] == "page of alice"
    assert last["wireStatus"] == 304 and "if-none-match" in last["sent"]
