/*
 * test_capacity.c - a cache lives full: writers, readers and a sweeper in
 * real forked processes on small maps under constant eviction.
 *
 * A write that can evict must succeed, a delete must always succeed, and the
 * sweeper must never give up, whatever the readers do: a reader preempted
 * inside a get pins every page freed after its snapshot, and the writers
 * must wait for it (briefly) or evict, never fail.  The matrix below covers
 * 1-3 writers, 0-3 readers, maps of 4 to 32 MiB, values up to 8 KB, with
 * and without TTLs and with and without a sweeper, and requires at most one
 * failed write in 1,000 and no failed delete or sweep.
 *
 * With LMC_CAPACITY_SECONDS set, every configuration runs that long and a
 * Markdown table of the figures is printed (make bench-capacity records it
 * in bench/RESULTS.md); by default each runs for a second.
 */
#include "util.h"

#include <sched.h>

#define NKEYS 8000u

typedef struct cap_cfg {
    const char *name;
    unsigned map_mib;
    unsigned writers, readers;
    unsigned vmax;     /* values are 8 .. vmax bytes */
    bool ttl;          /* 70% of the sets have a TTL */
    bool sweeper;
} cap_cfg;

typedef struct cap_shared {
    _Atomic int go, stop;
    _Atomic uint64_t sets, set_fail, set_enospc, deletes, delete_fail;
    _Atomic uint64_t reads, hits, bad_reads, read_fail;
    _Atomic uint64_t sweeps, sweep_fail;
    char last_error[256];
} cap_shared;

/* Fill a value so that a reader can check that it is whole: every byte is
 * derived from the key index and the length. */
static void value_fill(unsigned char *v, size_t n, unsigned key)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (unsigned char)(key * 31u + n + i);
}

static bool value_ok(const unsigned char *v, size_t n, unsigned key)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != (unsigned char)(key * 31u + n + i))
            return false;
    return true;
}

static void note_error(cap_shared *s, const char *who, lmc *h, int rc)
{
    snprintf(s->last_error, sizeof s->last_error, "%s: %s (%s)", who, lmc_errname(rc),
             lmc_errmsg(h));
}

static void wait_go(cap_shared *s)
{
    while (!atomic_load(&s->go))
        sched_yield();
}

static void writer(const char *path, const cap_cfg *cfg, cap_shared *s, unsigned seed)
{
    lmc *h = NULL;
    CHILD_OK(lmc_open(&h, path, NULL));
    unsigned char *v = malloc(cfg->vmax);
    CHILD_CHECK(v != NULL);
    wait_go(s);
    while (!atomic_load(&s->stop)) {
        unsigned key = (unsigned)rand_r(&seed) % NKEYS;
        char k[16];
        int kl = snprintf(k, sizeof k, "k%05u", key);
        if (rand_r(&seed) % 100 < 2) {
            int rc = lmc_delete(h, k, (size_t)kl);
            atomic_fetch_add(&s->deletes, 1);
            if (rc != LMC_OK && rc != LMC_NOTFOUND) {
                atomic_fetch_add(&s->delete_fail, 1);
                note_error(s, "delete", h, rc);
            }
            continue;
        }
        size_t n = 8 + (size_t)rand_r(&seed) % (cfg->vmax - 7);
        value_fill(v, n, key);
        int64_t ttl = cfg->ttl && rand_r(&seed) % 10 < 7 ? 200 + rand_r(&seed) % 5000
                                                         : LMC_TTL_NEVER;
        int rc = lmc_set(h, k, (size_t)kl, v, n, ttl);
        atomic_fetch_add(&s->sets, 1);
        if (rc) {
            atomic_fetch_add(&s->set_fail, 1);
            if (rc == LMC_ENOSPC)
                atomic_fetch_add(&s->set_enospc, 1);
            note_error(s, "set", h, rc);
        }
    }
    free(v);
    lmc_close(h);
    _exit(0);
}

static void reader(const char *path, cap_shared *s, unsigned seed)
{
    lmc *h = NULL;
    CHILD_OK(lmc_open(&h, path, NULL));
    static unsigned char buf[16384];
    wait_go(s);
    while (!atomic_load(&s->stop)) {
        unsigned key = (unsigned)rand_r(&seed) % NKEYS;
        char k[16];
        int kl = snprintf(k, sizeof k, "k%05u", key);
        size_t n = 0;
        int rc = lmc_get(h, k, (size_t)kl, buf, sizeof buf, &n);
        atomic_fetch_add(&s->reads, 1);
        if (rc == LMC_OK) {
            atomic_fetch_add(&s->hits, 1);
            if (!value_ok(buf, n, key))
                atomic_fetch_add(&s->bad_reads, 1);
        } else if (rc != LMC_NOTFOUND) {
            atomic_fetch_add(&s->read_fail, 1);
            note_error(s, "get", h, rc);
        }
    }
    lmc_close(h);
    _exit(0);
}

static void sweeper(const char *path, cap_shared *s)
{
    lmc *h = NULL;
    CHILD_OK(lmc_open(&h, path, NULL));
    wait_go(s);
    while (!atomic_load(&s->stop)) {
        int rc = lmc_sweep(h, NULL, NULL);
        atomic_fetch_add(&s->sweeps, 1);
        if (rc) {
            atomic_fetch_add(&s->sweep_fail, 1);
            note_error(s, "sweep", h, rc);
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    lmc_close(h);
    _exit(0);
}

static double run_seconds(void)
{
    const char *e = getenv("LMC_CAPACITY_SECONDS");
    double d = e ? atof(e) : 0;
    return d > 0 ? d : 1.0;
}

/* Run one configuration and return what the processes counted. */
static void run_config(tctx *t, const cap_cfg *cfg, cap_shared *s, lmc_stat *st)
{
    memset(s, 0, sizeof *s);
    rm_rf(t->path);
    lmc_options o = {.map_size = (uint64_t)cfg->map_mib << 20};
    lmc *c = NULL;
    ASSERT_OK(lmc_open(&c, t->path, &o));
    lmc_close(c);
    pid_t pids[8];
    unsigned np = 0;
    pid_t parent = getpid();
    for (unsigned i = 0; i < cfg->writers; i++) {
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
            child_dies_with_parent(parent);
            writer(t->path, cfg, s, 1000u + i);
        }
        pids[np++] = p;
    }
    for (unsigned i = 0; i < cfg->readers; i++) {
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
            child_dies_with_parent(parent);
            reader(t->path, s, 2000u + i);
        }
        pids[np++] = p;
    }
    if (cfg->sweeper) {
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
            child_dies_with_parent(parent);
            sweeper(t->path, s);
        }
        pids[np++] = p;
    }
    atomic_store(&s->go, 1);
    double secs = run_seconds();
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&s->stop, 1);
    for (unsigned i = 0; i < np; i++)
        wait_ok(pids[i]);
    ASSERT_OK(lmc_open(&c, t->path, &o));
    *st = stats_of(c);
    lmc_close(c);
}

static const cap_cfg configs[] = {
    {"16 MiB, 1 writer, no readers", 16, 1, 0, 2000, true, false},
    {"16 MiB, 1 writer, 2 readers", 16, 1, 2, 2000, true, false},
    {"8 MiB, 1 writer, 2 readers", 8, 1, 2, 2000, true, false},
    {"32 MiB, values to 8 KB, 2 readers", 32, 1, 2, 8192, true, false},
    {"16 MiB, no TTLs, 2 readers", 16, 1, 2, 2000, false, false},
    {"4 MiB, 3 writers, 3 readers, sweeper", 4, 3, 3, 2000, true, true},
    {"4 MiB, values to 8 KB, 2 writers, 3 readers", 4, 2, 3, 8192, true, false},
    {"4 MiB, no TTLs, 1 writer, 3 readers, sweeper", 4, 1, 3, 2000, false, true},
    {"32 MiB, 3 writers, 1 reader, values to 8 KB, sweeper", 32, 3, 1, 8192, true, true},
    {"8 MiB, 2 writers, no readers, sweeper", 8, 2, 0, 8192, false, true},
};

static void test_capacity_matrix(void **state)
{
    tctx *t = *state;
    cap_shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
    assert_true(s != MAP_FAILED);
    bool table = getenv("LMC_CAPACITY_SECONDS") != NULL;
    if (table) {
        printf("| configuration | sets | failed sets | deletes | failed deletes | sweeps | "
               "failed sweeps | gets | hit ratio | map full | waits for readers | time waited |\n");
        printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    int bad = 0;
    /* LMC_CAPACITY_ONLY=N runs configuration N alone (from 0), to study it. */
    const char *only = getenv("LMC_CAPACITY_ONLY");
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        const cap_cfg *cfg = &configs[i];
        if (only && *only && (size_t)atoi(only) != i)
            continue;
        lmc_stat st;
        run_config(t, cfg, s, &st);
        uint64_t sets = s->sets, sf = s->set_fail;
        if (table)
            printf("| %s | %llu | %llu (%.3f%%) | %llu | %llu | %llu | %llu | %llu | %.2f | %llu | "
                   "%llu | %.1f ms |\n",
                   cfg->name, (unsigned long long)sets, (unsigned long long)sf,
                   sets ? 100.0 * (double)sf / (double)sets : 0.0,
                   (unsigned long long)s->deletes, (unsigned long long)s->delete_fail,
                   (unsigned long long)s->sweeps, (unsigned long long)s->sweep_fail,
                   (unsigned long long)s->reads,
                   s->reads ? (double)s->hits / (double)s->reads : 0.0,
                   (unsigned long long)st.counters.map_full, (unsigned long long)st.counters.pin_waits,
                   (double)st.counters.pin_wait_us / 1000.0);
        else
            print_message("%s: %llu sets, %llu failed; %llu deletes, %llu failed; %llu sweeps, "
                          "%llu failed; %llu gets\n", cfg->name, (unsigned long long)sets,
                          (unsigned long long)sf, (unsigned long long)s->deletes,
                          (unsigned long long)s->delete_fail, (unsigned long long)s->sweeps,
                          (unsigned long long)s->sweep_fail, (unsigned long long)s->reads);
        fflush(stdout);
        bool ok = sets > 0 && sf * 1000 <= sets && s->delete_fail == 0 && s->sweep_fail == 0 &&
                  s->bad_reads == 0 && s->read_fail == 0 && (!cfg->sweeper || s->sweeps > 0);
        if (!ok) {
            print_error("%s: FAILED; last error: %s\n", cfg->name, s->last_error);
            bad++;
        }
    }
    munmap(s, sizeof *s);
    if (bad)
        fail_msg("%d of %zu configurations broke a capacity promise", bad,
                 sizeof configs / sizeof configs[0]);
}

/* ------------------------------------------------------------------------ */
/* A reader that holds its snapshot                                         */
/* ------------------------------------------------------------------------ */

/* Callback that keeps the read transaction open until a byte arrives on the
 * pipe, like a reader preempted (or stopped) in the middle of a get. */
static int hold_view(void *arg, const lmc_value *v)
{
    (void)v;
    int *fds = arg;
    char b;
    CHILD_CHECK(write(fds[2], "h", 1) == 1); /* holding now */
    CHILD_CHECK(read(fds[0], &b, 1) == 1);
    return 0;
}

/* Fork a process that opens the cache and holds a snapshot until released
 * through *release_fd; returns once it holds it. */
static pid_t start_holder(const char *path, int *release_fd)
{
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        lmc *h = NULL;
        CHILD_OK(lmc_open(&h, path, NULL));
        int fds[3] = {in[0], in[1], out[1]};
        CHILD_OK(lmc_get_view(h, "held", 4, hold_view, fds));
        lmc_close(h);
        _exit(0);
    }
    char b;
    assert_int_equal(read(out[0], &b, 1), 1);
    close(in[0]);
    close(out[0]);
    close(out[1]);
    *release_fd = in[1];
    return p;
}

static void fill_value(unsigned char *v, size_t n, unsigned i)
{
    value_fill(v, n, i);
}

/* A reader preempted inside a get pins every page freed after its snapshot:
 * the writer waits for it (and is counted doing so) instead of failing, and
 * goes on as soon as the reader lets go. */
static void test_writers_wait_for_a_reader_that_holds_a_snapshot(void **state)
{
    tctx *t = *state;
    lmc_options o = {.map_size = 4u << 20};
    ASSERT_OK(lmc_open(&t->c, t->path, &o));
    ASSERT_OK(put_s(t->c, "held", "x", 0));
    int release;
    pid_t holder = start_holder(t->path, &release);
    /* A second process lets the holder go once the writer is waiting. */
    pid_t watcher = fork();
    assert_true(watcher >= 0);
    if (watcher == 0) {
        lmc *h = NULL;
        CHILD_OK(lmc_open(&h, t->path, NULL));
        int64_t deadline = mono_ms() + (int64_t)timeout_s(30) * 1000;
        lmc_stat st;
        do {
            CHILD_CHECK(mono_ms() < deadline);
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            CHILD_OK(lmc_stats(h, &st));
        } while (st.counters.pin_waits == 0);
        CHILD_CHECK(write(release, "r", 1) == 1);
        lmc_close(h);
        _exit(0);
    }
    static unsigned char v[1500];
    for (unsigned i = 0; i < 20000; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%05u", i % 6000);
        size_t n = 100 + i % 1400;
        fill_value(v, n, i);
        ASSERT_OK(lmc_set(t->c, k, strlen(k), v, n, i % 3 ? 60000 : 0));
    }
    wait_ok(watcher);
    wait_ok(holder);
    close(release);
    lmc_stat st = stats_of(t->c);
    assert_true(st.counters.pin_waits >= 1);
    assert_true(st.counters.pin_wait_us > 0);
    assert_true(st.counters.evictions_lru + st.counters.evictions_soonest > 0);
}

/* A reader stuck inside a transaction for good pins the free pages for
 * good: writes fail with a clear LMC_ENOSPC after a bounded wait instead of
 * hanging, and everything works again once the reader lets go. */
static void test_a_stuck_reader_fails_writes_after_a_bounded_wait(void **state)
{
    tctx *t = *state;
    lmc_options o = {.map_size = 2u << 20};
    ASSERT_OK(lmc_open(&t->c, t->path, &o));
    ASSERT_OK(put_s(t->c, "held", "x", 0));
    int release;
    pid_t holder = start_holder(t->path, &release);
    static unsigned char v[1000];
    int rc = LMC_OK;
    unsigned i;
    int64_t t0 = mono_ms(), failed_at = 0;
    for (i = 0; i < 100000 && rc == LMC_OK; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%05u", i % 3000);
        fill_value(v, sizeof v, i);
        int64_t before = mono_ms();
        rc = lmc_set(t->c, k, strlen(k), v, sizeof v, 0);
        failed_at = mono_ms() - before;
    }
    assert_int_equal(rc, LMC_ENOSPC);
    assert_non_null(strstr(lmc_errmsg(t->c), "stuck"));
    /* The failing set waited for the reader, but a bounded time. */
    assert_true(failed_at >= 200);
    assert_true(mono_ms() - t0 < (int64_t)timeout_s(20) * 1000);
    assert_int_equal(write(release, "r", 1), 1);
    wait_ok(holder);
    close(release);
    for (unsigned j = 0; j < 2000; j++) {
        char k[16];
        snprintf(k, sizeof k, "k%05u", (i + j) % 3000);
        ASSERT_OK(lmc_set(t->c, k, strlen(k), v, sizeof v, 0));
    }
    ASSERT_OK(put_s(t->c, "last", "x", 0));
    ASSERT_OK(lmc_delete(t->c, "last", 4));
}

int main(void)
{
    const struct CMUnitTest capacity[] = {
        cmocka_unit_test_setup_teardown(test_writers_wait_for_a_reader_that_holds_a_snapshot,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_a_stuck_reader_fails_writes_after_a_bounded_wait,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_capacity_matrix, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests_name("capacity", capacity, NULL, NULL);
}
