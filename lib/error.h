/*
 * error.h - lmc's side of every failure (error.c): the detailed message of
 * the last failed call of each thread, tagged with the handle it was made
 * on, and the one mapping of LMDB's and the kernel's codes to lmc's.
 *
 * Every call that fails sets the message, so that lmc_errmsg describes the
 * failed call just made and never an older one: an error with its text
 * (lmc__err and the mappings below), an answer (a miss, LMC_EXISTS,
 * LMC_ECHANGED, a callback's value) with none (lmc__answer).  A call that
 * succeeds leaves the message alone, so that a hit writes nothing.
 */
#ifndef LMC_ERROR_H
#define LMC_ERROR_H

#include <stdbool.h>

#include "attrs.h"
#include "lmc.h"

/* Which failed call the message of this thread describes: the handle it was
 * made on (NULL for lmc_open and for a NULL handle), and whether it left a
 * text (error.c keeps it).  initial-exec, like the callback stack of
 * call.h, so that recording an answer is two plain stores even in the
 * shared library. */
typedef struct lmc__errstate {
    const lmc *owner;
    bool has_text;
} lmc__errstate;

extern _Thread_local lmc__errstate lmc__tl_err __attribute__((tls_model("initial-exec")));

/* The failed call on h is an answer that needs no message (a miss, an add
 * that found a live entry, a cas that lost, a callback's value): record it
 * with an empty message, no formatting, and return code.  Cheap enough for
 * the miss of a get. */
static inline int lmc__answer(const lmc *h, int code)
{
    lmc__tl_err.owner = h;
    lmc__tl_err.has_text = false;
    return code;
}

/* Internal only: a write found the map full; the write loop finds out why
 * and retries.  Never returned to users. */
#define LMC__EMAPFULL (-33100)

/* Record the message of a failed call on h (may be NULL) for this thread,
 * "LMC_NAME: " and the text, and return code. */
int lmc__err(const lmc *h, int code, const char *fmt, ...) LMC__PRINTF(3, 4) LMC__COLD;
/* Map an LMDB result to an lmc code with a message naming the call
 * (MDB_MAP_FULL becomes LMC__EMAPFULL, without a message). */
int lmc__mdb_err(const lmc *h, int mdb_rc, const char *what) LMC__COLD;
/* Map an errno value to an lmc code with a message. */
int lmc__sys_err(const lmc *h, int err, const char *fmt, ...) LMC__PRINTF(3, 4) LMC__COLD;
int lmc__code_from_mdb(int mdb_rc);
/* The message of the last failed call of this thread, whatever handle it
 * was made on; "" for an answer. */
const char *lmc__errmsg_last(void);
/* The last message of this thread without its leading "LMC_NAME: ", when it
 * is about code: for a message that wraps another one. */
const char *lmc__errmsg_detail(int code);

#endif /* LMC_ERROR_H */
