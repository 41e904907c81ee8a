#!/bin/sh
# Capacity eviction driven by lmc-sweep on a small (4 MiB) map filled past the
# high watermark: the pass brings fill under the low watermark, removes the
# expired entries first, then the entries with a TTL (soonest to expire), and
# then entries without TTL coldest first, so that every recently read ("hot")
# key survives even though the hot keys were written before everything else.
. "$(dirname "$0")/lib.sh"

C=$(new_cache evict 4M)
N_HOT=40
N_EARLY=40

# Recency is kept in 64 ms units.  Hot keys and an "early" control group are
# written first, and the clock moves on by more than two units before the
# bulk of cold keys is written, so by write time alone both groups are the
# coldest of all.  Then, after more than two units again, only the hot keys
# are read.  An eviction by key order or by write time would take hot keys;
# LRU must take early keys (never read) before them.
"$HELPER" fill "$C" hot/ "$N_HOT" 1000 0
"$HELPER" fill "$C" early/ "$N_EARLY" 1000 0
wait_clock_past $(( $(now_ms) + 150 ))
"$HELPER" fill "$C" ttl/ 20 1000 3600000   # live, with a TTL of an hour
"$HELPER" fill "$C" gone/ 20 1000 1        # expire at once
n_cold=$("$HELPER" fill-until "$C" cold/ 1000 0.88)
[ "$n_cold" -gt 1000 ] || fail "only $n_cold cold entries filled the map"
wait_clock_past $(( $(now_ms) + 150 ))
i=0
while [ $i -lt $N_HOT ]; do
    expect_rc 0 "$LMC" "$C" get "hot/$i" >/dev/null
    i=$((i + 1))
done

"$STATS" "$C" --json > "$T/before.json"
json_check "$T/before.json" 'j["fill"] > 0.80' "j['entries'] == $N_HOT + $N_EARLY + 40 + $n_cold" \
    'j["evictions"] == 0' 'j["map_full"] == 0'

# --no-evict only removes what expired, whatever the fill.
"$SWEEP" "$C" --once --no-evict --json > "$T/noevict.json"
json_check "$T/noevict.json" 'j["expired"] == 20' 'j["evicted"] == 0' 'j["fill_after"] > 0.80' \
    'j["complete"] is True'
"$HELPER" fill "$C" gone2/ 20 1000 1
gone2_expired() {
    for i in 0 7 19; do
        if "$LMC" "$C" get "gone2/$i" >/dev/null; then return 1; fi
    done
}
poll_until 5 gone2_expired

"$SWEEP" "$C" --once --json > "$T/pass.json"
json_check "$T/pass.json" 'j["fill_before"] > 0.80' 'j["fill_after"] <= 0.70' \
    'j["fill_after"] > 0.60' 'j["expired"] == 20' 'j["evicted_soonest"] == 20' \
    'j["evicted_lru"] > 0' 'j["evicted"] == j["evicted_soonest"] + j["evicted_lru"]' \
    'j["complete"] is True'
n_lru=$(json "$T/pass.json" 'j["evicted_lru"]')

# Every hot key survived; every entry with a TTL went before any LRU victim.
i=0
while [ $i -lt $N_HOT ]; do
    "$LMC" "$C" get "hot/$i" >/dev/null || fail "hot/$i was evicted"
    i=$((i + 1))
done
expect_eq "$("$LMC" "$C" ls ttl/ | wc -l)" 0 "entries with a TTL left"
early_left=$("$LMC" "$C" ls early/ | wc -l)
cold_left=$("$LMC" "$C" ls cold/ | wc -l)
expect_eq $(( (N_EARLY - early_left) + (n_cold - cold_left) )) "$n_lru" "LRU victims counted"
# The never-read early keys are colder than the cold ones (a few share a
# recency cell with a newer key and look newer, hence a ratio, not "all"):
# they must be evicted at a clearly higher rate than the cold keys.
"$PY" -c "
import sys
early = ($N_EARLY - $early_left) / $N_EARLY
cold = ($n_cold - $cold_left) / $n_cold
print('evicted: early %.0f%%, cold %.0f%%' % (early * 100, cold * 100))
sys.exit(0 if early >= 2 * cold and early >= 0.4 else 1)
" || fail "LRU did not prefer the never-read keys"

"$STATS" "$C" --json > "$T/after.json"
json_check "$T/after.json" 'j["fill"] <= 0.70' "j['evictions_lru'] == $n_lru" \
    'j["evictions_soonest"] == 20' 'j["evictions_expired"] == 40' \
    "j['evictions'] == 60 + $n_lru" 'j["sweeps"] == 2'

# Between the watermarks nothing is evicted; with lower watermarks the same
# fill is too high and the pass evicts down to the new low one.
"$HELPER" fill "$C" more/ 60 1000 0
"$SWEEP" "$C" --json > "$T/between.json"
json_check "$T/between.json" 'j["fill_before"] > 0.70' 'j["fill_before"] <= 0.80' \
    'j["evicted"] == 0'
"$SWEEP" "$C" --high 0.5 --low 0.4 --batch 50 --json > "$T/lower.json"
json_check "$T/lower.json" 'j["fill_after"] <= 0.40' 'j["evicted_lru"] > 0' \
    'j["transactions"] >= 2' 'j["complete"] is True'
i=0
while [ $i -lt $N_HOT ]; do
    "$LMC" "$C" get "hot/$i" >/dev/null || fail "hot/$i was evicted by the second pass"
    i=$((i + 1))
done
echo "ok - eviction brings fill under the low watermark, expired and TTL first, hot keys kept"
