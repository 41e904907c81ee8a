#!/bin/sh
# Regression test (formerly a known library bug): a set fails with
# LMC_ENOSPC only if the value can never fit; a full map evicts and retries.
# One process storing 100-byte values without TTL into a 4 MiB map used to
# get LMC_ENOSPC after about 16500 sets, with every entry evictable, because
# scattered evictions free no B-tree page and a completely full map cannot
# even delete.  The library now evicts whole runs of entries and keeps a
# reserve of free pages.
. "$(dirname "$0")/lib.sh"

C=$(new_cache set-full 4M)
"$HELPER" fill "$C" k/ 200000 100 0 || fail "a writer got an error on a full map"
"$STATS" "$C" --json > "$T/s.json"
json_check "$T/s.json" 'j["sets"] == 200000' 'j["evictions_lru"] > 0'
