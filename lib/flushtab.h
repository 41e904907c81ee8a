/*
 * flushtab.h - the table of flush markers, in the stats file, that makes
 * every entry under a prefix invisible at once (flushtab.c), and what the
 * reads and writes check against it.  lmc_flush_prefix and the sweeper's
 * reclaim, which change it, are flush.c's.
 *
 * lmc_flush_prefix does not delete: it records a marker {prefix, V}, where V
 * is at least the version of every entry committed before the call (entries
 * carry version_base + the id of the transaction that wrote them, which only
 * grows).  Every read and every write treats an entry under a marker's
 * prefix with a version up to V as absent; entries written after the flush
 * have a higher version and are seen.  The sweeper deletes the flushed
 * entries later, in bounded transactions, and then retires the marker.
 *
 * The table is LMC__FLUSH_SLOTS slots and one word, `used`, with a bit per
 * slot that holds a marker.  Every change of it is made under LMDB's writer
 * lock (inside a write transaction), so writers never race each other, and
 * the lock is robust: a process killed while it holds it leaves the table as
 * its last completed store left it.  Readers take no lock:
 *   - A slot is only written while its bit is clear, under a sequence lock
 *     of its own (odd while being written), and its bit is set after it is
 *     complete.  A reader copies the slots whose bits it saw and retries if
 *     a slot's sequence moved: the slot was retired and reused under it.  A
 *     writer killed in the middle of a slot leaves its sequence odd, but the
 *     slot's bit clear, so no reader waits for it; the next writer of that
 *     slot writes it whole.
 *   - A marker's version only grows in place (the same prefix flushed
 *     again), one atomic store: a reader sees the old or the new flush, both
 *     of which were made before the read returned.
 * When no marker is pending, a read costs one acquire load of `used`.
 *
 * Why a marker can be retired as soon as the sweeper's last delete has
 * committed, without waiting for readers: every read loads the table before
 * it renews its read transaction.  A reader that no longer sees the marker
 * loaded the table after the retire, which came after that commit, so the
 * snapshot it then takes has the deletes (the retire is a release store, the
 * load an acquire, and the commit precedes the retire in the sweeper's
 * thread).  A reader that loaded the table before the retire has the marker
 * in its copy, whatever snapshot it reads.  Writers check the table inside
 * their write transaction, which the sweeper's deletes either precede
 * entirely or follow.
 *
 * The table sits in the free part of the stats file's 4 KiB header (slots.c),
 * after the generations; files made before it hold zeros there, an empty
 * table.  A process running an lmc version older than this one does not
 * read it: do not mix versions on one cache while flushes are pending.
 */
#ifndef LMC_FLUSHTAB_H
#define LMC_FLUSHTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "attrs.h"
#include "format.h"
#include "handle.h"
#include "txn.h"

#define LMC__FLUSH_SLOTS 8u
#define LMC__FLUSH_PREFIX_MAX 64u

typedef struct lmc__fmark {
    _Atomic uint32_t seq;     /* odd while the slot is being written */
    _Atomic uint32_t plen;
    _Atomic uint64_t version; /* entries of the prefix up to this version are gone */
    _Atomic uint64_t prefix[LMC__FLUSH_PREFIX_MAX / 8];
} lmc__fmark;

typedef struct lmc__flushes {
    _Atomic uint32_t used; /* bit i: slot i holds a marker */
    uint32_t pad[15];      /* a cache line of its own: readers load it on every call */
    lmc__fmark mark[LMC__FLUSH_SLOTS];
} lmc__flushes;

_Static_assert(sizeof(lmc__fmark) == 80, "a marker is 80 bytes, without padding");
_Static_assert(sizeof(lmc__flushes) == 64 + 80 * LMC__FLUSH_SLOTS, "the table has no holes");
_Static_assert(LMC__FLUSH_SLOTS <= 32, "used has a bit per slot");

/* A caller's copy of the markers pending when it looked. */
typedef struct lmc__fview {
    unsigned n;
    struct {
        unsigned slot;
        size_t plen;
        uint64_t version;
        unsigned char prefix[LMC__FLUSH_PREFIX_MAX];
    } m[LMC__FLUSH_SLOTS];
} lmc__fview;

/* The empty table of a core without a stats file, so that k->flush is never
 * NULL and the readers' check is one load. */
extern lmc__flushes lmc__flush_none;

/* Copy the markers of the slots in used (flushtab.c). */
void lmc__flush_copy(const lmc__flushes *t, uint32_t used, lmc__fview *v);
/* Whether an entry is under one of v's markers (v->n > 0). */
bool lmc__flush_hides_slow(const lmc__fview *v, const lmc__entry *e);

/* The markers pending now.  A read calls it before it renews its read
 * transaction (the top of this file says why); a write inside its write
 * transaction. */
static inline void lmc__flush_view(const lmc__core *k, lmc__fview *v)
{
    uint32_t used = atomic_load_explicit(&k->flush->used, memory_order_acquire);
    v->n = 0;
    if (LMC__UNLIKELY(used))
        lmc__flush_copy(k->flush, used, v);
}

/* A read's snapshot: the markers pending now into v, then the calling
 * thread's read txn renewed (end it with lmc__rend).  Every read begins
 * here, so that the order the top of this file relies on (the table read
 * before the snapshot) is kept in one place. */
static inline int lmc__rbegin_flushed(lmc *h, lmc__fview *v, lmc__rtxn **r)
{
    lmc__flush_view(h->core, v);
    return lmc__rbegin(h, r);
}

/* Whether the entry e was flushed, as v saw the table. */
static inline bool lmc__flush_hides(const lmc__fview *v, const lmc__entry *e)
{
    return LMC__UNLIKELY(v->n) && lmc__flush_hides_slow(v, e);
}

/* Markers pending now (a gauge). */
static inline unsigned lmc__flush_pending(const lmc__core *k)
{
    return (unsigned)__builtin_popcount(atomic_load(&k->flush->used));
}

#endif /* LMC_FLUSHTAB_H */
