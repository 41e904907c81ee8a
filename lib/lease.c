/*
 * lease.c - fill leases: lmc_get_lease, lmc_get_lease_view, lmc_lease_fill and
 * lmc_lease_abandon, and the removal of leases by deletes and the sweeper.
 *
 * A lease is a record in LMDB (format.h: LMC__NS_LEASE | the stored key)
 * naming its holder: pid, stats slot, and when the holder claimed the slot.
 * Granting, filling and ending one are write transactions, so that exactly
 * one caller on the host holds a key's lease at a time, and the fill
 * commits the value and ends the lease at once.  A reader that finds a
 * live lease gets the stale value (within the entry's grace) or waits.
 *
 * Whether the holder is alive is the holder's stats slot: slots.c keeps a
 * byte lock (fcntl) on the slot of each process for as long as the process
 * has the cache open, and the kernel drops it the instant the process dies,
 * whatever kills it.  So a lease is held when its holder still locks that
 * slot and the slot is still the one it claimed (the time it claimed it
 * tells a new process that reused the pid).  Processes that share slot 0
 * (more than 1023 of them) are checked with kill(pid, 0) instead, which
 * cannot tell a reused pid: the lease time still bounds those.
 *
 * Waiters sleep on a futex in the stats file, one of LMC__WAKE_WORDS words
 * chosen by the key's hash, bumped by every commit that ends a lease of a
 * key hashed to it (fill, abandon, delete, takeover is not one: the new
 * holder's fill is what waiters want).  A waiter counts itself among the
 * word's sleepers before it reads the word and looks at the cache, and the
 * ender bumps the word after its commit, then wakes the word only if it has
 * sleepers: so a wake is never lost, and a fill nobody waits for makes no
 * system call.  A waiter also wakes every LMC__LEASE_CHECK_US to see
 * whether the holder has died (a dead process wakes nobody), which is what
 * bounds the takeover after a SIGKILL.
 */
#include "fmacros.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "call.h"
#include "clock.h"
#include "entry.h"
#include "error.h"
#include "flushtab.h"
#include "format.h"
#include "lease.h"
#include "lmdbmeta.h"
#include "recency.h"
#include "slots.h"
#include "txn.h"
#include "write.h"

#define LMC__LEASE_DEFAULT_MS 30000
/* How often a waiter looks whether the holder is alive: a takeover after the
 * holder dies takes at most this (and a write transaction). */
#define LMC__LEASE_CHECK_US 2000u
/* Larger XFetch betas would refresh on almost every hit. */
#define LMC__LEASE_MAX_BETA 1000.0
#define LMC__WAKE_SEED 0x6c6d632d77616b65ULL

/* What the snapshot shows of the entry. */
enum { S_NONE, S_FRESH, S_GRACE };
/* What the caller is to get. */
enum { D_HIT, D_STALE, D_ACQUIRE, D_WAIT, D_DONE };
/* Whether a lease record still holds. */
enum { L_NONE, L_HELD, L_DEAD, L_EXPIRED };

/* ------------------------------------------------------------------------ */
/* Waking                                                                   */
/* ------------------------------------------------------------------------ */

static lmc__wake *wake_word(const lmc__core *k, const MDB_val *skey)
{
    if (!k->wake)
        return NULL;
    uint64_t h = lmc__hash64(skey->mv_data, skey->mv_size, LMC__WAKE_SEED);
    return &k->wake[h & (LMC__WAKE_WORDS - 1)];
}

static void wake(lmc__wake *wk)
{
    /* Sequentially consistent, against the waiter's increment of sleepers
     * and read of seq (the comment at the top says why no wake is lost). */
    atomic_fetch_add(&wk->seq, 1);
    if (atomic_load(&wk->sleepers))
        syscall(SYS_futex, (uint32_t *)(uintptr_t)&wk->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void lmc__lease_wake(lmc__core *k, const MDB_val *skey)
{
    lmc__wake *wk = wake_word(k, skey);
    if (wk)
        wake(wk);
}

void lmc__lease_wake_all(lmc__core *k)
{
    if (k->wake)
        for (unsigned i = 0; i < LMC__WAKE_WORDS; i++)
            wake(&k->wake[i]);
}

/* Sleep until wk->seq moves from seq, a wake, or us microseconds. */
static void wait_word(lmc__wake *wk, uint32_t seq, uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
    if (!wk) {
        nanosleep(&ts, NULL);
        return;
    }
    syscall(SYS_futex, (uint32_t *)(uintptr_t)&wk->seq, FUTEX_WAIT, seq, &ts, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Lease records and their holders                                          */
/* ------------------------------------------------------------------------ */

static bool holder_alive(const lmc__core *k, const lmc__lrec *r)
{
    if (r->pid == (int64_t)getpid())
        return r->slot == k->slot_index &&
               r->slot_started_ms == atomic_load_explicit(&k->slot->started_ms,
                                                          memory_order_relaxed);
    if (r->pid <= 0 || r->pid > INT_MAX)
        return false;
    if (r->slot > 0 && k->stats_map && r->slot < k->nslots) {
        /* F_GETLK shows other processes' locks only: a slot this process
         * holds now shows none, and it was not this holder's. */
        pid_t h = lmc__slot_holder(k, r->slot);
        if (h > 0)
            return h == (pid_t)r->pid &&
                   atomic_load_explicit(&lmc__slot_at(k, r->slot)->started_ms,
                                        memory_order_relaxed) == r->slot_started_ms;
        if (h == 0)
            return false;
    }
    return kill((pid_t)r->pid, 0) == 0 || errno == EPERM;
}

/* The lease record under lkey in txn: 0 with *have, or a code.  A record
 * that is not one lmc writes is no lease (a grant overwrites it). */
static int lease_read(const lmc *h, MDB_txn *txn, const MDB_val *lkey, lmc__lrec *r, bool *have)
{
    MDB_val key = *lkey, d;
    *have = false;
    int rc = mdb_get(txn, h->core->dbi_main, &key, &d);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_get (lease)");
    *have = lmc__lrec_parse(&key, &d, r) == 0;
    return 0;
}

static int lease_state(const lmc__core *k, const lmc__lrec *r, bool have, int64_t now)
{
    if (!have)
        return L_NONE;
    if (r->deadline_ms <= now)
        return L_EXPIRED;
    return holder_alive(k, r) ? L_HELD : L_DEAD;
}

/* ------------------------------------------------------------------------ */
/* Entries as leases see them                                               */
/* ------------------------------------------------------------------------ */

static int entry_state(const lmc__entry *e, int64_t now)
{
    if (!e->expires_at || e->expires_at > (uint64_t)now)
        return S_FRESH;
    if (e->expires_at + e->grace_ms > (uint64_t)now)
        return S_GRACE;
    return S_NONE;
}

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

/* The entry of the key in txn, parsed: whether there is one of this key
 * that no flush marker of fv hides. */
static bool entry_of(const lmc__skey *sk, const void *key, size_t klen, const MDB_val *d,
                     const lmc__fview *fv, lmc__entry *e)
{
    return lmc__entry_parse(&sk->v, d, e) == 0 &&
           (!sk->is_long || lmc__entry_key_matches(e, key, klen)) && !lmc__flush_hides(fv, e);
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
    int st = S_NONE;
    MDB_val skey = a->sk->v;
    rc = mdb_get(r->txn, k->dbi_main, &skey, &d);
    if (rc == 0 && entry_of(a->sk, a->key, a->klen, &d, &fv, &e))
        st = entry_state(&e, now);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc) {
        lmc__rend(r);
        return lmc__mdb_err(c, rc, "mdb_get");
    }
    a->decision = D_ACQUIRE;
    /* One draw per call: a second one would square the probability. */
    a->early = st == S_FRESH && (a->drawn_early || refresh_early(&e, now, a->beta));
    a->drawn_early = false;
    if (st == S_FRESH && !a->early) {
        a->decision = D_HIT;
    } else {
        lmc__lrec lr;
        bool have;
        if ((rc = lease_read(c, r->txn, &a->lkey, &lr, &have))) {
            lmc__rend(r);
            return rc;
        }
        if (lease_state(k, &lr, have, now) == L_HELD)
            a->decision = st == S_FRESH ? D_HIT : st == S_GRACE ? D_STALE : D_WAIT;
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
    int rc = lease_read(w->h, w->txn, &a->lkey, &lr, &have_lease);
    if (rc)
        return rc;
    lmc__found f;
    if ((rc = lmc__entry_find(w, a->sk, a->key, a->klen, &f)))
        return rc;
    lmc__fview fv;
    lmc__flush_view(k, &fv);
    lmc__entry e;
    bool have = f.exists && f.mine && entry_of(a->sk, a->key, a->klen, &f.old, &fv, &e);
    int st = have ? entry_state(&e, w->now) : S_NONE;
    int ls = lease_state(k, &lr, have_lease, w->now);
    a->stale = st == S_GRACE;
    if (st == S_FRESH && (!a->early || ls == L_HELD)) {
        a->decision = D_HIT;
        a->outcome = LMC_LEASE_HIT;
        return take_value(w->h, a, &e);
    }
    if (ls == L_HELD && st == S_GRACE) {
        a->decision = D_STALE;
        a->outcome = LMC_LEASE_STALE;
        return take_value(w->h, a, &e);
    }
    if (ls == L_HELD) {
        a->decision = D_WAIT;
        return 0;
    }
    /* The lease is free, or its holder is gone or out of time: take it.
     * The value goes out first: the put below may move the entry's page. */
    a->decision = D_DONE;
    a->outcome = st == S_NONE ? LMC_LEASE_FILL : LMC_LEASE_REFRESH;
    if (st != S_NONE && (rc = take_value(w->h, a, &e)))
        return rc;
    if (ls == L_DEAD)
        lmc__wcount(w, LMC__C_lease_takeovers_dead, 1);
    else if (ls == L_EXPIRED)
        lmc__wcount(w, LMC__C_lease_takeovers_expired, 1);
    if (st == S_FRESH)
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
    lmc__wake *wk = wake_word(k, &a->sk->v);
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
        wait_word(wk, seq, span < LMC__LEASE_CHECK_US ? span : LMC__LEASE_CHECK_US);
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
    if (LMC__LIKELY(rc == 0 && entry_of(&sk, key, klen, &d, &fv, &e)) &&
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
    int rc = lease_read(w->h, w->txn, &a->lkey, lr, &have);
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
    if ((rc = lmc__entry_find(w, a->sk, a->key, a->klen, &f)))
        return rc;
    /* Written since the grant (a set, or another fill): the value computed
     * under this lease is older than what is there.  An entry gone since
     * (expired and swept, or evicted) is no change: the lease's end by a
     * delete is what a delete is. */
    lmc__fview fv;
    lmc__flush_view(w->k, &fv);
    lmc__entry e;
    if (f.exists && f.mine && entry_of(a->sk, a->key, a->klen, &f.old, &fv, &e) &&
        e.version != lr.entry_version) {
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
    if (!exp)
        w->stamp = &a->sk->v;
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
    if ((rc = lmc__entry_find(w, a->sk, a->key, a->klen, &f)))
        return rc;
    lmc__fview fv;
    lmc__flush_view(w->k, &fv);
    lmc__entry e;
    if (f.exists && f.mine && entry_of(a->sk, a->key, a->klen, &f.old, &fv, &e) &&
        entry_state(&e, w->now) == S_GRACE)
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
    snprintf(msg, sizeof msg, "%s", lmc_errmsg(c));
    unsigned one = 1;
    int drc = lmc__write_deletes(c, op_abandon, &a, &one);
    if (a.ended)
        lmc__lease_wake(c->core, &sk.v);
    const char *m = msg, *name = lmc_errname(rc);
    size_t nl = strlen(name);
    if (strncmp(m, name, nl) == 0 && m[nl] == ':')
        m += nl + 2;
    if (drc == 0 || drc == LMC_ECHANGED)
        return lmc__err(c, rc, "%s; the lease ended", m);
    return lmc__err(c, rc, "%s; the lease could not be ended either (%s): it lapses after its "
                    "lease time", m, lmc_errname(drc));
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

/* ------------------------------------------------------------------------ */
/* Removal by the other writes                                              */
/* ------------------------------------------------------------------------ */

int lmc__lease_drop(lmc__wctx *w, const MDB_val *skey, bool *removed)
{
    unsigned char lkb[LMC__LEASE_KEY_MAX];
    MDB_val lkey = lmc__lease_key(lkb, skey);
    *removed = false;
    int rc = mdb_del(w->txn, w->k->dbi_main, &lkey, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_del (lease)");
    *removed = true;
    return 0;
}

/* Remove the lease records whose keys start with from (every lease: the
 * namespace byte alone) and for which pred, if not NULL, is true. */
static int drop_from(lmc__wctx *w, const MDB_val *from, bool (*pred)(lmc__wctx *, const MDB_val *,
                                                                    const MDB_val *),
                     uint64_t *n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->k->dbi_main, &cur);
    if (rc)
        return lmc__mdb_err(w->h, rc, "mdb_cursor_open");
    MDB_val key = *from, d;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    while (rc == 0 && key.mv_size >= from->mv_size &&
           memcmp(key.mv_data, from->mv_data, from->mv_size) == 0) {
        if (pred && !pred(w, &key, &d)) {
            rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
            continue;
        }
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        (*n)++;
        rc = lmc__lmdb_next_after_del(cur, &key, &d);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(w->h, rc, "removing leases");
    return 0;
}

int lmc__lease_drop_range(lmc__wctx *w, const lmc__range *r, uint64_t *n)
{
    unsigned char lkb[LMC__LEASE_KEY_MAX];
    MDB_val from = lmc__lease_key(lkb, &r->from);
    return drop_from(w, &from, NULL, n);
}

/* Whether the sweeper removes a lease record: not one lmc writes, past its
 * time, or its holder gone. */
static bool lease_lapsed(lmc__wctx *w, const MDB_val *key, const MDB_val *d)
{
    lmc__lrec r;
    if (lmc__lrec_parse(key, d, &r) != 0)
        return true;
    return lease_state(w->k, &r, true, w->now) != L_HELD;
}

static int op_sweep(lmc__wctx *w, void *p)
{
    uint64_t *n = p;
    *n = 0;
    static const unsigned char ns = LMC__NS_LEASE;
    MDB_val from = {1, (void *)(uintptr_t)&ns};
    return drop_from(w, &from, lease_lapsed, n);
}

int lmc__lease_sweep(lmc *h, uint64_t *removed)
{
    *removed = 0;
    /* Most passes find no lease at all: a read says so without taking the
     * writer lock. */
    lmc__rtxn *r;
    int rc = lmc__rbegin(h, &r);
    if (rc)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(r->txn, h->core->dbi_main, &cur))) {
        lmc__rend(r);
        return lmc__mdb_err(h, rc, "mdb_cursor_open");
    }
    static const unsigned char ns = LMC__NS_LEASE;
    MDB_val key = {1, (void *)(uintptr_t)&ns}, d;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    bool any = rc == 0 && lmc__is_lease_key(&key);
    mdb_cursor_close(cur);
    lmc__rend(r);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(h, rc, "looking for leases");
    if (!any)
        return 0;
    unsigned batch = 1;
    rc = lmc__write_deletes(h, op_sweep, removed, &batch);
    if (rc == 0 && *removed)
        lmc__lease_wake_all(h->core);
    return rc;
}
