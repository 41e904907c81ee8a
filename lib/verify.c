/*
 * verify.c - lmc_verify: find damage in a cache's data file without
 * crashing the caller.
 *
 * LMDB trusts its pages.  It checks the meta pages when it opens a file and
 * page numbers against the end of the file, and nothing else: a leaf whose
 * key offsets or value sizes were overwritten sends a reader wherever they
 * point, and a reader copying a value of "four gigabytes" from there dies of
 * SIGSEGV.  Every process maps the file writable (MDB_WRITEMAP), so one
 * stray write in any worker can do that to all of them.
 *
 * lmc_verify forks.  The child opens the cache directory afresh and
 * read-only (never the caller's LMDB environment: an environment must not
 * be used across fork), takes one read snapshot, and walks the raw pages of
 * that snapshot itself, checking every offset and size before it reads
 * through it, so that the walk cannot be led outside the page or the file;
 * LMDB's own code is never asked to read a page.  The child reports through
 * a pipe.  Should it crash anyway (a case the checks missed, or a file cut
 * short under it), the crash is the report: the parent maps it to
 * LMC_ECORRUPT, and the caller lives on.
 *
 * The layout walked is that of LMDB 0.9 data files (format version 1, which
 * lmc_open checks) on LP64 hosts: see read_lmdb_meta in env.c for the meta
 * page, and the constants below for the rest.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define LMC__VERIFY_TIMEOUT_MS 600000u

/* ------------------------------------------------------------------------ */
/* LMDB 0.9 page layout                                                     */
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
#define PG_HDR 16u
#define PG_BRANCH 0x01u
#define PG_LEAF 0x02u
#define PG_OVERFLOW 0x04u
#define PG_META 0x08u
#define PG_LEAF2 0x20u
#define PG_SUBP 0x40u
#define PG_TYPES (PG_BRANCH | PG_LEAF | PG_OVERFLOW | PG_META | PG_LEAF2 | PG_SUBP)
#define NODE_HDR 8u
#define NODE_BIGDATA 0x01u
#define NODE_SUBDATA 0x02u
#define NODE_DUPDATA 0x04u
#define NUM_METAS 2u
#define NO_PAGE UINT64_MAX /* the root of an empty tree */
/* LMDB's own bounds: keys of at most 511 bytes, trees at most 32 deep. */
#define MAX_KEY 511u
#define MAX_DEPTH 32u

/* A database record: in the meta page (the free list and the main tree) and
 * in an F_SUBDATA node (a named database). */
#define DB_REC 48u
typedef struct vdb {
    uint16_t flags, depth;
    uint64_t branch, leaf, overflow, entries, root;
} vdb;

static uint16_t get16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void db_parse(const unsigned char *p, vdb *d)
{
    d->flags = get16(p + 4);
    d->depth = get16(p + 6);
    d->branch = get64(p + 8);
    d->leaf = get64(p + 16);
    d->overflow = get64(p + 24);
    d->entries = get64(p + 32);
    d->root = get64(p + 40);
}

/* ------------------------------------------------------------------------ */
/* The walk (in the child)                                                  */
/* ------------------------------------------------------------------------ */

enum { TREE_FREE, TREE_MAIN, TREE_EXPIRY, TREE_OTHER };

typedef struct vkey {
    const unsigned char *p;
    size_t n;
} vkey;

typedef struct vctx {
    const unsigned char *map;
    uint64_t psize;
    uint64_t npages;      /* last page in use + 1 */
    uint64_t txnid;
    unsigned char *seen;  /* one bit per page: already accounted for */
    lmc_verify_result *res;
    char msg[360];
    bool failed;
    /* The tree being walked. */
    const char *tree;
    int kind;
    uint64_t branch, leaf, overflow, entries;
    unsigned leaf_depth;  /* depth of the first leaf; every leaf must match */
    unsigned char last[MAX_KEY];
    size_t last_len;
    bool have_last;
    /* Found in the main tree. */
    vdb main_db, expiry_db;
    bool have_expiry;
    vdb others[8];
    char other_names[8][32];
    unsigned nothers;
    /* The entries with a TTL, by stored key (see ttl_add). */
    struct ttl_slot *ttl;
    size_t ttl_cap, ttl_n;
    bool oom;
} vctx;

static bool bad(vctx *v, const char *fmt, ...) LMC__PRINTF(2, 3);

/* Record the first problem found; returns false so that callers can write
 * "return bad(...)". */
static bool bad(vctx *v, const char *fmt, ...)
{
    if (!v->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->msg, sizeof v->msg, fmt, ap);
        va_end(ap);
        v->failed = true;
    }
    return false;
}

/* A key for a message: at most 40 bytes, printable ASCII, \xHH for the rest
 * (the namespace byte of entry keys is skipped). */
static const char *show_key(const unsigned char *k, size_t n, char *buf, size_t cap)
{
    size_t o = 0, i = 0;
    if (n >= 1 && k[0] == LMC__NS)
        i = 1;
    for (; i < n && o + 5 < cap && i < 41; i++) {
        if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\')
            buf[o++] = (char)k[i];
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", k[i]);
    }
    if (i < n && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

/* Claim page pg for what is being walked: it must lie in the used part of
 * the file and must not be claimed twice. */
static bool claim(vctx *v, uint64_t pg, const char *what)
{
    if (pg < NUM_METAS || pg >= v->npages)
        return bad(v, "%s tree: %s refers to page %llu, outside pages 2 to %llu in use", v->tree,
                   what, (unsigned long long)pg, (unsigned long long)(v->npages - 1));
    if (v->seen[pg >> 3] & (1u << (pg & 7)))
        return bad(v, "%s tree: %s refers to page %llu, which is already in use elsewhere",
                   v->tree, what, (unsigned long long)pg);
    v->seen[pg >> 3] |= (unsigned char)(1u << (pg & 7));
    return true;
}

static const unsigned char *page_at(const vctx *v, uint64_t pg)
{
    return v->map + pg * v->psize;
}

/* LMDB's orders: bytewise with shorter first (every database but the free
 * list), or native unsigned integers (the free list's transaction ids). */
static int key_cmp(const vctx *v, vkey a, vkey b)
{
    if (v->kind == TREE_FREE && a.n == 8 && b.n == 8) {
        uint64_t x = get64(a.p), y = get64(b.p);
        return x < y ? -1 : x > y;
    }
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c)
        return c;
    return a.n < b.n ? -1 : a.n > b.n;
}

/* The data of a leaf node: inside the node, or an overflow run whose pages
 * are claimed here. */
static bool node_data(vctx *v, uint64_t pg, unsigned i, const unsigned char *node,
                      vkey *out)
{
    uint32_t dsize = (uint32_t)get16(node) | ((uint32_t)get16(node + 2) << 16);
    uint16_t flags = get16(node + 4);
    const unsigned char *d = node + NODE_HDR + get16(node + 6);
    if (!(flags & NODE_BIGDATA)) {
        out->p = d;
        out->n = dsize;
        return true;
    }
    uint64_t ov = get64(d);
    uint64_t count = (PG_HDR - 1 + (uint64_t)dsize) / v->psize + 1;
    char what[64];
    snprintf(what, sizeof what, "node %u of page %llu", i, (unsigned long long)pg);
    if (ov < NUM_METAS || ov >= v->npages || count > v->npages - ov)
        return bad(v, "%s tree: %s has a value of %u bytes on pages %llu to %llu, outside "
                   "pages 2 to %llu in use", v->tree, what, dsize, (unsigned long long)ov,
                   (unsigned long long)(ov + count - 1), (unsigned long long)(v->npages - 1));
    const unsigned char *op = page_at(v, ov);
    if (get64(op) != ov || (get16(op + 10) & PG_TYPES) != PG_OVERFLOW ||
        get32(op + 12) != count)
        return bad(v, "%s tree: overflow page %llu (the value of %s) is damaged: it says "
                   "it is page %llu, flags 0x%x, %u pages long (expected %llu)", v->tree,
                   (unsigned long long)ov, what, (unsigned long long)get64(op),
                   get16(op + 10), get32(op + 12), (unsigned long long)count);
    for (uint64_t j = 0; j < count; j++)
        if (!claim(v, ov + j, what))
            return false;
    v->overflow += count;
    out->p = op + PG_HDR;
    out->n = dsize;
    return true;
}

/*
 * The entries with a TTL, collected in the walk of the main tree so that
 * each row of the expiry index finds its entry in O(1) (rows come in expiry
 * order, so looking each up in the tree would cost a descent per row: five
 * times the whole walk when every entry has a TTL).  Open addressing on a
 * hash of the stored key; the keys point into the map, which the snapshot
 * keeps as it is.
 */
typedef struct ttl_slot {
    const unsigned char *key; /* NULL: an empty slot */
    uint32_t klen;
    uint32_t matched;         /* an expiry row found it */
    uint64_t exp;
} ttl_slot;

static size_t ttl_home(const vctx *v, vkey k)
{
    return (size_t)lmc__hash64(k.p, k.n, 0x6c6d632d76657269ULL) & (v->ttl_cap - 1);
}

static ttl_slot *ttl_find(const vctx *v, vkey k)
{
    if (!v->ttl_cap)
        return NULL;
    for (size_t i = ttl_home(v, k);; i = (i + 1) & (v->ttl_cap - 1)) {
        ttl_slot *t = &v->ttl[i];
        if (!t->key)
            return NULL;
        if (t->klen == k.n && memcmp(t->key, k.p, k.n) == 0)
            return t;
    }
}

static bool ttl_add(vctx *v, vkey k, uint64_t exp)
{
    if (2 * (v->ttl_n + 1) > v->ttl_cap) {
        size_t cap = v->ttl_cap ? 2 * v->ttl_cap : 1024;
        ttl_slot *old = v->ttl, *nt = lmc__calloc(cap, sizeof *nt);
        if (!nt) {
            v->oom = true;
            return bad(v, "out of memory for the index of %zu entries with a TTL", v->ttl_n);
        }
        size_t oldcap = v->ttl_cap;
        v->ttl = nt;
        v->ttl_cap = cap;
        for (size_t i = 0; i < oldcap; i++) {
            if (!old[i].key)
                continue;
            vkey ok = {old[i].key, old[i].klen};
            size_t j = ttl_home(v, ok);
            while (nt[j].key)
                j = (j + 1) & (cap - 1);
            nt[j] = old[i];
        }
        lmc__free(old);
    }
    size_t j = ttl_home(v, k);
    while (v->ttl[j].key)
        j = (j + 1) & (v->ttl_cap - 1);
    v->ttl[j].key = k.p;
    v->ttl[j].klen = (uint32_t)k.n;
    v->ttl[j].matched = 0;
    v->ttl[j].exp = exp;
    v->ttl_n++;
    return true;
}

/* Find a key in the main tree, which has been walked (and found sound)
 * already; returns its leaf node or NULL.  Only for the message about an
 * expiry row whose entry is not among those with a TTL. */
static const unsigned char *main_find(const vctx *v, vkey key)
{
    uint64_t pg = v->main_db.root;
    if (pg == NO_PAGE)
        return NULL;
    for (unsigned level = 0; level < MAX_DEPTH; level++) {
        const unsigned char *p = page_at(v, pg);
        unsigned n = (get16(p + 12) - PG_HDR) / 2;
        bool branch = get16(p + 10) & PG_BRANCH;
        /* Binary search: the last node whose key is <= key (branch pages
         * ignore the key of node 0), or the exact key (leaf pages). */
        unsigned lo = branch ? 1 : 0, hi = n, at = 0;
        while (lo < hi) {
            unsigned mid = lo + (hi - lo) / 2;
            const unsigned char *node = p + get16(p + PG_HDR + 2 * mid);
            vkey k = {node + NODE_HDR, get16(node + 6)};
            int c = key_cmp(v, k, key);
            if (c == 0 && !branch)
                return node;
            if (c <= 0) {
                at = mid;
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (!branch)
            return NULL;
        const unsigned char *node = p + get16(p + PG_HDR + 2 * at);
        pg = (uint64_t)get16(node) | ((uint64_t)get16(node + 2) << 16) |
             ((uint64_t)get16(node + 4) << 32);
    }
    return NULL;
}

/* One leaf node of the tree being walked, by the tree's kind. */
static bool check_record(vctx *v, uint64_t pg, unsigned i, const unsigned char *node, vkey key)
{
    uint16_t flags = get16(node + 4);
    char kb[200];
    if (flags & NODE_DUPDATA)
        return bad(v, "%s tree: node %u of page %llu has duplicate data, which lmc never "
                   "stores", v->tree, i, (unsigned long long)pg);
    if (flags & NODE_SUBDATA) {
        if (v->kind != TREE_MAIN || (flags & NODE_BIGDATA) ||
            ((uint32_t)get16(node) | ((uint32_t)get16(node + 2) << 16)) != DB_REC)
            return bad(v, "%s tree: node %u of page %llu claims to be a database record",
                       v->tree, i, (unsigned long long)pg);
        const unsigned char *d = node + NODE_HDR + key.n;
        vdb db;
        db_parse(d, &db);
        if (key.n == 6 && memcmp(key.p, "expiry", 6) == 0) {
            v->expiry_db = db;
            v->have_expiry = true;
        } else if (v->nothers < sizeof v->others / sizeof v->others[0]) {
            v->others[v->nothers] = db;
            show_key(key.p, key.n, v->other_names[v->nothers], sizeof v->other_names[0]);
            v->nothers++;
        } else {
            return bad(v, "main tree: more named databases than lmc creates");
        }
        return true;
    }
    vkey data = {NULL, 0};
    if (!node_data(v, pg, i, node, &data))
        return false;
    if (v->kind == TREE_FREE) {
        /* A free list record: transaction id -> [n, page, page, ...]. */
        if (key.n != 8 || get64(key.p) > v->txnid)
            return bad(v, "free-list tree: record %u of page %llu has a bad key", i,
                       (unsigned long long)pg);
        uint64_t n = data.n >= 8 ? get64(data.p) : UINT64_MAX;
        if (data.n % 8 || n != data.n / 8 - 1)
            return bad(v, "free-list tree: record %u of page %llu holds %zu bytes, not a page list",
                       i, (unsigned long long)pg, data.n);
        for (uint64_t j = 1; j <= n; j++) {
            char what[64];
            snprintf(what, sizeof what, "record %u of page %llu", i, (unsigned long long)pg);
            if (!claim(v, get64(data.p + 8 * j), what))
                return false;
        }
        v->res->free_pages += n;
        return true;
    }
    if (v->kind == TREE_MAIN && key.n >= 2 && key.p[0] == LMC__NS) {
        MDB_val sk = {key.n, (void *)(uintptr_t)key.p};
        MDB_val d = {data.n, (void *)(uintptr_t)data.p};
        lmc__entry e;
        if (lmc__entry_parse(&sk, &d, &e) != 0)
            return bad(v, "entry '%s' (node %u of page %llu) has a malformed header",
                       show_key(key.p, key.n, kb, sizeof kb), i, (unsigned long long)pg);
        if (key.n > LMC__KEY_INLINE && key.n != LMC__KEY_STORED_LONG)
            return bad(v, "entry '%s' (node %u of page %llu) has a stored key of %zu bytes",
                       show_key(key.p, key.n, kb, sizeof kb), i, (unsigned long long)pg, key.n);
        if (key.n == LMC__KEY_STORED_LONG) {
            lmc__skey again;
            lmc__skey_make(&again, e.key, e.klen);
            if (again.v.mv_size != key.n || memcmp(again.buf, key.p, key.n) != 0)
                return bad(v, "entry '%s' (node %u of page %llu): its whole key does not hash "
                           "to its stored key", show_key(key.p, key.n, kb, sizeof kb), i,
                           (unsigned long long)pg);
        }
        v->res->entries++;
        if (e.expires_at) {
            v->res->entries_with_ttl++;
            if (!ttl_add(v, key, e.expires_at))
                return false;
        }
        return true;
    }
    if (v->kind == TREE_EXPIRY) {
        /* BE64(expires_at) | stored key -> nothing; the entry must exist
         * and expire at that time. */
        vkey sk = {key.p + 8, key.n >= 8 ? key.n - 8 : 0};
        if (key.n < 10 || key.p[8] != LMC__NS || data.n != 0)
            return bad(v, "expiry tree: row %u of page %llu is malformed", i,
                       (unsigned long long)pg);
        uint64_t at = lmc__be64_get(key.p);
        ttl_slot *ts = ttl_find(v, sk);
        if (ts && ts->exp == at && !ts->matched) {
            ts->matched = 1;
            v->res->expiry_rows++;
            return true;
        }
        if (ts)
            return bad(v, "expiry tree: the row of '%s' says %llu ms, the entry %llu%s",
                       show_key(sk.p, sk.n, kb, sizeof kb), (unsigned long long)at,
                       (unsigned long long)ts->exp, ts->matched ? " (and it has a row)" : "");
        /* Not among the entries with a TTL: say whether there is an entry. */
        const unsigned char *en = main_find(v, sk);
        if (en && !(get16(en + 4) & NODE_SUBDATA))
            return bad(v, "expiry tree: the row of '%s' at %llu ms (page %llu) belongs to an "
                       "entry without a TTL", show_key(sk.p, sk.n, kb, sizeof kb),
                       (unsigned long long)at, (unsigned long long)pg);
        return bad(v, "expiry tree: the row of '%s' at %llu ms (page %llu) has no entry",
                   show_key(sk.p, sk.n, kb, sizeof kb), (unsigned long long)at,
                   (unsigned long long)pg);
    }
    return true; /* lmc's own records (meta, the tick), by name */
}

/* Walk the subtree at page pg, level deep (the root is level 1); every key
 * in it must be >= lo (when lo.p) and < hi (when hi.p). */
static bool walk_page(vctx *v, uint64_t pg, unsigned level, vkey lo, vkey hi, const char *from)
{
    if (level > MAX_DEPTH)
        return bad(v, "%s tree: deeper than %u levels at page %llu", v->tree, MAX_DEPTH,
                   (unsigned long long)pg);
    if (!claim(v, pg, from))
        return false;
    const unsigned char *p = page_at(v, pg);
    uint16_t type = get16(p + 10) & PG_TYPES;
    uint16_t lower = get16(p + 12), upper = get16(p + 14);
    if (get64(p) != pg)
        return bad(v, "%s tree: page %llu says it is page %llu", v->tree,
                   (unsigned long long)pg, (unsigned long long)get64(p));
    if (type != PG_BRANCH && type != PG_LEAF)
        return bad(v, "%s tree: page %llu (%s) has flags 0x%x, not a branch or leaf page",
                   v->tree, (unsigned long long)pg, from, get16(p + 10));
    bool branch = type == PG_BRANCH;
    if (lower < PG_HDR || lower > upper || upper > v->psize || (lower - PG_HDR) % 2)
        return bad(v, "%s tree: page %llu has bad bounds (lower %u, upper %u)", v->tree,
                   (unsigned long long)pg, lower, upper);
    unsigned n = (lower - PG_HDR) / 2;
    if (n == 0)
        return bad(v, "%s tree: page %llu is empty", v->tree, (unsigned long long)pg);
    if (branch)
        v->branch++;
    else
        v->leaf++;
    /* Every node must lie between upper and the end of the page, and the
     * nodes must fill that space exactly (LMDB packs them). */
    uint64_t used = 0;
    char what[64];
    for (unsigned i = 0; i < n; i++) {
        uint16_t off = get16(p + PG_HDR + 2 * i);
        if (off < upper || off % 2 || (uint64_t)off + NODE_HDR > v->psize)
            return bad(v, "%s tree: node %u of page %llu is at offset %u, outside the page's "
                       "nodes (%u to %llu)", v->tree, i, (unsigned long long)pg, off, upper,
                       (unsigned long long)v->psize);
        const unsigned char *node = p + off;
        uint64_t size = NODE_HDR + get16(node + 6);
        if (!branch) {
            uint16_t flags = get16(node + 4);
            uint32_t dsize = (uint32_t)get16(node) | ((uint32_t)get16(node + 2) << 16);
            size += (flags & NODE_BIGDATA) ? 8 : dsize;
        }
        if (get16(node + 6) > MAX_KEY || off + size > v->psize)
            return bad(v, "%s tree: node %u of page %llu (key of %u bytes, %llu bytes in all) "
                       "runs past the end of the page", v->tree, i, (unsigned long long)pg,
                       get16(node + 6), (unsigned long long)size);
        used += (size + 1) & ~(uint64_t)1;
    }
    if (used != v->psize - upper)
        return bad(v, "%s tree: the nodes of page %llu take %llu bytes, but the page gives "
                   "them %llu", v->tree, (unsigned long long)pg, (unsigned long long)used,
                   (unsigned long long)(v->psize - upper));
    /* Keys: in order, and within the bounds the parent gives this page. */
    char kb[200];
    for (unsigned i = branch ? 1 : 0; i < n; i++) {
        const unsigned char *node = p + get16(p + PG_HDR + 2 * i);
        vkey k = {node + NODE_HDR, get16(node + 6)};
        if (v->kind == TREE_FREE && k.n != 8)
            return bad(v, "free-list tree: key %u of page %llu has %zu bytes, not 8", i,
                       (unsigned long long)pg, k.n);
        if ((lo.p && key_cmp(v, k, lo) < 0) || (hi.p && key_cmp(v, k, hi) >= 0))
            return bad(v, "%s tree: key '%s' of page %llu is outside the range its parent "
                       "gives the page", v->tree, show_key(k.p, k.n, kb, sizeof kb),
                       (unsigned long long)pg);
        if (!branch) {
            vkey last = {v->last, v->last_len};
            if (v->have_last && key_cmp(v, last, k) >= 0)
                return bad(v, "%s tree: key '%s' of page %llu is out of order", v->tree,
                           show_key(k.p, k.n, kb, sizeof kb), (unsigned long long)pg);
            memcpy(v->last, k.p, k.n);
            v->last_len = k.n;
            v->have_last = true;
        } else if (i > 1) {
            const unsigned char *pn = p + get16(p + PG_HDR + 2 * (i - 1));
            vkey prev = {pn + NODE_HDR, get16(pn + 6)};
            if (key_cmp(v, prev, k) >= 0)
                return bad(v, "%s tree: key '%s' of branch page %llu is out of order",
                           v->tree, show_key(k.p, k.n, kb, sizeof kb), (unsigned long long)pg);
        }
    }
    if (!branch) {
        if (v->leaf_depth == 0)
            v->leaf_depth = level;
        else if (level != v->leaf_depth)
            return bad(v, "%s tree: leaf page %llu is at depth %u, others at %u", v->tree,
                       (unsigned long long)pg, level, v->leaf_depth);
        for (unsigned i = 0; i < n; i++) {
            const unsigned char *node = p + get16(p + PG_HDR + 2 * i);
            vkey k = {node + NODE_HDR, get16(node + 6)};
            v->entries++;
            if (!check_record(v, pg, i, node, k))
                return false;
        }
        return true;
    }
    for (unsigned i = 0; i < n; i++) {
        const unsigned char *node = p + get16(p + PG_HDR + 2 * i);
        uint64_t child = (uint64_t)get16(node) | ((uint64_t)get16(node + 2) << 16) |
                         ((uint64_t)get16(node + 4) << 32);
        vkey clo = lo, chi = hi;
        if (i > 0) {
            clo.p = node + NODE_HDR;
            clo.n = get16(node + 6);
        }
        if (i + 1 < n) {
            const unsigned char *nn = p + get16(p + PG_HDR + 2 * (i + 1));
            chi.p = nn + NODE_HDR;
            chi.n = get16(nn + 6);
        }
        snprintf(what, sizeof what, "node %u of branch page %llu", i, (unsigned long long)pg);
        if (!walk_page(v, child, level + 1, clo, chi, what))
            return false;
    }
    return true;
}

/* Walk one tree and check the page counts and depth its record claims. */
static bool walk_tree(vctx *v, const char *name, int kind, const vdb *db)
{
    v->tree = name;
    v->kind = kind;
    v->branch = v->leaf = v->overflow = v->entries = 0;
    v->leaf_depth = 0;
    v->have_last = false;
    if (db->root == NO_PAGE) {
        if (db->depth || db->branch || db->leaf || db->overflow || db->entries)
            return bad(v, "%s tree: empty, but its record counts %llu entries", name,
                       (unsigned long long)db->entries);
        return true;
    }
    vkey none = {NULL, 0};
    char what[48];
    snprintf(what, sizeof what, "the record of the %s tree", name);
    if (!walk_page(v, db->root, 1, none, none, what))
        return false;
    if (v->branch != db->branch || v->leaf != db->leaf || v->overflow != db->overflow ||
        v->entries != db->entries || v->leaf_depth != db->depth)
        return bad(v, "%s tree: its record says %llu branch, %llu leaf and %llu overflow "
                   "pages, %llu entries and depth %u; the tree has %llu, %llu, %llu, %llu "
                   "and %u", name, (unsigned long long)db->branch,
                   (unsigned long long)db->leaf, (unsigned long long)db->overflow,
                   (unsigned long long)db->entries, db->depth, (unsigned long long)v->branch,
                   (unsigned long long)v->leaf, (unsigned long long)v->overflow,
                   (unsigned long long)v->entries, v->leaf_depth);
    v->res->tree_pages += v->branch + v->leaf;
    v->res->overflow_pages += v->overflow;
    return true;
}

/* The whole check of one snapshot, whose meta page (page header included)
 * is in meta. */
static bool walk_all(vctx *v, const unsigned char *meta)
{
    vdb freedb;
    db_parse(meta + PG_HDR + 24, &freedb);
    db_parse(meta + PG_HDR + 24 + DB_REC, &v->main_db);
    if (!walk_tree(v, "free-list", TREE_FREE, &freedb) ||
        !walk_tree(v, "main", TREE_MAIN, &v->main_db))
        return false;
    if (!v->have_expiry)
        return bad(v, "main tree: the record of the expiry index is missing");
    for (unsigned i = 0; i < v->nothers; i++) {
        char name[48];
        snprintf(name, sizeof name, "'%s'", v->other_names[i]);
        if (!walk_tree(v, name, TREE_OTHER, &v->others[i]))
            return false;
    }
    if (!walk_tree(v, "expiry", TREE_EXPIRY, &v->expiry_db))
        return false;
    /* Each row matched a distinct entry (rows are unique and each names
     * one stored key at the time that entry expires), so equal counts mean
     * every entry with a TTL has its row. */
    if (v->res->expiry_rows != v->res->entries_with_ttl)
        return bad(v, "%llu entries have a TTL but the expiry index has %llu rows",
                   (unsigned long long)v->res->entries_with_ttl,
                   (unsigned long long)v->res->expiry_rows);
    uint64_t accounted = NUM_METAS + v->res->tree_pages + v->res->overflow_pages +
                         v->res->free_pages;
    v->res->unreferenced_pages = v->npages - accounted;
    return true;
}

/* ------------------------------------------------------------------------ */
/* The child                                                                */
/* ------------------------------------------------------------------------ */

#define REPORT_MAGIC 0x6c6d6376u

/* What the child sends back: one write, smaller than a pipe's buffer. */
typedef struct report {
    uint32_t magic;
    int32_t rc;
    lmc_verify_result res;
    char msg[400];
} report;

/* Tests: make the child crash before it reports. */
static _Atomic int test_crash;

void lmc__test_verify_crash(bool on)
{
    atomic_store(&test_crash, on);
}

static int child_fail(report *r, int rc, const char *fmt, ...) LMC__PRINTF(3, 4);

static int child_fail(report *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->rc = rc;
    return rc;
}

/*
 * Take a read snapshot and copy the meta page it was made from.  A reader's
 * snapshot is the transaction id it registered (T); meta page T % 2 holds
 * T's roots until the commit of T + 2 rewrites it.  The copy is good if,
 * after it was taken, the other meta page still holds a transaction older
 * than T: T + 1 had not committed, so T + 2 cannot have begun writing over
 * the copy (the id of a meta page is stored last, after the roots).
 */
static int snapshot(MDB_env *env, const unsigned char *map, uint64_t psize, MDB_txn **txn,
                    unsigned char *meta, report *r)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, txn);
        if (rc == MDB_READERS_FULL)
            return child_fail(r, LMC_EBUSY, "no free reader slot for the check");
        if (rc)
            return child_fail(r, lmc__code_from_mdb(rc), "mdb_txn_begin: %s", mdb_strerror(rc));
        uint64_t t = mdb_txn_id(*txn);
        const unsigned char *mine = map + (t & 1) * psize;
        const unsigned char *other = map + ((t + 1) & 1) * psize;
        /* Word by word with acquire loads, so that the load of the other
         * page's id comes after every load of the copy (the meta page is
         * page-aligned, its header and fields 8-byte aligned). */
        const uint64_t *src = (const uint64_t *)(const void *)mine;
        for (size_t w = 0; w < (PG_HDR + 136) / 8; w++) {
            uint64_t word = __atomic_load_n(&src[w], __ATOMIC_ACQUIRE);
            memcpy(meta + 8 * w, &word, 8);
        }
        uint64_t oid = __atomic_load_n((const uint64_t *)(const void *)(other + PG_HDR + 128),
                                       __ATOMIC_ACQUIRE);
        if (get64(meta + PG_HDR + 128) == t && oid < t)
            return 0;
        mdb_txn_abort(*txn);
        *txn = NULL;
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    return child_fail(r, LMC_EBUSY, "could not take a stable snapshot: writers commit too fast");
}

/* Open the directory the handle uses (checked to be the very same one),
 * then LMDB read-only on it, and walk one snapshot. */
static int child_verify(const lmc__core *k, report *r)
{
    int dirfd = open(k->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (dirfd < 0)
        return child_fail(r, LMC_EIO, "cannot open %s: %s", k->path, strerror(errno));
    if (fstat(dirfd, &st) != 0 || st.st_dev != k->dev || st.st_ino != k->ino) {
        close(dirfd);
        return child_fail(r, LMC_EIO, "%s is no longer the directory this handle opened",
                          k->path);
    }
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    unsigned char *seen = NULL;
    const unsigned char *map = NULL;
    size_t map_len = 0;
    int rc = mdb_env_create(&env);
    if (rc) {
        close(dirfd);
        return child_fail(r, lmc__code_from_mdb(rc), "mdb_env_create: %s", mdb_strerror(rc));
    }
    char ep[64];
    snprintf(ep, sizeof ep, "/proc/self/fd/%d", dirfd);
    mdb_env_set_maxreaders(env, k->max_readers);
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_mapsize(env, (size_t)k->map_size);
    rc = mdb_env_open(env, access(ep, X_OK) == 0 ? ep : k->path, MDB_RDONLY | MDB_NOTLS, 0600);
    if (rc) {
        child_fail(r, lmc__code_from_mdb(rc), "mdb_env_open: %s", mdb_strerror(rc));
        goto out;
    }
    MDB_envinfo info;
    MDB_stat mst;
    mdb_env_info(env, &info);
    mdb_env_stat(env, &mst);
    int fd;
    mdb_env_get_fd(env, &fd);
    if (fstat(fd, &st) != 0) {
        child_fail(r, LMC_EIO, "fstat data.mdb: %s", strerror(errno));
        goto out;
    }
    /* LMDB does not tell where it mapped the file (me_mapaddr is only the
     * address of a fixed map), so map it once more, read-only: the page
     * cache is shared, so this map sees what every writer commits. */
    uint64_t psize = mst.ms_psize;
    map_len = (size_t)st.st_size;
    void *mp = map_len ? mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (mp == MAP_FAILED) {
        child_fail(r, LMC_EIO, "mmap data.mdb: %s", strerror(errno));
        goto out;
    }
    map = mp;
    if (map_len < NUM_METAS * psize) {
        child_fail(r, LMC_ECORRUPT, "the file is shorter than its two meta pages");
        goto out;
    }
    unsigned char meta[PG_HDR + 136] = {0};
    if ((rc = snapshot(env, map, psize, &txn, meta, r)))
        goto out;
    uint64_t last_pg = get64(meta + PG_HDR + 120);
    uint64_t file_pages = (uint64_t)st.st_size / psize;
    uint64_t map_pages = (uint64_t)info.me_mapsize / psize;
    if (last_pg >= file_pages || last_pg >= map_pages) {
        child_fail(r, LMC_ECORRUPT, "the last page in use is %llu, but the file has %llu "
                   "pages", (unsigned long long)last_pg, (unsigned long long)file_pages);
        goto out;
    }
    vctx *v = lmc__calloc(1, sizeof *v);
    seen = lmc__calloc(1, (size_t)(last_pg / 8 + 1));
    if (!v || !seen) {
        lmc__free(v);
        child_fail(r, LMC_ENOMEM, "out of memory for a map of %llu pages",
                   (unsigned long long)(last_pg + 1));
        goto out;
    }
    v->map = map;
    v->psize = psize;
    v->npages = last_pg + 1;
    v->txnid = get64(meta + PG_HDR + 128);
    v->seen = seen;
    v->seen[0] |= 3; /* the meta pages */
    v->res = &r->res;
    r->res.txnid = v->txnid;
    r->res.pages = v->npages;
    if (atomic_load(&test_crash))
        raise(SIGSEGV);
    if (!walk_all(v, meta))
        child_fail(r, v->oom ? LMC_ENOMEM : LMC_ECORRUPT, "%s", v->msg);
    lmc__free(v->ttl);
    lmc__free(v);
out:
    lmc__free(seen);
    if (map)
        munmap((void *)(uintptr_t)map, map_len);
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    close(dirfd);
    return r->rc;
}

/* The child's whole life: it never returns into the caller's code. */
static __attribute__((noreturn)) void child_main(const lmc__core *k, int wfd)
{
    /* A crash must end the child with its signal, not run the caller's
     * handlers (a server's, or Python's faulthandler) on the caller's
     * copy of the world, and must not leave a core file. */
    static const int crash[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
    sigset_t unblock;
    sigemptyset(&unblock);
    for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++) {
        signal(crash[i], SIG_DFL);
        sigaddset(&unblock, crash[i]);
    }
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);

    report r;
    memset(&r, 0, sizeof r);
    r.magic = REPORT_MAGIC;
    child_verify(k, &r);
    const char *p = (const char *)&r;
    size_t left = sizeof r;
    while (left) {
        ssize_t n = write(wfd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
    _exit(0);
}

/* ------------------------------------------------------------------------ */
/* The caller's side                                                        */
/* ------------------------------------------------------------------------ */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_ms(void)
{
    return mono_us() / 1000u;
}

/* Read the child's report until it is complete, the pipe closes or the
 * deadline passes; returns the bytes read, or -1 on timeout. */
static ssize_t read_report(int fd, report *r, uint64_t deadline)
{
    size_t got = 0;
    while (got < sizeof *r) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        uint64_t wait = deadline - now;
        int pr = poll(&pfd, 1, wait > 60000 ? 60000 : (int)wait);
        if (pr < 0 && errno != EINTR)
            return (ssize_t)got;
        if (pr <= 0)
            continue;
        ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return (ssize_t)got;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* "SEGV" for SIGSEGV; thread-safe, unlike strsignal. */
static const char *sig_name(int sig)
{
    const char *s = sigabbrev_np(sig);
    return s ? s : "?";
}

/* Wait for the child; returns its status, or -1 if someone else reaped it
 * (a caller that ignores SIGCHLD, or a server's reaper). */
static int reap(pid_t pid)
{
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, 0);
        if (w == pid)
            return st;
        if (w < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

#define RESET_HINT "LMDB does not check its pages, so any process reading the damaged part " \
                   "may crash: stop every process that uses the cache, then reset it " \
                   "(lmc_open with LMC_OPEN_RESET, or `lmc PATH verify --reset`)"

int lmc_verify(lmc *c, const lmc_verify_options *opts, lmc_verify_result *res)
{
    if (res)
        memset(res, 0, sizeof *res);
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    int rc = lmc__enter(c);
    if (rc)
        return rc;
    lmc_verify_options o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    if (o.flags)
        return lmc__err(c, LMC_EINVAL, "unknown verify flags 0x%x", o.flags);
    if (o.reserved_int)
        return lmc__err(c, LMC_EINVAL, "reserved fields of lmc_verify_options must be zero");
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++)
        if (o.reserved[i])
            return lmc__err(c, LMC_EINVAL, "reserved fields of lmc_verify_options must be zero");
    uint64_t timeout = o.timeout_ms ? o.timeout_ms : LMC__VERIFY_TIMEOUT_MS;
    lmc__core *k = c->core;
    uint64_t t0_us = mono_us(), t0 = t0_us / 1000u;
    uint64_t deadline = timeout > UINT64_MAX - t0 ? UINT64_MAX : t0 + timeout;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return lmc__sys_err(c, errno, "pipe for the check of %s", k->path);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return lmc__sys_err(c, e, "fork for the check of %s", k->path);
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(k, fds[1]);
    }
    close(fds[1]);
    report r;
    memset(&r, 0, sizeof r);
    ssize_t got = read_report(fds[0], &r, deadline);
    close(fds[0]);
    if (got < 0)
        kill(pid, SIGKILL);
    int st = reap(pid);
    uint64_t elapsed_us = mono_us() - t0_us;
    bool complete = got == (ssize_t)sizeof r && r.magic == REPORT_MAGIC;
    if (!complete || got < 0) {
        /* A child that died in its walk left its reader slot behind, which
         * would pin the snapshot's pages until the next sweep. */
        int dead = 0;
        mdb_reader_check(k->env, &dead);
        if (dead > 0)
            lmc__count(k, LMC__C_readers_cleared, (uint64_t)dead);
    }
    if (got < 0)
        return lmc__err(c, LMC_EIO, "the check of %s did not finish within %llu ms (killed); "
                        "raise timeout_ms for a very large cache", k->path,
                        (unsigned long long)timeout);
    if (!complete) {
        if (st >= 0 && WIFSIGNALED(st) &&
            (WTERMSIG(st) == SIGKILL || WTERMSIG(st) == SIGTERM || WTERMSIG(st) == SIGINT ||
             WTERMSIG(st) == SIGHUP || WTERMSIG(st) == SIGQUIT))
            return lmc__err(c, LMC_EIO, "the check of %s was killed by signal %d (SIG%s)",
                            k->path, WTERMSIG(st), sig_name(WTERMSIG(st)));
        if (st < 0)
            return lmc__err(c, LMC_EIO, "the check of %s ended without a report, and its exit "
                            "status was taken by another waitpid (is SIGCHLD ignored?)",
                            k->path);
        char how[64];
        if (WIFSIGNALED(st))
            snprintf(how, sizeof how, "crashed (signal %d, SIG%s)", WTERMSIG(st),
                     sig_name(WTERMSIG(st)));
        else
            snprintf(how, sizeof how, "died (exit status %d)", WEXITSTATUS(st));
        return lmc__err(c, LMC_ECORRUPT, "%s/data.mdb is damaged: the check %s reading it. "
                        RESET_HINT, k->path, how);
    }
    r.msg[sizeof r.msg - 1] = 0;
    r.res.elapsed_us = elapsed_us;
    if (r.rc == LMC_ECORRUPT) {
        if (res)
            *res = r.res;
        return lmc__err(c, LMC_ECORRUPT, "%s/data.mdb is damaged: %s. " RESET_HINT, k->path,
                        r.msg);
    }
    if (r.rc)
        return lmc__err(c, r.rc, "checking %s: %s", k->path, r.msg);
    if (res)
        *res = r.res;
    return 0;
}
