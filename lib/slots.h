/*
 * slots.h - the stats file (slots.c): a slot of counters per process, the
 * byte totals of the cache, and the header line that the writers share.
 */
#ifndef LMC_SLOTS_H
#define LMC_SLOTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "handle.h"

/* Map the stats file of k (in dirfd), creating it if allowed; with no file
 * and !create, k keeps its local slot (read-only handles read zeros). */
int lmc__stats_open(lmc__core *k, int dirfd, bool create, unsigned mode, const lmc *h);
/* Claim a slot for this process (after open, and in a child after fork),
 * and point k at the shared header's gate, room and totals. */
void lmc__stats_claim(lmc__core *k);
/* Processes other than this one that hold a slot. */
unsigned lmc__stats_other_users(lmc__core *k);
/* Unmap the stats file; with owned, also give up this process's slot. */
void lmc__stats_close(lmc__core *k, bool owned);

/* Slots ever claimed (1 + the highest index), and each of them. */
unsigned lmc__slots_used(const lmc__core *k);
lmc__slot *lmc__slot_at(const lmc__core *k, unsigned i);
/* Pid holding slot i's lock: 0 if none, -1 if it cannot be told (F_GETLK
 * reports other processes only). */
pid_t lmc__slot_holder(const lmc__core *k, unsigned i);

/* Key and value bytes stored, and expiry rows: added after each commit,
 * recounted with a scan of every entry when the stats file was made afresh.
 * A writer killed between its commit and the add leaves them off by that
 * one write, which is within what a gauge (or an estimate) is for. */
void lmc__totals_add(lmc__core *k, int64_t key_bytes, int64_t value_bytes, int64_t rows);
/* The expiry rows as counted so far: for estimates only. */
uint64_t lmc__rows_guess(const lmc__core *k);
void lmc__totals_get(const lmc__core *k, uint64_t *key_bytes, uint64_t *value_bytes);
int lmc__totals_rescan(const lmc *h, lmc__core *k);

#endif /* LMC_SLOTS_H */
