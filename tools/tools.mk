# tools/tools.mk - the command-line tools (lmc, lmc-sweep, lmc-stats, and
# lmc-redis-sync, the only one that links hiredis), their tests and their
# installation.  Included by the top-level Makefile, which
# provides B, STATIC, ALL_CFLAGS, ALL_LDFLAGS, LIBS, CC, Q and E.
#
#   make all            also builds $(B)/lmc, $(B)/lmc-sweep, $(B)/lmc-stats
#   make check-tools    runs tests/tools/*.sh against the binaries in $(B)
#   make check-tools-asan   the same against an ASan+UBSan build
#   make install-tools / uninstall-tools   (DESTDIR, bindir honoured)
#
# The tools link the static library so that they run from the build directory
# without LD_LIBRARY_PATH, and so that a sanitizer build tests a sanitized
# library too.

TOOLS := lmc lmc-sweep lmc-stats
TOOLS_BIN := $(addprefix $(B)/,$(TOOLS))
# The Redis sidecar links hiredis; the library and the other tools do not.
SYNC_BIN := $(B)/lmc-redis-sync
TOOLS_COMMON_OBJ := $(B)/tools/common.o
TOOLS_HELPER := $(B)/tests/tools/lmc-test-helper

ALL_EXTRA += $(TOOLS_BIN) $(SYNC_BIN)
TEST_EXTRA += check-tools check-tools-asan
INSTALL_EXTRA += install-tools
UNINSTALL_EXTRA += uninstall-tools
# The tool tests parse JSON and check Prometheus output with Python.
EXTRA_DEB_PKGS += python3
# lmc-redis-sync: hiredis to build, redis-server for its tests.
EXTRA_DEB_PKGS += libhiredis-dev redis-server

.PHONY: tools check-tools check-tools-asan install-tools uninstall-tools

tools: $(TOOLS_BIN) $(SYNC_BIN)

$(B)/tools/%.o: tools/%.c tools/common.h include/lmc.h
	@mkdir -p $(@D)
	$(E) "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(TOOLS_BIN): $(B)/%: $(B)/tools/%.o $(TOOLS_COMMON_OBJ) $(STATIC)
	$(E) "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(TOOLS_COMMON_OBJ) $(STATIC) $(LIBS)

$(SYNC_BIN): $(B)/tools/lmc-redis-sync.o $(TOOLS_COMMON_OBJ) $(STATIC)
	$(E) "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(TOOLS_COMMON_OBJ) $(STATIC) -lhiredis $(LIBS)

# A small C program the tool tests use for bulk loads and for worker
# processes; like the tools, it uses only the public API.
$(TOOLS_HELPER): tests/tools/lmc-test-helper.c include/lmc.h $(STATIC)
	@mkdir -p $(@D)
	$(E) "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS)

# The tests find the binaries through LMC_BIN_DIR, so that the same scripts
# run against any build variant.
check-tools: $(TOOLS_BIN) $(SYNC_BIN) $(TOOLS_HELPER)
	$(Q)LMC_BIN_DIR=$(B) LMC_TEST_HELPER=$(TOOLS_HELPER) sh tests/tools/run.sh

# The same tests against an ASan+UBSan build.  Without a B on the command
# line this reuses the sanitizer build of `make test-sanitizers`; a B given
# on the command line would reach the sub-make and mix sanitized and plain
# objects in one directory, so it gets a directory of its own.
ifeq ($(origin B),command line)
TOOLS_ASAN_DIR := B=$(B)-asan
endif
check-tools-asan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address $(TOOLS_ASAN_DIR) check-tools

install-tools: $(TOOLS_BIN) $(SYNC_BIN)
	install -d $(DESTDIR)$(bindir)
	install -m 755 $(TOOLS_BIN) $(SYNC_BIN) $(DESTDIR)$(bindir)/

uninstall-tools:
	rm -f $(addprefix $(DESTDIR)$(bindir)/,$(TOOLS) lmc-redis-sync)
