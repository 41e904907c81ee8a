/*
 * store.h - what the other write calls share with the stores (store.c).
 */
#ifndef LMC_STORE_H
#define LMC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "handle.h"

/* Delete the entry of key (whose stored key is sk) in a write of its own:
 * only if it has *version when version is not NULL; quiet: an unlink after a
 * failed store, not counted as a delete.  LMC_OK, LMC_NOTFOUND (nothing
 * live was there) or a write's code. */
int lmc__delete_one(lmc *c, const lmc__skey *sk, const void *key, size_t klen,
                    const uint64_t *version, bool quiet);

#endif /* LMC_STORE_H */
