"""Tests of lmc.flask_caching.LmcCache inside Flask, in this process: the
configuration keys, key prefixes, clear(), @cache.cached and
@cache.memoize, and prefix invalidation of views.  Decorator behaviour is
checked against Flask-Caching's SimpleCache too.  The multi-process proof is
test_gunicorn.py."""
import logging
import os

import pytest
from flask import Flask
from flask_caching import Cache

from conftest import SMALL_MAP

import lmc
from lmc.flask_caching import LmcCache


def make_app(tmpdir_shm, backend="lmc", **config):
    app = Flask(__name__)
    if backend == "lmc":
        app.config.update(CACHE_TYPE="lmc.flask_caching.LmcCache",
                          CACHE_LMC_PATH=os.path.join(tmpdir_shm, "flask"),
                          CACHE_LMC_MAP_SIZE=SMALL_MAP)
    else:
        app.config.update(CACHE_TYPE="SimpleCache")
    app.config.update(config)
    return app, Cache(app)


def raw_handle(tmpdir_shm):
    return lmc.Cache(os.path.join(tmpdir_shm, "flask"), map_size=SMALL_MAP)


def test_factory_reads_the_configuration(tmpdir_shm):
    app, cache = make_app(tmpdir_shm, CACHE_LMC_MAP_SIZE=32 << 20, CACHE_DEFAULT_TIMEOUT=42,
                          CACHE_KEY_PREFIX="shop/", CACHE_LMC_MODE=0o640)
    with app.app_context():
        backend = cache.cache
        assert isinstance(backend, LmcCache)
        assert backend.default_timeout == 42
        assert backend.key_prefix == "shop/"
        assert backend.lmc.info()["map_size"] == 32 << 20
        cache.set("k", {"v": 1})
        assert cache.get("k") == {"v": 1}
        st = os.stat(os.path.join(tmpdir_shm, "flask", "data.mdb"))
        assert st.st_mode & 0o777 == 0o640
    with raw_handle(tmpdir_shm) as raw:
        assert raw.keys() == [b"shop/k"]  # the prefix is applied to every key


def test_default_prefix_is_flask_caching_s(tmpdir_shm):
    app, cache = make_app(tmpdir_shm)
    with app.app_context():
        cache.set("k", 1)
        assert cache.cache.default_timeout == 300
    with raw_handle(tmpdir_shm) as raw:
        assert raw.keys() == [b"flask_cache_k"]


def test_missing_path_is_a_clear_error(tmpdir_shm):
    app = Flask(__name__)
    app.config.update(CACHE_TYPE="lmc.flask_caching.LmcCache")
    with pytest.raises(ValueError, match="CACHE_LMC_PATH"):
        Cache(app)


def test_cache_options_reach_lmc(tmpdir_shm):
    app, cache = make_app(tmpdir_shm, CACHE_OPTIONS={"max_readers": 200})
    with app.app_context():
        assert cache.cache.lmc.info()["max_readers"] == 200


def options_app(tmpdir_shm, **config):
    """An app configured by CACHE_OPTIONS, without make_app's CACHE_LMC_MAP_SIZE."""
    app = Flask(__name__)
    app.config.update(CACHE_TYPE="lmc.flask_caching.LmcCache",
                      CACHE_LMC_PATH=os.path.join(tmpdir_shm, "flask"), **config)
    return app


def test_cache_options_give_any_lmc_cache_argument(tmpdir_shm):
    """CACHE_OPTIONS reaches LmcCache as keyword arguments, as Flask-Caching
    documents; the factory used to overwrite map_size, mode and key_prefix
    with the values (or defaults) of the CACHE_* keys."""
    app = options_app(tmpdir_shm, CACHE_OPTIONS={"map_size": 8 << 20, "mode": 0o640,
                                                 "key_prefix": "opt/", "default_timeout": 9})
    cache = Cache(app)
    with app.app_context():
        backend = cache.cache
        assert backend.lmc.info()["map_size"] == 8 << 20
        assert backend.key_prefix == "opt/" and backend.default_timeout == 9
        cache.set("k", 1)
    st = os.stat(os.path.join(tmpdir_shm, "flask", "data.mdb"))
    assert st.st_mode & 0o777 == 0o640
    with raw_handle(tmpdir_shm) as raw:
        assert raw.keys() == [b"opt/k"]


def test_one_setting_given_twice_must_agree(tmpdir_shm):
    with pytest.raises(ValueError, match=r"CACHE_LMC_MAP_SIZE.*CACHE_OPTIONS\['map_size'\]"):
        Cache(options_app(tmpdir_shm, CACHE_LMC_MAP_SIZE=16 << 20,
                          CACHE_OPTIONS={"map_size": 8 << 20}))
    with pytest.raises(ValueError, match="CACHE_LMC_MODE"):
        Cache(options_app(tmpdir_shm, CACHE_LMC_MODE=0o600, CACHE_OPTIONS={"mode": 0o640}))
    assert not os.path.exists(os.path.join(tmpdir_shm, "flask"))   # refused before opening
    app = options_app(tmpdir_shm, CACHE_LMC_MAP_SIZE=8 << 20, CACHE_OPTIONS={"map_size": 8 << 20})
    cache = Cache(app)
    with app.app_context():
        assert cache.cache.lmc.info()["map_size"] == 8 << 20


def test_clear_removes_only_this_apps_prefix(tmpdir_shm):
    app1, cache1 = make_app(tmpdir_shm, CACHE_KEY_PREFIX="one/")
    app2, cache2 = make_app(tmpdir_shm, CACHE_KEY_PREFIX="two/")
    with app1.app_context():
        cache1.set("k", 1)
    with app2.app_context():
        cache2.set("k", 2)
    with raw_handle(tmpdir_shm) as raw:
        raw.set(b"outside", b"x")
    with app1.app_context():
        assert cache1.clear() is True
        assert cache1.get("k") is None
    with app2.app_context():
        assert cache2.get("k") == 2
    with raw_handle(tmpdir_shm) as raw:
        assert sorted(raw.keys()) == [b"outside", b"two/k"]


def test_delete_many_deletes_every_key_unlike_flask_caching_s_base(tmpdir_shm):
    # Flask-Caching's BaseCache.delete_many stops at the first missing key
    # unless CACHE_IGNORE_ERRORS; LmcCache deletes them all.
    for backend, expect_left in (("lmc", []), ("simple", ["c"])):
        app, cache = make_app(tmpdir_shm, backend=backend)
        with app.app_context():
            cache.set_many({"a": 1, "c": 3})
            cache.delete_many("a", "b", "c")
            left = [k for k in ("a", "c") if cache.has(k)]
            assert left == expect_left, backend
            cache.clear()


@pytest.mark.parametrize("backend", ["lmc", "simple"])
def test_cached_view_and_memoize(tmpdir_shm, backend):
    app, cache = make_app(tmpdir_shm, backend=backend, CACHE_KEY_PREFIX="")
    calls = {"view": 0, "memo": 0}

    @cache.memoize(timeout=60)
    def square(n):
        calls["memo"] += 1
        return n * n

    @app.route("/items/<int:n>")
    @cache.cached(timeout=60)
    def item(n):
        calls["view"] += 1
        return {"n": n, "sq": square(n)}

    client = app.test_client()
    assert client.get("/items/3").json == {"n": 3, "sq": 9}
    assert client.get("/items/3").json == {"n": 3, "sq": 9}
    assert client.get("/items/4").json == {"n": 4, "sq": 16}
    assert calls == {"view": 2, "memo": 2}
    with app.app_context():
        assert square(3) == 9 and calls["memo"] == 2
        cache.delete_memoized(square, 3)
        assert square(3) == 9 and calls["memo"] == 3
        # The default view key is "view/" + request.path.
        assert cache.has("view//items/3")
        assert cache.delete("view//items/3")
    client.get("/items/3")
    assert calls["view"] == 3


def test_prefix_invalidation_of_views(tmpdir_shm):
    """Everything under /items/ is dropped at once; other views stay."""
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="shop/")
    runs = []

    @app.route("/items/<int:n>")
    @cache.cached()
    def item(n):
        runs.append(("item", n))
        return str(n)

    @app.route("/other")
    @cache.cached()
    def other():
        runs.append(("other", 0))
        return "other"

    client = app.test_client()
    for path in ("/items/1", "/items/2", "/other", "/items/1", "/other"):
        client.get(path)
    assert len(runs) == 3
    with app.app_context():
        assert cache.cache.delete_prefix("view//items/") == 2  # key_prefix is added
    for path in ("/items/1", "/items/2", "/other"):
        client.get(path)
    assert runs[3:] == [("item", 1), ("item", 2)]
    # From another process, e.g. `lmc PATH del-prefix shop/view//items/`,
    # the full stored key is used.
    with raw_handle(tmpdir_shm) as raw:
        assert raw.delete_prefix(b"shop/view//items/") == 2
    client.get("/items/2")
    assert runs[-1] == ("item", 2)


def test_shared_between_two_apps_on_one_path(tmpdir_shm):
    """Two app instances (as two workers would be) share cached results."""
    runs = []

    def build():
        app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="")

        @app.route("/p")
        @cache.cached()
        def page():
            runs.append(1)
            return "page"

        return app

    a, b = build(), build()
    assert a.test_client().get("/p").data == b"page"
    assert b.test_client().get("/p").data == b"page"
    assert len(runs) == 1


def test_a_view_whose_key_is_too_long_to_store_is_served_uncached(tmpdir_shm, caplog):
    """@cache.cached keys a view by its path, which the client chooses: a path
    longer than lmc's 64 KiB keys must give the page, computed each time, and
    a log line of bounded size, not an exception (which app.debug, set here,
    would let through) nor a 70 KB log line."""
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="")
    app.debug = True
    runs = []

    @app.route("/p/<path:rest>")
    @cache.cached()
    def page(rest):
        runs.append(len(rest))
        return "page"

    client = app.test_client()
    long_path = "/p/" + "x" * 70_000
    with caplog.at_level(logging.WARNING):
        assert client.get(long_path).data == b"page"
        assert client.get(long_path).data == b"page"
    assert runs == [70_000, 70_000]
    assert [len(r.getMessage()) < 600 for r in caplog.records] == [True] * len(caplog.records)
    assert client.get("/p/short").data == b"page" and client.get("/p/short").data == b"page"
    assert len(runs) == 3


@pytest.mark.parametrize("config", [{"CACHE_LMC_SERIALIZER": "json"},
                                    {"CACHE_OPTIONS": {"serializer": "json"}}])
def test_json_serializer_for_views_and_memoize(tmpdir_shm, config):
    """The configuration for a cache that a group of users shares: views and
    memoized results stored as JSON, read back the same."""
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", **config)
    calls = []

    @cache.memoize(timeout=60)
    def doc(n):
        calls.append(n)
        return {"n": n, "items": [1, 2.5, None]}

    @app.route("/items/<int:n>")
    @cache.cached(timeout=60)
    def item(n):
        return f"item {n} {doc(n)['items']}"

    client = app.test_client()
    assert client.get("/items/3").data == b"item 3 [1, 2.5, None]"
    assert client.get("/items/3").data == b"item 3 [1, 2.5, None]"
    with app.app_context():
        assert doc(3) == {"n": 3, "items": [1, 2.5, None]}
    assert calls == [3]
    with raw_handle(tmpdir_shm) as raw:
        assert raw.get(b"view//items/3") == b'"item 3 [1, 2.5, None]"'


def test_serializer_given_twice_must_agree(tmpdir_shm):
    with pytest.raises(ValueError, match="CACHE_LMC_SERIALIZER"):
        Cache(options_app(tmpdir_shm, CACHE_LMC_SERIALIZER="json",
                          CACHE_OPTIONS={"serializer": "pickle"}))
