#!/bin/sh
# lmc-stats: the numbers in every format match what the test did; the text,
# JSON and Prometheus forms carry the same fields; the Prometheus output
# passes a format checker; --per-process, --watch and --output work; the
# tool is read-only: a missing cache is an error and nothing gets created;
# and a FIFO in the cache is an error, not a hang.
. "$(dirname "$0")/lib.sh"

# --- a missing cache: exit 2, a message, and nothing created -----------------
expect_rc 2 "$STATS" "$T/missing" 2> "$T/err"
grep -q "no lmc cache there (LMC_ENOCACHE)" "$T/err" || fail "message for a missing cache: $(cat "$T/err")"
[ ! -e "$T/missing" ] || fail "lmc-stats created $T/missing"
expect_rc 2 "$STATS" "$T/missing/deeper" --json 2>/dev/null
[ ! -e "$T/missing" ] || fail "lmc-stats created $T/missing"
mkdir -m 700 "$T/empty"
expect_rc 2 "$STATS" "$T/empty" --prometheus 2>/dev/null
expect_eq "$(ls -A "$T/empty")" "" "files created in an empty directory"

# --- a FIFO where a file of the cache should be: an error at once, no hang ----
F="$T/fifo"
"$LMC" "$F" --create --map-size 4M info >/dev/null
for name in stats recency data.mdb; do
    mv "$F/$name" "$T/$name.saved"
    mkfifo -m 600 "$F/$name"
    expect_rc 2 timeout $((10 * SCALE)) "$STATS" "$F" 2> "$T/err"
    grep -q "LMC_ECORRUPT: .*$name is a FIFO" "$T/err" || fail "message for a FIFO $name: $(cat "$T/err")"
    rm "$F/$name"
    mv "$T/$name.saved" "$F/$name"
done
"$STATS" "$F" >/dev/null

# --- usage ------------------------------------------------------------------
"$STATS" --help > "$T/help"
grep -q "^Usage: lmc-stats PATH" "$T/help" || fail "--help output"
"$STATS" -V | grep -q "^lmc-stats [0-9]" || fail "-V output"
expect_rc 2 "$STATS" 2>/dev/null
expect_rc 2 "$STATS" "$T/x" --json --prometheus 2>/dev/null
expect_rc 2 "$STATS" "$T/x" extra 2>/dev/null
expect_rc 2 "$STATS" "$T/x" --watch 0 2>/dev/null
expect_rc 2 "$STATS" "$T/x" --watch soon 2>/dev/null
expect_rc 2 "$STATS" "$T/x" --watch 2>/dev/null
expect_rc 2 "$STATS" "$T/x" --bogus 2> "$T/err"
grep -q "unknown or malformed option '--bogus'" "$T/err" || fail "message for --bogus: $(cat "$T/err")"
[ ! -e "$T/x" ] || fail "a usage error created $T/x"

# --- counters match a known sequence of operations ----------------------------
# The path has a quote, a backslash and a space in it, so that every format's
# escaping is exercised.
C="$T/odd \"name\\ here"
"$LMC" "$C" --create --map-size 8M info >/dev/null
"$LMC" "$C" set a alpha
"$LMC" "$C" set b bravo
"$LMC" "$C" set c charlie
expect_eq "$("$LMC" "$C" get a)" alpha "get a"
expect_eq "$("$LMC" "$C" get b)" bravo "get b"
for k in x y z; do
    expect_rc 1 "$LMC" "$C" get "$k"
done
expect_rc 1 "$LMC" "$C" add a again
"$LMC" "$C" add d delta
"$LMC" "$C" del b
expect_rc 1 "$LMC" "$C" del b
expect_eq "$("$LMC" "$C" incr n 5)" 5 "incr"
"$LMC" "$C" touch a 100000
"$LMC" "$C" set e echo --ttl 1
# Poll e until it reads as expired; count what the polling itself did.
hits=2 misses=3 expired=0 bytes_read=10
e_expired() {
    if "$LMC" "$C" get e >/dev/null; then
        hits=$((hits + 1)); bytes_read=$((bytes_read + 4)); return 1
    fi
    misses=$((misses + 1)); expired=$((expired + 1))
}
poll_until 5 e_expired
"$LMC" "$C" set "p/1" one
"$LMC" "$C" set "p/2" two
expect_eq "$("$LMC" "$C" del-prefix p/)" 2 "del-prefix count"
expect_rc 0 "$SWEEP" "$C" >/dev/null

"$STATS" "$C" --json > "$T/s.json"
json_check "$T/s.json" \
    "j['hits'] == $hits" "j['misses'] == $misses" "j['gets'] == $hits + $misses" \
    "j['expired'] == $expired" "j['bytes_read'] == $bytes_read" \
    'j["sets"] == 8' 'j["adds"] == 2' 'j["add_conflicts"] == 1' 'j["deletes"] == 1' \
    'j["incrs"] == 1' 'j["touches"] == 1' 'j["prefix_deletes"] == 1' \
    'j["prefix_deleted_keys"] == 2' 'j["evictions_expired"] == 1' 'j["evictions"] == 1' \
    'j["evictions_soonest"] == 0' 'j["evictions_lru"] == 0' 'j["sweeps"] == 1' \
    'j["clears"] == 0' 'j["map_full"] == 0' 'j["malformed"] == 0' \
    'j["bytes_written"] == 5 + 5 + 7 + 5 + 1 + 4 + 3 + 3' \
    'j["entries"] == 4' 'j["entries_with_ttl"] == 1' 'j["key_bytes"] == 4' \
    'j["value_bytes"] == 5 + 7 + 5 + 1' \
    'j["map_size"] == 8 * 1024 * 1024' 'j["total_pages"] * j["page_size"] == j["map_size"]' \
    'abs(j["fill"] - j["used_pages"] / j["total_pages"]) < 1e-5' \
    "abs(j['hit_ratio'] - $hits / ($hits + $misses)) < 1e-5" \
    'j["processes"] == 0' 'j["on_tmpfs"] == 1' 'j["format_version"] >= 1' \
    'j["created_ms"] > 0' 'j["lmc_version"].count(".") == 2'
"$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(j["path"] != sys.argv[2])' \
    "$T/s.json" "$C" || fail "the JSON path does not round-trip"

# --- the text form has the same names and numbers, under # Section headers -----
"$STATS" "$C" > "$T/s.txt"
"$PY" - "$T/s.txt" "$T/s.json" <<'EOF' || fail "text and JSON forms differ"
import json, re, sys
text = open(sys.argv[1]).read().split("\n")
j = json.load(open(sys.argv[2]))
seen, sections = {}, []
for line in text:
    if line == "":
        continue
    if line.startswith("# "):
        sections.append(line[2:])
        continue
    m = re.fullmatch(r"([a-z_]+):(.*)", line)
    assert m, "not a name:value line: %r" % line
    assert m.group(1) not in seen, "name twice: %s" % m.group(1)
    assert sections, "a line before the first section"
    seen[m.group(1)] = m.group(2)
assert sections == ["Cache", "Counters", "Gauges", "Derived"], sections
assert set(seen) == set(j), set(seen) ^ set(j)
for k, v in seen.items():
    if k in ("time_ms", "path"):
        continue
    jv = j[k]
    if isinstance(jv, float):
        assert abs(float(v) - jv) < 1e-5, (k, v, jv)
    else:
        assert v == str(jv), (k, v, jv)
EOF

# --- every counter and gauge of the library appears, with the right kind ------
# The header's X-macro lists are the reference: a field added to the library
# must show up in the tool without a change to it.
hdr=$TESTS_DIR/../../include/lmc.h
"$STATS" "$C" --prometheus > "$T/s.prom"
"$PY" "$TESTS_DIR/promcheck.py" "$T/s.prom" > "$T/prom.json" || fail "Prometheus output rejected"
"$PY" - "$hdr" "$T/s.json" "$T/prom.json" <<'EOF' || fail "fields missing or of the wrong kind"
import json, re, sys
hdr = open(sys.argv[1]).read()
j = json.load(open(sys.argv[2]))
prom = json.load(open(sys.argv[3]))
def block(name):
    m = re.search(r"#define %s\(X\)(.*?)\n\n" % name, hdr, re.S)
    return re.findall(r"X\((\w+),", m.group(1))
counters, gauges = block("LMC_COUNTERS"), block("LMC_GAUGES")
assert len(counters) >= 20 and len(gauges) >= 10, (counters, gauges)
by_name = {k.split("{")[0]: v for k, v in prom.items() if k.startswith("lmc_")}
for c in counters:
    assert c in j, "counter %s not in JSON" % c
    assert by_name.get("lmc_%s_total" % c) == j[c], "lmc_%s_total != %s" % (c, j[c])
for g in gauges:
    assert g in j, "gauge %s not in JSON" % g
    assert abs(by_name["lmc_%s" % g] - j[g]) < 1e-5, "lmc_%s" % g
assert abs(by_name["lmc_hit_ratio"] - j["hit_ratio"]) < 1e-5
assert by_name["lmc_evictions_total"] == j["evictions"]
# Every series is labelled with the cache path, escaped so it round-trips.
for k in prom:
    assert 'path="' in k, k
EOF
grep -q '^# TYPE lmc_hits_total counter$' "$T/s.prom" || fail "no counter TYPE for hits"
grep -q '^# TYPE lmc_fill gauge$' "$T/s.prom" || fail "no gauge TYPE for fill"
grep -q '^# HELP lmc_hits_total lookups that found a live entry$' "$T/s.prom" || fail "no HELP for hits"

# --- read-only: looking changes nothing -------------------------------------
ls -A "$C" > "$T/files.before"
"$STATS" "$C" --json > "$T/again.json"
ls -A "$C" > "$T/files.after"
cmp -s "$T/files.before" "$T/files.after" || fail "lmc-stats changed the files of the cache"
"$PY" - "$T/s.json" "$T/again.json" <<'EOF' || fail "reading the stats changed them"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
changed = [k for k in a if k not in ("time_ms", "readers", "readers_active", "last_txnid")
           and a[k] != b[k]]
assert not changed, changed
EOF

# --- --per-process sees a live worker, with its own counters ------------------
"$HELPER" worker "$C" 1 30 > "$T/worker.out" &
wpid=$!
BG_PIDS="$BG_PIDS $wpid"
worker_listed() {
    "$STATS" "$C" --per-process --json > "$T/pp.json" &&
    "$PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
mine = [p for p in j["per_process"] if p["pid"] == int(sys.argv[2])]
sys.exit(0 if mine and mine[0]["alive"] == 1 and mine[0]["gets"] > 0 and j["processes"] >= 1 else 1)
' "$T/pp.json" "$wpid"
}
poll_until 10 worker_listed
"$STATS" "$C" --per-process > "$T/pp.txt"
grep -q "^# Process $wpid\$" "$T/pp.txt" || fail "no text section for process $wpid"
"$STATS" "$C" --per-process --prometheus > "$T/pp.prom"
"$PY" "$TESTS_DIR/promcheck.py" "$T/pp.prom" > "$T/pp-prom.json" || fail "per-process Prometheus output rejected"
grep -q "^lmc_process_sets_total{path=\".*\",pid=\"$wpid\"} [0-9]" "$T/pp.prom" || fail "no per-process series for $wpid"
kill -TERM "$wpid"
wait "$wpid" || fail "the worker failed: $(cat "$T/worker.out")"
BG_PIDS=""
# Its counts stay in the totals after it is gone.
"$STATS" "$C" --json > "$T/post.json"
json_check "$T/post.json" "j['sets'] > 8" "j['gets'] > $hits + $misses" 'j["processes"] == 0'

# --- --watch: one JSON object per line until SIGTERM; a long wait ends on SIGINT
: > "$T/watch.out"
"$STATS" "$C" --json --watch 0.05 > "$T/watch.out" 2> "$T/watch.err" &
spid=$!
BG_PIDS="$spid"
three_lines() { [ "$(wc -l < "$T/watch.out")" -ge 3 ]; }
poll_until 10 three_lines
kill -TERM "$spid"
t0=$(now_ms)
poll_until 3 is_dead "$spid"
wait "$spid" || fail "lmc-stats --watch did not exit 0 on SIGTERM"
BG_PIDS=""
"$PY" -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) >= 3
t = [json.loads(l)["time_ms"] for l in lines]
assert t == sorted(t), t
' "$T/watch.out" || fail "--watch output is not one JSON object per line"
[ ! -s "$T/watch.err" ] || fail "--watch wrote errors: $(cat "$T/watch.err")"

: > "$T/watch2.out"
"$STATS" "$C" --watch 3600 > "$T/watch2.out" &
spid=$!
BG_PIDS="$spid"
has_output() { grep -q '^# Derived' "$T/watch2.out"; }
poll_until 10 has_output
t0=$(now_ms)
kill -INT "$spid"
poll_until 3 is_dead "$spid"
wait "$spid" || fail "lmc-stats --watch 3600 did not exit 0 on SIGINT"
BG_PIDS=""
echo "  --watch 3600 stopped $(( $(now_ms) - t0 )) ms after SIGINT"

# --- --output replaces a file atomically, for the textfile collector ----------
mkdir "$T/textfile"
"$STATS" "$C" --prometheus --output "$T/textfile/lmc.prom"
"$PY" "$TESTS_DIR/promcheck.py" "$T/textfile/lmc.prom" >/dev/null || fail "--output file rejected"
expect_eq "$(ls -A "$T/textfile")" "lmc.prom" "files in the textfile directory"
expect_rc 2 "$STATS" "$C" --output "$T/no/such/dir/lmc.prom" 2>/dev/null
echo "ok - lmc-stats formats, numbers, read-only and watch mode"
