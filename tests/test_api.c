/*
 * test_api.c - every call of the public API in one process: results, return
 * codes, argument checks (NULL pointers, empty and oversized keys, oversized
 * values), error messages, counters and the metadata calls.
 */
#include "util.h"

#include <fcntl.h>

/* ------------------------------------------------------------------------ */
/* Opening                                                                  */
/* ------------------------------------------------------------------------ */

static void test_open_creates_with_exact_modes(void **state)
{
    tctx *t = *state;
    mode_t old = umask(0); /* a permissive umask must not widen the modes */
    t->c = open_cache(t, 4, 0);
    umask(old);
    struct stat st;
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    const char *files[] = {"data.mdb", "lock.mdb", "stats", "recency"};
    for (size_t i = 0; i < 4; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", t->path, files[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
    }
    /* The whole map is reserved up front (WRITEMAP must never SIGBUS). */
    char p[256];
    snprintf(p, sizeof p, "%s/data.mdb", t->path);
    assert_int_equal(stat(p, &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 >= 4u << 20);
}

static void test_open_group_mode(void **state)
{
    tctx *t = *state;
    lmc_options o = {.map_size = 2u << 20, .mode = 0660};
    mode_t old = umask(0077); /* a strict umask must not narrow them */
    int rc = lmc_open(&t->c, t->path, &o);
    umask(old);
    ASSERT_OK(rc);
    struct stat st;
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0770);
    char p[256];
    snprintf(p, sizeof p, "%s/stats", t->path);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660);
}

static void test_open_bad_arguments(void **state)
{
    tctx *t = *state;
    lmc *c = (lmc *)0x1;
    lmc_options o;
    memset(&o, 0, sizeof o);
    ASSERT_RC(lmc_open(NULL, t->path, NULL), LMC_EINVAL);
    ASSERT_RC(lmc_open(&c, NULL, NULL), LMC_EINVAL);
    assert_null(c); /* *out is NULL on every failure */
    ASSERT_RC(lmc_open(&c, "", NULL), LMC_EINVAL);
    o.flags = 0x80;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    assert_non_null(strstr(lmc_errmsg(NULL), "unknown open flags"));
    o.flags = LMC_OPEN_RDONLY | LMC_OPEN_RESET;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    o.flags = 0;
    o.map_size = 4096;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    assert_non_null(strstr(lmc_errmsg(NULL), "minimum"));
    o.map_size = 0;
    o.mode = 0666;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    o.mode = 01600;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    o.mode = 0;
    o.default_ttl_ms = -5;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    o.default_ttl_ms = 0;
    o.max_readers = 1u << 30;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    o.max_readers = 0;
    /* Reserved fields are for options of later versions: refused unless 0. */
    o.reserved_int = 1;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    assert_non_null(strstr(lmc_errmsg(NULL), "reserved fields of lmc_options"));
    o.reserved_int = 0;
    o.reserved[5] = 1;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_EINVAL);
    o.reserved[5] = 0;
    /* None of these created anything. */
    struct stat st;
    assert_int_equal(stat(t->path, &st), -1);
    lmc_close(NULL);
}

static void test_open_nocreate_and_rdonly_create_nothing(void **state)
{
    tctx *t = *state;
    lmc *c = NULL;
    /* "No cache here" has a code of its own: it never reads as a miss. */
    lmc_options o = {.flags = LMC_OPEN_NOCREATE};
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_ENOCACHE);
    assert_string_equal(lmc_errname(LMC_ENOCACHE), "LMC_ENOCACHE");
    o.flags = LMC_OPEN_RDONLY;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_ENOCACHE);
    assert_true(strncmp(lmc_errmsg(NULL), "LMC_ENOCACHE: no cache at ", 26) == 0);
    struct stat st;
    assert_int_equal(stat(t->path, &st), -1);
    /* An existing empty directory is not a cache either, and stays empty. */
    assert_int_equal(mkdir(t->path, 0700), 0);
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_ENOCACHE);
    o.flags = LMC_OPEN_NOCREATE;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_ENOCACHE);
    char p[256];
    snprintf(p, sizeof p, "%s/data.mdb", t->path);
    assert_int_equal(stat(p, &st), -1);
    snprintf(p, sizeof p, "%s/stats", t->path);
    assert_int_equal(stat(p, &st), -1);
    /* Nor is an empty data file (a creator that died before writing). */
    snprintf(p, sizeof p, "%s/data.mdb", t->path);
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    o.flags = LMC_OPEN_RDONLY;
    ASSERT_RC(lmc_open(&c, t->path, &o), LMC_ENOCACHE);
    assert_non_null(strstr(lmc_errmsg(NULL), "data.mdb is empty"));
}

static void test_readonly_handle(void **state)
{
    tctx *t = *state;
    lmc *w = open_cache(t, 4, 0);
    ASSERT_OK(put_s(w, "k", "v", 0));
    lmc_close(w);
    t->c = open_cache(t, 4, LMC_OPEN_RDONLY);
    char buf[16];
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "v");
    ASSERT_RC(put_s(t->c, "k", "x", 0), LMC_EREADONLY);
    ASSERT_RC(lmc_delete(t->c, "k", 1), LMC_EREADONLY);
    ASSERT_RC(lmc_clear(t->c), LMC_EREADONLY);
    ASSERT_RC(lmc_incr(t->c, "n", 1, 1, NULL, 0), LMC_EREADONLY);
    ASSERT_RC(lmc_touch(t->c, "k", 1, 5), LMC_EREADONLY);
    ASSERT_RC(lmc_delete_prefix(t->c, "k", 1, NULL), LMC_EREADONLY);
    ASSERT_RC(lmc_sweep(t->c, NULL, NULL), LMC_EREADONLY);
    lmc_item it = {"a", 1, "b", 1, 0};
    ASSERT_RC(lmc_set_many(t->c, &it, 1), LMC_EREADONLY);
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "v");
    lmc_info info;
    ASSERT_OK(lmc_info_get(t->c, &info));
    assert_int_equal(info.read_only, 1);
}

static void test_same_path_shares_one_environment(void **state)
{
    tctx *t = *state;
    lmc *a = open_cache(t, 4, 0);
    lmc_options o = {.default_ttl_ms = 60000};
    lmc *b = NULL;
    ASSERT_OK(lmc_open(&b, t->path, &o));
    ASSERT_OK(put_s(a, "x", "1", 0));
    char buf[8];
    assert_string_equal(get_s(b, "x", buf, sizeof buf), "1");
    /* Each handle keeps its own default TTL. */
    lmc_info ia, ib;
    ASSERT_OK(lmc_info_get(a, &ia));
    ASSERT_OK(lmc_info_get(b, &ib));
    assert_int_equal(ia.default_ttl_ms, 0);
    assert_int_equal(ib.default_ttl_ms, 60000);
    lmc_close(a);
    assert_string_equal(get_s(b, "x", buf, sizeof buf), "1");
    ASSERT_OK(put_s(b, "y", "2", 0));
    lmc_close(b);
    /* A read-only handle first, then a read-write one: refused. */
    lmc *r = open_cache(t, 4, LMC_OPEN_RDONLY);
    lmc *w = NULL;
    ASSERT_RC(lmc_open(&w, t->path, NULL), LMC_EBUSY);
    assert_non_null(strstr(lmc_errmsg(NULL), "is already open read-only in this process"));
    assert_null(w);
    lmc_close(r);
    w = open_cache(t, 4, 0);
    assert_string_equal(get_s(w, "y", buf, sizeof buf), "2");
    lmc_close(w);
}

static void test_existing_cache_keeps_its_map_size(void **state)
{
    tctx *t = *state;
    lmc *c = open_cache(t, 4, 0);
    lmc_close(c);
    t->c = open_cache(t, 64, 0);
    lmc_info info;
    ASSERT_OK(lmc_info_get(t->c, &info));
    assert_int_equal(info.map_size, 4u << 20);
    assert_int_equal(info.format_version, LMC__FORMAT_VERSION);
    assert_int_equal(info.on_tmpfs, 1);
    assert_int_equal(info.max_readers, 1024);
    assert_string_equal(info.path, t->path);
    assert_non_null(strstr(info.lmdb_version, "0.9"));
    assert_true(info.created_ms > 1600000000000LL);
}

/* ------------------------------------------------------------------------ */
/* Reading and writing                                                      */
/* ------------------------------------------------------------------------ */

static void test_set_get_roundtrip(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    char buf[64];
    size_t n = 99;
    ASSERT_RC(lmc_get(t->c, "missing", 7, buf, sizeof buf, &n), LMC_NOTFOUND);
    ASSERT_OK(put_s(t->c, "a", "hello", 0));
    assert_string_equal(get_s(t->c, "a", buf, sizeof buf), "hello");
    ASSERT_OK(put_s(t->c, "a", "bye", 0)); /* overwrite */
    assert_string_equal(get_s(t->c, "a", buf, sizeof buf), "bye");
    /* Binary keys and values, NUL bytes included. */
    const char bk[] = {0, 1, 2, 0, 3};
    const char bv[] = {'x', 0, 'y', 0};
    ASSERT_OK(lmc_set(t->c, bk, sizeof bk, bv, sizeof bv, 0));
    ASSERT_OK(lmc_get(t->c, bk, sizeof bk, buf, sizeof buf, &n));
    assert_int_equal(n, sizeof bv);
    assert_memory_equal(buf, bv, sizeof bv);
    /* Empty value, read with no buffer at all. */
    ASSERT_OK(lmc_set(t->c, "e", 1, NULL, 0, 0));
    ASSERT_OK(lmc_get(t->c, "e", 1, NULL, 0, &n));
    assert_int_equal(n, 0);
    /* Too small a buffer: nothing copied, length reported. */
    memset(buf, '#', sizeof buf);
    ASSERT_RC(lmc_get(t->c, "a", 1, buf, 2, &n), LMC_ERANGE);
    assert_int_equal(n, 3);
    assert_int_equal(buf[0], '#');
    ASSERT_RC(lmc_get(t->c, "a", 1, NULL, 0, &n), LMC_ERANGE);
    assert_int_equal(n, 3);
    assert_non_null(strstr(lmc_errmsg(t->c), "does not fit"));
    ASSERT_OK(lmc_get(t->c, "a", 1, buf, 3, NULL)); /* vlen may be NULL */
    ASSERT_RC(lmc_get(t->c, "a", 1, NULL, 5, &n), LMC_EINVAL);
    ASSERT_RC(lmc_set(t->c, "a", 1, NULL, 5, 0), LMC_EINVAL);
}

static void test_key_limits(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    char buf[8];
    size_t n;
    ASSERT_RC(lmc_set(t->c, "", 0, "v", 1, 0), LMC_EINVAL);
    assert_non_null(strstr(lmc_errmsg(t->c), "empty"));
    ASSERT_RC(lmc_set(t->c, NULL, 3, "v", 1, 0), LMC_EINVAL);
    ASSERT_RC(lmc_get(t->c, NULL, 1, buf, sizeof buf, &n), LMC_EINVAL);
    ASSERT_RC(lmc_get(t->c, "k", 0, buf, sizeof buf, &n), LMC_EINVAL);
    char *big = malloc(LMC_MAX_KEY + 1);
    assert_non_null(big);
    memset(big, 'k', LMC_MAX_KEY + 1);
    ASSERT_RC(lmc_set(t->c, big, LMC_MAX_KEY + 1, "v", 1, 0), LMC_ETOOBIG);
    assert_non_null(strstr(lmc_errmsg(t->c), "65537"));
    ASSERT_RC(lmc_get(t->c, big, LMC_MAX_KEY + 1, buf, sizeof buf, &n), LMC_ETOOBIG);
    ASSERT_RC(lmc_delete(t->c, big, LMC_MAX_KEY + 1), LMC_ETOOBIG);
    ASSERT_OK(lmc_set(t->c, big, LMC_MAX_KEY, "max", 3, 0));
    ASSERT_OK(lmc_get(t->c, big, LMC_MAX_KEY, buf, sizeof buf, &n));
    assert_int_equal(n, 3);
    ASSERT_OK(lmc_set(t->c, "k", 1, "one", 3, 0));
    ASSERT_OK(lmc_get(t->c, "k", 1, buf, sizeof buf, &n));
    free(big);
}

static void test_value_limits(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 2, 0);
    size_t big = 3u << 20; /* larger than the 2 MiB map */
    char *v = calloc(1, big);
    assert_non_null(v);
    ASSERT_RC(lmc_set(t->c, "big", 3, v, big, 0), LMC_ETOOBIG);
    assert_non_null(strstr(lmc_errmsg(t->c), "never fit"));
    ASSERT_RC(lmc_set(t->c, "big", 3, v, (size_t)1 << 40, 0), LMC_ETOOBIG);
    /* The largest entry the map allows (a little under half of it) fits and
     * reads back intact; one page more can never fit. */
    lmc__core *k = t->c->core;
    size_t max = (size_t)lmc__max_entry_pages(k) * k->psize - 16 - LMC__HDR_SIZE;
    assert_true(max > (700u << 10) && max < (1u << 20));
    for (size_t i = 0; i < max; i++)
        v[i] = (char)(i * 7);
    ASSERT_OK(lmc_set(t->c, "half", 4, v, max, 0));
    ASSERT_RC(lmc_set(t->c, "more", 4, v, max + k->psize, 0), LMC_ETOOBIG);
    void *out = NULL;
    size_t n = 0;
    ASSERT_OK(lmc_get_alloc(t->c, "half", 4, &out, &n));
    assert_int_equal(n, max);
    assert_memory_equal(out, v, max);
    lmc_free(out);
    free(v);
}

static void test_add_replace(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    char buf[16];
    ASSERT_RC(lmc_replace(t->c, "k", 1, "r", 1, 0), LMC_NOTFOUND);
    assert_null(get_s(t->c, "k", buf, sizeof buf));
    ASSERT_OK(lmc_add(t->c, "k", 1, "a", 1, 0));
    ASSERT_RC(lmc_add(t->c, "k", 1, "b", 1, 0), LMC_EXISTS);
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "a");
    ASSERT_OK(lmc_replace(t->c, "k", 1, "r", 1, 0));
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "r");
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.adds, 2);
    assert_int_equal(st.counters.add_conflicts, 1);
    assert_int_equal(st.counters.sets, 2); /* the successful add and replace */
}

static void test_delete(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_RC(lmc_delete(t->c, "k", 1), LMC_NOTFOUND);
    ASSERT_OK(put_s(t->c, "k", "v", 0));
    ASSERT_OK(put_s(t->c, "k2", "v", 0));
    ASSERT_OK(lmc_delete(t->c, "k", 1));
    ASSERT_RC(lmc_delete(t->c, "k", 1), LMC_NOTFOUND);
    char buf[8];
    assert_null(get_s(t->c, "k", buf, sizeof buf));
    assert_string_equal(get_s(t->c, "k2", buf, sizeof buf), "v");
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.deletes, 1);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.key_bytes, 2);
    assert_int_equal(st.value_bytes, 1);
}

static void test_incr(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    int64_t r = 0;
    char buf[32];
    ASSERT_OK(lmc_incr(t->c, "n", 1, 5, &r, 0));
    assert_int_equal(r, 5);
    ASSERT_OK(lmc_incr(t->c, "n", 1, -7, &r, 0));
    assert_int_equal(r, -2);
    assert_string_equal(get_s(t->c, "n", buf, sizeof buf), "-2");
    ASSERT_OK(put_s(t->c, "n", "41", 0));
    ASSERT_OK(lmc_incr(t->c, "n", 1, 1, NULL, 0));
    assert_string_equal(get_s(t->c, "n", buf, sizeof buf), "42");
    ASSERT_OK(put_s(t->c, "n", "9223372036854775807", 0));
    ASSERT_RC(lmc_incr(t->c, "n", 1, 1, &r, 0), LMC_ERANGE);
    assert_string_equal(get_s(t->c, "n", buf, sizeof buf), "9223372036854775807");
    ASSERT_OK(put_s(t->c, "n", "-9223372036854775807", 0));
    ASSERT_OK(lmc_incr(t->c, "n", 1, -1, &r, 0));
    assert_true(r == INT64_MIN);
    assert_string_equal(get_s(t->c, "n", buf, sizeof buf), "-9223372036854775808");
    const char *bad[] = {"abc", " 5", "5 ", "", "-", "1.5", "99999999999999999999", "+3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_OK(put_s(t->c, "x", bad[i], 0));
        ASSERT_RC(lmc_incr(t->c, "x", 1, 1, &r, 0), LMC_ENOTNUM);
        assert_string_equal(get_s(t->c, "x", buf, sizeof buf), bad[i]);
    }
    ASSERT_OK(put_s(t->c, "z", "007", 0));
    ASSERT_OK(lmc_incr(t->c, "z", 1, 1, &r, 0));
    assert_int_equal(r, 8);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.incrs, 14);
}

static void test_cas(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    char buf[16];
    size_t n;
    uint64_t v1 = 0, v2 = 0, v3 = 0;
    ASSERT_RC(lmc_cas(t->c, "k", 1, "x", 1, 0, 1), LMC_NOTFOUND);
    ASSERT_OK(put_s(t->c, "k", "a", 0));
    ASSERT_OK(lmc_get_cas(t->c, "k", 1, buf, sizeof buf, &n, &v1));
    assert_true(v1 != 0);
    ASSERT_OK(lmc_cas(t->c, "k", 1, "b", 1, 0, v1));
    ASSERT_OK(lmc_get_cas(t->c, "k", 1, buf, sizeof buf, &n, &v2));
    assert_true(v2 > v1);
    assert_int_equal(buf[0], 'b');
    ASSERT_RC(lmc_cas(t->c, "k", 1, "c", 1, 0, v1), LMC_ECHANGED);
    assert_string_equal(get_s(t->c, "k", buf, sizeof buf), "b");
    /* touch keeps the version: a TTL change is not a value change. */
    ASSERT_OK(lmc_touch(t->c, "k", 1, 100000));
    ASSERT_OK(lmc_get_cas(t->c, "k", 1, buf, sizeof buf, &n, &v3));
    assert_true(v3 == v2);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.cas, 3);
    assert_int_equal(st.counters.cas_conflicts, 1);
}

static void test_exists(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_RC(lmc_exists(t->c, "k", 1), LMC_NOTFOUND);
    ASSERT_OK(lmc_set(t->c, "k", 1, "a big value", 11, 0));
    ASSERT_OK(lmc_exists(t->c, "k", 1));
    ASSERT_RC(lmc_exists(t->c, "", 0), LMC_EINVAL);
    ASSERT_RC(lmc_exists(NULL, "k", 1), LMC_EINVAL);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.hits, 1);
    assert_int_equal(st.counters.misses, 1);
    assert_int_equal(st.counters.bytes_read, 0); /* nothing was read */
}

static void test_get_alloc(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    void *p = (void *)0x1;
    size_t n = 0;
    ASSERT_RC(lmc_get_alloc(t->c, "k", 1, &p, &n), LMC_NOTFOUND);
    assert_null(p);
    ASSERT_OK(put_s(t->c, "k", "value", 0));
    ASSERT_OK(lmc_get_alloc(t->c, "k", 1, &p, &n));
    assert_int_equal(n, 5);
    assert_memory_equal(p, "value", 5);
    lmc_free(p);
    ASSERT_OK(lmc_set(t->c, "e", 1, NULL, 0, 0));
    ASSERT_OK(lmc_get_alloc(t->c, "e", 1, &p, &n));
    assert_non_null(p);
    assert_int_equal(n, 0);
    lmc_free(p);
    lmc_free(NULL);
    ASSERT_RC(lmc_get_alloc(t->c, "k", 1, NULL, &n), LMC_EINVAL);
    ASSERT_RC(lmc_get_alloc(t->c, "k", 1, &p, NULL), LMC_EINVAL);
}

typedef struct view_ctx {
    lmc *c;
    int calls;
    int reentry_get, reentry_set;
    char data[32];
    size_t len;
    uint64_t version;
} view_ctx;

static int view_cb(void *arg, const lmc_value *v)
{
    view_ctx *x = arg;
    x->calls++;
    memcpy(x->data, v->data, v->len);
    x->len = v->len;
    x->version = v->version;
    char buf[8];
    x->reentry_get = lmc_get(x->c, "k", 1, buf, sizeof buf, NULL);
    x->reentry_set = lmc_set(x->c, "z", 1, "z", 1, 0);
    return 0;
}

static int view_stop(void *arg, const lmc_value *v)
{
    (void)arg;
    (void)v;
    return 77;
}

static void test_get_view(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    view_ctx x = {.c = t->c};
    ASSERT_RC(lmc_get_view(t->c, "k", 1, view_cb, &x), LMC_NOTFOUND);
    assert_int_equal(x.calls, 0);
    ASSERT_OK(put_s(t->c, "k", "zero-copy", 0));
    ASSERT_OK(lmc_get_view(t->c, "k", 1, view_cb, &x));
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.len, 9);
    assert_memory_equal(x.data, "zero-copy", 9);
    assert_true(x.version != 0);
    /* Calls on the same handle from inside the callback are refused. */
    assert_int_equal(x.reentry_get, LMC_EBUSY);
    assert_int_equal(x.reentry_set, LMC_EBUSY);
    char buf[8];
    assert_null(get_s(t->c, "z", buf, sizeof buf));
    /* ... and work again after it. */
    ASSERT_OK(put_s(t->c, "z", "ok", 0));
    assert_int_equal(lmc_get_view(t->c, "k", 1, view_stop, NULL), 77);
    ASSERT_RC(lmc_get_view(t->c, "k", 1, NULL, NULL), LMC_EINVAL);
}

/*
 * Every public call that takes a handle, made on c from inside a callback on
 * c: each must refuse with LMC_EBUSY and a message.  The results are
 * collected, not asserted, because a cmocka failure would longjmp out of the
 * callback and leave the library's callback marker behind.  Returns a
 * bitmask of the calls that did not refuse properly (bit i: call i).
 */
static int noop_view(void *arg, const lmc_value *v)
{
    (void)arg;
    (void)v;
    return 0;
}

static int noop_many(void *arg, size_t i, const lmc_value *v)
{
    (void)arg;
    (void)i;
    (void)v;
    return 0;
}

static unsigned all_calls_busy(lmc *c)
{
    unsigned bad = 0;
    int i = 0;
    char buf[8];
    size_t n;
    void *p = NULL;
    uint64_t u;
    int64_t r;
    lmc_stat st;
    lmc_proc_stat ps[2];
    lmc_info info;
    lmc_sweep_result sr;
    lmc_item item = {"k", 1, "v", 1, 0};
    lmc_key key = {"k", 1};
#define BUSY(call)                                                                            \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != LMC_EBUSY || strncmp(lmc_errmsg(c), "LMC_EBUSY: call on ", 19) != 0 ||     \
            !strstr(lmc_errmsg(c), "from inside one of its callbacks")) {                     \
            fprintf(stderr, "# in a callback: %s returned %s, message '%s'\n", #call,         \
                    lmc_errname(rc_), lmc_errmsg(c));                                         \
            bad |= 1u << i;                                                                   \
        }                                                                                     \
        i++;                                                                                  \
    } while (0)
    BUSY(lmc_get(c, "k", 1, buf, sizeof buf, &n));
    BUSY(lmc_get_cas(c, "k", 1, buf, sizeof buf, &n, &u));
    BUSY(lmc_get_alloc(c, "k", 1, &p, &n));
    BUSY(lmc_exists(c, "k", 1));
    BUSY(lmc_get_view(c, "k", 1, noop_view, NULL));
    BUSY(lmc_get_many(c, &key, 1, noop_many, NULL));
    BUSY(lmc_scan(c, "k", 1, noop_view, NULL));
    BUSY(lmc_stats(c, &st));
    BUSY(lmc_stats_processes(c, ps, 2, &n));
    BUSY(lmc_info_get(c, &info));
    BUSY(lmc_set(c, "k", 1, "v", 1, 0));
    BUSY(lmc_add(c, "n", 1, "v", 1, 0));
    BUSY(lmc_replace(c, "k", 1, "v", 1, 0));
    BUSY(lmc_cas(c, "k", 1, "v", 1, 0, 1));
    BUSY(lmc_incr(c, "i", 1, 1, &r, 0));
    BUSY(lmc_touch(c, "k", 1, 0));
    BUSY(lmc_set_many(c, &item, 1));
    BUSY(lmc_delete(c, "k", 1));
    BUSY(lmc_delete_prefix(c, "k", 1, &u));
    BUSY(lmc_clear(c));
    BUSY(lmc_sweep(c, NULL, &sr));
#undef BUSY
    lmc_free(p);
    return bad;
}

/* Two caches, A and B: callbacks nest across them. */
typedef struct nest_ctx {
    lmc *a, *b;
    unsigned a_in_b;      /* calls on A inside B's callback inside A's */
    unsigned b_in_b;      /* calls on B inside B's callback */
    unsigned a_after_b;   /* calls on A inside A's callback, after B's returned */
    int b_get_in_a;       /* a plain call on B inside A's callback */
    int b_view_in_a;
    int how;              /* 0: nest with get_view, 1: get_many, 2: scan */
} nest_ctx;

static int nest_inner(void *arg, const lmc_value *v)
{
    nest_ctx *x = arg;
    (void)v;
    x->a_in_b = all_calls_busy(x->a);
    x->b_in_b = all_calls_busy(x->b);
    return 0;
}

static int nest_inner_many(void *arg, size_t i, const lmc_value *v)
{
    (void)i;
    return nest_inner(arg, v);
}

static int nest_outer(void *arg, const lmc_value *v)
{
    nest_ctx *x = arg;
    (void)v;
    char buf[8];
    size_t n;
    x->b_get_in_a = lmc_get(x->b, "k", 1, buf, sizeof buf, &n);
    lmc_key key = {"k", 1};
    if (x->how == 0)
        x->b_view_in_a = lmc_get_view(x->b, "k", 1, nest_inner, x);
    else if (x->how == 1)
        x->b_view_in_a = lmc_get_many(x->b, &key, 1, nest_inner_many, x);
    else
        x->b_view_in_a = lmc_scan(x->b, "k", 1, nest_inner, x);
    x->a_after_b = all_calls_busy(x->a);
    return 0;
}

static int nest_outer_many(void *arg, size_t i, const lmc_value *v)
{
    (void)i;
    return nest_outer(arg, v);
}

/* Regression: a callback on B used to reset the thread's callback marker to
 * NULL, so that inside A's callback, after a call on B, lmc_set(A) and
 * lmc_delete_prefix(A) ran (LMC_OK) and lmc_get(A) failed with LMC_EINVAL. */
static void test_callbacks_nest_across_caches(void **state)
{
    tctx *t = *state;
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/a", t->dir);
    snprintf(pb, sizeof pb, "%s/b", t->dir);
    lmc_options o = {.map_size = 2u << 20};
    lmc *a, *b;
    ASSERT_OK(lmc_open(&a, pa, &o));
    ASSERT_OK(lmc_open(&b, pb, &o));
    ASSERT_OK(put_s(a, "k", "a", 0));
    ASSERT_OK(put_s(b, "k", "b", 0));
    lmc_key key = {"k", 1};
    for (int how = 0; how < 3; how++) {
        nest_ctx x = {.a = a, .b = b, .how = how};
        if (how == 0)
            ASSERT_OK(lmc_get_view(a, "k", 1, nest_outer, &x));
        else if (how == 1)
            ASSERT_OK(lmc_get_many(a, &key, 1, nest_outer_many, &x));
        else
            ASSERT_OK(lmc_scan(a, "k", 1, nest_outer, &x));
        assert_int_equal(x.b_get_in_a, LMC_OK);
        assert_int_equal(x.b_view_in_a, LMC_OK);
        assert_int_equal(x.a_in_b, 0);
        assert_int_equal(x.b_in_b, 0);
        assert_int_equal(x.a_after_b, 0);
    }
    /* Both work again once the callbacks are over, and nothing was written
     * from inside them. */
    char buf[8];
    assert_string_equal(get_s(a, "k", buf, sizeof buf), "a");
    assert_string_equal(get_s(b, "k", buf, sizeof buf), "b");
    assert_null(get_s(a, "n", buf, sizeof buf));
    assert_null(get_s(a, "i", buf, sizeof buf));
    ASSERT_OK(put_s(a, "z", "1", 0));
    ASSERT_OK(put_s(b, "z", "1", 0));
    lmc_close(a);
    lmc_close(b);
}

typedef struct many_ctx {
    int hits, misses, calls;
    size_t order[8];
    int stop_at;
} many_ctx;

static int many_cb(void *arg, size_t i, const lmc_value *v)
{
    many_ctx *m = arg;
    m->order[m->calls++] = i;
    if (v) {
        m->hits++;
        assert_int_equal(v->len, 1);
        assert_int_equal(((const char *)v->data)[0], (char)('0' + i));
    } else {
        m->misses++;
    }
    return m->stop_at >= 0 && (int)i == m->stop_at ? 5 : 0;
}

static void test_get_many(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    ASSERT_OK(put_s(t->c, "k0", "0", 0));
    ASSERT_OK(put_s(t->c, "k2", "2", 0));
    ASSERT_OK(put_s(t->c, "k3", "3", 0));
    lmc_key keys[4] = {{"k0", 2}, {"k1", 2}, {"k2", 2}, {"k3", 2}};
    many_ctx m = {.stop_at = -1};
    ASSERT_OK(lmc_get_many(t->c, keys, 4, many_cb, &m));
    assert_int_equal(m.calls, 4);
    assert_int_equal(m.hits, 3);
    assert_int_equal(m.misses, 1);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(m.order[i], i);
    many_ctx s = {.stop_at = 1};
    assert_int_equal(lmc_get_many(t->c, keys, 4, many_cb, &s), 5);
    assert_int_equal(s.calls, 2);
    /* An invalid key anywhere fails before the first callback. */
    lmc_key bad[2] = {{"k0", 2}, {"", 0}};
    many_ctx b = {.stop_at = -1};
    ASSERT_RC(lmc_get_many(t->c, bad, 2, many_cb, &b), LMC_EINVAL);
    assert_int_equal(b.calls, 0);
    assert_non_null(strstr(lmc_errmsg(t->c), "key 1"));
    ASSERT_OK(lmc_get_many(t->c, NULL, 0, many_cb, &b));
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.hits, 3 + 1);
    assert_int_equal(st.counters.misses, 1 + 1);
    assert_int_equal(st.counters.gets, 6);
}

static void test_set_many_is_all_or_nothing(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    lmc_item items[3] = {{"a", 1, "1", 1, 0}, {"b", 1, "2", 1, 50000}, {"c", 1, NULL, 0, 0}};
    ASSERT_OK(lmc_set_many(t->c, items, 3));
    char buf[8];
    assert_string_equal(get_s(t->c, "a", buf, sizeof buf), "1");
    assert_string_equal(get_s(t->c, "b", buf, sizeof buf), "2");
    assert_string_equal(get_s(t->c, "c", buf, sizeof buf), "");
    /* One bad item: nothing of the batch is written. */
    lmc_item bad[2] = {{"d", 1, "4", 1, 0}, {"e", 1, NULL, 3, 0}};
    ASSERT_RC(lmc_set_many(t->c, bad, 2), LMC_EINVAL);
    assert_non_null(strstr(lmc_errmsg(t->c), "item 1"));
    assert_null(get_s(t->c, "d", buf, sizeof buf));
    lmc_item badttl[1] = {{"d", 1, "4", 1, -9}};
    ASSERT_RC(lmc_set_many(t->c, badttl, 1), LMC_EINVAL);
    ASSERT_OK(lmc_set_many(t->c, NULL, 0));
    ASSERT_RC(lmc_set_many(t->c, NULL, 2), LMC_EINVAL);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.sets, 3);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.entries_with_ttl, 1);
}

static int expiry_cb(void *arg, const lmc_value *v)
{
    *(int64_t *)arg = v->expires_at_ms;
    return 0;
}

/* The next of a reproducible sequence of pseudo-random numbers (xorshift64). */
static uint64_t xorshift(uint64_t x)
{
    x ^= x << 13;
    x ^= x >> 7;
    return x ^ x << 17;
}

/* set_many stores its items in key order (store.c), which must not change
 * what it stores: of items with the same key the last one given wins, an
 * LMC_TTL_KEEP item keeps the TTL an earlier item of the batch gave, and long
 * keys that share their first LMC__KEY_INLINE bytes stay apart. */
static void test_set_many_in_any_order_the_last_of_a_key_wins(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    char la[600], lb[600];
    memset(la, 'L', sizeof la);
    memcpy(lb, la, sizeof lb);
    la[sizeof la - 1] = 'a';
    lb[sizeof lb - 1] = 'b';
    lmc_item items[] = {
        {"k3", 2, "x", 1, 0},          {"k1", 2, "a", 1, 0},
        {lb, sizeof lb, "B", 1, 0},    {"k3", 2, "y", 1, 0},
        {"k2", 2, "t", 1, 50000},      {"k1", 2, "b", 1, 0},
        {"k4", 2, "v", 1, 50000},      {la, sizeof la, "A", 1, 0},
        {"k3", 2, "z", 1, 60000},      {"k4", 2, "w", 1, LMC_TTL_KEEP},
        {"k0", 2, "first", 5, 0},      {"k2", 2, "u", 1, LMC_TTL_NEVER},
    };
    ASSERT_OK(lmc_set_many(t->c, items, sizeof items / sizeof items[0]));
    char buf[8];
    assert_string_equal(get_s(t->c, "k0", buf, sizeof buf), "first");
    assert_string_equal(get_s(t->c, "k1", buf, sizeof buf), "b");
    assert_string_equal(get_s(t->c, "k2", buf, sizeof buf), "u");
    assert_string_equal(get_s(t->c, "k3", buf, sizeof buf), "z");
    assert_string_equal(get_s(t->c, "k4", buf, sizeof buf), "w");
    size_t vl;
    ASSERT_OK(lmc_get(t->c, la, sizeof la, buf, sizeof buf, &vl));
    assert_true(vl == 1 && buf[0] == 'A');
    ASSERT_OK(lmc_get(t->c, lb, sizeof lb, buf, sizeof buf, &vl));
    assert_true(vl == 1 && buf[0] == 'B');
    int64_t e2 = -1, e3 = -1, e4 = -1;
    ASSERT_OK(lmc_get_view(t->c, "k2", 2, expiry_cb, &e2));
    ASSERT_OK(lmc_get_view(t->c, "k3", 2, expiry_cb, &e3));
    ASSERT_OK(lmc_get_view(t->c, "k4", 2, expiry_cb, &e4));
    assert_int_equal(e2, 0);
    assert_true(e3 > 0 && e4 > 0 && e3 - e4 >= 9000 && e3 - e4 <= 10000);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.sets, sizeof items / sizeof items[0]);
    assert_int_equal(st.entries, 7);
    assert_int_equal(st.entries_with_ttl, 2);
    lmc_verify_result r;
    ASSERT_OK(lmc_verify(t->c, NULL, &r));
    assert_int_equal(r.expiry_rows, 2);

    /* A large batch in random order, half of it with a TTL: every value
     * where it belongs, and an index that verify accepts. */
    enum { N = 3000 };
    static lmc_item big[N];
    static char keys[N][16], vals[N][16];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < N; i++) {
        x = xorshift(x);
        int kl = snprintf(keys[i], sizeof keys[i], "r%llu", (unsigned long long)(x % 100000));
        int vlen = snprintf(vals[i], sizeof vals[i], "v%d", i);
        big[i] = (lmc_item){keys[i], (size_t)kl, vals[i], (size_t)vlen, i % 2 ? 50000 : 0};
    }
    ASSERT_OK(lmc_set_many(t->c, big, N));
    for (int i = 0; i < N; i++) {
        int last = i;
        for (int j = i + 1; j < N; j++)
            if (strcmp(keys[j], keys[i]) == 0)
                last = j;
        char got[16];
        assert_string_equal(get_s(t->c, keys[i], got, sizeof got), vals[last]);
    }
    ASSERT_OK(lmc_verify(t->c, NULL, &r));
}

/* A new key is stored through the cursor its lookup left next to where it
 * goes (lib/entry.c), and a lookup that found its key overwrites through
 * it: new keys between present ones, before and after all of them, over
 * many leaf pages, in one transaction (set_many, with and without TTLs) and
 * one per key (set, add), with overwrites in between.  Every value must be
 * the last one stored, the keys in order, the totals and the index exact. */
static void test_new_keys_among_present_ones_go_where_they_belong(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    enum { N = 6000 };
    static lmc_item items[N];
    static char keys[N][16];
    static int last[N]; /* value stored last under key i: -1 none */
    char v[160];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "n%05d", i);
        last[i] = -1;
    }
    /* Every third key first, in key order, so that the others fall between
     * them on every leaf page. */
    int n = 0;
    for (int i = 0; i < N; i += 3) {
        items[n++] = (lmc_item){keys[i], 6, v, 100, 0};
        last[i] = 100;
    }
    ASSERT_OK(lmc_set_many(t->c, items, (size_t)n));
    /* Then a batch in random order: new keys, present ones, half with a
     * TTL, and keys before and after every present one. */
    uint64_t x = 0x2545f4914f6cdd1dULL;
    n = 0;
    for (int j = 0; j < N / 2; j++) {
        x = xorshift(x);
        int i = (int)(x % N);
        int len = 1 + (int)((x >> 32) % 150);
        items[n++] = (lmc_item){keys[i], 6, v, (size_t)len, j % 2 ? 60000 : 0};
        last[i] = len;
    }
    static char first[] = "a", after[] = "z";
    items[n++] = (lmc_item){first, 1, v, 7, 0};
    items[n++] = (lmc_item){after, 1, v, 9, 60000};
    ASSERT_OK(lmc_set_many(t->c, items, (size_t)n));
    /* Then one key per transaction, alternately set and add. */
    for (int j = 0; j < N / 3; j++) {
        x = xorshift(x);
        int i = (int)(x % N);
        int len = 1 + (int)((x >> 32) % 150);
        if (j % 2) {
            int rc = lmc_add(t->c, keys[i], 6, v, (size_t)len, 0);
            assert_int_equal(rc, last[i] < 0 ? LMC_OK : LMC_EXISTS);
            if (rc == LMC_OK)
                last[i] = len;
        } else {
            ASSERT_OK(lmc_set(t->c, keys[i], 6, v, (size_t)len, j % 4 ? 60000 : 0));
            last[i] = len;
        }
    }
    uint64_t present = 2, bytes = 16;
    char buf[160];
    size_t vl;
    for (int i = 0; i < N; i++) {
        int rc = lmc_get(t->c, keys[i], 6, buf, sizeof buf, &vl);
        if (last[i] < 0) {
            assert_int_equal(rc, LMC_NOTFOUND);
            continue;
        }
        ASSERT_OK(rc);
        assert_int_equal(vl, (size_t)last[i]);
        present++;
        bytes += (uint64_t)last[i];
    }
    ASSERT_OK(lmc_get(t->c, "a", 1, buf, sizeof buf, &vl));
    assert_int_equal(vl, 7);
    ASSERT_OK(lmc_get(t->c, "z", 1, buf, sizeof buf, &vl));
    assert_int_equal(vl, 9);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, present);
    assert_int_equal(st.value_bytes, bytes);
    lmc_verify_result r;
    ASSERT_OK(lmc_verify(t->c, NULL, &r));
    assert_int_equal(r.entries, present);
}

/* An overwrite of a present key writes a small entry on the stack first and
 * has LMDB copy it in, and a large one in place (lib/entry.c): values of
 * every size around that limit, growing and shrinking, short and long keys
 * (a long key is stored inside its entry), with and without a TTL.  Every
 * read must give the bytes of the last set, and the totals and the expiry
 * index must stay exact. */
static void test_overwrites_of_every_size_read_back_exactly(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    static const size_t sizes[] = {0,    1,    100,  1900, 1990, 2000, 2010, 2020, 2030,
                                   2040, 2048, 2100, 4000, 9000, 2035, 2000, 3,    0};
    enum { NS = sizeof sizes / sizeof sizes[0], MAXV = 9000 };
    static char v[MAXV], got[MAXV];
    static char longkey[600];
    memset(longkey, 'L', sizeof longkey);
    struct { const char *k; size_t kl; } keys[] = {{"short", 5}, {longkey, sizeof longkey}};
    for (size_t ki = 0; ki < 2; ki++) {
        for (size_t i = 0; i < NS; i++) {
            for (size_t j = 0; j < sizes[i]; j++)
                v[j] = (char)(i * 31 + j * 7 + ki);
            ASSERT_OK(lmc_set(t->c, keys[ki].k, keys[ki].kl, v, sizes[i], i % 3 ? 60000 : 0));
            size_t n = 99;
            ASSERT_OK(lmc_get(t->c, keys[ki].k, keys[ki].kl, got, sizeof got, &n));
            assert_int_equal(n, sizes[i]);
            assert_memory_equal(got, v, sizes[i]);
            lmc_stat st = stats_of(t->c);
            assert_int_equal(st.entries, ki + 1);
            assert_int_equal(st.value_bytes, sizes[i]);
            assert_int_equal(st.entries_with_ttl, i % 3 ? 1 : 0);
        }
        /* The first key stays, with an empty value, beside the second. */
        ASSERT_OK(lmc_set(t->c, keys[ki].k, keys[ki].kl, NULL, 0, 0));
    }
    lmc_verify_result r;
    ASSERT_OK(lmc_verify(t->c, NULL, &r));
    assert_int_equal(r.entries, 2);
}

typedef struct scan_ctx {
    int n;
    int stop_after;
    char last[64];
    int ordered;
} scan_ctx;

static int scan_cb(void *arg, const lmc_value *v)
{
    scan_ctx *s = arg;
    char k[64];
    assert_true(v->klen < sizeof k);
    memcpy(k, v->key, v->klen);
    k[v->klen] = 0;
    if (s->n && strcmp(s->last, k) >= 0)
        s->ordered = 0;
    strcpy(s->last, k);
    s->n++;
    return s->stop_after && s->n == s->stop_after ? 9 : 0;
}

static void test_scan(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    /* More than one scan batch (256) under the prefix, and keys around it. */
    char k[64];
    for (int i = 0; i < 700; i++) {
        snprintf(k, sizeof k, "view//api/%04d", i);
        ASSERT_OK(put_s(t->c, k, "v", 0));
    }
    ASSERT_OK(put_s(t->c, "view//apj", "v", 0));
    ASSERT_OK(put_s(t->c, "view//ap", "v", 0));
    ASSERT_OK(put_s(t->c, "a", "v", 0));
    scan_ctx s = {.ordered = 1};
    ASSERT_OK(lmc_scan(t->c, "view//api/", 10, scan_cb, &s));
    assert_int_equal(s.n, 700);
    assert_int_equal(s.ordered, 1);
    scan_ctx all = {.ordered = 1};
    ASSERT_OK(lmc_scan(t->c, NULL, 0, scan_cb, &all));
    assert_int_equal(all.n, 703);
    assert_int_equal(all.ordered, 1);
    scan_ctx stop = {.ordered = 1, .stop_after = 300};
    assert_int_equal(lmc_scan(t->c, "view//", 6, scan_cb, &stop), 9);
    assert_int_equal(stop.n, 300);
    scan_ctx none = {.ordered = 1};
    ASSERT_OK(lmc_scan(t->c, "zzz", 3, scan_cb, &none));
    assert_int_equal(none.n, 0);
    ASSERT_RC(lmc_scan(t->c, NULL, 3, scan_cb, &none), LMC_EINVAL);
}

static void test_delete_prefix(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    char k[64];
    /* 2500 matches: three transactions of at most 1000 deletions. */
    for (int i = 0; i < 2500; i++) {
        snprintf(k, sizeof k, "view//items/%05d", i);
        ASSERT_OK(put_s(t->c, k, "v", i % 3 ? 0 : 600000));
    }
    ASSERT_OK(put_s(t->c, "view//items", "keep", 0));  /* shorter than the prefix */
    ASSERT_OK(put_s(t->c, "view//itemz/1", "keep", 0)); /* next in order */
    ASSERT_OK(put_s(t->c, "view//item", "keep", 0));
    uint64_t removed = 0;
    ASSERT_OK(lmc_delete_prefix(t->c, "view//items/", 12, &removed));
    assert_int_equal(removed, 2500);
    char buf[8];
    assert_null(get_s(t->c, "view//items/00000", buf, sizeof buf));
    assert_null(get_s(t->c, "view//items/02499", buf, sizeof buf));
    assert_string_equal(get_s(t->c, "view//items", buf, sizeof buf), "keep");
    assert_string_equal(get_s(t->c, "view//itemz/1", buf, sizeof buf), "keep");
    assert_string_equal(get_s(t->c, "view//item", buf, sizeof buf), "keep");
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.entries_with_ttl, 0); /* the index rows went too */
    assert_int_equal(st.counters.prefix_deletes, 1);
    assert_int_equal(st.counters.prefix_deleted_keys, 2500);
    ASSERT_OK(lmc_delete_prefix(t->c, "nothing", 7, NULL));
    ASSERT_RC(lmc_delete_prefix(t->c, "", 0, &removed), LMC_EINVAL);
    ASSERT_RC(lmc_delete_prefix(t->c, NULL, 3, &removed), LMC_EINVAL);
}

static void test_clear(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    char k[32];
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "k%d", i);
        ASSERT_OK(put_s(t->c, k, "value", i % 2 ? 100000 : 0));
    }
    ASSERT_OK(lmc_clear(t->c));
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.entries_with_ttl, 0);
    assert_int_equal(st.key_bytes, 0);
    assert_int_equal(st.value_bytes, 0);
    assert_int_equal(st.counters.clears, 1);
    char buf[8];
    assert_null(get_s(t->c, "k1", buf, sizeof buf));
    ASSERT_OK(put_s(t->c, "after", "x", 0));
    assert_string_equal(get_s(t->c, "after", buf, sizeof buf), "x");
}

/* ------------------------------------------------------------------------ */
/* Stats, errors, version                                                   */
/* ------------------------------------------------------------------------ */

/* Callbacks that stop at once with a value of their own. */
static int many_stop(void *arg, size_t i, const lmc_value *v)
{
    (void)arg;
    (void)i;
    (void)v;
    return 6;
}

static int scan_stop(void *arg, const lmc_value *v)
{
    (void)arg;
    (void)v;
    return 7;
}

/* Leave a message with a code no call below returns, so that a failure
 * that left none of its own would show it. */
static void plant(lmc *c)
{
    ASSERT_RC(lmc_set(c, "", 0, "v", 1, 0), LMC_EINVAL);
    assert_string_equal(lmc_errmsg(c), "LMC_EINVAL: key is empty (keys are 1 to 65536 bytes)");
}

#define EXPECT_MSG(c, want)                                                                   \
    do {                                                                                      \
        const char *m_ = lmc_errmsg(c);                                                       \
        if (strncmp(m_, (want), strlen(want)) != 0 || (!*(want) && *m_))                      \
            fail_msg("line %d: message '%s', want '%s...'", __LINE__, m_, (want));            \
    } while (0)

/*
 * lmc_errmsg describes the last failed call of this thread: every call that
 * fails sets it, an answer (a miss, LMC_EXISTS, LMC_ECHANGED, a callback's
 * value) to "", so that no message of an older call is ever taken for the
 * one just made; a call that succeeds leaves it alone.
 */
static void test_errmsg_describes_the_last_failed_call(void **state)
{
    tctx *t = *state;
    lmc *c = t->c = open_cache(t, 4, 0);
    char buf[4], big[16];
    size_t n;
    void *p;
    uint64_t ver;
    ASSERT_OK(put_s(c, "k", "value", 0));
    ASSERT_OK(put_s(c, "num", "x", 0));
    ASSERT_OK(lmc_get_cas(c, "k", 1, big, sizeof big, &n, &ver));

    /* Answers: an empty message, whatever came before. */
    plant(c);
    ASSERT_RC(lmc_get(c, "nope", 4, buf, sizeof buf, &n), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_exists(c, "nope", 4), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_get_alloc(c, "nope", 4, &p, &n), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_get_view(c, "nope", 4, view_stop, NULL), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_add(c, "k", 1, "v", 1, 0), LMC_EXISTS);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_replace(c, "nope", 4, "v", 1, 0), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_cas(c, "k", 1, "v", 1, 0, ver + 1), LMC_ECHANGED);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_cas(c, "nope", 4, "v", 1, 0, ver), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_delete(c, "nope", 4), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_touch(c, "nope", 4, 1000), LMC_NOTFOUND);
    EXPECT_MSG(c, "");
    /* A callback's value is returned as the call's own. */
    plant(c);
    ASSERT_RC(lmc_get_view(c, "k", 1, view_stop, NULL), 77);
    EXPECT_MSG(c, "");
    lmc_key keys[1] = {{"k", 1}};
    plant(c);
    ASSERT_RC(lmc_get_many(c, keys, 1, many_stop, NULL), 6);
    EXPECT_MSG(c, "");
    plant(c);
    ASSERT_RC(lmc_scan(c, "k", 1, scan_stop, NULL), 7);
    EXPECT_MSG(c, "");

    /* Errors: the message of this call, starting with its code's name. */
    plant(c);
    ASSERT_RC(lmc_get(c, "k", 1, buf, sizeof buf, &n), LMC_ERANGE);
    EXPECT_MSG(c, "LMC_ERANGE: value of 5 bytes does not fit");
    plant(c);
    ASSERT_RC(lmc_incr(c, "num", 3, 1, NULL, 0), LMC_ENOTNUM);
    EXPECT_MSG(c, "LMC_ENOTNUM: ");
    ASSERT_RC(lmc_delete_prefix(c, "", 0, NULL), LMC_EINVAL);
    EXPECT_MSG(c, "LMC_EINVAL: prefix is NULL or empty");

    /* A call that succeeds leaves the message of the last failed one. */
    plant(c);
    ASSERT_OK(lmc_get(c, "num", 3, buf, sizeof buf, &n));
    ASSERT_OK(put_s(c, "other", "v", 0));
    EXPECT_MSG(c, "LMC_EINVAL: key is empty");

    /* It belongs to the handle the failed call was made on. */
    lmc *b = NULL;
    ASSERT_OK(lmc_open(&b, t->path, NULL));
    assert_string_equal(lmc_errmsg(b), "");
    assert_string_equal(lmc_errmsg(NULL), "");
    ASSERT_RC(lmc_get(b, "nope", 4, buf, sizeof buf, &n), LMC_NOTFOUND);
    assert_string_equal(lmc_errmsg(c), ""); /* the last failed call was b's */
    ASSERT_RC(lmc_get(NULL, "k", 1, buf, sizeof buf, &n), LMC_EINVAL);
    EXPECT_MSG(NULL, "LMC_EINVAL: handle is NULL");
    assert_string_equal(lmc_errmsg(b), "");
    lmc_close(b);
}

static void test_stats_count_what_happened(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 4, 0);
    char buf[16];
    ASSERT_OK(put_s(t->c, "aa", "1234", 0));
    ASSERT_OK(put_s(t->c, "bbb", "12", 5000));
    get_s(t->c, "aa", buf, sizeof buf);
    get_s(t->c, "aa", buf, sizeof buf);
    get_s(t->c, "bbb", buf, sizeof buf);
    get_s(t->c, "nope", buf, sizeof buf);
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.counters.sets, 2);
    assert_int_equal(st.counters.bytes_written, 6);
    assert_int_equal(st.counters.hits, 3);
    assert_int_equal(st.counters.misses, 1);
    assert_int_equal(st.counters.gets, 4);
    assert_int_equal(st.counters.bytes_read, 10);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.entries_with_ttl, 1);
    assert_int_equal(st.key_bytes, 5);
    assert_int_equal(st.value_bytes, 6);
    assert_int_equal(st.map_size, 4u << 20);
    assert_int_equal(st.page_size, 4096);
    assert_int_equal(st.total_pages, (4u << 20) / 4096);
    assert_true(st.used_pages > 0 && st.used_pages < st.total_pages);
    assert_true(st.fill > 0 && st.fill < 0.1);
    assert_int_equal(st.processes, 1);
    assert_int_equal(st.readers, 1); /* this thread's reusable read txn */
    assert_int_equal(st.readers_active, 0);
    assert_int_equal(st.max_readers, 1024);
    assert_true(st.last_txnid >= 3);
    size_t np = 0;
    lmc_proc_stat ps[4];
    ASSERT_OK(lmc_stats_processes(t->c, ps, 4, &np));
    assert_int_equal(np, 1);
    assert_int_equal(ps[0].pid, getpid());
    assert_int_equal(ps[0].alive, 1);
    assert_int_equal(ps[0].counters.hits, 3);
    assert_int_equal(ps[0].counters.gets, 4);
    ASSERT_OK(lmc_stats_processes(t->c, NULL, 0, &np));
    assert_int_equal(np, 1);
    ASSERT_RC(lmc_stats(t->c, NULL), LMC_EINVAL);
    ASSERT_RC(lmc_stats_processes(t->c, NULL, 3, &np), LMC_EINVAL);
}

static void test_stat_fields_table(void **state)
{
    (void)state;
    size_t n = 0;
    const lmc_stat_field *f = lmc_stat_fields(&n);
    assert_int_equal(n, LMC__NCTR + 18);
    /* Counters and gauges added later take reserved slots of their own
     * part, so that lmc_stat keeps its size and a new counter moves no
     * gauge (test_abi_layout checks the whole of it). */
    assert_int_equal(sizeof(lmc_stat), (LMC_COUNTER_SLOTS + LMC_GAUGE_SLOTS) * sizeof(uint64_t));
    assert_int_equal(f[n - 1].offset, offsetof(lmc_stat, flush_markers));
    assert_string_equal(f[0].name, "gets");
    assert_int_equal(f[0].kind, LMC_FIELD_COUNTER);
    assert_int_equal(f[0].offset, offsetof(lmc_stat, counters.gets));
    assert_string_equal(f[LMC__NCTR].name, "entries");
    assert_int_equal(f[LMC__NCTR].offset, sizeof(lmc_counters));
    int saw_fill = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(f[i].help && *f[i].help);
        assert_int_equal(f[i].reserved[0] | f[i].reserved[1], 0);
        /* A counter is at the same place in every lmc_counters. */
        if (i < LMC__NCTR)
            assert_int_equal(f[i].offset - offsetof(lmc_stat, counters), i * sizeof(uint64_t));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(f[i].name, f[j].name);
        if (strcmp(f[i].name, "fill") == 0) {
            saw_fill = 1;
            assert_int_equal(f[i].kind, LMC_FIELD_GAUGE_DOUBLE);
            assert_int_equal(f[i].offset, offsetof(lmc_stat, fill));
        } else if (i >= LMC__NCTR) {
            assert_int_equal(f[i].kind, LMC_FIELD_GAUGE_U64);
        }
    }
    assert_true(saw_fill);
    assert_non_null(lmc_stat_fields(NULL));
}

/*
 * The layout of every public struct, as programs built against this version
 * see it.  A change here is an ABI change: the counters may grow only into
 * lmc_counters' reserved tail, gauges into lmc_stat's, and new options and
 * facts into the reserved fields of theirs, so that no field moves.
 */
_Static_assert(sizeof(lmc_options) == 80, "lmc_options");
_Static_assert(offsetof(lmc_options, flags) == 24 && offsetof(lmc_options, reserved) == 32,
               "lmc_options fields");
_Static_assert(sizeof(lmc_counters) == LMC_COUNTER_SLOTS * 8 && LMC_COUNTER_SLOTS == 64,
               "lmc_counters");
_Static_assert(sizeof(lmc_stat) == 768 && offsetof(lmc_stat, entries) == 512, "lmc_stat");
_Static_assert(sizeof(lmc_proc_stat) == 600 && offsetof(lmc_proc_stat, counters) == 24,
               "lmc_proc_stat");
_Static_assert(sizeof(lmc_stat_field) == 48, "lmc_stat_field");
_Static_assert(sizeof(lmc_info) == 128, "lmc_info");
_Static_assert(sizeof(lmc_sweep_options) == 80, "lmc_sweep_options");
_Static_assert(sizeof(lmc_sweep_result) == 104, "lmc_sweep_result");
_Static_assert(sizeof(lmc_verify_options) == 48, "lmc_verify_options");
_Static_assert(sizeof(lmc_verify_result) == 128, "lmc_verify_result");
_Static_assert(sizeof(lmc_value) == 48 && sizeof(lmc_key) == 16 && sizeof(lmc_item) == 40,
               "lmc_value, lmc_key, lmc_item");

static void test_abi_layout(void **state)
{
    (void)state;
    /* Counters are one block at the same place in both structs that carry
     * them; existing counters never move, and new ones take the reserved
     * tail (38 slots after the 26 counters of 0.1). */
    assert_int_equal(offsetof(lmc_counters, gets), 0);
    assert_int_equal(offsetof(lmc_counters, pin_wait_us), 25 * 8);
    assert_int_equal(offsetof(lmc_counters, reserved), LMC__NCOUNTERS * 8);
    /* The gauges start after the whole counters block: a counter added
     * later moves none of them. */
    assert_int_equal(offsetof(lmc_stat, entries), LMC_COUNTER_SLOTS * 8);
    assert_int_equal(offsetof(lmc_stat, fill), LMC_COUNTER_SLOTS * 8 + 9 * 8);
    assert_int_equal(offsetof(lmc_stat, readers_stale), LMC_COUNTER_SLOTS * 8 + 16 * 8);
    assert_int_equal(offsetof(lmc_stat, reserved), LMC_COUNTER_SLOTS * 8 + LMC__NGAUGES * 8);
    /* The per-process table is an array: its stride is part of the ABI. */
    assert_int_equal(offsetof(lmc_proc_stat, reserved), 24 + sizeof(lmc_counters));
    lmc_proc_stat two[2];
    assert_int_equal((char *)&two[1] - (char *)&two[0], 600);
}

static void test_strerror_and_names(void **state)
{
    (void)state;
    const int codes[] = {LMC_NOTFOUND, LMC_EXISTS,   LMC_EINVAL,   LMC_ERANGE,   LMC_ETOOBIG,
                         LMC_ENOSPC,   LMC_ENOTNUM,  LMC_ECHANGED, LMC_EPERM,    LMC_ECORRUPT,
                         LMC_EVERSION, LMC_ENOMEM,   LMC_EIO,      LMC_EREADONLY, LMC_EBUSY,
                         LMC_ENOCACHE};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_true(codes[i] < -4096); /* never a -errno value */
        const char *name = lmc_errname(codes[i]);
        assert_true(strncmp(name, "LMC_", 4) == 0);
        assert_string_not_equal(name, "LMC_UNKNOWN");
        /* The text starts with the name. */
        assert_true(strncmp(lmc_strerror(codes[i]), name, strlen(name)) == 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
    assert_string_equal(lmc_errname(LMC_OK), "LMC_OK");
    assert_string_equal(lmc_errname(12345), "LMC_UNKNOWN");
    assert_non_null(strstr(lmc_strerror(-999999), "unknown"));
    assert_non_null(strstr(lmc_strerror(-ENOENT), "No such file"));
}

static void test_version(void **state)
{
    (void)state;
    int a = -1, b = -1, c = -1;
    const char *s = lmc_version(&a, &b, &c);
    assert_int_equal(a, LMC_VERSION_MAJOR);
    assert_int_equal(b, LMC_VERSION_MINOR);
    assert_int_equal(c, LMC_VERSION_PATCH);
    assert_string_equal(s, LMC_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", a, b, c);
    assert_string_equal(s, want);
    assert_int_equal(LMC_VERSION_NUMBER, a * 10000 + b * 100 + c);
    assert_string_equal(lmc_version(NULL, NULL, NULL), s);
}

static void test_null_handle_everywhere(void **state)
{
    (void)state;
    char buf[4];
    size_t n;
    void *p;
    uint64_t u;
    int64_t r;
    lmc_stat st;
    lmc_info info;
    ASSERT_RC(lmc_set(NULL, "k", 1, "v", 1, 0), LMC_EINVAL);
    ASSERT_RC(lmc_add(NULL, "k", 1, "v", 1, 0), LMC_EINVAL);
    ASSERT_RC(lmc_replace(NULL, "k", 1, "v", 1, 0), LMC_EINVAL);
    ASSERT_RC(lmc_cas(NULL, "k", 1, "v", 1, 0, 1), LMC_EINVAL);
    ASSERT_RC(lmc_get(NULL, "k", 1, buf, 4, &n), LMC_EINVAL);
    ASSERT_RC(lmc_get_cas(NULL, "k", 1, buf, 4, &n, &u), LMC_EINVAL);
    ASSERT_RC(lmc_get_alloc(NULL, "k", 1, &p, &n), LMC_EINVAL);
    ASSERT_RC(lmc_get_view(NULL, "k", 1, view_stop, NULL), LMC_EINVAL);
    ASSERT_RC(lmc_get_many(NULL, NULL, 0, many_cb, NULL), LMC_EINVAL);
    ASSERT_RC(lmc_set_many(NULL, NULL, 0), LMC_EINVAL);
    ASSERT_RC(lmc_scan(NULL, "k", 1, scan_cb, NULL), LMC_EINVAL);
    ASSERT_RC(lmc_delete(NULL, "k", 1), LMC_EINVAL);
    ASSERT_RC(lmc_delete_prefix(NULL, "k", 1, &u), LMC_EINVAL);
    ASSERT_RC(lmc_clear(NULL), LMC_EINVAL);
    ASSERT_RC(lmc_incr(NULL, "k", 1, 1, &r, 0), LMC_EINVAL);
    ASSERT_RC(lmc_touch(NULL, "k", 1, 1), LMC_EINVAL);
    ASSERT_RC(lmc_sweep(NULL, NULL, NULL), LMC_EINVAL);
    ASSERT_RC(lmc_stats(NULL, &st), LMC_EINVAL);
    ASSERT_RC(lmc_stats_processes(NULL, NULL, 0, &n), LMC_EINVAL);
    ASSERT_RC(lmc_info_get(NULL, &info), LMC_EINVAL);
    assert_string_equal(lmc_errmsg(NULL), "LMC_EINVAL: NULL argument");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_with_exact_modes, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_open_group_mode, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_open_bad_arguments, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_open_nocreate_and_rdonly_create_nothing, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_readonly_handle, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_same_path_shares_one_environment, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_existing_cache_keeps_its_map_size, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_set_get_roundtrip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_key_limits, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_value_limits, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_add_replace, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_delete, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_incr, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_cas, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_exists, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_get_alloc, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_get_view, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_get_many, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_callbacks_nest_across_caches, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_set_many_is_all_or_nothing, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_set_many_in_any_order_the_last_of_a_key_wins,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_new_keys_among_present_ones_go_where_they_belong,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_overwrites_of_every_size_read_back_exactly, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_scan, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_delete_prefix, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_clear, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_errmsg_describes_the_last_failed_call, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_stats_count_what_happened, setup_dir, teardown_dir),
        cmocka_unit_test(test_stat_fields_table),
        cmocka_unit_test(test_abi_layout),
        cmocka_unit_test(test_strerror_and_names),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_null_handle_everywhere),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
