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
cache files with the group when workers run as several users.

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
        kwargs.update(
            key_prefix=config.get("CACHE_KEY_PREFIX") or "",
            map_size=config.get("CACHE_LMC_MAP_SIZE") or 0,
            mode=config.get("CACHE_LMC_MODE") or 0,
            ignore_errors=config.get("CACHE_IGNORE_ERRORS", False),
        )
        return cls(*args, **kwargs)

    # Flask-Caching's BaseCache.delete_many stops at the first key that does
    # not exist (unless CACHE_IGNORE_ERRORS); lmc deletes every key given.
    delete_many = _CachelibLmcCache.delete_many
