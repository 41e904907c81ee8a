/*
 * common.c - the benchmark's building blocks that do not depend on any
 * contender: the latency histogram, the data sets (keys shaped like the
 * view-cache keys of a web application), the precomputed key sequences
 * (uniform and Zipf), and small formatting and file helpers.
 */
#include "bench.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Histogram                                                                */
/* ------------------------------------------------------------------------ */

void bench_hist_reset(bench_hist *h)
{
    memset(h, 0, sizeof *h);
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* Lowest value that falls in bucket i, and the width of the bucket. */
static void bucket_range(unsigned i, double *low, double *width)
{
    if (i < 2u * BENCH_HIST_SUB) {
        *low = i;
        *width = 1;
        return;
    }
    unsigned shift = i / BENCH_HIST_SUB - 1u;
    uint64_t m = i % BENCH_HIST_SUB + BENCH_HIST_SUB;
    *low = (double)(m << shift);
    *width = (double)(1ull << shift);
}

double bench_hist_quantile(const bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    /* The rank of the wanted sample, 1-based, as "nearest rank" does it. */
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            double low, width;
            bucket_range(i, &low, &width);
            double mid = low + width / 2;
            return mid > (double)h->max ? (double)h->max : mid;
        }
    }
    return (double)h->max;
}

/* ------------------------------------------------------------------------ */
/* Data sets                                                                */
/* ------------------------------------------------------------------------ */

void bench_put_digits(char *p, uint64_t v, unsigned digits)
{
    for (unsigned i = digits; i-- > 0;) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

static int dataset_alloc(bench_dataset *ds, uint32_t n, size_t vsize)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->vsize = vsize;
    ds->keys = malloc((size_t)n * BENCH_KSTRIDE);
    ds->klen = malloc(n);
    ds->val = malloc(vsize ? vsize : 1);
    if (!ds->keys || !ds->klen || !ds->val) {
        bench_dataset_free(ds);
        return -1;
    }
    /* A value that is not all one byte, so that nothing along the way can
     * get away with compressing it. */
    for (size_t i = 0; i < vsize; i++)
        ds->val[i] = (char)('a' + (i * 7 + i / 26) % 26);
    char cnt[32];
    bench_fmt_count(cnt, sizeof cnt, n);
    if (vsize >= 1024 && vsize % 1024 == 0)
        snprintf(ds->label, sizeof ds->label, "%s keys x %zu KiB", cnt, vsize / 1024);
    else
        snprintf(ds->label, sizeof ds->label, "%s keys x %zu B", cnt, vsize);
    return 0;
}

static void key_write(bench_dataset *ds, uint32_t i, const char *stem, uint32_t num)
{
    char *k = ds->keys + (size_t)i * BENCH_KSTRIDE;
    size_t sl = strlen(stem);
    memcpy(k, stem, sl);
    bench_put_digits(k + sl, num, 7);
    k[sl + 7] = 0;
    ds->klen[i] = (uint8_t)(sl + 7);
}

int bench_dataset_make(bench_dataset *ds, uint32_t n, size_t vsize)
{
    if (dataset_alloc(ds, n, vsize))
        return -1;
    for (uint32_t i = 0; i < n; i++)
        key_write(ds, i, "view//api/items?page=", i);
    return 0;
}

int bench_dataset_make_shuffled(bench_dataset *ds, uint32_t n, size_t vsize, uint64_t seed)
{
    if (dataset_alloc(ds, n, vsize))
        return -1;
    for (uint32_t i = 0; i < n; i++)
        key_write(ds, i, "view//api/items?page=", i);
    /* Fisher-Yates over the key slots; every key has the same length, so
     * swapping the slots' bytes is enough. */
    char tmp[BENCH_KSTRIDE];
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(bench_rand(&seed) % i);
        char *a = ds->keys + (size_t)(i - 1) * BENCH_KSTRIDE, *b = ds->keys + (size_t)j * BENCH_KSTRIDE;
        memcpy(tmp, a, BENCH_KSTRIDE);
        memcpy(a, b, BENCH_KSTRIDE);
        memcpy(b, tmp, BENCH_KSTRIDE);
    }
    return 0;
}

int bench_dataset_make_prefix(bench_dataset *ds, uint32_t n, uint32_t nprefix, size_t vsize)
{
    if (dataset_alloc(ds, n, vsize))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (i < n - nprefix)
            key_write(ds, i, "view//api/items?page=", i);
        else
            key_write(ds, i, "view//api/products/", i);
    }
    return 0;
}

void bench_dataset_free(bench_dataset *ds)
{
    free(ds->keys);
    free(ds->klen);
    free(ds->val);
    memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------------------ */
/* Key sequences                                                            */
/* ------------------------------------------------------------------------ */

uint32_t *bench_seq_uniform(uint32_t n, uint64_t seed)
{
    uint32_t *s = malloc(BENCH_SEQ_LEN * sizeof *s);
    if (!s)
        return NULL;
    uint64_t st = seed | 1;
    for (uint32_t i = 0; i < BENCH_SEQ_LEN; i++)
        s[i] = (uint32_t)(bench_rand(&st) % n);
    return s;
}

/*
 * Zipf ranks by the method of Gray et al., "Quickly generating billion-record
 * synthetic databases" (SIGMOD 1994), as YCSB's ZipfianGenerator uses it with
 * theta = 0.99.  Rank r is mapped to key (r * P) mod n with P a prime that
 * does not divide n, a bijection that scatters the hot keys over the key
 * space (YCSB scrambles them by hashing for the same reason).
 */
uint32_t *bench_seq_zipf_mix(uint32_t n, uint64_t seed)
{
    const double theta = 0.99;
    uint32_t *s = malloc(BENCH_SEQ_LEN * sizeof *s);
    if (!s)
        return NULL;
    double zetan = 0;
    for (uint32_t i = 1; i <= n; i++)
        zetan += 1.0 / pow((double)i, theta);
    double zeta2 = 1.0 + 1.0 / pow(2.0, theta);
    double alpha = 1.0 / (1.0 - theta);
    double eta = (1.0 - pow(2.0 / n, 1.0 - theta)) / (1.0 - zeta2 / zetan);
    const uint64_t P = 2654435761u; /* prime */
    uint64_t st = seed | 1;
    for (uint32_t i = 0; i < BENCH_SEQ_LEN; i++) {
        double u = (double)(bench_rand(&st) >> 11) * (1.0 / 9007199254740992.0);
        double uz = u * zetan;
        uint64_t rank;
        if (uz < 1.0)
            rank = 0;
        else if (uz < 1.0 + pow(0.5, theta))
            rank = 1;
        else
            rank = (uint64_t)((double)n * pow(eta * u - eta + 1.0, alpha));
        if (rank >= n)
            rank = n - 1;
        uint32_t idx = (uint32_t)((rank * P) % n);
        bool set = bench_rand(&st) % 10 == 0;
        s[i] = idx | (set ? BENCH_SEQ_SET : 0);
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

void bench_fmt_count(char *buf, size_t n, uint64_t v)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < len && o + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 2 < n)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(p) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

int bench_rm_rf(const char *path)
{
    if (access(path, F_OK) != 0)
        return 0;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, unsigned n)
{
    if (n == 0)
        return 0;
    double tmp[16];
    if (n > 16)
        n = 16;
    memcpy(tmp, v, n * sizeof *v);
    qsort(tmp, n, sizeof *tmp, dcmp);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}
