/*
 * clock.h - every clock the library reads (clock.c): wall-clock time for
 * expiry (milliseconds since the Unix epoch, CLOCK_REALTIME, which the tests
 * can replace so that they move time instead of sleeping), a coarse variant
 * for recency, and monotonic time for budgets, waits and the writer gate.
 *
 * lmc__now_ms is inline: a get of an entry with a TTL reads it once.
 */
#ifndef LMC_CLOCK_H
#define LMC_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "attrs.h"

/* The tests' clock, or NULL for the real one (clock.c). */
extern int64_t (*_Atomic lmc__clock_hook)(void);

static inline int64_t lmc__clock_ms(clockid_t id)
{
    int64_t (*hook)(void) = atomic_load_explicit(&lmc__clock_hook, memory_order_relaxed);
    if (LMC__UNLIKELY(hook != NULL))
        return hook();
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wall-clock time in ms: expiry times are compared with it. */
static inline int64_t lmc__now_ms(void)
{
    return lmc__clock_ms(CLOCK_REALTIME);
}

/* The same, a few ms old but cheaper: recency stamps. */
static inline int64_t lmc__coarse_ms(void)
{
    return lmc__clock_ms(CLOCK_REALTIME_COARSE);
}

/* Wall-clock time in ns, never moved by the tests' clock: the base of the
 * version numbers of a new cache. */
int64_t lmc__wall_ns(void);

/* Elapsed time for budgets and waits (CLOCK_MONOTONIC): never moved by the
 * tests' clock, nor by changes of the wall clock. */
uint64_t lmc__mono_us(void);
uint64_t lmc__mono_ns(void);

/* Tests: replace the clock of lmc__now_ms and lmc__coarse_ms (NULL restores
 * the real one). */
void lmc__test_set_clock(int64_t (*fn)(void));

#endif /* LMC_CLOCK_H */
