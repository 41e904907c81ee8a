/*
 * evict.c - choosing what to evict and removing it, inside a transaction.
 *
 * Expired entries are garbage: they are read straight off the expiry index,
 * whose keys start with the big-endian expiry time, so removing N of them
 * costs O(N) and never a scan of the cache.
 *
 * Capacity eviction is different, because what runs out is pages, and a
 * B-tree gives a page back only when it is nearly empty: LMDB merges a leaf
 * into its neighbour only below a quarter full.  Removing scattered entries
 * (the 20% least recently used, say) empties no page at all, so the map stays
 * as full as before, a writer appending ever-increasing keys still finds no
 * page, and a sweeper that waits for the fill to drop ends up deleting three
 * quarters of the cache.  So capacity eviction works on *runs*: groups of
 * consecutive entries about three leaf pages long.  Deleting a run frees its
 * pages.  A run is scored by its most valuable member, in the policy order
 * of the design: runs whose entries all have a TTL go first, the one whose
 * last entry expires soonest first; then runs with entries without TTL, the
 * one whose most recently used entry is coldest first (recency lives outside
 * LMDB, recency.c).  A hot key thus protects its run; cold ranges go whole.
 *
 * This file chooses what goes and removes it inside a transaction it is
 * given; the write loop (write.c, lmc__make_room) and the sweeper (sweep.c)
 * run those transactions.
 */
#include "fmacros.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "clock.h"
#include "error.h"
#include "evict.h"
#include "lmdbmeta.h"
#include "slots.h"
#include "recency.h"

/* ------------------------------------------------------------------------ */
/* Expired entries, through the expiry index                                */
/* ------------------------------------------------------------------------ */

/* Make room for need bytes in the growing buffer *buf of *cap bytes, len of
 * them in use (first: its size when it is first allocated); false when out
 * of memory, the buffer as it was. */
static bool buf_reserve(unsigned char **buf, size_t *cap, size_t len, size_t need, size_t first)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap * 2 : first;
    while (c < need)
        c *= 2;
    unsigned char *b = lmc__malloc(c);
    if (!b)
        return false;
    if (len)
        memcpy(b, *buf, len);
    lmc__free(*buf);
    *buf = b;
    *cap = c;
    return true;
}

/* The stored keys of lagging rows, filed again once the walk is over. */
typedef struct refiles {
    unsigned char *buf;
    size_t len, cap;
} refiles;

static bool refiles_add(refiles *r, const MDB_val *skey)
{
    size_t need = r->len + sizeof(uint16_t) + skey->mv_size;
    if (!buf_reserve(&r->buf, &r->cap, r->len, need, 4096))
        return false;
    uint16_t n = (uint16_t)skey->mv_size;
    memcpy(r->buf + r->len, &n, sizeof n);
    memcpy(r->buf + r->len + sizeof n, skey->mv_data, n);
    r->len = need;
    return true;
}

int lmc__evict_expired(lmc__wctx *w, uint64_t budget, uint64_t *removed, uint64_t *refiled,
                       bool *more)
{
    lmc__core *k = w->k;
    MDB_cursor *cur;
    *removed = *refiled = 0;
    *more = false;
    int rc = mdb_cursor_open(w->txn, k->dbi_main, &cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open (expiry rows)");
    /* A row's time is never later than its entry's (format.h), so the walk
     * ends at the first row after now.  A row up to now is an expired
     * entry's, or lags behind a live one: that row goes now and is put
     * again at its entry's time after the walk (the rows share the tree
     * with the cursor), so that the next walk does not meet it again.
     * Rows filed again count against the work of one call, as removals do. */
    const uint64_t now = (uint64_t)w->now, max_looked = budget * 4;
    refiles rf = {NULL, 0, 0};
    MDB_val key = lmc__rows_start(), d;
    uint64_t n = 0, looked = 0;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    while (rc == 0 && *(const unsigned char *)key.mv_data == LMC__NS_ROW) {
        uint64_t at;
        uint16_t seq;
        MDB_val row_skey;
        if (lmc__expkey_parse(&key, &at, &seq, &row_skey) != 0) {
            /* Not a row we wrote: drop it. */
            if ((rc = mdb_cursor_del(cur, 0)))
                break;
            w->d_rows--;
            rc = lmc__lmdb_next_after_del(cur, &key, &d);
            continue;
        }
        if (at > now)
            break;
        if (n >= budget || looked >= max_looked) {
            *more = true;
            break;
        }
        looked++;
        /* Copy the stored key out of the row's page before changing the
         * tree. */
        unsigned char sbuf[LMC__KEY_STORED_LONG];
        MDB_val skey = {row_skey.mv_size, sbuf};
        memcpy(sbuf, row_skey.mv_data, skey.mv_size);
        MDB_val old;
        rc = mdb_get(w->txn, k->dbi_main, &skey, &old);
        lmc__entry e;
        bool its = rc == 0 && lmc__entry_parse(&skey, &old, &e) == 0 &&
                   lmc__entry_row_at(&e) == at && e.row_seq == seq;
        if (its && lmc__entry_gone_at(e.expires_at, e.grace_ms) > now) {
            if (!refiles_add(&rf, &skey)) {
                rc = lmc__err(w->h, LMC_ENOMEM, "out of memory walking the expiry index");
                goto out;
            }
        } else if (its) {
            /* The entry goes by key, while the cursor sits on its row (LMDB
             * keeps every cursor of a transaction right when others change
             * the tree), and the row through the cursor after it. */
            if ((rc = lmc__entry_remove(w, NULL, &skey, &old, false)))
                goto out;
            lmc__wcount(w, LMC__C_evictions_expired, 1);
            n++;
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            break;
        }
        /* Either way the row goes: it was the entry's, or an orphan. */
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        w->d_rows--;
        rc = lmc__lmdb_next_after_del(cur, &key, &d);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rc = lmc__mdb_err(w->h, rc, "evicting through the expiry index");
        goto out;
    }
    rc = 0;
    mdb_cursor_close(cur);
    cur = NULL;
    for (size_t off = 0; rc == 0 && off < rf.len; (*refiled)++) {
        uint16_t len;
        memcpy(&len, rf.buf + off, sizeof len);
        MDB_val skey = {len, rf.buf + off + sizeof len};
        rc = lmc__entry_refile(w, &skey);
        off += sizeof len + len;
    }
out:
    if (cur)
        mdb_cursor_close(cur);
    lmc__free(rf.buf);
    *removed = n;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Runs                                                                     */
/* ------------------------------------------------------------------------ */

void lmc__runs_free(lmc__runs *r)
{
    lmc__free(r->v);
    lmc__free(r->arena);
    memset(r, 0, sizeof *r);
}

static int arena_put(lmc__runs *r, const void *p, size_t n, size_t *off)
{
    if (!buf_reserve(&r->arena, &r->acap, r->alen, r->alen + n, 16384))
        return LMC_ENOMEM;
    memcpy(r->arena + r->alen, p, n);
    *off = r->alen;
    r->alen += n;
    return 0;
}

static lmc__run *run_new(lmc__runs *r)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        lmc__run *v = lmc__malloc(cap * sizeof *v);
        if (!v)
            return NULL;
        if (r->n)
            memcpy(v, r->v, r->n * sizeof *v);
        lmc__free(r->v);
        r->v = v;
        r->cap = cap;
    }
    lmc__run *x = &r->v[r->n++];
    memset(x, 0, sizeof *x);
    return x;
}

unsigned lmc__run_len(lmc__core *k, MDB_txn *txn)
{
    MDB_stat st;
    if (mdb_stat(txn, k->dbi_main, &st) != 0 || st.ms_entries == 0)
        return 1;
    uint64_t per_leaf = st.ms_leaf_pages ? st.ms_entries / st.ms_leaf_pages : st.ms_entries;
    uint64_t len = 3 * (per_leaf ? per_leaf : 1);
    /* Small caches get at least 16 runs, so that eviction stays selective. */
    if (len > st.ms_entries / 16)
        len = st.ms_entries / 16;
    if (len > 512)
        len = 512;
    return len ? (unsigned)len : 1;
}

/* Close the open run: record its last key and its class and score. */
static int run_close(lmc__runs *r, lmc__run *x, const MDB_val *last, bool bad, bool no_ttl,
                     uint64_t max_exp, uint64_t max_rec)
{
    size_t off;
    if (arena_put(r, last->mv_data, last->mv_size, &off))
        return LMC_ENOMEM;
    x->last = off;
    x->llen = (uint16_t)last->mv_size;
    x->cls = bad ? 0 : no_ttl ? 2 : 1;
    x->score = x->cls == 1 ? max_exp : x->cls == 2 ? max_rec : 0;
    return 0;
}

int lmc__runs_scan(lmc *h, MDB_txn *txn, const lmc__resume *start, uint64_t max_entries,
                   unsigned run_len, lmc__runs *out, lmc__resume *next)
{
    lmc__core *k = h->core;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, k->dbi_main, &cur);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_cursor_open");
    MDB_val key, d, prev = {0, NULL};
    unsigned char prevbuf[LMC__KEY_STORED_LONG];
    lmc__range all;
    lmc__range_prefix(&all, "", 0);
    key = start ? lmc__resume_key(start, &all) : all.from; /* from the first entry */
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    next->set = false; /* only now: next may be start */
    if (rc == 0 && !lmc__is_entry_key(&key))
        rc = MDB_NOTFOUND; /* past the entries: the main database's own keys */
    lmc__run *x = NULL;
    const int64_t now_ms = lmc__coarse_ms();
    bool bad = false, no_ttl = false;
    uint64_t max_exp = 0, max_rec = 0, scanned = 0;
    /* A run also ends where entries switch between having a TTL and not
     * (once it holds a quarter of its length), so that a group of entries
     * with a TTL is not hidden in a run scored by its neighbours' recency. */
    const unsigned min_split = run_len / 4 ? run_len / 4 : 1;
    while (rc == 0) {
        if (scanned >= max_entries) {
            lmc__resume_at(next, &key);
            break;
        }
        lmc__entry e;
        int parsed = lmc__entry_parse(&key, &d, &e);
        if (x && parsed == 0 && x->count >= min_split && (max_exp || no_ttl) &&
            (e.expires_at != 0) == no_ttl) {
            if (run_close(out, x, &prev, bad, no_ttl, max_exp, max_rec)) {
                rc = LMC_ENOMEM;
                goto fail;
            }
            x = NULL;
        }
        if (!x) {
            if (!(x = run_new(out)) || arena_put(out, key.mv_data, key.mv_size, &x->first)) {
                rc = LMC_ENOMEM;
                goto fail;
            }
            x->flen = (uint16_t)key.mv_size;
            bad = no_ttl = false;
            max_exp = max_rec = 0;
        }
        if (parsed != 0) {
            bad = true;
        } else if (e.expires_at) {
            if (e.expires_at > max_exp)
                max_exp = e.expires_at;
        } else {
            no_ttl = true;
            /* Its last read (the recency array) or its last write (its
             * header), whichever came later. */
            uint32_t rec = lmc__recency_of(k, &key, now_ms);
            uint32_t wrec = lmc__recency_score(k, lmc__entry_written(&e), now_ms);
            if (wrec > rec)
                rec = wrec;
            if (rec > max_rec)
                max_rec = rec;
        }
        x->count++;
        scanned++;
        memcpy(prevbuf, key.mv_data, key.mv_size);
        prev.mv_size = key.mv_size;
        prev.mv_data = prevbuf;
        if (x->count >= run_len) {
            if (run_close(out, x, &prev, bad, no_ttl, max_exp, max_rec)) {
                rc = LMC_ENOMEM;
                goto fail;
            }
            x = NULL;
        }
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
        if (rc == 0 && !lmc__is_entry_key(&key))
            rc = MDB_NOTFOUND;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_cursor_close(cur);
        return lmc__mdb_err(h, rc, "mdb_cursor_get (runs)");
    }
    if (x && run_close(out, x, &prev, bad, no_ttl, max_exp, max_rec)) {
        rc = LMC_ENOMEM;
        goto fail;
    }
    mdb_cursor_close(cur);
    return 0;
fail:
    mdb_cursor_close(cur);
    return lmc__err(h, rc, "out of memory listing eviction candidates");
}

/* qsort context: the runs being sorted (qsort has no argument). */
static _Thread_local const lmc__runs *sort_runs;

static int cmp_coldest(const void *a, const void *b)
{
    const lmc__run *x = &sort_runs->v[*(const size_t *)a];
    const lmc__run *y = &sort_runs->v[*(const size_t *)b];
    if (x->cls != y->cls)
        return x->cls < y->cls ? -1 : 1;
    return (x->score > y->score) - (x->score < y->score);
}

static int cmp_key_order(const void *a, const void *b)
{
    const lmc__run *x = &sort_runs->v[*(const size_t *)a];
    const lmc__run *y = &sort_runs->v[*(const size_t *)b];
    return lmc__key_cmp(sort_runs->arena + x->first, x->flen, sort_runs->arena + y->first, y->flen);
}

void lmc__runs_order(const lmc__runs *r, size_t *idx, size_t n, bool by_key)
{
    sort_runs = r;
    qsort(idx, n, sizeof *idx, by_key ? cmp_key_order : cmp_coldest);
    sort_runs = NULL;
}

/* ------------------------------------------------------------------------ */
/* Emergency room for a write that found the map full                       */
/* ------------------------------------------------------------------------ */

/* Whether a run's range of keys holds key. */
static bool run_holds(const lmc__runs *r, const lmc__run *x, const MDB_val *key)
{
    return lmc__key_cmp(r->arena + x->first, x->flen, key->mv_data, key->mv_size) <= 0 &&
           lmc__key_cmp(key->mv_data, key->mv_size, r->arena + x->last, x->llen) <= 0;
}

/* Evict expired entries; if there are none, the coldest runs of a window of
 * runs read from the LRU hand on (wrapping around once), up to budget
 * entries. */
int lmc__evict_for_room(lmc__wctx *w, void *p)
{
    lmc__room_arg *a = p;
    lmc__core *k = w->k;
    const uint64_t budget = *a->budget;
    a->removed = 0;
    uint64_t n = 0, refiled;
    bool more;
    int rc = lmc__evict_expired(w, budget, &n, &refiled, &more);
    if (rc || n) {
        a->removed = n;
        return rc;
    }
    unsigned len = lmc__run_len(k, w->txn);
    lmc__runs r;
    memset(&r, 0, sizeof r);
    lmc__resume next;
    /* At least eight runs to choose from, and enough for the budget twice. */
    uint64_t window = (uint64_t)len * 8;
    if (window < budget * 2)
        window = budget * 2;
    rc = lmc__runs_scan(w->h, w->txn, &k->lru_hand, window, len, &r, &next);
    uint64_t got = 0;
    for (size_t i = 0; rc == 0 && i < r.n; i++)
        got += r.v[i].count;
    if (rc == 0 && got < window && k->lru_hand.set) {
        /* The hand reached the end: continue from the first entry. */
        rc = lmc__runs_scan(w->h, w->txn, NULL, window - got, len, &r, &next);
    }
    if (rc == 0)
        k->lru_hand = next;
    /* Entries with a TTL go before entries without: also offer the runs
     * around the entry that expires soonest, so that a window of the hand
     * that holds only entries without TTL does not decide alone. */
    MDB_cursor *xc;
    if (rc == 0 && mdb_cursor_open(w->txn, k->dbi_main, &xc) == 0) {
        MDB_val xk = lmc__rows_start(), xd, skey;
        uint64_t exp;
        uint16_t seq;
        lmc__resume from;
        from.set = false;
        if (mdb_cursor_get(xc, &xk, &xd, MDB_SET_RANGE) == 0 &&
            lmc__expkey_parse(&xk, &exp, &seq, &skey) == 0)
            lmc__resume_at(&from, &skey);
        mdb_cursor_close(xc);
        if (from.set) {
            lmc__resume unused;
            rc = lmc__runs_scan(w->h, w->txn, &from, window / 2 + len, len, &r, &unused);
        }
    }
    size_t *idx = rc == 0 && r.n ? lmc__malloc(r.n * sizeof *idx) : NULL;
    if (rc == 0 && r.n && !idx)
        rc = lmc__err(w->h, LMC_ENOMEM, "out of memory evicting");
    if (rc == 0 && r.n) {
        for (size_t i = 0; i < r.n; i++)
            idx[i] = i;
        lmc__runs_order(&r, idx, r.n, false);
        MDB_cursor *cur;
        rc = mdb_cursor_open(w->txn, k->dbi_main, &cur);
        if (rc) {
            rc = lmc__mdb_err(w->h, rc, "mdb_cursor_open");
        } else {
            for (size_t i = 0; rc == 0 && i < r.n && a->removed < budget; i++) {
                const lmc__run *x = &r.v[idx[i]];
                if (a->protect && run_holds(&r, x, a->protect))
                    continue;
                lmc__range range;
                lmc__run_range(&r, x, &range);
                lmc__resume unused;
                rc = lmc__entry_remove_range(w, cur, &range, &range.from, budget - a->removed,
                                             LMC__COUNT_EVICTIONS, &a->removed, &unused);
            }
            mdb_cursor_close(cur);
        }
    }
    lmc__free(idx);
    lmc__runs_free(&r);
    return rc;
}

void lmc__entry_pages_share(const lmc__core *k, MDB_txn *txn, uint64_t *entries,
                            uint64_t *pages)
{
    *entries = *pages = 0;
    MDB_stat st;
    if (mdb_stat(txn, k->dbi_main, &st) != 0)
        return;
    /* The main tree holds the entries and their expiry rows (and a few keys
     * of lmc's own): an entry's share of the pages is its row's too. */
    uint64_t rows = lmc__rows_guess(k);
    *entries = st.ms_entries > rows ? st.ms_entries - rows : st.ms_entries;
    *pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
}

uint64_t lmc__evict_budget(const lmc__core *k, MDB_txn *txn, uint64_t want_pages)
{
    uint64_t entries, pages;
    lmc__entry_pages_share(k, txn, &entries, &pages);
    return pages ? want_pages * entries / pages + 1 : 1;
}

void lmc__run_range(const lmc__runs *r, const lmc__run *x, lmc__range *out)
{
    MDB_val first = {x->flen, r->arena + x->first}, last = {x->llen, r->arena + x->last};
    lmc__range_closed(out, &first, &last);
}
