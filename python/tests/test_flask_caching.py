"""Tests of lmc.flask_caching.LmcCache inside Flask, in this process: the
configuration keys, key prefixes, clear(), @cache.cached and
@cache.memoize, and prefix invalidation of views.  Decorator behaviour is
checked against Flask-Caching's SimpleCache too.  The multi-process proof is
test_gunicorn.py."""
import logging
import os
import threading

import flask
import pytest
from flask import Flask
from flask_caching import Cache

from conftest import SMALL_MAP, wait_for

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


# ---------------------------------------------------------------------------
# CACHE_LMC_LEASE and CACHE_LMC_GRACE (across workers: test_gunicorn.py)


def lease_counters(cache):
    st = cache.cache.lmc.stats()
    return {k: st[k] for k in ("lease_grants", "lease_wait_timeouts", "lease_takeovers_dead",
                               "lease_takeovers_expired", "refresh_failures")}


@pytest.mark.parametrize("config", [{"CACHE_LMC_LEASE": True}, {"CACHE_LMC_GRACE": 60}])
def test_lease_views_and_memoize_behave_as_without(tmpdir_shm, config):
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", **config)
    assert cache.cache.lease
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
        cache.delete_memoized(square, 3)
        assert square(3) == 9 and calls["memo"] == 3
        assert cache.delete("view//items/3")
        # Plain gets and sets of the app still work, and a get that misses
        # (taking a lease) followed by the set of that key fills it.
        assert cache.get("plain") is None
        assert cache.set("plain", [1, 2]) and cache.get("plain") == [1, 2]
    client.get("/items/3")
    assert calls["view"] == 3
    with app.app_context():
        assert lease_counters(cache)["lease_grants"] >= 4
        assert cache.cache.lmc.stats()["lease_takeovers_expired"] == 0


def test_a_view_that_raises_gives_its_lease_up_at_teardown(tmpdir_shm):
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", CACHE_LMC_LEASE=True)
    runs = []

    @app.route("/fails")
    @cache.cached(timeout=60)
    def fails():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("database down")
        return "ok"

    @app.route("/none")
    @cache.cached(timeout=60, response_filter=lambda rv: False)
    def not_cached():
        runs.append(2)
        return "never cached"

    client = app.test_client()
    assert client.get("/fails").status_code == 500
    with app.app_context():
        raw = cache.cache.lmc
        # Not left to its lease time: the next caller gets the lease at once.
        outcome, _, lease = raw.get_lease(b"view//fails", wait=0)
        assert outcome == lmc.LEASE_FILL
        lease.abandon()
    assert client.get("/fails").data == b"ok" and client.get("/fails").data == b"ok"
    assert client.get("/none").data == b"never cached"
    with app.app_context():
        assert cache.cache.lmc.get_lease(b"view//none", wait=0)[0] == lmc.LEASE_FILL
    assert runs == [1, 1, 2]
    with app.app_context():
        c = lease_counters(cache)
        assert c["lease_takeovers_expired"] == 0 and c["lease_wait_timeouts"] == 0


def test_a_view_computed_after_the_wait_ran_out_is_not_stored(tmpdir_shm):
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", CACHE_LMC_LEASE=True,
                          CACHE_LMC_LEASE_WAIT=0.01)

    @app.route("/p")
    @cache.cached(timeout=60)
    def page():
        return "mine"

    with app.app_context():
        _, _, held = cache.cache.lmc.get_lease(b"view//p")  # another worker computes
    assert app.test_client().get("/p").data == b"mine"
    with app.app_context():
        # Not stored over the holder's fill.
        assert cache.cache.lmc.get(b"view//p") is None
        assert held.fill(b'"holder"') is True
        assert cache.cache.lmc.stats()["lease_wait_timeouts"] == 1


def test_grace_serves_stale_and_refreshes_in_the_background(tmpdir_shm):
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", CACHE_LMC_GRACE=600)
    runs = []
    release = {}

    @app.before_request
    def user():
        flask.g.user = "ann"

    @app.route("/p")
    @cache.cached(timeout=0.05)
    def page():
        runs.append(threading.current_thread().name)
        if len(runs) > 1:
            # The refresh: runs until the test lets it finish.
            assert release.setdefault("event", threading.Event()).wait(30)
        return f"page {len(runs)} for {flask.g.user} at {flask.request.path}"

    client = app.test_client()
    assert client.get("/p").data == b"page 1 for ann at /p"
    with app.app_context():
        wait_for(lambda: cache.cache.lmc.get(b"view//p") is None, what="the page to expire")
    release["event"] = threading.Event()
    # The refresher answers at once with the stale page, as do the others.
    for _ in range(3):
        assert client.get("/p").data == b"page 1 for ann at /p"
    wait_for(lambda: len(runs) == 2, what="the background refresh to start")
    assert runs[1].startswith("lmc-refresh")
    release["event"].set()
    wait_for(lambda: client.get("/p").data == b"page 2 for ann at /p", what="the new page")
    assert len(runs) == 2


def test_a_failed_background_refresh_keeps_the_stale_value(tmpdir_shm, caplog):
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", CACHE_LMC_GRACE=600)
    runs = []

    @app.route("/p")
    @cache.cached(timeout=0.05)
    def page():
        runs.append(1)
        if len(runs) == 2:
            raise RuntimeError("database down")
        return f"page {len(runs)}"

    client = app.test_client()
    assert client.get("/p").data == b"page 1"
    with app.app_context():
        wait_for(lambda: cache.cache.lmc.get(b"view//p") is None, what="the page to expire")
        with caplog.at_level(logging.ERROR):
            assert client.get("/p").data == b"page 1"  # stale; the refresh fails
            wait_for(lambda: cache.cache.lmc.stats()["refresh_failures"] == 1,
                     what="the refresh to fail")
            wait_for(lambda: any("background" in r.getMessage() for r in caplog.records),
                     what="the failure to be logged")
        assert client.get("/p").data == b"page 1"  # still the stale page; refreshes again
        wait_for(lambda: client.get("/p").data == b"page 3", what="the next refresh")


def test_memoize_with_grace_serves_the_stale_result(tmpdir_shm):
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", CACHE_LMC_GRACE=600)
    runs = []

    @cache.memoize(timeout=0.05)
    def result(n):
        runs.append(threading.current_thread().name)
        return (n, len(runs))

    with app.app_context():
        assert result(7) == (7, 1)
        wait_for(lambda: len([k for k in cache.cache.lmc.keys() if not k.endswith(b"_memver")
                              and cache.cache.lmc.get(k) is not None]) == 0,
                 what="the result to expire")
        assert result(7) == (7, 1)  # stale, at once
        wait_for(lambda: result(7) == (7, 2), what="the background refresh")
        assert runs[1].startswith("lmc-refresh")


@pytest.mark.parametrize("config,match", [
    ({"CACHE_LMC_GRACE": -1}, "CACHE_LMC_GRACE"),
    ({"CACHE_LMC_GRACE": float("nan")}, "CACHE_LMC_GRACE"),
    ({"CACHE_LMC_LEASE": True, "CACHE_LMC_LEASE_WAIT": -1}, "CACHE_LMC_LEASE_WAIT"),
    ({"CACHE_LMC_LEASE": True, "CACHE_LMC_LEASE_WAIT": "5"}, "CACHE_LMC_LEASE_WAIT"),
    ({"CACHE_LMC_LEASE": True, "CACHE_LMC_LEASE_TIME": 0}, "CACHE_LMC_LEASE_TIME"),
])
def test_bad_lease_settings_are_refused(tmpdir_shm, config, match):
    with pytest.raises(ValueError, match=match):
        make_app(tmpdir_shm, **config)


def test_grace_outside_a_decorator_refreshes_inline(tmpdir_shm):
    """A plain get of a stale key from application code (no Flask-Caching
    decorator to rerun) is handed the refresh as a miss: the caller computes
    and its set fills the lease, while other callers get the stale value."""
    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", CACHE_LMC_GRACE=600)
    with app.app_context():
        assert cache.get("k") is None and cache.set("k", "old", timeout=0.05)
        wait_for(lambda: cache.cache.lmc.get(b"k") is None, what="the value to expire")
        assert cache.get("k") is None  # this caller refreshes
        seen = {}
        t = threading.Thread(target=lambda: seen.update(v=cache.get("k")))
        t.start()
        t.join(30)
        assert seen["v"] == "old"  # another thread: the stale value, at once
        assert cache.set("k", "new", timeout=60)
        assert cache.get("k") == "new"
        assert cache.cache.lmc.stats()["stale_served"] == 1


@pytest.mark.parametrize("config", [{}, {"CACHE_LMC_LEASE": True}, {"CACHE_LMC_GRACE": 60}],
                         ids=["plain", "lease", "grace"])
def test_decorator_options_keep_working_with_leases(tmpdir_shm, config):
    """unless, forced_update, response_filter, cache_none, query_string,
    make_cache_key, CachedResponse, memoize's delete_memoized: the same results with and without leases, and no lease
    left behind by any of them."""
    from flask_caching import CachedResponse

    app, cache = make_app(tmpdir_shm, CACHE_KEY_PREFIX="", **config)
    runs = {}
    state = {"bypass": False, "force": False}

    def ran(name):
        runs[name] = runs.get(name, 0) + 1
        return runs[name]

    @app.route("/unless")
    @cache.cached(unless=lambda: state["bypass"])
    def unless():
        return f"unless {ran('unless')}"

    @app.route("/forced")
    @cache.cached(forced_update=lambda: state["force"])
    def forced():
        return f"forced {ran('forced')}"

    @app.route("/filtered")
    @cache.cached(response_filter=lambda rv: "keep" in rv)
    def filtered():
        n = ran("filtered")
        return "keep" if n > 1 else "drop"

    @app.route("/none")
    @cache.cached(cache_none=True)
    def none():
        ran("none")
        return flask.make_response("", 204)

    @app.route("/qs")
    @cache.cached(query_string=True)
    def qs():
        return f"qs {flask.request.args.get('a')} {ran('qs')}"

    @app.route("/key")
    @cache.cached(make_cache_key=lambda: "custom-key")
    def custom():
        return f"key {ran('key')}"

    @app.route("/cr")
    @cache.cached()
    def cr():
        return CachedResponse(flask.make_response(f"cr {ran('cr')}"), timeout=60)

    @cache.memoize()
    def memo(a):
        return (a, ran("memo"))

    c = app.test_client()
    assert c.get("/unless").data == c.get("/unless").data == b"unless 1"
    state["bypass"] = True
    assert c.get("/unless").data == b"unless 2"
    assert c.get("/forced").data == b"forced 1"
    state["force"] = True
    assert c.get("/forced").data == b"forced 2"
    state["force"] = False
    assert c.get("/forced").data == b"forced 2"
    assert c.get("/filtered").data == b"drop"
    assert c.get("/filtered").data == b"keep" and c.get("/filtered").data == b"keep"
    assert runs["filtered"] == 2
    assert c.get("/none").status_code == 204 and c.get("/none").status_code == 204
    assert c.get("/qs?a=1").data == c.get("/qs?a=1").data == b"qs 1 1"
    assert c.get("/qs?a=2").data == b"qs 2 2"
    assert c.get("/key").data == c.get("/key").data == b"key 1"
    assert c.get("/cr").data == c.get("/cr").data == b"cr 1"
    with app.app_context():
        assert cache.has("custom-key")
        assert memo(1) == memo(1) == (1, 1) and memo(2) == (2, 2)
        cache.delete_memoized(memo, 1)
        assert memo(1) == (1, 3)
    assert runs["none"] == 1
    with app.app_context():
        # Nothing left held: every key's lease is free for the next caller.
        raw = cache.cache.lmc
        for key in (b"view//filtered", b"view//unless", b"not-cached-anywhere"):
            if raw.get(key) is None:
                outcome, _, lease = raw.get_lease(key, wait=0)
                assert outcome == lmc.LEASE_FILL, key
                lease.abandon()
        assert raw.stats()["lease_wait_timeouts"] == 0
