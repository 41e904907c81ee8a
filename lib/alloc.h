/*
 * alloc.h - the library's allocator (alloc.c): every allocation goes through
 * it, so that the tests can make the nth one fail.
 */
#ifndef LMC_ALLOC_H
#define LMC_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

void *lmc__malloc(size_t n);
void *lmc__calloc(size_t n, size_t size);
void lmc__free(void *p);
char *lmc__strdup(const char *s);

/* Tests: fail the nth allocation from now (1 = the next one); with
 * persistent, every allocation after it fails too.  n = 0 disables. */
void lmc__test_fail_alloc(unsigned long n, bool persistent);
unsigned long lmc__test_alloc_count(void);

#endif /* LMC_ALLOC_H */
