/*
 * lease.h - fill lease records (lease.c): what the lease calls
 * (leaseget.c, leasefill.c) and the other writes need of them.  A delete, a
 * prefix delete and a clear end the leases of the keys they remove (so that
 * a value computed from what they made stale is never stored), and wake the
 * callers waiting on them; the sweeper removes the leases that their
 * holders can no longer fill.
 */
#ifndef LMC_LEASE_H
#define LMC_LEASE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "format.h"
#include "flushtab.h"
#include "handle.h"

/* How often a waiter looks whether the holder is alive: a takeover after the
 * holder dies takes at most this (and a write transaction). */
#define LMC__LEASE_CHECK_US 2000u

/* What a lease sees of an entry: none (or past its grace), fresh, or in its
 * grace after the TTL. */
enum { LMC__ES_NONE, LMC__ES_FRESH, LMC__ES_GRACE };
int lmc__lease_entry_state(const lmc__entry *e, int64_t now);

/* Whether d, stored under sk, is an entry of this key (a long key's whole
 * key compared) that no flush marker of fv hides; parsed into *e. */
bool lmc__lease_entry_of(const lmc__skey *sk, const void *key, size_t klen, const MDB_val *d,
                         const lmc__fview *fv, lmc__entry *e);

/* In write w: look the key up (*f, for a store over it) and say with *have
 * whether it holds an entry of this key that no flush marker hides, parsed
 * into *e.  0 or a code. */
int lmc__lease_find(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                    lmc__found *f, lmc__entry *e, bool *have);

/* Whether a lease record still holds: none, held (its holder alive and its
 * time not past), its holder dead, or past its time. */
enum { LMC__LR_NONE, LMC__LR_HELD, LMC__LR_DEAD, LMC__LR_EXPIRED };

/* The lease record under lkey in txn: 0 with *have, or a code.  A record
 * that is not one lmc writes is no lease (a grant overwrites it). */
int lmc__lease_read(const lmc *h, MDB_txn *txn, const MDB_val *lkey, lmc__lrec *r, bool *have);

/* The state (LMC__LR_*) of record r, read with have, at time now. */
int lmc__lease_state(const lmc__core *k, const lmc__lrec *r, bool have, int64_t now);

/* The futex word that the waiters for the lease of skey sleep on (NULL
 * without a stats file), and a sleep on it until its sequence moves from
 * seq, a wake, or us microseconds. */
lmc__wake *lmc__lease_wake_word(const lmc__core *k, const MDB_val *skey);
void lmc__lease_wait_word(lmc__wake *wk, uint32_t seq, uint64_t us);

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
