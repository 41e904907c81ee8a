/*
 * c_lmdb.c - raw LMDB, the ceiling lmc is measured against.
 *
 * This is the least a program can do to use LMDB as a shared cache the way
 * lmc does, with no TTL, stats, recency or eviction:
 *   get: mdb_txn_renew of a per-process read txn (MDB_NOTLS), mdb_get, copy
 *        the value out, mdb_txn_reset;
 *   set: mdb_txn_begin, one mdb_put, mdb_txn_commit;
 *   add: the same with MDB_NOOVERWRITE; incr: get, parse, put in one txn;
 *   multi-get: one renewed read txn for all the keys.
 * The environment is opened exactly as lib/core.c opens lmc's: the same flags
 * (taken from lib/core.c by bench.mk at build time), the same map size, 1024
 * reader slots, 4 named databases, the data file preallocated with
 * posix_fallocate, and mdb_reader_check after open.  Data goes into the main
 * database, as lmc's entries are; the contender "lmdb-named" puts it in a
 * named database instead, as lmc's first format did, to show what that costs
 * (see "What changed" in bench/RESULTS.md).
 *
 * The contender "lmdb-pair" is raw LMDB that commits two sets in each write
 * txn: its first set of a pair only copies the key and value aside, its
 * second puts both and commits.  That is the most a group commit of two
 * writer processes could save per set (their two sets sharing one txn, with
 * no hand-over between processes), so it tells whether building one is worth
 * it (bench/RESULTS.md).  Only its throughput means something: half its sets
 * cost a copy and the other half two puts.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BENCH_LMDB_FLAGS
#error "BENCH_LMDB_FLAGS must be defined (bench.mk extracts LMC__ENV_FLAGS from lib/core.c)"
#endif

unsigned bench_lmdb_env_flags(void)
{
    return (unsigned)(BENCH_LMDB_FLAGS);
}

const char *bench_lmdb_env_flags_str(void)
{
    return BENCH_LMDB_FLAGS_STR;
}

/* LMDB's MDB_val is not const even where LMDB only reads through it. */
static inline void *unconst(const void *p)
{
    return (void *)(uintptr_t)p;
}

typedef struct rh {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *rtxn;
    bool pair;         /* lmdb-pair: commit every second set */
    bool pending;      /* lmdb-pair: the first set of a pair is waiting */
    size_t pkl, pvl;   /* its key and value, in pbuf */
    size_t pcap;
    char *pbuf;
    char msg[256];
} rh;

static const char *lmdb_unavailable(const bench_cfg *cfg)
{
    (void)cfg;
    return NULL;
}

/* The three raw LMDB contenders keep their environments apart. */
typedef enum variant { V_MAIN, V_NAMED, V_PAIR } variant;

static void path_of(const bench_cfg *cfg, variant v, char *buf, size_t n)
{
    static const char *const dirs[] = {"lmdb", "lmdb-named", "lmdb-pair"};
    snprintf(buf, n, "%s/%s", cfg->dir, dirs[v]);
}

/* Open an environment the way lmc does (lib/core.c, steps 4 and 5). */
static int env_open(const char *path, uint64_t map_size, bool create, MDB_env **out, char *err,
                    size_t n)
{
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc) {
        snprintf(err, n, "mdb_env_create: %s", mdb_strerror(rc));
        return -1;
    }
    mdb_env_set_maxreaders(env, 1024);
    mdb_env_set_maxdbs(env, 4);
    if (map_size)
        mdb_env_set_mapsize(env, (size_t)map_size);
    if (create && mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, n, "mkdir %s: %s", path, strerror(errno));
        mdb_env_close(env);
        return -1;
    }
    rc = mdb_env_open(env, path, bench_lmdb_env_flags(), 0600);
    if (rc) {
        snprintf(err, n, "mdb_env_open %s: %s", path, mdb_strerror(rc));
        mdb_env_close(env);
        return -1;
    }
    MDB_envinfo info;
    mdb_env_info(env, &info);
    int fd;
    struct stat st;
    if (mdb_env_get_fd(env, &fd) == 0 && fstat(fd, &st) == 0 &&
        (uint64_t)st.st_blocks * 512 < (uint64_t)info.me_mapsize) {
        int e = posix_fallocate(fd, 0, (off_t)info.me_mapsize);
        if (e) {
            snprintf(err, n, "posix_fallocate %s: %s", path, strerror(e));
            mdb_env_close(env);
            return -1;
        }
    }
    int dead = 0;
    mdb_reader_check(env, &dead);
    *out = env;
    return 0;
}

static int dbi_open(MDB_env *env, bool named, bool create, MDB_dbi *dbi, char *err, size_t n)
{
    MDB_txn *t;
    int rc = mdb_txn_begin(env, NULL, 0, &t);
    if (rc == 0)
        rc = mdb_dbi_open(t, named ? "entries" : NULL, create ? MDB_CREATE : 0, dbi);
    if (rc) {
        snprintf(err, n, "mdb_dbi_open: %s", mdb_strerror(rc));
        if (t)
            mdb_txn_abort(t);
        return -1;
    }
    rc = mdb_txn_commit(t);
    if (rc) {
        snprintf(err, n, "mdb_txn_commit: %s", mdb_strerror(rc));
        return -1;
    }
    return 0;
}

static int load_common(bench_cfg *cfg, const bench_dataset *ds, variant var, char *err,
                       size_t n)
{
    bool named = var == V_NAMED;
    char path[512];
    path_of(cfg, var, path, sizeof path);
    if (var == V_MAIN)
        snprintf(cfg->lmdb_path, sizeof cfg->lmdb_path, "%s", path);
    bench_rm_rf(path);
    MDB_env *env;
    if (env_open(path, cfg->map_size, true, &env, err, n))
        return -1;
    MDB_dbi dbi;
    if (dbi_open(env, named, true, &dbi, err, n)) {
        mdb_env_close(env);
        return -1;
    }
    int rc = 0;
    for (uint32_t i = 0; i < ds->n && rc == 0; i += 1000) {
        MDB_txn *t;
        if ((rc = mdb_txn_begin(env, NULL, 0, &t)))
            break;
        uint32_t end = ds->n - i < 1000 ? ds->n : i + 1000;
        for (uint32_t j = i; j < end && rc == 0; j++) {
            MDB_val k = {ds->klen[j], unconst(bench_key(ds, j))};
            MDB_val v = {ds->vsize, ds->val};
            rc = mdb_put(t, dbi, &k, &v, 0);
        }
        if (rc)
            mdb_txn_abort(t);
        else
            rc = mdb_txn_commit(t);
    }
    if (rc)
        snprintf(err, n, "loading %s: %s", path, mdb_strerror(rc));
    mdb_env_close(env);
    return rc ? -1 : 0;
}

static int lmdb_load(bench_cfg *cfg, const bench_dataset *ds, int64_t ttl_ms, char *err, size_t n)
{
    (void)ttl_ms; /* raw LMDB has no expiry */
    return load_common(cfg, ds, V_MAIN, err, n);
}

static int lmdbn_load(bench_cfg *cfg, const bench_dataset *ds, int64_t ttl_ms, char *err,
                      size_t n)
{
    (void)ttl_ms;
    return load_common(cfg, ds, V_NAMED, err, n);
}

static int lmdbp_load(bench_cfg *cfg, const bench_dataset *ds, int64_t ttl_ms, char *err,
                      size_t n)
{
    (void)ttl_ms;
    return load_common(cfg, ds, V_PAIR, err, n);
}

static void unload_common(bench_cfg *cfg, variant v)
{
    char path[512];
    path_of(cfg, v, path, sizeof path);
    bench_rm_rf(path);
    if (v == V_MAIN)
        cfg->lmdb_path[0] = 0;
}

static void lmdb_unload(bench_cfg *cfg)
{
    unload_common(cfg, V_MAIN);
}

static void lmdbn_unload(bench_cfg *cfg)
{
    unload_common(cfg, V_NAMED);
}

static void lmdbp_unload(bench_cfg *cfg)
{
    unload_common(cfg, V_PAIR);
}

static void *open_common(const bench_cfg *cfg, variant var, char *err, size_t n)
{
    bool named = var == V_NAMED;
    char path[512];
    path_of(cfg, var, path, sizeof path);
    rh *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    if (env_open(path, 0, false, &h->env, err, n))
        goto fail;
    if (dbi_open(h->env, named, false, &h->dbi, err, n))
        goto fail_env;
    int rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &h->rtxn);
    if (rc) {
        snprintf(err, n, "mdb_txn_begin (read): %s", mdb_strerror(rc));
        goto fail_env;
    }
    mdb_txn_reset(h->rtxn);
    h->pair = var == V_PAIR;
    return h;
fail_env:
    mdb_env_close(h->env);
fail:
    free(h);
    return NULL;
}

static void *lmdb_open(const bench_cfg *cfg, char *err, size_t n)
{
    return open_common(cfg, V_MAIN, err, n);
}

static void *lmdbn_open(const bench_cfg *cfg, char *err, size_t n)
{
    return open_common(cfg, V_NAMED, err, n);
}

static void *lmdbp_open(const bench_cfg *cfg, char *err, size_t n)
{
    return open_common(cfg, V_PAIR, err, n);
}

static int put_pending(rh *h, MDB_txn *t);

static void lmdb_close(void *p)
{
    rh *h = p;
    /* A set that waits for its pair is stored alone: it was acknowledged. */
    MDB_txn *t;
    if (h->pending && mdb_txn_begin(h->env, NULL, 0, &t) == 0) {
        if (put_pending(h, t) == 0)
            mdb_txn_commit(t);
        else
            mdb_txn_abort(t);
    }
    mdb_txn_abort(h->rtxn);
    mdb_env_close(h->env);
    free(h->pbuf);
    free(h);
}

static const char *lmdb_msg(void *p)
{
    return ((rh *)p)->msg;
}

static int fail(rh *h, int rc, const char *what)
{
    snprintf(h->msg, sizeof h->msg, "%s: %s", what, mdb_strerror(rc));
    return BENCH_ERR;
}

static int lmdb_get(void *p, const char *k, size_t kl, char *buf, size_t cap, size_t *vlen)
{
    rh *h = p;
    int rc = mdb_txn_renew(h->rtxn);
    if (rc)
        return fail(h, rc, "mdb_txn_renew");
    MDB_val key = {kl, unconst(k)}, v;
    rc = mdb_get(h->rtxn, h->dbi, &key, &v);
    if (rc == 0) {
        if (v.mv_size > cap) {
            mdb_txn_reset(h->rtxn);
            snprintf(h->msg, sizeof h->msg, "value of %zu bytes is larger than the buffer",
                     v.mv_size);
            return BENCH_ERR;
        }
        memcpy(buf, v.mv_data, v.mv_size);
        *vlen = v.mv_size;
    }
    mdb_txn_reset(h->rtxn);
    if (rc == MDB_NOTFOUND)
        return BENCH_MISS;
    return rc ? fail(h, rc, "mdb_get") : BENCH_OK;
}

static int put_pending(rh *h, MDB_txn *t)
{
    MDB_val key = {h->pkl, h->pbuf}, val = {h->pvl, h->pbuf + h->pkl};
    h->pending = false;
    return mdb_put(t, h->dbi, &key, &val, 0);
}

/* lmdb-pair: keep the first set of a pair aside.  Returns 1 if it was. */
static int pair_defer(rh *h, const char *k, size_t kl, const char *v, size_t vl)
{
    if (!h->pair || h->pending)
        return 0;
    if (kl + vl > h->pcap) {
        char *b = realloc(h->pbuf, kl + vl);
        if (!b)
            return 0; /* store it alone */
        h->pbuf = b;
        h->pcap = kl + vl;
    }
    memcpy(h->pbuf, k, kl);
    memcpy(h->pbuf + kl, v, vl);
    h->pkl = kl;
    h->pvl = vl;
    h->pending = true;
    return 1;
}

static int put_one(rh *h, const char *k, size_t kl, const char *v, size_t vl, unsigned flags)
{
    if (flags == 0 && pair_defer(h, k, kl, v, vl))
        return BENCH_OK;
    MDB_txn *t;
    int rc = mdb_txn_begin(h->env, NULL, 0, &t);
    if (rc)
        return fail(h, rc, "mdb_txn_begin");
    if (h->pending && (rc = put_pending(h, t)) != 0) {
        mdb_txn_abort(t);
        return fail(h, rc, "mdb_put");
    }
    MDB_val key = {kl, unconst(k)}, val = {vl, unconst(v)};
    rc = mdb_put(t, h->dbi, &key, &val, flags);
    if (rc) {
        mdb_txn_abort(t);
        if (rc == MDB_KEYEXIST)
            return BENCH_EXISTS;
        return fail(h, rc, "mdb_put");
    }
    rc = mdb_txn_commit(t);
    return rc ? fail(h, rc, "mdb_txn_commit") : BENCH_OK;
}

static int lmdb_set(void *p, const char *k, size_t kl, const char *v, size_t vl, unsigned ttl_s)
{
    (void)ttl_s; /* no expiry in raw LMDB: a set with TTL is a plain put */
    return put_one(p, k, kl, v, vl, 0);
}

static int lmdb_add(void *p, const char *k, size_t kl, const char *v, size_t vl)
{
    return put_one(p, k, kl, v, vl, MDB_NOOVERWRITE);
}

static int lmdb_incr(void *p, const char *k, size_t kl, int64_t *result)
{
    rh *h = p;
    MDB_txn *t;
    int rc = mdb_txn_begin(h->env, NULL, 0, &t);
    if (rc)
        return fail(h, rc, "mdb_txn_begin");
    MDB_val key = {kl, unconst(k)}, v;
    int64_t cur = 0;
    rc = mdb_get(t, h->dbi, &key, &v);
    if (rc == 0) {
        char tmp[24];
        size_t n = v.mv_size < sizeof tmp - 1 ? v.mv_size : sizeof tmp - 1;
        memcpy(tmp, v.mv_data, n);
        tmp[n] = 0;
        cur = strtoll(tmp, NULL, 10);
    } else if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(t);
        return fail(h, rc, "mdb_get");
    }
    cur++;
    char out[24];
    int n = snprintf(out, sizeof out, "%lld", (long long)cur);
    MDB_val nv = {(size_t)n, out};
    rc = mdb_put(t, h->dbi, &key, &nv, 0);
    if (rc) {
        mdb_txn_abort(t);
        return fail(h, rc, "mdb_put");
    }
    rc = mdb_txn_commit(t);
    if (rc)
        return fail(h, rc, "mdb_txn_commit");
    *result = cur;
    return BENCH_OK;
}

static int lmdb_mget(void *p, const char *const *k, const size_t *kl, unsigned n, char *buf,
                     size_t slot, unsigned *hits)
{
    rh *h = p;
    int rc = mdb_txn_renew(h->rtxn);
    if (rc)
        return fail(h, rc, "mdb_txn_renew");
    unsigned found = 0;
    for (unsigned i = 0; i < n; i++) {
        MDB_val key = {kl[i], unconst(k[i])}, v;
        rc = mdb_get(h->rtxn, h->dbi, &key, &v);
        if (rc == 0) {
            memcpy(buf + i * slot, v.mv_data, v.mv_size < slot ? v.mv_size : slot);
            found++;
        } else if (rc != MDB_NOTFOUND) {
            mdb_txn_reset(h->rtxn);
            return fail(h, rc, "mdb_get");
        }
    }
    mdb_txn_reset(h->rtxn);
    *hits = found;
    return BENCH_OK;
}

/* Pages in use: the file's high-water mark minus the pages on the free list,
 * the same definition lmc_stats uses for used_pages. */
static int env_space(MDB_env *env, MDB_dbi dbi, uint64_t *used, uint64_t *entries, char *err,
                     size_t n)
{
    MDB_txn *t;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t);
    if (rc) {
        snprintf(err, n, "mdb_txn_begin: %s", mdb_strerror(rc));
        return -1;
    }
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(env, &info);
    mdb_stat(t, dbi, &st);
    uint64_t freep = 0;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(t, 0, &cur)) == 0) {
        MDB_val k, d;
        while ((rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0)
            freep += *(size_t *)d.mv_data; /* an IDL: its first word is the count */
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(t);
    *used = ((uint64_t)info.me_last_pgno + 1 - freep) * st.ms_psize;
    *entries = st.ms_entries;
    return 0;
}

int bench_lmdb_space(const char *path, uint64_t *used_bytes, uint64_t *entries, char *err,
                     size_t n)
{
    MDB_env *env;
    if (env_open(path, 0, false, &env, err, n))
        return -1;
    MDB_dbi dbi;
    int rc = -1;
    if (dbi_open(env, false, false, &dbi, err, n) == 0)
        rc = env_space(env, dbi, used_bytes, entries, err, n);
    mdb_env_close(env);
    return rc;
}

/* What a worker does on start with raw LMDB: open the env, open the DBI,
 * create its read txn and read one key.  Returns 0 if the key was found. */
int bench_lmdb_open_probe(const char *path, const char *key, size_t kl, char *err, size_t n)
{
    MDB_env *env;
    if (env_open(path, 0, false, &env, err, n))
        return -1;
    MDB_dbi dbi;
    int rc = -1;
    MDB_txn *t = NULL;
    if (dbi_open(env, false, false, &dbi, err, n) == 0 &&
        mdb_txn_begin(env, NULL, MDB_RDONLY, &t) == 0) {
        MDB_val k = {kl, unconst(key)}, v;
        rc = mdb_get(t, dbi, &k, &v) == 0 ? 0 : -1;
        if (rc)
            snprintf(err, n, "key not found");
        mdb_txn_abort(t);
    }
    mdb_env_close(env);
    return rc;
}

static int lmdb_mem(const bench_cfg *cfg, uint64_t *bytes, const char **how)
{
    char err[256];
    uint64_t entries;
    char path[512];
    path_of(cfg, V_MAIN, path, sizeof path);
    if (bench_lmdb_space(path, bytes, &entries, err, sizeof err))
        return -1;
    *how = "(last page + 1 - free pages) x page size";
    return 0;
}

static void lmdb_ver(const bench_cfg *cfg, char *buf, size_t n)
{
    (void)cfg;
    snprintf(buf, n, "%s", mdb_version(NULL, NULL, NULL));
}

const bench_contender bench_lmdb = {
    .name = "lmdb",
    .unavailable = lmdb_unavailable,
    .load = lmdb_load,
    .unload = lmdb_unload,
    .open = lmdb_open,
    .close = lmdb_close,
    .errmsg = lmdb_msg,
    .get = lmdb_get,
    .set = lmdb_set,
    .add = lmdb_add,
    .incr = lmdb_incr,
    .mget = lmdb_mget,
    .mem_used = lmdb_mem,
    .version = lmdb_ver,
};

const bench_contender bench_lmdb_named = {
    .name = "lmdb-named",
    .unavailable = lmdb_unavailable,
    .load = lmdbn_load,
    .unload = lmdbn_unload,
    .open = lmdbn_open,
    .close = lmdb_close,
    .errmsg = lmdb_msg,
    .get = lmdb_get,
    .set = lmdb_set,
    .add = lmdb_add,
    .incr = lmdb_incr,
    .mget = lmdb_mget,
    .version = lmdb_ver,
};

const bench_contender bench_lmdb_pair = {
    .name = "lmdb-pair",
    .unavailable = lmdb_unavailable,
    .load = lmdbp_load,
    .unload = lmdbp_unload,
    .open = lmdbp_open,
    .close = lmdb_close,
    .errmsg = lmdb_msg,
    .get = lmdb_get,
    .set = lmdb_set,
    .add = lmdb_add,
    .incr = lmdb_incr,
    .mget = lmdb_mget,
    .version = lmdb_ver,
};
