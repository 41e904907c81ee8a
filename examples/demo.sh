#!/bin/sh
# examples/demo.sh BIN_DIR - what `make demo` runs: the prefork demo with the
# sweeper running next to it and lmc-stats reading the same cache, as an
# operator would run them.
#
# 1. `lmc --create` makes a 64 MiB cache on tmpfs.
# 2. `lmc-sweep --interval 0.5` starts in the background (the systemd unit or
#    cron line of a real deployment).
# 3. prefork_demo: a master opens the cache and forks 4 workers that serve
#    Zipf-distributed requests for 5 seconds, computing pages on a miss.
# 4. While they run, `lmc-stats` prints the shared counters once; at the end
#    the sweeper is stopped with SIGTERM (it must exit 0), its last passes are
#    shown, and `lmc-stats` prints everything.
set -eu
bin=${1:?usage: demo.sh BIN_DIR}
dir=$(mktemp -d /dev/shm/lmc-demo.XXXXXX)
cache="$dir/cache"
sweeper=""
cleanup() {
    [ -n "$sweeper" ] && kill "$sweeper" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$bin/lmc" "$cache" --create --map-size 64M info >/dev/null
"$bin/lmc-sweep" "$cache" --interval 0.5 --json > "$dir/sweep.log" &
sweeper=$!

"$bin/prefork_demo" "$cache" --workers 4 --seconds 5 &
demo=$!
# Halfway through, a look from outside, as an operator would take it.
sleep 2.5
echo
echo "== lmc-stats $cache (while the workers run) =="
"$bin/lmc-stats" "$cache" | sed -n '/^# Summary/,/^$/p'
echo
wait "$demo"

kill -TERM "$sweeper"
status=0
wait "$sweeper" || status=$?
sweeper=""
echo
echo "== lmc-sweep --interval 0.5: $(wc -l < "$dir/sweep.log") passes, exit status $status after SIGTERM; last two =="
tail -n 2 "$dir/sweep.log"
echo
echo "== lmc-stats $cache =="
"$bin/lmc-stats" "$cache"
[ "$status" -eq 0 ]
