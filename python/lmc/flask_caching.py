"""lmc.flask_caching: a Flask-Caching backend shared by every worker process.

    app.config.update(
        CACHE_TYPE="lmc.flask_caching.LmcCache",
        CACHE_LMC_PATH="/dev/shm/myapp",      # required: the cache directory
        CACHE_LMC_MAP_SIZE=256 << 20,         # capacity when created (bytes)
        CACHE_DEFAULT_TIMEOUT=300,
        CACHE_KEY_PREFIX="myapp/",            # applied to every key
    )
    cache = Cache(app)

Every gunicorn/uWSGI worker (and the master, with --preload) sees the same
entries, so a view or memoized function is computed once per key for all
workers instead of once per worker.  CACHE_LMC_MODE (e.g. 0o660) shares the
cache files with the group when workers run as several users; every member
of the group can then write entries, and with pickled values (the default)
run code in every other member's workers, so such a cache should set
CACHE_LMC_SERIALIZER="json" (see lmc.cachelib.LmcJSONSerializer).

CACHE_OPTIONS may carry any LmcCache argument (map_size, mode, key_prefix,
max_readers, ...).  Like Flask-Caching's own "default_timeout" there, it
wins over CACHE_KEY_PREFIX and CACHE_IGNORE_ERRORS, which always have a
value; giving a CACHE_LMC_* key (MAP_SIZE, MODE, SERIALIZER) and the same
setting in CACHE_OPTIONS with another value is a ValueError, since one of
the two would otherwise be ignored without a word.

clear() removes only this app's CACHE_KEY_PREFIX.  Invalidating a group of
keys, which no other Flask-Caching backend can do, works by prefix:
@cache.cached() stores a view under "view/" + request.path, so

    cache.cache.delete_prefix("view//items/")     # from the app
    lmc /dev/shm/myapp del-prefix myapp/view//items/   # from a shell

drops the cached pages of every path under /items/ for all workers at once
(the shell form needs the full key, including CACHE_KEY_PREFIX).

Stampedes: CACHE_LMC_LEASE = True makes every @cache.cached view and
@cache.memoize call computed once per host when many workers miss it at once
(the others wait for it, at most CACHE_LMC_LEASE_WAIT seconds, 5 by
default); CACHE_LMC_GRACE = seconds serves the stale value that long past its
timeout while one worker refreshes it in a background thread.
CACHE_LMC_LEASE_TIME (30 s) bounds how long a computation may hold the lease;
a worker that dies loses it at once.  See python/README.md.
"""
import io
import logging
import sys
import threading
import time
import typing as _t

from flask_caching.backends.base import BaseCache

from ._lmc import LEASE_REFRESH, Error, TooBigError
from .cachelib import LmcCache as _CachelibLmcCache
from .cachelib import LmcRedisCache as _CachelibLmcRedisCache

logger = logging.getLogger(__name__)

# The CACHE_LMC_* keys and the LmcCache argument each of them sets.  These
# keys have no default, so when one is given together with the same argument
# in CACHE_OPTIONS, both were written by the user and must agree.
_LMC_KEYS = (
    ("CACHE_LMC_MAP_SIZE", "map_size"),
    ("CACHE_LMC_MODE", "mode"),
    ("CACHE_LMC_SERIALIZER", "serializer"),
    ("CACHE_LMC_LEASE", "lease"),
    ("CACHE_LMC_GRACE", "grace"),
    ("CACHE_LMC_LEASE_WAIT", "lease_wait"),
    ("CACHE_LMC_LEASE_TIME", "lease_time"),
)

# Defaults of the lease settings, in seconds.  A request waits at most this
# long for another worker's computation before computing the page itself
# (nginx's proxy_cache_lock_timeout is 5 s too).
_LEASE_WAIT = 5.0
# How long a worker may take to compute before another takes the lease over
# (the library's default); a worker that dies loses it at once.
_LEASE_TIME = 30.0


def _decorator_frame(frame: _t.Any) -> _t.Any:
    """The frame of Flask-Caching's cached() or memoize() wrapper among the
    callers of a get(), or None.  Its locals hold what calling the cached
    function again takes (the wrapper itself, args and kwargs)."""
    for _ in range(4):
        if frame is None:
            return None
        code = frame.f_code
        if (code.co_name == "decorated_function"
                and frame.f_globals.get("__name__") == "flask_caching"):
            return frame
        frame = frame.f_back
    return None


class LmcCache(BaseCache, _CachelibLmcCache):
    """Flask-Caching backend over lmc; see lmc.cachelib.LmcCache for the
    semantics of each call."""

    def __init__(
        self,
        path: _t.Any,
        default_timeout: int = 300,
        key_prefix: _t.Optional[str] = None,
        map_size: int = 0,
        mode: int = 0,
        ignore_errors: bool = False,
        lease: bool = False,
        grace: float = 0,
        lease_wait: _t.Optional[float] = None,
        lease_time: _t.Optional[float] = None,
        **kwargs: _t.Any,
    ):
        BaseCache.__init__(self, default_timeout=default_timeout)
        grace = grace or 0
        if not (0 <= grace < 4294967):
            raise ValueError(f"CACHE_LMC_GRACE must be 0 or more seconds (under 4294967), "
                             f"not {grace!r}")
        # Grace needs leases: only a fill under a lease stores it.
        self.lease = bool(lease) or grace > 0
        self.grace = grace
        self.lease_wait = _LEASE_WAIT if lease_wait is None else lease_wait
        self.lease_time = _LEASE_TIME if lease_time is None else lease_time
        for name, v, low in (("CACHE_LMC_LEASE_WAIT", self.lease_wait, 0),
                             ("CACHE_LMC_LEASE_TIME", self.lease_time, 1e-3)):
            if not (isinstance(v, (int, float)) and low <= v <= 1e9):
                raise ValueError(f"{name} must be {'0' if low == 0 else 'more than 0'} to "
                                 f"1e9 seconds, not {v!r}")
        # Per thread (per greenlet under gevent): the leases this thread's
        # gets took, by full key, until its set of the key fills them.
        self._local = threading.local()
        _CachelibLmcCache.__init__(
            self,
            path,
            default_timeout=default_timeout,
            key_prefix=key_prefix,
            map_size=map_size,
            mode=mode,
            **kwargs,
        )
        # Kept for Flask-Caching's API; delete_many() deletes every key
        # whatever its value.
        self.ignore_errors = ignore_errors

    @classmethod
    def factory(cls, app, config, args, kwargs):
        path = config.get("CACHE_LMC_PATH")
        if not path:
            raise ValueError(
                "CACHE_TYPE lmc.flask_caching.LmcCache needs CACHE_LMC_PATH, the cache "
                "directory (e.g. /dev/shm/myapp)"
            )
        args.insert(0, path)
        # kwargs is CACHE_OPTIONS over {"default_timeout": ...}: what it holds
        # was asked for explicitly and is never overwritten.
        for name, arg in _LMC_KEYS:
            value = config.get(name)
            if value is None:
                continue
            if arg in kwargs and kwargs[arg] != value:
                raise ValueError(
                    f"{name}={value!r} and CACHE_OPTIONS[{arg!r}]={kwargs[arg]!r} disagree; "
                    "give the setting once"
                )
            kwargs[arg] = value
        # Flask-Caching gives these two keys a default, so a value in
        # CACHE_OPTIONS cannot be told from a conflict: CACHE_OPTIONS wins,
        # as it does over CACHE_DEFAULT_TIMEOUT.
        kwargs.setdefault("key_prefix", config.get("CACHE_KEY_PREFIX") or "")
        kwargs.setdefault("ignore_errors", config.get("CACHE_IGNORE_ERRORS", False))
        backend = cls(*args, **kwargs)
        if backend.lease:
            # A lease taken by a get whose set never came (the view raised,
            # or returned something response_filter did not cache) is given
            # up when the request (or app context) ends, not at its lease
            # time.
            app.teardown_appcontext(backend._end_leases)
        return backend

    # -- fill leases (CACHE_LMC_LEASE, CACHE_LMC_GRACE) ------------------------
    #
    # Flask-Caching's decorators call get(key), compute on a miss, then
    # set(key, value).  With leases a get that misses asks lmc for the fill
    # lease of the key: the one worker on the host that gets it receives the
    # miss and keeps the lease in this thread until its set(key) fills it;
    # the others wait for that fill (CACHE_LMC_LEASE_WAIT) and get the value,
    # or, within CACHE_LMC_GRACE past the timeout, get the stale value at
    # once.  The worker given the refresh of a stale value answers with the
    # stale value too and reruns the decorated function in a thread of its
    # own; where that cannot be done (the get does not come from a
    # Flask-Caching decorator) it computes inline like on a miss.

    def _state(self) -> _t.Any:
        local = self._local
        try:
            return local.leases, local.uncached
        except AttributeError:
            local.leases, local.uncached, local.refresh = {}, set(), {}
            return local.leases, local.uncached

    def get(self, key: str) -> _t.Any:
        if not self.lease:
            return _CachelibLmcCache.get(self, key)
        k = self.key_prefix + key
        try:
            raw = self.lmc.get(k)
        except TooBigError:
            return None
        if raw is not None:
            return self.serializer.loads(raw)
        return self._get_leased(key, k)

    def _get_leased(self, key: str, k: str) -> _t.Any:
        leases, uncached = self._state()
        held = self._local.refresh.pop(k, None)
        if held is not None:
            # This thread reruns the function to refresh k: a miss, and the
            # set that follows fills the refresh lease.
            leases[k] = held
            return None
        held = leases.get(k)
        if held is not None:
            if held.held and time.time() - held.granted < self.lease_time:
                return None  # this thread computes it already
            leases.pop(k, None)  # lapsed: ask again
        try:
            outcome, raw, lease = self.lmc.get_lease(k, lease_time=self.lease_time,
                                                     wait=self.lease_wait)
        except Error as e:
            self._backend_error("get", key, e)
            return None
        if lease is None:
            if raw is None:
                # Another worker holds the lease and did not fill it in time:
                # this one computes the page without storing it (as nginx
                # does), so that the holder's fill is not overwritten.
                uncached.add(k)
                return None
            return self.serializer.loads(raw)  # a value after waiting, or stale
        if outcome == LEASE_REFRESH and self._refresh_in_background(k, lease):
            return self.serializer.loads(raw)
        leases[k] = lease
        return None

    def _refresh_in_background(self, k: str, lease: _t.Any) -> bool:
        """Rerun the Flask-Caching wrapper that called get() in a thread, under
        a copy of the request (or app) context, so that this request is
        answered with the stale value at once.  False if the caller is not a
        Flask-Caching decorator (the refresh is then computed inline)."""
        frame = _decorator_frame(sys._getframe(2))
        if frame is None:
            return False
        loc = frame.f_locals
        wrapper, args, kwargs = loc.get("decorated_function"), loc.get("args"), loc.get("kwargs")
        del frame, loc
        if not callable(wrapper) or not isinstance(args, tuple) or not isinstance(kwargs, dict):
            return False
        import flask

        if flask.has_request_context():
            app = flask.current_app._get_current_object()
            req = flask.request
            if req.method not in ("GET", "HEAD"):
                return False
            # A request object of its own (the original one is finished and
            # closed while the refresh runs): the same environ, no body.
            environ = {n: v for n, v in req.environ.items() if n != "werkzeug.request"}
            environ["wsgi.input"] = io.BytesIO()
            environ["CONTENT_LENGTH"] = "0"

            def context() -> _t.Any:
                return app.request_context(environ)
        elif flask.has_app_context():
            app = flask.current_app._get_current_object()
            context = app.app_context
        else:
            app, context = None, None
        # What before_request handlers put in g, for the rerun function.
        g = dict(vars(flask.g._get_current_object())) if flask.has_app_context() else {}

        def refresh() -> None:
            self._state()
            self._local.refresh[k] = lease
            try:
                if context is None:
                    wrapper(*args, **kwargs)
                else:
                    with context():
                        vars(flask.g._get_current_object()).update(g)
                        wrapper(*args, **kwargs)
            except Exception:
                logger.exception("lmc: refreshing %.60r in the background failed; the stale "
                                 "value stays until its grace runs out", k)
            finally:
                self._local.refresh.clear()
                self._end_leases()
                if lease.held:
                    lease.abandon()

        t = threading.Thread(target=refresh, name=f"lmc-refresh {k[:40]}", daemon=True)
        try:
            t.start()
        except RuntimeError:  # no more threads: compute inline
            return False
        return True

    def _end_leases(self, exc: _t.Any = None) -> None:
        """Give up the leases this thread's gets took and no set filled."""
        local = self._local
        leases = getattr(local, "leases", None)
        if leases:
            for k, lease in list(leases.items()):
                try:
                    lease.abandon()
                except Error as e:
                    logger.warning("lmc: abandoning the lease of %.60r failed: %s", k, e)
            leases.clear()
        uncached = getattr(local, "uncached", None)
        if uncached:
            uncached.clear()

    def set(self, key: str, value: _t.Any, timeout: _t.Optional[int] = None) -> bool:
        if self.lease:
            leases, uncached = self._state()
            k = self.key_prefix + key
            lease = leases.pop(k, None)
            if lease is not None:
                return self._fill(key, lease, value, timeout)
            if k in uncached:
                uncached.discard(k)
                return False  # computed after the wait ran out: not stored
        return _CachelibLmcCache.set(self, key, value, timeout)

    def set_many(self, mapping: _t.Dict[str, _t.Any],
                 timeout: _t.Optional[int] = None) -> _t.List[_t.Any]:
        # @cache.memoize keys a result by a version kept under
        # "<function>_memver", which it stores (with set_many) with the
        # timeout of the result: when both expire together a new version is
        # drawn and the stale result can never be found again.  With grace
        # the version outlives its result by the grace, so that the stale
        # result is served while one worker refreshes it.
        if self.grace and mapping and all(isinstance(k, str) and k.endswith("_memver")
                                          for k in mapping):
            ttl = self._ttl(timeout)
            if ttl:
                timeout = ttl + self.grace
        return _CachelibLmcCache.set_many(self, mapping, timeout)

    def _fill(self, key: str, lease: _t.Any, value: _t.Any, timeout: _t.Any) -> bool:
        with lease:  # abandoned if anything below raises
            ttl = self._ttl(timeout)
            if ttl is None:
                # A negative timeout: expired at once, as set() has it.
                self._delete(self.key_prefix + key)
                return False
            data = self.serializer.dumps(value)
            try:
                return lease.fill(data, ttl, self.grace)
            except Error as e:
                self._backend_error("set", key, e)
                return False

    # Flask-Caching's BaseCache.delete_many stops at the first key that does
    # not exist (unless CACHE_IGNORE_ERRORS); lmc deletes every key given.
    delete_many = _CachelibLmcCache.delete_many


class LmcRedisCache(BaseCache, _CachelibLmcRedisCache):
    """Flask-Caching backend: Redis shared by every host, this host's lmc
    cache as its L1, kept coherent by lmc-redis-sync.

        app.config.update(
            CACHE_TYPE="lmc.flask_caching.LmcRedisCache",
            CACHE_REDIS_URL="unix:///run/redis/redis-server.sock",
            CACHE_LMC_PATH="/dev/shm/myapp",
            CACHE_KEY_PREFIX="myapp/",       # what lmc-redis-sync --prefix tracks
        )

    See lmc.cachelib.LmcRedisCache for the semantics of each call.
    CACHE_LMC_MAP_SIZE, CACHE_LMC_MODE and CACHE_LMC_SERIALIZER work as for
    LmcCache; CACHE_OPTIONS may carry any LmcRedisCache argument
    (require_sync, l1_max_timeout, redis_options, ...).
    """

    def __init__(self, redis_url=None, path=None, default_timeout=300, key_prefix=None,
                 ignore_errors=False, **kwargs):
        BaseCache.__init__(self, default_timeout=default_timeout)
        _CachelibLmcRedisCache.__init__(self, redis_url=redis_url, path=path,
                                        default_timeout=default_timeout,
                                        key_prefix=key_prefix, **kwargs)
        self.ignore_errors = ignore_errors

    @classmethod
    def factory(cls, app, config, args, kwargs):
        url = config.get("CACHE_REDIS_URL")
        path = config.get("CACHE_LMC_PATH")
        if not url or not path:
            raise ValueError(
                "CACHE_TYPE lmc.flask_caching.LmcRedisCache needs CACHE_REDIS_URL (the Redis "
                "every host shares) and CACHE_LMC_PATH (this host's cache directory)"
            )
        kwargs["redis_url"] = url
        kwargs["path"] = path
        for name, arg in _LMC_KEYS:
            value = config.get(name)
            if value is None:
                continue
            if arg in kwargs and kwargs[arg] != value:
                raise ValueError(
                    f"{name}={value!r} and CACHE_OPTIONS[{arg!r}]={kwargs[arg]!r} disagree; "
                    "give the setting once"
                )
            kwargs[arg] = value
        kwargs.setdefault("key_prefix", config.get("CACHE_KEY_PREFIX") or "")
        kwargs.setdefault("ignore_errors", config.get("CACHE_IGNORE_ERRORS", False))
        return cls(*args, **kwargs)

    delete_many = _CachelibLmcRedisCache.delete_many
