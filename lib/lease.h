/*
 * lease.h - fill leases (lease.c): what the other writes need of them.  A
 * delete, a prefix delete and a clear end the leases of the keys they
 * remove (so that a value computed from what they made stale is never
 * stored), and wake the callers waiting on them; the sweeper removes the
 * leases that their holders can no longer fill.
 */
#ifndef LMC_LEASE_H
#define LMC_LEASE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "format.h"
#include "handle.h"

/* Remove the lease of stored key skey, if there is one (*removed says). */
int lmc__lease_drop(lmc__wctx *w, const MDB_val *skey, bool *removed);

/* Remove the leases of the keys of prefix range r; *n grows by their number.
 * A lease records only the stored key, so a prefix longer than stored keys
 * keep also ends the leases of the long keys that share its kept part: a
 * fill refused for nothing, never a stale value kept. */
int lmc__lease_drop_range(lmc__wctx *w, const lmc__range *r, uint64_t *n);

/* After a commit that ended leases: wake the callers waiting for the lease
 * of skey, or for any lease. */
void lmc__lease_wake(lmc__core *k, const MDB_val *skey);
void lmc__lease_wake_all(lmc__core *k);

/* The sweeper's part: remove the leases past their time or whose holder is
 * gone; *removed gets their number. */
int lmc__lease_sweep(lmc *h, uint64_t *removed);

#endif /* LMC_LEASE_H */
