/*
 * sweep.c - one pass of the sweeper (lmc_sweep).
 *
 * A pass clears reader slots left by dead processes (a dead reader's
 * snapshot pins every page freed after it, and the file only grows), removes
 * expired entries through the expiry index and the fill leases that can no
 * longer be filled, the entries that lmc_flush_prefix made invisible (and
 * then their markers, flush.c), and, when fill is above the high watermark,
 * evicts down to the low one.  Capacity eviction reads the whole cache as
 * runs of consecutive entries (evict.c says why runs), in short read
 * transactions, picks the runs to drop by the policy (entries with TTL
 * first, soonest to expire first; then entries without TTL, coldest first)
 * until their pages cover the excess, and deletes them in key order.  Every write transaction
 * holds at most `batch` deletions, halved when a transaction finds the map
 * full, so workers wait microseconds, not seconds, for the writer lock.
 * Time and key budgets bound the pass.
 */
#include "fmacros.h"

#include <string.h>
#include <time.h>

#include "alloc.h"
#include "call.h"
#include "clock.h"
#include "error.h"
#include "evict.h"
#include "flush.h"
#include "lease.h"
#include "range.h"
#include "recency.h"
#include "space.h"
#include "txn.h"
#include "write.h"

#define LMC__SWEEP_DEFAULT_BATCH 1000u
#define LMC__SWEEP_MAX_BATCH 100000u
/* Entries read per read transaction when listing runs. */
#define LMC__SWEEP_SCAN_CHUNK 65536u
/* Eviction rounds of one pass: a round's estimate of the pages a run frees
 * is refined by measuring the fill again. */
#define LMC__SWEEP_EVICT_ROUNDS 8

typedef struct sweep_ctx {
    lmc_sweep_options o;
    uint64_t t0;
    uint64_t deleted; /* before the current step */
} sweep_ctx;

static bool over_budget(const sweep_ctx *s, uint64_t more)
{
    if (s->o.max_keys && s->deleted + more >= s->o.max_keys)
        return true;
    /* Compared in whole ms: max_time_ms * 1000 would wrap for budgets above
     * UINT64_MAX / 1000 (2^61 ms became 0).  For integers, floor(us / 1000)
     * >= ms exactly when us >= ms * 1000, so nothing else changes. */
    if (s->o.max_time_ms && (lmc__mono_us() - s->t0) / 1000u >= s->o.max_time_ms)
        return true;
    return false;
}

static bool runs_stop(void *arg, uint64_t removed)
{
    return over_budget(arg, removed);
}

typedef struct expire_arg {
    unsigned batch;
    uint64_t removed, refiled;
    bool more;
} expire_arg;

static int op_expire(lmc__wctx *w, void *p)
{
    expire_arg *a = p;
    return lmc__evict_expired(w, a->batch, &a->removed, &a->refiled, &a->more);
}

/* Read every entry as runs, in read transactions of a bounded size. */
static int list_runs(lmc *c, lmc__runs *r, uint64_t *entries, uint64_t *entry_pages)
{
    lmc__core *k = c->core;
    lmc__rtxn *rt;
    int rc = lmc__rbegin(c, &rt);
    if (rc)
        return rc;
    unsigned len = lmc__run_len(k, rt->txn);
    lmc__entry_pages_share(k, rt->txn, entries, entry_pages);
    lmc__resume at;
    at.set = false;
    for (;;) {
        rc = lmc__runs_scan(c, rt->txn, &at, LMC__SWEEP_SCAN_CHUNK, len, r, &at);
        lmc__rend(rt);
        if (rc || !at.set)
            return rc;
        if ((rc = lmc__rbegin(c, &rt)))
            return rc;
    }
}

/* One eviction round: choose runs worth the excess pages and delete them. */
static int evict_round(lmc *c, sweep_ctx *s, const lmc__fill *f, lmc_sweep_result *res,
                       uint64_t *removed)
{
    lmc__runs r;
    memset(&r, 0, sizeof r);
    uint64_t entries, entry_pages;
    *removed = 0;
    int rc = list_runs(c, &r, &entries, &entry_pages);
    size_t *idx = NULL;
    lmc__range *ranges = NULL;
    if (rc || r.n == 0 || entries == 0)
        goto out;
    if (!(idx = lmc__malloc(r.n * sizeof *idx))) {
        rc = lmc__err(c, LMC_ENOMEM, "out of memory choosing entries to evict");
        goto out;
    }
    for (size_t i = 0; i < r.n; i++)
        idx[i] = i;
    lmc__runs_order(&r, idx, r.n, false);
    /* Take the coldest runs until their pages cover the excess over the low
     * watermark (with a tenth more, since a run's edge pages stay partly
     * used), within the key budget. */
    double per_entry = (double)entry_pages / (double)entries;
    double want = (f->fill - s->o.low_watermark) * (double)f->total_pages * 1.1 + 2;
    double got = 0;
    uint64_t keys = 0;
    size_t nsel = 0;
    while (nsel < r.n && got < want) {
        const lmc__run *x = &r.v[idx[nsel]];
        if (s->o.max_keys && s->deleted + keys + x->count > s->o.max_keys && nsel > 0)
            break;
        got += per_entry * x->count;
        keys += x->count;
        nsel++;
    }
    lmc__runs_order(&r, idx, nsel, true);
    if (!(ranges = lmc__malloc((nsel ? nsel : 1) * sizeof *ranges))) {
        rc = lmc__err(c, LMC_ENOMEM, "out of memory choosing entries to evict");
        goto out;
    }
    for (size_t i = 0; i < nsel; i++)
        lmc__run_range(&r, &r.v[idx[i]], &ranges[i]);
    lmc__range_del d;
    memset(&d, 0, sizeof d);
    d.ranges = ranges;
    d.nranges = nsel;
    d.batch = s->o.batch;
    d.count = LMC__COUNT_EVICTIONS;
    d.stop = runs_stop;
    d.stop_arg = s;
    rc = lmc__range_delete(c, &d);
    res->evicted_soonest += d.soonest;
    res->evicted_lru += d.lru;
    res->transactions += d.transactions;
    *removed = d.removed;
out:
    lmc__free(ranges);
    lmc__free(idx);
    lmc__runs_free(&r);
    return rc;
}

int lmc_sweep(lmc *c, const lmc_sweep_options *opts, lmc_sweep_result *res)
{
    int rc = lmc__call(c);
    if (rc)
        return rc;
    if ((rc = lmc__writable(c)))
        return rc;
    sweep_ctx s;
    memset(&s, 0, sizeof s);
    if (opts)
        s.o = *opts;
    lmc_sweep_options *o = &s.o;
    for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; i++)
        if (o->reserved[i])
            return lmc__err(c, LMC_EINVAL, "reserved fields of lmc_sweep_options must be zero");
    if (o->flags & ~(LMC_SWEEP_NOEVICT | LMC_SWEEP_FORCE))
        return lmc__err(c, LMC_EINVAL, "unknown sweep flags 0x%x", o->flags);
    if (o->high_watermark == 0)
        o->high_watermark = 0.80;
    if (o->low_watermark == 0)
        o->low_watermark = o->high_watermark < 0.70 ? o->high_watermark : 0.70;
    if (!(o->high_watermark > 0 && o->high_watermark <= 1) ||
        !(o->low_watermark > 0 && o->low_watermark <= o->high_watermark))
        return lmc__err(c, LMC_EINVAL, "watermarks must satisfy 0 < low (%g) <= high (%g) <= 1",
                        o->low_watermark, o->high_watermark);
    if (o->batch == 0)
        o->batch = LMC__SWEEP_DEFAULT_BATCH;
    if (o->batch > LMC__SWEEP_MAX_BATCH)
        return lmc__err(c, LMC_EINVAL, "batch %u is above %u", o->batch, LMC__SWEEP_MAX_BATCH);

    lmc__core *k = c->core;
    lmc_sweep_result r;
    memset(&r, 0, sizeof r);
    s.t0 = lmc__mono_us();
    /* This thread's queued recency stamps count in the eviction below. */
    lmc__stamp_flush_mine(k);
    int dead = 0;
    mdb_reader_check(k->env, &dead);
    r.readers_cleared = (uint64_t)(dead > 0 ? dead : 0);

    lmc__fill f;
    if ((rc = lmc__fill_get(c, &f)))
        goto out;
    r.fill_before = f.fill;
    r.complete = 1;

    /* Expired entries. */
    expire_arg ea = {o->batch, 0, 0, false};
    for (;;) {
        s.deleted = r.expired;
        if (over_budget(&s, 0)) {
            r.complete = 0;
            break;
        }
        if (o->max_keys && o->max_keys - s.deleted < ea.batch)
            ea.batch = (unsigned)(o->max_keys - s.deleted);
        if ((rc = lmc__write_deletes(c, op_expire, &ea, &ea.batch)))
            goto out;
        r.transactions++;
        r.expired += ea.removed;
        r.rows_refiled += ea.refiled;
        if (!ea.more)
            break;
    }

    /* Entries that lmc_flush_prefix made invisible, and then their markers.
     * Like the expired ones, they go whatever the fill. */
    s.deleted = r.expired;
    if (r.complete && (rc = lmc__flush_reclaim(c, o->batch, runs_stop, &s, &r.flushed,
                                               &r.transactions, &r.complete)))
        goto out;

    /* Fill leases that nobody can fill any more.  Callers take such leases
     * over anyway; this keeps their records from piling up. */
    if ((rc = lmc__lease_sweep(c, &r.leases_removed)))
        goto out;
    if (r.leases_removed)
        r.transactions++;

    /* Capacity eviction. */
    if ((rc = lmc__fill_get(c, &f)))
        goto out;
    if (r.complete && !(o->flags & LMC_SWEEP_NOEVICT) &&
        (f.fill > o->high_watermark || (o->flags & LMC_SWEEP_FORCE))) {
        for (int round = 0; round < LMC__SWEEP_EVICT_ROUNDS && f.fill > o->low_watermark;
             round++) {
            s.deleted = r.expired + r.flushed + r.evicted_soonest + r.evicted_lru;
            if (over_budget(&s, 0)) {
                r.complete = 0;
                break;
            }
            uint64_t removed = 0;
            if ((rc = evict_round(c, &s, &f, &r, &removed)))
                goto out;
            if ((rc = lmc__fill_get(c, &f)))
                goto out;
            if (removed == 0)
                break; /* nothing left that can be evicted */
        }
        s.deleted = r.expired + r.flushed + r.evicted_soonest + r.evicted_lru;
        if (f.fill > o->low_watermark && over_budget(&s, 0))
            r.complete = 0;
    }
    r.fill_after = f.fill;

out:
    r.elapsed_us = lmc__mono_us() - s.t0;
    lmc__count(k, LMC__C_sweeps, 1);
    if (r.readers_cleared)
        lmc__count(k, LMC__C_readers_cleared, r.readers_cleared);
    if (res)
        *res = r;
    return rc;
}
