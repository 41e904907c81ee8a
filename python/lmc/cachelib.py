"""lmc.cachelib: a cachelib backend whose entries every worker process shares.

    from lmc.cachelib import LmcCache
    cache = LmcCache("/dev/shm/myapp", default_timeout=300, key_prefix="myapp/")
    cache.set("answer", 42)
    cache.inc("answer")          # 43, atomic across processes

LmcCache implements the whole cachelib.BaseCache API (cachelib 0.9) over one
lmc.Cache.  What it adds to cachelib's contract, and where it differs:

- Timeouts follow cachelib: None means default_timeout, 0 means never expire,
  a negative timeout means "already expired": set() removes the key and
  stores nothing, add() stores nothing.  Timeouts are seconds and may be
  floats; lmc keeps milliseconds.  A timeout longer than lmc can store
  (over 10**15 s, 31 million years), and inf, also mean never expire, as
  they do in SimpleCache; a NaN timeout raises ValueError.
- add(), inc() and dec() are atomic across processes (lmc_add, lmc_incr).
  inc() on a key that does not exist creates it with default_timeout, like
  cachelib's generic inc(); on an existing number it keeps the key's
  timeout, on the integer path and on the compare-and-swap path inc() takes
  for pickled numbers such as floats (cachelib's generic version resets it
  to the default).
- inc() gives cachelib's answer, Python's sum, whatever the numbers: past
  2**63-1 it returns 2**63 (stored pickled, decimal text again once back in
  64 bits), and a float delta or one beyond 64 bits is added like any other.
  lmc_incr does the 64-bit cases; the rest take the compare-and-swap path.
- has() is a real existence check: it reads no value and unpickles nothing.
- delete_many() deletes every key given and returns those that existed.
- Values are pickled (or JSON, see serializer= below), except plain ints
  that fit in 64 bits, which are stored as decimal text ("42") so that inc()
  works on a value set() stored, and so that other languages and the `lmc`
  command line can read counters.
  Falsy values (0, "", [], False) come back as they were stored.  None is
  stored too, but get() returns None both for it and for a miss; has() tells
  them apart, as in every cachelib backend.
- Bytes that are neither a pickle nor decimal text (written by the `lmc` CLI
  or another program) are returned as bytes instead of being dropped.
- clear() removes only the keys under key_prefix when one is set
  (lmc_delete_prefix), so several apps can share one cache; without a prefix
  it empties the whole cache.
- A key longer than lmc can store (65536 bytes of UTF-8, key_prefix
  included) is a key that is never in the cache: get() returns None, has()
  and delete() False, set() and add() False and inc() None (those three log a
  warning), set_many() stores the other keys; nothing raises.  Such keys
  often come from user input, e.g. a long URL under @cache.cached, as
  cachelib's MemcachedCache says of the keys memcached cannot hold.
- Log messages show at most the first 60 characters of a key, never a value.
- get_or_set(key, fn, timeout=None, grace=0, wait=None) computes a missing
  value once for the whole host (fill leases), see its docstring.

Security: unpickling runs code chosen by whoever wrote the entry, so anyone
who can write the cache can run code in every process that reads it.  lmc
refuses files that others can write, but a cache opened with a group mode
(e.g. 0o660) is writable by every member of the group: with the default
serializer each of them can run code in every other member's workers.  For
such a cache pass serializer="json" (LmcJSONSerializer): values are then
JSON data only, and bytes that are not JSON, a planted pickle included,
come back as bytes and are never unpickled.  LmcCache logs a warning when
the cache files are group-writable and no serializer was chosen.
"""
import json
import logging
import os
import pickle
import socket
import stat
import time
import typing as _t
import weakref

from cachelib.base import BaseCache

from ._lmc import (
    KEEP_TTL,
    Cache,
    Error,
    InvalidArgumentError,
    NotANumberError,
    RangeError,
    TooBigError,
)

logger = logging.getLogger(__name__)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
# First byte of every pickle of protocol 2 or later (the PROTO opcode).
_PICKLE_PROTO = b"\x80"
# The longest key lmc stores, in bytes (LMC_MAX_KEY in include/lmc.h).
_MAX_KEY = 65536
# Timeouts above this many seconds (31 million years) mean "never expire".
# lmc stores an expiry time as milliseconds since 1970 in a signed 64-bit
# integer, which cannot reach 9.2e15 s from now; SimpleCache stores any
# timeout, inf included, and such an entry never expires there either.
_MAX_TIMEOUT = 10 ** 15
# How long get_or_set() waits for another process's fill by default: the
# library's lease time, after which the lease is taken over anyway.
_LEASE_WAIT = 30.0


def _too_long(key: _t.Any) -> bool:
    """Whether a full key (key_prefix included) is longer than lmc stores."""
    return len(key.encode("utf-8") if isinstance(key, str) else key) > _MAX_KEY


def _brief(key: _t.Any) -> str:
    """A key as log messages show it: whole when short, otherwise its first
    60 characters and its length, so that a 70 KB key from a request cannot
    flood the log."""
    if isinstance(key, (str, bytes)) and len(key) > 80:
        unit = "characters" if isinstance(key, str) else "bytes"
        return f"{key[:60]!r}... ({len(key)} {unit})"
    return repr(key)


class LmcSerializer:
    """Pickle, except ints that fit in 64 bits, which become decimal text.

    The two forms never collide: a pickle of protocol 2 or later starts with
    the byte 0x80, decimal text with '-' or a digit.
    """

    def dumps(self, value: _t.Any) -> bytes:
        # type() and not isinstance(): bool is an int subclass, and True
        # must come back as True, not as 1.
        if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            return b"%d" % value
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def loads(self, data: _t.Optional[bytes]) -> _t.Any:
        if data is None:
            return None
        if data[:1] == _PICKLE_PROTO:
            try:
                return pickle.loads(data)
            except Exception as e:  # any damage: pickle raises many types
                # The exception's text may quote the data: only its start.
                logger.warning("lmc: cannot unpickle a cached value: %s: %.200s",
                               type(e).__name__, e)
                return None
        try:
            return int(data)
        except ValueError:
            return data


class LmcJSONSerializer:
    """JSON instead of pickle, for caches that several users share.

    Loading JSON runs no code, so a member of the group that shares the cache
    can change what it reads but cannot run code in it.  Only values that JSON
    gives back exactly are stored: None, bool, int, float (not NaN or an
    infinity), str, and lists and dicts with str keys of those.  Anything else
    (a tuple, which would come back a list; a dict with int keys, whose keys
    would come back str; bytes, sets, objects) raises TypeError, as a pickling
    error does with the pickle serializer, so that nothing changes type in the
    cache.  Ints are decimal text, so inc() and the lmc CLI work on them as
    with the pickle serializer.
    """

    _encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                               separators=(",", ":")).encode
    # Values json gives back as they were without a check: json.loads only
    # builds these types, and the encoder above refuses NaN and infinities.
    _exact = (str, int, float, bool, type(None))

    def dumps(self, value: _t.Any) -> bytes:
        if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            return b"%d" % value
        try:
            # surrogatepass: a str holding a lone surrogate comes back as it
            # was (json.loads decodes bytes the same way).
            data = self._encode(value).encode("utf-8", "surrogatepass")
            exact = type(value) in self._exact or json.loads(data) == value
        except (TypeError, ValueError) as e:
            raise TypeError(f"serializer 'json' cannot store a {type(value).__name__}: {e}") \
                from None
        if not exact:
            raise TypeError(
                f"serializer 'json' cannot store this {type(value).__name__} exactly: it holds "
                "a tuple (would come back a list) or a dict key that is not a str (would come "
                "back a str); convert it first"
            )
        return data

    def loads(self, data: _t.Optional[bytes]) -> _t.Any:
        if data is None:
            return None
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            # Not JSON (bytes from the lmc CLI or another program, or a
            # pickle, which is never unpickled here), or nested too deep to
            # parse: the bytes as they are.
            return data


_SERIALIZERS = {"pickle": LmcSerializer, "json": LmcJSONSerializer}


def _serializer(spec: _t.Any) -> _t.Any:
    if isinstance(spec, str):
        try:
            return _SERIALIZERS[spec]()
        except KeyError:
            pass
    elif callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None)):
        return spec
    raise ValueError(f"serializer must be 'pickle', 'json' or an object with dumps() and "
                     f"loads(), not {spec!r}")


class LmcCache(BaseCache):
    """A cachelib cache stored in an lmc cache shared by every process.

    :param path: the cache directory (best on tmpfs, e.g. /dev/shm/myapp), or
                 an open lmc.Cache to use.
    :param default_timeout: seconds used when a call passes timeout=None;
                            0 = never expire.
    :param key_prefix: prepended to every key; clear() removes only these.
    :param map_size: capacity in bytes when the cache is created (0 = 1 GiB).
    :param mode: permission bits of the cache files (0 = 0600).
    :param serializer: "pickle" (the default: any picklable value), "json"
                       (JSON data only, and no code runs when reading: use it
                       when several users share the cache through a group
                       mode), or an object with dumps() and loads().
    :param kwargs: more lmc.Cache options (max_readers, reset, ...).
    """

    serializer = LmcSerializer()

    def __init__(
        self,
        path: _t.Any,
        default_timeout: int = 300,
        key_prefix: _t.Optional[str] = None,
        map_size: int = 0,
        mode: int = 0,
        serializer: _t.Any = None,
        **kwargs: _t.Any,
    ):
        BaseCache.__init__(self, default_timeout)
        if default_timeout is not None and default_timeout != default_timeout:
            # NaN is the one number no timeout rule gives a meaning to; said
            # now rather than at the first write.
            raise ValueError("default_timeout is NaN; give seconds, 0 for never")
        self.key_prefix = key_prefix or ""
        # None keeps the class's serializer, so that a subclass may set one as
        # cachelib's backends do (a class attribute).
        if serializer is not None:
            self.serializer = _serializer(serializer)
        if isinstance(path, Cache):
            self.lmc = path
        else:
            self.lmc = Cache(path, map_size=map_size or 0, mode=mode or 0, **kwargs)
        if serializer is None and isinstance(self.serializer, LmcSerializer):
            self._warn_if_group_writable()

    def _warn_if_group_writable(self) -> None:
        # The files' mode, not the mode argument: a cache another member of
        # the group created with 0660 is opened with mode 0660 as well.
        path = self.lmc.info()["path"]
        try:
            st = os.stat(os.path.join(path, "data.mdb"))
        except OSError:
            return
        if st.st_mode & stat.S_IWGRP:
            logger.warning(
                "lmc: %s is writable by its group (gid %d) and values are pickled: every "
                "member of the group can run code in this process by writing an entry.  "
                "Pass serializer='json' (Flask: CACHE_LMC_SERIALIZER='json') to store JSON "
                "instead, or serializer='pickle' if every member is trusted.",
                path, st.st_gid)

    # -- helpers -----------------------------------------------------------

    def _k(self, key: str) -> str:
        return self.key_prefix + key

    def _ttl(self, timeout: _t.Optional[float]) -> _t.Optional[float]:
        """Seconds for lmc (0 = never), or None if the entry would already
        be expired, following cachelib's rules."""
        if timeout is None:
            timeout = self.default_timeout
        if timeout is None:
            return 0
        if timeout < 0:
            return None
        if timeout > _MAX_TIMEOUT:
            return 0  # inf too: never expire, as in SimpleCache
        if timeout != timeout:
            # SimpleCache would store an entry that can never be read.
            raise ValueError("timeout is NaN; give seconds, 0 for never, or None for "
                             "the default")
        return timeout

    @staticmethod
    def _backend_error(what: str, key: _t.Any, e: Error) -> None:
        # cachelib reports backend failures as a False/None result, not as an
        # exception; a bad argument (e.g. an empty key) is still raised,
        # because it is a bug in the caller, not a state of the backend.
        if isinstance(e, InvalidArgumentError):
            raise e
        logger.warning("lmc: %s %s failed: %s", what, _brief(key), e)

    def _delete(self, k: _t.Any) -> bool:
        # A key too long to store cannot be in the cache: nothing to delete.
        try:
            return self.lmc.delete(k)
        except TooBigError:
            return False

    # -- reads -------------------------------------------------------------

    def get(self, key: str) -> _t.Any:
        # The hot path of every cached view: _k() inlined.  A read fails with
        # TooBigError only for a key too long to store, which is a miss.
        try:
            return self.serializer.loads(self.lmc.get(self.key_prefix + key))
        except TooBigError:
            return None

    def get_many(self, *keys: str) -> _t.List[_t.Any]:
        # One read transaction: the values come from one snapshot.
        loads = self.serializer.loads
        full = [self._k(k) for k in keys]
        try:
            return [loads(v) for v in self.lmc.get_many(full)]
        except TooBigError:
            pass
        # Some key is too long to store: it is a miss, and the others are
        # still read in one snapshot.
        short = [k for k in full if not _too_long(k)]
        found = dict(zip(short, self.lmc.get_many(short)))
        return [loads(found.get(k)) for k in full]

    def get_or_set(self, key: str, fn: _t.Callable[[], _t.Any],
                   timeout: _t.Optional[float] = None, grace: float = 0,
                   wait: _t.Optional[float] = None) -> _t.Any:
        """The value under key; when it is missing, fn() computes it once for
        every process on the host (lmc fill leases), and it is stored with
        timeout (cachelib's rules, in seconds) and grace (seconds during
        which, past the timeout, the stale value is returned at once while one
        caller refreshes it).  Callers that find another one computing wait
        for its value, at most wait seconds (None = the lease time, 30 s),
        then compute it themselves without storing it.  fn() returning None
        stores nothing (None reads like a miss); fn() raising gives the
        lease to the next caller and the exception propagates.  A fresh hit
        costs what get() costs.  Not part of cachelib's API."""
        k = self.key_prefix + key
        ttl = self._ttl(timeout)
        loads = self.serializer.loads
        try:
            raw = self.lmc.get(k)
        except TooBigError:
            return fn()  # a key lmc cannot store: never cached
        if raw is not None:
            return loads(raw)
        if ttl is None:
            return fn()  # a negative timeout: expired at once, never stored
        try:
            outcome, raw, lease = self.lmc.get_lease(
                k, wait=_LEASE_WAIT if wait is None else wait)
        except Error as e:
            # A read-only handle, say: compute, as a miss of get() would.
            self._backend_error("get_or_set", key, e)
            return fn()
        if lease is None:
            # A value (after waiting, or stale while another refreshes it),
            # or the holder did not fill within wait: computed, not stored.
            return loads(raw) if raw is not None else fn()
        with lease:  # fn() raising or returning None abandons the lease
            value = fn()
            if value is not None:
                data = self.serializer.dumps(value)
                try:
                    lease.fill(data, ttl, grace)
                except Error as e:
                    self._backend_error("get_or_set", key, e)
        return value

    def has(self, key: str) -> bool:
        try:
            return self.lmc.has(self._k(key))
        except TooBigError:
            return False

    # -- writes ------------------------------------------------------------

    def set(self, key: str, value: _t.Any, timeout: _t.Optional[int] = None) -> bool:
        data = self.serializer.dumps(value)
        ttl = self._ttl(timeout)
        k = self._k(key)
        try:
            if ttl is None:
                self._delete(k)
            else:
                self.lmc.set(k, data, ttl)
        except Error as e:
            self._backend_error("set", key, e)
            return False
        return True

    def add(self, key: str, value: _t.Any, timeout: _t.Optional[int] = None) -> bool:
        data = self.serializer.dumps(value)
        ttl = self._ttl(timeout)
        k = self._k(key)
        try:
            if ttl is None:
                # Stored and expired at once: it "succeeds" only where a
                # real add would have, and leaves nothing behind.
                return not self.has(key)
            return self.lmc.add(k, data, ttl)
        except Error as e:
            self._backend_error("add", key, e)
            return False

    def set_many(
        self, mapping: _t.Dict[str, _t.Any], timeout: _t.Optional[int] = None
    ) -> _t.List[_t.Any]:
        keys = list(mapping.keys())
        ttl = self._ttl(timeout)
        try:
            if ttl is None:
                for key in keys:
                    self._delete(self._k(key))
                return keys
            dumps = self.serializer.dumps
            items = [(self._k(k), dumps(mapping[k])) for k in keys]
            try:
                # One transaction: every key is set, or (on an error) none.
                self.lmc.set_many(items, ttl)
                return keys
            except TooBigError:
                # A key too long to store is never stored, as in set(); the
                # others still go in one transaction.  If no key is too long,
                # a value is too big for the cache: re-raised below.
                stored = [(key, item) for key, item in zip(keys, items)
                          if not _too_long(item[0])]
                if len(stored) == len(keys):
                    raise
                logger.warning("lmc: set_many: %d of %d keys are longer than lmc stores "
                               "(%d bytes), the first %s", len(keys) - len(stored), len(keys),
                               _MAX_KEY, _brief(next(k for k, i in zip(keys, items)
                                                     if _too_long(i[0]))))
                self.lmc.set_many([item for _, item in stored], ttl)
                return [key for key, _ in stored]
        except Error as e:
            self._backend_error(f"set_many of {len(keys)} keys, the first",
                                keys[0] if keys else None, e)
            return []

    def delete(self, key: str) -> bool:
        return self._delete(self._k(key))

    def delete_many(self, *keys: str) -> _t.List[_t.Any]:
        # Every key is deleted; the result lists the keys that existed.
        return [key for key in keys if self._delete(self._k(key))]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with prefix (after key_prefix);
        returns how many were removed.  Not part of cachelib's API."""
        full = self._k(prefix)
        if not full:
            raise ValueError("delete_prefix() needs a prefix; use clear()")
        return self.lmc.delete_prefix(full)

    def clear(self) -> bool:
        # A flush: every worker misses the keys at once, whatever their
        # number, and the sweeper deletes them later.
        try:
            self.lmc.flush_prefix(self.key_prefix)
        except Error as e:
            self._backend_error("clear", self.key_prefix, e)
            return False
        return True

    def inc(self, key: str, delta: int = 1) -> _t.Optional[int]:
        k = self._k(key)
        ttl = self._ttl(None) or 0
        try:
            # type() and not isinstance(): a bool delta goes the generic way,
            # where True + 1 is 2 as in cachelib.
            if type(delta) is int and _INT64_MIN <= delta <= _INT64_MAX:
                try:
                    return self.lmc.incr(k, delta, ttl)
                except (NotANumberError, RangeError):
                    # Not decimal text (a pickled float or big int), or a sum
                    # beyond 64 bits: Python's arithmetic gives the answer.
                    pass
            return self._inc_cas(k, delta, ttl)
        except Error as e:
            self._backend_error("inc", key, e)
            return None

    def dec(self, key: str, delta: int = 1) -> _t.Optional[int]:
        return self.inc(key, -delta)

    def _inc_cas(self, k: _t.Any, delta: _t.Any, ttl: float) -> _t.Any:
        """What cachelib's generic inc() does, made atomic with a
        compare-and-swap loop instead of a plain get and set."""
        dumps, loads = self.serializer.dumps, self.serializer.loads
        for _ in range(1000):
            got = self.lmc.get_cas(k)
            if got is None:
                # Absent: created from 0 with the timeout of a new key, unless
                # another process creates it first (then try again).
                value = 0 + delta
                if self.lmc.add(k, dumps(value), ttl):
                    return value
                continue
            raw, version = got
            # cachelib's rule: a falsy value counts as 0; a value that does
            # not support + raises TypeError, as in SimpleCache.
            value = (loads(raw) or 0) + delta
            # The entry keeps its expiry time, as lmc_incr does on the integer
            # path, so that a counter with a timeout (a rate-limit window)
            # behaves the same whatever number type it holds.
            if self.lmc.cas(k, dumps(value), version, KEEP_TTL):
                return value
        raise Error("inc(): the value kept changing under 1000 compare-and-swap attempts")


# ---------------------------------------------------------------------------
# Two levels: lmc as this host's L1 in front of a Redis that hosts share
# ---------------------------------------------------------------------------

# Where lmc-redis-sync says, in the cache itself, that it keeps a prefix
# coherent (a JSON entry with a TTL of three heartbeats; tools/lmc-redis-sync.c).
SYNC_STATUS_KEY = "lmc-redis-sync/status/"

# How much a read of a GET reply asks the socket for at first (redis-py's
# socket_read_size); a value known to be larger is read in one call.
_READ_SIZE = 65536

# Every LmcRedisCache, so that a child made by fork() drops the connections
# it inherited (weakly: a backend no longer used goes away).
_REDIS_BACKENDS: "weakref.WeakSet[LmcRedisCache]" = weakref.WeakSet()


def _redis_after_fork_in_child() -> None:
    for b in list(_REDIS_BACKENDS):
        b._forked()


os.register_at_fork(after_in_child=_redis_after_fork_in_child)


def _packed_get(kb: bytes, pttl: bool) -> bytes:
    """GET of one key, and PTTL after it when asked, in RESP2: what
    redis-py's pack_command would give, without its generic work."""
    n = b"%d" % len(kb)
    if pttl:
        return b"".join((b"*2\r\n$3\r\nGET\r\n$", n, b"\r\n", kb,
                         b"\r\n*2\r\n$4\r\nPTTL\r\n$", n, b"\r\n", kb, b"\r\n"))
    return b"".join((b"*2\r\n$3\r\nGET\r\n$", n, b"\r\n", kb, b"\r\n"))


class _Replies:
    """The replies to one _packed_get, read from the socket with as few
    recv() calls as the bytes allow (one for a value that fits in the first
    read).  redis-py's parser reads a reply through a BytesIO, a line at a
    time, and polls the socket once more when it takes a connection from its
    pool; for a GET that is most of what the client spends."""

    __slots__ = ("sock", "buf", "pos", "error")

    def __init__(self, sock: _t.Any):
        self.sock = sock
        self.buf: _t.Any = b""
        self.pos = 0

    def _more(self, need: int = 0) -> None:
        """Read at least one more byte, and at least `need` bytes when known."""
        try:
            data = self.sock.recv(max(_READ_SIZE, need))
        except socket.timeout:
            from redis.exceptions import TimeoutError

            raise TimeoutError("Timeout reading from socket") from None
        except OSError as e:
            from redis.exceptions import ConnectionError

            raise ConnectionError(f"Error while reading from socket: {e}") from None
        if not data:
            from redis.exceptions import ConnectionError

            raise ConnectionError("Connection closed by server.")
        if self.buf:
            if type(self.buf) is bytes:  # a second read: grow in place from now on
                self.buf = bytearray(self.buf)
            self.buf += data
        else:
            self.buf = data

    def _line(self) -> _t.Tuple[bytes, int]:
        """The type byte and the rest of the next reply line, as an int."""
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                break
            self._more()
        kind = self.buf[self.pos:self.pos + 1]
        head = bytes(self.buf[self.pos + 1:i])
        self.pos = i + 2
        if kind in (b"$", b":"):
            try:
                return kind, int(head)
            except ValueError:
                pass
        elif kind == b"-":
            self.error = head.decode("utf-8", "replace")
            return kind, 0
        elif kind == b"_" and not head:
            return b"$", -1  # RESP3's null (a connection that said HELLO 3)
        from redis.exceptions import InvalidResponse

        raise InvalidResponse(f"Protocol Error: {kind + head!r}")

    def value(self) -> _t.Tuple[_t.Optional[bytes], _t.Optional[str]]:
        """A bulk string reply: (the bytes or None, None), or (None, the
        error's text) for an error reply such as WRONGTYPE."""
        kind, n = self._line()
        if kind == b"-":
            return None, self.error
        if kind != b"$":
            from redis.exceptions import InvalidResponse

            raise InvalidResponse(f"Protocol Error: a {kind!r} reply to GET")
        if n < 0:
            return None, None
        end = self.pos + n
        while len(self.buf) < end + 2:
            self._more(end + 2 - len(self.buf))
        if type(self.buf) is bytes:
            v = self.buf[self.pos:end]
        else:
            v = bytes(memoryview(self.buf)[self.pos:end])
        self.pos = end + 2
        return v, None

    def integer(self) -> _t.Tuple[int, _t.Optional[str]]:
        """An integer reply: (n, None), or (0, the error's text)."""
        kind, n = self._line()
        if kind == b"-":
            return 0, self.error
        if kind != b":":
            from redis.exceptions import InvalidResponse

            raise InvalidResponse(f"Protocol Error: a {kind!r} reply to PTTL")
        return n, None

    def done(self) -> None:
        """Every byte read was part of these replies (else the connection
        is out of step and must not be used again).  Bytes still to arrive
        cannot be seen here; Redis sends nothing but the replies."""
        if self.pos != len(self.buf):
            from redis.exceptions import InvalidResponse

            raise InvalidResponse("Protocol Error: more bytes than the replies")


def _glob_escape(s: str) -> str:
    """s as a literal in a Redis MATCH pattern."""
    out = []
    for ch in s:
        if ch in "*?[]\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)


class LmcRedisSerializer(LmcSerializer):
    """The values of cachelib's and Flask-Caching's RedisCache: b"!" and a
    pickle, so that services still on RedisCache read what this backend
    writes and the other way round; ints that fit in 64 bits are decimal text
    (which RedisCache reads as ints, and which Redis's INCRBY works on).  A
    bare pickle (LmcCache's form) is read too."""

    def dumps(self, value: _t.Any) -> bytes:
        if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            return b"%d" % value
        return b"!" + pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def loads(self, data: _t.Optional[bytes]) -> _t.Any:
        if data is not None and data[:1] == b"!":
            data = data[1:]
            if data[:1] != _PICKLE_PROTO:
                logger.warning("lmc: a value starting with '!' holds no pickle")
                return None
        return LmcSerializer.loads(self, data)


class LmcRedisCache(BaseCache):
    """A cachelib cache in Redis, with this host's lmc cache as its L1.

    :param redis_url: the Redis every host shares: redis://HOST:PORT/DB,
                      unix:///run/redis.sock, or anything redis.from_url takes
                      (a password belongs in the URL or in redis_options, never
                      in code under version control).
    :param path: this host's lmc cache directory (e.g. /dev/shm/myapp), or an
                 open lmc.Cache.
    :param key_prefix: prepended to every key, in Redis and in the L1.
    :param sync_prefix: the prefix lmc-redis-sync tracks for this app
                        (--prefix); it must be a prefix of key_prefix.
                        Default: key_prefix.
    :param require_sync: True (the default): read and fill the L1 only while
                         lmc-redis-sync reports that it keeps sync_prefix
                         coherent; otherwise every get reads Redis.  False:
                         always use the L1 (coherent only with the sidecar).
    :param l1_max_timeout: the longest an entry lives in the L1, in seconds,
                           for keys that have no TTL in Redis (0: as long as
                           in Redis).  Default: default_timeout.
    :param status_interval: how often, in seconds, to look at the sidecar's
                            status entry (default 0.1).
    :param lease_wait: how long, in seconds, a get that misses waits for
                       another worker of this host that is reading the same
                       key from Redis (a fill lease: one Redis read per key
                       and host), before it reads Redis itself (default 1;
                       0: never wait).
    :param redis: a redis.Redis client to use instead of redis_url.

    get() reads the L1, then Redis (GET and PTTL in one round trip), and fills
    the L1 with at most the TTL the key has left in Redis, under a fill lease:
    one worker of the host reads a missing key from Redis, the others wait for
    its fill, and an invalidation of the key in between ends the lease, so
    that a value read before it is never stored after it.  get_many() fills
    through lmc_set_if_gen, which refuses the same way.  set(), add(), delete(), inc() write Redis first,
    then delete the key from the L1 (never put: a put would race with other
    writers).  delete_prefix() and clear() remove the keys from Redis with
    SCAN and UNLINK in batches (never KEYS); the sidecar of every host sees
    each removal.  Values are those of LmcCache's serializer, so ints are
    decimal text in Redis too and inc() is Redis's INCRBY; other values are
    stored as cachelib's RedisCache stores them (LmcRedisSerializer), so both
    backends read each other's values.  Bytes in Redis that neither writes
    (another service's value) come back as bytes; a damaged pickle is logged
    and reads as a miss.

    Redis errors follow cachelib's rule: logged, and a miss or False; a get
    never serves the L1 when Redis is down, since the sidecar then cannot
    keep it coherent (and flushes it).  Counters of what happened are in
    self.counts.
    """

    serializer = LmcRedisSerializer()

    def __init__(
        self,
        redis_url: _t.Optional[str] = None,
        path: _t.Any = None,
        default_timeout: int = 300,
        key_prefix: _t.Optional[str] = None,
        sync_prefix: _t.Optional[str] = None,
        require_sync: bool = True,
        l1_max_timeout: _t.Optional[float] = None,
        status_interval: float = 0.1,
        lease_wait: float = 1.0,
        map_size: int = 0,
        mode: int = 0,
        serializer: _t.Any = None,
        redis: _t.Any = None,
        redis_options: _t.Optional[_t.Dict[str, _t.Any]] = None,
        **kwargs: _t.Any,
    ):
        BaseCache.__init__(self, default_timeout)
        if path is None:
            raise ValueError("LmcRedisCache needs path, this host's lmc cache directory")
        self.key_prefix = key_prefix or ""
        self.sync_prefix = self.key_prefix if sync_prefix is None else sync_prefix
        if not self.key_prefix.startswith(self.sync_prefix):
            raise ValueError(f"sync_prefix {self.sync_prefix!r} is not a prefix of key_prefix "
                             f"{self.key_prefix!r}: lmc-redis-sync would not track these keys")
        if require_sync and not self.sync_prefix:
            raise ValueError("LmcRedisCache needs a key_prefix (or sync_prefix) for "
                             "lmc-redis-sync --prefix to track, or require_sync=False")
        self.require_sync = require_sync
        self.lease_wait = lease_wait
        self.l1_max_timeout = default_timeout if l1_max_timeout is None else l1_max_timeout
        self.status_interval = status_interval
        self._status_key = SYNC_STATUS_KEY + self.sync_prefix
        self._status_until = 0.0
        self._status_ok = False
        if serializer is not None:
            self.serializer = _serializer(serializer)
        if isinstance(path, Cache):
            self.lmc = path
        else:
            self.lmc = Cache(path, map_size=map_size or 0, mode=mode or 0, **kwargs)
        if redis is None:
            if not redis_url:
                raise ValueError("LmcRedisCache needs redis_url (e.g. unix:///run/redis.sock) "
                                 "or a redis client")
            import redis as _redis

            redis = _redis.from_url(redis_url, **(redis_options or {}))
        self.redis = redis
        from redis.exceptions import RedisError, ResponseError

        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("LmcRedisCache needs a Redis client that returns bytes "
                             "(decode_responses=False)")
        self._redis_error = RedisError
        self._response_error = ResponseError
        from redis.exceptions import ConnectionError as RedisConnectionError

        self._connection_error = RedisConnectionError
        # The connections of the get path (_redis_read), idle ones; a thread
        # pops one and appends it back, both atomic under the GIL.
        self._idle: _t.List[_t.Any] = []
        kw = redis.connection_pool.connection_kwargs
        self._key_encoding = (kw.get("encoding") or "utf-8", kw.get("encoding_errors") or "strict")
        _REDIS_BACKENDS.add(self)
        self.counts = {"l1_hits": 0, "l2_hits": 0, "misses": 0, "fills": 0,
                       "fill_rejects": 0, "bypassed": 0, "redis_errors": 0,
                       "lease_waits": 0}

    # -- helpers -----------------------------------------------------------

    def _k(self, key: str) -> str:
        return self.key_prefix + key

    _ttl = LmcCache._ttl

    def _l1_ok(self) -> bool:
        """Whether the L1 is kept coherent now (the sidecar's status entry)."""
        if not self.require_sync:
            return True
        now = time.monotonic()
        if now >= self._status_until:
            try:
                raw = self.lmc.get(self._status_key)
            except Error:
                raw = None
            self._status_ok = raw is not None and b'"state":"up"' in raw
            self._status_until = now + self.status_interval
        return self._status_ok

    def _redis_failed(self, what: str, key: _t.Any, e: Exception) -> None:
        self.counts["redis_errors"] += 1
        logger.warning("lmc: Redis %s %s failed: %s: %s", what, _brief(key), type(e).__name__, e)

    def _l1_drop(self, k: str) -> None:
        # A delete is an invalidation: it also refuses the fills of this key
        # that read Redis before it (lmc_set_if_gen).
        try:
            self.lmc.delete(k)
        except TooBigError:
            pass
        except Error as e:
            logger.warning("lmc: L1 delete of %s failed: %s", _brief(k), e)

    def _fill_ttl(self, pttl: int) -> _t.Optional[float]:
        """The L1 TTL for a key Redis has pttl ms left of, or None: no fill."""
        if pttl == -2 or pttl == 0:
            return None  # gone, or about to be
        cap = self.l1_max_timeout or 0
        if pttl == -1:
            return cap  # no TTL in Redis: the L1's own bound (0: none)
        if pttl < 0:
            return None
        ttl = pttl / 1000.0
        return min(ttl, cap) if cap else ttl

    def _forked(self) -> None:
        """In a child made by fork: the parent's connections are not ours to
        use (dropping them closes this process's copy of their sockets)."""
        self._idle = []

    def _redis_read(self, k: str, pttl: bool) -> _t.Tuple[_t.Optional[bytes], int]:
        """GET of one key, and its PTTL when asked, in one round trip: (the
        value or None, the PTTL or -2 when not asked).

        The get path's own use of redis-py: a connection of this backend's own
        (made from the client's pool's settings, so AUTH, the database, TLS
        and timeouts are the client's), the commands packed and the replies
        read here.  redis-py's generic path (the pool's lock, getpid and
        socket poll, pack_command, its line-by-line parser) made GET and
        PTTL cost this process about 105,000 instructions; this costs about
        10,000 (callgrind, bench/RESULTS-redis.md).  A connection that was
        idle may have been closed by the server meanwhile (a restart): the
        read is then tried once more on a new connection, as redis-py's pool
        does when it polls the socket."""
        kb = k.encode(*self._key_encoding)
        packed = (_packed_get(kb, pttl),)
        try:
            conn = self._idle.pop()
            retry = True
        except IndexError:
            pool = self.redis.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            retry = False
        while True:
            try:
                if conn._sock is None:
                    retry = False  # connected now: a failure is not a stale socket
                conn.send_packed_command(packed, False)
                replies = _Replies(conn._sock)
                raw, err = replies.value()
                n = -2
                if pttl:
                    n, err2 = replies.integer()
                    err = err or err2
                replies.done()
                break
            except self._connection_error:
                conn.disconnect()
                if not retry:
                    raise
                retry = False
            except BaseException:
                # A reply may be left unread: this connection is done for.
                conn.disconnect()
                raise
        if conn.health_check_interval:
            # What redis-py's read_response does after a reply.
            conn.next_health_check = time.time() + conn.health_check_interval
        self._idle.append(conn)
        if err is not None:
            raise self._response_error(err)
        return raw, n

    def _get_pttl(self, k: str) -> _t.Tuple[_t.Optional[bytes], int]:
        """GET and PTTL of one key, pipelined on one connection: one round
        trip (a redis-py pipeline object, MULTI/EXEC or a Lua script cost
        20-40 us more here)."""
        return self._redis_read(k, True)

    def _from_redis(self, keys: _t.List[str], fill: bool) -> _t.List[_t.Optional[bytes]]:
        """Raw values of keys from Redis (one round trip), filling the L1."""
        gens = []
        if fill:
            for k in keys:
                try:
                    gens.append(self.lmc.gen_read(k))
                except TooBigError:
                    gens.append(None)
        if not fill:
            out = [self.redis.get(keys[0])] if len(keys) == 1 else self.redis.mget(keys)
            hits = sum(r is not None for r in out)
            self.counts["l2_hits"] += hits
            self.counts["misses"] += len(out) - hits
            return out
        if len(keys) == 1:
            res = self._get_pttl(keys[0])
        else:
            pipe = self.redis.pipeline(transaction=True)
            for k in keys:
                pipe.get(k)
                pipe.pttl(k)
            res = pipe.execute()
        out = []
        for i, k in enumerate(keys):
            raw, pttl = res[2 * i], res[2 * i + 1]
            out.append(raw)
            if raw is None:
                self.counts["misses"] += 1
                continue
            self.counts["l2_hits"] += 1
            if not fill or gens[i] is None:
                continue
            ttl = self._fill_ttl(pttl)
            if ttl is None:
                continue
            try:
                if self.lmc.set_if_gen(k, raw, gens[i], ttl):
                    self.counts["fills"] += 1
                else:
                    self.counts["fill_rejects"] += 1
            except Error as e:
                logger.warning("lmc: L1 fill of %s failed: %s", _brief(k), e)
        return out

    # -- reads -------------------------------------------------------------

    def get(self, key: str) -> _t.Any:
        k = self.key_prefix + key
        use_l1 = self._l1_ok()
        if use_l1:
            try:
                raw = self.lmc.get(k)
            except TooBigError:
                return self._through(key, k)
            if raw is not None:
                self.counts["l1_hits"] += 1
                return self.serializer.loads(raw)
            return self._fill_leased(key, k)
        self.counts["bypassed"] += 1
        return self._through(key, k)

    def _through(self, key: str, k: str) -> _t.Any:
        """A read of Redis that fills nothing."""
        try:
            raw = self._redis_read(k, False)[0]
        except self._redis_error as e:
            self._redis_failed("get", key, e)
            return None
        self.counts["l2_hits" if raw is not None else "misses"] += 1
        return self.serializer.loads(raw)

    def _fill_leased(self, key: str, k: str) -> _t.Any:
        """An L1 miss: one worker of the host (the lease holder) reads Redis
        and fills the L1; the others wait for its fill, at most lease_wait.
        An invalidation of the key between the grant and the fill ends the
        lease (lmc_delete does), and the fill is then refused."""
        try:
            outcome, raw, lease = self.lmc.get_lease(k, wait=self.lease_wait)
        except Error as e:
            logger.warning("lmc: L1 lease of %s failed: %s", _brief(key), e)
            return self._through(key, k)
        if lease is None:
            if raw is not None:  # filled by the holder while we waited
                self.counts["lease_waits"] += 1
                self.counts["l1_hits"] += 1
                return self.serializer.loads(raw)
            return self._through(key, k)  # the holder took too long
        with lease:  # leaving without a fill abandons it
            try:
                raw, pttl = self._get_pttl(k)
            except self._redis_error as e:
                self._redis_failed("get", key, e)
                return None
            if raw is None:
                self.counts["misses"] += 1
                return None
            self.counts["l2_hits"] += 1
            ttl = self._fill_ttl(pttl)
            if ttl is not None:
                try:
                    if lease.fill(raw, ttl):
                        self.counts["fills"] += 1
                    else:
                        self.counts["fill_rejects"] += 1
                except Error as e:
                    logger.warning("lmc: L1 fill of %s failed: %s", _brief(k), e)
        return self.serializer.loads(raw)

    def get_many(self, *keys: str) -> _t.List[_t.Any]:
        full = [self._k(k) for k in keys]
        use_l1 = self._l1_ok()
        raws: _t.List[_t.Optional[bytes]] = [None] * len(full)
        if use_l1:
            short = [k for k in full if not _too_long(k)]
            found = dict(zip(short, self.lmc.get_many(short)))
            raws = [found.get(k) for k in full]
            self.counts["l1_hits"] += sum(r is not None for r in raws)
        missing = [i for i, r in enumerate(raws) if r is None]
        if missing:
            try:
                got = self._from_redis([full[i] for i in missing], use_l1)
            except self._redis_error as e:
                self._redis_failed("get_many", keys[missing[0]], e)
                got = [None] * len(missing)
            for i, r in zip(missing, got):
                raws[i] = r
        return [self.serializer.loads(r) for r in raws]

    def has(self, key: str) -> bool:
        k = self._k(key)
        if self._l1_ok():
            try:
                if self.lmc.has(k):
                    return True
            except TooBigError:
                pass
        try:
            return bool(self.redis.exists(k))
        except self._redis_error as e:
            self._redis_failed("exists", key, e)
            return False

    # -- writes: Redis first, then drop the L1 key -----------------------------

    def _px(self, ttl: float) -> _t.Optional[int]:
        return None if not ttl else max(1, int(ttl * 1000))

    def set(self, key: str, value: _t.Any, timeout: _t.Optional[int] = None) -> bool:
        data = self.serializer.dumps(value)
        ttl = self._ttl(timeout)
        k = self._k(key)
        try:
            if ttl is None:
                self.redis.unlink(k)
            else:
                self.redis.set(k, data, px=self._px(ttl))
            ok = True
        except self._redis_error as e:
            self._redis_failed("set", key, e)
            ok = False
        # Also after a failure: the write may have reached Redis.
        self._l1_drop(k)
        return ok

    def add(self, key: str, value: _t.Any, timeout: _t.Optional[int] = None) -> bool:
        data = self.serializer.dumps(value)
        ttl = self._ttl(timeout)
        k = self._k(key)
        try:
            if ttl is None:
                return not self.redis.exists(k)
            ok = bool(self.redis.set(k, data, px=self._px(ttl), nx=True))
        except self._redis_error as e:
            self._redis_failed("add", key, e)
            ok = False
        self._l1_drop(k)
        return ok

    def set_many(
        self, mapping: _t.Dict[str, _t.Any], timeout: _t.Optional[int] = None
    ) -> _t.List[_t.Any]:
        keys = list(mapping.keys())
        ttl = self._ttl(timeout)
        pipe = self.redis.pipeline(transaction=True)
        for key in keys:
            if ttl is None:
                pipe.unlink(self._k(key))
            else:
                pipe.set(self._k(key), self.serializer.dumps(mapping[key]), px=self._px(ttl))
        try:
            pipe.execute()
            done = keys
        except self._redis_error as e:
            self._redis_failed(f"set_many of {len(keys)} keys, the first",
                               keys[0] if keys else None, e)
            done = []
        for key in keys:
            self._l1_drop(self._k(key))
        return done

    def delete(self, key: str) -> bool:
        k = self._k(key)
        try:
            ok = bool(self.redis.unlink(k))
        except self._redis_error as e:
            self._redis_failed("delete", key, e)
            ok = False
        self._l1_drop(k)
        return ok

    def delete_many(self, *keys: str) -> _t.List[_t.Any]:
        if not keys:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(self._k(key))
        try:
            res = pipe.execute()
        except self._redis_error as e:
            self._redis_failed("delete_many", keys[0], e)
            res = [0] * len(keys)
        for key in keys:
            self._l1_drop(self._k(key))
        return [key for key, n in zip(keys, res) if n]

    def delete_prefix(self, prefix: str, batch: int = 1000) -> int:
        """Delete every key that starts with prefix (after key_prefix), from
        Redis with SCAN and UNLINK in batches of about `batch` keys, and from
        this host's L1; the other hosts' sidecars see each removal.  Returns
        how many keys Redis removed.  Not part of cachelib's API."""
        full = self._k(prefix)
        if not full:
            raise ValueError("delete_prefix() needs a prefix; use clear()")
        removed = 0
        try:
            cursor = 0
            pattern = _glob_escape(full) + "*"
            while True:
                cursor, found = self.redis.scan(cursor, match=pattern, count=batch)
                if found:
                    removed += self.redis.unlink(*found)
                if cursor == 0:
                    break
        finally:
            # Also after an error: what Redis removed must leave this L1 too,
            # at once for every worker (a flush), deleted later by the sweeper.
            self.lmc.flush_prefix(full)
        return removed

    def clear(self) -> bool:
        try:
            if self.key_prefix:
                self.delete_prefix("")
            else:
                self.redis.flushdb()
                self.lmc.flush_prefix("")
        except self._redis_error as e:
            self._redis_failed("clear", self.key_prefix, e)
            return False
        return True

    def inc(self, key: str, delta: int = 1) -> _t.Optional[int]:
        k = self._k(key)
        try:
            value = self.redis.incrby(k, delta)
        except self._response_error as e:
            # Not an integer in Redis (a pickled value), as RedisCache.
            logger.warning("lmc: inc of %s: %s", _brief(key), e)
            value = None
        except self._redis_error as e:
            self._redis_failed("inc", key, e)
            value = None
        self._l1_drop(k)
        return value

    def dec(self, key: str, delta: int = 1) -> _t.Optional[int]:
        return self.inc(key, -delta)
