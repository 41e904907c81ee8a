/*
 * util.h - helpers shared by the cmocka test binaries: a fresh cache
 * directory per test (on tmpfs, removed in teardown), assertions that print
 * lmc's error text, a fake clock shared across fork() so that TTL tests move
 * time instead of sleeping, and helpers to run and reap child processes.
 *
 * Each test binary includes this file once; everything here is static.
 */
#ifndef LMC_TEST_UTIL_H
#define LMC_TEST_UTIL_H

#include "../lib/fmacros.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "lmc.h"

typedef struct tctx {
    char dir[128];  /* the temporary directory of this test */
    char path[300]; /* the cache directory inside it */
    lmc *c;         /* closed by teardown if set */
} tctx;

static __attribute__((unused)) int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static __attribute__((unused)) void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Base directory of test caches: tmpfs unless LMC_TEST_BASE says otherwise. */
static const char *test_base(void)
{
    const char *b = getenv("LMC_TEST_BASE");
    return b && *b ? b : "/dev/shm";
}

static __attribute__((unused)) int setup_dir(void **state)
{
    tctx *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    snprintf(t->dir, sizeof t->dir, "%s/lmc-test-XXXXXX", test_base());
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/cache", t->dir);
    *state = t;
    return 0;
}

static __attribute__((unused)) int teardown_dir(void **state)
{
    tctx *t = *state;
    if (!t)
        return 0;
    lmc_close(t->c);
    rm_rf(t->dir);
    free(t);
    lmc__test_set_clock(NULL);
    lmc__test_fail_alloc(0, false);
    return 0;
}

#define ASSERT_RC(expr, want)                                                                 \
    do {                                                                                      \
        int rc_ = (expr);                                                                     \
        if (rc_ != (want))                                                                    \
            fail_msg("%s:%d: %s returned %s, want %s (%s)", __FILE__, __LINE__, #expr,         \
                     lmc_errname(rc_), lmc_errname(want), lmc__errmsg_last());                  \
    } while (0)

#define ASSERT_OK(expr) ASSERT_RC(expr, LMC_OK)

/* Open t->path with a map of map_mib MiB and the given flags; fails the
 * test on error. */
static __attribute__((unused)) lmc *open_cache(tctx *t, unsigned map_mib, unsigned flags)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.map_size = (uint64_t)map_mib << 20;
    o.flags = flags;
    lmc *c = NULL;
    int rc = lmc_open(&c, t->path, &o);
    if (rc)
        fail_msg("lmc_open %s: %s (%s)", t->path, lmc_strerror(rc), lmc_errmsg(NULL));
    return c;
}

static __attribute__((unused)) int put_s(lmc *c, const char *k, const char *v, int64_t ttl)
{
    return lmc_set(c, k, strlen(k), v, strlen(v), ttl);
}

/* Value of k as a string in buf, or NULL on a miss. */
static __attribute__((unused)) const char *get_s(lmc *c, const char *k, char *buf, size_t cap)
{
    size_t n = 0;
    int rc = lmc_get(c, k, strlen(k), buf, cap - 1, &n);
    if (rc == LMC_NOTFOUND)
        return NULL;
    if (rc)
        fail_msg("lmc_get %s: %s (%s)", k, lmc_strerror(rc), lmc_errmsg(c));
    buf[n] = 0;
    return buf;
}

static __attribute__((unused)) lmc_stat stats_of(lmc *c)
{
    lmc_stat st;
    int rc = lmc_stats(c, &st);
    if (rc)
        fail_msg("lmc_stats: %s (%s)", lmc_strerror(rc), lmc_errmsg(c));
    return st;
}

/* ------------------------------------------------------------------------ */
/* Fake clock, shared with forked children                                  */
/* ------------------------------------------------------------------------ */

static _Atomic int64_t *fake_now;

static __attribute__((unused)) int64_t fake_clock(void)
{
    return atomic_load(fake_now);
}

/* Install a fake clock starting at a realistic epoch time. */
static __attribute__((unused)) void fake_clock_install(void)
{
    if (!fake_now) {
        fake_now = mmap(NULL, sizeof *fake_now, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
        assert_true(fake_now != MAP_FAILED);
    }
    atomic_store(fake_now, (int64_t)1800000000000);
    lmc__test_set_clock(fake_clock);
}

static __attribute__((unused)) void fake_clock_advance(int64_t ms)
{
    atomic_fetch_add(fake_now, ms);
}

/* ------------------------------------------------------------------------ */
/* Processes                                                                */
/* ------------------------------------------------------------------------ */

/* In a child, cmocka's assertions must not be used (they longjmp into the
 * parent's copy of the runner): check, print and exit instead. */
#define CHILD_CHECK(cond)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "child %d: %s:%d: check failed: %s\n", (int)getpid(), __FILE__,    \
                    __LINE__, #cond);                                                         \
            _exit(3);                                                                         \
        }                                                                                     \
    } while (0)

#define CHILD_OK(expr)                                                                        \
    do {                                                                                      \
        int rc_ = (expr);                                                                     \
        if (rc_) {                                                                            \
            fprintf(stderr, "child %d: %s:%d: %s -> %s\n", (int)getpid(), __FILE__, __LINE__,  \
                    #expr, lmc_strerror(rc_));                                                \
            _exit(4);                                                                         \
        }                                                                                     \
    } while (0)

/* In a child that runs until its parent tells it to stop: die with the
 * parent.  A parent whose test fails leaves the test by a longjmp, without
 * stopping its children, and a child left spinning would take a CPU for ever
 * and keep the output of make (or of dpkg-buildpackage) open, so that the
 * run never ends.  parent is getpid() of the parent, taken before fork. */
static __attribute__((unused)) void child_dies_with_parent(pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(5);
}

/* Scale for timeouts (slow machines, valgrind): LMC_TEST_TIMEOUT_MULT. */
static __attribute__((unused)) unsigned timeout_s(unsigned base)
{
    const char *m = getenv("LMC_TEST_TIMEOUT_MULT");
    unsigned mult = m ? (unsigned)atoi(m) : 1;
    return base * (mult ? mult : 1);
}

/* Wait for a child and require that it exited with status 0. */
static __attribute__((unused)) void wait_ok(pid_t pid)
{
    int st = 0;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    assert_int_equal(r, pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %d ended with %s %d", (int)pid, WIFEXITED(st) ? "status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static __attribute__((unused)) int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Memory shared with forked children: n zeroed bytes, never unmapped (the
 * test process ends soon enough). */
static __attribute__((unused)) void *shared_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    memset(p, 0, n);
    return p;
}

/* A start line in shared memory: children wait at it until the parent has
 * seen them all arrive and lets them go, so that they really race. */
typedef struct start_gate {
    _Atomic int go;
    _Atomic int ready; /* children that reached the line */
} start_gate;

static __attribute__((unused)) void gate_wait(start_gate *g)
{
    atomic_fetch_add(&g->ready, 1);
    while (!atomic_load(&g->go))
        sched_yield();
}

static __attribute__((unused)) void gate_open_when(start_gate *g, int n)
{
    int64_t deadline = mono_ms() + (int64_t)timeout_s(60) * 1000;
    while (atomic_load(&g->ready) < n) {
        if (mono_ms() > deadline)
            fail_msg("children did not reach the start line");
        sched_yield();
    }
    atomic_store(&g->go, 1);
}

#endif /* LMC_TEST_UTIL_H */
