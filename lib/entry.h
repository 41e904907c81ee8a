/*
 * entry.h - storing and removing entries inside a write transaction (entry.c),
 * keeping each entry's expiry row and the byte totals exact: the one place
 * where an entry changes.
 */
#ifndef LMC_ENTRY_H
#define LMC_ENTRY_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "handle.h"

/* State of one write transaction (write.c runs them). */
typedef struct lmc__wctx {
    lmc *h;
    lmc__core *k;
    MDB_txn *txn;
    int64_t now;
    uint64_t version;        /* version given to entries written now */
    int64_t d_key_bytes;     /* change of the key/value byte totals */
    int64_t d_value_bytes;
    int64_t d_rows;          /* change of the number of expiry rows */
    uint64_t counted;        /* bit i: cdelta[i] is counter i's delta */
    uint64_t cdelta[LMC__NCTR]; /* counter deltas, applied after commit; only
                                   those in counted are set */
    int result;              /* returned by the write after a commit */
    const MDB_val *written;  /* stored key of the entry stored, kept by the
                                eviction that may follow the commit */
    MDB_cursor *cur;         /* entries cursor of lookups, or NULL */
    MDB_cursor *rcur;        /* expiry rows cursor of row puts, or NULL */
    unsigned rows_put;       /* expiry rows put so far */
    const void *cur_at;      /* data of the entry cur is positioned on */
} lmc__wctx;

_Static_assert(LMC__NCTR <= 64, "a write's counted counters fit in one word");

/* Count n in counter idx (an LMC__C_*) for write w: added to this process's
 * slot after the commit, or after an abort with an answer.  Only the
 * counters a write counts are looked at then, so they are marked here. */
static inline void lmc__wcount(lmc__wctx *w, unsigned idx, uint64_t n)
{
    uint64_t bit = UINT64_C(1) << idx;
    w->cdelta[idx] = (w->counted & bit ? w->cdelta[idx] : 0) + n;
    w->counted |= bit;
}

/* What write w has counted in counter idx so far. */
static inline uint64_t lmc__wcounted(const lmc__wctx *w, unsigned idx)
{
    return w->counted >> idx & 1 ? w->cdelta[idx] : 0;
}

/* The body of a write transaction: 0 to commit, or a code to abort with. */
typedef int (*lmc__wop)(lmc__wctx *w, void *arg);

/* Store an entry written with m (its expiry time, version, grace and fill
 * time), moving the expiry row of the entry it replaces (old may be NULL
 * when there is none; when it is the entry a lookup positioned w->cur on, it
 * is overwritten through the cursor, which saves a search of the tree).
 * Counting the write is the caller's business. */
int lmc__entry_store(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                     const void *val, size_t vlen, const lmc__emeta *m, const MDB_val *old);

/* Put the expiry row of the entry under skey at the entry's time, its row
 * lag set to 0 (format.h): for a walk of the expiry index that found the old
 * row lagging and removed it. */
int lmc__entry_refile(lmc__wctx *w, const MDB_val *skey);

/* Remove the entry under skey whose stored data is old: through cur if it is
 * not NULL (it must be positioned on the entry), else by key; with its
 * expiry row unless the caller removes that row itself (with_row false: a
 * walk of the expiry index). */
int lmc__entry_remove(lmc__wctx *w, MDB_cursor *cur, const MDB_val *skey, const MDB_val *old,
                      bool with_row);

/* How lmc__entry_remove_range counts what it removes: in no counter, in one
 * counter (an LMC__C_* index), or as evictions (those with a TTL as
 * evictions_soonest, the others as evictions_lru). */
enum { LMC__COUNT_NONE = -1, LMC__COUNT_EVICTIONS = -2 };

/* Remove the entries of range r from the stored key start on (through cur,
 * an entries cursor of w's txn), at most budget of them, counted as count
 * says; *removed grows by their number.  When the budget runs out before the
 * range does, *next gets the first key not visited; otherwise next->set is
 * false. */
int lmc__entry_remove_range(lmc__wctx *w, MDB_cursor *cur, const lmc__range *r,
                            const MDB_val *start, uint64_t budget, int count,
                            uint64_t *removed, lmc__resume *next);

/* What a write transaction finds under a key. */
typedef struct lmc__found {
    MDB_val old;   /* stored data, valid until the main database changes */
    bool exists;   /* something is stored under the stored key */
    bool mine;     /* ... and it belongs to this key (or is malformed) */
    bool live;     /* ... and it is a live, well-formed entry */
    lmc__entry e;  /* parsed, when live */
} lmc__found;

/* Look the key up in w's transaction, through w->cur (opened if needed),
 * which it leaves on the entry so that a store can overwrite it in place. */
int lmc__entry_find(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                    lmc__found *f);

/* Expiry time for a ttl argument (LMC_TTL_KEEP counts as the default here;
 * callers that replace a live entry handle it first); 0 or LMC_EINVAL. */
int lmc__expiry(const lmc *h, int64_t ttl_ms, int64_t now, uint64_t *expires_at);

/* Expiry time of an entry written over f: LMC_TTL_KEEP keeps a live one's,
 * anything else is lmc__expiry's. */
int lmc__entry_expiry(lmc__wctx *w, int64_t ttl, const lmc__found *f, uint64_t *exp);

#endif /* LMC_ENTRY_H */
