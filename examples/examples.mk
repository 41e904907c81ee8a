# examples/examples.mk - the prefork demo behind `make demo`.  Included by
# the top-level Makefile.
#
#   make demo   install missing packages, build everything, run examples/demo.sh:
#               a master and 4 forked workers sharing one cache, with
#               lmc-sweep running next to them and lmc-stats reading it.

DEMO_BIN := $(B)/prefork_demo
ALL_EXTRA += $(DEMO_BIN)

.PHONY: demo

$(DEMO_BIN): examples/prefork_demo.c include/lmc.h $(STATIC)
	@mkdir -p $(@D)
	$(E) "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS) -lm

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)sh examples/demo.sh $(B)
