/*
 * internal.h - every module header of lib/, for the white-box tests and
 * benchmarks only.  No file of lib/ includes it: each includes the headers
 * of the modules it uses, and tests/check-layers.sh checks that they form no
 * circle.  Nothing here is exported from the shared library
 * (-fvisibility=hidden); the tests link the static library.
 */
#ifndef LMC_INTERNAL_H
#define LMC_INTERNAL_H

#include "fmacros.h"

#include "alloc.h"
#include "attrs.h"
#include "call.h"
#include "clock.h"
#include "core.h"
#include "dir.h"
#include "entry.h"
#include "error.h"
#include "evict.h"
#include "file.h"
#include "flush.h"
#include "flushtab.h"
#include "format.h"
#include "gen.h"
#include "handle.h"
#include "lmdbmeta.h"
#include "metadb.h"
#include "range.h"
#include "recency.h"
#include "slots.h"
#include "space.h"
#include "txn.h"
#include "verify.h"
#include "vwalk.h"
#include "write.h"

#endif /* LMC_INTERNAL_H */
