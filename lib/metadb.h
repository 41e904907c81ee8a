/*
 * metadb.h - the "meta" database of a cache (metadb.c): its format version,
 * creation time, version base, configured map size, and for a cache on disk
 * the boot that last wrote it and whether it was shut down cleanly.
 */
#ifndef LMC_METADB_H
#define LMC_METADB_H

#include <stdint.h>

#include "handle.h"

/* Create the named databases and the meta data of a new cache. */
int lmc__meta_create(const lmc *h, lmc__core *k, const char *boot);

/* What an existing cache's meta data says about its last shutdown. */
typedef struct lmc__meta_state {
    char boot[40];
    uint8_t clean;
} lmc__meta_state;

/* Open the databases of an existing cache and read its meta data:
 * LMC_ECORRUPT for an LMDB environment that is not an lmc cache,
 * LMC_EVERSION for another entry format. */
int lmc__meta_load(const lmc *h, lmc__core *k, lmc__meta_state *ms);

/* Record the boot that writes the cache now and whether it is clean. */
int lmc__meta_mark(const lmc *h, lmc__core *k, const char *boot, uint8_t clean);

#endif /* LMC_METADB_H */
