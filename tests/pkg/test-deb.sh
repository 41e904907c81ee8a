#!/bin/sh
# tests/pkg/test-deb.sh DEB_DIR - check the Debian packages `make deb` built
# in DEB_DIR with lintian, install them into this machine, and test the
# installed files (tests/pkg/installed.sh).
#
# Installing needs root (CI runs as root on a machine it throws away) or
# sudo.  The packages go in as users install them: dpkg -i, then
# apt-get -f install for whatever they depend on that is missing.  Packages
# the test installed are purged at the end, so that a developer's machine
# keeps no lmc in /usr that later builds could pick up by mistake; packages
# of lmc that were installed before the test stay (at the version tested),
# and LMC_KEEP_DEBS=1 keeps them all.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
deb_dir=$(cd "$1" && pwd)
pkgs="liblmc0 liblmc-dev lmc-tools python3-lmc"
version=$(sed -n 's/^#define LMC_VERSION_STRING "\(.*\)"$/\1/p' "$top/include/lmc.h")
debver=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
arch=$(dpkg --print-architecture)

# lintian on everything dpkg-buildpackage made.  Errors and warnings fail;
# the overrides in debian/*.lintian-overrides say why each is overridden.
changes="$deb_dir/lmc_${debver}_${arch}.changes"
echo "# lintian $changes"
rc=0
out=$(lintian --fail-on error,warning --info "$changes" 2>&1) || rc=$?
printf '%s\n' "$out" | grep -v '^running with root privileges' | sed 's/^/# /'
if [ "$rc" != 0 ]; then
    echo "test-deb: lintian reports errors or warnings (above)" >&2
    exit 1
fi
echo "# lintian: no errors, no warnings"

if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "test-deb: installing the packages needs root or sudo" >&2
    exit 1
fi

installed_before=""
for p in $pkgs; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        installed_before="$installed_before $p"
    fi
done
cleanup() {
    [ "${LMC_KEEP_DEBS:-0}" = 1 ] && return 0
    purge=""
    for p in $pkgs; do
        case " $installed_before " in *" $p "*) ;; *) purge="$purge $p" ;; esac
    done
    if [ -n "$purge" ]; then
        echo "# purging what the test installed:$purge"
        $sudo dpkg --purge $purge >/dev/null
    fi
}
trap cleanup EXIT

debs=""
for p in $pkgs; do
    debs="$debs $deb_dir/${p}_${debver}_${arch}.deb"
done
echo "# dpkg -i$debs"
export DEBIAN_FRONTEND=noninteractive
if ! $sudo dpkg -i $debs >"$deb_dir/install.log" 2>&1; then
    # Missing dependencies leave the packages unpacked, not configured:
    # apt-get installs what they need and configures them.
    echo "# apt-get -f install"
    $sudo apt-get -f install -y -q >>"$deb_dir/install.log" 2>&1 || {
        cat "$deb_dir/install.log"
        exit 1
    }
fi

sh "$top/tests/pkg/installed.sh" "$version"
