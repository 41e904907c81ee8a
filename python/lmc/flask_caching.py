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
"""
import typing as _t

from flask_caching.backends.base import BaseCache

from .cachelib import LmcCache as _CachelibLmcCache
from .cachelib import LmcRedisCache as _CachelibLmcRedisCache

# The CACHE_LMC_* keys and the LmcCache argument each of them sets.  These
# keys have no default, so when one is given together with the same argument
# in CACHE_OPTIONS, both were written by the user and must agree.
_LMC_KEYS = (
    ("CACHE_LMC_MAP_SIZE", "map_size"),
    ("CACHE_LMC_MODE", "mode"),
    ("CACHE_LMC_SERIALIZER", "serializer"),
)


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
        **kwargs: _t.Any,
    ):
        BaseCache.__init__(self, default_timeout=default_timeout)
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
        return cls(*args, **kwargs)

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
