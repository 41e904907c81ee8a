/*
 * scale.c - the benchmark's scale cases, which measure what a throughput
 * table cannot: prefix invalidation of a large share of the cache while other
 * processes keep reading, sweeping a million expired entries, the time a
 * worker needs to open a populated cache, the space each entry costs beyond
 * its key and value, and the resident memory of many processes sharing one
 * cache compared with each process keeping a private copy.
 *
 * Each case reports rows of (section, metric, value, unit, note) and marks a
 * row failed when the library returned an error or a count is wrong; there
 * are no performance assertions (those belong to the analysis in
 * bench/RESULTS.md, not to a smoke test on a slow machine).
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lmc.h"

void bench_scale_add(bench_scale_out *o, const char *section, const char *metric, double value,
                     const char *unit, const char *note_fmt, ...)
{
    if (o->n >= sizeof o->rows / sizeof o->rows[0])
        return;
    bench_scale_row *r = &o->rows[o->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->section, sizeof r->section, "%s", section);
    snprintf(r->metric, sizeof r->metric, "%s", metric);
    snprintf(r->unit, sizeof r->unit, "%s", unit);
    r->value = value;
    if (note_fmt) {
        va_list ap;
        va_start(ap, note_fmt);
        vsnprintf(r->note, sizeof r->note, note_fmt, ap);
        va_end(ap);
    }
}

void bench_scale_fail(bench_scale_out *o, const char *section, const char *fmt, ...)
{
    if (o->n >= sizeof o->rows / sizeof o->rows[0])
        return;
    bench_scale_row *r = &o->rows[o->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->section, sizeof r->section, "%s", section);
    snprintf(r->metric, sizeof r->metric, "FAILED");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof r->note, fmt, ap);
    va_end(ap);
    r->failed = true;
}

static int open_lmc(const bench_cfg *cfg, lmc **c, char *err, size_t n)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.map_size = cfg->map_size;
    int rc = lmc_open(c, cfg->lmc_path, &o);
    if (rc)
        snprintf(err, n, "lmc_open: %s (%s)", lmc_strerror(rc), lmc_errmsg(NULL));
    return rc;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Space beyond key and value bytes per entry, from lmc_stats. */
static int lmc_overhead(const bench_cfg *cfg, double *per_entry, uint64_t *entries,
                        uint64_t *used, char *err, size_t n)
{
    lmc *c;
    if (open_lmc(cfg, &c, err, n))
        return -1;
    lmc_stat st;
    int rc = lmc_stats(c, &st);
    lmc_close(c);
    if (rc) {
        snprintf(err, n, "lmc_stats: %s", lmc_strerror(rc));
        return -1;
    }
    *entries = st.entries;
    *used = st.used_pages * st.page_size;
    *per_entry = st.entries ? ((double)*used - (double)st.key_bytes - (double)st.value_bytes) /
                                  (double)st.entries
                            : 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Prefix invalidation while two processes read                             */
/* ------------------------------------------------------------------------ */

enum { PH_BEFORE, PH_DURING, PH_AFTER, PH_STOP };

typedef struct reader_shm {
    _Atomic int phase;
    struct {
        uint64_t ops[3], ns[3], errors;
        bench_hist h[3];
    } r[2];
} reader_shm;

static void reader_main(const bench_cfg *cfg, const bench_dataset *ds, reader_shm *shm,
                        unsigned p, int ready_fd)
{
    alarm(600);
    lmc *c;
    char err[256];
    if (open_lmc(cfg, &c, err, sizeof err)) {
        shm->r[p].errors = 1;
        if (write(ready_fd, "x", 1) < 0) {
        }
        _exit(1);
    }
    char buf[256];
    uint64_t seed = 0x9e3779b97f4a7c15ull * (p + 1);
    /* Warm up before reporting ready, so that the baseline is steady. */
    for (int i = 0; i < 100000; i++) {
        uint32_t idx = (uint32_t)(bench_rand(&seed) % ds->n);
        size_t vl;
        (void)lmc_get(c, bench_key(ds, idx), ds->klen[idx], buf, sizeof buf, &vl);
    }
    if (write(ready_fd, "r", 1) < 0) {
    }
    uint64_t t0 = bench_now_ns();
    int ph = PH_BEFORE;
    uint64_t phase_start = t0;
    while (ph != PH_STOP) {
        uint32_t idx = (uint32_t)(bench_rand(&seed) % ds->n);
        size_t vl;
        int rc = lmc_get(c, bench_key(ds, idx), ds->klen[idx], buf, sizeof buf, &vl);
        if (rc != LMC_OK && rc != LMC_NOTFOUND)
            shm->r[p].errors++;
        uint64_t t1 = bench_now_ns();
        bench_hist_add(&shm->r[p].h[ph], t1 - t0);
        shm->r[p].ops[ph]++;
        t0 = t1;
        int now = atomic_load_explicit(&shm->phase, memory_order_relaxed);
        if (now != ph) {
            shm->r[p].ns[ph] = t1 - phase_start;
            phase_start = t1;
            ph = now;
        }
    }
    lmc_close(c);
    _exit(0);
}

void bench_scale_prefix(bench_cfg *cfg, const bench_scale_opts *so, bool with_ttl,
                        bench_scale_out *o)
{
    const char *sec = with_ttl ? "prefix-delete-ttl" : "prefix-delete";
    char cnt[32], cnt2[32];
    bench_fmt_count(cnt, sizeof cnt, so->prefix_removed);
    bench_fmt_count(cnt2, sizeof cnt2, so->prefix_total);
    bench_dataset ds;
    if (bench_dataset_make_prefix(&ds, so->prefix_total, so->prefix_removed, 100)) {
        bench_scale_fail(o, sec, "out of memory");
        return;
    }
    char err[256] = "";
    uint64_t t0 = bench_now_ns();
    if (bench_lmc.load(cfg, &ds, with_ttl ? 3600000 : 0, err, sizeof err)) {
        bench_scale_fail(o, sec, "loading: %s", err);
        bench_dataset_free(&ds);
        return;
    }
    double load_s = (double)(bench_now_ns() - t0) / 1e9;
    bench_scale_add(o, sec, "load with lmc_set_many (1000 per call)", (double)ds.n / load_s,
                    "entries/s", "%s entries of 100 B%s in %.2f s", cnt2,
                    with_ttl ? " with a 1 h TTL" : "", load_s);
    double per;
    uint64_t entries, used;
    if (lmc_overhead(cfg, &per, &entries, &used, err, sizeof err) == 0)
        bench_scale_add(o, sec, "bytes per entry beyond key and value", per, "B",
                        "%s entries%s, %.1f MiB of pages in use", cnt2,
                        with_ttl ? " with TTL (expiry index rows included)" : " without TTL",
                        (double)used / 1048576.0);

    reader_shm *shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        bench_scale_fail(o, sec, "mmap: %s", strerror(errno));
        goto out;
    }
    memset(shm, 0, sizeof *shm);
    int ready[2];
    if (pipe(ready)) {
        bench_scale_fail(o, sec, "pipe: %s", strerror(errno));
        goto out_unmap;
    }
    fflush(stdout);
    pid_t pids[2];
    for (unsigned p = 0; p < 2; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            close(ready[0]);
            reader_main(cfg, &ds, shm, p, ready[1]);
        }
    }
    close(ready[1]);
    char b;
    for (int got = 0; got < 2 && read(ready[0], &b, 1) == 1; got++) {
    }
    close(ready[0]);
    lmc *c = NULL;
    int rc = open_lmc(cfg, &c, err, sizeof err);
    sleep_s(so->reader_window_s);
    atomic_store(&shm->phase, PH_DURING);
    uint64_t removed = 0;
    uint64_t d0 = bench_now_ns();
    if (rc == 0)
        rc = lmc_delete_prefix(c, "view//api/products/", 19, &removed);
    uint64_t d1 = bench_now_ns();
    atomic_store(&shm->phase, PH_AFTER);
    sleep_s(so->reader_window_s / 2);
    atomic_store(&shm->phase, PH_STOP);
    for (unsigned p = 0; p < 2; p++) {
        int st;
        waitpid(pids[p], &st, 0);
    }
    double secs = (double)(d1 - d0) / 1e9;
    if (rc) {
        bench_scale_fail(o, sec, "lmc_delete_prefix: %s (%s)", lmc_strerror(rc),
                         c ? lmc_errmsg(c) : err);
    } else if (removed != so->prefix_removed) {
        bench_scale_fail(o, sec, "lmc_delete_prefix removed %llu keys, expected %u",
                         (unsigned long long)removed, so->prefix_removed);
    } else {
        bench_scale_add(o, sec, "lmc_delete_prefix time", secs, "s",
                        "%s of %s keys%s; %.0f keys/s; 2 readers running", cnt, cnt2,
                        with_ttl ? " (with TTL: expiry rows deleted too)" : "",
                        (double)removed / secs);
        size_t vl;
        char vb[256];
        const uint32_t last = ds.n - 1;
        if (lmc_get(c, bench_key(&ds, last), ds.klen[last], vb, sizeof vb, &vl) != LMC_NOTFOUND)
            bench_scale_fail(o, sec, "a key under the prefix is still readable");
    }
    if (c)
        lmc_close(c);
    uint64_t rerr = shm->r[0].errors + shm->r[1].errors;
    if (rerr)
        bench_scale_fail(o, sec, "readers saw %llu errors", (unsigned long long)rerr);
    static const char *const names[2] = {"before", "during"};
    for (int ph = PH_BEFORE; ph <= PH_DURING; ph++) {
        bench_hist *h = calloc(1, sizeof *h);
        if (!h)
            break;
        double ops_s = 0;
        for (unsigned p = 0; p < 2; p++) {
            bench_hist_merge(h, &shm->r[p].h[ph]);
            if (shm->r[p].ns[ph])
                ops_s += (double)shm->r[p].ops[ph] * 1e9 / (double)shm->r[p].ns[ph];
        }
        char m[80];
        snprintf(m, sizeof m, "readers' get p99, %s", names[ph]);
        bench_scale_add(o, sec, m, bench_hist_quantile(h, 0.99) / 1000, "us",
                        "p50 %.2f us, p99.9 %.1f us, max %.0f us; %.0f gets/s for 2 readers; "
                        "%llu gets",
                        bench_hist_quantile(h, 0.5) / 1000, bench_hist_quantile(h, 0.999) / 1000,
                        (double)h->max / 1000, ops_s, (unsigned long long)h->count);
        free(h);
    }
out_unmap:
    munmap(shm, sizeof *shm);
out:
    bench_lmc.unload(cfg);
    bench_dataset_free(&ds);
}

/* ------------------------------------------------------------------------ */
/* Space with keys in random order                                          */
/* ------------------------------------------------------------------------ */

/*
 * The space section measures the entries of the throughput data set, whose
 * keys are loaded in ascending order: LMDB then packs every page it splits.
 * Keys that arrive in random order, as a cache's usually do, leave pages
 * between half and wholly full (about 69% on average, as in any B-tree
 * without rebalancing on insert), and that is most of what an entry costs.
 */
void bench_scale_order(bench_cfg *cfg, const bench_scale_opts *so, bench_scale_out *o)
{
    const char *sec = "space-random-order";
    char cnt[32];
    bench_fmt_count(cnt, sizeof cnt, so->prefix_total);
    bench_dataset ds;
    if (bench_dataset_make_shuffled(&ds, so->prefix_total, 100, 0x2545f4914f6cdd1dull)) {
        bench_scale_fail(o, sec, "out of memory");
        return;
    }
    for (int with_ttl = 0; with_ttl < 2; with_ttl++) {
        char err[256] = "";
        uint64_t t0 = bench_now_ns();
        if (bench_lmc.load(cfg, &ds, with_ttl ? 3600000 : 0, err, sizeof err)) {
            bench_scale_fail(o, sec, "loading: %s", err);
            break;
        }
        double load_s = (double)(bench_now_ns() - t0) / 1e9;
        bench_scale_add(o, sec,
                        with_ttl ? "load with lmc_set_many (1000 per call), with TTL"
                                 : "load with lmc_set_many (1000 per call), no TTL",
                        (double)ds.n / load_s, "entries/s", "%s entries of 100 B in random key "
                        "order in %.2f s", cnt, load_s);
        double per;
        uint64_t entries, used;
        if (lmc_overhead(cfg, &per, &entries, &used, err, sizeof err) != 0)
            bench_scale_fail(o, sec, "%s", err);
        else if (entries != ds.n)
            bench_scale_fail(o, sec, "%llu entries after loading %u", (unsigned long long)entries,
                             ds.n);
        else
            bench_scale_add(o, sec,
                            with_ttl ? "bytes per entry beyond key and value, with TTL"
                                     : "bytes per entry beyond key and value, no TTL",
                            per, "B", "%s entries of 100 B loaded in random key order%s, "
                            "%.1f MiB of pages in use", cnt,
                            with_ttl ? " with a 1 h TTL (expiry index rows included)" : "",
                            (double)used / 1048576.0);
        bench_lmc.unload(cfg);
    }
    bench_dataset_free(&ds);
}

/* ------------------------------------------------------------------------ */
/* Sweeping expired entries                                                 */
/* ------------------------------------------------------------------------ */

void bench_scale_sweep(bench_cfg *cfg, const bench_scale_opts *so, bench_scale_out *o)
{
    const char *sec = "sweep";
    char cnt[32];
    bench_fmt_count(cnt, sizeof cnt, so->sweep_n);
    bench_dataset ds;
    if (bench_dataset_make(&ds, so->sweep_n, 100)) {
        bench_scale_fail(o, sec, "out of memory");
        return;
    }
    char err[256] = "";
    /* A TTL of 1 ms makes every entry expire right after it is written. */
    uint64_t t0 = bench_now_ns();
    if (bench_lmc.load(cfg, &ds, 1, err, sizeof err)) {
        bench_scale_fail(o, sec, "loading: %s", err);
        bench_dataset_free(&ds);
        return;
    }
    double load_s = (double)(bench_now_ns() - t0) / 1e9;
    bench_scale_add(o, sec, "load with lmc_set_many, 1 ms TTL", (double)ds.n / load_s,
                    "entries/s", "%s entries of 100 B in %.2f s", cnt, load_s);
    double per;
    uint64_t entries, used;
    if (lmc_overhead(cfg, &per, &entries, &used, err, sizeof err) == 0)
        bench_scale_add(o, sec, "bytes per entry beyond key and value", per, "B",
                        "%s entries with TTL (expiry index rows included)", cnt);
    lmc *c;
    if (open_lmc(cfg, &c, err, sizeof err)) {
        bench_scale_fail(o, sec, "%s", err);
        goto out;
    }
    /* Wait until the last entry written reads as a miss. */
    char vb[256];
    size_t vl;
    const uint32_t last = ds.n - 1;
    for (int i = 0; i < 10000; i++) {
        if (lmc_get(c, bench_key(&ds, last), ds.klen[last], vb, sizeof vb, &vl) == LMC_NOTFOUND)
            break;
        sleep_s(0.001);
    }
    lmc_sweep_options sw;
    memset(&sw, 0, sizeof sw);
    sw.flags = LMC_SWEEP_NOEVICT;
    lmc_sweep_result res;
    memset(&res, 0, sizeof res);
    uint64_t s0 = bench_now_ns();
    int rc = lmc_sweep(c, &sw, &res);
    uint64_t s1 = bench_now_ns();
    lmc_stat st;
    int src = lmc_stats(c, &st);
    if (rc) {
        bench_scale_fail(o, sec, "lmc_sweep: %s (%s)", lmc_strerror(rc), lmc_errmsg(c));
    } else if (res.expired != ds.n || (src == 0 && st.entries != 0)) {
        bench_scale_fail(o, sec, "lmc_sweep removed %llu of %u expired entries, %llu left",
                         (unsigned long long)res.expired, ds.n,
                         (unsigned long long)(src == 0 ? st.entries : 0));
    } else {
        double secs = (double)(s1 - s0) / 1e9;
        bench_scale_add(o, sec, "lmc_sweep time", secs, "s",
                        "%s expired entries in %llu transactions; %.0f entries/s", cnt,
                        (unsigned long long)res.transactions, (double)res.expired / secs);
    }
    lmc_close(c);
out:
    bench_lmc.unload(cfg);
    bench_dataset_free(&ds);
}

/* ------------------------------------------------------------------------ */
/* Open time                                                                */
/* ------------------------------------------------------------------------ */

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/*
 * The open probe, run by `lmcbench --open-probe KIND PATH KEY` in a freshly
 * exec'ed process (see time_open): what a worker does when it starts, open
 * the cache and read one key, then the close.  Prints four numbers: open +
 * first get (us), the first get alone (us), the close (us), and the minor
 * page faults taken by open + first get.
 */
int bench_open_probe(const char *kind, const char *path, const char *key)
{
    size_t kl = strlen(key);
    long f0 = minflt();
    uint64_t t0 = bench_now_ns();
    char err[256];
    if (strcmp(kind, "lmdb") == 0) {
        if (bench_lmdb_open_probe(path, key, kl, err, sizeof err)) {
            fprintf(stderr, "open probe: %s\n", err);
            return 1;
        }
        printf("%.1f 0 0 %ld\n", (double)(bench_now_ns() - t0) / 1000, minflt() - f0);
        return 0;
    }
    lmc *c;
    int rc = lmc_open(&c, path, NULL);
    if (rc) {
        fprintf(stderr, "open probe: lmc_open: %s (%s)\n", lmc_strerror(rc), lmc_errmsg(NULL));
        return 1;
    }
    uint64_t t1 = bench_now_ns();
    char vb[256];
    size_t vl;
    rc = lmc_get(c, key, kl, vb, sizeof vb, &vl);
    uint64_t t2 = bench_now_ns();
    long f1 = minflt();
    lmc_close(c);
    uint64_t t3 = bench_now_ns();
    if (rc) {
        fprintf(stderr, "open probe: lmc_get: %s\n", lmc_strerror(rc));
        return 1;
    }
    printf("%.1f %.1f %.1f %ld\n", (double)(t2 - t0) / 1000, (double)(t2 - t1) / 1000,
           (double)(t3 - t2) / 1000, f1 - f0);
    return 0;
}

/*
 * Run the open probe in a fresh process: fork and exec this program, so that
 * the probe starts with a small address space like a newly started worker.
 * (A child merely forked from this driver would pay for copy-on-write faults
 * on the driver's large heap, several hundred of them, which says nothing
 * about lmc.)
 */
static int time_open(const bench_cfg *cfg, const bench_dataset *ds, bool raw, double out[4],
                     char *err, size_t errn)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    char key[BENCH_KSTRIDE];
    memcpy(key, bench_key(ds, ds->n / 2), ds->klen[ds->n / 2]);
    key[ds->klen[ds->n / 2]] = 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "lmcbench", "--open-probe", raw ? "lmdb" : "lmc",
              raw ? cfg->lmdb_path : cfg->lmc_path, key, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[256] = "";
    ssize_t n, got = 0;
    while ((n = read(fds[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
        got += n;
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
        sscanf(buf, "%lf %lf %lf %lf", &out[0], &out[1], &out[2], &out[3]) != 4) {
        snprintf(err, errn, "the probe process failed (status %d)", st);
        return -1;
    }
    return 0;
}

void bench_scale_open(bench_cfg *cfg, const bench_dataset *ds, const bench_scale_opts *so,
                      bench_scale_out *o)
{
    const char *sec = "open";
    char cnt[32];
    bench_fmt_count(cnt, sizeof cnt, ds->n);
    for (int held = 0; held < 2; held++) {
        /* With held = 1 another process (this one) keeps the cache open, as
         * sibling workers do when one restarts. */
        lmc *hold = NULL;
        char err[256] = "";
        if (held && open_lmc(cfg, &hold, err, sizeof err)) {
            bench_scale_fail(o, sec, "%s", err);
            return;
        }
        for (int raw = 0; raw < (cfg->lmdb_path[0] ? 2 : 1); raw++) {
            double v[4][32];
            unsigned n = so->open_reps < 32 ? so->open_reps : 32, ok = 0;
            for (unsigned i = 0; i < n; i++) {
                double one[4];
                if (time_open(cfg, ds, raw, one, err, sizeof err) == 0) {
                    for (int j = 0; j < 4; j++)
                        v[j][ok] = one[j];
                    ok++;
                }
            }
            if (ok < n) {
                bench_scale_fail(o, sec, "%s open probe failed: %s", raw ? "lmdb" : "lmc", err);
                continue;
            }
            char m[80];
            snprintf(m, sizeof m, "%s open + first get%s", raw ? "raw LMDB" : "lmc",
                     held ? ", cache held open by another process" : ", nobody else has it open");
            if (raw)
                bench_scale_add(o, sec, m, bench_median(v[0], ok), "us",
                                "median of %u freshly exec'ed processes; %s entries; env open, "
                                "DBI open, read txn, get; %.0f page faults", ok, cnt,
                                bench_median(v[3], ok));
            else
                bench_scale_add(o, sec, m, bench_median(v[0], ok), "us",
                                "median of %u freshly exec'ed processes; %s entries; first get "
                                "%.0f us; %.0f page faults; lmc_close %.0f us", ok, cnt,
                                bench_median(v[1], ok), bench_median(v[3], ok),
                                bench_median(v[2], ok));
        }
        lmc_close(hold);
    }
}

/* ------------------------------------------------------------------------ */
/* Space per entry                                                          */
/* ------------------------------------------------------------------------ */

void bench_scale_space(bench_cfg *cfg, const bench_dataset *ds, const char *label,
                       const bench_contender *const *cs, unsigned ncs, bench_scale_out *o)
{
    const char *sec = "space";
    double key_avg = 0;
    for (uint32_t i = 0; i < ds->n; i++)
        key_avg += ds->klen[i];
    key_avg /= ds->n ? ds->n : 1;
    for (unsigned i = 0; i < ncs; i++) {
        const bench_contender *c = cs[i];
        if (!c->mem_used || c->unavailable(cfg))
            continue;
        char m[80], err[256];
        snprintf(m, sizeof m, "%s bytes per entry beyond key and value", c->name);
        if (c == &bench_lmc) {
            double per;
            uint64_t entries, used;
            if (lmc_overhead(cfg, &per, &entries, &used, err, sizeof err)) {
                bench_scale_fail(o, sec, "%s", err);
                continue;
            }
            bench_scale_add(o, sec, m, per, "B",
                            "%s, no TTL; (used_pages x page_size - key_bytes - value_bytes) / "
                            "entries; %.1f MiB in use", label, (double)used / 1048576.0);
            continue;
        }
        uint64_t bytes;
        const char *how = "";
        if (c->mem_used(cfg, &bytes, &how)) {
            bench_scale_fail(o, sec, "%s: could not measure memory", c->name);
            continue;
        }
        double per = (double)bytes / ds->n - key_avg - (double)ds->vsize;
        bench_scale_add(o, sec, m, per, "B", "%s; %s; %.1f MiB", label, how,
                        (double)bytes / 1048576.0);
    }
}

/* ------------------------------------------------------------------------ */
/* Resident memory: one shared cache against private copies                 */
/* ------------------------------------------------------------------------ */

/* Pss and Rss of a process, in KiB, from /proc/PID/smaps_rollup. */
static int pss_of(pid_t pid, uint64_t *pss_kb, uint64_t *rss_kb)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    *pss_kb = *rss_kb = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "Pss: %llu kB", &v) == 1) {
            *pss_kb = v;
            found++;
        } else if (sscanf(line, "Rss: %llu kB", &v) == 1) {
            *rss_kb = v;
            found++;
        }
    }
    fclose(f);
    return found == 2 ? 0 : -1;
}

/* A worker of the PSS case: read every entry once (shared), or copy every
 * entry into private memory and close the cache (private), then wait. */
static void pss_child(const bench_cfg *cfg, const bench_dataset *ds, bool private_copy,
                      int ready_fd, int go_fd)
{
    alarm(900);
    lmc *c;
    char err[256];
    if (open_lmc(cfg, &c, err, sizeof err)) {
        fprintf(stderr, "memory case worker: %s\n", err);
        _exit(1);
    }
    char *arena = NULL;
    if (private_copy) {
        /* The least a private per-process cache would hold: every key and
         * value, back to back, with no index at all. */
        arena = malloc((size_t)ds->n * (BENCH_KSTRIDE + ds->vsize));
        if (!arena)
            _exit(1);
    }
    char *vb = malloc(ds->vsize + 64);
    if (!vb)
        _exit(1);
    int bad = 0;
    for (uint32_t i = 0; i < ds->n; i++) {
        size_t vl;
        char *dst = private_copy ? arena + (size_t)i * (BENCH_KSTRIDE + ds->vsize) : vb;
        if (private_copy)
            memcpy(dst, bench_key(ds, i), BENCH_KSTRIDE);
        if (lmc_get(c, bench_key(ds, i), ds->klen[i], private_copy ? dst + BENCH_KSTRIDE : vb,
                    ds->vsize + 64, &vl) != LMC_OK)
            bad++;
    }
    if (private_copy)
        lmc_close(c);
    if (bad)
        fprintf(stderr, "memory case worker: %d of %u entries not read\n", bad, ds->n);
    if (write(ready_fd, bad ? "x" : "r", 1) < 0) {
    }
    char b;
    while (read(go_fd, &b, 1) < 0 && errno == EINTR) {
    }
    _exit(bad ? 1 : 0);
}

/* Start n workers, wait until all are ready, sum their Pss/Rss. */
static int pss_round(const bench_cfg *cfg, const bench_dataset *ds, bool private_copy,
                     unsigned n, uint64_t *pss_kb, uint64_t *rss_kb)
{
    int ready[2], go[2];
    if (pipe(ready) || pipe(go))
        return -1;
    fflush(stdout);
    pid_t pids[64];
    unsigned started = 0;
    for (unsigned i = 0; i < n && i < 64; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            close(ready[0]);
            close(go[1]);
            pss_child(cfg, ds, private_copy, ready[1], go[0]);
        }
        if (pid < 0)
            break;
        pids[started++] = pid;
    }
    close(ready[1]);
    close(go[0]);
    int rc = started == n ? 0 : -1;
    char b;
    for (unsigned got = 0; got < started; got++) {
        if (read(ready[0], &b, 1) != 1 || b != 'r') {
            rc = -1;
            break;
        }
    }
    *pss_kb = *rss_kb = 0;
    if (rc == 0) {
        for (unsigned i = 0; i < started; i++) {
            uint64_t p, r;
            if (pss_of(pids[i], &p, &r)) {
                rc = -1;
                break;
            }
            *pss_kb += p;
            *rss_kb += r;
        }
    }
    close(go[1]);
    close(ready[0]);
    for (unsigned i = 0; i < started; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = -1;
    }
    return rc;
}

void bench_scale_pss(bench_cfg *cfg, const bench_scale_opts *so, bench_scale_out *o)
{
    const char *sec = "memory";
    const size_t vsize = 1024;
    /* Fill the map to about 70%.  An entry of a 28-byte key and a 1 KiB
     * value takes half a 4 KiB page when loaded in key order: a leaf holds
     * at most three such nodes and LMDB splits full pages in the middle, so
     * the pages left behind keep two. */
    uint32_t n = (uint32_t)((double)so->pss_map * 0.70 / 2100.0);
    bench_dataset ds;
    if (bench_dataset_make(&ds, n, vsize)) {
        bench_scale_fail(o, sec, "out of memory");
        return;
    }
    uint64_t saved_map = cfg->map_size;
    cfg->map_size = so->pss_map;
    char err[256] = "";
    if (bench_lmc.load(cfg, &ds, 0, err, sizeof err)) {
        bench_scale_fail(o, sec, "loading: %s", err);
        goto out;
    }
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", cfg->lmc_path);
    uint64_t file_alloc = stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
    double per;
    uint64_t entries, used;
    if (lmc_overhead(cfg, &per, &entries, &used, err, sizeof err)) {
        bench_scale_fail(o, sec, "%s", err);
        goto out;
    }
    if (entries != n) {
        bench_scale_fail(o, sec, "loaded %u entries but the cache holds %llu (evicted: the map "
                         "was too small for them)", n, (unsigned long long)entries);
        goto out;
    }
    uint64_t data = (uint64_t)n * (28 + vsize);
    char cnt[32];
    bench_fmt_count(cnt, sizeof cnt, n);
    uint64_t pss_s, rss_s, pss_p, rss_p;
    if (pss_round(cfg, &ds, false, so->pss_procs, &pss_s, &rss_s)) {
        bench_scale_fail(o, sec, "shared round failed");
        goto out;
    }
    if (pss_round(cfg, &ds, true, so->pss_procs, &pss_p, &rss_p)) {
        bench_scale_fail(o, sec, "private round failed");
        goto out;
    }
    double mib = 1024.0;
    bench_scale_add(o, sec, "cache contents", (double)used / 1048576.0, "MiB",
                    "%s entries of 1 KiB in a %.0f MiB map: %.0f MiB of keys and values, "
                    "%.1f MiB of pages in use", cnt, (double)so->pss_map / 1048576.0,
                    (double)data / 1048576.0, (double)used / 1048576.0);
    bench_scale_add(o, sec, "tmpfs memory held by data.mdb", (double)file_alloc / 1048576.0,
                    "MiB", "lmc preallocates the whole map with posix_fallocate, so the "
                    "file holds map_size of tmpfs memory from creation on");
    char m[80];
    snprintf(m, sizeof m, "PSS of %u processes sharing the cache", so->pss_procs);
    bench_scale_add(o, sec, m, (double)pss_s / mib, "MiB",
                    "sum over processes that each read every entry once; RSS sum %.0f MiB",
                    (double)rss_s / mib);
    snprintf(m, sizeof m, "PSS of %u processes with private copies", so->pss_procs);
    bench_scale_add(o, sec, m, (double)pss_p / mib, "MiB",
                    "each copies every key and value into its own heap (no index), cache "
                    "closed; RSS sum %.0f MiB", (double)rss_p / mib);
    /* PSS only counts file pages some process has mapped and touched; the
     * preallocated rest of data.mdb is tmpfs memory all the same.  Charging
     * the whole file instead of the touched pages gives the host's view. */
    double host_shared = (double)file_alloc + (double)pss_s * 1024.0 - (double)used;
    bench_scale_add(o, sec, "private / shared PSS", (double)pss_p / (double)pss_s, "x",
                    "host view (whole data.mdb file + the processes' own memory): "
                    "%.0f MiB shared vs %.0f MiB private, %.1fx",
                    host_shared / 1048576.0, (double)pss_p / mib,
                    (double)pss_p * 1024.0 / host_shared);
out:
    bench_lmc.unload(cfg);
    cfg->map_size = saved_map;
    bench_dataset_free(&ds);
}
