/*
 * lmc.h - one cache shared by every process on a host, stored in LMDB.
 *
 * lmc gives prefork workers (gunicorn, uWSGI, Apache prefork, C servers) one
 * shared cache without a server: every process maps the same LMDB environment,
 * reads cost a B-tree lookup and a copy, and writes are short LMDB write
 * transactions.  Entries carry a TTL in milliseconds, keys can be invalidated
 * by prefix, and a sweeper (lmc_sweep) evicts expired and overflow entries.
 *
 * Conventions used throughout this header:
 * - Every function that can fail returns an int: LMC_OK (0) or one of the
 *   negative LMC_* codes below.  New codes may be added in later minor
 *   versions; treat any unknown negative value as an error and print it with
 *   lmc_strerror().
 * - Ownership of every pointer is stated as *borrowed* (valid until a stated
 *   event, the caller must not free it), *new* (the caller frees it with the
 *   named function) or *copied* (the library keeps no reference).
 * - Input buffers are always copied.  Nothing is retained after a call returns
 *   except what the handle owns.
 * - A handle is safe to use from many threads at once, and keeps working in a
 *   child process after fork() without any call from the user: the child's
 *   first call on it, whichever it is (a get too), first reopens the very
 *   cache directory the parent opened, even if its path names another one by
 *   now, and never creates anything.  That reopen can wait up to 2 s for
 *   another process's open and fail the call (see lmc_reopen_after_fork(),
 *   which does it where the caller chooses).  A child's lmc_open() of a
 *   cache it inherited open reopens it at once, waiting as any open does.
 *   If the cache was removed in between, the child's calls return LMC_EIO.
 *
 * ABI: releases with the same LMC_VERSION_MAJOR are binary compatible.  No
 * public struct changes its size or moves a field within a major version, and
 * every struct that may gain fields carries reserved space that later minor
 * versions take them from: lmc_options, lmc_sweep_options, lmc_sweep_result,
 * lmc_verify_options, lmc_verify_result, lmc_counters (the counters, one
 * struct embedded in both lmc_stat and lmc_proc_stat, so that a new counter
 * moves neither the gauges nor the per-process fields), lmc_stat,
 * lmc_proc_stat, lmc_stat_field and lmc_info.  Reserved fields of a struct
 * the caller passes in must be zero (else LMC_EINVAL), so that a later
 * version can give them a meaning whose default is 0; reserved fields the
 * library fills are zero.  lmc_value only ever reaches the caller through a
 * pointer from the library, so it may grow at its end.  lmc_key and lmc_item
 * are arrays the caller lays out: they never change within a major version.
 * Before version 1.0 (LMC_VERSION_MAJOR 0) the ABI may still change between
 * minor versions; 1.0 freezes it.
 */
#ifndef LMC_H
#define LMC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define LMC_VERSION_MAJOR 0
#define LMC_VERSION_MINOR 1
#define LMC_VERSION_PATCH 0
/** One integer that orders versions: major * 10000 + minor * 100 + patch. */
#define LMC_VERSION_NUMBER \
    (LMC_VERSION_MAJOR * 10000 + LMC_VERSION_MINOR * 100 + LMC_VERSION_PATCH)
#define LMC_VERSION_STRING "0.1.0"

/* Symbol visibility: the library is built with -fvisibility=hidden and only
 * what carries LMC_API is exported. */
#if defined(__GNUC__) || defined(__clang__)
#define LMC_API __attribute__((visibility("default")))
#define LMC_NODISCARD __attribute__((warn_unused_result))
#else
#define LMC_API
#define LMC_NODISCARD
#endif

/* ------------------------------------------------------------------------ */
/* Return codes                                                             */
/* ------------------------------------------------------------------------ */

/*
 * All codes are negative and live in a range of their own (-33001 and below),
 * so they never collide with -errno values or with LMDB's codes.  The table
 * drives the enum, lmc_strerror() and lmc_errname().  A code keeps its value
 * for ever: new codes take the next free one.
 *
 * LMC_NOTFOUND is an answer, not a failure: no live entry for the key.  "No
 * cache at this path" is LMC_ENOCACHE, so that an open's failure never reads
 * as a miss.  LMC_EBUSY means one of: the reader table is full even after
 * clearing the slots of dead processes; the call was made from inside an lmc
 * callback on the same cache (lmc_view_fn); another process has held the
 * cache directory's open lock for longer than an open waits (60 s; 2 s for
 * the reopen of a child after fork); the cache is already open read-only in
 * this process and a read-write open was asked for; lmc_verify found no free
 * reader slot, or no stable snapshot.  The message (lmc_errmsg) says which.
 */
#define LMC_ERRNO_MAP(X)                                                            \
    X(NOTFOUND, -33001, "no such entry (a miss)")                                  \
    X(EXISTS, -33002, "a live entry already exists for this key")                  \
    X(EINVAL, -33003, "invalid argument")                                          \
    X(ERANGE, -33004, "buffer too small, or number out of range")                  \
    X(ETOOBIG, -33005, "key or value can never fit in this cache")                 \
    X(ENOSPC, -33006, "no room left in the cache after eviction")                  \
    X(ENOTNUM, -33007, "stored value is not a decimal integer")                    \
    X(ECHANGED, -33008, "entry changed since its version was read")                \
    X(EPERM, -33009, "unsafe or forbidden path or permission")                     \
    X(ECORRUPT, -33010, "not an lmc cache, or its files are damaged")              \
    X(EVERSION, -33011, "cache written by an incompatible format version")         \
    X(ENOMEM, -33012, "out of memory")                                             \
    X(EIO, -33013, "I/O or system error")                                          \
    X(EREADONLY, -33014, "handle was opened read-only")                            \
    X(EBUSY, -33015, "resource busy: reader table full, call from inside a callback, "     \
                     "open lock held by another process, or already open read-only")       \
    X(ENOCACHE, -33016, "no lmc cache at this path")

enum {
    LMC_OK = 0,
#define LMC__ERRNO_ENUM(name, value, text) LMC_##name = (value),
    LMC_ERRNO_MAP(LMC__ERRNO_ENUM)
#undef LMC__ERRNO_ENUM
};

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                      */
/* ------------------------------------------------------------------------ */

/** An open cache.  Opaque; one per process and cache path (opening the same
 *  path again in one process shares the underlying environment); safe to use
 *  from many threads; fork-aware. */
typedef struct lmc lmc;

/** Open flags, for lmc_options.flags. */
#define LMC_OPEN_RDONLY 0x1u   /**< no writes; never creates anything (it only
                                    reserves the storage of files an older lmc
                                    left sparse, which changes no byte) */
#define LMC_OPEN_NOCREATE 0x2u /**< fail with LMC_ENOCACHE if there is no cache */
#define LMC_OPEN_RESET 0x4u    /**< start empty: remove what open reports as
                                    damaged or foreign (LMC_ECORRUPT, LMC_EVERSION)
                                    and recreate it; empty a valid cache (recreated
                                    with the given map_size if no other process
                                    has it open, emptied in place otherwise).
                                    Under the names of the cache's files it
                                    removes files, FIFOs, sockets, device nodes
                                    and empty directories; a directory that holds
                                    something stays (LMC_ECORRUPT: remove it by
                                    hand). */

/** Options for lmc_open().  Zero-initialised means all defaults. */
typedef struct lmc_options {
    uint64_t map_size;      /**< capacity in bytes when creating; 0 = 1 GiB.
                                 Rounded up to the page size, at least 1 MiB.
                                 An existing cache keeps the size it was created
                                 with (see LMC_OPEN_RESET). */
    int64_t default_ttl_ms; /**< TTL used by LMC_TTL_DEFAULT; 0 = never expire;
                                 0 .. LMC_TTL_MAX, else LMC_EINVAL */
    unsigned mode;          /**< permission bits of the files; 0 = 0600 (files)
                                 and 0700 (directory).  Group bits (e.g. 0660)
                                 share the cache with the group; the directory
                                 gets the matching x bits.  The umask is not
                                 applied. */
    unsigned max_readers;   /**< LMDB reader slots (one per thread using the
                                 cache); 0 = 1024.  Only the first process to
                                 open the cache sizes the table. */
    unsigned flags;         /**< LMC_OPEN_* bits; unknown bits are LMC_EINVAL */
    unsigned reserved_int;  /**< must be zero */
    uint64_t reserved[6];   /**< must be zero (options of later versions) */
} lmc_options;

/** Largest TTL in milliseconds, of a ttl_ms argument and of default_ttl_ms:
 *  2^62 ms, about 146 million years.  It keeps now + TTL within an int64_t
 *  for as long as the clock reads less than 2^62 ms (until about 146 million
 *  years after 1970), so a default_ttl_ms that lmc_open accepted never makes
 *  a write fail.  Larger values are LMC_EINVAL. */
#define LMC_TTL_MAX ((int64_t)1 << 62)
/** ttl_ms argument: use the handle's default_ttl_ms. */
#define LMC_TTL_DEFAULT (-1)
/** ttl_ms argument: never expire.  Any value > 0 is milliseconds from now. */
#define LMC_TTL_NEVER 0
/** ttl_ms argument of writes that replace a value (set, replace, cas,
 *  set_many): keep the expiry time of the live entry being replaced; an
 *  entry that did not exist gets the handle's default.  Elsewhere it means
 *  the same as LMC_TTL_DEFAULT. */
#define LMC_TTL_KEEP (-2)

/** Largest key, in bytes.  Keys are 1 .. LMC_MAX_KEY bytes of any value. */
#define LMC_MAX_KEY 65536u

/**
 * @brief Open (and by default create) the cache stored in directory @p path.
 *
 * The directory is created with the requested mode if missing.  Open refuses
 * a directory or file that is a symbolic link, is owned by a user other than
 * the caller or root (unless mode shares with the group and the object belongs
 * to one of the caller's groups), is writable by others, or is group-writable
 * when mode does not share with the group: LMC_EPERM, with a message naming
 * the path.  Files that are not an lmc cache, and anything but a regular file
 * where a file of the cache should be (a FIFO, a directory, ...), give
 * LMC_ECORRUPT, and a cache of another format version LMC_EVERSION, unless
 * LMC_OPEN_RESET is given; no open ever blocks on such an object.  A cache on
 * a disk filesystem that was not shut down cleanly before a reboot is wiped
 * (its unsynced writes cannot be trusted); on tmpfs a reboot empties it anyway.
 *
 * Every file of the cache is mapped by every process, and a page of a mapping
 * that the filesystem cannot supply is a SIGBUS in whichever process touches
 * it.  So when open returns, read-write or read-only, every file has all its
 * storage (data.mdb: map_size; lock.mdb: 64 bytes per reader slot; stats:
 * 1.1 MB; recency: 1.6 to 3.1% of map_size, at most 64 MiB), also the files
 * an older version of lmc left sparse, or open fails with LMC_ENOSPC.  A
 * creating open that fails removes what it made: no half-made cache and no
 * new directory stays behind.  The directory and files get exactly the
 * documented modes whatever the umask.  Only the last component of @p path is
 * created.
 *
 * @param[out] out   the new handle; set to NULL on failure.  *new*: release
 *                   with lmc_close().
 * @param[in]  path  directory of the cache; *copied*.  Best on tmpfs, e.g.
 *                   "/dev/shm/myapp".
 * @param[in]  opts  options, or NULL for all defaults; *copied*.
 * @return LMC_OK; LMC_EINVAL (NULL argument, unknown flag, bad option,
 *         reserved fields not zero); LMC_ENOCACHE (no cache at @p path, with
 *         LMC_OPEN_NOCREATE or LMC_OPEN_RDONLY: no directory, or one without
 *         the cache's files; or, for a creating open, the parent directory of
 *         @p path does not exist); LMC_EPERM; LMC_ECORRUPT; LMC_EVERSION;
 *         LMC_ENOSPC (the filesystem cannot hold the cache's files: they are
 *         reserved in full, see above); LMC_EBUSY (already open read-only in
 *         this process and now asked read-write, or another process has held
 *         the directory's open lock for 60 s); LMC_ENOMEM; LMC_EIO.
 *         On failure, lmc_errmsg(NULL) gives the detailed message.
 */
LMC_API LMC_NODISCARD int lmc_open(lmc **out, const char *path, const lmc_options *opts);

/**
 * @brief Close a handle.  NULL is fine.
 *
 * Releases this process's reader slots and stats slot.  Must not be called
 * while another thread is still using the handle or from inside a callback.
 * In a child process that inherited the handle across fork(), closing touches
 * nothing that belongs to the parent.
 */
LMC_API void lmc_close(lmc *c);

/**
 * @brief In a child process after fork(), reopen the cache of a handle the
 * parent opened: now, rather than inside the child's first call on it.
 *
 * LMDB cannot be used through an environment inherited across fork(), so the
 * first call of a child on such a handle, any call (a get too), closes the
 * inherited environment, touching nothing of the parent's, and opens the
 * very directory the parent opened, creating nothing.  That reopen costs
 * about half a millisecond, waits for other processes' opens of the cache
 * (they hold its directory lock) for at most 2 s, and can fail the call that
 * runs it with the codes listed below, which no call documents otherwise.
 * Call this function where that cost and those codes are welcome instead,
 * e.g. in a prefork server's post-fork hook, before the child serves
 * anything; it waits for the directory lock as long as lmc_open() (60 s).
 * Threads of the child may call it, or any other call, at once: one of them
 * reopens and the others wait for it.  A reopen that fails leaves the handle
 * to be reopened by the next call.
 *
 * @return LMC_OK, also in the process that opened the handle (nothing is
 *         done there) and once the handle was reopened; LMC_EINVAL (NULL
 *         handle); LMC_EBUSY (another process held the directory's open lock
 *         for the whole wait, or called from inside a callback on this
 *         cache); LMC_EIO (the cache, or one of its files, was removed after
 *         the parent opened it); LMC_EPERM (the directory or a file no longer
 *         passes the checks of lmc_open); LMC_ECORRUPT; LMC_EVERSION;
 *         LMC_ENOSPC; LMC_ENOMEM.  The message is in lmc_errmsg(c).
 */
LMC_API int lmc_reopen_after_fork(lmc *c);

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * All writes are one short LMDB write transaction each and are atomic across
 * processes.  When the map is full they evict (expired entries first, then the
 * entries closest to expiry, then entries without TTL by approximate LRU) and
 * retry.  A reader in the middle of a get pins the pages freed after its
 * snapshot; a write that needs them waits for it (sleeping, 250 ms at most in
 * all) instead of evicting.  Common return codes of every write:
 *   LMC_EINVAL    NULL handle, NULL key, key of 0 bytes, NULL val with vlen > 0,
 *                 ttl_ms < LMC_TTL_KEEP or ttl_ms > LMC_TTL_MAX;
 *   LMC_ETOOBIG   key longer than LMC_MAX_KEY, or an entry larger than one
 *                 entry may ever be in this map: half of the map less a reserve
 *                 of 1/64 of it (at least 64 pages); decided before anything is
 *                 evicted;
 *   LMC_ENOSPC    no room could be made: a reader stuck inside a read
 *                 transaction for longer than the wait pinned the free pages
 *                 (the message says so), or eviction found nothing left to
 *                 evict, or free space stayed too fragmented for a big entry;
 *   LMC_EREADONLY the handle is read-only;
 *   LMC_EBUSY     called from inside an lmc callback on this cache (see
 *                 lmc_view_fn);
 *   LMC_ENOMEM, LMC_EIO, LMC_ECORRUPT;
 *   and, for the first call of a child process on a handle its parent
 *   opened, what the reopen it runs first returns (see
 *   lmc_reopen_after_fork(): LMC_EBUSY after waiting 2 s for another
 *   process's open, LMC_EIO, LMC_EPERM, LMC_EVERSION, LMC_ENOSPC, ...).
 * A set, replace, cas or set_many that fails with LMC_ETOOBIG or LMC_ENOSPC
 * removes the value it was to replace (a cas only if the entry still has the
 * version it expected; an add removes nothing), as memcached does for a SET it
 * cannot store, so that a caller that ignores the error never serves the old
 * value as if it were the new one.  A set_many removes all of its values in
 * one transaction, so that no process sees some of them removed and the
 * others old; only if that transaction cannot be done (readers pinning the
 * free pages) are they removed one by one, from the pages kept for deletes,
 * and the message says so.
 */

/** Store @p val under @p key, replacing any existing entry.
 *  @param ttl_ms LMC_TTL_DEFAULT, LMC_TTL_NEVER, LMC_TTL_KEEP or milliseconds
 *                from now.
 *  @return LMC_OK or a common write code. */
LMC_API int lmc_set(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                    int64_t ttl_ms);

/** Store only if no live entry exists (an expired one is replaced).
 *  @return LMC_OK; LMC_EXISTS if a live entry exists; a common write code. */
LMC_API int lmc_add(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                    int64_t ttl_ms);

/** Store only if a live entry exists.
 *  @return LMC_OK; LMC_NOTFOUND if there is no live entry; a common write code. */
LMC_API int lmc_replace(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                        int64_t ttl_ms);

/**
 * @brief Compare-and-swap: store only if the live entry still has @p version.
 *
 * Read the version with lmc_get_cas(), lmc_get_view() or lmc_get_many().
 * Every write of an entry gives it a new version (lmc_touch keeps it).
 * @return LMC_OK; LMC_NOTFOUND if there is no live entry; LMC_ECHANGED if the
 *         entry's version differs; a common write code.
 */
LMC_API int lmc_cas(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                    int64_t ttl_ms, uint64_t version);

/** Delete an entry.
 *  @return LMC_OK; LMC_NOTFOUND if there was no live entry (an expired entry
 *          is still removed); a common write code. */
LMC_API int lmc_delete(lmc *c, const void *key, size_t klen);

/**
 * @brief Delete every entry whose key starts with @p prefix (exact for
 * prefixes of any length).
 *
 * Runs in transactions of at most about 1000 deletions so that other writers
 * are never starved; readers are never blocked.  Entries that matched when the
 * call began are gone when it returns (entries written concurrently under the
 * prefix may or may not be).
 * @param[out] removed number of entries removed; may be NULL.
 * @return LMC_OK (also when nothing matched); LMC_EINVAL for plen == 0 (use
 *         lmc_clear); a common write code.  On an error, *removed counts what
 *         was already removed.
 */
LMC_API int lmc_delete_prefix(lmc *c, const void *prefix, size_t plen, uint64_t *removed);

/** Delete every entry.  @return LMC_OK or a common write code. */
LMC_API int lmc_clear(lmc *c);

/**
 * @brief Make every entry whose key starts with @p prefix invisible at once,
 * in every process, in a time that does not depend on how many there are;
 * the sweeper (lmc_sweep()) deletes them later.
 *
 * Every entry under the prefix stored before the call returns is gone for
 * every read and write of every process from then on: gets, get_view,
 * get_many, scans and exists miss it; add, replace, cas, incr, touch and
 * get_lease treat it as absent.  Entries stored under the prefix after the
 * call are seen as usual.  Like lmc_delete_prefix() it refuses the fills
 * that were in progress (lmc_set_if_gen() tokens read before it, fill
 * leases granted before it: see lmc_gen_read()).  An empty prefix (plen 0,
 * prefix may then be NULL) flushes every entry.
 *
 * The call records a marker {prefix, version} in a table of 8 in the
 * cache's stats file, in one short write transaction; until the sweeper has
 * deleted a marker's entries and retired it, the "entries", "key_bytes" and
 * "value_bytes" gauges of lmc_stats() still count them, and the
 * "flush_markers" gauge counts the marker.  When the table is full or the
 * prefix is longer than 64 bytes, the call deletes the entries itself, as
 * lmc_delete_prefix() does (counted in "flush_fallbacks"): then it takes a
 * time proportional to their number, and readers see them until it
 * returns.  Processes that run an lmc version without this call do not see
 * the markers: do not mix versions on a cache that uses it.
 *
 * @param prefix *copied*; may be NULL when plen is 0.
 * @return LMC_OK (also when nothing matched); LMC_EINVAL (NULL handle, or
 *         NULL prefix with plen > 0); LMC_EREADONLY; a common write code.  On
 *         an error the entries may already be invisible, or (the deleting
 *         fallback) some of them deleted.
 */
LMC_API int lmc_flush_prefix(lmc *c, const void *prefix, size_t plen);

/**
 * @brief Add @p delta to the integer stored under @p key, atomically across
 * processes.
 *
 * The value is kept as decimal text ("-12"), so lmc_get() reads it and
 * lmc_set() of decimal text can be incremented.  A missing or expired key
 * starts at 0 and is created with @p ttl_ms; an existing entry keeps its TTL.
 * @param[out] result the new value; may be NULL.
 * @return LMC_OK; LMC_ENOTNUM if the stored value is not a decimal integer
 *         (optional '-', 1 to 19 digits); LMC_ERANGE if the result overflows
 *         int64_t (nothing is written); a common write code.
 */
LMC_API int lmc_incr(lmc *c, const void *key, size_t klen, int64_t delta, int64_t *result,
                     int64_t ttl_ms);

/** Give a live entry a new TTL (LMC_TTL_NEVER removes its expiry).  The value
 *  and version are unchanged.
 *  @return LMC_OK; LMC_NOTFOUND if there is no live entry; a common write code. */
LMC_API int lmc_touch(lmc *c, const void *key, size_t klen, int64_t ttl_ms);

/** One item of lmc_set_many().  All pointers are *copied* by the call. */
typedef struct lmc_item {
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
    int64_t ttl_ms; /**< LMC_TTL_DEFAULT, LMC_TTL_NEVER, LMC_TTL_KEEP or ms */
} lmc_item;

/** Store @p n items in one transaction: all of them or none.
 *  @return LMC_OK; a common write code (LMC_EINVAL if any item is invalid,
 *          before anything is written; n == 0 is LMC_OK). */
LMC_API int lmc_set_many(lmc *c, const lmc_item *items, size_t n);

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Reads never write to LMDB: an expired entry reads as a miss (counted as
 * "expired") and is removed later by the sweeper or a writer.  An entry whose
 * stored header is malformed reads as a miss and is counted as "malformed".
 * Common return codes of every read: LMC_NOTFOUND (a miss; lmc_errmsg gives ""),
 * LMC_EINVAL (NULL handle or key, empty key), LMC_ETOOBIG (key longer than
 * LMC_MAX_KEY), LMC_EBUSY (reader table full even after clearing stale slots,
 * or called from inside a callback on this cache, see lmc_view_fn), LMC_EIO;
 * and, for the first call of a child process on a handle its parent opened,
 * what the reopen it runs first returns: it can wait up to 2 s for another
 * process's open of the cache, and fail with LMC_EBUSY (that wait), LMC_EIO
 * (the cache was removed), LMC_EPERM, LMC_ECORRUPT, LMC_EVERSION, LMC_ENOSPC
 * or LMC_ENOMEM (see lmc_reopen_after_fork(), which a child can call first
 * to take that cost where it chooses).
 */

/**
 * @brief Copy the value stored under @p key into @p buf.
 * @param[out] buf  destination of @p cap bytes; may be NULL when cap is 0.
 * @param[out] vlen the value's length; may be NULL.  Set on LMC_OK and
 *                  LMC_ERANGE.
 * @return LMC_OK; LMC_ERANGE if cap is smaller than the value (nothing is
 *         copied; *vlen says how much is needed); a common read code.
 */
LMC_API int lmc_get(lmc *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);

/** Whether a live entry exists, without reading its value.  Counted as a
 *  hit or a miss (with no bytes read), and refreshes the entry's recency
 *  like a get.
 *  @return LMC_OK if it exists; a common read code (LMC_NOTFOUND if not). */
LMC_API int lmc_exists(lmc *c, const void *key, size_t klen);

/** Like lmc_get(), and also return the entry's version for lmc_cas().
 *  @param[out] version may be NULL. */
LMC_API int lmc_get_cas(lmc *c, const void *key, size_t klen, void *buf, size_t cap,
                        size_t *vlen, uint64_t *version);

/**
 * @brief Return a copy of the value in a new buffer.
 * @param[out] val  *new*: free with lmc_free().  Never NULL on LMC_OK (a
 *                  value of 0 bytes gives a valid 1-byte allocation).
 * @param[out] vlen the value's length.
 * @return LMC_OK; LMC_ENOMEM; a common read code.
 */
LMC_API int lmc_get_alloc(lmc *c, const void *key, size_t klen, void **val, size_t *vlen);

/** Free a buffer returned by lmc_get_alloc().  NULL is fine. */
LMC_API void lmc_free(void *p);

/** What a zero-copy read sees.  All pointers are *borrowed*: valid only until
 *  the callback returns; never modify or free them. */
typedef struct lmc_value {
    const void *key;       /**< the whole key */
    size_t klen;
    const void *data;      /**< the value, inside the shared map */
    size_t len;
    uint64_t version;      /**< for lmc_cas() */
    int64_t expires_at_ms; /**< ms since the Unix epoch; 0 = never */
} lmc_value;

/** Callback of lmc_get_view(): return 0, or any non-zero int that the call
 *  then returns unchanged (use positive values to tell them apart from lmc
 *  codes).  It runs inside a read transaction: keep it short.  Every call on
 *  the same cache (through any handle of this process) made from inside it
 *  returns LMC_EBUSY with a message, also from inside the callback of a call
 *  on another cache made from it; calls on other caches work, and their
 *  callbacks may nest.  The same holds for the callbacks of lmc_get_many()
 *  and lmc_scan().  A callback must return normally (no longjmp out of it). */
typedef int (*lmc_view_fn)(void *arg, const lmc_value *v);

/**
 * @brief Zero-copy read: call @p fn with the entry, inside the read
 * transaction, without copying the value.
 * @return LMC_OK; fn's non-zero return; a common read code (fn is not called
 *         on a miss).
 */
LMC_API int lmc_get_view(lmc *c, const void *key, size_t klen, lmc_view_fn fn, void *arg);

/** A key for lmc_get_many().  *copied* (only read during the call). */
typedef struct lmc_key {
    const void *key;
    size_t klen;
} lmc_key;

/** Callback of lmc_get_many(), called once per key in order.  @p v is NULL on
 *  a miss; otherwise *borrowed* as in lmc_view_fn.  Return 0 to go on, or a
 *  non-zero int to stop; the call then returns it. */
typedef int (*lmc_many_fn)(void *arg, size_t index, const lmc_value *v);

/**
 * @brief Read @p n keys in one read transaction (one consistent snapshot).
 * @return LMC_OK (misses are reported through the callback, not as an error);
 *         fn's non-zero return; LMC_EINVAL if any key is invalid (checked
 *         before the first callback); a common read code.
 */
LMC_API int lmc_get_many(lmc *c, const lmc_key *keys, size_t n, lmc_many_fn fn, void *arg);

/** Callback of lmc_scan(); @p e is *borrowed* as in lmc_view_fn.  Return 0 to
 *  go on or non-zero to stop (the call returns it). */
typedef int (*lmc_scan_fn)(void *arg, const lmc_value *e);

/**
 * @brief Visit the live entries whose key starts with @p prefix, in key order
 * (bytewise, for keys shorter than 448 bytes; longer keys sort by their first
 * 448 bytes and then by hash).
 *
 * The scan reads in batches of short read transactions, so it never pins old
 * pages for long; it is not one snapshot: entries written during the scan may
 * or may not be visited.  plen == 0 visits every entry.
 * @return LMC_OK; fn's non-zero return; a common read code.
 */
LMC_API int lmc_scan(lmc *c, const void *prefix, size_t plen, lmc_scan_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Filling from a store behind the cache, without the fill race             */
/* ------------------------------------------------------------------------ */

/*
 * When lmc is the L1 in front of another store (every host's lmc in front of
 * one Redis, say), a caller that misses reads the store behind and then
 * stores what it read.  If the key is invalidated in between (the store
 * behind changed it, and someone deleted the key here), a plain lmc_set
 * would store the value read before the invalidation after it: a stale entry
 * that nothing removes until its TTL runs out.  The generations close that
 * race:
 *
 *     uint64_t gen;
 *     lmc_gen_read(c, key, klen, &gen);           before reading the store
 *     ... read the value (and its TTL) from the store behind ...
 *     rc = lmc_set_if_gen(c, key, klen, val, vlen, ttl_ms, gen);
 *     rc == LMC_ECHANGED: use the value, it is just not cached
 *
 * What counts as an invalidation: every lmc_delete of the key (whether or
 * not the key was present), and every lmc_delete_prefix, lmc_flush_prefix
 * and lmc_clear (whatever their prefix: those refuse every fill in
 * progress), in any process of the host.  Writes (lmc_set and the others)
 * are not invalidations.  The check is made inside the write transaction of the
 * store, and an invalidation counts from the moment its call begins: a
 * value read from the store behind before an invalidation call began is
 * either refused or removed by that call.  Keys share 256 counters by a hash,
 * so an invalidation of another key may also refuse a fill (never the
 * reverse).  Tokens are only meaningful for the cache they were read from.
 *
 * With fill leases (below) the race is closed as well: a delete, prefix
 * delete or clear ends the leases of the keys it removes, and lmc_lease_fill
 * then refuses with LMC_ECHANGED.
 */

/**
 * @brief Read the invalidation generation of @p key, before reading its
 * value from the store behind the cache.  Costs two loads from shared
 * memory; writes nothing.
 * @param[out] gen the token to pass to lmc_set_if_gen(); set to 0 on error.
 *             A read-only handle on a cache that was never opened for writing
 *             (no stats file yet) reads 0.
 * @return LMC_OK; LMC_EINVAL (NULL handle, key or gen; empty key);
 *         LMC_ETOOBIG (key longer than LMC_MAX_KEY); LMC_EBUSY (called from
 *         inside a callback on this cache); in a child after fork, what
 *         reopening the cache can return (see lmc_open).
 */
LMC_API int lmc_gen_read(lmc *c, const void *key, size_t klen, uint64_t *gen);

/**
 * @brief Store @p val like lmc_set(), unless the key was invalidated since
 * @p gen was read with lmc_gen_read() (see above).
 * @param ttl_ms as for lmc_set(); for a value from Redis, at most what the
 *               key has left there (PTTL).
 * @return LMC_OK; LMC_ECHANGED if the key was invalidated meanwhile (nothing
 *         is stored; counted as gen_rejects); a common write code.
 */
LMC_API int lmc_set_if_gen(lmc *c, const void *key, size_t klen, const void *val, size_t vlen,
                           int64_t ttl_ms, uint64_t gen);

/* ------------------------------------------------------------------------ */
/* Fill leases: compute each value once for the whole host                  */
/* ------------------------------------------------------------------------ */

/*
 * A get that misses can ask for a fill lease on the key.  Exactly one caller
 * on the host gets it and computes the value; the others get the stale value
 * (during the entry's grace, see lmc_lease_fill) or wait for the fill, for
 * at most the time they choose, and compute without caching if it runs out.
 * Waiters sleep on a futex that the end of the lease wakes; they never poll
 * for the fill.
 *
 * A lease ends when its holder fills it (lmc_lease_fill), gives it up
 * (lmc_lease_abandon), or loses it: when its process dies (a waiting caller
 * notices within a few milliseconds and takes over), when its lease time has
 * passed (a holder that is alive but stuck), or when the key is deleted,
 * invalidated by prefix or cleared meanwhile (so that a value computed from
 * what the invalidation made stale is never stored).  Only the holder can
 * fill or abandon a lease.  Leases are never evicted, are invisible to reads,
 * scans and the entry gauges, and the sweeper removes those past their time.
 *
 * Early refresh (XFetch, Vattani, Chierichetti and Lowenstein, VLDB 2015):
 * with early_beta > 0, a hit may also hand its caller the lease shortly
 * before the entry expires, with a probability that grows as expiry nears
 * and with the time the value took to compute (recorded by lmc_lease_fill),
 * so that a hot key is refreshed before anyone misses it.
 */

/** Options of lmc_get_lease().  Zero-initialised means all defaults. */
typedef struct lmc_lease_options {
    int64_t lease_ms;     /**< how long a holder may take to fill before
                               another caller may take the lease over;
                               0 = 30000; at most LMC_TTL_MAX */
    int64_t wait_ms;      /**< how long to wait for another holder's fill
                               when there is no stale value to return;
                               0 = return LMC_LEASE_TIMEOUT at once */
    double early_beta;    /**< > 0: early refresh with this XFetch beta (1.0
                               is the paper's choice; larger refreshes
                               earlier); 0 = off */
    unsigned flags;       /**< must be 0 */
    unsigned reserved_u;  /**< must be 0 */
    uint64_t reserved[4]; /**< must be zero */
} lmc_lease_options;

/** A lease held, from lmc_get_lease(); pass it to lmc_lease_fill() or
 *  lmc_lease_abandon().  Plain data: copy it freely; it is only good for the
 *  key it was got for. */
typedef struct lmc_lease {
    uint64_t token;      /**< identifies this lease; 0: no lease */
    int64_t granted_ms;  /**< when it was granted (ms since the Unix epoch) */
    uint64_t reserved[2];
} lmc_lease;

/** What lmc_get_lease() found (its *outcome). */
enum {
    LMC_LEASE_HIT = 0,     /**< a fresh value; no lease */
    LMC_LEASE_STALE = 1,   /**< the stale value, within its grace: another
                                caller holds the lease and refreshes it */
    LMC_LEASE_FILL = 2,    /**< no value: you hold the lease; compute the value
                                and lmc_lease_fill() it, or lmc_lease_abandon() */
    LMC_LEASE_REFRESH = 3, /**< a value (stale within its grace, or fresh and
                                chosen for early refresh) and you hold the
                                lease: use it, and refresh it */
    LMC_LEASE_TIMEOUT = 4  /**< no value: another caller holds the lease and did
                                not fill it within wait_ms; compute the value
                                and do not store it */
};

/**
 * @brief Get a value, or the lease to compute it (see above).
 * @param[out] val     with a value (HIT, STALE, REFRESH): *new*, free with
 *                     lmc_free(); else NULL.
 * @param[out] vlen    its length (0 without a value).
 * @param[in]  opts    may be NULL for defaults.
 * @param[out] lease   set when you hold the lease (FILL, REFRESH); token 0
 *                     otherwise.
 * @param[out] outcome one of LMC_LEASE_*.
 * @return LMC_OK (with *outcome); LMC_EINVAL (NULL out pointer, bad options);
 *         LMC_ENOMEM; LMC_EREADONLY (a read-only handle can only get hits,
 *         and waits for nobody); a common read or write code (asking for a
 *         lease writes).
 */
LMC_API int lmc_get_lease(lmc *c, const void *key, size_t klen, void **val, size_t *vlen,
                          const lmc_lease_options *opts, lmc_lease *lease, int *outcome);

/**
 * @brief lmc_get_lease() without the copy: @p fn is called with the value
 * (HIT, STALE, REFRESH; not with FILL or TIMEOUT), as lmc_get_view() calls
 * its callback.  A fresh hit runs it inside the read transaction, and costs
 * what lmc_get_view() costs; a value that took the slow path (a wait, a
 * grant) is copied inside the write transaction and handed to fn after the
 * commit.  Either way the value is *borrowed* for the callback's duration,
 * and calls on the same cache from inside it return LMC_EBUSY.
 * @param[out] lease   as for lmc_get_lease().
 * @param[out] outcome as for lmc_get_lease().
 * @return LMC_OK (with *outcome); fn's non-zero return, in which case no
 *         lease is held (one the call took is given back, counted as a
 *         failed refresh); the codes of lmc_get_lease() (LMC_EINVAL also for
 *         a NULL fn).
 */
LMC_API int lmc_get_lease_view(lmc *c, const void *key, size_t klen,
                               const lmc_lease_options *opts, lmc_view_fn fn, void *arg,
                               lmc_lease *lease, int *outcome);

/**
 * @brief Store the value computed under a lease, end the lease, and wake
 * the callers waiting for it.
 *
 * The entry records how long the value took to compute (from the lease's
 * grant to this call), for early refresh.
 * @param ttl_ms   as for lmc_set (LMC_TTL_KEEP keeps a stale entry's TTL).
 * @param grace_ms how long after its TTL the value may still be served
 *                 stale by lmc_get_lease while one caller refreshes it (the
 *                 entry is kept that long; plain reads treat it as expired
 *                 after its TTL); 0 = none; at most 2^32 - 1 ms.
 * @return LMC_OK; LMC_ECHANGED if this lease is no longer held (taken over
 *         by another caller, or the key was deleted, invalidated, cleared or
 *         written meanwhile: the value is not stored); LMC_EINVAL (no lease,
 *         bad ttl_ms or grace_ms); a common write code (a value that cannot
 *         be stored ends the lease too).
 */
LMC_API int lmc_lease_fill(lmc *c, const lmc_lease *lease, const void *key, size_t klen,
                           const void *val, size_t vlen, int64_t ttl_ms, int64_t grace_ms);

/**
 * @brief Give up a lease without storing anything (the computation failed,
 * or its result is not to be cached): a stale value stays until its grace
 * runs out (counted as a failed refresh), and the waiting callers are woken
 * (one of them takes the lease over).
 * @return LMC_OK; LMC_ECHANGED if the lease is no longer held; LMC_EINVAL; a
 *         common write code.
 */
LMC_API int lmc_lease_abandon(lmc *c, const lmc_lease *lease, const void *key, size_t klen);

/* ------------------------------------------------------------------------ */
/* Sweeping and eviction                                                    */
/* ------------------------------------------------------------------------ */

/** Options of lmc_sweep().  Zero-initialised means all defaults. */
typedef struct lmc_sweep_options {
    double high_watermark; /**< evict when fill is above this; 0 = 0.80 */
    double low_watermark;  /**< ... down to this; 0 = 0.70; must be <= high */
    unsigned batch;        /**< deletions per write transaction; 0 = 1000 */
    uint64_t max_keys;     /**< stop after this many deletions; 0 = no limit */
    uint64_t max_time_ms;  /**< stop after about this long; 0 = no limit */
    unsigned flags;        /**< LMC_SWEEP_* bits */
    uint64_t reserved[4];  /**< must be zero */
} lmc_sweep_options;

#define LMC_SWEEP_NOEVICT 0x1u /**< only remove expired entries */
#define LMC_SWEEP_FORCE 0x2u   /**< evict down to the low watermark even if
                                    fill is not above the high one */

/** What one lmc_sweep() did. */
typedef struct lmc_sweep_result {
    uint64_t expired;         /**< expired entries removed */
    uint64_t evicted_soonest; /**< live entries with a TTL evicted, soonest
                                   to expire first */
    uint64_t evicted_lru;     /**< entries without TTL evicted, coldest first */
    uint64_t readers_cleared; /**< stale reader slots of dead processes */
    uint64_t transactions;    /**< write transactions committed */
    double fill_before;       /**< fill ratio before the pass (0..1) */
    double fill_after;        /**< fill ratio after the pass */
    uint64_t elapsed_us;      /**< wall time of the pass */
    int complete;             /**< 1 if the pass finished its work, 0 if a
                                   budget (max_keys, max_time_ms) stopped it */
    int reserved_int;
    uint64_t leases_removed;  /**< fill leases removed: past their lease time,
                                   or their holder gone */
    uint64_t flushed;         /**< entries removed that lmc_flush_prefix() had
                                   made invisible */
    uint64_t rows_refiled;    /**< expiry rows that lagged behind an entry
                                   rewritten with a later expiry, found due
                                   and filed again at the entry's time (the
                                   entry stays) */
    uint64_t reserved[1];
} lmc_sweep_result;

/**
 * @brief One sweeper pass: clear stale reader slots, delete expired entries
 * through the expiry index (filing again the rows that lag behind entries
 * rewritten with a later expiry, see rows_refiled), the entries lmc_flush_prefix() made invisible
 * (then retiring its markers) and the fill leases that can no longer be filled
 * (past their lease time, or their holder gone), and if fill is above the
 * high watermark evict down to the low one (soonest-to-expire first, then
 * entries without TTL by approximate LRU).  Every write transaction holds at most @c batch deletions.
 * @param opts   may be NULL for defaults.
 * @param[out] res may be NULL.
 * @return LMC_OK; LMC_EINVAL (bad watermarks, reserved fields not zero);
 *         LMC_EREADONLY; a common write code.
 */
LMC_API int lmc_sweep(lmc *c, const lmc_sweep_options *opts, lmc_sweep_result *res);

/* ------------------------------------------------------------------------ */
/* Checking for damage                                                      */
/* ------------------------------------------------------------------------ */

/*
 * LMDB trusts the pages of its data file: it checks the meta pages when it
 * opens a file and a page number against the end of the file, but nothing
 * inside a page (the offsets, sizes and order of its keys, the page numbers
 * a branch points to).  A page damaged by a stray write (with MDB_WRITEMAP
 * every process maps the file writable) or a crafted file can therefore
 * crash whichever process reads it, in any read or write call.  lmc_open()
 * checks the meta pages; lmc_verify() checks everything else, in a child
 * process, so that a damaged cache is found without crashing the caller.
 */

/** Options of lmc_verify().  Zero-initialised means all defaults. */
typedef struct lmc_verify_options {
    uint64_t timeout_ms;  /**< give up (LMC_EIO) after this long; 0 = 600000 */
    unsigned flags;       /**< none defined yet; must be 0 */
    unsigned reserved_int;
    uint64_t reserved[4]; /**< must be zero */
} lmc_verify_options;

/** What lmc_verify() checked. */
typedef struct lmc_verify_result {
    uint64_t txnid;              /**< LMDB transaction id of the snapshot checked */
    uint64_t pages;              /**< pages of the file up to the last one in use */
    uint64_t tree_pages;         /**< branch and leaf pages of all trees */
    uint64_t overflow_pages;     /**< pages holding values too large for a leaf */
    uint64_t free_pages;         /**< pages on LMDB's free list */
    uint64_t unreferenced_pages; /**< pages in none of the above (a leak: harmless) */
    uint64_t entries;            /**< entries checked */
    uint64_t entries_with_ttl;   /**< ... of which have an expiry time */
    uint64_t expiry_rows;        /**< rows of the expiry index checked */
    uint64_t elapsed_us;         /**< wall time of the whole check */
    uint64_t leases;             /**< fill lease records checked */
    uint64_t reserved[5];
} lmc_verify_result;

/**
 * @brief Check every page of the cache for damage, in a child process.
 *
 * The call forks.  The child opens the cache's directory afresh (it never
 * uses the caller's LMDB environment), read-only, takes one read snapshot
 * and walks it page by page: every page of every tree (the entries, the
 * expiry index, the meta database and LMDB's free list), checked for its
 * type, its page number, the bounds, sizes and order of its keys, the pages
 * it points to (each in the file, and used only once), the depth and page
 * counts its tree records; every entry's header (and, for long keys, the
 * hash in the stored key); every expiry row against its entry, and every
 * entry with a TTL against its row.  Values themselves carry no checksum:
 * damage to the bytes of a value is not found.  The child reports through a
 * pipe; if it crashes instead (a signal, or a sanitizer's exit), the damage
 * is reported just the same.  Writers and readers go on meanwhile: the
 * snapshot pins pages like any reader for the duration of the check, which
 * reads every page in use once (measured: 0.1 s of CPU for 150,000 small
 * entries with a TTL, 41 MB of pages).  On a cache at capacity, a write
 * that needs the pages freed after that snapshot waits for it like for any
 * reader, and may fail with LMC_ENOSPC if the check outlasts the wait: check
 * a full cache when writes are few.  The calling thread blocks until the
 * child is done; other threads of the caller are not affected.
 *
 * A damaged cache must not be used further: any call can crash on it.
 * Stop every process that uses it, then open it once with LMC_OPEN_RESET
 * (with no other user, that recreates the files, empty, without reading
 * the damaged ones), or run `lmc PATH verify --reset`.  lmc_clear() is no
 * cure: it reads the damaged pages.
 *
 * @param opts may be NULL for defaults; *copied*.
 * @param[out] res may be NULL; filled on LMC_OK, and with what was counted
 *             up to the damage when the walk found it (LMC_ECORRUPT);
 *             zeroed otherwise.
 * @return LMC_OK (no damage found); LMC_ECORRUPT (damage found, or the
 *         child crashed: the message says what and where, and how to reset
 *         the cache); LMC_EINVAL (NULL handle, unknown flags, reserved
 *         fields not zero); LMC_EBUSY (called from inside a callback on
 *         this cache, or no free reader slot for the child); LMC_EIO (the
 *         child could not run, was killed, or did not finish in time; the
 *         cache's directory was replaced, or a file of it removed, since it
 *         was opened); LMC_ENOMEM.
 *         The message of every code but LMC_OK is in lmc_errmsg(c).
 */
LMC_API int lmc_verify(lmc *c, const lmc_verify_options *opts, lmc_verify_result *res);

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Counters (monotonic, summed over every process that ever used the cache
 * since it was created).  X(name, help).
 */
#define LMC_COUNTERS(X)                                                                   \
    X(gets, "key lookups (hits + misses)")                                                \
    X(hits, "lookups that found a live entry")                                            \
    X(misses, "lookups that found no live entry")                                         \
    X(expired, "misses because the entry had expired")                                    \
    X(malformed, "misses because the stored entry was malformed")                         \
    X(sets, "entries stored by set, add, replace, cas, set_many and incr")                \
    X(adds, "add calls")                                                                  \
    X(add_conflicts, "add calls refused because a live entry existed")                    \
    X(deletes, "entries deleted by delete")                                               \
    X(prefix_deletes, "delete_prefix calls")                                              \
    X(prefix_deleted_keys, "entries removed by delete_prefix")                            \
    X(clears, "clear calls")                                                              \
    X(incrs, "incr calls")                                                                \
    X(touches, "touch calls")                                                             \
    X(cas, "cas calls")                                                                   \
    X(cas_conflicts, "cas calls refused because the version changed")                     \
    X(evictions_expired, "expired entries removed by sweeps and by writers")              \
    X(evictions_soonest, "live entries with TTL evicted for room, soonest to expire first") \
    X(evictions_lru, "entries without TTL evicted for room, coldest first")               \
    X(sweeps, "sweeper passes")                                                           \
    X(map_full, "write transactions that found the map full (and waited, evicted or deleted less)")                        \
    X(readers_cleared, "stale reader slots cleared")                                      \
    X(bytes_read, "value bytes returned by hits")                                         \
    X(bytes_written, "value bytes stored")                                                \
    X(pin_waits, "times a write waited for readers to release the free pages they pinned") \
    X(pin_wait_us, "microseconds writes spent waiting for readers to release free pages") \
    X(lease_grants, "fill leases granted (early refreshes and takeovers included)")       \
    X(lease_waits, "lmc_get_lease calls that waited for another holder's fill")           \
    X(lease_wait_us, "microseconds spent waiting for other holders' fills")               \
    X(lease_wait_timeouts, "waits for a fill that ran out (the caller computed uncached)") \
    X(lease_takeovers_dead, "leases taken over from a holder whose process had died")     \
    X(lease_takeovers_expired, "leases taken over after their lease time")                \
    X(stale_served, "stale values served within their grace while another refreshed")    \
    X(refresh_failures, "refreshes abandoned while a stale value stayed in its grace")    \
    X(early_refreshes, "leases handed out early, before expiry, by XFetch")              \
    X(gen_rejects, "lmc_set_if_gen calls refused because the key was invalidated since the token was read") \
    X(prefix_flushes, "flush_prefix calls")                                               \
    X(flush_fallbacks, "flush_prefix calls that deleted at once (marker table full, or prefix over 64 bytes)") \
    X(flushed_keys, "flushed entries removed, by sweeps or by a flush_prefix that deleted at once")

/*
 * Gauges (computed when read).  X(name, type, help).
 */
#define LMC_GAUGES(X)                                                                     \
    X(entries, uint64_t, "live and not yet swept entries")                                \
    X(entries_with_ttl, uint64_t, "entries that have an expiry time")                     \
    X(key_bytes, uint64_t, "bytes of keys stored")                                        \
    X(value_bytes, uint64_t, "bytes of values stored")                                    \
    X(map_size, uint64_t, "capacity of the map in bytes")                                 \
    X(page_size, uint64_t, "LMDB page size in bytes")                                     \
    X(total_pages, uint64_t, "pages in the map")                                          \
    X(used_pages, uint64_t, "pages in use (file high-water mark minus free pages)")       \
    X(free_pages, uint64_t, "pages freed and reusable once no reader needs them")         \
    X(fill, double, "used_pages / total_pages")                                           \
    X(readers, uint64_t, "reader slots held by live processes")                           \
    X(readers_active, uint64_t, "readers inside a read transaction now")                  \
    X(reader_lag, uint64_t, "transactions the oldest reader snapshot is behind")          \
    X(max_readers, uint64_t, "size of the reader table")                                  \
    X(processes, uint64_t, "processes attached (holding a stats slot)")                   \
    X(last_txnid, uint64_t, "id of the last committed write transaction")                 \
    X(readers_stale, uint64_t, "reader slots of dead processes, not yet cleared")         \
    X(flush_markers, uint64_t, "prefix flushes whose entries the sweeper has not removed yet")

/* How many counters and gauges this version has (LMC__COUNT_ONE counts the
 * entries of an X-macro table). */
#define LMC__COUNT_ONE(...) +1
enum {
    LMC__NCOUNTERS = 0 LMC_COUNTERS(LMC__COUNT_ONE),
    LMC__NGAUGES = 0 LMC_GAUGES(LMC__COUNT_ONE)
};

/** Room for counters in lmc_counters, and for gauges in lmc_stat: 8 bytes
 *  each, used or reserved.  Fixed for the major version, so that a counter
 *  or gauge added later takes a reserved slot and moves nothing. */
#define LMC_COUNTER_SLOTS 64
#define LMC_GAUGE_SLOTS 32

/** Every counter, in LMC_COUNTERS order, one uint64_t each, then the
 *  reserved slots: 512 bytes in all.  Embedded in lmc_stat (the totals) and
 *  in lmc_proc_stat (one process), so a counter has the same offset in
 *  both. */
typedef struct lmc_counters {
#define LMC__COUNTER_FIELD(name, help) uint64_t name;
    LMC_COUNTERS(LMC__COUNTER_FIELD)
#undef LMC__COUNTER_FIELD
    uint64_t reserved[LMC_COUNTER_SLOTS - LMC__NCOUNTERS]; /**< zero; counters
                                  of later versions take these */
} lmc_counters;

/** Counters and gauges of a cache, filled by lmc_stats() (768 bytes). */
typedef struct lmc_stat {
    lmc_counters counters; /**< summed over every process since the cache was
                                created; e.g. st.counters.hits */
#define LMC__STAT_GAUGE(name, type, help) type name;
    LMC_GAUGES(LMC__STAT_GAUGE)
#undef LMC__STAT_GAUGE
    uint64_t reserved[LMC_GAUGE_SLOTS - LMC__NGAUGES]; /**< zero; gauges of later
                                                           versions take these */
} lmc_stat;

/**
 * @brief Read every counter and gauge.  Costs one short read transaction and
 * a walk of LMDB's free list; meant for tools and dashboards, not hot paths.
 * @param[out] st filled completely on LMC_OK.
 * @return LMC_OK; LMC_EINVAL; a common read code.
 */
LMC_API int lmc_stats(lmc *c, lmc_stat *st);

/** Counters of one process, from lmc_stats_processes() (600 bytes: the
 *  size of each element of the array it fills). */
typedef struct lmc_proc_stat {
    int64_t pid;           /**< the process; 0 for the shared overflow slot */
    int64_t started_ms;    /**< when it attached, ms since the Unix epoch */
    int alive;             /**< 1 if the process still holds its slot */
    int reserved_int;      /**< zero */
    lmc_counters counters; /**< what this process counted since it attached */
    uint64_t reserved[8];  /**< zero; facts of later versions take these */
} lmc_proc_stat;

/**
 * @brief Counters of each process attached to the cache now (and the shared
 * slot used by processes beyond the slot table, if it was ever used).
 * @param[out] out array of @p cap entries; may be NULL when cap is 0.
 * @param[out] n   number of processes found (may exceed cap; only cap are
 *                 written).
 * @return LMC_OK; LMC_EINVAL (NULL argument); LMC_EBUSY (called from inside
 *         a callback on this cache); in a child after fork, what reopening
 *         the cache can return (see lmc_reopen_after_fork).
 */
LMC_API int lmc_stats_processes(lmc *c, lmc_proc_stat *out, size_t cap, size_t *n);

/** Kind of a field in lmc_stat, for generic printers. */
enum { LMC_FIELD_COUNTER = 1, LMC_FIELD_GAUGE_U64 = 2, LMC_FIELD_GAUGE_DOUBLE = 3 };

/** Describes one field of lmc_stat. */
typedef struct lmc_stat_field {
    const char *name;   /**< e.g. "hits"; static, must not be freed */
    const char *help;   /**< one line of help; static */
    int kind;           /**< LMC_FIELD_* */
    size_t offset;      /**< where the field is in lmc_stat: offsetof(lmc_stat,
                             counters.name) for a counter, offsetof(lmc_stat,
                             name) for a gauge.  A counter's offset less
                             offsetof(lmc_stat, counters) is its offset in
                             any lmc_counters, e.g. lmc_proc_stat.counters. */
    uint64_t reserved[2]; /**< zero */
} lmc_stat_field;

/** @brief The table of lmc_stat fields: the counters, then the gauges, each
 *  in the order of LMC_COUNTERS and LMC_GAUGES.  Later versions add fields
 *  but never rename or remove one: dashboards use the names.
 *  @param[out] n number of entries; may be NULL.
 *  @return static array, must not be freed. */
LMC_API const lmc_stat_field *lmc_stat_fields(size_t *n);

/** Facts about an open cache, from lmc_info(). */
typedef struct lmc_info {
    const char *path;        /**< *borrowed*: valid until lmc_close() */
    uint64_t map_size;       /**< capacity in bytes */
    uint64_t page_size;
    int64_t created_ms;      /**< when the cache was created */
    int64_t default_ttl_ms;  /**< of this handle */
    unsigned format_version; /**< on-disk format of the entries */
    unsigned max_readers;
    int on_tmpfs;            /**< 1 if the files live on tmpfs/ramfs */
    int read_only;           /**< 1 if this handle is read-only */
    const char *lmdb_version; /**< static string */
    uint64_t reserved[8];
} lmc_info;

/** @brief Describe an open cache.
 *  @return LMC_OK; LMC_EINVAL (NULL argument); LMC_EBUSY (called from inside
 *          a callback on this cache); in a child after fork, what reopening
 *          the cache can return (see lmc_reopen_after_fork). */
LMC_API int lmc_info_get(lmc *c, lmc_info *info);

/* ------------------------------------------------------------------------ */
/* Errors and version                                                       */
/* ------------------------------------------------------------------------ */

/** @brief Text of any return code, starting with its name
 *  ("LMC_NOTFOUND: no such entry (a miss)").  Also names -errno values.
 *  @return static string, must not be freed; never NULL. */
LMC_API const char *lmc_strerror(int rc);

/** @brief Name of a return code ("LMC_NOTFOUND"), or "LMC_UNKNOWN".
 *  @return static string, must not be freed; never NULL. */
LMC_API const char *lmc_errname(int rc);

/**
 * @brief The detailed message of the last failed call of the calling thread,
 * if that call was made on @p c (e.g. "LMC_EPERM: refusing /dev/shm/app:
 * owned by uid 1001").  With c == NULL: of a failed call made without a
 * handle, that is lmc_open() or any call given a NULL handle.
 *
 * Every call that returns an lmc error code sets it, and its text starts
 * with the code's name ("LMC_EPERM: "), so that right after a call failed it
 * describes that call and never an older one.  A failure that is an answer
 * rather than an error sets it to "" (cheaply: a miss costs no formatting):
 * LMC_NOTFOUND, LMC_EXISTS and LMC_ECHANGED, and a callback's non-zero value
 * that lmc_get_view(), lmc_get_many() or lmc_scan() return.  A call that
 * succeeds leaves it as it was (a hit writes nothing), so read it right after
 * the call that failed; a call that succeeded after getting over a failure
 * of its own (an eviction that found nothing to evict after its write was
 * committed, say) may leave that failure's message.
 * @return *borrowed*: valid until the next lmc call on this thread; "" if the
 *         last failed call of this thread was made on another handle, had no
 *         message, or there was none.
 */
LMC_API const char *lmc_errmsg(const lmc *c);

/** @brief Runtime version.  Each out pointer may be NULL.
 *  @return "0.1.0", static. */
LMC_API const char *lmc_version(int *major, int *minor, int *patch);

#ifdef __cplusplus
}
#endif

#endif /* LMC_H */
