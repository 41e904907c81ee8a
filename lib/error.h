/*
 * error.h - lmc's side of every failure (error.c): the detailed message of
 * the last error of each thread, tagged with the handle it is about, and the
 * one mapping of LMDB's and the kernel's codes to lmc's.
 */
#ifndef LMC_ERROR_H
#define LMC_ERROR_H

#include "attrs.h"
#include "lmc.h"

/* Internal only: a write found the map full; the write loop finds out why
 * and retries.  Never returned to users. */
#define LMC__EMAPFULL (-33100)

/* Record a message for (h, this thread) and return code; h may be NULL. */
int lmc__err(const lmc *h, int code, const char *fmt, ...) LMC__PRINTF(3, 4);
/* Map an LMDB result to an lmc code with a message naming the call
 * (MDB_MAP_FULL becomes LMC__EMAPFULL, without a message). */
int lmc__mdb_err(const lmc *h, int mdb_rc, const char *what);
/* Map an errno value to an lmc code with a message. */
int lmc__sys_err(const lmc *h, int err, const char *fmt, ...) LMC__PRINTF(3, 4);
int lmc__code_from_mdb(int mdb_rc);
/* The last message of this thread, whatever handle it was about. */
const char *lmc__errmsg_last(void);
/* The last message of this thread without its leading "LMC_NAME: ", when it
 * is about code: for a message that wraps another one. */
const char *lmc__errmsg_detail(int code);

#endif /* LMC_ERROR_H */
