/*
 * main.c - lmcbench, the benchmark driver: command line, the standard and
 * quick suites, the header describing the machine and the build, and the
 * output (Markdown tables for people, --csv for machines).
 *
 * Every contender runs in the same invocation, cell by cell and side by
 * side: for each data set all contenders are loaded, then each workload and
 * process count is run for every contender in turn, so that the load other
 * programs put on this shared machine touches them all alike.  The ratios
 * to lmc printed with each table are therefore meaningful even when the
 * absolute figures drift from one invocation to the next.
 *
 * bench/run.sh starts and stops the Redis and memcached servers and passes
 * their sockets; run alone, the driver measures lmc and raw LMDB and prints
 * a skip line for the others.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "lmc.h"

#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)

/* ------------------------------------------------------------------------ */
/* Suites                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct cell_spec {
    int w;
    unsigned procs;
} cell_spec;

typedef struct block {
    uint32_t keys;
    size_t vsize;
    uint64_t map; /* map size of the lmc cache and the LMDB env */
    cell_spec cells[40];
    unsigned ncells;
    bool space;   /* measure bytes per entry on this data set */
    bool open;    /* measure open time on this data set */
} block;

typedef struct suite {
    const char *name;
    bench_plan plan;
    block blocks[6];
    unsigned nblocks;
    bench_scale_opts scale;
} suite;

static void add_cells(block *b, const int *ws, unsigned nw, const unsigned *ps, unsigned np)
{
    for (unsigned i = 0; i < nw; i++)
        for (unsigned j = 0; j < np; j++)
            if (b->ncells < sizeof b->cells / sizeof b->cells[0])
                b->cells[b->ncells++] = (cell_spec){ws[i], ps[j]};
}

static const int ALL_W[] = {W_GET_HIT, W_GET_MISS, W_SET, W_SET_TTL, W_ADD, W_INCR, W_MIX, W_MGET};

/*
 * The standard suite (about 4 minutes on 2 CPUs): every workload on 100,000
 * entries of 100 B with 1 and 2 processes and the main ones with 4 (more
 * processes than CPUs, as a busy server has), gets and sets with 1 KiB and
 * 16 KiB values, the main workloads on 1,000,000 entries, and the scale
 * cases at full size.
 */
static void suite_full(suite *s)
{
    memset(s, 0, sizeof *s);
    s->name = "standard";
    s->plan = (bench_plan){.run_s = 0.3, .warm_s = 0.1, .reps = 3};
    static const unsigned P12[] = {1, 2}, P4[] = {4};
    static const int MAIN_W[] = {W_GET_HIT, W_SET, W_MIX}, GS[] = {W_GET_HIT, W_SET};
    block *b = &s->blocks[s->nblocks++];
    *b = (block){.keys = 100000, .vsize = 100, .map = 1 * GIB, .space = true};
    add_cells(b, ALL_W, 8, P12, 2);
    add_cells(b, MAIN_W, 3, P4, 1);
    b = &s->blocks[s->nblocks++];
    *b = (block){.keys = 100000, .vsize = 1024, .map = 512 * MIB};
    add_cells(b, GS, 2, P12, 2);
    /* 16 KiB values: 10,000 entries (160 MiB of values; every value is in
     * LMDB overflow pages either way). */
    b = &s->blocks[s->nblocks++];
    *b = (block){.keys = 10000, .vsize = 16384, .map = 512 * MIB};
    add_cells(b, GS, 2, P12, 2);
    b = &s->blocks[s->nblocks++];
    *b = (block){.keys = 1000000, .vsize = 100, .map = 1 * GIB, .space = true, .open = true};
    add_cells(b, MAIN_W, 3, P12, 2);
    s->scale = (bench_scale_opts){.prefix_total = 1000000,
                                  .prefix_removed = 100000,
                                  .sweep_n = 1000000,
                                  .pss_map = 1 * GIB,
                                  .pss_procs = 8,
                                  .reader_window_s = 0.3,
                                  .open_reps = 15};
}

/* The smoke suite run by `make test`: every workload and contender once,
 * small data, short runs, and the scale cases at a tenth of their size.
 * It checks that everything works and gives sane numbers, nothing more. */
static void suite_quick(suite *s)
{
    memset(s, 0, sizeof *s);
    s->name = "quick";
    s->plan = (bench_plan){.run_s = 0.05, .warm_s = 0.02, .reps = 1};
    static const unsigned P1[] = {1}, P2[] = {2};
    static const int GS[] = {W_GET_HIT, W_SET};
    block *b = &s->blocks[s->nblocks++];
    /* Small maps: lmc reserves its whole map on tmpfs, and a CI machine's
     * /dev/shm may be small. */
    *b = (block){.keys = 10000, .vsize = 100, .map = 64 * MIB, .space = true, .open = true};
    add_cells(b, ALL_W, 8, P1, 1);
    add_cells(b, GS, 2, P2, 1);
    b = &s->blocks[s->nblocks++];
    *b = (block){.keys = 1000, .vsize = 16384, .map = 64 * MIB};
    add_cells(b, GS, 2, P1, 1);
    s->scale = (bench_scale_opts){.prefix_total = 100000,
                                  .prefix_removed = 10000,
                                  .sweep_n = 100000,
                                  .pss_map = 64 * MIB,
                                  .pss_procs = 8,
                                  .reader_window_s = 0.1,
                                  .open_reps = 5,
                                  .quick = true};
}

static int workload_by_name(const char *s);

/* --workloads/--procs: one data set (--keys, --value-bytes) with the given
 * workloads and process counts, keeping the plan of the suite chosen. */
static int suite_custom(suite *s, const char *wlist, const char *plist, uint32_t keys,
                        size_t vsize)
{
    int ws[W_COUNT];
    unsigned nw = 0, ps[8], np = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", wlist);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int w = workload_by_name(t);
        if (w < 0 || nw >= W_COUNT) {
            fprintf(stderr, "lmcbench: unknown workload '%s'\n", t);
            return -1;
        }
        ws[nw++] = w;
    }
    snprintf(buf, sizeof buf, "%s", plist);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long p = strtol(t, NULL, 10);
        if (p < 1 || p > 64 || np >= 8) {
            fprintf(stderr, "lmcbench: bad process count '%s'\n", t);
            return -1;
        }
        ps[np++] = (unsigned)p;
    }
    if (!nw || !np)
        return -1;
    s->name = "custom";
    s->nblocks = 1;
    block *b = &s->blocks[0];
    uint64_t need = (uint64_t)keys * (vsize + 200) * 3;
    *b = (block){.keys = keys, .vsize = vsize, .map = need < GIB ? GIB : need};
    add_cells(b, ws, nw, ps, np);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

static bool g_csv;
static FILE *g_out; /* tables (stdout), or stderr when --csv owns stdout */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(g_out, fmt, ap);
    va_end(ap);
    fflush(g_out);
}

static void csv_str(const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static const char CSV_HEADER[] =
    "kind,section,workload,keys,value_bytes,procs,contender,ops_per_s,p50_us,p95_us,p99_us,"
    "p999_us,max_us,set_p50_us,set_p99_us,lmc_div_this,ops_timed,runs,errors,value,unit,note";

static void fmt_rate(char *b, size_t n, double v)
{
    if (v >= 1e6)
        snprintf(b, n, "%.2f M", v / 1e6);
    else if (v >= 1e3)
        snprintf(b, n, "%.1f k", v / 1e3);
    else
        snprintf(b, n, "%.0f", v);
}

static void fmt_us(char *b, size_t n, double ns)
{
    double us = ns / 1000;
    if (us < 10)
        snprintf(b, n, "%.2f", us);
    else if (us < 1000)
        snprintf(b, n, "%.1f", us);
    else
        snprintf(b, n, "%.0f", us);
}

static void fmt_ratio(char *b, size_t n, double lmc_ops, double ops)
{
    if (lmc_ops <= 0 || ops <= 0) {
        snprintf(b, n, "-");
        return;
    }
    double r = lmc_ops / ops;
    snprintf(b, n, r >= 10 ? "%.0f" : "%.2f", r);
}

static void csv_result(const bench_result *r, double lmc_ops, const char *label)
{
    printf("workload,");
    csv_str(label);
    printf(",%s,%u,%zu,%u,%s,%.0f,%.3f,%.3f,%.3f,%.3f,%.1f,",
           bench_workload_names[r->workload], r->keys, r->vsize, r->nprocs, r->contender,
           r->ops_s, r->p50 / 1000, r->p95 / 1000, r->p99 / 1000, r->p999 / 1000, r->max / 1000);
    if (r->workload == W_MIX)
        printf("%.3f,%.3f,", r->set_p50 / 1000, r->set_p99 / 1000);
    else
        printf(",,");
    if (lmc_ops > 0 && r->ops_s > 0)
        printf("%.4f", lmc_ops / r->ops_s);
    printf(",%llu,%u,%llu,,,", (unsigned long long)r->ops, r->nruns,
           (unsigned long long)r->errors);
    csv_str(r->err);
    putchar('\n');
    fflush(stdout);
}

/* One Markdown table: a workload on a data set, every process count and
 * contender. */
static void print_table(const block *b, const char *label, int w, bench_result *res,
                        unsigned nres)
{
    say("\n### %s, %s\n\n", bench_workload_names[w], label);
    say("%s.\n\n", bench_workload_help[w]);
    if (w == W_MIX)
        say("| procs | contender | ops/s | p50 us | p99 us | p99.9 us | set p50 us | set p99 us "
            "| lmc ÷ this |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    else
        say("| procs | contender | ops/s | p50 us | p99 us | p99.9 us | lmc ÷ this |\n"
            "|---:|---|---:|---:|---:|---:|---:|\n");
    (void)b;
    for (unsigned i = 0; i < nres; i++) {
        bench_result *r = &res[i];
        double lmc_ops = 0;
        for (unsigned j = 0; j < nres; j++)
            if (res[j].nprocs == r->nprocs && strcmp(res[j].contender, "lmc") == 0 &&
                !res[j].err[0])
                lmc_ops = res[j].ops_s;
        if (r->err[0]) {
            say("| %u | %s | FAILED: %s | | | | |%s\n", r->nprocs, r->contender, r->err,
                w == W_MIX ? " | |" : "");
            continue;
        }
        char ops[32], a[16], c[16], d[16], ratio[16];
        fmt_rate(ops, sizeof ops, r->ops_s);
        fmt_us(a, sizeof a, r->p50);
        fmt_us(c, sizeof c, r->p99);
        fmt_us(d, sizeof d, r->p999);
        fmt_ratio(ratio, sizeof ratio, lmc_ops, r->ops_s);
        if (w == W_MIX) {
            char e[16], f[16];
            fmt_us(e, sizeof e, r->set_p50);
            fmt_us(f, sizeof f, r->set_p99);
            say("| %u | %s | %s | %s | %s | %s | %s | %s | %s |\n", r->nprocs, r->contender, ops,
                a, c, d, e, f, ratio);
        } else {
            say("| %u | %s | %s | %s | %s | %s | %s |\n", r->nprocs, r->contender, ops, a, c, d,
                ratio);
        }
    }
}

static void print_scale(const bench_scale_out *o)
{
    say("\n## Scale cases\n\n| case | metric | value | note |\n|---|---|---:|---|\n");
    for (unsigned i = 0; i < o->n; i++) {
        const bench_scale_row *r = &o->rows[i];
        if (r->failed) {
            say("| %s | FAILED | | %s |\n", r->section, r->note);
            continue;
        }
        char v[48];
        if (r->value >= 1e5)
            snprintf(v, sizeof v, "%.0f %s", r->value, r->unit);
        else if (r->value >= 100)
            snprintf(v, sizeof v, "%.0f %s", r->value, r->unit);
        else
            snprintf(v, sizeof v, "%.3g %s", r->value, r->unit);
        say("| %s | %s | %s | %s |\n", r->section, r->metric, v, r->note);
    }
    if (g_csv) {
        for (unsigned i = 0; i < o->n; i++) {
            const bench_scale_row *r = &o->rows[i];
            printf("scale,%s,", r->section);
            csv_str(r->metric);
            printf(",,,,,,,,,,,,,,,,%s,%.6g,%s,", r->failed ? "1" : "0", r->value, r->unit);
            csv_str(r->note);
            putchar('\n');
        }
        fflush(stdout);
    }
}

/* ------------------------------------------------------------------------ */
/* Header                                                                   */
/* ------------------------------------------------------------------------ */

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, n, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static void loadavg(char *buf, size_t n)
{
    snprintf(buf, n, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    if (fgets(buf, (int)n, f))
        buf[strcspn(buf, "\n")] = 0;
    fclose(f);
}

static double mem_gib(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    return pages > 0 && ps > 0 ? (double)pages * (double)ps / (double)GIB : 0;
}

static void meta(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void meta(const char *key, const char *fmt, ...)
{
    char v[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    say("- %s: %s\n", key, v);
    if (g_csv)
        printf("# %s: %s\n", key, v);
}

static void print_header(const suite *s, const bench_cfg *cfg, const bench_contender *const *cs,
                         unsigned ncs, double overhead)
{
    char cpu[256], la[128], date[64];
    struct utsname u;
    uname(&u);
    cpu_model(cpu, sizeof cpu);
    loadavg(la, sizeof la);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
    say("# lmc benchmark (%s suite)\n\n", s->name);
    meta("date", "%s", date);
    meta("machine", "%s, %ld CPUs, %.1f GiB RAM", cpu, sysconf(_SC_NPROCESSORS_ONLN), mem_gib());
    meta("kernel", "%s %s %s", u.sysname, u.release, u.version);
    meta("load average at start", "%s", la);
    meta("CPU available at start", "%.2f of %ld (one spinning process per CPU for 0.2 s; "
         "a figure well below the CPU count means other programs were busy)",
         bench_cpu_available(0.2), sysconf(_SC_NPROCESSORS_ONLN));
    meta("build", "%s", BENCH_BUILD_INFO);
    meta("library", "lmc %s (static), %s", lmc_version(NULL, NULL, NULL),
         mdb_version(NULL, NULL, NULL));
    meta("LMDB env flags of lmc and raw LMDB", "%s (from lib/core.c), data file preallocated",
         bench_lmdb_env_flags_str());
    struct statfs sf;
    const char *fs = "?";
    if (statfs(cfg->dir, &sf) == 0)
        fs = sf.f_type == 0x01021994 ? "tmpfs" : "not tmpfs";
    meta("data directory", "%s (%s)", cfg->dir, fs);
    for (unsigned i = 0; i < ncs; i++) {
        const char *why = cs[i]->unavailable(cfg);
        if (why) {
            meta(cs[i]->name, "skipped: %s", why);
            fprintf(stderr, "skip: %s: %s\n", cs[i]->name, why);
            continue;
        }
        char v[256] = "";
        if (cs[i]->version)
            cs[i]->version(cfg, v, sizeof v);
        meta(cs[i]->name, "%s", v);
    }
    meta("method", "every figure is the median of %u run%s of %.2f s after a %.2f s warm-up; "
         "each process opens its own handle after fork; one request at a time; uniform random "
         "keys unless stated", s->plan.reps, s->plan.reps == 1 ? "" : "s", s->plan.run_s,
         s->plan.warm_s);
    meta("timing", "CLOCK_MONOTONIC read once per operation (chained), same loop for every "
         "contender; clock + loop overhead %.0f ns per operation, included in every latency",
         overhead);
    meta("columns", "ops/s summed over processes; p50/p99/p99.9 per operation; "
         "'lmc ÷ this' = lmc ops/s divided by this contender's with the same process count "
         "(below 1: this contender is faster)");
}

/* ------------------------------------------------------------------------ */
/* Targets                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct all_results {
    bench_result *r;
    unsigned n, cap;
} all_results;

static const bench_result *find(const all_results *a, const char *c, int w, unsigned procs,
                                uint32_t keys, size_t vsize)
{
    for (unsigned i = 0; i < a->n; i++) {
        const bench_result *r = &a->r[i];
        if (r->workload == w && r->nprocs == procs && r->keys == keys && r->vsize == vsize &&
            strcmp(r->contender, c) == 0 && !r->err[0] && r->ops_s > 0)
            return r;
    }
    return NULL;
}

static void target_ratio(const all_results *a, const char *what, const char *num,
                         const char *den, int w, unsigned pn, unsigned pd, uint32_t keys,
                         double want, const char *cmp)
{
    const bench_result *x = find(a, num, w, pn, keys, 100), *y = find(a, den, w, pd, keys, 100);
    if (!x || !y)
        return;
    double r = x->ops_s / y->ops_s;
    bool ok = r >= want;
    char k[32];
    bench_fmt_count(k, sizeof k, keys);
    say("| %s (%s keys) | %.2f | %s %.2f | %s |\n", what, k, r, cmp, want,
        ok ? "holds" : "**missed**");
}

static void print_targets(const all_results *a, const bench_scale_out *o, uint32_t small,
                          uint32_t big)
{
    say("\n## Targets of the performance budget (DESIGN.md), from this run\n\n"
        "| target | measured | wanted | verdict |\n|---|---:|---:|---|\n");
    uint32_t ks[2] = {small, big};
    for (int i = 0; i < (small == big ? 1 : 2); i++) {
        target_ratio(a, "lmc get / raw LMDB get, 1 proc", "lmc", "lmdb", W_GET_HIT, 1, 1, ks[i],
                     0.85, ">=");
        target_ratio(a, "lmc get / raw LMDB get, 2 procs", "lmc", "lmdb", W_GET_HIT, 2, 2,
                     ks[i], 0.85, ">=");
        target_ratio(a, "lmc set / raw LMDB set, 1 proc", "lmc", "lmdb", W_SET, 1, 1, ks[i],
                     0.70, ">=");
        target_ratio(a, "lmc set / raw LMDB set, 2 procs", "lmc", "lmdb", W_SET, 2, 2, ks[i],
                     0.70, ">=");
    }
    target_ratio(a, "lmc get / Redis get, 1 proc", "lmc", "redis", W_GET_HIT, 1, 1, small, 10,
                 ">=");
    target_ratio(a, "lmc get / memcached get, 1 proc", "lmc", "memcached", W_GET_HIT, 1, 1,
                 small, 10, ">=");
    target_ratio(a, "lmc set / Redis set, 1 proc", "lmc", "redis", W_SET, 1, 1, small, 1, ">");
    target_ratio(a, "lmc set / memcached set, 1 proc", "lmc", "memcached", W_SET, 1, 1, small, 1,
                 ">");
    target_ratio(a, "lmc get 2 procs / 1 proc", "lmc", "lmc", W_GET_HIT, 2, 1, small, 1.8, "~2,");
    target_ratio(a, "lmc set 2 procs / 1 proc", "lmc", "lmc", W_SET, 2, 1, small, 1.0, ">=");
    target_ratio(a, "raw LMDB set 2 procs / 1 proc (reference)", "lmdb", "lmdb", W_SET, 2, 1,
                 small, 1.0, ">=");
    for (unsigned i = 0; i < o->n; i++) {
        const bench_scale_row *r = &o->rows[i];
        if (r->failed)
            continue;
        if (strcmp(r->metric, "lmc_delete_prefix time") == 0)
            say("| prefix delete (%s) | %.3f s | < 0.5 s | %s |\n", r->section, r->value,
                r->value < 0.5 ? "holds" : "**missed**");
        else if (strcmp(r->metric, "lmc_sweep time") == 0)
            say("| sweep of expired entries | %.2f s | < 10 s | %s |\n", r->value,
                r->value < 10 ? "holds" : "**missed**");
        else if (strcmp(r->section, "space") == 0 && strncmp(r->metric, "lmc ", 4) == 0)
            say("| lmc bytes per entry beyond key and value (%.*s) | %.1f B | <= 64 B | %s |\n",
                (int)strcspn(r->note, ";"), r->note, r->value,
                r->value <= 64 ? "holds" : "**missed**");
        else if (strcmp(r->metric, "bytes per entry beyond key and value") == 0)
            say("| lmc bytes per entry (%s) | %.1f B | <= 64 B | %s |\n", r->section, r->value,
                r->value <= 64 ? "holds" : "**missed**");
        else if (strncmp(r->metric, "bytes per entry beyond key and value, ", 38) == 0)
            say("| lmc bytes per entry (keys in random order, %s) | %.1f B | <= 64 B | %s |\n",
                r->metric + 38, r->value, r->value <= 64 ? "holds" : "**missed**");
    }
}

/* ------------------------------------------------------------------------ */
/* Main                                                                     */
/* ------------------------------------------------------------------------ */

static const bench_contender *const ALL_CONTENDERS[] = {
    &bench_lmc,        &bench_lmdb,       &bench_redis,    &bench_memcached,
    &bench_lmdb_named, &bench_lmdb_pair, &bench_lmc_lease};

static const bench_contender *contender_by_name(const char *name)
{
    for (unsigned i = 0; i < sizeof ALL_CONTENDERS / sizeof ALL_CONTENDERS[0]; i++)
        if (strcmp(name, ALL_CONTENDERS[i]->name) == 0)
            return ALL_CONTENDERS[i];
    return NULL;
}

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [options]\n"
            "Benchmark lmc side by side with raw LMDB, Redis and memcached.\n"
            "Normally started by bench/run.sh (make bench / make bench-quick), which starts\n"
            "the servers.\n\n"
            "  -q, --quick               the ~20 s smoke suite instead of the standard one\n"
            "      --csv                 CSV on stdout (tables go to stderr)\n"
            "  -d, --dir DIR             directory for the cache files (tmpfs; default: a new\n"
            "                            directory under /dev/shm)\n"
            "      --redis-socket PATH   unix socket of a running redis-server\n"
            "      --memcached-socket PATH  unix socket of a running memcached\n"
            "  -c, --contenders LIST     comma-separated, default lmc,lmdb,redis,memcached\n"
            "                            (also: lmdb-named, raw LMDB in a named database;\n"
            "                            lmdb-pair, raw LMDB committing two sets per txn;\n"
            "                            lmc-lease, lmc with its gets through lmc_get_lease_view)\n"
            "      --no-scale            skip the scale cases\n"
            "      --only-scale          only the scale cases\n"
            "      --run-ms N            timed part of each run\n"
            "      --warm-ms N           warm-up of each process before it\n"
            "      --reps N              runs per cell (median reported)\n"
            "      --profile WORKLOAD    run WORKLOAD in this process for --ops operations per\n"
            "                            contender (for perf/callgrind) and print ns/op\n"
            "      --ops N               operations of --profile (default 2000000)\n"
            "      --workloads LIST      instead of a suite: these workloads (get-hit,get-miss,\n"
            "                            set,set-ttl,add,incr,mix,mget) on one data set\n"
            "      --procs LIST          process counts of --workloads (default 1,2)\n"
            "      --keys N              entries of the --workloads/--profile data set\n"
            "                            (default 100000)\n"
            "      --value-bytes N       value size of that data set (default 100)\n"
            "  -h, --help                this help\n"
            "  -V, --version             version\n",
            argv0);
}

static int parse_contenders(const char *list, const bench_contender **out, unsigned *n)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (unsigned i = 0; i < sizeof ALL_CONTENDERS / sizeof ALL_CONTENDERS[0]; i++)
            if (strcmp(t, ALL_CONTENDERS[i]->name) == 0 && *n < 8) {
                out[(*n)++] = ALL_CONTENDERS[i];
                found = true;
            }
        if (!found) {
            fprintf(stderr, "lmcbench: unknown contender '%s'\n", t);
            return -1;
        }
    }
    return *n ? 0 : -1;
}

static int workload_by_name(const char *s)
{
    for (int w = 0; w < W_COUNT; w++)
        if (strcmp(s, bench_workload_names[w]) == 0 ||
            (w == W_MIX && strcmp(s, "mix") == 0) || (w == W_MGET && strcmp(s, "mget") == 0))
            return w;
    return -1;
}

/* Before an incr cell: every counter exists and holds "0", since memcached
 * only increments existing numbers. */
static int prepare_counters(const bench_contender *c, const bench_cfg *cfg, char *err, size_t n)
{
    void *h = c->open(cfg, err, n);
    if (!h)
        return -1;
    char key[BENCH_KSTRIDE] = "view//api/counter?id=";
    size_t sl = strlen(key);
    int rc = 0;
    for (unsigned i = 0; i < BENCH_INCR_KEYS && rc == 0; i++) {
        bench_put_digits(key + sl, i, 7);
        if (c->set(h, key, sl + 7, "0", 1, 0) != BENCH_OK) {
            snprintf(err, n, "preparing counters: %s", c->errmsg(h));
            rc = -1;
        }
    }
    c->close(h);
    return rc;
}

static int run_profile(bench_cfg *cfg, const bench_contender **cs, unsigned ncs, int w,
                       uint64_t ops, uint32_t keys, size_t vsize)
{
    bench_dataset ds;
    if (bench_dataset_make(&ds, keys, vsize)) {
        fprintf(stderr, "lmcbench: out of memory\n");
        return 1;
    }
    uint32_t *seq = w == W_MIX ? bench_seq_zipf_mix(keys, 42) : bench_seq_uniform(keys, 42);
    if (!seq)
        return 1;
    cfg->map_size = 1 * GIB;
    int fail = 0;
    for (unsigned i = 0; i < ncs; i++) {
        const bench_contender *c = cs[i];
        const char *why = c->unavailable(cfg);
        if (why) {
            printf("skip: %s: %s\n", c->name, why);
            continue;
        }
        char err[256] = "";
        if (c->load(cfg, &ds, 0, err, sizeof err) ||
            (w == W_INCR && prepare_counters(c, cfg, err, sizeof err))) {
            printf("%s: load failed: %s\n", c->name, err);
            fail = 1;
            continue;
        }
        double ns = 0;
        if (bench_run_inprocess(c, cfg, &ds, seq, w, ops, &ns, err, sizeof err)) {
            printf("%s: %s\n", c->name, err);
            fail = 1;
        } else {
            printf("%-10s %-9s %llu ops, %.1f ns/op, %.0f ops/s\n", c->name,
                   bench_workload_names[w], (unsigned long long)ops, ns, 1e9 / ns);
        }
        c->unload(cfg);
    }
    free(seq);
    bench_dataset_free(&ds);
    return fail;
}

int main(int argc, char **argv)
{
    /* Internal: the open-time probe runs in a freshly exec'ed process. */
    if (argc == 5 && strcmp(argv[1], "--open-probe") == 0)
        return bench_open_probe(argv[2], argv[3], argv[4]);
    bool quick = false, no_scale = false, only_scale = false;
    const char *dir = NULL, *clist = "lmc,lmdb,redis,memcached", *profile = NULL;
    int run_ms = -1, warm_ms = -1, reps = -1;
    uint64_t prof_ops = 2000000;
    uint32_t prof_keys = 100000;
    size_t prof_vsize = 100;
    const char *wlist = NULL, *plist = "1,2";
    bench_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    enum { O_CSV = 256, O_REDIS, O_MC, O_NOSCALE, O_ONLYSCALE, O_RUN, O_WARM, O_REPS, O_PROF,
           O_OPS, O_KEYS, O_VSIZE, O_WL, O_PL };
    static const struct option lo[] = {
        {"quick", no_argument, NULL, 'q'},
        {"csv", no_argument, NULL, O_CSV},
        {"dir", required_argument, NULL, 'd'},
        {"redis-socket", required_argument, NULL, O_REDIS},
        {"memcached-socket", required_argument, NULL, O_MC},
        {"contenders", required_argument, NULL, 'c'},
        {"no-scale", no_argument, NULL, O_NOSCALE},
        {"only-scale", no_argument, NULL, O_ONLYSCALE},
        {"run-ms", required_argument, NULL, O_RUN},
        {"warm-ms", required_argument, NULL, O_WARM},
        {"reps", required_argument, NULL, O_REPS},
        {"profile", required_argument, NULL, O_PROF},
        {"ops", required_argument, NULL, O_OPS},
        {"keys", required_argument, NULL, O_KEYS},
        {"value-bytes", required_argument, NULL, O_VSIZE},
        {"workloads", required_argument, NULL, O_WL},
        {"procs", required_argument, NULL, O_PL},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "qd:c:hV", lo, NULL)) != -1) {
        switch (opt) {
        case 'q': quick = true; break;
        case O_CSV: g_csv = true; break;
        case 'd': dir = optarg; break;
        case O_REDIS: cfg.redis_sock = optarg; break;
        case O_MC: cfg.mc_sock = optarg; break;
        case 'c': clist = optarg; break;
        case O_NOSCALE: no_scale = true; break;
        case O_ONLYSCALE: only_scale = true; break;
        case O_RUN: run_ms = atoi(optarg); break;
        case O_WARM: warm_ms = atoi(optarg); break;
        case O_REPS: reps = atoi(optarg); break;
        case O_PROF: profile = optarg; break;
        case O_OPS: prof_ops = strtoull(optarg, NULL, 10); break;
        case O_KEYS: prof_keys = (uint32_t)strtoul(optarg, NULL, 10); break;
        case O_VSIZE: prof_vsize = strtoul(optarg, NULL, 10); break;
        case O_WL: wlist = optarg; break;
        case O_PL: plist = optarg; break;
        case 'h': usage(stdout, argv[0]); return 0;
        case 'V': printf("lmcbench (lmc %s)\n", lmc_version(NULL, NULL, NULL)); return 0;
        default: usage(stderr, argv[0]); return 2;
        }
    }
    if (optind < argc || (reps == 0 || reps > 8) || run_ms == 0 || prof_keys == 0 ||
        (prof_vsize > 1024 * 1024)) {
        usage(stderr, argv[0]);
        return 2;
    }
    g_out = g_csv ? stderr : stdout;
    const bench_contender *cs[8];
    unsigned ncs;
    if (parse_contenders(clist, cs, &ncs)) {
        usage(stderr, argv[0]);
        return 2;
    }
    char made_dir[256] = "";
    if (!dir) {
        snprintf(made_dir, sizeof made_dir, "%s/lmcbench.XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(made_dir)) {
            fprintf(stderr, "lmcbench: mkdtemp %s: %s\n", made_dir, strerror(errno));
            return 2;
        }
        dir = made_dir;
    }
    cfg.dir = dir;

    int status = 0;
    if (profile) {
        int w = workload_by_name(profile);
        if (w < 0) {
            fprintf(stderr, "lmcbench: unknown workload '%s'\n", profile);
            status = 2;
        } else {
            status = run_profile(&cfg, cs, ncs, w, prof_ops, prof_keys, prof_vsize);
        }
        if (made_dir[0])
            bench_rm_rf(made_dir);
        return status;
    }

    suite s;
    if (quick)
        suite_quick(&s);
    else
        suite_full(&s);
    if (wlist && suite_custom(&s, wlist, plist, prof_keys, prof_vsize)) {
        usage(stderr, argv[0]);
        return 2;
    }
    if (run_ms > 0)
        s.plan.run_s = run_ms / 1000.0;
    if (warm_ms >= 0)
        s.plan.warm_s = warm_ms / 1000.0;
    if (reps > 0)
        s.plan.reps = (unsigned)reps;

    uint64_t t_start = bench_now_ns();
    double overhead = bench_timing_overhead_ns();
    /* In CSV the header facts come first, as '#' comment lines, then the
     * column row. */
    print_header(&s, &cfg, cs, ncs, overhead);
    if (g_csv)
        printf("%s\n", CSV_HEADER);

    all_results all = {0};
    static bench_scale_out scale;
    unsigned failures = 0;
    const bench_contender *live[8];
    unsigned nlive = 0;
    for (unsigned i = 0; i < ncs; i++)
        if (!cs[i]->unavailable(&cfg))
            live[nlive++] = cs[i];

    uint32_t small_keys = s.blocks[0].keys, big_keys = s.blocks[s.nblocks - 1].keys;
    for (unsigned bi = 0; bi < s.nblocks && !only_scale; bi++) {
        const block *b = &s.blocks[bi];
        bench_dataset ds;
        if (bench_dataset_make(&ds, b->keys, b->vsize)) {
            fprintf(stderr, "lmcbench: out of memory for a data set\n");
            return 1;
        }
        say("\n## %s\n", ds.label);
        cfg.map_size = b->map;
        uint32_t *seq_u = bench_seq_uniform(ds.n, 0x1234567 + bi);
        uint32_t *seq_z = bench_seq_zipf_mix(ds.n, 0x7654321 + bi);
        if (!seq_u || !seq_z) {
            fprintf(stderr, "lmcbench: out of memory for key sequences\n");
            return 1;
        }
        bool loaded[8] = {false};
        for (unsigned i = 0; i < nlive; i++) {
            char err[256] = "";
            uint64_t t0 = bench_now_ns();
            if (live[i]->load(&cfg, &ds, 0, err, sizeof err)) {
                say("\n%s: loading failed: %s\n", live[i]->name, err);
                fprintf(stderr, "FAIL: %s: loading %s: %s\n", live[i]->name, ds.label, err);
                failures++;
                continue;
            }
            loaded[i] = true;
            fprintf(stderr, "loaded %s into %s in %.2f s\n", ds.label, live[i]->name,
                    (double)(bench_now_ns() - t0) / 1e9);
        }
        /* Space right after loading, before any workload rewrites entries. */
        if (b->space)
            bench_scale_space(&cfg, &ds, ds.label, live, nlive, &scale);
        /* Cells grouped by workload, so that each table is printed as soon
         * as its last cell is done. */
        for (unsigned ci = 0; ci < b->ncells;) {
            int w = b->cells[ci].w;
            bench_result res[64];
            unsigned nres = 0;
            for (; ci < b->ncells && b->cells[ci].w == w; ci++) {
                unsigned first = nres;
                for (unsigned i = 0; i < nlive; i++) {
                    if (!loaded[i])
                        continue;
                    bench_result *r = &res[nres++];
                    bench_result_init(r, live[i], &ds, w, b->cells[ci].procs);
                    char err[256] = "";
                    if (w == W_INCR && prepare_counters(live[i], &cfg, err, sizeof err))
                        snprintf(r->err, sizeof r->err, "%s", err);
                }
                /* Repetitions interleaved across contenders. */
                for (unsigned rep = 0; rep < s.plan.reps; rep++)
                    for (unsigned j = first; j < nres; j++)
                        if (!res[j].err[0])
                            bench_run_rep(contender_by_name(res[j].contender), &cfg, &ds, seq_u,
                                          seq_z, &s.plan, &res[j]);
                for (unsigned j = first; j < nres; j++) {
                    bench_result *r = &res[j];
                    bench_result_finish(r);
                    if (r->err[0]) {
                        failures++;
                        fprintf(stderr, "FAIL: %s %s %u procs (%s): %s\n", r->contender,
                                bench_workload_names[w], r->nprocs, ds.label, r->err);
                    }
                }
            }
            print_table(b, ds.label, w, res, nres);
            for (unsigned j = 0; j < nres; j++) {
                double lmc_ops = 0;
                for (unsigned k = 0; k < nres; k++)
                    if (res[k].nprocs == res[j].nprocs && strcmp(res[k].contender, "lmc") == 0)
                        lmc_ops = res[k].ops_s;
                if (g_csv)
                    csv_result(&res[j], lmc_ops, ds.label);
                if (all.n == all.cap) {
                    all.cap = all.cap ? all.cap * 2 : 64;
                    all.r = realloc(all.r, all.cap * sizeof *all.r);
                    if (!all.r)
                        return 1;
                }
                all.r[all.n++] = res[j];
            }
        }
        if (b->open && loaded[0] && live[0] == &bench_lmc)
            bench_scale_open(&cfg, &ds, &s.scale, &scale);
        for (unsigned i = 0; i < nlive; i++)
            if (loaded[i])
                live[i]->unload(&cfg);
        free(seq_u);
        free(seq_z);
        bench_dataset_free(&ds);
    }

    bool have_lmc = nlive > 0 && live[0] == &bench_lmc;
    if (!no_scale && have_lmc) {
        fprintf(stderr, "scale cases ...\n");
        cfg.map_size = s.scale.quick ? 128 * MIB : 1 * GIB;
        bench_scale_prefix(&cfg, &s.scale, false, &scale);
        bench_scale_prefix(&cfg, &s.scale, true, &scale);
        bench_scale_sweep(&cfg, &s.scale, &scale);
        bench_scale_order(&cfg, &s.scale, &scale);
        bench_scale_pss(&cfg, &s.scale, &scale);
    }
    if (scale.n)
        print_scale(&scale);
    for (unsigned i = 0; i < scale.n; i++)
        if (scale.rows[i].failed) {
            failures++;
            fprintf(stderr, "FAIL: scale %s: %s\n", scale.rows[i].section, scale.rows[i].note);
        }
    print_targets(&all, &scale, small_keys, big_keys);
    char la[128];
    loadavg(la, sizeof la);
    say("\n");
    meta("load average at end", "%s", la);
    meta("CPU available at end", "%.2f of %ld", bench_cpu_available(0.2),
         sysconf(_SC_NPROCESSORS_ONLN));
    meta("total time", "%.0f s", (double)(bench_now_ns() - t_start) / 1e9);
    meta("result", "%u cells, %u failures", all.n, failures);
    free(all.r);
    if (made_dir[0])
        bench_rm_rf(made_dir);
    return status || failures ? 1 : 0;
}
