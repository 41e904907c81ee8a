#!/bin/sh
# A sweep removes exactly the expired entries: entries with a 1 ms TTL are
# gone after a pass, entries with a long TTL and entries without TTL all stay,
# and the counts in the pass report and in the stats say the same.
. "$(dirname "$0")/lib.sh"

C=$(new_cache sweep-expired)

for i in 1 2 3 4 5 6; do
    "$LMC" "$C" set "short/$i" "value $i" --ttl 1
done
for i in 1 2 3 4; do
    "$LMC" "$C" set "long/$i" "value $i" --ttl 3600000
done
for i in 1 2 3; do
    "$LMC" "$C" set "forever/$i" "value $i"
done
# The 1 ms entries may already read as expired, but all 13 are stored.
"$STATS" "$C" --json > "$T/stored.json"
json_check "$T/stored.json" 'j["entries"] == 13' 'j["sets"] == 13'

# Poll until every short entry reads as a miss: expired, not yet removed.
short_all_missing() {
    for i in 1 2 3 4 5 6; do
        if "$LMC" "$C" get "short/$i" >/dev/null; then
            return 1
        fi
    done
}
poll_until 5 short_all_missing
"$STATS" "$C" --json > "$T/before.json"
# Lazy expiry writes nothing: the six are still stored until a sweep.
json_check "$T/before.json" 'j["entries"] == 13' 'j["entries_with_ttl"] == 10' \
    'j["expired"] >= 6' 'j["evictions_expired"] == 0'

"$SWEEP" "$C" --once --json > "$T/pass.json"
json_check "$T/pass.json" 'j["expired"] == 6' 'j["evicted"] == 0' \
    'j["evicted_soonest"] == 0' 'j["evicted_lru"] == 0' 'j["complete"] is True' \
    'j["transactions"] >= 1' 'j["fill_after"] <= j["fill_before"]' \
    'j["readers_cleared"] == 0'

# Exactly the long-TTL and no-TTL entries remain.
"$LMC" "$C" ls | cut -f1 | sort > "$T/left"
printf '%s\n' forever/1 forever/2 forever/3 long/1 long/2 long/3 long/4 > "$T/want"
cmp -s "$T/left" "$T/want" || { diff "$T/want" "$T/left" >&2; fail "wrong keys left after the sweep"; }
for i in 1 2 3 4; do
    expect_eq "$("$LMC" "$C" get "long/$i")" "value $i" "long/$i after the sweep"
done

"$STATS" "$C" --json > "$T/after.json"
json_check "$T/after.json" 'j["entries"] == 7' 'j["entries_with_ttl"] == 4' \
    'j["evictions_expired"] == 6' 'j["sweeps"] == 1' 'j["evictions"] == 6'

# A second pass has nothing to do.
"$SWEEP" "$C" --once --json > "$T/pass2.json"
json_check "$T/pass2.json" 'j["expired"] == 0' 'j["evicted"] == 0' 'j["complete"] is True' \
    '"rows_refiled" in j'

# The text form reports the same numbers on one line.
for i in 1 2; do
    "$LMC" "$C" set "short2/$i" x --ttl 1
done
short2_missing() {
    ! "$LMC" "$C" get short2/1 >/dev/null && ! "$LMC" "$C" get short2/2 >/dev/null
}
poll_until 5 short2_missing
line=$("$SWEEP" "$C")
case "$line" in
    "expired=2 evicted=0 evicted_soonest=0 evicted_lru=0 readers_cleared=0 fill_before="*" slices=1 complete=yes") ;;
    *) fail "unexpected text report: $line" ;;
esac

# --max-keys bounds a pass: 5 of 8 expired entries, then exit 1 (not done),
# and the next pass finishes the job.
for i in 1 2 3 4 5 6 7 8; do
    "$LMC" "$C" set "short3/$i" x --ttl 1
done
short3_missing() {
    for i in 1 2 3 4 5 6 7 8; do
        if "$LMC" "$C" get "short3/$i" >/dev/null; then return 1; fi
    done
}
poll_until 5 short3_missing
expect_rc 1 "$SWEEP" "$C" --once --max-keys 5 --batch 2 --json > "$T/budget.json"
json_check "$T/budget.json" 'j["expired"] == 5' 'j["complete"] is False' 'j["transactions"] >= 3'
"$SWEEP" "$C" --json > "$T/rest.json"
json_check "$T/rest.json" 'j["expired"] == 3' 'j["complete"] is True'
expect_eq "$("$LMC" "$C" ls | wc -l)" 7 "entries after the bounded passes"
echo "ok - sweep removes exactly the expired entries"
