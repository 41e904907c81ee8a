/*
 * test_evict.c - a full map never stops writers that can evict, and eviction
 * follows the policy: expired entries first, then entries with a TTL
 * (soonest to expire first), then entries without TTL, coldest first.  The
 * sweeper brings fill under the low watermark without evicting much more
 * than the excess, and keeps recently read or written keys.
 */
#include "util.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static lmc *open_map(tctx *t, unsigned kib)
{
    lmc_options o = {.map_size = (uint64_t)kib << 10};
    lmc *c = NULL;
    ASSERT_OK(lmc_open(&c, t->path, &o));
    t->c = c;
    return c;
}

static void test_full_map_with_ever_increasing_keys(void **state)
{
    tctx *t = *state;
    lmc *c = open_map(t, 4096);
    char k[32], v[100];
    memset(v, 'x', sizeof v);
    /* Far more than fits: 200,000 x ~130 bytes in a 4 MiB map.  Each new
     * key sorts after every other one, so only freed whole pages help. */
    for (int i = 0; i < 200000; i++) {
        snprintf(k, sizeof k, "k/%08d", i);
        int rc = lmc_set(c, k, strlen(k), v, sizeof v, LMC_TTL_NEVER);
        if (rc)
            fail_msg("set %d: %s (%s)", i, lmc_strerror(rc), lmc_errmsg(c));
    }
    char buf[128];
    for (int i = 199900; i < 200000; i++) {
        snprintf(k, sizeof k, "k/%08d", i);
        assert_non_null(get_s(c, k, buf, sizeof buf));
    }
    assert_null(get_s(c, "k/00000000", buf, sizeof buf)); /* the oldest went */
    lmc_stat st = stats_of(c);
    assert_true(st.counters.evictions_lru > 150000);
    assert_int_equal(st.counters.evictions_soonest, 0);
    assert_true(st.entries > 5000); /* eviction freed pages, not the whole map */
    assert_int_equal(st.entries + st.counters.evictions_lru, 200000);
}

/*
 * Random keys and sizes, 1% of them values of 3 to 12 KB that need runs of
 * contiguous pages.  Each seed is a different mix; the ones here failed one
 * run in ten or so when a round of eviction could take only as many entries
 * as the few free pages were sure to hold (the whole run freed too little to
 * find a run of three pages).
 */
static void test_full_map_with_random_keys_and_sizes(void **state)
{
    tctx *t = *state;
    static char v[12000];
    memset(v, 'r', sizeof v);
    for (unsigned s = 10; s < 28; s++) {
        rm_rf(t->path);
        lmc *c = open_map(t, 2048);
        unsigned seed = s;
        for (int i = 0; i < 30000; i++) {
            char k[32];
            snprintf(k, sizeof k, "r/%u", rand_r(&seed) % 50000);
            size_t n = (size_t)(rand_r(&seed) % 100 == 0 ? 3000 + rand_r(&seed) % 9000
                                                          : rand_r(&seed) % 300);
            int64_t ttl = rand_r(&seed) % 2 ? LMC_TTL_NEVER : 60000;
            int rc = lmc_set(c, k, strlen(k), v, n, ttl);
            if (rc)
                fail_msg("seed %u, set %d: %s (%s)", s, i, lmc_strerror(rc), lmc_errmsg(c));
        }
        lmc_stat st = stats_of(c);
        assert_true(st.counters.evictions_lru + st.counters.evictions_soonest > 0);
        assert_true(st.entries > 0);
        lmc_close(c);
        t->c = NULL;
    }
}

static void test_big_values_replace_each_other(void **state)
{
    tctx *t = *state;
    lmc *c = open_map(t, 2048);
    size_t n = 850u << 10; /* two fit in the map, three do not */
    char *v = malloc(n);
    assert_non_null(v);
    const char *keys[] = {"big1", "big2", "big3", "big4", "big5"};
    for (int i = 0; i < 5; i++) {
        memset(v, 'a' + i, n);
        ASSERT_OK(lmc_set(c, keys[i], 4, v, n, 0)); /* evicts older ones */
        void *out;
        size_t len;
        ASSERT_OK(lmc_get_alloc(c, keys[i], 4, &out, &len));
        assert_int_equal(len, n);
        assert_int_equal(((char *)out)[0], 'a' + i);
        assert_int_equal(((char *)out)[n - 1], 'a' + i);
        lmc_free(out);
    }
    lmc_stat st = stats_of(c);
    assert_true(st.entries >= 1 && st.entries <= 2);
    assert_int_equal(st.entries + st.counters.evictions_lru, 5);
    free(v);
}

/* A value that fits an empty cache but can never fit this one is refused at
 * once, before anything is evicted, and one that can fit evicts only what
 * it needs: in a 1 MiB map holding 2,000 small entries, a 943,713-byte set
 * used to evict all of them and then fail. */
static void test_a_value_that_cannot_fit_fails_before_evicting(void **state)
{
    tctx *t = *state;
    lmc *c = open_map(t, 1024);
    char k[32], v[100];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        ASSERT_OK(lmc_set(c, k, strlen(k), v, 20 + (size_t)(i % 80), i % 2 ? 0 : 600000));
    }
    size_t big = 943713;
    char *b = calloc(1, big);
    assert_non_null(b);
    ASSERT_RC(lmc_set(c, "big", 3, b, big, 0), LMC_ETOOBIG);
    assert_non_null(strstr(lmc_errmsg(c), "never fit"));
    lmc_stat st = stats_of(c);
    assert_int_equal(st.entries, 2000);
    assert_int_equal(st.counters.evictions_lru + st.counters.evictions_soonest, 0);
    /* A third of the map does fit: it evicts some entries, not the cache,
     * and the entry it stored is still there (the eviction that follows a
     * write never takes the entry just written). */
    size_t third = 340000;
    memset(b, 'B', third);
    ASSERT_OK(lmc_set(c, "big", 3, b, third, 0));
    void *out;
    size_t len;
    ASSERT_OK(lmc_get_alloc(c, "big", 3, &out, &len));
    assert_int_equal(len, third);
    assert_int_equal(((char *)out)[third - 1], 'B');
    lmc_free(out);
    st = stats_of(c);
    assert_true(st.entries > 1000);
    free(b);
}

/*
 * A store that fails (LMC_ETOOBIG here) leaves no old value to serve: set,
 * replace and set_many remove the value they were to replace, a cas only if
 * the entry still has the version it expected, and an add (which replaces
 * nothing live) removes nothing.
 */
static void test_a_failed_store_leaves_no_stale_value(void **state)
{
    tctx *t = *state;
    lmc *c = open_map(t, 1024);
    size_t huge = 2u << 20;
    char *h = calloc(1, huge), buf[16];
    assert_non_null(h);
    ASSERT_OK(put_s(c, "set", "old", 0));
    ASSERT_RC(lmc_set(c, "set", 3, h, huge, 0), LMC_ETOOBIG);
    assert_non_null(strstr(lmc_errmsg(c), "was removed"));
    /* The store's own message, under its code's name once. */
    assert_true(strncmp(lmc_errmsg(c), "LMC_ETOOBIG: an entry of ", 25) == 0);
    assert_null(get_s(c, "set", buf, sizeof buf));

    ASSERT_OK(put_s(c, "rep", "old", 0));
    ASSERT_RC(lmc_replace(c, "rep", 3, h, huge, 0), LMC_ETOOBIG);
    assert_null(get_s(c, "rep", buf, sizeof buf));

    ASSERT_OK(put_s(c, "add", "old", 0));
    ASSERT_RC(lmc_add(c, "add", 3, h, huge, 0), LMC_ETOOBIG);
    assert_string_equal(get_s(c, "add", buf, sizeof buf), "old");

    uint64_t ver;
    size_t n;
    ASSERT_OK(put_s(c, "cas", "old", 0));
    ASSERT_OK(lmc_get_cas(c, "cas", 3, buf, sizeof buf, &n, &ver));
    ASSERT_RC(lmc_cas(c, "cas", 3, h, huge, 0, ver + 1), LMC_ETOOBIG);
    assert_string_equal(get_s(c, "cas", buf, sizeof buf), "old"); /* another version */
    ASSERT_RC(lmc_cas(c, "cas", 3, h, huge, 0, ver), LMC_ETOOBIG);
    assert_null(get_s(c, "cas", buf, sizeof buf));

    ASSERT_OK(put_s(c, "m1", "old", 0));
    ASSERT_OK(put_s(c, "m2", "old", 0));
    lmc_item items[] = {{"m1", 2, "new", 3, 0}, {"m2", 2, h, huge, 0}};
    ASSERT_RC(lmc_set_many(c, items, 2), LMC_ETOOBIG);
    assert_null(get_s(c, "m1", buf, sizeof buf));
    assert_null(get_s(c, "m2", buf, sizeof buf));

    lmc_stat st = stats_of(c);
    assert_int_equal(st.counters.deletes, 0); /* these removals are not deletes */
    free(h);
}

static void test_concurrent_writers_on_a_tiny_map(void **state)
{
    tctx *t = *state;
    enum { NPROC = 4, SETS = 5000 };
    lmc *c = open_map(t, 1024);
    lmc_close(c);
    t->c = NULL;
    pid_t pids[NPROC];
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            unsigned seed = (unsigned)p;
            char k[32], v[400], b[400];
            memset(v, 'w', sizeof v);
            for (int i = 0; i < SETS; i++) {
                snprintf(k, sizeof k, "w%d/%d", p, rand_r(&seed) % 3000);
                CHILD_OK(lmc_set(h, k, strlen(k), v, (size_t)(rand_r(&seed) % 400),
                                 i % 3 ? LMC_TTL_NEVER : 30000));
                size_t n;
                int rc = lmc_get(h, k, strlen(k), b, sizeof b, &n);
                CHILD_CHECK(rc == LMC_OK || rc == LMC_NOTFOUND);
            }
            lmc_close(h);
            _exit(0);
        }
    }
    for (int p = 0; p < NPROC; p++)
        wait_ok(pids[p]);
    t->c = open_map(t, 1024);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.sets, NPROC * SETS);
    assert_true(st.counters.evictions_lru + st.counters.evictions_soonest > 0);
}

static void test_expired_entries_go_first(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    lmc *c = open_map(t, 4096);
    char k[32], v[100];
    memset(v, 'e', sizeof v);
    int i = 0;
    /* Fill most of the map with entries that will have expired. */
    for (;; i++) {
        snprintf(k, sizeof k, "a/%06d", i);
        ASSERT_OK(lmc_set(c, k, strlen(k), v, sizeof v, 1000));
        if (i % 500 == 0 && stats_of(c).fill > 0.7)
            break;
    }
    int written = i + 1;
    fake_clock_advance(1000);
    /* Live entries, without TTL, as many again: the expired ones make room. */
    for (int j = 0; j < written; j++) {
        snprintf(k, sizeof k, "b/%06d", j);
        ASSERT_OK(lmc_set(c, k, strlen(k), v, sizeof v, LMC_TTL_NEVER));
    }
    lmc_stat st = stats_of(c);
    assert_true(st.counters.evictions_expired > 0);
    assert_int_equal(st.counters.evictions_soonest, 0);
    assert_int_equal(st.counters.evictions_lru, 0);
    char buf[128];
    for (int j = 0; j < written; j++) {
        snprintf(k, sizeof k, "b/%06d", j);
        assert_non_null(get_s(c, k, buf, sizeof buf));
    }
}

static void test_entries_with_ttl_go_before_entries_without(void **state)
{
    tctx *t = *state;
    lmc *c = open_map(t, 4096);
    char k[32], v[100], buf[128];
    memset(v, 't', sizeof v);
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof k, "keep/%05d", i);
        ASSERT_OK(lmc_set(c, k, strlen(k), v, sizeof v, LMC_TTL_NEVER));
    }
    /* Far more TTL entries than fit next to them. */
    for (int i = 0; i < 60000; i++) {
        snprintf(k, sizeof k, "ttl/%06d", i);
        ASSERT_OK(lmc_set(c, k, strlen(k), v, sizeof v, 3600000));
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof k, "keep/%05d", i);
        if (!get_s(c, k, buf, sizeof buf))
            fail_msg("%s was evicted while entries with a TTL remained", k);
    }
    lmc_stat st = stats_of(c);
    assert_true(st.counters.evictions_soonest > 0);
    assert_int_equal(st.counters.evictions_lru, 0);
}

/* Fill until the map is above `fill`, with keys prefix/NNNNNN. */
static int fill_to(lmc *c, const char *prefix, double fill, int64_t ttl)
{
    char k[48], v[100];
    memset(v, 'f', sizeof v);
    int i = 0;
    for (;; i++) {
        snprintf(k, sizeof k, "%s/%06d", prefix, i);
        ASSERT_OK(lmc_set(c, k, strlen(k), v, sizeof v, ttl));
        if (i % 200 == 0 && stats_of(c).fill > fill)
            return i + 1;
    }
}

/* The hot keys of the two tests below: spread through the key space (40
 * prefixes), so that they sit among the cold ones in every run of entries. */
#define HOT_KEYS 400

static const char *hot_key(char *k, size_t cap, int i)
{
    snprintf(k, cap, "hot%02d/%04d", i % 40, i);
    return k;
}

static void test_sweeper_keeps_hot_keys_and_does_not_overshoot(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    lmc *c = open_map(t, 8192);
    char k[48], buf[128];
    /* Hot keys spread through the key space, then cold ones; time passes;
     * then only the hot keys are read. */
    for (int i = 0; i < HOT_KEYS; i++)
        ASSERT_OK(put_s(c, hot_key(k, sizeof k, i), "hot", LMC_TTL_NEVER));
    fake_clock_advance(5000);
    int n = fill_to(c, "cold", 0.88, LMC_TTL_NEVER);
    fake_clock_advance(5000);
    for (int i = 0; i < HOT_KEYS; i++)
        assert_non_null(get_s(c, hot_key(k, sizeof k, i), buf, sizeof buf));
    lmc_stat before = stats_of(c);
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_true(r.fill_before > 0.80);
    assert_true(r.fill_after <= 0.70);
    assert_int_equal(r.complete, 1);
    lmc_stat after = stats_of(c);
    assert_true(after.fill <= 0.70);
    for (int i = 0; i < HOT_KEYS; i++)
        if (!get_s(c, hot_key(k, sizeof k, i), buf, sizeof buf))
            fail_msg("hot key %s was evicted", k);
    /* About (0.88 - 0.70) / 0.88 = 20% of the entries are excess; allow for
     * the granularity of runs, but not for a massacre. */
    double evicted = (double)r.evicted_lru / (double)before.entries;
    if (evicted > 0.40)
        fail_msg("evicted %.0f%% of %d entries to go from %.2f to %.2f", evicted * 100, n,
                 r.fill_before, r.fill_after);
    assert_true(r.evicted_lru > 0);
    assert_int_equal(r.evicted_lru, after.counters.evictions_lru);
}

/* Rewrites the hot keys of the test below from a thread of its own, which
 * has no read transaction (and so no queue of recency stamps): each write
 * records its time in the entry.  Every other one with LMC_TTL_KEEP, which over an entry without TTL stores
 * one without TTL too, though the call did not say so. */
static void *rewrite_hot_keys(void *p)
{
    lmc *c = p;
    char k[48];
    for (int i = 0; i < HOT_KEYS; i++) {
        hot_key(k, sizeof k, i);
        if (lmc_set(c, k, strlen(k), "hot", 3, i % 2 ? LMC_TTL_KEEP : LMC_TTL_NEVER) != LMC_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_sweeper_keeps_rewritten_keys(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    lmc *c = open_map(t, 8192);
    char k[48], buf[128];
    for (int i = 0; i < HOT_KEYS; i++)
        ASSERT_OK(put_s(c, hot_key(k, sizeof k, i), "old", LMC_TTL_NEVER));
    fake_clock_advance(5000);
    fill_to(c, "cold", 0.88, LMC_TTL_NEVER);
    fake_clock_advance(5000);
    /* A write is an access: the hot keys are only written again. */
    pthread_t th;
    void *ret;
    assert_int_equal(pthread_create(&th, NULL, rewrite_hot_keys, c), 0);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_true(r.evicted_lru > 0);
    for (int i = 0; i < HOT_KEYS; i++) {
        const char *v = get_s(c, hot_key(k, sizeof k, i), buf, sizeof buf);
        if (!v || strcmp(v, "hot") != 0)
            fail_msg("rewritten key %s was evicted", k);
    }
}

/* Zero the recency array of the cache at t->path, as if other keys had
 * taken the cells of every key: what a sweeper then knows of recency is only
 * what the entries themselves carry. */
static void forget_recency_cells(tctx *t)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/recency", t->path);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_size > 0);
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    memset(m, 0, (size_t)st.st_size);
    munmap(m, (size_t)st.st_size);
    close(fd);
}

/* A write is an access even when the recency array has lost it: the time of
 * the last write of an entry without TTL is kept in the entry, so keys
 * written after the cold ones survive a sweep whose cells tell nothing.
 * They sort before the cold keys, where runs that look equally cold would
 * be evicted first. */
static void test_sweeper_keeps_written_keys_without_their_cells(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    lmc *c = open_map(t, 8192);
    char k[48], buf[128];
    for (int i = 0; i < HOT_KEYS; i++) {
        snprintf(k, sizeof k, "a-hot%02d/%04d", i % 40, i);
        ASSERT_OK(put_s(c, k, "old", LMC_TTL_NEVER));
    }
    fake_clock_advance(5000);
    fill_to(c, "cold", 0.88, LMC_TTL_NEVER);
    fake_clock_advance(5000);
    for (int i = 0; i < HOT_KEYS; i++) {
        snprintf(k, sizeof k, "a-hot%02d/%04d", i % 40, i);
        ASSERT_OK(put_s(c, k, "hot", i % 2 ? LMC_TTL_KEEP : LMC_TTL_NEVER));
    }
    forget_recency_cells(t);
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_true(r.evicted_lru > 0);
    assert_true(r.fill_after <= 0.70);
    for (int i = 0; i < HOT_KEYS; i++) {
        snprintf(k, sizeof k, "a-hot%02d/%04d", i % 40, i);
        const char *v = get_s(c, k, buf, sizeof buf);
        if (!v || strcmp(v, "hot") != 0)
            fail_msg("key %s, written after every cold key, was evicted", k);
    }
}

static void test_sweeper_evicts_soonest_to_expire_first(void **state)
{
    tctx *t = *state;
    lmc *c = open_map(t, 8192);
    fill_to(c, "late", 0.45, 3600000); /* expires in an hour */
    fill_to(c, "soon", 0.88, 600000);  /* expires in ten minutes */
    for (int i = 0; i < 300; i++) {
        char k[32];
        snprintf(k, sizeof k, "none/%04d", i);
        ASSERT_OK(put_s(c, k, "no ttl", LMC_TTL_NEVER));
    }
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, NULL, &r));
    assert_true(r.fill_after <= 0.70);
    assert_true(r.evicted_soonest > 0);
    assert_int_equal(r.evicted_lru, 0); /* entries without TTL are untouched */
    char buf[128];
    assert_non_null(get_s(c, "late/000000", buf, sizeof buf));
    assert_non_null(get_s(c, "none/0000", buf, sizeof buf));
    /* The soon-expiring group lost entries, the late one none. */
    int soon_left = 0, late_left = 0;
    for (int i = 0; i < 2000; i++) {
        char k[32];
        snprintf(k, sizeof k, "soon/%06d", i);
        soon_left += get_s(c, k, buf, sizeof buf) != NULL;
        snprintf(k, sizeof k, "late/%06d", i);
        late_left += get_s(c, k, buf, sizeof buf) != NULL;
    }
    assert_true(soon_left < 2000);
    assert_int_equal(late_left, 2000);
}

static void test_sweep_without_eviction_leaves_live_entries(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    lmc *c = open_map(t, 4096);
    fill_to(c, "x", 0.5, 100);
    fill_to(c, "y", 0.9, LMC_TTL_NEVER);
    fake_clock_advance(100);
    lmc_stat before = stats_of(c);
    lmc_sweep_options o = {.flags = LMC_SWEEP_NOEVICT, .batch = 50};
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(c, &o, &r));
    lmc_stat after = stats_of(c);
    assert_true(r.expired > 0);
    assert_int_equal(r.evicted_lru + r.evicted_soonest, 0);
    assert_int_equal(after.counters.evictions_lru, before.counters.evictions_lru);
    assert_int_equal(after.counters.evictions_expired - before.counters.evictions_expired, r.expired);
    assert_int_equal(after.entries_with_ttl, 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_full_map_with_ever_increasing_keys),
        T(test_full_map_with_random_keys_and_sizes),
        T(test_big_values_replace_each_other),
        T(test_a_value_that_cannot_fit_fails_before_evicting),
        T(test_a_failed_store_leaves_no_stale_value),
        T(test_concurrent_writers_on_a_tiny_map),
        T(test_expired_entries_go_first),
        T(test_entries_with_ttl_go_before_entries_without),
        T(test_sweeper_keeps_hot_keys_and_does_not_overshoot),
        T(test_sweeper_keeps_rewritten_keys),
        T(test_sweeper_keeps_written_keys_without_their_cells),
        T(test_sweeper_evicts_soonest_to_expire_first),
        T(test_sweep_without_eviction_leaves_live_entries),
    };
    return cmocka_run_group_tests_name("evict", tests, NULL, NULL);
}
