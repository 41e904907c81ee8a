/*
 * slots.c - the stats file: per-process counter slots, the byte totals, and
 * the header line the writers share (the writer gate of txn.c and the room
 * left of write.c).  lmc_stats (stats.c) reads it.
 *
 * Counters are kept outside LMDB, in a small mmapped file "stats": a 4 KiB
 * header and a table of per-process slots.  A process claims a slot when it
 * opens the cache by taking a POSIX record lock on the slot's first byte;
 * the kernel drops that lock when the process dies, however it dies, so a
 * slot whose byte is unlocked is free (no pid guessing, no PID-reuse
 * confusion), and F_GETLK tells readers which slots are live.  Only the owner
 * writes its slot, with relaxed atomic adds (its threads share it), so the
 * get path never writes a cache line that another process writes.
 *
 * Totals are the sum of every slot ever used.  A new owner does not zero a
 * reused slot: it records the counters it found as the slot's base, so totals
 * never go backwards when processes come and go (the dead process's counts
 * stay where they were), per-process figures are counter minus base, and a
 * process killed at any instruction leaves nothing to repair.
 *
 * Slot 0 is shared by processes that find the table full (lmc counts stay
 * exact, at the price of contended adds) and never locked.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "file.h"
#include "flushtab.h"
#include "gen.h"
#include "slots.h"

#define STATS_MAGIC "LMCSTAT"
#define STATS_VERSION 2u /* 2: 64 counters per slot */
#define STATS_HDR_SIZE 4096u
#define STATS_NSLOTS 1024u

typedef struct stats_hdr {
    char magic[8];
    uint32_t version;
    uint32_t nslots;
    uint32_t slot_size;
    uint32_t nctrs;
    int64_t created_ms;
    _Atomic uint32_t hwm; /* 1 + highest slot index ever claimed */
    uint32_t pad0;
    uint64_t pad1[3];
    /* The writer gate (txn.c), on a cache line of its own at offset 64 with
     * the writers' shared view of the room left (write.c): only writers
     * touch this line, and they already pass it back and forth. */
    _Atomic uint64_t gate;
    lmc__room room;
    uint64_t pad2[5];
    /* Bytes of keys and values stored, at offset 128: added by every writer
     * after its commit.  Kept in LMDB they would cost each write a second
     * root-to-leaf path of page copies; kept here a writer killed between
     * its commit and the add leaves them off by that one write, which is
     * within what a gauge is for. */
    _Atomic int64_t key_bytes;
    _Atomic int64_t value_bytes;
    /* Expiry rows in the map, kept the same way: not for lmc_stats, which
     * counts them exactly, but for the estimates of eviction (an entry's
     * share of the pages, which the rows share with the entries). */
    _Atomic int64_t rows;
    uint64_t pad3[109];
    /* At offset 1024: the words fill leases are waited on (lease.c), a
     * futex and a count of its sleepers per hash of the key. */
    lmc__wake wake[LMC__WAKE_WORDS];
    /* At offset 2048: the invalidation generations (gen.h).  Files made by
     * versions before them hold zeros here, which is a valid table. */
    lmc__gens gens;
    /* At offset 3136: the flush markers (flushtab.h), zeros in older files
     * too: no marker.  The rest of the 4 KiB header is free. */
    lmc__flushes flush;
} stats_hdr;

_Static_assert(offsetof(stats_hdr, gate) == 64, "the gate has a cache line of its own");
_Static_assert(offsetof(stats_hdr, key_bytes) == 128, "the byte totals stay where they were");
_Static_assert(offsetof(stats_hdr, rows) == offsetof(stats_hdr, key_bytes) + 16,
               "byte_totals[2] is the rows");
_Static_assert(offsetof(stats_hdr, wake) == 1024, "the wake words start at 1 KiB");
_Static_assert(offsetof(stats_hdr, gens) == 2048, "the generations start at 2 KiB");
_Static_assert(offsetof(stats_hdr, flush) == 3136, "the flush markers follow the generations");
_Static_assert(sizeof(stats_hdr) <= STATS_HDR_SIZE, "the header fits its 4 KiB");

_Static_assert(sizeof(lmc__slot) % 64 == 0, "slots are whole cache lines");
_Static_assert(LMC__NCTR <= LMC__SLOT_CTRS, "counters fit in a slot");

static stats_hdr *hdr(const lmc__core *k)
{
    return (stats_hdr *)(void *)k->stats_map;
}

lmc__slot *lmc__slot_at(const lmc__core *k, unsigned i)
{
    return (lmc__slot *)(void *)(k->stats_map + STATS_HDR_SIZE + (size_t)i * sizeof(lmc__slot));
}

static off_t slot_off(unsigned i)
{
    return (off_t)STATS_HDR_SIZE + (off_t)i * (off_t)sizeof(lmc__slot);
}

static size_t stats_file_size(unsigned nslots)
{
    return STATS_HDR_SIZE + (size_t)nslots * sizeof(lmc__slot);
}

int lmc__stats_open(lmc__core *k, int dirfd, bool create, unsigned mode, const lmc *h)
{
    lmc__perm p;
    lmc__perm_from_mode(mode, &p);
    int fd;
    int rc = lmc__open_file(h, dirfd, k->path, "stats", create, k->rdonly, &p, &fd, NULL);
    if (rc == LMC_ENOCACHE && !create)
        return 0; /* no counters yet: read-only handles read zeros */
    if (rc)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = lmc__sys_err(h, errno, "fstat %s/stats", k->path);
        goto fail;
    }
    size_t size = (size_t)st.st_size;
    /* A file without a header is new, or its creator died before writing
     * one; creation happens under the directory lock, so nobody can be using
     * it: (re)initialise it at full size. */
    char magic[8] = {0};
    static const char zero[8];
    bool fresh = size == 0 || (pread(fd, magic, 8, 0) == 8 && memcmp(magic, zero, 8) == 0);
    if (fresh) {
        if (k->rdonly) {
            close(fd);
            return 0;
        }
        size = stats_file_size(STATS_NSLOTS);
        if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0) {
            rc = lmc__sys_err(h, errno, "sizing %s/stats", k->path);
            goto fail;
        }
    }
    if (size < STATS_HDR_SIZE) {
        rc = lmc__err(h, LMC_ECORRUPT, "%s/stats is damaged (%zu bytes)", k->path, size);
        goto fail;
    }
    /* Every page of the mapping must have its storage before anything
     * touches it: a slot page the filesystem cannot supply later would be a
     * SIGBUS in the process claiming the slot.  ftruncate above leaves the
     * file sparse, and so did lmc versions before this one. */
    if ((rc = lmc__file_reserve(h, dirfd, k->path, "stats", fd, size, fresh)))
        goto fail;
    int prot = k->rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
    unsigned char *m = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        rc = lmc__sys_err(h, errno, "mmap %s/stats", k->path);
        goto fail;
    }
    stats_hdr *sh = (stats_hdr *)(void *)m;
    if (fresh) {
        sh->version = STATS_VERSION;
        sh->nslots = STATS_NSLOTS;
        sh->slot_size = sizeof(lmc__slot);
        sh->nctrs = LMC__SLOT_CTRS;
        sh->created_ms = lmc__now_ms();
        atomic_store(&sh->hwm, 1);
        atomic_thread_fence(memory_order_release);
        memcpy(sh->magic, STATS_MAGIC, 8);
    }
    k->stats_fresh = fresh;
    if (memcmp(sh->magic, STATS_MAGIC, 8) != 0 || sh->version != STATS_VERSION ||
        sh->slot_size != sizeof(lmc__slot) || sh->nctrs != LMC__SLOT_CTRS ||
        sh->nslots == 0 || sh->nslots > 65536 || size < stats_file_size(sh->nslots) ||
        atomic_load(&sh->hwm) > sh->nslots) {
        munmap(m, size);
        rc = lmc__err(h, LMC_ECORRUPT, "%s/stats is not an lmc stats file or is damaged",
                      k->path);
        goto fail;
    }
    k->stats_fd = fd;
    k->stats_map = m;
    k->stats_size = size;
    k->nslots = sh->nslots;
    k->gens = &sh->gens;
    k->flush = &sh->flush;
    return 0;
fail:
    close(fd);
    return rc;
}

void lmc__stats_claim(lmc__core *k)
{
    k->slot = &k->local_slot;
    k->slot_index = 0;
    k->room = &k->local_room;
    if (!k->stats_map || k->rdonly)
        return;
    stats_hdr *sh = hdr(k);
    for (unsigned i = 1; i < k->nslots; i++) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = slot_off(i),
                           .l_len = 1};
        if (fcntl(k->stats_fd, F_SETLK, &fl) != 0)
            continue;
        lmc__slot *s = lmc__slot_at(k, i);
        for (unsigned j = 0; j < LMC__SLOT_CTRS; j++)
            s->base[j] = atomic_load_explicit(&s->ctr[j], memory_order_relaxed);
        atomic_store(&s->started_ms, lmc__now_ms());
        atomic_store(&s->pid, (int64_t)getpid());
        uint32_t hwm = atomic_load(&sh->hwm);
        while (hwm < i + 1 && !atomic_compare_exchange_weak(&sh->hwm, &hwm, i + 1))
            ;
        k->slot = s;
        k->slot_index = i;
        k->gate = &sh->gate;
        k->room = &sh->room;
        k->wake = sh->wake;
        k->byte_totals = &sh->key_bytes;
        return;
    }
    /* Table full: share slot 0. */
    k->slot = lmc__slot_at(k, 0);
    k->room = &sh->room;
    k->wake = sh->wake;
    k->byte_totals = &sh->key_bytes;
}

void lmc__totals_add(lmc__core *k, int64_t key_bytes, int64_t value_bytes, int64_t rows)
{
    if (!k->byte_totals)
        return;
    if (key_bytes)
        atomic_fetch_add_explicit(&k->byte_totals[0], key_bytes, memory_order_relaxed);
    if (value_bytes)
        atomic_fetch_add_explicit(&k->byte_totals[1], value_bytes, memory_order_relaxed);
    if (rows)
        atomic_fetch_add_explicit(&k->byte_totals[2], rows, memory_order_relaxed);
}

uint64_t lmc__rows_guess(const lmc__core *k)
{
    int64_t n = k->byte_totals ? atomic_load_explicit(&k->byte_totals[2], memory_order_relaxed)
                               : 0;
    return n > 0 ? (uint64_t)n : 0;
}

int lmc__totals_rescan(const lmc *h, lmc__core *k)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_begin (recount)");
    if ((rc = mdb_cursor_open(txn, k->dbi_main, &cur))) {
        mdb_txn_abort(txn);
        return lmc__mdb_err(h, rc, "mdb_cursor_open (recount)");
    }
    /* From the first entry on: the entries, then the rows (format.h). */
    MDB_val key = lmc__entries_start(), d;
    int64_t kb = 0, vb = 0, rows = 0;
    rc = mdb_cursor_get(cur, &key, &d, MDB_SET_RANGE);
    while (rc == 0 && (lmc__is_row_key(&key) || lmc__is_entry_key(&key))) {
        lmc__entry e;
        if (lmc__is_row_key(&key)) {
            rows++;
        } else if (lmc__entry_parse(&key, &d, &e) == 0) {
            kb += (int64_t)e.klen;
            vb += (int64_t)e.vlen;
        }
        rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmc__mdb_err(h, rc, "recounting the entries");
    stats_hdr *sh = hdr(k);
    atomic_store(&sh->key_bytes, kb);
    atomic_store(&sh->value_bytes, vb);
    atomic_store(&sh->rows, rows);
    return 0;
}

pid_t lmc__slot_holder(const lmc__core *k, unsigned i)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = slot_off(i),
                       .l_len = 1};
    if (fcntl(k->stats_fd, F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
        return 0;
    return fl.l_pid ? fl.l_pid : -1;
}

unsigned lmc__stats_other_users(lmc__core *k)
{
    if (!k->stats_map)
        return 0;
    unsigned hwm = atomic_load(&hdr(k)->hwm), n = 0;
    for (unsigned i = 1; i < hwm && i < k->nslots; i++)
        if (i != k->slot_index && lmc__slot_holder(k, i) != 0)
            n++;
    return n;
}

void lmc__stats_close(lmc__core *k, bool owned)
{
    if (k->stats_map) {
        if (owned && k->slot_index > 0) {
            lmc__slot *s = lmc__slot_at(k, k->slot_index);
            atomic_store(&s->pid, 0);
        }
        munmap(k->stats_map, k->stats_size);
    }
    /* Closing the descriptor drops this process's slot lock (if any). */
    if (k->stats_fd >= 0)
        close(k->stats_fd);
    k->stats_map = NULL;
    k->stats_fd = -1;
    k->stats_size = 0;
    k->slot_index = 0;
    k->slot = &k->local_slot;
    k->gate = NULL;
    k->room = &k->local_room;
    k->wake = NULL;
    k->gens = NULL;
    k->flush = &lmc__flush_none;
    k->byte_totals = NULL;
}

unsigned lmc__slots_used(const lmc__core *k)
{
    if (!k->stats_map)
        return 0;
    unsigned hwm = atomic_load(&hdr(k)->hwm);
    return hwm < k->nslots ? hwm : k->nslots;
}

void lmc__totals_get(const lmc__core *k, uint64_t *key_bytes, uint64_t *value_bytes)
{
    *key_bytes = *value_bytes = 0;
    if (!k->stats_map)
        return;
    int64_t kb = atomic_load_explicit(&hdr(k)->key_bytes, memory_order_relaxed);
    int64_t vb = atomic_load_explicit(&hdr(k)->value_bytes, memory_order_relaxed);
    *key_bytes = kb > 0 ? (uint64_t)kb : 0;
    *value_bytes = vb > 0 ? (uint64_t)vb : 0;
}
