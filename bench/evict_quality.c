/*
 * bench/evict_quality.c - how good lmc's eviction is: the hit ratio of a
 * read-through cache on a full map under a skewed (Zipf) workload, against
 * an exact LRU cache and a cache that evicts at random, both simulated on
 * the same trace with lmc's mean number of entries as their capacity.
 *
 * Each operation reads a key; on a miss it stores the key without TTL, as a
 * read-through cache does, and every --sweep-every operations the sweeper
 * runs (the writers also evict by themselves when the map fills).  The first
 * half of the operations warms the cache; the hit ratio is that of the
 * second half.  Popular keys are spread through the key space (ranks are
 * shuffled onto key names), as they are in most caches; with --clustered
 * they sit next to each other (key i has rank i), as when one prefix is
 * hot.  The figure to read
 * is "share": where lmc lands between random eviction (0) and exact LRU (1).
 *
 *   make bench-evict          (EVICT_ARGS="--zipf 0.8 --keys 400000" ...)
 *
 * Single process: what is measured is the eviction policy, not speed.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lmc.h"

typedef struct cfg {
    unsigned keys;
    uint64_t ops;
    double zipf;
    unsigned map_mib;
    unsigned value_bytes;
    unsigned sweep_every;
    uint64_t seed;
    unsigned rate; /* operations per second, 0 = as fast as it goes */
    bool clustered; /* popular keys next to each other in key order */
    const char *dir;
} cfg;

static double rnd01(uint64_t *s)
{
    return (double)(bench_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* The trace: key ids, the same for lmc and for the simulations. */
static uint32_t *make_trace(const cfg *c)
{
    double *cdf = malloc(sizeof *cdf * c->keys);
    uint32_t *perm = malloc(sizeof *perm * c->keys);
    uint32_t *t = malloc(sizeof *t * c->ops);
    if (!cdf || !perm || !t) {
        fprintf(stderr, "evict_quality: out of memory for the trace\n");
        exit(2);
    }
    double sum = 0;
    for (unsigned i = 0; i < c->keys; i++)
        cdf[i] = (sum += 1.0 / pow((double)(i + 1), c->zipf));
    uint64_t s = c->seed | 1;
    for (unsigned i = 0; i < c->keys; i++)
        perm[i] = i;
    for (unsigned i = c->keys - 1; i > 0 && !c->clustered; i--) {
        unsigned j = (unsigned)(bench_rand(&s) % (i + 1));
        uint32_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (uint64_t n = 0; n < c->ops; n++) {
        double u = rnd01(&s) * sum;
        unsigned lo = 0, hi = c->keys - 1;
        while (lo < hi) {
            unsigned mid = lo + (hi - lo) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        t[n] = perm[lo];
    }
    free(cdf);
    free(perm);
    return t;
}

/* Exact LRU of capacity cap over the trace: hits in the second half. */
static uint64_t sim_lru(const cfg *c, const uint32_t *t, uint64_t cap)
{
    int64_t *prev = malloc(sizeof *prev * c->keys), *next = malloc(sizeof *next * c->keys);
    unsigned char *in = calloc(c->keys, 1);
    if (!prev || !next || !in)
        exit(2);
    int64_t head = -1, tail = -1; /* head: most recent */
    uint64_t size = 0, hits = 0;
    for (uint64_t n = 0; n < c->ops; n++) {
        uint32_t k = t[n];
        if (in[k]) {
            if (n >= c->ops / 2)
                hits++;
            if (head == k)
                continue;
            /* unlink */
            next[prev[k]] = next[k];
            if (next[k] >= 0)
                prev[next[k]] = prev[k];
            else
                tail = prev[k];
        } else {
            if (size == cap) {
                int64_t v = tail;
                tail = prev[v];
                if (tail >= 0)
                    next[tail] = -1;
                else
                    head = -1;
                in[v] = 0;
                size--;
            }
            in[k] = 1;
            size++;
        }
        prev[k] = -1;
        next[k] = head;
        if (head >= 0)
            prev[head] = k;
        head = k;
        if (tail < 0)
            tail = k;
    }
    free(prev);
    free(next);
    free(in);
    return hits;
}

/* Random eviction of capacity cap over the trace: hits in the second half. */
static uint64_t sim_random(const cfg *c, const uint32_t *t, uint64_t cap)
{
    int64_t *pos = malloc(sizeof *pos * c->keys);
    uint32_t *slots = malloc(sizeof *slots * (cap ? cap : 1));
    if (!pos || !slots)
        exit(2);
    for (unsigned i = 0; i < c->keys; i++)
        pos[i] = -1;
    uint64_t size = 0, hits = 0, s = c->seed ^ 0x5deece66dULL;
    for (uint64_t n = 0; n < c->ops; n++) {
        uint32_t k = t[n];
        if (pos[k] >= 0) {
            if (n >= c->ops / 2)
                hits++;
            continue;
        }
        if (size == cap) {
            uint64_t i = bench_rand(&s) % size;
            pos[slots[i]] = -1;
            slots[i] = k;
            pos[k] = (int64_t)i;
        } else {
            slots[size] = k;
            pos[k] = (int64_t)size++;
        }
    }
    free(pos);
    free(slots);
    return hits;
}

static int run_lmc(const cfg *c, const uint32_t *t, uint64_t *hits, uint64_t *mean_entries)
{
    lmc_options o = {.map_size = (uint64_t)c->map_mib << 20};
    lmc *h = NULL;
    int rc = lmc_open(&h, c->dir, &o);
    if (rc) {
        fprintf(stderr, "evict_quality: lmc_open %s: %s\n", c->dir, lmc_errmsg(NULL));
        return rc;
    }
    char *val = malloc(c->value_bytes), key[32], buf[256];
    if (!val)
        exit(2);
    memset(val, 'v', c->value_bytes);
    uint64_t h2 = 0, samples = 0, sum = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (uint64_t n = 0; n < c->ops; n++) {
        if (c->rate && n % 64 == 0) {
            /* Paced: recency has 64 ms units, and at full speed a cache of
             * tens of thousands of entries turns over within one unit,
             * where no LRU can tell its entries apart.  A real cache sees
             * far fewer operations per unit. */
            uint64_t due_ns = n * 1000000000ULL / c->rate;
            struct timespec at = {start.tv_sec + (time_t)(due_ns / 1000000000ULL),
                                  start.tv_nsec + (long)(due_ns % 1000000000ULL)};
            if (at.tv_nsec >= 1000000000L) {
                at.tv_sec++;
                at.tv_nsec -= 1000000000L;
            }
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
        }
        int kl = snprintf(key, sizeof key, "k/%08u", t[n]);
        size_t vl;
        rc = lmc_get(h, key, (size_t)kl, buf, sizeof buf, &vl);
        if (rc == LMC_OK || rc == LMC_ERANGE) {
            if (n >= c->ops / 2)
                h2++;
        } else if (rc == LMC_NOTFOUND) {
            rc = lmc_set(h, key, (size_t)kl, val, c->value_bytes, LMC_TTL_NEVER);
            if (rc) {
                fprintf(stderr, "evict_quality: lmc_set: %s\n", lmc_errmsg(h));
                break;
            }
        } else {
            fprintf(stderr, "evict_quality: lmc_get: %s\n", lmc_errmsg(h));
            break;
        }
        if ((n + 1) % c->sweep_every == 0) {
            lmc_sweep_result r;
            if ((rc = lmc_sweep(h, NULL, &r))) {
                fprintf(stderr, "evict_quality: lmc_sweep: %s\n", lmc_errmsg(h));
                break;
            }
            lmc_stat st;
            if (n >= c->ops / 2 && lmc_stats(h, &st) == LMC_OK) {
                sum += st.entries;
                samples++;
            }
        }
    }
    free(val);
    lmc_close(h);
    *hits = h2;
    *mean_entries = samples ? sum / samples : 0;
    return rc == LMC_OK || rc == LMC_NOTFOUND || rc == LMC_ERANGE ? 0 : rc;
}

static void usage(const char *me)
{
    fprintf(stderr,
            "usage: %s [--dir DIR] [--keys N] [--ops N] [--zipf S] [--map-mib N]\n"
            "          [--value-bytes N] [--sweep-every N] [--seed N] [--rate OPS_PER_S]\n"
            "          [--clustered]\n"
            "The hit ratio of lmc on a full map under a Zipf workload, against exact LRU\n"
            "and random eviction simulated with lmc's mean number of entries.\n",
            me);
}

int main(int argc, char **argv)
{
    cfg c = {200000, 4000000, 0.9, 16, 100, 20000, 42, 0, false, NULL};
    static const struct option lo[] = {
        {"dir", required_argument, 0, 'd'},         {"keys", required_argument, 0, 'k'},
        {"ops", required_argument, 0, 'n'},         {"zipf", required_argument, 0, 'z'},
        {"map-mib", required_argument, 0, 'm'},     {"value-bytes", required_argument, 0, 'v'},
        {"sweep-every", required_argument, 0, 's'}, {"seed", required_argument, 0, 'r'},
        {"rate", required_argument, 0, 'R'},        {"clustered", no_argument, 0, 'C'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "d:h", lo, NULL)) != -1) {
        switch (opt) {
        case 'd': c.dir = optarg; break;
        case 'k': c.keys = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'n': c.ops = strtoull(optarg, NULL, 10); break;
        case 'z': c.zipf = strtod(optarg, NULL); break;
        case 'm': c.map_mib = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'v': c.value_bytes = (unsigned)strtoul(optarg, NULL, 10); break;
        case 's': c.sweep_every = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': c.seed = strtoull(optarg, NULL, 10); break;
        case 'R': c.rate = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'C': c.clustered = true; break;
        case 'h': usage(argv[0]); return 0;
        default: usage(argv[0]); return 2;
        }
    }
    if (c.keys < 2 || c.ops < 2 || c.map_mib < 1 || c.sweep_every < 1 || c.zipf < 0 ||
        c.value_bytes < 1) {
        usage(argv[0]);
        return 2;
    }
    char tmpl[] = "/dev/shm/lmc-evictq.XXXXXX";
    char dir[4096];
    bool own = !c.dir;
    if (own) {
        if (!mkdtemp(tmpl)) {
            fprintf(stderr, "evict_quality: mkdtemp: %s\n", strerror(errno));
            return 2;
        }
        snprintf(dir, sizeof dir, "%s/cache", tmpl);
        c.dir = dir;
    }
    uint32_t *t = make_trace(&c);
    uint64_t hits = 0, cap = 0;
    int rc = run_lmc(&c, t, &hits, &cap);
    if (own) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
        if (system(cmd) != 0)
            fprintf(stderr, "evict_quality: could not remove %s\n", tmpl);
    }
    if (rc)
        return 1;
    if (cap == 0) {
        fprintf(stderr, "evict_quality: no sweep ran in the measured half (raise --ops or lower "
                        "--sweep-every)\n");
        return 2;
    }
    uint64_t measured = c.ops - c.ops / 2;
    char ratebuf[32];
    if (c.rate)
        snprintf(ratebuf, sizeof ratebuf, "%u", c.rate);
    else
        snprintf(ratebuf, sizeof ratebuf, "unpaced");
    uint64_t lru = sim_lru(&c, t, cap), rnd_hits = sim_random(&c, t, cap);
    double hl = (double)hits / (double)measured, hu = (double)lru / (double)measured,
           hr = (double)rnd_hits / (double)measured;
    printf("| keys | ops | ops/s | zipf | map | mean entries | lmc | exact LRU | random | share |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    printf("| %u | %llu | %s | %.2f | %u MiB | %llu | %.4f | %.4f | %.4f | %.2f |\n", c.keys,
           (unsigned long long)c.ops, ratebuf, c.zipf, c.map_mib, (unsigned long long)cap, hl, hu, hr,
           hu > hr ? (hl - hr) / (hu - hr) : 0.0);
    free(t);
    return 0;
}
