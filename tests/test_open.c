/*
 * test_open.c - what lmc_open refuses and what it repairs: symbolic links,
 * objects owned by another user or writable by others, garbage, truncated,
 * foreign and other-version files (LMC_EPERM / LMC_ECORRUPT / LMC_EVERSION,
 * each with a message naming the path), FIFOs and directories where files of
 * the cache should be (LMC_ECORRUPT, never a hang), LMC_OPEN_RESET
 * recreating or emptying a cache, modes that no umask changes, a missing
 * parent directory, the reopen of a child after fork that keeps to its
 * parent's directory, and the boot-id rule that wipes a disk cache after an
 * unclean reboot.
 */
#include "util.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/vfs.h>
#include <linux/magic.h>

static void file_path(const tctx *t, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", t->path, name);
}

static int try_open(tctx *t, unsigned flags)
{
    lmc_options o = {.map_size = 4u << 20, .flags = flags};
    lmc *c = NULL;
    int rc = lmc_open(&c, t->path, &o);
    if (rc == 0)
        t->c = c;
    else
        assert_null(c);
    return rc;
}

/* Make a cache with a few entries and close it. */
static void make_cache(tctx *t, unsigned map_mib, int entries)
{
    lmc *c = open_cache(t, map_mib, 0);
    char k[32], v[200];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < entries; i++) {
        snprintf(k, sizeof k, "key%06d", i);
        ASSERT_OK(lmc_set(c, k, strlen(k), v, sizeof v, 0));
    }
    lmc_close(c);
}

static void expect_msg(const char *needle)
{
    if (!strstr(lmc_errmsg(NULL), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", lmc_errmsg(NULL), needle);
}

static void test_symlinks_are_refused(void **state)
{
    tctx *t = *state;
    char real[256];
    snprintf(real, sizeof real, "%s/real", t->dir);
    assert_int_equal(mkdir(real, 0700), 0);
    assert_int_equal(symlink(real, t->path), 0);
    ASSERT_RC(try_open(t, 0), LMC_EPERM);
    expect_msg("symbolic link");
    expect_msg(t->path);
    assert_int_equal(unlink(t->path), 0);
    /* A symlinked file inside a good directory. */
    make_cache(t, 4, 1);
    char p[256], target[256];
    const char *names[] = {"stats", "data.mdb", "lock.mdb", "recency"};
    for (size_t i = 0; i < 4; i++) {
        file_path(t, names[i], p, sizeof p);
        snprintf(target, sizeof target, "%s/moved", t->dir);
        assert_int_equal(rename(p, target), 0);
        assert_int_equal(symlink(target, p), 0);
        ASSERT_RC(try_open(t, 0), LMC_EPERM);
        expect_msg(names[i]);
        ASSERT_RC(try_open(t, LMC_OPEN_RDONLY), LMC_EPERM);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(rename(target, p), 0);
    }
    ASSERT_OK(try_open(t, 0));
}

static void test_path_that_is_a_file(void **state)
{
    tctx *t = *state;
    int fd = open(t->path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    ASSERT_RC(try_open(t, 0), LMC_EPERM);
    expect_msg("not a directory");
}

static void test_writable_by_others_is_refused(void **state)
{
    tctx *t = *state;
    make_cache(t, 4, 1);
    assert_int_equal(chmod(t->path, 0777), 0);
    ASSERT_RC(try_open(t, 0), LMC_EPERM);
    expect_msg("writable by others");
    assert_int_equal(chmod(t->path, 0770), 0);
    ASSERT_RC(try_open(t, 0), LMC_EPERM);
    expect_msg("group-writable");
    /* Asking for group sharing makes a group-writable directory fine. */
    lmc_options o = {.mode = 0660};
    ASSERT_OK(lmc_open(&t->c, t->path, &o));
    lmc_close(t->c);
    t->c = NULL;
    assert_int_equal(chmod(t->path, 0700), 0);
    char p[256];
    file_path(t, "stats", p, sizeof p);
    assert_int_equal(chmod(p, 0606), 0);
    ASSERT_RC(try_open(t, 0), LMC_EPERM);
    expect_msg("stats");
    assert_int_equal(chmod(p, 0600), 0);
    ASSERT_OK(try_open(t, 0));
}

static void test_foreign_owner_is_refused(void **state)
{
    tctx *t = *state;
    if (geteuid() != 0)
        skip(); /* only root can give files away */
    make_cache(t, 4, 1);
    assert_int_equal(chown(t->path, 65534, 65534), 0);
    ASSERT_RC(try_open(t, 0), LMC_EPERM);
    expect_msg("owned by uid 65534");
    /* Group sharing trusts another owner only if the group is ours. */
    lmc_options o = {.mode = 0660};
    lmc *c = NULL;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EPERM);
    assert_int_equal(chown(t->path, 65534, getegid()), 0);
    ASSERT_OK(lmc_open(&c, t->path, &o));
    lmc_close(c);
    assert_int_equal(chown(t->path, 0, 0), 0);
    char p[256];
    file_path(t, "data.mdb", p, sizeof p);
    assert_int_equal(chown(p, 65534, 65534), 0);
    ASSERT_RC(try_open(t, 0), LMC_EPERM);
    expect_msg("data.mdb");
    assert_int_equal(chown(p, 0, 0), 0);
    ASSERT_OK(try_open(t, 0));
}

static void write_file(const char *p, const void *data, size_t n)
{
    int fd = open(p, O_WRONLY | O_TRUNC | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

static void expect_corrupt_then_reset(tctx *t, int want, const char *needle)
{
    ASSERT_RC(try_open(t, 0), want);
    expect_msg(needle);
    ASSERT_RC(try_open(t, LMC_OPEN_RDONLY), want);
    /* LMC_OPEN_RESET wipes and recreates: an empty, working cache. */
    ASSERT_OK(try_open(t, LMC_OPEN_RESET));
    char buf[8];
    assert_null(get_s(t->c, "key000000", buf, sizeof buf));
    ASSERT_OK(put_s(t->c, "fresh", "yes", 0));
    assert_string_equal(get_s(t->c, "fresh", buf, sizeof buf), "yes");
    assert_int_equal(stats_of(t->c).entries, 1);
    lmc_close(t->c);
    t->c = NULL;
    ASSERT_OK(try_open(t, 0));
    lmc_close(t->c);
    t->c = NULL;
}

static void test_garbage_data_file(void **state)
{
    tctx *t = *state;
    make_cache(t, 4, 10);
    char p[256], junk[9000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    file_path(t, "data.mdb", p, sizeof p);
    write_file(p, junk, sizeof junk);
    expect_corrupt_then_reset(t, LMC_ECORRUPT, "not an LMDB file");
    /* Shorter than two meta pages. */
    write_file(p, junk, 100);
    expect_corrupt_then_reset(t, LMC_ECORRUPT, "data.mdb");
}

static void test_truncated_data_file(void **state)
{
    tctx *t = *state;
    make_cache(t, 8, 5000); /* about 1.2 MB of pages in use */
    char p[256];
    file_path(t, "data.mdb", p, sizeof p);
    assert_int_equal(truncate(p, 64 * 1024), 0);
    expect_corrupt_then_reset(t, LMC_ECORRUPT, "truncated");
}

static void raw_env(const char *path, MDB_env **env, MDB_txn **txn)
{
    assert_int_equal(mdb_env_create(env), 0);
    mdb_env_set_maxdbs(*env, 4);
    assert_int_equal(mdb_env_open(*env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(*env, NULL, 0, txn), 0);
}

static void test_foreign_lmdb_environment(void **state)
{
    tctx *t = *state;
    assert_int_equal(mkdir(t->path, 0700), 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_env(t->path, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {3, (void *)"foo"}, v = {3, (void *)"bar"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    expect_corrupt_then_reset(t, LMC_ECORRUPT, "not an lmc cache");
}

static void raw_meta_put(const char *path, const char *name, const void *val, size_t n)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_env(path, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {strlen(name), (void *)(uintptr_t)name}, v = {n, (void *)(uintptr_t)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_other_format_version(void **state)
{
    tctx *t = *state;
    make_cache(t, 4, 3);
    uint32_t fmt = 99;
    raw_meta_put(t->path, "format", &fmt, sizeof fmt);
    ASSERT_RC(try_open(t, 0), LMC_EVERSION);
    expect_msg("LMC_OPEN_RESET");
    expect_corrupt_then_reset(t, LMC_EVERSION, "format 99");
}

static void test_damaged_side_files(void **state)
{
    tctx *t = *state;
    make_cache(t, 4, 3);
    char p[256];
    file_path(t, "stats", p, sizeof p);
    write_file(p, "definitely not stats", 20);
    expect_corrupt_then_reset(t, LMC_ECORRUPT, "stats");
    file_path(t, "recency", p, sizeof p);
    write_file(p, "xyz", 3);
    expect_corrupt_then_reset(t, LMC_ECORRUPT, "recency");
    /* A stats file whose creator died before writing its header is simply
     * initialised (nobody can be using it). */
    char zeros[4096 * 2];
    memset(zeros, 0, sizeof zeros);
    file_path(t, "stats", p, sizeof p);
    write_file(p, zeros, sizeof zeros);
    ASSERT_OK(try_open(t, 0));
}

static void test_reset_recreates_an_unused_cache(void **state)
{
    tctx *t = *state;
    make_cache(t, 4, 100);
    lmc_options o = {.map_size = 16u << 20, .flags = LMC_OPEN_RESET};
    ASSERT_OK(lmc_open(&t->c, t->path, &o));
    lmc_info info;
    ASSERT_OK(lmc_info_get(t->c, &info));
    assert_int_equal(info.map_size, 16u << 20); /* recreated with the new size */
    assert_int_equal(stats_of(t->c).entries, 0);
}

static void test_reset_empties_a_cache_in_use_in_place(void **state)
{
    tctx *t = *state;
    make_cache(t, 4, 100);
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Another process keeps the cache open across the reset. */
        lmc *c = NULL;
        CHILD_OK(lmc_open(&c, t->path, NULL));
        char b = 1, buf[16];
        size_t n;
        CHILD_CHECK(write(up[1], &b, 1) == 1);
        CHILD_CHECK(read(down[0], &b, 1) == 1);
        /* It sees the emptied cache and the resetter's new entry. */
        CHILD_CHECK(lmc_get(c, "key000001", 9, buf, sizeof buf, &n) == LMC_NOTFOUND);
        CHILD_OK(lmc_get(c, "after", 5, buf, sizeof buf, &n));
        CHILD_OK(lmc_set(c, "from-child", 10, "1", 1, 0));
        lmc_close(c);
        _exit(0);
    }
    char b;
    assert_int_equal(read(up[0], &b, 1), 1);
    lmc_options o = {.map_size = 16u << 20, .flags = LMC_OPEN_RESET};
    ASSERT_OK(lmc_open(&t->c, t->path, &o));
    lmc_info info;
    ASSERT_OK(lmc_info_get(t->c, &info));
    assert_int_equal(info.map_size, 4u << 20); /* same files, same size */
    assert_int_equal(stats_of(t->c).entries, 0);
    ASSERT_OK(put_s(t->c, "after", "x", 0));
    assert_int_equal(write(down[1], &b, 1), 1);
    wait_ok(pid);
    char buf[8];
    assert_string_equal(get_s(t->c, "from-child", buf, sizeof buf), "1");
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
}

/* A directory on a disk filesystem for the boot-id tests, or NULL. */
static bool make_disk_dir(tctx *t, char *dir, size_t cap)
{
    const char *bases[] = {"/var/tmp", "/tmp", "."};
    for (size_t i = 0; i < 3; i++) {
        struct statfs s;
        if (statfs(bases[i], &s) != 0 || s.f_type == TMPFS_MAGIC || s.f_type == RAMFS_MAGIC)
            continue;
        snprintf(dir, cap, "%s/lmc-disk-XXXXXX", bases[i]);
        if (mkdtemp(dir)) {
            snprintf(t->path, sizeof t->path, "%s/cache", dir);
            return true;
        }
    }
    return false;
}

static void test_unclean_reboot_wipes_a_disk_cache(void **state)
{
    tctx *t = *state;
    char dir[256];
    if (!make_disk_dir(t, dir, sizeof dir))
        skip();
    make_cache(t, 4, 20);
    char buf[8];
    /* The last close recorded a clean shutdown: a new boot keeps it. */
    uint8_t clean = 1;
    raw_meta_put(t->path, "boot_id", "another-boot", 12);
    raw_meta_put(t->path, "clean", &clean, 1);
    lmc *c = open_cache(t, 4, 0);
    assert_int_equal(stats_of(c).entries, 20);
    lmc_info info;
    ASSERT_OK(lmc_info_get(c, &info));
    assert_int_equal(info.on_tmpfs, 0);
    lmc_close(c);
    /* Unclean shutdown before another boot: read-only refuses, read-write
     * wipes. */
    clean = 0;
    raw_meta_put(t->path, "boot_id", "another-boot", 12);
    raw_meta_put(t->path, "clean", &clean, 1);
    ASSERT_RC(try_open(t, LMC_OPEN_RDONLY), LMC_ECORRUPT);
    expect_msg("not shut down cleanly");
    c = open_cache(t, 4, 0);
    assert_int_equal(stats_of(c).entries, 0);
    assert_null(get_s(c, "key000001", buf, sizeof buf));
    ASSERT_OK(put_s(c, "new", "1", 0));
    lmc_close(c);
    /* Same boot, even unclean (a crashed process): kept. */
    c = open_cache(t, 4, 0);
    assert_string_equal(get_s(c, "new", buf, sizeof buf), "1");
    lmc_close(c);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------ */
/* Odd objects under lmc's names                                            */
/* ------------------------------------------------------------------------ */

static const char *const cache_files[] = {"data.mdb", "lock.mdb", "stats", "recency"};

/* lmc_open of t->path with flags, run in a child so that an open that hangs
 * fails the test instead of hanging it.  Returns the open's code; its
 * message goes to msg. */
static int open_in_child(tctx *t, unsigned flags, char *msg, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGALRM, SIG_DFL);
        alarm(timeout_s(10));
        lmc_options o = {.map_size = 4u << 20, .flags = flags};
        lmc *c = NULL;
        int rc = lmc_open(&c, t->path, &o);
        char out[600];
        memset(out, 0, sizeof out);
        memcpy(out, &rc, sizeof rc);
        snprintf(out + sizeof rc, sizeof out - sizeof rc, "%s", lmc_errmsg(NULL));
        CHILD_CHECK(write(fds[1], out, sizeof out) == (ssize_t)sizeof out);
        lmc_close(c);
        _exit(0);
    }
    close(fds[1]);
    char in[600];
    ssize_t n = read(fds[0], in, sizeof in);
    close(fds[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        fail_msg("lmc_open of %s (flags 0x%x) hung", t->path, flags);
    if (n != (ssize_t)sizeof in || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the child opening %s failed", t->path);
    int rc;
    memcpy(&rc, in, sizeof rc);
    snprintf(msg, cap, "%s", in + sizeof rc);
    return rc;
}

static void expect_in(const char *msg, const char *needle)
{
    if (!strstr(msg, needle))
        fail_msg("message \"%s\" does not mention \"%s\"", msg, needle);
}

/* After a reset: a working cache whose files are all regular files. */
static void expect_recovered(tctx *t)
{
    char p[256], buf[8];
    struct stat st;
    for (size_t i = 0; i < 4; i++) {
        file_path(t, cache_files[i], p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        if (!S_ISREG(st.st_mode))
            fail_msg("%s is still not a regular file after LMC_OPEN_RESET", p);
    }
    ASSERT_OK(try_open(t, 0));
    ASSERT_OK(put_s(t->c, "fresh", "yes", 0));
    assert_string_equal(get_s(t->c, "fresh", buf, sizeof buf), "yes");
    lmc_close(t->c);
    t->c = NULL;
}

/* A FIFO where a file of the cache should be: LMC_ECORRUPT at once for
 * read-only and read-write opens (a read-only open used to block forever in
 * open(2) waiting for a writer), and LMC_OPEN_RESET recovers. */
static void test_fifo_in_place_of_a_file(void **state)
{
    tctx *t = *state;
    char p[256], msg[600];
    for (size_t i = 0; i < 4; i++) {
        make_cache(t, 4, 3);
        file_path(t, cache_files[i], p, sizeof p);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkfifo(p, 0600), 0);
        ASSERT_RC(open_in_child(t, LMC_OPEN_RDONLY, msg, sizeof msg), LMC_ECORRUPT);
        expect_in(msg, "FIFO");
        expect_in(msg, p);
        ASSERT_RC(open_in_child(t, 0, msg, sizeof msg), LMC_ECORRUPT);
        expect_in(msg, "FIFO");
        ASSERT_RC(open_in_child(t, LMC_OPEN_RESET, msg, sizeof msg), LMC_OK);
        expect_recovered(t);
        rm_rf(t->path);
    }
    /* The cache directory itself a FIFO: refused, without blocking. */
    assert_int_equal(mkfifo(t->path, 0600), 0);
    ASSERT_RC(open_in_child(t, LMC_OPEN_RDONLY, msg, sizeof msg), LMC_EPERM);
    expect_in(msg, "not a directory");
    ASSERT_RC(open_in_child(t, 0, msg, sizeof msg), LMC_EPERM);
}

/* A directory where a file of the cache should be: LMC_ECORRUPT (it was
 * LMC_EIO), and LMC_OPEN_RESET removes it when it is empty (it used to fail
 * on it); a directory that holds something is left alone, with a message. */
static void test_directory_in_place_of_a_file(void **state)
{
    tctx *t = *state;
    char p[256], inner[300], msg[600];
    for (size_t i = 0; i < 4; i++) {
        make_cache(t, 4, 3);
        file_path(t, cache_files[i], p, sizeof p);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkdir(p, 0700), 0);
        ASSERT_RC(open_in_child(t, LMC_OPEN_RDONLY, msg, sizeof msg), LMC_ECORRUPT);
        expect_in(msg, "directory");
        expect_in(msg, p);
        ASSERT_RC(open_in_child(t, 0, msg, sizeof msg), LMC_ECORRUPT);
        ASSERT_RC(open_in_child(t, LMC_OPEN_RESET, msg, sizeof msg), LMC_OK);
        expect_recovered(t);

        /* Not empty: RESET refuses to remove what someone put there. */
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkdir(p, 0700), 0);
        snprintf(inner, sizeof inner, "%s/keep", p);
        write_file(inner, "x", 1);
        ASSERT_RC(open_in_child(t, LMC_OPEN_RESET, msg, sizeof msg), LMC_ECORRUPT);
        expect_in(msg, "not empty");
        struct stat st;
        assert_int_equal(stat(inner, &st), 0);
        rm_rf(t->path);
    }
}

/* Modes are exactly the documented ones whatever the umask, even one that
 * takes the owner's r or x away (it used to make creation fail with
 * LMC_EPERM and leave a mode-0000 directory that blocked every later
 * open).  Root ignores modes, so as root the cache is made by an
 * unprivileged user. */
static void test_umask_is_never_applied(void **state)
{
    tctx *t = *state;
    const uid_t nobody = 65534;
    bool drop = geteuid() == 0;
    if (drop)
        assert_int_equal(chown(t->dir, nobody, nobody), 0);
    const mode_t masks[] = {0777, 0177, 0077};
    char paths[3][300], group[3][300];
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/own%d", t->dir, i);
        snprintf(group[i], sizeof group[i], "%s/group%d", t->dir, i);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (drop)
            CHILD_CHECK(setgroups(0, NULL) == 0 && setgid(nobody) == 0 && setuid(nobody) == 0);
        for (int i = 0; i < 3; i++) {
            umask(masks[i]);
            lmc *c = NULL;
            CHILD_OK(lmc_open(&c, paths[i], NULL));
            CHILD_OK(lmc_set(c, "a", 1, "1", 1, 0));
            lmc_close(c);
            lmc_options o = {.mode = 0660};
            CHILD_OK(lmc_open(&c, group[i], &o));
            lmc_close(c);
            /* And it opens again under the same umask. */
            CHILD_OK(lmc_open(&c, paths[i], NULL));
            lmc_close(c);
        }
        _exit(0);
    }
    wait_ok(pid);
    for (int i = 0; i < 3; i++) {
        struct stat st;
        char p[400];
        assert_int_equal(stat(paths[i], &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(stat(group[i], &st), 0);
        assert_int_equal(st.st_mode & 07777, 0770);
        for (size_t f = 0; f < 4; f++) {
            snprintf(p, sizeof p, "%s/%s", paths[i], cache_files[f]);
            assert_int_equal(stat(p, &st), 0);
            if ((st.st_mode & 07777) != 0600)
                fail_msg("%s has mode %04o, want 0600", p, (unsigned)(st.st_mode & 07777));
            snprintf(p, sizeof p, "%s/%s", group[i], cache_files[f]);
            assert_int_equal(stat(p, &st), 0);
            if ((st.st_mode & 07777) != 0660)
                fail_msg("%s has mode %04o, want 0660", p, (unsigned)(st.st_mode & 07777));
        }
    }
}

/* A creating open whose parent directory is missing: LMC_ENOCACHE, saying
 * so, and nothing created (lmc makes only the last component). */
static void test_missing_parent_directory(void **state)
{
    tctx *t = *state;
    char parent[300];
    snprintf(parent, sizeof parent, "%s/no-such-dir", t->dir);
    snprintf(t->path, sizeof t->path, "%s/cache", parent);
    ASSERT_RC(try_open(t, 0), LMC_ENOCACHE);
    expect_msg("parent directory does not exist");
    expect_msg(t->path);
    struct stat st;
    assert_int_equal(lstat(parent, &st), -1);
}

/* ------------------------------------------------------------------------ */
/* Fork                                                                     */
/* ------------------------------------------------------------------------ */

/* The cache directory removed after the parent opened it: the child's first
 * call fails with LMC_EIO and a message, and the child creates nothing (it
 * used to create a new cache at the path). */
static void test_child_never_recreates_a_removed_cache(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    rm_rf(t->path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char b[8];
        size_t n;
        struct stat st;
        CHILD_CHECK(lmc_get(t->c, "k", 1, b, sizeof b, &n) == LMC_EIO);
        CHILD_CHECK(strstr(lmc_errmsg(t->c), "removed") != NULL);
        CHILD_CHECK(lmc_set(t->c, "k", 1, "w", 1, 0) == LMC_EIO);
        CHILD_CHECK(lstat(t->path, &st) != 0);
        _exit(0);
    }
    wait_ok(pid);
    struct stat st;
    assert_int_equal(lstat(t->path, &st), -1);
    /* The parent keeps its cache. */
    char buf[8];
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "v");
}

/* The cache directory renamed away and a new cache made at its path after
 * the parent opened it: the child works on its parent's cache, not on the
 * one the path names now (it used to, leaving parent and child on different
 * caches). */
static void test_child_reopens_its_parents_directory(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "who", "parent", 0));
    char old[400];
    snprintf(old, sizeof old, "%s.old", t->path);
    assert_int_equal(rename(t->path, old), 0);
    lmc *other = open_cache(t, 4, 0);
    ASSERT_OK(put_s(other, "who", "impostor", 0));
    lmc_close(other);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char b[16];
        size_t n = 0;
        CHILD_OK(lmc_get(t->c, "who", 3, b, sizeof b - 1, &n));
        b[n] = 0;
        CHILD_CHECK(strcmp(b, "parent") == 0);
        CHILD_OK(lmc_set(t->c, "child", 5, "1", 1, 0));
        _exit(0);
    }
    wait_ok(pid);
    char buf[8];
    assert_string_equal(get_s(t->c, "child", buf, sizeof buf), "1");
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* lmc_reopen_after_fork does nothing in the process that opened the handle;
 * in a child it is the reopen: the child holds a stats slot of its own, seen
 * from the parent, before it made any other call. */
static void test_reopen_after_fork_where_the_caller_chooses(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    ASSERT_RC(lmc_reopen_after_fork(NULL), LMC_EINVAL);
    ASSERT_OK(lmc_reopen_after_fork(t->c));
    ASSERT_OK(lmc_reopen_after_fork(t->c));
    lmc_proc_stat ps[4];
    size_t np = 0;
    ASSERT_OK(lmc_stats_processes(t->c, ps, 4, &np));
    assert_int_equal(np, 1);
    assert_int_equal(ps[0].pid, getpid());
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(timeout_s(20));
        char c = 0, b[8];
        size_t n = 0;
        CHILD_OK(lmc_reopen_after_fork(t->c));
        CHILD_OK(lmc_reopen_after_fork(t->c)); /* reopened: nothing more to do */
        CHILD_CHECK(write(up[1], "r", 1) == 1);
        CHILD_CHECK(read(down[0], &c, 1) == 1);
        CHILD_OK(lmc_get(t->c, "k", 1, b, sizeof b, &n));
        CHILD_CHECK(n == 1 && b[0] == 'v');
        CHILD_OK(lmc_set(t->c, "child", 5, "1", 1, 0));
        _exit(0);
    }
    char c;
    assert_int_equal(read(up[0], &c, 1), 1);
    ASSERT_OK(lmc_stats_processes(t->c, ps, 4, &np));
    bool seen = false;
    for (size_t i = 0; i < np && i < 4; i++)
        seen |= ps[i].pid == pid && ps[i].alive;
    assert_true(seen);
    assert_int_equal(write(down[1], "g", 1), 1);
    wait_ok(pid);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    char buf[8];
    assert_string_equal(get_s(t->c, "child", buf, sizeof buf), "1");
}

/* Take the lock of an open in progress, on an open file description of
 * the test's own (flock locks belong to the description); the descriptor. */
static int hold_open_lock(const tctx *t)
{
    int dfd = open(t->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(flock(dfd, LOCK_EX), 0);
    return dfd;
}

/* Once the child has written to up[1], keep the lock 3 s more, release it
 * and wait for the child. */
static void release_open_lock_later(int dfd, int up[2], pid_t pid)
{
    char c;
    assert_int_equal(read(up[0], &c, 1), 1);
    struct timespec hold = {3, 0};
    nanosleep(&hold, NULL);
    assert_int_equal(flock(dfd, LOCK_UN), 0);
    close(dfd);
    wait_ok(pid);
    close(up[0]);
    close(up[1]);
}

/*
 * Another process in the middle of its open holds the directory lock: the
 * reopen inside a child's get gives up after 2 s (not the minute an open
 * waits) with LMC_EBUSY and a message that says so, while
 * lmc_reopen_after_fork waits longer and succeeds once the lock is free.
 */
static void test_reopen_in_a_call_waits_a_bounded_time(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    int dfd = hold_open_lock(t);
    int up[2];
    assert_int_equal(pipe(up), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(timeout_s(60));
        char b[8];
        size_t n = 0;
        double t0 = mono_s();
        int rc = lmc_get(t->c, "k", 1, b, sizeof b, &n);
        double waited = mono_s() - t0;
        if (rc != LMC_EBUSY || waited < 1.9 || waited > timeout_s(10))
            fprintf(stderr, "child: get %s after %.3f s: %s\n", lmc_errname(rc), waited,
                    lmc_errmsg(t->c));
        CHILD_CHECK(rc == LMC_EBUSY);
        CHILD_CHECK(waited >= 1.9 && waited <= timeout_s(10));
        CHILD_CHECK(strstr(lmc_errmsg(t->c), "open lock") != NULL);
        CHILD_CHECK(strstr(lmc_errmsg(t->c), "lmc_reopen_after_fork") != NULL);
        CHILD_CHECK(write(up[1], "w", 1) == 1);
        t0 = mono_s();
        CHILD_OK(lmc_reopen_after_fork(t->c));
        CHILD_CHECK(mono_s() - t0 >= 2.5); /* longer than a call waits */
        CHILD_OK(lmc_get(t->c, "k", 1, b, sizeof b, &n));
        CHILD_CHECK(n == 1 && b[0] == 'v');
        _exit(0);
    }
    release_open_lock_later(dfd, up, pid);
}

/*
 * A child that opens the cache its parent has open shares the inherited
 * core, and lmc_open reopens it right there, waiting for another process's
 * open as long as any lmc_open does: the handle it returns never fails its
 * first get with the 2-second LMC_EBUSY of a reopen inside a call.
 */
static void test_open_in_a_child_reopens_with_the_open_wait(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    int dfd = hold_open_lock(t);
    int up[2];
    assert_int_equal(pipe(up), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(timeout_s(60));
        CHILD_CHECK(write(up[1], "w", 1) == 1);
        double t0 = mono_s();
        lmc *h = NULL;
        CHILD_OK(lmc_open(&h, t->path, NULL));
        double waited = mono_s() - t0;
        if (waited < 2.5)
            fprintf(stderr, "child: lmc_open returned after %.3f s\n", waited);
        CHILD_CHECK(waited >= 2.5); /* it waited for the lock, past a call's 2 s */
        char b[8];
        size_t n = 0;
        CHILD_OK(lmc_get(h, "k", 1, b, sizeof b, &n));
        CHILD_CHECK(n == 1 && b[0] == 'v');
        lmc_close(h);
        _exit(0);
    }
    release_open_lock_later(dfd, up, pid);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_symlinks_are_refused),
        T(test_path_that_is_a_file),
        T(test_writable_by_others_is_refused),
        T(test_foreign_owner_is_refused),
        T(test_garbage_data_file),
        T(test_truncated_data_file),
        T(test_foreign_lmdb_environment),
        T(test_other_format_version),
        T(test_damaged_side_files),
        T(test_reset_recreates_an_unused_cache),
        T(test_reset_empties_a_cache_in_use_in_place),
        T(test_unclean_reboot_wipes_a_disk_cache),
        T(test_fifo_in_place_of_a_file),
        T(test_directory_in_place_of_a_file),
        T(test_umask_is_never_applied),
        T(test_missing_parent_directory),
        T(test_child_never_recreates_a_removed_cache),
        T(test_child_reopens_its_parents_directory),
        T(test_reopen_after_fork_where_the_caller_chooses),
        T(test_open_in_a_child_reopens_with_the_open_wait),
        T(test_reopen_in_a_call_waits_a_bounded_time),
    };
    return cmocka_run_group_tests_name("open", tests, NULL, NULL);
}
