/*
 * verify.h - the tests' hook into lmc_verify (verify.c).
 */
#ifndef LMC_VERIFY_H
#define LMC_VERIFY_H

#include <stdbool.h>

/* Tests: make the checking child crash before it reports. */
void lmc__test_verify_crash(bool on);

#endif /* LMC_VERIFY_H */
