/*
 * clock.c - the clocks of clock.h, and the tests' hook that replaces the
 * wall clock, so that TTL tests (forked children included, through a clock
 * in shared memory of their own) move time instead of sleeping.
 */
#include "fmacros.h"

#include <time.h>

#include "clock.h"

int64_t (*_Atomic lmc__clock_hook)(void);

void lmc__test_set_clock(int64_t (*fn)(void))
{
    atomic_store(&lmc__clock_hook, fn);
}

int64_t lmc__wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t lmc__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t lmc__mono_us(void)
{
    return lmc__mono_ns() / 1000u;
}
