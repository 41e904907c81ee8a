"""A Flask app whose pages are cached for every gunicorn worker with
lmc.flask.HttpCache.

    make python
    PYTHONPATH=build/release/python/lib /usr/bin/python3 -m gunicorn \\
        --preload --workers 4 --chdir examples flask_http_cache:app
    curl -si localhost:8000/items/3            # X-Cache: MISS, then HIT
    curl -si -H 'If-None-Match: "<etag>"' localhost:8000/items/3     # 304
    curl -si -X POST localhost:8000/items/3    # changes the item, drops its pages

The catalogue is a dict here, one per worker (so a POST changes only the
worker that got it); in an application it is the database.
"""
import os
import time

from flask import Flask, abort, jsonify, request, session

from lmc.flask import HttpCache

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "change me")
app.config["LMC_HTTP_PATH"] = os.environ.get("LMC_HTTP_PATH", "/dev/shm/lmc-example-http")
app.config["LMC_HTTP_MAP_SIZE"] = 64 << 20
http = HttpCache(app)

ITEMS = {n: f"item {n}" for n in range(1, 10)}


@app.get("/items/<int:n>")
@http.cached_response(60, grace=300, query=("format",), vary=("Accept-Language",))
def item(n):
    if n not in ITEMS:
        abort(404)  # stored too, for at most 30 s (error_timeout)
    time.sleep(0.2)  # the expensive part: rendered once for all workers
    lang = request.headers.get("Accept-Language", "en")[:2]
    if request.args.get("format") == "json":
        return jsonify(item=ITEMS[n], lang=lang)
    return f"<h1>{ITEMS[n]}</h1><p>lang: {lang}</p>"


@app.post("/items/<int:n>")
def change(n):
    ITEMS[n] = request.form.get("name", f"item {n} (changed)")
    http.invalidate_path(f"/items/{n}", exact=True)  # every variant, every worker
    return "", 204


@app.get("/login/<name>")
def login(name):
    session["user"] = name
    return f"logged in as {name}"


@app.get("/me")
@http.cached_response(30, per_user=lambda: session.get("user"))
def me():
    # Cache-Control: private, one page per user, never another user's.
    return f"<p>hello {session.get('user', 'stranger')}</p>"


@app.get("/stats")
def stats():
    return jsonify(http.stats())  # hits, misses, stale, 304s per view, all workers
