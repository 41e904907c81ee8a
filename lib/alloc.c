/*
 * alloc.c - every allocation of the library goes through these wrappers, so
 * that the tests can make the nth allocation fail (SQLite-style fault loops)
 * and check that each call then returns LMC_ENOMEM, leaks nothing and leaves
 * the cache consistent.  LMDB's own allocations are not covered; its failures
 * reach us as ENOMEM results and are mapped like any other.
 */
#include "fmacros.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lmc.h"

#include "alloc.h"
#include "attrs.h"

/* Countdown to the injected failure: 0 = off.  Atomic because tests may
 * allocate from several threads. */
static _Atomic unsigned long fail_countdown;
static _Atomic bool fail_persistent;
static _Atomic bool fail_tripped;
static _Atomic unsigned long alloc_count;

void lmc__test_fail_alloc(unsigned long n, bool persistent)
{
    atomic_store(&fail_tripped, false);
    atomic_store(&fail_persistent, persistent);
    atomic_store(&fail_countdown, n);
}

unsigned long lmc__test_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

/* True when this allocation must fail. */
static bool should_fail(void)
{
    atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    if (LMC__LIKELY(atomic_load_explicit(&fail_countdown, memory_order_relaxed) == 0 &&
                    !atomic_load_explicit(&fail_tripped, memory_order_relaxed)))
        return false;
    if (atomic_load(&fail_tripped))
        return atomic_load(&fail_persistent);
    unsigned long left = atomic_fetch_sub(&fail_countdown, 1);
    if (left == 1) {
        atomic_store(&fail_tripped, true);
        return true;
    }
    return false;
}

void *lmc__malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *lmc__calloc(size_t n, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void lmc__free(void *p)
{
    free(p);
}

char *lmc__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = lmc__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void lmc_free(void *p)
{
    lmc__free(p);
}
