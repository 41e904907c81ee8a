#!/bin/sh
# KNOWN LIBRARY BUG (reported to the lead; run.sh reports it as TODO).
#
# The design says a set fails with LMC_ENOSPC only if the value can never
# fit: a full map evicts and retries.  One process storing 100-byte values
# without TTL into a 4 MiB map gets LMC_ENOSPC ("10 rounds of eviction did
# not make room") after about 16500 sets, with every entry evictable, and a
# 16 MiB map ends at fill 0.997, where even lmc_sweep() fails unless its
# transactions are cut to one deletion (see test-sweep-full-map.sh).
. "$(dirname "$0")/lib.sh"

C=$(new_cache set-full 4M)
"$HELPER" fill "$C" k/ 200000 100 0 || fail "a writer got an error on a full map"
"$STATS" "$C" --json > "$T/s.json"
json_check "$T/s.json" 'j["sets"] == 200000' 'j["evictions_lru"] > 0'
