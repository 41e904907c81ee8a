#!/bin/sh
# tests/tools/run.sh - run every tool test, TAP output; exit 1 if any failed.
#
#   LMC_BIN_DIR=build/release sh tests/tools/run.sh [TEST.sh ...]
#
# `make check-tools` sets LMC_BIN_DIR (and LMC_TEST_HELPER) for the build
# variant it was given.  LMC_TEST_TIMEOUT_SCALE multiplies every deadline.
set -u
dir=$(cd "$(dirname "$0")" && pwd)
: "${LMC_BIN_DIR:?set LMC_BIN_DIR to the build directory that holds the tools}"
export LMC_BIN_DIR

# xfail-*.sh are tests of known library bugs: they are reported as TAP TODO
# items, which do not fail the run, until the bug is fixed.
if [ $# -eq 0 ]; then
    set --
    for t in "$dir"/test-*.sh "$dir"/xfail-*.sh; do
        [ -e "$t" ] && set -- "$@" "$t"
    done
fi
echo "1..$(( $# + 1 ))"
n=0
failed=0
# The Prometheus checker must itself reject broken input, or passing it would
# prove nothing.
n=$((n + 1))
if /usr/bin/python3 "$dir/promcheck.py" --self-test; then
    echo "ok $n - promcheck.py rejects malformed expositions"
else
    echo "not ok $n - promcheck.py rejects malformed expositions"
    failed=$((failed + 1))
fi
for t in "$@"; do
    n=$((n + 1))
    name=$(basename "$t" .sh)
    todo=""
    case "$name" in xfail-*) todo=" # TODO known library bug, see $name.sh" ;; esac
    start=$(date +%s%3N)
    if out=$(sh "$t" 2>&1); then
        echo "ok $n - $name ($(( $(date +%s%3N) - start )) ms)$todo"
    else
        echo "not ok $n - $name$todo"
        [ -n "$todo" ] || failed=$((failed + 1))
    fi
    printf '%s\n' "$out" | sed 's/^/# /'
done
[ "$failed" -eq 0 ] || { echo "# $failed of $n tool tests failed"; exit 1; }
