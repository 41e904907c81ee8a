/*
 * metadb.c - the meta database of a cache.  Version numbers of entries are
 * version_base + LMDB's transaction id (see lmc__meta_create for why the
 * base is a time), and a cache on disk records the boot that writes it, so
 * that core.c can tell a cache written before an unclean reboot.
 */
#include "fmacros.h"

#include <errno.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "format.h"
#include "metadb.h"

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *v, size_t n)
{
    MDB_val k = {strlen(name), (void *)(uintptr_t)name};
    MDB_val d = {n, (void *)(uintptr_t)v};
    return mdb_put(txn, dbi, &k, &d, 0);
}

/* Read a meta value; returns the length copied (0 if absent or too long). */
static size_t meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, void *out, size_t cap)
{
    MDB_val k = {strlen(name), (void *)(uintptr_t)name};
    MDB_val d;
    if (mdb_get(txn, dbi, &k, &d) != 0 || d.mv_size > cap)
        return 0;
    memcpy(out, d.mv_data, d.mv_size);
    return d.mv_size;
}

/* Create the databases and meta of a new cache. */
int lmc__meta_create(const lmc *h, lmc__core *k, const char *boot)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_begin (create)");
    uint32_t fmt = LMC__FORMAT_VERSION;
    int64_t created = lmc__now_ms();
    /* Versions are version_base + LMDB txn id.  Starting from the creation
     * time in ns keeps them above every version a previous incarnation of the
     * cache can have handed out (at most one txn per ns), so a stale CAS
     * token never matches after a reset. */
    uint64_t vbase = (uint64_t)lmc__wall_ns();
    uint8_t clean = 0;
    const char *what = "mdb_dbi_open";
    if ((rc = mdb_dbi_open(txn, NULL, 0, &k->dbi_main)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &k->dbi_meta)))
        goto fail;
    what = "mdb_put (meta)";
    if ((rc = meta_put(txn, k->dbi_meta, "format", &fmt, sizeof fmt)) ||
        (rc = meta_put(txn, k->dbi_meta, "created_ms", &created, sizeof created)) ||
        (rc = meta_put(txn, k->dbi_meta, "version_base", &vbase, sizeof vbase)) ||
        (rc = meta_put(txn, k->dbi_meta, "map_size", &k->map_size, sizeof k->map_size)) ||
        (rc = meta_put(txn, k->dbi_meta, "boot_id", boot, strlen(boot))) ||
        (rc = meta_put(txn, k->dbi_meta, "clean", &clean, 1)))
        goto fail;
    what = "mdb_txn_commit (create)";
    if ((rc = mdb_txn_commit(txn)))
        return lmc__mdb_err(h, rc == MDB_MAP_FULL ? ENOSPC : rc, what);
    k->created_ms = created;
    k->version_base = vbase;
    return 0;
fail:
    mdb_txn_abort(txn);
    return lmc__mdb_err(h, rc == MDB_MAP_FULL ? ENOSPC : rc, what);
}

int lmc__meta_load(const lmc *h, lmc__core *k, lmc__meta_state *ms)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_begin (open)");
    if ((rc = mdb_dbi_open(txn, NULL, 0, &k->dbi_main)) ||
        (rc = mdb_dbi_open(txn, "meta", 0, &k->dbi_meta))) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
            return lmc__err(h, LMC_ECORRUPT, "%s is an LMDB environment but not an lmc cache",
                            k->path);
        return lmc__mdb_err(h, rc, "mdb_dbi_open");
    }
    uint32_t fmt = 0;
    if (meta_get(txn, k->dbi_meta, "format", &fmt, sizeof fmt) != sizeof fmt ||
        meta_get(txn, k->dbi_meta, "created_ms", &k->created_ms, 8) != 8 ||
        meta_get(txn, k->dbi_meta, "version_base", &k->version_base, 8) != 8) {
        mdb_txn_abort(txn);
        return lmc__err(h, LMC_ECORRUPT, "%s: the lmc meta data is missing or damaged", k->path);
    }
    if (fmt != LMC__FORMAT_VERSION) {
        mdb_txn_abort(txn);
        return lmc__err(h, LMC_EVERSION, "%s has entry format %u; this library reads format %u "
                        "(stop the processes that use it with the other lmc version, then "
                        "recreate it: lmc_open with LMC_OPEN_RESET, or remove the directory; "
                        "its entries are lost, which a cache can afford)",
                        k->path, fmt, LMC__FORMAT_VERSION);
    }
    size_t n = meta_get(txn, k->dbi_meta, "boot_id", ms->boot, sizeof ms->boot - 1);
    ms->boot[n] = 0;
    ms->clean = 0;
    meta_get(txn, k->dbi_meta, "clean", &ms->clean, 1);
    /* Committing a read txn keeps the DBI handles it opened for the env. */
    rc = mdb_txn_commit(txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_commit (open)");
    return 0;
}

int lmc__meta_mark(const lmc *h, lmc__core *k, const char *boot, uint8_t clean)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_begin (boot id)");
    if ((rc = meta_put(txn, k->dbi_meta, "boot_id", boot, strlen(boot))) ||
        (rc = meta_put(txn, k->dbi_meta, "clean", &clean, 1))) {
        mdb_txn_abort(txn);
        return lmc__mdb_err(h, rc, "mdb_put (boot id)");
    }
    rc = mdb_txn_commit(txn);
    return rc ? lmc__mdb_err(h, rc, "mdb_txn_commit (boot id)") : 0;
}
