/*
 * attrs.h - the compiler hints every module uses: branch weights for the
 * paths that must stay cheap, and printf checking of message formats.
 */
#ifndef LMC_ATTRS_H
#define LMC_ATTRS_H

#define LMC__LIKELY(x) __builtin_expect(!!(x), 1)
#define LMC__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LMC__PRINTF(f, a) __attribute__((format(printf, f, a)))

#endif /* LMC_ATTRS_H */
