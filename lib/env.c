/*
 * env.c - opening and closing caches, and surviving fork().
 *
 * A cache is a directory holding an LMDB environment (data.mdb, lock.mdb), a
 * stats file and a recency file.  Opening it takes an flock on the directory
 * so that creation, validation and wiping never race with another process's
 * open; checks every object against the security rules (file.c); validates
 * LMDB's meta pages itself before LMDB maps the file (a truncated data.mdb
 * would otherwise be extended with zeros by MDB_WRITEMAP's ftruncate, or
 * SIGBUS a reader); and on a disk filesystem wipes a cache that was not shut
 * down cleanly before the last reboot, because its unsynced writes cannot be
 * trusted.
 *
 * Within a process one "core" (the LMDB environment and the shared files) is
 * kept per cache directory, shared by every lmc handle that opens it: LMDB
 * forbids opening one environment twice in a process, because closing any
 * descriptor of lock.mdb drops all of the process's fcntl locks on it.
 *
 * Fork: a pthread_atfork child handler bumps a global generation.  Every call
 * compares its core's generation with it (lmc__enter), and the first call in
 * a child closes the inherited environment (safe since LMDB 0.9.23: it only
 * clears reader slots carrying the child's own pid) and opens its own: LMDB
 * keys reader slots by the pid cached at mdb_env_create and relies on fcntl
 * locks, which a child does not inherit, so an inherited environment must not
 * be used.  The child reopens the very directory the parent opened, through
 * the descriptor the core keeps, and creates nothing.  Nothing the parent
 * owns is touched: the parent's read transactions are forgotten, not
 * aborted, since aborting them would clear the parent's reader slots in
 * shared memory.
 *
 * Space: every file that lmc or LMDB maps gets all its storage at open (see
 * reserve_lock_file and lmc__file_reserve), so that a full filesystem is
 * LMC_ENOSPC at open and never a SIGBUS later.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* LMDB flags of every read-write process.  They must be identical in all
 * processes: lmdb.h forbids mixing processes with and without MDB_WRITEMAP,
 * and a WRITEMAP process ftruncates data.mdb to its own map size at open, so
 * all must agree on that too.  WRITEMAP|NOSYNC measured 4.5x faster sets
 * than NOSYNC alone on tmpfs here (README, "Choice of LMDB flags"); the file
 * is preallocated so that a full filesystem gives LMC_ENOSPC at open instead
 * of SIGBUS in a worker. */
#define LMC__ENV_FLAGS (MDB_NOTLS | MDB_NOSYNC | MDB_WRITEMAP)
#define LMC__ENV_FLAGS_RDONLY (MDB_NOTLS | MDB_RDONLY)

/* Internal open flag: the reopen of an inherited core in a child after fork
 * (lmc__reopen).  Users cannot pass it: resolve_options refuses unknown bits. */
#define LMC__OPEN_REOPEN 0x80000000u

#define LMC__MIN_MAP ((uint64_t)1 << 20)
#define LMC__DEFAULT_MAP ((uint64_t)1 << 30)
#define LMC__DEFAULT_READERS 1024u
#define LMC__MAX_READERS (1u << 20)
#define LMC__OPEN_LOCK_TIMEOUT_MS 60000

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* Protects the core registry and every core's list of read txns; held only
 * briefly, and taken by the atfork prepare handler so that the child sees
 * consistent lists. */
pthread_mutex_t lmc__g_lock = PTHREAD_MUTEX_INITIALIZER;
#define g_lock lmc__g_lock
/* Serialises open, close and reopen-after-fork within the process.  It may
 * be held while waiting for another process's open, so atfork does not take
 * it; the child re-initialises it instead. */
static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static lmc__core *g_cores;

_Atomic unsigned lmc__fork_gen = 1;
_Thread_local const lmc__cb_frame *lmc__tl_callback __attribute__((tls_model("initial-exec")));

/* Resolved options of an open request, kept in the core for reopening in a
 * child after fork. */
typedef struct open_req {
    uint64_t map_size;
    unsigned max_readers;
    unsigned flags;
    lmc__perm perm;
} open_req;


static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void)
{
    /* Only the forking thread exists in the child.  It is the thread that
     * locked g_lock in atfork_prepare, so it unlocks it as the parent does:
     * re-initialising a locked mutex is undefined behaviour (and makes
     * ThreadSanitizer believe the child still holds the old one).
     * g_open_lock is not taken by prepare, so it may be held by a thread of
     * the parent that does not exist here (one waiting for another
     * process's open); the forking thread itself never holds it across a
     * fork, since nothing in lmc_open, lmc_close or the reopen forks.  The
     * only way to free a lock whose owner is gone is to make it afresh. */
    pthread_mutex_unlock(&g_lock);
    pthread_mutex_init(&g_open_lock, NULL);
    atomic_fetch_add(&lmc__fork_gen, 1);
}

static void global_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ------------------------------------------------------------------------ */
/* Directory, locks, boot id                                                */
/* ------------------------------------------------------------------------ */

/*
 * Give a directory this open has just made exactly mode.  mkdir applies the
 * umask, and a umask that takes the owner's r or x away (0777, 0177) leaves a
 * directory that its creator cannot even open, so the mode cannot be set
 * through a descriptor opened for reading.  An O_PATH descriptor needs no
 * permission on the directory, and chmod of /proc/self/fd/N reaches that very
 * inode, not whatever the path names by now.  Without /proc, chmod by name
 * once the name is seen to be still the directory made.
 */
static int set_dir_mode(const lmc *h, const char *path, unsigned mode)
{
    int fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return lmc__sys_err(h, errno, "open %s", path);
    struct stat st, lst;
    char proc[64];
    int e = 0;
    if (fstat(fd, &st) != 0) {
        e = errno;
    } else {
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (chmod(proc, mode) != 0) {
            e = errno;
            if (e == ENOENT && lstat(path, &lst) == 0 && lst.st_dev == st.st_dev &&
                lst.st_ino == st.st_ino)
                e = chmod(path, mode) == 0 ? 0 : errno;
        }
    }
    close(fd);
    return e ? lmc__sys_err(h, e, "chmod %s", path) : 0;
}

/* Remove the directory that a failed creating open made, if it is still the
 * one it made and empty (rmdir removes nothing else), so that a failed open
 * leaves nothing behind: neither a half-made cache nor a directory whose
 * mode would block later opens. */
static void remove_made_dir(const char *path, dev_t dev, ino_t ino)
{
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISDIR(lst.st_mode) && lst.st_dev == dev && lst.st_ino == ino)
        rmdir(path);
}

/* Open (and if allowed create) the cache directory and check it; *made
 * tells whether this call created it. */
static int open_dir(const lmc *h, const char *path, bool create, const lmc__perm *p, int *dirfd,
                    struct stat *st, bool *made)
{
    struct stat mst;
    memset(&mst, 0, sizeof mst);
    *made = false;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdir(path, 0700) == 0) {
            int rc = lstat(path, &mst) == 0 ? 0 : lmc__sys_err(h, errno, "lstat %s", path);
            if (rc == 0)
                rc = set_dir_mode(h, path, p->dir_mode);
            if (rc) {
                if (S_ISDIR(mst.st_mode))
                    remove_made_dir(path, mst.st_dev, mst.st_ino);
                return rc;
            }
            *made = true;
            fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } else if (errno == EEXIST) {
            fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } else if (errno == ENOENT) {
            return lmc__err(h, LMC_NOTFOUND, "cannot create %s: its parent directory does not "
                            "exist (lmc creates only the last component of the path)", path);
        } else {
            return lmc__sys_err(h, errno, "mkdir %s", path);
        }
    }
    if (fd < 0) {
        int e = errno;
        struct stat lst;
        if (*made)
            remove_made_dir(path, mst.st_dev, mst.st_ino);
        *made = false;
        if (e == ENOENT)
            return lmc__err(h, LMC_NOTFOUND, "no cache at %s", path);
        /* O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR or ELOOP
         * depending on the target: tell the user which it is. */
        if ((e == ELOOP || e == ENOTDIR) && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            return lmc__err(h, LMC_EPERM, "refusing %s: it is a symbolic link", path);
        if (e == ENOTDIR || e == ELOOP)
            return lmc__err(h, LMC_EPERM, "refusing %s: not a directory", path);
        return lmc__sys_err(h, e, "open %s", path);
    }
    int rc = 0;
    if (fstat(fd, st) != 0)
        rc = lmc__sys_err(h, errno, "fstat %s", path);
    else
        rc = lmc__check_owner(h, path, st, p, true);
    if (rc) {
        close(fd);
        if (*made)
            remove_made_dir(path, mst.st_dev, mst.st_ino);
        *made = false;
        return rc;
    }
    *dirfd = fd;
    return 0;
}

/* flock the directory, waiting at most LMC__OPEN_LOCK_TIMEOUT_MS: a process
 * stopped in the middle of its open must not hang every later open. */
static int lock_dir(const lmc *h, int dirfd, const char *path, int how)
{
    struct timespec pause = {0, 1000000};
    for (int waited = 0;; waited++) {
        if (flock(dirfd, how | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return lmc__sys_err(h, errno, "flock %s", path);
        if (waited >= LMC__OPEN_LOCK_TIMEOUT_MS)
            return lmc__err(h, LMC_EBUSY, "another process has held the open lock of %s "
                            "for %d s", path, LMC__OPEN_LOCK_TIMEOUT_MS / 1000);
        nanosleep(&pause, NULL);
    }
}

/* The kernel's boot id, or "" when it cannot be read. */
static void read_boot_id(char out[40])
{
    out[0] = 0;
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, 39);
    close(fd);
    if (n <= 0) {
        out[0] = 0;
        return;
    }
    out[n] = 0;
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
}

/* The names lmc owns inside a cache directory. */
static const char *const cache_names[] = {"data.mdb", "lock.mdb", "stats", "recency"};
#define N_CACHE_NAMES (sizeof cache_names / sizeof cache_names[0])

/*
 * Remove the cache's files (not the directory), for LMC_OPEN_RESET and the
 * reboot wipe.  Only called while holding the directory's exclusive lock and
 * with no live user of the files.  Whatever occupies one of lmc's names goes:
 * a file, a FIFO, a socket, a device node, a symbolic link (the link, never
 * its target) or an empty directory.  A directory that holds something is
 * left to the operator: removing a tree that someone put there is not a
 * cache's business.
 */
static int wipe_files(const lmc *h, int dirfd, const char *path)
{
    for (size_t i = 0; i < N_CACHE_NAMES; i++) {
        if (unlinkat(dirfd, cache_names[i], 0) == 0 || errno == ENOENT)
            continue;
        int e = errno;
        /* Linux says EISDIR for a directory, POSIX EPERM. */
        if ((e == EISDIR || e == EPERM) && unlinkat(dirfd, cache_names[i], AT_REMOVEDIR) == 0)
            continue;
        if (errno == ENOTEMPTY || errno == EEXIST)
            return lmc__err(h, LMC_ECORRUPT, "cannot reset %s: %s/%s is a directory that is "
                            "not empty; remove it by hand", path, path, cache_names[i]);
        return lmc__sys_err(h, e, "remove %s/%s", path, cache_names[i]);
    }
    return 0;
}

/* After a creating open failed: remove the regular files it may have made,
 * so that no half-made cache stays behind.  Only regular files: anything
 * else under lmc's names was there before and is reported, not removed,
 * unless LMC_OPEN_RESET asks for it.  Sets no message (the open's own error
 * stands). */
static void wipe_made_files(int dirfd)
{
    struct stat st;
    for (size_t i = 0; i < N_CACHE_NAMES; i++)
        if (fstatat(dirfd, cache_names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(dirfd, cache_names[i], 0);
}

/* ------------------------------------------------------------------------ */
/* LMDB meta pages                                                          */
/* ------------------------------------------------------------------------ */

/*
 * The fields of LMDB's meta page (format version 1, LMDB 0.9.x on LP64) that
 * open needs before handing the file to LMDB.  Offsets are from the start of
 * a meta page: a 16-byte page header (flags at 10), then MDB_meta: magic at
 * 0, version 4, mapsize 16, the FREE_DBI record at 24 (its first u32 is the
 * page size), last_pg at 120, txnid at 128.
 */
typedef struct lmdb_meta {
    uint64_t mapsize, last_pg, txnid;
    unsigned psize;
} lmdb_meta;

#define MDBM_PAGEHDR 16
#define MDBM_P_META 0x08
#define MDBM_MAGIC 0xBEEFC0DEu
#define MDBM_VERSION 1u

static int parse_meta_page(const unsigned char *pg, lmdb_meta *m, uint32_t *version)
{
    uint16_t flags;
    uint32_t magic;
    memcpy(&flags, pg + 10, 2);
    memcpy(&magic, pg + MDBM_PAGEHDR, 4);
    memcpy(version, pg + MDBM_PAGEHDR + 4, 4);
    if (!(flags & MDBM_P_META) || magic != MDBM_MAGIC)
        return -1;
    uint32_t psize;
    memcpy(&m->mapsize, pg + MDBM_PAGEHDR + 16, 8);
    memcpy(&psize, pg + MDBM_PAGEHDR + 24, 4);
    memcpy(&m->last_pg, pg + MDBM_PAGEHDR + 120, 8);
    memcpy(&m->txnid, pg + MDBM_PAGEHDR + 128, 8);
    m->psize = psize;
    return 0;
}

static int read_lmdb_meta(const lmc *h, int fd, const char *path, uint64_t fsize, lmdb_meta *out)
{
    unsigned char pg[MDBM_PAGEHDR + 136];
    lmdb_meta m[2];
    uint32_t ver[2];
    off_t off = 0;
    for (int i = 0; i < 2; i++) {
        ssize_t n = pread(fd, pg, sizeof pg, off);
        if (n != (ssize_t)sizeof pg || parse_meta_page(pg, &m[i], &ver[i]) != 0)
            return lmc__err(h, LMC_ECORRUPT, "%s/data.mdb is not an LMDB file (bad meta page %d)",
                            path, i);
        if (ver[i] != MDBM_VERSION)
            return lmc__err(h, LMC_EVERSION, "%s/data.mdb has LMDB data format %u, expected %u",
                            path, ver[i], MDBM_VERSION);
        if (i == 0) {
            unsigned ps = m[0].psize;
            if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
                return lmc__err(h, LMC_ECORRUPT, "%s/data.mdb has a bad page size %u", path, ps);
            off = (off_t)ps;
        }
    }
    lmdb_meta *best = m[1].txnid > m[0].txnid ? &m[1] : &m[0];
    best->psize = m[0].psize;
    if (best->last_pg >= (UINT64_MAX / best->psize) - 1 ||
        fsize < (best->last_pg + 1) * best->psize)
        return lmc__err(h, LMC_ECORRUPT,
                        "%s/data.mdb is truncated: %llu bytes, but its last page ends at %llu",
                        path, (unsigned long long)fsize,
                        (unsigned long long)((best->last_pg + 1) * best->psize));
    *out = *best;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Meta database                                                            */
/* ------------------------------------------------------------------------ */

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *v, size_t n)
{
    MDB_val k = {strlen(name), (void *)(uintptr_t)name};
    MDB_val d = {n, (void *)(uintptr_t)v};
    return mdb_put(txn, dbi, &k, &d, 0);
}

/* Read a meta value; returns the length copied (0 if absent or too long). */
static size_t meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, void *out, size_t cap)
{
    MDB_val k = {strlen(name), (void *)(uintptr_t)name};
    MDB_val d;
    if (mdb_get(txn, dbi, &k, &d) != 0 || d.mv_size > cap)
        return 0;
    memcpy(out, d.mv_data, d.mv_size);
    return d.mv_size;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Create the databases and meta of a new cache. */
static int init_new(const lmc *h, lmc__core *k, const char *boot)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_begin (create)");
    uint32_t fmt = LMC__FORMAT_VERSION;
    int64_t created = lmc__now_ms();
    /* Versions are version_base + LMDB txn id.  Starting from the creation
     * time in ns keeps them above every version a previous incarnation of the
     * cache can have handed out (at most one txn per ns), so a stale CAS
     * token never matches after a reset. */
    uint64_t vbase = (uint64_t)now_ns();
    uint8_t clean = 0;
    const char *what = "mdb_dbi_open";
    if ((rc = mdb_dbi_open(txn, NULL, 0, &k->dbi_main)) ||
        (rc = mdb_dbi_open(txn, "expiry", MDB_CREATE, &k->dbi_expiry)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &k->dbi_meta)))
        goto fail;
    k->dbi_entries = k->dbi_main; /* see the stored keys in internal.h */
    what = "mdb_put (meta)";
    if ((rc = meta_put(txn, k->dbi_meta, "format", &fmt, sizeof fmt)) ||
        (rc = meta_put(txn, k->dbi_meta, "created_ms", &created, sizeof created)) ||
        (rc = meta_put(txn, k->dbi_meta, "version_base", &vbase, sizeof vbase)) ||
        (rc = meta_put(txn, k->dbi_meta, "map_size", &k->map_size, sizeof k->map_size)) ||
        (rc = meta_put(txn, k->dbi_meta, "boot_id", boot, strlen(boot))) ||
        (rc = meta_put(txn, k->dbi_meta, "clean", &clean, 1)))
        goto fail;
    what = "mdb_txn_commit (create)";
    if ((rc = mdb_txn_commit(txn)))
        return lmc__mdb_err(h, rc == MDB_MAP_FULL ? ENOSPC : rc, what);
    k->created_ms = created;
    k->version_base = vbase;
    return 0;
fail:
    mdb_txn_abort(txn);
    return lmc__mdb_err(h, rc == MDB_MAP_FULL ? ENOSPC : rc, what);
}

/* State read from the meta database of an existing cache. */
typedef struct meta_state {
    char boot[40];
    uint8_t clean;
} meta_state;

static int load_existing(const lmc *h, lmc__core *k, meta_state *ms)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_begin (open)");
    if ((rc = mdb_dbi_open(txn, NULL, 0, &k->dbi_main)) ||
        (rc = mdb_dbi_open(txn, "expiry", 0, &k->dbi_expiry)) ||
        (rc = mdb_dbi_open(txn, "meta", 0, &k->dbi_meta))) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
            return lmc__err(h, LMC_ECORRUPT, "%s is an LMDB environment but not an lmc cache",
                            k->path);
        return lmc__mdb_err(h, rc, "mdb_dbi_open");
    }
    uint32_t fmt = 0;
    if (meta_get(txn, k->dbi_meta, "format", &fmt, sizeof fmt) != sizeof fmt ||
        meta_get(txn, k->dbi_meta, "created_ms", &k->created_ms, 8) != 8 ||
        meta_get(txn, k->dbi_meta, "version_base", &k->version_base, 8) != 8) {
        mdb_txn_abort(txn);
        return lmc__err(h, LMC_ECORRUPT, "%s: the lmc meta data is missing or damaged", k->path);
    }
    if (fmt != LMC__FORMAT_VERSION) {
        mdb_txn_abort(txn);
        return lmc__err(h, LMC_EVERSION, "%s has entry format %u; this library reads format %u",
                        k->path, fmt, LMC__FORMAT_VERSION);
    }
    size_t n = meta_get(txn, k->dbi_meta, "boot_id", ms->boot, sizeof ms->boot - 1);
    ms->boot[n] = 0;
    ms->clean = 0;
    meta_get(txn, k->dbi_meta, "clean", &ms->clean, 1);
    k->dbi_entries = k->dbi_main; /* see the stored keys in internal.h */
    /* Committing a read txn keeps the DBI handles it opened for the env. */
    rc = mdb_txn_commit(txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_commit (open)");
    return 0;
}

/* Record the current boot and mark the cache in use (not clean). */
static int mark_in_use(const lmc *h, lmc__core *k, const char *boot, uint8_t clean)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (rc)
        return lmc__mdb_err(h, rc, "mdb_txn_begin (boot id)");
    if ((rc = meta_put(txn, k->dbi_meta, "boot_id", boot, strlen(boot))) ||
        (rc = meta_put(txn, k->dbi_meta, "clean", &clean, 1))) {
        mdb_txn_abort(txn);
        return lmc__mdb_err(h, rc, "mdb_put (boot id)");
    }
    rc = mdb_txn_commit(txn);
    return rc ? lmc__mdb_err(h, rc, "mdb_txn_commit (boot id)") : 0;
}

/* ------------------------------------------------------------------------ */
/* Core open and close                                                      */
/* ------------------------------------------------------------------------ */

/* Close the LMDB environment, then our descriptor of lock.mdb: in this
 * order, because closing any descriptor of lock.mdb drops every fcntl lock
 * this process holds on it, and LMDB's reader slots and first-opener check
 * rely on those locks for as long as the environment is open. */
static void env_close(lmc__core *k)
{
    if (k->env) {
        /* Safe on an inherited env too: LMDB only clears reader slots that
         * carry this process's pid. */
        mdb_env_close(k->env);
        k->env = NULL;
    }
    if (k->lock_fd >= 0)
        close(k->lock_fd);
    k->lock_fd = -1;
}

/* Forget everything a core holds, without touching what belongs to another
 * process: used on a failed open, on close, and in a child after fork. */
static void core_release(lmc__core *k, bool owned)
{
    lmc__rtxn_release_all(k, owned);
    if (k->key_live) {
        pthread_key_delete(k->tkey);
        k->key_live = false;
    }
    env_close(k);
    lmc__stats_close(k, owned);
    lmc__recency_close(k);
}

static bool has_proc_fd(void)
{
    return access("/proc/self/fd", X_OK) == 0;
}

/* Count live users of an existing cache from its stats file (for RESET).
 * A stats file that is missing or damaged counts nobody; one that cannot be
 * read for another reason (no room to reserve it, no memory) counts as in
 * use, because the answer decides whether the files may be deleted. */
static unsigned count_users(lmc__core *k, int dirfd)
{
    lmc__core tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.stats_fd = -1;
    tmp.rec_fd = -1;
    tmp.lock_fd = -1;
    tmp.dir_fd = -1;
    tmp.path = k->path;
    tmp.rdonly = true;
    tmp.slot = &tmp.local_slot;
    tmp.room = &tmp.local_room;
    lmc__perm p;
    lmc__perm_from_mode(0660, &p);
    int rc = lmc__stats_open(&tmp, dirfd, false, p.file_mode, NULL);
    if (rc == LMC_NOTFOUND || rc == LMC_ECORRUPT)
        return 0;
    if (rc)
        return 1;
    unsigned n = lmc__stats_other_users(&tmp);
    lmc__stats_close(&tmp, false);
    return n;
}

/*
 * The directory a child reopens after fork: the very one its parent opened,
 * reached through the descriptor the core keeps and never by path, because
 * by now the path may name another directory (the parent's cache renamed
 * away and a new one made in its place) or none.  A new open file
 * description is made from it, because flock locks belong to the
 * description, which the child shares with its parent and siblings.
 */
static int reopen_dir(const lmc *h, const lmc__core *k, const lmc__perm *p, int *dirfd,
                      struct stat *st)
{
    int fd = k->dir_fd >= 0 ? openat(k->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0 && (k->dir_fd < 0 || errno == ENOENT))
        return lmc__err(h, LMC_EIO, "%s was removed after this process's parent opened it "
                        "(a child reopens its parent's cache after fork, never another one)",
                        k->path);
    if (fd < 0)
        return lmc__sys_err(h, errno, "reopening %s after fork", k->path);
    int rc = 0;
    if (fstat(fd, st) != 0)
        rc = lmc__sys_err(h, errno, "fstat %s", k->path);
    else
        rc = lmc__check_owner(h, k->path, st, p, true);
    if (rc) {
        close(fd);
        return rc;
    }
    *dirfd = fd;
    return 0;
}

/*
 * LMDB 0.9.24 gives a new lock file (maxreaders - 1) reader slots of 64
 * bytes after a header of 192 (MDB_txninfo on LP64 with process-shared
 * pthread mutexes), with ftruncate, that is, sparse; the first opener then
 * writes the header inside mdb_env_open, and every reader writes its slot.
 * So the file gets its storage before mdb_env_open: an existing one over its
 * whole size, a new one over the size LMDB will give it, with
 * FALLOC_FL_KEEP_SIZE, because LMDB reads the size of the file to size the
 * reader table and must find it as it was.  The estimate does not have to be
 * exact: the check after mdb_env_open reserves whatever it missed.
 */
static int reserve_lock_file(const lmc *h, int dirfd, const char *path, int fd,
                             unsigned max_readers, bool fresh)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return lmc__sys_err(h, errno, "fstat %s/lock.mdb", path);
    if (st.st_size > 0)
        return lmc__file_reserve(h, dirfd, path, "lock.mdb", fd, (uint64_t)st.st_size, fresh);
    uint64_t want = (uint64_t)max_readers * 64 + 128;
    int e;
    do
        e = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)want) == 0 ? 0 : errno;
    while (e == EINTR);
    if (e == ENOSPC || e == EDQUOT)
        return lmc__err(h, LMC_ENOSPC, "no room on the filesystem to reserve %llu bytes for "
                        "%s/lock.mdb: free some space or make the cache smaller (every file "
                        "of a cache is reserved at open, see map_size)",
                        (unsigned long long)want, path);
    if (e && e != EOPNOTSUPP && e != ENOSYS)
        return lmc__sys_err(h, e, "reserving %llu bytes for %s/lock.mdb",
                            (unsigned long long)want, path);
    return 0;
}

/*
 * Open the cache of k->path into k: the whole sequence described at the top
 * of this file.  On failure everything opened here is released again, and a
 * creating open removes what it made, so that a failed open leaves neither a
 * half-made cache nor a new directory behind.
 */
static int core_open(const lmc *h, lmc__core *k, const open_req *r, bool *reset_in_place)
{
    const bool rdonly = (r->flags & LMC_OPEN_RDONLY) != 0;
    const bool create = !(r->flags & (LMC_OPEN_RDONLY | LMC_OPEN_NOCREATE));
    const bool reset = (r->flags & LMC_OPEN_RESET) != 0;
    const bool reopen = (r->flags & LMC__OPEN_REOPEN) != 0;
    int dirfd = -1, rc;
    bool wiped = false, made_dir = false, fresh = false;
    struct stat st;
    char boot[40];

    *reset_in_place = false;
    k->stats_fd = -1;
    k->rec_fd = -1;
    k->lock_fd = -1;
    k->slot = &k->local_slot;
    k->room = &k->local_room;
    k->rdonly = rdonly;

    /* 0. The directory, locked.  A failed creating open removes the
     * directory it made: an open that was waiting for its lock then finds
     * it unlinked and starts again. */
    for (int attempt = 0;; attempt++) {
        if (reopen)
            rc = reopen_dir(h, k, &r->perm, &dirfd, &st);
        else
            rc = open_dir(h, k->path, create, &r->perm, &dirfd, &st, &made_dir);
        if (rc)
            return rc;
        k->dev = st.st_dev;
        k->ino = st.st_ino;
        rc = lock_dir(h, dirfd, k->path, rdonly ? LOCK_SH : LOCK_EX);
        if (rc == 0 && fstat(dirfd, &st) != 0)
            rc = lmc__sys_err(h, errno, "fstat %s", k->path);
        if (rc == 0 && st.st_nlink > 0)
            break;
        close(dirfd);
        if (made_dir)
            remove_made_dir(k->path, k->dev, k->ino);
        if (rc)
            return rc;
        if (reopen)
            return lmc__err(h, LMC_EIO, "%s was removed after this process's parent opened "
                            "it (a child reopens its parent's cache after fork, never another "
                            "one)", k->path);
        if (attempt == 10)
            return lmc__err(h, LMC_EIO, "%s keeps being removed while it is opened", k->path);
    }
    struct statfs sfs;
    k->on_tmpfs = fstatfs(dirfd, &sfs) == 0 &&
                  (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
    read_boot_id(boot);

again:;
    /* 1. The data file: validate LMDB's meta pages before LMDB maps it. */
    int fd = -1;
    bool exists = false;
    lmdb_meta meta;
    memset(&meta, 0, sizeof meta);
    rc = lmc__open_file(h, dirfd, k->path, "data.mdb", create, rdonly, &r->perm, &fd, NULL);
    if (rc == LMC_NOTFOUND) {
        rc = lmc__err(h, LMC_NOTFOUND, "no cache at %s", k->path);
        goto fail;
    }
    if (rc == LMC_ECORRUPT)
        goto damaged;
    if (rc)
        goto fail;
    if (fstat(fd, &st) != 0) {
        rc = lmc__sys_err(h, errno, "fstat %s/data.mdb", k->path);
        close(fd);
        goto fail;
    }
    if (st.st_size > 0) {
        exists = true;
        rc = read_lmdb_meta(h, fd, k->path, (uint64_t)st.st_size, &meta);
    }
    close(fd);
    if (rc == 0 && !exists && !create) {
        rc = lmc__err(h, LMC_NOTFOUND, "no cache at %s (data.mdb is empty)", k->path);
        goto fail;
    }
    if (rc == LMC_ECORRUPT || rc == LMC_EVERSION)
        goto damaged;
    if (rc)
        goto fail;
    /* A new cache: nobody else can have its files open (they wait for the
     * directory lock), and a failure from here on removes them. */
    fresh = !exists;

    /* 2. LMC_OPEN_RESET of a valid cache: recreate it if nobody uses it,
     * otherwise empty it in place once open (other processes keep sharing
     * the same files). */
    if (exists && reset && !wiped) {
        if (count_users(k, dirfd) == 0) {
            if ((rc = wipe_files(h, dirfd, k->path)))
                goto fail;
            wiped = true;
            goto again;
        }
        *reset_in_place = true;
    }

    /* 3. The lock file: LMDB opens it read-write even for readers.  Its
     * storage is reserved now, and the descriptor stays open until after
     * mdb_env_close (env_close), because once LMDB has the environment open,
     * closing any descriptor of lock.mdb would drop LMDB's fcntl locks. */
    bool lock_made = false;
    rc = lmc__open_file(h, dirfd, k->path, "lock.mdb", create, false, &r->perm, &k->lock_fd,
                        &lock_made);
    if (rc == LMC_NOTFOUND)
        rc = lmc__err(h, LMC_NOTFOUND, "no cache at %s (lock.mdb is missing)", k->path);
    if (rc == LMC_ECORRUPT)
        goto damaged;
    if (rc)
        goto fail;
    if ((rc = reserve_lock_file(h, dirfd, k->path, k->lock_fd, r->max_readers, lock_made)))
        goto fail;

    /* 4. The environment. */
    if ((rc = mdb_env_create(&k->env))) {
        rc = lmc__mdb_err(h, rc, "mdb_env_create");
        goto fail;
    }
    uint64_t mapsize = exists ? meta.mapsize : r->map_size;
    mdb_env_set_maxreaders(k->env, r->max_readers);
    mdb_env_set_maxdbs(k->env, 4);
    if ((rc = mdb_env_set_mapsize(k->env, (size_t)mapsize))) {
        rc = lmc__mdb_err(h, rc, "mdb_env_set_mapsize");
        goto fail;
    }
    char envpath[64];
    const char *ep = k->path;
    if (has_proc_fd()) {
        /* Hand LMDB the directory we checked, not a path an attacker with
         * access to the parent could swap in between. */
        snprintf(envpath, sizeof envpath, "/proc/self/fd/%d", dirfd);
        ep = envpath;
    }
    k->env_flags = rdonly ? LMC__ENV_FLAGS_RDONLY : LMC__ENV_FLAGS;
    rc = mdb_env_open(k->env, ep, k->env_flags, r->perm.file_mode);
    if (rc) {
        int code = lmc__code_from_mdb(rc);
        rc = lmc__err(h, code == LMC__EMAPFULL ? LMC_ENOSPC : code, "mdb_env_open %s: %s",
                      k->path, mdb_strerror(rc));
        if (rc == LMC_ECORRUPT || rc == LMC_EVERSION)
            goto damaged;
        goto fail;
    }
    MDB_envinfo info;
    MDB_stat mst;
    mdb_env_info(k->env, &info);
    mdb_env_stat(k->env, &mst);
    k->map_size = info.me_mapsize;
    k->psize = mst.ms_psize;
    mdb_env_get_maxreaders(k->env, &k->max_readers);

    /* 5. Storage for every page LMDB maps, before anything but LMDB's own
     * open has touched them: a page of a shared mapping that the filesystem
     * cannot supply is a SIGBUS in whichever process touches it, so fail
     * here instead.  The first opener may have grown lock.mdb to its reader
     * table; data.mdb is mapped whole (map_size) by read-write handles, up
     * to its size by read-only ones. */
    if (fstat(k->lock_fd, &st) != 0) {
        rc = lmc__sys_err(h, errno, "fstat %s/lock.mdb", k->path);
        goto fail;
    }
    if ((rc = lmc__file_reserve(h, dirfd, k->path, "lock.mdb", k->lock_fd, (uint64_t)st.st_size,
                                lock_made)))
        goto fail;
    int dfd;
    mdb_env_get_fd(k->env, &dfd);
    if (fstat(dfd, &st) != 0) {
        rc = lmc__sys_err(h, errno, "fstat %s/data.mdb", k->path);
        goto fail;
    }
    if ((rc = lmc__file_reserve(h, dirfd, k->path, "data.mdb", dfd,
                                rdonly ? (uint64_t)st.st_size : k->map_size, fresh)))
        goto fail;
    int dead = 0;
    mdb_reader_check(k->env, &dead);

    /* 6. Databases and meta. */
    if (!exists) {
        if ((rc = init_new(h, k, boot)))
            goto fail;
    } else {
        meta_state ms;
        rc = load_existing(h, k, &ms);
        if (rc == LMC_ECORRUPT || rc == LMC_EVERSION)
            goto damaged;
        if (rc)
            goto fail;
        /* 7. A disk cache written without sync is only trusted within the
         * boot that wrote it, or after a clean shutdown (see clean_shutdown). */
        if (!k->on_tmpfs && boot[0] && strcmp(ms.boot, boot) != 0 && !ms.clean) {
            if (rdonly) {
                rc = lmc__err(h, LMC_ECORRUPT, "%s was not shut down cleanly before the last "
                              "reboot; open it read-write once to wipe it", k->path);
                goto fail;
            }
            env_close(k);
            if ((rc = wipe_files(h, dirfd, k->path)))
                goto fail;
            wiped = true;
            goto again;
        }
        if (!rdonly && !k->on_tmpfs && boot[0] && (strcmp(ms.boot, boot) != 0 || ms.clean)) {
            if ((rc = mark_in_use(h, k, boot, 0)))
                goto fail;
        }
    }

    /* 8. Stats and recency files.  A child reopening after fork creates
     * nothing: a side file gone missing means the parent's cache is gone. */
    const bool create_side = !rdonly && !reopen;
    if ((rc = lmc__stats_open(k, dirfd, create_side, r->perm.file_mode, h)) ||
        (rc = lmc__recency_open(k, dirfd, create_side, r->perm.file_mode, h))) {
        if (rc == LMC_ECORRUPT)
            goto damaged;
        goto fail;
    }
    if (reopen && !rdonly && (!k->stats_map || !k->rec_map)) {
        rc = lmc__err(h, LMC_EIO, "%s/%s was removed after this process's parent opened the "
                      "cache", k->path, k->stats_map ? "recency" : "stats");
        goto fail;
    }
    if ((rc = pthread_key_create(&k->tkey, lmc__rtxn_destructor))) {
        rc = lmc__sys_err(h, rc, "pthread_key_create");
        goto fail;
    }
    k->key_live = true;
    if (!rdonly && exists && k->stats_fresh && (rc = lmc__totals_rescan(h, k)))
        goto fail;
    if (!rdonly) {
        lmc__stats_claim(k);
        if (dead > 0)
            lmc__count(k, LMC__C_readers_cleared, (uint64_t)dead);
    }
    k->pid = getpid();
    flock(dirfd, LOCK_UN);
    /* The directory stays open for the life of the core: a child after fork
     * reopens it through this descriptor (reopen_dir). */
    if (k->dir_fd >= 0)
        close(k->dir_fd);
    k->dir_fd = dirfd;
    return 0;

damaged:
    /* Wiping files that other processes have open would leave them on the
     * old files and new openers on new ones: only without users. */
    if (reset && !wiped && !*reset_in_place) {
        core_release(k, true);
        k->slot = &k->local_slot;
        k->room = &k->local_room;
        if ((rc = wipe_files(h, dirfd, k->path)))
            goto fail;
        wiped = true;
        goto again;
    }
fail:
    core_release(k, true);
    k->slot = &k->local_slot;
    k->room = &k->local_room;
    if (fresh || made_dir)
        wipe_made_files(dirfd);
    if (made_dir)
        remove_made_dir(k->path, k->dev, k->ino);
    flock(dirfd, LOCK_UN);
    close(dirfd);
    return rc;
}

/* Last user of a disk cache: flush it and record a clean shutdown so that
 * the next boot keeps it. */
static void clean_shutdown(lmc__core *k)
{
    if (k->rdonly || k->on_tmpfs || !k->env)
        return;
    /* The directory the core opened, even if its path names another one by
     * now; a description of its own, for the flock. */
    int dirfd = k->dir_fd >= 0 ? openat(k->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dirfd < 0)
        return;
    struct stat st;
    if (fstat(dirfd, &st) == 0 && st.st_dev == k->dev && st.st_ino == k->ino &&
        flock(dirfd, LOCK_EX | LOCK_NB) == 0) {
        if (lmc__stats_other_users(k) == 0 && mdb_env_sync(k->env, 1) == 0) {
            char boot[40];
            read_boot_id(boot);
            if (boot[0] && mark_in_use(NULL, k, boot, 1) == 0)
                mdb_env_sync(k->env, 1);
        }
        flock(dirfd, LOCK_UN);
    }
    close(dirfd);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

static int resolve_options(const lmc_options *opts, open_req *r, int64_t *ttl)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
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
    open_req r;
    int64_t ttl = 0;
    int rc = resolve_options(opts, &r, &ttl);
    if (rc)
        return rc;
    pthread_once(&g_once, global_init);

    lmc *h = lmc__calloc(1, sizeof *h);
    if (!h)
        return lmc__err(NULL, LMC_ENOMEM, "out of memory opening %s", path);
    h->default_ttl_ms = ttl;
    h->rdonly = (r.flags & LMC_OPEN_RDONLY) != 0;

    pthread_mutex_lock(&g_open_lock);
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
            pthread_mutex_unlock(&g_open_lock);
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
            pthread_mutex_unlock(&g_open_lock);
            lmc__free(h);
            return lmc__err(NULL, LMC_ENOMEM, "out of memory opening %s", path);
        }
        k->path = p;
        k->refs = 1;
        k->env = NULL;
        k->dir_fd = -1;
        k->lock_fd = -1;
        k->perm = r.perm; /* kept for the reopen in a child after fork */
        rc = core_open(NULL, k, &r, &reset_in_place);
        if (rc) {
            pthread_mutex_unlock(&g_open_lock);
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
    pthread_mutex_unlock(&g_open_lock);
    if (reset_in_place) {
        rc = lmc_clear(h);
        if (rc) {
            /* lmc_clear set the message on h; move it to the open message. */
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
    pthread_mutex_lock(&g_open_lock);
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
        lmc__rtxn_release_all(k, owned);
        if (owned)
            clean_shutdown(k);
        core_release(k, owned);
        if (k->dir_fd >= 0)
            close(k->dir_fd);
        lmc__free(k->path);
        lmc__free(k);
    }
    pthread_mutex_unlock(&g_open_lock);
    lmc__free(c);
}

int lmc__reopen(lmc *h)
{
    lmc__core *k = h->core;
    pthread_mutex_lock(&g_open_lock);
    unsigned g = atomic_load(&lmc__fork_gen);
    int rc = 0;
    if (atomic_load(&k->gen) != g) {
        /* Drop the parent's state: rtxns forgotten, env closed (only our own
         * pid's reader slots are touched), our copies of the maps unmapped. */
        core_release(k, false);
        /* The child reopens the very directory its parent opened, and never
         * creates anything (core_open, reopen_dir). */
        open_req r = {k->map_size, k->max_readers,
                      (k->rdonly ? LMC_OPEN_RDONLY : 0) | LMC_OPEN_NOCREATE | LMC__OPEN_REOPEN,
                      k->perm};
        bool unused;
        rc = core_open(h, k, &r, &unused);
        if (rc == LMC_NOTFOUND) {
            /* A missing file is not a miss here: every call of the child
             * would otherwise fail with a code that reads as one. */
            char msg[512];
            const char *m = lmc__errmsg_last();
            if (strncmp(m, "LMC_NOTFOUND: ", 14) == 0)
                m += 14;
            snprintf(msg, sizeof msg, "%s", m);
            rc = lmc__err(h, LMC_EIO, "reopening %s in a child after fork: %s", k->path, msg);
        }
        if (rc == 0)
            atomic_store_explicit(&k->gen, g, memory_order_release);
    }
    pthread_mutex_unlock(&g_open_lock);
    return rc;
}

int lmc_info_get(lmc *c, lmc_info *info)
{
    if (!c || !info)
        return lmc__err(c, LMC_EINVAL, "NULL argument");
    int rc = lmc__enter(c);
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
