/*
 * space.h - how full the map is, who pins its free pages, and waiting for
 * them (space.c).
 */
#ifndef LMC_SPACE_H
#define LMC_SPACE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "handle.h"

typedef struct lmc__fill {
    uint64_t total_pages, used_pages, free_pages, last_pgno, last_txnid;
    unsigned psize;
    double fill;
} lmc__fill;
/* Fill as "used pages / pages in the map": the file's high-water mark less
 * the pages on LMDB's free list (a walk of the free list). */
int lmc__fill_get(lmc *h, lmc__fill *f);

/* Reader table summary, from mdb_reader_list.  slots and active count live
 * processes' slots only; stale counts the slots of dead ones; oldest is the
 * txnid of the oldest reader inside a txn, dead or alive, because a dead
 * reader's snapshot pins pages until its slot is cleared. */
typedef struct lmc__readers {
    uint64_t slots, stale, active, oldest;
} lmc__readers;
void lmc__readers_get(lmc__core *k, lmc__readers *r);

/* Pages kept free so that deletes always find the pages they copy first:
 * 1/64 of a map of total pages, at least 64 pages, at most a quarter of it.
 * A delete of one entry copies about ten pages (two trees of depth three,
 * the main tree's root, the free list); a few writes and an eviction must
 * fit between two checks. */
static inline uint64_t lmc__reserve_pages_of(uint64_t total)
{
    uint64_t r = total / 64;
    if (r < 64)
        r = 64;
    return r < total / 4 ? r : total / 4;
}

/* The reserve of k's map, worked out when it was opened. */
static inline uint64_t lmc__reserve_pages(const lmc__core *k)
{
    return k->reserve_pages;
}
/* Pages in use as txn sees them (the trees and the meta pages); O(1). */
uint64_t lmc__used_pages(const lmc__core *k, MDB_txn *txn);
/* The same inside a write transaction, with the meta database's pages as
 * counted by an earlier write of this process unless recount (a cheaper
 * count for the write path's frequent checks of the room left). */
uint64_t lmc__used_pages_write(lmc__core *k, MDB_txn *txn, bool recount);

/* Why free pages may not be reusable now (space.c explains the kinds). */
typedef struct lmc__space {
    uint64_t total_pages, tail_pages; /* tail: never used, past the high-water mark */
    uint64_t last_txnid;        /* the newest snapshot */
    uint64_t oldest;            /* the oldest snapshot a reader holds (last_txnid if none) */
    uint64_t dead_readers;      /* reader slots of dead processes */
    uint64_t pinned_by_readers; /* pages freed after the oldest snapshot */
    uint64_t pinned_by_last;    /* pages freed by the newest transaction */
} lmc__space;
int lmc__space_get(lmc *h, lmc__space *sp);
/* Sleep until every reader holds a snapshot at least as new as snapshot, or
 * until deadline (lmc__mono_us); false if the deadline came first.  Adds the
 * time slept to *waited_us. */
bool lmc__readers_wait(lmc *h, uint64_t snapshot, uint64_t deadline, uint64_t *waited_us);

#endif /* LMC_SPACE_H */
