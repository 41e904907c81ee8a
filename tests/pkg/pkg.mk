# tests/pkg/pkg.mk - the ways users install lmc, built and tested as users
# would install them.  Included by the top-level Makefile, which provides B,
# TOOLS_BIN, Q and E.
#
#   make deb        the Debian packages (liblmc0, liblmc-dev, lmc-tools,
#                   python3-lmc) in build/deb/
#   make test-deb   lintian on them, then install them into the machine
#                   (as root, or with sudo) and test the installed files only;
#                   the packages are purged afterwards unless they were
#                   installed before (LMC_KEEP_DEBS=1 keeps them)
#   make test-pip   pip install ./python into a fresh venv and test that copy
#
# The packages are built from a copy of the tree in build/deb/src, because
# dpkg-buildpackage writes its results into the parent of the source
# directory: here build/deb/, not the directory that holds the clone.

DEB_DIR := build/deb
DEB_SRC := $(DEB_DIR)/src

TEST_EXTRA += test-pip test-deb
EXTRA_DEB_PKGS += debhelper dpkg-dev dh-python pybuild-plugin-pyproject python3-all-dev \
                  python3-setuptools python3-wheel lintian python3-venv python3-pip \
                  man-db pkg-config

.PHONY: deb test-deb test-pip

# The make variables of the calling make (B=..., -j's job server) must not
# reach debian/rules, whose build directory and flags are its own, and the
# build uses Debian's interpreter and compiler even when another python3
# (pyenv, a venv) comes first on PATH, as a Debian build machine would.
deb:
	$(Q)rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC)
	$(Q)tar --exclude=./build --exclude=./.git --exclude=./python/build \
	    --exclude='./python/*.egg-info' --exclude=__pycache__ --exclude='*.pyc' \
	    -cf - . | tar -xf - -C $(DEB_SRC)
	$(Q)cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PYTHONPATH -u PYTHONHOME \
	    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	    dpkg-buildpackage -us -uc -b -Jauto > ../build.log 2>&1 \
	    || { tail -n 60 ../build.log; echo "make deb: dpkg-buildpackage failed, see $(DEB_DIR)/build.log" >&2; exit 1; }
	$(Q)ls $(DEB_DIR)/*.deb

test-deb: deb
	$(Q)sh tests/pkg/test-deb.sh $(DEB_DIR)

test-pip: $(TOOLS_BIN)
	$(Q)sh tests/pkg/test-pip.sh $(B)
