/*
 * test_verify.c - lmc_verify on real cache files: healthy caches verify
 * clean (also while another process writes, evicts and deletes), and pages
 * damaged in the file (a leaf, a branch page, an overflow page, the expiry
 * index, an entry's header; the meta pages left intact) are reported as
 * LMC_ECORRUPT while the caller lives on, after which LMC_OPEN_RESET gives a
 * clean cache again.
 *
 * The damage is done with pwrite on data.mdb, found by reading LMDB 0.9's
 * page layout here (the same layout lib/verify.c documents).
 */
#include "util.h"

#include <fcntl.h>

/* ------------------------------------------------------------------------ */
/* Finding pages in a data file                                             */
/* ------------------------------------------------------------------------ */

#define PG_HDR 16u

typedef struct dfile {
    int fd;
    unsigned char *map;
    size_t size;
    uint64_t psize;
    uint64_t main_root;
    unsigned main_depth;
} dfile;

static uint16_t g16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint64_t g64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static const unsigned char *pg_at(const dfile *f, uint64_t pg)
{
    return f->map + pg * f->psize;
}

static unsigned pg_n(const unsigned char *p)
{
    return (g16(p + 12) - PG_HDR) / 2;
}

static const unsigned char *pg_node(const unsigned char *p, unsigned i)
{
    return p + g16(p + PG_HDR + 2 * i);
}

static uint64_t node_child(const unsigned char *n)
{
    return (uint64_t)g16(n) | ((uint64_t)g16(n + 2) << 16) | ((uint64_t)g16(n + 4) << 32);
}

/* Map data.mdb of the cache and find the roots of the newest snapshot. */
static void dfile_open(dfile *f, const char *cache)
{
    char p[400];
    snprintf(p, sizeof p, "%s/data.mdb", cache);
    f->fd = open(p, O_RDWR | O_CLOEXEC);
    assert_true(f->fd >= 0);
    struct stat st;
    assert_int_equal(fstat(f->fd, &st), 0);
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_SHARED, f->fd, 0);
    assert_true(f->map != MAP_FAILED);
    uint32_t ps;
    memcpy(&ps, f->map + PG_HDR + 24, 4);
    f->psize = ps;
    const unsigned char *m0 = f->map + PG_HDR, *m1 = f->map + ps + PG_HDR;
    const unsigned char *m = g64(m1 + 128) > g64(m0 + 128) ? m1 : m0;
    f->main_root = g64(m + 72 + 40);
    f->main_depth = g16(m + 72 + 6);
}

static void dfile_close(dfile *f)
{
    munmap(f->map, f->size);
    close(f->fd);
}

/* A leaf of the subtree at pg whose first key starts with byte first (the
 * entries 0xFE, the expiry rows after them 0xFF), searched from the right
 * or from the left; 0 if there is none. */
static uint64_t leaf_in(const dfile *f, uint64_t pg, unsigned char first, bool from_right)
{
    const unsigned char *p = pg_at(f, pg);
    if (!(g16(p + 10) & 1)) {
        const unsigned char *n = pg_node(p, 0);
        return g16(n + 6) >= 2 && n[8] == first ? pg : 0;
    }
    for (unsigned j = 0; j < pg_n(p); j++) {
        unsigned i = from_right ? pg_n(p) - 1 - j : j;
        uint64_t leaf = leaf_in(f, node_child(pg_node(p, i)), first, from_right);
        if (leaf)
            return leaf;
    }
    return 0;
}

/* A leaf of the main tree holding entries: the rightmost one. */
static uint64_t main_leaf(const dfile *f)
{
    uint64_t pg = leaf_in(f, f->main_root, 0xFE, true);
    assert_true(pg != 0);
    return pg;
}

/* The first page of the last value stored on overflow pages in the subtree
 * at pg; 0 if there is none. */
static uint64_t overflow_in(const dfile *f, uint64_t pg)
{
    const unsigned char *p = pg_at(f, pg);
    for (unsigned i = pg_n(p); i-- > 0;) {
        const unsigned char *n = pg_node(p, i);
        uint64_t ov = 0;
        if (g16(p + 10) & 1)
            ov = overflow_in(f, node_child(n));
        else if (g16(n + 4) & 1)
            ov = g64(n + 8 + g16(n + 6));
        if (ov)
            return ov;
    }
    return 0;
}

static uint64_t overflow_page(const dfile *f)
{
    return overflow_in(f, f->main_root);
}

/* A leaf of the expiry index. */
static uint64_t expiry_leaf(const dfile *f)
{
    uint64_t pg = leaf_in(f, f->main_root, 0xFF, false);
    assert_true(pg != 0);
    return pg;
}

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Overwrite n bytes at offset off of page pg with random bytes. */
static void damage(const dfile *f, uint64_t pg, size_t off, size_t n)
{
    unsigned char buf[65536];
    assert_true(n <= sizeof buf && off + n <= f->psize);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)rnd();
    assert_int_equal(pwrite(f->fd, buf, n, (off_t)(pg * f->psize + off)), (ssize_t)n);
}

static void poke(const dfile *f, uint64_t pg, size_t off, const void *bytes, size_t n)
{
    assert_int_equal(pwrite(f->fd, bytes, n, (off_t)(pg * f->psize + off)), (ssize_t)n);
}

/* ------------------------------------------------------------------------ */
/* Caches to check                                                          */
/* ------------------------------------------------------------------------ */

/* Entries of every kind: short and long keys, with and without TTL, small
 * values and values on overflow pages, and the holes deletes leave. */
static void fill(lmc *c, int n)
{
    char k[600], v[9000];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < n; i++) {
        int kl = snprintf(k, sizeof k, "key/%06d", i);
        if (i % 97 == 0) {
            memset(k + kl, 'L', 500);
            kl += 500;
        }
        size_t vl = i % 50 == 0 ? 3000 + (size_t)i % 6000 : 10 + (size_t)i % 300;
        int64_t ttl = i % 3 ? 3600000 + i : LMC_TTL_NEVER;
        ASSERT_OK(lmc_set(c, k, (size_t)kl, v, vl, ttl));
    }
    for (int i = 0; i < n; i += 7) {
        int kl = snprintf(k, sizeof k, "key/%06d", i);
        if (i % 97 == 0) {
            memset(k + kl, 'L', 500);
            kl += 500;
        }
        ASSERT_OK(lmc_delete(c, k, (size_t)kl));
    }
    uint64_t removed;
    ASSERT_OK(lmc_delete_prefix(c, "key/0001", 8, &removed));
}

static void expect_clean(lmc *c)
{
    lmc_verify_result r;
    int rc = lmc_verify(c, NULL, &r);
    if (rc)
        fail_msg("lmc_verify: %s", lmc_errmsg(c));
    lmc_stat st = stats_of(c);
    assert_int_equal(r.entries, st.entries);
    assert_int_equal(r.entries_with_ttl, st.entries_with_ttl);
    assert_int_equal(r.expiry_rows, st.entries_with_ttl);
    assert_true(r.pages >= 2 + r.tree_pages + r.overflow_pages + r.free_pages);
    assert_int_equal(r.unreferenced_pages,
                     r.pages - 2 - r.tree_pages - r.overflow_pages - r.free_pages);
}

static void test_healthy_caches_verify_clean(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    expect_clean(t->c); /* empty */
    fill(t->c, 3000);
    lmc_verify_result r;
    ASSERT_OK(lmc_verify(t->c, NULL, &r));
    lmc_stat st = stats_of(t->c);
    assert_true(r.entries > 2000);
    assert_int_equal(r.entries, st.entries);
    assert_true(r.entries_with_ttl > 1000);
    assert_int_equal(r.expiry_rows, r.entries_with_ttl);
    assert_true(r.overflow_pages > 0);
    assert_true(r.tree_pages > 10);
    assert_true(r.free_pages > 0);
    assert_int_equal(r.unreferenced_pages, 0);
    assert_true(r.txnid > 0);
    print_message("verified %llu entries, %llu pages in %llu us\n",
                  (unsigned long long)r.entries, (unsigned long long)r.pages,
                  (unsigned long long)r.elapsed_us);
    /* A read-only handle may verify too. */
    lmc *ro;
    lmc_options o = {.flags = LMC_OPEN_RDONLY};
    ASSERT_OK(lmc_open(&ro, t->path, &o));
    expect_clean(ro);
    lmc_close(ro);
    /* After a clear, and after a sweep that evicts. */
    ASSERT_OK(lmc_clear(t->c));
    expect_clean(t->c);
    fill(t->c, 2000);
    lmc_sweep_options so = {.flags = LMC_SWEEP_FORCE, .low_watermark = 0.01,
                            .high_watermark = 0.02};
    ASSERT_OK(lmc_sweep(t->c, &so, NULL));
    expect_clean(t->c);
}

static void test_verify_arguments(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    lmc_verify_result r;
    ASSERT_RC(lmc_verify(NULL, NULL, &r), LMC_EINVAL);
    lmc_verify_options o = {.flags = 1};
    ASSERT_RC(lmc_verify(t->c, &o, &r), LMC_EINVAL);
    lmc_verify_options o2 = {.reserved = {1}};
    ASSERT_RC(lmc_verify(t->c, &o2, &r), LMC_EINVAL);
    ASSERT_OK(lmc_verify(t->c, NULL, NULL));
}

/* Opens the cache's LMDB environment directly, for records lmc would never
 * write. */
static void raw_begin(const char *path, MDB_env **env, MDB_txn **txn, MDB_dbi *dbi)
{
    assert_int_equal(mdb_env_create(env), 0);
    mdb_env_set_maxdbs(*env, 4);
    assert_int_equal(mdb_env_open(*env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(*env, NULL, 0, txn), 0);
    assert_int_equal(mdb_dbi_open(*txn, NULL, 0, dbi), 0);
}

static void raw_end(MDB_env *env, MDB_txn *txn)
{
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* The expiry row key of stored key 0xFE | k at time at, sequence 7
 * (format.h). */
static size_t row_key(unsigned char *r, uint64_t at, const char *k)
{
    r[0] = 0xFF;
    for (int i = 0; i < 8; i++)
        r[1 + i] = (unsigned char)(at >> (8 * (7 - i)));
    r[9] = 0;
    r[10] = 7;
    r[11] = 0xFE;
    memcpy(r + 12, k, strlen(k));
    return 12 + strlen(k);
}

static void expect_verify_says(tctx *t, const char *needle)
{
    lmc *c = open_cache(t, 8, 0);
    lmc_verify_result r;
    ASSERT_RC(lmc_verify(c, NULL, &r), LMC_ECORRUPT);
    if (!strstr(lmc_errmsg(c), needle))
        fail_msg("message '%s' does not say '%s'", lmc_errmsg(c), needle);
    lmc_close(c);
}

/* The rows come after the entries in the walk: each row must find its
 * entry with a TTL and that entry's row time, and every entry with a TTL
 * its row. */
static void test_rows_and_entries_must_match(void **state)
{
    tctx *t = *state;
    lmc *c = open_cache(t, 8, 0);
    ASSERT_OK(put_s(c, "a", "1", 60000));
    ASSERT_OK(put_s(c, "b", "2", 0));
    lmc_verify_result r;
    ASSERT_OK(lmc_verify(c, NULL, &r));
    assert_int_equal(r.expiry_rows, 1);
    lmc_close(c);

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    unsigned char rk[64];
    MDB_val empty = {0, NULL};
    /* A row whose entry does not exist, then one whose entry has no TTL. */
    const char *orphans[] = {"z", "b"};
    for (int i = 0; i < 2; i++) {
        raw_begin(t->path, &env, &txn, &dbi);
        MDB_val k = {row_key(rk, 12345, orphans[i]), rk};
        assert_int_equal(mdb_put(txn, dbi, &k, &empty, 0), 0);
        raw_end(env, txn);
        expect_verify_says(t, "has no entry with a TTL");
        raw_begin(t->path, &env, &txn, &dbi);
        assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
        raw_end(env, txn);
    }
    /* The row of "a" at another time, beside its own, then alone. */
    raw_begin(t->path, &env, &txn, &dbi);
    MDB_val own = {1, rk}, d;
    rk[0] = 0xFF;
    MDB_cursor *cur;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &own, &d, MDB_SET_RANGE), 0);
    assert_true(own.mv_size == 13 && ((unsigned char *)own.mv_data)[12] == 'a');
    unsigned char ownk[16];
    memcpy(ownk, own.mv_data, own.mv_size);
    own.mv_data = ownk;
    mdb_cursor_close(cur);
    MDB_val late = {row_key(rk, UINT64_MAX / 2, "a"), rk};
    assert_int_equal(mdb_put(txn, dbi, &late, &empty, 0), 0);
    raw_end(env, txn);
    expect_verify_says(t, "has two expiry rows");
    raw_begin(t->path, &env, &txn, &dbi);
    assert_int_equal(mdb_del(txn, dbi, &own, NULL), 0);
    raw_end(env, txn);
    expect_verify_says(t, "the expiry row of 'a' says");
    /* Its own time, another sequence. */
    unsigned char other[16];
    memcpy(other, ownk, sizeof ownk);
    other[10] ^= 1;
    MDB_val oseq = {own.mv_size, other};
    raw_begin(t->path, &env, &txn, &dbi);
    assert_int_equal(mdb_del(txn, dbi, &late, NULL), 0);
    assert_int_equal(mdb_put(txn, dbi, &oseq, &empty, 0), 0);
    raw_end(env, txn);
    expect_verify_says(t, "(sequence");
    /* No row at all. */
    raw_begin(t->path, &env, &txn, &dbi);
    assert_int_equal(mdb_del(txn, dbi, &oseq, NULL), 0);
    raw_end(env, txn);
    expect_verify_says(t, "has a TTL but no expiry row");
}

/* Rows are filed in the order of their sets, also within one millisecond
 * (the row sequence, format.h): keys set from "z" down to "a" with one TTL
 * come out of the index from "z" down to "a", which by key alone they
 * would not whenever two of them share a millisecond.  The sequence is the
 * low 16 bits of the version and wraps (one row out of order), so the
 * sets start where no wrap is near. */
static void test_rows_keep_the_order_of_their_sets(void **state)
{
    tctx *t = *state;
    lmc *c = open_cache(t, 8, 0);
    char buf[4];
    size_t vl;
    uint64_t ver;
    ASSERT_OK(put_s(c, "probe", "v", 0));
    ASSERT_OK(lmc_get_cas(c, "probe", 5, buf, sizeof buf, &vl, &ver));
    if ((ver & 0xffff) > 65536 - 200)
        for (uint64_t i = 0; i < 65536 - (ver & 0xffff) + 10; i++)
            ASSERT_OK(put_s(c, "probe", "v", 0));
    for (char ch = 'z'; ch >= 'a'; ch--) {
        char k[2] = {ch, 0};
        ASSERT_OK(put_s(c, k, "v", 600000));
    }
    lmc_verify_result r;
    ASSERT_OK(lmc_verify(c, NULL, &r));
    assert_int_equal(r.expiry_rows, 26);
    lmc_close(c);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_begin(t->path, &env, &txn, &dbi);
    MDB_cursor *cur;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    unsigned char first = 0xFF;
    MDB_val k = {1, &first}, d;
    int rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    char want = 'z';
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT), want--) {
        const unsigned char *p = k.mv_data;
        assert_int_equal(k.mv_size, 13);
        assert_int_equal(p[11], 0xFE);
        if (p[12] != (unsigned char)want)
            fail_msg("row of '%c' where '%c' was expected", p[12], want);
    }
    assert_int_equal(want, 'a' - 1);
    mdb_cursor_close(cur);
    raw_end(env, txn);
}

/* A writer process sets (with and without TTL, small and overflow values),
 * deletes and prefix-deletes on a small map, so that it also evicts, while
 * this process verifies again and again: every check must be clean. */
static void test_clean_under_a_concurrent_writer(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    fill(t->c, 1000);
    _Atomic int *stop = mmap(NULL, sizeof *stop, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(stop != MAP_FAILED);
    atomic_store(stop, 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char k[64], v[6000];
        memset(v, 'w', sizeof v);
        for (unsigned i = 0; !atomic_load(stop); i++) {
            int kl = snprintf(k, sizeof k, "w/%05u", i % 20000);
            size_t vl = i % 40 == 0 ? 5000 : 20 + i % 200;
            int rc = lmc_set(t->c, k, (size_t)kl, v, vl, i % 2 ? 100000 : LMC_TTL_NEVER);
            CHILD_CHECK(rc == 0 || rc == LMC_ENOSPC);
            if (i % 5 == 0) {
                kl = snprintf(k, sizeof k, "w/%05u", (i * 7) % 20000);
                rc = lmc_delete(t->c, k, (size_t)kl);
                CHILD_CHECK(rc == 0 || rc == LMC_NOTFOUND);
            }
            if (i % 3000 == 0) {
                uint64_t removed;
                CHILD_OK(lmc_delete_prefix(t->c, "w/1", 3, &removed));
            }
        }
        _exit(0);
    }
    int64_t end = mono_ms() + 3000;
    int checks = 0;
    uint64_t first = 0, last = 0;
    while (mono_ms() < end || checks < 10) {
        lmc_verify_result r;
        int rc = lmc_verify(t->c, NULL, &r);
        if (rc) {
            atomic_store(stop, 1);
            wait_ok(pid);
            fail_msg("check %d under a writer: %s", checks, lmc_errmsg(t->c));
        }
        if (!first)
            first = r.txnid;
        last = r.txnid;
        checks++;
    }
    atomic_store(stop, 1);
    wait_ok(pid);
    print_message("%d clean checks while the writer committed %llu transactions\n", checks,
                  (unsigned long long)(last - first));
    assert_true(last > first); /* the writer did write meanwhile */
    expect_clean(t->c);
    munmap(stop, sizeof *stop);
}

/* ------------------------------------------------------------------------ */
/* Damaged caches                                                           */
/* ------------------------------------------------------------------------ */

typedef enum {
    D_LEAF_ALL,      /* a leaf of entries, all random */
    D_LEAF_PTRS,     /* its node offsets */
    D_LEAF_BOUNDS,   /* its lower and upper bounds */
    D_LEAF_SIZE,     /* the value size of one node */
    D_BRANCH_ALL,    /* the main tree's root, all random */
    D_BRANCH_PTRS,   /* its node offsets and first nodes */
    D_BRANCH_CHILD,  /* one child page number */
    D_OVERFLOW,      /* the header and first bytes of a value's overflow pages */
    D_EXPIRY_LEAF,   /* a leaf of the expiry index */
    D_ENTRY_HEADER,  /* the format byte of one entry's header */
    D_ENTRY_EXPIRY,  /* the expiry time in one entry's header */
    D_COUNT
} dkind;

static const char *const dnames[D_COUNT] = {
    "leaf, whole page", "leaf, node offsets", "leaf, bounds", "leaf, a value size",
    "branch, whole page", "branch, node offsets", "branch, a child page number",
    "overflow page", "expiry index leaf", "entry header format", "entry expiry time",
};

/* Damage the file of the open cache c in the given way. */
static void do_damage(tctx *t, dkind d)
{
    dfile f;
    dfile_open(&f, t->path);
    uint64_t leaf = main_leaf(&f);
    const unsigned char *lp = pg_at(&f, leaf);
    /* A node of the leaf with its value in the page, and its offset. */
    unsigned pick = 0;
    for (unsigned i = 0; i < pg_n(lp); i++)
        if (!(g16(pg_node(lp, i) + 4) & 1)) {
            pick = i;
            break;
        }
    size_t noff = g16(lp + PG_HDR + 2 * pick);
    size_t voff = noff + 8 + g16(lp + noff + 6); /* the entry's header */
    uint64_t ov;
    switch (d) {
    case D_LEAF_ALL:
        damage(&f, leaf, 0, f.psize);
        break;
    case D_LEAF_PTRS:
        damage(&f, leaf, PG_HDR, 64);
        break;
    case D_LEAF_BOUNDS:
        damage(&f, leaf, 12, 4);
        break;
    case D_LEAF_SIZE: {
        uint16_t big = 0x7fff;
        poke(&f, leaf, noff + 2, &big, 2); /* high half of the data size */
        break;
    }
    case D_BRANCH_ALL:
        assert_true(f.main_depth >= 2);
        damage(&f, f.main_root, 0, f.psize);
        break;
    case D_BRANCH_PTRS:
        assert_true(f.main_depth >= 2);
        damage(&f, f.main_root, PG_HDR, 48);
        break;
    case D_BRANCH_CHILD: {
        assert_true(f.main_depth >= 2);
        const unsigned char *rp = pg_at(&f, f.main_root);
        size_t off = g16(rp + PG_HDR + 2 * (pg_n(rp) / 2));
        uint16_t far = 0x7777;
        poke(&f, f.main_root, off + 2, &far, 2); /* bits 16..31 of the child */
        break;
    }
    case D_OVERFLOW:
        ov = overflow_page(&f);
        assert_true(ov != 0);
        damage(&f, ov, 0, 64);
        break;
    case D_EXPIRY_LEAF:
        damage(&f, expiry_leaf(&f), 0, f.psize);
        break;
    case D_ENTRY_HEADER: {
        unsigned char fmt = 0x17;
        poke(&f, leaf, voff, &fmt, 1);
        break;
    }
    case D_ENTRY_EXPIRY: {
        /* The entry's expiry time no longer matches its row (or it gains
         * a TTL it has no row for). */
        uint64_t exp;
        memcpy(&exp, lp + voff + 8, 8);
        exp += 12345;
        poke(&f, leaf, voff + 8, &exp, 8);
        break;
    }
    default:
        fail();
    }
    dfile_close(&f);
}

/* Every kind of damage, several random patterns each: LMC_ECORRUPT with a
 * message that names the file and says how to reset it, and this process
 * survives.  Then the documented recovery gives a clean, empty cache. */
static void test_damage_is_reported_not_a_crash(void **state)
{
    tctx *t = *state;
    for (int d = 0; d < D_COUNT; d++) {
        int rounds = d == D_LEAF_ALL || d == D_LEAF_PTRS || d == D_BRANCH_ALL ||
                             d == D_BRANCH_PTRS || d == D_OVERFLOW || d == D_EXPIRY_LEAF
                         ? 6
                         : 1;
        for (int round = 0; round < rounds; round++) {
            rnd_state = 0x9e3779b97f4a7c15ULL * (uint64_t)(d * 16 + round + 1);
            lmc *c = open_cache(t, 8, 0);
            fill(c, 2500);
            do_damage(t, (dkind)d);
            lmc_verify_result r;
            int rc = lmc_verify(c, NULL, &r);
            const char *msg = lmc_errmsg(c);
            if (rc != LMC_ECORRUPT)
                fail_msg("%s, round %d: lmc_verify returned %s (%s)", dnames[d], round,
                         lmc_errname(rc), msg);
            if (!strstr(msg, "data.mdb is damaged") || !strstr(msg, "LMC_OPEN_RESET"))
                fail_msg("%s: message '%s'", dnames[d], msg);
            if (round == 0)
                print_message("%-28s %s\n", dnames[d], msg + strlen("LMC_ECORRUPT: ") +
                              strlen(t->path) + strlen("/data.mdb is damaged: "));
            /* Recovery: with no other user, a reset recreates the files
             * without reading the damaged ones. */
            lmc_close(c);
            lmc_options o = {.map_size = 8u << 20, .flags = LMC_OPEN_RESET};
            ASSERT_OK(lmc_open(&c, t->path, &o));
            assert_int_equal(stats_of(c).entries, 0);
            expect_clean(c);
            lmc_close(c);
            rm_rf(t->path);
        }
    }
}

/* If the child crashes instead of reporting, that is damage too. */
static void test_a_crashing_check_is_reported(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    lmc__test_verify_crash(true);
    int rc = lmc_verify(t->c, NULL, NULL);
    lmc__test_verify_crash(false);
    ASSERT_RC(rc, LMC_ECORRUPT);
    assert_non_null(strstr(lmc_errmsg(t->c), "data.mdb is damaged: the check"));
    /* Its reader slot was cleared, and the handle works on. */
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.readers_stale, 0);
    char buf[8];
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "v");
    ASSERT_OK(lmc_verify(t->c, NULL, NULL));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_healthy_caches_verify_clean),
        T(test_verify_arguments),
        T(test_rows_and_entries_must_match),
        T(test_rows_keep_the_order_of_their_sets),
        T(test_clean_under_a_concurrent_writer),
        T(test_damage_is_reported_not_a_crash),
        T(test_a_crashing_check_is_reported),
    };
    return cmocka_run_group_tests_name("verify", tests, NULL, NULL);
}
