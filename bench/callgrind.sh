#!/bin/sh
# bench/callgrind.sh - instructions per call of lmc and raw LMDB, by
# callgrind (deterministic for the same binary and inputs, whatever else the
# machine does): each workload runs in-process twice, with N1 and N2
# operations, and the difference of the totals divided by N2 - N1 is the
# cost of one operation without the load and setup.
#
#   sh bench/callgrind.sh [LMCBENCH] [WORKLOADS] [CONTENDERS]
#   make bench-callgrind        (the same, on the release build)
set -eu
BIN=${1:-build/release/bench/lmcbench}
WORKLOADS=${2:-"get-hit set set-ttl add"}
CONTENDERS=${3:-"lmc lmdb"}
N1=${CALLGRIND_N1:-50000}
N2=${CALLGRIND_N2:-150000}
KEYS=${CALLGRIND_KEYS:-100000}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is missing" >&2; exit 2; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
total() {
    valgrind --tool=callgrind --callgrind-out-file="$T/out" "$BIN" --profile "$1" -c "$2" \
        --ops "$3" --keys "$KEYS" >/dev/null 2>"$T/err" || { cat "$T/err" >&2; exit 2; }
    sed -n 's/^summary: //p' "$T/out"
}
printf '| workload |'; for c in $CONTENDERS; do printf ' %s |' "$c"; done; printf '\n|---|'
for c in $CONTENDERS; do printf -- '---:|'; done; printf '\n'
for w in $WORKLOADS; do
    printf '| %s |' "$w"
    for c in $CONTENDERS; do
        a=$(total "$w" "$c" "$N1"); b=$(total "$w" "$c" "$N2")
        printf ' %s |' "$(( (b - a) / (N2 - N1) ))"
    done
    printf '\n'
done
