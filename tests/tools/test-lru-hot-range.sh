#!/bin/sh
# Regression test (formerly a known library bug): approximate LRU must not
# evict keys that were just read while thousands of keys that nobody read
# remain.  lmc_sweep() used to evict the coldest entries of each window of
# 4 x batch consecutive keys, however warm they were compared with the rest
# of the cache, so a hot key range wider than a window (here 8000 keys under
# hot/) lost about a quarter of every window.  It now scores runs of entries
# over the whole cache and evicts the coldest.
. "$(dirname "$0")/lib.sh"

C=$(new_cache lru-range 64M)
"$HELPER" fill "$C" hot/ 8000 1000 0
wait_clock_past $(( $(now_ms) + 150 ))
n_cold=$("$HELPER" fill-until "$C" xcold/ 1000 0.88)
wait_clock_past $(( $(now_ms) + 150 ))
expect_eq "$("$HELPER" read "$C" hot/ 8000)" 0 "hot keys missing before the sweep"

"$SWEEP" "$C" --once --json > "$T/pass.json"
json_check "$T/pass.json" 'j["fill_after"] <= 0.70' 'j["complete"] is True'
lru=$(json "$T/pass.json" 'j["evicted_lru"]')
lost=$("$HELPER" read "$C" hot/ 8000)
echo "  $lru evicted by LRU; $lost of 8000 hot keys lost while $n_cold cold keys were never read"
expect_eq "$lost" 0 "hot keys evicted"
