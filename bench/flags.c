/*
 * flags.c - the measurement behind lmc's choice of LMDB flags (README,
 * "Choice of LMDB flags"): single-put write transactions per second with
 * each candidate flag set, with and without the data file preallocated, by
 * 1 and 2 writer processes, on tmpfs, side by side in one run.
 *
 *   flags [DIR] [--seconds S] [--keys N]     (make bench-flags)
 *
 * Each configuration gets a fresh environment loaded with N keys like
 * "view//api/items?page=0001234" and 200-byte values in one transaction;
 * then each writer process opens its own environment after fork and
 * overwrites random keys, one mdb_put and commit per set, for S seconds.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAP_SIZE ((size_t)1 << 30)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "flags: %s: %s\n", what, mdb_strerror(rc));
    exit(1);
}

static int open_env(const char *dir, unsigned flags, MDB_env **env, MDB_dbi *dbi)
{
    int rc;
    MDB_txn *txn;
    if ((rc = mdb_env_create(env)) || (rc = mdb_env_set_mapsize(*env, MAP_SIZE)) ||
        (rc = mdb_env_open(*env, dir, flags | MDB_NOTLS, 0600)) ||
        (rc = mdb_txn_begin(*env, NULL, 0, &txn)))
        return rc;
    if ((rc = mdb_dbi_open(txn, NULL, 0, dbi))) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

typedef struct config {
    const char *name;
    unsigned flags;
    int prealloc;
} config;

/* Load a fresh environment; returns 0 or an LMDB/errno code. */
static int load(const char *dir, const config *c, unsigned keys)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0)
        return EIO;
    MDB_env *env;
    MDB_dbi dbi;
    int rc = open_env(dir, c->flags, &env, &dbi);
    if (rc)
        return rc;
    if (c->prealloc) {
        int fd;
        mdb_env_get_fd(env, &fd);
        if ((rc = posix_fallocate(fd, 0, (off_t)MAP_SIZE)))
            return rc;
    }
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)))
        return rc;
    char k[64], v[200];
    memset(v, 'v', sizeof v);
    for (unsigned i = 0; i < keys && rc == 0; i++) {
        int kl = snprintf(k, sizeof k, "view//api/items?page=%07u", i);
        MDB_val K = {(size_t)kl, k}, V = {sizeof v, v};
        rc = mdb_put(txn, dbi, &K, &V, MDB_APPEND);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn);
    mdb_env_close(env);
    return rc;
}

/* One writer process: sets for `seconds`, result in *out (sets). */
static void writer(const char *dir, unsigned flags, unsigned keys, double seconds, unsigned seed,
                   volatile double *out)
{
    MDB_env *env;
    MDB_dbi dbi;
    int rc = open_env(dir, flags, &env, &dbi);
    if (rc)
        die("open", rc);
    char k[64], v[200];
    memset(v, 'w', sizeof v);
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (int j = 0; j < 64; j++) {
            int kl = snprintf(k, sizeof k, "view//api/items?page=%07u", rand_r(&seed) % keys);
            MDB_val K = {(size_t)kl, k}, V = {sizeof v, v};
            MDB_txn *txn;
            if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) || (rc = mdb_put(txn, dbi, &K, &V, 0)))
                die("put", rc);
            if ((rc = mdb_txn_commit(txn)))
                die("commit", rc);
            n++;
        }
        t = now_s();
    } while (t - t0 < seconds);
    *out = (double)n / (t - t0);
    mdb_env_close(env);
}

static double run(const char *dir, unsigned flags, unsigned keys, double seconds, int procs)
{
    volatile double *res = mmap(NULL, sizeof(double) * (size_t)procs, PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    for (int p = 0; p < procs; p++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        if (pid == 0) {
            writer(dir, flags, keys, seconds, (unsigned)p * 7919u + 1u, &res[p]);
            _exit(0);
        }
    }
    double sum = 0;
    for (int p = 0; p < procs; p++) {
        int st;
        wait(&st);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "flags: a writer failed\n");
            exit(1);
        }
    }
    for (int p = 0; p < procs; p++)
        sum += res[p];
    munmap((void *)(uintptr_t)res, sizeof(double) * (size_t)procs);
    return sum;
}

int main(int argc, char **argv)
{
    double seconds = 2.0;
    unsigned keys = 100000;
    static const struct option opts[] = {{"seconds", required_argument, NULL, 's'},
                                         {"keys", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 's': seconds = atof(optarg); break;
        case 'k': keys = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'h':
            printf("usage: flags [DIR] [--seconds S] [--keys N]\n");
            return 0;
        default: return 2;
        }
    }
    char dir[256];
    if (optind < argc)
        snprintf(dir, sizeof dir, "%s", argv[optind]);
    else
        snprintf(dir, sizeof dir, "/dev/shm/lmc-flags.%d", (int)getpid());
    if (seconds <= 0 || keys == 0) {
        fprintf(stderr, "usage: flags [DIR] [--seconds S] [--keys N]\n");
        return 2;
    }
    static const config cs[] = {
        {"MDB_NOSYNC", MDB_NOSYNC, 0},
        {"MDB_NOSYNC, preallocated", MDB_NOSYNC, 1},
        {"MDB_WRITEMAP \\| MDB_NOSYNC", MDB_WRITEMAP | MDB_NOSYNC, 0},
        {"MDB_WRITEMAP \\| MDB_NOSYNC, preallocated (lmc)", MDB_WRITEMAP | MDB_NOSYNC, 1},
        {"MDB_WRITEMAP \\| MDB_MAPASYNC", MDB_WRITEMAP | MDB_MAPASYNC, 0},
    };
    printf("# LMDB flags: single-put write transactions per second\n\n");
    printf("- %s; %u keys of ~28 B, 200-byte values, 1 GiB map, %s; %.1f s per cell; "
           "MDB_NOTLS everywhere\n\n",
           mdb_version(NULL, NULL, NULL), keys, dir, seconds);
    printf("| flags | sets/s, 1 process | sets/s, 2 processes (sum) |\n|---|---:|---:|\n");
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        double r[2];
        for (int p = 1; p <= 2; p++) {
            int rc = load(dir, &cs[i], keys);
            if (rc)
                die("load", rc);
            r[p - 1] = run(dir, cs[i].flags, keys, seconds, p);
        }
        printf("| %s | %.0f | %.0f |\n", cs[i].name, r[0], r[1]);
        fflush(stdout);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
