/*
 * recency.h - the shared array of coarse access times behind approximate LRU
 * eviction (recency.c).  Stamping and reading a cell is inline: a hit of an
 * entry without TTL queues a stamp.
 */
#ifndef LMC_RECENCY_H
#define LMC_RECENCY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "format.h"
#include "handle.h"

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

/* How recent time t (lmc__recency_now units, 0 = unknown) is, for
 * comparisons: larger is more recent, 0 is never or unknown. */
static inline uint32_t lmc__recency_score(const lmc__core *k, uint32_t t, int64_t now_ms)
{
    if (t == 0)
        return 0;
    uint32_t age = (lmc__recency_now(k, now_ms) - t) & LMC__REC_TIME_MASK;
    return LMC__REC_TIME_MASK - age;
}

/* How recently skey was read, as lmc__recency_score: 0 also when its cell
 * holds another key's time.  (Writes record their time in the entry's
 * header instead, format.h.) */
static inline uint32_t lmc__recency_of(const lmc__core *k, const MDB_val *skey, int64_t now_ms)
{
    if (!k->recency)
        return 0;
    uint32_t ref = lmc__recency_ref(k, skey);
    uint32_t v = atomic_load_explicit(lmc__recency_cellp(k, ref), memory_order_relaxed);
    if (v == 0 || (v & LMC__REC_TAG_MASK) != ref >> 24)
        return 0;
    return lmc__recency_score(k, v >> LMC__REC_TAG_BITS, now_ms);
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
static inline void lmc__stamp_queue(const lmc__core *k, lmc__rtxn *r, uint32_t ref)
{
    unsigned n = r->nstamps;
    r->stamps[n++] = ref;
    r->nstamps = n;
    if (n == 1)
        r->first_stamp_ms = lmc__coarse_ms();
    else if (n == LMC__STAMP_BATCH || ((n & 7) == 0 && lmc__coarse_ms() - r->first_stamp_ms >= 64))
        lmc__stamp_flush(k, r);
}

static inline void lmc__stamp(const lmc__core *k, lmc__rtxn *r, const MDB_val *skey)
{
    if (k->recency)
        lmc__stamp_queue(k, r, lmc__recency_ref(k, skey));
}

int lmc__recency_open(lmc__core *k, int dirfd, bool create, unsigned mode, const lmc *h);
void lmc__recency_close(lmc__core *k);

#endif /* LMC_RECENCY_H */
