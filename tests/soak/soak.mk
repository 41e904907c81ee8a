# tests/soak/soak.mk - the soak test (tests/soak/soak.c): writers, readers, a
# prefix deleter and lmc-sweep on a cache under eviction while random
# processes are SIGKILLed, then an audit.  Included by the top-level
# Makefile, which provides B, STATIC, ALL_CFLAGS, ALL_LDFLAGS, LIBS, CC, Q
# and E.
#
#   make soak            SOAK_SECONDS (300) of it; SOAK_ARGS adds options
#                        (e.g. SOAK_ARGS="--seed 42 --keep"; lmc-soak --help)
#   make soak-quick      the 30-second run of `make test` (SOAK_QUICK_SECONDS)
#   make soak-selftest   shows that each check can fail: a saboteur breaks
#                        one promise behind the library's back (loses writes,
#                        writes old or corrupt values, stops making progress)
#                        and the run must catch it; about 20 s
#
# The soak runs against the plain build and uses lmc-sweep from the same
# build directory as its sweeper.  It creates its caches under
# $LMC_TEST_BASE (default /dev/shm) and removes them when it ends.

SOAK_BIN := $(B)/soak/lmc-soak
SOAK_SECONDS ?= 300
SOAK_QUICK_SECONDS ?= 30
SOAK_ARGS ?=
SOAK_RUN = $(SOAK_BIN) --sweeper $(B)/lmc-sweep

# Built by `make all`, so that a change that breaks it shows up at once.
ALL_EXTRA += $(SOAK_BIN)
TEST_EXTRA += soak-selftest soak-quick

.PHONY: soak soak-quick soak-selftest

$(SOAK_BIN): tests/soak/soak.c include/lmc.h $(STATIC)
	@mkdir -p $(@D)
	$(E) "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS)

soak: $(SOAK_BIN) $(B)/lmc-sweep
	$(Q)$(SOAK_RUN) --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

soak-quick: $(SOAK_BIN) $(B)/lmc-sweep
	$(Q)$(SOAK_RUN) --seconds $(SOAK_QUICK_SECONDS) $(SOAK_ARGS)

# Each injection runs a few seconds and passes only if its check fired.
# hang needs a shorter hang limit than the run, so that it can be seen.
soak-selftest: $(SOAK_BIN) $(B)/lmc-sweep
	$(Q)fail=0; for k in lose stale torn hang; do \
	    echo "# soak self-test: $$k"; \
	    $(SOAK_RUN) --seconds 4 --hang-seconds 2 --inject $$k > $(B)/soak/selftest-$$k.log 2>&1; \
	    st=$$?; grep '^self-test:' $(B)/soak/selftest-$$k.log || tail -n 20 $(B)/soak/selftest-$$k.log; \
	    [ $$st -eq 0 ] || { echo "# soak self-test $$k FAILED (exit $$st), log: $(B)/soak/selftest-$$k.log"; fail=1; }; \
	done; exit $$fail
