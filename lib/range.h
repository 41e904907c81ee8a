/*
 * range.h - the one driver that deletes ranges of entries in bounded
 * transactions and resumes at a key between them (range.c): prefix deletes,
 * clear, the sweeper's eviction of chosen runs, and an LMC_OPEN_RESET of a
 * cache in use.
 */
#ifndef LMC_RANGE_H
#define LMC_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "handle.h"

/* Deletions per transaction of prefix deletes and clears: short enough that
 * other writers wait microseconds for the writer lock. */
#define LMC__RANGE_BATCH 1000u

typedef struct lmc__range_del {
    /* Set by the caller. */
    const lmc__range *ranges; /* in key order */
    size_t nranges;
    unsigned batch;           /* deletions per transaction; halved on a full map */
    int count;                /* how removals are counted (entry.h) */
    bool leases;              /* prefix ranges: also end their fill leases */
    bool (*stop)(void *arg, uint64_t removed); /* checked between transactions */
    void *stop_arg;
    /* Progress, adopted after each commit. */
    size_t pos;
    lmc__resume resume;
    uint64_t removed, soonest, lru, transactions;
    /* Written by a transaction, adopted once it has committed, so that a
     * transaction retried after a full map starts from the same place. */
    size_t next_pos;
    lmc__resume next_resume;
    uint64_t next_removed, next_soonest, next_lru, next_leases;
} lmc__range_del;

/* Delete every entry of d's ranges, or until d->stop says so. */
int lmc__range_delete(lmc *h, lmc__range_del *d);
/* Delete every entry of the cache, counted as one clear. */
int lmc__range_clear(lmc *h);

#endif /* LMC_RANGE_H */
