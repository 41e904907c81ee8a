/*
 * prefork_demo.c - the main job of lmc as a user sees it: a prefork server.
 *
 * A master process opens the cache and forks N workers, as gunicorn
 * --preload or Apache prefork do; the workers use the handle they inherited
 * (lmc reopens it for each of them on first use).  Each worker serves a
 * stream of simulated requests for pages like "view//api/items?page=N",
 * with N drawn from a Zipf distribution (a few pages are very popular, most
 * are rare): it looks the page up in the shared cache and, on a miss,
 * "computes" it (a busy loop of --compute-us microseconds standing in for
 * templates and database queries) and stores it with a TTL.
 *
 * To show what sharing buys, every worker also replays its own request
 * stream against a simulated private cache (one per worker, same TTL, no
 * size limit: the best case of a per-process cache such as Flask-Caching's
 * SimpleCache) and counts the computations that cache would have needed.
 * The master prints progress once a second and, at the end, the shared hit
 * ratio and the computations the shared cache saved.
 *
 *   prefork_demo CACHE_DIR [--workers 4] [--seconds 5] [--keys 20000]
 *                [--zipf 1.0] [--ttl-ms 2000] [--compute-us 200] [--value 1024]
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lmc.h"

typedef struct config {
    const char *path;
    int workers;
    double seconds;
    uint32_t keys;
    double zipf;
    int64_t ttl_ms;
    unsigned compute_us;
    size_t value;
} config;

/* What each worker reports, in memory shared with the master. */
typedef struct worker_stats {
    _Atomic uint64_t requests;
    _Atomic uint64_t computed;         /* misses of the shared cache */
    _Atomic uint64_t private_computed; /* misses a private cache would have had */
    _Atomic int done;
    _Atomic int failed;
} worker_stats;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Cumulative distribution of Zipf(s) over 1..n, for sampling by bisection. */
static double *zipf_cdf(uint32_t n, double s)
{
    double *cdf = malloc(n * sizeof *cdf);
    if (!cdf)
        return NULL;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += 1.0 / pow((double)(i + 1), s);
    double acc = 0;
    for (uint32_t i = 0; i < n; i++) {
        acc += 1.0 / pow((double)(i + 1), s) / sum;
        cdf[i] = acc;
    }
    cdf[n - 1] = 1.0;
    return cdf;
}

static uint32_t zipf_draw(const double *cdf, uint32_t n, unsigned *seed)
{
    double u = (double)rand_r(seed) / ((double)RAND_MAX + 1.0);
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Stand-in for rendering a page: burn compute_us of CPU, then write a page
 * that names its key, so that a wrong value would be visible. */
static size_t compute_page(char *out, size_t cap, uint32_t page, unsigned compute_us)
{
    double until = now_s() + compute_us / 1e6;
    volatile uint64_t x = page;
    while (now_s() < until)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    int n = snprintf(out, cap, "<html>items page %u</html>", page);
    memset(out + n, ' ', cap - (size_t)n);
    return cap;
}

static int worker(lmc *c, const config *cfg, const double *cdf, worker_stats *st, int id)
{
    unsigned seed = (unsigned)(id * 7919 + getpid());
    char key[64], *buf = malloc(cfg->value), *page = malloc(cfg->value);
    /* The simulated private cache: each key's expiry time, 0 = absent. */
    int64_t *priv = calloc(cfg->keys, sizeof *priv);
    if (!buf || !page || !priv)
        return 1;
    double end = now_s() + cfg->seconds;
    while (now_s() < end) {
        uint32_t n = zipf_draw(cdf, cfg->keys, &seed) + 1;
        int kl = snprintf(key, sizeof key, "view//api/items?page=%u", n);
        size_t vlen = 0;
        int rc = lmc_get(c, key, (size_t)kl, buf, cfg->value, &vlen);
        if (rc == LMC_NOTFOUND) {
            size_t len = compute_page(page, cfg->value, n, cfg->compute_us);
            rc = lmc_set(c, key, (size_t)kl, page, len, cfg->ttl_ms);
            atomic_fetch_add(&st->computed, 1);
        } else if (rc == LMC_OK) {
            char want[64];
            int wl = snprintf(want, sizeof want, "<html>items page %u</html>", n);
            if (vlen != cfg->value || memcmp(buf, want, (size_t)wl) != 0) {
                fprintf(stderr, "worker %d: wrong page for %s\n", id, key);
                return 1;
            }
        }
        if (rc != LMC_OK) {
            fprintf(stderr, "worker %d: %s: %s (%s)\n", id, key, lmc_strerror(rc), lmc_errmsg(c));
            return 1;
        }
        int64_t t = now_ms();
        if (priv[n - 1] <= t) {
            priv[n - 1] = t + cfg->ttl_ms;
            atomic_fetch_add(&st->private_computed, 1);
        }
        atomic_fetch_add(&st->requests, 1);
    }
    free(buf);
    free(page);
    free(priv);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: prefork_demo CACHE_DIR [--workers N] [--seconds S] [--keys N] [--zipf S]\n"
               "                    [--ttl-ms MS] [--compute-us US] [--value BYTES]\n");
}

static void sum(const worker_stats *w, int n, uint64_t *req, uint64_t *comp, uint64_t *priv)
{
    *req = *comp = *priv = 0;
    for (int i = 0; i < n; i++) {
        *req += atomic_load(&w[i].requests);
        *comp += atomic_load(&w[i].computed);
        *priv += atomic_load(&w[i].private_computed);
    }
}

int main(int argc, char **argv)
{
    config cfg = {NULL, 4, 5.0, 20000, 1.0, 2000, 200, 1024};
    static const struct option opts[] = {
        {"workers", required_argument, NULL, 'w'}, {"seconds", required_argument, NULL, 's'},
        {"keys", required_argument, NULL, 'k'},    {"zipf", required_argument, NULL, 'z'},
        {"ttl-ms", required_argument, NULL, 't'},  {"compute-us", required_argument, NULL, 'c'},
        {"value", required_argument, NULL, 'v'},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'w': cfg.workers = atoi(optarg); break;
        case 's': cfg.seconds = atof(optarg); break;
        case 'k': cfg.keys = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'z': cfg.zipf = atof(optarg); break;
        case 't': cfg.ttl_ms = strtoll(optarg, NULL, 10); break;
        case 'c': cfg.compute_us = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'v': cfg.value = strtoul(optarg, NULL, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc || cfg.workers < 1 || cfg.workers > 64 || cfg.keys < 1 ||
        cfg.seconds <= 0 || cfg.ttl_ms < 1 || cfg.value < 64) {
        usage(stderr);
        return 2;
    }
    cfg.path = argv[optind];

    /* The master opens the cache before forking, like gunicorn --preload. */
    lmc *c;
    lmc_options lo = {.map_size = 64u << 20};
    int rc = lmc_open(&c, cfg.path, &lo);
    if (rc) {
        fprintf(stderr, "lmc_open %s: %s\n", cfg.path, lmc_errmsg(NULL));
        return 2;
    }
    double *cdf = zipf_cdf(cfg.keys, cfg.zipf);
    worker_stats *ws = mmap(NULL, (size_t)cfg.workers * sizeof *ws, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!cdf || ws == MAP_FAILED) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    memset(ws, 0, (size_t)cfg.workers * sizeof *ws);
    printf("prefork demo: %d workers for %.0f s, Zipf(%.2f) over %u pages, TTL %lld ms, "
           "%u us to compute a page\n", cfg.workers, cfg.seconds, cfg.zipf, cfg.keys,
           (long long)cfg.ttl_ms, cfg.compute_us);
    fflush(stdout);
    pid_t pids[64];
    for (int i = 0; i < cfg.workers; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 2;
        }
        if (pids[i] == 0) {
            int r = worker(c, &cfg, cdf, &ws[i], i);
            atomic_store(&ws[i].failed, r);
            atomic_store(&ws[i].done, 1);
            lmc_close(c);
            _exit(r);
        }
    }
    /* Progress once a second, from the master's own view of the cache. */
    double start = now_s();
    for (;;) {
        int done = 0;
        for (int i = 0; i < cfg.workers; i++)
            done += atomic_load(&ws[i].done);
        if (done == cfg.workers)
            break;
        struct timespec pause = {0, 100000000};
        nanosleep(&pause, NULL);
        static double next = 1.0;
        if (now_s() - start >= next) {
            next += 1.0;
            uint64_t req, comp, priv;
            sum(ws, cfg.workers, &req, &comp, &priv);
            lmc_stat st;
            if (lmc_stats(c, &st) == 0)
                printf("  %4.1fs  requests %8llu  shared hit ratio %5.1f%%  entries %6llu  "
                       "fill %4.1f%%  processes %llu\n", now_s() - start,
                       (unsigned long long)req,
                       st.counters.gets ? 100.0 * st.counters.hits / st.counters.gets : 0.0,
                       (unsigned long long)st.entries, 100 * st.fill,
                       (unsigned long long)st.processes);
            fflush(stdout);
        }
    }
    int failed = 0;
    for (int i = 0; i < cfg.workers; i++) {
        int status;
        while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    uint64_t req, comp, priv;
    sum(ws, cfg.workers, &req, &comp, &priv);
    printf("\nrequests served:                  %llu by %d workers\n", (unsigned long long)req,
           cfg.workers);
    printf("pages computed, one shared cache: %llu (hit ratio %.1f%%)\n",
           (unsigned long long)comp, req ? 100.0 * (double)(req - comp) / (double)req : 0.0);
    printf("pages computed, a private cache per worker (simulated): %llu (hit ratio %.1f%%)\n",
           (unsigned long long)priv, req ? 100.0 * (double)(req - priv) / (double)req : 0.0);
    if (priv > comp)
        printf("the shared cache saved %llu computations (%.0f%% of what private caches "
               "would compute)\n", (unsigned long long)(priv - comp),
               100.0 * (double)(priv - comp) / (double)priv);
    lmc_close(c);
    free(cdf);
    if (failed) {
        fprintf(stderr, "%d worker(s) failed\n", failed);
        return 1;
    }
    return 0;
}
