/*
 * sweep.c - one pass of the sweeper (lmc_sweep).
 *
 * A pass clears reader slots left by dead processes (they pin freed pages
 * and make the file grow, lmdb-rules 2.3), removes expired entries through
 * the expiry index, and, when fill is above the high watermark, evicts down
 * to the low one: soonest-to-expire first, then entries without TTL by
 * approximate LRU.  Every write transaction holds at most `batch` deletions
 * so that workers' writes wait microseconds, not seconds, for the writer
 * lock; fill is measured again after each eviction batch.  Time and key
 * budgets bound the pass; the next pass simply starts again from the expiry
 * index's head and from the LRU hand.
 */
#include "fmacros.h"

#include <string.h>
#include <time.h>

#include "internal.h"

#define LMC__SWEEP_DEFAULT_BATCH 1000u
#define LMC__SWEEP_MAX_BATCH 100000u

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

typedef struct sweep_arg {
    int phase;       /* 0: expired only; 1: evict */
    uint64_t budget; /* deletions allowed in this txn */
    uint64_t window; /* LRU candidates to read */
    uint64_t expired, soonest, lru;
} sweep_arg;

static int op_sweep(lmc__wctx *w, void *p)
{
    sweep_arg *a = p;
    a->expired = a->soonest = a->lru = 0;
    uint64_t n = 0;
    int rc;
    if (a->phase == 0) {
        rc = lmc__evict_by_expiry(w, true, a->budget, &n);
        a->expired = n;
        return rc;
    }
    /* Expired entries first even here: some may have expired since phase 0. */
    rc = lmc__evict_by_expiry(w, false, a->budget, &n);
    if (rc)
        return rc;
    a->expired = w->ctr[LMC__C_evictions_expired];
    a->soonest = w->ctr[LMC__C_evictions_soonest];
    if (n < a->budget) {
        uint64_t m = 0;
        rc = lmc__evict_lru(w, a->budget - n, a->window, &m);
        a->lru = m;
    }
    return rc;
}

static bool over_budget(const lmc_sweep_options *o, uint64_t t0, uint64_t deleted)
{
    if (o->max_keys && deleted >= o->max_keys)
        return true;
    if (o->max_time_ms && mono_us() - t0 >= o->max_time_ms * 1000u)
        return true;
    return false;
}

int lmc_sweep(lmc *c, const lmc_sweep_options *opts, lmc_sweep_result *res)
{
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (rc)
        return rc == LMC_EBUSY ? lmc__err(c, rc, "lmc_sweep called from inside a callback") : rc;
    if (c->rdonly)
        return lmc__err(c, LMC_EREADONLY, "handle of %s is read-only", c->core->path);
    lmc_sweep_options o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++)
        if (o.reserved[i])
            return lmc__err(c, LMC_EINVAL, "reserved fields of lmc_sweep_options must be zero");
    if (o.flags & ~(LMC_SWEEP_NOEVICT | LMC_SWEEP_FORCE))
        return lmc__err(c, LMC_EINVAL, "unknown sweep flags 0x%x", o.flags);
    if (o.high_watermark == 0)
        o.high_watermark = 0.80;
    if (o.low_watermark == 0)
        o.low_watermark = o.high_watermark < 0.70 ? o.high_watermark : 0.70;
    if (!(o.high_watermark > 0 && o.high_watermark <= 1) ||
        !(o.low_watermark > 0 && o.low_watermark <= o.high_watermark))
        return lmc__err(c, LMC_EINVAL, "watermarks must satisfy 0 < low (%g) <= high (%g) <= 1",
                        o.low_watermark, o.high_watermark);
    if (o.batch == 0)
        o.batch = LMC__SWEEP_DEFAULT_BATCH;
    if (o.batch > LMC__SWEEP_MAX_BATCH)
        return lmc__err(c, LMC_EINVAL, "batch %u is above %u", o.batch, LMC__SWEEP_MAX_BATCH);

    lmc__core *k = c->core;
    lmc_sweep_result r;
    memset(&r, 0, sizeof r);
    uint64_t t0 = mono_us();
    int dead = 0;
    mdb_reader_check(k->env, &dead);
    r.readers_cleared = (uint64_t)(dead > 0 ? dead : 0);

    lmc__fill f;
    if ((rc = lmc__fill_get(c, &f)))
        goto out;
    r.fill_before = f.fill;
    r.complete = 1;

    /* Phase 0: expired entries. */
    sweep_arg a;
    memset(&a, 0, sizeof a);
    for (;;) {
        uint64_t deleted = r.expired + r.evicted_soonest + r.evicted_lru;
        if (over_budget(&o, t0, deleted)) {
            r.complete = 0;
            break;
        }
        a.phase = 0;
        a.budget = o.batch;
        if (o.max_keys && o.max_keys - deleted < a.budget)
            a.budget = o.max_keys - deleted;
        if ((rc = lmc__write(c, op_sweep, &a)))
            goto out;
        r.transactions++;
        r.expired += a.expired;
        if (a.expired < a.budget)
            break;
    }

    /* Phase 1: capacity eviction. */
    if ((rc = lmc__fill_get(c, &f)))
        goto out;
    if (r.complete && !(o.flags & LMC_SWEEP_NOEVICT) &&
        (f.fill > o.high_watermark || (o.flags & LMC_SWEEP_FORCE))) {
        while (f.fill > o.low_watermark) {
            uint64_t deleted = r.expired + r.evicted_soonest + r.evicted_lru;
            if (over_budget(&o, t0, deleted)) {
                r.complete = 0;
                break;
            }
            /* Estimate how many entries hold the pages above the low mark,
             * so that one batch does not overshoot it on a small cache. */
            MDB_stat es;
            uint64_t entries = 0;
            lmc__rtxn *rt;
            if ((rc = lmc__rbegin(c, &rt)))
                goto out;
            if (mdb_stat(rt->txn, k->dbi_entries, &es) == 0)
                entries = es.ms_entries;
            lmc__rend(rt);
            if (entries == 0)
                break;
            double excess_pages = (f.fill - o.low_watermark) * (double)f.total_pages;
            double pages_per_entry = (double)f.used_pages / (double)entries;
            uint64_t need = (uint64_t)(excess_pages / pages_per_entry) + 1;
            a.phase = 1;
            a.budget = need < o.batch ? need : o.batch;
            if (o.max_keys && o.max_keys - deleted < a.budget)
                a.budget = o.max_keys - deleted;
            a.window = (uint64_t)o.batch * 4;
            if ((rc = lmc__write(c, op_sweep, &a)))
                goto out;
            r.transactions++;
            r.expired += a.expired;
            r.evicted_soonest += a.soonest;
            r.evicted_lru += a.lru;
            if (a.expired + a.soonest + a.lru == 0)
                break; /* nothing left that can be evicted */
            if ((rc = lmc__fill_get(c, &f)))
                goto out;
        }
    }
    r.fill_after = f.fill;

out:
    r.elapsed_us = mono_us() - t0;
    lmc__count(k, LMC__C_sweeps, 1);
    if (r.readers_cleared)
        lmc__count(k, LMC__C_readers_cleared, r.readers_cleared);
    if (res)
        *res = r;
    return rc;
}
