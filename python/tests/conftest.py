"""Fixtures shared by the Python tests.

Run by `make check-python`, which puts the built package (build/<variant>/
python/lib) first on PYTHONPATH and names the directory of the command-line
tools in LMC_BIN_DIR.  Each test gets its own cache directory on tmpfs
(/dev/shm), where lmc caches belong, removed afterwards.
"""
import os
import shutil
import signal
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "python", "demo"))

import lmc  # noqa: E402

# Refuse to test the source tree's lmc/ by accident: it has no extension.
assert hasattr(lmc, "Cache"), f"{lmc.__file__} is not a built lmc package; run make python"


# Map size of the caches tests create when size does not matter.  lmc
# reserves the whole map when it creates a cache (on tmpfs that is RAM), and
# the default of 1 GiB would cost each test about half a second.
SMALL_MAP = 16 << 20


def _shm_base():
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


@pytest.fixture
def tmpdir_shm():
    """A private directory on tmpfs, removed after the test."""
    d = tempfile.mkdtemp(prefix="lmc-pytest-", dir=_shm_base())
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cache_path(tmpdir_shm):
    """A path where a new cache can be created."""
    return os.path.join(tmpdir_shm, "cache")


@pytest.fixture
def cache(cache_path):
    """An open lmc.Cache of 64 MiB, closed after the test."""
    c = lmc.Cache(cache_path, map_size=64 << 20)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def bin_dir():
    return os.environ.get("LMC_BIN_DIR", os.path.join(TOP, "build", "release"))


def wait_for(cond, timeout=10.0, interval=0.005, what="condition"):
    """Poll cond() until it returns a true value, which is returned; fail the
    test when timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def run_forked(fn, timeout=30.0):
    """Run fn() in a child made with os.fork() and return its exit status:
    0 if fn returned normally, 1 if it raised (the traceback goes to
    stderr).  The child never returns into pytest."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return wait_child(pid, timeout)


def wait_child(pid, timeout=30.0):
    """waitpid with a deadline; a child still running then is killed and the
    test fails."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} did not finish within {timeout} s")
        time.sleep(0.005)
