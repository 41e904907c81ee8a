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
 *
 * lmc owns four names inside the cache directory (data.mdb, lock.mdb, stats,
 * recency).  Anything under those names that is not a regular file (a FIFO,
 * a directory, a socket, a device) is a damaged cache: LMC_ECORRUPT, which
 * LMC_OPEN_RESET repairs.  Such an object is never opened, because opening a
 * FIFO for reading blocks until some writer comes and opening a device can
 * have effects of its own.
 *
 * Every file lmc or LMDB maps is also given its storage at open
 * (lmc__file_reserve), because a page of a shared mapping that the
 * filesystem cannot supply is a SIGBUS in whichever process touches it.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "file.h"

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

/* What a non-regular object is, for messages. */
static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    return "not a regular file";
}

int lmc__check_owner(const lmc *h, const char *what, const struct stat *st, const lmc__perm *p,
                     bool want_dir)
{
    if (S_ISLNK(st->st_mode))
        return lmc__err(h, LMC_EPERM, "refusing %s: it is a symbolic link", what);
    if (want_dir && !S_ISDIR(st->st_mode))
        return lmc__err(h, LMC_EPERM, "refusing %s: not a directory", what);
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
    /* Checked last, so that an object someone else could have planted stays
     * a security refusal (LMC_EPERM) that LMC_OPEN_RESET does not remove. */
    if (!want_dir && !S_ISREG(st->st_mode))
        return lmc__err(h, LMC_ECORRUPT,
                        "%s is %s, not a regular file: the cache is damaged "
                        "(LMC_OPEN_RESET removes it)", what, kind_of(st->st_mode));
    return 0;
}

int lmc__open_file(const lmc *h, int dirfd, const char *dirpath, const char *name, bool create,
                   bool rdonly, const lmc__perm *p, int *fd_out, bool *created)
{
    char what[4200];
    snprintf(what, sizeof what, "%s/%s", dirpath, name);
    struct stat st;
    /* Refuse a non-regular object before opening it (see the top of this
     * file); O_NONBLOCK covers one swapped in after this check, and the
     * fstat below checks what was really opened. */
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
        return lmc__check_owner(h, what, &st, p, false);
    int flags = (rdonly ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
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
            return lmc__err(h, LMC_ENOCACHE, "%s does not exist", what);
        return lmc__sys_err(h, e, "open %s", what);
    }
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
    /* A regular file: O_NONBLOCK has no use any more. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *fd_out = fd;
    if (created)
        *created = made;
    return 0;
}

/*
 * Whether the first size bytes of a file all have storage.  st_blocks is
 * enough: blocks beyond the end of the file (FALLOC_FL_KEEP_SIZE, only ever
 * used on a new lock.mdb) cannot hide a hole inside it, because they are
 * only allocated from offset 0 and files are never shrunk.  SEEK_HOLE would
 * also say it, but it walks every page: 20 ms for a map of 1 GiB, at every
 * open of every worker.
 */
static bool fully_backed(const struct stat *st, uint64_t size)
{
    return (uint64_t)st->st_blocks * 512 >= size;
}

int lmc__file_reserve(const lmc *h, int dirfd, const char *dirpath, const char *name, int fd,
                      uint64_t size, bool fresh)
{
    char what[4200];
    snprintf(what, sizeof what, "%s/%s", dirpath, name);
    struct stat st;
    if (size == 0)
        return 0;
    if (fstat(fd, &st) != 0)
        return lmc__sys_err(h, errno, "fstat %s", what);
    if (fully_backed(&st, size))
        return 0;
    /* A read-only descriptor cannot allocate: reserve through a read-write
     * one of the same file.  Closing it afterwards is safe only because no
     * caller passes a read-only descriptor of a file this process holds
     * fcntl locks on (closing any descriptor of a file drops all of them):
     * read-only handles lock nothing in data.mdb, stats or recency, and
     * lock.mdb is always opened read-write. */
    int wfd = fd;
    if ((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY) {
        wfd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat wst;
        if (wfd < 0)
            return lmc__sys_err(h, errno, "opening %s to reserve its space (it has holes, "
                                "made by an older lmc?)", what);
        if (fstat(wfd, &wst) != 0 || wst.st_dev != st.st_dev || wst.st_ino != st.st_ino) {
            close(wfd);
            return lmc__err(h, LMC_ECORRUPT, "%s was replaced while being opened", what);
        }
    }
    int e;
    do
        e = fallocate(wfd, 0, 0, (off_t)size) == 0 ? 0 : errno;
    while (e == EINTR);
    if ((e == EOPNOTSUPP || e == ENOSYS) && fresh) {
        /* glibc's fallback writes a zero byte into every block that reads as
         * zero, which would race with another process writing the block:
         * only done on a file that nobody else can have open yet. */
        e = posix_fallocate(wfd, 0, (off_t)size);
    } else if (e == EOPNOTSUPP || e == ENOSYS) {
        e = 0; /* this filesystem cannot reserve space without writing */
    }
    if (wfd != fd)
        close(wfd);
    if (e == ENOSPC || e == EDQUOT)
        return lmc__err(h, LMC_ENOSPC, "no room on the filesystem to reserve %" PRIu64
                        " bytes for %s: free some space or make the cache smaller (every file "
                        "of a cache is reserved at open, see map_size)", size, what);
    if (e)
        return lmc__sys_err(h, e, "reserving %" PRIu64 " bytes for %s", size, what);
    return 0;
}
