/*
 * write.c - the write path shared by every mutating call.
 *
 * lmc__write() runs an operation that stores entries, and
 * lmc__write_deletes() one that only removes them, inside one LMDB write
 * transaction each, and commits it.  When LMDB reports MDB_MAP_FULL (from a
 * put, a delete or the commit itself: all need fresh pages under
 * copy-on-write), the transaction is dead, so the loop aborts it, finds out
 * why there is no room (space.c: readers pinning the free pages, or a map
 * that holds too much) and does what helps before it runs the operation
 * again: wait for the readers, make a freed batch reusable, delete fewer
 * entries per transaction, or evict (evict.c, in transactions of its own).
 *
 * Stores keep half of a reserve of free pages for deletes, which must
 * always find the pages they copy before they free any, and evict back to
 * twice the reserve once they find less than it left.
 *
 * Every entry change also keeps the expiry index row of the entry exact
 * inside the same transaction, and counts the change of the key and value
 * byte totals, which are added to the stats file after the commit (kept in
 * LMDB they would cost every write a second path of page copies).
 */
#include "fmacros.h"

#include <string.h>
#include <time.h>

#include "clock.h"
#include "error.h"
#include "evict.h"
#include "lmdbmeta.h"
#include "recency.h"
#include "slots.h"
#include "space.h"
#include "txn.h"
#include "write.h"

/* Eviction rounds of one write before it gives up with LMC_ENOSPC; each
 * round asks for twice the room of the one before. */
#define LMC__EVICT_ROUNDS 10u

/* Longest a write waits for the readers to move past one snapshot.  A
 * reader keeps a snapshot only while a get runs, a microsecond or two,
 * unless it is preempted or stopped in the middle of one; a reader that
 * holds the same snapshot for longer than this is stuck, and the write fails
 * (LMC_ENOSPC) rather than hang. */
#define LMC__PIN_WAIT_US 250000u

/* Longest a write waits for readers in all.  Readers that do move on may
 * still pin pages again and again while other writers take the pages they
 * release; this bounds the write however busy the cache is. */
#define LMC__PIN_WAIT_TOTAL_US 1000000u

/* Pages every write may copy: the paths from the roots of the main tree and
 * the expiry index to the leaves, and the free list. */
#define LMC__PATH_PAGES 8u

/* Pages LMDB itself keeps whatever the cache holds: two meta pages, the
 * roots of the trees and the free list, with room for their growth. */
#define LMC__FIXED_PAGES 16u

/* Largest stored entry, to stay far from LMDB's 32-bit page-count limits
 * and its EIO on writes of more than 2 GiB. */
#define LMC__MAX_ENTRY ((size_t)0x7ff00000)

uint64_t lmc__entry_pages(const lmc__core *k, size_t klen, size_t vlen, int is_long)
{
    size_t skl = is_long ? LMC__KEY_STORED_LONG : klen + 1;
    return lmc__lmdb_value_pages(k->psize, skl, lmc__entry_size(klen, vlen, is_long, false));
}

uint64_t lmc__usable_pages(const lmc__core *k)
{
    uint64_t total = k->total_pages, keep = lmc__reserve_pages(k) + LMC__FIXED_PAGES;
    return total > keep ? total - keep : 0;
}

uint64_t lmc__max_entry_pages(const lmc__core *k)
{
    return lmc__usable_pages(k) / 2;
}

int lmc__check_size(lmc *h, size_t klen, size_t vlen, int is_long)
{
    lmc__core *k = h->core;
    if (vlen > LMC__MAX_ENTRY)
        return lmc__err(h, LMC_ETOOBIG, "value of %zu bytes is larger than the %zu-byte limit",
                        vlen, LMC__MAX_ENTRY);
    /*
     * Decide up front, from the map's size alone, whether eviction can ever
     * make room, so that a write that cannot fit is told at once instead of
     * evicting the whole cache first.  The pages kept in reserve are for
     * deletes, which must always find the pages they copy before they free
     * any.  Of the rest, an entry may take half: a value of pages of its own
     * needs them contiguous, and LMDB hands out the lowest free pages first,
     * so every small write nibbles at the runs that evictions free.  With
     * half the map to choose from, evicting enough always leaves a run that
     * long (the pages still in use drift to the low end); with more, even
     * an empty cache can fail.
     */
    uint64_t need = lmc__entry_pages(k, klen, vlen, is_long);
    if (need == 0)
        return 0; /* in a leaf page: never more than max, and max costs divisions */
    uint64_t max = lmc__max_entry_pages(k);
    if (need > max)
        return lmc__err(h, LMC_ETOOBIG, "an entry of %zu bytes can never fit: it needs %llu "
                        "pages, more than the %llu an entry may use in the %llu-byte map of %s "
                        "(half of it, less a reserve)",
                        lmc__entry_size(klen, vlen, is_long, false), (unsigned long long)need,
                        (unsigned long long)max, (unsigned long long)k->map_size, k->path);
    return 0;
}

/* Add the counter deltas of a write to this process's slot: only those it
 * counted, which are two or three of the fifty-odd counters.  (Zeroing and
 * testing all of them cost about 220 instructions a write.) */
static void apply_counters(lmc__wctx *w)
{
    for (uint64_t m = w->counted; m; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        if (w->cdelta[i])
            lmc__count(w->k, i, w->cdelta[i]);
    }
}

/* Outcomes that abort the txn but are answers, not failures: their counters
 * (add conflicts, cas conflicts) still count. */
static bool is_answer(int rc)
{
    return rc == LMC_EXISTS || rc == LMC_NOTFOUND || rc == LMC_ECHANGED ||
           rc == LMC_ENOTNUM || rc == LMC_ERANGE;
}

/*
 * Pages this write leaves free (reusable or not yet), or UINT64_MAX when it
 * is not time to look.  A cache with plenty of room looks at every 16th write
 * of all processes (and at every write of more than a page); once free pages
 * are down to four times the headroom every write of every process looks,
 * so that the map never fills to the last page: on a completely full map
 * even a delete cannot get the pages it must copy before it frees any.  The
 * count of writes and the flag are shared, so that several writers cannot
 * together eat the room between the checks each of them makes: the count is
 * LMDB's transaction id, which every write of every process moves on by
 * one, so that keeping it costs no store to a line the processes share.
 */
static uint64_t room_left(lmc__wctx *w, uint64_t target)
{
    lmc__core *k = w->k;
    lmc__room *room = k->room;
    size_t tick = mdb_txn_id(w->txn);
    if ((tick & 15) != 0 && lmc__wcounted(w, LMC__C_bytes_written) <= k->psize &&
        !atomic_load_explicit(&room->near_full, memory_order_relaxed))
        return UINT64_MAX;
    /* The meta database is recounted on every 16th check, and on every one
     * once the map is nearly full. */
    bool near_now = atomic_load_explicit(&room->near_full, memory_order_relaxed);
    uint64_t total = k->total_pages;
    uint64_t used = lmc__used_pages_write(k, w->txn, near_now || (tick & 255) == 0);
    uint64_t left = used < total ? total - used : 0;
    uint32_t near = left < 4 * target;
    if (near_now != near)
        atomic_store_explicit(&room->near_full, near, memory_order_relaxed);
    return left;
}

/*
 * A commit that changes nothing but LMDB's transaction id.  Pages freed by
 * transaction N are only reused once a later transaction has committed
 * (LMDB keeps the newest snapshot intact for readers that may still open
 * it), so after an eviction this makes its pages available to the write
 * that needs them.  Returns 0, LMC__EMAPFULL or another code.
 */
int lmc__tick(lmc *h)
{
    MDB_txn *txn;
    int rc = lmc__wbegin(h, &txn);
    if (rc)
        return rc;
    size_t id = mdb_txn_id(txn);
    MDB_val key = {sizeof LMC__TICK_KEY - 1, (void *)(uintptr_t)LMC__TICK_KEY};
    MDB_val d = {sizeof id, &id};
    rc = mdb_put(txn, h->core->dbi_main, &key, &d, 0);
    if (rc) {
        lmc__wabort(h, txn);
        return rc == MDB_MAP_FULL ? LMC__EMAPFULL : lmc__mdb_err(h, rc, "mdb_put (tick)");
    }
    return lmc__wcommit(h, txn);
}

/* What one write has done so far to find room, across its attempts. */
typedef struct room_state {
    uint64_t need;      /* pages of the entry it stores (0 for deletes) */
    lmc__wop drop;      /* removes the entry a store replaces, or NULL */
    void *drop_arg;
    unsigned evictions; /* rounds of eviction */
    unsigned ticks;
    uint64_t waited_us; /* waiting for readers, in all */
} room_state;

/*
 * The write found the map full (MDB_MAP_FULL), or would have left less than
 * half the reserve free (low): find out why, and do what helps.
 *   - Slots of dead readers pin pages for ever: clear them.
 *   - Live readers behind the last commit pin the pages freed since their
 *     snapshot: evicting would only free more pinned pages, but waiting a
 *     moment lets them finish (LMC__PIN_WAIT_US for one snapshot,
 *     LMC__PIN_WAIT_TOTAL_US in all).
 *   - Pages freed by the last commit are reusable after one more: tick.
 *   - Otherwise the map holds too much: a delete takes fewer entries per
 *     transaction; a store evicts, asking for more room each round.
 * Returns 0 to retry the write, or the code the write fails with.
 */
static int find_room(lmc *h, room_state *st, unsigned *batch, bool low)
{
    lmc__core *k = h->core;
    const uint64_t reserve = lmc__reserve_pages(k);
    lmc__space sp;
    int rc = 0;
    if (!low) {
        if ((rc = lmc__space_get(h, &sp)))
            return rc;
        if (sp.dead_readers) {
            int dead = 0;
            mdb_reader_check(k->env, &dead);
            if (dead > 0) {
                lmc__count(k, LMC__C_readers_cleared, (uint64_t)dead);
                return 0;
            }
        }
        if (sp.pinned_by_readers) {
            /* Keep that many more pages free from now on, so that the next
             * preempted reader does not stop the writers again. */
            uint64_t want = sp.pinned_by_readers + 2 * reserve, cap = sp.total_pages / 4;
            if (want > cap)
                want = cap;
            uint64_t cur = atomic_load_explicit(&k->room->headroom, memory_order_relaxed);
            while (cur < want && !atomic_compare_exchange_weak(&k->room->headroom, &cur, want))
                ;
            uint64_t now = lmc__mono_us(), before = st->waited_us;
            uint64_t left = st->waited_us < LMC__PIN_WAIT_TOTAL_US
                                ? LMC__PIN_WAIT_TOTAL_US - st->waited_us : 0;
            lmc__count(k, LMC__C_pin_waits, 1);
            if (left && lmc__readers_wait(h, sp.last_txnid,
                                          now + (left < LMC__PIN_WAIT_US ? left : LMC__PIN_WAIT_US),
                                          &st->waited_us))
                return 0;
            if (st->waited_us - before >= LMC__PIN_WAIT_US)
                return lmc__err(h, LMC_ENOSPC, "a reader of %s has held a snapshot %llu "
                                "transactions old for %llu ms, pinning %llu freed pages: it is "
                                "stuck inside a read transaction", k->path,
                                (unsigned long long)(sp.last_txnid - sp.oldest),
                                (unsigned long long)((st->waited_us - before) / 1000),
                                (unsigned long long)sp.pinned_by_readers);
            return lmc__err(h, LMC_ENOSPC, "readers of %s kept the free pages pinned for %llu "
                            "ms in all while this write waited (%llu pages pinned now)", k->path,
                            (unsigned long long)(st->waited_us / 1000),
                            (unsigned long long)sp.pinned_by_readers);
        }
        /* A tick is worth its commit only when the last one freed enough to
         * matter; otherwise a delete is better off deleting less. */
        uint64_t worth = st->need > reserve / 4 ? st->need : reserve / 4;
        if (sp.pinned_by_last >= worth && st->ticks < 4) {
            st->ticks++;
            rc = lmc__tick(h);
            if (rc != LMC__EMAPFULL)
                return rc;
        }
    }
    if (batch) {
        if (*batch > 1) {
            *batch = (*batch + 1) / 2;
            return 0;
        }
        /* One deletion that finds no page: whatever the last commit freed,
         * however little, is its last chance. */
        if (!low && sp.pinned_by_last && st->ticks < 8) {
            st->ticks++;
            rc = lmc__tick(h);
            if (rc != LMC__EMAPFULL)
                return rc;
        }
        return lmc__err(h, LMC_ENOSPC, "%s is so full that deleting one entry finds no free "
                        "page", k->path);
    }
    /* The first room to make is that of the entry being replaced: its pages
     * are freed only when the new one commits, too late for the new one.
     * Readers miss the key in between, as they would after an eviction. */
    if (st->drop) {
        lmc__wop drop = st->drop;
        unsigned one = 1;
        st->drop = NULL;
        rc = lmc__write_deletes(h, drop, st->drop_arg, &one);
        if (rc == 0 || rc == LMC_NOTFOUND)
            rc = lmc__tick(h);
        return rc == LMC__EMAPFULL ? 0 : rc;
    }
    if (st->evictions >= LMC__EVICT_ROUNDS)
        return lmc__err(h, LMC_ENOSPC, "%s is full and %u rounds of eviction did not make room "
                        "for %llu pages (free space too fragmented for this entry)", k->path,
                        LMC__EVICT_ROUNDS, (unsigned long long)st->need);
    unsigned r = st->evictions < 6 ? st->evictions : 6;
    st->evictions++;
    rc = lmc__make_room(h, (st->need + reserve) << r, NULL, r);
    /* An eviction that found the map full itself is retried like the
     * write: the next attempt finds out why again. */
    return rc == LMC__EMAPFULL ? 0 : rc;
}

static int write_loop(lmc *h, lmc__wop op, void *arg, unsigned *batch, uint64_t need,
                      lmc__wop drop, void *drop_arg)
{
    lmc__core *k = h->core;
    const uint64_t reserve = lmc__reserve_pages(k);
    room_state st = {need, drop, drop_arg, 0, 0, 0};
    for (;;) {
        lmc__wctx w;
        w.h = h;
        w.k = k;
        w.d_key_bytes = w.d_value_bytes = w.d_rows = 0;
        w.result = 0;
        w.written = NULL;
        w.cur = w.rcur = NULL;
        w.rows_put = 0;
        w.cur_at = NULL;
        w.counted = 0;
        int rc = lmc__wbegin(h, &w.txn);
        if (rc)
            return rc;
        w.now = lmc__now_ms();
        w.version = k->version_base + (uint64_t)mdb_txn_id(w.txn);
        rc = op(&w, arg);
        if (w.cur)
            mdb_cursor_close(w.cur);
        if (w.rcur)
            mdb_cursor_close(w.rcur);
        uint64_t left = UINT64_MAX;
        bool low = false;
        uint64_t target = atomic_load_explicit(&k->room->headroom, memory_order_relaxed);
        if (target < 2 * reserve)
            target = 2 * reserve;
        if (rc == 0 && !batch) {
            /* A store must leave half the reserve to the deletes. */
            left = room_left(&w, target);
            low = left < reserve / 2;
        }
        if (rc == 0 && !low) {
            rc = lmc__wcommit(h, w.txn);
            if (rc == 0) {
                apply_counters(&w);
                lmc__totals_add(k, w.d_key_bytes, w.d_value_bytes, w.d_rows);
                if (st.waited_us)
                    lmc__count(k, LMC__C_pin_wait_us, st.waited_us);
                /* Low on free pages: evict back to the headroom now, while
                 * evicting is still possible.  Best effort: this write
                 * itself succeeded.  The headroom decays back to twice the
                 * reserve while writers do not have to wait for readers. */
                if (left < target / 2) {
                    lmc__make_room(h, target - left, w.written, 0);
                    if (!st.waited_us && target > 2 * reserve)
                        atomic_store_explicit(&k->room->headroom, target - target / 8,
                                              memory_order_relaxed);
                }
                return w.result;
            }
        } else {
            lmc__wabort(h, w.txn);
            if (is_answer(rc))
                apply_counters(&w);
        }
        if (rc != LMC__EMAPFULL && !low)
            return rc;
        lmc__count(k, LMC__C_map_full, 1);
        if ((rc = find_room(h, &st, batch, low)))
            return rc;
    }
}

int lmc__write(lmc *h, lmc__wop op, void *arg, uint64_t need_pages, lmc__wop drop,
               void *drop_arg)
{
    return write_loop(h, op, arg, NULL, need_pages + LMC__PATH_PAGES, drop, drop_arg);
}

int lmc__write_deletes(lmc *h, lmc__wop op, void *arg, unsigned *batch)
{
    return write_loop(h, op, arg, batch, 0, NULL, NULL);
}

/*
 * Free about want_pages pages for a write that found the map full (or soon
 * will), in a transaction of its own: expired entries if there are any, else
 * whole runs of the coldest entries (evict.c).  It runs through the write
 * loop as a delete, whose batch (the entries to evict) is halved when the
 * transaction finds the map full itself.  Round r of a write that still
 * finds no room lets the batch grow 2^r times past what the free pages are
 * sure to take (see below).  With nothing left to evict: LMC_ENOSPC.
 */
int lmc__make_room(lmc *h, uint64_t want_pages, const MDB_val *protect, unsigned round)
{
    lmc__core *k = h->core;
    /* This thread's queued stamps (of its reads) count: without them the
     * eviction could pick an entry the thread just read as the coldest.  The
     * entry its write just stored carries its own time (format.h). */
    lmc__stamp_flush_mine(k);
    lmc__rtxn *r;
    int rc = lmc__rbegin(h, &r);
    if (rc)
        return rc;
    uint64_t budget = lmc__evict_budget(k, r->txn, want_pages);
    uint64_t total = k->total_pages, used = lmc__used_pages(k, r->txn);
    lmc__rend(r);
    /* Deleting copies pages before it frees any, up to two leaves and their
     * branches per entry when the entries are scattered (expired entries
     * are, in key order): ask for no more than the free pages can take, so
     * that the transaction is not tried in vain first.  That bound is for
     * the worst case: the coldest entries come in runs of neighbours, whose
     * deletion copies a leaf once for many entries.  A write that needs a
     * run of contiguous pages may need far more entries evicted than the
     * bound lets one round take (on a map of 512 pages, 20 small entries a
     * round free next to nothing), so each of its rounds doubles the bound;
     * a batch too big for the free pages only costs a halving.  */
    uint64_t afford = used < total ? (total - used) / 3 : 0;
    afford <<= round < 16 ? round : 16;
    if (budget > afford)
        budget = afford ? afford : 1;
    unsigned batch = budget < 100000 ? (unsigned)budget : 100000;
    lmc__room_arg a = {&batch, protect, 0};
    rc = lmc__write_deletes(h, lmc__evict_for_room, &a, &batch);
    if (rc)
        return rc;
    if (a.removed == 0)
        return lmc__err(h, LMC_ENOSPC, "%s is full and has nothing left to evict", k->path);
    /* Pages freed by the eviction are reusable once another transaction has
     * committed: make them available to the write that needs them now. */
    rc = lmc__tick(h);
    return rc == LMC__EMAPFULL ? 0 : rc;
}
