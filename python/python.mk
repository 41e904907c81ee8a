# python/python.mk - the Python binding: the lmc package (C extension over
# liblmc.a), its cachelib and Flask-Caching backends, their tests and the
# gunicorn demo.  Included by the top-level Makefile.
#
#   make python             build the package into $(B)/python/lib
#   make check-python       pytest python/tests against that build (make test runs it)
#   make check-python-asan  the same against an ASan+UBSan build in $(B)-pyasan
#   make demo-flask         gunicorn, 4 prefork workers, one shared cache
#   make demo-http          lmc.flask.HttpCache: MISS, HIT, 304, STALE under gunicorn
#   make bench-http         wrk against HttpCache and Flask-Caching's backends
#
# Always Debian's interpreter: the `python3` first on PATH may be another one
# that does not see Debian's python3-* packages.

PY := /usr/bin/python3
PY_OUT := $(B)/python
PY_LIB := $(PY_OUT)/lib

# An extension built with ASan runs inside an interpreter that is not, so the
# ASan runtime must be loaded first; CPython's own allocations at exit are not
# leaks worth reporting, hence detect_leaks=0 (leaks of the binding are
# checked by the tests' RSS and tracemalloc loops instead).
ifeq ($(SANITIZER),address)
PY_PRELOAD := LD_PRELOAD=$(shell $(CC) -print-file-name=libasan.so) \
              ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1
else
PY_PRELOAD :=
endif

# How every Python command of this file runs: the built package first on the
# path, the build's tools (lmc, lmc-stats) named for the tests, no bytecode or
# pytest cache written into the source tree.
PY_RUN = $(PY_PRELOAD) PYTHONPATH=$(abspath $(PY_LIB)) LMC_BIN_DIR=$(abspath $(B)) \
         PYTHONDONTWRITEBYTECODE=1 $(PY)

PY_SRC := python/setup.py python/pyproject.toml python/src/_lmc.c python/src/_lmc.map $(wildcard python/lmc/*.py)

# The tools the end-to-end tests drive (tools/tools.mk builds them).
PY_TOOLS := $(B)/lmc $(B)/lmc-stats $(B)/lmc-redis-sync

.PHONY: python check-python check-python-asan demo-flask demo-http bench-http

# The headless-browser test (python/tests/test_http_browser.py) drives
# Debian's chromium (installed by make deps) with puppeteer-core from npm,
# pinned by package-lock.json; PUPPETEER_SKIP_DOWNLOAD and --ignore-scripts:
# nothing may download a browser.  npm comes with nodejs from some sources
# and is a package of its own in Debian's.
BROWSER_DIR := python/tests/browser
BROWSER_MODULES := $(BROWSER_DIR)/node_modules/.package-lock.json
$(BROWSER_MODULES): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	$(Q)command -v npm >/dev/null 2>&1 || $(MAKE) --no-print-directory deps EXTRA_DEB_PKGS=npm
	$(E) "  NPM     $(BROWSER_DIR)"
	$(Q)cd $(BROWSER_DIR) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

# setup.py rebuilds the extension when _lmc.c, lmc.h or liblmc.a changed and
# copies the pure Python modules next to it.  Its egg-info (setuptools writes
# one whenever pyproject.toml gives the metadata) goes to the build directory
# too, not into python/.
python: $(STATIC)
	$(E) "  PYTHON  $(PY_LIB)"
	$(Q)mkdir -p $(PY_OUT) && cd python && LMC_STATIC=$(abspath $(STATIC)) LMC_CFLAGS='$(ALL_CFLAGS)' \
	    LMC_LDFLAGS='$(ALL_LDFLAGS)' $(PY) setup.py -q egg_info --egg-base $(abspath $(PY_OUT)) build \
	    --build-base $(abspath $(PY_OUT))/build --build-lib $(abspath $(PY_LIB))

check-python: python $(PY_TOOLS) $(BROWSER_MODULES)
	$(Q)$(PY_RUN) -m pytest -q -p no:cacheprovider python/tests

# A build directory of its own (not $(B)-asan, which check-tools-asan uses),
# so that the two never build the same objects at once under make -j.
check-python-asan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address B=$(B)-pyasan check-python

demo-flask: python $(PY_TOOLS)
	$(Q)$(PY_RUN) python/demo/demo_flask.py

# Requests per second of one cached view under gunicorn (4 workers), wrk
# against HttpCache (hits and 304s) and Flask-Caching over lmc, SimpleCache,
# Redis and memcached, in one run (bench/http_bench.py, about 3 minutes).
bench-http: python
	$(Q)$(PY_RUN) bench/http_bench.py $(BENCH_HTTP_ARGS)

# One page of lmc.flask.HttpCache through MISS, HIT, 304, STALE/UPDATING
# under 4 gunicorn workers, with the headers printed.
demo-http: python $(PY_TOOLS)
	$(Q)$(PY_RUN) python/demo/demo_http.py

# make test runs the suite against the plain build and against ASan+UBSan
# (about 40 s each).
TEST_EXTRA += check-python check-python-asan
EXTRA_DEB_PKGS += python3-dev python3-setuptools python3-pytest python3-flask \
                  python3-flask-caching python3-cachelib gunicorn python3-redis \
                  python3-diskcache redis-server chromium \
                  wrk memcached python3-pylibmc
# Debian's nodejs only where the machine has no Node.js of its own (often
# NodeSource's, which Debian's packages must not replace).
EXTRA_DEB_PKGS += $(if $(shell command -v node 2>/dev/null),,nodejs)
