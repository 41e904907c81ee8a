/*
 * test_ttl.c - expiry semantics with an injected clock (no test waits for
 * real time): TTL default/never/milliseconds, lazy expiry on read with no
 * write, and the expiry index kept exact on overwrite, touch, delete, prefix
 * delete and clear, so that a sweep removes exactly the expired entries.
 */
#include "util.h"

static lmc *open_ttl(tctx *t, int64_t default_ttl)
{
    fake_clock_install();
    lmc_options o = {.map_size = 8u << 20, .default_ttl_ms = default_ttl};
    lmc *c = NULL;
    ASSERT_OK(lmc_open(&c, t->path, &o));
    t->c = c;
    return c;
}

static void test_expiry_is_lazy_and_writes_nothing(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char buf[16];
    ASSERT_OK(put_s(c, "k", "v", 1000));
    fake_clock_advance(999);
    assert_string_equal(get_s(c, "k", buf, sizeof buf), "v");
    lmc_stat before = stats_of(c);
    fake_clock_advance(1);
    assert_null(get_s(c, "k", buf, sizeof buf));
    assert_null(get_s(c, "k", buf, sizeof buf));
    lmc_stat after = stats_of(c);
    assert_int_equal(after.counters.expired - before.counters.expired, 2);
    assert_int_equal(after.counters.misses - before.counters.misses, 2);
    /* Nothing was written: the entry and its index row are still there. */
    assert_int_equal(after.last_txnid, before.last_txnid);
    assert_int_equal(after.entries, 1);
    assert_int_equal(after.entries_with_ttl, 1);
}

static void test_default_and_never(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 500);
    char buf[16];
    ASSERT_OK(put_s(c, "d", "v", LMC_TTL_DEFAULT));
    ASSERT_OK(put_s(c, "n", "v", LMC_TTL_NEVER));
    ASSERT_OK(put_s(c, "m", "v", 2000));
    ASSERT_RC(put_s(c, "x", "v", -3), LMC_EINVAL);
    ASSERT_RC(put_s(c, "x", "v", INT64_MAX), LMC_EINVAL);
    fake_clock_advance(500);
    assert_null(get_s(c, "d", buf, sizeof buf));
    assert_string_equal(get_s(c, "n", buf, sizeof buf), "v");
    assert_string_equal(get_s(c, "m", buf, sizeof buf), "v");
    fake_clock_advance((int64_t)10 * 365 * 86400000);
    assert_string_equal(get_s(c, "n", buf, sizeof buf), "v");
    assert_null(get_s(c, "m", buf, sizeof buf));
}

static void test_keep_ttl_on_replace(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 700);
    char buf[16];
    size_t n;
    uint64_t ver;
    ASSERT_OK(put_s(c, "k", "1", 1000));
    fake_clock_advance(400);
    ASSERT_OK(put_s(c, "k", "2", LMC_TTL_KEEP)); /* still expires at 1000 */
    ASSERT_OK(lmc_get_cas(c, "k", 1, buf, sizeof buf, &n, &ver));
    ASSERT_OK(lmc_cas(c, "k", 1, "3", 1, LMC_TTL_KEEP, ver));
    ASSERT_OK(lmc_replace(c, "k", 1, "4", 1, LMC_TTL_KEEP));
    lmc_item it = {"k", 1, "5", 1, LMC_TTL_KEEP};
    ASSERT_OK(lmc_set_many(c, &it, 1));
    ASSERT_OK(lmc_touch(c, "k", 1, LMC_TTL_KEEP)); /* a no-op */
    fake_clock_advance(599);
    assert_string_equal(get_s(c, "k", buf, sizeof buf), "5");
    assert_int_equal(stats_of(c).entries_with_ttl, 1);
    fake_clock_advance(1);
    assert_null(get_s(c, "k", buf, sizeof buf));
    /* No live entry to keep from: the handle's default applies. */
    ASSERT_OK(put_s(c, "k", "6", LMC_TTL_KEEP));
    ASSERT_OK(put_s(c, "never", "x", LMC_TTL_NEVER));
    ASSERT_OK(put_s(c, "never", "y", LMC_TTL_KEEP)); /* keeps "never" */
    fake_clock_advance(699);
    assert_string_equal(get_s(c, "k", buf, sizeof buf), "6");
    fake_clock_advance(1);
    assert_null(get_s(c, "k", buf, sizeof buf));
    assert_string_equal(get_s(c, "never", buf, sizeof buf), "y");
    ASSERT_RC(put_s(c, "k", "v", -3), LMC_EINVAL);
}

static void test_overwrite_keeps_index_exact(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char buf[16];
    ASSERT_OK(put_s(c, "k", "1", 1000));
    ASSERT_OK(put_s(c, "k", "2", 5000));
    assert_int_equal(stats_of(c).entries_with_ttl, 1);
    fake_clock_advance(2000);
    /* The first expiry time passed, but the entry was refreshed. */
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_int_equal(r.expired, 0);
    assert_string_equal(get_s(c, "k", buf, sizeof buf), "2");
    ASSERT_OK(put_s(c, "k", "3", LMC_TTL_NEVER));
    assert_int_equal(stats_of(c).entries_with_ttl, 0);
    fake_clock_advance(10000);
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_int_equal(r.expired, 0);
    assert_string_equal(get_s(c, "k", buf, sizeof buf), "3");
}

static void test_touch(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 300);
    char buf[16];
    ASSERT_RC(lmc_touch(c, "k", 1, 100), LMC_NOTFOUND);
    ASSERT_OK(put_s(c, "k", "v", 1000));
    ASSERT_OK(lmc_touch(c, "k", 1, 5000));
    fake_clock_advance(2000);
    assert_string_equal(get_s(c, "k", buf, sizeof buf), "v");
    assert_int_equal(stats_of(c).entries_with_ttl, 1);
    ASSERT_OK(lmc_touch(c, "k", 1, LMC_TTL_NEVER));
    assert_int_equal(stats_of(c).entries_with_ttl, 0);
    fake_clock_advance(100000);
    assert_string_equal(get_s(c, "k", buf, sizeof buf), "v");
    ASSERT_OK(lmc_touch(c, "k", 1, LMC_TTL_DEFAULT));
    fake_clock_advance(300);
    assert_null(get_s(c, "k", buf, sizeof buf));
    /* An expired entry cannot be touched back to life. */
    ASSERT_RC(lmc_touch(c, "k", 1, 100000), LMC_NOTFOUND);
    ASSERT_RC(lmc_touch(c, "k", 1, -3), LMC_EINVAL);
    /* A large value keeps its bytes through a touch. */
    size_t n = 100000;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i % 251);
    ASSERT_OK(lmc_set(c, "big", 3, big, n, 1000));
    ASSERT_OK(lmc_touch(c, "big", 3, 9000));
    void *out;
    size_t len;
    ASSERT_OK(lmc_get_alloc(c, "big", 3, &out, &len));
    assert_int_equal(len, n);
    assert_memory_equal(out, big, n);
    lmc_free(out);
    free(big);
    assert_int_equal(stats_of(c).counters.touches, 6);
}

static void test_sweep_removes_exactly_the_expired(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char k[32], buf[16];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        int64_t ttl = i < 100 ? 1000 : i < 200 ? 5000 : LMC_TTL_NEVER;
        ASSERT_OK(put_s(c, k, "v", ttl));
    }
    fake_clock_advance(1000); /* exactly the expiry time of the first 100 */
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_int_equal(r.expired, 100);
    assert_int_equal(r.evicted_soonest + r.evicted_lru, 0);
    assert_int_equal(r.complete, 1);
    lmc_stat st = stats_of(c);
    assert_int_equal(st.entries, 200);
    assert_int_equal(st.entries_with_ttl, 100);
    assert_int_equal(st.counters.evictions_expired, 100);
    assert_int_equal(st.counters.sweeps, 1);
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        if (i < 100)
            assert_null(get_s(c, k, buf, sizeof buf));
        else
            assert_string_equal(get_s(c, k, buf, sizeof buf), "v");
    }
    /* Nothing left to do: a second pass removes nothing. */
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_int_equal(r.expired, 0);
}

static void test_sweep_in_small_batches(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char k[32];
    for (int i = 0; i < 2500; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        ASSERT_OK(put_s(c, k, "v", 10));
    }
    fake_clock_advance(10);
    lmc_sweep_options o = {.batch = 100, .max_keys = 1050};
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, &o, &r));
    assert_int_equal(r.expired, 1050); /* the key budget stops the pass */
    assert_int_equal(r.complete, 0);
    assert_int_equal(r.transactions, 11);
    o.max_keys = 0;
    ASSERT_OK(lmc_sweep(c, &o, &r));
    assert_int_equal(r.expired, 1450);
    assert_int_equal(r.complete, 1);
    assert_int_equal(stats_of(c).entries, 0);
}

/* Regression: lmc_open accepted default_ttl_ms = INT64_MAX, after which
 * every LMC_TTL_DEFAULT write failed.  The default now has the bound of a
 * ttl_ms argument, LMC_TTL_MAX, checked at open. */
static void test_ttl_bound(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    const int64_t bad[] = {INT64_MAX, INT64_MAX - 1, LMC_TTL_MAX + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lmc_options o = {.map_size = 2u << 20, .default_ttl_ms = bad[i]};
        lmc *c = NULL;
        ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
        assert_null(c);
        assert_non_null(strstr(lmc_errmsg(NULL), "default_ttl_ms"));
        assert_non_null(strstr(lmc_errmsg(NULL), "LMC_TTL_MAX"));
    }
    lmc *c = open_ttl(t, LMC_TTL_MAX);
    ASSERT_OK(put_s(c, "d", "v", LMC_TTL_DEFAULT));
    ASSERT_OK(put_s(c, "m", "v", LMC_TTL_MAX));
    ASSERT_OK(lmc_touch(c, "m", 1, LMC_TTL_MAX));
    ASSERT_RC(put_s(c, "x", "v", LMC_TTL_MAX + 1), LMC_EINVAL);
    assert_non_null(strstr(lmc_errmsg(c), "LMC_TTL_MAX"));
    ASSERT_RC(lmc_touch(c, "m", 1, LMC_TTL_MAX + 1), LMC_EINVAL);
    /* Still fine when the clock reads a million years from now. */
    fake_clock_advance((int64_t)1000000 * 365 * 86400000);
    ASSERT_OK(put_s(c, "d2", "v", LMC_TTL_DEFAULT));
    int64_t r;
    ASSERT_OK(lmc_incr(c, "i", 1, 1, &r, LMC_TTL_DEFAULT));
    char buf[8];
    assert_string_equal(get_s(c, "d", buf, sizeof buf), "v");
    assert_string_equal(get_s(c, "d2", buf, sizeof buf), "v");
}

/* Regression: the sweep's time budget was compared in microseconds as
 * max_time_ms * 1000, which wraps for budgets above UINT64_MAX / 1000: 2^61
 * ms became a budget of 0, and a pass with "no practical limit" stopped at
 * once without removing anything. */
static void test_sweep_huge_time_budget(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    const uint64_t budgets[] = {(uint64_t)1 << 61, (uint64_t)7 << 61, UINT64_MAX / 1000 + 1,
                                UINT64_MAX - 1, UINT64_MAX};
    char k[32];
    for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
        for (int i = 0; i < 300; i++) {
            snprintf(k, sizeof k, "k%05d", i);
            ASSERT_OK(put_s(c, k, "v", 10));
        }
        fake_clock_advance(10);
        lmc_sweep_options o = {.max_time_ms = budgets[b]};
        lmc_sweep_result r;
        ASSERT_OK(lmc_sweep(c, &o, &r));
        if (r.expired != 300 || r.complete != 1)
            fail_msg("max_time_ms %llu: expired %llu, complete %d",
                     (unsigned long long)budgets[b], (unsigned long long)r.expired, r.complete);
    }
    assert_int_equal(stats_of(c).entries, 0);
}

static void test_writes_over_expired_entries(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char buf[32];
    int64_t r;
    ASSERT_OK(put_s(c, "a", "old", 100));
    ASSERT_OK(put_s(c, "n", "10", 100));
    ASSERT_OK(put_s(c, "d", "x", 100));
    fake_clock_advance(100);
    ASSERT_OK(lmc_add(c, "a", 1, "new", 3, 1000)); /* expired: add succeeds */
    assert_string_equal(get_s(c, "a", buf, sizeof buf), "new");
    ASSERT_RC(lmc_replace(c, "d", 1, "y", 1, 0), LMC_NOTFOUND);
    ASSERT_OK(lmc_incr(c, "n", 1, 1, &r, 700)); /* expired: starts at 0 */
    assert_int_equal(r, 1);
    fake_clock_advance(600);
    ASSERT_OK(lmc_incr(c, "n", 1, 1, &r, 100000)); /* live: keeps its TTL */
    assert_int_equal(r, 2);
    fake_clock_advance(100);
    assert_null(get_s(c, "n", buf, sizeof buf));
    /* Deleting an expired entry reports a miss but removes it. */
    uint64_t entries = stats_of(c).entries;
    ASSERT_RC(lmc_delete(c, "d", 1), LMC_NOTFOUND);
    assert_int_equal(stats_of(c).entries, entries - 1);
    assert_int_equal(stats_of(c).entries_with_ttl, entries - 1);
}

static int count_cb(void *arg, size_t i, const lmc_value *v)
{
    (void)i;
    if (v)
        (*(int *)arg)++;
    return 0;
}

static int scan_count(void *arg, const lmc_value *v)
{
    (void)v;
    (*(int *)arg)++;
    return 0;
}

static void test_batch_reads_skip_expired(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    ASSERT_OK(put_s(c, "p/1", "v", 100));
    ASSERT_OK(put_s(c, "p/2", "v", 0));
    ASSERT_OK(put_s(c, "p/3", "v", 300));
    fake_clock_advance(200);
    lmc_key keys[3] = {{"p/1", 3}, {"p/2", 3}, {"p/3", 3}};
    int hits = 0;
    ASSERT_OK(lmc_get_many(c, keys, 3, count_cb, &hits));
    assert_int_equal(hits, 2);
    int seen = 0;
    ASSERT_OK(lmc_scan(c, "p/", 2, scan_count, &seen));
    assert_int_equal(seen, 2);
    assert_int_equal(stats_of(c).counters.expired, 1);
}

static void test_prefix_and_clear_drop_index_rows(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char k[32];
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "a/%d", i);
        ASSERT_OK(put_s(c, k, "v", 1000 + i));
        snprintf(k, sizeof k, "b/%d", i);
        ASSERT_OK(put_s(c, k, "v", 1000 + i));
    }
    uint64_t n;
    ASSERT_OK(lmc_delete_prefix(c, "a/", 2, &n));
    assert_int_equal(n, 50);
    assert_int_equal(stats_of(c).entries_with_ttl, 50);
    fake_clock_advance(5000);
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_int_equal(r.expired, 50); /* only b/: no orphan index rows */
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "c/%d", i);
        ASSERT_OK(put_s(c, k, "v", 100));
    }
    ASSERT_OK(lmc_clear(c));
    assert_int_equal(stats_of(c).entries_with_ttl, 0);
}

/* Regression: lmc_stats counts the expiry rows in read transactions of
 * 65,536 rows and goes on from the row it stopped at, which it copied into
 * a buffer sized for a stored key; the row of a long key is 9 bytes longer
 * (its time before the stored key), so a long key's row at that boundary
 * overran it (AddressSanitizer: stack-buffer-overflow).  65,536 short keys
 * with a TTL, then one long key with the same TTL, which sorts after them
 * and is row 65,537. */
static void test_stats_count_rows_past_a_chunk(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    lmc *c = t->c = open_cache(t, 64, 0);
    enum { N = 65536, BATCH = 4096 };
    static char keys[BATCH][8];
    lmc_item items[BATCH];
    for (int b = 0; b < N / BATCH; b++) {
        for (int j = 0; j < BATCH; j++) {
            snprintf(keys[j], sizeof keys[j], "a%05d", b * BATCH + j);
            items[j] = (lmc_item){keys[j], 6, "v", 1, 60000};
        }
        ASSERT_OK(lmc_set_many(c, items, BATCH));
    }
    char long_key[600];
    memset(long_key, 'z', sizeof long_key);
    ASSERT_OK(lmc_set(c, long_key, sizeof long_key, "v", 1, 60000));
    lmc_stat st = stats_of(c);
    assert_int_equal(st.entries, N + 1);
    assert_int_equal(st.entries_with_ttl, N + 1);
}

/* The index in the library's own terms must agree with the entries. */
static void assert_index_exact(lmc *c, uint64_t with_ttl)
{
    lmc_verify_result v;
    ASSERT_OK(lmc_verify(c, NULL, &v));
    assert_int_equal(v.entries_with_ttl, with_ttl);
    assert_int_equal(v.expiry_rows, with_ttl);
}

/* A set with a TTL that replaces an entry going a little later keeps the
 * old row, which then lags behind its entry (lib/format.h).  When it comes
 * due the sweeper must not take the live entry for an expired one: it files
 * the row again at the entry's time, across transactions when there are
 * more than one looks at (4 x batch), and removes exactly the entries that
 * have gone, which here sit between the lagging ones. */
static void test_lagging_rows_are_filed_again(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char k[32], buf[16];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        ASSERT_OK(put_s(c, k, "v", 1000));
    }
    fake_clock_advance(500);
    for (int i = 0; i < 100; i += 2) { /* the even ones now go at +1500 */
        snprintf(k, sizeof k, "k%03d", i);
        ASSERT_OK(put_s(c, k, "w", 1000));
    }
    assert_index_exact(c, 100);
    fake_clock_advance(700); /* +1200: every row is due, half the entries gone */
    lmc_sweep_options o = {.batch = 8};
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, &o, &r));
    assert_int_equal(r.expired, 50);
    assert_int_equal(r.rows_refiled, 50);
    assert_int_equal(r.complete, 1);
    assert_true(r.transactions > 4); /* 100 rows, at most 32 per transaction */
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        if (i % 2)
            assert_null(get_s(c, k, buf, sizeof buf));
        else
            assert_string_equal(get_s(c, k, buf, sizeof buf), "w");
    }
    assert_index_exact(c, 50);
    /* Filed again at +1500: the next pass has nothing to look at. */
    ASSERT_OK(lmc_sweep(c, &o, &r));
    assert_int_equal(r.expired, 0);
    assert_int_equal(r.rows_refiled, 0);
    assert_int_equal(r.transactions, 1);
    fake_clock_advance(299);
    ASSERT_OK(lmc_sweep(c, &o, &r));
    assert_int_equal(r.expired, 0);
    fake_clock_advance(1);
    ASSERT_OK(lmc_sweep(c, &o, &r));
    assert_int_equal(r.expired, 50);
    assert_index_exact(c, 0);
}

/* A row lags at most LMC__ROW_LAG_MAX ms and never runs ahead of its entry:
 * a set that makes the entry go earlier, or much later, moves the row, and
 * leaves none behind. */
static void test_row_lag_bounds(void **state)
{
    tctx *t = *state;
    lmc *c = open_ttl(t, 0);
    char buf[16];
    lmc_sweep_result r;
    ASSERT_OK(put_s(c, "m", "1", 1000));
    fake_clock_advance(65535); /* goes 65,535 ms after its row: the most */
    ASSERT_OK(put_s(c, "m", "2", 1000));
    fake_clock_advance(1); /* one more: the row moves */
    ASSERT_OK(put_s(c, "m", "3", 1000));
    assert_index_exact(c, 1);
    ASSERT_OK(put_s(c, "m", "4", 10)); /* earlier than its row: it moves */
    assert_index_exact(c, 1);
    fake_clock_advance(10);
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_int_equal(r.expired, 1);
    assert_null(get_s(c, "m", buf, sizeof buf));
    ASSERT_OK(put_s(c, "n", "1", 1000));
    fake_clock_advance(100);
    ASSERT_OK(put_s(c, "n", "2", LMC_TTL_NEVER)); /* no TTL: no row */
    assert_index_exact(c, 0);
    fake_clock_advance(5000);
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_int_equal(r.expired, 0);
    assert_string_equal(get_s(c, "n", buf, sizeof buf), "2");
}

/* Filing lagging rows again rewrites their entries' headers, which needs
 * pages: on a map so full that writes evict, a sweep that finds every row
 * lagging must still succeed, keep every live entry and leave the index
 * exact. */
static void test_lagging_rows_filed_again_on_a_full_map(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    lmc *c = t->c = open_cache(t, 2, 0);
    char k[32], v[200], buf[256];
    memset(v, 'v', sizeof v);
    v[sizeof v - 1] = 0;
    enum { N = 2000 };
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "t%05d", i);
        ASSERT_OK(put_s(c, k, v, 10000));
    }
    /* Entries without TTL until the writes have to evict (entries with a
     * TTL first): the map is full. */
    for (int i = 0; stats_of(c).counters.evictions_soonest == 0; i++) {
        assert_true(i < 100000);
        snprintf(k, sizeof k, "n%06d", i);
        ASSERT_OK(put_s(c, k, v, LMC_TTL_NEVER));
    }
    fake_clock_advance(5000);
    bool live[N];
    uint64_t n_live = 0;
    for (int i = 0; i < N; i++) { /* rows stay at +10000, entries go at +15000 */
        snprintf(k, sizeof k, "t%05d", i);
        live[i] = get_s(c, k, buf, sizeof buf) != NULL;
        if (live[i])
            ASSERT_OK(put_s(c, k, v, 10000));
    }
    for (int i = 0; i < N; i++) { /* the rewrites may have evicted some */
        snprintf(k, sizeof k, "t%05d", i);
        live[i] = live[i] && get_s(c, k, buf, sizeof buf) != NULL;
        n_live += live[i];
    }
    assert_true(n_live > N / 2);
    assert_index_exact(c, n_live);
    fake_clock_advance(5001); /* every row is due, no entry has gone */
    lmc_sweep_options so = {.flags = LMC_SWEEP_NOEVICT};
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, &so, &r));
    assert_int_equal(r.expired, 0);
    assert_int_equal(r.rows_refiled, n_live);
    assert_int_equal(r.complete, 1);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "t%05d", i);
        if (live[i])
            assert_string_equal(get_s(c, k, buf, sizeof buf), v);
    }
    assert_index_exact(c, n_live);
    fake_clock_advance(5000);
    ASSERT_OK(lmc_sweep(c, &so, &r));
    assert_int_equal(r.expired, n_live);
    assert_index_exact(c, 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_expiry_is_lazy_and_writes_nothing),
        T(test_default_and_never),
        T(test_keep_ttl_on_replace),
        T(test_overwrite_keeps_index_exact),
        T(test_touch),
        T(test_sweep_removes_exactly_the_expired),
        T(test_sweep_in_small_batches),
        T(test_ttl_bound),
        T(test_sweep_huge_time_budget),
        T(test_writes_over_expired_entries),
        T(test_batch_reads_skip_expired),
        T(test_prefix_and_clear_drop_index_rows),
        T(test_stats_count_rows_past_a_chunk),
        T(test_lagging_rows_are_filed_again),
        T(test_row_lag_bounds),
        T(test_lagging_rows_filed_again_on_a_full_map),
    };
    return cmocka_run_group_tests_name("ttl", tests, NULL, NULL);
}
