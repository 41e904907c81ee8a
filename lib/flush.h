/*
 * flush.h - prefix flushes (flush.c): lmc_flush_prefix records a marker in
 * the table of flushtab.h, and the sweeper's reclaim deletes the flushed
 * entries and retires the markers.
 */
#ifndef LMC_FLUSH_H
#define LMC_FLUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "handle.h"

/* The sweeper's part: delete the entries of every pending marker, at most
 * batch per transaction, until stop says so, and retire each marker whose
 * entries are all gone.  *removed and *transactions grow by what was done;
 * *complete is cleared if stop ended it early. */
int lmc__flush_reclaim(lmc *h, unsigned batch, bool (*stop)(void *arg, uint64_t removed),
                       void *stop_arg, uint64_t *removed, uint64_t *transactions,
                       int *complete);

/* Tests only: called at each step of a flush (1: leases ended, 2: marker
 * recorded, 3: in the middle of writing a slot), so that a test can kill the
 * flusher there. */
extern void (*lmc__test_flush_hook)(int step);

#endif /* LMC_FLUSH_H */
