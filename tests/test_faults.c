/*
 * test_faults.c - every failure path that a test can provoke: allocation
 * failures (SQLite-style loops: fail the nth allocation for n = 1, 2, ...,
 * once with a single failure and once with every later allocation failing
 * too), and LMDB errors injected with -Wl,--wrap (MDB_MAP_FULL, EIO,
 * MDB_READERS_FULL, MDB_CORRUPTED).  Each must give a clear code and message,
 * leak nothing (the ASan build checks) and leave the cache consistent.  The
 * same wrap also counts the expiry rows that writes put, which no public
 * call shows.
 */
#include "util.h"

#include <pthread.h>

/* ------------------------------------------------------------------------ */
/* LMDB fault injection                                                     */
/* ------------------------------------------------------------------------ */

typedef struct fault {
    int calls; /* calls to let through before failing */
    int fails; /* failures to inject after that (-1: forever) */
    int rc;    /* the result to inject */
    bool rdonly_only; /* mdb_txn_begin: only read-only txns */
    bool die;         /* mdb_txn_commit: SIGKILL the process instead, before committing */
} fault;

static fault f_put, f_commit, f_begin, f_get, f_cget;

static void fault_reset(void)
{
    memset(&f_put, 0, sizeof f_put);
    memset(&f_commit, 0, sizeof f_commit);
    memset(&f_begin, 0, sizeof f_begin);
    memset(&f_get, 0, sizeof f_get);
    memset(&f_cget, 0, sizeof f_cget);
}

static bool fault_fire(fault *f)
{
    if (f->fails == 0)
        return false;
    if (f->calls > 0) {
        f->calls--;
        return false;
    }
    if (f->fails > 0)
        f->fails--;
    return true;
}

int __real_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned flags);
/* Expiry rows put (their keys start with 0xFF, lib/format.h). */
static unsigned long row_puts;

int __wrap_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned flags)
{
    if (key->mv_size && *(const unsigned char *)key->mv_data == 0xFF)
        row_puts++;
    if (fault_fire(&f_put))
        return f_put.rc;
    return __real_mdb_put(txn, dbi, key, data, flags);
}

/* Entries go in through the lookup's cursor (lib/entry.c): the same fault,
 * so that a test injects into every put of the main database alike. */
int __real_mdb_cursor_put(MDB_cursor *cur, MDB_val *key, MDB_val *data, unsigned flags);
int __wrap_mdb_cursor_put(MDB_cursor *cur, MDB_val *key, MDB_val *data, unsigned flags)
{
    if (key->mv_size && *(const unsigned char *)key->mv_data == 0xFF)
        row_puts++;
    if (fault_fire(&f_put))
        return f_put.rc;
    return __real_mdb_cursor_put(cur, key, data, flags);
}

int __real_mdb_txn_commit(MDB_txn *txn);
int __wrap_mdb_txn_commit(MDB_txn *txn)
{
    if (fault_fire(&f_commit)) {
        if (f_commit.die)
            raise(SIGKILL); /* a writer killed with its transaction open */
        mdb_txn_abort(txn); /* commit always frees the txn */
        return f_commit.rc;
    }
    return __real_mdb_txn_commit(txn);
}

int __real_mdb_txn_begin(MDB_env *env, MDB_txn *parent, unsigned flags, MDB_txn **txn);
int __wrap_mdb_txn_begin(MDB_env *env, MDB_txn *parent, unsigned flags, MDB_txn **txn)
{
    if ((!f_begin.rdonly_only || (flags & MDB_RDONLY)) && fault_fire(&f_begin))
        return f_begin.rc;
    return __real_mdb_txn_begin(env, parent, flags, txn);
}

int __real_mdb_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data);
int __wrap_mdb_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
    if (fault_fire(&f_get))
        return f_get.rc;
    return __real_mdb_get(txn, dbi, key, data);
}

int __real_mdb_cursor_get(MDB_cursor *cur, MDB_val *key, MDB_val *data, MDB_cursor_op op);
int __wrap_mdb_cursor_get(MDB_cursor *cur, MDB_val *key, MDB_val *data, MDB_cursor_op op)
{
    if (fault_fire(&f_cget))
        return f_cget.rc;
    return __real_mdb_cursor_get(cur, key, data, op);
}

static int setup(void **state)
{
    fault_reset();
    return setup_dir(state);
}

static int teardown(void **state)
{
    fault_reset();
    return teardown_dir(state);
}

static void test_map_full_from_put_evicts_and_retries(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    char k[32];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "k%04d", i);
        ASSERT_OK(put_s(t->c, k, "value", 0));
    }
    f_put = (fault){.fails = 1, .rc = MDB_MAP_FULL};
    ASSERT_OK(put_s(t->c, "new", "v", 0));
    char buf[8];
    assert_string_equal(get_s(t->c, "new", buf, sizeof buf), "v");
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.map_full, 1);
    assert_true(st.counters.evictions_lru > 0);
    assert_int_equal(st.entries + st.counters.evictions_lru, 301);
}

static void test_map_full_with_nothing_to_evict(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    f_put = (fault){.fails = -1, .rc = MDB_MAP_FULL};
    ASSERT_RC(put_s(t->c, "k", "v", 0), LMC_ENOSPC);
    assert_non_null(strstr(lmc_errmsg(t->c), "nothing left to evict"));
    fault_reset();
    ASSERT_OK(put_s(t->c, "k", "v", 0));
}

static void test_commit_failure_loses_only_that_write(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    char buf[16];
    ASSERT_OK(put_s(t->c, "k", "old", 0));
    f_commit = (fault){.fails = 1, .rc = EIO};
    ASSERT_RC(put_s(t->c, "k", "new", 0), LMC_EIO);
    assert_non_null(strstr(lmc_errmsg(t->c), "mdb_txn_commit"));
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "old");
    f_commit = (fault){.fails = 1, .rc = ENOSPC};
    ASSERT_RC(lmc_incr(t->c, "n", 1, 1, NULL, 0), LMC_ENOSPC);
    assert_null(get_s(t->c, "n", buf, sizeof buf));
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.sets, 1); /* failed writes are not counted */
    assert_int_equal(st.entries, 1);
    ASSERT_OK(put_s(t->c, "k", "new", 0));
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "new");
}

/* The batch of the two tests below: NB keys, and a set_many of them whose
 * last value can never fit, so that it fails with LMC_ETOOBIG and removes
 * the values it was to replace. */
enum { NB = 8 };

static void batch_put_old(lmc *c)
{
    char k[16];
    for (int i = 0; i < NB; i++) {
        snprintf(k, sizeof k, "b/%d", i);
        ASSERT_OK(put_s(c, k, "old", 0));
    }
}

static int batch_set_too_big(lmc *c)
{
    static char huge[3 << 20];
    lmc_item items[NB];
    char keys[NB][16];
    for (int i = 0; i < NB; i++) {
        snprintf(keys[i], sizeof keys[i], "b/%d", i);
        items[i] = (lmc_item){keys[i], strlen(keys[i]), "new", 3, 0};
    }
    items[NB - 1].val = huge;
    items[NB - 1].vlen = sizeof huge;
    return lmc_set_many(c, items, NB);
}

/* The batch is whole (every key "old") or gone (none); how many keys are
 * left otherwise. */
static int batch_left(lmc *c)
{
    int left = 0;
    char k[16], buf[8];
    for (int i = 0; i < NB; i++) {
        snprintf(k, sizeof k, "b/%d", i);
        const char *v = get_s(c, k, buf, sizeof buf);
        if (v) {
            assert_string_equal(v, "old");
            left++;
        }
    }
    return left;
}

/*
 * A set_many that cannot be stored removes the values it was to replace, all
 * in one transaction: when that transaction fails, every old value stays,
 * and it is never some removed and the others old (which a reader of the
 * batch would take for a torn write).  The commit fails as the nth of the
 * call for every n.
 */
static void test_failed_set_many_removes_all_or_nothing(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    for (int n = 0; n <= NB; n++) {
        batch_put_old(t->c);
        f_commit = (fault){.calls = n, .fails = 1, .rc = EIO};
        ASSERT_RC(batch_set_too_big(t->c), LMC_ETOOBIG);
        fault_reset();
        int left = batch_left(t->c);
        if (left != 0 && left != NB)
            fail_msg("commit %d failed: %d of the %d values are left", n, left, NB);
    }
    /* When the one removal is what fails, the values go one by one (no old
     * value is left readable), and the message says so. */
    batch_put_old(t->c);
    f_commit = (fault){.fails = 1, .rc = EIO};
    ASSERT_RC(batch_set_too_big(t->c), LMC_ETOOBIG);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lmc_errmsg(t->c));
    fault_reset();
    assert_int_equal(batch_left(t->c), 0);
    if (!strstr(msg, "removed one by one"))
        fail_msg("unclear message: %s", msg);
    /* When every removal fails, the message says how many are left. */
    batch_put_old(t->c);
    f_commit = (fault){.fails = -1, .rc = EIO};
    ASSERT_RC(batch_set_too_big(t->c), LMC_ETOOBIG);
    snprintf(msg, sizeof msg, "%s", lmc_errmsg(t->c));
    fault_reset();
    assert_int_equal(batch_left(t->c), NB);
    char want[64];
    snprintf(want, sizeof want, "0 were removed and %d could not be", NB);
    if (!strstr(msg, want))
        fail_msg("unclear message: %s", msg);
}

/* The same, with the writer SIGKILLed at the nth commit of the call: what
 * it leaves to the other processes is the whole batch or none of it. */
static void test_set_many_killed_while_removing(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    for (int n = 0; n <= NB; n++) {
        batch_put_old(t->c);
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            f_commit = (fault){.calls = n, .fails = 1, .die = true};
            CHILD_CHECK(batch_set_too_big(h) == LMC_ETOOBIG);
            _exit(0);
        }
        int st;
        assert_int_equal(waitpid(p, &st, 0), p);
        assert_true(WIFSIGNALED(st) ? WTERMSIG(st) == SIGKILL : WEXITSTATUS(st) == 0);
        int left = batch_left(t->c);
        if (left != 0 && left != NB)
            fail_msg("killed at commit %d: %d of the %d values are left", n, left, NB);
    }
}

static void test_write_begin_failure(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    f_begin = (fault){.fails = 1, .rc = MDB_PANIC};
    ASSERT_RC(put_s(t->c, "k", "v", 0), LMC_EIO);
    assert_non_null(strstr(lmc_errmsg(t->c), "mdb_txn_begin"));
    ASSERT_OK(put_s(t->c, "k", "v", 0));
}

static char first_get_msg[512];

static void *first_get(void *p)
{
    tctx *t = p;
    char buf[8];
    size_t n;
    intptr_t rc = lmc_get(t->c, "k", 1, buf, sizeof buf, &n);
    snprintf(first_get_msg, sizeof first_get_msg, "%s", lmc_errmsg(t->c));
    return (void *)rc;
}

static void test_readers_full_clears_stale_slots_then_gives_up(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    /* Once: the library clears stale slots and retries. */
    f_begin = (fault){.fails = 1, .rc = MDB_READERS_FULL, .rdonly_only = true};
    pthread_t th;
    void *rc;
    assert_int_equal(pthread_create(&th, NULL, first_get, t), 0);
    assert_int_equal(pthread_join(th, &rc), 0);
    assert_int_equal((intptr_t)rc, LMC_OK);
    /* Always: a clear LMC_EBUSY, and the next thread is fine again. */
    f_begin = (fault){.fails = -1, .rc = MDB_READERS_FULL, .rdonly_only = true};
    assert_int_equal(pthread_create(&th, NULL, first_get, t), 0);
    assert_int_equal(pthread_join(th, &rc), 0);
    assert_int_equal((intptr_t)rc, LMC_EBUSY);
    /* LMC_EBUSY has several meanings: the message says which. */
    if (!strstr(first_get_msg, "reader slots of") || !strstr(first_get_msg, "max_readers"))
        fail_msg("unclear message: %s", first_get_msg);
    fault_reset();
    assert_int_equal(pthread_create(&th, NULL, first_get, t), 0);
    assert_int_equal(pthread_join(th, &rc), 0);
    assert_int_equal((intptr_t)rc, LMC_OK);
}

static void test_corrupted_page_on_read(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    char buf[8];
    size_t n;
    f_get = (fault){.fails = 1, .rc = MDB_CORRUPTED};
    ASSERT_RC(lmc_get(t->c, "k", 1, buf, sizeof buf, &n), LMC_ECORRUPT);
    assert_non_null(strstr(lmc_errmsg(t->c), "mdb_get"));
    f_cget = (fault){.fails = 1, .rc = MDB_PAGE_NOTFOUND}; /* a write's lookup */
    ASSERT_RC(lmc_set(t->c, "k", 1, "w", 1, 0), LMC_ECORRUPT);
    ASSERT_OK(lmc_get(t->c, "k", 1, buf, sizeof buf, &n));
    assert_int_equal(buf[0], 'v');
}

/* ------------------------------------------------------------------------ */
/* Allocation failures                                                      */
/* ------------------------------------------------------------------------ */

/* An operation run with allocations failing, with a preparation and a check
 * that run without. */
typedef struct alloc_case {
    void (*prep)(tctx *t, int step);
    int (*op)(tctx *t, int step);
    void (*check)(tctx *t, int step, int rc);
} alloc_case;

/* The message an op that runs in a thread of its own left there, since the
 * message is the calling thread's. */
static char thread_msg[512];
static bool in_thread;

/* A message of another code on this thread, so that a failure which left
 * none of its own would show it. */
static void plant_message(void)
{
    in_thread = false;
    ASSERT_RC(lmc_get(NULL, "k", 1, NULL, 0, NULL), LMC_EINVAL);
}

/*
 * Run op with the nth allocation failing, for n = 1, 2, ... until op
 * succeeds without reaching the failure; with persistent, every allocation
 * after the nth fails too.  op must give LMC_ENOMEM or LMC_OK each time,
 * with a message of its own when it fails, and check must find the cache
 * consistent either way.
 */
static void alloc_loop(tctx *t, const alloc_case *ac, bool persistent)
{
    for (unsigned long n = 1; n < 200; n++) {
        if (ac->prep)
            ac->prep(t, (int)n);
        plant_message();
        lmc__test_fail_alloc(n, persistent);
        unsigned long before = lmc__test_alloc_count();
        int rc = ac->op(t, (int)n);
        unsigned long used = lmc__test_alloc_count() - before;
        lmc__test_fail_alloc(0, false);
        const char *msg = in_thread ? thread_msg : lmc__errmsg_last();
        if (rc != LMC_OK && rc != LMC_ENOMEM)
            fail_msg("allocation %lu failing gave %s (%s)", n, lmc_errname(rc), msg);
        /* lmc_errmsg describes the failed call, never an older one. */
        if (rc == LMC_ENOMEM && strncmp(msg, "LMC_ENOMEM: ", 12) != 0)
            fail_msg("allocation %lu failing gave LMC_ENOMEM with the message '%s'", n, msg);
        if (ac->check)
            ac->check(t, (int)n, rc);
        if (rc == LMC_OK && used < n)
            return; /* got through without reaching the nth allocation */
    }
    fail_msg("the operation never completed");
}

static int op_open(tctx *t, int step)
{
    (void)step;
    lmc *c = (lmc *)0x1;
    lmc_options o = {.map_size = 4u << 20};
    int rc = lmc_open(&c, t->path, &o);
    if (rc) {
        assert_null(c);
        assert_true(*lmc_errmsg(NULL) != 0);
        return rc;
    }
    lmc_close(c);
    return 0;
}

static void test_open_under_allocation_failures(void **state)
{
    tctx *t = *state;
    const alloc_case ac = {NULL, op_open, NULL};
    alloc_loop(t, &ac, false);
    alloc_loop(t, &ac, true);
    /* The cache is fine afterwards. */
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    assert_int_equal(stats_of(t->c).entries, 1);
}

static int op_get_alloc(tctx *t, int step)
{
    (void)step;
    void *p = NULL;
    size_t n;
    int rc = lmc_get_alloc(t->c, "k", 1, &p, &n);
    if (rc == 0) {
        assert_int_equal(n, 5);
        lmc_free(p);
    } else {
        assert_null(p);
    }
    return rc;
}

static void *alloc_thread(void *p)
{
    int rc = op_get_alloc(p, 0);
    snprintf(thread_msg, sizeof thread_msg, "%s", lmc__errmsg_last());
    in_thread = true;
    return (void *)(intptr_t)rc;
}

static int op_get_alloc_new_thread(tctx *t, int step)
{
    (void)step;
    pthread_t th;
    void *rc;
    assert_int_equal(pthread_create(&th, NULL, alloc_thread, t), 0);
    assert_int_equal(pthread_join(th, &rc), 0);
    return (int)(intptr_t)rc;
}

static void check_value(tctx *t, int step, int rc)
{
    (void)step;
    (void)rc;
    char buf[8];
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "value");
}

static void test_reads_under_allocation_failures(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "value", 0));
    const alloc_case get = {NULL, op_get_alloc, check_value};
    alloc_loop(t, &get, false);
    alloc_loop(t, &get, true);
    /* A thread's first read allocates its read transaction. */
    const alloc_case thr = {NULL, op_get_alloc_new_thread, check_value};
    alloc_loop(t, &thr, false);
    alloc_loop(t, &thr, true);
}

static void prep_prefix(tctx *t, int step)
{
    char k[32];
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "p%d/%d", step, i);
        ASSERT_OK(put_s(t->c, k, "v", 0));
    }
}

static int op_prefix(tctx *t, int step)
{
    char k[32];
    snprintf(k, sizeof k, "p%d/", step);
    uint64_t n = 0;
    int rc = lmc_delete_prefix(t->c, k, strlen(k), &n);
    assert_int_equal(n, rc == LMC_OK ? 20 : 0);
    return rc;
}

static int count_entry(void *arg, const lmc_value *v)
{
    (void)v;
    (*(uint64_t *)arg)++;
    return 0;
}

/* The entry count of the stats matches a full scan. */
static void check_consistent(tctx *t, int step, int rc)
{
    (void)step;
    (void)rc;
    uint64_t seen = 0;
    ASSERT_OK(lmc_scan(t->c, NULL, 0, count_entry, &seen));
    assert_int_equal(stats_of(t->c).entries, seen);
}

static void check_prefix(tctx *t, int step, int rc)
{
    char k[32];
    snprintf(k, sizeof k, "p%d/", step);
    uint64_t seen = 0;
    ASSERT_OK(lmc_scan(t->c, k, strlen(k), count_entry, &seen));
    assert_int_equal(seen, rc == LMC_OK ? 0 : 20);
    check_consistent(t, step, rc);
}

static char big[4096];

static void prep_touch(tctx *t, int step)
{
    memset(big, 'a' + step % 26, sizeof big);
    ASSERT_OK(lmc_set(t->c, "big", 3, big, sizeof big, 100000));
}

static int op_touch(tctx *t, int step)
{
    return lmc_touch(t->c, "big", 3, 200000 + step);
}

static void check_touch(tctx *t, int step, int rc)
{
    (void)step;
    (void)rc;
    void *out;
    size_t n;
    ASSERT_OK(lmc_get_alloc(t->c, "big", 3, &out, &n));
    assert_int_equal(n, sizeof big);
    assert_memory_equal(out, big, n);
    lmc_free(out);
}

static void prep_sweep(tctx *t, int step)
{
    (void)step;
    char k[32];
    for (int i = 0; i < 400; i++) {
        snprintf(k, sizeof k, "s/%04d", i);
        ASSERT_OK(put_s(t->c, k, "some value", 0));
    }
}

static int op_sweep(tctx *t, int step)
{
    (void)step;
    lmc_sweep_options o = {.flags = LMC_SWEEP_FORCE, .high_watermark = 0.01,
                           .low_watermark = 0.005};
    lmc_sweep_result r;
    return lmc_sweep(t->c, &o, &r);
}

/* Rows that lag behind live entries, all due: a sweep files each again,
 * which allocates (the list of rows to file again). */
static void prep_lagging(tctx *t, int step)
{
    (void)step;
    char k[32];
    ASSERT_OK(lmc_clear(t->c));
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "l/%04d", i);
        ASSERT_OK(put_s(t->c, k, "v", 1000));
    }
    fake_clock_advance(500);
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "l/%04d", i);
        ASSERT_OK(put_s(t->c, k, "w", 1000));
    }
    fake_clock_advance(600);
}

static int op_sweep_noevict(tctx *t, int step)
{
    (void)step;
    lmc_sweep_options o = {.flags = LMC_SWEEP_NOEVICT};
    lmc_sweep_result r;
    int rc = lmc_sweep(t->c, &o, &r);
    if (rc == LMC_OK) {
        assert_int_equal(r.expired, 0);
        assert_int_equal(r.rows_refiled, 300);
    }
    return rc;
}

/* Whatever failed, every entry is there and the index is exact. */
static void check_lagging(tctx *t, int step, int rc)
{
    check_consistent(t, step, rc);
    lmc_verify_result v;
    ASSERT_OK(lmc_verify(t->c, NULL, &v));
    assert_int_equal(v.entries_with_ttl, 300);
    assert_int_equal(v.expiry_rows, 300);
    char buf[8];
    assert_string_equal(get_s(t->c, "l/0123", buf, sizeof buf), "w");
}

static void test_writes_under_allocation_failures(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    const alloc_case prefix = {prep_prefix, op_prefix, check_prefix};
    alloc_loop(t, &prefix, false);
    alloc_loop(t, &prefix, true);
    const alloc_case touch = {prep_touch, op_touch, check_touch};
    alloc_loop(t, &touch, false);
    alloc_loop(t, &touch, true);
    const alloc_case sweep = {prep_sweep, op_sweep, check_consistent};
    alloc_loop(t, &sweep, false);
    alloc_loop(t, &sweep, true);
    fake_clock_install();
    const alloc_case lagging = {prep_lagging, op_sweep_noevict, check_lagging};
    alloc_loop(t, &lagging, false);
    alloc_loop(t, &lagging, true);
}

/* A set with a TTL that replaces an entry going a little later keeps its
 * expiry row where it is (one B-tree update instead of three), and so does
 * a touch; once the entry would go more than LMC__ROW_LAG_MAX ms after the
 * row, the row moves.  An entry with pages of its own always moves its row
 * (the sweeper could not file it again without pages on a full map). */
static void test_rewrite_soon_after_moves_no_row(void **state)
{
    tctx *t = *state;
    fake_clock_install();
    t->c = open_cache(t, 4, 0);
    unsigned long before = row_puts;
    ASSERT_OK(put_s(t->c, "k", "1", 60000));
    assert_int_equal(row_puts - before, 1);
    for (int i = 0; i < 8; i++) {
        fake_clock_advance(8000); /* up to 64,000 ms after the row */
        ASSERT_OK(put_s(t->c, "k", "2", 60000));
    }
    ASSERT_OK(lmc_touch(t->c, "k", 1, 61535)); /* 65,535 after: the most */
    assert_int_equal(row_puts - before, 1);
    fake_clock_advance(1);
    ASSERT_OK(put_s(t->c, "k", "3", 61535));
    assert_int_equal(row_puts - before, 2);
    static char bigval[8192];
    memset(bigval, 'b', sizeof bigval);
    ASSERT_OK(lmc_set(t->c, "big", 3, bigval, sizeof bigval, 60000));
    fake_clock_advance(1);
    ASSERT_OK(lmc_set(t->c, "big", 3, bigval, sizeof bigval, 60000));
    assert_int_equal(row_puts - before, 4);
    lmc_verify_result v;
    ASSERT_OK(lmc_verify(t->c, NULL, &v));
    assert_int_equal(v.expiry_rows, 2);
    char buf[8];
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "3");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_map_full_from_put_evicts_and_retries),
        T(test_map_full_with_nothing_to_evict),
        T(test_commit_failure_loses_only_that_write),
        T(test_failed_set_many_removes_all_or_nothing),
        T(test_set_many_killed_while_removing),
        T(test_write_begin_failure),
        T(test_readers_full_clears_stale_slots_then_gives_up),
        T(test_corrupted_page_on_read),
        T(test_open_under_allocation_failures),
        T(test_reads_under_allocation_failures),
        T(test_writes_under_allocation_failures),
        T(test_rewrite_soon_after_moves_no_row),
    };
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
