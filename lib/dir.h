/*
 * dir.h - the cache directory (dir.c): opening it safely, its lock, the
 * boot id, and wiping the files lmc owns in it.
 */
#ifndef LMC_DIR_H
#define LMC_DIR_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "handle.h"

/* Open (and if allowed create, with exactly the requested mode) the cache
 * directory and check it against the security rules; *made tells whether
 * this call created it. */
int lmc__dir_open(const lmc *h, const char *path, bool create, const lmc__perm *p, int *dirfd,
                  struct stat *st, bool *made);
/* The very directory dir_fd is (a child after fork reopens its parent's
 * cache this way, never by path), as a new open file description, checked
 * again; path names it in messages. */
int lmc__dir_reopen(const lmc *h, int dir_fd, const char *path, const lmc__perm *p, int *dirfd,
                    struct stat *st);
/* Remove the directory a failed creating open made, if it is still that one
 * and empty. */
void lmc__dir_remove_made(const char *path, dev_t dev, ino_t ino);
/* flock the directory (LOCK_SH or LOCK_EX), waiting at most wait_ms for
 * another process's open to finish; LMC_EBUSY after that. */
int lmc__dir_lock(const lmc *h, int dirfd, const char *path, int how, unsigned wait_ms);
/* The kernel's boot id, or "" when it cannot be read. */
void lmc__boot_id(char out[40]);
/* Remove whatever occupies the names lmc owns in the directory (not the
 * directory), for LMC_OPEN_RESET and the reboot wipe. */
int lmc__dir_wipe(const lmc *h, int dirfd, const char *path);
/* After a failed creating open: remove the regular files it may have made. */
void lmc__dir_wipe_made(int dirfd);

#endif /* LMC_DIR_H */
