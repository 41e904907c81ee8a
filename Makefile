# lmc - build, test, install.
#
#   make            static + shared library, tools, pkg-config file
#   make test       install missing Debian packages, build, run every test
#                   (plain build, then ASan+UBSan, then TSan on threaded tests)
#   make check      the unit tests of the plain build only (fast)
#   make demo       the prefork demo: 4 workers sharing one cache
#   make SANITIZER=address|undefined|thread ...   sanitizer builds (own dir)
#   make valgrind   the unit tests under valgrind
#   make fuzz       libFuzzer against the model of tests/model.h (FUZZ_SECONDS)
#   make soak       SIGKILLs under eviction for SOAK_SECONDS (tests/soak/soak.mk)
#   make install / uninstall / test-install   (PREFIX, DESTDIR honoured)
#   make man / check-man   man pages from docs/man/*.md, checked against --help
#   make deb / test-deb / test-pip   Debian packages and pip, installed and tested
#
# Build outputs go to build/<variant>/ and are never committed.

VERSION_MAJOR := $(shell sed -n 's/^\#define LMC_VERSION_MAJOR \([0-9]*\)$$/\1/p' include/lmc.h)
VERSION_MINOR := $(shell sed -n 's/^\#define LMC_VERSION_MINOR \([0-9]*\)$$/\1/p' include/lmc.h)
VERSION_PATCH := $(shell sed -n 's/^\#define LMC_VERSION_PATCH \([0-9]*\)$$/\1/p' include/lmc.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX ?= /usr/local
prefix ?= $(PREFIX)
bindir ?= $(prefix)/bin
libdir ?= $(prefix)/lib
includedir ?= $(prefix)/include
pkgconfigdir ?= $(libdir)/pkgconfig
mandir ?= $(prefix)/share/man

CC ?= cc
WERROR ?= 1
SANITIZER ?=
V ?= 0

ifeq ($(V),0)
Q := @
E := @echo
else
Q :=
E := @:
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wwrite-strings -Wcast-qual \
        -Wpointer-arith -Wundef -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN += -Werror
endif

OPT ?= -O2
BASE_CFLAGS := -std=c11 $(OPT) -g -fPIC -fvisibility=hidden $(WARN) -Iinclude
BASE_LDFLAGS :=

ifeq ($(SANITIZER),)
VARIANT := release
else ifeq ($(SANITIZER),address)
VARIANT := asan
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SANITIZER),undefined)
VARIANT := ubsan
SAN := -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SANITIZER),thread)
VARIANT := tsan
SAN := -fsanitize=thread -fno-omit-frame-pointer -fno-optimize-sibling-calls
else
$(error SANITIZER must be address, undefined or thread, not '$(SANITIZER)')
endif
BASE_CFLAGS += $(SAN)
BASE_LDFLAGS += $(SAN)

# User flags come last so that they win.
ALL_CFLAGS = $(BASE_CFLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(BASE_LDFLAGS) $(LDFLAGS)
LIBS := -llmdb -lpthread

B ?= build/$(VARIANT)
LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(patsubst lib/%.c,$(B)/lib/%.o,$(LIB_SRC))
STATIC := $(B)/liblmc.a
SHARED := $(B)/liblmc.so.$(VERSION)
SONAME := liblmc.so.$(VERSION_MAJOR)
PC := $(B)/lmc.pc

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(B)/tests/%,$(TEST_SRC))
# Tests that use threads; ThreadSanitizer runs these.
THREAD_TESTS := $(B)/tests/test_threads

# Debian packages the build and the tests need.
DEB_PKGS := liblmdb-dev libcmocka-dev pkg-config

# Each part of the tree outside lib/ brings its own rules in <dir>/<dir>.mk and
# appends to: ALL_EXTRA (built by `make all`), TEST_EXTRA (phony targets run by
# `make test` after the unit tests), EXTRA_DEB_PKGS (installed by `make deps`),
# INSTALL_EXTRA (targets run by `make install`, honouring DESTDIR/bindir),
# UNINSTALL_EXTRA (their counterparts, run by `make uninstall`).
INSTALL_EXTRA :=
UNINSTALL_EXTRA :=
ALL_EXTRA :=
TEST_EXTRA :=
EXTRA_DEB_PKGS :=
-include tools/tools.mk
-include examples/examples.mk
-include bench/bench.mk
-include python/python.mk
-include docs/man/man.mk
-include tests/pkg/pkg.mk
# Last: the soak is the slowest and least specific test, so every specific
# test reports before it.
-include tests/soak/soak.mk

.PHONY: all lib deps test check check-threads test-sanitizers test-exports test-layers demo \
        valgrind fuzz install uninstall test-install clean
.DEFAULT_GOAL := all

all: lib $(ALL_EXTRA)

lib: $(STATIC) $(SHARED) $(B)/liblmc.so $(PC)

$(B)/lib/%.o: lib/%.c $(wildcard lib/*.h) include/lmc.h
	@mkdir -p $(@D)
	$(E) "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(STATIC): $(LIB_OBJ)
	$(E) "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(E) "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(B)/liblmc.so: $(SHARED)
	$(Q)ln -sf liblmc.so.$(VERSION) $(B)/$(SONAME) && ln -sf liblmc.so.$(VERSION) $@

$(PC): lmc.pc.in include/lmc.h
	@mkdir -p $(@D)
	$(Q)sed -e 's|@PREFIX@|$(prefix)|' -e 's|@LIBDIR@|$(libdir)|' \
	    -e 's|@INCLUDEDIR@|$(includedir)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# Tests link the static library so that they can reach the internal test
# hooks (clock, allocation failures); -Wl,--wrap lets test_faults inject LMDB
# errors.
TEST_CFLAGS = $(ALL_CFLAGS) -Ilib -Wno-cast-qual -Wno-format-truncation
$(B)/tests/%: tests/%.c tests/util.h $(STATIC)
	@mkdir -p $(@D)
	$(E) "  CC      $@"
	$(Q)$(CC) $(TEST_CFLAGS) -o $@ $< $(if $(filter %test_faults,$@),$(FAULT_WRAP)) \
	    $(STATIC) $(ALL_LDFLAGS) -lcmocka $(LIBS)

$(B)/tests/test_model: tests/model.h

FAULT_WRAP := -Wl,--wrap=mdb_put -Wl,--wrap=mdb_cursor_put -Wl,--wrap=mdb_txn_commit -Wl,--wrap=mdb_txn_begin \
              -Wl,--wrap=mdb_get -Wl,--wrap=mdb_cursor_get

deps:
	@missing=""; \
	for p in $(DEB_PKGS) $(EXTRA_DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then sudo=""; \
	    elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	    else echo "lmc needs these Debian packages:$$missing (run as root to install)" >&2; exit 1; fi; \
	    echo "installing Debian packages:$$missing"; \
	    $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

# ThreadSanitizer's settings for every test run (ignored by other builds):
# the suppressions of LMDB's shared-map accesses (tests/tsan.supp says why
# each is safe), and a stop at the first report so that it fails the test.
TSAN_ENV = TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp history_size=7 halt_on_error=1 $$TSAN_OPTIONS"

# The unit tests of this build variant, TAP output.
check: lib $(TEST_BIN)
	$(Q)fail=0; for t in $(TEST_BIN); do \
	    echo "# $$t"; \
	    $(TSAN_ENV) CMOCKA_MESSAGE_OUTPUT=TAP $$t || fail=1; \
	done; exit $$fail

check-threads: lib $(THREAD_TESTS)
	$(Q)fail=0; for t in $(THREAD_TESTS); do \
	    echo "# $$t"; \
	    $(TSAN_ENV) CMOCKA_MESSAGE_OUTPUT=TAP $$t || fail=1; done; exit $$fail

test-exports: $(SHARED)
	$(Q)sh tests/check-exports.sh $(SHARED) include/lmc.h

# lib/ is layers: no circle in the modules' include graph.
test-layers:
	$(Q)sh tests/check-layers.sh lib

# Sanitizer builds get directories of their own: build/asan and build/tsan,
# or <B>-asan and <B>-tsan when B was given on the command line (a B given
# there reaches every sub-make, so it must be replaced, not inherited).
ifeq ($(origin B),command line)
SAN_B = $(B)-$(1)
else
SAN_B = build/$(1)
endif

test-sanitizers:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address B=$(call SAN_B,asan) check
	$(Q)$(MAKE) --no-print-directory SANITIZER=thread B=$(call SAN_B,tsan) check-threads

# Everything: what CI runs.
test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory check
	$(Q)$(MAKE) --no-print-directory test-exports
	$(Q)$(MAKE) --no-print-directory test-layers
	$(Q)$(MAKE) --no-print-directory test-sanitizers
	$(Q)$(if $(strip $(TEST_EXTRA)),$(MAKE) --no-print-directory $(TEST_EXTRA))
	@echo "all tests passed"

# Forked children leave the parent's read transactions behind on purpose
# (aborting them would clear the parent's reader slots), so only the parent
# process is checked for leaks; children are still checked for memory errors.
# Valgrind runs one thread at a time, and its default hand-over lets two
# threads that loop on gets pass the CPU between them while a writer thread
# waits: test_threads once ran 12 minutes instead of 20 s that way.
# --fair-sched=yes hands over in turn.
valgrind: lib $(TEST_BIN)
	$(Q)fail=0; for t in $(TEST_BIN); do \
	    echo "# valgrind $$t"; \
	    LMC_TEST_TIMEOUT_MULT=20 CMOCKA_MESSAGE_OUTPUT=TAP valgrind -q --fair-sched=yes --error-exitcode=9 \
	        --leak-check=full --errors-for-leak-kinds=definite --child-silent-after-fork=yes \
	        $$t || fail=1; \
	done; exit $$fail

install: lib $(INSTALL_EXTRA)
	install -d $(DESTDIR)$(libdir) $(DESTDIR)$(includedir) $(DESTDIR)$(pkgconfigdir)
	install -m 644 include/lmc.h $(DESTDIR)$(includedir)/lmc.h
	install -m 644 $(STATIC) $(DESTDIR)$(libdir)/liblmc.a
	install -m 755 $(SHARED) $(DESTDIR)$(libdir)/liblmc.so.$(VERSION)
	ln -sf liblmc.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sf liblmc.so.$(VERSION) $(DESTDIR)$(libdir)/liblmc.so
	sed -e 's|@PREFIX@|$(prefix)|' -e 's|@LIBDIR@|$(libdir)|' -e 's|@INCLUDEDIR@|$(includedir)|' \
	    -e 's|@VERSION@|$(VERSION)|' lmc.pc.in > $(DESTDIR)$(pkgconfigdir)/lmc.pc

uninstall: $(UNINSTALL_EXTRA)
	rm -f $(DESTDIR)$(includedir)/lmc.h $(DESTDIR)$(libdir)/liblmc.a \
	    $(DESTDIR)$(libdir)/liblmc.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME) \
	    $(DESTDIR)$(libdir)/liblmc.so $(DESTDIR)$(pkgconfigdir)/lmc.pc

# Install into a temporary DESTDIR and build a program against it.
test-install: lib
	$(Q)d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	$(MAKE) --no-print-directory install DESTDIR=$$d PREFIX=/opt/lmc >/dev/null && \
	flags=$$(PKG_CONFIG_SYSROOT_DIR=$$d PKG_CONFIG_PATH=$$d/opt/lmc/lib/pkgconfig \
	         pkg-config --cflags --libs lmc) && \
	$(CC) -o $$d/hello tests/install-hello.c $$flags && \
	LD_LIBRARY_PATH=$$d/opt/lmc/lib $$d/hello && echo "test-install: ok"

# Fuzzing: libFuzzer drives the operation sequences of tests/model.h and
# aborts on any difference from the model, under ASan and UBSan.  Needs clang
# and its fuzzer runtime (installed like the other packages); not part of
# make test, whose seeded sequences run the same checks.  The corpus is kept
# in $(B)/fuzz/corpus between runs; an input that fails is written to
# $(B)/fuzz/crash-* (replay it: $(FUZZ_BIN) FILE).
FUZZ_SECONDS ?= 60
FUZZ_BIN := $(B)/fuzz/fuzz_model
$(FUZZ_BIN): tests/fuzz/fuzz_model.c tests/model.h $(LIB_SRC) $(wildcard lib/*.h) \
             include/lmc.h
	@mkdir -p $(@D)
	$(E) "  CLANG   $@"
	$(Q)clang -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -Iinclude -Ilib -o $@ $< $(LIB_SRC) $(LIBS)

fuzz:
	$(Q)$(MAKE) --no-print-directory deps EXTRA_DEB_PKGS="clang libclang-rt-14-dev"
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BIN)
	@mkdir -p $(B)/fuzz/corpus
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix=$(B)/fuzz/ $(B)/fuzz/corpus

clean:
	rm -rf build
