/*
 * flush.c - lmc_flush_prefix, the copy of the marker table that reads and
 * writes check, and the sweeper's reclaim of flushed entries (flush.h says
 * how the table works and why it is safe without a reader lock).
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

#include <sched.h>
#include <string.h>

#include "call.h"
#include "error.h"
#include "flush.h"
#include "gen.h"
#include "lease.h"
#include "range.h"
#include "txn.h"
#include "write.h"

lmc__flushes lmc__flush_none;

/* ------------------------------------------------------------------------ */
/* Reading the table                                                        */
/* ------------------------------------------------------------------------ */

/* Copy one slot under its sequence lock: false if it was being rewritten. */
static bool copy_slot(const lmc__fmark *m, lmc__fview *v, unsigned slot)
{
    uint32_t s1 = atomic_load_explicit(&m->seq, memory_order_acquire);
    if (s1 & 1)
        return false;
    /* Acquire loads, each paired with the writer's release store of the
     * same word (slot_write): a reader that sees any word of a rewrite sees
     * the odd sequence stored before it in the check below.  (Fences would
     * do the same, but ThreadSanitizer cannot check fences.) */
    size_t plen = atomic_load_explicit(&m->plen, memory_order_acquire);
    uint64_t version = atomic_load_explicit(&m->version, memory_order_acquire);
    uint64_t words[LMC__FLUSH_PREFIX_MAX / 8];
    size_t nw = plen <= LMC__FLUSH_PREFIX_MAX ? (plen + 7) / 8 : 0;
    for (size_t i = 0; i < nw; i++)
        words[i] = atomic_load_explicit(&m->prefix[i], memory_order_acquire);
    if (atomic_load_explicit(&m->seq, memory_order_relaxed) != s1)
        return false;
    if (plen > LMC__FLUSH_PREFIX_MAX)
        return true; /* no writer writes that: a damaged file; nothing to copy */
    unsigned n = v->n;
    v->m[n].slot = slot;
    v->m[n].plen = plen;
    v->m[n].version = version;
    memcpy(v->m[n].prefix, words, plen);
    v->n = n + 1;
    return true;
}

void lmc__flush_copy(const lmc__flushes *t, uint32_t used, lmc__fview *v)
{
    /* A slot whose sequence moved was retired and is being reused: the
     * table has changed under the copy, so copy it again from its word.
     * Only a writer rewriting a slot that was retired in between moves a
     * sequence, and a slot with an odd sequence is never in `used` (a
     * writer killed while writing one left its bit clear), so this ends as
     * soon as the writers pause. */
    for (unsigned tries = 0;; tries++) {
        v->n = 0;
        bool torn = false;
        for (unsigned i = 0; i < LMC__FLUSH_SLOTS && !torn; i++)
            if (used & (1u << i))
                torn = !copy_slot(&t->mark[i], v, i);
        if (!torn)
            return;
        if (tries >= 100000) {
            /* A published slot that stays odd is a damaged stats file (no
             * writer leaves one so): a marker that hides everything keeps
             * every answer a miss rather than hang or serve a flushed
             * value. */
            v->n = 1;
            v->m[0].slot = LMC__FLUSH_SLOTS;
            v->m[0].plen = 0;
            v->m[0].version = UINT64_MAX;
            return;
        }
        sched_yield();
        used = atomic_load_explicit(&t->used, memory_order_acquire);
    }
}

bool lmc__flush_hides_slow(const lmc__fview *v, const lmc__entry *e)
{
    for (unsigned i = 0; i < v->n; i++)
        if (e->version <= v->m[i].version && e->klen >= v->m[i].plen &&
            memcmp(e->key, v->m[i].prefix, v->m[i].plen) == 0)
            return true;
    return false;
}

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
    if (plen <= LMC__FLUSH_PREFIX_MAX && k->flush != &lmc__flush_none) {
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
         * go now (flush.h says why no reader needs to be waited for). */
        if ((rc = retire(h, v.m[i].slot, v.m[i].prefix, v.m[i].plen, v.m[i].version)))
            return rc;
    }
    return 0;
}
