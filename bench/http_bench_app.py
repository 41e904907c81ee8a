"""The app of bench/http_bench.py: one cached view under gunicorn, cached by
the contender named in LMC_BENCH_MODE:

  lmc-http      lmc.flask.HttpCache (LMC_HTTP_PATH)
  fc-lmc        Flask-Caching @cache.cached over lmc.flask_caching.LmcCache
  fc-simple     Flask-Caching with SimpleCache (one dict per worker)
  fc-redis      Flask-Caching with RedisCache (LMC_BENCH_REDIS: a unix socket)
  fc-memcached  Flask-Caching with MemcachedCache (pylibmc; LMC_BENCH_MEMCACHED)

The page is about 2 KB of HTML, rendered in about 1 ms (the render is what
caching saves; its cost hardly matters for hits); lmc-http also has /big,
about 110 KB, to show what a 304 saves.
"""
import os
import time

from flask import Flask

ROWS = "".join(f"<li>item {i}</li>" for i in range(120))


BIG = "<html><body>" + "".join(f"<p>paragraph {i} " + "x" * 90 + "</p>" for i in range(1000)) \
    + "</body></html>"  # about 110 KB: where not copying the body shows


def render():
    t = time.perf_counter() + 0.001
    while time.perf_counter() < t:
        pass
    return f"<html><body><ul>{ROWS}</ul></body></html>"


def make_app(mode, env=os.environ):
    """The app of one contender; env gives its paths."""
    app = Flask(f"bench-{mode}")
    if mode == "lmc-http":
        from lmc.flask import HttpCache

        app.config["LMC_HTTP_PATH"] = env["LMC_HTTP_PATH"]
        app.config["LMC_HTTP_MAP_SIZE"] = 64 << 20
        http = HttpCache(app)

        @app.get("/page")
        @http.cached_response(3600)
        def page():
            return render()

        @app.get("/big")
        @http.cached_response(3600)
        def big():
            return BIG

        return app

    from flask_caching import Cache

    cfg = {"CACHE_DEFAULT_TIMEOUT": 3600}
    if mode == "fc-lmc":
        cfg.update(CACHE_TYPE="lmc.flask_caching.LmcCache", CACHE_LMC_PATH=env["LMC_HTTP_PATH"],
                   CACHE_LMC_MAP_SIZE=64 << 20)
    elif mode == "fc-simple":
        cfg.update(CACHE_TYPE="SimpleCache")
    elif mode == "fc-redis":
        cfg.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL="unix://" + env["LMC_BENCH_REDIS"])
    elif mode == "fc-memcached":
        cfg.update(CACHE_TYPE="MemcachedCache", CACHE_MEMCACHED_SERVERS=[env["LMC_BENCH_MEMCACHED"]])
    else:
        raise SystemExit(f"unknown LMC_BENCH_MODE {mode!r}")
    app.config.update(cfg)
    cache = Cache(app)

    @app.get("/page")
    @cache.cached(timeout=3600)
    def page():
        return render()

    return app


if "LMC_BENCH_MODE" in os.environ:  # under gunicorn
    app = make_app(os.environ["LMC_BENCH_MODE"])
