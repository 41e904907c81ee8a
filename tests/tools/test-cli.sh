#!/bin/sh
# The lmc admin command: every subcommand, its output and its exit codes
# (0 done, 1 miss or not done, 2 usage error or failure), binary-safe values
# through stdin, escaped keys in ls, the deploy-script prefix invalidation,
# and refusal to create a cache unless asked.
. "$(dirname "$0")/lib.sh"

C=$T/cli

# --- help, version, usage errors -----------------------------------------------
"$LMC" --help > "$T/help"
grep -q "^Usage: lmc PATH COMMAND" "$T/help" || fail "--help output"
"$LMC" -h | cmp -s - "$T/help" || fail "-h and --help differ"
"$LMC" "$C" get -h | cmp -s - "$T/help" || fail "-h after a command"
"$LMC" --version | grep -q "^lmc [0-9]*\.[0-9]*\.[0-9]* (liblmc " || fail "--version output"
"$LMC" -V >/dev/null
"$SWEEP" --help | grep -q "^Usage: lmc-sweep PATH" || fail "lmc-sweep --help"
"$SWEEP" -V | grep -q "^lmc-sweep [0-9]" || fail "lmc-sweep -V"

usage_error() {
    expect_rc 2 "$@" 2> "$T/err" >/dev/null
    grep -q "Try '.* --help'" "$T/err" || fail "no usage hint from: $* ($(cat "$T/err"))"
    [ ! -e "$C" ] || fail "a usage error created the cache: $*"
}
usage_error "$LMC"
usage_error "$LMC" "$C"
usage_error "$LMC" "$C" frobnicate
usage_error "$LMC" "$C" get
usage_error "$LMC" "$C" get a b
usage_error "$LMC" "$C" set a
usage_error "$LMC" "$C" set a b c
usage_error "$LMC" "$C" set a b --ttl
usage_error "$LMC" "$C" set a b --ttl -5
usage_error "$LMC" "$C" set a b --ttl 1.5
usage_error "$LMC" "$C" set a b --ttl 99999999999999999999
usage_error "$LMC" "$C" set "" b
usage_error "$LMC" "$C" get a --ttl 5
usage_error "$LMC" "$C" ls --limit 0
usage_error "$LMC" "$C" ls --limit x
usage_error "$LMC" "$C" get a --limit 3
usage_error "$LMC" "$C" incr n 1x
usage_error "$LMC" "$C" incr n 99999999999999999999
usage_error "$LMC" "$C" touch a
usage_error "$LMC" "$C" touch a soon
usage_error "$LMC" "$C" touch a -1
usage_error "$LMC" "$C" del-prefix ""
usage_error "$LMC" "$C" clear now
usage_error "$LMC" "$C" info x
usage_error "$LMC" "$C" get a --bogus
usage_error "$LMC" "$C" get a -x
usage_error "$LMC" "$C" info --map-size 4M
usage_error "$LMC" "$C" --create --map-size 4Q info
usage_error "$LMC" "$C" --create --mode 999 info
usage_error "$SWEEP"
usage_error "$SWEEP" "$C" --once --interval 5
usage_error "$SWEEP" "$C" --interval 0
usage_error "$SWEEP" "$C" --interval x
usage_error "$SWEEP" "$C" --high 1.5
usage_error "$SWEEP" "$C" --high 0
usage_error "$SWEEP" "$C" --high 0.5 --low 0.6
usage_error "$SWEEP" "$C" --batch 0
usage_error "$SWEEP" "$C" --batch -3
usage_error "$SWEEP" "$C" --max-keys x
usage_error "$SWEEP" "$C" --max-time-ms 0
usage_error "$SWEEP" "$C" extra
usage_error "$SWEEP" "$C" --json=yes
grep -q "'--json=yes'" "$T/err" || fail "message for --json=yes: $(cat "$T/err")"

# --- no cache: exit 2, nothing created, unless --create ------------------------
for cmd in "get a" "set a b" "del a" "del-prefix x" "clear" "ls" "info" "incr n"; do
    # shellcheck disable=SC2086
    expect_rc 2 "$LMC" "$C" $cmd 2> "$T/err"
    grep -q "no lmc cache there (LMC_ENOCACHE)" "$T/err" || fail "message for $cmd: $(cat "$T/err")"
    [ ! -e "$C" ] || fail "'$cmd' created the cache"
done
expect_rc 2 "$SWEEP" "$C" 2> "$T/err"
grep -q "no lmc cache there (LMC_ENOCACHE)" "$T/err" || fail "lmc-sweep on a missing cache: $(cat "$T/err")"
[ ! -e "$C" ] || fail "lmc-sweep created the cache"

"$LMC" "$C" --create --map-size 8M --mode 0660 info > "$T/info"
grep -q "^map_size:8388608$" "$T/info" || fail "info map_size: $(cat "$T/info")"
grep -q "^entries:0$" "$T/info" || fail "info entries"
grep -q "^on_tmpfs:1$" "$T/info" || fail "info on_tmpfs"
grep -q "^created:20[0-9][0-9]-[01][0-9]-[0-3][0-9]T" "$T/info" || fail "info created"
expect_eq "$(stat -c %a "$C/data.mdb")" 660 "mode of data.mdb"
# --create on an existing cache keeps it (and its size).
"$LMC" "$C" --create --map-size 64M info | grep -q "^map_size:8388608$" || fail "--create resized"

# --- set / get / add / del --------------------------------------------------------
"$LMC" "$C" set greeting "hello world"
expect_eq "$("$LMC" "$C" get greeting)" "hello world" "get"
expect_eq "$("$LMC" "$C" get greeting | wc -c)" 11 "bytes written by get"
expect_rc 1 "$LMC" "$C" get nothing > "$T/out" 2> "$T/err"
if [ -s "$T/out" ] || [ -s "$T/err" ]; then fail "a miss printed something"; fi
expect_rc 1 "$LMC" "$C" add greeting other
expect_eq "$("$LMC" "$C" get greeting)" "hello world" "get after a refused add"
"$LMC" "$C" add fresh one
expect_eq "$("$LMC" "$C" get fresh)" one "get after add"
"$LMC" "$C" del fresh
expect_rc 1 "$LMC" "$C" get fresh
expect_rc 1 "$LMC" "$C" del fresh
# Options and operands in any order; '--' ends the options; '-' alone is stdin.
"$LMC" "$C" set --ttl 60000 dash -- --not-an-option
expect_eq "$("$LMC" "$C" get dash)" "--not-an-option" "value after --"
"$LMC" --ttl 60000 "$C" set dash2 -- -x
expect_eq "$("$LMC" "$C" get dash2)" "-x" "value -x after --"

# Binary-safe values through stdin: NUL bytes, newlines, 300 KiB of noise.
printf 'a\000b\nc\000' > "$T/small.bin"
"$LMC" "$C" set bin - < "$T/small.bin"
"$LMC" "$C" get bin > "$T/small.out"
cmp "$T/small.bin" "$T/small.out" || fail "binary value changed"
head -c 307200 /dev/urandom > "$T/big.bin"
"$LMC" "$C" set big - < "$T/big.bin"
"$LMC" "$C" get big > "$T/big.out"
cmp "$T/big.bin" "$T/big.out" || fail "300 KiB value changed"
: | "$LMC" "$C" set empty -
expect_rc 0 "$LMC" "$C" get empty > "$T/empty.out"
[ ! -s "$T/empty.out" ] || fail "empty value is not empty"
# A value larger than the whole map is refused before it is stored.
expect_rc 2 "$LMC" "$C" set huge - < /dev/zero 2> "$T/err"
grep -q "larger than the whole cache" "$T/err" || fail "huge value: $(cat "$T/err")"
# One that passes that check but can never fit in a 1 MiB map is refused by
# the library, with its code name and message, and nothing is lost.
"$LMC" "$T/tiny" --create --map-size 1M set keep kept
head -c 1000000 /dev/zero > "$T/1m.bin"
expect_rc 2 "$LMC" "$T/tiny" set huge - < "$T/1m.bin" 2> "$T/err"
grep -q "^lmc: set huge: LMC_ETOOBIG: .*can never fit" "$T/err" || fail "value that cannot fit: $(cat "$T/err")"
expect_eq "$("$LMC" "$T/tiny" get keep)" kept "entry next to a refused value"

# --- incr -------------------------------------------------------------------------
expect_eq "$("$LMC" "$C" incr hits)" 1 "incr of a missing key"
expect_eq "$("$LMC" "$C" incr hits 41)" 42 "incr by 41"
expect_eq "$("$LMC" "$C" incr hits -50)" -8 "incr by a negative delta"
expect_eq "$("$LMC" "$C" get hits)" -8 "counter as text"
expect_rc 2 "$LMC" "$C" incr greeting 2> "$T/err"
grep -q "LMC_ENOTNUM" "$T/err" || fail "incr of text: $(cat "$T/err")"
"$LMC" "$C" set big-n 9223372036854775807
expect_rc 2 "$LMC" "$C" incr big-n 2> "$T/err"
grep -q "LMC_ERANGE" "$T/err" || fail "incr overflow: $(cat "$T/err")"
expect_eq "$("$LMC" "$C" incr ttl-counter --ttl 60000)" 1 "incr with --ttl"

# --- touch and ls (TTL left, size, escaping) ------------------------------------
expect_rc 1 "$LMC" "$C" touch nothing 1000
"$LMC" "$C" set t1 value
"$LMC" "$C" ls t1 > "$T/ls"
expect_eq "$(cat "$T/ls")" "$(printf 't1\t-\t5')" "ls of a key without TTL"
"$LMC" "$C" touch t1 120000
ttl=$("$LMC" "$C" ls t1 | cut -f2)
if [ "$ttl" -le 100000 ] || [ "$ttl" -gt 120000 ]; then fail "TTL left after touch: $ttl"; fi
"$LMC" "$C" touch t1 0
expect_eq "$("$LMC" "$C" ls t1 | cut -f2)" "-" "TTL after touch 0"
expect_eq "$("$LMC" "$C" ls ttl-counter | cut -f2 | cut -c1)" "5" "TTL of a key incr created"
odd=$(printf 'odd\tkey\nwith\\bytes\001\377')
"$LMC" "$C" set "$odd" x
"$LMC" "$C" ls odd > "$T/ls"
expect_eq "$(cat "$T/ls")" "$(printf 'odd\\x09key\\x0awith\\\\bytes\\x01\\xff\t-\t1')" "escaped key in ls"
expect_eq "$("$LMC" "$C" ls | wc -l)" 11 "number of keys"
expect_eq "$("$LMC" "$C" ls --limit 3 | wc -l)" 3 "ls --limit"
expect_eq "$("$LMC" "$C" ls nope | wc -c)" 0 "ls of an unused prefix"
"$LMC" "$C" ls | cut -f1 > "$T/keys"
sort "$T/keys" | cmp -s - "$T/keys" || fail "ls is not in key order"

# --- del-prefix: the deploy-script invalidation ----------------------------------
for p in products/1 products/2 products/3 users/1; do
    "$LMC" "$C" set "view//api/$p" "page $p"
done
"$LMC" "$C" set "view//about" about
"$LMC" "$C" set "view//apix" near-miss
expect_eq "$("$LMC" "$C" del-prefix view//api/products/)" 3 "del-prefix products"
expect_eq "$("$LMC" "$C" del-prefix view//api/)" 1 "del-prefix the rest of the api"
expect_eq "$("$LMC" "$C" del-prefix view//api/)" 0 "del-prefix again"
expect_eq "$("$LMC" "$C" get view//about)" about "key outside the prefix"
expect_eq "$("$LMC" "$C" get view//apix)" near-miss "key that only shares a shorter prefix"

# --- flush-prefix: the same invalidation at once, reclaimed by lmc-sweep -----------
"$LMC" "$C" set "view//api/a" a
"$LMC" "$C" set "view//api/b" b
expect_eq "$("$LMC" "$C" flush-prefix view//api/)" "" "flush-prefix prints nothing"
expect_rc 1 "$LMC" "$C" get view//api/a
expect_eq "$("$LMC" "$C" ls view//api/ | wc -l)" 0 "ls after flush-prefix"
expect_eq "$("$LMC" "$C" get view//about)" about "key outside the flushed prefix"
"$LMC" "$C" set "view//api/c" c
expect_eq "$("$LMC" "$C" get view//api/c)" c "a key written after the flush"
"$SWEEP" "$C" --once > /dev/null
expect_eq "$("$LMC" "$C" get view//api/c)" c "a key written after the flush, swept"
expect_rc 1 "$LMC" "$C" get view//api/b
"$LMC" "$C" del view//api/c

# --- info, clear -----------------------------------------------------------------
n=$("$LMC" "$C" ls | wc -l)
"$LMC" "$C" info > "$T/info"
grep -q "^entries:$n$" "$T/info" || fail "info entries: $(grep entries "$T/info")"
grep -q "^hit_ratio:0\.[0-9]*$" "$T/info" || fail "info hit_ratio"
"$LMC" "$C" clear
expect_eq "$("$LMC" "$C" ls | wc -l)" 0 "keys after clear"
"$LMC" "$C" info | grep -q "^entries:0$" || fail "info after clear"
"$STATS" "$C" --json > "$T/s.json"
json_check "$T/s.json" 'j["clears"] == 1' 'j["entries"] == 0'

# --- a cache that is not safe to open: EPERM with the path --------------------
mkdir -m 700 "$T/unsafe"
"$LMC" "$T/unsafe/c" --create info >/dev/null
chmod o+w "$T/unsafe/c"
expect_rc 2 "$LMC" "$T/unsafe/c" get a 2> "$T/err"
grep -q "LMC_EPERM" "$T/err" || fail "unsafe directory: $(cat "$T/err")"
expect_rc 2 "$STATS" "$T/unsafe/c" 2> "$T/err"
grep -q "LMC_EPERM" "$T/err" || fail "lmc-stats on an unsafe directory: $(cat "$T/err")"

# --- output errors are reported, not ignored --------------------------------
if [ -w /dev/full ]; then
    "$LMC" "$C" set k v
    expect_rc 2 "$LMC" "$C" get k > /dev/full 2>/dev/null
    expect_rc 2 "$STATS" "$C" > /dev/full 2>/dev/null
    expect_rc 2 "$LMC" --help > /dev/full 2>/dev/null
fi
echo "ok - lmc subcommands, outputs and exit codes"
