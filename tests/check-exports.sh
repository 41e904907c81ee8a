#!/bin/sh
# check-exports.sh SHARED_LIB HEADER - the shared library must export exactly
# the functions the public header declares with LMC_API: nothing internal
# (lmc__*) may leak, and nothing declared may be missing.
set -eu
lib=$1
header=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort > "$tmp/exported"
# Declarations look like: LMC_API [LMC_NODISCARD] type [*]lmc_name(
grep -E '^LMC_API' "$header" | sed -E 's/\(.*//; s/.*[ *]//' | sort > "$tmp/declared"
if ! diff -u "$tmp/declared" "$tmp/exported"; then
    echo "check-exports: exported symbols differ from the header (- declared, + exported)" >&2
    exit 1
fi
echo "check-exports: $(wc -l < "$tmp/exported") symbols, all declared"
