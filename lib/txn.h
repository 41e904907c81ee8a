/*
 * txn.h - LMDB transactions as the rest of the library uses them (txn.c):
 * each thread's reusable read transaction, renewed and reset around every
 * read, and the write transactions behind the writer gate.
 *
 * The renew and the reset are inline: they are two of the four steps of a
 * get.
 */
#ifndef LMC_TXN_H
#define LMC_TXN_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "attrs.h"
#include "error.h"
#include "handle.h"

/* First read on this thread: create its txn (txn.c). */
int lmc__rtxn_create(lmc *h, lmc__rtxn **out);

/*
 * Each thread remembers the read txn of the cache it read last, so that a
 * get finds it with two thread-local loads instead of pthread_getspecific
 * (a call and four dependent loads).  The entry is keyed by the core's
 * rtxn_serial, not by its address: serials come from one process-wide
 * counter, are never 0 and never reused, and a core takes a new one whenever
 * its txns are freed (close, a failed open, a child after fork), so an entry
 * left behind by a closed cache can never match a cache opened later at the
 * same address.  The thread-exit destructor clears the entry of the txn it
 * frees.
 */
typedef struct lmc__rtxn_cache {
    uint64_t serial;
    lmc__rtxn *r;
} lmc__rtxn_cache;

extern _Thread_local lmc__rtxn_cache lmc__tl_rtxn __attribute__((tls_model("initial-exec")));

/* A new serial for a core (txn.c). */
uint64_t lmc__rtxn_serial_next(void);

static inline lmc__rtxn *lmc__rtxn_mine(lmc__core *k)
{
    uint64_t serial = atomic_load_explicit(&k->rtxn_serial, memory_order_relaxed);
    if (LMC__LIKELY(lmc__tl_rtxn.serial == serial))
        return lmc__tl_rtxn.r;
    lmc__rtxn *r = pthread_getspecific(k->tkey);
    if (r)
        lmc__tl_rtxn = (lmc__rtxn_cache){serial, r};
    return r;
}

/* The calling thread's read txn, renewed; end it with lmc__rend(). */
static inline int lmc__rbegin(lmc *h, lmc__rtxn **out)
{
    lmc__rtxn *r = lmc__rtxn_mine(h->core);
    if (LMC__UNLIKELY(!r))
        return lmc__rtxn_create(h, out);
    int rc = mdb_txn_renew(r->txn);
    if (LMC__UNLIKELY(rc))
        return lmc__mdb_err(h, rc, "mdb_txn_renew");
    *out = r;
    return 0;
}

/* A reset txn pins no pages: nothing may keep a snapshot between calls. */
static inline void lmc__rend(lmc__rtxn *r)
{
    mdb_txn_reset(r->txn);
}

/* Release every read txn of a core (close), or forget them (after fork:
 * owned false, the parent's slots are not touched). */
void lmc__rtxn_release_all(lmc__core *k, bool owned);
/* Thread-exit destructor of the thread's read txn (the core's tkey). */
void lmc__rtxn_destructor(void *p);
/* The lock of a core's list of read txns: taken by the atfork prepare
 * handler, so that a child never finds the list half changed. */
void lmc__rtxn_lock(lmc__core *k);
void lmc__rtxn_unlock(lmc__core *k);

/* A write txn, behind the writer gate. */
int lmc__wbegin(lmc *h, MDB_txn **txn);
/* Commit; MDB_MAP_FULL becomes LMC__EMAPFULL.  The txn is gone either way. */
int lmc__wcommit(lmc *h, MDB_txn *txn);
/* Abort a write txn from lmc__wbegin. */
void lmc__wabort(lmc *h, MDB_txn *txn);

#endif /* LMC_TXN_H */
