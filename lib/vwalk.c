/*
 * vwalk.c - the walk of lmc_verify (verify.c), in the child it forks: every
 * page of one snapshot of a cache's data file, read raw through a read-only
 * map of its own, with every offset and size checked before anything is read
 * through it, so that the walk cannot be led outside the page or the file.
 * It checks each page (type, own page number, bounds, exactly packed nodes,
 * key order and the ranges the parent gives, one depth for every leaf, each
 * page used once), each tree's record (its page and entry counts), every
 * entry's header and the hash of long keys, every expiry row against its
 * entry, and every entry with a TTL against its row.  The layouts come from
 * lmdbmeta.h.
 */
#include "fmacros.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "format.h"
#include "lmdbmeta.h"
#include "vwalk.h"

/* ------------------------------------------------------------------------ */
/* The walk (in the child)                                                  */
/* ------------------------------------------------------------------------ */

enum { TREE_FREE, TREE_MAIN, TREE_OTHER };

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
    unsigned char last[LMC__LMDB_MAX_KEY];
    size_t last_len;
    bool have_last;
    /* Found in the main tree. */
    lmc__lmdb_db main_db;
    lmc__lmdb_db others[8];
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
    if (pg < LMC__NUM_METAS || pg >= v->npages)
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
        uint64_t x = lmc__get64(a.p), y = lmc__get64(b.p);
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
    uint32_t dsize = (uint32_t)lmc__get16(node) | ((uint32_t)lmc__get16(node + 2) << 16);
    uint16_t flags = lmc__get16(node + 4);
    const unsigned char *d = node + LMC__NODE_HDR + lmc__get16(node + 6);
    if (!(flags & LMC__NODE_BIGDATA)) {
        out->p = d;
        out->n = dsize;
        return true;
    }
    uint64_t ov = lmc__get64(d);
    uint64_t count = (LMC__PG_HDR - 1 + (uint64_t)dsize) / v->psize + 1;
    char what[64];
    snprintf(what, sizeof what, "node %u of page %llu", i, (unsigned long long)pg);
    if (ov < LMC__NUM_METAS || ov >= v->npages || count > v->npages - ov)
        return bad(v, "%s tree: %s has a value of %u bytes on pages %llu to %llu, outside "
                   "pages 2 to %llu in use", v->tree, what, dsize, (unsigned long long)ov,
                   (unsigned long long)(ov + count - 1), (unsigned long long)(v->npages - 1));
    const unsigned char *op = page_at(v, ov);
    if (lmc__get64(op) != ov || (lmc__get16(op + 10) & LMC__PG_TYPES) != LMC__PG_OVERFLOW ||
        lmc__get32(op + 12) != count)
        return bad(v, "%s tree: overflow page %llu (the value of %s) is damaged: it says "
                   "it is page %llu, flags 0x%x, %u pages long (expected %llu)", v->tree,
                   (unsigned long long)ov, what, (unsigned long long)lmc__get64(op),
                   lmc__get16(op + 10), lmc__get32(op + 12), (unsigned long long)count);
    for (uint64_t j = 0; j < count; j++)
        if (!claim(v, ov + j, what))
            return false;
    v->overflow += count;
    out->p = op + LMC__PG_HDR;
    out->n = dsize;
    return true;
}

/*
 * The entries with a TTL, collected in the walk of the main tree (they sort
 * before the expiry rows) so that each row finds its entry in O(1) (rows
 * come in expiry order, so looking each entry up in the tree would cost a
 * descent per row).
 * Open addressing on a hash of the stored key; the keys point into the map,
 * which the snapshot keeps as it is.
 */
typedef struct ttl_slot {
    const unsigned char *key; /* NULL: an empty slot */
    uint32_t klen;
    uint16_t matched;         /* its row was found, with this time */
    uint16_t seq;             /* the row sequence the entry's header gives */
    uint64_t exp;             /* the row time the entry's header gives */
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

static bool ttl_add(vctx *v, vkey k, uint64_t exp, uint16_t seq)
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
    v->ttl[j].seq = seq;
    v->ttl_n++;
    return true;
}

/* One leaf node of the tree being walked, by the tree's kind. */
static bool check_record(vctx *v, uint64_t pg, unsigned i, const unsigned char *node, vkey key)
{
    uint16_t flags = lmc__get16(node + 4);
    char kb[200];
    if (flags & LMC__NODE_DUPDATA)
        return bad(v, "%s tree: node %u of page %llu has duplicate data, which lmc never "
                   "stores", v->tree, i, (unsigned long long)pg);
    if (flags & LMC__NODE_SUBDATA) {
        if (v->kind != TREE_MAIN || (flags & LMC__NODE_BIGDATA) ||
            ((uint32_t)lmc__get16(node) | ((uint32_t)lmc__get16(node + 2) << 16)) != LMC__DB_REC)
            return bad(v, "%s tree: node %u of page %llu claims to be a database record",
                       v->tree, i, (unsigned long long)pg);
        const unsigned char *d = node + LMC__NODE_HDR + key.n;
        lmc__lmdb_db db;
        lmc__lmdb_db_parse(d, &db);
        if (v->nothers < sizeof v->others / sizeof v->others[0]) {
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
        if (key.n != 8 || lmc__get64(key.p) > v->txnid)
            return bad(v, "free-list tree: record %u of page %llu has a bad key", i,
                       (unsigned long long)pg);
        uint64_t n = data.n >= 8 ? lmc__get64(data.p) : UINT64_MAX;
        if (data.n % 8 || n != data.n / 8 - 1)
            return bad(v, "free-list tree: record %u of page %llu holds %zu bytes, not a page list",
                       i, (unsigned long long)pg, data.n);
        for (uint64_t j = 1; j <= n; j++) {
            char what[64];
            snprintf(what, sizeof what, "record %u of page %llu", i, (unsigned long long)pg);
            if (!claim(v, lmc__get64(data.p + 8 * j), what))
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
            if (ttl_find(v, key))
                return bad(v, "entry '%s' (node %u of page %llu) appears twice in the tree",
                           show_key(key.p, key.n, kb, sizeof kb), i, (unsigned long long)pg);
            if (!ttl_add(v, key, lmc__entry_row_at(&e), e.row_seq))
                return false;
        }
        return true;
    }
    if (v->kind == TREE_MAIN && key.n >= 1 && key.p[0] == LMC__NS_ROW) {
        /* NS_ROW | BE64(row time) | BE16(row sequence) | stored key ->
         * nothing; its entry, met earlier in the walk, must have a TTL and
         * that row time and sequence. */
        MDB_val row = {key.n, (void *)(uintptr_t)key.p}, skey;
        uint64_t at;
        uint16_t seq;
        if (lmc__expkey_parse(&row, &at, &seq, &skey) != 0 || data.n != 0)
            return bad(v, "expiry row %u of page %llu is malformed", i, (unsigned long long)pg);
        vkey sk = {skey.mv_data, skey.mv_size};
        ttl_slot *ts = ttl_find(v, sk);
        if (!ts)
            return bad(v, "the expiry row of '%s' at %llu ms has no entry with a TTL",
                       show_key(sk.p, sk.n, kb, sizeof kb), (unsigned long long)at);
        if (ts->matched)
            return bad(v, "'%s' has two expiry rows, at %llu and %llu ms",
                       show_key(sk.p, sk.n, kb, sizeof kb), (unsigned long long)ts->exp,
                       (unsigned long long)at);
        if (ts->exp != at || ts->seq != seq)
            return bad(v, "the expiry row of '%s' says %llu ms (sequence %u), the entry %llu "
                       "(sequence %u)", show_key(sk.p, sk.n, kb, sizeof kb),
                       (unsigned long long)at, (unsigned)seq, (unsigned long long)ts->exp,
                       (unsigned)ts->seq);
        ts->matched = 1;
        v->res->expiry_rows++;
        return true;
    }
    if (v->kind == TREE_MAIN && key.n >= 1 && key.p[0] == LMC__NS_LEASE) {
        /* NS_LEASE | stored key -> a lease record (format.h). */
        MDB_val lk = {key.n, (void *)(uintptr_t)key.p};
        MDB_val d = {data.n, (void *)(uintptr_t)data.p};
        lmc__lrec r;
        if (lmc__lrec_parse(&lk, &d, &r) != 0)
            return bad(v, "fill lease record %u of page %llu is malformed", i,
                       (unsigned long long)pg);
        v->res->leases++;
        return true;
    }
    return true; /* lmc's own records (meta, the tick), by name */
}

/* Walk the subtree at page pg, level deep (the root is level 1); every key
 * in it must be >= lo (when lo.p) and < hi (when hi.p). */
static bool walk_page(vctx *v, uint64_t pg, unsigned level, vkey lo, vkey hi, const char *from)
{
    if (level > LMC__LMDB_MAX_DEPTH)
        return bad(v, "%s tree: deeper than %u levels at page %llu", v->tree, LMC__LMDB_MAX_DEPTH,
                   (unsigned long long)pg);
    if (!claim(v, pg, from))
        return false;
    const unsigned char *p = page_at(v, pg);
    uint16_t type = lmc__get16(p + 10) & LMC__PG_TYPES;
    uint16_t lower = lmc__get16(p + 12), upper = lmc__get16(p + 14);
    if (lmc__get64(p) != pg)
        return bad(v, "%s tree: page %llu says it is page %llu", v->tree,
                   (unsigned long long)pg, (unsigned long long)lmc__get64(p));
    if (type != LMC__PG_BRANCH && type != LMC__PG_LEAF)
        return bad(v, "%s tree: page %llu (%s) has flags 0x%x, not a branch or leaf page",
                   v->tree, (unsigned long long)pg, from, lmc__get16(p + 10));
    bool branch = type == LMC__PG_BRANCH;
    if (lower < LMC__PG_HDR || lower > upper || upper > v->psize || (lower - LMC__PG_HDR) % 2)
        return bad(v, "%s tree: page %llu has bad bounds (lower %u, upper %u)", v->tree,
                   (unsigned long long)pg, lower, upper);
    unsigned n = (lower - LMC__PG_HDR) / 2;
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
        uint16_t off = lmc__get16(p + LMC__PG_HDR + 2 * i);
        if (off < upper || off % 2 || (uint64_t)off + LMC__NODE_HDR > v->psize)
            return bad(v, "%s tree: node %u of page %llu is at offset %u, outside the page's "
                       "nodes (%u to %llu)", v->tree, i, (unsigned long long)pg, off, upper,
                       (unsigned long long)v->psize);
        const unsigned char *node = p + off;
        uint64_t size = LMC__NODE_HDR + lmc__get16(node + 6);
        if (!branch) {
            uint16_t flags = lmc__get16(node + 4);
            uint32_t dsize = (uint32_t)lmc__get16(node) | ((uint32_t)lmc__get16(node + 2) << 16);
            size += (flags & LMC__NODE_BIGDATA) ? 8 : dsize;
        }
        if (lmc__get16(node + 6) > LMC__LMDB_MAX_KEY || off + size > v->psize)
            return bad(v, "%s tree: node %u of page %llu (key of %u bytes, %llu bytes in all) "
                       "runs past the end of the page", v->tree, i, (unsigned long long)pg,
                       lmc__get16(node + 6), (unsigned long long)size);
        used += (size + 1) & ~(uint64_t)1;
    }
    if (used != v->psize - upper)
        return bad(v, "%s tree: the nodes of page %llu take %llu bytes, but the page gives "
                   "them %llu", v->tree, (unsigned long long)pg, (unsigned long long)used,
                   (unsigned long long)(v->psize - upper));
    /* Keys: in order, and within the bounds the parent gives this page. */
    char kb[200];
    for (unsigned i = branch ? 1 : 0; i < n; i++) {
        const unsigned char *node = p + lmc__get16(p + LMC__PG_HDR + 2 * i);
        vkey k = {node + LMC__NODE_HDR, lmc__get16(node + 6)};
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
            const unsigned char *pn = p + lmc__get16(p + LMC__PG_HDR + 2 * (i - 1));
            vkey prev = {pn + LMC__NODE_HDR, lmc__get16(pn + 6)};
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
            const unsigned char *node = p + lmc__get16(p + LMC__PG_HDR + 2 * i);
            vkey k = {node + LMC__NODE_HDR, lmc__get16(node + 6)};
            v->entries++;
            if (!check_record(v, pg, i, node, k))
                return false;
        }
        return true;
    }
    for (unsigned i = 0; i < n; i++) {
        const unsigned char *node = p + lmc__get16(p + LMC__PG_HDR + 2 * i);
        uint64_t child = (uint64_t)lmc__get16(node) | ((uint64_t)lmc__get16(node + 2) << 16) |
                         ((uint64_t)lmc__get16(node + 4) << 32);
        vkey clo = lo, chi = hi;
        if (i > 0) {
            clo.p = node + LMC__NODE_HDR;
            clo.n = lmc__get16(node + 6);
        }
        if (i + 1 < n) {
            const unsigned char *nn = p + lmc__get16(p + LMC__PG_HDR + 2 * (i + 1));
            chi.p = nn + LMC__NODE_HDR;
            chi.n = lmc__get16(nn + 6);
        }
        snprintf(what, sizeof what, "node %u of branch page %llu", i, (unsigned long long)pg);
        if (!walk_page(v, child, level + 1, clo, chi, what))
            return false;
    }
    return true;
}

/* Walk one tree and check the page counts and depth its record claims. */
static bool walk_tree(vctx *v, const char *name, int kind, const lmc__lmdb_db *db)
{
    v->tree = name;
    v->kind = kind;
    v->branch = v->leaf = v->overflow = v->entries = 0;
    v->leaf_depth = 0;
    v->have_last = false;
    if (db->root == LMC__NO_PAGE) {
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
    lmc__lmdb_db freedb;
    lmc__lmdb_db_parse(meta + LMC__PG_HDR + 24, &freedb);
    lmc__lmdb_db_parse(meta + LMC__PG_HDR + 24 + LMC__DB_REC, &v->main_db);
    if (!walk_tree(v, "free-list", TREE_FREE, &freedb) ||
        !walk_tree(v, "main", TREE_MAIN, &v->main_db))
        return false;
    for (unsigned i = 0; i < v->nothers; i++) {
        char name[48];
        snprintf(name, sizeof name, "'%s'", v->other_names[i]);
        if (!walk_tree(v, name, TREE_OTHER, &v->others[i]))
            return false;
    }
    /* Every row matched its entry; an entry left unmatched has no row. */
    for (size_t i = 0; i < v->ttl_cap; i++) {
        const ttl_slot *ts = &v->ttl[i];
        char kb[200];
        if (ts->key && !ts->matched)
            return bad(v, "entry '%s' has a TTL but no expiry row",
                       show_key(ts->key, ts->klen, kb, sizeof kb));
    }
    uint64_t accounted = LMC__NUM_METAS + v->res->tree_pages + v->res->overflow_pages +
                         v->res->free_pages;
    v->res->unreferenced_pages = v->npages - accounted;
    return true;
}


int lmc__vwalk(const unsigned char *map, uint64_t psize, uint64_t last_pg,
               const unsigned char *meta, lmc_verify_result *res, char *msg, size_t cap)
{
    vctx *v = lmc__calloc(1, sizeof *v);
    unsigned char *seen = lmc__calloc(1, (size_t)(last_pg / 8 + 1));
    if (!v || !seen) {
        lmc__free(v);
        lmc__free(seen);
        snprintf(msg, cap, "out of memory for a map of %llu pages",
                 (unsigned long long)(last_pg + 1));
        return LMC_ENOMEM;
    }
    v->map = map;
    v->psize = psize;
    v->npages = last_pg + 1;
    v->txnid = lmc__get64(meta + LMC__META_TXNID);
    v->seen = seen;
    v->seen[0] |= 3; /* the meta pages */
    v->res = res;
    res->txnid = v->txnid;
    res->pages = v->npages;
    int rc = LMC_OK;
    if (!walk_all(v, meta)) {
        rc = v->oom ? LMC_ENOMEM : LMC_ECORRUPT;
        snprintf(msg, cap, "%s", v->msg);
    }
    lmc__free(v->ttl);
    lmc__free(v);
    lmc__free(seen);
    return rc;
}
