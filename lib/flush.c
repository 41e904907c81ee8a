/*
 * flush.c - lmc_flush_prefix and the sweeper's reclaim of flushed entries:
 * every change of the table of flush markers (flushtab.h says how the table
 * works and why it is safe without a reader lock).
 *
 * A flush is one write transaction: it ends the fill leases of the prefix
 * (a value computed from what the flush made stale must not be stored
 * after it, as for a prefix delete) and records the marker, both under the
 * writer lock, so that V, the version every entry committed so far is at
 * most, cannot be overtaken by a commit before the marker is visible.  It
 * costs the same whatever the prefix holds.  When the table has no free
 * slot (and no marker of the same prefix to raise), or the prefix is longer
 * than a slot holds, the flush deletes at once instead, as
 * lmc_delete_prefix does.
 */
#include "fmacros.h"

#include <string.h>

#include "call.h"
#include "error.h"
#include "flush.h"
#include "flushtab.h"
#include "gen.h"
#include "lease.h"
#include "range.h"
#include "txn.h"
#include "write.h"

/* ------------------------------------------------------------------------ */
/* Changing the table: under the writer lock only                           */
/* ------------------------------------------------------------------------ */

/* Test hook: called between the steps of a flush, so that a test can kill
 * the flusher at each of them (NULL outside tests). */
void (*lmc__test_flush_hook)(int step) = NULL;

static void hook(int step)
{
    if (lmc__test_flush_hook)
        lmc__test_flush_hook(step);
}

/* Whether slot m holds the marker of prefix.  Called under the writer lock,
 * where no other process changes a slot: relaxed loads are enough. */
static bool slot_is(const lmc__fmark *m, const void *prefix, size_t plen)
{
    if (atomic_load_explicit(&m->plen, memory_order_relaxed) != plen)
        return false;
    uint64_t words[LMC__FLUSH_PREFIX_MAX / 8];
    for (size_t i = 0; i < (plen + 7) / 8; i++)
        words[i] = atomic_load_explicit(&m->prefix[i], memory_order_relaxed);
    return memcmp(words, prefix, plen) == 0;
}

/* Write a free slot (its bit clear, so no reader looks at it unless it
 * loaded `used` before the slot was retired: the sequence tells that one to
 * look again), then publish it. */
static void slot_write(lmc__flushes *t, unsigned i, const void *prefix, size_t plen,
                       uint64_t version)
{
    lmc__fmark *m = &t->mark[i];
    uint32_t s = atomic_load_explicit(&m->seq, memory_order_relaxed) | 1u;
    atomic_store_explicit(&m->seq, s, memory_order_relaxed);
    hook(3);
    /* Release stores: each orders the odd sequence before it (copy_slot
     * says why). */
    uint64_t words[LMC__FLUSH_PREFIX_MAX / 8];
    memset(words, 0, sizeof words);
    memcpy(words, prefix, plen);
    for (size_t w = 0; w < LMC__FLUSH_PREFIX_MAX / 8; w++)
        atomic_store_explicit(&m->prefix[w], words[w], memory_order_release);
    atomic_store_explicit(&m->plen, (uint32_t)plen, memory_order_release);
    atomic_store_explicit(&m->version, version, memory_order_release);
    atomic_store_explicit(&m->seq, s + 1, memory_order_release);
    atomic_fetch_or(&t->used, 1u << i);
}

typedef struct flush_arg {
    const void *prefix;
    size_t plen;
    lmc__range range;
    bool placed;
    uint64_t leases;
} flush_arg;

static int op_flush(lmc__wctx *w, void *p)
{
    flush_arg *a = p;
    lmc__flushes *t = w->k->flush;
    a->placed = false;
    a->leases = 0;
    int rc = lmc__lease_drop_range(w, &a->range, &a->leases);
    if (rc)
        return rc;
    hook(1);
    /* Every entry committed so far was written by a transaction before this
     * one, whose version is at most this.  This transaction may commit
     * nothing (no lease to end), and the next then has its id: so not
     * w->version itself. */
    uint64_t v = w->version - 1;
    uint32_t used = atomic_load(&t->used);
    for (unsigned i = 0; i < LMC__FLUSH_SLOTS; i++)
        if ((used & (1u << i)) && slot_is(&t->mark[i], a->prefix, a->plen)) {
            /* The same prefix again: only its version moves, and only up. */
            if (atomic_load(&t->mark[i].version) < v)
                atomic_store(&t->mark[i].version, v);
            a->placed = true;
            hook(2);
            return 0;
        }
    for (unsigned i = 0; i < LMC__FLUSH_SLOTS; i++)
        if (!(used & (1u << i))) {
            slot_write(t, i, a->prefix, a->plen, v);
            a->placed = true;
            hook(2);
            return 0;
        }
    return 0; /* full: the caller deletes at once */
}

int lmc_flush_prefix(lmc *c, const void *prefix, size_t plen)
{
    int rc = lmc__call(c);
    if (rc)
        return rc;
    if (!prefix && plen)
        return lmc__err(c, LMC_EINVAL, "prefix is NULL but plen is %zu", plen);
    if (!prefix)
        prefix = ""; /* the copies and compares below never see a NULL */
    if ((rc = lmc__writable(c)))
        return rc;
    lmc__core *k = c->core;
    /* Which fills the prefix covers, the generations cannot tell: every
     * fill in progress is refused (gen.h). */
    lmc__gen_bump_flush(k);
    lmc__count(k, LMC__C_prefix_flushes, 1);
    if (plen > LMC_MAX_KEY)
        return 0; /* no key can start with it */
    flush_arg a;
    memset(&a, 0, sizeof a);
    a.prefix = prefix;
    a.plen = plen;
    lmc__range_prefix(&a.range, prefix, plen);
    if (plen <= LMC__FLUSH_PREFIX_MAX && k->stats_map) {
        unsigned batch = 1;
        rc = lmc__write_deletes(c, op_flush, &a, &batch);
        if (a.leases)
            lmc__lease_wake_all(k);
        if (rc || a.placed)
            return rc;
    }
    /* No room for a marker: delete now, as lmc_delete_prefix does. */
    lmc__count(k, LMC__C_flush_fallbacks, 1);
    lmc__range_del d;
    memset(&d, 0, sizeof d);
    d.ranges = &a.range;
    d.nranges = 1;
    d.batch = LMC__RANGE_BATCH;
    d.count = LMC__C_flushed_keys;
    d.leases = true;
    return lmc__range_delete(c, &d);
}

/* ------------------------------------------------------------------------ */
/* Reclaim                                                                  */
/* ------------------------------------------------------------------------ */

/* Retire the marker of slot i if it is still the flush that was reclaimed:
 * the same prefix, its version not raised since (a flush of the same prefix
 * in between leaves it for the next pass).  In a write transaction that is
 * never committed: it is taken for the writer lock only. */
static int retire(lmc *h, unsigned i, const void *prefix, size_t plen, uint64_t version)
{
    lmc__flushes *t = h->core->flush;
    MDB_txn *txn;
    int rc = lmc__wbegin(h, &txn);
    if (rc)
        return rc;
    lmc__fmark *m = &t->mark[i];
    if ((atomic_load(&t->used) & (1u << i)) && slot_is(m, prefix, plen) &&
        atomic_load(&m->version) == version)
        atomic_fetch_and(&t->used, ~(1u << i));
    lmc__wabort(h, txn);
    return 0;
}

/* The caller's budget sees every entry this reclaim removed, not only those
 * of the marker being reclaimed. */
typedef struct budget {
    bool (*stop)(void *arg, uint64_t removed);
    void *arg;
    uint64_t before;
} budget;

static bool budget_stop(void *arg, uint64_t removed)
{
    budget *b = arg;
    return b->stop && b->stop(b->arg, b->before + removed);
}

int lmc__flush_reclaim(lmc *h, unsigned batch, bool (*stop)(void *arg, uint64_t removed),
                       void *stop_arg, uint64_t *removed, uint64_t *transactions,
                       int *complete)
{
    budget b = {stop, stop_arg, 0};
    lmc__fview v;
    lmc__flush_view(h->core, &v);
    for (unsigned i = 0; i < v.n; i++) {
        if (v.m[i].slot >= LMC__FLUSH_SLOTS)
            continue; /* the stand-in for a damaged table: nothing to reclaim */
        lmc__range r;
        lmc__range_prefix(&r, v.m[i].prefix, v.m[i].plen);
        r.max_version = v.m[i].version;
        lmc__range_del d;
        memset(&d, 0, sizeof d);
        d.ranges = &r;
        d.nranges = 1;
        d.batch = batch;
        d.count = LMC__C_flushed_keys;
        d.stop = budget_stop;
        d.stop_arg = &b;
        int rc = lmc__range_delete(h, &d);
        b.before += d.removed;
        *removed += d.removed;
        *transactions += d.transactions;
        if (rc)
            return rc;
        if (d.pos < d.nranges) {
            *complete = 0; /* a budget ran out: the next pass goes on */
            return 0;
        }
        /* lmc__range_delete returns after its last commit: the marker can
         * go now (flushtab.h says why no reader needs to be waited for). */
        if ((rc = retire(h, v.m[i].slot, v.m[i].prefix, v.m[i].plen, v.m[i].version)))
            return rc;
    }
    return 0;
}
