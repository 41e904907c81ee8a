/*
 * dir.c - the cache directory: opening (and creating) it with exactly the
 * requested mode and checking it against the security rules (file.c), the
 * flock that makes creation, validation and wiping never race with another
 * process's open, the kernel's boot id, and removing the files lmc owns in it.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dir.h"
#include "error.h"
#include "file.h"

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
void lmc__dir_remove_made(const char *path, dev_t dev, ino_t ino)
{
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISDIR(lst.st_mode) && lst.st_dev == dev && lst.st_ino == ino)
        rmdir(path);
}

/* Open (and if allowed create) the cache directory and check it; *made
 * tells whether this call created it. */
int lmc__dir_open(const lmc *h, const char *path, bool create, const lmc__perm *p, int *dirfd,
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
                    lmc__dir_remove_made(path, mst.st_dev, mst.st_ino);
                return rc;
            }
            *made = true;
            fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } else if (errno == EEXIST) {
            fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } else if (errno == ENOENT) {
            return lmc__err(h, LMC_ENOCACHE, "cannot create %s: its parent directory does not "
                            "exist (lmc creates only the last component of the path)", path);
        } else {
            return lmc__sys_err(h, errno, "mkdir %s", path);
        }
    }
    if (fd < 0) {
        int e = errno;
        struct stat lst;
        if (*made)
            lmc__dir_remove_made(path, mst.st_dev, mst.st_ino);
        *made = false;
        if (e == ENOENT)
            return lmc__err(h, LMC_ENOCACHE, "no cache at %s", path);
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
            lmc__dir_remove_made(path, mst.st_dev, mst.st_ino);
        *made = false;
        return rc;
    }
    *dirfd = fd;
    return 0;
}

/* flock the directory, waiting at most wait_ms (in pauses of a millisecond,
 * so at least that long): a process stopped in the middle of its open must
 * not hang every later open. */
int lmc__dir_lock(const lmc *h, int dirfd, const char *path, int how, unsigned wait_ms)
{
    struct timespec pause = {0, 1000000};
    for (unsigned waited = 0;; waited++) {
        if (flock(dirfd, how | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return lmc__sys_err(h, errno, "flock %s", path);
        if (waited >= wait_ms)
            return lmc__err(h, LMC_EBUSY, "another process has held the open lock of %s "
                            "for %u ms (it is opening the cache, or stopped in the middle of "
                            "doing so)", path, wait_ms);
        nanosleep(&pause, NULL);
    }
}

/* The boot id lets a cache on disk tell that the host rebooted since it was
 * written (core.c). */
void lmc__boot_id(char out[40])
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
int lmc__dir_wipe(const lmc *h, int dirfd, const char *path)
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
void lmc__dir_wipe_made(int dirfd)
{
    struct stat st;
    for (size_t i = 0; i < N_CACHE_NAMES; i++)
        if (fstatat(dirfd, cache_names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(dirfd, cache_names[i], 0);
}

/*
 * The directory a child reopens after fork: the very one its parent opened,
 * reached through the descriptor the core keeps and never by path, because
 * by now the path may name another directory (the parent's cache renamed
 * away and a new one made in its place) or none.  A new open file
 * description is made from it, because flock locks belong to the
 * description, which the child shares with its parent and siblings.
 */
int lmc__dir_reopen(const lmc *h, int dir_fd, const char *path, const lmc__perm *p, int *dirfd,
                    struct stat *st)
{
    int fd = dir_fd >= 0 ? openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0 && (dir_fd < 0 || errno == ENOENT))
        return lmc__err(h, LMC_EIO, "%s was removed after this process's parent opened it "
                        "(a child reopens its parent's cache after fork, never another one)",
                        path);
    if (fd < 0)
        return lmc__sys_err(h, errno, "reopening %s after fork", path);
    int rc = 0;
    if (fstat(fd, st) != 0)
        rc = lmc__sys_err(h, errno, "fstat %s", path);
    else
        rc = lmc__check_owner(h, path, st, p, true);
    if (rc) {
        close(fd);
        return rc;
    }
    *dirfd = fd;
    return 0;
}
