/*
 * evict.h - choosing what to evict and removing it inside a write
 * transaction (evict.c): expired entries through the expiry index, and runs
 * of consecutive entries scored by the eviction policy.
 */
#ifndef LMC_EVICT_H
#define LMC_EVICT_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "format.h"
#include "handle.h"

/* Walk the expiry index from its first row and remove the expired entries
 * (*removed of them), with rows that point at nothing, and file the rows that
 * lag behind a live entry again at its time (*refiled), until budget removals
 * or 4 x budget rows looked at; *more is whether the walk stopped there,
 * before the rows of the future. */
int lmc__evict_expired(lmc__wctx *w, uint64_t budget, uint64_t *removed, uint64_t *refiled,
                       bool *more);

/* A run: consecutive entries (about three leaf pages), the unit of capacity
 * eviction, scored by its most valuable member (evict.c explains why). */
typedef struct lmc__run {
    size_t first, last; /* offsets of the first and last stored key in the arena */
    uint16_t flen, llen;
    uint32_t count;
    uint8_t cls;        /* 0: holds a malformed entry; 1: every entry has a TTL;
                           2: some entry has none */
    uint64_t score;     /* class 1: latest expiry; class 2: latest access */
} lmc__run;

typedef struct lmc__runs {
    lmc__run *v;
    size_t n, cap;
    unsigned char *arena;
    size_t alen, acap;
} lmc__runs;

void lmc__runs_free(lmc__runs *r);
/* Entries per run for the current size of the cache. */
unsigned lmc__run_len(lmc__core *k, MDB_txn *txn);
/* Append runs of run_len entries read from start (NULL, or start->set
 * false: the first entry), at most max_entries entries; next gets the first
 * key not read (next->set false at the end).  next may be start. */
int lmc__runs_scan(lmc *h, MDB_txn *txn, const lmc__resume *start, uint64_t max_entries,
                   unsigned run_len, lmc__runs *out, lmc__resume *next);
/* Sort run indices coldest first, or in key order. */
void lmc__runs_order(const lmc__runs *r, size_t *idx, size_t n, bool by_key);
/* The range of stored keys of a run (it points into r's arena). */
void lmc__run_range(const lmc__runs *r, const lmc__run *x, lmc__range *out);

/* Entries of the cache and the pages they hold, their expiry rows included,
 * as txn sees them (the number of rows comes from lmc__rows_guess). */
void lmc__entry_pages_share(const lmc__core *k, MDB_txn *txn, uint64_t *entries,
                            uint64_t *pages);
/* Entries to evict for about want_pages pages, from what entries hold as
 * txn sees them. */
uint64_t lmc__evict_budget(const lmc__core *k, MDB_txn *txn, uint64_t want_pages);

/* The transaction of an eviction for room (lmc__make_room runs it as a
 * delete): expired entries if there are any, else the coldest runs of a
 * window read from the LRU hand on, at most *budget entries, never the run
 * that holds protect. */
typedef struct lmc__room_arg {
    const unsigned *budget; /* entries to evict: the write loop's batch */
    const MDB_val *protect; /* stored key whose run must stay, or NULL */
    uint64_t removed;
} lmc__room_arg;
int lmc__evict_for_room(lmc__wctx *w, void *arg);

#endif /* LMC_EVICT_H */
