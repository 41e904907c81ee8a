#!/bin/sh
# bench/run.sh - run the lmc benchmark driver with every contender.
#
#   sh bench/run.sh PATH/TO/lmcbench [driver options, e.g. --quick --csv]
#
# Starts redis-server and memcached, each on a unix socket inside a fresh
# mktemp -d directory and with persistence off, runs the driver against them
# with the cache files in a fresh directory on tmpfs (/dev/shm), and always
# stops both servers and removes both directories, also when the driver
# fails or the run is interrupted.  A server that is not installed is
# skipped with a line saying so; one that is installed but does not come up
# fails the run, since that is a broken machine rather than a missing option.
set -u

bin=${1:?usage: run.sh PATH/TO/lmcbench [options]}
shift

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmcbench-run.XXXXXX") || exit 2

# The caches belong on tmpfs, and lmc reserves each map there in full: the
# standard suite needs about 3 GiB of /dev/shm at its peak, the quick one
# about 300 MiB.  With less, use $TMPDIR and say that the figures are not
# the tmpfs ones.
need_kb=3145728
for a in "$@"; do
    case $a in -q|--quick) need_kb=307200 ;; esac
done
shm_kb=0
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
fi
if [ "${shm_kb:-0}" -ge "$need_kb" ]; then
    data=$(mktemp -d /dev/shm/lmcbench.XXXXXX) || exit 2
else
    echo "note: /dev/shm has $((${shm_kb:-0} / 1024)) MiB free, less than the" \
        "$((need_kb / 1024)) MiB this suite needs: caches go to ${TMPDIR:-/tmp}," \
        "which is not tmpfs, so the figures are not comparable with tmpfs runs" >&2
    data=$(mktemp -d "${TMPDIR:-/tmp}/lmcbench-data.XXXXXX") || exit 2
fi
redis_pid=
mc_pid=
drv_pid=

cleanup() {
    # The driver runs in a process group of its own (setsid below): stop it
    # and the worker processes it forked before their files go away.
    if [ -n "$drv_pid" ]; then
        kill -TERM -- "-$drv_pid" 2>/dev/null
        wait "$drv_pid" 2>/dev/null
    fi
    for pid in $redis_pid $mc_pid; do
        kill "$pid" 2>/dev/null
    done
    for pid in $redis_pid $mc_pid; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$tmp" "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Wait until socket $1 exists while process $2 lives (up to 30 s: a slow CI
# machine must not fail the run).
wait_socket() {
    i=0
    while [ $i -lt 300 ]; do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

status=0
set -- "$@" --dir "$data"

if command -v redis-server >/dev/null 2>&1; then
    redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 \
        --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" \
        --daemonize no >/dev/null 2>&1 &
    redis_pid=$!
    if wait_socket "$tmp/redis.sock" "$redis_pid"; then
        set -- "$@" --redis-socket "$tmp/redis.sock"
    else
        echo "FAIL: redis-server is installed but did not start; its log:" >&2
        tail -n 20 "$tmp/redis.log" >&2 2>/dev/null
        status=1
    fi
else
    echo "skip: redis: redis-server is not installed (apt-get install redis-server)" >&2
fi

if command -v memcached >/dev/null 2>&1; then
    # memcached refuses to run as root without -u.  -m is a ceiling, not an
    # allocation; the defaults are kept otherwise (4 worker threads).
    user_opt=
    [ "$(id -u)" = 0 ] && user_opt="-u root"
    # shellcheck disable=SC2086
    memcached -s "$tmp/memcached.sock" -a 0700 -m 4096 -c 1024 $user_opt \
        >"$tmp/memcached.log" 2>&1 &
    mc_pid=$!
    if wait_socket "$tmp/memcached.sock" "$mc_pid"; then
        set -- "$@" --memcached-socket "$tmp/memcached.sock"
    else
        echo "FAIL: memcached is installed but did not start; its output:" >&2
        tail -n 20 "$tmp/memcached.log" >&2 2>/dev/null
        status=1
    fi
else
    echo "skip: memcached: memcached is not installed (apt-get install memcached)" >&2
fi

# In the background so that an interrupt reaches the trap at once, and in
# its own process group so that cleanup can stop it with its workers.
if command -v setsid >/dev/null 2>&1; then
    setsid "$bin" "$@" &
else
    "$bin" "$@" &
fi
drv_pid=$!
wait "$drv_pid"
rc=$?
drv_pid=
[ $rc -ne 0 ] && status=$rc
exit $status
