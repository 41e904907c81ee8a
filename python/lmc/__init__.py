"""lmc: one cache shared by every process on a host, stored in LMDB.

    import lmc
    cache = lmc.Cache("/dev/shm/myapp", map_size=256 << 20, default_timeout=300)
    cache.set(b"user:42", b"...", timeout=60)
    cache.get(b"user:42")            # -> b"..." or None on a miss

Every worker process that opens the same path shares the same entries; a
handle opened before os.fork() keeps working in the child.  Keys are bytes
or str (encoded as UTF-8); values are bytes.  Timeouts are in seconds
(None = the cache's default, 0 = never expire, lmc.KEEP_TTL = keep the
expiry time of the entry being replaced).

Computing a missing value once for the whole host (fill leases):
    page = cache.get_or_set("page/1", render, timeout=60, grace=30)
or, one level down, cache.get_lease() -> (outcome, value, lmc.Lease).

Backends for the usual Python cache APIs:
    lmc.cachelib.LmcCache        a cachelib.BaseCache (pickled or JSON values)
    lmc.flask_caching.LmcCache   CACHE_TYPE = "lmc.flask_caching.LmcCache"

See python/README.md for the whole API and how errors are reported.
"""
from ._lmc import (  # noqa: F401
    KEEP_TTL,
    LEASE_FILL,
    LEASE_HIT,
    LEASE_REFRESH,
    LEASE_STALE,
    LEASE_TIMEOUT,
    LIB_VERSION,
    BusyError,
    Cache,
    CorruptError,
    Error,
    InvalidArgumentError,
    Lease,
    NoSpaceError,
    NoCacheError,
    NotANumberError,
    NotFoundError,
    OutOfMemoryError,
    RangeError,
    ReadOnlyError,
    TooBigError,
    UnsafePathError,
    VersionError,
    errname,
    strerror,
)
from . import _lmc

# The numeric codes, e.g. lmc.LMC_ENOSPC, as carried by Error.code.
globals().update({k: v for k, v in vars(_lmc).items() if k.startswith("LMC_")})

__version__ = LIB_VERSION
__all__ = [
    "Cache",
    "KEEP_TTL",
    "Lease",
    "LEASE_HIT",
    "LEASE_STALE",
    "LEASE_FILL",
    "LEASE_REFRESH",
    "LEASE_TIMEOUT",
    "Error",
    "BusyError",
    "CorruptError",
    "InvalidArgumentError",
    "NoSpaceError",
    "NoCacheError",
    "NotANumberError",
    "NotFoundError",
    "OutOfMemoryError",
    "RangeError",
    "ReadOnlyError",
    "TooBigError",
    "UnsafePathError",
    "VersionError",
    "errname",
    "strerror",
]
