/*
 * range.c - deleting ranges of entries, in transactions of at most a batch
 * of deletions each, so that writers are never starved and readers never
 * blocked.  Each transaction records where the next one resumes (the first
 * key it did not visit), and the driver adopts that only after the commit:
 * a transaction the write loop retries (a full map) starts again from the
 * same place.  Entries written under a range while it is being deleted may
 * or may not go; those that were there when the call began are gone when it
 * returns.  Prefix deletes and clears also end the fill leases of their
 * ranges (lease.h says why).
 */
#include "fmacros.h"

#include <string.h>

#include "error.h"
#include "gen.h"
#include "lease.h"
#include "range.h"
#include "write.h"

static int op_range(lmc__wctx *w, void *p)
{
    lmc__range_del *d = p;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->k->dbi_main, &cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open");
    size_t pos = d->pos;
    lmc__resume at = d->resume, next;
    uint64_t removed = 0, leases = 0;
    while (pos < d->nranges && removed < d->batch) {
        const lmc__range *r = &d->ranges[pos];
        /* A range's leases go with the transaction that starts it: every
         * lease granted before the call is gone when it returns.  There are
         * few of them (one per value being computed), so they do not count
         * against the batch. */
        if (d->leases && !at.set && (rc = lmc__lease_drop_range(w, r, &leases)))
            break;
        MDB_val start = lmc__resume_key(&at, r);
        rc = lmc__entry_remove_range(w, cur, r, &start, d->batch - removed, d->count, &removed,
                                     &next);
        if (rc)
            break;
        if (next.set) {
            at = next; /* the batch is spent: the next transaction goes on here */
        } else {
            pos++;
            at.set = false;
        }
    }
    mdb_cursor_close(cur);
    if (rc)
        return rc;
    d->next_pos = pos;
    d->next_resume = at;
    d->next_removed = removed;
    d->next_leases = leases;
    d->next_soonest = lmc__wcounted(w, LMC__C_evictions_soonest);
    d->next_lru = lmc__wcounted(w, LMC__C_evictions_lru);
    return 0;
}

int lmc__range_delete(lmc *h, lmc__range_del *d)
{
    while (d->pos < d->nranges) {
        d->next_removed = d->next_soonest = d->next_lru = d->next_leases = 0;
        int rc = lmc__write_deletes(h, op_range, d, &d->batch);
        if (rc)
            return rc;
        if (d->next_leases)
            lmc__lease_wake_all(h->core);
        d->removed += d->next_removed;
        d->soonest += d->next_soonest;
        d->lru += d->next_lru;
        d->transactions++;
        d->pos = d->next_pos;
        d->resume = d->next_resume;
        if (d->stop && d->stop(d->stop_arg, d->removed))
            break;
    }
    return 0;
}

int lmc__range_clear(lmc *h)
{
    /* Entries share LMDB's main database with the records of the named
     * databases, so there is no tree to drop: a clear deletes the range of
     * every entry, like a prefix delete (which also keeps the expiry index
     * exact, and never holds the writer lock for long).  The flush
     * generation goes first, so that no fill of a value read before the
     * clear is stored after it (gen.h). */
    lmc__gen_bump_flush(h->core);
    lmc__count(h->core, LMC__C_clears, 1);
    lmc__range all;
    lmc__range_prefix(&all, "", 0);
    lmc__range_del d;
    memset(&d, 0, sizeof d);
    d.ranges = &all;
    d.nranges = 1;
    d.batch = LMC__RANGE_BATCH;
    d.count = LMC__COUNT_NONE;
    d.leases = true;
    return lmc__range_delete(h, &d);
}
