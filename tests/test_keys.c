/*
 * test_keys.c - keys of every length from 1 byte to 64 KiB, the long-key
 * encoding (first 448 bytes + 16-byte hash, whole key kept in the value),
 * exact prefix invalidation and scans for prefixes of any length, and
 * entries whose stored bytes are damaged (white-box: written straight into
 * LMDB through the handle's environment).
 */
#include "util.h"

static void test_lengths_around_the_long_key_boundary(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    const size_t lens[] = {1, 2, 446, 447, 448, 449, 463, 464, 465, 511, 512, 4096, 65535, 65536};
    const size_t nl = sizeof lens / sizeof lens[0];
    char *k = malloc(LMC_MAX_KEY);
    assert_non_null(k);
    memset(k, 'q', LMC_MAX_KEY);
    uint64_t key_bytes = 0;
    for (size_t i = 0; i < nl; i++) {
        char v[32];
        int n = snprintf(v, sizeof v, "len=%zu", lens[i]);
        ASSERT_OK(lmc_set(t->c, k, lens[i], v, (size_t)n, 60000));
        key_bytes += lens[i];
    }
    /* Every length is its own entry (keys that are prefixes of each other
     * included) and reads back its own value. */
    for (size_t i = 0; i < nl; i++) {
        char want[32], got[32];
        size_t n = 0;
        int wn = snprintf(want, sizeof want, "len=%zu", lens[i]);
        ASSERT_OK(lmc_get(t->c, k, lens[i], got, sizeof got, &n));
        assert_int_equal(n, (size_t)wn);
        assert_memory_equal(got, want, n);
    }
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, nl);
    assert_int_equal(st.entries_with_ttl, nl); /* 8 + 464 bytes fits an index key */
    assert_int_equal(st.key_bytes, key_bytes);
    for (size_t i = 0; i < nl; i++)
        ASSERT_OK(lmc_delete(t->c, k, lens[i]));
    st = stats_of(t->c);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.key_bytes, 0);
    assert_int_equal(st.entries_with_ttl, 0);
    free(k);
}

static void test_long_keys_differing_after_448_bytes(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    char a[1000], b[1000];
    memset(a, 'p', sizeof a);
    memcpy(b, a, sizeof b);
    b[999] = 'X'; /* only the last byte differs */
    ASSERT_OK(lmc_set(t->c, a, sizeof a, "A", 1, 0));
    ASSERT_OK(lmc_set(t->c, b, sizeof b, "B", 1, 0));
    char got[4];
    size_t n;
    ASSERT_OK(lmc_get(t->c, a, sizeof a, got, sizeof got, &n));
    assert_int_equal(got[0], 'A');
    ASSERT_OK(lmc_get(t->c, b, sizeof b, got, sizeof got, &n));
    assert_int_equal(got[0], 'B');
    ASSERT_OK(lmc_delete(t->c, a, sizeof a));
    ASSERT_RC(lmc_get(t->c, a, sizeof a, got, sizeof got, &n), LMC_NOTFOUND);
    ASSERT_OK(lmc_get(t->c, b, sizeof b, got, sizeof got, &n));
}

/* The keys used by the prefix tests: a 1200-byte base and copies of it with
 * one byte changed at various depths, plus shorter keys. */
#define BASE_LEN 1200
static const size_t change_at[] = {0, 10, 446, 447, 448, 449, 463, 464, 700, 1100, 1199};
#define NCHANGE (sizeof change_at / sizeof change_at[0])
static const size_t short_lens[] = {5, 447, 448, 600};
#define NSHORT (sizeof short_lens / sizeof short_lens[0])

static void make_key(char *k, size_t i)
{
    memset(k, 'b', BASE_LEN);
    if (i < NCHANGE)
        k[change_at[i]] = 'Z';
}

static void put_keyset(lmc *c)
{
    char k[BASE_LEN];
    for (size_t i = 0; i <= NCHANGE; i++) { /* i == NCHANGE: the base itself */
        make_key(k, i);
        ASSERT_OK(lmc_set(c, k, BASE_LEN, "v", 1, i % 2 ? 50000 : 0));
    }
    for (size_t i = 0; i < NSHORT; i++) {
        make_key(k, NCHANGE);
        ASSERT_OK(lmc_set(c, k, short_lens[i], "s", 1, 0));
    }
}

/* How many keys of the set start with the first plen bytes of the base. */
static uint64_t expected_matches(size_t plen)
{
    uint64_t n = 1; /* the base */
    for (size_t i = 0; i < NCHANGE; i++)
        n += change_at[i] >= plen;
    for (size_t i = 0; i < NSHORT; i++)
        n += short_lens[i] >= plen;
    return n;
}

static int count_scan(void *arg, const lmc_value *v)
{
    (void)v;
    (*(uint64_t *)arg)++;
    return 0;
}

static void test_prefix_delete_and_scan_are_exact(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 16, 0);
    const size_t plens[] = {1, 10, 11, 300, 447, 448, 449, 450, 463, 464, 465, 701, 1100, 1101, 1200};
    char base[BASE_LEN];
    make_key(base, NCHANGE);
    const uint64_t total = NCHANGE + 1 + NSHORT;
    for (size_t i = 0; i < sizeof plens / sizeof plens[0]; i++) {
        size_t pl = plens[i];
        ASSERT_OK(lmc_clear(t->c));
        put_keyset(t->c);
        uint64_t want = expected_matches(pl), seen = 0, removed = 0;
        ASSERT_OK(lmc_scan(t->c, base, pl, count_scan, &seen));
        if (seen != want)
            fail_msg("scan of a %zu-byte prefix saw %llu entries, want %llu", pl,
                     (unsigned long long)seen, (unsigned long long)want);
        ASSERT_OK(lmc_delete_prefix(t->c, base, pl, &removed));
        if (removed != want)
            fail_msg("a %zu-byte prefix removed %llu entries, want %llu", pl,
                     (unsigned long long)removed, (unsigned long long)want);
        lmc_stat st = stats_of(t->c);
        assert_int_equal(st.entries, total - want);
        /* Exactly the non-matching keys are left. */
        char k[BASE_LEN];
        for (size_t j = 0; j < NCHANGE; j++) {
            make_key(k, j);
            size_t n;
            int rc = lmc_get(t->c, k, BASE_LEN, NULL, 0, &n);
            assert_int_equal(rc, change_at[j] >= pl ? LMC_NOTFOUND : LMC_ERANGE);
        }
    }
    /* A prefix longer than any key matches nothing, harmlessly. */
    char *huge = calloc(1, LMC_MAX_KEY + 10);
    uint64_t removed = 9;
    ASSERT_OK(lmc_delete_prefix(t->c, huge, LMC_MAX_KEY + 10, &removed));
    assert_int_equal(removed, 0);
    free(huge);
}

/* Rewrite the stored value of key (white-box), through the core's env. */
static void poke_entry(lmc *c, const void *key, size_t klen, const void *data, size_t n)
{
    lmc__core *k = c->core;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(k->env, NULL, 0, &txn), 0);
    MDB_val d = {n, (void *)(uintptr_t)data};
    assert_int_equal(mdb_put(txn, k->dbi_main, &sk.v, &d, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* Copy the stored value of key (white-box). */
static size_t peek_entry(lmc *c, const void *key, size_t klen, void *out, size_t cap)
{
    lmc__core *k = c->core;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn), 0);
    MDB_val d;
    assert_int_equal(mdb_get(txn, k->dbi_main, &sk.v, &d), 0);
    assert_true(d.mv_size <= cap);
    memcpy(out, d.mv_data, d.mv_size);
    mdb_txn_abort(txn);
    return d.mv_size;
}

static void test_long_key_hash_collision_is_a_miss(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    /* Simulate another key stored under the same stored key: keep the
     * stored key of `a` but change the whole key kept in its value. */
    char a[600];
    memset(a, 'c', sizeof a);
    ASSERT_OK(lmc_set(t->c, a, sizeof a, "val", 3, 0));
    unsigned char raw[1024];
    size_t n = peek_entry(t->c, a, sizeof a, raw, sizeof raw);
    assert_int_equal(n, LMC__HDR_SIZE + sizeof a + 3);
    raw[LMC__HDR_SIZE + 599] = 'D'; /* the last byte of the whole key */
    poke_entry(t->c, a, sizeof a, raw, n);
    char got[8];
    size_t gl;
    ASSERT_RC(lmc_get(t->c, a, sizeof a, got, sizeof got, &gl), LMC_NOTFOUND);
    /* Deleting `a` must not remove the other key's entry... */
    ASSERT_RC(lmc_delete(t->c, a, sizeof a), LMC_NOTFOUND);
    assert_int_equal(stats_of(t->c).entries, 1);
    /* ... and setting `a` takes the slot over, as an eviction would. */
    ASSERT_OK(lmc_set(t->c, a, sizeof a, "new", 3, 0));
    ASSERT_OK(lmc_get(t->c, a, sizeof a, got, sizeof got, &gl));
    assert_memory_equal(got, "new", 3);
}

static void test_malformed_entries_read_as_misses(void **state)
{
    tctx *t = *state;
    t->c = open_cache(t, 8, 0);
    ASSERT_OK(put_s(t->c, "m", "fine", 0));
    ASSERT_OK(put_s(t->c, "other", "untouched", 0));
    const unsigned char junk[][30] = {{0}, {0xC1, 0x07}, {0x00, 0x00, 0x00}};
    const size_t jlen[] = {3, 30, 24};
    char buf[32];
    for (size_t i = 0; i < 3; i++) {
        /* Damage an entry the library wrote (a poke of a key that does not
         * exist would add an entry behind the library's entry count). */
        ASSERT_OK(put_s(t->c, "m", "fine", 0));
        poke_entry(t->c, "m", 1, junk[i], jlen[i]);
        uint64_t before = stats_of(t->c).counters.malformed;
        assert_null(get_s(t->c, "m", buf, sizeof buf));
        assert_int_equal(stats_of(t->c).counters.malformed, before + 1);
        int64_t r;
        ASSERT_RC(lmc_incr(t->c, "m", 1, 1, &r, 0), LMC_OK); /* treated as absent */
        assert_int_equal(r, 1);
        poke_entry(t->c, "m", 1, junk[i], jlen[i]);
        ASSERT_RC(lmc_delete(t->c, "m", 1), LMC_NOTFOUND); /* removed, was not live */
        assert_null(get_s(t->c, "m", buf, sizeof buf));
    }
    /* A long-key flag on a short stored key is malformed too. */
    unsigned char hdr[LMC__HDR_SIZE + 4] = {LMC__ENTRY_FORMAT, LMC__EF_LONGKEY};
    ASSERT_OK(put_s(t->c, "m", "fine", 0));
    poke_entry(t->c, "m", 1, hdr, sizeof hdr);
    assert_null(get_s(t->c, "m", buf, sizeof buf));
    ASSERT_OK(put_s(t->c, "m", "again", 0));
    assert_string_equal(get_s(t->c, "m", buf, sizeof buf), "again");
    assert_string_equal(get_s(t->c, "other", buf, sizeof buf), "untouched");
    lmc_stat st = stats_of(t->c);
    assert_int_equal(st.entries, 2);
    /* A damaged entry's size is unknown, so each one overwritten or removed
     * leaves its bytes counted (here at most 2 of "m" per round, 4 rounds):
     * the totals run a little high, never below the live bytes. */
    assert_true(st.key_bytes >= 6 && st.key_bytes <= 6 + 8);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_lengths_around_the_long_key_boundary),
        T(test_long_keys_differing_after_448_bytes),
        T(test_prefix_delete_and_scan_are_exact),
        T(test_long_key_hash_collision_is_a_miss),
        T(test_malformed_entries_read_as_misses),
    };
    return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
