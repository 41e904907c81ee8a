/*
 * kv.c - the key-value calls: get and its variants, set/add/replace/cas,
 * delete, prefix delete, clear, incr, touch, set_many, get_many and scan.
 *
 * Reads run in the calling thread's reusable read transaction and never
 * write to LMDB: an expired entry is a miss and stays until the sweeper or a
 * writer removes it.  The get path is kept to a renew, a lookup, a copy and a
 * reset, plus two relaxed counter adds and, for entries without TTL, a
 * recency stamp that is written only when stale.
 *
 * Writes describe their work as an operation run by lmc__write (write.c) in
 * one transaction, so that a full map can be handled in one place.
 */
#include "fmacros.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Deletions per transaction of prefix deletes and batched clears. */
#define LMC__PREFIX_BATCH 1000u
/* Entries per read transaction of a scan. */
#define LMC__SCAN_BATCH 256u

/* ------------------------------------------------------------------------ */
/* Common checks                                                            */
/* ------------------------------------------------------------------------ */

/* Called by lmc__enter when this thread runs at least one callback: refuse
 * a call on any cache whose callback is among them.  Its read transaction
 * is open on this thread for the callback's sake: a read would renew it
 * (LMDB refuses: EINVAL) and a write would change the cache under a
 * snapshot the callback is still looking at. */
int lmc__enter_callback(const lmc *h)
{
    for (const lmc__cb_frame *f = lmc__tl_callback; f; f = f->outer)
        if (f->core == h->core)
            return lmc__err(h, LMC_EBUSY, "call on %s from inside one of its callbacks "
                            "(lmc_get_view, lmc_get_many or lmc_scan) on this thread; "
                            "finish the callback first", h->core->path);
    return 0;
}

/* Check the handle and the key, and run the fork check. */
static inline int begin_call(lmc *c, const void *key, size_t klen)
{
    if (LMC__UNLIKELY(!c))
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (LMC__UNLIKELY(rc))
        return rc;
    if (LMC__UNLIKELY(!key || klen - 1 >= LMC_MAX_KEY))
        return lmc__check_key(c, key, klen);
    return 0;
}

static inline int begin_write(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                              int64_t ttl_ms)
{
    int rc = begin_call(c, key, klen);
    if (rc)
        return rc;
    if (LMC__UNLIKELY(!val && vlen))
        return lmc__err(c, LMC_EINVAL, "val is NULL but vlen is %zu", vlen);
    if (LMC__UNLIKELY(ttl_ms < LMC_TTL_KEEP))
        return lmc__err(c, LMC_EINVAL, "ttl_ms %lld is negative (use LMC_TTL_DEFAULT, "
                        "LMC_TTL_NEVER, LMC_TTL_KEEP or milliseconds)", (long long)ttl_ms);
    if (LMC__UNLIKELY(c->rdonly))
        return lmc__err(c, LMC_EREADONLY, "handle of %s is read-only", c->core->path);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct found {
    lmc__rtxn *r;
    lmc__entry e;
} found;

/* Why an entry that is present is not a hit; 0 if it is live. */
static inline int entry_state(const lmc__skey *sk, const MDB_val *d, const void *key,
                              size_t klen, lmc__entry *e, int64_t *now)
{
    if (LMC__UNLIKELY(lmc__entry_parse(&sk->v, d, e) != 0))
        return LMC__C_malformed;
    if (LMC__UNLIKELY(sk->is_long && !lmc__entry_key_matches(e, key, klen)))
        return LMC__C_misses; /* another key with the same stored key */
    if (e->expires_at) {
        if (!*now)
            *now = lmc__now_ms();
        if (e->expires_at <= (uint64_t)*now)
            return LMC__C_expired;
    }
    return 0;
}

/*
 * Find the live entry of key.  On LMC_OK the read txn stays open and f->e
 * points into the map: the caller copies what it needs and ends the txn with
 * lmc__rend(f->r).  On any other result the txn is already ended.
 */
static inline int lookup(lmc *c, const void *key, size_t klen, lmc__skey *sk, found *f)
{
    lmc__core *k = c->core;
    lmc__skey_make(sk, key, klen);
    int rc = lmc__rbegin(c, &f->r);
    if (LMC__UNLIKELY(rc))
        return rc;
    MDB_val d;
    rc = mdb_get(f->r->txn, k->dbi_entries, &sk->v, &d);
    if (LMC__LIKELY(rc == 0)) {
        int64_t now = 0;
        int why = entry_state(sk, &d, key, klen, &f->e, &now);
        if (LMC__LIKELY(why == 0))
            return 0;
        lmc__rend(f->r);
        if (why != LMC__C_misses)
            lmc__count(k, (unsigned)why, 1);
        lmc__count(k, LMC__C_misses, 1);
        return LMC_NOTFOUND;
    }
    lmc__rend(f->r);
    if (rc == MDB_NOTFOUND) {
        lmc__count(k, LMC__C_misses, 1);
        return LMC_NOTFOUND;
    }
    return lmc__mdb_err(c, rc, "mdb_get");
}

/* Copy a value out of the map.  A function of its own (not inlined) so that
 * ThreadSanitizer's suppressions can name it: see tests/tsan.supp. */
__attribute__((noinline)) static void map_copy(void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);
}

/* Bookkeeping of a hit, after the read txn has ended.  Entries with a TTL
 * are evicted by expiry time, so only the others need a recency stamp. */
static inline void hit_done(lmc *c, lmc__rtxn *r, const lmc__skey *sk, uint64_t expires_at,
                            size_t vlen)
{
    lmc__core *k = c->core;
    lmc__count(k, LMC__C_hits, 1);
    lmc__count(k, LMC__C_bytes_read, vlen);
    if (!expires_at)
        lmc__stamp(k, r, &sk->v);
}

static int get_copy(lmc *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
                    uint64_t *version)
{
    int rc = begin_call(c, key, klen);
    if (LMC__UNLIKELY(rc))
        return rc;
    if (LMC__UNLIKELY(!buf && cap))
        return lmc__err(c, LMC_EINVAL, "buf is NULL but cap is %zu", cap);
    lmc__skey sk;
    found f;
    rc = lookup(c, key, klen, &sk, &f);
    if (rc)
        return rc;
    size_t n = f.e.vlen;
    uint64_t exp = f.e.expires_at;
    if (LMC__UNLIKELY(n > cap)) {
        lmc__rend(f.r);
        if (vlen)
            *vlen = n;
        return lmc__err(c, LMC_ERANGE, "value of %zu bytes does not fit in a buffer of %zu",
                        n, cap);
    }
    if (n)
        map_copy(buf, f.e.val, n);
    if (version)
        *version = f.e.version;
    lmc__rend(f.r);
    if (vlen)
        *vlen = n;
    hit_done(c, f.r, &sk, exp, n);
    return 0;
}

int lmc_get(lmc *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    return get_copy(c, key, klen, buf, cap, vlen, NULL);
}

int lmc_get_cas(lmc *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
                uint64_t *version)
{
    return get_copy(c, key, klen, buf, cap, vlen, version);
}

int lmc_get_alloc(lmc *c, const void *key, size_t klen, void **val, size_t *vlen)
{
    if (val)
        *val = NULL;
    int rc = begin_call(c, key, klen);
    if (rc)
        return rc;
    if (!val || !vlen)
        return lmc__err(c, LMC_EINVAL, "val and vlen must not be NULL");
    lmc__skey sk;
    found f;
    rc = lookup(c, key, klen, &sk, &f);
    if (rc)
        return rc;
    size_t n = f.e.vlen;
    uint64_t exp = f.e.expires_at;
    void *p = lmc__malloc(n ? n : 1);
    if (!p) {
        lmc__rend(f.r);
        return lmc__err(c, LMC_ENOMEM, "out of memory for a value of %zu bytes", n);
    }
    if (n)
        map_copy(p, f.e.val, n);
    lmc__rend(f.r);
    *val = p;
    *vlen = n;
    hit_done(c, f.r, &sk, exp, n);
    return 0;
}

int lmc_exists(lmc *c, const void *key, size_t klen)
{
    int rc = begin_call(c, key, klen);
    if (rc)
        return rc;
    lmc__skey sk;
    found f;
    rc = lookup(c, key, klen, &sk, &f);
    if (rc)
        return rc;
    uint64_t exp = f.e.expires_at;
    lmc__rend(f.r);
    hit_done(c, f.r, &sk, exp, 0);
    return 0;
}

static void value_from_entry(lmc_value *v, const lmc__entry *e)
{
    v->key = e->key;
    v->klen = e->klen;
    v->data = e->val;
    v->len = e->vlen;
    v->version = e->version;
    v->expires_at_ms = (int64_t)e->expires_at;
}

int lmc_get_view(lmc *c, const void *key, size_t klen, lmc_view_fn fn, void *arg)
{
    int rc = begin_call(c, key, klen);
    if (rc)
        return rc;
    if (!fn)
        return lmc__err(c, LMC_EINVAL, "callback is NULL");
    lmc__skey sk;
    found f;
    rc = lookup(c, key, klen, &sk, &f);
    if (rc)
        return rc;
    lmc_value v;
    value_from_entry(&v, &f.e);
    uint64_t exp = f.e.expires_at;
    lmc__cb_frame cb;
    lmc__cb_push(&cb, c->core);
    int r = fn(arg, &v);
    lmc__cb_pop(&cb);
    lmc__rend(f.r);
    hit_done(c, f.r, &sk, exp, v.len);
    return r;
}

int lmc_get_many(lmc *c, const lmc_key *keys, size_t n, lmc_many_fn fn, void *arg)
{
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (rc)
        return rc;
    if (!fn || (!keys && n))
        return lmc__err(c, LMC_EINVAL, "keys or callback is NULL");
    for (size_t i = 0; i < n; i++) {
        const char *why;
        if ((rc = lmc__key_problem(keys[i].key, keys[i].klen, &why)))
            return lmc__err(c, rc, "key %zu: %s", i, why);
    }
    if (n == 0)
        return 0;
    lmc__core *k = c->core;
    lmc__rtxn *r;
    if ((rc = lmc__rbegin(c, &r)))
        return rc;
    uint64_t hits = 0, misses = 0, expired = 0, malformed = 0, bytes = 0;
    int64_t now = 0;
    int out = 0;
    lmc__cb_frame cb;
    lmc__cb_push(&cb, k);
    for (size_t i = 0; i < n; i++) {
        lmc__skey sk;
        lmc__skey_make(&sk, keys[i].key, keys[i].klen);
        MDB_val d;
        lmc__entry e;
        rc = mdb_get(r->txn, k->dbi_entries, &sk.v, &d);
        int why = LMC__C_misses;
        if (rc == 0)
            why = entry_state(&sk, &d, keys[i].key, keys[i].klen, &e, &now);
        else if (rc != MDB_NOTFOUND) {
            out = lmc__mdb_err(c, rc, "mdb_get");
            break;
        }
        if (why == 0) {
            lmc_value v;
            value_from_entry(&v, &e);
            hits++;
            bytes += v.len;
            if (!e.expires_at)
                lmc__stamp(k, r, &sk.v);
            out = fn(arg, i, &v);
        } else {
            misses++;
            expired += why == LMC__C_expired;
            malformed += why == LMC__C_malformed;
            out = fn(arg, i, NULL);
        }
        if (out)
            break;
    }
    lmc__cb_pop(&cb);
    lmc__rend(r);
    lmc__count(k, LMC__C_hits, hits);
    lmc__count(k, LMC__C_misses, misses);
    if (expired)
        lmc__count(k, LMC__C_expired, expired);
    if (malformed)
        lmc__count(k, LMC__C_malformed, malformed);
    lmc__count(k, LMC__C_bytes_read, bytes);
    return out;
}

int lmc_scan(lmc *c, const void *prefix, size_t plen, lmc_scan_fn fn, void *arg)
{
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (rc)
        return rc;
    if (!fn || (!prefix && plen))
        return lmc__err(c, LMC_EINVAL, "prefix or callback is NULL");
    if (plen > LMC_MAX_KEY)
        return 0; /* no key can start with it */
    lmc__core *k = c->core;
    /* The stored form of the prefix: the namespace byte and at most the
     * part of the key that stored keys keep. */
    const size_t slen = 1 + (plen < LMC__KEY_INLINE ? plen : LMC__KEY_INLINE);
    unsigned char spfx[1 + LMC__KEY_INLINE];
    spfx[0] = LMC__NS;
    if (plen)
        memcpy(spfx + 1, prefix, slen - 1);
    /* Between batches, resume holds the first stored key not yet visited. */
    unsigned char resume[LMC__KEY_STORED_LONG];
    size_t rlen = 0;
    bool has_resume = false;
    for (;;) {
        lmc__rtxn *r;
        if ((rc = lmc__rbegin(c, &r)))
            return rc;
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(r->txn, k->dbi_entries, &cur))) {
            lmc__rend(r);
            return lmc__mdb_err(c, rc, "mdb_cursor_open");
        }
        MDB_val key, d;
        key.mv_size = has_resume ? rlen : slen;
        key.mv_data = has_resume ? resume : spfx;
        rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
        int64_t now = lmc__now_ms();
        unsigned n = 0;
        bool done = true;
        int out = 0;
        while (rc == 0) {
            if (key.mv_size < slen || memcmp(key.mv_data, spfx, slen) != 0)
                break;
            if (n >= LMC__SCAN_BATCH) {
                memcpy(resume, key.mv_data, key.mv_size);
                rlen = key.mv_size;
                has_resume = true;
                done = false;
                break;
            }
            n++;
            lmc__entry e;
            if (lmc__entry_parse(&key, &d, &e) == 0 &&
                !(e.expires_at && e.expires_at <= (uint64_t)now) &&
                (plen < slen || (e.klen >= plen && memcmp(e.key, prefix, plen) == 0))) {
                lmc_value v;
                value_from_entry(&v, &e);
                lmc__cb_frame cb;
                lmc__cb_push(&cb, k);
                out = fn(arg, &v);
                lmc__cb_pop(&cb);
                if (out)
                    break;
            }
            rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        lmc__rend(r);
        if (out)
            return out;
        if (rc != 0 && rc != MDB_NOTFOUND)
            return lmc__mdb_err(c, rc, "mdb_cursor_get");
        if (done)
            return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                   */
/* ------------------------------------------------------------------------ */

/* What a write txn finds under a key. */
typedef struct wfound {
    MDB_val old;   /* stored data, valid until the entries DB changes */
    bool exists;   /* something is stored under the stored key */
    bool mine;     /* ... and it belongs to this key (or is malformed) */
    bool live;     /* ... and it is a live, well-formed entry */
    lmc__entry e;  /* parsed, when live */
} wfound;

static int wlookup(lmc__wctx *w, const lmc__skey *sk, const void *key, size_t klen, wfound *f)
{
    f->exists = f->mine = f->live = false;
    w->cur_at = NULL;
    int rc = w->cur ? 0 : mdb_cursor_open(w->txn, w->k->dbi_entries, &w->cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open");
    MDB_val k = sk->v;
    rc = mdb_cursor_get(w->cur, &k, &f->old, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_get");
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
    return 0;
}

enum { MODE_SET, MODE_ADD, MODE_REPLACE, MODE_CAS };

typedef struct store_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
    int64_t ttl;
    int mode;
    uint64_t version;
} store_arg;

/* Expiry of an entry written over f: LMC_TTL_KEEP keeps a live one's. */
static int new_expiry(lmc__wctx *w, int64_t ttl, const wfound *f, uint64_t *exp)
{
    if (ttl == LMC_TTL_KEEP && f->live) {
        *exp = f->e.expires_at;
        return 0;
    }
    return lmc__expiry(w->h, ttl, w->now, exp);
}

static int op_store(lmc__wctx *w, void *p)
{
    store_arg *a = p;
    wfound f;
    uint64_t exp;
    int rc = wlookup(w, a->sk, a->key, a->klen, &f);
    if (rc)
        return rc;
    if ((rc = new_expiry(w, a->ttl, &f, &exp)))
        return rc;
    switch (a->mode) {
    case MODE_ADD:
        w->ctr[LMC__C_adds]++;
        if (f.live) {
            w->ctr[LMC__C_add_conflicts]++;
            return LMC_EXISTS;
        }
        break;
    case MODE_REPLACE:
        if (!f.live)
            return LMC_NOTFOUND;
        break;
    case MODE_CAS:
        w->ctr[LMC__C_cas]++;
        if (!f.live)
            return LMC_NOTFOUND;
        if (f.e.version != a->version) {
            w->ctr[LMC__C_cas_conflicts]++;
            return LMC_ECHANGED;
        }
        break;
    default:
        break;
    }
    rc = lmc__entry_store(w, a->sk, a->key, a->klen, a->val, a->vlen, exp, w->version,
                          f.exists ? &f.old : NULL);
    if (rc == 0) {
        w->ctr[LMC__C_sets]++;
        w->ctr[LMC__C_bytes_written] += a->vlen;
        w->written = &a->sk->v;
        if (!exp)
            w->stamp = &a->sk->v; /* a write is an access */
    }
    return rc;
}

typedef struct del_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    const uint64_t *version; /* delete only the entry of this version */
    bool quiet;              /* an unlink after a failed store: not a delete */
} del_arg;

static int op_delete(lmc__wctx *w, void *p)
{
    del_arg *a = p;
    wfound f;
    int rc = wlookup(w, a->sk, a->key, a->klen, &f);
    if (rc)
        return rc;
    if (!f.mine || (a->version && (!f.live || f.e.version != *a->version)))
        return LMC_NOTFOUND;
    if ((rc = lmc__entry_remove(w, NULL, &a->sk->v, &f.old)))
        return rc;
    if (!f.live)
        w->result = LMC_NOTFOUND; /* an expired entry is removed, but was not there */
    else if (!a->quiet)
        w->ctr[LMC__C_deletes]++;
    return 0;
}

static int delete_one(lmc *c, const lmc__skey *sk, const void *key, size_t klen,
                      const uint64_t *version, bool quiet)
{
    del_arg a = {sk, key, klen, version, quiet};
    unsigned batch = 1;
    return lmc__write_deletes(c, op_delete, &a, &batch);
}

/*
 * A store that could not be done (LMC_ETOOBIG, LMC_ENOSPC) removes the value
 * it was to replace, as memcached does for a SET it cannot store: a caller
 * that ignores the error must not go on serving the old value as if the new
 * one were in.  A cas removes it only if it still has the version the cas
 * expected.  The store's error and message are what the caller gets; if
 * even the removal fails (a reader stuck on an old snapshot pins every free
 * page), the message says so.
 */
static int store_failed(lmc *c, int rc, const lmc__skey *sk, const void *key, size_t klen,
                        const uint64_t *version)
{
    char msg[512];
    const char *m = lmc_errmsg(c), *name = lmc_errname(rc);
    size_t nl = strlen(name);
    if (strncmp(m, name, nl) == 0 && m[nl] == ':')
        m += nl + 2;
    snprintf(msg, sizeof msg, "%s", m);
    int drc = delete_one(c, sk, key, klen, version, true);
    if (drc == LMC_NOTFOUND)
        return lmc__err(c, rc, "%s", msg);
    if (drc == LMC_OK)
        return lmc__err(c, rc, "%s; the value it was to replace was removed", msg);
    return lmc__err(c, rc, "%s; the value it was to replace could not be removed either (%s)",
                    msg, lmc_errname(drc));
}

static int store(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                 int64_t ttl_ms, int mode, uint64_t version)
{
    int rc = begin_write(c, key, klen, val, vlen, ttl_ms);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    rc = lmc__check_size(c, klen, vlen, sk.is_long);
    if (rc == 0) {
        store_arg a = {&sk, key, klen, val, vlen, ttl_ms, mode, version};
        uint64_t pages = lmc__entry_pages(c->core, klen, vlen, sk.is_long);
        /* A value of pages of its own needs them contiguous, and the value it
         * replaces holds such pages until the new one commits: on a full
         * map, removing that one first is the eviction that helps most.  An
         * add replaces nothing live, and a cas only its own version. */
        del_arg old = {&sk, key, klen, mode == MODE_CAS ? &version : NULL, true};
        bool drop = pages > 0 && mode != MODE_ADD;
        rc = lmc__write(c, op_store, &a, pages, drop ? op_delete : NULL, &old);
    }
    /* An add replaces nothing live, so it has nothing stale to remove. */
    if ((rc == LMC_ETOOBIG || rc == LMC_ENOSPC) && mode != MODE_ADD)
        rc = store_failed(c, rc, &sk, key, klen, mode == MODE_CAS ? &version : NULL);
    return rc;
}

int lmc_set(lmc *c, const void *key, size_t klen, const void *val, size_t vlen, int64_t ttl_ms)
{
    return store(c, key, klen, val, vlen, ttl_ms, MODE_SET, 0);
}

int lmc_add(lmc *c, const void *key, size_t klen, const void *val, size_t vlen, int64_t ttl_ms)
{
    return store(c, key, klen, val, vlen, ttl_ms, MODE_ADD, 0);
}

int lmc_replace(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                int64_t ttl_ms)
{
    return store(c, key, klen, val, vlen, ttl_ms, MODE_REPLACE, 0);
}

int lmc_cas(lmc *c, const void *key, size_t klen, const void *val, size_t vlen, int64_t ttl_ms,
            uint64_t version)
{
    return store(c, key, klen, val, vlen, ttl_ms, MODE_CAS, version);
}

typedef struct many_arg {
    const lmc_item *items;
    size_t n;
} many_arg;

static int op_set_many(lmc__wctx *w, void *p)
{
    many_arg *a = p;
    for (size_t i = 0; i < a->n; i++) {
        const lmc_item *it = &a->items[i];
        lmc__skey sk;
        lmc__skey_make(&sk, it->key, it->klen);
        wfound f;
        uint64_t exp;
        int rc = wlookup(w, &sk, it->key, it->klen, &f);
        if (rc)
            return rc;
        if ((rc = new_expiry(w, it->ttl_ms, &f, &exp)))
            return rc;
        rc = lmc__entry_store(w, &sk, it->key, it->klen, it->val, it->vlen, exp, w->version,
                              f.exists ? &f.old : NULL);
        if (rc)
            return rc;
        if (!exp)
            lmc__recency_touch(w->k, &sk.v, w->now);
        w->ctr[LMC__C_sets]++;
        w->ctr[LMC__C_bytes_written] += it->vlen;
    }
    return 0;
}

int lmc_set_many(lmc *c, const lmc_item *items, size_t n)
{
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (rc)
        return rc;
    if (!items && n)
        return lmc__err(c, LMC_EINVAL, "items is NULL");
    if (c->rdonly)
        return lmc__err(c, LMC_EREADONLY, "handle of %s is read-only", c->core->path);
    for (size_t i = 0; i < n; i++) {
        const lmc_item *it = &items[i];
        const char *why;
        if ((rc = lmc__key_problem(it->key, it->klen, &why)))
            return lmc__err(c, rc, "item %zu: %s", i, why);
        if (!it->val && it->vlen)
            return lmc__err(c, LMC_EINVAL, "item %zu: val is NULL but vlen is %zu", i, it->vlen);
        if (it->ttl_ms < LMC_TTL_KEEP)
            return lmc__err(c, LMC_EINVAL, "item %zu: ttl_ms %lld is negative", i,
                            (long long)it->ttl_ms);
    }
    size_t total = 0;
    uint64_t pages = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const lmc_item *it = &items[i];
        int is_long = it->klen >= LMC__KEY_INLINE;
        if ((rc = lmc__check_size(c, it->klen, it->vlen, is_long)))
            break;
        total += lmc__entry_size(it->klen, it->vlen, is_long) + it->klen;
        pages += lmc__entry_pages(c->core, it->klen, it->vlen, is_long);
        if (total / c->core->psize + pages > lmc__usable_pages(c->core))
            rc = lmc__err(c, LMC_ETOOBIG, "the %zu items together can never fit in the map", n);
    }
    if (rc == 0 && n > 0) {
        many_arg a = {items, n};
        rc = lmc__write(c, op_set_many, &a, pages, NULL, NULL);
    }
    if (rc != LMC_ETOOBIG && rc != LMC_ENOSPC)
        return rc;
    /* Like a single set: leave none of the values they were to replace
     * (all or nothing, as the batch itself). */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lmc_errmsg(c));
    int drc = LMC_OK;
    size_t removed = 0;
    for (size_t i = 0; i < n && (drc == LMC_OK || drc == LMC_NOTFOUND); i++) {
        lmc__skey sk;
        lmc__skey_make(&sk, items[i].key, items[i].klen);
        drc = delete_one(c, &sk, items[i].key, items[i].klen, NULL, true);
        removed += drc == LMC_OK;
    }
    size_t skip = strlen(lmc_errname(rc)) + 2;
    const char *m = strlen(msg) > skip ? msg + skip : msg;
    if (drc == LMC_OK || drc == LMC_NOTFOUND)
        return lmc__err(c, rc, "%s; %zu values they were to replace were removed", m, removed);
    return lmc__err(c, rc, "%s; the values they were to replace could not all be removed (%s)",
                    m, lmc_errname(drc));
}

int lmc_delete(lmc *c, const void *key, size_t klen)
{
    int rc = begin_write(c, key, klen, "", 0, LMC_TTL_NEVER);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    return delete_one(c, &sk, key, klen, NULL, false);
}

/* State of a prefix delete across its transactions.  The op only writes the
 * next_* fields; the caller adopts them after a commit, so a transaction
 * retried after a full map starts again from the same place. */
typedef struct prefix_arg {
    const unsigned char *prefix;
    size_t plen;
    size_t slen; /* bytes of spfx compared with stored keys */
    unsigned char spfx[1 + LMC__KEY_INLINE]; /* namespace byte + stored part */
    unsigned char resume[LMC__KEY_STORED_LONG];
    size_t rlen;
    bool has_resume;
    unsigned char next_resume[LMC__KEY_STORED_LONG];
    size_t next_rlen;
    bool next_done;
    uint64_t next_removed;
    unsigned batch; /* deletions per transaction, halved on a full map */
} prefix_arg;

static int op_prefix(lmc__wctx *w, void *p)
{
    prefix_arg *a = p;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->k->dbi_entries, &cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open");
    MDB_val key, d;
    key.mv_size = a->has_resume ? a->rlen : a->slen;
    key.mv_data = a->has_resume ? a->resume : a->spfx;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    uint64_t n = 0;
    a->next_done = true;
    while (rc == 0) {
        if (key.mv_size < a->slen || memcmp(key.mv_data, a->spfx, a->slen) != 0)
            break;
        bool match = true;
        if (a->plen >= a->slen) {
            /* A prefix longer than the stored part of long keys: check the
             * whole key kept in the value. */
            lmc__entry e;
            match = lmc__entry_parse(&key, &d, &e) == 0 && e.klen >= a->plen &&
                    memcmp(e.key, a->prefix, a->plen) == 0;
        }
        if (!match) {
            rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
            continue;
        }
        if (n >= a->batch) {
            memcpy(a->next_resume, key.mv_data, key.mv_size);
            a->next_rlen = key.mv_size;
            a->next_done = false;
            break;
        }
        if ((rc = lmc__entry_remove(w, cur, &key, &d))) {
            mdb_cursor_close(cur);
            return rc;
        }
        n++;
        /* After mdb_cursor_del the cursor already sits on the next entry;
         * MDB_NEXT returns it (LMDB 0.9 keeps a C_DEL flag for this). */
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_get");
    a->next_removed = n;
    return 0;
}

/* Remove every entry starting with prefix (plen may be 0 for all), in
 * transactions of at most LMC__PREFIX_BATCH deletions. */
static int delete_prefix_batched(lmc *c, const void *prefix, size_t plen, uint64_t *removed,
                                 unsigned ctr)
{
    prefix_arg *a = lmc__malloc(sizeof *a);
    if (!a)
        return lmc__err(c, LMC_ENOMEM, "out of memory for a prefix delete");
    a->prefix = prefix;
    a->plen = plen;
    a->slen = 1 + (plen < LMC__KEY_INLINE ? plen : LMC__KEY_INLINE);
    a->spfx[0] = LMC__NS;
    if (plen)
        memcpy(a->spfx + 1, prefix, a->slen - 1);
    a->has_resume = false;
    a->batch = LMC__PREFIX_BATCH;
    uint64_t total = 0;
    int rc;
    for (;;) {
        a->next_removed = 0;
        rc = lmc__write_deletes(c, op_prefix, a, &a->batch);
        if (rc)
            break;
        total += a->next_removed;
        if (ctr)
            lmc__count(c->core, ctr, a->next_removed);
        if (a->next_done)
            break;
        memcpy(a->resume, a->next_resume, a->next_rlen);
        a->rlen = a->next_rlen;
        a->has_resume = true;
    }
    lmc__free(a);
    if (removed)
        *removed = total;
    return rc;
}

int lmc_delete_prefix(lmc *c, const void *prefix, size_t plen, uint64_t *removed)
{
    if (removed)
        *removed = 0;
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (rc)
        return rc;
    if (!prefix || plen == 0)
        return lmc__err(c, LMC_EINVAL, "prefix is NULL or empty (use lmc_clear to delete all)");
    if (c->rdonly)
        return lmc__err(c, LMC_EREADONLY, "handle of %s is read-only", c->core->path);
    lmc__count(c->core, LMC__C_prefix_deletes, 1);
    if (plen > LMC_MAX_KEY)
        return 0; /* no key can start with it */
    return delete_prefix_batched(c, prefix, plen, removed, LMC__C_prefix_deleted_keys);
}

/*
 * Entries share LMDB's main database with the records of the named
 * databases, so there is no tree to drop: clear deletes the entry range in
 * transactions of at most 1000 deletions, like a prefix delete (it also keeps
 * the expiry index exact, and never holds the writer lock for long).
 */
int lmc_clear(lmc *c)
{
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (rc)
        return rc;
    if (c->rdonly)
        return lmc__err(c, LMC_EREADONLY, "handle of %s is read-only", c->core->path);
    lmc__count(c->core, LMC__C_clears, 1);
    return delete_prefix_batched(c, "", 0, NULL, 0);
}

/* Parse a decimal int64: optional '-', 1 to 19 digits, nothing else. */
static int parse_int(const unsigned char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (n == i || n - i > 19)
        return -1;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)v;
    }
    return 0;
}

static size_t format_int(char *buf, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t o = 0;
    if (v < 0)
        buf[o++] = '-';
    while (n)
        buf[o++] = tmp[--n];
    return o;
}

typedef struct incr_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    int64_t delta;
    int64_t ttl;
    int64_t result;
} incr_arg;

static int op_incr(lmc__wctx *w, void *p)
{
    incr_arg *a = p;
    wfound f;
    int rc = wlookup(w, a->sk, a->key, a->klen, &f);
    if (rc)
        return rc;
    w->ctr[LMC__C_incrs]++;
    int64_t cur = 0;
    uint64_t exp;
    if (f.live) {
        if (parse_int(f.e.val, f.e.vlen, &cur) != 0)
            return lmc__err(w->h, LMC_ENOTNUM, "the value is not a decimal integer");
        exp = f.e.expires_at;
    } else if ((rc = lmc__expiry(w->h, a->ttl, w->now, &exp))) {
        return rc;
    }
    int64_t next;
    if (__builtin_add_overflow(cur, a->delta, &next))
        return lmc__err(w->h, LMC_ERANGE, "%lld + %lld overflows a 64-bit integer",
                        (long long)cur, (long long)a->delta);
    char buf[24];
    size_t n = format_int(buf, next);
    rc = lmc__entry_store(w, a->sk, a->key, a->klen, buf, n, exp, w->version,
                          f.exists ? &f.old : NULL);
    if (rc)
        return rc;
    w->ctr[LMC__C_sets]++;
    w->ctr[LMC__C_bytes_written] += n;
    w->written = &a->sk->v;
    if (!exp)
        w->stamp = &a->sk->v;
    a->result = next;
    return 0;
}

int lmc_incr(lmc *c, const void *key, size_t klen, int64_t delta, int64_t *result, int64_t ttl_ms)
{
    int rc = begin_write(c, key, klen, "", 0, ttl_ms);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    incr_arg a = {&sk, key, klen, delta, ttl_ms, 0};
    rc = lmc__write(c, op_incr, &a, 0, NULL, NULL);
    if (rc == 0 && result)
        *result = a.result;
    return rc;
}

typedef struct touch_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    int64_t ttl;
} touch_arg;

static int op_touch(lmc__wctx *w, void *p)
{
    touch_arg *a = p;
    wfound f;
    int rc = wlookup(w, a->sk, a->key, a->klen, &f);
    if (rc)
        return rc;
    w->ctr[LMC__C_touches]++;
    if (!f.live)
        return LMC_NOTFOUND;
    uint64_t exp;
    if ((rc = new_expiry(w, a->ttl, &f, &exp)))
        return rc;
    if (exp == f.e.expires_at)
        return 0;
    /* The value lives in the page the rewrite replaces: copy it first. */
    unsigned char small[512];
    size_t n = f.e.vlen;
    unsigned char *copy = n <= sizeof small ? small : lmc__malloc(n);
    if (!copy)
        return lmc__err(w->h, LMC_ENOMEM, "out of memory for a value of %zu bytes", n);
    memcpy(copy, f.e.val, n);
    rc = lmc__entry_store(w, a->sk, a->key, a->klen, copy, n, exp, f.e.version, &f.old);
    if (copy != small)
        lmc__free(copy);
    if (rc == 0) {
        w->written = &a->sk->v;
        if (!exp)
            w->stamp = &a->sk->v;
    }
    return rc;
}

int lmc_touch(lmc *c, const void *key, size_t klen, int64_t ttl_ms)
{
    int rc = begin_write(c, key, klen, "", 0, ttl_ms);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    touch_arg a = {&sk, key, klen, ttl_ms};
    return lmc__write(c, op_touch, &a, 0, NULL, NULL);
}
