/*
 * c_redis.c - Redis as a contender: the Debian redis-server, started by
 * bench/run.sh with persistence off on a unix socket in a temporary
 * directory, reached with hiredis, one blocking request at a time (GET, SET,
 * SET NX, INCR, MGET) as a web worker using a Redis cache does.
 *
 * hiredis is a bench-only dependency: without its headers (no
 * libhiredis-dev) this file compiles to a contender that reports itself
 * unavailable, so the rest of the benchmark still builds and runs.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BENCH_HAVE_HIREDIS
#include <hiredis.h>
#include <sys/time.h>

typedef struct rdh {
    redisContext *c;
    char msg[256];
} rdh;

/* used_memory after the last FLUSHALL, so that the memory of a data set is
 * what loading it added (the parent loads and measures). */
static uint64_t g_base_mem;

static const char *redis_unavailable(const bench_cfg *cfg)
{
    if (!cfg->redis_sock)
        return "no server socket given (bench/run.sh starts redis-server when it is installed)";
    return NULL;
}

static redisContext *connect_sock(const bench_cfg *cfg, char *err, size_t n)
{
    redisContext *c = redisConnectUnix(cfg->redis_sock);
    if (!c || c->err) {
        snprintf(err, n, "connecting to redis at %s: %s", cfg->redis_sock,
                 c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    /* A stuck server should fail the cell, not hang the benchmark. */
    struct timeval tv = {30, 0};
    redisSetTimeout(c, tv);
    return c;
}

/* Run one command and check that the reply is not an error. */
static int simple(redisContext *c, char *err, size_t n, int argc, const char **argv,
                  const size_t *lens)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r) {
        snprintf(err, n, "redis %s: %s", argv[0], c->errstr);
        return -1;
    }
    int bad = r->type == REDIS_REPLY_ERROR;
    if (bad)
        snprintf(err, n, "redis %s: %s", argv[0], r->str);
    freeReplyObject(r);
    return bad ? -1 : 0;
}

static int info_u64(redisContext *c, const char *section, const char *field, uint64_t *out,
                    char *sbuf, size_t sn)
{
    redisReply *r = redisCommand(c, "INFO %s", section);
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int rc = -1;
    char *p = strstr(r->str, field);
    if (p) {
        p += strlen(field);
        if (out)
            *out = strtoull(p, NULL, 10);
        if (sbuf) {
            size_t i = 0;
            while (p[i] && p[i] != '\r' && p[i] != '\n' && i + 1 < sn) {
                sbuf[i] = p[i];
                i++;
            }
            sbuf[i] = 0;
        }
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

static int redis_load(bench_cfg *cfg, const bench_dataset *ds, int64_t ttl_ms, char *err,
                      size_t n)
{
    redisContext *c = connect_sock(cfg, err, n);
    if (!c)
        return -1;
    const char *fa[] = {"FLUSHALL"};
    if (simple(c, err, n, 1, fa, NULL)) {
        redisFree(c);
        return -1;
    }
    info_u64(c, "memory", "used_memory:", &g_base_mem, NULL, 0);
    /* Pipelined in batches of 1000: loading is not what is measured. */
    char px[24];
    int pxl = snprintf(px, sizeof px, "%lld", (long long)ttl_ms);
    int rc = 0;
    for (uint32_t i = 0; i < ds->n && rc == 0; i += 1000) {
        uint32_t end = ds->n - i < 1000 ? ds->n : i + 1000;
        for (uint32_t j = i; j < end; j++) {
            const char *argv[] = {"SET", bench_key(ds, j), ds->val, "PX", px};
            size_t lens[] = {3, ds->klen[j], ds->vsize, 2, (size_t)pxl};
            redisAppendCommandArgv(c, ttl_ms > 0 ? 5 : 3, argv, lens);
        }
        for (uint32_t j = i; j < end; j++) {
            void *r = NULL;
            if (redisGetReply(c, &r) != REDIS_OK) {
                snprintf(err, n, "redis SET while loading: %s", c->errstr);
                rc = -1;
                break;
            }
            redisReply *rr = r;
            if (rr->type == REDIS_REPLY_ERROR && rc == 0) {
                snprintf(err, n, "redis SET while loading: %s", rr->str);
                rc = -1;
            }
            freeReplyObject(r);
        }
    }
    redisFree(c);
    return rc;
}

static void redis_unload(bench_cfg *cfg)
{
    char err[256];
    redisContext *c = connect_sock(cfg, err, sizeof err);
    if (!c)
        return;
    const char *fa[] = {"FLUSHALL"};
    simple(c, err, sizeof err, 1, fa, NULL);
    redisFree(c);
}

static void *redis_open(const bench_cfg *cfg, char *err, size_t n)
{
    rdh *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    if (!(h->c = connect_sock(cfg, err, n))) {
        free(h);
        return NULL;
    }
    return h;
}

static void redis_close(void *p)
{
    rdh *h = p;
    redisFree(h->c);
    free(h);
}

static const char *redis_msg(void *p)
{
    return ((rdh *)p)->msg;
}

static int io_fail(rdh *h, const char *what, redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        snprintf(h->msg, sizeof h->msg, "redis %s: %s", what, r->str);
    else if (r)
        snprintf(h->msg, sizeof h->msg, "redis %s: unexpected reply type %d", what, r->type);
    else
        snprintf(h->msg, sizeof h->msg, "redis %s: %s", what, h->c->errstr);
    if (r)
        freeReplyObject(r);
    return BENCH_ERR;
}

static int redis_get(void *p, const char *k, size_t kl, char *buf, size_t cap, size_t *vlen)
{
    rdh *h = p;
    const char *argv[] = {"GET", k};
    size_t lens[] = {3, kl};
    redisReply *r = redisCommandArgv(h->c, 2, argv, lens);
    if (r && r->type == REDIS_REPLY_STRING && (size_t)r->len <= cap) {
        memcpy(buf, r->str, (size_t)r->len);
        *vlen = (size_t)r->len;
        freeReplyObject(r);
        return BENCH_OK;
    }
    if (r && r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return BENCH_MISS;
    }
    return io_fail(h, "GET", r);
}

static int redis_set(void *p, const char *k, size_t kl, const char *v, size_t vl, unsigned ttl_s)
{
    rdh *h = p;
    char ex[16];
    int exl = snprintf(ex, sizeof ex, "%u", ttl_s);
    const char *argv[] = {"SET", k, v, "EX", ex};
    size_t lens[] = {3, kl, vl, 2, (size_t)exl};
    redisReply *r = redisCommandArgv(h->c, ttl_s ? 5 : 3, argv, lens);
    if (r && r->type == REDIS_REPLY_STATUS) {
        freeReplyObject(r);
        return BENCH_OK;
    }
    return io_fail(h, "SET", r);
}

static int redis_add(void *p, const char *k, size_t kl, const char *v, size_t vl)
{
    rdh *h = p;
    const char *argv[] = {"SET", k, v, "NX"};
    size_t lens[] = {3, kl, vl, 2};
    redisReply *r = redisCommandArgv(h->c, 4, argv, lens);
    if (r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_NIL)) {
        int rc = r->type == REDIS_REPLY_STATUS ? BENCH_OK : BENCH_EXISTS;
        freeReplyObject(r);
        return rc;
    }
    return io_fail(h, "SET NX", r);
}

static int redis_incr(void *p, const char *k, size_t kl, int64_t *result)
{
    rdh *h = p;
    const char *argv[] = {"INCR", k};
    size_t lens[] = {4, kl};
    redisReply *r = redisCommandArgv(h->c, 2, argv, lens);
    if (r && r->type == REDIS_REPLY_INTEGER) {
        *result = r->integer;
        freeReplyObject(r);
        return BENCH_OK;
    }
    return io_fail(h, "INCR", r);
}

static int redis_mget(void *p, const char *const *k, const size_t *kl, unsigned n, char *buf,
                      size_t slot, unsigned *hits)
{
    rdh *h = p;
    const char *argv[65];
    size_t lens[65];
    if (n > 64)
        n = 64;
    argv[0] = "MGET";
    lens[0] = 4;
    for (unsigned i = 0; i < n; i++) {
        argv[i + 1] = k[i];
        lens[i + 1] = kl[i];
    }
    redisReply *r = redisCommandArgv(h->c, (int)n + 1, argv, lens);
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return io_fail(h, "MGET", r);
    unsigned found = 0;
    for (size_t i = 0; i < r->elements && i < n; i++) {
        redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING) {
            size_t len = (size_t)e->len < slot ? (size_t)e->len : slot;
            memcpy(buf + i * slot, e->str, len);
            found++;
        }
    }
    freeReplyObject(r);
    *hits = found;
    return BENCH_OK;
}

static int redis_mem(const bench_cfg *cfg, uint64_t *bytes, const char **how)
{
    char err[256];
    redisContext *c = connect_sock(cfg, err, sizeof err);
    if (!c)
        return -1;
    uint64_t used = 0;
    int rc = info_u64(c, "memory", "used_memory:", &used, NULL, 0);
    redisFree(c);
    if (rc)
        return -1;
    *bytes = used > g_base_mem ? used - g_base_mem : 0;
    *how = "INFO used_memory after load minus after FLUSHALL";
    return 0;
}

static void redis_ver(const bench_cfg *cfg, char *buf, size_t n)
{
    char err[256], v[64] = "?";
    redisContext *c = connect_sock(cfg, err, sizeof err);
    if (c) {
        info_u64(c, "server", "redis_version:", NULL, v, sizeof v);
        redisFree(c);
    }
    snprintf(buf, n, "redis-server %s, hiredis %d.%d.%d", v, HIREDIS_MAJOR, HIREDIS_MINOR,
             HIREDIS_PATCH);
}

const bench_contender bench_redis = {
    .name = "redis",
    .unavailable = redis_unavailable,
    .load = redis_load,
    .unload = redis_unload,
    .open = redis_open,
    .close = redis_close,
    .errmsg = redis_msg,
    .get = redis_get,
    .set = redis_set,
    .add = redis_add,
    .incr = redis_incr,
    .mget = redis_mget,
    .mem_used = redis_mem,
    .version = redis_ver,
};

#else /* !BENCH_HAVE_HIREDIS */

static const char *redis_unavailable(const bench_cfg *cfg)
{
    (void)cfg;
    return "built without hiredis (install libhiredis-dev and rebuild)";
}

const bench_contender bench_redis = {
    .name = "redis",
    .unavailable = redis_unavailable,
};

#endif
