/*
 * test_fullfs.c - a cache never crashes a process when its filesystem is
 * full.  lmc and LMDB map data.mdb, lock.mdb, stats and recency shared, and on
 * tmpfs a page of such a mapping that the filesystem cannot supply is a
 * SIGBUS in whichever process touches it first.  So every one of those files
 * must have its storage when an open returns, or the open fails with
 * LMC_ENOSPC and leaves nothing behind; and a cache whose files are backed
 * keeps working, without a signal, when another program fills the
 * filesystem afterwards.
 *
 * The tests on a full filesystem mount small tmpfs instances of their own,
 * in a private mount namespace (so that nothing stays mounted if a test
 * dies); they need root and are skipped, saying so, where mounting is not
 * permitted.
 */
#include "util.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

static const char *const names[] = {"data.mdb", "lock.mdb", "stats", "recency"};
#define NNAMES (sizeof names / sizeof names[0])

/* Fail unless every file of the cache at dir has storage for all its bytes. */
static void expect_backed(const char *dir)
{
    for (size_t i = 0; i < NNAMES; i++) {
        char p[400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (stat(p, &st) != 0)
            fail_msg("stat %s: %s", p, strerror(errno));
        if ((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size)
            fail_msg("%s has holes: %lld of %lld bytes have storage", p,
                     (long long)st.st_blocks * 512, (long long)st.st_size);
    }
}

/* Whether any file of the cache at dir has holes. */
static bool any_sparse(const char *dir)
{
    for (size_t i = 0; i < NNAMES; i++) {
        char p[400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (stat(p, &st) == 0 && (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size)
            return true;
    }
    return false;
}

/*
 * Make the files of a closed cache as sparse as lmc versions before the
 * fix left them, without changing what they hold: punch out the pages that
 * hold only zeros (never-used stats slots, reader slots, recency cells, free
 * pages at the end of the map).  Punched pages read back as zeros.
 */
static void make_sparse(const char *dir)
{
    for (size_t i = 0; i < NNAMES; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        int fd = open(p, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        static unsigned char pg[4096], zero[4096];
        for (off_t off = 0; off + 4096 <= st.st_size; off += 4096) {
            assert_int_equal(pread(fd, pg, 4096, off), 4096);
            if (memcmp(pg, zero, 4096) == 0)
                assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                                           4096), 0);
        }
        close(fd);
    }
    assert_true(any_sparse(dir));
}

static lmc *open_at(const char *path, uint64_t map_size, unsigned flags, int *rc)
{
    lmc_options o = {.map_size = map_size, .flags = flags};
    lmc *c = NULL;
    *rc = lmc_open(&c, path, &o);
    return c;
}

/* ------------------------------------------------------------------------ */
/* Small tmpfs mounts                                                       */
/* ------------------------------------------------------------------------ */

static int ns_state; /* 0 unknown, 1 private namespace, -1 cannot mount */

/* Mount a tmpfs of size (mount's syntax, "2M") on dir; false (and a message
 * saying why) when this process may not mount. */
static bool mount_tmpfs(const char *dir, const char *size)
{
    if (ns_state == 0) {
        ns_state = -1;
        if (unshare(CLONE_NEWNS) != 0)
            print_message("skipping: unshare(CLONE_NEWNS): %s (these tests need root to mount "
                          "a small tmpfs)\n", strerror(errno));
        else if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
            print_message("skipping: making mounts private: %s\n", strerror(errno));
        else
            ns_state = 1;
    }
    if (ns_state < 0)
        return false;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", dir, strerror(errno));
    char opts[64];
    snprintf(opts, sizeof opts, "size=%s,mode=0700", size);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) != 0) {
        print_message("skipping: mount -t tmpfs -o %s tmpfs %s: %s\n", opts, dir,
                      strerror(errno));
        return false;
    }
    return true;
}

static void unmount(const char *dir)
{
    umount2(dir, MNT_DETACH);
}

/* Fill the filesystem of dir completely, as another program could. */
static void fill_up(const char *dir)
{
    char p[400];
    snprintf(p, sizeof p, "%s/filler", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char block[4096];
    memset(block, 'f', sizeof block);
    while (write(fd, block, sizeof block) > 0)
        ;
    /* The last partial page, if any. */
    while (write(fd, block, 1) > 0)
        ;
    close(fd);
    struct statvfs sv;
    assert_int_equal(statvfs(dir, &sv), 0);
    assert_int_equal(sv.f_bavail, 0);
}

static uint64_t free_bytes(const char *dir)
{
    struct statvfs sv;
    assert_int_equal(statvfs(dir, &sv), 0);
    return (uint64_t)sv.f_bavail * sv.f_frsize;
}

/*
 * A worker as in the issue: gets and sets of keys 0..4999 with values of 0
 * to 299 bytes, ops operations in all.  Sets may fail with LMC_ENOSPC when
 * the map is full and eviction cannot help; what must never happen is a
 * signal.  Exits 0, or 4 if a call failed otherwise.
 */
static void worker(const char *path, int ops, int seed)
{
    lmc *c = NULL;
    lmc_options o = {.flags = LMC_OPEN_NOCREATE};
    CHILD_OK(lmc_open(&c, path, &o));
    char k[32], v[300], b[400];
    memset(v, 'x', sizeof v);
    for (int i = 0; i < ops; i++) {
        size_t n;
        snprintf(k, sizeof k, "k%d", (i * 7 + seed) % 5000);
        if (i & 1) {
            int rc = lmc_set(c, k, strlen(k), v, (size_t)(i % 300), 0);
            CHILD_CHECK(rc == LMC_OK || rc == LMC_ENOSPC);
        } else {
            int rc = lmc_get(c, k, strlen(k), b, sizeof b, &n);
            CHILD_CHECK(rc == LMC_OK || rc == LMC_NOTFOUND);
        }
    }
    lmc_stat st;
    CHILD_OK(lmc_stats(c, &st));
    lmc_close(c);
    _exit(0);
}

/* Fork nproc workers and wait for all of them; fail, naming the signal,
 * if any of them did not exit 0.  The children die of their signals (cmocka's
 * handlers, inherited across fork, would otherwise catch them and run the
 * rest of the tests in the child), and a child still running at the
 * deadline is killed, so that a failure leaves no process behind. */
static void run_workers(const char *path, int nproc, int ops)
{
    pid_t pids[64];
    int status[64];
    assert_true(nproc <= 64);
    for (int p = 0; p < nproc; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            signal(SIGBUS, SIG_DFL);
            signal(SIGSEGV, SIG_DFL);
            worker(path, ops, p);
        }
    }
    int64_t deadline = mono_ms() + (int64_t)timeout_s(120) * 1000;
    int left = nproc;
    for (int p = 0; p < nproc; p++)
        status[p] = -1;
    while (left > 0) {
        for (int p = 0; p < nproc; p++)
            if (status[p] == -1 && waitpid(pids[p], &status[p], WNOHANG) == pids[p])
                left--;
            else if (status[p] == -1 && mono_ms() > deadline)
                kill(pids[p], SIGKILL);
        if (left > 0)
            usleep(1000);
    }
    for (int p = 0; p < nproc; p++) {
        int st = status[p];
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("worker %d of %d ended with %s %d%s", p + 1, nproc,
                     WIFEXITED(st) ? "status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                     WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS ? " (SIGBUS)" : "");
    }
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

/* After any open, read-write or read-only, every file has all its storage:
 * also the files that an earlier lmc version left sparse. */
static void test_every_file_is_backed_after_open(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "a", "1", 0));
    expect_backed(t->path);
    lmc_close(t->c);
    t->c = NULL;

    /* An older version's cache, opened read-only (lmc-stats) ... */
    make_sparse(t->path);
    t->c = open_cache(t, 4, LMC_OPEN_RDONLY);
    expect_backed(t->path);
    char buf[8];
    assert_string_equal(get_s(t->c, "a", buf, sizeof buf), "1");
    lmc_close(t->c);
    t->c = NULL;

    /* ... and read-write, by a worker. */
    make_sparse(t->path);
    t->c = open_cache(t, 4, 0);
    expect_backed(t->path);
    assert_string_equal(get_s(t->c, "a", buf, sizeof buf), "1");

    /* A lock file grown by a first opener that wants more reader slots than
     * the file has is backed over its new size too. */
    lmc_close(t->c);
    t->c = NULL;
    lmc_options o = {.max_readers = 3000};
    ASSERT_OK(lmc_open(&t->c, t->path, &o));
    char p[400];
    struct stat st;
    snprintf(p, sizeof p, "%s/lock.mdb", t->path);
    assert_int_equal(stat(p, &st), 0);
    assert_true(st.st_size > 3000 * 64);
    expect_backed(t->path);
}

/* The first case: on an 8 MiB tmpfs a cache of map size 8100K fits
 * data.mdb but not the other files.  Its open must fail with LMC_ENOSPC and
 * leave nothing behind; a cache that fits must serve a worker doing 20,000
 * gets and sets without a SIGBUS. */
static void test_open_that_cannot_reserve_fails_cleanly(void **state)
{
    tctx *t = *state;
    char mnt[200], path[300];
    snprintf(mnt, sizeof mnt, "%s/mnt", t->dir);
    if (!mount_tmpfs(mnt, "8M"))
        skip();
    snprintf(path, sizeof path, "%s/cache", mnt);
    uint64_t before = free_bytes(mnt);
    int rc;
    lmc *c = open_at(path, 8100u << 10, 0, &rc);
    if (rc != LMC_ENOSPC)
        fail_msg("open of a cache larger than its filesystem returned %s, want LMC_ENOSPC (%s)",
                 lmc_errname(rc), lmc_errmsg(NULL));
    assert_null(c);
    if (!strstr(lmc_errmsg(NULL), "no room"))
        fail_msg("unclear message: %s", lmc_errmsg(NULL));
    /* Nothing half-made: the directory it created is gone, the space free. */
    struct stat st;
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(free_bytes(mnt), before);

    /* In a directory that exists already, the directory stays, empty. */
    assert_int_equal(mkdir(path, 0700), 0);
    c = open_at(path, 8100u << 10, 0, &rc);
    ASSERT_RC(rc, LMC_ENOSPC);
    char p[400];
    for (size_t i = 0; i < NNAMES; i++) {
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (lstat(p, &st) == 0)
            fail_msg("%s was left behind by a failed open", p);
    }
    assert_int_equal(free_bytes(mnt), before);
    /* And a later open with a map that fits works. */
    c = open_at(path, 6u << 20, 0, &rc);
    ASSERT_OK(rc);
    expect_backed(path);
    lmc_close(c);
    run_workers(path, 1, 20000);
    unmount(mnt);
}

/* The second case: on a 3 MiB tmpfs another program fills the rest
 * after the cache was made.  Workers open it and run gets and sets (20,000
 * in all, in 8 processes), and read-only opens work, without a signal. */
static void test_workers_survive_a_full_tmpfs(void **state)
{
    tctx *t = *state;
    char mnt[200], path[300];
    snprintf(mnt, sizeof mnt, "%s/mnt", t->dir);
    if (!mount_tmpfs(mnt, "3M"))
        skip();
    snprintf(path, sizeof path, "%s/cache", mnt);
    int rc;
    lmc *c = open_at(path, 1u << 20, 0, &rc);
    ASSERT_OK(rc);
    ASSERT_OK(put_s(c, "before", "full", 0));
    lmc_close(c);
    fill_up(mnt);

    run_workers(path, 8, 2500);
    run_workers(path, 1, 20000);
    expect_backed(path);
    c = open_at(path, 0, LMC_OPEN_RDONLY, &rc);
    ASSERT_OK(rc);
    lmc_stat st = stats_of(c);
    assert_true(st.counters.gets > 0);
    lmc_close(c);
    unmount(mnt);
}

/* A cache that an older version left sparse, on a full tmpfs: a read-write
 * open cannot back it, so it fails with LMC_ENOSPC instead of handing out a
 * handle that would crash; the cache is untouched and opens again once
 * there is room. */
static void test_sparse_cache_on_a_full_tmpfs(void **state)
{
    tctx *t = *state;
    char mnt[200], path[300];
    snprintf(mnt, sizeof mnt, "%s/mnt", t->dir);
    if (!mount_tmpfs(mnt, "3M"))
        skip();
    snprintf(path, sizeof path, "%s/cache", mnt);
    int rc;
    lmc *c = open_at(path, 1u << 20, 0, &rc);
    ASSERT_OK(rc);
    ASSERT_OK(put_s(c, "kept", "yes", 0));
    lmc_close(c);
    make_sparse(path);
    fill_up(mnt);

    c = open_at(path, 0, 0, &rc);
    ASSERT_RC(rc, LMC_ENOSPC);
    assert_null(c);
    c = open_at(path, 0, LMC_OPEN_RDONLY, &rc);
    ASSERT_RC(rc, LMC_ENOSPC);
    assert_null(c);
    char p[400];
    snprintf(p, sizeof p, "%s/filler", mnt);
    assert_int_equal(unlink(p), 0);
    c = open_at(path, 0, 0, &rc);
    ASSERT_OK(rc);
    expect_backed(path);
    char buf[8];
    assert_string_equal(get_s(c, "kept", buf, sizeof buf), "yes");
    lmc_close(c);
    unmount(mnt);
}

/* Unmount what a failed test left mounted before its directory is removed. */
static int teardown_space(void **state)
{
    tctx *t = *state;
    if (t) {
        char mnt[200];
        snprintf(mnt, sizeof mnt, "%s/mnt", t->dir);
        unmount(mnt);
    }
    return teardown_dir(state);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_space)
    const struct CMUnitTest tests[] = {
        T(test_every_file_is_backed_after_open),
        T(test_open_that_cannot_reserve_fails_cleanly),
        T(test_workers_survive_a_full_tmpfs),
        T(test_sparse_cache_on_a_full_tmpfs),
    };
    return cmocka_run_group_tests_name("fullfs", tests, NULL, NULL);
}
