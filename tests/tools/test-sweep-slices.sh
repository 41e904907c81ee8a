#!/bin/sh
# lmc-sweep runs a pass as several lmc_sweep() calls ("slices") so that it
# can notice signals.  A pass split that way must do the same work as one
# call: report the totals, and finish evicting down to the low watermark even
# after fill has dropped below the high one between two slices.
. "$(dirname "$0")/lib.sh"

C=$(new_cache slices 16M)
"$HELPER" fill "$C" exp/ 3000 100 1
n=$("$HELPER" fill-until "$C" cold/ 1000 0.88)
exp_gone() {
    for i in 0 1500 2999; do
        if "$LMC" "$C" get "exp/$i" >/dev/null; then return 1; fi
    done
}
poll_until 5 exp_gone

# 1 ms slices and 20 deletions per transaction: thousands of evictions take
# many slices on any machine.
"$SWEEP" "$C" --once --json --slice-ms 1 --batch 20 --high 0.5 --low 0.3 > "$T/pass.json"
json_check "$T/pass.json" 'j["slices"] >= 2' 'j["complete"] is True' \
    'j["expired"] == 3000' 'j["fill_before"] > 0.5' 'j["fill_after"] <= 0.30' \
    'j["fill_after"] > 0.2' 'j["evicted_lru"] > 0' 'j["transactions"] >= j["slices"]'
"$STATS" "$C" --json > "$T/s.json"
json_check "$T/s.json" 'j["fill"] <= 0.30' 'j["evictions_expired"] == 3000' \
    "j['evictions_lru'] == $(json "$T/pass.json" 'j["evicted_lru"]')" \
    "j['entries'] == $n - $(json "$T/pass.json" 'j["evicted_lru"]')" \
    "j['sweeps'] == $(json "$T/pass.json" 'j["slices"]')"
echo "  $(json "$T/pass.json" 'j["slices"]') slices, $(json "$T/pass.json" 'j["evicted_lru"]') evicted"

# A time budget applies to the whole pass, not to each slice: a pass with
# --max-time-ms stops after about that long and reports itself incomplete.
"$HELPER" fill "$C" exp2/ 20000 10 1
exp2_gone() { ! "$LMC" "$C" get exp2/19999 >/dev/null; }
poll_until 5 exp2_gone
expect_rc 1 "$SWEEP" "$C" --once --json --slice-ms 1 --batch 1 --max-time-ms 3 > "$T/budget.json"
json_check "$T/budget.json" 'j["complete"] is False' 'j["expired"] > 0' 'j["expired"] < 20000' \
    'j["elapsed_ms"] < 1000'
"$SWEEP" "$C" --once --json > "$T/rest.json"
json_check "$T/rest.json" "j['expired'] == 20000 - $(json "$T/budget.json" 'j["expired"]')" \
    'j["complete"] is True'
echo "ok - a pass in slices does the work of one call"
