/*
 * leaseget.c - lmc_get_lease and lmc_get_lease_view: a get that, on a miss
 * or past the TTL, grants the key's fill lease to exactly one caller on the
 * host and gives the others the stale value (within the entry's grace) or a
 * wait for the fill, bounded by their wait time.  Also XFetch, the early
 * refresh of a fresh entry shortly before it expires.  The lease records,
 * their holders and the futex words are lease.c's; ending a lease is
 * leasefill.c's.
 */
#include "fmacros.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "call.h"
#include "clock.h"
#include "entry.h"
#include "error.h"
#include "flushtab.h"
#include "format.h"
#include "lease.h"
#include "recency.h"
#include "slots.h"
#include "txn.h"
#include "write.h"

#define LMC__LEASE_DEFAULT_MS 30000
/* Larger XFetch betas would refresh on almost every hit. */
#define LMC__LEASE_MAX_BETA 1000.0

/* What the caller is to get. */
enum { D_HIT, D_STALE, D_ACQUIRE, D_WAIT, D_DONE };

/* ------------------------------------------------------------------------ */
/* Early refresh                                                            */
/* ------------------------------------------------------------------------ */

/* A uniform variate in (0, 1], per thread (splitmix64): no lock, and no two
 * processes forked from one parent draw the same sequence. */
static double uniform01(void)
{
    static _Thread_local uint64_t state;
    static _Thread_local pid_t owner;
    pid_t pid = getpid();
    if (owner != pid) {
        owner = pid;
        state = lmc__mono_ns() ^ ((uint64_t)pid << 32) ^ (uint64_t)(uintptr_t)&state;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)((z >> 11) + 1) * 0x1.0p-53;
}

/* -ln(u) for u in (0, 1], without libm: u = m * 2^x with m in [1, 2), and
 * ln m = 2 atanh(s) = 2 (s + s^3/3 + ...) with s = (m - 1) / (m + 1) below
 * 1/3, which eight terms take to 1e-9. */
static double neg_ln(double u)
{
    uint64_t bits;
    memcpy(&bits, &u, 8);
    int x = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & 0xfffffffffffffULL) | 0x3ff0000000000000ULL;
    double m;
    memcpy(&m, &bits, 8);
    double s = (m - 1) / (m + 1), s2 = s * s, t = s, sum = 0;
    for (int i = 1; i <= 15; i += 2) {
        sum += t / i;
        t *= s2;
    }
    return -(x * 0.69314718055994530942 + 2 * sum);
}

/*
 * XFetch: refresh a fresh entry now with probability exp(-left / (fill *
 * beta)), where left is the time to its expiry and fill the time its value
 * took to compute: a value that takes a second to compute starts being
 * refreshed a few seconds before it expires, one that takes a millisecond
 * almost never early.  An entry filled without a lease has no fill time and
 * is never refreshed early.
 */
static bool refresh_early(const lmc__entry *e, int64_t now, double beta)
{
    if (beta <= 0 || !e->expires_at || !e->fill_ms)
        return false;
    double left = (double)(e->expires_at - (uint64_t)now);
    return left <= (double)e->fill_ms * beta * neg_ln(uniform01());
}


/* ------------------------------------------------------------------------ */
/* lmc_get_lease                                                            */
/* ------------------------------------------------------------------------ */

typedef struct acquire_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    MDB_val lkey;
    int64_t lease_ms;
    double beta;
    bool early;       /* the entry was chosen for an early refresh */
    bool drawn_early; /* the fast path chose it already: draw no second time */
    /* What the caller gets. */
    int decision;     /* D_* */
    int outcome;      /* LMC_LEASE_*, once decided */
    bool stale;       /* the value returned is past its TTL */
    void *val;
    size_t vlen;
    uint64_t expires_at;
    uint64_t version;
    lmc__lrec granted;
} acquire_arg;

static int take_value(lmc *h, acquire_arg *a, const lmc__entry *e)
{
    void *p = lmc__malloc(e->vlen ? e->vlen : 1);
    if (!p)
        return lmc__err(h, LMC_ENOMEM, "out of memory for a value of %zu bytes", e->vlen);
    if (e->vlen)
        memcpy(p, e->val, e->vlen);
    a->val = p;
    a->vlen = e->vlen;
    a->expires_at = e->expires_at;
    a->version = e->version;
    return 0;
}

/* Decide from a read snapshot: a fresh hit (the fast path: no lease record
 * is read), a stale value or a wait while another holds the lease, or a
 * write to take it. */
static int decide_read(lmc *c, acquire_arg *a)
{
    lmc__core *k = c->core;
    lmc__fview fv;
    lmc__rtxn *r;
    int rc = lmc__rbegin_flushed(c, &fv, &r);
    if (rc)
        return rc;
    int64_t now = lmc__now_ms();
    MDB_val d;
    lmc__entry e;
    int st = LMC__ES_NONE;
    MDB_val skey = a->sk->v;
    rc = mdb_get(r->txn, k->dbi_main, &skey, &d);
    if (rc == 0 && lmc__lease_entry_of(a->sk, a->key, a->klen, &d, &fv, &e))
        st = lmc__lease_entry_state(&e, now);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc) {
        lmc__rend(r);
        return lmc__mdb_err(c, rc, "mdb_get");
    }
    a->decision = D_ACQUIRE;
    /* One draw per call: a second one would square the probability. */
    a->early = st == LMC__ES_FRESH && (a->drawn_early || refresh_early(&e, now, a->beta));
    a->drawn_early = false;
    if (st == LMC__ES_FRESH && !a->early) {
        a->decision = D_HIT;
    } else {
        lmc__lrec lr;
        bool have;
        if ((rc = lmc__lease_read(c, r->txn, &a->lkey, &lr, &have))) {
            lmc__rend(r);
            return rc;
        }
        if (lmc__lease_state(k, &lr, have, now) == LMC__LR_HELD)
            a->decision = st == LMC__ES_FRESH ? D_HIT : st == LMC__ES_GRACE ? D_STALE : D_WAIT;
    }
    if (a->decision == D_HIT || a->decision == D_STALE) {
        rc = take_value(c, a, &e);
        a->outcome = a->decision == D_HIT ? LMC_LEASE_HIT : LMC_LEASE_STALE;
        a->stale = a->decision == D_STALE;
    }
    lmc__rend(r);
    if (rc == 0 && a->decision == D_HIT && !e.expires_at)
        lmc__stamp(k, r, &a->sk->v);
    return rc;
}

/* The same under the writer lock, where the lease is granted. */
static int op_acquire(lmc__wctx *w, void *p)
{
    acquire_arg *a = p;
    lmc__core *k = w->k;
    lmc__free(a->val); /* a retried transaction decides again */
    a->val = NULL;
    a->vlen = 0;
    lmc__lrec lr;
    bool have_lease;
    int rc = lmc__lease_read(w->h, w->txn, &a->lkey, &lr, &have_lease);
    if (rc)
        return rc;
    lmc__found f;
    lmc__entry e;
    bool have;
    if ((rc = lmc__lease_find(w, a->sk, a->key, a->klen, &f, &e, &have)))
        return rc;
    int st = have ? lmc__lease_entry_state(&e, w->now) : LMC__ES_NONE;
    int ls = lmc__lease_state(k, &lr, have_lease, w->now);
    a->stale = st == LMC__ES_GRACE;
    if (st == LMC__ES_FRESH && (!a->early || ls == LMC__LR_HELD)) {
        a->decision = D_HIT;
        a->outcome = LMC_LEASE_HIT;
        return take_value(w->h, a, &e);
    }
    if (ls == LMC__LR_HELD && st == LMC__ES_GRACE) {
        a->decision = D_STALE;
        a->outcome = LMC_LEASE_STALE;
        return take_value(w->h, a, &e);
    }
    if (ls == LMC__LR_HELD) {
        a->decision = D_WAIT;
        return 0;
    }
    /* The lease is free, or its holder is gone or out of time: take it.
     * The value goes out first: the put below may move the entry's page. */
    a->decision = D_DONE;
    a->outcome = st == LMC__ES_NONE ? LMC_LEASE_FILL : LMC_LEASE_REFRESH;
    if (st != LMC__ES_NONE && (rc = take_value(w->h, a, &e)))
        return rc;
    if (ls == LMC__LR_DEAD)
        lmc__wcount(w, LMC__C_lease_takeovers_dead, 1);
    else if (ls == LMC__LR_EXPIRED)
        lmc__wcount(w, LMC__C_lease_takeovers_expired, 1);
    if (st == LMC__ES_FRESH)
        lmc__wcount(w, LMC__C_early_refreshes, 1);
    lmc__wcount(w, LMC__C_lease_grants, 1);
    lmc__lrec g = {
        .magic = LMC__LEASE_MAGIC,
        .slot = k->slot_index,
        .pid = (int64_t)getpid(),
        .slot_started_ms = atomic_load_explicit(&k->slot->started_ms, memory_order_relaxed),
        .granted_ms = w->now,
        .deadline_ms = w->now + a->lease_ms,
        .token = w->version,
        .entry_version = have ? e.version : 0,
    };
    MDB_val d = {sizeof g, &g};
    w->cur_at = NULL;
    if ((rc = mdb_put(w->txn, k->dbi_main, &a->lkey, &d, 0)))
        return lmc__mdb_err(w->h, rc, "mdb_put (lease)");
    a->granted = g;
    return 0;
}

static int lease_options(lmc *c, const lmc_lease_options *opts, int64_t *lease_ms,
                         int64_t *wait_ms, double *beta)
{
    static const lmc_lease_options none;
    const lmc_lease_options *o = opts ? opts : &none;
    if (o->lease_ms < 0 || o->lease_ms > LMC_TTL_MAX)
        return lmc__err(c, LMC_EINVAL, "lease_ms %lld is out of range (0 for the default, "
                        "else 1 to LMC_TTL_MAX)", (long long)o->lease_ms);
    if (o->wait_ms < 0 || o->wait_ms > LMC_TTL_MAX)
        return lmc__err(c, LMC_EINVAL, "wait_ms %lld is out of range (0 to LMC_TTL_MAX)",
                        (long long)o->wait_ms);
    if (!(o->early_beta >= 0 && o->early_beta <= LMC__LEASE_MAX_BETA))
        return lmc__err(c, LMC_EINVAL, "early_beta %g is out of range (0 to %g)", o->early_beta,
                        LMC__LEASE_MAX_BETA);
    if (o->flags || o->reserved_u || o->reserved[0] || o->reserved[1] || o->reserved[2] ||
        o->reserved[3])
        return lmc__err(c, LMC_EINVAL, "lease options: flags and reserved fields must be 0");
    *lease_ms = o->lease_ms ? o->lease_ms : LMC__LEASE_DEFAULT_MS;
    *wait_ms = o->wait_ms;
    *beta = o->early_beta;
    return 0;
}

/* Everything but a fresh hit: decide, take the lease or wait for it. */
static int get_slow(lmc *c, acquire_arg *a, int64_t wait_ms)
{
    lmc__core *k = c->core;
    unsigned char lkb[LMC__LEASE_KEY_MAX];
    a->lkey = lmc__lease_key(lkb, &a->sk->v);
    lmc__wake *wk = lmc__lease_wake_word(k, &a->sk->v);
    bool waiting = false;
    uint32_t seq = 0;
    uint64_t t0 = 0, until = 0;
    int rc;
    for (;;) {
        if (waiting && wk)
            seq = atomic_load(&wk->seq);
        if ((rc = decide_read(c, a)))
            break;
        if (a->decision == D_ACQUIRE && (rc = lmc__write(c, op_acquire, a, 0, NULL, NULL)))
            break;
        if (a->decision != D_WAIT)
            break;
        uint64_t now = lmc__mono_us();
        if (!waiting && wait_ms) {
            /* Count in among the sleepers, then look again: from here on a
             * fill cannot go unnoticed. */
            waiting = true;
            if (wk)
                atomic_fetch_add(&wk->sleepers, 1);
            t0 = now;
            until = (uint64_t)wait_ms > (UINT64_MAX - now) / 1000u
                        ? UINT64_MAX
                        : now + (uint64_t)wait_ms * 1000u;
            continue;
        }
        if (now >= until) {
            a->outcome = LMC_LEASE_TIMEOUT;
            break;
        }
        uint64_t span = until - now;
        lmc__lease_wait_word(wk, seq, span < LMC__LEASE_CHECK_US ? span : LMC__LEASE_CHECK_US);
    }
    if (waiting) {
        if (wk)
            atomic_fetch_sub(&wk->sleepers, 1);
        lmc__count(k, LMC__C_lease_waits, 1);
        lmc__count(k, LMC__C_lease_wait_us, lmc__mono_us() - t0);
    }
    if (rc) {
        lmc__free(a->val);
        a->val = NULL;
        return rc;
    }
    bool fresh = a->outcome == LMC_LEASE_HIT || (a->outcome == LMC_LEASE_REFRESH && !a->stale);
    lmc__count(k, fresh ? LMC__C_hits : LMC__C_misses, 1);
    if (a->stale)
        lmc__count(k, LMC__C_expired, 1);
    if (a->outcome == LMC_LEASE_STALE)
        lmc__count(k, LMC__C_stale_served, 1);
    if (a->outcome == LMC_LEASE_TIMEOUT)
        lmc__count(k, LMC__C_lease_wait_timeouts, 1);
    if (a->val)
        lmc__count(k, LMC__C_bytes_read, a->vlen);
    return 0;
}

/* Where a lease call's value goes: to the caller's callback (lmc_get_lease_view),
 * or into a buffer of its own (lmc_get_lease, fn NULL). */
typedef struct lease_sink {
    lmc_view_fn fn;
    void *arg;
    void *val; /* out, fn NULL: the new buffer */
    size_t vlen;
} lease_sink;

/* Hand the callback a value, counting it as a callback frame of this cache
 * so that calls on it from inside are refused as in lmc_get_view. */
static int sink_call(lmc__core *k, lease_sink *s, const lmc_value *v)
{
    lmc__cb_frame cb;
    lmc__cb_push(&cb, k);
    int out = s->fn(s->arg, v);
    lmc__cb_pop(&cb);
    return out;
}

/*
 * The one implementation of both lease calls.  The fast path, a fresh hit
 * not chosen for early refresh, is a get: no lease record is read, and the
 * view call's callback runs inside the read snapshot, so that a hit costs
 * what lmc_get_view costs.  The slow path copies the value inside its write
 * transaction (which may retry, and during which no callback of the caller's
 * may run: it would hold the writer lock), then hands over the copy.
 */
static int get_lease(lmc *c, const void *key, size_t klen, const lmc_lease_options *opts,
                     lease_sink *s, lmc_lease *lease, int *outcome)
{
    lmc__core *k = c->core;
    int64_t lease_ms = LMC__LEASE_DEFAULT_MS, wait_ms = 0;
    double beta = 0;
    int rc;
    if (opts && (rc = lease_options(c, opts, &lease_ms, &wait_ms, &beta)))
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    /* A read-only handle gets its hits here, and LMC_EREADONLY for
     * anything that would take a lease (or wait for another's fill, which
     * its caller could not store either); it is never chosen to refresh
     * early. */
    if (c->rdonly)
        beta = 0;

    /* The flush markers and the snapshot, in that order (flushtab.h). */
    lmc__fview fv;
    lmc__rtxn *r;
    if (LMC__UNLIKELY((rc = lmc__rbegin_flushed(c, &fv, &r))))
        return rc;
    MDB_val d;
    lmc__entry e;
    int64_t now = 0;
    bool early = false;
    rc = mdb_get(r->txn, k->dbi_main, &sk.v, &d);
    if (LMC__LIKELY(rc == 0 && lmc__lease_entry_of(&sk, key, klen, &d, &fv, &e)) &&
        (!e.expires_at || e.expires_at > (uint64_t)(now = lmc__now_ms())) &&
        !(beta > 0 && (early = refresh_early(&e, now, beta)))) {
        int out = 0;
        if (s->fn) {
            lmc_value v = {key, klen, e.val, e.vlen, e.version, (int64_t)e.expires_at};
            out = sink_call(k, s, &v);
        } else if ((s->val = lmc__malloc(e.vlen ? e.vlen : 1))) {
            if (e.vlen)
                memcpy(s->val, e.val, e.vlen);
            s->vlen = e.vlen;
        } else {
            lmc__rend(r);
            return lmc__err(c, LMC_ENOMEM, "out of memory for a value of %zu bytes", e.vlen);
        }
        lmc__rend(r);
        lmc__count(k, LMC__C_hits, 1);
        lmc__count(k, LMC__C_bytes_read, e.vlen);
        if (!e.expires_at)
            lmc__stamp(k, r, &sk.v);
        *outcome = LMC_LEASE_HIT;
        /* The callback's value is the call's, with no message of lmc's. */
        return out ? lmc__answer(c, out) : 0;
    }
    lmc__rend(r);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(c, rc, "mdb_get");
    if (LMC__UNLIKELY((rc = lmc__writable(c))))
        return rc;

    acquire_arg a;
    memset(&a, 0, sizeof a);
    a.sk = &sk;
    a.key = key;
    a.klen = klen;
    a.lease_ms = lease_ms;
    a.beta = beta;
    a.drawn_early = early;
    if ((rc = get_slow(c, &a, wait_ms)))
        return rc;
    if (a.outcome == LMC_LEASE_FILL || a.outcome == LMC_LEASE_REFRESH) {
        lease->token = a.granted.token;
        lease->granted_ms = a.granted.granted_ms;
    }
    *outcome = a.outcome;
    if (!s->fn) {
        s->val = a.val;
        s->vlen = a.vlen;
        return 0;
    }
    if (!a.val)
        return 0;
    lmc_value v = {key, klen, a.val, a.vlen, a.version, (int64_t)a.expires_at};
    int out = sink_call(k, s, &v);
    lmc__free(a.val);
    if (!out)
        return 0;
    /* A caller whose callback failed cannot go on to refresh the value: the
     * lease it would hold goes back at once (a failed refresh, counted), so
     * that nobody waits out the lease time for it. */
    if (lease->token) {
        (void)lmc_lease_abandon(c, lease, key, klen);
        memset(lease, 0, sizeof *lease);
        *outcome = a.stale ? LMC_LEASE_STALE : LMC_LEASE_HIT;
    }
    return lmc__answer(c, out);
}

/* What a timed-out waiter is told (compute, do not store): the state every
 * out pointer of a lease call is left in on an error. */
static void lease_outs_init(lmc_lease *lease, int *outcome)
{
    if (lease)
        memset(lease, 0, sizeof *lease);
    if (outcome)
        *outcome = LMC_LEASE_TIMEOUT;
}

int lmc_get_lease(lmc *c, const void *key, size_t klen, void **val, size_t *vlen,
                  const lmc_lease_options *opts, lmc_lease *lease, int *outcome)
{
    if (val)
        *val = NULL;
    if (vlen)
        *vlen = 0;
    lease_outs_init(lease, outcome);
    int rc = lmc__call_key(c, key, klen);
    if (LMC__UNLIKELY(rc))
        return rc;
    if (LMC__UNLIKELY(!val || !vlen || !lease || !outcome))
        return lmc__err(c, LMC_EINVAL, "val, vlen, lease and outcome must not be NULL");
    lease_sink s = {NULL, NULL, NULL, 0};
    if ((rc = get_lease(c, key, klen, opts, &s, lease, outcome)))
        return rc;
    *val = s.val;
    *vlen = s.vlen;
    return 0;
}

int lmc_get_lease_view(lmc *c, const void *key, size_t klen, const lmc_lease_options *opts,
                       lmc_view_fn fn, void *arg, lmc_lease *lease, int *outcome)
{
    lease_outs_init(lease, outcome);
    int rc = lmc__call_key(c, key, klen);
    if (LMC__UNLIKELY(rc))
        return rc;
    if (LMC__UNLIKELY(!fn || !lease || !outcome))
        return lmc__err(c, LMC_EINVAL, "fn, lease and outcome must not be NULL");
    lease_sink s = {fn, arg, NULL, 0};
    return get_lease(c, key, klen, opts, &s, lease, outcome);
}
