"""Tests of lmc.Cache, the C extension: every method, the key, value and
timeout rules, errors, read-only handles, closing, threads and the GIL."""
import math
import os
import re
import threading
import time

import pytest
from conftest import SMALL_MAP, TOP, wait_for

import lmc

# ---------------------------------------------------------------------------
# get / set / add / replace / delete


def test_set_get_roundtrip_and_miss_default(cache):
    assert cache.set(b"k", b"v") is None
    assert cache.get(b"k") == b"v"
    assert cache.get(b"absent") is None
    assert cache.get(b"absent", b"dflt") == b"dflt"
    assert cache.get(b"absent", default=7) == 7
    # The default is only for misses.
    assert cache.get(b"k", b"dflt") == b"v"


def test_empty_value_is_a_hit_not_a_miss(cache):
    cache.set(b"empty", b"")
    assert cache.get(b"empty") == b""
    assert cache.get(b"empty", None) is not None
    assert cache.has(b"empty")


def test_set_overwrites(cache):
    cache.set(b"k", b"one")
    cache.set(b"k", b"two")
    assert cache.get(b"k") == b"two"


def test_add_only_when_absent(cache):
    assert cache.add(b"k", b"first") is True
    assert cache.add(b"k", b"second") is False
    assert cache.get(b"k") == b"first"


def test_add_replaces_an_expired_entry(cache):
    cache.set(b"k", b"old", timeout=0.05)
    wait_for(lambda: cache.get(b"k") is None, what="expiry")
    assert cache.add(b"k", b"new") is True
    assert cache.get(b"k") == b"new"


def test_replace_only_when_present(cache):
    assert cache.replace(b"k", b"x") is False
    assert cache.get(b"k") is None
    cache.set(b"k", b"a")
    assert cache.replace(b"k", b"b") is True
    assert cache.get(b"k") == b"b"


def test_delete_reports_existence(cache):
    cache.set(b"k", b"v")
    assert cache.delete(b"k") is True
    assert cache.delete(b"k") is False
    assert cache.get(b"k") is None


def test_has_and_contains(cache):
    assert not cache.has(b"k")
    assert b"k" not in cache
    cache.set(b"k", b"v")
    assert cache.has(b"k") is True
    assert b"k" in cache and "k" in cache


def test_values_may_be_any_bytes_like_object(cache):
    cache.set(b"ba", bytearray(b"from bytearray"))
    cache.set(b"mv", memoryview(b"xxfrom memoryviewxx")[2:-2])
    assert cache.get(b"ba") == b"from bytearray"
    assert cache.get(b"mv") == b"from memoryview"
    assert type(cache.get(b"ba")) is bytes


@pytest.mark.parametrize("bad", ["a str", 42, None, 1.5, [1]])
def test_non_bytes_values_are_refused(cache, bad):
    with pytest.raises(TypeError):
        cache.set(b"k", bad)
    assert cache.get(b"k") is None


def test_large_values(cache):
    big = os.urandom(8 << 20)
    cache.set(b"big", big)
    assert cache.get(b"big") == big


def test_binary_values_with_nul_bytes(cache):
    v = bytes(range(256)) * 4
    cache.set(b"bin", v)
    assert cache.get(b"bin") == v


# ---------------------------------------------------------------------------
# Key rules


def test_str_keys_are_utf8_of_the_same_entry(cache):
    cache.set("clé/ключ/鍵", b"v")
    assert cache.get("clé/ключ/鍵".encode("utf-8")) == b"v"
    assert cache.get(bytearray("clé/ключ/鍵".encode())) == b"v"
    assert cache.get(memoryview("clé/ключ/鍵".encode())) == b"v"


def test_keys_with_nul_bytes_are_distinct(cache):
    cache.set(b"a\x00b", b"1")
    cache.set(b"a\x00c", b"2")
    cache.set(b"a", b"3")
    assert [cache.get(k) for k in (b"a\x00b", b"a\x00c", b"a")] == [b"1", b"2", b"3"]


@pytest.mark.parametrize("n", [1, 447, 448, 449, 464, 465, 511, 512, 4096, 65536])
def test_key_lengths_accepted(cache, n):
    key = b"k" * n
    cache.set(key, b"v%d" % n)
    assert cache.get(key) == b"v%d" % n
    assert cache.has(key)
    assert cache.delete(key)


def test_long_keys_with_a_common_448_byte_head_are_distinct(cache):
    head = b"h" * 448
    keys = [head + b"%d" % i for i in range(20)] + [head]
    for i, k in enumerate(keys):
        cache.set(k, b"%d" % i)
    for i, k in enumerate(keys):
        assert cache.get(k) == b"%d" % i
    assert sorted(cache.keys(head)) == sorted(keys)


def test_empty_key_is_a_value_error(cache):
    for call in (lambda: cache.get(b""), lambda: cache.set("", b"v"),
                 lambda: cache.delete(b""), lambda: cache.incr("")):
        with pytest.raises(lmc.InvalidArgumentError) as ei:
            call()
        assert isinstance(ei.value, ValueError)
        assert ei.value.name == "LMC_EINVAL"


def test_key_over_64k_is_too_big(cache):
    with pytest.raises(lmc.TooBigError) as ei:
        cache.set(b"k" * 65537, b"v")
    assert isinstance(ei.value, ValueError)
    with pytest.raises(lmc.TooBigError):
        cache.get(b"k" * 65537)


@pytest.mark.parametrize("bad", [42, None, 1.0, ["k"]])
def test_non_bytes_keys_are_type_errors(cache, bad):
    with pytest.raises(TypeError):
        cache.get(bad)
    with pytest.raises(TypeError):
        cache.set(bad, b"v")


def test_str_key_that_cannot_be_utf8_raises(cache):
    with pytest.raises(UnicodeEncodeError):
        cache.set("\udcff", b"v")


# ---------------------------------------------------------------------------
# Timeouts (seconds; None = the cache's default, 0 = never)


def test_positive_timeout_expires(cache):
    t0 = time.monotonic()
    cache.set(b"k", b"v", timeout=0.2)
    assert cache.get(b"k") == b"v"
    wait_for(lambda: cache.get(b"k") is None, what="expiry")
    # Not before its time (monotonic vs the wall clock lmc uses: allow 20 ms).
    assert time.monotonic() - t0 >= 0.18
    assert not cache.has(b"k")


def test_timeout_none_uses_the_default_and_zero_never_expires(cache_path):
    with lmc.Cache(cache_path, default_timeout=0.15, map_size=SMALL_MAP) as c:
        assert c.default_timeout == 0.15
        c.set(b"default", b"1")            # timeout=None: 0.15 s
        c.set(b"never", b"2", timeout=0)   # never
        c.set(b"long", b"3", timeout=3600)
        wait_for(lambda: c.get(b"default") is None, what="default expiry")
        assert c.get(b"never") == b"2"
        assert c.get(b"long") == b"3"
        assert c.info()["default_ttl_ms"] == 150


def test_default_timeout_zero_means_never(cache):
    assert cache.default_timeout == 0
    cache.set(b"k", b"v")
    assert cache.info()["default_ttl_ms"] == 0


def test_tiny_positive_timeout_rounds_up_not_to_never(cache):
    # 0.0001 s must become 1 ms (expires), never 0 ms (which means never).
    cache.set(b"k", b"v", timeout=0.0001)
    wait_for(lambda: cache.get(b"k") is None, what="expiry of a 1 ms entry")


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (-0.5, ValueError),
                                      (math.nan, ValueError), (10 ** 30, OverflowError),
                                      (math.inf, OverflowError), ("1", TypeError)])
def test_bad_timeouts(cache, bad, exc):
    with pytest.raises(exc):
        cache.set(b"k", b"v", timeout=bad)
    assert cache.get(b"k") is None
    with pytest.raises(exc):
        lmc.Cache(cache.path, default_timeout=bad, map_size=SMALL_MAP)


def test_keep_ttl_keeps_the_expiry_of_the_replaced_entry(cache_path):
    with lmc.Cache(cache_path, default_timeout=3600, map_size=SMALL_MAP) as c:
        assert repr(lmc.KEEP_TTL) == "lmc.KEEP_TTL"
        c.set(b"short", b"1", timeout=0.15)
        c.set(b"never", b"1", timeout=0)
        c.set(b"short", b"2", timeout=lmc.KEEP_TTL)
        assert c.replace(b"never", b"2", timeout=lmc.KEEP_TTL) is True
        _, ver = c.get_cas(b"never")
        assert c.cas(b"never", b"3", ver, timeout=lmc.KEEP_TTL) is True
        c.set_many({b"new": b"1"}, timeout=lmc.KEEP_TTL)   # new: the default
        assert c.get(b"short") == b"2"
        # "short" kept its TTL, "never" kept none, "new" got the default's.
        assert c.stats()["entries_with_ttl"] == 2
        wait_for(lambda: c.get(b"short") is None, what="kept 0.15 s expiry")
        assert c.get(b"never") == b"3"
        assert c.get(b"new") == b"1"


def test_keep_ttl_is_refused_where_it_means_nothing(cache):
    cache.set(b"k", b"v", timeout=0)
    with pytest.raises(ValueError):
        cache.touch(b"k", lmc.KEEP_TTL)
    with pytest.raises(ValueError):
        lmc.Cache(cache.path, default_timeout=lmc.KEEP_TTL, map_size=SMALL_MAP)
    with pytest.raises(TypeError):
        type(lmc.KEEP_TTL)()
    assert cache.get(b"k") == b"v"


def test_touch_changes_the_timeout(cache):
    assert cache.touch(b"absent", 10) is False
    cache.set(b"a", b"1", timeout=0.2)
    cache.set(b"b", b"2", timeout=3600)
    assert cache.touch(b"a", 0) is True      # now never expires
    assert cache.touch(b"b", 0.05) is True   # now expires soon
    wait_for(lambda: cache.get(b"b") is None, what="touched entry to expire")
    assert cache.get(b"a") == b"1"


def test_touch_keeps_value_and_version(cache):
    cache.set(b"k", b"v")
    _, ver = cache.get_cas(b"k")
    cache.touch(b"k", 100)
    assert cache.get_cas(b"k") == (b"v", ver)


# ---------------------------------------------------------------------------
# incr


def test_incr_from_missing_and_decimal_text(cache):
    assert cache.incr(b"n") == 1
    assert cache.incr(b"n", 41) == 42
    assert cache.incr(b"n", -50) == -8
    assert cache.get(b"n") == b"-8"
    cache.set(b"m", b"100")
    assert cache.incr(b"m", delta=5) == 105


def test_incr_on_non_number_raises_not_a_number(cache):
    cache.set(b"s", b"abc")
    with pytest.raises(lmc.NotANumberError) as ei:
        cache.incr(b"s")
    assert isinstance(ei.value, ValueError)
    assert ei.value.code == lmc.LMC_ENOTNUM
    assert cache.get(b"s") == b"abc"


def test_incr_overflow_is_a_range_error_and_writes_nothing(cache):
    cache.set(b"n", b"%d" % (2 ** 63 - 1))
    with pytest.raises(lmc.RangeError) as ei:
        cache.incr(b"n")
    assert isinstance(ei.value, OverflowError)
    assert cache.get(b"n") == b"%d" % (2 ** 63 - 1)


def test_incr_delta_checks(cache):
    with pytest.raises(OverflowError):
        cache.incr(b"n", 2 ** 64)
    with pytest.raises(TypeError):
        cache.incr(b"n", 1.5)
    assert cache.get(b"n") is None


def test_incr_creates_with_timeout_and_keeps_an_existing_timeout(cache):
    cache.incr(b"fresh", 1, timeout=0.1)
    cache.set(b"old", b"5", timeout=0)
    cache.incr(b"old", 1, timeout=0.1)  # existing entry keeps "never"
    wait_for(lambda: cache.get(b"fresh") is None, what="expiry of incr-created key")
    assert cache.get(b"old") == b"6"


# ---------------------------------------------------------------------------
# get_many / set_many / keys / delete_prefix / clear


def test_get_many_mixes_hits_misses_and_default(cache):
    cache.set(b"a", b"1")
    cache.set("b", b"2")
    assert cache.get_many([b"a", "b", b"c"]) == [b"1", b"2", None]
    assert cache.get_many((k for k in [b"c", b"a"]), default=b"-") == [b"-", b"1"]
    assert cache.get_many([]) == []


def test_get_many_rejects_a_bad_key_before_reading(cache):
    with pytest.raises(lmc.InvalidArgumentError):
        cache.get_many([b"a", b""])
    with pytest.raises(TypeError):
        cache.get_many([b"a", 3])


def test_set_many_from_dict_and_pairs(cache):
    cache.set_many({b"a": b"1", "b": bytearray(b"2")})
    cache.set_many([(b"c", b"3"), [b"d", b"4"]], timeout=0)
    cache.set_many(iter([(b"e", b"5")]), timeout=0.1)
    assert cache.get_many([b"a", b"b", b"c", b"d", b"e"]) == [b"1", b"2", b"3", b"4", b"5"]
    wait_for(lambda: cache.get(b"e") is None, what="set_many timeout")
    cache.set_many({})


def test_set_many_is_all_or_nothing(cache):
    with pytest.raises(lmc.InvalidArgumentError):
        cache.set_many([(b"ok", b"1"), (b"", b"2")])
    assert cache.get(b"ok") is None
    with pytest.raises(TypeError):
        cache.set_many([(b"ok", b"1"), (b"x", "str")])
    with pytest.raises(ValueError):
        cache.set_many([(b"ok", b"1", b"extra")])
    assert cache.get(b"ok") is None


def test_keys_with_prefix_and_limit(cache):
    for k in (b"a/1", b"a/2", b"a/3", b"b/1"):
        cache.set(k, b"v")
    assert cache.keys() == [b"a/1", b"a/2", b"a/3", b"b/1"]
    assert cache.keys(b"a/") == [b"a/1", b"a/2", b"a/3"]
    assert cache.keys("a/", limit=2) == [b"a/1", b"a/2"]
    assert cache.keys(b"a/", limit=None) == [b"a/1", b"a/2", b"a/3"]
    assert cache.keys(limit=0) == []
    with pytest.raises(ValueError):
        cache.keys(limit=-1)
    assert cache.keys(b"zz") == []


def test_delete_prefix_is_exact(cache):
    for k in (b"view//items/1", b"view//items/2", b"view//items", b"view//itemsX",
              b"view//other/1", b"view//items/1/deep"):
        cache.set(k, b"v")
    assert cache.delete_prefix(b"view//items/") == 3
    assert sorted(cache.keys()) == [b"view//items", b"view//itemsX", b"view//other/1"]
    assert cache.delete_prefix("nothing/") == 0


def test_flush_prefix_at_once_then_swept(cache):
    for k in (b"view//items/1", b"view//items/2", b"view//items", b"view//other/1"):
        cache.set(k, b"v")
    assert cache.flush_prefix(b"view//items/") is None
    assert sorted(cache.keys()) == [b"view//items", b"view//other/1"]
    assert cache.get(b"view//items/1") is None
    assert cache.add(b"view//items/2", b"new") is True   # absent for writes too
    st = cache.stats()
    assert st["flush_markers"] == 1 and st["prefix_flushes"] == 1
    assert st["entries"] == 4                            # until the sweep
    r = cache.sweep()
    assert r["flushed"] == 1
    assert r["rows_refiled"] == 0                        # no entry was rewritten with a TTL
    assert cache.stats()["flush_markers"] == 0
    assert cache.get(b"view//items/2") == b"new"
    cache.flush_prefix("")                               # everything
    assert cache.keys() == []
    with pytest.raises(TypeError):
        cache.flush_prefix(3)


def test_delete_prefix_longer_than_448_bytes(cache):
    head = b"p" * 500
    cache.set(head + b"1", b"v")
    cache.set(head + b"2", b"v")
    cache.set(b"p" * 499 + b"q", b"v")  # shares 499 bytes, not the prefix
    assert cache.delete_prefix(head) == 2
    assert cache.keys() == [b"p" * 499 + b"q"]


def test_delete_prefix_refuses_empty_prefix(cache):
    cache.set(b"k", b"v")
    with pytest.raises(ValueError):
        cache.delete_prefix(b"")
    assert cache.get(b"k") == b"v"


def test_clear_removes_everything(cache):
    cache.set_many([(b"%d" % i, b"v") for i in range(1000)])
    assert cache.clear() is None
    assert cache.keys() == []
    assert cache.stats()["entries"] == 0


# ---------------------------------------------------------------------------
# compare-and-swap


def test_cas(cache):
    assert cache.get_cas(b"k") is None
    assert cache.cas(b"k", b"x", 1) is False  # no entry
    cache.set(b"k", b"v1")
    v1, ver1 = cache.get_cas(b"k")
    assert v1 == b"v1"
    assert cache.cas(b"k", b"v2", ver1) is True
    assert cache.cas(b"k", b"v3", ver1) is False  # version moved on
    assert cache.get(b"k") == b"v2"


# ---------------------------------------------------------------------------
# stats, info, sweep


def _header_names(macro):
    """The field names of an X-macro table in include/lmc.h."""
    text = open(os.path.join(TOP, "include", "lmc.h")).read()
    body = re.search(r"#define %s\(X\)(.*?)\n\n" % macro, text, re.S).group(1)
    return re.findall(r"X\((\w+),", body)


def test_stats_has_every_field_of_the_header(cache):
    st = cache.stats()
    expected = _header_names("LMC_COUNTERS") + _header_names("LMC_GAUGES")
    assert len(expected) > 30
    assert sorted(st) == sorted(expected)
    assert isinstance(st["fill"], float)
    assert all(isinstance(st[k], int) for k in expected if k != "fill")


def test_stats_count_this_process_calls(cache):
    before = cache.stats()
    cache.set(b"k", b"12345")
    cache.get(b"k")
    cache.get(b"k")
    cache.get(b"missing")
    cache.incr(b"n")
    cache.delete_prefix(b"k")
    after = cache.stats()
    d = {k: after[k] - before[k] for k in ("hits", "misses", "sets", "incrs",
                                           "prefix_deletes", "prefix_deleted_keys",
                                           "bytes_read")}
    assert d == {"hits": 2, "misses": 1, "sets": 2, "incrs": 1, "prefix_deletes": 1,
                 "prefix_deleted_keys": 1, "bytes_read": 10}
    assert after["entries"] == 1  # n


def test_has_counts_a_lookup_but_reads_nothing(cache):
    cache.set(b"k", b"x" * 1000)
    before = cache.stats()
    assert cache.has(b"k") and not cache.has(b"nope") and b"k" in cache
    after = cache.stats()
    assert after["hits"] - before["hits"] == 2
    assert after["misses"] - before["misses"] == 1
    assert after["bytes_read"] == before["bytes_read"]


def test_process_stats_lists_this_process(cache):
    cache.get(b"x")
    mine = [p for p in cache.process_stats() if p["pid"] == os.getpid()]
    assert len(mine) == 1 and mine[0]["alive"] is True
    assert mine[0]["misses"] >= 1


def test_info(cache, cache_path):
    info = cache.info()
    assert info["path"] == cache_path
    assert info["map_size"] == 64 << 20
    assert info["on_tmpfs"] is (cache_path.startswith("/dev/shm"))
    assert info["read_only"] is False
    assert info["lmc_version"] == lmc.LIB_VERSION == lmc.__version__
    assert info["lmdb_version"].startswith("LMDB")


def test_sweep_removes_expired_entries(cache):
    cache.set_many([(b"e%d" % i, b"v") for i in range(50)], timeout=0.05)
    cache.set(b"keep", b"v", timeout=0)
    wait_for(lambda: cache.get(b"e0") is None and cache.get(b"e49") is None, what="expiry")
    r = cache.sweep()
    assert r["expired"] == 50
    assert r["complete"] is True
    assert cache.stats()["entries"] == 1
    assert cache.sweep(max_keys=10, batch=5, noevict=True)["expired"] == 0


def test_sweep_bad_watermarks(cache):
    with pytest.raises(lmc.InvalidArgumentError):
        cache.sweep(high=0.5, low=0.9)
    with pytest.raises(ValueError):
        cache.sweep(max_time=-1)


# ---------------------------------------------------------------------------
# Opening, read-only handles, errors


def test_readonly_handle_reads_but_refuses_writes(cache, cache_path):
    cache.set(b"k", b"v")
    with lmc.Cache(cache_path, readonly=True, map_size=SMALL_MAP) as ro:
        assert ro.readonly is True
        assert ro.get(b"k") == b"v"
        with pytest.raises(lmc.ReadOnlyError) as ei:
            ro.set(b"k", b"w")
        assert ei.value.code == lmc.LMC_EREADONLY
        with pytest.raises(lmc.ReadOnlyError):
            ro.delete_prefix(b"k")
    assert cache.get(b"k") == b"v"


def test_open_missing_without_create(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "nope")
    for kw in ({"create": False}, {"readonly": True}):
        with pytest.raises(lmc.NoCacheError) as ei:
            lmc.Cache(path, **kw, map_size=SMALL_MAP)
        e = ei.value
        assert path in str(e)
        assert e.code == lmc.LMC_ENOCACHE and e.name == "LMC_ENOCACHE"
        assert str(e).startswith("LMC_ENOCACHE: no cache at ")
        # What a missing path is to Python, and the class open raised for it
        # before the code had a name of its own.
        assert isinstance(e, FileNotFoundError) and isinstance(e, lmc.NotFoundError)
        assert isinstance(e, lmc.Error)
    assert not os.path.exists(path)
    # A creating open whose parent directory is missing: the same class.
    deeper = os.path.join(path, "cache")
    with pytest.raises(lmc.NoCacheError, match="parent directory does not exist"):
        lmc.Cache(deeper, map_size=SMALL_MAP)
    assert not os.path.exists(path)


def test_unsafe_directory_is_refused_with_a_message(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "open-to-all")
    os.mkdir(path)
    os.chmod(path, 0o777)
    with pytest.raises(lmc.UnsafePathError) as ei:
        lmc.Cache(path, map_size=SMALL_MAP)
    e = ei.value
    assert e.code == lmc.LMC_EPERM and e.name == "LMC_EPERM"
    assert path in e.detail and str(e).startswith("LMC_EPERM: ")


def test_symlink_is_refused(tmpdir_shm, cache_path):
    lmc.Cache(cache_path, map_size=SMALL_MAP).close()
    link = os.path.join(tmpdir_shm, "link")
    os.symlink(cache_path, link)
    with pytest.raises(lmc.UnsafePathError):
        lmc.Cache(link, map_size=SMALL_MAP)


def test_corrupt_files_are_refused_then_reset(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "corrupt")
    os.mkdir(path, 0o700)
    with open(os.path.join(path, "data.mdb"), "wb") as f:
        f.write(b"this is not an LMDB file" * 1000)
    with pytest.raises(lmc.CorruptError):
        lmc.Cache(path, map_size=SMALL_MAP)
    with lmc.Cache(path, reset=True, map_size=SMALL_MAP) as c:
        c.set(b"k", b"v")
        assert c.get(b"k") == b"v"


def test_reset_empties_a_valid_cache(cache_path):
    with lmc.Cache(cache_path, map_size=SMALL_MAP) as c:
        c.set(b"k", b"v")
    with lmc.Cache(cache_path, reset=True, map_size=SMALL_MAP) as c:
        assert c.get(b"k") is None


def test_bad_open_options(cache_path):
    with pytest.raises(lmc.InvalidArgumentError):
        lmc.Cache(cache_path, map_size=1000)  # below 1 MiB
    with pytest.raises(lmc.InvalidArgumentError):
        lmc.Cache(cache_path, mode=0o666, map_size=SMALL_MAP)     # others could write
    with pytest.raises(lmc.InvalidArgumentError):
        lmc.Cache(cache_path, readonly=True, reset=True, map_size=SMALL_MAP)
    with pytest.raises(TypeError):
        lmc.Cache(cache_path, bogus=1)
    with pytest.raises(TypeError):
        lmc.Cache(42)


def test_path_may_be_pathlike_and_bytes(tmpdir_shm):
    import pathlib

    p = pathlib.Path(tmpdir_shm) / "pl"
    with lmc.Cache(p, map_size=SMALL_MAP) as c:
        c.set(b"k", b"v")
        assert c.path == str(p)
    with lmc.Cache(os.fsencode(str(p)), map_size=SMALL_MAP) as c:
        assert c.get(b"k") == b"v"


def test_mode_shares_with_group(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "grp")
    with lmc.Cache(path, mode=0o660, map_size=SMALL_MAP):
        assert os.stat(path).st_mode & 0o777 == 0o770
        assert os.stat(os.path.join(path, "data.mdb")).st_mode & 0o777 == 0o660


def test_full_map_evicts_instead_of_failing(tmpdir_shm):
    with lmc.Cache(os.path.join(tmpdir_shm, "small"), map_size=1 << 20) as c:
        with pytest.raises(lmc.TooBigError):
            c.set(b"huge", b"x" * (2 << 20))
        for i in range(2000):  # ~4 MB through a 1 MiB map
            c.set(b"k%d" % i, b"x" * 2000)
        assert c.get(b"k1999") == b"x" * 2000
        st = c.stats()
        # Entries without a timeout were evicted, coldest first, to make room
        # (whether at the map-full error or earlier, at a watermark).
        assert st["evictions_lru"] > 0
        assert st["entries"] < 2000 and st["sets"] >= 2000


def test_error_attributes_and_helpers():
    assert issubclass(lmc.NoSpaceError, lmc.Error)
    assert lmc.errname(lmc.LMC_ENOSPC) == "LMC_ENOSPC"
    assert lmc.strerror(lmc.LMC_NOTFOUND).startswith("LMC_NOTFOUND: ")
    assert lmc.errname(lmc.LMC_ENOCACHE) == "LMC_ENOCACHE" and lmc.LMC_ENOCACHE == -33016
    assert issubclass(lmc.NoCacheError, lmc.NotFoundError)
    assert issubclass(lmc.NoCacheError, FileNotFoundError)
    assert lmc.errname(12345) == "LMC_UNKNOWN"


# ---------------------------------------------------------------------------
# close, context manager, opening twice


def test_close_is_idempotent_and_later_calls_raise(cache_path):
    c = lmc.Cache(cache_path, map_size=SMALL_MAP)
    c.set(b"k", b"v")
    assert not c.closed
    c.close()
    c.close()
    assert c.closed and "closed" in repr(c)
    for call in (lambda: c.get(b"k"), lambda: c.set(b"k", b"v"), c.stats, c.clear,
                 lambda: b"k" in c):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_context_manager_closes(cache_path):
    with lmc.Cache(cache_path, map_size=SMALL_MAP) as c:
        c.set(b"k", b"v")
    assert c.closed
    with pytest.raises(ValueError):
        with c:
            pass


def test_two_handles_on_one_path_share_entries(cache, cache_path):
    other = lmc.Cache(cache_path, map_size=SMALL_MAP)
    other.set(b"k", b"from other")
    assert cache.get(b"k") == b"from other"
    other.close()  # closing one handle leaves the other working
    assert cache.get(b"k") == b"from other"
    cache.set(b"k2", b"v")


def test_handle_is_freed_by_garbage_collection(cache_path):
    c = lmc.Cache(cache_path, map_size=SMALL_MAP)
    c.set(b"k", b"v")
    del c
    with lmc.Cache(cache_path, map_size=SMALL_MAP) as c2:
        assert c2.get(b"k") == b"v"


# ---------------------------------------------------------------------------
# Threads and the GIL


def test_many_threads_share_one_handle(cache):
    errors = []

    def work(t):
        try:
            for i in range(2000):
                k = b"t%d-%d" % (t, i % 50)
                cache.set(k, b"%d" % i)
                v = cache.get(k)
                assert v is not None and int(v) <= i
                cache.incr(b"total")
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.get(b"total") == b"16000"


def test_writes_release_the_gil(cache):
    """While one thread is inside a long write, another Python thread runs."""
    items = [(b"key-%07d" % i, b"v" * 100) for i in range(150_000)]
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.monotonic())

    t = threading.Thread(target=spin)
    t.start()
    try:
        wait_for(lambda: len(ticks) > 100, what="spinner to start")
        t0 = time.monotonic()
        cache.set_many(items)
        t1 = time.monotonic()
    finally:
        stop.set()
        t.join()
    assert t1 - t0 > 0.02, "set_many too fast to tell"
    inside = [x for x in ticks if t0 + 0.25 * (t1 - t0) < x < t0 + 0.75 * (t1 - t0)]
    assert len(inside) > 10, f"no progress of other threads during {t1 - t0:.3f} s"


def test_close_while_another_thread_writes_is_refused_or_safe(cache_path):
    """close() never frees the handle under a running call: while another
    thread is inside a write it raises BusyError, and once it succeeds the
    other thread sees a closed handle.  Repeated until the BusyError case has
    been seen, since which thread gets the GIL first is up to the scheduler."""
    items = [(b"key-%07d" % i, b"v" * 100) for i in range(100_000)]
    busy_rounds = 0
    for _ in range(20):
        c = lmc.Cache(cache_path, map_size=64 << 20)  # room for the whole batch
        outcome = {}
        entering = threading.Event()

        def writer():
            entering.set()
            try:
                c.set_many(items)
                outcome["writer"] = "done"
            except ValueError:
                outcome["writer"] = "closed"

        t = threading.Thread(target=writer)
        t.start()
        entering.wait()
        busy = 0
        while True:
            try:
                c.close()
                break
            except lmc.BusyError as e:
                assert e.code == lmc.LMC_EBUSY
                busy += 1
        t.join()
        assert c.closed
        assert outcome["writer"] in ("done", "closed")
        if busy:
            # Refused while the write ran, so the write completed.
            assert outcome["writer"] == "done"
            busy_rounds += 1
        with lmc.Cache(cache_path, map_size=SMALL_MAP) as c2:  # intact either way: all or nothing
            assert len(c2.keys(b"key-")) in (0, 100_000)
            c2.clear()
        if busy_rounds:
            break
    assert busy_rounds, "close() never ran during the write in 20 rounds"


def test_gen_read_and_set_if_gen(cache):
    """The fill race: a value read before an invalidation is not stored."""
    g = cache.gen_read("k")
    assert isinstance(g, int)
    assert cache.set_if_gen("k", b"v1", g) is True and cache.get("k") == b"v1"
    g = cache.gen_read("k")
    cache.delete("k")                         # the invalidation, key present or not
    assert cache.set_if_gen("k", b"stale", g, 10) is False and cache.get("k") is None
    g = cache.gen_read("k")
    cache.delete_prefix("other/")             # any prefix delete refuses every fill
    assert cache.set_if_gen("k", b"stale", g) is False
    assert cache.set_if_gen("k", b"v2", cache.gen_read("k"), 10) is True
    assert cache.stats()["gen_rejects"] == 2
    with pytest.raises(TypeError):
        cache.set_if_gen("k", b"v", "not a token")
    with pytest.raises(lmc.InvalidArgumentError):
        cache.gen_read(b"")
