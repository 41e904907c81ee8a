#!/bin/sh
# tests/pkg/installed.sh [VERSION] - the installed Debian packages liblmc0,
# liblmc-dev, lmc-tools and python3-lmc work, from their installed files
# only.  TAP output; exit 1 if anything failed.
#
# Run by tests/pkg/test-deb.sh after it installed the packages, and by
# autopkgtest (debian/tests/control).  VERSION, when given, is the version
# the packages must hold (the tree's include/lmc.h).
#
# The script runs again under `env -i` with PATH=/usr/bin:/bin (and sbin),
# from a temporary directory: no PYTHONPATH, LD_LIBRARY_PATH,
# PKG_CONFIG_PATH or build directory can stand in for an installed file.
# The only file it takes from the tree is the C test program.
set -eu
if [ -z "${LMC_INSTALLED_CLEAN:-}" ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp "$here/../install-hello.c" "$tmp/hello.c"
    cp "$0" "$tmp/installed.sh"
    cd "$tmp"
    rc=0
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$tmp" LC_ALL=C.UTF-8 LMC_INSTALLED_CLEAN=1 \
        sh "$tmp/installed.sh" "$@" || rc=$?
    exit $rc
fi

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
# check DESCRIPTION COMMAND...: the command's output is shown when it fails.
check() {
    what=$1
    shift
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        not_ok "$what"
        printf '%s\n' "$out" | sed 's/^/# /'
    fi
}

version=$(sed -n 's/^#define LMC_VERSION_STRING "\(.*\)"$/\1/p' /usr/include/lmc.h)
expect=${1:-$version}
check "the installed lmc.h is version $expect" test "$version" = "$expect"

for p in liblmc0 liblmc-dev lmc-tools python3-lmc; do
    check "$p is installed" sh -c \
        "dpkg-query -W -f='\${Status} \${Version}' $p | grep -q '^install ok installed $expect-'"
done

# --- C: a program built with pkg-config, against liblmc.so.0 and liblmc.a.
check "cc hello.c \$(pkg-config --cflags --libs lmc)" \
    sh -c 'cc -o hello hello.c $(pkg-config --cflags --libs lmc)'
check "the program runs against the installed liblmc.so.0" sh -c \
    "./hello | grep -qx 'lmc $version works' && ldd ./hello | grep -Eq 'liblmc.so.0 => (/usr)?/lib/'"
# liblmc.a, as pkg-config --static describes it.
check "the same program linked with liblmc.a (pkg-config --static) runs" sh -c \
    'cc -o hello-static hello.c $(pkg-config --cflags lmc) \
         $(pkg-config --static --libs lmc | sed "s/-llmc\( \|$\)/-Wl,-Bstatic -llmc -Wl,-Bdynamic /") &&
     ! readelf -d hello-static | grep -q "NEEDED.*liblmc" && ./hello-static >/dev/null'
# The symbols file gives a program that uses liblmc the dependency it needs.
mkdir -p shlibs/debian
printf 'Source: hello\n\nPackage: hello\nArchitecture: any\n' > shlibs/debian/control
cp hello shlibs/
check "dpkg-shlibdeps gives a program using liblmc a Depends on liblmc0 (>= ...)" sh -c \
    'cd shlibs && dpkg-shlibdeps -O hello | tee /dev/stderr | grep -q "liblmc0 (>= [0-9]"'

# --- The tools.
for t in lmc lmc-sweep lmc-stats lmc-redis-sync; do
    check "$t is /usr/bin/$t" test "$(command -v $t)" = "/usr/bin/$t"
done
check "lmc-stats --version" sh -c \
    "lmc-stats --version | grep -qx 'lmc-stats $version (liblmc $version)'"
shm=$(mktemp -d /dev/shm/lmc-installed-XXXXXX)
cache=$shm/cache
check "lmc --create set, then get: the value round-trips" sh -c \
    "lmc $cache --create --map-size 4M set greeting hello && test \"\$(lmc $cache get greeting)\" = hello"
check "lmc-sweep --once makes a complete pass" sh -c \
    "lmc-sweep $cache --once | grep -q 'complete=yes'"
check "lmc-stats --json counts the set and the get" sh -c \
    "lmc-stats $cache --json | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s[\"sets\"] == 1 and s[\"hits\"] == 1, s'"
rm -rf "$shm"

# --- Man pages, found by man-db's own search path.
for p in lmc.1 lmc-stats.1 lmc-sweep.8 lmc-redis-sync.8; do
    name=${p%.*}
    sec=${p##*.}
    check "man -w $name finds /usr/share/man/man$sec/$p.gz" \
        test "$(man -w "$name")" = "/usr/share/man/man$sec/$p.gz"
done
check "man lmc-sweep renders its options" sh -c \
    "MANWIDTH=80 man -P cat lmc-sweep 2>/dev/null | grep -q -- '--max-time-ms'"

# --- The systemd units name the installed tools.
for t in lmc-sweep lmc-redis-sync; do
    unit=/lib/systemd/system/$t@.service
    check "$unit runs /usr/bin/$t" grep -q "^ExecStart=/usr/bin/$t " "$unit"
    if command -v systemd-analyze >/dev/null 2>&1; then
        check "systemd-analyze verify accepts $t@.service" sh -c \
            "out=\$(systemd-analyze verify $unit 2>&1); printf '%s' \"\$out\"; test -z \"\$out\""
    fi
done

# --- Python: Debian's interpreter, the installed package and backends.
check '/usr/bin/python3 -c "import lmc.flask_caching"' /usr/bin/python3 -c "import lmc.flask_caching"
check "lmc, lmc.cachelib and lmc.flask_caching come from /usr/lib/python3/dist-packages" \
    /usr/bin/python3 - "$version" <<'EOF'
import os, sys, tempfile
import lmc, lmc.cachelib, lmc.flask_caching
for m in (lmc, lmc._lmc, lmc.cachelib, lmc.flask_caching):
    assert m.__file__.startswith("/usr/lib/python3/dist-packages/lmc/"), m.__file__
assert lmc.__version__ == sys.argv[1], lmc.__version__
d = tempfile.mkdtemp(dir="/dev/shm")
try:
    c = lmc.cachelib.LmcCache(d + "/c", map_size=4 << 20, default_timeout=60)
    assert c.set("k", {"v": 1}) and c.get("k") == {"v": 1}
    assert c.inc("n") == 1 and c.inc("n") == 2
finally:
    os.system("rm -rf " + d)
EOF

echo "1..$n"
[ "$failed" -eq 0 ]
