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
#include <stdbool.h>

#include "attrs.h"
#include "error.h"
#include "handle.h"

/* First read on this thread: create its txn (txn.c). */
int lmc__rtxn_create(lmc *h, lmc__rtxn **out);

/* The calling thread's read txn, renewed; end it with lmc__rend(). */
static inline int lmc__rbegin(lmc *h, lmc__rtxn **out)
{
    lmc__rtxn *r = pthread_getspecific(h->core->tkey);
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
