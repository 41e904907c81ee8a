/*
 * attrs.h - the compiler hints every module uses: branch weights for the
 * paths that must stay cheap, code kept out of them, and printf checking of
 * message formats.
 */
#ifndef LMC_ATTRS_H
#define LMC_ATTRS_H

#define LMC__LIKELY(x) __builtin_expect(!!(x), 1)
#define LMC__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LMC__PRINTF(f, a) __attribute__((format(printf, f, a)))
/* A function that runs only when something went wrong (an error message, a
 * full map).  GCC then takes every branch that calls it as unlikely and
 * moves those paths out of the function's body (into .text.unlikely), so
 * that the code a get or a set runs sits in fewer cache lines: the whole
 * write path of lmc and LMDB together is close to the 32 KiB of a core's
 * level-1 instruction cache, and every line of error handling inside it
 * pushes some of LMDB's own code out. */
#define LMC__COLD __attribute__((cold))

#endif /* LMC_ATTRS_H */
