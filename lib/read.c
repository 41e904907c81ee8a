/*
 * read.c - the reads: lmc_get and its variants (get_cas, get_alloc, exists,
 * get_view), lmc_get_many and lmc_scan, and lmc_gen_read (which reads no
 * entry, only the key's invalidation generation, gen.h).
 *
 * Reads run in the calling thread's reusable read transaction and never
 * write to LMDB: an expired entry is a miss and stays until the sweeper or a
 * writer removes it.  A get is a renew, a lookup, a header check, a copy and
 * a reset, then two relaxed counter adds and, for an entry without TTL, a
 * recency stamp queued for later (recency.h); every step it takes on a hit
 * is inline but LMDB's own calls.
 */
#include "fmacros.h"

#include <string.h>

#include "alloc.h"
#include "call.h"
#include "clock.h"
#include "error.h"
#include "flushtab.h"
#include "format.h"
#include "gen.h"
#include "recency.h"
#include "txn.h"

/* Entries per read transaction of a scan: a scan never pins a snapshot for
 * long. */
#define LMC__SCAN_BATCH 256u

/* Why an entry that is present is not a hit; 0 if it is live.  *now is the
 * time, read once when the first entry with a TTL needs it; fv the flush
 * markers, read before the snapshot was (flushtab.h says why before).
 * Always inlined: GCC kept it out of line once lookup() was inlined into the
 * four gets, and the call cost a hit 32 instructions. */
__attribute__((always_inline)) static inline int entry_state(const lmc__skey *sk,
                                                             const MDB_val *d, const void *key,
                                                             size_t klen, const lmc__fview *fv,
                                                             lmc__entry *e, int64_t *now)
{
    if (LMC__UNLIKELY(lmc__entry_parse(&sk->v, d, e) != 0))
        return LMC__C_malformed;
    if (LMC__UNLIKELY(sk->is_long && !lmc__entry_key_matches(e, key, klen)))
        return LMC__C_misses; /* another key with the same stored key */
    if (lmc__flush_hides(fv, e))
        return LMC__C_misses; /* flushed, not yet swept */
    if (e->expires_at) {
        if (!*now)
            *now = lmc__now_ms();
        if (e->expires_at <= (uint64_t)*now)
            return LMC__C_expired;
    }
    return 0;
}

/*
 * The live entry of key in r's snapshot, into *e (which then points into the
 * map); a miss is counted here, and recorded as an answer without a message
 * (two thread-local stores: error.h).  Whatever it returns, the snapshot
 * stays open: the caller copies what it needs and ends it.
 */
/* Always inlined: with the flush markers' argument GCC stopped inlining it
 * into the gets, and the call cost a hit 25 instructions (a tenth of what a
 * hit's own code takes). */
__attribute__((always_inline)) static inline int lookup(lmc *c, lmc__rtxn *r,
                                                        const lmc__fview *fv, lmc__skey *sk,
                                                        const void *key, size_t klen,
                                                        lmc__entry *e)
{
    lmc__core *k = c->core;
    MDB_val d;
    int rc = mdb_get(r->txn, k->dbi_main, &sk->v, &d);
    if (LMC__LIKELY(rc == 0)) {
        int64_t now = 0;
        int why = entry_state(sk, &d, key, klen, fv, e, &now);
        if (LMC__LIKELY(why == 0))
            return 0;
        if (why != LMC__C_misses)
            lmc__count(k, (unsigned)why, 1);
    } else if (rc != MDB_NOTFOUND) {
        return lmc__mdb_err(c, rc, "mdb_get");
    }
    lmc__count(k, LMC__C_misses, 1);
    return lmc__answer(c, LMC_NOTFOUND);
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

static inline int get_copy(lmc *c, const void *key, size_t klen, void *buf, size_t cap,
                           size_t *vlen, uint64_t *version)
{
    int rc = lmc__call_key(c, key, klen);
    if (LMC__UNLIKELY(rc))
        return rc;
    if (LMC__UNLIKELY(!buf && cap))
        return lmc__err(c, LMC_EINVAL, "buf is NULL but cap is %zu", cap);
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    lmc__fview fv;
    lmc__rtxn *r;
    if (LMC__UNLIKELY((rc = lmc__rbegin_flushed(c, &fv, &r))))
        return rc;
    lmc__entry e;
    rc = lookup(c, r, &fv, &sk, key, klen, &e);
    size_t n = rc == 0 ? e.vlen : 0;
    if (LMC__LIKELY(rc == 0 && n <= cap)) {
        if (n)
            map_copy(buf, e.val, n);
        if (version)
            *version = e.version;
    }
    lmc__rend(r);
    if (rc)
        return rc;
    if (vlen)
        *vlen = n;
    if (LMC__UNLIKELY(n > cap))
        return lmc__err(c, LMC_ERANGE, "value of %zu bytes does not fit in a buffer of %zu",
                        n, cap);
    hit_done(c, r, &sk, e.expires_at, n);
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
    int rc = lmc__call_key(c, key, klen);
    if (rc)
        return rc;
    if (!val || !vlen)
        return lmc__err(c, LMC_EINVAL, "val and vlen must not be NULL");
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    lmc__fview fv;
    lmc__rtxn *r;
    if ((rc = lmc__rbegin_flushed(c, &fv, &r)))
        return rc;
    lmc__entry e;
    void *p = NULL;
    rc = lookup(c, r, &fv, &sk, key, klen, &e);
    if (rc == 0 && !(p = lmc__malloc(e.vlen ? e.vlen : 1)))
        rc = lmc__err(c, LMC_ENOMEM, "out of memory for a value of %zu bytes", e.vlen);
    if (rc == 0 && e.vlen)
        map_copy(p, e.val, e.vlen);
    lmc__rend(r);
    if (rc)
        return rc;
    *val = p;
    *vlen = e.vlen;
    hit_done(c, r, &sk, e.expires_at, e.vlen);
    return 0;
}

int lmc_exists(lmc *c, const void *key, size_t klen)
{
    int rc = lmc__call_key(c, key, klen);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    lmc__fview fv;
    lmc__rtxn *r;
    if ((rc = lmc__rbegin_flushed(c, &fv, &r)))
        return rc;
    lmc__entry e;
    rc = lookup(c, r, &fv, &sk, key, klen, &e);
    lmc__rend(r);
    if (rc)
        return rc;
    hit_done(c, r, &sk, e.expires_at, 0);
    return 0;
}

int lmc_gen_read(lmc *c, const void *key, size_t klen, uint64_t *gen)
{
    if (gen)
        *gen = 0;
    int rc = lmc__call_key(c, key, klen);
    if (rc)
        return rc;
    if (!gen)
        return lmc__err(c, LMC_EINVAL, "gen is NULL");
    *gen = lmc__gen_token(c->core, lmc__gen_bucket(key, klen));
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
    int rc = lmc__call_key(c, key, klen);
    if (rc)
        return rc;
    if (!fn)
        return lmc__err(c, LMC_EINVAL, "callback is NULL");
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    lmc__fview fv;
    lmc__rtxn *r;
    if ((rc = lmc__rbegin_flushed(c, &fv, &r)))
        return rc;
    lmc__entry e;
    if ((rc = lookup(c, r, &fv, &sk, key, klen, &e))) {
        lmc__rend(r);
        return rc;
    }
    lmc_value v;
    value_from_entry(&v, &e);
    lmc__cb_frame cb;
    lmc__cb_push(&cb, c->core);
    int out = fn(arg, &v);
    lmc__cb_pop(&cb);
    lmc__rend(r);
    hit_done(c, r, &sk, e.expires_at, v.len);
    /* The callback's value is the call's: a failure with no message of
     * lmc's, whatever the callback itself may have called. */
    return out ? lmc__answer(c, out) : 0;
}

int lmc_get_many(lmc *c, const lmc_key *keys, size_t n, lmc_many_fn fn, void *arg)
{
    int rc = lmc__call(c);
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
    lmc__fview fv;
    lmc__rtxn *r;
    if ((rc = lmc__rbegin_flushed(c, &fv, &r)))
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
        rc = mdb_get(r->txn, k->dbi_main, &sk.v, &d);
        int why = LMC__C_misses;
        if (rc == 0)
            why = entry_state(&sk, &d, keys[i].key, keys[i].klen, &fv, &e, &now);
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
        if (out) {
            lmc__answer(c, out); /* the callback's value: no message of lmc's */
            break;
        }
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

/* One read transaction of a scan: visit at most LMC__SCAN_BATCH entries of
 * the range from where the last one stopped; *at gets where the next one
 * goes on (at->set false: the range is done). */
static int scan_batch(lmc *c, lmc__rtxn *r, const lmc__fview *fv, const lmc__range *range,
                      lmc__resume *at, lmc_scan_fn fn, void *arg)
{
    lmc__core *k = c->core;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(r->txn, k->dbi_main, &cur);
    if (rc)
        return lmc__mdb_err(c, rc, "mdb_cursor_open");
    MDB_val key = lmc__resume_key(at, range), d;
    at->set = false;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    int64_t now = lmc__now_ms();
    int out = 0;
    for (unsigned n = 0; rc == 0 && lmc__range_within(range, &key); n++) {
        if (n >= LMC__SCAN_BATCH) {
            lmc__resume_at(at, &key);
            break;
        }
        lmc__entry e;
        if (lmc__entry_parse(&key, &d, &e) == 0 &&
            !(e.expires_at && e.expires_at <= (uint64_t)now) && !lmc__flush_hides(fv, &e) &&
            lmc__range_holds(range, &key, &d)) {
            lmc_value v;
            value_from_entry(&v, &e);
            lmc__cb_frame cb;
            lmc__cb_push(&cb, k);
            out = fn(arg, &v);
            lmc__cb_pop(&cb);
            if (out) {
                lmc__answer(c, out); /* the callback's value: no message of lmc's */
                break;
            }
        }
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (out)
        return out;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(c, rc, "mdb_cursor_get");
    return 0;
}

int lmc_scan(lmc *c, const void *prefix, size_t plen, lmc_scan_fn fn, void *arg)
{
    int rc = lmc__call(c);
    if (rc)
        return rc;
    if (!fn || (!prefix && plen))
        return lmc__err(c, LMC_EINVAL, "prefix or callback is NULL");
    if (plen > LMC_MAX_KEY)
        return 0; /* no key can start with it */
    lmc__range range;
    lmc__range_prefix(&range, prefix, plen);
    lmc__resume at;
    at.set = false;
    do {
        /* The markers again for each snapshot, read before it. */
        lmc__fview fv;
        lmc__rtxn *r;
        if ((rc = lmc__rbegin_flushed(c, &fv, &r)))
            return rc;
        rc = scan_batch(c, r, &fv, &range, &at, fn, arg);
        lmc__rend(r);
    } while (rc == 0 && at.set);
    return rc;
}
