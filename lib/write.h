/*
 * write.h - the one write loop that every mutating call runs through
 * (write.c): a write transaction, and when the map is full, finding out why
 * and making room (waiting for readers, evicting) before trying again.
 */
#ifndef LMC_WRITE_H
#define LMC_WRITE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "handle.h"

/* Run op, which stores entries taking need_pages pages of their own (0 for
 * entries that fit in a leaf page), in a write transaction; on a full map
 * wait for readers or evict, and retry.  drop (may be NULL) removes the entry
 * the store replaces, in a transaction of its own: it is the first room
 * made, before other entries are evicted. */
int lmc__write(lmc *h, lmc__wop op, void *arg, uint64_t need_pages, lmc__wop drop,
               void *drop_arg);
/* Run op, which only deletes, at most *batch entries per transaction; on a
 * full map wait for readers or halve *batch, and retry.  It never evicts. */
int lmc__write_deletes(lmc *h, lmc__wop op, void *arg, unsigned *batch);
/* Commit a transaction that only moves LMDB's transaction id on, so that
 * the pages freed by the last one become reusable.  0 or LMC__EMAPFULL. */
int lmc__tick(lmc *h);
/* Evict about want_pages pages' worth of entries, never the run that holds
 * the stored key protect (may be NULL): the entry a write just stored.
 * round is how many rounds the write has evicted before (0 after a commit). */
int lmc__make_room(lmc *h, uint64_t want_pages, const MDB_val *protect, unsigned round);

/* Pages of its own an entry takes (LMDB's overflow pages, which must be
 * contiguous), 0 if it fits in a leaf page. */
uint64_t lmc__entry_pages(const lmc__core *k, size_t klen, size_t vlen, int is_long);
/* Pages entries may use: the map without the reserve and LMDB's own. */
uint64_t lmc__usable_pages(const lmc__core *k);
/* Pages one entry may use (half of those: write.c says why). */
uint64_t lmc__max_entry_pages(const lmc__core *k);
/* LMC_ETOOBIG, with a message, for an entry that could never be stored. */
int lmc__check_size(lmc *h, size_t klen, size_t vlen, int is_long);

#endif /* LMC_WRITE_H */
