/*
 * _lmc.c - the CPython extension module behind the `lmc` Python package.
 *
 * It exposes one class, lmc.Cache, a thin wrapper over an lmc handle
 * (include/lmc.h), and the lmc.Error exception hierarchy.  It is written in C
 * rather than ctypes or cffi because a cache hit must stay cheap: a Python
 * web worker calls get() on every request, and the C library answers a hit in
 * well under a microsecond, so any per-call marshalling layer would dominate.
 * The extension links liblmc.a statically, so the module has no runtime
 * dependency on liblmc.so.
 *
 * Conventions of the Python API (documented for users in python/README.md):
 * - Keys are bytes (any bytes-like object) or str, which is encoded as UTF-8.
 *   Values are bytes-like objects going in and bytes coming out.
 * - Timeouts are in seconds (int or float): None means the handle's default,
 *   0 means never expire, a positive value is rounded up to whole
 *   milliseconds (so that a tiny positive timeout never turns into "never").
 * - A miss returns None (or the caller's default) and never raises.  Errors
 *   raise a subclass of lmc.Error carrying the code, its name and the
 *   library's detailed message.
 *
 * The GIL: every call that can wait (all writes, which take LMDB's writer
 * mutex, plus open, close, sweep, delete_prefix, flush_prefix, clear and
 * stats) runs with the GIL released, so other Python threads keep running
 * while this one waits for another process.  Reads keep the GIL: a hit
 * never blocks (LMDB readers take no lock on the hot path), and
 * measurement showed that
 * releasing and re-taking the GIL, plus the extra copy needed because a
 * Python object cannot be built without it, makes a get 26-30% slower in one
 * thread and brings no consistent gain with several (bench/python_bench.py,
 * numbers in bench/RESULTS-python.md).  Holding the GIL also lets get() build
 * the result bytes directly from the shared map inside the read transaction
 * (lmc_get_view), so a hit copies the value exactly once.
 *
 * Lifetime: a Cache may be closed while other threads use it.  Calls that
 * run without the GIL count themselves in `busy`; close() refuses with
 * lmc.BusyError while any is running, so the handle is never freed under a
 * running call.  After fork() the handle keeps working in the child (the
 * library reopens it on first use, or when reopen_after_fork() asks) and a
 * busy count inherited from threads that do not exist in the child is
 * forgotten.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lmc.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)

/* CPython before 3.13 declares the keyword list of
 * PyArg_ParseTupleAndKeywords as char **, which -Wwrite-strings flags for
 * string literals.  The strings are never written, so the warning is silenced
 * for exactly that declaration. */
#define KWLIST(...)                                                        \
    _Pragma("GCC diagnostic push")                                         \
    _Pragma("GCC diagnostic ignored \"-Wdiscarded-qualifiers\"")            \
    static char *kwlist[] = {__VA_ARGS__, NULL};                           \
    _Pragma("GCC diagnostic pop")

/* A callback of ours failed with a Python exception set.  lmc returns a
 * callback's non-zero value unchanged and its own codes are negative, so a
 * positive value cannot be confused with an lmc code. */
#define CB_PYERR 1
/* A scan callback asks to stop early without an error. */
#define CB_STOP 2

/* ------------------------------------------------------------------------ */
/* Exceptions                                                               */
/* ------------------------------------------------------------------------ */

static PyObject *Error;

/*
 * The exception class raised for each lmc code.  Codes that describe a bad
 * argument also derive from ValueError (or OverflowError, MemoryError), so
 * that generic Python error handling keeps working; every class derives from
 * lmc.Error, directly or through the class of another code (parent, which
 * must come earlier in the table).  Codes not listed raise lmc.Error itself.
 */
static struct errclass {
    int code;
    const char *name; /* attribute name in the module */
    PyObject **extra_base;
    const char *doc;
    PyObject *cls;
    int parent; /* the code whose class this one derives from; 0: lmc.Error */
} errclasses[] = {
    {LMC_EINVAL, "InvalidArgumentError", &PyExc_ValueError,
     "An argument was rejected by the library (LMC_EINVAL), e.g. an empty key.", NULL},
    {LMC_ETOOBIG, "TooBigError", &PyExc_ValueError,
     "The key is longer than 65536 bytes, or the entry can never fit (LMC_ETOOBIG).", NULL},
    {LMC_ENOTNUM, "NotANumberError", &PyExc_ValueError,
     "incr() found a value that is not a decimal integer (LMC_ENOTNUM).", NULL},
    {LMC_ERANGE, "RangeError", &PyExc_OverflowError,
     "incr() would overflow a signed 64-bit integer (LMC_ERANGE).", NULL},
    {LMC_ENOMEM, "OutOfMemoryError", &PyExc_MemoryError, "Out of memory (LMC_ENOMEM).", NULL},
    {LMC_ENOSPC, "NoSpaceError", NULL,
     "The cache is full even after eviction, or the filesystem cannot hold map_size "
     "(LMC_ENOSPC).", NULL},
    {LMC_EPERM, "UnsafePathError", NULL,
     "The cache path is a symlink, owned by another user or writable by others (LMC_EPERM).",
     NULL},
    {LMC_ECORRUPT, "CorruptError", NULL,
     "The files are not an lmc cache or are damaged (LMC_ECORRUPT); reset=True recreates it.",
     NULL},
    {LMC_EVERSION, "VersionError", NULL,
     "The cache was written by an incompatible format version (LMC_EVERSION).", NULL},
    {LMC_EREADONLY, "ReadOnlyError", NULL, "The cache was opened with readonly=True "
     "(LMC_EREADONLY).", NULL},
    {LMC_EBUSY, "BusyError", NULL,
     "The reader table is full, or the handle is in use by another thread (LMC_EBUSY).", NULL},
    {LMC_NOTFOUND, "NotFoundError", NULL,
     "No live entry (LMC_NOTFOUND).  Misses return None or a default and never raise.  "
     "NoCacheError derives from it, so that code written when open raised NotFoundError "
     "for a missing cache keeps working.", NULL},
    /* Also a FileNotFoundError: what a missing path is to Python code. */
    {LMC_ENOCACHE, "NoCacheError", &PyExc_FileNotFoundError,
     "There is no cache at the path (LMC_ENOCACHE from open with create=False or "
     "readonly=True, or a creating open whose parent directory is missing).", NULL,
     LMC_NOTFOUND},
};
#define N_ERRCLASSES (sizeof errclasses / sizeof errclasses[0])

/*
 * Raise the exception of code rc.  detail is the library's message
 * (lmc_errmsg), read by the caller right after the failing call on the same
 * thread, before anything else can overwrite it.  The message reads
 * "LMC_NAME: detail", or the code's static text when there is no detail.
 */
static PyObject *raise_code(int rc, const char *detail)
{
    PyObject *cls = Error;
    for (size_t i = 0; i < N_ERRCLASSES; i++)
        if (errclasses[i].code == rc) {
            cls = errclasses[i].cls;
            break;
        }
    const char *name = lmc_errname(rc);
    PyObject *msg;
    /* The library's messages already start with the code's name. */
    if (detail && *detail && strncmp(detail, name, strlen(name)) == 0)
        msg = PyUnicode_FromString(detail);
    else if (detail && *detail)
        msg = PyUnicode_FromFormat("%s: %s", name, detail);
    else
        msg = PyUnicode_FromString(lmc_strerror(rc));
    if (!msg)
        return NULL;
    PyObject *exc = PyObject_CallOneArg(cls, msg);
    Py_DECREF(msg);
    if (!exc)
        return NULL;
    PyObject *code = PyLong_FromLong(rc);
    PyObject *pname = PyUnicode_FromString(name);
    PyObject *pdetail = PyUnicode_FromString(detail ? detail : "");
    if (!code || !pname || !pdetail || PyObject_SetAttrString(exc, "code", code) ||
        PyObject_SetAttrString(exc, "name", pname) ||
        PyObject_SetAttrString(exc, "detail", pdetail)) {
        Py_XDECREF(code);
        Py_XDECREF(pname);
        Py_XDECREF(pdetail);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(code);
    Py_DECREF(pname);
    Py_DECREF(pdetail);
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
    return NULL;
}

/* Raise for a failed call on handle h, made by this thread just now. */
static PyObject *raise_lmc(const lmc *h, int rc)
{
    if (rc == CB_PYERR && PyErr_Occurred())
        return NULL;
    return raise_code(rc, lmc_errmsg(h));
}

/* ------------------------------------------------------------------------ */
/* Argument helpers                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Sort the arguments of a vectorcall (METH_FASTCALL | METH_KEYWORDS) into
 * out[0 .. nmax-1] following names; optional arguments not given stay NULL.
 * Hand-written instead of PyArg_ParseTupleAndKeywords because that builds a
 * tuple and a dict per call, which would cost as much as a cache hit.
 */
static int parse_fast(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names, Py_ssize_t nreq,
                      Py_ssize_t nmax, PyObject **out)
{
    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname,
                     nmax, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nmax; i++)
        out[i] = i < nargs ? args[i] : NULL;
    if (kwnames) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t j = 0; j < nkw; j++) {
            PyObject *kw = PyTuple_GET_ITEM(kwnames, j);
            Py_ssize_t i = 0;
            while (i < nmax && PyUnicode_CompareWithASCIIString(kw, names[i]) != 0)
                i++;
            if (i == nmax) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                             fname, kw);
                return -1;
            }
            if (out[i]) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                             fname, names[i]);
                return -1;
            }
            out[i] = args[nargs + j];
        }
    }
    for (Py_ssize_t i = 0; i < nreq; i++)
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    return 0;
}

/*
 * A key or value borrowed from a Python object.  bytes and str are read in
 * place (str through its cached UTF-8 form); other bytes-like objects are
 * held through a buffer view, released by buf_release().  `owned` is a
 * strong reference taken by the batch calls, which release the GIL while
 * pointing into objects that another thread could otherwise drop.
 */
typedef struct pybuf {
    const char *p;
    Py_ssize_t n;
    Py_buffer view;
    PyObject *owned;
    int has_view;
} pybuf;

static inline int key_from(PyObject *o, pybuf *b)
{
    b->has_view = 0;
    b->owned = NULL;
    if (PyBytes_Check(o)) {
        b->p = PyBytes_AS_STRING(o);
        b->n = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        b->p = PyUnicode_AsUTF8AndSize(o, &b->n);
        return b->p ? 0 : -1;
    }
    if (PyObject_CheckBuffer(o) && PyObject_GetBuffer(o, &b->view, PyBUF_SIMPLE) == 0) {
        b->has_view = 1;
        b->p = b->view.buf;
        b->n = b->view.len;
        return 0;
    }
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "key must be bytes or str, not %.100s",
                     Py_TYPE(o)->tp_name);
    return -1;
}

/* Values must be bytes-like: a str value is refused rather than encoded,
 * because get() returns bytes and a silent str -> bytes round trip would
 * surprise callers. */
static inline int value_from(PyObject *o, pybuf *b)
{
    b->has_view = 0;
    b->owned = NULL;
    if (PyBytes_Check(o)) {
        b->p = PyBytes_AS_STRING(o);
        b->n = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (!PyUnicode_Check(o) && PyObject_CheckBuffer(o) &&
        PyObject_GetBuffer(o, &b->view, PyBUF_SIMPLE) == 0) {
        b->has_view = 1;
        b->p = b->view.buf;
        b->n = b->view.len;
        return 0;
    }
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "value must be a bytes-like object, not %.100s",
                     Py_TYPE(o)->tp_name);
    return -1;
}

static inline void buf_release(pybuf *b)
{
    if (b->has_view) {
        PyBuffer_Release(&b->view);
        b->has_view = 0;
    }
    Py_CLEAR(b->owned);
}

/*
 * lmc.KEEP_TTL, the timeout that keeps the expiry time of the entry being
 * replaced (LMC_TTL_KEEP).  It is a sentinel object rather than a number so
 * that no arithmetic on timeouts can produce it by accident.
 */
static PyObject *keep_ttl_repr(PyObject *self)
{
    (void)self;
    return PyUnicode_FromString("lmc.KEEP_TTL");
}

static PyTypeObject KeepTTLType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lmc._KeepTTL",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_repr = keep_ttl_repr,
    .tp_doc = "Type of lmc.KEEP_TTL.",
};

static PyObject *g_keep_ttl; /* the one instance, owned by this module */

/*
 * Convert a timeout in seconds to lmc's ttl_ms: None (or a missing argument)
 * is LMC_TTL_DEFAULT, 0 is LMC_TTL_NEVER, positive values are rounded up to
 * whole milliseconds, KEEP_TTL is LMC_TTL_KEEP.  Negative values are refused
 * here; the cachelib layer gives them their "already expired" meaning before
 * calling down.
 */
static int timeout_from(PyObject *o, int64_t *ttl)
{
    if (!o || o == Py_None) {
        *ttl = LMC_TTL_DEFAULT;
        return 0;
    }
    if (o == g_keep_ttl) {
        *ttl = LMC_TTL_KEEP;
        return 0;
    }
    if (PyLong_Check(o)) {
        int overflow = 0;
        long long s = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (s == -1 && PyErr_Occurred())
            return -1;
        if (overflow > 0 || (!overflow && s > INT64_MAX / 1000)) {
            PyErr_SetString(PyExc_OverflowError, "timeout is too large");
            return -1;
        }
        if (overflow < 0 || s < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must not be negative");
            return -1;
        }
        *ttl = (int64_t)s * 1000;
        return 0;
    }
    if (PyFloat_Check(o)) {
        double d = PyFloat_AS_DOUBLE(o);
        if (isnan(d) || d < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must not be negative or NaN");
            return -1;
        }
        double ms = ceil(d * 1000.0);
        if (ms >= 9.2e18) {
            PyErr_SetString(PyExc_OverflowError, "timeout is too large");
            return -1;
        }
        *ttl = (int64_t)ms;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "timeout must be None, an int or a float, not %.100s",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* The Cache object                                                         */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    lmc *h;             /* NULL once closed */
    PyObject *path;     /* str, as given (decoded) */
    PyObject *default_timeout;
    unsigned busy;      /* calls now running without the GIL */
    unsigned busy_gen;  /* g_fork_gen when busy was last counted */
    int readonly;
} CacheObject;

/* Bumped in every child process after fork(), so that a busy count
 * inherited from the parent's threads (which do not exist in the child) is
 * recognised and forgotten. */
static volatile unsigned g_fork_gen = 1;

static void after_fork_child(void)
{
    g_fork_gen++;
}

static inline void busy_enter(CacheObject *self)
{
    if (self->busy_gen != g_fork_gen) {
        self->busy = 0;
        self->busy_gen = g_fork_gen;
    }
    self->busy++;
}

static inline void busy_leave(CacheObject *self)
{
    if (self->busy_gen == g_fork_gen && self->busy)
        self->busy--;
}

/* Run stmt, one lmc call that may wait (a write, a sweep, the stats), with
 * the GIL released and the handle marked busy, so that a Python thread that
 * closes or reopens the handle meanwhile is refused instead of freeing it
 * under the call. */
#define WITHOUT_GIL(self, stmt)                                                                    \
    do {                                                                                           \
        busy_enter(self);                                                                          \
        Py_BEGIN_ALLOW_THREADS stmt;                                                               \
        Py_END_ALLOW_THREADS busy_leave(self);                                                     \
    } while (0)

static inline int is_busy(const CacheObject *self)
{
    return self->busy && self->busy_gen == g_fork_gen;
}

static inline lmc *handle(CacheObject *self)
{
    if (LIKELY(self->h))
        return self->h;
    PyErr_SetString(PyExc_ValueError, "operation on a closed lmc.Cache");
    return NULL;
}

static PyObject *Cache_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    CacheObject *self = (CacheObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->h = NULL;
    self->path = NULL;
    self->default_timeout = NULL;
    self->busy = 0;
    self->busy_gen = g_fork_gen;
    return (PyObject *)self;
}

/* Close the handle with the GIL released: lmc_close may wait for another
 * thread's open of a cache, which can itself wait for another process. */
static void close_handle(CacheObject *self, int release_gil)
{
    lmc *h = self->h;
    self->h = NULL;
    if (!h)
        return;
    if (release_gil) {
        Py_BEGIN_ALLOW_THREADS
        lmc_close(h);
        Py_END_ALLOW_THREADS
    } else {
        lmc_close(h);
    }
}

static int Cache_init(CacheObject *self, PyObject *args, PyObject *kwds)
{
    KWLIST("path", "map_size", "default_timeout", "mode", "max_readers",
                             "readonly", "reset", "create")
    PyObject *pathbytes = NULL, *timeout = Py_None;
    unsigned long long map_size = 0;
    unsigned int mode = 0, max_readers = 0;
    int readonly = 0, reset = 0, create = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|KOIIppp:Cache", kwlist,
                                     PyUnicode_FSConverter, &pathbytes, &map_size, &timeout,
                                     &mode, &max_readers, &readonly, &reset, &create))
        return -1;
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.map_size = map_size;
    o.mode = mode;
    o.max_readers = max_readers;
    o.flags = (readonly ? LMC_OPEN_RDONLY : 0) | (reset ? LMC_OPEN_RESET : 0) |
              (create ? 0 : LMC_OPEN_NOCREATE);
    int64_t ttl;
    if (timeout == g_keep_ttl) {
        PyErr_SetString(PyExc_ValueError, "default_timeout cannot be KEEP_TTL");
        Py_DECREF(pathbytes);
        return -1;
    }
    if (timeout_from(timeout, &ttl)) {
        Py_DECREF(pathbytes);
        return -1;
    }
    o.default_ttl_ms = ttl == LMC_TTL_DEFAULT ? 0 : ttl;
    if (is_busy(self)) {
        Py_DECREF(pathbytes);
        raise_code(LMC_EBUSY, "Cache.__init__ called while another thread uses the handle");
        return -1;
    }
    close_handle(self, 1);

    const char *path = PyBytes_AS_STRING(pathbytes);
    lmc *h = NULL;
    int rc;
    char detail[1024];
    detail[0] = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = lmc_open(&h, path, &o);
    /* The open message is per thread: copy it before the GIL changes hands
     * (nothing else runs lmc on this thread, but keep the copy local). */
    if (rc)
        snprintf(detail, sizeof detail, "%s", lmc_errmsg(NULL));
    Py_END_ALLOW_THREADS
    if (rc) {
        Py_DECREF(pathbytes);
        raise_code(rc, detail);
        return -1;
    }
    self->h = h;
    self->readonly = readonly;
    PyObject *p = PyUnicode_DecodeFSDefaultAndSize(path, PyBytes_GET_SIZE(pathbytes));
    Py_DECREF(pathbytes);
    if (!p)
        return -1;
    Py_XSETREF(self->path, p);
    PyObject *dt = ttl == LMC_TTL_DEFAULT ? PyLong_FromLong(0) : Py_NewRef(timeout);
    if (!dt)
        return -1;
    Py_XSETREF(self->default_timeout, dt);
    return 0;
}

static void Cache_dealloc(CacheObject *self)
{
    /* No call can be running: each holds a reference to self. */
    close_handle(self, 0);
    Py_CLEAR(self->path);
    Py_CLEAR(self->default_timeout);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- reads ------------------------------------------------------------- */

/* lmc_get_view callback: build the result bytes straight from the shared
 * map, inside the read transaction, so a hit copies the value once. */
static int view_to_bytes(void *arg, const lmc_value *v)
{
    PyObject **out = arg;
    *out = PyBytes_FromStringAndSize(v->data, (Py_ssize_t)v->len);
    return *out ? 0 : CB_PYERR;
}

static PyObject *Cache_get(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    if (nargs == 1 && !kwnames) {
        a[0] = args[0];
        a[1] = NULL;
    } else if (parse_fast("get", args, nargs, kwnames, names, 1, 2, a)) {
        return NULL;
    }
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf k;
    if (key_from(a[0], &k))
        return NULL;
    PyObject *val = NULL;
    int rc = lmc_get_view(h, k.p, (size_t)k.n, view_to_bytes, &val);
    buf_release(&k);
    if (LIKELY(rc == LMC_OK))
        return val;
    if (rc == LMC_NOTFOUND)
        return Py_NewRef(a[1] ? a[1] : Py_None);
    return raise_lmc(h, rc);
}

/* 1 if a live entry exists, 0 if not, -1 with an exception set.  lmc_exists
 * counts a hit or a miss but reads no value (no bytes_read). */
static int has_key(CacheObject *self, PyObject *key)
{
    lmc *h = handle(self);
    if (!h)
        return -1;
    pybuf k;
    if (key_from(key, &k))
        return -1;
    int rc = lmc_exists(h, k.p, (size_t)k.n);
    buf_release(&k);
    if (rc == LMC_OK)
        return 1;
    if (rc == LMC_NOTFOUND)
        return 0;
    raise_lmc(h, rc);
    return -1;
}

static PyObject *Cache_has(CacheObject *self, PyObject *key)
{
    int r = has_key(self, key);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static int Cache_contains(PyObject *self, PyObject *key)
{
    return has_key((CacheObject *)self, key);
}

typedef struct cas_out {
    PyObject *val;
    uint64_t version;
} cas_out;

static int view_cas(void *arg, const lmc_value *v)
{
    cas_out *o = arg;
    o->version = v->version;
    o->val = PyBytes_FromStringAndSize(v->data, (Py_ssize_t)v->len);
    return o->val ? 0 : CB_PYERR;
}

static PyObject *Cache_get_cas(CacheObject *self, PyObject *key)
{
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf k;
    if (key_from(key, &k))
        return NULL;
    cas_out o = {NULL, 0};
    int rc = lmc_get_view(h, k.p, (size_t)k.n, view_cas, &o);
    buf_release(&k);
    if (rc == LMC_NOTFOUND)
        Py_RETURN_NONE;
    if (rc)
        return raise_lmc(h, rc);
    PyObject *ver = PyLong_FromUnsignedLongLong(o.version);
    if (!ver) {
        Py_DECREF(o.val);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(2, o.val, ver);
    Py_DECREF(o.val);
    Py_DECREF(ver);
    return t;
}

typedef struct many_ctx {
    PyObject *list;
    PyObject *dflt;
} many_ctx;

static int many_cb(void *arg, size_t i, const lmc_value *v)
{
    many_ctx *m = arg;
    PyObject *o;
    if (v) {
        o = PyBytes_FromStringAndSize(v->data, (Py_ssize_t)v->len);
        if (!o)
            return CB_PYERR;
    } else {
        o = Py_NewRef(m->dflt);
    }
    PyList_SET_ITEM(m->list, (Py_ssize_t)i, o);
    return 0;
}

/*
 * Fill keys[] and bufs[] from a tuple of key objects.  Each pybuf keeps a
 * strong reference to its object, so the pointers stay valid even if the
 * GIL is released afterwards.  On failure everything taken is released.
 */
static int keys_from_tuple(PyObject *tup, lmc_key *keys, pybuf *bufs)
{
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(tup, i);
        if (key_from(o, &bufs[i])) {
            while (i--)
                buf_release(&bufs[i]);
            return -1;
        }
        bufs[i].owned = Py_NewRef(o);
        keys[i].key = bufs[i].p;
        keys[i].klen = (size_t)bufs[i].n;
    }
    return 0;
}

static PyObject *Cache_get_many(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    static const char *const names[] = {"keys", "default"};
    PyObject *a[2];
    if (parse_fast("get_many", args, nargs, kwnames, names, 1, 2, a))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    /* A private tuple: nothing can change the key list under us. */
    PyObject *tup = PySequence_Tuple(a[0]);
    if (!tup)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    PyObject *list = PyList_New(n);
    lmc_key *keys = PyMem_Calloc((size_t)n + 1, sizeof *keys);
    pybuf *bufs = PyMem_Calloc((size_t)n + 1, sizeof *bufs);
    if (!list || !keys || !bufs) {
        if (list)
            PyErr_NoMemory();
        goto fail;
    }
    if (keys_from_tuple(tup, keys, bufs))
        goto fail;
    many_ctx m = {list, a[1] ? a[1] : Py_None};
    int rc = lmc_get_many(h, keys, (size_t)n, many_cb, &m);
    for (Py_ssize_t i = 0; i < n; i++)
        buf_release(&bufs[i]);
    if (rc) {
        raise_lmc(h, rc);
        goto fail;
    }
    PyMem_Free(keys);
    PyMem_Free(bufs);
    Py_DECREF(tup);
    return list;
fail:
    Py_XDECREF(list);
    PyMem_Free(keys);
    PyMem_Free(bufs);
    Py_DECREF(tup);
    return NULL;
}

typedef struct scan_ctx {
    PyObject *list;
    Py_ssize_t limit; /* < 0: no limit */
} scan_ctx;

static int scan_cb(void *arg, const lmc_value *e)
{
    scan_ctx *s = arg;
    PyObject *k = PyBytes_FromStringAndSize(e->key, (Py_ssize_t)e->klen);
    if (!k || PyList_Append(s->list, k)) {
        Py_XDECREF(k);
        return CB_PYERR;
    }
    Py_DECREF(k);
    if (s->limit >= 0 && PyList_GET_SIZE(s->list) >= s->limit)
        return CB_STOP;
    return 0;
}

static PyObject *Cache_keys(CacheObject *self, PyObject *args, PyObject *kwds)
{
    KWLIST("prefix", "limit")
    PyObject *prefix = NULL, *olimit = Py_None;
    Py_ssize_t limit = -1; /* no limit */
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:keys", kwlist, &prefix, &olimit))
        return NULL;
    if (olimit != Py_None) {
        limit = PyLong_AsSsize_t(olimit);
        if (limit == -1 && PyErr_Occurred())
            return NULL;
        if (limit < 0) {
            PyErr_SetString(PyExc_ValueError, "limit must be None or >= 0");
            return NULL;
        }
    }
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf p = {"", 0, {0}, NULL, 0};
    if (prefix && key_from(prefix, &p))
        return NULL;
    scan_ctx s = {PyList_New(0), limit};
    if (!s.list) {
        buf_release(&p);
        return NULL;
    }
    int rc = limit == 0 ? 0 : lmc_scan(h, p.p, (size_t)p.n, scan_cb, &s);
    buf_release(&p);
    if (rc && rc != CB_STOP) {
        Py_DECREF(s.list);
        return raise_lmc(h, rc);
    }
    return s.list;
}

/* ---- writes ------------------------------------------------------------ */

typedef int (*store_fn)(lmc *, const void *, size_t, const void *, size_t, int64_t);

/*
 * set, add and replace: parse (key, value, timeout), run the write with the
 * GIL released, and return the lmc code (or CB_PYERR with an exception set
 * when the arguments were bad).
 */
static int store(CacheObject *self, const char *fname, store_fn fn, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames, lmc **hout)
{
    static const char *const names[] = {"key", "value", "timeout"};
    PyObject *a[3];
    if (parse_fast(fname, args, nargs, kwnames, names, 2, 3, a))
        return CB_PYERR;
    lmc *h = handle(self);
    if (!h)
        return CB_PYERR;
    *hout = h;
    int64_t ttl;
    if (timeout_from(a[2], &ttl))
        return CB_PYERR;
    pybuf k, v;
    if (key_from(a[0], &k))
        return CB_PYERR;
    if (value_from(a[1], &v)) {
        buf_release(&k);
        return CB_PYERR;
    }
    int rc;
    WITHOUT_GIL(self, rc = fn(h, k.p, (size_t)k.n, v.p, (size_t)v.n, ttl));
    buf_release(&k);
    buf_release(&v);
    return rc;
}

static PyObject *Cache_set(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    lmc *h = NULL;
    int rc = store(self, "set", lmc_set, args, nargs, kwnames, &h);
    if (rc == LMC_OK)
        Py_RETURN_NONE;
    return raise_lmc(h, rc);
}

static PyObject *Cache_add(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    lmc *h = NULL;
    int rc = store(self, "add", lmc_add, args, nargs, kwnames, &h);
    if (rc == LMC_OK)
        Py_RETURN_TRUE;
    if (rc == LMC_EXISTS)
        Py_RETURN_FALSE;
    return raise_lmc(h, rc);
}

static PyObject *Cache_replace(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    lmc *h = NULL;
    int rc = store(self, "replace", lmc_replace, args, nargs, kwnames, &h);
    if (rc == LMC_OK)
        Py_RETURN_TRUE;
    if (rc == LMC_NOTFOUND)
        Py_RETURN_FALSE;
    return raise_lmc(h, rc);
}

/* A store on a condition carried by a 64-bit number (cas: the entry's
 * version; set_if_gen: the key's generation): True if stored, False if the
 * condition no longer held. */
typedef int (*cond_store_fn)(lmc *, const void *, size_t, const void *, size_t, int64_t,
                             uint64_t);

static PyObject *cond_store(CacheObject *self, PyObject *key, PyObject *value,
                            unsigned long long cond, PyObject *timeout, cond_store_fn fn)
{
    lmc *h = handle(self);
    if (!h)
        return NULL;
    int64_t ttl;
    if (timeout_from(timeout, &ttl))
        return NULL;
    pybuf k, v;
    if (key_from(key, &k))
        return NULL;
    if (value_from(value, &v)) {
        buf_release(&k);
        return NULL;
    }
    int rc;
    WITHOUT_GIL(self, rc = fn(h, k.p, (size_t)k.n, v.p, (size_t)v.n, ttl, cond));
    buf_release(&k);
    buf_release(&v);
    if (rc == LMC_OK)
        Py_RETURN_TRUE;
    /* A cas of a key that vanished did not store either. */
    if (rc == LMC_ECHANGED || rc == LMC_NOTFOUND)
        Py_RETURN_FALSE;
    return raise_lmc(h, rc);
}

static PyObject *Cache_cas(CacheObject *self, PyObject *args, PyObject *kwds)
{
    KWLIST("key", "value", "version", "timeout")
    PyObject *key, *value, *timeout = Py_None;
    unsigned long long version;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOK|O:cas", kwlist, &key, &value, &version,
                                     &timeout))
        return NULL;
    return cond_store(self, key, value, version, timeout, lmc_cas);
}

static PyObject *Cache_gen_read(CacheObject *self, PyObject *key)
{
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf k;
    if (key_from(key, &k))
        return NULL;
    uint64_t gen = 0;
    int rc = lmc_gen_read(h, k.p, (size_t)k.n, &gen);
    buf_release(&k);
    if (rc != LMC_OK)
        return raise_lmc(h, rc);
    return PyLong_FromUnsignedLongLong((unsigned long long)gen);
}

static PyObject *Cache_set_if_gen(CacheObject *self, PyObject *args, PyObject *kwds)
{
    KWLIST("key", "value", "gen", "timeout")
    PyObject *key, *value, *timeout = Py_None;
    unsigned long long gen;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOK|O:set_if_gen", kwlist, &key, &value, &gen,
                                     &timeout))
        return NULL;
    return cond_store(self, key, value, gen, timeout, lmc_set_if_gen);
}

static PyObject *Cache_delete(CacheObject *self, PyObject *key)
{
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf k;
    if (key_from(key, &k))
        return NULL;
    int rc;
    WITHOUT_GIL(self, rc = lmc_delete(h, k.p, (size_t)k.n));
    buf_release(&k);
    if (rc == LMC_OK)
        Py_RETURN_TRUE;
    if (rc == LMC_NOTFOUND)
        Py_RETURN_FALSE;
    return raise_lmc(h, rc);
}

static PyObject *Cache_delete_prefix(CacheObject *self, PyObject *prefix)
{
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf p;
    if (key_from(prefix, &p))
        return NULL;
    if (p.n == 0) {
        buf_release(&p);
        PyErr_SetString(PyExc_ValueError,
                        "delete_prefix() needs a non-empty prefix; use clear() to remove "
                        "every entry");
        return NULL;
    }
    uint64_t removed = 0;
    int rc;
    WITHOUT_GIL(self, rc = lmc_delete_prefix(h, p.p, (size_t)p.n, &removed));
    buf_release(&p);
    if (rc)
        return raise_lmc(h, rc);
    return PyLong_FromUnsignedLongLong(removed);
}

/* flush_prefix(prefix): the empty prefix is every entry, as in the C call
 * (no ValueError as in delete_prefix: a flush of everything is O(1) too). */
static PyObject *Cache_flush_prefix(CacheObject *self, PyObject *prefix)
{
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf p;
    if (key_from(prefix, &p))
        return NULL;
    int rc;
    WITHOUT_GIL(self, rc = lmc_flush_prefix(h, p.p, (size_t)p.n));
    buf_release(&p);
    if (rc)
        return raise_lmc(h, rc);
    Py_RETURN_NONE;
}

static PyObject *Cache_clear(CacheObject *self, PyObject *unused)
{
    (void)unused;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    int rc;
    WITHOUT_GIL(self, rc = lmc_clear(h));
    if (rc)
        return raise_lmc(h, rc);
    Py_RETURN_NONE;
}

/* reopen_after_fork(): lmc_reopen_after_fork, with the GIL released, since
 * it can wait for another process's open; the implicit reopen of a child's
 * first get runs with the GIL held, like the get. */
static PyObject *Cache_reopen_after_fork(CacheObject *self, PyObject *unused)
{
    (void)unused;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    int rc;
    WITHOUT_GIL(self, rc = lmc_reopen_after_fork(h));
    if (rc)
        return raise_lmc(h, rc);
    Py_RETURN_NONE;
}

static PyObject *Cache_incr(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"key", "delta", "timeout"};
    PyObject *a[3];
    if (parse_fast("incr", args, nargs, kwnames, names, 1, 3, a))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    long long delta = 1;
    if (a[1]) {
        if (!PyLong_Check(a[1])) {
            PyErr_Format(PyExc_TypeError, "delta must be an int, not %.100s",
                         Py_TYPE(a[1])->tp_name);
            return NULL;
        }
        delta = PyLong_AsLongLong(a[1]);
        if (delta == -1 && PyErr_Occurred())
            return NULL;
    }
    int64_t ttl;
    if (timeout_from(a[2], &ttl))
        return NULL;
    pybuf k;
    if (key_from(a[0], &k))
        return NULL;
    int64_t result = 0;
    int rc;
    WITHOUT_GIL(self, rc = lmc_incr(h, k.p, (size_t)k.n, (int64_t)delta, &result, ttl));
    buf_release(&k);
    if (rc)
        return raise_lmc(h, rc);
    return PyLong_FromLongLong(result);
}

static PyObject *Cache_touch(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"key", "timeout"};
    PyObject *a[2];
    if (parse_fast("touch", args, nargs, kwnames, names, 1, 2, a))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    int64_t ttl;
    if (a[1] == g_keep_ttl) {
        /* lmc_touch would read it as the default: refuse the no-op instead. */
        PyErr_SetString(PyExc_ValueError, "touch() needs a timeout, not KEEP_TTL");
        return NULL;
    }
    if (timeout_from(a[1], &ttl))
        return NULL;
    pybuf k;
    if (key_from(a[0], &k))
        return NULL;
    int rc;
    WITHOUT_GIL(self, rc = lmc_touch(h, k.p, (size_t)k.n, ttl));
    buf_release(&k);
    if (rc == LMC_OK)
        Py_RETURN_TRUE;
    if (rc == LMC_NOTFOUND)
        Py_RETURN_FALSE;
    return raise_lmc(h, rc);
}

/*
 * set_many(items, timeout=None): items is a mapping or an iterable of
 * (key, value) pairs.  All entries are written in one transaction, all or
 * none.  Every key and value object is held by a strong reference (pybuf
 * .owned) while the GIL is released, because another thread could otherwise
 * mutate the caller's dict or list and free them.
 */
static PyObject *Cache_set_many(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    static const char *const names[] = {"items", "timeout"};
    PyObject *a[2];
    if (parse_fast("set_many", args, nargs, kwnames, names, 1, 2, a))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    int64_t ttl;
    if (timeout_from(a[1], &ttl))
        return NULL;
    PyObject *seq = PyMapping_Check(a[0]) && !PySequence_Check(a[0])
                        ? PyMapping_Items(a[0])
                        : PySequence_List(a[0]);
    if (!seq)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(seq);
    lmc_item *items = PyMem_Calloc((size_t)n + 1, sizeof *items);
    pybuf *bufs = PyMem_Calloc(2 * (size_t)n + 1, sizeof *bufs);
    Py_ssize_t taken = 0; /* pybufs filled */
    PyObject *ret = NULL;
    if (!items || !bufs) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyObject *t = PySequence_Tuple(pair);
            if (!t)
                goto out;
            if (PyTuple_GET_SIZE(t) != 2) {
                Py_DECREF(t);
                PyErr_Format(PyExc_ValueError, "set_many() item %zd is not a (key, value) pair",
                             i);
                goto out;
            }
            /* The list now owns the normalised pair. */
            PyList_SetItem(seq, i, t);
            pair = t;
        }
        PyObject *ko = PyTuple_GET_ITEM(pair, 0), *vo = PyTuple_GET_ITEM(pair, 1);
        if (key_from(ko, &bufs[taken]))
            goto out;
        bufs[taken].owned = Py_NewRef(ko);
        taken++;
        if (value_from(vo, &bufs[taken]))
            goto out;
        bufs[taken].owned = Py_NewRef(vo);
        taken++;
        items[i].key = bufs[taken - 2].p;
        items[i].klen = (size_t)bufs[taken - 2].n;
        items[i].val = bufs[taken - 1].p;
        items[i].vlen = (size_t)bufs[taken - 1].n;
        items[i].ttl_ms = ttl;
    }
    int rc;
    WITHOUT_GIL(self, rc = lmc_set_many(h, items, (size_t)n));
    if (rc)
        raise_lmc(h, rc);
    else
        ret = Py_NewRef(Py_None);
out:
    while (taken--)
        buf_release(&bufs[taken]);
    PyMem_Free(items);
    PyMem_Free(bufs);
    Py_DECREF(seq);
    return ret;
}

/* ---- fill leases --------------------------------------------------------- */

/*
 * A time in seconds (int or float) as milliseconds, for the lease calls:
 * rounded up, so that a tiny positive time never becomes 0 ("the default" or
 * "none" to the library).  NaN, negative values, and values above max_ms
 * (or 0, unless allow_zero) are a ValueError naming the argument.
 */
static int seconds_to_ms(PyObject *o, const char *name, int64_t max_ms, int allow_zero,
                         int64_t *out)
{
    if (!PyLong_Check(o) && !PyFloat_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds, not %.100s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear(); /* an int beyond a double: refused below */
        d = NAN;
    }
    double ms = ceil(d * 1000.0);
    if (isnan(d) || d < 0 || (!allow_zero && d == 0) || ms > (double)max_ms) {
        char most[32]; /* PyErr_Format has no %g */
        snprintf(most, sizeof most, "%.10g", (double)max_ms / 1000.0);
        PyErr_Format(PyExc_ValueError, "%s must be %s seconds, at most %s, not %.40R", name,
                     allow_zero ? "0 or more" : "a positive number of", most, o);
        return -1;
    }
    *out = (int64_t)ms;
    return 0;
}

/* The XFetch beta of get_lease(early=...): 0 (off) to 1000. */
static int beta_from(PyObject *o, double *out)
{
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError))
            PyErr_Format(PyExc_TypeError, "early must be a number (an XFetch beta), not %.100s",
                         Py_TYPE(o)->tp_name);
        else if (PyErr_ExceptionMatches(PyExc_OverflowError))
            PyErr_Format(PyExc_ValueError, "early must be 0 (off) to 1000, not %R", o);
        return -1;
    }
    if (!(d >= 0 && d <= 1000.0)) {
        PyErr_Format(PyExc_ValueError, "early must be 0 (off) to 1000, not %R", o);
        return -1;
    }
    *out = d;
    return 0;
}

/* The grace of a fill in seconds (None = 0), at most 2^32 - 1 ms. */
static int grace_from(PyObject *o, int64_t *ms)
{
    if (!o || o == Py_None) {
        *ms = 0;
        return 0;
    }
    return seconds_to_ms(o, "grace", (int64_t)UINT32_MAX, 1, ms);
}

/*
 * lmc.Lease: a fill lease held, from Cache.get_lease().  It keeps its Cache
 * alive and remembers the key, so fill() and abandon() need neither.  A
 * lease still held when the object is destroyed is abandoned (in the process
 * that took it only: a child after fork() must not end its parent's lease),
 * and so is one still held at the end of a `with` block, so that an
 * exception never leaves the other callers waiting out the lease time.
 */
typedef struct {
    PyObject_HEAD
    CacheObject *cache;
    PyObject *key; /* bytes */
    lmc_lease lease;
    pid_t pid;     /* the process that took the lease */
    int held;
} LeaseObject;

static PyTypeObject LeaseType;

/* Wrap a lease just granted; on failure abandon it (nobody could). */
static PyObject *lease_wrap(CacheObject *cache, lmc *h, const char *k, Py_ssize_t kn,
                            const lmc_lease *l)
{
    LeaseObject *o = PyObject_New(LeaseObject, &LeaseType);
    PyObject *key = o ? PyBytes_FromStringAndSize(k, kn) : NULL;
    if (!key) {
        Py_XDECREF(o);
        WITHOUT_GIL(cache, (void)lmc_lease_abandon(h, l, k, (size_t)kn));
        return NULL;
    }
    o->cache = (CacheObject *)Py_NewRef((PyObject *)cache);
    o->key = key;
    o->lease = *l;
    o->pid = getpid();
    o->held = 1;
    return (PyObject *)o;
}

/* abandon with the GIL released; the code of lmc_lease_abandon. */
static int lease_abandon_nogil(CacheObject *cache, lmc *h, const lmc_lease *l, const char *k,
                               size_t kn)
{
    int rc;
    WITHOUT_GIL(cache, rc = lmc_lease_abandon(h, l, k, kn));
    return rc;
}

static void Lease_dealloc(LeaseObject *self)
{
    if (self->held && self->pid == getpid() && self->cache && self->cache->h) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        (void)lease_abandon_nogil(self->cache, self->cache->h, &self->lease,
                                  PyBytes_AS_STRING(self->key),
                                  (size_t)PyBytes_GET_SIZE(self->key));
        PyErr_Restore(et, ev, tb);
    }
    Py_CLEAR(self->key);
    Py_CLEAR(self->cache);
    PyObject_Free(self);
}

static PyObject *Lease_fill(LeaseObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"value", "timeout", "grace"};
    PyObject *a[3];
    if (parse_fast("fill", args, nargs, kwnames, names, 1, 3, a))
        return NULL;
    int64_t ttl, grace;
    if (timeout_from(a[1], &ttl) || grace_from(a[2], &grace))
        return NULL;
    pybuf v;
    if (value_from(a[0], &v))
        return NULL;
    if (!self->held) {
        buf_release(&v);
        Py_RETURN_FALSE;
    }
    lmc *h = handle(self->cache);
    if (!h) {
        buf_release(&v);
        return NULL;
    }
    int rc;
    WITHOUT_GIL(self->cache,
                rc = lmc_lease_fill(h, &self->lease, PyBytes_AS_STRING(self->key),
                                    (size_t)PyBytes_GET_SIZE(self->key), v.p, (size_t)v.n, ttl,
                                    grace));
    buf_release(&v);
    /* Every outcome but a refused argument ends the lease (a value that
     * cannot be stored too: lmc.h). */
    if (rc != LMC_EINVAL)
        self->held = 0;
    if (rc == LMC_OK)
        Py_RETURN_TRUE;
    if (rc == LMC_ECHANGED)
        Py_RETURN_FALSE;
    return raise_lmc(h, rc);
}

static PyObject *Lease_abandon(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->held)
        Py_RETURN_FALSE;
    lmc *h = handle(self->cache);
    if (!h)
        return NULL;
    int rc = lease_abandon_nogil(self->cache, h, &self->lease, PyBytes_AS_STRING(self->key),
                                 (size_t)PyBytes_GET_SIZE(self->key));
    if (rc == LMC_OK || rc == LMC_ECHANGED)
        self->held = 0;
    if (rc == LMC_OK)
        Py_RETURN_TRUE;
    if (rc == LMC_ECHANGED)
        Py_RETURN_FALSE;
    return raise_lmc(h, rc);
}

static PyObject *Lease_enter(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef((PyObject *)self);
}

/* Leaving the block with the lease still held abandons it.  If the block
 * raised, a failure to abandon (a closed cache, say) is not allowed to hide
 * that exception: the lease then lapses after its lease time. */
static PyObject *Lease_exit(LeaseObject *self, PyObject *args)
{
    PyObject *et = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : Py_None;
    if (self->held) {
        PyObject *r = Lease_abandon(self, NULL);
        if (!r) {
            if (et == Py_None)
                return NULL;
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    Py_RETURN_FALSE;
}

static PyObject *Lease_repr(LeaseObject *self)
{
    return PyUnicode_FromFormat("<lmc.Lease %R %s>", self->key,
                                self->held ? "held" : "ended");
}

static PyObject *Lease_get_key(LeaseObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->key);
}

static PyObject *Lease_get_token(LeaseObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->lease.token);
}

static PyObject *Lease_get_granted(LeaseObject *self, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble((double)self->lease.granted_ms / 1000.0);
}

static PyObject *Lease_get_held(LeaseObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->held);
}

static PyMethodDef Lease_methods[] = {
    {"fill", (PyCFunction)(void (*)(void))Lease_fill, METH_FASTCALL | METH_KEYWORDS,
     "fill(value, timeout=None, grace=0) -> bool\n\n"
     "Store the value computed under the lease (timeout as for Cache.set; grace:\n"
     "seconds the value may be served stale after it, while one caller refreshes\n"
     "it), end the lease and wake the callers waiting for it.  False if the lease\n"
     "was no longer held (taken over, or the key was written, deleted or cleared\n"
     "meanwhile): nothing was stored."},
    {"abandon", (PyCFunction)Lease_abandon, METH_NOARGS,
     "abandon() -> bool\n\n"
     "Give the lease up without storing anything; one waiting caller takes it\n"
     "over.  False if it was no longer held."},
    {"__enter__", (PyCFunction)Lease_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Lease_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Lease_getset[] = {
    {"key", (getter)Lease_get_key, NULL, "The key (bytes) the lease is for.", NULL},
    {"token", (getter)Lease_get_token, NULL, "The library's token of this lease.", NULL},
    {"granted", (getter)Lease_get_granted, NULL,
     "When it was granted, in seconds since the Unix epoch.", NULL},
    {"held", (getter)Lease_get_held, NULL,
     "True until fill() or abandon() ended it (or fill() found it lost).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LeaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lmc.Lease",
    .tp_basicsize = sizeof(LeaseObject),
    .tp_dealloc = (destructor)Lease_dealloc,
    .tp_repr = (reprfunc)Lease_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A fill lease held, from Cache.get_lease(): fill() it with the computed value\n"
              "or abandon() it.  As a context manager, leaving the block without a fill\n"
              "abandons it; so does destroying the object.",
    .tp_methods = Lease_methods,
    .tp_getset = Lease_getset,
};

/* The options of get_lease and get_or_set, from seconds. */
static int lease_opts_from(PyObject *lease_time, PyObject *wait, PyObject *early,
                           lmc_lease_options *o)
{
    memset(o, 0, sizeof *o);
    if (lease_time && lease_time != Py_None &&
        seconds_to_ms(lease_time, "lease_time", LMC_TTL_MAX, 0, &o->lease_ms))
        return -1;
    if (wait && wait != Py_None && seconds_to_ms(wait, "wait", LMC_TTL_MAX, 1, &o->wait_ms))
        return -1;
    if (early && beta_from(early, &o->early_beta))
        return -1;
    return 0;
}

/* lmc_get_lease with the GIL released; the value as bytes (or None). */
static int get_lease_nogil(CacheObject *self, lmc *h, const pybuf *k,
                           const lmc_lease_options *o, PyObject **val, lmc_lease *l,
                           int *outcome)
{
    void *v = NULL;
    size_t vlen = 0;
    int rc;
    WITHOUT_GIL(self, rc = lmc_get_lease(h, k->p, (size_t)k->n, &v, &vlen, o, l, outcome));
    if (rc)
        return rc;
    *val = v ? PyBytes_FromStringAndSize(v, (Py_ssize_t)vlen) : Py_NewRef(Py_None);
    lmc_free(v);
    if (!*val) {
        if (l->token)
            (void)lease_abandon_nogil(self, h, l, k->p, (size_t)k->n);
        return CB_PYERR;
    }
    return 0;
}

static PyObject *Cache_get_lease(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    static const char *const names[] = {"key", "lease_time", "wait", "early"};
    PyObject *a[4];
    if (parse_fast("get_lease", args, nargs, kwnames, names, 1, 4, a))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    lmc_lease_options o;
    if (lease_opts_from(a[1], a[2], a[3], &o))
        return NULL;
    pybuf k;
    if (key_from(a[0], &k))
        return NULL;
    PyObject *val = NULL, *lease = NULL, *ret = NULL;
    lmc_lease l;
    int outcome = LMC_LEASE_TIMEOUT;
    int rc = get_lease_nogil(self, h, &k, &o, &val, &l, &outcome);
    if (rc) {
        if (rc != CB_PYERR)
            raise_lmc(h, rc);
        goto out;
    }
    lease = l.token ? lease_wrap(self, h, k.p, k.n, &l) : Py_NewRef(Py_None);
    if (lease)
        ret = Py_BuildValue("(iOO)", outcome, val, lease);
    Py_XDECREF(lease);
    Py_DECREF(val);
out:
    buf_release(&k);
    return ret;
}

/* What fn() returned, as the bytes get() would give back. */
static PyObject *as_bytes(PyObject *r)
{
    if (PyBytes_CheckExact(r))
        return Py_NewRef(r);
    return PyBytes_FromObject(r);
}

/*
 * get_or_set(key, fn, timeout=None, grace=0, wait=None): the value under
 * key, computed by fn() once for the whole host when it is missing.  A
 * fresh hit is one get (no lease record is written).  Otherwise:
 *   FILL     this caller holds the lease: fn(), fill, return the value;
 *            fn() raising or returning None abandons the lease;
 *   REFRESH  (a stale value within its grace, this caller chosen to refresh
 *            it) the same: a synchronous caller that computes anyway
 *            returns what it computed, not the stale value;
 *   HIT, STALE  (after a wait, or another caller refreshing): the value;
 *   TIMEOUT  the holder did not fill within wait: fn(), not stored.
 * wait=None waits up to the lease time (30 s), after which the lease is
 * taken over anyway.  The handle counts as busy for the whole slow path, so
 * that fn() closing the cache under the lease is refused (BusyError).
 */
static PyObject *Cache_get_or_set(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"key", "fn", "timeout", "grace", "wait"};
    PyObject *a[5];
    if (parse_fast("get_or_set", args, nargs, kwnames, names, 2, 5, a))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    if (!PyCallable_Check(a[1])) {
        PyErr_Format(PyExc_TypeError, "get_or_set() fn must be callable, not %.100s",
                     Py_TYPE(a[1])->tp_name);
        return NULL;
    }
    int64_t ttl, grace;
    lmc_lease_options o;
    if (timeout_from(a[2], &ttl) || grace_from(a[3], &grace) ||
        lease_opts_from(NULL, a[4], NULL, &o))
        return NULL;
    if (!a[4] || a[4] == Py_None)
        o.wait_ms = 30000; /* the lease time: by then the lease is taken over */
    pybuf k;
    if (key_from(a[0], &k))
        return NULL;
    PyObject *val = NULL;
    int rc = lmc_get_view(h, k.p, (size_t)k.n, view_to_bytes, &val);
    if (LIKELY(rc == LMC_OK)) {
        buf_release(&k);
        return val;
    }
    if (rc != LMC_NOTFOUND) {
        buf_release(&k);
        return raise_lmc(h, rc);
    }
    PyObject *ret = NULL;
    busy_enter(self);
    lmc_lease l;
    int outcome = LMC_LEASE_TIMEOUT;
    rc = get_lease_nogil(self, h, &k, &o, &val, &l, &outcome);
    if (rc) {
        if (rc != CB_PYERR)
            raise_lmc(h, rc);
        goto out;
    }
    if (outcome == LMC_LEASE_HIT || outcome == LMC_LEASE_STALE) {
        ret = val;
        goto out;
    }
    Py_DECREF(val);
    PyObject *r = PyObject_CallNoArgs(a[1]);
    if (!l.token) { /* TIMEOUT: computed, not stored */
        if (r) {
            ret = r == Py_None ? Py_NewRef(r) : as_bytes(r);
            Py_DECREF(r);
        }
        goto out;
    }
    pybuf v;
    if (r && r != Py_None && value_from(r, &v)) {
        Py_CLEAR(r);
    }
    if (!r || r == Py_None) {
        /* Nothing to store: give the lease to the next caller now. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        (void)lease_abandon_nogil(self, h, &l, k.p, (size_t)k.n);
        PyErr_Restore(et, ev, tb);
        ret = r;
        goto out;
    }
    WITHOUT_GIL(self, rc = lmc_lease_fill(h, &l, k.p, (size_t)k.n, v.p, (size_t)v.n, ttl,
                                          grace));
    buf_release(&v);
    if (rc == LMC_OK || rc == LMC_ECHANGED)
        ret = as_bytes(r);
    else
        raise_lmc(h, rc);
    Py_DECREF(r);
out:
    busy_leave(self);
    buf_release(&k);
    return ret;
}

/* ---- maintenance and introspection -------------------------------------- */

static int dict_set_steal(PyObject *d, const char *name, PyObject *v)
{
    if (!v)
        return -1;
    int r = PyDict_SetItemString(d, name, v);
    Py_DECREF(v);
    return r;
}

static PyObject *Cache_sweep(CacheObject *self, PyObject *args, PyObject *kwds)
{
    KWLIST("high", "low", "batch", "max_keys", "max_time", "noevict",
                             "force")
    lmc_sweep_options o;
    memset(&o, 0, sizeof o);
    double max_time = 0;
    int noevict = 0, force = 0;
    unsigned long long max_keys = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ddIKdpp:sweep", kwlist, &o.high_watermark,
                                     &o.low_watermark, &o.batch, &max_keys, &max_time,
                                     &noevict, &force))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    if (!(max_time >= 0)) {
        PyErr_SetString(PyExc_ValueError, "max_time must not be negative");
        return NULL;
    }
    o.max_keys = max_keys;
    o.max_time_ms = (uint64_t)ceil(max_time * 1000.0);
    o.flags = (noevict ? LMC_SWEEP_NOEVICT : 0) | (force ? LMC_SWEEP_FORCE : 0);
    lmc_sweep_result r;
    memset(&r, 0, sizeof r);
    int rc;
    WITHOUT_GIL(self, rc = lmc_sweep(h, &o, &r));
    if (rc)
        return raise_lmc(h, rc);
    PyObject *d = PyDict_New();
    if (!d || dict_set_steal(d, "expired", PyLong_FromUnsignedLongLong(r.expired)) ||
        dict_set_steal(d, "flushed", PyLong_FromUnsignedLongLong(r.flushed)) ||
        dict_set_steal(d, "rows_refiled", PyLong_FromUnsignedLongLong(r.rows_refiled)) ||
        dict_set_steal(d, "evicted_soonest", PyLong_FromUnsignedLongLong(r.evicted_soonest)) ||
        dict_set_steal(d, "evicted_lru", PyLong_FromUnsignedLongLong(r.evicted_lru)) ||
        dict_set_steal(d, "readers_cleared", PyLong_FromUnsignedLongLong(r.readers_cleared)) ||
        dict_set_steal(d, "transactions", PyLong_FromUnsignedLongLong(r.transactions)) ||
        dict_set_steal(d, "fill_before", PyFloat_FromDouble(r.fill_before)) ||
        dict_set_steal(d, "fill_after", PyFloat_FromDouble(r.fill_after)) ||
        dict_set_steal(d, "elapsed_us", PyLong_FromUnsignedLongLong(r.elapsed_us)) ||
        dict_set_steal(d, "complete", PyBool_FromLong(r.complete))) {
        Py_XDECREF(d);
        return NULL;
    }
    return d;
}

/* stats(): every field of lmc_stat, named as lmc_stat_fields() names them
 * (the same names lmc-stats --json prints). */
static PyObject *Cache_stats(CacheObject *self, PyObject *unused)
{
    (void)unused;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    lmc_stat st;
    memset(&st, 0, sizeof st);
    int rc;
    WITHOUT_GIL(self, rc = lmc_stats(h, &st));
    if (rc)
        return raise_lmc(h, rc);
    size_t n = 0;
    const lmc_stat_field *f = lmc_stat_fields(&n);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)&st + f[i].offset;
        PyObject *v;
        if (f[i].kind == LMC_FIELD_GAUGE_DOUBLE) {
            double x;
            memcpy(&x, p, sizeof x);
            v = PyFloat_FromDouble(x);
        } else {
            uint64_t x;
            memcpy(&x, p, sizeof x);
            v = PyLong_FromUnsignedLongLong(x);
        }
        if (dict_set_steal(d, f[i].name, v)) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

/* process_stats(): the counters of each attached process (lmc-stats
 * --per-process), as a list of dicts with pid, started_ms and alive. */
static PyObject *Cache_process_stats(CacheObject *self, PyObject *unused)
{
    (void)unused;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    size_t cap = 64, n = 0;
    lmc_proc_stat *ps = NULL;
    int rc;
    for (;;) {
        lmc_proc_stat *np = PyMem_Realloc(ps, cap * sizeof *ps);
        if (!np) {
            PyMem_Free(ps);
            return PyErr_NoMemory();
        }
        ps = np;
        WITHOUT_GIL(self, rc = lmc_stats_processes(h, ps, cap, &n));
        if (rc || n <= cap)
            break;
        cap = n + 16;
    }
    if (rc) {
        PyMem_Free(ps);
        return raise_lmc(h, rc);
    }
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < n; i++) {
        const lmc_proc_stat *p = &ps[i];
        PyObject *d = PyDict_New();
        int bad = !d || dict_set_steal(d, "pid", PyLong_FromLongLong(p->pid)) ||
                  dict_set_steal(d, "started_ms", PyLong_FromLongLong(p->started_ms)) ||
                  dict_set_steal(d, "alive", PyBool_FromLong(p->alive));
#define PROC_COUNTER(name, help) \
        bad = bad || dict_set_steal(d, #name, PyLong_FromUnsignedLongLong(p->counters.name));
        LMC_COUNTERS(PROC_COUNTER)
#undef PROC_COUNTER
        if (bad || PyList_Append(list, d))
            Py_CLEAR(list);
        Py_XDECREF(d);
    }
    PyMem_Free(ps);
    return list;
}

static PyObject *Cache_info(CacheObject *self, PyObject *unused)
{
    (void)unused;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    lmc_info in;
    int rc = lmc_info_get(h, &in);
    if (rc)
        return raise_lmc(h, rc);
    PyObject *d = PyDict_New();
    if (!d || dict_set_steal(d, "path", PyUnicode_DecodeFSDefault(in.path)) ||
        dict_set_steal(d, "map_size", PyLong_FromUnsignedLongLong(in.map_size)) ||
        dict_set_steal(d, "page_size", PyLong_FromUnsignedLongLong(in.page_size)) ||
        dict_set_steal(d, "created_ms", PyLong_FromLongLong(in.created_ms)) ||
        dict_set_steal(d, "default_ttl_ms", PyLong_FromLongLong(in.default_ttl_ms)) ||
        dict_set_steal(d, "format_version", PyLong_FromUnsignedLong(in.format_version)) ||
        dict_set_steal(d, "max_readers", PyLong_FromUnsignedLong(in.max_readers)) ||
        dict_set_steal(d, "on_tmpfs", PyBool_FromLong(in.on_tmpfs)) ||
        dict_set_steal(d, "read_only", PyBool_FromLong(in.read_only)) ||
        dict_set_steal(d, "lmdb_version", PyUnicode_FromString(in.lmdb_version)) ||
        dict_set_steal(d, "lmc_version", PyUnicode_FromString(lmc_version(NULL, NULL, NULL)))) {
        Py_XDECREF(d);
        return NULL;
    }
    return d;
}

static PyObject *Cache_close(CacheObject *self, PyObject *unused)
{
    (void)unused;
    if (is_busy(self))
        return raise_code(LMC_EBUSY, "close() while another thread is inside a call on "
                                     "this lmc.Cache");
    close_handle(self, 1);
    Py_RETURN_NONE;
}

static PyObject *Cache_enter(CacheObject *self, PyObject *unused)
{
    (void)unused;
    if (!handle(self))
        return NULL;
    return Py_NewRef((PyObject *)self);
}

static PyObject *Cache_exit(CacheObject *self, PyObject *args)
{
    (void)args;
    PyObject *r = Cache_close(self, NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Measurement hooks for bench/python_bench.py and the README's numbers; not
 * part of the API.  _c_get_loop(key, n, mode) times n gets made from C in a
 * tight loop and returns the nanoseconds they took: mode 0 is lmc_get into a
 * reusable buffer (the bare library), mode 1 is what Cache.get does inside
 * (lmc_get_view building a bytes object), so the difference to a Python loop
 * of Cache.get is the cost of the Python call itself.
 */
static PyObject *Cache_c_get_loop(CacheObject *self, PyObject *args)
{
    PyObject *key;
    Py_ssize_t n;
    int mode = 0;
    if (!PyArg_ParseTuple(args, "On|i:_c_get_loop", &key, &n, &mode))
        return NULL;
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf k;
    if (key_from(key, &k))
        return NULL;
    char buf[65536];
    size_t vlen;
    int64_t t0 = mono_ns();
    int rc = 0;
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        if (mode == 0) {
            rc = lmc_get(h, k.p, (size_t)k.n, buf, sizeof buf, &vlen);
        } else {
            PyObject *v = NULL;
            rc = lmc_get_view(h, k.p, (size_t)k.n, view_to_bytes, &v);
            Py_XDECREF(v);
        }
    }
    int64_t t1 = mono_ns();
    buf_release(&k);
    if (rc && rc != LMC_NOTFOUND)
        return raise_lmc(h, rc);
    return PyLong_FromLongLong(t1 - t0);
}

/* _get_nogil(key): get() as it would be with the GIL released around the
 * lookup, kept to measure that choice (README, "The GIL").  Without the GIL
 * no bytes object can be built inside the read transaction, so the value is
 * copied twice: into a stack or heap buffer, then into the bytes object. */
static PyObject *Cache_get_nogil(CacheObject *self, PyObject *key)
{
    lmc *h = handle(self);
    if (!h)
        return NULL;
    pybuf k;
    if (key_from(key, &k))
        return NULL;
    char small[4096];
    void *big = NULL;
    size_t vlen = 0;
    int rc;
    busy_enter(self);
    Py_BEGIN_ALLOW_THREADS
    rc = lmc_get(h, k.p, (size_t)k.n, small, sizeof small, &vlen);
    if (rc == LMC_ERANGE)
        rc = lmc_get_alloc(h, k.p, (size_t)k.n, &big, &vlen);
    Py_END_ALLOW_THREADS
    busy_leave(self);
    buf_release(&k);
    if (rc == LMC_NOTFOUND)
        Py_RETURN_NONE;
    if (rc)
        return raise_lmc(h, rc);
    PyObject *v = PyBytes_FromStringAndSize(big ? big : small, (Py_ssize_t)vlen);
    lmc_free(big);
    return v;
}

static PyObject *Cache_repr(CacheObject *self)
{
    return PyUnicode_FromFormat("<%s %R%s>", Py_TYPE(self)->tp_name,
                                self->path ? self->path : Py_None,
                                self->h ? "" : " closed");
}

static PyObject *Cache_get_closed(CacheObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->h == NULL);
}

static PyObject *Cache_get_path(CacheObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->path ? self->path : Py_None);
}

static PyObject *Cache_get_default_timeout(CacheObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->default_timeout ? self->default_timeout : Py_None);
}

static PyObject *Cache_get_readonly(CacheObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->readonly);
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)
#define METH_FAST(name, fn, doc) {name, (PyCFunction)(void (*)(void))fn, FASTKW, doc}

static PyMethodDef Cache_methods[] = {
    METH_FAST("get", Cache_get,
              "get(key, default=None) -> bytes\n\n"
              "The value stored under key, or default on a miss (absent or expired)."),
    {"has", (PyCFunction)Cache_has, METH_O,
     "has(key) -> bool\n\nTrue if a live entry exists; reads no value."},
    {"get_cas", (PyCFunction)Cache_get_cas, METH_O,
     "get_cas(key) -> (bytes, version) or None\n\nThe value and its version for cas()."},
    METH_FAST("get_many", Cache_get_many,
              "get_many(keys, default=None) -> list\n\n"
              "The values of keys, read in one consistent snapshot; default for misses."),
    {"keys", (PyCFunction)(void (*)(void))Cache_keys, METH_VARARGS | METH_KEYWORDS,
     "keys(prefix=b'', limit=None) -> list of bytes\n\n"
     "Live keys starting with prefix, in key order (not one snapshot).  Holds the\n"
     "GIL while it scans; meant for tools and debugging."},
    METH_FAST("set", Cache_set,
              "set(key, value, timeout=None) -> None\n\n"
              "Store value (bytes-like) under key.  timeout in seconds: None = the\n"
              "cache's default, 0 = never expire, KEEP_TTL = keep the expiry time of\n"
              "the entry being replaced (set, replace, cas, set_many; a new entry gets\n"
              "the default)."),
    METH_FAST("add", Cache_add,
              "add(key, value, timeout=None) -> bool\n\n"
              "Store only if no live entry exists; False if one does.  Atomic across\n"
              "processes."),
    METH_FAST("replace", Cache_replace,
              "replace(key, value, timeout=None) -> bool\n\n"
              "Store only if a live entry exists; False if none does."),
    {"cas", (PyCFunction)(void (*)(void))Cache_cas, METH_VARARGS | METH_KEYWORDS,
     "cas(key, value, version, timeout=None) -> bool\n\n"
     "Store only if the live entry still has version (from get_cas); False if it\n"
     "changed or is gone."},
    {"gen_read", (PyCFunction)Cache_gen_read, METH_O,
     "gen_read(key) -> int\n\n"
     "The key's invalidation generation, to read before reading its value from the\n"
     "store behind the cache (Redis) and to pass to set_if_gen()."},
    {"set_if_gen", (PyCFunction)(void (*)(void))Cache_set_if_gen, METH_VARARGS | METH_KEYWORDS,
     "set_if_gen(key, value, gen, timeout=None) -> bool\n\n"
     "Store like set(), unless the key was invalidated (deleted, or any prefix\n"
     "delete or clear) since gen was read with gen_read(); False then, and nothing\n"
     "is stored."},
    {"delete", (PyCFunction)Cache_delete, METH_O,
     "delete(key) -> bool\n\nDelete an entry; False if there was no live entry."},
    {"delete_prefix", (PyCFunction)Cache_delete_prefix, METH_O,
     "delete_prefix(prefix) -> int\n\n"
     "Delete every entry whose key starts with prefix; returns how many."},
    {"flush_prefix", (PyCFunction)Cache_flush_prefix, METH_O,
     "flush_prefix(prefix) -> None\n\n"
     "Make every entry whose key starts with prefix (b'' or '': every entry)\n"
     "invisible at once to every process, however many there are; the sweeper\n"
     "deletes them later.  Entries stored after the call are seen.  With 8\n"
     "flushes pending, or a prefix over 64 bytes, it deletes them itself, as\n"
     "delete_prefix() does."},
    {"clear", (PyCFunction)Cache_clear, METH_NOARGS, "clear() -> None\n\nDelete every entry."},
    METH_FAST("incr", Cache_incr,
              "incr(key, delta=1, timeout=None) -> int\n\n"
              "Add delta to the decimal integer stored under key, atomically across\n"
              "processes; a missing key starts at 0 and is created with timeout.\n"
              "Raises NotANumberError if the value is not a decimal integer."),
    METH_FAST("touch", Cache_touch,
              "touch(key, timeout=None) -> bool\n\n"
              "Give a live entry a new timeout (0 = never); False if there is none."),
    METH_FAST("set_many", Cache_set_many,
              "set_many(items, timeout=None) -> None\n\n"
              "Store a mapping or iterable of (key, value) pairs in one transaction:\n"
              "all of them or none."),
    {"sweep", (PyCFunction)(void (*)(void))Cache_sweep, METH_VARARGS | METH_KEYWORDS,
     "sweep(high=0.8, low=0.7, batch=1000, max_keys=0, max_time=0, noevict=False,\n"
     "      force=False) -> dict\n\n"
     "One sweeper pass (lmc_sweep): drop expired entries, evict above the high\n"
     "watermark.  max_time in seconds; 0 = no limit."},
    METH_FAST("get_lease", Cache_get_lease,
              "get_lease(key, lease_time=None, wait=0, early=0.0) -> (outcome, value, lease)\n\n"
              "Get a value, or the lease to compute it, once for the whole host.  outcome\n"
              "is LEASE_HIT, LEASE_STALE, LEASE_FILL, LEASE_REFRESH or LEASE_TIMEOUT;\n"
              "value is bytes or None; lease an lmc.Lease, held for FILL and REFRESH,\n"
              "else None.  lease_time: seconds a holder may take before another caller\n"
              "takes over (None = 30); wait: seconds to wait for another holder's fill\n"
              "(0 = none); early: XFetch beta for refreshing before expiry (0 = off).\n"
              "Runs with the GIL released."),
    METH_FAST("get_or_set", Cache_get_or_set,
              "get_or_set(key, fn, timeout=None, grace=0, wait=None) -> bytes\n\n"
              "The value under key; when missing, fn() computes it once for the whole\n"
              "host (the others wait for it, at most wait seconds, None = the lease time\n"
              "of 30 s, then compute without storing).  The value is stored with timeout\n"
              "(as for set) and grace (seconds it may be served stale after timeout while\n"
              "one caller refreshes it).  fn() returning None stores nothing; fn()\n"
              "raising gives the lease up and the exception propagates."),
    {"stats", (PyCFunction)Cache_stats, METH_NOARGS,
     "stats() -> dict\n\nEvery counter and gauge, named as lmc-stats --json names them."},
    {"process_stats", (PyCFunction)Cache_process_stats, METH_NOARGS,
     "process_stats() -> list of dict\n\nThe counters of each attached process."},
    {"info", (PyCFunction)Cache_info, METH_NOARGS, "info() -> dict\n\nFacts about the cache."},
    {"reopen_after_fork", (PyCFunction)Cache_reopen_after_fork, METH_NOARGS,
     "reopen_after_fork() -> None\n\n"
     "In a child process after os.fork(), reopen the cache now (lmc_reopen_after_fork)\n"
     "instead of inside the child's first call, e.g. from gunicorn's post_fork hook.\n"
     "Does nothing in the process that opened the cache, or once reopened."},
    {"close", (PyCFunction)Cache_close, METH_NOARGS,
     "close() -> None\n\nClose the handle; later calls raise ValueError.  Idempotent."},
    {"__enter__", (PyCFunction)Cache_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Cache_exit, METH_VARARGS, NULL},
    {"_c_get_loop", (PyCFunction)Cache_c_get_loop, METH_VARARGS,
     "_c_get_loop(key, n, mode=0) -> int: ns taken by n gets made from C (benchmarks)."},
    {"_get_nogil", (PyCFunction)Cache_get_nogil, METH_O,
     "_get_nogil(key): get() with the GIL released (benchmarks)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Cache_getset[] = {
    {"closed", (getter)Cache_get_closed, NULL, "True once close() was called.", NULL},
    {"path", (getter)Cache_get_path, NULL, "The cache directory.", NULL},
    {"default_timeout", (getter)Cache_get_default_timeout, NULL,
     "Default timeout in seconds (0 = never expire).", NULL},
    {"readonly", (getter)Cache_get_readonly, NULL, "True if opened read-only.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Cache_as_sequence = {
    .sq_contains = Cache_contains,
};

PyDoc_STRVAR(Cache_doc,
             "Cache(path, map_size=0, default_timeout=0, mode=0, max_readers=0,\n"
             "      readonly=False, reset=False, create=True)\n\n"
             "A cache shared by every process on this host, stored in the directory\n"
             "path (best on tmpfs, e.g. /dev/shm/myapp).  map_size: capacity in bytes\n"
             "when creating (0 = 1 GiB).  default_timeout: seconds used when a call\n"
             "passes timeout=None (0 = never expire).  mode: permission bits (0 = 0600;\n"
             "0o660 shares with the group).  readonly: no writes, never creates.\n"
             "reset: start empty, wiping damaged files.  create=False: fail with\n"
             "NoCacheError if there is no cache.\n\n"
             "Keys are bytes or str (UTF-8), values bytes-like in and bytes out.\n"
             "The handle keeps working in a child process after os.fork().");

static PyTypeObject CacheType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lmc.Cache",
    .tp_basicsize = sizeof(CacheObject),
    .tp_dealloc = (destructor)Cache_dealloc,
    .tp_repr = (reprfunc)Cache_repr,
    .tp_as_sequence = &Cache_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = Cache_doc,
    .tp_methods = Cache_methods,
    .tp_getset = Cache_getset,
    .tp_init = (initproc)Cache_init,
    .tp_new = Cache_new,
};

/* ------------------------------------------------------------------------ */
/* Module                                                                   */
/* ------------------------------------------------------------------------ */

static PyObject *mod_strerror(PyObject *m, PyObject *arg)
{
    (void)m;
    int overflow = 0;
    long rc = PyLong_AsLongAndOverflow(arg, &overflow);
    if (rc == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || rc < INT32_MIN || rc > INT32_MAX)
        rc = INT32_MIN;
    return PyUnicode_FromString(lmc_strerror((int)rc));
}

static PyObject *mod_errname(PyObject *m, PyObject *arg)
{
    (void)m;
    int overflow = 0;
    long rc = PyLong_AsLongAndOverflow(arg, &overflow);
    if (rc == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || rc < INT32_MIN || rc > INT32_MAX)
        rc = INT32_MIN;
    return PyUnicode_FromString(lmc_errname((int)rc));
}

static PyMethodDef module_methods[] = {
    {"strerror", mod_strerror, METH_O, "strerror(code) -> str: the text of an lmc code."},
    {"errname", mod_errname, METH_O, "errname(code) -> str: the name of an lmc code."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lmc._lmc",
    .m_doc = "C extension of the lmc package; import lmc instead.",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_exceptions(PyObject *m)
{
    Error = PyErr_NewExceptionWithDoc(
        "lmc.Error",
        "Base class of every lmc error.  Attributes: code (the negative lmc code),\n"
        "name (e.g. 'LMC_ENOSPC') and detail (the library's message, lmc_errmsg).",
        PyExc_Exception, NULL);
    if (!Error || PyModule_AddObjectRef(m, "Error", Error))
        return -1;
    for (size_t i = 0; i < N_ERRCLASSES; i++) {
        struct errclass *e = &errclasses[i];
        char qual[80];
        snprintf(qual, sizeof qual, "lmc.%s", e->name);
        PyObject *base = Error;
        for (size_t j = 0; e->parent && j < i; j++)
            if (errclasses[j].code == e->parent)
                base = errclasses[j].cls;
        PyObject *bases = e->extra_base ? PyTuple_Pack(2, base, *e->extra_base)
                                        : PyTuple_Pack(1, base);
        if (!bases)
            return -1;
        e->cls = PyErr_NewExceptionWithDoc(qual, e->doc, bases, NULL);
        Py_DECREF(bases);
        if (!e->cls || PyModule_AddObjectRef(m, e->name, e->cls))
            return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__lmc(void)
{
    if (PyType_Ready(&CacheType) < 0)
        return NULL;
    if (PyType_Ready(&LeaseType) < 0)
        return NULL;
    if (PyType_Ready(&KeepTTLType) < 0)
        return NULL;
    if (!g_keep_ttl && !(g_keep_ttl = PyType_GenericAlloc(&KeepTTLType, 0)))
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    if (pthread_atfork(NULL, NULL, after_fork_child) != 0 || add_exceptions(m) ||
        PyModule_AddObjectRef(m, "Cache", (PyObject *)&CacheType) ||
        PyModule_AddObjectRef(m, "Lease", (PyObject *)&LeaseType) ||
        PyModule_AddObjectRef(m, "KEEP_TTL", g_keep_ttl) ||
        PyModule_AddIntConstant(m, "LEASE_HIT", LMC_LEASE_HIT) ||
        PyModule_AddIntConstant(m, "LEASE_STALE", LMC_LEASE_STALE) ||
        PyModule_AddIntConstant(m, "LEASE_FILL", LMC_LEASE_FILL) ||
        PyModule_AddIntConstant(m, "LEASE_REFRESH", LMC_LEASE_REFRESH) ||
        PyModule_AddIntConstant(m, "LEASE_TIMEOUT", LMC_LEASE_TIMEOUT) ||
        PyModule_AddStringConstant(m, "LIB_VERSION", lmc_version(NULL, NULL, NULL)))
        goto fail;
#define ADD_CODE(name, value, text) \
    if (PyModule_AddIntConstant(m, "LMC_" #name, LMC_##name)) \
        goto fail;
    LMC_ERRNO_MAP(ADD_CODE)
#undef ADD_CODE
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
