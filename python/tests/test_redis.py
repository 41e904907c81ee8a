"""The two-level backends: lmc as each host's L1 in front of one Redis.

A real redis-server on a unix socket in the test's directory, and for each
"host" its own cache directory, its own lmc-redis-sync and its own backend.
"""
import os
import shutil
import signal
import subprocess
import time

import pytest

import lmc
from lmc.cachelib import LmcRedisCache

from conftest import SMALL_MAP, wait_for

redis = pytest.importorskip("redis")

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
pytestmark = pytest.mark.skipif(not os.path.exists(REDIS_SERVER),
                                reason="redis-server is not installed (make deps)")

PREFIX = "app/"


class RedisServer:
    def __init__(self, d, name="redis"):
        self.sock = os.path.join(d, name + ".sock")
        self.dir = d
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--dir", self.dir, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(unix_socket_path=self.sock)
        wait_for(lambda: self._pings(client), what="redis-server to answer")
        return self

    @staticmethod
    def _pings(client):
        try:
            return client.ping()
        except redis.exceptions.ConnectionError:
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    @property
    def url(self):
        return "unix://" + self.sock

    def client(self):
        return redis.Redis(unix_socket_path=self.sock)


class Host:
    """One host: its cache directory, its sidecar and its backend."""

    def __init__(self, d, name, server, bin_dir):
        self.path = os.path.join(d, name)
        self.log = os.path.join(d, name + ".log")
        self.server = server
        self.bin_dir = bin_dir
        self.sync = None
        lmc.Cache(self.path, map_size=SMALL_MAP).close()
        self.cache = LmcRedisCache(server.url, self.path, key_prefix=PREFIX, default_timeout=60)

    def start_sync(self):
        self.logf = open(self.log, "ab")
        self.sync = subprocess.Popen(
            [os.path.join(self.bin_dir, "lmc-redis-sync"), self.path, "--redis",
             "unix:" + self.server.sock, "--prefix", PREFIX, "--heartbeat", "0.2",
             "--backoff-max", "0.2", "-v"], stderr=self.logf)
        # This sidecar's status: a killed one's lingers for its TTL.
        wait_for(lambda: self.status_up(self.sync.pid), what="lmc-redis-sync to turn tracking on")
        return self

    def status_up(self, pid=None):
        raw = self.cache.lmc.get("lmc-redis-sync/status/" + PREFIX)
        if pid is not None and (raw is None or b'"pid":%d,' % pid not in raw):
            return False
        return raw is not None and b'"state":"up"' in raw

    def stop_sync(self, sig=signal.SIGTERM):
        if self.sync and self.sync.poll() is None:
            self.sync.send_signal(signal.SIGCONT)
            self.sync.send_signal(sig)
            self.sync.wait(timeout=10)
        self.sync = None

    def l1(self, key):
        return self.cache.lmc.get(PREFIX + key)

    def log_text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")


def filled(h, key, want):
    """Get key on host h until its L1 holds it: a get whose Redis read
    overlapped the invalidation of an earlier write (its own host's, say)
    has its fill refused, as it must, and the next get fills."""
    def once():
        assert h.cache.get(key) == want
        return h.l1(key) is not None
    wait_for(once, what=f"{key} to be filled into the L1")


@pytest.fixture
def env(tmpdir_shm, bin_dir):
    if not os.path.exists(os.path.join(bin_dir, "lmc-redis-sync")):
        pytest.skip("lmc-redis-sync is not built")
    server = RedisServer(tmpdir_shm).start()
    hosts = []

    def host(name):
        h = Host(tmpdir_shm, name, server, bin_dir)
        hosts.append(h)
        return h

    try:
        yield server, host
    finally:
        for h in hosts:
            h.stop_sync(signal.SIGKILL)
        server.kill()


def test_a_set_on_one_host_is_never_read_stale_on_another(env):
    server, host = env
    a = host("a").start_sync()
    b = host("b").start_sync()
    assert a.cache.set("k", "v1")
    filled(b, "k", "v1")                            # from Redis, into B's L1
    hits = b.cache.counts["l1_hits"]
    assert b.cache.get("k") == "v1" and b.cache.counts["l1_hits"] == hits + 1
    lat = []
    for i in range(2, 30):
        t0 = time.monotonic()
        assert a.cache.set("k", f"v{i}")
        # The promise: once B's sidecar had the invalidation, B reads v{i}.
        wait_for(lambda: b.l1("k") is None, timeout=5, interval=0.0002,
                 what="B's L1 to drop k")
        lat.append(time.monotonic() - t0)
        filled(b, "k", f"v{i}")
    lat.sort()
    print(f"invalidation latency: median {lat[len(lat) // 2] * 1e6:.0f} us, "
          f"max {lat[-1] * 1e6:.0f} us")
    # A's own writes drop A's L1 at once (Redis first, then the L1).
    assert a.cache.get("k") == "v29"
    assert a.cache.set("k", "v30") and a.cache.get("k") == "v30"


def test_fill_takes_at_most_the_ttl_redis_has_left(env, bin_dir):
    server, host = env
    a = host("a").start_sync()
    r = server.client()
    r.set(PREFIX + "t", b"7", px=1500)
    r.set(PREFIX + "n", b"8")
    # Their invalidations first: one that arrives during a get's read of
    # Redis refuses its fill (as it must).
    wait_for(lambda: "invalidated app/n" in a.log_text(), what="the invalidation of n")
    assert a.cache.get("t") == 7 and a.cache.get("n") == 8
    out = subprocess.run([os.path.join(bin_dir, "lmc"), a.path, "ls", PREFIX],
                         capture_output=True, text=True, check=True).stdout
    ttl = {line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines()}
    assert 0 < int(ttl[PREFIX + "t"]) <= 1500
    # No TTL in Redis: the L1 keeps it at most l1_max_timeout (default_timeout, 60 s).
    assert 50000 < int(ttl[PREFIX + "n"]) <= 60000


def test_the_fill_race_is_closed(env):
    """An invalidation that arrives between a get's Redis read and its L1
    fill: the fill is refused, and the L1 never holds the value read
    before it."""
    server, host = env
    a = host("a").start_sync()
    b = host("b").start_sync()
    assert b.cache.set("r", "old")
    wait_for(lambda: a.l1("r") is None, what="A's L1 to be clean")

    real = a.cache._get_pttl

    def read_then_invalidate(k):
        # The read of Redis happens, then host B writes and A's sidecar
        # invalidates, and only then does the fill run.
        gen = a.cache.lmc.gen_read(PREFIX + "r")
        res = real(k)
        assert b.cache.set("r", "new")
        wait_for(lambda: a.cache.lmc.gen_read(PREFIX + "r") != gen,
                 what="A's sidecar to invalidate r")
        return res

    a.cache._get_pttl = read_then_invalidate
    assert a.cache.get("r") == "old"        # what Redis had when it was read
    del a.cache._get_pttl
    assert a.cache.counts["fill_rejects"] == 1 and a.cache.counts["fills"] == 0
    assert a.l1("r") is None                # not stored after its invalidation
    assert a.cache.get("r") == "new"
    assert a.cache.counts["fills"] == 1


def test_without_the_sidecar_gets_read_through(env):
    server, host = env
    a = host("a")                           # no sidecar
    assert a.cache.set("k", "v")
    assert a.cache.get("k") == "v" and a.cache.get("k") == "v"
    assert a.l1("k") is None and a.cache.counts["bypassed"] == 2
    a.start_sync()
    a.cache._status_until = 0               # look at the status now
    filled(a, "k", "v")
    # The sidecar stops: its status goes, and the L1 is no longer read.
    a.stop_sync()
    a.cache._status_until = 0
    server.client().set(PREFIX + "k", b"changed-while-unsynced")
    a.cache.lmc.set(PREFIX + "k", b"stale")  # even a stale L1 entry is not served
    assert a.cache.get("k") == b"changed-while-unsynced"


def test_delete_prefix_reaches_connected_and_disconnected_hosts(env):
    server, host = env
    a = host("a").start_sync()
    b = host("b").start_sync()
    c = host("c").start_sync()
    for i in range(2500):                   # several SCAN batches
        a.cache.set(f"p/{i}", i)
    a.cache.set("q/keep", "kept")
    for h in (b, c):
        assert h.cache.get_many("p/0", "p/1", "p/2499", "q/keep") == [0, 1, 2499, "kept"]
        for k, v in (("p/0", 0), ("p/1", 1), ("p/2499", 2499)):
            filled(h, k, v)
    c.stop_sync(signal.SIGKILL)             # host C is disconnected meanwhile
    assert a.cache.delete_prefix("p/") == 2500
    r = server.client()
    assert r.keys(PREFIX + "p/*") == [] and r.get(PREFIX + "q/keep") is not None
    wait_for(lambda: all(b.l1(f"p/{i}") is None for i in (0, 1, 2499)),
             what="B's L1 to drop the prefix")
    assert c.l1("p/0") is not None          # C missed it...
    c.start_sync()                          # ... and flushes when it comes back
    assert c.l1("p/0") is None and c.l1("p/2499") is None
    assert c.cache.get("p/0") is None and c.cache.get("q/keep") == "kept"
    assert a.cache.get("q/keep") == "kept"


def test_writes_by_plain_redis_clients_invalidate_too(env):
    server, host = env
    a = host("a").start_sync()
    from cachelib import RedisCache

    other = RedisCache(unix_socket_path=server.sock, key_prefix=PREFIX)
    assert a.cache.set("x", 1)
    filled(a, "x", 1)
    other.set("x", {"n": 2})                # another service, cachelib's own backend
    wait_for(lambda: a.l1("x") is None, what="A's L1 to drop x")
    assert a.cache.get("x") == {"n": 2}     # and its values read as they were written
    assert a.cache.set("y", [1, 2]) and other.get("y") == [1, 2]
    server.client().set(PREFIX + "raw", b"\x00not-a-pickle")
    assert a.cache.get("raw") == b"\x00not-a-pickle"   # foreign bytes: as they are
    server.client().set(PREFIX + "bad", b"\x80\x05garbage")
    assert a.cache.get("bad") is None                  # a damaged pickle: a miss
    server.client().rpush(PREFIX + "list", b"1")
    assert a.cache.get("list") is None                 # not a string: logged, a miss
    assert a.cache.counts["redis_errors"] == 1
    assert a.cache.get("x") == {"n": 2}                # and the connection still works


def test_flushall_and_redis_restarts(env):
    server, host = env
    a = host("a").start_sync()
    a.cache.set("f", "v")
    filled(a, "f", "v")
    server.client().flushall()
    wait_for(lambda: a.l1("f") is None, what="FLUSHALL to flush A's L1")
    assert a.cache.get("f") is None
    a.cache.set("g", "v")
    filled(a, "g", "v")
    server.kill()
    wait_for(lambda: a.l1("g") is None, what="the lost connection to flush A's L1")
    a.cache._status_until = 0
    assert a.cache.get("g") is None         # Redis down: a miss, no exception
    assert a.cache.set("g", "w") is False
    assert a.cache.counts["redis_errors"] >= 2
    server.start()
    wait_for(a.status_up, what="tracking to resume")
    a.cache._status_until = 0
    assert a.cache.set("g", "w") and a.cache.get("g") == "w"


def test_inc_add_delete_clear(env):
    server, host = env
    a = host("a").start_sync()
    b = host("b").start_sync()
    assert a.cache.inc("n") == 1
    filled(b, "n", 1)
    assert a.cache.inc("n", 5) == 6
    wait_for(lambda: b.l1("n") is None, what="B to drop n")
    assert b.cache.get("n") == 6
    assert a.cache.add("n", 0) is False and a.cache.add("m", "x") is True
    assert b.cache.has("m") and a.cache.delete("m")
    # Another host sees a write once its sidecar had the invalidation.
    wait_for(lambda: not b.cache.has("m"), what="B to see the delete")
    assert a.cache.set_many({"s1": 1, "s2": 2}) == ["s1", "s2"]
    assert b.cache.get_many("s1", "s2", "none") == [1, 2, None]
    assert a.cache.delete_many("s1", "none") == ["s1"]
    server.client().set("other-app/k", b"1")
    assert a.cache.clear()
    assert a.cache.get("s2") is None and server.client().get("other-app/k") == b"1"
    wait_for(lambda: b.cache.get("s2") is None, what="B to see the clear")


def test_bad_configuration_is_a_clear_error(tmpdir_shm, cache_path):
    with pytest.raises(ValueError, match="path"):
        LmcRedisCache("unix:///nonexistent.sock", None, key_prefix=PREFIX)
    with pytest.raises(ValueError, match="key_prefix"):
        LmcRedisCache("unix:///nonexistent.sock", cache_path)
    with pytest.raises(ValueError, match="sync_prefix"):
        LmcRedisCache("unix:///n.sock", cache_path, key_prefix="a/", sync_prefix="b/")
    with pytest.raises(ValueError, match="redis_url"):
        LmcRedisCache(None, cache_path, key_prefix=PREFIX)
    with pytest.raises(ValueError, match="bytes"):
        LmcRedisCache("unix:///n.sock", cache_path, key_prefix=PREFIX,
                      redis_options={"decode_responses": True})
    # An unreachable Redis is no error at construction; calls log and miss.
    c = LmcRedisCache("unix:///nonexistent.sock", cache_path, key_prefix=PREFIX,
                      require_sync=False)
    assert c.get("k") is None and c.set("k", 1) is False and c.counts["redis_errors"] == 2


def test_flask_caching_backend(env, tmpdir_shm):
    flask = pytest.importorskip("flask")
    from flask_caching import Cache

    server, host = env
    a = host("a").start_sync()
    app = flask.Flask(__name__)
    app.config.update(CACHE_TYPE="lmc.flask_caching.LmcRedisCache",
                      CACHE_REDIS_URL=server.url, CACHE_LMC_PATH=a.path,
                      CACHE_KEY_PREFIX=PREFIX, CACHE_DEFAULT_TIMEOUT=30)
    cache = Cache(app)
    calls = []

    @app.route("/v")
    @cache.cached()
    def view():
        calls.append(1)
        return "page %d" % len(calls)

    with app.test_client() as t:
        assert t.get("/v").data == b"page 1"
        assert t.get("/v").data == b"page 1"
        assert len(calls) == 1
        assert server.client().get(PREFIX + "view//v") is not None
        cache.delete("view//v")
        assert t.get("/v").data == b"page 2"
    bad = flask.Flask("bad")
    bad.config.update(CACHE_TYPE="lmc.flask_caching.LmcRedisCache", CACHE_LMC_PATH=a.path)
    with pytest.raises(ValueError, match="CACHE_REDIS_URL"):
        Cache(bad)


def kill_conn(server, pid, role):
    """CLIENT KILL the connection lmc-redis-sync PID named ROLE, once it
    has one (it may still be reconnecting after the previous fault)."""
    r = server.client()
    name = f"lmc-redis-sync:{pid}:{role}"

    def conn_id():
        ids = [c["id"] for c in r.client_list() if c.get("name") == name]
        return ids[0] if ids else None
    r.client_kill_filter(_id=wait_for(conn_id, what=f"connection {name}"))


def test_faults_in_a_loop_never_leave_a_stale_read(env):
    """Host A writes a counter through its backend; after each write, host B
    must read it within the bound, and no read on B may ever go back to an
    older value, while a fault is injected before every write: CLIENT KILL
    of either of B's connections, FLUSHDB, redis-server stopped and
    continued, killed and restarted, B's sidecar killed and restarted."""
    import random

    server, host = env
    a = host("a").start_sync()
    b = host("b").start_sync()
    rnd = random.Random(1234)
    faults = ["kill_tracking", "kill_invalidations", "flushdb", "stop_redis", "restart_redis",
              "kill_sidecar", "none"]
    newest = -1   # the newest value B has read
    done = {f: 0 for f in faults}
    for i in range(42):
        fault = faults[i % len(faults)] if i < len(faults) else rnd.choice(faults)
        done[fault] += 1
        if fault == "kill_tracking":
            kill_conn(server, b.sync.pid, "tracking")
        elif fault == "kill_invalidations":
            kill_conn(server, b.sync.pid, "invalidations")
        elif fault == "flushdb":
            server.client().flushdb()
        elif fault == "stop_redis":
            server.proc.send_signal(signal.SIGSTOP)
            time.sleep(rnd.uniform(0.05, 0.5))   # the outage itself, not a wait for an event
            server.proc.send_signal(signal.SIGCONT)
        elif fault == "restart_redis":
            server.kill()
            server.start()
        elif fault == "kill_sidecar":
            b.stop_sync(signal.SIGKILL)
            b.start_sync()
        # A's write must succeed once Redis answers again.
        wait_for(lambda: a.cache.set("f", i), timeout=10, what=f"A's set after {fault}")

        def b_reads_it():
            nonlocal newest
            b.cache._status_until = 0 if rnd.random() < 0.1 else b.cache._status_until
            v = b.cache.get("f")
            if v is not None:
                assert v >= newest, f"B read {v} after {newest} (fault {fault})"
                newest = max(newest, v)
            return v == i
        # The bound: an invalidation is handled, or the sidecar notices the
        # fault within two heartbeats (0.2 s) and reconnects; B's own
        # backend looks at the status every 0.1 s.
        wait_for(b_reads_it, timeout=10, what=f"B to read {i} after {fault}")
        for _ in range(20):                   # and then it stays
            assert b.cache.get("f") == i
    assert all(done.values()), done
    print(f"faults injected: {done}; B: {b.cache.counts}")


def test_one_worker_per_host_reads_a_missing_key(env):
    """Eight workers of one host miss the same key at once: one reads Redis
    (the fill lease's holder), the others wait for its fill and read it
    from the L1."""
    import multiprocessing

    server, host = env
    a = host("a").start_sync()
    assert a.cache.set("hot", "page")
    wait_for(lambda: "invalidated app/hot" in a.log_text(), what="the set's invalidation")
    ctx = multiprocessing.get_context("fork")
    reads = ctx.Value("i", 0)
    ready = ctx.Value("i", 0)
    go = ctx.Event()
    n = 8

    def worker(q):
        c = LmcRedisCache(server.url, a.path, key_prefix=PREFIX, lease_wait=10)
        real = c._get_pttl

        def slow_read(k):
            with reads.get_lock():
                reads.value += 1
            res = real(k)
            time.sleep(0.3)       # a slow read, so that the others come while it runs
            return res
        c._get_pttl = slow_read
        with ready.get_lock():
            ready.value += 1
        go.wait(10)
        q.put((c.get("hot"), c.counts["lease_waits"]))

    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(q,)) for _ in range(n)]
    for p in procs:
        p.start()
    wait_for(lambda: ready.value == n, what="the workers to start")
    go.set()
    results = [q.get(timeout=30) for _ in range(n)]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert [r[0] for r in results] == ["page"] * n
    assert reads.value == 1, f"{reads.value} workers read Redis"
    assert sum(r[1] for r in results) == n - 1


# -- the get path's own reads of Redis (LmcRedisCache._redis_read) ----------

def test_values_of_every_size_are_read_whole(env):
    """The get path reads GET's reply itself: values that take one read or
    many, an empty one, and bytes that look like the protocol, on the L1
    miss path (GET and PTTL) and on the read-through path (GET alone)."""
    server, host = env
    a = host("a").start_sync()
    through = host("b")                     # no sidecar: every get reads through
    r = server.client()
    values = {
        "empty": b"",
        "crlf": b"\r\n$5\r\n:1\r\n-ERR\r\n",
        "small": b"x" * 100,
        "two-reads": bytes(range(256)) * 800,      # 200 KB: more than one recv
        "many-reads": b"\x00\xff" * (750 * 1024),  # 1.5 MB
    }
    for k, v in values.items():
        r.set(PREFIX + k, v)
    wait_for(lambda: "invalidated app/many-reads" in a.log_text(),
             what="the invalidations of the writes")
    for k, v in values.items():
        assert a.cache.get(k) == v, k                # the L1 miss: GET and PTTL
        assert through.cache.get(k) == v, k          # GET alone
        assert a.cache.get(k) == v, k                # from the L1, or Redis again
    pickled = {"page": "y" * 300_000, "n": [1, 2, 3]}
    assert a.cache.set("pickled", pickled)
    assert a.cache.get("pickled") == pickled and through.cache.get("pickled") == pickled
    assert a.cache.get("none") is None and through.cache.get("none") is None
    assert a.cache.counts["redis_errors"] == 0 and through.cache.counts["redis_errors"] == 0


def test_a_restarted_redis_is_read_again_without_a_failed_get(env):
    """An idle connection of the get path that the server closed (here by
    a restart) is replaced before the get fails, as redis-py's pool does."""
    server, host = env
    a = host("a").start_sync()
    through = host("b")
    assert a.cache.set("k", "v")
    filled(a, "k", "v")                     # the get path has a connection now
    assert through.cache.get("k") == "v"
    server.kill()
    server.start()
    wait_for(a.status_up, what="tracking to resume")
    a.cache._status_until = 0
    assert a.cache.set("k", "w")            # and its L1 entry dropped
    errors = a.cache.counts["redis_errors"], through.cache.counts["redis_errors"]
    assert a.cache.get("k") == "w" and through.cache.get("k") == "w"
    assert (a.cache.counts["redis_errors"], through.cache.counts["redis_errors"]) == errors


def test_a_timed_out_read_never_answers_the_next_get(env):
    """A get whose Redis read times out gives up its connection: the reply
    that arrives late must not be taken for the answer to the next get."""
    server, host = env
    host("a")
    c = LmcRedisCache(server.url, os.path.join(server.dir, "a"), key_prefix=PREFIX,
                      require_sync=False, redis_options={"socket_timeout": 0.3})
    assert c.set("t1", "one") and c.set("t2", "two")
    assert c.get("t1") == "one"             # a connection of the get path, then its fill
    c.lmc.delete(PREFIX + "t1")
    server.proc.send_signal(signal.SIGSTOP)
    try:
        assert c.get("t1") is None          # timed out: logged, a miss
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert c.counts["redis_errors"] == 1
    assert c.get("t2") == "two"
    c.lmc.delete(PREFIX + "t1")
    assert c.get("t1") == "one"


def test_threads_and_forked_children_never_share_a_connection(env):
    """Gets from several threads, and from a child forked while the parent
    holds idle connections, each read their own replies."""
    import multiprocessing
    import threading

    server, host = env
    a = host("a").start_sync()
    keys = [f"c{i}" for i in range(20)]
    for k in keys:
        assert a.cache.set(k, "value of " + k)
    wait_for(lambda: "invalidated app/c19" in a.log_text(), what="the sets' invalidations")

    def misses(cache, seconds, bad):
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            k = keys[i % len(keys)]
            i += 1
            cache.lmc.delete(PREFIX + k)    # an L1 miss each time
            try:
                v = cache.get(k)
            except Exception as e:          # a reply out of step can raise too
                v = e
            if v != "value of " + k:
                bad.append((k, v))

    bad = []
    threads = [threading.Thread(target=misses, args=(a.cache, 0.5, bad)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == [] and a.cache.counts["redis_errors"] == 0

    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()

    def child(q):
        mine = []
        go.set()
        misses(a.cache, 1.0, mine)          # the parent's backend, inherited
        q.put((mine[:5], a.cache.counts["redis_errors"]))

    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    assert go.wait(10)
    misses(a.cache, 1.0, bad)               # the parent at the same time
    mine, errors = q.get(timeout=30)
    p.join(10)
    assert p.exitcode == 0
    assert mine == [] and errors == 0
    assert bad == [] and a.cache.counts["redis_errors"] == 0


class _Trickle:
    """A socket that hands out what it holds a few bytes per recv()."""

    def __init__(self, data, step):
        self.data, self.step, self.pos = data, step, 0

    def recv(self, n):
        out = self.data[self.pos:self.pos + min(n, self.step)]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 65536])
def test_replies_are_parsed_whatever_the_reads_cut(step):
    """The get path's parser of GET and PTTL replies, fed by reads that cut
    the bytes anywhere: values, nulls (RESP2's and RESP3's), error replies,
    and bytes left over or missing, which must never pass for a reply."""
    from redis.exceptions import ConnectionError, InvalidResponse

    from lmc.cachelib import _Replies

    def parse(data, pttl=True):
        rep = _Replies(_Trickle(data, step))
        out = [rep.value()]
        if pttl:
            out.append(rep.integer())
        rep.done()
        return out

    assert parse(b"$5\r\nhe\r\no\r\n:1234\r\n") == [(b"he\r\no", None), (1234, None)]
    assert parse(b"$0\r\n\r\n:-1\r\n") == [(b"", None), (-1, None)]
    assert parse(b"$-1\r\n:-2\r\n") == [(None, None), (-2, None)]
    assert parse(b"_\r\n:-2\r\n") == [(None, None), (-2, None)]
    assert parse(b"$3\r\nabc\r\n", pttl=False) == [(b"abc", None)]
    wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    assert parse(wrong + b":-1\r\n") == [(None, wrong[1:-2].decode()), (-1, None)]
    big = bytes(range(256)) * (1000 if step > 100 else 20)  # many reads either way
    assert parse(b"$%d\r\n%s\r\n:5\r\n" % (len(big), big)) == [(big, None), (5, None)]
    bad = [b"+OK\r\n:1\r\n", b"$x\r\n", b"$1\r\na\r\n$1\r\nb\r\n"]
    if step > 100:
        # Bytes beyond the replies, read with them: the connection is out of
        # step.  (Bytes that arrive in a later read cannot be told apart
        # from the next command's reply; Redis sends none.)
        bad.append(b"$1\r\na\r\n:1\r\n:2\r\n")
    for data in bad:
        with pytest.raises(InvalidResponse):
            parse(data)
    with pytest.raises(ConnectionError):
        parse(b"$10\r\nshort")   # the server closed the connection mid-reply
