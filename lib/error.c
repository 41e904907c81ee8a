/*
 * error.c - return codes and error messages.
 *
 * The code table lives once, in LMC_ERRNO_MAP in lmc.h; the enum, the names
 * and the texts are generated from it so that they cannot drift apart.  This
 * file also maps LMDB results and errno values to lmc codes (one mapping at
 * the boundary, so lmc callers never see LMDB's or the kernel's code spaces),
 * and keeps the detailed message of the last failed call of each thread,
 * tagged with the handle it was made on (error.h says when it is set).
 */
#include "fmacros.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lmdb.h>

#include "error.h"

_Thread_local lmc__errstate lmc__tl_err __attribute__((tls_model("initial-exec")));

/* The text of the last failed call of this thread that has one; valid while
 * lmc__tl_err.has_text.  Only written when a message is formatted, so it
 * stays out of the initial-exec block every thread of every program that
 * loads lmc pays for. */
static _Thread_local char tl_text[512];

#define LMC__ERR_TEXT(name, value, text) case LMC_##name: return "LMC_" #name ": " text;
#define LMC__ERR_NAME(name, value, text) case LMC_##name: return "LMC_" #name;

const char *lmc_strerror(int rc)
{
    switch (rc) {
    case LMC_OK:
        return "LMC_OK: success";
    LMC_ERRNO_MAP(LMC__ERR_TEXT)
    default:
        break;
    }
    /* -errno values: strerror's text for known values is static in glibc;
     * unknown values fall through to our own static string so that this never
     * returns a buffer that another call could overwrite. */
    if (rc < 0 && rc > -4096) {
        const char *s = strerrordesc_np(-rc);
        if (s)
            return s;
    }
    return "LMC_UNKNOWN: unknown error code";
}

const char *lmc_errname(int rc)
{
    switch (rc) {
    case LMC_OK:
        return "LMC_OK";
    LMC_ERRNO_MAP(LMC__ERR_NAME)
    default:
        return "LMC_UNKNOWN";
    }
}

const char *lmc_errmsg(const lmc *c)
{
    if (lmc__tl_err.owner == c && lmc__tl_err.has_text)
        return tl_text;
    return "";
}

const char *lmc__errmsg_last(void)
{
    return lmc__tl_err.has_text ? tl_text : "";
}

const char *lmc__errmsg_detail(int code)
{
    const char *text = lmc__errmsg_last(), *name = lmc_errname(code);
    size_t n = strlen(name);
    if (strncmp(text, name, n) == 0 && text[n] == ':' && text[n + 1] == ' ')
        return text + n + 2;
    return text;
}

static void err_vset(const lmc *h, int code, const char *fmt, va_list ap)
{
    int n = snprintf(tl_text, sizeof tl_text, "%s: ", lmc_errname(code));
    if (n < 0 || (size_t)n >= sizeof tl_text)
        n = 0;
    vsnprintf(tl_text + n, sizeof tl_text - (size_t)n, fmt, ap);
    lmc__tl_err.owner = h;
    lmc__tl_err.has_text = true;
}

int lmc__err(const lmc *h, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(h, code, fmt, ap);
    va_end(ap);
    return code;
}

int lmc__code_from_mdb(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return LMC_OK;
    case MDB_NOTFOUND:
        return LMC_NOTFOUND;
    case MDB_KEYEXIST:
        return LMC_EXISTS;
    case MDB_MAP_FULL:
        return LMC__EMAPFULL;
    case MDB_TXN_FULL:
    case MDB_PAGE_FULL:
        return LMC_ENOSPC;
    case MDB_READERS_FULL:
        return LMC_EBUSY;
    case MDB_VERSION_MISMATCH:
        return LMC_EVERSION;
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE:
        return LMC_ECORRUPT;
    case MDB_BAD_VALSIZE:
    case MDB_BAD_DBI:
    case EINVAL:
        return LMC_EINVAL;
    case ENOMEM:
        return LMC_ENOMEM;
    case EACCES:
    case EPERM:
    case EROFS:
        return LMC_EPERM;
    case ENOSPC:
    case EDQUOT:
        return LMC_ENOSPC;
    case ENOENT:
        /* A file or directory of the cache is missing: never a miss. */
        return LMC_ENOCACHE;
    default:
        /* MDB_PANIC, MDB_MAP_RESIZED, MDB_BAD_RSLOT, MDB_BAD_TXN, EIO ... */
        return LMC_EIO;
    }
}

int lmc__mdb_err(const lmc *h, int mdb_rc, const char *what)
{
    int code = lmc__code_from_mdb(mdb_rc);
    if (code == LMC__EMAPFULL)
        return code; /* handled by the write loop, which sets its own message */
    return lmc__err(h, code, "%s: %s", what, mdb_strerror(mdb_rc));
}

int lmc__sys_err(const lmc *h, int err, const char *fmt, ...)
{
    int code = lmc__code_from_mdb(err);
    if (code == LMC__EMAPFULL || code == LMC_OK)
        code = LMC_EIO;
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *desc = strerrordesc_np(err);
    return lmc__err(h, code, "%s: %s", what, desc ? desc : "unknown error");
}
