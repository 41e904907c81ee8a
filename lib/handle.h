/*
 * handle.h - the types every module shares: a handle (struct lmc), the
 * per-process state of one cache (lmc__core), a thread's read transaction
 * (lmc__rtxn), and the layouts the processes of a cache share outside LMDB
 * (a stats slot, the writers' view of the room left).  Types only, and the
 * one-line counter add: the functions on them live in the module that owns
 * each part (core.c opens a core, txn.c runs transactions, slots.c keeps the
 * stats file, recency.c the recency array).
 */
#ifndef LMC_HANDLE_H
#define LMC_HANDLE_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "format.h"
#include "lmc.h"

/* ------------------------------------------------------------------------ */
/* Shared with the other processes, in the stats file                       */
/* ------------------------------------------------------------------------ */

enum {
#define LMC__CTR_ENUM(name, help) LMC__C_##name,
    LMC_COUNTERS(LMC__CTR_ENUM)
#undef LMC__CTR_ENUM
    LMC__NCTR
};

#define LMC__SLOT_CTRS 64u /* room for counters added in later versions */

/* One process's counters.  Only the owner writes ctr[] (relaxed atomic adds,
 * because its threads share the slot); base[] holds the counters the slot had
 * when its owner claimed it, so per-process figures are ctr - base while the
 * totals simply sum ctr over all slots and never go backwards. */
typedef struct lmc__slot {
    _Atomic uint64_t ctr[LMC__SLOT_CTRS];
    uint64_t base[LMC__SLOT_CTRS];
    _Atomic int64_t pid;
    _Atomic int64_t started_ms;
    uint64_t pad[6];
} lmc__slot;

/* What the writers of every process know about the room left in the map
 * (write.c), kept in the stats file's header. */
typedef struct lmc__room {
    _Atomic uint32_t unused;    /* was a count of writes (the transaction id
                                   is one); kept so that the layout of the
                                   stats file stays that of older versions */
    _Atomic uint32_t near_full; /* few free pages left: every write checks */
    _Atomic uint64_t headroom;  /* free pages the writers evict back to */
} lmc__room;

/* A word that callers waiting for a fill lease sleep on (a futex), bumped
 * when a lease of a key hashed to it ends, with a count of its sleepers so
 * that a fill makes no system call when nobody waits (lease.c). */
#define LMC__WAKE_WORDS 128u
typedef struct lmc__wake {
    _Atomic uint32_t seq;
    _Atomic uint32_t sleepers;
} lmc__wake;

/* ------------------------------------------------------------------------ */
/* This process's                                                           */
/* ------------------------------------------------------------------------ */

/* Mode bits requested by the options: file mode and whether the group is
 * trusted. */
typedef struct lmc__perm {
    unsigned file_mode;
    unsigned dir_mode;
    bool group;
} lmc__perm;

/* A thread's reusable read transaction on one core (MDB_NOTLS: the txn
 * object owns the reader slot, so each thread keeps its own and renews it). */
#define LMC__STAMP_BATCH 32u

typedef struct lmc__rtxn {
    MDB_txn *txn;
    struct lmc__core *core;
    pid_t pid;      /* process that created it: never touched by another */
    unsigned gen;   /* core generation it belongs to */
    struct lmc__rtxn *prev, *next;
    /* Recency cells this thread's hits must stamp, written to the shared
     * array in batches (recency.h). */
    unsigned nstamps;
    int64_t first_stamp_ms;
    uint32_t stamps[LMC__STAMP_BATCH];
} lmc__rtxn;

/* The per-process state of one cache, shared by every lmc handle of this
 * process that opened the same directory. */
typedef struct lmc__core {
    /* Hot fields, read on every call. */
    MDB_env *env;
    MDB_dbi dbi_main, dbi_meta;
    _Atomic unsigned gen;        /* == lmc__fork_gen while valid in this process */
    pthread_key_t tkey;          /* -> lmc__rtxn of the calling thread */
    _Atomic uint64_t rtxn_serial; /* names tkey's current read txns for the
                                     threads' one-entry caches (txn.h) */
    lmc__slot *slot;             /* this process's stats slot */
    _Atomic uint64_t *gate;      /* writer gate in the stats file, or NULL */
    _Atomic int64_t *byte_totals; /* key and value bytes and expiry rows, in the
                                     stats file */
    _Atomic uint32_t *recency;   /* shared access times, see recency.h */
    uint64_t recency_mask;
    int64_t created_ms;
    uint64_t version_base;
    struct lmc__flushes *flush;  /* the flush markers (flushtab.h) in the stats file,
                                    or an empty table without one: never NULL */
    bool rdonly;

    /* Cold fields. */
    char *path;
    dev_t dev;
    ino_t ino;
    int dir_fd;                  /* the cache directory, kept so that a child after
                                    fork reopens this very directory */
    int lock_fd;                 /* lock.mdb, kept open until after mdb_env_close
                                    (core.c says why) */
    int refs;                    /* lmc handles using this core */
    unsigned env_flags;
    lmc__perm perm;              /* permission rules of the open, for reopen */
    uint64_t map_size;
    unsigned psize;
    uint64_t total_pages;        /* map_size / psize, fixed at open (a division
                                    costs every write dozens of cycles) */
    uint64_t reserve_pages;      /* lmc__reserve_pages_of(total_pages) */
    unsigned max_readers;
    bool on_tmpfs;
    pid_t pid;                   /* process that opened env */
    bool key_live;               /* tkey was created in this process */
    lmc__room *room;             /* writers' view of the room left, shared in the
                                    stats file (or local_room without one) */
    lmc__room local_room;
    lmc__wake *wake;             /* LMC__WAKE_WORDS of them, in the stats file
                                    (read-write handles), or NULL */
    struct lmc__gens *gens;      /* invalidation generations (gen.h), in the
                                    stats file (read-only handles too), or NULL
                                    without one */
    pthread_mutex_t rtxn_lock;   /* protects rtxns (and is held across fork) */
    lmc__rtxn *rtxns;            /* every thread's read txn, for close */

    int stats_fd;
    unsigned char *stats_map;
    size_t stats_size;
    unsigned nslots;
    unsigned slot_index;         /* 0 = shared overflow slot or none */
    bool stats_fresh;            /* the stats file was (re)created by this open */
    lmc__slot local_slot;        /* used by read-only handles */

    int rec_fd;
    void *rec_map;
    size_t rec_size;

    /* Approximate-LRU hand: where the last LRU window ended (writer-only,
     * protected by LMDB's writer lock). */
    lmc__resume lru_hand;
    /* Pages of the meta database as the last count of the room left found
     * them (space.c; writer-only, protected by LMDB's writer lock too). */
    uint64_t meta_pages;
    bool meta_pages_known;

    struct lmc__core *next;      /* registry of this process's cores (open.c) */
} lmc__core;

struct lmc {
    lmc__core *core;
    int64_t default_ttl_ms;
    bool rdonly;
};

static inline void lmc__count(lmc__core *k, unsigned idx, uint64_t n)
{
    atomic_fetch_add_explicit(&k->slot->ctr[idx], n, memory_order_relaxed);
}

#endif /* LMC_HANDLE_H */
