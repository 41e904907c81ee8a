/*
 * c_memcached.c - memcached as a contender: the Debian memcached, started by
 * bench/run.sh on a unix socket in a temporary directory, reached with
 * libmemcached (ASCII protocol, its default), one blocking request at a time
 * (get, set, add, incr, and mget + fetch for multi-get).
 *
 * libmemcached is a bench-only dependency: without its headers this file
 * compiles to a contender that reports itself unavailable.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BENCH_HAVE_LIBMEMCACHED
#include <libmemcached/memcached.h>
#include <unistd.h>

typedef struct mch {
    memcached_st *m;
    memcached_result_st res;
    char msg[256];
} mch;

static const char *mc_unavailable(const bench_cfg *cfg)
{
    if (!cfg->mc_sock)
        return "no server socket given (bench/run.sh starts memcached when it is installed)";
    return NULL;
}

static memcached_st *connect_sock(const bench_cfg *cfg, char *err, size_t n)
{
    memcached_st *m = memcached_create(NULL);
    if (!m) {
        snprintf(err, n, "memcached_create: out of memory");
        return NULL;
    }
    memcached_return_t rc = memcached_server_add_unix_socket(m, cfg->mc_sock);
    if (rc != MEMCACHED_SUCCESS) {
        snprintf(err, n, "memcached_server_add_unix_socket %s: %s", cfg->mc_sock,
                 memcached_strerror(m, rc));
        memcached_free(m);
        return NULL;
    }
    return m;
}

typedef struct stat_want {
    const char *key;
    char val[64];
    int found;
} stat_want;

static memcached_return_t stat_cb(const memcached_instance_st *server, const char *key,
                                  size_t key_length, const char *value, size_t value_length,
                                  void *context)
{
    (void)server;
    stat_want *w = context;
    if (strlen(w->key) == key_length && memcmp(key, w->key, key_length) == 0) {
        size_t n = value_length < sizeof w->val - 1 ? value_length : sizeof w->val - 1;
        memcpy(w->val, value, n);
        w->val[n] = 0;
        w->found = 1;
    }
    return MEMCACHED_SUCCESS;
}

static int stat_get(const bench_cfg *cfg, const char *key, char *out, size_t n)
{
    char err[256];
    memcached_st *m = connect_sock(cfg, err, sizeof err);
    if (!m)
        return -1;
    stat_want w;
    memset(&w, 0, sizeof w);
    w.key = key;
    memcached_stat_execute(m, NULL, stat_cb, &w);
    memcached_free(m);
    if (!w.found)
        return -1;
    snprintf(out, n, "%s", w.val);
    return 0;
}

static int mc_load(bench_cfg *cfg, const bench_dataset *ds, int64_t ttl_ms, char *err, size_t n)
{
    memcached_st *m = connect_sock(cfg, err, n);
    if (!m)
        return -1;
    memcached_return_t rc = memcached_flush(m, 0);
    if (rc != MEMCACHED_SUCCESS) {
        snprintf(err, n, "memcached flush_all: %s", memcached_strerror(m, rc));
        memcached_free(m);
        return -1;
    }
    /* Loading is not what is measured: send the sets without waiting for
     * replies ("noreply", buffered), then wait below until the last one is
     * visible (one connection is served in order). */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    time_t exp = ttl_ms > 0 ? (time_t)((ttl_ms + 999) / 1000) : 0;
    for (uint32_t i = 0; i < ds->n; i++) {
        rc = memcached_set(m, bench_key(ds, i), ds->klen[i], ds->val, ds->vsize, exp, 0);
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_BUFFERED) {
            snprintf(err, n, "memcached set while loading: %s", memcached_strerror(m, rc));
            memcached_free(m);
            return -1;
        }
    }
    memcached_flush_buffers(m);
    memcached_free(m);
    if (ds->n == 0)
        return 0;
    memcached_st *q = connect_sock(cfg, err, n);
    if (!q)
        return -1;
    uint32_t last = ds->n - 1;
    for (int tries = 0; tries < 30000; tries++) {
        size_t vl;
        uint32_t fl;
        char *v = memcached_get(q, bench_key(ds, last), ds->klen[last], &vl, &fl, &rc);
        if (v) {
            free(v);
            memcached_free(q);
            return 0;
        }
        usleep(1000);
    }
    memcached_free(q);
    snprintf(err, n, "memcached: the last loaded key never became visible");
    return -1;
}

static void mc_unload(bench_cfg *cfg)
{
    char err[256];
    memcached_st *m = connect_sock(cfg, err, sizeof err);
    if (m) {
        memcached_flush(m, 0);
        memcached_free(m);
    }
}

static void *mc_open(const bench_cfg *cfg, char *err, size_t n)
{
    mch *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    if (!(h->m = connect_sock(cfg, err, n))) {
        free(h);
        return NULL;
    }
    memcached_result_create(h->m, &h->res);
    return h;
}

static void mc_close(void *p)
{
    mch *h = p;
    memcached_result_free(&h->res);
    memcached_free(h->m);
    free(h);
}

static const char *mc_msg(void *p)
{
    return ((mch *)p)->msg;
}

static int fail(mch *h, const char *what, memcached_return_t rc)
{
    snprintf(h->msg, sizeof h->msg, "memcached %s: %s", what, memcached_strerror(h->m, rc));
    return BENCH_ERR;
}

static int mc_get(void *p, const char *k, size_t kl, char *buf, size_t cap, size_t *vlen)
{
    mch *h = p;
    size_t vl;
    uint32_t fl;
    memcached_return_t rc;
    char *v = memcached_get(h->m, k, kl, &vl, &fl, &rc);
    if (v) {
        int out = BENCH_OK;
        if (vl <= cap) {
            memcpy(buf, v, vl);
            *vlen = vl;
        } else {
            snprintf(h->msg, sizeof h->msg, "value larger than the buffer");
            out = BENCH_ERR;
        }
        free(v);
        return out;
    }
    if (rc == MEMCACHED_NOTFOUND)
        return BENCH_MISS;
    return fail(h, "get", rc);
}

static int mc_set(void *p, const char *k, size_t kl, const char *v, size_t vl, unsigned ttl_s)
{
    mch *h = p;
    memcached_return_t rc = memcached_set(h->m, k, kl, v, vl, (time_t)ttl_s, 0);
    return rc == MEMCACHED_SUCCESS ? BENCH_OK : fail(h, "set", rc);
}

static int mc_add(void *p, const char *k, size_t kl, const char *v, size_t vl)
{
    mch *h = p;
    memcached_return_t rc = memcached_add(h->m, k, kl, v, vl, 0, 0);
    if (rc == MEMCACHED_SUCCESS)
        return BENCH_OK;
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
        return BENCH_EXISTS;
    return fail(h, "add", rc);
}

static int mc_incr(void *p, const char *k, size_t kl, int64_t *result)
{
    mch *h = p;
    uint64_t v = 0;
    memcached_return_t rc = memcached_increment(h->m, k, kl, 1, &v);
    if (rc != MEMCACHED_SUCCESS)
        return fail(h, "incr", rc);
    *result = (int64_t)v;
    return BENCH_OK;
}

static int mc_mget(void *p, const char *const *k, const size_t *kl, unsigned n, char *buf,
                   size_t slot, unsigned *hits)
{
    mch *h = p;
    memcached_return_t rc = memcached_mget(h->m, k, kl, n);
    if (rc != MEMCACHED_SUCCESS)
        return fail(h, "mget", rc);
    unsigned found = 0;
    memcached_result_st *r;
    /* Replies come back in request order over one connection; place each
     * value by matching its key against the requested ones from where the
     * last match was. */
    unsigned next = 0;
    while ((r = memcached_fetch_result(h->m, &h->res, &rc)) != NULL) {
        const char *rk = memcached_result_key_value(r);
        size_t rkl = memcached_result_key_length(r);
        unsigned i = next;
        for (unsigned t = 0; t < n; t++, i = (i + 1) % n)
            if (kl[i] == rkl && memcmp(k[i], rk, rkl) == 0)
                break;
        size_t vl = memcached_result_length(r);
        memcpy(buf + (size_t)i * slot, memcached_result_value(r), vl < slot ? vl : slot);
        next = (i + 1) % n;
        found++;
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND)
        return fail(h, "fetch", rc);
    *hits = found;
    return BENCH_OK;
}

static int mc_mem(const bench_cfg *cfg, uint64_t *bytes, const char **how)
{
    char v[64];
    if (stat_get(cfg, "bytes", v, sizeof v))
        return -1;
    *bytes = strtoull(v, NULL, 10);
    *how = "stats bytes (item memory, without slab overhead)";
    return 0;
}

static void mc_ver(const bench_cfg *cfg, char *buf, size_t n)
{
    char v[64] = "?";
    stat_get(cfg, "version", v, sizeof v);
    snprintf(buf, n, "memcached %s, libmemcached %s", v, LIBMEMCACHED_VERSION_STRING);
}

const bench_contender bench_memcached = {
    .name = "memcached",
    .unavailable = mc_unavailable,
    .load = mc_load,
    .unload = mc_unload,
    .open = mc_open,
    .close = mc_close,
    .errmsg = mc_msg,
    .get = mc_get,
    .set = mc_set,
    .add = mc_add,
    .incr = mc_incr,
    .mget = mc_mget,
    .mem_used = mc_mem,
    .version = mc_ver,
};

#else /* !BENCH_HAVE_LIBMEMCACHED */

static const char *mc_unavailable(const bench_cfg *cfg)
{
    (void)cfg;
    return "built without libmemcached (install libmemcached-dev and rebuild)";
}

const bench_contender bench_memcached = {
    .name = "memcached",
    .unavailable = mc_unavailable,
};

#endif
