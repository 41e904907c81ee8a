"""Tests of lmc.cachelib.LmcCache.

The first part runs every case against cachelib's own SimpleCache as well:
where the two backends should behave alike, the same assertions pass for
both, so LmcCache is a drop-in replacement.  The second part covers what only
lmc does: atomicity across processes, a real has(), decimal integers,
prefixes and backend errors.
"""
import logging
import math
import os
import pickle
import time

import pytest
from cachelib import SimpleCache
from conftest import SMALL_MAP, run_forked, wait_child, wait_for

import lmc
from lmc.cachelib import LmcCache


@pytest.fixture(params=["simple", "lmc", "lmc-prefixed"])
def make_cache(request, tmpdir_shm):
    """A factory of caches of one backend; all caches made share one store
    when the backend is lmc."""
    made = []

    def make(default_timeout=300):
        if request.param == "simple":
            return SimpleCache(default_timeout=default_timeout, threshold=10_000)
        prefix = "app/" if request.param == "lmc-prefixed" else None
        c = LmcCache(os.path.join(tmpdir_shm, "c"), default_timeout=default_timeout,
                     key_prefix=prefix, map_size=64 << 20)
        made.append(c)
        return c

    make.backend = request.param
    yield make
    for c in made:
        c.lmc.close()


@pytest.fixture
def c(make_cache):
    return make_cache()


# ---------------------------------------------------------------------------
# Behaviour shared with SimpleCache


def test_get_set_roundtrip(c):
    assert c.get("missing") is None
    assert c.set("k", {"a": [1, 2, (3, 4)], "b": "text"}) is True
    assert c.get("k") == {"a": [1, 2, (3, 4)], "b": "text"}
    assert c.set("k", "replaced") is True
    assert c.get("k") == "replaced"


@pytest.mark.parametrize("value", [0, "", [], {}, (), False, 0.0, b"", set(), -1, 2 ** 70,
                                   -(2 ** 63), 2 ** 63 - 1, 2 ** 63, 1.5, True, "0", b"0",
                                   "x" * 100_000])
def test_values_come_back_as_stored(c, value):
    assert c.set("k", value) is True
    got = c.get("k")
    assert got == value
    assert type(got) is type(value)
    assert c.has("k")


def test_none_is_stored_but_reads_like_a_miss(c):
    c.set("k", None)
    assert c.get("k") is None
    assert c.has("k") is True  # has() tells a stored None from a miss
    assert c.has("other") is False


def test_add(c):
    assert c.add("k", "first") is True
    assert c.add("k", "second") is False
    assert c.get("k") == "first"
    assert c.add("falsy", 0) is True
    assert c.add("falsy", 1) is False
    assert c.get("falsy") == 0


def test_delete(c):
    c.set("k", 1)
    assert c.delete("k") is True
    assert c.delete("k") is False
    assert c.get("k") is None


def test_delete_many_deletes_every_key(c):
    c.set_many({"a": 1, "c": 3, "d": 4})
    # "b" is missing: the keys after it are deleted all the same.
    assert c.delete_many("a", "b", "c", "d") == ["a", "c", "d"]
    assert c.get_many("a", "b", "c", "d") == [None, None, None, None]
    assert c.delete_many() == []


def test_get_many_and_get_dict(c):
    c.set("a", 1)
    c.set("b", [2])
    assert c.get_many("a", "b", "z") == [1, [2], None]
    assert c.get_dict("a", "b", "z") == {"a": 1, "b": [2], "z": None}
    assert c.get_many() == []


def test_set_many_returns_the_keys(c):
    assert sorted(c.set_many({"a": 1, "b": "two", "c": None})) == ["a", "b", "c"]
    assert c.get_many("a", "b", "c") == [1, "two", None]
    assert c.has("c")


def test_has(c):
    assert c.has("k") is False
    c.set("k", "")
    assert c.has("k") is True
    c.delete("k")
    assert c.has("k") is False


def test_clear(c):
    c.set_many({"a": 1, "b": 2})
    assert c.clear() is True
    assert c.get_many("a", "b") == [None, None]
    assert not c.has("a")


def test_inc_dec(c):
    assert c.inc("n") == 1            # a missing key starts at 0
    assert c.inc("n", 10) == 11
    assert c.dec("n") == 10
    assert c.dec("n", 20) == -10
    assert c.get("n") == -10
    assert c.dec("m", 3) == -3
    c.set("s", 5)
    assert c.inc("s") == 6            # inc works on a value set() stored
    assert c.get("s") == 6


def test_inc_on_pickled_numbers_and_falsy_values(c):
    c.set("f", 1.5)
    assert c.inc("f") == 2.5
    assert c.get("f") == 2.5
    c.set("big", 2 ** 70)
    assert c.inc("big", 2) == 2 ** 70 + 2
    c.set("empty", "")
    assert c.inc("empty", 4) == 4     # cachelib: a falsy value counts as 0
    c.set("s", "abc")
    with pytest.raises(TypeError):
        c.inc("s")
    assert c.get("s") == "abc"


def test_inc_beyond_64_bits_gives_the_exact_sum(c):
    # cachelib's answer is Python's: ints do not overflow.
    c.set("n", 2 ** 63 - 1)
    assert c.inc("n") == 2 ** 63
    assert c.get("n") == 2 ** 63
    assert c.inc("n", 2 ** 63) == 2 ** 64
    assert c.dec("n", 2 ** 64 - (2 ** 63 - 1)) == 2 ** 63 - 1   # back into 64 bits
    assert c.inc("n") == 2 ** 63
    c.set("m", -(2 ** 63))
    assert c.dec("m") == -(2 ** 63) - 1
    assert c.get("m") == -(2 ** 63) - 1


def test_inc_with_deltas_that_are_not_64_bit_ints(c):
    assert c.inc("big", 2 ** 64) == 2 ** 64          # a missing key starts at 0
    assert c.dec("big", 2 ** 64) == 0
    assert c.inc("neg", -(2 ** 63) - 5) == -(2 ** 63) - 5
    c.set("n", 1)
    assert c.inc("n", 0.5) == 1.5
    assert c.get("n") == 1.5
    assert c.dec("n", 0.25) == 1.25
    assert c.inc("fresh", 0.25) == 0.25
    assert c.get("fresh") == 0.25
    c.set("t", 7)
    assert c.inc("t", True) == 8


@pytest.mark.parametrize("key", ["ключ/鍵/κλειδί", "k" * 1000, "with space", "a\x00b", "/"])
def test_key_forms(c, key):
    c.set(key, "v")
    assert c.get(key) == "v"
    assert c.has(key)
    assert c.get(key + "x") is None
    assert c.delete(key)


# ---- timeouts: None = default, 0 = never, negative = already expired ------


def test_negative_timeout_means_already_expired(c):
    c.set("k", "old")
    assert c.set("k", "new", timeout=-1) is True
    assert c.get("k") is None
    assert c.has("k") is False
    assert c.set("fresh", "v", timeout=-5) is True
    assert c.get("fresh") is None and not c.has("fresh")


def test_add_with_negative_timeout_stores_nothing(c):
    assert c.add("k", "v", timeout=-1) is True
    assert c.get("k") is None and not c.has("k")
    c.set("live", "v")
    assert c.add("live", "other", timeout=-1) is False
    assert c.get("live") == "v"


def test_set_many_with_negative_timeout_stores_nothing(c):
    c.set("a", "old")
    assert sorted(c.set_many({"a": 1, "b": 2}, timeout=-1)) == ["a", "b"]
    assert c.get_many("a", "b") == [None, None]
    assert not c.has("a") and not c.has("b")


def test_positive_timeout_expires(c):
    c.set("k", "v", timeout=1)
    c.set("forever", "v", timeout=0)
    assert c.get("k") == "v"
    wait_for(lambda: c.get("k") is None, timeout=5, what="a 1 s timeout")
    assert not c.has("k")
    assert c.get("forever") == "v"


def test_none_uses_default_timeout_and_zero_never_expires(make_cache):
    c = make_cache(default_timeout=1)
    c.set("default", "v")               # timeout=None: 1 s
    c.set("never", "v", timeout=0)
    c.add("added", "v")                 # add honours the default as well
    c.set_many({"many": "v"})
    assert c.get_many("default", "never", "added", "many") == ["v"] * 4
    wait_for(lambda: c.get_many("default", "added", "many") == [None] * 3, timeout=5,
             what="default timeout")
    assert c.get("never") == "v"


def test_default_timeout_zero_never_expires(make_cache):
    c = make_cache(default_timeout=0)
    c.set("k", "v")
    c.set("short", "v", timeout=1)
    wait_for(lambda: c.get("short") is None, timeout=5, what="1 s timeout")
    assert c.get("k") == "v"


@pytest.mark.parametrize("timeout", [math.inf, 1e16, 2 ** 63, 10 ** 30])
def test_a_timeout_beyond_any_clock_never_expires(c, timeout):
    # SimpleCache stores these (its expiry time is just very far away).
    assert c.set("k", "v", timeout=timeout) is True
    assert c.add("a", "v", timeout=timeout) is True
    assert c.set_many({"m": 1}, timeout=timeout) == ["m"]
    assert c.get_many("k", "a", "m") == ["v", "v", 1]
    assert c.has("k") and c.has("a") and c.has("m")


def test_a_default_timeout_of_infinity_never_expires(make_cache):
    c = make_cache(default_timeout=math.inf)
    assert c.set("k", "v") is True
    assert c.inc("n") == 1
    assert c.get_many("k", "n") == ["v", 1]


# ---------------------------------------------------------------------------
# lmc only


@pytest.fixture
def lc(tmpdir_shm):
    c = LmcCache(os.path.join(tmpdir_shm, "c"), default_timeout=300, map_size=64 << 20)
    yield c
    c.lmc.close()


def test_ints_are_stored_as_decimal_text(lc):
    lc.set("n", 42)
    assert lc.lmc.get("n") == b"42"
    lc.set("neg", -7)
    assert lc.lmc.get("neg") == b"-7"
    assert lc.inc("n") == 43
    assert lc.lmc.get("n") == b"43"      # lmc_incr did it: still decimal text
    lc.set("b", True)                    # bool is not stored as 1
    assert lc.lmc.get("b")[0] == 0x80
    lc.set("huge", 2 ** 64)              # beyond int64: pickled
    assert lc.lmc.get("huge")[0] == 0x80


def test_a_counter_that_leaves_64_bits_and_comes_back_is_decimal_text_again(lc):
    lc.set("n", 2 ** 63 - 1, timeout=0)
    assert lc.inc("n") == 2 ** 63
    assert lc.lmc.get("n")[0] == 0x80            # beyond int64: pickled
    assert lc.dec("n") == 2 ** 63 - 1
    assert lc.lmc.get("n") == b"9223372036854775807"
    assert lc.lmc.incr("n", -1) == 2 ** 63 - 2   # lmc_incr's own path works again


def test_inc_beyond_64_bits_keeps_the_timeout(tmpdir_shm):
    c = LmcCache(os.path.join(tmpdir_shm, "c"), default_timeout=0, map_size=SMALL_MAP)
    c.set("window", 2 ** 63 - 1, timeout=0.15)
    assert c.inc("window") == 2 ** 63
    wait_for(lambda: not c.has("window"), what="the counter's window to end")
    c.lmc.close()


def test_inc_beyond_64_bits_is_atomic_across_processes(lc):
    lc.set("n", 2 ** 63 - 100)

    def work(i):
        for _ in range(100):
            lc.inc("n")
        return 0

    assert _children(3, work) == [0, 0, 0]
    assert lc.get("n") == 2 ** 63 + 200


def test_counters_written_by_other_programs_are_ints(lc):
    lc.lmc.set("hits", b"17")           # as `lmc PATH set hits 17` would
    assert lc.get("hits") == 17
    assert lc.inc("hits") == 18


def test_foreign_bytes_come_back_as_bytes(lc):
    lc.lmc.set("raw", b"hello from C")
    assert lc.get("raw") == b"hello from C"


def test_damaged_pickle_reads_as_none_with_a_warning(lc, caplog):
    lc.lmc.set("bad", b"\x80\x05garbage")
    with caplog.at_level(logging.WARNING, logger="lmc.cachelib"):
        assert lc.get("bad") is None
    assert "cannot unpickle" in caplog.text
    assert lc.has("bad")


class Tracked:
    """Counts how often instances are unpickled."""

    loads = 0

    def __setstate__(self, state):
        Tracked.loads += 1
        self.__dict__.update(state)


def test_has_reads_no_value(lc):
    obj = Tracked()
    obj.x = 1
    lc.set("t", obj)
    Tracked.loads = 0
    assert lc.has("t")
    assert Tracked.loads == 0
    assert lc.get("t").x == 1
    assert Tracked.loads == 1


def test_float_timeouts_are_honoured(lc):
    lc.set("k", "v", timeout=0.15)
    t0 = time.monotonic()
    wait_for(lambda: lc.get("k") is None, what="0.15 s timeout")
    assert time.monotonic() - t0 < 2


def test_timeouts_beyond_what_lmc_stores_mean_never(lc):
    """lmc keeps expiry times in milliseconds in 64 bits, which end 292
    million years after 1970; a longer timeout, and inf, is stored as no
    expiry at all, as a timeout of 0 is."""
    for t in (math.inf, 1e15 + 1, 10 ** 30):
        assert lc.set(f"k{t}", "v", timeout=t) is True
    assert lc.lmc.stats()["entries_with_ttl"] == 0
    assert lc.set("longest", "v", timeout=1e15) is True      # 31 million years: kept
    assert lc.lmc.stats()["entries_with_ttl"] == 1


def test_a_nan_timeout_is_a_clear_value_error(tmpdir_shm, lc):
    lc.set("k", "old")
    for call in (lambda: lc.set("k", "new", timeout=math.nan),
                 lambda: lc.add("k2", "new", timeout=math.nan),
                 lambda: lc.set_many({"k": "new"}, timeout=math.nan)):
        with pytest.raises(ValueError, match="timeout is NaN"):
            call()
    assert lc.get("k") == "old" and not lc.has("k2")
    with pytest.raises(ValueError, match="default_timeout is NaN"):
        LmcCache(os.path.join(tmpdir_shm, "c"), default_timeout=math.nan)


def test_add_replaces_an_expired_entry(lc):
    # SimpleCache.add() refuses while an expired entry is still in its dict;
    # lmc treats an expired entry as absent everywhere.
    lc.set("k", "old", timeout=0.05)
    wait_for(lambda: not lc.has("k"), what="expiry")
    assert lc.add("k", "new") is True
    assert lc.get("k") == "new"


def test_inc_creates_with_default_timeout_and_keeps_existing_timeout(tmpdir_shm):
    c = LmcCache(os.path.join(tmpdir_shm, "c"), default_timeout=0.15, map_size=SMALL_MAP)
    c.set("kept", 1, timeout=0)
    c.inc("new")
    c.inc("kept")
    wait_for(lambda: not c.has("new"), what="inc-created key to expire")
    assert c.get("kept") == 2
    c.lmc.close()


def test_inc_on_a_pickled_number_keeps_its_timeout(tmpdir_shm):
    # The compare-and-swap path (a float) must keep the timeout as the integer
    # path does: a counter with a window expires when the window ends.
    c = LmcCache(os.path.join(tmpdir_shm, "c"), default_timeout=0, map_size=SMALL_MAP)
    c.set("window", 1.5, timeout=0.15)
    c.set("forever", 0.5, timeout=0)
    assert c.inc("window") == 2.5
    assert c.inc("forever") == 1.5
    wait_for(lambda: not c.has("window"), what="float counter's window to end")
    assert c.get("forever") == 1.5
    c.lmc.close()


def test_key_prefix_isolates_apps_sharing_one_cache(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "shared")
    a = LmcCache(path, key_prefix="a/", map_size=SMALL_MAP)
    b = LmcCache(path, key_prefix="b/")
    bare = LmcCache(path)
    a.set("k", "from a")
    b.set("k", "from b")
    bare.set("z", "bare")
    assert a.get("k") == "from a" and b.get("k") == "from b"
    assert sorted(bare.lmc.keys()) == [b"a/k", b"b/k", b"z"]
    assert a.clear() is True            # removes only a/
    assert a.get("k") is None and b.get("k") == "from b" and bare.get("z") == "bare"
    b.set("view//items/1", 1)
    b.set("view//items/2", 2)
    b.set("view//other/1", 3)
    assert b.delete_prefix("view//items/") == 2
    assert b.get("view//other/1") == 3
    assert bare.clear() is True         # no prefix: everything
    assert bare.lmc.keys() == []
    for x in (a, b, bare):
        x.lmc.close()


def test_empty_key_without_prefix_raises(lc):
    with pytest.raises(ValueError):
        lc.set("", 1)
    with pytest.raises(ValueError):
        lc.get("")


def test_backend_errors_are_false_not_exceptions(tmpdir_shm, caplog):
    c = LmcCache(os.path.join(tmpdir_shm, "tiny"), map_size=1 << 20)
    too_big = b"x" * (2 << 20)
    with caplog.at_level(logging.WARNING, logger="lmc.cachelib"):
        assert c.set("k", too_big) is False
        assert c.add("k", too_big) is False
        assert c.set_many({"a": 1, "k": too_big}) == []
    assert "LMC_ETOOBIG" in caplog.text
    assert c.get("a") is None  # set_many is all or nothing
    c.lmc.close()


def test_read_only_cache_refuses_writes_softly(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "ro")
    rw = LmcCache(path, map_size=SMALL_MAP)
    rw.set("k", "v")
    ro = LmcCache(path, readonly=True)
    assert ro.get("k") == "v"
    assert ro.set("k", "w") is False
    assert ro.inc("n") is None
    assert ro.clear() is False
    assert rw.get("k") == "v"
    ro.lmc.close()
    rw.lmc.close()


def test_accepts_an_open_lmc_cache(tmpdir_shm):
    raw = lmc.Cache(os.path.join(tmpdir_shm, "c"), map_size=SMALL_MAP)
    c = LmcCache(raw, key_prefix="p:")
    c.set("k", [1])
    assert pickle.loads(raw.get("p:k")) == [1]
    raw.close()


def _children(n, fn):
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = fn(i)
            finally:
                os._exit(code)
        pids.append(pid)
    return [wait_child(p) for p in pids]


def test_inc_is_atomic_across_processes(lc):
    """4 processes increment one counter 500 times each through handles
    inherited over fork(): no increment is lost."""
    lc.set("n", 0)

    def work(i):
        for _ in range(500):
            lc.inc("n")
            lc.dec("d", 2)
        return 0

    assert _children(4, work) == [0, 0, 0, 0]
    assert lc.get("n") == 2000
    assert lc.get("d") == -4000


def test_add_is_atomic_across_processes(lc):
    """8 processes race to add one key: exactly one wins, and the stored
    value is the winner's."""
    def work(i):
        won = lc.add("lock", f"owner {i}")
        if won:
            lc.lmc.incr(b"winners")
        return 0 if won else 3

    codes = _children(8, work)
    winners = [i for i, c in enumerate(codes) if c == 0]
    assert sorted(set(codes)) == [0, 3] and len(winners) == 1
    assert lc.get("lock") == f"owner {winners[0]}"
    assert lc.lmc.get(b"winners") == b"1"


def test_cas_fallback_inc_is_atomic_across_processes(lc):
    """inc() on a pickled float goes through compare-and-swap: concurrent
    processes still lose no update."""
    lc.set("f", 0.5)

    def work(i):
        for _ in range(200):
            lc.inc("f")
        return 0

    assert _children(3, work) == [0, 0, 0]
    assert lc.get("f") == 600.5


def test_a_forked_child_sees_and_writes_the_same_entries(lc):
    lc.set("from parent", {"x": 1})

    def child():
        assert lc.get("from parent") == {"x": 1}
        lc.set("from child", [os.getpid()])

    assert run_forked(child) == 0
    assert isinstance(lc.get("from child")[0], int)


# ---- keys longer than lmc can store ---------------------------------------

# lmc keys are 1 to 65536 bytes (LMC_MAX_KEY in include/lmc.h), counted after
# key_prefix is added and the key is encoded as UTF-8.
MAX_KEY = 65536


def test_a_key_over_64_kib_behaves_as_a_key_never_stored(tmpdir_shm, caplog):
    """Such a key often comes from user input (a long URL under
    @cache.cached): every call answers as for a key that is not in the cache,
    as cachelib's MemcachedCache does for keys memcached cannot hold, instead
    of set() failing softly while get()/has()/delete() raise."""
    c = LmcCache(os.path.join(tmpdir_shm, "c"), key_prefix="app/", map_size=SMALL_MAP)
    longest = "k" * (MAX_KEY - len("app/"))
    too_long = longest + "k"
    wide = "é" * (MAX_KEY // 2 - 1)      # fewer characters than bytes in UTF-8
    assert c.set(longest, "fits") is True and c.get(longest) == "fits"
    with caplog.at_level(logging.WARNING, logger="lmc.cachelib"):
        for key in (too_long, wide):
            assert c.set(key, "v") is False
            assert c.add(key, "v") is False
            assert c.inc(key) is None and c.dec(key) is None
            assert c.get(key) is None
            assert c.has(key) is False
            assert c.delete(key) is False
            assert c.get_many("a", key, longest) == [None, None, "fits"]
            assert c.get_dict(key) == {key: None}
            assert c.delete_many(key, "missing") == []
            # The keys that can be stored are, in one transaction.
            assert c.set_many({"a": 1, key: 2, "b": 3}) == ["a", "b"]
            assert c.get_many("a", "b") == [1, 3]
            assert c.delete_many("a", key, "b") == ["a", "b"]
            assert c.delete_prefix(key) == 0
            # Already expired: nothing to store, which is what happens anyway.
            assert c.set(key, "v", timeout=-1) is True
            assert c.add(key, "v", timeout=-1) is True
    assert c.get(longest) == "fits"
    assert sorted(c.lmc.keys()) == [("app/" + longest).encode()]
    c.lmc.close()


def test_log_messages_never_hold_a_whole_key(tmpdir_shm, caplog):
    c = LmcCache(os.path.join(tmpdir_shm, "c"), map_size=1 << 20)
    long_key = "q" * 70_000
    with caplog.at_level(logging.WARNING, logger="lmc.cachelib"):
        assert c.set(long_key, "v") is False
        assert c.inc(long_key) is None
        assert c.set("x" * 60_000, b"v" * (2 << 20)) is False       # value too big
        assert c.set_many({"y" * 60_000: b"v" * (2 << 20)}) == []
    messages = [r.getMessage() for r in caplog.records]
    # Lengths, not the messages, so that a failure does not print 70 KB.
    assert [len(m) < 600 for m in messages] == [True] * 4
    assert ["70000 characters" in m or "60000 characters" in m for m in messages] == [True] * 4
    c.lmc.close()


# ---- serializers: pickle by default, JSON for caches a group shares --------


class Planted:
    """An entry that runs code when unpickled, as any member of a group that
    shares a cache (mode 0660) could write one: here it creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_json_serializer_never_runs_a_planted_pickle(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "c")
    marker = os.path.join(tmpdir_shm, "code ran")
    jc = LmcCache(path, serializer="json", map_size=SMALL_MAP)
    planted = pickle.dumps(Planted(marker), pickle.HIGHEST_PROTOCOL)
    jc.lmc.set("k", planted)
    assert jc.get("k") == planted          # not JSON: the bytes, as they are
    assert jc.get_many("k") == [planted]
    assert not os.path.exists(marker)
    # The same entry read with pickle runs the writer's code: the danger the
    # JSON serializer removes.
    pc = LmcCache(path, serializer="pickle")
    pc.get("k")
    assert os.path.exists(marker)
    jc.lmc.close()
    pc.lmc.close()


@pytest.fixture
def jc(tmpdir_shm):
    c = LmcCache(os.path.join(tmpdir_shm, "c"), serializer="json", map_size=SMALL_MAP)
    yield c
    c.lmc.close()


@pytest.mark.parametrize("value", [None, True, False, 0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 70,
                                   1.5, -0.0, 1e300, "", "0", "текст \u2028 \x00", "\ud800",
                                   [], {}, [1, "two", 3.0, None],
                                   {"a": [1, {"b": None}], "": False}])
def test_json_values_come_back_as_stored(jc, value):
    assert jc.set("k", value) is True
    got = jc.get("k")
    assert got == value and type(got) is type(value)
    assert jc.get_many("k") == [value]


@pytest.mark.parametrize("value", [(1, 2), {1: "a"}, {"a": (1,)}, [{None: 1}], b"bytes",
                                   {1, 2}, object(), math.nan, math.inf, [math.nan]])
def test_json_refuses_what_it_would_not_give_back(jc, value):
    # A tuple would come back a list and an int key a str: refused rather
    # than changed.  Raised like a pickling error, and nothing is stored.
    jc.set("k", "old")
    with pytest.raises(TypeError, match="json"):
        jc.set("k", value)
    with pytest.raises(TypeError, match="json"):
        jc.set_many({"k": value})
    assert jc.get("k") == "old"


def test_json_counters_are_decimal_text_and_inc_works(jc):
    jc.set("n", 5)
    assert jc.lmc.get("n") == b"5"
    assert jc.inc("n") == 6 and jc.lmc.get("n") == b"6"
    jc.set("f", 1.5)
    assert jc.inc("f") == 2.5 and jc.lmc.get("f") == b"2.5"
    jc.set("big", 2 ** 63 - 1)
    assert jc.inc("big") == 2 ** 63
    assert jc.lmc.get("big") == b"9223372036854775808"   # JSON, still decimal text
    assert jc.inc("big") == 2 ** 63 + 1
    assert jc.get("big") == 2 ** 63 + 1


def test_json_reads_what_other_programs_wrote(jc):
    jc.lmc.set("raw", b"hello from C")           # not JSON: bytes
    jc.lmc.set("hits", b"17")                    # as `lmc PATH set hits 17` would
    jc.lmc.set("doc", b'{"a": [1, 2]}')
    jc.lmc.set("deep", b"[" * 100_000)
    assert jc.get_many("raw", "hits", "doc") == [b"hello from C", 17, {"a": [1, 2]}]
    assert jc.get("deep") == b"[" * 100_000


def test_serializer_choices(tmpdir_shm):
    path = os.path.join(tmpdir_shm, "c")
    with pytest.raises(ValueError, match="'pickle', 'json'"):
        LmcCache(path, serializer="yaml", map_size=SMALL_MAP)

    class Upper:
        def dumps(self, value):
            return value.upper().encode()

        def loads(self, data):
            return None if data is None else data.decode()

    c = LmcCache(path, serializer=Upper(), map_size=SMALL_MAP)
    c.set("k", "shout")
    assert c.lmc.get("k") == b"SHOUT" and c.get("k") == "SHOUT"

    class Subclassed(LmcCache):      # how cachelib's own backends choose one
        serializer = Upper()

    assert Subclassed(c.lmc).get("k") == "SHOUT"
    c.lmc.close()


@pytest.mark.parametrize("mode, serializer, warned", [
    (0o660, None, True),        # the group can write, values are pickled
    (0o660, "json", False),
    (0o660, "pickle", False),   # chosen explicitly: the group is trusted
    (0o640, None, False),       # the group can only read
    (0, None, False),
])
def test_a_group_writable_pickled_cache_is_warned_about(tmpdir_shm, caplog, mode, serializer,
                                                        warned):
    with caplog.at_level(logging.WARNING, logger="lmc.cachelib"):
        c = LmcCache(os.path.join(tmpdir_shm, "c"), mode=mode, serializer=serializer,
                     map_size=SMALL_MAP)
    assert ("serializer='json'" in caplog.text) is warned
    if warned:
        assert "run code" in caplog.text
    c.lmc.close()
