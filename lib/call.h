/*
 * call.h - the entry check of every public call on a handle (call.c): the
 * handle is not NULL, the core is this process's (a child after fork reopens
 * it on its first call), no callback on this cache is running on this
 * thread, and, for the calls that take one, the key is valid and the handle
 * may write.  One copy for every call, so that every call refuses the same
 * things with the same codes and messages.
 *
 * The fast path is inline: three loads and two compares.
 */
#ifndef LMC_CALL_H
#define LMC_CALL_H

#include <stdatomic.h>
#include <stddef.h>

#include "attrs.h"
#include "core.h"
#include "error.h"
#include "handle.h"

/*
 * The callbacks the calling thread is running, innermost first: one frame,
 * on the stack of the call that runs the callback, per lmc_get_view,
 * lmc_get_many or lmc_scan in progress.  A callback may call another cache
 * (whose callback may call a third), so one "current cache" is not enough:
 * every cache whose callback is still running on this thread holds its read
 * transaction open, and a call on it would renew that transaction or write
 * under it.  Callbacks must return normally (no longjmp out of them), which
 * is what pops their frame.
 */
typedef struct lmc__cb_frame {
    const lmc__core *core;
    const struct lmc__cb_frame *outer;
} lmc__cb_frame;

extern _Thread_local const lmc__cb_frame *lmc__tl_callback
    __attribute__((tls_model("initial-exec")));

static inline void lmc__cb_push(lmc__cb_frame *f, const lmc__core *k)
{
    f->core = k;
    f->outer = lmc__tl_callback;
    lmc__tl_callback = f;
}

static inline void lmc__cb_pop(const lmc__cb_frame *f)
{
    lmc__tl_callback = f->outer;
}

/* The slow paths (call.c): LMC_EBUSY with its message if a callback on the
 * handle's cache is running on this thread, else 0; and the message of a
 * bad key. */
int lmc__call_in_callback(const lmc *h);
int lmc__call_bad_key(const lmc *h, const void *key, size_t klen);

/* The check of every call: LMC_EINVAL for a NULL handle, what a reopen after
 * fork returns (it waits at most LMC__REOPEN_LOCK_WAIT_MS for another
 * process's open), LMC_EBUSY from inside a callback on this cache. */
static inline int lmc__call(lmc *h)
{
    if (LMC__UNLIKELY(!h))
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    lmc__core *k = h->core;
    if (LMC__UNLIKELY(atomic_load_explicit(&k->gen, memory_order_acquire) !=
                      atomic_load_explicit(&lmc__fork_gen, memory_order_relaxed))) {
        int rc = lmc__reopen(h, LMC__REOPEN_LOCK_WAIT_MS);
        if (rc)
            return rc;
    }
    if (LMC__UNLIKELY(lmc__tl_callback != NULL))
        return lmc__call_in_callback(h);
    return 0;
}

/* ... of a call on one key: also LMC_EINVAL (NULL or empty key) or
 * LMC_ETOOBIG (longer than LMC_MAX_KEY). */
static inline int lmc__call_key(lmc *h, const void *key, size_t klen)
{
    int rc = lmc__call(h);
    if (LMC__UNLIKELY(rc))
        return rc;
    if (LMC__UNLIKELY(!key || klen - 1 >= LMC_MAX_KEY))
        return lmc__call_bad_key(h, key, klen);
    return 0;
}

/* LMC_EREADONLY for a call that writes through a read-only handle. */
static inline int lmc__writable(const lmc *h)
{
    if (LMC__UNLIKELY(h->rdonly))
        return lmc__err(h, LMC_EREADONLY, "handle of %s is read-only", h->core->path);
    return 0;
}

/* ... of a write of one key: also the value and TTL arguments, and
 * LMC_EREADONLY, in the order every write reports its argument errors. */
static inline int lmc__call_write_key(lmc *c, const void *key, size_t klen, const void *val,
                                      size_t vlen, int64_t ttl_ms)
{
    int rc = lmc__call_key(c, key, klen);
    if (rc)
        return rc;
    if (LMC__UNLIKELY(!val && vlen))
        return lmc__err(c, LMC_EINVAL, "val is NULL but vlen is %zu", vlen);
    if (LMC__UNLIKELY(ttl_ms < LMC_TTL_KEEP))
        return lmc__err(c, LMC_EINVAL, "ttl_ms %lld is negative (use LMC_TTL_DEFAULT, "
                        "LMC_TTL_NEVER, LMC_TTL_KEEP or milliseconds)", (long long)ttl_ms);
    return lmc__writable(c);
}

/* Whether a key argument is valid, without a message: 0 or the code, and
 * *why (for the batch calls, which name the item). */
int lmc__key_problem(const void *key, size_t klen, const char **why);

#endif /* LMC_CALL_H */
