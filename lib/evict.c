/*
 * evict.c - removing entries to make room, and measuring how full the map is.
 *
 * The policy of the design, in order: expired entries; then live entries
 * with a TTL, soonest to expire first (both read straight off the expiry
 * index, whose keys start with the big-endian expiry time, so removing N
 * entries costs O(N) and never a scan of the cache); then entries without a
 * TTL by approximate LRU.  For LRU, recency lives outside LMDB (recency.c);
 * here a window of candidates is read from a moving hand over the entries,
 * sorted by their recency, and the coldest are removed, much like Redis's
 * sampled eviction, without turning reads into writes.
 *
 * Fill is "used pages / pages in the map", where used pages are LMDB's file
 * high-water mark minus the pages on its free list (lmdb-rules 4.4): pages
 * freed by earlier transactions are reused before the file grows.
 */
#include "fmacros.h"

#include <stdlib.h>
#include <string.h>

#include "internal.h"

int lmc__evict_by_expiry(lmc__wctx *w, bool only_expired, uint64_t budget, uint64_t *removed)
{
    lmc__core *k = w->k;
    MDB_cursor *cur;
    *removed = 0;
    int rc = mdb_cursor_open(w->txn, k->dbi_expiry, &cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open (expiry)");
    MDB_val key, d;
    uint64_t n = 0;
    rc = mdb_cursor_get(cur, &key, &d, MDB_FIRST);
    while (rc == 0 && n < budget) {
        if (key.mv_size <= 8 || key.mv_size > LMC__EXPKEY_MAX) {
            /* Not a row we wrote: drop it. */
            if ((rc = mdb_cursor_del(cur, 0)))
                break;
            rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
            continue;
        }
        uint64_t exp = lmc__be64_get(key.mv_data);
        bool expired = exp <= (uint64_t)w->now;
        if (only_expired && !expired)
            break;
        /* Copy the stored key out of the index page before changing it. */
        unsigned char sbuf[LMC__KEY_STORED_LONG];
        MDB_val skey = {key.mv_size - 8, sbuf};
        memcpy(sbuf, (unsigned char *)key.mv_data + 8, skey.mv_size);
        MDB_val old;
        rc = mdb_get(w->txn, k->dbi_entries, &skey, &old);
        lmc__entry e;
        if (rc == 0 && lmc__entry_parse(&skey, &old, &e) == 0 && e.expires_at == exp) {
            if ((rc = lmc__entry_remove_noindex(w, &skey, &old))) {
                mdb_cursor_close(cur);
                return rc;
            }
            w->ctr[expired ? LMC__C_evictions_expired : LMC__C_evictions_soonest]++;
            n++;
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            break;
        }
        /* Either way the row goes: it was the entry's, or an orphan. */
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    *removed = n;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__wfail(w, rc, "evicting through the expiry index");
    return 0;
}

typedef struct lru_cand {
    uint32_t rec;
    uint16_t len;
    unsigned char key[LMC__KEY_STORED_LONG];
} lru_cand;

static int cand_cmp(const void *a, const void *b)
{
    const lru_cand *x = a, *y = b;
    return (x->rec > y->rec) - (x->rec < y->rec);
}

int lmc__evict_lru(lmc__wctx *w, uint64_t budget, uint64_t window, uint64_t *removed)
{
    lmc__core *k = w->k;
    *removed = 0;
    if (budget == 0)
        return 0;
    if (window < budget)
        window = budget;
    lru_cand *cands = lmc__malloc(window * sizeof *cands);
    if (!cands)
        return lmc__err(w->h, LMC_ENOMEM, "out of memory for %llu eviction candidates",
                        (unsigned long long)window);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, k->dbi_entries, &cur);
    if (rc) {
        lmc__free(cands);
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open");
    }
    MDB_val key, d;
    bool wrapped = false;
    if (k->lru_hand_len) {
        key.mv_size = k->lru_hand_len;
        key.mv_data = k->lru_hand;
        rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cur, &key, &d, MDB_FIRST);
        wrapped = true;
    }
    /* Read candidates: entries without TTL (and malformed ones, coldest of
     * all), from the hand on, wrapping around once. */
    uint64_t nc = 0, visited = 0, total = 0;
    MDB_stat st;
    if (mdb_stat(w->txn, k->dbi_entries, &st) == 0)
        total = st.ms_entries;
    while (nc < window && visited < total) {
        if (rc == MDB_NOTFOUND) {
            if (wrapped)
                break;
            wrapped = true;
            rc = mdb_cursor_get(cur, &key, &d, MDB_FIRST);
            continue;
        }
        if (rc)
            break;
        visited++;
        lmc__entry e;
        int bad = lmc__entry_parse(&key, &d, &e) != 0;
        if (bad || e.expires_at == 0) {
            lru_cand *c = &cands[nc++];
            c->len = (uint16_t)key.mv_size;
            memcpy(c->key, key.mv_data, key.mv_size);
            c->rec = bad ? 0 : atomic_load_explicit(lmc__recency_cell(k, &key),
                                                    memory_order_relaxed);
        }
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
    }
    /* The hand moves on to where this window stopped. */
    if (rc == 0) {
        memcpy(k->lru_hand, key.mv_data, key.mv_size);
        k->lru_hand_len = key.mv_size;
    } else {
        k->lru_hand_len = 0;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        lmc__free(cands);
        return lmc__wfail(w, rc, "reading eviction candidates");
    }
    qsort(cands, nc, sizeof *cands, cand_cmp);
    uint64_t n = 0;
    for (uint64_t i = 0; i < nc && n < budget; i++) {
        MDB_val skey = {cands[i].len, cands[i].key}, old;
        rc = mdb_get(w->txn, k->dbi_entries, &skey, &old);
        if (rc == MDB_NOTFOUND)
            continue;
        rc = rc ? lmc__wfail(w, rc, "mdb_get (evict)") : lmc__entry_remove(w, NULL, &skey, &old);
        if (rc) {
            lmc__free(cands);
            return rc;
        }
        n++;
    }
    lmc__free(cands);
    w->ctr[LMC__C_evictions_lru] += n;
    *removed = n;
    return 0;
}

typedef struct room_arg {
    uint64_t budget;
    uint64_t removed;
} room_arg;

static int op_room(lmc__wctx *w, void *p)
{
    room_arg *a = p;
    uint64_t n = 0;
    int rc = lmc__evict_by_expiry(w, true, a->budget, &n);
    if (rc == 0 && n == 0)
        rc = lmc__evict_by_expiry(w, false, a->budget, &n);
    if (rc == 0 && n == 0)
        rc = lmc__evict_lru(w, a->budget, a->budget * 4, &n);
    a->removed = n;
    return rc;
}

/*
 * A write found the map full.  Evict a batch that grows with each round (16
 * entries, then 32, ... up to 4096) in its own transaction.  If even that
 * transaction finds the map full (deletes need fresh pages too), retry with a
 * single eviction, and if that fails too return LMC__EMAPFULL.  With nothing
 * left to evict, the write cannot succeed: LMC_ENOSPC.
 */
int lmc__make_room(lmc *h, unsigned round)
{
    room_arg a = {(uint64_t)16 << (round < 8 ? round : 8), 0};
    for (int tries = 0; tries < 2; tries++) {
        lmc__wctx w;
        memset(&w, 0, sizeof w);
        w.h = h;
        w.k = h->core;
        int rc = lmc__wbegin(h, &w.txn);
        if (rc)
            return rc;
        w.now = lmc__now_ms();
        rc = op_room(&w, &a);
        if (rc == 0)
            rc = lmc__totals_apply(&w);
        if (rc == 0) {
            if (a.removed == 0) {
                mdb_txn_abort(w.txn);
                return lmc__err(h, LMC_ENOSPC, "%s is full and has nothing left to evict",
                                h->core->path);
            }
            rc = lmc__wcommit(h, w.txn);
            if (rc == 0) {
                for (unsigned i = 0; i < LMC__NCTR; i++)
                    if (w.ctr[i])
                        lmc__count(w.k, i, w.ctr[i]);
                return 0;
            }
        } else {
            mdb_txn_abort(w.txn);
        }
        if (rc != LMC__EMAPFULL)
            return rc;
        a.budget = 1;
    }
    return LMC__EMAPFULL; /* the caller decides between waiting and giving up */
}

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
        while ((rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT)) == 0) {
            /* Each record is an ID list whose first word is its length. */
            size_t cnt;
            if (d.mv_size >= sizeof cnt) {
                memcpy(&cnt, d.mv_data, sizeof cnt);
                free_pages += cnt;
            }
        }
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
