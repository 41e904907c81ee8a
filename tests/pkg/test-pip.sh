#!/bin/sh
# tests/pkg/test-pip.sh BIN_DIR - pip installs the Python package the way
# python/README.md tells users to, and the installed copy works.
#
# The parts of the tree pip needs (include/, lib/, python/) are copied into a
# temporary directory first, as a fresh clone would have them: the test then
# proves that pip needs nothing else (no `make` before it), and pip's
# in-tree build files (python/build/, python/lmc.egg-info/) never land in
# the source tree.  The virtual environment is made by Debian's interpreter
# with --system-site-packages, so that Debian's setuptools and wheel build
# the package (--no-build-isolation: no package index is needed, and
# --no-index makes sure none is asked) and Debian's cachelib and
# Flask-Caching satisfy the extras.
#
# Everything after the install runs from / with a clean environment, so
# that only the installed files can be imported.  BIN_DIR holds the built
# command-line tools, which the Python test suite drives.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

version=$(sed -n 's/^#define LMC_VERSION_STRING "\(.*\)"$/\1/p' "$top/include/lmc.h")
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }

mkdir "$tmp/src"
(cd "$top" && tar --exclude=python/build --exclude='python/*.egg-info' --exclude=__pycache__ \
    -cf - include lib python) | tar -xf - -C "$tmp/src"
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
ok "venv made with /usr/bin/python3 -m venv --system-site-packages"

(cd "$tmp" && "$tmp/venv/bin/pip" install -q --no-build-isolation --no-index \
    './src/python[cachelib,flask]')
ok "pip install --no-build-isolation './python[cachelib,flask]' from a copy of the tree"

# From here on: the installed package only.
run() {
    (cd / && env -i PATH=/usr/bin:/bin HOME="$tmp" PYTHONDONTWRITEBYTECODE=1 "$@")
}
py="$tmp/venv/bin/python"

run "$py" - "$tmp/venv" "$version" <<'EOF'
import os, sys, tempfile
import importlib.metadata as md
import lmc, lmc.cachelib, lmc.flask_caching

venv, version = sys.argv[1], sys.argv[2]
for m in (lmc, lmc._lmc, lmc.cachelib, lmc.flask_caching):
    assert m.__file__.startswith(venv + "/lib/"), m.__file__
assert lmc.__version__ == version, (lmc.__version__, version)
meta = md.metadata("lmc")
assert meta["Version"] == version, meta["Version"]
assert meta["Requires-Python"] == ">=3.10", meta["Requires-Python"]
assert meta["License"] == "MIT", meta["License"]
assert "License :: OSI Approved :: MIT License" in meta.get_all("Classifier")
assert set(meta.get_all("Provides-Extra")) == {"cachelib", "flask"}, meta.get_all("Provides-Extra")
d = tempfile.mkdtemp(dir="/dev/shm")
with lmc.Cache(d + "/c", map_size=4 << 20) as c:
    c.set("k", b"v")
    assert c.get("k") == b"v"
c = lmc.cachelib.LmcCache(d + "/c")
c.set("n", 41)
assert c.inc("n") == 42
os.system("rm -rf " + d)
EOF
ok "lmc, lmc.cachelib, lmc.flask_caching import from the venv; version $version, metadata, a round trip"

so=$(run "$py" -c 'import lmc._lmc; print(lmc._lmc.__file__)')
exported=$(nm -D --defined-only "$so" | awk '{print $3}')
if [ "$exported" != PyInit__lmc ]; then
    echo "not ok $((n + 1)) - the extension exports PyInit__lmc alone, not: $exported"
    exit 1
fi
ok "the extension exports PyInit__lmc alone (the library inside it stays hidden)"

# The Python test suite against the installed package.  test_gunicorn.py and
# test_http_gunicorn.py are left out: their gunicorn runs /usr/bin/python3,
# which does not see the venv.
(cd / && env -i PATH=/usr/bin:/bin HOME="$tmp" PYTHONDONTWRITEBYTECODE=1 LMC_BIN_DIR="$bin_dir" \
    "$py" -m pytest -q -p no:cacheprovider --ignore="$top/python/tests/test_gunicorn.py" \
    --ignore="$top/python/tests/test_http_gunicorn.py" \
    "$top/python/tests" >"$tmp/pytest.log" 2>&1) || { cat "$tmp/pytest.log"; exit 1; }
ok "python/tests pass against the pip-installed package: $(tail -n 1 "$tmp/pytest.log")"
echo "1..$n"
