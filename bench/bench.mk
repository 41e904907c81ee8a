# bench/bench.mk - the benchmark suite, included by the top-level Makefile.
#
#   make bench          the standard suite (about 4 minutes): lmc against raw
#                       LMDB, Redis and memcached side by side, plus the scale
#                       cases; BENCH_ARGS="--csv" for CSV on stdout
#   make bench-quick    the ~20 s smoke run that `make test` runs
#   make bench-flags    the LMDB flag comparison behind lmc's choice of flags
#                       (bench/flags.c, raw LMDB only, about 20 s)
#   make bench-ttl-layout  sets with a TTL with the expiry rows in a named
#                       database (lmc now) or in the main one (bench/ttl_layout.c,
#                       raw LMDB only, about 15 s)
#   make bench-evict    the quality of eviction: lmc's hit ratio on a full map
#                       under a Zipf workload against exact LRU and random
#                       eviction at the same size (bench/evict_quality.c,
#                       ~1 min; EVICT_ARGS for options)
#   make bench-callgrind instructions per get, set, set with a TTL and add, of
#                       lmc and raw LMDB, and per hit of lmc_get_lease_view, by
#                       callgrind (bench/callgrind.sh, ~4 min)
#   make bench-stampede a gunicorn app with 8 workers and a page that takes
#                       200 ms, at 200 requests/s across expiries of its entry:
#                       computations per expiry and latency without leases,
#                       with CACHE_LMC_LEASE and with CACHE_LMC_GRACE
#                       (bench/stampede.py, ~1 min; STAMPEDE_ARGS for options)
#   make bench-redis    lmc as the L1 in front of Redis through Flask-Caching
#                       (bench/redis_bench.py; REDIS_BENCH_ARGS="--baseline REV"
#                       adds REV's miss path in the same rounds)
#   make bench-redis-instructions  instructions per get of the miss path
#                       against RedisCache's get (bench/redis_instructions.py,
#                       callgrind, ~3 min; REDIS_INS_ARGS="--baseline REV")
#   make bench-http-304 a 304 of lmc.flask against a hit, for a 2 KB and a
#                       110 KB page: CPU and instructions per request in-process,
#                       workers' CPU per request under gunicorn
#                       (bench/http_304_bench.py, ~6 min)
#   make bench-flush    lmc_flush_prefix against lmc_delete_prefix of 100,000
#                       entries, and the sweep that reclaims the flush
#                       (bench/flush_cost.py, ~30 s; FLUSH_BENCH_ARGS)
#   make bench-capacity the capacity matrix of tests/test_capacity.c (writers,
#                       readers and a sweeper on small full maps), each case
#                       for CAPACITY_SECONDS (5), printed as a Markdown table
#
# Always build into a directory of your own when others build too, e.g.
# `make B=build/bench bench`.
#
# hiredis and libmemcached are bench-only dependencies: the driver compiles
# the Redis and memcached contenders only when pkg-config finds them, and
# otherwise prints a skip line for each, so it builds everywhere the library
# does.  The LMDB flags of the raw LMDB contender are taken from lib/core.c
# (LMC__ENV_FLAGS) so that the ceiling always runs with lmc's own flags.

BENCH_DIR := $(B)/bench
BENCH_BIN := $(BENCH_DIR)/lmcbench
BENCH_SRC := $(filter-out bench/flags.c bench/ttl_layout.c bench/evict_quality.c,$(wildcard bench/*.c))
BENCH_FLAGS_BIN := $(BENCH_DIR)/flags
BENCH_TTL_BIN := $(BENCH_DIR)/ttl_layout
BENCH_EVICT_BIN := $(BENCH_DIR)/evict_quality
EVICT_ARGS ?=
BENCH_OBJ := $(patsubst bench/%.c,$(BENCH_DIR)/%.o,$(BENCH_SRC))
BENCH_CONFIG := $(BENCH_DIR)/bench_config.h
BENCH_ARGS ?=

BENCH_HAVE_HIREDIS := $(shell pkg-config --exists hiredis 2>/dev/null && echo 1)
BENCH_HAVE_LIBMEMCACHED := $(shell pkg-config --exists libmemcached 2>/dev/null && echo 1)
# -isystem, so that warnings in those headers do not fail our -Werror build.
BENCH_DEP_CFLAGS := $(patsubst -I%,-isystem %,\
    $(if $(BENCH_HAVE_HIREDIS),$(shell pkg-config --cflags hiredis)) \
    $(if $(BENCH_HAVE_LIBMEMCACHED),$(shell pkg-config --cflags libmemcached)))
BENCH_DEP_LIBS := $(if $(BENCH_HAVE_HIREDIS),$(shell pkg-config --libs hiredis)) \
    $(if $(BENCH_HAVE_LIBMEMCACHED),$(shell pkg-config --libs libmemcached))
BENCH_LMDB_FLAGS := $(shell sed -n 's/^\#define LMC__ENV_FLAGS (\(.*\))$$/\1/p' lib/core.c)
BENCH_CFLAGS = $(ALL_CFLAGS) $(BENCH_DEP_CFLAGS) -I$(BENCH_DIR)

EXTRA_DEB_PKGS += libhiredis-dev libmemcached-dev redis-server memcached
TEST_EXTRA += bench-quick
# The driver builds without the optional libraries, so `make all` builds it
# and a change that breaks it shows up at once.
ALL_EXTRA += $(BENCH_BIN) $(BENCH_FLAGS_BIN) $(BENCH_TTL_BIN) $(BENCH_EVICT_BIN)

.PHONY: bench bench-quick bench-flags bench-ttl-layout bench-capacity bench-callgrind bench-evict \
        bench-config-force bench-redis bench-redis-instructions bench-http-304 bench-flush

bench-callgrind: $(BENCH_BIN)
	$(Q)sh bench/callgrind.sh $(BENCH_BIN)
	$(Q)sh bench/callgrind.sh $(BENCH_BIN) get-hit lmc-lease

# lmc as the L1 in front of Redis, through Flask-Caching (bench/RESULTS-redis.md).
# What a namespace flush costs: lmc_flush_prefix against lmc_delete_prefix of
# 100,000 entries (bench/RESULTS-redis.md).
bench-flush: python
	$(Q)PYTHONPATH=$(abspath $(PY_LIB)) PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 \
	    bench/flush_cost.py $(FLUSH_BENCH_ARGS)

bench-redis: python $(SYNC_BIN)
	$(Q)PYTHONPATH=$(abspath $(PY_LIB)) PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 \
	    bench/redis_bench.py --bin-dir $(B) $(REDIS_BENCH_ARGS)

bench-redis-instructions: python
	$(Q)PYTHONPATH=$(abspath $(PY_LIB)) PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 \
	    bench/redis_instructions.py $(REDIS_INS_ARGS)

bench-http-304: python
	$(Q)PYTHONPATH=$(abspath $(PY_LIB)) PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 \
	    bench/http_304_bench.py $(HTTP_304_ARGS)

CAPACITY_SECONDS ?= 5
bench-capacity: $(B)/tests/test_capacity
	$(Q)LMC_CAPACITY_SECONDS=$(CAPACITY_SECONDS) $(B)/tests/test_capacity

$(BENCH_FLAGS_BIN): bench/flags.c
	@mkdir -p $(@D)
	$(E) "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< -llmdb

bench-flags: $(BENCH_FLAGS_BIN)
	$(Q)$(BENCH_FLAGS_BIN)

$(BENCH_TTL_BIN): bench/ttl_layout.c
	@mkdir -p $(@D)
	$(E) "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< -llmdb

bench-ttl-layout: $(BENCH_TTL_BIN)
	$(Q)$(BENCH_TTL_BIN)

$(BENCH_EVICT_BIN): bench/evict_quality.c bench/bench.h $(BENCH_CONFIG) $(STATIC)
	@mkdir -p $(@D)
	$(E) "  CC      $@"
	$(Q)$(CC) $(BENCH_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS) -lm

bench-evict: $(BENCH_EVICT_BIN)
	$(Q)$(BENCH_EVICT_BIN) $(EVICT_ARGS)

bench: $(BENCH_BIN)
	$(Q)sh bench/run.sh $(BENCH_BIN) $(BENCH_ARGS)

bench-quick: $(BENCH_BIN)
	$(Q)sh bench/run.sh $(BENCH_BIN) --quick $(BENCH_ARGS)

# Build facts the driver prints in its header, and the LMDB flags.  The file
# is rewritten only when its content changes, so that it triggers a rebuild
# exactly when a flag or an optional library changed.
$(BENCH_CONFIG): bench-config-force
	@mkdir -p $(@D)
	@{ echo '/* Generated by bench/bench.mk; do not edit. */'; \
	  $(if $(BENCH_LMDB_FLAGS),echo '#define BENCH_LMDB_FLAGS ($(BENCH_LMDB_FLAGS))';) \
	  $(if $(BENCH_LMDB_FLAGS),echo '#define BENCH_LMDB_FLAGS_STR "$(BENCH_LMDB_FLAGS)"';) \
	  printf '#define BENCH_BUILD_INFO "%s; CFLAGS %s; LDFLAGS %s"\n' \
	      "$$($(CC) --version 2>/dev/null | head -n 1 | sed 's/["\\]//g')" \
	      '$(subst ",,$(subst ',,$(strip $(ALL_CFLAGS))))' \
	      '$(subst ",,$(subst ',,$(strip $(ALL_LDFLAGS))))'; \
	  $(if $(BENCH_HAVE_HIREDIS),echo '#define BENCH_HAVE_HIREDIS 1';) \
	  $(if $(BENCH_HAVE_LIBMEMCACHED),echo '#define BENCH_HAVE_LIBMEMCACHED 1';) \
	} > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BENCH_DIR)/%.o: bench/%.c bench/bench.h include/lmc.h $(BENCH_CONFIG)
	@mkdir -p $(@D)
	$(E) "  CC      $<"
	$(Q)$(CC) $(BENCH_CFLAGS) -c -o $@ $<

$(BENCH_BIN): $(BENCH_OBJ) $(STATIC)
	$(E) "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(BENCH_OBJ) $(STATIC) $(BENCH_DEP_LIBS) $(LIBS) -lm

# The stampede benchmark of the Flask-Caching backend (bench/RESULTS-leases.md).
STAMPEDE_ARGS ?=
.PHONY: bench-stampede
bench-stampede: python
	$(Q)$(PY_RUN) bench/stampede.py $(STAMPEDE_ARGS)
