/*
 * core.c - opening and closing the cache of one directory, and surviving
 * fork().
 *
 * A cache is a directory holding an LMDB environment (data.mdb, lock.mdb), a
 * stats file and a recency file.  Opening it takes an flock on the directory
 * so that creation, validation and wiping never race with another process's
 * open (dir.c); checks every object against the security rules (file.c);
 * validates LMDB's meta pages itself before LMDB maps the file (a truncated
 * data.mdb would otherwise be extended with zeros by MDB_WRITEMAP's
 * ftruncate, or SIGBUS a reader; lmdbmeta.c); and on a disk filesystem wipes
 * a cache that was not shut down cleanly before the last reboot, because its
 * unsynced writes cannot be trusted (metadb.c records the boot).
 *
 * Fork: a pthread_atfork child handler (open.c) bumps a global generation.
 * Every call compares its core's generation with it (call.h), and the first
 * call in a child closes the inherited environment (safe since LMDB 0.9.23:
 * it only clears reader slots carrying the child's own pid) and opens its
 * own: LMDB keys reader slots by the pid cached at mdb_env_create and relies
 * on fcntl locks, which a child does not inherit, so an inherited
 * environment must not be used.  The child reopens the very directory the
 * parent opened, through the descriptor the core keeps, and creates nothing.
 * Nothing the parent owns is touched: the parent's read transactions are
 * forgotten, not aborted, since aborting them would clear the parent's
 * reader slots in shared memory.
 *
 * Space: every file that lmc or LMDB maps gets all its storage at open (see
 * reserve_lock_file and lmc__file_reserve), so that a full filesystem is
 * LMC_ENOSPC at open and never a SIGBUS later.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "core.h"
#include "dir.h"
#include "error.h"
#include "file.h"
#include "flushtab.h"
#include "lmdbmeta.h"
#include "metadb.h"
#include "recency.h"
#include "slots.h"
#include "space.h"
#include "txn.h"

/* LMDB flags of every read-write process.  They must be identical in all
 * processes: lmdb.h forbids mixing processes with and without MDB_WRITEMAP,
 * and a WRITEMAP process ftruncates data.mdb to its own map size at open, so
 * all must agree on that too.  WRITEMAP|NOSYNC measured 4.5x faster sets
 * than NOSYNC alone on tmpfs here (README, "Choice of LMDB flags"); the file
 * is preallocated so that a full filesystem gives LMC_ENOSPC at open instead
 * of SIGBUS in a worker.  (bench/bench.mk reads this line: the raw LMDB
 * contender runs with the same flags.) */
#define LMC__ENV_FLAGS (MDB_NOTLS | MDB_NOSYNC | MDB_WRITEMAP)
#define LMC__ENV_FLAGS_RDONLY (MDB_NOTLS | MDB_RDONLY)

_Atomic unsigned lmc__fork_gen = 1;

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

void lmc__open_lock(void)
{
    pthread_mutex_lock(&open_lock);
}

void lmc__open_unlock(void)
{
    pthread_mutex_unlock(&open_lock);
}

void lmc__open_lock_atfork_child(void)
{
    /* The lock may be held by a thread of the parent that does not exist
     * here (one waiting for another process's open); the forking thread
     * itself never holds it across a fork, since nothing in lmc_open,
     * lmc_close or the reopen forks.  The only way to free a lock whose
     * owner is gone is to make it afresh. */
    pthread_mutex_init(&open_lock, NULL);
}

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
void lmc__core_release(lmc__core *k, bool owned)
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
    tmp.flush = &lmc__flush_none;
    lmc__perm p;
    lmc__perm_from_mode(0660, &p);
    int rc = lmc__stats_open(&tmp, dirfd, false, p.file_mode, NULL);
    if (rc == LMC_ENOCACHE || rc == LMC_ECORRUPT)
        return 0;
    if (rc)
        return 1;
    unsigned n = lmc__stats_other_users(&tmp);
    lmc__stats_close(&tmp, false);
    return n;
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
    uint64_t want = lmc__lmdb_lock_size(max_readers);
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
int lmc__core_open(const lmc *h, lmc__core *k, const lmc__open_req *r, bool *reset_in_place)
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
    k->flush = &lmc__flush_none;
    k->rdonly = rdonly;

    /* 0. The directory, locked.  A failed creating open removes the
     * directory it made: an open that was waiting for its lock then finds
     * it unlinked and starts again. */
    for (int attempt = 0;; attempt++) {
        if (reopen)
            rc = lmc__dir_reopen(h, k->dir_fd, k->path, &r->perm, &dirfd, &st);
        else
            rc = lmc__dir_open(h, k->path, create, &r->perm, &dirfd, &st, &made_dir);
        if (rc)
            return rc;
        k->dev = st.st_dev;
        k->ino = st.st_ino;
        rc = lmc__dir_lock(h, dirfd, k->path, rdonly ? LOCK_SH : LOCK_EX,
                           r->lock_wait_ms ? r->lock_wait_ms : LMC__OPEN_LOCK_WAIT_MS);
        if (rc == 0 && fstat(dirfd, &st) != 0)
            rc = lmc__sys_err(h, errno, "fstat %s", k->path);
        if (rc == 0 && st.st_nlink > 0)
            break;
        close(dirfd);
        if (made_dir)
            lmc__dir_remove_made(k->path, k->dev, k->ino);
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
    lmc__boot_id(boot);

again:;
    /* 1. The data file: validate LMDB's meta pages before LMDB maps it. */
    int fd = -1;
    bool exists = false;
    lmc__lmdb_meta meta;
    memset(&meta, 0, sizeof meta);
    rc = lmc__open_file(h, dirfd, k->path, "data.mdb", create, rdonly, &r->perm, &fd, NULL);
    if (rc == LMC_ENOCACHE) {
        rc = lmc__err(h, LMC_ENOCACHE, "no cache at %s", k->path);
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
        rc = lmc__lmdb_read_meta(h, fd, k->path, (uint64_t)st.st_size, &meta);
    }
    close(fd);
    if (rc == 0 && !exists && !create) {
        rc = lmc__err(h, LMC_ENOCACHE, "no cache at %s (data.mdb is empty)", k->path);
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
            if ((rc = lmc__dir_wipe(h, dirfd, k->path)))
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
    if (rc == LMC_ENOCACHE)
        rc = lmc__err(h, LMC_ENOCACHE, "no cache at %s (lock.mdb is missing)", k->path);
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
    k->total_pages = k->map_size / k->psize;
    k->reserve_pages = lmc__reserve_pages_of(k->total_pages);
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
        if ((rc = lmc__meta_create(h, k, boot)))
            goto fail;
    } else {
        lmc__meta_state ms;
        rc = lmc__meta_load(h, k, &ms);
        if (rc == LMC_ECORRUPT || rc == LMC_EVERSION)
            goto damaged;
        if (rc)
            goto fail;
        /* 7. A disk cache written without sync is only trusted within the
         * boot that wrote it, or after a clean shutdown (lmc__core_shutdown). */
        if (!k->on_tmpfs && boot[0] && strcmp(ms.boot, boot) != 0 && !ms.clean) {
            if (rdonly) {
                rc = lmc__err(h, LMC_ECORRUPT, "%s was not shut down cleanly before the last "
                              "reboot; open it read-write once to wipe it", k->path);
                goto fail;
            }
            env_close(k);
            if ((rc = lmc__dir_wipe(h, dirfd, k->path)))
                goto fail;
            wiped = true;
            goto again;
        }
        if (!rdonly && !k->on_tmpfs && boot[0] && (strcmp(ms.boot, boot) != 0 || ms.clean)) {
            if ((rc = lmc__meta_mark(h, k, boot, 0)))
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
    atomic_store_explicit(&k->rtxn_serial, lmc__rtxn_serial_next(), memory_order_relaxed);
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
     * reopens it through this descriptor (lmc__dir_reopen). */
    if (k->dir_fd >= 0)
        close(k->dir_fd);
    k->dir_fd = dirfd;
    return 0;

damaged:
    /* Wiping files that other processes have open would leave them on the
     * old files and new openers on new ones: only without users. */
    if (reset && !wiped && !*reset_in_place) {
        lmc__core_release(k, true);
        k->slot = &k->local_slot;
        k->room = &k->local_room;
        if ((rc = lmc__dir_wipe(h, dirfd, k->path)))
            goto fail;
        wiped = true;
        goto again;
    }
fail:
    lmc__core_release(k, true);
    k->slot = &k->local_slot;
    k->room = &k->local_room;
    if (fresh || made_dir)
        lmc__dir_wipe_made(dirfd);
    if (made_dir)
        lmc__dir_remove_made(k->path, k->dev, k->ino);
    flock(dirfd, LOCK_UN);
    close(dirfd);
    return rc;
}

/* Last user of a disk cache: flush it and record a clean shutdown so that
 * the next boot keeps it. */
void lmc__core_shutdown(lmc__core *k)
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
            lmc__boot_id(boot);
            if (boot[0] && lmc__meta_mark(NULL, k, boot, 1) == 0)
                mdb_env_sync(k->env, 1);
        }
        flock(dirfd, LOCK_UN);
    }
    close(dirfd);
}

int lmc__reopen(lmc *h, unsigned lock_wait_ms)
{
    lmc__core *k = h->core;
    pthread_mutex_lock(&open_lock);
    unsigned g = atomic_load(&lmc__fork_gen);
    int rc = 0;
    if (atomic_load(&k->gen) != g) {
        /* Drop the parent's state: rtxns forgotten, env closed (only our own
         * pid's reader slots are touched), our copies of the maps unmapped. */
        lmc__core_release(k, false);
        /* The child reopens the very directory its parent opened, and never
         * creates anything (lmc__core_open, lmc__dir_reopen). */
        lmc__open_req r = {k->map_size, k->max_readers,
                      (k->rdonly ? LMC_OPEN_RDONLY : 0) | LMC_OPEN_NOCREATE | LMC__OPEN_REOPEN,
                      k->perm, lock_wait_ms};
        bool unused;
        rc = lmc__core_open(h, k, &r, &unused);
        if (rc == LMC_ENOCACHE) {
            /* The parent's cache lost a file after the parent opened it: the
             * same failure as its directory removed (lmc__dir_reopen). */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", lmc__errmsg_detail(LMC_ENOCACHE));
            rc = lmc__err(h, LMC_EIO, "reopening %s in a child after fork: %s", k->path, msg);
        } else if (rc == LMC_EBUSY && lock_wait_ms < LMC__OPEN_LOCK_WAIT_MS) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", lmc__errmsg_detail(LMC_EBUSY));
            rc = lmc__err(h, LMC_EBUSY, "reopening %s in a child after fork: %s; a call waits "
                          "no longer, lmc_reopen_after_fork() as long as lmc_open", k->path, msg);
        }
        if (rc == 0)
            atomic_store_explicit(&k->gen, g, memory_order_release);
    }
    pthread_mutex_unlock(&open_lock);
    return rc;
}
