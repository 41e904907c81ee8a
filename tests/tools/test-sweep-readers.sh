#!/bin/sh
# A worker killed with SIGKILL leaves its LMDB reader slot behind; the next
# pass of a running sweeper clears it and says so (readers_cleared), and the
# stats count it.  The dead worker's counters stay in the totals.
. "$(dirname "$0")/lib.sh"

C=$(new_cache readers 8M)
: > "$T/sweep.out"
"$SWEEP" "$C" --interval 0.05 --json > "$T/sweep.out" 2> "$T/sweep.err" &
spid=$!
BG_PIDS="$spid"
one_pass() { [ "$(wc -l < "$T/sweep.out")" -ge 1 ]; }
poll_until 10 one_pass

"$HELPER" worker "$C" 9 60 > /dev/null 2>&1 &
wpid=$!
BG_PIDS="$BG_PIDS $wpid"
worker_reading() {
    "$STATS" "$C" --per-process --json > "$T/pp.json" &&
    "$PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
mine = [p for p in j["per_process"] if p["pid"] == int(sys.argv[2])]
sys.exit(0 if mine and mine[0]["gets"] > 0 and j["processes"] == 2 else 1)
' "$T/pp.json" "$wpid"
}
poll_until 10 worker_reading
gets_before=$(json "$T/pp.json" 'j["gets"]')
kill -KILL "$wpid"
poll_until 5 is_dead "$wpid"
wait "$wpid" 2>/dev/null || true
BG_PIDS="$spid"

# Only the sweeper looks at the cache from here on, so nobody else can clear
# the dead slot first (every open runs mdb_reader_check).
cleared() {
    "$PY" -c '
import json, sys
passes = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
sys.exit(0 if sum(p["readers_cleared"] for p in passes) >= 1 else 1)
' "$T/sweep.out"
}
poll_until 10 cleared
kill -TERM "$spid"
poll_until 5 is_dead "$spid"
wait "$spid" || fail "lmc-sweep did not exit 0"
BG_PIDS=""
[ ! -s "$T/sweep.err" ] || fail "lmc-sweep wrote errors: $(cat "$T/sweep.err")"

"$STATS" "$C" --json > "$T/s.json"
json_check "$T/s.json" 'j["readers_cleared"] >= 1' 'j["processes"] == 0' \
    "j['gets'] >= $gets_before"
echo "ok - a running sweeper clears the reader slot of a killed worker"
