/*
 * soak.c - the soak test: lmc used the way a prefork server uses it, on a
 * full cache, while processes are SIGKILLed several times a second.
 *
 * A supervisor creates two caches and forks the processes around them:
 * writers (lmc_set, lmc_set_many, lmc_delete), readers (lmc_get,
 * lmc_get_view, lmc_get_many, lmc_scan), a prefix deleter
 * (lmc_delete_prefix) and the real sweeper, `lmc-sweep --interval`, exec'd
 * from the build.  At random moments, several times a second, it SIGKILLs
 * one of them, whatever it is doing, and starts a new one in its place.  At
 * the end it stops everyone, audits both caches and prints what it saw; the
 * exit status is 0 only if every check held.
 *
 * Cache A is small and always full: the writers want about twice what it
 * holds, so every write may have to evict.  Cache B (the ledger) is big
 * enough never to evict.  The split is what makes "no acknowledged write is
 * lost" decidable: in A, eviction may remove any entry at any moment and the
 * API does not say which keys it removed, so a miss in A is never a loss;
 * in B, nothing but the writers' own deletes, the prefix deleter and expiry
 * removes anything, all three are recorded, so a miss of anything else is a
 * loss.  Both caches get the same processes, the same kills and every other
 * check.
 *
 * Every writer owns its keys (g<group>/w<writer>/<index>) across its
 * incarnations and numbers its operations with a sequence that survives its
 * deaths (in shared memory).  Values carry the cache, the writer, the key,
 * the sequence, the TTL they were written with and a checksum.  Per key the
 * shared ledger holds the highest sequence handed to a call (stored before
 * the call: anything up to it may be in the cache), the lowest sequence a
 * hit may carry (the last acknowledged set, or one past the last
 * acknowledged delete), whether the entry should be there, a lower bound of
 * its expiry, and the sequence of the last write that returned an error.
 * A call killed in flight leaves only "issued" behind: its write may or may
 * not have landed, and both are allowed.
 *
 * What each check means, precisely:
 * - No acknowledged write is lost: a read of a key of B, started after its
 *   writer's set returned LMC_OK and with no later operation of that writer
 *   on that key issued, finds the entry, unless the entry could have
 *   expired (the set's TTL has passed) or a prefix delete of its group was
 *   running or returned after that set was issued.  Checked by every read
 *   of B during the run and for every key of B at the end.
 * - No read older than an acknowledged write: every hit, in A and B, carries
 *   a sequence at least as new as the key's last acknowledged set (and newer
 *   than its last acknowledged delete), newer than every write the writer
 *   had acknowledged when a prefix delete of the key's group began that
 *   returned before the read started, never newer than what was issued, and
 *   never the sequence of a write that returned an error.
 * - No torn read: every value read (get, view, get_many, scan, and the
 *   final audit) parses, names the key it was read under and the cache it
 *   was read from, and matches its checksum; a view's expiry is there iff
 *   the value was written with a TTL, and no entry is served after it
 *   expired.
 * - Writes that can evict did not fail: in A every write can evict (values
 *   are at most 12 KB in a map of megabytes, and the cache always holds
 *   entries), and B never needs to, so any set, set_many, delete or prefix
 *   delete that returns anything but LMC_OK (or LMC_NOTFOUND for a delete)
 *   is a failure, reported with its code, message and the cache's fill;
 *   so is a failed sweeper pass, and the sweeper giving up.
 * - Nothing hangs: every child reports progress after each operation (the
 *   sweeper: a line per pass); one that makes none for --hang-seconds, or
 *   does not stop within that time at the end, is a hang (reported with
 *   what it was doing and its kernel wait channel, then killed).
 * - Counters never go backwards: the supervisor reads lmc_stats() of both
 *   caches about every 10 ms and around every kill; no counter (and not
 *   LMDB's last transaction id) may ever be lower than in an earlier
 *   sample, including after the final reopen.
 * - At the end, after a last sweep of each cache, the cache holds only
 *   valid entries of ours, the stats gauges agree with a scan, no stale
 *   reader slot and no dead process remain, A is back under the high
 *   watermark, a write, read and delete work, and the cache reopens.
 * - There were enough kills: at least one per 0.3 s (1,000 in 300 s).
 *
 * The program uses only the public API of lmc.h.  --inject makes one extra
 * child break a promise behind the library's back (delete B entries, write
 * old or corrupt values, stop making progress); the run then passes only if
 * the matching check caught it, which is how `make soak-selftest` shows that
 * the checks above can fail.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lmc.h"

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

enum { CACHE_A, CACHE_B, NCACHE };
static const char *const cache_name[NCACHE] = {"A", "B"};

#define NGROUPS 16u    /* keys are spread over this many prefixes */
#define MAXW 8u        /* writers at most */
#define MAXR 8u        /* readers at most */
#define VMAX_A 12288u  /* largest value in A: some values take overflow pages */
#define VMAX_B 1024u
#define VBUF 16384u    /* read buffer: more than any value written */
#define MANY 8u        /* keys per lmc_get_many */
#define SET_MANY 4u    /* items per lmc_set_many */

/* Self-test injections: each breaks one promise behind the library's back. */
enum { INJ_NONE, INJ_LOSE, INJ_STALE, INJ_TORN, INJ_HANG };
static const char *const inject_name[] = {"none", "lose", "stale", "torn", "hang"};

typedef struct config {
    double seconds;
    unsigned map_mib[NCACHE];
    unsigned writers, readers;
    unsigned keys[NCACHE]; /* per writer */
    unsigned kill_ms;      /* mean time between kills */
    unsigned hang_s;
    const char *sweeper;   /* the lmc-sweep binary */
    const char *sweep_interval;
    const char *base;      /* where the cache directory is made */
    uint64_t seed;
    int keep;
    int inject;
} config;

/* Roles of the children, in the order of the slot table. */
enum { R_WRITER, R_READER, R_PREFIX, R_SWEEPER, R_SABOTEUR, NROLES };
static const char *const role_name[NROLES] = {"writer", "reader", "prefix deleter", "sweeper",
                                              "saboteur"};

/* What a child is doing, for hang reports. */
enum { OP_NONE, OP_OPEN, OP_SET, OP_SET_MANY, OP_DELETE, OP_GET, OP_VIEW, OP_GET_MANY, OP_SCAN,
       OP_PREFIX, OP_PACE, OP_CLOSE, OP_SABOTAGE, NOPS };
static const char *const op_name[NOPS] = {
    "between calls", "lmc_open", "lmc_set", "lmc_set_many", "lmc_delete", "lmc_get",
    "lmc_get_view", "lmc_get_many", "lmc_scan", "lmc_delete_prefix", "a pause between calls",
    "lmc_close", "sabotage"};

/* ------------------------------------------------------------------------ */
/* Shared memory                                                            */
/* ------------------------------------------------------------------------ */

/* Broken promises, counted by whoever sees them. */
enum { V_LOST, V_STALE, V_RESURRECTED, V_PHANTOM, V_TORN, V_EXPIRY, V_HANG, V_DIED, V_COUNTER,
       V_SWEEPER_GAVE_UP, V_LEDGER_EVICTED, V_FINAL, NVIOL };
static const char *const viol_name[NVIOL] = {
    "acknowledged write lost",
    "read older than an acknowledged write",
    "entry back after a prefix delete",
    "value never acknowledged (beyond what was issued, or a failed write)",
    "torn or foreign value",
    "expiry wrong or expired entry served",
    "hang",
    "child died on its own",
    "counter went backwards",
    "sweeper gave up",
    "ledger cache B evicted (its map is too small for the run)",
    "final audit"};

/* Calls that returned an error, by kind of call. */
enum { F_WRITE, F_DELETE, F_PREFIX, F_READ, F_SWEEP, F_OPEN, F_STATS, NFAIL };
static const char *const fail_name[NFAIL] = {"write", "delete", "prefix delete", "read",
                                             "sweep", "open", "stats"};

/* lmc's codes are -33001 .. -33015; index 0 holds anything else. */
#define NCODES 16
static int code_index(int rc)
{
    return rc <= -33001 && rc >= -33015 ? -rc - 33000 : 0;
}

/* A few messages of each kind are kept to be printed at the end; a child
 * killed while writing one leaves it unfinished, never half-printed. */
#define MSGS_PER_KIND 4
#define NKINDS (NVIOL + NFAIL)
typedef struct msg {
    _Atomic int ready;
    char text[380];
} msg;

/* One per child slot: written by the child, read by the supervisor. */
typedef struct slot {
    _Atomic int pid;
    _Atomic int op;
    _Atomic int pd_cur;       /* prefix deleter: 1 + cache * NGROUPS + group in a call */
    _Atomic int64_t beat_ms;  /* monotonic time of the last progress */
    _Atomic uint64_t ops;
} slot;

#define MAXSLOTS (MAXW + MAXR + 3)

typedef struct figures {
    _Atomic uint64_t sets[NCACHE], set_many[NCACHE], deletes[NCACHE];
    _Atomic uint64_t reads[NCACHE], hits[NCACHE]; /* keys looked up by any read call */
    _Atomic uint64_t views, get_many, scans[NCACHE], scanned[NCACHE];
    _Atomic uint64_t must_hit; /* reads of B that the ledger says had to hit */
    _Atomic uint64_t prefix_calls[NCACHE], prefix_removed[NCACHE];
    _Atomic uint64_t sabotage;
} figures;

typedef struct shared {
    _Atomic int stop;
    int64_t start_real_ms;
    figures fig;
    _Atomic uint64_t viol[NVIOL];
    _Atomic uint64_t fails[NCACHE][NFAIL][NCODES];
    _Atomic unsigned nmsg[NKINDS];
    msg msgs[NKINDS][MSGS_PER_KIND];
    slot slots[MAXSLOTS];
    /* Per writer: the last sequence handed out, and the highest one whose
     * call returned LMC_OK (for a delete also LMC_NOTFOUND).  They survive
     * the writer's deaths. */
    _Atomic uint64_t next_seq[MAXW], acked_upto[MAXW];
    /* Per cache, group and writer: a prefix delete of the group is running;
     * the highest sequence one may have removed (the writer's last issued
     * one when it returned or died); the highest acknowledged sequence that
     * one that returned must have removed. */
    _Atomic int pd_active[NCACHE][NGROUPS];
    _Atomic uint64_t pmay[NCACHE][NGROUPS][MAXW], pmust[NCACHE][NGROUPS][MAXW];
} shared;

/* The ledger of one key, written only by the writer that owns the key. */
typedef struct keyst {
    _Atomic uint64_t state;  /* st_pack() */
    _Atomic uint64_t issued; /* highest sequence handed to a call on this key */
    _Atomic uint64_t failed; /* sequence of the last write that returned an error */
} keyst;

/* state packs, in one word so that readers never see half of an update:
 * the floor (the lowest sequence a hit may carry) in the top 40 bits, a bit
 * saying the last acknowledged operation was a set (the entry should be
 * there), and a lower bound of its expiry in 16 ms units since the start
 * (0: no expiry) in the low 23 bits. */
#define ST_SET ((uint64_t)1 << 23)
#define ST_EXP_MASK (ST_SET - 1)

static const config *CFG;
static shared *S;
static keyst *K[NCACHE];
static lmc *SUP[NCACHE]; /* the supervisor's handles, inherited by half the children */
static char cache_path[NCACHE][320];
static char soak_dir[256];

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static int64_t mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
static int64_t real_ms(void) { return clock_ms(CLOCK_REALTIME); }

static uint64_t st_pack(uint64_t floor, bool set, int64_t exp_ms)
{
    uint64_t e = 0;
    if (exp_ms > 0) {
        int64_t d = exp_ms - S->start_real_ms;
        e = d > 0 ? (uint64_t)d / 16 + 1 : 1;
        if (e > ST_EXP_MASK)
            e = ST_EXP_MASK;
    }
    return floor << 24 | (set ? ST_SET : 0) | e;
}
static uint64_t st_floor(uint64_t st) { return st >> 24; }
static bool st_set(uint64_t st) { return (st & ST_SET) != 0; }
/* The expiry lower bound in ms since the epoch, or 0. */
static int64_t st_exp(uint64_t st)
{
    uint64_t e = st & ST_EXP_MASK;
    return e ? S->start_real_ms + (int64_t)(e - 1) * 16 : 0;
}

static keyst *key_of(int c, unsigned w, unsigned i)
{
    return &K[c][(size_t)w * CFG->keys[c] + i];
}

static int key_name(char *buf, unsigned w, unsigned i)
{
    return snprintf(buf, 32, "g%02u/w%u/%05u", i % NGROUPS, w, i);
}

/* Parse a key of ours; returns false for anything else. */
static bool key_parse(int c, const void *k, size_t klen, unsigned *w, unsigned *i)
{
    const char *s = k;
    if (klen != 12 || s[0] != 'g' || s[3] != '/' || s[4] != 'w' || s[6] != '/')
        return false;
    unsigned g = 0, n = 0;
    for (int j = 1; j <= 2; j++) {
        if (s[j] < '0' || s[j] > '9')
            return false;
        g = g * 10 + (unsigned)(s[j] - '0');
    }
    if (s[5] < '0' || s[5] > '9')
        return false;
    for (int j = 7; j < 12; j++) {
        if (s[j] < '0' || s[j] > '9')
            return false;
        n = n * 10 + (unsigned)(s[j] - '0');
    }
    *w = (unsigned)(s[5] - '0');
    *i = n;
    return *w < CFG->writers && n < CFG->keys[c] && g == n % NGROUPS;
}

/* ------------------------------------------------------------------------ */
/* Randomness, messages                                                     */
/* ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}
static unsigned rnd(uint64_t *s, unsigned n) { return (unsigned)(rng_next(s) % n); }
static uint64_t rng_seed(uint64_t a, uint64_t b)
{
    uint64_t s = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    for (int i = 0; i < 4; i++)
        rng_next(&s);
    return s ? s : 1;
}

static void vnote(int kind, const char *fmt, va_list ap)
{
    unsigned n = atomic_fetch_add(&S->nmsg[kind], 1);
    if (n >= MSGS_PER_KIND)
        return;
    msg *m = &S->msgs[kind][n];
    vsnprintf(m->text, sizeof m->text, fmt, ap);
    atomic_store(&m->ready, 1);
}

static void note(int kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(int kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(kind, fmt, ap);
    va_end(ap);
}

static void violation(int v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(int v, const char *fmt, ...)
{
    atomic_fetch_add(&S->viol[v], 1);
    va_list ap;
    va_start(ap, fmt);
    vnote(v, fmt, ap);
    va_end(ap);
}

/* A call that returned an error.  The first few are kept with the library's
 * message and, for writes, with the cache's fill at that moment: a write
 * that fails while the cache holds entries it could evict breaks the
 * promise. */
static void failure(int cat, int c, lmc *h, int rc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void failure(int cat, int c, lmc *h, int rc, const char *fmt, ...)
{
    atomic_fetch_add(&S->fails[c][cat][code_index(rc)], 1);
    int kind = NVIOL + cat;
    if (atomic_load(&S->nmsg[kind]) >= MSGS_PER_KIND)
        return; /* enough examples: spare the lmc_stats() below */
    char what[128], em[200], tail[160] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* Copied first: the message lives only until the next call. */
    snprintf(em, sizeof em, "%s", lmc_errmsg(h));
    lmc_stat st;
    if (h && (cat == F_WRITE || cat == F_DELETE || cat == F_PREFIX) && lmc_stats(h, &st) == 0)
        snprintf(tail, sizeof tail, "; the cache then held %" PRIu64 " entries, fill %.3f, %" PRIu64
                 " readers active, reader lag %" PRIu64, st.entries, st.fill, st.readers_active,
                 st.reader_lag);
    note(kind, "%s %s: %s (%s)%s", cache_name[c], what, lmc_errname(rc), em, tail);
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

#define VMAGIC 0x4b414f53u /* "SOAK" */

typedef struct vhdr {
    uint32_t magic;
    uint8_t cache, writer;
    uint16_t klen;
    uint32_t len;    /* of the whole value */
    uint32_t ttl_ms; /* the TTL it was written with; 0: none */
    uint64_t seq;
    uint64_t sum;    /* vsum() of the value */
} vhdr;
_Static_assert(offsetof(vhdr, sum) + 8 == sizeof(vhdr), "the sum ends the header");

static uint64_t mix(uint64_t h, const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* The checksum of a value of len >= sizeof(vhdr) bytes: every byte but the
 * sum field itself. */
static uint64_t vsum(const unsigned char *v, size_t len)
{
    uint64_t h = mix(0xcbf29ce484222325ull ^ len, v, offsetof(vhdr, sum));
    h = mix(h, v + sizeof(vhdr), len - sizeof(vhdr));
    return h ^ (h >> 31);
}

static size_t make_value(unsigned char *v, int c, unsigned w, const char *key, size_t klen,
                         uint64_t seq, size_t len, uint32_t ttl_ms)
{
    size_t min = sizeof(vhdr) + klen;
    if (len < min)
        len = min;
    vhdr h = {VMAGIC, (uint8_t)c, (uint8_t)w, (uint16_t)klen, (uint32_t)len, ttl_ms, seq, 0};
    memcpy(v, &h, sizeof h);
    memcpy(v + sizeof h, key, klen);
    for (size_t i = min; i < len; i++)
        v[i] = (unsigned char)(seq * 0x9Du + i * 31u + (i >> 8));
    uint64_t sum = vsum(v, len);
    memcpy(v + offsetof(vhdr, sum), &sum, sizeof sum);
    return len;
}

/* NULL if v is a whole value written for this key of this cache, else what
 * is wrong with it.  *seq and *ttl are set on success. */
static const char *check_value(const void *val, size_t len, int c, unsigned w, const void *key,
                               size_t klen, uint64_t *seq, uint32_t *ttl)
{
    const unsigned char *v = val;
    vhdr h;
    if (len < sizeof h)
        return "shorter than a header";
    memcpy(&h, v, sizeof h);
    if (h.magic != VMAGIC)
        return "no header";
    if (h.len != len)
        return "length differs from the header's";
    if (h.cache != c)
        return "written to the other cache";
    if (h.writer != w || h.klen != klen || len < sizeof h + klen ||
        memcmp(v + sizeof h, key, klen) != 0)
        return "written under another key";
    if (vsum(v, len) != h.sum)
        return "checksum mismatch";
    *seq = h.seq;
    *ttl = h.ttl_ms;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Judging reads                                                            */
/* ------------------------------------------------------------------------ */

/* What a reader knew of a key before its read began. */
typedef struct before {
    uint64_t st, pmust;
    int64_t now_ms;
} before;

static void key_before(int c, unsigned w, unsigned i, before *b)
{
    b->st = atomic_load(&key_of(c, w, i)->state);
    b->pmust = atomic_load(&S->pmust[c][i % NGROUPS][w]);
    b->now_ms = real_ms();
}

static bool b_must_hit(unsigned w, unsigned i, const before *b);

/* A hit: the value must be whole, acknowledged and as new as the ledger
 * says.  expires_at is the entry's expiry from a view, or -1 when the read
 * call does not give it. */
static void judge_hit(int c, unsigned w, unsigned i, const before *b, const void *val, size_t len,
                      int64_t expires_at, const char *how)
{
    char key[32];
    int klen = key_name(key, w, i);
    uint64_t seq;
    uint32_t ttl;
    const char *bad = check_value(val, len, c, w, key, (size_t)klen, &seq, &ttl);
    if (bad) {
        violation(V_TORN, "%s %s %s: a value of %zu bytes, %s", cache_name[c], how, key, len, bad);
        return;
    }
    if (c == CACHE_B && b_must_hit(w, i, b))
        atomic_fetch_add_explicit(&S->fig.must_hit, 1, memory_order_relaxed);
    keyst *ks = key_of(c, w, i);
    uint64_t issued = atomic_load(&ks->issued), failed = atomic_load(&ks->failed);
    uint64_t floor = st_floor(b->st);
    if (seq > issued)
        violation(V_PHANTOM, "%s %s %s: sequence %" PRIu64 " was never issued (highest %" PRIu64
                  ")", cache_name[c], how, key, seq, issued);
    else if (seq == failed)
        violation(V_PHANTOM, "%s %s %s: sequence %" PRIu64 " is from a write that returned an "
                  "error", cache_name[c], how, key, seq);
    else if (seq < floor)
        violation(V_STALE, "%s %s %s: sequence %" PRIu64 ", older than the acknowledged %s of "
                  "sequence %" PRIu64, cache_name[c], how, key, seq,
                  st_set(b->st) ? "set" : "delete", st_set(b->st) ? floor : floor - 1);
    else if (seq <= b->pmust)
        violation(V_RESURRECTED, "%s %s %s: sequence %" PRIu64 " is back after a prefix delete "
                  "of g%02u/ that returned and had to remove everything up to %" PRIu64,
                  cache_name[c], how, key, seq, i % NGROUPS, b->pmust);
    if (expires_at >= 0) {
        if ((expires_at == 0) != (ttl == 0))
            violation(V_EXPIRY, "%s %s %s: sequence %" PRIu64 " written with a TTL of %u ms "
                      "reads with expiry %" PRId64, cache_name[c], how, key, seq, ttl, expires_at);
        else if (expires_at > 0 && b->now_ms > expires_at + 10)
            violation(V_EXPIRY, "%s %s %s: served %" PRId64 " ms after it expired",
                      cache_name[c], how, key, b->now_ms - expires_at);
    }
}

/* Whether a read of a key of B that began with b had to find it: the last
 * acknowledged operation on the key was a set, nothing has been issued on
 * it since, the set cannot have expired, and no prefix delete of its group
 * was running or ran after the set was issued.  Everything here is read
 * after the read call returned, so any of these that happened during the
 * call excuses a miss. */
static bool b_must_hit(unsigned w, unsigned i, const before *b)
{
    keyst *ks = key_of(CACHE_B, w, i);
    uint64_t st = atomic_load(&ks->state), issued = atomic_load(&ks->issued);
    if (st != b->st || !st_set(st) || issued != st_floor(st))
        return false;
    int64_t exp = st_exp(st);
    if (exp && real_ms() >= exp)
        return false;
    unsigned g = i % NGROUPS;
    /* The deleter publishes pmay before it clears pd_active. */
    if (atomic_load(&S->pd_active[CACHE_B][g]) ||
        atomic_load(&S->pmay[CACHE_B][g][w]) >= st_floor(st))
        return false;
    return true;
}

/* A miss.  In A any miss may be an eviction.  In B it is a loss unless the
 * ledger excuses it (b_must_hit). */
static void judge_miss(int c, unsigned w, unsigned i, const before *b, const char *how)
{
    if (c != CACHE_B || !b_must_hit(w, i, b))
        return;
    atomic_fetch_add(&S->fig.must_hit, 1);
    uint64_t st = b->st;
    int64_t exp = st_exp(st);
    char key[32];
    key_name(key, w, i);
    violation(V_LOST, "B %s %s: a miss, but writer %u's set of sequence %" PRIu64 " was "
              "acknowledged and nothing can have removed it (no later operation on the key, "
              "no prefix delete of g%02u/ since it was issued, %s)", how, key, w, st_floor(st),
              i % NGROUPS, exp ? "not expired yet" : "no TTL");
}

/* ------------------------------------------------------------------------ */
/* Children                                                                 */
/* ------------------------------------------------------------------------ */

static int my_slot = -1;

static void set_op(int op) { atomic_store_explicit(&S->slots[my_slot].op, op, memory_order_relaxed); }

static void beat(void)
{
    slot *s = &S->slots[my_slot];
    atomic_store_explicit(&s->op, OP_NONE, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->ops, 1, memory_order_relaxed);
    atomic_store_explicit(&s->beat_ms, mono_ms(), memory_order_relaxed);
}

static bool stopping(void) { return atomic_load_explicit(&S->stop, memory_order_relaxed) != 0; }

static void pause_ms(unsigned ms)
{
    set_op(OP_PACE);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Half the incarnations keep the handles the supervisor opened before
 * forking (the library reopens them on first use, as a prefork master's
 * workers do); the other half open their own. */
static void child_open(lmc *h[NCACHE], uint64_t incarnation)
{
    for (int c = 0; c < NCACHE; c++) {
        if (incarnation % 2 == 0) {
            h[c] = SUP[c];
            continue;
        }
        set_op(OP_OPEN);
        int rc = lmc_open(&h[c], cache_path[c], NULL);
        if (rc) {
            failure(F_OPEN, c, NULL, rc, "open %s", cache_path[c]);
            _exit(5);
        }
    }
    beat();
}

static void child_close(lmc *h[NCACHE])
{
    set_op(OP_CLOSE);
    for (int c = 0; c < NCACHE; c++)
        lmc_close(h[c]);
}

/* Keys are drawn half from a hot tenth, so that LRU and hits mean something. */
static unsigned pick_key(uint64_t *r, int c)
{
    unsigned n = CFG->keys[c];
    return rnd(r, 2) && n >= 10 ? rnd(r, n / 10) : rnd(r, n);
}

static size_t pick_len(uint64_t *r, int c)
{
    if (c == CACHE_B)
        return 48 + rnd(r, VMAX_B - 48);
    unsigned p = rnd(r, 100);
    if (p < 85)
        return 48 + rnd(r, 2048);
    if (p < 95)
        return 2048 + rnd(r, 2048);
    return 4096 + rnd(r, VMAX_A - 4096);
}

static uint32_t pick_ttl(uint64_t *r, int c)
{
    if (c == CACHE_A)
        return rnd(r, 2) ? 300 + rnd(r, 4700) : 0;
    return rnd(r, 10) < 3 ? 2000 + rnd(r, 18000) : 0;
}

static void ack_set(int c, unsigned w, unsigned i, uint64_t seq, uint32_t ttl, int64_t t0)
{
    atomic_store(&key_of(c, w, i)->state, st_pack(seq, true, ttl ? t0 + ttl : 0));
}

/* A failed write: the entry may or may not still hold its old value (a
 * failed set may unlink it), and the failed sequence must never appear. */
static void nack_set(int c, unsigned w, unsigned i, uint64_t seq)
{
    keyst *ks = key_of(c, w, i);
    atomic_store(&ks->failed, seq);
    atomic_store(&ks->state, st_pack(st_floor(atomic_load(&ks->state)), false, 0));
}

static void writer_main(unsigned w, uint64_t incarnation)
{
    lmc *h[NCACHE];
    uint64_t r = rng_seed(CFG->seed, (uint64_t)w << 32 | incarnation);
    child_open(h, incarnation);
    unsigned char *v = malloc(VBUF);
    if (!v)
        _exit(6);
    while (!stopping()) {
        int c = rnd(&r, 100) < 80 ? CACHE_A : CACHE_B;
        unsigned p = rnd(&r, 100);
        char key[32];
        if (p < 4) {
            unsigned i = pick_key(&r, c);
            int klen = key_name(key, w, i);
            uint64_t seq = atomic_fetch_add(&S->next_seq[w], 1) + 1;
            atomic_store(&key_of(c, w, i)->issued, seq);
            set_op(OP_DELETE);
            int rc = lmc_delete(h[c], key, (size_t)klen);
            atomic_fetch_add(&S->fig.deletes[c], 1);
            if (rc == LMC_OK || rc == LMC_NOTFOUND) {
                atomic_store(&key_of(c, w, i)->state, st_pack(seq + 1, false, 0));
                atomic_store(&S->acked_upto[w], seq);
            } else {
                failure(F_DELETE, c, h[c], rc, "delete %s", key);
            }
        } else if (p < 8) {
            unsigned idx[SET_MANY];
            char keys[SET_MANY][32];
            lmc_item items[SET_MANY];
            uint32_t ttl[SET_MANY];
            size_t off = 0;
            for (unsigned j = 0; j < SET_MANY; j++) {
            again:
                idx[j] = pick_key(&r, c);
                for (unsigned q = 0; q < j; q++)
                    if (idx[q] == idx[j])
                        goto again;
            }
            uint64_t seq = atomic_fetch_add(&S->next_seq[w], SET_MANY) + 1;
            int64_t t0 = real_ms();
            for (unsigned j = 0; j < SET_MANY; j++) {
                int klen = key_name(keys[j], w, idx[j]);
                ttl[j] = pick_ttl(&r, c);
                size_t len = pick_len(&r, c) / SET_MANY + sizeof(vhdr) + 16;
                if (off + len > VBUF)
                    len = VBUF - off;
                len = make_value(v + off, c, w, keys[j], (size_t)klen, seq + j, len, ttl[j]);
                atomic_store(&key_of(c, w, idx[j])->issued, seq + j);
                items[j] = (lmc_item){keys[j], (size_t)klen, v + off, len,
                                      ttl[j] ? (int64_t)ttl[j] : LMC_TTL_NEVER};
                off += len;
            }
            set_op(OP_SET_MANY);
            int rc = lmc_set_many(h[c], items, SET_MANY);
            atomic_fetch_add(&S->fig.set_many[c], 1);
            if (rc == LMC_OK) {
                for (unsigned j = 0; j < SET_MANY; j++)
                    ack_set(c, w, idx[j], seq + j, ttl[j], t0);
                atomic_store(&S->acked_upto[w], seq + SET_MANY - 1);
            } else {
                for (unsigned j = 0; j < SET_MANY; j++)
                    nack_set(c, w, idx[j], seq + j);
                failure(F_WRITE, c, h[c], rc, "set_many of %u keys from %s", SET_MANY, keys[0]);
            }
        } else {
            unsigned i = pick_key(&r, c);
            int klen = key_name(key, w, i);
            uint32_t ttl = pick_ttl(&r, c);
            uint64_t seq = atomic_fetch_add(&S->next_seq[w], 1) + 1;
            size_t len = make_value(v, c, w, key, (size_t)klen, seq, pick_len(&r, c), ttl);
            atomic_store(&key_of(c, w, i)->issued, seq);
            int64_t t0 = real_ms();
            set_op(OP_SET);
            int rc = lmc_set(h[c], key, (size_t)klen, v, len, ttl ? (int64_t)ttl : LMC_TTL_NEVER);
            atomic_fetch_add(&S->fig.sets[c], 1);
            if (rc == LMC_OK) {
                ack_set(c, w, i, seq, ttl, t0);
                atomic_store(&S->acked_upto[w], seq);
            } else {
                nack_set(c, w, i, seq);
                failure(F_WRITE, c, h[c], rc, "set %s (%zu bytes, TTL %u ms)", key, len, ttl);
            }
        }
        beat();
    }
    free(v);
    child_close(h);
    _exit(0);
}

/* The read calls hand values to callbacks; this is what they need. */
typedef struct rctx {
    int c;
    unsigned w[MANY], i[MANY];
    before b[MANY];
    const char *how;
    unsigned group;     /* scans */
    before *scan_b;     /* scans: a before per key of the cache */
    uint64_t visited;
    bool audit;         /* the final audit: foreign keys are its problems */
} rctx;

static int view_cb(void *arg, const lmc_value *v)
{
    rctx *x = arg;
    char key[32];
    int klen = key_name(key, x->w[0], x->i[0]);
    if (v->klen != (size_t)klen || memcmp(v->key, key, v->klen) != 0)
        violation(V_TORN, "%s %s %s: the view names another key", cache_name[x->c], x->how, key);
    judge_hit(x->c, x->w[0], x->i[0], &x->b[0], v->data, v->len, v->expires_at_ms, x->how);
    return 0;
}

static int many_cb(void *arg, size_t n, const lmc_value *v)
{
    rctx *x = arg;
    atomic_fetch_add_explicit(&S->fig.reads[x->c], 1, memory_order_relaxed);
    if (!v) {
        judge_miss(x->c, x->w[n], x->i[n], &x->b[n], x->how);
        return 0;
    }
    atomic_fetch_add_explicit(&S->fig.hits[x->c], 1, memory_order_relaxed);
    judge_hit(x->c, x->w[n], x->i[n], &x->b[n], v->data, v->len, v->expires_at_ms, x->how);
    return 0;
}

static int scan_cb(void *arg, const lmc_value *e)
{
    rctx *x = arg;
    unsigned w, i;
    x->visited++;
    if (!key_parse(x->c, e->key, e->klen, &w, &i) || (!x->audit && i % NGROUPS != x->group)) {
        violation(x->audit ? V_FINAL : V_TORN, "%s %s: an entry with key '%.*s' (%zu bytes), "
                  "not one of ours%s", cache_name[x->c], x->how, (int)(e->klen < 40 ? e->klen : 40),
                  (const char *)e->key, e->klen, x->audit ? "" : " or outside the prefix");
        return 0;
    }
    judge_hit(x->c, w, i, &x->scan_b[(size_t)w * CFG->keys[x->c] + i], e->data, e->len,
              e->expires_at_ms, x->how);
    return 0;
}

/* One lookup with lmc_get or lmc_get_view, judged. */
static void read_one(lmc *h, int c, unsigned w, unsigned i, bool view, unsigned char *buf,
                     const char *how)
{
    char key[32];
    int klen = key_name(key, w, i);
    rctx x;
    x.c = c;
    x.w[0] = w;
    x.i[0] = i;
    x.how = how;
    key_before(c, w, i, &x.b[0]);
    int rc;
    size_t n = 0;
    if (view) {
        set_op(OP_VIEW);
        rc = lmc_get_view(h, key, (size_t)klen, view_cb, &x);
        atomic_fetch_add_explicit(&S->fig.views, 1, memory_order_relaxed);
    } else {
        set_op(OP_GET);
        rc = lmc_get(h, key, (size_t)klen, buf, VBUF, &n);
    }
    atomic_fetch_add_explicit(&S->fig.reads[c], 1, memory_order_relaxed);
    if (rc == LMC_OK) {
        atomic_fetch_add_explicit(&S->fig.hits[c], 1, memory_order_relaxed);
        if (!view)
            judge_hit(c, w, i, &x.b[0], buf, n, -1, how);
    } else if (rc == LMC_NOTFOUND) {
        judge_miss(c, w, i, &x.b[0], how);
    } else if (rc == LMC_ERANGE) {
        violation(V_TORN, "%s %s %s: a value of %zu bytes, longer than any written",
                  cache_name[c], how, key, n);
    } else {
        failure(F_READ, c, h, rc, "%s %s", how, key);
    }
}

static void reader_main(unsigned rd, uint64_t incarnation)
{
    lmc *h[NCACHE];
    uint64_t r = rng_seed(CFG->seed ^ 0x5eed, (uint64_t)rd << 32 | incarnation);
    child_open(h, incarnation);
    unsigned char *buf = malloc(VBUF);
    size_t nb = (size_t)CFG->writers * (CFG->keys[CACHE_A] > CFG->keys[CACHE_B]
                                            ? CFG->keys[CACHE_A] : CFG->keys[CACHE_B]);
    before *sb = malloc(nb * sizeof *sb);
    if (!buf || !sb)
        _exit(6);
    while (!stopping()) {
        int c = rnd(&r, 100) < 70 ? CACHE_A : CACHE_B;
        unsigned p = rnd(&r, 1000);
        if (p < 600) {
            read_one(h[c], c, rnd(&r, CFG->writers), pick_key(&r, c), false, buf, "get");
        } else if (p < 880) {
            read_one(h[c], c, rnd(&r, CFG->writers), pick_key(&r, c), true, buf, "view");
        } else if (p < 997) {
            rctx x;
            lmc_key keys[MANY];
            char names[MANY][32];
            x.c = c;
            x.how = "get_many";
            for (unsigned j = 0; j < MANY; j++) {
                x.w[j] = rnd(&r, CFG->writers);
                x.i[j] = pick_key(&r, c);
                keys[j] = (lmc_key){names[j], (size_t)key_name(names[j], x.w[j], x.i[j])};
                key_before(c, x.w[j], x.i[j], &x.b[j]);
            }
            set_op(OP_GET_MANY);
            int rc = lmc_get_many(h[c], keys, MANY, many_cb, &x);
            atomic_fetch_add_explicit(&S->fig.get_many, 1, memory_order_relaxed);
            if (rc)
                failure(F_READ, c, h[c], rc, "get_many from %s", names[0]);
        } else {
            /* A scan of one group: it is not one snapshot, so every entry is
             * judged against what was known before the scan began. */
            rctx x;
            memset(&x, 0, sizeof x);
            x.c = c;
            x.how = "scan";
            x.group = rnd(&r, NGROUPS);
            x.scan_b = sb;
            for (unsigned w = 0; w < CFG->writers; w++)
                for (unsigned i = x.group; i < CFG->keys[c]; i += NGROUPS)
                    key_before(c, w, i, &sb[(size_t)w * CFG->keys[c] + i]);
            char prefix[8];
            int pl = snprintf(prefix, sizeof prefix, "g%02u/", x.group);
            set_op(OP_SCAN);
            int rc = lmc_scan(h[c], prefix, (size_t)pl, scan_cb, &x);
            atomic_fetch_add_explicit(&S->fig.scans[c], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&S->fig.scanned[c], x.visited, memory_order_relaxed);
            if (rc)
                failure(F_READ, c, h[c], rc, "scan of %s", prefix);
        }
        beat();
    }
    free(sb);
    free(buf);
    child_close(h);
    _exit(0);
}

static void pmay_update(int c, unsigned g)
{
    for (unsigned w = 0; w < CFG->writers; w++) {
        uint64_t n = atomic_load(&S->next_seq[w]);
        if (atomic_load(&S->pmay[c][g][w]) < n)
            atomic_store(&S->pmay[c][g][w], n);
    }
}

static void prefix_main(uint64_t incarnation)
{
    lmc *h[NCACHE];
    uint64_t r = rng_seed(CFG->seed ^ 0xdead, incarnation);
    child_open(h, incarnation);
    slot *me = &S->slots[my_slot];
    while (!stopping()) {
        int c = rnd(&r, 100) < 70 ? CACHE_A : CACHE_B;
        unsigned g = rnd(&r, NGROUPS);
        char prefix[8];
        int pl = snprintf(prefix, sizeof prefix, "g%02u/", g);
        uint64_t must[MAXW];
        atomic_store(&me->pd_cur, 1 + c * (int)NGROUPS + (int)g);
        atomic_store(&S->pd_active[c][g], 1);
        for (unsigned w = 0; w < CFG->writers; w++)
            must[w] = atomic_load(&S->acked_upto[w]);
        uint64_t removed = 0;
        set_op(OP_PREFIX);
        int rc = lmc_delete_prefix(h[c], prefix, (size_t)pl, &removed);
        atomic_fetch_add(&S->fig.prefix_calls[c], 1);
        atomic_fetch_add(&S->fig.prefix_removed[c], removed);
        pmay_update(c, g);
        if (rc == LMC_OK) {
            /* Everything acknowledged before the call began is gone now. */
            for (unsigned w = 0; w < CFG->writers; w++)
                if (atomic_load(&S->pmust[c][g][w]) < must[w])
                    atomic_store(&S->pmust[c][g][w], must[w]);
        } else {
            failure(F_PREFIX, c, h[c], rc, "delete_prefix %s (%" PRIu64 " removed)", prefix,
                    removed);
        }
        atomic_store(&S->pd_active[c][g], 0);
        atomic_store(&me->pd_cur, 0);
        beat();
        pause_ms(10 + rnd(&r, 90));
        beat();
    }
    child_close(h);
    _exit(0);
}

/* Self-test only: break one promise behind the library's back, so that the
 * run shows the matching check catches it. */
static void saboteur_main(uint64_t incarnation)
{
    lmc *h[NCACHE];
    uint64_t r = rng_seed(CFG->seed ^ 0xbad, incarnation);
    child_open(h, incarnation);
    unsigned char *v = malloc(VBUF);
    if (!v)
        _exit(6);
    int64_t t0 = mono_ms();
    while (!stopping()) {
        int c = CFG->inject == INJ_LOSE ? CACHE_B : (int)rnd(&r, NCACHE);
        unsigned w = rnd(&r, CFG->writers), i = pick_key(&r, c);
        char key[32];
        int klen = key_name(key, w, i);
        keyst *ks = key_of(c, w, i);
        uint64_t st = atomic_load(&ks->state);
        set_op(OP_SABOTAGE);
        if (CFG->inject == INJ_LOSE && st_set(st)) {
            if (lmc_delete(h[c], key, (size_t)klen) == LMC_OK)
                atomic_fetch_add(&S->fig.sabotage, 1);
        } else if (CFG->inject == INJ_STALE && st_set(st) && st_floor(st) >= 2) {
            size_t len = make_value(v, c, w, key, (size_t)klen, st_floor(st) - 1, 100, 0);
            if (lmc_set(h[c], key, (size_t)klen, v, len, LMC_TTL_NEVER) == LMC_OK)
                atomic_fetch_add(&S->fig.sabotage, 1);
        } else if (CFG->inject == INJ_TORN) {
            size_t len = make_value(v, c, w, key, (size_t)klen, atomic_load(&ks->issued), 200, 0);
            v[len - 1] ^= 0x40;
            if (lmc_set(h[c], key, (size_t)klen, v, len, LMC_TTL_NEVER) == LMC_OK)
                atomic_fetch_add(&S->fig.sabotage, 1);
        } else if (CFG->inject == INJ_HANG && mono_ms() - t0 > 300) {
            atomic_fetch_add(&S->fig.sabotage, 1);
            set_op(OP_GET);
            for (;;)
                pause();
        }
        beat();
        pause_ms(2);
        beat();
    }
    free(v);
    child_close(h);
    _exit(0);
}

/* ------------------------------------------------------------------------ */
/* Supervisor                                                               */
/* ------------------------------------------------------------------------ */

typedef struct child {
    int role;
    unsigned index;   /* within the role */
    pid_t pid;        /* 0: not running */
    uint64_t spawns;
    int out_fd, err_fd;            /* the sweeper's stdout and stderr */
    char out[4096], err[4096];
    size_t out_len, err_len;
    char err_tail[400];            /* the sweeper's last line on stderr */
    int64_t last_line_ms;
} child;

static child kids[MAXSLOTS];
static unsigned nkids;

typedef struct sup_figs {
    uint64_t kills[NROLES], hang_kills, spawns, fork_failures;
    uint64_t samples, sweep_passes, sweep_failed, sweep_retries, sweep_gave_up;
    uint64_t sweep_expired, sweep_evicted, sweep_readers_cleared;
    double sweep_fill_max;
} sup_figs;
static sup_figs SF;

static void on_deadline(int sig)
{
    (void)sig;
    static const char m[] = "lmc-soak: the overall deadline passed: the supervisor itself is "
                            "stuck (in a call to the library?); killing every child\n";
    ssize_t n = write(2, m, sizeof m - 1);
    (void)n;
    for (unsigned i = 0; i < MAXSLOTS; i++) {
        int p = atomic_load(&S->slots[i].pid);
        if (p > 0)
            kill(p, SIGKILL);
    }
    _exit(3);
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void child_body(unsigned k)
{
    child *ch = &kids[k];
    my_slot = (int)k;
    signal(SIGALRM, SIG_DFL);
    alarm(0);
    switch (ch->role) {
    case R_WRITER:
        writer_main(ch->index, ch->spawns);
        break;
    case R_READER:
        reader_main(ch->index, ch->spawns);
        break;
    case R_PREFIX:
        prefix_main(ch->spawns);
        break;
    case R_SABOTEUR:
        saboteur_main(ch->spawns);
        break;
    default:
        break;
    }
    _exit(7);
}

static void spawn(unsigned k)
{
    child *ch = &kids[k];
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (ch->role == R_SWEEPER && (pipe(out) || pipe(err))) {
        SF.fork_failures++;
        return;
    }
    atomic_store(&S->slots[k].beat_ms, mono_ms());
    atomic_store(&S->slots[k].op, OP_OPEN);
    atomic_store(&S->slots[k].pd_cur, 0);
    ch->spawns++;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t p = fork();
    if (p < 0) {
        SF.fork_failures++;
        if (out[0] >= 0) {
            close(out[0]);
            close(out[1]);
            close(err[0]);
            close(err[1]);
        }
        return;
    }
    if (p == 0) {
        /* Children die with the supervisor, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        if (ch->role != R_SWEEPER)
            child_body(k);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(out[1]);
        close(err[0]);
        close(err[1]);
        execl(CFG->sweeper, "lmc-sweep", cache_path[CACHE_A], "--interval", CFG->sweep_interval,
              "--json", (char *)NULL);
        fprintf(stderr, "lmc-soak: cannot run %s: %s\n", CFG->sweeper, strerror(errno));
        _exit(127);
    }
    ch->pid = p;
    atomic_store(&S->slots[k].pid, p);
    SF.spawns++;
    if (ch->role == R_SWEEPER) {
        close(out[1]);
        close(err[1]);
        ch->out_fd = out[0];
        ch->err_fd = err[0];
        set_nonblock(ch->out_fd);
        set_nonblock(ch->err_fd);
        ch->out_len = ch->err_len = 0;
        ch->last_line_ms = mono_ms();
    }
}

static uint64_t json_u64(const char *line, const char *field)
{
    const char *p = strstr(line, field);
    return p ? strtoull(p + strlen(field), NULL, 10) : 0;
}

/* One line of the sweeper: a pass on stdout, a complaint on stderr. */
static void sweeper_line(child *ch, bool is_err, const char *line)
{
    ch->last_line_ms = mono_ms();
    if (!is_err) {
        SF.sweep_passes++;
        SF.sweep_expired += json_u64(line, "\"expired\":");
        SF.sweep_evicted += json_u64(line, "\"evicted\":");
        SF.sweep_readers_cleared += json_u64(line, "\"readers_cleared\":");
        const char *f = strstr(line, "\"fill_before\":");
        if (f) {
            double d = strtod(f + 14, NULL);
            if (d > SF.sweep_fill_max)
                SF.sweep_fill_max = d;
        }
        return;
    }
    snprintf(ch->err_tail, sizeof ch->err_tail, "%.*s", (int)sizeof ch->err_tail - 1, line);
    if (strstr(line, "retrying with")) {
        SF.sweep_retries++;
    } else if (strstr(line, "giving up")) {
        /* Counted when the sweeper's exit is seen. */
    } else {
        SF.sweep_failed++;
        const char *code = strstr(line, "LMC_");
        int rc = 0;
        for (int i = 1; code && i < NCODES; i++)
            if (strncmp(code, lmc_errname(-(33000 + i)), strlen(lmc_errname(-(33000 + i)))) == 0)
                rc = -(33000 + i);
        atomic_fetch_add(&S->fails[CACHE_A][F_SWEEP][code_index(rc)], 1);
        note(NVIOL + F_SWEEP, "A %s", line);
    }
}

static void drain_fd(child *ch, bool is_err)
{
    int fd = is_err ? ch->err_fd : ch->out_fd;
    char *buf = is_err ? ch->err : ch->out;
    size_t *len = is_err ? &ch->err_len : &ch->out_len;
    if (fd < 0)
        return;
    for (;;) {
        ssize_t n = read(fd, buf + *len, sizeof ch->out - 1 - *len);
        if (n <= 0)
            break;
        *len += (size_t)n;
        buf[*len] = 0;
        char *nl;
        while ((nl = strchr(buf, '\n'))) {
            *nl = 0;
            sweeper_line(ch, is_err, buf);
            size_t rest = *len - (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, rest + 1);
            *len = rest;
        }
        if (*len == sizeof ch->out - 1) /* a line longer than the buffer */
            *len = 0;
    }
}

static void drain_sweeper(void)
{
    for (unsigned k = 0; k < nkids; k++)
        if (kids[k].role == R_SWEEPER) {
            drain_fd(&kids[k], false);
            drain_fd(&kids[k], true);
        }
}

/* The child is gone (killed, or died): tidy what it may have left. */
static void after_death(unsigned k)
{
    child *ch = &kids[k];
    ch->pid = 0;
    atomic_store(&S->slots[k].pid, 0);
    if (ch->role == R_PREFIX) {
        /* A prefix delete killed mid-call may have removed entries up to
         * now, and never returned: it owes nothing. */
        int cur = atomic_load(&S->slots[k].pd_cur);
        if (cur > 0) {
            int c = (cur - 1) / (int)NGROUPS;
            unsigned g = (unsigned)(cur - 1) % NGROUPS;
            pmay_update(c, g);
            atomic_store(&S->pd_active[c][g], 0);
            atomic_store(&S->slots[k].pd_cur, 0);
        }
    }
    if (ch->role == R_SWEEPER) {
        drain_fd(ch, false);
        drain_fd(ch, true);
        close(ch->out_fd);
        close(ch->err_fd);
        ch->out_fd = ch->err_fd = -1;
    }
}

static void describe_status(char *buf, size_t cap, int st)
{
    if (WIFSIGNALED(st))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
}

/* A child ended without being killed by us. */
static void unexpected_end(unsigned k, int st)
{
    child *ch = &kids[k];
    char how[96];
    describe_status(how, sizeof how, st);
    if (ch->role == R_SWEEPER && WIFEXITED(st) && WEXITSTATUS(st) == 2) {
        SF.sweep_gave_up++;
        violation(V_SWEEPER_GAVE_UP, "lmc-sweep (pid %d) exited with status 2; its last "
                  "message: %s", (int)ch->pid, ch->err_tail);
    } else if (!(WIFEXITED(st) && WEXITSTATUS(st) == 5)) { /* 5: open failed, reported */
        violation(V_DIED, "%s %u (pid %d) %s while %s", role_name[ch->role], ch->index,
                  (int)ch->pid, how, op_name[atomic_load(&S->slots[k].op) % NOPS]);
    }
    after_death(k);
}

static int find_kid(pid_t p)
{
    for (unsigned k = 0; k < nkids; k++)
        if (kids[k].pid == p)
            return (int)k;
    return -1;
}

/* Reap children that ended on their own; respawn them unless stopping. */
static void reap_unexpected(bool respawn)
{
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        int k = find_kid(p);
        if (k < 0)
            continue;
        if (atomic_load(&S->stop) && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            after_death((unsigned)k);
            continue;
        }
        unexpected_end((unsigned)k, st);
        if (respawn)
            spawn((unsigned)k);
    }
}

/* Wait up to ms for the child to end; false if it did not. */
static bool reap_within(unsigned k, int64_t ms, int *st)
{
    int64_t end = mono_ms() + ms;
    for (;;) {
        pid_t p = waitpid(kids[k].pid, st, WNOHANG);
        if (p == kids[k].pid)
            return true;
        if (p < 0 && errno != EINTR)
            return true; /* not ours any more: nothing to wait for */
        if (mono_ms() > end)
            return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* What the kernel says a stuck process waits in. */
static void proc_info(pid_t p, char *buf, size_t cap)
{
    char path[64], wchan[64] = "?", stat[256] = "";
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)p);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(wchan, sizeof wchan, f))
            snprintf(wchan, sizeof wchan, "?");
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    f = fopen(path, "r");
    char state = '?';
    if (f) {
        if (fgets(stat, sizeof stat, f)) {
            char *rp = strrchr(stat, ')');
            if (rp && rp[1] == ' ')
                state = rp[2];
        }
        fclose(f);
    }
    snprintf(buf, cap, "state %c, waiting in %s", state, wchan[0] ? wchan : "(running)");
}

static lmc_stat prev_st[NCACHE];
static bool have_prev[NCACHE];
static uint64_t kills_total;
static const char *last_kill = "none yet";

/* Read both caches' stats: no counter may be lower than before. */
static void sample_stats(void)
{
    size_t nf;
    const lmc_stat_field *f = lmc_stat_fields(&nf);
    for (int c = 0; c < NCACHE; c++) {
        if (!SUP[c])
            continue; /* a reopen failed: reported */
        lmc_stat st;
        int rc = lmc_stats(SUP[c], &st);
        if (rc) {
            failure(F_STATS, c, SUP[c], rc, "lmc_stats");
            continue;
        }
        SF.samples++;
        if (have_prev[c]) {
            for (size_t j = 0; j < nf; j++) {
                if (f[j].kind != LMC_FIELD_COUNTER && strcmp(f[j].name, "last_txnid") != 0)
                    continue;
                uint64_t a, b;
                memcpy(&a, (const char *)&prev_st[c] + f[j].offset, sizeof a);
                memcpy(&b, (const char *)&st + f[j].offset, sizeof b);
                if (b < a)
                    violation(V_COUNTER, "%s %s went from %" PRIu64 " to %" PRIu64 " (after %"
                              PRIu64 " kills, the last of a %s)", cache_name[c], f[j].name, a, b,
                              kills_total, last_kill);
            }
        }
        if (c == CACHE_B && st.counters.evictions_soonest + st.counters.evictions_lru > 0 &&
            !(have_prev[c] && prev_st[c].counters.evictions_soonest + prev_st[c].counters.evictions_lru > 0))
            violation(V_LEDGER_EVICTED, "B evicted %" PRIu64 " live entries (fill %.3f): the "
                      "checks of lost writes are void from here on",
                      st.counters.evictions_soonest + st.counters.evictions_lru, st.fill);
        prev_st[c] = st;
        have_prev[c] = true;
    }
}

static void kill_one(uint64_t *r)
{
    unsigned cand[MAXSLOTS], n = 0;
    for (unsigned k = 0; k < nkids; k++)
        if (kids[k].pid > 0 && kids[k].role != R_SABOTEUR)
            cand[n++] = k;
    if (!n)
        return;
    unsigned k = cand[rnd(r, n)];
    child *ch = &kids[k];
    sample_stats();
    kill(ch->pid, SIGKILL);
    int st = 0;
    if (!reap_within(k, 5000, &st)) {
        char info[160];
        proc_info(ch->pid, info, sizeof info);
        violation(V_HANG, "%s %u (pid %d) did not die within 5 s of SIGKILL (%s)",
                  role_name[ch->role], ch->index, (int)ch->pid, info);
        after_death(k); /* its zombie is reaped by reap_unexpected later */
    } else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
        SF.kills[ch->role]++;
        kills_total++;
        last_kill = role_name[ch->role];
        after_death(k);
    } else {
        unexpected_end(k, st);
    }
    sample_stats();
    spawn(k);
}

static void check_hangs(int64_t limit_ms, bool respawn)
{
    int64_t now = mono_ms();
    for (unsigned k = 0; k < nkids; k++) {
        child *ch = &kids[k];
        if (ch->pid <= 0)
            continue;
        int64_t b = ch->role == R_SWEEPER ? ch->last_line_ms : atomic_load(&S->slots[k].beat_ms);
        if (now - b <= limit_ms)
            continue;
        char info[160];
        proc_info(ch->pid, info, sizeof info);
        violation(V_HANG, "%s %u (pid %d) made no progress for %.1f s, in %s (%s)",
                  role_name[ch->role], ch->index, (int)ch->pid, (double)(now - b) / 1000.0,
                  ch->role == R_SWEEPER ? "a sweep pass" : op_name[atomic_load(&S->slots[k].op) % NOPS],
                  info);
        kill(ch->pid, SIGKILL);
        int st;
        reap_within(k, 5000, &st);
        SF.hang_kills++;
        after_death(k);
        if (respawn)
            spawn(k);
    }
}

static uint64_t sum_fails(int cat)
{
    uint64_t n = 0;
    for (int c = 0; c < NCACHE; c++)
        for (int i = 0; i < NCODES; i++)
            n += atomic_load(&S->fails[c][cat][i]);
    return n;
}

static uint64_t sum_viol(void)
{
    uint64_t n = 0;
    for (int v = 0; v < NVIOL; v++)
        n += atomic_load(&S->viol[v]);
    return n;
}

static void progress(double elapsed)
{
    uint64_t sets = 0, reads = 0, kills = 0;
    for (int c = 0; c < NCACHE; c++) {
        sets += S->fig.sets[c] + S->fig.set_many[c] + S->fig.deletes[c];
        reads += S->fig.reads[c];
    }
    for (int r = 0; r < NROLES; r++)
        kills += SF.kills[r];
    printf("[%5.0f s] kills %" PRIu64 ", writes %" PRIu64 " (%" PRIu64 " failed), reads %" PRIu64
           ", sweeper passes %" PRIu64 ", broken promises %" PRIu64 "\n",
           elapsed, kills, sets, sum_fails(F_WRITE) + sum_fails(F_DELETE), reads,
           SF.sweep_passes, sum_viol());
    fflush(stdout);
}

/* Stop every child: a flag for ours, SIGTERM for the sweeper; whoever does
 * not end within the hang limit hangs. */
static void stop_all(void)
{
    atomic_store(&S->stop, 1);
    for (unsigned k = 0; k < nkids; k++)
        if (kids[k].role == R_SWEEPER && kids[k].pid > 0)
            kill(kids[k].pid, SIGTERM);
    int64_t end = mono_ms() + (int64_t)CFG->hang_s * 1000;
    for (;;) {
        drain_sweeper();
        reap_unexpected(false);
        bool any = false;
        for (unsigned k = 0; k < nkids; k++)
            any |= kids[k].pid > 0;
        if (!any)
            return;
        if (mono_ms() > end)
            break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    for (unsigned k = 0; k < nkids; k++) {
        child *ch = &kids[k];
        if (ch->pid <= 0)
            continue;
        char info[160];
        proc_info(ch->pid, info, sizeof info);
        violation(V_HANG, "%s %u (pid %d) did not stop within %u s, in %s (%s)",
                  role_name[ch->role], ch->index, (int)ch->pid, CFG->hang_s,
                  ch->role == R_SWEEPER ? "a sweep pass" : op_name[atomic_load(&S->slots[k].op) % NOPS],
                  info);
        kill(ch->pid, SIGKILL);
        int st;
        reap_within(k, 5000, &st);
        after_death(k);
    }
}

/* ------------------------------------------------------------------------ */
/* Final audit                                                              */
/* ------------------------------------------------------------------------ */

typedef struct audit_figs {
    uint64_t scanned[NCACHE], present[NCACHE], as_acked[NCACHE], expected[NCACHE];
    uint64_t entries_gauge[NCACHE];
    double fill_after_sweep[NCACHE];
} audit_figs;
static audit_figs AF;

static void audit_cache(int c, before *bb)
{
    lmc *h = SUP[c];
    unsigned nk = CFG->keys[c];
    for (unsigned w = 0; w < CFG->writers; w++)
        for (unsigned i = 0; i < nk; i++)
            key_before(c, w, i, &bb[(size_t)w * nk + i]);
    /* The scan first: entries only expire from here on, so the point reads
     * after it may find fewer, never more. */
    rctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.how = "final scan";
    x.scan_b = bb;
    x.audit = true;
    int rc = lmc_scan(h, "", 0, scan_cb, &x);
    if (rc)
        failure(F_READ, c, h, rc, "final scan");
    AF.scanned[c] = x.visited;
    for (unsigned w = 0; w < CFG->writers; w++)
        for (unsigned i = 0; i < nk; i++) {
            before *b = &bb[(size_t)w * nk + i];
            char key[32];
            int klen = key_name(key, w, i);
            rctx y;
            y.c = c;
            y.w[0] = w;
            y.i[0] = i;
            y.b[0] = *b;
            y.how = "final read";
            keyst *ks = key_of(c, w, i);
            bool expect = st_set(b->st) && atomic_load(&ks->issued) == st_floor(b->st);
            AF.expected[c] += expect;
            rc = lmc_get_view(h, key, (size_t)klen, view_cb, &y);
            if (rc == LMC_OK) {
                AF.present[c]++;
                AF.as_acked[c] += expect;
            } else if (rc == LMC_NOTFOUND) {
                judge_miss(c, w, i, b, "final read");
            } else {
                failure(F_READ, c, h, rc, "final read of %s", key);
            }
        }
    lmc_stat st;
    if (lmc_stats(h, &st) == 0) {
        AF.entries_gauge[c] = st.entries;
        if (AF.present[c] > AF.scanned[c] || AF.scanned[c] > st.entries)
            violation(V_FINAL, "%s: %" PRIu64 " keys read back, %" PRIu64 " entries scanned, "
                      "entries gauge %" PRIu64 ": want reads <= scanned <= gauge", cache_name[c],
                      AF.present[c], AF.scanned[c], st.entries);
    }
}

/* After the last sweep, the cache must be tidy and still work. */
static void audit_after_sweep(int c)
{
    lmc *h = SUP[c];
    lmc_sweep_result r;
    int rc = lmc_sweep(h, NULL, &r);
    if (rc) {
        failure(F_SWEEP, c, h, rc, "final lmc_sweep");
    } else {
        AF.fill_after_sweep[c] = r.fill_after;
        if (!r.complete || r.fill_after > 0.80)
            violation(V_FINAL, "%s: the final sweep %s, fill %.3f after it (high watermark "
                      "0.80)", cache_name[c], r.complete ? "completed" : "did not complete",
                      r.fill_after);
    }
    lmc_stat st;
    rc = lmc_stats(h, &st);
    if (rc == 0 && (st.readers_stale != 0 || st.processes != 1))
        violation(V_FINAL, "%s: after the final sweep %" PRIu64 " stale reader slots and %"
                  PRIu64 " processes attached (want 0 and 1: only the supervisor)",
                  cache_name[c], st.readers_stale, st.processes);
    static const char pk[] = "soak/probe";
    char val[32], got[32];
    size_t n = 0;
    int len = snprintf(val, sizeof val, "probe %d", c);
    if ((rc = lmc_set(h, pk, sizeof pk - 1, val, (size_t)len, LMC_TTL_NEVER)) != 0)
        failure(F_WRITE, c, h, rc, "final probe set");
    else if ((rc = lmc_get(h, pk, sizeof pk - 1, got, sizeof got, &n)) != 0 ||
             n != (size_t)len || memcmp(got, val, n) != 0)
        violation(V_FINAL, "%s: the probe written at the end reads back as %s", cache_name[c],
                  rc ? lmc_errname(rc) : "another value");
    else if ((rc = lmc_delete(h, pk, sizeof pk - 1)) != 0)
        failure(F_DELETE, c, h, rc, "final probe delete");
}

/* The audit uses a handle opened afresh, as a process started after all
 * those kills would: the cache must open, and its counters must not have
 * gone back (the next sample_stats() compares them). */
static bool audit_reopen(int c)
{
    lmc_close(SUP[c]);
    SUP[c] = NULL;
    int rc = lmc_open(&SUP[c], cache_path[c], NULL);
    if (rc) {
        violation(V_FINAL, "%s: reopening after the soak: %s (%s)", cache_name[c],
                  lmc_errname(rc), lmc_errmsg(NULL));
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                   */
/* ------------------------------------------------------------------------ */

static void print_codes(int cat)
{
    for (int c = 0; c < NCACHE; c++)
        for (int i = 0; i < NCODES; i++) {
            uint64_t n = atomic_load(&S->fails[c][cat][i]);
            if (n)
                printf("    %s %s: %s %" PRIu64 "\n", cache_name[c], fail_name[cat],
                       i ? lmc_errname(-(33000 + i)) : "other code", n);
        }
}

static void print_msgs(int kind, const char *title)
{
    unsigned n = atomic_load(&S->nmsg[kind]);
    if (!n)
        return;
    printf("  %s:\n", title);
    for (unsigned j = 0; j < n && j < MSGS_PER_KIND; j++) {
        msg *m = &S->msgs[kind][j];
        printf("    - %s\n", atomic_load(&m->ready) ? m->text
                                                    : "(unfinished: its writer was killed)");
    }
}

static int verdict(const char *what, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int verdict(const char *what, bool ok, const char *fmt, ...)
{
    printf("  %-5s %s", ok ? "ok" : "FAIL", what);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        printf(": ");
        vprintf(fmt, ap);
        va_end(ap);
    }
    printf("\n");
    return ok ? 0 : 1;
}

static int report(double elapsed)
{
    figures *f = &S->fig;
    uint64_t kills = 0;
    for (int r = 0; r < NROLES; r++)
        kills += SF.kills[r];
    printf("\n== lmc-soak: %.1f s ==\n", elapsed);
    printf("kills: %" PRIu64 " (writers %" PRIu64 ", readers %" PRIu64 ", prefix deleter %" PRIu64
           ", sweeper %" PRIu64 "), %.2f per second; %" PRIu64 " processes started; %" PRIu64
           " killed for hanging\n", kills, SF.kills[R_WRITER], SF.kills[R_READER],
           SF.kills[R_PREFIX], SF.kills[R_SWEEPER], elapsed > 0 ? (double)kills / elapsed : 0.0,
           SF.spawns, SF.hang_kills);
    if (SF.fork_failures)
        printf("fork or pipe failed %" PRIu64 " times (retried)\n", SF.fork_failures);
    for (int c = 0; c < NCACHE; c++) {
        uint64_t wf = 0, df = 0;
        for (int i = 0; i < NCODES; i++) {
            wf += S->fails[c][F_WRITE][i];
            df += S->fails[c][F_DELETE][i];
        }
        uint64_t writes = f->sets[c] + f->set_many[c];
        printf("cache %s (%u MiB%s): %" PRIu64 " sets and %" PRIu64 " set_many, %" PRIu64
               " failed (%.2f%%); %" PRIu64 " deletes, %" PRIu64 " failed; %" PRIu64
               " keys read, hit ratio %.3f; %" PRIu64 " scans (%" PRIu64 " entries); %" PRIu64
               " prefix deletes removed %" PRIu64 " entries\n",
               cache_name[c], CFG->map_mib[c], c == CACHE_A ? ", under eviction" : ", the ledger",
               f->sets[c], f->set_many[c], wf, writes ? 100.0 * (double)wf / (double)writes : 0.0,
               f->deletes[c], df, f->reads[c],
               f->reads[c] ? (double)f->hits[c] / (double)f->reads[c] : 0.0, f->scans[c],
               f->scanned[c], f->prefix_calls[c], f->prefix_removed[c]);
    }
    printf("reads by call: %" PRIu64 " views, %" PRIu64 " get_many of %u keys; reads of B that "
           "the ledger says had to hit: %" PRIu64 "\n", f->views, f->get_many, MANY,
           f->must_hit);
    printf("sweeper: %" PRIu64 " passes (highest fill seen %.3f), %" PRIu64 " failed, %" PRIu64
           " retried with a smaller batch, gave up %" PRIu64 " times; expired %" PRIu64
           ", evicted %" PRIu64 ", stale reader slots cleared %" PRIu64 "\n", SF.sweep_passes,
           SF.sweep_fill_max, SF.sweep_failed, SF.sweep_retries, SF.sweep_gave_up,
           SF.sweep_expired, SF.sweep_evicted, SF.sweep_readers_cleared);
    for (int c = 0; c < NCACHE; c++)
        printf("final audit of %s: %" PRIu64 " entries scanned, %" PRIu64 " of %" PRIu64
               " keys found (%" PRIu64 " of the %" PRIu64 " whose last acknowledged write was a "
               "set), entries gauge %" PRIu64 ", fill after the last sweep %.3f\n",
               cache_name[c], AF.scanned[c], AF.present[c],
               (uint64_t)CFG->writers * CFG->keys[c], AF.as_acked[c], AF.expected[c],
               AF.entries_gauge[c], AF.fill_after_sweep[c]);
    if (have_prev[CACHE_A])
        printf("stats of A at the end: %" PRIu64 " sets, %" PRIu64 " map_full, evictions: %"
               PRIu64 " expired, %" PRIu64 " soonest, %" PRIu64 " lru; %" PRIu64
               " reader slots cleared; %" PRIu64 " samples of both caches\n",
               prev_st[CACHE_A].counters.sets, prev_st[CACHE_A].counters.map_full,
               prev_st[CACHE_A].counters.evictions_expired, prev_st[CACHE_A].counters.evictions_soonest,
               prev_st[CACHE_A].counters.evictions_lru, prev_st[CACHE_A].counters.readers_cleared, SF.samples);
    uint64_t wfail = sum_fails(F_WRITE) + sum_fails(F_DELETE) + sum_fails(F_PREFIX);
    if (wfail || sum_fails(F_READ) || sum_fails(F_SWEEP) || sum_fails(F_OPEN) ||
        sum_fails(F_STATS)) {
        printf("failed calls by code:\n");
        for (int cat = 0; cat < NFAIL; cat++)
            print_codes(cat);
    }
    printf("checks:\n");
    int bad = 0;
    bad += verdict("no acknowledged write lost", S->viol[V_LOST] == 0 &&
                   S->viol[V_LEDGER_EVICTED] == 0,
                   "%" PRIu64 " losses in B, in %" PRIu64 " reads during the run and at the end "
                   "that had to hit%s", S->viol[V_LOST], f->must_hit,
                   S->viol[V_LEDGER_EVICTED] ? "; B evicted, so this check is void" : "");
    bad += verdict("no read older than an acknowledged write", S->viol[V_STALE] == 0 &&
                   S->viol[V_RESURRECTED] == 0, "%" PRIu64 " stale, %" PRIu64
                   " back after a prefix delete", S->viol[V_STALE], S->viol[V_RESURRECTED]);
    bad += verdict("no read torn or invented", S->viol[V_TORN] == 0 && S->viol[V_PHANTOM] == 0,
                   "%" PRIu64 " torn, %" PRIu64 " never acknowledged, in %" PRIu64 " keys read",
                   S->viol[V_TORN], S->viol[V_PHANTOM], f->reads[0] + f->reads[1]);
    bad += verdict("expiry as written, nothing served expired", S->viol[V_EXPIRY] == 0,
                   "%" PRIu64, S->viol[V_EXPIRY]);
    bad += verdict("writes that can evict did not fail", wfail == 0 && SF.sweep_failed == 0 &&
                   SF.sweep_gave_up == 0, "%" PRIu64 " writes, deletes and prefix deletes failed; "
                   "%" PRIu64 " sweeper passes failed; the sweeper gave up %" PRIu64 " times",
                   wfail, SF.sweep_failed, SF.sweep_gave_up);
    bad += verdict("reads and opens did not fail", sum_fails(F_READ) == 0 &&
                   sum_fails(F_OPEN) == 0 && sum_fails(F_STATS) == 0,
                   "%" PRIu64 " reads, %" PRIu64 " opens, %" PRIu64 " stats", sum_fails(F_READ),
                   sum_fails(F_OPEN), sum_fails(F_STATS));
    bad += verdict("nothing hung", S->viol[V_HANG] == 0, "%" PRIu64 " hangs (limit %u s)",
                   S->viol[V_HANG], CFG->hang_s);
    bad += verdict("counters never went backwards", S->viol[V_COUNTER] == 0,
                   "%" PRIu64 " samples", SF.samples);
    bad += verdict("no child died on its own", S->viol[V_DIED] == 0, "%" PRIu64,
                   S->viol[V_DIED]);
    uint64_t want = (uint64_t)(CFG->seconds * 10.0 / 3.0);
    bad += verdict("enough kills (1,000 per 300 s)", kills >= want, "%" PRIu64 " (want %" PRIu64
                   ")", kills, want);
    bad += verdict("final audit", S->viol[V_FINAL] == 0, "%" PRIu64 " problems",
                   S->viol[V_FINAL]);
    if (sum_viol() || wfail || sum_fails(F_READ) || sum_fails(F_SWEEP) || sum_fails(F_OPEN)) {
        printf("first messages:\n");
        for (int v = 0; v < NVIOL; v++)
            print_msgs(v, viol_name[v]);
        for (int cat = 0; cat < NFAIL; cat++) {
            char t[64];
            snprintf(t, sizeof t, "failed %s", fail_name[cat]);
            print_msgs(NVIOL + cat, t);
        }
    }
    return bad;
}

/* ------------------------------------------------------------------------ */
/* Command line and main                                                    */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: lmc-soak --sweeper PATH [OPTIONS]\n"
            "\n"
            "Writers, readers, a prefix deleter and lmc-sweep on a small cache under\n"
            "eviction (A) and a ledger cache that never evicts (B), while random\n"
            "children are SIGKILLed; then an audit.  Exit 0 if every check held, 1 if\n"
            "one failed, 2 on a usage or setup error, 3 if the supervisor itself hung.\n"
            "\n"
            "  --seconds N        how long to run (default 300)\n"
            "  --sweeper PATH     the lmc-sweep binary (required)\n"
            "  --map-mib N        size of cache A (default 8; B is 32)\n"
            "  --writers N        writer processes (default 3, at most %u)\n"
            "  --readers N        reader processes (default 2, at most %u)\n"
            "  --keys N           keys per writer in A (default 3000; B gets 400)\n"
            "  --kill-ms N        mean time between kills (default 150)\n"
            "  --hang-seconds N   no progress for this long is a hang (default 10)\n"
            "  --dir DIR          where to make the caches (default $LMC_TEST_BASE or /dev/shm)\n"
            "  --seed N           random seed (default: from the time)\n"
            "  --keep             keep the caches afterwards\n"
            "  --inject KIND      self-test: lose, stale, torn or hang; the run passes only\n"
            "                     if the matching check catches it\n"
            "  -h, --help         this help\n",
            MAXW, MAXR);
}

static unsigned parse_uint(const char *s, unsigned lo, unsigned hi, const char *opt)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "lmc-soak: %s needs a number from %u to %u, not '%s'\n", opt, lo, hi, s);
        exit(2);
    }
    return (unsigned)v;
}

static void parse_args(int argc, char **argv, config *cfg)
{
    enum { O_SECONDS = 256, O_SWEEPER, O_MAP, O_WRITERS, O_READERS, O_KEYS, O_KILL, O_HANG,
           O_DIR, O_SEED, O_KEEP, O_INJECT };
    static const struct option longopts[] = {
        {"seconds", required_argument, NULL, O_SECONDS},
        {"sweeper", required_argument, NULL, O_SWEEPER},
        {"map-mib", required_argument, NULL, O_MAP},
        {"writers", required_argument, NULL, O_WRITERS},
        {"readers", required_argument, NULL, O_READERS},
        {"keys", required_argument, NULL, O_KEYS},
        {"kill-ms", required_argument, NULL, O_KILL},
        {"hang-seconds", required_argument, NULL, O_HANG},
        {"dir", required_argument, NULL, O_DIR},
        {"seed", required_argument, NULL, O_SEED},
        {"keep", no_argument, NULL, O_KEEP},
        {"inject", required_argument, NULL, O_INJECT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->seconds = 300;
    cfg->map_mib[CACHE_A] = 8;
    cfg->map_mib[CACHE_B] = 32;
    cfg->writers = 3;
    cfg->readers = 2;
    cfg->keys[CACHE_A] = 3000;
    cfg->keys[CACHE_B] = 400;
    cfg->kill_ms = 150;
    cfg->hang_s = 10;
    cfg->sweep_interval = "0.1";
    const char *b = getenv("LMC_TEST_BASE");
    cfg->base = b && *b ? b : "/dev/shm";
    cfg->seed = (uint64_t)real_ms() ^ (uint64_t)getpid() << 32;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_SECONDS:
            cfg->seconds = parse_uint(optarg, 1, 86400, "--seconds");
            break;
        case O_SWEEPER:
            cfg->sweeper = optarg;
            break;
        case O_MAP:
            cfg->map_mib[CACHE_A] = parse_uint(optarg, 2, 4096, "--map-mib");
            break;
        case O_WRITERS:
            cfg->writers = parse_uint(optarg, 1, MAXW, "--writers");
            break;
        case O_READERS:
            cfg->readers = parse_uint(optarg, 0, MAXR, "--readers");
            break;
        case O_KEYS:
            cfg->keys[CACHE_A] = parse_uint(optarg, NGROUPS, 99999, "--keys");
            break;
        case O_KILL:
            cfg->kill_ms = parse_uint(optarg, 1, 60000, "--kill-ms");
            break;
        case O_HANG:
            cfg->hang_s = parse_uint(optarg, 1, 3600, "--hang-seconds");
            break;
        case O_DIR:
            cfg->base = optarg;
            break;
        case O_SEED:
            cfg->seed = strtoull(optarg, NULL, 0);
            break;
        case O_KEEP:
            cfg->keep = 1;
            break;
        case O_INJECT: {
            int found = 0;
            for (int i = 1; i < (int)(sizeof inject_name / sizeof inject_name[0]); i++)
                if (strcmp(optarg, inject_name[i]) == 0)
                    cfg->inject = i, found = 1;
            if (!found) {
                fprintf(stderr, "lmc-soak: --inject takes lose, stale, torn or hang, not '%s'\n",
                        optarg);
                exit(2);
            }
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc || !cfg->sweeper) {
        usage(stderr);
        exit(2);
    }
    if (access(cfg->sweeper, X_OK) != 0) {
        fprintf(stderr, "lmc-soak: %s: %s\n", cfg->sweeper, strerror(errno));
        exit(2);
    }
}

static int rm_entry(const char *dir, const char *name)
{
    char p[sizeof cache_path[0] + 32];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p)
        return -1;
    return unlink(p);
}

/* The caches are directories of plain files: remove them. */
static void remove_caches(void)
{
    static const char *const files[] = {"data.mdb", "lock.mdb", "stats", "recency"};
    for (int c = 0; c < NCACHE; c++) {
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
            rm_entry(cache_path[c], files[i]);
        if (rmdir(cache_path[c]) != 0 && errno != ENOENT)
            fprintf(stderr, "lmc-soak: could not remove %s (%s): remove it by hand\n",
                    cache_path[c], strerror(errno));
    }
    rmdir(soak_dir);
}

int main(int argc, char **argv)
{
    static config cfg;
    parse_args(argc, argv, &cfg);
    CFG = &cfg;
    if (cfg.seed == 0)
        cfg.seed = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);

    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED) {
        perror("lmc-soak: mmap");
        return 2;
    }
    S->start_real_ms = real_ms();
    for (int c = 0; c < NCACHE; c++) {
        size_t n = (size_t)cfg.writers * cfg.keys[c] * sizeof(keyst);
        K[c] = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (K[c] == MAP_FAILED) {
            perror("lmc-soak: mmap");
            return 2;
        }
    }

    snprintf(soak_dir, sizeof soak_dir, "%s/lmc-soak-XXXXXX", cfg.base);
    if (!mkdtemp(soak_dir)) {
        fprintf(stderr, "lmc-soak: mkdtemp %s: %s\n", soak_dir, strerror(errno));
        return 2;
    }
    for (int c = 0; c < NCACHE; c++) {
        snprintf(cache_path[c], sizeof cache_path[c], "%s/%c", soak_dir, c == CACHE_A ? 'a' : 'b');
        lmc_options o;
        memset(&o, 0, sizeof o);
        o.map_size = (uint64_t)cfg.map_mib[c] << 20;
        int rc = lmc_open(&SUP[c], cache_path[c], &o);
        if (rc) {
            fprintf(stderr, "lmc-soak: lmc_open %s: %s (%s)\n", cache_path[c], lmc_errname(rc),
                    lmc_errmsg(NULL));
            return 2;
        }
    }

    /* Whatever happens, the supervisor ends: the run, the stop, the audit
     * and some slack. */
    signal(SIGALRM, on_deadline);
    alarm((unsigned)cfg.seconds + 4 * cfg.hang_s + 120);
    signal(SIGPIPE, SIG_IGN);

    printf("lmc-soak: %.0f s, seed %" PRIu64 ", caches in %s\n", cfg.seconds, cfg.seed, soak_dir);
    printf("  A: %u MiB, under eviction (%u writers x %u keys, values to %u bytes, half with "
           "a TTL); B: %u MiB, the ledger (%u keys per writer, never full)\n",
           cfg.map_mib[CACHE_A], cfg.writers, cfg.keys[CACHE_A], VMAX_A, cfg.map_mib[CACHE_B],
           cfg.keys[CACHE_B]);
    printf("  %u writers, %u readers, a prefix deleter, %s --interval %s on A; a SIGKILL every "
           "%u ms on average%s%s\n", cfg.writers, cfg.readers, cfg.sweeper, cfg.sweep_interval,
           cfg.kill_ms, cfg.inject ? "; self-test: injecting " : "",
           cfg.inject ? inject_name[cfg.inject] : "");

    for (unsigned w = 0; w < cfg.writers; w++)
        kids[nkids++] = (child){.role = R_WRITER, .index = w, .out_fd = -1, .err_fd = -1};
    for (unsigned r = 0; r < cfg.readers; r++)
        kids[nkids++] = (child){.role = R_READER, .index = r, .out_fd = -1, .err_fd = -1};
    kids[nkids++] = (child){.role = R_PREFIX, .out_fd = -1, .err_fd = -1};
    kids[nkids++] = (child){.role = R_SWEEPER, .out_fd = -1, .err_fd = -1};
    if (cfg.inject)
        kids[nkids++] = (child){.role = R_SABOTEUR, .out_fd = -1, .err_fd = -1};
    for (unsigned k = 0; k < nkids; k++)
        spawn(k);

    uint64_t r = rng_seed(cfg.seed, 0x59e);
    int64_t t0 = mono_ms(), end = t0 + (int64_t)(cfg.seconds * 1000.0);
    int64_t next_kill = t0 + 1 + rnd(&r, 2 * cfg.kill_ms), next_progress = t0 + 10000;
    int64_t hang_ms = (int64_t)cfg.hang_s * 1000;
    for (;;) {
        int64_t now = mono_ms();
        if (now >= end)
            break;
        struct pollfd pf[2];
        int npf = 0;
        for (unsigned k = 0; k < nkids; k++)
            if (kids[k].role == R_SWEEPER && kids[k].pid > 0) {
                pf[npf++] = (struct pollfd){kids[k].out_fd, POLLIN, 0};
                pf[npf++] = (struct pollfd){kids[k].err_fd, POLLIN, 0};
            }
        int64_t wait = next_kill - now;
        if (wait > 10)
            wait = 10;
        if (wait < 0)
            wait = 0;
        poll(pf, (nfds_t)npf, (int)wait);
        drain_sweeper();
        reap_unexpected(true);
        now = mono_ms();
        if (now >= next_kill) {
            kill_one(&r);
            next_kill = now + 1 + rnd(&r, 2 * cfg.kill_ms);
        }
        sample_stats();
        check_hangs(hang_ms, true);
        /* A fork that failed (the system was out of processes) is retried,
         * so that no role stays empty for the rest of the run. */
        for (unsigned k = 0; k < nkids; k++)
            if (kids[k].pid == 0)
                spawn(k);
        if (now >= next_progress) {
            progress((double)(now - t0) / 1000.0);
            next_progress += cfg.seconds >= 120 ? 30000 : 10000;
        }
    }
    double elapsed = (double)(mono_ms() - t0) / 1000.0;
    stop_all();
    drain_sweeper();
    sample_stats();

    size_t nb = (size_t)cfg.writers * (cfg.keys[CACHE_A] > cfg.keys[CACHE_B] ? cfg.keys[CACHE_A]
                                                                              : cfg.keys[CACHE_B]);
    before *bb = malloc(nb * sizeof *bb);
    if (!bb)
        return 2;
    bool opened[NCACHE];
    for (int c = 0; c < NCACHE; c++)
        opened[c] = audit_reopen(c);
    sample_stats();
    for (int c = 0; c < NCACHE; c++)
        if (opened[c])
            audit_cache(c, bb);
    free(bb);
    for (int c = 0; c < NCACHE; c++)
        if (opened[c])
            audit_after_sweep(c);
    sample_stats();
    alarm(0);

    int bad = report(elapsed);
    for (int c = 0; c < NCACHE; c++)
        lmc_close(SUP[c]);
    if (cfg.keep)
        printf("caches kept in %s\n", soak_dir);
    else
        remove_caches();

    if (cfg.inject) {
        static const int caught_by[] = {0, V_LOST, V_STALE, V_TORN, V_HANG};
        uint64_t n = S->viol[caught_by[cfg.inject]];
        printf("self-test: injected '%s' (%" PRIu64 " times); the check '%s' caught it %" PRIu64
               " times: %s\n", inject_name[cfg.inject], S->fig.sabotage,
               viol_name[caught_by[cfg.inject]], n, n ? "ok" : "FAILED");
        return n && S->fig.sabotage ? 0 : 1;
    }
    printf("result: %s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
