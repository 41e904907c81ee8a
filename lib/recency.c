/*
 * recency.c - the shared array of coarse access times used for approximate
 * LRU eviction of entries without TTL.
 *
 * Recording an access in LMDB would turn every get into a write transaction,
 * serialised on LMDB's one writer lock, so the access times of reads live in a
 * separate mmapped file, "recency": an array of 32-bit cells indexed by a
 * hash of the stored key.  A cell holds the time of the last access in 64 ms
 * units since the cache was created (0 = never) and a 6-bit tag of the key
 * that made it (recency.h).  Readers store into a cell only when it is
 * stale, so a hot key costs one shared-memory write per 64 ms however often
 * it is read.  Keys that share a cell share it: a key whose tag is not the
 * cell's counts as coldest, and the eviction order is approximate, which is
 * all LRU needs.  A write records its time in the entry it stores instead
 * (format.h): a cell stamped after every set was a cache miss per set, and
 * the eviction scores an entry by the later of the two.
 *
 * Stamping a cell costs a cache miss (the array is megabytes, indexed at
 * random), so reads queue their stamps per thread and write them in batches
 * with prefetching (lmc__stamp in recency.h); the queue is also written
 * when a sweep starts in that thread, when the thread exits and on close.
 *
 * The file needs no header: its size, a power of two of cells, is the whole
 * format.  A file of any other size is refused as damaged.
 */
#include "fmacros.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "file.h"
#include "recency.h"

#define LMC__REC_MIN_CELLS (1u << 12)
#define LMC__REC_MAX_CELLS (1u << 24)

/* One cell per 256 bytes of map (1.6 to 3.1% of its size, at most 64 MiB,
 * reserved in full at open like every mapped file): keys then
 * rarely share a cell, which matters because a run of entries is scored by
 * its most recently used member, so a collision with a newer key makes a
 * whole cold run look warm. */
static uint64_t cells_for(uint64_t map_size)
{
    uint64_t want = map_size / 256, n = LMC__REC_MIN_CELLS;
    while (n < want && n < LMC__REC_MAX_CELLS)
        n <<= 1;
    return n;
}

int lmc__recency_open(lmc__core *k, int dirfd, bool create, unsigned mode, const lmc *h)
{
    lmc__perm p;
    lmc__perm_from_mode(mode, &p);
    int fd;
    int rc = lmc__open_file(h, dirfd, k->path, "recency", create, k->rdonly, &p, &fd, NULL);
    if (rc == LMC_ENOCACHE && !create)
        return 0; /* a read-only handle does without */
    if (rc)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = lmc__sys_err(h, errno, "fstat %s/recency", k->path);
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    bool fresh = size == 0;
    if (size == 0 && !k->rdonly) {
        size = cells_for(k->map_size) * 4;
        if (ftruncate(fd, (off_t)size) != 0) {
            rc = lmc__sys_err(h, errno, "sizing %s/recency", k->path);
            goto fail;
        }
    }
    uint64_t cells = size / 4;
    if (size % 4 || cells < LMC__REC_MIN_CELLS || cells > LMC__REC_MAX_CELLS ||
        (cells & (cells - 1))) {
        rc = lmc__err(h, LMC_ECORRUPT, "%s/recency has a bad size (%llu bytes)", k->path,
                      (unsigned long long)size);
        goto fail;
    }
    /* The cells are stamped at random by every reader: a page the
     * filesystem could not supply later would be a SIGBUS in a worker's get,
     * so the whole array gets its storage now (ftruncate leaves it sparse,
     * and so did lmc versions before this one). */
    if ((rc = lmc__file_reserve(h, dirfd, k->path, "recency", fd, size, fresh && !k->rdonly)))
        goto fail;
    int prot = k->rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
    void *m = mmap(NULL, (size_t)size, prot, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        rc = lmc__sys_err(h, errno, "mmap %s/recency", k->path);
        goto fail;
    }
    k->rec_fd = fd;
    k->rec_size = (size_t)size;
    k->recency_mask = cells - 1;
    /* Read-only handles never stamp; the sweeper needs a read-write one. */
    k->recency = k->rdonly ? NULL : (_Atomic uint32_t *)m;
    k->rec_map = m;
    return 0;
fail:
    close(fd);
    return rc;
}

void lmc__stamp_flush(const lmc__core *k, lmc__rtxn *r)
{
    unsigned n = r->nstamps;
    r->nstamps = 0;
    if (!n || !k->recency)
        return;
    for (unsigned i = 0; i < n; i++)
        __builtin_prefetch((const void *)(uintptr_t)lmc__recency_cellp(k, r->stamps[i]), 1, 0);
    uint32_t now = lmc__recency_now(k, lmc__coarse_ms());
    for (unsigned i = 0; i < n; i++) {
        _Atomic uint32_t *cell = lmc__recency_cellp(k, r->stamps[i]);
        uint32_t v = lmc__recency_value(now, r->stamps[i]);
        if (atomic_load_explicit(cell, memory_order_relaxed) != v)
            atomic_store_explicit(cell, v, memory_order_relaxed);
    }
}

void lmc__stamp_flush_mine(lmc__core *k)
{
    lmc__rtxn *r = k->recency ? pthread_getspecific(k->tkey) : NULL;
    if (r)
        lmc__stamp_flush(k, r);
}

void lmc__recency_close(lmc__core *k)
{
    if (k->rec_map)
        munmap(k->rec_map, k->rec_size);
    if (k->rec_fd >= 0)
        close(k->rec_fd);
    k->rec_map = NULL;
    k->recency = NULL;
    k->rec_fd = -1;
    k->rec_size = 0;
}
