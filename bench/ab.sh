#!/bin/sh
# bench/ab.sh - alternating A/B timings of two lmcbench binaries (say, built
# from main and from a change with `make B=build/a build/a/bench/lmcbench`):
# each round runs both, in alternating order so that drift of the shared
# machine hits both alike, and prints lmc / raw LMDB of each cell; then the
# median of each cell over the rounds.  Ratios measured in one run of one
# binary cancel most of the machine's noise; the rounds cancel the rest.
#
#   sh bench/ab.sh BIN_A BIN_B [ROUNDS] [WORKLOADS] [KEYS]
#   e.g. sh bench/ab.sh build/a/bench/lmcbench build/b/bench/lmcbench 6 set,set-ttl 100000
set -eu
[ $# -ge 2 ] || { echo "usage: sh bench/ab.sh BIN_A BIN_B [ROUNDS] [WORKLOADS] [KEYS]" >&2; exit 2; }
A=$1 B=$2 ROUNDS=${3:-6} WORKLOADS=${4:-set,set-ttl} KEYS=${5:-100000}
T=$(mktemp)
trap 'rm -f "$T"' EXIT INT TERM
i=1
while [ "$i" -le "$ROUNDS" ]; do
    if [ $((i % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for w in $order; do
        if [ "$w" = A ]; then bin=$A; else bin=$B; fi
        "$bin" --workloads "$WORKLOADS" --procs 1,2 -c lmc,lmdb --reps 3 --no-scale \
            --keys "$KEYS" 2>&1 | awk -v b="$w" -v i="$i" '
            /^### /{wl=$2}
            /^\| [12] \| lmdb /{printf "%s %s procs=%s round=%d ratio=%s\n", b, wl, $2, i, $(NF-1)}' |
            tee -a "$T"
    done
    i=$((i + 1))
done
echo "medians of lmc / raw LMDB over $ROUNDS rounds (A=$A, B=$B):"
awk '{sub("ratio=","",$5); k=$1" "$2" "$3; n[k]++; v[k, n[k]]=$5}
     END {for (k in n) {m = n[k]; for (x = 1; x <= m; x++) a[x] = v[k, x];
          for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] < a[x]) {t = a[x]; a[x] = a[y]; a[y] = t}
          med = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2;
          printf "%s median %.3f\n", k, med}}' "$T" | sort
