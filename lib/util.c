/*
 * util.c - small pieces shared by the rest of the library: the clock (with a
 * hook so that tests can move time instead of sleeping), the key hash, the
 * stored-key and entry encodings, and argument checks.
 */
#include "fmacros.h"

#include <string.h>
#include <time.h>

#include "internal.h"

/* ------------------------------------------------------------------------ */
/* Clock                                                                    */
/* ------------------------------------------------------------------------ */

static int64_t (*_Atomic clock_hook)(void);

void lmc__test_set_clock(int64_t (*fn)(void))
{
    atomic_store(&clock_hook, fn);
}

static int64_t clock_ms(clockid_t id)
{
    int64_t (*hook)(void) = atomic_load_explicit(&clock_hook, memory_order_relaxed);
    if (LMC__UNLIKELY(hook != NULL))
        return hook();
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t lmc__now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int64_t lmc__coarse_ms(void)
{
    return clock_ms(CLOCK_REALTIME_COARSE);
}

/* Elapsed time for budgets and waits: never moved by the test hook, and
 * never by changes of the wall clock. */
uint64_t lmc__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ------------------------------------------------------------------------ */
/* Hashing                                                                  */
/* ------------------------------------------------------------------------ */

/* 64x64 -> 128-bit multiply, folded: the mixing step of the hash. */
static inline uint64_t mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)(r >> 64) ^ (uint64_t)r;
}

/*
 * A fast non-cryptographic 64-bit hash: 16 bytes per step, each folded in
 * with one wide multiply (the construction of wyhash), the tail read as two
 * possibly overlapping words.  About 25 instructions for a 30-byte key,
 * which matters because every get of an entry without TTL hashes its key
 * for the recency array.  Also used, twice with different seeds, for the
 * 16-byte hash of long keys.  Collisions only cost accuracy (recency) or a
 * cache miss (long keys are confirmed against the whole key in the value).
 */
uint64_t lmc__hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL,
                   k2 = 0x8ebc6af09c88c6e3ULL;
    uint64_t h = seed ^ mum(seed ^ k0, (uint64_t)n ^ k1);
    while (n > 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, 8);
        h = mum(a ^ k1, b ^ h);
        s += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n > 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        a = x;
        b = y;
    } else if (n > 0) {
        a = ((uint64_t)s[0] << 16) | ((uint64_t)s[n >> 1] << 8) | s[n - 1];
    }
    return mum(k1 ^ (uint64_t)n, mum(a ^ k1, b ^ h) ^ k2);
}

/* ------------------------------------------------------------------------ */
/* Keys and entries                                                         */
/* ------------------------------------------------------------------------ */

void lmc__skey_make(lmc__skey *s, const void *key, size_t klen)
{
    s->buf[0] = LMC__NS;
    s->v.mv_data = s->buf;
    if (klen < LMC__KEY_INLINE) {
        memcpy(s->buf + 1, key, klen);
        s->v.mv_size = 1 + klen;
        s->is_long = 0;
        return;
    }
    memcpy(s->buf + 1, key, LMC__KEY_INLINE);
    uint64_t a = lmc__hash64(key, klen, 0x6c6d632d6b657931ULL);
    uint64_t b = lmc__hash64(key, klen, 0x6c6d632d6b657932ULL);
    memcpy(s->buf + 1 + LMC__KEY_INLINE, &a, 8);
    memcpy(s->buf + 1 + LMC__KEY_INLINE + 8, &b, 8);
    s->v.mv_size = LMC__KEY_STORED_LONG;
    s->is_long = 1;
}

size_t lmc__entry_size(size_t klen, size_t vlen, int is_long)
{
    return LMC__HDR_SIZE + (is_long ? klen : 0) + vlen;
}

void lmc__entry_write(unsigned char *dst, const void *key, size_t klen, int is_long,
                      const void *val, size_t vlen, uint64_t expires_at, uint64_t version)
{
    uint32_t fkl = is_long ? (uint32_t)klen : 0;
    dst[0] = LMC__ENTRY_FORMAT;
    dst[1] = is_long ? LMC__EF_LONGKEY : 0;
    dst[2] = 0;
    dst[3] = 0;
    memcpy(dst + 4, &fkl, 4);
    memcpy(dst + 8, &expires_at, 8);
    memcpy(dst + 16, &version, 8);
    unsigned char *p = dst + LMC__HDR_SIZE;
    if (is_long) {
        memcpy(p, key, klen);
        p += klen;
    }
    if (vlen)
        memcpy(p, val, vlen);
}

int lmc__entry_parse(const MDB_val *skey, const MDB_val *d, lmc__entry *e)
{
    const unsigned char *p = d->mv_data;
    if (d->mv_size < LMC__HDR_SIZE || p[0] != LMC__ENTRY_FORMAT)
        return -1;
    uint32_t fkl;
    memcpy(&fkl, p + 4, 4);
    memcpy(&e->expires_at, p + 8, 8);
    memcpy(&e->version, p + 16, 8);
    if (p[1] == LMC__EF_LONGKEY) {
        if (skey->mv_size != LMC__KEY_STORED_LONG || fkl < LMC__KEY_INLINE ||
            fkl > LMC_MAX_KEY || d->mv_size - LMC__HDR_SIZE < fkl)
            return -1;
        e->key = p + LMC__HDR_SIZE;
        e->klen = fkl;
    } else {
        if (p[1] != 0 || fkl != 0 || skey->mv_size < 2 || skey->mv_size > LMC__KEY_INLINE)
            return -1;
        e->key = (const unsigned char *)skey->mv_data + 1;
        e->klen = skey->mv_size - 1;
        fkl = 0;
    }
    e->val = p + LMC__HDR_SIZE + fkl;
    e->vlen = d->mv_size - LMC__HDR_SIZE - fkl;
    return 0;
}

int lmc__entry_key_matches(const lmc__entry *e, const void *key, size_t klen)
{
    return e->klen == klen && memcmp(e->key, key, klen) == 0;
}

uint64_t lmc__be64_get(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

size_t lmc__expkey_make(unsigned char *dst, uint64_t expires_at, const MDB_val *skey)
{
    for (int i = 7; i >= 0; i--) {
        dst[i] = (unsigned char)(expires_at & 0xff);
        expires_at >>= 8;
    }
    memcpy(dst + 8, skey->mv_data, skey->mv_size);
    return 8 + skey->mv_size;
}

/* ------------------------------------------------------------------------ */
/* Argument checks                                                          */
/* ------------------------------------------------------------------------ */

int lmc__key_problem(const void *key, size_t klen, const char **why)
{
    if (!key) {
        *why = "key is NULL";
        return LMC_EINVAL;
    }
    if (klen == 0) {
        *why = "key is empty (keys are 1 to 65536 bytes)";
        return LMC_EINVAL;
    }
    if (klen > LMC_MAX_KEY) {
        *why = "key is longer than 65536 bytes";
        return LMC_ETOOBIG;
    }
    return 0;
}

int lmc__check_key(const lmc *h, const void *key, size_t klen)
{
    const char *why;
    int rc = lmc__key_problem(key, klen, &why);
    if (rc == LMC_ETOOBIG)
        return lmc__err(h, rc, "key of %zu bytes is longer than %u", klen, LMC_MAX_KEY);
    return rc ? lmc__err(h, rc, "%s", why) : 0;
}

int lmc__expiry(const lmc *h, int64_t ttl_ms, int64_t now, uint64_t *expires_at)
{
    if (ttl_ms < LMC_TTL_KEEP)
        return lmc__err(h, LMC_EINVAL, "ttl_ms %lld is negative (use LMC_TTL_DEFAULT, "
                        "LMC_TTL_NEVER, LMC_TTL_KEEP or milliseconds)", (long long)ttl_ms);
    if (ttl_ms > LMC_TTL_MAX)
        return lmc__err(h, LMC_EINVAL, "ttl_ms %lld is above LMC_TTL_MAX (2^62 ms, about 146 "
                        "million years)", (long long)ttl_ms);
    if (ttl_ms == LMC_TTL_DEFAULT || ttl_ms == LMC_TTL_KEEP)
        ttl_ms = h->default_ttl_ms; /* at most LMC_TTL_MAX too: lmc_open checks it */
    if (ttl_ms == LMC_TTL_NEVER) {
        *expires_at = 0;
        return 0;
    }
    if (now < 0)
        now = 0;
    /* Only a clock past 2^62 ms (or a test's clock) gets here. */
    if (ttl_ms > INT64_MAX - now)
        return lmc__err(h, LMC_EINVAL, "ttl_ms %lld from now (%lld ms) overflows the clock",
                        (long long)ttl_ms, (long long)now);
    *expires_at = (uint64_t)(now + ttl_ms);
    return 0;
}
