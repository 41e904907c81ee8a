"""lmc.Cache across os.fork(): a handle opened before fork() keeps working in
the child without any call from the user (the library reopens it on first
use, or when the child calls reopen_after_fork()), the parent's handle is
untouched by anything the child does, and a child killed at any point leaves
the cache usable."""
import os
import signal
import threading
import time

import pytest
from conftest import SMALL_MAP, run_forked, wait_child, wait_for

import lmc


def test_child_reads_and_writes_through_the_inherited_handle(cache):
    cache.set(b"parent", b"p")

    def child():
        assert cache.get(b"parent") == b"p"
        cache.set(b"child", b"%d" % os.getpid())
        assert cache.incr(b"n") == 1
        # The child has its own stats slot: it is a process of its own.
        mine = [p for p in cache.process_stats() if p["pid"] == os.getpid()]
        assert len(mine) == 1 and mine[0]["sets"] >= 1

    assert run_forked(child) == 0
    assert int(cache.get(b"child")) > 0
    assert cache.incr(b"n") == 2
    cache.set(b"parent2", b"still fine")
    assert cache.get(b"parent2") == b"still fine"


def test_reopen_after_fork_where_the_caller_chooses(cache):
    cache.set(b"k", b"v")
    # In the process that opened the cache: nothing to do.
    assert cache.reopen_after_fork() is None
    assert [p["pid"] for p in cache.process_stats()] == [os.getpid()]
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()

    def child():
        # The reopen happens here, not in the first get: the parent sees the
        # child's stats slot before the child made any other call.
        cache.reopen_after_fork()
        cache.reopen_after_fork()  # reopened already: nothing more
        os.write(up_w, b"r")
        os.read(down_r, 1)
        assert cache.get(b"k") == b"v"
        cache.set(b"child", b"1")

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(up_r, 1) == b"r"
        assert any(p["pid"] == pid and p["alive"] for p in cache.process_stats())
    finally:
        os.write(down_w, b"g")
    assert wait_child(pid) == 0
    assert cache.get(b"child") == b"1"
    for fd in (up_r, up_w, down_r, down_w):
        os.close(fd)
    cache.close()
    with pytest.raises(ValueError):
        cache.reopen_after_fork()


def test_child_that_closes_or_ignores_the_handle_leaves_the_parent_alone(cache):
    cache.set(b"k", b"v")
    assert run_forked(lambda: cache.close()) == 0
    assert run_forked(lambda: None) == 0

    def use_then_close():
        cache.get(b"k")
        cache.set(b"c", b"1")
        cache.close()

    assert run_forked(use_then_close) == 0
    assert not cache.closed
    assert cache.get(b"k") == b"v" and cache.get(b"c") == b"1"
    cache.set(b"k", b"w")
    assert cache.get(b"k") == b"w"


def test_grandchildren(cache):
    def child():
        cache.set(b"gen1", b"1")

        def grandchild():
            assert cache.get(b"gen1") == b"1"
            cache.set(b"gen2", b"2")

        assert run_forked(grandchild) == 0
        assert cache.get(b"gen2") == b"2"

    assert run_forked(child) == 0
    assert cache.get_many([b"gen1", b"gen2"]) == [b"1", b"2"]


def test_a_closed_handle_stays_closed_in_the_child(cache_path):
    c = lmc.Cache(cache_path, map_size=SMALL_MAP)
    c.close()

    def child():
        with pytest.raises(ValueError):
            c.get(b"k")

    assert run_forked(child) == 0


def test_parallel_children_share_atomic_counters(cache):
    """Several children write at once through inherited handles: incr and
    add stay exact across processes."""
    pids = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for j in range(300):
                    cache.incr(b"total")
                    cache.add(b"first-%d" % j, b"%d" % i)
                    cache.set(b"last-%d" % i, b"%d" % j)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [wait_child(p) for p in pids] == [0, 0, 0, 0]
    assert cache.get(b"total") == b"1200"
    assert len(cache.keys(b"first-")) == 300
    assert cache.get_many([b"last-%d" % i for i in range(4)]) == [b"299"] * 4


def test_fork_from_a_thread_while_others_read(cache):
    """A fork taken while other threads are inside lmc calls gives a child
    whose inherited handle works (the library's atfork handlers reset its
    locks)."""
    cache.set(b"k", b"v")
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            cache.get(b"k")
            cache.set(b"r", b"x")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            def child():
                assert cache.get(b"k") == b"v"
                cache.set(b"from-child", b"1")

            assert run_forked(child) == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert cache.get(b"from-child") == b"1"


def test_killed_children_leave_the_cache_usable(cache_path):
    """SIGKILL children in the middle of a stream of reads and writes (often
    while one holds LMDB's writer mutex): the parent's writes go on (LMDB's
    robust mutex recovers a lock held by a dead process), and the dead
    children's reader slots are reclaimed, so a reader table with room for
    only 4 threads still serves 4 live readers after 3 children died
    holding slots."""
    with lmc.Cache(cache_path, max_readers=4, map_size=SMALL_MAP) as c:
        c.set(b"k", b"v")
        for round in range(3):
            counter = b"child-writes-%d" % round
            pid = os.fork()
            if pid == 0:
                try:
                    i = 0
                    while True:
                        c.get(b"k")
                        c.set(b"big", b"x" * (i % 5000))
                        c.incr(counter)
                        i += 1
                finally:
                    os._exit(1)
            try:
                wait_for(lambda: int(c.get(counter) or 0) >= 100, what="child writes")
            finally:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)

            done = threading.Event()

            def parent_writes():
                for i in range(50):
                    c.set(b"after", b"%d" % i)
                done.set()

            # In a thread, so that a write blocked for good fails the test
            # instead of hanging it.
            t = threading.Thread(target=parent_writes, daemon=True)
            t.start()
            t.join(20)
            assert done.is_set(), "a write blocked after a writer child was killed"
            assert c.get(b"after") == b"49"

        # This thread holds one slot; three more threads read at once.
        got = []
        barrier = threading.Barrier(4)

        def reader():
            got.append(c.get(b"k"))
            barrier.wait(10)  # keep this thread's slot until all have read

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        barrier.wait(10)
        for t in readers:
            t.join()
        assert got == [b"v"] * 3
        c.sweep()
        assert c.stats()["readers"] <= 4


def test_many_forks_do_not_exhaust_reader_slots(cache_path):
    """Each child takes a reader slot; exited children's slots are
    reclaimed, so more children than max_readers can come and go."""
    with lmc.Cache(cache_path, max_readers=16, map_size=SMALL_MAP) as c:
        c.set(b"k", b"v")
        for _ in range(40):
            assert run_forked(lambda: c.get(b"k") == b"v" or os._exit(2)) == 0
        assert c.get(b"k") == b"v"


def test_gil_is_released_while_waiting_for_another_process_s_write(cache_path):
    """A write that waits for LMDB's writer lock held by another process
    lets the other Python threads of this process run meanwhile.  The child
    holds the lock for a few hundred ms in one big transaction while the
    parent writes in a loop; the parent's write that had to wait for that
    transaction must have let the spinning thread run."""
    c = lmc.Cache(cache_path, map_size=256 << 20)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            # Built here, not inherited: touching the parent's objects would
            # copy their pages first and delay the transaction.
            items = [(b"bulk-%07d" % i, b"v" * 100) for i in range(300_000)]
            os.write(w, b"go")
            c.set_many(items)  # one long write transaction
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.read(r, 2)
    os.close(r)
    ticks, writes = [], []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.monotonic())

    t = threading.Thread(target=spin)
    t.start()
    deadline = time.monotonic() + 60
    try:
        # Write until the child is done; one of these writes lands inside its
        # transaction and waits for it.
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "the child's transaction never ended"
            t0 = time.monotonic()
            c.set(b"parent", b"%d" % len(writes))
            writes.append((t0, time.monotonic()))
    finally:
        stop.set()
        t.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.get(b"bulk-0299999") == b"v" * 100  # the child's transaction committed
    t0, t1 = max(writes, key=lambda span: span[1] - span[0])
    assert t1 - t0 > 0.05, f"no write waited for the child (longest {t1 - t0:.3f} s)"
    inside = [x for x in ticks if t0 + 0.25 * (t1 - t0) < x < t0 + 0.75 * (t1 - t0)]
    assert len(inside) > 10, f"no other thread ran during a {t1 - t0:.3f} s wait"
    c.close()
