/*
 * gen.h - invalidation generations: the table of counters, in the stats
 * file, that closes the fill race of a cache kept in front of another store
 * (the L1 of a Redis, say).
 *
 * A caller that misses reads a token (lmc_gen_read), reads the value from the
 * store behind, and stores it with lmc_set_if_gen, which refuses if the key
 * was invalidated in between.  Every lmc_delete bumps the counter of its
 * key's bucket (one of LMC__GEN_BUCKETS, chosen by a hash of the key), and
 * every lmc_delete_prefix, lmc_flush_prefix and lmc_clear bumps the flush
 * counter, which every token includes.  A token is the flush counter in its
 * high 32 bits and the bucket's counter in the low 32: it changes whenever
 * either is bumped.
 * Keys that share a bucket share their counter, so an invalidation of one
 * refuses the concurrent fills of the others (a fill not cached, never a
 * stale value kept); with 256 buckets, and a fill that takes as long as a
 * round trip to Redis, that is rare.  A 32-bit counter would have to wrap
 * around exactly (2^32 invalidations of one bucket) during one fill to be
 * fooled.
 *
 * Why a bump before the delete is enough (the rule every invalidation
 * follows): the delete bumps first, then runs its write transaction; the
 * fill compares inside its write transaction, under LMDB's writer lock.
 * If the fill's compare sees the old counter, it took the writer lock before
 * the delete did (otherwise the unlock that let the fill in would order the
 * bump before the compare), so its value is committed before the delete's
 * transaction, which then removes it.  If it sees the new counter it stores
 * nothing.  Either way no value read before the invalidation is left.  Both
 * the bump and the compare are sequentially consistent atomics on the
 * shared map.  A process killed between its bump and its delete only costs
 * fills.
 *
 * The table sits in the free part of the stats file's 4 KiB header
 * (slots.c), which older versions leave zero and never read.
 */
#ifndef LMC_GEN_H
#define LMC_GEN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "handle.h"

#define LMC__GEN_BUCKETS 256u

typedef struct lmc__gens {
    _Atomic uint32_t flush; /* bumped by every prefix delete and clear */
    uint32_t pad[15];       /* a cache line of its own */
    _Atomic uint32_t key[LMC__GEN_BUCKETS];
} lmc__gens;

_Static_assert(sizeof(lmc__gens) == 64 + 4 * LMC__GEN_BUCKETS, "the table has no holes");

static inline unsigned lmc__gen_bucket(const void *key, size_t klen)
{
    return (unsigned)(lmc__hash64(key, klen, 0x6c6d632d67656e31ULL) >> 56) &
           (LMC__GEN_BUCKETS - 1);
}

/* The token of a key now.  k->gens is NULL only without a stats file (a
 * read-only handle on a cache never opened for writing): then nothing can
 * have been invalidated, and 0 is the token. */
static inline uint64_t lmc__gen_token(const lmc__core *k, unsigned bucket)
{
    if (!k->gens)
        return 0;
    uint64_t f = atomic_load(&k->gens->flush);
    return f << 32 | atomic_load(&k->gens->key[bucket]);
}

static inline void lmc__gen_bump_key(lmc__core *k, const void *key, size_t klen)
{
    if (k->gens)
        atomic_fetch_add(&k->gens->key[lmc__gen_bucket(key, klen)], 1);
}

static inline void lmc__gen_bump_flush(lmc__core *k)
{
    if (k->gens)
        atomic_fetch_add(&k->gens->flush, 1);
}

#endif /* LMC_GEN_H */
