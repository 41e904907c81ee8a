/*
 * file.h - the security rules for a cache's directory and files, and the
 * storage every mapped file gets at open (file.c).
 */
#ifndef LMC_FILE_H
#define LMC_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "handle.h"

/* The file and directory modes of an open's mode option (0: the default). */
void lmc__perm_from_mode(unsigned mode, lmc__perm *p);
/* Check an existing object (named what in messages) for the security rules;
 * 0, LMC_EPERM, or LMC_ECORRUPT for a file that is not a regular one. */
int lmc__check_owner(const lmc *h, const char *what, const struct stat *st, const lmc__perm *p,
                     bool want_dir);
/* Open (create if allowed) the file name in dirfd with the exact mode,
 * checked; *created (may be NULL) tells whether this call made it.  A
 * missing file that may not be created is LMC_ENOCACHE. */
int lmc__open_file(const lmc *h, int dirfd, const char *dirpath, const char *name, bool create,
                   bool rdonly, const lmc__perm *p, int *fd_out, bool *created);
/* Give the first size bytes of fd (the file name in dirfd) their storage, so
 * that no page of a mapping of it can SIGBUS later; LMC_ENOSPC when the
 * filesystem has no room.  fresh: nobody else can have the file open yet. */
int lmc__file_reserve(const lmc *h, int dirfd, const char *dirpath, const char *name, int fd,
                      uint64_t size, bool fresh);

#endif /* LMC_FILE_H */
