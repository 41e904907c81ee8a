/*
 * store.c - the calls that store values: set, add, replace, cas,
 * set_if_gen and set_many, and the delete of one key they share with
 * lmc_delete.
 *
 * Each describes its work as the body of one write transaction, run by the
 * write loop (write.c), so that a full map is handled in one place.  A store
 * that cannot be done leaves no stale value behind (store_failed).
 */
#include "fmacros.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "call.h"
#include "entry.h"
#include "error.h"
#include "format.h"
#include "gen.h"
#include "lease.h"
#include "store.h"
#include "write.h"

enum { MODE_SET, MODE_ADD, MODE_REPLACE, MODE_CAS, MODE_GEN };

typedef struct store_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
    int64_t ttl;
    int mode;
    uint64_t version; /* of MODE_CAS; the token of MODE_GEN */
    unsigned bucket;  /* of MODE_GEN */
} store_arg;

static int op_store(lmc__wctx *w, void *p)
{
    store_arg *a = p;
    lmc__found f;
    uint64_t exp;
    int rc = lmc__entry_find(w, a->sk, a->key, a->klen, &f);
    if (rc)
        return rc;
    if ((rc = lmc__entry_expiry(w, a->ttl, &f, &exp)))
        return rc;
    switch (a->mode) {
    case MODE_ADD:
        lmc__wcount(w, LMC__C_adds, 1);
        if (f.live) {
            lmc__wcount(w, LMC__C_add_conflicts, 1);
            return LMC_EXISTS;
        }
        break;
    case MODE_REPLACE:
        if (!f.live)
            return LMC_NOTFOUND;
        break;
    case MODE_CAS:
        lmc__wcount(w, LMC__C_cas, 1);
        if (!f.live)
            return LMC_NOTFOUND;
        if (f.e.version != a->version) {
            lmc__wcount(w, LMC__C_cas_conflicts, 1);
            return LMC_ECHANGED;
        }
        break;
    case MODE_GEN:
        /* Under the writer lock: see gen.h for why this is enough. */
        if (lmc__gen_token(w->k, a->bucket) != a->version) {
            lmc__wcount(w, LMC__C_gen_rejects, 1);
            return LMC_ECHANGED;
        }
        break;
    default:
        break;
    }
    lmc__emeta m = {exp, w->version, 0, 0};
    rc = lmc__entry_store(w, a->sk, a->key, a->klen, a->val, a->vlen, &m,
                          f.exists ? &f.old : NULL);
    if (rc == 0) {
        lmc__wcount(w, LMC__C_sets, 1);
        lmc__wcount(w, LMC__C_bytes_written, a->vlen);
        w->written = &a->sk->v;
    }
    return rc;
}

typedef struct del_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    const uint64_t *version; /* delete only the entry of this version */
    bool quiet;              /* an unlink after a failed store: not a delete */
    bool lease_ended;        /* out: a delete ended the key's fill lease */
} del_arg;

static int op_delete(lmc__wctx *w, void *p)
{
    del_arg *a = p;
    int rc;
    /* A delete also ends the key's fill lease, so that a value computed
     * before it is not stored after it (lease.h). */
    a->lease_ended = false;
    if (!a->quiet && !a->version && (rc = lmc__lease_drop(w, &a->sk->v, &a->lease_ended)))
        return rc;
    lmc__found f;
    if ((rc = lmc__entry_find(w, a->sk, a->key, a->klen, &f)))
        return rc;
    if (!f.mine || (a->version && (!f.live || f.e.version != *a->version))) {
        if (!a->lease_ended)
            return LMC_NOTFOUND;
        w->result = LMC_NOTFOUND; /* the lease's end commits */
        return 0;
    }
    if ((rc = lmc__entry_remove(w, NULL, &a->sk->v, &f.old, true)))
        return rc;
    if (!f.live)
        w->result = LMC_NOTFOUND; /* an expired entry is removed, but was not there */
    else if (!a->quiet)
        lmc__wcount(w, LMC__C_deletes, 1);
    return 0;
}

int lmc__delete_one(lmc *c, const lmc__skey *sk, const void *key, size_t klen,
                    const uint64_t *version, bool quiet)
{
    del_arg a = {sk, key, klen, version, quiet, false};
    unsigned batch = 1;
    int rc = lmc__write_deletes(c, op_delete, &a, &batch);
    if (a.lease_ended && (rc == LMC_OK || rc == LMC_NOTFOUND))
        lmc__lease_wake(c->core, &sk->v);
    return rc;
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
    snprintf(msg, sizeof msg, "%s", lmc__errmsg_detail(rc));
    int drc = lmc__delete_one(c, sk, key, klen, version, true);
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
    int rc = lmc__call_write_key(c, key, klen, val, vlen, ttl_ms);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    rc = lmc__check_size(c, klen, vlen, sk.is_long);
    if (rc == 0) {
        unsigned bucket = mode == MODE_GEN ? lmc__gen_bucket(key, klen) : 0;
        store_arg a = {&sk, key, klen, val, vlen, ttl_ms, mode, version, bucket};
        uint64_t pages = lmc__entry_pages(c->core, klen, vlen, sk.is_long);
        /* A value of pages of its own needs them contiguous, and the value it
         * replaces holds such pages until the new one commits: on a full
         * map, removing that one first is the eviction that helps most.  An
         * add replaces nothing live, and a cas only its own version. */
        del_arg old = {&sk, key, klen, mode == MODE_CAS ? &version : NULL, true, false};
        bool drop = pages > 0 && mode != MODE_ADD;
        rc = lmc__write(c, op_store, &a, pages, drop ? op_delete : NULL, &old);
    }
    /* An add replaces nothing live, so it has nothing stale to remove. */
    if ((rc == LMC_ETOOBIG || rc == LMC_ENOSPC) && mode != MODE_ADD)
        rc = store_failed(c, rc, &sk, key, klen, mode == MODE_CAS ? &version : NULL);
    /* The answers of add, replace and cas need no message. */
    if (rc == LMC_EXISTS || rc == LMC_NOTFOUND || rc == LMC_ECHANGED)
        return lmc__answer(c, rc);
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

int lmc_set_if_gen(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                   int64_t ttl_ms, uint64_t gen)
{
    return store(c, key, klen, val, vlen, ttl_ms, MODE_GEN, gen);
}

typedef struct many_arg {
    const lmc_item *items;
    size_t n;
    size_t *order; /* the items' indexes in key order; NULL: as given */
} many_arg;

typedef struct many_key {
    const void *key;
    size_t klen;
    size_t idx;
} many_key;

/* Key order, as the stored keys sort for every key shorter than
 * LMC__KEY_INLINE (for longer ones only roughly, which is enough); equal
 * keys in the order given, so that the last of them still wins. */
static int many_key_cmp(const void *pa, const void *pb)
{
    const many_key *a = pa, *b = pb;
    int c = lmc__key_cmp(a->key, a->klen, b->key, b->klen);
    if (c)
        return c;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/*
 * The order in which set_many stores its items when some of them have a
 * TTL: by key.  The expiry rows of items with the same TTL share a time (the
 * batch's clock plus the TTL) and a row sequence (the transaction's, format.h),
 * so they sort by key among themselves; put in
 * the order given (random, for most batches), each goes into the middle of
 * the last row page, which LMDB then splits in the middle; put in key order,
 * each goes after every row of that page, which LMDB packs (format.h).  1,000,000 entries with a TTL in
 * random key order, stored 1,000 per call, take 7% fewer pages, and the
 * sort costs about 4% more instructions per item (bench/RESULTS.md).
 * Without TTLs the order changes no page and the sort would only cost, so
 * the items go in the order given, as they do for a batch of one or when
 * memory is short (NULL: the same entries are stored either way).  The
 * caller frees the array.
 */
static size_t *many_order(const lmc *c, const lmc_item *items, size_t n)
{
    if (n < 2 || n > SIZE_MAX / sizeof(many_key))
        return NULL;
    bool rows = false;
    for (size_t i = 0; i < n && !rows; i++) {
        int64_t t = items[i].ttl_ms;
        rows = t > 0 || t == LMC_TTL_KEEP || (t == LMC_TTL_DEFAULT && c->default_ttl_ms > 0);
    }
    if (!rows)
        return NULL;
    many_key *keys = lmc__malloc(n * sizeof *keys);
    size_t *order = keys ? lmc__malloc(n * sizeof *order) : NULL;
    if (!order) {
        lmc__free(keys);
        return NULL;
    }
    bool sorted = true;
    for (size_t i = 0; i < n; i++) {
        keys[i] = (many_key){items[i].key, items[i].klen, i};
        if (i && sorted && many_key_cmp(&keys[i - 1], &keys[i]) > 0)
            sorted = false;
    }
    if (!sorted)
        qsort(keys, n, sizeof *keys, many_key_cmp);
    for (size_t i = 0; i < n; i++)
        order[i] = keys[i].idx;
    lmc__free(keys);
    return order;
}

static int op_set_many(lmc__wctx *w, void *p)
{
    many_arg *a = p;
    for (size_t i = 0; i < a->n; i++) {
        const lmc_item *it = &a->items[a->order ? a->order[i] : i];
        lmc__skey sk;
        lmc__skey_make(&sk, it->key, it->klen);
        lmc__found f;
        uint64_t exp;
        int rc = lmc__entry_find(w, &sk, it->key, it->klen, &f);
        if (rc)
            return rc;
        if ((rc = lmc__entry_expiry(w, it->ttl_ms, &f, &exp)))
            return rc;
        lmc__emeta m = {exp, w->version, 0, 0};
        rc = lmc__entry_store(w, &sk, it->key, it->klen, it->val, it->vlen, &m,
                              f.exists ? &f.old : NULL);
        if (rc)
            return rc;
        lmc__wcount(w, LMC__C_sets, 1);
        lmc__wcount(w, LMC__C_bytes_written, it->vlen);
    }
    return 0;
}

typedef struct unlink_arg {
    const lmc_item *items;
    size_t n;
    size_t removed; /* out: live entries removed */
} unlink_arg;

/* The removal of every item's entry after a failed set_many, in one
 * transaction; like the unlink after a failed set, it is not a delete (no
 * counter, no lease ended).  LMC_NOTFOUND when no item had an entry. */
static int op_unlink_many(lmc__wctx *w, void *p)
{
    unlink_arg *a = p;
    bool any = false;
    a->removed = 0; /* the write loop may run this body again */
    for (size_t i = 0; i < a->n; i++) {
        const lmc_item *it = &a->items[i];
        lmc__skey sk;
        lmc__skey_make(&sk, it->key, it->klen);
        lmc__found f;
        int rc = lmc__entry_find(w, &sk, it->key, it->klen, &f);
        if (rc)
            return rc;
        if (!f.mine)
            continue;
        if ((rc = lmc__entry_remove(w, NULL, &sk.v, &f.old, true)))
            return rc;
        any = true;
        a->removed += f.live;
    }
    return any ? 0 : LMC_NOTFOUND;
}

int lmc_set_many(lmc *c, const lmc_item *items, size_t n)
{
    int rc = lmc__call(c);
    if (rc)
        return rc;
    if (!items && n)
        return lmc__err(c, LMC_EINVAL, "items is NULL");
    if ((rc = lmc__writable(c)))
        return rc;
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
        total += lmc__entry_size(it->klen, it->vlen, is_long, false) + it->klen;
        pages += lmc__entry_pages(c->core, it->klen, it->vlen, is_long);
        if (total / c->core->psize + pages > lmc__usable_pages(c->core))
            rc = lmc__err(c, LMC_ETOOBIG, "the %zu items together can never fit in the map", n);
    }
    if (rc == 0 && n > 0) {
        many_arg a = {items, n, many_order(c, items, n)};
        rc = lmc__write(c, op_set_many, &a, pages, NULL, NULL);
        lmc__free(a.order);
    }
    if (rc != LMC_ETOOBIG && rc != LMC_ENOSPC)
        return rc;
    /*
     * Like a single set: leave none of the values they were to replace.  All
     * of them go in one transaction, never split (a batch of one), because
     * the batch is all or nothing for other processes too: removed one by
     * one, a reader would see some of them gone and the others still old,
     * and a writer killed half way would leave the batch like that for good.
     * If the one transaction cannot be done (a reader stuck on an old
     * snapshot pins the free pages, or the batch covers so much of a map more
     * than half full that copying the leaves it touches, which deleting does
     * before it frees any page, takes more pages than are free), they are
     * removed one by one, each delete drawing on the pages kept in reserve
     * for deletes: a batch partly removed is only misses, which a cache may
     * answer at any time (eviction does too), while an old value left
     * readable would be served by a caller that ignores the error as if it
     * were the new one.
     */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lmc__errmsg_detail(rc));
    unlink_arg u = {items, n, 0};
    unsigned one = 1;
    int drc = n > 0 ? lmc__write_deletes(c, op_unlink_many, &u, &one) : LMC_NOTFOUND;
    const char *m = msg;
    if (drc == LMC_OK || drc == LMC_NOTFOUND)
        return lmc__err(c, rc, "%s; %zu values they were to replace were removed", m, u.removed);
    int orc = LMC_OK;
    size_t removed = 0, left = 0;
    for (size_t i = 0; i < n; i++) {
        lmc__skey sk;
        lmc__skey_make(&sk, items[i].key, items[i].klen);
        int one_rc = lmc__delete_one(c, &sk, items[i].key, items[i].klen, NULL, true);
        if (one_rc == LMC_OK)
            removed++;
        else if (one_rc != LMC_NOTFOUND && (left++, orc == LMC_OK))
            orc = one_rc;
    }
    if (orc == LMC_OK)
        return lmc__err(c, rc, "%s; the values they were to replace could not be removed in one "
                        "transaction (%s), so they were removed one by one (%zu removed)",
                        m, lmc_errname(drc), removed);
    return lmc__err(c, rc, "%s; of the values they were to replace, %zu were removed and %zu "
                    "could not be (%s)", m, removed, left, lmc_errname(orc));
}

