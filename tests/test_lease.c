/*
 * test_lease.c - fill leases, grace and early refresh, with real forked
 * processes: 64 processes that miss one key compute it once (and with grace
 * none of them waits); a holder SIGKILLed in the middle of computing, 200
 * times, is taken over each time; a holder that exits or closes loses its
 * lease at once, one that is stuck loses it after its lease time; an
 * abandoned refresh keeps the stale value and is counted; deletes, prefix
 * deletes and clears end leases, eviction never does, and leases are
 * invisible to reads, scans and the gauges; XFetch refreshes early with the
 * probability it promises; bad input gets clear codes and disturbs nothing.
 *
 * Time is the fake clock (shared with the children) wherever a test's
 * outcome depends on it; no test sleeps for its outcome.
 */
#include "util.h"

#include <math.h>
#include <sched.h>

/* What one lmc_get_lease call gave. */
typedef struct got {
    int rc;
    int outcome;
    char val[256];
    size_t vlen;
    lmc_lease lease;
} got;

/* Whether lease_get goes through lmc_get_lease_view (the tests registered
 * a second time with setup_view run every step of theirs through it). */
static bool via_view;

/* lmc_get_lease_view's callback for lease_get: a copy of what it was shown. */
static int view_copy(void *arg, const lmc_value *v)
{
    got *g = arg;
    size_t n = v->len < sizeof g->val - 1 ? v->len : sizeof g->val - 1;
    memcpy(g->val, v->data, n);
    g->val[n] = 0;
    g->vlen = v->len;
    return 0;
}

static got lease_get(lmc *c, const char *key, const lmc_lease_options *o)
{
    got g;
    memset(&g, 0, sizeof g);
    if (via_view) {
        g.rc = lmc_get_lease_view(c, key, strlen(key), o, view_copy, &g, &g.lease, &g.outcome);
        return g;
    }
    void *v = NULL;
    g.rc = lmc_get_lease(c, key, strlen(key), &v, &g.vlen, o, &g.lease, &g.outcome);
    if (v) {
        size_t n = g.vlen < sizeof g.val - 1 ? g.vlen : sizeof g.val - 1;
        memcpy(g.val, v, n);
        g.val[n] = 0;
        lmc_free(v);
    }
    return g;
}

static int setup_view(void **state)
{
    via_view = true;
    return setup_dir(state);
}

static int teardown_view(void **state)
{
    via_view = false;
    return teardown_dir(state);
}

static got lease_wait(lmc *c, const char *key, int64_t wait_ms)
{
    lmc_lease_options o = {.wait_ms = wait_ms};
    return lease_get(c, key, &o);
}

static int fill_s(lmc *c, const got *g, const char *key, const char *val, int64_t ttl,
                  int64_t grace)
{
    return lmc_lease_fill(c, &g->lease, key, strlen(key), val, strlen(val), ttl, grace);
}

#define EXPECT_OUTCOME(g, want)                                                               \
    do {                                                                                      \
        got g_ = (g);                                                                         \
        if (g_.rc != LMC_OK)                                                                  \
            fail_msg("%s:%d: lmc_get_lease -> %s (%s)", __FILE__, __LINE__,                    \
                     lmc_errname(g_.rc), lmc__errmsg_last());                                 \
        if (g_.outcome != (want))                                                             \
            fail_msg("%s:%d: outcome %d, want %d", __FILE__, __LINE__, g_.outcome, (want));    \
    } while (0)

/* Shared memory for the children of a test. */
typedef struct shared {
    start_gate gate;
    _Atomic int computed;
    _Atomic int outcomes[5];
    _Atomic int bad_values;
    _Atomic int calling;
    _Atomic int holding;
    _Atomic int64_t returned_ns;
} shared;

static shared *shared_new(void)
{
    return shared_map(sizeof(shared));
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait until flag reaches n (a child's progress), failing after a while. */
static void await_flag(_Atomic int *flag, int n)
{
    int64_t deadline = mono_ms() + (int64_t)timeout_s(30) * 1000;
    while (atomic_load(flag) < n) {
        if (mono_ms() > deadline)
            fail_msg("a child did not get as far as expected");
        sched_yield();
    }
}

/* ------------------------------------------------------------------------ */
/* One process                                                              */
/* ------------------------------------------------------------------------ */

static void test_miss_fill_hit(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    got g = lease_get(t->c, "page", NULL);
    EXPECT_OUTCOME(g, LMC_LEASE_FILL);
    assert_true(g.lease.token != 0);
    assert_int_equal(g.vlen, 0);
    /* Held: a second caller (another thread of this process, or this one)
     * that does not wait is told to compute without storing. */
    got other = lease_wait(t->c, "page", 0);
    EXPECT_OUTCOME(other, LMC_LEASE_TIMEOUT);
    assert_int_equal(other.lease.token, 0);
    ASSERT_OK(fill_s(t->c, &g, "page", "<html>", 60000, 0));
    got hit = lease_get(t->c, "page", NULL);
    EXPECT_OUTCOME(hit, LMC_LEASE_HIT);
    assert_string_equal(hit.val, "<html>");
    assert_int_equal(hit.lease.token, 0);
    char buf[32];
    assert_string_equal(get_s(t->c, "page", buf, sizeof buf), "<html>");
    /* A lease is filled once. */
    ASSERT_RC(fill_s(t->c, &g, "page", "again", 60000, 0), LMC_ECHANGED);
    ASSERT_RC(lmc_lease_abandon(t->c, &g.lease, "page", 4), LMC_ECHANGED);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.lease_grants, 1);
    assert_int_equal(st.counters.lease_wait_timeouts, 1);
    assert_int_equal(st.counters.lease_waits, 0);
    assert_int_equal(st.counters.hits, 2);   /* the fresh lease get and the plain get */
    assert_int_equal(st.counters.misses, 2); /* the fill's miss and the timeout */
    assert_int_equal(st.counters.sets, 1);
}

static int count_scan(void *arg, const lmc_value *v)
{
    (void)v;
    (*(int *)arg)++;
    return 0;
}

static void test_leases_are_invisible(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    got g = lease_get(t->c, "user/1", NULL);
    EXPECT_OUTCOME(g, LMC_LEASE_FILL);
    char buf[32];
    assert_null(get_s(t->c, "user/1", buf, sizeof buf));
    ASSERT_RC(lmc_exists(t->c, "user/1", 6), LMC_NOTFOUND);
    int n = 0;
    ASSERT_OK(lmc_scan(t->c, "", 0, count_scan, &n));
    assert_int_equal(n, 0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.key_bytes, 0);
    assert_int_equal(st.value_bytes, 0);
    /* Eviction never takes a lease: a forced sweep evicts every entry. */
    ASSERT_OK(put_s(t->c, "user/2", "x", 0));
    lmc_sweep_options so = {.flags = LMC_SWEEP_FORCE, .high_watermark = 1, .low_watermark = 1e-9};
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(t->c, &so, &r));
    assert_int_equal(r.evicted_lru, 1);
    assert_int_equal(r.leases_removed, 0);
    EXPECT_OUTCOME(lease_wait(t->c, "user/1", 0), LMC_LEASE_TIMEOUT);
    /* The verifier knows lease records. */
    lmc_verify_result vr;
    ASSERT_OK(lmc_verify(t->c, NULL, &vr));
    assert_int_equal(vr.leases, 1);
    assert_int_equal(vr.entries, 0);
    ASSERT_OK(fill_s(t->c, &g, "user/1", "ann", 0, 0));
    assert_string_equal(get_s(t->c, "user/1", buf, sizeof buf), "ann");
    ASSERT_OK(lmc_verify(t->c, NULL, &vr));
    assert_int_equal(vr.leases, 0);
    assert_int_equal(vr.entries, 1);
}

/* A delete, a prefix delete and a clear end the leases they cover: the value
 * computed before them is refused, and the next caller gets the lease. */
static void test_invalidation_ends_leases(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    char buf[32];

    got g = lease_get(t->c, "a/1", NULL);
    EXPECT_OUTCOME(g, LMC_LEASE_FILL);
    ASSERT_RC(lmc_delete(t->c, "a/1", 3), LMC_NOTFOUND); /* no entry, but the lease goes */
    ASSERT_RC(fill_s(t->c, &g, "a/1", "old", 0, 0), LMC_ECHANGED);
    assert_null(get_s(t->c, "a/1", buf, sizeof buf));

    got g1 = lease_get(t->c, "p/1", NULL), g2 = lease_get(t->c, "p/2", NULL),
        g3 = lease_get(t->c, "q/1", NULL);
    EXPECT_OUTCOME(g1, LMC_LEASE_FILL);
    EXPECT_OUTCOME(g2, LMC_LEASE_FILL);
    EXPECT_OUTCOME(g3, LMC_LEASE_FILL);
    ASSERT_OK(put_s(t->c, "p/3", "entry", 0));
    uint64_t removed = 0;
    ASSERT_OK(lmc_delete_prefix(t->c, "p/", 2, &removed));
    assert_int_equal(removed, 1); /* the entry; leases are not entries */
    ASSERT_RC(fill_s(t->c, &g1, "p/1", "stale", 0, 0), LMC_ECHANGED);
    ASSERT_RC(lmc_lease_abandon(t->c, &g2.lease, "p/2", 3), LMC_ECHANGED);
    ASSERT_OK(fill_s(t->c, &g3, "q/1", "kept", 0, 0)); /* outside the prefix */
    got again = lease_get(t->c, "p/1", NULL);
    EXPECT_OUTCOME(again, LMC_LEASE_FILL);
    ASSERT_OK(lmc_clear(t->c));
    ASSERT_RC(fill_s(t->c, &again, "p/1", "stale", 0, 0), LMC_ECHANGED);
    assert_null(get_s(t->c, "q/1", buf, sizeof buf));

    /* A set while the lease is held wins over the value computed under it. */
    got s = lease_get(t->c, "s", NULL);
    EXPECT_OUTCOME(s, LMC_LEASE_FILL);
    ASSERT_OK(put_s(t->c, "s", "set", 0));
    ASSERT_RC(fill_s(t->c, &s, "s", "computed", 0, 0), LMC_ECHANGED);
    assert_string_equal(get_s(t->c, "s", buf, sizeof buf), "set");
    assert_true(strstr(lmc_errmsg(t->c), "written") != NULL);
    EXPECT_OUTCOME(lease_get(t->c, "s", NULL), LMC_LEASE_HIT); /* and the lease ended */

    lmc_verify_result vr;
    ASSERT_OK(lmc_verify(t->c, NULL, &vr));
    assert_int_equal(vr.leases, 0);
}

static void test_grace_and_abandon(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    t->c = open_cache(t, 8, 0);
    char buf[32];
    got g = lease_get(t->c, "view", NULL);
    EXPECT_OUTCOME(g, LMC_LEASE_FILL);
    ASSERT_OK(fill_s(t->c, &g, "view", "v1", 1000, 5000));
    fake_clock_advance(1500); /* past the TTL, within the grace */
    /* Plain reads treat it as expired; it is kept for its grace. */
    assert_null(get_s(t->c, "view", buf, sizeof buf));
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, 1);
    got r = lease_get(t->c, "view", NULL);
    EXPECT_OUTCOME(r, LMC_LEASE_REFRESH);
    assert_string_equal(r.val, "v1");
    assert_true(r.lease.token != 0);
    got s = lease_wait(t->c, "view", 0);
    EXPECT_OUTCOME(s, LMC_LEASE_STALE);
    assert_string_equal(s.val, "v1");
    assert_int_equal(s.lease.token, 0);
    /* The refresh fails: the stale value stays, counted. */
    ASSERT_OK(lmc_lease_abandon(t->c, &r.lease, "view", 4));
    st = stats_of(t->c);
    assert_int_equal(st.counters.refresh_failures, 1);
    assert_int_equal(st.counters.stale_served, 1);
    got r2 = lease_get(t->c, "view", NULL);
    EXPECT_OUTCOME(r2, LMC_LEASE_REFRESH);
    assert_string_equal(r2.val, "v1");
    ASSERT_OK(fill_s(t->c, &r2, "view", "v2", 1000, 5000));
    EXPECT_OUTCOME(lease_get(t->c, "view", NULL), LMC_LEASE_HIT);
    /* Past TTL and grace there is nothing to serve. */
    fake_clock_advance(6001);
    got f = lease_get(t->c, "view", NULL);
    EXPECT_OUTCOME(f, LMC_LEASE_FILL);
    assert_int_equal(f.vlen, 0);
    ASSERT_OK(lmc_lease_abandon(t->c, &f.lease, "view", 4));
    st = stats_of(t->c);
    assert_int_equal(st.counters.refresh_failures, 1); /* nothing stale was kept this time */
    /* The sweeper removes the entry at the end of its grace, not before. */
    got h = lease_get(t->c, "kept", NULL);
    ASSERT_OK(fill_s(t->c, &h, "kept", "k", 1000, 60000));
    fake_clock_advance(2000);
    lmc_sweep_result sr;
    ASSERT_OK(lmc_sweep(t->c, NULL, &sr));
    assert_int_equal(sr.expired, 1); /* "view" only */
    EXPECT_OUTCOME(lease_get(t->c, "kept", NULL), LMC_LEASE_REFRESH);
    fake_clock_advance(60000);
    ASSERT_OK(lmc_sweep(t->c, NULL, &sr));
    assert_int_equal(sr.expired, 1);
    assert_int_equal(sr.leases_removed, 1); /* the refresh lease above, out of time */
    lmc_verify_result vr;
    ASSERT_OK(lmc_verify(t->c, NULL, &vr));
}

static void test_stuck_holder_loses_after_lease_time(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    t->c = open_cache(t, 8, 0);
    lmc_lease_options o = {.lease_ms = 2000};
    got a = lease_get(t->c, "slow", &o);
    EXPECT_OUTCOME(a, LMC_LEASE_FILL);
    fake_clock_advance(1999);
    EXPECT_OUTCOME(lease_get(t->c, "slow", &o), LMC_LEASE_TIMEOUT);
    fake_clock_advance(1);
    got b = lease_get(t->c, "slow", &o);
    EXPECT_OUTCOME(b, LMC_LEASE_FILL);
    assert_true(b.lease.token != a.lease.token);
    /* Only the holder fills: the stuck one is refused, the new one stores. */
    ASSERT_RC(fill_s(t->c, &a, "slow", "late", 0, 0), LMC_ECHANGED);
    ASSERT_OK(fill_s(t->c, &b, "slow", "new", 0, 0));
    char buf[32];
    assert_string_equal(get_s(t->c, "slow", buf, sizeof buf), "new");
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.lease_takeovers_expired, 1);
    assert_int_equal(st.counters.lease_takeovers_dead, 0);
    assert_int_equal(st.counters.lease_grants, 2);
}

/* What a view callback saw, and what it does. */
typedef struct seen {
    lmc *c;        /* to try a call on the same cache from inside */
    int calls;
    int inner_rc;  /* that call's result */
    int ret;       /* what the callback returns */
    lmc_value v;   /* the metadata shown (data only valid inside) */
    char val[32];
} seen;

static int view_seen(void *arg, const lmc_value *v)
{
    seen *s = arg;
    s->calls++;
    s->v = *v;
    size_t n = v->len < sizeof s->val - 1 ? v->len : sizeof s->val - 1;
    memcpy(s->val, v->data, n);
    s->val[n] = 0;
    if (s->c) {
        char b[8];
        size_t l;
        s->inner_rc = lmc_get(s->c, "x", 1, b, sizeof b, &l);
    }
    return s->ret;
}

/* What only lmc_get_lease_view does: the value shown in place, the
 * callback's return passed through, and a lease given back when the
 * callback fails, so that nobody waits out its lease time. */
static void test_view_callback(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    t->c = open_cache(t, 8, 0);
    lmc_lease l;
    int outcome = -1;
    ASSERT_RC(lmc_get_lease_view(t->c, "k", 1, NULL, NULL, NULL, &l, &outcome), LMC_EINVAL);
    assert_int_equal(outcome, LMC_LEASE_TIMEOUT);
    assert_int_equal(l.token, 0);
    seen s = {0};
    ASSERT_RC(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s, NULL, &outcome),
              LMC_EINVAL);

    /* A miss grants the lease and shows nothing. */
    ASSERT_OK(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s, &l, &outcome));
    assert_int_equal(outcome, LMC_LEASE_FILL);
    assert_int_equal(s.calls, 0);
    assert_true(l.token != 0);
    ASSERT_OK(lmc_lease_fill(t->c, &l, "k", 1, "v1", 2, 1000, 5000));

    /* A fresh hit: the entry as lmc_get_view shows it, and a call on the
     * same cache from inside is refused. */
    uint64_t version = 0;
    char b[8];
    size_t bl;
    ASSERT_OK(lmc_get_cas(t->c, "k", 1, b, sizeof b, &bl, &version));
    s = (seen){.c = t->c};
    ASSERT_OK(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s, &l, &outcome));
    assert_int_equal(outcome, LMC_LEASE_HIT);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.val, "v1");
    assert_int_equal(s.v.len, 2);
    assert_int_equal(s.v.klen, 1);
    assert_int_equal(s.v.version, version);
    assert_true(s.v.expires_at_ms > 0);
    assert_int_equal(s.inner_rc, LMC_EBUSY);
    assert_int_equal(l.token, 0);
    /* Its return is the call's. */
    s = (seen){.ret = 77};
    assert_int_equal(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s, &l, &outcome), 77);
    assert_int_equal(s.calls, 1);

    /* Past the TTL, within the grace: the refresher is shown the stale
     * value after its grant; when its callback fails it holds no lease, and
     * the next caller is handed the refresh at once instead of the stale
     * value it would get while a lease is held. */
    fake_clock_advance(1500);
    s = (seen){.ret = 5};
    assert_int_equal(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s, &l, &outcome), 5);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.val, "v1");
    assert_int_equal(l.token, 0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.refresh_failures, 1);
    s = (seen){0};
    ASSERT_OK(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s, &l, &outcome));
    assert_int_equal(outcome, LMC_LEASE_REFRESH);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.val, "v1");
    assert_true(l.token != 0);
    /* A second caller gets the stale value, shown after the slow path. */
    seen s2 = {0};
    lmc_lease l2;
    ASSERT_OK(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s2, &l2, &outcome));
    assert_int_equal(outcome, LMC_LEASE_STALE);
    assert_int_equal(s2.calls, 1);
    assert_string_equal(s2.val, "v1");
    assert_int_equal(l2.token, 0);
    ASSERT_OK(lmc_lease_fill(t->c, &l, "k", 1, "v2", 2, 1000, 5000));
    s = (seen){0};
    ASSERT_OK(lmc_get_lease_view(t->c, "k", 1, NULL, view_seen, &s, &l, &outcome));
    assert_int_equal(outcome, LMC_LEASE_HIT);
    assert_string_equal(s.val, "v2");
    lmc_verify_result vr;
    ASSERT_OK(lmc_verify(t->c, NULL, &vr));
}

static void test_bad_input(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    void *v = (void *)1;
    size_t n = 7;
    lmc_lease l;
    int out = -1;
    ASSERT_RC(lmc_get_lease(NULL, "k", 1, &v, &n, NULL, &l, &out), LMC_EINVAL);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_int_equal(out, LMC_LEASE_TIMEOUT);
    ASSERT_RC(lmc_get_lease(t->c, NULL, 1, &v, &n, NULL, &l, &out), LMC_EINVAL);
    ASSERT_RC(lmc_get_lease(t->c, "k", 0, &v, &n, NULL, &l, &out), LMC_EINVAL);
    ASSERT_RC(lmc_get_lease(t->c, "k", LMC_MAX_KEY + 1, &v, &n, NULL, &l, &out), LMC_ETOOBIG);
    ASSERT_RC(lmc_get_lease(t->c, "k", 1, NULL, &n, NULL, &l, &out), LMC_EINVAL);
    ASSERT_RC(lmc_get_lease(t->c, "k", 1, &v, NULL, NULL, &l, &out), LMC_EINVAL);
    ASSERT_RC(lmc_get_lease(t->c, "k", 1, &v, &n, NULL, NULL, &out), LMC_EINVAL);
    ASSERT_RC(lmc_get_lease(t->c, "k", 1, &v, &n, NULL, &l, NULL), LMC_EINVAL);
    const lmc_lease_options bad[] = {
        {.lease_ms = -1},
        {.lease_ms = LMC_TTL_MAX + 1},
        {.lease_ms = INT64_MAX},
        {.wait_ms = -5},
        {.wait_ms = INT64_MAX},
        {.early_beta = -1},
        {.early_beta = NAN},
        {.early_beta = INFINITY},
        {.early_beta = 1e9},
        {.flags = 1},
        {.reserved_u = 1},
        {.reserved = {0, 0, 0, 1}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = lmc_get_lease(t->c, "k", 1, &v, &n, &bad[i], &l, &out);
        if (rc != LMC_EINVAL)
            fail_msg("bad options %zu: %s, want LMC_EINVAL", i, lmc_errname(rc));
        if (strlen(lmc_errmsg(t->c)) < 20)
            fail_msg("bad options %zu: unclear message '%s'", i, lmc_errmsg(t->c));
    }
    /* The largest sane times work. */
    lmc_lease_options big = {.lease_ms = LMC_TTL_MAX, .early_beta = 1000};
    got g = lease_get(t->c, "k", &big);
    EXPECT_OUTCOME(g, LMC_LEASE_FILL);

    /* Fills and abandons of leases one does not hold. */
    lmc_lease none = {0};
    ASSERT_RC(lmc_lease_fill(t->c, &none, "k", 1, "v", 1, 0, 0), LMC_EINVAL);
    ASSERT_RC(lmc_lease_fill(t->c, NULL, "k", 1, "v", 1, 0, 0), LMC_EINVAL);
    ASSERT_RC(lmc_lease_abandon(t->c, NULL, "k", 1), LMC_EINVAL);
    lmc_lease forged = g.lease;
    forged.token ^= 0x5a5a;
    ASSERT_RC(lmc_lease_fill(t->c, &forged, "k", 1, "v", 1, 0, 0), LMC_ECHANGED);
    ASSERT_RC(lmc_lease_abandon(t->c, &forged, "k", 1), LMC_ECHANGED);
    ASSERT_RC(lmc_lease_fill(t->c, &g.lease, "other", 5, "v", 1, 0, 0), LMC_ECHANGED);
    ASSERT_RC(lmc_lease_fill(t->c, &g.lease, "k", 1, "v", 1, 0, -1), LMC_EINVAL);
    ASSERT_RC(lmc_lease_fill(t->c, &g.lease, "k", 1, "v", 1, 0, (int64_t)UINT32_MAX + 1),
              LMC_EINVAL);
    ASSERT_RC(lmc_lease_fill(t->c, &g.lease, "k", 1, "v", 1, LMC_TTL_MAX + 1, 0), LMC_EINVAL);
    ASSERT_RC(lmc_lease_fill(t->c, &g.lease, "k", 1, NULL, 1, 0, 0), LMC_EINVAL);
    ASSERT_RC(lmc_lease_fill(t->c, &g.lease, NULL, 1, "v", 1, 0, 0), LMC_EINVAL);
    /* None of that disturbed the lease or the cache. */
    EXPECT_OUTCOME(lease_wait(t->c, "k", 0), LMC_LEASE_TIMEOUT);
    char buf[32];
    assert_null(get_s(t->c, "other", buf, sizeof buf));
    ASSERT_OK(lmc_lease_fill(t->c, &g.lease, "k", 1, "v", 1, 0, (int64_t)UINT32_MAX));
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "v");

    /* A value that can never fit ends the lease too, and says so. */
    got big_g = lease_get(t->c, "huge", NULL);
    EXPECT_OUTCOME(big_g, LMC_LEASE_FILL);
    size_t hn = 6u << 20;
    char *huge = calloc(1, hn);
    assert_non_null(huge);
    ASSERT_RC(lmc_lease_fill(t->c, &big_g.lease, "huge", 4, huge, hn, 0, 0), LMC_ETOOBIG);
    free(huge);
    assert_true(strstr(lmc_errmsg(t->c), "the lease ended") != NULL);
    assert_true(strncmp(lmc_errmsg(t->c), "LMC_ETOOBIG: an entry of ", 25) == 0);
    EXPECT_OUTCOME(lease_get(t->c, "huge", NULL), LMC_LEASE_FILL);

    /* A read-only handle gets hits, never early refreshes, and takes no
     * leases. */
    lmc *ro = open_cache(t, 0, LMC_OPEN_RDONLY);
    ASSERT_RC(lmc_get_lease(ro, "ro-miss", 7, &v, &n, NULL, &l, &out), LMC_EREADONLY);
    assert_int_equal(out, LMC_LEASE_TIMEOUT);
    ASSERT_OK(lmc_set(t->c, "ro-hit", 6, "there", 5, 0));
    lmc_lease_options eager = {.early_beta = 1000};
    ASSERT_OK(lmc_get_lease(ro, "ro-hit", 6, &v, &n, &eager, &l, &out));
    assert_int_equal(out, LMC_LEASE_HIT);
    assert_int_equal(l.token, 0);
    assert_true(n == 5 && memcmp(v, "there", 5) == 0);
    lmc_free(v);
    ASSERT_RC(lmc_lease_fill(ro, &g.lease, "k", 1, "v", 1, 0, 0), LMC_EREADONLY);
    lmc_close(ro);
}

/* Keys of 448 bytes and more are stored by a hash: their leases work the
 * same, and two long keys that share the kept part do not share a lease
 * record's fate beyond a prefix delete. */
static void test_long_keys(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    char k1[600], k2[600];
    memset(k1, 'x', sizeof k1 - 1);
    k1[sizeof k1 - 1] = 0;
    memcpy(k2, k1, sizeof k1);
    k2[590] = 'y';
    got a = lease_get(t->c, k1, NULL), b = lease_get(t->c, k2, NULL);
    EXPECT_OUTCOME(a, LMC_LEASE_FILL);
    EXPECT_OUTCOME(b, LMC_LEASE_FILL);
    ASSERT_OK(fill_s(t->c, &a, k1, "one", 0, 0));
    ASSERT_OK(fill_s(t->c, &b, k2, "two", 0, 0));
    got h1 = lease_get(t->c, k1, NULL), h2 = lease_get(t->c, k2, NULL);
    EXPECT_OUTCOME(h1, LMC_LEASE_HIT);
    EXPECT_OUTCOME(h2, LMC_LEASE_HIT);
    assert_string_equal(h1.val, "one");
    assert_string_equal(h2.val, "two");
}

/* XFetch: far from expiry nothing refreshes; at the expiry's doorstep
 * almost every call does; in between the rate is exp(-left / (fill *
 * beta)). */
static void test_early_refresh(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    t->c = open_cache(t, 8, 0);
    got g = lease_get(t->c, "hot", NULL);
    fake_clock_advance(1000); /* the value takes 1 s to compute */
    ASSERT_OK(fill_s(t->c, &g, "hot", "v", 10000, 0));
    lmc_lease_options early = {.early_beta = 0.01};
    for (int i = 0; i < 1000; i++)
        EXPECT_OUTCOME(lease_get(t->c, "hot", &early), LMC_LEASE_HIT);
    /* Without early_beta no call ever refreshes early. */
    fake_clock_advance(9999);
    for (int i = 0; i < 100; i++)
        EXPECT_OUTCOME(lease_get(t->c, "hot", NULL), LMC_LEASE_HIT);
    early.early_beta = 1000;
    got r;
    int tries = 0;
    do
        r = lease_get(t->c, "hot", &early);
    while (r.rc == 0 && r.outcome == LMC_LEASE_HIT && ++tries < 10);
    EXPECT_OUTCOME(r, LMC_LEASE_REFRESH);
    assert_string_equal(r.val, "v");
    /* While one refreshes, the others get hits. */
    for (int i = 0; i < 100; i++)
        EXPECT_OUTCOME(lease_get(t->c, "hot", &early), LMC_LEASE_HIT);
    ASSERT_OK(fill_s(t->c, &r, "hot", "v2", 10000, 0));
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.early_refreshes, 1);

    /* The rate: 1000 ms left with a fill time of 1000 ms and beta 1 is
     * e^-1 = 0.368; 3000 tries put the count within 6 standard deviations
     * of 1104 (sd 26). */
    got h = lease_get(t->c, "rate", NULL);
    fake_clock_advance(1000);
    ASSERT_OK(fill_s(t->c, &h, "rate", "r", 2000, 0));
    fake_clock_advance(1000);
    early.early_beta = 1;
    int refreshed = 0;
    for (int i = 0; i < 3000; i++) {
        got x = lease_get(t->c, "rate", &early);
        assert_int_equal(x.rc, 0);
        if (x.outcome == LMC_LEASE_REFRESH) {
            refreshed++;
            ASSERT_OK(lmc_lease_abandon(t->c, &x.lease, "rate", 4));
        } else {
            assert_int_equal(x.outcome, LMC_LEASE_HIT);
        }
    }
    if (refreshed < 1104 - 160 || refreshed > 1104 + 160)
        fail_msg("%d early refreshes in 3000 tries, want about 1104", refreshed);
    st = stats_of(t->c);
    assert_int_equal(st.counters.refresh_failures, 0); /* abandoning a fresh value is no failure */
}

/* ------------------------------------------------------------------------ */
/* Processes                                                                */
/* ------------------------------------------------------------------------ */

enum { NPROC = 64 };

/* 64 processes miss one key at once: one computes, the others wait for its
 * fill and get the value. */
static void test_64_processes_compute_once(void **state)
{
    tctx *t = *state;
    lmc_close(open_cache(t, 16, 0));
    shared *s = shared_new();
    pid_t pids[NPROC];
    alarm(timeout_s(120));
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            gate_wait(&s->gate);
            got g = lease_wait(h, "front", 60000);
            CHILD_OK(g.rc);
            atomic_fetch_add(&s->outcomes[g.outcome], 1);
            if (g.outcome == LMC_LEASE_FILL) {
                atomic_fetch_add(&s->computed, 1);
                /* The computation: long enough that the others pile up. */
                struct timespec ts = {0, 50 * 1000000};
                nanosleep(&ts, NULL);
                CHILD_OK(fill_s(h, &g, "front", "the page", 60000, 0));
            } else if (strcmp(g.val, "the page") != 0) {
                atomic_fetch_add(&s->bad_values, 1);
            }
            lmc_close(h);
            _exit(0);
        }
    }
    gate_open_when(&s->gate, NPROC);
    for (int p = 0; p < NPROC; p++)
        wait_ok(pids[p]);
    alarm(0);
    assert_int_equal(atomic_load(&s->computed), 1);
    assert_int_equal(atomic_load(&s->outcomes[LMC_LEASE_FILL]), 1);
    assert_int_equal(atomic_load(&s->outcomes[LMC_LEASE_HIT]), NPROC - 1);
    assert_int_equal(atomic_load(&s->bad_values), 0);
    t->c = open_cache(t, 16, 0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.lease_grants, 1);
    assert_int_equal(st.counters.lease_wait_timeouts, 0);
    assert_true(st.counters.lease_waits >= 1);
    munmap(s, sizeof *s);
}

/* With grace, 64 processes that find the entry stale: one refreshes, none
 * waits. */
static void test_64_processes_with_grace_none_waits(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    t->c = open_cache(t, 16, 0);
    got g = lease_get(t->c, "front", NULL);
    ASSERT_OK(fill_s(t->c, &g, "front", "old page", 1000, 600000));
    fake_clock_advance(2000);
    lmc_stat before = stats_of(t->c);
    shared *s = shared_new();
    pid_t pids[NPROC];
    alarm(timeout_s(120));
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            gate_wait(&s->gate);
            /* Wait as long as they like: with a stale value they never do. */
            got x = lease_wait(h, "front", 60000);
            CHILD_OK(x.rc);
            atomic_fetch_add(&s->outcomes[x.outcome], 1);
            if (x.outcome == LMC_LEASE_REFRESH) {
                atomic_fetch_add(&s->computed, 1);
                await_flag(&s->holding, 1); /* the parent counts the stale ones first */
                CHILD_OK(fill_s(h, &x, "front", "new page", 1000, 600000));
            } else if (strcmp(x.val, x.outcome == LMC_LEASE_STALE ? "old page" : "new page")) {
                atomic_fetch_add(&s->bad_values, 1);
            }
            lmc_close(h);
            _exit(0);
        }
    }
    gate_open_when(&s->gate, NPROC);
    await_flag(&s->outcomes[LMC_LEASE_STALE], NPROC - 1);
    atomic_store(&s->holding, 1);
    for (int p = 0; p < NPROC; p++)
        wait_ok(pids[p]);
    alarm(0);
    assert_int_equal(atomic_load(&s->computed), 1);
    assert_int_equal(atomic_load(&s->outcomes[LMC_LEASE_REFRESH]), 1);
    assert_int_equal(atomic_load(&s->outcomes[LMC_LEASE_STALE]), NPROC - 1);
    assert_int_equal(atomic_load(&s->bad_values), 0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.lease_waits - before.counters.lease_waits, 0);
    assert_int_equal(st.counters.stale_served - before.counters.stale_served, NPROC - 1);
    char buf[32];
    assert_string_equal(get_s(t->c, "front", buf, sizeof buf), "new page");
    munmap(s, sizeof *s);
}

/* A child takes the lease and then ends as given: by SIGKILL in the middle
 * of computing, by exit, or by closing its handle. */
enum { END_KILL, END_EXIT, END_CLOSE };

static pid_t holder(tctx *t, shared *s, const char *key, int how)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        lmc *h = NULL;
        CHILD_OK(lmc_open(&h, t->path, NULL));
        got g = lease_get(h, key, NULL);
        CHILD_OK(g.rc);
        CHILD_CHECK(g.outcome == LMC_LEASE_FILL);
        if (how == END_EXIT)
            _exit(0);
        if (how == END_CLOSE) {
            /* Every handle of the process: the one inherited from the
             * parent shares the cache's state with h. */
            lmc_close(h);
            lmc_close(t->c);
            t->c = NULL;
        }
        atomic_fetch_add(&s->holding, 1);
        for (;;)
            pause(); /* computing, for ever */
    }
    return pid;
}

static void test_holder_that_exits_or_closes_loses_at_once(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    shared *s = shared_new();
    alarm(timeout_s(60));
    wait_ok(holder(t, s, "exit", END_EXIT));
    got a = lease_wait(t->c, "exit", 0); /* no wait: the holder is known dead */
    EXPECT_OUTCOME(a, LMC_LEASE_FILL);
    pid_t p = holder(t, s, "close", END_CLOSE);
    await_flag(&s->holding, 1);
    got b = lease_wait(t->c, "close", 0);
    EXPECT_OUTCOME(b, LMC_LEASE_FILL);
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    alarm(0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.lease_takeovers_dead, 2);
    /* The sweeper clears a dead holder's lease that nobody took over. */
    wait_ok(holder(t, s, "orphan", END_EXIT));
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(t->c, NULL, &r));
    assert_int_equal(r.leases_removed, 1);
    munmap(s, sizeof *s);
}

/* The holder is SIGKILLed while a waiter sleeps on its fill, 200 times:
 * each time the waiter takes the lease over and fills.  The takeover times
 * are printed, and recorded in bench/RESULTS.md. */
static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_killed_holder_taken_over_200_times(void **state)
{
    tctx *t = *state;
    enum { ROUNDS = 200 };
    t->c = open_cache(t, 16, 0);
    shared *s = shared_new();
    int64_t took[ROUNDS];
    alarm(timeout_s(300));
    for (int i = 0; i < ROUNDS; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        atomic_store(&s->holding, 0);
        atomic_store(&s->calling, 0);
        atomic_store(&s->returned_ns, 0);
        pid_t h = holder(t, s, key, END_KILL);
        await_flag(&s->holding, 1);
        pid_t w = fork();
        assert_true(w >= 0);
        if (w == 0) {
            lmc *c = NULL;
            CHILD_OK(lmc_open(&c, t->path, NULL));
            atomic_store(&s->calling, 1);
            got g = lease_wait(c, key, 60000);
            atomic_store(&s->returned_ns, mono_ns());
            CHILD_OK(g.rc);
            CHILD_CHECK(g.outcome == LMC_LEASE_FILL);
            CHILD_OK(fill_s(c, &g, key, "taken over", 0, 0));
            lmc_close(c);
            _exit(0);
        }
        await_flag(&s->calling, 1);
        int64_t killed = mono_ns();
        assert_int_equal(kill(h, SIGKILL), 0);
        int st;
        assert_int_equal(waitpid(h, &st, 0), h);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        wait_ok(w);
        char buf[32];
        assert_string_equal(get_s(t->c, key, buf, sizeof buf), "taken over");
        int64_t back = atomic_load(&s->returned_ns);
        took[i] = back > killed ? back - killed : 0;
    }
    alarm(0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.lease_takeovers_dead, ROUNDS);
    assert_int_equal(st.counters.lease_wait_timeouts, 0);
    qsort(took, ROUNDS, sizeof took[0], cmp_i64);
    print_message("takeover after SIGKILL: median %.2f ms, max %.2f ms (%d rounds)\n",
                  (double)took[ROUNDS / 2] / 1e6, (double)took[ROUNDS - 1] / 1e6, ROUNDS);
    munmap(s, sizeof *s);
}

/* A waiter wakes when the fill commits; an abandon hands the lease to it;
 * a waiter whose wait runs out computes without storing. */
static void test_waiters_are_woken(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    shared *s = shared_new();
    alarm(timeout_s(60));
    const char *keys[] = {"filled", "abandoned", "timed"};
    const int64_t waits[] = {60000, 60000, 50};
    const int want[] = {LMC_LEASE_HIT, LMC_LEASE_FILL, LMC_LEASE_TIMEOUT};
    for (int i = 0; i < 3; i++) {
        got g = lease_get(t->c, keys[i], NULL);
        EXPECT_OUTCOME(g, LMC_LEASE_FILL);
        atomic_store(&s->calling, 0);
        memset((void *)s->outcomes, 0, sizeof s->outcomes);
        pid_t w = fork();
        assert_true(w >= 0);
        if (w == 0) {
            lmc *c = NULL;
            CHILD_OK(lmc_open(&c, t->path, NULL));
            atomic_store(&s->calling, 1);
            int64_t t0 = mono_ms();
            got x = lease_wait(c, keys[i], waits[i]);
            CHILD_OK(x.rc);
            CHILD_CHECK(x.outcome == want[i]);
            if (want[i] == LMC_LEASE_HIT)
                CHILD_CHECK(strcmp(x.val, "value") == 0);
            if (want[i] == LMC_LEASE_TIMEOUT)
                CHILD_CHECK(mono_ms() - t0 >= 50 && x.vlen == 0 && x.lease.token == 0);
            if (want[i] == LMC_LEASE_FILL)
                CHILD_OK(lmc_lease_abandon(c, &x.lease, keys[i], strlen(keys[i])));
            lmc_close(c);
            _exit(0);
        }
        await_flag(&s->calling, 1);
        if (i == 0)
            ASSERT_OK(fill_s(t->c, &g, keys[i], "value", 0, 0));
        else if (i == 1)
            ASSERT_OK(lmc_lease_abandon(t->c, &g.lease, keys[i], strlen(keys[i])));
        wait_ok(w);
        if (i == 2)
            ASSERT_OK(lmc_lease_abandon(t->c, &g.lease, keys[i], strlen(keys[i])));
    }
    alarm(0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.lease_wait_timeouts, 1);
    assert_int_equal(st.counters.lease_takeovers_dead + st.counters.lease_takeovers_expired, 0);
    munmap(s, sizeof *s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_miss_fill_hit, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_leases_are_invisible, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_invalidation_ends_leases, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_grace_and_abandon, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_stuck_holder_loses_after_lease_time, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_bad_input, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_view_callback, setup_dir, teardown_dir),
        /* The same steps through lmc_get_lease_view. */
        cmocka_unit_test_setup_teardown(test_miss_fill_hit, setup_view, teardown_view),
        cmocka_unit_test_setup_teardown(test_grace_and_abandon, setup_view, teardown_view),
        cmocka_unit_test_setup_teardown(test_early_refresh, setup_view, teardown_view),
        cmocka_unit_test_setup_teardown(test_64_processes_with_grace_none_waits, setup_view,
                                        teardown_view),
        cmocka_unit_test_setup_teardown(test_long_keys, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_early_refresh, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_64_processes_compute_once, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_64_processes_with_grace_none_waits, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_holder_that_exits_or_closes_loses_at_once,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_killed_holder_taken_over_200_times, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_waiters_are_woken, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests_name("lease", tests, NULL, NULL);
}
