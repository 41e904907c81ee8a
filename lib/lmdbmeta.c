/*
 * lmdbmeta.c - the parts of lmdbmeta.h that are not one-liners: the version
 * check, the meta page, database records and the reader-list text.
 */
#include "fmacros.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "lmdbmeta.h"

int lmc__lmdb_check(const lmc *h)
{
    int major = 0, minor = 0, patch = 0;
    mdb_version(&major, &minor, &patch);
    if (major == MDB_VERSION_MAJOR && minor == MDB_VERSION_MINOR && patch == MDB_VERSION_PATCH)
        return LMC_OK;
    return lmc__err(h, LMC_EVERSION, "this process runs liblmdb %d.%d.%d, but lmc was built with "
                    "and verified against %d.%d.%d: it relies on private layouts of that version "
                    "(lib/lmdbmeta.h), and every process of a cache must use the same liblmdb",
                    major, minor, patch, MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH);
}

void lmc__lmdb_db_parse(const unsigned char *p, lmc__lmdb_db *d)
{
    d->flags = lmc__get16(p + 4);
    d->depth = lmc__get16(p + 6);
    d->branch = lmc__get64(p + 8);
    d->leaf = lmc__get64(p + 16);
    d->overflow = lmc__get64(p + 24);
    d->entries = lmc__get64(p + 32);
    d->root = lmc__get64(p + 40);
}

static int parse_meta_page(const unsigned char *pg, lmc__lmdb_meta *m, uint32_t *version)
{
    uint16_t flags = lmc__get16(pg + 10);
    uint32_t magic = lmc__get32(pg + LMC__PG_HDR);
    *version = lmc__get32(pg + LMC__PG_HDR + 4);
    if (!(flags & LMC__PG_META) || magic != LMC__META_MAGIC)
        return -1;
    m->mapsize = lmc__get64(pg + LMC__PG_HDR + 16);
    m->psize = lmc__get32(pg + LMC__META_FREE_DB);
    m->last_pg = lmc__get64(pg + LMC__META_LAST_PG);
    m->txnid = lmc__get64(pg + LMC__META_TXNID);
    return 0;
}

int lmc__lmdb_read_meta(const lmc *h, int fd, const char *path, uint64_t fsize,
                        lmc__lmdb_meta *out)
{
    unsigned char pg[LMC__META_SIZE];
    lmc__lmdb_meta m[2];
    uint32_t ver[2];
    off_t off = 0;
    for (int i = 0; i < 2; i++) {
        ssize_t n = pread(fd, pg, sizeof pg, off);
        if (n != (ssize_t)sizeof pg || parse_meta_page(pg, &m[i], &ver[i]) != 0)
            return lmc__err(h, LMC_ECORRUPT, "%s/data.mdb is not an LMDB file (bad meta page %d)",
                            path, i);
        if (ver[i] != LMC__META_VERSION)
            return lmc__err(h, LMC_EVERSION, "%s/data.mdb has LMDB data format %u, expected %u",
                            path, ver[i], LMC__META_VERSION);
        if (i == 0) {
            unsigned ps = m[0].psize;
            if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
                return lmc__err(h, LMC_ECORRUPT, "%s/data.mdb has a bad page size %u", path, ps);
            off = (off_t)ps;
        }
    }
    lmc__lmdb_meta *best = m[1].txnid > m[0].txnid ? &m[1] : &m[0];
    best->psize = m[0].psize;
    if (best->last_pg >= (UINT64_MAX / best->psize) - 1 ||
        fsize < (best->last_pg + 1) * best->psize)
        return lmc__err(h, LMC_ECORRUPT,
                        "%s/data.mdb is truncated: %llu bytes, but its last page ends at %llu",
                        path, (unsigned long long)fsize,
                        (unsigned long long)((best->last_pg + 1) * best->psize));
    *out = *best;
    return 0;
}

bool lmc__lmdb_reader_line(const char *msg, long *pid, uint64_t *txnid)
{
    char *end;
    errno = 0;
    long p = strtol(msg, &end, 10);
    if (end == msg || errno || p <= 0)
        return false;
    const char *s = end;
    while (*s == ' ')
        s++;
    while (*s && *s != ' ') /* the thread id, in hex */
        s++;
    while (*s == ' ')
        s++;
    *pid = p;
    *txnid = *s == '-' ? 0 : strtoull(s, NULL, 10);
    return true;
}

void lmc__lmdb_forget_txn(MDB_txn *txn)
{
    /* LMDB 0.9 allocates a read-only txn as one calloc'd block that
     * mdb_txn_abort just free()s (mdb_txn_begin, mdb_txn_end), so freeing
     * that block releases our copy and nothing else. */
    free(txn);
}

uint64_t lmc__lmdb_value_pages(unsigned psize, size_t ksize, size_t dsize)
{
    size_t nodemax = ((psize - 16u) / 2u & ~(size_t)1) - 2u;
    if (8u + ksize + dsize <= nodemax)
        return 0;
    return (uint64_t)((15u + dsize) / psize + 1u);
}
