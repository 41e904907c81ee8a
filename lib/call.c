/*
 * call.c - the slow paths of the entry check of call.h, and the frames of
 * the callbacks running on each thread.
 */
#include "fmacros.h"

#include "call.h"

_Thread_local const lmc__cb_frame *lmc__tl_callback __attribute__((tls_model("initial-exec")));

/* Called when this thread runs at least one callback: refuse a call on any
 * cache whose callback is among them.  Its read transaction is open on this
 * thread for the callback's sake: a read would renew it (LMDB refuses:
 * EINVAL) and a write would change the cache under a snapshot the callback
 * is still looking at. */
int lmc__call_in_callback(const lmc *h)
{
    for (const lmc__cb_frame *f = lmc__tl_callback; f; f = f->outer)
        if (f->core == h->core)
            return lmc__err(h, LMC_EBUSY, "call on %s from inside one of its callbacks "
                            "(lmc_get_view, lmc_get_many or lmc_scan) on this thread; "
                            "finish the callback first", h->core->path);
    return 0;
}

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

int lmc__call_bad_key(const lmc *h, const void *key, size_t klen)
{
    const char *why;
    int rc = lmc__key_problem(key, klen, &why);
    if (rc == LMC_ETOOBIG)
        return lmc__err(h, rc, "key of %zu bytes is longer than %u", klen, LMC_MAX_KEY);
    return rc ? lmc__err(h, rc, "%s", why) : 0;
}
