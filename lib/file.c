/*
 * file.c - the security rules for the cache directory and its files.
 *
 * Anyone who can write the cache directory or its files can change what the
 * cache serves to every process, so open refuses objects that someone else
 * could have planted or can modify: symbolic links, objects owned by another
 * user (root excepted, and group members when the caller asked for group
 * sharing), objects writable by others, and group-writable objects when the
 * caller did not ask for group sharing.  Files are opened with O_NOFOLLOW and
 * O_CLOEXEC and created with exactly the requested mode (the umask is not
 * applied: fchmod after creation).
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

void lmc__perm_from_mode(unsigned mode, lmc__perm *p)
{
    unsigned f = mode ? (mode & 0666u) : 0600u;
    f |= 0600u; /* the owner always needs read and write */
    p->file_mode = f;
    /* Each read bit of the files gives the matching search bit on the dir. */
    p->dir_mode = f | ((f & 0444u) >> 2);
    p->group = (f & 0060u) != 0;
}

static bool in_my_groups(gid_t gid)
{
    if (gid == getegid())
        return true;
    gid_t list[256];
    int n = getgroups(256, list);
    for (int i = 0; i < n; i++)
        if (list[i] == gid)
            return true;
    return false;
}

int lmc__check_owner(const lmc *h, const char *what, const struct stat *st, const lmc__perm *p,
                     bool want_dir)
{
    if (S_ISLNK(st->st_mode))
        return lmc__err(h, LMC_EPERM, "refusing %s: it is a symbolic link", what);
    if (want_dir && !S_ISDIR(st->st_mode))
        return lmc__err(h, LMC_EPERM, "refusing %s: not a directory", what);
    if (!want_dir && !S_ISREG(st->st_mode))
        return lmc__err(h, LMC_EPERM, "refusing %s: not a regular file", what);
    if (st->st_mode & S_IWOTH)
        return lmc__err(h, LMC_EPERM, "refusing %s: writable by others (mode %04o)", what,
                        (unsigned)(st->st_mode & 07777));
    uid_t me = geteuid();
    if (st->st_uid != me && st->st_uid != 0) {
        if (!(p->group && in_my_groups(st->st_gid)))
            return lmc__err(h, LMC_EPERM,
                            "refusing %s: owned by uid %u, not by the caller (uid %u)%s", what,
                            (unsigned)st->st_uid, (unsigned)me,
                            p->group ? " and not in one of the caller's groups" : "");
    }
    if ((st->st_mode & S_IWGRP) && !p->group)
        return lmc__err(h, LMC_EPERM,
                        "refusing %s: group-writable (mode %04o) but the cache was not opened "
                        "for group sharing (pass a mode with group bits, e.g. 0660)",
                        what, (unsigned)(st->st_mode & 07777));
    return 0;
}

int lmc__open_file(const lmc *h, int dirfd, const char *dirpath, const char *name, bool create,
                   bool rdonly, const lmc__perm *p, int *fd_out, bool *created)
{
    char what[4200];
    snprintf(what, sizeof what, "%s/%s", dirpath, name);
    int flags = (rdonly ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY;
    bool made = false;
    int fd = openat(dirfd, name, flags);
    if (fd < 0 && errno == ENOENT && create) {
        fd = openat(dirfd, name, flags | O_CREAT | O_EXCL, p->file_mode);
        if (fd >= 0) {
            made = true;
            if (fchmod(fd, p->file_mode) != 0) {
                int e = errno;
                close(fd);
                return lmc__sys_err(h, e, "fchmod %s", what);
            }
        } else if (errno == EEXIST) {
            fd = openat(dirfd, name, flags);
        }
    }
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return lmc__err(h, LMC_EPERM, "refusing %s: it is a symbolic link", what);
        if (e == ENOENT)
            return lmc__err(h, LMC_NOTFOUND, "%s does not exist", what);
        return lmc__sys_err(h, e, "open %s", what);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lmc__sys_err(h, e, "fstat %s", what);
    }
    int rc = lmc__check_owner(h, what, &st, p, false);
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    if (created)
        *created = made;
    return 0;
}
