/*
 * vwalk.h - the page walk of lmc_verify (vwalk.c), run in the child that
 * lmc_verify forks.
 */
#ifndef LMC_VWALK_H
#define LMC_VWALK_H

#include <stddef.h>
#include <stdint.h>

#include "lmc.h"

/* Walk the snapshot whose meta page (a copy) is meta, in the data file mapped
 * read-only at map: pages 0 .. last_pg of psize bytes, every one of them
 * inside the map.  Fills res.  Returns LMC_OK, LMC_ECORRUPT with what is
 * wrong in msg, or LMC_ENOMEM. */
int lmc__vwalk(const unsigned char *map, uint64_t psize, uint64_t last_pg,
               const unsigned char *meta, lmc_verify_result *res, char *msg, size_t cap);

#endif /* LMC_VWALK_H */
