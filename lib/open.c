/*
 * open.c - lmc_open and lmc_close, the registry of this process's cores, the
 * fork handlers and lmc_reopen_after_fork, and lmc_info_get and lmc_version.
 *
 * Within a process one core (the LMDB environment and the shared files) is
 * kept per cache directory, shared by every lmc handle that opens it: LMDB
 * forbids opening one environment twice in a process, because closing any
 * descriptor of lock.mdb drops all of the process's fcntl locks on it.
 */
#include "fmacros.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "call.h"
#include "core.h"
#include "error.h"
#include "file.h"
#include "format.h"
#include "lmdbmeta.h"
#include "range.h"
#include "txn.h"

/* The layouts lmc.h promises for the structs this file fills or reads: a
 * change to one of them is a new major version. */
_Static_assert(sizeof(lmc_options) == 80 && offsetof(lmc_options, reserved_int) == 28,
               "lmc_options: map_size, default_ttl_ms, mode, max_readers, flags, reserved");
_Static_assert(sizeof(lmc_info) == 128, "lmc_info is 128 bytes");

#define LMC__MIN_MAP ((uint64_t)1 << 20)
#define LMC__DEFAULT_MAP ((uint64_t)1 << 30)
#define LMC__DEFAULT_READERS 1024u
#define LMC__MAX_READERS (1u << 20)

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* Protects the registry of cores; taken, with every core's lock of its
 * read transactions, by the atfork prepare handler, so that a child never
 * finds a list half changed. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static lmc__core *g_cores;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_lock);
    for (lmc__core *k = g_cores; k; k = k->next)
        lmc__rtxn_lock(k);
}

static void unlock_all(void)
{
    for (lmc__core *k = g_cores; k; k = k->next)
        lmc__rtxn_unlock(k);
    pthread_mutex_unlock(&g_lock);
}

static void atfork_parent(void)
{
    unlock_all();
}

static void atfork_child(void)
{
    /* Only the forking thread exists in the child.  It is the thread that
     * took these locks in atfork_prepare, so it unlocks them as the parent
     * does: re-initialising a locked mutex is undefined behaviour (and makes
     * ThreadSanitizer believe the child still holds the old one). */
    unlock_all();
    lmc__open_lock_atfork_child();
    atomic_fetch_add(&lmc__fork_gen, 1);
}

static void global_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int resolve_options(const lmc_options *opts, lmc__open_req *r, int64_t *ttl)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    /* Zero today, so that a later version can give these fields a meaning
     * whose default is 0 without a program built against this one asking
     * for it by accident. */
    bool reserved = o.reserved_int != 0;
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++)
        reserved |= o.reserved[i] != 0;
    if (reserved)
        return lmc__err(NULL, LMC_EINVAL, "reserved fields of lmc_options must be zero");
    const unsigned known = LMC_OPEN_RDONLY | LMC_OPEN_NOCREATE | LMC_OPEN_RESET;
    if (o.flags & ~known)
        return lmc__err(NULL, LMC_EINVAL, "unknown open flags 0x%x", o.flags & ~known);
    if ((o.flags & LMC_OPEN_RDONLY) && (o.flags & LMC_OPEN_RESET))
        return lmc__err(NULL, LMC_EINVAL, "LMC_OPEN_RESET needs a read-write open");
    if (o.mode & ~0777u)
        return lmc__err(NULL, LMC_EINVAL, "mode %o has bits other than permissions", o.mode);
    if (o.mode & 0002u)
        return lmc__err(NULL, LMC_EINVAL, "mode %04o lets others write the cache", o.mode);
    if (o.default_ttl_ms < 0)
        return lmc__err(NULL, LMC_EINVAL, "default_ttl_ms %lld is negative",
                        (long long)o.default_ttl_ms);
    /* The bound of a ttl_ms argument: a default beyond it would make every
     * LMC_TTL_DEFAULT write fail, long after the open that accepted it. */
    if (o.default_ttl_ms > LMC_TTL_MAX)
        return lmc__err(NULL, LMC_EINVAL, "default_ttl_ms %lld is above LMC_TTL_MAX "
                        "(2^62 ms, about 146 million years)", (long long)o.default_ttl_ms);
    uint64_t ms = o.map_size ? o.map_size : LMC__DEFAULT_MAP;
    if (ms < LMC__MIN_MAP)
        return lmc__err(NULL, LMC_EINVAL, "map_size %llu is below the minimum of 1 MiB",
                        (unsigned long long)ms);
    if (ms > ((uint64_t)1 << 46))
        return lmc__err(NULL, LMC_EINVAL, "map_size %llu is above the maximum of 64 TiB",
                        (unsigned long long)ms);
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0)
        ms = (ms + (uint64_t)ps - 1) / (uint64_t)ps * (uint64_t)ps;
    unsigned mr = o.max_readers ? o.max_readers : LMC__DEFAULT_READERS;
    if (mr > LMC__MAX_READERS)
        return lmc__err(NULL, LMC_EINVAL, "max_readers %u is above %u", mr, LMC__MAX_READERS);
    r->map_size = ms;
    r->max_readers = mr;
    r->flags = o.flags;
    r->lock_wait_ms = LMC__OPEN_LOCK_WAIT_MS;
    lmc__perm_from_mode(o.mode, &r->perm);
    *ttl = o.default_ttl_ms;
    return 0;
}

int lmc_open(lmc **out, const char *path, const lmc_options *opts)
{
    if (!out)
        return lmc__err(NULL, LMC_EINVAL, "out is NULL");
    *out = NULL;
    if (!path || !*path)
        return lmc__err(NULL, LMC_EINVAL, "path is NULL or empty");
    if (strlen(path) >= 4000)
        return lmc__err(NULL, LMC_EINVAL, "path is too long");
    lmc__open_req r;
    int64_t ttl = 0;
    int rc = resolve_options(opts, &r, &ttl);
    if (rc)
        return rc;
    pthread_once(&g_once, global_init);
    if ((rc = lmc__lmdb_check(NULL)))
        return rc;

    lmc *h = lmc__calloc(1, sizeof *h);
    if (!h)
        return lmc__err(NULL, LMC_ENOMEM, "out of memory opening %s", path);
    h->default_ttl_ms = ttl;
    h->rdonly = (r.flags & LMC_OPEN_RDONLY) != 0;

    lmc__open_lock();
    /* Share the core of a cache this process already has open. */
    struct stat st;
    lmc__core *k = NULL;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        pthread_mutex_lock(&g_lock);
        for (lmc__core *c = g_cores; c; c = c->next)
            if (c->dev == st.st_dev && c->ino == st.st_ino) {
                k = c;
                break;
            }
        if (k && k->rdonly && !h->rdonly) {
            pthread_mutex_unlock(&g_lock);
            lmc__open_unlock();
            lmc__free(h);
            return lmc__err(NULL, LMC_EBUSY, "%s is already open read-only in this process; "
                            "close it before opening it read-write", path);
        }
        if (k)
            k->refs++;
        pthread_mutex_unlock(&g_lock);
    }
    bool reset_in_place = false;
    if (k) {
        h->core = k;
        reset_in_place = (r.flags & LMC_OPEN_RESET) != 0;
    } else {
        k = lmc__calloc(1, sizeof *k);
        char *p = k ? lmc__strdup(path) : NULL;
        if (!p) {
            lmc__free(k);
            lmc__open_unlock();
            lmc__free(h);
            return lmc__err(NULL, LMC_ENOMEM, "out of memory opening %s", path);
        }
        k->path = p;
        k->refs = 1;
        k->env = NULL;
        k->dir_fd = -1;
        k->lock_fd = -1;
        k->perm = r.perm; /* kept for the reopen in a child after fork */
        pthread_mutex_init(&k->rtxn_lock, NULL);
        rc = lmc__core_open(NULL, k, &r, &reset_in_place);
        if (rc) {
            lmc__open_unlock();
            pthread_mutex_destroy(&k->rtxn_lock);
            lmc__free(k->path);
            lmc__free(k);
            lmc__free(h);
            return rc;
        }
        atomic_store_explicit(&k->gen, atomic_load(&lmc__fork_gen), memory_order_release);
        pthread_mutex_lock(&g_lock);
        k->next = g_cores;
        g_cores = k;
        pthread_mutex_unlock(&g_lock);
        h->core = k;
    }
    lmc__open_unlock();
    /* A core inherited across fork (a child opening what its parent has
     * open) is reopened here, with lmc_open's wait for another process's
     * open, rather than in the handle's first call, which gives up after
     * 2 s: a child's lmc_open must not hand back a handle whose first get
     * can fail with LMC_EBUSY because 63 siblings are opening too. */
    if (atomic_load_explicit(&k->gen, memory_order_acquire) !=
        atomic_load_explicit(&lmc__fork_gen, memory_order_relaxed)) {
        rc = lmc__reopen(h, LMC__OPEN_LOCK_WAIT_MS);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", lmc_errmsg(h));
            lmc_close(h);
            return lmc__err(NULL, rc, "%s", msg);
        }
    }
    if (reset_in_place) {
        rc = lmc__range_clear(h);
        if (rc) {
            /* The clear set the message on h; move it to the open message. */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", lmc_errmsg(h));
            lmc_close(h);
            return lmc__err(NULL, rc, "emptying %s for LMC_OPEN_RESET: %s", path, msg);
        }
    }
    *out = h;
    return 0;
}

void lmc_close(lmc *c)
{
    if (!c)
        return;
    lmc__core *k = c->core;
    lmc__open_lock();
    pthread_mutex_lock(&g_lock);
    bool last = --k->refs == 0;
    if (last) {
        for (lmc__core **pp = &g_cores; *pp; pp = &(*pp)->next)
            if (*pp == k) {
                *pp = k->next;
                break;
            }
    }
    pthread_mutex_unlock(&g_lock);
    if (last) {
        /* In a child that never used the inherited core, nothing of it is
         * ours: forget it without touching LMDB's shared state. */
        bool owned = k->pid == getpid() &&
                     atomic_load(&k->gen) == atomic_load(&lmc__fork_gen);
        if (owned)
            lmc__core_shutdown(k);
        lmc__core_release(k, owned);
        if (k->dir_fd >= 0)
            close(k->dir_fd);
        pthread_mutex_destroy(&k->rtxn_lock);
        lmc__free(k->path);
        lmc__free(k);
    }
    lmc__open_unlock();
    lmc__free(c);
}

/*
 * The reopen that the first call of a child after fork runs (call.h), at a
 * time the caller chooses: it waits for another process's open as long as
 * lmc_open does, where the implicit one gives up after 2 s, since a caller
 * that chose the place (a post-fork hook) has no request waiting on it.
 */
int lmc_reopen_after_fork(lmc *c)
{
    if (!c)
        return lmc__err(NULL, LMC_EINVAL, "handle is NULL");
    lmc__core *k = c->core;
    if (atomic_load_explicit(&k->gen, memory_order_acquire) ==
        atomic_load_explicit(&lmc__fork_gen, memory_order_relaxed))
        return 0; /* the process that opened it, or reopened already */
    /* A callback's snapshot belongs to the environment a reopen closes. */
    int rc = lmc__tl_callback ? lmc__call_in_callback(c) : 0;
    if (rc)
        return rc;
    return lmc__reopen(c, LMC__OPEN_LOCK_WAIT_MS);
}

int lmc_info_get(lmc *c, lmc_info *info)
{
    if (!c || !info)
        return lmc__err(c, LMC_EINVAL, "NULL argument");
    int rc = lmc__call(c);
    if (rc)
        return rc;
    lmc__core *k = c->core;
    memset(info, 0, sizeof *info);
    info->path = k->path;
    info->map_size = k->map_size;
    info->page_size = k->psize;
    info->created_ms = k->created_ms;
    info->default_ttl_ms = c->default_ttl_ms;
    info->format_version = LMC__FORMAT_VERSION;
    info->max_readers = k->max_readers;
    info->on_tmpfs = k->on_tmpfs;
    info->read_only = c->rdonly;
    info->lmdb_version = mdb_version(NULL, NULL, NULL);
    return 0;
}

const char *lmc_version(int *major, int *minor, int *patch)
{
    if (major)
        *major = LMC_VERSION_MAJOR;
    if (minor)
        *minor = LMC_VERSION_MINOR;
    if (patch)
        *patch = LMC_VERSION_PATCH;
    return LMC_VERSION_STRING;
}
