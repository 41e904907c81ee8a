/*
 * core.h - the per-process state of one cache, opened and released (core.c):
 * the open sequence of a cache directory, the reopen in a child after fork,
 * and the clean shutdown of a cache on disk.
 */
#ifndef LMC_CORE_H
#define LMC_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "handle.h"

/* Fork generation, bumped by the atfork child handler (open.c): a core whose
 * generation differs was opened by an ancestor of this process. */
extern _Atomic unsigned lmc__fork_gen;

/* Internal open flag: the reopen of an inherited core in a child after fork.
 * Users cannot pass it: lmc_open refuses unknown bits. */
#define LMC__OPEN_REOPEN 0x80000000u

/*
 * How long an open waits for the directory lock, which another process holds
 * while it opens the cache (about half a millisecond for a cache that
 * exists, longer for one it creates: its files are reserved in full).
 * lmc_open and lmc_reopen_after_fork wait a minute: only a process stopped
 * in the middle of its open holds the lock that long.  The reopen of a child
 * inside any other call, a get included, waits 2 s: a reopen holds the lock
 * for 0.5 ms (measured on maps of 1 and 8 GiB on tmpfs), and the last of 64
 * children of one master reopening at once on 2 CPUs waited 28 ms, so 2 s is
 * some 70 times that, room for sanitizer and valgrind builds, which run ten
 * to fifty times slower, while a call that can wait a minute is a hung
 * request to whoever made it (gunicorn kills a worker silent for 30 s).  A
 * call that gives up returns LMC_EBUSY, and the next call tries again.
 */
#define LMC__OPEN_LOCK_WAIT_MS 60000u
#define LMC__REOPEN_LOCK_WAIT_MS 2000u

/* The resolved options of an open (kept in the core for the reopen). */
typedef struct lmc__open_req {
    uint64_t map_size;
    unsigned max_readers;
    unsigned flags;
    lmc__perm perm;
    unsigned lock_wait_ms; /* for the directory lock; 0: LMC__OPEN_LOCK_WAIT_MS */
} lmc__open_req;

/* Open the cache of k->path into k (k->path, k->dir_fd and k->lock_fd set by
 * the caller).  *reset_in_place: LMC_OPEN_RESET found the cache in use, so
 * it must be emptied in place once open.  On failure nothing stays open and
 * a creating open leaves nothing it made. */
int lmc__core_open(const lmc *h, lmc__core *k, const lmc__open_req *r, bool *reset_in_place);
/* Forget everything a core holds, without touching what belongs to another
 * process (owned false: a child's copy of its parent's). */
void lmc__core_release(lmc__core *k, bool owned);
/* The last user of a cache on disk: flush it and record a clean shutdown. */
void lmc__core_shutdown(lmc__core *k);

/* In a child after fork: reopen the very cache the parent opened, creating
 * nothing, waiting at most lock_wait_ms for the directory lock (the slow
 * path of the entry check, call.h, and lmc_reopen_after_fork).  Once done,
 * or in the process that opened the cache, it does nothing. */
int lmc__reopen(lmc *h, unsigned lock_wait_ms);

/* The lock that serialises open, close and reopen within the process.  It
 * may be held while waiting for another process's open, so the atfork
 * handlers do not take it; the child's handler makes it afresh. */
void lmc__open_lock(void);
void lmc__open_unlock(void);
void lmc__open_lock_atfork_child(void);

#endif /* LMC_CORE_H */
