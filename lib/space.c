/*
 * space.c - how full the map is, who pins its free pages, and waiting for
 * them.
 *
 * LMDB never overwrites a page a reader may still see: a write copies every
 * page it changes, and the old copies go on the free list under the id of
 * the transaction that freed them.  A later writer may reuse the pages
 * freed by transaction T only once no reader's snapshot is older than T and
 * at least one more transaction has committed (LMDB 0.9 uses a record of the
 * free list only when its id is below the oldest snapshot, counting the
 * writer's own previous one: mdb_page_alloc and mdb_find_oldest).  So the free pages of a busy cache come in
 * three kinds:
 *   - reusable: freed by transactions older than every snapshot;
 *   - pinned by readers: freed after the snapshot of a reader that is still
 *     inside a transaction (a get takes a microsecond or two, but a reader
 *     preempted in the middle of one keeps its snapshot for a whole
 *     scheduler time slice, while the writers go on freeing pages);
 *   - pinned by the last commit: freed by the newest transaction, reusable
 *     after one more commit.
 * A write that finds the map full (MDB_MAP_FULL) therefore asks here why:
 * evicting entries cannot help while readers pin the pages (the eviction
 * needs fresh pages too, and frees more pinned ones), but waiting for the
 * readers to finish their reads does, and costs nothing but a few sleeps.
 *
 * Fill is "used pages / pages in the map", where used pages are LMDB's file
 * high-water mark minus the pages on its free list.
 */
#include "fmacros.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "error.h"
#include "lmdbmeta.h"
#include "space.h"
#include "txn.h"

/* ------------------------------------------------------------------------ */
/* Fill                                                                     */
/* ------------------------------------------------------------------------ */

int lmc__fill_get(lmc *h, lmc__fill *f)
{
    lmc__core *k = h->core;
    MDB_envinfo info;
    MDB_stat st;
    memset(f, 0, sizeof *f);
    lmc__rtxn *r;
    int rc = lmc__rbegin(h, &r);
    if (rc)
        return rc;
    /* Read the environment info inside the read txn so that the high-water
     * mark is at least as new as the free list we walk. */
    mdb_env_info(k->env, &info);
    mdb_env_stat(k->env, &st);
    MDB_cursor *cur;
    uint64_t free_pages = 0;
    rc = mdb_cursor_open(r->txn, 0, &cur); /* dbi 0 is LMDB's free list */
    if (rc == 0) {
        MDB_val key, d;
        while ((rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT)) == 0)
            free_pages += lmc__lmdb_freed_count(&d);
        mdb_cursor_close(cur);
    }
    lmc__rend(r);
    if (rc != MDB_NOTFOUND)
        return lmc__mdb_err(h, rc, "reading the free list");
    f->psize = st.ms_psize;
    f->total_pages = info.me_mapsize / st.ms_psize;
    f->last_pgno = info.me_last_pgno;
    f->last_txnid = info.me_last_txnid;
    uint64_t hwm = info.me_last_pgno + 1;
    f->free_pages = free_pages < hwm ? free_pages : hwm;
    f->used_pages = hwm - f->free_pages;
    f->fill = f->total_pages ? (double)f->used_pages / (double)f->total_pages : 0.0;
    return 0;
}

/* The pages of one tree.  O(1) for the free list and the main database,
 * whose records the transaction holds; a named database's record is looked
 * up in the main tree first (LMDB marks named databases stale in every
 * transaction), which costs a search. */
static uint64_t tree_pages(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    if (mdb_stat(txn, dbi, &st) != 0)
        return 0;
    return st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
}

uint64_t lmc__used_pages(const lmc__core *k, MDB_txn *txn)
{
    /* Every tree's pages and the two meta pages. */
    return 2 + tree_pages(txn, 0) + tree_pages(txn, k->dbi_main) + tree_pages(txn, k->dbi_meta);
}

uint64_t lmc__used_pages_write(lmc__core *k, MDB_txn *txn, bool recount)
{
    /* The meta database changes only when a cache is created or opened
     * (metadb.c), and its few records take a page, so its count is kept
     * between writes and recounted when the caller says: looking its record
     * up took 1,600 of the 1,800 instructions of a count. */
    if (recount || !k->meta_pages_known) {
        k->meta_pages = tree_pages(txn, k->dbi_meta);
        k->meta_pages_known = true;
    }
    return 2 + tree_pages(txn, 0) + tree_pages(txn, k->dbi_main) + k->meta_pages;
}

/* ------------------------------------------------------------------------ */
/* Readers                                                                  */
/* ------------------------------------------------------------------------ */

/* Whether a process exists: kill(pid, 0) fails with ESRCH only for a pid
 * nobody has (EPERM means it exists under another user).  A reused pid makes
 * a dead slot look live, which errs the same way mdb_reader_check does. */
static bool pid_alive(long pid)
{
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* mdb_reader_list callback.  A slot stays in the table after its process
 * dies until mdb_reader_check clears it, so liveness is asked of the
 * kernel. */
static int reader_line(const char *msg, void *arg)
{
    lmc__readers *r = arg;
    long pid;
    uint64_t id;
    if (!lmc__lmdb_reader_line(msg, &pid, &id))
        return 0;
    bool alive = pid_alive(pid);
    if (alive)
        r->slots++;
    else
        r->stale++;
    if (id) {
        if (alive)
            r->active++;
        if (r->oldest == 0 || id < r->oldest)
            r->oldest = id;
    }
    return 0;
}

void lmc__readers_get(lmc__core *k, lmc__readers *r)
{
    memset(r, 0, sizeof *r);
    mdb_reader_list(k->env, reader_line, r);
}

/* The oldest snapshot held by any reader, without asking the kernel about
 * each one: the writers' wait loop polls this. */
static int oldest_line(const char *msg, void *arg)
{
    uint64_t *oldest = arg;
    long pid;
    uint64_t id;
    if (lmc__lmdb_reader_line(msg, &pid, &id) && id && (*oldest == 0 || id < *oldest))
        *oldest = id;
    return 0;
}

static uint64_t oldest_snapshot(lmc__core *k)
{
    uint64_t oldest = 0;
    mdb_reader_list(k->env, oldest_line, &oldest);
    return oldest;
}

/* ------------------------------------------------------------------------ */
/* Pinned pages                                                             */
/* ------------------------------------------------------------------------ */

int lmc__space_get(lmc *h, lmc__space *sp)
{
    lmc__core *k = h->core;
    memset(sp, 0, sizeof *sp);
    /* Readers first: a snapshot taken after this point can only be newer. */
    lmc__readers rd;
    lmc__readers_get(k, &rd);
    sp->dead_readers = rd.stale;
    lmc__rtxn *r;
    int rc = lmc__rbegin(h, &r);
    if (rc)
        return rc;
    /* This thread's own read txn is in the table too, at the newest
     * snapshot, so it never lowers the oldest one. */
    sp->last_txnid = (uint64_t)mdb_txn_id(r->txn);
    sp->oldest = rd.oldest && rd.oldest < sp->last_txnid ? rd.oldest : sp->last_txnid;
    MDB_envinfo info;
    mdb_env_info(k->env, &info);
    sp->total_pages = k->total_pages;
    uint64_t hwm = info.me_last_pgno + 1;
    sp->tail_pages = sp->total_pages > hwm ? sp->total_pages - hwm : 0;
    /* Walk the free list from its newest record back to the oldest
     * snapshot: only those records are pinned, and there are at most as
     * many of them as the readers lag. */
    MDB_cursor *cur;
    rc = mdb_cursor_open(r->txn, 0, &cur);
    if (rc == 0) {
        MDB_val key, d;
        rc = mdb_cursor_get(cur, &key, &d, MDB_LAST);
        while (rc == 0) {
            uint64_t id = lmc__lmdb_freed_by(&key);
            uint64_t n = lmc__lmdb_freed_count(&d);
            if (id >= sp->last_txnid)
                sp->pinned_by_last += n;
            else if (id >= sp->oldest)
                sp->pinned_by_readers += n;
            else
                break;
            rc = mdb_cursor_get(cur, &key, &d, MDB_PREV);
        }
        mdb_cursor_close(cur);
    }
    lmc__rend(r);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(h, rc, "reading the free list");
    return 0;
}

/*
 * Sleep until every reader's snapshot is at least `snapshot` (or no reader
 * is inside a transaction), or until `deadline` (CLOCK_MONOTONIC, µs).
 * Sleeping is what lets a preempted reader run again on a busy machine, and
 * it finishes its read within microseconds once it does; the naps grow from
 * 20 µs to 1 ms so that a quick release is caught quickly and a slow one
 * costs no CPU.  Slots of dead readers never move: they are cleared.
 */
bool lmc__readers_wait(lmc *h, uint64_t snapshot, uint64_t deadline, uint64_t *waited_us)
{
    lmc__core *k = h->core;
    uint64_t t0 = lmc__mono_us(), now = t0;
    bool ok = false;
    for (unsigned nap = 20; now < deadline; nap = nap < 500 ? nap * 2 : 1000) {
        struct timespec ts = {0, (long)nap * 1000};
        nanosleep(&ts, NULL);
        uint64_t oldest = oldest_snapshot(k);
        if (oldest == 0 || oldest >= snapshot) {
            ok = true;
            break;
        }
        int dead = 0;
        if (mdb_reader_check(k->env, &dead) == 0 && dead > 0)
            lmc__count(k, LMC__C_readers_cleared, (uint64_t)dead);
        now = lmc__mono_us();
    }
    *waited_us += lmc__mono_us() - t0;
    return ok;
}
