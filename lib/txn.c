/*
 * txn.c - LMDB transactions as the rest of the library uses them.
 *
 * Reads: with MDB_NOTLS a read txn object owns its reader slot, so each
 * thread keeps one txn per cache, resets it after every call and renews it on
 * the next: one renew, one lookup, one reset per get, with no reader-mutex
 * traffic (mdb_txn_begin and mdb_txn_abort take LMDB's reader mutex, shared
 * by every process).  A reset txn pins no pages; a live one pins every page
 * freed after its snapshot, which is why no read txn stays open between
 * calls.  The txns of all threads are listed in their core so that close can
 * release them, and a thread-exit destructor releases a thread's own.
 *
 * Writes: one short write txn per call.  MDB_READERS_FULL is answered by
 * clearing stale slots of dead processes and retrying once.
 */
#include "fmacros.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "lmdbmeta.h"
#include "recency.h"
#include "txn.h"

_Thread_local lmc__rtxn_cache lmc__tl_rtxn __attribute__((tls_model("initial-exec")));

uint64_t lmc__rtxn_serial_next(void)
{
    static _Atomic uint64_t last;
    return atomic_fetch_add_explicit(&last, 1, memory_order_relaxed) + 1;
}

void lmc__rtxn_lock(lmc__core *k)
{
    pthread_mutex_lock(&k->rtxn_lock);
}

void lmc__rtxn_unlock(lmc__core *k)
{
    pthread_mutex_unlock(&k->rtxn_lock);
}

static void rtxn_unlink(lmc__core *k, lmc__rtxn *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (k->rtxns == r)
        k->rtxns = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

void lmc__rtxn_destructor(void *p)
{
    lmc__rtxn *r = p;
    if (!r)
        return;
    lmc__core *k = r->core;
    pthread_mutex_lock(&k->rtxn_lock);
    /* Only a txn of this process and of the core's current generation is
     * ours to abort; anything else is a copy inherited across fork. */
    bool mine = r->pid == getpid() && r->gen == atomic_load(&k->gen);
    rtxn_unlink(k, r);
    pthread_mutex_unlock(&k->rtxn_lock);
    /* Another key's destructor may still call lmc on this thread; it must
     * not find the txn freed here. */
    if (lmc__tl_rtxn.r == r)
        lmc__tl_rtxn = (lmc__rtxn_cache){0, NULL};
    if (mine) {
        lmc__stamp_flush(k, r);
        mdb_txn_abort(r->txn);
    }
    lmc__free(r);
}

void lmc__rtxn_release_all(lmc__core *k, bool owned)
{
    pthread_mutex_lock(&k->rtxn_lock);
    lmc__rtxn *r = k->rtxns;
    k->rtxns = NULL;
    /* Every thread's cached pointer to one of these txns stops matching. */
    atomic_store_explicit(&k->rtxn_serial, lmc__rtxn_serial_next(), memory_order_relaxed);
    pthread_mutex_unlock(&k->rtxn_lock);
    while (r) {
        lmc__rtxn *next = r->next;
        if (owned && r->pid == getpid()) {
            lmc__stamp_flush(k, r);
            mdb_txn_abort(r->txn);
        } else {
            /* Not owned: our copy, made by fork, of a txn of the parent. */
            lmc__lmdb_forget_txn(r->txn);
        }
        lmc__free(r);
        r = next;
    }
    if (owned && k->key_live)
        pthread_setspecific(k->tkey, NULL);
}

int lmc__rtxn_create(lmc *h, lmc__rtxn **out)
{
    lmc__core *k = h->core;
    lmc__rtxn *r = lmc__calloc(1, sizeof *r);
    if (!r)
        return lmc__err(h, LMC_ENOMEM, "out of memory for a read transaction");
    int rc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &r->txn);
    if (rc == MDB_READERS_FULL) {
        int dead = 0;
        mdb_reader_check(k->env, &dead);
        if (dead)
            lmc__count(k, LMC__C_readers_cleared, (uint64_t)dead);
        rc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &r->txn);
    }
    if (rc) {
        lmc__free(r);
        if (rc == MDB_READERS_FULL)
            return lmc__err(h, LMC_EBUSY, "all %u reader slots of %s are in use by live "
                            "threads (raise max_readers when creating the cache)",
                            k->max_readers, k->path);
        return lmc__mdb_err(h, rc, "mdb_txn_begin (read)");
    }
    r->core = k;
    r->pid = getpid();
    r->gen = atomic_load(&k->gen);
    if ((rc = pthread_setspecific(k->tkey, r)) != 0) {
        mdb_txn_abort(r->txn);
        lmc__free(r);
        return lmc__sys_err(h, rc, "pthread_setspecific");
    }
    lmc__tl_rtxn = (lmc__rtxn_cache){atomic_load_explicit(&k->rtxn_serial, memory_order_relaxed), r};
    pthread_mutex_lock(&k->rtxn_lock);
    r->next = k->rtxns;
    if (r->next)
        r->next->prev = r;
    k->rtxns = r;
    pthread_mutex_unlock(&k->rtxn_lock);
    *out = r;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The writer gate                                                          */
/* ------------------------------------------------------------------------ */

/*
 * LMDB serialises writers of all processes on one robust mutex.  A writer
 * that finds it taken sleeps in the kernel, and waking it on the other CPU
 * costs tens of microseconds, while the holder needs two or three: with two
 * writer processes throughput drops below one process's and the p99 of a
 * set jumps to a hundred microseconds (bench/RESULTS.md).  So writers first
 * take a gate word in shared memory (the stats file's header), spinning
 * while it is held by a writer that is making progress, and only then take
 * LMDB's mutex, which is then almost always free.
 *
 * The word holds the holder's stats slot and when it took the gate, in
 * nanoseconds.  A waiter spins only while the gate has been held for less
 * than LMC__GATE_SPIN_NS: a hold that lasts longer means the holder was
 * descheduled (more writers than CPUs) or is doing a long transaction, and
 * spinning would only take the CPU it needs, so the waiter goes straight to
 * LMDB's mutex and sleeps there as before.  The gate is advisory: LMDB's
 * mutex alone serialises writers, so correctness never depends on it, and
 * a gate held for more than LMC__GATE_STALE_NS (its holder died) is cleared
 * by the next writer that finds it.  Measured side by side, see
 * bench/RESULTS.md.
 */
#define LMC__GATE_SPIN_NS 20000u
#define LMC__GATE_STALE_NS 20000000u
#define LMC__GATE_TIME_MASK ((UINT64_C(1) << 48) - 1)

static _Thread_local bool tl_gated;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static uint64_t gate_now(void)
{
    return lmc__mono_ns() & LMC__GATE_TIME_MASK;
}

static void gate_acquire(lmc__core *k)
{
    _Atomic uint64_t *g = k->gate;
#ifdef LMC_NO_GATE /* for A/B measurements: make CPPFLAGS=-DLMC_NO_GATE */
    g = NULL;
#endif
    if (!g)
        return;
    const uint64_t tag = (uint64_t)k->slot_index << 48;
    for (unsigned i = 0;; i++) {
        uint64_t cur = atomic_load_explicit(g, memory_order_relaxed);
        if (cur == 0) {
            if (atomic_compare_exchange_weak_explicit(g, &cur, tag | gate_now(),
                                                      memory_order_acquire,
                                                      memory_order_relaxed)) {
                tl_gated = true;
                return;
            }
        } else if ((i & 7) == 0) {
            uint64_t held = (gate_now() - cur) & LMC__GATE_TIME_MASK;
            if (held > LMC__GATE_STALE_NS) {
                atomic_compare_exchange_strong(g, &cur, 0);
                return;
            }
            if (held > LMC__GATE_SPIN_NS)
                return; /* the holder is not running: wait in LMDB's mutex */
        }
        cpu_relax();
    }
}

static void gate_release(lmc__core *k)
{
    if (tl_gated) {
        tl_gated = false;
        atomic_store_explicit(k->gate, 0, memory_order_release);
    }
}

int lmc__wbegin(lmc *h, MDB_txn **txn)
{
    gate_acquire(h->core);
    int rc = mdb_txn_begin(h->core->env, NULL, 0, txn);
    if (LMC__UNLIKELY(rc)) {
        gate_release(h->core);
        return lmc__mdb_err(h, rc, "mdb_txn_begin (write)");
    }
    return 0;
}

int lmc__wcommit(lmc *h, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    gate_release(h->core);
    if (LMC__UNLIKELY(rc))
        return lmc__mdb_err(h, rc, "mdb_txn_commit");
    return 0;
}

void lmc__wabort(lmc *h, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    gate_release(h->core);
}
