"""lmc.flask: whole HTTP responses cached for every worker of the host, with
ETag/304, Cache-Control, Vary and fill leases.

    from lmc.flask import HttpCache
    http = HttpCache(app, "/dev/shm/myapp-http")     # or LMC_HTTP_PATH + init_app(app)

    @app.get("/items/<int:n>")
    @http.cached_response(60, grace=300, query=("page",), vary=("Accept-Language",))
    def item(n): ...

    http.invalidate_path("/items/")        # every variant of every page under /items/

What a cached view does, in short (python/README.md has the whole list):
- The key is the method (GET; HEAD is answered from the GET entry), the
  path, the query arguments (all of them, or an allow-list) sorted, the
  values of the request headers named in `vary`, and the user when
  `per_user` gives one, in that order, so that a prefix of the path removes
  every variant.
- Stored: the status, an allow-list of headers, the body, a strong ETag and
  the time it was stored; never Set-Cookie.  Not stored: a status outside
  `statuses`, a streamed response, a response that varies on a header not
  in `vary` (or on Cookie, or `*`), one that says no-store, no-cache or
  private (without a user), and one whose request touched the session,
  unless `per_user` is on, or carried Authorization, unless `per_user`
  named a user.
- Every answer carries Cache-Control (public, or private for a user),
  max-age no longer than what is left of the TTL, Age, ETag, Last-Modified
  and X-Cache: HIT, MISS (rendered by this request), UPDATING (this request
  re-rendered an expired page), STALE (the expired page, served during the
  grace while another worker renders it, or because the re-render failed).
- If-None-Match / If-Modified-Since get a 304 from the validators alone: the
  headers and the body are two entries, and a 304 or a HEAD never reads the
  body.
- A miss or an expired page takes the fill lease of lmc.Cache.get_lease: one
  worker renders, the others get the stale page during the grace or wait.
"""
import atexit
import datetime as _dt
import hashlib
import json
import os
import threading
import time
import typing as _t
import weakref
import functools
from functools import wraps
from urllib.parse import quote, urlencode

import flask
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date, parse_etags, unquote_etag

from ._lmc import Cache, Error

from ._lmc import LEASE_FILL, LEASE_HIT, LEASE_REFRESH, LEASE_STALE, LEASE_TIMEOUT

__all__ = ["HttpCache"]

# Headers of a response that are stored and replayed; everything else (first
# of all Set-Cookie) reaches only the request that rendered the page.
STORED_HEADERS = (
    "Content-Type",
    "Content-Language",
    "Content-Encoding",
    "Vary",
    "ETag",
    "Last-Modified",
    "Location",
    "Cache-Control",
)
_STORED_LOWER = frozenset(h.lower() for h in STORED_HEADERS)
# ... of which these are replayed as the view gave them.
_REPLAYED = _STORED_LOWER - {"vary", "etag", "last-modified", "cache-control"}
_KIND = {"HIT": "hit", "MISS": "miss", "STALE": "stale", "UPDATING": "updating"}

# The largest key lmc stores; a longer one (a huge query string) is served
# uncached.
_MAX_KEY = 65536

# A body entry outlives the headers entry that names it by this much, so that
# a body is never missing while its headers can still be served.
_BODY_SLACK = 60.0

# Characters left as they are when a path is put into a key.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"

STATS_PREFIX = "lmc-http-stats/"
STAT_KINDS = ("hit", "miss", "stale", "updating", "not_modified", "uncached")

_RECORD_VERSION = 2


# Every HttpCache, for the fork and exit hooks (weakly: an instance that is
# no longer used goes away).
_INSTANCES: "weakref.WeakSet[HttpCache]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for h in list(_INSTANCES):
        h._forked()


def _at_exit() -> None:
    for h in list(_INSTANCES):
        h._flush_at_exit()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)


@functools.lru_cache(maxsize=4096)
def _quote_path(raw: bytes) -> str:
    return quote(raw, safe=_PATH_SAFE)


def _now() -> float:
    return time.time()


class _Entry:
    """A stored page's header record (the body is a separate entry).

    headers are the stored headers that are replayed as they are (the
    allow-list less Vary, ETag, Last-Modified and Cache-Control, which each
    answer writes); vary is the Vary header; cap the view's own max-age (or
    None) and cc_extra the other directives of its Cache-Control (such as
    must-revalidate), worked out once when the page is stored."""

    __slots__ = ("status", "headers", "vary", "cap", "cc_extra", "etag", "stored_at", "ttl",
                 "grace", "length", "last_modified", "validators", "validators_304")

    @classmethod
    def decode(cls, raw: _t.Optional[bytes]) -> _t.Optional["_Entry"]:
        if not raw:
            return None
        return _decode(raw)

    @classmethod
    def _decode(cls, raw: bytes) -> _t.Optional["_Entry"]:
        try:
            d = json.loads(raw)
            if d[0] != _RECORD_VERSION:
                return None
            e = cls()
            (_, e.status, h, e.vary, e.cap, e.cc_extra, e.etag, e.stored_at, e.ttl, e.grace,
             e.length, e.last_modified) = d
            e.headers = [(str(k), str(v)) for k, v in h]
            if not (isinstance(e.status, int) and isinstance(e.etag, str)
                    and isinstance(e.vary, str) and isinstance(e.cc_extra, str)
                    and isinstance(e.length, int) and isinstance(e.last_modified, int)
                    and (e.cap is None or isinstance(e.cap, int))):
                return None
            e.stored_at, e.ttl, e.grace = float(e.stored_at), float(e.ttl), float(e.grace)
            e.set_validators()
            return e
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None  # not a record of this module: treated as a miss

    def set_validators(self) -> None:
        """The headers every answer of this record carries as they are: all
        of them with a body or for HEAD, ETag and Vary with a 304."""
        self.validators_304 = [("ETag", self.etag)]
        if self.vary:
            self.validators_304.append(("Vary", self.vary))
        self.validators = self.validators_304 + [
            ("Last-Modified", http_date(self.last_modified))]

    def encode(self) -> bytes:
        return json.dumps(
            [_RECORD_VERSION, self.status, self.headers, self.vary, self.cap, self.cc_extra,
             self.etag, self.stored_at, self.ttl, self.grace, self.length, self.last_modified],
            separators=(",", ":"),
        ).encode()


# A hit decodes the same few hundred bytes again and again: the records are
# immutable, so the decoded ones are kept (by value, so a new version of a
# page is a new record).
_decode = functools.lru_cache(maxsize=1024)(_Entry._decode)

# What werkzeug strips from every 304 (werkzeug.http's entity headers, less
# the two it keeps).
_ENTITY_HEADERS = frozenset(("allow", "content-encoding", "content-language", "content-length",
                             "content-md5", "content-range", "content-type", "last-modified"))


@functools.lru_cache(maxsize=None)
def _not_modified_class(response_class):
    """The app's response class for the 304s of this module.

    werkzeug makes a 304 cost more than a hit of a 2 KB page: its
    get_wsgi_headers copies the headers (validating each again), then strips
    the entity headers in a second copy, work a 304 built from stored
    validators does not need.  This does the same stripping in one pass, and
    leaves a 304 with a Location or Content-Location header (which werkzeug
    rewrites) to werkzeug."""

    class NotModified(response_class):
        def get_wsgi_headers(self, environ):
            kept = []
            for k, v in self.headers.items():
                lk = k.lower()
                if lk in _ENTITY_HEADERS:
                    continue
                if lk == "location" or lk == "content-location":
                    return super().get_wsgi_headers(environ)
                kept.append((k, v))
            return Headers(kept)

    NotModified.__name__ = NotModified.__qualname__ = f"NotModified{response_class.__name__}"
    return NotModified


# Directives of a view's Cache-Control that every answer writes itself.
_CC_OWN = frozenset(("public", "private", "max-age", "s-maxage", "stale-while-revalidate",
                     "no-cache", "no-store"))


class _Policy:
    """The arguments of one cached_response."""

    def __init__(self, timeout, grace, query, vary, per_user, statuses, max_age,
                 error_timeout):
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"cached_response: timeout must be seconds > 0, not {timeout!r}")
        if not (isinstance(grace, (int, float)) and grace >= 0):
            raise ValueError(f"cached_response: grace must be seconds >= 0, not {grace!r}")
        if isinstance(query, str) or isinstance(vary, str):
            raise TypeError("cached_response: query and vary are tuples of names, not one str")
        self.timeout = float(timeout)
        self.grace = float(grace)
        self.query = None if query is None else frozenset(query)
        # Header names as given (for the Vary header) and lowered (to compare).
        self.vary = tuple(vary)
        self.vary_lower = tuple(v.lower() for v in self.vary)
        if "cookie" in self.vary_lower:
            raise ValueError("cached_response: vary=('Cookie',) caches one page per cookie "
                             "jar; use per_user= to key pages on the user")
        self.per_user = per_user
        self.statuses = frozenset(int(s) for s in statuses)
        self.max_age = max_age
        self.error_timeout = error_timeout

    def ttl_for(self, status: int) -> float:
        if status >= 400:
            return min(self.timeout, self.error_timeout)
        return self.timeout


class HttpCache:
    """Cached HTTP responses for Flask, shared by every worker of the host.

    HttpCache(app=None, path=None, **options); with app=None call
    init_app(app) later (path then comes from the config key LMC_HTTP_PATH
    when not given here).  Options:

    - cache: an open lmc.Cache to use instead of opening `path`; also
      accepted: lmc.cachelib.LmcCache, lmc.flask_caching.LmcCache, or a
      flask_caching.Cache whose backend is lmc (its handle is shared);
    - map_size, mode, max_readers: for lmc.Cache when it opens `path`;
    - key_prefix ("http/"): every key starts with it;
    - lease_time (30 s): how long a render may take before another worker
      takes the lease over;
    - wait (10 s): how long a request waits for another worker's render of
      a page it has no stale copy of, before rendering it uncached itself;
    - error_timeout (30 s): the TTL of stored 4xx pages is at most this;
    - stats_interval (1 s): how often a worker adds its per-view counters
      to the shared ones (never a write per request).
    """

    def __init__(self, app=None, path=None, **options):
        self.path = path
        self.key_prefix = options.pop("key_prefix", "http/")
        self.lease_time = float(options.pop("lease_time", 30.0))
        self.wait = float(options.pop("wait", 10.0))
        self.error_timeout = float(options.pop("error_timeout", 30.0))
        self.stats_interval = float(options.pop("stats_interval", 1.0))
        given = options.pop("cache", None)
        self._given = None if given is None else self._handle_of(given)
        self._open_options = {k: options.pop(k) for k in ("map_size", "mode", "max_readers")
                              if k in options}
        if options:
            raise TypeError(f"HttpCache: unknown options {sorted(options)}")
        if not isinstance(self.key_prefix, str) or not self.key_prefix:
            raise ValueError("HttpCache: key_prefix must be a non-empty str")
        self._cache: _t.Optional[Cache] = self._given
        self._lock = threading.Lock()
        self._pending: _t.Dict[_t.Tuple[str, str], int] = {}
        self._last_flush = time.monotonic()
        _INSTANCES.add(self)
        if app is not None:
            self.init_app(app)

    # -- setup --------------------------------------------------------------

    @staticmethod
    def _handle_of(obj) -> Cache:
        if isinstance(obj, Cache):
            return obj
        inner = getattr(obj, "lmc", None)  # lmc.cachelib.LmcCache and the Flask-Caching one
        if isinstance(inner, Cache):
            return inner
        backend = getattr(obj, "cache", None)  # flask_caching.Cache
        inner = getattr(backend, "lmc", None)
        if isinstance(inner, Cache):
            return inner
        raise TypeError(f"HttpCache: cache= must be an lmc cache, not {type(obj).__name__}")

    def init_app(self, app) -> None:
        if self._given is not None:
            cache = self._given
        else:
            path = self.path or app.config.get("LMC_HTTP_PATH")
            if not path:
                raise ValueError("HttpCache needs a path, or LMC_HTTP_PATH in the app's config")
            opts = dict(self._open_options)
            opts.setdefault("map_size", app.config.get("LMC_HTTP_MAP_SIZE", 0))
            cache = Cache(path, **opts)
        app.extensions.setdefault("lmc.flask", {})[id(self)] = cache
        if self._cache is None:
            self._cache = cache

    def _cache_now(self) -> Cache:
        app = flask.current_app._get_current_object() if flask.has_app_context() else None
        if app is not None:
            c = app.extensions.get("lmc.flask", {}).get(id(self))
            if c is not None:
                return c
        if self._cache is None:
            raise RuntimeError("HttpCache has no cache yet: call init_app(app)")
        return self._cache

    @property
    def cache(self) -> Cache:
        """The lmc.Cache of the current app (or of the first app)."""
        return self._cache_now()

    # -- keys ---------------------------------------------------------------

    def _path_key(self, quoted_path: str) -> str:
        return f"{self.key_prefix}GET {quoted_path}"

    def _key(self, req, pol: _Policy, user) -> _t.Optional[bytes]:
        environ = req.environ
        raw_path = environ.get("PATH_INFO", "").encode("latin-1", "replace")
        if environ.get("QUERY_STRING") and pol.query != frozenset():
            args = req.args.items(multi=True)
            if pol.query is not None:
                args = [(k, v) for k, v in args if k in pol.query]
            query = urlencode(sorted(args))
        else:
            query = ""
        vary = "&".join(quote(req.headers.get(h, ""), safe="") for h in pol.vary) \
            if pol.vary else ""
        who = "-" if user is None else "u=" + quote(str(user), safe="")
        key = f"{self._path_key(_quote_path(raw_path))}\0{query}\0{vary}\0{who}".encode()
        # + room for the body entry's suffix
        return key if len(key) + 80 <= _MAX_KEY else None

    @staticmethod
    def _body_key(key: bytes, etag: str) -> bytes:
        return key + b"\0b" + etag.encode()

    def invalidate_path(self, prefix: str, exact: bool = False) -> int:
        """Remove every stored variant (query, Vary values, users, HEAD too) of
        every page whose path starts with `prefix`, for all workers; with
        exact=True only the pages of that one path.  A render under way for
        such a page is not stored.  Returns the number of entries removed (a
        page is two: its headers and its body)."""
        if not isinstance(prefix, str):
            raise TypeError("invalidate_path: prefix must be a str path such as '/items/'")
        k = self._path_key(_quote_path(prefix.encode("utf-8")))
        if exact:
            k += "\0"
        return self._cache_now().delete_prefix(k)

    def invalidate_user(self, user) -> int:
        """Remove every page stored for this user (per_user views).  This walks
        the keys of all cached pages (a user is the last part of a key, so
        that invalidate_path stays one prefix deletion)."""
        cache = self._cache_now()
        who = ("u=" + quote(str(user), safe="")).encode()
        n = 0
        for k in cache.keys(self.key_prefix.encode() + b"GET "):
            # path \0 query \0 vary \0 user [\0 b<etag> for a body]
            parts = k.split(b"\0")
            if len(parts) >= 4 and parts[3] == who and cache.delete(k):
                n += 1
        return n

    # -- per-view counters --------------------------------------------------

    def _count(self, endpoint: str, kind: str, also: _t.Optional[str] = None) -> None:
        """Count one answer of kind (and of `also`, a 304's not_modified, in
        the same turn of the lock)."""
        with self._lock:
            pending = self._pending
            k = (endpoint, kind)
            pending[k] = pending.get(k, 0) + 1
            if also is not None:
                k = (endpoint, also)
                pending[k] = pending.get(k, 0) + 1
            due = time.monotonic() - self._last_flush >= self.stats_interval
        if due:
            self.flush_stats()

    def _forked(self) -> None:
        """In a child made by fork: the parent's pending counts are not ours."""
        self._lock = threading.Lock()
        self._pending = {}

    def flush_stats(self) -> None:
        """Add this worker's counts to the shared ones now (one incr per
        counter that moved)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not pending:
            return
        cache = self._cache_now()
        try:
            for (endpoint, kind), n in pending.items():
                cache.incr(f"{STATS_PREFIX}{endpoint}\0{kind}", n, timeout=0)
        except Error:
            pass  # counters are best effort; the page was served

    def _flush_at_exit(self) -> None:
        try:
            if self._cache is not None:
                self.flush_stats()
        except Exception:
            pass

    def stats(self) -> _t.Dict[str, _t.Dict[str, int]]:
        """{endpoint: {hit, miss, stale, updating, not_modified, uncached}} of
        all workers (what they flushed) plus this worker's pending counts."""
        cache = self._cache_now()
        out: _t.Dict[str, _t.Dict[str, int]] = {}
        for k in cache.keys(STATS_PREFIX.encode()):
            endpoint, _, kind = k[len(STATS_PREFIX):].decode("utf-8", "replace").partition("\0")
            v = cache.get(k)
            if v is not None and kind in STAT_KINDS:
                out.setdefault(endpoint, dict.fromkeys(STAT_KINDS, 0))[kind] = int(v)
        with self._lock:
            for (endpoint, kind), n in self._pending.items():
                out.setdefault(endpoint, dict.fromkeys(STAT_KINDS, 0))[kind] += n
        return out

    # -- the decorator ------------------------------------------------------

    def cached_response(self, timeout, grace=0, query=None, vary=(), per_user=None,
                        statuses=(200, 203, 301, 404), *, max_age=None):
        """Cache the view's responses for `timeout` seconds (4xx at most
        error_timeout), then serve them stale for `grace` more seconds while
        one worker renders the page again.

        query: None = every query argument, sorted; a tuple = only those.
        vary: request headers whose values select a variant (also sent as Vary).
        per_user: a function returning the user id or None (anonymous); pages
        of a user are keyed on them and sent Cache-Control: private.
        statuses: the statuses stored.  max_age: an upper bound of the
        max-age sent to browsers (default: what is left of the TTL).
        """
        pol = _Policy(timeout, grace, query, vary, per_user, statuses, max_age,
                      self.error_timeout)

        def decorate(view):
            @wraps(view)
            def wrapper(*args, **kwargs):
                return self._serve(pol, view, args, kwargs)

            return wrapper

        return decorate

    # -- serving ------------------------------------------------------------

    def _get_lease(self, cache, key):
        return cache.get_lease(key, lease_time=self.lease_time, wait=self.wait)

    def _serve(self, pol: _Policy, view, args, kwargs):
        req = flask.request._get_current_object()  # one proxy lookup, not one per use
        endpoint = req.endpoint or view.__name__
        if req.method not in ("GET", "HEAD"):
            return view(*args, **kwargs)
        user = pol.per_user() if pol.per_user is not None else None
        if user is None and "HTTP_AUTHORIZATION" in req.environ:
            self._count(endpoint, "uncached")
            return self._uncached(view, args, kwargs)
        key = self._key(req, pol, user)
        if key is None:
            self._count(endpoint, "uncached")
            return self._uncached(view, args, kwargs)
        cache = self._cache_now()
        try:
            if req.method == "HEAD":
                # A HEAD never renders into the GET entry (the view may answer
                # a HEAD differently); it is answered from a fresh GET entry.
                e = _Entry.decode(cache.get(key))
                if e is not None:
                    return self._answer(cache, pol, endpoint, key, e, "HIT", user)
                self._count(endpoint, "uncached")
                return self._uncached(view, args, kwargs)
            outcome, raw, lease = self._get_lease(cache, key)
        except Error:
            self._count(endpoint, "uncached")
            return self._uncached(view, args, kwargs)

        if outcome in (LEASE_HIT, LEASE_STALE):
            e = _Entry.decode(raw)
            if e is not None:
                r = self._answer(cache, pol, endpoint, key, e,
                                 "HIT" if outcome == LEASE_HIT else "STALE", user)
                if r is not None:
                    return r
            # A record that is not ours, or a body gone: drop it, render.
            try:
                cache.delete(key)
            except Error:
                pass
            self._count(endpoint, "uncached")
            return self._uncached(view, args, kwargs)

        if outcome == LEASE_TIMEOUT:
            self._count(endpoint, "uncached")
            return self._uncached(view, args, kwargs)

        # FILL or REFRESH: this worker holds the lease and renders.
        stale = _Entry.decode(raw) if outcome == LEASE_REFRESH else None
        try:
            resp = self._render(view, args, kwargs)
        except Exception:
            self._abandon(lease)
            if stale is not None:
                r = self._answer(cache, pol, endpoint, key, stale, "STALE", user)
                if r is not None:
                    return r
            raise
        if stale is not None and resp.status_code >= 500:
            # An error page does not replace a stale page (stale-if-error).
            self._abandon(lease)
            r = self._answer(cache, pol, endpoint, key, stale, "STALE", user)
            if r is not None:
                return r
            return resp
        why = self._unstorable(pol, resp, user)
        if why is not None:
            self._abandon(lease)
            self._count(endpoint, "uncached")
            return self._mark_uncached(resp, why)
        e, body = self._record(pol, resp)
        stored = False
        try:
            cache.set(self._body_key(key, e.etag), body, timeout=e.ttl + e.grace + _BODY_SLACK)
            stored = lease.fill(e.encode(), timeout=e.ttl, grace=e.grace)
        except Error:
            pass
        finally:
            if not stored:
                self._abandon(lease)
        if not stored:
            # Invalidated meanwhile, or no room: the body must not linger.
            try:
                cache.delete(self._body_key(key, e.etag))
            except Error:
                pass
            self._count(endpoint, "uncached")
            return self._mark_uncached(resp, "not stored")
        xcache = "MISS" if outcome == LEASE_FILL else "UPDATING"
        return self._answer(cache, pol, endpoint, key, e, xcache, user, body=body, fresh=resp)

    @staticmethod
    def _abandon(lease) -> None:
        try:
            if lease is not None and lease.held:
                lease.abandon()
        except Error:
            pass

    @staticmethod
    def _render(view, args, kwargs):
        app = flask.current_app
        try:
            rv = view(*args, **kwargs)
        except HTTPException as e:
            rv = app.handle_http_exception(e)
        return app.make_response(rv)

    def _uncached(self, view, args, kwargs):
        return self._mark_uncached(self._render(view, args, kwargs), None)

    @staticmethod
    def _mark_uncached(resp, why):
        resp.headers["X-Cache"] = "MISS"
        if why in ("session", "cookie") and "Cache-Control" not in resp.headers:
            resp.headers["Cache-Control"] = "private"
        return resp

    @staticmethod
    def _unstorable(pol: _Policy, resp, user) -> _t.Optional[str]:
        """Why this response must not be stored, or None."""
        if resp.status_code not in pol.statuses:
            return "status"
        if resp.is_streamed or resp.direct_passthrough:
            return "streamed"
        if pol.per_user is None:
            sess = flask.session
            if getattr(sess, "accessed", True) or getattr(sess, "modified", False):
                return "session"
        for h in resp.vary:
            h = h.lower()
            if h == "*":
                return "vary"
            if h == "cookie":
                if pol.per_user is None:
                    return "cookie"
            elif h not in pol.vary_lower:
                return "vary"
        cc = resp.cache_control
        if cc.no_store or cc.no_cache or (cc.private and user is None):
            return "cache-control"
        return None

    def _record(self, pol: _Policy, resp) -> _t.Tuple[_Entry, bytes]:
        body = resp.get_data()
        now = _now()
        e = _Entry()
        e.status = resp.status_code
        e.headers = [(k, v) for k, v in resp.headers.items() if k.lower() in _REPLAYED]
        vary = list(pol.vary) + [h for h in resp.vary if h.lower() not in pol.vary_lower]
        if pol.per_user is not None and "cookie" not in (h.lower() for h in vary):
            vary.append("Cookie")
        e.vary = ", ".join(vary)
        cc = resp.cache_control
        e.cap = int(cc.max_age) if cc.max_age is not None else None
        e.cc_extra = ", ".join(
            k if v is None else f"{k}={v}" for k, v in cc.items() if k.lower() not in _CC_OWN)
        e.etag = resp.headers.get("ETag") or '"%s"' % hashlib.blake2b(body, digest_size=16).hexdigest()
        lm = resp.last_modified
        e.last_modified = int(lm.timestamp()) if lm is not None else int(now)
        e.stored_at = now
        e.ttl = pol.ttl_for(e.status)
        e.grace = pol.grace
        e.length = len(body)
        e.set_validators()
        return e, body

    def _answer(self, cache, pol, endpoint, key, e: _Entry, xcache, user, body=None,
                fresh=None):
        """The response for a stored page: 304 from the validators, HEAD
        without the body, or the page.  None when the body is gone."""
        req = flask.request._get_current_object()
        age = max(0.0, _now() - e.stored_at)
        max_age = 0 if xcache == "STALE" else max(0, int(e.ttl - age))
        if e.cap is not None:
            max_age = min(max_age, e.cap)
        browser = max_age if pol.max_age is None else min(max_age, int(pol.max_age))
        if user is not None:
            cc = f"private, max-age={browser}"
        else:
            cc = f"public, max-age={browser}, s-maxage={max_age}"
        if e.grace:
            cc += f", stale-while-revalidate={int(e.grace)}"
        if e.cc_extra:
            cc += ", " + e.cc_extra
        common = [("Cache-Control", cc), ("Age", str(int(age))), ("X-Cache", xcache)]
        kind = _KIND[xcache]
        response_class = flask.current_app.response_class

        if 200 <= e.status < 300 and self._not_modified(req, e):
            self._count(endpoint, kind, "not_modified")
            # Only ETag and Vary of the validators: werkzeug strips
            # Last-Modified from a 304 with the other entity headers, so
            # adding it would only be work undone.  content_type="" spares
            # the constructor its default type for the same reason.
            r = _not_modified_class(response_class)(status=304, headers=common + e.validators_304,
                                                    content_type="")
            self._copy_fresh(r, fresh)
            return r
        common += e.validators

        head = req.method == "HEAD"
        if body is None and not head:
            try:
                body = cache.get(self._body_key(key, e.etag))
            except Error:
                body = None
            if body is None or len(body) != e.length:
                return None
        r = response_class(b"" if head else body, status=e.status, headers=e.headers + common)
        if head:  # after the constructor, which sets the length of b""
            r.headers["Content-Length"] = str(e.length)
        self._copy_fresh(r, fresh)
        self._count(endpoint, kind)
        return r

    @staticmethod
    def _copy_fresh(r, fresh) -> None:
        """The request that rendered the page also gets the headers that are
        not stored (its own Set-Cookie among them)."""
        if fresh is None:
            return
        for k, v in fresh.headers.items():
            lk = k.lower()
            if lk not in _STORED_LOWER and lk not in ("content-length", "age", "x-cache"):
                r.headers.add(k, v)

    @staticmethod
    def _not_modified(req, e: _Entry) -> bool:
        inm = req.environ.get("HTTP_IF_NONE_MATCH")
        if inm is not None:
            if inm == e.etag:  # what a browser sends back: no parsing needed
                return True
            try:
                tag, _weak = unquote_etag(e.etag)
                return bool(tag) and parse_etags(inm).contains_weak(tag)
            except Exception:
                return False  # unparsable: answered in full
        if "HTTP_IF_MODIFIED_SINCE" not in req.environ:
            return False
        ims = req.if_modified_since
        if ims is not None:
            try:
                return _dt.datetime.fromtimestamp(e.last_modified, _dt.timezone.utc) <= ims
            except (OverflowError, ValueError, OSError):
                return False
        return False
