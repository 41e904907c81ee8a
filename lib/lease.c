/*
 * lease.c - fill lease records: whether a lease holds (its holder alive, its
 * time not past), the futex words its waiters sleep on, what a lease sees
 * of an entry, and the removal of leases by the other writes and by the
 * sweeper.  The lease calls are leaseget.c (lmc_get_lease,
 * lmc_get_lease_view) and leasefill.c (lmc_lease_fill, lmc_lease_abandon).
 *
 * A lease is a record in LMDB (format.h: LMC__NS_LEASE | the stored key)
 * naming its holder: pid, stats slot, and when the holder claimed the slot.
 * Granting, filling and ending one are write transactions, so that exactly
 * one caller on the host holds a key's lease at a time, and the fill
 * commits the value and ends the lease at once.  A reader that finds a
 * live lease gets the stale value (within the entry's grace) or waits.
 *
 * Whether the holder is alive is the holder's stats slot: slots.c keeps a
 * byte lock (fcntl) on the slot of each process for as long as the process
 * has the cache open, and the kernel drops it the instant the process dies,
 * whatever kills it.  So a lease is held when its holder still locks that
 * slot and the slot is still the one it claimed (the time it claimed it
 * tells a new process that reused the pid).  Processes that share slot 0
 * (more than 1023 of them) are checked with kill(pid, 0) instead, which
 * cannot tell a reused pid: the lease time still bounds those.
 *
 * Waiters sleep on a futex in the stats file, one of LMC__WAKE_WORDS words
 * chosen by the key's hash, bumped by every commit that ends a lease of a
 * key hashed to it (fill, abandon, delete, takeover is not one: the new
 * holder's fill is what waiters want).  A waiter counts itself among the
 * word's sleepers before it reads the word and looks at the cache, and the
 * ender bumps the word after its commit, then wakes the word only if it has
 * sleepers: so a wake is never lost, and a fill nobody waits for makes no
 * system call.  A waiter also wakes every LMC__LEASE_CHECK_US to see
 * whether the holder has died (a dead process wakes nobody), which is what
 * bounds the takeover after a SIGKILL.
 */
#include "fmacros.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "entry.h"
#include "error.h"
#include "flushtab.h"
#include "format.h"
#include "lease.h"
#include "lmdbmeta.h"
#include "slots.h"
#include "txn.h"
#include "write.h"

#define LMC__WAKE_SEED 0x6c6d632d77616b65ULL

/* ------------------------------------------------------------------------ */
/* Waking                                                                   */
/* ------------------------------------------------------------------------ */

lmc__wake *lmc__lease_wake_word(const lmc__core *k, const MDB_val *skey)
{
    if (!k->wake)
        return NULL;
    uint64_t h = lmc__hash64(skey->mv_data, skey->mv_size, LMC__WAKE_SEED);
    return &k->wake[h & (LMC__WAKE_WORDS - 1)];
}

static void wake(lmc__wake *wk)
{
    /* Sequentially consistent, against the waiter's increment of sleepers
     * and read of seq (the comment at the top says why no wake is lost). */
    atomic_fetch_add(&wk->seq, 1);
    if (atomic_load(&wk->sleepers))
        syscall(SYS_futex, (uint32_t *)(uintptr_t)&wk->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void lmc__lease_wake(lmc__core *k, const MDB_val *skey)
{
    lmc__wake *wk = lmc__lease_wake_word(k, skey);
    if (wk)
        wake(wk);
}

void lmc__lease_wake_all(lmc__core *k)
{
    if (k->wake)
        for (unsigned i = 0; i < LMC__WAKE_WORDS; i++)
            wake(&k->wake[i]);
}

/* Sleep until wk->seq moves from seq, a wake, or us microseconds. */
void lmc__lease_wait_word(lmc__wake *wk, uint32_t seq, uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
    if (!wk) {
        nanosleep(&ts, NULL);
        return;
    }
    syscall(SYS_futex, (uint32_t *)(uintptr_t)&wk->seq, FUTEX_WAIT, seq, &ts, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Lease records and their holders                                          */
/* ------------------------------------------------------------------------ */

static bool holder_alive(const lmc__core *k, const lmc__lrec *r)
{
    if (r->pid == (int64_t)getpid())
        return r->slot == k->slot_index &&
               r->slot_started_ms == atomic_load_explicit(&k->slot->started_ms,
                                                          memory_order_relaxed);
    if (r->pid <= 0 || r->pid > INT_MAX)
        return false;
    if (r->slot > 0 && k->stats_map && r->slot < k->nslots) {
        /* F_GETLK shows other processes' locks only: a slot this process
         * holds now shows none, and it was not this holder's. */
        pid_t h = lmc__slot_holder(k, r->slot);
        if (h > 0)
            return h == (pid_t)r->pid &&
                   atomic_load_explicit(&lmc__slot_at(k, r->slot)->started_ms,
                                        memory_order_relaxed) == r->slot_started_ms;
        if (h == 0)
            return false;
    }
    return kill((pid_t)r->pid, 0) == 0 || errno == EPERM;
}

/* The lease record under lkey in txn: 0 with *have, or a code.  A record
 * that is not one lmc writes is no lease (a grant overwrites it). */
int lmc__lease_read(const lmc *h, MDB_txn *txn, const MDB_val *lkey, lmc__lrec *r, bool *have)
{
    MDB_val key = *lkey, d;
    *have = false;
    int rc = mdb_get(txn, h->core->dbi_main, &key, &d);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_get (lease)");
    *have = lmc__lrec_parse(&key, &d, r) == 0;
    return 0;
}

int lmc__lease_state(const lmc__core *k, const lmc__lrec *r, bool have, int64_t now)
{
    if (!have)
        return LMC__LR_NONE;
    if (r->deadline_ms <= now)
        return LMC__LR_EXPIRED;
    return holder_alive(k, r) ? LMC__LR_HELD : LMC__LR_DEAD;
}

/* ------------------------------------------------------------------------ */
/* Entries as leases see them                                               */
/* ------------------------------------------------------------------------ */

int lmc__lease_entry_state(const lmc__entry *e, int64_t now)
{
    if (!e->expires_at || e->expires_at > (uint64_t)now)
        return LMC__ES_FRESH;
    if (e->expires_at + e->grace_ms > (uint64_t)now)
        return LMC__ES_GRACE;
    return LMC__ES_NONE;
}

/* The entry of the key in txn, parsed: whether there is one of this key
 * that no flush marker of fv hides. */
bool lmc__lease_entry_of(const lmc__skey *sk, const void *key, size_t klen, const MDB_val *d,
                         const lmc__fview *fv, lmc__entry *e)
{
    return lmc__entry_parse(&sk->v, d, e) == 0 &&
           (!sk->is_long || lmc__entry_key_matches(e, key, klen)) && !lmc__flush_hides(fv, e);
}

int lmc__lease_find(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                    lmc__found *f, lmc__entry *e, bool *have)
{
    *have = false;
    int rc = lmc__entry_find(w, sk, key, klen, f);
    if (rc)
        return rc;
    lmc__fview fv;
    lmc__flush_view(w->k, &fv);
    *have = f->exists && f->mine && lmc__lease_entry_of(sk, key, klen, &f->old, &fv, e);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Removal by the other writes                                              */
/* ------------------------------------------------------------------------ */

int lmc__lease_drop(lmc__wctx *w, const MDB_val *skey, bool *removed)
{
    unsigned char lkb[LMC__LEASE_KEY_MAX];
    MDB_val lkey = lmc__lease_key(lkb, skey);
    *removed = false;
    int rc = mdb_del(w->txn, w->k->dbi_main, &lkey, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_del (lease)");
    *removed = true;
    return 0;
}

/* Remove the lease records whose keys start with from (every lease: the
 * namespace byte alone) and for which pred, if not NULL, is true. */
static int drop_from(lmc__wctx *w, const MDB_val *from, bool (*pred)(lmc__wctx *, const MDB_val *,
                                                                    const MDB_val *),
                     uint64_t *n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->k->dbi_main, &cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open");
    MDB_val key = *from, d;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    while (rc == 0 && key.mv_size >= from->mv_size &&
           memcmp(key.mv_data, from->mv_data, from->mv_size) == 0) {
        if (pred && !pred(w, &key, &d)) {
            rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
            continue;
        }
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        (*n)++;
        rc = lmc__lmdb_next_after_del(cur, &key, &d);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(w->h, rc, "removing leases");
    return 0;
}

int lmc__lease_drop_range(lmc__wctx *w, const lmc__range *r, uint64_t *n)
{
    unsigned char lkb[LMC__LEASE_KEY_MAX];
    MDB_val from = lmc__lease_key(lkb, &r->from);
    return drop_from(w, &from, NULL, n);
}

/* Whether the sweeper removes a lease record: not one lmc writes, past its
 * time, or its holder gone. */
static bool lease_lapsed(lmc__wctx *w, const MDB_val *key, const MDB_val *d)
{
    lmc__lrec r;
    if (lmc__lrec_parse(key, d, &r) != 0)
        return true;
    return lmc__lease_state(w->k, &r, true, w->now) != LMC__LR_HELD;
}

static int op_sweep(lmc__wctx *w, void *p)
{
    uint64_t *n = p;
    *n = 0;
    static const unsigned char ns = LMC__NS_LEASE;
    MDB_val from = {1, (void *)(uintptr_t)&ns};
    return drop_from(w, &from, lease_lapsed, n);
}

int lmc__lease_sweep(lmc *h, uint64_t *removed)
{
    *removed = 0;
    /* Most passes find no lease at all: a read says so without taking the
     * writer lock. */
    lmc__rtxn *r;
    int rc = lmc__rbegin(h, &r);
    if (rc)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(r->txn, h->core->dbi_main, &cur))) {
        lmc__rend(r);
        return lmc__mdb_err(h, rc, "mdb_cursor_open");
    }
    static const unsigned char ns = LMC__NS_LEASE;
    MDB_val key = {1, (void *)(uintptr_t)&ns}, d;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    bool any = rc == 0 && lmc__is_lease_key(&key);
    mdb_cursor_close(cur);
    lmc__rend(r);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(h, rc, "looking for leases");
    if (!any)
        return 0;
    unsigned batch = 1;
    rc = lmc__write_deletes(h, op_sweep, removed, &batch);
    if (rc == 0 && *removed)
        lmc__lease_wake_all(h->core);
    return rc;
}
