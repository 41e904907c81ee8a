/*
 * fmacros.h - feature-test macros, included first by every lib/ source file so
 * that every translation unit sees the same libc declarations (O_NOFOLLOW,
 * O_PATH, CLOCK_REALTIME_COARSE, fallocate, strerrordesc_np and friends, all
 * of which need _GNU_SOURCE on glibc).
 */
#ifndef LMC_FMACROS_H
#define LMC_FMACROS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#endif /* LMC_FMACROS_H */
