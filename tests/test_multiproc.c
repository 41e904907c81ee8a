/*
 * test_multiproc.c - the cache shared by real forked processes: atomic incr
 * and add across processes, a handle inherited across fork(), readers never
 * seeing a torn value while writers overwrite it, writers SIGKILLed in the
 * middle of transactions (at least 100 times) leaving a consistent cache that
 * other processes keep using, prefix deletes while others read, counters
 * summed over processes, and stale reader slots of killed processes cleared.
 */
#include "util.h"

#include <sched.h>

/* A small shared-memory area for coordinating children. */
typedef struct shared {
    start_gate gate;
    _Atomic int stop;       /* ask long-running children to finish */
    _Atomic long progress;  /* commits done by the writer */
    _Atomic long reads;     /* reads done by readers */
    _Atomic int failures;   /* consistency failures seen by children */
    _Atomic int winners;    /* successful adds */
    _Atomic int pinned;     /* writes retried after LMC_ENOSPC from a stuck reader */
} shared;

static shared *shared_new(void)
{
    return shared_map(sizeof(shared));
}

static void test_incr_from_8_processes(void **state)
{
    tctx *t = *state;
    enum { NPROC = 8, PER = 20000 };
    lmc *c = open_cache(t, 16, 0);
    lmc_close(c);
    shared *s = shared_new();
    pid_t pids[NPROC];
    alarm(timeout_s(300));
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            gate_wait(&s->gate);
            for (int i = 0; i < PER; i++)
                CHILD_OK(lmc_incr(h, "counter", 7, 1, NULL, LMC_TTL_NEVER));
            lmc_close(h);
            _exit(0);
        }
    }
    gate_open_when(&s->gate, NPROC);
    for (int p = 0; p < NPROC; p++)
        wait_ok(pids[p]);
    alarm(0);
    t->c = open_cache(t, 16, 0);
    char buf[32];
    assert_string_equal(get_s(t->c, "counter", buf, sizeof buf), "160000");
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.incrs, (uint64_t)NPROC * PER);
    munmap(s, sizeof *s);
}

static void test_add_race_has_one_winner(void **state)
{
    tctx *t = *state;
    enum { NPROC = 8, ROUNDS = 20 };
    lmc *c = open_cache(t, 8, 0);
    lmc_close(c);
    for (int round = 0; round < ROUNDS; round++) {
        shared *s = shared_new();
        pid_t pids[NPROC];
        char key[32];
        snprintf(key, sizeof key, "lock/%d", round);
        for (int p = 0; p < NPROC; p++) {
            pids[p] = fork();
            assert_true(pids[p] >= 0);
            if (pids[p] == 0) {
                lmc *h = NULL;
                CHILD_OK(lmc_open(&h, t->path, NULL));
                char me[16];
                int n = snprintf(me, sizeof me, "%d", p);
                gate_wait(&s->gate);
                int rc = lmc_add(h, key, strlen(key), me, (size_t)n, LMC_TTL_NEVER);
                CHILD_CHECK(rc == LMC_OK || rc == LMC_EXISTS);
                if (rc == LMC_OK)
                    atomic_fetch_add(&s->winners, 1);
                lmc_close(h);
                _exit(0);
            }
        }
        gate_open_when(&s->gate, NPROC);
        for (int p = 0; p < NPROC; p++)
            wait_ok(pids[p]);
        assert_int_equal(atomic_load(&s->winners), 1);
        munmap(s, sizeof *s);
    }
    t->c = open_cache(t, 8, 0);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.adds, NPROC * ROUNDS);
    assert_int_equal(st.counters.add_conflicts, (NPROC - 1) * ROUNDS);
}

static void test_handle_inherited_across_fork(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    char buf[32];
    ASSERT_OK(put_s(t->c, "from-parent", "p", 0));
    /* Use the handle before forking so that the parent holds a read txn. */
    assert_string_equal(get_s(t->c, "from-parent", buf, sizeof buf), "p");
    enum { NCHILD = 4 };
    pid_t pids[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char k[32], b[32];
            size_t n;
            CHILD_OK(lmc_get(t->c, "from-parent", 11, b, sizeof b, &n));
            CHILD_CHECK(n == 1 && b[0] == 'p');
            snprintf(k, sizeof k, "from-child-%d", i);
            CHILD_OK(lmc_set(t->c, k, strlen(k), "c", 1, 0));
            CHILD_OK(lmc_incr(t->c, "children", 8, 1, NULL, 0));
            if (i == 0) {
                /* A grandchild inherits the child's reopened handle. */
                pid_t g = fork();
                CHILD_CHECK(g >= 0);
                if (g == 0) {
                    CHILD_OK(lmc_set(t->c, "grandchild", 10, "g", 1, 0));
                    _exit(0); /* without lmc_close: its reader slot is cleared later */
                }
                int st;
                CHILD_CHECK(waitpid(g, &st, 0) == g && WIFEXITED(st) && WEXITSTATUS(st) == 0);
            }
            lmc_stat s;
            CHILD_OK(lmc_stats(t->c, &s));
            CHILD_CHECK(s.processes >= 2); /* the parent and this child at least */
            if (i % 2)
                lmc_close(t->c); /* half close, half just exit */
            _exit(0);
        }
        /* The parent keeps using its handle while children run. */
        assert_string_equal(get_s(t->c, "from-parent", buf, sizeof buf), "p");
        ASSERT_OK(lmc_incr(t->c, "parent-ops", 10, 1, NULL, 0));
    }
    for (int i = 0; i < NCHILD; i++)
        wait_ok(pids[i]);
    assert_string_equal(get_s(t->c, "children", buf, sizeof buf), "4");
    assert_string_equal(get_s(t->c, "parent-ops", buf, sizeof buf), "4");
    assert_string_equal(get_s(t->c, "grandchild", buf, sizeof buf), "g");
    for (int i = 0; i < NCHILD; i++) {
        char k[32];
        snprintf(k, sizeof k, "from-child-%d", i);
        assert_string_equal(get_s(t->c, k, buf, sizeof buf), "c");
    }
    /* The parent's reader slot survived its children: reads still work and
     * it is the only attached process again. */
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.processes, 1);
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(t->c, NULL, &r));
    assert_string_equal(get_s(t->c, "from-parent", buf, sizeof buf), "p");
}

/* A self-checking value: length derived from seq, every byte derived from
 * seq, seq stored at both ends. */
static size_t make_value(unsigned char *v, uint64_t seq)
{
    size_t len = 16 + (size_t)(seq * 2654435761u % 20000);
    memcpy(v, &seq, 8);
    for (size_t i = 8; i < len - 8; i++)
        v[i] = (unsigned char)(seq + i);
    memcpy(v + len - 8, &seq, 8);
    return len;
}

static bool value_ok(const unsigned char *v, size_t len)
{
    uint64_t a, b;
    if (len < 16)
        return false;
    memcpy(&a, v, 8);
    memcpy(&b, v + len - 8, 8);
    if (a != b || len != 16 + (size_t)(a * 2654435761u % 20000))
        return false;
    for (size_t i = 8; i < len - 8; i++)
        if (v[i] != (unsigned char)(a + i))
            return false;
    return true;
}

static void test_readers_never_see_torn_values(void **state)
{
    tctx *t = *state;
    enum { WRITERS = 2, READERS = 2, SETS = 4000 };
    lmc *c = open_cache(t, 64, 0);
    unsigned char v[20016];
    ASSERT_OK(lmc_set(c, "hot", 3, v, make_value(v, 1), 0));
    lmc_close(c);
    shared *s = shared_new();
    pid_t pids[WRITERS + READERS], parent = getpid();
    alarm(timeout_s(300));
    for (int p = 0; p < WRITERS + READERS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            child_dies_with_parent(parent);
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            unsigned char *buf = malloc(20016);
            CHILD_CHECK(buf);
            gate_wait(&s->gate);
            if (p < WRITERS) {
                for (uint64_t i = 0; i < SETS; i++) {
                    size_t n = make_value(buf, i * WRITERS + (uint64_t)p + 2);
                    CHILD_OK(lmc_set(h, "hot", 3, buf, n, 0));
                }
            } else {
                while (!atomic_load(&s->stop)) {
                    size_t n = 0;
                    CHILD_OK(lmc_get(h, "hot", 3, buf, 20016, &n));
                    if (!value_ok(buf, n))
                        atomic_fetch_add(&s->failures, 1);
                    atomic_fetch_add(&s->reads, 1);
                }
            }
            free(buf);
            lmc_close(h);
            _exit(0);
        }
    }
    gate_open_when(&s->gate, WRITERS + READERS);
    for (int p = 0; p < WRITERS; p++)
        wait_ok(pids[p]);
    atomic_store(&s->stop, 1);
    for (int p = WRITERS; p < WRITERS + READERS; p++)
        wait_ok(pids[p]);
    alarm(0);
    assert_int_equal(atomic_load(&s->failures), 0);
    assert_true(atomic_load(&s->reads) > 0);
    munmap(s, sizeof *s);
}

/* The writer of the kill test: batches of BATCH keys, all holding the same
 * generation, in one transaction each; the batch is large so that most of
 * the writer's time is spent inside transactions. */
enum { BATCH = 64, VSIZE = 3000 };

/*
 * Whether a write of the kill test failed only because a reader kept the
 * free pages pinned.  On a loaded machine the reader child can be kept off
 * the CPU in the middle of a get_many for longer than a write waits for it
 * (250 ms), while the writer fills the 64 MiB map with pages its snapshot
 * pins: LMC_ENOSPC is then the documented answer, and the write is tried
 * again.  Any other LMC_ENOSPC fails the test.
 */
static bool pinned_out(lmc *h, int rc)
{
    if (rc != LMC_ENOSPC)
        return false;
    const char *m = lmc_errmsg(h);
    return strstr(m, "stuck inside a read transaction") || strstr(m, "kept the free pages pinned");
}

static void killed_writer(const char *path, shared *s, uint64_t start)
{
    lmc *h = NULL;
    CHILD_OK(lmc_open(&h, path, NULL));
    lmc_item items[BATCH];
    char keys[BATCH][16];
    static char vals[BATCH][VSIZE];
    for (uint64_t gen = start;; gen++) {
        for (int i = 0; i < BATCH; i++) {
            snprintf(keys[i], sizeof keys[i], "batch/%02d", i);
            memset(vals[i], 'a' + (int)(gen % 26), VSIZE);
            snprintf(vals[i], 24, "%020llu", (unsigned long long)gen);
            items[i] = (lmc_item){keys[i], strlen(keys[i]), vals[i], VSIZE, LMC_TTL_NEVER};
        }
        int rc;
        while (pinned_out(h, rc = lmc_set_many(h, items, BATCH)))
            atomic_fetch_add(&s->pinned, 1);
        CHILD_OK(rc);
        while (pinned_out(h, rc = lmc_incr(h, "commits", 7, 1, NULL, LMC_TTL_NEVER)))
            atomic_fetch_add(&s->pinned, 1);
        CHILD_OK(rc);
        atomic_fetch_add(&s->progress, 1);
    }
}

/* What check_batch found: every key with one generation; none of the keys
 * (what a set_many that failed leaves: it removes every value it was to
 * replace, in one transaction); some of the keys, all of one generation
 * (what it leaves when even that transaction could not be done and it
 * removed them one by one, and was killed or failed part way); or anything
 * else. */
enum { BATCH_WHOLE = 0, BATCH_ABSENT = 1, BATCH_PARTIAL = 2, BATCH_TORN = 3 };

typedef struct batch_check {
    char first[21]; /* generation of the first key present */
    size_t first_at;
    size_t missing_at; /* the first key missing */
    int n, missing;
    char why[200]; /* the first thing wrong, empty if nothing is */
} batch_check;

static int batch_cb(void *arg, size_t i, const lmc_value *v)
{
    batch_check *b = arg;
    if (!v) {
        if (b->missing++ == 0)
            b->missing_at = i;
        return 0;
    }
    const char *d = v->data;
    if (v->len != VSIZE) {
        if (!b->why[0])
            snprintf(b->why, sizeof b->why, "batch/%02zu holds %zu bytes, not %d", i, v->len,
                     VSIZE);
        return 0;
    }
    if (b->n++ == 0) {
        memcpy(b->first, d, 20);
        b->first_at = i;
    } else if (memcmp(b->first, d, 20) != 0 && !b->why[0]) {
        snprintf(b->why, sizeof b->why, "batch/%02zu holds generation %.20s, batch/%02zu %s", i,
                 d, b->first_at, b->first);
    }
    for (size_t j = 24; j < VSIZE; j++)
        if (d[j] != d[VSIZE - 1]) {
            if (!b->why[0])
                snprintf(b->why, sizeof b->why, "batch/%02zu (generation %.20s) has byte %zu "
                         "%#x where its filler is %#x", i, d, j, (unsigned char)d[j],
                         (unsigned char)d[VSIZE - 1]);
            break;
        }
    return 0;
}

/* Every batch key holds the same generation: a transaction landed whole or
 * not at all.  Read in one snapshot with get_many.  Returns a BATCH_* value
 * or the read's error; why names the first key that is wrong and what it
 * holds, or the error's message. */
static int check_batch(lmc *h, char *why, size_t cap)
{
    lmc_key keys[BATCH];
    char names[BATCH][16];
    for (int i = 0; i < BATCH; i++) {
        snprintf(names[i], sizeof names[i], "batch/%02d", i);
        keys[i] = (lmc_key){names[i], strlen(names[i])};
    }
    batch_check b;
    memset(&b, 0, sizeof b);
    int rc = lmc_get_many(h, keys, BATCH, batch_cb, &b);
    if (rc) {
        snprintf(why, cap, "lmc_get_many: %s (%s)", lmc_errname(rc), lmc_errmsg(h));
        return rc;
    }
    if (b.missing == BATCH) {
        snprintf(why, cap, "none of the %d keys is there, and no write found the map full",
                 BATCH);
        return BATCH_ABSENT;
    }
    if (b.why[0]) {
        snprintf(why, cap, "%s (%d of the %d keys missing)", b.why, b.missing, BATCH);
        return BATCH_TORN;
    }
    if (b.missing) {
        snprintf(why, cap, "batch/%02zu is missing, batch/%02zu holds generation %s (%d of the "
                 "%d keys missing), and no write found the map full", b.missing_at, b.first_at,
                 b.first, b.missing, BATCH);
        return BATCH_PARTIAL;
    }
    why[0] = 0;
    return BATCH_WHOLE;
}

/* The batch is whole, or absent or partly removed after a set_many that
 * failed: that needs a write that found the map full, which the cache counts
 * before it gives up (a counter a killed writer leaves behind, unlike a count
 * of the test's).  A mix of generations is never right. */
static bool batch_ok(lmc *h, int r)
{
    if (r == BATCH_WHOLE)
        return true;
    lmc_stat st;
    return (r == BATCH_ABSENT || r == BATCH_PARTIAL) && lmc_stats(h, &st) == 0 &&
           st.counters.map_full > 0;
}

static void test_sigkill_writers_mid_transaction(void **state)
{
    tctx *t = *state;
    enum { KILLS = 120 };
    t->c = open_cache(t, 64, 0);
    /* Seed one complete batch. */
    {
        shared *seed = shared_new();
        pid_t p = fork();
        if (p == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            lmc_item items[BATCH];
            char keys[BATCH][16];
            static char v[VSIZE];
            memset(v, 'a', VSIZE);
            snprintf(v, 24, "%020llu", 0ULL);
            for (int i = 0; i < BATCH; i++) {
                snprintf(keys[i], sizeof keys[i], "batch/%02d", i);
                items[i] = (lmc_item){keys[i], strlen(keys[i]), v, VSIZE, 0};
            }
            CHILD_OK(lmc_set_many(h, items, BATCH));
            _exit(0);
        }
        wait_ok(p);
        munmap(seed, sizeof *seed);
    }
    /* A reader process runs through all the kills and checks every
     * snapshot it reads. */
    shared *s = shared_new();
    pid_t parent = getpid(), reader = fork();
    assert_true(reader >= 0);
    if (reader == 0) {
        child_dies_with_parent(parent);
        lmc *h = NULL;
        CHILD_OK(lmc_open(&h, t->path, NULL));
        while (!atomic_load(&s->stop)) {
            char why[300];
            int rc = check_batch(h, why, sizeof why);
            if (!batch_ok(h, rc) && atomic_fetch_add(&s->failures, 1) == 0)
                fprintf(stderr, "reader: batch torn: %s\n", why);
            atomic_fetch_add(&s->reads, 1);
        }
        lmc_close(h);
        _exit(0);
    }
    alarm(timeout_s(600));
    unsigned seed = (unsigned)getpid();
    for (int k = 0; k < KILLS; k++) {
        long before = atomic_load(&s->progress);
        pid_t w = fork();
        assert_true(w >= 0);
        if (w == 0)
            killed_writer(t->path, s, (uint64_t)k * 1000000 + 1);
        /* Let it commit between 1 and 4 batches, then kill it at an
         * arbitrary point of the next one; progress-driven, not timed. */
        long target = before + 1 + (long)(rand_r(&seed) % 4);
        int64_t deadline = mono_ms() + (int64_t)timeout_s(30) * 1000;
        while (atomic_load(&s->progress) < target) {
            if (mono_ms() > deadline)
                fail_msg("writer %d made no progress", k);
            sched_yield();
        }
        for (int spin = rand_r(&seed) % 300000; spin > 0; spin--)
            __asm__ volatile("" ::: "memory");
        assert_int_equal(kill(w, SIGKILL), 0);
        int st;
        assert_int_equal(waitpid(w, &st, 0), w);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        /* The cache is consistent and immediately writable. */
        char why[300];
        if (!batch_ok(t->c, check_batch(t->c, why, sizeof why)))
            fail_msg("batch torn after kill %d: %s", k, why);
        int rc;
        while (pinned_out(t->c, rc = lmc_incr(t->c, "parent-writes", 13, 1, NULL, 0)))
            atomic_fetch_add(&s->pinned, 1);
        ASSERT_OK(rc);
    }
    atomic_store(&s->stop, 1);
    wait_ok(reader);
    alarm(0);
    assert_int_equal(atomic_load(&s->failures), 0);
    assert_true(atomic_load(&s->reads) > 0);
    char buf[32];
    assert_string_equal(get_s(t->c, "parent-writes", buf, sizeof buf), "120");
    /* Counters are readable and the killed writers' commits are counted;
     * their stale reader slots are cleared by a sweep. */
    lmc_stat st = stats_of(t->c);
    assert_true(st.counters.incrs >= (uint64_t)atomic_load(&s->progress));
    /* A write retried for a stuck reader waited for it first. */
    assert_true(atomic_load(&s->pinned) == 0 || st.counters.pin_waits > 0);
    assert_int_equal(st.processes, 1);
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(t->c, NULL, &r));
    st = stats_of(t->c);
    assert_true(st.readers <= 2);
    munmap(s, sizeof *s);
}

static void test_prefix_delete_while_others_read(void **state)
{
    tctx *t = *state;
    enum { NP = 20000, NQ = 1000, READERS = 2 };
    t->c = open_cache(t, 64, 0);
    lmc_item items[500];
    char keys[500][32];
    for (int base = 0; base < NP + NQ; base += 500) {
        for (int i = 0; i < 500; i++) {
            int n = base + i;
            if (n < NP)
                snprintf(keys[i], sizeof keys[i], "p/%06d", n);
            else
                snprintf(keys[i], sizeof keys[i], "q/%06d", n - NP);
            items[i] = (lmc_item){keys[i], strlen(keys[i]), keys[i], strlen(keys[i]), 0};
        }
        ASSERT_OK(lmc_set_many(t->c, items, 500));
    }
    shared *s = shared_new();
    pid_t pids[READERS], parent = getpid();
    for (int r = 0; r < READERS; r++) {
        pids[r] = fork();
        assert_true(pids[r] >= 0);
        if (pids[r] == 0) {
            child_dies_with_parent(parent);
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            unsigned seed = (unsigned)getpid();
            gate_wait(&s->gate);
            while (!atomic_load(&s->stop)) {
                char k[32], b[32];
                size_t n;
                snprintf(k, sizeof k, "q/%06d", rand_r(&seed) % NQ);
                CHILD_OK(lmc_get(h, k, strlen(k), b, sizeof b, &n)); /* always there */
                CHILD_CHECK(n == strlen(k) && memcmp(b, k, n) == 0);
                snprintf(k, sizeof k, "p/%06d", rand_r(&seed) % NP);
                int rc = lmc_get(h, k, strlen(k), b, sizeof b, &n);
                CHILD_CHECK(rc == LMC_OK || rc == LMC_NOTFOUND);
                CHILD_CHECK(rc != LMC_OK || (n == strlen(k) && memcmp(b, k, n) == 0));
                atomic_fetch_add(&s->reads, 1);
            }
            lmc_close(h);
            _exit(0);
        }
    }
    gate_open_when(&s->gate, READERS);
    uint64_t removed = 0;
    ASSERT_OK(lmc_delete_prefix(t->c, "p/", 2, &removed));
    assert_int_equal(removed, NP);
    /* Let the readers run on the emptied prefix for a while too. */
    long reads = atomic_load(&s->reads);
    int64_t deadline = mono_ms() + (int64_t)timeout_s(30) * 1000;
    while (atomic_load(&s->reads) < reads + 1000 && mono_ms() < deadline)
        sched_yield();
    atomic_store(&s->stop, 1);
    for (int r = 0; r < READERS; r++)
        wait_ok(pids[r]);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, NQ);
    assert_true(st.counters.hits >= (uint64_t)atomic_load(&s->reads));
    munmap(s, sizeof *s);
}

static void test_counters_sum_over_processes(void **state)
{
    tctx *t = *state;
    enum { NCHILD = 3, GETS = 100 };
    t->c = open_cache(t, 8, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pids[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            char b[8];
            size_t n;
            for (int j = 0; j < GETS; j++)
                CHILD_OK(lmc_get(h, "k", 1, b, sizeof b, &n));
            CHILD_CHECK(lmc_get(h, "nope", 4, b, sizeof b, &n) == LMC_NOTFOUND);
            char x = 1;
            CHILD_CHECK(write(up[1], &x, 1) == 1);
            CHILD_CHECK(read(down[0], &x, 1) == 1);
            lmc_close(h);
            _exit(0);
        }
    }
    char x;
    for (int i = 0; i < NCHILD; i++)
        assert_int_equal(read(up[0], &x, 1), 1);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.processes, NCHILD + 1);
    assert_int_equal(st.counters.hits, NCHILD * GETS);
    assert_int_equal(st.counters.misses, NCHILD);
    lmc_proc_stat ps[8];
    size_t np = 0;
    ASSERT_OK(lmc_stats_processes(t->c, ps, 8, &np));
    assert_int_equal(np, NCHILD + 1);
    int children_seen = 0;
    for (size_t i = 0; i < np; i++) {
        for (int j = 0; j < NCHILD; j++)
            if (ps[i].pid == pids[j]) {
                children_seen++;
                assert_int_equal(ps[i].counters.hits, GETS);
                assert_int_equal(ps[i].counters.misses, 1);
            }
    }
    assert_int_equal(children_seen, NCHILD);
    for (int i = 0; i < NCHILD; i++)
        assert_int_equal(write(down[1], &x, 1), 1);
    for (int i = 0; i < NCHILD; i++)
        wait_ok(pids[i]);
    /* Gone processes leave their counts behind: totals never go back. */
    st = stats_of(t->c);
    assert_int_equal(st.processes, 1);
    assert_int_equal(st.counters.hits, NCHILD * GETS);
    /* A new process reusing a slot starts its own figures from zero. */
    pid_t p = fork();
    if (p == 0) {
        lmc *h = NULL;
        CHILD_OK(lmc_open(&h, t->path, NULL));
        char b[8];
        size_t n;
        CHILD_OK(lmc_get(h, "k", 1, b, sizeof b, &n));
        lmc_proc_stat q[8];
        size_t nq = 0;
        CHILD_OK(lmc_stats_processes(h, q, 8, &nq));
        bool found = false;
        for (size_t i = 0; i < nq; i++)
            if (q[i].pid == getpid()) {
                found = true;
                CHILD_CHECK(q[i].counters.hits == 1);
            }
        CHILD_CHECK(found);
        lmc_close(h);
        _exit(0);
    }
    wait_ok(p);
    assert_int_equal(stats_of(t->c).counters.hits, NCHILD * GETS + 1);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
}

static void test_stale_reader_slots_are_cleared(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    char buf[8];
    get_s(t->c, "k", buf, sizeof buf);
    assert_int_equal(stats_of(t->c).readers, 1);
    /* Three processes take reader slots at the same time, then are killed:
     * opening clears stale slots too, so none may open after the kills. */
    int up[2];
    assert_int_equal(pipe(up), 0);
    pid_t pids[3];
    for (int i = 0; i < 3; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            lmc *h = NULL;
            CHILD_OK(lmc_open(&h, t->path, NULL));
            char b[8];
            size_t n;
            CHILD_OK(lmc_get(h, "k", 1, b, sizeof b, &n));
            CHILD_CHECK(write(up[1], b, 1) == 1);
            pause();
            _exit(0);
        }
    }
    for (int i = 0; i < 3; i++) {
        char b;
        assert_int_equal(read(up[0], &b, 1), 1);
    }
    for (int i = 0; i < 3; i++) {
        int st;
        assert_int_equal(kill(pids[i], SIGKILL), 0);
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFSIGNALED(st));
    }
    close(up[0]);
    close(up[1]);
    /* The dead readers' slots are still in LMDB's table, but the gauges
     * tell them from the live one. */
    lmc_stat before = stats_of(t->c);
    assert_int_equal(before.readers, 1);
    assert_int_equal(before.readers_stale, 3);
    lmc_sweep_result r;
    ASSERT_OK(lmc_sweep(t->c, NULL, &r));
    assert_int_equal(r.readers_cleared, 3);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.readers, 1);
    assert_int_equal(st.readers_stale, 0);
    assert_int_equal(st.counters.readers_cleared, 3);
    assert_int_equal(st.processes, 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_incr_from_8_processes),
        T(test_add_race_has_one_winner),
        T(test_handle_inherited_across_fork),
        T(test_readers_never_see_torn_values),
        T(test_sigkill_writers_mid_transaction),
        T(test_prefix_delete_while_others_read),
        T(test_counters_sum_over_processes),
        T(test_stale_reader_slots_are_cleared),
    };
    return cmocka_run_group_tests_name("multiproc", tests, NULL, NULL);
}
