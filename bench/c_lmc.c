/*
 * c_lmc.c - the contender under test: lmc through its public API only
 * (include/lmc.h), linked statically as an application would link it.
 *
 * Each call is the plain public call a web worker would make: lmc_get into a
 * caller buffer (lmc_get_lease_view for the lmc-lease contender, whose hits
 * are what lease support costs), lmc_set/lmc_add/lmc_incr, and lmc_get_many for multi-get.
 * The cache lives in a fresh directory under the benchmark's tmpfs directory
 * and is created with the same map size as the raw LMDB environment.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc.h"

typedef struct lh {
    lmc *c;
    char msg[320];
} lh;

static const char *lmc_unavailable(const bench_cfg *cfg)
{
    (void)cfg;
    return NULL;
}

static void set_msg(lh *h, int rc, const char *what)
{
    snprintf(h->msg, sizeof h->msg, "%s: %s (%s)", what, lmc_strerror(rc), lmc_errmsg(h->c));
}

static int open_cache(const bench_cfg *cfg, lmc **out, char *err, size_t n)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.map_size = cfg->map_size;
    int rc = lmc_open(out, cfg->lmc_path, &o);
    if (rc) {
        snprintf(err, n, "lmc_open %s: %s (%s)", cfg->lmc_path, lmc_strerror(rc),
                 lmc_errmsg(NULL));
        return -1;
    }
    return 0;
}

static int lmc_load(bench_cfg *cfg, const bench_dataset *ds, int64_t ttl_ms, char *err, size_t n)
{
    snprintf(cfg->lmc_path, sizeof cfg->lmc_path, "%s/lmc", cfg->dir);
    bench_rm_rf(cfg->lmc_path);
    lmc *c;
    if (open_cache(cfg, &c, err, n))
        return -1;
    /* Batches of 1000 entries, one write transaction each, as a loader or
     * a cache warmer would use lmc_set_many. */
    enum { BATCH = 1000 };
    lmc_item *items = calloc(BATCH, sizeof *items);
    if (!items) {
        lmc_close(c);
        snprintf(err, n, "out of memory");
        return -1;
    }
    int rc = 0;
    for (uint32_t i = 0; i < ds->n && rc == 0; i += BATCH) {
        uint32_t m = ds->n - i < BATCH ? ds->n - i : BATCH;
        for (uint32_t j = 0; j < m; j++) {
            items[j].key = bench_key(ds, i + j);
            items[j].klen = ds->klen[i + j];
            items[j].val = ds->val;
            items[j].vlen = ds->vsize;
            items[j].ttl_ms = ttl_ms > 0 ? ttl_ms : LMC_TTL_NEVER;
        }
        rc = lmc_set_many(c, items, m);
    }
    free(items);
    if (rc)
        snprintf(err, n, "lmc_set_many: %s (%s)", lmc_strerror(rc), lmc_errmsg(c));
    lmc_close(c);
    return rc ? -1 : 0;
}

static void lmc_unload(bench_cfg *cfg)
{
    if (cfg->lmc_path[0])
        bench_rm_rf(cfg->lmc_path);
    cfg->lmc_path[0] = 0;
}

static void *lmc_hopen(const bench_cfg *cfg, char *err, size_t n)
{
    lh *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    if (open_cache(cfg, &h->c, err, n)) {
        free(h);
        return NULL;
    }
    return h;
}

static void lmc_hclose(void *p)
{
    lh *h = p;
    lmc_close(h->c);
    free(h);
}

static const char *lmc_hmsg(void *p)
{
    return ((lh *)p)->msg;
}

static int lmc_bget(void *p, const char *k, size_t kl, char *buf, size_t cap, size_t *vlen)
{
    lh *h = p;
    int rc = lmc_get(h->c, k, kl, buf, cap, vlen);
    if (rc == LMC_OK)
        return BENCH_OK;
    if (rc == LMC_NOTFOUND)
        return BENCH_MISS;
    set_msg(h, rc, "lmc_get");
    return BENCH_ERR;
}

/* The get of a caller that uses fill leases (lmc-lease), through
 * lmc_get_lease_view into the caller's buffer as lmc_get fills it: on a hit
 * it is a get, and its cost beside lmc_get is what lease support costs a
 * hit. */
typedef struct lease_buf {
    char *buf;
    size_t cap, *vlen;
} lease_buf;

static int lease_copy(void *arg, const lmc_value *v)
{
    lease_buf *b = arg;
    memcpy(b->buf, v->data, v->len < b->cap ? v->len : b->cap);
    *b->vlen = v->len;
    return 0;
}

static int lmc_bget_lease(void *p, const char *k, size_t kl, char *buf, size_t cap,
                          size_t *vlen)
{
    lh *h = p;
    lmc_lease lease;
    int outcome;
    lease_buf b = {buf, cap, vlen};
    int rc = lmc_get_lease_view(h->c, k, kl, NULL, lease_copy, &b, &lease, &outcome);
    if (rc != LMC_OK) {
        set_msg(h, rc, "lmc_get_lease_view");
        return BENCH_ERR;
    }
    if (outcome != LMC_LEASE_HIT) {
        /* Not a hit: give the lease back, so that a miss stays a miss. */
        if (lease.token)
            lmc_lease_abandon(h->c, &lease, k, kl);
        return BENCH_MISS;
    }
    return BENCH_OK;
}

static int lmc_bset(void *p, const char *k, size_t kl, const char *v, size_t vl, unsigned ttl_s)
{
    lh *h = p;
    int rc = lmc_set(h->c, k, kl, v, vl, ttl_s ? (int64_t)ttl_s * 1000 : LMC_TTL_NEVER);
    if (rc == LMC_OK)
        return BENCH_OK;
    set_msg(h, rc, "lmc_set");
    return BENCH_ERR;
}

static int lmc_badd(void *p, const char *k, size_t kl, const char *v, size_t vl)
{
    lh *h = p;
    int rc = lmc_add(h->c, k, kl, v, vl, LMC_TTL_NEVER);
    if (rc == LMC_OK)
        return BENCH_OK;
    if (rc == LMC_EXISTS)
        return BENCH_EXISTS;
    set_msg(h, rc, "lmc_add");
    return BENCH_ERR;
}

static int lmc_bincr(void *p, const char *k, size_t kl, int64_t *result)
{
    lh *h = p;
    int rc = lmc_incr(h->c, k, kl, 1, result, LMC_TTL_NEVER);
    if (rc == LMC_OK)
        return BENCH_OK;
    set_msg(h, rc, "lmc_incr");
    return BENCH_ERR;
}

typedef struct mget_ctx {
    char *buf;
    size_t slot;
    unsigned hits;
} mget_ctx;

static int mget_cb(void *arg, size_t i, const lmc_value *v)
{
    mget_ctx *m = arg;
    if (v) {
        size_t n = v->len < m->slot ? v->len : m->slot;
        memcpy(m->buf + i * m->slot, v->data, n);
        m->hits++;
    }
    return 0;
}

static int lmc_bmget(void *p, const char *const *k, const size_t *kl, unsigned n, char *buf,
                     size_t slot, unsigned *hits)
{
    lh *h = p;
    lmc_key keys[64];
    if (n > 64)
        n = 64;
    for (unsigned i = 0; i < n; i++) {
        keys[i].key = k[i];
        keys[i].klen = kl[i];
    }
    mget_ctx m = {buf, slot, 0};
    int rc = lmc_get_many(h->c, keys, n, mget_cb, &m);
    *hits = m.hits;
    if (rc == LMC_OK)
        return BENCH_OK;
    set_msg(h, rc, "lmc_get_many");
    return BENCH_ERR;
}

static int lmc_mem(const bench_cfg *cfg, uint64_t *bytes, const char **how)
{
    lmc *c;
    char err[256];
    if (open_cache(cfg, &c, err, sizeof err))
        return -1;
    lmc_stat st;
    int rc = lmc_stats(c, &st);
    lmc_close(c);
    if (rc)
        return -1;
    *bytes = st.used_pages * st.page_size;
    *how = "lmc_stats used_pages x page_size";
    return 0;
}

static void lmc_ver(const bench_cfg *cfg, char *buf, size_t n)
{
    (void)cfg;
    snprintf(buf, n, "lmc %s", lmc_version(NULL, NULL, NULL));
}

const bench_contender bench_lmc = {
    .name = "lmc",
    .unavailable = lmc_unavailable,
    .load = lmc_load,
    .unload = lmc_unload,
    .open = lmc_hopen,
    .close = lmc_hclose,
    .errmsg = lmc_hmsg,
    .get = lmc_bget,
    .set = lmc_bset,
    .add = lmc_badd,
    .incr = lmc_bincr,
    .mget = lmc_bmget,
    .mem_used = lmc_mem,
    .version = lmc_ver,
};

const bench_contender bench_lmc_lease = {
    .name = "lmc-lease",
    .unavailable = lmc_unavailable,
    .load = lmc_load,
    .unload = lmc_unload,
    .open = lmc_hopen,
    .close = lmc_hclose,
    .errmsg = lmc_hmsg,
    .get = lmc_bget_lease,
    .set = lmc_bset,
    .add = lmc_badd,
    .incr = lmc_bincr,
    .mget = lmc_bmget,
    .mem_used = lmc_mem,
    .version = lmc_ver,
};
