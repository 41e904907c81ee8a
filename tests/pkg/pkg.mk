# tests/pkg/pkg.mk - the ways users install lmc, built and tested as users
# would install them.  Included by the top-level Makefile, which provides B,
# TOOLS_BIN, Q and E.
#
#   make test-pip   pip install ./python into a fresh venv and test that copy

TEST_EXTRA += test-pip
EXTRA_DEB_PKGS += python3-setuptools python3-wheel python3-venv python3-pip

.PHONY: test-pip

test-pip: $(TOOLS_BIN)
	$(Q)sh tests/pkg/test-pip.sh $(B)
