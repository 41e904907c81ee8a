/*
 * verify.c - lmc_verify: find damage in a cache's data file without
 * crashing the caller.
 *
 * LMDB trusts its pages.  It checks the meta pages when it opens a file and
 * page numbers against the end of the file, and nothing else: a leaf whose
 * key offsets or value sizes were overwritten sends a reader wherever they
 * point, and a reader copying a value of "four gigabytes" from there dies of
 * SIGSEGV.  Every process maps the file writable (MDB_WRITEMAP), so one
 * stray write in any worker can do that to all of them.
 *
 * lmc_verify forks.  The child opens the cache directory afresh and
 * read-only (never the caller's LMDB environment: an environment must not
 * be used across fork), takes one read snapshot, and walks the raw pages of
 * that snapshot itself, checking every offset and size before it reads
 * through it, so that the walk cannot be led outside the page or the file;
 * LMDB's own code is never asked to read a page.  The child reports through
 * a pipe.  Should it crash anyway (a case the checks missed, or a file cut
 * short under it), the crash is the report: the parent maps it to
 * LMC_ECORRUPT, and the caller lives on.
 *
 * The walk itself is vwalk.c; the layouts it reads, those of LMDB 0.9 data
 * files (format version 1, which lmc_open checks) on LP64 hosts, are in
 * lmdbmeta.h.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "call.h"
#include "clock.h"
#include "error.h"
#include "lmdbmeta.h"
#include "verify.h"
#include "vwalk.h"

#define LMC__VERIFY_TIMEOUT_MS 600000u

/* ------------------------------------------------------------------------ */
/* The child                                                                */
/* ------------------------------------------------------------------------ */

#define REPORT_MAGIC 0x6c6d6376u

/* What the child sends back: one write, smaller than a pipe's buffer. */
typedef struct report {
    uint32_t magic;
    int32_t rc;
    lmc_verify_result res;
    char msg[400];
} report;

/* Tests: make the child crash before it reports. */
static _Atomic int test_crash;

void lmc__test_verify_crash(bool on)
{
    atomic_store(&test_crash, on);
}

static int child_fail(report *r, int rc, const char *fmt, ...) LMC__PRINTF(3, 4);

static int child_fail(report *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->rc = rc;
    return rc;
}

/*
 * Take a read snapshot and copy the meta page it was made from.  A reader's
 * snapshot is the transaction id it registered (T); meta page T % 2 holds
 * T's roots until the commit of T + 2 rewrites it.  The copy is good if,
 * after it was taken, the other meta page still holds a transaction older
 * than T: T + 1 had not committed, so T + 2 cannot have begun writing over
 * the copy (the id of a meta page is stored last, after the roots).
 */
static int snapshot(MDB_env *env, const unsigned char *map, uint64_t psize, MDB_txn **txn,
                    unsigned char *meta, report *r)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, txn);
        if (rc == MDB_READERS_FULL)
            return child_fail(r, LMC_EBUSY, "no free reader slot for the check");
        if (rc)
            return child_fail(r, lmc__code_from_mdb(rc), "mdb_txn_begin: %s", mdb_strerror(rc));
        uint64_t t = mdb_txn_id(*txn);
        const unsigned char *mine = map + (t & 1) * psize;
        const unsigned char *other = map + ((t + 1) & 1) * psize;
        /* Word by word with acquire loads, so that the load of the other
         * page's id comes after every load of the copy (the meta page is
         * page-aligned, its header and fields 8-byte aligned). */
        const uint64_t *src = (const uint64_t *)(const void *)mine;
        for (size_t w = 0; w < LMC__META_SIZE / 8; w++) {
            uint64_t word = __atomic_load_n(&src[w], __ATOMIC_ACQUIRE);
            memcpy(meta + 8 * w, &word, 8);
        }
        uint64_t oid = __atomic_load_n((const uint64_t *)(const void *)(other + LMC__META_TXNID),
                                       __ATOMIC_ACQUIRE);
        if (lmc__get64(meta + LMC__META_TXNID) == t && oid < t)
            return 0;
        mdb_txn_abort(*txn);
        *txn = NULL;
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    return child_fail(r, LMC_EBUSY, "could not take a stable snapshot: writers commit too fast");
}

/* Open the directory the handle uses (checked to be the very same one),
 * then LMDB read-only on it, and walk one snapshot. */
static int child_verify(const lmc__core *k, report *r)
{
    int dirfd = open(k->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (dirfd < 0)
        return child_fail(r, LMC_EIO, "cannot open %s: %s", k->path, strerror(errno));
    if (fstat(dirfd, &st) != 0 || st.st_dev != k->dev || st.st_ino != k->ino) {
        close(dirfd);
        return child_fail(r, LMC_EIO, "%s is no longer the directory this handle opened",
                          k->path);
    }
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    const unsigned char *map = NULL;
    size_t map_len = 0;
    int rc = mdb_env_create(&env);
    if (rc) {
        close(dirfd);
        return child_fail(r, lmc__code_from_mdb(rc), "mdb_env_create: %s", mdb_strerror(rc));
    }
    char ep[64];
    snprintf(ep, sizeof ep, "/proc/self/fd/%d", dirfd);
    mdb_env_set_maxreaders(env, k->max_readers);
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_mapsize(env, (size_t)k->map_size);
    rc = mdb_env_open(env, access(ep, X_OK) == 0 ? ep : k->path, MDB_RDONLY | MDB_NOTLS, 0600);
    if (rc) {
        /* A file removed since the handle opened the cache: like the
         * directory replaced, LMC_EIO, never "no cache" for an open handle. */
        int code = lmc__code_from_mdb(rc);
        child_fail(r, code == LMC_ENOCACHE ? LMC_EIO : code, "mdb_env_open: %s",
                   mdb_strerror(rc));
        goto out;
    }
    MDB_envinfo info;
    MDB_stat mst;
    mdb_env_info(env, &info);
    mdb_env_stat(env, &mst);
    int fd;
    mdb_env_get_fd(env, &fd);
    if (fstat(fd, &st) != 0) {
        child_fail(r, LMC_EIO, "fstat data.mdb: %s", strerror(errno));
        goto out;
    }
    /* LMDB does not tell where it mapped the file (me_mapaddr is only the
     * address of a fixed map), so map it once more, read-only: the page
     * cache is shared, so this map sees what every writer commits. */
    uint64_t psize = mst.ms_psize;
    map_len = (size_t)st.st_size;
    void *mp = map_len ? mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (mp == MAP_FAILED) {
        child_fail(r, LMC_EIO, "mmap data.mdb: %s", strerror(errno));
        goto out;
    }
    map = mp;
    if (map_len < LMC__NUM_METAS * psize) {
        child_fail(r, LMC_ECORRUPT, "the file is shorter than its two meta pages");
        goto out;
    }
    unsigned char meta[LMC__META_SIZE] = {0};
    if ((rc = snapshot(env, map, psize, &txn, meta, r)))
        goto out;
    uint64_t last_pg = lmc__get64(meta + LMC__META_LAST_PG);
    uint64_t file_pages = (uint64_t)st.st_size / psize;
    uint64_t map_pages = (uint64_t)info.me_mapsize / psize;
    if (last_pg >= file_pages || last_pg >= map_pages) {
        child_fail(r, LMC_ECORRUPT, "the last page in use is %llu, but the file has %llu "
                   "pages", (unsigned long long)last_pg, (unsigned long long)file_pages);
        goto out;
    }
    if (atomic_load(&test_crash))
        raise(SIGSEGV);
    r->rc = lmc__vwalk(map, psize, last_pg, meta, &r->res, r->msg, sizeof r->msg);
out:
    if (map)
        munmap((void *)(uintptr_t)map, map_len);
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    close(dirfd);
    return r->rc;
}

/* The child's whole life: it never returns into the caller's code. */
static __attribute__((noreturn)) void child_main(const lmc__core *k, int wfd)
{
    /* A crash must end the child with its signal, not run the caller's
     * handlers (a server's, or Python's faulthandler) on the caller's
     * copy of the world, and must not leave a core file. */
    static const int crash[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
    sigset_t unblock;
    sigemptyset(&unblock);
    for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++) {
        signal(crash[i], SIG_DFL);
        sigaddset(&unblock, crash[i]);
    }
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);

    report r;
    memset(&r, 0, sizeof r);
    r.magic = REPORT_MAGIC;
    child_verify(k, &r);
    const char *p = (const char *)&r;
    size_t left = sizeof r;
    while (left) {
        ssize_t n = write(wfd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
    _exit(0);
}

/* ------------------------------------------------------------------------ */
/* The caller's side                                                        */
/* ------------------------------------------------------------------------ */

static uint64_t mono_ms(void)
{
    return lmc__mono_us() / 1000u;
}

/* Read the child's report until it is complete, the pipe closes or the
 * deadline passes; returns the bytes read, or -1 on timeout. */
static ssize_t read_report(int fd, report *r, uint64_t deadline)
{
    size_t got = 0;
    while (got < sizeof *r) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        uint64_t wait = deadline - now;
        int pr = poll(&pfd, 1, wait > 60000 ? 60000 : (int)wait);
        if (pr < 0 && errno != EINTR)
            return (ssize_t)got;
        if (pr <= 0)
            continue;
        ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return (ssize_t)got;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* "SEGV" for SIGSEGV; thread-safe, unlike strsignal. */
static const char *sig_name(int sig)
{
    const char *s = sigabbrev_np(sig);
    return s ? s : "?";
}

/* Wait for the child; returns its status, or -1 if someone else reaped it
 * (a caller that ignores SIGCHLD, or a server's reaper). */
static int reap(pid_t pid)
{
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, 0);
        if (w == pid)
            return st;
        if (w < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

#define RESET_HINT "LMDB does not check its pages, so any process reading the damaged part " \
                   "may crash: stop every process that uses the cache, then reset it " \
                   "(lmc_open with LMC_OPEN_RESET, or `lmc PATH verify --reset`)"

int lmc_verify(lmc *c, const lmc_verify_options *opts, lmc_verify_result *res)
{
    if (res)
        memset(res, 0, sizeof *res);
    int rc = lmc__call(c);
    if (rc)
        return rc;
    lmc_verify_options o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    if (o.flags)
        return lmc__err(c, LMC_EINVAL, "unknown verify flags 0x%x", o.flags);
    if (o.reserved_int)
        return lmc__err(c, LMC_EINVAL, "reserved fields of lmc_verify_options must be zero");
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++)
        if (o.reserved[i])
            return lmc__err(c, LMC_EINVAL, "reserved fields of lmc_verify_options must be zero");
    uint64_t timeout = o.timeout_ms ? o.timeout_ms : LMC__VERIFY_TIMEOUT_MS;
    lmc__core *k = c->core;
    uint64_t t0_us = lmc__mono_us(), t0 = t0_us / 1000u;
    uint64_t deadline = timeout > UINT64_MAX - t0 ? UINT64_MAX : t0 + timeout;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return lmc__sys_err(c, errno, "pipe for the check of %s", k->path);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return lmc__sys_err(c, e, "fork for the check of %s", k->path);
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(k, fds[1]);
    }
    close(fds[1]);
    report r;
    memset(&r, 0, sizeof r);
    ssize_t got = read_report(fds[0], &r, deadline);
    close(fds[0]);
    if (got < 0)
        kill(pid, SIGKILL);
    int st = reap(pid);
    uint64_t elapsed_us = lmc__mono_us() - t0_us;
    bool complete = got == (ssize_t)sizeof r && r.magic == REPORT_MAGIC;
    if (!complete || got < 0) {
        /* A child that died in its walk left its reader slot behind, which
         * would pin the snapshot's pages until the next sweep. */
        int dead = 0;
        mdb_reader_check(k->env, &dead);
        if (dead > 0)
            lmc__count(k, LMC__C_readers_cleared, (uint64_t)dead);
    }
    if (got < 0)
        return lmc__err(c, LMC_EIO, "the check of %s did not finish within %llu ms (killed); "
                        "raise timeout_ms for a very large cache", k->path,
                        (unsigned long long)timeout);
    if (!complete) {
        if (st >= 0 && WIFSIGNALED(st) &&
            (WTERMSIG(st) == SIGKILL || WTERMSIG(st) == SIGTERM || WTERMSIG(st) == SIGINT ||
             WTERMSIG(st) == SIGHUP || WTERMSIG(st) == SIGQUIT))
            return lmc__err(c, LMC_EIO, "the check of %s was killed by signal %d (SIG%s)",
                            k->path, WTERMSIG(st), sig_name(WTERMSIG(st)));
        if (st < 0)
            return lmc__err(c, LMC_EIO, "the check of %s ended without a report, and its exit "
                            "status was taken by another waitpid (is SIGCHLD ignored?)",
                            k->path);
        char how[64];
        if (WIFSIGNALED(st))
            snprintf(how, sizeof how, "crashed (signal %d, SIG%s)", WTERMSIG(st),
                     sig_name(WTERMSIG(st)));
        else
            snprintf(how, sizeof how, "died (exit status %d)", WEXITSTATUS(st));
        return lmc__err(c, LMC_ECORRUPT, "%s/data.mdb is damaged: the check %s reading it. "
                        RESET_HINT, k->path, how);
    }
    r.msg[sizeof r.msg - 1] = 0;
    r.res.elapsed_us = elapsed_us;
    if (r.rc == LMC_ECORRUPT) {
        if (res)
            *res = r.res;
        return lmc__err(c, LMC_ECORRUPT, "%s/data.mdb is damaged: %s. " RESET_HINT, k->path,
                        r.msg);
    }
    if (r.rc)
        return lmc__err(c, r.rc, "checking %s: %s", k->path, r.msg);
    if (res)
        *res = r.res;
    return 0;
}
