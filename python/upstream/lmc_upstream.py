"""A pytest plugin that runs Flask-Caching's own test suite against
lmc.flask_caching.LmcCache: every Cache configured with SimpleCache gets a
fresh lmc cache on /dev/shm instead, with leases or grace when
LMC_UPSTREAM_MODE is "lease" or "grace".  Flask-Caching's tests are not in
this tree; from a checkout of its v2.0.2 tag (the version Debian 12 ships):

    cd flask-caching && LMC_UPSTREAM_MODE=lease \\
    PYTHONPATH=/path/to/lmc/build/release/python/lib:/path/to/lmc/python/upstream \\
    /usr/bin/python3 -m pytest -p lmc_upstream tests/test_view.py tests/test_memoize.py \\
        tests/test_basic_app.py tests/test_cache.py tests/test_init.py tests/test_templates.py

What to expect is in python/README.md ("Tests").
"""
import os
import shutil
import tempfile

import flask_caching

_SIMPLE = ("simple", "SimpleCache", "flask_caching.backends.SimpleCache",
           "flask_caching.backends.simplecache.SimpleCache")
_set_cache = flask_caching.Cache._set_cache
_dirs = []


def _lmc_set_cache(self, app, config):
    if config["CACHE_TYPE"] in _SIMPLE:
        config = dict(config)
        d = tempfile.mkdtemp(prefix="lmc-upstream-", dir="/dev/shm")
        _dirs.append(d)
        mode = os.environ.get("LMC_UPSTREAM_MODE", "")
        config.update(CACHE_TYPE="lmc.flask_caching.LmcCache",
                      CACHE_LMC_PATH=os.path.join(d, "cache"), CACHE_LMC_MAP_SIZE=8 << 20,
                      CACHE_LMC_LEASE=mode == "lease",
                      CACHE_LMC_GRACE=60 if mode == "grace" else 0)
    return _set_cache(self, app, config)


flask_caching.Cache._set_cache = _lmc_set_cache


def pytest_unconfigure(config):
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
