/*
 * lmdbmeta.h - everything lmc knows of LMDB 0.9's private layouts and
 * behaviours, which lmdb.h does not promise (lmdbmeta.c):
 *   - the meta page (read before LMDB maps a file, and by the verifier);
 *   - the layout of pages, nodes and database records (the verifier);
 *   - the free list's record format and its rule of reuse (space.c);
 *   - the text of mdb_reader_list (space.c);
 *   - that a read transaction is one block mdb_txn_abort just frees (txn.c,
 *     after fork);
 *   - that MDB_NEXT after mdb_cursor_del returns the entry that followed the
 *     deleted one (every range delete);
 *   - where values go to pages of their own, and the size of the lock file.
 *
 * They were read off LMDB 0.9.24 (libraries/liblmdb/mdb.c) and checked by the
 * tests against Debian's liblmdb 0.9.24.  This header refuses to build
 * against another series, and lmc__lmdb_check refuses at open a liblmdb of
 * another version than the one lmc was built with and verified against.
 */
#ifndef LMC_LMDBMETA_H
#define LMC_LMDBMETA_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lmc.h"

#if MDB_VERSION_MAJOR != 0 || MDB_VERSION_MINOR != 9
#error "lmc relies on private layouts of LMDB 0.9 (lib/lmdbmeta.h): check them for this LMDB"
#endif

/* The LMDB releases whose internals were checked against lmdbmeta.h: their
 * patch levels, the lowest and the highest.  0.9.23 is the first whose
 * mdb_env_close is safe in a child after fork. */
#define LMC__LMDB_VERIFIED_MIN 24
#define LMC__LMDB_VERIFIED_MAX 24

#if MDB_VERSION_PATCH < LMC__LMDB_VERIFIED_MIN || MDB_VERSION_PATCH > LMC__LMDB_VERIFIED_MAX
#error "lmc was verified with LMDB 0.9.24 only (lib/lmdbmeta.h): check its layouts for this one"
#endif

/* The offsets below are those of a 64-bit LMDB, whose page numbers, sizes
 * and transaction ids are size_t. */
_Static_assert(sizeof(size_t) == 8 && sizeof(void *) == 8,
               "lmc needs a 64-bit (LP64) target: lib/lmdbmeta.h has a 64-bit LMDB's layouts");

/* LMC_OK, or LMC_EVERSION with a message when the liblmdb this process runs
 * is not the version lmc was built with (the layouts above, and the layout
 * of the lock file that every process of a cache shares, must match). */
int lmc__lmdb_check(const lmc *h);

/* ------------------------------------------------------------------------ */
/* Pages, nodes and database records                                        */
/* ------------------------------------------------------------------------ */

/*
 * A page starts with a 16-byte header: its page number (u64), 2 bytes of
 * padding, its flags (u16 at 10), then either the lower and upper bounds of
 * its free space (u16 at 12 and 14: branch and leaf pages) or the number of
 * pages of an overflow run (u32 at 12).  The array of node offsets (u16
 * each, from the start of the page) follows the header up to `lower`; the
 * nodes themselves are packed from `upper` to the end of the page, each of
 * an even size.  A node is: data size (leaf) or child page number (branch)
 * in two u16 (lo, hi), node flags (u16; the top 16 bits of the page number
 * in a branch node), key size (u16), the key, then the data (leaf): the
 * value itself, a page number of an overflow run (F_BIGDATA), or a 48-byte
 * database record (F_SUBDATA, a named database).
 */
#define LMC__PG_HDR 16u
#define LMC__PG_BRANCH 0x01u
#define LMC__PG_LEAF 0x02u
#define LMC__PG_OVERFLOW 0x04u
#define LMC__PG_META 0x08u
#define LMC__PG_LEAF2 0x20u
#define LMC__PG_SUBP 0x40u
#define LMC__PG_TYPES (LMC__PG_BRANCH | LMC__PG_LEAF | LMC__PG_OVERFLOW | LMC__PG_META | \
                       LMC__PG_LEAF2 | LMC__PG_SUBP)
#define LMC__NODE_HDR 8u
#define LMC__NODE_BIGDATA 0x01u
#define LMC__NODE_SUBDATA 0x02u
#define LMC__NODE_DUPDATA 0x04u
#define LMC__NUM_METAS 2u
#define LMC__NO_PAGE UINT64_MAX /* the root of an empty tree */
/* LMDB's own bounds: keys of at most 511 bytes, trees at most 32 deep. */
#define LMC__LMDB_MAX_KEY 511u
#define LMC__LMDB_MAX_DEPTH 32u

/* A database record: in the meta page (the free list and the main tree) and
 * in an F_SUBDATA node (a named database). */
#define LMC__DB_REC 48u
typedef struct lmc__lmdb_db {
    uint16_t flags, depth;
    uint64_t branch, leaf, overflow, entries, root;
} lmc__lmdb_db;

static inline uint16_t lmc__get16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t lmc__get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t lmc__get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

void lmc__lmdb_db_parse(const unsigned char *p, lmc__lmdb_db *d);

/* ------------------------------------------------------------------------ */
/* The meta page                                                            */
/* ------------------------------------------------------------------------ */

/*
 * The meta page (LMDB data format 1 on LP64): the page header, then MDB_meta:
 * magic at 0, version at 4, the map size at 16, the record of the free list
 * at 24 (its first u32 is the page size) and of the main tree at 72, the
 * last page in use at 120 and the transaction id at 128.  Offsets below are
 * from the start of the page.
 */
#define LMC__META_MAGIC 0xBEEFC0DEu
#define LMC__META_VERSION 1u
#define LMC__META_FREE_DB (LMC__PG_HDR + 24u)
#define LMC__META_MAIN_DB (LMC__PG_HDR + 72u)
#define LMC__META_LAST_PG (LMC__PG_HDR + 120u)
#define LMC__META_TXNID (LMC__PG_HDR + 128u)
#define LMC__META_SIZE (LMC__PG_HDR + 136u)

/* What open needs of a data file before it hands the file to LMDB. */
typedef struct lmc__lmdb_meta {
    uint64_t mapsize, last_pg, txnid;
    unsigned psize;
} lmc__lmdb_meta;

/* Read and check both meta pages of data.mdb (fd, of fsize bytes, in the
 * cache at path): LMC_ECORRUPT for a file that is not LMDB's or is cut
 * short, LMC_EVERSION for another data format; the newer page on success. */
int lmc__lmdb_read_meta(const lmc *h, int fd, const char *path, uint64_t fsize,
                        lmc__lmdb_meta *out);

/* ------------------------------------------------------------------------ */
/* Free list, reader table, transactions, cursors, sizes                    */
/* ------------------------------------------------------------------------ */

/* A record of the free list (database 0): the key is the id of the
 * transaction that freed the pages, the data an ID list whose first word is
 * its length. */
static inline uint64_t lmc__lmdb_freed_by(const MDB_val *key)
{
    size_t id = 0;
    if (key->mv_size == sizeof id)
        memcpy(&id, key->mv_data, sizeof id);
    return id;
}

static inline uint64_t lmc__lmdb_freed_count(const MDB_val *d)
{
    size_t n = 0;
    if (d->mv_size >= sizeof n)
        memcpy(&n, d->mv_data, sizeof n);
    return n;
}

/* Parse one line of mdb_reader_list: "pid thread txnid", the txnid being "-"
 * for a reader that is between transactions.  Returns false for the heading
 * and for "(no active readers)"; *txnid is 0 for an idle slot. */
bool lmc__lmdb_reader_line(const char *msg, long *pid, uint64_t *txnid);

/* Release this process's copy, made by fork, of a read transaction of the
 * parent, without touching the parent's reader slot (which mdb_txn_abort
 * would clear in shared memory). */
void lmc__lmdb_forget_txn(MDB_txn *txn);

/* After mdb_cursor_del, the cursor already sits on the entry that followed
 * the deleted one; this returns it (LMDB 0.9 keeps a C_DEL flag for this, so
 * that MDB_NEXT does not skip it). */
static inline int lmc__lmdb_next_after_del(MDB_cursor *cur, MDB_val *key, MDB_val *d)
{
    return mdb_cursor_get(cur, key, d, MDB_NEXT);
}

/* Pages of its own (contiguous "overflow" pages) a value of dsize bytes takes
 * under a key of ksize bytes, 0 if it stays in its leaf: LMDB moves a value
 * out of the leaf when its node (8 bytes, key, data) exceeds me_nodemax,
 * (psize - 16) / 2 - 2 rounded down to an even number. */
uint64_t lmc__lmdb_value_pages(unsigned psize, size_t ksize, size_t dsize);

/* Bytes LMDB gives a new lock file of max_readers reader slots (64 bytes
 * each, after a header of 128), sparse. */
static inline uint64_t lmc__lmdb_lock_size(unsigned max_readers)
{
    return (uint64_t)max_readers * 64 + 128;
}

#endif /* LMC_LMDBMETA_H */
