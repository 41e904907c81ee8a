/*
 * format.h - the on-disk format of the entries (format.c): stored keys, the
 * entry header, expiry rows, key ranges of stored keys, and the key hash.
 *
 * What every get needs (building the stored key, parsing the header,
 * hashing the key for its recency stamp) is inline here, so that a hit makes
 * no call the compiler could have inlined.
 */
#ifndef LMC_FORMAT_H
#define LMC_FORMAT_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "attrs.h"
#include "lmc.h"

/* Format of the entries; stored in the meta database and checked on open.
 * Format 3 keeps the expiry rows in the main database (format 2 had them in
 * a named database "expiry"); format 4 lets a row lag behind its entry's
 * time (the row lag of the header, below); format 5 files the rows after
 * the entries instead of before them (see "Stored keys") and orders those
 * of one millisecond by a row sequence kept in the header. */
#define LMC__FORMAT_VERSION 5u

/*
 * Stored keys.  Entries live in LMDB's main (unnamed) database, next to the
 * record of the named database "meta", one key of our own ("lmc:tick", see
 * write.c), the expiry rows and the fill leases.  A named database would
 * cost every read: LMDB 0.9 marks named databases stale whenever a
 * transaction begins, so
 * the first lookup of each get would search the main database for the
 * record again (465 instructions, a sixth of a get, measured in
 * bench/RESULTS.md), and every commit that changed it would rewrite that
 * record (for the expiry rows: a second path of page copies in every set
 * with a TTL).  Every stored entry key starts with the byte LMC__NS and
 * every expiry row with LMC__NS_ROW, which no other key of the main
 * database starts with, so entries are one contiguous range (and prefixes
 * stay ranges) and so are the rows, ordered by expiry time.  The rows come
 * last (0xFF), because LMDB packs a page only when it splits it for a key
 * that goes after every key of the page (mdb_page_split then leaves the
 * old page full and starts the new one with the new key); any other split
 * cuts the page in the middle.  Rows of one TTL arrive in time order (and
 * those of one millisecond in the order of their row sequence, see "Expiry
 * rows"), so at the end of the tree they go after every row of the last
 * page; in front of the entries (format 4), every new row went before the
 * first entries of its page and every split was a middle one.  Measured on
 * 1,000,000 sets with a TTL (bench/RESULTS.md): 8% fewer tree pages for
 * keys that arrive in order, 1% for keys in random order (whose entry
 * pages dominate), and a set with a TTL 8% fewer instructions.  Entries
 * whose keys arrive in ascending order now split in the middle when the
 * rows follow them in the same page; they still pack where a page holds
 * no row.  The fill leases (LMC__NS_LEASE, 0xFD, below) come before the
 * entries.
 *
 * LMDB keys stop at 511 bytes and an expiry row adds 11, so a user key of
 * LMC__KEY_INLINE bytes or more is stored as its first LMC__KEY_INLINE bytes
 * followed by a 16-byte hash of the whole key, and the whole key is kept in
 * the value to confirm a hit.
 */
#define LMC__NS 0xFEu
#define LMC__NS_ROW 0xFFu
#define LMC__KEY_INLINE 448u
#define LMC__KEY_HASH 16u
#define LMC__KEY_STORED_LONG (1u + LMC__KEY_INLINE + LMC__KEY_HASH)
#define LMC__EXPKEY_MAX (1u + 8u + 2u + LMC__KEY_STORED_LONG)

/* The key of the commit that only moves LMDB's transaction id on (write.c). */
#define LMC__TICK_KEY "lmc:tick"

/* ------------------------------------------------------------------------ */
/* The key hash                                                             */
/* ------------------------------------------------------------------------ */

/* 64x64 -> 128-bit multiply, folded: the mixing step of the hash. */
static inline uint64_t lmc__mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)(r >> 64) ^ (uint64_t)r;
}

/*
 * A fast non-cryptographic 64-bit hash: 16 bytes per step, each folded in
 * with one wide multiply (the construction of wyhash), the tail read as two
 * possibly overlapping words.  About 25 instructions for a 30-byte key,
 * which matters because every get of an entry without TTL hashes its key
 * for the recency array.  Also used, twice with different seeds, for the
 * 16-byte hash of long keys.  Collisions only cost accuracy (recency) or a
 * cache miss (long keys are confirmed against the whole key in the value).
 */
static inline uint64_t lmc__hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL,
                   k2 = 0x8ebc6af09c88c6e3ULL;
    uint64_t h = seed ^ lmc__mum(seed ^ k0, (uint64_t)n ^ k1);
    while (n > 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, 8);
        h = lmc__mum(a ^ k1, b ^ h);
        s += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n > 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        a = x;
        b = y;
    } else if (n > 0) {
        a = ((uint64_t)s[0] << 16) | ((uint64_t)s[n >> 1] << 8) | s[n - 1];
    }
    return lmc__mum(k1 ^ (uint64_t)n, lmc__mum(a ^ k1, b ^ h) ^ k2);
}

/* ------------------------------------------------------------------------ */
/* Stored keys                                                              */
/* ------------------------------------------------------------------------ */

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

/* The stored key of a user key of 1 .. LMC_MAX_KEY bytes. */
static inline void lmc__skey_make(lmc__skey *s, const void *key, size_t klen)
{
    s->buf[0] = LMC__NS;
    s->v.mv_data = s->buf;
    if (LMC__LIKELY(klen < LMC__KEY_INLINE)) {
        memcpy(s->buf + 1, key, klen);
        s->v.mv_size = 1 + klen;
        s->is_long = 0;
        return;
    }
    memcpy(s->buf + 1, key, LMC__KEY_INLINE);
    uint64_t a = lmc__hash64(key, klen, 0x6c6d632d6b657931ULL);
    uint64_t b = lmc__hash64(key, klen, 0x6c6d632d6b657932ULL);
    memcpy(s->buf + 1 + LMC__KEY_INLINE, &a, 8);
    memcpy(s->buf + 1 + LMC__KEY_INLINE + 8, &b, 8);
    s->v.mv_size = LMC__KEY_STORED_LONG;
    s->is_long = 1;
}

/* LMDB's default key order: bytewise, a shorter key first on a tie. */
static inline int lmc__key_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c)
        return c;
    return (al > bl) - (al < bl);
}

/* ------------------------------------------------------------------------ */
/* Entries                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Value layout: a 24-byte header, then (with LMC__EF_EXT) an 8-byte
 * extension, then (long keys only) the whole key, then the user's value.
 * Fields are host-endian (the cache never leaves the host) and read with
 * memcpy because LMDB only 2-byte-aligns values.
 *   0  u8  format (LMC__ENTRY_FORMAT)
 *   1  u8  flags  (LMC__EF_*)
 *   2  u16 row lag: the entry's expiry row is filed this many ms before
 *      the time the entry goes (see "Expiry rows")
 *   4  u16 row sequence: with the row time, where the expiry row sorts
 *      among the rows of the same millisecond (see "Expiry rows")
 *      An entry without TTL has no expiry row: its bytes 2 to 5 hold
 *      instead the time of its last write, in the units of the recency
 *      array (recency.h; the low 16 bits at 2, the high at 4; 0 = not
 *      recorded).  A write is an access, and recording it here, in the
 *      page the write copies anyway, costs nothing, while a stamp in the
 *      recency array is a random line of megabytes: a cache and TLB miss
 *      after every set, about 140 ns, which prefetching did not hide.
 *   6  u16 length of the whole key less 1 (long keys), else 0
 *   8  u64 expires_at, ms since the Unix epoch, 0 = never
 *  16  u64 version, for compare-and-swap
 * The extension, only for entries written through a fill lease (lease.c),
 * so that other entries do not pay its 8 bytes:
 *  24  u32 grace_ms: how long after expires_at the stale value may still be
 *      served while one caller refreshes it (the entry is kept that long)
 *  28  u32 fill_ms: how long its value took to compute, for early refresh
 */
#define LMC__HDR_SIZE 24u
#define LMC__EXT_SIZE 8u
#define LMC__ENTRY_FORMAT 0xC1u
#define LMC__EF_LONGKEY 0x01u
#define LMC__EF_EXT 0x02u

typedef struct lmc__entry {
    uint64_t expires_at;
    uint64_t version;
    uint32_t grace_ms;
    uint32_t fill_ms;
    uint16_t row_lag;
    uint16_t row_seq;
    const unsigned char *key; /* the whole user key */
    size_t klen;
    const unsigned char *val;
    size_t vlen;
} lmc__entry;

/* What an entry is written with, beside its key and value. */
typedef struct lmc__emeta {
    uint64_t expires_at;
    uint64_t version;
    uint32_t grace_ms;
    uint32_t fill_ms;
    uint16_t row_lag; /* set by lmc__entry_store, which files the row */
    uint16_t row_seq; /* (or records the time of the write: no TTL) */
} lmc__emeta;

/* Parse a stored entry; returns 0, or -1 if it is malformed.  Every pointer
 * of *e points into d. */
static inline int lmc__entry_parse(const MDB_val *skey, const MDB_val *d, lmc__entry *e)
{
    const unsigned char *p = d->mv_data;
    if (LMC__UNLIKELY(d->mv_size < LMC__HDR_SIZE || p[0] != LMC__ENTRY_FORMAT))
        return -1;
    uint16_t kl16;
    unsigned flags = p[1];
    memcpy(&e->row_lag, p + 2, 2);
    memcpy(&e->row_seq, p + 4, 2);
    memcpy(&kl16, p + 6, 2);
    size_t fkl;
    memcpy(&e->expires_at, p + 8, 8);
    memcpy(&e->version, p + 16, 8);
    size_t off = LMC__HDR_SIZE;
    e->grace_ms = e->fill_ms = 0;
    if (LMC__UNLIKELY(flags & ~(LMC__EF_LONGKEY | LMC__EF_EXT)))
        return -1;
    if (LMC__UNLIKELY(flags & LMC__EF_EXT)) {
        if (d->mv_size < LMC__HDR_SIZE + LMC__EXT_SIZE)
            return -1;
        memcpy(&e->grace_ms, p + 24, 4);
        memcpy(&e->fill_ms, p + 28, 4);
        off += LMC__EXT_SIZE;
    }
    if (LMC__UNLIKELY(flags & LMC__EF_LONGKEY)) {
        fkl = (size_t)kl16 + 1;
        if (skey->mv_size != LMC__KEY_STORED_LONG || fkl < LMC__KEY_INLINE ||
            fkl > LMC_MAX_KEY || d->mv_size - off < fkl)
            return -1;
        e->key = p + off;
        e->klen = fkl;
    } else {
        if (LMC__UNLIKELY(kl16 != 0 || skey->mv_size < 2 || skey->mv_size > LMC__KEY_INLINE))
            return -1;
        e->key = (const unsigned char *)skey->mv_data + 1;
        e->klen = skey->mv_size - 1;
        fkl = 0;
    }
    e->val = p + off + fkl;
    e->vlen = d->mv_size - off - fkl;
    return 0;
}

/* The time of the last write of entry e (see the layout above), or 0:
 * none recorded, or e has a TTL (its bytes 2 to 5 are its row's). */
static inline uint32_t lmc__entry_written(const lmc__entry *e)
{
    return e->expires_at ? 0 : (uint32_t)e->row_lag | (uint32_t)e->row_seq << 16;
}

/* Record t as the time of the last write of an entry without TTL written
 * with m. */
static inline void lmc__emeta_set_written(lmc__emeta *m, uint32_t t)
{
    m->row_lag = (uint16_t)t;
    m->row_seq = (uint16_t)(t >> 16);
}

/* When an entry may go, and its expiry row's time: its expiry time, and
 * with a grace that much later; 0 for an entry that never expires. */
static inline uint64_t lmc__entry_gone_at(uint64_t expires_at, uint32_t grace_ms)
{
    return expires_at ? expires_at + grace_ms : 0;
}

/* Whether the entry is that of the user key key (long keys share stored
 * keys with every key of the same first bytes and hash). */
static inline bool lmc__entry_key_matches(const lmc__entry *e, const void *key, size_t klen)
{
    return e->klen == klen && memcmp(e->key, key, klen) == 0;
}

/* Whether an entry written with m needs the extension. */
static inline bool lmc__emeta_ext(const lmc__emeta *m)
{
    return m->grace_ms || m->fill_ms;
}

/* Bytes of the stored value of an entry (ext: with the extension). */
static inline size_t lmc__entry_size(size_t klen, size_t vlen, int is_long, bool ext)
{
    return LMC__HDR_SIZE + (ext ? LMC__EXT_SIZE : 0) + (is_long ? klen : 0) + vlen;
}

/* Write an entry into dst, of lmc__entry_size(klen, vlen, is_long,
 * lmc__emeta_ext(m)) bytes. */
void lmc__entry_write(unsigned char *dst, const void *key, size_t klen, int is_long,
                      const void *val, size_t vlen, const lmc__emeta *m);

/* ------------------------------------------------------------------------ */
/* Expiry rows                                                              */
/* ------------------------------------------------------------------------ */

/*
 * An expiry row is a key of the main database with empty data:
 * LMC__NS_ROW | BE64(row time) | BE16(row sequence) | stored key, so that
 * the rows are ordered by time, and those of one millisecond in the order
 * they were filed: the sequence is the low 16 bits of the version of the
 * transaction that filed the row, which grows with every commit of every
 * process (it wraps every 65,536 commits, which costs one row out of order,
 * never a wrong one).  Rows filed in order go after every row of the last
 * page, which LMDB packs (see "Stored keys"); ordered by key within a
 * millisecond, rows of a writer doing 20 sets per millisecond filled their
 * pages to 52% (bench/RESULTS.md).  The row time is the time the entry goes (lmc__entry_gone_at)
 * less the header's row lag, so it is never later than the entry's: every
 * row up to now that is its entry's is an expired entry's, or one whose
 * row lags.  A set with a TTL that replaces an entry going at most
 * LMC__ROW_LAG_MAX ms after the old row's time (a hot key rewritten with
 * the same TTL, a session touched on every request) keeps that row and
 * records the lag: one B-tree update instead of three (the entry, the old
 * row deleted, the new one put).  Rows are still put at the exact time, so
 * they arrive in time order and fill their pages at the end of the range.
 * A walk of the index that finds a lagging row due files it again at its
 * entry's time (evict.c), which rewrites the entry's header; so only
 * entries that stay in their leaf page may lag, and the rewrite never needs
 * pages of its own.
 */
#define LMC__ROW_LAG_MAX 65535u

/* The row time of entry e (0: no TTL, no row). */
static inline uint64_t lmc__entry_row_at(const lmc__entry *e)
{
    uint64_t gone = lmc__entry_gone_at(e->expires_at, e->grace_ms);
    return gone > e->row_lag ? gone - e->row_lag : gone;
}

/* Makes the row of the entry of stored key skey whose row time is at and
 * row sequence seq; returns its length (at most LMC__EXPKEY_MAX). */
size_t lmc__expkey_make(unsigned char *dst, uint64_t at, uint16_t seq, const MDB_val *skey);
/* The row time, row sequence and stored key of a row's key (skey points
 * into it); -1 if it is not a row lmc writes. */
int lmc__expkey_parse(const MDB_val *row, uint64_t *at, uint16_t *seq, MDB_val *skey);

/* Whether a key of the main database is an expiry row's. */
static inline bool lmc__is_row_key(const MDB_val *k)
{
    return k->mv_size > 11 && *(const unsigned char *)k->mv_data == LMC__NS_ROW;
}

/* Where the rows start: every row sorts at or after this key. */
static inline MDB_val lmc__rows_start(void)
{
    static const unsigned char first = LMC__NS_ROW;
    return (MDB_val){1, (void *)(uintptr_t)&first};
}

/* Where the entries start: every entry sorts at or after this key, and
 * after the entries come the rows. */
static inline MDB_val lmc__entries_start(void)
{
    static const unsigned char first = LMC__NS;
    return (MDB_val){1, (void *)(uintptr_t)&first};
}

/* ------------------------------------------------------------------------ */
/* Fill leases                                                              */
/* ------------------------------------------------------------------------ */

/*
 * The fill lease of a key (lease.c) is a record of the main database under
 * LMC__NS_LEASE | the key's stored key, so that the leases of a prefix are a
 * range too, apart from the entries (never seen by reads, scans or
 * eviction) and before the rows (never counted as entries).  Its data, 56
 * bytes, host-endian, read with memcpy:
 */
#define LMC__NS_LEASE 0xFDu
#define LMC__LEASE_KEY_MAX (1u + LMC__KEY_STORED_LONG)
#define LMC__LEASE_MAGIC 0x4c43454cu /* "LECL" */

typedef struct lmc__lrec {
    uint32_t magic;
    uint32_t slot;           /* the holder's stats slot (0: shared or none) */
    int64_t pid;             /* the holder's process */
    int64_t slot_started_ms; /* when it claimed the slot: tells a reused pid */
    int64_t granted_ms;      /* wall clock, as expiry times */
    int64_t deadline_ms;     /* after this, anyone may take the lease over */
    uint64_t token;          /* the version of the granting transaction */
    uint64_t entry_version;  /* of the entry when granted, 0 if none */
} lmc__lrec;

_Static_assert(sizeof(lmc__lrec) == 56, "a lease record is 56 bytes, without padding");

/* Whether a key of the main database is a lease's. */
static inline bool lmc__is_lease_key(const MDB_val *k)
{
    return k->mv_size >= 3 && *(const unsigned char *)k->mv_data == LMC__NS_LEASE;
}

/* The lease key of a stored key, into dst (LMC__LEASE_KEY_MAX bytes). */
static inline MDB_val lmc__lease_key(unsigned char *dst, const MDB_val *skey)
{
    dst[0] = LMC__NS_LEASE;
    memcpy(dst + 1, skey->mv_data, skey->mv_size);
    return (MDB_val){1 + skey->mv_size, dst};
}

/* A lease record's data; -1 if it is not one lmc writes. */
static inline int lmc__lrec_parse(const MDB_val *key, const MDB_val *d, lmc__lrec *r)
{
    if (!lmc__is_lease_key(key) || key->mv_size > LMC__LEASE_KEY_MAX ||
        ((const unsigned char *)key->mv_data)[1] != LMC__NS || d->mv_size != sizeof *r)
        return -1;
    memcpy(r, d->mv_data, sizeof *r);
    return r->magic == LMC__LEASE_MAGIC && r->token != 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Ranges of stored keys and where a walk resumes                           */
/* ------------------------------------------------------------------------ */

/*
 * The entries of a range: the stored keys from `from` on that start with
 * `from` (a prefix range), or that are at most `to` (a closed range).  A
 * prefix longer than the part of long keys that stored keys keep cannot be
 * checked on the stored key alone: whole_prefix then names the user's prefix,
 * checked against the whole key kept in the value.
 */
typedef struct lmc__range {
    MDB_val from;
    MDB_val to;                    /* mv_data NULL: a prefix range */
    const unsigned char *whole_prefix;
    size_t whole_len;
    uint64_t max_version;          /* only entries up to this version belong to
                                      it (a flush's, flush.c); UINT64_MAX: all */
    unsigned char buf[1 + LMC__KEY_INLINE]; /* from of a prefix range */
} lmc__range;

/* The range of every entry whose user key starts with prefix (plen may be
 * 0: every entry). */
void lmc__range_prefix(lmc__range *r, const void *prefix, size_t plen);
/* The range of the entries from `first` to `last`, both stored keys, which
 * must stay valid while the range is used. */
void lmc__range_closed(lmc__range *r, const MDB_val *first, const MDB_val *last);

/* Whether a key met walking forward from the range's start is still inside
 * it: false ends the walk. */
static inline bool lmc__range_within(const lmc__range *r, const MDB_val *key)
{
    if (!lmc__is_entry_key(key))
        return false;
    if (r->to.mv_data)
        return lmc__key_cmp(key->mv_data, key->mv_size, r->to.mv_data, r->to.mv_size) <= 0;
    return key->mv_size >= r->from.mv_size &&
           memcmp(key->mv_data, r->from.mv_data, r->from.mv_size) == 0;
}

/* Whether an entry inside the range belongs to it: for a prefix longer than
 * stored keys keep, whether its whole key starts with the prefix; for the
 * range of a flush, whether it was written before the flush. */
static inline bool lmc__range_holds(const lmc__range *r, const MDB_val *key, const MDB_val *d)
{
    if (!r->whole_prefix && r->max_version == UINT64_MAX)
        return true;
    lmc__entry e;
    if (lmc__entry_parse(key, d, &e) != 0 || e.version > r->max_version)
        return false;
    return !r->whole_prefix ||
           (e.klen >= r->whole_len && memcmp(e.key, r->whole_prefix, r->whole_len) == 0);
}

/* Where a walk of stored keys goes on: a copy of the first key not yet
 * visited, kept between transactions. */
typedef struct lmc__resume {
    bool set;
    size_t len;
    unsigned char key[LMC__EXPKEY_MAX]; /* a stored key or an expiry row */
} lmc__resume;

static inline void lmc__resume_at(lmc__resume *r, const MDB_val *key)
{
    memcpy(r->key, key->mv_data, key->mv_size);
    r->len = key->mv_size;
    r->set = true;
}

/* The key a walk starts from: where it stopped, else the range's start. */
static inline MDB_val lmc__resume_key(const lmc__resume *r, const lmc__range *range)
{
    if (r->set)
        return (MDB_val){r->len, (void *)(uintptr_t)r->key};
    return range->from;
}

#endif /* LMC_FORMAT_H */
