/*
 * ops.c - the other write calls: delete, delete_prefix, clear, incr and
 * touch.  Like the stores (store.c) each is the body of one write
 * transaction run by the write loop (write.c); the range deletes run through
 * the range driver (range.c).
 */
#include "fmacros.h"

#include <string.h>

#include "alloc.h"
#include "call.h"
#include "entry.h"
#include "error.h"
#include "format.h"
#include "gen.h"
#include "range.h"
#include "store.h"
#include "write.h"

int lmc_delete(lmc *c, const void *key, size_t klen)
{
    int rc = lmc__call_write_key(c, key, klen, "", 0, LMC_TTL_NEVER);
    if (rc)
        return rc;
    /* An invalidation: the key's generation goes first, so that a fill of
     * a value read before this delete is refused after it (gen.h). */
    lmc__gen_bump_key(c->core, key, klen);
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    rc = lmc__delete_one(c, &sk, key, klen, NULL, false);
    return rc == LMC_NOTFOUND ? lmc__answer(c, rc) : rc;
}

int lmc_delete_prefix(lmc *c, const void *prefix, size_t plen, uint64_t *removed)
{
    if (removed)
        *removed = 0;
    int rc = lmc__call(c);
    if (rc)
        return rc;
    if (!prefix || plen == 0)
        return lmc__err(c, LMC_EINVAL, "prefix is NULL or empty (use lmc_clear to delete all)");
    if ((rc = lmc__writable(c)))
        return rc;
    /* Which fills the prefix covers, the generations cannot tell: every
     * fill in progress is refused (gen.h). */
    lmc__gen_bump_flush(c->core);
    lmc__count(c->core, LMC__C_prefix_deletes, 1);
    if (plen > LMC_MAX_KEY)
        return 0; /* no key can start with it */
    lmc__range range;
    lmc__range_prefix(&range, prefix, plen);
    lmc__range_del d;
    memset(&d, 0, sizeof d);
    d.ranges = &range;
    d.nranges = 1;
    d.batch = LMC__RANGE_BATCH;
    d.count = LMC__C_prefix_deleted_keys;
    d.leases = true;
    rc = lmc__range_delete(c, &d);
    if (removed)
        *removed = d.removed;
    return rc;
}

int lmc_clear(lmc *c)
{
    int rc = lmc__call(c);
    if (rc)
        return rc;
    if ((rc = lmc__writable(c)))
        return rc;
    return lmc__range_clear(c);
}

/* Parse a decimal int64: optional '-', 1 to 19 digits, nothing else. */
static int parse_int(const unsigned char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (n == i || n - i > 19)
        return -1;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)v;
    }
    return 0;
}

static size_t format_int(char *buf, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t o = 0;
    if (v < 0)
        buf[o++] = '-';
    while (n)
        buf[o++] = tmp[--n];
    return o;
}

typedef struct incr_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    int64_t delta;
    int64_t ttl;
    int64_t result;
} incr_arg;

static int op_incr(lmc__wctx *w, void *p)
{
    incr_arg *a = p;
    lmc__found f;
    int rc = lmc__entry_find(w, a->sk, a->key, a->klen, &f);
    if (rc)
        return rc;
    lmc__wcount(w, LMC__C_incrs, 1);
    int64_t cur = 0;
    uint64_t exp;
    if (f.live) {
        if (parse_int(f.e.val, f.e.vlen, &cur) != 0)
            return lmc__err(w->h, LMC_ENOTNUM, "the value is not a decimal integer");
        exp = f.e.expires_at;
    } else if ((rc = lmc__expiry(w->h, a->ttl, w->now, &exp))) {
        return rc;
    }
    int64_t next;
    if (__builtin_add_overflow(cur, a->delta, &next))
        return lmc__err(w->h, LMC_ERANGE, "%lld + %lld overflows a 64-bit integer",
                        (long long)cur, (long long)a->delta);
    char buf[24];
    size_t n = format_int(buf, next);
    lmc__emeta m = {exp, w->version, 0, 0};
    rc = lmc__entry_store(w, a->sk, a->key, a->klen, buf, n, &m, f.exists ? &f.old : NULL);
    if (rc)
        return rc;
    lmc__wcount(w, LMC__C_sets, 1);
    lmc__wcount(w, LMC__C_bytes_written, n);
    w->written = &a->sk->v;
    a->result = next;
    return 0;
}

int lmc_incr(lmc *c, const void *key, size_t klen, int64_t delta, int64_t *result, int64_t ttl_ms)
{
    int rc = lmc__call_write_key(c, key, klen, "", 0, ttl_ms);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    incr_arg a = {&sk, key, klen, delta, ttl_ms, 0};
    rc = lmc__write(c, op_incr, &a, 0, NULL, NULL);
    if (rc == 0 && result)
        *result = a.result;
    return rc;
}

typedef struct touch_arg {
    const lmc__skey *sk;
    const void *key;
    size_t klen;
    int64_t ttl;
} touch_arg;

static int op_touch(lmc__wctx *w, void *p)
{
    touch_arg *a = p;
    lmc__found f;
    int rc = lmc__entry_find(w, a->sk, a->key, a->klen, &f);
    if (rc)
        return rc;
    lmc__wcount(w, LMC__C_touches, 1);
    if (!f.live)
        return LMC_NOTFOUND;
    uint64_t exp;
    if ((rc = lmc__entry_expiry(w, a->ttl, &f, &exp)))
        return rc;
    if (exp == f.e.expires_at)
        return 0;
    /* The value lives in the page the rewrite replaces: copy it first. */
    unsigned char small[512];
    size_t n = f.e.vlen;
    unsigned char *copy = n <= sizeof small ? small : lmc__malloc(n);
    if (!copy)
        return lmc__err(w->h, LMC_ENOMEM, "out of memory for a value of %zu bytes", n);
    memcpy(copy, f.e.val, n);
    /* A new TTL, and the same value, version, grace and fill time. */
    lmc__emeta m = {exp, f.e.version, f.e.grace_ms, f.e.fill_ms};
    rc = lmc__entry_store(w, a->sk, a->key, a->klen, copy, n, &m, &f.old);
    if (copy != small)
        lmc__free(copy);
    if (rc == 0)
        w->written = &a->sk->v;
    return rc;
}

int lmc_touch(lmc *c, const void *key, size_t klen, int64_t ttl_ms)
{
    int rc = lmc__call_write_key(c, key, klen, "", 0, ttl_ms);
    if (rc)
        return rc;
    lmc__skey sk;
    lmc__skey_make(&sk, key, klen);
    touch_arg a = {&sk, key, klen, ttl_ms};
    rc = lmc__write(c, op_touch, &a, 0, NULL, NULL);
    return rc == LMC_NOTFOUND ? lmc__answer(c, rc) : rc;
}
