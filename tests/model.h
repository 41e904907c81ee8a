/*
 * model.h - random sequences of cache operations checked, one by one,
 * against a reference model: a plain array of keys with their values and
 * expiry times, kept by rules written here from the header's documentation
 * and not from the library's code.
 *
 * The keys are chosen to meet every special case of the key encoding at
 * once: short keys, keys of 447 to 465 bytes around the long-key boundary,
 * long keys of up to 64 KiB that share their first 448 bytes (so that only
 * the hash and the whole key kept in the value tell them apart), and keys
 * that are prefixes of each other.  The operations are every write of the
 * contract, with every TTL kind, prefix deletes and scans with prefixes cut
 * from those keys at any length, sweeps, and a fake clock that moves.  The
 * checks cover results, values, the gauges of entries and bytes, and every
 * counter of lmc_stats, which the model counts by the header's definitions.
 *
 * Shared by tests/test_model.c (seeded sequences, run by make test) and
 * tests/fuzz/fuzz_model.c (libFuzzer, make fuzz), so the includer defines
 * MODEL_FAIL(fmt, ...) to report a mismatch and stop.  Everything is static.
 */
#ifndef LMC_TEST_MODEL_H
#define LMC_TEST_MODEL_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "lmc.h"

#ifndef MODEL_FAIL
#error "define MODEL_FAIL(fmt, ...) before including model.h"
#endif

#define MODEL_KEYS 32
#define MODEL_DEFAULT_TTL 5000

/* Where choices come from: a seeded generator, or the bytes of a fuzzer's
 * input (then the run ends when they are used up). */
typedef struct model_src {
    const uint8_t *data;
    size_t len, pos;
    uint64_t rng;
} model_src;

static uint32_t model_next(model_src *s)
{
    if (s->data) {
        uint32_t v = 0;
        for (int i = 0; i < 2; i++)
            v = v << 8 | (s->pos < s->len ? s->data[s->pos++] : 0);
        return v;
    }
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return (uint32_t)(s->rng >> 16);
}

/* A choice in [0, n). */
static uint32_t model_pick(model_src *s, uint32_t n)
{
    return model_next(s) % n;
}

typedef struct mkey {
    unsigned char *k;
    size_t klen;
    bool present; /* stored, live or expired but not yet removed */
    int64_t exp;  /* 0 = never */
    unsigned char *v;
    size_t vlen;
} mkey;

typedef struct model {
    lmc *c;
    mkey keys[MODEL_KEYS];
    unsigned char *buf; /* scratch for values */
    size_t ops;
    lmc_stat base;            /* the counters when the run began */
    uint64_t want[LMC__NCTR]; /* what the run must have added to them */
} model;

/* The fake clock: one per process, as the library's hook is. */
static int64_t model_now_ms = 1800000000000;

static int64_t model_clock(void)
{
    return model_now_ms;
}

static bool mlive(const mkey *m)
{
    return m->present && (m->exp == 0 || m->exp > model_now_ms);
}

static bool mhas_prefix(const mkey *m, const unsigned char *p, size_t plen)
{
    return m->klen >= plen && memcmp(m->k, p, plen) == 0;
}

/* Build the key pool.  Long stems are all the same byte, so every key of
 * 448 bytes or more shares its stored prefix with the others. */
static void model_init(model *m, lmc *c, model_src *s)
{
    static const size_t stems[] = {0, 0, 0, 0, 0, 440, 446, 447, 448, 449, 460, 463, 600, 65500};
    memset(m, 0, sizeof *m);
    m->c = c;
    m->buf = malloc(8192);
    if (lmc_stats(c, &m->base) != 0)
        MODEL_FAIL("lmc_stats: %s", lmc_errmsg(c));
    for (unsigned i = 0; i < MODEL_KEYS; i++) {
        size_t stem = stems[model_pick(s, sizeof stems / sizeof stems[0])];
        size_t tail = 1 + model_pick(s, 4);
        mkey *k = &m->keys[i];
        k->k = malloc(stem + tail + MODEL_KEYS + 1);
        memset(k->k, 'L', stem);
        for (size_t j = 0; j < tail; j++)
            k->k[stem + j] = (unsigned char)"abc"[model_pick(s, 3)];
        k->klen = stem + tail;
        /* Keys of the pool are distinct: lengthen a duplicate until it is
         * not one (the library is checked, not the pool).  The longest stem
         * leaves room for that within LMC_MAX_KEY. */
        for (unsigned j = 0; j < i; j++) {
            if (m->keys[j].klen == k->klen && memcmp(m->keys[j].k, k->k, k->klen) == 0) {
                k->k[k->klen++] = 'z';
                j = (unsigned)-1; /* compare with every key again */
            }
        }
    }
}

static void model_free(model *m)
{
    for (unsigned i = 0; i < MODEL_KEYS; i++) {
        free(m->keys[i].k);
        free(m->keys[i].v);
    }
    free(m->buf);
}

static void mstore(mkey *k, const void *v, size_t vlen, int64_t exp)
{
    free(k->v);
    k->v = malloc(vlen ? vlen : 1);
    memcpy(k->v, v, vlen);
    k->vlen = vlen;
    k->exp = exp;
    k->present = true;
}

static void mremove(mkey *k)
{
    free(k->v);
    k->v = NULL;
    k->vlen = 0;
    k->present = false;
    k->exp = 0;
}

/* The expiry a write gives, by the header's rules for ttl_ms. */
static int64_t mexpiry(const mkey *k, int64_t ttl)
{
    if (ttl == LMC_TTL_KEEP && mlive(k))
        return k->exp;
    if (ttl == LMC_TTL_DEFAULT || ttl == LMC_TTL_KEEP)
        ttl = MODEL_DEFAULT_TTL;
    return ttl == LMC_TTL_NEVER ? 0 : model_now_ms + ttl;
}

static int64_t model_ttl(model_src *s)
{
    switch (model_pick(s, 5)) {
    case 0:
        return LMC_TTL_NEVER;
    case 1:
        return LMC_TTL_DEFAULT;
    case 2:
        return LMC_TTL_KEEP;
    default:
        return 1 + model_pick(s, 3000);
    }
}

/* A value: mostly short random bytes, sometimes decimal text for incr,
 * sometimes large enough for LMDB's overflow pages. */
static size_t model_value(model *m, model_src *s)
{
    static const char *const nums[] = {"0", "12", "-7", "9223372036854775807",
                                       "-9223372036854775808", "99999999999999999999", "1x",
                                       "-", "007"};
    unsigned char *b = m->buf;
    switch (model_pick(s, 6)) {
    case 0: {
        const char *n = nums[model_pick(s, sizeof nums / sizeof nums[0])];
        memcpy(b, n, strlen(n));
        return strlen(n);
    }
    case 1: {
        size_t n = 2000 + model_pick(s, 6000);
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)(i * 31 + m->ops);
        return n;
    }
    default: {
        size_t n = model_pick(s, 48);
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)model_next(s);
        return n;
    }
    }
}

/* The header's rule for incr: optional '-', 1 to 19 digits, an int64. */
static bool mparse_int(const unsigned char *v, size_t n, int64_t *out)
{
    size_t i = n && v[0] == '-';
    if (n == i || n - i > 19)
        return false;
    char tmp[24];
    for (size_t j = i; j < n; j++)
        if (v[j] < '0' || v[j] > '9')
            return false;
    memcpy(tmp, v, n);
    tmp[n] = 0;
    errno = 0;
    long long x = strtoll(tmp, NULL, 10);
    if (errno == ERANGE)
        return false;
    *out = x;
    return true;
}

/* What a read of k counts: a hit with its bytes, or a miss (and an expired
 * one when the entry is still stored). */
static void mcount_read(model *m, const mkey *k)
{
    if (mlive(k)) {
        m->want[LMC__C_hits]++;
        m->want[LMC__C_bytes_read] += k->vlen;
    } else {
        m->want[LMC__C_misses]++;
        m->want[LMC__C_expired] += k->present;
    }
}

static void mcount_store(model *m, size_t vlen)
{
    m->want[LMC__C_sets]++;
    m->want[LMC__C_bytes_written] += vlen;
}

static const char *mname(int rc)
{
    return lmc_errname(rc);
}

#define MODEL_RC(call, want, what)                                                            \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != (want))                                                                    \
            MODEL_FAIL("op %zu %s on key %u (%zu bytes): got %s, want %s (%s)", m->ops, what, \
                       ki, m->keys[ki].klen, mname(rc_), mname(want), lmc_errmsg(m->c));       \
    } while (0)

/* Every key's value and the gauges agree with the model. */
static void model_check_all(model *m)
{
    uint64_t entries = 0, with_ttl = 0, kbytes = 0, vbytes = 0;
    for (unsigned ki = 0; ki < MODEL_KEYS; ki++) {
        mkey *k = &m->keys[ki];
        void *v = NULL;
        size_t n = 0;
        int rc = lmc_get_alloc(m->c, k->k, k->klen, &v, &n);
        mcount_read(m, k);
        if (mlive(k)) {
            MODEL_RC(rc, LMC_OK, "get (check)");
            if (n != k->vlen || memcmp(v, k->v, n) != 0)
                MODEL_FAIL("op %zu: key %u reads %zu bytes, want %zu", m->ops, ki, n, k->vlen);
        } else {
            MODEL_RC(rc, LMC_NOTFOUND, "get (check)");
        }
        lmc_free(v);
        if (k->present) {
            entries++;
            with_ttl += k->exp != 0;
            kbytes += k->klen;
            vbytes += k->vlen;
        }
    }
    lmc_stat st;
    if (lmc_stats(m->c, &st) != 0)
        MODEL_FAIL("lmc_stats: %s", lmc_errmsg(m->c));
    if (st.entries != entries || st.entries_with_ttl != with_ttl || st.key_bytes != kbytes ||
        st.value_bytes != vbytes)
        MODEL_FAIL("op %zu: stats say %" PRIu64 " entries (%" PRIu64 " with TTL), %" PRIu64
                   " key and %" PRIu64 " value bytes; the model %" PRIu64 " (%" PRIu64
                   "), %" PRIu64 ", %" PRIu64,
                   m->ops, st.entries, st.entries_with_ttl, st.key_bytes, st.value_bytes,
                   entries, with_ttl, kbytes, vbytes);
    m->want[LMC__C_gets] = m->want[LMC__C_hits] + m->want[LMC__C_misses];
#define MODEL_CMP(name, help)                                                                 \
    if (st.counters.name - m->base.counters.name != m->want[LMC__C_##name])                  \
        MODEL_FAIL("op %zu: counter %s went up by %" PRIu64 ", the model counted %" PRIu64,    \
                   m->ops, #name, st.counters.name - m->base.counters.name,                    \
                   m->want[LMC__C_##name]);
    LMC_COUNTERS(MODEL_CMP)
#undef MODEL_CMP
}

typedef struct scan_seen {
    model *m;
    const unsigned char *p;
    size_t plen;
    unsigned count;
    bool seen[MODEL_KEYS];
} scan_seen;

static int model_scan_cb(void *arg, const lmc_value *e)
{
    scan_seen *ss = arg;
    model *m = ss->m;
    for (unsigned i = 0; i < MODEL_KEYS; i++) {
        mkey *k = &m->keys[i];
        if (k->klen == e->klen && memcmp(k->k, e->key, e->klen) == 0) {
            if (ss->seen[i])
                MODEL_FAIL("op %zu: scan returned key %u twice", m->ops, i);
            if (!mlive(k) || !mhas_prefix(k, ss->p, ss->plen))
                MODEL_FAIL("op %zu: scan returned key %u, which is not live under the prefix",
                           m->ops, i);
            if (e->len != k->vlen || memcmp(e->data, k->v, e->len) != 0 ||
                e->expires_at_ms != k->exp)
                MODEL_FAIL("op %zu: scan returned a wrong value or expiry for key %u", m->ops, i);
            ss->seen[i] = true;
            ss->count++;
            return 0;
        }
    }
    MODEL_FAIL("op %zu: scan returned a key (%zu bytes) that was never stored", m->ops, e->klen);
    return 1;
}

/* One random operation, checked. */
static void model_step(model *m, model_src *s)
{
    unsigned ki = model_pick(s, MODEL_KEYS);
    mkey *k = &m->keys[ki];
    unsigned op = model_pick(s, 16);
    m->ops++;
    switch (op) {
    case 0:
    case 1:
    case 2: { /* set */
        size_t n = model_value(m, s);
        int64_t ttl = model_ttl(s);
        int64_t exp = mexpiry(k, ttl);
        MODEL_RC(lmc_set(m->c, k->k, k->klen, m->buf, n, ttl), LMC_OK, "set");
        mstore(k, m->buf, n, exp);
        mcount_store(m, n);
        break;
    }
    case 3: { /* add */
        size_t n = model_value(m, s);
        int64_t ttl = model_ttl(s);
        m->want[LMC__C_adds]++;
        if (mlive(k)) {
            MODEL_RC(lmc_add(m->c, k->k, k->klen, m->buf, n, ttl), LMC_EXISTS, "add");
            m->want[LMC__C_add_conflicts]++;
        } else {
            int64_t exp = mexpiry(k, ttl);
            MODEL_RC(lmc_add(m->c, k->k, k->klen, m->buf, n, ttl), LMC_OK, "add");
            mstore(k, m->buf, n, exp);
            mcount_store(m, n);
        }
        break;
    }
    case 4: { /* replace */
        size_t n = model_value(m, s);
        int64_t ttl = model_ttl(s);
        if (!mlive(k)) {
            MODEL_RC(lmc_replace(m->c, k->k, k->klen, m->buf, n, ttl), LMC_NOTFOUND, "replace");
        } else {
            int64_t exp = mexpiry(k, ttl);
            MODEL_RC(lmc_replace(m->c, k->k, k->klen, m->buf, n, ttl), LMC_OK, "replace");
            mstore(k, m->buf, n, exp);
            mcount_store(m, n);
        }
        break;
    }
    case 5: { /* get */
        size_t n = 0;
        int rc = lmc_get(m->c, k->k, k->klen, m->buf, 8192, &n);
        mcount_read(m, k);
        if (mlive(k)) {
            MODEL_RC(rc, LMC_OK, "get");
            if (n != k->vlen || memcmp(m->buf, k->v, n) != 0)
                MODEL_FAIL("op %zu: get of key %u returned a wrong value", m->ops, ki);
        } else {
            MODEL_RC(rc, LMC_NOTFOUND, "get");
        }
        break;
    }
    case 6: { /* delete: an expired entry is removed but reported absent */
        MODEL_RC(lmc_delete(m->c, k->k, k->klen), mlive(k) ? LMC_OK : LMC_NOTFOUND, "delete");
        m->want[LMC__C_deletes] += mlive(k);
        mremove(k);
        break;
    }
    case 7: { /* incr */
        int64_t delta = (int64_t)model_pick(s, 2001) - 1000, cur = 0, got = 0;
        int64_t ttl = model_ttl(s);
        int want = LMC_OK;
        int64_t exp = mlive(k) ? k->exp : mexpiry(k, ttl);
        if (mlive(k) && !mparse_int(k->v, k->vlen, &cur))
            want = LMC_ENOTNUM;
        else if (__builtin_add_overflow(cur, delta, &cur))
            want = LMC_ERANGE;
        MODEL_RC(lmc_incr(m->c, k->k, k->klen, delta, &got, ttl), want, "incr");
        m->want[LMC__C_incrs]++;
        if (want == LMC_OK) {
            if (got != cur)
                MODEL_FAIL("op %zu: incr of key %u gave %" PRId64 ", want %" PRId64, m->ops, ki,
                           got, cur);
            char txt[24];
            int tn = snprintf(txt, sizeof txt, "%" PRId64, cur);
            mstore(k, txt, (size_t)tn, exp);
            mcount_store(m, (size_t)tn);
        }
        break;
    }
    case 8: { /* touch */
        int64_t ttl = model_ttl(s);
        m->want[LMC__C_touches]++;
        if (!mlive(k)) {
            MODEL_RC(lmc_touch(m->c, k->k, k->klen, ttl), LMC_NOTFOUND, "touch");
        } else {
            MODEL_RC(lmc_touch(m->c, k->k, k->klen, ttl), LMC_OK, "touch");
            k->exp = mexpiry(k, ttl);
        }
        break;
    }
    case 9: { /* compare-and-swap, with the right version and a wrong one */
        uint64_t ver = 0;
        size_t n = 0;
        int rc = lmc_get_cas(m->c, k->k, k->klen, m->buf, 8192, &n, &ver);
        MODEL_RC(rc, mlive(k) ? LMC_OK : LMC_NOTFOUND, "get_cas");
        mcount_read(m, k);
        size_t vn = model_value(m, s);
        int64_t ttl = model_ttl(s);
        if (!mlive(k)) {
            MODEL_RC(lmc_cas(m->c, k->k, k->klen, m->buf, vn, ttl, ver), LMC_NOTFOUND, "cas");
            m->want[LMC__C_cas]++;
            break;
        }
        MODEL_RC(lmc_cas(m->c, k->k, k->klen, m->buf, vn, ttl, ver + 1), LMC_ECHANGED,
                 "cas (stale)");
        int64_t exp = mexpiry(k, ttl);
        MODEL_RC(lmc_cas(m->c, k->k, k->klen, m->buf, vn, ttl, ver), LMC_OK, "cas");
        mstore(k, m->buf, vn, exp);
        m->want[LMC__C_cas] += 2;
        m->want[LMC__C_cas_conflicts]++;
        mcount_store(m, vn);
        break;
    }
    case 10: { /* delete_prefix, the prefix cut from a key at any length */
        size_t plen = 1 + model_pick(s, (uint32_t)k->klen);
        unsigned char *p = malloc(plen);
        memcpy(p, k->k, plen);
        uint64_t want = 0, got = 0;
        for (unsigned i = 0; i < MODEL_KEYS; i++)
            want += m->keys[i].present && mhas_prefix(&m->keys[i], p, plen);
        MODEL_RC(lmc_delete_prefix(m->c, p, plen, &got), LMC_OK, "delete_prefix");
        if (got != want)
            MODEL_FAIL("op %zu: delete_prefix of %zu bytes of key %u removed %" PRIu64
                       ", want %" PRIu64, m->ops, plen, ki, got, want);
        m->want[LMC__C_prefix_deletes]++;
        m->want[LMC__C_prefix_deleted_keys] += want;
        for (unsigned i = 0; i < MODEL_KEYS; i++)
            if (mhas_prefix(&m->keys[i], p, plen))
                mremove(&m->keys[i]);
        free(p);
        break;
    }
    case 11: { /* scan */
        size_t plen = model_pick(s, (uint32_t)k->klen + 1);
        scan_seen ss = {m, k->k, plen, 0, {false}};
        MODEL_RC(lmc_scan(m->c, k->k, plen, model_scan_cb, &ss), LMC_OK, "scan");
        unsigned want = 0;
        for (unsigned i = 0; i < MODEL_KEYS; i++)
            want += mlive(&m->keys[i]) && mhas_prefix(&m->keys[i], k->k, plen);
        if (ss.count != want)
            MODEL_FAIL("op %zu: scan of %zu bytes of key %u found %u, want %u", m->ops, plen, ki,
                       ss.count, want);
        break;
    }
    case 12: { /* set_many of two or three keys, later items seeing earlier ones */
        lmc_item items[3];
        unsigned char *vals[3];
        unsigned idx[3], n = 2 + model_pick(s, 2);
        for (unsigned j = 0; j < n; j++) {
            idx[j] = model_pick(s, MODEL_KEYS);
            size_t vn = model_value(m, s);
            vals[j] = malloc(vn ? vn : 1);
            memcpy(vals[j], m->buf, vn);
            items[j] = (lmc_item){m->keys[idx[j]].k, m->keys[idx[j]].klen, vals[j], vn,
                                  model_ttl(s)};
        }
        MODEL_RC(lmc_set_many(m->c, items, n), LMC_OK, "set_many");
        for (unsigned j = 0; j < n; j++) {
            mkey *t = &m->keys[idx[j]];
            mstore(t, vals[j], items[j].vlen, mexpiry(t, items[j].ttl_ms));
            mcount_store(m, items[j].vlen);
            free(vals[j]);
        }
        break;
    }
    case 13: { /* a sweep removes exactly the expired entries */
        uint64_t want = 0;
        for (unsigned i = 0; i < MODEL_KEYS; i++)
            want += m->keys[i].present && !mlive(&m->keys[i]);
        lmc_sweep_options o;
        memset(&o, 0, sizeof o);
        o.flags = LMC_SWEEP_NOEVICT;
        lmc_sweep_result r;
        MODEL_RC(lmc_sweep(m->c, &o, &r), LMC_OK, "sweep");
        if (r.expired != want)
            MODEL_FAIL("op %zu: sweep removed %" PRIu64 ", want %" PRIu64, m->ops, r.expired,
                       want);
        m->want[LMC__C_sweeps]++;
        m->want[LMC__C_evictions_expired] += want;
        for (unsigned i = 0; i < MODEL_KEYS; i++)
            if (m->keys[i].present && !mlive(&m->keys[i]))
                mremove(&m->keys[i]);
        break;
    }
    case 14: /* time passes: to the very millisecond a key expires (the
              * boundary, where it is no longer live), or past many at once */
        if (mlive(k) && k->exp && model_pick(s, 2) == 0)
            model_now_ms = k->exp - (int64_t)model_pick(s, 2);
        else
            model_now_ms += model_pick(s, 8) == 0 ? 4000 : model_pick(s, 400);
        break;
    default:
        if (model_pick(s, 64) == 0) { /* now and then, clear everything */
            MODEL_RC(lmc_clear(m->c), LMC_OK, "clear");
            m->want[LMC__C_clears]++;
            for (unsigned i = 0; i < MODEL_KEYS; i++)
                mremove(&m->keys[i]);
        } else {
            model_check_all(m);
        }
        break;
    }
}

#endif
