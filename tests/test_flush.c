/*
 * test_flush.c - lmc_flush_prefix: entries under a prefix invisible at once
 * to every read and write of every process, entries written after it seen,
 * the fallbacks that delete at once (table full, long prefix), the
 * sweeper's reclaim that retires the markers, readers that hold a snapshot
 * across a flush and its reclaim, and flushers killed in the middle.
 */
#include "util.h"

#include <poll.h>

#define N_APP 300 /* more than one scan batch */

static void fill_app(lmc *c, int n)
{
    char k[32], v[32];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "app/%04d", i);
        snprintf(v, sizeof v, "v%d", i);
        ASSERT_OK(put_s(c, k, v, 0));
    }
}

static int count_scan(void *arg, const lmc_value *v)
{
    (void)v;
    ++*(int *)arg;
    return 0;
}

static int scan_n(lmc *c, const char *prefix)
{
    int n = 0;
    int rc = lmc_scan(c, prefix, strlen(prefix), count_scan, &n);
    return rc ? -1 : n;
}

static int view_seen(void *arg, const lmc_value *v)
{
    (void)v;
    *(int *)arg = 1;
    return 0;
}

static int many_hits(void *arg, size_t i, const lmc_value *v)
{
    (void)i;
    if (v)
        ++*(int *)arg;
    return 0;
}

/* Every read and write call of c treats app/0000 .. app/0009 as absent and
 * other/x as present; returns 0, or the line of the first check that
 * failed (for children, which cannot use cmocka). */
static int flushed_everywhere(lmc *c)
{
    char buf[64];
    size_t n;
    for (int i = 0; i < 10; i++) {
        char k[32];
        snprintf(k, sizeof k, "app/%04d", i);
        size_t kl = strlen(k);
        if (lmc_get(c, k, kl, buf, sizeof buf, &n) != LMC_NOTFOUND)
            return __LINE__;
        if (lmc_exists(c, k, kl) != LMC_NOTFOUND)
            return __LINE__;
        int seen = 0;
        if (lmc_get_view(c, k, kl, view_seen, &seen) != LMC_NOTFOUND || seen)
            return __LINE__;
        void *p = NULL;
        if (lmc_get_alloc(c, k, kl, &p, &n) != LMC_NOTFOUND || p)
            return __LINE__;
    }
    lmc_key keys[3] = {{"app/0000", 8}, {"app/0001", 8}, {"other/x", 7}};
    int hits = 0;
    if (lmc_get_many(c, keys, 3, many_hits, &hits) || hits != 1)
        return __LINE__;
    if (scan_n(c, "app/") != 0 || scan_n(c, "") != 1)
        return __LINE__;
    if (lmc_get(c, "other/x", 7, buf, sizeof buf, &n) != LMC_OK)
        return __LINE__;
    /* Writes: the flushed entries are absent for them too. */
    if (lmc_replace(c, "app/0000", 8, "r", 1, 0) != LMC_NOTFOUND)
        return __LINE__;
    if (lmc_touch(c, "app/0001", 8, 1000) != LMC_NOTFOUND)
        return __LINE__;
    if (lmc_cas(c, "app/0002", 8, "c", 1, 0, 1) != LMC_NOTFOUND)
        return __LINE__;
    if (lmc_add(c, "app/0003", 8, "added", 5, 0) != LMC_OK)
        return __LINE__;
    int64_t r = -1;
    if (lmc_set(c, "app/0004", 8, "41", 2, 0) != LMC_OK) /* a new one: seen */
        return __LINE__;
    if (lmc_incr(c, "app/0004", 8, 1, &r, 0) != LMC_OK || r != 42)
        return __LINE__;
    if (lmc_incr(c, "app/0005", 8, 1, &r, 0) != LMC_OK || r != 1)
        return __LINE__;
    if (lmc_delete(c, "app/0006", 8) != LMC_NOTFOUND)
        return __LINE__;
    void *p = NULL;
    size_t vl = 0;
    lmc_lease l;
    int outcome = -1;
    if (lmc_get_lease(c, "app/0007", 8, &p, &vl, NULL, &l, &outcome) || outcome != LMC_LEASE_FILL ||
        p)
        return __LINE__;
    if (lmc_lease_fill(c, &l, "app/0007", 8, "filled", 6, 0, 0))
        return __LINE__;
    int seen = 0;
    if (lmc_get_lease_view(c, "app/0008", 8, NULL, view_seen, &seen, &l, &outcome) ||
        outcome != LMC_LEASE_FILL || seen)
        return __LINE__;
    if (lmc_lease_abandon(c, &l, "app/0008", 8))
        return __LINE__;
    /* What was written after the flush is there. */
    if (lmc_get(c, "app/0003", 8, buf, sizeof buf, &n) || n != 5 || memcmp(buf, "added", 5))
        return __LINE__;
    if (lmc_get(c, "app/0007", 8, buf, sizeof buf, &n) || n != 6)
        return __LINE__;
    if (scan_n(c, "app/") != 4) /* 0003, 0004, 0005, 0007 */
        return __LINE__;
    return 0;
}

/* A flush in one process: every read and write of another misses the
 * entries at once, sees the ones written after; the sweep reclaims them. */
static void test_flush_other_process(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    fill_app(t->c, N_APP);
    ASSERT_OK(put_s(t->c, "other/x", "x", 0));
    /* A fill lease granted before the flush cannot be filled after it. */
    void *p = NULL;
    size_t vl;
    lmc_lease l;
    int outcome;
    ASSERT_OK(lmc_get_lease(t->c, "app/lease", 9, &p, &vl, NULL, &l, &outcome));
    assert_int_equal(outcome, LMC_LEASE_FILL);
    uint64_t g;
    ASSERT_OK(lmc_gen_read(t->c, "app/gen", 7, &g));

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        CHILD_OK(lmc_flush_prefix(t->c, "app/", 4));
        _exit(0);
    }
    wait_ok(pid);
    ASSERT_RC(lmc_lease_fill(t->c, &l, "app/lease", 9, "stale", 5, 0, 0), LMC_ECHANGED);
    ASSERT_RC(lmc_set_if_gen(t->c, "app/gen", 7, "stale", 5, 0, g), LMC_ECHANGED);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.flush_markers, 1);
    assert_int_equal(st.counters.prefix_flushes, 1);
    assert_int_equal(st.entries, N_APP + 1); /* not swept yet */

    /* The reads and writes of yet another process. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int line = flushed_everywhere(t->c);
        if (line)
            fprintf(stderr, "child: check at line %d failed\n", line);
        _exit(line ? 1 : 0);
    }
    wait_ok(pid);

    /* The sweep deletes the flushed entries, keeps the new ones and
     * retires the marker. */
    lmc_sweep_result res;
    ASSERT_OK(lmc_sweep(t->c, NULL, &res));
    /* 0003..0005 and 0007 were written again, 0006 deleted. */
    assert_int_equal(res.flushed, N_APP - 5);
    assert_int_equal(res.complete, 1);
    st = stats_of(t->c);
    assert_int_equal(st.flush_markers, 0);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.counters.flushed_keys, N_APP - 5);
    assert_int_equal(scan_n(t->c, ""), 5);
    char buf[16];
    assert_string_equal(get_s(t->c, "app/0003", buf, sizeof buf), "added");
    assert_string_equal(get_s(t->c, "other/x", buf, sizeof buf), "x");
    /* Once the marker is gone, writes under the prefix work as ever. */
    ASSERT_OK(put_s(t->c, "app/0000", "back", 0));
    assert_string_equal(get_s(t->c, "app/0000", buf, sizeof buf), "back");
}

/* The arguments, the read-only handle, the empty prefix. */
static void test_flush_arguments(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    ASSERT_RC(lmc_flush_prefix(NULL, "a", 1), LMC_EINVAL);
    ASSERT_RC(lmc_flush_prefix(t->c, NULL, 1), LMC_EINVAL);
    fill_app(t->c, 10);
    ASSERT_OK(put_s(t->c, "other/x", "x", 0));
    lmc *ro = NULL;
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.flags = LMC_OPEN_RDONLY;
    ASSERT_OK(lmc_open(&ro, t->path, &o));
    ASSERT_RC(lmc_flush_prefix(ro, "app/", 4), LMC_EREADONLY);

    /* A prefix longer than any key matches nothing and records nothing. */
    char longp[LMC_MAX_KEY + 2];
    memset(longp, 'a', sizeof longp);
    ASSERT_OK(lmc_flush_prefix(t->c, longp, sizeof longp));
    assert_int_equal(stats_of(t->c).flush_markers, 0);

    /* The empty prefix, NULL allowed: everything, for the read-only
     * handle too. */
    ASSERT_OK(lmc_flush_prefix(t->c, NULL, 0));
    assert_int_equal(scan_n(t->c, ""), 0);
    assert_int_equal(scan_n(ro, ""), 0);
    char buf[16];
    size_t n;
    ASSERT_RC(lmc_get(ro, "other/x", 7, buf, sizeof buf, &n), LMC_NOTFOUND);
    ASSERT_OK(put_s(t->c, "new", "n", 0));
    assert_string_equal(get_s(ro, "new", buf, sizeof buf), "n");
    lmc_sweep_result res;
    ASSERT_OK(lmc_sweep(t->c, NULL, &res));
    assert_int_equal(res.flushed, 11);
    assert_int_equal(stats_of(t->c).entries, 1);
    lmc_close(ro);
}

/* Eight markers fit; the ninth prefix, and any prefix over 64 bytes, is
 * deleted at once.  The same prefix again takes no new slot. */
static void test_flush_fallbacks(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    char k[128];
    for (int p = 0; p < 10; p++)
        for (int i = 0; i < 5; i++) {
            snprintf(k, sizeof k, "p%d/%d", p, i);
            ASSERT_OK(put_s(t->c, k, "v", 0));
        }
    for (int p = 0; p < 8; p++) {
        snprintf(k, sizeof k, "p%d/", p);
        ASSERT_OK(lmc_flush_prefix(t->c, k, strlen(k)));
    }
    ASSERT_OK(lmc_flush_prefix(t->c, "p0/", 3)); /* the same again */
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.flush_markers, 8);
    assert_int_equal(st.counters.flush_fallbacks, 0);
    assert_int_equal(st.entries, 50);

    /* Full: p8/ goes at once. */
    ASSERT_OK(lmc_flush_prefix(t->c, "p8/", 3));
    st = stats_of(t->c);
    assert_int_equal(st.flush_markers, 8);
    assert_int_equal(st.counters.flush_fallbacks, 1);
    assert_int_equal(st.counters.flushed_keys, 5);
    assert_int_equal(st.entries, 45);
    assert_int_equal(scan_n(t->c, ""), 5); /* p9/ only */

    /* A long prefix goes at once too, even with room in the table. */
    lmc_sweep_result res;
    ASSERT_OK(lmc_sweep(t->c, NULL, &res));
    assert_int_equal(res.flushed, 40);
    assert_int_equal(stats_of(t->c).flush_markers, 0);
    char lk[100];
    memset(lk, 'L', 70);
    for (int i = 0; i < 3; i++) {
        snprintf(lk + 70, sizeof lk - 70, "%d", i);
        ASSERT_OK(put_s(t->c, lk, "v", 0));
    }
    ASSERT_OK(lmc_flush_prefix(t->c, lk, 70));
    st = stats_of(t->c);
    assert_int_equal(st.flush_markers, 0);
    assert_int_equal(st.counters.flush_fallbacks, 2);
    assert_int_equal(st.entries, 5);
}

/* A budget stops the reclaim part-way; the marker stays and the next pass
 * finishes.  A flush of the same prefix during the reclaim keeps the
 * marker for the next pass too. */
static void test_flush_reclaim_budget(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    fill_app(t->c, N_APP);
    ASSERT_OK(lmc_flush_prefix(t->c, "app/", 4));
    lmc_sweep_options o;
    memset(&o, 0, sizeof o);
    o.batch = 100;
    o.max_keys = 150;
    o.flags = LMC_SWEEP_NOEVICT;
    lmc_sweep_result res;
    ASSERT_OK(lmc_sweep(t->c, &o, &res));
    assert_int_equal(res.complete, 0);
    assert_true(res.flushed >= 150 && res.flushed < N_APP);
    assert_int_equal(stats_of(t->c).flush_markers, 1);
    assert_int_equal(scan_n(t->c, "app/"), 0);
    ASSERT_OK(lmc_sweep(t->c, NULL, &res));
    assert_int_equal(res.complete, 1);
    assert_int_equal(stats_of(t->c).flush_markers, 0);
    assert_int_equal(stats_of(t->c).entries, 0);
    assert_int_equal(stats_of(t->c).counters.flushed_keys, N_APP);
}

/* ------------------------------------------------------------------------ */
/* A reader that holds a snapshot across a flush and its reclaim            */
/* ------------------------------------------------------------------------ */

typedef struct hold {
    start_gate in;    /* the reader is inside its snapshot */
    _Atomic int done; /* the parent has flushed (and swept) */
    _Atomic int seen; /* entries the reader's scan visited */
} hold;

static hold *H;

static int hold_scan(void *arg, const lmc_value *v)
{
    (void)arg;
    (void)v;
    if (atomic_fetch_add(&H->seen, 1) == 5) {
        gate_wait(&H->in);
        while (!atomic_load(&H->done))
            sched_yield();
    }
    return 0;
}

static int hold_view(void *arg, const lmc_value *v)
{
    (void)v;
    *(int *)arg = 1;
    gate_wait(&H->in);
    while (!atomic_load(&H->done))
        sched_yield();
    return 0;
}

/* Once the child pid is inside its snapshot: flush app/ (and with sweep,
 * reclaim its n entries and retire the marker), then let the child go on
 * and wait for it. */
static void flush_under_reader(tctx *t, pid_t pid, bool sweep, uint64_t n)
{
    gate_open_when(&H->in, 1);
    ASSERT_OK(lmc_flush_prefix(t->c, "app/", 4));
    if (sweep) {
        lmc_sweep_result res;
        ASSERT_OK(lmc_sweep(t->c, NULL, &res));
        assert_int_equal(res.flushed, n);
        /* Retired while the reader still holds its old snapshot: it reads
         * the table before each new snapshot. */
        assert_int_equal(stats_of(t->c).flush_markers, 0);
    }
    atomic_store(&H->done, 1);
    wait_ok(pid);
}

static void snapshot_across(tctx *t, bool sweep)
{
    t->c = open_cache(t, 16, 0);
    fill_app(t->c, 600);
    H = shared_map(sizeof *H);
    /* A scan stopped inside its first batch (one snapshot) while the
     * parent flushes: the batches after it, read from snapshots taken
     * after the flush, visit nothing of the prefix. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        CHILD_OK(lmc_scan(t->c, "app/", 4, hold_scan, NULL));
        _exit(atomic_load(&H->seen) < 600 ? 0 : 1);
    }
    flush_under_reader(t, pid, sweep, 600);
    assert_true(atomic_load(&H->seen) <= 256 + 1);

    /* A get_view inside its snapshot across the flush (and reclaim) gets
     * the value it read before; its next read misses. */
    fill_app(t->c, 10);
    memset(H, 0, sizeof *H);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int seen = 0;
        CHILD_OK(lmc_get_view(t->c, "app/0001", 8, hold_view, &seen));
        CHILD_CHECK(seen == 1);
        char buf[16];
        size_t n;
        CHILD_CHECK(lmc_get(t->c, "app/0001", 8, buf, sizeof buf, &n) == LMC_NOTFOUND);
        _exit(0);
    }
    flush_under_reader(t, pid, sweep, 10);
}

static void test_flush_old_snapshot(void **state)
{
    snapshot_across(*state, false);
}

static void test_flush_old_snapshot_reclaimed(void **state)
{
    snapshot_across(*state, true);
}

/* ------------------------------------------------------------------------ */
/* A flusher killed at each step                                            */
/* ------------------------------------------------------------------------ */

static int kill_at;

static void kill_hook(int step)
{
    if (step == kill_at)
        raise(SIGKILL);
}

static void test_flush_killed(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    for (int step = 1; step <= 3; step++) {
        fill_app(t->c, 20);
        ASSERT_OK(put_s(t->c, "other/x", "x", 0));
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            kill_at = step;
            lmc__test_flush_hook = kill_hook;
            lmc_flush_prefix(t->c, "app/", 4);
            _exit(5); /* not reached */
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        /* Step 1 died before the marker, step 3 in the middle of writing
         * its slot (never published); step 2 after publishing it, before
         * its transaction committed: the flush took effect. */
        lmc_stat s = stats_of(t->c);
        assert_int_equal(s.flush_markers, step == 2 ? 1 : 0);
        assert_int_equal(scan_n(t->c, "app/"), step == 2 ? 0 : 20);
        /* The table works on: a flush (reusing the slot a dead writer left
         * half written), the reads, the writes, the sweep. */
        ASSERT_OK(lmc_flush_prefix(t->c, "app/", 4));
        assert_int_equal(flushed_everywhere(t->c), 0);
        lmc_sweep_result res;
        ASSERT_OK(lmc_sweep(t->c, NULL, &res));
        assert_int_equal(stats_of(t->c).flush_markers, 0);
        assert_int_equal(scan_n(t->c, "app/"), 4);
        assert_int_equal(scan_n(t->c, "other/"), 1);
    }
}

/* ------------------------------------------------------------------------ */
/* Flushes racing writers and readers in other processes                    */
/* ------------------------------------------------------------------------ */

/* Two writers store app/<w>/<i % 50> = "<i>", and record, once the store
 * has returned, how many flushes covering their keys had completed then
 * (done[w]: "app/" covers both writers, "app/1/" only the second).  Every
 * flush that starts after that is made after the store: a reader whose
 * read begins when two more have completed must not see the value.  No
 * timing: the rule holds at every interleaving. */
#define RACE_WRITES 20000

typedef struct race {
    start_gate gate;
    _Atomic int done[2];                 /* completed flushes covering app/<w>/ */
    _Atomic int rec[2][RACE_WRITES];     /* done[w] + 1 when write i returned */
    _Atomic int stop;
} race;

static void race_child(tctx *t, race *R, int w)
{
    gate_wait(&R->gate);
    char k[32], v[32], buf[32];
    for (int i = 0; i < RACE_WRITES && !atomic_load(&R->stop); i++) {
        if (w < 2) {
            snprintf(k, sizeof k, "app/%d/%d", w, i % 50);
            snprintf(v, sizeof v, "%d", i);
            CHILD_OK(put_s(t->c, k, v, 0));
            atomic_store(&R->rec[w][i], atomic_load(&R->done[w]) + 1);
            continue;
        }
        int ww = i % 2;
        snprintf(k, sizeof k, "app/%d/%d", ww, (i / 2) % 50);
        int before = atomic_load(&R->done[ww]);
        size_t n;
        int rc = lmc_get(t->c, k, strlen(k), buf, sizeof buf - 1, &n);
        CHILD_CHECK(rc == 0 || rc == LMC_NOTFOUND);
        if (rc == 0) {
            buf[n] = 0;
            int at = atomic_load(&R->rec[ww][atoi(buf)]);
            CHILD_CHECK(at == 0 || before < at - 1 + 2);
        }
    }
    _exit(0);
}

static void test_flush_races(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 32, 0);
    race *R = shared_map(sizeof *R);
    pid_t kids[3];
    for (int w = 0; w < 3; w++) {
        kids[w] = fork();
        assert_true(kids[w] >= 0);
        if (kids[w] == 0)
            race_child(t, R, w);
    }
    gate_open_when(&R->gate, 3);
    for (int f = 0; f < 200; f++) {
        bool all = f % 3 != 0;
        ASSERT_OK(lmc_flush_prefix(t->c, all ? "app/" : "app/1/", all ? 4 : 6));
        if (all)
            atomic_fetch_add(&R->done[0], 1);
        atomic_fetch_add(&R->done[1], 1);
        if (f % 10 == 9) {
            lmc_sweep_result res;
            ASSERT_OK(lmc_sweep(t->c, NULL, &res));
        }
    }
    atomic_store(&R->stop, 1);
    for (int w = 0; w < 3; w++)
        wait_ok(kids[w]);
    lmc_sweep_result res;
    ASSERT_OK(lmc_sweep(t->c, NULL, &res));
    assert_int_equal(stats_of(t->c).flush_markers, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flush_other_process, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_flush_arguments, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_flush_fallbacks, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_flush_reclaim_budget, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_flush_old_snapshot, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_flush_old_snapshot_reclaimed, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_flush_killed, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_flush_races, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests_name("flush", tests, NULL, NULL);
}
