# docs/man/man.mk - the man pages lmc(1), lmc-stats(1), lmc-sweep(8) and
# lmc-redis-sync(8).
# Included by the top-level Makefile, which provides B, VERSION, mandir, Q
# and E.
#
#   make man          roff pages in $(B)/man/ from docs/man/*.md
#   make check-man    each tool's --help lists the options its page lists,
#                     and man renders every page without a warning
#   make install-man / uninstall-man   (DESTDIR, mandir honoured)
#
# The Markdown sources are the one place the pages are written; the roff is
# generated (by docs/man/mkman.py, Python's standard library only) and never
# committed, so that it cannot drift from them.

MAN_SRC := $(wildcard docs/man/*.[0-9].md)
MAN_PAGES := $(patsubst docs/man/%.md,$(B)/man/%,$(MAN_SRC))

ALL_EXTRA += $(MAN_PAGES)
TEST_EXTRA += check-man
INSTALL_EXTRA += install-man
UNINSTALL_EXTRA += uninstall-man
# man-db renders the pages in the test; python3 converts them.
EXTRA_DEB_PKGS += man-db python3

.PHONY: man check-man install-man uninstall-man

man: $(MAN_PAGES)

# The version in each page's footer is the library's, from include/lmc.h.
$(B)/man/%: docs/man/%.md docs/man/mkman.py include/lmc.h
	@mkdir -p $(@D)
	$(E) "  MAN     $@"
	$(Q)/usr/bin/python3 docs/man/mkman.py $< $(VERSION) > $@.tmp && mv $@.tmp $@

check-man: $(MAN_PAGES) $(TOOLS_BIN) $(SYNC_BIN)
	$(Q)/usr/bin/python3 tests/man/check-man.py $(B) $(B)/man $(MAN_SRC)

install-man: $(MAN_PAGES)
	$(Q)for p in $(MAN_PAGES); do \
	    s=$${p##*.}; \
	    install -d $(DESTDIR)$(mandir)/man$$s && \
	    install -m 644 $$p $(DESTDIR)$(mandir)/man$$s/ || exit 1; \
	done

uninstall-man:
	$(Q)for p in $(notdir $(MAN_PAGES)); do rm -f $(DESTDIR)$(mandir)/man$${p##*.}/$$p; done
