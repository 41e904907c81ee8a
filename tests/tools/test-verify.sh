#!/bin/sh
# lmc PATH verify [--reset]: a sound cache exits 0 with name:value counts; a
# cache whose data pages were overwritten (meta pages intact) exits 1 with
# LMC_ECORRUPT and a hint how to reset it, and never crashes the tool, also
# when the damage is where lmc_open reads; --reset refuses while another
# process uses the cache, and recreates it empty, with its own map size,
# once nobody does.
. "$(dirname "$0")/lib.sh"

# damage FILE WHAT: overwrite a used page of an LMDB data file with random
# bytes: "root" (the main tree's root, a branch page here) or "leaf" (its
# last leaf, entries).  Reads LMDB 0.9's layout: page size at 16+24 of page
# 0, the main tree's record at 16+72 of the newer meta page (root at +40),
# node offsets from 16 on, a branch node's child in its first 6 bytes.
damage() {
    "$PY" - "$1" "$2" <<'EOF'
import os, random, struct, sys
path, what = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    data = f.read(1 << 20)
    psize = struct.unpack_from("<I", data, 16 + 24)[0]
    metas = [data[i * psize:(i + 1) * psize] for i in (0, 1)]
    meta = max(metas, key=lambda m: struct.unpack_from("<Q", m, 16 + 128)[0])
    root = struct.unpack_from("<Q", meta, 16 + 72 + 40)[0]
    def page(n):
        f.seek(n * psize)
        return f.read(psize)
    pg = root
    if what == "leaf":
        p = page(pg)
        while struct.unpack_from("<H", p, 10)[0] & 1:
            n = (struct.unpack_from("<H", p, 12)[0] - 16) // 2
            off = struct.unpack_from("<H", p, 16 + 2 * (n - 1))[0]
            lo, hi, top = struct.unpack_from("<HHH", p, off)
            pg = lo | hi << 16 | top << 32
            p = page(pg)
    elif not struct.unpack_from("<H", page(pg), 10)[0] & 1:
        sys.exit("the root is not a branch page")
    rnd = random.Random(1)
    f.seek(pg * psize)
    f.write(bytes(rnd.randrange(256) for _ in range(psize)))
EOF
}

C=$(new_cache verify 8M)
"$HELPER" fill "$C" k/ 3000 100 600000
"$HELPER" fill "$C" n/ 1000 3000 0

# Sound.
expect_rc 0 "$LMC" "$C" verify > "$T/ok.out"
grep -qx 'status:ok' "$T/ok.out" || fail "no status:ok line"
grep -qx 'entries:4000' "$T/ok.out" || fail "entries not counted: $(cat "$T/ok.out")"
grep -qx 'entries_with_ttl:3000' "$T/ok.out" || fail "TTL entries not counted"
grep -qx 'expiry_rows:3000' "$T/ok.out" || fail "expiry rows not counted"
grep -q '^overflow_pages:[1-9]' "$T/ok.out" || fail "no overflow pages counted"
"$LMC" "$C" --help | grep -q 'verify \[--reset\]' || fail "--help does not list verify"

# Usage errors and a missing cache: 2.
expect_rc 2 "$LMC" "$C" verify extra 2>/dev/null
expect_rc 2 "$LMC" "$C" verify --create 2>/dev/null
expect_rc 2 "$LMC" "$C" ls --reset 2>/dev/null
expect_rc 2 "$LMC" "$T/none" verify 2>/dev/null
[ ! -e "$T/none" ] || fail "verify created a cache"

# A damaged leaf: exit 1, the code, where, and what to do.
damage "$C/data.mdb" leaf
expect_rc 1 "$LMC" "$C" verify > "$T/bad.out" 2> "$T/bad.err"
grep -qx 'status:damaged' "$T/bad.out" || fail "no status:damaged line"
grep -q 'LMC_ECORRUPT' "$T/bad.err" || fail "no LMC_ECORRUPT: $(cat "$T/bad.err")"
grep -q 'data.mdb is damaged: main tree: page' "$T/bad.err" || fail "where? $(cat "$T/bad.err")"
grep -q 'verify --reset' "$T/bad.err" || fail "no reset hint: $(cat "$T/bad.err")"

# --reset while another process uses the cache: refused (exit 1), nothing
# changed.  The sweeper's first pass runs before the damage below and then
# it sleeps, holding the cache open.
C2=$(new_cache verify2 8M)
"$HELPER" fill "$C2" k/ 3000 100 600000
"$SWEEP" "$C2" --interval 3600 > "$T/sweep.out" 2>&1 &
SW=$!
BG_PIDS="$BG_PIDS $SW"
poll_until 10 grep -q complete "$T/sweep.out"
damage "$C2/data.mdb" root
expect_rc 1 "$LMC" "$C2" verify --reset > "$T/r1.out" 2> "$T/r1.err"
grep -q "not reset: another process (pid $SW) has it open" "$T/r1.err" || fail "$(cat "$T/r1.err")"
grep -qx 'status:reset' "$T/r1.out" && fail "reset while in use"
kill "$SW"
wait "$SW" || true

# Nobody uses it now: reset, empty, the same map size, sound.
expect_rc 0 "$LMC" "$C2" verify --reset > "$T/r2.out" 2> "$T/r2.err"
grep -qx 'status:reset' "$T/r2.out" || fail "not reset: $(cat "$T/r2.err")"
grep -q 'was reset: it is empty now (map_size 8388608)' "$T/r2.err" || fail "$(cat "$T/r2.err")"
expect_rc 0 "$LMC" "$C2" verify > "$T/r3.out"
grep -qx 'entries:0' "$T/r3.out" || fail "not empty after the reset"
expect_eq "$("$LMC" "$C2" info | sed -n 's/^map_size://p')" 8388608 "map size after reset"

# The root of a cache is damaged where every open reads: the tool reports
# it (the crash, if any, is its child's) and --reset recovers.
damage "$C/data.mdb" root
expect_rc 1 "$LMC" "$C" verify > "$T/c.out" 2> "$T/c.err"
grep -q 'LMC_ECORRUPT' "$T/c.err" || fail "$(cat "$T/c.err")"
expect_rc 0 "$LMC" "$C" verify --reset > /dev/null 2>&1
expect_rc 0 "$LMC" "$C" verify > /dev/null
