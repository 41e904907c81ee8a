/*
 * internal.h - declarations shared by the lib/ sources and the white-box
 * tests, never installed.  Non-static helpers are named lmc__*; nothing here
 * is exported from the shared library (-fvisibility=hidden), but the tests
 * link the static library and may call these directly.
 */
#ifndef LMC_INTERNAL_H
#define LMC_INTERNAL_H

#include "fmacros.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "lmc.h"

#define LMC__LIKELY(x) __builtin_expect(!!(x), 1)
#define LMC__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LMC__PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ------------------------------------------------------------------------ */
/* On-disk format                                                           */
/* ------------------------------------------------------------------------ */

/* Format of the entries; stored in the meta DB and checked on open. */
#define LMC__FORMAT_VERSION 2u

/*
 * Stored keys.  Entries live in LMDB's main (unnamed) database, next to the
 * records of the named databases "expiry" and "meta" and one key of our own
 * ("lmc:tick", see evict.c).  A named database would cost every read: LMDB
 * 0.9 marks named databases stale whenever a read txn is renewed, so the
 * first lookup of each get would search the main database for the record
 * again (465 instructions, a sixth of a get, measured in bench/RESULTS.md),
 * and every commit would rewrite that record.  Every stored entry key starts
 * with the byte LMC__NS, which no other key of the main database starts
 * with, so entries are one contiguous range and prefixes stay ranges.  It is
 * 0xFF so that the entries come last: LMDB splits a full page at its end
 * only when the new key goes after every key of the tree, which is what
 * keeps pages full when keys arrive in order (with the other keys after the
 * entries, such pages were left half empty: 170 bytes per entry instead of
 * 47).
 *
 * LMDB keys stop at 511 bytes and the expiry index adds 8, so a user key of
 * LMC__KEY_INLINE bytes or more is stored as its first LMC__KEY_INLINE bytes
 * followed by a 16-byte hash of the whole key, and the whole key is kept in
 * the value to confirm a hit.
 */
#define LMC__NS 0xFFu
#define LMC__KEY_INLINE 448u
#define LMC__KEY_HASH 16u
#define LMC__KEY_STORED_LONG (1u + LMC__KEY_INLINE + LMC__KEY_HASH)
#define LMC__EXPKEY_MAX (8u + LMC__KEY_STORED_LONG)

typedef struct lmc__skey {
    MDB_val v;    /* the stored key, in buf */
    int is_long;  /* 1 if the long-key encoding is used */
    unsigned char buf[LMC__KEY_STORED_LONG];
} lmc__skey;

/* Whether a key of the main database is an entry's. */
static inline bool lmc__is_entry_key(const MDB_val *k)
{
    return k->mv_size >= 2 && *(const unsigned char *)k->mv_data == LMC__NS;
}

void lmc__skey_make(lmc__skey *s, const void *key, size_t klen);

/*
 * Value layout: a 24-byte header, then (long keys only) the whole key, then
 * the user's value.  Header fields are host-endian (the cache never leaves
 * the host) and read with memcpy because LMDB only 2-byte-aligns values.
 *   0  u8  format (LMC__ENTRY_FORMAT)
 *   1  u8  flags  (LMC__EF_*)
 *   2  u16 reserved, zero
 *   4  u32 length of the whole key (long keys), else 0
 *   8  u64 expires_at, ms since the Unix epoch, 0 = never
 *  16  u64 version, for compare-and-swap
 */
#define LMC__HDR_SIZE 24u
#define LMC__ENTRY_FORMAT 0xC1u
#define LMC__EF_LONGKEY 0x01u

typedef struct lmc__entry {
    uint64_t expires_at;
    uint64_t version;
    const unsigned char *key; /* the whole user key */
    size_t klen;
    const unsigned char *val;
    size_t vlen;
} lmc__entry;

/* Parse a stored entry; returns 0, or -1 if it is malformed. */
int lmc__entry_parse(const MDB_val *skey, const MDB_val *data, lmc__entry *e);
size_t lmc__entry_size(size_t klen, size_t vlen, int is_long);
void lmc__entry_write(unsigned char *dst, const void *key, size_t klen, int is_long,
                      const void *val, size_t vlen, uint64_t expires_at, uint64_t version);
/* Whole user key of an entry whose stored key is skey. */
int lmc__entry_key_matches(const lmc__entry *e, const void *key, size_t klen);

/* Expiry index key: BE64(expires_at) | stored key. */
size_t lmc__expkey_make(unsigned char *dst, uint64_t expires_at, const MDB_val *skey);
uint64_t lmc__be64_get(const unsigned char *p);

/* ------------------------------------------------------------------------ */
/* Stats file                                                               */
/* ------------------------------------------------------------------------ */

enum {
#define LMC__CTR_ENUM(name, help) LMC__C_##name,
    LMC_COUNTERS(LMC__CTR_ENUM)
#undef LMC__CTR_ENUM
    LMC__NCTR
};

#define LMC__SLOT_CTRS 32u /* room for counters added in later versions */

/* One process's counters.  Only the owner writes ctr[] (relaxed atomic adds,
 * because its threads share the slot); base[] holds the counters the slot had
 * when its owner claimed it, so per-process figures are ctr - base while the
 * totals simply sum ctr over all slots and never go backwards. */
typedef struct lmc__slot {
    _Atomic uint64_t ctr[LMC__SLOT_CTRS];
    uint64_t base[LMC__SLOT_CTRS];
    _Atomic int64_t pid;
    _Atomic int64_t started_ms;
    uint64_t pad[6];
} lmc__slot;

/* What the writers of every process know about the room left in the map
 * (write.c), kept in the stats file's header. */
typedef struct lmc__room {
    _Atomic uint32_t tick;      /* writes, to space out the room checks */
    _Atomic uint32_t near_full; /* few free pages left: every write checks */
    _Atomic uint64_t headroom;  /* free pages the writers evict back to */
} lmc__room;

/* Mode bits requested by the options: file mode and whether the group is
 * trusted. */
typedef struct lmc__perm {
    unsigned file_mode;
    unsigned dir_mode;
    bool group;
} lmc__perm;

/* ------------------------------------------------------------------------ */
/* Handles                                                                  */
/* ------------------------------------------------------------------------ */

/* A thread's reusable read transaction on one core (MDB_NOTLS: the txn
 * object owns the reader slot, so each thread keeps its own and renews it). */
#define LMC__STAMP_BATCH 32u

typedef struct lmc__rtxn {
    MDB_txn *txn;
    struct lmc__core *core;
    pid_t pid;      /* process that created it: never touched by another */
    unsigned gen;   /* core generation it belongs to */
    struct lmc__rtxn *prev, *next;
    /* Recency cells this thread's hits must stamp, written to the shared
     * array in batches (recency.c). */
    unsigned nstamps;
    int64_t first_stamp_ms;
    uint32_t stamps[LMC__STAMP_BATCH];
} lmc__rtxn;

/* The per-process state of one cache, shared by every lmc handle of this
 * process that opened the same directory. */
typedef struct lmc__core {
    /* Hot fields, read on every call. */
    MDB_env *env;
    MDB_dbi dbi_main, dbi_entries, dbi_expiry, dbi_meta; /* entries == main */
    _Atomic unsigned gen;        /* == lmc__fork_gen while valid in this process */
    pthread_key_t tkey;          /* -> lmc__rtxn of the calling thread */
    lmc__slot *slot;             /* this process's stats slot */
    _Atomic uint64_t *gate;      /* writer gate in the stats file, or NULL */
    _Atomic int64_t *byte_totals; /* key and value bytes, in the stats file */
    _Atomic uint32_t *recency;   /* shared access times, see recency.c */
    uint64_t recency_mask;
    int64_t created_ms;
    uint64_t version_base;
    bool rdonly;

    /* Cold fields. */
    char *path;
    dev_t dev;
    ino_t ino;
    int dir_fd;                  /* the cache directory, kept so that a child after
                                    fork reopens this very directory */
    int lock_fd;                 /* lock.mdb, kept open until after mdb_env_close
                                    (env.c says why) */
    int refs;                    /* lmc handles using this core */
    unsigned env_flags;
    lmc__perm perm;              /* permission rules of the open, for reopen */
    uint64_t map_size;
    unsigned psize;
    unsigned max_readers;
    bool on_tmpfs;
    pid_t pid;                   /* process that opened env */
    bool key_live;               /* tkey was created in this process */
    lmc__room *room;             /* writers' view of the room left, shared in the
                                    stats file (or local_room without one) */
    lmc__room local_room;
    lmc__rtxn *rtxns;            /* every thread's read txn, for close */

    int stats_fd;
    unsigned char *stats_map;
    size_t stats_size;
    unsigned nslots;
    unsigned slot_index;         /* 0 = shared overflow slot or none */
    bool stats_fresh;            /* the stats file was (re)created by this open */
    lmc__slot local_slot;        /* used by read-only handles */

    int rec_fd;
    void *rec_map;
    size_t rec_size;

    /* Approximate-LRU hand: where the last LRU window ended (writer-only,
     * protected by LMDB's writer lock). */
    unsigned char lru_hand[LMC__KEY_STORED_LONG];
    size_t lru_hand_len;

    struct lmc__core *next;      /* registry of this process's cores */
} lmc__core;

struct lmc {
    lmc__core *core;
    int64_t default_ttl_ms;
    bool rdonly;
};

/* Global fork generation, bumped in the pthread_atfork child handler. */
extern _Atomic unsigned lmc__fork_gen;
/*
 * The callbacks the calling thread is running, innermost first: one frame,
 * on the stack of the call that runs the callback, per lmc_get_view,
 * lmc_get_many or lmc_scan in progress.  A callback may call another cache
 * (whose callback may call a third), so one "current cache" is not enough:
 * every cache whose callback is still running on this thread holds its read
 * transaction open, and a call on it would renew that transaction or write
 * under it.  Callbacks must return normally (no longjmp out of them), which
 * is what pops their frame.
 */
typedef struct lmc__cb_frame {
    const struct lmc__core *core;
    const struct lmc__cb_frame *outer;
} lmc__cb_frame;

extern _Thread_local const lmc__cb_frame *lmc__tl_callback
    __attribute__((tls_model("initial-exec")));

static inline void lmc__cb_push(lmc__cb_frame *f, const lmc__core *k)
{
    f->core = k;
    f->outer = lmc__tl_callback;
    lmc__tl_callback = f;
}

static inline void lmc__cb_pop(const lmc__cb_frame *f)
{
    lmc__tl_callback = f->outer;
}

int lmc__reopen(lmc *h);
/* LMC_EBUSY with its message, if a callback on k is running on this thread
 * (the slow part of lmc__enter); 0 otherwise. */
int lmc__enter_callback(const lmc *h);

/*
 * Entry check of every call on a handle: reopens the environment in a child
 * after fork (slow path), and refuses, with LMC_EBUSY and a message, calls
 * on a cache whose callback the calling thread is running.  The fast path is
 * three loads and two compares.
 */
static inline int lmc__enter(lmc *h)
{
    lmc__core *k = h->core;
    if (LMC__UNLIKELY(atomic_load_explicit(&k->gen, memory_order_acquire) !=
                      atomic_load_explicit(&lmc__fork_gen, memory_order_relaxed))) {
        int rc = lmc__reopen(h);
        if (rc)
            return rc;
    }
    if (LMC__UNLIKELY(lmc__tl_callback != NULL))
        return lmc__enter_callback(h);
    return 0;
}

static inline void lmc__count(lmc__core *k, unsigned idx, uint64_t n)
{
    atomic_fetch_add_explicit(&k->slot->ctr[idx], n, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Errors (error.c)                                                         */
/* ------------------------------------------------------------------------ */

/* Internal only: a write found the map full; the write loop evicts and
 * retries.  Never returned to users. */
#define LMC__EMAPFULL (-33100)

/* Record a message for (h, this thread) and return code. h may be NULL. */
int lmc__err(const lmc *h, int code, const char *fmt, ...) LMC__PRINTF(3, 4);
/* Map an LMDB result to an lmc code with a message naming the call. */
int lmc__mdb_err(const lmc *h, int mdb_rc, const char *what);
/* Map an errno value to an lmc code with a message. */
int lmc__sys_err(const lmc *h, int err, const char *fmt, ...) LMC__PRINTF(3, 4);
int lmc__code_from_mdb(int mdb_rc);
/* The last message of this thread, whatever handle it was about (tests). */
const char *lmc__errmsg_last(void);

/* ------------------------------------------------------------------------ */
/* Allocation (alloc.c)                                                     */
/* ------------------------------------------------------------------------ */

void *lmc__malloc(size_t n);
void *lmc__calloc(size_t n, size_t size);
void lmc__free(void *p);
char *lmc__strdup(const char *s);
/* Tests: fail the nth allocation from now (1 = the next one); with
 * persistent, every allocation after it fails too.  n = 0 disables. */
void lmc__test_fail_alloc(unsigned long n, bool persistent);
unsigned long lmc__test_alloc_count(void);

/* ------------------------------------------------------------------------ */
/* Clock and hashing (util.c)                                               */
/* ------------------------------------------------------------------------ */

int64_t lmc__now_ms(void);    /* CLOCK_REALTIME, ms */
int64_t lmc__coarse_ms(void); /* CLOCK_REALTIME_COARSE, ms (a few ms old) */
uint64_t lmc__mono_us(void);  /* CLOCK_MONOTONIC, µs: budgets and waits */
/* Tests: replace the clock (NULL restores the real one). */
void lmc__test_set_clock(int64_t (*fn)(void));

uint64_t lmc__hash64(const void *p, size_t n, uint64_t seed);

/* Expiry time for a ttl argument (LMC_TTL_KEEP counts as the default here;
 * callers that replace a live entry handle it first); 0 or LMC_EINVAL. */
int lmc__expiry(const lmc *h, int64_t ttl_ms, int64_t now, uint64_t *expires_at);

/* Validate a key argument; returns 0, LMC_EINVAL or LMC_ETOOBIG with message. */
int lmc__check_key(const lmc *h, const void *key, size_t klen);
/* The same check without a message: 0 or the code, and *why. */
int lmc__key_problem(const void *key, size_t klen, const char **why);

/* Tests: make the child of lmc_verify crash before it reports (verify.c). */
void lmc__test_verify_crash(bool on);

/* ------------------------------------------------------------------------ */
/* Transactions (txn.c)                                                     */
/* ------------------------------------------------------------------------ */

/* The calling thread's read txn, renewed; end it with lmc__rend(). */
int lmc__rbegin(lmc *h, lmc__rtxn **out);
static inline void lmc__rend(lmc__rtxn *r)
{
    mdb_txn_reset(r->txn);
}
/* Release every read txn of a core (close), or forget them (after fork). */
void lmc__rtxn_release_all(lmc__core *k, bool owned);
void lmc__rtxn_destructor(void *p);

int lmc__wbegin(lmc *h, MDB_txn **txn);
/* Commit; MDB_MAP_FULL becomes LMC__EMAPFULL.  The txn is gone either way. */
int lmc__wcommit(lmc *h, MDB_txn *txn);
/* Abort a write txn from lmc__wbegin. */
void lmc__wabort(lmc *h, MDB_txn *txn);

/* ------------------------------------------------------------------------ */
/* Writes (write.c)                                                         */
/* ------------------------------------------------------------------------ */

/* State of one write transaction. */
typedef struct lmc__wctx {
    lmc *h;
    lmc__core *k;
    MDB_txn *txn;
    int64_t now;
    uint64_t version;        /* version given to entries written now */
    int64_t d_key_bytes;     /* change of the key/value byte totals */
    int64_t d_value_bytes;
    uint64_t ctr[LMC__NCTR]; /* counter deltas, applied after commit */
    int result;              /* returned by lmc__write after a commit */
    const MDB_val *stamp;    /* key to stamp in the recency array after commit */
    const MDB_val *written;  /* stored key of the entry stored, kept by the
                                eviction that may follow the commit */
    MDB_cursor *cur;         /* entries cursor of lookups, or NULL */
    const void *cur_at;      /* data of the entry cur is positioned on */
} lmc__wctx;

typedef int (*lmc__wop)(lmc__wctx *w, void *arg);

/* Run op, which stores entries taking need_pages pages of their own (0 for
 * entries that fit in a leaf page), in a write transaction; on a full map
 * wait for readers or evict, and retry.  drop (may be NULL) removes the entry
 * the store replaces, in a transaction of its own: it is the first room
 * made, before other entries are evicted. */
int lmc__write(lmc *h, lmc__wop op, void *arg, uint64_t need_pages, lmc__wop drop,
               void *drop_arg);
/* Run op, which only deletes, at most *batch entries per transaction; on a
 * full map wait for readers or halve *batch, and retry.  It never evicts. */
int lmc__write_deletes(lmc *h, lmc__wop op, void *arg, unsigned *batch);
/* Commit a transaction that only moves LMDB's transaction id on, so that
 * the pages freed by the last one become reusable.  0 or LMC__EMAPFULL. */
int lmc__tick(lmc *h);

/* Store an entry with the given version, removing the expiry row of the
 * entry it replaces (old may be NULL when there is none; when it is the
 * entry a lookup positioned w->cur on, it is overwritten through the cursor,
 * which saves a search of the tree).  Counting the write is the caller's
 * business. */
int lmc__entry_store(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                     const void *val, size_t vlen, uint64_t expires_at, uint64_t version,
                     const MDB_val *old);
/* Remove the entry under skey whose stored data is old, with its expiry row.
 * With cur non-NULL, the entry is removed through that cursor, which must be
 * positioned on it. */
int lmc__entry_remove(lmc__wctx *w, MDB_cursor *cur, const MDB_val *skey, const MDB_val *old);

/* Remove an entry found through the expiry index (the caller deletes the
 * index row itself, through its cursor). */
int lmc__entry_remove_noindex(lmc__wctx *w, const MDB_val *skey, const MDB_val *old);
/* Byte totals of the cache (stats.c): added after each commit. */
void lmc__totals_add(lmc__core *k, int64_t key_bytes, int64_t value_bytes);
/* Recount them with a scan of every entry (a stats file made afresh). */
int lmc__totals_rescan(const lmc *h, lmc__core *k);
/* Entries of the cache: the main database's keys but its own few. */
uint64_t lmc__entries_count(const lmc__core *k, MDB_txn *txn);

/* Pages of its own an entry takes (LMDB's overflow pages, which must be
 * contiguous), 0 if it fits in a leaf page. */
uint64_t lmc__entry_pages(const lmc__core *k, size_t klen, size_t vlen, int is_long);
/* Pages entries may use: the map without the reserve and LMDB's own. */
uint64_t lmc__usable_pages(const lmc__core *k);
/* Pages one entry may use (half of those: write.c says why). */
uint64_t lmc__max_entry_pages(const lmc__core *k);
/* LMC_ETOOBIG, with a message, for an entry that could never be stored. */
int lmc__check_size(lmc *h, size_t klen, size_t vlen, int is_long);

/* ------------------------------------------------------------------------ */
/* Eviction (evict.c)                                                       */
/* ------------------------------------------------------------------------ */

/* Walk the expiry index from the soonest entry: remove expired entries (and,
 * unless only_expired, live ones too) until budget removals. */
int lmc__evict_by_expiry(lmc__wctx *w, bool only_expired, uint64_t budget, uint64_t *removed);
/* Evict about want_pages pages' worth of entries, never the run that holds
 * the stored key protect (may be NULL): the entry a write just stored. */
int lmc__make_room(lmc *h, uint64_t want_pages, const MDB_val *protect);

/* A run: consecutive entries (about three leaf pages), the unit of capacity
 * eviction, scored by its most valuable member (evict.c explains why). */
typedef struct lmc__run {
    size_t first, last; /* offsets of the first and last stored key in the arena */
    uint16_t flen, llen;
    uint32_t count;
    uint8_t cls;        /* 0: holds a malformed entry; 1: every entry has a TTL;
                           2: some entry has none */
    uint64_t score;     /* class 1: latest expiry; class 2: latest access */
} lmc__run;

typedef struct lmc__runs {
    lmc__run *v;
    size_t n, cap;
    unsigned char *arena;
    size_t alen, acap;
} lmc__runs;

void lmc__runs_free(lmc__runs *r);
/* Entries per run for the current size of the cache. */
unsigned lmc__run_len(lmc__core *k, MDB_txn *txn);
/* Append runs of run_len entries read from start (NULL: the first entry), at
 * most max_entries entries; next/next_len get the first key not read (0 at
 * the end). */
int lmc__runs_scan(lmc *h, MDB_txn *txn, const MDB_val *start, uint64_t max_entries,
                   unsigned run_len, lmc__runs *out, unsigned char *next, size_t *next_len);
/* Sort run indices coldest first, or in key order. */
void lmc__runs_order(const lmc__runs *r, size_t *idx, size_t n, bool by_key);

/* Deleting chosen runs, in transactions of at most batch deletions. */
typedef struct lmc__runs_del {
    const lmc__runs *r;
    const size_t *sel;  /* runs to delete, in key order */
    size_t nsel;
    unsigned batch;     /* halved when a transaction finds the map full */
    bool (*stop)(void *arg, uint64_t removed); /* budget check between txns */
    void *stop_arg;
    /* Progress, adopted after each commit. */
    size_t pos;
    bool has_resume;
    unsigned char resume[LMC__KEY_STORED_LONG];
    size_t rlen;
    uint64_t removed, soonest, lru, transactions;
    /* Written by the operation, adopted by lmc__runs_delete. */
    size_t next_pos;
    bool next_has_resume;
    unsigned char next_resume[LMC__KEY_STORED_LONG];
    size_t next_rlen;
    uint64_t next_removed, next_soonest, next_lru;
} lmc__runs_del;

int lmc__op_runs_delete(lmc__wctx *w, void *arg);
int lmc__runs_delete(lmc *h, lmc__runs_del *a);

/* ------------------------------------------------------------------------ */
/* Fill, readers and pinned pages (space.c)                                 */
/* ------------------------------------------------------------------------ */

typedef struct lmc__fill {
    uint64_t total_pages, used_pages, free_pages, last_pgno, last_txnid;
    unsigned psize;
    double fill;
} lmc__fill;
int lmc__fill_get(lmc *h, lmc__fill *f);

/* Reader table summary, from mdb_reader_list.  slots and active count live
 * processes' slots only; stale counts the slots of dead ones; oldest is the
 * txnid of the oldest reader inside a txn, dead or alive, because a dead
 * reader's snapshot pins pages until its slot is cleared. */
typedef struct lmc__readers {
    uint64_t slots, stale, active, oldest;
} lmc__readers;
void lmc__readers_get(lmc__core *k, lmc__readers *r);

/* Pages kept free so that deletes always find the pages they copy first. */
uint64_t lmc__reserve_pages(const lmc__core *k);
/* Pages in use as txn sees them (the trees and the meta pages). */
uint64_t lmc__used_pages(const lmc__core *k, MDB_txn *txn);

/* Why free pages may not be reusable now (space.c explains the kinds). */
typedef struct lmc__space {
    uint64_t total_pages, tail_pages; /* tail: never used, past the high-water mark */
    uint64_t last_txnid;        /* the newest snapshot */
    uint64_t oldest;            /* the oldest snapshot a reader holds (last_txnid if none) */
    uint64_t dead_readers;      /* reader slots of dead processes */
    uint64_t pinned_by_readers; /* pages freed after the oldest snapshot */
    uint64_t pinned_by_last;    /* pages freed by the newest transaction */
} lmc__space;
int lmc__space_get(lmc *h, lmc__space *sp);
/* Sleep until every reader holds a snapshot at least as new as snapshot, or
 * until deadline (lmc__mono_us); false if the deadline came first.  Adds the
 * time slept to *waited_us. */
bool lmc__readers_wait(lmc *h, uint64_t snapshot, uint64_t deadline, uint64_t *waited_us);

/* ------------------------------------------------------------------------ */
/* Recency (recency.c)                                                      */
/* ------------------------------------------------------------------------ */

/*
 * A recency cell is 32 bits: the time of the last access in its top 26 bits
 * (64 ms units since the cache was created, +1 so that 0 means never; it
 * wraps after 49 days, so times are compared as ages modulo 2^26) and a
 * 6-bit tag of the key in the low bits.  Keys share cells; the tag lets a
 * key tell whether the time in its cell is its own: if not, another key was
 * used more recently, and this key counts as unknown, that is coldest.
 * Without the tag a cold key sharing a cell with a recent one looks recent,
 * and since a run of entries is scored by its most recent member, one such
 * collision would make a whole cold run look warm.
 */
#define LMC__REC_TIME_BITS 26u
#define LMC__REC_TIME_MASK ((1u << LMC__REC_TIME_BITS) - 1u)
#define LMC__REC_TAG_BITS 6u
#define LMC__REC_TAG_MASK ((1u << LMC__REC_TAG_BITS) - 1u)

static inline uint32_t lmc__recency_now(const lmc__core *k, int64_t now_ms)
{
    int64_t d = now_ms - k->created_ms;
    if (d < 0)
        d = 0;
    /* 64 ms units, +1 so that 0 means "never seen". */
    return (uint32_t)(((uint64_t)d >> 6) + 1u) & LMC__REC_TIME_MASK;
}

/* The cell of a key and its tag, packed as cell | tag << 24 (at most 2^24
 * cells). */
static inline uint32_t lmc__recency_ref(const lmc__core *k, const MDB_val *skey)
{
    uint64_t h = lmc__hash64(skey->mv_data, skey->mv_size, 0x6c6d63);
    return (uint32_t)(h & k->recency_mask) | (uint32_t)((h >> 58) << 24);
}

static inline _Atomic uint32_t *lmc__recency_cellp(const lmc__core *k, uint32_t ref)
{
    return &k->recency[ref & 0xffffffu];
}

static inline uint32_t lmc__recency_value(uint32_t now, uint32_t ref)
{
    return (now << LMC__REC_TAG_BITS) | (ref >> 24);
}

/* Stamp the access time of skey now, writing only when the stored value is
 * stale, so that a hot key costs one shared-memory write per 64 ms. */
static inline void lmc__recency_touch(const lmc__core *k, const MDB_val *skey, int64_t now_ms)
{
    if (!k->recency)
        return;
    uint32_t ref = lmc__recency_ref(k, skey);
    _Atomic uint32_t *cell = lmc__recency_cellp(k, ref);
    uint32_t v = lmc__recency_value(lmc__recency_now(k, now_ms), ref);
    if (atomic_load_explicit(cell, memory_order_relaxed) != v)
        atomic_store_explicit(cell, v, memory_order_relaxed);
}

/* How recently skey was used, for comparisons: larger is more recent, 0 is
 * never or unknown (its cell holds another key's time). */
static inline uint32_t lmc__recency_of(const lmc__core *k, const MDB_val *skey, int64_t now_ms)
{
    if (!k->recency)
        return 0;
    uint32_t ref = lmc__recency_ref(k, skey);
    uint32_t v = atomic_load_explicit(lmc__recency_cellp(k, ref), memory_order_relaxed);
    if (v == 0 || (v & LMC__REC_TAG_MASK) != ref >> 24)
        return 0;
    uint32_t age = (lmc__recency_now(k, now_ms) - (v >> LMC__REC_TAG_BITS)) & LMC__REC_TIME_MASK;
    return LMC__REC_TIME_MASK - age;
}

/* Write a thread's pending stamps to the shared array. */
void lmc__stamp_flush(const lmc__core *k, lmc__rtxn *r);
/* The same for the calling thread: before it decides what to evict, so that
 * what it just read or wrote counts as recent. */
void lmc__stamp_flush_mine(lmc__core *k);

/*
 * Record that this thread read skey.  The cell is a random line of an array
 * of megabytes: stamping it at once costs a cache (and TLB) miss per get,
 * about 200 ns, a fifth of a get.  So hits queue their cell here and the
 * queue is written after 32 hits, or once at least 64 ms (one recency unit)
 * have passed, with all cells prefetched first so that the misses overlap.
 */
static inline void lmc__stamp(const lmc__core *k, lmc__rtxn *r, const MDB_val *skey)
{
    if (!k->recency)
        return;
    unsigned n = r->nstamps;
    r->stamps[n++] = lmc__recency_ref(k, skey);
    r->nstamps = n;
    if (n == 1)
        r->first_stamp_ms = lmc__coarse_ms();
    else if (n == LMC__STAMP_BATCH || ((n & 7) == 0 && lmc__coarse_ms() - r->first_stamp_ms >= 64))
        lmc__stamp_flush(k, r);
}

/* Stamp skey from a write: through the thread's queue if it has one. */
void lmc__stamp_key(lmc *h, const MDB_val *skey);

int lmc__recency_open(lmc__core *k, int dirfd, bool create, unsigned mode, const lmc *h);
void lmc__recency_close(lmc__core *k);

/* ------------------------------------------------------------------------ */
/* Stats file (stats.c)                                                     */
/* ------------------------------------------------------------------------ */

int lmc__stats_open(lmc__core *k, int dirfd, bool create, unsigned mode, const lmc *h);
/* Claim a slot for this process (after open and in a child after fork). */
void lmc__stats_claim(lmc__core *k);
/* Count the processes other than this one that hold a slot. */
unsigned lmc__stats_other_users(lmc__core *k);
/* Unmap the stats file; with owned, also give up this process's slot. */
void lmc__stats_close(lmc__core *k, bool owned);

/* ------------------------------------------------------------------------ */
/* Files and security (file.c)                                              */
/* ------------------------------------------------------------------------ */

void lmc__perm_from_mode(unsigned mode, lmc__perm *p);
/* Check an existing object for the security rules; 0 or LMC_EPERM. */
int lmc__check_owner(const lmc *h, const char *what, const struct stat *st, const lmc__perm *p,
                     bool want_dir);
/* Open (create if allowed) a file in dirfd with the exact mode, checked. */
int lmc__open_file(const lmc *h, int dirfd, const char *dirpath, const char *name, bool create,
                   bool rdonly, const lmc__perm *p, int *fd_out, bool *created);
/* Give the first size bytes of fd (the file name in dirfd) their storage, so
 * that no page of a mapping of it can SIGBUS later; LMC_ENOSPC when the
 * filesystem has no room.  fresh: nobody else can have the file open yet. */
int lmc__file_reserve(const lmc *h, int dirfd, const char *dirpath, const char *name, int fd,
                      uint64_t size, bool fresh);

#endif /* LMC_INTERNAL_H */
