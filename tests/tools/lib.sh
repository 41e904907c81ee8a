# tests/tools/lib.sh - sourced by every tool test (POSIX sh).
#
# The tests drive the built binaries as a user would.  They find them through
# LMC_BIN_DIR (the build directory, e.g. build/release or build/asan), so the
# same scripts run against sanitizer builds.  Each test gets a fresh private
# directory on tmpfs, removed by the EXIT trap together with any background
# process the test started.  Nothing sleeps and hopes: waits poll for a
# condition until a deadline.

set -e

: "${LMC_BIN_DIR:?set LMC_BIN_DIR to the build directory that holds the tools}"
LMC=$LMC_BIN_DIR/lmc
SWEEP=$LMC_BIN_DIR/lmc-sweep
STATS=$LMC_BIN_DIR/lmc-stats
HELPER=${LMC_TEST_HELPER:-$LMC_BIN_DIR/tests/tools/lmc-test-helper}
PY=/usr/bin/python3
TESTS_DIR=$(cd "$(dirname "$0")" && pwd)
export TESTS_DIR
# A multiplier for every deadline, for slow machines and sanitizer builds.
SCALE=${LMC_TEST_TIMEOUT_SCALE:-1}

# Sanitizers exit with 1 by default, which the tools use for "a miss": give
# their reports exit codes no tool uses, so no expect_rc can mistake one.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:exitcode=87"
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}exitcode=88"

for b in "$LMC" "$SWEEP" "$STATS" "$HELPER"; do
    [ -x "$b" ] || { echo "missing binary $b (build first)" >&2; exit 1; }
done

T=$(mktemp -d /dev/shm/lmc-tools-test.XXXXXX)
BG_PIDS=""
cleanup() {
    for p in $BG_PIDS; do
        kill "$p" 2>/dev/null || true
    done
    for p in $BG_PIDS; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# fail writes to fd 3, a copy of the original stderr, so that its message
# is seen even when the failing check had stderr redirected to a file.
exec 3>&2
fail() {
    echo "FAIL: $*" >&3
    exit 1
}

# expect_rc CODE CMD...: run CMD, fail unless it exits with CODE.
expect_rc() {
    want=$1
    shift
    set +e
    "$@"
    got=$?
    set -e
    [ "$got" = "$want" ] || fail "expected exit $want, got $got: $*"
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
    [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

now_ms() {
    date +%s%3N
}

# poll_until SECONDS CMD...: run CMD every 10 ms until it succeeds; fail at
# the deadline (SECONDS times SCALE).
poll_until() {
    limit=$1
    shift
    deadline=$(( $(now_ms) + limit * 1000 * SCALE ))
    until "$@"; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for: $*"
        sleep 0.01
    done
}

# Wait until the real-time clock has reached MS (ms since the epoch).
wait_clock_past() {
    until [ "$(now_ms)" -ge "$1" ]; do
        sleep 0.01
    done
}

# is_dead PID: true once the process has exited (a zombie counts as exited).
is_dead() {
    ! kill -0 "$1" 2>/dev/null ||
        [ "$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" = Z ]
}

# json FILE EXPR: evaluate the Python expression EXPR with `j` bound to the
# JSON object in FILE and print the result.
json() {
    "$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# json_check FILE EXPR...: every Python expression must be true of `j`.
json_check() {
    f=$1
    shift
    "$PY" - "$f" "$@" <<'EOF' || fail "JSON check failed on $f"
import json, sys
j = json.load(open(sys.argv[1]))
bad = [e for e in sys.argv[2:] if not eval(e)]
for e in bad:
    print("  not true: %s" % e, file=sys.stderr)
if bad:
    print("  object: %s" % json.dumps(j, sort_keys=True), file=sys.stderr)
    sys.exit(1)
EOF
}

# new_cache NAME [MAP_SIZE]: create an empty cache under $T, print its path.
new_cache() {
    "$LMC" "$T/$1" --create --map-size "${2:-16M}" info >/dev/null
    echo "$T/$1"
}
