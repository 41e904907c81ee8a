/*
 * write.c - the write path shared by every mutating call.
 *
 * lmc__write() runs an operation inside one LMDB write transaction and
 * commits it.  When LMDB reports MDB_MAP_FULL (from a put, a delete or the
 * commit itself: all need fresh pages under copy-on-write), the transaction is
 * dead (lmdb-rules 4.2), so the loop aborts it, frees room in a separate small
 * transaction (evict.c) and runs the operation again, a bounded number of
 * times.
 *
 * Every entry change also keeps the expiry index row of the entry exact
 * inside the same transaction, and counts the change of the key and value
 * byte totals, which are added to the stats file after the commit (kept in
 * LMDB they would cost every write a second path of page copies).
 */
#include "fmacros.h"

#include <string.h>
#include <time.h>

#include "internal.h"

/* Attempts of one write before it gives up with LMC_ENOSPC. */
#define LMC__WRITE_ROUNDS 10u

/* Largest stored entry, to stay far from LMDB's 32-bit page-count limits
 * and its EIO on writes of more than 2 GiB (lmdb-rules 6). */
#define LMC__MAX_ENTRY ((size_t)0x7ff00000)

int lmc__check_size(lmc *h, size_t klen, size_t vlen, int is_long)
{
    lmc__core *k = h->core;
    if (vlen > LMC__MAX_ENTRY)
        return lmc__err(h, LMC_ETOOBIG, "value of %zu bytes is larger than the %zu-byte limit",
                        vlen, LMC__MAX_ENTRY);
    size_t need = lmc__entry_size(klen, vlen, is_long) + (is_long ? LMC__KEY_STORED_LONG : klen + 1);
    /* An empty map still holds 2 meta pages, the roots of the main, entries,
     * expiry and meta trees and the free list: keep 16 pages aside. */
    uint64_t pages = k->map_size / k->psize;
    uint64_t need_pages = (need + 64 + k->psize - 1) / k->psize;
    if (pages < 16 || need_pages > pages - 16)
        return lmc__err(h, LMC_ETOOBIG, "an entry of %zu bytes can never fit in the %llu-byte "
                        "map of %s", need, (unsigned long long)k->map_size, k->path);
    return 0;
}

static void apply_counters(lmc__wctx *w)
{
    for (unsigned i = 0; i < LMC__NCTR; i++)
        if (w->ctr[i])
            lmc__count(w->k, i, w->ctr[i]);
}

/* Outcomes that abort the txn but are answers, not failures: their counters
 * (add conflicts, cas conflicts) still count. */
static bool is_answer(int rc)
{
    return rc == LMC_EXISTS || rc == LMC_NOTFOUND || rc == LMC_ECHANGED ||
           rc == LMC_ENOTNUM || rc == LMC_ERANGE;
}

/* Longest a write waits, in total, for readers to release pinned pages. */
#define LMC__PIN_WAIT_US 300000u

/*
 * A write found the map full.  If most of the map is free pages that a
 * reader still pins (a reader preempted inside a get keeps its snapshot, and
 * every page freed after it cannot be reused yet, lmdb-rules 2.3), eviction
 * cannot help: clear the slots of dead readers, or wait a little for live
 * ones to finish their read.  Returns true to retry the write, false when
 * the map is really full of entries (or the wait budget is spent) and
 * eviction must make room.
 */
static bool wait_for_pinned_pages(lmc *h, unsigned *waited_us)
{
    lmc__core *k = h->core;
    int dead = 0;
    mdb_reader_check(k->env, &dead);
    if (dead > 0) {
        lmc__count(k, LMC__C_readers_cleared, (uint64_t)dead);
        return true;
    }
    /* Pinning needs a live reader inside a transaction, behind the last
     * commit, while a good part of the map sits on the free list. */
    lmc__readers rd;
    lmc__readers_get(k, &rd);
    if (rd.active == 0 || *waited_us >= LMC__PIN_WAIT_US)
        return false;
    lmc__fill f;
    if (lmc__fill_get(h, &f) != 0 || rd.oldest >= f.last_txnid ||
        f.free_pages < f.total_pages / 16)
        return false;
    unsigned us = *waited_us < 100 ? 100 : *waited_us; /* doubles the total each time */
    if (us > 10000)
        us = 10000;
    struct timespec ts = {0, (long)us * 1000};
    nanosleep(&ts, NULL);
    *waited_us += us;
    return true;
}

uint64_t lmc__reserve_pages(const lmc__core *k)
{
    /* A delete of one entry copies about ten pages (two trees of depth
     * three, the main tree's root, the free list); a few writes and an
     * eviction must fit between two checks. */
    uint64_t total = k->map_size / k->psize, r = total / 64;
    if (r < 64)
        r = 64;
    return r < total / 4 ? r : total / 4;
}

/* Pages in use as seen by txn: every tree's pages and the two meta pages.
 * O(1): LMDB keeps the page counts of each tree in its record. */
static uint64_t used_pages_in(const lmc__core *k, MDB_txn *txn)
{
    const MDB_dbi dbis[] = {0, k->dbi_main, k->dbi_expiry, k->dbi_meta};
    uint64_t used = 2;
    for (size_t i = 0; i < sizeof dbis / sizeof dbis[0]; i++) {
        MDB_stat st;
        if (mdb_stat(txn, dbis[i], &st) == 0)
            used += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    return used;
}

/*
 * Pages this write leaves free, or UINT64_MAX when it is not time to look.
 * A cache with plenty of room looks every 32nd write (and at every write of
 * more than a page); once free pages are down to four reserves it looks at
 * every write, so that the map never fills to the last page: on a completely
 * full map even a delete cannot get the pages it must copy before it frees
 * any, lmdb-rules 4.2.
 */
static uint64_t room_left(lmc__wctx *w, uint64_t reserve)
{
    lmc__core *k = w->k;
    unsigned tick = atomic_fetch_add_explicit(&k->write_tick, 1, memory_order_relaxed);
    if ((tick & 31) != 0 && w->ctr[LMC__C_bytes_written] <= k->psize &&
        !atomic_load_explicit(&k->near_full, memory_order_relaxed))
        return UINT64_MAX;
    uint64_t total = k->map_size / k->psize, used = used_pages_in(k, w->txn);
    uint64_t left = used < total ? total - used : 0;
    atomic_store_explicit(&k->near_full, left < 4 * reserve, memory_order_relaxed);
    return left;
}

int lmc__write(lmc *h, lmc__wop op, void *arg, unsigned *batch)
{
    lmc__core *k = h->core;
    unsigned evict_round = 0, waited_us = 0;
    const uint64_t reserve = lmc__reserve_pages(k);
    for (;;) {
        lmc__wctx w;
        w.h = h;
        w.k = k;
        w.d_key_bytes = w.d_value_bytes = 0;
        w.map_full = false;
        w.result = 0;
        w.stamp = NULL;
        w.cur = NULL;
        w.cur_at = NULL;
        memset(w.ctr, 0, sizeof w.ctr);
        int rc = lmc__wbegin(h, &w.txn);
        if (rc)
            return rc;
        w.now = lmc__now_ms();
        w.version = k->version_base + (uint64_t)mdb_txn_id(w.txn);
        rc = op(&w, arg);
        if (w.cur)
            mdb_cursor_close(w.cur);
        uint64_t left = UINT64_MAX;
        if (rc == 0) {
            if (!batch)
                left = room_left(&w, reserve);
            rc = lmc__wcommit(h, w.txn);
            if (rc == 0) {
                apply_counters(&w);
                lmc__totals_add(k, w.d_key_bytes, w.d_value_bytes);
                /* Stamped after the commit: a cache miss has no business
                 * inside the writer lock. */
                if (w.stamp)
                    lmc__stamp_key(h, w.stamp);
                /* Low on free pages: evict back to twice the reserve now,
                 * while evicting is still possible.  Best effort: this write
                 * itself succeeded. */
                if (left < reserve)
                    lmc__make_room(h, 2 * reserve - left);
                return w.result;
            }
        } else {
            lmc__wabort(h, w.txn);
            if (is_answer(rc))
                apply_counters(&w);
        }
        if (rc != LMC__EMAPFULL)
            return rc;
        /* The map is full: this txn's work is lost; make room and retry. */
        lmc__count(k, LMC__C_map_full, 1);
        if (batch && *batch > 1) {
            *batch = (*batch + 1) / 2;
            continue;
        }
        if (wait_for_pinned_pages(h, &waited_us))
            continue;
        if (evict_round >= LMC__WRITE_ROUNDS)
            return lmc__err(h, LMC_ENOSPC, "%s is full and %u rounds of eviction did not make "
                            "room (a stuck reader may pin freed pages, or free space is too "
                            "fragmented for this entry)", k->path, LMC__WRITE_ROUNDS);
        /* Free the reserve again, and more each round. */
        rc = lmc__make_room(h, reserve << (evict_round < 6 ? evict_round : 6));
        evict_round++;
        if (rc == LMC__EMAPFULL) {
            /* Even the eviction found no page: only waiting can help. */
            if (wait_for_pinned_pages(h, &waited_us))
                continue;
            return lmc__err(h, LMC_ENOSPC, "%s is so full that even an eviction finds no "
                            "free page", k->path);
        }
        if (rc)
            return rc;
    }
}

/* Map an LMDB result inside a write op: MAP_FULL goes back to the loop. */
static int wfail(lmc__wctx *w, int rc, const char *what)
{
    if (rc == MDB_MAP_FULL) {
        w->map_full = true;
        return LMC__EMAPFULL;
    }
    return lmc__mdb_err(w->h, rc, what);
}

/* Drop the expiry row and the totals of a stored entry that is going away
 * or being replaced. */
static int entry_forget(lmc__wctx *w, const MDB_val *skey, const MDB_val *old)
{
    lmc__entry e;
    if (lmc__entry_parse(skey, old, &e) != 0)
        return 0; /* malformed: nothing we can account for */
    w->d_key_bytes -= (int64_t)e.klen;
    w->d_value_bytes -= (int64_t)e.vlen;
    if (e.expires_at) {
        unsigned char ek[LMC__EXPKEY_MAX];
        MDB_val k = {lmc__expkey_make(ek, e.expires_at, skey), ek};
        int rc = mdb_del(w->txn, w->k->dbi_expiry, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return wfail(w, rc, "mdb_del (expiry)");
    }
    return 0;
}

int lmc__entry_store(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                     const void *val, size_t vlen, uint64_t expires_at, uint64_t version,
                     const MDB_val *old)
{
    lmc__core *k = w->k;
    int rc;
    if (old && (rc = entry_forget(w, &sk->v, old)))
        return rc;
    MDB_val skey = sk->v;
    MDB_val d = {lmc__entry_size(klen, vlen, sk->is_long), NULL};
    if (old && w->cur && old->mv_data == w->cur_at)
        rc = mdb_cursor_put(w->cur, &skey, &d, MDB_CURRENT | MDB_RESERVE);
    else
        rc = mdb_put(w->txn, k->dbi_entries, &skey, &d, MDB_RESERVE);
    w->cur_at = NULL;
    if (rc)
        return wfail(w, rc, "mdb_put (entry)");
    lmc__entry_write(d.mv_data, key, klen, sk->is_long, val, vlen, expires_at, version);
    if (expires_at) {
        unsigned char ek[LMC__EXPKEY_MAX];
        MDB_val ekv = {lmc__expkey_make(ek, expires_at, &sk->v), ek}, empty = {0, NULL};
        rc = mdb_put(w->txn, k->dbi_expiry, &ekv, &empty, 0);
        if (rc)
            return wfail(w, rc, "mdb_put (expiry)");
    }
    w->d_key_bytes += (int64_t)klen;
    w->d_value_bytes += (int64_t)vlen;
    return 0;
}

int lmc__entry_remove(lmc__wctx *w, MDB_cursor *cur, const MDB_val *skey, const MDB_val *old)
{
    int rc = entry_forget(w, skey, old);
    if (rc)
        return rc;
    if (cur)
        rc = mdb_cursor_del(cur, 0);
    else
        rc = mdb_del(w->txn, w->k->dbi_entries, (MDB_val *)(uintptr_t)skey, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return wfail(w, rc, "mdb_del (entry)");
    return 0;
}

int lmc__entry_remove_noindex(lmc__wctx *w, const MDB_val *skey, const MDB_val *old)
{
    lmc__entry e;
    if (lmc__entry_parse(skey, old, &e) == 0) {
        w->d_key_bytes -= (int64_t)e.klen;
        w->d_value_bytes -= (int64_t)e.vlen;
    }
    int rc = mdb_del(w->txn, w->k->dbi_entries, (MDB_val *)(uintptr_t)skey, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return wfail(w, rc, "mdb_del (entry)");
    return 0;
}

int lmc__wfail(lmc__wctx *w, int rc, const char *what)
{
    return wfail(w, rc, what);
}
