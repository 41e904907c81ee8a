/*
 * entry.c - every change of an entry inside a write transaction.  An entry
 * with a TTL has a row in the expiry index (format.h), which moves when its
 * expiry time moves earlier or more than the row lag allows later, and goes
 * when the entry goes, so that sweeping
 * expired entries costs O(expired) and the index never points at nothing.
 * The change of the key and value byte totals is counted in the write's
 * context and added to the stats file after the commit (kept in LMDB they
 * would cost every write a second path of page copies).
 */
#include "fmacros.h"

#include <string.h>

#include "alloc.h"
#include "entry.h"
#include "error.h"
#include "flushtab.h"
#include "lmdbmeta.h"
#include "recency.h"

/* The row time of a stored entry about to go away or be replaced (0 for
 * none, or for a malformed entry, which lmc cannot account for) and its row
 * sequence, and its bytes off the totals.  Read before the entry changes:
 * old points into its page. */
static uint64_t entry_forget(lmc__wctx *w, const MDB_val *skey, const MDB_val *old,
                             uint16_t *seq)
{
    lmc__entry e;
    *seq = 0;
    if (lmc__entry_parse(skey, old, &e) != 0)
        return 0;
    w->d_key_bytes -= (int64_t)e.klen;
    w->d_value_bytes -= (int64_t)e.vlen;
    *seq = e.row_seq;
    return lmc__entry_row_at(&e);
}

/* The row sequence of a row filed now: the low bits of this transaction's
 * version (format.h, "Expiry rows"). */
static uint16_t row_seq_now(const lmc__wctx *w)
{
    return (uint16_t)(w->version & 0xffff);
}

/* Put or delete the expiry row (at, seq, skey) of an entry.  A new row
 * sorts after nearly every row there is (its time is now plus a TTL, its
 * sequence this transaction's), so it goes in through a cursor of its own
 * that stays on the last row put: LMDB then finds its place from that leaf
 * page, without a search from the root; a row that does not fall there
 * costs the full search it would cost anyway.  The cursor is opened for
 * the second row of a transaction: for one row alone, opening it (a malloc
 * and a free) costs more than it saves. */
static int row_put(lmc__wctx *w, uint64_t at, uint16_t seq, const MDB_val *skey)
{
    unsigned char ek[LMC__EXPKEY_MAX];
    MDB_val row = {lmc__expkey_make(ek, at, seq, skey), ek}, empty = {0, NULL};
    int rc = 0;
    if (!w->rcur && w->rows_put && (rc = mdb_cursor_open(w->txn, w->k->dbi_main, &w->rcur)))
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open (expiry rows)");
    w->rows_put++;
    if (w->rcur)
        rc = mdb_cursor_put(w->rcur, &row, &empty, 0);
    else
        rc = mdb_put(w->txn, w->k->dbi_main, &row, &empty, 0);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_put (expiry row)");
    w->d_rows++;
    return 0;
}

static int row_del(lmc__wctx *w, uint64_t at, uint16_t seq, const MDB_val *skey)
{
    unsigned char ek[LMC__EXPKEY_MAX];
    MDB_val row = {lmc__expkey_make(ek, at, seq, skey), ek};
    int rc = mdb_del(w->txn, w->k->dbi_main, &row, NULL);
    if (rc == 0)
        w->d_rows--;
    return rc && rc != MDB_NOTFOUND ? lmc__mdb_err(w->h, rc, "mdb_del (expiry row)") : 0;
}

/* The largest entry lmc__entry_store writes on the stack before LMDB copies
 * it in: the most a node of a 4 KiB page holds, beyond which LMDB stores the
 * value on pages of its own, where one more copy would cost more than the
 * search it saves. */
#define ENTRY_STAGED_MAX 2048

int lmc__entry_store(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                     const void *val, size_t vlen, const lmc__emeta *m, const MDB_val *old)
{
    lmc__core *k = w->k;
    uint16_t old_seq = 0;
    uint64_t old_at = old ? entry_forget(w, &sk->v, old, &old_seq) : 0;
    uint64_t at = lmc__entry_gone_at(m->expires_at, m->grace_ms);
    MDB_val skey = sk->v;
    MDB_val d = {lmc__entry_size(klen, vlen, sk->is_long, lmc__emeta_ext(m)), NULL};
    /* The old row stays if the entry goes no earlier than it and at most
     * LMC__ROW_LAG_MAX ms later (format.h), for an entry that stays in its
     * leaf page: the sweeper files a lagging row again by rewriting its
     * entry's header, which must not need pages of its own on a full map. */
    lmc__emeta mm = *m;
    mm.row_lag = 0;
    mm.row_seq = at ? row_seq_now(w) : 0;
    if (!at) /* a write is an access: its time goes into the header */
        lmc__emeta_set_written(&mm, lmc__recency_now(k, w->now));
    bool keep = old_at && (at == old_at ||
                           (at > old_at && at - old_at <= LMC__ROW_LAG_MAX &&
                            lmc__lmdb_value_pages(k->psize, skey.mv_size, d.mv_size) == 0));
    if (keep) {
        mm.row_lag = (uint16_t)(at - old_at);
        mm.row_seq = old_seq;
    }
    /* The entry first, through the cursor while it still sits on the old one
     * (the rows share the tree: changing one would move the cursor). */
    int rc;
    unsigned char small[ENTRY_STAGED_MAX];
    bool staged = false;
    if (old && w->cur && old->mv_data == w->cur_at && d.mv_size <= sizeof small) {
        /* LMDB 0.9 takes the cursor's position as it stands only when the
         * flags are exactly MDB_CURRENT; MDB_CURRENT | MDB_RESERVE looks
         * for the key in the page again, about 250 of a set's 8,300
         * instructions.  So an entry
         * that fits in a leaf is written here first and copied in by LMDB;
         * copying it twice costs less than the search. */
        lmc__entry_write(small, key, klen, sk->is_long, val, vlen, &mm);
        d.mv_data = small;
        staged = true;
        rc = mdb_cursor_put(w->cur, &skey, &d, MDB_CURRENT);
    } else if (old && w->cur && old->mv_data == w->cur_at)
        rc = mdb_cursor_put(w->cur, &skey, &d, MDB_CURRENT | MDB_RESERVE);
    else if (w->cur)
        /* A new key, through the cursor a lookup left next to where it
         * goes: LMDB searches only that leaf page when the key falls
         * between its first and last keys, and the whole tree otherwise
         * (the cursor may have moved since; the answer is the same). */
        rc = mdb_cursor_put(w->cur, &skey, &d, MDB_RESERVE);
    else
        rc = mdb_put(w->txn, k->dbi_main, &skey, &d, MDB_RESERVE);
    w->cur_at = NULL;
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_put (entry)");
    if (!staged)
        lmc__entry_write(d.mv_data, key, klen, sk->is_long, val, vlen, &mm);
    /* Then its row, unless it stays. */
    if (!keep) {
        if (old_at && (rc = row_del(w, old_at, old_seq, &sk->v)))
            return rc;
        if (at && (rc = row_put(w, at, mm.row_seq, &sk->v)))
            return rc;
    }
    w->d_key_bytes += (int64_t)klen;
    w->d_value_bytes += (int64_t)vlen;
    return 0;
}

int lmc__entry_refile(lmc__wctx *w, const MDB_val *skey)
{
    MDB_val old;
    int rc = mdb_get(w->txn, w->k->dbi_main, (MDB_val *)(uintptr_t)skey, &old);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_get (refiling an expiry row)");
    lmc__entry e;
    if (lmc__entry_parse(skey, &old, &e) != 0)
        return 0; /* malformed: it has no row (entry_forget) */
    uint64_t gone = lmc__entry_gone_at(e.expires_at, e.grace_ms);
    if (!gone)
        return 0; /* no TTL, no row: its bytes 2 to 5 are its write time */
    if (e.row_lag == 0)
        return row_put(w, gone, e.row_seq, skey);
    /* The same entry with a row lag of 0 and the sequence of now, from a
     * copy: the put may move the old bytes.  A lagging entry stays in its
     * leaf page (lmc__entry_store), so the copy is small and the put needs
     * no pages of its own. */
    uint16_t seq = row_seq_now(w);
    unsigned char small[4096], *buf = small;
    if (old.mv_size > sizeof small && !(buf = lmc__malloc(old.mv_size)))
        return lmc__err(w->h, LMC_ENOMEM, "out of memory refiling an expiry row");
    memcpy(buf, old.mv_data, old.mv_size);
    memset(buf + 2, 0, 2);
    memcpy(buf + 4, &seq, 2);
    MDB_val d = {old.mv_size, buf};
    rc = mdb_put(w->txn, w->k->dbi_main, (MDB_val *)(uintptr_t)skey, &d, 0);
    if (buf != small)
        lmc__free(buf);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_put (refiling an expiry row)");
    return row_put(w, gone, seq, skey);
}

/* Remove one entry; *at gets its row time (0: no TTL, or a malformed
 * entry), for the caller that counts evictions. */
static int remove_one(lmc__wctx *w, MDB_cursor *cur, const MDB_val *skey, const MDB_val *old,
                      bool with_row, uint64_t *at)
{
    /* The row goes first, by key, while the cursor sits on the entry (LMDB
     * keeps every cursor of a transaction right when others change the
     * tree); the entry's key must be copied first: it points into its page,
     * which the row's deletion may change. */
    unsigned char kb[LMC__KEY_STORED_LONG];
    MDB_val k = {skey->mv_size, kb};
    memcpy(kb, skey->mv_data, skey->mv_size);
    int rc;
    uint16_t seq;
    *at = entry_forget(w, &k, old, &seq);
    if (*at && with_row && (rc = row_del(w, *at, seq, &k)))
        return rc;
    skey = &k;
    if (cur)
        rc = mdb_cursor_del(cur, 0);
    else
        rc = mdb_del(w->txn, w->k->dbi_main, (MDB_val *)(uintptr_t)skey, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_del (entry)");
    return 0;
}

int lmc__entry_remove(lmc__wctx *w, MDB_cursor *cur, const MDB_val *skey, const MDB_val *old,
                      bool with_row)
{
    uint64_t at;
    return remove_one(w, cur, skey, old, with_row, &at);
}

int lmc__entry_remove_range(lmc__wctx *w, MDB_cursor *cur, const lmc__range *r,
                            const MDB_val *start, uint64_t budget, int count,
                            uint64_t *removed, lmc__resume *next)
{
    MDB_val key = *start, d;
    uint64_t n = 0;
    next->set = false;
    int rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    while (rc == 0 && lmc__range_within(r, &key)) {
        if (!lmc__range_holds(r, &key, &d)) {
            rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
            continue;
        }
        if (n >= budget) {
            lmc__resume_at(next, &key);
            break;
        }
        uint64_t at;
        if ((rc = remove_one(w, cur, &key, &d, true, &at)))
            return rc;
        if (count >= 0)
            lmc__wcount(w, count, 1);
        else if (count == LMC__COUNT_EVICTIONS)
            lmc__wcount(w, at ? LMC__C_evictions_soonest : LMC__C_evictions_lru, 1);
        n++;
        rc = lmc__lmdb_next_after_del(cur, &key, &d);
    }
    *removed += n;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(w->h, rc, "walking a range of entries");
    return 0;
}

int lmc__entry_find(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen,
                    lmc__found *f)
{
    f->exists = f->mine = f->live = false;
    w->cur_at = NULL;
    int rc = w->cur ? 0 : mdb_cursor_open(w->txn, w->k->dbi_main, &w->cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open");
    /* MDB_SET_RANGE rather than MDB_SET_KEY: on a miss it still leaves the
     * cursor on the key after this one, in the leaf page where this one
     * would go, so that storing it (lmc__entry_store) searches that page
     * only instead of the whole tree again.  MDB_SET_KEY leaves a cursor
     * that missed unpositioned. */
    MDB_val k = sk->v;
    rc = mdb_cursor_get(w->cur, &k, &f->old, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_get");
    if (k.mv_size != sk->v.mv_size || memcmp(k.mv_data, sk->v.mv_data, k.mv_size) != 0)
        return 0;
    f->exists = true;
    w->cur_at = f->old.mv_data;
    if (lmc__entry_parse(&sk->v, &f->old, &f->e) != 0) {
        f->mine = true; /* malformed: ours to overwrite or remove */
        return 0;
    }
    if (sk->is_long && !lmc__entry_key_matches(&f->e, key, klen))
        return 0; /* another long key with the same stored key */
    f->mine = true;
    f->live = !(f->e.expires_at && f->e.expires_at <= (uint64_t)w->now);
    if (f->live) {
        /* Read inside the write transaction: every change of the markers is
         * made under the writer lock this one holds. */
        lmc__fview fv;
        lmc__flush_view(w->k, &fv);
        f->live = !lmc__flush_hides(&fv, &f->e);
    }
    return 0;
}

int lmc__expiry(const lmc *h, int64_t ttl_ms, int64_t now, uint64_t *expires_at)
{
    if (ttl_ms < LMC_TTL_KEEP)
        return lmc__err(h, LMC_EINVAL, "ttl_ms %lld is negative (use LMC_TTL_DEFAULT, "
                        "LMC_TTL_NEVER, LMC_TTL_KEEP or milliseconds)", (long long)ttl_ms);
    if (ttl_ms > LMC_TTL_MAX)
        return lmc__err(h, LMC_EINVAL, "ttl_ms %lld is above LMC_TTL_MAX (2^62 ms, about 146 "
                        "million years)", (long long)ttl_ms);
    if (ttl_ms == LMC_TTL_DEFAULT || ttl_ms == LMC_TTL_KEEP)
        ttl_ms = h->default_ttl_ms; /* at most LMC_TTL_MAX too: lmc_open checks it */
    if (ttl_ms == LMC_TTL_NEVER) {
        *expires_at = 0;
        return 0;
    }
    if (now < 0)
        now = 0;
    /* Only a clock past 2^62 ms (or a test's clock) gets here. */
    if (ttl_ms > INT64_MAX - now)
        return lmc__err(h, LMC_EINVAL, "ttl_ms %lld from now (%lld ms) overflows the clock",
                        (long long)ttl_ms, (long long)now);
    *expires_at = (uint64_t)(now + ttl_ms);
    return 0;
}

int lmc__entry_expiry(lmc__wctx *w, int64_t ttl, const lmc__found *f, uint64_t *exp)
{
    if (ttl == LMC_TTL_KEEP && f->live) {
        *exp = f->e.expires_at;
        return 0;
    }
    return lmc__expiry(w->h, ttl, w->now, exp);
}
