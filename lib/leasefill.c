/*
 * leasefill.c - lmc_lease_fill and lmc_lease_abandon: only the holder of a
 * lease (the token of its grant) ends it.  A fill stores the value and ends
 * the lease in one write transaction, so waiters find the value when they
 * wake; an abandon ends it and, within the entry's grace, keeps the stale
 * value (a failed refresh, counted).  Both wake the key's waiters after
 * their commit (lease.c).
 */
#include "fmacros.h"

#include <stdio.h>
#include <string.h>

#include "call.h"
#include "clock.h"
#include "entry.h"
#include "error.h"
#include "format.h"
#include "lease.h"
#include "write.h"

/* ------------------------------------------------------------------------ */
/* lmc_lease_fill and lmc_lease_abandon                                     */
/* ------------------------------------------------------------------------ */

typedef struct end_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    MDB_val lkey;
    uint64_t token;
    const void *val; /* fill only */
    size_t vlen;
    int64_t ttl;
    uint32_t grace;
    bool count;      /* abandon: count a refresh that leaves a stale value */
    bool ended;      /* out: the lease record is gone */
    bool written;    /* out: the key was written since the grant */
} end_arg;

/* The lease, if it is still this one: removed, with *lr what it said. */
static int end_lease(lmc__wctx *w, end_arg *a, lmc__lrec *lr)
{
    bool have;
    a->ended = a->written = false;
    int rc = lmc__lease_read(w->h, w->txn, &a->lkey, lr, &have);
    if (rc)
        return rc;
    if (!have || lr->token != a->token)
        return LMC_ECHANGED;
    if ((rc = mdb_del(w->txn, w->k->dbi_main, &a->lkey, NULL)))
        return lmc__mdb_err(w->h, rc, "mdb_del (lease)");
    a->ended = true;
    return 0;
}

static int op_fill(lmc__wctx *w, void *p)
{
    end_arg *a = p;
    lmc__lrec lr;
    int rc = end_lease(w, a, &lr);
    if (rc)
        return rc;
    lmc__found f;
    lmc__entry e;
    bool have;
    if ((rc = lmc__lease_find(w, a->sk, a->key, a->klen, &f, &e, &have)))
        return rc;
    /* Written since the grant (a set, or another fill): the value computed
     * under this lease is older than what is there.  An entry gone since
     * (expired and swept, or evicted) is no change: the lease's end by a
     * delete is what a delete is. */
    if (have && e.version != lr.entry_version) {
        a->written = true;
        w->result = LMC_ECHANGED;
        return 0; /* the lease's end commits */
    }
    uint64_t exp;
    if ((rc = lmc__entry_expiry(w, a->ttl, &f, &exp)))
        return rc;
    int64_t took = w->now - lr.granted_ms;
    lmc__emeta m = {exp, w->version, a->grace,
                    took <= 0 ? 0 : took >= UINT32_MAX ? UINT32_MAX : (uint32_t)took};
    rc = lmc__entry_store(w, a->sk, a->key, a->klen, a->val, a->vlen, &m,
                          f.exists ? &f.old : NULL);
    if (rc)
        return rc;
    lmc__wcount(w, LMC__C_sets, 1);
    lmc__wcount(w, LMC__C_bytes_written, a->vlen);
    w->written = &a->sk->v;
    return 0;
}

static int op_abandon(lmc__wctx *w, void *p)
{
    end_arg *a = p;
    lmc__lrec lr;
    int rc = end_lease(w, a, &lr);
    if (rc || !a->count)
        return rc;
    lmc__found f;
    lmc__entry e;
    bool have;
    if ((rc = lmc__lease_find(w, a->sk, a->key, a->klen, &f, &e, &have)))
        return rc;
    if (have && lmc__lease_entry_state(&e, w->now) == LMC__ES_GRACE)
        lmc__wcount(w, LMC__C_refresh_failures, 1);
    return 0;
}

static int end_arg_init(lmc *c, const lmc_lease *lease, end_arg *a, lmc__skey *sk,
                        unsigned char *lkb, const void *key, size_t klen)
{
    if (!lease || !lease->token)
        return lmc__err(c, LMC_EINVAL, "no lease: lease is NULL or its token 0");
    memset(a, 0, sizeof *a);
    lmc__skey_make(sk, key, klen);
    a->sk = sk;
    a->key = key;
    a->klen = klen;
    a->lkey = lmc__lease_key(lkb, &sk->v);
    a->token = lease->token;
    return 0;
}

static int not_held(lmc *c, const end_arg *a)
{
    if (a->written)
        return lmc__err(c, LMC_ECHANGED, "the key was written while its lease was held: the "
                        "value computed under the lease was not stored, and the lease ended");
    return lmc__err(c, LMC_ECHANGED, "this lease is no longer held (it was filled, abandoned "
                    "or taken over, or the key was deleted, invalidated or cleared)");
}

int lmc_lease_fill(lmc *c, const lmc_lease *lease, const void *key, size_t klen,
                   const void *val, size_t vlen, int64_t ttl_ms, int64_t grace_ms)
{
    int rc = lmc__call_write_key(c, key, klen, val, vlen, ttl_ms);
    if (rc)
        return rc;
    lmc__skey sk;
    unsigned char lkb[LMC__LEASE_KEY_MAX];
    end_arg a;
    if ((rc = end_arg_init(c, lease, &a, &sk, lkb, key, klen)))
        return rc;
    if (grace_ms < 0 || grace_ms > (int64_t)UINT32_MAX)
        return lmc__err(c, LMC_EINVAL, "grace_ms %lld is out of range (0 to 2^32 - 1)",
                        (long long)grace_ms);
    uint64_t exp;
    if ((rc = lmc__expiry(c, ttl_ms, lmc__now_ms(), &exp)))
        return rc;
    a.val = val;
    a.vlen = vlen;
    a.ttl = ttl_ms;
    a.grace = (uint32_t)grace_ms;
    /* The extension of a filled entry counts as part of its value here. */
    rc = lmc__check_size(c, klen, vlen + LMC__EXT_SIZE, sk.is_long);
    if (rc == 0)
        rc = lmc__write(c, op_fill, &a,
                        lmc__entry_pages(c->core, klen, vlen + LMC__EXT_SIZE, sk.is_long), NULL,
                        NULL);
    if (rc == 0 || (rc == LMC_ECHANGED && a.ended)) {
        lmc__lease_wake(c->core, &sk.v);
        return rc == 0 ? 0 : not_held(c, &a);
    }
    if (rc == LMC_ECHANGED)
        return not_held(c, &a);
    /* The value cannot be stored: the lease ends anyway, so that a waiter
     * takes over now rather than after the lease time.  The fill's error is
     * what the caller gets. */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lmc__errmsg_detail(rc));
    unsigned one = 1;
    int drc = lmc__write_deletes(c, op_abandon, &a, &one);
    if (a.ended)
        lmc__lease_wake(c->core, &sk.v);
    if (drc == 0 || drc == LMC_ECHANGED)
        return lmc__err(c, rc, "%s; the lease ended", msg);
    return lmc__err(c, rc, "%s; the lease could not be ended either (%s): it lapses after its "
                    "lease time", msg, lmc_errname(drc));
}

int lmc_lease_abandon(lmc *c, const lmc_lease *lease, const void *key, size_t klen)
{
    int rc = lmc__call_write_key(c, key, klen, "", 0, LMC_TTL_NEVER);
    if (rc)
        return rc;
    lmc__skey sk;
    unsigned char lkb[LMC__LEASE_KEY_MAX];
    end_arg a;
    if ((rc = end_arg_init(c, lease, &a, &sk, lkb, key, klen)))
        return rc;
    a.count = true;
    unsigned one = 1;
    rc = lmc__write_deletes(c, op_abandon, &a, &one);
    if (rc == LMC_ECHANGED)
        return not_held(c, &a);
    if (rc == 0)
        lmc__lease_wake(c->core, &sk.v);
    return rc;
}
