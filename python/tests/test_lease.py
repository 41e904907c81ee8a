"""Fill leases from Python: Cache.get_lease, lmc.Lease, Cache.get_or_set and
the cachelib backend's get_or_set, with real forked processes.

What is proven:
- 64 processes that call get_or_set on one missing key compute it exactly
  once; the other 63 get the value computed.
- With grace, 64 processes that find the value stale get it at once: the one
  handed the refresh does not finish it until the 63 others have returned,
  so a caller that waited would hang the test instead of passing it.
- A refresh that raises keeps the stale value during the grace, and is
  counted (refresh_failures).
- A holder SIGKILLed while a waiter waits is taken over: the waiter computes
  and stores the value itself.
- A waiter releases the GIL: the thread holding the lease fills it while the
  other one waits, which could not happen if the wait held the GIL.
- Leases end when a with block or the Lease object ends without a fill, so
  the next caller takes the lease at once; bad input raises a clear error.
"""
import gc
import os
import signal
import threading
import time

import pytest
from conftest import SMALL_MAP, wait_child, wait_for

import lmc
from lmc.cachelib import LmcCache

LEASE_COUNTERS = ("lease_grants", "lease_waits", "lease_wait_us", "lease_wait_timeouts",
                  "lease_takeovers_dead", "lease_takeovers_expired", "stale_served",
                  "refresh_failures", "early_refreshes")


def counters(c):
    st = c.stats()
    return {k: st[k] for k in LEASE_COUNTERS}


def delta(c, before):
    now = counters(c)
    return {k: now[k] - before[k] for k in LEASE_COUNTERS if now[k] != before[k]}


def make_stale(c, key, value, grace=600):
    """Store value under key with a TTL of 50 ms and the grace given, and
    return once plain reads see it expired (it is then stale, within its
    grace)."""
    outcome, _, lease = c.get_lease(key)
    assert outcome == lmc.LEASE_FILL
    assert lease.fill(value, 0.05, grace)
    wait_for(lambda: c.get(key) is None, what="the entry to expire")


def start_gate():
    """A pipe whose read end every child blocks on until the parent closes
    the write end: all children start at once."""
    r, w = os.pipe()
    return r, w


def fork_all(n, body, gate):
    """Fork n children that run body() once the gate opens; returns their
    pids.  The parent opens the gate with open_gate()."""
    gate_r, gate_w = gate
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(gate_w)  # only the parent's copy may keep it open
                os.read(gate_r, 1)  # EOF when the parent opens the gate
                body()
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def open_gate(gate):
    os.close(gate[0])
    os.close(gate[1])


# ---------------------------------------------------------------------------
# The low-level API in one process


def test_constants_are_the_c_values():
    assert (lmc.LEASE_HIT, lmc.LEASE_STALE, lmc.LEASE_FILL, lmc.LEASE_REFRESH,
            lmc.LEASE_TIMEOUT) == (0, 1, 2, 3, 4)
    assert isinstance(lmc.Lease, type)


def test_miss_fill_hit(cache):
    before = counters(cache)
    outcome, value, lease = cache.get_lease("page")
    assert (outcome, value) == (lmc.LEASE_FILL, None)
    assert isinstance(lease, lmc.Lease) and lease.held
    assert lease.key == b"page" and lease.token > 0
    assert abs(lease.granted - time.time()) < 60
    # Held: another caller that does not wait is told to compute uncached.
    assert cache.get_lease(b"page") == (lmc.LEASE_TIMEOUT, None, None)
    assert cache.get(b"page") is None and cache.keys() == []  # invisible
    assert lease.fill(bytearray(b"<html>"), 60) is True
    assert not lease.held
    assert cache.get_lease("page") == (lmc.LEASE_HIT, b"<html>", None)
    # A lease is filled once; afterwards both calls say it is not held.
    assert lease.fill(b"again") is False and lease.abandon() is False
    assert cache.get(b"page") == b"<html>"
    assert delta(cache, before) == {"lease_grants": 1, "lease_wait_timeouts": 1}
    assert "held" not in repr(lease) and "page" in repr(lease)


def test_fill_timeout_follows_set(cache_path):
    c = lmc.Cache(cache_path, map_size=SMALL_MAP, default_timeout=0.05)
    _, _, lease = c.get_lease("d")
    assert lease.fill(b"v")  # None: the default timeout, 50 ms
    wait_for(lambda: c.get("d") is None, what="the default timeout")
    c.set("k", b"old", 600)
    _, _, lease = c.get_lease("k2")
    assert lease.fill(b"v", 0)  # 0: never expires
    assert c.get("k2") == b"v"
    c.close()


def test_a_write_while_held_ends_the_lease(cache):
    _, _, lease = cache.get_lease("k")
    cache.set("k", b"set")
    assert lease.fill(b"computed") is False
    assert cache.get("k") == b"set"
    _, _, lease = cache.get_lease("gone")
    cache.delete("gone")
    assert lease.abandon() is False


def test_with_block_abandons_an_unfilled_lease(cache):
    before = counters(cache)
    with pytest.raises(KeyError):
        with cache.get_lease("k")[2] as lease:
            assert lease.held
            raise KeyError("the computation failed")
    assert not lease.held
    # Given up at once: the next caller gets the lease without waiting and
    # without a takeover.
    outcome, _, lease2 = cache.get_lease("k", wait=0)
    assert outcome == lmc.LEASE_FILL
    with lease2:
        assert lease2.fill(b"v")
    assert cache.get("k") == b"v"
    assert delta(cache, before) == {"lease_grants": 2}


def test_a_dropped_lease_is_abandoned(cache):
    cache.get_lease("k")  # the Lease is dropped at once
    gc.collect()
    assert cache.get_lease("k", wait=0)[0] == lmc.LEASE_FILL
    assert cache.stats()["lease_takeovers_expired"] == 0


def test_a_forked_child_does_not_end_its_parents_lease(cache):
    _, _, lease = cache.get_lease("k")

    def child():
        nonlocal lease
        del lease  # the child's copy goes away: the parent's lease stays
        gc.collect()
        assert cache.get_lease("k", wait=0)[0] == lmc.LEASE_TIMEOUT

    pid = os.fork()
    if pid == 0:
        try:
            child()
            os._exit(0)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(1)
    assert wait_child(pid) == 0
    assert lease.held and lease.fill(b"parent's")
    assert cache.get("k") == b"parent's"


def test_a_lease_keeps_its_cache_alive(cache_path):
    c = lmc.Cache(cache_path, map_size=SMALL_MAP)
    lease = c.get_lease("k")[2]
    del c
    gc.collect()
    assert lease.fill(b"v")
    with lmc.Cache(cache_path) as c2:
        assert c2.get("k") == b"v"


def test_a_lease_of_a_closed_cache_raises(cache_path):
    c = lmc.Cache(cache_path, map_size=SMALL_MAP)
    lease = c.get_lease("k")[2]
    c.close()
    with pytest.raises(ValueError, match="closed"):
        lease.fill(b"v")
    with pytest.raises(ValueError, match="closed"):
        lease.abandon()
    # Leaving a with block on an exception does not hide it behind this.
    with pytest.raises(ZeroDivisionError):
        with lease:
            1 / 0


def test_grace_stale_and_refresh(cache):
    make_stale(cache, "v", b"old")
    before = counters(cache)
    outcome, value, lease = cache.get_lease("v")
    assert (outcome, value) == (lmc.LEASE_REFRESH, b"old") and lease.held
    # While one refreshes, the others get the stale value at once, even
    # when they would wait.
    t0 = time.monotonic()
    assert cache.get_lease("v", wait=30) == (lmc.LEASE_STALE, b"old", None)
    assert time.monotonic() - t0 < 10
    assert lease.fill(b"new", 60, grace=600)
    assert cache.get_lease("v") == (lmc.LEASE_HIT, b"new", None)
    assert delta(cache, before) == {"lease_grants": 1, "stale_served": 1}


def test_early_refresh_hands_out_the_lease_before_expiry(cache):
    _, _, lease = cache.get_lease("hot")
    lease.fill(b"v", 0.5)
    # beta 1000 refreshes anything that took any time to compute as soon as
    # a call comes; far from expiry with early=0 nothing refreshes.
    assert all(cache.get_lease("hot")[0] == lmc.LEASE_HIT for _ in range(100))
    got = [cache.get_lease("hot", early=1000) for _ in range(50)]
    refresh = [g for g in got if g[0] == lmc.LEASE_REFRESH]
    if refresh:  # a value computed in under a millisecond may never be picked
        assert refresh[0][1] == b"v" and refresh[0][2].held
        assert cache.stats()["early_refreshes"] == 1


def test_bad_input_is_a_clear_error(cache):
    for kw, match in ((dict(lease_time=0), "lease_time must be a positive"),
                      (dict(lease_time=-1), "lease_time"),
                      (dict(lease_time=float("nan")), "lease_time"),
                      (dict(lease_time=float("inf")), "lease_time"),
                      (dict(lease_time=1e300), "lease_time"),
                      (dict(wait=-0.001), "wait must be 0 or more"),
                      (dict(wait=float("nan")), "wait"),
                      (dict(wait=10 ** 400), "wait"),
                      (dict(early=-1), "early must be 0"),
                      (dict(early=1001), "early"),
                      (dict(early=float("nan")), "early")):
        with pytest.raises(ValueError, match=match):
            cache.get_lease("k", **kw)
    for kw in (dict(lease_time="1"), dict(wait=b"1"), dict(early=None)):
        with pytest.raises(TypeError):
            cache.get_lease("k", **kw)
    with pytest.raises(TypeError, match="unexpected keyword"):
        cache.get_lease("k", waiting=1)
    with pytest.raises(lmc.InvalidArgumentError):
        cache.get_lease(b"")
    with pytest.raises(lmc.TooBigError):
        cache.get_lease(b"k" * 70000)
    with pytest.raises(TypeError, match="key must be"):
        cache.get_lease(42)
    # None of that took a lease; the largest sane times work.
    assert cache.stats()["lease_grants"] == 0
    outcome, _, lease = cache.get_lease("k", lease_time=1e9, wait=0, early=1000)
    assert outcome == lmc.LEASE_FILL
    for args, exc, match in (((b"v", 1, -1), ValueError, "grace must be 0 or more"),
                             ((b"v", 1, 1e7), ValueError, "grace"),
                             ((b"v", -1), ValueError, "timeout"),
                             ((b"v", float("nan")), ValueError, "timeout"),
                             (("str",), TypeError, "bytes-like"),
                             ((b"v", "1"), TypeError, "timeout")):
        with pytest.raises(exc, match=match):
            lease.fill(*args)
        assert lease.held  # refused before the call: the lease is still held
    assert lease.fill(b"v", 1, 4294967.295)  # the longest grace, 2^32 - 1 ms
    with pytest.raises(TypeError):
        cache.get_or_set("k2", b"not callable")
    with pytest.raises(ValueError, match="grace"):
        cache.get_or_set("k2", lambda: b"v", grace=-1)
    with pytest.raises(ValueError, match="wait"):
        cache.get_or_set("k2", lambda: b"v", wait=-1)
    # A read-only handle takes no leases; get_or_set still gets its hits.
    with lmc.Cache(cache.path, readonly=True) as ro:
        with pytest.raises(lmc.ReadOnlyError):
            ro.get_lease("missing")
        assert ro.get_lease("k", early=1000) == (lmc.LEASE_HIT, b"v", None)
        assert ro.get_or_set("k", lambda: b"never called") == b"v"
        with pytest.raises(lmc.ReadOnlyError):
            ro.get_or_set("missing", lambda: b"x")


def test_a_lease_taken_over_cannot_be_filled(cache):
    _, _, stuck = cache.get_lease("slow", lease_time=0.05)
    # After its lease time another caller takes it over.
    got = wait_for(lambda: (lambda g: g if g[0] == lmc.LEASE_FILL else None)(
        cache.get_lease("slow", wait=0)), what="the takeover")
    assert stuck.fill(b"late") is False and not stuck.held
    assert got[2].fill(b"new")
    assert cache.get("slow") == b"new"
    assert cache.stats()["lease_takeovers_expired"] == 1


def test_stats_carry_the_lease_counters(cache):
    st = cache.stats()
    for name in LEASE_COUNTERS:
        assert name in st and st[name] == 0
    cache.get_or_set("k", lambda: b"v")
    assert cache.stats()["lease_grants"] == 1


# ---------------------------------------------------------------------------
# get_or_set in one process


def test_get_or_set_basics(cache):
    calls = []

    def fn():
        calls.append(1)
        return bytearray(b"value")

    assert cache.get_or_set("k", fn, 60) == b"value"
    assert type(cache.get_or_set("k", fn)) is bytes
    assert calls == [1]
    before = counters(cache)
    for _ in range(100):
        assert cache.get_or_set("k", fn) == b"value"
    assert delta(cache, before) == {}  # a fresh hit takes no lease
    # None: returned, not stored, the lease given up.
    assert cache.get_or_set("none", lambda: None) is None
    assert cache.get_lease("none", wait=0)[0] == lmc.LEASE_FILL
    # A value get() could not give back is refused, and the lease given up.
    with pytest.raises(TypeError, match="bytes-like"):
        cache.get_or_set("str", lambda: "text")
    assert cache.get_lease("str", wait=0)[0] == lmc.LEASE_FILL
    # KEEP_TTL and the default timeout work as in set().
    assert cache.get_or_set("keep", lambda: b"x", lmc.KEEP_TTL) == b"x"


def test_get_or_set_raising_gives_the_lease_up(cache):
    def boom():
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        cache.get_or_set("k", boom)
    assert cache.get_lease("k", wait=0)[0] == lmc.LEASE_FILL  # no wait, no takeover
    assert cache.stats()["lease_takeovers_expired"] == 0


def test_get_or_set_after_the_wait_computes_without_storing(cache):
    _, _, lease = cache.get_lease("k")
    assert cache.get_or_set("k", lambda: b"mine", wait=0.01) == b"mine"
    assert cache.get("k") is None
    assert lease.fill(b"holder's")  # the holder's fill was not overwritten
    assert cache.get("k") == b"holder's"
    assert cache.stats()["lease_wait_timeouts"] == 1


def test_get_or_set_refresh_returns_the_new_value(cache):
    make_stale(cache, "k", b"old")
    assert cache.get_or_set("k", lambda: b"new", 60, grace=60) == b"new"
    assert cache.get("k") == b"new"


def test_a_refresh_that_raises_keeps_the_stale_value(cache):
    make_stale(cache, "k", b"old")
    before = counters(cache)

    def boom():
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError):
        cache.get_or_set("k", boom, 60, grace=600)
    assert delta(cache, before) == {"lease_grants": 1, "refresh_failures": 1}
    # The stale value stays: the next caller is handed the refresh of it.
    outcome, value, lease = cache.get_lease("k")
    assert (outcome, value) == (lmc.LEASE_REFRESH, b"old")
    # ... and while that one refreshes, get_or_set gets the stale value.
    assert cache.get_or_set("k", lambda: b"never called") == b"old"
    lease.abandon()


def test_fn_cannot_close_the_cache_under_its_lease(cache):
    def closes():
        cache.close()
        return b"v"

    with pytest.raises(lmc.BusyError):
        cache.get_or_set("k", closes)
    assert not cache.closed
    assert cache.get_lease("k", wait=0)[0] == lmc.LEASE_FILL


def test_the_wait_releases_the_gil(cache):
    """A thread waits for the fill of a lease this thread holds: the fill
    can only happen if the waiting thread let go of the GIL."""
    _, _, lease = cache.get_lease("k")
    result = {}
    entered = threading.Event()

    def waiter():
        entered.set()
        result["got"] = cache.get_lease("k", wait=60)

    t = threading.Thread(target=waiter)
    t.start()
    entered.wait(10)
    # Until the waiter is asleep in the library (it counts the wait when it
    # ends, so watch its thread instead): Python code runs meanwhile.
    spins = 0
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        spins += 1
    assert lease.fill(b"filled while the other thread waited")
    t.join(30)
    assert not t.is_alive()
    assert result["got"] == (lmc.LEASE_HIT, b"filled while the other thread waited", None)
    assert spins > 1000
    st = cache.stats()
    # It did wait (rather than arrive after the fill), and was not timed out.
    assert st["lease_waits"] == 1 and st["lease_wait_timeouts"] == 0


# ---------------------------------------------------------------------------
# Processes

NPROC = 64


def test_64_processes_compute_a_missing_key_once(cache):
    before = counters(cache)
    gate = start_gate()

    def compute():
        cache.incr(b"computed")
        time.sleep(0.05)  # long enough for the others to pile up (not needed to pass)
        return b"the page"

    def body():
        assert cache.get_or_set(b"front", compute, 60, wait=60) == b"the page"

    pids = fork_all(NPROC, body, gate)
    open_gate(gate)
    assert [wait_child(p, 120) for p in pids] == [0] * NPROC
    assert cache.get(b"computed") == b"1"
    d = delta(cache, before)
    assert d["lease_grants"] == 1
    assert "lease_wait_timeouts" not in d and "lease_takeovers_dead" not in d


def test_with_grace_64_processes_get_the_stale_value_and_none_waits(cache):
    make_stale(cache, b"front", b"old page")
    before = counters(cache)
    gate = start_gate()

    def refresh():
        cache.incr(b"computed")
        # Finish only when the 63 others have their answer: one of them
        # waiting for this fill would hang here (and fail the test).
        deadline = time.monotonic() + 60
        while int(cache.get(b"served") or 0) < NPROC - 1:
            assert time.monotonic() < deadline, "the others did not all get the stale value"
            time.sleep(0.002)
        return b"new page"

    def body():
        got = cache.get_or_set(b"front", refresh, 60, grace=600, wait=60)
        if got == b"old page":
            cache.incr(b"served")
        else:
            assert got == b"new page"

    pids = fork_all(NPROC, body, gate)
    open_gate(gate)
    assert [wait_child(p, 120) for p in pids] == [0] * NPROC
    assert cache.get(b"computed") == b"1"
    assert cache.get(b"served") == b"%d" % (NPROC - 1)
    assert cache.get(b"front") == b"new page"
    d = delta(cache, before)
    assert d["lease_grants"] == 1 and d["stale_served"] == NPROC - 1
    assert "lease_waits" not in d


def test_a_sigkilled_holder_is_taken_over(cache):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            outcome, _, lease = cache.get_lease(b"k")
            os.write(w, b"%d" % outcome)
            while True:  # computing, for ever
                time.sleep(1)
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 8) == b"%d" % lmc.LEASE_FILL
    os.close(r)
    result = {}
    entered = threading.Event()

    def waiter():
        entered.set()
        result["value"] = cache.get_or_set(b"k", lambda: b"taken over", 60, wait=60)

    t = threading.Thread(target=waiter)
    t.start()
    entered.wait(10)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    t.join(30)
    assert not t.is_alive()
    assert result["value"] == b"taken over"
    assert cache.get(b"k") == b"taken over"
    st = cache.stats()
    assert st["lease_takeovers_dead"] == 1 and st["lease_wait_timeouts"] == 0


# ---------------------------------------------------------------------------
# cachelib


@pytest.fixture
def cl(cache):
    return LmcCache(cache, key_prefix="app/", default_timeout=300)


def test_cachelib_get_or_set(cl, cache):
    calls = []

    def fn():
        calls.append(1)
        return {"n": len(calls), "items": (1, 2)}

    assert cl.get_or_set("doc", fn) == {"n": 1, "items": (1, 2)}
    assert cl.get_or_set("doc", fn) == {"n": 1, "items": (1, 2)}  # unpickled
    assert calls == [1]
    assert cache.keys() == [b"app/doc"]  # the backend's prefix
    assert cl.get("doc") == {"n": 1, "items": (1, 2)}
    assert cl.get_or_set("n", lambda: 42) == 42 and cache.get(b"app/n") == b"42"
    assert cl.inc("n") == 43
    # None is returned and not stored, like a miss.
    assert cl.get_or_set("none", lambda: None) is None and not cl.has("none")
    # cachelib's timeouts: a negative one computes and stores nothing.
    assert cl.get_or_set("neg", lambda: 1, timeout=-1) == 1 and not cl.has("neg")
    assert cl.get_or_set("never", lambda: 1, timeout=0) == 1
    assert cl.get_or_set("inf", lambda: 1, timeout=float("inf")) == 1
    with pytest.raises(ValueError, match="NaN"):
        cl.get_or_set("nan", lambda: 1, timeout=float("nan"))
    # A key too long to store is computed every time, never an error.
    assert cl.get_or_set("x" * 70000, lambda: "long") == "long"
    with pytest.raises(RuntimeError):
        cl.get_or_set("boom", lambda: (_ for _ in ()).throw(RuntimeError("x")))
    assert cache.get_lease(b"app/boom", wait=0)[0] == lmc.LEASE_FILL


def test_cachelib_get_or_set_json_refuses_what_it_cannot_store(cache):
    cl = LmcCache(cache, serializer="json")
    with pytest.raises(TypeError, match="json"):
        cl.get_or_set("t", lambda: (1, 2))
    assert cache.get_lease(b"t", wait=0)[0] == lmc.LEASE_FILL  # abandoned


def test_cachelib_get_or_set_grace_serves_stale(cl, cache):
    cl.get_or_set("v", lambda: "old", timeout=0.05, grace=600)
    wait_for(lambda: cl.get("v") is None, what="the entry to expire")
    _, raw, lease = cache.get_lease(b"app/v")  # another caller is refreshing
    assert lease is not None
    assert cl.get_or_set("v", lambda: "never called", timeout=60, grace=600) == "old"
    lease.abandon()
    assert cl.get_or_set("v", lambda: "new", timeout=60, grace=600) == "new"
    assert cl.get("v") == "new"


def test_cachelib_get_or_set_across_processes(cl, cache):
    gate = start_gate()

    def compute():
        cache.incr(b"computed")
        time.sleep(0.05)
        return ["computed", "once"]

    def body():
        assert cl.get_or_set("list", compute, wait=60) == ["computed", "once"]

    pids = fork_all(16, body, gate)
    open_gate(gate)
    assert [wait_child(p, 120) for p in pids] == [0] * 16
    assert cache.get(b"computed") == b"1"
