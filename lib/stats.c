/*
 * stats.c - lmc_stats, lmc_stats_processes and the table of stat fields:
 * the counters of every slot of the stats file (slots.c) summed, and the
 * gauges computed from LMDB when they are asked for.
 */
#include "fmacros.h"

#include <string.h>
#include <unistd.h>

#include "call.h"
#include "error.h"
#include "flushtab.h"
#include "slots.h"
#include "space.h"
#include "txn.h"

/* Expiry rows read per read transaction when counting them: a count never
 * pins a snapshot for long. */
#define LMC__COUNT_CHUNK 65536u

/*
 * The entries of the cache and those with a TTL.  LMDB counts the keys of
 * the main database, which holds lmc's own few keys (the record of "meta",
 * the tick, the fill leases), the entries and the expiry rows, in that
 * order: the rows are counted (one per entry with a TTL), in read
 * transactions of a bounded size, and the entries are what is left.  The
 * transactions are not one snapshot, so under concurrent writes the figures
 * are as exact as a gauge needs.
 */
static int count_entries(lmc *c, uint64_t *entries, uint64_t *with_ttl)
{
    lmc__core *k = c->core;
    *entries = *with_ttl = 0;
    lmc__rtxn *r;
    int rc = lmc__rbegin(c, &r);
    if (rc)
        return rc;
    MDB_stat st;
    MDB_cursor *cur;
    if ((rc = mdb_stat(r->txn, k->dbi_main, &st)) ||
        (rc = mdb_cursor_open(r->txn, k->dbi_main, &cur))) {
        lmc__rend(r);
        return lmc__mdb_err(c, rc, "counting the entries");
    }
    uint64_t own = 0, rows = 0;
    MDB_val key, d;
    rc = mdb_cursor_get(cur, &key, &d, MDB_FIRST);
    while (rc == 0 && !lmc__is_row_key(&key) && !lmc__is_entry_key(&key)) {
        own++;
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
    }
    /* The rows come after the entries (format.h). */
    if (rc == 0) {
        key = lmc__rows_start();
        rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    }
    for (unsigned n = 0; rc == 0 && lmc__is_row_key(&key); n++) {
        if (n == LMC__COUNT_CHUNK) {
            /* Go on in a fresh snapshot, from the next row. */
            lmc__resume at;
            lmc__resume_at(&at, &key);
            mdb_cursor_close(cur);
            lmc__rend(r);
            if ((rc = lmc__rbegin(c, &r)))
                return rc;
            if ((rc = mdb_cursor_open(r->txn, k->dbi_main, &cur))) {
                lmc__rend(r);
                return lmc__mdb_err(c, rc, "counting the entries");
            }
            key = (MDB_val){at.len, at.key};
            rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
            n = 0;
            continue;
        }
        rows++;
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    lmc__rend(r);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(c, rc, "counting the entries");
    uint64_t rest = st.ms_entries > own + rows ? st.ms_entries - own - rows : 0;
    *entries = rest;
    *with_ttl = rows < rest ? rows : rest;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * The layouts lmc.h promises, checked here because this file fills them.
 * lmc_counters keeps its size whatever counters a version has, and each
 * counter sits at its index in the stats file's slots (LMC__C_*), so the
 * counters are copied as one array; the gauges start after the counters
 * and never move when a counter is added.  The sizes are the ABI: a change
 * to any of them is a new major version.
 */
_Static_assert(sizeof(lmc_counters) == 512, "lmc_counters is 64 slots of 8 bytes");
_Static_assert((int)LMC__NCOUNTERS == (int)LMC__NCTR, "one counter per LMC__C_* index");
_Static_assert(LMC__NCOUNTERS <= LMC_COUNTER_SLOTS && LMC__NGAUGES <= LMC_GAUGE_SLOTS,
               "the counters and gauges fit their reserved room");
#define LMC__CTR_AT(name, help)                                                               \
    _Static_assert(offsetof(lmc_counters, name) == LMC__C_##name * sizeof(uint64_t),          \
                   "counter " #name " is at its index");
LMC_COUNTERS(LMC__CTR_AT)
#undef LMC__CTR_AT
#define LMC__GAUGE_SIZE(name, type, help)                                                     \
    _Static_assert(sizeof(type) == 8, "gauge " #name " takes one 8-byte slot");
LMC_GAUGES(LMC__GAUGE_SIZE)
#undef LMC__GAUGE_SIZE
_Static_assert(offsetof(lmc_stat, counters) == 0 && offsetof(lmc_stat, entries) == 512,
               "lmc_stat: the counters, then the gauges from the first one");
_Static_assert(sizeof(lmc_stat) == 768, "lmc_stat is 64 counter and 32 gauge slots");
_Static_assert(offsetof(lmc_proc_stat, counters) == 24 && sizeof(lmc_proc_stat) == 600,
               "lmc_proc_stat: pid, started_ms, alive, the counters, a reserved tail");
_Static_assert(sizeof(lmc_stat_field) == 48, "lmc_stat_field is 48 bytes");

int lmc_stats(lmc *c, lmc_stat *st)
{
    if (!c || !st)
        return lmc__err(c, LMC_EINVAL, "NULL argument");
    int rc = lmc__call(c);
    if (rc)
        return rc;
    lmc__core *k = c->core;
    memset(st, 0, sizeof *st);

    uint64_t *ctr = &st->counters.gets;
    unsigned processes = 0;
    for (unsigned i = 0, used = lmc__slots_used(k); i < used; i++) {
        const lmc__slot *s = lmc__slot_at(k, i);
        for (unsigned j = 0; j < LMC__NCTR; j++)
            ctr[j] += atomic_load_explicit(&s->ctr[j], memory_order_relaxed);
        if (i > 0 && (i == k->slot_index || lmc__slot_holder(k, i) != 0))
            processes++;
    }
    st->counters.gets = st->counters.hits + st->counters.misses;

    lmc__fill f;
    if ((rc = lmc__fill_get(c, &f)))
        return rc;
    if ((rc = count_entries(c, &st->entries, &st->entries_with_ttl)))
        return rc;
    lmc__totals_get(k, &st->key_bytes, &st->value_bytes);
    st->map_size = (uint64_t)f.total_pages * f.psize;
    st->page_size = f.psize;
    st->total_pages = f.total_pages;
    st->used_pages = f.used_pages;
    st->free_pages = f.free_pages;
    st->fill = f.fill;
    st->last_txnid = f.last_txnid;

    lmc__readers rd;
    lmc__readers_get(k, &rd);
    st->readers = rd.slots;
    st->readers_stale = rd.stale;
    st->readers_active = rd.active;
    st->reader_lag = rd.oldest && f.last_txnid > rd.oldest ? f.last_txnid - rd.oldest : 0;
    unsigned mr = 0;
    mdb_env_get_maxreaders(k->env, &mr);
    st->max_readers = mr;
    st->processes = processes;
    st->flush_markers = lmc__flush_pending(k);
    return 0;
}

int lmc_stats_processes(lmc *c, lmc_proc_stat *out, size_t cap, size_t *n)
{
    if (!c || !n || (!out && cap))
        return lmc__err(c, LMC_EINVAL, "NULL argument");
    int rc = lmc__call(c);
    if (rc)
        return rc;
    lmc__core *k = c->core;
    size_t found = 0;
    for (unsigned i = 0, used = lmc__slots_used(k); i < used; i++) {
        const lmc__slot *s = lmc__slot_at(k, i);
        pid_t holder = 0;
        if (i == 0) {
            uint64_t any = 0;
            for (unsigned j = 0; j < LMC__NCTR; j++)
                any |= atomic_load_explicit(&s->ctr[j], memory_order_relaxed);
            if (!any)
                continue;
        } else if (i == k->slot_index) {
            holder = getpid();
        } else if ((holder = lmc__slot_holder(k, i)) == 0) {
            continue;
        }
        if (found < cap) {
            lmc_proc_stat *p = &out[found];
            memset(p, 0, sizeof *p);
            p->pid = i == 0 ? 0 : (holder > 0 ? holder : atomic_load(&s->pid));
            p->started_ms = i == 0 ? 0 : atomic_load(&s->started_ms);
            p->alive = i != 0;
            uint64_t *pc = &p->counters.gets;
            for (unsigned j = 0; j < LMC__NCTR; j++)
                pc[j] = atomic_load_explicit(&s->ctr[j], memory_order_relaxed) -
                        (i == 0 ? 0 : s->base[j]);
            p->counters.gets = p->counters.hits + p->counters.misses;
        }
        found++;
    }
    *n = found;
    return 0;
}

static const lmc_stat_field stat_fields[] = {
#define LMC__FIELD_C(name, help)                                                              \
    {#name, help, LMC_FIELD_COUNTER, offsetof(lmc_stat, counters.name)},
    LMC_COUNTERS(LMC__FIELD_C)
#undef LMC__FIELD_C
#define LMC__FIELD_G(name, type, help)                                                        \
    {#name, help, sizeof(type) == sizeof(double) && (type)0.5 != 0 ? LMC_FIELD_GAUGE_DOUBLE  \
                                                                   : LMC_FIELD_GAUGE_U64,    \
     offsetof(lmc_stat, name)},
    LMC_GAUGES(LMC__FIELD_G)
#undef LMC__FIELD_G
};

const lmc_stat_field *lmc_stat_fields(size_t *n)
{
    if (n)
        *n = sizeof stat_fields / sizeof stat_fields[0];
    return stat_fields;
}
