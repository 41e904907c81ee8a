#!/bin/sh
# lmc-sweep --interval while 4 worker processes write and read: every pass is
# reported (one JSON object per line), the passes remove the workers' expired
# entries, nobody sees an error, and SIGTERM or SIGINT stops the sweeper
# promptly with exit 0, also in the middle of a long interval.
. "$(dirname "$0")/lib.sh"

C=$(new_cache interval 8M)

for id in 1 2 3 4; do
    "$HELPER" worker "$C" "$id" 60 > "$T/worker$id.out" 2>&1 &
    BG_PIDS="$BG_PIDS $!"
done
WORKERS=$BG_PIDS

: > "$T/sweep.out"
"$SWEEP" "$C" --interval 0.05 --json > "$T/sweep.out" 2> "$T/sweep.err" &
spid=$!
BG_PIDS="$BG_PIDS $spid"

# Wait for passes that found expired entries to remove: the workers write
# entries with 1-30 ms TTLs, so the sweeper must be finding them.
enough_passes() {
    [ "$(wc -l < "$T/sweep.out")" -ge 5 ] &&
    "$PY" -c '
import json, sys
passes = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
sys.exit(0 if sum(p["expired"] for p in passes) > 0 else 1)
' "$T/sweep.out"
}
poll_until 20 enough_passes

kill -TERM "$spid"
t0=$(now_ms)
poll_until 2 is_dead "$spid"
t_stop=$(( $(now_ms) - t0 ))
rc=0
wait "$spid" || rc=$?
expect_eq "$rc" 0 "exit status of lmc-sweep after SIGTERM"
[ ! -s "$T/sweep.err" ] || fail "lmc-sweep wrote errors: $(cat "$T/sweep.err")"

# Each line is a complete JSON object with the documented fields.
"$PY" - "$T/sweep.out" <<'EOF' || fail "bad pass reports"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
keys = {"path", "time_ms", "expired", "evicted", "evicted_soonest", "evicted_lru",
        "readers_cleared", "fill_before", "fill_after", "elapsed_ms", "transactions", "flushed",
        "rows_refiled", "slices", "complete"}
for l in lines:
    p = json.loads(l)
    assert set(p) == keys, set(p) ^ keys
    assert p["evicted"] == p["evicted_soonest"] + p["evicted_lru"]
    assert 0 <= p["fill_after"] <= 1 and 0 <= p["fill_before"] <= 1
    assert p["elapsed_ms"] >= 0 and p["transactions"] >= 1
    assert p["complete"] is True  # no budget was set
t = [json.loads(l)["time_ms"] for l in lines]
assert t == sorted(t)
print("  %d passes, %d expired entries removed" % (len(lines), sum(json.loads(l)["expired"] for l in lines)))
EOF

# The workers carry on, untroubled; then they stop cleanly too.
for p in $WORKERS; do
    kill -TERM "$p"
done
for p in $WORKERS; do
    wait "$p" || fail "a worker failed: $(cat "$T"/worker*.out)"
done
BG_PIDS=""
"$STATS" "$C" --json > "$T/s.json"
json_check "$T/s.json" 'j["sweeps"] >= 5' 'j["evictions_expired"] > 0' 'j["processes"] == 0'
echo "  lmc-sweep stopped $t_stop ms after SIGTERM"

# A long interval must not delay the stop: the wait wakes up on the signal.
for sig in INT TERM; do
    : > "$T/long.out"
    "$SWEEP" "$C" --interval 3600 > "$T/long.out" 2>&1 &
    spid=$!
    BG_PIDS="$spid"
    first_pass() { grep -q '^expired=' "$T/long.out"; }
    poll_until 10 first_pass
    kill -"$sig" "$spid"
    poll_until 2 is_dead "$spid"
    rc=0
    wait "$spid" || rc=$?
    BG_PIDS=""
    expect_eq "$rc" 0 "exit status after SIG$sig during a one-hour interval"
    expect_eq "$(wc -l < "$T/long.out")" 1 "lines printed by a one-hour interval"
done

# A pass that fails is reported with the code name and the library's
# message, and ends an --interval sweeper (the error cannot heal) with exit 2.
expect_rc 2 "$SWEEP" "$C" --interval 0.01 --batch 1000000 2> "$T/fail.err"
grep -q "LMC_EINVAL" "$T/fail.err" || fail "no code name in: $(cat "$T/fail.err")"
grep -q "batch 1000000" "$T/fail.err" || fail "no library message in: $(cat "$T/fail.err")"
expect_rc 2 "$SWEEP" "$C" --once --batch 1000000 2>/dev/null
echo "ok - lmc-sweep --interval with 4 workers, prompt clean stop on signals"
