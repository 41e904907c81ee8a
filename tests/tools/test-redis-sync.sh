#!/bin/sh
# lmc-redis-sync against a real redis-server on a unix socket in the test's
# directory: a write by another client ("host B") deletes the key from the
# L1; keys outside the prefix are left alone; FLUSHALL flushes the prefix;
# CLIENT KILL of either connection, a redis-server that stops answering
# (SIGSTOP) and one that is killed and restarted each flush the prefix and
# tracking resumes; while Redis is down the L1 is flushed every heartbeat;
# the fill race through the sidecar (a value read before an invalidation is
# refused after it); a Redis with a password (file, environment, wrong one);
# bad command lines; SIGTERM ends it with exit 0 and removes its status.
. "$(dirname "$0")/lib.sh"

SYNC=$LMC_BIN_DIR/lmc-redis-sync
command -v redis-server >/dev/null || fail "redis-server is not installed (make deps)"
[ -x "$SYNC" ] || fail "missing $SYNC"

SOCK=$T/redis.sock
start_redis() { # start_redis SOCK [ARGS...]
    s=$1
    shift
    redis-server --port 0 --unixsocket "$s" --unixsocketperm 700 --dir "$T" --save "" \
        --appendonly no --daemonize yes --pidfile "$s.pid" --logfile "$s.log" "$@" ||
        fail "redis-server did not start"
    poll_until 10 redis_answers "$s"
}
redis_answers() { redis-cli -s "$1" ping 2>&1 | grep -q -e PONG -e NOAUTH; }
R() { redis-cli -s "$SOCK" "$@"; }
redis_pid() { cat "$SOCK.pid"; }

start_redis "$SOCK"
BG_REDIS=$(redis_pid)
stop_all_redis() {
    for f in "$T"/*.sock.pid; do
        [ -e "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    return 0
}

C=$(new_cache l1)
LOG=$T/sync.log
"$SYNC" "$C" --redis "unix:$SOCK" --prefix app/ --heartbeat 0.2 --backoff-max 0.4 -v \
    > "$T/sync.out" 2> "$LOG" &
SPID=$!
BG_PIDS="$BG_PIDS $SPID"
# Everything the EXIT trap must stop: the sidecar, then every redis-server.
trap 'stop_all_redis; cleanup' EXIT

lines() { grep -c "$1" "$LOG" || true; }
tracking_on_at_least() { [ "$(lines 'tracking on:')" -ge "$1" ]; }
gone() { ! "$LMC" "$C" get "$1" >/dev/null 2>&1; }
status_up() { "$LMC" "$C" get lmc-redis-sync/status/app/ 2>/dev/null | grep -q '"state":"up"'; }

poll_until 10 tracking_on_at_least 1
poll_until 5 status_up

# 1. A write by another client invalidates the L1 entry; keys outside the
# prefix are not touched (a later invalidation under the prefix, sent after
# theirs would have been, shows that none came).
"$LMC" "$C" set app/k old
"$LMC" "$C" set other/k kept
R set other/k changed >/dev/null
R set app/k new >/dev/null
poll_until 5 gone app/k
"$LMC" "$C" set app/fence x
R set app/fence y >/dev/null
poll_until 5 gone app/fence
expect_eq "$("$LMC" "$C" get other/k)" kept "a key outside the prefix"
grep -q 'invalidated app/k' "$LOG" || fail "no log line for the invalidation"
# DEL, EXPIRE, and a key changed by a transaction invalidate too.
"$LMC" "$C" set app/d x
"$LMC" "$C" set app/e x
R set app/d 1 >/dev/null; R set app/e 1 >/dev/null
R del app/d >/dev/null
R pexpire app/e 1 >/dev/null
poll_until 5 gone app/d
poll_until 5 gone app/e

# A key longer than the cache can hold is invalidated as nothing (it cannot
# be in the cache), never as a reason to flush.
"$LMC" "$C" set app/stays x
R set "app/$(head -c 70000 /dev/zero | tr '\0' x)" v >/dev/null
"$LMC" "$C" set app/fence3 x
R set app/fence3 y >/dev/null
poll_until 5 gone app/fence3
expect_eq "$("$LMC" "$C" get app/stays)" x "an entry after a long key's invalidation"
if grep -q 'flushing instead' "$LOG"; then fail "a long key made it flush"; fi

# 2. FLUSHALL: a null invalidation flushes the prefix.  The flush is one
# marker (lmc_flush_prefix): every entry misses as soon as the first does,
# before anything is deleted; lmc-sweep then deletes them and retires it.
i=0
while [ $i -lt 100 ]; do "$LMC" "$C" set "app/bulk/$i" x; i=$((i + 1)); done
"$LMC" "$C" set app/a 1
"$LMC" "$C" set app/b 2
R flushall >/dev/null
poll_until 5 gone app/a
gone app/b || fail "app/b still there once app/a missed after FLUSHALL"
expect_eq "$("$LMC" "$C" ls app/ | grep -vc '^lmc-redis-sync/')" 0 "ls app/ after FLUSHALL"
expect_eq "$("$LMC" "$C" get other/k)" kept "a key outside the prefix after FLUSHALL"
grep -q 'null invalidation' "$LOG" || fail "FLUSHALL was not logged"
"$LMC_BIN_DIR/lmc-stats" "$C" | grep -q '^flush_markers:1$' || fail "no flush marker after FLUSHALL"
"$SWEEP" "$C" > /dev/null
"$LMC_BIN_DIR/lmc-stats" "$C" | grep -q '^flush_markers:0$' || fail "the sweep left the marker"
gone app/bulk/7 || fail "app/bulk/7 came back after the sweep"

# 3. CLIENT KILL of the tracking connection, then of the invalidation one:
# each flushes and tracking comes back, and works.
kill_client() { # kill_client FLAGCHAR: the sidecar's connection with that flag
    id=$(R client list | awk -v f="$1" '{ split($0, a, " "); for (i in a) {
        if (a[i] ~ /^flags=/ && index(a[i], f)) for (j in a) if (a[j] ~ /^id=/) print substr(a[j], 4) } }' | head -n1)
    [ -n "$id" ] || fail "no client with flag $1: $(R client list)"
    R client kill id "$id" >/dev/null
}
n=$(lines 'tracking on:')
"$LMC" "$C" set app/t1 x
kill_client t
poll_until 5 gone app/t1
poll_until 10 tracking_on_at_least $((n + 1))
"$LMC" "$C" set app/t2 x
R set app/t2 y >/dev/null
poll_until 5 gone app/t2

n=$(lines 'tracking on:')
"$LMC" "$C" set app/p1 x
kill_client P
poll_until 5 gone app/p1
poll_until 10 tracking_on_at_least $((n + 1))
"$LMC" "$C" set app/p2 x
R set app/p2 y >/dev/null
poll_until 5 gone app/p2

# 4. A Redis that stops answering: the missed heartbeat flushes.
n=$(lines 'tracking on:')
"$LMC" "$C" set app/h1 x
kill -STOP "$(redis_pid)"
poll_until 5 gone app/h1
poll_until 5 grep -q 'no answer to the heartbeat' "$LOG"
kill -CONT "$(redis_pid)"
poll_until 10 tracking_on_at_least $((n + 1))

# 5. Kill redis-server: the prefix is flushed, and flushed again every
# heartbeat while it is down (a value filled meanwhile lives that long);
# the status entry says down, so workers know not to trust the L1.  After a
# restart tracking resumes.
n=$(lines 'tracking on:')
"$LMC" "$C" set app/k1 x
kill -KILL "$(redis_pid)"
poll_until 5 gone app/k1
status_down() { "$LMC" "$C" get lmc-redis-sync/status/app/ 2>/dev/null | grep -q '"state":"down"'; }
poll_until 5 status_down
"$LMC" "$C" set app/k2 filled-while-down
poll_until 5 gone app/k2
start_redis "$SOCK"
poll_until 10 tracking_on_at_least $((n + 1))
poll_until 5 status_up
"$LMC" "$C" set app/k3 x
R set app/k3 y >/dev/null
poll_until 5 gone app/k3
grep -q 'reconnected after' "$LOG" || fail "the reconnect was not logged"

# 6. The fill race through the sidecar: a worker reads its token and Redis,
# another host changes the key, the sidecar invalidates it, and only then
# the worker stores what it read: refused, nothing stale stays.
R set app/r v1 >/dev/null
"$LMC" "$C" set app/fence2 x
R set app/fence2 y >/dev/null
poll_until 5 gone app/fence2      # the sidecar has handled the SET of app/r
tok=$("$HELPER" gen-read "$C" app/r)
v=$(R get app/r)
expect_eq "$v" v1 "the value read from Redis"
R set app/r v2 >/dev/null
poll_until 5 grep -q 'invalidated app/r$' "$LOG"
expect_rc 1 "$HELPER" set-if-gen "$C" app/r "$v" "$tok"
gone app/r || fail "a value read before its invalidation was stored after it"
# Without an invalidation in between, the fill is stored.
tok=$("$HELPER" gen-read "$C" app/r)
expect_rc 0 "$HELPER" set-if-gen "$C" app/r "$(R get app/r)" "$tok"
expect_eq "$("$LMC" "$C" get app/r)" v2 "a fill with nothing in between"

# lmc-stats shows the sidecar's state: text, JSON, and Prometheus that the
# checker accepts.
STATS=$LMC_BIN_DIR/lmc-stats
"$STATS" "$C" > "$T/st.txt"
grep -q '^# Redis sync$' "$T/st.txt" || fail "no Redis sync section: $(cat "$T/st.txt")"
grep -qx 'prefix:app/' "$T/st.txt" && grep -qx 'state:up' "$T/st.txt" ||
    fail "Redis sync section: $(sed -n '/Redis sync/,$p' "$T/st.txt")"
# The entry is rewritten every heartbeat: wait for one that has seen the
# four reconnects above.
stats_caught_up() {
    "$STATS" "$C" --json > "$T/st.json" &&
    [ "$(json "$T/st.json" 'j["redis_sync"][0]["reconnects"]')" -ge 4 ]
}
poll_until 5 stats_caught_up
json_check "$T/st.json" 'len(j["redis_sync"]) == 1' 'j["redis_sync"][0]["prefix"] == "app/"' \
    'j["redis_sync"][0]["state"] == "up"' 'j["redis_sync"][0]["invalidations"] >= 10' \
    'j["redis_sync"][0]["flushes"]["flushdb"] == 1' \
    'j["redis_sync"][0]["flushes"]["heartbeat_missed"] >= 1' \
    'j["redis_sync"][0]["reconnects"] == 4' 'j["redis_sync"][0]["down_ms"] > 0'
"$STATS" "$C" --prometheus > "$T/st.prom"
"$PY" "$TESTS_DIR/promcheck.py" "$T/st.prom" > "$T/st-prom.json" || fail "Prometheus output rejected"
json_check "$T/st-prom.json" \
    'j["lmc_redis_sync_up{path=\"%s\",prefix=\"app/\"}" % "'"$C"'"] == 1' \
    'j["lmc_redis_sync_flushes_total{path=\"%s\",prefix=\"app/\",reason=\"flushdb\"}" % "'"$C"'"] == 1'

# 7. SIGTERM: exit 0 at once, the status entry removed.
kill -TERM "$SPID"
poll_until 3 is_dead "$SPID"
rc=0
wait "$SPID" || rc=$?
expect_eq "$rc" 0 "exit status after SIGTERM"
gone lmc-redis-sync/status/app/ || fail "the status entry stayed after SIGTERM"
grep -q 'stopping' "$LOG" || fail "no log line for the stop"

# 8. A Redis with a password: from a file, from the environment; a wrong
# one is a clear error, retried, never a crash; the password is never
# logged.
ASOCK=$T/auth.sock
start_redis "$ASOCK" --requirepass s3cret-pw
printf 's3cret-pw\n' > "$T/pw"
printf 'wrong\n' > "$T/badpw"
run_sync_until() { # run_sync_until PATTERN ARGS...: start, wait for PATTERN, stop
    pat=$1
    shift
    : > "$T/a.log"
    "$SYNC" "$C" --heartbeat 0.2 --backoff-max 0.2 "$@" 2> "$T/a.log" &
    p=$!
    BG_PIDS="$BG_PIDS $p"
    poll_until 10 grep -q "$pat" "$T/a.log"
    kill -TERM "$p"
    rc=0
    wait "$p" || rc=$?
    expect_eq "$rc" 0 "exit status after SIGTERM ($*)"
    if grep -q s3cret "$T/a.log"; then fail "the password was logged"; fi
}
run_sync_until 'tracking on:' --redis "unix:$ASOCK" --prefix app/ --password-file "$T/pw"
LMC_REDIS_PASSWORD=s3cret-pw run_sync_until 'tracking on:' --redis "unix:$ASOCK" --prefix app/
run_sync_until 'refused the password' --redis "unix:$ASOCK" --prefix app/ \
    --password-file "$T/badpw"
run_sync_until 'NOAUTH' --redis "unix:$ASOCK" --prefix app/
# A Redis that refuses tracking (here by ACL; an old one by "unknown
# command"): a clear line, retried, logged once for the same reason.
R acl setuser default -client\|tracking >/dev/null
conns() { R info stats | sed -n 's/^total_connections_received:\([0-9]*\).*/\1/p'; }
c0=$(conns)
three_attempts() { [ $(( $(conns) - c0 )) -ge 7 ]; }   # 2 per attempt, and ours
"$SYNC" "$C" --redis "unix:$SOCK" --prefix app/ --backoff-max 0.1 2> "$T/a.log" &
p=$!
BG_PIDS="$BG_PIDS $p"
poll_until 10 three_attempts
kill -TERM "$p"
wait "$p" || fail "exit status after SIGTERM (no tracking)"
grep -q 'refused tracking: CLIENT TRACKING: NOPERM' "$T/a.log" || fail "message: $(cat "$T/a.log")"
expect_eq "$(grep -c 'refused tracking' "$T/a.log")" 1 "lines for one repeated reason"
R acl setuser default +client\|tracking >/dev/null
# Redis unreachable (nothing listens): logged and retried; the cache is
# flushed all the same.
"$LMC" "$C" set app/u x
run_sync_until 'cannot connect to' --redis "unix:$T/none.sock" --prefix app/
gone app/u || fail "the prefix was not flushed at start without Redis"

# A cache that does not exist yet: waited for, then used.
"$SYNC" "$T/later" --redis "unix:$SOCK" --prefix app/ --heartbeat 0.2 2> "$T/later.log" &
p=$!
BG_PIDS="$BG_PIDS $p"
poll_until 5 grep -q 'no cache at' "$T/later.log"
"$LMC" "$T/later" --create --map-size 8M info >/dev/null
poll_until 10 grep -q 'tracking on:' "$T/later.log"
kill -TERM "$p"
wait "$p" || fail "exit status after SIGTERM (later)"


# 9. Bad command lines: exit 2 with a message, nothing started.
expect_rc 2 "$SYNC" "$C" --prefix app/ 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "unix:$SOCK" 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "http://x" --prefix app/ 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "unix:relative.sock" --prefix app/ 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "redis://h:0" --prefix app/ 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "redis://h:99999" --prefix app/ 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "unix:$SOCK" --prefix app/ --prefix app/x 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "unix:$SOCK" --prefix "" 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "unix:$SOCK" --prefix app/ --heartbeat 0 2>/dev/null
expect_rc 2 "$SYNC" "$C" --redis "unix:$SOCK" --prefix app/ --password-file "$T/nope" 2>/dev/null
"$SYNC" "$C" --redis "redis://u:pw@h" --prefix app/ 2> "$T/err" && fail "accepted a password"
grep -q 'no password on the command line' "$T/err" || fail "message: $(cat "$T/err")"
"$SYNC" --help | grep -q -- '--prefix PREFIX' || fail "--help"
"$SYNC" --version | grep -q 'lmc-redis-sync' || fail "--version"
echo "lmc-redis-sync: $(lines 'invalidated ') invalidations, $(lines 'flushed ') flushes logged"
sed 's/^/  /' "$LOG"
