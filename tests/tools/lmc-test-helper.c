/*
 * lmc-test-helper.c - bulk loads and worker processes for the tool tests.
 *
 * The tool tests drive lmc, lmc-sweep and lmc-stats as a user would, from
 * shell scripts.  Two things are too slow or impossible with one process per
 * operation: filling a map with thousands of entries, and worker processes
 * that hammer the cache while the sweeper runs.  This helper does those, over
 * the public API only, like any application would.
 *
 *   lmc-test-helper fill PATH PREFIX COUNT VSIZE TTL_MS
 *       store PREFIX0 .. PREFIX<COUNT-1>, values of VSIZE bytes
 *   lmc-test-helper fill-until PATH PREFIX VSIZE FILL
 *       store PREFIX0, PREFIX1, ... (no TTL) until the map's fill reaches
 *       FILL (0..1); print how many were stored
 *   lmc-test-helper read PATH PREFIX COUNT
 *       get PREFIX0 .. PREFIX<COUNT-1> (stamping their recency as any worker
 *       would); print how many missed
 *   lmc-test-helper worker PATH ID SECONDS
 *       sets with short TTLs, gets, incrs and deletes until SIGTERM or
 *       SECONDS pass; print the operations done; exit 0 only if every call
 *       returned an expected code
 *   lmc-test-helper gen-read PATH KEY
 *       print KEY's invalidation token (lmc_gen_read)
 *   lmc-test-helper set-if-gen PATH KEY VALUE TOKEN
 *       lmc_set_if_gen: exit 0 if stored, 1 if refused (LMC_ECHANGED)
 */
#define _GNU_SOURCE

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmc.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int open_cache(lmc **c, const char *path)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.flags = LMC_OPEN_NOCREATE;
    int rc = lmc_open(c, path, &o);
    if (rc)
        fprintf(stderr, "helper: open %s: %s (%s)\n", path, lmc_strerror(rc), lmc_errmsg(NULL));
    return rc;
}

static int fill(const char *path, const char *prefix, long count, long vsize, long ttl)
{
    char *val = malloc((size_t)vsize + 1);
    if (!val)
        return 2;
    memset(val, 'v', (size_t)vsize);
    lmc *c;
    if (open_cache(&c, path)) {
        free(val);
        return 2;
    }
    int status = 0;
    for (long i = 0; i < count; i++) {
        char key[256];
        int kl = snprintf(key, sizeof key, "%s%ld", prefix, i);
        int rc = lmc_set(c, key, (size_t)kl, val, (size_t)vsize, ttl);
        if (rc) {
            fprintf(stderr, "helper: set %s: %s (%s)\n", key, lmc_strerror(rc), lmc_errmsg(c));
            status = 2;
            break;
        }
    }
    free(val);
    lmc_close(c);
    return status;
}

static int fill_until(const char *path, const char *prefix, long vsize, double target)
{
    char *val = malloc((size_t)vsize + 1);
    if (!val)
        return 2;
    memset(val, 'c', (size_t)vsize);
    lmc *c;
    if (open_cache(&c, path)) {
        free(val);
        return 2;
    }
    int status = 0;
    long i = 0;
    for (;; i++) {
        if (i % 8 == 0) {
            lmc_stat st;
            int rc = lmc_stats(c, &st);
            if (rc) {
                fprintf(stderr, "helper: stats: %s\n", lmc_strerror(rc));
                status = 2;
                break;
            }
            if (st.fill >= target)
                break;
            if (st.counters.map_full) {
                fprintf(stderr, "helper: the map filled up before reaching %.3f\n", target);
                status = 2;
                break;
            }
        }
        char key[256];
        int kl = snprintf(key, sizeof key, "%s%ld", prefix, i);
        int rc = lmc_set(c, key, (size_t)kl, val, (size_t)vsize, LMC_TTL_NEVER);
        if (rc) {
            fprintf(stderr, "helper: set %s: %s (%s)\n", key, lmc_strerror(rc), lmc_errmsg(c));
            status = 2;
            break;
        }
    }
    printf("%ld\n", i);
    free(val);
    lmc_close(c);
    return status;
}

static int read_keys(const char *path, const char *prefix, long count)
{
    lmc *c;
    if (open_cache(&c, path))
        return 2;
    long misses = 0;
    int status = 0;
    for (long i = 0; i < count; i++) {
        char key[256], buf[4096];
        int kl = snprintf(key, sizeof key, "%s%ld", prefix, i);
        size_t vl;
        int rc = lmc_get(c, key, (size_t)kl, buf, sizeof buf, &vl);
        if (rc == LMC_NOTFOUND) {
            misses++;
        } else if (rc != 0) {
            fprintf(stderr, "helper: get %s: %s (%s)\n", key, lmc_strerror(rc), lmc_errmsg(c));
            status = 2;
            break;
        }
    }
    printf("%ld\n", misses);
    lmc_close(c);
    return status;
}

static int worker(const char *path, long id, long seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    lmc *c;
    if (open_cache(&c, path))
        return 2;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t sets = 0, gets = 0, hits = 0, incrs = 0, dels = 0, bad = 0;
    unsigned seed = (unsigned)id * 2654435761u + 1;
    char val[200];
    memset(val, 'w', sizeof val);
    for (uint64_t i = 0; !stop; i++) {
        char key[64];
        unsigned r = rand_r(&seed);
        int kl = snprintf(key, sizeof key, "w%ld/%u", id, r % 2000);
        int rc;
        switch (i % 8) {
        case 0: case 1: case 2:
            /* Short TTLs, so that every sweep pass finds expired entries. */
            rc = lmc_set(c, key, (size_t)kl, val, 50 + r % 150, 1 + (int64_t)(r % 30));
            sets++;
            break;
        case 3:
            rc = lmc_set(c, key, (size_t)kl, val, 100, LMC_TTL_NEVER);
            sets++;
            break;
        case 4:
            rc = lmc_incr(c, "counter", 7, 1, NULL, LMC_TTL_NEVER);
            incrs++;
            break;
        case 5:
            rc = lmc_delete(c, key, (size_t)kl);
            dels++;
            if (rc == LMC_NOTFOUND)
                rc = 0;
            break;
        default: {
            char buf[256];
            size_t vl;
            rc = lmc_get(c, key, (size_t)kl, buf, sizeof buf, &vl);
            gets++;
            if (rc == 0)
                hits++;
            else if (rc == LMC_NOTFOUND)
                rc = 0;
        }
        }
        if (rc) {
            if (bad++ < 5)
                fprintf(stderr, "helper: worker %ld: %s (%s)\n", id, lmc_strerror(rc),
                        lmc_errmsg(c));
        }
        if (i % 256 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - t0.tv_sec >= seconds)
                break;
        }
    }
    printf("worker %ld: sets=%" PRIu64 " gets=%" PRIu64 " hits=%" PRIu64 " incrs=%" PRIu64
           " dels=%" PRIu64 " errors=%" PRIu64 "\n",
           id, sets, gets, hits, incrs, dels, bad);
    lmc_close(c);
    return bad ? 1 : 0;
}

static int gen_read(const char *path, const char *key)
{
    lmc *c;
    if (open_cache(&c, path))
        return 2;
    uint64_t g;
    int rc = lmc_gen_read(c, key, strlen(key), &g);
    if (rc == 0)
        printf("%" PRIu64 "\n", g);
    else
        fprintf(stderr, "helper: gen-read: %s\n", lmc_strerror(rc));
    lmc_close(c);
    return rc ? 2 : 0;
}

static int set_if_gen(const char *path, const char *key, const char *val, const char *tok)
{
    lmc *c;
    if (open_cache(&c, path))
        return 2;
    uint64_t g = strtoull(tok, NULL, 10);
    int rc = lmc_set_if_gen(c, key, strlen(key), val, strlen(val), 0, g);
    if (rc && rc != LMC_ECHANGED)
        fprintf(stderr, "helper: set-if-gen: %s\n", lmc_strerror(rc));
    lmc_close(c);
    return rc == 0 ? 0 : rc == LMC_ECHANGED ? 1 : 2;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "gen-read") == 0)
        return gen_read(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "set-if-gen") == 0)
        return set_if_gen(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 7 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2], argv[3], atol(argv[4]), atol(argv[5]), atol(argv[6]));
    if (argc == 6 && strcmp(argv[1], "fill-until") == 0)
        return fill_until(argv[2], argv[3], atol(argv[4]), atof(argv[5]));
    if (argc == 5 && strcmp(argv[1], "read") == 0)
        return read_keys(argv[2], argv[3], atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "worker") == 0)
        return worker(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: lmc-test-helper fill PATH PREFIX COUNT VSIZE TTL_MS\n"
                    "       lmc-test-helper fill-until PATH PREFIX VSIZE FILL\n"
                    "       lmc-test-helper read PATH PREFIX COUNT\n"
                    "       lmc-test-helper worker PATH ID SECONDS\n");
    return 2;
}
