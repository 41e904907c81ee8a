#!/bin/sh
# Whatever state writers leave a map in, one lmc-sweep pass brings fill
# under the low watermark, without a complaint: writers that evict for
# themselves fill the map to the edge of the reserve of free pages they
# leave to deletes, and a sweep always finds those pages.
. "$(dirname "$0")/lib.sh"

C=$(new_cache full-map 16M)
# 200000 entries of 100 bytes cannot fit in 16 MiB: the writer has to evict
# as it goes, and every one of its writes must succeed.
"$HELPER" fill "$C" k/ 200000 100 0 || fail "a writer got an error on a full map"
"$STATS" "$C" --json > "$T/before.json"
json_check "$T/before.json" 'j["fill"] > 0.9'

"$SWEEP" "$C" --once --json > "$T/pass.json" 2> "$T/pass.err"
json_check "$T/pass.json" 'j["complete"] is True' 'j["fill_after"] <= 0.70' 'j["evicted_lru"] > 0'
[ ! -s "$T/pass.err" ] || fail "the pass complained: $(cat "$T/pass.err")"
# The cache works again: writes fit without evicting.
"$LMC" "$C" set after-sweep ok
expect_eq "$("$LMC" "$C" get after-sweep)" ok "a write after the sweep"
"$SWEEP" "$C" --once --json > "$T/pass2.json" 2> "$T/pass2.err"
json_check "$T/pass2.json" 'j["evicted"] == 0' 'j["complete"] is True'
[ ! -s "$T/pass2.err" ] || fail "second pass complained: $(cat "$T/pass2.err")"
echo "ok - one pass recovers a map filled to the last page"
